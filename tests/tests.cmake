# Every test of the project, registered through abc_add_test (CMakeLists.txt).
# Unit tests of the engine (single process).
foreach(t test_layers test_data test_config test_checkpoint test_model
          test_optim test_train)
  if(EXISTS ${CMAKE_SOURCE_DIR}/tests/${t}.c)
    abc_add_test(${t})
  endif()
endforeach()

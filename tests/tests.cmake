# Every test of the project, registered through abc_add_test (CMakeLists.txt).
# Unit tests of the engine (single process).
foreach(t test_layers test_data test_config test_checkpoint test_model
          test_optim test_train)
  if(EXISTS ${CMAKE_SOURCE_DIR}/tests/${t}.c)
    abc_add_test(${t})
  endif()
endforeach()

# Reference test against PyTorch (Debian's python3-torch, run in double
# precision). Skipped (exit 77) only when python3-torch is absent.
add_executable(torch_ref_dump ${CMAKE_SOURCE_DIR}/tests/torch_ref_dump.c)
target_link_libraries(torch_ref_dump PRIVATE abc_common)
add_test(NAME test_torch_ref
         COMMAND /usr/bin/python3 ${CMAKE_SOURCE_DIR}/tests/torch_ref.py
                 $<TARGET_FILE:torch_ref_dump> ${ABC_TEST_DATA_DIR})
set_tests_properties(test_torch_ref PROPERTIES TIMEOUT 300 SKIP_RETURN_CODE 77
                     ENVIRONMENT "OMP_NUM_THREADS=2")

# The program end to end (train/eval/info, usage and input errors).
add_test(NAME test_cli
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/test_cli.sh
                 $<TARGET_FILE:abcprune> ${ABC_TEST_DATA_DIR})
set_tests_properties(test_cli PROPERTIES TIMEOUT 300
                     ENVIRONMENT "OMP_NUM_THREADS=2")

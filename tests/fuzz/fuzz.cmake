# tests/fuzz/fuzz.cmake - the libFuzzer targets (included by CMakeLists.txt
# when ABC_FUZZ is on): tests/fuzz/fuzz_NAME.c becomes the executable
# fuzz_NAME, linked with libFuzzer and the project's libraries. Run them
# with tests/fuzz/run.sh.
file(GLOB ABC_FUZZ_SRC CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_*.c)
set(ABC_FUZZ_TARGETS "")
foreach(src ${ABC_FUZZ_SRC})
  get_filename_component(fname ${src} NAME_WE)
  add_executable(${fname} ${src})
  target_include_directories(${fname} PRIVATE ${CMAKE_SOURCE_DIR}/tests
                                              ${CMAKE_SOURCE_DIR}/tests/fuzz)
  target_link_libraries(${fname} PRIVATE abc_coordinator abc_proto abc_common)
  target_link_options(${fname} PRIVATE -fsanitize=fuzzer)
  list(APPEND ABC_FUZZ_TARGETS ${fname})
endforeach()
add_custom_target(fuzz DEPENDS ${ABC_FUZZ_TARGETS})

# The seed corpora's writer (run by hand, see gen_corpus.c).
add_executable(fuzz_gen_corpus ${CMAKE_SOURCE_DIR}/tests/fuzz/gen_corpus.c)
target_link_libraries(fuzz_gen_corpus PRIVATE abc_coordinator abc_proto
                                              abc_common)

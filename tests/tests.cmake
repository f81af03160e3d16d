# Every test of the project, registered through abc_add_test (CMakeLists.txt).
# Unit tests of the engine (single process).
foreach(t test_layers test_gemm test_data test_config test_checkpoint test_model
          test_optim test_train test_stats)
  abc_add_test(${t})
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
abc_add_script_test(test_cli THREADS 2 ARGS $<TARGET_FILE:abcprune>
                    ${ABC_TEST_DATA_DIR} ${CMAKE_SOURCE_DIR})

# Weight inheritance (common/prune.c).
abc_add_test(test_prune)
# LASSO channel pruning (common/lasso.c) and per-layer forward access.
abc_add_test(test_lasso)
abc_add_test(test_fitness)
# Structures at a FLOPs target (common/budget.c).
abc_add_test(test_budget)
# deploy/compare.sh: the comparison table, CSV and plot.
abc_add_script_test(test_compare ARGS ${CMAKE_SOURCE_DIR}
                    $<TARGET_FILE:abcprune> ${MPIEXEC_EXECUTABLE}
                    ${ABC_TEST_DATA_DIR})
# Network Slimming's sparsity term (common/train.c).
abc_add_test(test_slim)
# slim, lasso, uniform, random and the search's FLOPs budget end to end.
abc_add_script_test(test_methods TIMEOUT 900 ARGS $<TARGET_FILE:abcprune>
                    ${MPIEXEC_EXECUTABLE} "${ABC_PREFLAGS_ARG}"
                    ${ABC_TEST_DATA_DIR})
abc_add_test(test_colony LIBS abc_coordinator)
abc_add_test(test_colony_file LIBS abc_coordinator)
# The search on a virtual clock (coordinator/simulate.c).
abc_add_test(test_simulate LIBS abc_coordinator)

# Wire format (proto/): messages on one rank, transport on three.
abc_add_test(test_proto LIBS abc_proto)
abc_add_test(test_transport NP 3 TIMEOUT 60 LIBS abc_proto)

# The MPI search and the pipeline end to end (1-3 ranks via mpiexec).
abc_add_script_test(test_search TIMEOUT 900 ARGS $<TARGET_FILE:abcprune>
                    ${MPIEXEC_EXECUTABLE} "${ABC_PREFLAGS_ARG}"
                    ${ABC_TEST_DATA_DIR})

# The scaling-study driver (deploy/scaling-study.sh) on a tiny sweep: its
# CSVs, the simulated sweep, the validation and the plots (1-2 ranks).
abc_add_script_test(test_scaling ARGS $<TARGET_FILE:abcprune>
                    ${MPIEXEC_EXECUTABLE} "${ABC_PREFLAGS_ARG}"
                    ${ABC_TEST_DATA_DIR} ${CMAKE_SOURCE_DIR})

# The mpirun launcher (deploy/mpirun-launch.sh) with a hostfile of localhost.
abc_add_script_test(test_launch ARGS $<TARGET_FILE:abcprune>
                    ${CMAKE_SOURCE_DIR} ${ABC_TEST_DATA_DIR})

# The Slurm batch script on a single-node Slurm cluster the test starts
# (skipped, exit 77, where the daemons cannot start).
abc_add_script_test(test_slurm TIMEOUT 600 SKIP_RC 77 ARGS
                    $<TARGET_FILE:abcprune> ${CMAKE_SOURCE_DIR}
                    ${ABC_TEST_DATA_DIR} ${MPIEXEC_EXECUTABLE}
                    "${ABC_PREFLAGS_ARG}")

# proxycheck: proxies against a short fine-tune, on 1 and 3 ranks.
abc_add_script_test(test_proxycheck TIMEOUT 600 ARGS $<TARGET_FILE:abcprune>
                    ${MPIEXEC_EXECUTABLE} "${ABC_PREFLAGS_ARG}"
                    ${ABC_TEST_DATA_DIR})

# Formatting: every C file as .clang-format says (clang-format --dry-run).
abc_add_script_test(test_style TIMEOUT 300 ARGS ${CMAKE_SOURCE_DIR}
                    ${CMAKE_BINARY_DIR})

# Every test of the project, registered through abc_add_test (CMakeLists.txt).
# Unit tests of the engine (single process).
foreach(t test_layers test_gemm test_data test_config test_checkpoint test_model
          test_optim test_train test_stats)
  abc_add_test(${t})
endforeach()
# The layers and the model again on our AVX2 kernels (what a CPU without
# AVX-512 runs by default), forced by ABC_GEMM=avx2.
# (.ci/run also runs them sanitized, hence the longer timeout there.)
set(abc_avx2_timeout 300)
if(ABC_SANITIZE)
  set(abc_avx2_timeout 1500)
endif()
foreach(t test_layers test_model)
  add_test(NAME ${t}_avx2 COMMAND ${t} WORKING_DIRECTORY ${ABC_TEST_DATA_DIR})
  set_tests_properties(${t}_avx2 PROPERTIES TIMEOUT ${abc_avx2_timeout}
                       ENVIRONMENT "OMP_NUM_THREADS=2;ABC_GEMM=avx2")
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

# Faults on purpose (issue 14): kill -9 of rank 0 and of a worker then
# --resume, garbage/unknown/stray replies, a hung worker and
# search.eval_timeout_s, a full disk under a model checkpoint (3 ranks).
abc_add_script_test(test_faults TIMEOUT 900 ARGS $<TARGET_FILE:abcprune>
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
abc_add_script_test(test_slurm TIMEOUT 900 SKIP_RC 77 ARGS
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

# ONNX export (common/io/onnx.c): the graph read back with protobuf-c and
# the error paths; then `abcprune export CKPT OUT.onnx` checked by
# onnx.checker (python3-onnx) and run in onnxruntime (npm onnxruntime-node,
# deploy/install-deps.sh) against our logits. Skipped (77) only without node.
abc_add_test(test_onnx_errors)
target_include_directories(test_onnx_errors PRIVATE ${ABC_ONNX_GEN})
add_executable(tool_onnx_ref ${CMAKE_SOURCE_DIR}/tests/tool_onnx_ref.c)
target_link_libraries(tool_onnx_ref PRIVATE abc_common)
abc_add_script_test(test_onnx SKIP_RC 77 ARGS $<TARGET_FILE:abcprune>
                    $<TARGET_FILE:tool_onnx_ref> ${ABC_TEST_DATA_DIR}
                    ${CMAKE_SOURCE_DIR})

# safetensors import/export and the PyTorch loader (issue 13): hostile files
# (C), and PyTorch's ResNet-20/56 and VGG-16 (ours and ABCPruner's names)
# imported, pruned, exported and loaded back (script; safetensors_tool runs
# our engine's forward for it).
abc_add_test(test_safetensors)
add_executable(safetensors_tool ${CMAKE_SOURCE_DIR}/tests/safetensors_tool.c)
target_link_libraries(safetensors_tool PRIVATE abc_common)
abc_add_script_test(test_safetensors_torch TIMEOUT 600 THREADS 2 ARGS
                    $<TARGET_FILE:abcprune> $<TARGET_FILE:safetensors_tool>
                    ${ABC_TEST_DATA_DIR} ${CMAKE_SOURCE_DIR})

# Fuzzing (issue 14): the fuzz targets' seed corpora and every input a
# fuzzer once crashed on (tests/fuzz/regress), replayed through the same
# entry points in this build (the libFuzzer targets: -DABC_FUZZ=ON with
# clang, tests/fuzz/run.sh).
abc_add_test(test_fuzz_regress LIBS abc_coordinator abc_proto)

# Data-parallel training (issue 12: proto/dp.c, common/train/train.c): the
# reduction, one step's gradient against one rank's, determinism, a stop
# and a failure agreed by all ranks, on 2 ranks and on 3 (unequal shards);
# then `mpirun abcprune train/slim/finetune/run` end to end (script).
abc_add_test(test_dp NP 2 TIMEOUT 120 LIBS abc_proto)
add_test(NAME test_dp_np3
         COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 3
                 ${MPIEXEC_PREFLAGS} $<TARGET_FILE:test_dp>
         WORKING_DIRECTORY ${ABC_TEST_DATA_DIR})
set_tests_properties(test_dp_np3 PROPERTIES TIMEOUT 120
                     ENVIRONMENT "OMP_NUM_THREADS=1")
abc_add_script_test(test_dp_cli TIMEOUT 600 ARGS $<TARGET_FILE:abcprune>
                    ${MPIEXEC_EXECUTABLE} "${ABC_PREFLAGS_ARG}"
                    ${ABC_TEST_DATA_DIR})

# Bounded resources (issue 14): the memory estimate per worker of a config
# (`info`; the command line refuses what exceeds the host) against counts by
# hand and the resident memory of a real training step.
abc_add_test(test_memory)

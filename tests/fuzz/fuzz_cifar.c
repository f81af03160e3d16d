/* fuzz_cifar.c - libFuzzer target: the CIFAR-10 binary loader
 * (dataset_load_cifar10_files). The work is fuzz_run_cifar in targets.h, which
 * test_fuzz_regress replays. */
#include <stddef.h>
#include <stdint.h>

#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[ABC_ERRLEN];
    fuzz_run_cifar(data, size, err);
    return 0;
}

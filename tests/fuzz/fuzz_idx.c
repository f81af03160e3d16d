/* fuzz_idx.c - libFuzzer target: the IDX loader (dataset_load_idx), images and
 * labels. The work is fuzz_run_idx in targets.h, which test_fuzz_regress
 * replays. */
#include <stddef.h>
#include <stdint.h>

#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[ABC_ERRLEN];
    fuzz_run_idx(data, size, err);
    return 0;
}

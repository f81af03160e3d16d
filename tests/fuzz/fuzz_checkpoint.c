/* fuzz_checkpoint.c - libFuzzer target: the model checkpoint loader
 * (checkpoint_load_mem). The work is fuzz_run_checkpoint in targets.h, which
 * test_fuzz_regress replays. */
#include <stddef.h>
#include <stdint.h>

#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[ABC_ERRLEN];
    fuzz_run_checkpoint(data, size, err);
    return 0;
}

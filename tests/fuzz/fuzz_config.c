/* fuzz_config.c - libFuzzer target: the config loader (config_load_mem) and
 * --set overrides (config_set). The work is fuzz_run_config in targets.h, which
 * test_fuzz_regress replays. */
#include <stddef.h>
#include <stdint.h>

#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[ABC_ERRLEN];
    fuzz_run_config(data, size, err);
    return 0;
}

/* fuzz_colony.c - libFuzzer target: the colony checkpoint loader
 * (colony_load_mem). The work is fuzz_run_colony in targets.h, which
 * test_fuzz_regress replays. */
#include <stddef.h>
#include <stdint.h>

#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[ABC_ERRLEN];
    fuzz_run_colony(data, size, err);
    return 0;
}

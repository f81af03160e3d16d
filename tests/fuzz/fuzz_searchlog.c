/* fuzz_searchlog.c - libFuzzer target: the search log reader (sim_log_read of
 * search.jsonl). The work is fuzz_run_searchlog in targets.h, which
 * test_fuzz_regress replays. */
#include <stddef.h>
#include <stdint.h>

#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[ABC_ERRLEN];
    fuzz_run_searchlog(data, size, err);
    return 0;
}

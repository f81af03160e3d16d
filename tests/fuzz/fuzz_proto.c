/* fuzz_proto.c - libFuzzer target: every wire message decoder (proto_peek_type,
 * proto_unpack_*). The work is fuzz_run_proto in targets.h, which
 * test_fuzz_regress replays. */
#include <stddef.h>
#include <stdint.h>

#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[ABC_ERRLEN];
    fuzz_run_proto(data, size, err);
    return 0;
}

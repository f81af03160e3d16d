/* fuzz_safetensors.c - libFuzzer target: the safetensors reader (st_parse,
 * st_tensor_f32). The work is fuzz_run_safetensors in targets.h, which
 * test_fuzz_regress replays. */
#include <stddef.h>
#include <stdint.h>

#include "targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[ABC_ERRLEN];
    fuzz_run_safetensors(data, size, err);
    return 0;
}

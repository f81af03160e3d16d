/* mpwrite.c - msgpack writing helpers (see mpwrite.h). */
#include "io/mpwrite.h"

#include <string.h>

int mpw_str(msgpack_packer *pk, const char *s)
{
    return msgpack_pack_str_with_body(pk, s, strlen(s));
}

int mpw_kv_int(msgpack_packer *pk, const char *key, int64_t v)
{
    return mpw_str(pk, key) != 0 || msgpack_pack_int64(pk, v) != 0 ? -1 : 0;
}

int mpw_kv_u64(msgpack_packer *pk, const char *key, uint64_t v)
{
    return mpw_str(pk, key) != 0 || msgpack_pack_uint64(pk, v) != 0 ? -1 : 0;
}

int mpw_kv_double(msgpack_packer *pk, const char *key, double v)
{
    return mpw_str(pk, key) != 0 || msgpack_pack_double(pk, v) != 0 ? -1 : 0;
}

int mpw_kv_str(msgpack_packer *pk, const char *key, const char *v)
{
    return mpw_str(pk, key) != 0 || mpw_str(pk, v) != 0 ? -1 : 0;
}

int mpw_ints(msgpack_packer *pk, const int *x, int n)
{
    if (msgpack_pack_array(pk, (size_t)n) != 0) return -1;
    for (int j = 0; j < n; j++)
        if (msgpack_pack_int(pk, x[j]) != 0) return -1;
    return 0;
}

/* mpwrite.c - msgpack writing helpers (see mpwrite.h). */
#include "io/mpwrite.h"

#include <string.h>

#include <zlib.h>

#include "io/mpread.h"

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

int mpw_section_crcs(msgpack_sbuffer *sb, size_t start, const char *crc_key)
{
    struct mpread_span sp[MPREAD_MAX_SECTIONS];
    uint32_t declared = 0;
    int n = mpread_map_spans(sb->data + start, sb->size - start, sp,
                             MPREAD_MAX_SECTIONS, &declared);
    if (n < 0 || (uint32_t)n + 1 != declared) return -1;
    size_t koff[MPREAD_MAX_SECTIONS], klen[MPREAD_MAX_SECTIONS];
    uint32_t crc[MPREAD_MAX_SECTIONS];
    int nsec = 0;
    for (int i = 0; i < n; i++) {
        /* keys are str as mpw_str writes them: fixstr or str8 */
        const unsigned char *b = (const unsigned char *)sb->data + start;
        unsigned h = b[sp[i].key];
        if (h >= 0xa0 && h <= 0xbf) {
            koff[i] = start + sp[i].key + 1;
            klen[i] = h & 0x1fu;
        } else if (h == 0xd9) {
            koff[i] = start + sp[i].key + 2;
            klen[i] = b[sp[i].key + 1];
        } else {
            return -1;
        }
        const char *k = sb->data + koff[i];
        if ((klen[i] == 6 && !memcmp(k, "format", 6)) ||
            (klen[i] == 7 && !memcmp(k, "version", 7))) {
            klen[i] = 0; /* no checksum */
            continue;
        }
        crc[i] =
            (uint32_t)crc32(crc32(0L, Z_NULL, 0), (const Bytef *)b + sp[i].key,
                            (uInt)(sp[i].end - sp[i].key));
        nsec++;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    if (mpw_str(&pk, crc_key) != 0 || msgpack_pack_map(&pk, (size_t)nsec) != 0)
        return -1;
    for (int i = 0; i < n; i++) {
        if (!klen[i]) continue;
        /* copied out: packing may move sb->data */
        char key[256];
        memcpy(key, sb->data + koff[i], klen[i]);
        if (msgpack_pack_str_with_body(&pk, key, klen[i]) != 0 ||
            msgpack_pack_uint32(&pk, crc[i]) != 0)
            return -1;
    }
    return 0;
}

/* mpwrite.h - the msgpack writing helpers every file and message format
 * shares (checkpoints, colonies, proto messages). Each returns msgpack's
 * code: 0, or -1 when the buffer could not grow. */
#ifndef ABC_MPWRITE_H
#define ABC_MPWRITE_H

#include <stdint.h>

#include <msgpack.h>

/* A NUL-terminated string as a msgpack str. */
int mpw_str(msgpack_packer *pk, const char *s);
/* A key (str) then its value. */
int mpw_kv_int(msgpack_packer *pk, const char *key, int64_t v);
int mpw_kv_u64(msgpack_packer *pk, const char *key, uint64_t v);
int mpw_kv_double(msgpack_packer *pk, const char *key, double v);
int mpw_kv_str(msgpack_packer *pk, const char *key, const char *v);
/* n ints as an array. */
int mpw_ints(msgpack_packer *pk, const int *x, int n);

/* Appends the checksum entry (see mpread.h, "section checksums") to the
 * top-level map that starts at byte start of sb: the map's header must
 * already count it, and every other entry must be in sb. Packs crc_key
 * and a map from each section's key to the CRC-32 of its bytes. Returns 0,
 * or -1 (out of memory, or sb does not hold such a map). */
int mpw_section_crcs(msgpack_sbuffer *sb, size_t start, const char *crc_key);

#endif

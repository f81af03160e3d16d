/* mpread.h - reading untrusted msgpack: a walk over the raw bytes that
 * bounds every declared count and length by the bytes that follow and
 * limits nesting (msgpack-c allocates arrays and maps by their declared
 * size, so it must only see bytes that passed this walk), unpacking of a
 * whole file's one object, and readers for unpacked objects whose errors
 * read "<name>: <field>: <what is wrong>". */
#ifndef ABC_MPREAD_H
#define ABC_MPREAD_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

/* Nesting msgpack_unpack accepts: the depth of its parser stack
 * (MSGPACK_EMBED_STACK_SIZE in msgpack-c's unpack_define.h). */
#define MPREAD_MAX_DEPTH 32

/* What mpread_scan found: the object is whole, or the first problem. */
enum mpread_status {
    MPREAD_OK = 0,       /* one whole object, ending at .end */
    MPREAD_END,          /* the bytes end where an object should start */
    MPREAD_SHORT_HEADER, /* the length or count after the first byte is
                          * cut: .need bytes of it, .have left */
    MPREAD_SHORT_BODY,   /* the str, bin, ext or number needs .need bytes
                          * after its header, .have follow */
    MPREAD_COUNT,        /* the array/map declares .count entries (pairs for
                          * a map), more than the .have bytes left for them
                          * can hold (each object takes a byte at least) */
    MPREAD_DEPTH,        /* the array/map would nest deeper than allowed */
    MPREAD_BAD_BYTE,     /* the first byte is 0xc1, which msgpack never uses */
};

/* How mpread_scan bounds the entries arrays and maps declare. */
enum mpread_bound {
    MPREAD_BOUND_EACH, /* each by the bytes after its own header: enough
                        * when msgpack-c only ever sees bytes the walk
                        * passed whole (every entry then exists) */
    MPREAD_BOUND_ALL,  /* all entries still to come, of every array and
                        * map open, together by the bytes left: needed when
                        * msgpack-c may see bytes the walk stopped in, as
                        * it allocates for every array and map it opens */
};

struct mpread_scan {
    enum mpread_status status;
    size_t end;     /* MPREAD_OK: offset just past the object */
    size_t at;      /* otherwise: offset of the offending object's first
                     * byte (for MPREAD_END, the length of the input) */
    int is_map;     /* MPREAD_COUNT, MPREAD_DEPTH: a map, else an array */
    uint64_t count; /* MPREAD_COUNT: entries declared */
    uint64_t need;  /* MPREAD_SHORT_HEADER, MPREAD_SHORT_BODY */
    size_t have;    /* MPREAD_SHORT_*: bytes that follow; MPREAD_COUNT:
                     * bytes after the header (MPREAD_BOUND_ALL: less one
                     * for each object the enclosing arrays and maps still
                     * need) */
};

/* Walks the one msgpack object that starts at buf[0] without building
 * anything, nesting arrays and maps at most max_depth deep (an array or
 * map header inside max_depth open ones is MPREAD_DEPTH; max_depth should
 * be small, each level is a stack frame), with declared entries bounded
 * as bound says, and fills *s: MPREAD_OK with the end of the object, or
 * the first problem met. Bytes after the object are not looked at. */
void mpread_scan(const char *buf, size_t len, int max_depth,
                 enum mpread_bound bound, struct mpread_scan *s);

/* Unpacks buf[0..len), which must hold exactly one msgpack object, into
 * *obj: arrays and maps are allocated in zone (initialised by the caller,
 * who destroys it when done with obj), str and bin point into buf. The
 * counts are bounded by mpread_scan first; everything else is left to
 * msgpack_unpack, whose every result is reported. name (a path) and what
 * ("checkpoint") name the input in messages. Returns 0, or ABC_EFORMAT
 * with err saying "truncated or corrupt", "trailing garbage", "truncated",
 * "not a <what>: msgpack parse error" or "nested deeper than 32". */
int mpread_unpack(const char *name, const char *what, const char *buf,
                  size_t len, msgpack_zone *zone, msgpack_object *obj,
                  char *err);

/* "nil", "bool", "int", "negative int", "float32", "float64", "str",
 * "array", "map", "bin", "ext"; "unknown type" for anything else. */
const char *mpread_type_name(msgpack_object_type t);

/* 1 when o is a str equal to s, else 0. */
int mpread_str_eq(const msgpack_object *o, const char *s);

/* Copies str o into buf as a C string. Returns 0, or -1 when it does not
 * fit in n-1 bytes or holds a NUL byte. */
int mpread_str_copy(const msgpack_object *o, char *buf, size_t n);

/* Copies str o into buf (n >= 4) for a message: anything unprintable
 * becomes '?', and a str longer than n-1 bytes is cut to n-4 followed by
 * "...". Returns buf. */
const char *mpread_str_show(const msgpack_object *o, char *buf, size_t n);

/* Sorts the entries of map o into vals[] by keys[] (vals[i] NULL when
 * keys[i] is absent). A non-map, a non-str key and a key given twice are
 * errors (ABC_EFORMAT); the first key not in keys[] is returned in
 * *unknown (NULL if none), for the caller to report when it sees fit. name
 * and where ("tensors[3]") name the map in messages. Pointers in vals
 * point into o. */
int mpread_map_fields(const char *name, const char *where,
                      const msgpack_object *o, const char *const *keys,
                      int nkeys, const msgpack_object **vals,
                      const msgpack_object **unknown, char *err);

/* Report key k of map where as unknown / key as missing; ABC_EFORMAT. */
int mpread_err_unknown_key(const char *name, const char *where,
                           const msgpack_object *k, char *err);
int mpread_err_missing_key(const char *name, const char *where, const char *key,
                           char *err);

/* Reads an integer in lo..hi into *out: ABC_EFORMAT for another type,
 * ABC_EVALUE out of range. field names it in messages. */
int mpread_get_int(const char *name, const char *field, const msgpack_object *o,
                   int64_t lo, int64_t hi, int64_t *out, char *err);

/* Reads any unsigned 64-bit integer into *out: ABC_EFORMAT for another
 * type, ABC_EVALUE for a negative one. */
int mpread_get_u64(const char *name, const char *field, const msgpack_object *o,
                   uint64_t *out, char *err);

/* The header every abcprune msgpack file starts its top-level map with:
 * checks that o is a map whose "format" is the str `format` and reads its
 * integer "version" into *version (the caller checks which it reads).
 * Errors say "<name>: not a <what>: ..." for another file type. Other keys
 * are not looked at. Returns 0, ABC_EFORMAT or ABC_EVALUE. */
int mpread_header(const char *name, const char *what, const msgpack_object *o,
                  const char *format, int64_t *version, char *err);

/* The map o at `where` with exactly the keys keys[0..nkeys), each once,
 * no other: vals[i] set for each. Returns 0 or ABC_EFORMAT naming the
 * missing or unknown key. */
int mpread_get_map(const char *name, const char *where, const msgpack_object *o,
                   const char *const *keys, int nkeys,
                   const msgpack_object **vals, char *err);

/* ---- section checksums ----
 * A file whose top-level map carries, under one key (crc_key, e.g.
 * "crc32"), a map from each of its other top-level keys ("sections")
 * except "format" and "version" to zlib's CRC-32 of that entry's encoded
 * bytes (key and value, as written). mpw_section_crcs (io/mpwrite.h)
 * writes it; mpread_check_sections checks it. */

/* Largest number of top-level entries a checksummed map may have. */
#define MPREAD_MAX_SECTIONS 32

/* Where one map entry lies in its encoding: offsets of the key's first
 * byte, of the value's first byte, and just past the value. */
struct mpread_span {
    size_t key, val, end;
};

/* Walks the map that starts at buf[0] and fills sp[i] for each entry that
 * lies whole in buf[0..len), at most max of them, in file order (which is
 * msgpack-c's order of via.map.ptr), stopping at the first entry that is
 * cut, malformed or nested deeper than MPREAD_MAX_DEPTH. *declared
 * receives the map's count. Returns the number of whole entries found
 * (fewer than *declared when it stopped early), or -1 when buf does not
 * start with a map. */
int mpread_map_spans(const char *buf, size_t len, struct mpread_span *sp,
                     int max, uint32_t *declared);

/* For bytes buf[0..len) that start a map but stop inside it (a truncated
 * or damaged file): writes the key of the first entry not whole, as
 * printable text, into out (n bytes), or "" when that key cannot be read
 * (the bytes end in the map's header or in the key). */
void mpread_cut_section(const char *buf, size_t len, char *out, size_t n);

/* Checks the section checksums of the top-level map top, which must be the
 * whole of buf[0..len) (as mpread_unpack accepted it): crc_key must be
 * present and a map with one uint CRC per section, no more, no fewer, and
 * each must equal the CRC-32 of the section's bytes. Returns 0, or
 * ABC_EFORMAT naming name and the section ("<name>: section \"foods\":
 * checksum mismatch ...: the file is corrupted") or what is wrong with the
 * checksum map. */
int mpread_check_sections(const char *name, const char *buf, size_t len,
                          const msgpack_object *top, const char *crc_key,
                          char *err);

#endif

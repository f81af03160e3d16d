/* mpread.c - reading untrusted msgpack (see mpread.h): the raw byte walk
 * run before msgpack-c, one-shot unpacking, and object readers. */
#include "io/mpread.h"

#include <stdio.h>
#include <string.h>

#include <zlib.h>

#include "core/err.h"

/* ---------------------------------------------------------------------
 * The raw byte walk
 * ------------------------------------------------------------------- */

static uint64_t read_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* What mpread_scan walks, and how. */
struct walk {
    const unsigned char *p;
    size_t len;
    int max_depth;
    enum mpread_bound bound;
    struct mpread_scan *s;
};

/* Walks the object at *off and advances *off past it. depth counts the
 * arrays and maps around it, outer the objects they still need after it.
 * Returns 0, or -1 with the problem in w->s. */
static int scan_at(const struct walk *w, size_t *off, int depth, uint64_t outer)
{
    const unsigned char *p = w->p;
    size_t len = w->len;
    struct mpread_scan *s = w->s;
    size_t at = *off;
    s->at = at;
    if (at >= len) {
        s->status = MPREAD_END;
        return -1;
    }
    unsigned b = p[at];
    int lenbytes = 0;  /* size of the length/count after the first byte */
    uint64_t skip = 0; /* fixed payload bytes after the header */
    int is_array = 0, is_map = 0, has_len = 0;
    uint64_t n = 0; /* length (str/bin/ext) or count (array/map) */

    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        /* fixint, nil, bool: one byte */
    } else if (b <= 0x8f) {
        is_map = 1;
        n = b & 0x0f;
    } else if (b <= 0x9f) {
        is_array = 1;
        n = b & 0x0f;
    } else if (b <= 0xbf) {
        has_len = 1;
        n = b & 0x1f;
    } else {
        /* clang-format off */
        switch (b) {
        case 0xc4: case 0xd9: has_len = 1; lenbytes = 1; break; /* bin8 str8 */
        case 0xc5: case 0xda: has_len = 1; lenbytes = 2; break;
        case 0xc6: case 0xdb: has_len = 1; lenbytes = 4; break;
        case 0xc7: has_len = 1; lenbytes = 1; skip = 1; break; /* ext: +type */
        case 0xc8: has_len = 1; lenbytes = 2; skip = 1; break;
        case 0xc9: has_len = 1; lenbytes = 4; skip = 1; break;
        case 0xca: skip = 4; break; /* float32 */
        case 0xcb: skip = 8; break; /* float64 */
        case 0xcc: case 0xd0: skip = 1; break; /* uint8 int8 */
        case 0xcd: case 0xd1: skip = 2; break;
        case 0xce: case 0xd2: skip = 4; break;
        case 0xcf: case 0xd3: skip = 8; break;
        case 0xd4: skip = 2; break; /* fixext 1..16, plus the type byte */
        case 0xd5: skip = 3; break;
        case 0xd6: skip = 5; break;
        case 0xd7: skip = 9; break;
        case 0xd8: skip = 17; break;
        case 0xdc: is_array = 1; lenbytes = 2; break;
        case 0xdd: is_array = 1; lenbytes = 4; break;
        case 0xde: is_map = 1; lenbytes = 2; break;
        case 0xdf: is_map = 1; lenbytes = 4; break;
        /* clang-format on */
        default: /* 0xc1 */
            s->status = MPREAD_BAD_BYTE;
            return -1;
        }
    }
    size_t left = len - at - 1; /* bytes after the first byte */
    if ((size_t)lenbytes > left) {
        s->status = MPREAD_SHORT_HEADER;
        s->need = (uint64_t)lenbytes;
        s->have = left;
        return -1;
    }
    if (lenbytes) n = read_be(p + at + 1, lenbytes);
    left -= (size_t)lenbytes;
    size_t body = at + 1 + (size_t)lenbytes;

    if (is_array || is_map) {
        s->is_map = is_map;
        if (depth >= w->max_depth) {
            s->status = MPREAD_DEPTH;
            return -1;
        }
        /* n < 2^32 and outer < max_depth * len: no overflow */
        uint64_t objs = is_map ? 2 * n : n;
        uint64_t room = left;
        if (w->bound == MPREAD_BOUND_ALL)
            room = left > outer ? left - outer : 0;
        if (objs > room) {
            s->status = MPREAD_COUNT;
            s->count = n;
            s->have = (size_t)room;
            return -1;
        }
        *off = body;
        for (uint64_t i = 0; i < objs; i++)
            if (scan_at(w, off, depth + 1, outer + (objs - 1 - i)) != 0)
                return -1;
        return 0;
    }
    uint64_t need = skip + (has_len ? n : 0);
    if (need > left) {
        s->status = MPREAD_SHORT_BODY;
        s->need = need;
        s->have = left;
        return -1;
    }
    *off = body + (size_t)need;
    return 0;
}

void mpread_scan(const char *buf, size_t len, int max_depth,
                 enum mpread_bound bound, struct mpread_scan *s)
{
    memset(s, 0, sizeof *s);
    const struct walk w = {(const unsigned char *)buf, len, max_depth, bound,
                           s};
    size_t off = 0;
    if (scan_at(&w, &off, 0, 0) == 0) {
        s->status = MPREAD_OK;
        s->end = off;
        s->at = 0;
    }
}

int mpread_unpack(const char *name, const char *what, const char *buf,
                  size_t len, msgpack_zone *zone, msgpack_object *obj,
                  char *err)
{
    /* Only the counts are this walk's to report; anything else it finds,
     * msgpack_unpack finds too and names below. It then sees bytes the
     * walk stopped in, hence MPREAD_BOUND_ALL; and it fails where the walk
     * stopped, before allocating for anything after (nesting included, as
     * the walk stops at msgpack-c's own depth). */
    struct mpread_scan s;
    mpread_scan(buf, len, MPREAD_MAX_DEPTH, MPREAD_BOUND_ALL, &s);
    if (s.status == MPREAD_COUNT)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: truncated or corrupt: the array/map at byte %zu "
                        "declares %llu entries, more than the %zu bytes after "
                        "it hold",
                        name, s.at, (unsigned long long)s.count, len - s.at);

    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack(buf, len, &off, zone, obj);
    switch (ur) {
    case MSGPACK_UNPACK_SUCCESS:
        return 0;
    case MSGPACK_UNPACK_EXTRA_BYTES:
        return abc_errf(err, ABC_EFORMAT,
                        "%s: trailing garbage: %zu bytes after the %s ends at "
                        "byte %zu",
                        name, len - off, what, off);
    case MSGPACK_UNPACK_CONTINUE:
        return abc_errf(err, ABC_EFORMAT,
                        "%s: truncated: %zu bytes end in the middle of the %s",
                        name, len, what);
    case MSGPACK_UNPACK_PARSE_ERROR:
        return abc_errf(err, ABC_EFORMAT, "%s: not a %s: msgpack parse error",
                        name, what);
    case MSGPACK_UNPACK_NOMEM_ERROR:
        /* msgpack-c also says NOMEM for nesting deeper than its parser
         * stack; the counts were bounded above, so that is the likely
         * cause. */
        return abc_errf(err, ABC_EFORMAT,
                        "%s: not a %s: arrays/maps nested deeper than %d, or "
                        "out of memory unpacking",
                        name, what, MPREAD_MAX_DEPTH);
    }
    return abc_errf(err, ABC_EFORMAT,
                    "%s: msgpack_unpack returned unexpected code %d", name,
                    (int)ur);
}

/* ---------------------------------------------------------------------
 * Objects
 * ------------------------------------------------------------------- */

const char *mpread_type_name(msgpack_object_type t)
{
    switch (t) {
    case MSGPACK_OBJECT_NIL:
        return "nil";
    case MSGPACK_OBJECT_BOOLEAN:
        return "bool";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return "int";
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return "negative int";
    case MSGPACK_OBJECT_FLOAT32:
        return "float32";
    case MSGPACK_OBJECT_FLOAT64:
        return "float64";
    case MSGPACK_OBJECT_STR:
        return "str";
    case MSGPACK_OBJECT_ARRAY:
        return "array";
    case MSGPACK_OBJECT_MAP:
        return "map";
    case MSGPACK_OBJECT_BIN:
        return "bin";
    case MSGPACK_OBJECT_EXT:
        return "ext";
    }
    return "unknown type";
}

int mpread_str_eq(const msgpack_object *o, const char *s)
{
    size_t k = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == k &&
           memcmp(o->via.str.ptr, s, k) == 0;
}

int mpread_str_copy(const msgpack_object *o, char *buf, size_t n)
{
    size_t k = o->via.str.size;
    if (k >= n || memchr(o->via.str.ptr, '\0', k)) return -1;
    memcpy(buf, o->via.str.ptr, k);
    buf[k] = '\0';
    return 0;
}

const char *mpread_str_show(const msgpack_object *o, char *buf, size_t n)
{
    size_t size = o->via.str.size, k = size;
    int cut = size > n - 1;
    if (cut) k = n >= 4 ? n - 4 : n - 1;
    for (size_t i = 0; i < k; i++) {
        unsigned char c = (unsigned char)o->via.str.ptr[i];
        buf[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (cut && n >= 4) {
        memcpy(buf + k, "...", 3);
        k += 3;
    }
    buf[k] = '\0';
    return buf;
}

int mpread_map_fields(const char *name, const char *where,
                      const msgpack_object *o, const char *const *keys,
                      int nkeys, const msgpack_object **vals,
                      const msgpack_object **unknown, char *err)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return abc_errf(err, ABC_EFORMAT, "%s: %s: expected a map, got %s",
                        name, where, mpread_type_name(o->type));
    for (int i = 0; i < nkeys; i++)
        vals[i] = NULL;
    *unknown = NULL;
    for (uint32_t j = 0; j < o->via.map.size; j++) {
        const msgpack_object *k = &o->via.map.ptr[j].key;
        if (k->type != MSGPACK_OBJECT_STR)
            return abc_errf(err, ABC_EFORMAT,
                            "%s: %s: key %u is a %s, expected str", name, where,
                            j, mpread_type_name(k->type));
        int i = 0;
        while (i < nkeys && !mpread_str_eq(k, keys[i]))
            i++;
        if (i == nkeys) {
            if (!*unknown) *unknown = k;
            continue;
        }
        if (vals[i])
            return abc_errf(err, ABC_EFORMAT,
                            "%s: %s: key \"%s\" appears twice", name, where,
                            keys[i]);
        vals[i] = &o->via.map.ptr[j].val;
    }
    return 0;
}

int mpread_err_unknown_key(const char *name, const char *where,
                           const msgpack_object *k, char *err)
{
    char show[64];
    return abc_errf(err, ABC_EFORMAT, "%s: %s: unknown key \"%s\"", name, where,
                    mpread_str_show(k, show, sizeof show));
}

int mpread_err_missing_key(const char *name, const char *where, const char *key,
                           char *err)
{
    return abc_errf(err, ABC_EFORMAT, "%s: %s: missing \"%s\"", name, where,
                    key);
}

int mpread_get_int(const char *name, const char *field, const msgpack_object *o,
                   int64_t lo, int64_t hi, int64_t *out, char *err)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)INT64_MAX || (int64_t)o->via.u64 > hi ||
            (int64_t)o->via.u64 < lo)
            return abc_errf(err, ABC_EVALUE,
                            "%s: %s: %llu out of range %lld..%lld", name, field,
                            (unsigned long long)o->via.u64, (long long)lo,
                            (long long)hi);
        *out = (int64_t)o->via.u64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        if (o->via.i64 < lo || o->via.i64 > hi)
            return abc_errf(
                err, ABC_EVALUE, "%s: %s: %lld out of range %lld..%lld", name,
                field, (long long)o->via.i64, (long long)lo, (long long)hi);
        *out = o->via.i64;
        return 0;
    }
    return abc_errf(err, ABC_EFORMAT, "%s: %s: expected an integer, got %s",
                    name, field, mpread_type_name(o->type));
}

int mpread_get_u64(const char *name, const char *field, const msgpack_object *o,
                   uint64_t *out, char *err)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *out = o->via.u64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return abc_errf(err, ABC_EVALUE, "%s: %s: %lld, expected >= 0", name,
                        field, (long long)o->via.i64);
    return abc_errf(err, ABC_EFORMAT, "%s: %s: expected an integer, got %s",
                    name, field, mpread_type_name(o->type));
}

int mpread_header(const char *name, const char *what, const msgpack_object *o,
                  const char *format, int64_t *version, char *err)
{
    char show[64];
    if (o->type != MSGPACK_OBJECT_MAP)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: not a %s: top level is a msgpack %s, expected a "
                        "map",
                        name, what, mpread_type_name(o->type));
    const msgpack_object *f = NULL, *v = NULL;
    for (uint32_t j = 0; j < o->via.map.size; j++) {
        const msgpack_object *k = &o->via.map.ptr[j].key;
        if (mpread_str_eq(k, "format")) f = &o->via.map.ptr[j].val;
        if (mpread_str_eq(k, "version")) v = &o->via.map.ptr[j].val;
    }
    if (!f)
        return abc_errf(err, ABC_EFORMAT, "%s: not a %s: no \"format\" key",
                        name, what);
    if (!mpread_str_eq(f, format)) {
        if (f->type == MSGPACK_OBJECT_STR)
            return abc_errf(err, ABC_EFORMAT,
                            "%s: not a %s: format is \"%s\", expected \"%s\"",
                            name, what, mpread_str_show(f, show, sizeof show),
                            format);
        return abc_errf(err, ABC_EFORMAT,
                        "%s: not a %s: format is a %s, expected str \"%s\"",
                        name, what, mpread_type_name(f->type), format);
    }
    if (!v) return mpread_err_missing_key(name, "top level", "version", err);
    return mpread_get_int(name, "version", v, INT64_MIN, INT64_MAX, version,
                          err);
}

int mpread_get_map(const char *name, const char *where, const msgpack_object *o,
                   const char *const *keys, int nkeys,
                   const msgpack_object **vals, char *err)
{
    const msgpack_object *unk;
    int rc = mpread_map_fields(name, where, o, keys, nkeys, vals, &unk, err);
    if (rc) return rc;
    if (unk) return mpread_err_unknown_key(name, where, unk, err);
    for (int i = 0; i < nkeys; i++)
        if (!vals[i]) return mpread_err_missing_key(name, where, keys[i], err);
    return 0;
}

/* ---------------------------------------------------------------------
 * Section checksums
 * ------------------------------------------------------------------- */

int mpread_map_spans(const char *buf, size_t len, struct mpread_span *sp,
                     int max, uint32_t *declared)
{
    const unsigned char *p = (const unsigned char *)buf;
    size_t off;
    uint32_t n;
    if (len < 1) return -1;
    if (p[0] >= 0x80 && p[0] <= 0x8f) {
        n = p[0] & 0x0f;
        off = 1;
    } else if (p[0] == 0xde && len >= 3) {
        n = (uint32_t)read_be(p + 1, 2);
        off = 3;
    } else if (p[0] == 0xdf && len >= 5) {
        n = (uint32_t)read_be(p + 1, 4);
        off = 5;
    } else {
        return -1;
    }
    *declared = n;
    int found = 0;
    for (uint32_t i = 0; i < n && found < max && off < len; i++) {
        struct mpread_scan s;
        size_t key = off;
        mpread_scan(buf + off, len - off, MPREAD_MAX_DEPTH - 1,
                    MPREAD_BOUND_EACH, &s);
        if (s.status != MPREAD_OK) break;
        off += s.end;
        size_t val = off;
        mpread_scan(buf + off, len - off, MPREAD_MAX_DEPTH - 1,
                    MPREAD_BOUND_EACH, &s);
        if (s.status != MPREAD_OK) break;
        off += s.end;
        sp[found].key = key;
        sp[found].val = val;
        sp[found].end = off;
        found++;
    }
    return found;
}

void mpread_cut_section(const char *buf, size_t len, char *out, size_t n)
{
    struct mpread_span sp[MPREAD_MAX_SECTIONS];
    uint32_t declared = 0;
    out[0] = '\0';
    int k = mpread_map_spans(buf, len, sp, MPREAD_MAX_SECTIONS, &declared);
    if (k < 0 || (uint32_t)k >= declared || k == MPREAD_MAX_SECTIONS) return;
    const unsigned char *p = (const unsigned char *)buf;
    size_t off = k ? sp[k - 1].end : p[0] == 0xde ? 3 : p[0] == 0xdf ? 5 : 1;
    size_t klen = 0, at = 0;
    if (off < len && p[off] >= 0xa0 && p[off] <= 0xbf) {
        klen = p[off] & 0x1fu;
        at = off + 1;
    } else if (off + 1 < len && p[off] == 0xd9) {
        klen = p[off + 1];
        at = off + 2;
    }
    if (!klen || at + klen > len || klen >= n) return;
    for (size_t i = 0; i < klen; i++)
        out[i] = p[at + i] >= 0x20 && p[at + i] < 0x7f ? (char)p[at + i] : '?';
    out[klen] = '\0';
}

/* 1 for the keys every abcprune file starts with, which carry no CRC. */
static int is_header_key(const msgpack_object *k)
{
    return mpread_str_eq(k, "format") || mpread_str_eq(k, "version");
}

int mpread_check_sections(const char *name, const char *buf, size_t len,
                          const msgpack_object *top, const char *crc_key,
                          char *err)
{
    struct mpread_span sp[MPREAD_MAX_SECTIONS];
    uint32_t declared = 0;
    char show[64];
    if (top->type != MSGPACK_OBJECT_MAP)
        return abc_errf(err, ABC_EFORMAT, "%s: top level: expected a map",
                        name);
    int n = mpread_map_spans(buf, len, sp, MPREAD_MAX_SECTIONS, &declared);
    if (n < 0 || (uint32_t)n != declared || declared != top->via.map.size ||
        (n > 0 && sp[n - 1].end != len))
        return abc_errf(err, ABC_EFORMAT,
                        "%s: top level: %u entries, expected at most %d "
                        "sections with checksums",
                        name, top->via.map.size, MPREAD_MAX_SECTIONS);
    const msgpack_object_kv *kv = top->via.map.ptr;
    const msgpack_object *crcs = NULL;
    for (int i = 0; i < n; i++)
        if (mpread_str_eq(&kv[i].key, crc_key)) crcs = &kv[i].val;
    if (!crcs) return mpread_err_missing_key(name, "top level", crc_key, err);
    if (crcs->type != MSGPACK_OBJECT_MAP)
        return abc_errf(err, ABC_EFORMAT, "%s: %s: expected a map, got %s",
                        name, crc_key, mpread_type_name(crcs->type));
    /* which section each checksum is for: each once, each known */
    int have[MPREAD_MAX_SECTIONS] = {0};
    for (uint32_t j = 0; j < crcs->via.map.size; j++) {
        const msgpack_object_kv *c = &crcs->via.map.ptr[j];
        int at = -1;
        for (int i = 0; i < n && at < 0; i++)
            if (c->key.type == MSGPACK_OBJECT_STR &&
                kv[i].key.type == MSGPACK_OBJECT_STR &&
                !is_header_key(&kv[i].key) &&
                !mpread_str_eq(&kv[i].key, crc_key) &&
                c->key.via.str.size == kv[i].key.via.str.size &&
                !memcmp(c->key.via.str.ptr, kv[i].key.via.str.ptr,
                        c->key.via.str.size))
                at = i;
        if (at < 0)
            return abc_errf(
                err, ABC_EFORMAT,
                "%s: %s: a checksum for \"%s\", which is not a section "
                "of this file",
                name, crc_key,
                c->key.type == MSGPACK_OBJECT_STR
                    ? mpread_str_show(&c->key, show, sizeof show)
                    : mpread_type_name(c->key.type));
        if (have[at])
            return abc_errf(
                err, ABC_EFORMAT, "%s: %s: two checksums for section \"%s\"",
                name, crc_key, mpread_str_show(&c->key, show, sizeof show));
        have[at] = 1;
        char field[96];
        snprintf(field, sizeof field, "%s.%s", crc_key,
                 mpread_str_show(&c->key, show, sizeof show));
        int64_t want = 0;
        int rc =
            mpread_get_int(name, field, &c->val, 0, UINT32_MAX, &want, err);
        if (rc) return rc;
        uLong crc = crc32(0L, Z_NULL, 0);
        crc = crc32(crc, (const Bytef *)buf + sp[at].key,
                    (uInt)(sp[at].end - sp[at].key));
        if ((uint32_t)crc != (uint32_t)want)
            return abc_errf(err, ABC_EFORMAT,
                            "%s: section \"%s\": checksum mismatch (CRC-32 "
                            "%08x, the file records %08x): the file is "
                            "corrupted",
                            name, mpread_str_show(&c->key, show, sizeof show),
                            (unsigned)crc, (unsigned)want);
    }
    for (int i = 0; i < n; i++)
        if (!have[i] && !is_header_key(&kv[i].key) &&
            !mpread_str_eq(&kv[i].key, crc_key))
            return abc_errf(err, ABC_EFORMAT,
                            "%s: section \"%s\": no checksum in \"%s\"", name,
                            kv[i].key.type == MSGPACK_OBJECT_STR
                                ? mpread_str_show(&kv[i].key, show, sizeof show)
                                : mpread_type_name(kv[i].key.type),
                            crc_key);
    return 0;
}

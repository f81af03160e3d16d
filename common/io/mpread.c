/* mpread.c - reading untrusted msgpack (see mpread.h): the raw byte walk
 * run before msgpack-c, one-shot unpacking, and object readers. */
#include "io/mpread.h"

#include <string.h>

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

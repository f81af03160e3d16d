/* colony_test_util.h - what test_colony.c and test_colony_file.c share:
 * the reference parameters, the deterministic test fitness, file helpers,
 * colony comparison, and the checkpoint mutator (repack a saved colony
 * with one field changed, reseal its checksums). Static inline: each test uses
 * a part. */
#ifndef ABC_COLONY_TEST_UTIL_H
#define ABC_COLONY_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <zlib.h>

#include "check.h"
#include "colony.h"
#include "core/err.h"
#include "core/rng.h"

static inline struct colony_params ref_params(uint64_t seed)
{
    struct colony_params p = {.nlayers = 13,
                              .K = 9,
                              .sn = 10,
                              .limit = 5,
                              .change_dims = 2,
                              .max_cycles = 10,
                              .seed = seed,
                              .redraw_same = 0};
    return p;
}

/* The test fitness: 1 at the target code, falling quadratically with the
 * distance, plus up to 1e-3 of noise from the evaluation seed (as a real
 * evaluation's training noise). */
static inline int target_code(int j, int K)
{
    return 1 + (3 * j + 1) % K;
}

static inline double test_fitness(const struct colony_params *p,
                                  const int *code, uint64_t seed)
{
    double d = 0;
    for (int j = 0; j < p->nlayers; j++) {
        double e = code[j] - target_code(j, p->K);
        d += e * e;
    }
    double noise = (double)(rng_derive(seed, 7, 7, 7) >> 11) * 0x1.0p-53;
    return 1.0 - d / (p->nlayers * (double)(p->K - 1) * (p->K - 1)) +
           1e-3 * noise;
}

static inline void hash_u64(uint64_t *h, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        *h ^= (v >> (8 * i)) & 0xff;
        *h *= 0x100000001b3ULL;
    }
}

static inline int read_all(const char *path, unsigned char **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 4096, n = 0;
    unsigned char *b = malloc(cap);
    for (;;) {
        if (n == cap) b = realloc(b, cap *= 2);
        size_t got = fread(b + n, 1, cap - n, f);
        if (got == 0) break;
        n += got;
    }
    fclose(f);
    *buf = b;
    *len = n;
    return 0;
}

static inline void write_all(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(buf, 1, len, f) != len)) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    fclose(f);
}

static inline int same_colony(const struct colony *a, const struct colony *b)
{
    size_t csz = sizeof(int) * (size_t)a->p.nlayers;
    if (a->phase != b->phase || a->cycle != b->cycle ||
        a->evaluations != b->evaluations ||
        a->next_eval_id != b->next_eval_id || a->has_best != b->has_best ||
        a->best_fitness != b->best_fitness ||
        a->best_eval_id != b->best_eval_id ||
        memcmp(a->best_code, b->best_code, csz))
        return 0;
    for (int i = 0; i < a->p.sn; i++)
        if (a->foods[i].fitness != b->foods[i].fitness ||
            a->foods[i].trial != b->foods[i].trial ||
            memcmp(a->foods[i].code, b->foods[i].code, csz))
            return 0;
    return 1;
}

/* ---------------------------------------------------------------------
 * Checkpoint errors
 * ------------------------------------------------------------------- */

enum { M_INT, M_DOUBLE, M_STR, M_NIL, M_DELETE, M_ADD };
struct mut {
    const char *path; /* "" top level, "params.k", "foods[0].code[1]" */
    int kind;
    int64_t i;
    double d;
    const char *s;
    const char *expect; /* substring of the error */
};

static inline void repack(msgpack_packer *pk, const msgpack_object *o,
                          const char *cur, const struct mut *m)
{
    if (!strcmp(cur, m->path) && m->kind != M_DELETE && m->kind != M_ADD) {
        switch (m->kind) {
        case M_INT:
            msgpack_pack_int64(pk, m->i);
            break;
        case M_DOUBLE:
            msgpack_pack_double(pk, m->d);
            break;
        case M_STR:
            msgpack_pack_str_with_body(pk, m->s, strlen(m->s));
            break;
        default:
            msgpack_pack_nil(pk);
        }
        return;
    }
    char sub[256];
    if (o->type == MSGPACK_OBJECT_MAP) {
        uint32_t n = o->via.map.size, keep = n;
        for (uint32_t j = 0; j < n; j++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[j];
            snprintf(sub, sizeof sub, "%s%s%.*s", cur, *cur ? "." : "",
                     (int)kv->key.via.str.size, kv->key.via.str.ptr);
            if (m->kind == M_DELETE && !strcmp(sub, m->path)) keep--;
        }
        int add = m->kind == M_ADD && !strcmp(cur, m->path);
        msgpack_pack_map(pk, keep + (uint32_t)add);
        for (uint32_t j = 0; j < n; j++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[j];
            snprintf(sub, sizeof sub, "%s%s%.*s", cur, *cur ? "." : "",
                     (int)kv->key.via.str.size, kv->key.via.str.ptr);
            if (m->kind == M_DELETE && !strcmp(sub, m->path)) continue;
            msgpack_pack_object(pk, kv->key);
            repack(pk, &kv->val, sub, m);
        }
        if (add) {
            msgpack_pack_str_with_body(pk, "extra", 5);
            msgpack_pack_int(pk, 1);
        }
    } else if (o->type == MSGPACK_OBJECT_ARRAY) {
        msgpack_pack_array(pk, o->via.array.size);
        for (uint32_t j = 0; j < o->via.array.size; j++) {
            snprintf(sub, sizeof sub, "%s[%u]", cur, j);
            repack(pk, &o->via.array.ptr[j], sub, m);
        }
    } else {
        msgpack_pack_object(pk, *o);
    }
}

/* The "crc32" map a colony file should carry, computed independently of
 * the product (io/mpread.c): for each top-level entry but format, version
 * and crc32, zlib's CRC-32 of its key and value as msgpack-c encodes them
 * (the writer's bytes). reseal() rebuilds the file in sb with that map, so
 * a mutated file reaches the field checks; a file without "crc32" is left
 * as it is. */
static inline uint32_t entry_crc(const msgpack_object_kv *kv)
{
    msgpack_sbuffer t;
    msgpack_sbuffer_init(&t);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &t, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, kv->key);
    msgpack_pack_object(&pk, kv->val);
    uint32_t c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), (const Bytef *)t.data,
                                 (uInt)t.size);
    msgpack_sbuffer_destroy(&t);
    return c;
}

static inline int is_section(const msgpack_object *k)
{
    static const char *const not [] = {"format", "version", "crc32"};
    for (int i = 0; i < 3; i++)
        if (k->type == MSGPACK_OBJECT_STR &&
            k->via.str.size == strlen(not [i]) &&
            !memcmp(k->via.str.ptr, not [i], k -> via.str.size))
            return 0;
    return 1;
}

/* 1 for a top-level key that carries a CRC. */
static inline int is_section_name(const char *k)
{
    return strcmp(k, "format") && strcmp(k, "version") && strcmp(k, "crc32");
}

static inline void reseal(msgpack_sbuffer *sb)
{
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    msgpack_object o;
    size_t off = 0;
    if (msgpack_unpack(sb->data, sb->size, &off, &zone, &o) !=
            MSGPACK_UNPACK_SUCCESS ||
        o.type != MSGPACK_OBJECT_MAP) {
        msgpack_zone_destroy(&zone);
        return;
    }
    uint32_t n = o.via.map.size, nsec = 0;
    int has = 0;
    for (uint32_t j = 0; j < n; j++) {
        const msgpack_object *k = &o.via.map.ptr[j].key;
        has |= k->type == MSGPACK_OBJECT_STR && k->via.str.size == 5 &&
               !memcmp(k->via.str.ptr, "crc32", 5);
        nsec += (uint32_t)is_section(k);
    }
    if (has) {
        msgpack_sbuffer out;
        msgpack_sbuffer_init(&out);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, n);
        for (uint32_t j = 0; j < n; j++) {
            const msgpack_object_kv *kv = &o.via.map.ptr[j];
            msgpack_pack_object(&pk, kv->key);
            int is_crc = kv->key.type == MSGPACK_OBJECT_STR &&
                         kv->key.via.str.size == 5 &&
                         !memcmp(kv->key.via.str.ptr, "crc32", 5);
            if (!is_crc) {
                msgpack_pack_object(&pk, kv->val);
                continue;
            }
            msgpack_pack_map(&pk, nsec);
            for (uint32_t i = 0; i < n; i++)
                if (is_section(&o.via.map.ptr[i].key)) {
                    msgpack_pack_object(&pk, o.via.map.ptr[i].key);
                    msgpack_pack_uint32(&pk, entry_crc(&o.via.map.ptr[i]));
                }
        }
        msgpack_sbuffer_clear(sb);
        msgpack_sbuffer_write(sb, out.data, out.size);
        msgpack_sbuffer_destroy(&out);
    }
    msgpack_zone_destroy(&zone);
}

/* Loads path expecting a failure whose message names the path and holds
 * expect; the file must be unchanged and *out NULL. */
static inline void expect_load_fails(const char *path, const char *expect,
                                     const char *what)
{
    char err[ABC_ERRLEN] = "";
    unsigned char *before = NULL, *after = NULL;
    size_t nb = 0, na = 0;
    read_all(path, &before, &nb);
    struct colony *c = (struct colony *)1;
    int rc = colony_load(path, &c, err);
    CHECK(rc < 0 && c == NULL, "%s: loaded (rc %d)", what, rc);
    CHECK(strstr(err, path) && (!expect || strstr(err, expect)),
          "%s: message \"%s\" lacks \"%s\"", what, err, expect ? expect : "");
    read_all(path, &after, &na);
    CHECK(na == nb && !memcmp(before, after, nb), "%s: file changed", what);
    if (rc == 0) colony_destroy(c);
    free(before);
    free(after);
}

#endif

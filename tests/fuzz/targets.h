/* targets.h - what each fuzz target does with one input, shared by the
 * libFuzzer executables (tests/fuzz/fuzz_NAME.c, clang) and the replay of
 * the corpora and regression inputs in the normal build
 * (tests/test_fuzz_regress.c, gcc). Each fuzz_run_NAME feeds the bytes to
 * the product's entry point, frees what it built, checks what must hold of
 * anything accepted (it survives a round trip through the writer) and
 * returns the entry point's code: 0 accepted, < 0 refused with a message in
 * err. A broken round trip or an empty refusal calls abort(): a finding.
 * Static inline: each executable uses a part. */
#ifndef ABC_FUZZ_TARGETS_H
#define ABC_FUZZ_TARGETS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "colony.h"
#include "core/err.h"
#include "data/data.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/mpread.h"
#include "io/mpwrite.h"
#include "io/safetensors.h"
#include "messages.h"
#include "nn/model.h"
#include "simulate.h"

/* The name the in-memory entry points give the input in messages. */
#define FUZZ_NAME "fuzz-input"

/* A finding that is not a crash: print it and abort (libFuzzer saves the
 * input; the replay test dies, so CTest reports it). */
static inline void fuzz_fail(const char *what, const char *err)
{
    fprintf(stderr, "fuzz finding: %s: %s\n", what, err ? err : "");
    abort();
}

/* A refusal must say why. */
static inline int fuzz_refused(int rc, const char *err)
{
    if (rc < 0 && !err[0]) fuzz_fail("refused without a message", "");
    return rc;
}

/* ---- temp files (for loaders that only take paths) ---------------------- */

static char fuzz_dir_[64];

static inline void fuzz_cleanup_(void)
{
    static const char *const leaves[] = {"images", "labels", "cifar", "colony"};
    char p[128];
    for (size_t i = 0; i < sizeof leaves / sizeof leaves[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", fuzz_dir_, leaves[i]);
        remove(p);
    }
    rmdir(fuzz_dir_);
}

/* Writes buf[0..n) to <a private temp dir>/leaf; returns its path (static
 * storage, one per leaf name used at a time). */
static inline const char *fuzz_write_tmp(const char *leaf, const void *buf,
                                         size_t n, char *path, size_t cap)
{
    if (!fuzz_dir_[0]) {
        snprintf(fuzz_dir_, sizeof fuzz_dir_, "/tmp/abcfuzz.XXXXXX");
        if (!mkdtemp(fuzz_dir_)) fuzz_fail("mkdtemp", fuzz_dir_);
        atexit(fuzz_cleanup_);
    }
    snprintf(path, cap, "%s/%s", fuzz_dir_, leaf);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(buf, 1, n, f) != n) || fclose(f) != 0)
        fuzz_fail("cannot write temp file", path);
    return path;
}

/* ---- the targets -------------------------------------------------------- */

/* config: the YAML text up to the first NUL byte (config_load_mem), then
 * each further NUL-terminated piece as a --set KEY=VALUE (config_set). */
static inline int fuzz_run_config(const uint8_t *d, size_t n, char *err)
{
    struct config c;
    config_defaults(&c);
    const char *s = (const char *)d;
    const char *nul = memchr(s, '\0', n);
    size_t ylen = nul ? (size_t)(nul - s) : n;
    err[0] = '\0';
    int rc = config_load_mem(&c, FUZZ_NAME, s, ylen, err);
    if (rc) return fuzz_refused(rc, err);
    size_t at = ylen + 1;
    char set[512];
    while (at < n) {
        const char *p = s + at;
        const char *end = memchr(p, '\0', n - at);
        size_t k = end ? (size_t)(end - p) : n - at;
        at += k + 1;
        if (k >= sizeof set) k = sizeof set - 1;
        memcpy(set, p, k);
        set[k] = '\0';
        struct config before = c;
        rc = config_set(&c, set, err);
        if (rc) {
            if (memcmp(&before, &c, sizeof c) != 0)
                fuzz_fail("config_set changed the config on error", err);
            return fuzz_refused(rc, err);
        }
    }
    return 0;
}

/* Model checkpoints (checkpoint_load_mem): what loads packs again and
 * loads again to the same bytes. */
static inline int fuzz_run_checkpoint(const uint8_t *d, size_t n, char *err)
{
    struct model *m = NULL;
    struct train_state st;
    memset(&st, 0, sizeof st);
    err[0] = '\0';
    int rc = checkpoint_load_mem(FUZZ_NAME, (const char *)d, n, &m, &st, err);
    if (rc) return fuzz_refused(rc, err);
    char *b1 = NULL, *b2 = NULL;
    size_t l1 = 0, l2 = 0;
    struct model *m2 = NULL;
    struct train_state st2;
    memset(&st2, 0, sizeof st2);
    if (checkpoint_pack(m, &st, &b1, &l1, err) != 0)
        fuzz_fail("a loaded checkpoint does not pack", err);
    if (checkpoint_load_mem("repacked", b1, l1, &m2, &st2, err) != 0)
        fuzz_fail("a repacked checkpoint does not load", err);
    if (checkpoint_pack(m2, &st2, &b2, &l2, err) != 0 || l1 != l2 ||
        memcmp(b1, b2, l1) != 0)
        fuzz_fail("checkpoint round trip differs", err);
    free(b1);
    free(b2);
    model_destroy(m2);
    free(st2.velocity);
    model_destroy(m);
    free(st.velocity);
    return 0;
}

/* Colony checkpoints (colony_load_mem): what loads saves and loads again
 * to the same bytes. */
static inline int fuzz_colony_one(const uint8_t *d, size_t n, char *err);

/* The input with its "crc32" section recomputed (NULL when it is not a
 * map holding one): without this the fuzzer, which cannot forge CRCs,
 * would never get past the checksums to the field checks behind them.
 * Caller frees. */
static inline char *fuzz_colony_reseal(const uint8_t *d, size_t n, size_t *len)
{
    struct mpread_span sp[MPREAD_MAX_SECTIONS];
    uint32_t declared = 0;
    int k = mpread_map_spans((const char *)d, n, sp, MPREAD_MAX_SECTIONS,
                             &declared);
    if (k < 1 || (uint32_t)k != declared || sp[k - 1].end != n) return NULL;
    int crc = -1;
    for (int i = 0; i < k; i++)
        if (sp[i].val - sp[i].key == 6 && !memcmp(d + sp[i].key,
                                                  "\xa5"
                                                  "crc32",
                                                  6))
            crc = i;
    if (crc < 0) return NULL;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, (size_t)k);
    for (int i = 0; i < k; i++)
        if (i != crc)
            msgpack_sbuffer_write(&sb, (const char *)d + sp[i].key,
                                  sp[i].end - sp[i].key);
    if (mpw_section_crcs(&sb, 0, "crc32") != 0) {
        msgpack_sbuffer_destroy(&sb);
        return NULL;
    }
    *len = sb.size;
    return msgpack_sbuffer_release(&sb);
}

static inline int fuzz_run_colony(const uint8_t *d, size_t n, char *err)
{
    size_t rl = 0;
    char *re = fuzz_colony_reseal(d, n, &rl);
    if (re) {
        char e2[ABC_ERRLEN];
        fuzz_colony_one((const uint8_t *)re, rl, e2);
        free(re);
    }
    return fuzz_colony_one(d, n, err);
}

static inline int fuzz_colony_one(const uint8_t *d, size_t n, char *err)
{
    struct colony *c = NULL;
    err[0] = '\0';
    int rc = colony_load_mem(FUZZ_NAME, (const char *)d, n, &c, err);
    if (rc) {
        if (c) fuzz_fail("colony_load_mem: refused, but *out set", err);
        return fuzz_refused(rc, err);
    }
    char path[128];
    fuzz_write_tmp("colony", "", 0, path, sizeof path);
    if (colony_save(c, path, err) != 0)
        fuzz_fail("a loaded colony does not save", err);
    struct colony *c2 = NULL;
    if (colony_load(path, &c2, err) != 0)
        fuzz_fail("a saved colony does not load", err);
    colony_destroy(c2);
    colony_destroy(c);
    return 0;
}

/* The wire messages: proto_peek_type and every decoder on the same bytes;
 * each message decoded packs and decodes again to the same struct. Returns
 * the code of the decoder of the peeked type (or the peek's). */
static inline int fuzz_run_proto(const uint8_t *d, size_t n, char *err)
{
    const char *b = (const char *)d;
    enum proto_type t = 0;
    char e2[ABC_ERRLEN];
    err[0] = '\0';
    int peek = proto_peek_type(b, n, &t, err);
    int rc_of_type = fuzz_refused(peek, err);
    msgpack_sbuffer sb;
#define FUZZ_PROTO_ONE(T, TYPE, unpack, pack)                                  \
    do {                                                                       \
        static struct T m1, m2;                                                \
        e2[0] = '\0';                                                          \
        int rc = unpack(b, n, &m1, e2);                                        \
        fuzz_refused(rc, e2);                                                  \
        if (peek == 0 && t == (TYPE)) {                                        \
            rc_of_type = rc;                                                   \
            snprintf(err, ABC_ERRLEN, "%s", e2);                               \
        }                                                                      \
        if (rc == 0) {                                                         \
            if (peek != 0 || t != (TYPE))                                      \
                fuzz_fail("decoded, but peek disagrees", err);                 \
            msgpack_sbuffer_init(&sb);                                         \
            if (pack(&m1, &sb, e2) != 0)                                       \
                fuzz_fail("a decoded message does not pack", e2);              \
            if (unpack(sb.data, sb.size, &m2, e2) != 0)                        \
                fuzz_fail("a repacked message does not decode", e2);           \
            if (memcmp(&m1, &m2, sizeof m1) != 0)                              \
                fuzz_fail("message round trip differs", #T);                   \
            msgpack_sbuffer_destroy(&sb);                                      \
        }                                                                      \
    } while (0)
    FUZZ_PROTO_ONE(proto_eval_request, PROTO_EVAL_REQUEST,
                   proto_unpack_eval_request, proto_pack_eval_request);
    FUZZ_PROTO_ONE(proto_eval_result, PROTO_EVAL_RESULT,
                   proto_unpack_eval_result, proto_pack_eval_result);
    FUZZ_PROTO_ONE(proto_shutdown, PROTO_SHUTDOWN, proto_unpack_shutdown,
                   proto_pack_shutdown);
    FUZZ_PROTO_ONE(proto_train_phase, PROTO_TRAIN_PHASE,
                   proto_unpack_train_phase, proto_pack_train_phase);
#undef FUZZ_PROTO_ONE
    return rc_of_type;
}

/* IDX (dataset_load_idx): the first two bytes (big-endian, modulo what
 * follows + 1) say how many of the rest are the image file; the remainder
 * is the label file. Both go through temp files (the loader reads paths,
 * gzip'd or plain). */
static inline int fuzz_run_idx(const uint8_t *d, size_t n, char *err)
{
    if (n < 2) {
        snprintf(err, ABC_ERRLEN, "%s: shorter than the 2-byte split",
                 FUZZ_NAME);
        return ABC_EFORMAT;
    }
    size_t rest = n - 2, split = ((size_t)d[0] << 8 | d[1]) % (rest + 1);
    char ip[128], lp[128];
    fuzz_write_tmp("images", d + 2, split, ip, sizeof ip);
    fuzz_write_tmp("labels", d + 2 + split, rest - split, lp, sizeof lp);
    struct dataset ds;
    err[0] = '\0';
    int rc = dataset_load_idx(&ds, ip, lp, err);
    if (rc) return fuzz_refused(rc, err);
    for (int i = 0; i < ds.n; i++)
        if (ds.labels[i] >= ds.num_classes) fuzz_fail("label out of range", "");
    dataset_free(&ds);
    return 0;
}

/* CIFAR-10 binary (dataset_load_cifar10_files) of one temp file. */
static inline int fuzz_run_cifar(const uint8_t *d, size_t n, char *err)
{
    char p[128];
    fuzz_write_tmp("cifar", d, n, p, sizeof p);
    const char *paths[1] = {p};
    struct dataset ds;
    err[0] = '\0';
    int rc = dataset_load_cifar10_files(&ds, paths, 1, err);
    if (rc) return fuzz_refused(rc, err);
    dataset_free(&ds);
    return 0;
}

/* safetensors (st_parse): every tensor of a float dtype that parses is
 * converted to floats (st_tensor_f32). */
static inline int fuzz_run_safetensors(const uint8_t *d, size_t n, char *err)
{
    struct st_file f;
    memset(&f, 0, sizeof f);
    err[0] = '\0';
    int rc = st_parse(&f, FUZZ_NAME, d, n, err);
    if (rc) {
        st_free(&f);
        return fuzz_refused(rc, err);
    }
    for (int i = 0; i < f.ntensors; i++) {
        const struct st_tensor *t = &f.tensors[i];
        if (t->dtype != ST_F32 && t->dtype != ST_F64 && t->dtype != ST_F16 &&
            t->dtype != ST_BF16)
            continue;
        if (t->numel > n) fuzz_fail("more elements than bytes", t->name);
        float *out = malloc((t->numel ? t->numel : 1) * sizeof(float));
        if (!out) fuzz_fail("out of memory", t->name);
        if (st_tensor_f32(&f, t, out, err) != 0)
            fuzz_fail("a float tensor does not convert", err);
        free(out);
    }
    st_free(&f);
    return 0;
}

/* The search log reader (sim_log_read, the JSON lines of search.jsonl that
 * `simulate` fits its model to) through a temp file. */
static inline int fuzz_run_searchlog(const uint8_t *d, size_t n, char *err)
{
    char p[128];
    fuzz_write_tmp("search.jsonl", d, n, p, sizeof p);
    struct sim_log *g = NULL;
    err[0] = '\0';
    int rc = sim_log_read(p, &g, err);
    if (rc) {
        if (g) fuzz_fail("sim_log_read: refused, but *out set", err);
        return fuzz_refused(rc, err);
    }
    sim_log_destroy(g);
    return 0;
}

#endif

#define _GNU_SOURCE /* memmem */
/* test_checkpoint.c - checkpoint round trips (smallnet, resnet20 full and
 * pruned, with and without training state) are bit-identical; every kind of
 * bad file (missing, empty, random, truncated, corrupted, hand-crafted with
 * one thing wrong) is rejected with a message naming the problem, without
 * crashing and without touching the file; failed saves leave no temp file
 * and the old file intact. Also checkpoint_pack/checkpoint_load_mem (the
 * same bytes and checks from memory) and the failure paths of fileio
 * (file_read_all, file_write_atomic), which checkpoints are read and
 * written through. Single process; runs in the build's testdata/. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <msgpack.h>

#include "check.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/rng.h"
#include "io/checkpoint.h"
#include "nn/model.h"

#define PREFIX "ckpt_test_"

/* ---- helpers ---------------------------------------------------------- */

static struct model *make_model(enum arch a, const int *channels, uint64_t seed)
{
    char err[ABC_ERRLEN];
    struct model *m = NULL;
    int rc = model_create(&m, a, channels, 3, 32, 32, 10, err);
    CHECK(rc == 0, "model_create(%s): %s", arch_name(a), err);
    if (rc) return NULL;
    model_init_weights(m, seed);
    /* Non-trivial BN statistics, so buffers are not all 0 and 1. */
    struct rng r;
    rng_seed(&r, seed ^ 0xb0ff);
    for (size_t i = 0; i < m->nbuffers; i++)
        m->buffers[i] = (float)(0.5 + rng_uniform(&r));
    return m;
}

static int write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = (n == 0 || fwrite(p, 1, n, f) == n);
    if (fclose(f) != 0) ok = 0;
    return ok ? 0 : -1;
}

/* Whole file into a malloc'ed buffer (NULL on failure). */
static char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        fclose(f);
        return NULL;
    }
    *n = (size_t)sb.st_size;
    char *buf = malloc(*n ? *n : 1);
    if (buf && fread(buf, 1, *n, f) != *n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    return buf;
}

/* First occurrence of needle (k bytes) in hay (n bytes), or NULL. */
static char *find_bytes(char *hay, size_t n, const char *needle, size_t k)
{
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(hay + i, needle, k) == 0) return hay + i;
    return NULL;
}

/* Number of files in the current directory whose name starts with stem and
 * contains ".tmp." (leftover temp files of a save). */
static int count_temps(const char *stem)
{
    DIR *d = opendir(".");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, stem, strlen(stem)) == 0 &&
            strstr(e->d_name, ".tmp."))
            n++;
    closedir(d);
    return n;
}

/* Checks a and b are the same model with bit-identical tensors. */
static void check_same_model(const char *what, const struct model *a,
                             const struct model *b)
{
    char err[ABC_ERRLEN];
    CHECK(a->arch == b->arch, "%s: arch %d vs %d", what, a->arch, b->arch);
    CHECK(a->in_c == b->in_c && a->in_h == b->in_h && a->in_w == b->in_w,
          "%s: input shape", what);
    CHECK(a->num_classes == b->num_classes, "%s: classes", what);
    CHECK(a->nprunable == b->nprunable, "%s: nprunable", what);
    if (a->nprunable == b->nprunable)
        CHECK(memcmp(a->channels, b->channels,
                     sizeof(int) * (size_t)a->nprunable) == 0,
              "%s: structure", what);
    CHECK(checkpoint_check_compatible(a, b, err) == 0, "%s: %s", what, err);
    CHECK(a->ntensors == b->ntensors, "%s: ntensors %d vs %d", what,
          a->ntensors, b->ntensors);
    CHECK(a->nparams == b->nparams && a->nbuffers == b->nbuffers, "%s: sizes",
          what);
    if (a->ntensors != b->ntensors) return;
    int bad = 0;
    for (int i = 0; i < a->ntensors; i++) {
        const struct tensor_info *ta = &a->tensors[i], *tb = &b->tensors[i];
        if (strcmp(ta->name, tb->name) != 0 || ta->numel != tb->numel ||
            ta->ndim != tb->ndim ||
            memcmp(ta->shape, tb->shape, sizeof ta->shape) != 0 ||
            memcmp(model_tensor_data(a, ta), model_tensor_data(b, tb),
                   ta->numel * sizeof(float)) != 0) {
            fprintf(stderr, "%s: tensor %s differs\n", what, ta->name);
            bad++;
        }
    }
    CHECK(bad == 0, "%s: %d tensors differ", what, bad);
    if (a->nparams == b->nparams && a->nbuffers == b->nbuffers) {
        CHECK(memcmp(a->params, b->params, a->nparams * 4) == 0,
              "%s: params differ", what);
        CHECK(memcmp(a->buffers, b->buffers, a->nbuffers * 4) == 0,
              "%s: buffers differ", what);
    }
    printf("ok   %s: %d tensors, %zu params, %zu buffer values identical\n",
           what, a->ntensors, a->nparams, a->nbuffers);
}

/* Loads path, expecting failure with `want` in the message. The file must
 * be unchanged afterwards. */
static void expect_reject(const char *what, const char *path, const char *want)
{
    char err[ABC_ERRLEN] = "";
    size_t n0 = 0, n1 = 0;
    char *before = read_bytes(path, &n0);
    struct model *m = (struct model *)&n0; /* must be reset to NULL */
    struct train_state st = {.epoch = -7,
                             .step = -7,
                             .best_val_acc = -7.0,
                             .velocity = (float *)&n1};
    int rc = checkpoint_load(path, &m, &st, err);
    CHECK(rc < 0, "%s: loaded, expected an error containing \"%s\"", what,
          want);
    CHECK(m == NULL, "%s: *out not NULL after a failed load", what);
    CHECK(st.epoch == -7 && st.velocity == (float *)&n1,
          "%s: train state touched by a failed load", what);
    CHECK(strstr(err, want) != NULL, "%s: message \"%s\" lacks \"%s\"", what,
          err, want);
    CHECK(strstr(err, path) != NULL, "%s: message \"%s\" lacks the path", what,
          err);
    if (before) {
        char *after = read_bytes(path, &n1);
        CHECK(after && n0 == n1 && memcmp(before, after, n0) == 0,
              "%s: file changed by a failed load", what);
        free(after);
    }
    free(before);
    if (rc < 0 && strstr(err, want)) printf("ok   %s: %s\n", what, err);
    if (rc == 0) model_destroy(m);
}

/* ---- hand-crafted files: a valid writer with one thing wrong ---------- */

struct craft {
    const char *format; /* format string */
    int version;
    const char *arch;  /* arch name written */
    int arch_len;      /* its length in bytes (0: strlen) */
    int nstructure;    /* entries of structure written */
    int structure_bad; /* index whose value is set to structure_val */
    int structure_val;
    int drop;           /* tensor index left out, or -1 */
    int extra;          /* add a tensor the model does not have */
    int dup;            /* tensor index written twice, or -1 */
    int bad_shape;      /* tensor index with dim 0 plus one, or -1 */
    int short_data;     /* tensor index with 4 bytes too few, or -1 */
    int nan_at;         /* tensor index whose value 1 is NaN, or -1 */
    int wrong_buffer;   /* tensor index with "buffer" flipped, or -1 */
    int trailing;       /* bytes of garbage after the map */
    int omit_key;       /* top-level key index left out, or -1 */
    int unknown_key;    /* add an unknown top-level key */
    int version_as_str; /* write version as str */
    int top_array;      /* top level is an array, not a map */
    int train;          /* 0 none, 1 with velocity, 2 velocity NaN,
                           3 velocity short, 4 epoch negative,
                           5 best_val_acc is a str */
    int classes;
};

static struct craft craft_default(const struct model *m)
{
    /* the crafter writes version 1 (no checksums), which is still read */
    struct craft c = {CHECKPOINT_FORMAT,
                      1,
                      arch_name(m->arch),
                      0,
                      m->nprunable,
                      -1,
                      0,
                      -1,
                      0,
                      -1,
                      -1,
                      -1,
                      -1,
                      -1,
                      0,
                      -1,
                      0,
                      0,
                      0,
                      0,
                      m->num_classes};
    return c;
}

static int pk_str(msgpack_packer *pk, const char *s)
{
    return msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* Writes the tensor entry for t (data as host floats: tests run on
 * little-endian hosts, which main() checks). */
static int pk_tensor(msgpack_packer *pk, const struct model *m,
                     const struct tensor_info *t, const struct craft *c, int i)
{
    int r = 0;
    r |= msgpack_pack_map(pk, 4);
    r |= pk_str(pk, "name") | pk_str(pk, t->name);
    r |= pk_str(pk, "shape") | msgpack_pack_array(pk, (size_t)t->ndim);
    for (int d = 0; d < t->ndim; d++)
        r |= msgpack_pack_int(pk, t->shape[d] + (d == 0 && i == c->bad_shape));
    int isbuf = t->is_buffer ^ (i == c->wrong_buffer);
    r |= pk_str(pk, "buffer") |
         (isbuf ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
    size_t bytes = t->numel * 4 - (i == c->short_data ? 4 : 0);
    float *tmp = malloc(t->numel * 4);
    if (!tmp) return -1;
    memcpy(tmp, model_tensor_data(m, t), t->numel * 4);
    if (i == c->nan_at && t->numel > 1) tmp[1] = NAN;
    r |= pk_str(pk, "data") | msgpack_pack_bin_with_body(pk, tmp, bytes);
    free(tmp);
    return r;
}

static int craft_write(const char *path, const struct model *m,
                       const struct craft *c)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int r = 0;
    int nkeys =
        7 - (c->omit_key >= 0) + (c->unknown_key != 0) + (c->train != 0);
    if (c->top_array)
        r |= msgpack_pack_array(&pk, (size_t)nkeys * 2);
    else
        r |= msgpack_pack_map(&pk, (size_t)nkeys);
    if (c->omit_key != 0) r |= pk_str(&pk, "format") | pk_str(&pk, c->format);
    if (c->omit_key != 1) {
        r |= pk_str(&pk, "version");
        r |= c->version_as_str ? pk_str(&pk, "1")
                               : msgpack_pack_int(&pk, c->version);
    }
    if (c->omit_key != 2)
        r |= pk_str(&pk, "arch") |
             msgpack_pack_str_with_body(&pk, c->arch,
                                        c->arch_len ? (size_t)c->arch_len
                                                    : strlen(c->arch));
    if (c->omit_key != 3) {
        r |= pk_str(&pk, "structure") |
             msgpack_pack_array(&pk, (size_t)c->nstructure);
        for (int i = 0; i < c->nstructure; i++)
            r |= msgpack_pack_int(&pk, i == c->structure_bad
                                           ? c->structure_val
                                           : m->channels[i % m->nprunable]);
    }
    if (c->omit_key != 4)
        r |= pk_str(&pk, "input") | msgpack_pack_array(&pk, 3) |
             msgpack_pack_int(&pk, m->in_c) | msgpack_pack_int(&pk, m->in_h) |
             msgpack_pack_int(&pk, m->in_w);
    if (c->omit_key != 5)
        r |= pk_str(&pk, "classes") | msgpack_pack_int(&pk, c->classes);
    if (c->unknown_key) r |= pk_str(&pk, "comment") | pk_str(&pk, "hello");
    if (c->omit_key != 6) {
        int n = m->ntensors - (c->drop >= 0) + (c->extra != 0) + (c->dup >= 0);
        r |= pk_str(&pk, "tensors") | msgpack_pack_array(&pk, (size_t)n);
        for (int i = 0; i < m->ntensors; i++) {
            if (i == c->drop) continue;
            r |= pk_tensor(&pk, m, &m->tensors[i], c, i);
            if (i == c->dup) r |= pk_tensor(&pk, m, &m->tensors[i], c, i);
        }
        if (c->extra) {
            struct tensor_info t = m->tensors[0];
            snprintf(t.name, sizeof t.name, "bogus.weight");
            r |= pk_tensor(&pk, m, &t, c, -1);
        }
    }
    if (c->train) {
        r |= pk_str(&pk, "train") | msgpack_pack_map(&pk, 4);
        r |= pk_str(&pk, "epoch") |
             msgpack_pack_int(&pk, c->train == 4 ? -3 : 3);
        r |= pk_str(&pk, "step") | msgpack_pack_int(&pk, 1000);
        r |= pk_str(&pk, "best_val_acc");
        r |= c->train == 5 ? pk_str(&pk, "0.5") : msgpack_pack_double(&pk, .5);
        size_t n = m->nparams;
        float *v = calloc(n ? n : 1, sizeof(float));
        if (!v) return -1;
        if (c->train == 2) v[n / 2] = INFINITY;
        r |= pk_str(&pk, "velocity") |
             msgpack_pack_bin_with_body(&pk, v, (n - (c->train == 3)) * 4);
        free(v);
    }
    for (int i = 0; i < c->trailing; i++)
        r |= msgpack_pack_nil(&pk);
    if (r == 0) r = write_bytes(path, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    CHECK(r == 0, "craft_write %s failed", path);
    return r;
}

/* ---- tests ------------------------------------------------------------ */

static void test_round_trip(enum arch a, const int *channels, uint64_t seed,
                            const char *what)
{
    char err[ABC_ERRLEN], path[128];
    snprintf(path, sizeof path, PREFIX "%s.ckpt", what);
    struct model *m = make_model(a, channels, seed);
    if (!m) return;
    int rc = checkpoint_save(path, m, NULL, err);
    CHECK(rc == 0, "%s: save: %s", what, err);
    struct model *l = NULL;
    struct train_state st = {
        .epoch = 5, .step = 5, .best_val_acc = 5.0, .velocity = (float *)&rc};
    rc = checkpoint_load(path, &l, &st, err);
    CHECK(rc == 0 && l, "%s: load: %s", what, err);
    CHECK(st.epoch == 0 && st.step == 0 && st.best_val_acc == 0 &&
              st.velocity == NULL,
          "%s: no train state in file, but st not zeroed", what);
    if (l) check_same_model(what, m, l);
    model_destroy(l);
    CHECK(count_temps(PREFIX) == 0, "%s: temp files left", what);
    model_destroy(m);
}

static void test_train_state(void)
{
    char err[ABC_ERRLEN];
    const char *path = PREFIX "train.ckpt";
    struct model *m = make_model(ARCH_RESNET20, NULL, 11);
    if (!m) return;
    float *vel = malloc(m->nparams * sizeof(float));
    struct rng r;
    rng_seed(&r, 99);
    for (size_t i = 0; i < m->nparams; i++)
        vel[i] = (float)rng_normal(&r) * 1e-3f;
    vel[0] = -0.0f;  /* sign of zero must survive */
    vel[1] = 1e-42f; /* and denormals */
    struct train_state st = {.epoch = 17,
                             .step = 12345678901LL,
                             .best_val_acc = 0.9137,
                             .velocity = vel,
                             .has_split = 1,
                             .split_seed = 0xfedcba9876543210ULL,
                             .val_size = 5000};
    int rc = checkpoint_save(path, m, &st, err);
    CHECK(rc == 0, "train save: %s", err);

    struct model *l = NULL;
    struct train_state got = {
        .epoch = 0, .step = 0, .best_val_acc = 0, .velocity = NULL};
    rc = checkpoint_load(path, &l, &got, err);
    CHECK(rc == 0, "train load: %s", err);
    if (l) check_same_model("resnet20+train", m, l);
    CHECK(got.epoch == 17 && got.step == 12345678901LL &&
              got.best_val_acc == 0.9137,
          "train fields: %d %lld %.17g", got.epoch, (long long)got.step,
          got.best_val_acc);
    CHECK(got.has_split == 1 && got.split_seed == 0xfedcba9876543210ULL &&
              got.val_size == 5000,
          "split fields: %d %llx %d", got.has_split,
          (unsigned long long)got.split_seed, got.val_size);
    CHECK(got.velocity &&
              memcmp(got.velocity, vel, m->nparams * sizeof(float)) == 0,
          "velocity not bit-identical");
    free(got.velocity);
    model_destroy(l);

    /* st NULL on load of a file with a train section: fine, nothing leaks */
    rc = checkpoint_load(path, &l, NULL, err);
    CHECK(rc == 0, "load without st: %s", err);
    model_destroy(l);

    /* train state without velocity */
    struct train_state st2 = {
        .epoch = 2, .step = 300, .best_val_acc = 0.25, .velocity = NULL};
    rc = checkpoint_save(path, m, &st2, err);
    CHECK(rc == 0, "save without velocity: %s", err);
    got.velocity = vel; /* must be replaced by NULL */
    rc = checkpoint_load(path, &l, &got, err);
    CHECK(rc == 0 && !got.has_split, "a file without a split has none (%d)",
          got.has_split);
    CHECK(rc == 0 && got.epoch == 2 && got.step == 300 &&
              got.best_val_acc == 0.25 && got.velocity == NULL,
          "train without velocity: rc %d %s", rc, err);
    model_destroy(l);
    printf("ok   train state round trips (with and without velocity)\n");

    /* a NaN in the velocity or the model is refused, and the old file kept */
    size_t n0, n1;
    char *before = read_bytes(path, &n0);
    vel[5] = NAN;
    rc = checkpoint_save(path, m, &st, err);
    CHECK(rc == ABC_ENUMERIC && strstr(err, "velocity[5]"),
          "NaN velocity saved? rc %d %s", rc, err);
    vel[5] = 0;
    m->params[3] = INFINITY;
    rc = checkpoint_save(path, m, &st, err);
    CHECK(rc == ABC_ENUMERIC && strstr(err, "not finite"),
          "Inf param saved? rc %d %s", rc, err);
    char *after = read_bytes(path, &n1);
    CHECK(before && after && n0 == n1 && memcmp(before, after, n0) == 0,
          "refused save changed the file");
    CHECK(count_temps(PREFIX) == 0, "refused save left a temp file");
    free(before);
    free(after);
    free(vel);
    model_destroy(m);
}

/* checkpoint_pack gives the bytes checkpoint_save writes, and
 * checkpoint_load_mem reads them back with checkpoint_load's checks, naming
 * the buffer by the name it is given. */
static void test_load_mem(void)
{
    char err[ABC_ERRLEN];
    const char *path = PREFIX "mem.ckpt";
    struct model *m = make_model(ARCH_SMALLNET, NULL, 21);
    if (!m) return;
    float *vel = calloc(m->nparams, sizeof(float));
    if (!vel) {
        model_destroy(m);
        return;
    }
    vel[2] = 0.125f;
    struct train_state st = {
        .epoch = 4, .step = 77, .best_val_acc = 0.5, .velocity = vel};
    char *buf = NULL;
    size_t len = 0;
    int rc = checkpoint_pack(m, &st, &buf, &len, err);
    CHECK(rc == 0 && buf && len > 0, "pack: %s", err);
    if (rc) goto out;

    CHECK(checkpoint_save(path, m, &st, err) == 0, "save: %s", err);
    size_t n = 0;
    char *file = read_bytes(path, &n);
    CHECK(file && n == len && memcmp(file, buf, n) == 0,
          "checkpoint_pack bytes differ from the saved file (%zu vs %zu)", len,
          n);
    free(file);
    CHECK(remove(path) == 0, "remove %s", path);

    struct model *l = NULL;
    struct train_state got = {
        .epoch = 0, .step = 0, .best_val_acc = 0, .velocity = NULL};
    rc = checkpoint_load_mem("packed model", buf, len, &l, &got, err);
    CHECK(rc == 0 && l, "load_mem: %s", err);
    if (l) check_same_model("load_mem", m, l);
    CHECK(got.epoch == 4 && got.step == 77 && got.best_val_acc == 0.5 &&
              got.velocity &&
              memcmp(got.velocity, vel, m->nparams * sizeof(float)) == 0,
          "load_mem train state");
    free(got.velocity);
    model_destroy(l);

    /* cut buffers, no buffer, a count bomb: refused, naming the buffer */
    size_t cuts[] = {1, 7, len / 2, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        l = (struct model *)&n; /* must be reset to NULL */
        struct train_state keep = {
            .epoch = -1, .step = -1, .best_val_acc = -1.0, .velocity = NULL};
        rc = checkpoint_load_mem("packed model", buf, cuts[i], &l, &keep, err);
        CHECK(rc == ABC_EFORMAT && l == NULL && keep.epoch == -1 &&
                  strstr(err, "truncated") && strstr(err, "packed model"),
              "cut to %zu bytes: rc %d %s", cuts[i], rc, err);
    }
    rc = checkpoint_load_mem("packed model", buf, 0, &l, NULL, err);
    CHECK(rc == ABC_EFORMAT && l == NULL && strstr(err, "packed model"),
          "empty buffer: rc %d %s", rc, err);
    rc = checkpoint_load_mem("bomb", "\xdd\xff\xff\xff\xff", 5, &l, NULL, err);
    CHECK(rc == ABC_EFORMAT && l == NULL &&
              strstr(err, "bomb: truncated or corrupt") &&
              strstr(err, "declares 4294967295 entries"),
          "count bomb in memory: rc %d %s", rc, err);

    /* pack refuses what save refuses */
    free(buf);
    buf = (char *)&n;
    vel[1] = NAN;
    rc = checkpoint_pack(m, &st, &buf, &len, err);
    CHECK(rc == ABC_ENUMERIC && buf == NULL && strstr(err, "velocity[1]"),
          "pack of a NaN velocity: rc %d %s", rc, err);
    printf("ok   checkpoint_pack / checkpoint_load_mem\n");
out:
    free(buf);
    free(vel);
    model_destroy(m);
}

/* file_read_all and file_write_atomic on their own: contents, limits, and
 * failures that leave the old file and no temp file behind. */
static void test_fileio(void)
{
    char err[ABC_ERRLEN], tmp[160];
    const char *path = PREFIX "io.bin";
    char *buf = NULL;
    size_t len = 0;

    CHECK(file_write_atomic(path, "good", 4, err) == 0, "write: %s", err);
    int rc = file_read_all(path, "test file", 4, &buf, &len, err);
    CHECK(rc == 0 && len == 4 && buf && memcmp(buf, "good", 5) == 0,
          "read back (with a NUL after): rc %d %s", rc, err);
    free(buf);

    rc = file_read_all(path, "test file", 3, &buf, &len, err);
    CHECK(rc == ABC_EFORMAT && !buf && len == 0 &&
              strstr(err, "4 bytes, larger than any test file (limit 3)"),
          "over the limit: rc %d %s", rc, err);
    rc =
        file_read_all(PREFIX "io_missing.bin", "test file", 9, &buf, &len, err);
    CHECK(rc == ABC_EIO && !buf && strstr(err, "cannot open test file"),
          "missing: rc %d %s", rc, err);
    rc = file_read_all(".", "test file", 9, &buf, &len, err);
    CHECK(rc == ABC_EIO && !buf && strstr(err, "not a regular file"),
          "directory: rc %d %s", rc, err);

    /* the temp path taken by a directory: the write fails before touching
     * path, which keeps its old bytes */
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(mkdir(tmp, 0755) == 0, "mkdir %s", tmp);
    rc = file_write_atomic(path, "bad", 3, err);
    CHECK(rc == ABC_EIO && strstr(err, "cannot create temp file") &&
              strstr(err, path),
          "blocked temp path: rc %d %s", rc, err);
    CHECK(rmdir(tmp) == 0, "rmdir %s", tmp);
    rc = file_read_all(path, "test file", 9, &buf, &len, err);
    CHECK(rc == 0 && len == 4 && memcmp(buf, "good", 4) == 0,
          "old bytes kept after a failed write: rc %d %s", rc, err);
    free(buf);

    rc = file_write_atomic(PREFIX "io_nodir/x.bin", "x", 1, err);
    CHECK(rc == ABC_EIO && strstr(err, PREFIX "io_nodir/x.bin"),
          "missing directory: rc %d %s", rc, err);
    rc = file_write_atomic("", "x", 1, err);
    CHECK(rc == ABC_EVALUE, "empty path: rc %d %s", rc, err);

    /* zero bytes are written, and read back as an empty file */
    CHECK(file_write_atomic(path, NULL, 0, err) == 0, "write 0: %s", err);
    rc = file_read_all(path, "test file", 9, &buf, &len, err);
    CHECK(rc == ABC_EFORMAT && !buf &&
              strstr(err, "empty file, not a test file"),
          "empty: rc %d %s", rc, err);
    CHECK(count_temps(PREFIX) == 0, "fileio left a temp file");
    CHECK(remove(path) == 0, "remove %s", path);
    printf("ok   file_read_all / file_write_atomic\n");
}

static void test_overwrite_and_failed_saves(void)
{
    char err[ABC_ERRLEN];
    const char *path = PREFIX "over.ckpt";
    struct model *a = make_model(ARCH_SMALLNET, NULL, 1);
    struct model *b = make_model(ARCH_SMALLNET, NULL, 2);
    if (!a || !b) return;
    CHECK(checkpoint_save(path, a, NULL, err) == 0, "save a: %s", err);
    CHECK(checkpoint_save(path, b, NULL, err) == 0, "save b over a: %s", err);
    struct model *l = NULL;
    CHECK(checkpoint_load(path, &l, NULL, err) == 0, "load: %s", err);
    if (l) check_same_model("overwrite", b, l);
    model_destroy(l);

    /* a path with a directory part (the directory is fsync'ed) */
    CHECK(checkpoint_save("./" PREFIX "dot.ckpt", a, NULL, err) == 0,
          "save ./: %s", err);
    CHECK(checkpoint_load("./" PREFIX "dot.ckpt", &l, NULL, err) == 0,
          "load ./: %s", err);
    if (l) check_same_model("./path", a, l);
    model_destroy(l);
    CHECK(remove(PREFIX "dot.ckpt") == 0, "remove dot.ckpt");

    /* directory does not exist: fails, no temp file anywhere */
    int rc = checkpoint_save(PREFIX "nodir/x.ckpt", a, NULL, err);
    CHECK(rc == ABC_EIO && strstr(err, PREFIX "nodir/x.ckpt"),
          "save into a missing directory: rc %d %s", rc, err);
    CHECK(!file_exists(PREFIX "nodir"), "directory appeared");
    printf("ok   save into missing directory: %s\n", err);

    /* path is an existing directory: the temp file is written, the rename
     * fails, and the temp file must be removed again */
    const char *dir = PREFIX "isdir";
    rmdir(dir);
    CHECK(mkdir(dir, 0755) == 0, "mkdir %s", dir);
    rc = checkpoint_save(dir, a, NULL, err);
    CHECK(rc == ABC_EIO && strstr(err, "rename"),
          "save over a directory: rc %d %s", rc, err);
    CHECK(count_temps(PREFIX) == 0, "failed rename left a temp file");
    struct stat sb;
    CHECK(stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode),
          "directory damaged by failed save");
    CHECK(rmdir(dir) == 0, "rmdir %s", dir);
    printf("ok   save over a directory: %s\n", err);

    /* the failed saves did not touch the good file */
    CHECK(checkpoint_load(path, &l, NULL, err) == 0, "reload: %s", err);
    if (l) check_same_model("after failed saves", b, l);
    model_destroy(l);

    /* compatibility */
    CHECK(checkpoint_check_compatible(a, b, err) == 0, "a,b: %s", err);
    int ch[3] = {16, 8, 64};
    struct model *p = make_model(ARCH_SMALLNET, ch, 3);
    if (p) {
        rc = checkpoint_check_compatible(a, p, err);
        CHECK(rc < 0 && strstr(err, "structure differs at prunable layer 1"),
              "pruned: %s", err);
        model_destroy(p);
    }
    struct model *r = make_model(ARCH_RESNET20, NULL, 3);
    if (r) {
        rc = checkpoint_check_compatible(a, r, err);
        CHECK(rc < 0 && strstr(err, "architecture differs"), "arch: %s", err);
        model_destroy(r);
    }
    struct model *c = NULL;
    if (model_create(&c, ARCH_SMALLNET, NULL, 3, 32, 32, 100, err) == 0) {
        rc = checkpoint_check_compatible(a, c, err);
        CHECK(rc < 0 && strstr(err, "classes differ"), "classes: %s", err);
        model_destroy(c);
    }
    if (model_create(&c, ARCH_SMALLNET, NULL, 1, 28, 28, 10, err) == 0) {
        rc = checkpoint_check_compatible(a, c, err);
        CHECK(rc < 0 && strstr(err, "input shape differs"), "input: %s", err);
        model_destroy(c);
    }
    model_destroy(a);
    model_destroy(b);
}

static void test_bad_files(void)
{
    char err[ABC_ERRLEN];
    const char *bad = PREFIX "bad.ckpt";
    const char *good = PREFIX "good.ckpt";

    expect_reject("nonexistent", PREFIX "does_not_exist.ckpt", "cannot open");
    CHECK(write_bytes(bad, "", 0) == 0, "write empty");
    expect_reject("empty file", bad, "empty");
    expect_reject("a directory", ".", "not a regular file");

    /* random bytes: any error, never a crash */
    struct rng r;
    rng_seed(&r, 4242);
    for (int t = 0; t < 64; t++) {
        unsigned char buf[512];
        size_t n = 1 + rng_below(&r, sizeof buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (unsigned char)rng_u64(&r);
        CHECK(write_bytes(bad, buf, n) == 0, "write random");
        struct model *m = NULL;
        int rc = checkpoint_load(bad, &m, NULL, err);
        CHECK(rc < 0 && m == NULL && strstr(err, bad),
              "random bytes %d: rc %d %s", t, rc, err);
        model_destroy(m);
    }
    printf("ok   64 random files rejected\n");

    /* lengths that promise far more than the file holds must be caught
     * before msgpack allocates for them (it sizes arrays by their header) */
    CHECK(write_bytes(bad, "\xdd\xff\xff\xff\xff", 5) == 0, "write");
    expect_reject("array32 of 4G entries", bad,
                  "at byte 0 declares 4294967295 entries");
    CHECK(write_bytes(bad, "\x81\xa1k\xdf\xff\xff\xff\xf0\xc0", 9) == 0,
          "write");
    expect_reject("nested map32", bad, "at byte 3 declares 4294967280 entries");
    CHECK(write_bytes(bad, "\xc6\xff\xff\xff\xff\x00", 6) == 0, "write");
    expect_reject("bin32 of 4 GB", bad, "truncated");
    CHECK(write_bytes(bad, "\xc1", 1) == 0, "write");
    expect_reject("never-used byte 0xc1", bad, "msgpack parse error");
    {
        char deep[64];
        memset(deep, 0x91, sizeof deep); /* 64 nested one-element arrays */
        deep[63] = (char)0xc0;
        CHECK(write_bytes(bad, deep, sizeof deep) == 0, "write");
        expect_reject("nesting too deep", bad, "nested deeper than 32");
    }

    /* a valid file to truncate and corrupt */
    struct model *m = make_model(ARCH_SMALLNET, NULL, 7);
    if (!m) return;
    float *vel = calloc(m->nparams, sizeof(float));
    struct train_state st = {
        .epoch = 1, .step = 2, .best_val_acc = 0.5, .velocity = vel};
    CHECK(checkpoint_save(good, m, &st, err) == 0, "save good: %s", err);
    size_t n = 0;
    char *bytes = read_bytes(good, &n);
    CHECK(bytes && n > 1000, "good file has %zu bytes", n);
    if (!bytes) return;

    /* every truncation is "truncated": all lengths up to 300, then a
     * stride through the file, and the last few bytes */
    int ntrunc = 0, bad_trunc = 0;
    for (size_t len = 1; len < n; len += (len < 300 || len > n - 20) ? 1 : 97) {
        if (write_bytes(bad, bytes, len) != 0) {
            bad_trunc++;
            continue;
        }
        struct model *l = NULL;
        int rc = checkpoint_load(bad, &l, NULL, err);
        ntrunc++;
        if (rc >= 0 || l || !strstr(err, "truncated")) {
            if (bad_trunc++ < 5)
                fprintf(stderr, "truncated to %zu: rc %d: %s\n", len, rc, err);
        }
        model_destroy(l);
    }
    CHECK(bad_trunc == 0, "%d of %d truncations not rejected as truncated",
          bad_trunc, ntrunc);
    printf("ok   %d truncated copies rejected as truncated\n", ntrunc);
    expect_reject("truncated by one byte", bad, "truncated");

    /* trailing garbage after a valid file */
    char *longer = malloc(n + 3);
    memcpy(longer, bytes, n);
    memcpy(longer + n, "xyz", 3);
    CHECK(write_bytes(bad, longer, n + 3) == 0, "write");
    expect_reject("trailing bytes", bad, "trailing garbage: 3 bytes");
    free(longer);

    /* in-place edits of the msgpack: the first "shape" array's first
     * dimension (a positive fixint) bumped by one */
    char *ed = malloc(n);
    memcpy(ed, bytes, n);
    char *sh = find_bytes(ed, n, "\xa5shape", 6);
    CHECK(sh && (unsigned char)sh[6] >= 0x91 && (unsigned char)sh[6] <= 0x94 &&
              (unsigned char)sh[7] < 0x7f,
          "cannot find a shape to edit");
    if (sh) {
        sh[7]++;
        CHECK(write_bytes(bad, ed, n) == 0, "write");
        expect_reject("edited shape", bad,
                      "conv1.weight).shape: [17,3,3,3], "
                      "expected [16,3,3,3]");
    }
    /* ... and the first data length: bin32 or bin16 header, lowest byte
     * decremented and incremented; the stream then misparses, whatever it
     * says it must be an error */
    memcpy(ed, bytes, n);
    char *dk = find_bytes(ed, n,
                          "\xa4"
                          "data",
                          5);
    CHECK(dk && ((unsigned char)dk[5] == 0xc5 || (unsigned char)dk[5] == 0xc6),
          "cannot find a data length to edit");
    if (dk) {
        int hl = (unsigned char)dk[5] == 0xc5 ? 2 : 4;
        for (int delta = -1; delta <= 1; delta += 2) {
            memcpy(ed, bytes, n);
            dk[5 + hl] = (char)(dk[5 + hl] + delta);
            CHECK(write_bytes(bad, ed, n) == 0, "write");
            struct model *l = NULL;
            int rc = checkpoint_load(bad, &l, NULL, err);
            CHECK(rc < 0 && !l, "data length %+d accepted", delta);
            printf("ok   data length %+d: %s\n", delta, err);
            model_destroy(l);
        }
    }

    /* random single-byte corruption anywhere: loads or is rejected, never
     * crashes; a byte of float data may change a value and still load */
    int loaded = 0, rejected = 0;
    for (int t = 0; t < 300; t++) {
        memcpy(ed, bytes, n);
        size_t at = rng_below(&r, t < 150 ? (n < 600 ? n : 600) : n);
        ed[at] = (char)(ed[at] ^ (char)(1u << rng_below(&r, 8)));
        CHECK(write_bytes(bad, ed, n) == 0, "write");
        struct model *l = NULL;
        struct train_state s2 = {
            .epoch = 0, .step = 0, .best_val_acc = 0, .velocity = NULL};
        int rc = checkpoint_load(bad, &l, &s2, err);
        if (rc == 0) {
            loaded++;
            free(s2.velocity);
            model_destroy(l);
        } else {
            rejected++;
            CHECK(l == NULL && strstr(err, bad), "flip at %zu: %s", at, err);
        }
    }
    printf("ok   300 single-bit flips: %d loaded, %d rejected, no crash\n",
           loaded, rejected);
    free(ed);

    /* hand-crafted files, each with one thing wrong */
    struct craft c = craft_default(m);
    craft_write(bad, m, &c);
    struct model *l = NULL;
    CHECK(checkpoint_load(bad, &l, NULL, err) == 0, "crafted baseline: %s",
          err);
    if (l) check_same_model("crafted baseline", m, l);
    model_destroy(l);

#define CRAFT(what, field, value, want)                                        \
    do {                                                                       \
        struct craft c_ = craft_default(m);                                    \
        c_.field = value;                                                      \
        if (craft_write(bad, m, &c_) == 0) expect_reject(what, bad, want);     \
    } while (0)

    CRAFT("wrong format", format, "abcprune-checkpoinx",
          "format is \"abcprune-checkpoinx\"");
    CRAFT("version 99", version, 99,
          "unsupported checkpoint version 99 (this build reads 1 and 2)");
    CRAFT("version 0", version, 0, "unsupported checkpoint version 0");
    CRAFT("version as str", version_as_str, 1, "version: expected an integer");
    CRAFT("unknown arch", arch, "resnet21",
          "unknown architecture \"resnet21\"");
    {
        struct craft c_ = craft_default(m);
        c_.arch = "smallnet\0x", c_.arch_len = 10;
        if (craft_write(bad, m, &c_) == 0)
            expect_reject("arch with NUL", bad,
                          "unknown architecture \"smallnet?x\"");
    }
    CRAFT("structure too short", nstructure, 1,
          "structure: 1 entries, but smallnet has 3");
    CRAFT("structure too long", nstructure, 4, "structure: 4 entries");
    {
        struct craft c_ = craft_default(m);
        c_.structure_bad = 1, c_.structure_val = 33;
        if (craft_write(bad, m, &c_) == 0)
            expect_reject("structure above full", bad,
                          "structure[1]: 33 out of range 1..32");
        c_.structure_val = 0;
        if (craft_write(bad, m, &c_) == 0)
            expect_reject("structure zero", bad,
                          "structure[1]: 0 out of range");
        c_.structure_val = -5;
        if (craft_write(bad, m, &c_) == 0)
            expect_reject("structure negative", bad,
                          "structure[1]: -5 out of range");
    }
    CRAFT("classes 1", classes, 1, "cannot build the model");
    CRAFT("missing tensor", drop, 2, "missing tensor bn1.bias");
    CRAFT("extra tensor", extra, 1, "unknown tensor \"bogus.weight\"");
    CRAFT("duplicate tensor", dup, 3, "appears twice");
    CRAFT("wrong shape", bad_shape, 0,
          "shape: [17,3,3,3], expected [16,3,3,3]");
    CRAFT("short data", short_data, 0, "1724 bytes of data, expected 1728");
    CRAFT("NaN value", nan_at, 4, "value [1] is not finite");
    CRAFT("buffer flag", wrong_buffer, 0,
          "but the model's tensor is a parameter");
    CRAFT("trailing nils", trailing, 2, "trailing garbage: 2 bytes");
    CRAFT("missing format", omit_key, 0, "no \"format\" key");
    CRAFT("missing version", omit_key, 1, "missing \"version\"");
    CRAFT("missing arch", omit_key, 2, "missing \"arch\"");
    CRAFT("missing structure", omit_key, 3, "missing \"structure\"");
    CRAFT("missing input", omit_key, 4, "missing \"input\"");
    CRAFT("missing classes", omit_key, 5, "missing \"classes\"");
    CRAFT("missing tensors", omit_key, 6, "missing \"tensors\"");
    CRAFT("unknown key", unknown_key, 1, "unknown key \"comment\"");
    CRAFT("top-level array", top_array, 1, "top level is a msgpack array");
    CRAFT("velocity Inf", train, 2, "train.velocity: value [");
    CRAFT("velocity short", train, 3, "train.velocity:");
    CRAFT("epoch negative", train, 4, "train.epoch: -3 out of range");
    CRAFT("best_val_acc str", train, 5, "train.best_val_acc: expected a float");
#undef CRAFT
    {
        struct craft c_ = craft_default(m);
        c_.train = 1;
        craft_write(bad, m, &c_);
        struct train_state s3 = {
            .epoch = 0, .step = 0, .best_val_acc = 0, .velocity = NULL};
        CHECK(checkpoint_load(bad, &l, &s3, err) == 0 && s3.velocity &&
                  s3.epoch == 3 && s3.step == 1000,
              "crafted train: %s", err);
        free(s3.velocity);
        model_destroy(l);
    }

    CHECK(remove(bad) == 0 && remove(good) == 0, "cleanup");
    free(bytes);
    free(vel);
    model_destroy(m);
}

/* Version 2's checksums: a byte flipped anywhere inside a tensor's data
 * (20 places per tensor) or the velocity is refused, naming the tensor (or
 * train.velocity) and "checksum mismatch"; the undamaged bytes load. */
static void test_checksums(void)
{
    char err[ABC_ERRLEN];
    struct model *m;
    CHECK(model_create(&m, ARCH_SMALLNET, NULL, 1, 28, 28, 10, err) == 0, "%s",
          err);
    /* distinct values in every tensor, so each is found by its bytes */
    for (int t = 0; t < m->ntensors; t++) {
        float *x = model_tensor_data(m, &m->tensors[t]);
        for (size_t i = 0; i < m->tensors[t].numel; i++)
            x[i] = 0.5f + 0.01f * (float)t + 1e-5f * (float)i;
    }
    float *vel = malloc(sizeof(float) * m->nparams);
    for (size_t i = 0; i < m->nparams; i++)
        vel[i] = 1e-3f * (float)(i % 97) - 0.04f;
    struct train_state st = {.epoch = 1, .step = 2, .velocity = vel};
    char *buf;
    size_t len;
    CHECK(checkpoint_pack(m, &st, &buf, &len, err) == 0, "pack: %s", err);
    struct model *l = NULL;
    struct train_state got = {0};
    CHECK(checkpoint_load_mem("v2", buf, len, &l, &got, err) == 0,
          "undamaged: %s", err);
    model_destroy(l);
    free(got.velocity);
    int regions = 0, refused = 0, named = 0, tries = 0;
    for (int t = 0; t <= m->ntensors; t++) {
        const float *x =
            t < m->ntensors ? model_tensor_data(m, &m->tensors[t]) : vel;
        size_t n = t < m->ntensors ? m->tensors[t].numel : m->nparams;
        const char *want =
            t < m->ntensors ? m->tensors[t].name : "train.velocity";
        if (n < 8) continue; /* too short to find by its bytes */
        unsigned char head[32];
        memcpy(head, x, 32); /* little-endian host (checked in main) */
        const char *at = memmem(buf, len, head, 32);
        if (!at) continue;
        regions++;
        size_t off = (size_t)(at - buf);
        for (int k = 0; k < 20; k++) {
            size_t pos = off + (size_t)(((uint64_t)k * 2654435761u) % (n * 4));
            buf[pos] ^= 0x10;
            tries++;
            int rc = checkpoint_load_mem("v2", buf, len, &l, NULL, err);
            buf[pos] ^= 0x10;
            model_destroy(l);
            l = NULL;
            refused += rc != 0;
            named += rc != 0 && strstr(err, "checksum mismatch") &&
                     strstr(err, want);
        }
    }
    CHECK(regions >= 5, "found %d data regions in the file", regions);
    CHECK(refused == tries && named == tries,
          "%d flipped bytes in data: %d refused, %d naming the tensor and "
          "the checksum",
          tries, refused, named);
    free(buf);
    free(vel);
    model_destroy(m);
}

int main(void)
{
    uint32_t one = 1;
    unsigned char lsb;
    memcpy(&lsb, &one, 1);
    CHECK(lsb == 1, "these tests craft little-endian files on the host");

    test_round_trip(ARCH_SMALLNET, NULL, 1, "smallnet");
    test_round_trip(ARCH_RESNET20, NULL, 2, "resnet20");
    int pruned[9] = {16, 8, 1, 32, 17, 3, 64, 40, 2};
    test_round_trip(ARCH_RESNET20, pruned, 3, "resnet20_pruned");
    int spruned[3] = {5, 1, 9};
    test_round_trip(ARCH_SMALLNET, spruned, 4, "smallnet_pruned");
    test_train_state();
    test_load_mem();
    test_fileio();
    test_overwrite_and_failed_saves();
    test_bad_files();
    test_checksums();

    const char *rm[] = {
        PREFIX "smallnet.ckpt",        PREFIX "resnet20.ckpt",
        PREFIX "resnet20_pruned.ckpt", PREFIX "smallnet_pruned.ckpt",
        PREFIX "train.ckpt",           PREFIX "over.ckpt"};
    for (size_t i = 0; i < sizeof rm / sizeof rm[0]; i++)
        CHECK(remove(rm[i]) == 0, "remove %s", rm[i]);
    CHECK(count_temps(PREFIX) == 0, "temp files left at the end");
    return check_finish("test_checkpoint");
}

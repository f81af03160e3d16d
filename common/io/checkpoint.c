/* checkpoint.c - saving and loading models (and training state) as one
 * msgpack map, written atomically and validated field by field on load.
 *
 * Format, version 2 (version 1: the same without the "crc32" keys; still
 * read, unchecked; any training step rewrites a file as version 2). The
 * file holds exactly one msgpack map and nothing
 * after it. Keys are str; every key below is required unless marked
 * optional, no key may appear twice, and unknown keys are errors (a format
 * change bumps "version" instead):
 *
 *   "format"    str    "abcprune-checkpoint"
 *   "version"   uint   2
 *   "arch"      str    architecture name: "smallnet", "vgg16", "resnet20", ...
 *   "structure" array  one uint per prunable layer of arch: the channels
 *                      kept, each in 1..full width
 *   "input"     array  [c, h, w] of the input images, uints >= 1
 *   "classes"   uint   number of output classes
 *   "tensors"   array  one map per tensor of the model, in the model's table
 *                      order when written (any order is read), each exactly
 *                      once, with keys:
 *                        "name"   str   the model's tensor name
 *                        "shape"  array of uint, the model's shape
 *                        "buffer" bool  true for BN running statistics,
 *                                       false for trainable parameters
 *                        "data"   bin   numel*4 bytes: little-endian IEEE
 *                                       float32 in row-major (C) order;
 *                                       every value finite
 *                        "crc32"  uint  zlib's CRC-32 of the data bytes: a
 *                                       mismatch names the tensor
 *   "train"     map    optional; training progress and optimizer state:
 *                        "epoch"        uint     epochs completed
 *                        "step"         uint     optimizer steps taken
 *                        "best_val_acc" float64  (float32 accepted), finite
 *                        "velocity"     bin      optional; SGD momentum,
 *                                       nparams*4 bytes of little-endian
 *                                       float32 in the order of the model's
 *                                       params array; finite
 *                        "velocity_crc32" uint  with "velocity": its
 *                                       CRC-32
 *                        "split_seed"   uint64   optional, with "val_size":
 *                        "val_size"     uint     the data split the model
 *                                       was trained on (data.split_seed,
 *                                       data.val_size), so a step can
 *                                       refuse a baseline whose training
 *                                       images are its validation images
 *
 * Writers emit the keys in the order above. Files are limited to
 * CHECKPOINT_MAX_BYTES. Floats are converted byte by byte, so files are the
 * same on every host. */
#include "io/checkpoint.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>
#include <zlib.h>

#include "core/err.h"
#include "core/fileio.h"
#include "io/mpread.h"
#include "io/mpwrite.h"

/* ---------------------------------------------------------------------
 * float32 <-> little-endian bytes
 * ------------------------------------------------------------------- */

static void f32_to_le(unsigned char *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &src[i], 4);
        dst[4 * i + 0] = (unsigned char)(u & 0xff);
        dst[4 * i + 1] = (unsigned char)((u >> 8) & 0xff);
        dst[4 * i + 2] = (unsigned char)((u >> 16) & 0xff);
        dst[4 * i + 3] = (unsigned char)((u >> 24) & 0xff);
    }
}

/* Decodes n floats from src into dst. Returns the index of the first
 * non-finite value, or n when all are finite. */
static size_t f32_from_le(float *dst, const unsigned char *src, size_t n)
{
    size_t bad = n;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[4 * i] | ((uint32_t)src[4 * i + 1] << 8) |
                     ((uint32_t)src[4 * i + 2] << 16) |
                     ((uint32_t)src[4 * i + 3] << 24);
        memcpy(&dst[i], &u, 4);
        if (bad == n && !isfinite(dst[i])) bad = i;
    }
    return bad;
}

/* Index of the first non-finite value of x[0..n), or n. */
static size_t first_nonfinite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

/* ---------------------------------------------------------------------
 * Saving
 * ------------------------------------------------------------------- */

/* Packs n floats as one bin of little-endian float32, converted through a
 * small staging buffer. Returns 0 or -1. */
static int pack_f32_bin(msgpack_packer *pk, const float *x, size_t n)
{
    enum { CHUNK = 4096 };
    unsigned char stage[4 * CHUNK];
    if (msgpack_pack_bin(pk, n * 4) != 0) return -1;
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        f32_to_le(stage, x + i, k);
        if (msgpack_pack_bin_body(pk, stage, k * 4) != 0) return -1;
    }
    return 0;
}

/* zlib's CRC-32 of n floats as their little-endian bytes (what
 * pack_f32_bin writes). */
static uint32_t f32_crc32(const float *x, size_t n)
{
    enum { CHUNK = 4096 };
    unsigned char stage[4 * CHUNK];
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        f32_to_le(stage, x + i, k);
        crc = crc32(crc, stage, (uInt)(k * 4));
    }
    return (uint32_t)crc;
}

/* Checks bin o's bytes against the "crc32" value c (a uint). */
static int check_crc(const char *path, const char *field,
                     const msgpack_object *bin, const msgpack_object *c,
                     char *err)
{
    if (c->type != MSGPACK_OBJECT_POSITIVE_INTEGER || c->via.u64 > 0xffffffffu)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: %s: expected a 32-bit uint checksum", path, field);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, (const Bytef *)bin->via.bin.ptr, bin->via.bin.size);
    if ((uint32_t)crc != (uint32_t)c->via.u64)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: %s: checksum mismatch (CRC-32 %08x, the file "
                        "says %08x): the data is damaged",
                        path, field, (unsigned)crc, (unsigned)c->via.u64);
    return 0;
}

/* Serialises m (and st) into sb. Returns 0 or -1 (out of memory). */
static int pack_checkpoint(msgpack_sbuffer *sb, const struct model *m,
                           const struct train_state *st)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);

    if (msgpack_pack_map(&pk, st ? 8 : 7) != 0) return -1;

    if (mpw_str(&pk, "format") != 0 || mpw_str(&pk, CHECKPOINT_FORMAT) != 0)
        return -1;
    if (mpw_str(&pk, "version") != 0 ||
        msgpack_pack_int(&pk, CHECKPOINT_VERSION) != 0)
        return -1;
    if (mpw_str(&pk, "arch") != 0 || mpw_str(&pk, arch_name(m->arch)) != 0)
        return -1;

    if (mpw_str(&pk, "structure") != 0 ||
        msgpack_pack_array(&pk, (size_t)m->nprunable) != 0)
        return -1;
    for (int i = 0; i < m->nprunable; i++)
        if (msgpack_pack_int(&pk, m->channels[i]) != 0) return -1;

    if (mpw_str(&pk, "input") != 0 || msgpack_pack_array(&pk, 3) != 0 ||
        msgpack_pack_int(&pk, m->in_c) != 0 ||
        msgpack_pack_int(&pk, m->in_h) != 0 ||
        msgpack_pack_int(&pk, m->in_w) != 0)
        return -1;
    if (mpw_str(&pk, "classes") != 0 ||
        msgpack_pack_int(&pk, m->num_classes) != 0)
        return -1;

    if (mpw_str(&pk, "tensors") != 0 ||
        msgpack_pack_array(&pk, (size_t)m->ntensors) != 0)
        return -1;
    for (int i = 0; i < m->ntensors; i++) {
        const struct tensor_info *t = &m->tensors[i];
        if (msgpack_pack_map(&pk, 5) != 0) return -1;
        if (mpw_str(&pk, "name") != 0 || mpw_str(&pk, t->name) != 0) return -1;
        if (mpw_str(&pk, "shape") != 0 ||
            msgpack_pack_array(&pk, (size_t)t->ndim) != 0)
            return -1;
        for (int d = 0; d < t->ndim; d++)
            if (msgpack_pack_int(&pk, t->shape[d]) != 0) return -1;
        if (mpw_str(&pk, "buffer") != 0 ||
            (t->is_buffer ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk)))
            return -1;
        if (mpw_str(&pk, "data") != 0 ||
            pack_f32_bin(&pk, model_tensor_data(m, t), t->numel) != 0)
            return -1;
        if (mpw_str(&pk, "crc32") != 0 ||
            msgpack_pack_uint32(
                &pk, f32_crc32(model_tensor_data(m, t), t->numel)) != 0)
            return -1;
    }

    if (st) {
        if (mpw_str(&pk, "train") != 0 ||
            msgpack_pack_map(&pk, 3 + (st->velocity ? 2 : 0) +
                                      (st->has_split ? 2 : 0)) != 0)
            return -1;
        if (mpw_str(&pk, "epoch") != 0 || msgpack_pack_int(&pk, st->epoch) != 0)
            return -1;
        if (mpw_str(&pk, "step") != 0 || msgpack_pack_int64(&pk, st->step) != 0)
            return -1;
        if (mpw_str(&pk, "best_val_acc") != 0 ||
            msgpack_pack_double(&pk, st->best_val_acc) != 0)
            return -1;
        if (st->velocity &&
            (mpw_str(&pk, "velocity") != 0 ||
             pack_f32_bin(&pk, st->velocity, m->nparams) != 0 ||
             mpw_str(&pk, "velocity_crc32") != 0 ||
             msgpack_pack_uint32(&pk, f32_crc32(st->velocity, m->nparams)) !=
                 0))
            return -1;
        if (st->has_split && (mpw_str(&pk, "split_seed") != 0 ||
                              msgpack_pack_uint64(&pk, st->split_seed) != 0 ||
                              mpw_str(&pk, "val_size") != 0 ||
                              msgpack_pack_int(&pk, st->val_size) != 0))
            return -1;
    }
    return 0;
}

/* Checks that m and st can be written as a file that loads back: finite
 * values, lengths that fit msgpack, sane training counters. */
static int check_saveable(const char *path, const struct model *m,
                          const struct train_state *st, char *err)
{
    for (int i = 0; i < m->ntensors; i++) {
        const struct tensor_info *t = &m->tensors[i];
        if (t->numel > UINT32_MAX / 4)
            return abc_errf(err, ABC_EVALUE,
                            "%s: tensor %s has %zu values, more than a "
                            "checkpoint can hold",
                            path, t->name, t->numel);
        size_t bad = first_nonfinite(model_tensor_data(m, t), t->numel);
        if (bad < t->numel)
            return abc_errf(err, ABC_ENUMERIC,
                            "%s: not saved: tensor %s value [%zu] is not "
                            "finite (%g)",
                            path, t->name, bad,
                            (double)model_tensor_data(m, t)[bad]);
    }
    if (!st) return 0;
    if (st->epoch < 0 || st->step < 0 || !isfinite(st->best_val_acc))
        return abc_errf(err, ABC_EVALUE,
                        "%s: not saved: bad training state (epoch %d, step "
                        "%lld, best_val_acc %g)",
                        path, st->epoch, (long long)st->step, st->best_val_acc);
    if (st->velocity) {
        if (m->nparams > UINT32_MAX / 4)
            return abc_errf(err, ABC_EVALUE,
                            "%s: %zu parameters, more velocity than a "
                            "checkpoint can hold",
                            path, m->nparams);
        size_t bad = first_nonfinite(st->velocity, m->nparams);
        if (bad < m->nparams)
            return abc_errf(err, ABC_ENUMERIC,
                            "%s: not saved: velocity[%zu] is not finite (%g)",
                            path, bad, (double)st->velocity[bad]);
    }
    return 0;
}

/* Checks m and st (name in messages), then serialises them into a
 * malloc'ed buffer. */
static int pack_checked(const char *name, const struct model *m,
                        const struct train_state *st, char **buf, size_t *len,
                        char *err)
{
    int rc = check_saveable(name, m, st, err);
    if (rc) return rc;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (pack_checkpoint(&sb, m, st) != 0) {
        msgpack_sbuffer_destroy(&sb);
        return abc_errf(err, ABC_ENOMEM,
                        "%s: out of memory serialising the checkpoint", name);
    }
    *len = sb.size;
    *buf = msgpack_sbuffer_release(&sb);
    return 0;
}

/* Serialises m (and st, if not NULL) into *buf (malloc'ed, caller frees),
 * the bytes checkpoint_save writes. Refuses what checkpoint_save refuses.
 * Returns 0 or a negative ABC_E* code with *buf NULL and a message in
 * err. */
int checkpoint_pack(const struct model *m, const struct train_state *st,
                    char **buf, size_t *len, char *err)
{
    if (buf) *buf = NULL;
    if (len) *len = 0;
    if (!m || !buf || !len)
        return abc_errf(err, ABC_EVALUE, "checkpoint_pack: no %s",
                        !m ? "model" : "output buffer");
    return pack_checked("checkpoint", m, st, buf, len, err);
}

/* Writes m (and st, if not NULL) to path atomically (file_write_atomic):
 * on failure whatever was at path is untouched and no temp file is left.
 * Refuses models or states with non-finite values (ABC_ENUMERIC), which
 * could not be loaded back. Returns 0 or a negative ABC_E* code with a
 * message in err. */
int checkpoint_save(const char *path, const struct model *m,
                    const struct train_state *st, char *err)
{
    if (!path || !*path || !m)
        return abc_errf(err, ABC_EVALUE, "checkpoint_save: no %s",
                        !m ? "model" : "path");
    char *buf = NULL;
    size_t len = 0;
    int rc = pack_checked(path, m, st, &buf, &len, err);
    if (rc) return rc;
    rc = file_write_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------------
 * Loading. path in the helpers below is whatever names the bytes in
 * messages: the file's path, or checkpoint_load_mem's name.
 * ------------------------------------------------------------------- */

/* Reads an array of n integers in lo..hi into out (int). */
static int get_int_array(const char *path, const char *field,
                         const msgpack_object *o, int n, int64_t lo, int64_t hi,
                         int *out, char *err)
{
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return abc_errf(err, ABC_EFORMAT, "%s: %s: expected an array, got %s",
                        path, field, mpread_type_name(o->type));
    if (o->via.array.size != (uint32_t)n)
        return abc_errf(err, ABC_EVALUE, "%s: %s: %u entries, expected %d",
                        path, field, o->via.array.size, n);
    for (int i = 0; i < n; i++) {
        char f[96];
        int64_t v;
        snprintf(f, sizeof f, "%s[%d]", field, i);
        int rc = mpread_get_int(path, f, &o->via.array.ptr[i], lo, hi, &v, err);
        if (rc) return rc;
        out[i] = (int)v;
    }
    return 0;
}

/* Decodes bin o of exactly n floats into dst, checking every value is
 * finite. field names it in messages. */
static int get_f32_bin(const char *path, const char *field,
                       const msgpack_object *o, float *dst, size_t n, char *err)
{
    if (o->type != MSGPACK_OBJECT_BIN)
        return abc_errf(err, ABC_EFORMAT, "%s: %s: expected bin, got %s", path,
                        field, mpread_type_name(o->type));
    if ((size_t)o->via.bin.size != n * 4)
        return abc_errf(err, ABC_EVALUE,
                        "%s: %s: %u bytes of data, expected %zu (%zu float32)",
                        path, field, o->via.bin.size, n * 4, n);
    size_t bad = f32_from_le(dst, (const unsigned char *)o->via.bin.ptr, n);
    if (bad < n)
        return abc_errf(err, ABC_ENUMERIC,
                        "%s: %s: value [%zu] is not finite (%g)", path, field,
                        bad, (double)dst[bad]);
    return 0;
}

/* Reads one entry of "tensors" into m. seen[] marks tensors already read. */
static int load_tensor(const char *path, int version, int idx,
                       const msgpack_object *o, struct model *m, char *seen,
                       char *err)
{
    static const char *const keys[] = {"name", "shape", "buffer", "data",
                                       "crc32"};
    const msgpack_object *v[5], *unk;
    char where[160], show[64], name[MODEL_NAME_LEN];
    snprintf(where, sizeof where, "tensors[%d]", idx);
    int rc = mpread_map_fields(path, where, o, keys, 5, v, &unk, err);
    if (rc) return rc;
    if (!v[0]) return mpread_err_missing_key(path, where, "name", err);
    if (v[0]->type != MSGPACK_OBJECT_STR)
        return abc_errf(err, ABC_EFORMAT, "%s: %s.name: expected str, got %s",
                        path, where, mpread_type_name(v[0]->type));
    struct tensor_info *t = NULL;
    if (mpread_str_copy(v[0], name, sizeof name) == 0)
        t = model_find_tensor(m, name);
    if (!t)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: %s: unknown tensor \"%s\" (not in %s with this "
                        "structure)",
                        path, where, mpread_str_show(v[0], show, sizeof show),
                        arch_name(m->arch));
    snprintf(where, sizeof where, "tensors[%d] (%s)", idx, t->name);
    if (unk) return mpread_err_unknown_key(path, where, unk, err);
    int ti = (int)(t - m->tensors);
    if (seen[ti])
        return abc_errf(err, ABC_EFORMAT, "%s: %s: tensor appears twice", path,
                        where);
    seen[ti] = 1;

    if (!v[1]) return mpread_err_missing_key(path, where, "shape", err);
    if (!v[2]) return mpread_err_missing_key(path, where, "buffer", err);
    if (!v[3]) return mpread_err_missing_key(path, where, "data", err);
    if (version >= 2 && !v[4])
        return mpread_err_missing_key(path, where, "crc32", err);
    if (version < 2 && v[4])
        return abc_errf(err, ABC_EFORMAT,
                        "%s: %s: a \"crc32\" key in a version 1 file", path,
                        where);

    /* shape: compared as given, then against the model */
    const msgpack_object *s = v[1];
    if (s->type != MSGPACK_OBJECT_ARRAY)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: %s.shape: expected an array, "
                        "got %s",
                        path, where, mpread_type_name(s->type));
    int same = s->via.array.size == (uint32_t)t->ndim;
    for (int d = 0; same && d < t->ndim; d++) {
        const msgpack_object *e = &s->via.array.ptr[d];
        same = e->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
               e->via.u64 == (uint64_t)t->shape[d];
    }
    if (!same) {
        char got[96] = "", want[96] = "";
        size_t gl = 0, wl = 0;
        for (uint32_t d = 0; d < s->via.array.size && d < 8; d++) {
            const msgpack_object *e = &s->via.array.ptr[d];
            if (e->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                gl += (size_t)snprintf(got + gl, sizeof got - gl, "%s%llu",
                                       d ? "," : "",
                                       (unsigned long long)e->via.u64);
            else
                gl += (size_t)snprintf(got + gl, sizeof got - gl, "%s<%s>",
                                       d ? "," : "", mpread_type_name(e->type));
            if (gl >= sizeof got) break;
        }
        for (int d = 0; d < t->ndim; d++)
            wl += (size_t)snprintf(want + wl, sizeof want - wl, "%s%d",
                                   d ? "," : "", t->shape[d]);
        return abc_errf(err, ABC_EVALUE, "%s: %s.shape: [%s%s], expected [%s]",
                        path, where, got, s->via.array.size > 8 ? ",..." : "",
                        want);
    }

    if (v[2]->type != MSGPACK_OBJECT_BOOLEAN)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: %s.buffer: expected bool, got "
                        "%s",
                        path, where, mpread_type_name(v[2]->type));
    if ((int)v[2]->via.boolean != (t->is_buffer != 0))
        return abc_errf(err, ABC_EVALUE,
                        "%s: %s.buffer: %s, but the model's tensor is a %s",
                        path, where, v[2]->via.boolean ? "true" : "false",
                        t->is_buffer ? "buffer" : "parameter");

    char field[200];
    snprintf(field, sizeof field, "%s.data", where);
    if (v[4] && v[3]->type == MSGPACK_OBJECT_BIN &&
        (rc = check_crc(path, field, v[3], v[4], err)))
        return rc;
    return get_f32_bin(path, field, v[3], model_tensor_data(m, t), t->numel,
                       err);
}

/* Reads the optional "train" map into st (st->velocity malloc'ed). */
static int load_train(const char *path, int version, const msgpack_object *o,
                      const struct model *m, struct train_state *st, char *err)
{
    static const char *const keys[] = {
        "epoch",      "step",     "best_val_acc",  "velocity",
        "split_seed", "val_size", "velocity_crc32"};
    const msgpack_object *v[7], *unk;
    int rc = mpread_map_fields(path, "train", o, keys, 7, v, &unk, err);
    if (rc) return rc;
    if (unk) return mpread_err_unknown_key(path, "train", unk, err);
    for (int i = 0; i < 3; i++)
        if (!v[i]) return mpread_err_missing_key(path, "train", keys[i], err);
    int64_t x;
    if ((rc = mpread_get_int(path, "train.epoch", v[0], 0, INT_MAX, &x, err)))
        return rc;
    st->epoch = (int)x;
    if ((rc = mpread_get_int(path, "train.step", v[1], 0, INT64_MAX, &x, err)))
        return rc;
    st->step = x;
    if (v[2]->type == MSGPACK_OBJECT_FLOAT64 ||
        v[2]->type == MSGPACK_OBJECT_FLOAT32)
        st->best_val_acc = v[2]->via.f64;
    else
        return abc_errf(err, ABC_EFORMAT,
                        "%s: train.best_val_acc: expected a float, got %s",
                        path, mpread_type_name(v[2]->type));
    if (!isfinite(st->best_val_acc))
        return abc_errf(err, ABC_EVALUE,
                        "%s: train.best_val_acc: not finite (%g)", path,
                        st->best_val_acc);
    st->has_split = 0;
    if (!v[4] != !v[5])
        return mpread_err_missing_key(path, "train",
                                      v[4] ? "val_size" : "split_seed", err);
    if (v[4]) {
        if ((rc = mpread_get_u64(path, "train.split_seed", v[4],
                                 &st->split_seed, err)) ||
            (rc = mpread_get_int(path, "train.val_size", v[5], 0, INT_MAX, &x,
                                 err)))
            return rc;
        st->val_size = (int)x;
        st->has_split = 1;
    }
    st->velocity = NULL;
    if (v[3]) {
        if (version >= 2 && !v[6])
            return mpread_err_missing_key(path, "train", "velocity_crc32", err);
        if (v[6] && v[3]->type == MSGPACK_OBJECT_BIN &&
            (rc = check_crc(path, "train.velocity", v[3], v[6], err)))
            return rc;
        st->velocity = malloc((m->nparams ? m->nparams : 1) * sizeof(float));
        if (!st->velocity)
            return abc_errf(err, ABC_ENOMEM,
                            "%s: train.velocity: out of memory", path);
        rc = get_f32_bin(path, "train.velocity", v[3], st->velocity, m->nparams,
                         err);
        if (rc) {
            free(st->velocity);
            st->velocity = NULL;
            return rc;
        }
    }
    return 0;
}

/* Validates the unpacked top-level object o and builds the model. */
static int load_object(const char *path, const msgpack_object *o,
                       struct model **out, struct train_state *st, char *err)
{
    enum {
        K_FORMAT,
        K_VERSION,
        K_ARCH,
        K_STRUCTURE,
        K_INPUT,
        K_CLASSES,
        K_TENSORS,
        K_TRAIN,
        K_N
    };
    static const char *const keys[K_N] = {"format",    "version", "arch",
                                          "structure", "input",   "classes",
                                          "tensors",   "train"};
    const msgpack_object *v[K_N], *unk;
    char show[64];
    struct model *m = NULL;
    int *full = NULL, *channels = NULL;
    char *seen = NULL;
    struct train_state ts = {0};
    int rc;

    int64_t ver;
    if ((rc = mpread_header(path, "checkpoint", o, CHECKPOINT_FORMAT, &ver,
                            err)))
        return rc;
    rc = mpread_map_fields(path, "top level", o, keys, K_N, v, &unk, err);
    if (rc) return rc;
    if (ver != CHECKPOINT_VERSION && ver != 1)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: unsupported checkpoint version %lld (this build "
                        "reads 1 and %d)",
                        path, (long long)ver, CHECKPOINT_VERSION);
    if (unk) return mpread_err_unknown_key(path, "top level", unk, err);
    for (int i = K_ARCH; i < K_TRAIN; i++)
        if (!v[i])
            return mpread_err_missing_key(path, "top level", keys[i], err);

    /* arch */
    if (v[K_ARCH]->type != MSGPACK_OBJECT_STR)
        return abc_errf(err, ABC_EFORMAT, "%s: arch: expected str, got %s",
                        path, mpread_type_name(v[K_ARCH]->type));
    char aname[64];
    enum arch arch;
    if (mpread_str_copy(v[K_ARCH], aname, sizeof aname) != 0 ||
        arch_parse(aname, &arch) != 0)
        return abc_errf(err, ABC_EVALUE,
                        "%s: arch: unknown architecture "
                        "\"%s\"",
                        path, mpread_str_show(v[K_ARCH], show, sizeof show));

    /* structure */
    int np = arch_prunable(arch, NULL);
    if (np < 0)
        return abc_errf(err, ABC_EVALUE,
                        "%s: arch: %s has no prunable "
                        "layer table",
                        path, aname);
    full = malloc(((size_t)np + 1) * sizeof *full);
    channels = malloc(((size_t)np + 1) * sizeof *channels);
    if (!full || !channels) {
        rc = abc_errf(err, ABC_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    arch_prunable(arch, full);
    const msgpack_object *s = v[K_STRUCTURE];
    if (s->type != MSGPACK_OBJECT_ARRAY) {
        rc = abc_errf(err, ABC_EFORMAT,
                      "%s: structure: expected an array, "
                      "got %s",
                      path, mpread_type_name(s->type));
        goto fail;
    }
    if (s->via.array.size != (uint32_t)np) {
        rc = abc_errf(err, ABC_EVALUE,
                      "%s: structure: %u entries, but %s has %d prunable "
                      "layers",
                      path, s->via.array.size, aname, np);
        goto fail;
    }
    for (int i = 0; i < np; i++) {
        char f[48];
        int64_t c;
        snprintf(f, sizeof f, "structure[%d]", i);
        rc = mpread_get_int(path, f, &s->via.array.ptr[i], 1, full[i], &c, err);
        if (rc) goto fail;
        channels[i] = (int)c;
    }

    /* input, classes */
    int in[3];
    int64_t classes;
    rc = get_int_array(path, "input", v[K_INPUT], 3, 1, 1 << 16, in, err);
    if (rc) goto fail;
    rc = mpread_get_int(path, "classes", v[K_CLASSES], 1, 1 << 24, &classes,
                        err);
    if (rc) goto fail;

    rc = model_create(&m, arch, channels, in[0], in[1], in[2], (int)classes,
                      err);
    if (rc) {
        m = NULL;
        abc_errprefix(err, rc, "%s: cannot build the model it describes", path);
        goto fail;
    }

    /* tensors */
    const msgpack_object *ta = v[K_TENSORS];
    if (ta->type != MSGPACK_OBJECT_ARRAY) {
        rc = abc_errf(err, ABC_EFORMAT,
                      "%s: tensors: expected an array, got "
                      "%s",
                      path, mpread_type_name(ta->type));
        goto fail;
    }
    seen = calloc((size_t)m->ntensors + 1, 1);
    if (!seen) {
        rc = abc_errf(err, ABC_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (uint32_t i = 0; i < ta->via.array.size; i++) {
        rc = load_tensor(path, (int)ver, (int)i, &ta->via.array.ptr[i], m, seen,
                         err);
        if (rc) goto fail;
    }
    for (int i = 0; i < m->ntensors; i++) {
        if (!seen[i]) {
            rc = abc_errf(err, ABC_EFORMAT, "%s: tensors: missing tensor %s",
                          path, m->tensors[i].name);
            goto fail;
        }
    }

    /* train */
    if (v[K_TRAIN]) {
        rc = load_train(path, (int)ver, v[K_TRAIN], m, &ts, err);
        if (rc) goto fail;
    }

    free(seen);
    free(full);
    free(channels);
    if (st) {
        *st = ts;
    } else {
        free(ts.velocity);
    }
    *out = m;
    return 0;

fail:
    free(ts.velocity);
    free(seen);
    free(full);
    free(channels);
    model_destroy(m);
    return rc;
}

/* Validates buf[0..len) as a checkpoint and builds the model it
 * describes; see checkpoint.h. Messages name name where the helpers above
 * say path. buf is only read, and nothing points into it afterwards. */
int checkpoint_load_mem(const char *name, const char *buf, size_t len,
                        struct model **out, struct train_state *st, char *err)
{
    if (out) *out = NULL;
    if (!name) name = "checkpoint";
    if (!out)
        return abc_errf(err, ABC_EVALUE,
                        "checkpoint_load_mem: no output model");
    if (!buf || len == 0)
        return abc_errf(err, ABC_EFORMAT, "%s: no bytes, not a checkpoint",
                        name);
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, MSGPACK_ZONE_CHUNK_SIZE))
        return abc_errf(err, ABC_ENOMEM, "%s: out of memory", name);
    msgpack_object obj;
    int rc = mpread_unpack(name, "checkpoint", buf, len, &zone, &obj, err);
    /* Strings and bins point into buf, arrays and maps into the zone:
     * load_object copies everything it keeps before the zone is freed. */
    if (!rc) rc = load_object(name, &obj, out, st, err);
    msgpack_zone_destroy(&zone);
    return rc;
}

/* Reads path, builds the model it describes and fills its tensors; see
 * checkpoint.h. On success *out owns a new model and *st (if given) the
 * training state, zeroed with velocity NULL when the file has none. On
 * failure *out is NULL, *st is untouched and err names path and the field.
 * The file is only read. */
int checkpoint_load(const char *path, struct model **out,
                    struct train_state *st, char *err)
{
    if (out) *out = NULL;
    if (!path || !out)
        return abc_errf(err, ABC_EVALUE, "checkpoint_load: no %s",
                        !path ? "path" : "output model");
    char *buf;
    size_t len;
    int rc = file_read_all(path, "checkpoint", CHECKPOINT_MAX_BYTES, &buf, &len,
                           err);
    if (rc) return rc;
    rc = checkpoint_load_mem(path, buf, len, out, st, err);
    free(buf);
    return rc;
}

/* Returns 0 when a and b share architecture, input shape, classes and
 * structure, else ABC_EVALUE with the first mismatch in err. */
int checkpoint_check_compatible(const struct model *a, const struct model *b,
                                char *err)
{
    if (!a || !b)
        return abc_errf(err, ABC_EVALUE,
                        "checkpoint_check_compatible: no "
                        "model");
    if (a->arch != b->arch)
        return abc_errf(err, ABC_EVALUE, "architecture differs: %s vs %s",
                        arch_name(a->arch), arch_name(b->arch));
    if (a->in_c != b->in_c || a->in_h != b->in_h || a->in_w != b->in_w)
        return abc_errf(err, ABC_EVALUE,
                        "input shape differs: %dx%dx%d vs %dx%dx%d", a->in_c,
                        a->in_h, a->in_w, b->in_c, b->in_h, b->in_w);
    if (a->num_classes != b->num_classes)
        return abc_errf(err, ABC_EVALUE, "classes differ: %d vs %d",
                        a->num_classes, b->num_classes);
    if (a->nprunable != b->nprunable)
        return abc_errf(err, ABC_EVALUE,
                        "structure differs: %d vs %d prunable layers",
                        a->nprunable, b->nprunable);
    for (int i = 0; i < a->nprunable; i++)
        if (a->channels[i] != b->channels[i])
            return abc_errf(err, ABC_EVALUE,
                            "structure differs at prunable layer %d: %d vs %d "
                            "channels",
                            i, a->channels[i], b->channels[i]);
    return 0;
}

void checkpoint_set_split(struct train_state *st, const struct config *c)
{
    st->has_split = 1;
    st->split_seed = c->data.split_seed;
    st->val_size = c->data.val_size;
}

int checkpoint_check_split(const char *name, const struct train_state *st,
                           const struct config *c, char *err)
{
    if (!st->has_split)
        return abc_errf(err, ABC_EVALUE,
                        "%s records no training/validation split (written "
                        "before abcprune 0.3): its validation images are "
                        "unknown; retrain it with `abcprune train --force "
                        "%s`",
                        name, c->path);
    if (st->split_seed != c->data.split_seed ||
        st->val_size != c->data.val_size)
        return abc_errf(err, ABC_EVALUE,
                        "%s was trained on another split (data.split_seed "
                        "%llu, data.val_size %d) than %s asks for "
                        "(data.split_seed %llu, data.val_size %d): its "
                        "training images would be scored as validation "
                        "images; use the baseline's split or retrain it",
                        name, (unsigned long long)st->split_seed, st->val_size,
                        c->path, (unsigned long long)c->data.split_seed,
                        c->data.val_size);
    return 0;
}

/* safetensors.c - reading and writing safetensors files (see
 * safetensors.h). The header is parsed and printed with cJSON; lengths
 * and offsets from the file are checked before any use. */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fileio.h"

static const char *const dtype_names[ST_DTYPE_COUNT] = {
    "BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3", "I16", "U16", "F16",
    "BF16", "I32", "U32", "F32",     "I64",     "U64", "F64"};
static const size_t dtype_sizes[ST_DTYPE_COUNT] = {1, 1, 1, 1, 1, 2, 2, 2,
                                                   2, 4, 4, 4, 8, 8, 8};

const char *st_dtype_name(enum st_dtype d)
{
    return d >= 0 && d < ST_DTYPE_COUNT ? dtype_names[d] : "?";
}

size_t st_dtype_size(enum st_dtype d)
{
    return d >= 0 && d < ST_DTYPE_COUNT ? dtype_sizes[d] : 0;
}

static int dtype_parse(const char *s, enum st_dtype *out)
{
    for (int d = 0; d < ST_DTYPE_COUNT; d++)
        if (strcmp(s, dtype_names[d]) == 0) {
            *out = (enum st_dtype)d;
            return 0;
        }
    return -1;
}

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

void st_free(struct st_file *f)
{
    if (f->json) cJSON_Delete(f->json);
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->file);
    f->json = NULL;
    f->tensors = NULL;
    f->meta_keys = f->meta_vals = NULL;
    f->file = NULL;
    f->ntensors = f->nmeta = 0;
}

/* A JSON number that is an integer in 0..2^53 (exact in a double). */
static int json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d)) return -1;
    *out = (uint64_t)d;
    return 0;
}

/* Parses one tensor entry e (named e->string) into t; data_len is the size
 * of the data section. */
static int parse_entry(const struct st_file *f, const cJSON *e,
                       const unsigned char *data, uint64_t data_len,
                       struct st_tensor *t, uint64_t *begin, char *err)
{
    const char *n = e->string;
    if (!cJSON_IsObject(e))
        return abc_errf(err, ABC_EFORMAT,
                        "%s: tensor '%.80s': expected an object with dtype, "
                        "shape and data_offsets",
                        f->name, n);
    const cJSON *dt = NULL, *sh = NULL, *off = NULL, *k;
    cJSON_ArrayForEach(k, e)
    {
        if (strcmp(k->string, "dtype") == 0 && !dt)
            dt = k;
        else if (strcmp(k->string, "shape") == 0 && !sh)
            sh = k;
        else if (strcmp(k->string, "data_offsets") == 0 && !off)
            off = k;
        else
            return abc_errf(err, ABC_EFORMAT,
                            "%s: tensor '%.80s': unexpected field '%.40s' "
                            "(expected dtype, shape, data_offsets, each once)",
                            f->name, n, k->string);
    }
    if (!dt || !sh || !off)
        return abc_errf(err, ABC_EFORMAT, "%s: tensor '%.80s': missing %s",
                        f->name, n,
                        !dt   ? "dtype"
                        : !sh ? "shape"
                              : "data_offsets");
    if (!cJSON_IsString(dt) || dtype_parse(dt->valuestring, &t->dtype) != 0)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: tensor '%.80s': dtype %.40s%s%s is not a "
                        "safetensors dtype (F32, F16, BF16, F64, I64, ...)",
                        f->name, n, cJSON_IsString(dt) ? "'" : "(not a string)",
                        cJSON_IsString(dt) ? dt->valuestring : "",
                        cJSON_IsString(dt) ? "'" : "");
    if (!cJSON_IsArray(sh))
        return abc_errf(err, ABC_EFORMAT,
                        "%s: tensor '%.80s': shape is not an array", f->name,
                        n);
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: tensor '%.80s': shape has %d dimensions, at "
                        "most %d supported",
                        f->name, n, nd, ST_MAX_DIMS);
    t->name = n;
    t->ndim = nd;
    size_t item = st_dtype_size(t->dtype);
    int i = 0, empty = 0;
    cJSON_ArrayForEach(k, sh)
    {
        uint64_t d;
        if (json_uint(k, &d) != 0)
            return abc_errf(err, ABC_EFORMAT,
                            "%s: tensor '%.80s': shape[%d] is not an integer "
                            ">= 0",
                            f->name, n, i);
        t->shape[i++] = (int64_t)d;
        empty |= d == 0;
    }
    uint64_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        json_uint(cJSON_GetArrayItem(off, 0), &b) != 0 ||
        json_uint(cJSON_GetArrayItem(off, 1), &en) != 0 || b > en)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: tensor '%.80s': data_offsets is not [begin, end] "
                        "with integers 0 <= begin <= end",
                        f->name, n);
    if (en > data_len)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: tensor '%.80s': data_offsets [%llu, %llu] run "
                        "past the end of the data section (%llu bytes)",
                        f->name, n, (unsigned long long)b,
                        (unsigned long long)en, (unsigned long long)data_len);
    /* the element count, capped by what the data section can hold (so the
     * product never overflows) */
    uint64_t numel = empty ? 0 : 1, cap = data_len / item;
    for (int j = 0; j < nd && numel; j++) {
        uint64_t d = (uint64_t)t->shape[j];
        if (numel > cap / d)
            return abc_errf(err, ABC_EFORMAT,
                            "%s: tensor '%.80s': shape's element count "
                            "overflows or exceeds the %llu-byte data section",
                            f->name, n, (unsigned long long)data_len);
        numel *= d;
    }
    if (en - b != numel * item)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: tensor '%.80s': data_offsets span %llu bytes, "
                        "its shape and dtype %s need %llu",
                        f->name, n, (unsigned long long)(en - b),
                        st_dtype_name(t->dtype),
                        (unsigned long long)(numel * item));
    t->numel = (size_t)numel;
    t->data = data + b;
    t->nbytes = (size_t)(en - b);
    *begin = b;
    return 0;
}

struct span {
    uint64_t begin, end;
    int idx;
};

static int cmp_span(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int cmp_name(const void *a, const void *b)
{
    const struct st_tensor *x = *(const struct st_tensor *const *)a,
                           *y = *(const struct st_tensor *const *)b;
    return strcmp(x->name, y->name);
}

/* No name twice, no two non-empty tensors sharing a byte. */
static int check_unique(const struct st_file *f, const unsigned char *data,
                        char *err)
{
    int n = f->ntensors, rc = 0;
    if (n < 2) return 0;
    struct span *s = malloc(sizeof *s * (size_t)n);
    const struct st_tensor **p = malloc(sizeof *p * (size_t)n);
    if (!s || !p) {
        free(s);
        free(p);
        return abc_errf(err, ABC_ENOMEM, "%s: out of memory", f->name);
    }
    for (int i = 0; i < n; i++) {
        p[i] = &f->tensors[i];
        s[i].begin = (uint64_t)(f->tensors[i].data - data);
        s[i].end = s[i].begin + f->tensors[i].nbytes;
        s[i].idx = i;
    }
    qsort(p, (size_t)n, sizeof *p, cmp_name);
    for (int i = 1; i < n && !rc; i++)
        if (strcmp(p[i - 1]->name, p[i]->name) == 0)
            rc = abc_errf(err, ABC_EFORMAT,
                          "%s: tensor '%.80s' appears twice in the header",
                          f->name, p[i]->name);
    qsort(s, (size_t)n, sizeof *s, cmp_span);
    int prev = -1; /* the non-empty span ending last so far */
    for (int i = 0; i < n && !rc; i++) {
        if (s[i].begin == s[i].end) continue;
        if (prev >= 0 && s[prev].end > s[i].begin)
            rc = abc_errf(
                err, ABC_EFORMAT,
                "%s: tensors '%.80s' [%llu, %llu] and '%.80s' "
                "[%llu, %llu]: data_offsets overlap",
                f->name, f->tensors[s[prev].idx].name,
                (unsigned long long)s[prev].begin,
                (unsigned long long)s[prev].end, f->tensors[s[i].idx].name,
                (unsigned long long)s[i].begin, (unsigned long long)s[i].end);
        if (prev < 0 || s[i].end > s[prev].end) prev = i;
    }
    free(s);
    free(p);
    return rc;
}

static int parse_metadata(struct st_file *f, const cJSON *m, char *err)
{
    if (!cJSON_IsObject(m))
        return abc_errf(err, ABC_EFORMAT,
                        "%s: __metadata__ is not an object of strings",
                        f->name);
    int n = cJSON_GetArraySize(m);
    f->meta_keys = malloc(sizeof(char *) * (size_t)(n ? n : 1));
    f->meta_vals = malloc(sizeof(char *) * (size_t)(n ? n : 1));
    if (!f->meta_keys || !f->meta_vals)
        return abc_errf(err, ABC_ENOMEM, "%s: out of memory", f->name);
    const cJSON *k;
    cJSON_ArrayForEach(k, m)
    {
        if (!cJSON_IsString(k))
            return abc_errf(err, ABC_EFORMAT,
                            "%s: __metadata__ '%.80s': expected a string "
                            "value",
                            f->name, k->string);
        for (int i = 0; i < f->nmeta; i++)
            if (strcmp(f->meta_keys[i], k->string) == 0)
                return abc_errf(err, ABC_EFORMAT,
                                "%s: __metadata__ '%.80s' appears twice",
                                f->name, k->string);
        f->meta_keys[f->nmeta] = k->string;
        f->meta_vals[f->nmeta++] = k->valuestring;
    }
    return 0;
}

int st_parse(struct st_file *f, const char *name, const unsigned char *buf,
             size_t len, char *err)
{
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    if (len < 8)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: truncated: %zu bytes, a safetensors file starts "
                        "with an 8-byte header length",
                        f->name, len);
    uint64_t hlen = le64(buf);
    if (hlen > ST_MAX_HEADER)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: header length %llu exceeds the %llu-byte limit "
                        "(not a safetensors file?)",
                        f->name, (unsigned long long)hlen,
                        (unsigned long long)ST_MAX_HEADER);
    if (hlen > len - 8)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: header length %llu runs past the end of the file "
                        "(%zu bytes): truncated?",
                        f->name, (unsigned long long)hlen, len);
    if (hlen < 2)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: header length %llu: too short for a JSON object",
                        f->name, (unsigned long long)hlen);
    const char *h = (const char *)buf + 8, *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(h, (size_t)hlen, &end, 0);
    if (!j) {
        const char *at = cJSON_GetErrorPtr();
        long pos = at && at >= h && at <= h + hlen ? (long)(at - h) : -1;
        return abc_errf(err, ABC_EFORMAT,
                        "%s: header is not valid JSON (at byte %ld of the "
                        "header)",
                        f->name, pos);
    }
    f->json = j;
    for (const char *p = end; p && p < h + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            st_free(f);
            return abc_errf(err, ABC_EFORMAT,
                            "%s: header: unexpected bytes after the JSON "
                            "object at byte %ld",
                            f->name, (long)(p - h));
        }
    int rc = 0;
    if (!cJSON_IsObject(j)) {
        rc = abc_errf(err, ABC_EFORMAT,
                      "%s: header is JSON but not an object of tensors",
                      f->name);
        goto fail;
    }
    int n = cJSON_GetArraySize(j);
    f->tensors = calloc((size_t)(n ? n : 1), sizeof *f->tensors);
    if (!f->tensors) {
        rc = abc_errf(err, ABC_ENOMEM, "%s: out of memory", f->name);
        goto fail;
    }
    const unsigned char *data = buf + 8 + hlen;
    uint64_t data_len = len - 8 - hlen;
    const cJSON *e;
    int saw_meta = 0;
    cJSON_ArrayForEach(e, j)
    {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (saw_meta++) {
                rc = abc_errf(err, ABC_EFORMAT,
                              "%s: __metadata__ appears twice", f->name);
                goto fail;
            }
            if ((rc = parse_metadata(f, e, err))) goto fail;
            continue;
        }
        uint64_t begin;
        if ((rc = parse_entry(f, e, data, data_len, &f->tensors[f->ntensors],
                              &begin, err)))
            goto fail;
        f->ntensors++;
    }
    if ((rc = check_unique(f, data, err))) goto fail;
    return 0;
fail:
    st_free(f);
    return rc;
}

int st_read(struct st_file *f, const char *path, char *err)
{
    char *buf;
    size_t len;
    memset(f, 0, sizeof *f);
    int rc =
        file_read_all(path, "safetensors file", ST_MAX_FILE, &buf, &len, err);
    if (rc) return rc;
    rc = st_parse(f, path, (const unsigned char *)buf, len, err);
    if (rc) {
        free(buf);
        return rc;
    }
    f->file = (unsigned char *)buf;
    return 0;
}

const struct st_tensor *st_find(const struct st_file *f, const char *name)
{
    for (int i = 0; i < f->ntensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *st_meta(const struct st_file *f, const char *key)
{
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_vals[i];
    return NULL;
}

/* IEEE half -> float, exactly (subnormals, infinities and NaN included). */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f,
             man = h & 0x3ff, u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp) {
        u = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man) { /* subnormal: man * 2^-24 */
        float v = (float)ldexp((double)man, -24);
        return sign ? -v : v;
    } else {
        u = sign;
    }
    float v;
    memcpy(&v, &u, 4);
    return v;
}

int st_tensor_f32(const struct st_file *f, const struct st_tensor *t,
                  float *out, char *err)
{
    const unsigned char *p = t->data;
    if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16 &&
        t->dtype != ST_F64)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: tensor '%.80s' has dtype %s; expected a "
                        "floating dtype (F32, or F64/F16/BF16, which are "
                        "converted to float32)",
                        f->name, t->name, st_dtype_name(t->dtype));
    for (size_t i = 0; i < t->numel; i++) {
        uint32_t u;
        switch (t->dtype) {
        case ST_F32:
            u = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
                (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
            memcpy(&out[i], &u, 4);
            break;
        case ST_BF16:
            u = ((uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8) << 16;
            memcpy(&out[i], &u, 4);
            break;
        case ST_F16:
            out[i] = half_to_float(
                (uint16_t)(p[2 * i] | (uint16_t)(p[2 * i + 1] << 8)));
            break;
        case ST_F64: {
            uint64_t v = le64(p + 8 * i);
            double d;
            memcpy(&d, &v, 8);
            out[i] = (float)d;
            break;
        }
        default: /* refused above */
            break;
        }
    }
    return 0;
}

/* ---- writing ----------------------------------------------------------- */

int st_pack(const struct st_out *t, int n, const char *const *keys,
            const char *const *vals, int nmeta, unsigned char **buf,
            size_t *len, char *err)
{
    *buf = NULL;
    *len = 0;
    int rc = 0;
    char *hdr = NULL;
    cJSON *j = cJSON_CreateObject();
    if (!j) return abc_errf(err, ABC_ENOMEM, "out of memory");
    if (nmeta > 0) {
        cJSON *m = cJSON_AddObjectToObject(j, "__metadata__");
        for (int i = 0; m && i < nmeta; i++)
            if (!cJSON_AddStringToObject(m, keys[i], vals[i])) m = NULL;
        if (!m) goto nomem;
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        if (t[i].dtype != ST_F32 && t[i].dtype != ST_I64) {
            rc = abc_errf(err, ABC_EVALUE,
                          "tensor '%.80s': dtype %s, only F32 and I64 are "
                          "written",
                          t[i].name, st_dtype_name(t[i].dtype));
            goto out;
        }
        if (t[i].ndim < 0 || t[i].ndim > ST_MAX_DIMS ||
            strcmp(t[i].name, "__metadata__") == 0 ||
            cJSON_GetObjectItemCaseSensitive(j, t[i].name)) {
            rc = abc_errf(err, ABC_EVALUE,
                          "tensor '%.80s': bad name (twice, or "
                          "__metadata__) or %d dimensions",
                          t[i].name, t[i].ndim);
            goto out;
        }
        uint64_t numel = 1;
        cJSON *e = cJSON_AddObjectToObject(j, t[i].name);
        cJSON *sh = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        if (!e ||
            !cJSON_AddStringToObject(e, "dtype", st_dtype_name(t[i].dtype)) ||
            !sh)
            goto nomem;
        for (int d = 0; d < t[i].ndim; d++) {
            if (t[i].shape[d] < 0 || t[i].shape[d] > ((int64_t)1 << 40)) {
                rc = abc_errf(err, ABC_EVALUE,
                              "tensor '%.80s': bad shape[%d] %lld", t[i].name,
                              d, (long long)t[i].shape[d]);
                goto out;
            }
            numel *= (uint64_t)t[i].shape[d];
            cJSON *v = cJSON_CreateNumber((double)t[i].shape[d]);
            if (!v || !cJSON_AddItemToArray(sh, v)) goto nomem;
        }
        uint64_t nb = numel * st_dtype_size(t[i].dtype);
        const double o[2] = {(double)off, (double)(off + nb)};
        cJSON *oa = cJSON_CreateDoubleArray(o, 2);
        if (!oa || !cJSON_AddItemToObject(e, "data_offsets", oa)) goto nomem;
        off += nb;
    }
    hdr = cJSON_PrintUnformatted(j);
    if (!hdr) goto nomem;
    size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
    *len = 8 + padded + (size_t)off;
    *buf = malloc(*len);
    if (!*buf) goto nomem;
    put_le64(*buf, padded);
    memcpy(*buf + 8, hdr, hl);
    memset(*buf + 8 + hl, ' ', padded - hl);
    unsigned char *p = *buf + 8 + padded;
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++)
            numel *= (size_t)t[i].shape[d];
        for (size_t k = 0; k < numel; k++) {
            uint64_t v;
            if (t[i].dtype == ST_F32) {
                uint32_t u;
                memcpy(&u, (const float *)t[i].data + k, 4);
                for (int b = 0; b < 4; b++)
                    *p++ = (unsigned char)(u >> (8 * b));
            } else {
                memcpy(&v, (const int64_t *)t[i].data + k, 8);
                put_le64(p, v);
                p += 8;
            }
        }
    }
    goto out;
nomem:
    rc = abc_errf(err, ABC_ENOMEM,
                  "out of memory writing a safetensors "
                  "header");
out:
    if (rc) {
        free(*buf);
        *buf = NULL;
        *len = 0;
    }
    free(hdr);
    cJSON_Delete(j);
    return rc;
}

int st_write(const char *path, const struct st_out *t, int n,
             const char *const *keys, const char *const *vals, int nmeta,
             char *err)
{
    unsigned char *buf;
    size_t len;
    int rc = st_pack(t, n, keys, vals, nmeta, &buf, &len, err);
    if (rc) return abc_errprefix(err, rc, "%s", path);
    rc = file_write_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

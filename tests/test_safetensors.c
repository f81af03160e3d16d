/* test_safetensors.c - the safetensors reader and writer (io/safetensors.c)
 * and the model mapping (io/stmodel.c): round trips, dtype conversion, and
 * hostile files, each refused with a message that names the file and the
 * tensor or field. Single process. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/err.h"
#include "io/safetensors.h"
#include "io/stmodel.h"
#include "nn/model.h"

#define FILE_NAME "hostile.safetensors"

/* A file: 8-byte length of header, header, data_len bytes of data. */
static unsigned char *mk(const char *header, size_t data_len, size_t *len)
{
    size_t h = strlen(header);
    *len = 8 + h + data_len;
    unsigned char *b = calloc(*len, 1);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_len; i++)
        b[8 + h + i] = (unsigned char)i;
    return b;
}

/* Parses buf and checks that it fails with a message naming the file and
 * containing every one of the NULL-terminated substrings. */
static void expect_error(const char *what, const unsigned char *buf, size_t len,
                         ...)
{
    struct st_file f;
    char err[ABC_ERRLEN] = "";
    int rc = st_parse(&f, FILE_NAME, buf, len, err);
    CHECK(rc != 0, "%s: accepted", what);
    CHECK(strstr(err, FILE_NAME) != NULL, "%s: '%s' does not name the file",
          what, err);
    va_list ap;
    va_start(ap, len);
    for (const char *s = va_arg(ap, const char *); s;
         s = va_arg(ap, const char *))
        CHECK(strstr(err, s) != NULL, "%s: '%s' lacks '%s'", what, err, s);
    va_end(ap);
    if (rc) printf("ok   %s: %s\n", what, err);
    st_free(&f);
}

static void expect_header_error(const char *what, const char *header,
                                size_t data_len, const char *s1, const char *s2)
{
    size_t len;
    unsigned char *b = mk(header, data_len, &len);
    expect_error(what, b, len, s1, s2, (const char *)NULL);
    free(b);
}

static void test_hostile(void)
{
    size_t len;
    unsigned char *b = mk("{}", 0, &len);
    expect_error("truncated", b, 5, "truncated", (const char *)NULL);
    free(b);
    /* header length past the end of the file */
    b = mk("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
           4, &len);
    expect_error("header past end", b, len - 10, "header length",
                 "past the end", (const char *)NULL);
    b[5] = 1; /* 2^40 + ...: beyond the cap */
    expect_error("header too long", b, len, "exceeds", (const char *)NULL);
    free(b);
    expect_header_error("not JSON", "{\"a\": {\"dtype\": ", 0, "not valid JSON",
                        NULL);
    expect_header_error("not an object", "[1, 2, 3]", 0, "not an object", NULL);
    expect_header_error("trailing bytes", "{} xyz", 0, "unexpected bytes",
                        NULL);
    expect_header_error(
        "overlap",
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}",
        24, "overlap", "'b'");
    expect_header_error(
        "out of range",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[100],\"data_offsets\":[0,400]}}",
        16, "'w'", "past the end of the data");
    expect_header_error(
        "offsets reversed",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 16,
        "'w'", "data_offsets");
    expect_header_error(
        "unknown dtype",
        "{\"w\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
        "'w'", "F33");
    expect_header_error(
        "dtype not a string",
        "{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'w'",
        "dtype");
    expect_header_error(
        "length mismatch",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}",
        16, "'w'", "need 16");
    expect_header_error("huge shape",
                        "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,"
                        "4294967296,4294967296],\"data_offsets\":[0,4]}}",
                        4, "'w'", "overflows");
    expect_header_error(
        "shape beyond 2^53",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}",
        4, "'w'", "shape[0]");
    expect_header_error(
        "negative shape",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,4]}}",
        4, "'w'", "shape[1]");
    expect_header_error("too many dims",
                        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,"
                        "1],\"data_offsets\":[0,4]}}",
                        4, "'w'", "9 dimensions");
    expect_header_error("missing offsets",
                        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "'w'",
                        "missing data_offsets");
    expect_header_error("extra field",
                        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_"
                        "offsets\":[0,4],\"scale\":2}}",
                        4, "'w'", "'scale'");
    expect_header_error("entry not an object", "{\"w\":[1,2]}", 0, "'w'",
                        "object");
    expect_header_error(
        "name twice",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
        "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
        8, "'w'", "twice");
    expect_header_error("metadata not strings",
                        "{\"__metadata__\":{\"arch\":3}}", 0, "__metadata__",
                        "'arch'");
}

static void test_roundtrip(void)
{
    float a[6] = {1.5f, -2.0f, 0.0f, 3.25f, -0.125f, 1e-20f};
    int64_t n = 123;
    struct st_out t[2] = {
        {.name = "a", .dtype = ST_F32, .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "n", .dtype = ST_I64, .ndim = 0, .data = &n}};
    const char *keys[] = {"arch"}, *vals[] = {"resnet20"};
    unsigned char *buf;
    size_t len;
    char err[ABC_ERRLEN];
    CHECK(st_pack(t, 2, keys, vals, 1, &buf, &len, err) == 0, "%s", err);
    CHECK((len - 8 - 24 - 8) % 8 == 0, "header not padded to 8: %zu", len);
    struct st_file f;
    int rc = st_parse(&f, "rt", buf, len, err);
    CHECK(rc == 0, "%s", err);
    if (rc == 0) {
        const struct st_tensor *ta = st_find(&f, "a"), *tn = st_find(&f, "n");
        CHECK(ta && ta->ndim == 2 && ta->shape[1] == 3 && ta->numel == 6,
              "tensor a");
        CHECK(tn && tn->ndim == 0 && tn->numel == 1 && tn->dtype == ST_I64,
              "tensor n");
        float back[6];
        CHECK(ta && st_tensor_f32(&f, ta, back, err) == 0, "%s", err);
        CHECK(memcmp(a, back, sizeof a) == 0, "F32 values differ");
        CHECK(tn && st_tensor_f32(&f, tn, back, err) != 0 &&
                  strstr(err, "'n'") && strstr(err, "I64"),
              "I64 converted to float: %s", err);
        const char *m = st_meta(&f, "arch");
        CHECK(m && strcmp(m, "resnet20") == 0, "metadata");
    }
    st_free(&f);
    free(buf);
}

static void test_convert(void)
{
    /* 1.0, -2.5, 65504 (max), 2^-24 (smallest subnormal), -0, inf */
    const uint16_t h[6] = {0x3c00, 0xc100, 0x7bff, 0x0001, 0x8000, 0x7c00};
    const float hv[6] = {1.0f, -2.5f, 65504.0f, 5.9604645e-8f, -0.0f, INFINITY};
    /* bf16 of 1.0, -3.0, 0.15625 */
    const uint16_t bf[3] = {0x3f80, 0xc040, 0x3e20};
    const float bv[3] = {1.0f, -3.0f, 0.15625f};
    const double dv[2] = {0.1, -1e10};
    unsigned char data[12 + 6 + 16];
    for (int i = 0; i < 6; i++)
        data[2 * i] = (unsigned char)(h[i] & 0xff),
                 data[2 * i + 1] = (unsigned char)(h[i] >> 8);
    for (int i = 0; i < 3; i++)
        data[12 + 2 * i] = (unsigned char)(bf[i] & 0xff),
                      data[12 + 2 * i + 1] = (unsigned char)(bf[i] >> 8);
    for (int i = 0; i < 2; i++) {
        uint64_t u;
        memcpy(&u, &dv[i], 8);
        for (int k = 0; k < 8; k++)
            data[18 + 8 * i + k] = (unsigned char)(u >> (8 * k));
    }
    const char *hdr =
        "{\"h\":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[0,12]},"
        "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[12,18]},"
        "\"d\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[18,34]},"
        "\"i\":{\"dtype\":\"I32\",\"shape\":[0],\"data_offsets\":[34,34]}}";
    size_t len;
    unsigned char *buf = mk(hdr, sizeof data, &len);
    memcpy(buf + len - sizeof data, data, sizeof data);
    struct st_file f;
    char err[ABC_ERRLEN];
    int rc = st_parse(&f, "conv", buf, len, err);
    CHECK(rc == 0, "%s", err);
    if (!rc) {
        float out[6];
        CHECK(st_tensor_f32(&f, st_find(&f, "h"), out, err) == 0, "%s", err);
        for (int i = 0; i < 6; i++)
            CHECK(out[i] == hv[i] && signbit(out[i]) == signbit(hv[i]),
                  "F16[%d] %g, expected %g", i, out[i], hv[i]);
        CHECK(st_tensor_f32(&f, st_find(&f, "b"), out, err) == 0, "%s", err);
        for (int i = 0; i < 3; i++)
            CHECK(out[i] == bv[i], "BF16[%d] %g, expected %g", i, out[i],
                  bv[i]);
        CHECK(st_tensor_f32(&f, st_find(&f, "d"), out, err) == 0, "%s", err);
        for (int i = 0; i < 2; i++)
            CHECK(out[i] == (float)dv[i], "F64[%d] %g", i, out[i]);
        rc = st_tensor_f32(&f, st_find(&f, "i"), out, err);
        CHECK(rc != 0 && strstr(err, "conv") && strstr(err, "'i'") &&
                  strstr(err, "I32"),
              "I32 tensor: %s", err);
    }
    st_free(&f);
    free(buf);
}

/* A smallnet's tensors as st_out entries (our names), in model order. */
static int model_entries(const struct model *m, struct st_out *o)
{
    for (int t = 0; t < m->ntensors; t++) {
        const struct tensor_info *ti = &m->tensors[t];
        o[t] = (struct st_out){.name = ti->name,
                               .dtype = ST_F32,
                               .ndim = ti->ndim,
                               .data = model_tensor_data(m, ti)};
        for (int d = 0; d < ti->ndim; d++)
            o[t].shape[d] = ti->shape[d];
    }
    return m->ntensors;
}

/* stmodel_import of entries o[0..n) into a full smallnet for 1x12x12. */
static int import_entries(const struct st_out *o, int n, struct model **out,
                          struct stmodel_report *rep, char *err)
{
    unsigned char *buf;
    size_t len;
    int rc = st_pack(o, n, NULL, NULL, 0, &buf, &len, err);
    if (rc) return rc;
    struct st_file f;
    if ((rc = st_parse(&f, FILE_NAME, buf, len, err)) == 0) {
        struct stmodel_want w = {.arch = ARCH_SMALLNET,
                                 .in_c = 1,
                                 .in_h = 12,
                                 .in_w = 12,
                                 .classes = 10,
                                 .config = "test.yaml"};
        rc = stmodel_import(out, &f, &w, rep, err);
    }
    st_free(&f);
    free(buf);
    return rc;
}

static void test_model_keys(void)
{
    char err[ABC_ERRLEN];
    struct model *m, *got = NULL;
    if (model_create(&m, ARCH_SMALLNET, NULL, 1, 12, 12, 10, err)) {
        CHECK(0, "%s", err);
        return;
    }
    model_init_weights(m, 5);
    for (size_t i = 0; i < m->nbuffers; i++) /* random-ish BN statistics */
        m->buffers[i] = 0.5f + 0.01f * (float)(i % 37);
    struct st_out o[64];
    int n = model_entries(m, o);
    struct stmodel_report rep;

    /* all there: bit-identical */
    int rc = import_entries(o, n, &got, &rep, err);
    CHECK(rc == 0, "%s", err);
    if (!rc) {
        CHECK(memcmp(got->params, m->params, m->nparams * 4) == 0 &&
                  memcmp(got->buffers, m->buffers, m->nbuffers * 4) == 0,
              "import of our own names is not bit-identical");
        model_destroy(got);
    }

    /* a conv bias is folded into the BN running mean; num_batches_tracked
     * ignored */
    float bias[16];
    for (int i = 0; i < 16; i++)
        bias[i] = 0.25f * (float)(i - 8);
    int64_t nbt = 7;
    struct st_out o2[66];
    memcpy(o2, o, sizeof(struct st_out) * (size_t)n);
    o2[n] = (struct st_out){.name = "conv1.bias",
                            .dtype = ST_F32,
                            .ndim = 1,
                            .shape = {16},
                            .data = bias};
    o2[n + 1] = (struct st_out){.name = "bn1.num_batches_tracked",
                                .dtype = ST_I64,
                                .ndim = 0,
                                .data = &nbt};
    rc = import_entries(o2, n + 2, &got, &rep, err);
    CHECK(rc == 0 && rep.folded == 1 && rep.ignored_batches == 1,
          "bias fold: %s (folded %d, ignored %d)", err, rep.folded,
          rep.ignored_batches);
    if (!rc) {
        const float *rm0 =
            model_tensor_data(m, model_find_tensor(m, "bn1.running_mean"));
        const float *rm =
            model_tensor_data(got, model_find_tensor(got, "bn1.running_mean"));
        int ok = 1;
        for (int i = 0; i < 16; i++)
            ok &= rm[i] == rm0[i] - bias[i];
        CHECK(ok, "running_mean is not mean - bias");
        model_destroy(got);
    }

    /* one missing, two unknown: all named */
    struct st_out o3[66];
    int k = 0;
    for (int i = 0; i < n; i++)
        if (strcmp(o[i].name, "bn2.running_var") != 0) o3[k++] = o[i];
    o3[k] = o[0];
    o3[k++].name = "conv9.weight";
    o3[k] = o[1];
    o3[k++].name = "module.head.weight";
    rc = import_entries(o3, k, &got, &rep, err);
    CHECK(rc != 0 && strstr(err, FILE_NAME) && strstr(err, "bn2.running_var") &&
              strstr(err, "conv9.weight") && strstr(err, "head.weight") &&
              strstr(err, "1 tensor missing") &&
              strstr(err, "2 keys unmatched"),
          "missing/extra keys: %s", err);
    if (rc) printf("ok   missing/extra keys: %s\n", err);

    /* a wrong shape names the tensor and both shapes */
    memcpy(o3, o, sizeof(struct st_out) * (size_t)n);
    for (int i = 0; i < n; i++)
        if (strcmp(o3[i].name, "fc.weight") == 0) o3[i].shape[1] = 32;
    rc = import_entries(o3, n, &got, &rep, err);
    CHECK(rc != 0 && strstr(err, FILE_NAME) && strstr(err, "'fc.weight'") &&
              strstr(err, "[10,32]") && strstr(err, "[10,64]"),
          "shape: %s", err);
    if (rc) printf("ok   wrong shape: %s\n", err);

    /* a pruned file for a full config: the error says what to set */
    struct model *p;
    int ch[3] = {16, 20, 64};
    if (model_create(&p, ARCH_SMALLNET, ch, 1, 12, 12, 10, err) == 0) {
        n = model_entries(p, o3);
        rc = import_entries(o3, n, &got, &rep, err);
        CHECK(rc != 0 && strstr(err, FILE_NAME) &&
                  strstr(err, "model.channels: [16,20,64]") &&
                  strstr(err, "test.yaml"),
              "structure: %s", err);
        if (rc) printf("ok   structure: %s\n", err);
        model_destroy(p);
    }
    model_destroy(m);
}

int main(void)
{
    test_hostile();
    test_roundtrip();
    test_convert();
    test_model_keys();
    return check_finish("test_safetensors");
}

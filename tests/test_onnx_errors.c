/* test_onnx_errors.c - onnx_export (common/io/onnx.c) read back with
 * protobuf-c: the graph of smallnet is the expected node sequence, its
 * folded conv weight and bias equal W*gamma/sqrt(var+eps) and
 * beta-mean*gamma/sqrt(var+eps) computed here in double, a pruned
 * ResNet-20's option-A shortcuts are Slice (steps 2) + Pad (zero channels
 * split evenly); and the error paths: a missing directory, a NaN weight and
 * a negative running variance are errors naming the file (and the tensor),
 * and leave an existing file byte for byte. Single process; runs in the
 * build's testdata/. (The numbers of whole graphs against onnxruntime are
 * test_onnx.sh.) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/rng.h"
#include "io/onnx.h"
#include "nn/model.h"
#include "onnx.pb-c.h"

#define PREFIX "onnx_test_"

/* A model with random BN statistics (so folding changes the weights). */
static struct model *make_model(enum arch a, const int *channels)
{
    char err[ABC_ERRLEN];
    struct model *m = NULL;
    int rc = model_create(&m, a, channels, 1, 28, 28, 10, err);
    CHECK(rc == 0, "model_create(%s): %s", arch_name(a), err);
    if (rc) return NULL;
    model_init_weights(m, 3);
    struct rng r;
    rng_seed(&r, 4);
    for (int t = 0; t < m->ntensors; t++) {
        struct tensor_info *ti = &m->tensors[t];
        float *d = model_tensor_data(m, ti);
        if (ti->role == TENSOR_BN_GAMMA || ti->role == TENSOR_BN_VAR)
            for (size_t j = 0; j < ti->numel; j++)
                d[j] = (float)(0.5 + rng_uniform(&r));
        else if (ti->role == TENSOR_BN_BETA || ti->role == TENSOR_BN_MEAN)
            for (size_t j = 0; j < ti->numel; j++)
                d[j] = (float)(rng_uniform(&r) - 0.5);
    }
    return m;
}

/* Reads path back as an ONNX model (NULL on failure, counted). */
static Onnx__ModelProto *read_back(const char *path)
{
    char err[ABC_ERRLEN], *buf;
    size_t len;
    int rc = file_read_all(path, "ONNX file", (size_t)1 << 30, &buf, &len, err);
    CHECK(rc == 0, "read %s: %s", path, err);
    if (rc) return NULL;
    Onnx__ModelProto *mp =
        onnx__model_proto__unpack(NULL, len, (const uint8_t *)buf);
    CHECK(mp != NULL, "%s does not unpack as an onnx.ModelProto", path);
    free(buf);
    return mp;
}

static const Onnx__TensorProto *find_init(const Onnx__GraphProto *g,
                                          const char *name)
{
    for (size_t i = 0; i < g->n_initializer; i++)
        if (strcmp(g->initializer[i]->name, name) == 0)
            return g->initializer[i];
    return NULL;
}

static void test_smallnet_graph(void)
{
    struct model *m = make_model(ARCH_SMALLNET, NULL);
    if (!m) return;
    char err[ABC_ERRLEN];
    int rc = onnx_export(m, PREFIX "smallnet.onnx", err);
    CHECK(rc == 0, "onnx_export: %s", err);
    Onnx__ModelProto *mp = rc ? NULL : read_back(PREFIX "smallnet.onnx");
    if (!mp) {
        model_destroy(m);
        return;
    }
    CHECK(mp->ir_version == ONNX_IR_VERSION, "ir_version %lld",
          (long long)mp->ir_version);
    CHECK(mp->n_opset_import == 1 && mp->opset_import[0]->version == 13,
          "opset");
    CHECK(strcmp(mp->producer_name, "abcprune") == 0, "producer %s",
          mp->producer_name);
    const Onnx__GraphProto *g = mp->graph;
    const char *want[] = {
        "Conv", "Relu", "MaxPool",           "Conv",    "Relu", "MaxPool",
        "Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm"};
    size_t nwant = sizeof want / sizeof *want;
    CHECK(g->n_node == nwant, "%zu nodes, expected %zu", g->n_node, nwant);
    for (size_t i = 0; i < g->n_node && i < nwant; i++)
        CHECK(strcmp(g->node[i]->op_type, want[i]) == 0,
              "node %zu is %s, "
              "expected %s",
              i, g->node[i]->op_type, want[i]);
    CHECK(g->n_input == 1 && strcmp(g->input[0]->name, "input") == 0, "input");
    CHECK(g->n_output == 1 && strcmp(g->output[0]->name, "logits") == 0 &&
              strcmp(g->node[g->n_node - 1]->output[0], "logits") == 0,
          "output logits");
    /* a node reads the previous node's output: a chain */
    for (size_t i = 1; i < g->n_node; i++)
        CHECK(strcmp(g->node[i]->input[0], g->node[i - 1]->output[0]) == 0,
              "node %zu reads %s", i, g->node[i]->input[0]);

    /* the folded conv2, against a double computation here */
    const Onnx__TensorProto *w = find_init(g, "conv2.weight");
    const Onnx__TensorProto *b = find_init(g, "conv2.bias");
    const float *W = model_tensor_data(m, model_find_tensor(m, "conv2.weight"));
    const float *ga = model_tensor_data(m, model_find_tensor(m, "bn2.weight"));
    const float *be = model_tensor_data(m, model_find_tensor(m, "bn2.bias"));
    const float *mu =
        model_tensor_data(m, model_find_tensor(m, "bn2.running_mean"));
    const float *va =
        model_tensor_data(m, model_find_tensor(m, "bn2.running_var"));
    CHECK(w && w->n_dims == 4 && w->dims[0] == 32 && w->dims[1] == 16 &&
              w->dims[2] == 3 && w->dims[3] == 3 && w->n_float_data == 32 * 144,
          "conv2.weight shape");
    CHECK(b && b->n_dims == 1 && b->dims[0] == 32 && b->n_float_data == 32,
          "conv2.bias shape");
    if (w && b && w->n_float_data == 32 * 144 && b->n_float_data == 32) {
        double maxw = 0, maxb = 0;
        for (int o = 0; o < 32; o++) {
            double s = ga[o] / sqrt((double)va[o] + 1e-5);
            for (int j = 0; j < 144; j++)
                maxw = fmax(maxw, fabs(w->float_data[o * 144 + j] -
                                       W[o * 144 + j] * s));
            maxb = fmax(maxb, fabs(b->float_data[o] - (be[o] - mu[o] * s)));
        }
        CHECK(maxw < 1e-6 && maxb < 1e-6,
              "folded conv2: max|diff| weight %.3g bias %.3g", maxw, maxb);
        printf("ok   folded conv2 = W*gamma/sqrt(var+eps): max|diff| weight "
               "%.3g, bias %.3g\n",
               maxw, maxb);
    }
    onnx__model_proto__free_unpacked(mp, NULL);
    model_destroy(m);
}

static const Onnx__NodeProto *find_node(const Onnx__GraphProto *g,
                                        const char *op, int nth)
{
    for (size_t i = 0; i < g->n_node; i++)
        if (strcmp(g->node[i]->op_type, op) == 0 && nth-- == 0)
            return g->node[i];
    return NULL;
}

static void test_resnet_shortcut(void)
{
    int ch[9] = {3, 16, 8, 20, 32, 5, 10, 64, 33};
    struct model *m = make_model(ARCH_RESNET20, ch);
    if (!m) return;
    char err[ABC_ERRLEN];
    int rc = onnx_export(m, PREFIX "resnet.onnx", err);
    CHECK(rc == 0, "onnx_export: %s", err);
    Onnx__ModelProto *mp = rc ? NULL : read_back(PREFIX "resnet.onnx");
    if (!mp) {
        model_destroy(m);
        return;
    }
    const Onnx__GraphProto *g = mp->graph;
    int count[4] = {0};
    const char *ops[4] = {"Slice", "Pad", "Add", "Conv"};
    for (size_t i = 0; i < g->n_node; i++)
        for (int k = 0; k < 4; k++)
            count[k] += strcmp(g->node[i]->op_type, ops[k]) == 0;
    CHECK(count[0] == 2 && count[1] == 2 && count[2] == 9 && count[3] == 19,
          "Slice %d Pad %d Add %d Conv %d, expected 2 2 9 19", count[0],
          count[1], count[2], count[3]);
    /* stage 3's shortcut: rows/cols 0..H step 2 of a 14x14 map, then 16
     * zero channels before and 16 after the 32 */
    const Onnx__NodeProto *sl = find_node(g, "Slice", 1);
    const Onnx__NodeProto *pd = find_node(g, "Pad", 1);
    if (sl && pd && sl->n_input == 5 && pd->n_input == 2) {
        const Onnx__TensorProto *ends = find_init(g, sl->input[2]);
        const Onnx__TensorProto *steps = find_init(g, sl->input[4]);
        const Onnx__TensorProto *pads = find_init(g, pd->input[1]);
        CHECK(ends && ends->n_int64_data == 2 && ends->int64_data[0] == 14 &&
                  ends->int64_data[1] == 14,
              "Slice ends");
        CHECK(steps && steps->n_int64_data == 2 && steps->int64_data[0] == 2 &&
                  steps->int64_data[1] == 2,
              "Slice steps");
        static const int64_t want[8] = {0, 16, 0, 0, 0, 16, 0, 0};
        CHECK(pads && pads->n_int64_data == 8 &&
                  memcmp(pads->int64_data, want, sizeof want) == 0,
              "Pad pads");
        CHECK(strcmp(pd->input[0], sl->output[0]) == 0, "Pad reads Slice");
    } else {
        CHECK(0, "no second Slice/Pad");
    }
    onnx__model_proto__free_unpacked(mp, NULL);
    model_destroy(m);
}

/* The bytes of path (NULL if unreadable); *len set. */
static char *slurp(const char *path, size_t *len)
{
    char err[ABC_ERRLEN], *buf = NULL;
    if (file_read_all(path, "file", (size_t)1 << 30, &buf, len, err)) return 0;
    return buf;
}

static void test_errors(void)
{
    struct model *m = make_model(ARCH_SMALLNET, NULL);
    if (!m) return;
    char err[ABC_ERRLEN] = "";
    const char *path = PREFIX "keep.onnx";

    int rc = onnx_export(m, PREFIX "no_such_dir/x.onnx", err);
    CHECK(rc == ABC_EIO && strstr(err, PREFIX "no_such_dir/x.onnx"),
          "missing directory: rc %d, err %s", rc, err);
    CHECK(!file_exists(PREFIX "no_such_dir/x.onnx"), "file appeared");

    rc = onnx_export(m, "", err);
    CHECK(rc == ABC_EVALUE, "empty path: rc %d, err %s", rc, err);

    rc = onnx_export(m, path, err);
    CHECK(rc == 0, "good export: %s", err);
    size_t len0 = 0, len1 = 0;
    char *before = slurp(path, &len0);

    float *w = model_tensor_data(m, model_find_tensor(m, "conv3.weight"));
    float saved = w[7];
    w[7] = NAN;
    rc = onnx_export(m, path, err);
    CHECK(rc == ABC_EVALUE && strstr(err, path) && strstr(err, "conv3.weight"),
          "NaN weight: rc %d, err %s", rc, err);
    w[7] = saved;

    float *v = model_tensor_data(m, model_find_tensor(m, "bn1.running_var"));
    v[2] = -1.0f;
    rc = onnx_export(m, path, err);
    CHECK(rc == ABC_EVALUE && strstr(err, path) &&
              strstr(err, "bn1.running_var"),
          "negative variance: rc %d, err %s", rc, err);
    printf("     (the message: %s)\n", err);

    char *after = slurp(path, &len1);
    CHECK(before && after && len0 == len1 && memcmp(before, after, len0) == 0,
          "a failed export changed %s", path);
    free(before);
    free(after);
    model_destroy(m);
}

int main(void)
{
    test_smallnet_graph();
    test_resnet_shortcut();
    test_errors();
    return check_finish("test_onnx_errors");
}

/* tool_onnx_ref.c - helper of the ONNX export test (test_onnx.sh): builds a
 * model (full or pruned) with seeded random weights and random BN affine
 * parameters and running statistics, writes it as a checkpoint, and writes
 * a seeded input batch and the engine's eval-mode logits on it as raw
 * little-endian float32 files (PREFIX.x: (B,C,H,W), PREFIX.logits:
 * (B,classes)), which onnx_run.mjs compares onnxruntime's logits against.
 * usage: tool_onnx_ref ARCH C H W CLASSES B CKPT PREFIX [c1,c2,...|-] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fileio.h"
#include "core/rng.h"
#include "io/checkpoint.h"
#include "nn/model.h"

static int write_floats(const char *prefix, const char *ext, const float *v,
                        size_t n, char *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s.%s", prefix, ext);
    return file_write_atomic(path, v, n * sizeof *v, err);
}

int main(int argc, char **argv)
{
    if (argc < 9) {
        fprintf(stderr,
                "usage: %s ARCH C H W CLASSES B CKPT PREFIX [c1,c2,...|-]\n",
                argv[0]);
        return 2;
    }
    enum arch a;
    if (arch_parse(argv[1], &a)) {
        fprintf(stderr, "unknown arch %s\n", argv[1]);
        return 2;
    }
    int C = atoi(argv[2]), H = atoi(argv[3]), W = atoi(argv[4]);
    int K = atoi(argv[5]), B = atoi(argv[6]);
    int ch[512], nch = 0;
    if (argc > 9 && strcmp(argv[9], "-") != 0)
        for (char *t = strtok(argv[9], ","); t && nch < 512;
             t = strtok(NULL, ","))
            ch[nch++] = atoi(t);
    char err[ABC_ERRLEN];
    struct model *m;
    if (B < 1 || B > 64) {
        fprintf(stderr, "batch %d, expected 1..64\n", B);
        return 2;
    }
    if (model_create(&m, a, nch ? ch : NULL, C, H, W, K, err) ||
        model_reserve(m, B, err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    model_init_weights(m, 17);
    /* Non-trivial BN: gamma and running var in [0.5,1.5), beta and running
     * mean in [-0.5,0.5), so that folding them into the convs matters. */
    struct rng r;
    rng_seed(&r, 23);
    for (int t = 0; t < m->ntensors; t++) {
        struct tensor_info *ti = &m->tensors[t];
        float *d = model_tensor_data(m, ti);
        double lo = ti->role == TENSOR_BN_GAMMA || ti->role == TENSOR_BN_VAR
                        ? 0.5
                        : -0.5;
        if (ti->role == TENSOR_CONV_WEIGHT || ti->role == TENSOR_LINEAR_WEIGHT)
            continue;
        for (size_t j = 0; j < ti->numel; j++)
            d[j] = (float)(lo + rng_uniform(&r));
    }
    size_t xn = (size_t)B * C * H * W;
    float *x = malloc(xn * sizeof *x);
    if (!x) return 1;
    for (size_t i = 0; i < xn; i++)
        x[i] = (float)rng_normal(&r);
    model_forward(m, x, NULL, B, 0, NULL);
    int rc = checkpoint_save(argv[7], m, NULL, err);
    if (!rc) rc = write_floats(argv[8], "x", x, xn, err);
    if (!rc)
        rc = write_floats(argv[8], "logits", model_logits(m), (size_t)B * K,
                          err);
    if (rc) fprintf(stderr, "%s\n", err);
    free(x);
    model_destroy(m);
    return rc ? 1 : 0;
}

/* bench_train.c - training and inference throughput of our engine on one
 * model at batch B, 1xHxW input, with T threads. Prints one JSON line:
 * median train-step seconds over the timed steps, train and inference
 * images/s, and the BLAS kernel path that ran (OpenBLAS's core: its
 * runtime dispatch, e.g. SkylakeX = AVX-512, Haswell = AVX2). Run by
 * bench/run_bench.sh next to PyTorch; never a test.
 * usage: bench_train ARCH THREADS [BATCH] [STEPS] [H] [STRUCTURE]
 * STRUCTURE: kept channels per prunable layer, comma-separated (default:
 * the full model). */
#include <cblas.h> /* OpenBLAS's: openblas_get_corename */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/rng.h"
#include "core/threads.h"
#include "nn/gemm.h"
#include "nn/model.h"
#include "nn/optim.h"
#include "train/train.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s ARCH THREADS [BATCH] [STEPS] [H]\n",
                argv[0]);
        return 2;
    }
    enum arch a;
    if (arch_parse(argv[1], &a)) {
        fprintf(stderr, "unknown arch %s\n", argv[1]);
        return 2;
    }
    int threads = threads_setup(atoi(argv[2]));
    int B = argc > 3 ? atoi(argv[3]) : 128;
    int steps = argc > 4 ? atoi(argv[4]) : 10;
    int H = argc > 5 ? atoi(argv[5]) : 28;
    int ch[1024], nch = 0;
    const char *structure = argc > 6 ? argv[6] : NULL;
    for (const char *s = structure; s && *s && nch < 1024;) {
        ch[nch++] = (int)strtol(s, (char **)&s, 10);
        if (*s == ',') s++;
    }
    char err[ABC_ERRLEN];
    struct model *m;
    struct sgd opt;
    int nfull = arch_prunable(a, NULL);
    if (nch && nfull != nch) {
        fprintf(stderr, "%s: the structure has %d entries, the model %d\n",
                argv[1], nch, nfull);
        return 2;
    }
    if (model_create(&m, a, nch ? ch : NULL, 1, H, H, 10, err) ||
        model_reserve(m, B, err) ||
        sgd_init(&opt, m->nparams, 0.9f, 5e-4f, 0, err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    model_init_weights(m, 1);
    float *x = malloc(sizeof(float) * B * H * H);
    int *y = malloc(sizeof(int) * B);
    struct rng r;
    rng_seed(&r, 2);
    for (int i = 0; i < B * H * H; i++)
        x[i] = (float)rng_normal(&r);
    for (int i = 0; i < B; i++)
        y[i] = (int)rng_below(&r, 10);
    double *t = malloc(sizeof(double) * steps);
    for (int i = -2; i < steps; i++) { /* two warm-up steps */
        double t0 = now_seconds();
        model_zero_grad(m);
        model_forward(m, x, y, B, 1, NULL);
        model_backward(m);
        sgd_step(&opt, m->params, m->grads, 0.01f);
        if (i >= 0) t[i] = now_seconds() - t0;
    }
    qsort(t, steps, sizeof(double), cmp_double);
    double train_med = t[steps / 2];
    for (int i = -1; i < steps; i++) {
        double t0 = now_seconds();
        model_forward(m, x, NULL, B, 0, NULL);
        if (i >= 0) t[i] = now_seconds() - t0;
    }
    qsort(t, steps, sizeof(double), cmp_double);
    double infer_med = t[steps / 2];
    printf("{\"impl\":\"abcprune\",\"model\":\"%s\",\"structure\":\"%s\","
           "\"macs\":%lld,\"threads\":%d,"
           "\"batch\":%d,\"train_step_s\":%.5f,\"train_img_s\":%.1f,"
           "\"infer_batch_s\":%.5f,\"infer_img_s\":%.1f,\"gemm\":\"%s\","
           "\"blas_core\":\"%s\"}\n",
           argv[1], structure ? structure : "full", (long long)model_macs(m),
           threads, B, train_med, B / train_med, infer_med, B / infer_med,
           gemm_backend_name(), openblas_get_corename());
    free(t);
    free(x);
    free(y);
    sgd_free(&opt);
    model_destroy(m);
    return 0;
}

/* bench_conv.c - times one convolution layer's forward and backward pass
 * (batch B, given threads) under each choice of algorithms conv2d_* may
 * make (conv2d_set_algos: im2col only; + row-tap and the stride-2 phase
 * split; + Winograd F(2x2, 3x3); + its F(4x4, 3x3) form), the choices
 * alternated in every round (each with the GEMM's dot-product path for the
 * weight gradient on and off), and prints the median times and the
 * algorithm that ran. For choosing the thresholds in layers.c by
 * measurement; never a test.
 * usage: bench_conv [-s STRIDE] THREADS ROUNDS B Cin H W Cout [B Cin H W
 *   Cout ...]   (3x3 kernels, padding 1; stride 1 unless -s) */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/threads.h"
#include "nn/gemm.h"
#include "nn/layers.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *randf(size_t n)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; p && i < n; i++)
        p[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    return p;
}

#define NALGO 4
#define NVAR (2 * NALGO) /* each algorithm choice with the dot path on, off */
#define MAXR 64

int main(int argc, char **argv)
{
    int stride = 1;
    if (argc > 2 && strcmp(argv[1], "-s") == 0) {
        stride = atoi(argv[2]);
        argv += 2;
        argc -= 2;
    }
    if (argc < 8 || (argc - 3) % 5 != 0 || stride < 1) {
        fprintf(stderr,
                "usage: bench_conv [-s STRIDE] THREADS ROUNDS B Cin H W Cout "
                "[...]\n");
        return 2;
    }
    int threads = threads_setup(atoi(argv[1]));
    int rounds = atoi(argv[2]);
    if (rounds < 1 || rounds > MAXR) rounds = 5;
    static const int masks[NALGO] = {
        0, CONV_ALGO_ROWTAP | CONV_ALGO_PHASE,
        CONV_ALGO_ROWTAP | CONV_ALGO_PHASE | CONV_ALGO_WINOGRAD, CONV_ALGO_ALL};
    printf("threads %d\n%-24s %-10s %-4s %9s %9s\n", threads, "B Cin HxW Cout",
           "algo", "dot", "fwd ms", "bwd ms");
    for (int a = 3; a + 4 < argc; a += 5) {
        struct conv_geom g = {.B = atoi(argv[a]),
                              .Cin = atoi(argv[a + 1]),
                              .H = atoi(argv[a + 2]),
                              .W = atoi(argv[a + 3]),
                              .Cout = atoi(argv[a + 4]),
                              .K = 3,
                              .stride = stride,
                              .pad = 1};
        if (conv_geom_init(&g)) {
            fprintf(stderr, "bad geometry at argument %d\n", a);
            return 2;
        }
        size_t nx = (size_t)g.B * g.Cin * g.H * g.W;
        size_t ny = (size_t)g.B * g.Cout * g.Ho * g.Wo;
        size_t nw = (size_t)g.Cout * g.Cin * 9, ws = 0;
        for (int k = 0; k < NALGO; k++) {
            conv2d_set_algos(masks[k]);
            size_t w = conv2d_workspace_floats(&g, threads);
            if (w > ws) ws = w;
        }
        float *x = randf(nx), *y = randf(ny), *w = randf(nw), *dx = randf(nx);
        float *dw = randf(nw), *work = randf(ws);
        if (!x || !y || !w || !dx || !dw || !work) return 1;
        double tf[NVAR][MAXR], tb[NVAR][MAXR];
        for (int r = 0; r < rounds; r++)
            for (int k = 0; k < NVAR; k++) {
                conv2d_set_algos(masks[k % NALGO]);
                gemm_set_dot(k < NALGO);
                conv2d_forward(y, x, w, NULL, &g, work); /* warm */
                double t0 = now();
                conv2d_forward(y, x, w, NULL, &g, work);
                double t1 = now();
                conv2d_backward(dx, dw, NULL, y, x, w, &g, work, 0);
                tf[k][r] = t1 - t0;
                tb[k][r] = now() - t1;
            }
        for (int k = 0; k < NVAR; k++) {
            conv2d_set_algos(masks[k % NALGO]);
            qsort(tf[k], (size_t)rounds, sizeof(double), cmp);
            qsort(tb[k], (size_t)rounds, sizeof(double), cmp);
            char geo[64];
            snprintf(geo, sizeof geo, "%d %d %dx%d %d", g.B, g.Cin, g.H, g.W,
                     g.Cout);
            printf("%-24s %-10s %-4s %9.3f %9.3f\n", geo, conv2d_algo_name(&g),
                   k < NALGO ? "on" : "off", 1e3 * tf[k][rounds / 2],
                   1e3 * tb[k][rounds / 2]);
        }
        free(x), free(y), free(w), free(dx), free(dw), free(work);
    }
    return 0;
}

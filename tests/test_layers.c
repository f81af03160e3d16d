/* test_layers.c - checks every layer of layers.h: float forward against an
 * independent naive double-precision forward written here, float backward
 * against central finite differences of that double forward (loss =
 * sum(out * R) for a fixed random R), the accumulate/overwrite contract,
 * fast kernels against their _ref twins on realistic shapes and at 1, 2
 * and 3 threads, bit-identical repeated conv backward, and the split
 * batchnorm kernels of synchronized BN against the single-call ones (over
 * shards emulating ranks: one batch's gradients). Single process;
 * runs in about a second. */
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "nn/gemm.h"
#include "nn/layers.h"

#define FD_EPS 1e-6
/* float kernel vs double reference: forward values and FD gradients */
#define FWD_ATOL 1e-5
#define FWD_RTOL 1e-5
#define GRAD_ATOL 1e-4
#define GRAD_RTOL 1e-4
/* fast vs _ref twin: atol = TWIN_REL * max|ref| */
#define TWIN_REL 1e-4

static struct rng R;

static void *xalloc(size_t n)
{
    void *p = calloc(n ? n : 1, 1);
    if (!p) {
        fprintf(stderr, "test_layers: out of memory\n");
        exit(2);
    }
    return p;
}
static float *falloc(size_t n)
{
    return xalloc(n * sizeof(float));
}
static double *dalloc(size_t n)
{
    return xalloc(n * sizeof(double));
}

static float *frandn(size_t n, double scale)
{
    float *a = falloc(n);
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(scale * rng_normal(&R));
    return a;
}
static double *todouble(const float *a, size_t n)
{
    double *d = dalloc(n);
    for (size_t i = 0; i < n; i++)
        d[i] = a[i];
    return d;
}
static float *tofloat(const double *a, size_t n)
{
    float *f = falloc(n);
    for (size_t i = 0; i < n; i++)
        f[i] = (float)a[i];
    return f;
}
static float *fcopy(const float *a, size_t n)
{
    float *f = falloc(n);
    memcpy(f, a, n * sizeof *f);
    return f;
}
static double dot(const double *a, const double *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}
static float maxabs(const float *a, size_t n)
{
    float m = 0;
    for (size_t i = 0; i < n; i++)
        m = fabsf(a[i]) > m ? fabsf(a[i]) : m;
    return m;
}

/* g[i] = d loss / d a[i] by central differences in double. */
static void fd_grad(double (*loss)(void *), void *ctx, double *a, size_t n,
                    double *g)
{
    for (size_t i = 0; i < n; i++) {
        double s = a[i];
        a[i] = s + FD_EPS;
        double lp = loss(ctx);
        a[i] = s - FD_EPS;
        double lm = loss(ctx);
        a[i] = s;
        g[i] = (lp - lm) / (2 * FD_EPS);
    }
}

/* Checks a gradient that was written onto a buffer pre-filled with `pre`:
 * expects got = pre + fd when accumulating, else got = fd. */
static void check_grad(const char *what, const float *got, const float *pre,
                       const double *fd, size_t n, int accumulate)
{
    float *want = falloc(n);
    for (size_t i = 0; i < n; i++)
        want[i] = (float)((accumulate ? (double)pre[i] : 0.0) + fd[i]);
    CHECK_CLOSE(what, got, want, n, GRAD_ATOL, GRAD_RTOL);
    free(want);
}

static void check_twin(const char *what, const float *fast, const float *ref,
                       size_t n)
{
    double atol = TWIN_REL * maxabs(ref, n);
    CHECK_CLOSE(what, fast, ref, n, atol > 1e-30 ? atol : 1e-30, 0);
}

/* ------------------------------------------------------------------------
 * conv2d */

struct conv_ctx {
    struct conv_geom g;
    double *x, *w, *b, *r;
};

/* Naive double convolution, straight from the definition. */
static void conv_fwd_d(double *y, const double *x, const double *w,
                       const double *b, const struct conv_geom *g)
{
    int Ho = (g->H + 2 * g->pad - g->K) / g->stride + 1;
    int Wo = (g->W + 2 * g->pad - g->K) / g->stride + 1;
    for (int n = 0; n < g->B; n++)
        for (int o = 0; o < g->Cout; o++)
            for (int i = 0; i < Ho; i++)
                for (int j = 0; j < Wo; j++) {
                    double s = b ? b[o] : 0;
                    for (int c = 0; c < g->Cin; c++)
                        for (int u = 0; u < g->K; u++)
                            for (int v = 0; v < g->K; v++) {
                                int yy = i * g->stride + u - g->pad;
                                int xx = j * g->stride + v - g->pad;
                                if (yy >= 0 && yy < g->H && xx >= 0 &&
                                    xx < g->W)
                                    s +=
                                        w[((o * g->Cin + c) * g->K + u) * g->K +
                                          v] *
                                        x[((n * g->Cin + c) * g->H + yy) *
                                              g->W +
                                          xx];
                            }
                    y[((n * g->Cout + o) * Ho + i) * Wo + j] = s;
                }
}

static size_t conv_nout(const struct conv_geom *g)
{
    return (size_t)g->B * g->Cout * g->Ho * g->Wo;
}

static double conv_loss(void *p)
{
    struct conv_ctx *c = p;
    size_t n = conv_nout(&c->g);
    double *y = dalloc(n);
    conv_fwd_d(y, c->x, c->w, c->b, &c->g);
    double l = dot(y, c->r, n);
    free(y);
    return l;
}

/* Forward and backward of one geometry (fast kernel and _ref) against the
 * double definition and finite differences. */
static void test_conv_fd(struct conv_geom g, int with_bias)
{
    char name[160], what[200];
    CHECK(conv_geom_init(&g) == 0, "geometry");
    snprintf(name, sizeof name, "conv B%d C%d->%d %dx%d K%d s%d p%d%s thr%d",
             g.B, g.Cin, g.Cout, g.H, g.W, g.K, g.stride, g.pad,
             with_bias ? "" : " nobias", omp_get_max_threads());
    size_t nx = (size_t)g.B * g.Cin * g.H * g.W;
    size_t nw = (size_t)g.Cout * g.Cin * g.K * g.K, ny = conv_nout(&g);
    float *x = frandn(nx, 1), *w = frandn(nw, 0.5), *b = frandn(g.Cout, 1);
    float *r = frandn(ny, 1);
    if (!with_bias) b = (free(b), NULL);
    struct conv_ctx c = {g, todouble(x, nx), todouble(w, nw),
                         b ? todouble(b, g.Cout) : NULL, todouble(r, ny)};
    double *yd = dalloc(ny);
    conv_fwd_d(yd, c.x, c.w, c.b, &g);
    float *want = tofloat(yd, ny);
    float *work = falloc(conv2d_workspace_floats(&g, omp_get_max_threads()));
    float *y = falloc(ny);
    conv2d_forward(y, x, w, b, &g, work);
    snprintf(what, sizeof what, "%s forward", name);
    CHECK_CLOSE(what, y, want, ny, FWD_ATOL, FWD_RTOL);
    memset(y, 0, ny * sizeof *y);
    conv2d_forward_ref(y, x, w, b, &g);
    snprintf(what, sizeof what, "%s forward_ref", name);
    CHECK_CLOSE(what, y, want, ny, FWD_ATOL, FWD_RTOL);

    double *gx = dalloc(nx), *gw = dalloc(nw), *gb = dalloc(g.Cout);
    fd_grad(conv_loss, &c, c.x, nx, gx);
    fd_grad(conv_loss, &c, c.w, nw, gw);
    if (b) fd_grad(conv_loss, &c, c.b, g.Cout, gb);

    /* weight/bias grads pre-filled (they add); dinp garbage or pre-filled */
    float *wpre = frandn(nw, 1), *bpre = frandn(g.Cout, 1);
    float *xpre = frandn(nx, 100);
    for (int ref = 0; ref < 2; ref++)
        for (int acc = 0; acc < 2; acc++) {
            float *dx = fcopy(xpre, nx), *dw = fcopy(wpre, nw);
            float *db = b ? fcopy(bpre, g.Cout) : NULL;
            if (ref)
                conv2d_backward_ref(dx, dw, db, r, x, w, &g, acc);
            else
                conv2d_backward(dx, dw, db, r, x, w, &g, work, acc);
            const char *k = ref ? "backward_ref" : "backward";
            snprintf(what, sizeof what, "%s %s acc%d dinp", name, k, acc);
            check_grad(what, dx, xpre, gx, nx, acc);
            snprintf(what, sizeof what, "%s %s acc%d dweight", name, k, acc);
            check_grad(what, dw, wpre, gw, nw, 1);
            if (db) {
                snprintf(what, sizeof what, "%s %s acc%d dbias", name, k, acc);
                check_grad(what, db, bpre, gb, g.Cout, 1);
            }
            free(dx), free(dw), free(db);
        }
    /* dinp NULL: weight gradient still right */
    float *dw = fcopy(wpre, nw);
    conv2d_backward(NULL, dw, NULL, r, x, w, &g, work, 0);
    snprintf(what, sizeof what, "%s backward dinp=NULL dweight", name);
    check_grad(what, dw, wpre, gw, nw, 1);
    free(dw);

    free(x), free(w), free(b), free(r), free(c.x), free(c.w), free(c.b);
    free(c.r), free(yd), free(want), free(work), free(y), free(gx), free(gw);
    free(gb), free(wpre), free(bpre), free(xpre);
}

/* Fast conv against conv_ref on a realistic shape. */
static void test_conv_twin(int B, int Cin, int H, int Cout, int K, int s, int p)
{
    struct conv_geom g = {.B = B,
                          .Cin = Cin,
                          .H = H,
                          .W = H,
                          .Cout = Cout,
                          .K = K,
                          .stride = s,
                          .pad = p};
    char name[160], what[200];
    CHECK(conv_geom_init(&g) == 0, "geometry");
    snprintf(name, sizeof name, "twin conv B%d C%d->%d %dx%d K%d s%d p%d thr%d",
             B, Cin, Cout, H, H, K, s, p, omp_get_max_threads());
    size_t nx = (size_t)B * Cin * H * H, nw = (size_t)Cout * Cin * K * K;
    size_t ny = conv_nout(&g);
    float *x = frandn(nx, 1), *w = frandn(nw, 0.1), *b = frandn(Cout, 1);
    float *dy = frandn(ny, 1);
    float *work = falloc(conv2d_workspace_floats(&g, omp_get_max_threads()));
    float *y1 = falloc(ny), *y2 = falloc(ny);
    conv2d_forward(y1, x, w, b, &g, work);
    conv2d_forward_ref(y2, x, w, b, &g);
    snprintf(what, sizeof what, "%s forward", name);
    check_twin(what, y1, y2, ny);
    /* the fused bias + ReLU epilogue: the same bits as a separate ReLU */
    conv2d_bias_relu_forward(y2, x, w, b, &g, work);
    relu_forward(y1, y1, ny);
    snprintf(what, sizeof what, "%s bias+relu forward", name);
    CHECK_CLOSE(what, y2, y1, ny, 0, 0);
    /* the fused bias + residual + ReLU epilogue: the same bits as a separate
     * add_relu_forward */
    float *res = frandn(ny, 1);
    conv2d_forward(y1, x, w, b, &g, work);
    add_relu_forward(y1, y1, res, ny);
    conv2d_bias_add_relu_forward(y2, x, w, b, res, &g, work);
    snprintf(what, sizeof what, "%s bias+add+relu forward", name);
    CHECK_CLOSE(what, y2, y1, ny, 0, 0);
    free(res);

    float *xpre = frandn(nx, 1), *wpre = frandn(nw, 1), *bpre = frandn(Cout, 1);
    for (int acc = 0; acc < 2; acc++) {
        float *dx1 = fcopy(xpre, nx), *dx2 = fcopy(xpre, nx);
        float *dw1 = fcopy(wpre, nw), *dw2 = fcopy(wpre, nw);
        float *db1 = fcopy(bpre, Cout), *db2 = fcopy(bpre, Cout);
        conv2d_backward(dx1, dw1, db1, dy, x, w, &g, work, acc);
        conv2d_backward_ref(dx2, dw2, db2, dy, x, w, &g, acc);
        snprintf(what, sizeof what, "%s acc%d dinp", name, acc);
        check_twin(what, dx1, dx2, nx);
        snprintf(what, sizeof what, "%s acc%d dweight", name, acc);
        check_twin(what, dw1, dw2, nw);
        snprintf(what, sizeof what, "%s acc%d dbias", name, acc);
        check_twin(what, db1, db2, Cout);
        free(dx1), free(dx2), free(dw1), free(dw2), free(db1), free(db2);
    }
    free(x), free(w), free(b), free(dy), free(work), free(y1), free(y2);
    free(xpre), free(wpre), free(bpre);
}

/* Two runs of conv2d_backward give the same bits. */
static void test_conv_determinism(int B, int C, int H)
{
    struct conv_geom g = {.B = B,
                          .Cin = C,
                          .H = H,
                          .W = H,
                          .Cout = C,
                          .K = 3,
                          .stride = 1,
                          .pad = 1};
    CHECK(conv_geom_init(&g) == 0, "geometry");
    size_t nx = (size_t)B * C * H * H, nw = (size_t)C * C * 9;
    size_t ny = conv_nout(&g);
    float *x = frandn(nx, 1), *w = frandn(nw, 0.1), *dy = frandn(ny, 1);
    float *work = falloc(conv2d_workspace_floats(&g, omp_get_max_threads()));
    float *dx[2], *dw[2], *db[2];
    for (int k = 0; k < 2; k++) {
        dx[k] = falloc(nx), dw[k] = falloc(nw), db[k] = falloc(C);
        conv2d_backward(dx[k], dw[k], db[k], dy, x, w, &g, work, 0);
    }
    int same = !memcmp(dx[0], dx[1], nx * sizeof(float)) &&
               !memcmp(dw[0], dw[1], nw * sizeof(float)) &&
               !memcmp(db[0], db[1], C * sizeof(float));
    CHECK(same, "conv2d_backward B%d C%d %dx%d thr%d: runs differ", B, C, H, H,
          omp_get_max_threads());
    if (same)
        printf("ok   conv2d_backward B%d C%d %dx%d thr%d bit-identical twice\n",
               B, C, H, H, omp_get_max_threads());
    for (int k = 0; k < 2; k++)
        free(dx[k]), free(dw[k]), free(db[k]);
    free(x), free(w), free(dy), free(work);
}

static void test_conv_geom(void)
{
    struct conv_geom g = {.B = 2,
                          .Cin = 3,
                          .H = 28,
                          .W = 28,
                          .Cout = 4,
                          .K = 3,
                          .stride = 2,
                          .pad = 1};
    CHECK(conv_geom_init(&g) == 0 && g.Ho == 14 && g.Wo == 14,
          "28 s2 p1: %dx%d", g.Ho, g.Wo);
    g.H = g.W = 7;
    CHECK(conv_geom_init(&g) == 0 && g.Ho == 4 && g.Wo == 4, "7 s2 p1: %dx%d",
          g.Ho, g.Wo);
    g.H = g.W = 1, g.pad = 0;
    CHECK(conv_geom_init(&g) == -1, "K larger than padded input accepted");
    g.H = g.W = 5, g.Cin = 0;
    CHECK(conv_geom_init(&g) == -1, "Cin 0 accepted");
}

static void test_conv(void)
{
    static const int cfg[][8] = {
        /* B Cin H  W Cout K s p */
        {2, 3, 5, 5, 4, 3, 1, 1}, {2, 3, 5, 5, 4, 3, 1, 0},
        {2, 3, 5, 5, 4, 3, 2, 0}, {2, 3, 5, 5, 4, 3, 2, 1},
        {2, 3, 5, 6, 4, 3, 1, 1}, {2, 3, 5, 5, 4, 1, 1, 0},
        {2, 3, 5, 5, 4, 1, 2, 0}, {3, 2, 4, 4, 3, 2, 2, 1},
        {2, 2, 1, 1, 3, 3, 1, 1}, {2, 2, 1, 1, 3, 3, 2, 1},
        {2, 2, 2, 2, 3, 3, 1, 1}, {2, 2, 4, 4, 2, 5, 1, 2},
        {2, 2, 3, 3, 2, 3, 1, 2},
    };
    test_conv_geom();
    int saved = omp_get_max_threads();
    for (int t = 1; t <= 2; t++) {
        omp_set_num_threads(t);
        for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
            const int *c = cfg[i];
            struct conv_geom g = {.B = c[0],
                                  .Cin = c[1],
                                  .H = c[2],
                                  .W = c[3],
                                  .Cout = c[4],
                                  .K = c[5],
                                  .stride = c[6],
                                  .pad = c[7]};
            test_conv_fd(g, i != 1);
        }
    }
    for (int t = 1; t <= 3; t++) {
        omp_set_num_threads(t);
        test_conv_twin(5, 16, 14, 32, 3, 1, 1);
        test_conv_twin(5, 16, 14, 32, 3, 2, 1);
        test_conv_twin(5, 16, 14, 32, 1, 1, 0);
        test_conv_twin(5, 16, 14, 32, 1, 2, 0);
        test_conv_twin(5, 64, 7, 64, 3, 1, 1);
        test_conv_twin(5, 32, 1, 16, 3, 1, 1);
        test_conv_twin(5, 1, 28, 16, 3, 1, 1);
        test_conv_twin(1, 16, 14, 16, 3, 1, 1);
        test_conv_twin(1, 16, 14, 16, 1, 1, 0);
        test_conv_twin(150, 4, 4, 4, 3, 1, 1); /* several chunks/thread */
        /* implicit im2col edge cases: 5x5 "same", 2x2 planes, one chunk of
         * many 3x3 planes (padding shared across images), odd widths */
        test_conv_twin(3, 3, 9, 5, 5, 1, 2);
        test_conv_twin(7, 9, 2, 6, 3, 1, 1);
        test_conv_twin(40, 5, 3, 19, 3, 1, 1);
        test_conv_twin(4, 22, 14, 9, 3, 1, 1);
        /* wider implicit cases: even and odd maps, odd channel counts */
        test_conv_twin(3, 16, 28, 16, 3, 1, 1);
        test_conv_twin(6, 20, 5, 17, 3, 1, 1);
        test_conv_twin(9, 33, 3, 16, 3, 1, 1);
        /* row-tap (maps of at most 64 pixels): 5x5 kernels whose rows
         * reach 2 beyond the map, the 8x8 limit, one image, uneven chunks
         * of many images, wide layers */
        test_conv_twin(6, 7, 6, 11, 5, 1, 2);
        test_conv_twin(5, 17, 8, 9, 3, 1, 1);
        test_conv_twin(1, 5, 7, 3, 3, 1, 1);
        test_conv_twin(131, 3, 3, 5, 3, 1, 1);
        test_conv_twin(4, 128, 3, 96, 3, 1, 1);
        /* stride-2 phase convolutions: ResNet's downsampling shapes (one
         * image per chunk at 28x28, several at 14x14), odd maps (the odd
         * phases one row and column short), 2x2 and 3x3 maps, pruned
         * widths */
        test_conv_twin(3, 16, 28, 32, 3, 2, 1);
        test_conv_twin(9, 32, 14, 64, 3, 2, 1);
        test_conv_twin(5, 7, 7, 5, 3, 2, 1);
        test_conv_twin(6, 3, 9, 4, 3, 2, 1);
        test_conv_twin(7, 9, 2, 6, 3, 2, 1);
        test_conv_twin(40, 5, 3, 19, 3, 2, 1);
        test_conv_twin(130, 4, 6, 3, 3, 2, 1); /* several chunks/thread */
        test_conv_determinism(150, 4, 4);
        test_conv_determinism(7, 16, 14);
    }
    omp_set_num_threads(saved);
}

/* ------------------------------------------------------------------------
 * batchnorm */

struct bn_ctx {
    int B, C, HW;
    double eps;
    double *x, *gamma, *beta, *r;
};

/* Training-mode batchnorm in double; fills batch mean / biased var. */
static void bn_fwd_d(double *y, double *mean, double *var, const double *x,
                     const double *gamma, const double *beta, int B, int C,
                     int HW, double eps)
{
    for (int c = 0; c < C; c++) {
        double s = 0, q = 0;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++)
                s += x[(b * C + c) * HW + i];
        double m = s / (B * HW);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) {
                double d = x[(b * C + c) * HW + i] - m;
                q += d * d;
            }
        double v = q / (B * HW);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < HW; i++) {
                int k = (b * C + c) * HW + i;
                y[k] = (x[k] - m) / sqrt(v + eps) * gamma[c] + beta[c];
            }
        if (mean) mean[c] = m;
        if (var) var[c] = v;
    }
}

static double bn_loss(void *p)
{
    struct bn_ctx *c = p;
    size_t n = (size_t)c->B * c->C * c->HW;
    double *y = dalloc(n);
    bn_fwd_d(y, NULL, NULL, c->x, c->gamma, c->beta, c->B, c->C, c->HW, c->eps);
    double l = dot(y, c->r, n);
    free(y);
    return l;
}

static void test_batchnorm_known(void)
{
    /* one channel, values 1..4: mean 2.5, biased var 1.25, unbiased 5/3 */
    float x[4] = {1, 2, 3, 4}, y[4], mean, invstd, g = 2, be = 1;
    float rm = 0, rv = 1;
    batchnorm_forward(y, &mean, &invstd, x, &g, &be, &rm, &rv, 2, 1, 2, 0.1f,
                      0.0f, 1);
    float got[4] = {mean, invstd, rm, rv};
    float want[4] = {2.5f, (float)(1 / sqrt(1.25)), 0.25f,
                     (float)(0.9 + 0.1 * 5.0 / 3.0)};
    CHECK_CLOSE("batchnorm known mean/invstd/running_mean/running_var", got,
                want, 4, 1e-6, 1e-6);
    float ywant[4];
    for (int i = 0; i < 4; i++)
        ywant[i] = (float)((x[i] - 2.5) / sqrt(1.25) * 2 + 1);
    CHECK_CLOSE("batchnorm known out", y, ywant, 4, 1e-6, 1e-6);
    /* eval mode uses the running stats and leaves them alone */
    batchnorm_forward(y, &mean, &invstd, x, &g, &be, &rm, &rv, 2, 1, 2, 0.1f,
                      0.0f, 0);
    for (int i = 0; i < 4; i++)
        ywant[i] = (float)((x[i] - 0.25) / sqrt(0.9 + 0.5 / 3) * 2 + 1);
    CHECK_CLOSE("batchnorm known eval out", y, ywant, 4, 1e-6, 1e-6);
    CHECK(rm == 0.25f && mean == 0.25f, "eval changed running_mean %g / %g", rm,
          mean);

    /* a large common offset must not wreck the variance */
    enum { N = 4096 };
    float *xb = falloc(N), *yb = falloc(N);
    double s = 0, q = 0;
    for (int i = 0; i < N; i++)
        xb[i] = (float)(1000 + 0.1 * rng_normal(&R));
    for (int i = 0; i < N; i++)
        s += xb[i];
    for (int i = 0; i < N; i++)
        q += (xb[i] - s / N) * (xb[i] - s / N);
    float one = 1, zero = 0, m2, is2, want2 = (float)(1 / sqrt(q / N + 1e-5));
    batchnorm_forward(yb, &m2, &is2, xb, &one, &zero, NULL, NULL, 16, 1, N / 16,
                      0.1f, 1e-5f, 1);
    CHECK_CLOSE("batchnorm invstd at offset 1000, std 0.1", &is2, &want2, 1, 0,
                1e-4);
    free(xb), free(yb);
}

static void test_batchnorm(int B, int C, int HW, size_t sample)
{
    char what[160];
    size_t n = (size_t)B * C * HW;
    const float eps = 1e-5f, mom = 0.1f;
    float *x = frandn(n, 2), *gamma = frandn(C, 1), *beta = frandn(C, 1);
    float *r = frandn(n, 1);
    for (size_t i = 0; i < n; i++)
        x[i] += (float)(i % C); /* offsets */
    struct bn_ctx c = {B,
                       C,
                       HW,
                       eps,
                       todouble(x, n),
                       todouble(gamma, C),
                       todouble(beta, C),
                       todouble(r, n)};
    double *yd = dalloc(n), *md = dalloc(C), *vd = dalloc(C);
    bn_fwd_d(yd, md, vd, c.x, c.gamma, c.beta, B, C, HW, eps);

    /* training forward, stats, running update */
    float *rm = frandn(C, 1), *rv = falloc(C);
    for (int i = 0; i < C; i++)
        rv[i] = 0.5f + (float)rng_uniform(&R);
    float *rm0 = fcopy(rm, C), *rv0 = fcopy(rv, C);
    float *y = falloc(n), *mean = falloc(C), *invstd = falloc(C);
    batchnorm_forward(y, mean, invstd, x, gamma, beta, rm, rv, B, C, HW, mom,
                      eps, 1);
    float *w = tofloat(yd, n);
    snprintf(what, sizeof what, "batchnorm B%d C%d HW%d train forward", B, C,
             HW);
    CHECK_CLOSE(what, y, w, n, FWD_ATOL, FWD_RTOL);
    float *wm = falloc(C), *wis = falloc(C), *wrm = falloc(C), *wrv = falloc(C);
    double N = (double)B * HW;
    for (int i = 0; i < C; i++) {
        wm[i] = (float)md[i];
        wis[i] = (float)(1 / sqrt(vd[i] + eps));
        wrm[i] = (float)((1 - mom) * rm0[i] + mom * md[i]);
        wrv[i] = (float)((1 - mom) * rv0[i] + mom * vd[i] * N / (N - 1));
    }
    CHECK_CLOSE("batchnorm saved mean", mean, wm, C, FWD_ATOL, FWD_RTOL);
    CHECK_CLOSE("batchnorm saved invstd", invstd, wis, C, FWD_ATOL, FWD_RTOL);
    CHECK_CLOSE("batchnorm running_mean", rm, wrm, C, FWD_ATOL, FWD_RTOL);
    CHECK_CLOSE("batchnorm running_var (unbiased)", rv, wrv, C, FWD_ATOL,
                FWD_RTOL);

    /* backward vs finite differences of the training forward */
    /* dinp: every element, or `sample` random ones on big shapes */
    size_t m = sample ? sample : n;
    size_t *idx = xalloc(m * sizeof *idx);
    for (size_t i = 0; i < m; i++)
        idx[i] = sample ? rng_below(&R, n) : i;
    double *gx = dalloc(m), *gg = dalloc(C), *gb = dalloc(C);
    for (size_t i = 0; i < m; i++)
        fd_grad(bn_loss, &c, c.x + idx[i], 1, gx + i);
    fd_grad(bn_loss, &c, c.gamma, C, gg);
    fd_grad(bn_loss, &c, c.beta, C, gb);
    float *xpre = frandn(n, 100), *gpre = frandn(C, 1), *bpre = frandn(C, 1);
    float *dxs = falloc(m), *xpres = falloc(m);
    for (size_t i = 0; i < m; i++)
        xpres[i] = xpre[idx[i]];
    for (int acc = 0; acc < 2; acc++) {
        float *dx = fcopy(xpre, n), *dg = fcopy(gpre, C), *db = fcopy(bpre, C);
        batchnorm_backward(dx, dg, db, r, x, mean, invstd, gamma, B, C, HW,
                           acc);
        for (size_t i = 0; i < m; i++)
            dxs[i] = dx[idx[i]];
        snprintf(what, sizeof what, "batchnorm B%d C%d HW%d acc%d dinp", B, C,
                 HW, acc);
        check_grad(what, dxs, xpres, gx, m, acc);
        snprintf(what, sizeof what, "batchnorm acc%d dgamma", acc);
        check_grad(what, dg, gpre, gg, C, 1);
        snprintf(what, sizeof what, "batchnorm acc%d dbeta", acc);
        check_grad(what, db, bpre, gb, C, 1);
        free(dx), free(dg), free(db);
    }

    /* eval forward: running statistics, left unchanged */
    float *rm1 = fcopy(rm, C), *rv1 = fcopy(rv, C);
    batchnorm_forward(y, mean, invstd, x, gamma, beta, rm, rv, B, C, HW, mom,
                      eps, 0);
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < C; ch++)
            for (int i = 0; i < HW; i++) {
                size_t k = ((size_t)b * C + ch) * HW + i;
                w[k] = (float)((x[k] - (double)rm[ch]) /
                                   sqrt((double)rv[ch] + eps) * gamma[ch] +
                               beta[ch]);
            }
    CHECK_CLOSE("batchnorm eval forward", y, w, n, FWD_ATOL, FWD_RTOL);
    CHECK(!memcmp(rm, rm1, C * sizeof *rm) && !memcmp(rv, rv1, C * sizeof *rv),
          "eval mode changed the running statistics");
    for (int i = 0; i < C; i++)
        wis[i] = (float)(1 / sqrt((double)rv[i] + eps));
    CHECK_CLOSE("batchnorm eval mean = running_mean", mean, rm, C, 0, 0);
    CHECK_CLOSE("batchnorm eval invstd", invstd, wis, C, FWD_ATOL, FWD_RTOL);

    free(x), free(gamma), free(beta), free(r), free(c.x), free(c.gamma);
    free(c.beta), free(c.r), free(yd), free(md), free(vd), free(rm), free(rv);
    free(rm0), free(rv0), free(y), free(mean), free(invstd), free(w);
    free(wm), free(wis), free(wrm), free(wrv), free(gx), free(gg), free(gb);
    free(xpre), free(gpre), free(bpre), free(rm1), free(rv1), free(idx);
    free(dxs), free(xpres);
}

/* Two identical sets of running statistics (means ~N(0,1), variances in
 * [0.5, 1.5)) for a fused kernel and its separate twins to update. */
static void bn_running_pair(float **rm1, float **rv1, float **rm2, float **rv2,
                            int C)
{
    *rm1 = frandn(C, 1), *rv1 = falloc(C);
    for (int i = 0; i < C; i++)
        (*rv1)[i] = 0.5f + (float)rng_uniform(&R);
    *rm2 = fcopy(*rm1, C), *rv2 = fcopy(*rv1, C);
}

/* A fused kernel's batch and running statistics equal its twins', bit
 * for bit. */
static void check_same_stats(const char *what, const float *m1, const float *m2,
                             const float *is1, const float *is2,
                             const float *rm1, const float *rm2,
                             const float *rv1, const float *rv2, int C)
{
    const size_t b = (size_t)C * sizeof *m1;
    CHECK(!memcmp(m1, m2, b) && !memcmp(is1, is2, b) && !memcmp(rm1, rm2, b) &&
              !memcmp(rv1, rv2, b),
          "%s: statistics differ", what);
}

/* Fused batchnorm+ReLU against batchnorm then an in-place relu (forward)
 * and relu_backward then batchnorm_backward (backward): bit-identical. */
static void test_batchnorm_relu(int B, int C, int HW, int threads)
{
    char what[160];
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    size_t n = (size_t)B * C * HW;
    const float eps = 1e-5f, mom = 0.1f;
    float *x = frandn(n, 2), *gamma = frandn(C, 1), *beta = frandn(C, 1);
    float *dy = frandn(n, 1);
    for (int training = 0; training < 2; training++) {
        float *rm1, *rv1, *rm2, *rv2;
        bn_running_pair(&rm1, &rv1, &rm2, &rv2, C);
        float *y1 = falloc(n), *m1 = falloc(C), *is1 = falloc(C);
        float *y2 = falloc(n), *m2 = falloc(C), *is2 = falloc(C);
        batchnorm_forward(y1, m1, is1, x, gamma, beta, rm1, rv1, B, C, HW, mom,
                          eps, training);
        relu_forward(y1, y1, n);
        batchnorm_relu_forward(y2, m2, is2, x, gamma, beta, rm2, rv2, B, C, HW,
                               mom, eps, training);
        snprintf(what, sizeof what,
                 "batchnorm_relu B%d C%d HW%d thr%d train%d forward", B, C, HW,
                 threads, training);
        CHECK_CLOSE(what, y2, y1, n, 0, 0);
        check_same_stats(what, m1, m2, is1, is2, rm1, rm2, rv1, rv2, C);
        for (int acc = 0; training && acc < 2; acc++) {
            float *pre = frandn(n, 1), *gpre = frandn(C, 1);
            float *bpre = frandn(C, 1);
            float *dx1 = fcopy(pre, n), *dg1 = fcopy(gpre, C);
            float *db1 = fcopy(bpre, C), *dx2 = fcopy(pre, n);
            float *dg2 = fcopy(gpre, C), *db2 = fcopy(bpre, C);
            float *dm = fcopy(dy, n), *dy2 = fcopy(dy, n);
            relu_backward(dm, dm, y1, n, 0);
            batchnorm_backward(dx1, dg1, db1, dm, x, m1, is1, gamma, B, C, HW,
                               acc);
            batchnorm_relu_backward(dx2, dg2, db2, dy2, y2, x, m2, is2, gamma,
                                    B, C, HW, acc);
            snprintf(what, sizeof what,
                     "batchnorm_relu B%d C%d HW%d thr%d acc%d dinp", B, C, HW,
                     threads, acc);
            CHECK_CLOSE(what, dx2, dx1, n, 0, 0);
            CHECK_CLOSE("batchnorm_relu dgamma", dg2, dg1, C, 0, 0);
            CHECK_CLOSE("batchnorm_relu dbeta", db2, db1, C, 0, 0);
            CHECK(!memcmp(dy2, dy, n * sizeof *dy),
                  "batchnorm_relu_backward modified dout");
            /* dinp may be NULL: parameter gradients only */
            float *dg3 = fcopy(gpre, C), *db3 = fcopy(bpre, C);
            batchnorm_relu_backward(NULL, dg3, db3, dy, y2, x, m2, is2, gamma,
                                    B, C, HW, acc);
            CHECK_CLOSE("batchnorm_relu dinp=NULL dgamma", dg3, dg1, C, 0, 0);
            CHECK_CLOSE("batchnorm_relu dinp=NULL dbeta", db3, db1, C, 0, 0);
            free(pre), free(gpre), free(bpre), free(dx1), free(dg1), free(db1);
            free(dx2), free(dg2), free(db2), free(dm), free(dy2), free(dg3);
            free(db3);
        }
        free(rm1), free(rv1), free(rm2), free(rv2), free(y1), free(m1);
        free(is1), free(y2), free(m2), free(is2);
    }
    free(x), free(gamma), free(beta), free(dy);
    omp_set_num_threads(saved);
}

/* Fused batchnorm + residual add + ReLU forward (a ResNet block's end)
 * against batchnorm_forward then add_relu_forward, in training and eval
 * mode, and through the split kernel (batchnorm_apply with res):
 * bit-identical outputs and statistics. */
static void test_batchnorm_add_relu(int B, int C, int HW, int threads)
{
    char what[160];
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    const size_t n = (size_t)B * C * HW;
    const float eps = 1e-5f, mom = 0.1f;
    float *x = frandn(n, 2), *res = frandn(n, 1), *gamma = frandn(C, 1);
    float *beta = frandn(C, 1);
    for (int training = 0; training < 2; training++) {
        float *rm1, *rv1, *rm2, *rv2;
        bn_running_pair(&rm1, &rv1, &rm2, &rv2, C);
        float *t = falloc(n), *y1 = falloc(n), *m1 = falloc(C);
        float *is1 = falloc(C), *y2 = falloc(n), *m2 = falloc(C);
        float *is2 = falloc(C), *y3 = falloc(n);
        batchnorm_forward(t, m1, is1, x, gamma, beta, rm1, rv1, B, C, HW, mom,
                          eps, training);
        add_relu_forward(y1, t, res, n);
        batchnorm_add_relu_forward(y2, m2, is2, x, res, gamma, beta, rm2, rv2,
                                   B, C, HW, mom, eps, training);
        snprintf(what, sizeof what,
                 "batchnorm_add_relu B%d C%d HW%d thr%d train%d", B, C, HW,
                 threads, training);
        CHECK_CLOSE(what, y2, y1, n, 0, 0);
        check_same_stats(what, m1, m2, is1, is2, rm1, rm2, rv1, rv2, C);
        batchnorm_apply(y3, x, res, m1, is1, gamma, beta, B, C, HW, 1);
        snprintf(what, sizeof what, "batchnorm_apply with res B%d C%d HW%d", B,
                 C, HW);
        CHECK_CLOSE(what, y3, y1, n, 0, 0);
        free(rm1), free(rv1), free(rm2), free(rv2), free(t), free(y1);
        free(m1), free(is1), free(y2), free(m2), free(is2), free(y3);
    }
    free(x), free(res), free(gamma), free(beta);
    omp_set_num_threads(saved);
}

/* Narrow batchnorms run over (channel, block of images) units whose blocks
 * depend on C and B only: forward statistics, output and every gradient
 * repeat bit for bit on 1, 2 and 3 threads (one width per path: 5 and 7
 * channels in units, 16 one unit per channel). */
static void test_batchnorm_threads(int B, int C, int HW)
{
    char what[160];
    int saved = omp_get_max_threads();
    size_t n = (size_t)B * C * HW;
    float *x = frandn(n, 2), *gamma = frandn(C, 1), *beta = frandn(C, 1);
    float *dy = frandn(n, 1);
    float *y[3], *m[3], *is[3], *rm[3], *rv[3], *dx[3], *dg[3], *db[3];
    for (int t = 0; t < 3; t++) {
        omp_set_num_threads(t + 1);
        y[t] = falloc(n), m[t] = falloc(C), is[t] = falloc(C);
        rm[t] = falloc(C), rv[t] = falloc(C);
        for (int i = 0; i < C; i++)
            rm[t][i] = 0.0f, rv[t][i] = 1.0f;
        dx[t] = falloc(n), dg[t] = falloc(C), db[t] = falloc(C);
        memset(dg[t], 0, C * sizeof(float));
        memset(db[t], 0, C * sizeof(float));
        batchnorm_relu_forward(y[t], m[t], is[t], x, gamma, beta, rm[t], rv[t],
                               B, C, HW, 0.1f, 1e-5f, 1);
        batchnorm_relu_backward(dx[t], dg[t], db[t], dy, y[t], x, m[t], is[t],
                                gamma, B, C, HW, 0);
    }
    omp_set_num_threads(saved);
    for (int t = 1; t < 3; t++) {
        snprintf(what, sizeof what, "batchnorm B%d C%d HW%d on %d threads", B,
                 C, HW, t + 1);
        CHECK(!memcmp(y[t], y[0], n * sizeof(float)) &&
                  !memcmp(m[t], m[0], C * sizeof(float)) &&
                  !memcmp(is[t], is[0], C * sizeof(float)) &&
                  !memcmp(rv[t], rv[0], C * sizeof(float)) &&
                  !memcmp(dx[t], dx[0], n * sizeof(float)) &&
                  !memcmp(dg[t], dg[0], C * sizeof(float)) &&
                  !memcmp(db[t], db[0], C * sizeof(float)),
              "%s: differs from 1 thread", what);
    }
    for (int t = 0; t < 3; t++)
        free(y[t]), free(m[t]), free(is[t]), free(rm[t]), free(rv[t]),
            free(dx[t]), free(dg[t]), free(db[t]);
    free(x), free(gamma), free(beta), free(dy);
}

/* The split batchnorm kernels (synchronized BN's pieces, layers.h):
 *  - one shard: batchnorm_apply with the single-call forward's statistics,
 *    and backward_sums + backward_input over the whole batch, equal the
 *    single-call kernels bit for bit;
 *  - `shards` "ranks" emulated in sequence as model.c runs them (value
 *    sums and counts added, the mean, squared deviations added, the
 *    statistics; gradient sums weighted by k/B and added, each shard's
 *    upstream gradient in its own loss's scale B/k): the shards' outputs,
 *    statistics, running statistics and (rescaled) gradients against the
 *    single-call kernels on the whole batch and the double forward. */
static void test_batchnorm_split(int B, int C, int HW, int relu, int shards)
{
    char what[160];
    const size_t n = (size_t)B * C * HW, per = (size_t)C * HW;
    const float eps = 1e-5f, mom = 0.1f;
    float *x = frandn(n, 2), *gamma = frandn(C, 1), *beta = frandn(C, 1);
    float *g = frandn(n, 1);
    for (size_t i = 0; i < n; i++)
        x[i] += (float)(3 + i % C); /* offsets */
    float *rm0 = frandn(C, 1), *rv0 = falloc(C);
    for (int i = 0; i < C; i++)
        rv0[i] = 0.5f + (float)rng_uniform(&R);

    /* the single-call kernels on the whole batch */
    float *y1 = falloc(n), *m1 = falloc(C), *is1 = falloc(C);
    float *rm1 = fcopy(rm0, C), *rv1 = fcopy(rv0, C);
    (relu ? batchnorm_relu_forward : batchnorm_forward)(
        y1, m1, is1, x, gamma, beta, rm1, rv1, B, C, HW, mom, eps, 1);
    float *y = falloc(n);
    batchnorm_apply(y, x, NULL, m1, is1, gamma, beta, B, C, HW, relu);
    snprintf(what, sizeof what, "bn split B%d C%d HW%d relu%d: apply", B, C, HW,
             relu);
    CHECK_CLOSE(what, y, y1, n, 0, 0);
    double *sdy = dalloc(C), *sdyx = dalloc(C);
    for (int acc = 0; acc < 2; acc++) {
        float *pre = frandn(n, 1), *gp = frandn(C, 1), *bp = frandn(C, 1);
        float *dx1 = fcopy(pre, n), *dg1 = fcopy(gp, C), *db1 = fcopy(bp, C);
        float *dx2 = fcopy(pre, n), *dg2 = fcopy(gp, C), *db2 = fcopy(bp, C);
        if (relu)
            batchnorm_relu_backward(dx1, dg1, db1, g, y1, x, m1, is1, gamma, B,
                                    C, HW, acc);
        else
            batchnorm_backward(dx1, dg1, db1, g, x, m1, is1, gamma, B, C, HW,
                               acc);
        batchnorm_backward_sums(sdy, sdyx, dg2, db2, g, relu ? y1 : NULL, x, m1,
                                is1, B, C, HW);
        batchnorm_backward_input(dx2, g, relu ? y1 : NULL, x, m1, is1, gamma,
                                 sdy, sdyx, (double)B * HW, B, C, HW, acc);
        snprintf(what, sizeof what,
                 "bn split B%d C%d HW%d relu%d acc%d: backward sums + input", B,
                 C, HW, relu, acc);
        CHECK_CLOSE(what, dx2, dx1, n, 0, 0);
        CHECK_CLOSE("bn split: dgamma", dg2, dg1, C, 0, 0);
        CHECK_CLOSE("bn split: dbeta", db2, db1, C, 0, 0);
        free(pre), free(gp), free(bp), free(dx1), free(dg1), free(db1);
        free(dx2), free(dg2), free(db2);
    }

    /* the shards, in sequence: what bn_forward_sync / bn_backward_sync do
     * on each rank, with the sums over the ranks done here */
    double *s1 = dalloc(C + 1), *sd = dalloc(C), *sq = dalloc(C);
    double *t1 = dalloc(C), *t2 = dalloc(C);
    float *mean = falloc(C), *invstd = falloc(C);
    float *rm = fcopy(rm0, C), *rv = fcopy(rv0, C);
    int first[8], count[8];
    for (int r = 0; r < shards; r++) {
        count[r] = B / shards + (r < B % shards);
        first[r] = r == 0 ? 0 : first[r - 1] + count[r - 1];
    }
    for (int r = 0; r < shards; r++) { /* pass 1: value sums and counts */
        batchnorm_sums(t1, NULL, x + first[r] * per, NULL, count[r], C, HW);
        for (int c = 0; c < C; c++)
            s1[c] += t1[c];
        s1[C] += (double)count[r] * HW;
    }
    for (int c = 0; c < C; c++)
        mean[c] = (float)(s1[c] / s1[C]);
    for (int r = 0; r < shards; r++) { /* pass 2: about the global mean */
        batchnorm_sums(t1, t2, x + first[r] * per, mean, count[r], C, HW);
        for (int c = 0; c < C; c++)
            sd[c] += t1[c], sq[c] += t2[c];
    }
    batchnorm_stats(mean, invstd, rm, rv, mean, sd, sq, s1[C], C, mom, eps);
    for (int r = 0; r < shards; r++)
        batchnorm_apply(y + first[r] * per, x + first[r] * per, NULL, mean,
                        invstd, gamma, beta, count[r], C, HW, relu);
    double *yd = dalloc(n), *md = dalloc(C), *vd = dalloc(C);
    double *xd = todouble(x, n), *gd = todouble(gamma, C);
    double *bd = todouble(beta, C);
    bn_fwd_d(yd, md, vd, xd, gd, bd, B, C, HW, eps);
    float *w = falloc(n), *wm = falloc(C), *wis = falloc(C);
    for (size_t i = 0; i < n; i++)
        w[i] = relu && yd[i] < 0 ? 0.0f : (float)yd[i];
    for (int c = 0; c < C; c++) {
        wm[c] = (float)md[c];
        wis[c] = (float)(1 / sqrt(vd[c] + eps));
    }
    snprintf(what, sizeof what,
             "bn split B%d C%d HW%d relu%d, %d shards: out vs double", B, C, HW,
             relu, shards);
    CHECK_CLOSE(what, y, w, n, FWD_ATOL, FWD_RTOL);
    CHECK_CLOSE("bn split shards: out vs the whole batch's", y, y1, n, FWD_ATOL,
                FWD_RTOL);
    CHECK_CLOSE("bn split shards: mean vs double", mean, wm, C, FWD_ATOL,
                FWD_RTOL);
    CHECK_CLOSE("bn split shards: invstd vs double", invstd, wis, C, FWD_ATOL,
                FWD_RTOL);
    CHECK_CLOSE("bn split shards: running mean", rm, rm1, C, FWD_ATOL,
                FWD_RTOL);
    CHECK_CLOSE("bn split shards: running var", rv, rv1, C, FWD_ATOL, FWD_RTOL);

    /* backward: shard r's upstream gradient is B/k times the global loss's
     * (its loss is the mean over its k images); its input gradient comes
     * out in the same scale, its gamma/beta gradients are weighted by k/B
     * when the ranks' gradients are added */
    float *dx = falloc(n), *dg = falloc(C), *db = falloc(C);
    float *dl = falloc(n), *dgl = falloc(C), *dbl = falloc(C);
    double *Sdy = dalloc(C), *Sdyx = dalloc(C);
    const float *mask = relu ? y : NULL; /* the reference's too */
    for (int r = 0; r < shards; r++) {
        const size_t o = first[r] * per, nr = count[r] * per;
        const float up = (float)B / (float)count[r];
        const float wgt = (float)count[r] / (float)B;
        for (size_t i = 0; i < nr; i++)
            dl[o + i] = up * g[o + i];
        memset(dgl, 0, C * sizeof *dgl);
        memset(dbl, 0, C * sizeof *dbl);
        batchnorm_backward_sums(sdy, sdyx, dgl, dbl, dl + o,
                                mask ? mask + o : NULL, x + o, mean, invstd,
                                count[r], C, HW);
        for (int c = 0; c < C; c++) {
            Sdy[c] += (double)wgt * sdy[c];
            Sdyx[c] += (double)wgt * sdyx[c];
            dg[c] += wgt * dgl[c];
            db[c] += wgt * dbl[c];
        }
    }
    for (int r = 0; r < shards; r++) {
        const size_t o = first[r] * per, nr = count[r] * per;
        const float wgt = (float)count[r] / (float)B;
        batchnorm_backward_input(dx + o, dl + o, mask ? mask + o : NULL, x + o,
                                 mean, invstd, gamma, Sdy, Sdyx,
                                 (double)count[r] * HW, count[r], C, HW, 0);
        for (size_t i = 0; i < nr; i++)
            dx[o + i] *= wgt;
    }
    float *dx1 = falloc(n), *dg1 = falloc(C), *db1 = falloc(C);
    if (relu)
        batchnorm_relu_backward(dx1, dg1, db1, g, y, x, mean, invstd, gamma, B,
                                C, HW, 0);
    else
        batchnorm_backward(dx1, dg1, db1, g, x, mean, invstd, gamma, B, C, HW,
                           0);
    double ex = check_rel_err(dx, dx1, n), eg = check_rel_err(dg, dg1, C),
           eb = check_rel_err(db, db1, C);
    CHECK(ex < 1e-5 && eg < 1e-5 && eb < 1e-5,
          "bn split B%d C%d HW%d relu%d, %d shards: gradients vs the whole "
          "batch's: max rel error dinp %.3g dgamma %.3g dbeta %.3g",
          B, C, HW, relu, shards, ex, eg, eb);
    printf("ok   bn split B%d C%d HW%d relu%d, %d shards: gradients vs the "
           "whole batch's: max rel error dinp %.3g dgamma %.3g dbeta %.3g\n",
           B, C, HW, relu, shards, ex, eg, eb);

    free(x), free(gamma), free(beta), free(g), free(rm0), free(rv0);
    free(y1), free(m1), free(is1), free(rm1), free(rv1), free(y), free(sdy);
    free(sdyx), free(s1), free(sd), free(sq), free(t1), free(t2), free(mean);
    free(invstd), free(rm), free(rv), free(yd), free(md), free(vd), free(xd);
    free(gd), free(bd), free(w), free(wm), free(wis), free(dx), free(dg);
    free(db), free(dl), free(dgl), free(dbl), free(Sdy), free(Sdyx);
    free(dx1), free(dg1), free(db1);
}

/* ------------------------------------------------------------------------
 * relu, add, avgpool, maxpool, shortcut: elementwise-ish layers */

struct unary_ctx {
    int kind; /* 0 relu, 1 avgpool, 2 maxpool, 3 shortcut */
    int B, C, H, W, k, s, Cout;
    double *x, *r;
    size_t ny;
};

static void unary_fwd_d(const struct unary_ctx *c, double *y, int *arg)
{
    int B = c->B, C = c->C, H = c->H, W = c->W;
    if (c->kind == 0) {
        for (size_t i = 0; i < c->ny; i++)
            y[i] = c->x[i] > 0 ? c->x[i] : 0;
    } else if (c->kind == 1) {
        for (int p = 0; p < B * C; p++) {
            double s = 0;
            for (int i = 0; i < H * W; i++)
                s += c->x[p * H * W + i];
            y[p] = s / (H * W);
        }
    } else if (c->kind == 2) {
        int Ho = (H - c->k) / c->s + 1, Wo = (W - c->k) / c->s + 1;
        for (int p = 0; p < B * C; p++)
            for (int i = 0; i < Ho; i++)
                for (int j = 0; j < Wo; j++) {
                    double m = -INFINITY;
                    int am = -1;
                    for (int u = 0; u < c->k; u++)
                        for (int v = 0; v < c->k; v++) {
                            int idx = (i * c->s + u) * W + j * c->s + v;
                            if (c->x[p * H * W + idx] > m)
                                m = c->x[p * H * W + idx], am = idx;
                        }
                    y[(p * Ho + i) * Wo + j] = m;
                    if (arg) arg[(p * Ho + i) * Wo + j] = am;
                }
    } else {
        int Ho = (H - 1) / c->s + 1, Wo = (W - 1) / c->s + 1;
        int pad = (c->Cout - C) / 2;
        for (int b = 0; b < B; b++)
            for (int o = 0; o < c->Cout; o++)
                for (int i = 0; i < Ho; i++)
                    for (int j = 0; j < Wo; j++) {
                        int ci = o - pad;
                        y[((b * c->Cout + o) * Ho + i) * Wo + j] =
                            ci >= 0 && ci < C
                                ? c->x[((b * C + ci) * H + i * c->s) * W +
                                       j * c->s]
                                : 0;
                    }
    }
}

static double unary_loss(void *p)
{
    struct unary_ctx *c = p;
    double *y = dalloc(c->ny);
    unary_fwd_d(c, y, NULL);
    double l = dot(y, c->r, c->ny);
    free(y);
    return l;
}

static void test_unary(int kind, int B, int C, int H, int W, int k, int s,
                       int Cout)
{
    static const char *names[] = {"relu", "avgpool", "maxpool", "shortcut"};
    char name[128], what[180];
    size_t nx = (size_t)B * C * H * W, ny;
    if (kind == 0)
        ny = nx;
    else if (kind == 1)
        ny = (size_t)B * C;
    else if (kind == 2)
        ny = (size_t)B * C * ((H - k) / s + 1) * ((W - k) / s + 1);
    else
        ny = (size_t)B * Cout * ((H - 1) / s + 1) * ((W - 1) / s + 1);
    snprintf(name, sizeof name, "%s B%d C%d %dx%d k%d s%d Cout%d", names[kind],
             B, C, H, W, k, s, Cout);
    float *x = frandn(nx, 1), *r = frandn(ny, 1);
    struct unary_ctx c = {
        kind, B, C, H, W, k, s, Cout, todouble(x, nx), todouble(r, ny), ny};
    double *yd = dalloc(ny);
    int *argd = xalloc(ny * sizeof *argd);
    unary_fwd_d(&c, yd, argd);
    float *want = tofloat(yd, ny), *y = falloc(ny);
    int32_t *arg = xalloc(ny * sizeof *arg);
    if (kind == 0)
        relu_forward(y, x, nx);
    else if (kind == 1)
        avgpool_forward(y, x, B, C, H * W);
    else if (kind == 2)
        maxpool_forward(y, arg, x, B, C, H, W, k, s);
    else
        shortcut_forward(y, x, B, C, H, W, Cout, s);
    snprintf(what, sizeof what, "%s forward", name);
    CHECK_CLOSE(what, y, want, ny, FWD_ATOL, FWD_RTOL);
    if (kind == 2) {
        size_t bad = 0;
        for (size_t i = 0; i < ny; i++)
            bad += arg[i] != argd[i];
        CHECK(bad == 0, "%s argmax: %zu of %zu differ", name, bad, ny);
    }
    if (kind == 0) { /* in place */
        float *xi = fcopy(x, nx);
        relu_forward(xi, xi, nx);
        snprintf(what, sizeof what, "%s forward in place", name);
        CHECK_CLOSE(what, xi, want, ny, 0, 0);
        free(xi);
    }

    double *gx = dalloc(nx);
    fd_grad(unary_loss, &c, c.x, nx, gx);
    float *xpre = frandn(nx, 100);
    for (int acc = 0; acc < 2; acc++) {
        float *dx = fcopy(xpre, nx);
        if (kind == 0)
            relu_backward(dx, r, y, nx, acc);
        else if (kind == 1)
            avgpool_backward(dx, r, B, C, H * W, acc);
        else if (kind == 2)
            maxpool_backward(dx, r, arg, B, C, H, W, k, s, acc);
        else
            shortcut_backward(dx, r, B, C, H, W, Cout, s, acc);
        snprintf(what, sizeof what, "%s acc%d dinp", name, acc);
        check_grad(what, dx, xpre, gx, nx, acc);
        free(dx);
    }
    free(x), free(r), free(c.x), free(c.r), free(yd), free(argd), free(want);
    free(y), free(arg), free(gx), free(xpre);
}

/* Ties in a window: the first maximum wins (as in PyTorch). */
static void test_maxpool_ties(void)
{
    float x[16], y[4], dx[16], dy[4] = {1, 2, 3, 4}, want[16] = {0};
    int32_t arg[4];
    for (int i = 0; i < 16; i++)
        x[i] = 1;
    maxpool_forward(y, arg, x, 1, 1, 4, 4, 2, 2);
    CHECK(arg[0] == 0 && arg[1] == 2 && arg[2] == 8 && arg[3] == 10,
          "maxpool ties: argmax %d %d %d %d, want 0 2 8 10", arg[0], arg[1],
          arg[2], arg[3]);
    maxpool_backward(dx, dy, arg, 1, 1, 4, 4, 2, 2, 0);
    want[0] = 1, want[2] = 2, want[8] = 3, want[10] = 4;
    CHECK_CLOSE("maxpool ties backward", dx, want, 16, 0, 0);
    /* a 1x1 plane under a 2x2 window has no output and gets no gradient */
    y[0] = 7;
    maxpool_forward(y, arg, x, 1, 1, 1, 1, 2, 2);
    CHECK(y[0] == 7, "maxpool 1x1 input with k=2 wrote an output");
    dx[0] = 5;
    maxpool_backward(dx, dy, arg, 1, 1, 1, 1, 2, 2, 0);
    CHECK(dx[0] == 0, "maxpool 1x1 input with k=2: dinp %g, want 0", dx[0]);
}

/* The 2x2 stride-2 path against maxpool_forward_ref, bit for bit (values
 * and argmax): odd and even sizes, ties (values on a coarse grid) and NaNs
 * in every window position, on 1 and 2 threads. */
static void test_maxpool2_twin(void)
{
    static const int shapes[][4] = {{3, 5, 8, 8},
                                    {2, 3, 7, 9},
                                    {1, 4, 2, 2},
                                    {2, 2, 5, 3},
                                    {4, 64, 14, 14}};
    for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
        int B = shapes[t][0], C = shapes[t][1], H = shapes[t][2],
            W = shapes[t][3];
        size_t nx = (size_t)B * C * H * W,
               ny = (size_t)B * C * (H / 2) * (W / 2);
        float *x = frandn(nx, 1);
        for (size_t i = 0; i < nx; i++) {
            x[i] = floorf(x[i] * 2.0f) / 2.0f; /* many ties */
            if (i % 13 == 5) x[i] = NAN;
        }
        float *y = falloc(ny), *yr = falloc(ny);
        int32_t *a = xalloc(ny * sizeof *a), *ar = xalloc(ny * sizeof *ar);
        for (int thr = 1; thr <= 2; thr++) {
            omp_set_num_threads(thr);
            maxpool_forward(y, a, x, B, C, H, W, 2, 2);
            maxpool_forward_ref(yr, ar, x, B, C, H, W, 2, 2);
            size_t bad = 0;
            for (size_t i = 0; i < ny; i++)
                bad += a[i] != ar[i] || memcmp(&y[i], &yr[i], sizeof *y) != 0;
            CHECK(bad == 0,
                  "maxpool 2x2 B%d C%d %dx%d thr%d: %zu of %zu outputs differ "
                  "from maxpool_forward_ref",
                  B, C, H, W, thr, bad, ny);
        }
        free(x), free(y), free(yr), free(a), free(ar);
    }
}

static void test_add(void)
{
    enum { N = 1000 };
    float *a = frandn(N, 1), *b = frandn(N, 1), *y = falloc(N), *w = falloc(N);
    for (int i = 0; i < N; i++)
        w[i] = a[i] + b[i];
    add_forward(y, a, b, N);
    CHECK_CLOSE("add forward", y, w, N, 0, 0);
    float *dy = frandn(N, 1), *pa = frandn(N, 100), *pb = frandn(N, 100);
    for (int acc = 0; acc < 4; acc++) {
        int aa = acc & 1, ab = acc >> 1;
        float *da = fcopy(pa, N), *db = fcopy(pb, N);
        add_backward(da, db, dy, N, aa, ab);
        for (int i = 0; i < N; i++)
            w[i] = (aa ? pa[i] : 0) + dy[i];
        char what[64];
        snprintf(what, sizeof what, "add backward da acc%d", aa);
        CHECK_CLOSE(what, da, w, N, 0, 0);
        for (int i = 0; i < N; i++)
            w[i] = (ab ? pb[i] : 0) + dy[i];
        snprintf(what, sizeof what, "add backward db acc%d", ab);
        CHECK_CLOSE(what, db, w, N, 0, 0);
        free(da), free(db);
    }
    float *db = fcopy(pb, N);
    add_backward(NULL, db, dy, N, 0, 1);
    for (int i = 0; i < N; i++)
        w[i] = pb[i] + dy[i];
    CHECK_CLOSE("add backward da=NULL db acc1", db, w, N, 0, 0);
    free(a), free(b), free(y), free(w), free(dy), free(pa), free(pb), free(db);
}

/* Fused add+ReLU against add then an in-place ReLU (forward), and against
 * relu_backward in place then add_backward (backward), bit for bit, with
 * every accumulate flag and aliased (NULL) input gradients. Sized past the
 * parallel threshold so the OpenMP loop runs too. */
static void test_add_relu(void)
{
    enum { N = 70000 };
    float *a = frandn(N, 1), *b = frandn(N, 1), *y1 = falloc(N),
          *y2 = falloc(N);
    add_forward(y1, a, b, N);
    relu_forward(y1, y1, N);
    add_relu_forward(y2, a, b, N);
    CHECK_CLOSE("add_relu forward", y2, y1, N, 0, 0);
    float *dy = frandn(N, 1), *pa = frandn(N, 100), *pb = frandn(N, 100);
    for (int acc = 0; acc < 8; acc++) {
        int aa = acc & 1, ab = (acc >> 1) & 1, alias_a = acc >> 2;
        float *d1 = fcopy(dy, N), *d2 = fcopy(dy, N);
        float *da1 = fcopy(pa, N), *db1 = fcopy(pb, N);
        float *da2 = fcopy(pa, N), *db2 = fcopy(pb, N);
        relu_backward(d1, d1, y1, N, 0);
        add_backward(alias_a ? NULL : da1, db1, d1, N, aa, ab);
        add_relu_backward(alias_a ? NULL : da2, db2, d2, y2, N, aa, ab);
        char what[64];
        snprintf(what, sizeof what, "add_relu backward dout acc%d", acc);
        CHECK_CLOSE(what, d2, d1, N, 0, 0);
        snprintf(what, sizeof what, "add_relu backward da acc%d", acc);
        CHECK_CLOSE(what, da2, da1, N, 0, 0);
        snprintf(what, sizeof what, "add_relu backward db acc%d", acc);
        CHECK_CLOSE(what, db2, db1, N, 0, 0);
        free(d1), free(d2), free(da1), free(db1), free(da2), free(db2);
    }
    free(a), free(b), free(y1), free(y2), free(dy), free(pa), free(pb);
}

/* ------------------------------------------------------------------------
 * linear */

struct lin_ctx {
    int B, I, O;
    double *x, *w, *b, *r;
};

static void lin_fwd_d(double *y, const struct lin_ctx *c)
{
    for (int n = 0; n < c->B; n++)
        for (int o = 0; o < c->O; o++) {
            double s = c->b ? c->b[o] : 0;
            for (int i = 0; i < c->I; i++)
                s += c->x[n * c->I + i] * c->w[o * c->I + i];
            y[n * c->O + o] = s;
        }
}

static double lin_loss(void *p)
{
    struct lin_ctx *c = p;
    size_t n = (size_t)c->B * c->O;
    double *y = dalloc(n);
    lin_fwd_d(y, c);
    double l = dot(y, c->r, n);
    free(y);
    return l;
}

static void test_linear_fd(int B, int I, int O)
{
    char what[160];
    size_t nx = (size_t)B * I, nw = (size_t)O * I, ny = (size_t)B * O;
    float *x = frandn(nx, 1), *w = frandn(nw, 0.5), *b = frandn(O, 1);
    float *r = frandn(ny, 1);
    struct lin_ctx c = {B,
                        I,
                        O,
                        todouble(x, nx),
                        todouble(w, nw),
                        todouble(b, O),
                        todouble(r, ny)};
    double *yd = dalloc(ny);
    lin_fwd_d(yd, &c);
    float *want = tofloat(yd, ny), *y = falloc(ny);
    for (int ref = 0; ref < 2; ref++) {
        const char *k = ref ? "linear_ref" : "linear";
        if (ref)
            linear_forward_ref(y, x, w, b, B, I, O);
        else
            linear_forward(y, x, w, b, B, I, O);
        snprintf(what, sizeof what, "%s B%d I%d O%d forward", k, B, I, O);
        CHECK_CLOSE(what, y, want, ny, FWD_ATOL, FWD_RTOL);
    }
    double *gx = dalloc(nx), *gw = dalloc(nw), *gb = dalloc(O);
    fd_grad(lin_loss, &c, c.x, nx, gx);
    fd_grad(lin_loss, &c, c.w, nw, gw);
    fd_grad(lin_loss, &c, c.b, O, gb);
    float *xpre = frandn(nx, 100), *wpre = frandn(nw, 1), *bpre = frandn(O, 1);
    for (int ref = 0; ref < 2; ref++)
        for (int acc = 0; acc < 2; acc++) {
            const char *k = ref ? "linear_ref" : "linear";
            float *dx = fcopy(xpre, nx), *dw = fcopy(wpre, nw);
            float *db = fcopy(bpre, O);
            if (ref)
                linear_backward_ref(dx, dw, db, r, x, w, B, I, O, acc);
            else
                linear_backward(dx, dw, db, r, x, w, B, I, O, acc);
            snprintf(what, sizeof what, "%s acc%d dinp", k, acc);
            check_grad(what, dx, xpre, gx, nx, acc);
            snprintf(what, sizeof what, "%s acc%d dweight", k, acc);
            check_grad(what, dw, wpre, gw, nw, 1);
            snprintf(what, sizeof what, "%s acc%d dbias", k, acc);
            check_grad(what, db, bpre, gb, O, 1);
            free(dx), free(dw), free(db);
        }
    free(x), free(w), free(b), free(r), free(c.x), free(c.w), free(c.b);
    free(c.r), free(yd), free(want), free(y), free(gx), free(gw), free(gb);
    free(xpre), free(wpre), free(bpre);
}

static void test_linear_twin(int B, int I, int O)
{
    char what[160];
    size_t nx = (size_t)B * I, nw = (size_t)O * I, ny = (size_t)B * O;
    float *x = frandn(nx, 1), *w = frandn(nw, 0.1), *b = frandn(O, 1);
    float *dy = frandn(ny, 1), *y1 = falloc(ny), *y2 = falloc(ny);
    linear_forward(y1, x, w, b, B, I, O);
    linear_forward_ref(y2, x, w, b, B, I, O);
    snprintf(what, sizeof what, "twin linear B%d I%d O%d forward", B, I, O);
    check_twin(what, y1, y2, ny);
    float *dx1 = frandn(nx, 1), *dx2 = fcopy(dx1, nx);
    float *dw1 = frandn(nw, 1), *dw2 = fcopy(dw1, nw);
    float *db1 = frandn(O, 1), *db2 = fcopy(db1, O);
    linear_backward(dx1, dw1, db1, dy, x, w, B, I, O, 1);
    linear_backward_ref(dx2, dw2, db2, dy, x, w, B, I, O, 1);
    snprintf(what, sizeof what, "twin linear B%d I%d O%d dinp", B, I, O);
    check_twin(what, dx1, dx2, nx);
    snprintf(what, sizeof what, "twin linear B%d I%d O%d dweight", B, I, O);
    check_twin(what, dw1, dw2, nw);
    snprintf(what, sizeof what, "twin linear B%d I%d O%d dbias", B, I, O);
    check_twin(what, db1, db2, O);
    free(x), free(w), free(b), free(dy), free(y1), free(y2), free(dx1);
    free(dx2), free(dw1), free(dw2), free(db1), free(db2);
}

/* ------------------------------------------------------------------------
 * softmax cross-entropy */

struct xent_ctx {
    int B, C;
    double *z;
    const int *labels;
};

/* Mean cross-entropy in double, log-sum-exp shifted by the row max. */
static double xent_d(const struct xent_ctx *c, double *probs, int *correct)
{
    double loss = 0;
    int ok = 0;
    for (int b = 0; b < c->B; b++) {
        const double *z = c->z + b * c->C;
        double m = z[0];
        int am = 0;
        for (int k = 1; k < c->C; k++)
            if (z[k] > m) m = z[k], am = k;
        double s = 0;
        for (int k = 0; k < c->C; k++)
            s += exp(z[k] - m);
        loss += m + log(s) - z[c->labels[b]];
        if (probs)
            for (int k = 0; k < c->C; k++)
                probs[b * c->C + k] = exp(z[k] - m) / s;
        ok += am == c->labels[b];
    }
    if (correct) *correct = ok;
    return loss / c->B;
}

static double xent_loss(void *p)
{
    return xent_d(p, NULL, NULL);
}

static void test_xent(int B, int C, double scale, double offset)
{
    char what[160];
    size_t n = (size_t)B * C;
    float *z = frandn(n, scale);
    for (size_t i = 0; i < n; i++)
        z[i] += (float)offset;
    int *lab = xalloc(B * sizeof *lab);
    for (int b = 0; b < B; b++)
        lab[b] = (int)rng_below(&R, C);
    struct xent_ctx c = {B, C, todouble(z, n), lab};
    double *pd = dalloc(n);
    int okd, ok = -1;
    float lossd = (float)xent_d(&c, pd, &okd);
    float *probs = falloc(n), *want = tofloat(pd, n);
    float loss = softmax_xent_forward(probs, z, lab, B, C, &ok);
    snprintf(what, sizeof what, "xent B%d C%d scale %g offset %g loss", B, C,
             scale, offset);
    CHECK_CLOSE(what, &loss, &lossd, 1, FWD_ATOL, FWD_RTOL);
    snprintf(what, sizeof what, "xent B%d C%d probs", B, C);
    CHECK_CLOSE(what, probs, want, n, FWD_ATOL, FWD_RTOL);
    CHECK(ok == okd, "xent correct %d, want %d", ok, okd);
    CHECK(softmax_xent_forward(probs, z, lab, B, C, NULL) == loss,
          "correct=NULL changes the loss");
    double *g = dalloc(n);
    fd_grad(xent_loss, &c, c.z, n, g);
    float *dz = frandn(n, 100), *zero = falloc(n);
    softmax_xent_backward(dz, probs, lab, B, C);
    snprintf(what, sizeof what, "xent B%d C%d dlogits", B, C);
    check_grad(what, dz, zero, g, n, 0);
    free(z), free(lab), free(c.z), free(pd), free(probs), free(want), free(g);
    free(dz), free(zero);
}

/* Which algorithm conv2d_* choose, and every algorithm against the plain
 * twin on the same shapes: each choice (im2col only, + row-tap,
 * + Winograd, both) runs twins where row-tap, Winograd and the im2col
 * forms apply (Winograd: odd maps with part tiles, one image and 17, so
 * a chunk of 16 lanes and one with 15 zero lanes). */
static void test_conv_algos(void)
{
    static const struct {
        int Cin, H, Cout, stride;
        const char *algo;
    } pick[] = {
        {64, 14, 128, 1, "winograd4"}, {128, 7, 256, 1, "winograd4"},
        {64, 7, 64, 1, "winograd4"},   {24, 7, 32, 1, "winograd4"},
        {16, 7, 16, 1, "rowtap"},      {512, 3, 512, 1, "rowtap"},
        {32, 14, 32, 1, "implicit"},   {16, 28, 16, 1, "implicit"},
        {64, 28, 64, 1, "winograd4"},  {64, 56, 64, 1, "implicit"},
        {16, 28, 32, 2, "phase"},      {512, 1, 512, 1, "pointwise"},
    };
    for (size_t i = 0; i < sizeof pick / sizeof pick[0]; i++) {
        struct conv_geom g = {.B = 128,
                              .Cin = pick[i].Cin,
                              .H = pick[i].H,
                              .W = pick[i].H,
                              .Cout = pick[i].Cout,
                              .K = 3,
                              .stride = pick[i].stride,
                              .pad = 1};
        CHECK(conv_geom_init(&g) == 0, "geometry");
        const char *got = conv2d_algo_name(&g);
        CHECK(strcmp(got, pick[i].algo) == 0,
              "conv %d->%d %dx%d s%d: %s, not %s", g.Cin, g.Cout, g.H, g.W,
              g.stride, got, pick[i].algo);
    }
    static const int masks[] = {0,
                                CONV_ALGO_ROWTAP,
                                CONV_ALGO_WINOGRAD,
                                CONV_ALGO_ROWTAP | CONV_ALGO_WINOGRAD,
                                CONV_ALGO_WINOGRAD | CONV_ALGO_WINO4,
                                CONV_ALGO_ALL};
    const int saved = conv2d_get_algos(), threads = omp_get_max_threads();
    for (size_t k = 0; k < sizeof masks / sizeof masks[0]; k++) {
        conv2d_set_algos(masks[k]);
        for (int t = 1; t <= 2; t++) {
            omp_set_num_threads(t);
            test_conv_twin(2, 64, 5, 128, 3, 1, 1);
            test_conv_twin(1, 128, 7, 64, 3, 1, 1);
            test_conv_twin(17, 64, 3, 128, 3, 1, 1);
            test_conv_twin(17, 64, 5, 128, 3, 1, 1);
            test_conv_twin(17, 128, 6, 64, 3, 1, 1);
            test_conv_twin(3, 128, 9, 128, 3, 1, 1);
            test_conv_twin(17, 16, 9, 32, 3, 2, 1);
        }
    }
    conv2d_set_algos(saved);
    omp_set_num_threads(threads);
}

int main(void)
{
    rng_seed(&R, 20240601);
    printf("test_layers: %d OpenMP threads, GEMM %s\n", omp_get_max_threads(),
           gemm_backend_name());
    /* the _avx2 run must exercise the AVX2 kernels, not a fallback */
    const char *want = getenv("ABC_GEMM");
    if (want && strcmp(want, "avx2") == 0 && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
        CHECK(gemm_get_backend() == GEMM_BACKEND_AVX2, "ABC_GEMM=avx2 ran %s",
              gemm_backend_name());
    test_conv();
    test_conv_algos();
    test_batchnorm_known();
    test_batchnorm(2, 3, 5, 0);
    test_batchnorm(3, 2, 1, 0);
    int saved = omp_get_max_threads();
    omp_set_num_threads(2);
    test_batchnorm(8, 4, 1024, 48); /* threaded path; FD at 48 points */
    omp_set_num_threads(saved);
    test_batchnorm_relu(2, 3, 5, 1);
    test_batchnorm_relu(3, 2, 1, 1);
    for (int t = 1; t <= 3; t++)
        test_batchnorm_relu(8, 32, 196, t); /* threaded path at t > 1 */
    test_batchnorm_relu(16, 5, 784, 2);     /* units of images, threaded */
    test_batchnorm_add_relu(3, 2, 5, 1);
    test_batchnorm_add_relu(8, 32, 196, 2); /* one channel per thread */
    test_batchnorm_add_relu(16, 5, 784, 2); /* units of images */
    test_batchnorm_threads(16, 5, 784);
    test_batchnorm_threads(67, 7, 98);
    test_batchnorm_threads(16, 16, 196);
    omp_set_num_threads(2);
    test_batchnorm(32, 5, 256, 48); /* units of images against FD, threaded */
    omp_set_num_threads(saved);
    for (int relu = 0; relu < 2; relu++) {
        test_batchnorm_split(7, 3, 5, relu, 2); /* shards 4 + 3 */
        test_batchnorm_split(7, 3, 5, relu, 3); /* 3 + 2 + 2 */
        test_batchnorm_split(1, 2, 9, relu, 1);
    }
    omp_set_num_threads(2);
    test_batchnorm_split(9, 16, 1024, 1, 2); /* threaded path */
    omp_set_num_threads(saved);
    test_unary(0, 2, 3, 5, 5, 0, 0, 0);
    test_unary(1, 2, 3, 5, 5, 0, 0, 0);
    test_unary(2, 2, 3, 5, 5, 2, 2, 0);
    test_unary(2, 2, 3, 7, 6, 3, 2, 0);
    test_unary(2, 1, 2, 4, 4, 2, 1, 0);
    test_unary(3, 2, 3, 5, 5, 0, 2, 6);
    test_unary(3, 2, 4, 6, 6, 0, 2, 8);
    test_unary(3, 2, 3, 5, 5, 0, 1, 3);
    test_maxpool_ties();
    test_maxpool2_twin();
    test_add();
    test_add_relu();
    test_linear_fd(3, 5, 4);
    test_linear_twin(128, 64, 10);
    test_linear_twin(33, 512, 100);
    test_xent(4, 10, 2, 0);
    test_xent(3, 7, 5, 1000); /* exp(1000) would overflow without the shift */
    test_xent(2, 5, 50, -500);
    return check_finish("test_layers");
}

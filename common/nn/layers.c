/* layers.c - CPU kernels of every layer (see layers.h).
 * Convolution works on chunks of images (enough for GEMMs of about
 * CONV_MIN_COLS columns), the chunks spread over OpenMP threads that each
 * run the single-threaded gemm_f32; per chunk one of: implicit im2col
 * (B rows read in place from one padded copy), the stride-2 phase split,
 * row-tap on small maps, Winograd F(2x2) or F(4x4), the explicit im2col
 * otherwise (conv_plan_make chooses; each section below says where). Weight
 * gradients are summed per thread and reduced in thread order, so results
 * are deterministic for a fixed thread count. Each fast kernel has a naive
 * single-threaded `_ref` twin. */
#include "nn/layers.h"

#include "nn/gemm.h"

#include <math.h>
#include <omp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Elementwise loops below this many elements run on one thread. */
#define PAR_MIN_ELEMS 32768

int conv_geom_init(struct conv_geom *g)
{
    if (g->B <= 0 || g->Cin <= 0 || g->H <= 0 || g->W <= 0 || g->Cout <= 0 ||
        g->K <= 0 || g->stride <= 0 || g->pad < 0)
        return -1;
    int hn = g->H + 2 * g->pad - g->K, wn = g->W + 2 * g->pad - g->K;
    if (hn < 0 || wn < 0) return -1;
    g->Ho = hn / g->stride + 1;
    g->Wo = wn / g->stride + 1;
    return 0;
}

/* ---------------------------------------------------------------------------
 * Convolution: chunking plan, im2col/col2im, kernels.
 * A chunk of n images is im2col'ed into col (CinKK, n*P) with P = Ho*Wo,
 * column j*P + p for image j, pixel p; one sgemm then produces the chunk's
 * (Cout, n*P) output. */

/* Aim for GEMMs at least this wide (columns = images in chunk * Ho*Wo). */
#ifndef CONV_MIN_COLS
#define CONV_MIN_COLS 1024
#endif
/* ...but keep a thread's im2col buffer at most this many floats (8 MiB). */
#define CONV_MAX_COL_FLOATS (2u << 20)

struct conv_plan {
    int nchunks;  /* chunk c covers images [c*B/nchunks, (c+1)*B/nchunks) */
    int nb;       /* most images in one chunk */
    int parallel; /* 1: chunks over threads; 0: in order on this thread */
    int implicit; /* 1: implicit im2col (conv_is_implicit) */
    int rowtap;   /* 1: row-tap convolution (conv_is_rowtap) */
    int wino;     /* m of Winograd F(m x m, 3x3), 2 or 4, or 0 (conv_is_wino) */
    int phase;    /* 1: stride-2 phase convolution (conv_is_phase) */
    /* per-thread buffer sizes in floats (64 B aligned): im2col or padded
     * input, GEMM output (and, implicit, padded dout and dinp grid),
     * weight-gradient partial, row-address tables (implicit) */
    size_t col, tmp, dw, ptr;
    size_t per; /* col + tmp + dw + ptr */
    size_t wt;  /* shared, after the per-thread buffers: flipped weights */
};

static size_t round16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

static int conv_is_1x1(const struct conv_geom *g)
{
    return g->K == 1 && g->stride == 1 && g->pad == 0;
}

/* A 1x1 input map giving a 1x1 output: only the centre tap (pad, pad)
 * touches the input, so the convolution is a linear layer over channels
 * with that tap's weights (VGG's last block at 28x28 input). Skips 8/9 of
 * the work for K = 3. */
static int conv_is_pointwise(const struct conv_geom *g)
{
    return g->H == 1 && g->W == 1 && g->Ho == 1 && g->Wo == 1 && g->pad < g->K;
}

/* ---------------------------------------------------------------------------
 * Implicit im2col for stride 1 with "same" padding (odd K, pad (K-1)/2):
 * a chunk of n images is copied once, channel by channel, into a padded
 * buffer where the zero padding is shared: each row is followed by pad
 * zeros (which are also the next row's left padding) and each image by pad
 * zero rows (also the next image's top padding). Every im2col row (c, kh,
 * kw) is then the same buffer shifted by a constant, so the GEMM reads it
 * through a table of row addresses (gemm_f32_rows) and no K*K-fold im2col
 * matrix is written or read. The GEMM computes outputs on the padded
 * grid, column (j*Hs + oh)*Wp + ow for image j, pixel (oh, ow); the few
 * columns that fall on padding are computed and dropped. The input
 * gradient is the same convolution of the padded output gradient with the
 * weights flipped and transposed, so col2im disappears too. */
struct implicit {
    int pd;       /* padding */
    int Wp, Hs;   /* row length W + pd; rows per image H + pd */
    size_t S;     /* floats per channel in the padded buffer */
    size_t G0;    /* leading guard: buffer row 0 starts at G0 */
    size_t ncols; /* GEMM columns: ((n-1)*Hs + H) * Wp */
};

/* Implicit where it pays: the padded grid's extra columns cost GEMM work
 * ((H+pad)(W+pad) / HW: 1.07 at 28x28, 1.31 at 7x7, 1.78 at 3x3), while
 * the explicit im2col costs memory traffic that a GEMM with many output
 * channels amortises. So small maps with wide layers keep the explicit
 * im2col (VGG's 7x7 and 3x3 stages); ResNet widths (<= 64) never do. */
#ifndef CONV_IMPLICIT_MAX_COUT
#define CONV_IMPLICIT_MAX_COUT 64
#endif
static int conv_is_implicit(const struct conv_geom *g)
{
    if (!(g->stride == 1 && g->K > 1 && g->K % 2 == 1 &&
          2 * g->pad == g->K - 1 && !conv_is_pointwise(g)))
        return 0;
    const long grid = (long)(g->H + g->pad) * (g->W + g->pad),
               real = (long)g->H * g->W;
    return g->Cout <= CONV_IMPLICIT_MAX_COUT || 4 * grid <= 5 * real;
}

static void implicit_layout(struct implicit *L, const struct conv_geom *g,
                            int n)
{
    L->pd = g->pad;
    L->Wp = g->W + g->pad;
    L->Hs = g->H + g->pad;
    L->G0 = (size_t)g->pad;
    size_t rows = (size_t)g->pad + (size_t)n * L->Hs;
    L->S = round16(rows * L->Wp + 2 * (size_t)g->pad);
    L->ncols = ((size_t)(n - 1) * L->Hs + g->H) * L->Wp;
}

/* buf (C, S) <- the padded layout of src (n, C, H, W). */
static void implicit_pad(float *buf, const float *src, int n, int C,
                         const struct conv_geom *g, const struct implicit *L)
{
    const int H = g->H, W = g->W, pd = L->pd, Wp = L->Wp;
    const size_t HW = (size_t)H * W;
    for (int c = 0; c < C; c++) {
        float *b = buf + (size_t)c * L->S;
        size_t top = L->G0 + (size_t)pd * Wp;
        memset(b, 0, top * sizeof *b);
        float *d = b + top;
        for (int j = 0; j < n; j++) {
            const float *x = src + ((size_t)j * C + c) * HW;
            for (int r = 0; r < H; r++, d += Wp) {
                memcpy(d, x + (size_t)r * W, (size_t)W * sizeof *d);
                for (int k = 0; k < pd; k++)
                    d[W + k] = 0.0f;
            }
            memset(d, 0, (size_t)pd * Wp * sizeof *d);
            d += (size_t)pd * Wp;
        }
        memset(d, 0, (size_t)(b + L->S - d) * sizeof *d);
    }
}

/* rows[(c*K + kh)*K + kw] <- the im2col row (c, kh, kw) over the grid. */
static void implicit_rows(const float **rows, const float *buf, int C,
                          const struct conv_geom *g, const struct implicit *L)
{
    const int K = g->K;
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < K; kh++)
            for (int kw = 0; kw < K; kw++)
                rows[((size_t)c * K + kh) * K + kw] =
                    buf + (size_t)c * L->S + L->G0 + (size_t)kh * L->Wp + kw -
                    L->pd;
}

/* d[i] =, or += when accumulate, s[i] (+ bv + a[i] when a is not NULL,
 * + bv otherwise; then max(., 0) when relu), i < len: the output passes'
 * epilogue (accumulate: the input gradients, bv 0, no a or relu). d may be
 * s itself (the im2col path's in-place single image). */
static void conv_out_row(float *d, const float *s, const float *a, int len,
                         float bv, int relu, int accumulate)
{
    if (a) {
#pragma omp simd
        for (int i = 0; i < len; i++) {
            float v = s[i] + bv + a[i];
            d[i] = relu && v < 0.0f ? 0.0f : v;
        }
    } else if (accumulate) {
#pragma omp simd
        for (int i = 0; i < len; i++)
            d[i] += s[i];
    } else if (relu) {
#pragma omp simd
        for (int i = 0; i < len; i++) {
            float v = s[i] + bv;
            d[i] = v > 0.0f ? v : 0.0f;
        }
    } else {
#pragma omp simd
        for (int i = 0; i < len; i++)
            d[i] = s[i] + bv;
    }
}

/* y (n, C, H, W) =, or += when accumulate, the grid (C, ld) values of the
 * real pixels, plus bias (may be NULL) and res (may be NULL; laid out as
 * y), then max(., 0) when relu. */
static void implicit_unpad(float *y, const float *grid, size_t ld, int n, int C,
                           const struct conv_geom *g, const struct implicit *L,
                           const float *bias, const float *res, int relu,
                           int accumulate)
{
    const int H = g->H, W = g->W;
    for (int j = 0; j < n; j++)
        for (int c = 0; c < C; c++) {
            float *d = y + ((size_t)j * C + c) * H * W;
            const float *a = res ? res + ((size_t)j * C + c) * H * W : NULL;
            const float *src =
                grid + (size_t)c * ld + (size_t)j * L->Hs * L->Wp;
            const float bv = bias ? bias[c] : 0.0f;
            for (int r = 0; r < H; r++, d += W, src += L->Wp) {
                conv_out_row(d, src, a, W, bv, relu, accumulate);
                if (a) a += W;
            }
        }
}

/* ---------------------------------------------------------------------------
 * Stride-2 phase convolution (3x3, padding 1: ResNet's downsampling convs).
 * The input splits into four phase planes, (even|odd rows) x (even|odd
 * columns), each Ho x Wo: output (i, j) reads input row 2i - 1 + kh, which
 * is odd-phase row i - 1 for kh = 0, even-phase row i for kh = 1 and
 * odd-phase row i for kh = 2 (columns alike). So every tap is one phase
 * plane shifted by 0 or -1 row and column, and the phase planes in the
 * implicit layout (above, for an Ho x Wo map with padding 1) serve the
 * GEMM's B rows in place as they do for stride 1: no im2col buffer, one
 * strided gather per input value instead of nine. The weight gradient
 * takes the same rows against the padded output gradient. The input
 * gradient's phase (a, b) is a correlation of the padded output gradient,
 * shifted by 0 or +1, with the taps that land on that phase (1, 2, 2 and 4
 * of the 9): four GEMMs, each value of the input gradient written by one. */
static int conv_is_phase(const struct conv_geom *g)
{
    return g->stride == 2 && g->K == 3 && g->pad == 1 && g->H > 1 && g->W > 1 &&
           (conv2d_get_algos() & CONV_ALGO_PHASE) != 0;
}

/* The Ho x Wo map with padding 1 whose implicit layout holds the phases. */
static void phase_geom(struct conv_geom *gp, const struct conv_geom *g)
{
    *gp = *g;
    gp->H = g->Ho;
    gp->W = g->Wo;
    gp->stride = 1;
}

/* buf (4C, S) <- the phase planes of src (n, C, H, W) in the implicit
 * layout L of phase_geom: channel 4c + 2a + b holds src[c][2i + a][2j + b],
 * zero where that falls past the map. */
static void phase_pack(float *buf, const float *src, int n, int C,
                       const struct conv_geom *g, const struct implicit *L)
{
    const int H = g->H, W = g->W, Ho = g->Ho, Wp = L->Wp;
    const size_t HW = (size_t)H * W;
    for (int c = 0; c < C; c++)
        for (int ab = 0; ab < 4; ab++) {
            const int a = ab >> 1, b = ab & 1;
            /* columns q < nq read 2q + b < W */
            const int nq = (W - b + 1) / 2;
            float *d = buf + ((size_t)c * 4 + ab) * L->S;
            size_t top = L->G0 + (size_t)Wp;
            memset(d, 0, top * sizeof *d);
            d += top;
            for (int j = 0; j < n; j++) {
                const float *x = src + ((size_t)j * C + c) * HW;
                for (int i = 0; i < Ho; i++, d += Wp) {
                    const int r = 2 * i + a;
                    if (r >= H) {
                        memset(d, 0, (size_t)Wp * sizeof *d);
                        continue;
                    }
                    const float *s = x + (size_t)r * W + b;
                    for (int q = 0; q < nq; q++)
                        d[q] = s[2 * q];
                    for (int q = nq; q < Wp; q++)
                        d[q] = 0.0f;
                }
                memset(d, 0, (size_t)Wp * sizeof *d); /* the pad row */
                d += Wp;
            }
            const float *end = buf + ((size_t)c * 4 + ab + 1) * L->S;
            memset(d, 0, (size_t)(end - d) * sizeof *d);
        }
}

/* rows[(c*3 + kh)*3 + kw] <- the B row of tap (kh, kw) of channel c: its
 * phase plane, shifted up and left by one for kh, kw = 0. */
static void phase_rows(const float **rows, const float *buf, int C,
                       const struct implicit *L)
{
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
                const int ab = (kh != 1) * 2 + (kw != 1);
                const int dr = kh == 0 ? -1 : 0, dc = kw == 0 ? -1 : 0;
                rows[((size_t)c * 3 + kh) * 3 + kw] =
                    buf + ((size_t)c * 4 + ab) * L->S + L->G0 +
                    (size_t)(dr + 1) * L->Wp + dc;
            }
}

/* The taps of input-gradient phase a (rows; columns alike): kernel row kh
 * reading output-gradient row i' + di. Phase 0: kh 1; phase 1: kh 0 (one
 * row down) and kh 2. */
static int phase_taps(int a, int *kh, int *di)
{
    if (a == 0) {
        kh[0] = 1, di[0] = 0;
        return 1;
    }
    kh[0] = 0, di[0] = 1, kh[1] = 2, di[1] = 0;
    return 2;
}

/* Offset in floats of phase ph's weights in wt (phases 0..3 hold 1, 2, 2
 * and 4 taps of Cin x Cout). */
static size_t phase_wt_offset(int ph, const struct conv_geom *g)
{
    static const int before[4] = {0, 1, 3, 5};
    return (size_t)before[ph] * g->Cin * g->Cout;
}

/* wt <- per input-gradient phase ph, A_ph (Cin, taps * Cout) with
 * A_ph[c][t*Cout + co] = weight[co][c][kh_t][kw_t]. */
static void phase_weights(float *wt, const float *weight,
                          const struct conv_geom *g)
{
    const int Cin = g->Cin, Cout = g->Cout;
    for (int ph = 0; ph < 4; ph++) {
        int kh[2], di[2], kw[2], dj[2];
        const int nr = phase_taps(ph >> 1, kh, di);
        const int nc = phase_taps(ph & 1, kw, dj);
        const int K = nr * nc * Cout;
        float *A = wt + phase_wt_offset(ph, g);
        for (int c = 0; c < Cin; c++)
            for (int t = 0; t < nr * nc; t++)
                for (int co = 0; co < Cout; co++)
                    A[(size_t)c * K + (size_t)t * Cout + co] =
                        weight[(((size_t)co * Cin + c) * 3 + kh[t / nc]) * 3 +
                               kw[t % nc]];
    }
}

/* dx (n, C, H, W) at rows 2i + a, columns 2j + b (=, or += when
 * accumulate) <- the grid (C, ld) of input-gradient phase (a, b). */
static void phase_unpack(float *dx, const float *grid, size_t ld, int n, int C,
                         const struct conv_geom *g, const struct implicit *L,
                         int a, int b, int accumulate)
{
    const int H = g->H, W = g->W;
    const int ni = (H - a + 1) / 2, nq = (W - b + 1) / 2;
    for (int j = 0; j < n; j++)
        for (int c = 0; c < C; c++) {
            float *d = dx + ((size_t)j * C + c) * H * W + (size_t)a * W + b;
            const float *s = grid + (size_t)c * ld + (size_t)j * L->Hs * L->Wp;
            for (int i = 0; i < ni; i++, d += 2 * (size_t)W, s += L->Wp) {
                if (accumulate)
                    for (int q = 0; q < nq; q++)
                        d[2 * q] += s[q];
                else
                    for (int q = 0; q < nq; q++)
                        d[2 * q] = s[q];
            }
        }
}

/* A chunk of n images in the phase layout: gp and L (phase_geom and its
 * implicit layout), x's phase planes in col, their B rows in rows. */
static void phase_prepare(struct conv_geom *gp, struct implicit *L,
                          const float **rows, float *col, const float *x, int n,
                          const struct conv_geom *g)
{
    phase_geom(gp, g);
    implicit_layout(L, gp, n);
    phase_pack(col, x, n, g->Cin, g, L);
    phase_rows(rows, col, g->Cin, L);
}

static void phase_forward_chunk(float *y, const float *x, const float *weight,
                                const float *bias, const float *res,
                                const struct conv_geom *g, int n, float *col,
                                float *tmp, float *ptr, int relu)
{
    struct conv_geom gp;
    struct implicit L;
    const int ckk = g->Cin * 9;
    const float **rows = (const float **)(void *)ptr;
    phase_prepare(&gp, &L, rows, col, x, n, g);
    gemm_f32_rows(0, 0, g->Cout, (int)L.ncols, ckk, 1.0f, weight, ckk, rows,
                  0.0f, tmp, (int)L.ncols);
    implicit_unpad(y, tmp, L.ncols, n, g->Cout, &gp, &L, bias, res, relu, 0);
}

/* dw (Cout, Cin*9) += dout . rows(x)^T; dx (may be NULL) =/+= the four
 * phase correlations of dout with wt (phase_weights). */
static void phase_backward_chunk(float *dx, float *dw, const float *dy,
                                 const float *x, const float *wt,
                                 const struct conv_geom *g, int n, float *col,
                                 float *tmp, float *ptr, int accumulate)
{
    struct conv_geom gp;
    struct implicit L;
    const int Cin = g->Cin, Cout = g->Cout, ckk = Cin * 9;
    const float **xrows = (const float **)(void *)ptr;
    const float **dyrows = xrows + (size_t)ckk;
    phase_prepare(&gp, &L, xrows, col, x, n, g);
    float *dyp = tmp, *dxg = tmp + round16((size_t)Cout * L.S);
    implicit_pad(dyp, dy, n, Cout, &gp, &L);
    gemm_f32_rows(0, 1, Cout, ckk, (int)L.ncols, 1.0f,
                  dyp + L.G0 + (size_t)L.pd * L.Wp, (int)L.S, xrows, 1.0f, dw,
                  ckk);
    if (!dx) return;
    for (int ph = 0; ph < 4; ph++) {
        int kh[2], di[2], kw[2], dj[2];
        const int nr = phase_taps(ph >> 1, kh, di);
        const int nc = phase_taps(ph & 1, kw, dj);
        const int K = nr * nc * Cout;
        for (int t = 0; t < nr * nc; t++)
            for (int co = 0; co < Cout; co++)
                dyrows[(size_t)t * Cout + co] =
                    dyp + (size_t)co * L.S + L.G0 +
                    (size_t)(di[t / nc] + 1) * L.Wp + (size_t)dj[t % nc];
        gemm_f32_rows(0, 0, Cin, (int)L.ncols, K, 1.0f,
                      wt + phase_wt_offset(ph, g), K, dyrows, 0.0f, dxg,
                      (int)L.ncols);
        phase_unpack(dx, dxg, L.ncols, n, Cin, g, &L, ph >> 1, ph & 1,
                     accumulate);
    }
}

/* ---------------------------------------------------------------------------
 * Row-tap convolution for small maps (stride 1, "same" padding, odd K > 1;
 * ResNet's 7x7 stage, VGG's 7x7 and 3x3 stages at 28x28 input). On a small
 * map many taps fall into the padding: a 3x3 kernel on a 3x3 map touches
 * the input with only 60 % of its taps, on 7x7 with 82 %, and both the
 * explicit and the implicit im2col multiply the zeros too (the implicit
 * one also computes its padded grid's extra columns: 1.31x at 7x7). Here
 * a chunk of n images is transposed to (C, H, W + 2pd, n) — channels, rows,
 * zero-padded columns, images innermost — and every output row is one GEMM
 * over N = W*n columns (all images, all pixels of the row) whose K holds
 * only the kernel rows that land inside the map: the top and bottom
 * padding taps are skipped, not multiplied. The B row for tap (kh, kw),
 * channel c is the input row oh - pd + kh shifted by kw columns, read
 * through a table of row addresses (gemm_f32_rows); the weights are
 * rearranged to (Cout, K, K, Cin) so that the valid kernel rows are one
 * contiguous block of A's columns. The weight gradient takes the same rows
 * (transposed) against the packed output gradient; the input gradient is
 * the same convolution of the output gradient with the weights flipped and
 * transposed to (Cin, K, K, Cout). */
struct rowtap {
    int pd, Wq; /* padding; padded row length W + 2 pd */
    size_t S;   /* floats per channel of a packed chunk: H * Wq * n */
};

#ifndef CONV_ROWTAP_MAX_HW
#define CONV_ROWTAP_MAX_HW 64
#endif
#define CONV_ROWTAP_COLS 512
/* The algorithms conv2d_* may choose (CONV_ALGO_* bits); -1: not read from
 * the environment yet. */
static int conv_algos = -1;

int conv2d_get_algos(void)
{
    if (conv_algos < 0) {
        static const struct {
            const char *env;
            int bit;
        } algo[] = {{"ABC_CONV_ROWTAP", CONV_ALGO_ROWTAP},
                    {"ABC_CONV_WINOGRAD", CONV_ALGO_WINOGRAD},
                    {"ABC_CONV_WINO4", CONV_ALGO_WINO4},
                    {"ABC_CONV_PHASE", CONV_ALGO_PHASE}};
        int mask = 0;
        for (size_t i = 0; i < sizeof algo / sizeof algo[0]; i++) {
            const char *v = getenv(algo[i].env);
            if (!(v && strcmp(v, "0") == 0)) mask |= algo[i].bit;
        }
        conv_algos = mask;
    }
    return conv_algos;
}

void conv2d_set_algos(int mask)
{
    conv_algos = mask & CONV_ALGO_ALL;
}

static int conv_is_rowtap(const struct conv_geom *g)
{
    if (!(g->stride == 1 && g->K > 1 && g->K % 2 == 1 &&
          2 * g->pad == g->K - 1 && !conv_is_pointwise(g) &&
          (long)g->H * g->W <= CONV_ROWTAP_MAX_HW))
        return 0;
    return (conv2d_get_algos() & CONV_ALGO_ROWTAP) != 0;
}

static void rowtap_layout(struct rowtap *L, const struct conv_geom *g, int n)
{
    L->pd = g->pad;
    L->Wq = g->W + 2 * g->pad;
    L->S = (size_t)g->H * L->Wq * n;
}

/* buf (C, rows, cols, ns) <- src (n, C, H, W), images innermost: image j's
 * plane at row top, column left of lane j; the rest, and the lanes of
 * images n..ns-1, zero. Both images-innermost paths (row-tap, Winograd)
 * pack their chunks with it. */
static void lanes_pack(float *buf, const float *src, int n, int ns, int C,
                       const struct conv_geom *g, int top, int rows, int left,
                       int cols)
{
    const int H = g->H, W = g->W;
    const size_t HW = (size_t)H * W, rn = (size_t)cols * ns;
    for (int c = 0; c < C; c++)
        for (int r = 0; r < rows; r++) {
            float *d = buf + ((size_t)c * rows + r) * rn;
            const int ih = r - top;
            if (ih < 0 || ih >= H) {
                memset(d, 0, rn * sizeof *d);
                continue;
            }
            memset(d, 0, (size_t)left * ns * sizeof *d);
            memset(d + (size_t)(left + W) * ns, 0,
                   (size_t)(cols - left - W) * ns * sizeof *d);
            d += (size_t)left * ns;
            if (n < ns)
                for (int i = 0; i < W; i++)
                    memset(d + (size_t)i * ns + n, 0,
                           (size_t)(ns - n) * sizeof *d);
            for (int j0 = 0; j0 < n; j0 += 16) {
                const int w = n - j0 < 16 ? n - j0 : 16;
                const float *x[16];
                for (int j = 0; j < w; j++)
                    x[j] =
                        src + ((size_t)(j0 + j) * C + c) * HW + (size_t)ih * W;
                gemm_interleave(d + j0, ns, x, w, W);
            }
        }
}

/* buf (C, H, Wq, n) <- src (n, C, H, W) with zero padding columns. */
static void rowtap_pack(float *buf, const float *src, int n, int C,
                        const struct conv_geom *g, const struct rowtap *L)
{
    lanes_pack(buf, src, n, n, C, g, 0, g->H, L->pd, L->Wq);
}

/* rows[((r + pd) * K + kw) * C + c] <- the packed row r of channel c
 * shifted by kw columns (W * n floats), for the real rows r in [0, H):
 * output row oh's kernel row kh reads entry ((oh + kh) * K + kw) * C + c. */
static void rowtap_rows(const float **rows, const float *buf, int C, int n,
                        const struct conv_geom *g, const struct rowtap *L)
{
    const int K = g->K;
    for (int r = 0; r < g->H; r++)
        for (int kw = 0; kw < K; kw++)
            for (int c = 0; c < C; c++)
                rows[((size_t)(r + L->pd) * K + kw) * C + c] =
                    buf + (((size_t)c * g->H + r) * L->Wq + kw) * n;
}

/* The kernel rows [*kh0, *kh1] of output row oh that land inside the map. */
static void rowtap_krange(int *kh0, int *kh1, int oh, const struct conv_geom *g)
{
    *kh0 = oh < g->pad ? g->pad - oh : 0;
    *kh1 = oh + g->K - 1 - g->pad >= g->H ? g->H - 1 + g->pad - oh : g->K - 1;
}

/* y (M, H, W, n) = the convolution of the packed rows (Cin channels) with
 * wr (M, K, K, Cin). */
static void rowtap_gemm(float *y, const float *wr, const float **rows, int M,
                        int Cin, int n, const struct conv_geom *g)
{
    const int K = g->K, kc = K * Cin, N = g->W * n;
    for (int oh = 0; oh < g->H; oh++) {
        int kh0, kh1;
        rowtap_krange(&kh0, &kh1, oh, g);
        gemm_f32_rows(0, 0, M, N, (kh1 - kh0 + 1) * kc, 1.0f,
                      wr + (size_t)kh0 * kc, K * kc,
                      rows + (size_t)(oh + kh0) * kc, 0.0f, y + (size_t)oh * N,
                      g->H * N);
    }
}

/* y (n, C, H, W) =, or += when accumulate, the first n lanes of the
 * (C, H, W, ns) values of grid, plus bias and res (either may be NULL; res
 * laid out as y), then max(., 0) when relu: blocks of 16 images x 64
 * pixels deinterleaved (gemm_deinterleave), then conv_out_row on them. */
static void rowtap_unpack(float *y, const float *grid, int n, int ns, int C,
                          const struct conv_geom *g, const float *bias,
                          const float *res, int relu, int accumulate)
{
    enum { PB = 64 }; /* pixels per deinterleaved block */
    const int HW = g->H * g->W;
    _Alignas(64) float t[16 * PB]; /* row j: image j0 + j's pixels */
    for (int c = 0; c < C; c++) {
        const float bv = bias ? bias[c] : 0.0f;
        for (int j0 = 0; j0 < n; j0 += 16) {
            const int w = n - j0 < 16 ? n - j0 : 16;
            for (int p0 = 0; p0 < HW; p0 += PB) {
                const int pb = HW - p0 < PB ? HW - p0 : PB;
                gemm_deinterleave(t, PB, grid + ((size_t)c * HW + p0) * ns + j0,
                                  ns, w, pb);
                for (int j = 0; j < w; j++) {
                    const size_t off = ((size_t)(j0 + j) * C + c) * HW + p0;
                    conv_out_row(y + off, t + j * PB, res ? res + off : NULL,
                                 pb, bv, relu, accumulate);
                }
            }
        }
    }
}

/* wr (Cout, K, K, Cin) <- weight (Cout, Cin, K, K), or with flip the
 * input gradient's weights wr (Cin, K, K, Cout) <- weight[co][c][K-1-kh]
 * [K-1-kw]. */
static void rowtap_weights(float *wr, const float *weight,
                           const struct conv_geom *g, int flip)
{
    const int Cin = g->Cin, Cout = g->Cout, kk = g->K * g->K;
    if (!flip) {
        for (int co = 0; co < Cout; co++)
            for (int c = 0; c < Cin; c++)
                for (int t = 0; t < kk; t++)
                    wr[((size_t)co * kk + t) * Cin + c] =
                        weight[((size_t)co * Cin + c) * kk + t];
        return;
    }
    /* flipped: Cout is wr's fastest index, so blocks of 16 output channels
     * write runs of 16 floats (one at a time, the writes went Cout apart) */
    for (int c0 = 0; c0 < Cout; c0 += 16) {
        const int c1 = c0 + 16 < Cout ? c0 + 16 : Cout;
        for (int c = 0; c < Cin; c++)
            for (int t = 0; t < kk; t++) {
                float *d = wr + ((size_t)c * kk + (kk - 1 - t)) * Cout;
                for (int co = c0; co < c1; co++)
                    d[co] = weight[((size_t)co * Cin + c) * kk + t];
            }
    }
}

/* Forward of a chunk of n images x -> y with the rearranged weights wr. */
static void rowtap_forward_chunk(float *y, const float *x, const float *wr,
                                 const float *bias, const float *res,
                                 const struct conv_geom *g, int n, float *col,
                                 float *tmp, float *ptr, int relu)
{
    struct rowtap L;
    rowtap_layout(&L, g, n);
    const float **rows = (const float **)(void *)ptr;
    rowtap_pack(col, x, n, g->Cin, g, &L);
    rowtap_rows(rows, col, g->Cin, n, g, &L);
    rowtap_gemm(tmp, wr, rows, g->Cout, g->Cin, n, g);
    rowtap_unpack(y, tmp, n, n, g->Cout, g, bias, res, relu, 0);
}

/* Backward of a chunk: dwr (Cout, K, K, Cin) += dout . rows(x)^T; dx (may
 * be NULL) =/+= the convolution of dout with the flipped weights wf. */
static void rowtap_backward_chunk(float *dx, float *dwr, const float *dy,
                                  const float *x, const float *wf,
                                  const struct conv_geom *g, int n, float *col,
                                  float *tmp, float *ptr, int accumulate)
{
    struct rowtap L;
    rowtap_layout(&L, g, n);
    const int Cin = g->Cin, Cout = g->Cout, K = g->K, kc = K * Cin;
    const int cmax = Cin > Cout ? Cin : Cout;
    const float **xrows = (const float **)(void *)ptr;
    const float **dyrows = xrows + (size_t)(g->H + 2 * L.pd) * K * cmax;
    float *dyp = tmp, *dxg = tmp + round16((size_t)Cout * L.S);
    rowtap_pack(col, x, n, Cin, g, &L);
    rowtap_rows(xrows, col, Cin, n, g, &L);
    rowtap_pack(dyp, dy, n, Cout, g, &L);
    for (int oh = 0; oh < g->H; oh++) {
        int kh0, kh1;
        rowtap_krange(&kh0, &kh1, oh, g);
        gemm_f32_rows(0, 1, Cout, (kh1 - kh0 + 1) * kc, g->W * n, 1.0f,
                      dyp + ((size_t)oh * L.Wq + L.pd) * n, (int)L.S,
                      xrows + (size_t)(oh + kh0) * kc, 1.0f,
                      dwr + (size_t)kh0 * kc, K * kc);
    }
    if (!dx) return;
    rowtap_rows(dyrows, dyp, Cout, n, g, &L);
    rowtap_gemm(dxg, wf, dyrows, Cin, Cout, n, g);
    rowtap_unpack(dx, dxg, n, n, Cin, g, NULL, NULL, 0, accumulate);
}

/* ---------------------------------------------------------------------------
 * Winograd F(m x m, 3x3), m = 2 or 4, for stride-1 3x3 convolutions with
 * padding 1, in the same images-innermost layout as the row-tap path, so
 * that every transform is a loop over the chunk's images, vectorised
 * across them. A chunk's input is packed to (C, Hp, Wp, n), its plane at
 * offset (1, 1) of a zero plane of m th + 2 by m tw + 2 (th x tw tiles of
 * m x m outputs). Each a x a input tile d (a = m + 2) becomes V = B^T d B,
 * each weight g becomes U = G g G^T, and the E = a^2 elements e of the
 * tiles multiply as E GEMMs M_e (Cout, T n) = U_e (Cout, Cin) . V_e (Cin,
 * T n); a tile's output is A^T m A. That is 16 multiplies per 4 outputs
 * (F2) or 36 per 16 (F4) instead of 9 per output. The input gradient is
 * the same convolution of the output gradient with the flipped,
 * transposed weights; the weight gradient is G^T dU G with dU_e = sum over
 * tiles of (A dy A^T)_e V_e^T, the transpose of the forward map. Matrices
 * (Lavin & Gray 2016), F(2x2, 3x3):
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *   A^T = [1 1 1 0; 0 1 -1 -1]
 * F(4x4, 3x3), interpolation points 0, 1, -1, 2, -2 and infinity:
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0;
 *          0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6;
 *          1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * F4 rounds more (its points reach 2 and 8), within the tolerance the
 * twins' tests hold every path to. */
struct wino {
    int m, a, E;   /* tile: m x m outputs from a = m + 2 square inputs, E = a a
                      elements (2, 4, 16 or 4, 6, 36) */
    int th, tw, T; /* tiles down, across, in all */
    int Hp, Wp;    /* the padded plane: m th + 2 by m tw + 2 */
    size_t P;      /* floats per channel of a packed chunk: Hp Wp WINO_NW */
};

/* Lanes: a chunk of at most this many images is transformed at once (the
 * lanes of missing images are zero). */
#define WINO_NW 16

/* Elements of F(m x m, 3x3)'s (m + 2) x (m + 2) tiles. */
static int wino_elems(int m)
{
    return (m + 2) * (m + 2);
}

static void wino_layout(struct wino *L, const struct conv_geom *g, int m)
{
    L->m = m;
    L->a = m + 2;
    L->E = wino_elems(m);
    L->th = (g->H + m - 1) / m;
    L->tw = (g->W + m - 1) / m;
    L->T = L->th * L->tw;
    L->Hp = m * L->th + 2;
    L->Wp = m * L->tw + 2;
    L->P = (size_t)L->Hp * L->Wp * WINO_NW;
}

/* Where Winograd won by measurement (bench/bench_conv, 2-vCPU AMD EPYC,
 * 2026-12-03, batch 128, 1 thread, forward and backward against the best
 * other path). F(2x2): 14x14 maps with 64-128 channels 0.60-0.82x the
 * time, 7x7 maps with 128 or more channels 0.90-1.0x; it lost on 28x28
 * maps (64 channels: 1.05x), at 16-32 channels (1.6-3.2x: the transforms
 * cost as much as the multiplies they save) and tied at 7x7 with 64.
 * F(4x4) (with the GEMM's narrow ragged-panel kernels) beat F(2x2)
 * wherever F(2x2) won, and the other paths on wider ground: 64->64 at
 * 28x28 0.73x forward / 0.72x backward, 64 at 14x14 0.70x / 0.84x, 48 at
 * 14x14 0.72x / 0.75x, 256 at 7x7 0.61x / 0.68x of row-tap, 64 at 7x7
 * 0.74x / 0.76x, 48 at 7x7 0.72x / 0.67x, 24-32 at 7x7 0.78-0.94x /
 * 0.82-0.87x. It lost at 16 channels (7x7 1.3x, 28x28 1.05x / 1.2x), with
 * one side 8 wide (7x7 1.2-1.5x) and on 3x3 maps (512: forward a tie
 * once the weight transforms were vectorised, backward 1.2-1.4x: one tile
 * per image leaves the weight gradient's GEMMs a depth of 16); 32 at
 * 14x14 was a tie. */
#define CONV_WINO_MIN_C 64     /* F2: both widths at least */
#define CONV_WINO_WIDE_C 128   /* F2: one of them at least */
#define CONV_WINO_MIN_HW 17    /* 5x5 and up: row-tap below */
#define CONV_WINO_MAX_HW 256   /* F2: up to 16x16 */
#define CONV_WINO4_MIN_C 24    /* F4: both widths at least */
#define CONV_WINO4_WIDE_C 48   /* F4, maps over 8x8: both widths at least */
#define CONV_WINO4_SMALL_HW 64 /* up to 8x8 */
#define CONV_WINO4_MAX_HW 784  /* F4: up to 28x28 */
#ifndef CONV_WINO4_MIN_HW
#define CONV_WINO4_MIN_HW 17 /* F4: 5x5 and up */
#endif
#ifndef CONV_WINO_BLOCK_TILES
#define CONV_WINO_BLOCK_TILES 12 /* GEMMs of 12 WINO_NW columns */
#endif
#ifndef CONV_WINO4_BLOCK_TILES
#define CONV_WINO4_BLOCK_TILES 6 /* 6 WINO_NW columns: two full panels */
#endif

/* m of the Winograd F(m x m, 3x3) conv2d_* run for g, or 0. */
static int conv_is_wino(const struct conv_geom *g)
{
    const long hw = (long)g->H * g->W;
    const int algos = conv2d_get_algos();
    if (!(g->K == 3 && g->stride == 1 && g->pad == 1 &&
          (algos & CONV_ALGO_WINOGRAD)))
        return 0;
    const int cmin = g->Cin < g->Cout ? g->Cin : g->Cout;
    if ((algos & CONV_ALGO_WINO4) && hw >= CONV_WINO4_MIN_HW &&
        hw <= CONV_WINO4_MAX_HW && cmin >= CONV_WINO4_MIN_C &&
        (hw <= CONV_WINO4_SMALL_HW || cmin >= CONV_WINO4_WIDE_C))
        return 4;
    return hw >= CONV_WINO_MIN_HW && hw <= CONV_WINO_MAX_HW &&
                   cmin >= CONV_WINO_MIN_C &&
                   (g->Cin >= CONV_WINO_WIDE_C || g->Cout >= CONV_WINO_WIDE_C)
               ? 2
               : 0;
}

/* buf (C, Hp, Wp, WINO_NW) <- src (n, C, H, W) at offset (1, 1), zeros
 * around and in the lanes of images n..WINO_NW-1. */
static void wino_pack(float *buf, const float *src, int n, int C,
                      const struct conv_geom *g, const struct wino *L)
{
    lanes_pack(buf, src, n, WINO_NW, C, g, 1, L->Hp, 1, L->Wp);
}

/* The transforms work on WINO_NW images at once: every value below is a
 * vector of WINO_NW lanes, at a constant stride of WINO_NW floats within a
 * tile row, so the loops are fixed-length and vectorise fully. */

/* Row r of V = B^T d B for one tile: t = d[a] + s d[b] (B^T's row r picks
 * rows a and b with sign s), then v[r][q] = (t B)[q] at o + q es. */
static inline void wino_in_row(float *restrict o, size_t es,
                               const float *restrict pa,
                               const float *restrict pb, float s)
{
#pragma omp simd
    for (int j = 0; j < WINO_NW; j++) {
        float t0 = pa[j] + s * pb[j];
        float t1 = pa[WINO_NW + j] + s * pb[WINO_NW + j];
        float t2 = pa[2 * WINO_NW + j] + s * pb[2 * WINO_NW + j];
        float t3 = pa[3 * WINO_NW + j] + s * pb[3 * WINO_NW + j];
        o[j] = t0 - t2;
        o[es + j] = t1 + t2;
        o[2 * es + j] = t2 - t1;
        o[3 * es + j] = t1 - t3;
    }
}

/* F4's transforms of one line of a tile, WINO_NW lanes per value: o[k os]
 * (k < 6) <- B^T of the 6 values at d + i ds; o[k os] (k < 4) <- A^T of
 * the 6 values at p + i ps; o[k os] (k < 6) <- A of the 4 values at
 * y + i ys. */
static inline void wino4_bt(float *restrict o, size_t os,
                            const float *restrict d, size_t ds)
{
#pragma omp simd
    for (int j = 0; j < WINO_NW; j++) {
        const float d0 = d[j], d1 = d[ds + j], d2 = d[2 * ds + j],
                    d3 = d[3 * ds + j], d4 = d[4 * ds + j], d5 = d[5 * ds + j];
        o[j] = 4.0f * d0 - 5.0f * d2 + d4;
        o[os + j] = (d3 + d4) - 4.0f * (d1 + d2);
        o[2 * os + j] = (d4 - d3) + 4.0f * (d1 - d2);
        o[3 * os + j] = (d4 - d2) + 2.0f * (d3 - d1);
        o[4 * os + j] = (d4 - d2) - 2.0f * (d3 - d1);
        o[5 * os + j] = 4.0f * d1 - 5.0f * d3 + d5;
    }
}

static inline void wino4_at(float *restrict o, size_t os,
                            const float *restrict p, size_t ps)
{
#pragma omp simd
    for (int j = 0; j < WINO_NW; j++) {
        const float m0 = p[j], m1 = p[ps + j], m2 = p[2 * ps + j],
                    m3 = p[3 * ps + j], m4 = p[4 * ps + j], m5 = p[5 * ps + j];
        const float s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
        o[j] = m0 + s12 + s34;
        o[os + j] = d12 + 2.0f * d34;
        o[2 * os + j] = s12 + 4.0f * s34;
        o[3 * os + j] = d12 + 8.0f * d34 + m5;
    }
}

static inline void wino4_a(float *restrict o, size_t os,
                           const float *restrict y, size_t ys)
{
#pragma omp simd
    for (int j = 0; j < WINO_NW; j++) {
        const float y0 = y[j], y1 = y[ys + j], y2 = y[2 * ys + j],
                    y3 = y[3 * ys + j];
        const float e = y0 + y2, f = y1 + y3, g = y0 + 4.0f * y2,
                    h = 2.0f * (y1 + 4.0f * y3);
        o[j] = y0;
        o[os + j] = e + f;
        o[2 * os + j] = e - f;
        o[3 * os + j] = g + h;
        o[4 * os + j] = g - h;
        o[5 * os + j] = y3;
    }
}

/* V (36, C, nt, WINO_NW) <- B^T d B of F4's 6x6 tiles [t0, t0 + nt). */
static void wino4_input(float *restrict V, const float *buf, int C, int t0,
                        int nt, const struct wino *L)
{
    const size_t es = (size_t)C * nt * WINO_NW, rn = (size_t)L->Wp * WINO_NW;
    for (int c = 0; c < C; c++)
        for (int k = 0; k < nt; k++) {
            const int ty = (t0 + k) / L->tw, tx = (t0 + k) % L->tw;
            const float *b = buf + ((size_t)c * L->Hp + 4 * ty) * rn +
                             (size_t)4 * tx * WINO_NW;
            float *v = V + ((size_t)c * nt + k) * WINO_NW;
            float t[6][6][WINO_NW]; /* B^T d */
            for (int q = 0; q < 6; q++)
                wino4_bt(&t[0][q][0], 6 * WINO_NW, b + (size_t)q * WINO_NW, rn);
            for (int r = 0; r < 6; r++)
                wino4_bt(v + (size_t)6 * r * es, es, &t[r][0][0], WINO_NW);
        }
}

/* V (E, C, nt, WINO_NW) <- B^T d B of the tiles [t0, t0 + nt) of buf. */
static void wino_input(float *restrict V, const float *buf, int C, int t0,
                       int nt, const struct wino *L)
{
    if (L->m == 4) {
        wino4_input(V, buf, C, t0, nt, L);
        return;
    }
    const size_t es = (size_t)C * nt * WINO_NW, rn = (size_t)L->Wp * WINO_NW;
    for (int c = 0; c < C; c++)
        for (int k = 0; k < nt; k++) {
            const int ty = (t0 + k) / L->tw, tx = (t0 + k) % L->tw;
            const float *b = buf + ((size_t)c * L->Hp + 2 * ty) * rn +
                             (size_t)2 * tx * WINO_NW;
            float *v = V + ((size_t)c * nt + k) * WINO_NW;
            /* B^T rows: d0 - d2, d1 + d2, d2 - d1, d1 - d3 */
            wino_in_row(v, es, b, b + 2 * rn, -1.0f);
            wino_in_row(v + 4 * es, es, b + rn, b + 2 * rn, 1.0f);
            wino_in_row(v + 8 * es, es, b + 2 * rn, b + rn, -1.0f);
            wino_in_row(v + 12 * es, es, b + rn, b + 3 * rn, -1.0f);
        }
}

/* wino_output for F4. */
static void wino4_output(float *restrict out, const float *M, int C, int t0,
                         int nt, const struct conv_geom *g,
                         const struct wino *L)
{
    const size_t es = (size_t)C * nt * WINO_NW, rs = (size_t)g->W * WINO_NW;
    const int H = g->H, W = g->W;
    for (int c = 0; c < C; c++)
        for (int k = 0; k < nt; k++) {
            const int ty = (t0 + k) / L->tw, tx = (t0 + k) % L->tw;
            const float *m = M + ((size_t)c * nt + k) * WINO_NW;
            float u[6][4][WINO_NW], y[4][4][WINO_NW]; /* m A; A^T m A */
            for (int r = 0; r < 6; r++)
                wino4_at(&u[r][0][0], WINO_NW, m + (size_t)6 * r * es, es);
            const int oh = 4 * ty, ow = 4 * tx;
            const int rows = H - oh < 4 ? H - oh : 4,
                      cols = W - ow < 4 ? W - ow : 4;
            float *o = out + (((size_t)c * H + oh) * W + ow) * WINO_NW;
            if (rows == 4 && cols == 4) {
                for (int q = 0; q < 4; q++)
                    wino4_at(o + (size_t)q * WINO_NW, rs, &u[0][q][0],
                             4 * WINO_NW);
                continue;
            }
            for (int q = 0; q < 4; q++)
                wino4_at(&y[0][q][0], 4 * WINO_NW, &u[0][q][0], 4 * WINO_NW);
            for (int i = 0; i < rows; i++)
                memcpy(o + i * rs, &y[i][0][0],
                       (size_t)cols * WINO_NW * sizeof(float));
        }
}

/* out (C, H, W, WINO_NW) <- A^T m A of the tiles [t0, t0 + nt), whose
 * transformed values M holds (E, C, nt, WINO_NW); outputs past the map's
 * edge are dropped. */
static void wino_output(float *restrict out, const float *M, int C, int t0,
                        int nt, const struct conv_geom *g, const struct wino *L)
{
    if (L->m == 4) {
        wino4_output(out, M, C, t0, nt, g, L);
        return;
    }
    const size_t es = (size_t)C * nt * WINO_NW;
    const int H = g->H, W = g->W;
    for (int c = 0; c < C; c++)
        for (int k = 0; k < nt; k++) {
            const int ty = (t0 + k) / L->tw, tx = (t0 + k) % L->tw;
            const float *m = M + ((size_t)c * nt + k) * WINO_NW;
            float u[4][2][WINO_NW]; /* m A, row by row */
            for (int r = 0; r < 4; r++) {
                const float *p = m + (size_t)4 * r * es;
#pragma omp simd
                for (int j = 0; j < WINO_NW; j++) {
                    u[r][0][j] = p[j] + p[es + j] + p[2 * es + j];
                    u[r][1][j] = p[es + j] - p[2 * es + j] - p[3 * es + j];
                }
            }
            const int oh = 2 * ty, ow = 2 * tx;
            const int rows = oh + 1 < H ? 2 : 1, cols = ow + 1 < W ? 2 : 1;
            float *o = out + (((size_t)c * H + oh) * W + ow) * WINO_NW;
            for (int q = 0; q < cols; q++) {
                float *o0 = o + (size_t)q * WINO_NW;
#pragma omp simd
                for (int j = 0; j < WINO_NW; j++)
                    o0[j] = u[0][q][j] + u[1][q][j] + u[2][q][j];
                if (rows < 2) continue;
                float *o1 = o0 + (size_t)W * WINO_NW;
#pragma omp simd
                for (int j = 0; j < WINO_NW; j++)
                    o1[j] = u[1][q][j] - u[2][q][j] - u[3][q][j];
            }
        }
}

/* D (E, C, nt, WINO_NW) <- A dy A^T of the m x m tiles [t0, t0 + nt) of
 * the packed output gradient dyp (C, Hp, Wp, WINO_NW; zero past the map's
 * edge). */
static void wino_grad_output(float *restrict D, const float *dyp, int C, int t0,
                             int nt, const struct wino *L)
{
    const size_t es = (size_t)C * nt * WINO_NW, rn = (size_t)L->Wp * WINO_NW;
    if (L->m == 4) {
        for (int c = 0; c < C; c++)
            for (int k = 0; k < nt; k++) {
                const int ty = (t0 + k) / L->tw, tx = (t0 + k) % L->tw;
                const float *b = dyp + ((size_t)c * L->Hp + 4 * ty + 1) * rn +
                                 (size_t)(4 * tx + 1) * WINO_NW;
                float *v = D + ((size_t)c * nt + k) * WINO_NW;
                float t[6][4][WINO_NW]; /* A dy */
                for (int q = 0; q < 4; q++)
                    wino4_a(&t[0][q][0], 4 * WINO_NW, b + (size_t)q * WINO_NW,
                            rn);
                for (int r = 0; r < 6; r++)
                    wino4_a(v + (size_t)6 * r * es, es, &t[r][0][0], WINO_NW);
            }
        return;
    }
    for (int c = 0; c < C; c++)
        for (int k = 0; k < nt; k++) {
            const int ty = (t0 + k) / L->tw, tx = (t0 + k) % L->tw;
            const float *b = dyp + ((size_t)c * L->Hp + 2 * ty + 1) * rn +
                             (size_t)(2 * tx + 1) * WINO_NW;
            float *v = D + ((size_t)c * nt + k) * WINO_NW;
            /* A's rows: y0, y0 + y1, y0 - y1, -y1 */
            static const float ca[4] = {1, 1, 1, 0}, cb[4] = {0, 1, -1, -1};
            for (int r = 0; r < 4; r++) {
                float *o = v + (size_t)4 * r * es;
                const float a = ca[r], bb = cb[r];
#pragma omp simd
                for (int j = 0; j < WINO_NW; j++) {
                    float t0v = a * b[j] + bb * b[rn + j];
                    float t1v = a * b[WINO_NW + j] + bb * b[rn + WINO_NW + j];
                    o[j] = t0v;
                    o[es + j] = t0v + t1v;
                    o[2 * es + j] = t0v - t1v;
                    o[3 * es + j] = -t1v;
                }
            }
        }
}

/* The weight-side transforms run on WINO_WB weight pairs (Cout x Cin
 * kernels) at once, vectorised across them. */
#define WINO_WB 64

/* G applied to the 3 values at k + i ks of each of n pairs (j < n at
 * k[j]), into o[r os + j] (r < 4 for F2, r < 6 for F4). */
static inline void wino2_gv(float *restrict o, size_t os,
                            const float *restrict k, size_t ks, int n)
{
#pragma omp simd
    for (int j = 0; j < n; j++) {
        const float k0 = k[j], k1 = k[ks + j], k2 = k[2 * ks + j];
        o[j] = k0;
        o[os + j] = 0.5f * (k0 + k1 + k2);
        o[2 * os + j] = 0.5f * (k0 - k1 + k2);
        o[3 * os + j] = k2;
    }
}

static inline void wino4_gv(float *restrict o, size_t os,
                            const float *restrict k, size_t ks, int n)
{
#pragma omp simd
    for (int j = 0; j < n; j++) {
        const float k0 = k[j], k1 = k[ks + j], k2 = k[2 * ks + j];
        o[j] = 0.25f * k0;
        o[os + j] = -(k0 + k1 + k2) / 6.0f;
        o[2 * os + j] = -(k0 - k1 + k2) / 6.0f;
        o[3 * os + j] = k0 / 24.0f + k1 / 12.0f + k2 / 6.0f;
        o[4 * os + j] = k0 / 24.0f - k1 / 12.0f + k2 / 6.0f;
        o[5 * os + j] = k2;
    }
}

/* G^T applied to the a = m + 2 values at u + i us of each of n pairs, into
 * o[r os + j] (r < 3). */
static inline void wino2_gtv(float *restrict o, size_t os,
                             const float *restrict u, size_t us, int n)
{
#pragma omp simd
    for (int j = 0; j < n; j++) {
        const float u0 = u[j], u1 = u[us + j], u2 = u[2 * us + j],
                    u3 = u[3 * us + j];
        o[j] = u0 + 0.5f * (u1 + u2);
        o[os + j] = 0.5f * (u1 - u2);
        o[2 * os + j] = 0.5f * (u1 + u2) + u3;
    }
}

static inline void wino4_gtv(float *restrict o, size_t os,
                             const float *restrict u, size_t us, int n)
{
#pragma omp simd
    for (int j = 0; j < n; j++) {
        const float u0 = u[j], u1 = u[us + j], u2 = u[2 * us + j],
                    u3 = u[3 * us + j], u4 = u[4 * us + j], u5 = u[5 * us + j];
        o[j] = 0.25f * u0 - (u1 + u2) / 6.0f + (u3 + u4) / 24.0f;
        o[os + j] = (u2 - u1) / 6.0f + (u3 - u4) / 12.0f;
        o[2 * os + j] = (u3 + u4 - u1 - u2) / 6.0f + u5;
    }
}

/* U (E, R, S) <- G g G^T of weight (Cout, Cin, 3, 3): R = Cout, S = Cin;
 * with flip, R = Cin, S = Cout and g the kernel flipped in space (the
 * input gradient's convolution). Pairs in U's order, WINO_WB at a time:
 * their 9 taps gathered into rows, then both passes of G vectorised. The
 * blocks are shared by the threads of an enclosing parallel region. */
static void wino_weights(float *U, const float *weight,
                         const struct conv_geom *g, int m, int flip)
{
    const int Cin = g->Cin, Cout = g->Cout, a = m + 2;
    const size_t es = (size_t)Cin * Cout, n2 = (size_t)(flip ? Cout : Cin);
    const long nblk = (long)((es + WINO_WB - 1) / WINO_WB);
    float k[9][WINO_WB], t[6][3][WINO_WB];
    /* the blocks over the threads of an enclosing parallel region */
#pragma omp for schedule(static)
    for (long ib = 0; ib < nblk; ib++) {
        const size_t i0 = (size_t)ib * WINO_WB;
        const int nb = es - i0 < WINO_WB ? (int)(es - i0) : WINO_WB;
        size_t hi = i0 / n2, lo = i0 % n2; /* U's row and column of i0 */
        for (int j = 0; j < nb; j++) {
            const size_t co = flip ? lo : hi, c = flip ? hi : lo;
            const float *w = weight + (co * Cin + c) * 9;
            for (int r = 0; r < 9; r++)
                k[r][j] = flip ? w[8 - r] : w[r];
            if (++lo == n2) lo = 0, hi++;
        }
        /* t = G k, column q of the kernel at a time; then U's rows */
        for (int q = 0; q < 3; q++) {
            if (m == 4)
                wino4_gv(&t[0][q][0], 3 * WINO_WB, k[q], 3 * WINO_WB, nb);
            else
                wino2_gv(&t[0][q][0], 3 * WINO_WB, k[q], 3 * WINO_WB, nb);
        }
        for (int r = 0; r < a; r++) {
            float *u = U + (size_t)a * r * es + i0;
            if (m == 4)
                wino4_gv(u, es, &t[r][0][0], WINO_WB, nb);
            else
                wino2_gv(u, es, &t[r][0][0], WINO_WB, nb);
        }
    }
}

/* dweight (Cout, Cin, 3, 3) += G^T dU G of dU (E, Cout, Cin), WINO_WB
 * pairs at a time; called by every thread of a parallel region, which
 * share the blocks (or outside one, by one thread). */
static void wino_weight_grad(float *dweight, const float *dU,
                             const struct conv_geom *g, int m)
{
    const size_t es = (size_t)g->Cout * g->Cin;
    const int a = m + 2;
    const long nblk = (long)((es + WINO_WB - 1) / WINO_WB);
    float h[3][6][WINO_WB], d[9][WINO_WB];
    /* the blocks over the threads of an enclosing parallel region */
#pragma omp for schedule(static)
    for (long ib = 0; ib < nblk; ib++) {
        const size_t i0 = (size_t)ib * WINO_WB;
        const int nb = es - i0 < WINO_WB ? (int)(es - i0) : WINO_WB;
        /* h = G^T dU, column q at a time; then d = h G */
        for (int q = 0; q < a; q++) {
            const float *u = dU + (size_t)q * es + i0;
            if (m == 4)
                wino4_gtv(&h[0][q][0], 6 * WINO_WB, u, 6 * es, nb);
            else
                wino2_gtv(&h[0][q][0], 6 * WINO_WB, u, 4 * es, nb);
        }
        for (int r = 0; r < 3; r++) {
            if (m == 4)
                wino4_gtv(d[3 * r], WINO_WB, &h[r][0][0], WINO_WB, nb);
            else
                wino2_gtv(d[3 * r], WINO_WB, &h[r][0][0], WINO_WB, nb);
        }
        for (int j = 0; j < nb; j++) {
            float *dw = dweight + (i0 + j) * 9;
            for (int r = 0; r < 9; r++)
                dw[r] += d[r][j];
        }
    }
}

/* Tiles per block: the transformed tiles of a block (16 x channels x nt x
 * WINO_NW) stay in cache between the transforms and the GEMMs. */
static int wino_block(const struct wino *L)
{
    const int bt = L->m == 4 ? CONV_WINO4_BLOCK_TILES : CONV_WINO_BLOCK_TILES;
    return L->T < bt ? L->T : bt;
}

/* The transformed weights U (E, R, S), then each U_e packed for the GEMM
 * (wino_upack floats apart): the GEMMs of every chunk and tile block read
 * them without packing again. */
static size_t wino_upack(int R, int S)
{
    return round16(gemm_packed_a_floats(R, S));
}

static void wino_weights_packed(float *U, const float *weight,
                                const struct conv_geom *g, int m, int flip)
{
    const int R = flip ? g->Cin : g->Cout, S = flip ? g->Cout : g->Cin;
    const int E = wino_elems(m);
    float *Up = U + round16((size_t)E * R * S);
    /* both steps over the threads (the 512-channel layers' transforms were
     * a serial 2-4 % of a VGG-16 step on 2 threads) */
#pragma omp parallel if ((size_t)E * R * S >= PAR_MIN_ELEMS)
    {
        wino_weights(U, weight, g, m, flip);
#pragma omp for schedule(static)
        for (int e = 0; e < E; e++)
            gemm_pack_a_whole(Up + (size_t)e * wino_upack(R, S), 0, R, S,
                              U + (size_t)e * R * S, S);
    }
}

/* Floats of wino_weights_packed's output, for either direction. */
static size_t wino_weight_floats(const struct conv_geom *g, int m)
{
    const size_t E = (size_t)wino_elems(m);
    const size_t a = wino_upack(g->Cout, g->Cin),
                 b = wino_upack(g->Cin, g->Cout);
    return round16(E * g->Cout * g->Cin) + E * (a > b ? a : b);
}

/* out grid (R, H, W, WINO_NW) <- the convolution of the packed buf (S
 * channels) with the transformed weights U (E, R, S) and their packed
 * copies (wino_weights_packed); V and M are scratch of E max(R, S)
 * wino_block WINO_NW floats each. */
static void wino_conv(float *out, const float *buf, const float *U, int R,
                      int S, const struct conv_geom *g, const struct wino *L,
                      float *V, float *M)
{
    const float *Up = U + round16((size_t)L->E * R * S);
    const int bt = wino_block(L);
    for (int t0 = 0; t0 < L->T; t0 += bt) {
        const int nt = L->T - t0 < bt ? L->T - t0 : bt, N = nt * WINO_NW;
        wino_input(V, buf, S, t0, nt, L);
        for (int e = 0; e < L->E; e++)
            gemm_f32_pa(0, R, N, S, 1.0f, U + (size_t)e * R * S, S,
                        Up + (size_t)e * wino_upack(R, S),
                        V + (size_t)e * S * N, N, 0.0f, M + (size_t)e * R * N,
                        N);
        wino_output(out, M, R, t0, nt, g, L);
    }
}

/* Floats of one V or M block. */
static size_t wino_blk(const struct conv_geom *g, const struct wino *L)
{
    const size_t cmax = g->Cin > g->Cout ? (size_t)g->Cin : (size_t)g->Cout;
    return round16((size_t)L->E * cmax * (size_t)wino_block(L) * WINO_NW);
}

/* Buffers of one thread: packed input (col), then in tmp: V, M (wino_blk
 * each), the (cmax, H, W, WINO_NW) output grid and the packed dout. */
static void wino_forward_chunk(float *y, const float *x, const float *U,
                               const float *bias, const float *res,
                               const struct conv_geom *g, int m, int n,
                               float *col, float *tmp, int relu)
{
    struct wino L;
    wino_layout(&L, g, m);
    float *V = tmp, *M = V + wino_blk(g, &L), *grid = M + wino_blk(g, &L);
    wino_pack(col, x, n, g->Cin, g, &L);
    wino_conv(grid, col, U, g->Cout, g->Cin, g, &L, V, M);
    rowtap_unpack(y, grid, n, WINO_NW, g->Cout, g, bias, res, relu, 0);
}

/* dU (E, Cout, Cin) += the chunk's transformed weight gradient; dx (may
 * be NULL) =/+= the convolution of dout with Uf (E, Cin, Cout). */
static void wino_backward_chunk(float *dx, float *dU, const float *dy,
                                const float *x, const float *Uf,
                                const struct conv_geom *g, int m, int n,
                                float *col, float *tmp, int accumulate)
{
    struct wino L;
    wino_layout(&L, g, m);
    const int Cin = g->Cin, Cout = g->Cout, bt = wino_block(&L);
    const size_t cmax = Cin > Cout ? (size_t)Cin : (size_t)Cout;
    float *V = tmp, *M = V + wino_blk(g, &L), *grid = M + wino_blk(g, &L);
    float *dyp = grid + round16(cmax * g->H * g->W * WINO_NW);
    wino_pack(col, x, n, Cin, g, &L);
    wino_pack(dyp, dy, n, Cout, g, &L);
    for (int t0 = 0; t0 < L.T; t0 += bt) {
        const int nt = L.T - t0 < bt ? L.T - t0 : bt, N = nt * WINO_NW;
        wino_input(V, col, Cin, t0, nt, &L);
        wino_grad_output(M, dyp, Cout, t0, nt, &L);
        for (int e = 0; e < L.E; e++)
            gemm_f32(0, 1, Cout, Cin, N, 1.0f, M + (size_t)e * Cout * N, N,
                     V + (size_t)e * Cin * N, N, 1.0f,
                     dU + (size_t)e * Cout * Cin, Cin);
    }
    if (!dx) return;
    wino_conv(grid, dyp, Uf, Cin, Cout, g, &L, V, M);
    rowtap_unpack(dx, grid, n, WINO_NW, Cin, g, NULL, NULL, 0, accumulate);
}

/* The plan is a pure function of the geometry and the thread count. The
 * per-thread buffer sizes depend on the geometry only (balancing chunks over
 * threads only shrinks them), so a workspace sized for nthreads also serves
 * any smaller team. */
static void conv_plan_make(struct conv_plan *p, const struct conv_geom *g,
                           int nthreads)
{
    size_t P = (size_t)g->Ho * g->Wo;
    size_t ckk = (size_t)g->Cin * g->K * g->K;
    if (nthreads < 1) nthreads = 1;
    /* one image per chunk when its plane alone is half the target width:
     * the GEMM then writes the output in place (no reshuffle) */
    size_t nb = 2 * P >= CONV_MIN_COLS ? 1 : (CONV_MIN_COLS + P - 1) / P;
    size_t nb_cap = CONV_MAX_COL_FLOATS / (ckk * P);
    if (nb > nb_cap) nb = nb_cap;
    if (nb < 1) nb = 1;
    if (nb > (size_t)g->B) nb = (size_t)g->B;
    p->wino = conv_is_wino(g);
    p->rowtap = !p->wino && conv_is_rowtap(g);
    p->implicit = !p->wino && !p->rowtap && conv_is_implicit(g);
    p->phase = !p->wino && !p->rowtap && !p->implicit && conv_is_phase(g);
    p->dw = round16((size_t)g->Cout * ckk);
    p->wt = 0;
    p->ptr = 0;
    const size_t floats_per_ptr = (sizeof(const float *) + 3) / 4;
    if (p->wino) {
        /* the transforms run across a chunk's images, WINO_NW at most */
        nb = g->B < WINO_NW ? (size_t)g->B : WINO_NW;
        struct wino L;
        wino_layout(&L, g, p->wino);
        size_t cmax = g->Cin > g->Cout ? (size_t)g->Cin : (size_t)g->Cout;
        p->col = round16((size_t)g->Cin * L.P);
        p->tmp = 2 * wino_blk(g, &L) + round16(cmax * g->H * g->W * WINO_NW) +
                 round16((size_t)g->Cout * L.P);
        p->dw = round16((size_t)L.E * g->Cout * g->Cin);
        p->wt = wino_weight_floats(g, p->wino);
    } else if (p->rowtap) {
        /* GEMMs of W * nb >= CONV_ROWTAP_COLS columns per output row */
        nb = (CONV_ROWTAP_COLS + (size_t)g->W - 1) / (size_t)g->W;
        if (nb > (size_t)g->B) nb = (size_t)g->B;
        struct rowtap L;
        rowtap_layout(&L, g, (int)nb);
        while (nb > 1 && (size_t)g->Cin * L.S > CONV_MAX_COL_FLOATS)
            rowtap_layout(&L, g, (int)--nb);
        size_t cmax = g->Cin > g->Cout ? (size_t)g->Cin : (size_t)g->Cout;
        p->col = round16((size_t)g->Cin * L.S);
        /* packed dout (Cout, S), then the dinp values (Cin, H, W, nb); the
         * forward's output (Cout, H, W, nb) fits in the first */
        p->tmp =
            round16((size_t)g->Cout * L.S) + round16(cmax * g->H * g->W * nb);
        p->ptr = round16(2 * (size_t)(g->H + 2 * g->pad) * g->K * cmax *
                         floats_per_ptr);
        p->wt = round16((size_t)g->Cout * ckk);
    } else if (p->implicit) {
        struct implicit L;
        implicit_layout(&L, g, (int)nb);
        size_t cmax = g->Cin > g->Cout ? (size_t)g->Cin : (size_t)g->Cout;
        size_t kk = (size_t)g->K * g->K;
        p->col = round16((size_t)g->Cin * L.S);
        /* padded dout (Cout, S) then the dinp grid (Cin, ncols); the
         * forward's output grid (Cout, ncols) fits in the first */
        p->tmp =
            round16((size_t)g->Cout * L.S) + round16((size_t)g->Cin * L.ncols);
        /* two tables of row addresses, counted in floats */
        p->ptr = round16(2 * cmax * kk * floats_per_ptr);
        p->wt = round16((size_t)g->Cout * ckk);
    } else if (p->phase) {
        struct conv_geom gp;
        struct implicit L;
        phase_geom(&gp, g);
        implicit_layout(&L, &gp, (int)nb);
        p->col = round16(4 * (size_t)g->Cin * L.S);
        /* padded dout (Cout, S), then one dinp phase grid (Cin, ncols); the
         * forward's output grid (Cout, ncols) fits in the first */
        p->tmp =
            round16((size_t)g->Cout * L.S) + round16((size_t)g->Cin * L.ncols);
        /* x's rows (Cin * 9), then one phase's dout rows (4 Cout at most) */
        p->ptr = round16((9 * (size_t)g->Cin + 4 * (size_t)g->Cout) *
                         floats_per_ptr);
        p->wt = round16((size_t)g->Cout * ckk);
    } else {
        p->col = round16(ckk * nb * P);
        p->tmp = round16((size_t)g->Cout * nb * P);
    }
    p->per = p->col + p->tmp + p->dw + p->ptr;
    int nchunks = (int)(((size_t)g->B + nb - 1) / nb);
    p->parallel = nthreads > 1 && g->B >= nthreads;
    if (p->parallel) {
        /* Equal work per thread: a multiple of nthreads chunks. */
        nchunks = (nchunks + nthreads - 1) / nthreads * nthreads;
        if (nchunks > g->B) nchunks = g->B;
    }
    p->nchunks = nchunks;
    p->nb = (g->B + nchunks - 1) / nchunks;
}

const char *conv2d_algo_name(const struct conv_geom *g)
{
    if (conv_is_pointwise(g)) return "pointwise";
    struct conv_plan p;
    conv_plan_make(&p, g, 1);
    return p.wino == 4  ? "winograd4"
           : p.wino     ? "winograd"
           : p.rowtap   ? "rowtap"
           : p.implicit ? "implicit"
           : p.phase    ? "phase"
                        : "im2col";
}

size_t conv2d_workspace_floats(const struct conv_geom *g, int nthreads)
{
    if (conv_is_pointwise(g)) return 2 * round16((size_t)g->Cout * g->Cin);
    struct conv_plan p;
    conv_plan_make(&p, g, nthreads);
    int nbuf = p.parallel ? nthreads : 1;
    return (size_t)nbuf * p.per + p.wt;
}

/* wc (Cout, Cin) <- the centre tap of weight (Cout, Cin, K, K). */
static void conv_pointwise_weight(float *wc, const float *weight,
                                  const struct conv_geom *g)
{
    const size_t kk = (size_t)g->K * g->K, tap = (size_t)g->pad * g->K + g->pad;
    const size_t n = (size_t)g->Cout * g->Cin;
    for (size_t i = 0; i < n; i++)
        wc[i] = weight[i * kk + tap];
}

/* Valid output range [lo, hi) of positions o with 0 <= o*s - pad + k < n. */
static void conv_valid_range(int *lo, int *hi, int n, int no, int k, int s,
                             int pad)
{
    int a = pad - k; /* need o*s >= a */
    int l = a <= 0 ? 0 : (a + s - 1) / s;
    int b = n + pad - k; /* need o*s < b */
    int h = b <= 0 ? 0 : (b - 1) / s + 1;
    if (h > no) h = no;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* Stride 1 with "same" padding (Ho = H, Wo = W): a row of col for tap
 * (kh, kw) is the input plane shifted by dh*W + dw in flat index, apart from
 * the positions that fall into the padding. */
static int conv_is_same(const struct conv_geom *g)
{
    return g->stride == 1 && g->Ho == g->H && g->Wo == g->W;
}

/* Zeroes columns [0,owlo) and [owhi,W) of rows [ohlo,ohhi) of a (.,W) row
 * block: the positions a flat shift wrapped around from the neighbouring
 * row. Column-outer so the compiler does not make a memset call per row. */
static void conv_zero_wrapped(float *row, int W, int ohlo, int ohhi, int owlo,
                              int owhi)
{
    for (int ow = 0; ow < owlo; ow++)
        for (int oh = ohlo; oh < ohhi; oh++)
            row[(size_t)oh * W + ow] = 0;
    for (int ow = owhi; ow < W; ow++)
        for (int oh = ohlo; oh < ohhi; oh++)
            row[(size_t)oh * W + ow] = 0;
}

/* One im2col row (P) of one image for tap offset (dh, dw), "same" case.
 * [ohlo,ohhi) x [owlo,owhi) is where the tap lands inside the plane. */
static void im2col_row_same(float *row, const float *plane,
                            const struct conv_geom *g, int dh, int dw, int ohlo,
                            int ohhi, int owlo, int owhi)
{
    const int W = g->W, H = g->H;
    if (ohlo >= ohhi || owlo >= owhi) {
        memset(row, 0, (size_t)H * W * sizeof *row);
        return;
    }
    /* first and last positions of the block are inside the plane */
    size_t a = (size_t)ohlo * W + owlo, e = (size_t)(ohhi - 1) * W + owhi;
    if (ohlo > 0) memset(row, 0, (size_t)ohlo * W * sizeof *row);
    memcpy(row + a, plane + (ptrdiff_t)a + (ptrdiff_t)dh * W + dw,
           (e - a) * sizeof *row);
    if (ohhi < H)
        memset(row + (size_t)ohhi * W, 0, (size_t)(H - ohhi) * W * sizeof *row);
    conv_zero_wrapped(row, W, ohlo, ohhi, owlo, owhi);
}

/* plane += the im2col row `row` of tap offset (dh, dw), "same" case. Zeroes
 * the row's wrapped-around columns first so one flat loop adds the rest. */
static void col2im_row_same(float *plane, float *row, const struct conv_geom *g,
                            int dh, int dw, int ohlo, int ohhi, int owlo,
                            int owhi)
{
    const int W = g->W;
    if (ohlo >= ohhi || owlo >= owhi) return;
    conv_zero_wrapped(row, W, ohlo, ohhi, owlo, owhi);
    size_t a = (size_t)ohlo * W + owlo, e = (size_t)(ohhi - 1) * W + owhi;
    float *d = plane + ((ptrdiff_t)a + (ptrdiff_t)dh * W + dw);
    const float *src = row + a;
    for (size_t i = 0; i < e - a; i++)
        d[i] += src[i];
}

/* col (CinKK, n*P) <- patches of images inp[0..n) (each Cin,H,W). */
static void im2col_chunk(float *col, const float *inp, int n,
                         const struct conv_geom *g)
{
    const int K = g->K, s = g->stride, pad = g->pad, H = g->H, W = g->W;
    const int Ho = g->Ho, Wo = g->Wo;
    const size_t P = (size_t)Ho * Wo, ld = (size_t)n * P, HW = (size_t)H * W;
    const size_t ckk = (size_t)g->Cin * K * K;
    if (conv_is_1x1(g)) {
        for (size_t ci = 0; ci < ckk; ci++)
            for (int j = 0; j < n; j++)
                memcpy(col + ci * ld + j * P,
                       inp + ((size_t)j * g->Cin + ci) * HW, P * sizeof *col);
        return;
    }
    for (int j = 0; j < n; j++) {
        for (int ci = 0; ci < g->Cin; ci++) {
            const float *plane = inp + ((size_t)j * g->Cin + ci) * HW;
            for (int kh = 0; kh < K; kh++) {
                int ohlo, ohhi;
                conv_valid_range(&ohlo, &ohhi, H, Ho, kh, s, pad);
                for (int kw = 0; kw < K; kw++) {
                    int owlo, owhi;
                    conv_valid_range(&owlo, &owhi, W, Wo, kw, s, pad);
                    float *row = col + (((size_t)ci * K + kh) * K + kw) * ld +
                                 (size_t)j * P;
                    if (conv_is_same(g)) {
                        im2col_row_same(row, plane, g, kh - pad, kw - pad, ohlo,
                                        ohhi, owlo, owhi);
                        continue;
                    }
                    if (ohlo > 0)
                        memset(row, 0, (size_t)ohlo * Wo * sizeof *row);
                    for (int oh = ohlo; oh < ohhi; oh++) {
                        float *d = row + (size_t)oh * Wo;
                        const float *src =
                            plane + (size_t)(oh * s - pad + kh) * W - pad + kw;
                        for (int ow = 0; ow < owlo; ow++)
                            d[ow] = 0;
                        if (s == 1)
                            memcpy(d + owlo, src + owlo,
                                   (size_t)(owhi - owlo) * sizeof *d);
                        else
                            for (int ow = owlo; ow < owhi; ow++)
                                d[ow] = src[ow * s];
                        for (int ow = owhi; ow < Wo; ow++)
                            d[ow] = 0;
                    }
                    if (ohhi < Ho)
                        memset(row + (size_t)ohhi * Wo, 0,
                               (size_t)(Ho - ohhi) * Wo * sizeof *row);
                }
            }
        }
    }
}

/* dinp[0..n) (each Cin,H,W) += col2im(dcol (CinKK, n*P)), or = when
 * overwrite (which the callers only ask for in the 1x1 case, where every
 * input element receives exactly one value). dcol is scratch: entries that
 * fall into the padding are zeroed on the way. */
static void col2im_chunk(float *dinp, float *dcol, int n,
                         const struct conv_geom *g, int overwrite)
{
    const int K = g->K, s = g->stride, pad = g->pad, H = g->H, W = g->W;
    const int Ho = g->Ho, Wo = g->Wo;
    const size_t P = (size_t)Ho * Wo, ld = (size_t)n * P, HW = (size_t)H * W;
    if (conv_is_1x1(g)) {
        for (int j = 0; j < n; j++)
            for (int ci = 0; ci < g->Cin; ci++) {
                float *d = dinp + ((size_t)j * g->Cin + ci) * HW;
                const float *src = dcol + (size_t)ci * ld + (size_t)j * P;
                if (overwrite)
                    memcpy(d, src, P * sizeof *d);
                else
                    for (size_t i = 0; i < P; i++)
                        d[i] += src[i];
            }
        return;
    }
    for (int j = 0; j < n; j++) {
        for (int ci = 0; ci < g->Cin; ci++) {
            float *plane = dinp + ((size_t)j * g->Cin + ci) * HW;
            for (int kh = 0; kh < K; kh++) {
                int ohlo, ohhi;
                conv_valid_range(&ohlo, &ohhi, H, Ho, kh, s, pad);
                for (int kw = 0; kw < K; kw++) {
                    int owlo, owhi;
                    conv_valid_range(&owlo, &owhi, W, Wo, kw, s, pad);
                    float *row = dcol + (((size_t)ci * K + kh) * K + kw) * ld +
                                 (size_t)j * P;
                    if (conv_is_same(g)) {
                        col2im_row_same(plane, row, g, kh - pad, kw - pad, ohlo,
                                        ohhi, owlo, owhi);
                        continue;
                    }
                    for (int oh = ohlo; oh < ohhi; oh++) {
                        const float *src = row + (size_t)oh * Wo;
                        float *d =
                            plane + (size_t)(oh * s - pad + kh) * W - pad + kw;
                        if (s == 1)
                            for (int ow = owlo; ow < owhi; ow++)
                                d[ow] += src[ow];
                        else
                            for (int ow = owlo; ow < owhi; ow++)
                                d[ow * s] += src[ow];
                    }
                }
            }
        }
    }
}

/* Forward of chunk c of the plan with one thread's buffers buf (weight:
 * the rearranged weights when the plan is row-tap); the output pass adds
 * bias and res (either may be NULL; res laid out as out), then applies
 * max(., 0) when relu. */
static void conv_forward_chunk(float *out, const float *inp,
                               const float *weight, const float *bias,
                               const float *res, const struct conv_geom *g,
                               const struct conv_plan *p, int chunk, float *buf,
                               int relu)
{
    const int b0 = (int)((long)chunk * g->B / p->nchunks);
    const int n = (int)((long)(chunk + 1) * g->B / p->nchunks) - b0;
    const int Cout = g->Cout;
    const size_t P = (size_t)g->Ho * g->Wo, N = (size_t)n * P;
    const int ckk = g->Cin * g->K * g->K;
    const float *x = inp + (size_t)b0 * g->Cin * g->H * g->W;
    float *y = out + (size_t)b0 * Cout * P;
    if (res) res += (size_t)b0 * Cout * P;
    float *col = buf, *tmp = buf + p->col, *ptr = tmp + p->tmp + p->dw;
    if (p->wino) {
        wino_forward_chunk(y, x, weight, bias, res, g, p->wino, n, col, tmp,
                           relu);
        return;
    }
    if (p->rowtap) {
        rowtap_forward_chunk(y, x, weight, bias, res, g, n, col, tmp, ptr,
                             relu);
        return;
    }
    if (p->phase) {
        phase_forward_chunk(y, x, weight, bias, res, g, n, col, tmp, ptr, relu);
        return;
    }
    if (p->implicit) {
        struct implicit L;
        implicit_layout(&L, g, n);
        const float **rows = (const float **)(void *)ptr;
        implicit_pad(col, x, n, g->Cin, g, &L);
        implicit_rows(rows, col, g->Cin, g, &L);
        gemm_f32_rows(0, 0, Cout, (int)L.ncols, ckk, 1.0f, weight, ckk, rows,
                      0.0f, tmp, (int)L.ncols);
        implicit_unpad(y, tmp, L.ncols, n, Cout, g, &L, bias, res, relu, 0);
        return;
    }
    const float *cp = x; /* 1x1, one image: the input is its own col */
    if (!(conv_is_1x1(g) && n == 1)) {
        im2col_chunk(col, x, n, g);
        cp = col;
    }
    float *c = n == 1 ? y : tmp;
    gemm_f32(0, 0, Cout, (int)N, ckk, 1.0f, weight, ckk, cp, (int)N, 0.0f, c,
             (int)N);
    if (n == 1 && !bias && !res && !relu) return;
    /* epilogue: bias, res and ReLU on the way from the chunk's (Cout, n*P)
     * GEMM output to (n, Cout, P); in place, still in cache, for one image */
    for (int j = 0; j < n; j++)
        for (int co = 0; co < Cout; co++) {
            float *d = y + ((size_t)j * Cout + co) * P;
            const float *src = c + (size_t)co * N + (size_t)j * P;
            conv_out_row(d, src, res ? res + ((size_t)j * Cout + co) * P : NULL,
                         (int)P, bias ? bias[co] : 0.0f, relu, 0);
        }
}

static void conv_forward(float *out, const float *inp, const float *weight,
                         const float *bias, const float *res,
                         const struct conv_geom *g, float *work, int relu)
{
    if (conv_is_pointwise(g)) {
        const size_t no = (size_t)g->B * g->Cout;
        conv_pointwise_weight(work, weight, g);
        linear_forward(out, inp, work, bias, g->B, g->Cin, g->Cout);
        if (res) add_forward(out, out, res, no);
        if (relu) relu_forward(out, out, no);
        return;
    }
    int nt = omp_get_max_threads();
    struct conv_plan p;
    conv_plan_make(&p, g, nt);
    if (p.rowtap || p.wino) {
        float *wr = work + (size_t)(p.parallel ? nt : 1) * p.per;
        if (p.wino)
            wino_weights_packed(wr, weight, g, p.wino, 0);
        else
            rowtap_weights(wr, weight, g, 0);
        weight = wr;
    }
#pragma omp parallel num_threads(nt) if (p.parallel)
    {
        float *buf = work + p.per * (size_t)omp_get_thread_num();
#pragma omp for schedule(static)
        for (int c = 0; c < p.nchunks; c++)
            conv_forward_chunk(out, inp, weight, bias, res, g, &p, c, buf,
                               relu);
    }
}

void conv2d_forward(float *out, const float *inp, const float *weight,
                    const float *bias, const struct conv_geom *g, float *work)
{
    conv_forward(out, inp, weight, bias, NULL, g, work, 0);
}

void conv2d_bias_relu_forward(float *out, const float *inp, const float *weight,
                              const float *bias, const struct conv_geom *g,
                              float *work)
{
    conv_forward(out, inp, weight, bias, NULL, g, work, 1);
}

void conv2d_bias_add_relu_forward(float *out, const float *inp,
                                  const float *weight, const float *bias,
                                  const float *res, const struct conv_geom *g,
                                  float *work)
{
    conv_forward(out, inp, weight, bias, res, g, work, 1);
}

/* Backward of chunk c of the plan with one thread's buffers buf: dw
 * (Cout, CinKK; row-tap: Cout, K, K, Cin) += dout . col^T, dinp from
 * W^T . dout (implicit and row-tap: from wt, the flipped weights). */
static void conv_backward_chunk(float *dinp, float *dw, const float *dout,
                                const float *inp, const float *weight,
                                const struct conv_geom *g,
                                const struct conv_plan *p, int chunk,
                                float *buf, const float *wt, int accumulate)
{
    const int b0 = (int)((long)chunk * g->B / p->nchunks);
    const int n = (int)((long)(chunk + 1) * g->B / p->nchunks) - b0;
    const int Cout = g->Cout, Cin = g->Cin;
    float *col = buf, *tmp = buf + p->col, *ptr = tmp + p->tmp + p->dw;
    const size_t P = (size_t)g->Ho * g->Wo, N = (size_t)n * P;
    const size_t HW = (size_t)g->H * g->W;
    const int ckk = Cin * g->K * g->K;
    const int one_1x1 = conv_is_1x1(g) && n == 1;
    const float *x = inp + (size_t)b0 * Cin * HW;
    const float *dy = dout + (size_t)b0 * Cout * P;
    float *dx = dinp ? dinp + (size_t)b0 * Cin * HW : NULL;
    if (p->wino) {
        wino_backward_chunk(dx, dw, dy, x, wt, g, p->wino, n, col, tmp,
                            accumulate);
        return;
    }
    if (p->rowtap) {
        rowtap_backward_chunk(dx, dw, dy, x, wt, g, n, col, tmp, ptr,
                              accumulate);
        return;
    }
    if (p->phase) {
        phase_backward_chunk(dx, dw, dy, x, wt, g, n, col, tmp, ptr,
                             accumulate);
        return;
    }
    if (p->implicit) {
        /* implicit: dW += dout grid . im2col(x)^T; dinp = the same-padded
         * convolution of dout with the flipped weights wt */
        struct implicit L;
        implicit_layout(&L, g, n);
        const int kk = g->K * g->K, cokk = Cout * kk;
        const float **xrows = (const float **)(void *)ptr;
        const float **dyrows = xrows + (size_t)(Cin > Cout ? Cin : Cout) * kk;
        float *dyp = tmp, *dxg = tmp + round16((size_t)Cout * L.S);
        implicit_pad(col, x, n, Cin, g, &L);
        implicit_rows(xrows, col, Cin, g, &L);
        implicit_pad(dyp, dy, n, Cout, g, &L);
        /* the dout grid starts where the buffer's image rows do; its
         * padding columns and rows are zero, so they add nothing */
        gemm_f32_rows(0, 1, Cout, ckk, (int)L.ncols, 1.0f,
                      dyp + L.G0 + (size_t)L.pd * L.Wp, (int)L.S, xrows, 1.0f,
                      dw, ckk);
        if (!dx) return;
        implicit_rows(dyrows, dyp, Cout, g, &L);
        gemm_f32_rows(0, 0, Cin, (int)L.ncols, cokk, 1.0f, wt, cokk, dyrows,
                      0.0f, dxg, (int)L.ncols);
        implicit_unpad(dx, dxg, L.ncols, n, Cin, g, &L, NULL, NULL, 0,
                       accumulate);
        return;
    }

    const float *cp = x;
    if (!one_1x1) {
        im2col_chunk(col, x, n, g);
        cp = col;
    }
    const float *dc = dy; /* one image: dout is already (Cout, P) */
    if (n > 1) {
        for (int co = 0; co < Cout; co++)
            for (int j = 0; j < n; j++)
                memcpy(tmp + (size_t)co * N + (size_t)j * P,
                       dy + ((size_t)j * Cout + co) * P, P * sizeof *tmp);
        dc = tmp;
    }
    gemm_f32(0, 1, Cout, ckk, (int)N, 1.0f, dc, (int)N, cp, (int)N, 1.0f, dw,
             ckk);
    if (!dx) return;
    if (one_1x1) {
        gemm_f32(1, 0, Cin, (int)P, Cout, 1.0f, weight, ckk, dc, (int)P,
                 accumulate ? 1.0f : 0.0f, dx, (int)P);
        return;
    }
    gemm_f32(1, 0, ckk, (int)N, Cout, 1.0f, weight, ckk, dc, (int)N, 0.0f, col,
             (int)N);
    int overwrite = !accumulate && conv_is_1x1(g);
    if (!accumulate && !overwrite)
        memset(dx, 0, (size_t)n * Cin * HW * sizeof *dx);
    col2im_chunk(dx, col, n, g, overwrite);
}

/* dbias (Cout) += sum over (B, Ho*Wo) of dout, channels over threads. */
static void conv_bias_backward(float *dbias, const float *dout, int B, int Cout,
                               size_t P)
{
#pragma omp parallel for schedule(static) if ((size_t)B * Cout * P >=          \
                                              PAR_MIN_ELEMS)
    for (int co = 0; co < Cout; co++) {
        double s = 0;
        for (int b = 0; b < B; b++) {
            const float *d = dout + ((size_t)b * Cout + co) * P;
            float rs = 0;
#pragma omp simd reduction(+ : rs)
            for (size_t i = 0; i < P; i++)
                rs += d[i];
            s += rs;
        }
        dbias[co] += (float)s;
    }
}

void conv2d_backward(float *dinp, float *dweight, float *dbias,
                     const float *dout, const float *inp, const float *weight,
                     const struct conv_geom *g, float *work, int accumulate)
{
    const int ckk = g->Cin * g->K * g->K, Cout = g->Cout;
    const size_t nw = (size_t)Cout * ckk;
    if (conv_is_pointwise(g)) {
        const size_t nc = (size_t)Cout * g->Cin, kk = (size_t)g->K * g->K;
        const size_t tap = (size_t)g->pad * g->K + g->pad;
        float *wc = work, *dwc = work + round16(nc);
        conv_pointwise_weight(wc, weight, g);
        memset(dwc, 0, nc * sizeof *dwc);
        linear_backward(dinp, dwc, dbias, dout, inp, wc, g->B, g->Cin, Cout,
                        accumulate);
        for (size_t i = 0; i < nc; i++)
            dweight[i * kk + tap] += dwc[i];
        return;
    }
    int nt = omp_get_max_threads();
    struct conv_plan p;
    conv_plan_make(&p, g, nt);
    const size_t per = p.per;
    if (dbias)
        conv_bias_backward(dbias, dout, g->B, Cout, (size_t)g->Ho * g->Wo);
    /* implicit: the input gradient convolves with wt (Cin, Cout, K, K),
     * the weights transposed in channels and flipped in space */
    float *wt = work + (size_t)(p.parallel ? nt : 1) * per;
    if (p.rowtap && dinp) rowtap_weights(wt, weight, g, 1);
    if (p.wino && dinp) wino_weights_packed(wt, weight, g, p.wino, 1);
    if (p.phase && dinp) phase_weights(wt, weight, g);
    if (p.implicit && dinp) {
        const int kk = g->K * g->K, Cin = g->Cin;
        for (int c = 0; c < Cin; c++)
            for (int co = 0; co < Cout; co++)
                for (int t = 0; t < kk; t++)
                    wt[((size_t)c * Cout + co) * kk + t] =
                        weight[((size_t)co * Cin + c) * kk + (kk - 1 - t)];
    }
    if (!p.parallel && !p.rowtap && !p.wino) {
        /* one thread: chunks add straight into dweight, in chunk order */
        for (int c = 0; c < p.nchunks; c++)
            conv_backward_chunk(dinp, dweight, dout, inp, weight, g, &p, c,
                                work, wt, accumulate);
        return;
    }
    /* row-tap: its (Cout, K, K, Cin) partials are reordered on the way */
    const int Cin = g->Cin, kk = g->K * g->K;
#pragma omp parallel num_threads(nt) if (p.parallel)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        float *buf = work + per * (size_t)t;
        float *dw = buf + p.col + p.tmp;
        memset(dw, 0, (p.wino ? p.dw : nw) * sizeof *dw);
#pragma omp for schedule(static)
        for (int c = 0; c < p.nchunks; c++)
            conv_backward_chunk(dinp, dw, dout, inp, weight, g, &p, c, buf, wt,
                                accumulate);
        /* implicit barrier: every partial is complete. Reduce in thread
         * order, weights over threads. */
        float *part0 = work + p.col + p.tmp;
        if (p.wino) {
            /* the transformed partials first, into thread 0's */
            const size_t nu = (size_t)wino_elems(p.wino) * Cout * Cin;
#pragma omp for schedule(static)
            for (size_t i = 0; i < nu; i++) {
                float s = part0[i];
                for (int u = 1; u < T; u++)
                    s += part0[per * (size_t)u + i];
                part0[i] = s;
            }
            /* (the barrier of that loop ordered its sums before these) */
            wino_weight_grad(dweight, part0, g, p.wino);
        } else {
            /* i in dweight's layout (co, c, t), j in the partials' */
#pragma omp for schedule(static)
            for (int co = 0; co < Cout; co++)
                for (int c = 0; c < Cin; c++)
                    for (int t = 0; t < kk; t++) {
                        const size_t i = ((size_t)co * Cin + c) * kk + t;
                        const size_t j =
                            p.rowtap ? ((size_t)co * kk + t) * Cin + c : i;
                        float s = dweight[i];
                        for (int u = 0; u < T; u++)
                            s += part0[per * (size_t)u + j];
                        dweight[i] = s;
                    }
        }
    }
}

void conv2d_forward_ref(float *out, const float *inp, const float *weight,
                        const float *bias, const struct conv_geom *g)
{
    const int K = g->K;
    for (int b = 0; b < g->B; b++)
        for (int co = 0; co < g->Cout; co++)
            for (int oh = 0; oh < g->Ho; oh++)
                for (int ow = 0; ow < g->Wo; ow++) {
                    float s = bias ? bias[co] : 0.0f;
                    for (int ci = 0; ci < g->Cin; ci++)
                        for (int kh = 0; kh < K; kh++)
                            for (int kw = 0; kw < K; kw++) {
                                int ih = oh * g->stride - g->pad + kh;
                                int iw = ow * g->stride - g->pad + kw;
                                if (ih < 0 || ih >= g->H || iw < 0 ||
                                    iw >= g->W)
                                    continue;
                                s += weight[((co * g->Cin + ci) * K + kh) * K +
                                            kw] *
                                     inp[(((size_t)b * g->Cin + ci) * g->H +
                                          ih) *
                                             g->W +
                                         iw];
                            }
                    out[(((size_t)b * g->Cout + co) * g->Ho + oh) * g->Wo +
                        ow] = s;
                }
}

void conv2d_backward_ref(float *dinp, float *dweight, float *dbias,
                         const float *dout, const float *inp,
                         const float *weight, const struct conv_geom *g,
                         int accumulate)
{
    const int K = g->K;
    if (dinp && !accumulate)
        memset(dinp, 0, (size_t)g->B * g->Cin * g->H * g->W * sizeof *dinp);
    for (int b = 0; b < g->B; b++)
        for (int co = 0; co < g->Cout; co++)
            for (int oh = 0; oh < g->Ho; oh++)
                for (int ow = 0; ow < g->Wo; ow++) {
                    float d =
                        dout[(((size_t)b * g->Cout + co) * g->Ho + oh) * g->Wo +
                             ow];
                    if (dbias) dbias[co] += d;
                    for (int ci = 0; ci < g->Cin; ci++)
                        for (int kh = 0; kh < K; kh++)
                            for (int kw = 0; kw < K; kw++) {
                                int ih = oh * g->stride - g->pad + kh;
                                int iw = ow * g->stride - g->pad + kw;
                                if (ih < 0 || ih >= g->H || iw < 0 ||
                                    iw >= g->W)
                                    continue;
                                size_t wi =
                                    ((size_t)(co * g->Cin + ci) * K + kh) * K +
                                    kw;
                                size_t xi =
                                    (((size_t)b * g->Cin + ci) * g->H + ih) *
                                        g->W +
                                    iw;
                                dweight[wi] += d * inp[xi];
                                if (dinp) dinp[xi] += d * weight[wi];
                            }
                }
}

/* ---------------------------------------------------------------------------
 * Batch normalisation, channels over threads. Sums run per (b, c) row in
 * float and across rows in double; mean and variance come from one pass of
 * sums shifted by an estimate of the mean, corrected by the shifted mean. */

/* The per-channel work, shared by the single-call kernels (one parallel
 * region over the channels) and the split ones (synchronized BN: the sums of
 * every rank are added between the calls). One channel is B rows of HW
 * floats, cs = C * HW apart. */

/* *sd = sum of d = x - centre, *sq = sum of d^2 over one channel. */
static inline void bn_channel_sums(double *sd, double *sq, const float *x,
                                   size_t cs, int B, int HW, float centre)
{
    double a = 0, q = 0;
    for (int b = 0; b < B; b++) {
        const float *r = x + b * cs;
        float rd = 0, rq = 0;
#pragma omp simd reduction(+ : rd, rq)
        for (int i = 0; i < HW; i++) {
            float d = r[i] - centre;
            rd += d;
            rq += d * d;
        }
        a += rd;
        q += rq;
    }
    *sd = a;
    *sq = q;
}

/* Mean and invstd of one channel from the sums of d = x - centre over n
 * values (the mean corrected by sd/n, the biased variance by the shift, so a
 * centre near the mean loses no precision), and the update of the running
 * statistics (unbiased variance) when running_mean and running_var are not
 * NULL. */
static inline void bn_channel_stats(float *mean, float *invstd,
                                    float *running_mean, float *running_var,
                                    float centre, double sd, double sq,
                                    double n, float momentum, float eps)
{
    double var = (sq - sd * sd / n) / n;
    if (var < 0) var = 0;
    double mean_d = (double)centre + sd / n;
    *mean = (float)mean_d;
    *invstd = (float)(1.0 / sqrt(var + (double)eps));
    if (running_mean && running_var) {
        /* unbiased variance; a single value has none, keep biased */
        double unb = n > 1 ? var * n / (n - 1) : var;
        *running_mean =
            (float)((1.0 - momentum) * *running_mean + momentum * mean_d);
        *running_var =
            (float)((1.0 - momentum) * *running_var + momentum * unb);
    }
}

/* o = (x - m) * sc + sh over one channel, plus res (a residual add's
 * other input, laid out as x) when res is not NULL, then max(., 0) if
 * relu. */
static inline void bn_channel_apply(float *o, const float *x, const float *res,
                                    size_t cs, int B, int HW, float m, float sc,
                                    float sh, int relu)
{
    for (int b = 0; b < B; b++) {
        const float *r = x + b * cs;
        float *ob = o + b * cs;
        if (res) {
            const float *a = res + b * cs;
            if (relu) {
#pragma omp simd
                for (int i = 0; i < HW; i++) {
                    float v = (r[i] - m) * sc + sh + a[i];
                    ob[i] = v > 0.0f ? v : 0.0f;
                }
            } else {
#pragma omp simd
                for (int i = 0; i < HW; i++)
                    ob[i] = (r[i] - m) * sc + sh + a[i];
            }
        } else if (relu) {
#pragma omp simd
            for (int i = 0; i < HW; i++) {
                float v = (r[i] - m) * sc + sh;
                ob[i] = v > 0.0f ? v : 0.0f;
            }
        } else {
#pragma omp simd
            for (int i = 0; i < HW; i++)
                ob[i] = (r[i] - m) * sc + sh;
        }
    }
}

/* *sdy = sum of g, *sdyx = sum of g * xhat over one channel, where g is dy,
 * masked by (y > 0) when y (a fused ReLU's output) is not NULL, and
 * xhat = (x - m) * is. dy is loaded before the mask: as a conditional load
 * GCC made it a masked load and kept the sums in memory (a store-to-load
 * chain per vector, twice the pass's time). */
static inline void bn_channel_backward_sums(double *sdy, double *sdyx,
                                            const float *dy, const float *y,
                                            const float *x, size_t cs, int B,
                                            int HW, float m, float is)
{
    double sa = 0, sq = 0;
    for (int b = 0; b < B; b++) {
        const float *r = x + b * cs, *g = dy + b * cs;
        float a = 0, q = 0;
        if (y) {
            const float *o = y + b * cs;
#pragma omp simd reduction(+ : a, q)
            for (int i = 0; i < HW; i++) {
                float gv = g[i];
                float gi = o[i] > 0.0f ? gv : 0.0f;
                a += gi;
                q += gi * (r[i] - m);
            }
        } else {
#pragma omp simd reduction(+ : a, q)
            for (int i = 0; i < HW; i++) {
                a += g[i];
                q += g[i] * (r[i] - m);
            }
        }
        sa += a;
        sq += q;
    }
    *sdy = sa;
    *sdyx = sq * is;
}

/* d =/+= gamma * is * (g - sdy/n - xhat * sdyx/n) over one channel (g and
 * xhat as in bn_channel_backward_sums): the input gradient of a batchnorm
 * whose statistics are over n values with these sums. */
static inline void bn_channel_backward_input(float *d, const float *dy,
                                             const float *y, const float *x,
                                             size_t cs, int B, int HW, float m,
                                             float is, float gamma, double sdy,
                                             double sdyx, double n,
                                             int accumulate)
{
    const float k = gamma * is;
    const float mdy = (float)(sdy / n);
    const float mq = (float)(sdyx / n) * is; /* per (x - m) */
    for (int b = 0; b < B; b++) {
        const float *r = x + b * cs, *g = dy + b * cs;
        float *db = d + b * cs;
        if (y) {
            const float *o = y + b * cs;
            if (accumulate)
                for (int i = 0; i < HW; i++) {
                    float gv = g[i], gi = o[i] > 0.0f ? gv : 0.0f;
                    db[i] += k * (gi - mdy - (r[i] - m) * mq);
                }
            else
                for (int i = 0; i < HW; i++) {
                    float gv = g[i], gi = o[i] > 0.0f ? gv : 0.0f;
                    db[i] = k * (gi - mdy - (r[i] - m) * mq);
                }
        } else if (accumulate) {
            for (int i = 0; i < HW; i++)
                db[i] += k * (g[i] - mdy - (r[i] - m) * mq);
        } else {
            for (int i = 0; i < HW; i++)
                db[i] = k * (g[i] - mdy - (r[i] - m) * mq);
        }
    }
}

/* Narrow layers (the pruned widths 1-15) would leave threads idle with
 * one channel per thread, so their passes run over units of (channel,
 * block of images): P blocks per channel, at least BN_MIN_UNITS units in
 * all. P depends on C and B only, so the sums group alike on any number of
 * threads; C >= BN_MIN_UNITS keeps one unit per channel (P = 1). */
#define BN_MIN_UNITS 16

static int bn_parts(int C, int B)
{
    int P = (BN_MIN_UNITS + C - 1) / C;
    return P > B ? B : P;
}

/* Images [*b0, *b1) of part k of P over B. */
static void bn_part_range(int *b0, int *b1, int k, int P, int B)
{
    *b0 = (int)((long)k * B / P);
    *b1 = (int)((long)(k + 1) * B / P);
}

/* Eval mode's 1 / sqrt(running variance + eps). */
static float bn_eval_invstd(float running_var, float eps)
{
    return (float)(1.0 / sqrt((double)running_var + (double)eps));
}

/* The shift for channel c's one-pass sums: the mean of the first image's
 * plane, close to the batch mean. */
static float bn_shift(const float *x, int HW)
{
    float rs = 0;
#pragma omp simd reduction(+ : rs)
    for (int i = 0; i < HW; i++)
        rs += x[i];
    return rs / (float)HW;
}

/* bn_forward over units (P > 1): partial sums per unit, the statistics
 * per channel (parts added in order), then the apply per unit. */
static void bn_forward_parts(float *out, float *mean, float *invstd,
                             const float *inp, const float *res,
                             const float *gamma, const float *beta,
                             float *running_mean, float *running_var, int B,
                             int C, int HW, float momentum, float eps,
                             int training, int relu, int P)
{
    const size_t N = (size_t)B * HW, cs = (size_t)C * HW;
    const int running = running_mean && running_var, U = C * P;
    double part[2 * 2 * BN_MIN_UNITS]; /* U < BN_MIN_UNITS + C <= 2x */
    float shift[BN_MIN_UNITS];
#pragma omp parallel if (N * C >= PAR_MIN_ELEMS)
    {
        if (training) {
#pragma omp for schedule(static)
            for (int c = 0; c < C; c++)
                shift[c] = bn_shift(inp + (size_t)c * HW, HW);
#pragma omp for schedule(static)
            for (int u = 0; u < U; u++) {
                int c = u / P, b0, b1;
                bn_part_range(&b0, &b1, u % P, P, B);
                bn_channel_sums(&part[2 * u], &part[2 * u + 1],
                                inp + (size_t)c * HW + (size_t)b0 * cs, cs,
                                b1 - b0, HW, shift[c]);
            }
        }
#pragma omp for schedule(static)
        for (int c = 0; c < C; c++) {
            if (training) {
                double sd = 0, sq = 0;
                for (int k = 0; k < P; k++) {
                    sd += part[2 * (c * P + k)];
                    sq += part[2 * (c * P + k) + 1];
                }
                bn_channel_stats(&mean[c], &invstd[c],
                                 running ? running_mean + c : NULL,
                                 running ? running_var + c : NULL, shift[c], sd,
                                 sq, (double)N, momentum, eps);
            } else {
                mean[c] = running_mean[c];
                invstd[c] = bn_eval_invstd(running_var[c], eps);
            }
        }
#pragma omp for schedule(static)
        for (int u = 0; u < U; u++) {
            int c = u / P, b0, b1;
            bn_part_range(&b0, &b1, u % P, P, B);
            const size_t off = (size_t)c * HW + (size_t)b0 * cs;
            bn_channel_apply(out + off, inp + off, res ? res + off : NULL, cs,
                             b1 - b0, HW, mean[c], gamma[c] * invstd[c],
                             beta[c], relu);
        }
    }
}

/* relu != 0: out = max(bn(inp), 0) in the same pass; res (may be NULL) is
 * added before the ReLU. */
static void bn_forward(float *out, float *mean, float *invstd, const float *inp,
                       const float *res, const float *gamma, const float *beta,
                       float *running_mean, float *running_var, int B, int C,
                       int HW, float momentum, float eps, int training,
                       int relu)
{
    const size_t N = (size_t)B * HW, cs = (size_t)C * HW;
    const int running = running_mean && running_var;
    const int P = bn_parts(C, B);
    if (P > 1) {
        bn_forward_parts(out, mean, invstd, inp, res, gamma, beta, running_mean,
                         running_var, B, C, HW, momentum, eps, training, relu,
                         P);
        return;
    }
#pragma omp parallel for schedule(static) if (N * C >= PAR_MIN_ELEMS)
    for (int c = 0; c < C; c++) {
        const float *x = inp + (size_t)c * HW;
        float m, is;
        if (training) {
            const float shift = bn_shift(x, HW);
            double sd, sq;
            bn_channel_sums(&sd, &sq, x, cs, B, HW, shift);
            bn_channel_stats(&m, &is, running ? running_mean + c : NULL,
                             running ? running_var + c : NULL, shift, sd, sq,
                             (double)N, momentum, eps);
        } else {
            m = running_mean[c];
            is = bn_eval_invstd(running_var[c], eps);
        }
        mean[c] = m;
        invstd[c] = is;
        bn_channel_apply(out + (size_t)c * HW, x,
                         res ? res + (size_t)c * HW : NULL, cs, B, HW, m,
                         gamma[c] * is, beta[c], relu);
    }
}

void batchnorm_forward(float *out, float *mean, float *invstd, const float *inp,
                       const float *gamma, const float *beta,
                       float *running_mean, float *running_var, int B, int C,
                       int HW, float momentum, float eps, int training)
{
    bn_forward(out, mean, invstd, inp, NULL, gamma, beta, running_mean,
               running_var, B, C, HW, momentum, eps, training, 0);
}

void batchnorm_relu_forward(float *out, float *mean, float *invstd,
                            const float *inp, const float *gamma,
                            const float *beta, float *running_mean,
                            float *running_var, int B, int C, int HW,
                            float momentum, float eps, int training)
{
    bn_forward(out, mean, invstd, inp, NULL, gamma, beta, running_mean,
               running_var, B, C, HW, momentum, eps, training, 1);
}

void batchnorm_add_relu_forward(float *out, float *mean, float *invstd,
                                const float *inp, const float *res,
                                const float *gamma, const float *beta,
                                float *running_mean, float *running_var, int B,
                                int C, int HW, float momentum, float eps,
                                int training)
{
    bn_forward(out, mean, invstd, inp, res, gamma, beta, running_mean,
               running_var, B, C, HW, momentum, eps, training, 1);
}

/* bn_backward over units (P > 1, see bn_parts): partial sums per unit,
 * the parameter gradients per channel (parts added in order), then the
 * input gradient per unit. */
static void bn_backward_parts(float *dinp, float *dgamma, float *dbeta,
                              const float *dout, const float *relu_out,
                              const float *inp, const float *mean,
                              const float *invstd, const float *gamma, int B,
                              int C, int HW, int accumulate, int P)
{
    const size_t N = (size_t)B * HW, cs = (size_t)C * HW;
    const int U = C * P;
    double part[2 * 2 * BN_MIN_UNITS], tot[2 * BN_MIN_UNITS];
#pragma omp parallel if (N * C >= PAR_MIN_ELEMS)
    {
#pragma omp for schedule(static)
        for (int u = 0; u < U; u++) {
            int c = u / P, b0, b1;
            bn_part_range(&b0, &b1, u % P, P, B);
            const size_t off = (size_t)c * HW + (size_t)b0 * cs;
            bn_channel_backward_sums(&part[2 * u], &part[2 * u + 1], dout + off,
                                     relu_out ? relu_out + off : NULL,
                                     inp + off, cs, b1 - b0, HW, mean[c],
                                     invstd[c]);
        }
#pragma omp for schedule(static)
        for (int c = 0; c < C; c++) {
            double sdy = 0, sdyx = 0;
            for (int k = 0; k < P; k++) {
                sdy += part[2 * (c * P + k)];
                sdyx += part[2 * (c * P + k) + 1];
            }
            tot[2 * c] = sdy;
            tot[2 * c + 1] = sdyx;
            dbeta[c] += (float)sdy;
            dgamma[c] += (float)sdyx;
        }
        if (dinp) {
#pragma omp for schedule(static)
            for (int u = 0; u < U; u++) {
                int c = u / P, b0, b1;
                bn_part_range(&b0, &b1, u % P, P, B);
                const size_t off = (size_t)c * HW + (size_t)b0 * cs;
                bn_channel_backward_input(
                    dinp + off, dout + off, relu_out ? relu_out + off : NULL,
                    inp + off, cs, b1 - b0, HW, mean[c], invstd[c], gamma[c],
                    tot[2 * c], tot[2 * c + 1], (double)N, accumulate);
            }
        }
    }
}

/* relu_out != NULL: dout is first masked by (relu_out > 0), the backward of
 * a ReLU applied in place to this batchnorm's output. */
static void bn_backward(float *dinp, float *dgamma, float *dbeta,
                        const float *dout, const float *relu_out,
                        const float *inp, const float *mean,
                        const float *invstd, const float *gamma, int B, int C,
                        int HW, int accumulate)
{
    const size_t N = (size_t)B * HW, cs = (size_t)C * HW;
    const int P = bn_parts(C, B);
    if (P > 1) {
        bn_backward_parts(dinp, dgamma, dbeta, dout, relu_out, inp, mean,
                          invstd, gamma, B, C, HW, accumulate, P);
        return;
    }
#pragma omp parallel for schedule(static) if (N * C >= PAR_MIN_ELEMS)
    for (int c = 0; c < C; c++) {
        const size_t off = (size_t)c * HW;
        const float *y = relu_out ? relu_out + off : NULL;
        double sdy, sdyx;
        bn_channel_backward_sums(&sdy, &sdyx, dout + off, y, inp + off, cs, B,
                                 HW, mean[c], invstd[c]);
        dbeta[c] += (float)sdy;
        dgamma[c] += (float)sdyx;
        if (!dinp) continue;
        bn_channel_backward_input(dinp + off, dout + off, y, inp + off, cs, B,
                                  HW, mean[c], invstd[c], gamma[c], sdy, sdyx,
                                  (double)N, accumulate);
    }
}

void batchnorm_backward(float *dinp, float *dgamma, float *dbeta,
                        const float *dout, const float *inp, const float *mean,
                        const float *invstd, const float *gamma, int B, int C,
                        int HW, int accumulate)
{
    bn_backward(dinp, dgamma, dbeta, dout, NULL, inp, mean, invstd, gamma, B, C,
                HW, accumulate);
}

void batchnorm_relu_backward(float *dinp, float *dgamma, float *dbeta,
                             const float *dout, const float *out,
                             const float *inp, const float *mean,
                             const float *invstd, const float *gamma, int B,
                             int C, int HW, int accumulate)
{
    bn_backward(dinp, dgamma, dbeta, dout, out, inp, mean, invstd, gamma, B, C,
                HW, accumulate);
}

/* The split kernels: the same per-channel work, one call per step. */

void batchnorm_sums(double *sd, double *sq, const float *inp,
                    const float *centre, int B, int C, int HW)
{
    const size_t N = (size_t)B * HW, cs = (size_t)C * HW;
#pragma omp parallel for schedule(static) if (N * C >= PAR_MIN_ELEMS)
    for (int c = 0; c < C; c++) {
        double a, q;
        bn_channel_sums(&a, &q, inp + (size_t)c * HW, cs, B, HW,
                        centre ? centre[c] : 0.0f);
        sd[c] = a;
        if (sq) sq[c] = q;
    }
}

void batchnorm_stats(float *mean, float *invstd, float *running_mean,
                     float *running_var, const float *centre, const double *sd,
                     const double *sq, double n, int C, float momentum,
                     float eps)
{
    const int running = running_mean && running_var;
    for (int c = 0; c < C; c++) {
        const float ce = centre ? centre[c] : 0.0f; /* mean may alias it */
        bn_channel_stats(&mean[c], &invstd[c],
                         running ? running_mean + c : NULL,
                         running ? running_var + c : NULL, ce, sd[c], sq[c], n,
                         momentum, eps);
    }
}

void batchnorm_apply(float *out, const float *inp, const float *res,
                     const float *mean, const float *invstd, const float *gamma,
                     const float *beta, int B, int C, int HW, int relu)
{
    const size_t N = (size_t)B * HW, cs = (size_t)C * HW;
#pragma omp parallel for schedule(static) if (N * C >= PAR_MIN_ELEMS)
    for (int c = 0; c < C; c++)
        bn_channel_apply(out + (size_t)c * HW, inp + (size_t)c * HW,
                         res ? res + (size_t)c * HW : NULL, cs, B, HW, mean[c],
                         gamma[c] * invstd[c], beta[c], relu);
}

void batchnorm_backward_sums(double *sdy, double *sdyx, float *dgamma,
                             float *dbeta, const float *dout,
                             const float *relu_out, const float *inp,
                             const float *mean, const float *invstd, int B,
                             int C, int HW)
{
    const size_t N = (size_t)B * HW, cs = (size_t)C * HW;
#pragma omp parallel for schedule(static) if (N * C >= PAR_MIN_ELEMS)
    for (int c = 0; c < C; c++) {
        const size_t off = (size_t)c * HW;
        double a, q;
        bn_channel_backward_sums(&a, &q, dout + off,
                                 relu_out ? relu_out + off : NULL, inp + off,
                                 cs, B, HW, mean[c], invstd[c]);
        sdy[c] = a;
        sdyx[c] = q;
        if (dbeta) dbeta[c] += (float)a;
        if (dgamma) dgamma[c] += (float)q;
    }
}

void batchnorm_backward_input(float *dinp, const float *dout,
                              const float *relu_out, const float *inp,
                              const float *mean, const float *invstd,
                              const float *gamma, const double *sdy,
                              const double *sdyx, double n, int B, int C,
                              int HW, int accumulate)
{
    const size_t N = (size_t)B * HW, cs = (size_t)C * HW;
#pragma omp parallel for schedule(static) if (N * C >= PAR_MIN_ELEMS)
    for (int c = 0; c < C; c++) {
        const size_t off = (size_t)c * HW;
        bn_channel_backward_input(dinp + off, dout + off,
                                  relu_out ? relu_out + off : NULL, inp + off,
                                  cs, B, HW, mean[c], invstd[c], gamma[c],
                                  sdy[c], sdyx[c], n, accumulate);
    }
}

/* ---------------------------------------------------------------------------
 * Elementwise layers. */

void relu_forward(float *out, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN_ELEMS)
    for (size_t i = 0; i < n; i++)
        out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void relu_backward(float *dinp, const float *dout, const float *out, size_t n,
                   int accumulate)
{
    if (accumulate) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN_ELEMS)
        for (size_t i = 0; i < n; i++)
            dinp[i] += out[i] > 0.0f ? dout[i] : 0.0f;
    } else {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN_ELEMS)
        for (size_t i = 0; i < n; i++)
            dinp[i] = out[i] > 0.0f ? dout[i] : 0.0f;
    }
}

void add_forward(float *out, const float *a, const float *b, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN_ELEMS)
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

/* d =/+= dout over n elements. */
static void grad_pass(float *d, const float *dout, size_t n, int accumulate)
{
    if (!d) return;
    if (accumulate) {
#pragma omp parallel for schedule(static) if (n >= PAR_MIN_ELEMS)
        for (size_t i = 0; i < n; i++)
            d[i] += dout[i];
    } else if (d != dout) {
        memcpy(d, dout, n * sizeof *d);
    }
}

void add_backward(float *da, float *db, const float *dout, size_t n,
                  int accumulate_a, int accumulate_b)
{
    grad_pass(da, dout, n, accumulate_a);
    grad_pass(db, dout, n, accumulate_b);
}

void add_relu_forward(float *out, const float *a, const float *b, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN_ELEMS)
    for (size_t i = 0; i < n; i++) {
        float v = a[i] + b[i];
        out[i] = v > 0.0f ? v : 0.0f;
    }
}

/* d =/+= g, or nothing for d == NULL. */
static inline void grad_put(float *d, size_t i, float g, int accumulate)
{
    if (d) d[i] = accumulate ? d[i] + g : g;
}

void add_relu_backward(float *da, float *db, float *dout, const float *out,
                       size_t n, int accumulate_a, int accumulate_b)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN_ELEMS)
    for (size_t i = 0; i < n; i++) {
        float g = out[i] > 0.0f ? dout[i] : 0.0f;
        dout[i] = g;
        grad_put(da, i, g, accumulate_a);
        grad_put(db, i, g, accumulate_b);
    }
}

/* ---------------------------------------------------------------------------
 * Pooling. */

/* Whether v, later in a window than the best so far b, replaces it: the
 * general loop's rule (first maximum wins, NaN propagates). */
static inline int maxpool_later_wins(float v, float b)
{
    return v > b || (isnan(v) && !isnan(b));
}

/* One output row of a 2x2, stride-2 pool whose windows start at index r0 of
 * plane x (row width W). Each window is a tournament: the winner of its top
 * pair against the winner of its bottom pair, the earlier one keeping ties,
 * which picks what the general loop's scan picks; as independent selects
 * (a scan's chained ones GCC left as branches) the row vectorises. */
static void maxpool2_row(float *o, int32_t *am, const float *x, int32_t r0,
                         int W, int Wo)
{
    const float *u = x + r0, *d = u + W;
#pragma omp simd
    for (int j = 0; j < Wo; j++) {
        float a0 = u[2 * j], a1 = u[2 * j + 1], a2 = d[2 * j],
              a3 = d[2 * j + 1];
        int tu = maxpool_later_wins(a1, a0), td = maxpool_later_wins(a3, a2);
        float vu = tu ? a1 : a0, vd = td ? a3 : a2;
        int t = maxpool_later_wins(vd, vu);
        o[j] = t ? vd : vu;
        am[j] = r0 + 2 * j + (t ? W + td : tu);
    }
}

void maxpool_forward(float *out, int32_t *argmax, const float *inp, int B,
                     int C, int H, int W, int k, int s)
{
    if (k != 2 || s != 2) {
        maxpool_forward_ref(out, argmax, inp, B, C, H, W, k, s);
        return;
    }
    if (H < k || W < k) return; /* empty output (C division truncates) */
    const int Ho = H / 2, Wo = W / 2;
    const long planes = (long)B * C;
#pragma omp parallel for schedule(static) if (planes * H * W >= PAR_MIN_ELEMS)
    for (long pl = 0; pl < planes; pl++)
        for (int oh = 0; oh < Ho; oh++)
            maxpool2_row(out + ((size_t)pl * Ho + oh) * Wo,
                         argmax + ((size_t)pl * Ho + oh) * Wo,
                         inp + (size_t)pl * H * W, 2 * oh * W, W, Wo);
}

void maxpool_forward_ref(float *out, int32_t *argmax, const float *inp, int B,
                         int C, int H, int W, int k, int s)
{
    if (H < k || W < k) return; /* empty output (C division truncates) */
    const int Ho = (H - k) / s + 1, Wo = (W - k) / s + 1;
    const long planes = (long)B * C;
#pragma omp parallel for schedule(static) if (planes * H * W >= PAR_MIN_ELEMS)
    for (long pl = 0; pl < planes; pl++) {
        const float *x = inp + (size_t)pl * H * W;
        float *o = out + (size_t)pl * Ho * Wo;
        int32_t *am = argmax + (size_t)pl * Ho * Wo;
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                int best = oh * s * W + ow * s;
                float bv = x[best];
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) {
                        int idx = (oh * s + i) * W + ow * s + j;
                        /* first maximum wins; NaN propagates */
                        if (x[idx] > bv || isnan(x[idx])) {
                            if (isnan(bv)) continue;
                            bv = x[idx];
                            best = idx;
                        }
                    }
                o[oh * Wo + ow] = bv;
                am[oh * Wo + ow] = best;
            }
    }
}

void maxpool_backward(float *dinp, const float *dout, const int32_t *argmax,
                      int B, int C, int H, int W, int k, int s, int accumulate)
{
    /* empty output when H < k: the input gets no gradient */
    const int Ho = H < k ? 0 : (H - k) / s + 1,
              Wo = W < k ? 0 : (W - k) / s + 1;
    const long planes = (long)B * C;
#pragma omp parallel for schedule(static) if (planes * H * W >= PAR_MIN_ELEMS)
    for (long pl = 0; pl < planes; pl++) {
        float *d = dinp + (size_t)pl * H * W;
        const float *g = dout + (size_t)pl * Ho * Wo;
        const int32_t *am = argmax + (size_t)pl * Ho * Wo;
        if (!accumulate) memset(d, 0, (size_t)H * W * sizeof *d);
        for (int i = 0; i < Ho * Wo; i++)
            d[am[i]] += g[i];
    }
}

void avgpool_forward(float *out, const float *inp, int B, int C, int HW)
{
    const long planes = (long)B * C;
#pragma omp parallel for schedule(static) if (planes * HW >= PAR_MIN_ELEMS)
    for (long pl = 0; pl < planes; pl++) {
        const float *x = inp + (size_t)pl * HW;
        float s = 0;
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < HW; i++)
            s += x[i];
        out[pl] = s / (float)HW;
    }
}

void avgpool_backward(float *dinp, const float *dout, int B, int C, int HW,
                      int accumulate)
{
    const long planes = (long)B * C;
#pragma omp parallel for schedule(static) if (planes * HW >= PAR_MIN_ELEMS)
    for (long pl = 0; pl < planes; pl++) {
        float *d = dinp + (size_t)pl * HW;
        const float g = dout[pl] / (float)HW;
        if (accumulate)
            for (int i = 0; i < HW; i++)
                d[i] += g;
        else
            for (int i = 0; i < HW; i++)
                d[i] = g;
    }
}

/* ---------------------------------------------------------------------------
 * Fully connected. */

/* Rows [r0, r1) of the t-th of T equal parts of n rows. */
static void split_rows(int *r0, int *r1, int n, int t, int T)
{
    *r0 = (int)((long)n * t / T);
    *r1 = (int)((long)n * (t + 1) / T);
}

/* The linear GEMMs split their output rows over threads (each row is
 * computed by one thread, so the result does not depend on the split)
 * when there are this many multiply-adds. */
#define LINEAR_PAR_MIN_MACS 262144

void linear_forward(float *out, const float *inp, const float *weight,
                    const float *bias, int B, int In, int O)
{
    float beta = 0.0f;
    if (bias) {
        for (int b = 0; b < B; b++)
            memcpy(out + (size_t)b * O, bias, (size_t)O * sizeof *out);
        beta = 1.0f;
    }
#pragma omp parallel if ((long)B * In * O >= LINEAR_PAR_MIN_MACS)
    {
        int r0, r1;
        split_rows(&r0, &r1, B, omp_get_thread_num(), omp_get_num_threads());
        gemm_f32(0, 1, r1 - r0, O, In, 1.0f, inp + (size_t)r0 * In, In, weight,
                 In, beta, out + (size_t)r0 * O, O);
    }
}

void linear_backward(float *dinp, float *dweight, float *dbias,
                     const float *dout, const float *inp, const float *weight,
                     int B, int In, int O, int accumulate)
{
#pragma omp parallel if ((long)B * In * O >= LINEAR_PAR_MIN_MACS)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads(), r0, r1;
        split_rows(&r0, &r1, O, t, T);
        gemm_f32(1, 0, r1 - r0, In, B, 1.0f, dout + r0, O, inp, In, 1.0f,
                 dweight + (size_t)r0 * In, In);
        if (dinp) {
            split_rows(&r0, &r1, B, t, T);
            gemm_f32(0, 0, r1 - r0, In, O, 1.0f, dout + (size_t)r0 * O, O,
                     weight, In, accumulate ? 1.0f : 0.0f,
                     dinp + (size_t)r0 * In, In);
        }
    }
    if (dbias)
        for (int o = 0; o < O; o++) {
            float s = 0;
            for (int b = 0; b < B; b++)
                s += dout[(size_t)b * O + o];
            dbias[o] += s;
        }
}

void linear_forward_ref(float *out, const float *inp, const float *weight,
                        const float *bias, int B, int In, int O)
{
    for (int b = 0; b < B; b++)
        for (int o = 0; o < O; o++) {
            float s = bias ? bias[o] : 0.0f;
            for (int i = 0; i < In; i++)
                s += inp[(size_t)b * In + i] * weight[(size_t)o * In + i];
            out[(size_t)b * O + o] = s;
        }
}

void linear_backward_ref(float *dinp, float *dweight, float *dbias,
                         const float *dout, const float *inp,
                         const float *weight, int B, int In, int O,
                         int accumulate)
{
    for (int b = 0; b < B; b++)
        for (int o = 0; o < O; o++) {
            float d = dout[(size_t)b * O + o];
            if (dbias) dbias[o] += d;
            for (int i = 0; i < In; i++)
                dweight[(size_t)o * In + i] += d * inp[(size_t)b * In + i];
        }
    if (!dinp) return;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < In; i++) {
            float s = 0;
            for (int o = 0; o < O; o++)
                s += dout[(size_t)b * O + o] * weight[(size_t)o * In + i];
            if (accumulate)
                dinp[(size_t)b * In + i] += s;
            else
                dinp[(size_t)b * In + i] = s;
        }
}

/* ---------------------------------------------------------------------------
 * Softmax cross-entropy (rows are short: one thread). */

float softmax_xent_forward(float *probs, const float *logits, const int *labels,
                           int B, int C, int *correct)
{
    double loss = 0;
    int ncorrect = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * C;
        float *p = probs + (size_t)b * C;
        int arg = 0;
        for (int c = 1; c < C; c++)
            if (z[c] > z[arg]) arg = c;
        double mx = z[arg], s = 0;
        for (int c = 0; c < C; c++)
            s += exp((double)z[c] - mx);
        double lse = mx + log(s);
        for (int c = 0; c < C; c++)
            p[c] = (float)exp((double)z[c] - lse);
        loss += lse - (double)z[labels[b]];
        ncorrect += arg == labels[b];
    }
    if (correct) *correct = ncorrect;
    return (float)(loss / B);
}

void softmax_xent_backward(float *dlogits, const float *probs,
                           const int *labels, int B, int C)
{
    const float inv = 1.0f / (float)B;
    for (int b = 0; b < B; b++) {
        for (int c = 0; c < C; c++)
            dlogits[(size_t)b * C + c] = probs[(size_t)b * C + c] * inv;
        dlogits[(size_t)b * C + labels[b]] -= inv;
    }
}

/* ---------------------------------------------------------------------------
 * ResNet option-A shortcut. */

void shortcut_forward(float *out, const float *inp, int B, int Cin, int H,
                      int W, int Cout, int stride)
{
    const int Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1;
    const int off = (Cout - Cin) / 2;
    const long planes = (long)B * Cout;
#pragma omp parallel for schedule(static) if (planes * Ho * Wo >= PAR_MIN_ELEMS)
    for (long pl = 0; pl < planes; pl++) {
        int b = (int)(pl / Cout), ci = (int)(pl % Cout) - off;
        float *o = out + (size_t)pl * Ho * Wo;
        if (ci < 0 || ci >= Cin) {
            memset(o, 0, (size_t)Ho * Wo * sizeof *o);
            continue;
        }
        const float *x = inp + ((size_t)b * Cin + ci) * H * W;
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++)
                o[oh * Wo + ow] = x[(size_t)oh * stride * W + ow * stride];
    }
}

void shortcut_backward(float *dinp, const float *dout, int B, int Cin, int H,
                       int W, int Cout, int stride, int accumulate)
{
    const int Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1;
    const int off = (Cout - Cin) / 2;
    const long planes = (long)B * Cin;
#pragma omp parallel for schedule(static) if (planes * H * W >= PAR_MIN_ELEMS)
    for (long pl = 0; pl < planes; pl++) {
        int b = (int)(pl / Cin), co = (int)(pl % Cin) + off;
        float *d = dinp + (size_t)pl * H * W;
        if (!accumulate) memset(d, 0, (size_t)H * W * sizeof *d);
        if (co < 0 || co >= Cout) continue;
        const float *g = dout + ((size_t)b * Cout + co) * Ho * Wo;
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++)
                d[(size_t)oh * stride * W + ow * stride] += g[oh * Wo + ow];
    }
}

/* test_gemm.c - checks gemm_f32 against its naive twin gemm_f32_ref on both
 * backends (our AVX-512 kernel where the CPU has it, and OpenBLAS): every
 * transpose combination, alpha/beta values (beta = 0 over a NaN-filled C
 * must not read C), odd sizes around the 8x48 register block, the conv
 * shapes the layers use, leading dimensions larger than minimal, and that
 * nothing outside the C submatrix is written. Single process, one thread. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "core/rng.h"
#include "nn/gemm.h"

static struct rng R;

static float *falloc(size_t n)
{
    float *a = calloc(n ? n : 1, sizeof *a);
    if (!a) {
        fprintf(stderr, "test_gemm: out of memory\n");
        exit(2);
    }
    return a;
}

static void frandn(float *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        a[i] = (float)rng_normal(&R);
}

/* One case: C (M,N) with ldc = N + padc, A and B with padded leading
 * dimensions; failures are counted by check.h. */
static void run_case(const char *backend, int ta, int tb, int M, int N, int K,
                     float alpha, float beta, int pad)
{
    const int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad;
    const int ldc = N + pad;
    const size_t na = (size_t)(ta ? K : M) * lda;
    const size_t nb = (size_t)(tb ? N : K) * ldb;
    const size_t nc = (size_t)M * ldc;
    float *A = falloc(na), *B = falloc(nb), *C = falloc(nc), *Cr = falloc(nc);
    frandn(A, na);
    frandn(B, nb);
    if (beta == 0.0f) {
        for (size_t i = 0; i < nc; i++)
            C[i] = Cr[i] = NAN;
    } else {
        frandn(C, nc);
        memcpy(Cr, C, nc * sizeof *C);
    }
    /* the padding columns of C must come back untouched: mark them */
    for (int i = 0; i < M; i++)
        for (int j = N; j < ldc; j++)
            C[(size_t)i * ldc + j] = Cr[(size_t)i * ldc + j] = 12345.0f;
    gemm_f32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    gemm_f32_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, Cr, ldc);
    /* |error| of a float dot product of length K grows like sqrt(K) */
    double atol = 1e-5 * (fabs(alpha) * sqrt((double)K + 1) * 4 + 1);
    char what[160];
    snprintf(what, sizeof what, "%s %c%c M=%d N=%d K=%d a=%g b=%g pad=%d",
             backend, ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, beta,
             pad);
    int ok = 1;
    for (size_t i = 0; i < nc && ok; i++)
        ok = !isnan(C[i]);
    CHECK(ok, "%s: NaN in C (beta = 0 read C?)", what);
    CHECK_CLOSE(what, C, Cr, nc, atol, 1e-5);
    free(A);
    free(B);
    free(C);
    free(Cr);
}

/* gemm_f32_rows: B's stored rows scattered (reverse order, gaps between,
 * overlapping views of one buffer as in an implicit im2col) against the
 * reference on the same matrix gathered. */
static void run_rows_case(const char *backend, int ta, int tb, int M, int N,
                          int K, float beta, int overlap)
{
    const int nrows = tb ? N : K, len = tb ? K : N, lda = ta ? M : K;
    const int gap = overlap ? -len + 3 : 5; /* row stride len + gap */
    const size_t span = (size_t)nrows * (len + gap) + len + 16;
    float *A = falloc((size_t)(ta ? K : M) * lda), *store = falloc(span);
    float *Bc = falloc((size_t)nrows * len), *C = falloc((size_t)M * N),
          *Cr = falloc((size_t)M * N);
    const float **rows = malloc(sizeof *rows * (size_t)(nrows ? nrows : 1));
    frandn(A, (size_t)(ta ? K : M) * lda);
    frandn(store, span);
    frandn(C, (size_t)M * N);
    memcpy(Cr, C, sizeof *C * (size_t)M * N);
    for (int i = 0; i < nrows; i++) {
        rows[i] = store + (size_t)(nrows - 1 - i) * (len + gap);
        memcpy(Bc + (size_t)i * len, rows[i], sizeof *Bc * (size_t)len);
    }
    gemm_f32_rows(ta, tb, M, N, K, 1.0f, A, lda, rows, beta, C, N);
    gemm_f32_ref(ta, tb, M, N, K, 1.0f, A, lda, Bc, len, beta, Cr, N);
    char what[160];
    snprintf(what, sizeof what, "%s rows %c%c M=%d N=%d K=%d b=%g overlap=%d",
             backend, ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, beta, overlap);
    CHECK_CLOSE(what, C, Cr, (size_t)M * N,
                1e-5 * (sqrt((double)K + 1) * 4 + 1), 1e-5);
    free(A), free(store), free(Bc), free(C), free(Cr), free(rows);
}

/* gemm_f32_pa: A packed once (gemm_pack_a_whole) gives gemm_f32's bits, on
 * shapes past the M and K blocks and with ragged panels of <= 16 and <= 32
 * columns (the narrow kernels). */
static void run_pa_case(const char *backend, int ta, int M, int N, int K,
                        float beta)
{
    const int lda = (ta ? M : K) + 3, ldb = N + 1;
    const size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)K * ldb;
    const size_t nc = (size_t)M * N;
    float *A = falloc(na), *B = falloc(nb), *C = falloc(nc), *Cw = falloc(nc);
    float *Cr = falloc(nc), *ap = falloc(gemm_packed_a_floats(M, K));
    frandn(A, na);
    frandn(B, nb);
    frandn(C, nc);
    memcpy(Cw, C, nc * sizeof *C);
    memcpy(Cr, C, nc * sizeof *C);
    gemm_pack_a_whole(ap, ta, M, K, A, lda);
    gemm_f32_pa(ta, M, N, K, 1.0f, A, lda, ap, B, ldb, beta, C, N);
    gemm_f32(ta, 0, M, N, K, 1.0f, A, lda, B, ldb, beta, Cw, N);
    gemm_f32_ref(ta, 0, M, N, K, 1.0f, A, lda, B, ldb, beta, Cr, N);
    char what[160];
    snprintf(what, sizeof what, "%s packed A %c M=%d N=%d K=%d b=%g", backend,
             ta ? 'T' : 'N', M, N, K, beta);
    CHECK_CLOSE(what, C, Cw, nc, 0, 0);
    CHECK_CLOSE(what, C, Cr, nc, 1e-5 * (sqrt((double)K + 1) * 4 + 1), 1e-5);
    free(A), free(B), free(C), free(Cw), free(Cr), free(ap);
}

static void run_all(const char *backend)
{
    static const int pa[][3] = {{512, 16, 512}, {256, 64, 256}, {130, 32, 300},
                                {9, 100, 600},  {1, 17, 5},     {200, 96, 70}};
    for (size_t i = 0; i < sizeof pa / sizeof *pa; i++)
        for (int t = 0; t < 2; t++)
            run_pa_case(backend, t, pa[i][0], pa[i][1], pa[i][2],
                        (float)(i & 1));

    /* row-pointer B: odd sizes around the blocks, direct (M <= 64) and
     * packed (M > 64) panels, both transposes of B */
    static const int rs[][3] = {{9, 841, 81},   {16, 1000, 144}, {1, 47, 7},
                                {64, 225, 576}, {65, 300, 300},  {130, 97, 33},
                                {7, 49, 289},   {33, 17, 1}};
    for (size_t i = 0; i < sizeof rs / sizeof *rs; i++)
        for (int t = 0; t < 4; t++)
            run_rows_case(backend, t & 1, t >> 1, rs[i][0], rs[i][1], rs[i][2],
                          t == 3 ? 1.0f : 0.0f, (int)(i & 1));

    static const int sizes[] = {1, 7, 8, 9, 15, 17, 31, 33, 47, 49, 97};
    const int ns = (int)(sizeof sizes / sizeof *sizes);
    /* odd sizes in every dimension, all transposes */
    for (int t = 0; t < 4; t++)
        for (int i = 0; i < ns; i += 2)
            for (int j = 1; j < ns; j += 3)
                for (int k = 0; k < ns; k += 4)
                    run_case(backend, t & 1, t >> 1, sizes[i], sizes[j],
                             sizes[k], 1.0f, 0.0f, 0);
    /* alpha/beta, padded leading dimensions, sizes past the cache blocks */
    static const float ab[][2] = {{1, 0},     {1, 1},    {0.5f, -2}, {-1.5f, 0},
                                  {2, 0.25f}, {0, 0.5f}, {0, 0}};
    for (int t = 0; t < 4; t++)
        for (size_t u = 0; u < sizeof ab / sizeof *ab; u++) {
            run_case(backend, t & 1, t >> 1, 33, 97, 17, ab[u][0], ab[u][1], 5);
            run_case(backend, t & 1, t >> 1, 130, 400, 300, ab[u][0], ab[u][1],
                     3);
        }
    run_case(backend, 0, 0, 19, 1700, 530, 1.0f, 1.0f, 1);
    run_case(backend, 1, 1, 9, 50, 0, 1.0f, 0.5f, 0); /* K = 0 scales C */
    /* the conv GEMMs (layers.c) at the chunk widths it uses:
     * forward NN (Cout, n*P, Cin*9), dW NT (Cout, Cin*9, n*P) with beta 1,
     * dcol TN (Cin*9, n*P, Cout) */
    static const int conv[][2] = {
        {16, 784}, {32, 588}, {64, 539}, {128, 513}, {256, 513}};
    for (size_t c = 0; c < sizeof conv / sizeof *conv; c++) {
        int ch = conv[c][0], n = conv[c][1];
        run_case(backend, 0, 0, ch, n, ch * 9, 1.0f, 0.0f, 0);
        run_case(backend, 0, 1, ch, ch * 9, n, 1.0f, 1.0f, 0);
        run_case(backend, 1, 0, ch * 9, n, ch, 1.0f, 0.0f, 0);
    }
    /* pruned nets' dW GEMMs: ragged transposed panels (N = Cin*9 < 48 or
     * not a multiple of 16), deep K: through the dot path (over K blocks,
     * beta 1 and 0) and, with it forbidden, through the packed one */
    static const int pruned[][3] = {{4, 36, 1000},
                                    {7, 63, 600},
                                    {2, 9, 300},
                                    {12, 108, 517},
                                    {3, 13, 4500}};
    for (int dot = 1; dot >= 0; dot--) {
        gemm_set_dot(dot);
        for (size_t c = 0; c < sizeof pruned / sizeof *pruned; c++)
            run_case(backend, 0, 1, pruned[c][0], pruned[c][1], pruned[c][2],
                     1.0f, (float)(c & 1), 0);
    }
    gemm_set_dot(1);
    /* linear layers: (B, O, In) NT, dW TN, dinp NN */
    run_case(backend, 0, 1, 128, 10, 64, 1.0f, 1.0f, 0);
    run_case(backend, 1, 0, 10, 64, 128, 1.0f, 1.0f, 0);
    run_case(backend, 0, 0, 128, 512, 512, 1.0f, 0.0f, 0);
}

/* gemm_interleave and gemm_deinterleave against their plain twins, bit
 * for bit, on the current backend (and the round trip to the source): lane
 * counts below, at and past the transpose width (8 / 16), lengths with and
 * without a tail, groups wider than the rows (lanes past n and padding past ld
 * keep their sentinel). */
static void run_interleave(const char *backend)
{
    static const int nsz[] = {1, 3, 8, 9, 15, 16, 17, 31, 40};
    static const int lsz[] = {1, 7, 8, 16, 28, 33};
    for (size_t a = 0; a < sizeof nsz / sizeof *nsz; a++)
        for (size_t b = 0; b < sizeof lsz / sizeof *lsz; b++)
            for (int extra = 0; extra <= 5; extra += 5) {
                const int n = nsz[a], len = lsz[b], ld = n + extra;
                const size_t nd = (size_t)len * ld + 7;
                float *src = malloc((size_t)n * len * sizeof *src);
                const float **rows = malloc((size_t)n * sizeof *rows);
                float *d = malloc(nd * sizeof *d), *e = malloc(nd * sizeof *e);
                for (int j = 0; j < n; j++) {
                    rows[j] = src + (size_t)j * len;
                    for (int i = 0; i < len; i++)
                        src[(size_t)j * len + i] = (float)rng_normal(&R);
                }
                for (size_t i = 0; i < nd; i++)
                    d[i] = e[i] = -77.0f;
                gemm_interleave(d, ld, rows, n, len);
                gemm_interleave_ref(e, ld, rows, n, len);
                size_t bad = 0;
                for (size_t i = 0; i < nd; i++)
                    bad += memcmp(&d[i], &e[i], sizeof *d) != 0;
                CHECK(bad == 0,
                      "%s gemm_interleave n %d ld %d len %d: %zu of %zu "
                      "floats differ from the plain twin",
                      backend, n, ld, len, bad, nd);
                /* back: lanes to rows of len + 3 (the 3 past len keep
                 * their sentinel), from d with its sentinel lanes */
                const size_t nr = (size_t)n * (len + 3);
                float *o = malloc(nr * sizeof *o), *q = malloc(nr * sizeof *q);
                for (size_t i = 0; i < nr; i++)
                    o[i] = q[i] = -55.0f;
                gemm_deinterleave(o, len + 3, d, ld, n, len);
                gemm_deinterleave_ref(q, len + 3, d, ld, n, len);
                bad = 0;
                for (size_t i = 0; i < nr; i++)
                    bad += memcmp(&o[i], &q[i], sizeof *o) != 0;
                for (int j = 0; j < n; j++)
                    bad += memcmp(o + (size_t)j * (len + 3), rows[j],
                                  (size_t)len * sizeof *o) != 0;
                CHECK(bad == 0,
                      "%s gemm_deinterleave n %d ld %d len %d: %zu floats or "
                      "rows differ from the plain twin or the source",
                      backend, n, ld, len, bad);
                free(o), free(q);
                free(src), free(rows), free(d), free(e);
            }
}

int main(void)
{
    rng_seed(&R, 7);
    CHECK(gemm_set_backend(GEMM_BACKEND_BLAS) == 0, "cannot select BLAS");
    CHECK(gemm_get_backend() == GEMM_BACKEND_BLAS, "backend is not BLAS");
    run_all("blas");
    run_interleave("blas");
    if (gemm_set_backend(GEMM_BACKEND_AVX512) == 0) {
        CHECK(gemm_get_backend() == GEMM_BACKEND_AVX512,
              "backend is not AVX512");
        run_all("avx512");
        run_interleave("avx512");
        gemm_release_thread_buffers();
        run_case("avx512 after release", 0, 1, 64, 576, 539, 1.0f, 1.0f, 0);
    } else {
        printf("skip: this CPU has no AVX-512\n");
    }
    if (gemm_set_backend(GEMM_BACKEND_AVX2) == 0) {
        CHECK(gemm_get_backend() == GEMM_BACKEND_AVX2, "backend is not AVX2");
        run_all("avx2");
        run_interleave("avx2");
    } else {
        printf("skip: this CPU has no AVX2 + FMA\n");
    }
    CHECK(gemm_set_backend(GEMM_BACKEND_AUTO) == 0, "cannot select AUTO");
    enum gemm_backend b = gemm_get_backend();
    CHECK(b == GEMM_BACKEND_BLAS || b == GEMM_BACKEND_AVX512 ||
              b == GEMM_BACKEND_AVX2,
          "AUTO resolved to %d", (int)b);
    return check_finish("test_gemm");
}

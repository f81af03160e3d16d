/* gemm.c - packed SGEMM with an AVX-512 microkernel (see gemm.h).
 * Loop nest (GotoBLAS/BLIS order, row-major C): columns of C in blocks of
 * GEMM_NC, depth in blocks of GEMM_KC (op(B) block packed into 48-column
 * micro-panels, kept in L2), rows in blocks of GEMM_MC (op(A) block packed
 * into 8-row micro-panels); for each A micro-panel (in L1) the kernel walks
 * every B micro-panel. The 8x48 register block holds C in 24 zmm
 * accumulators: per k step 3 vector loads of B, 8 broadcasts of A, 24 FMAs.
 * Edge tiles are zero-padded in the packed panels and stored with masks.
 * When C has few rows (M <= GEMM_DIRECT_B_MAX_M) each B panel is used only
 * a few times, so an untransposed op(B) is read in place instead of packed
 * (the conv forward GEMMs with Cout <= 64 and K = Cin*9).
 * Block sizes (Zen5: 48 KiB L1d, 1 MiB L2 per core): A micro-panel
 * 288x8 floats = 9 KiB in L1, B block 288x384 = 432 KiB in L2. KC = 288 is
 * a multiple of the 9 taps of a 3x3 conv.
 * The AVX-512 code is compiled with function-level target attributes, so
 * the rest of the project keeps its -march and the binary still runs on
 * AVX2-only machines (the dispatcher then picks cblas_sgemm). */
#include "nn/gemm.h"

#include <cblas.h>
#include <immintrin.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GEMM_MR 8
#define GEMM_NR 48
#ifndef GEMM_KC
#define GEMM_KC 288
#endif
#ifndef GEMM_NC
#define GEMM_NC 384
#endif
#ifndef GEMM_MC
#define GEMM_MC 128
#endif

/* op(B) is read in place, unpacked, when not transposed and M <= this. */
#ifndef GEMM_DIRECT_B_MAX_M
#define GEMM_DIRECT_B_MAX_M 64
#endif

#define GEMM_TARGET                                                            \
    __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,fma")))
#define GEMM_TARGET2 __attribute__((target("avx2,fma")))

/* ---------------------------------------------------------------------------
 * Backend selection. 0 = not decided yet. */

static atomic_int gemm_mode; /* 0 (not decided yet) or a backend */

static int gemm_cpu_has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") &&
           __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
}

static int gemm_cpu_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* ABC_GEMM=blas forces OpenBLAS, ABC_GEMM=avx2 our AVX2 kernels (where the
 * CPU has them: the AVX2-only path, run on an AVX-512 machine); otherwise
 * the widest kernels the CPU runs. */
static int gemm_auto_mode(void)
{
    const char *e = getenv("ABC_GEMM");
    if (e && strcmp(e, "blas") == 0) return GEMM_BACKEND_BLAS;
    if (e && strcmp(e, "avx2") == 0 && gemm_cpu_has_avx2())
        return GEMM_BACKEND_AVX2;
    if (gemm_cpu_has_avx512()) return GEMM_BACKEND_AVX512;
    return gemm_cpu_has_avx2() ? GEMM_BACKEND_AVX2 : GEMM_BACKEND_BLAS;
}

int gemm_set_backend(enum gemm_backend b)
{
    int m;
    switch (b) {
    case GEMM_BACKEND_BLAS:
        m = GEMM_BACKEND_BLAS;
        break;
    case GEMM_BACKEND_AVX512:
        if (!gemm_cpu_has_avx512()) return -1;
        m = GEMM_BACKEND_AVX512;
        break;
    case GEMM_BACKEND_AVX2:
        if (!gemm_cpu_has_avx2()) return -1;
        m = GEMM_BACKEND_AVX2;
        break;
    default:
        m = gemm_auto_mode();
        break;
    }
    atomic_store_explicit(&gemm_mode, m, memory_order_relaxed);
    return 0;
}

enum gemm_backend gemm_get_backend(void)
{
    int m = atomic_load_explicit(&gemm_mode, memory_order_relaxed);
    if (!m) {
        /* every thread computes the same value, so a race is harmless */
        m = gemm_auto_mode();
        atomic_store_explicit(&gemm_mode, m, memory_order_relaxed);
    }
    return (enum gemm_backend)m;
}

const char *gemm_backend_name(void)
{
    switch (gemm_get_backend()) {
    case GEMM_BACKEND_AVX512:
        return "avx512 (ours)";
    case GEMM_BACKEND_AVX2:
        return "avx2 (ours)";
    default:
        return "openblas";
    }
}

/* ---------------------------------------------------------------------------
 * Per-thread packing buffer (64-byte aligned), grown on demand. */

static _Thread_local float *gemm_buf;
static _Thread_local size_t gemm_buf_cap; /* floats */

static float *gemm_buffer(size_t nfloats)
{
    if (nfloats <= gemm_buf_cap) return gemm_buf;
    size_t bytes = (nfloats * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (!p) return NULL;
    free(gemm_buf);
    gemm_buf = p;
    gemm_buf_cap = bytes / sizeof(float);
    return p;
}

static _Thread_local float *gemm_gather_buf;
static _Thread_local size_t gemm_gather_cap;

void gemm_release_thread_buffers(void)
{
    free(gemm_buf);
    gemm_buf = NULL;
    gemm_buf_cap = 0;
    free(gemm_gather_buf);
    gemm_gather_buf = NULL;
    gemm_gather_cap = 0;
}

/* ---------------------------------------------------------------------------
 * Shared helpers. */

/* Where the rows of the stored B lie: row i at b + i * ldb, or at rows[i]
 * (gemm_f32_rows: the rows of an implicit im2col). "Row" is of B as stored:
 * op(B)'s rows when not transposed, its columns when transposed. */
struct gemm_b {
    const float *b;
    size_t ldb;
    const float *const *rows;
};

static inline const float *gemm_brow(const struct gemm_b *B, size_t i)
{
    return B->rows ? B->rows[i] : B->b + i * B->ldb;
}

static void gemm_blas(int transa, int transb, int M, int N, int K, float alpha,
                      const float *A, int lda, const float *B, int ldb,
                      float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, transa ? CblasTrans : CblasNoTrans,
                transb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B,
                ldb, beta, C, ldc);
}

/* C = beta * C (beta == 0 writes zeros without reading C). */
static void gemm_scale(int M, int N, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f)
            memset(c, 0, (size_t)N * sizeof *c);
        else if (beta != 1.0f)
            for (int j = 0; j < N; j++)
                c[j] *= beta;
    }
}

/* ---------------------------------------------------------------------------
 * AVX-512 path. */

/* Lanes [0, n) of a 16-lane vector (n clipped to [0, 16]). */
GEMM_TARGET static inline __mmask16 gemm_mask(int n)
{
    if (n >= 16) return (__mmask16)0xFFFF;
    if (n <= 0) return 0;
    return (__mmask16)((1u << n) - 1);
}

/* v[c] <- column c of the 8x8 matrix whose row r is v[r]. */
__attribute__((always_inline)) GEMM_TARGET2 static inline void
gemm_t8(__m256 v[8])
{
    __m256 u[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        u[i] = _mm256_unpacklo_ps(v[i], v[i + 1]);
        u[i + 1] = _mm256_unpackhi_ps(v[i], v[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        s[i] = _mm256_shuffle_ps(u[i], u[i + 2], 0x44);
        s[i + 1] = _mm256_shuffle_ps(u[i], u[i + 2], 0xEE);
        s[i + 2] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0x44);
        s[i + 3] = _mm256_shuffle_ps(u[i + 1], u[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_permute2f128_ps(s[i], s[4 + i], 0x20);
        v[4 + i] = _mm256_permute2f128_ps(s[i], s[4 + i], 0x31);
    }
}

/* 8x8 transpose of rows src[r][off + 0..7] (r < 8) into dst[c*dld + r]. */
__attribute__((always_inline)) GEMM_TARGET2 static inline void
gemm_transpose8(float *dst, size_t dld, const float *const *src, size_t off)
{
    __m256 v[8];
    for (int i = 0; i < 8; i++)
        v[i] = _mm256_loadu_ps(src[i] + off);
    gemm_t8(v);
    for (int i = 0; i < 8; i++)
        _mm256_storeu_ps(dst + (size_t)i * dld, v[i]);
}

/* Packs rows [0, mc) x depth [0, kc) of op(A) (origin at a, already offset
 * to the block) into 8-row micro-panels: ap[q][p][r] = op(A)[8q + r][p],
 * rows past mc zero. AVX2 code: both backends pack A alike. */
GEMM_TARGET2 static void gemm_pack_a(float *restrict ap, const float *a,
                                     int lda, int transa, int mc, int kc)
{
    for (int i0 = 0; i0 < mc; i0 += GEMM_MR) {
        int mr = mc - i0 < GEMM_MR ? mc - i0 : GEMM_MR;
        if (transa) {
            /* op(A)[i][p] = a[p*lda + i]: 8 contiguous floats per p */
            for (int p = 0; p < kc; p++) {
                const float *s = a + (size_t)p * lda + i0;
                float *d = ap + (size_t)p * GEMM_MR;
                if (mr == GEMM_MR)
                    _mm256_storeu_ps(d, _mm256_loadu_ps(s));
                else
                    for (int r = 0; r < GEMM_MR; r++)
                        d[r] = r < mr ? s[r] : 0.0f;
            }
        } else if (mr == GEMM_MR) {
            /* op(A)[i][p] = a[i*lda + p]: transpose 8 rows, 8 p at a time */
            const float *rows[GEMM_MR];
            for (int r = 0; r < GEMM_MR; r++)
                rows[r] = a + (size_t)(i0 + r) * lda;
            int p = 0;
            for (; p + 8 <= kc; p += 8)
                gemm_transpose8(ap + (size_t)p * GEMM_MR, GEMM_MR, rows,
                                (size_t)p);
            for (; p < kc; p++)
                for (int r = 0; r < GEMM_MR; r++)
                    ap[(size_t)p * GEMM_MR + r] = rows[r][p];
        } else {
            for (int p = 0; p < kc; p++)
                for (int r = 0; r < GEMM_MR; r++)
                    ap[(size_t)p * GEMM_MR + r] =
                        r < mr ? a[(size_t)(i0 + r) * lda + p] : 0.0f;
        }
        ap += (size_t)kc * GEMM_MR;
    }
}

/* v[c] <- column c of the 16x16 matrix whose row r is v[r]. */
__attribute__((always_inline)) GEMM_TARGET static inline void
gemm_t16(__m512 v[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(v[i], v[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        v[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        v[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        v[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        v[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    /* v[4g + k] holds, per 128-bit lane L, column 4L + k of rows 4g..4g+3 */
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(v[i], v[4 + i], 0x88);
        t[4 + i] = _mm512_shuffle_f32x4(v[i], v[4 + i], 0xDD);
        t[8 + i] = _mm512_shuffle_f32x4(v[8 + i], v[12 + i], 0x88);
        t[12 + i] = _mm512_shuffle_f32x4(v[8 + i], v[12 + i], 0xDD);
    }
    for (int i = 0; i < 4; i++) {
        /* columns i, 4+i, 8+i, 12+i */
        v[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        v[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);
        v[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
        v[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xDD);
    }
}

/* 16x16 transpose of rows src[r][off + 0..15] (r < 16) into
 * dst[c*dld + r]. */
__attribute__((always_inline)) GEMM_TARGET static inline void
gemm_transpose16(float *dst, size_t dld, const float *const *src, size_t off)
{
    __m512 v[16];
    for (int i = 0; i < 16; i++)
        v[i] = _mm512_loadu_ps(src[i] + off);
    gemm_t16(v);
    for (int i = 0; i < 16; i++)
        _mm512_storeu_ps(dst + (size_t)i * dld, v[i]);
}

/* A row of zeros, the missing columns of a ragged transposed B panel. */
static const float gemm_zeros[GEMM_KC];

/* rows[c] <- where column j + c of op(B) (B^T stored: row j + c) starts at
 * depth pc, for c < nr; gemm_zeros for the panel's other columns. */
static void gemm_panel_rows(const float **rows, const struct gemm_b *b, int j,
                            int pc, int nr)
{
    for (int c = 0; c < GEMM_NR; c++)
        rows[c] =
            c < nr ? gemm_brow(b, (size_t)j + (size_t)c) + pc : gemm_zeros;
}

/* Packs depth [pc, pc+kc) x columns [jc, jc+nc) of op(B) into 48-column
 * micro-panels: bp[q][p][c] = op(B)[pc + p][jc + 48q + c], columns past nc
 * zero. */
GEMM_TARGET static void gemm_pack_b(float *restrict bp, const struct gemm_b *b,
                                    int transb, int pc, int jc, int kc, int nc)
{
    for (int j0 = 0; j0 < nc; j0 += GEMM_NR) {
        int nr = nc - j0 < GEMM_NR ? nc - j0 : GEMM_NR;
        if (!transb) {
            /* op(B)[p][j] = row p at j: 48 contiguous floats per p */
            const __mmask16 m0 = gemm_mask(nr), m1 = gemm_mask(nr - 16),
                            m2 = gemm_mask(nr - 32);
            for (int p = 0; p < kc; p++) {
                const float *s = gemm_brow(b, (size_t)pc + (size_t)p) + jc + j0;
                float *d = bp + (size_t)p * GEMM_NR;
                _mm512_store_ps(d, _mm512_maskz_loadu_ps(m0, s));
                _mm512_store_ps(d + 16, _mm512_maskz_loadu_ps(m1, s + 16));
                _mm512_store_ps(d + 32, _mm512_maskz_loadu_ps(m2, s + 32));
            }
        } else {
            /* op(B)[p][j] = row j at p: 16x16 transposes. A ragged panel
             * (the narrow dW GEMMs of pruned nets: N = Cin*9 = 36, 63...)
             * reads its missing columns from a row of zeros, so it takes
             * the same vector path; the depth tail is scalar. */
            const float *rows[GEMM_NR];
            gemm_panel_rows(rows, b, jc + j0, pc, nr);
            const int ng = (nr + 15) / 16; /* column groups holding data */
            int p = 0;
            for (; p + 16 <= kc; p += 16) {
                for (int c = 0; c < 16 * ng; c += 16)
                    gemm_transpose16(bp + (size_t)p * GEMM_NR + c, GEMM_NR,
                                     rows + c, (size_t)p);
                for (int q = 0; q < 16 && ng < 3; q++)
                    memset(bp + (size_t)(p + q) * GEMM_NR + 16 * ng, 0,
                           (size_t)(GEMM_NR - 16 * ng) * sizeof *bp);
            }
            for (; p < kc; p++)
                for (int c = 0; c < GEMM_NR; c++)
                    bp[(size_t)p * GEMM_NR + c] = rows[c][p];
        }
        bp += (size_t)kc * GEMM_NR;
    }
}

/* Pieces of the 8x48 kernels: accumulators c<row><vector>, the rank-1
 * update of row i with B vectors b0..b2, and the stores of row i to C (r)
 * as alpha * acc + beta * C, full-width or under the masks k0..k2. */
#define ROW_DECL(i)                                                            \
    __m512 c##i##0 = _mm512_setzero_ps(), c##i##1 = _mm512_setzero_ps(),       \
           c##i##2 = _mm512_setzero_ps()
#define ROW_FMA(i)                                                             \
    if (i < MR) {                                                              \
        __m512 av = _mm512_set1_ps(ap[i]);                                     \
        c##i##0 = _mm512_fmadd_ps(av, b0, c##i##0);                            \
        if (NV > 1) c##i##1 = _mm512_fmadd_ps(av, b1, c##i##1);                \
        if (NV > 2) c##i##2 = _mm512_fmadd_ps(av, b2, c##i##2);                \
    }
#define ROW_STORE(i)                                                           \
    if (i < m) {                                                               \
        float *r = c + (size_t)(i)*ldc;                                        \
        if (beta == 0.0f) {                                                    \
            _mm512_storeu_ps(r, _mm512_mul_ps(va, c##i##0));                   \
            _mm512_storeu_ps(r + 16, _mm512_mul_ps(va, c##i##1));              \
            _mm512_storeu_ps(r + 32, _mm512_mul_ps(va, c##i##2));              \
        } else {                                                               \
            _mm512_storeu_ps(r, _mm512_fmadd_ps(vb, _mm512_loadu_ps(r),        \
                                                _mm512_mul_ps(va, c##i##0)));  \
            _mm512_storeu_ps(r + 16,                                           \
                             _mm512_fmadd_ps(vb, _mm512_loadu_ps(r + 16),      \
                                             _mm512_mul_ps(va, c##i##1)));     \
            _mm512_storeu_ps(r + 32,                                           \
                             _mm512_fmadd_ps(vb, _mm512_loadu_ps(r + 32),      \
                                             _mm512_mul_ps(va, c##i##2)));     \
        }                                                                      \
    }
#define ROW_MSTORE(i)                                                          \
    if (i < m) {                                                               \
        float *r = c + (size_t)(i)*ldc;                                        \
        __m512 o0 = _mm512_mul_ps(va, c##i##0),                                \
               o1 = _mm512_mul_ps(va, c##i##1),                                \
               o2 = _mm512_mul_ps(va, c##i##2);                                \
        if (beta != 0.0f) {                                                    \
            o0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k0, r), o0);        \
            o1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k1, r + 16), o1);   \
            o2 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k2, r + 32), o2);   \
        }                                                                      \
        _mm512_mask_storeu_ps(r, k0, o0);                                      \
        _mm512_mask_storeu_ps(r + 16, k1, o1);                                 \
        _mm512_mask_storeu_ps(r + 32, k2, o2);                                 \
    }
/* C tile (m <= 8 rows, n <= 48 columns) = alpha * ap . bp + beta * C over
 * depth kc, ap (kc, 8) a packed micro-panel, bp (kc, 48) with row stride
 * ldbk: a packed micro-panel (48) or op(B) itself (no transpose, 48 valid
 * columns). */
#define TILE_DECL()                                                            \
    ROW_DECL(0);                                                               \
    ROW_DECL(1);                                                               \
    ROW_DECL(2);                                                               \
    ROW_DECL(3);                                                               \
    ROW_DECL(4);                                                               \
    ROW_DECL(5);                                                               \
    ROW_DECL(6);                                                               \
    ROW_DECL(7)
#define TILE_FMA()                                                             \
    ROW_FMA(0);                                                                \
    ROW_FMA(1);                                                                \
    ROW_FMA(2);                                                                \
    ROW_FMA(3);                                                                \
    ROW_FMA(4);                                                                \
    ROW_FMA(5);                                                                \
    ROW_FMA(6);                                                                \
    ROW_FMA(7)
/* Stores the tile (m rows, n columns) at c; ends the function. */
#define TILE_STORE()                                                           \
    do {                                                                       \
        const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);    \
        if (n == GEMM_NR) {                                                    \
            ROW_STORE(0)                                                       \
            ROW_STORE(1)                                                       \
            ROW_STORE(2)                                                       \
            ROW_STORE(3)                                                       \
            ROW_STORE(4)                                                       \
            ROW_STORE(5)                                                       \
            ROW_STORE(6)                                                       \
            ROW_STORE(7)                                                       \
            return;                                                            \
        }                                                                      \
        const __mmask16 k0 = gemm_mask(n), k1 = gemm_mask(n - 16),             \
                        k2 = gemm_mask(n - 32);                                \
        ROW_MSTORE(0)                                                          \
        ROW_MSTORE(1)                                                          \
        ROW_MSTORE(2)                                                          \
        ROW_MSTORE(3)                                                          \
        ROW_MSTORE(4)                                                          \
        ROW_MSTORE(5)                                                          \
        ROW_MSTORE(6)                                                          \
        ROW_MSTORE(7)                                                          \
    } while (0)

/* The kernel for tiles of at most MR live rows and NV live vectors of 16
 * columns (compile-time constants in each instantiation below): rows past
 * MR and vectors past NV cost no FMAs, so the odd widths of pruned nets
 * (Cout 9 = 8 + 1, 6, 4...) do not pay for a full 8-row block, nor a
 * ragged last panel of <= 32 columns for all 48. m <= MR rows and
 * n <= 16 NV columns are stored. */
__attribute__((always_inline)) GEMM_TARGET static inline void
gemm_kernel_tile(const int MR, const int NV, int kc, const float *restrict ap,
                 const float *restrict bp, size_t ldbk, float *c, size_t ldc,
                 float alpha, float beta, int m, int n)
{
    TILE_DECL();
#pragma GCC unroll 4
    for (int p = 0; p < kc; p++) {
        const __m512 z = _mm512_setzero_ps();
        __m512 b0 = _mm512_loadu_ps(bp),
               b1 = NV > 1 ? _mm512_loadu_ps(bp + 16) : z,
               b2 = NV > 2 ? _mm512_loadu_ps(bp + 32) : z;
        TILE_FMA();
        ap += GEMM_MR;
        bp += ldbk;
    }
    TILE_STORE();
}

/* The same tile with B's row p read in place at rows[p] + off (an implicit
 * im2col: no packed copy of B at all). */
__attribute__((always_inline)) GEMM_TARGET static inline void
gemm_kernel_rows_tile(const int MR, int kc, const float *restrict ap,
                      const float *const *rows, size_t off, float *c,
                      size_t ldc, float alpha, float beta, int m, int n)
{
    const int NV = 3;
    TILE_DECL();
#pragma GCC unroll 4
    for (int p = 0; p < kc; p++) {
        const float *bp = rows[p] + off;
        __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16),
               b2 = _mm512_loadu_ps(bp + 32);
        TILE_FMA();
        ap += GEMM_MR;
    }
    TILE_STORE();
}

/* A kernel on packed (or strided) B: name##r for tiles of at most r rows
 * and nv vectors of 16 columns. */
#define GEMM_KERNEL_PACKED(name, r, nv)                                        \
    GEMM_TARGET static void name##r(int kc, const float *restrict ap,          \
                                    const float *restrict bp, size_t ldbk,     \
                                    float *c, size_t ldc, float alpha,         \
                                    float beta, int m, int n)                  \
    {                                                                          \
        gemm_kernel_tile(r, nv, kc, ap, bp, ldbk, c, ldc, alpha, beta, m, n);  \
    }
#define GEMM_KERNEL_MR(r)                                                      \
    GEMM_KERNEL_PACKED(gemm_kernel_, r, 3)                                     \
    GEMM_KERNEL_PACKED(gemm_kernel_n16_, r, 1)                                 \
    GEMM_KERNEL_PACKED(gemm_kernel_n32_, r, 2)                                 \
    GEMM_TARGET static void gemm_kernel_rows_##r(                              \
        int kc, const float *restrict ap, const float *const *rows,            \
        size_t off, float *c, size_t ldc, float alpha, float beta, int m,      \
        int n)                                                                 \
    {                                                                          \
        gemm_kernel_rows_tile(r, kc, ap, rows, off, c, ldc, alpha, beta, m,    \
                              n);                                              \
    }
GEMM_KERNEL_MR(1)
GEMM_KERNEL_MR(2)
GEMM_KERNEL_MR(3)
GEMM_KERNEL_MR(4)
GEMM_KERNEL_MR(5)
GEMM_KERNEL_MR(6)
GEMM_KERNEL_MR(7)
GEMM_KERNEL_MR(8)

/* ---------------------------------------------------------------------------
 * AVX2 path (CPUs without AVX-512): the same packed panels and loop nest,
 * with 16 ymm registers. An 8x48 tile is computed as 4x24 blocks (12
 * accumulators; per k step 3 vector loads of B and 4 broadcasts of A for
 * 12 FMAs), each reading its half of the packed A panel (stride 8) and of
 * the B panel (stride 48) or of B's rows in place. */

/* gemm_pack_b for the AVX2 path: plain copies, 8x8 transposes. */
GEMM_TARGET2 static void gemm_pack_b_avx2(float *restrict bp,
                                          const struct gemm_b *b, int transb,
                                          int pc, int jc, int kc, int nc)
{
    for (int j0 = 0; j0 < nc; j0 += GEMM_NR) {
        int nr = nc - j0 < GEMM_NR ? nc - j0 : GEMM_NR;
        if (!transb) {
            for (int p = 0; p < kc; p++) {
                const float *s = gemm_brow(b, (size_t)pc + (size_t)p) + jc + j0;
                float *d = bp + (size_t)p * GEMM_NR;
                memcpy(d, s, (size_t)nr * sizeof *d);
                memset(d + nr, 0, (size_t)(GEMM_NR - nr) * sizeof *d);
            }
        } else {
            const float *rows[GEMM_NR];
            gemm_panel_rows(rows, b, jc + j0, pc, nr);
            int p = 0;
            for (; p + 8 <= kc; p += 8)
                for (int c = 0; c < GEMM_NR; c += 8)
                    gemm_transpose8(bp + (size_t)p * GEMM_NR + c, GEMM_NR,
                                    rows + c, (size_t)p);
            for (; p < kc; p++)
                for (int c = 0; c < GEMM_NR; c++)
                    bp[(size_t)p * GEMM_NR + c] = rows[c][p];
        }
        bp += (size_t)kc * GEMM_NR;
    }
}

/* Row r (n <= 24 columns) = alpha * (a0, a1, a2) + beta * r. */
__attribute__((always_inline)) GEMM_TARGET2 static inline void
gemm2_store(float *r, __m256 a0, __m256 a1, __m256 a2, float alpha, float beta,
            int n)
{
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    __m256 o0 = _mm256_mul_ps(va, a0), o1 = _mm256_mul_ps(va, a1),
           o2 = _mm256_mul_ps(va, a2);
    if (n == 24) {
        if (beta != 0.0f) {
            o0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(r), o0);
            o1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(r + 8), o1);
            o2 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(r + 16), o2);
        }
        _mm256_storeu_ps(r, o0);
        _mm256_storeu_ps(r + 8, o1);
        _mm256_storeu_ps(r + 16, o2);
        return;
    }
    float t[24];
    _mm256_storeu_ps(t, o0);
    _mm256_storeu_ps(t + 8, o1);
    _mm256_storeu_ps(t + 16, o2);
    for (int j = 0; j < n; j++)
        r[j] = beta == 0.0f ? t[j] : t[j] + beta * r[j];
}

/* The 4x24 block: rows [0, MR4) of the A panel (stride GEMM_MR) against 24
 * columns of B, read at bp + p*ldbk (ROWS == 0) or at rows[p] + off;
 * stores m <= MR4 rows and n <= 24 columns at c. */
__attribute__((always_inline)) GEMM_TARGET2 static inline void
gemm2_block(const int MR4, const int ROWS, int kc, const float *restrict ap,
            const float *restrict bp, size_t ldbk, const float *const *rows,
            size_t off, float *c, size_t ldc, float alpha, float beta, int m,
            int n)
{
    __m256 acc[4][3];
#pragma GCC unroll 4
    for (int i = 0; i < MR4; i++)
        acc[i][0] = acc[i][1] = acc[i][2] = _mm256_setzero_ps();
#pragma GCC unroll 2
    for (int p = 0; p < kc; p++) {
        const float *b = ROWS ? rows[p] + off : bp + (size_t)p * ldbk;
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8),
                     b2 = _mm256_loadu_ps(b + 16);
#pragma GCC unroll 4
        for (int i = 0; i < MR4; i++) {
            const __m256 av = _mm256_broadcast_ss(ap + i);
            acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
            acc[i][2] = _mm256_fmadd_ps(av, b2, acc[i][2]);
        }
        ap += GEMM_MR;
    }
#pragma GCC unroll 4
    for (int i = 0; i < MR4; i++)
        if (i < m)
            gemm2_store(c + (size_t)i * ldc, acc[i][0], acc[i][1], acc[i][2],
                        alpha, beta, n);
}

/* The 8x48 tile of at most MR live rows (a compile-time constant) as 4x24
 * blocks; m <= MR rows and n <= 48 columns are stored. */
__attribute__((always_inline)) GEMM_TARGET2 static inline void
gemm2_tile(const int MR, const int ROWS, int kc, const float *restrict ap,
           const float *restrict bp, size_t ldbk, const float *const *rows,
           size_t off, float *c, size_t ldc, float alpha, float beta, int m,
           int n)
{
    for (int c0 = 0; c0 < n; c0 += 24) {
        const int nn = n - c0 < 24 ? n - c0 : 24;
        const float *b = ROWS ? NULL : bp + c0;
        gemm2_block(MR < 4 ? MR : 4, ROWS, kc, ap, b, ldbk, rows,
                    off + (size_t)c0, c + c0, ldc, alpha, beta, m, nn);
        if (MR > 4)
            gemm2_block(MR > 4 ? MR - 4 : 1, ROWS, kc, ap + 4, b, ldbk, rows,
                        off + (size_t)c0, c + 4 * ldc + c0, ldc, alpha, beta,
                        m - 4, nn);
    }
}

#define GEMM2_KERNEL_MR(r)                                                     \
    GEMM_TARGET2 static void gemm2_kernel_##r(                                 \
        int kc, const float *restrict ap, const float *restrict bp,            \
        size_t ldbk, float *c, size_t ldc, float alpha, float beta, int m,     \
        int n)                                                                 \
    {                                                                          \
        gemm2_tile(r, 0, kc, ap, bp, ldbk, NULL, 0, c, ldc, alpha, beta, m,    \
                   n);                                                         \
    }                                                                          \
    GEMM_TARGET2 static void gemm2_kernel_rows_##r(                            \
        int kc, const float *restrict ap, const float *const *rows,            \
        size_t off, float *c, size_t ldc, float alpha, float beta, int m,      \
        int n)                                                                 \
    {                                                                          \
        gemm2_tile(r, 1, kc, ap, NULL, 0, rows, off, c, ldc, alpha, beta, m,   \
                   n);                                                         \
    }
GEMM2_KERNEL_MR(1)
GEMM2_KERNEL_MR(2)
GEMM2_KERNEL_MR(3)
GEMM2_KERNEL_MR(4)
GEMM2_KERNEL_MR(5)
GEMM2_KERNEL_MR(6)
GEMM2_KERNEL_MR(7)
GEMM2_KERNEL_MR(8)

typedef void (*gemm_kernel_fn)(int, const float *restrict,
                               const float *restrict, size_t, float *, size_t,
                               float, float, int, int);
/* gemm_kernels[m - 1]: the kernel for a tile of m rows. */
static const gemm_kernel_fn gemm_kernels[GEMM_MR] = {
    gemm_kernel_1, gemm_kernel_2, gemm_kernel_3, gemm_kernel_4,
    gemm_kernel_5, gemm_kernel_6, gemm_kernel_7, gemm_kernel_8};
/* gemm_kernels_narrow[v][m - 1]: the same for n <= 16 (v + 1) columns. */
static const gemm_kernel_fn gemm_kernels_narrow[2][GEMM_MR] = {
    {gemm_kernel_n16_1, gemm_kernel_n16_2, gemm_kernel_n16_3, gemm_kernel_n16_4,
     gemm_kernel_n16_5, gemm_kernel_n16_6, gemm_kernel_n16_7,
     gemm_kernel_n16_8},
    {gemm_kernel_n32_1, gemm_kernel_n32_2, gemm_kernel_n32_3, gemm_kernel_n32_4,
     gemm_kernel_n32_5, gemm_kernel_n32_6, gemm_kernel_n32_7,
     gemm_kernel_n32_8}};
typedef void (*gemm_kernel_rows_fn)(int, const float *restrict,
                                    const float *const *, size_t, float *,
                                    size_t, float, float, int, int);
static const gemm_kernel_rows_fn gemm_kernels_rows[GEMM_MR] = {
    gemm_kernel_rows_1, gemm_kernel_rows_2, gemm_kernel_rows_3,
    gemm_kernel_rows_4, gemm_kernel_rows_5, gemm_kernel_rows_6,
    gemm_kernel_rows_7, gemm_kernel_rows_8};

static size_t gemm_round_up(size_t n, size_t m)
{
    return (n + m - 1) / m * m;
}

/* ---------------------------------------------------------------------------
 * Dot-product path for C = alpha * A . B^T + beta * C with a long depth K
 * and few rows (the weight gradients: dW (Cout, Cin*9) = dout rows . input
 * rows over every pixel of a chunk). Both operands are read as rows along
 * K in place, so nothing is transposed or packed: with AVX-512 a 4x6
 * block of C keeps 24 vector accumulators, and every 16 steps of K cost
 * 4 + 6 vector loads for 24 FMAs (AVX2: 3x4 blocks, below). K is cut into
 * blocks of GEMM_DOT_KB so that the rows a block touches stay in L2; each
 * block's sums are reduced and added to C. */
#ifndef GEMM_DOT_KB
#define GEMM_DOT_KB 2048
#endif
#define GEMM_DOT_MR 4
#define GEMM_DOT_NR 6

/* s[i*NR + j] = sum over p < kb of a[i][p] * b[j][p], i < MR, j < NR. */
__attribute__((always_inline)) GEMM_TARGET static inline void
gemm_dot_tile(const int MR, const int NR, int kb, const float *const *a,
              const float *const *b, float *s)
{
    __m512 acc[GEMM_DOT_MR][GEMM_DOT_NR];
#pragma GCC unroll 4
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 6
        for (int j = 0; j < NR; j++)
            acc[i][j] = _mm512_setzero_ps();
    int p = 0;
    for (; p < kb; p += 16) {
        const __mmask16 k = gemm_mask(kb - p);
        __m512 av[GEMM_DOT_MR];
#pragma GCC unroll 4
        for (int i = 0; i < MR; i++)
            av[i] = _mm512_maskz_loadu_ps(k, a[i] + p);
#pragma GCC unroll 6
        for (int j = 0; j < NR; j++) {
            const __m512 bv = _mm512_maskz_loadu_ps(k, b[j] + p);
#pragma GCC unroll 4
            for (int i = 0; i < MR; i++)
                acc[i][j] = _mm512_fmadd_ps(av[i], bv, acc[i][j]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 6
        for (int j = 0; j < NR; j++)
            s[i * NR + j] = _mm512_reduce_add_ps(acc[i][j]);
}

typedef void (*gemm_dot_fn)(int, const float *const *, const float *const *,
                            float *);
#define GEMM_DOT_FN(m, n)                                                      \
    GEMM_TARGET static void gemm_dot_##m##_##n(                                \
        int kb, const float *const *a, const float *const *b, float *s)        \
    {                                                                          \
        gemm_dot_tile(m, n, kb, a, b, s);                                      \
    }
#define GEMM_DOT_ROW(m)                                                        \
    GEMM_DOT_FN(m, 1)                                                          \
    GEMM_DOT_FN(m, 2)                                                          \
    GEMM_DOT_FN(m, 3)                                                          \
    GEMM_DOT_FN(m, 4) GEMM_DOT_FN(m, 5) GEMM_DOT_FN(m, 6)
GEMM_DOT_ROW(1)
GEMM_DOT_ROW(2)
GEMM_DOT_ROW(3)
GEMM_DOT_ROW(4)
#define GEMM_DOT_ENTRY(m)                                                      \
    {                                                                          \
        gemm_dot_##m##_1, gemm_dot_##m##_2, gemm_dot_##m##_3,                  \
            gemm_dot_##m##_4, gemm_dot_##m##_5, gemm_dot_##m##_6               \
    }
/* gemm_dots[m - 1][n - 1]: the tile of m rows of A and n rows of B. */
static const gemm_dot_fn gemm_dots[GEMM_DOT_MR][GEMM_DOT_NR] = {
    GEMM_DOT_ENTRY(1), GEMM_DOT_ENTRY(2), GEMM_DOT_ENTRY(3), GEMM_DOT_ENTRY(4)};

/* The AVX2 dot tile: 3x4 blocks of C, 12 ymm accumulators; every 8 steps
 * of K cost 3 + 4 vector loads for 12 FMAs. */
#define GEMM2_DOT_MR 3
#define GEMM2_DOT_NR 4

/* Lanes [0, n) of an 8-lane mask (n in [0, 8]) for _mm256_maskload_ps. */
GEMM_TARGET2 static inline __m256i gemm2_lanes(int n)
{
    static const int32_t tab[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                    0,  0,  0,  0,  0,  0,  0,  0};
    return _mm256_loadu_si256((const __m256i *)(const void *)(tab + 8 - n));
}

GEMM_TARGET2 static inline float gemm2_hsum(__m256 v)
{
    __m128 x =
        _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
}

/* s[i*NR + j] = sum over p < kb of a[i][p] * b[j][p], i < MR, j < NR. */
__attribute__((always_inline)) GEMM_TARGET2 static inline void
gemm2_dot_tile(const int MR, const int NR, int kb, const float *const *a,
               const float *const *b, float *s)
{
    __m256 acc[GEMM2_DOT_MR][GEMM2_DOT_NR];
#pragma GCC unroll 3
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++)
            acc[i][j] = _mm256_setzero_ps();
    int p = 0;
    for (; p + 8 <= kb; p += 8) {
        __m256 av[GEMM2_DOT_MR];
#pragma GCC unroll 3
        for (int i = 0; i < MR; i++)
            av[i] = _mm256_loadu_ps(a[i] + p);
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++) {
            const __m256 bv = _mm256_loadu_ps(b[j] + p);
#pragma GCC unroll 3
            for (int i = 0; i < MR; i++)
                acc[i][j] = _mm256_fmadd_ps(av[i], bv, acc[i][j]);
        }
    }
    if (p < kb) {
        const __m256i k = gemm2_lanes(kb - p);
        __m256 av[GEMM2_DOT_MR];
#pragma GCC unroll 3
        for (int i = 0; i < MR; i++)
            av[i] = _mm256_maskload_ps(a[i] + p, k);
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++) {
            const __m256 bv = _mm256_maskload_ps(b[j] + p, k);
#pragma GCC unroll 3
            for (int i = 0; i < MR; i++)
                acc[i][j] = _mm256_fmadd_ps(av[i], bv, acc[i][j]);
        }
    }
#pragma GCC unroll 3
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int j = 0; j < NR; j++)
            s[i * NR + j] = gemm2_hsum(acc[i][j]);
}

#define GEMM2_DOT_FN(m, n)                                                     \
    GEMM_TARGET2 static void gemm2_dot_##m##_##n(                              \
        int kb, const float *const *a, const float *const *b, float *s)        \
    {                                                                          \
        gemm2_dot_tile(m, n, kb, a, b, s);                                     \
    }
#define GEMM2_DOT_ROW(m)                                                       \
    GEMM2_DOT_FN(m, 1)                                                         \
    GEMM2_DOT_FN(m, 2) GEMM2_DOT_FN(m, 3) GEMM2_DOT_FN(m, 4)
GEMM2_DOT_ROW(1)
GEMM2_DOT_ROW(2)
GEMM2_DOT_ROW(3)
#define GEMM2_DOT_ENTRY(m)                                                     \
    gemm2_dot_##m##_1, gemm2_dot_##m##_2, gemm2_dot_##m##_3, gemm2_dot_##m##_4

/* A backend's dot tiles: fns[(m - 1) * nr + n - 1] for m <= mr rows of A
 * and n <= nr rows of B. */
struct gemm_dot_isa {
    int mr, nr;
    const gemm_dot_fn *fns;
};
/* gemm_dot_nt's operand tables are sized for the widest tiles. */
_Static_assert(GEMM2_DOT_MR <= GEMM_DOT_MR && GEMM2_DOT_NR <= GEMM_DOT_NR,
               "the AVX2 dot tile must fit gemm_dot_nt's tables");
static const gemm_dot_fn gemm2_dots[GEMM2_DOT_MR * GEMM2_DOT_NR] = {
    GEMM2_DOT_ENTRY(1), GEMM2_DOT_ENTRY(2), GEMM2_DOT_ENTRY(3)};
static const struct gemm_dot_isa gemm_dot_avx512 = {GEMM_DOT_MR, GEMM_DOT_NR,
                                                    &gemm_dots[0][0]};
static const struct gemm_dot_isa gemm_dot_avx2 = {GEMM2_DOT_MR, GEMM2_DOT_NR,
                                                  gemm2_dots};

/* Whether the dot path is allowed (ABC_GEMM_DOT=0: never, for A/B
 * measurements); -1: not read from the environment yet. */
static atomic_int gemm_dot_on = -1;

static int gemm_dot_enabled(void)
{
    int on = atomic_load_explicit(&gemm_dot_on, memory_order_relaxed);
    if (on < 0) {
        const char *e = getenv("ABC_GEMM_DOT");
        on = !(e && strcmp(e, "0") == 0);
        atomic_store_explicit(&gemm_dot_on, on, memory_order_relaxed);
    }
    return on;
}

/* Where the dot path beats the packed one (bench_conv, dW of 3x3 convs,
 * 1 thread, AVX-512 Zen4): backward 1.3-1.45x faster with Cout 5-12,
 * even at 16, 3-11 % slower at 32-64, where the packed 8-row kernel
 * keeps its B panels busy and packing is a small share. */
#ifndef GEMM_DOT_MIN_K
#define GEMM_DOT_MIN_K 256
#endif
#ifndef GEMM_DOT_MAX_M
#define GEMM_DOT_MAX_M 15
#endif
void gemm_set_dot(int on)
{
    atomic_store_explicit(&gemm_dot_on, on ? 1 : 0, memory_order_relaxed);
}

static int gemm_use_dot(int transa, int transb, int M, int K)
{
    return !transa && transb && K >= GEMM_DOT_MIN_K && M <= GEMM_DOT_MAX_M &&
           gemm_dot_enabled();
}

/* C = alpha * A . B^T + beta * C, B given by its rows along K, in the
 * dot tiles of d. */
static void gemm_dot_nt(const struct gemm_dot_isa *d, int M, int N, int K,
                        float alpha, const float *A, int lda,
                        const struct gemm_b *B, float beta, float *C, int ldc)
{
    for (int k0 = 0; k0 < K; k0 += GEMM_DOT_KB) {
        const int kb = K - k0 < GEMM_DOT_KB ? K - k0 : GEMM_DOT_KB;
        const float be = k0 == 0 ? beta : 1.0f;
        for (int i0 = 0; i0 < M; i0 += d->mr) {
            const int mr = M - i0 < d->mr ? M - i0 : d->mr;
            const float *a[GEMM_DOT_MR];
            for (int i = 0; i < mr; i++)
                a[i] = A + (size_t)(i0 + i) * lda + k0;
            for (int j0 = 0; j0 < N; j0 += d->nr) {
                const int nr = N - j0 < d->nr ? N - j0 : d->nr;
                const float *b[GEMM_DOT_NR];
                float s[GEMM_DOT_MR * GEMM_DOT_NR];
                for (int j = 0; j < nr; j++)
                    b[j] = gemm_brow(B, (size_t)j0 + (size_t)j) + k0;
                d->fns[(mr - 1) * d->nr + nr - 1](kb, a, b, s);
                for (int i = 0; i < mr; i++) {
                    float *c = C + (size_t)(i0 + i) * ldc + j0;
                    for (int j = 0; j < nr; j++) {
                        const float v = alpha * s[i * nr + j];
                        c[j] = be == 0.0f ? v : v + be * c[j];
                    }
                }
            }
        }
    }
}

/* ---------------------------------------------------------------------------
 * Interleaving rows into lanes (gemm_interleave): blocks of w <= V rows by
 * c <= V values (V = 16 on AVX-512, 8 on AVX2) are loaded under a mask,
 * transposed in registers and stored under a mask, c groups of w lanes;
 * so short rows (a 7x7 map's 7) and odd lane counts take the same path. */
typedef void (*gemm_block_fn)(float *, size_t, const float *const *, int, int);

GEMM_TARGET static void gemm_interleave16(float *dst, size_t dld,
                                          const float *const *src, int w, int c)
{
    const __mmask16 kl = gemm_mask(c), ks = gemm_mask(w);
    __m512 v[16];
    for (int i = 0; i < 16; i++)
        v[i] = i < w ? _mm512_maskz_loadu_ps(kl, src[i]) : _mm512_setzero_ps();
    gemm_t16(v);
    for (int i = 0; i < c; i++)
        _mm512_mask_storeu_ps(dst + (size_t)i * dld, ks, v[i]);
}

GEMM_TARGET2 static void gemm_interleave8(float *dst, size_t dld,
                                          const float *const *src, int w, int c)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i kl = _mm256_cmpgt_epi32(_mm256_set1_epi32(c), lane),
                  ks = _mm256_cmpgt_epi32(_mm256_set1_epi32(w), lane);
    __m256 v[8];
    for (int i = 0; i < 8; i++)
        v[i] = i < w ? _mm256_maskload_ps(src[i], kl) : _mm256_setzero_ps();
    gemm_t8(v);
    for (int i = 0; i < c; i++)
        _mm256_maskstore_ps(dst + (size_t)i * dld, ks, v[i]);
}

static void gemm_interleave_blocks(float *dst, int ld, const float *const *src,
                                   int n, int len, int V, gemm_block_fn block)
{
    const float *r[16];
    for (int j0 = 0; j0 < n; j0 += V) {
        const int w = n - j0 < V ? n - j0 : V;
        for (int i0 = 0; i0 < len; i0 += V) {
            for (int j = 0; j < w; j++)
                r[j] = src[j0 + j] + i0;
            block(dst + (size_t)i0 * ld + j0, (size_t)ld, r, w,
                  len - i0 < V ? len - i0 : V);
        }
    }
}

void gemm_interleave(float *dst, int ld, const float *const *src, int n,
                     int len)
{
    switch (gemm_get_backend()) {
    case GEMM_BACKEND_AVX512:
        gemm_interleave_blocks(dst, ld, src, n, len, 16, gemm_interleave16);
        return;
    case GEMM_BACKEND_AVX2:
        gemm_interleave_blocks(dst, ld, src, n, len, 8, gemm_interleave8);
        return;
    default:
        gemm_interleave_ref(dst, ld, src, n, len);
    }
}

void gemm_deinterleave(float *dst, int dld, const float *src, int ld, int n,
                       int len)
{
    /* the same transposes, with up to 16 pixels' lane groups as the rows */
    const float *r[16];
    for (int i0 = 0; i0 < len; i0 += 16) {
        const int c = len - i0 < 16 ? len - i0 : 16;
        for (int i = 0; i < c; i++)
            r[i] = src + (size_t)(i0 + i) * ld;
        gemm_interleave(dst + i0, dld, r, c, n);
    }
}

void gemm_deinterleave_ref(float *dst, int dld, const float *src, int ld, int n,
                           int len)
{
    for (int j = 0; j < n; j++)
        for (int i = 0; i < len; i++)
            dst[(size_t)j * dld + i] = src[(size_t)i * ld + j];
}

void gemm_interleave_ref(float *dst, int ld, const float *const *src, int n,
                         int len)
{
    for (int i = 0; i < len; i++)
        for (int j = 0; j < n; j++)
            dst[(size_t)i * ld + j] = src[j][i];
}

/* What differs between the AVX-512 and the AVX2 loop nest. */
struct gemm_isa {
    void (*pack_b)(float *restrict, const struct gemm_b *, int, int, int, int,
                   int);
    const gemm_kernel_fn *kernels;           /* [m - 1]: m-row tiles */
    const gemm_kernel_fn (*narrow)[GEMM_MR]; /* [v][m - 1]: <= 16 (v + 1)
                                                columns, or NULL */
    const gemm_kernel_rows_fn *kernels_rows; /* the same, B rows in place */
    const struct gemm_dot_isa *dot;          /* the dot-product tiles */
};

static const gemm_kernel_fn gemm2_kernels[GEMM_MR] = {
    gemm2_kernel_1, gemm2_kernel_2, gemm2_kernel_3, gemm2_kernel_4,
    gemm2_kernel_5, gemm2_kernel_6, gemm2_kernel_7, gemm2_kernel_8};
static const gemm_kernel_rows_fn gemm2_kernels_rows[GEMM_MR] = {
    gemm2_kernel_rows_1, gemm2_kernel_rows_2, gemm2_kernel_rows_3,
    gemm2_kernel_rows_4, gemm2_kernel_rows_5, gemm2_kernel_rows_6,
    gemm2_kernel_rows_7, gemm2_kernel_rows_8};

static const struct gemm_isa gemm_isa_avx512 = {
    gemm_pack_b, gemm_kernels, gemm_kernels_narrow, gemm_kernels_rows,
    &gemm_dot_avx512};
static const struct gemm_isa gemm_isa_avx2 = {
    gemm_pack_b_avx2, gemm2_kernels, NULL, gemm2_kernels_rows, &gemm_dot_avx2};

/* The loop nest of a backend, or NULL for OpenBLAS. */
static const struct gemm_isa *gemm_isa_of(enum gemm_backend b)
{
    return b == GEMM_BACKEND_AVX512 ? &gemm_isa_avx512
           : b == GEMM_BACKEND_AVX2 ? &gemm_isa_avx2
                                    : NULL;
}

/* The packed loop nest; returns -1 (nothing written) if the packing buffer
 * cannot be allocated. Requires M, N, K > 0. apre: op(A) packed whole by
 * gemm_pack_a_whole, or NULL (A is packed block by block here). */
static int gemm_packed(const struct gemm_isa *isa, int transa, int transb,
                       int M, int N, int K, float alpha, const float *A,
                       int lda, const float *apre, const struct gemm_b *B,
                       float beta, float *C, int ldc)
{
    if (!apre && gemm_use_dot(transa, transb, M, K)) {
        gemm_dot_nt(isa->dot, M, N, K, alpha, A, lda, B, beta, C, ldc);
        return 0;
    }
    const int nc_max = N < GEMM_NC ? N : GEMM_NC;
    const int kc_max = K < GEMM_KC ? K : GEMM_KC;
    const int mc_max = M < GEMM_MC ? M : GEMM_MC;
    const size_t bsz = (size_t)kc_max * gemm_round_up((size_t)nc_max, GEMM_NR);
    const size_t asz = (size_t)kc_max * gemm_round_up((size_t)mc_max, GEMM_MR);
    float *buf = gemm_buffer(bsz + asz);
    if (!buf) return -1;
    float *bp = buf, *ap = buf + bsz;
    for (int jc = 0; jc < N; jc += GEMM_NC) {
        const int nc = N - jc < GEMM_NC ? N - jc : GEMM_NC;
        for (int pc = 0; pc < K; pc += GEMM_KC) {
            const int kc = K - pc < GEMM_KC ? K - pc : GEMM_KC;
            const float be = pc == 0 ? beta : 1.0f;
            /* few rows of C reuse each B panel only a few times: then the
             * kernel reads untransposed B in place (all but a ragged last
             * panel, which is packed) */
            const int direct = !transb && M <= GEMM_DIRECT_B_MAX_M;
            const int nfull = direct ? nc / GEMM_NR * GEMM_NR : 0;
            if (nfull < nc)
                isa->pack_b(bp + (size_t)nfull * kc, B, transb, pc, jc + nfull,
                            kc, nc - nfull);
            const float *const *brows = B->rows ? B->rows + pc : NULL;
            const float *bsrc =
                B->rows ? NULL : B->b + (size_t)pc * B->ldb + jc;
            for (int ic = 0; ic < M; ic += GEMM_MC) {
                const int mc = M - ic < GEMM_MC ? M - ic : GEMM_MC;
                if (apre) {
                    ap = (float *)apre +
                         (size_t)pc * gemm_round_up((size_t)M, GEMM_MR) +
                         (size_t)ic * kc;
                } else {
                    const float *asrc = transa ? A + (size_t)pc * lda + ic
                                               : A + (size_t)ic * lda + pc;
                    gemm_pack_a(ap, asrc, lda, transa, mc, kc);
                }
                for (int ir = 0; ir < mc; ir += GEMM_MR) {
                    const float *a = ap + (size_t)ir * kc;
                    const int m = mc - ir < GEMM_MR ? mc - ir : GEMM_MR;
                    const gemm_kernel_fn kern = isa->kernels[m - 1];
                    float *crow = C + (size_t)(ic + ir) * ldc + jc;
                    if (brows)
                        for (int jr = 0; jr < nfull; jr += GEMM_NR)
                            isa->kernels_rows[m - 1](
                                kc, a, brows, (size_t)jc + (size_t)jr,
                                crow + jr, (size_t)ldc, alpha, be, m, GEMM_NR);
                    else
                        for (int jr = 0; jr < nfull; jr += GEMM_NR)
                            kern(kc, a, bsrc + jr, B->ldb, crow + jr,
                                 (size_t)ldc, alpha, be, m, GEMM_NR);
                    for (int jr = nfull; jr < nc; jr += GEMM_NR) {
                        const int n = nc - jr < GEMM_NR ? nc - jr : GEMM_NR;
                        const gemm_kernel_fn kn =
                            n <= 32 && isa->narrow
                                ? isa->narrow[(n - 1) / 16][m - 1]
                                : kern;
                        kn(kc, a, bp + (size_t)jr * kc, GEMM_NR, crow + jr,
                           (size_t)ldc, alpha, be, m, n);
                    }
                }
            }
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Public entry points. */

/* gemm_f32, with op(A) packed whole (apre, gemm_pack_a_whole) or not
 * (NULL). */
static void gemm_run(int transa, int transb, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *apre, const float *B,
                     int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    const struct gemm_isa *isa = gemm_isa_of(gemm_get_backend());
    if (isa) {
        if (K <= 0 || alpha == 0.0f) {
            gemm_scale(M, N, beta, C, ldc);
            return;
        }
        const struct gemm_b b = {B, (size_t)ldb, NULL};
        if (gemm_packed(isa, transa, transb, M, N, K, alpha, A, lda, apre, &b,
                        beta, C, ldc) == 0)
            return;
    }
    gemm_blas(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_f32(int transa, int transb, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta,
              float *C, int ldc)
{
    gemm_run(transa, transb, M, N, K, alpha, A, lda, NULL, B, ldb, beta, C,
             ldc);
}

size_t gemm_packed_a_floats(int M, int K)
{
    return M > 0 && K > 0 ? gemm_round_up((size_t)M, GEMM_MR) * (size_t)K : 0;
}

void gemm_pack_a_whole(float *ap, int transa, int M, int K, const float *A,
                       int lda)
{
    if (!gemm_isa_of(gemm_get_backend())) return; /* OpenBLAS reads A */
    const size_t mr = gemm_round_up((size_t)M, GEMM_MR);
    for (int pc = 0; pc < K; pc += GEMM_KC) {
        const int kc = K - pc < GEMM_KC ? K - pc : GEMM_KC;
        for (int ic = 0; ic < M; ic += GEMM_MC) {
            const int mc = M - ic < GEMM_MC ? M - ic : GEMM_MC;
            const float *asrc =
                transa ? A + (size_t)pc * lda + ic : A + (size_t)ic * lda + pc;
            gemm_pack_a(ap + (size_t)pc * mr + (size_t)ic * kc, asrc, lda,
                        transa, mc, kc);
        }
    }
}

void gemm_f32_pa(int transa, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *ap, const float *B, int ldb, float beta,
                 float *C, int ldc)
{
    gemm_run(transa, 0, M, N, K, alpha, A, lda, ap, B, ldb, beta, C, ldc);
}

void gemm_f32_rows(int transa, int transb, int M, int N, int K, float alpha,
                   const float *A, int lda, const float *const *brows,
                   float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        gemm_scale(M, N, beta, C, ldc);
        return;
    }
    const struct gemm_isa *isa = gemm_isa_of(gemm_get_backend());
    if (isa) {
        const struct gemm_b b = {NULL, 0, brows};
        if (gemm_packed(isa, transa, transb, M, N, K, alpha, A, lda, NULL, &b,
                        beta, C, ldc) == 0)
            return;
    }
    /* OpenBLAS: gather the rows into one matrix, or, if that buffer cannot
     * be had, work row by row without allocating */
    const int nrows = transb ? N : K, len = transb ? K : N;
    const size_t need = (size_t)nrows * len;
    if (need > gemm_gather_cap) {
        float *p = malloc(need * sizeof *p);
        if (p) {
            free(gemm_gather_buf);
            gemm_gather_buf = p;
            gemm_gather_cap = need;
        }
    }
    if (need <= gemm_gather_cap) {
        for (int i = 0; i < nrows; i++)
            memcpy(gemm_gather_buf + (size_t)i * len, brows[i],
                   (size_t)len * sizeof(float));
        gemm_blas(transa, transb, M, N, K, alpha, A, lda, gemm_gather_buf, len,
                  beta, C, ldc);
        return;
    }
    gemm_scale(M, N, beta, C, ldc);
    const CBLAS_TRANSPOSE ta = transa ? CblasTrans : CblasNoTrans;
    if (!transb) /* C += alpha * op(A)[:, p] outer B's row p */
        for (int p = 0; p < K; p++)
            cblas_sger(CblasRowMajor, M, N, alpha,
                       transa ? A + (size_t)p * lda : A + p, transa ? 1 : lda,
                       brows[p], 1, C, ldc);
    else /* C[:, j] += alpha * op(A) . B's stored row j */
        for (int j = 0; j < N; j++)
            cblas_sgemv(CblasRowMajor, ta, transa ? K : M, transa ? M : K,
                        alpha, A, lda, brows[j], 1, 1.0f, C + j, ldc);
}

void gemm_f32_ref(int transa, int transb, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta,
                  float *C, int ldc)
{
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int p = 0; p < K; p++) {
                float a =
                    transa ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p];
                float b =
                    transb ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j];
                s += (double)a * b;
            }
            float *c = C + (size_t)i * ldc + j;
            double v = (double)alpha * s;
            if (beta != 0.0f) v += (double)beta * *c;
            *c = (float)v;
        }
}

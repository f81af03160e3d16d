/* gemm.h - single-precision GEMM for the conv/linear layers: a packed
 * GotoBLAS-style kernel with an 8x48 register block, chosen at run time:
 * AVX-512 when the CPU has it, else AVX2 + FMA (the same tile as 4x24
 * blocks), else OpenBLAS's cblas_sgemm. Single-threaded: callers run it
 * inside their own OpenMP regions. */
#ifndef ABC_GEMM_H
#define ABC_GEMM_H

#include <stddef.h>

/* Backends of gemm_f32. */
enum gemm_backend {
    GEMM_BACKEND_AUTO,   /* the widest of ours the CPU runs, else BLAS */
    GEMM_BACKEND_BLAS,   /* OpenBLAS cblas_sgemm */
    GEMM_BACKEND_AVX512, /* our kernel (only where the CPU supports it) */
    GEMM_BACKEND_AVX2,   /* our AVX2 + FMA kernel (likewise) */
};

/* Row-major C (M,N) = alpha * op(A) . op(B) + beta * C, where op(A) is
 * (M,K): A (M,lda) if !transa, else A^T with A (K,lda); op(B) is (K,N): B
 * (K,ldb) if !transb, else B^T with B (N,ldb). beta == 0 never reads C (it
 * may hold NaN). Single-threaded and thread-safe; results depend only on the
 * arguments and the backend (no run-to-run variation). Packing buffers are
 * per-thread (_Thread_local), grown on demand and kept for the thread's
 * life, so the hot path does not allocate; if growing fails the call falls
 * back to cblas_sgemm. Sizes <= 0 for M or N do nothing. */
void gemm_f32(int transa, int transb, int M, int N, int K, float alpha,
              const float *A, int lda, const float *B, int ldb, float beta,
              float *C, int ldc);

/* gemm_f32 with B given by the addresses of its stored rows instead of a
 * leading dimension: brows[p] (p < K) holds op(B)'s row p (N floats) when
 * !transb; brows[j] (j < N) holds its column j (K floats) when transb. The
 * rows of an implicit im2col are shifted views of one padded input, so the
 * convolutions multiply without materialising the im2col matrix. (With
 * OpenBLAS the rows are gathered first; if that buffer cannot be allocated
 * it works row by row, slowly but without allocating.) */
void gemm_f32_rows(int transa, int transb, int M, int N, int K, float alpha,
                   const float *A, int lda, const float *const *brows,
                   float beta, float *C, int ldc);

/* A packed once for many gemm_f32_pa calls (the same A against many B):
 * gemm_packed_a_floats(M, K) floats hold op(A) (M,K) as gemm_pack_a_whole
 * writes it, in the order the packed loop nest reads it. gemm_f32_pa is
 * gemm_f32 with B not transposed and that packed copy ap of op(A) (A and
 * lda still given: OpenBLAS reads them); the same results, bit for bit. */
size_t gemm_packed_a_floats(int M, int K);
void gemm_pack_a_whole(float *ap, int transa, int M, int K, const float *A,
                       int lda);
void gemm_f32_pa(int transa, int M, int N, int K, float alpha, const float *A,
                 int lda, const float *ap, const float *B, int ldb, float beta,
                 float *C, int ldc);

/* Interleaves n rows of len floats lane by lane: dst[i * ld + j] =
 * src[j][i] for i < len, j < n (n <= ld; the other lanes are not written).
 * On the AVX-512 and AVX2 backends in register transposes;
 * gemm_interleave_ref is its plain twin (and the OpenBLAS backend's path).
 * The images-innermost convolutions pack their chunks with it. */
void gemm_interleave(float *dst, int ld, const float *const *src, int n,
                     int len);
void gemm_interleave_ref(float *dst, int ld, const float *const *src, int n,
                         int len);

/* Its inverse: dst[j * dld + i] = src[i * ld + j] for j < n <= ld,
 * i < len <= dld (the images-innermost convolutions' output passes),
 * through gemm_interleave; gemm_deinterleave_ref is its plain twin. */
void gemm_deinterleave(float *dst, int dld, const float *src, int ld, int n,
                       int len);
void gemm_deinterleave_ref(float *dst, int dld, const float *src, int ld, int n,
                           int len);

/* The naive twin of gemm_f32 (plain loops, double accumulators), for tests. */
void gemm_f32_ref(int transa, int transb, int M, int N, int K, float alpha,
                  const float *A, int lda, const float *B, int ldb, float beta,
                  float *C, int ldc);

/* Selects the backend for the whole process (not thread-safe against
 * concurrent gemm_f32 calls: set it before starting work). AUTO consults
 * the environment variable ABC_GEMM ("blas" forces OpenBLAS, "avx2" our
 * AVX2 kernel) and the CPU. Returns 0, or -1 (backend unchanged) if AVX512
 * or AVX2 is asked for on a CPU without it. */
int gemm_set_backend(enum gemm_backend b);
/* The backend gemm_f32 uses now (never AUTO). */
enum gemm_backend gemm_get_backend(void);
/* That backend for logs and benchmarks: "avx512 (ours)", "avx2 (ours)" or
 * "openblas". */
const char *gemm_backend_name(void);
/* Allows (on != 0, the default unless ABC_GEMM_DOT=0) or forbids the
 * AVX-512 backend's dot-product path for A . B^T with a long depth (weight
 * gradients); for benchmarks and tests that compare it with the packed
 * path. Not thread-safe against concurrent gemm_f32 calls. */
void gemm_set_dot(int on);
/* Frees the calling thread's packing buffers (they regrow on next use). */
void gemm_release_thread_buffers(void);

#endif

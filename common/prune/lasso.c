/* lasso.c - LASSO channel selection and least-squares reconstruction (He et
 * al. 2017), from one c x c LASSO up to a whole network pruned layer by
 * layer (see lasso.h). All statistics are accumulated in double from the
 * float activations; the Gram matrix, the least squares and the errors are
 * quadratic forms of X^T X and X^T Y, so no N x c x n tensor is formed. */
#include "prune/lasso.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/rng.h"
#include "core/seeds.h"
#include "prune/budget.h"
#include "prune/prune.h"
#include "train/train.h"

/* ---- the LASSO ---------------------------------------------------------- */

/* Coordinate descent for 1/2 b^T G b - r^T b + lambda |b|_1 from the warm
 * start beta; q = G beta is kept up to date. Returns the number of non-zero
 * coefficients. */
static int cd_solve(const double *G, const double *r, int c, double lambda,
                    double *beta, double *q, int max_iter, double tol)
{
    for (int i = 0; i < c; i++) {
        double s = 0;
        for (int d = 0; d < c; d++)
            s += G[(size_t)i * c + d] * beta[d];
        q[i] = s;
    }
    for (int it = 0; it < max_iter; it++) {
        double maxd = 0, maxb = 0;
        for (int i = 0; i < c; i++) {
            double gii = G[(size_t)i * c + i];
            if (!(gii > 0)) continue; /* a zero Z_c: beta_c stays 0 */
            double z = r[i] - (q[i] - gii * beta[i]);
            double nb = z > lambda    ? (z - lambda) / gii
                        : z < -lambda ? (z + lambda) / gii
                                      : 0.0;
            double delta = nb - beta[i];
            if (delta != 0) {
                const double *gi = G + (size_t)i * c; /* symmetric: row i */
                for (int d = 0; d < c; d++)
                    q[d] += delta * gi[d];
                beta[i] = nb;
            }
            if (fabs(delta) > maxd) maxd = fabs(delta);
            if (fabs(nb) > maxb) maxb = fabs(nb);
        }
        if (maxd <= tol * (maxb > 0 ? maxb : 1.0)) break;
    }
    int nnz = 0;
    for (int i = 0; i < c; i++)
        nnz += beta[i] != 0;
    return nnz;
}

struct rank_key {
    double b, r, g;
    int i;
};

static int cmp_rank(const void *pa, const void *pb)
{
    const struct rank_key *a = pa, *b = pb;
    if (a->b != b->b) return a->b > b->b ? -1 : 1;
    if (a->r != b->r) return a->r > b->r ? -1 : 1;
    if (a->g != b->g) return a->g > b->g ? -1 : 1;
    return a->i - b->i;
}

int lasso_select(const double *gram, const double *corr, int c, int target,
                 int max_iter, double tol, unsigned char *keep, double *beta,
                 double *lambda_out, int *exact_out, char *err)
{
    if (c < 1)
        return abc_errf(err, ABC_EVALUE, "lasso: %d channels, expected >= 1",
                        c);
    if (target < 1 || target > c)
        return abc_errf(err, ABC_EVALUE,
                        "lasso: target %d channels, expected 1..%d", target, c);
    if (max_iter < 1 || !(tol > 0) || !isfinite(tol))
        return abc_errf(err, ABC_EVALUE,
                        "lasso: max_iter %d and tol %g, expected >= 1 and a "
                        "finite tol > 0",
                        max_iter, tol);
    for (int i = 0; i < c; i++) {
        if (!isfinite(corr[i]))
            return abc_errf(err, ABC_EVALUE,
                            "lasso: correlation of channel %d is %g", i,
                            corr[i]);
        if (!(gram[(size_t)i * c + i] >= 0))
            return abc_errf(err, ABC_EVALUE,
                            "lasso: Gram diagonal of channel %d is %g, "
                            "expected finite >= 0",
                            i, gram[(size_t)i * c + i]);
        for (int d = 0; d < c; d++)
            if (!isfinite(gram[(size_t)i * c + d]))
                return abc_errf(err, ABC_EVALUE,
                                "lasso: Gram entry (%d,%d) is %g", i, d,
                                gram[(size_t)i * c + d]);
    }
    if (target == c) {
        memset(keep, 1, (size_t)c);
        if (beta)
            for (int i = 0; i < c; i++)
                beta[i] = 1.0;
        if (lambda_out) *lambda_out = 0;
        if (exact_out) *exact_out = 1;
        return 0;
    }
    double *b = calloc((size_t)c, sizeof *b), *q = malloc(sizeof *q * c),
           *over = malloc(sizeof *over * c);
    struct rank_key *rk = malloc(sizeof *rk * c);
    if (!b || !q || !over || !rk) {
        free(b), free(q), free(over), free(rk);
        return abc_errf(err, ABC_ENOMEM, "lasso: out of memory (%d channels)",
                        c);
    }
    /* At lambda >= max|r_c| (over channels with G_cc > 0) beta = 0 is
     * optimal: the KKT condition |r_c - (G beta)_c| <= lambda holds. */
    double hi = 0;
    for (int i = 0; i < c; i++)
        if (gram[(size_t)i * c + i] > 0 && fabs(corr[i]) > hi)
            hi = fabs(corr[i]);
    double lo = 0, lambda = hi, over_lambda = 0;
    int exact = 0, over_count = c + 1, nnz = 0;
    for (int it = 0; it < 200 && hi > 0; it++) {
        double mid = 0.5 * (lo + hi);
        if (!(mid > lo && mid < hi)) break; /* the interval cannot shrink */
        nnz = cd_solve(gram, corr, c, mid, b, q, max_iter, tol);
        lambda = mid;
        if (nnz == target) {
            exact = 1;
            break;
        }
        if (nnz > target) {
            lo = mid;
            if (nnz < over_count) {
                over_count = nnz;
                over_lambda = mid;
                memcpy(over, b, sizeof *b * c);
            }
        } else {
            hi = mid;
        }
    }
    if (!exact && over_count <= c) { /* trim the closest count above */
        memcpy(b, over, sizeof *b * c);
        lambda = over_lambda;
    }
    /* Rank: |beta|, then |r|, then G_cc, then lower index; keep the top
     * `target` (exactly the non-zeros when the count was hit). */
    for (int i = 0; i < c; i++) {
        rk[i].b = fabs(b[i]);
        rk[i].r = fabs(corr[i]);
        rk[i].g = gram[(size_t)i * c + i];
        rk[i].i = i;
    }
    qsort(rk, (size_t)c, sizeof *rk, cmp_rank);
    memset(keep, 0, (size_t)c);
    for (int k = 0; k < target; k++)
        keep[rk[k].i] = 1;
    if (beta)
        for (int i = 0; i < c; i++)
            beta[i] = keep[i] ? b[i] : 0.0;
    if (lambda_out) *lambda_out = lambda;
    if (exact_out) *exact_out = exact;
    free(b), free(q), free(over), free(rk);
    return 0;
}

/* ---- one layer ---------------------------------------------------------- */

void lasso_stats_free(struct lasso_stats *s)
{
    if (!s) return;
    free(s->xtx);
    free(s->xty);
    memset(s, 0, sizeof *s);
}

/* Copies rows x width floats to doubles, refusing a non-finite one
 * (named as `what` entry j of point r0 + row). Returns 0 or ABC_EVALUE. */
static int widen_finite(double *dst, const float *src, int rows, size_t width,
                        int r0, const char *what, char *err)
{
    for (size_t i = 0; i < (size_t)rows * width; i++) {
        dst[i] = src[i];
        if (!isfinite(dst[i]))
            return abc_errf(err, ABC_EVALUE, "lasso: %s %zu of point %zu is %g",
                            what, i % width, (size_t)r0 + i / width, dst[i]);
    }
    return 0;
}

int lasso_stats_compute(struct lasso_stats *s, const float *x, const float *y,
                        int N, int c, int kk, int n, char *err)
{
    memset(s, 0, sizeof *s);
    if (N < 1 || c < 1 || kk < 1 || n < 1 || (int64_t)c * kk > 1 << 16)
        return abc_errf(err, ABC_EVALUE,
                        "lasso: %d points of %d channels x %d taps and %d "
                        "outputs, expected positive sizes (inputs <= 65536)",
                        N, c, kk, n);
    size_t D = (size_t)c * kk;
    enum { CHUNK = 256 };
    s->xtx = calloc(D * D, sizeof(double));
    s->xty = calloc(D * n, sizeof(double));
    double *xd = malloc(sizeof(double) * CHUNK * D),
           *yd = malloc(sizeof(double) * CHUNK * n);
    if (!s->xtx || !s->xty || !xd || !yd) {
        free(xd), free(yd);
        lasso_stats_free(s);
        return abc_errf(err, ABC_ENOMEM,
                        "lasso: out of memory for statistics of %zu inputs", D);
    }
    s->npoints = N, s->c = c, s->kk = kk, s->n = n;
    double yy = 0;
    for (int r0 = 0; r0 < N; r0 += CHUNK) {
        int rows = N - r0 < CHUNK ? N - r0 : CHUNK;
        int rc =
            widen_finite(xd, x + (size_t)r0 * D, rows, D, r0, "input", err);
        if (!rc)
            rc = widen_finite(yd, y + (size_t)r0 * n, rows, (size_t)n, r0,
                              "output", err);
        if (rc) {
            free(xd), free(yd);
            lasso_stats_free(s);
            return rc;
        }
        for (size_t i = 0; i < (size_t)rows * n; i++)
            yy += yd[i] * yd[i];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)D, rows, 1.0,
                    xd, (int)D, 1.0, s->xtx, (int)D);
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)D, n, rows,
                    1.0, xd, (int)D, yd, n, 1.0, s->xty, n);
    }
    for (size_t i = 0; i < D; i++) /* dsyrk wrote the upper triangle */
        for (size_t j = 0; j < i; j++)
            s->xtx[i * D + j] = s->xtx[j * D + i];
    s->yy = yy;
    free(xd), free(yd);
    return 0;
}

void lasso_gram(const struct lasso_stats *s, const float *w, double *gram,
                double *corr)
{
    int c = s->c, kk = s->kk, n = s->n;
    size_t D = (size_t)c * kk;
    double scale = 1.0 / ((double)s->npoints * n);
    /* M = W^T W (D,D); G_cd = sum over block (c,d) of (X^T X) .* M, which is
     * sum_o <X_c W_c[o]^T, X_d W_d[o]^T>. */
    double *wd = malloc(sizeof(double) * D * n),
           *M = malloc(sizeof(double) * D * D);
    if (!wd || !M) { /* fall back to plain loops without the buffers */
        free(wd), free(M);
        for (int a = 0; a < c; a++)
            for (int b = 0; b < c; b++) {
                double g = 0;
                for (int u = 0; u < kk; u++)
                    for (int v = 0; v < kk; v++) {
                        size_t i = (size_t)a * kk + u, j = (size_t)b * kk + v;
                        double m = 0;
                        for (int o = 0; o < n; o++)
                            m += (double)w[o * D + i] * w[o * D + j];
                        g += s->xtx[i * D + j] * m;
                    }
                gram[(size_t)a * c + b] = g * scale;
            }
    } else {
        for (size_t i = 0; i < D * n; i++)
            wd[i] = w[i]; /* (n,D) */
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)D, (int)D, n,
                    1.0, wd, (int)D, wd, (int)D, 0.0, M, (int)D);
        for (int a = 0; a < c; a++)
            for (int b = 0; b < c; b++) {
                double g = 0;
                for (int u = 0; u < kk; u++) {
                    size_t i = (size_t)a * kk + u;
                    const double *xr = s->xtx + i * D + (size_t)b * kk;
                    const double *mr = M + i * D + (size_t)b * kk;
                    for (int v = 0; v < kk; v++)
                        g += xr[v] * mr[v];
                }
                gram[(size_t)a * c + b] = g * scale;
            }
        free(wd), free(M);
    }
    for (int a = 0; a < c; a++) {
        double r = 0;
        for (int u = 0; u < kk; u++) {
            size_t i = (size_t)a * kk + u;
            for (int o = 0; o < n; o++)
                r += (double)w[o * D + i] * s->xty[i * n + o];
        }
        corr[a] = r * scale;
    }
}

/* Indices into 0..D of the kept channels' taps; returns their number. */
static int kept_inputs(const struct lasso_stats *s, const unsigned char *keep,
                       int *idx)
{
    int Dk = 0;
    for (int a = 0; a < s->c; a++)
        if (!keep || keep[a])
            for (int u = 0; u < s->kk; u++)
                idx[Dk++] = a * s->kk + u;
    return Dk;
}

double lasso_error(const struct lasso_stats *s, const unsigned char *keep,
                   const float *w_kept)
{
    if (!(s->yy > 0)) return 0;
    size_t D = (size_t)s->c * s->kk;
    int n = s->n;
    int *idx = malloc(sizeof(int) * D);
    if (!idx) return NAN;
    int Dk = kept_inputs(s, keep, idx);
    /* ||Y - X_K w^T||^2 = yy - 2 <w, (X_K^T Y)^T> + <w, w (X_K^T X_K)>,
     * the last product by BLAS (A_KK is xtx itself when all are kept) */
    double *A = (size_t)Dk == D ? s->xtx : malloc(sizeof(double) * Dk * Dk);
    double *wd = malloc(sizeof(double) * n * Dk),
           *t = malloc(sizeof(double) * n * Dk);
    double e = NAN;
    if (A && wd && t) {
        if (A != s->xtx)
            for (int p = 0; p < Dk; p++)
                for (int q = 0; q < Dk; q++)
                    A[(size_t)p * Dk + q] = s->xtx[(size_t)idx[p] * D + idx[q]];
        for (size_t i = 0; i < (size_t)n * Dk; i++)
            wd[i] = w_kept[i];
        cblas_dsymm(CblasRowMajor, CblasRight, CblasUpper, n, Dk, 1.0, A, Dk,
                    wd, Dk, 0.0, t, Dk);
        double lin = 0, quad = 0;
        for (int o = 0; o < n; o++)
            for (int p = 0; p < Dk; p++) {
                size_t i = (size_t)o * Dk + p;
                lin += wd[i] * s->xty[(size_t)idx[p] * n + o];
                quad += wd[i] * t[i];
            }
        e = (s->yy - 2 * lin + quad) / s->yy;
        if (e < 0) e = 0;
    }
    if (A != s->xtx) free(A);
    free(wd), free(t), free(idx);
    return e;
}

int lasso_reconstruct(const struct lasso_stats *s, const unsigned char *keep,
                      double ridge, float *w_out, double *rel_err, char *err)
{
    if (!(ridge >= 0) || !isfinite(ridge))
        return abc_errf(err, ABC_EVALUE, "lasso: ridge %g, expected >= 0",
                        ridge);
    size_t D = (size_t)s->c * s->kk;
    int n = s->n;
    int *idx = malloc(sizeof(int) * D);
    if (!idx) return abc_errf(err, ABC_ENOMEM, "lasso: out of memory");
    int Dk = kept_inputs(s, keep, idx);
    if (Dk == 0) {
        free(idx);
        return abc_errf(err, ABC_EVALUE, "lasso: no channel kept");
    }
    double *A = malloc(sizeof(double) * Dk * Dk),
           *Bm = malloc(sizeof(double) * Dk * n);
    if (!A || !Bm) {
        free(idx), free(A), free(Bm);
        return abc_errf(err, ABC_ENOMEM,
                        "lasso: out of memory for a %d-input least squares",
                        Dk);
    }
    double trace = 0;
    for (int p = 0; p < Dk; p++) {
        for (int q = 0; q < Dk; q++)
            A[(size_t)p * Dk + q] = s->xtx[(size_t)idx[p] * D + idx[q]];
        for (int o = 0; o < n; o++)
            Bm[(size_t)p * n + o] = s->xty[(size_t)idx[p] * n + o];
        trace += A[(size_t)p * Dk + p];
    }
    int rc = 0;
    if (!(trace > 0)) { /* every kept input is zero: any weights fit alike */
        memset(w_out, 0, sizeof(float) * (size_t)n * Dk);
    } else {
        double shift = ridge * trace / Dk;
        for (int p = 0; p < Dk; p++)
            A[(size_t)p * Dk + p] += shift;
        lapack_int info =
            LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', Dk, n, A, Dk, Bm, n);
        if (info != 0)
            rc = abc_errf(err, ABC_EVALUE,
                          "lasso: least squares over %d inputs failed "
                          "(LAPACKE_dposv info %d%s)",
                          Dk, (int)info,
                          info > 0 ? ": singular, raise the ridge" : "");
        else
            for (int p = 0; p < Dk; p++)
                for (int o = 0; o < n; o++)
                    w_out[(size_t)o * Dk + p] = (float)Bm[(size_t)p * n + o];
    }
    free(idx), free(A), free(Bm);
    if (!rc && rel_err) *rel_err = lasso_error(s, keep, w_out);
    return rc;
}

/* ---- a whole network ---------------------------------------------------- */

void lasso_params_default(struct lasso_params *p)
{
    p->images = 512;
    p->points_per_image = 10;
    p->max_iter = 10000;
    p->tol = 1e-9;
    p->ridge = 1e-9;
    p->batch = 64;
    p->seed = 1;
}

void lasso_report_free(struct lasso_report *r)
{
    if (!r) return;
    free(r->layers);
    memset(r, 0, sizeof *r);
}

int lasso_uniform_structure(const struct model *m, double ratio, int *channels,
                            char *err)
{
    if (!(ratio > 0 && ratio <= 1))
        return abc_errf(err, ABC_EVALUE, "keep ratio %g, expected in (0,1]",
                        ratio);
    /* the uniform structure of budget.c, without a FLOPs target */
    return budget_uniform(m, 0, ratio, 1, channels, NULL, err);
}

static int check_params(const struct lasso_params *p, char *err)
{
    if (p->images < 1 || p->points_per_image < 1 || p->batch < 1)
        return abc_errf(err, ABC_EVALUE,
                        "lasso: %d images, %d points per image, batch %d; "
                        "expected each >= 1",
                        p->images, p->points_per_image, p->batch);
    if (p->max_iter < 1 || !(p->tol > 0) || !isfinite(p->tol))
        return abc_errf(err, ABC_EVALUE,
                        "lasso: max_iter %d, tol %g; expected >= 1 and a "
                        "finite tol > 0",
                        p->max_iter, p->tol);
    if (!(p->ridge >= 0) || !isfinite(p->ridge))
        return abc_errf(err, ABC_EVALUE, "lasso: ridge %g, expected >= 0",
                        p->ridge);
    return 0;
}

/* A copy of src (same structure and weights) that can run forwards. */
static int model_copy(const struct model *src, struct model **out, char *err)
{
    int total = 0;
    for (int j = 0; j < src->nprunable; j++)
        total += src->channels[j];
    int *keep = malloc(sizeof(int) * (total ? total : 1));
    if (!keep) return abc_errf(err, ABC_ENOMEM, "lasso: out of memory");
    for (int j = 0, off = 0; j < src->nprunable; off += src->channels[j], j++)
        for (int i = 0; i < src->channels[j]; i++)
            keep[off + i] = i;
    int rc = prune_slice_keep(src, src->channels, keep, out, err);
    free(keep);
    return rc;
}

/* The sampled images, normalised (images, c, h, w): p->images distinct
 * training images chosen by p->seed, in ascending index order. */
static int sample_images(const struct lasso_params *p,
                         const struct dataset *train, const struct augment *aug,
                         float **xall, char *err)
{
    *xall = NULL;
    size_t isz = (size_t)train->c * train->h * train->w;
    int *perm = malloc(sizeof(int) * train->n);
    struct dataset sub = {.n = p->images,
                          .c = train->c,
                          .h = train->h,
                          .w = train->w,
                          .num_classes = train->num_classes};
    sub.images = malloc(isz * p->images);
    sub.labels = calloc((size_t)p->images, 1);
    float *x = malloc(sizeof(float) * isz * p->images);
    int *labels = malloc(sizeof(int) * p->batch);
    int rc = 0;
    if (!perm || !sub.images || !sub.labels || !x || !labels) {
        rc = abc_errf(err, ABC_ENOMEM, "lasso: out of memory for %d images",
                      p->images);
        goto done;
    }
    for (int i = 0; i < train->n; i++)
        perm[i] = i;
    struct rng r;
    rng_seed(&r, rng_derive(p->seed, SEED_LASSO_LAYER, 0, 0));
    /* the first `images` entries of a Fisher-Yates shuffle */
    for (int i = 0; i < p->images; i++) {
        int k = i + (int)rng_below(&r, (uint64_t)(train->n - i));
        int t = perm[i];
        perm[i] = perm[k];
        perm[k] = t;
    }
    for (int i = 1; i < p->images; i++) /* ascending: insertion sort */
        for (int k = i; k > 0 && perm[k - 1] > perm[k]; k--) {
            int t = perm[k];
            perm[k] = perm[k - 1];
            perm[k - 1] = t;
        }
    for (int i = 0; i < p->images; i++)
        memcpy(sub.images + isz * i, train->images + isz * perm[i], isz);
    struct loader ld;
    if ((rc = loader_init(&ld, &sub, p->batch, 0, 0, aug, 0, err))) {
        abc_errprefix(err, rc, "lasso");
        goto done;
    }
    loader_start(&ld, 0);
    int got, at = 0;
    while ((got = loader_next(&ld, x + isz * at, labels)) > 0)
        at += got;
    loader_free(&ld);
    *xall = x;
    x = NULL;
done:
    free(perm), free(sub.images), free(sub.labels), free(x), free(labels);
    return rc;
}

/* P distinct positions out of hw for each sampled image, from (seed, j,
 * image): pos (images, P). */
static void sample_positions(uint64_t seed, int j, int images, int P, int hw,
                             int *scratch, int *pos)
{
    for (int img = 0; img < images; img++) {
        for (int i = 0; i < hw; i++)
            scratch[i] = i;
        struct rng r;
        rng_seed(
            &r, rng_derive(seed, SEED_LASSO_POINT, (uint64_t)j, (uint64_t)img));
        for (int i = 0; i < P; i++) {
            int k = i + (int)rng_below(&r, (uint64_t)(hw - i));
            int t = scratch[i];
            scratch[i] = scratch[k];
            scratch[k] = t;
            pos[(size_t)img * P + i] = scratch[i];
        }
    }
}

/* Y rows of images [b0, b0+B): the layer's outputs at the sampled positions,
 * minus the bias (NULL for convs). */
static void gather_y(const struct model_layer_io *io, const float *bias, int b0,
                     int B, const int *pos, int P, float *Y)
{
    int n = io->out_c, hw = io->out_h * io->out_w;
    for (int i = 0; i < B; i++)
        for (int t = 0; t < P; t++) {
            size_t row = (size_t)(b0 + i) * P + t;
            int ps = pos[row];
            for (int o = 0; o < n; o++)
                Y[row * n + o] = io->out[((size_t)i * n + o) * hw + ps] -
                                 (bias ? bias[o] : 0.0f);
        }
}

/* X rows of images [b0, b0+B): the input patches (channel-major, zero
 * outside the input) behind the sampled output positions. */
static void gather_x(const struct model_layer_io *io, int b0, int B,
                     const int *pos, int P, float *X)
{
    int c = io->in_c, H = io->in_h, W = io->in_w, k = io->k;
    size_t D = (size_t)c * k * k;
    for (int i = 0; i < B; i++)
        for (int t = 0; t < P; t++) {
            size_t row = (size_t)(b0 + i) * P + t;
            int oy = pos[row] / io->out_w, ox = pos[row] % io->out_w;
            float *xr = X + row * D;
            for (int ch = 0; ch < c; ch++) {
                const float *plane = io->in + ((size_t)i * c + ch) * H * W;
                for (int ky = 0; ky < k; ky++) {
                    int iy = oy * io->stride - io->pad + ky;
                    for (int kx = 0; kx < k; kx++) {
                        int ix = ox * io->stride - io->pad + kx;
                        *xr++ = iy >= 0 && iy < H && ix >= 0 && ix < W
                                    ? plane[(size_t)iy * W + ix]
                                    : 0.0f;
                    }
                }
            }
        }
}

/* The points of layer j: forwards `images` images through ref (Y, or NULL
 * to skip) and through cur (X, or Yc: cur's own outputs, or NULL) up to the
 * layer consuming prunable layer j; fills the arrays (rows image-major). */
static int gather_points(struct model *ref, struct model *cur, int cons,
                         const float *xall, int images, int batch,
                         const int *pos, int P, float *Y, float *X, float *Yc,
                         char *err)
{
    const struct model *any = ref ? ref : cur;
    size_t isz = (size_t)any->in_c * any->in_h * any->in_w;
    for (int b0 = 0; b0 < images; b0 += batch) {
        int B = images - b0 < batch ? images - b0 : batch;
        const float *xb = xall + isz * b0;
        struct model_layer_io io;
        int rc;
        if (Y) {
            if ((rc = model_forward_to(ref, xb, B, cons, 0, err)) ||
                (rc = model_layer_io(ref, cons, &io, err)))
                return rc;
            gather_y(&io,
                     io.bias >= 0
                         ? model_tensor_data(ref, &ref->tensors[io.bias])
                         : NULL,
                     b0, B, pos, P, Y);
        }
        if (X || Yc) {
            if ((rc = model_forward_to(cur, xb, B, cons, 0, err)) ||
                (rc = model_layer_io(cur, cons, &io, err)))
                return rc;
            if (X) gather_x(&io, b0, B, pos, P, X);
            if (Yc)
                gather_y(&io,
                         io.bias >= 0
                             ? model_tensor_data(cur, &cur->tensors[io.bias])
                             : NULL,
                         b0, B, pos, P, Yc);
        }
    }
    return 0;
}

/* Common checks of lasso_prune and lasso_consumer_error. */
static int check_inputs(const struct model *src, const struct lasso_params *p,
                        const struct dataset *train, const struct augment *aug,
                        char *err)
{
    int rc = check_params(p, err);
    if (rc) return rc;
    if (!train || !aug || !train->images)
        return abc_errf(err, ABC_EVALUE, "lasso: no training data");
    if (train->c != src->in_c || train->h != src->in_h || train->w != src->in_w)
        return abc_errf(err, ABC_EVALUE,
                        "lasso: images are %dx%dx%d, the model takes %dx%dx%d",
                        train->c, train->h, train->w, src->in_c, src->in_h,
                        src->in_w);
    if (train->n < p->images)
        return abc_errf(err, ABC_EVALUE,
                        "lasso: %d images requested, the training set has %d",
                        p->images, train->n);
    return 0;
}

/* Layer j's sampled points: P positions (pos, images x P) of the consumer's
 * output per image, N = images * P points; Y (N, n): the original network's
 * outputs there. */
struct layer_points {
    int prod, cons, c, kk, n, hw, P, N;
    int *pos;
    float *Y;
    char name[MODEL_NAME_LEN], cname[MODEL_NAME_LEN];
};

static int plan_points(const struct model *m, const struct lasso_params *p,
                       int j, int *scratch, struct layer_points *lp, char *err)
{
    memset(lp, 0, sizeof *lp);
    struct model_layer_io io;
    lp->prod = model_layer_producing(m, j);
    lp->cons = model_layer_consuming(m, j);
    if (lp->prod < 0 || lp->cons < 0)
        return abc_errf(err, ABC_EVALUE,
                        "lasso: prunable layer %d of %s has no producer or "
                        "consumer",
                        j, arch_name(m->arch));
    int rc = model_layer_io(m, lp->cons, &io, err);
    if (rc) return rc;
    memcpy(lp->name, m->layers[lp->prod].name, MODEL_NAME_LEN);
    memcpy(lp->cname, m->layers[lp->cons].name, MODEL_NAME_LEN);
    lp->c = m->channels[j], lp->kk = io.k * io.k, lp->n = io.out_c;
    if (io.in_c != lp->c)
        return abc_errf(err, ABC_EVALUE,
                        "lasso: %s: its reader %s takes %d channels, the "
                        "layer has %d",
                        lp->name, lp->cname, io.in_c, lp->c);
    lp->hw = io.out_h * io.out_w;
    lp->P = p->points_per_image < lp->hw ? p->points_per_image : lp->hw;
    lp->N = p->images * lp->P;
    if (lp->N < lp->c)
        return abc_errf(err, ABC_EVALUE,
                        "lasso: %s: %d sampled points (%d images x %d "
                        "positions of %s) for %d channels; raise images or "
                        "points_per_image",
                        lp->name, lp->N, p->images, lp->P, lp->cname, lp->c);
    lp->pos = malloc(sizeof(int) * lp->N);
    lp->Y = malloc(sizeof(float) * lp->N * lp->n);
    if (!lp->pos || !lp->Y)
        return abc_errf(err, ABC_ENOMEM,
                        "lasso: %s: out of memory for %d points", lp->name,
                        lp->N);
    sample_positions(p->seed, j, p->images, lp->P, lp->hw, scratch, lp->pos);
    return 0;
}

/* Fills every layer's Y from one forward pass of the original network. */
static int gather_targets(struct model *orig, struct layer_points *lps, int L,
                          const float *xall, const struct lasso_params *p,
                          char *err)
{
    size_t isz = (size_t)orig->in_c * orig->in_h * orig->in_w;
    orig->fold_bn_eval = 0; /* the consumers' pre-BN outputs are read */
    for (int b0 = 0; b0 < p->images; b0 += p->batch) {
        int B = p->images - b0 < p->batch ? p->images - b0 : p->batch;
        model_forward(orig, xall + isz * b0, NULL, B, 0, NULL);
        for (int j = 0; j < L; j++) {
            struct model_layer_io io;
            int rc = model_layer_io(orig, lps[j].cons, &io, err);
            if (rc) return rc;
            gather_y(&io,
                     io.bias >= 0
                         ? model_tensor_data(orig, &orig->tensors[io.bias])
                         : NULL,
                     b0, B, lps[j].pos, lps[j].P, lps[j].Y);
        }
    }
    return 0;
}

int lasso_prune(const struct model *src, const int *channels,
                const struct lasso_params *p, const struct dataset *train,
                const struct augment *aug, FILE *progress, struct model **out,
                struct lasso_report *rep, char *err)
{
    *out = NULL;
    if (rep) memset(rep, 0, sizeof *rep);
    int rc = prune_check(src, channels, src->nprunable, err);
    if (!rc) rc = check_inputs(src, p, train, aug, err);
    if (rc) return rc;
    double t_start = now_seconds();
    int L = src->nprunable;
    struct model *orig = NULL, *cur = NULL;
    float *xall = NULL, *X = NULL, *wk = NULL, *wn = NULL;
    int *scratch = NULL, *newch = NULL, *keepidx = NULL;
    unsigned char *keep = NULL;
    double *gram = NULL, *corr = NULL;
    struct lasso_stats st = {0};
    struct lasso_layer_report *lr = calloc((size_t)L, sizeof *lr);
    struct layer_points *lps = calloc((size_t)L, sizeof *lps);
    int total = 0, maxhw = 1;
    for (int j = 0; j < L; j++)
        total += src->channels[j];
    for (int l = 0; l < src->nlayers; l++)
        if (src->layers[l].hout * src->layers[l].wout > maxhw)
            maxhw = src->layers[l].hout * src->layers[l].wout;
    newch = malloc(sizeof(int) * L);
    keepidx = malloc(sizeof(int) * total);
    scratch = malloc(sizeof(int) * maxhw);
    if (!lr || !lps || !newch || !keepidx || !scratch) {
        rc = abc_errf(err, ABC_ENOMEM, "lasso: out of memory");
        goto done;
    }
    for (int j = 0; j < L && !rc; j++)
        rc = plan_points(src, p, j, scratch, &lps[j], err);
    if (rc || (rc = sample_images(p, train, aug, &xall, err)) ||
        (rc = model_copy(src, &orig, err)) ||
        (rc = model_reserve(orig, p->batch, err)) ||
        (rc = gather_targets(orig, lps, L, xall, p, err)))
        goto done;
    model_destroy(orig);
    orig = NULL;
    if ((rc = model_copy(src, &cur, err)) ||
        (rc = model_reserve(cur, p->batch, err)))
        goto done;

    for (int j = 0; j < L; j++) {
        double t0 = now_seconds();
        const struct layer_points *lp = &lps[j];
        int c = lp->c, kk = lp->kk, n = lp->n, N = lp->N;
        size_t D = (size_t)c * kk;
        free(X), free(wk), free(wn), free(keep), free(gram), free(corr);
        X = malloc(sizeof(float) * N * D);
        wk = malloc(sizeof(float) * n * D);
        wn = malloc(sizeof(float) * n * D);
        keep = malloc((size_t)c);
        gram = malloc(sizeof(double) * c * c);
        corr = malloc(sizeof(double) * c);
        if (!X || !wk || !wn || !keep || !gram || !corr) {
            rc = abc_errf(err, ABC_ENOMEM,
                          "lasso: %s: out of memory for %d points of %zu "
                          "inputs",
                          lp->name, N, D);
            goto done;
        }
        if ((rc = gather_points(NULL, cur, lp->cons, xall, p->images, p->batch,
                                lp->pos, lp->P, NULL, X, NULL, err)))
            goto done;
        lasso_stats_free(&st);
        if ((rc = lasso_stats_compute(&st, X, lp->Y, N, c, kk, n, err))) {
            abc_errprefix(err, rc, "%s", lp->name);
            goto done;
        }
        struct model_layer_io io;
        if ((rc = model_layer_io(cur, lp->cons, &io, err))) goto done;
        const float *w = model_tensor_data(cur, &cur->tensors[io.weight]);
        struct lasso_layer_report *r = &lr[j];
        r->layer = lp->prod, r->consumer = lp->cons;
        r->from = c, r->kept = channels[j], r->npoints = N;
        r->err_in = lasso_error(&st, NULL, w);
        lasso_gram(&st, w, gram, corr);
        if ((rc = lasso_select(gram, corr, c, channels[j], p->max_iter, p->tol,
                               keep, NULL, &r->lambda, &r->exact, err))) {
            abc_errprefix(err, rc, "%s", lp->name);
            goto done;
        }
        int Dk = 0;
        for (int o = 0; o < n; o++)
            for (int a = 0; a < c; a++)
                if (keep[a])
                    for (int u = 0; u < kk; u++)
                        wk[Dk++] = w[(size_t)o * D + (size_t)a * kk + u];
        r->err_sliced = lasso_error(&st, keep, wk);
        if ((rc = lasso_reconstruct(&st, keep, p->ridge, wn, &r->err_recon,
                                    err))) {
            abc_errprefix(err, rc, "%s", lp->name);
            goto done;
        }
        if (channels[j] < c) { /* slice layer j (and its BN, its reader) */
            for (int i = 0; i < L; i++)
                newch[i] = cur->channels[i];
            newch[j] = channels[j];
            for (int i = 0; i < L; i++) {
                int *ki = keepidx + prune_keep_offset(newch, i);
                if (i == j) {
                    for (int a = 0, k = 0; a < c; a++)
                        if (keep[a]) ki[k++] = a;
                } else {
                    for (int k = 0; k < newch[i]; k++)
                        ki[k] = k;
                }
            }
            struct model *next;
            if ((rc = prune_slice_keep(cur, newch, keepidx, &next, err)) ||
                (rc = model_reserve(next, p->batch, err))) {
                if (!rc) model_destroy(next);
                abc_errprefix(err, rc, "%s", lp->name);
                goto done;
            }
            model_destroy(cur);
            cur = next;
        }
        struct tensor_info *wt = &cur->tensors[io.weight];
        if (wt->numel != (size_t)n * channels[j] * kk) {
            rc = abc_errf(err, ABC_EVALUE,
                          "lasso: %s: reader weight %s has %zu values, "
                          "expected %d x %d x %d",
                          lp->name, wt->name, wt->numel, n, channels[j], kk);
            goto done;
        }
        memcpy(model_tensor_data(cur, wt), wn, sizeof(float) * wt->numel);
        r->seconds = now_seconds() - t0;
        if (progress) {
            fprintf(progress,
                    "lasso %d/%d %s: %d -> %d channels, lambda %.3g%s, N %d, "
                    "rel. error of %s: in %.4g, sliced %.4g, reconstructed "
                    "%.4g (%.2f s)\n",
                    j + 1, L, lp->name, c, channels[j], r->lambda,
                    r->exact ? "" : " (count filled/trimmed)", N, lp->cname,
                    r->err_in, r->err_sliced, r->err_recon, r->seconds);
            fflush(progress);
        }
    }
    *out = cur;
    cur = NULL;
    if (rep) {
        rep->nlayers = L;
        rep->layers = lr;
        rep->seconds = now_seconds() - t_start;
        lr = NULL;
    }
done:
    lasso_stats_free(&st);
    model_destroy(orig);
    model_destroy(cur);
    for (int j = 0; lps && j < L; j++)
        free(lps[j].pos), free(lps[j].Y);
    free(lps), free(lr), free(xall), free(X), free(wk), free(wn), free(scratch),
        free(newch), free(keepidx), free(keep), free(gram), free(corr);
    return rc;
}

int lasso_consumer_error(const struct model *src, const struct model *pruned,
                         int j, const struct lasso_params *p,
                         const struct dataset *train, const struct augment *aug,
                         double *rel_err, char *err)
{
    int rc = check_inputs(src, p, train, aug, err);
    if (rc) return rc;
    if (pruned->arch != src->arch || pruned->in_c != src->in_c ||
        pruned->in_h != src->in_h || pruned->in_w != src->in_w || j < 0 ||
        j >= src->nprunable)
        return abc_errf(err, ABC_EVALUE,
                        "lasso: prunable layer %d of a %s pruned from a %s "
                        "of another input shape or architecture",
                        j, arch_name(pruned->arch), arch_name(src->arch));
    int cons = model_layer_consuming(src, j);
    struct model_layer_io a, b;
    if ((rc = model_layer_io(src, cons, &a, err)) ||
        (rc = model_layer_io(pruned, cons, &b, err)))
        return rc;
    if (a.out_c != b.out_c || a.out_h != b.out_h || a.out_w != b.out_w)
        return abc_errf(err, ABC_EVALUE,
                        "lasso: %s has %d outputs in the pruned model, %d in "
                        "the source",
                        src->layers[cons].name, b.out_c, a.out_c);
    int hw = a.out_h * a.out_w, n = a.out_c;
    int P = p->points_per_image < hw ? p->points_per_image : hw;
    size_t N = (size_t)p->images * P;
    struct model *ref = NULL, *cur = NULL;
    float *xall = NULL, *Y = malloc(sizeof(float) * N * n),
          *Yc = malloc(sizeof(float) * N * n);
    int *pos = malloc(sizeof(int) * N), *scratch = malloc(sizeof(int) * hw);
    if (!Y || !Yc || !pos || !scratch) {
        rc = abc_errf(err, ABC_ENOMEM, "lasso: out of memory");
        goto done;
    }
    if ((rc = sample_images(p, train, aug, &xall, err)) ||
        (rc = model_copy(src, &ref, err)) ||
        (rc = model_copy(pruned, &cur, err)) ||
        (rc = model_reserve(ref, p->batch, err)) ||
        (rc = model_reserve(cur, p->batch, err)))
        goto done;
    sample_positions(p->seed, j, p->images, P, hw, scratch, pos);
    if ((rc = gather_points(ref, cur, cons, xall, p->images, p->batch, pos, P,
                            Y, NULL, Yc, err)))
        goto done;
    double num = 0, den = 0;
    for (size_t i = 0; i < N * n; i++) {
        double d = (double)Y[i] - Yc[i];
        num += d * d;
        den += (double)Y[i] * Y[i];
    }
    if (!isfinite(num) || !isfinite(den))
        rc = abc_errf(err, ABC_EVALUE, "lasso: %s: non-finite outputs",
                      src->layers[cons].name);
    else
        *rel_err = den > 0 ? num / den : 0;
done:
    model_destroy(ref);
    model_destroy(cur);
    free(xall), free(Y), free(Yc), free(pos), free(scratch);
    return rc;
}

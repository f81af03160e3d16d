/* lasso.h - channel pruning by LASSO channel selection and least-squares
 * reconstruction (He, Zhang, Sun, "Channel Pruning for Accelerating Very
 * Deep Neural Networks", ICCV 2017), layer by layer on sampled feature
 * points. Three levels: lasso_select (the LASSO over a c x c Gram matrix,
 * with lambda found by bisection), the layer (statistics of sampled points,
 * selection, reconstruction) and lasso_prune (a whole network). */
#ifndef ABC_LASSO_H
#define ABC_LASSO_H

#include <stdint.h>
#include <stdio.h>

#include "data/data.h"
#include "nn/model.h"

/* ---- the LASSO ---------------------------------------------------------- */

/* Chooses exactly `target` of c channels by LASSO: minimises over beta
 *   1/2 beta^T G beta - r^T beta + lambda ||beta||_1
 * (G = gram (c,c) row-major, symmetric positive semi-definite; r = corr
 * (c)) by cyclic coordinate descent, for lambda found by bisection on
 * [0, max|r_c|] so that exactly `target` coefficients are non-zero. With
 * G_cd = <Z_c, Z_d> / (N n) and r_c = <Z_c, Y> / (N n) this is the paper's
 * ||Y - sum_c beta_c Z_c||^2 / (2 N n) + lambda |beta|_1 (up to a constant).
 * When no lambda gives exactly `target` (ties, or a bisection interval
 * that shrinks to nothing), the solution at the smallest count above target
 * keeps its `target` largest |beta|; when even lambda = 0 gives fewer
 * (channels whose Z is zero, or exact zeros), the rest are filled by
 * largest |r_c|, then largest G_cc, then lowest index. target == c keeps
 * all (lambda 0, beta 1). Coordinate descent stops when no coefficient
 * moved more than tol * max(|beta|) in a sweep, or after max_iter sweeps.
 * Outputs: keep (c) 1 for a kept channel; beta (c, may be NULL) the
 * coefficients used (zero for dropped channels); lambda_out (may be NULL);
 * exact_out (may be NULL) 1 if the bisection hit the count exactly.
 * Returns 0, or ABC_EVALUE (c < 1, target outside 1..c, non-finite input,
 * negative diagonal, max_iter < 1, tol not positive) or ABC_ENOMEM. */
int lasso_select(const double *gram, const double *corr, int c, int target,
                 int max_iter, double tol, unsigned char *keep, double *beta,
                 double *lambda_out, int *exact_out, char *err);

/* ---- one layer ---------------------------------------------------------- */

/* Sufficient statistics of N sampled points of a layer with c input
 * channels of kk = k*k taps each (D = c*kk inputs) and n outputs:
 * xtx = X^T X (D,D), xty = X^T Y (D,n), yy = ||Y||^2, in double. Every
 * quantity below (Gram matrix, least squares, errors) comes from them. */
struct lasso_stats {
    int npoints, c, kk, n;
    double *xtx, *xty;
    double yy;
};

/* Accumulates the statistics of x (N, c*kk) - row i holds point i's input
 * patch, channel-major (channel c's kk taps at c*kk, the layout of a conv
 * weight's dimension 1..3) - and y (N, n), its target outputs. Allocates
 * s's arrays (free with lasso_stats_free). Returns 0, or ABC_EVALUE (bad
 * sizes, non-finite values, N < 1) or ABC_ENOMEM. */
int lasso_stats_compute(struct lasso_stats *s, const float *x, const float *y,
                        int N, int c, int kk, int n, char *err);
void lasso_stats_free(struct lasso_stats *s);

/* The LASSO Gram matrix (c,c) and correlations (c) of the channel
 * contributions Z_c = X_c W_c^T (N,n) for weights w (n, c*kk), normalised
 * by N*n, as lasso_select takes them. Computed from xtx and xty without
 * forming Z. */
void lasso_gram(const struct lasso_stats *s, const float *w, double *gram,
                double *corr);

/* Relative error ||Y - X_kept w_kept^T||^2 / ||Y||^2 on the sampled points
 * of weights w_kept (n, kept*kk) over the channels with keep[c] set (all
 * when keep is NULL), from the statistics (0 when ||Y|| is 0, NaN when
 * out of memory). */
double lasso_error(const struct lasso_stats *s, const unsigned char *keep,
                   const float *w_kept);

/* Least-squares reconstruction on the kept channels: w_out (n, kept*kk)
 * minimises ||Y - X_kept w_out^T||^2 + ridge * mean(diag X_kept^T X_kept) *
 * ||w_out||^2, solved from the normal equations in double by Cholesky
 * (LAPACKE_dposv); the tiny ridge keeps dead inputs (all-zero columns, e.g.
 * zero padding or channels ReLU never opens) solvable, their weights 0.
 * rel_err (may be NULL) receives lasso_error of the result. Returns 0, or
 * ABC_EVALUE (no channel kept, ridge negative, a singular system: then
 * raise ridge) or ABC_ENOMEM. */
int lasso_reconstruct(const struct lasso_stats *s, const unsigned char *keep,
                      double ridge, float *w_out, double *rel_err, char *err);

/* ---- a whole network ---------------------------------------------------- */

struct lasso_params {
    int images;           /* training images sampled (distinct) */
    int points_per_image; /* positions of the consumer's output per image
                             (capped at its out_h * out_w; 1 for a
                             classifier) */
    int max_iter;         /* coordinate-descent sweeps per lambda */
    double tol;           /* coordinate-descent tolerance (see above) */
    double ridge;         /* relative ridge of the reconstruction */
    int batch;            /* images per forward pass */
    uint64_t seed;        /* images and positions */
};

/* Defaults: 512 images, 10 points per image, 10000 sweeps, tol 1e-9,
 * ridge 1e-9, batch 64, seed 1. */
void lasso_params_default(struct lasso_params *p);

/* One prunable layer's outcome. Errors are relative, ||Y - Y'||^2 /
 * ||Y||^2 over the sampled points of its consumer's output (Y: the original
 * network's): err_in with the layer unpruned and the consumer's weights as
 * they were (the error the earlier pruned layers left), err_sliced with
 * only the selected channels and the consumer's weights sliced, err_recon
 * after the reconstruction. */
struct lasso_layer_report {
    int layer, consumer; /* layer rows of the pruned conv and its reader */
    int from, kept;      /* channels before and after */
    int npoints;         /* sampled points N */
    double lambda;
    int exact; /* the bisection hit `kept` exactly */
    double err_in, err_sliced, err_recon;
    double seconds;
};

struct lasso_report {
    int nlayers; /* = nprunable */
    struct lasso_layer_report *layers;
    double seconds;
};
void lasso_report_free(struct lasso_report *r);

/* Turns a uniform keep ratio (0,1] into a structure for m: channels[j] =
 * max(1, round(ratio * m->channels[j])). Returns 0 or ABC_EVALUE. */
int lasso_uniform_structure(const struct model *m, double ratio, int *channels,
                            char *err);

/* Prunes src to `channels` (one entry per prunable layer, each in
 * 1..src->channels[j]; src may itself be pruned), in layer order with the
 * paper's sequential scheme: for prunable layer j, p->images training
 * images (no augmentation, normalised by aug) and p->points_per_image
 * random positions of the consumer's output give N points; X, the
 * consumer's input patches, comes from the network pruned so far, Y, the
 * consumer's output (pre-BN; a classifier's without its bias), from the
 * ORIGINAL network, so errors do not accumulate. LASSO selects channels[j]
 * of the layer's channels (lasso_select), the conv and its BN keep those
 * (prune_slice_keep), and the consumer's weights on them are reconstructed
 * by least squares (also when nothing is dropped: that corrects the error
 * of earlier layers). The classifier of smallnet/vgg16 reads global-pooled
 * features and is treated as a 1x1 conv over them (one point per image).
 * In ResNets only the block's second conv is reconstructed, towards its own
 * original output (no multi-branch enhancement of the shortcut). Every
 * sampled point set needs N >= the layer's channel count. src is not
 * modified. BN running statistics are kept (eval-mode forward throughout).
 * progress (may be NULL): one line per layer. rep (may be NULL) receives
 * the per-layer report (free with lasso_report_free). On success *out is a
 * new model (model_destroy). Returns 0, or an error naming the layer (bad
 * structure or parameters, a dataset that does not match the model or has
 * fewer than p->images images, too few points, no memory, a singular
 * reconstruction, NaN activations) with *out NULL. */
int lasso_prune(const struct model *src, const int *channels,
                const struct lasso_params *p, const struct dataset *train,
                const struct augment *aug, FILE *progress, struct model **out,
                struct lasso_report *rep, char *err);

/* Relative error of `pruned`'s outputs of the layer consuming prunable layer
 * j against src's, on the points lasso_prune with the same p samples for
 * layer j (for a classifier, without the bias): how well a pruned network
 * (by LASSO or any other slicing of src) reproduces the original there.
 * pruned must have src's architecture and input shape, and the consumer the
 * same number of outputs. Returns 0 and *rel_err, or an error. */
int lasso_consumer_error(const struct model *src, const struct model *pruned,
                         int j, const struct lasso_params *p,
                         const struct dataset *train, const struct augment *aug,
                         double *rel_err, char *err);

#endif

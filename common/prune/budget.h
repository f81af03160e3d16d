/* budget.h - pruned structures at a FLOPs target, so that every method
 * (ABC, Network Slimming, LASSO, uniform, random) is compared at the same
 * cost. A target is a fraction of the reference model's multiply-accumulates
 * (the baseline's); a structure meets it when its MACs are <= target * full.
 * Each function returns the structure with the MOST MACs that meets the
 * target within its family, so no method is handicapped by undershooting.
 * Widths are clamped to min_channels..full width. With flops_target 0 the
 * family's size parameter comes from keep_fraction instead. */
#ifndef ABC_BUDGET_H
#define ABC_BUDGET_H

#include <stdint.h>

#include "nn/model.h"

/* MACs per image of ref's architecture and input shape with `channels`
 * (nprunable entries). Returns 0 or an error (bad structure, no memory). */
int budget_macs(const struct model *ref, const int *channels, int64_t *macs,
                char *err);

/* The window every method's structure lands in: MACs <= target and >=
 * (1 - BUDGET_TOLERANCE) * target, target = floor(flops_target * full).
 * The families below reach it by bisection on their size parameter, then
 * single channels added where the structure is furthest below its shape. */
#define BUDGET_TOLERANCE 0.01

/* *target = floor(flops_target * MACs of ref's full structure). */
int budget_target_macs(const struct model *ref, double flops_target,
                       int64_t *target, char *err);

/* A shape scaled to a target: u[j] > 0 are relative keep ratios (only their
 * proportions matter); channels[j] = clamp(round(s * u[j] * width_j)) for
 * the largest s that meets `target` MACs, then single channels added, each
 * to the layer furthest below s' * u[j] * width_j (s' the smallest scale
 * over the target), while the MACs stay <= target. The keep ratios keep the
 * shape's proportions up to rounding and the clamps (min_channels, full
 * width): targeting never flattens a shape. Returns 0 or ABC_EVALUE (a
 * non-positive ratio; target below min_channels everywhere). */
int budget_shape(const struct model *ref, const double *u, int64_t target,
                 int min_channels, int *channels, char *err);

/* The uniform structure: channels[j] = clamp(round(r * ref->channels[j])),
 * r the largest keep ratio whose MACs meet flops_target (or r =
 * keep_fraction when flops_target is 0), then filled to the target as
 * budget_shape does. Returns 0, or ABC_EVALUE when even
 * min_channels everywhere exceeds the target (the message gives both MACs).
 * *ratio (may be NULL) receives r. */
int budget_uniform(const struct model *ref, double flops_target,
                   double keep_fraction, int min_channels, int *channels,
                   double *ratio, char *err);

/* A random structure: per-layer ratios u_j ~ U(0.1, 1) from rng_derive(seed,
 * j), scaled to flops_target by budget_shape; with flops_target 0 the target is
 * the MACs of the uniform structure at keep_fraction (random at uniform's
 * cost). Returns 0 or ABC_EVALUE as budget_uniform. */
int budget_random(const struct model *ref, double flops_target,
                  double keep_fraction, int min_channels, uint64_t seed,
                  int *channels, char *err);

/* One global threshold over per-channel scores (Network Slimming's |gamma|):
 * score holds sum(ref->channels) values in prune_select's layout (layer j's
 * at prune_keep_offset(ref->channels, j)). Channels are ranked by score
 * (descending; ties: lower layer, then lower index; NaN last) and the top k
 * kept, every layer keeping at least its min_channels best; k is the
 * largest that meets flops_target, and then every further channel in the
 * ranking that still fits is kept too, so the structure ends within one
 * channel of the target (with flops_target 0: k = round(keep_fraction *
 * total)). Writes channels[nprunable] and keep (sum(ref->
 * channels) capacity, prune_slice_keep's layout for `channels`); *threshold
 * (may be NULL) receives the smallest kept score outside the per-layer
 * minimum. Returns 0, ABC_EVALUE (target unreachable) or ABC_ENOMEM. */
int budget_threshold(const struct model *ref, const float *score,
                     double flops_target, double keep_fraction,
                     int min_channels, int *channels, int *keep,
                     double *threshold, char *err);

#endif

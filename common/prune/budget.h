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

/* The uniform structure: channels[j] = clamp(round(r * ref->channels[j])),
 * r the largest keep ratio whose MACs meet flops_target (or r =
 * keep_fraction when flops_target is 0). Returns 0, or ABC_EVALUE when even
 * min_channels everywhere exceeds the target (the message gives both MACs).
 * *ratio (may be NULL) receives r. */
int budget_uniform(const struct model *ref, double flops_target,
                   double keep_fraction, int min_channels, int *channels,
                   double *ratio, char *err);

/* A random structure: per-layer ratios u_j ~ U(0.1, 1) from rng_derive(seed,
 * j), scaled by the largest s whose structure clamp(round(s * u_j * width))
 * meets flops_target; with flops_target 0 the target is the MACs of the
 * uniform structure at keep_fraction (random at uniform's cost). Returns 0
 * or ABC_EVALUE as budget_uniform. */
int budget_random(const struct model *ref, double flops_target,
                  double keep_fraction, int min_channels, uint64_t seed,
                  int *channels, char *err);

/* One global threshold over per-channel scores (Network Slimming's |gamma|):
 * score holds sum(ref->channels) values in prune_select's layout (layer j's
 * at prune_keep_offset(ref->channels, j)). Channels are ranked by score
 * (descending; ties: lower layer, then lower index; NaN last) and the top k
 * kept, every layer keeping at least its min_channels best; k is the
 * largest that meets flops_target (or round(keep_fraction * total) when
 * flops_target is 0). Writes channels[nprunable] and keep (sum(ref->
 * channels) capacity, prune_slice_keep's layout for `channels`); *threshold
 * (may be NULL) receives the smallest kept score outside the per-layer
 * minimum. Returns 0, ABC_EVALUE (target unreachable) or ABC_ENOMEM. */
int budget_threshold(const struct model *ref, const float *score,
                     double flops_target, double keep_fraction,
                     int min_channels, int *channels, int *keep,
                     double *threshold, char *err);

#endif

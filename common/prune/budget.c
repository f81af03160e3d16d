/* budget.c - structures at a FLOPs target (see budget.h). Every family is
 * monotone in its size parameter (a larger ratio, scale or k never removes a
 * channel), so the largest structure that meets the target is found by
 * bisection on that parameter. */
#include "prune/budget.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/rng.h"
#include "prune/prune.h"

#define BISECT_STEPS 60

int budget_macs(const struct model *ref, const int *channels, int64_t *macs,
                char *err)
{
    return model_shape_count(ref->arch, channels, ref->in_c, ref->in_h,
                             ref->in_w, ref->num_classes, macs, NULL, err);
}

static int clamp_width(double want, int min_channels, int width)
{
    long v = lround(want);
    if (v > width) v = width;
    if (v < min_channels) v = min_channels;
    if (v > width) v = width; /* min_channels above a narrow layer */
    return (int)v;
}

/* channels[j] = clamp(round(s * u[j] * width_j)); u NULL means 1. */
static void scaled(const struct model *ref, const double *u, double s,
                   int min_channels, int *channels)
{
    for (int j = 0; j < ref->nprunable; j++)
        channels[j] = clamp_width(s * (u ? u[j] : 1.0) * ref->channels[j],
                                  min_channels, ref->channels[j]);
}

static int full_macs(const struct model *ref, int64_t *macs, char *err)
{
    return budget_macs(ref, ref->channels, macs, err);
}

/* Largest s in [0, hi] with macs(scaled(s)) <= target, into channels;
 * *s_over (may be NULL) receives the smallest s found over the target (hi
 * when hi itself fits). Returns ABC_EVALUE when s = 0 (every layer at its
 * minimum) is over. */
static int bisect_scale(const struct model *ref, const double *u, double hi,
                        int min_channels, int64_t target, int *channels,
                        double *s_out, double *s_over, char *err)
{
    int64_t macs;
    int rc;
    scaled(ref, u, 0, min_channels, channels);
    if ((rc = budget_macs(ref, channels, &macs, err))) return rc;
    if (macs > target)
        return abc_errf(err, ABC_EVALUE,
                        "FLOPs target %lld MACs is below the smallest "
                        "structure (%d channels per layer: %lld MACs); raise "
                        "prune.flops_target or lower prune.min_channels",
                        (long long)target, min_channels, (long long)macs);
    double lo = 0;
    scaled(ref, u, hi, min_channels, channels);
    if ((rc = budget_macs(ref, channels, &macs, err))) return rc;
    if (s_over) *s_over = hi;
    if (macs <= target) {
        *s_out = hi;
        return 0;
    }
    for (int it = 0; it < BISECT_STEPS; it++) {
        double mid = 0.5 * (lo + hi);
        scaled(ref, u, mid, min_channels, channels);
        if ((rc = budget_macs(ref, channels, &macs, err))) return rc;
        if (macs <= target)
            lo = mid;
        else
            hi = mid;
    }
    scaled(ref, u, lo, min_channels, channels);
    *s_out = lo;
    if (s_over) *s_over = hi;
    return 0;
}

/* Rounding leaves a scaled structure up to one channel per layer short of
 * the target. Adds single channels while the MACs stay <= target, each to
 * the layer furthest below its share want[j] = s_over * u[j] * width_j
 * (ties: the lower layer), so the structure ends within one channel of the
 * target without moving its shape. */
static int fill_to_target(const struct model *ref, const double *u,
                          double s_over, int64_t target, int *channels,
                          char *err)
{
    int L = ref->nprunable;
    for (;;) {
        int added = 0;
        unsigned char *tried = calloc((size_t)(L ? L : 1), 1);
        if (!tried) return abc_errf(err, ABC_ENOMEM, "out of memory");
        for (int round = 0; round < L && !added; round++) {
            int best = -1;
            double best_gap = 0;
            for (int j = 0; j < L; j++) {
                if (tried[j] || channels[j] >= ref->channels[j]) continue;
                double gap =
                    s_over * (u ? u[j] : 1.0) * ref->channels[j] - channels[j];
                if (best < 0 || gap > best_gap) best = j, best_gap = gap;
            }
            if (best < 0) break;
            tried[best] = 1;
            channels[best]++;
            int64_t macs;
            int rc = budget_macs(ref, channels, &macs, err);
            if (rc) {
                free(tried);
                return rc;
            }
            if (macs <= target)
                added = 1;
            else
                channels[best]--;
        }
        free(tried);
        if (!added) return 0;
    }
}

int budget_target_macs(const struct model *ref, double flops_target,
                       int64_t *target, char *err)
{
    int64_t full;
    int rc = full_macs(ref, &full, err);
    if (rc) return rc;
    *target = (int64_t)floor(flops_target * (double)full);
    return 0;
}

int budget_shape(const struct model *ref, const double *u, int64_t target,
                 int min_channels, int *channels, char *err)
{
    int L = ref->nprunable;
    double umin = 1;
    for (int j = 0; j < L; j++) {
        if (!(u[j] > 0) || !isfinite(u[j]))
            return abc_errf(err, ABC_EVALUE,
                            "shape entry %d is %g, expected a positive "
                            "ratio",
                            j, u[j]);
        if (u[j] < umin) umin = u[j];
    }
    double s, s_over;
    int rc = bisect_scale(ref, u, 1.0 / umin, min_channels, target, channels,
                          &s, &s_over, err);
    if (rc) return rc;
    return fill_to_target(ref, u, s_over, target, channels, err);
}

int budget_uniform(const struct model *ref, double flops_target,
                   double keep_fraction, int min_channels, int *channels,
                   double *ratio, char *err)
{
    double r = keep_fraction;
    if (flops_target > 0) {
        int64_t target;
        double r_over;
        int rc = budget_target_macs(ref, flops_target, &target, err);
        if (!rc)
            rc = bisect_scale(ref, NULL, 1.0, min_channels, target, channels,
                              &r, &r_over, err);
        if (!rc) rc = fill_to_target(ref, NULL, r_over, target, channels, err);
        if (rc) return rc;
    } else {
        scaled(ref, NULL, r, min_channels, channels);
    }
    if (ratio) *ratio = r;
    return 0;
}

int budget_random(const struct model *ref, double flops_target,
                  double keep_fraction, int min_channels, uint64_t seed,
                  int *channels, char *err)
{
    int L = ref->nprunable;
    int64_t target;
    int rc;
    if (flops_target > 0) {
        rc = budget_target_macs(ref, flops_target, &target, err);
    } else {
        rc = budget_uniform(ref, 0, keep_fraction, min_channels, channels, NULL,
                            err);
        if (!rc) rc = budget_macs(ref, channels, &target, err);
    }
    if (rc) return rc;
    double *u = malloc(sizeof(double) * (size_t)(L ? L : 1));
    if (!u) return abc_errf(err, ABC_ENOMEM, "out of memory");
    for (int j = 0; j < L; j++) {
        struct rng r;
        rng_seed(&r, rng_derive(seed, j, 0, 0));
        u[j] = 0.1 + 0.9 * rng_uniform(&r);
    }
    rc = budget_shape(ref, u, target, min_channels, channels, err);
    free(u);
    return rc;
}

/* Channel ranking for budget_threshold: by score descending, NaN last,
 * then layer, then index (the order of the flat layout). */
struct ranked {
    float score;
    int flat;
};

static int cmp_ranked(const void *pa, const void *pb)
{
    const struct ranked *a = pa, *b = pb;
    int an = isnan(a->score), bn = isnan(b->score);
    if (an != bn) return an - bn;
    if (!an && a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->flat > b->flat) - (a->flat < b->flat);
}

/* Marks the top k of the ranking plus every layer's best min_channels,
 * and counts channels per layer. rank_in_layer[f]: position of flat
 * channel f in its layer's ranking. */
static void mark_top(const struct model *ref, const struct ranked *order,
                     const int *rank_in_layer, const int *layer_of, int total,
                     int k, int min_channels, unsigned char *kept,
                     int *channels)
{
    memset(channels, 0, sizeof(int) * (size_t)ref->nprunable);
    for (int i = 0; i < total; i++) {
        int f = order[i].flat;
        kept[f] = i < k || rank_in_layer[f] < min_channels;
        channels[layer_of[f]] += kept[f];
    }
}

int budget_threshold(const struct model *ref, const float *score,
                     double flops_target, double keep_fraction,
                     int min_channels, int *channels, int *keep,
                     double *threshold, char *err)
{
    int L = ref->nprunable, total = 0;
    for (int j = 0; j < L; j++)
        total += ref->channels[j];
    struct ranked *order = malloc(sizeof *order * (size_t)(total ? total : 1));
    int *rank_in_layer = malloc(sizeof(int) * (size_t)(total ? total : 1));
    int *layer_of = malloc(sizeof(int) * (size_t)(total ? total : 1));
    unsigned char *kept = malloc((size_t)(total ? total : 1));
    int rc = 0;
    if (!order || !rank_in_layer || !layer_of || !kept) {
        rc = abc_errf(err, ABC_ENOMEM, "out of memory ranking channels");
        goto out;
    }
    for (int j = 0, f = 0; j < L; j++)
        for (int i = 0; i < ref->channels[j]; i++, f++) {
            order[f].score = score[f];
            order[f].flat = f;
            layer_of[f] = j;
        }
    /* a layer's own ranking first (for the per-layer minimum) */
    for (int j = 0, off = 0; j < L; off += ref->channels[j], j++) {
        qsort(order + off, (size_t)ref->channels[j], sizeof *order, cmp_ranked);
        for (int i = 0; i < ref->channels[j]; i++)
            rank_in_layer[order[off + i].flat] = i;
    }
    qsort(order, (size_t)total, sizeof *order, cmp_ranked);

    int k;
    if (flops_target > 0) {
        int64_t target, macs;
        if ((rc = budget_target_macs(ref, flops_target, &target, err)))
            goto out;
        mark_top(ref, order, rank_in_layer, layer_of, total, 0, min_channels,
                 kept, channels);
        if ((rc = budget_macs(ref, channels, &macs, err))) goto out;
        if (macs > target) {
            rc = abc_errf(err, ABC_EVALUE,
                          "FLOPs target %lld MACs is below the smallest "
                          "structure (%d channels per layer: %lld MACs); "
                          "raise prune.flops_target or lower "
                          "prune.min_channels",
                          (long long)target, min_channels, (long long)macs);
            goto out;
        }
        int lo = 0, hi = total; /* macs(lo) <= target */
        while (lo < hi) {
            int mid = lo + (hi - lo + 1) / 2;
            mark_top(ref, order, rank_in_layer, layer_of, total, mid,
                     min_channels, kept, channels);
            if ((rc = budget_macs(ref, channels, &macs, err))) goto out;
            if (macs <= target)
                lo = mid;
            else
                hi = mid - 1;
        }
        k = lo;
        mark_top(ref, order, rank_in_layer, layer_of, total, k, min_channels,
                 kept, channels);
        /* The next channel in the ranking may not fit where a later one
         * (of a cheaper layer) does: go on down the ranking, keeping every
         * channel that still fits, so the structure ends within one
         * channel of the target (the ranking's order is kept). */
        for (int f = k; f < total; f++) {
            int flat = order[f].flat, j = layer_of[flat];
            if (kept[flat]) continue;
            channels[j]++;
            if ((rc = budget_macs(ref, channels, &macs, err))) goto out;
            if (macs <= target)
                kept[flat] = 1;
            else
                channels[j]--;
        }
    } else {
        k = (int)lround(keep_fraction * total);
        mark_top(ref, order, rank_in_layer, layer_of, total, k, min_channels,
                 kept, channels);
    }
    for (int j = 0, f = 0, n = 0; j < L; j++)
        for (int i = 0; i < ref->channels[j]; i++, f++)
            if (kept[f]) keep[n++] = i;
    if (threshold) *threshold = k > 0 ? order[k - 1].score : INFINITY;
out:
    free(order);
    free(rank_in_layer);
    free(layer_of);
    free(kept);
    return rc;
}

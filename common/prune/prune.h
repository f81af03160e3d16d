/* prune.h - weight inheritance: slicing a trained model into a pruned one.
 * A pruned prunable layer keeps c' of its c filters, chosen at random
 * (seeded, as ABCPruner does) or by largest L1 norm; the next layer keeps the
 * matching input channels and the layer's BN the matching entries (gamma,
 * beta, running mean and variance). Everything else is copied whole. The
 * source may itself be pruned: a slice of a slice works. */
#ifndef ABC_PRUNE_H
#define ABC_PRUNE_H

#include <stdint.h>

#include "nn/model.h"

/* How a pruned layer's filters are chosen (config: "random" or "l1"). */
enum filter_init {
    FILTER_RANDOM, /* uniformly random subset, seeded per layer */
    FILTER_L1,     /* largest L1 norm of the conv filters, ties: lower index */
    FILTER_COUNT
};

/* "random" or "l1" ("unknown" for anything else). */
const char *filter_init_name(enum filter_init how);
/* Parses "random" or "l1". Returns 0, or -1 if unknown. */
int filter_init_parse(const char *name, enum filter_init *out);

/* Checks that channels[0..n) is a structure that src can be sliced into:
 * n == src->nprunable and every channels[j] in 1..src->channels[j] (a slice
 * cannot grow a layer). Returns 0, or ABC_EVALUE with a message naming the
 * layer (e.g. "smallnet: prunable layer 1 (conv2) keeps 40 channels, the
 * source has 32"). prune_select and prune_slice call it with
 * n = src->nprunable; call it first when the length is not known to match. */
int prune_check(const struct model *src, const int *channels, int n, char *err);

/* Offset of layer j's kept indices in the array prune_select returns:
 * channels[0] + ... + channels[j-1]. */
int prune_keep_offset(const int *channels, int j);

/* Chooses, for every prunable layer j, channels[j] of src's current
 * src->channels[j] channels to keep. FILTER_RANDOM: a uniformly random
 * subset (every filter can be chosen), from rng_derive(seed, j, ...), so
 * layer j's choice depends only on (seed, j, its widths). FILTER_L1: the
 * channels[j] filters with the largest L1 norm of the conv weight whose
 * dimension 0 is layer j (seed unused; ties go to the lower index; a NaN
 * norm ranks lowest). On success *keep_out is ONE allocation the caller
 * frees, holding sum(channels) indices into src's channels: layer j's at
 * offset prune_keep_offset(channels, j), sorted ascending and distinct.
 * Returns 0, or an error (bad structure, no memory) with *keep_out NULL. */
int prune_select(const struct model *src, const int *channels,
                 enum filter_init how, uint64_t seed, int **keep_out,
                 char *err);

/* Builds the pruned model: model_create of src's architecture, input shape
 * and classes with `channels` (BN momentum/eps copied from src), every
 * tensor filled from src: dimension 0 sliced by the kept channels of layer
 * prune_out when >= 0, dimension 1 by those of layer prune_in when >= 0, the
 * rest copied. The kept channels are those prune_select(src, channels, how,
 * seed) returns. Gradients are zero; no activations are reserved. On success
 * *out is a new model the caller destroys with model_destroy. Returns 0, or
 * an error (bad structure naming the layer, no memory) with *out NULL. */
int prune_slice(const struct model *src, const int *channels,
                enum filter_init how, uint64_t seed, struct model **out,
                char *err);

/* prune_slice with the kept channels given: keep holds sum(channels)
 * indices in prune_select's layout (layer j's at prune_keep_offset, each
 * layer's distinct and ascending, below src->channels[j]), e.g. chosen by
 * BN gamma (slimming) or by LASSO. Returns 0 and *out, or ABC_EVALUE naming
 * the layer and index that is wrong, or ABC_ENOMEM, with *out NULL. */
int prune_slice_keep(const struct model *src, const int *channels,
                     const int *keep, struct model **out, char *err);

#endif

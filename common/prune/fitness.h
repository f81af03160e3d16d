/* fitness.h - evaluating one pruned structure, the engine call that both a
 * worker rank and the single-rank coordinator make: inherit weights from the
 * pretrained model (prune_slice), train briefly on a subset of the training
 * split, and measure accuracy on the validation split (never the test set). */
#ifndef ABC_FITNESS_H
#define ABC_FITNESS_H

#include <stdint.h>

#include "io/config.h"
#include "nn/model.h"
#include "prune/prune.h"
#include "train/train.h"

struct fitness_result {
    double val_acc, val_loss; /* on the validation images */
    double images_per_s;      /* training (adaptive_bn: recalibration)
                                 images per second */
    double wall_s;            /* the whole evaluation */
    int64_t flops, params;    /* MACs per image and parameters */
};

/* Evaluates structure `channels` (kept channels per prunable layer of
 * `pretrained`) with b's proxy: FITNESS_TRAIN trains briefly (b's budget)
 * on the head of the training split; FITNESS_ADAPTIVE_BN trains nothing and
 * re-estimates the BN statistics on b->bn_batches shuffled training batches
 * (bn_recalibrate). Both then score the first b->val_images validation
 * images (0: all). Filters are chosen by `how` with `seed`, which also seeds
 * shuffling and augmentation, so the result is a pure function of
 * (pretrained, channels, how, b, seed) for a fixed thread count.
 * If trained is not NULL it receives the trained pruned model (caller
 * destroys). stop (may be NULL), when raised, ends the training early
 * with ABC_ESTOPPED. With dp (an evaluation group, more than one rank)
 * the call is COLLECTIVE over dp's ranks, which all make it with the same
 * arguments: the short training splits every batch over them
 * (train_io.dp) and the validation its images, so every rank gets the same
 * result; slicing and BN recalibration each rank does whole. dp NULL: this
 * rank alone. Returns 0, or an error: a bad structure (ABC_EVALUE), a loss
 * that became NaN/Inf (ABC_ENUMERIC), no memory. */
int fitness_evaluate(const struct model *pretrained, const int *channels,
                     int nchannels, enum filter_init how,
                     const struct fitness_config *b, uint64_t seed,
                     const struct data_splits *d, struct train_dp *dp,
                     const volatile sig_atomic_t *stop,
                     struct fitness_result *r, struct model **trained,
                     char *err);

#endif

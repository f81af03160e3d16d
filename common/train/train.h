/* train.h - the training loop shared by `train`, fine-tuning and fitness
 * evaluation: dataset setup from a config, epochs of SGD with the configured
 * schedule, validation, progress lines and a JSON-lines log, checkpoints
 * with optimizer state so an interrupted training resumes exactly. */
#ifndef ABC_TRAIN_H
#define ABC_TRAIN_H

#include <signal.h>
#include <stdio.h>

#include "data/data.h"
#include "data/splits.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "nn/model.h"

/* Where training reports. Any field may be NULL. */
struct train_io {
    const char *ckpt_path; /* written after every epoch (atomically) */
    FILE *log;             /* JSON-lines: one event per epoch */
    FILE *progress;        /* one human line per epoch */
    const char *tag;       /* prefix of progress lines, e.g. "train" */
    int stop_at_epoch;     /* > 0: return once this many epochs are done
                              (the schedule still spans tc->epochs) */
    int64_t stop_at_step;  /* > 0: return once st->step reaches this */
    int skip_val;          /* 1: no validation after each epoch */
    const volatile sig_atomic_t *stop; /* set: return ABC_ESTOPPED at the
                                          next step (no checkpoint) */
    /* called every step after the backward pass, before the update: adds
     * a method's own term to m->grads (Network Slimming's sparsity) */
    void (*after_backward)(void *ctx, struct model *m);
    void *hook_ctx;
};

/* Trains m on s->train for tc->epochs epochs from st->epoch on (st->epoch
 * > 0 resumes: the optimizer state st->velocity must then be set), with
 * shuffling and augmentation seeded by `seed`, validating on s->val after
 * every epoch. Updates st. Returns 0, ABC_ENUMERIC if the loss becomes
 * NaN/Inf, or another error. */
int train_model(struct model *m, const struct train_config *tc,
                const struct data_splits *s, uint64_t seed,
                struct train_state *st, const struct train_io *io, char *err);

/* Learning rate at fractional epoch t in [0, epochs] for schedule tc:
 * warm-up ramps linearly from ~0 to lr over warmup_epochs (cosine then
 * spans the remaining epochs); then constant / step (lr * gamma^(number
 * of milestones <= t)) / cosine (0.5*lr*(1+cos(pi*u))). */
float lr_at(const struct train_config *tc, double t);

/* Accuracy (0..1) and mean loss of m on d in eval mode (BN running stats). */
int evaluate(struct model *m, const struct dataset *d,
             const struct augment *aug, int batch, double *acc, double *loss,
             char *err);

/* Adaptive BN (EagleEye): resets every BN running mean to 0 and variance
 * to 1, then forwards up to nbatches training-mode batches of d (shuffled
 * with seed, no augmentation, no gradients) with momentum 1/k for the k-th,
 * so the running statistics become the mean of those batches' statistics.
 * m's bn_momentum is restored. Returns 0, or an error (no memory, no batch
 * of >= 2 images). */
int bn_recalibrate(struct model *m, const struct dataset *d,
                   const struct augment *aug, int batch, int nbatches,
                   uint64_t seed, char *err);

/* Seconds on a monotonic clock. */
double now_seconds(void);

#endif

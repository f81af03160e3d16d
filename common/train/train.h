/* train.h - the training loop shared by `train`, fine-tuning and fitness
 * evaluation: dataset setup from a config, epochs of SGD with the configured
 * schedule, validation, progress lines and a JSON-lines log, checkpoints
 * with optimizer state so an interrupted training resumes exactly. */
#ifndef ABC_TRAIN_H
#define ABC_TRAIN_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "data/data.h"
#include "data/splits.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "nn/model.h"

/* Data-parallel training (DESIGN: the engine stays MPI-free). A transport
 * (proto/dp.h) fills this in with collective operations over the `size`
 * ranks that train one model together. Every rank calls train_model with
 * the same model, config, seed, data and schedule (train_io's stop_at_*,
 * skip_val, after_backward) and its own train_dp; each takes its shard of
 * every global batch (train_shard), the gradients are combined so that the
 * update equals one rank's on the whole batch, and every rank applies it.
 * Only the rank whose train_io has them writes the log, the progress and
 * the checkpoint. Each function below is COLLECTIVE over the ranks (all
 * call it in the same order with the same n) and gives every rank the same
 * bits, whatever the timing (a fixed summation order). */
struct train_dp {
    int rank, size; /* this rank, 0..size-1, and the number of ranks */
    /* v[0..n) := the sum over the ranks of every rank's v[0..n). Returns 0
     * or an error (the transport failed: the job cannot go on). */
    int (*sum_floats)(void *ctx, float *v, size_t n, char *err);
    /* Optional (NULL: sum_floats after the backward pass): the same sum,
     * times scale, in pieces that overlap the backward pass. sum_begin
     * before model_backward; sum_ready(lo) whenever v[lo, n) is final (lo
     * only decreases; it may start exchanging that part); sum_end after it,
     * which leaves v[i] := the sum over the ranks of scale * v[i], the same
     * bits as scaling and then calling sum_floats. */
    int (*sum_begin)(void *ctx, float *v, size_t n, float scale, char *err);
    void (*sum_ready)(void *ctx, size_t lo);
    int (*sum_end)(void *ctx, char *err);
    /* The same for a few doubles (statistics, agreement flags). */
    int (*sum_doubles)(void *ctx, double *v, int n, char *err);
    /* *same := 1 when every rank passed the same v, else 0. */
    int (*same_u64)(void *ctx, uint64_t v, int *same, char *err);
    void *ctx;
    /* Set by train_model: 1 when the error it returned is shared by every
     * rank (a stop, a non-finite loss, an input every rank refuses alike,
     * or another rank's failure, which that rank reports), 0 when it is
     * this rank's own (then the others saw it as another rank's). */
    int shared_error;
};

/* Rank `rank` of `size`'s part of n items (a global batch, the validation
 * set): the contiguous range [*first, *first + *count). Sizes differ by at
 * most one, the larger ones first: n = 10 over 4 ranks gives 3, 3, 2, 2. */
void train_shard(int n, int rank, int size, int *first, int *count);

/* FNV-1a hash of m's parameters and buffers and, when not NULL, the
 * optimizer's velocity (m->nparams floats): equal models hash equally. */
uint64_t train_weights_hash(const struct model *m, const float *velocity);

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
    /* data-parallel training over dp->size ranks (NULL, or size 1: this
     * rank trains alone). after_backward then sees the combined gradient
     * of the global batch. BatchNorm uses each rank's shard's statistics
     * and the running statistics are combined (shard-size weighted) at the
     * end of every epoch; with tc->sync_bn every training forward uses the
     * global batch's statistics instead (model.bn_sum over
     * dp->sum_doubles: the same running statistics on every rank). The
     * validation set is split over the ranks. */
    struct train_dp *dp;
};

/* Trains m on s->train for tc->epochs epochs from st->epoch on (st->epoch
 * > 0 resumes: the optimizer state st->velocity must then be set), with
 * shuffling and augmentation seeded by `seed`, validating on s->val after
 * every epoch. Updates st. Returns 0, ABC_ENUMERIC if the loss becomes
 * NaN/Inf, or another error. With io->dp (size > 1) it is COLLECTIVE over
 * the ranks (see struct train_dp): a stop on any rank stops them all at
 * the same step, and at the end the ranks check that their weights agree
 * (ABC_EVALUE if not). */
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

/* train.c - data setup, the SGD training loop and evaluation (see train.h). */
#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/rng.h"
#include "core/seeds.h"
#include "io/jsonl.h"
#include "nn/optim.h"

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

float lr_at(const struct train_config *tc, double t)
{
    double lr = tc->lr;
    if (tc->warmup_epochs > 0 && t < tc->warmup_epochs)
        return (float)(lr * (t + 1e-3) / (tc->warmup_epochs + 1e-3));
    if (tc->schedule == LR_STEP) {
        for (int i = 0; i < tc->nmilestones; i++)
            if (t >= tc->milestones[i]) lr *= tc->gamma;
    } else if (tc->schedule == LR_COSINE) {
        double T =
            tc->epochs > tc->warmup_epochs ? tc->epochs - tc->warmup_epochs : 1;
        double u = (t - tc->warmup_epochs) / T;
        if (u > 1) u = 1;
        lr = 0.5 * lr * (1.0 + cos(3.14159265358979323846 * u));
    }
    return (float)lr;
}

/* Batches of a dataset for forward passes: a loader (in order, or
 * shuffled with seed; no augmentation) started at epoch 0, m reserved for
 * its batch size, and the batch buffers. */
struct batches {
    struct loader l;
    float *x;
    int *y;
};

static int batches_open(struct batches *b, struct model *m,
                        const struct dataset *d, const struct augment *aug,
                        int batch, int shuffle, uint64_t seed, char *err)
{
    memset(b, 0, sizeof *b);
    int rc = loader_init(&b->l, d, batch, shuffle, 0, aug, seed, err);
    if (rc) return rc;
    if ((rc = model_reserve(m, batch, err))) {
        loader_free(&b->l);
        return rc;
    }
    size_t xn = (size_t)batch * d->c * d->h * d->w;
    b->x = malloc(xn * sizeof(float));
    b->y = malloc((size_t)batch * sizeof(int));
    if (!b->x || !b->y) {
        free(b->x);
        free(b->y);
        loader_free(&b->l);
        return abc_errf(err, ABC_ENOMEM, "out of memory for a batch");
    }
    loader_start(&b->l, 0);
    return 0;
}

static void batches_close(struct batches *b)
{
    free(b->x);
    free(b->y);
    loader_free(&b->l);
}

int evaluate(struct model *m, const struct dataset *d,
             const struct augment *aug, int batch, double *acc, double *loss,
             char *err)
{
    struct batches b;
    int rc = batches_open(&b, m, d, aug, batch, 0, 0, err);
    if (rc) return rc;
    int n, correct = 0, seen = 0;
    double lsum = 0;
    while ((n = loader_next(&b.l, b.x, b.y)) > 0) {
        lsum += (double)model_forward(m, b.x, b.y, n, 0, &correct) * n;
        seen += n;
    }
    batches_close(&b);
    *acc = seen ? (double)correct / seen : 0;
    if (loss) *loss = seen ? lsum / seen : 0;
    if (!isfinite(lsum))
        return abc_errf(err, ABC_ENUMERIC, "evaluation loss is not finite");
    return 0;
}

int bn_recalibrate(struct model *m, const struct dataset *d,
                   const struct augment *aug, int batch, int nbatches,
                   uint64_t seed, char *err)
{
    for (int t = 0; t < m->ntensors; t++) {
        const struct tensor_info *ti = &m->tensors[t];
        if (ti->role != TENSOR_BN_MEAN && ti->role != TENSOR_BN_VAR) continue;
        float *v = model_tensor_data(m, ti);
        for (size_t i = 0; i < ti->numel; i++)
            v[i] = ti->role == TENSOR_BN_VAR ? 1.0f : 0.0f;
    }
    struct batches b;
    int rc = batches_open(&b, m, d, aug, batch, 1, seed, err);
    if (rc) return rc;
    float momentum = m->bn_momentum;
    int k = 0, n;
    while (k < nbatches && (n = loader_next(&b.l, b.x, b.y)) > 0) {
        if (n < 2) break; /* one image has no batch variance */
        k++;
        m->bn_momentum = 1.0f / (float)k; /* running stats = mean of k */
        model_forward(m, b.x, NULL, n, 1, NULL);
    }
    m->bn_momentum = momentum;
    batches_close(&b);
    if (k == 0)
        return abc_errf(err, ABC_EVALUE,
                        "BN recalibration: no batch of >= 2 training images");
    return 0;
}

static void format_duration(char *buf, size_t n, double s)
{
    if (s < 0 || !isfinite(s)) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60)
        snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, n, "%lds", t);
}

void train_shard(int n, int rank, int size, int *first, int *count)
{
    int base = n / size, rem = n % size;
    *count = base + (rank < rem);
    *first = rank * base + (rank < rem ? rank : rem);
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

uint64_t train_weights_hash(const struct model *m, const float *velocity)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    h = fnv1a(h, m->params, m->nparams * sizeof(float));
    h = fnv1a(h, m->buffers, m->nbuffers * sizeof(float));
    if (velocity) h = fnv1a(h, velocity, m->nparams * sizeof(float));
    return h;
}

/* COLLECTIVE: combines every rank's outcome rc of `what`. Returns rc when
 * this rank failed, an error saying that another rank failed (marked
 * shared: that rank reports its own) when only others did, else 0. */
static int dp_agree(struct train_dp *dp, int rc, const char *what, char *err)
{
    double failed = rc != 0;
    char merr[ABC_ERRLEN];
    int mrc = dp->sum_doubles(dp->ctx, &failed, 1, merr);
    if (rc) return rc;
    if (mrc) return abc_errf(err, mrc, "%s", merr);
    if (failed > 0) {
        dp->shared_error = 1;
        return abc_errf(err, ABC_EVALUE,
                        "data-parallel training: %d other rank(s) failed %s "
                        "(their output has the error)",
                        (int)failed, what);
    }
    return 0;
}

/* COLLECTIVE: accuracy and mean loss of m on d, each rank evaluating its
 * contiguous part (train_shard) and the correct counts and loss sums added
 * up (in rank order: the same on every rank). */
static int evaluate_shared(struct model *m, const struct dataset *d,
                           const struct augment *aug, int batch,
                           struct train_dp *dp, double *acc, double *loss,
                           char *err)
{
    int first, count;
    train_shard(d->n, dp->rank, dp->size, &first, &count);
    struct dataset part = *d;
    part.n = count;
    part.images = d->images + (size_t)first * d->c * d->h * d->w;
    part.labels = d->labels + first;
    double a = 0, l = 0;
    int rc = count > 0 ? evaluate(m, &part, aug, batch, &a, &l, err) : 0;
    /* correct images (exact: acc is correct/count), loss sum, failures */
    double v[3] = {rc ? 0 : (double)lround(a * count), rc ? 0 : l * count,
                   rc != 0};
    char merr[ABC_ERRLEN];
    int mrc = dp->sum_doubles(dp->ctx, v, 3, merr);
    if (rc) return rc;
    if (mrc) return abc_errf(err, mrc, "%s", merr);
    if (v[2] > 0) {
        dp->shared_error = 1;
        return abc_errf(err, ABC_EVALUE,
                        "data-parallel validation: %d other rank(s) failed "
                        "(their output has the error)",
                        (int)v[2]);
    }
    *acc = d->n ? v[0] / d->n : 0;
    *loss = d->n ? v[1] / d->n : 0;
    return 0;
}

/* COLLECTIVE: makes every rank's BN running statistics the shard-size
 * weighted mean of all ranks' (count of batch images on this rank): the
 * running means become exactly those of the whole batches (the running
 * average is linear), the variances the mean of the shards' variances. */
static int dp_sync_buffers(struct model *m, struct train_dp *dp, int count,
                           int batch, char *err)
{
    if (m->nbuffers == 0) return 0;
    const float w = (float)count / (float)batch;
    for (size_t i = 0; i < m->nbuffers; i++)
        m->buffers[i] *= w;
    return dp->sum_floats(dp->ctx, m->buffers, m->nbuffers, err);
}

/* Synchronized BN's sum (model.bn_sum) over dp->sum_doubles, keeping the
 * transport's message for train_model to report and the time spent. */
struct bn_sync {
    struct train_dp *dp;
    double seconds;
    char err[ABC_ERRLEN];
};

static int bn_sync_sum(void *ctx, double *v, int n)
{
    struct bn_sync *b = ctx;
    double t0 = now_seconds();
    int rc = b->dp->sum_doubles(b->dp->ctx, v, n, b->err);
    b->seconds += now_seconds() - t0;
    return rc;
}

/* A synchronized BN sum of the step failed: the error, prefixed. */
static int bn_sync_failed(struct model *m, const struct bn_sync *b, int epoch,
                          int step, char *err)
{
    return abc_errf(err, m->bn_sum_rc,
                    "synchronized BatchNorm at epoch %d step %d: %s", epoch,
                    step, b->err);
}

int train_model(struct model *m, const struct train_config *tc,
                const struct data_splits *s, uint64_t seed,
                struct train_state *st, const struct train_io *io, char *err)
{
    const struct dataset *d = &s->train;
    const int batch = tc->batch_size;
    struct train_dp *dp = io && io->dp && io->dp->size > 1 ? io->dp : NULL;
    if (io && io->dp) io->dp->shared_error = 0;
    /* Checks every rank makes alike on the same inputs. */
    if (d->n < batch) {
        if (dp) dp->shared_error = 1;
        return abc_errf(err, ABC_EVALUE,
                        "training set has %d images, fewer than one batch "
                        "of %d",
                        d->n, batch);
    }
    if (dp && batch < dp->size) {
        dp->shared_error = 1;
        return abc_errf(err, ABC_EVALUE,
                        "batch size %d is smaller than the %d ranks training "
                        "data-parallel: every rank needs at least one image "
                        "of every batch",
                        batch, dp->size);
    }
    /* This rank's part of every global batch: all of it when alone. */
    int first = 0, count = batch;
    if (dp) train_shard(batch, dp->rank, dp->size, &first, &count);
    struct bn_sync bns = {.dp = dp};
    const int sync_bn = dp && tc->sync_bn;
    const size_t img = (size_t)d->c * d->h * d->w;
    struct loader l;
    struct sgd opt;
    float *x = NULL;
    int *y = NULL;
    memset(&opt, 0, sizeof opt);
    int rc = loader_init(&l, d, batch, 1, 1, &s->aug,
                         rng_derive(seed, SEED_LOADER, 0, 0), err);
    if (rc) {
        memset(&l, 0, sizeof l);
    } else if (!(rc = sgd_init(&opt, m->nparams, tc->momentum, tc->weight_decay,
                               tc->nesterov, err))) {
        x = malloc((size_t)batch * img * sizeof(float));
        y = malloc((size_t)batch * sizeof(int));
        if (!x || !y)
            rc = abc_errf(err, ABC_ENOMEM, "out of memory for a batch");
        else
            rc = model_reserve(m, count, err);
    }
    if (dp) rc = dp_agree(dp, rc, "to set up", err);
    if (rc) goto out;
    float *const resumed_velocity = st->velocity;
    if (st->epoch > 0 && resumed_velocity)
        memcpy(opt.velocity, resumed_velocity, m->nparams * sizeof(float));

    /* Full batches only (drop_last): batch statistics of a tiny last batch
     * would be noise, and every image is still seen across epochs. */
    const int steps = d->n / batch;
    const float shard_weight = (float)count / (float)batch;
    /* Synchronized BN: every training forward normalises with the global
     * batch's statistics (model.bn_sum), unset again at out. */
    if (sync_bn) {
        m->bn_sum = bn_sync_sum;
        m->bn_sum_ctx = &bns;
        m->bn_shard_weight = shard_weight;
        m->bn_sum_rc = 0;
    }
    const double t_start = now_seconds();
    const int first_epoch = st->epoch;
    for (int epoch = st->epoch; epoch < tc->epochs; epoch++) {
        double t0 = now_seconds(), lsum = 0;
        int correct = 0, seen = 0;
        float lr = 0;
        loader_start(&l, epoch);
        for (int i = 0; i < steps; i++) {
            int stop = io && io->stop && *io->stop;
            if (stop && !dp) {
                rc = abc_errf(err, ABC_ESTOPPED,
                              "training stopped by a signal at epoch %d "
                              "step %d",
                              epoch + 1, i);
                goto out;
            }
            int n = loader_next(&l, x, y);
            lr = lr_at(tc, epoch + (double)i / steps);
            model_zero_grad(m);
            int corr = 0;
            /* with dp: this rank's images of the global batch (n == batch:
             * full batches only) */
            int k = dp ? count : n;
            float loss = model_forward(m, x + (size_t)first * img, y + first, k,
                                       1, &corr);
            if (m->bn_sum_rc) {
                rc = bn_sync_failed(m, &bns, epoch + 1, i, err);
                goto out;
            }
            if (dp) {
                /* The step's statistics and every rank's stop flag first,
                 * so that all ranks stop (or give up) at the same step. */
                double v[4] = {isfinite(loss) ? (double)loss * k : 0, corr,
                               stop, !isfinite(loss)};
                if ((rc = dp->sum_doubles(dp->ctx, v, 4, err))) goto out;
                if (v[2] > 0 || v[3] > 0) dp->shared_error = 1;
                if (v[2] > 0) {
                    rc = abc_errf(err, ABC_ESTOPPED,
                                  "training stopped by a signal at epoch %d "
                                  "step %d (on %d of %d ranks)",
                                  epoch + 1, i, (int)v[2], dp->size);
                    goto out;
                }
                loss = v[3] > 0 ? NAN : (float)(v[0] / n);
                corr = (int)v[1];
            }
            if (!isfinite(loss)) {
                rc = abc_errf(err, ABC_ENUMERIC,
                              "training loss became %f at epoch %d step %d "
                              "(learning rate %g too high?)",
                              loss, epoch + 1, i, lr);
                goto out;
            }
            /* Our loss is a mean over this rank's k images: weighted by
             * k/batch, the ranks' gradients add up to the mean over the
             * global batch, as one rank would compute it. */
            if (dp && dp->sum_begin) {
                /* the sum overlaps the backward pass */
                if ((rc = dp->sum_begin(dp->ctx, m->grads, m->nparams,
                                        shard_weight, err)))
                    goto out;
                m->grad_ready = dp->sum_ready;
                m->grad_ready_ctx = dp->ctx;
                model_backward(m);
                m->grad_ready = NULL;
                if ((rc = dp->sum_end(dp->ctx, err))) goto out;
            } else {
                model_backward(m);
                if (dp) {
                    for (size_t j = 0; j < m->nparams; j++)
                        m->grads[j] *= shard_weight;
                    if ((rc = dp->sum_floats(dp->ctx, m->grads, m->nparams,
                                             err)))
                        goto out;
                }
            }
            if (m->bn_sum_rc) { /* a synchronized BN sum of the backward */
                rc = bn_sync_failed(m, &bns, epoch + 1, i, err);
                goto out;
            }
            if (io && io->after_backward) io->after_backward(io->hook_ctx, m);
            sgd_step(&opt, m->params, m->grads, lr);
            correct += corr;
            lsum += (double)loss * n;
            seen += n;
            st->step++;
            if (io && io->stop_at_step > 0 && st->step >= io->stop_at_step)
                break;
        }
        /* synchronized BN: every rank's running statistics are already
         * the same (the weights hash at the end checks the buffers too) */
        if (dp && !sync_bn && (rc = dp_sync_buffers(m, dp, count, batch, err)))
            goto out;
        double train_s = now_seconds() - t0;
        double val_acc = 0, val_loss = 0;
        if (s->val.n > 0 && !(io && io->skip_val)) {
            rc = dp ? evaluate_shared(m, &s->val, &s->aug, batch, dp, &val_acc,
                                      &val_loss, err)
                    : evaluate(m, &s->val, &s->aug, batch, &val_acc, &val_loss,
                               err);
            if (rc) goto out;
        }
        st->epoch = epoch + 1;
        if (val_acc > st->best_val_acc) st->best_val_acc = val_acc;
        double elapsed = now_seconds() - t_start;
        double eta =
            elapsed / (st->epoch - first_epoch) * (tc->epochs - st->epoch);
        double ips = seen / train_s;
        if (io && io->progress) {
            char etas[32];
            format_duration(etas, sizeof etas, eta);
            fprintf(io->progress,
                    "%s epoch %d/%d  loss %.4f  train %.2f%%  val %.2f%%  "
                    "lr %.4g  %.0f img/s  ETA %s\n",
                    io->tag ? io->tag : "train", st->epoch, tc->epochs,
                    lsum / seen, 100.0 * correct / seen, 100.0 * val_acc, lr,
                    ips, etas);
            fflush(io->progress);
        }
        if (io && io->log) {
            fprintf(io->log,
                    "{\"event\":\"epoch\",\"epoch\":%d,\"epochs\":%d,"
                    "\"step\":%lld,\"loss\":%.6f,\"train_acc\":%.6f,"
                    "\"val_acc\":%.6f,\"val_loss\":%.6f,\"lr\":%.6g,"
                    "\"images_per_s\":%.1f,\"epoch_s\":%.3f,"
                    "\"ranks\":%d,\"bn_stats\":\"%s\"}",
                    st->epoch, tc->epochs, (long long)st->step, lsum / seen,
                    (double)correct / seen, val_acc, val_loss, lr, ips,
                    now_seconds() - t0, dp ? dp->size : 1,
                    sync_bn ? "synchronized"
                    : dp    ? "per-rank"
                            : "batch");
            if (jsonl_end(io->log))
                rc = abc_errf(err, ABC_EIO, "cannot write the training log");
        }
        if (!rc && io && io->ckpt_path) {
            st->velocity = opt.velocity;
            rc = checkpoint_save(io->ckpt_path, m, st, err);
            st->velocity = resumed_velocity;
        }
        /* the log and the checkpoint are one rank's: the others learn
         * whether it could write them */
        if (dp) rc = dp_agree(dp, rc, "to write the log or checkpoint", err);
        if (rc) goto out;
        if (io && io->stop_at_epoch > 0 && st->epoch >= io->stop_at_epoch)
            break;
        if (io && io->stop_at_step > 0 && st->step >= io->stop_at_step) break;
    }
    if (dp) {
        /* Same update on every rank: the weights must be the same bits. */
        uint64_t h = train_weights_hash(m, opt.velocity);
        int same = 0;
        if ((rc = dp->same_u64(dp->ctx, h, &same, err))) goto out;
        if (!same) {
            dp->shared_error = 1;
            rc = abc_errf(err, ABC_EVALUE,
                          "data-parallel training: the %d ranks ended with "
                          "different weights (rank %d hash %016llx)",
                          dp->size, dp->rank, (unsigned long long)h);
            goto out;
        }
        if (io && io->progress) {
            fprintf(io->progress,
                    "%s: data-parallel over %d ranks, weights agree (hash "
                    "%016llx), ",
                    io->tag ? io->tag : "train", dp->size,
                    (unsigned long long)h);
            if (sync_bn)
                fprintf(io->progress,
                        "synchronized BatchNorm statistics (%.1f s in their "
                        "sums)\n",
                        bns.seconds);
            else
                fprintf(io->progress, "per-rank BatchNorm statistics\n");
        }
    }
out:
    if (sync_bn) {
        m->bn_sum = NULL;
        m->bn_sum_ctx = NULL;
        m->bn_sum_rc = 0;
    }
    free(x);
    free(y);
    sgd_free(&opt);
    loader_free(&l);
    return rc;
}

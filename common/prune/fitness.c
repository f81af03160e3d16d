/* fitness.c - inherit, train briefly, validate (see fitness.h). */
#include "prune/fitness.h"

#include <math.h>
#include <string.h>

#include "core/err.h"

/* A view of the first n images of d (shares d's arrays; never freed). */
static struct dataset head_view(const struct dataset *d, int n)
{
    struct dataset v = *d;
    if (n > 0 && n < v.n) v.n = n;
    return v;
}

/* Accuracy and loss of m on v's validation images; with dp (more than one
 * rank) each rank scores its shard and the correct counts and loss sums
 * are added up (COLLECTIVE), so every rank gets the whole set's. */
static int validate(struct model *m, const struct data_splits *v, int batch,
                    struct train_dp *dp, struct fitness_result *r, char *err)
{
    struct dataset part = v->val;
    int first = 0, count = part.n;
    if (dp && dp->size > 1) {
        train_shard(part.n, dp->rank, dp->size, &first, &count);
        part.images += (size_t)first * part.c * part.h * part.w;
        part.labels += first;
        part.n = count;
    }
    double acc = 0, loss = 0;
    int rc =
        count > 0 ? evaluate(m, &part, &v->aug, batch, &acc, &loss, err) : 0;
    if (dp && dp->size > 1) {
        /* every rank joins the sum, failed or not: a failure is a NaN */
        double s[2] = {rc ? NAN : round(acc * count), rc ? NAN : loss * count};
        int src = dp->sum_doubles(dp->ctx, s, 2, err);
        if (!rc && src) rc = src;
        if (!rc && !(isfinite(s[0]) && isfinite(s[1])))
            rc = abc_errf(err, ABC_ENUMERIC,
                          "validation failed on another rank of the group");
        acc = s[0] / v->val.n;
        loss = s[1] / v->val.n;
    }
    r->val_acc = acc;
    r->val_loss = loss;
    return rc;
}

int fitness_evaluate(const struct model *pretrained, const int *channels,
                     int nchannels, enum filter_init how,
                     const struct fitness_config *b, uint64_t seed,
                     const struct data_splits *d, struct train_dp *dp,
                     const volatile sig_atomic_t *stop,
                     struct fitness_result *r, struct model **trained,
                     char *err)
{
    double t0 = now_seconds();
    memset(r, 0, sizeof *r);
    if (trained) *trained = NULL;
    int rc = prune_check(pretrained, channels, nchannels, err);
    if (rc) return rc;
    struct model *m;
    if ((rc = prune_slice(pretrained, channels, how, seed, &m, err))) return rc;
    r->flops = model_macs(m);
    r->params = model_param_count(m);

    struct data_splits view = *d;
    view.train = head_view(&d->train, b->train_images);
    view.val = head_view(&d->val, b->val_images);
    double t1 = now_seconds(), images = 0;
    if (b->proxy == FITNESS_ADAPTIVE_BN) {
        rc = bn_recalibrate(m, &d->train, &d->aug, b->batch_size, b->bn_batches,
                            seed, err);
        images = (double)b->bn_batches * b->batch_size;
        if (images > d->train.n) images = d->train.n;
    } else {
        struct train_config tc;
        memset(&tc, 0, sizeof tc);
        tc.epochs = b->epochs > 0 ? b->epochs : 1;
        tc.batch_size = b->batch_size;
        tc.lr = b->lr;
        tc.momentum = b->momentum;
        tc.weight_decay = b->weight_decay;
        tc.schedule = LR_CONSTANT;
        struct train_state st = {0};
        struct train_io io = {
            .skip_val = 1, .stop_at_step = b->steps, .stop = stop, .dp = dp};
        rc = train_model(m, &tc, &view, seed, &st, &io, err);
        images = (double)st.step * b->batch_size;
    }
    double work_s = now_seconds() - t1;
    if (!rc) {
        r->images_per_s = work_s > 0 ? images / work_s : 0;
        rc = validate(m, &view, b->batch_size, dp, r, err);
    }
    r->wall_s = now_seconds() - t0;
    if (rc || !trained)
        model_destroy(m);
    else
        *trained = m;
    return rc;
}

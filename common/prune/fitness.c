/* fitness.c - inherit, train briefly, validate (see fitness.h). */
#include "prune/fitness.h"

#include <string.h>

#include "core/err.h"

/* A view of the first n images of d (shares d's arrays; never freed). */
static struct dataset head_view(const struct dataset *d, int n)
{
    struct dataset v = *d;
    if (n > 0 && n < v.n) v.n = n;
    return v;
}

int fitness_evaluate(const struct model *pretrained, const int *channels,
                     int nchannels, enum filter_init how,
                     const struct fitness_config *b, uint64_t seed,
                     const struct data_splits *d,
                     const volatile sig_atomic_t *stop,
                     struct fitness_result *r, struct model **trained,
                     char *err)
{
    return fitness_evaluate_dp(pretrained, channels, nchannels, how, b, seed, d,
                               NULL, stop, r, trained, err);
}

int fitness_evaluate_dp(const struct model *pretrained, const int *channels,
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
        rc = evaluate(m, &view.val, &view.aug, b->batch_size, &r->val_acc,
                      &r->val_loss, err);
    }
    r->wall_s = now_seconds() - t0;
    if (rc || !trained)
        model_destroy(m);
    else
        *trained = m;
    return rc;
}

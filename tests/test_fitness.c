/* test_fitness.c - evaluating a structure (inherit, train briefly,
 * validate): reproducible for a seed, FLOPs of the pruned net exact, a
 * pretrained net's structures score far above chance, bad structures and a
 * diverging loss come back as errors, never crashes. Adaptive BN: the
 * recalibrated statistics are the mean of the batches' (two batches of B
 * give the first BN layer the running mean one batch of 2B gives: the mean
 * of equal batches' means is the mean of all), the proxy trains nothing,
 * is reproducible for a seed, and on a sliced net scores above the stale
 * statistics it replaces. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "core/err.h"
#include "core/threads.h"
#include "prune/fitness.h"
#include "train/train.h"

/* The first BN layer's running mean (bn1.running_mean) of m. */
static const float *bn1_mean(const struct model *m)
{
    const struct tensor_info *t = model_find_tensor(m, "bn1.running_mean");
    return t ? model_tensor_data(m, t) : NULL;
}

static void test_adaptive_bn(const struct model *pre,
                             const struct data_splits *s, const int *half)
{
    char err[ABC_ERRLEN];
    struct model *a, *b;
    CHECK(prune_slice(pre, half, FILTER_L1, 0, &a, err) == 0, "%s", err);
    CHECK(prune_slice(pre, half, FILTER_L1, 0, &b, err) == 0, "%s", err);
    struct dataset head = s->train;
    head.n = 128;
    CHECK(bn_recalibrate(a, &head, &s->aug, 64, 2, 3, err) == 0, "%s", err);
    CHECK(bn_recalibrate(b, &head, &s->aug, 128, 1, 3, err) == 0, "%s", err);
    const float *ma = bn1_mean(a), *mb = bn1_mean(b);
    double worst = 0;
    for (int i = 0; ma && mb && i < half[0]; i++) {
        double d = fabs(ma[i] - mb[i]) / (fabs(mb[i]) + 1e-3);
        if (d > worst) worst = d;
    }
    CHECK(ma && mb && worst < 1e-4,
          "2 x 64 vs 1 x 128 images: bn1 running mean differs by %.3g", worst);
    model_destroy(a);
    model_destroy(b);

    struct fitness_config fb = {.train_images = 2000,
                                .val_images = 1000,
                                .epochs = 1,
                                .batch_size = 64,
                                .lr = 0.01f,
                                .momentum = 0.9f,
                                .weight_decay = 5e-4f,
                                .proxy = FITNESS_ADAPTIVE_BN,
                                .bn_batches = 10};
    struct fitness_result r1, r2, r3;
    struct model *tm = NULL;
    CHECK(fitness_evaluate(pre, half, 3, FILTER_L1, &fb, 5, s, NULL, NULL, &r1,
                           &tm, err) == 0,
          "adaptive_bn: %s", err);
    CHECK(fitness_evaluate(pre, half, 3, FILTER_L1, &fb, 5, s, NULL, NULL, &r2,
                           NULL, err) == 0 &&
              r1.val_loss == r2.val_loss,
          "adaptive_bn: same seed, loss %.17g vs %.17g", r1.val_loss,
          r2.val_loss);
    /* trains nothing: the conv weights are the slice's */
    struct model *sl;
    CHECK(prune_slice(pre, half, FILTER_L1, 0, &sl, err) == 0, "%s", err);
    CHECK(tm &&
              memcmp(tm->params, sl->params, sl->nparams * sizeof(float)) == 0,
          "adaptive_bn changed the parameters");
    /* the stale statistics of the slice, scored as they are */
    double stale_acc, stale_loss;
    struct dataset val = s->val;
    val.n = 1000;
    CHECK(evaluate(sl, &val, &s->aug, 64, &stale_acc, &stale_loss, err) == 0,
          "%s", err);
    printf("half structure, L1 slice: stale BN %.2f%% (loss %.3f), adaptive "
           "BN %.2f%% (loss %.3f)\n",
           100 * stale_acc, stale_loss, 100 * r1.val_acc, r1.val_loss);
    CHECK(r1.val_loss < stale_loss,
          "adaptive BN loss %.4f not below the stale statistics' %.4f",
          r1.val_loss, stale_loss);
    fb.bn_batches = 1;
    fitness_evaluate(pre, half, 3, FILTER_L1, &fb, 5, s, NULL, NULL, &r3, NULL,
                     err);
    CHECK(r3.val_loss != r1.val_loss, "1 batch and 10 batches agree exactly");
    model_destroy(sl);
    model_destroy(tm);
}

int main(void)
{
    char err[ABC_ERRLEN];
    threads_setup(0);
    struct config c;
    config_defaults(&c);
    c.data.val_size = 1000;
    c.data.train_subset = 4000;
    c.data.crop_pad = 0;
    c.data.flip = 0;
    struct data_splits s;
    int rc = data_open(&s, &c, 0, err);
    CHECK(rc == 0, "data_open: %s", err);
    if (rc) return check_finish("test_fitness");

    /* A briefly pretrained full smallnet. */
    struct model *pre;
    CHECK(model_create(&pre, ARCH_SMALLNET, NULL, 1, 28, 28, 10, err) == 0,
          "%s", err);
    model_init_weights(pre, 1);
    struct train_config tc = c.train;
    tc.epochs = 2;
    tc.batch_size = 64;
    tc.lr = 0.1f;
    struct train_state st = {0};
    struct train_io io = {.skip_val = 1};
    CHECK(train_model(pre, &tc, &s, 9, &st, &io, err) == 0, "%s", err);

    struct fitness_config b = {.train_images = 2000,
                               .val_images = 1000,
                               .epochs = 1,
                               .batch_size = 64,
                               .lr = 0.01f,
                               .momentum = 0.9f,
                               .weight_decay = 5e-4f};
    int full[3] = {16, 32, 64}, half[3] = {8, 16, 32};
    struct fitness_result r1, r2, r3;
    rc = fitness_evaluate(pre, full, 3, FILTER_L1, &b, 5, &s, NULL, NULL, &r1,
                          NULL, err);
    CHECK(rc == 0, "full: %s", err);
    printf("full structure: val acc %.2f%%, %lld MACs\n", 100 * r1.val_acc,
           (long long)r1.flops);
    CHECK(r1.val_acc > 0.6, "pretrained full net scores %.3f", r1.val_acc);
    CHECK(r1.flops == 1919872, "full MACs %lld", (long long)r1.flops);

    rc = fitness_evaluate(pre, half, 3, FILTER_RANDOM, &b, 5, &s, NULL, NULL,
                          &r2, NULL, err);
    CHECK(rc == 0, "half: %s", err);
    rc = fitness_evaluate(pre, half, 3, FILTER_RANDOM, &b, 5, &s, NULL, NULL,
                          &r3, NULL, err);
    printf("half structure: val acc %.2f%%, %lld MACs\n", 100 * r2.val_acc,
           (long long)r2.flops);
    CHECK(r2.val_acc > 0.4, "pruned net scores %.3f", r2.val_acc);
    /* 8*9*784 + 16*8*9*196 + 32*16*9*49 + 32*10 */
    CHECK(r2.flops == 56448 + 225792 + 225792 + 320, "half MACs %lld",
          (long long)r2.flops);
    CHECK(r2.val_acc == r3.val_acc && r2.val_loss == r3.val_loss,
          "same seed, different result: %.17g vs %.17g", r2.val_loss,
          r3.val_loss);
    struct fitness_result r4;
    fitness_evaluate(pre, half, 3, FILTER_RANDOM, &b, 6, &s, NULL, NULL, &r4,
                     NULL, err);
    CHECK(r4.val_loss != r2.val_loss, "another seed, identical loss");

    /* steps caps the training; the trained model is handed back. */
    struct model *tm = NULL;
    b.steps = 3;
    rc = fitness_evaluate(pre, half, 3, FILTER_L1, &b, 5, &s, NULL, NULL, &r4,
                          &tm, err);
    CHECK(rc == 0 && tm && tm->channels[2] == 32, "trained model returned");
    model_destroy(tm);
    b.steps = 0;

    int bad[3] = {16, 0, 64}, grow[3] = {16, 33, 64};
    CHECK(fitness_evaluate(pre, bad, 3, FILTER_L1, &b, 5, &s, NULL, NULL, &r4,
                           NULL, err) == ABC_EVALUE &&
              strstr(err, "keeps 0 channels"),
          "zero channels: %s", err);
    CHECK(fitness_evaluate(pre, grow, 3, FILTER_L1, &b, 5, &s, NULL, NULL, &r4,
                           NULL, err) == ABC_EVALUE,
          "grown layer: %s", err);
    CHECK(fitness_evaluate(pre, full, 2, FILTER_L1, &b, 5, &s, NULL, NULL, &r4,
                           NULL, err) == ABC_EVALUE,
          "wrong length: %s", err);
    b.lr = 1e6f;
    b.momentum = 0;
    rc = fitness_evaluate(pre, half, 3, FILTER_L1, &b, 5, &s, NULL, NULL, &r4,
                          NULL, err);
    CHECK(rc == ABC_ENUMERIC, "diverging loss gives ABC_ENUMERIC: %d %s", rc,
          err);
    b.lr = 0.01f;
    b.momentum = 0.9f;
    test_adaptive_bn(pre, &s, half);
    model_destroy(pre);
    data_close(&s);
    return check_finish("test_fitness");
}

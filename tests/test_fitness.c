/* test_fitness.c - evaluating a structure (inherit, train briefly,
 * validate): reproducible for a seed, FLOPs of the pruned net exact, a
 * pretrained net's structures score far above chance, bad structures and a
 * diverging loss come back as errors, never crashes. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "core/err.h"
#include "prune/fitness.h"
#include "core/threads.h"

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

    struct fitness_config b = {.train_images = 2000, .val_images = 1000,
                               .epochs = 1, .batch_size = 64, .lr = 0.01f,
                               .momentum = 0.9f, .weight_decay = 5e-4f};
    int full[3] = {16, 32, 64}, half[3] = {8, 16, 32};
    struct fitness_result r1, r2, r3;
    rc = fitness_evaluate(pre, full, 3, FILTER_L1, &b, 5, &s, NULL, &r1, NULL, err);
    CHECK(rc == 0, "full: %s", err);
    printf("full structure: val acc %.2f%%, %lld MACs\n", 100 * r1.val_acc,
           (long long)r1.flops);
    CHECK(r1.val_acc > 0.6, "pretrained full net scores %.3f", r1.val_acc);
    CHECK(r1.flops == 1919872, "full MACs %lld", (long long)r1.flops);

    rc = fitness_evaluate(pre, half, 3, FILTER_RANDOM, &b, 5, &s, NULL, &r2, NULL,
                          err);
    CHECK(rc == 0, "half: %s", err);
    rc = fitness_evaluate(pre, half, 3, FILTER_RANDOM, &b, 5, &s, NULL, &r3, NULL,
                          err);
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
    fitness_evaluate(pre, half, 3, FILTER_RANDOM, &b, 6, &s, NULL, &r4, NULL, err);
    CHECK(r4.val_loss != r2.val_loss, "another seed, identical loss");

    /* steps caps the training; the trained model is handed back. */
    struct model *tm = NULL;
    b.steps = 3;
    rc = fitness_evaluate(pre, half, 3, FILTER_L1, &b, 5, &s, NULL, &r4, &tm, err);
    CHECK(rc == 0 && tm && tm->channels[2] == 32, "trained model returned");
    model_destroy(tm);
    b.steps = 0;

    int bad[3] = {16, 0, 64}, grow[3] = {16, 33, 64};
    CHECK(fitness_evaluate(pre, bad, 3, FILTER_L1, &b, 5, &s, NULL, &r4, NULL,
                           err) == ABC_EVALUE &&
              strstr(err, "keeps 0 channels"),
          "zero channels: %s", err);
    CHECK(fitness_evaluate(pre, grow, 3, FILTER_L1, &b, 5, &s, NULL, &r4, NULL,
                           err) == ABC_EVALUE,
          "grown layer: %s", err);
    CHECK(fitness_evaluate(pre, full, 2, FILTER_L1, &b, 5, &s, NULL, &r4, NULL,
                           err) == ABC_EVALUE,
          "wrong length: %s", err);
    b.lr = 1e6f;
    b.momentum = 0;
    rc = fitness_evaluate(pre, half, 3, FILTER_L1, &b, 5, &s, NULL, &r4, NULL, err);
    CHECK(rc == ABC_ENUMERIC, "diverging loss gives ABC_ENUMERIC: %d %s", rc,
          err);
    model_destroy(pre);
    data_close(&s);
    return check_finish("test_fitness");
}

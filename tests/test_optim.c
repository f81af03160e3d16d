/* test_optim.c - SGD update rule (momentum, Nesterov, weight decay) against
 * values computed by hand with PyTorch's formulas, and the learning-rate
 * schedules (constant, step, cosine, warm-up) at known points. */
#include <math.h>
#include <string.h>

#include "check.h"
#include "io/config.h"
#include "nn/optim.h"
#include "train/train.h"

static void test_sgd(int nesterov)
{
    struct sgd o;
    CHECK(sgd_init(&o, 3, 0.9f, 0.01f, nesterov, NULL) == 0, "sgd_init");
    float p[3] = {1.0f, -2.0f, 0.5f};
    float g1[3] = {0.1f, 0.2f, -0.3f}, g2[3] = {-0.4f, 0.0f, 0.25f};
    double want[3], v[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++)
        want[i] = p[i];
    const float *gs[2] = {g1, g2};
    const double lrs[2] = {0.1, 0.05};
    for (int step = 0; step < 2; step++) {
        sgd_step(&o, p, gs[step], (float)lrs[step]);
        for (int i = 0; i < 3; i++) {
            double d = gs[step][i] + 0.01 * want[i];
            v[i] = 0.9 * v[i] + d;
            d = nesterov ? d + 0.9 * v[i] : v[i];
            want[i] -= lrs[step] * d;
        }
    }
    float wf[3] = {(float)want[0], (float)want[1], (float)want[2]};
    CHECK_CLOSE(nesterov ? "sgd nesterov 2 steps" : "sgd momentum 2 steps", p,
                wf, 3, 1e-6, 1e-6);
    sgd_free(&o);
}

static void test_schedules(void)
{
    struct config c;
    config_defaults(&c);
    struct train_config t = c.train;
    t.lr = 0.1f;
    t.epochs = 10;
    t.warmup_epochs = 0;
    t.schedule = LR_CONSTANT;
    CHECK(fabsf(lr_at(&t, 7.3) - 0.1f) < 1e-7, "constant");
    t.schedule = LR_STEP;
    t.nmilestones = 2;
    t.milestones[0] = 5;
    t.milestones[1] = 8;
    t.gamma = 0.1f;
    CHECK(fabsf(lr_at(&t, 4.99) - 0.1f) < 1e-7, "step before 5");
    CHECK(fabsf(lr_at(&t, 5.0) - 0.01f) < 1e-8, "step at 5: %g",
          lr_at(&t, 5.0));
    CHECK(fabsf(lr_at(&t, 9.0) - 0.001f) < 1e-9, "step after 8: %g",
          lr_at(&t, 9.0));
    t.schedule = LR_COSINE;
    CHECK(fabsf(lr_at(&t, 0) - 0.1f) < 1e-7, "cosine start");
    CHECK(fabsf(lr_at(&t, 5) - 0.05f) < 1e-7, "cosine middle: %g",
          lr_at(&t, 5));
    CHECK(fabsf(lr_at(&t, 10)) < 1e-7, "cosine end: %g", lr_at(&t, 10));
    t.warmup_epochs = 2;
    CHECK(lr_at(&t, 0.0) < 0.001f, "warm-up starts near 0: %g", lr_at(&t, 0));
    CHECK(fabsf(lr_at(&t, 1.0) - 0.05f) < 1e-3, "warm-up half way: %g",
          lr_at(&t, 1.0));
    CHECK(fabsf(lr_at(&t, 2.0) - 0.1f) < 1e-6, "cosine after warm-up: %g",
          lr_at(&t, 2.0));
    CHECK(fabsf(lr_at(&t, 6.0) - 0.05f) < 1e-6, "cosine middle of the rest");
}

int main(void)
{
    test_sgd(0);
    test_sgd(1);
    test_schedules();
    return check_finish("test_optim");
}

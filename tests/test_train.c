/* test_train.c - real learning on Fashion-MNIST: the small net trained on a
 * few thousand images must reach a stated validation accuracy, and training
 * interrupted after an epoch (checkpoint with optimizer state, reload,
 * continue) must end bit-identical to training straight through. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/err.h"
#include "core/threads.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "train/train.h"

/* Chance is 10 %; the small net reaches ~85 % here (see the log line). */
#define MIN_VAL_ACC 0.78

static void small_config(struct config *c)
{
    config_defaults(c);
    c->seed = 3;
    strcpy(c->model.arch, "smallnet");
    c->data.val_size = 2000;
    c->data.train_subset = 6000;
    c->train.epochs = 4;
    c->train.batch_size = 64;
    c->train.lr = 0.1f;
    c->data.crop_pad = 0; /* no augmentation: a short run learns faster */
    c->data.flip = 0;
    c->train.schedule = LR_COSINE;
}

static struct model *fresh_model(char *err)
{
    struct model *m;
    if (model_create(&m, ARCH_SMALLNET, NULL, 1, 28, 28, 10, err)) return NULL;
    model_init_weights(m, 17);
    return m;
}

int main(void)
{
    char err[ABC_ERRLEN];
    threads_setup(0);
    struct config c;
    small_config(&c);
    struct data_splits s;
    int rc = data_open(&s, &c, 0, err);
    CHECK(rc == 0, "data_open: %s", err);
    if (rc) return check_finish("test_train");

    /* 1. Learning: straight through, 4 epochs. */
    struct model *a = fresh_model(err);
    struct train_state sa = {0};
    struct train_io io = {.progress = stdout, .tag = "test"};
    rc = train_model(a, &c.train, &s, c.seed, &sa, &io, err);
    CHECK(rc == 0, "train: %s", err);
    double acc = 0, loss = 0;
    CHECK(evaluate(a, &s.val, &s.aug, 256, &acc, &loss, err) == 0, "%s", err);
    printf("smallnet, %d images x %d epochs: val accuracy %.2f%% (loss %.3f),"
           " required >= %.0f%%\n",
           s.train.n, c.train.epochs, 100 * acc, loss, 100 * MIN_VAL_ACC);
    CHECK(acc >= MIN_VAL_ACC, "val accuracy %.4f < %.2f", acc, MIN_VAL_ACC);
    CHECK(sa.epoch == 4 && sa.step == 4 * (6000 / 64), "progress %d/%lld",
          sa.epoch, (long long)sa.step);

    /* 2. Resume: 2 of 4 epochs with a checkpoint, stop, reload, finish. */
    struct model *b = fresh_model(err);
    struct train_state sb = {0};
    struct train_io io2 = {.ckpt_path = "resume.ckpt", .stop_at_epoch = 2};
    rc = train_model(b, &c.train, &s, c.seed, &sb, &io2, err);
    CHECK(rc == 0 && sb.epoch == 2, "first half: %s", err);
    model_destroy(b);
    struct train_state sr = {0};
    rc = checkpoint_load("resume.ckpt", &b, &sr, err);
    CHECK(rc == 0 && sr.epoch == 2 && sr.velocity, "reload: %s", err);
    if (rc == 0) {
        io2.stop_at_epoch = 0;
        rc = train_model(b, &c.train, &s, c.seed, &sr, &io2, err);
        CHECK(rc == 0 && sr.epoch == 4, "second half: %s", err);
        CHECK(memcmp(a->params, b->params, a->nparams * sizeof(float)) == 0,
              "resumed training differs from straight-through training");
        CHECK(memcmp(a->buffers, b->buffers, a->nbuffers * sizeof(float)) == 0,
              "resumed BN statistics differ");
        free(sr.velocity);
    }
    model_destroy(b);
    model_destroy(a);
    data_close(&s);
    return check_finish("test_train");
}

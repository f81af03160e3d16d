/* splits.c - the train / validation / test splits of an experiment from
 * its config (see splits.h). */
#include "data/splits.h"

#include <string.h>

#include "core/err.h"
#include "core/rng.h"
#include "core/seeds.h"

int data_open(struct data_splits *s, const struct config *c, int need_test,
              char *err)
{
    memset(s, 0, sizeof *s);
    const struct data_config *dc = &c->data;
    struct dataset full = {0};
    int rc;
    int cifar = dc->dataset == DATASET_CIFAR10;
    if (cifar)
        rc = dataset_load_cifar10(&full, need_test ? &s->test : NULL, dc->dir,
                                  err);
    else
        rc = dataset_load_fashion_mnist(&full, need_test ? &s->test : NULL,
                                        dc->dir, err);
    if (rc) return rc;
    if (dc->val_size >= full.n) {
        dataset_free(&full);
        data_close(s);
        return abc_errf(err, ABC_EVALUE,
                        "%s: data.val_size %d leaves no training images "
                        "(the training set has %d)",
                        c->path, dc->val_size, full.n);
    }
    struct dataset train = {0};
    rc = dataset_split(&full, dc->val_size,
                       rng_derive(dc->split_seed, SEED_SPLIT, 0, 0), &train,
                       &s->val, err);
    dataset_free(&full);
    if (rc) {
        data_close(s);
        return rc;
    }
    if (dc->train_subset > 0 && dc->train_subset < train.n) {
        rc = dataset_head(&train, dc->train_subset, &s->train, err);
        dataset_free(&train);
    } else {
        s->train = train;
    }
    if (!rc && need_test && dc->test_subset > 0 &&
        dc->test_subset < s->test.n) {
        struct dataset t = s->test;
        rc = dataset_head(&t, dc->test_subset, &s->test, err);
        dataset_free(&t);
    }
    if (rc) {
        data_close(s);
        return rc;
    }
    /* Normalisation: the config's values, else the dataset's usual ones. */
    static const float fm_mean = 0.2860f, fm_std = 0.3530f;
    static const float cf_mean[3] = {0.4914f, 0.4822f, 0.4465f};
    static const float cf_std[3] = {0.2470f, 0.2435f, 0.2616f};
    s->aug.crop_pad = dc->crop_pad;
    s->aug.flip = dc->flip;
    for (int ch = 0; ch < 3; ch++) {
        s->aug.mean[ch] = dc->mean[ch] != 0 ? dc->mean[ch]
                          : cifar           ? cf_mean[ch]
                                            : fm_mean;
        s->aug.std[ch] = dc->std[ch] != 0 ? dc->std[ch]
                         : cifar          ? cf_std[ch]
                                          : fm_std;
    }
    return 0;
}

void data_close(struct data_splits *s)
{
    dataset_free(&s->train);
    dataset_free(&s->val);
    dataset_free(&s->test);
}

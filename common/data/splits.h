/* splits.h - the three splits of an experiment (train, validation carved
 * from the training set, test) and their augmentation settings, loaded as
 * a config describes them. */
#ifndef ABC_SPLITS_H
#define ABC_SPLITS_H

#include "data/data.h"
#include "io/config.h"

/* The three splits of an experiment: train (minus validation), val (carved
 * deterministically from the training set), test. */
struct data_splits {
    struct dataset train, val, test;
    struct augment aug;
};

/* Loads the configured dataset, carves the validation split with a seed
 * derived from data.split_seed (never the run seed), applies the subset
 * options and fills the augmentation settings (dataset defaults where the
 * config leaves 0).
 * need_test = 0 skips reading the test set. */
int data_open(struct data_splits *s, const struct config *c, int need_test,
              char *err);
void data_close(struct data_splits *s);

#endif

/* seeds.h - every label of rng_derive in one table. A random stream is
 * rng_derive(base, LABEL, ...): the label says what is being drawn, so two
 * streams never collide by accident and no file has to know which numbers
 * another one uses. Values are part of the results' reproducibility: never
 * renumber one (a changed value changes every run that draws from it). */
#ifndef ABC_SEEDS_H
#define ABC_SEEDS_H

/* Drawn from a run's seed (config `seed`) or a step's seed. */
enum seed_label {
    SEED_SPLIT = 1,            /* validation split carved from train */
    SEED_LOADER = 2,           /* shuffling and augmentation of a training */
    SEED_INIT = 3,             /* the baseline's initial weights */
    SEED_SEARCH = 4,           /* the colony's own seed */
    SEED_FINETUNE = 5,         /* every method's fine-tune (shared, so
                                  methods are paired within a run seed) */
    SEED_SLIM = 11,            /* slimming's sparsity training */
    SEED_STRUCTURE = 13,       /* a random structure's ratios */
    SEED_FILTERS = 17,         /* random filter choice of `random` */
    SEED_LASSO = 19,           /* LASSO's sampled points */
    SEED_SCRATCH = 23,         /* slimming from scratch: initial weights */
    SEED_RESIDUAL = 0x5e51,    /* simulator: a candidate's cost residual */
    SEED_WEIGHT_INIT = 0x1a17, /* model_init_weights: per tensor */
    SEED_LASSO_LAYER = 0x1a55, /* LASSO: the sampled images */
    SEED_LASSO_POINT = 0x9051, /* LASSO: a layer's sampled positions */
    SEED_PRUNE_FILTERS = 0x9f17e5, /* prune_slice: random filter choice */
    SEED_PROXYCHECK = 29,          /* proxycheck: shapes, seeds, bootstrap */
    SEED_SEARCH_FINAL = 31,        /* the search's final re-evaluations */
};

/* Colony labels, drawn from (search seed, cycle, phase): a candidate's
 * move and the onlooker placement. */
#define SEED_COLONY_MOVE 0xabc0c0de00000001ULL
#define SEED_COLONY_PLACE 0xabc0c0de00000002ULL
/* With common random numbers (colony_params.crn): the evaluation seed every
 * candidate of a (cycle, phase) shares, in place of its index. */
#define SEED_COLONY_CRN 0xabc0c0de00000003ULL

#endif

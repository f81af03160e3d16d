/* config.h - one YAML file per experiment (libyaml document API), loaded
 * into plain structs with defaults. Keys are described by a table (name,
 * type, range, offset) so adding a field is one line; unknown keys, wrong
 * types and out-of-range values are errors naming file:line:col and key. */
#ifndef ABC_CONFIG_H
#define ABC_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CONFIG_PATH_MAX 1024
#define CONFIG_MAX_LIST 64

/* The typed values of the config's enumerated keys: each key's YAML
 * spelling is the name at the enum's index (config_choice_name). */
enum dataset_kind { DATASET_FASHION_MNIST, DATASET_CIFAR10 };
enum lr_schedule { LR_COSINE, LR_STEP, LR_CONSTANT };
enum search_schedule { SCHEDULE_SYNC, SCHEDULE_ASYNC };
/* finetune.inherit */
enum finetune_inherit { INHERIT_BEST, INHERIT_BASELINE };
/* slim.inherit */
enum slim_start { SLIM_FROM_BASELINE, SLIM_FROM_SCRATCH };
/* search.filter_init holds enum filter_init (prune/prune.h): 0 random,
 * 1 l1; prune.c checks that the two agree. */

/* The YAML spelling of value v of an enumerated key ("data.dataset",
 * "train.schedule", "search.schedule", "search.filter_init",
 * "finetune.inherit", "slim.inherit", "slim.bn",
 * "search.fitness.proxy"), or "?" for an unknown key or value. */
const char *config_choice_name(const char *key, int v);

struct data_config {
    int dataset;               /* enum dataset_kind: fashion-mnist */
    char dir[CONFIG_PATH_MAX]; /* "" = Debian's path for fashion-mnist */
    int val_size;              /* validation images carved from train: 5000 */
    uint64_t split_seed;       /* which images are validation: 1. Fixed by
                                  default and independent of the run seed,
                                  so every run of a comparison sees the
                                  baseline's split */
    int train_subset;          /* 0 = whole train split; else first N */
    int test_subset;           /* 0 = whole test set */
    int crop_pad;              /* random-crop padding: 2 (0 = off) */
    int flip;                  /* horizontal flip: 1 */
    float mean[3], std[3];     /* 0 = dataset default */
};

struct model_config {
    char arch[32]; /* smallnet | vgg16 | resnet20 | resnet56 | resnet110 */
    int channels[CONFIG_MAX_LIST]; /* optional structure (kept channels) */
    int nchannels;                 /* 0 = full model */
};

struct train_config {
    int epochs;                      /* 10 */
    int batch_size;                  /* 128 */
    float lr;                        /* 0.1 */
    float momentum;                  /* 0.9 */
    int nesterov;                    /* 0 */
    float weight_decay;              /* 5e-4 */
    int schedule;                    /* enum lr_schedule: cosine */
    int milestones[CONFIG_MAX_LIST]; /* epochs, for "step" */
    int nmilestones;
    float gamma;         /* 0.1, for "step" */
    int warmup_epochs;   /* 0 */
    int sync_bn;         /* data-parallel: BatchNorm statistics of the
                            global batch (1) or each rank's shard (0,
                            the default) */
    int inherit;         /* finetune: enum finetune_inherit (best);
                            slim: enum slim_start (baseline) */
    float sparsity;      /* slim only: s of s*sum|gamma|: 0 */
    int sparsity_all_bn; /* slim only (key slim.bn: prunable|all):
                            1 = every BN layer's gammas (the paper),
                            0 = the prunable layers' (default) */
};

/* The training one fitness evaluation gets (search.fitness). */
/* What a candidate's fitness measures (search.fitness.proxy). */
enum fitness_proxy {
    FITNESS_TRAIN = 0,       /* "train": a short training, then validation
                                accuracy (ABCPruner) */
    FITNESS_ADAPTIVE_BN = 1, /* "adaptive_bn": no training; BN statistics
                                re-estimated on bn_batches training batches,
                                then validation accuracy (EagleEye) */
};

struct fitness_config {
    int train_images;   /* first N of the train split: 5000 (0 = all) */
    int val_images;     /* first N of the val split: 0 = all */
    int epochs;         /* 1 */
    int steps;          /* > 0: at most this many steps: 0 */
    int batch_size;     /* 128 */
    float lr;           /* 0.01 (constant) */
    float momentum;     /* 0.9 */
    float weight_decay; /* 5e-4 */
    int proxy;          /* enum fitness_proxy: train */
    int bn_batches;     /* adaptive_bn: training batches of
                           batch_size for the statistics: 20 */
    int crn;            /* common random numbers: every candidate of
                           a phase is evaluated with the phase's
                           seed (the same batches, the same
                           random filters): 1 */
};

/* The ABC structure search (search:). */
struct search_config {
    int sn;               /* food sources: 10 */
    int limit;            /* trials before a scout: 5 */
    int change_dims;      /* layers mutated per neighbour move: 2 */
    int max_cycles;       /* 10 */
    float alpha;          /* largest kept fraction; K = 10*alpha: 0.7 */
    int schedule;         /* enum search_schedule: sync
                             (deterministic) */
    int filter_init;      /* enum filter_init: random (ABCPruner) */
    int redraw_same;      /* redraw moves that change nothing: 1
                             (0: ABCPruner's reference behaviour) */
    int final_topk;       /* the final choice: re-evaluate the top k
                             distinct structures (0: the best ever
                             draw, ABCPruner's): 3 */
    int final_seeds;      /* with this many seeds each: 2 */
    float eval_timeout_s; /* a worker silent this long on one evaluation
                             is hung: the search stops with its colony
                             saved (resumable); 0: wait forever (0) */
    int ranks_per_eval;   /* worker ranks that evaluate one structure
                             together, training it data-parallel (0: auto,
                             floor(workers / sn)): 1 */
    struct fitness_config fitness;
};

/* The pruning target every method prunes to (prune:). */
struct prune_config {
    float flops_target;  /* keep this fraction of the baseline's MACs
                            (0 = none: ABC uses alpha only; slim
                            slim_keep; lasso/uniform/random
                            keep_fraction) */
    float keep_fraction; /* without a FLOPs target: channels kept per
                            prunable layer (uniform, random, lasso)
                            or over all of them (slim): 0.5 */
    int min_channels;    /* no layer keeps fewer: 1 */
};

/* He et al.'s LASSO channel selection (lasso:). */
struct lasso_config {
    int images;           /* training images sampled: 200 */
    int points_per_image; /* positions per image: 10 */
};

/* proxycheck: does the fitness rank structures as fine-tuning does? */
struct proxycheck_config {
    int structures;   /* uniform + random shapes at the target: 12 */
    int seeds;        /* seeds of the reference fine-tune per structure: 2 */
    int epochs;       /* the reference: this many epochs at finetune's lr
                         (constant), batch size, momentum and decay: 1 */
    int train_images; /* of the training split for it: 0 = all */
};

struct config {
    char path[CONFIG_PATH_MAX]; /* the file it came from */
    uint64_t seed;              /* 1 */
    int threads; /* 0 = OMP_NUM_THREADS / SLURM_CPUS_PER_TASK / all */
    char out_dir[CONFIG_PATH_MAX]; /* "runs/<config file stem>" */
    struct data_config data;
    struct model_config model;
    struct train_config train;
    struct search_config search;
    struct train_config finetune; /* + inherit */
    struct prune_config prune;
    struct train_config slim; /* sparsity training: + sparsity, inherit */
    struct lasso_config lasso;
    struct proxycheck_config proxycheck;
};

/* Fills c with every default. */
void config_defaults(struct config *c);
/* Loads path over the defaults. Errors name path:line:col and the key. */
int config_load(struct config *c, const char *path, char *err);

/* config_load of the YAML text buf[0..len) (need not end in NUL): the same
 * checks, with name (a path, or what the text is) in the messages and as
 * the path out_dir's default is made from. c is untouched on error. */
int config_load_mem(struct config *c, const char *name, const char *buf,
                    size_t len, char *err);

/* Applies one command-line override "KEY=VALUE" (--set): KEY is a dotted
 * path (seed, search.sn, search.fitness.steps, model.channels), VALUE is
 * YAML (8, 0.05, async, [4, 8, 16]), checked exactly as in a file. Errors
 * name the assignment ("--set search.sn=x: key 'search.sn': ..."); c is
 * untouched on error. */
int config_set(struct config *c, const char *assignment, char *err);

#endif

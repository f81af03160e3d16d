/* pipeline.h - the steps a user runs on rank 0, each skipped when its
 * output already exists and resumed when it is unfinished:
 *   train     the full baseline -> OUT/baseline.ckpt, OUT/train.jsonl
 *   finetune  the search's best structure -> OUT/pruned.ckpt,
 *             OUT/finetune.jsonl, OUT/report.txt, OUT/report.json
 * (the search between them is search.h). */
#ifndef ABC_PIPELINE_H
#define ABC_PIPELINE_H

#include <signal.h>
#include <stdio.h>

#include "io/config.h"
#include "nn/model.h"
#include "prune/slim.h"
#include "train/train.h"

#define PIPELINE_PRUNED "pruned.ckpt"
#define PIPELINE_REPORT "report.txt"
#define PIPELINE_REPORT_JSON "report.json"
#define PIPELINE_MAX_LAYERS 4096

struct dp;

/* Makes every later training of this process (pipeline_train_files: the
 * baseline, fine-tunes, slimming) data-parallel over dp's ranks, led by
 * this rank (rank 0; the others run dp_follow, proto/dp.h); NULL: train
 * alone (the default). The command line sets it once. */
void pipeline_set_data_parallel(struct dp *dp);

/* Input shape and classes of c's dataset, without loading it. */
void pipeline_input_shape(const struct config *c, int *ch, int *h, int *w);

/* The model c describes (model.arch, model.channels) for input ch x h x w,
 * with errors naming the config file. */
int pipeline_model_from_config(struct model **m, const struct config *c, int ch,
                               int h, int w, char *err);

/* Trains the baseline. A finished OUT/baseline.ckpt is kept (returns 0)
 * unless force; an unfinished one is resumed. Progress on `progress`.
 * Returns 0, ABC_ESTOPPED (checkpoint of the last epoch kept) or an error. */
int pipeline_train(const struct config *c, int force,
                   const volatile sig_atomic_t *stop, FILE *progress,
                   char *err);

/* Fine-tunes the best structure of the finished search (random: of the
 * random search, in out_dir/randsearch/): inherits weights
 * from the best candidate (its evaluation re-run with its seed) or from the
 * baseline (finetune.inherit), trains with the finetune schedule, and
 * writes the pruned checkpoint and the report (baseline vs pruned: test
 * accuracy, params, FLOPs and their reductions, inference images/s), which
 * it also prints on `out`. A finished pruned.ckpt is kept and only the
 * report is made again. Returns 0, ABC_ESTOPPED or an error. */
int pipeline_finetune(const struct config *c, int random,
                      const volatile sig_atomic_t *stop, FILE *progress,
                      FILE *out, char *err);

/* --- shared with the other pruning methods (methods.c) --- */

/* What a report says about how the structure was found. */
struct report_info {
    const char *method;    /* "abc", "randsearch", "slim", "lasso",
                              "uniform", "random" */
    double prune_epochs;   /* training spent choosing the structure, in
                              epochs of the training split */
    double search_fitness; /* the ABC search's best fitness; < 0: none */
};

/* Loads the baseline checkpoint path and checks that it was trained on
 * c's split (checkpoint_check_split). Returns 0 and *m, or an error. */
int pipeline_load_baseline(const struct config *c, const char *path,
                           struct model **m, char *err);

/* Loads checkpoint path to resume a training of want's structure;
 * *done = 1 when it already ran `epochs` epochs. */
int pipeline_load_resume(const char *path, const struct model *want, int epochs,
                         struct model **m, struct train_state *st, int *done,
                         char *err);

/* Trains m with schedule tc from st (resumable), checkpointing to ckpt
 * after every epoch and appending JSON lines to logp; with sparsity (may
 * be NULL) Network Slimming's term is added every step. */
int pipeline_train_files(struct model *m, const struct config *c,
                         const struct train_config *tc,
                         const struct data_splits *s, uint64_t seed,
                         struct train_state *st, const char *ckpt,
                         const char *logp, const char *tag,
                         const volatile sig_atomic_t *stop, FILE *progress,
                         const struct slim_penalty *sparsity, char *err);

/* Test accuracy and inference images/s of m on the whole test split. */
int pipeline_measure(struct model *m, const struct data_splits *s, int batch,
                     double *acc, double *ips, char *err);

/* Writes c->out_dir/report.txt and report.json (baseline vs pruned, the
 * method and its cost) and prints the text on out (may be NULL). */
int pipeline_write_report(const struct config *c, const struct report_info *ri,
                          const struct model *base, const struct model *pruned,
                          double base_acc, double base_ips, double acc,
                          double ips, FILE *out, char *err);

#endif

/* methods.h - the other ways to choose a pruned structure, each run from the
 * same baseline (OUT/baseline.ckpt), pruned to the same target (prune:
 * flops_target, or keep_fraction without one) and fine-tuned with the same
 * finetune section as the ABC search's winner, so their reports compare
 * side by side:
 *   slim     Network Slimming: sparsity training (s * sum |gamma| on the
 *            prunable layers' BN gammas, slim section), then one global
 *            |gamma| threshold that meets the target
 *   lasso    He et al.: per-layer widths of the uniform structure at the
 *            target, channels chosen by LASSO on sampled feature points and
 *            the consumer layer reconstructed by least squares (lasso:)
 *   uniform  the same keep ratio in every prunable layer, largest-L1 filters
 *   random   a random structure at the target, random filters
 * Everything goes to OUT/<method>/: pruned.ckpt, finetune.jsonl,
 * report.txt, report.json (slim also sparse.ckpt and sparse.jsonl). Steps
 * resume like the pipeline's: a finished checkpoint is kept. */
#ifndef ABC_METHODS_H
#define ABC_METHODS_H

#include <signal.h>
#include <stdio.h>

#include "io/config.h"

enum method {
    METHOD_SLIM,
    METHOD_LASSO,
    METHOD_UNIFORM,
    METHOD_RANDOM,
    METHOD_COUNT
};

/* "slim", "lasso", "uniform", "random". */
const char *method_name(enum method m);

/* Prunes the baseline with method m, fine-tunes and writes the report (also
 * printed on out). Returns 0, ABC_ESTOPPED (state saved: run again to
 * resume) or an error. */
int method_run(const struct config *c, enum method m,
               const volatile sig_atomic_t *stop, FILE *progress, FILE *out,
               char *err);

#endif

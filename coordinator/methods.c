/* methods.c - Network Slimming, LASSO channel pruning and the uniform and
 * random baselines, from the baseline to a fine-tuned report (see
 * methods.h). */
#include "methods.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fileio.h"
#include "core/rng.h"
#include "core/seeds.h"
#include "io/checkpoint.h"
#include "pipeline.h"
#include "prune/budget.h"
#include "prune/lasso.h"
#include "prune/prune.h"
#include "prune/slim.h"
#include "search.h"
#include "train/train.h"

/* Labels of rng_derive (pipeline.c uses 3 and 5). */

static const char *const names[METHOD_COUNT] = {"slim", "lasso", "uniform",
                                                "random"};

const char *method_name(enum method m)
{
    return (unsigned)m < METHOD_COUNT ? names[m] : "unknown";
}

/* Everything one method run holds. */
struct mrun {
    const struct config *c; /* the user's config */
    struct config mc;       /* the same with out_dir = OUT/<method> */
    enum method method;
    const volatile sig_atomic_t *stop;
    FILE *progress;
    struct model *base;
    struct data_splits s;
    int have_data;
    int ch[PIPELINE_MAX_LAYERS]; /* the structure */
    double prune_epochs;
};

static int method_path(char *buf, size_t n, const struct mrun *r,
                       const char *file, char *err)
{
    return search_path(buf, n, &r->mc, file, err);
}

/* Network Slimming's sparsity training: the baseline (or a fresh net) with
 * s * sum|gamma| added, resumable in OUT/slim/sparse.ckpt. On success
 * *sparse is the trained full-width model. */
static int slim_train(struct mrun *r, struct model **sparse, char *err)
{
    const struct config *c = r->c;
    char ckpt[CONFIG_PATH_MAX + 48], logp[CONFIG_PATH_MAX + 48];
    int rc;
    if ((rc = method_path(ckpt, sizeof ckpt, r, "sparse.ckpt", err)) ||
        (rc = method_path(logp, sizeof logp, r, "sparse.jsonl", err)))
        return rc;
    struct model *m = NULL;
    struct train_state st = {0};
    int done = 0;
    if (file_exists(ckpt)) {
        if ((rc = pipeline_load_resume(ckpt, r->base, c->slim.epochs, &m, &st,
                                       &done, err)))
            return rc;
    } else if (c->slim.inherit == SLIM_FROM_SCRATCH) {
        if ((rc = model_create(&m, r->base->arch, NULL, r->base->in_c,
                               r->base->in_h, r->base->in_w,
                               r->base->num_classes, err)))
            return rc;
        model_init_weights(m, rng_derive(c->seed, SEED_SCRATCH, 0, 0));
    } else {
        /* a copy of the baseline: slicing to its own widths copies all */
        if ((rc = prune_slice(r->base, r->base->channels, FILTER_L1, 0, &m,
                              err)))
            return rc;
    }
    if (!done) {
        if (r->progress)
            fprintf(r->progress,
                    "slim: sparsity training from the %s, s = %g, %d "
                    "epochs\n",
                    config_choice_name("slim.inherit", c->slim.inherit),
                    c->slim.sparsity, c->slim.epochs);
        struct slim_penalty pen = {.s = c->slim.sparsity,
                                   .all_bn = c->slim.sparsity_all_bn};
        rc = pipeline_train_files(
            m, c, &c->slim, &r->s, rng_derive(c->seed, SEED_SLIM, 0, 0), &st,
            ckpt, logp, "slim", r->stop, r->progress, &pen, err);
    }
    free(st.velocity);
    if (rc) {
        model_destroy(m);
        return rc;
    }
    *sparse = m;
    return 0;
}

/* |gamma| of every prunable layer's BN, in prune_select's layout. */
static int gamma_scores(const struct model *m, float **out, char *err)
{
    int total = 0;
    for (int j = 0; j < m->nprunable; j++)
        total += m->channels[j];
    float *score = malloc(sizeof(float) * (size_t)(total ? total : 1));
    if (!score) return abc_errf(err, ABC_ENOMEM, "out of memory");
    int found = 0;
    for (int t = 0; t < m->ntensors; t++) {
        const struct tensor_info *ti = &m->tensors[t];
        if (!slim_is_prunable_gamma(ti)) continue;
        int j = ti->prune_out;
        const float *g = model_tensor_data(m, ti);
        float *dst = score + prune_keep_offset(m->channels, j);
        for (int i = 0; i < m->channels[j]; i++)
            dst[i] = fabsf(g[i]);
        found++;
    }
    if (found != m->nprunable) {
        free(score);
        return abc_errf(err, ABC_EVALUE,
                        "%s: found %d BN gammas for %d prunable layers",
                        arch_name(m->arch), found, m->nprunable);
    }
    *out = score;
    return 0;
}

/* Slimming: the structure of the global |gamma| threshold and, when start
 * is not NULL, the sliced sparse model. */
static int slim_prune(struct mrun *r, struct model **start, char *err)
{
    struct model *sparse = NULL;
    float *score = NULL;
    int *keep = NULL;
    int rc = slim_train(r, &sparse, err);
    if (rc) return rc;
    if ((rc = gamma_scores(sparse, &score, err))) goto out;
    int total = 0;
    for (int j = 0; j < sparse->nprunable; j++)
        total += sparse->channels[j];
    keep = malloc(sizeof(int) * (size_t)(total ? total : 1));
    if (!keep) {
        rc = abc_errf(err, ABC_ENOMEM, "out of memory");
        goto out;
    }
    double thr;
    if ((rc = budget_threshold(
             sparse, score, r->c->prune.flops_target, r->c->prune.keep_fraction,
             r->c->prune.min_channels, r->ch, keep, &thr, err)))
        goto out;
    float *before = NULL;
    if ((rc = gamma_scores(r->base, &before, err))) goto out;
    int small = 0;
    double sum_after = 0, sum_before = 0;
    for (int f = 0; f < total; f++) {
        small += score[f] < 1e-2f;
        sum_after += score[f];
        sum_before += before[f];
    }
    free(before);
    if (r->progress)
        fprintf(r->progress,
                "slim: mean |gamma| %.4f -> %.4f after sparsity training; "
                "%d of %d prunable channels below 0.01; global threshold "
                "%.4g\n",
                sum_before / total, sum_after / total, small, total, thr);
    if (start) rc = prune_slice_keep(sparse, r->ch, keep, start, err);
out:
    free(score);
    free(keep);
    model_destroy(sparse);
    return rc;
}

static int lasso_run(struct mrun *r, struct model **start, char *err)
{
    const struct config *c = r->c;
    struct lasso_params p;
    lasso_params_default(&p);
    p.images = c->lasso.images;
    p.points_per_image = c->lasso.points_per_image;
    p.seed = rng_derive(c->seed, SEED_LASSO, 0, 0);
    return lasso_prune(r->base, r->ch, &p, &r->s.train, &r->s.aug, r->progress,
                       start, NULL, err);
}

/* The method's structure into r->ch and, when start is not NULL, the
 * pruned model fine-tuning starts from. */
static int choose(struct mrun *r, struct model **start, char *err)
{
    const struct prune_config *pc = &r->c->prune;
    uint64_t seed = r->c->seed;
    int rc;
    switch (r->method) {
    case METHOD_SLIM:
        r->prune_epochs = r->c->slim.epochs;
        return slim_prune(r, start, err);
    case METHOD_LASSO:
        r->prune_epochs = 0; /* forward passes over sampled images only */
        if ((rc = budget_uniform(r->base, pc->flops_target, pc->keep_fraction,
                                 pc->min_channels, r->ch, NULL, err)))
            return rc;
        return start ? lasso_run(r, start, err) : 0;
    case METHOD_UNIFORM:
        if ((rc = budget_uniform(r->base, pc->flops_target, pc->keep_fraction,
                                 pc->min_channels, r->ch, NULL, err)))
            return rc;
        return start ? prune_slice(r->base, r->ch, FILTER_L1, 0, start, err)
                     : 0;
    case METHOD_RANDOM:
        if ((rc = budget_random(
                 r->base, pc->flops_target, pc->keep_fraction, pc->min_channels,
                 rng_derive(seed, SEED_STRUCTURE, 0, 0), r->ch, err)))
            return rc;
        return start ? prune_slice(r->base, r->ch, FILTER_RANDOM,
                                   rng_derive(seed, SEED_FILTERS, 0, 0), start,
                                   err)
                     : 0;
    default:
        return abc_errf(err, ABC_EVALUE, "unknown method %d", r->method);
    }
}

static int run_method(struct mrun *r, FILE *out, char *err)
{
    const struct config *c = r->c;
    char base_p[CONFIG_PATH_MAX + 32], ckpt[CONFIG_PATH_MAX + 48],
        logp[CONFIG_PATH_MAX + 48];
    int rc;
    if ((rc = search_path(base_p, sizeof base_p, c, SEARCH_BASELINE, err)) ||
        (rc = method_path(ckpt, sizeof ckpt, r, PIPELINE_PRUNED, err)) ||
        (rc = method_path(logp, sizeof logp, r, "finetune.jsonl", err)))
        return rc;
    if (!file_exists(base_p))
        return abc_errf(err, ABC_EIO,
                        "%s: no baseline: train it first (abcprune train %s)",
                        base_p, c->path);
    if ((rc = pipeline_load_baseline(c, base_p, &r->base, err))) return rc;
    if ((rc = file_make_dirs(r->mc.out_dir, err))) return rc;
    if ((rc = data_open(&r->s, c, 1, err))) return rc;
    r->have_data = 1;

    struct model *m = NULL, *want = NULL;
    struct train_state st = {0};
    int done = 0;
    if (file_exists(ckpt)) {
        /* resume: the structure again (cheap), the weights from ckpt */
        if ((rc = choose(r, NULL, err)) ||
            (rc = model_create(&want, r->base->arch, r->ch, r->base->in_c,
                               r->base->in_h, r->base->in_w,
                               r->base->num_classes, err)) ||
            (rc = pipeline_load_resume(ckpt, want, c->finetune.epochs, &m, &st,
                                       &done, err)))
            goto out;
        if (r->progress && !done)
            fprintf(r->progress, "resuming %s from epoch %d\n", ckpt, st.epoch);
    } else if ((rc = choose(r, &m, err))) {
        goto out;
    }
    if (r->progress) {
        fprintf(r->progress, "%s: structure", method_name(r->method));
        for (int j = 0; j < r->base->nprunable; j++)
            fprintf(r->progress, " %d/%d", r->ch[j], r->base->channels[j]);
        fprintf(r->progress, " (%.2fM of %.2fM MACs)\n", model_macs(m) / 1e6,
                model_macs(r->base) / 1e6);
    }
    if (!done && (rc = pipeline_train_files(
                      m, c, &c->finetune, &r->s,
                      rng_derive(c->seed, SEED_FINETUNE, 0, 0), &st, ckpt, logp,
                      "finetune", r->stop, r->progress, NULL, err)))
        goto out;
    double base_acc, base_ips, acc, ips;
    int batch = c->finetune.batch_size;
    if ((rc = pipeline_measure(r->base, &r->s, batch, &base_acc, &base_ips,
                               err)) ||
        (rc = pipeline_measure(m, &r->s, batch, &acc, &ips, err)))
        goto out;
    struct report_info ri = {.method = method_name(r->method),
                             .prune_epochs = r->prune_epochs,
                             .search_fitness = -1};
    rc = pipeline_write_report(&r->mc, &ri, r->base, m, base_acc, base_ips, acc,
                               ips, out, err);
out:
    model_destroy(m);
    model_destroy(want);
    free(st.velocity);
    return rc;
}

int method_run(const struct config *c, enum method m,
               const volatile sig_atomic_t *stop, FILE *progress, FILE *out,
               char *err)
{
    if ((unsigned)m >= METHOD_COUNT)
        return abc_errf(err, ABC_EVALUE, "unknown method %d", m);
    struct mrun *r = calloc(1, sizeof *r);
    if (!r) return abc_errf(err, ABC_ENOMEM, "out of memory");
    r->c = c;
    r->mc = *c;
    r->method = m;
    r->stop = stop;
    r->progress = progress;
    int rc = 0;
    if (snprintf(r->mc.out_dir, sizeof r->mc.out_dir, "%s/%s", c->out_dir,
                 method_name(m)) >= (int)sizeof r->mc.out_dir)
        rc = abc_errf(err, ABC_EVALUE, "%s: out_dir path too long", c->path);
    if (!rc) rc = run_method(r, out, err);
    if (r->have_data) data_close(&r->s);
    model_destroy(r->base);
    free(r);
    return rc;
}

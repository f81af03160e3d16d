/* pipeline.c - the train and finetune steps and the final report (see
 * pipeline.h). */
#include "pipeline.h"

#include <stdlib.h>
#include <string.h>

#include "colony.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/rng.h"
#include "core/seeds.h"
#include "dp.h"
#include "io/checkpoint.h"
#include "io/jsonl.h"
#include "prune/fitness.h"
#include "prune/prune.h"
#include "search.h"
#include "structure.h"
#include "train/train.h"

/* Labels of rng_derive for the model's initial weights and fine-tuning. */

static struct dp *g_dp; /* data-parallel trainings, or NULL */

void pipeline_set_data_parallel(struct dp *dp)
{
    g_dp = dp;
}

void pipeline_input_shape(const struct config *c, int *ch, int *h, int *w)
{
    if (c->data.dataset == DATASET_CIFAR10)
        *ch = 3, *h = 32, *w = 32;
    else
        *ch = 1, *h = 28, *w = 28;
}

int pipeline_model_from_config(struct model **m, const struct config *c, int ch,
                               int h, int w, char *err)
{
    enum arch a;
    if (arch_parse(c->model.arch, &a) != 0)
        return abc_errf(err, ABC_EVALUE, "%s: unknown model.arch '%s'", c->path,
                        c->model.arch);
    int n = arch_prunable(a, NULL);
    if (c->model.nchannels && c->model.nchannels != n)
        return abc_errf(err, ABC_EVALUE,
                        "%s: model.channels has %d entries, %s has %d "
                        "prunable layers",
                        c->path, c->model.nchannels, c->model.arch, n);
    int rc = model_create(m, a, c->model.nchannels ? c->model.channels : NULL,
                          ch, h, w, 10, err);
    if (rc) return abc_errprefix(err, rc, "%s", c->path);
    return 0;
}

int pipeline_load_baseline(const struct config *c, const char *path,
                           struct model **m, char *err)
{
    struct train_state st = {0};
    int rc = checkpoint_load(path, m, &st, err);
    if (rc) return rc;
    free(st.velocity);
    if ((rc = checkpoint_check_split(path, &st, c, err))) {
        model_destroy(*m);
        *m = NULL;
    }
    return rc;
}

/* Loads path's checkpoint for resuming a training of `want`'s shape.
 * *done = 1 when it already ran `epochs` epochs. */
int pipeline_load_resume(const char *path, const struct model *want, int epochs,
                         struct model **m, struct train_state *st, int *done,
                         char *err)
{
    int rc = checkpoint_load(path, m, st, err);
    if (rc) return rc;
    if ((rc = checkpoint_check_compatible(*m, want, err))) {
        model_destroy(*m);
        *m = NULL;
        free(st->velocity);
        st->velocity = NULL;
        return abc_errprefix(err, rc,
                             "%s does not match the config (remove it or use "
                             "--force to start over)",
                             path);
    }
    *done = st->epoch >= epochs;
    return 0;
}

/* Trains m with schedule tc, writing ckpt and log; shared by train and
 * finetune. */
int pipeline_train_files(struct model *m, const struct config *c,
                         const struct train_config *tc,
                         const struct data_splits *s, uint64_t seed,
                         struct train_state *st, const char *ckpt,
                         const char *logp, const char *tag,
                         const volatile sig_atomic_t *stop, FILE *progress,
                         const struct slim_penalty *sparsity, char *err)
{
    if (st->epoch > 0) { /* resumed: it must go on with its own split */
        int rc = checkpoint_check_split(ckpt, st, c, err);
        if (rc) return rc;
    }
    checkpoint_set_split(st, c);
    FILE *log = jsonl_open(logp, st->epoch > 0, err);
    if (!log) return ABC_EIO;
    struct train_io io = {.ckpt_path = ckpt,
                          .log = log,
                          .progress = progress,
                          .tag = tag,
                          .stop = stop};
    int rc;
    if (g_dp) { /* the other ranks train along (proto/dp.h) */
        rc = dp_lead(g_dp, m, tc, s, seed, st, &io, sparsity, err);
    } else {
        io.after_backward = sparsity ? slim_after_backward : NULL;
        io.hook_ctx = (void *)sparsity;
        rc = train_model(m, tc, s, seed, st, &io, err);
    }
    if (fclose(log) != 0 && !rc)
        rc = abc_errf(err, ABC_EIO, "%s: cannot write the log", logp);
    return rc;
}

int pipeline_train(const struct config *c, int force,
                   const volatile sig_atomic_t *stop, FILE *progress, char *err)
{
    char ckpt[CONFIG_PATH_MAX + 32], logp[CONFIG_PATH_MAX + 32];
    int rc;
    if ((rc = search_path(ckpt, sizeof ckpt, c, SEARCH_BASELINE, err)) ||
        (rc = search_path(logp, sizeof logp, c, "train.jsonl", err)) ||
        (rc = file_make_dirs(c->out_dir, err)))
        return rc;
    int ch, h, w;
    pipeline_input_shape(c, &ch, &h, &w);
    struct model *m = NULL, *want = NULL;
    struct train_state st = {0};
    if ((rc = pipeline_model_from_config(&want, c, ch, h, w, err))) return rc;
    if (!force && file_exists(ckpt)) {
        int done = 0;
        rc = pipeline_load_resume(ckpt, want, c->train.epochs, &m, &st, &done,
                                  err);
        model_destroy(want);
        if (rc) return rc;
        if (done) {
            if (progress)
                fprintf(progress,
                        "baseline already trained: %s (%d epochs); --force "
                        "retrains it\n",
                        ckpt, st.epoch);
            model_destroy(m);
            free(st.velocity);
            return 0;
        }
        if (progress)
            fprintf(progress, "resuming %s from epoch %d\n", ckpt, st.epoch);
    } else {
        m = want;
        model_init_weights(m, rng_derive(c->seed, SEED_INIT, 0, 0));
    }
    struct data_splits s;
    if ((rc = data_open(&s, c, 1, err))) {
        model_destroy(m);
        free(st.velocity);
        return rc;
    }
    if (progress)
        fprintf(progress,
                "training %s (%lld params, %.2fM MACs/image) on %s: %d train, "
                "%d val, %d test images\n",
                arch_name(m->arch), (long long)model_param_count(m),
                model_macs(m) / 1e6,
                config_choice_name("data.dataset", c->data.dataset), s.train.n,
                s.val.n, s.test.n);
    rc = pipeline_train_files(m, c, &c->train, &s, c->seed, &st, ckpt, logp,
                              "train", stop, progress, NULL, err);
    double acc = 0, loss = 0;
    if (!rc)
        rc =
            evaluate(m, &s.test, &s.aug, c->train.batch_size, &acc, &loss, err);
    if (!rc) {
        FILE *log = jsonl_open(logp, 1, err);
        if (!log) {
            rc = ABC_EIO;
        } else {
            fprintf(log,
                    "{\"event\":\"done\",\"test_acc\":%.6f,\"test_loss\":%.6f,"
                    "\"best_val_acc\":%.6f,\"checkpoint\":",
                    acc, loss, st.best_val_acc);
            jsonl_string(log, ckpt);
            fputc('}', log);
            if (jsonl_end(log) || fclose(log))
                rc = abc_errf(err, ABC_EIO, "%s: cannot write", logp);
        }
        if (progress && !rc)
            fprintf(progress,
                    "baseline test accuracy %.2f%% (loss %.4f) on %d images; "
                    "checkpoint %s\n",
                    100 * acc, loss, s.test.n, ckpt);
    }
    data_close(&s);
    model_destroy(m);
    free(st.velocity);
    return rc;
}

/* Test accuracy and inference images/s of m (eval mode, whole test set). */
int pipeline_measure(struct model *m, const struct data_splits *s, int batch,
                     double *acc, double *ips, char *err)
{
    double t0 = now_seconds(), loss;
    int rc = evaluate(m, &s->test, &s->aug, batch, acc, &loss, err);
    double dt = now_seconds() - t0;
    *ips = dt > 0 ? s->test.n / dt : 0;
    return rc;
}

static void reduction(char *buf, size_t n, double full, double pruned)
{
    snprintf(buf, n, "-%.1f%% (x%.2f)", 100.0 * (1.0 - pruned / full),
             full / pruned);
}

int pipeline_write_report(const struct config *c, const struct report_info *ri,
                          const struct model *base, const struct model *pruned,
                          double base_acc, double base_ips, double acc,
                          double ips, FILE *out, char *err)
{
    double bm = (double)model_macs(base), pm = (double)model_macs(pruned);
    double bp = (double)model_param_count(base),
           pp = (double)model_param_count(pruned);
    char fr[64], pr[64], how[256] = "";
    reduction(fr, sizeof fr, bm, pm);
    reduction(pr, sizeof pr, bp, pp);
    if (ri->search_fitness >= 0)
        snprintf(
            how, sizeof how,
            "search fitness (validation accuracy under the %s proxy): "
            "%.2f%%\n",
            config_choice_name("search.fitness.proxy", c->search.fitness.proxy),
            100 * ri->search_fitness);
    char text[4096];
    int len =
        snprintf(text, sizeof text,
                 "abcprune report: %s on %s (%s), method %s, seed %llu\n"
                 "                 baseline      pruned        change\n"
                 "test accuracy    %7.2f%%      %7.2f%%      %+.2f points\n"
                 "params           %9.0f     %9.0f     %s\n"
                 "MACs/image       %8.2fM     %8.2fM     %s\n"
                 "inference img/s  %9.0f     %9.0f     x%.2f\n"
                 "cost: %.2f epochs to choose the structure, %d epochs of "
                 "fine-tuning\n"
                 "%s"
                 "structure:",
                 arch_name(base->arch),
                 config_choice_name("data.dataset", c->data.dataset), c->path,
                 ri->method, (unsigned long long)c->seed, 100 * base_acc,
                 100 * acc, 100 * (acc - base_acc), bp, pp, pr, bm / 1e6,
                 pm / 1e6, fr, base_ips, ips, base_ips > 0 ? ips / base_ips : 0,
                 ri->prune_epochs, c->finetune.epochs, how);
    for (int j = 0; j < pruned->nprunable && len < (int)sizeof text; j++)
        len += snprintf(text + len, sizeof text - len, " %d/%d",
                        pruned->channels[j], base->channels[j]);
    if (len < (int)sizeof text)
        len += snprintf(text + len, sizeof text - len, "\n");
    if (len >= (int)sizeof text)
        return abc_errf(err, ABC_EVALUE, "report too long");
    if (out) fputs(text, out);
    char path[CONFIG_PATH_MAX + 32];
    int rc = search_path(path, sizeof path, c, PIPELINE_REPORT, err);
    if (!rc) rc = file_write_atomic(path, text, (size_t)len, err);
    if (rc) return rc;
    char json[4096];
    int jl = snprintf(
        json, sizeof json,
        "{\"method\":\"%s\",\"seed\":%llu,\"flops_target\":%.4f,"
        "\"prune_epochs\":%.4f,\"finetune_epochs\":%d,"
        "\"arch\":\"%s\",\"dataset\":\"%s\",\"baseline_test_acc\":%.6f,"
        "\"pruned_test_acc\":%.6f,\"baseline_params\":%.0f,"
        "\"pruned_params\":%.0f,\"params_reduction\":%.6f,"
        "\"baseline_macs\":%.0f,\"pruned_macs\":%.0f,"
        "\"flops_reduction\":%.6f,\"baseline_infer_img_s\":%.1f,"
        "\"pruned_infer_img_s\":%.1f,\"search_fitness\":%.6f,"
        "\"structure\":[",
        ri->method, (unsigned long long)c->seed, c->prune.flops_target,
        ri->prune_epochs, c->finetune.epochs, arch_name(base->arch),
        config_choice_name("data.dataset", c->data.dataset), base_acc, acc, bp,
        pp, 1 - pp / bp, bm, pm, 1 - pm / bm, base_ips, ips,
        ri->search_fitness);
    for (int j = 0; j < pruned->nprunable && jl < (int)sizeof json; j++)
        jl += snprintf(json + jl, sizeof json - jl, j ? ",%d" : "%d",
                       pruned->channels[j]);
    if (jl < (int)sizeof json)
        jl += snprintf(json + jl, sizeof json - jl, "]}\n");
    if (jl >= (int)sizeof json)
        return abc_errf(err, ABC_EVALUE, "report too long");
    if ((rc = search_path(path, sizeof path, c, PIPELINE_REPORT_JSON, err)))
        return rc;
    return file_write_atomic(path, json, (size_t)jl, err);
}

int pipeline_finetune(const struct config *c, int random,
                      const volatile sig_atomic_t *stop, FILE *progress,
                      FILE *out, char *err)
{
    char base_p[CONFIG_PATH_MAX + 32], col_p[CONFIG_PATH_MAX + 32];
    char ckpt[CONFIG_PATH_MAX + 32], logp[CONFIG_PATH_MAX + 32];
    struct config oc; /* the search's directory: its files and the report */
    int rc;
    if ((rc = search_out_config(&oc, c, random, err)) ||
        (rc = search_path(base_p, sizeof base_p, c, SEARCH_BASELINE, err)) ||
        (rc = search_path(col_p, sizeof col_p, &oc, SEARCH_COLONY, err)) ||
        (rc = search_path(ckpt, sizeof ckpt, &oc, PIPELINE_PRUNED, err)) ||
        (rc = search_path(logp, sizeof logp, &oc, "finetune.jsonl", err)))
        return rc;
    struct model *base = NULL, *m = NULL, *want = NULL;
    struct colony *col = NULL;
    struct data_splits s;
    int have_data = 0;
    struct train_state st = {0};
    enum filter_init how = (enum filter_init)c->search.filter_init;
    if ((rc = pipeline_load_baseline(c, base_p, &base, err))) goto out;
    if (!file_exists(col_p)) {
        rc = abc_errf(err, ABC_EIO,
                      "%s: no search result: run the search first "
                      "(abcprune %s %s)",
                      col_p, random ? "randsearch" : "search", c->path);
        goto out;
    }
    if ((rc = colony_load(col_p, &col, err))) goto out;
    if (!colony_done(col)) {
        rc = abc_errf(err, ABC_EVALUE,
                      "%s: the search is not finished (cycle %d of %d); "
                      "resume it with abcprune search --resume %s",
                      col_p, col->cycle, col->p.max_cycles, c->path);
        goto out;
    }
    if (col->p.nlayers != base->nprunable) {
        rc = abc_errf(err, ABC_EVALUE,
                      "%s has %d layers, the baseline %s has %d prunable",
                      col_p, col->p.nlayers, base_p, base->nprunable);
        goto out;
    }
    /* the final choice when the search made one, else the best draw */
    struct colony_choice chosen = colony_chosen(col);
    const int *final_code = chosen.code;
    uint64_t final_seed = chosen.seed;
    int ch[PIPELINE_MAX_LAYERS];
    struct structure_map map;
    if ((rc = structure_map_init(&map, base, col->p.nlayers,
                                 c->prune.flops_target, c->prune.min_channels,
                                 err)) ||
        (rc = structure_from_code(&map, final_code, ch, NULL, NULL, err)))
        goto out;
    if ((rc = model_create(&want, base->arch, ch, base->in_c, base->in_h,
                           base->in_w, base->num_classes, err)))
        goto out;
    if ((rc = data_open(&s, c, 1, err))) goto out;
    have_data = 1;
    int done = 0;
    if (file_exists(ckpt)) {
        if ((rc = pipeline_load_resume(ckpt, want, c->finetune.epochs, &m, &st,
                                       &done, err)))
            goto out;
        if (progress && !done)
            fprintf(progress, "resuming %s from epoch %d\n", ckpt, st.epoch);
    } else if (c->finetune.inherit == INHERIT_BEST) {
        /* The best candidate's trained weights: its evaluation is a pure
         * function of (structure, seed, budget), so run it again. */
        struct fitness_result fr;
        rc = fitness_evaluate(base, ch, col->p.nlayers, how, &c->search.fitness,
                              final_seed, &s, NULL, stop, &fr, &m, err);
        if (rc) goto out;
        if (progress)
            fprintf(progress,
                    "finetune: inherited the chosen candidate's weights "
                    "(its evaluation re-run: val acc %.4f, search had "
                    "%.4f)\n",
                    fr.val_acc, chosen.fitness);
    } else {
        if ((rc = prune_slice(base, ch, how, final_seed, &m, err))) goto out;
        if (progress)
            fprintf(progress,
                    "finetune: inherited the baseline's weights (%s "
                    "filters)\n",
                    filter_init_name(how));
    }
    if (!done) {
        rc = pipeline_train_files(
            m, c, &c->finetune, &s, rng_derive(c->seed, SEED_FINETUNE, 0, 0),
            &st, ckpt, logp, "finetune", stop, progress, NULL, err);
        if (rc) goto out;
    }
    double base_acc, base_ips, acc, ips;
    int batch = c->finetune.batch_size;
    if ((rc = pipeline_measure(base, &s, batch, &base_acc, &base_ips, err)) ||
        (rc = pipeline_measure(m, &s, batch, &acc, &ips, err)))
        goto out;
    /* Choosing the structure cost the search's evaluations (and the final
     * re-evaluations), each a short training, or with adaptive_bn a
     * forward pass over bn_batches batches (counted as training images:
     * an upper bound): in epochs of the training split. */
    const struct fitness_config *fc = &c->search.fitness;
    double per;
    if (fc->proxy == FITNESS_ADAPTIVE_BN) {
        per = (double)fc->bn_batches * fc->batch_size;
    } else {
        per = fc->train_images > 0 && fc->train_images < s.train.n
                  ? fc->train_images
                  : s.train.n;
        per *= fc->epochs;
        if (fc->steps > 0 && (double)fc->steps * fc->batch_size < per)
            per = (double)fc->steps * fc->batch_size;
    }
    double evals =
        (double)col->evaluations +
        (col->has_final ? (double)col->final_candidates * col->final_seeds : 0);
    struct report_info ri = {
        .method = random ? "randsearch" : "abc",
        .prune_epochs = s.train.n > 0 ? evals * per / s.train.n : 0,
        .search_fitness = chosen.fitness,
    };
    rc = pipeline_write_report(&oc, &ri, base, m, base_acc, base_ips, acc, ips,
                               out, err);
out:
    if (have_data) data_close(&s);
    colony_destroy(col);
    model_destroy(base);
    model_destroy(m);
    model_destroy(want);
    free(st.velocity);
    return rc;
}

/* search.c - rank 0 of the ABC search (see search.h). The colony (colony.c)
 * decides what to evaluate; this file moves evaluations to workers and back,
 * keeps the files of the run, and reports progress.
 *
 * Two schedules (config search.schedule):
 *  - sync: every phase is one batch; its candidates go to whichever worker
 *    is free, and the colony is updated once the whole batch is back. The
 *    search is deterministic (the same on 1 or 64 workers, and after a
 *    resume), the log lists each batch in candidate order, and the colony
 *    is saved after every phase. The price: at the end of each phase the
 *    workers that are done wait for the slowest evaluation (pruned nets
 *    differ in cost, so up to W-1 of W workers idle for up to one
 *    evaluation per phase), and a phase with fewer candidates than workers
 *    (the scout, or sn < W) leaves workers idle throughout.
 *  - async: after the init batch (sync), a worker that frees up gets the
 *    next role's candidate made at once from the colony as it is, and each
 *    result is applied the moment it arrives. No worker waits while roles
 *    remain (only at the very end), and later candidates already build on
 *    earlier results; but the search depends on the order results arrive
 *    in, so two runs differ (the budget, sn + cycles*2sn + scouts, does
 *    not). Each result is logged when it arrives, the colony is saved after
 *    every result (a few kB, once per evaluation), and a cycle line is
 *    written when all roles of a cycle are applied. On a stop, candidates
 *    in flight are dropped: the checkpoint lists their roles, and a resumed
 *    search makes them again from its state then (new eval ids, same seeds).
 * With one rank both evaluate in-process, one candidate at a time (async
 * then differs from sync only in applying each result at once). */
#include "search.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "colony.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/rng.h"
#include "core/seeds.h"
#include "evaluate.h"
#include "evaluator.h"
#include "io/checkpoint.h"
#include "io/jsonl.h"
#include "messages.h"
#include "plot.h"
#include "prune/budget.h"
#include "structure.h"
#include "train/train.h"
#include "transport.h"

/* Label of rng_derive for the colony's seed. */

/* CPU seconds this process has used (all threads, user + system). */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

int search_path(char *buf, size_t n, const struct config *c, const char *file,
                char *err)
{
    if (snprintf(buf, n, "%s/%s", c->out_dir, file) >= (int)n)
        return abc_errf(err, ABC_EVALUE, "%s: out_dir path too long", c->path);
    return 0;
}

int search_out_config(struct config *oc, const struct config *c, int random,
                      char *err)
{
    *oc = *c;
    if (!random) return 0;
    if (snprintf(oc->out_dir, sizeof oc->out_dir, "%s/%s", c->out_dir,
                 SEARCH_RANDOM_DIR) >= (int)sizeof oc->out_dir)
        return abc_errf(err, ABC_EVALUE, "%s: out_dir path too long", c->path);
    return 0;
}

/* Everything one search run holds. */
struct run {
    MPI_Comm comm;
    int nranks;
    struct eval_groups groups; /* workers evaluating one structure together */
    const struct config *c;
    const struct search_opts *o;
    struct model *pre; /* the baseline */
    enum filter_init how;
    struct data_splits data; /* loaded only when evaluating in-process */
    int have_data;
    struct colony *col;
    FILE *log;
    FILE *dat; /* search.dat: per evaluation, eval_id,
                  MACs, fitness (for search.png) */
    char colony_path[CONFIG_PATH_MAX + 32], best_path[CONFIG_PATH_MAX + 32];
    char log_path[CONFIG_PATH_MAX + 32];
    struct proto_eval_result *res; /* per candidate of the current batch */
    unsigned char *fresh;          /* res[i] was evaluated in this process */
    int64_t full_macs, full_params;
    struct structure_map map; /* codes to structures at the target */
    struct rank_evaluator ev; /* in-process or the workers; counts
                                 evaluations and their seconds */
    double t_start;
    double cpu_start;  /* this process's CPU seconds at start */
    double cpu_loop;   /* ... when the first phase was dispatched */
    int cycles_logged; /* async: cycle lines written */
};

static int make_request(const struct run *r, const struct candidate *cd,
                        struct proto_eval_request *rq, char *err)
{
    const struct colony *col = r->col;
    memset(rq, 0, sizeof *rq);
    rq->eval_id = cd->eval_id;
    rq->nlayers = col->p.nlayers;
    int rc =
        structure_from_code(&r->map, cd->code, rq->structure, NULL, NULL, err);
    if (rc) return rc;
    rq->seed = cd->seed;
    proto_budget_from_config(&rq->budget, &r->c->search.fitness);
    rq->cycle = cd->cycle;
    rq->phase = (enum proto_phase)cd->phase; /* same numbering 0..3 */
    rq->candidate = cd->index;
    return 0;
}

/* A candidate's fitness: validation accuracy, the validation loss
 * breaking ties (1e-6 per unit of loss, capped at 100: below the 1/N
 * step of an accuracy over N <= 10^4 images, so it never overturns one);
 * a failed evaluation scores 0. */
static double fitness_of(const struct proto_eval_result *res)
{
    if (!res->ok) return 0.0;
    return res->val_acc - 1e-6 * fmin(res->val_loss, 100.0);
}

/* A result of the batch landed: record it in the colony. */
struct batch_ctx {
    struct run *r;
    const int *todo; /* request k is batch entry todo[k] */
};

static int batch_done(void *ctx, int k, const struct proto_eval_result *res,
                      char *err)
{
    struct batch_ctx *b = ctx;
    int i = b->todo[k];
    b->r->res[i] = *res;
    b->r->fresh[i] = 1;
    return colony_record(b->r->col, i, fitness_of(res), err);
}

/* Evaluates the batch's candidates that have no result yet. Returns 0,
 * ABC_ESTOPPED (results so far are recorded), or an error. */
static int evaluate_batch(struct run *r, const struct candidate *batch, int n,
                          char *err)
{
    struct colony *col = r->col;
    size_t m = (size_t)(n ? n : 1);
    int *todo = malloc(sizeof(int) * m);
    struct proto_eval_request *rq = malloc(sizeof *rq * m);
    struct eval_job *jobs = malloc(sizeof *jobs * m);
    int ntodo = 0, rc = 0;
    if (!todo || !rq || !jobs) rc = abc_errf(err, ABC_ENOMEM, "out of memory");
    for (int i = 0; i < n && !rc; i++)
        if (!col->have[i] &&
            !(rc = make_request(r, &batch[i], &rq[ntodo], err))) {
            jobs[ntodo] = (struct eval_job){.rq = &rq[ntodo], .cd = &batch[i]};
            todo[ntodo++] = i;
        }
    struct batch_ctx ctx = {.r = r, .todo = todo};
    if (!rc)
        rc = evaluator_run(&r->ev.base, jobs, ntodo, NULL, batch_done, &ctx,
                           err);
    free(todo);
    free(rq);
    free(jobs);
    return rc;
}

/* best.yaml: the best structure so far, rewritten after every phase. */
static int write_best(struct run *r, char *err)
{
    const struct colony *col = r->col;
    int n = col->p.nlayers;
    int ch[PROTO_MAX_LAYERS];
    int64_t macs, params;
    /* once made, the final choice (the top codes re-evaluated) */
    struct colony_choice chosen = colony_chosen(col);
    const int *code = chosen.code;
    double fit = chosen.fitness;
    uint64_t seed = chosen.seed;
    int rc = structure_from_code(&r->map, code, ch, &macs, &params, err);
    if (rc) return rc;
    char text[8192];
    int len =
        snprintf(text, sizeof text,
                 "# Best structure of the %s search (%s).\n"
                 "arch: %s\n"
                 "structure: [",
                 col->p.random ? "random" : "ABC",
                 col->has_final ? "final: the best mean of the top structures "
                                  "re-evaluated"
                 : colony_done(col) ? "the best ever evaluated"
                                    : "so far; rewritten after every phase",
                 arch_name(r->pre->arch));
    for (int j = 0; j < n && len < (int)sizeof text; j++)
        len +=
            snprintf(text + len, sizeof text - len, j ? ", %d" : "%d", ch[j]);
    if (len < (int)sizeof text)
        len += snprintf(text + len, sizeof text - len, "]\ncode: [");
    for (int j = 0; j < n && len < (int)sizeof text; j++)
        len +=
            snprintf(text + len, sizeof text - len, j ? ", %d" : "%d", code[j]);
    if (len < (int)sizeof text)
        len += snprintf(
            text + len, sizeof text - len,
            "]\n"
            "fitness: %.8f          # validation accuracy (minus 1e-6 x "
            "loss, the tie-break) with search.fitness.proxy%s\n"
            "best_ever_fitness: %.8f   # the single best draw of the search\n"
            "reevaluated: %d structures x %d seeds\n"
            "eval_id: %llu\n"
            "seed: %llu\n"
            "flops: %lld            # multiply-accumulates per image\n"
            "flops_full: %lld\n"
            "flops_reduction: %.4f\n"
            "params: %lld\n"
            "params_full: %lld\n"
            "params_reduction: %.4f\n"
            "evaluations: %llu\n"
            "cycles_done: %d\n"
            "done: %s\n",
            fit, col->has_final ? "; mean of the re-evaluations" : "",
            col->best_fitness, col->has_final ? col->final_candidates : 0,
            col->has_final ? col->final_seeds : 0,
            (unsigned long long)col->best_eval_id, (unsigned long long)seed,
            (long long)macs, (long long)r->full_macs,
            1.0 - (double)macs / r->full_macs, (long long)params,
            (long long)r->full_params, 1.0 - (double)params / r->full_params,
            (unsigned long long)col->evaluations, col->cycle,
            colony_done(col) ? "true" : "false");
    if (len >= (int)sizeof text)
        return abc_errf(err, ABC_EVALUE, "%s: too many layers to write",
                        r->best_path);
    return file_write_atomic(r->best_path, text, (size_t)len, err);
}

static int stop_save(struct run *r, int code, const char *why, char *err);

/* A stop that keeps the search resumable: a signal, or a hung worker. */
static int is_stop(int rc)
{
    return rc == ABC_ESTOPPED || rc == ABC_ETIMEOUT;
}

/* Against the winner's curse: the best of many noisy draws is biased
 * upwards, so once the search is done its top search.final_topk distinct
 * structures are evaluated again with search.final_seeds fresh seeds (the
 * same seeds for each: common random numbers), and the best mean becomes
 * the final choice, saved in the colony and logged ("reeval" lines). */
static int final_choice(struct run *r, char *err)
{
    struct colony *col = r->col;
    const struct search_config *sc = &r->c->search;
    int k = sc->final_topk, ns = sc->final_seeds, L = col->p.nlayers;
    if (k < 1 || !colony_done(col) || col->has_final) return 0;
    int *codes = malloc(sizeof(int) * (size_t)k * L);
    struct proto_eval_request *rq = malloc(sizeof *rq * (size_t)k * ns);
    struct proto_eval_result *res = calloc((size_t)k * ns, sizeof *res);
    struct eval_job *jobs = calloc((size_t)k * ns, sizeof *jobs);
    double *mean = calloc((size_t)k, sizeof *mean);
    int rc = 0;
    if (!codes || !rq || !res || !jobs || !mean) {
        rc = abc_errf(err, ABC_ENOMEM, "out of memory");
        goto out;
    }
    int n = colony_top_codes(col, k, codes);
    for (int a = 0; a < n && !rc; a++)
        for (int j = 0; j < ns && !rc; j++) {
            struct candidate cd = {.cycle = col->p.max_cycles,
                                   .phase = COLONY_DONE,
                                   .index = a,
                                   .source = -1,
                                   .partner = -1,
                                   .code = codes + (size_t)a * L};
            cd.seed =
                rng_derive(col->p.seed, SEED_SEARCH_FINAL, (uint64_t)j, 0);
            cd.eval_id = col->next_eval_id + (uint64_t)(a * ns + j);
            rc = make_request(r, &cd, &rq[a * ns + j], err);
            rq[a * ns + j].phase = PROTO_PHASE_SCOUT; /* any: logging only */
            jobs[a * ns + j].rq = &rq[a * ns + j];    /* cd: gone after here */
        }
    if (!rc)
        rc = evaluator_run(&r->ev.base, jobs, n * ns, res, NULL, NULL, err);
    if (rc) {
        if (is_stop(rc)) { /* made again on resume */
            char why[ABC_ERRLEN];
            snprintf(why, sizeof why, "%s", err);
            rc = stop_save(r, rc, why, err);
        }
        goto out;
    }
    int best = 0;
    for (int a = 0; a < n && !rc; a++) {
        for (int j = 0; j < ns; j++)
            mean[a] += fitness_of(&res[a * ns + j]) / ns;
        if (mean[a] > mean[best]) best = a;
        int ch[PROTO_MAX_LAYERS];
        if ((rc = structure_from_code(&r->map, codes + (size_t)a * L, ch, NULL,
                                      NULL, err)))
            break;
        fprintf(r->log, "{\"event\":\"reeval\",\"rank\":%d,\"structure\":", a);
        jsonl_ints(r->log, ch, L);
        fprintf(r->log, ",\"code\":");
        jsonl_ints(r->log, codes + (size_t)a * L, L);
        fprintf(r->log, ",\"fitness\":[");
        for (int j = 0; j < ns; j++)
            fprintf(r->log, j ? ",%.8f" : "%.8f", fitness_of(&res[a * ns + j]));
        fprintf(r->log, "],\"mean\":%.8f}", mean[a]);
        if (jsonl_end(r->log))
            rc = abc_errf(err, ABC_EIO, "%s: cannot write the search log",
                          r->log_path);
    }
    if (!rc)
        rc = colony_set_final(col, codes + (size_t)best * L, mean[best],
                              rng_derive(col->p.seed, SEED_SEARCH_FINAL, 0, 0),
                              n, ns, err);
    if (!rc) rc = colony_save(col, r->colony_path, err);
    if (!rc) rc = write_best(r, err);
    if (!rc && r->o->progress)
        fprintf(r->o->progress,
                "search: final choice: the top %d structures re-evaluated "
                "with %d seeds each; number %d has the best mean %.4f (the "
                "search's single best draw was %.4f)\n",
                n, ns, best, mean[best], col->best_fitness);
out:
    free(codes);
    free(rq);
    free(res);
    free(jobs);
    free(mean);
    return rc;
}

static const char *phase_label(int ph)
{
    return colony_phase_name((enum colony_phase)ph);
}

/* The cycle an evaluation of cd is logged under: 0 for init, else its
 * cycle counted from 1 (as the cycle lines). */
static int log_cycle_of(const struct candidate *cd)
{
    return cd->phase == COLONY_INIT ? 0 : cd->cycle + 1;
}

/* One JSON line for the evaluation of cd. */
static int log_eval(struct run *r, const struct candidate *cd,
                    const struct proto_eval_result *res, char *err)
{
    FILE *f = r->log;
    int ch[PROTO_MAX_LAYERS];
    int rc = structure_from_code(&r->map, cd->code, ch, NULL, NULL, err);
    if (rc) return rc;
    fprintf(f,
            "{\"event\":\"eval\",\"cycle\":%d,\"phase\":\"%s\","
            "\"candidate\":%d,\"eval_id\":%llu,\"source\":%d,"
            "\"seed\":%llu,\"structure\":",
            log_cycle_of(cd), phase_label(cd->phase), cd->index,
            (unsigned long long)cd->eval_id, cd->source,
            (unsigned long long)cd->seed);
    jsonl_ints(f, ch, r->col->p.nlayers);
    fprintf(f, ",\"code\":");
    jsonl_ints(f, cd->code, r->col->p.nlayers);
    if (cd->unchanged) fprintf(f, ",\"unchanged\":true");
    if (cd->redraws) fprintf(f, ",\"redraws\":%d", cd->redraws);
    fprintf(f,
            ",\"fitness\":%.8f,\"val_acc\":%.6f,\"val_loss\":%.6f,"
            "\"flops\":%lld,"
            "\"params\":%lld,\"worker\":%d,\"seconds\":%.3f,"
            "\"images_per_s\":%.1f",
            fitness_of(res), res->val_acc, res->val_loss, (long long)res->flops,
            (long long)res->params, res->worker, res->wall_s,
            res->images_per_s);
    if (!res->ok) {
        fprintf(f, ",\"error\":");
        jsonl_string(f, res->error);
    }
    fputc('}', f);
    if (jsonl_end(f))
        return abc_errf(err, ABC_EIO, "%s: cannot write the search log",
                        r->log_path);
    if (r->dat &&
        (fprintf(r->dat, "%llu %lld %.8f\n", (unsigned long long)cd->eval_id,
                 (long long)res->flops, fitness_of(res)) < 0 ||
         fflush(r->dat) != 0))
        return abc_errf(err, ABC_EIO, "%s/search.dat: cannot write",
                        r->c->out_dir);
    return 0;
}

/* search.png: every candidate's fitness against its MACs, and the best so
 * far against evaluations (from search.dat, with gnuplot if installed). */
static void write_plot(const struct run *r, const struct config *oc)
{
    char dat[CONFIG_PATH_MAX + 32], png[CONFIG_PATH_MAX + 32], e[ABC_ERRLEN];
    if (search_path(dat, sizeof dat, oc, "search.dat", e) ||
        search_path(png, sizeof png, oc, "search.png", e))
        return;
    char script[4 * CONFIG_PATH_MAX + 1024];
    if (snprintf(script, sizeof script,
                 "set terminal pngcairo size 1000,450 noenhanced\n"
                 "set output '%s'\n"
                 "set multiplot layout 1,2 title '%s search: %s'\n"
                 "set grid\nset xlabel 'MACs per image (M)'\n"
                 "set ylabel 'fitness'\n"
                 "plot '%s' using ($2/1e6):3 with points pt 7 ps 0.6 "
                 "notitle\n"
                 "set xlabel 'evaluations'\nset ylabel 'best so far'\n"
                 "b = 0\n"
                 "plot '%s' using 0:(b = ($3 > b ? $3 : b)) with steps lw 2 "
                 "notitle\n"
                 "unset multiplot\n",
                 png, r->col->p.random ? "random" : "ABC", r->c->path, dat,
                 dat) < (int)sizeof script)
        plot_gnuplot(script, "search", r->o->progress);
}

/* One JSON line per evaluation of the applied batch, in candidate order
 * (so the log is the same whatever the number of workers). */
static int log_batch(struct run *r, const struct candidate *batch, int n,
                     char *err)
{
    for (int i = 0; i < n; i++) {
        if (!r->fresh[i]) continue; /* evaluated before a resume */
        int rc = log_eval(r, &batch[i], &r->res[i], err);
        if (rc) return rc;
    }
    return 0;
}

static int log_cycle(struct run *r, int cycle, char *err)
{
    const struct colony *col = r->col;
    int ch[PROTO_MAX_LAYERS];
    int rc = structure_from_code(&r->map, col->best_code, ch, NULL, NULL, err);
    if (rc) return rc;
    fprintf(r->log,
            "{\"event\":\"cycle\",\"cycle\":%d,\"best_fitness\":%.6f,"
            "\"best_structure\":",
            cycle, col->best_fitness);
    jsonl_ints(r->log, ch, col->p.nlayers);
    fprintf(r->log, ",\"evaluations\":%llu,\"elapsed_s\":%.1f}",
            (unsigned long long)col->evaluations, now_seconds() - r->t_start);
    if (jsonl_end(r->log))
        return abc_errf(err, ABC_EIO, "%s: cannot write the search log",
                        r->log_path);
    return 0;
}

static void print_progress(struct run *r, int cycle, int phase)
{
    if (!r->o->progress) return;
    const struct colony *col = r->col;
    uint64_t lo, hi;
    colony_cost(&col->p, &lo, &hi);
    double el = now_seconds() - r->t_start;
    /* Scouts are optional: the total lies in lo..hi; count on hi. */
    double left = hi > col->evaluations ? (double)(hi - col->evaluations) : 0;
    double eta = r->ev.evals_here ? el / r->ev.evals_here * left : 0;
    int ch[PROTO_MAX_LAYERS];
    char e[ABC_ERRLEN];
    int64_t m = 0;
    structure_from_code(&r->map, col->best_code, ch, &m, NULL,
                        e); /* 0 MACs if not */
    double macs = (double)m;
    fprintf(r->o->progress,
            "search cycle %d/%d %-8s evals %llu/%llu  best %.4f  "
            "(%.2fM MACs, %.1f%% of full)  %.0fs elapsed  ETA %.0fs\n",
            cycle, col->p.max_cycles, phase_label(phase),
            (unsigned long long)col->evaluations, (unsigned long long)hi,
            col->best_fitness, macs / 1e6, 100.0 * macs / r->full_macs, el,
            eta);
    fflush(r->o->progress);
}

int search_colony_params(struct colony_params *p, const struct config *c,
                         const struct model *pre, char *err)
{
    memset(p, 0, sizeof *p);
    p->nlayers = pre->nprunable;
    p->K = (int)lround(10.0 * c->search.alpha);
    p->sn = c->search.sn;
    p->limit = c->search.limit;
    p->change_dims = c->search.change_dims;
    p->max_cycles = c->search.max_cycles;
    p->seed = rng_derive(c->seed, SEED_SEARCH, 0, 0);
    p->redraw_same = c->search.redraw_same;
    p->crn = c->search.fitness.crn;
    if (p->change_dims > p->nlayers)
        return abc_errf(err, ABC_EVALUE,
                        "%s: search.change_dims %d is more than the %d "
                        "prunable layers of %s",
                        c->path, p->change_dims, p->nlayers,
                        arch_name(pre->arch));
    if (p->nlayers > PROTO_MAX_LAYERS)
        return abc_errf(err, ABC_EVALUE, "%s: %d prunable layers, at most %d",
                        c->path, p->nlayers, PROTO_MAX_LAYERS);
    int rc = colony_params_check(p, err);
    return rc ? abc_errprefix(err, rc, "%s: search", c->path) : 0;
}

/* Loads the baseline (checked against c's split) and broadcasts it. */
static int share_baseline(struct run *r, char *err)
{
    char path[CONFIG_PATH_MAX + 32];
    int rc = search_path(path, sizeof path, r->c, SEARCH_BASELINE, err);
    if (rc) path[0] = '\0';
    int brc = evaluator_share_baseline(r->comm, r->c, path, &r->pre, err);
    return rc ? rc : brc;
}

/* Writes the colony after a stop and says how to go on. Returns
 * ABC_ESTOPPED, or ABC_EIO when the checkpoint could not be written. */
static int stop_save(struct run *r, int code, const char *why, char *err)
{
    char e2[ABC_ERRLEN];
    if (colony_save(r->col, r->colony_path, e2))
        return abc_errf(err, ABC_EIO,
                        "stopped, and the colony checkpoint could not be "
                        "written: %s",
                        e2);
    return abc_errf(err, code, "%s; %s holds the search (resume with --resume)",
                    why, r->colony_path);
}

/* Cuts path at the first line keep() refuses (it and everything after
 * go), reporting on progress how many lines went. Returns 0 or ABC_EIO. */
static int trim_at(const char *path, const struct colony *col,
                   int (*keep)(const char *line, const struct colony *col),
                   FILE *progress, char *err)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0; /* nothing written yet */
    char *line = NULL;
    size_t cap = 0;
    long cut = -1, dropped = 0, at = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) != -1) {
        if (cut < 0 && !keep(line, col)) cut = at;
        if (cut >= 0) dropped++;
        at += (long)len;
    }
    int bad = ferror(f);
    free(line);
    fclose(f);
    if (bad) return abc_errf(err, ABC_EIO, "%s: read error", path);
    if (cut < 0) return 0;
    if (truncate(path, (off_t)cut) != 0)
        return abc_errf(err, ABC_EIO, "%s: cannot truncate: %s", path,
                        strerror(errno));
    if (progress)
        fprintf(progress,
                "search: %s: dropped the last %ld line%s, written after the "
                "colony checkpoint was (the search was killed): they are "
                "made again\n",
                path, dropped, dropped == 1 ? "" : "s");
    return 0;
}

/* 1 when the colony counts evaluation id as done: an earlier batch's, or
 * one of the current batch's recorded results (a stop saved mid-batch). */
static int counted(const struct colony *col, uint64_t id)
{
    if (id < col->next_eval_id) return 1;
    uint64_t i = id - col->next_eval_id;
    return i < (uint64_t)col->nbatch && col->have[i];
}

/* A search.jsonl line the colony counts: an eval line of an evaluation it
 * counts (see counted), a reeval line once it holds its final choice,
 * every other line. */
static int keep_log_line(const char *line, const struct colony *col)
{
    cJSON *o = cJSON_Parse(line);
    if (!o) return 0; /* a line cut short by the kill */
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(o, "event");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "eval_id");
    int keep = 1;
    if (cJSON_IsString(ev) && strcmp(ev->valuestring, "eval") == 0)
        keep = cJSON_IsNumber(id) && id->valuedouble >= 0 &&
               counted(col, (uint64_t)id->valuedouble);
    else if (cJSON_IsString(ev) && strcmp(ev->valuestring, "reeval") == 0)
        keep = col->has_final;
    cJSON_Delete(o);
    return keep;
}

/* A search.dat line ("eval_id flops fitness") the colony counts. */
static int keep_dat_line(const char *line, const struct colony *col)
{
    char *end;
    errno = 0;
    unsigned long long id = strtoull(line, &end, 10);
    return end != line && errno == 0 && counted(col, id);
}

/* On resume: the sync schedule writes a phase's lines before the colony
 * that counts them, so after a kill (no chance to save) the logs can hold
 * lines of a phase the colony has not got; they go, and the phase is
 * evaluated again with the same seeds. (The async schedule applies results
 * one by one: a kill can leave the line of one result per worker that the
 * colony never applied; its role is made again under a new eval_id.) */
static int trim_logs(struct run *r, const char *dat, char *err)
{
    if (r->col->async) return 0;
    int rc = trim_at(r->log_path, r->col, keep_log_line, r->o->progress, err);
    return rc ? rc : trim_at(dat, r->col, keep_dat_line, r->o->progress, err);
}

/* Where a search under Slurm ran: its job, array ids and node list as
 * string fields (nothing outside Slurm). */
static void log_slurm(FILE *f)
{
    static const char *const vars[][2] = {
        {"slurm_job_id", "SLURM_JOB_ID"},
        {"slurm_array_job_id", "SLURM_ARRAY_JOB_ID"},
        {"slurm_array_task_id", "SLURM_ARRAY_TASK_ID"},
        {"slurm_job_nodelist", "SLURM_JOB_NODELIST"}};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i][1]);
        if (!v) continue;
        fprintf(f, ",\"%s\":", vars[i][0]);
        jsonl_string(f, v);
    }
}

/* One phase of the sync schedule: make the batch, evaluate it, log it,
 * apply it, save the colony, write best.yaml. */
static int sync_step(struct run *r, char *err)
{
    const struct candidate *batch;
    int n, rc;
    if ((rc = colony_next_batch(r->col, &batch, &n, err))) return rc;
    memset(r->fresh, 0, (size_t)r->col->p.sn + 1);
    int phase = r->col->phase;
    int cycle = phase == COLONY_INIT ? 0 : r->col->cycle + 1; /* logs */
    rc = evaluate_batch(r, batch, n, err);
    if (is_stop(rc)) {
        /* Keep what finished: its log lines now, its fitness in the
         * checkpoint (a resume does not evaluate it again). */
        char why[ABC_ERRLEN], e2[ABC_ERRLEN];
        snprintf(why, sizeof why, "%s", err);
        log_batch(r, batch, n, e2);
        return stop_save(r, rc, why, err);
    }
    if (rc) return rc;
    /* Log before applying: the batch is freed by colony_apply. */
    if ((rc = log_batch(r, batch, n, err))) return rc;
    if ((rc = colony_apply(r->col, NULL, err))) return rc;
    /* every line of the phase is out before the colony that counts it is
     * saved: a kill in between leaves lines that trim_logs drops */
    if ((phase == COLONY_SCOUT || phase == COLONY_INIT) &&
        (rc = log_cycle(r, cycle, err)))
        return rc;
    if ((rc = colony_save(r->col, r->colony_path, err))) return rc;
    if ((rc = write_best(r, err))) return rc;
    print_progress(r, cycle, phase);
    return 0;
}

/* After the colony moved (async): a cycle line per cycle it finished since
 * the last, best.yaml when the best changed or a cycle or the search
 * ended, a progress line every sn results. */
static int async_after(struct run *r, int best_moved, int result, char *err)
{
    const struct colony *col = r->col;
    int ended = 0, rc;
    while (r->cycles_logged < col->cycle) {
        if ((rc = log_cycle(r, ++r->cycles_logged, err))) return rc;
        ended = 1;
    }
    if ((best_moved || ended || colony_done(col)) && (rc = write_best(r, err)))
        return rc;
    if ((result && r->ev.evals_here % (uint64_t)col->p.sn == 0) ||
        (ended && colony_done(col))) {
        int cyc =
            col->cycle < col->p.max_cycles ? col->cycle + 1 : col->p.max_cycles;
        print_progress(r, cyc, colony_done(col) ? COLONY_DONE : COLONY_ASYNC);
    }
    return 0;
}

/* One async result: its log line, the update (which releases cd), the
 * colony checkpoint, then what async_after writes. */
static int async_take(void *ctx, const struct candidate *cd,
                      const struct proto_eval_result *res, char *err)
{
    struct run *r = ctx;
    struct colony *col = r->col;
    uint64_t best_id = col->best_eval_id;
    int rc = log_eval(r, cd, res, err);
    if (rc) return rc;
    if ((rc = colony_async_apply(col, cd->eval_id, fitness_of(res), err)))
        return rc;
    if ((rc = colony_save(col, r->colony_path, err))) return rc;
    return async_after(r, col->best_eval_id != best_id, 1, err);
}

static int async_request(void *ctx, const struct candidate *cd,
                         struct proto_eval_request *rq, char *err)
{
    return make_request(ctx, cd, rq, err);
}

static int async_issued(void *ctx, char *err)
{
    return async_after(ctx, 0, 0, err); /* skipped scouts end cycles */
}

/* The async schedule from the colony's state to the end (the init batch is
 * done). Returns 0, ABC_ESTOPPED (colony saved), or an error. */
static int async_run(struct run *r, char *err)
{
    struct colony *col = r->col;
    r->cycles_logged = col->cycle;
    static const struct evaluator_async_hooks hooks = {
        async_request, async_issued, async_take};
    int rc = evaluator_run_async(&r->ev.base, col, &hooks, r, err);
    if (is_stop(rc)) { /* in flight: made again on resume */
        char why[ABC_ERRLEN];
        snprintf(why, sizeof why, "%s", err);
        return stop_save(r, rc, why, err);
    }
    if (rc) return rc;
    if (!colony_done(col))
        return abc_errf(err, ABC_EVALUE,
                        "async search: no candidate left and none in flight, "
                        "but the search is not done (cycle %d)",
                        col->cycle);
    /* the last roles may have been skipped scouts: save the end */
    if ((rc = colony_save(col, r->colony_path, err))) return rc;
    return async_after(r, 1, 0, err);
}

int search_run(MPI_Comm comm, const struct config *c,
               const struct search_opts *o, char *err)
{
    struct run r;
    memset(&r, 0, sizeof r);
    r.groups.comm = MPI_COMM_NULL; /* eval_groups_free is safe before make */
    r.comm = comm;
    r.c = c;
    r.o = o;
    r.t_start = now_seconds();
    r.cpu_start = cpu_seconds(); /* `run` trained in this process before */
    int rc = proto_comm_info(comm, NULL, &r.nranks, err);
    if (rc) return rc; /* nothing sent: the job cannot talk (ABC_EMPI) */
    rc = share_baseline(&r, err);
    if (rc) return rc; /* the workers got length 0 and returned */
    /* collective with the workers', right after the baseline */
    if ((rc = eval_groups_make(comm, c, &r.groups, err))) {
        model_destroy(r.pre);
        return rc;
    }
    r.how = (enum filter_init)c->search.filter_init;
    int async = c->search.schedule == SCHEDULE_ASYNC;
    {
        struct model *full;
        if ((rc = model_create(&full, r.pre->arch, NULL, r.pre->in_c,
                               r.pre->in_h, r.pre->in_w, r.pre->num_classes,
                               err)))
            goto out;
        r.full_macs = model_macs(full);
        r.full_params = model_param_count(full);
        model_destroy(full);
    }
    if ((rc = structure_map_init(&r.map, r.pre, r.pre->nprunable,
                                 c->prune.flops_target, c->prune.min_channels,
                                 err))) {
        abc_errprefix(err, rc, "%s: prune.flops_target %g", c->path,
                      c->prune.flops_target);
        goto out;
    }
    struct colony_params p;
    if ((rc = search_colony_params(&p, c, r.pre, err))) goto out;
    p.random = o->random;
    struct config oc; /* where this search's files go */
    if ((rc = search_out_config(&oc, c, o->random, err)) ||
        (rc = file_make_dirs(oc.out_dir, err)))
        goto out;
    if ((rc = search_path(r.colony_path, sizeof r.colony_path, &oc,
                          SEARCH_COLONY, err)) ||
        (rc = search_path(r.best_path, sizeof r.best_path, &oc, SEARCH_BEST,
                          err)) ||
        (rc = search_path(r.log_path, sizeof r.log_path, &oc, SEARCH_LOG, err)))
        goto out;
    int resuming = file_exists(r.colony_path);
    if (resuming && !o->resume) {
        rc = abc_errf(err, ABC_EVALUE,
                      "%s exists: continue that search with --resume, or "
                      "remove it to start over",
                      r.colony_path);
        goto out;
    }
    if (resuming) {
        if ((rc = colony_load(r.colony_path, &r.col, err))) goto out;
        if ((rc = colony_params_match(&r.col->p, &p, err))) {
            abc_errprefix(err, rc,
                          "%s was made with other search settings than %s",
                          r.colony_path, c->path);
            goto out;
        }
        /* A schedule cannot change mid-search (init and the end are the
         * same in both). */
        const struct colony *col = r.col;
        if (!colony_done(col) && col->phase != COLONY_INIT &&
            col->async != async) {
            rc = abc_errf(
                err, ABC_EVALUE,
                "%s holds a search with the %s schedule, but %s "
                "says search.schedule: %s; resume it with %s",
                r.colony_path, col->async ? "async" : "sync", c->path,
                config_choice_name("search.schedule", c->search.schedule),
                col->async ? "async" : "sync");
            goto out;
        }
    } else if ((rc = colony_create(&r.col, &p, err))) {
        goto out;
    }
    {
        char dat[CONFIG_PATH_MAX + 32];
        if ((rc = search_path(dat, sizeof dat, &oc, "search.dat", err)))
            goto out;
        if (resuming && (rc = trim_logs(&r, dat, err))) goto out;
        if (!(r.dat = fopen(dat, resuming ? "a" : "w"))) {
            rc = abc_errf(err, ABC_EIO, "%s: cannot open", dat);
            goto out;
        }
    }
    if (!(r.log = jsonl_open(r.log_path, resuming, err))) {
        rc = ABC_EIO;
        goto out;
    }
    if (r.nranks == 1) {
        if ((rc = data_open(&r.data, c, 0, err))) goto out;
        r.have_data = 1;
    }
    if ((rc = rank_evaluator_init(&r.ev, comm, &r.groups, r.pre, r.how,
                                  r.have_data ? &r.data : NULL, o->stop,
                                  o->progress ? o->progress : stderr, err)))
        goto out;
    r.ev.timeout_s = c->search.eval_timeout_s;
    r.res = calloc((size_t)p.sn + 1, sizeof *r.res);
    r.fresh = calloc((size_t)p.sn + 1, 1);
    if (!r.res || !r.fresh) {
        rc = abc_errf(err, ABC_ENOMEM, "out of memory");
        goto out;
    }
    if (o->progress) {
        uint64_t lo, hi;
        colony_cost(&p, &lo, &hi);
        fprintf(o->progress,
                "search: %s, %d prunable layers, codes 1..%d, SN %d, "
                "%d cycles, %llu-%llu evaluations on %d worker%s, %s "
                "schedule%s\n",
                arch_name(r.pre->arch), p.nlayers, p.K, p.sn, p.max_cycles,
                (unsigned long long)lo, (unsigned long long)hi,
                r.nranks > 1 ? r.nranks - 1 : 1, r.nranks > 2 ? "s" : "",
                async ? "async" : "sync", resuming ? " (resumed)" : "");
        if (r.groups.g > 1)
            fprintf(o->progress,
                    "search: %d group%s of %d ranks, each training one "
                    "structure data-parallel (search.ranks_per_eval)%s\n",
                    r.groups.ngroups, r.groups.ngroups > 1 ? "s" : "",
                    r.groups.g,
                    r.groups.idle ? "; the last workers have no group" : "");
        if (r.groups.idle)
            fprintf(o->progress,
                    "search: %d worker rank%s idle: %d workers are not a "
                    "multiple of search.ranks_per_eval %d\n",
                    r.groups.idle, r.groups.idle > 1 ? "s" : "", r.nranks - 1,
                    r.groups.g);
    }

    /* sync: phase by phase; async: the init batch, then steady state.
     * From here on rank 0 only coordinates: its CPU time per evaluation
     * is the dispatch cost the simulator's --overhead models. */
    r.cpu_loop = cpu_seconds();
    while (!colony_done(r.col) && (!async || r.col->phase == COLONY_INIT))
        if ((rc = sync_step(&r, err))) break;
    if (rc == 0 && async && !colony_done(r.col)) {
        if ((rc = colony_async_begin(r.col, err)) == 0) rc = async_run(&r, err);
    }
    if (rc == 0 && resuming && colony_done(r.col))
        rc = write_best(&r, err); /* a finished search re-run: refresh */
    if (rc == 0 && r.ev.evals_here > 0) {
        /* Utilisation, and rank 0's own CPU time: with workers, all of it
         * is coordination (it must not spin while it waits). */
        double el = now_seconds() - r.t_start;
        /* worker ranks per busy second of a slot: a group's g ranks are
         * all busy with its evaluation */
        double nw = (r.nranks > 1 ? r.nranks - 1 : 1) / (double)r.groups.g;
        double cpu_now = cpu_seconds(), cpu = cpu_now - r.cpu_start;
        double loop_ms = 1e3 * (cpu_now - r.cpu_loop) / (double)r.ev.evals_here;
        fprintf(r.log,
                "{\"event\":\"done\",\"schedule\":\"%s\","
                "\"evaluations\":%llu,\"evaluated_here\":%llu,"
                "\"elapsed_s\":%.2f,\"ranks\":%d,\"worker_busy\":%.4f,"
                "\"rank0_cpu_s\":%.3f,\"rank0_loop_ms_per_eval\":%.3f,"
                "\"best_fitness\":%.6f,\"ranks_per_eval\":%d",
                config_choice_name("search.schedule", c->search.schedule),
                (unsigned long long)r.col->evaluations,
                (unsigned long long)r.ev.evals_here, el, r.nranks,
                r.ev.busy_s / (nw * el), cpu, loop_ms, r.col->best_fitness,
                r.groups.g);
        log_slurm(r.log);
        fputc('}', r.log);
        if (jsonl_end(r.log))
            rc = abc_errf(err, ABC_EIO, "cannot write the search log");
        if (o->progress)
            fprintf(o->progress,
                    "search done: %llu evaluations in %.1fs (%.2f/s), workers "
                    "busy %.0f%% of the time, rank 0 CPU %.2fs (%.1f%% of a "
                    "core)\n",
                    (unsigned long long)r.ev.evals_here, el,
                    r.ev.evals_here / el, 100.0 * r.ev.busy_s / (nw * el), cpu,
                    100.0 * cpu / el);
    }
    /* after the done line: it describes the search's own evaluations */
    if (rc == 0) rc = final_choice(&r, err);
    if (rc == 0 && r.dat) {
        fclose(r.dat);
        r.dat = NULL;
        write_plot(&r, &oc);
    }
out:
    evaluator_shutdown(r.comm, rc == 0 ? "search done" : "search stopped");
    if (r.log) fclose(r.log);
    if (r.dat) fclose(r.dat);
    if (r.have_data) data_close(&r.data);
    rank_evaluator_free(&r.ev);
    eval_groups_free(&r.groups);
    free(r.res);
    free(r.fresh);
    colony_destroy(r.col);
    model_destroy(r.pre);
    return rc;
}

void search_release_workers(MPI_Comm comm)
{
    char *bytes = NULL;
    size_t len = 0;
    char err[ABC_ERRLEN];
    proto_bcast_bytes(comm, 0, &bytes, &len, err);
    free(bytes);
}

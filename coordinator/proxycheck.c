/* proxycheck.c - proxies against a short fine-tune (see proxycheck.h). */
#include "proxycheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "colony.h"
#include "core/err.h"
#include "core/fileio.h"
#include "core/rng.h"
#include "core/seeds.h"
#include "core/stats.h"
#include "evaluate.h"
#include "evaluator.h"
#include "plot.h"
#include "search.h"
#include "structure.h"
#include "transport.h"

#define NPROXY 2
static const char *const proxy_names[NPROXY] = {"train", "adaptive_bn"};
#define BOOTSTRAP 2000

/* Everything one proxycheck holds. */
struct pc {
    const struct config *c;
    struct config oc; /* out_dir = OUT/proxycheck */
    int n, r;         /* structures, reference seeds */
    int L;            /* prunable layers */
    int *ch;          /* n x L channels */
    int64_t *macs;    /* n */
    struct proto_eval_request *rq;
    struct proto_eval_result *res;
    int nreq, landed;
    double *proxy[NPROXY];         /* n values each */
    double *ref;                   /* n x r reference accuracies */
    double *ref_mean;              /* n */
    double proxy_s[NPROXY], ref_s; /* seconds per evaluation, mean */
    int failed;
    FILE *progress;
};

/* Request index of structure i's reference seed j / proxy p. */
static int req_ref(const struct pc *p, int i, int j)
{
    return i * (p->r + NPROXY) + j;
}

static int req_proxy(const struct pc *p, int i, int k)
{
    return i * (p->r + NPROXY) + p->r + k;
}

static int on_done(void *ctx, int k, const struct proto_eval_result *res,
                   char *err)
{
    (void)res;
    (void)err;
    struct pc *p = ctx;
    p->landed++;
    if (p->progress &&
        (p->landed % (p->r + NPROXY) == 0 || p->landed == p->nreq)) {
        fprintf(p->progress, "proxycheck: %d/%d evaluations done (last %d)\n",
                p->landed, p->nreq, k);
        fflush(p->progress);
    }
    return 0;
}

static double acc_of(const struct proto_eval_result *res)
{
    return res->ok ? res->val_acc : 0.0;
}

/* The structures: 0 the uniform cut (a code of equal entries), the rest
 * random codes of the search's space, all scaled to the target. */
static int make_structures(struct pc *p, const struct model *pre, char *err)
{
    const struct config *c = p->c;
    struct structure_map map;
    int rc = structure_map_init(&map, pre, p->L, c->prune.flops_target,
                                c->prune.min_channels, err);
    if (rc) return rc;
    int K = (int)lround(10.0 * c->search.alpha);
    if (K < 1) K = 1;
    int code[COLONY_MAX_LAYERS];
    for (int i = 0; i < p->n; i++) {
        struct rng g;
        rng_seed(&g, rng_derive(c->seed, SEED_PROXYCHECK, 3, (uint64_t)i));
        for (int j = 0; j < p->L; j++)
            code[j] = i == 0 ? K : 1 + (int)rng_below(&g, (uint64_t)K);
        if ((rc = structure_from_code(&map, code, p->ch + (size_t)i * p->L,
                                      &p->macs[i], NULL, err)))
            return rc;
    }
    return 0;
}

static void make_requests(struct pc *p)
{
    const struct config *c = p->c;
    struct proto_budget proxy_b[NPROXY], ref_b;
    for (int k = 0; k < NPROXY; k++) {
        proto_budget_from_config(&proxy_b[k], &c->search.fitness);
        proxy_b[k].proxy = k == 0 ? FITNESS_TRAIN : FITNESS_ADAPTIVE_BN;
    }
    /* the reference: a short fine-tune, scored on the whole validation
     * split */
    struct fitness_config f = c->search.fitness;
    f.proxy = FITNESS_TRAIN;
    f.train_images = c->proxycheck.train_images;
    f.val_images = 0;
    f.epochs = c->proxycheck.epochs;
    f.steps = 0;
    f.batch_size = c->finetune.batch_size;
    f.lr = c->finetune.lr;
    f.momentum = c->finetune.momentum;
    f.weight_decay = c->finetune.weight_decay;
    proto_budget_from_config(&ref_b, &f);
    for (int i = 0; i < p->n; i++) {
        for (int j = 0; j < p->r + NPROXY; j++) {
            int q = i * (p->r + NPROXY) + j;
            struct proto_eval_request *rq = &p->rq[q];
            memset(rq, 0, sizeof *rq);
            rq->eval_id = (uint64_t)q;
            rq->nlayers = p->L;
            memcpy(rq->structure, p->ch + (size_t)i * p->L,
                   sizeof(int) * (size_t)p->L);
            int is_ref = j < p->r;
            rq->budget = is_ref ? ref_b : proxy_b[j - p->r];
            /* common random numbers: every structure sees the same seeds */
            rq->seed =
                is_ref ? rng_derive(c->seed, SEED_PROXYCHECK, 2, (uint64_t)j)
                       : rng_derive(c->seed, SEED_PROXYCHECK, 1, 0);
            rq->candidate = i;
        }
    }
}

static void collect(struct pc *p)
{
    double ns[NPROXY] = {0}, nref = 0;
    for (int i = 0; i < p->n; i++) {
        double sum = 0;
        for (int j = 0; j < p->r; j++) {
            const struct proto_eval_result *res = &p->res[req_ref(p, i, j)];
            p->ref[i * p->r + j] = acc_of(res);
            sum += acc_of(res);
            p->failed += !res->ok;
            p->ref_s += res->wall_s;
            nref++;
        }
        p->ref_mean[i] = sum / p->r;
        for (int k = 0; k < NPROXY; k++) {
            const struct proto_eval_result *res = &p->res[req_proxy(p, i, k)];
            p->proxy[k][i] = acc_of(res);
            p->failed += !res->ok;
            p->proxy_s[k] += res->wall_s;
            ns[k]++;
        }
    }
    for (int k = 0; k < NPROXY; k++)
        p->proxy_s[k] /= ns[k] > 0 ? ns[k] : 1;
    p->ref_s /= nref > 0 ? nref : 1;
}

static int write_csv(const struct pc *p, char *err)
{
    char path[CONFIG_PATH_MAX + 64];
    if (search_path(path, sizeof path, &p->oc, "proxycheck.csv", err))
        return ABC_EVALUE;
    size_t cap = 4096 + (size_t)p->n * (200 + 8 * p->L + 12 * p->r);
    char *t = malloc(cap);
    if (!t) return abc_errf(err, ABC_ENOMEM, "out of memory");
    size_t len = (size_t)snprintf(t, cap, "structure,kind,macs");
    for (int k = 0; k < NPROXY; k++)
        len +=
            (size_t)snprintf(t + len, cap - len, ",proxy_%s", proxy_names[k]);
    for (int j = 0; j < p->r; j++)
        len += (size_t)snprintf(t + len, cap - len, ",reference_seed%d", j);
    len += (size_t)snprintf(t + len, cap - len, ",reference_mean,channels\n");
    for (int i = 0; i < p->n; i++) {
        len += (size_t)snprintf(t + len, cap - len, "%d,%s,%lld", i,
                                i == 0 ? "uniform" : "random",
                                (long long)p->macs[i]);
        for (int k = 0; k < NPROXY; k++)
            len +=
                (size_t)snprintf(t + len, cap - len, ",%.6f", p->proxy[k][i]);
        for (int j = 0; j < p->r; j++)
            len += (size_t)snprintf(t + len, cap - len, ",%.6f",
                                    p->ref[i * p->r + j]);
        len += (size_t)snprintf(t + len, cap - len, ",%.6f,", p->ref_mean[i]);
        for (int j = 0; j < p->L; j++)
            len += (size_t)snprintf(t + len, cap - len, j ? " %d" : "%d",
                                    p->ch[(size_t)i * p->L + j]);
        len += (size_t)snprintf(t + len, cap - len, "\n");
    }
    int rc = file_write_atomic(path, t, len, err);
    free(t);
    return rc;
}

/* The reference's variance between structures (of the means) and between
 * seeds (within a structure, averaged), both sample variances. */
static void variances(const struct pc *p, double *between, double *seed)
{
    double m = 0;
    for (int i = 0; i < p->n; i++)
        m += p->ref_mean[i];
    m /= p->n;
    *between = 0;
    for (int i = 0; i < p->n; i++)
        *between += (p->ref_mean[i] - m) * (p->ref_mean[i] - m);
    *between /= p->n - 1;
    *seed = NAN;
    if (p->r < 2) return;
    *seed = 0;
    for (int i = 0; i < p->n; i++) {
        double v = 0;
        for (int j = 0; j < p->r; j++) {
            double d = p->ref[i * p->r + j] - p->ref_mean[i];
            v += d * d;
        }
        *seed += v / (p->r - 1);
    }
    *seed /= p->n;
}

static int argmax(const double *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

static int write_md(const struct pc *p, const struct model *pre, FILE *out,
                    char *err)
{
    const struct config *c = p->c;
    char path[CONFIG_PATH_MAX + 64];
    if (search_path(path, sizeof path, &p->oc, "proxycheck.md", err))
        return ABC_EVALUE;
    char t[8192];
    int len = 0;
#define PUT(...) len += snprintf(t + len, sizeof t - (size_t)len, __VA_ARGS__)
    double lo_m = INFINITY, hi_m = 0;
    for (int i = 0; i < p->n; i++) {
        if (p->macs[i] < lo_m) lo_m = (double)p->macs[i];
        if (p->macs[i] > hi_m) hi_m = (double)p->macs[i];
    }
    PUT("# proxycheck: %s at %.0f %% of its FLOPs (%s)\n\n",
        arch_name(pre->arch), 100 * c->prune.flops_target, c->path);
    PUT("%d structures of the search's space at the target (the uniform cut "
        "and %d random shapes, %.3f-%.3fM MACs); reference: a %d-epoch "
        "fine-tune (lr %g, constant), %d seed%s, scored on the whole "
        "validation split.%s\n\n",
        p->n, p->n - 1, lo_m / 1e6, hi_m / 1e6, c->proxycheck.epochs,
        c->finetune.lr, p->r, p->r > 1 ? "s" : "",
        p->failed ? " Some evaluations failed and score 0." : "");
    PUT("| proxy | Kendall τ-b [95 %% CI] | Spearman ρ [95 %% CI] | s per "
        "evaluation | its pick − uniform (reference, points) |\n");
    PUT("|---|---|---|---|---|\n");
    int uni = 0;
    for (int k = 0; k < NPROXY; k++) {
        double tau = stats_kendall_tau_b(p->proxy[k], p->ref_mean, p->n);
        double rho = stats_spearman_rho(p->proxy[k], p->ref_mean, p->n);
        double tl, th, rl, rh;
        uint64_t bs = rng_derive(c->seed, SEED_PROXYCHECK, 4, (uint64_t)k);
        if (stats_bootstrap_ci(stats_kendall_tau_b, p->proxy[k], p->ref_mean,
                               p->n, BOOTSTRAP, bs, &tl, &th) ||
            stats_bootstrap_ci(stats_spearman_rho, p->proxy[k], p->ref_mean,
                               p->n, BOOTSTRAP, bs, &rl, &rh))
            return abc_errf(err, ABC_ENOMEM, "out of memory");
        int pick = argmax(p->proxy[k], p->n);
        PUT("| %s | %+.3f [%+.3f, %+.3f] | %+.3f [%+.3f, %+.3f] | %.2f | "
            "%+.2f (structure %d) |\n",
            proxy_names[k], tau, tl, th, rho, rl, rh, p->proxy_s[k],
            100 * (p->ref_mean[pick] - p->ref_mean[uni]), pick);
    }
    double vb, vs;
    variances(p, &vb, &vs);
    int best = argmax(p->ref_mean, p->n);
    int rank = 1;
    for (int i = 0; i < p->n; i++)
        rank += p->ref_mean[i] > p->ref_mean[uni];
    PUT("\nReference (%.2f s per evaluation): between-structure sd %.2f "
        "points, ",
        p->ref_s, 100 * sqrt(vb));
    if (isnan(vs))
        PUT("seed sd n/a (1 seed)");
    else
        PUT("seed sd %.2f points (between/seed variance %.2f)", 100 * sqrt(vs),
            vs > 0 ? vb / vs : INFINITY);
    PUT(".\nHeadroom: the best structure (%d) scores %+.2f points over the "
        "uniform cut, which ranks %d of %d.\n",
        best, 100 * (p->ref_mean[best] - p->ref_mean[uni]), rank, p->n);
    PUT("\nA proxy whose τ interval excludes 0 ranks structures as "
        "fine-tuning does; one that includes it cannot steer a search, and "
        "with little headroom or a seed sd near the between-structure sd no "
        "search can beat the uniform cut measurably at this target.\n");
#undef PUT
    if (len >= (int)sizeof t)
        return abc_errf(err, ABC_EVALUE, "proxycheck report too long");
    if (out) fputs(t, out);
    return file_write_atomic(path, t, (size_t)len, err);
}

/* proxycheck.png with gnuplot when it is installed (else a note). */
static void write_png(const struct pc *p)
{
    char dat[CONFIG_PATH_MAX + 64], png[CONFIG_PATH_MAX + 64], e[ABC_ERRLEN];
    if (search_path(dat, sizeof dat, &p->oc, "proxycheck.dat", e) ||
        search_path(png, sizeof png, &p->oc, "proxycheck.png", e))
        return;
    FILE *f = fopen(dat, "w");
    if (!f) return;
    fprintf(f, "# reference_mean proxy_train proxy_adaptive_bn (%%)\n");
    for (int i = 0; i < p->n; i++)
        fprintf(f, "%.4f %.4f %.4f\n", 100 * p->ref_mean[i],
                100 * p->proxy[0][i], 100 * p->proxy[1][i]);
    if (fclose(f) != 0) return;
    char script[4 * CONFIG_PATH_MAX + 1024];
    if (snprintf(script, sizeof script,
                 "set terminal pngcairo size 1000,450 noenhanced\n"
                 "set output '%s'\n"
                 "set multiplot layout 1,2 title 'proxies against a short "
                 "fine-tune (validation accuracy, %%)'\n"
                 "set grid\nset xlabel 'reference (fine-tune)'\n"
                 "set ylabel 'proxy: train'\n"
                 "plot '%s' using 1:2 with points pt 7 notitle\n"
                 "set ylabel 'proxy: adaptive_bn'\n"
                 "plot '%s' using 1:3 with points pt 7 notitle\n"
                 "unset multiplot\n",
                 png, dat, dat) < (int)sizeof script)
        plot_gnuplot(script, "proxycheck", p->progress);
}

int proxycheck_run(MPI_Comm comm, const struct config *c,
                   const volatile sig_atomic_t *stop, FILE *progress, FILE *out,
                   char *err)
{
    struct pc p;
    memset(&p, 0, sizeof p);
    p.c = c;
    p.progress = progress;
    p.n = c->proxycheck.structures;
    p.r = c->proxycheck.seeds;
    struct model *pre = NULL;
    struct data_splits data;
    struct rank_evaluator ev = {0};
    struct eval_groups gr = {.comm = MPI_COMM_NULL};
    struct eval_job *jobs = NULL;
    int have_data = 0, rc = 0;
    char base[CONFIG_PATH_MAX + 32];
    p.oc = *c;
    if (snprintf(p.oc.out_dir, sizeof p.oc.out_dir, "%s/%s", c->out_dir,
                 PROXYCHECK_DIR) >= (int)sizeof p.oc.out_dir)
        rc = abc_errf(err, ABC_EVALUE, "%s: out_dir path too long", c->path);
    else if (!(c->prune.flops_target > 0))
        rc = abc_errf(err, ABC_EVALUE,
                      "%s: prune.flops_target is 0: proxycheck compares "
                      "structures at one cost; set a target, e.g. --set "
                      "prune.flops_target=0.3",
                      c->path);
    if (rc)
        base[0] = '\0';
    else
        rc = search_path(base, sizeof base, c, SEARCH_BASELINE, err);
    /* every path broadcasts, so the workers never wait forever */
    char e2[ABC_ERRLEN];
    int brc =
        evaluator_share_baseline(comm, c, rc ? "" : base, &pre, rc ? e2 : err);
    if (!rc) rc = brc;
    if (rc) goto out;
    /* collective with the workers', right after the baseline */
    if ((rc = eval_groups_make(comm, c, &gr, err))) goto out;
    p.L = pre->nprunable;
    p.nreq = p.n * (p.r + NPROXY);
    p.ch = malloc(sizeof(int) * (size_t)p.n * p.L);
    p.macs = malloc(sizeof(int64_t) * (size_t)p.n);
    p.rq = malloc(sizeof *p.rq * (size_t)p.nreq);
    p.res = calloc((size_t)p.nreq, sizeof *p.res);
    p.ref = malloc(sizeof(double) * (size_t)p.n * p.r);
    p.ref_mean = malloc(sizeof(double) * (size_t)p.n);
    for (int k = 0; k < NPROXY; k++)
        p.proxy[k] = malloc(sizeof(double) * (size_t)p.n);
    if (!p.ch || !p.macs || !p.rq || !p.res || !p.ref || !p.ref_mean ||
        !p.proxy[0] || !p.proxy[1]) {
        rc = abc_errf(err, ABC_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = make_structures(&p, pre, err))) {
        abc_errprefix(err, rc, "%s", c->path);
        goto out;
    }
    make_requests(&p);
    if ((rc = file_make_dirs(p.oc.out_dir, err))) goto out;
    int nranks = 1;
    if ((rc = proto_comm_info(comm, NULL, &nranks, err))) goto out;
    if (nranks == 1) {
        if ((rc = data_open(&data, c, 0, err))) goto out;
        have_data = 1;
    }
    enum filter_init how = (enum filter_init)c->search.filter_init;
    if ((rc = rank_evaluator_init(&ev, comm, &gr, pre, how,
                                  have_data ? &data : NULL, stop,
                                  progress ? progress : stderr, err)))
        goto out;
    if (!(jobs = calloc((size_t)p.nreq, sizeof *jobs))) {
        rc = abc_errf(err, ABC_ENOMEM, "out of memory");
        goto out;
    }
    for (int q = 0; q < p.nreq; q++)
        jobs[q].rq = &p.rq[q];
    if (progress)
        fprintf(progress,
                "proxycheck: %s, %d structures at %.0f%% FLOPs, %d proxies + "
                "%d reference seed%s each: %d evaluations on %d worker%s\n",
                arch_name(pre->arch), p.n, 100 * c->prune.flops_target, NPROXY,
                p.r, p.r > 1 ? "s" : "", p.nreq, nranks > 1 ? nranks - 1 : 1,
                nranks > 2 ? "s" : "");
    if ((rc = evaluator_run(&ev.base, jobs, p.nreq, p.res, on_done, &p, err)))
        goto out;
    collect(&p);
    if ((rc = write_csv(&p, err)) || (rc = write_md(&p, pre, out, err)))
        goto out;
    write_png(&p);
out:
    evaluator_shutdown(comm,
                       rc == 0 ? "proxycheck done" : "proxycheck stopped");
    if (have_data) data_close(&data);
    rank_evaluator_free(&ev);
    eval_groups_free(&gr);
    free(jobs);
    model_destroy(pre);
    free(p.ch);
    free(p.macs);
    free(p.rq);
    free(p.res);
    free(p.ref);
    free(p.ref_mean);
    for (int k = 0; k < NPROXY; k++)
        free(p.proxy[k]);
    return rc;
}

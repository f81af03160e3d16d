/* simulate.c - the search on a virtual clock (see simulate.h): the fields
 * of search.jsonl the model needs (read with cJSON), the cost-model fits,
 * and the virtual clock: an evaluator (evaluator.h) whose slots are
 * virtual workers, driven by the same scheduling loops as the search. */
#include "simulate.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/rng.h"
#include "core/seeds.h"
#include "evaluator.h"
#include "pipeline.h"
#include "search.h"

/* ---- the search log, read with cJSON ---- */

/* The reader's context for error messages: file and line. */
struct where {
    const char *path;
    long line;
};

static int field_err(const struct where *w, const char *key, const char *what,
                     char *err)
{
    return abc_errf(err, ABC_EFORMAT, "%s:%ld: field \"%s\": %s", w->path,
                    w->line, key, what);
}

/* The field key of object o, or NULL after an error naming it missing. */
static const cJSON *field(const cJSON *o, const char *key,
                          const struct where *w, char *err)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!x) field_err(w, key, "missing", err);
    return x;
}

static int get_num(const cJSON *o, const char *key, const struct where *w,
                   double *v, char *err)
{
    const cJSON *x = field(o, key, w, err);
    if (!x) return ABC_EFORMAT;
    if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble))
        return field_err(w, key, "expected a finite number", err);
    *v = x->valuedouble;
    return 0;
}

/* A number that must be >= lo. */
static int get_num_min(const cJSON *o, const char *key, const struct where *w,
                       double lo, double *v, char *err)
{
    int rc = get_num(o, key, w, v, err);
    if (rc) return rc;
    if (*v < lo) {
        char what[64];
        snprintf(what, sizeof what, "%g is below %g", *v, lo);
        return field_err(w, key, what, err);
    }
    return 0;
}

/* A non-negative integer below 2^53 (exact in a double). */
static int get_count(const cJSON *o, const char *key, const struct where *w,
                     double *v, char *err)
{
    int rc = get_num_min(o, key, w, 0, v, err);
    if (rc) return rc;
    if (*v != floor(*v) || *v > 9007199254740992.0)
        return field_err(w, key, "expected a non-negative integer", err);
    return 0;
}

/* An unsigned 64-bit integer, as the nearest double (cJSON reads every
 * number as a double; seeds are compared as doubles, see sim_log). */
static int get_u64(const cJSON *o, const char *key, const struct where *w,
                   double *v, char *err)
{
    const cJSON *x = field(o, key, w, err);
    if (!x) return ABC_EFORMAT;
    if (!cJSON_IsNumber(x) || !(x->valuedouble >= 0) ||
        x->valuedouble != floor(x->valuedouble) ||
        x->valuedouble > 18446744073709551616.0) /* 2^64-1 rounds up */
        return field_err(w, key, "expected an unsigned 64-bit integer", err);
    *v = x->valuedouble;
    return 0;
}

static int get_str(const cJSON *o, const char *key, const struct where *w,
                   char *buf, size_t size, char *err)
{
    const cJSON *x = field(o, key, w, err);
    if (!x) return ABC_EFORMAT;
    if (!cJSON_IsString(x) || strlen(x->valuestring) >= size)
        return field_err(w, key, "expected a short string", err);
    memcpy(buf, x->valuestring, strlen(x->valuestring) + 1);
    return 0;
}

/* An array of integers into out[0..max); *n entries. */
static int get_ints(const cJSON *o, const char *key, const struct where *w,
                    int *out, int max, int *n, char *err)
{
    const cJSON *x = field(o, key, w, err);
    if (!x) return ABC_EFORMAT;
    if (!cJSON_IsArray(x)) return field_err(w, key, "expected an array", err);
    *n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, x)
    {
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) ||
            fabs(e->valuedouble) > 1e9)
            return field_err(w, key, "expected an array of integers", err);
        if (*n == max) return field_err(w, key, "too many entries", err);
        out[(*n)++] = (int)e->valuedouble;
    }
    return 0;
}

static int phase_parse(const char *name, int *ph)
{
    static const char *const names[] = {"init", "employed", "onlooker",
                                        "scout"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) return *ph = i, 0;
    return -1;
}

static int log_grow(struct sim_log *g)
{
    int cap = g->cap ? 2 * g->cap : 64;
    int *codes = realloc(g->codes, sizeof(int) * (size_t)cap * g->nlayers);
    if (!codes) return -1;
    g->codes = codes;
    int64_t *fl = realloc(g->flops, sizeof(int64_t) * cap);
    if (!fl) return -1;
    g->flops = fl;
    double *sec = realloc(g->seconds, sizeof(double) * cap);
    if (!sec) return -1;
    g->seconds = sec;
    double *ips = realloc(g->ips, sizeof(double) * cap);
    if (!ips) return -1;
    g->ips = ips;
    double *fit = realloc(g->fitness, sizeof(double) * cap);
    if (!fit) return -1;
    g->fitness = fit;
    double *sd = realloc(g->seed, sizeof(double) * cap);
    if (!sd) return -1;
    g->seed = sd;
    int *ph = realloc(g->phase, sizeof(int) * cap);
    if (!ph) return -1;
    g->phase = ph;
    int *cy = realloc(g->cycle, sizeof(int) * cap);
    if (!cy) return -1;
    g->cycle = cy;
    g->cap = cap;
    return 0;
}

/* One eval line into g. */
static int read_eval(struct sim_log *g, const cJSON *f, const struct where *w,
                     char *err)
{
    int code[COLONY_MAX_LAYERS], n = 0, rc;
    double flops, sec, fit, cyc, seed = 0;
    char ph[16];
    int phase;
    if ((rc = get_ints(f, "code", w, code, COLONY_MAX_LAYERS, &n, err)))
        return rc;
    if (n == 0) return field_err(w, "code", "empty", err);
    for (int j = 0; j < n; j++)
        if (code[j] < 1 || code[j] > 10)
            return field_err(w, "code", "entries must be in 1..10", err);
    if (g->nlayers == 0) g->nlayers = n;
    if (n != g->nlayers) {
        char what[96];
        snprintf(what, sizeof what, "%d entries, earlier lines have %d", n,
                 g->nlayers);
        return field_err(w, "code", what, err);
    }
    if ((rc = get_count(f, "flops", w, &flops, err)) ||
        (rc = get_num_min(f, "seconds", w, 0, &sec, err)) ||
        (rc = get_num_min(f, "fitness", w, 0, &fit, err)) ||
        (rc = get_count(f, "cycle", w, &cyc, err)) ||
        (rc = get_u64(f, "seed", w, &seed, err)) ||
        (rc = get_str(f, "phase", w, ph, sizeof ph, err)))
        return rc;
    if (fit > 1) return field_err(w, "fitness", "above 1", err);
    if (cyc > COLONY_MAX_CYCLES) return field_err(w, "cycle", "too large", err);
    if (phase_parse(ph, &phase))
        return field_err(w, "phase",
                         "expected init, employed, onlooker or scout", err);
    if (g->n == g->cap && log_grow(g))
        return abc_errf(err, ABC_ENOMEM, "%s: out of memory", w->path);
    int i = g->n++;
    memcpy(g->codes + (size_t)i * g->nlayers, code, sizeof(int) * n);
    g->flops[i] = (int64_t)flops;
    g->seconds[i] = sec;
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(f, "images_per_s");
    g->ips[i] =
        cJSON_IsNumber(x) && isfinite(x->valuedouble) && x->valuedouble > 0
            ? x->valuedouble
            : 0; /* optional: older logs, failed evaluations */
    g->fitness[i] = fit;
    g->seed[i] = seed;
    g->phase[i] = phase;
    g->cycle[i] = (int)cyc;
    return 0;
}

static int read_done(struct sim_log *g, const cJSON *f, const struct where *w,
                     char *err)
{
    char sched[16];
    double ev, here, el, ranks, busy, cpu;
    int rc;
    if ((rc = get_str(f, "schedule", w, sched, sizeof sched, err)) ||
        (rc = get_count(f, "evaluations", w, &ev, err)) ||
        (rc = get_count(f, "evaluated_here", w, &here, err)) ||
        (rc = get_num_min(f, "elapsed_s", w, 0, &el, err)) ||
        (rc = get_count(f, "ranks", w, &ranks, err)) ||
        (rc = get_num_min(f, "worker_busy", w, 0, &busy, err)) ||
        (rc = get_num_min(f, "rank0_cpu_s", w, 0, &cpu, err)))
        return rc;
    if (strcmp(sched, "sync") != 0 && strcmp(sched, "async") != 0)
        return field_err(w, "schedule", "expected sync or async", err);
    if (ranks < 1 || ranks > 1e7)
        return field_err(w, "ranks", "expected 1 or more", err);
    g->has_done = 1;
    g->async = sched[0] == 'a';
    g->ranks = (int)ranks;
    g->evaluations = (uint64_t)ev;
    g->evaluated_here = (uint64_t)here;
    g->elapsed_s = el;
    g->worker_busy = busy;
    g->rank0_cpu_s = cpu;
    g->ranks_per_eval = 1;
    if (cJSON_GetObjectItemCaseSensitive(f, "ranks_per_eval")) {
        double rpe;
        if ((rc = get_count(f, "ranks_per_eval", w, &rpe, err))) return rc;
        if (rpe < 1 || rpe > ranks)
            return field_err(w, "ranks_per_eval", "expected 1..ranks", err);
        g->ranks_per_eval = (int)rpe;
    }
    return 0;
}

/* The cycle 0 line: where the start-up and the init batch end. */
static int read_cycle(struct sim_log *g, const cJSON *f, const struct where *w,
                      char *err)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(f, "cycle");
    if (!cJSON_IsNumber(c) || c->valuedouble != 0 || g->has_start) return 0;
    double el;
    int rc = get_num_min(f, "elapsed_s", w, 0, &el, err);
    if (rc) return rc;
    g->has_start = 1;
    g->start_n = g->n;
    g->start_s = el;
    return 0;
}

int sim_log_read(const char *path, struct sim_log **out, char *err)
{
    *out = NULL;
    FILE *fp = fopen(path, "r");
    if (!fp)
        return abc_errf(err, ABC_EIO, "%s: cannot open the search log: %s",
                        path, strerror(errno));
    struct sim_log *g = calloc(1, sizeof *g);
    if (!g) {
        fclose(fp);
        return abc_errf(err, ABC_ENOMEM, "out of memory");
    }
    snprintf(g->path, sizeof g->path, "%s", path);
    struct where w = {path, 0};
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (getline(&line, &cap, fp) != -1) {
        w.line++;
        const char *s = line;
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
            s++;
        if (*s == '\0') continue; /* blank line */
        if (*s != '{') {
            rc = abc_errf(err, ABC_EFORMAT, "%s:%ld:%d: expected a JSON object",
                          path, w.line, (int)(s - line) + 1);
            break;
        }
        const char *end = NULL;
        cJSON *f = cJSON_ParseWithOpts(line, &end, 0);
        if (!f) {
            const char *at = cJSON_GetErrorPtr();
            int col = at && at >= line ? (int)(at - line) + 1 : 1;
            rc = abc_errf(err, ABC_EFORMAT, "%s:%ld:%d: not valid JSON", path,
                          w.line, col);
            break;
        }
        const char *t = end;
        while (*t == ' ' || *t == '\t' || *t == '\r' || *t == '\n')
            t++;
        if (*t) {
            rc = abc_errf(err, ABC_EFORMAT, "%s:%ld:%d: text after the object",
                          path, w.line, (int)(t - line) + 1);
        } else {
            char event[16];
            rc = get_str(f, "event", &w, event, sizeof event, err);
            if (!rc && strcmp(event, "eval") == 0)
                rc = read_eval(g, f, &w, err);
            else if (!rc && strcmp(event, "done") == 0)
                rc = read_done(g, f, &w, err);
            else if (!rc && strcmp(event, "cycle") == 0)
                rc = read_cycle(g, f, &w, err);
        }
        cJSON_Delete(f);
        if (rc) break;
    }
    if (!rc && ferror(fp)) rc = abc_errf(err, ABC_EIO, "%s: read error", path);
    if (!rc && g->n == 0)
        rc = abc_errf(err, ABC_EFORMAT,
                      "%s: no \"eval\" line: not a search log", path);
    free(line);
    fclose(fp);
    if (rc) {
        sim_log_destroy(g);
        return rc;
    }
    *out = g;
    return 0;
}

void sim_log_destroy(struct sim_log *g)
{
    if (!g) return;
    free(g->codes);
    free(g->flops);
    free(g->seconds);
    free(g->ips);
    free(g->fitness);
    free(g->seed);
    free(g->phase);
    free(g->cycle);
    free(g);
}

/* ---- the cost model ---- */

static double cost_predict(const struct sim_cost *c, double flops)
{
    double t = c->a + c->b * flops;
    return t > c->min_s ? t : c->min_s;
}

int sim_cost_fit(const struct sim_log *g, struct sim_cost *c, char *err)
{
    memset(c, 0, sizeof *c);
    double mx = 0, my = 0;
    for (int i = 0; i < g->n; i++) {
        mx += (double)g->flops[i];
        my += g->seconds[i];
    }
    mx /= g->n;
    my /= g->n;
    if (!(my > 0))
        return abc_errf(err, ABC_EVALUE,
                        "%s: every evaluation took 0 seconds: no cost to fit",
                        g->path);
    double sxx = 0, sxy = 0;
    for (int i = 0; i < g->n; i++) {
        double dx = (double)g->flops[i] - mx;
        sxx += dx * dx;
        sxy += dx * (g->seconds[i] - my);
    }
    c->b = sxx > 0 ? sxy / sxx : 0;
    c->a = my - c->b * mx;
    c->min_s = 0.01 * my;
    c->res = malloc(sizeof(double) * g->n);
    if (!c->res) return abc_errf(err, ABC_ENOMEM, "out of memory");
    c->nres = g->n;
    for (int i = 0; i < g->n; i++)
        c->res[i] = g->seconds[i] / cost_predict(c, (double)g->flops[i]);
    return 0;
}

void sim_cost_free(struct sim_cost *c)
{
    free(c->res);
    c->res = NULL;
    c->nres = 0;
}

/* ---- virtual workers ---- */

/* A min-heap of (time, worker): the workers' next free (or finish) times. */
struct heap {
    int n;
    double *t;
    int *w;
};

static int heap_less(const struct heap *h, int i, int j)
{
    return h->t[i] < h->t[j] || (h->t[i] == h->t[j] && h->w[i] < h->w[j]);
}

static void heap_swap(struct heap *h, int i, int j)
{
    double t = h->t[i];
    h->t[i] = h->t[j];
    h->t[j] = t;
    int w = h->w[i];
    h->w[i] = h->w[j];
    h->w[j] = w;
}

static void heap_push(struct heap *h, double t, int w)
{
    int i = h->n++;
    h->t[i] = t;
    h->w[i] = w;
    while (i > 0 && heap_less(h, i, (i - 1) / 2)) {
        heap_swap(h, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_pop(struct heap *h, double *t, int *w)
{
    *t = h->t[0];
    *w = h->w[0];
    h->n--;
    if (h->n == 0) return;
    h->t[0] = h->t[h->n];
    h->w[0] = h->w[h->n];
    for (int i = 0;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && heap_less(h, l, m)) m = l;
        if (r < h->n && heap_less(h, r, m)) m = r;
        if (m == i) break;
        heap_swap(h, i, m);
        i = m;
    }
}

static int heap_init(struct heap *h, int cap)
{
    h->n = 0;
    h->t = malloc(sizeof(double) * (cap > 0 ? cap : 1));
    h->w = malloc(sizeof(int) * (cap > 0 ? cap : 1));
    return h->t && h->w ? 0 : -1;
}

static void heap_free(struct heap *h)
{
    free(h->t);
    free(h->w);
}

/* The evaluation slots of the log's run: its workers, or their groups. */
static int log_workers(const struct sim_log *g)
{
    int w = g->ranks > 1 ? g->ranks - 1 : 1;
    int per = g->ranks_per_eval > 1 ? g->ranks_per_eval : 1;
    return w / per > 0 ? w / per : 1;
}

/* ---- the simulated search ---- */

/* What one candidate costs and scores. */
struct sim_eval {
    double dur;     /* busy seconds */
    double fitness; /* the surrogate's */
};

/* MACs of code's structure (as the search maps it; its parameters into
 * *params when not NULL), or a negative error. */
static int64_t code_macs(const struct sim_setup *s, const int *code,
                         int64_t *params, char *err)
{
    struct structure_map plain;
    const struct structure_map *map = s->map;
    int ch[COLONY_MAX_LAYERS];
    int64_t macs;
    if (!map) {
        int rc = structure_map_init(&plain, s->pre, s->p.nlayers, 0, 1, err);
        if (rc) return rc;
        map = &plain;
    }
    int rc = structure_from_code(map, code, ch, &macs, params, err);
    return rc ? rc : macs;
}

/* The surrogate fitness of code evaluated with seed (see simulate.h). */
static double surrogate_fitness(const struct sim_log *g, const int *code,
                                uint64_t seed, int L)
{
    long best = -1;
    double sum = 0;
    int count = 0;
    for (int i = 0; i < g->n; i++) {
        const int *x = g->codes + (size_t)i * L;
        long d = 0;
        for (int j = 0; j < L && (best < 0 || d <= best); j++)
            d += labs((long)x[j] - code[j]);
        if (d == 0 && g->seed[i] == (double)seed) return g->fitness[i];
        if (best < 0 || d < best) best = d, sum = 0, count = 0;
        if (d == best) sum += g->fitness[i], count++;
    }
    return sum / count;
}

static int eval_candidate(const struct sim_setup *s, const struct candidate *cd,
                          struct sim_eval *e, char *err)
{
    int64_t params = 0;
    int64_t macs = code_macs(s, cd->code, &params, err);
    if (macs < 0) return (int)macs;
    double m = 1;
    if (s->cost->nres > 0) {
        struct rng r;
        rng_seed(&r, rng_derive(s->seed, SEED_RESIDUAL, cd->eval_id, 0));
        m = s->cost->res[rng_below(&r, (uint64_t)s->cost->nres)];
    }
    e->dur = cost_predict(s->cost, (double)macs) * m;
    int g = s->group > 1 ? s->group : 1;
    if (g > 1)
        e->dur =
            e->dur * (s->train_frac / (g * (s->dp_eff > 0 ? s->dp_eff : 1)) +
                      1 - s->train_frac) +
            s->steps * (s->ar_alpha * ceil(log2((double)g)) +
                        s->ar_beta * 4.0 * (double)params * 2.0 * (g - 1) / g);
    e->fitness = surrogate_fitness(s->log, cd->code, cd->seed, s->p.nlayers);
    return 0;
}

/* The virtual clock: an evaluator (evaluator.h) whose slots are virtual
 * workers. A submitted candidate costs the overhead per dispatch plus its
 * predicted (or, replaying a log, logged) seconds from now on; waiting advances
 * the clock to the first finish (the lower slot on ties) and returns the
 * surrogate fitness as the result's val_acc. */
struct vclock {
    struct evaluator base;
    const struct sim_setup *s; /* the cost model and fitness surrogate */
    const double *replay_s;    /* instead: seconds of eval_id k (a log) */
    double o;                  /* seconds per dispatch */
    struct heap h;             /* (finish time, slot) of the busy slots */
    double now;                /* virtual seconds */
    double busy_s;             /* evaluation seconds over all slots */
    struct sim_eval *slot;     /* per slot: what it is evaluating */
    uint64_t *id;              /* per slot: its eval_id */
};

static int vclock_submit(struct evaluator *base, int slot,
                         const struct eval_job *job, char *err)
{
    struct vclock *v = (struct vclock *)base;
    if (!job->cd)
        return abc_errf(err, ABC_EVALUE, "simulate: a job without a candidate");
    if (v->replay_s) {
        v->slot[slot].dur = v->replay_s[job->cd->eval_id];
        v->slot[slot].fitness = 0;
    } else {
        int rc = eval_candidate(v->s, job->cd, &v->slot[slot], err);
        if (rc) return rc;
    }
    v->id[slot] = job->cd->eval_id;
    v->busy_s += v->slot[slot].dur;
    heap_push(&v->h, v->now + v->o + v->slot[slot].dur, slot);
    return 0;
}

static int vclock_wait(struct evaluator *base, int *slot,
                       struct proto_eval_result *res, char *err)
{
    struct vclock *v = (struct vclock *)base;
    if (v->h.n == 0)
        return abc_errf(err, ABC_EVALUE, "simulate: nothing to wait for");
    heap_pop(&v->h, &v->now, slot);
    memset(res, 0, sizeof *res);
    res->ok = 1;
    res->eval_id = v->id[*slot];
    res->worker = *slot + 1;
    res->val_acc = v->slot[*slot].fitness;
    res->wall_s = v->slot[*slot].dur;
    return 0;
}

static const struct evaluator_ops vclock_ops = {vclock_submit, vclock_wait};

static int vclock_init(struct vclock *v, int slots)
{
    v->base.ops = &vclock_ops;
    v->base.slots = slots;
    v->slot = malloc(sizeof *v->slot * (size_t)slots);
    v->id = malloc(sizeof *v->id * (size_t)slots);
    return v->slot && v->id && !heap_init(&v->h, slots) ? 0 : ABC_ENOMEM;
}

static void vclock_free(struct vclock *v)
{
    heap_free(&v->h);
    free(v->slot);
    free(v->id);
}

/* Best fitness per finished cycle: r->best[k] once col->cycle reached k
 * (init counts as cycle 0, done once the init batch is applied). */
static void note_cycles(const struct colony *col, struct sim_result *r,
                        int *logged)
{
    if (!col->has_best) return;
    if (*logged < 0) r->best[++*logged] = col->best_fitness;
    while (*logged < col->cycle && *logged + 1 < r->ncycles)
        r->best[++*logged] = col->best_fitness;
}

double sim_replay_wall(const struct sim_log *g, double o)
{
    struct vclock v = {.replay_s = g->seconds, .o = o};
    size_t m = (size_t)(g->n > 0 ? g->n : 1);
    struct candidate *cd = calloc(m, sizeof *cd);
    struct eval_job *jobs = calloc(m, sizeof *jobs);
    char err[ABC_ERRLEN];
    int rc = vclock_init(&v, log_workers(g));
    if (!cd || !jobs) rc = ABC_ENOMEM;
    for (int i = 0; i < g->n && !rc; i++) {
        cd[i].eval_id = (uint64_t)i; /* the log line */
        jobs[i].cd = &cd[i];
    }
    /* the batches as the search ran them: each sync phase, or the async
     * init batch and then the steady state as one queue */
    for (int i = g->has_start ? g->start_n : 0; i < g->n && !rc;) {
        int j = i + 1;
        if (g->async && g->phase[i] != COLONY_INIT)
            j = g->n;
        else
            while (j < g->n && g->phase[j] == g->phase[i] &&
                   g->cycle[j] == g->cycle[i])
                j++;
        rc = evaluator_run(&v.base, jobs + i, j - i, NULL, NULL, NULL, err);
        i = j;
    }
    vclock_free(&v);
    free(cd);
    free(jobs);
    return rc ? NAN : v.now;
}

int sim_overhead_fit(const struct sim_log *g, double *o, char *err)
{
    *o = 0;
    if (!g->has_done)
        return abc_errf(err, ABC_EVALUE,
                        "%s: no \"done\" line (an unfinished search): give "
                        "the overhead per dispatch yourself",
                        g->path);
    if (g->evaluated_here != (uint64_t)g->n)
        return abc_errf(err, ABC_EVALUE,
                        "%s: %d eval lines but the done line says %llu "
                        "evaluations in its session (a resumed search): give "
                        "the overhead per dispatch yourself",
                        g->path, g->n, (unsigned long long)g->evaluated_here);
    double want = g->elapsed_s - (g->has_start ? g->start_s : 0);
    if (!(want > 0) || sim_replay_wall(g, 0) >= want) return 0;
    double lo = 0, hi = want;
    while (sim_replay_wall(g, hi) < want)
        hi *= 2; /* monotone in o */
    for (int it = 0; it < 100 && hi - lo > 1e-9 * (1 + hi); it++) {
        double mid = 0.5 * (lo + hi);
        if (sim_replay_wall(g, mid) < want)
            lo = mid;
        else
            hi = mid;
    }
    *o = 0.5 * (lo + hi);
    return 0;
}

/* What the simulated search does with results. */
struct sim_ctx {
    struct colony *col;
    struct sim_result *r;
    int logged; /* cycles noted in r->best */
};

static int sim_batch_done(void *ctx, int i, const struct proto_eval_result *res,
                          char *err)
{
    struct sim_ctx *x = ctx;
    return colony_record(x->col, i, res->val_acc, err);
}

static int sim_issued(void *ctx, char *err)
{
    struct sim_ctx *x = ctx;
    (void)err;
    note_cycles(x->col, x->r, &x->logged); /* skipped scouts end cycles */
    return 0;
}

static int sim_take(void *ctx, const struct candidate *cd,
                    const struct proto_eval_result *res, char *err)
{
    struct sim_ctx *x = ctx;
    int rc = colony_async_apply(x->col, cd->eval_id, res->val_acc, err);
    if (!rc) note_cycles(x->col, x->r, &x->logged);
    return rc;
}

/* The sync phases (all of them, or with init_only the init batch), each
 * through evaluator_run as search.c's sync_step runs it. */
static int run_sync(struct vclock *v, struct sim_ctx *x, int init_only,
                    char *err)
{
    struct colony *col = x->col;
    struct eval_job *jobs = malloc(sizeof *jobs * (size_t)(col->p.sn + 1));
    int rc = jobs ? 0 : abc_errf(err, ABC_ENOMEM, "out of memory");
    while (!rc && !colony_done(col) &&
           (!init_only || col->phase == COLONY_INIT)) {
        const struct candidate *batch;
        int n;
        if ((rc = colony_next_batch(col, &batch, &n, err))) break;
        for (int i = 0; i < n; i++)
            jobs[i] = (struct eval_job){.rq = NULL, .cd = &batch[i]};
        if ((rc = evaluator_run(&v->base, jobs, n, NULL, sim_batch_done, x,
                                err)) ||
            (rc = colony_apply(col, NULL, err)))
            break;
        note_cycles(col, x->r, &x->logged);
    }
    free(jobs);
    return rc;
}

/* The async steady state after the init batch, as search.c's async_run. */
static int run_async(struct vclock *v, struct sim_ctx *x, char *err)
{
    int rc = colony_async_begin(x->col, err);
    if (rc) return rc;
    note_cycles(x->col, x->r, &x->logged);
    static const struct evaluator_async_hooks hooks = {NULL, sim_issued,
                                                       sim_take};
    if ((rc = evaluator_run_async(&v->base, x->col, &hooks, x, err))) return rc;
    if (!colony_done(x->col))
        return abc_errf(err, ABC_EVALUE,
                        "simulated async search: nothing in flight, but not "
                        "done (cycle %d)",
                        x->col->cycle);
    return 0;
}

int sim_run(const struct sim_setup *s, int workers, int async,
            struct sim_result *r, char *err)
{
    memset(r, 0, sizeof *r);
    if (workers < 1)
        return abc_errf(err, ABC_EVALUE, "simulate: %d workers, need 1 or more",
                        workers);
    if (s->log->nlayers != s->p.nlayers)
        return abc_errf(err, ABC_EVALUE,
                        "%s: codes of %d layers, the model has %d prunable "
                        "layers: a log of another model",
                        s->log->path, s->log->nlayers, s->p.nlayers);
    int g = s->group > 1 ? s->group : 1;
    if (workers < g)
        return abc_errf(err, ABC_EVALUE,
                        "simulate: %d workers cannot form a group of %d "
                        "(search.ranks_per_eval)",
                        workers, g);
    r->workers = workers;
    r->async = async;
    r->ncycles = s->p.max_cycles + 1;
    r->best = calloc((size_t)r->ncycles, sizeof(double));
    if (!r->best) return abc_errf(err, ABC_ENOMEM, "out of memory");
    struct vclock v = {.s = s, .o = s->cost->overhead};
    struct sim_ctx x = {.r = r, .logged = -1};
    int rc = 0;
    if (vclock_init(&v, workers / g)) { /* a slot per group */
        rc = abc_errf(err, ABC_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = colony_create(&x.col, &s->p, err))) goto out;
    rc = run_sync(&v, &x, async, err);
    if (!rc && async && !colony_done(x.col)) rc = run_async(&v, &x, err);
    if (rc) goto out;
    struct colony *col = x.col;
    double t = v.now;
    r->busy_s = v.busy_s;
    r->wall_s = t;
    r->evaluations = col->evaluations;
    r->util = t > 0 ? r->busy_s * g / (workers * t) : 0; /* rank-seconds */
    r->evals_per_s = t > 0 ? (double)r->evaluations / t : 0;
    r->best_fitness = col->best_fitness;
    int64_t macs = code_macs(s, col->best_code, NULL, err);
    if (macs < 0) {
        rc = (int)macs;
        goto out;
    }
    r->best_flops = macs;
out:
    vclock_free(&v);
    colony_destroy(x.col);
    if (rc) sim_result_free(r);
    return rc;
}

void sim_result_free(struct sim_result *r)
{
    free(r->best);
    r->best = NULL;
}

/* ---- the subcommand's work ---- */

/* The group size for W workers: o's, else the config's, else (0, auto)
 * floor(W / sn), at least 1. */
static int group_of(const struct config *c, const struct sim_opts *o, int W)
{
    int g = o->group > 0 ? o->group : c->search.ranks_per_eval;
    if (g == 0) g = W / (c->search.sn > 0 ? c->search.sn : 1);
    return g > 1 ? g : 1;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The group model's inputs (see sim_setup): the share of an evaluation
 * the group splits, the median over the log of ((images trained + a third
 * of the images validated) / images per second) / seconds; the gradient sums
 * per evaluation from the fitness budget; the alpha-beta cost from o. */
static int group_model(struct sim_setup *s, const struct config *c,
                       const struct sim_opts *o, const struct sim_log *g,
                       FILE *progress, char *err)
{
    const struct fitness_config *f = &c->search.fitness;
    s->ar_alpha = o->ar_alpha;
    s->ar_beta = o->ar_beta;
    s->dp_eff = o->dp_eff > 0 ? o->dp_eff : 1;
    int per_epoch = f->train_images > 0
                        ? (f->train_images + f->batch_size - 1) / f->batch_size
                        : 0;
    s->steps =
        f->steps > 0 ? f->steps : per_epoch * (f->epochs > 0 ? f->epochs : 1);
    double images = f->steps > 0 ? (double)f->steps * f->batch_size
                                 : (double)(f->epochs > 0 ? f->epochs : 1) *
                                       f->train_images;
    /* validation is split over the group too: its images, at a third of a
     * training image's cost (forward only) */
    double val = f->val_images > 0 && f->val_images < c->data.val_size
                     ? f->val_images
                     : c->data.val_size;
    double *frac = malloc(sizeof(double) * (size_t)(g->n > 0 ? g->n : 1));
    if (!frac) return abc_errf(err, ABC_ENOMEM, "out of memory");
    int n = 0;
    for (int i = 0; i < g->n; i++)
        if (g->ips[i] > 0 && g->seconds[i] > 0 && images > 0) {
            double x = (images + val / 3) / g->ips[i] / g->seconds[i];
            frac[n++] = x < 1 ? x : 1;
        }
    qsort(frac, (size_t)n, sizeof *frac, cmp_double);
    s->train_frac = n ? frac[n / 2] : 1; /* no data: all of it scales */
    free(frac);
    if (f->proxy == FITNESS_ADAPTIVE_BN) s->train_frac = 0, s->steps = 0;
    if (progress && o->have_ar)
        fprintf(progress,
                "simulate: groups: training + validation %.0f%% of an "
                "evaluation (median "
                "of %d logged), at %.0f%% parallel efficiency; %d gradient "
                "sums per evaluation at %.3g s + %.3g s/MB\n",
                100 * s->train_frac, n, 100 * s->dp_eff, s->steps, s->ar_alpha,
                s->ar_beta * 1e6);
    if (s->steps == 0 && f->proxy != FITNESS_ADAPTIVE_BN && o->have_ar)
        return abc_errf(err, ABC_EVALUE,
                        "%s: the group model needs the gradient sums per "
                        "evaluation: set search.fitness.steps or "
                        "train_images",
                        c->path);
    return 0;
}

int sim_sweep(const struct config *c, const struct sim_opts *o, FILE *csv,
              FILE *progress, char *err)
{
    char log_path[CONFIG_PATH_MAX + 32];
    struct model *pre = NULL;
    struct sim_log *g = NULL;
    struct sim_cost cost = {0};
    int rc = 0;
    if (o->log_path)
        snprintf(log_path, sizeof log_path, "%s", o->log_path);
    else if ((rc = search_path(log_path, sizeof log_path, c, SEARCH_LOG, err)))
        return rc;
    int ch, h, w;
    pipeline_input_shape(c, &ch, &h, &w);
    struct sim_setup s;
    struct structure_map map;
    memset(&s, 0, sizeof s);
    if ((rc = pipeline_model_from_config(&pre, c, ch, h, w, err)) ||
        (rc = structure_map_init(&map, pre, pre->nprunable,
                                 c->prune.flops_target, c->prune.min_channels,
                                 err)) ||
        (rc = search_colony_params(&s.p, c, pre, err)) ||
        (rc = sim_log_read(log_path, &g, err)) ||
        (rc = sim_cost_fit(g, &cost, err)))
        goto out;
    if (o->overhead >= 0)
        cost.overhead = o->overhead;
    else if ((rc = sim_overhead_fit(g, &cost.overhead, err)))
        goto out;
    s.pre = pre;
    s.map = &map;
    s.cost = &cost;
    s.log = g;
    s.seed = c->seed;
    if ((rc = group_model(&s, c, o, g, progress, err))) goto out;
    if (progress) {
        double lo = INFINITY, hi = 0;
        for (int i = 0; i < cost.nres; i++) {
            if (cost.res[i] < lo) lo = cost.res[i];
            if (cost.res[i] > hi) hi = cost.res[i];
        }
        fprintf(progress,
                "simulate: %s: %d evaluations; cost model seconds = %.4g + "
                "%.4g * MFLOPs, residual ratio %.3f..%.3f; overhead %.4gs per "
                "dispatch (%s)\n",
                log_path, g->n, cost.a, cost.b * 1e6, lo, hi, cost.overhead,
                o->overhead >= 0 ? "given" : "replay of the log's own run");
    }
    fprintf(csv, "%s\n", SIM_CSV_HEADER);
    for (int k = 0; k < o->nworkers && !rc; k++) {
        for (int a = 0; a < 2 && !rc; a++) {
            if (!(a ? o->async : o->sync)) continue;
            struct sim_result r;
            s.group = group_of(c, o, o->workers[k]);
            if (s.group > 1 && !o->have_ar) {
                rc = abc_errf(err, ABC_EVALUE,
                              "simulate: groups of %d ranks need the cost of "
                              "a gradient sum: --allreduce ALPHA,BETA "
                              "(measure it: mpirun -np 2 bench_allreduce)",
                              s.group);
                break;
            }
            if ((rc = sim_run(&s, o->workers[k], a, &r, err))) break;
            fprintf(csv, "%s,%d,%d,%.3f,%llu,%.4f,%.4f,", a ? "async" : "sync",
                    r.workers, s.p.sn, r.wall_s,
                    (unsigned long long)r.evaluations, r.evals_per_s, r.util);
            for (int i = 0; i < r.ncycles; i++)
                fprintf(csv, i ? ";%.6f" : "%.6f", r.best[i]);
            fprintf(csv, ",%.6f,%lld,%.6g,%.6g,%.6g,%d\n", r.best_fitness,
                    (long long)r.best_flops, cost.a, cost.b * 1e6,
                    cost.overhead, s.group > 1 ? s.group : 1);
            if (progress)
                fprintf(progress,
                        "simulate: %-5s %5d workers: %8.1fs, %llu "
                        "evaluations, %.2f/s, workers busy %.1f%%\n",
                        a ? "async" : "sync", r.workers, r.wall_s,
                        (unsigned long long)r.evaluations, r.evals_per_s,
                        100 * r.util);
            sim_result_free(&r);
        }
    }
    if (!rc && fflush(csv)) rc = abc_errf(err, ABC_EIO, "cannot write the CSV");
out:
    sim_cost_free(&cost);
    sim_log_destroy(g);
    model_destroy(pre);
    return rc;
}

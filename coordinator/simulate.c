/* simulate.c - the search on a virtual clock (see simulate.h): a reader for
 * the fields of search.jsonl the model needs, the cost-model fits, and the
 * two dispatch loops of search.c replayed against virtual workers. */
#include "simulate.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/rng.h"
#include "core/seeds.h"
#include "pipeline.h"
#include "search.h"

/* Label of rng_derive for the residual draws. */

/* ---- a minimal reader for one flat JSON object per line ---- */

enum jtype { J_NUM, J_STR, J_ARR, J_OBJ, J_LIT };

struct jfield {
    const char *key;
    size_t klen;
    enum jtype type;
    const char *val; /* the value's text (strings: without the quotes) */
    size_t vlen;
};

#define JMAX_FIELDS 64

static const char *skip_ws(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    return s;
}

/* s at an opening quote: returns the closing quote, or NULL. */
static const char *scan_string(const char *s)
{
    for (s++; *s; s++) {
        if (*s == '\\') {
            if (!s[1]) return NULL;
            s++;
        } else if (*s == '"') {
            return s;
        }
    }
    return NULL;
}

/* s at '[' or '{': returns its matching bracket, or NULL. */
static const char *scan_nested(const char *s)
{
    int depth = 0;
    for (; *s; s++) {
        if (*s == '"') {
            if (!(s = scan_string(s))) return NULL;
        } else if (*s == '[' || *s == '{') {
            depth++;
        } else if (*s == ']' || *s == '}') {
            if (--depth == 0) return s;
        }
    }
    return NULL;
}

/* Splits one JSON object into its top-level fields. Returns 0, or -1 with
 * *why and the column (1-based) of the problem. */
static int json_fields(const char *line, struct jfield *f, int *nf,
                       const char **why, int *col)
{
    const char *s = skip_ws(line);
    *nf = 0;
    if (*s != '{') {
        *why = "expected a JSON object ('{')";
        goto bad;
    }
    s = skip_ws(s + 1);
    if (*s == '}') goto end;
    for (;;) {
        if (*s != '"') {
            *why = "expected a quoted field name";
            goto bad;
        }
        const char *q = scan_string(s);
        if (!q) {
            *why = "unterminated string";
            goto bad;
        }
        if (*nf == JMAX_FIELDS) {
            *why = "too many fields";
            goto bad;
        }
        struct jfield *x = &f[(*nf)++];
        x->key = s + 1;
        x->klen = (size_t)(q - s - 1);
        s = skip_ws(q + 1);
        if (*s != ':') {
            *why = "expected ':' after a field name";
            goto bad;
        }
        s = skip_ws(s + 1);
        const char *e;
        if (*s == '"') {
            if (!(e = scan_string(s))) {
                *why = "unterminated string";
                goto bad;
            }
            x->type = J_STR;
            x->val = s + 1;
            x->vlen = (size_t)(e - s - 1);
            s = e + 1;
        } else if (*s == '[' || *s == '{') {
            if (!(e = scan_nested(s))) {
                *why = "unterminated array or object";
                goto bad;
            }
            x->type = *s == '[' ? J_ARR : J_OBJ;
            x->val = s;
            x->vlen = (size_t)(e - s + 1);
            s = e + 1;
        } else {
            e = s;
            while (*e && *e != ',' && *e != '}' && *e != ' ' && *e != '\t' &&
                   *e != '\r' && *e != '\n')
                e++;
            if (e == s) {
                *why = "expected a value";
                goto bad;
            }
            x->type = (*s == '-' || (*s >= '0' && *s <= '9')) ? J_NUM : J_LIT;
            x->val = s;
            x->vlen = (size_t)(e - s);
            s = e;
        }
        s = skip_ws(s);
        if (*s == ',') {
            s = skip_ws(s + 1);
            continue;
        }
        if (*s == '}') break;
        *why = "expected ',' or '}'";
        goto bad;
    }
end:
    s = skip_ws(s + 1);
    if (*s) {
        *why = "text after the object";
        goto bad;
    }
    return 0;
bad:
    *col = (int)(s - line) + 1;
    return -1;
}

static const struct jfield *json_find(const struct jfield *f, int nf,
                                      const char *key)
{
    size_t n = strlen(key);
    for (int i = 0; i < nf; i++)
        if (f[i].klen == n && memcmp(f[i].key, key, n) == 0) return &f[i];
    return NULL;
}

/* Parses text[0..n) as one finite number. Returns 0 or -1. */
static int parse_number(const char *text, size_t n, double *v)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, text, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    *v = strtod(buf, &end);
    if (*end || errno || !isfinite(*v)) return -1;
    return 0;
}

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

static int get_num(const struct jfield *f, int nf, const char *key,
                   const struct where *w, double *v, char *err)
{
    const struct jfield *x = json_find(f, nf, key);
    if (!x) return field_err(w, key, "missing", err);
    if (x->type != J_NUM || parse_number(x->val, x->vlen, v))
        return field_err(w, key, "expected a finite number", err);
    return 0;
}

/* A number that must be >= lo. */
static int get_num_min(const struct jfield *f, int nf, const char *key,
                       const struct where *w, double lo, double *v, char *err)
{
    int rc = get_num(f, nf, key, w, v, err);
    if (rc) return rc;
    if (*v < lo) {
        char what[64];
        snprintf(what, sizeof what, "%g is below %g", *v, lo);
        return field_err(w, key, what, err);
    }
    return 0;
}

/* A non-negative integer below 2^53 (exact in a double). */
static int get_count(const struct jfield *f, int nf, const char *key,
                     const struct where *w, double *v, char *err)
{
    int rc = get_num_min(f, nf, key, w, 0, v, err);
    if (rc) return rc;
    if (*v != floor(*v) || *v > 9007199254740992.0)
        return field_err(w, key, "expected a non-negative integer", err);
    return 0;
}

/* An unsigned 64-bit integer (seeds exceed a double's exact range). */
static int get_u64(const struct jfield *f, int nf, const char *key,
                   const struct where *w, uint64_t *v, char *err)
{
    const struct jfield *x = json_find(f, nf, key);
    if (!x) return field_err(w, key, "missing", err);
    char buf[32];
    int ok = x->type == J_NUM && x->vlen < sizeof buf && x->val[0] != '-';
    if (ok) {
        memcpy(buf, x->val, x->vlen);
        buf[x->vlen] = '\0';
        char *end;
        errno = 0;
        *v = strtoull(buf, &end, 10);
        ok = !*end && !errno;
    }
    return ok ? 0
              : field_err(w, key, "expected an unsigned 64-bit integer", err);
}

static int get_str(const struct jfield *f, int nf, const char *key,
                   const struct where *w, char *buf, size_t size, char *err)
{
    const struct jfield *x = json_find(f, nf, key);
    if (!x) return field_err(w, key, "missing", err);
    if (x->type != J_STR || x->vlen >= size)
        return field_err(w, key, "expected a short string", err);
    memcpy(buf, x->val, x->vlen);
    buf[x->vlen] = '\0';
    return 0;
}

/* An array of integers into out[0..max); *n entries. */
static int get_ints(const struct jfield *f, int nf, const char *key,
                    const struct where *w, int *out, int max, int *n, char *err)
{
    const struct jfield *x = json_find(f, nf, key);
    if (!x) return field_err(w, key, "missing", err);
    if (x->type != J_ARR) return field_err(w, key, "expected an array", err);
    const char *s = skip_ws(x->val + 1), *end = x->val + x->vlen - 1;
    *n = 0;
    if (s == end) return 0;
    for (;;) {
        const char *e = s;
        while (e < end && *e != ',' && *e != ' ')
            e++;
        double v;
        if (parse_number(s, (size_t)(e - s), &v) || v != floor(v) ||
            fabs(v) > 1e9)
            return field_err(w, key, "expected an array of integers", err);
        if (*n == max) return field_err(w, key, "too many entries", err);
        out[(*n)++] = (int)v;
        s = skip_ws(e);
        if (s == end) return 0;
        if (*s != ',')
            return field_err(w, key, "expected an array of integers", err);
        s = skip_ws(s + 1);
    }
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
    double *fit = realloc(g->fitness, sizeof(double) * cap);
    if (!fit) return -1;
    g->fitness = fit;
    uint64_t *sd = realloc(g->seed, sizeof(uint64_t) * cap);
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
static int read_eval(struct sim_log *g, const struct jfield *f, int nf,
                     const struct where *w, char *err)
{
    int code[COLONY_MAX_LAYERS], n = 0, rc;
    double flops, sec, fit, cyc;
    uint64_t seed = 0;
    char ph[16];
    int phase;
    if ((rc = get_ints(f, nf, "code", w, code, COLONY_MAX_LAYERS, &n, err)))
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
    if ((rc = get_count(f, nf, "flops", w, &flops, err)) ||
        (rc = get_num_min(f, nf, "seconds", w, 0, &sec, err)) ||
        (rc = get_num_min(f, nf, "fitness", w, 0, &fit, err)) ||
        (rc = get_count(f, nf, "cycle", w, &cyc, err)) ||
        (rc = get_u64(f, nf, "seed", w, &seed, err)) ||
        (rc = get_str(f, nf, "phase", w, ph, sizeof ph, err)))
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
    g->fitness[i] = fit;
    g->seed[i] = seed;
    g->phase[i] = phase;
    g->cycle[i] = (int)cyc;
    return 0;
}

static int read_done(struct sim_log *g, const struct jfield *f, int nf,
                     const struct where *w, char *err)
{
    char sched[16];
    double ev, here, el, ranks, busy, cpu;
    int rc;
    if ((rc = get_str(f, nf, "schedule", w, sched, sizeof sched, err)) ||
        (rc = get_count(f, nf, "evaluations", w, &ev, err)) ||
        (rc = get_count(f, nf, "evaluated_here", w, &here, err)) ||
        (rc = get_num_min(f, nf, "elapsed_s", w, 0, &el, err)) ||
        (rc = get_count(f, nf, "ranks", w, &ranks, err)) ||
        (rc = get_num_min(f, nf, "worker_busy", w, 0, &busy, err)) ||
        (rc = get_num_min(f, nf, "rank0_cpu_s", w, 0, &cpu, err)))
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
    struct jfield f[JMAX_FIELDS];
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (getline(&line, &cap, fp) != -1) {
        w.line++;
        if (*skip_ws(line) == '\0') continue; /* blank line */
        int nf, col;
        const char *why;
        if (json_fields(line, f, &nf, &why, &col)) {
            rc = abc_errf(err, ABC_EFORMAT, "%s:%ld:%d: %s", path, w.line, col,
                          why);
            break;
        }
        char event[16];
        if ((rc = get_str(f, nf, "event", &w, event, sizeof event, err))) break;
        if (strcmp(event, "eval") == 0)
            rc = read_eval(g, f, nf, &w, err);
        else if (strcmp(event, "done") == 0)
            rc = read_done(g, f, nf, &w, err);
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

/* One sync batch as search.c's dynamic queue runs it from time t0 on W
 * workers: candidate i goes to the worker free first (the lower on ties)
 * and keeps it o + dur[i] seconds. Returns the time the last result is in
 * (t0 for an empty batch). h has room for min(n, W) entries. */
static double batch_wall(struct heap *h, double t0, const double *dur, int n,
                         int W, double o)
{
    int k = n < W ? n : W;
    double end = t0;
    h->n = 0;
    for (int w = 0; w < k; w++)
        heap_push(h, t0, w);
    for (int i = 0; i < n; i++) {
        double t;
        int w;
        heap_pop(h, &t, &w);
        t += o + dur[i];
        if (t > end) end = t;
        heap_push(h, t, w);
    }
    return end;
}

static int log_workers(const struct sim_log *g)
{
    return g->ranks > 1 ? g->ranks - 1 : 1;
}

double sim_replay_wall(const struct sim_log *g, double o)
{
    int W = log_workers(g);
    struct heap h;
    if (heap_init(&h, W < g->n ? W : g->n)) {
        heap_free(&h);
        return NAN;
    }
    double t = 0;
    for (int i = 0; i < g->n;) {
        int j = i + 1;
        if (g->async && g->phase[i] != COLONY_INIT)
            j = g->n; /* the steady state: one queue */
        else
            while (j < g->n && g->phase[j] == g->phase[i] &&
                   g->cycle[j] == g->cycle[i])
                j++;
        t = batch_wall(&h, t, g->seconds + i, j - i, W, o);
        i = j;
    }
    heap_free(&h);
    return t;
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
    double want = g->elapsed_s;
    if (sim_replay_wall(g, 0) >= want) return 0;
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

/* ---- the simulated search ---- */

/* What one candidate costs and scores. */
struct sim_eval {
    double dur;     /* busy seconds */
    double fitness; /* the surrogate's */
};

/* MACs of code's structure (as the search maps it), or a negative error. */
static int64_t code_macs(const struct sim_setup *s, const int *code, char *err)
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
    int rc = structure_from_code(map, code, ch, &macs, NULL, err);
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
        if (d == 0 && g->seed[i] == seed) return g->fitness[i];
        if (best < 0 || d < best) best = d, sum = 0, count = 0;
        if (d == best) sum += g->fitness[i], count++;
    }
    return sum / count;
}

static int eval_candidate(const struct sim_setup *s, const struct candidate *cd,
                          struct sim_eval *e, char *err)
{
    int64_t macs = code_macs(s, cd->code, err);
    if (macs < 0) return (int)macs;
    double m = 1;
    if (s->cost->nres > 0) {
        struct rng r;
        rng_seed(&r, rng_derive(s->seed, SEED_RESIDUAL, cd->eval_id, 0));
        m = s->cost->res[rng_below(&r, (uint64_t)s->cost->nres)];
    }
    e->dur = cost_predict(s->cost, (double)macs) * m;
    e->fitness = surrogate_fitness(s->log, cd->code, cd->seed, s->p.nlayers);
    return 0;
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

/* The sync phases (all of them, or with init_only the init batch). */
static int run_sync(const struct sim_setup *s, struct colony *col, int W,
                    int init_only, struct heap *h, double *t,
                    struct sim_result *r, int *logged, char *err)
{
    int sn = s->p.sn;
    double *dur = malloc(sizeof(double) * (sn + 1));
    double *fit = malloc(sizeof(double) * (sn + 1));
    int rc = 0;
    if (!dur || !fit) rc = abc_errf(err, ABC_ENOMEM, "out of memory");
    while (!rc && !colony_done(col) &&
           (!init_only || col->phase == COLONY_INIT)) {
        const struct candidate *batch;
        int n;
        if ((rc = colony_next_batch(col, &batch, &n, err))) break;
        for (int i = 0; i < n && !rc; i++) {
            struct sim_eval e;
            if ((rc = eval_candidate(s, &batch[i], &e, err))) break;
            dur[i] = e.dur;
            fit[i] = e.fitness;
            r->busy_s += e.dur;
            rc = colony_record(col, i, e.fitness, err);
        }
        if (rc) break;
        *t = batch_wall(h, *t, dur, n, W, s->cost->overhead);
        if ((rc = colony_apply(col, NULL, err))) break;
        note_cycles(col, r, logged);
    }
    free(dur);
    free(fit);
    return rc;
}

/* The async steady state after the init batch: a free worker gets the next
 * role's candidate at once; results are applied as they finish. */
static int run_async(const struct sim_setup *s, struct colony *col, int W,
                     struct heap *h, double *t, struct sim_result *r,
                     int *logged, char *err)
{
    int rc = colony_async_begin(col, err);
    if (rc) return rc;
    note_cycles(col, r, logged);
    uint64_t *id = malloc(sizeof(uint64_t) * W);
    double *fit = malloc(sizeof(double) * W);
    unsigned char *busy = calloc((size_t)W, 1);
    if (!id || !fit || !busy) rc = abc_errf(err, ABC_ENOMEM, "out of memory");
    h->n = 0;
    int more = 1; /* the colony may still have roles to issue */
    while (!rc) {
        /* fill the idle workers in order, as search.c's async_fill */
        for (int w = 0; w < W && more && !rc; w++) {
            if (busy[w]) continue;
            const struct candidate *cd;
            if ((rc = colony_async_next(col, &cd, err)) < 0) break;
            rc = 0;
            note_cycles(col, r, logged); /* skipped scouts end cycles */
            if (!cd) {
                more = 0;
                break;
            }
            struct sim_eval e;
            if ((rc = eval_candidate(s, cd, &e, err))) break;
            id[w] = cd->eval_id;
            fit[w] = e.fitness;
            busy[w] = 1;
            r->busy_s += e.dur;
            heap_push(h, *t + s->cost->overhead + e.dur, w);
        }
        if (rc || h->n == 0) break;
        int w;
        heap_pop(h, t, &w);
        busy[w] = 0;
        if ((rc = colony_async_apply(col, id[w], fit[w], err))) break;
        note_cycles(col, r, logged);
        more = 1;
    }
    if (!rc && !colony_done(col))
        rc = abc_errf(err, ABC_EVALUE,
                      "simulated async search: nothing in flight, but not "
                      "done (cycle %d)",
                      col->cycle);
    free(id);
    free(fit);
    free(busy);
    return rc;
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
    r->workers = workers;
    r->async = async;
    r->ncycles = s->p.max_cycles + 1;
    r->best = calloc((size_t)r->ncycles, sizeof(double));
    if (!r->best) return abc_errf(err, ABC_ENOMEM, "out of memory");
    struct colony *col = NULL;
    struct heap h = {0};
    int rc = colony_create(&col, &s->p, err);
    if (rc) goto out;
    int hcap = workers < s->p.sn + 1 ? workers : s->p.sn + 1;
    if (async) hcap = workers;
    if (heap_init(&h, hcap)) {
        rc = abc_errf(err, ABC_ENOMEM, "out of memory");
        goto out;
    }
    double t = 0;
    int logged = -1;
    rc = run_sync(s, col, workers, async, &h, &t, r, &logged, err);
    if (!rc && async && !colony_done(col))
        rc = run_async(s, col, workers, &h, &t, r, &logged, err);
    if (rc) goto out;
    r->wall_s = t;
    r->evaluations = col->evaluations;
    r->util = t > 0 ? r->busy_s / (workers * t) : 0;
    r->evals_per_s = t > 0 ? (double)r->evaluations / t : 0;
    r->best_fitness = col->best_fitness;
    int64_t macs = code_macs(s, col->best_code, err);
    if (macs < 0) {
        rc = (int)macs;
        goto out;
    }
    r->best_flops = macs;
out:
    heap_free(&h);
    colony_destroy(col);
    if (rc) sim_result_free(r);
    return rc;
}

void sim_result_free(struct sim_result *r)
{
    free(r->best);
    r->best = NULL;
}

/* ---- the subcommand's work ---- */

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
            if ((rc = sim_run(&s, o->workers[k], a, &r, err))) break;
            fprintf(csv, "%s,%d,%d,%.3f,%llu,%.4f,%.4f,", a ? "async" : "sync",
                    r.workers, s.p.sn, r.wall_s,
                    (unsigned long long)r.evaluations, r.evals_per_s, r.util);
            for (int i = 0; i < r.ncycles; i++)
                fprintf(csv, i ? ";%.6f" : "%.6f", r.best[i]);
            fprintf(csv, ",%.6f,%lld,%.6g,%.6g,%.6g\n", r.best_fitness,
                    (long long)r.best_flops, cost.a, cost.b * 1e6,
                    cost.overhead);
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

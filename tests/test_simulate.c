/* test_simulate.c - the virtual-clock simulator (coordinator/simulate.c) on
 * one process, against hand-computed numbers: with a constant evaluation
 * time t and no overhead the sync wall time is the sum over the colony's
 * phases of ceil(batch/W)*t (batch sizes from the same colony run here),
 * the async one ceil(SN/W)*t + ceil((N-SN)/W)*t, utilisation and evals/s
 * follow; one worker gives N*t (N*(t+o) with overhead o) on both
 * schedules; the sync search and its busy time do not depend on W; the
 * least-squares cost fit recovers a and b of a synthetic log; the overhead
 * fit recovers o from a hand-replayed log (1 and 3 ranks, sync and async);
 * every malformed log line is an error naming file:line and the field.
 * Writes its files in the working directory. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "colony.h"
#include "core/err.h"
#include "core/rng.h"
#include "nn/model.h"
#include "simulate.h"

#define LOG_ALL "simulate_all.jsonl"
#define K_MAX 7
#define NL 3 /* smallnet's prunable layers */

/* The deterministic fitness every code of LOG_ALL has. */
static double fit_of(const int *code)
{
    return ((code[0] * 7 + code[1] * 3 + code[2] * 5) % 11) / 11.0 +
           0.01 * code[0];
}

static void eval_line(FILE *f, const int *code, long long flops, double sec,
                      double fit, uint64_t seed, const char *phase, int cycle)
{
    fprintf(f,
            "{\"event\":\"eval\",\"cycle\":%d,\"phase\":\"%s\",\"candidate\":"
            "0,\"eval_id\":0,\"source\":0,\"seed\":%llu,\"structure\":[1,2,3],"
            "\"code\":[%d,%d,%d],\"fitness\":%.6f,\"val_loss\":1.0,\"flops\":"
            "%lld,\"params\":10,\"worker\":1,\"seconds\":%.9f,\"images_per_s\":"
            "1.0}\n",
            cycle, phase, (unsigned long long)seed, code[0], code[1], code[2],
            fit, flops, sec);
}

/* Every code in 1..K_MAX^3 once, fitness fit_of, seconds linear in flops. */
static void write_all_codes(double a, double b)
{
    FILE *f = fopen(LOG_ALL, "w");
    int code[NL];
    for (code[0] = 1; code[0] <= K_MAX; code[0]++)
        for (code[1] = 1; code[1] <= K_MAX; code[1]++)
            for (code[2] = 1; code[2] <= K_MAX; code[2]++) {
                long long flops = 100000LL * (code[0] + 3 * code[1]) +
                                  7000LL * code[2] * code[2];
                eval_line(f, code, flops, a + b * flops, fit_of(code), 0,
                          "init", 0);
            }
    fclose(f);
}

static struct colony_params params(void)
{
    struct colony_params p = {.nlayers = NL,
                              .K = K_MAX,
                              .sn = 6,
                              .limit = 2,
                              .change_dims = 1,
                              .max_cycles = 5,
                              .seed = 42,
                              .redraw_same = 0};
    return p;
}

/* The batch sizes of the sync colony with fitness fit_of, phase by phase. */
static int batch_sizes(const struct colony_params *p, int *n, int max)
{
    struct colony *c;
    char err[ABC_ERRLEN];
    if (colony_create(&c, p, err)) return -1;
    int k = 0;
    while (!colony_done(c) && k < max) {
        const struct candidate *b;
        if (colony_next_batch(c, &b, &n[k], err)) break;
        for (int i = 0; i < n[k]; i++)
            colony_record(c, i, fit_of(b[i].code), err);
        colony_apply(c, NULL, err);
        k++;
    }
    colony_destroy(c);
    return k;
}

static void test_constant_time(const struct model *pre, const struct sim_log *g)
{
    const double t = 2.5;
    struct colony_params p = params();
    struct sim_cost cost = {
        .a = t, .b = 0, .nres = 0, .overhead = 0, .min_s = 0};
    struct sim_setup s = {
        .p = p, .pre = pre, .cost = &cost, .log = g, .seed = 1};
    int n[64];
    int nph = batch_sizes(&p, n, 64);
    int total = 0, scouts = 0;
    for (int k = 0; k < nph; k++)
        total += n[k];
    for (int k = 3; k < nph; k += 3)
        scouts += n[k];
    CHECK(nph == 1 + 3 * p.max_cycles, "%d phases", nph);
    CHECK(total == p.sn + p.max_cycles * 2 * p.sn + scouts && scouts > 0 &&
              scouts <= p.max_cycles,
          "budget %d with %d scouts", total, scouts);
    printf("colony: %d phases, %d evaluations, %d scouts\n", nph, total,
           scouts);
    static const int Ws[] = {1, 2, 3, 4, 5, 6, 16, 1024};
    char err[ABC_ERRLEN];
    double busy1 = -1;
    for (size_t i = 0; i < sizeof Ws / sizeof Ws[0]; i++) {
        int W = Ws[i];
        double want = 0;
        for (int k = 0; k < nph; k++)
            want += ceil((double)n[k] / W) * t;
        struct sim_result r;
        int rc = sim_run(&s, W, 0, &r, err);
        CHECK(rc == 0, "sync W=%d: %s", W, err);
        if (rc) continue;
        CHECK(fabs(r.wall_s - want) < 1e-9, "sync W=%d: wall %.6f, want %.6f",
              W, r.wall_s, want);
        CHECK(r.evaluations == (uint64_t)total, "sync W=%d: %llu evaluations",
              W, (unsigned long long)r.evaluations);
        CHECK(fabs(r.util - total * t / (W * want)) < 1e-12,
              "sync W=%d: util %.6f", W, r.util);
        CHECK(fabs(r.evals_per_s - total / want) < 1e-12,
              "sync W=%d: evals/s %.6f", W, r.evals_per_s);
        CHECK(r.ncycles == p.max_cycles + 1 &&
                  r.best[r.ncycles - 1] == r.best_fitness,
              "sync W=%d: best per cycle", W);
        for (int c = 1; c < r.ncycles; c++)
            CHECK(r.best[c] >= r.best[c - 1], "best falls at cycle %d", c);
        if (busy1 < 0) busy1 = r.busy_s;
        CHECK(fabs(r.busy_s - busy1) < 1e-9, "sync W=%d: busy %.6f vs %.6f", W,
              r.busy_s, busy1);
        printf("ok   sync  W=%4d: wall %7.2f = sum ceil(batch/W)*t, util "
               "%.4f\n",
               W, r.wall_s, r.util);
        sim_result_free(&r);

        rc = sim_run(&s, W, 1, &r, err);
        CHECK(rc == 0, "async W=%d: %s", W, err);
        if (rc) continue;
        uint64_t N = r.evaluations;
        CHECK(N >= (uint64_t)(p.sn + p.max_cycles * 2 * p.sn) &&
                  N <= (uint64_t)(p.sn + p.max_cycles * (2 * p.sn + 1)),
              "async W=%d: %llu evaluations", W, (unsigned long long)N);
        double aw = (ceil((double)p.sn / W) + ceil((double)(N - p.sn) / W)) * t;
        CHECK(fabs(r.wall_s - aw) < 1e-9, "async W=%d: wall %.6f, want %.6f", W,
              r.wall_s, aw);
        CHECK(fabs(r.util - N * t / (W * aw)) < 1e-12, "async W=%d: util %.6f",
              W, r.util);
        if (W == 1 || W == 2 || W == 3 || W == 6) /* W divides sn: only the
                                                     last wave can idle */
            CHECK(r.util >= (double)N / (N + W - 1) - 1e-12,
                  "async W=%d: util %.4f below 1 minus the tail", W, r.util);
        printf("ok   async W=%4d: wall %7.2f = (ceil(SN/W)+ceil((N-SN)/W))*t, "
               "util %.4f\n",
               W, r.wall_s, r.util);
        sim_result_free(&r);
    }

    /* Evaluation groups: W workers in W/g slots, each candidate
     * t * (phi/g + 1 - phi) + steps * alpha * ceil(log2 g) (beta 0: the
     * parameters do not enter); utilisation counts all g ranks busy. */
    static const int gW[][2] = {{2, 2}, {2, 6}, {4, 16}, {16, 1024}, {3, 7}};
    for (size_t i = 0; i < sizeof gW / sizeof gW[0]; i++) {
        int G = gW[i][0], W = gW[i][1], slots = W / G;
        s.group = G;
        s.train_frac = 0.8;
        s.steps = 10;
        s.ar_alpha = 0.01;
        s.ar_beta = 0;
        double tg = t * (0.8 / G + 0.2) + 10 * 0.01 * ceil(log2((double)G));
        double want = 0;
        for (int k = 0; k < nph; k++)
            want += ceil((double)n[k] / slots) * tg;
        struct sim_result r;
        int rc = sim_run(&s, W, 0, &r, err);
        CHECK(rc == 0 && fabs(r.wall_s - want) < 1e-9 &&
                  fabs(r.util - total * tg * G / (W * want)) < 1e-12,
              "groups of %d on %d workers: wall %.6f want %.6f, util %.6f (%s)",
              G, W, rc ? 0 : r.wall_s, want, rc ? 0 : r.util, err);
        if (!rc) {
            printf("ok   sync  g=%2d W=%4d: wall %7.2f = sum ceil(batch/(W/g)) "
                   "* t_g, util %.4f\n",
                   G, W, r.wall_s, r.util);
            sim_result_free(&r);
        }
        s.ar_beta = 1e-9; /* the sums' bytes: every candidate costs more */
        double busy0 = total * tg;
        rc = sim_run(&s, W, 0, &r, err);
        CHECK(rc == 0 && r.busy_s > busy0, "beta > 0: busy %.6f vs %.6f",
              rc ? 0 : r.busy_s, busy0);
        if (!rc) sim_result_free(&r);
    }
    s.group = 4;
    {
        struct sim_result r;
        CHECK(sim_run(&s, 3, 0, &r, err) == ABC_EVALUE &&
                  strstr(err, "3 workers cannot form a group of 4"),
              "3 workers, groups of 4: %s", err);
    }
    s.group = 0;

    /* One worker: N*(t+o) on both schedules, busy t/(t+o). */
    cost.overhead = 0.5;
    for (int a = 0; a < 2; a++) {
        struct sim_result r;
        int rc = sim_run(&s, 1, a, &r, err);
        CHECK(rc == 0, "%s", err);
        if (rc) continue;
        double want = (double)r.evaluations * (t + 0.5);
        CHECK(fabs(r.wall_s - want) < 1e-9 &&
                  fabs(r.util - t / (t + 0.5)) < 1e-12,
              "%s W=1 o=0.5: wall %.6f want %.6f, util %.6f",
              a ? "async" : "sync", r.wall_s, want, r.util);
        sim_result_free(&r);
    }
}

/* A real cost model: the sync search (best per cycle, busy time) is the
 * same on any W; only the wall time changes, and never grows with W. */
static void test_w_invariance(const struct model *pre, const struct sim_log *g)
{
    struct sim_cost cost;
    char err[ABC_ERRLEN];
    if (sim_cost_fit(g, &cost, err)) {
        CHECK(0, "%s", err);
        return;
    }
    for (int i = 0; i < cost.nres; i++) /* a spread of residuals */
        cost.res[i] = 0.5 + (i % 10) * 0.1;
    cost.overhead = 0.01;
    struct sim_setup s = {
        .p = params(), .pre = pre, .cost = &cost, .log = g, .seed = 7};
    struct sim_result r1, r;
    if (sim_run(&s, 1, 0, &r1, err)) {
        CHECK(0, "%s", err);
        sim_cost_free(&cost);
        return;
    }
    double prev = r1.wall_s;
    for (int W = 2; W <= 64; W *= 2) {
        if (sim_run(&s, W, 0, &r, err)) {
            CHECK(0, "%s", err);
            break;
        }
        CHECK(fabs(r.busy_s - r1.busy_s) < 1e-9 &&
                  r.best_fitness == r1.best_fitness &&
                  memcmp(r.best, r1.best, sizeof(double) * r.ncycles) == 0,
              "W=%d: the sync search differs from W=1", W);
        CHECK(r.wall_s <= prev + 1e-9, "W=%d: wall %.3f > %.3f", W, r.wall_s,
              prev);
        prev = r.wall_s;
        sim_result_free(&r);
    }
    /* the same draws again: the same numbers */
    if (sim_run(&s, 1, 0, &r, err) == 0) {
        CHECK(r.wall_s == r1.wall_s && r.busy_s == r1.busy_s,
              "a second run differs");
        sim_result_free(&r);
    }
    printf("ok   sync search and busy time the same on 1..64 workers "
           "(busy %.3fs)\n",
           r1.busy_s);
    sim_result_free(&r1);
    sim_cost_free(&cost);
}

static void test_cost_fit(void)
{
    const double a = 0.75, b = 3.2e-8;
    char err[ABC_ERRLEN];
    write_all_codes(a, b);
    struct sim_log *g;
    int rc = sim_log_read(LOG_ALL, &g, err);
    CHECK(rc == 0, "%s", err);
    if (rc) return;
    CHECK(g->n == K_MAX * K_MAX * K_MAX && g->nlayers == NL, "%d lines", g->n);
    struct sim_cost c;
    rc = sim_cost_fit(g, &c, err);
    CHECK(rc == 0, "%s", err);
    if (!rc) {
        CHECK(fabs(c.a - a) < 1e-6 * a && fabs(c.b - b) < 1e-6 * b,
              "fit a %.9g b %.9g, want %.9g %.9g", c.a, c.b, a, b);
        double worst = 0;
        for (int i = 0; i < c.nres; i++)
            worst = fmax(worst, fabs(c.res[i] - 1));
        CHECK(c.nres == g->n && worst < 1e-6, "residual ratios off by %g",
              worst);
        printf("ok   cost fit: a %.6f (want %.6f), b %.6g (want %.6g)\n", c.a,
               a, c.b, b);
        sim_cost_free(&c);
    }
    sim_log_destroy(g);

    /* with +-10 % multiplicative noise the fit stays within a few % */
    FILE *f = fopen("simulate_noisy.jsonl", "w");
    struct rng r;
    rng_seed(&r, 5);
    for (int i = 0; i < 400; i++) {
        int code[NL] = {1 + i % 7, 1 + (i / 7) % 7, 1 + (i / 49) % 7};
        long long flops = 1000000LL + 250000LL * (i % 37);
        double sec = (a + b * flops) * (0.9 + 0.2 * rng_uniform(&r));
        eval_line(f, code, flops, sec, 0.5, i, "init", 0);
    }
    fclose(f);
    if (sim_log_read("simulate_noisy.jsonl", &g, err) == 0 &&
        sim_cost_fit(g, &c, err) == 0) {
        CHECK(fabs(c.a - a) < 0.05 * a && fabs(c.b - b) < 0.05 * b,
              "noisy fit a %.6g b %.6g", c.a, c.b);
        sim_cost_free(&c);
    } else {
        CHECK(0, "%s", err);
    }
    sim_log_destroy(g);
    remove("simulate_noisy.jsonl");
}

/* The overhead fit against hand replays. */
static void test_overhead_fit(void)
{
    char err[ABC_ERRLEN];
    static const struct {
        int ranks;
        const char *sched;
        double elapsed, want;
    } cases[] = {
        /* one rank: elapsed = sum(seconds) + N*o = 14 + 8*o */
        {1, "sync", 16.0, 0.25},
        {1, "async", 14.0 + 8 * 0.1, 0.1},
        /* 2 workers: init 1,2,3,4 -> w0 1,3 w1 2,4: 6+2o; then four 1 s
         * evaluations two per worker: 2+2o (sync: the employed batch;
         * async: one queue after init) -> 8+4o */
        {3, "sync", 9.0, 0.25},
        {3, "async", 8.0 + 4 * 0.4, 0.4},
        /* the replay alone takes longer than elapsed: o = 0 */
        {3, "sync", 7.0, 0.0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        FILE *f = fopen("simulate_replay.jsonl", "w");
        static const double sec[8] = {1, 2, 3, 4, 1, 1, 1, 1};
        for (int i = 0; i < 8; i++) {
            int code[NL] = {1 + i % 7, 2, 3};
            eval_line(f, code, 1000000, sec[i], 0.5, i,
                      i < 4 ? "init" : "employed", i < 4 ? 0 : 1);
        }
        fprintf(f,
                "{\"event\":\"cycle\",\"cycle\":1,\"best_fitness\":0.5}\n"
                "{\"event\":\"done\",\"schedule\":\"%s\",\"evaluations\":8,"
                "\"evaluated_here\":8,\"elapsed_s\":%.6f,\"ranks\":%d,"
                "\"worker_busy\":0.9,\"rank0_cpu_s\":0.1,\"best_fitness\":0.5}"
                "\n",
                cases[k].sched, cases[k].elapsed, cases[k].ranks);
        fclose(f);
        struct sim_log *g;
        double o = -1;
        int rc = sim_log_read("simulate_replay.jsonl", &g, err);
        if (!rc) rc = sim_overhead_fit(g, &o, err);
        CHECK(rc == 0 && fabs(o - cases[k].want) < 1e-6,
              "%d ranks %s elapsed %.2f: overhead %.6f, want %.6f (%s)",
              cases[k].ranks, cases[k].sched, cases[k].elapsed, o,
              cases[k].want, rc ? err : "");
        if (!rc)
            printf("ok   overhead fit, %d ranks %-5s: %.6f s per dispatch\n",
                   cases[k].ranks, cases[k].sched, o);
        sim_log_destroy(g);
    }
    remove("simulate_replay.jsonl");
}

/* Each bad log must fail with rc, its message naming "file:line" and
 * the field. */
static void test_bad_logs(void)
{
    static const char good[] =
        "{\"event\":\"eval\",\"cycle\":0,\"phase\":\"init\",\"seed\":3,"
        "\"code\":[1,2,3],\"fitness\":0.5,\"flops\":100,\"seconds\":1.5,"
        "\"error\":\"a {tricky} \\\"text\\\", [with] brackets\"}\n";
    static const struct {
        const char *line2; /* after one good line */
        const char *expect;
    } cases[] = {
        {"{\"event\":\"eval\",\"cycle\":0,\"phase\":\"init\",\"seed\":3,"
         "\"code\":[1,2,3],\"fitness\":0.5,\"flops\":100,\"seconds\":\"x\"}",
         ":2: field \"seconds\": expected a finite number"},
        {"{\"event\":\"eval\",\"cycle\":0,\"phase\":\"init\",\"seed\":3,"
         "\"code\":[1,2,3],\"fitness\":0.5,\"seconds\":1}",
         ":2: field \"flops\": missing"},
        {"{\"event\":\"eval\",\"cycle\":0,\"phase\":\"init\",\"seed\":3,"
         "\"code\":[1,2],\"fitness\":0.5,\"flops\":100,\"seconds\":1}",
         ":2: field \"code\": 2 entries, earlier lines have 3"},
        {"{\"event\":\"eval\",\"cycle\":0,\"phase\":\"init\",\"seed\":3,"
         "\"code\":[1,\"x\",3],\"fitness\":0.5,\"flops\":100,\"seconds\":1}",
         ":2: field \"code\": expected an array of integers"},
        {"{\"event\":\"eval\",\"cycle\":0,\"phase\":\"init\",\"seed\":3,"
         "\"code\":[1,x,3],\"fitness\":0.5,\"flops\":100,\"seconds\":1}",
         ":2:61: not valid JSON"},
        {"{\"event\":\"eval\",\"cycle\":0,\"phase\":\"init\",\"seed\":"
         "18446744073709551617000,\"code\":[1,2,3],\"fitness\":0.5,"
         "\"flops\":100,\"seconds\":1}",
         ":2: field \"seed\": expected an unsigned 64-bit integer"},
        {"{\"event\":\"eval\",\"cycle\":0,\"phase\":\"init\",\"seed\":3,"
         "\"code\":[1,2,3],\"fitness\":1.5,\"flops\":100,\"seconds\":1}",
         ":2: field \"fitness\": above 1"},
        {"{\"event\":\"eval\",\"cycle\":0,\"phase\":\"init\",\"seed\":-3,"
         "\"code\":[1,2,3],\"fitness\":0.5,\"flops\":100,\"seconds\":1}",
         ":2: field \"seed\": expected an unsigned 64-bit integer"},
        {"{\"event\":\"eval\",\"cycle\":0,\"phase\":\"sideways\",\"seed\":3,"
         "\"code\":[1,2,3],\"fitness\":0.5,\"flops\":100,\"seconds\":1}",
         ":2: field \"phase\": expected init"},
        {"{\"event\":\"eval\",\"cycle\":0,\"phase\":\"init\",\"seed\":3,"
         "\"code\":[1,2,3],\"fitness\":0.5,\"flops\":1e400,\"seconds\":1}",
         ":2: field \"flops\": expected a finite number"},
        {"{\"event\":\"eval\",\"code\":[1,2,3", ":2:"},
        {"hello", ":2:1: expected a JSON object"},
        {"{\"event\":\"eval\"} trailing", ":2:18: text after the object"},
        {"{\"cycle\":1}", ":2: field \"event\": missing"},
        {"{\"event\":\"done\",\"schedule\":\"later\",\"evaluations\":1,"
         "\"evaluated_here\":1,\"elapsed_s\":1,\"ranks\":1,\"worker_busy\":1,"
         "\"rank0_cpu_s\":1}",
         ":2: field \"schedule\": expected sync or async"},
        {"{\"event\":\"done\",\"schedule\":\"sync\",\"evaluations\":1,"
         "\"evaluated_here\":1,\"elapsed_s\":-1,\"ranks\":1,\"worker_busy\":1,"
         "\"rank0_cpu_s\":1}",
         ":2: field \"elapsed_s\": -1 is below 0"},
    };
    char err[ABC_ERRLEN];
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        FILE *f = fopen("simulate_bad.jsonl", "w");
        fprintf(f, "%s%s\n", good, cases[k].line2);
        fclose(f);
        struct sim_log *g = (struct sim_log *)1;
        err[0] = '\0';
        int rc = sim_log_read("simulate_bad.jsonl", &g, err);
        CHECK(rc == ABC_EFORMAT && g == NULL &&
                  strstr(err, "simulate_bad.jsonl") &&
                  strstr(err, cases[k].expect),
              "case %zu: rc %d, message '%s', want '%s'", k, rc, err,
              cases[k].expect);
        if (rc == ABC_EFORMAT) printf("ok   bad log: %s\n", err);
    }
    /* the good line alone reads; an empty file and a missing one fail */
    FILE *f = fopen("simulate_bad.jsonl", "w");
    fputs(good, f);
    fclose(f);
    struct sim_log *g;
    CHECK(sim_log_read("simulate_bad.jsonl", &g, err) == 0 && g->n == 1 &&
              g->seconds[0] == 1.5 && g->seed[0] == 3 && !g->has_done,
          "the good line: %s", err);
    sim_log_destroy(g);
    /* seeds are 64-bit: read as the nearest double, as the search's are
     * compared (the largest one rounds up to 2^64 and still reads) */
    f = fopen("simulate_bad.jsonl", "w");
    fprintf(f, "{\"event\":\"eval\",\"cycle\":0,\"phase\":\"init\","
               "\"seed\":10564845661727487041,\"code\":[1,2,3],\"fitness\":0.5,"
               "\"flops\":100,\"seconds\":1}\n"
               "{\"event\":\"eval\",\"cycle\":0,\"phase\":\"init\","
               "\"seed\":18446744073709551615,\"code\":[1,2,3],\"fitness\":0.5,"
               "\"flops\":100,\"seconds\":1}\n");
    fclose(f);
    CHECK(sim_log_read("simulate_bad.jsonl", &g, err) == 0 && g->n == 2 &&
              g->seed[0] == (double)10564845661727487041ULL &&
              g->seed[1] == (double)18446744073709551615ULL,
          "64-bit seeds: %s", err);
    sim_log_destroy(g);
    f = fopen("simulate_bad.jsonl", "w");
    fclose(f);
    CHECK(sim_log_read("simulate_bad.jsonl", &g, err) == ABC_EFORMAT &&
              strstr(err, "no \"eval\" line"),
          "empty log: %s", err);
    CHECK(sim_log_read("simulate_missing.jsonl", &g, err) == ABC_EIO &&
              strstr(err, "simulate_missing.jsonl"),
          "missing log: %s", err);
    remove("simulate_bad.jsonl");
}

int main(void)
{
    char err[ABC_ERRLEN];
    struct model *pre;
    if (model_create(&pre, ARCH_SMALLNET, NULL, 1, 28, 28, 10, err)) {
        fprintf(stderr, "smallnet: %s\n", err);
        return 1;
    }
    test_cost_fit(); /* writes LOG_ALL */
    struct sim_log *g;
    if (sim_log_read(LOG_ALL, &g, err) == 0) {
        test_constant_time(pre, g);
        test_w_invariance(pre, g);
        /* a log of another model is refused */
        struct colony_params p = params();
        p.nlayers = 2;
        p.change_dims = 1;
        struct sim_cost cost = {.a = 1};
        struct sim_setup s = {.p = p, .pre = pre, .cost = &cost, .log = g};
        struct sim_result r;
        CHECK(sim_run(&s, 4, 0, &r, err) == ABC_EVALUE &&
                  strstr(err, "codes of 3 layers"),
              "another model's log: %s", err);
        sim_log_destroy(g);
    } else {
        CHECK(0, "%s", err);
    }
    test_overhead_fit();
    test_bad_logs();
    remove(LOG_ALL);
    model_destroy(pre);
    return check_finish("test_simulate");
}

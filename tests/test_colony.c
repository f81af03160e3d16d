/* test_colony.c - the ABC colony (coordinator/colony.c) on one process:
 * the neighbour move against hand-computed values, greedy updates and
 * trial counters, onlooker placement statistics, scouts, the best ever,
 * determinism and exact resume through the checkpoint at every phase
 * boundary (its validation: test_colony_file.c), and that the search
 * improves on a
 * deterministic fitness. The async schedule: results applied out of order
 * (shuffled), greedy updates and trials, the budget exact, every eval id
 * and every role applied once, saved and loaded mid-run (exactly the same
 * search when nothing is in flight; dropped and made again when some is),
 * and its checkpoint fields. Writes its files in the working directory. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <msgpack.h>

#include "check.h"
#include "colony.h"
#include "colony_test_util.h"
#include "core/err.h"
#include "core/rng.h"

/* ---------------------------------------------------------------------
 * Building blocks
 * ------------------------------------------------------------------- */

static void test_neighbour_value(void)
{
    struct {
        int x, xk;
        double phi;
        int K, want;
    } t[] = {
        {5, 3, 0.5, 9, 6},   /* 5 + 0.5*2 = 6 */
        {5, 3, -0.7, 9, 3},  /* 5 - 1.4 = 3.6 -> 3 */
        {5, 3, 0.49, 9, 5},  /* 5.98 -> 5: trunc, not round */
        {3, 5, 0.3, 9, 2},   /* 3 - 0.6 = 2.4 -> 2 */
        {3, 5, -0.3, 9, 3},  /* 3.6 -> 3 */
        {4, 4, 0.9, 9, 4},   /* equal partner: no move */
        {2, 7, 0.9, 9, 1},   /* 2 - 4.5 = -2.5 -> -2 -> clipped to 1 */
        {1, 2, 0.6, 9, 1},   /* 0.4 -> 0 -> 1 */
        {2, 5, 0.5, 9, 1},   /* 0.5 -> 0 -> 1 */
        {8, 1, 0.99, 9, 9},  /* 14.93 -> 14 -> clipped to 9 */
        {1, 9, -1.0, 9, 9},  /* 1 + 8 = 9 */
        {6, 2, 0.75, 7, 7},  /* 9 -> clipped to K = 7 */
        {6, 2, -0.75, 7, 3}, /* 3 */
        {2, 9, -0.1, 10, 2}, /* 2.7 -> 2 */
        {9, 2, -0.2, 10, 7}, /* 9 - 1.4 = 7.6 -> 7 */
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        int v = colony_neighbour_value(t[i].x, t[i].xk, t[i].phi, t[i].K);
        CHECK(v == t[i].want, "x %d xk %d phi %g K %d: got %d, want %d", t[i].x,
              t[i].xk, t[i].phi, t[i].K, v, t[i].want);
    }
    CHECK(colony_onlooker_prob(0.5, 1.0) == 0.55, "p(0.5/1)");
    CHECK(colony_onlooker_prob(1.0, 1.0) == 1.0, "p(max)");
    CHECK(colony_onlooker_prob(0.0, 0.8) == 0.1, "p(0)");
    CHECK(colony_onlooker_prob(-3.0, 0.0) == 1.0, "max_fit 0: all 1");
    CHECK(colony_onlooker_prob(-3.0, -1.0) == 1.0, "max_fit < 0: all 1");
}

static void test_code_to_channels(void)
{
    int full[] = {64, 3, 10, 1, 16, 512};
    int code[] = {7, 3, 10, 5, 1, 9};
    int want[] = {44, 1, 10, 1, 1, 460}; /* floor(c*code/10), at least 1 */
    int out[6];
    colony_code_to_channels(code, full, 6, out);
    for (int j = 0; j < 6; j++)
        CHECK(out[j] == want[j], "layer %d: %d kept, want %d", j, out[j],
              want[j]);
}

static void test_params(void)
{
    char err[ABC_ERRLEN];
    struct colony_params p = ref_params(1);
    CHECK(colony_params_check(&p, err) == 0, "ref params: %s", err);
    struct {
        struct colony_params p;
        const char *field;
    } bad[8];
    for (int i = 0; i < 8; i++)
        bad[i].p = p;
    bad[0].p.nlayers = 0, bad[0].field = "params.nlayers";
    bad[1].p.K = 11, bad[1].field = "params.k";
    bad[2].p.K = 0, bad[2].field = "params.k";
    bad[3].p.sn = 1, bad[3].field = "params.sn";
    bad[4].p.limit = -1, bad[4].field = "params.limit";
    bad[5].p.change_dims = 14, bad[5].field = "params.change_dims";
    bad[6].p.max_cycles = -1, bad[6].field = "params.max_cycles";
    bad[7].p.redraw_same = 2, bad[7].field = "params.redraw_same";
    for (int i = 0; i < 8; i++) {
        struct colony *c = (struct colony *)1;
        err[0] = '\0';
        int rc = colony_create(&c, &bad[i].p, err);
        CHECK(rc == ABC_EVALUE && c == NULL && strstr(err, bad[i].field),
              "bad %s: rc %d, err \"%s\"", bad[i].field, rc, err);
    }
    struct colony_params q = p;
    CHECK(colony_params_match(&p, &q, err) == 0, "same params: %s", err);
    q.limit = 6;
    CHECK(colony_params_match(&p, &q, err) == ABC_EVALUE &&
              strstr(err, "params.limit differs: 5 vs 6"),
          "limit mismatch: %s", err);
    q = p;
    q.seed = 2;
    CHECK(colony_params_match(&p, &q, err) == ABC_EVALUE &&
              strstr(err, "params.seed"),
          "seed mismatch: %s", err);
    uint64_t lo, hi;
    colony_cost(&p, &lo, &hi);
    CHECK(lo == 10 + 10 * 20 && hi == lo + 10, "cost %llu..%llu",
          (unsigned long long)lo, (unsigned long long)hi);
}

/* colony_neighbour alone: positions uniform over all layers (the last
 * included), at most change_dims changed, partner != i, bounds of the
 * formula, redraw_same terminating on a converged colony. */
static void test_neighbour_move(void)
{
    enum { L = 13, SN = 4, DRAWS = 200000 };
    struct colony_params p = ref_params(0);
    p.sn = SN;
    int codes[SN * L], out[L];
    for (int j = 0; j < L; j++) {
        codes[0 * L + j] = 1;
        codes[1 * L + j] = 9;
        codes[2 * L + j] = 1 + j % 9;
        codes[3 * L + j] = 5;
    }
    for (int dims = 1; dims <= L; dims += (dims == 2 ? L - 2 : 1)) {
        p.change_dims = dims;
        long sel[L] = {0}, partner_count[SN] = {0};
        int bad_partner = 0, too_many = 0, out_of_bounds = 0;
        struct rng r;
        rng_seed(&r, 99 + (uint64_t)dims);
        for (int d = 0; d < DRAWS; d++) {
            int i = d % SN, unch;
            int k = colony_neighbour(&p, codes, i, &r, out, &unch, NULL);
            if (k == i || k < 0 || k >= SN)
                bad_partner++;
            else if (i == 0)
                partner_count[k]++;
            int changed = 0;
            for (int j = 0; j < L; j++) {
                int x = codes[i * L + j], xk = codes[k * L + j];
                int dd = abs(x - xk);
                int lo = x - dd < 1 ? 1 : x - dd, hi = x + dd > 9 ? 9 : x + dd;
                if (out[j] < lo || out[j] > hi) out_of_bounds++;
                if (out[j] != x) {
                    changed++;
                    if (i == 0 && k == 1) sel[j]++;
                }
            }
            if (changed > dims) too_many++;
            CHECK(unch == (changed == 0), "unchanged flag %d, %d changed", unch,
                  changed);
        }
        CHECK(!bad_partner && !too_many && !out_of_bounds,
              "dims %d: %d bad partners, %d moves over change_dims, %d values "
              "outside the formula's range",
              dims, bad_partner, too_many, out_of_bounds);
        /* source 0 (all 1) against partner 1 (all 9): v = trunc(1-8phi)
         * is clipped back to 1 for phi > -1/8: P(change) = 7/16 per chosen
         * position; positions uniform: sel[j] = n01*dims/L*7/16. */
        double expect = (double)partner_count[1] * dims / L * 7.0 / 16.0;
        for (int j = 0; j < L; j++)
            CHECK(fabs(sel[j] - expect) < 5 * sqrt(expect),
                  "dims %d: layer %d changed %ld times, expected about %.0f",
                  dims, j, sel[j], expect);
        for (int k = 1; k < SN; k++)
            CHECK(fabs(partner_count[k] - DRAWS / SN / (SN - 1.0)) <
                      5 * sqrt(DRAWS / SN / (SN - 1.0)),
                  "partner %d of source 0 drawn %ld times of %d", k,
                  partner_count[k], DRAWS / SN);
    }
    /* A converged colony: no move can differ; redraw_same gives up. */
    p.change_dims = 2;
    p.redraw_same = 1;
    for (int i = 0; i < SN * L; i++)
        codes[i] = 4;
    struct rng r;
    rng_seed(&r, 5);
    int unch = 0, redraws = -1;
    colony_neighbour(&p, codes, 2, &r, out, &unch, &redraws);
    CHECK(unch == 1, "converged colony: a move claims to change the code");
    CHECK(redraws == COLONY_MAX_REDRAWS - 1,
          "converged colony: %d redraws counted, expected %d", redraws,
          COLONY_MAX_REDRAWS - 1);
    /* redraw_same never returns an unchanged move when one is possible */
    codes[1 * L + 12] = 9; /* only source 1's last layer differs */
    int changed_last = 0, unchanged = 0, counted_ok = 1;
    for (int d = 0; d < 2000; d++) {
        colony_neighbour(&p, codes, 0, &r, out, &unch, &redraws);
        unchanged += unch;
        changed_last += out[12] != 4;
        /* a kept changed move was preceded by redraws unchanged ones */
        counted_ok &= redraws >= 0 && redraws < COLONY_MAX_REDRAWS &&
                      (unch ? redraws == COLONY_MAX_REDRAWS - 1 : 1);
    }
    CHECK(counted_ok, "redraw counts out of range");
    printf("redraw_same with one differing entry: %d of 2000 moves "
           "unchanged, last layer moved %d times\n",
           unchanged, changed_last);
    CHECK(unchanged < 2000 / 20, "redraw_same left %d of 2000 unchanged",
          unchanged);
}

/* ---------------------------------------------------------------------
 * Phases and greedy updates
 * ------------------------------------------------------------------- */

static void test_init_batch(void)
{
    char err[ABC_ERRLEN];
    struct colony_params p = ref_params(11);
    struct colony *c;
    CHECK(colony_create(&c, &p, err) == 0, "create: %s", err);
    const struct candidate *b, *b2;
    int n, n2;
    CHECK(colony_next_batch(c, &b, &n, err) == 0 && n == p.sn,
          "init batch of %d", n);
    CHECK(colony_next_batch(c, &b2, &n2, err) == 0 && b2 == b && n2 == n,
          "asking again gives the same batch");
    int counts[10] = {0};
    for (int i = 0; i < n; i++) {
        CHECK(b[i].index == i && b[i].source == i && b[i].partner == -1,
              "init candidate %d: index %d source %d partner %d", i, b[i].index,
              b[i].source, b[i].partner);
        CHECK(b[i].eval_id == (uint64_t)i, "eval id %llu",
              (unsigned long long)b[i].eval_id);
        CHECK(b[i].seed == rng_derive(p.seed, 0, COLONY_INIT, (uint64_t)i),
              "init candidate %d: seed not rng_derive(seed, 0, init, %d)", i,
              i);
        for (int j = 0; j < p.nlayers; j++) {
            CHECK(b[i].code[j] >= 1 && b[i].code[j] <= p.K, "code %d",
                  b[i].code[j]);
            if (b[i].code[j] >= 1 && b[i].code[j] <= p.K)
                counts[b[i].code[j]]++;
        }
    }
    for (int v = 1; v <= p.K; v++)
        CHECK(counts[v] > 0, "value %d never drawn in 130 entries", v);
    double f[10];
    for (int i = 0; i < n; i++)
        f[i] = test_fitness(&p, b[i].code, b[i].seed);
    int *init0 = malloc(sizeof(int) * (size_t)p.nlayers);
    memcpy(init0, b[3].code, sizeof(int) * (size_t)p.nlayers);
    CHECK(colony_apply(c, f, err) == 0, "apply: %s", err);
    CHECK(c->phase == COLONY_EMPLOYED && c->cycle == 0 &&
              c->evaluations == 10 && c->next_eval_id == 10,
          "after init: phase %s cycle %d evals %llu",
          colony_phase_name(c->phase), c->cycle,
          (unsigned long long)c->evaluations);
    int best = 0;
    for (int i = 0; i < n; i++) {
        CHECK(c->foods[i].trial == 0 && c->foods[i].fitness == f[i],
              "source %d: trial %d", i, c->foods[i].trial);
        if (f[i] > f[best]) best = i;
    }
    CHECK(!memcmp(c->foods[3].code, init0, sizeof(int) * (size_t)p.nlayers),
          "source 3 holds init candidate 3");
    CHECK(c->has_best && c->best_fitness == f[best] &&
              c->best_eval_id == (uint64_t)best,
          "best after init: %g (eval %llu), want %g (eval %d)", c->best_fitness,
          (unsigned long long)c->best_eval_id, f[best], best);
    free(init0);
    colony_destroy(c);

    /* max_cycles = 0: init and done */
    p.max_cycles = 0;
    CHECK(colony_create(&c, &p, err) == 0, "create: %s", err);
    colony_next_batch(c, &b, &n, err);
    for (int i = 0; i < n; i++)
        f[i] = 0.5;
    CHECK(colony_apply(c, f, err) == 0 && colony_done(c) && c->cycle == 0,
          "max_cycles 0: done after init");
    CHECK(colony_next_batch(c, &b, &n, err) == ABC_EVALUE && n == 0,
          "no batch once done");
    colony_destroy(c);
}

/* The fitness of every candidate is chosen by hand; trials, replacements,
 * best and scouts are followed exactly. */
static void test_greedy(void)
{
    char err[ABC_ERRLEN];
    struct colony_params p = ref_params(0);
    p.nlayers = 5, p.sn = 4, p.limit = 2, p.max_cycles = 3;
    size_t csz = sizeof(int) * 5;
    struct colony *c = NULL;
    const struct candidate *b;
    int n, found = 0;
    /* a seed whose first onlooker batch puts two onlookers on a source */
    for (uint64_t seed = 1; seed < 200 && !found; seed++) {
        colony_destroy(c);
        p.seed = seed;
        colony_create(&c, &p, err);
        double f0[4] = {0.5, 0.5, 0.5, 0.5}, f1[4] = {0.6, 0.5, 0.4, 0.7};
        colony_next_batch(c, &b, &n, err);
        colony_apply(c, f0, err);
        colony_next_batch(c, &b, &n, err);
        colony_apply(c, f1, err);
        colony_next_batch(c, &b, &n, err);
        for (int i = 0; i < n && !found; i++)
            for (int j = i + 1; j < n; j++)
                if (b[i].source == b[j].source) found = 1;
    }
    CHECK(found, "no seed below 200 puts two onlookers on one source");
    colony_destroy(c); /* p.seed is the seed found */

    /* init, all equal: best is the first */
    CHECK(colony_create(&c, &p, err) == 0, "create: %s", err);
    colony_next_batch(c, &b, &n, err);
    double f0[4] = {0.5, 0.5, 0.5, 0.5};
    CHECK(colony_apply(c, f0, err) == 0, "init: %s", err);
    CHECK(c->best_eval_id == 0 && c->best_fitness == 0.5,
          "ties: best is the first (eval %llu)",
          (unsigned long long)c->best_eval_id);

    /* employed: fitter replaces (trial 0), equal or worse counts a trial */
    int old[4][5];
    for (int i = 0; i < 4; i++)
        memcpy(old[i], c->foods[i].code, csz);
    colony_next_batch(c, &b, &n, err);
    CHECK(n == 4, "employed batch of %d", n);
    int cand[4][5];
    for (int i = 0; i < n; i++) {
        CHECK(b[i].source == i && b[i].partner != i && b[i].partner >= 0 &&
                  b[i].partner < 4 && b[i].eval_id == 4 + (uint64_t)i,
              "employed candidate %d: source %d partner %d", i, b[i].source,
              b[i].partner);
        memcpy(cand[i], b[i].code, csz);
    }
    double f1[4] = {0.6, 0.5, 0.4, 0.7};
    CHECK(colony_apply(c, f1, err) == 0, "employed: %s", err);
    int want_trial[4] = {0, 1, 1, 0};
    for (int i = 0; i < 4; i++) {
        CHECK(c->foods[i].trial == want_trial[i], "source %d trial %d, want %d",
              i, c->foods[i].trial, want_trial[i]);
        const int *want = want_trial[i] ? old[i] : cand[i];
        CHECK(!memcmp(c->foods[i].code, want, csz), "source %d code", i);
        CHECK(c->foods[i].fitness == (want_trial[i] ? 0.5 : f1[i]),
              "source %d fitness %g", i, c->foods[i].fitness);
    }
    CHECK(c->best_fitness == 0.7 && c->best_eval_id == 7 &&
              !memcmp(c->best_code, cand[3], csz),
          "best after employed: %g eval %llu", c->best_fitness,
          (unsigned long long)c->best_eval_id);

    /* onlookers, applied in order: the first on a doubled source replaces
     * it, the second is compared with the replacement */
    colony_next_batch(c, &b, &n, err);
    CHECK(n == 4, "onlooker batch of %d (sn)", n);
    int first = -1, second = -1;
    for (int i = 0; i < n && first < 0; i++)
        for (int j = i + 1; j < n; j++)
            if (b[i].source == b[j].source) {
                first = i, second = j;
                break;
            }
    CHECK(first >= 0, "the chosen seed has no doubled source");
    if (first < 0) {
        colony_destroy(c);
        return;
    }
    int s = b[first].source;
    int count[4] = {0}, trial_before[4];
    for (int i = 0; i < 4; i++)
        trial_before[i] = c->foods[i].trial;
    for (int i = 0; i < n; i++)
        count[b[i].source]++;
    double f2[4] = {0, 0, 0, 0};
    f2[first] = 0.9;
    f2[second] = 0.8;
    int first_code[5];
    memcpy(first_code, b[first].code, csz);
    uint64_t first_id = b[first].eval_id;
    CHECK(colony_apply(c, f2, err) == 0, "onlooker: %s", err);
    /* `first` is the first onlooker on s (an earlier one would have been
     * found with its later duplicate): it resets s, each after it counts */
    for (int i = 0; i < 4; i++) {
        int want = i == s ? count[s] - 1 : trial_before[i] + count[i];
        CHECK(c->foods[i].trial == want,
              "onlooker: source %d trial %d, want %d", i, c->foods[i].trial,
              want);
    }
    CHECK(c->foods[s].fitness == 0.9 &&
              !memcmp(c->foods[s].code, first_code, csz),
          "doubled source %d holds the first onlooker (0.9), fitness %g", s,
          c->foods[s].fitness);
    CHECK(c->best_fitness == 0.9 && c->best_eval_id == first_id,
          "best after onlookers %g", c->best_fitness);

    /* scout: the largest trial, first on ties, only when >= limit; it
     * replaces unconditionally, even when worse */
    CHECK(c->phase == COLONY_SCOUT, "phase %s", colony_phase_name(c->phase));
    int t0[4] = {1, 3, 3, 0};
    for (int i = 0; i < 4; i++)
        c->foods[i].trial = t0[i];
    colony_next_batch(c, &b, &n, err);
    CHECK(n == 1 && b[0].source == 1 && b[0].partner == -1,
          "scout: %d candidates, source %d (want 1: first of the tied max)", n,
          n ? b[0].source : -1);
    int scode[5];
    memcpy(scode, b[0].code, csz);
    for (int j = 0; j < 5; j++)
        CHECK(scode[j] >= 1 && scode[j] <= p.K, "scout code %d", scode[j]);
    double fs = 0.1;
    CHECK(colony_apply(c, &fs, err) == 0, "scout: %s", err);
    CHECK(c->foods[1].trial == 0 && c->foods[1].fitness == 0.1 &&
              !memcmp(c->foods[1].code, scode, csz),
          "scout replaced source 1: trial %d fitness %g", c->foods[1].trial,
          c->foods[1].fitness);
    CHECK(c->foods[0].trial == 1 && c->foods[2].trial == 3 &&
              c->foods[3].trial == 0,
          "other trials untouched");
    CHECK(c->best_fitness == 0.9, "a worse scout leaves the best");
    CHECK(c->phase == COLONY_EMPLOYED && c->cycle == 1 &&
              c->evaluations == 4 + 4 + 4 + 1,
          "cycle 1: phase %s cycle %d evals %llu", colony_phase_name(c->phase),
          c->cycle, (unsigned long long)c->evaluations);

    /* errors leave the colony untouched */
    colony_next_batch(c, &b, &n, err);
    double fbad[4] = {0.1, NAN, 0.1, 0.1};
    struct colony_food keep[4];
    memcpy(keep, c->foods, sizeof keep);
    CHECK(colony_apply(c, fbad, err) == ABC_EVALUE &&
              strstr(err, "candidate 1"),
          "NaN fitness rejected: %s", err);
    CHECK(colony_record(c, 4, 0.5, err) == ABC_EVALUE, "index 4 of 4");
    CHECK(colony_record(c, 0, INFINITY, err) == ABC_EVALUE, "inf recorded");
    CHECK(colony_record(c, 0, 0.1, err) == 0, "record: %s", err);
    CHECK(colony_apply(c, NULL, err) == ABC_EVALUE &&
              strstr(err, "candidate 1"),
          "missing result: %s", err);
    CHECK(!memcmp(keep, c->foods, sizeof keep) && c->phase == COLONY_EMPLOYED &&
              c->evaluations == 13,
          "failed applies changed the colony");
    double worse[4] = {-1, -1, -1, -1};
    for (int i = 1; i < 4; i++)
        colony_record(c, i, -1, err);
    CHECK(colony_apply(c, NULL, err) == 0, "apply recorded: %s", err);
    CHECK(colony_apply(c, worse, err) == ABC_EVALUE, "apply without a batch");
    colony_next_batch(c, &b, &n, err);
    colony_apply(c, worse, err);

    /* no trial reaches the limit: an empty scout batch, still applied */
    for (int i = 0; i < 4; i++)
        c->foods[i].trial = 1;
    CHECK(colony_next_batch(c, &b, &n, err) == 0 && n == 0,
          "scout below limit: %d candidates", n);
    CHECK(colony_apply(c, NULL, err) == 0 && c->cycle == 2 &&
              c->phase == COLONY_EMPLOYED,
          "empty scout batch advances: %s", err);
    colony_next_batch(c, &b, &n, err);
    colony_apply(c, worse, err);
    colony_next_batch(c, &b, &n, err);
    colony_apply(c, worse, err);
    /* trial == limit exactly is enough; ties go to the first */
    int t2[4] = {2, 0, 0, 2};
    for (int i = 0; i < 4; i++)
        c->foods[i].trial = t2[i];
    colony_next_batch(c, &b, &n, err);
    CHECK(n == 1 && b[0].source == 0, "scout at trial == limit: source %d",
          n ? b[0].source : -1);
    fs = 0.2;
    colony_apply(c, &fs, err);
    CHECK(colony_done(c) && c->cycle == 3, "done after 3 cycles");
    CHECK(colony_apply(c, &fs, err) == ABC_EVALUE, "apply when done");
    colony_destroy(c);
}

/* Onlooker placement over many seeds: p = 1 sources are placed on every
 * pass, a p = 0.1 source on about 10% of its visits, p = 0.55 on 55%;
 * always sn onlookers, in walk order. */
static void test_onlooker_stats(void)
{
    enum { SN = 10, SEEDS = 3000 };
    char err[ABC_ERRLEN];
    struct colony_params p = ref_params(0);
    p.nlayers = 6, p.sn = SN;
    double finit[SN] = {1.0, 0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1.0};
    double worse[SN];
    for (int i = 0; i < SN; i++)
        worse[i] = -1;
    long placed[SN] = {0}, visits[SN] = {0};
    int bad_count = 0, bad_order = 0;
    for (int sd = 0; sd < SEEDS; sd++) {
        struct colony *c;
        const struct candidate *b;
        int n;
        p.seed = 1000 + (uint64_t)sd;
        colony_create(&c, &p, err);
        colony_next_batch(c, &b, &n, err);
        colony_apply(c, finit, err);
        colony_next_batch(c, &b, &n, err);
        colony_apply(c, worse, err);
        colony_next_batch(c, &b, &n, err);
        if (n != SN) bad_count++;
        /* passes: each starts at source 0 (p = 1) and ends at source 9
         * (p = 1) unless the batch fills up first */
        int passes = 0;
        for (int i = 0; i < n; i++) {
            placed[b[i].source]++;
            if (b[i].source == 0) passes++;
            if (i == 0                      ? b[i].source != 0
                : b[i - 1].source == SN - 1 ? b[i].source != 0
                                            : b[i].source <= b[i - 1].source)
                bad_order++;
        }
        for (int s = 0; s < SN; s++)
            visits[s] += passes - 1 + (s <= b[n - 1].source);
        colony_destroy(c);
    }
    CHECK(bad_count == 0, "%d batches without exactly sn onlookers", bad_count);
    CHECK(bad_order == 0,
          "%d placements out of walk order (a p = 1 source skipped)",
          bad_order);
    CHECK(placed[0] == visits[0] && placed[SN - 1] == visits[SN - 1],
          "p = 1 sources: placed %ld/%ld and %ld/%ld visits", placed[0],
          visits[0], placed[SN - 1], visits[SN - 1]);
    double f1 = (double)placed[1] / visits[1];
    long pm = 0, vm = 0;
    for (int s = 2; s < SN - 1; s++)
        pm += placed[s], vm += visits[s];
    double fm = (double)pm / vm;
    printf("onlooker placement: p=0.1 source placed on %.4f of %ld visits, "
           "p=0.55 sources on %.4f of %ld\n",
           f1, visits[1], fm, vm);
    CHECK(f1 > 0.08 && f1 < 0.12, "p = 0.1 source placed on %.4f", f1);
    CHECK(fm > 0.53 && fm < 0.57, "p = 0.55 sources placed on %.4f", fm);

    /* max fitness <= 0: every p is 1, onlookers go 0, 1, ..., sn-1 */
    double zero[SN] = {0}, neg[SN];
    for (int i = 0; i < SN; i++)
        neg[i] = -0.1 * (i + 1);
    for (int k = 0; k < 2; k++) {
        struct colony *c;
        const struct candidate *b;
        int n;
        p.seed = 77;
        colony_create(&c, &p, err);
        colony_next_batch(c, &b, &n, err);
        colony_apply(c, k ? neg : zero, err);
        colony_next_batch(c, &b, &n, err);
        colony_apply(c, worse, err);
        colony_next_batch(c, &b, &n, err);
        int ok = n == SN;
        for (int i = 0; i < n; i++)
            ok = ok && b[i].source == i;
        CHECK(ok, "max fitness %s 0: onlookers not on 0..sn-1", k ? "<" : "==");
        colony_destroy(c);
    }
}

/* ---------------------------------------------------------------------
 * Whole searches
 * ------------------------------------------------------------------- */

struct run_log {
    uint64_t hash;    /* every candidate and fitness, in order */
    uint64_t ncand;   /* candidates evaluated */
    int scouts;       /* scout candidates */
    int nonmono;      /* applies after which the best went down */
    int bad;          /* malformed candidates */
    double init_best; /* best of the init batch */
    double max_fit;   /* max over all evaluated */
    uint64_t max_id;  /* first eval id reaching it */
    long moves, same; /* employed+onlooker candidates, unchanged ones */
    int io_errors;    /* failed saves/loads */
};

/* Runs a whole search with test_fitness. resume = 0: straight through,
 * fitnesses handed to colony_apply. resume = 1: the colony is saved,
 * destroyed and loaded again at every phase boundary and once inside
 * every batch (half the results recorded), results go through
 * colony_record. Returns the final colony. */
static struct colony *run_search(const struct colony_params *p, int resume,
                                 struct run_log *lg)
{
    char err[ABC_ERRLEN];
    const char *path = "colony_resume.msgpack";
    struct colony *c;
    memset(lg, 0, sizeof *lg);
    lg->hash = 0xcbf29ce484222325ULL;
    if (colony_create(&c, p, err) != 0) {
        fprintf(stderr, "create: %s\n", err);
        exit(2);
    }
    double *f = malloc(sizeof(double) * (size_t)p->sn);
    while (!colony_done(c)) {
        const struct candidate *b;
        int n;
        enum colony_phase ph = c->phase;
        double prev_best = c->has_best ? c->best_fitness : -1e300;
        if (colony_next_batch(c, &b, &n, err) != 0) {
            fprintf(stderr, "next_batch: %s\n", err);
            exit(2);
        }
        for (int i = 0; i < n; i++) {
            const struct candidate *cd = &b[i];
            f[i] = test_fitness(p, cd->code, cd->seed);
            hash_u64(&lg->hash, cd->eval_id);
            hash_u64(&lg->hash, cd->seed);
            hash_u64(&lg->hash, (uint64_t)cd->source);
            hash_u64(&lg->hash, (uint64_t)(int64_t)cd->partner);
            for (int j = 0; j < p->nlayers; j++) {
                hash_u64(&lg->hash, (uint64_t)cd->code[j]);
                if (cd->code[j] < 1 || cd->code[j] > p->K) lg->bad++;
            }
            uint64_t fb;
            memcpy(&fb, &f[i], 8);
            hash_u64(&lg->hash, fb);
            if (cd->eval_id != lg->ncand + (uint64_t)i ||
                cd->seed != rng_derive(p->seed, (uint64_t)c->cycle,
                                       (uint64_t)ph, (uint64_t)i))
                lg->bad++;
            if (ph == COLONY_EMPLOYED || ph == COLONY_ONLOOKER) {
                int diff = 0;
                for (int j = 0; j < p->nlayers; j++)
                    diff += cd->code[j] != c->foods[cd->source].code[j];
                if (diff > p->change_dims || cd->unchanged != (diff == 0) ||
                    cd->partner == cd->source)
                    lg->bad++;
                lg->moves++;
                lg->same += diff == 0;
            }
            if (ph == COLONY_SCOUT) lg->scouts++;
            if (lg->ncand + (uint64_t)i == 0 || f[i] > lg->max_fit) {
                lg->max_fit = f[i];
                lg->max_id = cd->eval_id;
            }
        }
        lg->ncand += (uint64_t)n;
        if (!resume) {
            if (colony_apply(c, f, err) != 0) {
                fprintf(stderr, "apply: %s\n", err);
                exit(2);
            }
        } else {
            /* half the results, then stop mid-batch and come back */
            for (int i = 0; i < n; i += 2)
                colony_record(c, i, f[i], err);
            if (colony_save(c, path, err) != 0) lg->io_errors++;
            colony_destroy(c);
            if (colony_load(path, &c, err) != 0) {
                fprintf(stderr, "load mid-batch: %s\n", err);
                exit(2);
            }
            const struct candidate *b2;
            int n2;
            colony_next_batch(c, &b2, &n2, err);
            if (n2 != n) lg->bad++;
            for (int i = 0; i < n2; i++) {
                if ((i % 2 == 0) != (c->have[i] != 0)) lg->bad++;
                if (i % 2) colony_record(c, i, f[i], err);
            }
            if (colony_apply(c, NULL, err) != 0) {
                fprintf(stderr, "apply recorded: %s\n", err);
                exit(2);
            }
            if (colony_save(c, path, err) != 0) lg->io_errors++;
            colony_destroy(c);
            if (colony_load(path, &c, err) != 0) {
                fprintf(stderr, "load at boundary: %s\n", err);
                exit(2);
            }
            if (colony_params_match(&c->p, p, err) != 0) lg->bad++;
        }
        if (ph == COLONY_INIT) lg->init_best = c->best_fitness;
        if (c->best_fitness < prev_best) lg->nonmono++;
    }
    free(f);
    return c;
}

static void test_whole_search(void)
{
    double sum_init = 0, sum_final = 0;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        struct colony_params p = ref_params(seed);
        struct run_log lg;
        struct colony *c = run_search(&p, 0, &lg);
        uint64_t lo, hi;
        colony_cost(&p, &lo, &hi);
        CHECK(colony_done(c) && c->cycle == p.max_cycles, "seed %llu: done",
              (unsigned long long)seed);
        CHECK(lg.bad == 0, "seed %llu: %d malformed candidates",
              (unsigned long long)seed, lg.bad);
        CHECK(c->evaluations == lg.ncand &&
                  lg.ncand == lo + (uint64_t)lg.scouts && lg.ncand <= hi,
              "seed %llu: %llu evaluations, formula sn + cycles*2sn + scouts "
              "= %llu",
              (unsigned long long)seed, (unsigned long long)c->evaluations,
              (unsigned long long)(lo + (uint64_t)lg.scouts));
        CHECK(lg.nonmono == 0, "seed %llu: best went down %d times",
              (unsigned long long)seed, lg.nonmono);
        CHECK(c->best_fitness == lg.max_fit && c->best_eval_id == lg.max_id,
              "seed %llu: best %g (eval %llu), max over all %g (eval %llu)",
              (unsigned long long)seed, c->best_fitness,
              (unsigned long long)c->best_eval_id, lg.max_fit,
              (unsigned long long)lg.max_id);
        double best_src = c->foods[0].fitness;
        for (int i = 1; i < p.sn; i++)
            if (c->foods[i].fitness > best_src) best_src = c->foods[i].fitness;
        CHECK(c->best_fitness >= best_src, "best below a source");
        CHECK(c->best_fitness > lg.init_best,
              "seed %llu: no improvement over init (%g vs %g)",
              (unsigned long long)seed, c->best_fitness, lg.init_best);
        sum_init += lg.init_best;
        sum_final += c->best_fitness;
        colony_destroy(c);
    }
    printf("search on the test fitness (optimum 1.0), 8 seeds: mean best "
           "of init %.4f -> after 10 cycles %.4f\n",
           sum_init / 8, sum_final / 8);
}

static void test_determinism_and_resume(void)
{
    for (int redraw = 0; redraw <= 1; redraw++) {
        struct colony_params p = ref_params(42);
        p.redraw_same = redraw;
        p.limit = 2; /* scouts happen */
        struct run_log a, b, r;
        struct colony *ca = run_search(&p, 0, &a);
        struct colony *cb = run_search(&p, 0, &b);
        struct colony *cr = run_search(&p, 1, &r);
        CHECK(a.hash == b.hash && a.ncand == b.ncand && same_colony(ca, cb),
              "redraw %d: two runs differ", redraw);
        CHECK(r.bad == 0 && r.io_errors == 0,
              "redraw %d: resume run: %d bad, %d io errors", redraw, r.bad,
              r.io_errors);
        CHECK(a.hash == r.hash && a.ncand == r.ncand && same_colony(ca, cr),
              "redraw %d: a run saved and loaded at every phase differs from "
              "an uninterrupted one (%llu vs %llu candidates)",
              redraw, (unsigned long long)a.ncand, (unsigned long long)r.ncand);
        CHECK(a.scouts > 0, "redraw %d: no scout with limit 2", redraw);
        printf("redraw %d: %llu candidates, %d scouts, final best %.6f, "
               "identical with save/load at every phase\n",
               redraw, (unsigned long long)a.ncand, a.scouts, ca->best_fitness);
        p.seed = 43;
        struct run_log d;
        struct colony *cd = run_search(&p, 0, &d);
        CHECK(d.hash != a.hash, "redraw %d: seed 43 gives the seed 42 search",
              redraw);
        colony_destroy(ca);
        colony_destroy(cb);
        colony_destroy(cr);
        colony_destroy(cd);
    }
}

/* How often a neighbour move leaves the code unchanged, with and without
 * redraw_same, and what redrawing does to the search. */
static void test_redraw_measure(void)
{
    enum { SEEDS = 20 };
    double frac[2], best[2];
    for (int redraw = 0; redraw <= 1; redraw++) {
        long moves = 0, same = 0;
        double sb = 0;
        for (uint64_t s = 1; s <= SEEDS; s++) {
            struct colony_params p = ref_params(500 + s);
            p.redraw_same = redraw;
            struct run_log lg;
            struct colony *c = run_search(&p, 0, &lg);
            moves += lg.moves, same += lg.same;
            sb += c->best_fitness;
            colony_destroy(c);
        }
        frac[redraw] = (double)same / moves;
        best[redraw] = sb / SEEDS;
    }
    printf("unchanged neighbour moves (K=9, 13 layers, change_dims 2, sn 10, "
           "10 cycles, %d seeds): %.1f%% without redraw, %.1f%% with; mean "
           "final best %.4f vs %.4f\n",
           SEEDS, 100 * frac[0], 100 * frac[1], best[0], best[1]);
    CHECK(frac[0] > 0.05,
          "expected truncation to leave some moves "
          "unchanged (%.3f)",
          frac[0]);
    CHECK(frac[1] < frac[0] / 4, "redraw_same left %.3f unchanged", frac[1]);
}

/* ---------------------------------------------------------------------
 * The async schedule
 * ------------------------------------------------------------------- */

/* A candidate the test holds while a "worker" evaluates it. */
struct held {
    uint64_t eval_id, seed, role;
    int cycle, index, source;
    enum colony_phase phase;
    int code[32];
};

/* How run_async feeds the colony. */
struct async_mode {
    int workers;         /* candidates kept in flight */
    uint64_t order_seed; /* which in-flight result comes back next */
    int save_every;      /* > 0: save, destroy and load every that many
                            results, with candidates in flight (dropped) */
    int drain_every;     /* > 0: every that many results, let all in-flight
                            results come back before issuing more */
    int save_at_drain;   /* save, destroy and load when drained */
};

struct async_log {
    uint64_t hash;    /* eval ids, seeds, codes, fitness as applied */
    uint64_t issued;  /* candidates made */
    uint64_t applied; /* results applied (after init) */
    uint64_t dropped; /* in flight at a save-and-load */
    uint64_t scouts;  /* scout results applied */
    int bad;          /* malformed candidates or updates */
    int nonmono;      /* best went down */
    int cycle_back;   /* c->cycle went down */
    int io_errors;
    int bad_roles; /* a move role applied other than once, a scout
                      role more than once */
    int twice_ok;  /* applying an id twice was accepted */
    double init_best, max_fit;
    uint64_t max_id, max_seed;
};

static uint64_t role_of(const struct colony_params *p, const struct held *h)
{
    uint64_t R = 2 * (uint64_t)p->sn + 1;
    uint64_t k = h->phase == COLONY_EMPLOYED   ? (uint64_t)h->index
                 : h->phase == COLONY_ONLOOKER ? (uint64_t)p->sn + h->index
                                               : 2 * (uint64_t)p->sn;
    return (uint64_t)h->cycle * R + k;
}

static struct colony *reload(struct colony *c, const char *path,
                             struct async_log *lg)
{
    char err[ABC_ERRLEN];
    struct colony *l;
    if (colony_save(c, path, err) != 0) lg->io_errors++;
    if (colony_load(path, &l, err) != 0) {
        fprintf(stderr, "async load: %s\n", err);
        exit(2);
    }
    if (!same_colony(c, l) || !l->async || l->ninflight != 0 ||
        l->nredo != c->nredo + c->ninflight || l->role_next != c->role_next ||
        l->walk != c->walk || l->best_seed != c->best_seed)
        lg->bad++;
    colony_destroy(c);
    return l;
}

/* Runs a sync init, then the async schedule to the end on test_fitness,
 * checking every candidate and every update. */
static struct colony *run_async(const struct colony_params *p,
                                const struct async_mode *m,
                                struct async_log *lg)
{
    char err[ABC_ERRLEN];
    const char *path = "colony_async.msgpack";
    struct colony *c;
    memset(lg, 0, sizeof *lg);
    lg->hash = 0xcbf29ce484222325ULL;
    if (colony_create(&c, p, err) != 0) {
        fprintf(stderr, "create: %s\n", err);
        exit(2);
    }
    const struct candidate *b;
    int n;
    double f0[64];
    colony_next_batch(c, &b, &n, err);
    for (int i = 0; i < n; i++)
        f0[i] = test_fitness(p, b[i].code, b[i].seed);
    colony_apply(c, f0, err);
    lg->init_best = lg->max_fit = c->best_fitness;
    lg->max_id = c->best_eval_id;
    lg->max_seed = c->best_seed;
    if (colony_async_begin(c, err) != 0) {
        fprintf(stderr, "async begin: %s\n", err);
        exit(2);
    }
    uint64_t R = 2 * (uint64_t)p->sn + 1;
    uint64_t nroles = (uint64_t)p->max_cycles * R;
    unsigned char *role_done = calloc(nroles + 1, 1);
    size_t idcap = 1 << 16;
    unsigned char *id_done = calloc(idcap, 1);
    struct held *h = malloc(sizeof *h * (size_t)(m->workers + 1));
    int nheld = 0, draining = 0;
    struct rng order;
    rng_seed(&order, m->order_seed);
    uint64_t next_id = c->next_eval_id;
    while (!colony_done(c)) {
        while (!draining && nheld < m->workers) {
            const struct candidate *cd;
            int rc = colony_async_next(c, &cd, err);
            if (rc < 0) {
                fprintf(stderr, "async next: %s\n", err);
                exit(2);
            }
            if (rc == 0) {
                if (cd != NULL || (nheld == 0 && !colony_done(c))) lg->bad++;
                break;
            }
            struct held *x = &h[nheld++];
            x->eval_id = cd->eval_id;
            x->seed = cd->seed;
            x->cycle = cd->cycle;
            x->phase = cd->phase;
            x->index = cd->index;
            x->source = cd->source;
            memcpy(x->code, cd->code, sizeof(int) * (size_t)p->nlayers);
            x->role = role_of(p, x);
            lg->issued++;
            /* a new id each time, the seed from the role, codes in range */
            if (cd->eval_id != next_id++ || cd->eval_id >= idcap ||
                cd->seed != rng_derive(p->seed, (uint64_t)cd->cycle,
                                       (uint64_t)cd->phase,
                                       (uint64_t)cd->index) ||
                x->role >= nroles || cd->cycle < c->cycle || cd->source < 0 ||
                cd->source >= p->sn)
                lg->bad++;
            for (int j = 0; j < p->nlayers; j++)
                if (cd->code[j] < 1 || cd->code[j] > p->K) lg->bad++;
            if (cd->phase == COLONY_SCOUT) {
                if (cd->partner != -1 || c->foods[cd->source].trial < p->limit)
                    lg->bad++;
            } else {
                int diff = 0;
                for (int j = 0; j < p->nlayers; j++)
                    diff += cd->code[j] != c->foods[cd->source].code[j];
                if (diff > p->change_dims || cd->unchanged != (diff == 0) ||
                    cd->partner == cd->source || cd->partner < 0 ||
                    (cd->phase == COLONY_EMPLOYED && cd->source != cd->index) ||
                    (cd->phase != COLONY_EMPLOYED &&
                     cd->phase != COLONY_ONLOOKER))
                    lg->bad++;
            }
            if (colony_async_inflight(c) != nheld) lg->bad++;
        }
        if (nheld == 0) {
            if (draining) {
                draining = 0;
                if (m->save_at_drain) c = reload(c, path, lg);
                continue;
            }
            if (!colony_done(c)) lg->bad++; /* stuck */
            break;
        }
        /* a result comes back: any of those in flight */
        int k = (int)rng_below(&order, (uint64_t)nheld);
        struct held x = h[k];
        h[k] = h[--nheld];
        double f = test_fitness(p, x.code, x.seed);
        struct colony_food old = c->foods[x.source];
        int old_code[32];
        memcpy(old_code, old.code, sizeof(int) * (size_t)p->nlayers);
        double prev_best = c->best_fitness;
        int prev_cycle = c->cycle;
        if (colony_async_apply(c, x.eval_id, f, err) != 0) {
            fprintf(stderr, "async apply: %s\n", err);
            exit(2);
        }
        lg->applied++;
        const struct colony_food *fd = &c->foods[x.source];
        size_t csz = sizeof(int) * (size_t)p->nlayers;
        if (x.phase == COLONY_SCOUT || f > old.fitness) {
            if (memcmp(fd->code, x.code, csz) || fd->fitness != f ||
                fd->trial != 0)
                lg->bad++;
        } else if (memcmp(fd->code, old_code, csz) ||
                   fd->fitness != old.fitness || fd->trial != old.trial + 1) {
            lg->bad++;
        }
        if (x.phase == COLONY_SCOUT) lg->scouts++;
        if (c->best_fitness < prev_best) lg->nonmono++;
        if (c->cycle < prev_cycle) lg->cycle_back++;
        if (f > lg->max_fit) {
            lg->max_fit = f;
            lg->max_id = x.eval_id;
            lg->max_seed = x.seed;
        }
        if (id_done[x.eval_id]++) lg->bad++;
        role_done[x.role]++;
        hash_u64(&lg->hash, x.eval_id);
        hash_u64(&lg->hash, x.seed);
        hash_u64(&lg->hash, (uint64_t)x.source);
        for (int j = 0; j < p->nlayers; j++)
            hash_u64(&lg->hash, (uint64_t)x.code[j]);
        /* the same result again is refused and changes nothing */
        if (lg->applied % 7 == 0) {
            uint64_t ev = c->evaluations;
            if (colony_async_apply(c, x.eval_id, f, err) == 0 ||
                c->evaluations != ev)
                lg->twice_ok++;
        }
        if (m->drain_every && lg->applied % (uint64_t)m->drain_every == 0)
            draining = 1;
        if (m->save_every && lg->applied % (uint64_t)m->save_every == 0 &&
            !colony_done(c)) {
            /* the candidates in flight are dropped: their roles come back */
            lg->dropped += (uint64_t)nheld;
            c = reload(c, path, lg);
            for (int i = 0; i < nheld; i++) {
                int found = 0;
                for (int r = 0; r < c->nredo; r++)
                    found |= c->redo[r] == h[i].role;
                if (!found) lg->bad++;
            }
            nheld = 0;
        }
    }
    for (uint64_t r = 0; r < nroles; r++) {
        int scout_role = r % R == R - 1;
        if (scout_role ? role_done[r] > 1 : role_done[r] != 1) lg->bad_roles++;
    }
    free(role_done);
    free(id_done);
    free(h);
    remove(path);
    return c;
}

static void check_async_run(const struct colony_params *p,
                            const struct async_mode *m, struct colony *c,
                            const struct async_log *lg, const char *what)
{
    char err[ABC_ERRLEN];
    uint64_t lo, hi;
    colony_cost(p, &lo, &hi);
    CHECK(colony_done(c) && c->cycle == p->max_cycles && c->ninflight == 0,
          "%s: not done (phase %s, cycle %d)", what,
          colony_phase_name(c->phase), c->cycle);
    CHECK(lg->bad == 0 && lg->io_errors == 0 && lg->twice_ok == 0,
          "%s: %d bad candidates or updates, %d io errors, %d double "
          "applications accepted",
          what, lg->bad, lg->io_errors, lg->twice_ok);
    CHECK(lg->bad_roles == 0, "%s: %d roles applied other than once", what,
          lg->bad_roles);
    /* the budget, exactly: sn + cycles*2sn + one per scout */
    CHECK(c->evaluations == lo + lg->scouts &&
              (uint64_t)p->sn + lg->applied == c->evaluations &&
              c->evaluations <= hi,
          "%s: %llu evaluations, want sn + cycles*2sn + scouts = %llu", what,
          (unsigned long long)c->evaluations,
          (unsigned long long)(lo + lg->scouts));
    CHECK(lg->issued == lg->applied + lg->dropped &&
              c->next_eval_id == (uint64_t)p->sn + lg->issued,
          "%s: %llu issued, %llu applied, %llu dropped", what,
          (unsigned long long)lg->issued, (unsigned long long)lg->applied,
          (unsigned long long)lg->dropped);
    CHECK(lg->nonmono == 0 && lg->cycle_back == 0,
          "%s: best went down %d times, cycle %d times", what, lg->nonmono,
          lg->cycle_back);
    CHECK(c->best_fitness == lg->max_fit && c->best_eval_id == lg->max_id &&
              c->best_seed == lg->max_seed,
          "%s: best %g (eval %llu), max over all %g (eval %llu)", what,
          c->best_fitness, (unsigned long long)c->best_eval_id, lg->max_fit,
          (unsigned long long)lg->max_id);
    const struct candidate *cd = (const struct candidate *)1;
    CHECK(colony_async_next(c, &cd, err) == 0 && cd == NULL,
          "%s: a candidate after the end", what);
    (void)m;
}

static void test_async_search(void)
{
    int workers[] = {1, 3, 8, 25};
    double sum_init = 0, sum_final = 0;
    int runs = 0;
    for (int w = 0; w < 4; w++) {
        for (uint64_t seed = 1; seed <= 4; seed++) {
            struct colony_params p = ref_params(seed);
            p.limit = 2; /* scouts happen */
            struct async_mode m = {.workers = workers[w],
                                   .order_seed = 100 + seed};
            struct async_log lg;
            struct colony *c = run_async(&p, &m, &lg);
            char what[64];
            snprintf(what, sizeof what, "async %d workers seed %llu",
                     workers[w], (unsigned long long)seed);
            check_async_run(&p, &m, c, &lg, what);
            CHECK(c->best_fitness > lg.init_best,
                  "%s: no improvement over init", what);
            if (w == 1) CHECK(lg.scouts > 0, "%s: no scout with limit 2", what);
            sum_init += lg.init_best;
            sum_final += c->best_fitness;
            runs++;
            colony_destroy(c);
        }
    }
    printf("async search on the test fitness, 1-25 in flight, %d runs: mean "
           "best of init %.4f -> %.4f\n",
           runs, sum_init / runs, sum_final / runs);
    /* what applying results at once, and making candidates from a colony
     * that lags the results in flight, does to the search (measured, not
     * asserted): the same 20 seeds, sync against async */
    enum { SEEDS = 20 };
    int inflight[] = {1, 5, 20};
    double sync_best = 0, async_best[3] = {0, 0, 0};
    for (uint64_t seed = 1; seed <= SEEDS; seed++) {
        struct colony_params p = ref_params(700 + seed);
        struct run_log rl;
        struct colony *c = run_search(&p, 0, &rl);
        sync_best += c->best_fitness / SEEDS;
        colony_destroy(c);
        for (int w = 0; w < 3; w++) {
            struct async_mode m = {.workers = inflight[w], .order_seed = seed};
            struct async_log lg;
            c = run_async(&p, &m, &lg);
            async_best[w] += c->best_fitness / SEEDS;
            colony_destroy(c);
        }
    }
    printf("mean final best over %d seeds (reference params): sync %.4f, "
           "async with 1 / 5 / 20 in flight %.4f / %.4f / %.4f\n",
           SEEDS, sync_best, async_best[0], async_best[1], async_best[2]);
}

static void test_async_determinism_and_resume(void)
{
    struct colony_params p = ref_params(42);
    p.limit = 2;
    struct async_log a, b, d, one, one2, s, r;
    /* the same order of arrival gives the same search; another differs */
    struct async_mode m = {.workers = 4, .order_seed = 7};
    struct colony *ca = run_async(&p, &m, &a);
    struct colony *cb = run_async(&p, &m, &b);
    CHECK(a.hash == b.hash && same_colony(ca, cb),
          "async: one order of arrival, two searches");
    m.order_seed = 8;
    struct colony *cd = run_async(&p, &m, &d);
    CHECK(d.hash != a.hash, "async: another order of arrival, same search");
    /* one in flight: the order cannot differ */
    struct async_mode m1 = {.workers = 1, .order_seed = 1};
    struct colony *c1 = run_async(&p, &m1, &one);
    m1.order_seed = 2;
    struct colony *c12 = run_async(&p, &m1, &one2);
    CHECK(one.hash == one2.hash && same_colony(c1, c12),
          "async, one in flight: differs");
    /* saved and loaded whenever nothing is in flight: exactly the same
     * search as without */
    struct async_mode md = {.workers = 5, .order_seed = 9, .drain_every = 6};
    struct colony *cs = run_async(&p, &md, &s);
    md.save_at_drain = 1;
    struct colony *cr = run_async(&p, &md, &r);
    check_async_run(&p, &md, cr, &r, "async, saved when drained");
    CHECK(s.hash == r.hash && same_colony(cs, cr) && s.issued == r.issued,
          "async: saving and loading between results changed the search");
    /* saved and loaded with candidates in flight (dropped, made again):
     * still every role once, the budget exact */
    for (int every = 3; every <= 11; every += 4) {
        struct async_mode mf = {.workers = 6,
                                .order_seed = 10 + (uint64_t)every,
                                .save_every = every};
        struct async_log f;
        struct colony *cf = run_async(&p, &mf, &f);
        char what[64];
        snprintf(what, sizeof what, "async, saved every %d with 6 in flight",
                 every);
        check_async_run(&p, &mf, cf, &f, what);
        CHECK(f.dropped > 0, "%s: nothing dropped", what);
        printf("%s: %llu results, %llu dropped and made again, best %.6f\n",
               what, (unsigned long long)f.applied,
               (unsigned long long)f.dropped, cf->best_fitness);
        colony_destroy(cf);
    }
    printf("async (4 in flight): %llu evaluations, %llu scouts, best %.6f; "
           "other arrival order: best %.6f\n",
           (unsigned long long)ca->evaluations, (unsigned long long)a.scouts,
           ca->best_fitness, cd->best_fitness);
    colony_destroy(ca);
    colony_destroy(cb);
    colony_destroy(cd);
    colony_destroy(c1);
    colony_destroy(c12);
    colony_destroy(cs);
    colony_destroy(cr);
}

/* Misuse of the two forms, and begin at a later phase boundary. */
static void test_async_api(void)
{
    char err[ABC_ERRLEN];
    struct colony_params p = ref_params(5);
    struct colony *c;
    const struct candidate *b, *cd;
    int n;
    double f[64];
    colony_create(&c, &p, err);
    CHECK(colony_async_next(c, &cd, err) == ABC_EVALUE && cd == NULL,
          "async_next on a sync colony");
    CHECK(colony_async_begin(c, err) == ABC_EVALUE && strstr(err, "init") &&
              c->phase == COLONY_INIT,
          "begin in init: %s", err);
    colony_next_batch(c, &b, &n, err);
    for (int i = 0; i < n; i++)
        f[i] = test_fitness(&p, b[i].code, b[i].seed);
    colony_apply(c, f, err);
    colony_next_batch(c, &b, &n, err); /* the employed batch is made */
    CHECK(colony_async_begin(c, err) == ABC_EVALUE && !c->async,
          "begin with a batch made: %s", err);
    for (int i = 0; i < n; i++)
        f[i] = test_fitness(&p, b[i].code, b[i].seed);
    colony_apply(c, f, err);
    /* begin at the onlooker phase of cycle 0: role sn comes first */
    CHECK(colony_async_begin(c, err) == 0 && c->phase == COLONY_ASYNC &&
              c->role_next == (uint64_t)p.sn && c->cycle == 0,
          "begin at onlooker: %s", err);
    CHECK(colony_async_begin(c, err) == 0, "begin twice");
    CHECK(colony_next_batch(c, &b, &n, err) == ABC_EVALUE &&
              strstr(err, "async"),
          "next_batch on async: %s", err);
    CHECK(colony_apply(c, f, err) == ABC_EVALUE, "apply on async");
    CHECK(colony_record(c, 0, 0.5, err) == ABC_EVALUE, "record on async");
    CHECK(colony_async_next(c, &cd, err) == 1 && cd->phase == COLONY_ONLOOKER &&
              cd->index == 0 && cd->cycle == 0 &&
              cd->eval_id == 2 * (uint64_t)p.sn,
          "first async candidate after begin at onlooker");
    uint64_t id = cd->eval_id;
    struct colony_food before = c->foods[cd->source];
    uint64_t ev = c->evaluations;
    CHECK(colony_async_apply(c, id + 1, 0.5, err) == ABC_EVALUE &&
              strstr(err, "not in flight"),
          "unknown eval id: %s", err);
    CHECK(colony_async_apply(c, id, NAN, err) == ABC_EVALUE &&
              strstr(err, "finite"),
          "NaN fitness: %s", err);
    CHECK(c->evaluations == ev && c->ninflight == 1 &&
              c->foods[cd->source].trial == before.trial,
          "a refused result changed the colony");
    CHECK(colony_async_apply(c, id, -1.0, err) == 0 &&
              c->evaluations == ev + 1 && c->ninflight == 0,
          "apply: %s", err);
    colony_destroy(c);

    /* max_cycles 0: init ends the search, begin does nothing */
    p.max_cycles = 0;
    colony_create(&c, &p, err);
    colony_next_batch(c, &b, &n, err);
    for (int i = 0; i < n; i++)
        f[i] = 0.5;
    colony_apply(c, f, err);
    CHECK(colony_done(c) && colony_async_begin(c, err) == 0 && colony_done(c),
          "begin on a done colony");
    colony_destroy(c);
}

/* An async colony with candidates in flight, saved to path. */
static struct colony *saved_async(const struct colony_params *p,
                                  const char *path, int inflight)
{
    char err[ABC_ERRLEN];
    struct colony *c;
    const struct candidate *b, *cd;
    int n;
    double f[64];
    colony_create(&c, p, err);
    colony_next_batch(c, &b, &n, err);
    for (int i = 0; i < n; i++)
        f[i] = test_fitness(p, b[i].code, b[i].seed);
    colony_apply(c, f, err);
    colony_async_begin(c, err);
    /* a cycle and a half in order, then some out of order */
    uint64_t R = 2 * (uint64_t)p->sn + 1;
    for (uint64_t k = 0; k < R + (uint64_t)p->sn; k++) {
        if (colony_async_next(c, &cd, err) != 1) break;
        colony_async_apply(c, cd->eval_id, test_fitness(p, cd->code, cd->seed),
                           err);
    }
    uint64_t ids[8];
    for (int i = 0; i < inflight; i++) {
        colony_async_next(c, &cd, err);
        ids[i] = cd->eval_id;
    }
    if (inflight > 1) colony_async_apply(c, ids[1], 0.25, err);
    CHECK(colony_save(c, path, err) == 0, "save async: %s", err);
    return c;
}

static void test_async_checkpoint(void)
{
    char err[ABC_ERRLEN];
    const char *good = "colony_async_good.msgpack", *bad = "colony_bad.msgpack";
    struct colony_params p = ref_params(9);
    struct colony *c = saved_async(&p, good, 4);
    CHECK(c->phase == COLONY_ASYNC && c->cycle == 1 && c->ninflight == 3,
          "async setup: phase %s cycle %d in flight %d",
          colony_phase_name(c->phase), c->cycle, c->ninflight);
    struct colony *l;
    CHECK(colony_load(good, &l, err) == 0, "load async: %s", err);
    if (l) {
        CHECK(same_colony(c, l) && l->async && l->nredo == 3 &&
                  l->role_next == c->role_next && l->walk == c->walk &&
                  l->ninflight == 0,
              "loaded async colony differs");
        /* the roles in flight are made first, under new ids */
        uint64_t want[3];
        for (int i = 0; i < 3; i++)
            want[i] = l->redo[i];
        for (int i = 0; i < 3; i++) {
            const struct candidate *cd;
            CHECK(colony_async_next(l, &cd, err) == 1 &&
                      cd->eval_id == c->next_eval_id + (uint64_t)i,
                  "redo %d", i);
            uint64_t R = 2 * (uint64_t)p.sn + 1;
            uint64_t role = (uint64_t)cd->cycle * R +
                            (cd->phase == COLONY_EMPLOYED ? (uint64_t)cd->index
                             : cd->phase == COLONY_ONLOOKER
                                 ? (uint64_t)p.sn + (uint64_t)cd->index
                                 : 2 * (uint64_t)p.sn);
            CHECK(role == want[i], "redo %d: role %llu, want %llu", i,
                  (unsigned long long)role, (unsigned long long)want[i]);
        }
        colony_destroy(l);
    }
    unsigned char *buf = NULL;
    size_t len = 0;
    read_all(good, &buf, &len);
    printf("async colony checkpoint: %zu bytes (sn 10, 13 layers, 3 in "
           "flight)\n",
           len);
    int trunc_ok = 0;
    for (size_t k = 0; k < len; k++) {
        write_all(bad, buf, k);
        struct colony *t = (struct colony *)1;
        if (colony_load(bad, &t, err) < 0 && t == NULL && strstr(err, bad))
            trunc_ok++;
        else if (t && t != (struct colony *)1)
            colony_destroy(t);
    }
    CHECK(trunc_ok == (int)len, "async: %d of %zu truncations rejected",
          trunc_ok, len);
    /* single-byte corruptions: rejected, or a consistent colony */
    {
        unsigned char *x = malloc(len);
        struct rng r;
        rng_seed(&r, 77);
        int loaded = 0;
        for (int t = 0; t < 400; t++) {
            memcpy(x, buf, len);
            x[rng_below(&r, len)] ^= (unsigned char)(1 + rng_below(&r, 255));
            write_all(bad, x, len);
            struct colony *y = NULL;
            if (colony_load(bad, &y, err) == 0) {
                loaded++;
                CHECK(colony_save(y, "colony_resaved.msgpack", err) == 0,
                      "async resave: %s", err);
                colony_destroy(y);
            } else {
                CHECK(y == NULL && strstr(err, bad), "async flip: %s", err);
            }
        }
        printf("async: 400 single-byte corruptions, %d loaded (consistent: "
               "a fitness, walk...), the rest rejected\n",
               loaded);
        free(x);
        remove("colony_resaved.msgpack");
    }

    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    msgpack_object obj;
    size_t off = 0;
    CHECK(msgpack_unpack((const char *)buf, len, &off, &zone, &obj) ==
              MSGPACK_UNPACK_SUCCESS,
          "unpack the async file");
    int64_t total = (int64_t)p.max_cycles * (2 * p.sn + 1);
    int64_t nr = (int64_t)c->role_next;
    struct mut muts[] = {
        {"version", M_INT, 1, 0, NULL, "unknown key \"async\""},
        {"version", M_INT, 3, 0, NULL, "version 3"},
        {"async", M_DELETE, 0, 0, NULL, "version 4"},
        {"async", M_NIL, 0, 0, NULL, "async"},
        {"async", M_ADD, 0, 0, NULL, "async: unknown key \"extra\""},
        {"async.walk", M_INT, 10, 0, NULL, "async.walk"},
        {"async.walk", M_INT, -1, 0, NULL, "async.walk"},
        {"async.next_role", M_INT, total + 1, 0, NULL, "async.next_role"},
        {"async.next_role", M_INT, total, 0, NULL, "evaluations"},
        {"async.next_role", M_INT, nr - 1, 0, NULL, "async.redo"},
        {"async.next_role", M_DELETE, 0, 0, NULL, "missing \"next_role\""},
        {"async.redo", M_INT, 1, 0, NULL, "async.redo"},
        {"async.redo[0]", M_INT, nr, 0, NULL, "async.redo[0]"},
        {"async.redo[1]", M_INT, 0, 0, NULL, "async.redo[1]"},
        {"async.redo[0]", M_INT, -1, 0, NULL, "async.redo[0]"},
        {"async.redo[0]", M_INT, 0, 0, NULL, "cycle"},
        {"phase", M_STR, 0, 0, "employed", "expected async or done"},
        {"phase", M_STR, 0, 0, "done", "in phase done"},
        {"cycle", M_INT, 0, 0, NULL, "cycle"},
        {"evaluations", M_INT, 10, 0, NULL, "evaluations"},
        {"evaluations", M_INT, (int64_t)c->evaluations + 3, 0, NULL,
         "evaluations"},
        {"batch", M_INT, 3, 0, NULL, "batch"},
    };
    int nm = (int)(sizeof muts / sizeof muts[0]);
    for (int i = 0; i < nm; i++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        repack(&pk, &obj, "", &muts[i]);
        reseal(&sb);
        write_all(bad, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
        char what[128];
        snprintf(what, sizeof what, "async mutation %d (%s)", i, muts[i].path);
        expect_load_fails(bad, muts[i].expect, what);
    }
    msgpack_zone_destroy(&zone);
    free(buf);
    colony_destroy(c);

    /* a finished async search saves and loads as done */
    struct async_mode m = {.workers = 3, .order_seed = 4};
    struct async_log lg;
    c = run_async(&p, &m, &lg);
    CHECK(colony_save(c, good, err) == 0 && colony_load(good, &l, err) == 0 &&
              colony_done(l) && l->async && same_colony(c, l),
          "done async colony: %s", err);
    colony_destroy(l);
    colony_destroy(c);
    remove(good);
    remove(bad);
}

/* Positions where a and b differ. */
static int code_dist(const int *a, const int *b, int n)
{
    int d = 0;
    for (int j = 0; j < n; j++)
        d += a[j] != b[j];
    return d;
}

/* Random search (params.random): the same phases and evaluation count as
 * the colony with the same seed, but employed and onlooker candidates are
 * fresh random codes rather than neighbours (ABC's change at most
 * change_dims = 2 positions of their source; random ones about
 * (1 - 1/K) of all 13); init codes are the colony's own; "random" survives a
 * save and load, and a colony of the other kind is refused on resume. */
static void test_random_search(void)
{
    char err[ABC_ERRLEN];
    const char *path = "random.colony";
    struct colony_params pa = ref_params(4), pr = pa;
    pr.random = 1;
    struct colony *ca, *cr;
    CHECK(colony_create(&ca, &pa, err) == 0, "create abc: %s", err);
    CHECK(colony_create(&cr, &pr, err) == 0, "create random: %s", err);
    int init_same = 1, far = 0, moves = 0, saved = 0;
    while (!colony_done(ca) && !colony_done(cr)) {
        const struct candidate *ba, *br;
        int na, nr;
        if (colony_next_batch(ca, &ba, &na, err) ||
            colony_next_batch(cr, &br, &nr, err))
            break;
        for (int i = 0; i < nr; i++) {
            if (cr->phase == COLONY_INIT)
                init_same &=
                    i < na && !code_dist(ba[i].code, br[i].code, pr.nlayers);
            if (cr->phase == COLONY_EMPLOYED || cr->phase == COLONY_ONLOOKER) {
                const int *src =
                    cr->food_codes + (size_t)br[i].source * pr.nlayers;
                far += code_dist(br[i].code, src, pr.nlayers) > pr.change_dims;
                moves++;
            }
            colony_record(cr, i, test_fitness(&pr, br[i].code, br[i].seed),
                          err);
        }
        for (int i = 0; i < na; i++)
            colony_record(ca, i, test_fitness(&pa, ba[i].code, ba[i].seed),
                          err);
        if (cr->phase == COLONY_ONLOOKER && !saved) {
            CHECK(colony_save(cr, path, err) == 0, "save: %s", err);
            colony_destroy(cr);
            CHECK(colony_load(path, &cr, err) == 0, "load: %s", err);
            CHECK(cr->p.random == 1, "params.random lost in save/load");
            CHECK(colony_params_match(&cr->p, &pa, err) != 0 &&
                      strstr(err, "random") != NULL,
                  "random vs abc params not refused (%s)", err);
            saved = 1;
        }
        if (colony_apply(ca, NULL, err) || colony_apply(cr, NULL, err)) {
            CHECK(0, "apply: %s", err);
            break;
        }
    }
    CHECK(init_same, "random search's init differs from the colony's");
    CHECK(moves > 0 && far > moves * 8 / 10,
          "random candidates: %d of %d far from their source", far, moves);
    uint64_t lo, hi;
    colony_cost(&pr, &lo, &hi);
    CHECK(colony_done(cr) && cr->evaluations >= lo && cr->evaluations <= hi,
          "random search: %llu evaluations, expected %llu..%llu",
          (unsigned long long)cr->evaluations, (unsigned long long)lo,
          (unsigned long long)hi);
    colony_destroy(ca);
    colony_destroy(cr);
    remove(path);
}

int main(void)
{
    test_neighbour_value();
    test_code_to_channels();
    test_params();
    test_neighbour_move();
    test_init_batch();
    test_greedy();
    test_onlooker_stats();
    test_whole_search();
    test_determinism_and_resume();
    test_redraw_measure();
    test_async_api();
    test_async_search();
    test_async_determinism_and_resume();
    test_async_checkpoint();
    test_random_search();
    return check_finish("test_colony");
}

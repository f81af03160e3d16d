/* test_budget.c - structures at a FLOPs target (common/prune/budget.c):
 * every family lands in the window [(1 - BUDGET_TOLERANCE) * target,
 * target] and is maximal (the next larger member of the family is over it);
 * scaling a shape to the target keeps its spread of keep ratios, where the
 * old largest-entry-first repair flattened it; the slimming threshold keeps
 * exactly the top-ranked channels plus each layer's minimum; unreachable
 * targets are errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/err.h"
#include "core/rng.h"
#include "prune/budget.h"
#include "prune/prune.h"

static struct model *make(enum arch a)
{
    struct model *m;
    char err[ABC_ERRLEN];
    if (model_create(&m, a, NULL, 1, 28, 28, 10, err)) {
        fprintf(stderr, "model_create: %s\n", err);
        exit(2);
    }
    return m;
}

static int64_t macs_of(const struct model *ref, const int *ch)
{
    int64_t v = -1;
    char err[ABC_ERRLEN];
    CHECK(budget_macs(ref, ch, &v, err) == 0, "budget_macs: %s", err);
    return v;
}

/* Does any layer of b exceed a? (b is a larger family member.) */
static int grew(const int *a, const int *b, int n)
{
    for (int j = 0; j < n; j++)
        if (b[j] > a[j]) return 1;
    return 0;
}

static void test_macs(void)
{
    struct model *ref = make(ARCH_RESNET20);
    int ch[64];
    for (int j = 0; j < ref->nprunable; j++)
        ch[j] = (ref->channels[j] * (j + 1)) / (ref->nprunable + 1) + 1;
    struct model *m;
    char err[ABC_ERRLEN];
    CHECK(model_create(&m, ARCH_RESNET20, ch, 1, 28, 28, 10, err) == 0, "%s",
          err);
    CHECK(macs_of(ref, ch) == model_macs(m), "budget_macs %lld vs %lld",
          (long long)macs_of(ref, ch), (long long)model_macs(m));
    CHECK(macs_of(ref, ref->channels) == model_macs(ref), "full macs");
    model_destroy(m);
    model_destroy(ref);
}

static void test_uniform_random(enum arch a)
{
    struct model *ref = make(a);
    int L = ref->nprunable, ch[64], big[64], ch2[64];
    char err[ABC_ERRLEN];
    int64_t full = model_macs(ref);
    const double targets[] = {0.3, 0.5, 0.8};
    for (int t = 0; t < 3; t++) {
        int64_t target = (int64_t)floor(targets[t] * (double)full);
        double r;
        int rc = budget_uniform(ref, targets[t], 0.5, 1, ch, &r, err);
        CHECK(rc == 0, "%s uniform %.1f: %s", arch_name(a), targets[t], err);
        int64_t m = macs_of(ref, ch);
        CHECK(m <= target && m >= (1 - BUDGET_TOLERANCE) * target,
              "%s uniform %.1f: %lld MACs, target %lld", arch_name(a),
              targets[t], (long long)m, (long long)target);
        /* maximal: a ratio 1/64 larger changes a layer and goes over
         * (the fill adds at most one channel per layer) */
        for (int j = 0; j < L; j++) {
            long v = lround((r + 1.0 / 64) * ref->channels[j]);
            big[j] = v > ref->channels[j] ? ref->channels[j] : (int)v;
        }
        CHECK(!grew(ch, big, L) || macs_of(ref, big) > target,
              "%s uniform %.1f is not the largest", arch_name(a), targets[t]);
        for (int j = 1; j < L; j++)
            CHECK(ch[j] - r * ref->channels[j] >= -0.5 - 1e-9 &&
                      ch[j] - r * ref->channels[j] <= 1.5 + 1e-9,
                  "uniform layer %d: %d of %d at ratio %.4f", j, ch[j],
                  ref->channels[j], r);

        rc = budget_random(ref, targets[t], 0.5, 1, 7, ch, err);
        CHECK(rc == 0, "random: %s", err);
        m = macs_of(ref, ch);
        CHECK(m <= target && m >= (1 - BUDGET_TOLERANCE) * target,
              "%s random %.1f: %lld MACs, target %lld", arch_name(a),
              targets[t], (long long)m, (long long)target);
        CHECK(budget_random(ref, targets[t], 0.5, 1, 7, ch2, err) == 0 &&
                  !memcmp(ch, ch2, sizeof(int) * (size_t)L),
              "random is not deterministic in its seed");
        CHECK(budget_random(ref, targets[t], 0.5, 1, 8, ch2, err) == 0 &&
                  memcmp(ch, ch2, sizeof(int) * (size_t)L),
              "seeds 7 and 8 gave the same random structure");
    }
    /* no target: keep_fraction */
    CHECK(budget_uniform(ref, 0, 0.25, 1, ch, NULL, err) == 0 &&
              ch[0] == (int)lround(0.25 * ref->channels[0]),
          "uniform keep 0.25: %d of %d", ch[0], ref->channels[0]);
    /* min_channels: every layer at least 4 */
    CHECK(budget_uniform(ref, 0, 0.001, 4, ch, NULL, err) == 0, "%s", err);
    for (int j = 0; j < L; j++)
        CHECK(ch[j] == 4, "min_channels 4: layer %d has %d", j, ch[j]);
    /* unreachable */
    int rc = budget_uniform(ref, 0.001, 0.5, 8, ch, NULL, err);
    CHECK(rc == ABC_EVALUE && strstr(err, "below the smallest"),
          "unreachable target: rc %d '%s'", rc, err);
    model_destroy(ref);
}

/* Coefficient of variation of a structure's keep ratios ch[j] / width_j. */
static double keep_cv(const struct model *ref, const int *ch)
{
    int L = ref->nprunable;
    double m = 0, v = 0;
    for (int j = 0; j < L; j++)
        m += (double)ch[j] / ref->channels[j] / L;
    for (int j = 0; j < L; j++) {
        double d = (double)ch[j] / ref->channels[j] - m;
        v += d * d / L;
    }
    return sqrt(v) / m;
}

/* The search's targeting: 200 random codes in 1..7 (ABC's shapes, keep
 * code/10) scaled to 30 % of ResNet-56's MACs by budget_shape land in the
 * window and keep the spread of their keep ratios (mean coefficient of
 * variation >= 0.9 of the unscaled codes'). The repair it replaces (lower
 * the largest entry until the structure fits) fails the same check: the
 * test tells the two apart. */
static void test_shape_spread(void)
{
    struct model *ref = make(ARCH_RESNET56);
    int L = ref->nprunable, code[64], raw[64], ch[64];
    double u[64], cv_raw = 0, cv_shape = 0, cv_repair = 0;
    char err[ABC_ERRLEN];
    int64_t target;
    CHECK(budget_target_macs(ref, 0.3, &target, err) == 0, "%s", err);
    struct rng r;
    rng_seed(&r, 42);
    const int n = 200;
    int in_window = 0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < L; j++) {
            code[j] = 1 + (int)(rng_uniform(&r) * 7);
            u[j] = code[j] / 10.0;
            raw[j] = (int)fmax(1, floor(ref->channels[j] * u[j]));
        }
        cv_raw += keep_cv(ref, raw) / n;
        CHECK(budget_shape(ref, u, target, 1, ch, err) == 0, "shape: %s", err);
        int64_t m = macs_of(ref, ch);
        in_window += m <= target && m >= (1 - BUDGET_TOLERANCE) * target;
        cv_shape += keep_cv(ref, ch) / n;
        /* the old repair: lower the largest code entry until it fits */
        for (;;) {
            for (int j = 0; j < L; j++)
                raw[j] = (int)fmax(1, floor(ref->channels[j] * code[j] / 10.0));
            if (macs_of(ref, raw) <= target) break;
            int big = 0;
            for (int j = 1; j < L; j++)
                if (code[j] > code[big]) big = j;
            if (code[big] == 1) break;
            code[big]--;
        }
        cv_repair += keep_cv(ref, raw) / n;
    }
    CHECK(in_window == n, "%d of %d shapes in the window", in_window, n);
    CHECK(cv_shape >= 0.9 * cv_raw, "scaled shapes: spread %.3f vs %.3f",
          cv_shape, cv_raw);
    CHECK(cv_repair < 0.9 * cv_raw,
          "largest-first repair kept the spread (%.3f vs %.3f): the check "
          "cannot tell",
          cv_repair, cv_raw);
    printf("keep-ratio CV over %d codes: unscaled %.3f, scaled %.3f, "
           "largest-first repair %.3f\n",
           n, cv_raw, cv_shape, cv_repair);
    /* a non-positive ratio is refused */
    u[3] = 0;
    CHECK(budget_shape(ref, u, target, 1, ch, err) == ABC_EVALUE &&
              strstr(err, "shape entry 3"),
          "zero ratio: '%s'", err);
    model_destroy(ref);
}

static void test_threshold(void)
{
    struct model *ref = make(ARCH_SMALLNET); /* 16, 32, 64 */
    int L = ref->nprunable, total = 0;
    for (int j = 0; j < L; j++)
        total += ref->channels[j];
    float *score = malloc(sizeof(float) * (size_t)total);
    int *keep = malloc(sizeof(int) * (size_t)total);
    int ch[8];
    char err[ABC_ERRLEN];
    /* layer 0 all 1.0, layer 1 descending 0.9.., layer 2 all tiny but one */
    for (int f = 0; f < total; f++) {
        int j = f < 16 ? 0 : f < 48 ? 1 : 2;
        score[f] = j == 0 ? 1.0f : j == 1 ? 0.9f - 0.01f * (f - 16) : 0.001f;
    }
    score[48 + 10] = 0.95f;
    score[48 + 20] = NAN;
    double thr;
    int rc = budget_threshold(ref, score, 0, 0.3, 2, ch, keep, &thr, err);
    CHECK(rc == 0, "threshold: %s", err);
    /* top round(0.3 * 112) = 34: layer 0's 16 (1.0), layer 2's channel 10
     * (0.95), layer 1's best 17; layer 2 also keeps its minimum of 2: the
     * 0.95 and the first of its ties (index 0); the NaN never ranks */
    CHECK(ch[0] == 16 && ch[1] == 17 && ch[2] == 2,
          "threshold keep 0.3: %d %d %d", ch[0], ch[1], ch[2]);
    CHECK(keep[16] == 0 && keep[16 + ch[1] - 1] == ch[1] - 1,
          "layer 1 keeps its first (largest) channels");
    /* layer 2 keeps 10 (0.95) and the best of the ties: index 0 */
    int off2 = 16 + ch[1];
    CHECK(keep[off2] == 0 && keep[off2 + 1] == 10, "layer 2 keeps %d and %d",
          keep[off2], keep[off2 + 1]);
    CHECK(fabs(thr - (0.9 - 0.01 * 16)) < 1e-6, "threshold %.4f", thr);
    /* keep 0.5: 56 = 16 + 1 + 32 + 7 ties of layer 2 (indices 0..6) */
    rc = budget_threshold(ref, score, 0, 0.5, 1, ch, keep, &thr, err);
    CHECK(rc == 0 && ch[0] == 16 && ch[1] == 32 && ch[2] == 8 &&
              keep[48 + 6] == 6 && keep[48 + 7] == 10 &&
              fabs(thr - 0.001) < 1e-9,
          "threshold keep 0.5: %d %d %d thr %g", ch[0], ch[1], ch[2], thr);
    /* a FLOPs target: meets it and is maximal in k */
    int64_t full = model_macs(ref);
    rc = budget_threshold(ref, score, 0.4, 0.5, 1, ch, keep, &thr, err);
    CHECK(rc == 0, "threshold at 0.4: %s", err);
    int64_t m = macs_of(ref, ch);
    CHECK(m <= 0.4 * full, "threshold 0.4: %lld of %lld", (long long)m,
          (long long)full);
    int ch_more[8];
    memcpy(ch_more, ch, sizeof ch);
    /* the next channel in the ranking after layer 1's last kept one */
    if (ch[1] < 32) ch_more[1]++;
    CHECK(ch[1] == 32 || macs_of(ref, ch_more) > 0.4 * full,
          "threshold 0.4 is not maximal (%d %d %d)", ch[0], ch[1], ch[2]);
    rc = budget_threshold(ref, score, 0.0001, 0.5, 1, ch, keep, NULL, err);
    CHECK(rc == ABC_EVALUE, "unreachable threshold target: rc %d", rc);
    /* the keep list slices */
    rc = budget_threshold(ref, score, 0, 0.3, 1, ch, keep, NULL, err);
    struct model *out;
    CHECK(rc == 0 && prune_slice_keep(ref, ch, keep, &out, err) == 0,
          "slice by threshold: %s", err);
    if (!rc) model_destroy(out);
    free(score);
    free(keep);
    model_destroy(ref);
}

int main(void)
{
    test_macs();
    test_uniform_random(ARCH_RESNET20);
    test_uniform_random(ARCH_VGG16);
    test_uniform_random(ARCH_RESNET56);
    test_shape_spread();
    test_threshold();
    return check_finish("test_budget");
}

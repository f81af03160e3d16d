/* test_prune.c - weight inheritance. The key check: a pruned model sliced
 * from a full one computes exactly what the full model computes when its
 * dropped channels are killed (their BN gamma and beta set to 0, so after
 * ReLU they are 0 and feed nothing forward), for smallnet, ResNet-20 and
 * VGG-16, random and L1 choice, and a slice of a slice. Also: L1 picks the
 * known largest filters, random picks are uniform subsets, shapes match
 * model_create, bad structures are rejected naming the layer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/err.h"
#include "core/rng.h"
#include "nn/model.h"
#include "prune/prune.h"

#define IN_C 1
#define IN_H 28
#define IN_W 28
#define CLASSES 10

static struct model *create(enum arch a, const int *ch)
{
    char err[ABC_ERRLEN];
    struct model *m;
    int rc = model_create(&m, a, ch, IN_C, IN_H, IN_W, CLASSES, err);
    CHECK(rc == 0, "model_create %s: %s", arch_name(a), err);
    return rc ? NULL : m;
}

static const char *suffix(const struct tensor_info *t)
{
    return strrchr(t->name, '.') + 1;
}

/* BN tensors: 1-D, not the classifier bias. */
static int is_bn(const struct tensor_info *t)
{
    return t->ndim == 1 && strncmp(t->name, "fc.", 3) != 0;
}

/* Trained-looking weights: Kaiming convs, and BN gamma, beta, running mean
 * and variance all away from their init values. */
static void randomize(struct model *m, uint64_t seed)
{
    model_init_weights(m, seed);
    struct rng r;
    rng_seed(&r, rng_derive(seed, 77, 0, 0));
    for (int i = 0; i < m->ntensors; i++) {
        struct tensor_info *t = &m->tensors[i];
        if (!is_bn(t)) continue;
        float *d = model_tensor_data(m, t);
        const char *s = suffix(t);
        for (size_t k = 0; k < t->numel; k++) {
            double u = rng_uniform(&r);
            if (strcmp(s, "weight") == 0)
                d[k] = (float)(0.5 + u);
            else if (strcmp(s, "running_var") == 0)
                d[k] = (float)(0.5 + 1.5 * u);
            else
                d[k] = (float)(0.4 * u - 0.2); /* bias, running_mean */
        }
    }
}

/* Copies src's weights and buffers into m (same architecture and
 * structure). */
static void copy_weights(struct model *m, const struct model *src)
{
    memcpy(m->params, src->params, src->nparams * sizeof(float));
    memcpy(m->buffers, src->buffers, src->nbuffers * sizeof(float));
}

/* Kills, in every prunable layer j of m, the channels not in keep (layout of
 * prune_select for structure ch): their BN gamma and beta become 0. */
static void kill_dropped(struct model *m, const int *keep, const int *ch)
{
    for (int i = 0; i < m->ntensors; i++) {
        struct tensor_info *t = &m->tensors[i];
        if (!is_bn(t) || t->prune_out < 0 || t->is_buffer) continue;
        int j = t->prune_out;
        const int *kj = keep + prune_keep_offset(ch, j);
        float *d = model_tensor_data(m, t);
        for (int c = 0, n = 0; c < t->shape[0]; c++) {
            if (n < ch[j] && kj[n] == c)
                n++;
            else
                d[c] = 0.0f;
        }
    }
}

/* Eval-mode logits of m on x (B images), copied into out. */
static void logits(struct model *m, const float *x, int B, float *out)
{
    char err[ABC_ERRLEN];
    int rc = model_reserve(m, B, err);
    CHECK(rc == 0, "model_reserve: %s", err);
    if (rc) {
        memset(out, 0, sizeof(float) * (size_t)B * CLASSES);
        return;
    }
    model_forward(m, x, NULL, B, 0, NULL);
    memcpy(out, model_logits(m), sizeof(float) * (size_t)B * CLASSES);
}

static double max_abs(const float *a, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i]) > s) s = fabs((double)a[i]);
    return s;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > s) s = fabs((double)a[i] - b[i]);
    return s;
}

/* Every tensor of m has the name, shape and offset model_create gives for
 * structure ch. */
static void check_shapes(const struct model *m, const int *ch)
{
    struct model *ref = create(m->arch, ch);
    if (!ref) return;
    int bad = m->ntensors != ref->ntensors || m->nparams != ref->nparams ||
              m->nbuffers != ref->nbuffers;
    for (int i = 0; i < m->ntensors && !bad; i++) {
        const struct tensor_info *a = &m->tensors[i], *b = &ref->tensors[i];
        bad |= strcmp(a->name, b->name) != 0 || a->ndim != b->ndim ||
               a->offset != b->offset || a->is_buffer != b->is_buffer;
        for (int d = 0; d < a->ndim; d++)
            bad |= a->shape[d] != b->shape[d];
        if (bad) fprintf(stderr, "tensor %s differs\n", a->name);
    }
    for (int j = 0; j < m->nprunable; j++)
        bad |= m->channels[j] != ch[j];
    CHECK(!bad, "%s: sliced model's tensors differ from model_create's",
          arch_name(m->arch));
    model_destroy(ref);
}

/* Slices src (full, or a slice of it) by (ch, how, seed) and compares its
 * logits with those of killed: a copy of full whose dropped channels are
 * killed. keep_full: the kept channels as indices into full (NULL:
 * prune_select's). Returns the max relative difference. */
static double check_exact(const char *what, const struct model *full,
                          struct model *killed, const struct model *src,
                          const int *ch, enum filter_init how, uint64_t seed,
                          const int *keep_full, const float *x, int B)
{
    char err[ABC_ERRLEN];
    size_t n = (size_t)B * CLASSES;
    float *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
    int *keep = NULL;
    struct model *sliced = NULL;
    double rel = INFINITY;
    if (!want || !got) goto out;
    if (!keep_full) {
        int rc = prune_select(src, ch, how, seed, &keep, err);
        CHECK(rc == 0, "%s: prune_select: %s", what, err);
        if (rc) goto out;
        keep_full = keep;
    }
    int rc = prune_slice(src, ch, how, seed, &sliced, err);
    CHECK(rc == 0 && sliced, "%s: prune_slice: %s", what, err);
    if (rc) goto out;
    check_shapes(sliced, ch);
    copy_weights(killed, full);
    kill_dropped(killed, keep_full, ch);
    logits(killed, x, B, want);
    logits(sliced, x, B, got);
    double scale = max_abs(want, n);
    CHECK(scale > 1e-3, "%s: logits are all ~0 (%g)", what, scale);
    char label[128];
    snprintf(label, sizeof label, "%s: sliced vs killed logits (scale %.3g)",
             what, scale);
    CHECK_CLOSE(label, got, want, n, 1e-5 * scale, 1e-5);
    rel = max_diff(got, want, n) / scale;
out:
    free(want);
    free(got);
    free(keep);
    model_destroy(sliced);
    return rel;
}

/* The exactness test for one architecture: random and L1 choice, a slice of
 * a slice, and controls showing that the comparison can fail. */
static void test_exact(enum arch a, const int *codes, int B)
{
    char err[ABC_ERRLEN];
    size_t nx = (size_t)B * IN_C * IN_H * IN_W, n = (size_t)B * CLASSES;
    struct model *full = create(a, NULL), *killed = create(a, NULL);
    float *x = malloc(nx * sizeof(float));
    float *ref = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
    if (!full || !killed || !x || !ref || !got) {
        CHECK(0, "out of memory");
        goto out;
    }
    randomize(full, 1000 + a);
    int L = full->nprunable;
    int ch[16], ch2[16];
    for (int j = 0; j < L; j++) {
        ch[j] = full->full[j] * codes[j] / 10;
        if (ch[j] < 1) ch[j] = 1;
        ch2[j] = (ch[j] + 1) / 2;
    }
    struct rng r;
    rng_seed(&r, 42 + a);
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)rng_normal(&r);

    char what[96];
    double worst = 0, rel;
    snprintf(what, sizeof what, "%s random", arch_name(a));
    rel =
        check_exact(what, full, killed, full, ch, FILTER_RANDOM, 7, NULL, x, B);
    worst = fmax(worst, rel);
    snprintf(what, sizeof what, "%s l1", arch_name(a));
    rel = check_exact(what, full, killed, full, ch, FILTER_L1, 0, NULL, x, B);
    worst = fmax(worst, rel);

    /* Slice of a slice: full -random-> A -l1-> B; B's channels as indices
     * into full are keepA[keepB]. */
    struct model *A = NULL;
    int *kA = NULL, *kB = NULL, *kAB = NULL;
    int rc = prune_slice(full, ch, FILTER_RANDOM, 11, &A, err);
    CHECK(rc == 0, "slice A: %s", err);
    if (!rc) rc = prune_select(full, ch, FILTER_RANDOM, 11, &kA, err);
    if (!rc) rc = prune_select(A, ch2, FILTER_L1, 0, &kB, err);
    CHECK(rc == 0, "select for slice of a slice: %s", err);
    kAB = malloc(sizeof(int) * (size_t)prune_keep_offset(ch2, L));
    if (!rc && kAB) {
        for (int j = 0; j < L; j++) {
            const int *a0 = kA + prune_keep_offset(ch, j);
            const int *b0 = kB + prune_keep_offset(ch2, j);
            int *o = kAB + prune_keep_offset(ch2, j);
            for (int i = 0; i < ch2[j]; i++)
                o[i] = a0[b0[i]];
        }
        snprintf(what, sizeof what, "%s slice of a slice", arch_name(a));
        rel = check_exact(what, full, killed, A, ch2, FILTER_L1, 0, kAB, x, B);
        worst = fmax(worst, rel);
    }

    /* Controls: the dropped channels matter (the unkilled full model
     * differs), and a slice with another random choice differs from the
     * killed model of the first, so the comparison above can fail. */
    struct model *other = NULL;
    int *keep = NULL;
    if (prune_select(full, ch, FILTER_RANDOM, 7, &keep, err) == 0 &&
        prune_slice(full, ch, FILTER_RANDOM, 8, &other, err) == 0) {
        logits(full, x, B, got);
        copy_weights(killed, full);
        kill_dropped(killed, keep, ch);
        logits(killed, x, B, ref);
        double scale = max_abs(ref, n);
        double d_full = max_diff(got, ref, n) / scale;
        logits(other, x, B, got);
        double d_other = max_diff(got, ref, n) / scale;
        CHECK(d_full > 1e-2 && d_other > 1e-2,
              "%s controls: unkilled %.3g, other choice %.3g (want > 1e-2)",
              arch_name(a), d_full, d_other);
        printf("%-9s max rel diff sliced vs killed %.3g; controls: unkilled "
               "%.3g, other choice %.3g\n",
               arch_name(a), worst, d_full, d_other);
    } else {
        CHECK(0, "controls: %s", err);
    }
    free(keep);
    model_destroy(other);
    free(kA);
    free(kB);
    free(kAB);
    model_destroy(A);
out:
    free(x);
    free(ref);
    free(got);
    model_destroy(killed);
    model_destroy(full);
}

/* Direct spot checks of the index arithmetic on smallnet: conv2.weight,
 * bn2 buffers and fc.weight against the source at the kept indices. */
static void test_spot(void)
{
    char err[ABC_ERRLEN];
    struct model *full = create(ARCH_SMALLNET, NULL), *m = NULL;
    int ch[3] = {5, 11, 23}, *keep = NULL;
    if (!full) return;
    randomize(full, 5);
    if (prune_select(full, ch, FILTER_RANDOM, 3, &keep, err) ||
        prune_slice(full, ch, FILTER_RANDOM, 3, &m, err)) {
        CHECK(0, "%s", err);
        goto out;
    }
    const int *k0 = keep, *k1 = keep + 5, *k2 = keep + 16;
    const float *sw =
        model_tensor_data(full, model_find_tensor(full, "conv2.weight"));
    const float *dw =
        model_tensor_data(m, model_find_tensor(m, "conv2.weight"));
    int bad = 0;
    for (int o = 0; o < 11; o++)
        for (int i = 0; i < 5; i++)
            for (int k = 0; k < 9; k++)
                bad +=
                    dw[(o * 5 + i) * 9 + k] != sw[(k1[o] * 16 + k0[i]) * 9 + k];
    CHECK(bad == 0, "conv2.weight: %d entries not at the kept indices", bad);
    const float *sv =
        model_tensor_data(full, model_find_tensor(full, "bn2.running_var"));
    const float *dv =
        model_tensor_data(m, model_find_tensor(m, "bn2.running_var"));
    const float *sb =
        model_tensor_data(full, model_find_tensor(full, "bn2.bias"));
    const float *db = model_tensor_data(m, model_find_tensor(m, "bn2.bias"));
    bad = 0;
    for (int o = 0; o < 11; o++)
        bad += dv[o] != sv[k1[o]] || db[o] != sb[k1[o]];
    CHECK(bad == 0, "bn2: %d entries not at the kept indices", bad);
    const float *sf =
        model_tensor_data(full, model_find_tensor(full, "fc.weight"));
    const float *df = model_tensor_data(m, model_find_tensor(m, "fc.weight"));
    const float *sfb =
        model_tensor_data(full, model_find_tensor(full, "fc.bias"));
    const float *dfb = model_tensor_data(m, model_find_tensor(m, "fc.bias"));
    bad = 0;
    for (int o = 0; o < CLASSES; o++) {
        bad += dfb[o] != sfb[o];
        for (int i = 0; i < 23; i++)
            bad += df[o * 23 + i] != sf[o * 64 + k2[i]];
    }
    CHECK(bad == 0, "fc: %d entries not at the kept indices", bad);
    CHECK(m->bn_eps == full->bn_eps && m->bn_momentum == full->bn_momentum,
          "BN eps/momentum copied");
out:
    free(keep);
    model_destroy(m);
    model_destroy(full);
}

/* Fills filter f of conv `name` with +-norm[f]/per, alternating signs. */
static void set_filters(struct model *m, const char *name, const double *norm)
{
    struct tensor_info *t = model_find_tensor(m, name);
    float *w = model_tensor_data(m, t);
    size_t per = t->numel / (size_t)t->shape[0];
    for (int f = 0; f < t->shape[0]; f++)
        for (size_t i = 0; i < per; i++)
            w[f * per + i] = (float)((i % 2 ? -1 : 1) * norm[f] / (double)per);
}

static void test_l1(void)
{
    char err[ABC_ERRLEN];
    struct model *m = create(ARCH_SMALLNET, NULL);
    if (!m) return;
    model_init_weights(m, 9);
    /* conv1: 16 filters; 7 is tied at filters 3, 4, 8 (lower index wins). */
    static const double n1[16] = {3, 9, 1, 7, 7,  2,   8,  0.5,
                                  7, 4, 6, 5, 10, 0.1, 11, 2.5};
    set_filters(m, "conv1.weight", n1);
    double n3[64];
    for (int f = 0; f < 64; f++)
        n3[f] = 0.01 * (1 + f % 5);
    n3[63] = 5, n3[17] = 4, n3[40] = 3;
    set_filters(m, "conv3.weight", n3);
    static const struct {
        int ch[3];
        int want0[6], want2[3];
    } cases[] = {
        {{5, 32, 3}, {1, 3, 6, 12, 14}, {17, 40, 63}},
        {{6, 1, 1}, {1, 3, 4, 6, 12, 14}, {63}},
        {{1, 7, 2}, {14}, {17, 63}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int *keep;
        int rc = prune_select(m, cases[c].ch, FILTER_L1, 123, &keep, err);
        CHECK(rc == 0, "l1 select: %s", err);
        if (rc) continue;
        int bad = 0;
        for (int i = 0; i < cases[c].ch[0]; i++)
            bad += keep[i] != cases[c].want0[i];
        int off2 = prune_keep_offset(cases[c].ch, 2);
        for (int i = 0; i < cases[c].ch[2]; i++)
            bad += keep[off2 + i] != cases[c].want2[i];
        const int *k1 = keep + cases[c].ch[0];
        for (int i = 1; i < cases[c].ch[1]; i++)
            bad += k1[i] <= k1[i - 1];
        CHECK(bad == 0, "l1 case %zu: conv1 keeps %d %d.., conv3 keeps %d..", c,
              keep[0], keep[1], keep[off2]);
        if (cases[c].ch[1] == 32) {
            int missing = 0;
            for (int i = 0; i < 32; i++)
                missing += k1[i] != i;
            CHECK(missing == 0, "l1 case %zu: full-width layer keeps all", c);
        }
        free(keep);
    }
    printf("ok   l1 picks the largest filters (ties to the lower index)\n");
    model_destroy(m);
}

static void test_random(void)
{
    char err[ABC_ERRLEN];
    struct model *m = create(ARCH_SMALLNET, NULL);
    if (!m) return;
    enum { N = 4000 };
    int ch[3] = {5, 1, 63};
    int count[3][64] = {{0}};
    int bad = 0, changed = 0, prev0[5] = {0};
    for (int s = 0; s < N; s++) {
        int *keep, *again;
        if (prune_select(m, ch, FILTER_RANDOM, (uint64_t)s, &keep, err) ||
            prune_select(m, ch, FILTER_RANDOM, (uint64_t)s, &again, err)) {
            CHECK(0, "random select: %s", err);
            return;
        }
        bad += memcmp(keep, again, sizeof(int) * 69) != 0;
        for (int j = 0, off = 0; j < 3; off += ch[j], j++)
            for (int i = 0; i < ch[j]; i++) {
                int v = keep[off + i];
                if (v < 0 || v >= m->channels[j] ||
                    (i > 0 && v <= keep[off + i - 1]))
                    bad++;
                else
                    count[j][v]++;
            }
        changed += memcmp(prev0, keep, sizeof prev0) != 0;
        memcpy(prev0, keep, sizeof prev0);
        free(keep);
        free(again);
    }
    CHECK(bad == 0,
          "random picks: %d not deterministic, sorted, distinct, "
          "in range",
          bad);
    CHECK(changed > N * 9 / 10, "random picks change with the seed (%d/%d)",
          changed, N);
    double worst = 0;
    for (int j = 0; j < 3; j++) {
        double p = (double)ch[j] / m->channels[j], e = N * p;
        double sd = sqrt(N * p * (1 - p));
        for (int v = 0; v < m->channels[j]; v++) {
            double z = fabs(count[j][v] - e) / sd;
            if (z > worst) worst = z;
            CHECK(count[j][v] > 0 && z < 5,
                  "layer %d index %d chosen %d times, expected %.0f +- %.0f", j,
                  v, count[j][v], e, sd);
        }
    }
    printf("ok   random picks over %d seeds: every index chosen, worst "
           "|z| %.2f (last indices: %d, %d, %d)\n",
           N, worst, count[0][15], count[1][31], count[2][63]);
    /* A layer's choice depends on (seed, layer, widths) only. */
    int ch_b[3] = {5, 20, 2}, *ka, *kb;
    if (prune_select(m, ch, FILTER_RANDOM, 99, &ka, err) == 0 &&
        prune_select(m, ch_b, FILTER_RANDOM, 99, &kb, err) == 0) {
        CHECK(memcmp(ka, kb, 5 * sizeof(int)) == 0,
              "layer 0 choice independent of other layers");
        free(ka);
        free(kb);
    }
    model_destroy(m);
}

/* Checks that (a, ch) is rejected by prune_slice (and prune_select) with a
 * message containing each of needles. */
static void expect_reject(const struct model *src, const int *ch,
                          enum filter_init how, const char *n1, const char *n2)
{
    char err[ABC_ERRLEN] = "";
    struct model *m = (struct model *)1;
    int *keep = (int *)1;
    int rc = prune_slice(src, ch, how, 1, &m, err);
    CHECK(rc != 0 && m == NULL && strstr(err, n1) && (!n2 || strstr(err, n2)),
          "%s: expected a rejection naming \"%s\", got rc %d \"%s\"",
          arch_name(src->arch), n1, rc, err);
    rc = prune_select(src, ch, how, 1, &keep, err);
    CHECK(rc != 0 && keep == NULL, "prune_select also rejects");
    printf("ok   rejected: %s\n", err);
}

static void test_errors(void)
{
    char err[ABC_ERRLEN];
    struct model *sn = create(ARCH_SMALLNET, NULL);
    struct model *rn = create(ARCH_RESNET20, NULL), *half = NULL;
    if (!sn || !rn) goto out;
    model_init_weights(sn, 1);
    int grow[3] = {17, 32, 64}, zero[3] = {16, 0, 64}, neg[3] = {16, 32, -3};
    expect_reject(sn, grow, FILTER_RANDOM, "conv1", "17");
    expect_reject(sn, zero, FILTER_L1, "conv2", "keeps 0");
    expect_reject(sn, neg, FILTER_RANDOM, "conv3", "-3");
    /* A slice cannot grow back, even within the full width. */
    int h[3] = {8, 16, 32}, regrow[3] = {8, 20, 32};
    CHECK(prune_slice(sn, h, FILTER_L1, 0, &half, err) == 0, "%s", err);
    if (half) expect_reject(half, regrow, FILTER_RANDOM, "conv2", "has 16");
    /* A structure of another architecture. */
    static const int vgg[13] = {64,  64,  128, 128, 256, 256, 256,
                                512, 512, 512, 512, 512, 512};
    expect_reject(sn, vgg, FILTER_RANDOM, "conv1", "64");
    CHECK(prune_check(sn, vgg, 13, err) != 0 && strstr(err, "13 entries"),
          "structure length checked: %s", err);
    CHECK(prune_check(sn, h, 3, err) == 0, "valid structure passes: %s", err);
    int rch[9] = {16, 16, 16, 32, 33, 32, 64, 64, 64};
    expect_reject(rn, rch, FILTER_L1, "layer2.1.conv1", "33");
    int ok9[9] = {16, 16, 16, 32, 32, 32, 64, 64, 64};
    expect_reject(rn, ok9, (enum filter_init)5, "filter", NULL);
    enum filter_init f;
    CHECK(filter_init_parse("random", &f) == 0 && f == FILTER_RANDOM &&
              filter_init_parse("l1", &f) == 0 && f == FILTER_L1 &&
              filter_init_parse("L2", &f) != 0 &&
              filter_init_parse("", &f) != 0 &&
              strcmp(filter_init_name(FILTER_L1), "l1") == 0 &&
              strcmp(filter_init_name(FILTER_RANDOM), "random") == 0,
          "filter_init parse/name");
out:
    model_destroy(sn);
    model_destroy(rn);
    model_destroy(half);
}

int main(void)
{
    static const int sn_codes[3] = {3, 4, 4};
    static const int rn_codes[9] = {2, 6, 10, 2, 7, 0, 5, 10, 1};
    static const int vgg_codes[13] = {3, 7, 5, 9, 2, 4, 10, 6, 1, 8, 3, 5, 7};
    test_exact(ARCH_SMALLNET, sn_codes, 4);
    test_exact(ARCH_RESNET20, rn_codes, 4);
    test_exact(ARCH_VGG16, vgg_codes, 1);
    test_spot();
    test_l1();
    test_random();
    test_errors();
    return check_finish("test_prune");
}

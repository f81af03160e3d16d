/* test_lasso.c - LASSO channel pruning (common/lasso.c) and the per-layer
 * forward access it uses (model_forward_to, model_layer_io):
 *  - a synthetic layer whose output depends on a known channel subset: the
 *    LASSO picks exactly that subset, the least squares recovers the
 *    weights, the error is ~0 (also with noise: the subset still wins);
 *  - target = all channels keeps all and reproduces the weights;
 *  - the lambda bisection hits every requested count;
 *  - whole networks (smallnet, a pruned ResNet-20) with random weights and
 *    random images: the requested structure, the report's reconstruction
 *    error equals the error measured by forwarding the pruned network, and
 *    it is well below that of slicing by L1 norm;
 *  - model_forward_to / model_layer_io against model_forward and the
 *    reference convolution; bad inputs are errors. Single process. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/err.h"
#include "core/rng.h"
#include "nn/layers.h"
#include "nn/model.h"
#include "prune/lasso.h"
#include "prune/prune.h"

/* ---- synthetic layers --------------------------------------------------- */

/* X (N, c*kk) standard normal, W (n, c*kk) normal, Y (N, n) = X_S W_S^T
 * over the channels with in_s set (+ noise * normal). */
static void synth(float *X, float *W, float *Y, const unsigned char *in_s,
                  int N, int c, int kk, int n, double noise, uint64_t seed)
{
    struct rng r;
    rng_seed(&r, seed);
    int D = c * kk;
    for (int i = 0; i < N * D; i++)
        X[i] = (float)rng_normal(&r);
    for (int i = 0; i < n * D; i++)
        W[i] = (float)rng_normal(&r);
    for (int i = 0; i < N; i++)
        for (int o = 0; o < n; o++) {
            double s = 0;
            for (int a = 0; a < c; a++)
                if (!in_s || in_s[a])
                    for (int u = 0; u < kk; u++)
                        s += (double)X[i * D + a * kk + u] *
                             W[o * D + a * kk + u];
            Y[i * n + o] = (float)(s + noise * rng_normal(&r));
        }
}

/* W restricted to the channels with keep set: (n, kept*kk). */
static int slice_w(float *out, const float *W, const unsigned char *keep, int c,
                   int kk, int n)
{
    int k = 0;
    for (int o = 0; o < n; o++)
        for (int a = 0; a < c; a++)
            if (keep[a])
                for (int u = 0; u < kk; u++)
                    out[k++] = W[(o * c + a) * kk + u];
    return k / n;
}

static void test_known_subset(void)
{
    enum { N = 600, C = 10, KK = 9, NO = 6 };
    char err[ABC_ERRLEN];
    static float X[N * C * KK], W[NO * C * KK], Y[N * NO], Wk[NO * C * KK],
        Wr[NO * C * KK];
    const unsigned char S[C] = {0, 1, 0, 0, 1, 0, 1, 0, 0, 0};
    for (int noisy = 0; noisy < 2; noisy++) {
        synth(X, W, Y, S, N, C, KK, NO, noisy ? 0.3 : 0.0, 11 + noisy);
        struct lasso_stats st;
        int rc = lasso_stats_compute(&st, X, Y, N, C, KK, NO, err);
        CHECK(rc == 0, "stats: %s", err);
        if (rc) return;
        double gram[C * C], corr[C], beta[C], lambda = -1;
        unsigned char keep[C];
        int exact = 0;
        lasso_gram(&st, W, gram, corr);
        rc = lasso_select(gram, corr, C, 3, 10000, 1e-10, keep, beta, &lambda,
                          &exact, err);
        CHECK(rc == 0, "select: %s", err);
        int same = memcmp(keep, S, C) == 0;
        CHECK(same && exact,
              "noise %d: LASSO kept %d%d%d%d%d%d%d%d%d%d "
              "(exact %d), expected channels 1, 4, 6",
              noisy, keep[0], keep[1], keep[2], keep[3], keep[4], keep[5],
              keep[6], keep[7], keep[8], keep[9], exact);
        printf("known subset (noise %d): lambda %.4g, beta %.3f %.3f %.3f\n",
               noisy, lambda, beta[1], beta[4], beta[6]);
        double e_rec = -1;
        rc = lasso_reconstruct(&st, S, 1e-12, Wr, &e_rec, err);
        CHECK(rc == 0, "reconstruct: %s", err);
        slice_w(Wk, W, S, C, KK, NO);
        double e_true = lasso_error(&st, S, Wk);
        /* the generating weights are the least-squares solution */
        if (!noisy) {
            CHECK(e_rec < 1e-10 && e_true < 1e-10,
                  "noise-free reconstruction error %.3g (true weights %.3g)",
                  e_rec, e_true);
            CHECK_CLOSE("reconstructed weights = generating weights", Wr, Wk,
                        (size_t)NO * 3 * KK, 1e-4, 1e-4);
        } else {
            /* noise 0.3 on outputs of variance 27: rel. error ~ 0.0033;
             * weight errors ~ 0.3 / sqrt(600) = 0.012 each */
            CHECK(e_rec <= e_true && e_rec > 0.002 && e_rec < 0.005,
                  "noisy reconstruction error %.4g (true weights %.4g)", e_rec,
                  e_true);
            CHECK_CLOSE("noisy reconstructed weights ~ generating", Wr, Wk,
                        (size_t)NO * 3 * KK, 0.06, 0.0);
        }
        printf("reconstruction rel. error %.3g (generating weights %.3g)\n",
               e_rec, e_true);
        lasso_stats_free(&st);
    }
}

static void test_keep_all(void)
{
    enum { N = 300, C = 6, KK = 9, NO = 5 };
    char err[ABC_ERRLEN];
    static float X[N * C * KK], W[NO * C * KK], Y[N * NO], Wr[NO * C * KK];
    synth(X, W, Y, NULL, N, C, KK, NO, 0.0, 21);
    struct lasso_stats st;
    CHECK(lasso_stats_compute(&st, X, Y, N, C, KK, NO, err) == 0, "%s", err);
    double gram[C * C], corr[C], lambda = -1;
    unsigned char keep[C], all[C];
    memset(all, 1, C);
    lasso_gram(&st, W, gram, corr);
    CHECK(lasso_select(gram, corr, C, C, 100, 1e-9, keep, NULL, &lambda, NULL,
                       err) == 0,
          "%s", err);
    CHECK(memcmp(keep, all, C) == 0 && lambda == 0,
          "target = all keeps all with lambda 0 (lambda %g)", lambda);
    double e0 = lasso_error(&st, NULL, W), e = -1;
    CHECK(lasso_reconstruct(&st, keep, 1e-12, Wr, &e, err) == 0, "%s", err);
    CHECK(e0 < 1e-10 && e < 1e-10, "errors %.3g (original) %.3g (LS)", e0, e);
    CHECK_CLOSE("keep all: LS weights = original", Wr, W, (size_t)NO * C * KK,
                1e-4, 1e-4);
    lasso_stats_free(&st);
}

static void test_bisection(void)
{
    enum { N = 400, C = 24, KK = 4, NO = 8 };
    char err[ABC_ERRLEN];
    static float X[N * C * KK], W[NO * C * KK], Y[N * NO];
    synth(X, W, Y, NULL, N, C, KK, NO, 1.0, 31);
    struct lasso_stats st;
    CHECK(lasso_stats_compute(&st, X, Y, N, C, KK, NO, err) == 0, "%s", err);
    double gram[C * C], corr[C], beta[C];
    lasso_gram(&st, W, gram, corr);
    int exact_all = 1, count_all = 1;
    double prev_lambda = INFINITY;
    for (int t = 1; t <= C; t++) {
        unsigned char keep[C];
        double lambda;
        int exact = 0;
        int rc = lasso_select(gram, corr, C, t, 10000, 1e-10, keep, beta,
                              &lambda, &exact, err);
        CHECK(rc == 0, "target %d: %s", t, err);
        int cnt = 0, nz = 0;
        for (int a = 0; a < C; a++) {
            cnt += keep[a];
            nz += beta[a] != 0;
            if (!keep[a] && beta[a] != 0) count_all = 0;
        }
        count_all &= cnt == t && nz == t;
        exact_all &= exact;
        /* more channels need a smaller lambda */
        CHECK(lambda <= prev_lambda, "target %d: lambda %g after %g", t, lambda,
              prev_lambda);
        prev_lambda = lambda;
    }
    CHECK(count_all, "every target 1..%d kept exactly that many channels", C);
    CHECK(exact_all, "bisection hit every count exactly");
    printf("bisection: targets 1..%d all hit exactly\n", C);

    /* ties that no lambda separates: two identical channels; target 1 must
     * still keep exactly one (trimmed by |beta|, then lower index) */
    double g2[4] = {1, 1, 1, 1}, r2[2] = {1, 1};
    unsigned char k2[2];
    int exact = 1;
    CHECK(lasso_select(g2, r2, 2, 1, 1000, 1e-12, k2, NULL, NULL, &exact,
                       err) == 0,
          "%s", err);
    CHECK(k2[0] + k2[1] == 1, "tied channels: kept %d+%d", k2[0], k2[1]);
    /* a dead channel (zero Z): filled last */
    double g3[9] = {1, 0, 0.2, 0, 0, 0, 0.2, 0, 1}, r3[3] = {0.5, 0, 0.4};
    unsigned char k3[3];
    CHECK(lasso_select(g3, r3, 3, 2, 1000, 1e-12, k3, NULL, NULL, NULL, err) ==
                  0 &&
              k3[0] && !k3[1] && k3[2],
          "dead channel dropped first: kept %d%d%d", k3[0], k3[1], k3[2]);

    /* bad inputs */
    unsigned char keep[C];
    CHECK(lasso_select(gram, corr, C, 0, 100, 1e-9, keep, NULL, NULL, NULL,
                       err) == ABC_EVALUE,
          "target 0 rejected");
    printf("target 0: %s\n", err);
    CHECK(lasso_select(gram, corr, C, C + 1, 100, 1e-9, keep, NULL, NULL, NULL,
                       err) == ABC_EVALUE,
          "target > width rejected");
    double saved = gram[5];
    gram[5] = NAN;
    CHECK(lasso_select(gram, corr, C, 3, 100, 1e-9, keep, NULL, NULL, NULL,
                       err) == ABC_EVALUE,
          "NaN Gram rejected");
    printf("NaN: %s\n", err);
    gram[5] = saved;
    X[7] = NAN;
    struct lasso_stats bad;
    CHECK(lasso_stats_compute(&bad, X, Y, N, C, KK, NO, err) == ABC_EVALUE,
          "NaN input rejected");
    CHECK(lasso_stats_compute(&bad, X, Y, 0, C, KK, NO, err) == ABC_EVALUE,
          "no points rejected");
    lasso_stats_free(&st);
}

/* ---- networks ----------------------------------------------------------- */

static struct model *create(enum arch a, const int *ch, int h)
{
    char err[ABC_ERRLEN];
    struct model *m;
    int rc = model_create(&m, a, ch, 1, h, h, 10, err);
    CHECK(rc == 0, "model_create %s: %s", arch_name(a), err);
    return rc ? NULL : m;
}

/* Trained-looking weights: Kaiming convs, BN parameters and running
 * statistics away from their init values. */
static void randomize(struct model *m, uint64_t seed)
{
    model_init_weights(m, seed);
    struct rng r;
    rng_seed(&r, rng_derive(seed, 77, 0, 0));
    for (int i = 0; i < m->ntensors; i++) {
        struct tensor_info *t = &m->tensors[i];
        if (t->ndim != 1 || strncmp(t->name, "fc.", 3) == 0) continue;
        float *d = model_tensor_data(m, t);
        const char *s = strrchr(t->name, '.') + 1;
        for (size_t k = 0; k < t->numel; k++) {
            double u = rng_uniform(&r);
            if (strcmp(s, "weight") == 0)
                d[k] = (float)(0.5 + u);
            else if (strcmp(s, "running_var") == 0)
                d[k] = (float)(0.5 + 1.5 * u);
            else
                d[k] = (float)(0.4 * u - 0.2);
        }
    }
}

static void random_dataset(struct dataset *d, int n, int h, uint64_t seed)
{
    d->n = n, d->c = 1, d->h = h, d->w = h, d->num_classes = 10;
    d->images = malloc((size_t)n * h * h);
    d->labels = malloc((size_t)n);
    struct rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < (size_t)n * h * h; i++)
        d->images[i] = (uint8_t)rng_below(&r, 256);
    for (int i = 0; i < n; i++)
        d->labels[i] = (uint8_t)rng_below(&r, 10);
}

static void test_forward_to(void)
{
    char err[ABC_ERRLEN];
    enum arch archs[2] = {ARCH_SMALLNET, ARCH_RESNET20};
    for (int ai = 0; ai < 2; ai++) {
        struct model *m = create(archs[ai], NULL, 16);
        if (!m) return;
        randomize(m, 5 + ai);
        enum { B = 3 };
        size_t isz = 16 * 16;
        float *x = malloc(sizeof(float) * B * isz);
        struct rng r;
        rng_seed(&r, 99);
        for (size_t i = 0; i < B * isz; i++)
            x[i] = (float)rng_normal(&r);
        CHECK(model_reserve(m, B, err) == 0, "%s", err);
        CHECK(model_forward_to(m, x, B + 1, 0, 0, err) == ABC_EVALUE,
              "unreserved batch rejected");
        CHECK(model_forward_to(m, x, B, m->nlayers, 0, err) == ABC_EVALUE,
              "bad layer rejected");
        /* producer/consumer map */
        for (int j = 0; j < m->nprunable; j++) {
            int p = model_layer_producing(m, j),
                c = model_layer_consuming(m, j);
            int wp = ai == 0 ? j : 1 + 2 * j, wc = ai == 0 ? j + 1 : 2 + 2 * j;
            CHECK(p == wp && c == wc, "%s prunable %d: layers %d, %d",
                  arch_name(m->arch), j, p, c);
        }
        int worst = 1;
        m->fold_bn_eval = 0; /* model_forward stores every conv output */
        for (int l = 0; l < m->nlayers; l++) {
            struct model_layer_io io;
            CHECK(model_forward_to(m, x, B, l, 0, err) == 0, "%s", err);
            CHECK(model_layer_io(m, l, &io, err) == 0, "%s", err);
            size_t nin = (size_t)B * io.in_c * io.in_h * io.in_w,
                   nout = (size_t)B * io.out_c * io.out_h * io.out_w;
            float *in = malloc(sizeof(float) * nin),
                  *out = malloc(sizeof(float) * nout),
                  *ref = malloc(sizeof(float) * nout);
            memcpy(in, io.in, sizeof(float) * nin);
            memcpy(out, io.out, sizeof(float) * nout);
            const float *w = model_tensor_data(m, &m->tensors[io.weight]);
            if (io.bias < 0) {
                struct conv_geom g = {.B = B,
                                      .Cin = io.in_c,
                                      .H = io.in_h,
                                      .W = io.in_w,
                                      .Cout = io.out_c,
                                      .K = io.k,
                                      .stride = io.stride,
                                      .pad = io.pad};
                conv_geom_init(&g);
                CHECK(g.Ho == io.out_h && g.Wo == io.out_w, "geometry");
                conv2d_forward_ref(ref, in, w, NULL, &g);
            } else {
                linear_forward_ref(ref, in, w,
                                   model_tensor_data(m, &m->tensors[io.bias]),
                                   B, io.in_c, io.out_c);
            }
            worst &= CHECK_CLOSE(m->layers[l].name, out, ref, nout, 1e-4, 1e-4);
            /* the full forward computes the same values */
            model_forward(m, x, NULL, B, 0, NULL);
            struct model_layer_io f;
            model_layer_io(m, l, &f, err);
            int same = memcmp(in, f.in, sizeof(float) * nin) == 0 &&
                       memcmp(out, f.out, sizeof(float) * nout) == 0;
            CHECK(same, "%s layer %s: forward_to differs from model_forward",
                  arch_name(m->arch), m->layers[l].name);
            if (l == m->nlayers - 1)
                CHECK(memcmp(out, model_logits(m), sizeof(float) * nout) == 0,
                      "last layer's output = logits");
            free(in), free(out), free(ref);
        }
        printf("%s: forward_to/layer_io match model_forward and _ref (%d)\n",
               arch_name(m->arch), worst);
        free(x);
        model_destroy(m);
    }
}

/* lasso_prune on src to ch; compares, for each prunable layer in `cmp`
 * (ending with -1), the consumer's error of the LASSO model and of an L1
 * slice, and checks the report's reconstruction error against the measured
 * one where `exact_report` (the consumer unchanged after its step). */
static void prune_and_compare(const char *what, struct model *src,
                              const int *ch, const struct dataset *d,
                              const struct lasso_params *p, const int *cmp,
                              int exact_report, double max_ratio)
{
    char err[ABC_ERRLEN];
    struct augment aug = {.mean = {0.5f}, .std = {0.25f}};
    struct model *pruned = NULL, *l1 = NULL;
    struct lasso_report rep;
    int rc = lasso_prune(src, ch, p, d, &aug, stdout, &pruned, &rep, err);
    CHECK(rc == 0, "%s: lasso_prune: %s", what, err);
    if (rc) return;
    printf("%s: lasso_prune %.2f s\n", what, rep.seconds);
    int same = 1;
    for (int j = 0; j < src->nprunable; j++)
        same &= pruned->channels[j] == ch[j];
    CHECK(same, "%s: pruned model has the requested structure", what);
    CHECK(prune_slice(src, ch, FILTER_L1, 0, &l1, err) == 0, "%s", err);
    for (int k = 0; cmp[k] >= 0 && l1; k++) {
        int j = cmp[k];
        double e_lasso = -1, e_l1 = -1;
        CHECK(lasso_consumer_error(src, pruned, j, p, d, &aug, &e_lasso, err) ==
                  0,
              "%s", err);
        CHECK(lasso_consumer_error(src, l1, j, p, d, &aug, &e_l1, err) == 0,
              "%s", err);
        printf("%s prunable %d (%s -> %s): rel. error LASSO %.4g, L1 slice "
               "%.4g, report %.4g\n",
               what, j, src->layers[rep.layers[j].layer].name,
               src->layers[rep.layers[j].consumer].name, e_lasso, e_l1,
               rep.layers[j].err_recon);
        CHECK(e_lasso < max_ratio * e_l1,
              "%s prunable %d: LASSO error %.4g not below %.2f x L1's %.4g",
              what, j, e_lasso, max_ratio, e_l1);
        if (exact_report)
            CHECK(fabs(e_lasso - rep.layers[j].err_recon) <=
                      1e-6 + 1e-3 * e_lasso,
                  "%s prunable %d: measured %.6g, reported %.6g", what, j,
                  e_lasso, rep.layers[j].err_recon);
        CHECK(rep.layers[j].err_recon <= rep.layers[j].err_sliced,
              "%s prunable %d: reconstruction %.4g worse than slicing %.4g",
              what, j, rep.layers[j].err_recon, rep.layers[j].err_sliced);
    }
    lasso_report_free(&rep);
    model_destroy(l1);
    model_destroy(pruned);
}

static void test_networks(void)
{
    char err[ABC_ERRLEN];
    struct dataset d;
    random_dataset(&d, 120, 16, 7);
    struct lasso_params p;
    lasso_params_default(&p);
    p.images = 64;
    p.points_per_image = 8;
    p.batch = 32;

    /* smallnet: only conv1 pruned (its reader conv2 keeps its width, so
     * its error is comparable), then every layer (compared at the
     * classifier, the only reader whose width stays) */
    struct model *sn = create(ARCH_SMALLNET, NULL, 16);
    if (!sn) return;
    randomize(sn, 3);
    int ch1[3] = {8, 32, 64}, cmp1[] = {0, 2, -1};
    prune_and_compare("smallnet 8-32-64", sn, ch1, &d, &p, cmp1, 0, 0.25);
    int ch2[3] = {8, 16, 32}, cmp2[] = {2, -1};
    prune_and_compare("smallnet 8-16-32", sn, ch2, &d, &p, cmp2, 1, 0.25);

    /* nothing dropped: the network is reproduced */
    int full[3] = {16, 32, 64};
    struct model *same = NULL;
    struct augment aug = {.mean = {0.5f}, .std = {0.25f}};
    struct lasso_report rep;
    CHECK(lasso_prune(sn, full, &p, &d, &aug, NULL, &same, &rep, err) == 0,
          "%s", err);
    double e = -1;
    CHECK(same && lasso_consumer_error(sn, same, 2, &p, &d, &aug, &e, err) == 0,
          "%s", err);
    double worst = 0;
    for (int j = 0; j < 3; j++)
        if (rep.layers && rep.layers[j].err_recon > worst)
            worst = rep.layers[j].err_recon;
    CHECK(e < 1e-6 && worst < 1e-6,
          "full structure: logits error %.3g, worst reported %.3g", e, worst);
    printf("full structure: logits rel. error %.3g, worst reported %.3g\n", e,
           worst);
    lasso_report_free(&rep);
    model_destroy(same);

    /* bad inputs */
    struct model *out = (struct model *)1;
    int bad[3] = {0, 32, 64};
    CHECK(lasso_prune(sn, bad, &p, &d, &aug, NULL, &out, NULL, err) ==
                  ABC_EVALUE &&
              !out,
          "channel count 0 rejected");
    printf("keep 0: %s\n", err);
    bad[0] = 17;
    CHECK(lasso_prune(sn, bad, &p, &d, &aug, NULL, &out, NULL, err) ==
              ABC_EVALUE,
          "wider than the layer rejected");
    struct lasso_params q = p;
    q.images = d.n + 1;
    CHECK(lasso_prune(sn, ch1, &q, &d, &aug, NULL, &out, NULL, err) ==
              ABC_EVALUE,
          "more images than the dataset rejected");
    printf("images: %s\n", err);
    q = p, q.points_per_image = 0;
    CHECK(lasso_prune(sn, ch1, &q, &d, &aug, NULL, &out, NULL, err) ==
              ABC_EVALUE,
          "0 points rejected");
    q = p, q.images = 20; /* 20 classifier points for 64 channels */
    CHECK(lasso_prune(sn, ch2, &q, &d, &aug, NULL, &out, NULL, err) ==
                  ABC_EVALUE &&
              strstr(err, "sampled points"),
          "too few points rejected: %s", err);
    printf("points: %s\n", err);
    struct dataset d28;
    random_dataset(&d28, 70, 28, 8);
    CHECK(lasso_prune(sn, ch1, &p, &d28, &aug, NULL, &out, NULL, err) ==
              ABC_EVALUE,
          "dataset of another shape rejected");
    model_tensor_data(sn, model_find_tensor(sn, "conv2.weight"))[3] = NAN;
    CHECK(lasso_prune(sn, ch1, &p, &d, &aug, NULL, &out, NULL, err) ==
              ABC_EVALUE,
          "NaN weights rejected");
    printf("NaN: %s\n", err);
    dataset_free(&d28);
    model_destroy(sn);

    /* a pruned ResNet-20 (slice of a full one) pruned further: every block
     * reader keeps its width, and the report's error is what forwarding
     * the result measures */
    struct model *full20 = create(ARCH_RESNET20, NULL, 16), *r20 = NULL;
    if (!full20) return;
    randomize(full20, 4);
    int mid[9] = {12, 16, 14, 24, 32, 28, 48, 64, 56};
    CHECK(prune_slice(full20, mid, FILTER_RANDOM, 9, &r20, err) == 0, "%s",
          err);
    int ch20[9], cmp20[10];
    CHECK(lasso_uniform_structure(r20, 0.5, ch20, err) == 0, "%s", err);
    CHECK(ch20[0] == 6 && ch20[2] == 7 && ch20[8] == 28,
          "uniform 0.5 structure %d %d %d", ch20[0], ch20[2], ch20[8]);
    CHECK(lasso_uniform_structure(r20, 0, ch20, err) == ABC_EVALUE,
          "ratio 0 rejected");
    lasso_uniform_structure(r20, 0.5, ch20, err);
    for (int j = 0; j < 9; j++)
        cmp20[j] = j;
    cmp20[9] = -1;
    prune_and_compare("resnet20 slice", r20, ch20, &d, &p, cmp20, 1, 0.25);
    model_destroy(r20);
    model_destroy(full20);

    /* VGG-16 sliced to 1/8 of its widths, then halved: its last convs run
     * on 1x1 maps (one point per image, 8 of 9 taps zero padding), and the
     * classifier is the last reader */
    struct model *vgg = create(ARCH_VGG16, NULL, 16), *v8 = NULL;
    if (!vgg) return;
    randomize(vgg, 6);
    int w8[13] = {8, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64}, chv[13];
    CHECK(prune_slice(vgg, w8, FILTER_RANDOM, 1, &v8, err) == 0, "%s", err);
    lasso_uniform_structure(v8, 0.5, chv, err);
    int cmpv[] = {12, -1};
    prune_and_compare("vgg16/8", v8, chv, &d, &p, cmpv, 1, 0.25);
    model_destroy(v8);
    model_destroy(vgg);
    dataset_free(&d);
}

int main(void)
{
    test_known_subset();
    test_keep_all();
    test_bisection();
    test_forward_to();
    test_networks();
    return check_finish("test_lasso");
}

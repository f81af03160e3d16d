/* test_dp.c - data-parallel training (proto/dp.c, common/train/train.c),
 * run by CTest under mpiexec on 2 ranks (test_dp) and on 3 (test_dp_np3):
 *  - the shard arithmetic (sizes differ by at most one, contiguous, all);
 *  - the hook's sums, both reductions, several buckets and a remainder:
 *    the ordered one bit-identical to a sum in rank order done here;
 *  - one step's reduced gradient against one rank's gradient of the whole
 *    batch, with a global batch made of g copies of one shard, so that
 *    every shard has the whole batch's BatchNorm statistics (~1e-6);
 *  - train_model's first step with a batch the ranks do not divide (7):
 *    the combined gradient against the shard gradients of the loader's
 *    batch computed here on one rank, weighted by shard size;
 *  - synchronized BN (batch 7, every rank another shard): the first
 *    step's combined gradient and the running statistics against one
 *    rank's on the whole batch, smallnet and resnet20;
 *  - two epochs twice: the same weights bit for bit, on every rank (per-
 *    rank and synchronized BN);
 *  - a stop on one rank stops every rank at the same step; rank 0 failing
 *    to write its checkpoint is an error every rank returns;
 *  - the train_phase message round trip and its range checks.
 * A rank whose transport fails calls MPI_Abort, so nothing hangs.
 *
 * Not a test, a measurement by hand: `mpirun -np 2 test_dp --bench [N]`
 * times N (default 200) gradient sums of ResNet-20's size (272474 floats)
 * with each reduction and bucket size, after a barrier each (so the time
 * is the reduction's, not a wait for a late rank), and prints the medians
 * as CSV. */
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "check.h"
#include "core/err.h"
#include "core/rng.h"
#include "core/seeds.h"
#include "dp.h"
#include "messages.h"
#include "train/train.h"

static int rank = -1, nranks = 0;

#define REQUIRE(cond, ...)                                                     \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "rank %d FATAL %s:%d: %s: ", rank, __FILE__,       \
                    __LINE__, #cond);                                          \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
            MPI_Abort(MPI_COMM_WORLD, 1);                                      \
        }                                                                      \
    } while (0)

static void test_shard(void)
{
    int bad = 0;
    for (int size = 1; size <= 7; size++)
        for (int n = 0; n <= 40; n++) {
            int next = 0, prev = n;
            for (int r = 0; r < size; r++) {
                int first, count;
                train_shard(n, r, size, &first, &count);
                if (first != next || count > prev || count < n / size ||
                    count > n / size + 1)
                    bad++;
                next = first + count;
                prev = count;
            }
            if (next != n) bad++;
        }
    CHECK(bad == 0, "%d shard arithmetic errors", bad);
    int f, c;
    train_shard(10, 2, 4, &f, &c);
    CHECK(f == 6 && c == 2, "10 over 4 ranks, rank 2: [%d, +%d)", f, c);
}

/* Rank r's value i: magnitudes spread over 2^-10..2^10, so that the
 * summation order shows in the bits. */
static float value(int r, size_t i)
{
    struct rng g;
    rng_seed(&g, 1000003u * (uint64_t)r + i);
    double u = rng_uniform(&g) - 0.5;
    return (float)ldexp(u, (int)rng_below(&g, 21) - 10);
}

static struct dp *make_dp(const char *algo, const char *kb)
{
    setenv("ABC_DP_REDUCE", algo, 1);
    setenv("ABC_DP_BUCKET_KB", kb, 1);
    struct dp *dp = NULL;
    char err[ABC_ERRLEN];
    int rc = dp_create(&dp, MPI_COMM_WORLD, err);
    REQUIRE(rc == 0, "dp_create: %s", err);
    return dp;
}

static void test_sums(const char *algo)
{
    struct dp *dp = make_dp(algo, "1"); /* 256 floats per bucket */
    struct train_dp *h = dp_hook(dp);
    CHECK(h->rank == rank && h->size == nranks, "%s: rank %d of %d", algo,
          h->rank, h->size);
    const size_t sizes[] = {1000, 1, 256, 0, 4099};
    char err[ABC_ERRLEN];
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        float *v = malloc(sizeof(float) * (n + 1));
        float *want = malloc(sizeof(float) * (n + 1));
        REQUIRE(v && want, "out of memory");
        for (size_t i = 0; i < n; i++) {
            v[i] = value(rank, i);
            float acc = value(0, i);
            for (int r = 1; r < nranks; r++)
                acc += value(r, i);
            want[i] = acc;
        }
        /* the overlapped form gives the same bits as scaling by 0.5 (a
         * power of two: exact) and sum_floats: begin, ready at
         * falling watermarks that cut buckets anywhere, end */
        float *ov = malloc(sizeof(float) * (n + 1));
        REQUIRE(ov != NULL, "out of memory");
        for (size_t i = 0; i < n; i++)
            ov[i] = value(rank, i);
        REQUIRE(h->sum_begin(h->ctx, ov, n, 0.5f, err) == 0, "%s", err);
        for (size_t lo = n; lo > 0; lo = lo > 301 ? lo - 301 : 0)
            h->sum_ready(h->ctx, lo);
        REQUIRE(h->sum_end(h->ctx, err) == 0, "sum_end: %s", err);
        int rc = h->sum_floats(h->ctx, v, n, err);
        REQUIRE(rc == 0, "sum_floats: %s", err);
        int ovsame = 1;
        for (size_t i = 0; i < n && ovsame; i++)
            ovsame = ov[i] == 0.5f * v[i] ||
                     (strcmp(algo, "allreduce") == 0 &&
                      fabsf(ov[i] - 0.5f * v[i]) <= 1e-6f * (1 + fabsf(v[i])));
        CHECK(ovsame, "%s: overlapped sum of %zu floats = scaled sum", algo, n);
        free(ov);
        if (strcmp(algo, "ordered") == 0) {
            CHECK(n == 0 || memcmp(v, want, n * sizeof(float)) == 0,
                  "ordered sum of %zu floats is the rank-order sum, bit for "
                  "bit",
                  n);
        } else {
            char what[64];
            snprintf(what, sizeof what, "allreduce sum of %zu floats", n);
            CHECK_CLOSE(what, v, want, n, 1e-6, 1e-6);
        }
        uint64_t hv = 1469598103934665603ULL;
        for (size_t i = 0; i < n * sizeof(float); i++)
            hv = (hv ^ ((unsigned char *)v)[i]) * 1099511628211ULL;
        int same = 0;
        REQUIRE(h->same_u64(h->ctx, hv, &same, err) == 0, "%s", err);
        CHECK(same, "%s: every rank has the same %zu sums", algo, n);
        free(v);
        free(want);
    }
    double d[2] = {rank + 0.5, 1e-3 * rank};
    REQUIRE(h->sum_doubles(h->ctx, d, 2, err) == 0, "%s", err);
    double w0 = 0, w1 = 0;
    for (int r = 0; r < nranks; r++)
        w0 += r + 0.5, w1 += 1e-3 * r;
    CHECK(d[0] == w0 && d[1] == w1, "sum_doubles %g %g, want %g %g", d[0], d[1],
          w0, w1);
    int same = 1;
    REQUIRE(h->same_u64(h->ctx, (uint64_t)rank, &same, err) == 0, "%s", err);
    CHECK(nranks == 1 || !same, "same_u64 sees that the ranks differ");
    dp_destroy(dp);
}

/* n random 1x28x28 images and labels. */
static void make_set(struct dataset *d, int n, uint64_t seed)
{
    memset(d, 0, sizeof *d);
    d->n = n, d->c = 1, d->h = 28, d->w = 28, d->num_classes = 10;
    d->images = malloc((size_t)n * 28 * 28 + 1);
    d->labels = malloc((size_t)n + 1);
    REQUIRE(d->images && d->labels, "out of memory");
    struct rng g;
    rng_seed(&g, seed);
    for (size_t i = 0; i < (size_t)n * 28 * 28; i++)
        d->images[i] = (uint8_t)rng_below(&g, 256);
    for (int i = 0; i < n; i++)
        d->labels[i] = (uint8_t)rng_below(&g, 10);
}

static void make_splits(struct data_splits *s, int ntrain, int nval)
{
    memset(s, 0, sizeof *s);
    make_set(&s->train, ntrain, 77);
    make_set(&s->val, nval, 78);
    s->aug.mean[0] = 0.5f;
    s->aug.std[0] = 0.25f;
}

static void free_splits(struct data_splits *s)
{
    free(s->train.images);
    free(s->train.labels);
    free(s->val.images);
    free(s->val.labels);
}

static struct model *make_arch_model(enum arch arch)
{
    struct model *m = NULL;
    char err[ABC_ERRLEN];
    int rc = model_create(&m, arch, NULL, 1, 28, 28, 10, err);
    REQUIRE(rc == 0, "model_create: %s", err);
    model_init_weights(m, 4242);
    return m;
}

static struct model *make_model(void)
{
    return make_arch_model(ARCH_SMALLNET);
}

/* A global batch of nranks copies of k images: every rank's shard is the
 * same k images, so its BatchNorm statistics are the whole batch's and
 * the combined gradient must be one rank's gradient of the whole batch. */
static void test_gradient_copies(void)
{
    const int k = 6, B = k * nranks;
    const size_t img = 28 * 28;
    struct model *m = make_model();
    char err[ABC_ERRLEN];
    REQUIRE(model_reserve(m, B, err) == 0, "%s", err);
    float *x = malloc(sizeof(float) * img * B);
    int *y = malloc(sizeof(int) * B);
    float *full = malloc(sizeof(float) * m->nparams);
    REQUIRE(x && y && full, "out of memory");
    struct rng g;
    rng_seed(&g, 99);
    for (size_t i = 0; i < img * k; i++)
        x[i] = (float)rng_normal(&g);
    for (int i = 0; i < k; i++)
        y[i] = (int)rng_below(&g, 10);
    for (int c = 1; c < nranks; c++) {
        memcpy(x + img * k * c, x, sizeof(float) * img * k);
        memcpy(y + k * c, y, sizeof(int) * k);
    }
    model_zero_grad(m);
    float lfull = model_forward(m, x, y, B, 1, NULL);
    model_backward(m);
    memcpy(full, m->grads, sizeof(float) * m->nparams);

    struct dp *dp = make_dp("ordered", "16");
    struct train_dp *h = dp_hook(dp);
    model_zero_grad(m);
    float lshard = model_forward(m, x, y, k, 1, NULL);
    model_backward(m);
    for (size_t j = 0; j < m->nparams; j++)
        m->grads[j] *= (float)k / (float)B;
    REQUIRE(h->sum_floats(h->ctx, m->grads, m->nparams, err) == 0, "%s", err);
    double e = check_rel_err(m->grads, full, m->nparams);
    CHECK(e < 1e-5,
          "%d ranks x %d images: combined gradient vs the whole batch's on "
          "one rank: max rel error %.3g",
          nranks, k, e);
    CHECK(fabsf(lshard - lfull) < 1e-5f * fabsf(lfull), "loss %g vs %g", lshard,
          lfull);
    if (rank == 0)
        printf("ok   copies: gradient of %zu params, max rel error %.3g\n",
               m->nparams, e);
    dp_destroy(dp);
    free(x);
    free(y);
    free(full);
    model_destroy(m);
}

struct capture {
    float *g;
    size_t n;
    int calls;
};

static void capture_grads(void *ctx, struct model *m)
{
    struct capture *c = ctx;
    if (c->calls++ == 0) memcpy(c->g, m->grads, sizeof(float) * c->n);
}

static void small_schedule(struct train_config *tc, int batch, int epochs)
{
    memset(tc, 0, sizeof *tc);
    tc->epochs = epochs;
    tc->batch_size = batch;
    tc->lr = 0.05f;
    tc->momentum = 0.9f;
    tc->weight_decay = 5e-4f;
    tc->schedule = LR_COSINE;
    tc->gamma = 0.1f;
}

/* train_model's first step of m (batch tc->batch_size, data-parallel over
 * dp), its combined gradient captured into cap->g (allocated here). */
static void dp_first_step(struct model *m, const struct train_config *tc,
                          const struct data_splits *s, uint64_t seed,
                          struct dp *dp, struct capture *cap)
{
    *cap = (struct capture){.n = m->nparams, .g = malloc(4 * m->nparams)};
    REQUIRE(cap->g, "out of memory");
    struct train_io io = {.stop_at_step = 1,
                          .skip_val = 1,
                          .after_backward = capture_grads,
                          .hook_ctx = cap,
                          .dp = dp_hook(dp)};
    struct train_state st = {0};
    char err[ABC_ERRLEN];
    int rc = train_model(m, tc, s, seed, &st, &io, err);
    CHECK(rc == 0 && cap->calls == 1 && st.step == 1, "rc %d (%s), %d calls",
          rc, rc ? err : "", cap->calls);
}

/* x (B images), y <- the first batch train_model draws with seed. */
static void first_batch(const struct data_splits *s, int B, uint64_t seed,
                        float *x, int *y)
{
    struct loader l;
    char err[ABC_ERRLEN];
    REQUIRE(loader_init(&l, &s->train, B, 1, 1, &s->aug,
                        rng_derive(seed, SEED_LOADER, 0, 0), err) == 0,
            "%s", err);
    loader_start(&l, 0);
    REQUIRE(loader_next(&l, x, y) == B, "a full batch");
    loader_free(&l);
}

/* train_model's first step with batch 7: the combined gradient against
 * the weighted shard gradients of the loader's first batch. */
static void test_first_step(void)
{
    const int B = 7;
    const uint64_t seed = 5;
    struct data_splits s;
    make_splits(&s, 21, 5);
    struct train_config tc;
    small_schedule(&tc, B, 1);
    struct model *m = make_model();
    struct capture cap;
    struct dp *dp = make_dp("ordered", "8");
    dp_first_step(m, &tc, &s, seed, dp, &cap);

    /* the reference, on this rank alone */
    struct model *r = make_model();
    float *x = malloc(sizeof(float) * 28 * 28 * B);
    int y[7];
    double *acc = calloc(r->nparams, sizeof(double));
    float *ref = malloc(sizeof(float) * r->nparams);
    char err[ABC_ERRLEN];
    REQUIRE(x && acc && ref, "out of memory");
    first_batch(&s, B, seed, x, y);
    REQUIRE(model_reserve(r, B, err) == 0, "%s", err);
    for (int q = 0; q < nranks; q++) {
        int first, count;
        train_shard(B, q, nranks, &first, &count);
        model_zero_grad(r);
        model_forward(r, x + (size_t)first * 28 * 28, y + first, count, 1,
                      NULL);
        model_backward(r);
        for (size_t j = 0; j < r->nparams; j++)
            acc[j] += (double)count / B * r->grads[j];
    }
    for (size_t j = 0; j < r->nparams; j++)
        ref[j] = (float)acc[j];
    double e = check_rel_err(cap.g, ref, r->nparams);
    CHECK(e < 1e-5,
          "batch %d over %d ranks: first step's gradient vs the weighted "
          "shard gradients: max rel error %.3g",
          B, nranks, e);
    if (rank == 0)
        printf("ok   first step (batch %d): max rel error %.3g\n", B, e);
    free(x);
    free(acc);
    free(ref);
    free(cap.g);
    model_destroy(r);
    model_destroy(m);
    dp_destroy(dp);
    free_splits(&s);
}

/* Synchronized BN (train_config.sync_bn): train_model's first step with
 * a batch of 7 that the ranks split unevenly (4 + 3, 3 + 2 + 2), every
 * rank a different shard; the combined gradient must be one rank's
 * gradient of the whole batch (BN statistics of the whole batch), and the
 * running statistics after the step the one rank's. smallnet has only
 * BN+ReLU layers, resnet20 plain BN layers before its residual adds too. */
static void test_sync_bn(enum arch arch)
{
    const int B = 7;
    const uint64_t seed = 6;
    struct data_splits s;
    make_splits(&s, 21, 5);
    struct train_config tc;
    small_schedule(&tc, B, 1);
    tc.sync_bn = 1;
    struct model *m = make_arch_model(arch);
    struct capture cap;
    struct dp *dp = make_dp("ordered", "8");
    dp_first_step(m, &tc, &s, seed, dp, &cap);
    CHECK(m->bn_sum == NULL, "train_model left the BN hook set");

    /* the reference: the whole batch on this rank alone */
    struct model *r = make_arch_model(arch);
    float *x = malloc(sizeof(float) * 28 * 28 * B);
    int y[7];
    char err[ABC_ERRLEN];
    REQUIRE(x, "out of memory");
    first_batch(&s, B, seed, x, y);
    REQUIRE(model_reserve(r, B, err) == 0, "%s", err);
    model_zero_grad(r);
    model_forward(r, x, y, B, 1, NULL);
    model_backward(r);
    double e = check_rel_err(cap.g, r->grads, r->nparams);
    double eb = check_rel_err(m->buffers, r->buffers, r->nbuffers);
    CHECK(e < 1e-5 && eb < 1e-5,
          "%s, batch %d over %d ranks, synchronized BN: first step's "
          "gradient vs one rank's of the whole batch: max rel error %.3g; "
          "running statistics %.3g",
          arch_name(arch), B, nranks, e, eb);
    /* per-rank statistics are another gradient: the check can fail */
    double eo = 0;
    if (nranks > 1) {
        struct model *o = make_arch_model(arch);
        struct capture co;
        tc.sync_bn = 0;
        dp_first_step(o, &tc, &s, seed, dp, &co);
        eo = check_rel_err(co.g, r->grads, r->nparams);
        CHECK(eo > 1e-3, "per-rank BN statistics give another gradient: %.3g",
              eo);
        free(co.g);
        model_destroy(o);
    }
    if (rank == 0)
        printf("ok   %s sync BN (batch %d on %d ranks): gradient max rel "
               "error %.3g, running statistics %.3g (per-rank BN: %.3g)\n",
               arch_name(arch), B, nranks, e, eb, eo);
    free(x);
    free(cap.g);
    model_destroy(r);
    model_destroy(m);
    dp_destroy(dp);
    free_splits(&s);
}

/* Two epochs (batch 10, 64 images, 13 validation images), twice. */
static uint64_t train_twice_hash(struct dp *dp, int sync_bn, double *val_acc)
{
    struct data_splits s;
    make_splits(&s, 64, 13);
    struct train_config tc;
    small_schedule(&tc, 10, 2);
    tc.sync_bn = sync_bn;
    struct model *m = make_model();
    struct train_state st = {0};
    struct train_io io = {.dp = dp ? dp_hook(dp) : NULL};
    char err[ABC_ERRLEN];
    int rc = train_model(m, &tc, &s, 3, &st, &io, err);
    REQUIRE(rc == 0, "train_model: %s", err);
    uint64_t h = train_weights_hash(m, NULL);
    *val_acc = st.best_val_acc;
    model_destroy(m);
    free_splits(&s);
    return h;
}

static void test_repeat(void)
{
    struct dp *dp = make_dp("ordered", "4");
    struct train_dp *hk = dp_hook(dp);
    double a1, a2, a0;
    uint64_t h1 = train_twice_hash(dp, 0, &a1);
    uint64_t h2 = train_twice_hash(dp, 0, &a2);
    CHECK(h1 == h2 && a1 == a2,
          "two 2-epoch trainings on %d ranks: hash %016llx vs %016llx, val "
          "%g vs %g",
          nranks, (unsigned long long)h1, (unsigned long long)h2, a1, a2);
    int same = 0;
    char err[ABC_ERRLEN];
    REQUIRE(hk->same_u64(hk->ctx, h1, &same, err) == 0, "%s", err);
    CHECK(same, "every rank ends with the same weights");
    double v = a1;
    REQUIRE(hk->sum_doubles(hk->ctx, &v, 1, err) == 0, "%s", err);
    CHECK(v == a1 * nranks, "every rank has the same validation accuracy");
    /* alone (no dp) on this rank: another sum, other weights, same task */
    uint64_t h0 = train_twice_hash(NULL, 0, &a0);
    if (rank == 0)
        printf("ok   repeat: %d ranks hash %016llx val %.4f; one rank %016llx "
               "val %.4f\n",
               nranks, (unsigned long long)h1, a1, (unsigned long long)h0, a0);
    /* synchronized BN repeats bit for bit too (train_model checks that
     * the ranks agree, running statistics included) */
    double s1, s2;
    uint64_t g1 = train_twice_hash(dp, 1, &s1);
    uint64_t g2 = train_twice_hash(dp, 1, &s2);
    CHECK(g1 == g2 && s1 == s2 && (g1 != h1 || nranks == 1),
          "two 2-epoch trainings with synchronized BN on %d ranks: hash "
          "%016llx vs %016llx, val %g vs %g (per-rank BN %016llx)",
          nranks, (unsigned long long)g1, (unsigned long long)g2, s1, s2,
          (unsigned long long)h1);
    if (rank == 0)
        printf("ok   repeat with synchronized BN: hash %016llx val %.4f\n",
               (unsigned long long)g1, s1);
    dp_destroy(dp);
}

/* A signal on the last rank only: every rank stops at the same step. */
static void test_stop_and_failure(void)
{
    struct dp *dp = make_dp("ordered", "1024");
    struct data_splits s;
    make_splits(&s, 40, 4);
    struct train_config tc;
    small_schedule(&tc, 8, 1);
    struct model *m = make_model();
    volatile sig_atomic_t stop = rank == nranks - 1;
    struct train_io io = {.stop = &stop, .dp = dp_hook(dp)};
    struct train_state st = {0};
    char err[ABC_ERRLEN];
    int rc = train_model(m, &tc, &s, 1, &st, &io, err);
    CHECK(rc == ABC_ESTOPPED && st.step == 0 && dp_hook(dp)->shared_error,
          "a stop on rank %d: rc %d step %lld shared %d (%s)", nranks - 1, rc,
          (long long)st.step, dp_hook(dp)->shared_error, err);

    /* rank 0 cannot write its checkpoint: all return an error, only
     * rank 0's is its own */
    struct train_io io2 = {.dp = dp_hook(dp)};
    if (rank == 0) io2.ckpt_path = "/nonexistent-dir/x/model.ckpt";
    struct train_state st2 = {0};
    rc = train_model(m, &tc, &s, 1, &st2, &io2, err);
    int shared = dp_hook(dp)->shared_error;
    CHECK(rc != 0 && shared == (rank != 0),
          "rank 0's failed checkpoint: rc %d shared %d (%s)", rc, shared, err);
    if (rank != 0)
        CHECK(strstr(err, "other rank(s) failed") != NULL, "says so: %s", err);

    /* a batch smaller than the rank count is refused by every rank */
    struct train_config tiny;
    small_schedule(&tiny, nranks - 1, 1);
    struct train_state st3 = {0};
    rc = train_model(m, &tiny, &s, 1, &st3, &io, err);
    CHECK(rc == ABC_EVALUE && dp_hook(dp)->shared_error &&
              strstr(err, "smaller than the"),
          "batch %d on %d ranks: %s", nranks - 1, nranks, err);
    model_destroy(m);
    free_splits(&s);
    dp_destroy(dp);
}

static void test_message(void)
{
    struct proto_train_phase p = {.seed = 0xfeedbeefcafeULL,
                                  .epochs = 3,
                                  .batch = 33,
                                  .lr = 0.1,
                                  .momentum = 0.9,
                                  .nesterov = 1,
                                  .weight_decay = 5e-4,
                                  .schedule = 1,
                                  .nmilestones = 2,
                                  .milestones = {1, 2},
                                  .gamma = 0.1,
                                  .sync_bn = 1,
                                  .stop_at_step = 17,
                                  .sparsity = 1e-4,
                                  .sparsity_all_bn = 1,
                                  .train_images = 1000,
                                  .val_images = 200,
                                  .data_crc = 0x12345678};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char err[ABC_ERRLEN];
    int rc = proto_pack_train_phase(&p, &sb, err);
    struct proto_train_phase q;
    if (!rc) rc = proto_unpack_train_phase(sb.data, sb.size, &q, err);
    CHECK(rc == 0 && memcmp(&p, &q, sizeof p) == 0,
          "train_phase round trip: %s", rc ? err : "differs");
    enum proto_type t;
    CHECK(proto_peek_type(sb.data, sb.size, &t, err) == 0 &&
              t == PROTO_TRAIN_PHASE,
          "peek: train_phase");
    msgpack_sbuffer_destroy(&sb);

    struct proto_train_phase bad = p;
    bad.milestones[1] = -1;
    msgpack_sbuffer_init(&sb);
    rc = proto_pack_train_phase(&bad, &sb, err);
    CHECK(rc == ABC_EVALUE && strstr(err, "\"milestones\""), "%s", err);
    bad = p;
    bad.nmilestones = PROTO_MAX_MILESTONES + 1;
    rc = proto_pack_train_phase(&bad, &sb, err);
    CHECK(rc == ABC_EVALUE && strstr(err, "entries"), "%s", err);
    bad = p;
    bad.batch = 0;
    rc = proto_pack_train_phase(&bad, &sb, err);
    CHECK(rc == ABC_EVALUE && strstr(err, "\"batch\""), "%s", err);
    msgpack_sbuffer_destroy(&sb);

    /* a hand-made message with 65 milestones and one with a string */
    msgpack_sbuffer_init(&sb);
    REQUIRE(proto_pack_train_phase(&p, &sb, err) == 0, "%s", err);
    char *raw = malloc(sb.size + 1);
    REQUIRE(raw, "out of memory");
    memcpy(raw, sb.data, sb.size);
    /* cut the message short: truncated, named */
    rc = proto_unpack_train_phase(raw, sb.size - 3, &q, err);
    CHECK(rc == ABC_EFORMAT && strstr(err, "train_phase"), "truncated: %s",
          err);
    free(raw);
    msgpack_sbuffer_destroy(&sb);
    setenv("ABC_DP_REDUCE", "fastest", 1);
    struct dp *dp = NULL;
    rc = dp_create(&dp, MPI_COMM_WORLD, err);
    CHECK(rc == ABC_EVALUE && strstr(err, "ABC_DP_REDUCE='fastest'"), "%s",
          err);
    setenv("ABC_DP_REDUCE", "ordered", 1);
    setenv("ABC_DP_BUCKET_KB", "0", 1);
    rc = dp_create(&dp, MPI_COMM_WORLD, err);
    CHECK(rc == ABC_EVALUE && strstr(err, "ABC_DP_BUCKET_KB"), "%s", err);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void bench(int reps)
{
    const size_t n = 272474; /* ResNet-20's parameters */
    float *v = malloc(sizeof(float) * n);
    double *t = malloc(sizeof(double) * (size_t)reps);
    REQUIRE(v && t && reps > 0, "out of memory");
    const char *algos[] = {"ordered", "allreduce"};
    const char *kbs[] = {"64", "256", "1024", "4096"};
    if (rank == 0) printf("ranks,reduce,bucket_kb,floats,median_us,min_us\n");
    for (int a = 0; a < 2; a++)
        for (int k = 0; k < 4; k++) {
            struct dp *dp = make_dp(algos[a], kbs[k]);
            struct train_dp *h = dp_hook(dp);
            char err[ABC_ERRLEN];
            for (int i = 0; i < reps; i++) {
                for (size_t j = 0; j < n; j++)
                    v[j] = value(rank, j % 4096);
                MPI_Barrier(MPI_COMM_WORLD);
                double t0 = MPI_Wtime();
                REQUIRE(h->sum_floats(h->ctx, v, n, err) == 0, "%s", err);
                t[i] = MPI_Wtime() - t0;
            }
            /* the slowest rank's time of each repetition */
            MPI_Allreduce(MPI_IN_PLACE, t, reps, MPI_DOUBLE, MPI_MAX,
                          MPI_COMM_WORLD);
            qsort(t, (size_t)reps, sizeof *t, cmp_double);
            if (rank == 0)
                printf("%d,%s,%s,%zu,%.0f,%.0f\n", nranks, algos[a], kbs[k], n,
                       1e6 * t[reps / 2], 1e6 * t[0]);
            dp_destroy(dp);
        }
    free(v);
    free(t);
}

int main(int argc, char **argv)
{
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) return 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
        bench(argc > 2 ? atoi(argv[2]) : 200);
        MPI_Finalize();
        return 0;
    }
    test_shard();
    test_sums("ordered");
    test_sums("allreduce");
    test_gradient_copies();
    test_first_step();
    test_sync_bn(ARCH_SMALLNET);
    test_sync_bn(ARCH_RESNET20);
    test_repeat();
    test_stop_and_failure();
    test_message();
    char name[32];
    snprintf(name, sizeof name, "test_dp rank %d/%d", rank, nranks);
    int rc = check_finish(name);
    int any = 0;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any;
}

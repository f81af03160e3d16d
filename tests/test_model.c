/* test_model.c - models built from structure vectors: FLOPs and parameter
 * counts against the literature, pruned shapes, bad structures rejected,
 * whole-model gradients against finite differences, determinism. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/err.h"
#include "core/rng.h"
#include "nn/model.h"

static void check_figure(const char *what, double got, double want, double rel)
{
    CHECK(fabs(got - want) <= rel * want,
          "%s: %.4g, literature %.4g (+-%.0f%%)", what, got, want, rel * 100);
    printf("%-24s %.4gM (literature %.4gM)\n", what, got / 1e6, want / 1e6);
}

static void test_literature(void)
{
    static const struct {
        enum arch a;
        double macs, params;
    } want[] = {
        {ARCH_RESNET20, 40.55e6, 0.27e6},
        {ARCH_RESNET56, 125.49e6, 0.85e6},
        {ARCH_RESNET110, 252.89e6, 1.73e6},
        {ARCH_VGG16, 313.5e6, 14.73e6},
    };
    char err[ABC_ERRLEN];
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        struct model *m;
        int rc = model_create(&m, want[i].a, NULL, 3, 32, 32, 10, err);
        CHECK(rc == 0, "%s: %s", arch_name(want[i].a), err);
        if (rc) continue;
        char what[64];
        snprintf(what, sizeof what, "%s MACs", arch_name(want[i].a));
        check_figure(what, (double)model_macs(m), want[i].macs, 0.01);
        snprintf(what, sizeof what, "%s params", arch_name(want[i].a));
        check_figure(what, (double)model_param_count(m), want[i].params, 0.02);
        model_destroy(m);
    }
}

/* Exact counts for a pruned ResNet-20 at 1x28x28, by hand: MACs of block
 * (s,b) with inner width c: conv1 c*in*9*HW + conv2 out*c*9*HW. */
static void test_pruned_counts(void)
{
    char err[ABC_ERRLEN];
    int ch[9] = {8, 16, 4, 32, 1, 16, 64, 20, 33};
    struct model *m;
    CHECK(model_create(&m, ARCH_RESNET20, ch, 1, 28, 28, 10, err) == 0, "%s",
          err);
    int64_t macs = 16LL * 1 * 9 * 784, params = 16 * 9 + 32;
    int in = 16;
    for (int s = 0; s < 3; s++) {
        int planes = 16 << s, hw = s == 0 ? 784 : s == 1 ? 196 : 49;
        for (int b = 0; b < 3; b++) {
            int c = ch[s * 3 + b];
            macs += (int64_t)c * in * 9 * hw + (int64_t)planes * c * 9 * hw;
            params += (int64_t)c * in * 9 + 2 * c + (int64_t)planes * c * 9 +
                      2 * planes;
            in = planes;
        }
    }
    macs += 64 * 10;
    params += 64 * 10 + 10;
    CHECK(model_macs(m) == macs, "pruned resnet20 MACs %lld, want %lld",
          (long long)model_macs(m), (long long)macs);
    CHECK(model_param_count(m) == params, "pruned params %lld, want %lld",
          (long long)model_param_count(m), (long long)params);
    struct tensor_info *t = model_find_tensor(m, "layer2.1.conv1.weight");
    CHECK(t && t->shape[0] == 1 && t->shape[1] == 32 && t->prune_out == 4,
          "layer2.1.conv1.weight shape (1,32,3,3), prune_out 4");
    t = model_find_tensor(m, "layer2.1.conv2.weight");
    CHECK(t && t->shape[0] == 32 && t->shape[1] == 1 && t->prune_in == 4,
          "layer2.1.conv2.weight shape (32,1,3,3) prune_in 4");
    t = model_find_tensor(m, "layer3.2.bn1.running_var");
    CHECK(t && t->is_buffer && t->shape[0] == 33, "bn1 buffer pruned to 33");
    model_destroy(m);
}

static void test_bad_structures(void)
{
    char err[ABC_ERRLEN] = "";
    struct model *m = (struct model *)1;
    int zero[3] = {0, 32, 64}, big[3] = {16, 33, 64};
    CHECK(model_create(&m, ARCH_SMALLNET, zero, 1, 28, 28, 10, err) ==
                  ABC_EVALUE &&
              m == NULL && strstr(err, "keeps 0 channels"),
          "zero channels rejected: %s", err);
    CHECK(model_create(&m, ARCH_SMALLNET, big, 1, 28, 28, 10, err) ==
                  ABC_EVALUE &&
              strstr(err, "expected 1..32"),
          "too many channels rejected: %s", err);
    CHECK(model_create(&m, ARCH_VGG16, NULL, 1, 8, 8, 10, err) == ABC_EVALUE &&
              strstr(err, "too small"),
          "8x8 input too small for vgg16: %s", err);
    CHECK(model_create(&m, ARCH_COUNT, NULL, 1, 28, 28, 10, err) == ABC_EVALUE,
          "unknown arch rejected");
    CHECK(model_create(&m, ARCH_RESNET20, NULL, 0, 28, 28, 10, err) ==
              ABC_EVALUE,
          "bad input rejected");
}

static void fill(float *x, size_t n, uint64_t seed)
{
    struct rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(&r);
}

/* Loss gradient w.r.t. a few parameters of every tensor, against central
 * differences of the float forward (coarse: float arithmetic). */
static void test_model_gradients(enum arch a, const int *ch, int H)
{
    char err[ABC_ERRLEN];
    struct model *m;
    const int B = 6;
    CHECK(model_create(&m, a, ch, 1, H, H, 10, err) == 0, "%s", err);
    model_init_weights(m, 7);
    CHECK(model_reserve(m, B, err) == 0, "%s", err);
    float *x = malloc(sizeof(float) * B * H * H);
    int y[6] = {0, 3, 9, 2, 2, 5};
    fill(x, (size_t)B * H * H, 11);
    /* Perturb BN running stats so eval-mode code paths differ. */
    model_zero_grad(m);
    model_forward(m, x, y, B, 1, NULL);
    model_backward(m);
    float *g = malloc(sizeof(float) * m->nparams);
    memcpy(g, m->grads, sizeof(float) * m->nparams);
    float *saved = malloc(sizeof(float) * m->nbuffers);
    memcpy(saved, m->buffers, sizeof(float) * m->nbuffers);
    struct rng r;
    rng_seed(&r, 5);
    int bad = 0, tried = 0;
    double worst = 0;
    for (int t = 0; t < m->ntensors; t++) {
        struct tensor_info *ti = &m->tensors[t];
        if (ti->is_buffer) continue;
        for (int k = 0; k < 3; k++) {
            size_t j = ti->offset + rng_below(&r, ti->numel);
            float p0 = m->params[j];
            const float h = 2e-3f;
            m->params[j] = p0 + h;
            double lp = model_forward(m, x, y, B, 1, NULL);
            m->params[j] = p0 - h;
            double lm = model_forward(m, x, y, B, 1, NULL);
            m->params[j] = p0;
            double fd = (lp - lm) / (2 * h);
            double d = fabs(fd - g[j]);
            double tol = 2e-3 + 5e-2 * fabs(fd);
            if (d > worst) worst = d;
            tried++;
            if (d > tol) {
                bad++;
                fprintf(stderr, "  %s[%zu]: analytic %.6g, numeric %.6g\n",
                        ti->name, j - ti->offset, g[j], fd);
            }
        }
    }
    memcpy(m->buffers, saved, sizeof(float) * m->nbuffers);
    CHECK(bad == 0, "%s: %d of %d gradient entries off", arch_name(a), bad,
          tried);
    printf("ok   %s whole-model gradient: %d entries, max|diff| %.3g\n",
           arch_name(a), tried, worst);

    /* Determinism: the same step twice gives bit-identical gradients. */
    model_zero_grad(m);
    model_forward(m, x, y, B, 1, NULL);
    model_backward(m);
    model_zero_grad(m);
    model_forward(m, x, y, B, 1, NULL);
    model_backward(m);
    float *g2 = malloc(sizeof(float) * m->nparams);
    memcpy(g2, m->grads, sizeof(float) * m->nparams);
    model_zero_grad(m);
    model_forward(m, x, y, B, 1, NULL);
    model_backward(m);
    CHECK(memcmp(g2, m->grads, sizeof(float) * m->nparams) == 0,
          "%s: gradients differ between identical steps", arch_name(a));
    free(g2);
    free(saved);
    free(g);
    free(x);
    model_destroy(m);
}

/* Eval forward with each BN folded into its conv (the default) against the
 * unfolded program (conv, then batchnorm with running statistics), with
 * random BN parameters and statistics so the fold has work to do: logits
 * within float rounding of the fold, predictions equal where not tied. */
static void test_eval_fold(enum arch a, const int *ch, int threads)
{
    char err[ABC_ERRLEN];
    struct model *m;
    const int B = 37, H = 28;
    omp_set_num_threads(threads);
    CHECK(model_create(&m, a, ch, 1, H, H, 10, err) == 0, "%s", err);
    model_init_weights(m, 11);
    struct rng r;
    rng_seed(&r, 5);
    for (int t = 0; t < m->ntensors; t++) {
        struct tensor_info *ti = &m->tensors[t];
        float *d = model_tensor_data(m, ti);
        for (size_t i = 0; i < ti->numel; i++) {
            double u = rng_normal(&r);
            if (ti->role == TENSOR_BN_GAMMA) d[i] = (float)(1 + 0.3 * u);
            if (ti->role == TENSOR_BN_BETA) d[i] = (float)(0.2 * u);
            if (ti->role == TENSOR_BN_MEAN) d[i] = (float)(0.5 * u);
            if (ti->role == TENSOR_BN_VAR) d[i] = (float)(0.5 + u * u);
        }
    }
    CHECK(model_reserve(m, B, err) == 0, "%s", err);
    float *x = malloc(sizeof(float) * B * H * H),
          *ref = malloc(sizeof(float) * B * 10);
    fill(x, (size_t)B * H * H, 3);
    m->fold_bn_eval = 0;
    model_forward(m, x, NULL, B, 0, NULL);
    memcpy(ref, model_logits(m), sizeof(float) * B * 10);
    m->fold_bn_eval = 1;
    model_forward(m, x, NULL, B, 0, NULL);
    const float *got = model_logits(m);
    double scale = 0, worst = 0;
    for (int i = 0; i < B * 10; i++)
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    for (int i = 0; i < B * 10; i++)
        if (fabs(got[i] - ref[i]) > worst) worst = fabs(got[i] - ref[i]);
    CHECK(scale > 0 && worst <= 1e-5 * scale,
          "%s thr%d: folded eval logits differ by %.3g (largest logit %.3g)",
          arch_name(a), threads, worst, scale);
    printf("%s thr%d: folded BN eval vs unfolded: max|diff| %.3g of %.3g\n",
           arch_name(a), threads, worst, scale);
    free(x), free(ref);
    model_destroy(m);
    omp_set_num_threads(1);
}

/* model.grad_ready: called with falling watermarks ending at 0, and at
 * each call grads[lo, nparams) already hold their final values (those of
 * a backward pass without the hook: the pass is deterministic). */
struct ready_log {
    const struct model *m;
    const float *final;
    size_t last;
    int calls, early, rising;
};

static void on_ready(void *ctx, size_t lo)
{
    struct ready_log *r = ctx;
    r->calls++;
    if (lo > r->last) r->rising++;
    r->last = lo;
    for (size_t i = lo; i < r->m->nparams; i++)
        if (r->m->grads[i] != r->final[i]) {
            r->early++;
            break;
        }
}

static void test_grad_ready(enum arch a, const int *ch)
{
    char err[ABC_ERRLEN];
    struct model *m;
    const int B = 4, H = 28;
    CHECK(model_create(&m, a, ch, 1, H, H, 10, err) == 0, "%s", err);
    model_init_weights(m, 3);
    CHECK(model_reserve(m, B, err) == 0, "%s", err);
    float *x = malloc(sizeof(float) * B * H * H);
    float *final = malloc(sizeof(float) * m->nparams);
    int y[4] = {1, 7, 3, 0};
    fill(x, (size_t)B * H * H, 9);
    model_zero_grad(m);
    model_forward(m, x, y, B, 1, NULL);
    model_backward(m);
    memcpy(final, m->grads, sizeof(float) * m->nparams);
    struct ready_log r = {m, final, m->nparams, 0, 0, 0};
    m->grad_ready = on_ready;
    m->grad_ready_ctx = &r;
    model_zero_grad(m);
    model_forward(m, x, y, B, 1, NULL);
    model_backward(m);
    CHECK(r.calls > 0 && r.early == 0 && r.rising == 0 && r.last == 0,
          "%s grad_ready: %d calls, %d before their gradients were final, "
          "%d rising, last %zu",
          arch_name(a), r.calls, r.early, r.rising, r.last);
    CHECK(memcmp(final, m->grads, sizeof(float) * m->nparams) == 0,
          "%s: the hook changed the gradients", arch_name(a));
    free(x), free(final);
    model_destroy(m);
}

int main(void)
{
    test_literature();
    test_pruned_counts();
    test_bad_structures();
    int small[3] = {5, 7, 9};
    test_model_gradients(ARCH_SMALLNET, small, 12);
    int pruned20[9] = {9, 6, 9, 22, 16, 16, 32, 32, 19};
    test_grad_ready(ARCH_RESNET20, pruned20);
    test_grad_ready(ARCH_SMALLNET, NULL);
    for (int threads = 1; threads <= 2; threads++) {
        test_eval_fold(ARCH_SMALLNET, NULL, threads);
        test_eval_fold(ARCH_RESNET20, NULL, threads);
        test_eval_fold(ARCH_RESNET20, pruned20, threads);
        test_eval_fold(ARCH_VGG16, NULL, threads);
    }
    /* Deeper nets cross ReLU/max-pool kinks within any float step size;
     * their whole-model gradients are checked exactly against PyTorch in
     * test_torch_ref, and every layer against finite differences in double
     * in test_layers. */
    return check_finish("test_model");
}

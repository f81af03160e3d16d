/* test_memory.c - the memory estimate of a config (common/train/memory.c)
 * against independent counts: ResNet-20's parameters counted by hand from
 * its layer shapes; the model's share (parameters, gradients, velocity,
 * activations, one input batch) against the resident memory measured while
 * a real training step runs at that batch size; the data's share against
 * the Fashion-MNIST files' sizes; and the refusal of an absurd batch size
 * naming the key and the limit. Single process, 2 threads. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/err.h"
#include "io/config.h"
#include "nn/model.h"
#include "train/memory.h"

/* Resident bytes of this process (/proc/self/statm). */
static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &res) != 2) res = 0;
        fclose(f);
    }
    return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

static void test_counts(void)
{
    char err[ABC_ERRLEN];
    struct config c;
    config_defaults(&c);
    snprintf(c.model.arch, sizeof c.model.arch, "resnet20");
    c.train.batch_size = 64;
    c.search.fitness.batch_size = 32;
    c.finetune.batch_size = 96;
    c.slim.batch_size = 16;
    struct memory_estimate e;
    CHECK(memory_estimate_config(&c, 1, 28, 28, &e, err) == 0, "estimate: %s",
          err);
    /* ResNet-20 by hand: conv1 1x16x3x3 + BN; stage 1: 6 convs 16x16x3x3;
     * stage 2: 16->32 then 5 of 32x32; stage 3: 32->64 then 5 of 64x64;
     * 19 BNs (gamma, beta); the classifier 64x10 + 10 */
    int64_t convs = 1 * 16 * 9 + 6 * 16 * 16 * 9 + (16 * 32 + 5 * 32 * 32) * 9 +
                    (32 * 64 + 5 * 64 * 64) * 9;
    int64_t bn = 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64);
    int64_t params = convs + bn + 64 * 10 + 10;
    CHECK(e.params == params, "params %lld, by hand %lld", (long long)e.params,
          (long long)params);
    /* BN running mean and variance: as many as gamma and beta */
    CHECK(e.param_bytes == (size_t)(params + bn) * 4 &&
              e.grad_bytes == (size_t)params * 4 &&
              e.velocity_bytes == (size_t)params * 4,
          "param/grad/velocity bytes %zu %zu %zu for %lld params",
          e.param_bytes, e.grad_bytes, e.velocity_bytes, (long long)params);
    CHECK(e.batch == 96 && !strcmp(e.batch_key, "finetune.batch_size"),
          "largest batch %d (%s), expected finetune's 96", e.batch,
          e.batch_key);
    CHECK(e.input_bytes == (size_t)96 * (28 * 28 * 4 + 4), "input bytes %zu",
          e.input_bytes);
    /* the data: Fashion-MNIST's files (60000 + 10000 images of 28x28 and a
     * label byte each); loading holds the training file and its split
     * copies at once */
    CHECK(e.train_images == 60000 && e.test_images == 10000 &&
              e.data_bytes == (size_t)(2 * 60000 + 10000) * (28 * 28 + 1),
          "data %zu bytes for %lld + %lld images", e.data_bytes,
          (long long)e.train_images, (long long)e.test_images);
    size_t sum = e.param_bytes + e.grad_bytes + e.velocity_bytes +
                 e.baseline_bytes + e.activation_bytes + e.input_bytes +
                 e.data_bytes;
    CHECK(e.total == sum, "total %zu, parts sum to %zu", e.total, sum);
    printf("resnet20 at batch 96: %.1f MiB estimated (activations %.1f)\n",
           e.total / 1048576.0, e.activation_bytes / 1048576.0);

    /* a pruned structure shrinks the model's share */
    struct config p = c;
    int half[9] = {8, 8, 8, 16, 16, 16, 32, 32, 32};
    memcpy(p.model.channels, half, sizeof half);
    p.model.nchannels = 9;
    struct memory_estimate ep;
    CHECK(memory_estimate_config(&p, 1, 28, 28, &ep, err) == 0 &&
              ep.params < e.params && ep.activation_bytes < e.activation_bytes,
          "pruned: %lld params, %zu activation bytes", (long long)ep.params,
          ep.activation_bytes);
}

/* The model's share against resident memory while one training step runs
 * at the estimate's batch size (every buffer touched). */
static void test_rss(void)
{
    char err[ABC_ERRLEN];
    struct config c;
    config_defaults(&c);
    snprintf(c.model.arch, sizeof c.model.arch, "resnet20");
    c.train.batch_size = c.search.fitness.batch_size = 48;
    c.finetune.batch_size = c.slim.batch_size = 48;
    struct memory_estimate e;
    CHECK(memory_estimate_config(&c, 1, 28, 28, &e, err) == 0, "estimate: %s",
          err);
    size_t want = e.param_bytes + e.grad_bytes + e.velocity_bytes +
                  e.activation_bytes + e.input_bytes;
    size_t before = rss_bytes();
    struct model *m;
    CHECK(model_create(&m, ARCH_RESNET20, NULL, 1, 28, 28, 10, err) == 0,
          "create: %s", err);
    model_init_weights(m, 1);
    CHECK(model_reserve(m, e.batch, err) == 0, "reserve: %s", err);
    float *vel = calloc(m->nparams, sizeof(float));
    float *x = malloc((size_t)e.batch * 28 * 28 * sizeof(float));
    int *y = malloc((size_t)e.batch * sizeof(int));
    for (size_t i = 0; i < (size_t)e.batch * 28 * 28; i++)
        x[i] = (float)((i * 37) % 255) / 255.0f;
    for (int i = 0; i < e.batch; i++)
        y[i] = i % 10;
    memset(vel, 1, m->nparams * sizeof(float));
    model_zero_grad(m);
    model_forward(m, x, y, e.batch, 1, NULL);
    model_backward(m);
    size_t used = rss_bytes() - before;
    double ratio = (double)used / (double)want;
    printf("resnet20, batch %d: estimated %.1f MiB (model, grads, velocity, "
           "activations, input), measured %.1f MiB resident: ratio %.3f\n",
           e.batch, want / 1048576.0, used / 1048576.0, ratio);
    /* the estimate leaves out the convolution workspace and the allocator's
     * slack: within 25% */
    CHECK(ratio > 0.8 && ratio < 1.25, "measured/estimated %.3f", ratio);
    free(vel);
    free(x);
    free(y);
    model_destroy(m);
}

static void test_refusal(void)
{
    char err[ABC_ERRLEN];
    struct config c;
    config_defaults(&c);
    snprintf(c.path, sizeof c.path, "absurd.yaml");
    snprintf(c.model.arch, sizeof c.model.arch, "resnet110");
    c.train.batch_size = 65536;
    struct memory_estimate e;
    CHECK(memory_estimate_config(&c, 1, 28, 28, &e, err) == 0, "estimate: %s",
          err);
    /* resnet110 at 65536 images: far beyond any host */
    CHECK(e.total > ((size_t)1 << 39), "estimate %zu bytes", e.total);
    int rc = memory_check(&e, (uint64_t)64 << 30, "a test limit", c.path, err);
    CHECK(rc == ABC_EVALUE && strstr(err, "absurd.yaml") &&
              strstr(err, "train.batch_size: 65536") &&
              strstr(err, "limit of 64.0 GiB (a test limit)"),
          "refusal: rc %d, %s", rc, err);
    printf("refused: %s\n", err);
    /* the default config fits in 64 GiB, and in this host */
    config_defaults(&c);
    CHECK(memory_estimate_config(&c, 1, 28, 28, &e, err) == 0 &&
              memory_check(&e, (uint64_t)64 << 30, "64 GiB", "x", err) == 0 &&
              memory_check(&e, memory_host_bytes(), "host", "x", err) == 0,
          "default config: %s", err);
    CHECK(memory_host_bytes() > ((uint64_t)1 << 28), "host memory %llu",
          (unsigned long long)memory_host_bytes());
}

int main(void)
{
    test_counts();
    test_rss();
    test_refusal();
    return check_finish("test_memory");
}

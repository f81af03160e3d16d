/* memory.c - the memory estimate of a config (see memory.h). */
#include "train/memory.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "nn/model.h"

/* Images of the training and test files of each dataset. */
static void dataset_counts(int dataset, int64_t *train, int64_t *test)
{
    if (dataset == DATASET_CIFAR10)
        *train = 50000, *test = 10000;
    else
        *train = 60000, *test = 10000;
}

int memory_estimate_config(const struct config *c, int in_c, int in_h, int in_w,
                           struct memory_estimate *e, char *err)
{
    memset(e, 0, sizeof *e);
    enum arch a;
    if (arch_parse(c->model.arch, &a) != 0)
        return abc_errf(err, ABC_EVALUE, "%s: unknown model.arch '%s'", c->path,
                        c->model.arch);
    struct model *m;
    int rc = model_create(&m, a, c->model.nchannels ? c->model.channels : NULL,
                          in_c, in_h, in_w, 10, err);
    if (rc) return abc_errprefix(err, rc, "%s: model.channels", c->path);
    /* the largest batch of any step */
    const struct {
        const char *key;
        int batch;
    } b[] = {{"train.batch_size", c->train.batch_size},
             {"search.fitness.batch_size", c->search.fitness.batch_size},
             {"finetune.batch_size", c->finetune.batch_size},
             {"slim.batch_size", c->slim.batch_size}};
    e->batch = 0;
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        if (b[i].batch > e->batch)
            e->batch = b[i].batch, e->batch_key = b[i].key;
    e->params = model_param_count(m);
    e->param_bytes = (m->nparams + m->nbuffers) * sizeof(float);
    e->grad_bytes = m->nparams * sizeof(float);
    e->velocity_bytes = m->nparams * sizeof(float);
    e->baseline_bytes = e->param_bytes;
    e->activation_bytes = model_activation_bytes(m, e->batch);
    size_t image = (size_t)in_c * (size_t)in_h * (size_t)in_w;
    e->input_bytes = (size_t)e->batch * (image * sizeof(float) + sizeof(int));
    model_destroy(m);
    /* loading: the file's images and the split's copies of them, then the
     * test set */
    dataset_counts(c->data.dataset, &e->train_images, &e->test_images);
    e->data_bytes =
        (size_t)(2 * e->train_images + e->test_images) * (image + 1);
    e->total = e->param_bytes + e->grad_bytes + e->velocity_bytes +
               e->baseline_bytes + e->activation_bytes + e->input_bytes +
               e->data_bytes;
    return 0;
}

uint64_t memory_host_bytes(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
}

int memory_check(const struct memory_estimate *e, uint64_t limit_bytes,
                 const char *limit_what, const char *name, char *err)
{
    if (!limit_bytes || e->total <= limit_bytes) return 0;
    size_t model =
        e->param_bytes + e->grad_bytes + e->velocity_bytes + e->baseline_bytes;
    char key[96];
    if (e->activation_bytes + e->input_bytes >= model &&
        e->activation_bytes + e->input_bytes >= e->data_bytes)
        snprintf(key, sizeof key, "%s: %d", e->batch_key, e->batch);
    else if (e->data_bytes >= model)
        snprintf(key, sizeof key, "data.dataset");
    else
        snprintf(key, sizeof key, "model.channels");
    const double G = 1024.0 * 1024.0 * 1024.0;
    return abc_errf(err, ABC_EVALUE,
                    "%s: %s: needs an estimated %.1f GiB per worker "
                    "(activations %.1f GiB at batch %d, model %.2f GiB, data "
                    "%.2f GiB), more than the limit of %.1f GiB (%s)",
                    name, key, (double)e->total / G,
                    (double)e->activation_bytes / G, e->batch,
                    (double)model / G, (double)e->data_bytes / G,
                    (double)limit_bytes / G, limit_what);
}

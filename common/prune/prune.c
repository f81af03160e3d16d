/* prune.c - weight inheritance: chooses the filters a pruned model keeps and
 * slices every tensor of a trained model down to them (see prune.h). */
#include "prune/prune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/rng.h"
#include "core/seeds.h"

/* Label for rng_derive, so filter choice draws from its own stream. */

static const char *filter_names[FILTER_COUNT] = {"random", "l1"};

const char *filter_init_name(enum filter_init how)
{
    return how >= 0 && how < FILTER_COUNT ? filter_names[how] : "unknown";
}

/* search.filter_init is stored as this enum (io/config.h: "random|l1") */
_Static_assert(FILTER_RANDOM == 0 && FILTER_L1 == 1,
               "enum filter_init must follow config's search.filter_init");

int filter_init_parse(const char *name, enum filter_init *out)
{
    for (int i = 0; i < FILTER_COUNT; i++)
        if (strcmp(name, filter_names[i]) == 0) {
            *out = (enum filter_init)i;
            return 0;
        }
    return -1;
}

/* Name of prunable layer j of m (its conv), for error messages. */
static const char *layer_name(const struct model *m, int j)
{
    for (int i = 0; i < m->nlayers; i++)
        if (m->layers[i].prunable == j) return m->layers[i].name;
    return "?";
}

int prune_check(const struct model *src, const int *channels, int n, char *err)
{
    if (n != src->nprunable)
        return abc_errf(err, ABC_EVALUE,
                        "%s: structure has %d entries, expected %d (one per "
                        "prunable layer)",
                        arch_name(src->arch), n, src->nprunable);
    for (int j = 0; j < n; j++)
        if (channels[j] < 1 || channels[j] > src->channels[j])
            return abc_errf(err, ABC_EVALUE,
                            "%s: prunable layer %d (%s) keeps %d channels, "
                            "the source has %d (expected 1..%d)",
                            arch_name(src->arch), j, layer_name(src, j),
                            channels[j], src->channels[j], src->channels[j]);
    return 0;
}

int prune_keep_offset(const int *channels, int j)
{
    int off = 0;
    for (int i = 0; i < j; i++)
        off += channels[i];
    return off;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* A filter's L1 norm and index, ranked largest norm first, then lower
 * index; NaN ranks lowest. */
struct ranked {
    double norm;
    int idx;
};

static int cmp_ranked(const void *a, const void *b)
{
    const struct ranked *x = a, *y = b;
    int xn = isnan(x->norm), yn = isnan(y->norm);
    if (xn != yn) return xn - yn;
    if (!xn && x->norm != y->norm) return x->norm > y->norm ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* keep[0..k): a uniformly random k-subset of 0..n-1 (partial Fisher-Yates),
 * unsorted. idx is scratch for n ints. */
static void select_random(int *keep, int k, int n, int *idx, uint64_t seed,
                          int j)
{
    struct rng r;
    rng_seed(&r, rng_derive(seed, (uint64_t)j, SEED_PRUNE_FILTERS, 0));
    for (int i = 0; i < n; i++)
        idx[i] = i;
    for (int i = 0; i < k; i++) {
        int p = i + (int)rng_below(&r, (uint64_t)(n - i));
        int t = idx[i];
        idx[i] = idx[p];
        idx[p] = t;
    }
    memcpy(keep, idx, sizeof(int) * (size_t)k);
}

/* keep[0..k): the k filters of layer j's conv with the largest L1 norm,
 * unsorted. rank is scratch for n entries. */
static int select_l1(int *keep, int k, int n, struct ranked *rank,
                     const struct model *src, int j, char *err)
{
    const struct tensor_info *t = NULL;
    for (int i = 0; i < src->ntensors && !t; i++)
        if (src->tensors[i].prune_out == j && src->tensors[i].ndim == 4)
            t = &src->tensors[i];
    if (!t || t->shape[0] != n)
        return abc_errf(err, ABC_EVALUE,
                        "%s: prunable layer %d (%s) has no conv weight with "
                        "%d filters",
                        arch_name(src->arch), j, layer_name(src, j), n);
    const float *w = model_tensor_data(src, t);
    size_t per = t->numel / (size_t)n;
    for (int f = 0; f < n; f++) {
        double s = 0;
        for (size_t i = 0; i < per; i++)
            s += fabs((double)w[f * per + i]);
        rank[f].norm = s;
        rank[f].idx = f;
    }
    qsort(rank, (size_t)n, sizeof *rank, cmp_ranked);
    for (int i = 0; i < k; i++)
        keep[i] = rank[i].idx;
    return 0;
}

int prune_select(const struct model *src, const int *channels,
                 enum filter_init how, uint64_t seed, int **keep_out, char *err)
{
    *keep_out = NULL;
    int rc = prune_check(src, channels, src->nprunable, err);
    if (rc) return rc;
    if (how != FILTER_RANDOM && how != FILTER_L1)
        return abc_errf(err, ABC_EVALUE, "unknown filter choice %d", how);
    int L = src->nprunable, total = prune_keep_offset(channels, L), widest = 1;
    for (int j = 0; j < L; j++)
        if (src->channels[j] > widest) widest = src->channels[j];
    int *keep = malloc(sizeof(int) * (size_t)(total ? total : 1));
    void *scratch = malloc(sizeof(struct ranked) * (size_t)widest);
    if (!keep || !scratch) {
        free(keep);
        free(scratch);
        return abc_errf(err, ABC_ENOMEM, "out of memory choosing filters");
    }
    for (int j = 0, off = 0; j < L; off += channels[j], j++) {
        int k = channels[j], n = src->channels[j];
        if (how == FILTER_RANDOM) {
            select_random(keep + off, k, n, scratch, seed, j);
        } else if ((rc = select_l1(keep + off, k, n, scratch, src, j, err))) {
            free(keep);
            free(scratch);
            return rc;
        }
        qsort(keep + off, (size_t)k, sizeof(int), cmp_int);
    }
    free(scratch);
    *keep_out = keep;
    return 0;
}

/* Copies src tensor s into dst tensor d (same name, same role), slicing
 * dimension 0 by the kept channels of layer prune_out and dimension 1 by
 * those of layer prune_in. In dimension 1 each channel owns a block of
 * shape[1] / channels entries (1 for convs and for a classifier after global
 * pooling). */
static int slice_tensor(struct model *dm, const struct tensor_info *d,
                        const struct model *sm, const struct tensor_info *s,
                        const int *keep, const int *channels, char *err)
{
    if (strcmp(d->name, s->name) != 0 || d->ndim != s->ndim ||
        d->is_buffer != s->is_buffer || d->prune_out != s->prune_out ||
        d->prune_in != s->prune_in || (d->ndim < 2 && d->prune_in >= 0))
        return abc_errf(err, ABC_EVALUE,
                        "%s: tensor %s does not match the source's %s",
                        arch_name(sm->arch), d->name, s->name);
    int po = d->prune_out, pi = d->prune_in;
    int s1 = d->ndim >= 2 ? s->shape[1] : 1,
        d1 = d->ndim >= 2 ? d->shape[1] : 1;
    size_t inner = 1;
    int bad = 0;
    for (int i = 2; i < d->ndim; i++) {
        inner *= (size_t)d->shape[i];
        bad |= d->shape[i] != s->shape[i];
    }
    if (po >= 0)
        bad |= s->shape[0] != sm->channels[po] || d->shape[0] != channels[po];
    else
        bad |= s->shape[0] != d->shape[0];
    int ncols = 1, blk = s1;
    if (pi >= 0) {
        ncols = channels[pi];
        blk = s1 / sm->channels[pi];
        bad |= s1 != blk * sm->channels[pi] || d1 != blk * ncols;
    } else {
        bad |= s1 != d1;
    }
    if (bad)
        return abc_errf(err, ABC_EVALUE,
                        "%s: tensor %s has a shape the structure does not "
                        "explain",
                        arch_name(sm->arch), d->name);
    const int *ko = po >= 0 ? keep + prune_keep_offset(channels, po) : NULL;
    const int *ki = pi >= 0 ? keep + prune_keep_offset(channels, pi) : NULL;
    const float *sp = model_tensor_data(sm, s);
    float *dp = model_tensor_data(dm, d);
    size_t run = (size_t)blk * inner;
    for (int r = 0; r < d->shape[0]; r++) {
        int sr = ko ? ko[r] : r;
        for (int c = 0; c < ncols; c++) {
            int sc = ki ? ki[c] : 0;
            memcpy(dp + ((size_t)r * d1 + (size_t)c * blk) * inner,
                   sp + ((size_t)sr * s1 + (size_t)sc * blk) * inner,
                   run * sizeof(float));
        }
    }
    return 0;
}

/* Checks that keep (layout of prune_select) holds, for every layer j,
 * channels[j] distinct ascending indices below src->channels[j]. */
static int check_keep(const struct model *src, const int *channels,
                      const int *keep, char *err)
{
    for (int j = 0, off = 0; j < src->nprunable; off += channels[j], j++)
        for (int i = 0; i < channels[j]; i++) {
            int v = keep[off + i];
            if (v < 0 || v >= src->channels[j] ||
                (i > 0 && v <= keep[off + i - 1]))
                return abc_errf(err, ABC_EVALUE,
                                "%s: prunable layer %d: kept channel %d of %d "
                                "is %d; expected distinct ascending indices "
                                "in 0..%d",
                                arch_name(src->arch), j, i, channels[j], v,
                                src->channels[j] - 1);
        }
    return 0;
}

int prune_slice_keep(const struct model *src, const int *channels,
                     const int *keep, struct model **out, char *err)
{
    *out = NULL;
    int rc = prune_check(src, channels, src->nprunable, err);
    if (!rc) rc = check_keep(src, channels, keep, err);
    if (rc) return rc;
    struct model *m;
    rc = model_create(&m, src->arch, channels, src->in_c, src->in_h, src->in_w,
                      src->num_classes, err);
    if (rc) return rc;
    m->bn_momentum = src->bn_momentum;
    m->bn_eps = src->bn_eps;
    if (m->ntensors != src->ntensors)
        rc = abc_errf(err, ABC_EVALUE,
                      "%s: pruned model has %d tensors, the source %d",
                      arch_name(src->arch), m->ntensors, src->ntensors);
    for (int i = 0; i < m->ntensors && !rc; i++)
        rc = slice_tensor(m, &m->tensors[i], src, &src->tensors[i], keep,
                          channels, err);
    if (rc) {
        model_destroy(m);
        return rc;
    }
    *out = m;
    return 0;
}

int prune_slice(const struct model *src, const int *channels,
                enum filter_init how, uint64_t seed, struct model **out,
                char *err)
{
    *out = NULL;
    int *keep;
    int rc = prune_select(src, channels, how, seed, &keep, err);
    if (rc) return rc;
    rc = prune_slice_keep(src, channels, keep, out, err);
    free(keep);
    return rc;
}

/* config.c - loads one YAML experiment file (libyaml document API) into
 * struct config. Each section is a table of keys (name, type, range, where
 * the value lives); a tree walk checks every node against its table, so a
 * new section is one table plus one line in top_keys. Errors name
 * file:line:col (1-based) and the dotted key. */
#include "io/config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "core/err.h"

/* The spellings of the enumerated keys, in their enums' order. */
#define CHOICES_DATASET "fashion-mnist|cifar10"
#define CHOICES_LR_SCHEDULE "cosine|step|constant"
#define CHOICES_SEARCH_SCHEDULE "sync|async"
#define CHOICES_FILTER_INIT "random|l1"
#define CHOICES_FINETUNE_INHERIT "best|baseline"
#define CHOICES_SLIM_START "baseline|scratch"
#define CHOICES_SLIM_BN "prunable|all"
#define CHOICES_PROXY "train|adaptive_bn"

enum key_type {
    KEY_INT,      /* int, range [min, max] */
    KEY_UINT64,   /* uint64_t, any non-negative integer */
    KEY_FLOAT,    /* float, range [min, max] (see flags) */
    KEY_BOOL,     /* int 0/1 from true/false, yes/no, on/off, 1/0 */
    KEY_STRING,   /* char[size], length [min, max], one of choices if set */
    KEY_ENUM,     /* int: the index of the value in choices "a|b|c" (the
                     consumer's enum lists them in the same order) */
    KEY_INT_LIST, /* int[size/sizeof(int)] + int count at count_offset */
    KEY_FLOAT3,   /* float[3]: a list of 1 (broadcast) or 3 numbers */
    KEY_SECTION,  /* a nested mapping described by sub */
};

#define KEY_MIN_OPEN 1u   /* the range excludes min */
#define KEY_MAX_OPEN 2u   /* the range excludes max */
#define KEY_INCREASING 4u /* list entries must strictly increase */

struct key_desc {
    const char *name;
    enum key_type type;
    double min, max;
    unsigned flags;
    size_t offset, size;        /* of the field in its section struct */
    size_t count_offset;        /* KEY_INT_LIST: offset of the int count */
    const char *choices;        /* KEY_STRING: "a|b|c", or NULL for any */
    const struct key_desc *sub; /* KEY_SECTION: its table, ends at name NULL */
};

/* One-line table rows. The key name is the field name. */
#define FIELD_(st, f)                                                          \
    .offset = offsetof(struct st, f), .size = sizeof(((struct st *)0)->f)
#define INT_KEY(st, f, lo, hi)                                                 \
    {                                                                          \
        .name = #f, .type = KEY_INT, .min = lo, .max = hi, FIELD_(st, f)       \
    }
#define UINT64_KEY(st, f)                                                      \
    {                                                                          \
        .name = #f, .type = KEY_UINT64, FIELD_(st, f)                          \
    }
#define FLOAT_KEY(st, f, lo, hi, fl)                                           \
    {                                                                          \
        .name = #f, .type = KEY_FLOAT, .min = lo, .max = hi, .flags = fl,      \
        FIELD_(st, f)                                                          \
    }
#define BOOL_KEY(st, f)                                                        \
    {                                                                          \
        .name = #f, .type = KEY_BOOL, FIELD_(st, f)                            \
    }
#define STRING_KEY(st, f, minlen, ch)                                          \
    {                                                                          \
        .name = #f, .type = KEY_STRING, .min = minlen, .choices = ch,          \
        FIELD_(st, f)                                                          \
    }
#define ENUM_KEY(st, f, ch)                                                    \
    {                                                                          \
        .name = #f, .type = KEY_ENUM, .choices = ch, FIELD_(st, f)             \
    }
#define INT_LIST_KEY(st, f, count, lo, hi, fl)                                 \
    {                                                                          \
        .name = #f, .type = KEY_INT_LIST, .min = lo, .max = hi, .flags = fl,   \
        .count_offset = offsetof(struct st, count), FIELD_(st, f)              \
    }
#define FLOAT3_KEY(st, f, lo, hi)                                              \
    {                                                                          \
        .name = #f, .type = KEY_FLOAT3, .min = lo, .max = hi, FIELD_(st, f)    \
    }
#define SECTION_KEY(st, f, table)                                              \
    {                                                                          \
        .name = #f, .type = KEY_SECTION, .sub = table, FIELD_(st, f)           \
    }
#define END_KEYS                                                               \
    {                                                                          \
        .name = NULL                                                           \
    }

static const struct key_desc data_keys[] = {
    ENUM_KEY(data_config, dataset, CHOICES_DATASET),
    STRING_KEY(data_config, dir, 0, NULL),
    INT_KEY(data_config, val_size, 0, 10000000),
    UINT64_KEY(data_config, split_seed),
    INT_KEY(data_config, train_subset, 0, 10000000),
    INT_KEY(data_config, test_subset, 0, 10000000),
    INT_KEY(data_config, crop_pad, 0, 64),
    BOOL_KEY(data_config, flip),
    FLOAT3_KEY(data_config, mean, 0, 1),
    FLOAT3_KEY(data_config, std, 0, 100),
    END_KEYS,
};

static const struct key_desc model_keys[] = {
    STRING_KEY(model_config, arch, 1,
               "smallnet|vgg16|resnet20|resnet56|resnet110"),
    INT_LIST_KEY(model_config, channels, nchannels, 1, 65536, 0),
    END_KEYS,
};

/* The keys of a training schedule, shared by train: and finetune:. */
#define TRAIN_KEY_ROWS                                                         \
    INT_KEY(train_config, epochs, 0, 100000),                                  \
        INT_KEY(train_config, batch_size, 1, 65536),                           \
        FLOAT_KEY(train_config, lr, 0, 100, KEY_MIN_OPEN),                     \
        FLOAT_KEY(train_config, momentum, 0, 1, KEY_MAX_OPEN),                 \
        BOOL_KEY(train_config, nesterov),                                      \
        FLOAT_KEY(train_config, weight_decay, 0, 1, 0),                        \
        ENUM_KEY(train_config, schedule, CHOICES_LR_SCHEDULE),                 \
        INT_LIST_KEY(train_config, milestones, nmilestones, 1, 100000,         \
                     KEY_INCREASING),                                          \
        FLOAT_KEY(train_config, gamma, 0, 10, KEY_MIN_OPEN),                   \
        INT_KEY(train_config, warmup_epochs, 0, 100000),                       \
        BOOL_KEY(train_config, sync_bn)

static const struct key_desc train_keys[] = {
    TRAIN_KEY_ROWS,
    END_KEYS,
};

static const struct key_desc finetune_keys[] = {
    TRAIN_KEY_ROWS,
    ENUM_KEY(train_config, inherit, CHOICES_FINETUNE_INHERIT),
    END_KEYS,
};

static const struct key_desc fitness_keys[] = {
    INT_KEY(fitness_config, train_images, 0, 10000000),
    INT_KEY(fitness_config, val_images, 0, 10000000),
    INT_KEY(fitness_config, epochs, 1, 100000),
    INT_KEY(fitness_config, steps, 0, 100000000),
    INT_KEY(fitness_config, batch_size, 1, 65536),
    FLOAT_KEY(fitness_config, lr, 0, 100, KEY_MIN_OPEN),
    FLOAT_KEY(fitness_config, momentum, 0, 1, KEY_MAX_OPEN),
    FLOAT_KEY(fitness_config, weight_decay, 0, 1, 0),
    ENUM_KEY(fitness_config, proxy, CHOICES_PROXY),
    INT_KEY(fitness_config, bn_batches, 1, 100000),
    BOOL_KEY(fitness_config, crn),
    END_KEYS,
};

static const struct key_desc search_keys[] = {
    INT_KEY(search_config, sn, 2, 100000),
    INT_KEY(search_config, limit, 1, 100000),
    INT_KEY(search_config, change_dims, 1, 256),
    INT_KEY(search_config, max_cycles, 0, 100000),
    FLOAT_KEY(search_config, alpha, 0.1, 1, 0),
    ENUM_KEY(search_config, schedule, CHOICES_SEARCH_SCHEDULE),
    ENUM_KEY(search_config, filter_init, CHOICES_FILTER_INIT),
    BOOL_KEY(search_config, redraw_same),
    INT_KEY(search_config, final_topk, 0, 1000),
    INT_KEY(search_config, final_seeds, 1, 1000),
    FLOAT_KEY(search_config, eval_timeout_s, 0, 1e7, 0),
    INT_KEY(search_config, ranks_per_eval, 0, 65536),
    SECTION_KEY(search_config, fitness, fitness_keys),
    END_KEYS,
};

static const struct key_desc prune_keys[] = {
    FLOAT_KEY(prune_config, flops_target, 0, 1, KEY_MAX_OPEN),
    FLOAT_KEY(prune_config, keep_fraction, 0, 1, KEY_MIN_OPEN),
    INT_KEY(prune_config, min_channels, 1, 65536),
    END_KEYS,
};

static const struct key_desc slim_keys[] = {
    TRAIN_KEY_ROWS,
    FLOAT_KEY(train_config, sparsity, 0, 10, 0),
    ENUM_KEY(train_config, inherit, CHOICES_SLIM_START),
    {.name = "bn",
     .type = KEY_ENUM,
     .choices = CHOICES_SLIM_BN,
     FIELD_(train_config, sparsity_all_bn)},
    END_KEYS,
};

static const struct key_desc lasso_keys[] = {
    INT_KEY(lasso_config, images, 1, 1000000),
    INT_KEY(lasso_config, points_per_image, 1, 100000),
    END_KEYS,
};

static const struct key_desc proxycheck_keys[] = {
    INT_KEY(proxycheck_config, structures, 3, 100000),
    INT_KEY(proxycheck_config, seeds, 1, 1000),
    INT_KEY(proxycheck_config, epochs, 1, 100000),
    INT_KEY(proxycheck_config, train_images, 0, 10000000),
    END_KEYS,
};

static const struct key_desc top_keys[] = {
    UINT64_KEY(config, seed),
    INT_KEY(config, threads, 0, 1024),
    STRING_KEY(config, out_dir, 1, NULL),
    SECTION_KEY(config, data, data_keys),
    SECTION_KEY(config, model, model_keys),
    SECTION_KEY(config, train, train_keys),
    SECTION_KEY(config, search, search_keys),
    SECTION_KEY(config, finetune, finetune_keys),
    SECTION_KEY(config, prune, prune_keys),
    SECTION_KEY(config, slim, slim_keys),
    SECTION_KEY(config, lasso, lasso_keys),
    SECTION_KEY(config, proxycheck, proxycheck_keys),
    END_KEYS,
};

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof *c);
    c->seed = 1;
    c->threads = 0;
    snprintf(c->out_dir, sizeof c->out_dir, "runs/default");

    struct data_config *d = &c->data;
    d->dataset = DATASET_FASHION_MNIST;
    d->val_size = 5000;
    d->split_seed = 1;
    d->crop_pad = 2;
    d->flip = 1;

    snprintf(c->model.arch, sizeof c->model.arch, "resnet56");

    struct train_config *t = &c->train;
    t->epochs = 10;
    t->batch_size = 128;
    t->lr = 0.1f;
    t->momentum = 0.9f;
    t->nesterov = 0;
    t->weight_decay = 5e-4f;
    t->schedule = LR_COSINE;
    t->gamma = 0.1f;
    t->warmup_epochs = 0;
    t->sync_bn = 0;

    struct search_config *s = &c->search;
    s->sn = 10;
    s->limit = 5;
    s->change_dims = 2;
    s->max_cycles = 10;
    s->alpha = 0.7f;
    s->schedule = SCHEDULE_SYNC;
    s->filter_init = 0; /* FILTER_RANDOM */
    s->fitness.train_images = 5000;
    s->fitness.epochs = 1;
    s->fitness.batch_size = 128;
    s->fitness.lr = 0.01f;
    s->fitness.momentum = 0.9f;
    s->fitness.weight_decay = 5e-4f;
    s->fitness.proxy = FITNESS_TRAIN;
    s->fitness.bn_batches = 20;
    s->fitness.crn = 1;
    s->redraw_same = 1; /* a move that changes nothing wastes an evaluation */
    s->final_topk = 3;
    s->final_seeds = 2;
    s->ranks_per_eval = 1;

    /* Fine-tuning: the train schedule at a tenth of the learning rate. */
    c->finetune = *t;
    c->finetune.lr = 0.01f;
    c->finetune.inherit = INHERIT_BEST;

    c->prune.flops_target = 0;
    c->prune.keep_fraction = 0.5f;
    c->prune.min_channels = 1;

    /* Network Slimming's fine-tuning route: sparsity training from the
     * baseline at a small learning rate. s is larger than the paper's 1e-4
     * (160 epochs from scratch) because the run is short: it has to move
     * the unimportant gammas towards 0 within a few epochs. */
    c->slim = *t;
    c->slim.epochs = 2;
    c->slim.lr = 0.02f;
    c->slim.sparsity = 1e-2f;
    c->slim.inherit = SLIM_FROM_BASELINE;

    c->lasso.images = 512;
    c->lasso.points_per_image = 10;
    c->proxycheck.structures = 12;
    c->proxycheck.seeds = 2;
    c->proxycheck.epochs = 1;
    c->proxycheck.train_images = 0;
}

/* ---- the tree walk ------------------------------------------------------ */

struct walk {
    const char *path;
    yaml_document_t *doc;
    char *err;
};

/* "path:line:col: key 'k': message" at node n. */
static int walk_err(const struct walk *w, const yaml_node_t *n, const char *key,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int walk_err(const struct walk *w, const yaml_node_t *n, const char *key,
                    const char *fmt, ...)
{
    char msg[ABC_ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return abc_errf(w->err, ABC_EVALUE, "%s:%zu:%zu: key '%s': %s", w->path,
                    n->start_mark.line + 1, n->start_mark.column + 1, key, msg);
}

/* A plain empty, "~" or "null" scalar: YAML's null. */
static int node_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE ||
        n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = (const char *)n->data.scalar.value;
    return !s[0] || !strcmp(s, "~") || !strcmp(s, "null") ||
           !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* How a node that is not what was expected looks, for messages. */
static void node_describe(const yaml_node_t *n, char *buf, size_t len)
{
    switch (n->type) {
    case YAML_SCALAR_NODE:
        if (node_is_null(n)) {
            snprintf(buf, len, "nothing");
            break;
        }
        snprintf(buf, len, "'%.60s%s'", (const char *)n->data.scalar.value,
                 n->data.scalar.length > 60 ? "..." : "");
        break;
    case YAML_SEQUENCE_NODE:
        snprintf(buf, len, "a list");
        break;
    case YAML_MAPPING_NODE:
        snprintf(buf, len, "a mapping");
        break;
    default:
        snprintf(buf, len, "nothing");
        break;
    }
}

/* The text of a scalar node, or NULL when n is not a scalar or holds a NUL
 * byte (possible through "\0" in a quoted string). */
static const char *scalar_text(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE) return NULL;
    const char *s = (const char *)n->data.scalar.value;
    if (strlen(s) != n->data.scalar.length) return NULL;
    return s;
}

/* Words for the range of k, e.g. "an integer in [1, 65536]", "> 0". */
static void range_describe(const struct key_desc *k, const char *noun,
                           char *buf, size_t len)
{
    int lo_open = (k->flags & KEY_MIN_OPEN) != 0;
    int hi_open = (k->flags & KEY_MAX_OPEN) != 0;
    if (isinf(k->max))
        snprintf(buf, len, "%s %s %.15g", noun, lo_open ? ">" : ">=", k->min);
    else
        snprintf(buf, len, "%s in %c%.15g, %.15g%c", noun, lo_open ? '(' : '[',
                 k->min, k->max, hi_open ? ')' : ']');
}

static int in_range(const struct key_desc *k, double v)
{
    if (k->flags & KEY_MIN_OPEN ? !(v > k->min) : !(v >= k->min)) return 0;
    if (k->flags & KEY_MAX_OPEN ? !(v < k->max) : !(v <= k->max)) return 0;
    return 1;
}

/* Parses a decimal integer (optional sign); 0 on success. */
static int parse_long(const char *s, long long *out)
{
    if (!s || !s[0]) return -1;
    const char *p = s + (s[0] == '+' || s[0] == '-');
    if (*p < '0' || *p > '9') return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno == ERANGE) return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    if (!s || !s[0]) return -1;
    const char *p = s + (s[0] == '+' || s[0] == '-');
    if (!((*p >= '0' && *p <= '9') || *p == '.')) return -1; /* no inf/nan */
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* One number of an int list or KEY_INT. */
static int walk_int(const struct walk *w, const yaml_node_t *n,
                    const struct key_desc *k, const char *key, int *out)
{
    char want[96], got[96];
    long long v;
    range_describe(k, "an integer", want, sizeof want);
    if (parse_long(scalar_text(n), &v) != 0 || !in_range(k, (double)v)) {
        node_describe(n, got, sizeof got);
        return walk_err(w, n, key, "expected %s, got %s", want, got);
    }
    *out = (int)v;
    return 0;
}

static int walk_float(const struct walk *w, const yaml_node_t *n,
                      const struct key_desc *k, const char *key, float *out)
{
    char want[96], got[96];
    double v;
    range_describe(k, "a number", want, sizeof want);
    if (parse_double(scalar_text(n), &v) != 0 || !in_range(k, v) ||
        !isfinite((float)v)) {
        node_describe(n, got, sizeof got);
        return walk_err(w, n, key, "expected %s, got %s", want, got);
    }
    *out = (float)v;
    return 0;
}

static int walk_value(const struct walk *w, yaml_node_t *n,
                      const struct key_desc *k, void *base, const char *key);

static int walk_mapping(const struct walk *w, yaml_node_t *map,
                        const struct key_desc *table, void *base,
                        const char *prefix)
{
    char got[96];
    if (map->type != YAML_MAPPING_NODE) {
        if (prefix[0] && node_is_null(map)) return 0; /* "train:" alone */
        node_describe(map, got, sizeof got);
        if (!prefix[0])
            return abc_errf(w->err, ABC_EVALUE,
                            "%s:%zu:%zu: expected a mapping of keys at the "
                            "top level, got %s",
                            w->path, map->start_mark.line + 1,
                            map->start_mark.column + 1, got);
        return walk_err(w, map, prefix, "expected a mapping of keys, got %s",
                        got);
    }
    yaml_node_pair_t *first = map->data.mapping.pairs.start;
    yaml_node_pair_t *top = map->data.mapping.pairs.top;
    for (yaml_node_pair_t *pr = first; pr < top; pr++) {
        yaml_node_t *kn = yaml_document_get_node(w->doc, pr->key);
        yaml_node_t *vn = yaml_document_get_node(w->doc, pr->value);
        if (!kn || !vn)
            return abc_errf(w->err, ABC_EFORMAT, "%s: broken YAML document",
                            w->path);
        const char *name = scalar_text(kn);
        char full[160];
        if (!name) {
            node_describe(kn, got, sizeof got);
            return abc_errf(w->err, ABC_EVALUE,
                            "%s:%zu:%zu: expected a key name%s%s, got %s",
                            w->path, kn->start_mark.line + 1,
                            kn->start_mark.column + 1,
                            prefix[0] ? " in section " : "", prefix, got);
        }
        snprintf(full, sizeof full, "%s%s%.100s", prefix, prefix[0] ? "." : "",
                 name);
        for (yaml_node_pair_t *q = first; q < pr; q++) {
            yaml_node_t *qk = yaml_document_get_node(w->doc, q->key);
            const char *qname = qk ? scalar_text(qk) : NULL;
            if (qname && !strcmp(qname, name))
                return walk_err(w, kn, full,
                                "duplicate key (first given at line %zu)",
                                qk->start_mark.line + 1);
        }
        const struct key_desc *k = table;
        while (k->name && strcmp(k->name, name) != 0)
            k++;
        if (!k->name) {
            char known[ABC_ERRLEN / 2];
            size_t used = 0;
            known[0] = '\0';
            for (const struct key_desc *t = table; t->name; t++) {
                int m = snprintf(known + used, sizeof known - used, "%s%s",
                                 t == table ? "" : ", ", t->name);
                if (m < 0 || (size_t)m >= sizeof known - used) break;
                used += (size_t)m;
            }
            return abc_errf(w->err, ABC_EVALUE,
                            "%s:%zu:%zu: unknown key '%s' (expected one of: "
                            "%s)",
                            w->path, kn->start_mark.line + 1,
                            kn->start_mark.column + 1, full, known);
        }
        int rc = walk_value(w, vn, k, base, full);
        if (rc) return rc;
    }
    return 0;
}

static int walk_value(const struct walk *w, yaml_node_t *n,
                      const struct key_desc *k, void *base, const char *key)
{
    char *field = (char *)base + k->offset;
    char got[96];
    const char *s = scalar_text(n);
    switch (k->type) {
    case KEY_SECTION:
        return walk_mapping(w, n, k->sub, field, key);
    case KEY_INT:
        return walk_int(w, n, k, key, (int *)field);
    case KEY_FLOAT:
        return walk_float(w, n, k, key, (float *)field);
    case KEY_UINT64: {
        char *end;
        if (s && s[0] >= '0' && s[0] <= '9') {
            errno = 0;
            unsigned long long v = strtoull(s, &end, 10);
            if (!*end && errno != ERANGE) {
                *(uint64_t *)field = (uint64_t)v;
                return 0;
            }
        }
        node_describe(n, got, sizeof got);
        return walk_err(w, n, key,
                        "expected an integer in [0, 18446744073709551615], "
                        "got %s",
                        got);
    }
    case KEY_BOOL: {
        static const char *const yes[] = {"true", "yes", "on", "1"};
        static const char *const no[] = {"false", "no", "off", "0"};
        for (int i = 0; s && i < 4; i++) {
            if (!strcasecmp(s, yes[i])) {
                *(int *)field = 1;
                return 0;
            }
            if (!strcasecmp(s, no[i])) {
                *(int *)field = 0;
                return 0;
            }
        }
        node_describe(n, got, sizeof got);
        return walk_err(w, n, key, "expected true or false, got %s", got);
    }
    case KEY_STRING: {
        if (node_is_null(n)) s = "";
        size_t len = s ? strlen(s) : 0;
        if (!s || len < (size_t)k->min || len >= k->size) {
            node_describe(n, got, sizeof got);
            if (k->choices)
                return walk_err(w, n, key, "expected one of %s, got %s",
                                k->choices, got);
            return walk_err(w, n, key,
                            "expected a string of %d to %zu characters, got "
                            "%s",
                            (int)k->min, k->size - 1, got);
        }
        if (k->choices) {
            const char *c = k->choices;
            int found = 0;
            while (*c && !found) {
                size_t m = strcspn(c, "|");
                found = m == len && !strncmp(c, s, len);
                c += m + (c[m] == '|');
            }
            if (!found) {
                node_describe(n, got, sizeof got);
                return walk_err(w, n, key, "expected one of %s, got %s",
                                k->choices, got);
            }
        }
        memcpy(field, s, len + 1);
        return 0;
    }
    case KEY_ENUM: {
        size_t len = s ? strlen(s) : 0;
        const char *c = k->choices;
        for (int i = 0; s && *c; i++) {
            size_t m = strcspn(c, "|");
            if (m == len && !strncmp(c, s, len)) {
                *(int *)field = i;
                return 0;
            }
            c += m + (c[m] == '|');
        }
        node_describe(n, got, sizeof got);
        return walk_err(w, n, key, "expected one of %s, got %s", k->choices,
                        got);
    }
    case KEY_INT_LIST: {
        int *vals = (int *)field;
        int cap = (int)(k->size / sizeof(int));
        if (n->type != YAML_SEQUENCE_NODE) {
            char want[96];
            range_describe(k, "integers", want, sizeof want);
            node_describe(n, got, sizeof got);
            return walk_err(w, n, key, "expected a list of %s, got %s", want,
                            got);
        }
        int count = 0, tmp[CONFIG_MAX_LIST];
        for (yaml_node_item_t *it = n->data.sequence.items.start;
             it < n->data.sequence.items.top; it++) {
            yaml_node_t *item = yaml_document_get_node(w->doc, *it);
            if (!item)
                return abc_errf(w->err, ABC_EFORMAT, "%s: broken YAML document",
                                w->path);
            if (count == cap || count == CONFIG_MAX_LIST)
                return walk_err(w, item, key,
                                "list too long: at most %d entries", cap);
            int rc = walk_int(w, item, k, key, &tmp[count]);
            if (rc) return rc;
            if ((k->flags & KEY_INCREASING) && count > 0 &&
                tmp[count] <= tmp[count - 1])
                return walk_err(w, item, key,
                                "expected strictly increasing values, got %d "
                                "after %d",
                                tmp[count], tmp[count - 1]);
            count++;
        }
        memcpy(vals, tmp, (size_t)count * sizeof *vals);
        *(int *)((char *)base + k->count_offset) = count;
        return 0;
    }
    case KEY_FLOAT3: {
        float *vals = (float *)field, tmp[3];
        int count = 0;
        if (n->type == YAML_SCALAR_NODE) {
            int rc = walk_float(w, n, k, key, &tmp[0]);
            if (rc) return rc;
            count = 1;
        } else if (n->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *it = n->data.sequence.items.start;
                 it < n->data.sequence.items.top; it++) {
                yaml_node_t *item = yaml_document_get_node(w->doc, *it);
                if (!item)
                    return abc_errf(w->err, ABC_EFORMAT,
                                    "%s: broken YAML document", w->path);
                if (count == 3)
                    return walk_err(w, item, key,
                                    "list too long: expected 1 or 3 numbers "
                                    "(one per channel)");
                int rc = walk_float(w, item, k, key, &tmp[count]);
                if (rc) return rc;
                count++;
            }
        }
        if (count != 1 && count != 3) {
            node_describe(n, got, sizeof got);
            return walk_err(w, n, key,
                            "expected a number or a list of 1 or 3 numbers "
                            "(one per channel), got %s",
                            count ? "a list of 2" : got);
        }
        for (int i = 0; i < 3; i++)
            vals[i] = tmp[count == 1 ? 0 : i];
        return 0;
    }
    }
    return abc_errf(w->err, ABC_EFORMAT, "%s: key '%s': bad key table", w->path,
                    key);
}

/* ---- loading ------------------------------------------------------------ */

/* The message of a libyaml parser error, with its position. */
static int parser_error(const yaml_parser_t *p, const char *path, char *err)
{
    const char *problem = p->problem ? p->problem : "unknown problem";
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return abc_errf(err, ABC_ENOMEM, "%s: out of memory parsing YAML",
                        path);
    case YAML_READER_ERROR:
        if (p->problem_value != -1)
            return abc_errf(err, ABC_EFORMAT, "%s: byte offset %zu: %s (#%X)",
                            path, p->problem_offset, problem, p->problem_value);
        return abc_errf(err, ABC_EFORMAT, "%s: byte offset %zu: %s", path,
                        p->problem_offset, problem);
    case YAML_SCANNER_ERROR:
    case YAML_PARSER_ERROR:
    case YAML_COMPOSER_ERROR:
        if (p->context)
            return abc_errf(err, ABC_EFORMAT,
                            "%s:%zu:%zu: YAML syntax error: %s (%s at line "
                            "%zu, column %zu)",
                            path, p->problem_mark.line + 1,
                            p->problem_mark.column + 1, problem, p->context,
                            p->context_mark.line + 1,
                            p->context_mark.column + 1);
        return abc_errf(err, ABC_EFORMAT, "%s:%zu:%zu: YAML syntax error: %s",
                        path, p->problem_mark.line + 1,
                        p->problem_mark.column + 1, problem);
    default:
        return abc_errf(err, ABC_EFORMAT, "%s: YAML error: %s", path, problem);
    }
}

/* "runs/<stem>" where stem is the file name without folder and extension. */
static void default_out_dir(char *out, size_t len, const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    int stem = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
    if (stem == 0)
        snprintf(out, len, "runs/default");
    else
        snprintf(out, len, "runs/%.*s", stem, base);
}

/* Loads the one YAML document parser reads (its input set by the caller)
 * over *c, naming the input path in messages; *c is untouched on error. */
static int load_parsed(struct config *c, yaml_parser_t *parser,
                       const char *path, char *err)
{
    struct config tmp = *c;
    size_t plen = strlen(path);
    if (plen >= sizeof tmp.path)
        return abc_errf(err, ABC_EVALUE, "config path too long: %.80s...",
                        path);
    memcpy(tmp.path, path, plen + 1);
    default_out_dir(tmp.out_dir, sizeof tmp.out_dir, path);

    yaml_document_t doc;
    int rc = 0;
    if (!yaml_parser_load(parser, &doc))
        /* On failure libyaml has already deleted the document. */
        return parser_error(parser, path, err);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        rc = abc_errf(err, ABC_EVALUE,
                      "%s:1:1: empty config: expected a mapping of keys "
                      "(seed, threads, out_dir, data, model, train)",
                      path);
    } else {
        /* A second document in the same file is a mistake, not ignored. */
        yaml_document_t extra;
        if (!yaml_parser_load(parser, &extra)) {
            rc = parser_error(parser, path, err);
        } else {
            yaml_node_t *xroot = yaml_document_get_root_node(&extra);
            if (xroot)
                rc = abc_errf(err, ABC_EVALUE,
                              "%s:%zu:%zu: a second YAML document; a config "
                              "is one document",
                              path, extra.start_mark.line + 1,
                              extra.start_mark.column + 1);
            yaml_document_delete(&extra);
        }
    }
    if (!rc) {
        struct walk w = {.path = path, .doc = &doc, .err = err};
        rc = walk_mapping(&w, root, top_keys, &tmp, "");
    }
    yaml_document_delete(&doc);
    if (!rc) *c = tmp;
    return rc;
}

int config_load(struct config *c, const char *path, char *err)
{
    if (strlen(path) >= CONFIG_PATH_MAX)
        return abc_errf(err, ABC_EVALUE, "config path too long: %.80s...",
                        path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return abc_errf(err, ABC_EIO, "%s: cannot open config: %s", path,
                        strerror(errno));
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return abc_errf(err, ABC_ENOMEM,
                        "%s: cannot initialise the YAML "
                        "parser",
                        path);
    }
    yaml_parser_set_input_file(&parser, f);
    int rc = load_parsed(c, &parser, path, err);
    yaml_parser_delete(&parser);
    if (fclose(f) != 0 && !rc)
        rc = abc_errf(err, ABC_EIO, "%s: error closing: %s", path,
                      strerror(errno));
    return rc;
}

int config_load_mem(struct config *c, const char *name, const char *buf,
                    size_t len, char *err)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return abc_errf(err, ABC_ENOMEM,
                        "%s: cannot initialise the YAML "
                        "parser",
                        name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    int rc = load_parsed(c, &parser, name, err);
    yaml_parser_delete(&parser);
    return rc;
}

/* Drops the ":1:COL" position that follows label at the start of err: a
 * --set assignment is one line the user typed, not a file. */
static void drop_position(char *err, const char *label)
{
    size_t n = strlen(label);
    if (strncmp(err, label, n) != 0 || strncmp(err + n, ":1:", 3) != 0) return;
    char *p = err + n + 3;
    while (*p >= '0' && *p <= '9')
        p++;
    memmove(err + n, p, strlen(p) + 1);
}

int config_set(struct config *c, const char *assignment, char *err)
{
    char label[CONFIG_PATH_MAX + 8];
    snprintf(label, sizeof label, "--set %s", assignment);
    const char *eq = strchr(assignment, '=');
    size_t klen = eq ? (size_t)(eq - assignment) : 0;
    if (!eq || klen == 0 || klen >= 200 || !eq[1])
        return abc_errf(err, ABC_EVALUE,
                        "%s: expected KEY=VALUE with a dotted key, e.g. "
                        "search.sn=8",
                        label);
    /* search.fitness.steps=5 -> "{search: {fitness: {steps: 5}}}" */
    size_t vlen = strlen(eq + 1), cap = 2 * klen + vlen + 64;
    char *text = malloc(cap);
    if (!text) return abc_errf(err, ABC_ENOMEM, "%s: out of memory", label);
    size_t used = 0;
    int depth = 0;
    for (const char *k = assignment; k < eq;) {
        const char *dot = memchr(k, '.', (size_t)(eq - k));
        const char *end = dot ? dot : eq;
        if (end == k || strcspn(k, " {}[],:#&*!|>'\"%@`") < (size_t)(end - k)) {
            free(text);
            return abc_errf(err, ABC_EVALUE,
                            "%s: bad key '%.*s': expected names joined by "
                            "dots, e.g. search.fitness.steps",
                            label, (int)klen, assignment);
        }
        used += (size_t)snprintf(text + used, cap - used,
                                 "{%.*s: ", (int)(end - k), k);
        depth++;
        k = dot ? dot + 1 : eq;
    }
    used += (size_t)snprintf(text + used, cap - used, "%s", eq + 1);
    while (depth--)
        text[used++] = '}';
    text[used] = '\0';

    struct config tmp = *c;
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        free(text);
        return abc_errf(err, ABC_ENOMEM,
                        "%s: cannot initialise the YAML "
                        "parser",
                        label);
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, used);
    yaml_document_t doc;
    int rc = 0;
    if (!yaml_parser_load(&parser, &doc)) {
        rc = parser_error(&parser, label, err);
    } else {
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        struct walk w = {.path = label, .doc = &doc, .err = err};
        rc = root ? walk_mapping(&w, root, top_keys, &tmp, "")
                  : abc_errf(err, ABC_EVALUE, "%s: nothing to set", label);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    free(text);
    if (rc) {
        drop_position(err, label);
        return rc;
    }
    *c = tmp;
    return 0;
}

const char *config_choice_name(const char *key, int v)
{
    /* the spellings of CHOICES_*, in their enums' order (test_config checks
     * that every name parses back to its value) */
    static const char *const dataset[] = {"fashion-mnist", "cifar10"};
    static const char *const lr[] = {"cosine", "step", "constant"};
    static const char *const sched[] = {"sync", "async"};
    static const char *const filters[] = {"random", "l1"};
    static const char *const inherit[] = {"best", "baseline"};
    static const char *const start[] = {"baseline", "scratch"};
    static const char *const bn[] = {"prunable", "all"};
    static const char *const proxy[] = {"train", "adaptive_bn"};
    static const struct {
        const char *key;
        const char *const *names;
        int n;
    } table[] = {
        {"data.dataset", dataset, 2},
        {"train.schedule", lr, 3},
        {"search.schedule", sched, 2},
        {"search.filter_init", filters, 2},
        {"finetune.inherit", inherit, 2},
        {"slim.inherit", start, 2},
        {"slim.bn", bn, 2},
        {"search.fitness.proxy", proxy, 2},
    };
    for (size_t k = 0; k < sizeof table / sizeof table[0]; k++)
        if (strcmp(table[k].key, key) == 0)
            return v >= 0 && v < table[k].n ? table[k].names[v] : "?";
    return "?";
}

/* stmodel.c - models to and from safetensors files: name mapping, bias
 * folding, structure and metadata checks (see stmodel.h). */
#include "io/stmodel.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

#define KEY_LEN 96
#define LIST_SHOWN 4 /* names listed per kind in a missing/unmatched error */

/* A file tensor by its name without DataParallel's "module." prefix. */
struct key {
    const char *norm;
    int idx;
};

struct ctx {
    const struct st_file *f;
    struct key *keys; /* sorted by norm */
    int nkeys;
    unsigned char *used; /* per file tensor */
    int abc_vgg;
    int vgg_pos[13]; /* features.<i> index of each VGG conv */
};

static int cmp_key(const void *a, const void *b)
{
    return strcmp(((const struct key *)a)->norm, ((const struct key *)b)->norm);
}

static int starts_with(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* The file tensor whose normalised name is norm, or -1. */
static int find(const struct ctx *c, const char *norm)
{
    struct key k = {.norm = norm};
    const struct key *r =
        bsearch(&k, c->keys, (size_t)c->nkeys, sizeof k, cmp_key);
    return r ? r->idx : -1;
}

/* "conv7.weight" with prefix "conv" -> 7, *rest "weight"; -1 if ours is
 * not <prefix><1..13>.<rest>. */
static int vgg_layer(const char *ours, const char *prefix, const char **rest)
{
    if (!starts_with(ours, prefix)) return -1;
    char *end;
    long l = strtol(ours + strlen(prefix), &end, 10);
    if (end == ours + strlen(prefix) || *end != '.' || l < 1 || l > 13)
        return -1;
    *rest = end + 1;
    return (int)l;
}

/* Our tensor name -> the normalised key in the file's naming, into buf.
 * Returns 0, or -1 when the naming has no such tensor. */
static int file_key(const struct ctx *c, const char *ours, char *buf, size_t n)
{
    if (!c->abc_vgg) return snprintf(buf, n, "%s", ours) < (int)n ? 0 : -1;
    const char *rest;
    int layer, pos = -1;
    if (starts_with(ours, "fc."))
        return snprintf(buf, n, "classifier.%s", ours + 3) < (int)n ? 0 : -1;
    if ((layer = vgg_layer(ours, "conv", &rest)) > 0)
        pos = c->vgg_pos[layer - 1];
    else if ((layer = vgg_layer(ours, "bn", &rest)) > 0)
        pos = c->vgg_pos[layer - 1] + 1;
    if (pos < 0) return -1;
    return snprintf(buf, n, "features.%d.%s", pos, rest) < (int)n ? 0 : -1;
}

/* The file tensor holding our tensor `ours` (marking it used), or -1. */
static int lookup(struct ctx *c, const char *ours, char *key, size_t n)
{
    if (file_key(c, ours, key, n) != 0) return -1;
    int i = find(c, key);
    if (i >= 0) c->used[i] = 1;
    return i;
}

/* Appends name to a "; "-free comma list in buf (capped at LIST_SHOWN
 * names; *count counts all). */
static void list_add(char *buf, size_t n, int *count, const char *name)
{
    if ((*count)++ >= LIST_SHOWN) return;
    size_t l = strlen(buf);
    snprintf(buf + l, n - l, "%s%.60s", l ? ", " : "", name);
}

static void list_end(char *buf, size_t n, int count)
{
    size_t l = strlen(buf);
    if (count > LIST_SHOWN)
        snprintf(buf + l, n - l, " and %d more", count - LIST_SHOWN);
}

/* Parses a JSON list of n ints from metadata value s into v. */
static int parse_int_list(const char *s, int *v, int n)
{
    cJSON *j = cJSON_Parse(s);
    int rc = -1;
    if (j && cJSON_IsArray(j) && cJSON_GetArraySize(j) == n) {
        rc = 0;
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, j)
        {
            double d = cJSON_IsNumber(e) ? e->valuedouble : -1;
            if (!(d >= 0 && d <= 1e9) || d != floor(d))
                rc = -1;
            else
                v[i++] = (int)d;
        }
    }
    cJSON_Delete(j);
    return rc;
}

static void format_ints(char *buf, size_t n, const int *v, int k)
{
    size_t l = 0;
    buf[0] = '\0';
    for (int i = 0; i < k && l + 1 < n; i++) {
        snprintf(buf + l, n - l, "%s%d", i ? "," : "[", v[i]);
        l = strlen(buf);
    }
    if (l + 2 < n) snprintf(buf + l, n - l, "]");
}

/* __metadata__ "arch", "input_shape", "classes" against w. */
static int check_metadata(const struct st_file *f, const struct stmodel_want *w,
                          char *err)
{
    const char *a = st_meta(f, "arch");
    if (a && strcmp(a, arch_name(w->arch)) != 0)
        return abc_errf(err, ABC_EVALUE,
                        "%s: __metadata__ arch is '%.40s', the config %s says "
                        "%s",
                        f->name, a, w->config, arch_name(w->arch));
    const char *s = st_meta(f, "input_shape");
    int in[3];
    if (s && (parse_int_list(s, in, 3) != 0 || in[0] != w->in_c ||
              in[1] != w->in_h || in[2] != w->in_w))
        return abc_errf(err, ABC_EVALUE,
                        "%s: __metadata__ input_shape is '%.40s', the config "
                        "%s's dataset has [%d,%d,%d]",
                        f->name, s, w->config, w->in_c, w->in_h, w->in_w);
    const char *k = st_meta(f, "classes");
    char want[16];
    snprintf(want, sizeof want, "%d", w->classes);
    if (k && strcmp(k, want) != 0)
        return abc_errf(err, ABC_EVALUE,
                        "%s: __metadata__ classes is '%.20s', the config %s's "
                        "dataset has %d",
                        f->name, k, w->config, w->classes);
    return 0;
}

/* The structure of f: from __metadata__ "structure", else dimension 0 of
 * the conv producing each prunable layer (shapes that do not fit are left
 * at the full width: the shape check names them later). */
static int file_structure(struct ctx *c, const struct model *full, int *ch,
                          int *from_meta, char *err)
{
    int n = full->nprunable;
    const char *s = st_meta(c->f, "structure");
    *from_meta = s != NULL;
    if (s) {
        if (parse_int_list(s, ch, n) != 0)
            return abc_errf(err, ABC_EFORMAT,
                            "%s: __metadata__ structure '%.60s': expected a "
                            "JSON list of %d channel counts for %s",
                            c->f->name, s, n, arch_name(full->arch));
        for (int j = 0; j < n; j++)
            if (ch[j] < 1 || ch[j] > full->full[j])
                return abc_errf(err, ABC_EVALUE,
                                "%s: __metadata__ structure: prunable layer "
                                "%d keeps %d channels, expected 1..%d",
                                c->f->name, j, ch[j], full->full[j]);
        return 0;
    }
    for (int j = 0; j < n; j++) {
        ch[j] = full->full[j];
        for (int t = 0; t < full->ntensors; t++) {
            const struct tensor_info *ti = &full->tensors[t];
            if (ti->role != TENSOR_CONV_WEIGHT || ti->prune_out != j) continue;
            char key[KEY_LEN];
            int i =
                file_key(c, ti->name, key, sizeof key) == 0 ? find(c, key) : -1;
            if (i < 0) break;
            const struct st_tensor *st = &c->f->tensors[i];
            if (st->ndim == 4 && st->shape[0] >= 1 &&
                st->shape[0] <= full->full[j])
                ch[j] = (int)st->shape[0];
            break;
        }
    }
    return 0;
}

/* "[2,3]" for a shape. */
static void format_shape(char *buf, size_t n, const int64_t *s, int nd)
{
    int v[ST_MAX_DIMS];
    for (int i = 0; i < nd; i++)
        v[i] = s[i] > 1000000000 ? -1 : (int)s[i];
    if (nd == 0)
        snprintf(buf, n, "[]");
    else
        format_ints(buf, n, v, nd);
}

/* Copies file tensor i into model tensor t (shape, dtype and values
 * checked). */
static int fill_tensor(struct ctx *c, struct model *m,
                       const struct tensor_info *t, int i, const char *key,
                       struct stmodel_report *rep, char *err)
{
    const struct st_tensor *st = &c->f->tensors[i];
    int same = st->ndim == t->ndim;
    for (int d = 0; same && d < t->ndim; d++)
        same = st->shape[d] == t->shape[d];
    if (!same) {
        char got[64], want[64];
        int64_t ws[MODEL_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++)
            ws[d] = t->shape[d];
        format_shape(got, sizeof got, st->shape, st->ndim);
        format_shape(want, sizeof want, ws, t->ndim);
        return abc_errf(err, ABC_EVALUE,
                        "%s: tensor '%.80s' has shape %s, %s's %s needs %s",
                        c->f->name, key, got, arch_name(m->arch), t->name,
                        want);
    }
    float *d = model_tensor_data(m, t);
    int rc = st_tensor_f32(c->f, st, d, err);
    if (rc) return rc;
    if (st->dtype != ST_F32) rep->converted++;
    for (size_t k = 0; k < t->numel; k++)
        if (!isfinite(d[k]))
            return abc_errf(err, ABC_EVALUE,
                            "%s: tensor '%.80s' element %zu is not finite%s",
                            c->f->name, key, k,
                            st->dtype == ST_F64 ? " (in float32)" : "");
    return 0;
}

/* Folds the bias of every conv that has one in the file into its BN. */
static int fold_biases(struct ctx *c, struct model *m,
                       struct stmodel_report *rep, char *err)
{
    for (int t = 0; t < m->ntensors; t++) {
        const struct tensor_info *w = &m->tensors[t];
        if (w->role != TENSOR_CONV_WEIGHT) continue;
        char prefix[MODEL_NAME_LEN], name[MODEL_NAME_LEN + 16], key[KEY_LEN];
        size_t pl = strlen(w->name) - strlen(".weight");
        snprintf(prefix, sizeof prefix, "%.*s", (int)pl, w->name);
        snprintf(name, sizeof name, "%s.bias", prefix);
        int i = lookup(c, name, key, sizeof key);
        if (i < 0) continue;
        /* its BN: the last "conv" of the name becomes "bn" */
        char *conv = NULL;
        for (char *p = strstr(prefix, "conv"); p; p = strstr(p + 1, "conv"))
            conv = p;
        const struct tensor_info *mean = NULL;
        if (conv) {
            snprintf(name, sizeof name, "%.*sbn%s.running_mean",
                     (int)(conv - prefix), prefix, conv + 4);
            mean = model_find_tensor(m, name);
        }
        const struct st_tensor *st = &c->f->tensors[i];
        if (!mean || st->ndim != 1 || st->shape[0] != w->shape[0])
            return abc_errf(err, ABC_EVALUE,
                            "%s: conv bias '%.80s': expected shape [%d] "
                            "folded into a following batchnorm",
                            c->f->name, key, w->shape[0]);
        float *b = malloc(sizeof(float) * (size_t)w->shape[0]);
        if (!b) return abc_errf(err, ABC_ENOMEM, "out of memory");
        int rc = st_tensor_f32(c->f, st, b, err);
        float *rm = model_tensor_data(m, mean);
        for (int k = 0; !rc && k < w->shape[0]; k++) {
            rm[k] -= b[k];
            if (!isfinite(rm[k]))
                rc = abc_errf(err, ABC_EVALUE,
                              "%s: conv bias '%.80s' element %d is not "
                              "finite, or overflows the running mean",
                              c->f->name, key, k);
        }
        free(b);
        if (rc) return rc;
        rep->folded++;
        if (st->dtype != ST_F32) rep->converted++;
    }
    return 0;
}

static int import_tensors(struct ctx *c, struct model *m,
                          struct stmodel_report *rep, char *err)
{
    char missing[200] = "", unused[200] = "";
    int nmissing = 0, nunused = 0;
    for (int t = 0; t < m->ntensors; t++) {
        const struct tensor_info *ti = &m->tensors[t];
        char key[KEY_LEN];
        int i = lookup(c, ti->name, key, sizeof key);
        if (i < 0) {
            list_add(missing, sizeof missing, &nmissing, key);
            continue;
        }
        int rc = fill_tensor(c, m, ti, i, key, rep, err);
        if (rc) return rc;
        if (ti->role == TENSOR_BN_MEAN) { /* its num_batches_tracked */
            char name[MODEL_NAME_LEN + 24], k2[KEY_LEN];
            size_t pl = strlen(ti->name) - strlen(".running_mean");
            snprintf(name, sizeof name, "%.*s.num_batches_tracked", (int)pl,
                     ti->name);
            int j = lookup(c, name, k2, sizeof k2);
            if (j >= 0 && c->f->tensors[j].numel > 1)
                return abc_errf(err, ABC_EVALUE,
                                "%s: tensor '%.80s': expected one number",
                                c->f->name, k2);
            rep->ignored_batches += j >= 0;
        }
    }
    int rc = nmissing ? 0 : fold_biases(c, m, rep, err);
    if (rc) return rc;
    for (int i = 0; i < c->f->ntensors; i++)
        if (!c->used[i])
            list_add(unused, sizeof unused, &nunused, c->f->tensors[i].name);
    if (!nmissing && !nunused) return 0;
    list_end(missing, sizeof missing, nmissing);
    list_end(unused, sizeof unused, nunused);
    char miss[260] = "", unm[260] = "";
    if (nmissing)
        snprintf(miss, sizeof miss, "%d tensor%s missing (%s)%s", nmissing,
                 nmissing == 1 ? "" : "s", missing, nunused ? "; " : "");
    if (nunused)
        snprintf(unm, sizeof unm, "%d key%s unmatched: %s", nunused,
                 nunused == 1 ? "" : "s", unused);
    return abc_errf(
        err, ABC_EFORMAT, "%s: not a %s state_dict in %s names: %s%s",
        c->f->name, arch_name(m->arch),
        c->abc_vgg ? "ABCPruner's VGG" : "abcprune's/ABCPruner's", miss, unm);
}

int stmodel_import(struct model **out, const struct st_file *f,
                   const struct stmodel_want *w, struct stmodel_report *rep,
                   char *err)
{
    *out = NULL;
    struct stmodel_report r = {0};
    struct ctx c = {.f = f};
    struct model *full = NULL, *m = NULL;
    int *ch = NULL, rc;
    if ((rc = check_metadata(f, w, err))) return rc;
    c.keys = malloc(sizeof *c.keys * (size_t)(f->ntensors + 1));
    c.used = calloc((size_t)f->ntensors + 1, 1);
    if (!c.keys || !c.used) {
        rc = abc_errf(err, ABC_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < f->ntensors; i++) {
        const char *n = f->tensors[i].name;
        if (starts_with(n, "module.")) n += 7, r.module_prefix = 1;
        c.keys[c.nkeys++] = (struct key){.norm = n, .idx = i};
        if (w->arch == ARCH_VGG16 &&
            (starts_with(n, "features.") || starts_with(n, "classifier.")))
            c.abc_vgg = 1;
    }
    qsort(c.keys, (size_t)c.nkeys, sizeof *c.keys, cmp_key);
    for (int i = 1; i < c.nkeys; i++)
        if (strcmp(c.keys[i - 1].norm, c.keys[i].norm) == 0) {
            rc = abc_errf(err, ABC_EFORMAT,
                          "%s: tensor '%.80s' appears with and without the "
                          "'module.' prefix",
                          f->name, c.keys[i].norm);
            goto out;
        }
    for (int i = 0, pos = 0; i < 13; i++) {
        c.vgg_pos[i] = pos; /* conv, bn, relu, then a pool after 2,4,7,10,13 */
        pos += 3 + (i == 1 || i == 3 || i == 6 || i == 9 || i == 12);
    }
    if (c.abc_vgg && !st_meta(f, "arch")) {
        rc = abc_errf(err, ABC_EVALUE,
                      "%s: ABCPruner's VGG-16 (features.N, classifier keys) "
                      "ends in a 5th max-pool and a flatten, abcprune's vgg16 "
                      "in 4 max-pools and global average pooling: the "
                      "logits would differ, so it is refused. A network "
                      "with abcprune's layout under these names is "
                      "accepted when __metadata__ has \"arch\": \"vgg16\"",
                      f->name);
        goto out;
    }
    if ((rc = model_create(&full, w->arch, NULL, w->in_c, w->in_h, w->in_w,
                           w->classes, err)))
        goto out;
    int n = full->nprunable;
    ch = malloc(sizeof(int) * (size_t)n);
    if (!ch) {
        rc = abc_errf(err, ABC_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = file_structure(&c, full, ch, &r.meta_structure, err))) goto out;
    const int *want = w->channels ? w->channels : full->full;
    if (memcmp(ch, want, sizeof(int) * (size_t)n) != 0) {
        char got[160], exp[160];
        format_ints(got, sizeof got, ch, n);
        format_ints(exp, sizeof exp, want, n);
        int is_full = memcmp(ch, full->full, sizeof(int) * (size_t)n) == 0;
        char hint[200];
        if (is_full)
            snprintf(hint, sizeof hint, "remove model.channels from %s",
                     w->config);
        else
            snprintf(hint, sizeof hint, "set model.channels: %s in %s", got,
                     w->config);
        rc = abc_errf(err, ABC_EVALUE,
                      "%s: its %s structure %s (from %s) is not the config's "
                      "%s; %s",
                      f->name, arch_name(w->arch), got,
                      r.meta_structure ? "__metadata__" : "its shapes", exp,
                      hint);
        goto out;
    }
    if ((rc = model_create(&m, w->arch, ch, w->in_c, w->in_h, w->in_w,
                           w->classes, err)))
        goto out;
    if ((rc = import_tensors(&c, m, &r, err))) goto out;
    r.abcpruner_vgg = c.abc_vgg;
    if (rep) *rep = r;
    *out = m;
    m = NULL;
out:
    model_destroy(m);
    model_destroy(full);
    free(ch);
    free(c.keys);
    free(c.used);
    return rc;
}

int stmodel_export(const struct model *m, const char *path, char *err)
{
    int nbn = 0;
    for (int t = 0; t < m->ntensors; t++)
        nbn += m->tensors[t].role == TENSOR_BN_VAR;
    int n = 0, rc;
    static const int64_t zero = 0;
    struct st_out *o = calloc((size_t)m->ntensors + (size_t)nbn, sizeof *o);
    char(*names)[MODEL_NAME_LEN + 24] = calloc((size_t)nbn + 1, sizeof *names);
    size_t listlen = (size_t)m->nprunable * 16 + 4;
    char *structure = malloc(listlen), *fullw = malloc(listlen);
    if (!o || !names || !structure || !fullw) {
        rc = abc_errf(err, ABC_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    for (int t = 0, b = 0; t < m->ntensors; t++) {
        const struct tensor_info *ti = &m->tensors[t];
        o[n] = (struct st_out){.name = ti->name,
                               .dtype = ST_F32,
                               .ndim = ti->ndim,
                               .data = model_tensor_data(m, ti)};
        for (int d = 0; d < ti->ndim; d++)
            o[n].shape[d] = ti->shape[d];
        n++;
        if (ti->role != TENSOR_BN_VAR) continue;
        size_t pl = strlen(ti->name) - strlen(".running_var");
        snprintf(names[b], sizeof names[b], "%.*s.num_batches_tracked", (int)pl,
                 ti->name);
        o[n++] = (struct st_out){
            .name = names[b++], .dtype = ST_I64, .ndim = 0, .data = &zero};
    }
    format_ints(structure, listlen, m->channels, m->nprunable);
    format_ints(fullw, listlen, m->full, m->nprunable);
    char input[64], classes[16];
    snprintf(input, sizeof input, "[%d,%d,%d]", m->in_c, m->in_h, m->in_w);
    snprintf(classes, sizeof classes, "%d", m->num_classes);
    const char *keys[] = {"format", "format_version", "arch",   "structure",
                          "full",   "input_shape",    "classes"};
    const char *vals[] = {STMODEL_FORMAT, STMODEL_VERSION, arch_name(m->arch),
                          structure,      fullw,           input,
                          classes};
    rc = st_write(path, o, n, keys, vals, 7, err);
out:
    free(o);
    free(names);
    free(structure);
    free(fullw);
    return rc;
}

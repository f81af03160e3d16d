/* onnx.c - ONNX export of a model's inference graph (see onnx.h): walks the
 * model's op list (model_op_get), builds the protobuf-c messages generated
 * from libonnx-dev's onnx.proto, packs them with protobuf-c and writes the
 * bytes atomically. Every message and array lives in one pool, freed at the
 * end. */
#include "io/onnx.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fileio.h"
#include "onnx.pb-c.h"

/* ---- allocation pool --------------------------------------------------- */

struct pool {
    void **p;
    size_t n, cap;
    int oom;
};

/* Zeroed memory owned by the pool (NULL and pl->oom set when out of
 * memory). */
static void *pool_alloc(struct pool *pl, size_t bytes)
{
    if (pl->oom) return NULL;
    if (pl->n == pl->cap) {
        size_t ncap = pl->cap ? 2 * pl->cap : 256;
        void **q = realloc(pl->p, ncap * sizeof *q);
        if (!q) {
            pl->oom = 1;
            return NULL;
        }
        pl->p = q, pl->cap = ncap;
    }
    void *b = calloc(1, bytes ? bytes : 1);
    if (!b) {
        pl->oom = 1;
        return NULL;
    }
    pl->p[pl->n++] = b;
    return b;
}

static char *pool_printf(struct pool *pl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static char *pool_printf(struct pool *pl, const char *fmt, ...)
{
    if (pl->oom) return NULL; /* an argument may be a NULL from a failure */
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? pool_alloc(pl, (size_t)n + 1) : NULL;
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void pool_free(struct pool *pl)
{
    for (size_t i = 0; i < pl->n; i++)
        free(pl->p[i]);
    free(pl->p);
}

/* ---- graph builder ----------------------------------------------------- */

struct graph {
    struct pool pool;
    Onnx__NodeProto **nodes;
    size_t nnodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t ninits, cap_inits;
    char *last_out; /* output of the last node added */
};

/* Adds node op_type named name (also the name of its one output) reading
 * the nin values in[]. Returns the node (NULL when out of memory). */
static Onnx__NodeProto *add_node(struct graph *g, const char *op_type,
                                 const char *name, int nin, char **in)
{
    Onnx__NodeProto *n = pool_alloc(&g->pool, sizeof *n);
    char **ins = pool_alloc(&g->pool, (size_t)nin * sizeof *ins);
    char **outs = pool_alloc(&g->pool, sizeof *outs);
    if (!n || !ins || !outs || g->nnodes == g->cap_nodes) {
        g->pool.oom = 1;
        return NULL;
    }
    onnx__node_proto__init(n);
    n->op_type = (char *)op_type;
    n->name = (char *)name;
    memcpy(ins, in, (size_t)nin * sizeof *ins);
    n->n_input = (size_t)nin, n->input = ins;
    outs[0] = (char *)name;
    n->n_output = 1, n->output = outs;
    g->nodes[g->nnodes++] = n;
    g->last_out = (char *)name;
    return n;
}

/* Appends an attribute to n: an int (ints NULL) or a list of nints ints. */
static void add_attr(struct graph *g, Onnx__NodeProto *n, const char *name,
                     int64_t i, const int64_t *ints, size_t nints)
{
    if (!n) return;
    Onnx__AttributeProto *a = pool_alloc(&g->pool, sizeof *a);
    Onnx__AttributeProto **as =
        pool_alloc(&g->pool, (n->n_attribute + 1) * sizeof *as);
    int64_t *v = ints ? pool_alloc(&g->pool, nints * sizeof *v) : NULL;
    if (!a || !as || (ints && !v)) return;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = 1;
    if (ints) {
        a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
        memcpy(v, ints, nints * sizeof *v);
        a->n_ints = nints, a->ints = v;
    } else {
        a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
        a->has_i = 1, a->i = i;
    }
    if (n->n_attribute) memcpy(as, n->attribute, n->n_attribute * sizeof *as);
    as[n->n_attribute++] = a;
    n->attribute = as; /* the old array stays in the pool */
}

/* Adds an initializer: float (f) or int64 (i64) data of the given dims.
 * Returns its name (NULL when out of memory). */
static char *add_init(struct graph *g, char *name, const int64_t *dims,
                      size_t ndims, float *f, const int64_t *i64, size_t numel,
                      const char *doc)
{
    Onnx__TensorProto *t = pool_alloc(&g->pool, sizeof *t);
    int64_t *d = pool_alloc(&g->pool, ndims * sizeof *d);
    int64_t *iv = i64 ? pool_alloc(&g->pool, numel * sizeof *iv) : NULL;
    if (!t || !d || !name || (i64 && !iv) || g->ninits == g->cap_inits) {
        g->pool.oom = 1;
        return NULL;
    }
    onnx__tensor_proto__init(t);
    t->name = name;
    t->doc_string = (char *)doc;
    memcpy(d, dims, ndims * sizeof *d);
    t->n_dims = ndims, t->dims = d;
    t->has_data_type = 1;
    if (f) {
        t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
        t->n_float_data = numel, t->float_data = f;
    } else {
        t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
        memcpy(iv, i64, numel * sizeof *iv);
        t->n_int64_data = numel, t->int64_data = iv;
    }
    g->inits[g->ninits++] = t;
    return name;
}

/* Copies tensor ti's data into the pool: *out. Returns 0, or ABC_EVALUE
 * (a non-finite value, named) or ABC_ENOMEM with a message in err. */
static int tensor_copy(struct graph *g, const struct model *m, int ti,
                       float **out, const char *path, char *err)
{
    const struct tensor_info *t = &m->tensors[ti];
    const float *src = model_tensor_data(m, t);
    *out = NULL;
    for (size_t i = 0; i < t->numel; i++)
        if (!isfinite(src[i]))
            return abc_errf(err, ABC_EVALUE,
                            "%s: tensor %s has a non-finite value at index "
                            "%zu, not exported",
                            path, t->name, i);
    float *d = pool_alloc(&g->pool, t->numel * sizeof *d);
    if (!d) return abc_errf(err, ABC_ENOMEM, "%s: out of memory", path);
    memcpy(d, src, t->numel * sizeof *d);
    *out = d;
    return 0;
}

/* The name of tensor ti without its ".weight" suffix ("layer1.0.conv1"). */
static char *layer_name(struct graph *g, const struct model *m, int ti)
{
    const char *s = m->tensors[ti].name, *dot = strrchr(s, '.');
    int len = dot ? (int)(dot - s) : (int)strlen(s);
    return pool_printf(&g->pool, "%.*s", len, s);
}

/* Number of ops reading slot s. */
static int slot_readers(const struct model *m, int s)
{
    int n = 0;
    struct model_op_info o;
    for (int i = 0; i < model_op_count(m); i++)
        if (model_op_get(m, i, &o, NULL) == 0) n += (o.in == s) + (o.in2 == s);
    return n;
}

/* Conv op c followed by batchnorm op b (reading only c's output): one Conv
 * node with the batchnorm folded into its weight and a bias, in double:
 * scale = gamma / sqrt(var + eps), W' = W * scale, b' = beta - mean * scale
 * (per output channel), then a Relu node when b has one fused. */
static int emit_conv_bn(struct graph *g, const struct model *m,
                        const struct model_op_info *c,
                        const struct model_op_info *b, char *in,
                        const char *path, char *err)
{
    const struct tensor_info *wt = &m->tensors[c->weight];
    float *w, *gamma, *beta, *mean, *var;
    int rc = tensor_copy(g, m, c->weight, &w, path, err);
    if (!rc) rc = tensor_copy(g, m, b->weight, &gamma, path, err);
    if (!rc) rc = tensor_copy(g, m, b->bias, &beta, path, err);
    if (!rc) rc = tensor_copy(g, m, b->mean, &mean, path, err);
    if (!rc) rc = tensor_copy(g, m, b->var, &var, path, err);
    if (rc) return rc;
    char *bn = layer_name(g, m, b->weight);
    int cout = wt->shape[0];
    size_t per = wt->numel / (size_t)cout;
    float *bias = pool_alloc(&g->pool, (size_t)cout * sizeof *bias);
    if (!bias) return abc_errf(err, ABC_ENOMEM, "%s: out of memory", path);
    for (int o = 0; o < cout; o++) {
        double v = (double)var[o] + (double)m->bn_eps;
        double scale = (double)gamma[o] / sqrt(v);
        if (!(v > 0) || !isfinite(scale))
            return abc_errf(err, ABC_EVALUE,
                            "%s: %s[%d] = %g: running variance + eps must be "
                            "positive, not exported",
                            path, m->tensors[b->var].name, o, (double)var[o]);
        int finite = 1;
        for (size_t j = 0; j < per; j++) {
            float *x = &w[(size_t)o * per + j];
            *x = (float)(*x * scale);
            finite &= isfinite(*x) != 0;
        }
        bias[o] = (float)((double)beta[o] - (double)mean[o] * scale);
        if (!finite || !isfinite(bias[o]))
            return abc_errf(err, ABC_EVALUE,
                            "%s: folding %s into %s overflows float at "
                            "channel %d, not exported",
                            path, bn ? bn : "the batchnorm",
                            m->tensors[c->weight].name, o);
    }
    char *name = layer_name(g, m, c->weight);
    int64_t wd[4] = {wt->shape[0], wt->shape[1], wt->shape[2], wt->shape[3]};
    int64_t bd[1] = {cout};
    char *doc = pool_printf(&g->pool, "batchnorm %s folded in", bn);
    char *ins[3] = {
        in,
        add_init(g, pool_printf(&g->pool, "%s.weight", name), wd, 4, w, NULL,
                 wt->numel, doc),
        add_init(g, pool_printf(&g->pool, "%s.bias", name), bd, 1, bias, NULL,
                 (size_t)cout, doc),
    };
    if (!name || !ins[1] || !ins[2])
        return abc_errf(err, ABC_ENOMEM, "%s: out of memory", path);
    Onnx__NodeProto *n = add_node(g, "Conv", name, 3, ins);
    int64_t k[2] = {c->k, c->k}, s[2] = {c->stride, c->stride};
    int64_t p[4] = {c->pad, c->pad, c->pad, c->pad};
    add_attr(g, n, "kernel_shape", 0, k, 2);
    add_attr(g, n, "strides", 0, s, 2);
    add_attr(g, n, "pads", 0, p, 4);
    if (b->relu) {
        char *rn = pool_printf(&g->pool, "%s.relu", bn);
        if (rn) add_node(g, "Relu", rn, 1, &g->last_out);
    }
    return g->pool.oom ? abc_errf(err, ABC_ENOMEM, "%s: out of memory", path)
                       : 0;
}

/* Option-A shortcut: Slice every stride-th row and column (ceil(H/stride)
 * of them, as the engine samples), then Pad the channels with zeros
 * (out_c - in_c)/2 before and the rest after. Both exact. */
static void emit_shortcut(struct graph *g, const struct model_op_info *o,
                          char *in, int idx)
{
    char *v = in;
    if (o->stride != 1) {
        char *name = pool_printf(&g->pool, "shortcut%d.slice", idx);
        int64_t one[1] = {2};
        int64_t st[2] = {0, 0}, en[2] = {o->in_h, o->in_w}, ax[2] = {2, 3};
        int64_t sp[2] = {o->stride, o->stride};
        char *ins[5] = {
            v,
            add_init(g, pool_printf(&g->pool, "%s.starts", name), one, 1, NULL,
                     st, 2, NULL),
            add_init(g, pool_printf(&g->pool, "%s.ends", name), one, 1, NULL,
                     en, 2, NULL),
            add_init(g, pool_printf(&g->pool, "%s.axes", name), one, 1, NULL,
                     ax, 2, NULL),
            add_init(g, pool_printf(&g->pool, "%s.steps", name), one, 1, NULL,
                     sp, 2, NULL),
        };
        if (!name || !ins[1] || !ins[2] || !ins[3] || !ins[4]) return;
        add_node(g, "Slice", name, 5, ins);
        v = g->last_out;
    }
    if (o->out_c != o->in_c) {
        char *name = pool_printf(&g->pool, "shortcut%d.pad", idx);
        int before = (o->out_c - o->in_c) / 2;
        int64_t eight[1] = {8};
        int64_t pads[8] = {0, before, 0, 0, 0, o->out_c - o->in_c - before,
                           0, 0};
        char *ins[2] = {v, add_init(g, pool_printf(&g->pool, "%s.pads", name),
                                    eight, 1, NULL, pads, 8, NULL)};
        if (!name || !ins[1]) return;
        add_node(g, "Pad", name, 2, ins);
        v = g->last_out;
    }
    if (v == in) /* neither: the identity */
        add_node(g, "Identity", pool_printf(&g->pool, "shortcut%d", idx), 1,
                 &in);
}

/* Walks m's ops and adds their nodes. Returns 0 or an error. */
static int build_nodes(struct graph *g, const struct model *m, const char *path,
                       char *err)
{
    int nops = model_op_count(m), nslots = 1;
    struct model_op_info o, next;
    for (int i = 0; i < nops; i++)
        if (model_op_get(m, i, &o, err) == 0 && o.out + 1 > nslots)
            nslots = o.out + 1;
    char **cur = pool_alloc(&g->pool, (size_t)nslots * sizeof *cur);
    if (!cur) return abc_errf(err, ABC_ENOMEM, "%s: out of memory", path);
    cur[0] = "input";
    int counter = 0;
    for (int i = 0; i < nops; i++) {
        int rc = model_op_get(m, i, &o, err);
        if (rc) return abc_errprefix(err, rc, "%s", path);
        char *in = cur[o.in];
        Onnx__NodeProto *n = NULL;
        counter++;
        switch (o.kind) {
        case MODEL_OP_CONV:
            if (i + 1 >= nops || model_op_get(m, i + 1, &next, NULL) != 0 ||
                next.kind != MODEL_OP_BN || next.in != o.out ||
                slot_readers(m, o.out) != 1)
                return abc_errf(err, ABC_EVALUE,
                                "%s: %s: a conv not followed by its "
                                "batchnorm cannot be exported",
                                path, m->tensors[o.weight].name);
            rc = emit_conv_bn(g, m, &o, &next, in, path, err);
            if (rc) return rc;
            i++; /* the batchnorm is folded */
            o.out = next.out;
            break;
        case MODEL_OP_BN:
            return abc_errf(err, ABC_EVALUE,
                            "%s: %s: a batchnorm not after a conv cannot be "
                            "exported",
                            path, m->tensors[o.weight].name);
        case MODEL_OP_RELU:
            add_node(g, "Relu", pool_printf(&g->pool, "relu%d", counter), 1,
                     &in);
            break;
        case MODEL_OP_MAXPOOL: {
            n = add_node(g, "MaxPool",
                         pool_printf(&g->pool, "maxpool%d", counter), 1, &in);
            int64_t k[2] = {o.k, o.k}, s[2] = {o.stride, o.stride};
            add_attr(g, n, "kernel_shape", 0, k, 2);
            add_attr(g, n, "strides", 0, s, 2);
            break;
        }
        case MODEL_OP_GAP:
            add_node(g, "GlobalAveragePool",
                     pool_printf(&g->pool, "avgpool%d", counter), 1, &in);
            break;
        case MODEL_OP_LINEAR: {
            const struct tensor_info *wt = &m->tensors[o.weight];
            char *name = layer_name(g, m, o.weight);
            n = add_node(g, "Flatten",
                         pool_printf(&g->pool, "%s.flatten", name), 1, &in);
            add_attr(g, n, "axis", 1, NULL, 0);
            float *w, *b;
            rc = tensor_copy(g, m, o.weight, &w, path, err);
            if (!rc) rc = tensor_copy(g, m, o.bias, &b, path, err);
            if (rc) return rc;
            int64_t wd[2] = {wt->shape[0], wt->shape[1]},
                    bd[1] = {wt->shape[0]};
            char *ins[3] = {
                g->last_out,
                add_init(g, pool_printf(&g->pool, "%s.weight", name), wd, 2, w,
                         NULL, wt->numel, NULL),
                add_init(g, pool_printf(&g->pool, "%s.bias", name), bd, 1, b,
                         NULL, (size_t)wt->shape[0], NULL),
            };
            if (!name || !ins[1] || !ins[2]) break; /* oom, reported below */
            n = add_node(g, "Gemm", name, 3, ins);
            add_attr(g, n, "transB", 1, NULL, 0);
            break;
        }
        case MODEL_OP_ADD: {
            char *ins[2] = {in, cur[o.in2]};
            add_node(g, "Add", pool_printf(&g->pool, "add%d", counter), 2, ins);
            break;
        }
        case MODEL_OP_SHORTCUT:
            emit_shortcut(g, &o, in, counter);
            break;
        }
        if (g->pool.oom)
            return abc_errf(err, ABC_ENOMEM, "%s: out of memory", path);
        cur[o.out] = g->last_out;
    }
    /* The last node writes the logits: give its output the graph's name. */
    if (g->nnodes == 0)
        return abc_errf(err, ABC_EVALUE, "%s: the model has no ops", path);
    g->nodes[g->nnodes - 1]->output[0] = "logits";
    return 0;
}

/* A graph input/output: float32 tensor (batch, d[0], ..., d[nd-1]) with a
 * symbolic batch dimension. */
static Onnx__ValueInfoProto *value_info(struct graph *g, const char *name,
                                        const int *d, int nd)
{
    struct pool *pl = &g->pool;
    Onnx__ValueInfoProto *v = pool_alloc(pl, sizeof *v);
    Onnx__TypeProto *t = pool_alloc(pl, sizeof *t);
    Onnx__TypeProto__Tensor *tt = pool_alloc(pl, sizeof *tt);
    Onnx__TensorShapeProto *s = pool_alloc(pl, sizeof *s);
    Onnx__TensorShapeProto__Dimension **dims =
        pool_alloc(pl, (size_t)(nd + 1) * sizeof *dims);
    if (!v || !t || !tt || !s || !dims) return NULL;
    for (int i = 0; i <= nd; i++) {
        dims[i] = pool_alloc(pl, sizeof *dims[i]);
        if (!dims[i]) return NULL;
        onnx__tensor_shape_proto__dimension__init(dims[i]);
        if (i == 0) {
            dims[i]->value_case =
                ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dims[i]->dim_param = "batch";
        } else {
            dims[i]->value_case =
                ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dims[i]->dim_value = d[i - 1];
        }
    }
    onnx__tensor_shape_proto__init(s);
    s->n_dim = (size_t)nd + 1, s->dim = dims;
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = s;
    onnx__type_proto__init(t);
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = tt;
    onnx__value_info_proto__init(v);
    v->name = (char *)name;
    v->type = t;
    return v;
}

/* Metadata entry key = value (NULL when out of memory). */
static Onnx__StringStringEntryProto *meta(struct graph *g, const char *key,
                                          char *value)
{
    Onnx__StringStringEntryProto *e = pool_alloc(&g->pool, sizeof *e);
    if (!e || !value) return NULL;
    onnx__string_string_entry_proto__init(e);
    e->key = (char *)key;
    e->value = value;
    return e;
}

/* "c1,c2,...": the structure vector. */
static char *structure_text(struct graph *g, const struct model *m)
{
    size_t cap = (size_t)m->nprunable * 12 + 1, len = 0;
    char *s = pool_alloc(&g->pool, cap);
    if (!s) return NULL;
    for (int i = 0; i < m->nprunable; i++)
        len += (size_t)snprintf(s + len, cap - len, "%s%d", i ? "," : "",
                                m->channels[i]);
    return s;
}

/* Wraps g's nodes and initializers into a model (opset, producer, graph
 * input and output, metadata), packs it with protobuf-c and writes it to
 * path atomically. Returns 0 or an error naming path. */
static int write_model(struct graph *g, const struct model *m, const char *path,
                       char *err)
{
    Onnx__GraphProto gr;
    onnx__graph_proto__init(&gr);
    gr.name = (char *)arch_name(m->arch);
    gr.n_node = g->nnodes, gr.node = g->nodes;
    gr.n_initializer = g->ninits, gr.initializer = g->inits;
    int in_dims[3] = {m->in_c, m->in_h, m->in_w};
    int out_dims[1] = {m->num_classes};
    Onnx__ValueInfoProto *in = value_info(g, "input", in_dims, 3);
    Onnx__ValueInfoProto *out = value_info(g, "logits", out_dims, 1);
    gr.n_input = 1, gr.input = &in;
    gr.n_output = 1, gr.output = &out;

    Onnx__OperatorSetIdProto opset;
    onnx__operator_set_id_proto__init(&opset);
    opset.domain = "";
    opset.has_version = 1, opset.version = ONNX_OPSET;
    Onnx__OperatorSetIdProto *opsets[1] = {&opset};

    Onnx__StringStringEntryProto *md[4] = {
        meta(g, "abcprune.arch", (char *)arch_name(m->arch)),
        meta(g, "abcprune.structure", structure_text(g, m)),
        meta(g, "abcprune.input_shape",
             pool_printf(&g->pool, "%d,%d,%d", m->in_c, m->in_h, m->in_w)),
        meta(g, "abcprune.batchnorm", "folded into the conv weights and bias"),
    };

    Onnx__ModelProto mp;
    onnx__model_proto__init(&mp);
    mp.has_ir_version = 1, mp.ir_version = ONNX_IR_VERSION;
    mp.n_opset_import = 1, mp.opset_import = opsets;
    mp.producer_name = "abcprune";
    mp.producer_version = ONNX_PRODUCER_VERSION;
    mp.graph = &gr;
    mp.n_metadata_props = 4, mp.metadata_props = md;
    if (g->pool.oom || !in || !out || !md[0] || !md[1] || !md[2] || !md[3])
        return abc_errf(err, ABC_ENOMEM, "%s: out of memory", path);

    size_t len = onnx__model_proto__get_packed_size(&mp);
    if (len > (size_t)INT32_MAX) /* protobuf's 2 GiB message limit */
        return abc_errf(err, ABC_EVALUE,
                        "%s: the model would take %zu bytes, over protobuf's "
                        "2 GiB limit",
                        path, len);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return abc_errf(err, ABC_ENOMEM, "%s: out of memory for %zu bytes",
                        path, len);
    int rc = 0;
    if (onnx__model_proto__pack(&mp, buf) != len)
        rc = abc_errf(err, ABC_EFORMAT, "%s: protobuf-c packed a wrong size",
                      path);
    else
        rc = file_write_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

int onnx_export(const struct model *m, const char *path, char *err)
{
    if (!path || !*path)
        return abc_errf(err, ABC_EVALUE, "ONNX export: no output path");
    struct graph g = {0};
    int nops = model_op_count(m), rc;
    /* each op adds at most 2 nodes and 4 initializers */
    g.cap_nodes = 2 * (size_t)nops + 2;
    g.cap_inits = 4 * (size_t)nops + 4;
    g.nodes = pool_alloc(&g.pool, g.cap_nodes * sizeof *g.nodes);
    g.inits = pool_alloc(&g.pool, g.cap_inits * sizeof *g.inits);
    if (!g.nodes || !g.inits)
        rc = abc_errf(err, ABC_ENOMEM, "%s: out of memory", path);
    else
        rc = build_nodes(&g, m, path, err);
    if (rc == 0) rc = write_model(&g, m, path, err);
    pool_free(&g.pool);
    return rc;
}

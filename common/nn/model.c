/* model.c - builds CNNs as a flat program of layer ops over one activation
 * arena, and runs forward and backward over it (see model.h). */
#include "nn/model.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/rng.h"
#include "core/seeds.h"

enum op_kind {
    OP_CONV,
    OP_BN,
    OP_RELU, /* in place: in == out */
    OP_MAXPOOL,
    OP_GAP,
    OP_LINEAR,
    OP_ADD,
    OP_SHORTCUT,
};

struct op {
    enum op_kind kind;
    int in, in2, out;   /* activation slots */
    int w, b;           /* tensors: conv/linear weight+bias, bn gamma+beta */
    int rm, rv;         /* bn running mean/var (buffers) */
    struct conv_geom g; /* conv (B filled per call) */
    int k, stride;      /* maxpool window/stride; shortcut stride */
    size_t aux;         /* bn: offset into stats; maxpool: into argmax */
    int relu;           /* bn: a ReLU fused in (out = max(bn(in), 0)) */
    /* bn: its output's only reader is the residual add after it (as the
     * add's first input), whose ReLU follows: the three run forward as one
     * pass (batchnorm_add_relu_forward; in eval, with the conv before the
     * bn too), and the bn's own output is not stored. Backward runs them
     * apart: the add's masks the gradient the bn's backward reads. */
    int add_fused;
};

/* An activation: (c,h,w) per image, stored for max_batch images at
 * acts + off * max_batch. */
struct slot {
    int c, h, w;
    size_t size, off;
    /* >= 0: this slot's only reader is the residual add writing slot
     * grad_alias, so its gradient is that slot's gradient and shares its
     * buffer (no copy in add_backward); -1: a buffer of its own. */
    int grad_alias;
};

struct model_program {
    struct op *ops;
    int nops, cap_ops;
    struct slot *slots;
    int nslots, cap_slots;
    size_t act_per_image; /* floats per image over all slots */
    size_t stats_floats;  /* bn mean + invstd */
    int bn_max_c;         /* the widest BN's channels */
    size_t argmax_per_image;
    int cap_tensors, cap_layers;
    int logits; /* slot of the classifier output */
    int oom;    /* a builder allocation failed */

    int max_batch; /* reserved */
    int work_threads;
    float *acts, *dacts, *stats, *work, *probs;
    float *fold; /* eval: a conv's weights and bias with its BN folded in */
    int32_t *argmax;
    double *bn_sums; /* synchronized BN: 2 * bn_max_c + 1 sums */
    size_t work_floats;
    unsigned char *ready; /* per slot: gradient already written */
    size_t *grad_ends;    /* per op, for model.grad_ready (model_backward) */

    const float *x; /* input of the last forward */
    const int *labels;
    int B, trained; /* last forward: batch, training mode */
    int bn_synced;  /* last forward: its BN statistics were m->bn_sum's */
};

static const char *arch_names[ARCH_COUNT] = {"smallnet", "vgg16", "resnet20",
                                             "resnet56", "resnet110"};

const char *arch_name(enum arch a)
{
    return a >= 0 && a < ARCH_COUNT ? arch_names[a] : "unknown";
}

int arch_parse(const char *name, enum arch *out)
{
    for (int a = 0; a < ARCH_COUNT; a++)
        if (strcmp(name, arch_names[a]) == 0) {
            *out = (enum arch)a;
            return 0;
        }
    return -1;
}

static const int vgg16_widths[13] = {64,  64,  128, 128, 256, 256, 256,
                                     512, 512, 512, 512, 512, 512};

static int resnet_blocks(enum arch a)
{
    return a == ARCH_RESNET20 ? 3 : a == ARCH_RESNET56 ? 9 : 18;
}

int arch_prunable(enum arch a, int *full)
{
    switch (a) {
    case ARCH_SMALLNET:
        if (full) full[0] = 16, full[1] = 32, full[2] = 64;
        return 3;
    case ARCH_VGG16:
        if (full) memcpy(full, vgg16_widths, sizeof vgg16_widths);
        return 13;
    case ARCH_RESNET20:
    case ARCH_RESNET56:
    case ARCH_RESNET110: {
        int n = resnet_blocks(a);
        if (full)
            for (int i = 0; i < 3 * n; i++)
                full[i] = 16 << (i / n);
        return 3 * n;
    }
    default:
        return 0;
    }
}

/* ---- builder ----------------------------------------------------------- */

static void *grow(void *p, int *cap, int need, size_t elem)
{
    if (need <= *cap) return p;
    int ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    void *q = realloc(p, (size_t)ncap * elem);
    if (q) *cap = ncap;
    return q;
}

static int add_slot(struct model *m, int c, int h, int w)
{
    struct model_program *P = m->prog;
    struct slot *s = grow(P->slots, &P->cap_slots, P->nslots + 1, sizeof *s);
    if (!s) {
        P->oom = 1;
        return 0;
    }
    P->slots = s;
    struct slot *n = &s[P->nslots];
    n->c = c, n->h = h, n->w = w;
    n->size = (size_t)c * h * w;
    n->off = P->act_per_image;
    n->grad_alias = -1;
    P->act_per_image += n->size;
    return P->nslots++;
}

static struct op *add_op(struct model *m, enum op_kind kind, int in, int out)
{
    struct model_program *P = m->prog;
    struct op *o = grow(P->ops, &P->cap_ops, P->nops + 1, sizeof *o);
    if (!o) {
        P->oom = 1;
        return NULL;
    }
    P->ops = o;
    struct op *n = &o[P->nops++];
    memset(n, 0, sizeof *n);
    n->kind = kind, n->in = in, n->in2 = -1, n->out = out;
    n->w = n->b = n->rm = n->rv = -1;
    return n;
}

static int add_tensor(struct model *m, const char *prefix, const char *suffix,
                      enum tensor_role role, int ndim, const int *shape,
                      int is_buffer, int prune_out, int prune_in)
{
    struct tensor_info *t =
        grow(m->tensors, &m->prog->cap_tensors, m->ntensors + 1, sizeof *t);
    if (!t) {
        m->prog->oom = 1;
        return -1;
    }
    m->tensors = t;
    struct tensor_info *n = &t[m->ntensors];
    memset(n, 0, sizeof *n);
    if (snprintf(n->name, sizeof n->name, "%s.%s", prefix, suffix) >=
        (int)sizeof n->name)
        m->prog->oom = 1; /* cannot happen with the names used here */
    n->role = role;
    n->ndim = ndim;
    n->numel = 1;
    for (int i = 0; i < ndim; i++) {
        n->shape[i] = shape[i];
        n->numel *= (size_t)shape[i];
    }
    n->is_buffer = is_buffer;
    n->prune_out = prune_out;
    n->prune_in = prune_in;
    size_t *total = is_buffer ? &m->nbuffers : &m->nparams;
    n->offset = *total;
    *total += n->numel;
    return m->ntensors++;
}

static struct layer_info *add_layer(struct model *m, const char *name)
{
    struct layer_info *l =
        grow(m->layers, &m->prog->cap_layers, m->nlayers + 1, sizeof *l);
    if (!l) {
        m->prog->oom = 1;
        return NULL;
    }
    m->layers = l;
    struct layer_info *n = &l[m->nlayers++];
    memset(n, 0, sizeof *n);
    if (snprintf(n->name, sizeof n->name, "%s", name) >= (int)sizeof n->name)
        m->prog->oom = 1;
    n->prunable = -1;
    return n;
}

/* Adds conv `name` (no bias) reading slot in. Returns its output slot, or
 * -1 if the output would be empty. */
static int build_conv(struct model *m, const char *name, int in, int cout,
                      int k, int stride, int pad, int prune_out, int prune_in)
{
    struct slot *s = &m->prog->slots[in];
    struct conv_geom g = {.B = 1,
                          .Cin = s->c,
                          .H = s->h,
                          .W = s->w,
                          .Cout = cout,
                          .K = k,
                          .stride = stride,
                          .pad = pad};
    if (conv_geom_init(&g) != 0) return -1;
    int shape[4] = {cout, s->c, k, k};
    int w = add_tensor(m, name, "weight", TENSOR_CONV_WEIGHT, 4, shape, 0,
                       prune_out, prune_in);
    int out = add_slot(m, cout, g.Ho, g.Wo);
    struct op *o = add_op(m, OP_CONV, in, out);
    struct layer_info *l = add_layer(m, name);
    if (!o || !l || w < 0) return out;
    o->w = w;
    o->g = g;
    l->cin = g.Cin, l->cout = cout, l->k = k, l->stride = stride;
    l->hout = g.Ho, l->wout = g.Wo;
    l->macs = (int64_t)cout * g.Cin * k * k * g.Ho * g.Wo;
    l->params = (int64_t)cout * g.Cin * k * k;
    l->prunable = prune_out;
    return out;
}

/* Adds batchnorm `name` over slot in; its gamma/beta count towards the
 * previous layer's row. Returns the output slot. */
static int build_bn(struct model *m, const char *name, int in, int prune)
{
    int c = m->prog->slots[in].c;
    int shape[1] = {c};
    int g =
        add_tensor(m, name, "weight", TENSOR_BN_GAMMA, 1, shape, 0, prune, -1);
    int b = add_tensor(m, name, "bias", TENSOR_BN_BETA, 1, shape, 0, prune, -1);
    int rm = add_tensor(m, name, "running_mean", TENSOR_BN_MEAN, 1, shape, 1,
                        prune, -1);
    int rv = add_tensor(m, name, "running_var", TENSOR_BN_VAR, 1, shape, 1,
                        prune, -1);
    struct slot *s = &m->prog->slots[in];
    int out = add_slot(m, s->c, s->h, s->w);
    struct op *o = add_op(m, OP_BN, in, out);
    if (!o) return out;
    o->w = g, o->b = b, o->rm = rm, o->rv = rv;
    o->aux = m->prog->stats_floats;
    m->prog->stats_floats += 2 * (size_t)c;
    if (c > m->prog->bn_max_c) m->prog->bn_max_c = c;
    if (m->nlayers > 0) m->layers[m->nlayers - 1].params += 2 * c;
    return out;
}

/* A ReLU right after the batchnorm producing `in` is fused into it. */
static int build_relu(struct model *m, int in)
{
    struct model_program *P = m->prog;
    if (P->nops > 0) {
        struct op *last = &P->ops[P->nops - 1];
        if (last->kind == OP_BN && last->out == in && !last->relu) {
            last->relu = 1;
            return in;
        }
    }
    add_op(m, OP_RELU, in, in);
    return in;
}

static int build_maxpool(struct model *m, int in, int k, int stride)
{
    struct slot s = m->prog->slots[in];
    if (s.h < k || s.w < k) return -1;
    int out = add_slot(m, s.c, (s.h - k) / stride + 1, (s.w - k) / stride + 1);
    struct op *o = add_op(m, OP_MAXPOOL, in, out);
    if (!o) return out;
    o->k = k, o->stride = stride;
    o->aux = m->prog->argmax_per_image;
    m->prog->argmax_per_image += m->prog->slots[out].size;
    return out;
}

static int build_gap(struct model *m, int in)
{
    int out = add_slot(m, m->prog->slots[in].c, 1, 1);
    add_op(m, OP_GAP, in, out);
    return out;
}

static int build_linear(struct model *m, const char *name, int in, int nout,
                        int prune_in)
{
    int nin = (int)m->prog->slots[in].size;
    int wshape[2] = {nout, nin}, bshape[1] = {nout};
    int w = add_tensor(m, name, "weight", TENSOR_LINEAR_WEIGHT, 2, wshape, 0,
                       -1, prune_in);
    int b =
        add_tensor(m, name, "bias", TENSOR_LINEAR_BIAS, 1, bshape, 0, -1, -1);
    int out = add_slot(m, nout, 1, 1);
    struct op *o = add_op(m, OP_LINEAR, in, out);
    struct layer_info *l = add_layer(m, name);
    if (!o || !l) return out;
    o->w = w, o->b = b;
    l->cin = nin, l->cout = nout, l->k = 1, l->stride = 1;
    l->hout = l->wout = 1;
    l->macs = (int64_t)nin * nout;
    l->params = (int64_t)nin * nout + nout;
    return out;
}

static int build_add(struct model *m, int a, int b)
{
    struct slot s = m->prog->slots[a];
    int out = add_slot(m, s.c, s.h, s.w);
    struct op *o = add_op(m, OP_ADD, a, out);
    if (o) o->in2 = b;
    return out;
}

static int build_shortcut(struct model *m, int in, int cout, int stride)
{
    struct slot s = m->prog->slots[in];
    int out = add_slot(m, cout, (s.h - 1) / stride + 1, (s.w - 1) / stride + 1);
    struct op *o = add_op(m, OP_SHORTCUT, in, out);
    if (o) o->stride = stride;
    return out;
}

/* Gives each residual-add input that no other op reads the add output's
 * gradient buffer (see struct slot). Its gradient is then exactly the add
 * output's, written once (by the add's consumers) before the add's backward,
 * and read only by the input's producer, which runs after it. */
/* How many operand places of the program's ops read slot s. */
static int slot_readers(const struct model_program *P, int s)
{
    int readers = 0;
    for (int j = 0; j < P->nops; j++)
        readers += (P->ops[j].in == s) + (P->ops[j].in2 == s);
    return readers;
}

static void plan_grad_aliases(struct model_program *P)
{
    for (int i = 0; i < P->nops; i++) {
        const struct op *o = &P->ops[i];
        if (o->kind != OP_ADD) continue;
        int ins[2] = {o->in, o->in2};
        for (int k = 0; k < 2; k++) {
            int s = ins[k];
            if (s <= 0 || s == P->logits) continue;
            if (slot_readers(P, s) == 1) P->slots[s].grad_alias = o->out;
        }
    }
}

static int relu_follows(const struct model_program *P, int i, int nops);

/* Marks each BN whose output feeds only a residual add and its ReLU (see
 * struct op's add_fused). */
static void plan_add_fusion(struct model_program *P)
{
    for (int i = 0; i + 2 < P->nops; i++) {
        struct op *o = &P->ops[i];
        const struct op *a = &P->ops[i + 1];
        if (o->kind != OP_BN || o->relu || a->kind != OP_ADD ||
            a->in != o->out || a->in2 == o->out ||
            !relu_follows(P, i + 1, P->nops))
            continue;
        o->add_fused = slot_readers(P, o->out) == 1;
    }
}

#define CHECK_SLOT(x)                                                          \
    do {                                                                       \
        if ((x) < 0) return -1;                                                \
    } while (0)

static int build_smallnet(struct model *m, int x)
{
    int h = build_conv(m, "conv1", x, m->channels[0], 3, 1, 1, 0, -1);
    CHECK_SLOT(h);
    h = build_relu(m, build_bn(m, "bn1", h, 0));
    CHECK_SLOT(h = build_maxpool(m, h, 2, 2));
    CHECK_SLOT(h = build_conv(m, "conv2", h, m->channels[1], 3, 1, 1, 1, 0));
    h = build_relu(m, build_bn(m, "bn2", h, 1));
    CHECK_SLOT(h = build_maxpool(m, h, 2, 2));
    CHECK_SLOT(h = build_conv(m, "conv3", h, m->channels[2], 3, 1, 1, 2, 1));
    h = build_relu(m, build_bn(m, "bn3", h, 2));
    h = build_gap(m, h);
    return build_linear(m, "fc", h, m->num_classes, 2);
}

static int build_vgg16(struct model *m, int x)
{
    int h = x;
    for (int i = 0; i < 13; i++) {
        char conv[24], bn[24];
        snprintf(conv, sizeof conv, "conv%d", i + 1);
        snprintf(bn, sizeof bn, "bn%d", i + 1);
        h = build_conv(m, conv, h, m->channels[i], 3, 1, 1, i, i - 1);
        CHECK_SLOT(h);
        h = build_relu(m, build_bn(m, bn, h, i));
        if (i == 1 || i == 3 || i == 6 || i == 9)
            CHECK_SLOT(h = build_maxpool(m, h, 2, 2));
    }
    h = build_gap(m, h);
    return build_linear(m, "fc", h, m->num_classes, 12);
}

static int build_resnet(struct model *m, int x)
{
    int n = resnet_blocks(m->arch);
    int h = build_conv(m, "conv1", x, 16, 3, 1, 1, -1, -1);
    CHECK_SLOT(h);
    h = build_relu(m, build_bn(m, "bn1", h, -1));
    int planes_in = 16;
    for (int s = 0; s < 3; s++) {
        int planes = 16 << s;
        for (int b = 0; b < n; b++) {
            int idx = s * n + b;
            int stride = (s > 0 && b == 0) ? 2 : 1;
            char c1[48], b1[48], c2[48], b2[48];
            snprintf(c1, sizeof c1, "layer%d.%d.conv1", s + 1, b);
            snprintf(b1, sizeof b1, "layer%d.%d.bn1", s + 1, b);
            snprintf(c2, sizeof c2, "layer%d.%d.conv2", s + 1, b);
            snprintf(b2, sizeof b2, "layer%d.%d.bn2", s + 1, b);
            int y =
                build_conv(m, c1, h, m->channels[idx], 3, stride, 1, idx, -1);
            CHECK_SLOT(y);
            y = build_relu(m, build_bn(m, b1, y, idx));
            CHECK_SLOT(y = build_conv(m, c2, y, planes, 3, 1, 1, -1, idx));
            y = build_bn(m, b2, y, -1);
            int sc = h;
            if (stride != 1 || planes_in != planes)
                sc = build_shortcut(m, h, planes, stride);
            h = build_relu(m, build_add(m, y, sc));
            planes_in = planes;
        }
    }
    h = build_gap(m, h);
    return build_linear(m, "fc", h, m->num_classes, -1);
}

/* Frees what model_reserve allocates (the activations and scratch). */
static void free_arena(struct model_program *P)
{
    free(P->acts);
    free(P->dacts);
    free(P->stats);
    free(P->work);
    free(P->probs);
    free(P->fold);
    free(P->argmax);
    free(P->ready);
    free(P->grad_ends);
    free(P->bn_sums);
    P->bn_sums = NULL;
    P->acts = P->dacts = P->stats = P->work = P->probs = P->fold = NULL;
    P->argmax = NULL;
    P->ready = NULL;
    P->grad_ends = NULL;
}

void model_destroy(struct model *m)
{
    if (!m) return;
    struct model_program *P = m->prog;
    if (P) {
        free(P->ops);
        free(P->slots);
        free_arena(P);
        free(P);
    }
    free(m->channels);
    free(m->full);
    free(m->tensors);
    free(m->params);
    free(m->grads);
    free(m->buffers);
    free(m->layers);
    free(m);
}

/* model_create without the parameter, gradient and buffer memory when
 * alloc is 0 (a shape: layers, tensors' shapes, MACs, parameter count). */
static int model_build(struct model **out, enum arch arch, const int *channels,
                       int in_c, int in_h, int in_w, int num_classes, int alloc,
                       char *err)
{
    *out = NULL;
    if (arch < 0 || arch >= ARCH_COUNT)
        return abc_errf(err, ABC_EVALUE, "unknown architecture %d", arch);
    if (in_c < 1 || in_c > 64 || in_h < 1 || in_w < 1 || in_h > 4096 ||
        in_w > 4096)
        return abc_errf(err, ABC_EVALUE, "bad input shape %dx%dx%d", in_c, in_h,
                        in_w);
    if (num_classes < 2 || num_classes > 100000)
        return abc_errf(err, ABC_EVALUE, "bad number of classes %d",
                        num_classes);
    struct model *m = calloc(1, sizeof *m);
    if (!m) return abc_errf(err, ABC_ENOMEM, "out of memory");
    m->arch = arch;
    m->in_c = in_c, m->in_h = in_h, m->in_w = in_w;
    m->num_classes = num_classes;
    m->bn_momentum = 0.1f;
    m->bn_eps = 1e-5f;
    m->fold_bn_eval = 1;
    m->nprunable = arch_prunable(arch, NULL);
    m->channels = malloc(sizeof(int) * m->nprunable);
    m->full = malloc(sizeof(int) * m->nprunable);
    m->prog = calloc(1, sizeof *m->prog);
    if (!m->channels || !m->full || !m->prog) {
        model_destroy(m);
        return abc_errf(err, ABC_ENOMEM, "out of memory");
    }
    arch_prunable(arch, m->full);
    for (int i = 0; i < m->nprunable; i++) {
        int c = channels ? channels[i] : m->full[i];
        if (c < 1 || c > m->full[i]) {
            abc_errf(err, ABC_EVALUE,
                     "%s: prunable layer %d keeps %d channels, expected 1..%d",
                     arch_name(arch), i, c, m->full[i]);
            model_destroy(m);
            return ABC_EVALUE;
        }
        m->channels[i] = c;
    }

    int x = add_slot(m, in_c, in_h, in_w);
    int logits;
    switch (arch) {
    case ARCH_SMALLNET:
        logits = build_smallnet(m, x);
        break;
    case ARCH_VGG16:
        logits = build_vgg16(m, x);
        break;
    default:
        logits = build_resnet(m, x);
        break;
    }
    if (m->prog->oom) {
        model_destroy(m);
        return abc_errf(err, ABC_ENOMEM, "out of memory building %s",
                        arch_name(arch));
    }
    if (logits < 0) {
        model_destroy(m);
        return abc_errf(err, ABC_EVALUE,
                        "input %dx%d is too small for %s (a feature map "
                        "would be empty)",
                        in_h, in_w, arch_name(arch));
    }
    m->prog->logits = logits;
    plan_grad_aliases(m->prog);
    plan_add_fusion(m->prog);
    if (!alloc) {
        *out = m;
        return 0;
    }
    /* The input slot is not stored in the arena: forward reads x itself. */
    m->params = calloc(m->nparams, sizeof(float));
    m->grads = calloc(m->nparams, sizeof(float));
    m->buffers = calloc(m->nbuffers ? m->nbuffers : 1, sizeof(float));
    if (!m->params || !m->grads || !m->buffers) {
        model_destroy(m);
        return abc_errf(err, ABC_ENOMEM, "out of memory for %zu parameters",
                        m->nparams);
    }
    *out = m;
    return 0;
}

int model_create(struct model **out, enum arch arch, const int *channels,
                 int in_c, int in_h, int in_w, int num_classes, char *err)
{
    return model_build(out, arch, channels, in_c, in_h, in_w, num_classes, 1,
                       err);
}

int model_shape_count(enum arch arch, const int *channels, int in_c, int in_h,
                      int in_w, int num_classes, int64_t *macs, int64_t *params,
                      char *err)
{
    struct model *m;
    int rc =
        model_build(&m, arch, channels, in_c, in_h, in_w, num_classes, 0, err);
    if (rc) return rc;
    if (macs) *macs = model_macs(m);
    if (params) *params = model_param_count(m);
    model_destroy(m);
    return 0;
}

void model_init_weights(struct model *m, uint64_t seed)
{
    for (int i = 0; i < m->ntensors; i++) {
        struct tensor_info *t = &m->tensors[i];
        float *d = model_tensor_data(m, t);
        struct rng r;
        rng_seed(&r, rng_derive(seed, (uint64_t)i, SEED_WEIGHT_INIT, 0));
        if (t->role == TENSOR_CONV_WEIGHT) {
            double fan_in = (double)t->shape[1] * t->shape[2] * t->shape[3];
            double std = sqrt(2.0 / fan_in);
            for (size_t j = 0; j < t->numel; j++)
                d[j] = (float)(std * rng_normal(&r));
        } else if (t->role == TENSOR_LINEAR_WEIGHT ||
                   t->role == TENSOR_LINEAR_BIAS) {
            /* the bias follows its weight in the table */
            int fan_in = m->tensors[t->role == TENSOR_LINEAR_WEIGHT ? i : i - 1]
                             .shape[1];
            double bound = 1.0 / sqrt((double)fan_in);
            for (size_t j = 0; j < t->numel; j++)
                d[j] = (float)(bound * (2.0 * rng_uniform(&r) - 1.0));
        } else {
            float v = t->role == TENSOR_BN_GAMMA || t->role == TENSOR_BN_VAR
                          ? 1.0f
                          : 0.0f;
            for (size_t j = 0; j < t->numel; j++)
                d[j] = v;
        }
    }
}

/* ---- running ----------------------------------------------------------- */

size_t model_activation_bytes(const struct model *m, int max_batch)
{
    const struct model_program *P = m->prog;
    size_t per = P->act_per_image;
    return ((2 * per + m->num_classes) * sizeof(float) +
            P->argmax_per_image * sizeof(int32_t)) *
           (size_t)max_batch;
}

int model_reserve(struct model *m, int max_batch, char *err)
{
    struct model_program *P = m->prog;
    int threads = omp_get_max_threads();
    if (max_batch < 1)
        return abc_errf(err, ABC_EVALUE, "batch size %d < 1", max_batch);
    if (max_batch <= P->max_batch && threads <= P->work_threads) return 0;
    if (max_batch < P->max_batch) max_batch = P->max_batch;
    size_t work = 0, fold = 0;
    for (int i = 0; i < P->nops; i++)
        if (P->ops[i].kind == OP_CONV) {
            struct conv_geom g = P->ops[i].g;
            g.B = max_batch;
            size_t w = conv2d_workspace_floats(&g, threads);
            if (w > work) work = w;
            size_t f = (size_t)g.Cout * (g.Cin * g.K * g.K + 1);
            if (f > fold) fold = f;
        }
    free_arena(P);
    size_t n = P->act_per_image * (size_t)max_batch;
    P->acts = malloc(n * sizeof(float));
    P->dacts = malloc(n * sizeof(float));
    P->stats = malloc((P->stats_floats + 1) * sizeof(float));
    P->work = malloc((work + 1) * sizeof(float));
    P->probs = malloc((size_t)max_batch * m->num_classes * sizeof(float));
    P->fold = malloc((fold + 1) * sizeof(float));
    P->argmax = malloc((P->argmax_per_image * max_batch + 1) * sizeof(int32_t));
    P->ready = malloc((size_t)P->nslots);
    P->grad_ends = malloc(sizeof *P->grad_ends * (size_t)P->nops);
    P->bn_sums = malloc(sizeof *P->bn_sums * (2 * (size_t)P->bn_max_c + 1));
    P->max_batch = max_batch;
    P->work_threads = threads;
    P->work_floats = work;
    if (!P->acts || !P->dacts || !P->stats || !P->work || !P->probs ||
        !P->fold || !P->argmax || !P->ready || !P->grad_ends || !P->bn_sums) {
        P->max_batch = 0;
        return abc_errf(err, ABC_ENOMEM,
                        "out of memory for activations of %s at batch %d "
                        "(%.1f MiB)",
                        arch_name(m->arch), max_batch,
                        model_activation_bytes(m, max_batch) / 1048576.0);
    }
    return 0;
}

static float *act(const struct model_program *P, int s)
{
    if (s == 0) return (float *)P->x;
    return P->acts + P->slots[s].off * (size_t)P->max_batch;
}

static float *dact(const struct model_program *P, int s)
{
    if (s == 0) return NULL; /* no gradient for the input */
    while (P->slots[s].grad_alias >= 0)
        s = P->slots[s].grad_alias;
    return P->dacts + P->slots[s].off * (size_t)P->max_batch;
}

float *model_tensor_data(const struct model *m, const struct tensor_info *t)
{
    return (t->is_buffer ? m->buffers : m->params) + t->offset;
}

static float *param(const struct model *m, int t)
{
    return model_tensor_data(m, &m->tensors[t]);
}

static float *grad(const struct model *m, int t)
{
    return m->grads + m->tensors[t].offset;
}

/* Op i + 1 is a ReLU over op i's output, in place: a residual add's. */
static int relu_follows(const struct model_program *P, int i, int nops)
{
    return i + 1 < nops && P->ops[i + 1].kind == OP_RELU &&
           P->ops[i + 1].in == P->ops[i].out;
}

/* m->bn_sum over v[0..n), unless an earlier sum failed (v then stays this
 * rank's own; the error stays in bn_sum_rc). */
static void bn_sum_call(struct model *m, double *v, int n)
{
    if (m->bn_sum_rc) return;
    m->bn_sum_rc = m->bn_sum(m->bn_sum_ctx, v, n);
}

/* Training forward of BN op o with synchronized statistics (m->bn_sum):
 * the global batch's mean from every rank's value sums and counts, then
 * its variance from every rank's sums of squared deviations from that
 * mean (two passes: no cancellation); the same on every rank. Written to
 * out, plus res before the ReLU when res is not NULL (o->add_fused). */
static void bn_forward_sync(struct model *m, const struct op *o, int B,
                            float *out, const float *res)
{
    struct model_program *P = m->prog;
    const struct slot *si = &P->slots[o->in];
    const int C = si->c, HW = si->h * si->w;
    const float *in = act(P, o->in);
    float *mean = P->stats + o->aux, *invstd = mean + C;
    double *s = P->bn_sums; /* 2 * C + 1 */
    batchnorm_sums(s, NULL, in, NULL, B, C, HW);
    s[C] = (double)B * HW;
    bn_sum_call(m, s, C + 1);
    const double n = s[C];
    for (int c = 0; c < C; c++)
        mean[c] = (float)(s[c] / n);
    batchnorm_sums(s, s + C, in, mean, B, C, HW);
    bn_sum_call(m, s, 2 * C);
    batchnorm_stats(mean, invstd, param(m, o->rm), param(m, o->rv), mean, s,
                    s + C, n, C, m->bn_momentum, m->bn_eps);
    batchnorm_apply(out, in, res, mean, invstd, param(m, o->w), param(m, o->b),
                    B, C, HW, o->relu || res);
}

/* Backward of BN op o after bn_forward_sync: gamma's and beta's gradients
 * from this rank's images (the gradient sum over the ranks adds them up
 * later), the input gradient's channel means from every rank's sums,
 * weighted by m->bn_shard_weight: the global batch's means in the scale of
 * this rank's loss. */
static void bn_backward_sync(struct model *m, const struct op *o, int B,
                             float *din, const float *dout, int acc)
{
    struct model_program *P = m->prog;
    const struct slot *si = &P->slots[o->in];
    const int C = si->c, HW = si->h * si->w;
    const float *in = act(P, o->in), *mean = P->stats + o->aux,
                *invstd = mean + C;
    const float *relu_out = o->relu ? act(P, o->out) : NULL;
    double *s = P->bn_sums;
    batchnorm_backward_sums(s, s + C, grad(m, o->w), grad(m, o->b), dout,
                            relu_out, in, mean, invstd, B, C, HW);
    if (!din) return; /* alike on every rank: the same model */
    for (int i = 0; i < 2 * C; i++)
        s[i] *= (double)m->bn_shard_weight;
    bn_sum_call(m, s, 2 * C);
    batchnorm_backward_input(din, dout, relu_out, in, mean, invstd,
                             param(m, o->w), s, s + C, (double)B * HW, B, C, HW,
                             acc);
}

/* Eval forward of conv op o and the BN op bn reading its output, fused:
 * the BN's affine map folded into the conv's weights and a bias (in
 * P->fold), its ReLU into the conv's output pass, written to out (the
 * BN's output slot). With res (bn->add_fused), out = max(. + res, 0): the
 * residual add and its ReLU in the same pass, out the add's slot. The
 * conv's own output slot is not written. */
static void conv_bn_eval(struct model *m, const struct op *o,
                         const struct op *bn, int B, float *out,
                         const float *res)
{
    struct model_program *P = m->prog;
    struct conv_geom g = o->g;
    g.B = B;
    const size_t ckk = (size_t)g.Cin * g.K * g.K;
    const float *w = param(m, o->w), *gamma = param(m, bn->w),
                *beta = param(m, bn->b), *rm = param(m, bn->rm),
                *rv = param(m, bn->rv);
    float *wf = P->fold, *bias = P->fold + (size_t)g.Cout * ckk;
    for (int c = 0; c < g.Cout; c++) {
        /* the scale and shift batchnorm_forward uses in eval mode */
        float is = (float)(1.0 / sqrt((double)rv[c] + (double)m->bn_eps));
        float sc = gamma[c] * is;
        for (size_t k = 0; k < ckk; k++)
            wf[c * ckk + k] = w[c * ckk + k] * sc;
        bias[c] = beta[c] - rm[c] * sc;
    }
    if (res)
        conv2d_bias_add_relu_forward(out, act(P, o->in), wf, bias, res, &g,
                                     P->work);
    else
        (bn->relu ? conv2d_bias_relu_forward
                  : conv2d_forward)(out, act(P, o->in), wf, bias, &g, P->work);
}

/* Runs ops [0, nops) of the program over x (the caller checked B). fold:
 * in eval mode, fuse each conv with the BN after it (conv_bn_eval). A
 * residual add and the ReLU after it always run as one pass. */
static void run_ops(struct model *m, const float *x, int B, int training,
                    int nops, int fold)
{
    struct model_program *P = m->prog;
    P->x = x;
    P->B = B;
    P->bn_synced = training && m->bn_sum;
    for (int i = 0; i < nops; i++) {
        struct op *o = &P->ops[i];
        const struct slot *si = &P->slots[o->in], *so = &P->slots[o->out];
        float *in = act(P, o->in), *out = act(P, o->out);
        switch (o->kind) {
        case OP_CONV: {
            if (fold && !training && i + 1 < nops &&
                P->ops[i + 1].kind == OP_BN && P->ops[i + 1].in == o->out) {
                const struct op *bn = &P->ops[i + 1];
                if (bn->add_fused && i + 3 < nops) {
                    /* the add and its ReLU are in this run: one pass */
                    const struct op *a = &P->ops[i + 2];
                    conv_bn_eval(m, o, bn, B, act(P, a->out), act(P, a->in2));
                    i += 3;
                    break;
                }
                conv_bn_eval(m, o, bn, B, act(P, bn->out), NULL);
                i++;
                break;
            }
            struct conv_geom g = o->g;
            g.B = B;
            conv2d_forward(out, in, param(m, o->w), NULL, &g, P->work);
            break;
        }
        case OP_BN: {
            float *mean = P->stats + o->aux;
            if (o->add_fused && i + 2 < nops) {
                /* the add and its ReLU are in this run: one pass */
                const struct op *a = &P->ops[i + 1];
                float *y = act(P, a->out);
                const float *res = act(P, a->in2);
                if (P->bn_synced)
                    bn_forward_sync(m, o, B, y, res);
                else
                    batchnorm_add_relu_forward(
                        y, mean, mean + si->c, in, res, param(m, o->w),
                        param(m, o->b), param(m, o->rm), param(m, o->rv), B,
                        si->c, si->h * si->w, m->bn_momentum, m->bn_eps,
                        training);
                i += 2;
                break;
            }
            if (P->bn_synced) {
                bn_forward_sync(m, o, B, out, NULL);
                break;
            }
            (o->relu ? batchnorm_relu_forward : batchnorm_forward)(
                out, mean, mean + si->c, in, param(m, o->w), param(m, o->b),
                param(m, o->rm), param(m, o->rv), B, si->c, si->h * si->w,
                m->bn_momentum, m->bn_eps, training);
            break;
        }
        case OP_RELU:
            relu_forward(out, in, si->size * B);
            break;
        case OP_MAXPOOL:
            maxpool_forward(out, P->argmax + o->aux * (size_t)P->max_batch, in,
                            B, si->c, si->h, si->w, o->k, o->stride);
            break;
        case OP_GAP:
            avgpool_forward(out, in, B, si->c, si->h * si->w);
            break;
        case OP_LINEAR:
            linear_forward(out, in, param(m, o->w), param(m, o->b), B,
                           (int)si->size, so->c);
            break;
        case OP_ADD:
            if (relu_follows(P, i, nops)) {
                add_relu_forward(out, in, act(P, o->in2), si->size * B);
                i++;
                break;
            }
            add_forward(out, in, act(P, o->in2), si->size * B);
            break;
        case OP_SHORTCUT:
            shortcut_forward(out, in, B, si->c, si->h, si->w, so->c, o->stride);
            break;
        }
    }
}

float model_forward(struct model *m, const float *x, const int *labels, int B,
                    int training, int *correct)
{
    struct model_program *P = m->prog;
    if (B < 1 || B > P->max_batch || omp_get_max_threads() > P->work_threads)
        return NAN; /* model_reserve was not called for this batch/threads */
    P->labels = labels;
    P->trained = training && labels;
    run_ops(m, x, B, training, P->nops, m->fold_bn_eval);
    if (!labels) return 0.0f;
    int corr = 0;
    float loss = softmax_xent_forward(P->probs, act(P, P->logits), labels, B,
                                      m->num_classes, &corr);
    if (correct) *correct += corr;
    return loss;
}

const float *model_logits(const struct model *m)
{
    return act(m->prog, m->prog->logits);
}

void model_backward(struct model *m)
{
    struct model_program *P = m->prog;
    if (!P->trained) return;
    int B = P->B;
    memset(P->ready, 0, (size_t)P->nslots);
    softmax_xent_backward(dact(P, P->logits), P->probs, P->labels, B,
                          m->num_classes);
    P->ready[P->logits] = 1;
    /* grad_ready: after op i, every gradient at or past the end of the
     * last parameter of ops 0..i-1 is final (ends[i], a prefix maximum) */
    size_t *ends = NULL;
    if (m->grad_ready) {
        ends = P->grad_ends;
        size_t e = 0;
        for (int i = 0; i < P->nops; i++) {
            ends[i] = e;
            const struct op *o = &P->ops[i];
            int ts[2] = {o->w, o->b};
            for (int k = 0; k < 2; k++)
                if (ts[k] >= 0 && !m->tensors[ts[k]].is_buffer) {
                    size_t end =
                        m->tensors[ts[k]].offset + m->tensors[ts[k]].numel;
                    if (end > e) e = end;
                }
        }
    }
    for (int i = P->nops - 1; i >= 0; i--) {
        struct op *o = &P->ops[i];
        const struct slot *si = &P->slots[o->in], *so = &P->slots[o->out];
        float *din = dact(P, o->in), *dout = dact(P, o->out);
        int acc = P->ready[o->in];
        P->ready[o->in] = 1;
        switch (o->kind) {
        case OP_CONV: {
            struct conv_geom g = o->g;
            g.B = B;
            conv2d_backward(din, grad(m, o->w), NULL, dout, act(P, o->in),
                            param(m, o->w), &g, P->work, acc);
            break;
        }
        case OP_BN: {
            if (P->bn_synced && m->bn_sum) {
                bn_backward_sync(m, o, B, din, dout, acc);
                break;
            }
            float *mean = P->stats + o->aux;
            if (o->relu)
                batchnorm_relu_backward(din, grad(m, o->w), grad(m, o->b), dout,
                                        act(P, o->out), act(P, o->in), mean,
                                        mean + si->c, param(m, o->w), B, si->c,
                                        si->h * si->w, acc);
            else
                batchnorm_backward(din, grad(m, o->w), grad(m, o->b), dout,
                                   act(P, o->in), mean, mean + si->c,
                                   param(m, o->w), B, si->c, si->h * si->w,
                                   acc);
            break;
        }
        case OP_RELU:
            /* a residual add's ReLU: the add's backward masks (below) */
            if (i > 0 && P->ops[i - 1].kind == OP_ADD &&
                relu_follows(P, i - 1, P->nops))
                break;
            relu_backward(din, dout, act(P, o->out), si->size * B, 0);
            break;
        case OP_MAXPOOL:
            maxpool_backward(din, dout,
                             P->argmax + o->aux * (size_t)P->max_batch, B,
                             si->c, si->h, si->w, o->k, o->stride, acc);
            break;
        case OP_GAP:
            avgpool_backward(din, dout, B, si->c, si->h * si->w, acc);
            break;
        case OP_LINEAR:
            linear_backward(din, grad(m, o->w), grad(m, o->b), dout,
                            act(P, o->in), param(m, o->w), B, (int)si->size,
                            so->c, acc);
            break;
        case OP_ADD: {
            /* an input aliased to the output already holds its gradient
             * (and no other reader wrote it: acc is 0) */
            float *db = dact(P, o->in2);
            int acc2 = P->ready[o->in2];
            P->ready[o->in2] = 1;
            if (relu_follows(P, i, P->nops))
                add_relu_backward(din == dout ? NULL : din,
                                  db == dout ? NULL : db, dout, act(P, o->out),
                                  si->size * B, acc, acc2);
            else
                add_backward(din == dout ? NULL : din, db == dout ? NULL : db,
                             dout, si->size * B, acc, acc2);
            break;
        }
        case OP_SHORTCUT:
            shortcut_backward(din, dout, B, si->c, si->h, si->w, so->c,
                              o->stride, acc);
            break;
        }
        if (ends && (o->w >= 0 || o->b >= 0))
            m->grad_ready(m->grad_ready_ctx, ends[i]);
    }
}

void model_zero_grad(struct model *m)
{
    memset(m->grads, 0, m->nparams * sizeof(float));
}

int64_t model_macs(const struct model *m)
{
    int64_t s = 0;
    for (int i = 0; i < m->nlayers; i++)
        s += m->layers[i].macs;
    return s;
}

int64_t model_param_count(const struct model *m)
{
    return (int64_t)m->nparams;
}

struct tensor_info *model_find_tensor(const struct model *m, const char *name)
{
    for (int i = 0; i < m->ntensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

/* ---- per-layer access (LASSO channel pruning) --------------------------- */

/* The op of layer row `layer`: the layer table gets one row per conv and
 * linear op, in program order, so row l is the l-th such op. */
static int layer_op(const struct model *m, int layer)
{
    const struct model_program *P = m->prog;
    for (int i = 0, l = 0; i < P->nops; i++) {
        enum op_kind k = P->ops[i].kind;
        if (k != OP_CONV && k != OP_LINEAR) continue;
        if (l++ == layer) return i;
    }
    return -1;
}

int model_forward_to(struct model *m, const float *x, int B, int layer,
                     int training, char *err)
{
    struct model_program *P = m->prog;
    if (layer < 0 || layer >= m->nlayers)
        return abc_errf(err, ABC_EVALUE, "%s: layer %d, expected 0..%d",
                        arch_name(m->arch), layer, m->nlayers - 1);
    if (B < 1 || B > P->max_batch || omp_get_max_threads() > P->work_threads)
        return abc_errf(err, ABC_EVALUE,
                        "%s: batch %d with %d threads, reserved %d with %d "
                        "(call model_reserve)",
                        arch_name(m->arch), B, omp_get_max_threads(),
                        P->max_batch, P->work_threads);
    P->labels = NULL;
    P->trained = 0; /* backward needs a whole training forward */
    run_ops(m, x, B, training, layer_op(m, layer) + 1, 0);
    return 0;
}

int model_layer_io(const struct model *m, int layer, struct model_layer_io *io,
                   char *err)
{
    memset(io, 0, sizeof *io);
    int i = layer >= 0 && layer < m->nlayers ? layer_op(m, layer) : -1;
    if (i < 0)
        return abc_errf(err, ABC_EVALUE, "%s: layer %d, expected 0..%d",
                        arch_name(m->arch), layer, m->nlayers - 1);
    const struct model_program *P = m->prog;
    const struct op *o = &P->ops[i];
    const struct slot *si = &P->slots[o->in], *so = &P->slots[o->out];
    if (P->max_batch > 0 && P->B > 0) {
        io->in = act(P, o->in);
        io->out = act(P, o->out);
        io->B = P->B;
    }
    io->in_c = si->c, io->in_h = si->h, io->in_w = si->w;
    io->out_c = so->c, io->out_h = so->h, io->out_w = so->w;
    if (o->kind == OP_CONV) {
        io->k = o->g.K, io->stride = o->g.stride, io->pad = o->g.pad;
    } else { /* linear over the flattened input, as a 1x1 "conv" */
        io->in_c = (int)si->size, io->in_h = io->in_w = 1;
        io->k = io->stride = 1, io->pad = 0;
    }
    io->weight = o->w;
    io->bias = o->b;
    return 0;
}

int model_layer_producing(const struct model *m, int j)
{
    for (int l = 0; l < m->nlayers; l++)
        if (m->layers[l].prunable == j) return l;
    return -1;
}

int model_layer_consuming(const struct model *m, int j)
{
    if (j < 0) return -1;
    const struct model_program *P = m->prog;
    for (int i = 0, l = 0; i < P->nops; i++) {
        const struct op *o = &P->ops[i];
        if (o->kind != OP_CONV && o->kind != OP_LINEAR) continue;
        if (m->tensors[o->w].prune_in == j) return l;
        l++;
    }
    return -1;
}

/* ---- read-only view of the program -------------------------------------- */

int model_op_count(const struct model *m)
{
    return m->prog->nops;
}

int model_op_get(const struct model *m, int i, struct model_op_info *info,
                 char *err)
{
    memset(info, 0, sizeof *info);
    const struct model_program *P = m->prog;
    if (i < 0 || i >= P->nops)
        return abc_errf(err, ABC_EVALUE, "%s: op %d, expected 0..%d",
                        arch_name(m->arch), i, P->nops - 1);
    const struct op *o = &P->ops[i];
    const struct slot *si = &P->slots[o->in], *so = &P->slots[o->out];
    static const enum model_op_kind kinds[] = {
        [OP_CONV] = MODEL_OP_CONV, [OP_BN] = MODEL_OP_BN,
        [OP_RELU] = MODEL_OP_RELU, [OP_MAXPOOL] = MODEL_OP_MAXPOOL,
        [OP_GAP] = MODEL_OP_GAP,   [OP_LINEAR] = MODEL_OP_LINEAR,
        [OP_ADD] = MODEL_OP_ADD,   [OP_SHORTCUT] = MODEL_OP_SHORTCUT,
    };
    info->kind = kinds[o->kind];
    info->in = o->in, info->in2 = o->in2, info->out = o->out;
    info->in_c = si->c, info->in_h = si->h, info->in_w = si->w;
    info->out_c = so->c, info->out_h = so->h, info->out_w = so->w;
    info->weight = o->w, info->bias = o->b;
    info->mean = o->rm, info->var = o->rv;
    info->relu = o->relu;
    if (o->kind == OP_CONV)
        info->k = o->g.K, info->stride = o->g.stride, info->pad = o->g.pad;
    else if (o->kind == OP_MAXPOOL || o->kind == OP_SHORTCUT)
        info->k = o->k, info->stride = o->stride;
    return 0;
}

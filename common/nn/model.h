/* model.h - CNNs built from an architecture and a structure vector (the
 * channels kept in each prunable layer), run as a flat program of layer ops
 * over one activation arena. Parameters, gradients and BN buffers are each
 * ONE allocation with named tensors at offsets (llm.c style), so the
 * optimizer is one flat loop and checkpoints walk one table.
 * Architectures (CIFAR style, input shape from the dataset):
 *   smallnet  conv(16)-bn-relu-pool, conv(32)-bn-relu-pool, conv(64)-bn-relu,
 *             gap, fc
 *   vgg16     13 conv-bn-relu (4 max-pools), global avg pool, fc 512->classes
 *   resnet20/56/110  basic blocks 16/32/64, option-A shortcuts, gap, fc
 * Prunable layers: every conv of smallnet/vgg16; in ResNets the first conv of
 * every block (its inner width), so residual sums keep their shapes. */
#ifndef ABC_MODEL_H
#define ABC_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "nn/layers.h"

enum arch {
    ARCH_SMALLNET,
    ARCH_VGG16,
    ARCH_RESNET20,
    ARCH_RESNET56,
    ARCH_RESNET110,
    ARCH_COUNT
};

/* "smallnet", "vgg16", ... */
const char *arch_name(enum arch a);
/* Parses an architecture name. Returns 0, or -1 if unknown. */
int arch_parse(const char *name, enum arch *out);
/* Number of prunable layers of a; fills full[] (may be NULL) with their
 * unpruned widths. */
int arch_prunable(enum arch a, int *full);

#define MODEL_NAME_LEN 48
#define MODEL_MAX_DIMS 4

/* One named tensor of the model: a trainable parameter (in params/grads) or
 * a buffer (BN running statistics, in buffers). prune_out / prune_in name
 * the prunable layer whose kept channels index dimension 0 / 1 (-1: none),
 * which is what slicing a pretrained model into a pruned one needs. */
/* What a tensor is, so that consumers never parse names. */
enum tensor_role {
    TENSOR_CONV_WEIGHT,   /* (cout, cin, k, k) */
    TENSOR_LINEAR_WEIGHT, /* (out, in) */
    TENSOR_LINEAR_BIAS,   /* (out) */
    TENSOR_BN_GAMMA,      /* (C), trainable */
    TENSOR_BN_BETA,       /* (C), trainable */
    TENSOR_BN_MEAN,       /* (C), buffer: running mean */
    TENSOR_BN_VAR,        /* (C), buffer: running (unbiased) variance */
};

struct tensor_info {
    char name[MODEL_NAME_LEN];
    enum tensor_role role;
    int ndim;
    int shape[MODEL_MAX_DIMS];
    size_t numel;
    size_t offset; /* into params (and grads) or into buffers */
    int is_buffer;
    int prune_out, prune_in;
};

/* One row of the per-layer table (conv and linear layers). */
struct layer_info {
    char name[MODEL_NAME_LEN];
    int cin, cout, k, stride, hout, wout;
    int64_t macs;   /* multiply-accumulates per image */
    int64_t params; /* weights + bias + the following BN's gamma/beta */
    int prunable;   /* index of the prunable layer, or -1 */
};

struct model_program; /* the ops and activation slots (model.c) */

struct model {
    enum arch arch;
    int in_c, in_h, in_w, num_classes;
    int nprunable;
    int *channels; /* kept channels per prunable layer */
    int *full;     /* unpruned width per prunable layer */

    int ntensors;
    struct tensor_info *tensors;
    size_t nparams, nbuffers;
    float *params, *grads, *buffers;

    float bn_momentum, bn_eps;
    /* Eval forwards (model_forward, training 0) fold each BN into the conv
     * before it and run them as one pass (default 1). The conv's own
     * output is then not stored, so model_layer_io's `out` is only valid
     * after a training forward, model_forward_to, or with this set to 0. */
    int fold_bn_eval;
    /* Optional (NULL: none): model_backward calls grad_ready(ctx, lo)
     * after each layer with parameters, once grads[lo, nparams) holds its
     * final values (lo only decreases), so a data-parallel sum can start
     * on them while the backward pass goes on. */
    void (*grad_ready)(void *ctx, size_t lo);
    void *grad_ready_ctx;
    /* Optional (NULL: every forward normalises with its own batch's
     * statistics): synchronized BatchNorm for data-parallel training.
     * bn_sum(ctx, v, n) replaces v[0..n) by its sum over the ranks (the
     * same bits on every rank) and returns 0 or an error. In a training
     * forward each BN op sums its channels' value sums and counts, then
     * the squared deviations from that mean, so that it normalises with
     * the global batch's mean and biased variance (and updates the
     * running statistics with them); model_backward sums the input
     * gradient's channel sums, each rank's weighted by bn_shard_weight
     * (its share k/B of the global batch: its loss is the mean over its
     * own k images). Three sums per BN layer and step, the same on every
     * rank (they run the same model); keep it set from the training
     * forward to its model_backward. Eval forwards never sum. The first error
     * is kept in bn_sum_rc (0 when none; the caller resets it) and no sum is
     * tried after it: the pass completes with this rank's own sums and its
     * results must be discarded. */
    int (*bn_sum)(void *ctx, double *v, int n);
    void *bn_sum_ctx;
    float bn_shard_weight;
    int bn_sum_rc;

    int nlayers;
    struct layer_info *layers;

    struct model_program *prog;
};

/* Builds a model. channels: kept channels per prunable layer (each in
 * 1..full width), or NULL for the full model. Weights are zero until
 * model_init_weights or a checkpoint fills them. Returns 0 or an error
 * (bad structure, bad input shape, no memory) with a message in err. */
int model_create(struct model **out, enum arch arch, const int *channels,
                 int in_c, int in_h, int in_w, int num_classes, char *err);
void model_destroy(struct model *m);

/* MACs per image and parameter count of the model model_create would build,
 * from its shape alone (no weight memory: cheap enough for the bisections
 * of FLOPs targeting). Either output may be NULL. Returns 0 or
 * model_create's error. */
int model_shape_count(enum arch arch, const int *channels, int in_c, int in_h,
                      int in_w, int num_classes, int64_t *macs, int64_t *params,
                      char *err);

/* Kaiming-normal (fan_in, ReLU gain) conv weights, PyTorch's default
 * uniform init for the classifier, BN gamma 1, beta 0, running mean 0,
 * running var 1. Deterministic in seed. */
void model_init_weights(struct model *m, uint64_t seed);

/* Allocates activations for batches of up to max_batch images (idempotent
 * for a smaller or equal size). Returns 0 or ABC_ENOMEM. */
int model_reserve(struct model *m, int max_batch, char *err);
/* Bytes the activation arena takes for max_batch images. */
size_t model_activation_bytes(const struct model *m, int max_batch);

/* Forward pass over x (B,in_c,in_h,in_w), B <= reserved batch. training
 * selects batch-statistics BN (and keeps what backward needs). If labels is
 * not NULL, returns the mean cross-entropy loss and adds the number of
 * correct predictions to *correct (may be NULL); else returns 0. */
float model_forward(struct model *m, const float *x, const int *labels, int B,
                    int training, int *correct);
/* Logits (B,num_classes) of the last forward. */
const float *model_logits(const struct model *m);
/* Backward of the last training forward (which must have had labels):
 * ADDS parameter gradients into m->grads. */
void model_backward(struct model *m);
void model_zero_grad(struct model *m);

/* The forward pass of model_forward (no labels, no loss) stopped right after
 * the conv or linear op of layer row `layer` (0..nlayers-1): that layer's
 * input and output are then in the arena (model_layer_io), later ops have
 * not run. Same numbers as the full forward's up to there. Leaves nothing
 * for model_backward. Returns 0, or ABC_EVALUE for a bad layer or a batch
 * (or thread count) model_reserve did not reserve. */
int model_forward_to(struct model *m, const float *x, int B, int layer,
                     int training, char *err);

/* Where layer row `layer`'s input and output lie after the last forward
 * (model_forward, or model_forward_to that reached the layer; an eval
 * model_forward stores conv outputs only with fold_bn_eval 0), and its
 * geometry. in/out point into the model's activation arena (valid until the
 * next forward or model_reserve; NULL before any forward): in is
 * (B,in_c,in_h,in_w), out (B,out_c,out_h,out_w) is the conv output before
 * its BN (convs have no bias), or the linear output with its bias added. A
 * linear layer is described as a 1x1 conv over in_c = its input size
 * (in_h = in_w = out_h = out_w = 1). weight, bias: tensor indices (bias -1
 * for convs); the weight is (out_c, in_c, k, k) or (out_c, in_c). */
struct model_layer_io {
    const float *in, *out;
    int B, in_c, in_h, in_w, out_c, out_h, out_w;
    int k, stride, pad;
    int weight, bias;
};
/* Fills io. Returns 0, or ABC_EVALUE for a bad layer. */
int model_layer_io(const struct model *m, int layer, struct model_layer_io *io,
                   char *err);

/* Layer row of the conv whose output channels are prunable layer j, and of
 * the layer reading them (the next conv in smallnet/vgg16, the classifier
 * after the last one, the block's second conv in ResNets). -1 if none. */
int model_layer_producing(const struct model *m, int j);
int model_layer_consuming(const struct model *m, int j);

/* ---- read-only view of the program (exporters: ONNX) -------------------
 * A model runs as a flat list of ops over activation slots. Slot 0 is the
 * input image (in_c,in_h,in_w); op i reads slot in (and in2 for an add) and
 * writes slot out; ops run in list order and the last op writes the logits
 * (num_classes,1,1). Every op but RELU writes a new slot; a RELU rewrites
 * its input (in == out). Per image, slot shapes are (c,h,w). */
enum model_op_kind {
    MODEL_OP_CONV,     /* weight (cout,cin,k,k), no bias; stride, pad */
    MODEL_OP_BN,       /* eval: (x - mean) / sqrt(var + bn_eps) * gamma +
                          beta, then max(.,0) when relu is set */
    MODEL_OP_RELU,     /* max(x, 0) */
    MODEL_OP_MAXPOOL,  /* k x k window, stride, no padding, floor */
    MODEL_OP_GAP,      /* global average pool to (c,1,1) */
    MODEL_OP_LINEAR,   /* over the flattened input: weight (out,in), bias */
    MODEL_OP_ADD,      /* in + in2 */
    MODEL_OP_SHORTCUT, /* option A: out[co] = in[co - (out_c - in_c) / 2]
                          sampled at (oh*stride, ow*stride) where that input
                          channel exists, else 0 */
};

struct model_op_info {
    enum model_op_kind kind;
    int in, in2, out;                          /* slots; in2 -1 but for ADD */
    int in_c, in_h, in_w, out_c, out_h, out_w; /* shapes of in and out */
    int weight, bias;   /* tensor indices (conv/linear weight and bias, bn gamma
                           and beta), -1 where the op has none */
    int mean, var;      /* bn running mean and variance tensors, else -1 */
    int k, stride, pad; /* conv and maxpool window; shortcut stride */
    int relu;           /* bn: a ReLU is fused in */
};

/* Number of ops in m's program. */
int model_op_count(const struct model *m);
/* Describes op i (0..model_op_count-1) in info. Returns 0, or ABC_EVALUE
 * for a bad index (info zeroed, message in err). Reads nothing but the
 * model's structure: valid before any forward. */
int model_op_get(const struct model *m, int i, struct model_op_info *info,
                 char *err);

/* Per-image multiply-accumulates of conv and linear layers, and trainable
 * parameter count (conv/linear weights and biases, BN gamma and beta). */
int64_t model_macs(const struct model *m);
int64_t model_param_count(const struct model *m);

/* The tensor named name, or NULL. */
struct tensor_info *model_find_tensor(const struct model *m, const char *name);
/* Pointer to a tensor's data (in params or buffers). */
float *model_tensor_data(const struct model *m, const struct tensor_info *t);

#endif

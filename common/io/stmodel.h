/* stmodel.h - models to and from safetensors files: the tensor names of
 * PyTorch state_dicts mapped onto ours, structures read from the file's
 * metadata or its shapes, and the metadata abcprune writes so that
 * deploy/torch/abcprune_torch.py can rebuild the network.
 *
 * Names understood (each optionally prefixed "module.", DataParallel's):
 *   ours        the model's own tensor names (nn/model.c), which are also
 *               ABCPruner's resnet_cifar.py names ("layer2.0.conv1.weight")
 *   ABCPruner   vgg_cifar.py's nn.Sequential: "features.<i>.*" (conv with
 *   VGG         bias, BN) and "classifier.*"; only for arch vgg16, and only
 *               when __metadata__ "arch" is "vgg16" (see stmodel_import)
 * A conv bias ("<conv>.bias", either naming) is folded into the following
 * BN: bn(conv(x) + b) == bn'(conv(x)) with running_mean' = running_mean - b.
 * "<bn>.num_batches_tracked" is accepted and ignored. */
#ifndef ABC_STMODEL_H
#define ABC_STMODEL_H

#include "io/safetensors.h"
#include "nn/model.h"

/* The metadata keys abcprune writes and reads. */
#define STMODEL_FORMAT "abcprune-safetensors"
#define STMODEL_VERSION "1"

/* What the importer expects: the config's architecture, input shape and
 * classes, and the structure (kept channels per prunable layer) the
 * pipeline will look for, NULL meaning the full model. config names the
 * config file in hints. */
struct stmodel_want {
    enum arch arch;
    int in_c, in_h, in_w, classes;
    const int *channels;
    const char *config;
};

/* What the importer did (for the command's summary line). */
struct stmodel_report {
    int abcpruner_vgg;   /* names were ABCPruner's VGG ones */
    int module_prefix;   /* keys carried DataParallel's "module." */
    int folded;          /* conv biases folded into BN running means */
    int converted;       /* tensors converted from F64/F16/BF16 */
    int meta_structure;  /* 1: the structure came from __metadata__ */
    int ignored_batches; /* num_batches_tracked entries ignored */
};

/* Builds the model w describes from the tensors of f. The file's structure
 * is __metadata__ "structure" (a JSON list, abcprune's own exports) when
 * present, else read from its conv shapes (dimension 0 of the conv
 * producing each prunable layer); it must equal w->channels (or the full
 * widths), else the error says which model.channels to set. __metadata__
 * "arch", "input_shape" and "classes", when present, must match w. Every
 * model tensor must be in f with the model's shape (ours or ABCPruner's
 * naming) and a floating dtype, with finite values; every tensor of f must
 * be used. Errors name f's file and the tensors or fields: missing and
 * unmatched keys are listed (the first few of each, with counts). rep (may
 * be NULL) is filled on success. Returns 0 and *out (caller destroys), or
 * ABC_EFORMAT / ABC_EVALUE / ABC_ENOMEM with *out NULL. */
int stmodel_import(struct model **out, const struct st_file *f,
                   const struct stmodel_want *w, struct stmodel_report *rep,
                   char *err);

/* Writes m to path (atomically) in our naming: every tensor as F32 with
 * its shape, a "<bn>.num_batches_tracked" I64 scalar 0 after each BN's
 * running_var (so a PyTorch module loads it with strict=True), and
 * __metadata__ "format" STMODEL_FORMAT, "format_version" STMODEL_VERSION,
 * "arch", "structure" and "full" (JSON lists of kept and unpruned widths),
 * "input_shape" ("[c, h, w]"), "classes". Returns 0 or an error naming
 * path. */
int stmodel_export(const struct model *m, const char *path, char *err);

#endif

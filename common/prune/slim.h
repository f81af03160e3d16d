/* slim.h - Network Slimming (Liu et al. 2017): the sparsity term s*sum|gamma|
 * added during training, through the training loop's after_backward hook.
 * The structure it leads to (one global |gamma| threshold at a FLOPs
 * target) is budget_threshold (prune/budget.h). */
#ifndef ABC_SLIM_H
#define ABC_SLIM_H

#include "nn/model.h"

/* The sparsity term of a training: s over the prunable layers' BN gammas
 * (the channels pruning can remove) or, with all_bn, over every BN layer's
 * (the paper's setting). */
struct slim_penalty {
    float s;
    int all_bn;
};

/* Adds the subgradient s * sign(gamma) of s * sum |gamma| to m->grads. */
void slim_add_sparsity(struct model *m, float s, int all_bn);

/* A train_io.after_backward hook: ctx is a const struct slim_penalty. */
void slim_after_backward(void *ctx, struct model *m);

/* 1 when ti is a BN gamma. */
int slim_is_bn_gamma(const struct tensor_info *ti);
/* 1 when ti is the BN gamma of a prunable layer (dimension 0 is a prunable
 * layer's channels). */
int slim_is_prunable_gamma(const struct tensor_info *ti);

#endif

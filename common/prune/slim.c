/* slim.c - Network Slimming's sparsity term (see slim.h). */
#include "prune/slim.h"

int slim_is_bn_gamma(const struct tensor_info *ti)
{
    return ti->role == TENSOR_BN_GAMMA;
}

int slim_is_prunable_gamma(const struct tensor_info *ti)
{
    return slim_is_bn_gamma(ti) && ti->prune_out >= 0;
}

void slim_add_sparsity(struct model *m, float s, int all_bn)
{
    for (int t = 0; t < m->ntensors; t++) {
        const struct tensor_info *ti = &m->tensors[t];
        if (!(all_bn ? slim_is_bn_gamma(ti) : slim_is_prunable_gamma(ti)))
            continue;
        const float *g = m->params + ti->offset;
        float *d = m->grads + ti->offset;
        for (size_t i = 0; i < ti->numel; i++)
            d[i] += g[i] > 0 ? s : g[i] < 0 ? -s : 0.0f;
    }
}

void slim_after_backward(void *ctx, struct model *m)
{
    const struct slim_penalty *p = ctx;
    if (p->s > 0) slim_add_sparsity(m, p->s, p->all_bn);
}

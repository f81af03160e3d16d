/* test_slim.c - Network Slimming's sparsity term (common/train.c): exactly
 * s * sign(gamma) lands on the gradients of the prunable layers' BN gammas
 * and nowhere else; it is the gradient of s * sum|gamma| (checked against a
 * central difference of that sum away from 0). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/err.h"
#include "nn/model.h"
#include "prune/slim.h"

static void test_arch(enum arch a, int expect_gammas)
{
    struct model *m;
    char err[ABC_ERRLEN];
    if (model_create(&m, a, NULL, 1, 28, 28, 10, err)) {
        fprintf(stderr, "%s\n", err);
        exit(2);
    }
    model_init_weights(m, 9);
    /* gammas of mixed sign, one exactly 0 */
    int ngamma = 0;
    for (int t = 0; t < m->ntensors; t++) {
        struct tensor_info *ti = &m->tensors[t];
        if (!slim_is_prunable_gamma(ti)) continue;
        ngamma++;
        float *g = model_tensor_data(m, ti);
        for (size_t i = 0; i < ti->numel; i++)
            g[i] = (i % 3 == 0 ? -0.5f : 0.25f) * (float)(i + 1);
        g[1] = 0;
    }
    CHECK(ngamma == expect_gammas, "%s: %d prunable gammas, want %d",
          arch_name(a), ngamma, expect_gammas);
    float *before = malloc(sizeof(float) * m->nparams);
    for (size_t i = 0; i < m->nparams; i++)
        m->grads[i] = before[i] = (float)((i % 7) - 3) * 0.01f;
    const float s = 0.125f;
    slim_add_sparsity(m, s, 0);
    size_t changed = 0, bad = 0;
    for (int t = 0; t < m->ntensors; t++) {
        struct tensor_info *ti = &m->tensors[t];
        if (ti->is_buffer) continue;
        const float *p = m->params + ti->offset;
        for (size_t i = 0; i < ti->numel; i++) {
            size_t k = ti->offset + i;
            float want = before[k];
            if (slim_is_prunable_gamma(ti)) {
                /* d/dg s|g| by central difference (0 at g = 0: the
                 * subgradient chosen) */
                double h = 1e-3, g = p[i];
                double fd =
                    g == 0 ? 0 : (s * fabs(g + h) - s * fabs(g - h)) / (2 * h);
                want = (float)(before[k] + fd);
                changed += p[i] != 0;
            }
            bad += fabsf(m->grads[k] - want) > 1e-6f;
        }
    }
    CHECK(bad == 0, "%s: %zu gradients differ from s*sign(gamma)", arch_name(a),
          bad);
    int total = 0;
    for (int j = 0; j < m->nprunable; j++)
        total += m->channels[j];
    CHECK((int)changed == total - ngamma,
          "%s: %zu gradients changed, want %d (all prunable channels but "
          "the zero gammas)",
          arch_name(a), changed, total - ngamma);
    free(before);
    model_destroy(m);
}

/* all_bn: every BN gamma of ResNet-20 (19 BN layers: the stem, 2 per
 * block) gets s * sign(gamma), the 9 prunable ones and the 10 others; no
 * other parameter moves. */
static void test_all_bn(void)
{
    char err[ABC_ERRLEN];
    struct model *m;
    CHECK(model_create(&m, ARCH_RESNET20, NULL, 1, 28, 28, 10, err) == 0, "%s",
          err);
    model_init_weights(m, 3);
    int nbn = 0, nprun = 0;
    size_t want = 0;
    for (int t = 0; t < m->ntensors; t++) {
        struct tensor_info *ti = &m->tensors[t];
        if (!slim_is_bn_gamma(ti)) continue;
        nbn++;
        nprun += slim_is_prunable_gamma(ti);
        float *g = model_tensor_data(m, ti);
        for (size_t i = 0; i < ti->numel; i++)
            g[i] = i % 2 ? 0.5f : -0.25f;
        want += ti->numel;
    }
    memset(m->grads, 0, sizeof(float) * m->nparams);
    slim_add_sparsity(m, 0.5f, 1);
    size_t moved = 0, right = 0;
    for (size_t i = 0; i < m->nparams; i++)
        moved += m->grads[i] != 0;
    for (int t = 0; t < m->ntensors; t++) {
        struct tensor_info *ti = &m->tensors[t];
        if (!slim_is_bn_gamma(ti)) continue;
        for (size_t i = 0; i < ti->numel; i++)
            right += m->grads[ti->offset + i] == (i % 2 ? 0.5f : -0.5f);
    }
    CHECK(nbn == 19 && nprun == 9, "resnet20: %d BN gammas, %d prunable", nbn,
          nprun);
    CHECK(moved == want && right == want,
          "all_bn: %zu gradients moved, %zu right, want %zu", moved, right,
          want);
    model_destroy(m);
}

int main(void)
{
    test_all_bn();
    test_arch(ARCH_SMALLNET, 3);
    test_arch(ARCH_RESNET20, 9); /* only the blocks' inner BN */
    test_arch(ARCH_VGG16, 13);
    return check_finish("test_slim");
}

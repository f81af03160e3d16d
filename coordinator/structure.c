/* structure.c - colony codes to structures at a FLOPs target (see
 * structure.h). */
#include "structure.h"

#include "colony.h"
#include "core/err.h"
#include "prune/budget.h"

int structure_map_init(struct structure_map *m, const struct model *pre,
                       int nlayers, double flops_target, int min_channels,
                       char *err)
{
    m->pre = pre;
    m->nlayers = nlayers;
    m->min_channels = min_channels < 1 ? 1 : min_channels;
    m->target_macs = 0;
    if (nlayers != pre->nprunable || nlayers > COLONY_MAX_LAYERS)
        return abc_errf(err, ABC_EVALUE,
                        "codes of %d entries for a model of %d prunable "
                        "layers",
                        nlayers, pre->nprunable);
    if (flops_target <= 0) return 0;
    int rc = budget_target_macs(pre, flops_target, &m->target_macs, err);
    if (rc) return rc;
    /* reachable: the uniform shape scales to it or says why not */
    int ch[COLONY_MAX_LAYERS];
    double u[COLONY_MAX_LAYERS];
    for (int j = 0; j < nlayers; j++)
        u[j] = 1.0;
    return budget_shape(pre, u, m->target_macs, m->min_channels, ch, err);
}

int structure_from_code(const struct structure_map *map, const int *code,
                        int *channels, int64_t *macs, int64_t *params,
                        char *err)
{
    const struct model *pre = map->pre;
    for (int j = 0; j < map->nlayers; j++)
        if (code[j] < 1)
            return abc_errf(err, ABC_EVALUE,
                            "code entry %d is %d, expected >= 1", j, code[j]);
    if (map->target_macs > 0) {
        double u[COLONY_MAX_LAYERS];
        for (int j = 0; j < map->nlayers; j++)
            u[j] = (double)code[j];
        int rc = budget_shape(pre, u, map->target_macs, map->min_channels,
                              channels, err);
        if (rc) return rc;
    } else {
        colony_code_to_channels(code, pre->channels, map->nlayers, channels);
        for (int j = 0; j < map->nlayers; j++)
            if (channels[j] < map->min_channels)
                channels[j] = map->min_channels < pre->channels[j]
                                  ? map->min_channels
                                  : pre->channels[j];
    }
    if (!macs && !params) return 0;
    return model_shape_count(pre->arch, channels, pre->in_c, pre->in_h,
                             pre->in_w, pre->num_classes, macs, params, err);
}

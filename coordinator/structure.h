/* structure.h - the one place a colony code becomes a structure: the
 * channels it keeps in every prunable layer of the reference model (the
 * baseline), and its MACs and parameters. The search, the random search,
 * the simulator and the fine-tune all map codes through here.
 *
 * Without a FLOPs target (prune.flops_target 0) code j keeps
 * code[j]/10 of layer j (colony_code_to_channels). With one, a code is a
 * shape: its entries are relative keep ratios, scaled together to the
 * target by budget_shape (as EagleEye does), so every candidate lands
 * within BUDGET_TOLERANCE under the target and keeps its proportions: the
 * targeting neither wastes candidates nor pulls them towards a uniform
 * cut, and every method is compared at the same cost. Codes that differ
 * only by a common factor stand for the same structure. */
#ifndef ABC_STRUCTURE_H
#define ABC_STRUCTURE_H

#include <stdint.h>

#include "nn/model.h"

/* How codes map to structures. The caller owns it and the model. */
struct structure_map {
    const struct model *pre; /* the reference model (baseline): widths,
                                arch, input shape; not owned */
    int nlayers;             /* entries of a code (pre's prunable layers) */
    int min_channels;        /* no layer keeps fewer (prune.min_channels) */
    int64_t target_macs;     /* floor(flops_target * MACs of pre); 0: none */
};

/* Sets *m for codes of nlayers entries over pre. With flops_target > 0 it
 * checks that the target is reachable (min_channels everywhere meets it).
 * Returns 0 or ABC_EVALUE naming the problem. */
int structure_map_init(struct structure_map *m, const struct model *pre,
                       int nlayers, double flops_target, int min_channels,
                       char *err);

/* The structure code stands for: channels[0..nlayers) (caller's buffer),
 * and, when macs / params are not NULL, its MACs and parameters per image
 * (as the workers report them). Deterministic in the code. Returns 0 or
 * an error (a code entry < 1; a structure the model rejects). */
int structure_from_code(const struct structure_map *map, const int *code,
                        int *channels, int64_t *macs, int64_t *params,
                        char *err);

#endif

/* colony_internal.h - what colony.c shares with colony_file.c (the
 * checkpoint codec) and nothing else: the async slot and the role and
 * batch helpers the loader needs to check a file against the state. */
#ifndef ABC_COLONY_INTERNAL_H
#define ABC_COLONY_INTERNAL_H

#include <stdint.h>

#include "colony.h"

/* An async candidate in flight: the candidate, its role, and its code. */
struct colony_slot {
    struct candidate cd;
    uint64_t role;
    int code[]; /* nlayers */
};

/* Roles per cycle: sn employed, sn onlookers, one scout check. */
uint64_t roles_per_cycle(const struct colony_params *p);
/* Roles of the whole async search: max_cycles * roles_per_cycle. */
uint64_t roles_total(const struct colony_params *p);
/* Neighbour roles and scout roles among roles [0, n). */
void role_counts(const struct colony_params *p, uint64_t n, uint64_t *moves,
                 uint64_t *scouts);
/* Fills the batch of the current phase from the state (phase != DONE). */
void generate_batch(struct colony *c);

#endif

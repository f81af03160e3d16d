/* colony.c - the ABC colony (see colony.h): batch generation, greedy
 * updates and the async (steady-state) role sequence.
 *
 * Randomness. Every draw of a phase comes from generators seeded by
 * rng_derive(seed, cycle, phase, label), so a batch is a pure function of
 * the colony state: candidate i's code from label SEED_COLONY_MOVE then i (so
 * one candidate's draws never shift another's), the onlooker placement walk
 * from SEED_COLONY_PLACE, the evaluation seed of candidate i from label i
 * itself. An async role draws the same way, i being its index in its phase; its
 * onlooker placement from SEED_COLONY_PLACE then i. A role made again after a
 * resume draws the same numbers (its state may differ).
 *
 * The colony checkpoint (save and load) is in colony_file.c. */
#include "colony.h"
#include "colony_internal.h"
#include "core/seeds.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

/* rng_derive labels for the draws of a phase; batch indices (the labels
 * of evaluation seeds) stay far below them. */

/* ---------------------------------------------------------------------
 * Parameters
 * ------------------------------------------------------------------- */

int colony_params_check(const struct colony_params *p, char *err)
{
    if (!p) return abc_errf(err, ABC_EVALUE, "colony: no params");
    if (p->nlayers < 1 || p->nlayers > COLONY_MAX_LAYERS)
        return abc_errf(err, ABC_EVALUE, "params.nlayers: %d, expected 1..%d",
                        p->nlayers, COLONY_MAX_LAYERS);
    if (p->K < 1 || p->K > 10)
        return abc_errf(err, ABC_EVALUE,
                        "params.k: %d, expected 1..10 (codes keep k/10 of "
                        "a layer at most)",
                        p->K);
    if (p->sn < 2 || p->sn > COLONY_MAX_SN)
        return abc_errf(err, ABC_EVALUE,
                        "params.sn: %d food sources, expected 2..%d", p->sn,
                        COLONY_MAX_SN);
    if ((int64_t)p->sn * p->nlayers > (1 << 24))
        return abc_errf(err, ABC_EVALUE,
                        "params.sn: %d sources of %d layers, more than 2^24 "
                        "entries",
                        p->sn, p->nlayers);
    if (p->limit < 0)
        return abc_errf(err, ABC_EVALUE, "params.limit: %d, expected >= 0",
                        p->limit);
    if (p->change_dims < 1 || p->change_dims > p->nlayers)
        return abc_errf(err, ABC_EVALUE,
                        "params.change_dims: %d, expected 1..nlayers (%d)",
                        p->change_dims, p->nlayers);
    if (p->max_cycles < 0 || p->max_cycles > COLONY_MAX_CYCLES)
        return abc_errf(err, ABC_EVALUE,
                        "params.max_cycles: %d, expected 0..%d", p->max_cycles,
                        COLONY_MAX_CYCLES);
    if (p->redraw_same != 0 && p->redraw_same != 1)
        return abc_errf(err, ABC_EVALUE,
                        "params.redraw_same: %d, expected 0 or 1",
                        p->redraw_same);
    if (p->random != 0 && p->random != 1)
        return abc_errf(err, ABC_EVALUE, "params.random: %d, expected 0 or 1",
                        p->random);
    if (p->crn != 0 && p->crn != 1)
        return abc_errf(err, ABC_EVALUE, "params.crn: %d, expected 0 or 1",
                        p->crn);
    return 0;
}

int colony_params_match(const struct colony_params *a,
                        const struct colony_params *b, char *err)
{
#define MATCH_INT(f, name)                                                     \
    if (a->f != b->f)                                                          \
        return abc_errf(err, ABC_EVALUE, "params.%s differs: %d vs %d", name,  \
                        a->f, b->f);
    MATCH_INT(nlayers, "nlayers")
    MATCH_INT(K, "k")
    MATCH_INT(sn, "sn")
    MATCH_INT(limit, "limit")
    MATCH_INT(change_dims, "change_dims")
    MATCH_INT(max_cycles, "max_cycles")
    MATCH_INT(redraw_same, "redraw_same")
    MATCH_INT(random, "random")
    MATCH_INT(crn, "crn")
#undef MATCH_INT
    if (a->seed != b->seed)
        return abc_errf(err, ABC_EVALUE, "params.seed differs: %llu vs %llu",
                        (unsigned long long)a->seed,
                        (unsigned long long)b->seed);
    return 0;
}

void colony_cost(const struct colony_params *p, uint64_t *min, uint64_t *max)
{
    uint64_t lo = (uint64_t)p->sn + (uint64_t)p->max_cycles * 2 * p->sn;
    if (min) *min = lo;
    if (max) *max = lo + (uint64_t)p->max_cycles;
}

const char *colony_phase_name(enum colony_phase ph)
{
    switch (ph) {
    case COLONY_INIT:
        return "init";
    case COLONY_EMPLOYED:
        return "employed";
    case COLONY_ONLOOKER:
        return "onlooker";
    case COLONY_SCOUT:
        return "scout";
    case COLONY_DONE:
        return "done";
    case COLONY_ASYNC:
        return "async";
    }
    return "unknown";
}

/* ---------------------------------------------------------------------
 * Creation
 * ------------------------------------------------------------------- */

int colony_create(struct colony **out, const struct colony_params *p, char *err)
{
    if (out) *out = NULL;
    if (!out) return abc_errf(err, ABC_EVALUE, "colony_create: no output");
    int rc = colony_params_check(p, err);
    if (rc) return rc;
    size_t L = (size_t)p->nlayers, sn = (size_t)p->sn;
    struct colony *c = calloc(1, sizeof *c);
    if (!c) return abc_errf(err, ABC_ENOMEM, "colony: out of memory");
    c->p = *p;
    c->phase = COLONY_INIT;
    c->foods = calloc(sn, sizeof *c->foods);
    c->best_code = calloc(L, sizeof *c->best_code);
    c->final_code = calloc(L, sizeof *c->final_code);
    c->batch = calloc(sn, sizeof *c->batch);
    c->results = calloc(sn, sizeof *c->results);
    c->have = calloc(sn, 1);
    c->food_codes = calloc(sn * L, sizeof *c->food_codes);
    c->batch_codes = calloc(sn * L, sizeof *c->batch_codes);
    if (!c->foods || !c->best_code || !c->final_code || !c->batch ||
        !c->results || !c->have || !c->food_codes || !c->batch_codes) {
        colony_destroy(c);
        return abc_errf(err, ABC_ENOMEM,
                        "colony: out of memory for %zu "
                        "sources of %zu layers",
                        sn, L);
    }
    for (size_t i = 0; i < sn; i++) {
        c->foods[i].code = c->food_codes + i * L;
        c->batch[i].code = c->batch_codes + i * L;
    }
    *out = c;
    return 0;
}

void colony_destroy(struct colony *c)
{
    if (!c) return;
    free(c->foods);
    free(c->best_code);
    free(c->final_code);
    free(c->batch);
    free(c->results);
    free(c->have);
    free(c->food_codes);
    free(c->batch_codes);
    free(c->redo);
    for (int i = 0; i < c->nslots; i++)
        free(c->slots[i]);
    free(c->slots);
    free(c);
}

int colony_done(const struct colony *c)
{
    return c->phase == COLONY_DONE;
}

/* ---------------------------------------------------------------------
 * Moves
 * ------------------------------------------------------------------- */

int colony_neighbour_value(int x, int xk, double phi, int K)
{
    double v = trunc((double)x + phi * (double)(x - xk));
    if (!(v >= 1.0)) return 1; /* also catches NaN */
    if (v > (double)K) return K;
    return (int)v;
}

double colony_onlooker_prob(double fit, double max_fit)
{
    if (max_fit <= 0.0) return 1.0;
    return 0.9 * fit / max_fit + 0.1;
}

int colony_neighbour(const struct colony_params *p, const int *codes, int i,
                     struct rng *r, int *out, int *unchanged, int *redraws)
{
    int L = p->nlayers;
    const int *x = codes + (size_t)i * L;
    int k = 0, same = 1;
    int tries = p->redraw_same ? COLONY_MAX_REDRAWS : 1;
    for (int t = 0; t < tries && same; t++) {
        k = (int)rng_below(r, (uint64_t)p->sn - 1);
        if (k >= i) k++;
        const int *xk = codes + (size_t)k * L;
        memcpy(out, x, (size_t)L * sizeof *out);
        /* change_dims distinct positions, uniform over all subsets
         * (selection sampling: layer j is taken with probability
         * still-needed / layers-left). */
        int need = p->change_dims;
        for (int j = 0; j < L && need > 0; j++) {
            if (rng_below(r, (uint64_t)(L - j)) >= (uint64_t)need) continue;
            double phi = 2.0 * rng_uniform(r) - 1.0;
            out[j] = colony_neighbour_value(x[j], xk[j], phi, p->K);
            need--;
        }
        same = memcmp(out, x, (size_t)L * sizeof *out) == 0;
        if (redraws) *redraws = t + (same && t + 1 < tries);
    }
    if (unchanged) *unchanged = same;
    return k;
}

void colony_code_to_channels(const int *code, const int *full, int nlayers,
                             int *out)
{
    for (int j = 0; j < nlayers; j++) {
        int64_t kept = (int64_t)full[j] * code[j] / 10;
        out[j] = kept < 1 ? 1 : (int)kept;
    }
}

/* ---------------------------------------------------------------------
 * Batches
 * ------------------------------------------------------------------- */

static uint64_t phase_seed(const struct colony *c, uint64_t label)
{
    return rng_derive(c->p.seed, (uint64_t)c->cycle, (uint64_t)c->phase, label);
}

/* Fills the fields of cd that depend on where it stands (cycle, phase,
 * index), both forms alike: its evaluation seed, and r seeded with its own
 * move stream (so one candidate's draws never shift another's). */
static void cand_start(const struct colony_params *p, struct candidate *cd,
                       int cycle, enum colony_phase ph, int index, int source,
                       struct rng *r)
{
    cd->cycle = cycle;
    cd->phase = ph;
    cd->index = index;
    cd->source = source;
    cd->partner = -1;
    cd->unchanged = 0;
    cd->redraws = 0;
    cd->seed = rng_derive(p->seed, (uint64_t)cycle, (uint64_t)ph,
                          p->crn ? SEED_COLONY_CRN : (uint64_t)index);
    uint64_t move =
        rng_derive(p->seed, (uint64_t)cycle, (uint64_t)ph, SEED_COLONY_MOVE);
    rng_seed(r, rng_derive(move, (uint64_t)index, 0, 0));
}

/* Starts candidate index of the batch: fills its fields except the code
 * and seeds r with its own move stream. */
static struct candidate *cand_begin(struct colony *c, int index, int source,
                                    struct rng *r)
{
    struct candidate *cd = &c->batch[index];
    cand_start(&c->p, cd, c->cycle, c->phase, index, source, r);
    cd->eval_id = c->next_eval_id + (uint64_t)index;
    return cd;
}

static int *cand_code(struct colony *c, int index)
{
    return c->batch_codes + (size_t)index * c->p.nlayers;
}

static void random_code(const struct colony_params *p, struct rng *r, int *code)
{
    for (int j = 0; j < p->nlayers; j++)
        code[j] = 1 + (int)rng_below(r, (uint64_t)p->K);
}

/* A neighbour of source src as candidate index. */
static void make_neighbour(struct colony *c, int index, int src)
{
    struct rng r;
    struct candidate *cd = cand_begin(c, index, src, &r);
    if (c->p.random) {
        random_code(&c->p, &r, cand_code(c, index));
        return;
    }
    cd->partner =
        colony_neighbour(&c->p, c->food_codes, src, &r, cand_code(c, index),
                         &cd->unchanged, &cd->redraws);
}

/* Fills the batch of the current phase from the state (phase != DONE). */
void generate_batch(struct colony *c)
{
    const struct colony_params *p = &c->p;
    struct rng r;
    int n = 0;
    switch (c->phase) {
    case COLONY_INIT:
        for (n = 0; n < p->sn; n++) {
            cand_begin(c, n, n, &r);
            random_code(p, &r, cand_code(c, n));
        }
        break;
    case COLONY_EMPLOYED:
        for (n = 0; n < p->sn; n++)
            make_neighbour(c, n, n);
        break;
    case COLONY_ONLOOKER: {
        double max_fit = c->foods[0].fitness;
        for (int i = 1; i < p->sn; i++)
            if (c->foods[i].fitness > max_fit) max_fit = c->foods[i].fitness;
        /* The walk ends: the fittest source has p = 1 (or all have). */
        struct rng place;
        rng_seed(&place, phase_seed(c, SEED_COLONY_PLACE));
        for (int i = 0; n < p->sn; i = (i + 1) % p->sn) {
            double pi = colony_onlooker_prob(c->foods[i].fitness, max_fit);
            if (rng_uniform(&place) < pi) make_neighbour(c, n++, i);
        }
        break;
    }
    case COLONY_SCOUT: {
        int s = 0;
        for (int i = 1; i < p->sn; i++)
            if (c->foods[i].trial > c->foods[s].trial) s = i;
        if (c->foods[s].trial >= p->limit) {
            cand_begin(c, 0, s, &r);
            random_code(p, &r, cand_code(c, 0));
            n = 1;
        }
        break;
    }
    case COLONY_DONE:
    case COLONY_ASYNC:
        break;
    }
    c->nbatch = n;
    memset(c->have, 0, (size_t)p->sn);
    c->batch_ready = 1;
}

int colony_next_batch(struct colony *c, const struct candidate **batch, int *n,
                      char *err)
{
    *batch = NULL;
    *n = 0;
    if (c->phase == COLONY_ASYNC)
        return abc_errf(err, ABC_EVALUE,
                        "colony: in the async schedule, no batch "
                        "(colony_async_next)");
    if (c->phase == COLONY_DONE)
        return abc_errf(err, ABC_EVALUE,
                        "colony: the search is done (%d cycles), no batch",
                        c->p.max_cycles);
    if (!c->batch_ready) generate_batch(c);
    *batch = c->batch;
    *n = c->nbatch;
    return 0;
}

int colony_record(struct colony *c, int index, double fitness, char *err)
{
    if (!c->batch_ready)
        return abc_errf(err, ABC_EVALUE,
                        "colony: result for candidate %d, but no batch is "
                        "pending",
                        index);
    if (index < 0 || index >= c->nbatch)
        return abc_errf(err, ABC_EVALUE,
                        "colony: result for candidate %d, but the %s batch "
                        "has %d",
                        index, colony_phase_name(c->phase), c->nbatch);
    if (!isfinite(fitness))
        return abc_errf(err, ABC_EVALUE,
                        "colony: candidate %d (eval %llu): fitness %g is not "
                        "finite",
                        index, (unsigned long long)c->batch[index].eval_id,
                        fitness);
    c->results[index] = fitness;
    c->have[index] = 1;
    return 0;
}

/* Takes candidate cd's fitness f for the best ever when strictly better. */
static void update_best(struct colony *c, const struct candidate *cd, double f)
{
    if (c->has_best && !(f > c->best_fitness)) return;
    memcpy(c->best_code, cd->code, (size_t)c->p.nlayers * sizeof *c->best_code);
    c->best_fitness = f;
    c->best_eval_id = cd->eval_id;
    c->best_seed = cd->seed;
    c->has_best = 1;
}

/* The greedy update of candidate cd (fitness f) on its source: init and
 * scout candidates take it, a neighbour only when strictly fitter; else the
 * source's trial grows. Then the best ever. */
static void take_result(struct colony *c, const struct candidate *cd, double f)
{
    struct colony_food *fd = &c->foods[cd->source];
    int take = cd->phase == COLONY_INIT || cd->phase == COLONY_SCOUT ||
               f > fd->fitness;
    if (take) {
        memcpy(fd->code, cd->code, (size_t)c->p.nlayers * sizeof *fd->code);
        fd->fitness = f;
        fd->trial = 0;
    } else if (fd->trial < INT_MAX) {
        fd->trial++;
    }
    update_best(c, cd, f);
}

int colony_apply(struct colony *c, const double *fitness, char *err)
{
    if (c->phase == COLONY_DONE)
        return abc_errf(err, ABC_EVALUE, "colony: the search is done");
    if (c->phase == COLONY_ASYNC)
        return abc_errf(err, ABC_EVALUE,
                        "colony: in the async schedule, no batch to apply "
                        "(colony_async_apply)");
    if (!c->batch_ready)
        return abc_errf(err, ABC_EVALUE,
                        "colony: no %s batch to apply (colony_next_batch "
                        "first)",
                        colony_phase_name(c->phase));
    for (int i = 0; i < c->nbatch; i++) {
        if (!fitness && !c->have[i])
            return abc_errf(err, ABC_EVALUE,
                            "colony: candidate %d (eval %llu) of the %s "
                            "batch has no result",
                            i, (unsigned long long)c->batch[i].eval_id,
                            colony_phase_name(c->phase));
        double f = fitness ? fitness[i] : c->results[i];
        if (!isfinite(f))
            return abc_errf(err, ABC_EVALUE,
                            "colony: candidate %d (eval %llu): fitness %g is "
                            "not finite",
                            i, (unsigned long long)c->batch[i].eval_id, f);
    }
    for (int i = 0; i < c->nbatch; i++)
        take_result(c, &c->batch[i], fitness ? fitness[i] : c->results[i]);
    c->evaluations += (uint64_t)c->nbatch;
    c->next_eval_id += (uint64_t)c->nbatch;
    c->batch_ready = 0;
    c->nbatch = 0;
    switch (c->phase) {
    case COLONY_INIT:
        c->phase = c->p.max_cycles > 0 ? COLONY_EMPLOYED : COLONY_DONE;
        break;
    case COLONY_EMPLOYED:
        c->phase = COLONY_ONLOOKER;
        break;
    case COLONY_ONLOOKER:
        c->phase = COLONY_SCOUT;
        break;
    case COLONY_SCOUT:
        c->cycle++;
        c->phase = c->cycle < c->p.max_cycles ? COLONY_EMPLOYED : COLONY_DONE;
        break;
    case COLONY_DONE:
    case COLONY_ASYNC:
        break;
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * The async schedule
 * ------------------------------------------------------------------- */

/* Roles per cycle: sn employed, sn onlookers, one scout check. */
uint64_t roles_per_cycle(const struct colony_params *p)
{
    return 2 * (uint64_t)p->sn + 1;
}

uint64_t roles_total(const struct colony_params *p)
{
    return (uint64_t)p->max_cycles * roles_per_cycle(p);
}

/* Where role stands: its cycle, phase and index in the phase. */
static void role_split(const struct colony_params *p, uint64_t role, int *cycle,
                       enum colony_phase *ph, int *index)
{
    uint64_t R = roles_per_cycle(p), k = role % R, sn = (uint64_t)p->sn;
    *cycle = (int)(role / R);
    *ph = k < sn       ? COLONY_EMPLOYED
          : k < 2 * sn ? COLONY_ONLOOKER
                       : COLONY_SCOUT;
    *index = k < sn ? (int)k : k < 2 * sn ? (int)(k - sn) : 0;
}

/* Neighbour roles and scout roles among roles [0, n). */
void role_counts(const struct colony_params *p, uint64_t n, uint64_t *moves,
                 uint64_t *scouts)
{
    uint64_t R = roles_per_cycle(p), rem = n % R, two = 2 * (uint64_t)p->sn;
    *moves = n / R * two + (rem < two ? rem : two);
    *scouts = n / R + (rem > two ? 1 : 0);
}

/* Sets cycle and phase from the oldest role not applied yet (in flight, to
 * make again, or not issued): its cycle, or DONE past the last. */
static void async_advance(struct colony *c)
{
    uint64_t low = c->role_next;
    if (c->nredo > 0 && c->redo[0] < low) low = c->redo[0];
    for (int i = 0; i < c->ninflight; i++)
        if (c->slots[i]->role < low) low = c->slots[i]->role;
    if (low >= roles_total(&c->p)) {
        c->phase = COLONY_DONE;
        c->cycle = c->p.max_cycles;
    } else {
        c->cycle = (int)(low / roles_per_cycle(&c->p));
    }
}

int colony_async_begin(struct colony *c, char *err)
{
    if (c->async || c->phase == COLONY_DONE) return 0;
    if (c->phase == COLONY_INIT)
        return abc_errf(err, ABC_EVALUE,
                        "colony: async begins after the init batch is "
                        "applied");
    if (c->batch_ready)
        return abc_errf(err, ABC_EVALUE,
                        "colony: a %s batch is made; apply it before the "
                        "async schedule begins",
                        colony_phase_name(c->phase));
    uint64_t sn = (uint64_t)c->p.sn;
    uint64_t at = c->phase == COLONY_EMPLOYED   ? 0
                  : c->phase == COLONY_ONLOOKER ? sn
                                                : 2 * sn;
    c->role_next = (uint64_t)c->cycle * roles_per_cycle(&c->p) + at;
    c->walk = 0;
    c->async = 1;
    c->phase = COLONY_ASYNC;
    return 0;
}

int colony_async_inflight(const struct colony *c)
{
    return c->ninflight;
}

/* The source onlooker index of cycle places on: the walk goes on from
 * c->walk, taking source i with probability p_i from the current
 * fitnesses, and ends (the fittest source has p = 1). */
static int onlooker_place(struct colony *c, int cycle, int index)
{
    const struct colony_params *p = &c->p;
    double max_fit = c->foods[0].fitness;
    for (int i = 1; i < p->sn; i++)
        if (c->foods[i].fitness > max_fit) max_fit = c->foods[i].fitness;
    struct rng place;
    rng_seed(&place, rng_derive(rng_derive(p->seed, (uint64_t)cycle,
                                           COLONY_ONLOOKER, SEED_COLONY_PLACE),
                                (uint64_t)index, 0, 0));
    for (int i = c->walk;; i = (i + 1) % p->sn) {
        double pi = colony_onlooker_prob(c->foods[i].fitness, max_fit);
        if (rng_uniform(&place) < pi) {
            c->walk = (i + 1) % p->sn;
            return i;
        }
    }
}

/* The source a scout role replaces, or -1: the largest trial (first on
 * ties) among sources without a scout in flight, if it reached limit. */
static int scout_pick(const struct colony *c)
{
    int s = -1;
    for (int i = 0; i < c->p.sn; i++) {
        int busy = 0;
        for (int k = 0; k < c->ninflight && !busy; k++)
            busy = c->slots[k]->cd.phase == COLONY_SCOUT &&
                   c->slots[k]->cd.source == i;
        if (!busy && (s < 0 || c->foods[i].trial > c->foods[s].trial)) s = i;
    }
    return s >= 0 && c->foods[s].trial >= c->p.limit ? s : -1;
}

/* Makes role's candidate into slot sl. Returns 1, or 0 for a skipped scout
 * (sl unused). */
static int role_make(struct colony *c, uint64_t role, struct colony_slot *sl)
{
    const struct colony_params *p = &c->p;
    struct candidate *cd = &sl->cd;
    int cycle, index;
    enum colony_phase ph;
    struct rng r;
    role_split(p, role, &cycle, &ph, &index);
    int src = index;
    if (ph == COLONY_ONLOOKER) src = onlooker_place(c, cycle, index);
    if (ph == COLONY_SCOUT && (src = scout_pick(c)) < 0) return 0;
    cand_start(p, cd, cycle, ph, index, src, &r);
    cd->code = sl->code;
    if (ph == COLONY_SCOUT || p->random)
        random_code(p, &r, sl->code);
    else
        cd->partner = colony_neighbour(p, c->food_codes, src, &r, sl->code,
                                       &cd->unchanged, &cd->redraws);
    sl->role = role;
    return 1;
}

int colony_async_next(struct colony *c, const struct candidate **cand,
                      char *err)
{
    *cand = NULL;
    if (!c->async)
        return abc_errf(err, ABC_EVALUE,
                        "colony: not in the async schedule (phase %s; "
                        "colony_async_begin)",
                        colony_phase_name(c->phase));
    if (c->phase == COLONY_DONE) return 0;
    if (c->ninflight >= COLONY_MAX_INFLIGHT)
        return abc_errf(err, ABC_EVALUE,
                        "colony: %d candidates in flight, at most %d",
                        c->ninflight, COLONY_MAX_INFLIGHT);
    if (c->ninflight == c->nslots) {
        int n = c->nslots ? 2 * c->nslots : 8;
        struct colony_slot **s = realloc(c->slots, (size_t)n * sizeof *s);
        if (!s) return abc_errf(err, ABC_ENOMEM, "colony: out of memory");
        c->slots = s;
        size_t sz = sizeof **s + (size_t)c->p.nlayers * sizeof(int);
        for (; c->nslots < n; c->nslots++)
            if (!(s[c->nslots] = malloc(sz)))
                return abc_errf(err, ABC_ENOMEM, "colony: out of memory");
    }
    struct colony_slot *sl = c->slots[c->ninflight];
    for (;;) {
        uint64_t role;
        if (c->nredo > 0) {
            role = c->redo[0];
            memmove(c->redo, c->redo + 1, (size_t)--c->nredo * sizeof *c->redo);
        } else if (c->role_next < roles_total(&c->p)) {
            role = c->role_next++;
        } else {
            return 0; /* all issued: results are still to come */
        }
        if (role_make(c, role, sl)) break;
        /* a skipped scout counts as applied: it may end a cycle */
        async_advance(c);
        if (c->phase == COLONY_DONE) return 0;
    }
    sl->cd.eval_id = c->next_eval_id++;
    c->ninflight++;
    *cand = &sl->cd;
    return 1;
}

int colony_async_apply(struct colony *c, uint64_t eval_id, double fitness,
                       char *err)
{
    if (!c->async)
        return abc_errf(err, ABC_EVALUE,
                        "colony: result for eval %llu, but the colony is not "
                        "in the async schedule",
                        (unsigned long long)eval_id);
    int k = 0;
    while (k < c->ninflight && c->slots[k]->cd.eval_id != eval_id)
        k++;
    if (k == c->ninflight)
        return abc_errf(err, ABC_EVALUE,
                        "colony: result for eval %llu, which is not in "
                        "flight (%d are)",
                        (unsigned long long)eval_id, c->ninflight);
    if (!isfinite(fitness))
        return abc_errf(err, ABC_EVALUE,
                        "colony: eval %llu: fitness %g is not finite",
                        (unsigned long long)eval_id, fitness);
    struct colony_slot *sl = c->slots[k];
    take_result(c, &sl->cd, fitness);
    c->evaluations++;
    /* release: the last in-flight slot takes its place */
    c->slots[k] = c->slots[--c->ninflight];
    c->slots[c->ninflight] = sl;
    async_advance(c);
    return 0;
}

int colony_top_codes(const struct colony *c, int k, int *codes)
{
    const struct colony_params *p = &c->p;
    size_t L = (size_t)p->nlayers;
    int n = 0;
    if (!c->has_best || k < 1) return 0;
    memcpy(codes, c->best_code, L * sizeof *codes);
    n = 1;
    unsigned char *used = calloc((size_t)p->sn, 1);
    if (!used) return n;
    while (n < k) {
        int b = -1;
        for (int i = 0; i < p->sn; i++) {
            if (used[i]) continue;
            if (b < 0 || c->foods[i].fitness > c->foods[b].fitness) b = i;
        }
        if (b < 0) break;
        used[b] = 1;
        int dup = 0;
        for (int j = 0; j < n && !dup; j++)
            dup = !memcmp(codes + (size_t)j * L, c->foods[b].code,
                          L * sizeof *codes);
        if (!dup)
            memcpy(codes + (size_t)n++ * L, c->foods[b].code,
                   L * sizeof *codes);
    }
    free(used);
    return n;
}

int colony_set_final(struct colony *c, const int *code, double fitness,
                     uint64_t seed, int candidates, int seeds, char *err)
{
    if (c->phase != COLONY_DONE)
        return abc_errf(err, ABC_EVALUE,
                        "colony: a final choice before the search is done");
    memcpy(c->final_code, code, sizeof(int) * (size_t)c->p.nlayers);
    c->final_fitness = fitness;
    c->final_seed = seed;
    c->final_candidates = candidates;
    c->final_seeds = seeds;
    c->has_final = 1;
    return 0;
}

struct colony_choice colony_chosen(const struct colony *c)
{
    struct colony_choice ch = {c->best_code, c->best_fitness, c->best_seed};
    if (c->has_final)
        ch = (struct colony_choice){c->final_code, c->final_fitness,
                                    c->final_seed};
    return ch;
}

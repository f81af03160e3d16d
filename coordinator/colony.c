/* colony.c - the ABC colony (see colony.h): batch generation, greedy
 * updates, the async (steady-state) role sequence, and the colony
 * checkpoint.
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
 * Checkpoint format, version 1 (sync; version 2, async, below): exactly
 * one msgpack map, nothing after it,
 * str keys, each key below required, none twice, unknown keys are errors:
 *
 *   "format"       str    "abcprune-colony"
 *   "version"      uint   1
 *   "params"       map    "nlayers", "k", "sn", "limit", "change_dims",
 *                         "max_cycles": uint; "seed": uint64;
 *                         "redraw_same": bool; optional "random", "crn":
 *                         bool (written, true, only when set)
 *   "phase"        str    "init", "employed", "onlooker", "scout", "done"
 *   "cycle"        uint   0 in init, max_cycles when done, else below it
 *   "evaluations"  uint   fitnesses applied so far
 *   "next_eval_id" uint   >= evaluations
 *   "foods"        array  empty in init, else sn maps: "code" (array of
 *                         nlayers uints in 1..k), "fitness" (float64,
 *                         finite), "trial" (uint)
 *   "final"        optional, only when done: "code", "fitness" (float64),
 *                  "seed" (uint64), "candidates", "seeds" (uint >= 1): the
 *                  structure chosen by re-evaluating the top codes
 *   "best"         nil in init, else a map: "code", "fitness" (at least
 *                         every source's), "eval_id" (< next_eval_id)
 *   "batch"        nil when no batch was made in this phase, else an array
 *                         of maps: "index", "source", "partner" (int, -1
 *                         for none), "code", "seed", "eval_id", "fitness"
 *                         (nil until recorded, else float64). On load the
 *                         batch is generated again from the state and must
 *                         equal this one; only the fitnesses are taken.
 *
 * Version 2 is written by a colony in the async schedule (version 1 readers
 * refuse it by its version): the same keys plus one, and
 *
 *   "phase"        str    "async", or "done" once every role is applied
 *   "cycle"        uint   the cycle of the oldest role not applied
 *   "batch"        nil
 *   "async"        map    "next_role" (uint, roles issued, at most
 *                         max_cycles*(2sn+1)), "walk" (uint < sn, where the
 *                         next onlooker walk starts), "redo" (array of
 *                         increasing role numbers below next_role: the
 *                         roles in flight at the save, made again first
 *                         after a load). The roles applied (below
 *                         next_role, not in redo) account for the
 *                         evaluations: sn + their moves + up to one per
 *                         scout role.
 *
 * Writers emit keys in this order. Floats are float64, so a loaded colony
 * is bit-identical to the saved one. */
#include "colony.h"
#include "core/seeds.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "core/err.h"
#include "core/fileio.h"
#include "io/mpread.h"
#include "io/mpwrite.h"

/* rng_derive labels for the draws of a phase; batch indices (the labels
 * of evaluation seeds) stay far below them. */

/* Largest colony file colony_load reads (a 4096-layer, 65536-source colony
 * is about 0.6 GB; real ones are kilobytes). */
#define COLONY_MAX_BYTES ((size_t)1 << 30)

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
static void generate_batch(struct colony *c)
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

/* An async candidate in flight: the candidate, its role, and its code. */
struct colony_slot {
    struct candidate cd;
    uint64_t role;
    int code[]; /* nlayers */
};

/* Roles per cycle: sn employed, sn onlookers, one scout check. */
static uint64_t roles_per_cycle(const struct colony_params *p)
{
    return 2 * (uint64_t)p->sn + 1;
}

static uint64_t roles_total(const struct colony_params *p)
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
static void role_counts(const struct colony_params *p, uint64_t n,
                        uint64_t *moves, uint64_t *scouts)
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

/* ---------------------------------------------------------------------
 * Saving
 * ------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Packs the "async" key and map: the roles in flight join the ones still
 * to make again, sorted. Returns 0 or -1. */
static int pack_async(msgpack_packer *pk, const struct colony *c)
{
    size_t n = (size_t)c->nredo + (size_t)c->ninflight;
    uint64_t *redo = malloc((n ? n : 1) * sizeof *redo);
    if (!redo) return -1;
    for (int i = 0; i < c->nredo; i++)
        redo[i] = c->redo[i];
    for (int i = 0; i < c->ninflight; i++)
        redo[c->nredo + i] = c->slots[i]->role;
    qsort(redo, n, sizeof *redo, cmp_u64);
    int rc = mpw_str(pk, "async") != 0 || msgpack_pack_map(pk, 3) != 0 ||
             mpw_kv_u64(pk, "next_role", c->role_next) != 0 ||
             mpw_kv_int(pk, "walk", c->walk) != 0 || mpw_str(pk, "redo") != 0 ||
             msgpack_pack_array(pk, n) != 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = msgpack_pack_uint64(pk, redo[i]) != 0;
    free(redo);
    return rc ? -1 : 0;
}

/* Serialises c into sb. Returns 0 or -1 (out of memory). */
static int pack_colony(msgpack_sbuffer *sb, const struct colony *c)
{
    const struct colony_params *p = &c->p;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    if (msgpack_pack_map(&pk,
                         10 + (c->async ? 1 : 0) + (c->has_final ? 1 : 0)) != 0)
        return -1;
    if (mpw_str(&pk, "format") != 0 || mpw_str(&pk, COLONY_FORMAT) != 0)
        return -1;
    if (mpw_kv_int(&pk, "version",
                   c->async ? COLONY_VERSION_ASYNC : COLONY_VERSION) != 0)
        return -1;

    if (mpw_str(&pk, "params") != 0 ||
        msgpack_pack_map(&pk, 8 + (p->random ? 1 : 0) + (p->crn ? 1 : 0)) !=
            0 ||
        mpw_kv_int(&pk, "nlayers", p->nlayers) != 0 ||
        mpw_kv_int(&pk, "k", p->K) != 0 || mpw_kv_int(&pk, "sn", p->sn) != 0 ||
        mpw_kv_int(&pk, "limit", p->limit) != 0 ||
        mpw_kv_int(&pk, "change_dims", p->change_dims) != 0 ||
        mpw_kv_int(&pk, "max_cycles", p->max_cycles) != 0 ||
        mpw_kv_u64(&pk, "seed", p->seed) != 0 ||
        mpw_str(&pk, "redraw_same") != 0 ||
        (p->redraw_same ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk)))
        return -1;
    if (p->random && (mpw_str(&pk, "random") != 0 || msgpack_pack_true(&pk)))
        return -1;
    if (p->crn && (mpw_str(&pk, "crn") != 0 || msgpack_pack_true(&pk)))
        return -1;

    if (mpw_str(&pk, "phase") != 0 ||
        mpw_str(&pk, colony_phase_name(c->phase)) != 0)
        return -1;
    if (mpw_kv_int(&pk, "cycle", c->cycle) != 0 ||
        mpw_kv_u64(&pk, "evaluations", c->evaluations) != 0 ||
        mpw_kv_u64(&pk, "next_eval_id", c->next_eval_id) != 0)
        return -1;

    int nfoods = c->phase == COLONY_INIT ? 0 : p->sn;
    if (mpw_str(&pk, "foods") != 0 ||
        msgpack_pack_array(&pk, (size_t)nfoods) != 0)
        return -1;
    for (int i = 0; i < nfoods; i++) {
        const struct colony_food *f = &c->foods[i];
        if (msgpack_pack_map(&pk, 3) != 0 || mpw_str(&pk, "code") != 0 ||
            mpw_ints(&pk, f->code, p->nlayers) != 0 ||
            mpw_kv_double(&pk, "fitness", f->fitness) != 0 ||
            mpw_kv_int(&pk, "trial", f->trial) != 0)
            return -1;
    }

    if (mpw_str(&pk, "best") != 0) return -1;
    if (!c->has_best) {
        if (msgpack_pack_nil(&pk) != 0) return -1;
    } else if (msgpack_pack_map(&pk, 4) != 0 || mpw_str(&pk, "code") != 0 ||
               mpw_ints(&pk, c->best_code, p->nlayers) != 0 ||
               mpw_kv_double(&pk, "fitness", c->best_fitness) != 0 ||
               mpw_kv_u64(&pk, "eval_id", c->best_eval_id) != 0 ||
               mpw_kv_u64(&pk, "seed", c->best_seed) != 0) {
        return -1;
    }

    if (c->has_final &&
        (mpw_str(&pk, "final") != 0 || msgpack_pack_map(&pk, 5) != 0 ||
         mpw_str(&pk, "code") != 0 ||
         mpw_ints(&pk, c->final_code, p->nlayers) != 0 ||
         mpw_kv_double(&pk, "fitness", c->final_fitness) != 0 ||
         mpw_kv_u64(&pk, "seed", c->final_seed) != 0 ||
         mpw_kv_int(&pk, "candidates", c->final_candidates) != 0 ||
         mpw_kv_int(&pk, "seeds", c->final_seeds) != 0))
        return -1;

    if (mpw_str(&pk, "batch") != 0) return -1;
    if (c->async)
        return msgpack_pack_nil(&pk) != 0 || pack_async(&pk, c) != 0 ? -1 : 0;
    if (!c->batch_ready) return msgpack_pack_nil(&pk) != 0 ? -1 : 0;
    if (msgpack_pack_array(&pk, (size_t)c->nbatch) != 0) return -1;
    for (int i = 0; i < c->nbatch; i++) {
        const struct candidate *cd = &c->batch[i];
        if (msgpack_pack_map(&pk, 7) != 0 ||
            mpw_kv_int(&pk, "index", cd->index) != 0 ||
            mpw_kv_int(&pk, "source", cd->source) != 0 ||
            mpw_kv_int(&pk, "partner", cd->partner) != 0 ||
            mpw_str(&pk, "code") != 0 ||
            mpw_ints(&pk, cd->code, p->nlayers) != 0 ||
            mpw_kv_u64(&pk, "seed", cd->seed) != 0 ||
            mpw_kv_u64(&pk, "eval_id", cd->eval_id) != 0 ||
            mpw_str(&pk, "fitness") != 0)
            return -1;
        if (c->have[i] ? msgpack_pack_double(&pk, c->results[i]) != 0
                       : msgpack_pack_nil(&pk) != 0)
            return -1;
    }
    return 0;
}

int colony_save(const struct colony *c, const char *path, char *err)
{
    if (!c || !path || !*path)
        return abc_errf(err, ABC_EVALUE, "colony_save: no %s",
                        !c ? "colony" : "path");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int rc;
    if (pack_colony(&sb, c) != 0)
        rc = abc_errf(err, ABC_ENOMEM,
                      "%s: out of memory serialising the colony", path);
    else
        rc = file_write_atomic(path, sb.data, sb.size, err);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* ---------------------------------------------------------------------
 * Loading: msgpack helpers
 * ------------------------------------------------------------------- */

/* Sorts the entries of map o into vals[] by keys[] and checks that every
 * key is known, none appears twice and all are present. where names the
 * map in messages. */
/* mpread_get_int into an int. */
static int get_i32(const char *path, const char *field, const msgpack_object *o,
                   int64_t lo, int64_t hi, int *out, char *err)
{
    int64_t v = 0;
    int rc = mpread_get_int(path, field, o, lo, hi, &v, err);
    if (!rc) *out = (int)v;
    return rc;
}

/* Reads a finite float (float64, or float32). */
static int get_double(const char *path, const char *field,
                      const msgpack_object *o, double *out, char *err)
{
    if (o->type != MSGPACK_OBJECT_FLOAT64 && o->type != MSGPACK_OBJECT_FLOAT32)
        return abc_errf(err, ABC_EFORMAT, "%s: %s: expected a float, got %s",
                        path, field, mpread_type_name(o->type));
    if (!isfinite(o->via.f64))
        return abc_errf(err, ABC_EVALUE, "%s: %s: %g is not finite", path,
                        field, o->via.f64);
    *out = o->via.f64;
    return 0;
}

/* Reads a code: an array of nlayers integers in 1..K. */
static int get_code(const char *path, const char *field,
                    const msgpack_object *o, const struct colony_params *p,
                    int *code, char *err)
{
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return abc_errf(err, ABC_EFORMAT, "%s: %s: expected an array, got %s",
                        path, field, mpread_type_name(o->type));
    if (o->via.array.size != (uint32_t)p->nlayers)
        return abc_errf(err, ABC_EVALUE,
                        "%s: %s: %u entries, expected nlayers = %d", path,
                        field, o->via.array.size, p->nlayers);
    for (int j = 0; j < p->nlayers; j++) {
        char f[160];
        snprintf(f, sizeof f, "%s[%d]", field, j);
        int rc = get_i32(path, f, &o->via.array.ptr[j], 1, p->K, &code[j], err);
        if (rc) return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------------
 * Loading: the colony
 * ------------------------------------------------------------------- */

static int load_params(const char *path, const msgpack_object *o,
                       struct colony_params *p, char *err)
{
    static const char *const keys[] = {
        "nlayers",    "k",    "sn",          "limit",  "change_dims",
        "max_cycles", "seed", "redraw_same", "random", "crn"};
    const msgpack_object *v[10] = {0};
    /* "random" and "crn" (bools) are written only when true: without, 0 */
    const msgpack_object *unk;
    int rc = mpread_map_fields(path, "params", o, keys, 10, v, &unk, err);
    if (rc) return rc;
    if (unk) return mpread_err_unknown_key(path, "params", unk, err);
    for (int i = 0; i < 8; i++)
        if (!v[i]) return mpread_err_missing_key(path, "params", keys[i], err);
    if (rc) return rc;
    memset(p, 0, sizeof *p);
    if ((rc = get_i32(path, "params.nlayers", v[0], 1, COLONY_MAX_LAYERS,
                      &p->nlayers, err)) ||
        (rc = get_i32(path, "params.k", v[1], 1, 10, &p->K, err)) ||
        (rc =
             get_i32(path, "params.sn", v[2], 2, COLONY_MAX_SN, &p->sn, err)) ||
        (rc =
             get_i32(path, "params.limit", v[3], 0, INT_MAX, &p->limit, err)) ||
        (rc = get_i32(path, "params.change_dims", v[4], 1, COLONY_MAX_LAYERS,
                      &p->change_dims, err)) ||
        (rc = get_i32(path, "params.max_cycles", v[5], 0, COLONY_MAX_CYCLES,
                      &p->max_cycles, err)) ||
        (rc = mpread_get_u64(path, "params.seed", v[6], &p->seed, err)))
        return rc;
    if (v[7]->type != MSGPACK_OBJECT_BOOLEAN)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: params.redraw_same: expected bool, got %s", path,
                        mpread_type_name(v[7]->type));
    p->redraw_same = v[7]->via.boolean ? 1 : 0;
    for (int i = 8; i < 10; i++) {
        if (!v[i]) continue;
        if (v[i]->type != MSGPACK_OBJECT_BOOLEAN)
            return abc_errf(err, ABC_EFORMAT,
                            "%s: params.%s: expected bool, got %s", path,
                            keys[i], mpread_type_name(v[i]->type));
        *(i == 8 ? &p->random : &p->crn) = v[i]->via.boolean ? 1 : 0;
    }
    rc = colony_params_check(p, err);
    if (rc) return abc_errprefix(err, rc, "%s", path);
    return 0;
}

/* Reads "phase" into *ph: init..done in a sync (version 1) file, async or
 * done in an async one. */
static int load_phase(const char *path, const msgpack_object *o, int async,
                      enum colony_phase *ph, char *err)
{
    char show[64];
    if (o->type != MSGPACK_OBJECT_STR)
        return abc_errf(err, ABC_EFORMAT, "%s: phase: expected str, got %s",
                        path, mpread_type_name(o->type));
    for (int i = COLONY_INIT; i <= COLONY_ASYNC; i++) {
        if ((async ? i < COLONY_DONE : i == COLONY_ASYNC)) continue;
        if (mpread_str_eq(o, colony_phase_name((enum colony_phase)i))) {
            *ph = (enum colony_phase)i;
            return 0;
        }
    }
    if (async)
        return abc_errf(err, ABC_EVALUE,
                        "%s: phase: \"%s\", expected async or done in an "
                        "async colony (version %d)",
                        path, mpread_str_show(o, show, sizeof show),
                        COLONY_VERSION_ASYNC);
    return abc_errf(err, ABC_EVALUE,
                    "%s: phase: \"%s\", expected init, employed, onlooker, "
                    "scout or done",
                    path, mpread_str_show(o, show, sizeof show));
}

/* Checks cycle and evaluations against the phase: each cycle applies 2*sn
 * neighbours and at most one scout. */
static int check_progress(const char *path, const struct colony *c, char *err)
{
    const struct colony_params *p = &c->p;
    int lo_cycle = 0, hi_cycle = p->max_cycles - 1;
    if (c->phase == COLONY_INIT) hi_cycle = 0;
    /* async: the evaluations are checked against the roles (load_async) */
    int async_run = c->phase == COLONY_ASYNC;
    if (c->phase == COLONY_DONE) lo_cycle = hi_cycle = p->max_cycles;
    if (c->cycle < lo_cycle || c->cycle > hi_cycle)
        return abc_errf(
            err, ABC_EVALUE,
            "%s: cycle: %d, expected %d..%d in phase %s (max_cycles "
            "%d)",
            path, c->cycle, lo_cycle, hi_cycle, colony_phase_name(c->phase),
            p->max_cycles);
    uint64_t sn = (uint64_t)p->sn, lo = 0, hi = 0;
    if (c->phase != COLONY_INIT) {
        lo = sn + (uint64_t)c->cycle * 2 * sn;
        if (c->phase == COLONY_ONLOOKER) lo += sn;
        if (c->phase == COLONY_SCOUT) lo += 2 * sn;
        hi = lo + (uint64_t)c->cycle;
    }
    if (!async_run && (c->evaluations < lo || c->evaluations > hi))
        return abc_errf(err, ABC_EVALUE,
                        "%s: evaluations: %llu, expected %llu..%llu in phase "
                        "%s of cycle %d",
                        path, (unsigned long long)c->evaluations,
                        (unsigned long long)lo, (unsigned long long)hi,
                        colony_phase_name(c->phase), c->cycle);
    if (c->next_eval_id < c->evaluations ||
        c->next_eval_id > UINT64_MAX - (uint64_t)p->sn)
        return abc_errf(err, ABC_EVALUE,
                        "%s: next_eval_id: %llu, expected %llu or more (the "
                        "evaluations)",
                        path, (unsigned long long)c->next_eval_id,
                        (unsigned long long)c->evaluations);
    return 0;
}

static int load_foods(const char *path, const msgpack_object *o,
                      struct colony *c, char *err)
{
    static const char *const keys[] = {"code", "fitness", "trial"};
    uint32_t want = c->phase == COLONY_INIT ? 0 : (uint32_t)c->p.sn;
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: foods: expected an array, got %s", path,
                        mpread_type_name(o->type));
    if (o->via.array.size != want)
        return abc_errf(err, ABC_EVALUE,
                        "%s: foods: %u sources, expected %u (sn = %d, phase "
                        "%s)",
                        path, o->via.array.size, want, c->p.sn,
                        colony_phase_name(c->phase));
    for (uint32_t i = 0; i < want; i++) {
        const msgpack_object *v[3];
        char where[64], f[96];
        struct colony_food *fd = &c->foods[i];
        snprintf(where, sizeof where, "foods[%u]", i);
        int rc =
            mpread_get_map(path, where, &o->via.array.ptr[i], keys, 3, v, err);
        if (rc) return rc;
        snprintf(f, sizeof f, "%s.code", where);
        if ((rc = get_code(path, f, v[0], &c->p, fd->code, err))) return rc;
        snprintf(f, sizeof f, "%s.fitness", where);
        if ((rc = get_double(path, f, v[1], &fd->fitness, err))) return rc;
        snprintf(f, sizeof f, "%s.trial", where);
        if ((rc = get_i32(path, f, v[2], 0, INT_MAX, &fd->trial, err)))
            return rc;
    }
    return 0;
}

static int load_best(const char *path, const msgpack_object *o,
                     struct colony *c, char *err)
{
    static const char *const keys[] = {"code", "fitness", "eval_id", "seed"};
    const msgpack_object *v[4];
    if (c->phase == COLONY_INIT) {
        if (o->type != MSGPACK_OBJECT_NIL)
            return abc_errf(err, ABC_EVALUE,
                            "%s: best: a %s, expected nil before init is "
                            "applied",
                            path, mpread_type_name(o->type));
        return 0;
    }
    int rc = mpread_get_map(path, "best", o, keys, 4, v, err);
    if (rc) return rc;
    if ((rc = get_code(path, "best.code", v[0], &c->p, c->best_code, err)) ||
        (rc = get_double(path, "best.fitness", v[1], &c->best_fitness, err)) ||
        (rc = mpread_get_u64(path, "best.eval_id", v[2], &c->best_eval_id,
                             err)) ||
        (rc = mpread_get_u64(path, "best.seed", v[3], &c->best_seed, err)))
        return rc;
    if (c->best_eval_id >= c->next_eval_id)
        return abc_errf(err, ABC_EVALUE,
                        "%s: best.eval_id: %llu, but only ids below "
                        "next_eval_id %llu were evaluated",
                        path, (unsigned long long)c->best_eval_id,
                        (unsigned long long)c->next_eval_id);
    for (int i = 0; i < c->p.sn; i++)
        if (c->foods[i].fitness > c->best_fitness)
            return abc_errf(err, ABC_EVALUE,
                            "%s: best.fitness: %.17g is below foods[%d]."
                            "fitness %.17g (the best is the best ever)",
                            path, c->best_fitness, i, c->foods[i].fitness);
    c->has_best = 1;
    return 0;
}

/* Reads the optional "final" map: only in a done colony. */
static int load_final(const char *path, const msgpack_object *o,
                      struct colony *c, char *err)
{
    static const char *const keys[] = {"code", "fitness", "seed", "candidates",
                                       "seeds"};
    const msgpack_object *v[5];
    if (c->phase != COLONY_DONE)
        return abc_errf(err, ABC_EVALUE,
                        "%s: final: a final choice in a colony that is not "
                        "done (phase %s)",
                        path, colony_phase_name(c->phase));
    int rc = mpread_get_map(path, "final", o, keys, 5, v, err);
    if (rc) return rc;
    if ((rc = get_code(path, "final.code", v[0], &c->p, c->final_code, err)) ||
        (rc =
             get_double(path, "final.fitness", v[1], &c->final_fitness, err)) ||
        (rc = mpread_get_u64(path, "final.seed", v[2], &c->final_seed, err)) ||
        (rc = get_i32(path, "final.candidates", v[3], 1, INT_MAX,
                      &c->final_candidates, err)) ||
        (rc = get_i32(path, "final.seeds", v[4], 1, INT_MAX, &c->final_seeds,
                      err)))
        return rc;
    c->has_final = 1;
    return 0;
}

/* Reads the "async" map (next_role, walk, redo) and checks it against
 * cycle, phase and evaluations: cycle is the oldest role not applied, and
 * the applied roles account for the evaluations. */
static int load_async(const char *path, const msgpack_object *o,
                      struct colony *c, char *err)
{
    static const char *const keys[] = {"next_role", "walk", "redo"};
    const msgpack_object *v[3];
    const struct colony_params *p = &c->p;
    uint64_t total = roles_total(p), R = roles_per_cycle(p);
    int rc = mpread_get_map(path, "async", o, keys, 3, v, err);
    if (rc) return rc;
    if ((rc = mpread_get_u64(path, "async.next_role", v[0], &c->role_next,
                             err)) ||
        (rc = get_i32(path, "async.walk", v[1], 0, p->sn - 1, &c->walk, err)))
        return rc;
    if (c->role_next > total)
        return abc_errf(err, ABC_EVALUE,
                        "%s: async.next_role: %llu, expected at most %llu "
                        "(max_cycles %d x %llu roles)",
                        path, (unsigned long long)c->role_next,
                        (unsigned long long)total, p->max_cycles,
                        (unsigned long long)R);
    const msgpack_object *rd = v[2];
    if (rd->type != MSGPACK_OBJECT_ARRAY)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: async.redo: expected an array, got %s", path,
                        mpread_type_name(rd->type));
    uint32_t n = rd->via.array.size;
    if (n > COLONY_MAX_INFLIGHT || n > c->role_next)
        return abc_errf(err, ABC_EVALUE,
                        "%s: async.redo: %u roles, expected at most %llu "
                        "(next_role) and %d",
                        path, n, (unsigned long long)c->role_next,
                        COLONY_MAX_INFLIGHT);
    c->redo = malloc((n ? n : 1) * sizeof *c->redo);
    if (!c->redo) return abc_errf(err, ABC_ENOMEM, "%s: out of memory", path);
    c->cap_redo = (int)(n ? n : 1);
    uint64_t moves, scouts, rm = 0, rs = 0;
    for (uint32_t i = 0; i < n; i++) {
        char f[64];
        snprintf(f, sizeof f, "async.redo[%u]", i);
        uint64_t role = 0;
        if ((rc = mpread_get_u64(path, f, &rd->via.array.ptr[i], &role, err)))
            return rc;
        if (role >= c->role_next || (i > 0 && role <= c->redo[i - 1]))
            return abc_errf(err, ABC_EVALUE,
                            "%s: %s: %llu, expected roles below next_role "
                            "%llu in increasing order",
                            path, f, (unsigned long long)role,
                            (unsigned long long)c->role_next);
        c->redo[c->nredo++] = role;
        if (role % R == R - 1)
            rs++;
        else
            rm++;
    }
    /* the oldest role not applied gives cycle and phase */
    uint64_t low = n ? c->redo[0] : c->role_next;
    int done = low >= total;
    if (done != (c->phase == COLONY_DONE))
        return abc_errf(err, ABC_EVALUE,
                        "%s: phase: %s, but %s (next_role %llu of %llu, %u "
                        "to make again)",
                        path, colony_phase_name(c->phase),
                        done ? "every role is applied" : "roles remain",
                        (unsigned long long)c->role_next,
                        (unsigned long long)total, n);
    int want_cycle = done ? p->max_cycles : (int)(low / R);
    if (c->cycle != want_cycle)
        return abc_errf(err, ABC_EVALUE,
                        "%s: cycle: %d, but the oldest role not applied "
                        "(%llu) is in cycle %d",
                        path, c->cycle, (unsigned long long)low, want_cycle);
    role_counts(p, c->role_next, &moves, &scouts);
    moves -= rm, scouts -= rs;
    uint64_t lo = (uint64_t)p->sn + moves, hi = lo + scouts;
    if (c->evaluations < lo || c->evaluations > hi)
        return abc_errf(err, ABC_EVALUE,
                        "%s: evaluations: %llu, expected %llu..%llu (sn + "
                        "%llu moves + up to %llu scouts applied)",
                        path, (unsigned long long)c->evaluations,
                        (unsigned long long)lo, (unsigned long long)hi,
                        (unsigned long long)moves, (unsigned long long)scouts);
    c->async = 1;
    return 0;
}

/* Reads the saved batch: generates the phase's batch from the state,
 * checks that the file's equals it, and takes the recorded fitnesses. */
static int load_batch(const char *path, const msgpack_object *o,
                      struct colony *c, char *err)
{
    static const char *const keys[] = {"index", "source",  "partner", "code",
                                       "seed",  "eval_id", "fitness"};
    if (o->type == MSGPACK_OBJECT_NIL) return 0;
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: batch: expected nil or an array, got %s", path,
                        mpread_type_name(o->type));
    if (c->phase == COLONY_DONE || c->async)
        return abc_errf(err, ABC_EVALUE, "%s: batch: present, but %s", path,
                        c->async ? "the colony is in the async schedule"
                                 : "the search is done");
    generate_batch(c);
    if (o->via.array.size != (uint32_t)c->nbatch)
        return abc_errf(err, ABC_EVALUE,
                        "%s: batch: %u candidates, but this colony state "
                        "makes a %s batch of %d (file from another build, or "
                        "corrupted)",
                        path, o->via.array.size, colony_phase_name(c->phase),
                        c->nbatch);
    int *code = malloc((size_t)c->p.nlayers * sizeof *code);
    if (!code) return abc_errf(err, ABC_ENOMEM, "%s: out of memory", path);
    int rc = 0;
    for (int i = 0; i < c->nbatch && !rc; i++) {
        const struct candidate *cd = &c->batch[i];
        const msgpack_object *v[7];
        char where[64], f[96];
        int index, source, partner;
        uint64_t seed = 0, eval_id = 0;
        snprintf(where, sizeof where, "batch[%d]", i);
        rc = mpread_get_map(path, where, &o->via.array.ptr[i], keys, 7, v, err);
        if (rc) break;
        char fi[96], fs[96], fp[96], fc[96], fe[96], fd[96];
        snprintf(fi, sizeof fi, "%s.index", where);
        snprintf(fs, sizeof fs, "%s.source", where);
        snprintf(fp, sizeof fp, "%s.partner", where);
        snprintf(fc, sizeof fc, "%s.code", where);
        snprintf(fe, sizeof fe, "%s.seed", where);
        snprintf(fd, sizeof fd, "%s.eval_id", where);
        if ((rc = get_i32(path, fi, v[0], 0, COLONY_MAX_SN, &index, err)) ||
            (rc = get_i32(path, fs, v[1], 0, c->p.sn - 1, &source, err)) ||
            (rc = get_i32(path, fp, v[2], -1, c->p.sn - 1, &partner, err)) ||
            (rc = get_code(path, fc, v[3], &c->p, code, err)) ||
            (rc = mpread_get_u64(path, fe, v[4], &seed, err)) ||
            (rc = mpread_get_u64(path, fd, v[5], &eval_id, err)))
            break;
        const char *differs =
            index != cd->index       ? "index"
            : source != cd->source   ? "source"
            : partner != cd->partner ? "partner"
            : memcmp(code, cd->code, (size_t)c->p.nlayers * sizeof *code)
                ? "code"
            : seed != cd->seed       ? "seed"
            : eval_id != cd->eval_id ? "eval_id"
                                     : NULL;
        if (differs) {
            rc = abc_errf(err, ABC_EVALUE,
                          "%s: %s.%s: differs from the candidate this colony "
                          "state makes (file from another build, or "
                          "corrupted)",
                          path, where, differs);
            break;
        }
        if (v[6]->type != MSGPACK_OBJECT_NIL) {
            snprintf(f, sizeof f, "%s.fitness", where);
            rc = get_double(path, f, v[6], &c->results[i], err);
            if (rc) break;
            c->have[i] = 1;
        }
    }
    free(code);
    return rc;
}

/* Validates the top-level object o and builds the colony. */
static int load_object(const char *path, const msgpack_object *o,
                       struct colony **out, char *err)
{
    enum {
        K_FORMAT,
        K_VERSION,
        K_PARAMS,
        K_PHASE,
        K_CYCLE,
        K_EVALS,
        K_NEXT,
        K_FOODS,
        K_BEST,
        K_BATCH,
        K_ASYNC, /* version 2 only */
        K_FINAL, /* optional: once the final choice is made */
        K_N
    };
    static const char *const keys[K_N] = {
        "format",       "version", "params", "phase", "cycle", "evaluations",
        "next_eval_id", "foods",   "best",   "batch", "async", "final"};
    const msgpack_object *v[K_N] = {0};
    int rc;

    int64_t ver = 0;
    if ((rc = mpread_header(path, "colony checkpoint", o, COLONY_FORMAT, &ver,
                            err)))
        return rc;
    if (ver != COLONY_VERSION && ver != COLONY_VERSION_ASYNC)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: version: unsupported colony checkpoint version "
                        "%lld (this build reads %d and %d)",
                        path, (long long)ver, COLONY_VERSION,
                        COLONY_VERSION_ASYNC);
    int async = ver == COLONY_VERSION_ASYNC;
    if (async) {
        int has = 0;
        for (uint32_t j = 0; j < o->via.map.size; j++)
            has |= mpread_str_eq(&o->via.map.ptr[j].key, "async");
        if (!has)
            return abc_errf(err, ABC_EFORMAT,
                            "%s: version %d (an async colony) without an "
                            "\"async\" key",
                            path, COLONY_VERSION_ASYNC);
    }
    /* a sync file has no "async" key: it is unknown there; "final" is
     * optional in both */
    {
        const msgpack_object *unk;
        if ((rc = mpread_map_fields(path, "top level", o, keys, K_N, v, &unk,
                                    err)))
            return rc;
        if (unk) return mpread_err_unknown_key(path, "top level", unk, err);
        if (!async && v[K_ASYNC])
            return abc_errf(err, ABC_EFORMAT,
                            "%s: top level: unknown key \"async\" (version "
                            "%d is a sync colony)",
                            path, COLONY_VERSION);
        for (int i = 0; i < K_ASYNC + async; i++)
            if (!v[i])
                return mpread_err_missing_key(path, "top level", keys[i], err);
    }

    struct colony_params p;
    if ((rc = load_params(path, v[K_PARAMS], &p, err))) return rc;
    struct colony *c;
    if ((rc = colony_create(&c, &p, err)))
        return abc_errprefix(err, rc, "%s", path);

    if ((rc = load_phase(path, v[K_PHASE], async, &c->phase, err)) ||
        (rc = get_i32(path, "cycle", v[K_CYCLE], 0, COLONY_MAX_CYCLES,
                      &c->cycle, err)) ||
        (rc = mpread_get_u64(path, "evaluations", v[K_EVALS], &c->evaluations,
                             err)) ||
        (rc = mpread_get_u64(path, "next_eval_id", v[K_NEXT], &c->next_eval_id,
                             err)) ||
        (rc = check_progress(path, c, err)) ||
        (async && (rc = load_async(path, v[K_ASYNC], c, err))) ||
        (rc = load_foods(path, v[K_FOODS], c, err)) ||
        (rc = load_best(path, v[K_BEST], c, err)) ||
        (v[K_FINAL] && (rc = load_final(path, v[K_FINAL], c, err))) ||
        (rc = load_batch(path, v[K_BATCH], c, err))) {
        colony_destroy(c);
        return rc;
    }
    *out = c;
    return 0;
}

int colony_load(const char *path, struct colony **out, char *err)
{
    if (out) *out = NULL;
    if (!path || !out)
        return abc_errf(err, ABC_EVALUE, "colony_load: no %s",
                        !path ? "path" : "output");
    char *buf;
    size_t len;
    int rc = file_read_all(path, "colony checkpoint", COLONY_MAX_BYTES, &buf,
                           &len, err);
    if (rc) return rc;
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, MSGPACK_ZONE_CHUNK_SIZE)) {
        free(buf);
        return abc_errf(err, ABC_ENOMEM, "%s: out of memory", path);
    }
    msgpack_object obj;
    rc = mpread_unpack(path, "colony checkpoint", buf, len, &zone, &obj, err);
    /* load_object copies all it keeps before zone and buf go */
    if (!rc) rc = load_object(path, &obj, out, err);
    msgpack_zone_destroy(&zone);
    free(buf);
    return rc;
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

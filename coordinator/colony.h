/* colony.h - the Artificial Bee Colony of ABCPruner over pruned structures,
 * in two forms. The batch ("sync") form: every phase (init, employed,
 * onlooker, scout) is one batch of candidates generated from the colony
 * state alone, and the greedy updates are applied in candidate order once
 * all fitnesses are in; pure and deterministic (no MPI, no training): the
 * same parameters give the same search on any number of workers, and a
 * colony saved at any point and loaded again continues exactly as an
 * uninterrupted run. The steady-state ("async") form, after a sync init:
 * one candidate at a time from the current state, each result applied the
 * moment it is in (colony_async_*); deterministic only for a given order of
 * arrival. */
#ifndef ABC_COLONY_H
#define ABC_COLONY_H

#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"

#define COLONY_FORMAT "abcprune-colony"
#define COLONY_VERSION                                                         \
    3 /* checkpoints of the sync form, with a CRC-32                           \
         per section (1: without, still read) */
#define COLONY_VERSION_ASYNC                                                   \
    4 /* of the async form (2: without, still read)                            \
       */

/* Limits colony_params_check enforces. */
#define COLONY_MAX_LAYERS 4096
#define COLONY_MAX_SN 65536
#define COLONY_MAX_CYCLES 1000000
/* Moves tried per candidate when redraw_same is set (see colony_neighbour). */
#define COLONY_MAX_REDRAWS 100
/* Async candidates in flight at once (colony_async_next refuses more). */
#define COLONY_MAX_INFLIGHT (1 << 20)

enum colony_phase {
    COLONY_INIT = 0,     /* SN random structures */
    COLONY_EMPLOYED = 1, /* one neighbour per source */
    COLONY_ONLOOKER = 2, /* SN neighbours, placed by fitness */
    COLONY_SCOUT = 3,    /* at most one random structure */
    COLONY_DONE = 4,     /* max_cycles cycles done */
    COLONY_ASYNC = 5,    /* the async schedule runs (colony_async_begin) */
};

struct colony_params {
    int nlayers;     /* prunable layers: entries of a code */
    int K;           /* codes are 1..K (K = round(10*alpha), at most 10) */
    int sn;          /* food sources, >= 2 */
    int limit;       /* a source is abandoned when its trial >= limit */
    int change_dims; /* positions a neighbour move changes, 1..nlayers */
    int max_cycles;  /* employed+onlooker+scout cycles after init */
    uint64_t seed;   /* the search seed: every draw derives from it */
    int redraw_same; /* 1: re-draw a neighbour move that leaves the code
                        unchanged (0 = the reference behaviour) */
    int random;      /* 1: random search, the fair null of the colony at
                        the same cost: every employed and onlooker
                        candidate is a fresh random code (drawn from its own
                        move stream) instead of a neighbour; the phases,
                        greedy updates and scouts run as in ABC, so the
                        evaluation count and the best-ever bookkeeping are
                        the colony's */
    int crn;         /* 1: common random numbers: every candidate of a
                        (cycle, phase) gets the same evaluation seed,
                        rng_derive(seed, cycle, phase, SEED_COLONY_CRN), so
                        candidates are compared on the same batches and
                        draws; 0: rng_derive(seed, cycle, phase, index) */
};

/* One food source: a structure and what it scored. */
struct colony_food {
    int *code;      /* nlayers entries in 1..K (colony-owned) */
    double fitness; /* validation accuracy of the last accepted candidate */
    int trial;      /* phases since it last improved */
};

/* One structure to evaluate. The code points into colony storage and stays
 * valid until colony_apply (sync), colony_async_apply of its eval_id
 * (async) or colony_destroy. */
struct candidate {
    int cycle;               /* cycle that made it, 0-based (init: 0) */
    enum colony_phase phase; /* phase or async role: init..scout */
    int index;               /* position in the batch, 0.. (async: the role's
                                position in its phase: employed = the source,
                                onlooker 0..sn-1, scout 0) */
    int source;              /* food source it competes for (init: fills) */
    int partner;             /* source the move leaned on, -1 for init/scout */
    int unchanged;           /* 1 when code equals the source's code (a move
                                whose truncation changed nothing) */
    int redraws;             /* moves drawn again because they changed
                                nothing (params.redraw_same) */
    const int *code;         /* nlayers entries in 1..K */
    uint64_t seed;           /* evaluation seed: rng_derive(params.seed,
                                cycle, phase, index or SEED_COLONY_CRN
                                (params.crn)), in both forms; never depends
                                on a rank */
    uint64_t eval_id;        /* unique over the run: 0, 1, 2, ... in order */
};

struct colony_slot; /* an async candidate in flight (colony.c) */

/* The colony. Every field is read-only outside colony.c. */
struct colony {
    struct colony_params p;
    enum colony_phase phase;
    int cycle;                 /* current cycle, 0-based; max_cycles when DONE
                                  (async: the cycles whose roles are all
                                  applied) */
    uint64_t evaluations;      /* fitnesses applied so far */
    uint64_t next_eval_id;     /* eval_id of the next batch's first candidate
                                  (async: of the next candidate) */
    struct colony_food *foods; /* sn sources, set once phase > INIT */
    int has_best;              /* 0 only before init is applied */
    int *best_code;            /* best structure ever evaluated */
    double best_fitness;
    uint64_t best_eval_id; /* the candidate that scored it (its weights) */
    uint64_t best_seed;    /* its evaluation seed: re-running the evaluation
                              reproduces its trained weights */
    /* the batch of the current phase, once colony_next_batch made it */
    int batch_ready;
    int nbatch;
    struct candidate *batch;
    double *results;     /* nbatch fitnesses recorded so far */
    unsigned char *have; /* have[i]: results[i] is recorded */
    int *food_codes;     /* sn*nlayers, foods[i].code = +i*nlayers */
    int *batch_codes;    /* sn*nlayers */
    /* the async schedule: phase ASYNC, or DONE after it */
    int async;          /* 1 once colony_async_begin switched to it */
    uint64_t role_next; /* roles issued so far (see colony_async_next) */
    int walk;           /* source the next onlooker walk starts at */
    uint64_t *redo;     /* roles to make again before role_next (sorted):
                           the ones in flight when the colony was saved */
    int nredo, cap_redo;
    struct colony_slot **slots; /* [0, ninflight) in flight, then free */
    int ninflight, nslots;
    /* the final choice (colony_set_final), once the search is done */
    int has_final;
    int *final_code;      /* the structure chosen */
    double final_fitness; /* its mean over the re-evaluations */
    uint64_t final_seed;  /* the seed of its first re-evaluation */
    int final_candidates; /* structures re-evaluated (top k) */
    int final_seeds;      /* re-evaluations of each */
};

/* Returns 0 when p is usable, else ABC_EVALUE naming the first bad field
 * (as "params.<field>"). */
int colony_params_check(const struct colony_params *p, char *err);

/* Returns 0 when a and b describe the same search (every field equal),
 * else ABC_EVALUE naming the first field that differs and both values, so
 * a caller can refuse to resume a colony under another config. */
int colony_params_match(const struct colony_params *a,
                        const struct colony_params *b, char *err);

/* Evaluations a whole search costs: sn + max_cycles*(2*sn) plus one per
 * scout; *min assumes no scout, *max one scout per cycle. Either pointer
 * may be NULL. */
void colony_cost(const struct colony_params *p, uint64_t *min, uint64_t *max);

/* Allocates a colony in phase INIT, cycle 0, for parameters p (checked).
 * Returns 0 and *out (the caller destroys it), or a negative ABC_E* code
 * with *out NULL. */
int colony_create(struct colony **out, const struct colony_params *p,
                  char *err);

/* Frees c and everything it owns. NULL is fine. */
void colony_destroy(struct colony *c);

/* Returns 1 when the search is done (phase DONE), else 0. */
int colony_done(const struct colony *c);

/* Name of a phase: "init", "employed", "onlooker", "scout", "done",
 * "async". */
const char *colony_phase_name(enum colony_phase ph);

/* Makes (or, when already made, returns again) the batch of the current
 * phase: a pure function of the colony state, so calling it again, or after
 * a save and load, gives the same candidates. *batch points at *n
 * candidates owned by c, valid until colony_apply or colony_destroy. A
 * scout phase without an exhausted source has an empty batch (*n = 0),
 * which colony_apply still has to be called on to advance. Returns 0, or
 * ABC_EVALUE when the search is done or in the async schedule. */
int colony_next_batch(struct colony *c, const struct candidate **batch, int *n,
                      char *err);

/* Records the fitness of candidate index of the current batch (results may
 * come in any order; recording one twice keeps the last). Recorded results
 * are saved by colony_save with the batch. Returns 0, or ABC_EVALUE for no
 * batch, an index out of range or a non-finite fitness. */
int colony_record(struct colony *c, int index, double fitness, char *err);

/* Applies the current batch: fitness[i] is candidate i's fitness, or, with
 * fitness NULL, the results recorded by colony_record (all needed). In
 * candidate order: init fills the sources (trial 0); employed and onlooker
 * candidates replace their source when strictly fitter (trial = 0), else
 * the source's trial grows by one; a scout replaces its source
 * unconditionally (trial = 0). The best ever is updated on every strictly
 * better candidate (never reset), then the phase advances (after the scout
 * phase to the next cycle, or DONE after max_cycles cycles). Everything is
 * checked before anything changes: on an error (no batch, a non-finite or
 * missing fitness) c is untouched. Returns 0 or ABC_EVALUE. */
int colony_apply(struct colony *c, const double *fitness, char *err);

/* Writes c to path atomically (temp file "<path>.tmp.<pid>" in the same
 * directory, fsync, rename; on failure the temp file is removed and what
 * was at path is untouched): format, version, params, foods, best, cycle,
 * phase, counters, and the current batch with its recorded results; in the
 * async schedule (version 4) the position in the role sequence and, as
 * roles to make again, the candidates in flight: their results are not
 * wanted after a load (a resumed search makes those roles again, from the
 * state then, under new eval ids; a late result is an error). Returns 0
 * or a negative ABC_E* code with a message naming path. */
int colony_save(const struct colony *c, const char *path, char *err);

/* The top-k distinct structures of a done colony, for the final choice:
 * the best ever, then the food sources by fitness (ties: lower index),
 * duplicates skipped. Writes up to k codes (k*nlayers ints) to codes and
 * returns how many. */
int colony_top_codes(const struct colony *c, int k, int *codes);

/* Records the final choice of a done colony (against the winner's curse:
 * the best of noisy draws is biased upwards, so the top codes are
 * re-evaluated and the best mean chosen): code, its mean fitness, the seed
 * of its first re-evaluation (to reproduce its weights), and how many
 * structures and seeds were re-evaluated. Saved with the colony (optional
 * key "final"). Returns 0 or ABC_EVALUE (not done). */
int colony_set_final(struct colony *c, const int *code, double fitness,
                     uint64_t seed, int candidates, int seeds, char *err);

/* What a finished search hands to fine-tuning: the final choice when it
 * was made (colony_set_final), else the best single draw. */
struct colony_choice {
    const int *code; /* nlayers entries, colony-owned */
    double fitness;  /* the final mean, or the best draw's fitness */
    uint64_t seed;   /* the evaluation seed that reproduces its weights */
};
struct colony_choice colony_chosen(const struct colony *c);

/* Reads a colony written by colony_save. Every field is validated (type,
 * range, codes in 1..K, lengths against nlayers and sn, counters against
 * phase and cycle, best against the sources, the saved batch against the
 * one the state generates); errors name path and the field. The file is
 * only read. Returns 0 and *out (the caller destroys it), or a negative
 * ABC_E* code with *out NULL. */
int colony_load(const char *path, struct colony **out, char *err);

/* colony_load of the bytes buf[0..len) (a file read whole): the same
 * checks, with name (a path, or what the bytes are) in the messages. buf
 * is only read and may be freed as soon as this returns. */
int colony_load_mem(const char *name, const char *buf, size_t len,
                    struct colony **out, char *err);

/* --- the async (steady-state) schedule ---
 *
 * After the init batch (always sync), the colony walks a fixed sequence of
 * roles, 2*sn+1 per cycle: the employed move of source 0..sn-1, then sn
 * onlooker placements, then one scout check; role r belongs to cycle
 * r/(2sn+1). Each role becomes a candidate the moment it is asked for, from
 * the colony as it is then (partners' codes, onlooker probabilities,
 * trials), and each result is applied the moment it comes back. The budget
 * is the sync one exactly: sn + max_cycles*2*sn evaluations plus one per
 * scout issued. Seeds derive as in the sync form from (seed, cycle, phase,
 * index of the role in its phase); what differs from run to run is only the
 * state a role is made from, i.e. the order in which results arrive.
 *   employed:  a neighbour of source index (partners' current codes);
 *   onlooker:  the placement walk (p_i from the current fitnesses) goes on
 *              from where the previous onlooker stopped (c->walk, around
 *              the ring across cycles), then a neighbour of that source;
 *   scout:     the source with the largest trial (first on ties) among
 *              those without a scout in flight; if its trial >= limit a
 *              random code for it, else the role is skipped (no candidate,
 *              counted as applied at once).
 * Greedy updates as in the sync form: a neighbour replaces its source
 * (whatever it is by then) when strictly fitter, trial = 0, else trial
 * grows by one; a scout replaces its source unconditionally. */

/* Switches c to the async schedule at a phase boundary after init (phase
 * employed, onlooker or scout with no batch made; normally right after the
 * init batch is applied): the role sequence starts at that phase of the
 * current cycle. On a done colony it does nothing; on one already async
 * either. Returns 0, or ABC_EVALUE (c untouched) in init or mid-batch. */
int colony_async_begin(struct colony *c, char *err);

/* Makes the next candidate of the async schedule from the current state:
 * first the roles a loaded checkpoint had in flight, then the next role of
 * the sequence; skipped scout roles are passed over. Returns 1 with *cand
 * (owned by c, valid until colony_async_apply of its eval_id or
 * colony_destroy; the eval_id is new, one more than the last), 0 with
 * *cand NULL when no role is left to issue (wait for the results in
 * flight; when none is, the search is done), or ABC_EVALUE when c is not
 * in the async schedule or COLONY_MAX_INFLIGHT candidates are out. A
 * skipped scout can finish a cycle (c->cycle grows) or the search. */
int colony_async_next(struct colony *c, const struct candidate **cand,
                      char *err);

/* Applies the fitness of the in-flight candidate eval_id (results in any
 * order): the greedy update of its source and trial, the best ever, the
 * evaluation count; c->cycle grows when all roles of the oldest unfinished
 * cycle are applied, and the phase becomes DONE after the last one. The
 * candidate is released. Returns 0, or ABC_EVALUE (c untouched) for a
 * colony not in the async schedule, an eval_id not in flight (unknown, or
 * applied already) or a non-finite fitness. */
int colony_async_apply(struct colony *c, uint64_t eval_id, double fitness,
                       char *err);

/* Number of async candidates made and not yet applied. */
int colony_async_inflight(const struct colony *c);

/* --- building blocks --- */

/* One coordinate of the neighbour move: trunc(x + phi*(x - xk)) clipped to
 * 1..K (trunc rounds toward zero, as Python's int()). */
int colony_neighbour_value(int x, int xk, double phi, int K);

/* Onlooker probability of a source: 0.9*fit/max_fit + 0.1, or 1 when
 * max_fit <= 0. */
double colony_onlooker_prob(double fit, double max_fit);

/* One neighbour move of source i over codes (sn x nlayers, row-major):
 * a partner k != i uniformly, change_dims distinct positions uniformly over
 * all nlayers layers, and for each position j a fresh phi ~ U(-1,1) with
 * out[j] = colony_neighbour_value(x_ij, x_kj, phi, K); the other positions
 * copy x_i. With p->redraw_same the whole move is drawn again while out
 * equals x_i, at most COLONY_MAX_REDRAWS times (the last draw is kept: a
 * converged colony has no differing move). Writes out[nlayers], sets
 * *unchanged (out == x_i) and, when not NULL, *redraws (the moves drawn
 * again because they changed nothing), returns k. Draws only from r. */
int colony_neighbour(const struct colony_params *p, const int *codes, int i,
                     struct rng *r, int *out, int *unchanged, int *redraws);

/* Channels kept per layer for a code: out[j] = max(1, floor(full[j] *
 * code[j] / 10)). */
void colony_code_to_channels(const int *code, const int *full, int nlayers,
                             int *out);

#endif

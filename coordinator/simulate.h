/* simulate.h - the search on a virtual clock: the real colony (colony.c,
 * called exactly as search.c calls it: sync batches, or the sync init batch
 * then the async steady state) against W virtual workers, with evaluation
 * times from a cost model fitted on a real run's search.jsonl and fitnesses
 * from a surrogate of that log. It predicts wall time, utilisation and
 * evals/s of a search on far more workers than a machine at hand has.
 *
 * The model (fitted by sim_log_read + sim_cost_fit + sim_overhead_fit):
 *  - an evaluation of candidate x on a worker takes
 *        (a + b*flops(x)) * m + o  seconds, of which the worker is busy
 *    (a + b*flops(x)) * m: a, b least squares over the log's eval lines
 *    (seconds vs flops); m one of the fit's residual ratios
 *    seconds_i / (a + b*flops_i), drawn uniformly with a seed derived from
 *    (sim seed, eval_id), so a candidate costs the same on any W;
 *    o the per-dispatch overhead (messaging, the coordinator's log,
 *    checkpoint and colony work between a result and the next request),
 *    during which the worker idles;
 *  - a candidate's fitness: the logged fitness of the same code evaluated
 *    with the same seed if the log has it (so a sync simulation of the
 *    log's own config replays the real search exactly), else the mean
 *    logged fitness of the structures nearest to its code (L1 distance
 *    over code entries): deterministic, so the colony moves over the
 *    structures the real run saw (a surrogate for the search's progress,
 *    not a prediction of it);
 *  - flops(x) are the MACs per image of the model x describes
 *    (structure_from_code, as the search maps codes: the workers
 *    report them).
 * Pure computation: no MPI, no training, no files but the log. */
#ifndef ABC_SIMULATE_H
#define ABC_SIMULATE_H

#include <stdint.h>
#include <stdio.h>

#include "colony.h"
#include "io/config.h"
#include "nn/model.h"
#include "structure.h"

/* The parts of a search.jsonl the simulator uses. */
struct sim_log {
    char path[1024];
    int nlayers;     /* entries of every code (0 while no eval line) */
    int n, cap;      /* eval lines, in log order */
    int *codes;      /* n*nlayers */
    int64_t *flops;  /* per eval line */
    double *seconds; /* the worker's wall time of the evaluation */
    double *ips;     /* its training images per second (0: not logged) */
    double *fitness;
    double *seed; /* the evaluation's seed, as the nearest double (JSON
                     numbers are read as doubles; two of the 2^64 seeds
                     share a double only when within ~2^11 of each other) */
    int *phase;   /* enum colony_phase of the line (async lines: their
                     role's phase) */
    int *cycle;   /* the line's "cycle" (0 = init) */
    int has_done; /* a done line was read: the fields below are set */
    int async;    /* its schedule */
    int ranks;
    uint64_t evaluations;    /* the colony's, over all sessions */
    uint64_t evaluated_here; /* by the session that wrote the done line */
    double elapsed_s;
    double worker_busy;
    double rank0_cpu_s;
    int ranks_per_eval; /* its evaluation groups' size (1 if not logged) */
    int has_start;      /* a cycle 0 line was read: */
    int start_n;        /* eval lines before it (the init batch) */
    double start_s;     /* its elapsed_s: start-up plus the init batch */
};

/* Reads path (JSON lines, one object per line; eval, cycle and done events
 * are used, other events skipped). Every malformed line is an error naming
 * path:line and the field. Needs at least one eval line. Returns 0 and *out
 * (free with sim_log_destroy), or ABC_EIO / ABC_EFORMAT / ABC_ENOMEM with
 * *out NULL. */
int sim_log_read(const char *path, struct sim_log **out, char *err);

/* Frees a log. NULL is fine. */
void sim_log_destroy(struct sim_log *log);

/* The evaluation cost model. */
struct sim_cost {
    double a, b;     /* seconds = a + b*flops (before the residual) */
    int nres;        /* residual ratios (0: every ratio is 1) */
    double *res;     /* nres ratios seconds/(a + b*flops), owned */
    double overhead; /* o: seconds per dispatch the worker waits */
    double min_s;    /* floor of a + b*flops (a fit can dip below 0) */
};

/* Fits seconds = a + b*flops by least squares over the log's eval lines
 * and keeps the residual ratios (b = 0 and a = the mean when all flops are
 * equal). overhead is left 0. Returns 0, or ABC_EVALUE when the fit is not
 * usable (a prediction <= 0 at the log's own flops everywhere), or
 * ABC_ENOMEM. Free with sim_cost_free. */
int sim_cost_fit(const struct sim_log *log, struct sim_cost *cost, char *err);

/* Frees what sim_cost_fit allocated. */
void sim_cost_free(struct sim_cost *cost);

/* The per-dispatch overhead the log's own run implies: its evaluations
 * replayed with their logged seconds, in log order, on its workers (ranks-1,
 * or 1 for one rank) with the dispatch rule of its schedule (sync: one
 * dynamic queue per batch, a batch being a run of lines of the same cycle
 * and phase; async: the init batch, then one queue), the overhead o found
 * by bisection such that the replay's wall time equals the done line's
 * elapsed_s. When the log has its cycle 0 line, only what came after it
 * is replayed, against the elapsed time after it, so that the run's
 * start-up (the baseline broadcast, the workers' data loading) is not
 * taken for dispatch overhead; else o also carries the start-up, spread
 * over the dispatches. 0 when the replay alone already takes longer.
 * Returns 0 and *o, or ABC_EVALUE when the log has no done line. */
int sim_overhead_fit(const struct sim_log *log, double *o, char *err);

/* Wall time of the replay sim_overhead_fit solves for, with overhead o
 * (from the cycle 0 line on, when the log has it). */
double sim_replay_wall(const struct sim_log *log, double o);

/* What a simulated search runs on. */
struct sim_setup {
    struct colony_params p;  /* as search_colony_params makes them */
    const struct model *pre; /* the baseline: arch, widths, input shape */
    const struct structure_map *map; /* codes to structures as the search
                                        maps them; NULL: code/10 of pre's
                                        widths, no target */
    const struct sim_cost *cost;
    const struct sim_log *log; /* fitness surrogate: nearest logged code */
    uint64_t seed;             /* residual draws */
    /* Evaluation groups (search.ranks_per_eval): g ranks train one
     * candidate data-parallel, so a slot of the virtual clock is g
     * workers. A candidate's seconds t (the single-rank fit) become
     *   t * (train_frac / (g * dp_eff) + 1 - train_frac)
     *     + steps * (ar_alpha * ceil(log2 g) + ar_beta * bytes * 2(g-1)/g)
     * with bytes = 4 * its parameters: the training and validation share
     * split over g ranks, the rest (slicing, set-up) done by each, and one
     * gradient
     * sum per step on the alpha-beta cost measured for 2 ranks
     * (bench_allreduce). g 0 in sim_run: this group (1 if unset). */
    int group;
    double train_frac; /* of an evaluation's seconds: training and
                          validation (the log; see group_model) */
    int steps;         /* gradient sums per evaluation */
    double ar_alpha;   /* seconds per gradient sum (latency) */
    double ar_beta;    /* seconds per byte summed */
    double dp_eff;     /* parallel efficiency of the training share (1:
                          ideal; a measured value: images/s on g ranks over
                          g times one rank's) */
};

/* One simulated search. */
struct sim_result {
    int workers;
    int async;
    double wall_s; /* virtual seconds from start to the last result */
    uint64_t evaluations;
    double busy_s; /* evaluation seconds over all workers */
    double util;   /* busy_s / (workers * wall_s) */
    double evals_per_s;
    int ncycles;  /* entries of best: init + max_cycles */
    double *best; /* best fitness after init (0) and each cycle */
    double best_fitness;
    int64_t best_flops; /* MACs of the best structure */
};

/* Runs the colony of s on `workers` virtual workers (>= 1) with the sync
 * or (async != 0) async schedule, to the end of the search. Deterministic
 * in s (and, for async, in the simulated order of arrival: earliest finish
 * first, the lower worker on ties). Returns 0 and *out (free with
 * sim_result_free), or a negative ABC_E* code from the colony or the
 * model. */
int sim_run(const struct sim_setup *s, int workers, int async,
            struct sim_result *out, char *err);

/* Frees what sim_run allocated. */
void sim_result_free(struct sim_result *r);

/* What `abcprune simulate` asks for. */
struct sim_opts {
    const char *log_path; /* NULL: OUT/search.jsonl of the config */
    const int *workers;   /* worker counts to simulate */
    int nworkers;
    int sync, async; /* schedules to simulate (at least one) */
    double overhead; /* seconds per dispatch; < 0: sim_overhead_fit */
    int group;       /* ranks per evaluation: 1, or 0 = the config's
                        search.ranks_per_eval (0 there: floor(W / sn)) */
    int have_ar;     /* ar_alpha and ar_beta given (needed for groups) */
    double ar_alpha, ar_beta; /* see sim_setup */
    double dp_eff;            /* see sim_setup; 0: 1 */
};

/* The CSV header sim_sweep writes (no newline). */
#define SIM_CSV_HEADER                                                         \
    "schedule,workers,sn,wall_s,evaluations,evals_per_s,worker_util,"          \
    "best_fitness_per_cycle,final_best_fitness,final_flops,cost_a_s,"          \
    "cost_b_s_per_mflop,overhead_s,ranks_per_eval"

/* Simulates the search config c describes (its colony: search section,
 * seed, model) from the log o->log_path: fits the cost model and the
 * overhead, says what it fitted on `progress` (may be NULL), and for every
 * worker count and schedule writes one CSV row (SIM_CSV_HEADER first) to
 * csv. The residual draws derive from c->seed. Returns 0 or a negative
 * ABC_E* code (bad log, config or model). */
int sim_sweep(const struct config *c, const struct sim_opts *o, FILE *csv,
              FILE *progress, char *err);

#endif

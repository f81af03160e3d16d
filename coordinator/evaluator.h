/* evaluator.h - how rank 0 has structures evaluated, and the two
 * scheduling loops that drive it.
 *
 * An evaluator has `slots` evaluations running at once; the caller submits
 * a job to an idle slot and waits for the next result of any busy slot.
 * Three implementations: in this process (one slot, evaluated when waited
 * for), the worker ranks over MPI (one slot per worker: msgpack
 * eval_request / eval_result), both here (rank_evaluator), and a virtual
 * clock driven by a cost model (simulate.c). The search, proxycheck and the
 * simulator all schedule through evaluator_run (a batch: the sync phases)
 * and evaluator_run_async (the async steady state), so the simulator
 * replays exactly the scheduling the search does. */
#ifndef ABC_EVALUATOR_H
#define ABC_EVALUATOR_H

#include <mpi.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "colony.h"
#include "groups.h"
#include "io/config.h"
#include "messages.h"
#include "nn/model.h"
#include "prune/prune.h"
#include "train/train.h"

/* One evaluation: the request a rank evaluates and the candidate it was
 * made from. An evaluator reads what it needs: ranks the request, the
 * virtual clock the candidate; the other may be NULL. */
struct eval_job {
    const struct proto_eval_request *rq;
    const struct candidate *cd;
};

struct evaluator;

struct evaluator_ops {
    /* Starts job on slot (0 <= slot < slots, idle). job is only read
     * during the call. Returns 0 or an error. */
    int (*submit)(struct evaluator *ev, int slot, const struct eval_job *job,
                  char *err);
    /* Waits for the next result of a busy slot: 0 with *slot (now idle)
     * and *res (a failed evaluation is a result: ok 0, its error),
     * ABC_ESTOPPED (a stop signal; the busy slots' work is lost and made
     * again on resume), ABC_ETIMEOUT (a slot is hung: the same, and the
     * job must end without waiting for it), or an error. */
    int (*wait)(struct evaluator *ev, int *slot, struct proto_eval_result *res,
                char *err);
};

/* The interface; an implementation embeds it as its first member. */
struct evaluator {
    const struct evaluator_ops *ops;
    int slots; /* >= 1 */
};

/* Called as each result of evaluator_run lands (i: the job's index); a
 * non-zero return stops the run with that error. */
typedef int (*evaluator_done_fn)(void *ctx, int i,
                                 const struct proto_eval_result *res,
                                 char *err);

/* The sync schedule's loop: evaluates jobs[0..n), each exactly once, as a
 * dynamic queue (pruned nets differ in cost): job i goes to the lowest
 * idle slot, and each slot that frees takes the next job. Results go to
 * res[i] (res may be NULL) and to done (may be NULL) as they land. Returns
 * 0, ABC_ESTOPPED (the results that landed were passed to done), or an
 * error. */
int evaluator_run(struct evaluator *ev, const struct eval_job *jobs, int n,
                  struct proto_eval_result *res, evaluator_done_fn done,
                  void *ctx, char *err);

/* What evaluator_run_async calls back; ctx is passed to each. */
struct evaluator_async_hooks {
    /* Makes cd's request into *rq (NULL: the evaluator needs none). */
    int (*request)(void *ctx, const struct candidate *cd,
                   struct proto_eval_request *rq, char *err);
    /* After colony_async_next gave a role or none (skipped scouts can end
     * cycles, or the search). May be NULL. */
    int (*issued)(void *ctx, char *err);
    /* cd's result landed: apply it (colony_async_apply, which releases
     * cd) and whatever else the caller does with a result. */
    int (*take)(void *ctx, const struct candidate *cd,
                const struct proto_eval_result *res, char *err);
};

/* The async schedule's loop, from col's state (colony_async_begin done) to
 * the end: every idle slot, lowest first, gets the colony's next role at
 * once; each result is taken as it lands, then the idle slots are filled
 * again. Returns 0 when no role is left and none is in flight, ABC_ESTOPPED
 * (the roles in flight are made again on resume), or an error. */
int evaluator_run_async(struct evaluator *ev, struct colony *col,
                        const struct evaluator_async_hooks *h, void *ctx,
                        char *err);

/* ---- the implementation on ranks: in process, or the worker ranks ---- */

struct rank_evaluator {
    struct evaluator base;   /* slots: 1 in process, else the workers */
    MPI_Comm comm;           /* rank 0 of it is this process */
    int nranks;              /* 1: in-process */
    const struct model *pre; /* the baseline; not owned */
    enum filter_init how;
    const struct data_splits *data;    /* in-process only; not owned */
    const volatile sig_atomic_t *stop; /* raised by a signal */
    FILE *notes;         /* replies that are ignored are reported here (may
                            be NULL) */
    double timeout_s;    /* workers: a slot busy longer is hung (wait returns
                            ABC_ETIMEOUT); 0: no limit */
    int *leader;         /* per slot: the rank it sends to */
    uint64_t *expect;    /* per slot: the eval_id it was sent */
    double *started;     /* per slot: MPI_Wtime() it was sent */
    unsigned char *busy; /* per slot */
    struct proto_eval_request here; /* in-process: the submitted job */
    uint64_t evals_here;            /* evaluations finished */
    double busy_s;                  /* their evaluation seconds */
    uint64_t ignored;               /* replies ignored (see notes) */
};

/* Sets up ev over comm (rank 0 of it; the other ranks run worker_serve):
 * one slot per evaluation group of gr (eval_groups_make; NULL: one per
 * worker), requests to the group's leader. data is needed (non-NULL) only
 * when comm has one rank. Returns 0 or ABC_ENOMEM/ABC_EMPI. */
int rank_evaluator_init(struct rank_evaluator *ev, MPI_Comm comm,
                        const struct eval_groups *gr, const struct model *pre,
                        enum filter_init how, const struct data_splits *data,
                        const volatile sig_atomic_t *stop, FILE *notes,
                        char *err);

/* Frees what rank_evaluator_init allocated (safe on a zeroed ev). */
void rank_evaluator_free(struct rank_evaluator *ev);

/* Rank 0's side of the start of a job with workers: loads the baseline
 * checkpoint path (empty: fails), checks it was trained on c's split, and
 * broadcasts its bytes to the workers (worker_serve), or length 0 when any
 * of that failed, so no rank waits forever. Returns 0 and *pre (caller
 * destroys), or an error. */
int evaluator_share_baseline(MPI_Comm comm, const struct config *c,
                             const char *path, struct model **pre, char *err);

/* Sends every worker a shutdown (best effort: used on error paths too). */
void evaluator_shutdown(MPI_Comm comm, const char *reason);

#endif

/* evaluator.h - rank 0's one way to have structures evaluated: in this
 * process when the job has one rank, else by the worker ranks (msgpack
 * eval_request / eval_result over MPI). The search (sync batches and the
 * async steady state) and proxycheck hand it requests; it owns the
 * dispatch, the decoding of results and the stop flag. */
#ifndef ABC_EVALUATOR_H
#define ABC_EVALUATOR_H

#include <mpi.h>
#include <signal.h>
#include <stdint.h>

#include "io/config.h"
#include "messages.h"
#include "nn/model.h"
#include "prune/prune.h"
#include "train/train.h"

struct evaluator {
    MPI_Comm comm;
    int nranks;              /* 1: in-process */
    const struct model *pre; /* the baseline; not owned */
    enum filter_init how;
    const struct data_splits *data;    /* in-process only; not owned */
    const volatile sig_atomic_t *stop; /* raised by a signal */
    uint64_t evals_here;               /* evaluations finished */
    double busy_s;                     /* their evaluation seconds */
};

/* Rank 0's side of the start of a job with workers: loads the baseline
 * checkpoint path (empty: fails), checks it was trained on c's split, and
 * broadcasts its bytes to the workers (worker_serve), or length 0 when any
 * of that failed, so no rank waits forever. Returns 0 and *pre (caller
 * destroys), or an error. */
int evaluator_share_baseline(MPI_Comm comm, const struct config *c,
                             const char *path, struct model **pre, char *err);

/* Sends every worker a shutdown (best effort: used on error paths too). */
void evaluator_shutdown(MPI_Comm comm, const char *reason);

/* Sets up ev over comm (rank 0 of it; the other ranks run worker_serve).
 * data is needed (non-NULL) only when comm has one rank. */
void evaluator_init(struct evaluator *ev, MPI_Comm comm,
                    const struct model *pre, enum filter_init how,
                    const struct data_splits *data,
                    const volatile sig_atomic_t *stop);

/* Called as each result of evaluator_run lands (i: the request's index);
 * a non-zero return stops the run with that error. */
typedef int (*evaluator_done_fn)(void *ctx, int i,
                                 const struct proto_eval_result *res,
                                 char *err);

/* Evaluates rq[0..n), each exactly once, results into res[i]: in order in
 * process, else on whichever worker is free (a dynamic queue: pruned nets
 * differ in cost). A failed evaluation is a result (ok 0, its error), not
 * an error. Returns 0, ABC_ESTOPPED (the results that landed were passed
 * to done), or an error. */
int evaluator_run(struct evaluator *ev, const struct proto_eval_request *rq,
                  int n, struct proto_eval_result *res, evaluator_done_fn done,
                  void *ctx, char *err);

/* The steady-state primitives (workers only, nranks > 1). */
int evaluator_send(struct evaluator *ev, int worker,
                   const struct proto_eval_request *rq, char *err);
/* Waits (sleeping) for the next result of any worker: 0 with *src and
 * *res decoded (an unreadable one, or one for another eval than expect[src],
 * becomes a failed result naming why), ABC_ESTOPPED (a stop signal here or
 * a worker's "stopped" reply), or an error. */
int evaluator_await(struct evaluator *ev, const uint64_t *expect, int *src,
                    struct proto_eval_result *res, char *err);

/* Evaluates rq in this process (nranks 1): 0, ABC_ESTOPPED or an error. */
int evaluator_local(struct evaluator *ev, const struct proto_eval_request *rq,
                    struct proto_eval_result *res, char *err);

#endif

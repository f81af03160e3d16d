/* worker.h - the loop of worker ranks 1..N-1: receive the pretrained model
 * once (broadcast from rank 0), then answer eval_requests with eval_results
 * until a shutdown arrives. */
#ifndef ABC_WORKER_H
#define ABC_WORKER_H

#include <mpi.h>
#include <signal.h>

#include "io/config.h"

/* Serves evaluations for rank 0 of comm. Collective with search_run on
 * rank 0: takes part in the model broadcast first. c is this rank's copy of
 * the experiment config (data, filter choice, threads). stop: set by a
 * signal handler; an evaluation under way is abandoned and the loop waits
 * for rank 0's shutdown. Returns 0 after a shutdown, or an error (MPI
 * failure, bad model bytes, data that cannot be loaded): main then calls
 * MPI_Abort so rank 0 does not wait forever. */
int worker_serve(MPI_Comm comm, const struct config *c,
                 const volatile sig_atomic_t *stop, char *err);

#endif

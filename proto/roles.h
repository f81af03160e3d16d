/* roles.h - the two roles a rank of abcprune plays, as the program's entry
 * (proto/main.c) joins them: the command line on rank 0 (coordinator/cli.c)
 * and the evaluation server on ranks 1..N-1 (worker/worker.c). The
 * coordinator receives the worker role as a function, so neither folder
 * includes the other. */
#ifndef ABC_ROLES_H
#define ABC_ROLES_H

#include <mpi.h>
#include <signal.h>

#include "io/config.h"

/* A worker rank's loop: serves evaluations for rank 0 of comm until a
 * shutdown arrives (worker_serve). Returns 0, or an error with err set. */
typedef int (*role_serve_fn)(MPI_Comm comm, const struct config *c,
                             const volatile sig_atomic_t *stop, char *err);

/* Runs the abcprune command line (argv as main receives it) and returns
 * the process exit status; `search` and `run` hand worker ranks to serve. */
int cli_main(int argc, char **argv, role_serve_fn serve);

#endif

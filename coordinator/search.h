/* search.h - rank 0's side of the ABC structure search: reads the baseline,
 * broadcasts it to the workers, and runs the colony with evaluations handed
 * to whichever worker is free (or evaluated in-process when there is one
 * rank): phase by phase (sync) or one candidate per free worker (async). It
 * writes the run log, the colony checkpoint (after every phase; async:
 * after every result) and best.yaml. */
#ifndef ABC_SEARCH_H
#define ABC_SEARCH_H

#include <mpi.h>
#include <signal.h>
#include <stdio.h>

#include "colony.h"
#include "io/config.h"
#include "nn/model.h"

/* Files of a run, all under the config's out_dir. */
#define SEARCH_BASELINE "baseline.ckpt"
#define SEARCH_COLONY "colony.ckpt"
#define SEARCH_LOG "search.jsonl"
#define SEARCH_BEST "best.yaml"
/* The random search's files (the same names) go into this subdirectory. */
#define SEARCH_RANDOM_DIR "randsearch"

struct search_opts {
    int resume; /* continue from colony.ckpt if it exists */
    const volatile sig_atomic_t *stop; /* raised by SIGTERM/SIGUSR1 */
    FILE *progress;                    /* one line per phase (NULL: quiet) */
    int random; /* 1: random search (colony_params.random), the
                   colony's fair null at the same evaluation count,
                   same fitness and same schedule; its files go to
                   out_dir/randsearch/ */
};

/* Runs the search on rank 0 of comm; collective with worker_serve on every
 * other rank (the baseline broadcast, then requests until a shutdown, which
 * search_run sends on every path, error or not). Returns 0 when the search
 * is done, ABC_ESTOPPED when a signal stopped it after writing the colony
 * checkpoint (resume with opts.resume), or another error. */
int search_run(MPI_Comm comm, const struct config *c,
               const struct search_opts *o, char *err);

/* Path of `file` in c's out_dir, into buf. Returns 0 or ABC_EVALUE if too
 * long. */
int search_path(char *buf, size_t n, const struct config *c, const char *file,
                char *err);

/* *oc = *c with out_dir where a search's files go: c's own, or
 * out_dir/randsearch for a random search. Returns 0 or ABC_EVALUE. */
int search_out_config(struct config *oc, const struct config *c, int random,
                      char *err);

/* The colony parameters a search of c over the baseline pre runs with
 * (search section; the colony's seed derives from c->seed; layers and
 * widths from pre), checked. Returns 0 or ABC_EVALUE naming c's file. The
 * simulator (simulate.h) uses it to run the same colony. */
int search_colony_params(struct colony_params *p, const struct config *c,
                         const struct model *pre, char *err);

/* Collective with worker_serve: tells the workers there will be no search
 * (an empty baseline broadcast), e.g. when training the baseline failed. */
void search_release_workers(MPI_Comm comm);

#endif

/* proxycheck.h - is a search worth running on this model? Before a
 * researcher spends the cluster on a search, proxycheck measures whether
 * the search's fitness proxies rank structures the way fine-tuning does,
 * at the config's FLOPs target: it samples `structures` structures of the
 * search's own space (the uniform cut, then random codes scaled to the
 * target exactly as the search scales them), scores each with every proxy
 * (train: search.fitness's short training; adaptive_bn: BN statistics
 * re-estimated, no training), and fine-tunes each briefly with `seeds`
 * seeds (the reference), all as evaluations on the MPI workers (one per
 * task) or in-process. Writes OUT/proxycheck/proxycheck.csv (one row per
 * structure), proxycheck.md (Kendall tau-b and Spearman rho of each proxy
 * against the mean reference, with bootstrap 95 % intervals; between-
 * structure against seed variance of the reference; the headroom: best
 * structure minus uniform, and what each proxy's pick gains) and, with
 * gnuplot, proxycheck.png (each proxy against the reference). */
#ifndef ABC_PROXYCHECK_H
#define ABC_PROXYCHECK_H

#include <mpi.h>
#include <signal.h>
#include <stdio.h>

#include "io/config.h"

#define PROXYCHECK_DIR "proxycheck"

/* Runs on rank 0 of comm (the other ranks run worker_serve). Progress on
 * `progress` (may be NULL), the summary on out (may be NULL). Returns 0,
 * ABC_ESTOPPED (nothing written: run it again) or an error. */
int proxycheck_run(MPI_Comm comm, const struct config *c,
                   const volatile sig_atomic_t *stop, FILE *progress, FILE *out,
                   char *err);

#endif

/* groups.h - evaluation groups: the worker ranks 1..W of a job in groups
 * of g ranks (search.ranks_per_eval) that evaluate one structure together,
 * training it data-parallel (dp.h). Rank 0 hands a candidate to a group's
 * leader (its lowest rank); the leader passes the request to its members
 * and replies with the group's result. Groups are consecutive ranks:
 * group k is ranks 1 + k*g .. (k+1)*g. With W not a multiple of g the last
 * W mod g workers have no group and idle (evaluation_groups says so). With
 * g fixed every group computes exactly what every other would, so a sync
 * search gives the same result for any number of groups. */
#ifndef ABC_PROTO_GROUPS_H
#define ABC_PROTO_GROUPS_H

#include <mpi.h>

#include "io/config.h"

struct eval_groups {
    int g;         /* ranks per group */
    int ngroups;   /* >= 1 */
    int idle;      /* workers in no group */
    int group;     /* this rank's group, -1: rank 0 or an idle worker */
    int is_leader; /* this rank leads its group */
    MPI_Comm comm; /* this rank's group (leader = rank 0 of it), or
                      MPI_COMM_NULL */
    int *leaders;  /* ngroups world ranks */
};

/* The group size c asks for on a job of nranks ranks: search.ranks_per_eval,
 * or when it is 0 (auto) floor(workers / search.sn), at least 1. Returns 0
 * with *g, or ABC_EVALUE naming the key when g exceeds the workers. Not
 * collective. */
int eval_groups_size(const struct config *c, int nranks, int *g, char *err);

/* COLLECTIVE over world (every rank, rank 0 too): forms the groups of size
 * eval_groups_size (MPI_Comm_split). Every rank computes the same, so a
 * bad size fails on every rank alike before the split. Returns 0, or
 * ABC_EVALUE / ABC_ENOMEM / ABC_EMPI. */
int eval_groups_make(MPI_Comm world, const struct config *c,
                     struct eval_groups *gr, char *err);

/* Frees the group communicator and the leaders (safe on a gr that
 * eval_groups_make failed on, or one with comm MPI_COMM_NULL and leaders
 * NULL). */
void eval_groups_free(struct eval_groups *gr);

#endif

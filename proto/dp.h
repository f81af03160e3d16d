/* dp.h - data-parallel training over MPI. Implements the engine's
 * gradient-sum hook (train/train.h, struct train_dp) with nonblocking
 * collectives in buckets and a fixed summation order, and the protocol by
 * which rank 0 of a communicator leads the other ranks through trainings:
 *   rank 0:  dp_lead (one call per training) ..., then dp_release
 *   others:  dp_follow (returns once rank 0 calls dp_release)
 * Rank 0 keeps every decision and every file (logs, checkpoints); the
 * followers receive the model and its schedule, open the same data split
 * themselves (checked by size and CRC-32), train their shards and forget
 * the result: the weights are rank 0's, bit for bit (checked at the end of
 * every training).
 *
 * Reduction (environment, for measurements): ABC_DP_REDUCE=ordered (the
 * default: each rank sums one slice of every bucket over the ranks in rank
 * order, MPI_Ialltoallv then MPI_Iallgatherv, so the bits never depend on
 * MPI's algorithm choice) or allreduce (MPI_Iallreduce per bucket: MPI
 * does not promise the same summation order on every rank and run);
 * ABC_DP_BUCKET_KB (default 1024) sets the bucket size. Training sums the
 * gradient overlapped with the backward pass (sum_begin / sum_ready /
 * sum_end): a bucket's exchange starts as soon as the backward pass has
 * finished every gradient in it, and MPI is given a chance to progress
 * after every layer (ABC_DP_OVERLAP=0: sum after the backward pass, for
 * measuring the overlap). Waits poll and sleep (transport.h), so a rank that
 * waits does not burn a core. */
#ifndef ABC_PROTO_DP_H
#define ABC_PROTO_DP_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include <mpi.h>

#include "io/config.h"
#include "prune/slim.h"
#include "train/train.h"

enum dp_reduce {
    DP_REDUCE_ORDERED,   /* slices summed in rank order (deterministic) */
    DP_REDUCE_ALLREDUCE, /* MPI_Iallreduce with MPI_SUM */
};

struct dp;

/* Creates the data-parallel state of this rank of comm (whose error
 * handler must be MPI_ERRORS_RETURN, as transport.h says). Not collective.
 * Reads ABC_DP_REDUCE and ABC_DP_BUCKET_KB. Returns 0, ABC_EVALUE (a bad
 * environment value, named), ABC_ENOMEM or ABC_EMPI. */
int dp_create(struct dp **out, MPI_Comm comm, char *err);
void dp_destroy(struct dp *dp);

/* The engine's view of dp (train_io.dp), owned by dp. */
struct train_dp *dp_hook(struct dp *dp);

/* Seconds this rank spent in the hook's gradient sums since dp_create. */
double dp_reduce_seconds(const struct dp *dp);

/* Rank 0, COLLECTIVE with the others' dp_follow: trains m with schedule tc
 * on s (seed, st, io as train_model takes them; io may have a log, a
 * checkpoint, progress and a stop flag, but no after_backward: Network
 * Slimming's term travels as pen, NULL for none) together with every
 * other rank, which receive m and st (a checkpoint), tc, seed and pen in a
 * train_phase message. Returns train_model's result; ABC_EVALUE when tc
 * or io cannot travel; ABC_EMPI. */
int dp_lead(struct dp *dp, struct model *m, const struct train_config *tc,
            const struct data_splits *s, uint64_t seed, struct train_state *st,
            const struct train_io *io, const struct slim_penalty *pen,
            char *err);

/* Rank 0, COLLECTIVE with the others' dp_follow: tells them that no more
 * trainings come (they return). Returns 0 or ABC_EMPI. */
int dp_release(struct dp *dp, char *err);

/* Ranks other than 0, COLLECTIVE with rank 0's dp_lead/dp_release: joins
 * every training rank 0 leads, on c's data split (opened at the first
 * training), until rank 0 calls dp_release. stop (may be NULL): a signal
 * on this rank stops the training on every rank (rank 0 then decides what
 * comes next). An error every rank shares (a stop, a non-finite loss, rank
 * 0's failure to write its checkpoint) is rank 0's to report: this rank
 * goes on following. Returns 0 once released, or this rank's own error
 * (bad message, other data than rank 0's, no memory, MPI), after which
 * the job cannot go on: the caller aborts it. */
int dp_follow(struct dp *dp, const struct config *c,
              const volatile sig_atomic_t *stop, char *err);

/* CRC-32 of s's training and validation images and labels: what rank 0
 * and its followers compare to know that they train on the same data. */
uint64_t dp_data_crc(const struct data_splits *s);

#endif

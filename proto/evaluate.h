/* evaluate.h - what an eval_request means: the fitness budget it carries
 * converted to and from the config's, and the one engine call that answers
 * it. Worker ranks and the single-rank coordinator both answer requests with
 * proto_evaluate, so a search gives the same fitness either way. */
#ifndef ABC_PROTO_EVALUATE_H
#define ABC_PROTO_EVALUATE_H

#include <signal.h>

#include "io/config.h"
#include "messages.h"
#include "prune/fitness.h"

/* The error text of a result whose worker was stopped by a signal before it
 * finished: not a failed evaluation, so rank 0 does not score it but stops
 * the search (saving it) as if it had been signalled itself. */
#define PROTO_STOPPED_ERROR "stopped by a signal" /* its error text */

/* 1 when res is a worker's "stopped" answer (res->stopped). */
int proto_result_stopped(const struct proto_eval_result *res);

/* The config's fitness budget as it travels in a request, and back. */
void proto_budget_from_config(struct proto_budget *b,
                              const struct fitness_config *f);
void proto_budget_to_config(struct fitness_config *f,
                            const struct proto_budget *b);

/* Evaluates request rq on `pretrained` (filters chosen by `how`, data d)
 * and fills res, ok or with the error text: a failed evaluation (bad
 * structure, NaN loss, no memory) is a result, not a failure of the caller.
 * rank goes into res->worker. stop (may be NULL) cuts the training short;
 * returns ABC_ESTOPPED then (res not meaningful), else 0. With dp (an
 * evaluation group, groups.h) the training is data-parallel over its ranks
 * and the call is COLLECTIVE over them; NULL: this rank alone. */
int proto_evaluate(const struct proto_eval_request *rq,
                   const struct model *pretrained, enum filter_init how,
                   const struct data_splits *d, struct train_dp *dp, int rank,
                   const volatile sig_atomic_t *stop,
                   struct proto_eval_result *res);

#endif

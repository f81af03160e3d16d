/* evaluator.c - the two scheduling loops over any evaluator, and the
 * evaluator on ranks: in process or the worker ranks (see evaluator.h). */
#include "evaluator.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fileio.h"
#include "evaluate.h"
#include "io/checkpoint.h"
#include "transport.h"

int evaluator_share_baseline(MPI_Comm comm, const struct config *c,
                             const char *path, struct model **pre, char *err)
{
    char *bytes = NULL;
    size_t len = 0;
    int rc = 0;
    *pre = NULL;
    if (!path[0])
        rc = abc_errf(err, ABC_EVALUE, "%s: no baseline path", c->path);
    else if (!file_exists(path))
        rc = abc_errf(err, ABC_EIO,
                      "%s: no baseline checkpoint: train it first "
                      "(abcprune train %s)",
                      path, c->path);
    if (!rc)
        rc = file_read_all(path, "checkpoint", CHECKPOINT_MAX_BYTES, &bytes,
                           &len, err);
    struct train_state st = {0};
    if (!rc) rc = checkpoint_load_mem(path, bytes, len, pre, &st, err);
    free(st.velocity);
    if (!rc && (rc = checkpoint_check_split(path, &st, c, err))) {
        model_destroy(*pre);
        *pre = NULL;
    }
    size_t send_len = rc ? 0 : len;
    char e2[ABC_ERRLEN];
    int brc = proto_bcast_bytes(comm, 0, &bytes, &send_len, rc ? e2 : err);
    free(bytes);
    if (!rc && brc) {
        model_destroy(*pre);
        *pre = NULL;
    }
    return rc ? rc : brc;
}

void evaluator_shutdown(MPI_Comm comm, const char *reason)
{
    int nranks = 1;
    char err[ABC_ERRLEN];
    if (proto_comm_info(comm, NULL, &nranks, err)) return; /* best effort */
    struct proto_shutdown s;
    memset(&s, 0, sizeof s);
    snprintf(s.reason, sizeof s.reason, "%s", reason);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (proto_pack_shutdown(&s, &sb, err) == 0)
        for (int w = 1; w < nranks; w++)
            proto_send(comm, w, TAG_SHUTDOWN, sb.data, sb.size, err);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- the scheduling loops ---- */

/* The lowest idle slot, or -1. */
static int idle_slot(const int *job_of, int slots)
{
    for (int s = 0; s < slots; s++)
        if (job_of[s] < 0) return s;
    return -1;
}

int evaluator_run(struct evaluator *ev, const struct eval_job *jobs, int n,
                  struct proto_eval_result *res, evaluator_done_fn done,
                  void *ctx, char *err)
{
    int *job_of = malloc(sizeof(int) * (size_t)ev->slots);
    if (!job_of) return abc_errf(err, ABC_ENOMEM, "out of memory");
    for (int s = 0; s < ev->slots; s++)
        job_of[s] = -1;
    int next = 0, inflight = 0, rc = 0;
    while (!rc && (next < n || inflight > 0)) {
        int s;
        while (!rc && next < n && (s = idle_slot(job_of, ev->slots)) >= 0) {
            if ((rc = ev->ops->submit(ev, s, &jobs[next], err))) break;
            job_of[s] = next++;
            inflight++;
        }
        if (rc) break;
        struct proto_eval_result got;
        if ((rc = ev->ops->wait(ev, &s, &got, err))) break;
        int i = job_of[s];
        job_of[s] = -1;
        inflight--;
        if (res) res[i] = got;
        if (done) rc = done(ctx, i, &got, err);
    }
    free(job_of);
    return rc;
}

int evaluator_run_async(struct evaluator *ev, struct colony *col,
                        const struct evaluator_async_hooks *h, void *ctx,
                        char *err)
{
    const struct candidate **held = calloc((size_t)ev->slots, sizeof *held);
    if (!held) return abc_errf(err, ABC_ENOMEM, "out of memory");
    int inflight = 0, rc = 0;
    for (;;) {
        /* fill the idle slots, lowest first, while the colony has roles */
        for (int s = 0; s < ev->slots && !rc; s++) {
            if (held[s]) continue;
            const struct candidate *cd;
            if ((rc = colony_async_next(col, &cd, err)) < 0) break;
            rc = 0;
            if (h->issued && (rc = h->issued(ctx, err))) break;
            if (!cd) break;
            struct proto_eval_request rq;
            struct eval_job job = {.rq = NULL, .cd = cd};
            if (h->request) {
                if ((rc = h->request(ctx, cd, &rq, err))) break;
                job.rq = &rq;
            }
            if ((rc = ev->ops->submit(ev, s, &job, err))) break;
            held[s] = cd;
            inflight++;
        }
        if (rc || inflight == 0) break;
        int s;
        struct proto_eval_result res;
        if ((rc = ev->ops->wait(ev, &s, &res, err))) break;
        const struct candidate *cd = held[s];
        held[s] = NULL;
        inflight--;
        if ((rc = h->take(ctx, cd, &res, err))) break;
    }
    free(held);
    return rc;
}

/* ---- on ranks ---- */

static int local_submit(struct evaluator *base, int slot,
                        const struct eval_job *job, char *err)
{
    struct rank_evaluator *ev = (struct rank_evaluator *)base;
    (void)slot;
    if (!job->rq)
        return abc_errf(err, ABC_EVALUE, "evaluator: a job without a request");
    ev->here = *job->rq;
    ev->busy[0] = 1;
    return 0;
}

static int local_wait(struct evaluator *base, int *slot,
                      struct proto_eval_result *res, char *err)
{
    struct rank_evaluator *ev = (struct rank_evaluator *)base;
    if (!ev->busy[0])
        return abc_errf(err, ABC_EVALUE, "evaluator: nothing to wait for");
    ev->busy[0] = 0;
    *slot = 0;
    int rc = proto_evaluate(&ev->here, ev->pre, ev->how, ev->data, NULL, 0,
                            ev->stop, res);
    if (rc == ABC_ESTOPPED) return abc_errf(err, rc, "stopped by a signal");
    if (rc)
        return abc_errf(err, rc, "evaluation %llu failed",
                        (unsigned long long)ev->here.eval_id);
    ev->evals_here++;
    ev->busy_s += res->wall_s;
    return 0;
}

static int mpi_submit(struct evaluator *base, int slot,
                      const struct eval_job *job, char *err)
{
    struct rank_evaluator *ev = (struct rank_evaluator *)base;
    if (!job->rq)
        return abc_errf(err, ABC_EVALUE, "evaluator: a job without a request");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int rc = proto_pack_eval_request(job->rq, &sb, err);
    if (!rc)
        rc = proto_send(ev->comm, ev->leader[slot], TAG_REQUEST, sb.data,
                        sb.size, err);
    msgpack_sbuffer_destroy(&sb);
    if (!rc) {
        ev->expect[slot] = job->rq->eval_id;
        ev->started[slot] = MPI_Wtime();
        ev->busy[slot] = 1;
    }
    return rc;
}

/* Reports a reply that is not taken as a result (and counts it). */
static void note_ignored(struct rank_evaluator *ev, int src, const char *why)
{
    ev->ignored++;
    if (ev->notes)
        fprintf(ev->notes, "evaluator: ignored a reply from rank %d: %s\n", src,
                why);
}

static int mpi_wait(struct evaluator *base, int *slot,
                    struct proto_eval_result *res, char *err)
{
    struct rank_evaluator *ev = (struct rank_evaluator *)base;
    for (;;) {
        char *buf = NULL;
        size_t len = 0;
        int src = -1, late = -1; /* late: the slot sent to longest ago */
        for (int s = 0; s < ev->base.slots; s++)
            if (ev->busy[s] && (late < 0 || ev->started[s] < ev->started[late]))
                late = s;
        double deadline = ev->timeout_s > 0 && late >= 0
                              ? ev->started[late] + ev->timeout_s
                              : 0;
        int rc =
            proto_recv_until(ev->comm, MPI_ANY_SOURCE, TAG_RESULT, ev->stop,
                             deadline, &buf, &len, &src, NULL, err);
        if (rc == ABC_ESTOPPED)
            return abc_errf(err, ABC_ESTOPPED, "stopped by a signal");
        if (rc == ABC_ETIMEOUT)
            return abc_errf(err, ABC_ETIMEOUT,
                            "rank %d sent no result for evaluation %llu in "
                            "%g s (search.eval_timeout_s): it is hung, or "
                            "far slower than the limit allows",
                            ev->leader[late],
                            (unsigned long long)ev->expect[late],
                            ev->timeout_s);
        if (rc) return rc; /* ABC_EMPI */
        int s = 0;
        while (s < ev->base.slots && ev->leader[s] != src)
            s++;
        if (s == ev->base.slots || !ev->busy[s]) {
            /* a rank with nothing to evaluate: nobody waits for this */
            free(buf);
            note_ignored(ev, src, "it has no evaluation in flight");
            continue;
        }
        char uerr[ABC_ERRLEN];
        uint64_t want = ev->expect[s];
        if (proto_unpack_eval_result(buf, len, res, uerr) != 0) {
            memset(res, 0, sizeof *res);
            snprintf(res->error, sizeof res->error,
                     "unreadable result from rank %d: %s", src, uerr);
        } else if (res->eval_id != want) {
            /* a result for an evaluation the rank was not sent: its real
             * answer may still come (and search.eval_timeout_s bounds the
             * wait if it does not) */
            char why[96];
            snprintf(why, sizeof why,
                     "a result for evaluation %llu, which it was not sent "
                     "(it has %llu)",
                     (unsigned long long)res->eval_id,
                     (unsigned long long)want);
            free(buf);
            note_ignored(ev, src, why);
            continue;
        }
        free(buf);
        res->worker = src;
        res->eval_id = want;
        ev->busy[s] = 0;
        *slot = s;
        if (proto_result_stopped(res)) /* not scored: made again later */
            return abc_errf(err, ABC_ESTOPPED,
                            "rank %d was stopped by a signal", src);
        ev->evals_here++;
        ev->busy_s += res->wall_s;
        return 0;
    }
}

static const struct evaluator_ops local_ops = {local_submit, local_wait};
static const struct evaluator_ops mpi_ops = {mpi_submit, mpi_wait};

int rank_evaluator_init(struct rank_evaluator *ev, MPI_Comm comm,
                        const struct eval_groups *gr, const struct model *pre,
                        enum filter_init how, const struct data_splits *data,
                        const volatile sig_atomic_t *stop, FILE *notes,
                        char *err)
{
    memset(ev, 0, sizeof *ev);
    ev->comm = comm;
    int rc = proto_comm_info(comm, NULL, &ev->nranks, err);
    if (rc) return rc;
    ev->pre = pre;
    ev->how = how;
    ev->data = data;
    ev->stop = stop;
    ev->notes = notes;
    ev->base.ops = ev->nranks == 1 ? &local_ops : &mpi_ops;
    ev->base.slots = ev->nranks == 1 ? 1 : ev->nranks - 1;
    if (gr && ev->nranks > 1) ev->base.slots = gr->ngroups;
    ev->leader = calloc((size_t)ev->base.slots, sizeof *ev->leader);
    ev->expect = calloc((size_t)ev->base.slots, sizeof *ev->expect);
    ev->started = calloc((size_t)ev->base.slots, sizeof *ev->started);
    ev->busy = calloc((size_t)ev->base.slots, 1);
    if (!ev->leader || !ev->expect || !ev->started || !ev->busy) {
        rank_evaluator_free(ev);
        return abc_errf(err, ABC_ENOMEM, "out of memory");
    }
    for (int s = 0; s < ev->base.slots; s++)
        ev->leader[s] = gr && ev->nranks > 1 ? gr->leaders[s] : s + 1;
    return 0;
}

void rank_evaluator_free(struct rank_evaluator *ev)
{
    free(ev->leader);
    free(ev->expect);
    free(ev->started);
    free(ev->busy);
    ev->leader = NULL;
    ev->expect = NULL;
    ev->started = NULL;
    ev->busy = NULL;
}

/* evaluator.c - in-process and MPI evaluation (see evaluator.h). */
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

void evaluator_init(struct evaluator *ev, MPI_Comm comm,
                    const struct model *pre, enum filter_init how,
                    const struct data_splits *data,
                    const volatile sig_atomic_t *stop)
{
    memset(ev, 0, sizeof *ev);
    ev->comm = comm;
    char err[ABC_ERRLEN];
    if (proto_comm_info(comm, NULL, &ev->nranks, err))
        ev->nranks = 1; /* then every evaluation runs here */
    ev->pre = pre;
    ev->how = how;
    ev->data = data;
    ev->stop = stop;
}

int evaluator_local(struct evaluator *ev, const struct proto_eval_request *rq,
                    struct proto_eval_result *res, char *err)
{
    int rc = proto_evaluate(rq, ev->pre, ev->how, ev->data, 0, ev->stop, res);
    if (rc == ABC_ESTOPPED) return abc_errf(err, rc, "stopped by a signal");
    if (rc)
        return abc_errf(err, rc, "evaluation %llu failed",
                        (unsigned long long)rq->eval_id);
    ev->evals_here++;
    ev->busy_s += res->wall_s;
    return 0;
}

int evaluator_send(struct evaluator *ev, int worker,
                   const struct proto_eval_request *rq, char *err)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int rc = proto_pack_eval_request(rq, &sb, err);
    if (!rc)
        rc = proto_send(ev->comm, worker, TAG_REQUEST, sb.data, sb.size, err);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

int evaluator_await(struct evaluator *ev, const uint64_t *expect, int *src,
                    struct proto_eval_result *res, char *err)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = proto_recv_or_stop(ev->comm, MPI_ANY_SOURCE, TAG_RESULT, ev->stop,
                                &buf, &len, src, NULL, err);
    if (rc == ABC_ESTOPPED)
        return abc_errf(err, ABC_ESTOPPED, "stopped by a signal");
    if (rc) return rc; /* ABC_EMPI */
    if (*src < 1 || *src >= ev->nranks) {
        free(buf);
        return abc_errf(err, ABC_EFORMAT, "result from rank %d", *src);
    }
    char uerr[ABC_ERRLEN];
    uint64_t want = expect[*src];
    if (proto_unpack_eval_result(buf, len, res, uerr) != 0) {
        memset(res, 0, sizeof *res);
        snprintf(res->error, sizeof res->error,
                 "unreadable result from rank %d: %s", *src, uerr);
    } else if (res->eval_id != want) {
        uint64_t got = res->eval_id;
        memset(res, 0, sizeof *res);
        snprintf(res->error, sizeof res->error,
                 "rank %d answered eval %llu, expected %llu", *src,
                 (unsigned long long)got, (unsigned long long)want);
    }
    free(buf);
    res->worker = *src;
    res->eval_id = want;
    if (proto_result_stopped(res)) /* not scored: made again later */
        return abc_errf(err, ABC_ESTOPPED, "rank %d was stopped by a signal",
                        *src);
    ev->evals_here++;
    ev->busy_s += res->wall_s;
    return 0;
}

int evaluator_run(struct evaluator *ev, const struct proto_eval_request *rq,
                  int n, struct proto_eval_result *res, evaluator_done_fn done,
                  void *ctx, char *err)
{
    int rc = 0;
    if (ev->nranks == 1) {
        for (int i = 0; i < n && !rc; i++)
            if (!(rc = evaluator_local(ev, &rq[i], &res[i], err)) && done)
                rc = done(ctx, i, &res[i], err);
        return rc;
    }
    int *busy = malloc(sizeof(int) * (size_t)ev->nranks);
    uint64_t *expect = calloc((size_t)ev->nranks, sizeof *expect);
    if (!busy || !expect) {
        free(busy);
        free(expect);
        return abc_errf(err, ABC_ENOMEM, "out of memory");
    }
    int next = 0, inflight = 0;
    for (int w = 0; w < ev->nranks; w++)
        busy[w] = -1;
    for (int w = 1; w < ev->nranks && next < n && !rc; w++) {
        rc = evaluator_send(ev, w, &rq[next], err);
        if (!rc) expect[w] = rq[next].eval_id, busy[w] = next++, inflight++;
    }
    while (inflight > 0 && !rc) {
        int src = -1;
        struct proto_eval_result got;
        if ((rc = evaluator_await(ev, expect, &src, &got, err))) break;
        int i = busy[src];
        if (i < 0) {
            rc = abc_errf(err, ABC_EFORMAT,
                          "result from rank %d, which has no evaluation", src);
            break;
        }
        res[i] = got;
        busy[src] = -1;
        inflight--;
        if (done) rc = done(ctx, i, &res[i], err);
        if (!rc && next < n) {
            rc = evaluator_send(ev, src, &rq[next], err);
            if (!rc)
                expect[src] = rq[next].eval_id, busy[src] = next++, inflight++;
        }
    }
    free(busy);
    free(expect);
    return rc;
}

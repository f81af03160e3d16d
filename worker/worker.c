/* worker.c - a worker rank's message loop around one engine call
 * (proto_evaluate): request in, result out, until shutdown. In evaluation
 * groups (groups.h) the leader passes each request on to its members and
 * they evaluate it together, data-parallel; the leader replies. */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/err.h"
#include "dp.h"
#include "evaluate.h"
#include "groups.h"
#include "io/checkpoint.h"
#include "messages.h"
#include "train/train.h"
#include "transport.h"

/* Sends res to rank 0. */
static int send_result(MPI_Comm comm, const struct proto_eval_result *res,
                       char *err)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int rc = proto_pack_eval_result(res, &sb, err);
    if (!rc) rc = proto_send(comm, 0, TAG_RESULT, sb.data, sb.size, err);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* Test-only fault injection (tests/test_faults.sh): the environment
 * variable ABC_FAULT holds KIND@EVAL_ID items separated by commas. When
 * this rank has evaluated EVAL_ID it misbehaves as KIND says instead of
 * sending the result: "garbage" sends bytes that are not msgpack,
 * "unknown" a message of a type nobody knows, "stray" first a result for
 * an evaluation it was never sent (then the real one), "hang" never
 * answers again. Returns the kind, or NULL (the normal case: unset). */
static const char *fault_for(uint64_t eval_id)
{
    static const char *const kinds[] = {"garbage", "unknown", "stray", "hang"};
    const char *spec = getenv("ABC_FAULT");
    while (spec && *spec) {
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            size_t n = strlen(kinds[k]);
            if (strncmp(spec, kinds[k], n) == 0 && spec[n] == '@' &&
                strtoull(spec + n + 1, NULL, 10) == eval_id)
                return kinds[k];
        }
        spec = strchr(spec, ',');
        if (spec) spec++;
    }
    return NULL;
}

/* Misbehaves as kind says in place of sending res (see fault_for).
 * Returns 1 when the result is not to be sent, 0 when it still is, or an
 * error. */
static int inject_fault(MPI_Comm comm, const char *kind,
                        const struct proto_eval_result *res, char *err)
{
    fprintf(stderr, "abcprune: worker: ABC_FAULT: %s at eval %llu\n", kind,
            (unsigned long long)res->eval_id);
    if (strcmp(kind, "hang") == 0)
        for (;;)
            sleep(1); /* until the job is aborted */
    if (strcmp(kind, "stray") == 0) {
        struct proto_eval_result other = *res;
        other.eval_id = res->eval_id + 1000000;
        int rc = send_result(comm, &other, err);
        return rc ? rc : 0;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (strcmp(kind, "unknown") == 0) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, "type", 4);
        msgpack_pack_str_with_body(&pk, "gossip", 6);
        msgpack_pack_str_with_body(&pk, "version", 7);
        msgpack_pack_int(&pk, PROTO_VERSION);
    } else { /* garbage: a msgpack array header promising more than sent */
        static const char junk[] = "\xdd\xff\xff\xff\xff garbage";
        msgpack_sbuffer_write(&sb, junk, sizeof junk - 1);
    }
    int rc = proto_send(comm, 0, TAG_RESULT, sb.data, sb.size, err);
    msgpack_sbuffer_destroy(&sb);
    return rc ? rc : 1;
}

/* What a leader (or a worker of no group, or of groups of one) needs. */
struct server {
    MPI_Comm comm; /* the job: rank 0 sends requests */
    const struct eval_groups *gr;
    struct train_dp *dp; /* its group's data-parallel hook, or NULL */
    const struct model *pre;
    enum filter_init how;
    const struct data_splits *d;
    int rank;
    const volatile sig_atomic_t *stop;
};

/* Passes request bytes (len 0: the shutdown) to the group's members. */
static int tell_members(const struct server *sv, char *buf, size_t len,
                        char *err)
{
    if (!sv->dp) return 0;
    return proto_bcast_bytes(sv->gr->comm, 0, &buf, &len, err);
}

/* Serves rank 0's requests until its shutdown: evaluates each (with its
 * group, if it leads one) and replies. */
static int serve_rank0(const struct server *sv, char *err)
{
    MPI_Comm comm = sv->comm;
    int rank = sv->rank, rc;
    for (;;) {
        char *buf = NULL;
        size_t n = 0;
        int tag = 0;
        /* Wait for rank 0 even when stopped: it sends the shutdown. */
        rc = proto_recv(comm, 0, MPI_ANY_TAG, &buf, &n, NULL, &tag, err);
        if (rc) break;
        if (tag == TAG_SHUTDOWN) {
            free(buf);
            rc = tell_members(sv, NULL, 0, err);
            break;
        }
        struct proto_eval_request rq;
        struct proto_eval_result res;
        if (tag != TAG_REQUEST) {
            rc = abc_errf(err, ABC_EFORMAT,
                          "rank %d: unexpected message tag %d from rank 0",
                          rank, tag);
            free(buf);
            break;
        }
        rc = proto_unpack_eval_request(buf, n, &rq, err);
        if (!rc && (rc = tell_members(sv, buf, n, err))) { /* MPI failed */
            free(buf);
            break;
        }
        free(buf);
        if (rc) {
            /* A request we cannot read still gets an answer, so the
             * coordinator's queue does not stall; it logs the error. */
            memset(&res, 0, sizeof res);
            res.worker = rank;
            snprintf(res.error, sizeof res.error, "rank %d: bad request: %s",
                     rank, err);
            rc = 0;
        } else if (proto_evaluate(&rq, sv->pre, sv->how, sv->d, sv->dp, rank,
                                  sv->stop, &res) == ABC_ESTOPPED) {
            /* Abandoned. Say so, so that rank 0 stops (and saves) even if
             * the signal reached only this rank; then wait for shutdown. */
            memset(&res, 0, sizeof res);
            res.eval_id = rq.eval_id;
            res.worker = rank;
            res.stopped = 1;
            snprintf(res.error, sizeof res.error, "%s", PROTO_STOPPED_ERROR);
        }
        const char *fault = fault_for(res.eval_id);
        if (fault && (rc = inject_fault(comm, fault, &res, err)) != 0) {
            if (rc < 0) break;
            rc = 0;
            continue;
        }
        if ((rc = send_result(comm, &res, err))) break;
    }
    return rc;
}

/* A group member: evaluates with its leader every request the leader
 * passes on (the leader replies), until the leader's shutdown. */
static int follow_leader(const struct eval_groups *gr, const struct model *pre,
                         enum filter_init how, const struct data_splits *d,
                         struct train_dp *dp, int rank,
                         const volatile sig_atomic_t *stop, char *err)
{
    for (;;) {
        char *buf = NULL;
        size_t n = 0;
        int rc = proto_bcast_bytes(gr->comm, 0, &buf, &n, err);
        if (rc) return rc;
        if (n == 0) { /* the shutdown */
            free(buf);
            return 0;
        }
        struct proto_eval_request rq;
        struct proto_eval_result res;
        rc = proto_unpack_eval_request(buf, n, &rq, err);
        free(buf);
        if (rc) /* the leader read these very bytes */
            return abc_errprefix(err, rc, "rank %d: group request", rank);
        proto_evaluate(&rq, pre, how, d, dp, rank, stop, &res);
    }
}

int worker_serve(MPI_Comm comm, const struct config *c,
                 const volatile sig_atomic_t *stop, char *err)
{
    int rank;
    int rc = proto_comm_info(comm, &rank, NULL, err);
    if (rc) return rc;
    char *bytes = NULL;
    size_t len = 0;
    rc = proto_bcast_bytes(comm, 0, &bytes, &len, err);
    if (rc) return rc;
    if (len == 0) { /* rank 0 failed before the search: nothing to do */
        free(bytes);
        return 0;
    }
    struct model *pre = NULL;
    rc = checkpoint_load_mem("broadcast baseline", bytes, len, &pre, NULL, err);
    free(bytes);
    if (rc) return abc_errprefix(err, rc, "rank %d", rank);
    enum filter_init how = (enum filter_init)c->search.filter_init;
    struct data_splits d;
    if ((rc = data_open(&d, c, 0, err))) {
        model_destroy(pre);
        return abc_errprefix(err, rc, "rank %d", rank);
    }
    /* collective with rank 0's right after the baseline */
    struct eval_groups gr;
    struct dp *dp = NULL;
    rc = eval_groups_make(comm, c, &gr, err);
    if (!rc && gr.comm != MPI_COMM_NULL) rc = dp_create(&dp, gr.comm, err);
    if (rc) {
        abc_errprefix(err, rc, "rank %d", rank);
    } else if (gr.group >= 0 && !gr.is_leader) {
        rc = follow_leader(&gr, pre, how, &d, dp_hook(dp), rank, stop, err);
    } else {
        struct server sv = {comm, &gr, dp ? dp_hook(dp) : NULL, pre, how, &d,
                            rank, stop};
        rc = serve_rank0(&sv, err);
    }
    dp_destroy(dp);
    eval_groups_free(&gr);
    data_close(&d);
    model_destroy(pre);
    return rc;
}

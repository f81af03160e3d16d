/* worker.c - a worker rank's message loop around one engine call
 * (proto_evaluate): request in, result out, until shutdown. */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "evaluate.h"
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

    for (;;) {
        char *buf = NULL;
        size_t n = 0;
        int tag = 0;
        /* Wait for rank 0 even when stopped: it sends the shutdown. */
        rc = proto_recv(comm, 0, MPI_ANY_TAG, &buf, &n, NULL, &tag, err);
        if (rc) break;
        if (tag == TAG_SHUTDOWN) {
            free(buf);
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
        free(buf);
        if (rc) {
            /* A request we cannot read still gets an answer, so the
             * coordinator's queue does not stall; it logs the error. */
            memset(&res, 0, sizeof res);
            res.worker = rank;
            snprintf(res.error, sizeof res.error, "rank %d: bad request: %s",
                     rank, err);
            rc = 0;
        } else if (proto_evaluate(&rq, pre, how, &d, rank, stop, &res) ==
                   ABC_ESTOPPED) {
            /* Abandoned. Say so, so that rank 0 stops (and saves) even if
             * the signal reached only this rank; then wait for shutdown. */
            memset(&res, 0, sizeof res);
            res.eval_id = rq.eval_id;
            res.worker = rank;
            res.stopped = 1;
            snprintf(res.error, sizeof res.error, "%s", PROTO_STOPPED_ERROR);
        }
        if ((rc = send_result(comm, &res, err))) break;
    }
    data_close(&d);
    model_destroy(pre);
    return rc;
}

/* transport.c - MPI byte messages (see transport.h). Every wait is a loop of
 * a nonblocking MPI call (MPI_Test, MPI_Iprobe) and a short nanosleep that
 * grows from 20 us to 1 ms, so a waiting rank costs a few percent of a core
 * (3 s wait measured at 2.5-3.6% on a 2-core VM, most of it the kernel's
 * cost of nanosleep itself) instead of a whole core in Open MPI's blocking
 * calls, and still sees a message within about 1 ms. */
#include "transport.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/err.h"

#define SPIN_POLLS 50         /* polls before the first sleep */
#define SLEEP_MIN_NS 20000L   /* first sleep: 20 us */
#define SLEEP_MAX_NS 1000000L /* longest sleep: 1 ms */
#define BCAST_CHUNK (1 << 30) /* bytes per MPI_Ibcast */

_Static_assert(SIZE_MAX >= UINT64_MAX, "sizes are 64-bit");

/* Backoff between polls: a few immediate polls (a reply that is already
 * on its way costs no sleep), then sleeps doubling up to SLEEP_MAX_NS. */
struct backoff {
    int polls;
    long ns;
};

static void backoff_pause(struct backoff *b)
{
    if (b->polls++ < SPIN_POLLS) return;
    b->ns = b->ns ? b->ns * 2 : SLEEP_MIN_NS;
    if (b->ns > SLEEP_MAX_NS) b->ns = SLEEP_MAX_NS;
    struct timespec ts = {0, b->ns};
    nanosleep(&ts, NULL); /* EINTR: just poll again */
}

static int comm_rank(MPI_Comm comm)
{
    int rank = -1;
    if (MPI_Comm_rank(comm, &rank) != MPI_SUCCESS) rank = -1;
    return rank;
}

/* Formats "rank R: <what>: <MPI's message>" into err. Returns ABC_EMPI. */
static int mpi_fail(MPI_Comm comm, int code, char *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int mpi_fail(MPI_Comm comm, int code, char *err, const char *fmt, ...)
{
    char msg[MPI_MAX_ERROR_STRING], what[256];
    int n = 0;
    if (MPI_Error_string(code, msg, &n) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "MPI error code %d", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return abc_errf(err, ABC_EMPI, "rank %d: %s: %s", comm_rank(comm), what,
                    msg);
}

/* Waits for req to complete, polling with MPI_Test and sleeping. */
static int wait_request(MPI_Comm comm, MPI_Request *req, const char *what,
                        char *err)
{
    struct backoff b = {0, 0};
    for (;;) {
        int done = 0;
        int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS)
            return mpi_fail(comm, rc, err, "MPI_Test (%s)", what);
        if (done) return 0;
        backoff_pause(&b);
    }
}

int proto_send(MPI_Comm comm, int dest, int tag, const void *buf, size_t len,
               char *err)
{
    if (len > INT_MAX)
        return abc_errf(err, ABC_EVALUE,
                        "rank %d: send of %zu bytes to rank %d (tag %d): more "
                        "than INT_MAX bytes in one message",
                        comm_rank(comm), len, dest, tag);
    MPI_Request req;
    int rc = MPI_Isend(buf, (int)len, MPI_BYTE, dest, tag, comm, &req);
    if (rc != MPI_SUCCESS)
        return mpi_fail(comm, rc, err,
                        "MPI_Isend of %zu bytes to rank %d "
                        "(tag %d)",
                        len, dest, tag);
    return wait_request(comm, &req, "send", err);
}

int proto_recv_or_stop(MPI_Comm comm, int source, int tag,
                       const volatile sig_atomic_t *stop, char **buf,
                       size_t *len, int *src_out, int *tag_out, char *err)
{
    return proto_recv_until(comm, source, tag, stop, 0, buf, len, src_out,
                            tag_out, err);
}

int proto_recv_until(MPI_Comm comm, int source, int tag,
                     const volatile sig_atomic_t *stop, double deadline,
                     char **buf, size_t *len, int *src_out, int *tag_out,
                     char *err)
{
    *buf = NULL;
    *len = 0;
    MPI_Status st;
    struct backoff b = {0, 0};
    for (;;) {
        if (stop && *stop)
            return abc_errf(err, ABC_ESTOPPED,
                            "rank %d: receive stopped by the stop flag",
                            comm_rank(comm));
        if (deadline > 0 && MPI_Wtime() > deadline)
            return abc_errf(err, ABC_ETIMEOUT,
                            "rank %d: nothing received by the deadline",
                            comm_rank(comm));
        int flag = 0;
        int rc = MPI_Iprobe(source, tag, comm, &flag, &st);
        if (rc != MPI_SUCCESS)
            return mpi_fail(comm, rc, err, "MPI_Iprobe (source %d, tag %d)",
                            source, tag);
        if (flag) break;
        backoff_pause(&b);
    }
    int count = 0;
    int rc = MPI_Get_count(&st, MPI_BYTE, &count);
    if (rc != MPI_SUCCESS)
        return mpi_fail(comm, rc, err, "MPI_Get_count (from rank %d, tag %d)",
                        st.MPI_SOURCE, st.MPI_TAG);
    if (count == MPI_UNDEFINED || count < 0)
        return abc_errf(err, ABC_EMPI,
                        "rank %d: message from rank %d (tag %d) has an "
                        "undefined byte count",
                        comm_rank(comm), st.MPI_SOURCE, st.MPI_TAG);
    char *data = malloc(count ? (size_t)count : 1);
    if (!data)
        return abc_errf(err, ABC_ENOMEM,
                        "rank %d: no memory for a message of %d bytes from "
                        "rank %d",
                        comm_rank(comm), count, st.MPI_SOURCE);
    /* Single-threaded: the next message from this source with this tag is
     * the one just probed (MPI keeps order per source and tag). It has
     * arrived, so this MPI_Recv waits only for the copy. */
    MPI_Status st2;
    rc = MPI_Recv(data, count, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, comm, &st2);
    if (rc != MPI_SUCCESS) {
        free(data);
        return mpi_fail(comm, rc, err,
                        "MPI_Recv of %d bytes from rank %d (tag %d)", count,
                        st.MPI_SOURCE, st.MPI_TAG);
    }
    *buf = data;
    *len = (size_t)count;
    if (src_out) *src_out = st.MPI_SOURCE;
    if (tag_out) *tag_out = st.MPI_TAG;
    return 0;
}

int proto_recv(MPI_Comm comm, int source, int tag, char **buf, size_t *len,
               int *src_out, int *tag_out, char *err)
{
    return proto_recv_or_stop(comm, source, tag, NULL, buf, len, src_out,
                              tag_out, err);
}

int proto_bcast_bytes(MPI_Comm comm, int root, char **buf, size_t *len,
                      char *err)
{
    int rank = -1;
    int rc = MPI_Comm_rank(comm, &rank);
    if (rc != MPI_SUCCESS) return mpi_fail(comm, rc, err, "MPI_Comm_rank");
    MPI_Request req;
    uint64_t n = rank == root ? (uint64_t)*len : 0;
    rc = MPI_Ibcast(&n, 1, MPI_UINT64_T, root, comm, &req);
    if (rc != MPI_SUCCESS)
        return mpi_fail(comm, rc, err, "MPI_Ibcast of the size (root %d)",
                        root);
    if ((rc = wait_request(comm, &req, "broadcast of the size", err)))
        return rc;

    char *data = rank == root ? *buf : NULL;
    if (rank != root) {
        *buf = NULL;
        *len = 0;
        data = malloc(n ? (size_t)n : 1);
    }
    /* Every rank learns whether every allocation worked, so that one
     * failure does not leave the others waiting in the data broadcast. */
    int ok = rank == root || data != NULL, all_ok = 0;
    rc = MPI_Iallreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm, &req);
    if (rc == MPI_SUCCESS)
        rc = wait_request(comm, &req, "agreement on allocation", err);
    else
        rc = mpi_fail(comm, rc, err, "MPI_Iallreduce");
    if (rc == 0 && !all_ok)
        rc = abc_errf(err, ABC_ENOMEM, "rank %d: broadcast of %llu bytes: %s",
                      rank, (unsigned long long)n,
                      ok ? "another rank could not allocate it"
                         : "out of memory");
    for (uint64_t off = 0; rc == 0 && off < n; off += BCAST_CHUNK) {
        int cnt = n - off < BCAST_CHUNK ? (int)(n - off) : BCAST_CHUNK;
        rc = MPI_Ibcast(data + off, cnt, MPI_BYTE, root, comm, &req);
        if (rc != MPI_SUCCESS)
            rc = mpi_fail(comm, rc, err,
                          "MPI_Ibcast of %d bytes at offset %llu (root %d)",
                          cnt, (unsigned long long)off, root);
        else
            rc = wait_request(comm, &req, "broadcast of the data", err);
    }
    if (rank != root) {
        if (rc) {
            free(data);
            return rc;
        }
        *buf = data;
        *len = (size_t)n;
    }
    return rc;
}

int proto_barrier(MPI_Comm comm, char *err)
{
    MPI_Request req;
    int rc = MPI_Ibarrier(comm, &req);
    if (rc != MPI_SUCCESS) return mpi_fail(comm, rc, err, "MPI_Ibarrier");
    return wait_request(comm, &req, "barrier", err);
}

int proto_wait_all(MPI_Comm comm, int n, MPI_Request *reqs, const char *what,
                   char *err)
{
    struct backoff b = {0, 0};
    for (;;) {
        int done = 0;
        int rc = MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS)
            return mpi_fail(comm, rc, err, "MPI_Testall (%s)", what);
        if (done) return 0;
        backoff_pause(&b);
    }
}

int proto_comm_info(MPI_Comm comm, int *rank, int *size, char *err)
{
    int rc;
    if (rank && (rc = MPI_Comm_rank(comm, rank)) != MPI_SUCCESS)
        return mpi_fail(comm, rc, err, "MPI_Comm_rank");
    if (size && (rc = MPI_Comm_size(comm, size)) != MPI_SUCCESS)
        return mpi_fail(comm, rc, err, "MPI_Comm_size");
    return 0;
}

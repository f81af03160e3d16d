/* transport.h - MPI byte messages between ranks: point-to-point send and
 * receive of one buffer (the size travels with the message: probe + count),
 * and a broadcast of one blob (the pretrained checkpoint) from rank 0.
 * Waiting never burns a core: Open MPI busy-polls inside blocking calls, so
 * every wait here polls a nonblocking call and sleeps between polls (about
 * 1 ms at most), and a receive can be cut short by a stop flag (SIGTERM).
 *
 * Callers must set MPI_ERRORS_RETURN on the communicator
 *   MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
 * so that MPI failures come back here as error codes (the default handler
 * aborts the job). Errors name the calling rank. Not thread-safe: one
 * thread per rank calls these (a probe and the receive that follows it
 * must not race with another receiver on the same communicator). */
#ifndef ABC_PROTO_TRANSPORT_H
#define ABC_PROTO_TRANSPORT_H

#include <signal.h>
#include <stddef.h>

#include <mpi.h>

/* Every message tag of the project. */
enum proto_tag {
    TAG_REQUEST = 1,  /* rank 0 -> worker: eval_request */
    TAG_RESULT = 2,   /* worker -> rank 0: eval_result */
    TAG_SHUTDOWN = 3, /* rank 0 -> worker: shutdown */
    TAG_MODEL = 4,    /* model bytes sent point to point, if ever needed */
};

/* Errors are core/err.h's: ABC_EMPI when an MPI call failed,
 * ABC_ESTOPPED when the stop flag was raised while waiting. */

/* Sends buf[0..len) to rank dest with tag. Point to point (not
 * collective). Returns once buf may be reused (sleeping, not spinning, while
 * the receiver is not ready yet). len may be 0 (buf may then be NULL); len >
 * INT_MAX is refused with ABC_EVALUE. Returns 0, ABC_EVALUE or ABC_EMPI. */
int proto_send(MPI_Comm comm, int dest, int tag, const void *buf, size_t len,
               char *err);

/* Receives one message from source (or MPI_ANY_SOURCE) with tag (or
 * MPI_ANY_TAG), whatever its size. Point to point (not collective). Waits
 * by polling MPI_Iprobe with sleeps of up to 1 ms. On success *buf is a
 * malloc'ed copy the caller frees (never NULL, even for 0 bytes), *len its
 * size, and *src_out / *tag_out (each may be NULL) the actual source and
 * tag. Returns 0, ABC_ENOMEM or ABC_EMPI; *buf is NULL on failure. */
int proto_recv(MPI_Comm comm, int source, int tag, char **buf, size_t *len,
               int *src_out, int *tag_out, char *err);

/* proto_recv that also returns ABC_ESTOPPED, receiving nothing, as soon
 * as *stop (checked before every poll; NULL = never) becomes nonzero:
 * rank 0 passes the flag its SIGTERM/SIGUSR1 handler sets. */
int proto_recv_or_stop(MPI_Comm comm, int source, int tag,
                       const volatile sig_atomic_t *stop, char **buf,
                       size_t *len, int *src_out, int *tag_out, char *err);

/* proto_recv_or_stop that also returns ABC_ETIMEOUT, receiving nothing,
 * once MPI_Wtime() passes deadline (<= 0: no deadline). */
int proto_recv_until(MPI_Comm comm, int source, int tag,
                     const volatile sig_atomic_t *stop, double deadline,
                     char **buf, size_t *len, int *src_out, int *tag_out,
                     char *err);

/* Broadcasts a blob from root to every rank of comm. COLLECTIVE: every rank
 * of comm calls it with the same root. On root, *buf / *len are the data
 * (read only; the caller keeps ownership). On the others *buf receives a
 * malloc'ed copy (never NULL, even for 0 bytes) the caller frees, and *len
 * its size. The size goes first, then the data in chunks of at most 1 GiB;
 * all ranks agree on allocation success, so a failed malloc anywhere makes
 * every rank return ABC_ENOMEM instead of hanging. Waits sleep, not spin.
 * Returns 0, ABC_ENOMEM or ABC_EMPI (after which the communicator's state
 * is undefined: abort). */
int proto_bcast_bytes(MPI_Comm comm, int root, char **buf, size_t *len,
                      char *err);

/* Collective: a barrier that sleeps while it waits (MPI_Ibarrier + test
 * and sleep), so ranks that are done do not burn the cores of ranks still
 * working (Open MPI's MPI_Barrier and MPI_Finalize spin). */
int proto_barrier(MPI_Comm comm, char *err);

/* Waits for the n requests reqs[0..n) (nonblocking point-to-point or
 * collective calls this rank started) to complete, polling MPI_Testall
 * and sleeping as every wait here does. what names them in errors. Not
 * collective by itself. Returns 0 or ABC_EMPI. */
int proto_wait_all(MPI_Comm comm, int n, MPI_Request *reqs, const char *what,
                   char *err);

/* This rank's number and the communicator's size (either may be NULL).
 * Returns 0 or ABC_EMPI. */
int proto_comm_info(MPI_Comm comm, int *rank, int *size, char *err);

#endif

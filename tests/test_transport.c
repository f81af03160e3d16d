/* test_transport.c - MPI byte messages (proto/transport.c) on 3 ranks (CTest
 * runs it under mpiexec -n 3): a 5 MB broadcast checked on every rank,
 * requests to ranks 1 and 2 answered through the real message encoders,
 * 0-byte and 10 MB messages, any-source / any-tag receives, the stop flag
 * (raised by a signal while waiting), and MPI errors reported with the rank.
 * A rank whose check fails calls MPI_Abort, so nothing hangs.
 *
 * Not a test, a measurement by hand: `mpirun -np 2 test_transport
 * --cpu-wait` has rank 1 sleep 3 s twice while rank 0 waits, first in
 * proto_recv, then in a plain MPI_Recv, and prints rank 0's CPU time. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "check.h"
#include "core/err.h"
#include "core/rng.h"
#include "messages.h"
#include "transport.h"

static int rank = -1, nranks = 0;

/* A transport failure leaves the ranks out of step: abort at once. */
#define REQUIRE(cond, ...)                                                     \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "rank %d FATAL %s:%d: %s: ", rank, __FILE__,       \
                    __LINE__, #cond);                                          \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
            MPI_Abort(MPI_COMM_WORLD, 1);                                      \
        }                                                                      \
    } while (0)

/* Deterministic content: byte i of blob `seed`. */
static void fill(char *p, size_t n, uint64_t seed)
{
    struct rng r;
    rng_seed(&r, seed);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = rng_u64(&r);
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++)
        p[i] = (char)rng_u64(&r);
}

static int same_as_fill(const char *p, size_t n, uint64_t seed)
{
    char *want = malloc(n ? n : 1);
    REQUIRE(want, "out of memory");
    fill(want, n, seed);
    int same = n == 0 || memcmp(p, want, n) == 0;
    free(want);
    return same;
}

static void test_bcast(void)
{
    char err[ABC_ERRLEN];
    size_t n = 5u << 20;
    char *buf = NULL;
    size_t len = 0;
    if (rank == 0) {
        buf = malloc(n);
        REQUIRE(buf, "out of memory");
        fill(buf, n, 5);
        len = n;
    }
    int rc = proto_bcast_bytes(MPI_COMM_WORLD, 0, &buf, &len, err);
    REQUIRE(rc == 0, "%s", err);
    CHECK(len == n && buf && same_as_fill(buf, n, 5),
          "rank %d: 5 MB broadcast differs (%zu bytes)", rank, len);
    free(buf);

    /* An empty blob, from another root. */
    buf = NULL;
    len = 0;
    rc = proto_bcast_bytes(MPI_COMM_WORLD, 2, &buf, &len, err);
    REQUIRE(rc == 0, "%s", err);
    CHECK(len == 0 && (rank == 2 || buf != NULL),
          "rank %d: empty broadcast gave %zu bytes", rank, len);
    if (rank != 2) free(buf);
    if (rank == 0) printf("ok   broadcast of 5 MB and of 0 bytes\n");
}

/* Rank 0 sends a request to each worker, which replies with a result. */
static void test_request_reply(void)
{
    char err[ABC_ERRLEN];
    if (rank == 0) {
        for (int w = 1; w < nranks; w++) {
            struct proto_eval_request rq;
            memset(&rq, 0, sizeof rq);
            rq.eval_id = 1000 + (uint64_t)w;
            rq.nlayers = 3;
            rq.structure[0] = 16;
            rq.structure[1] = 32;
            rq.structure[2] = w;
            rq.seed = 77;
            rq.budget = (struct proto_budget){.train_images = 100,
                                              .epochs = 1,
                                              .batch = 32,
                                              .lr = 0.1,
                                              .momentum = 0.9,
                                              .bn_batches = 1};
            rq.phase = PROTO_PHASE_EMPLOYED;
            rq.candidate = w;
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            int rc = proto_pack_eval_request(&rq, &sb, err);
            REQUIRE(rc == 0, "%s", err);
            rc = proto_send(MPI_COMM_WORLD, w, TAG_REQUEST, sb.data, sb.size,
                            err);
            REQUIRE(rc == 0, "%s", err);
            msgpack_sbuffer_destroy(&sb);
        }
        int seen[8] = {0};
        for (int k = 1; k < nranks; k++) {
            char *buf;
            size_t len;
            int src = -1, tag = -1;
            int rc = proto_recv(MPI_COMM_WORLD, MPI_ANY_SOURCE, TAG_RESULT,
                                &buf, &len, &src, &tag, err);
            REQUIRE(rc == 0, "%s", err);
            struct proto_eval_result rs;
            rc = proto_unpack_eval_result(buf, len, &rs, err);
            CHECK(rc == 0, "%s", err);
            CHECK(tag == TAG_RESULT && src >= 1 && src < nranks &&
                      rs.worker == src && rs.eval_id == 1000 + (uint64_t)src &&
                      rs.ok && rs.flops == 16 * 32 * src,
                  "result from %d (tag %d): worker %d id %llu flops %lld", src,
                  tag, rs.worker, (unsigned long long)rs.eval_id,
                  (long long)rs.flops);
            if (src >= 1 && src < 8) seen[src]++;
            free(buf);
        }
        for (int w = 1; w < nranks; w++)
            CHECK(seen[w] == 1, "%d results from rank %d", seen[w], w);
        printf("ok   requests to %d workers answered\n", nranks - 1);
    } else {
        char *buf;
        size_t len;
        int src, tag;
        int rc = proto_recv(MPI_COMM_WORLD, 0, TAG_REQUEST, &buf, &len, &src,
                            &tag, err);
        REQUIRE(rc == 0, "%s", err);
        enum proto_type t;
        rc = proto_peek_type(buf, len, &t, err);
        CHECK(rc == 0 && t == PROTO_EVAL_REQUEST, "peek: %s", err);
        struct proto_eval_request rq;
        rc = proto_unpack_eval_request(buf, len, &rq, err);
        REQUIRE(rc == 0, "%s", err);
        free(buf);
        CHECK(src == 0 && tag == TAG_REQUEST &&
                  rq.eval_id == 1000 + (uint64_t)rank &&
                  rq.structure[2] == rank,
              "rank %d got request %llu", rank, (unsigned long long)rq.eval_id);
        struct proto_eval_result rs;
        memset(&rs, 0, sizeof rs);
        rs.eval_id = rq.eval_id;
        rs.ok = 1;
        rs.val_acc = 0.5;
        rs.wall_s = 0.01;
        rs.flops = (int64_t)rq.structure[0] * rq.structure[1] * rq.structure[2];
        rs.worker = rank;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        rc = proto_pack_eval_result(&rs, &sb, err);
        REQUIRE(rc == 0, "%s", err);
        rc = proto_send(MPI_COMM_WORLD, 0, TAG_RESULT, sb.data, sb.size, err);
        REQUIRE(rc == 0, "%s", err);
        msgpack_sbuffer_destroy(&sb);
    }
}

/* 0-byte messages to every worker; 10 MB from rank 0 to rank 2 and from
 * rank 1 to rank 0. */
static void test_sizes(void)
{
    char err[ABC_ERRLEN];
    const size_t big = (10u << 20) + 3;
    if (rank == 0) {
        for (int w = 1; w < nranks; w++) {
            int rc = proto_send(MPI_COMM_WORLD, w, TAG_MODEL, NULL, 0, err);
            REQUIRE(rc == 0, "%s", err);
        }
        char *b = malloc(big);
        REQUIRE(b, "out of memory");
        fill(b, big, 10);
        int rc = proto_send(MPI_COMM_WORLD, 2, TAG_MODEL, b, big, err);
        REQUIRE(rc == 0, "%s", err);
        free(b);
        size_t len;
        int src, tag;
        rc =
            proto_recv(MPI_COMM_WORLD, 1, TAG_MODEL, &b, &len, &src, &tag, err);
        REQUIRE(rc == 0, "%s", err);
        CHECK(len == big && src == 1 && tag == TAG_MODEL &&
                  same_as_fill(b, big, 11),
              "10 MB from rank 1: %zu bytes from %d", len, src);
        free(b);
        printf("ok   0-byte and 10 MB messages\n");
        return;
    }
    char *b;
    size_t len;
    int src, tag;
    int rc =
        proto_recv(MPI_COMM_WORLD, 0, TAG_MODEL, &b, &len, &src, &tag, err);
    REQUIRE(rc == 0, "%s", err);
    CHECK(len == 0 && b != NULL && src == 0 && tag == TAG_MODEL,
          "rank %d: empty message: %zu bytes", rank, len);
    free(b);
    if (rank == 2) {
        rc =
            proto_recv(MPI_COMM_WORLD, 0, TAG_MODEL, &b, &len, NULL, NULL, err);
        REQUIRE(rc == 0, "%s", err);
        CHECK(len == big && same_as_fill(b, big, 10),
              "rank 2: 10 MB from rank 0: %zu bytes", len);
        free(b);
    } else if (rank == 1) {
        b = malloc(big);
        REQUIRE(b, "out of memory");
        fill(b, big, 11);
        rc = proto_send(MPI_COMM_WORLD, 0, TAG_MODEL, b, big, err);
        REQUIRE(rc == 0, "%s", err);
        free(b);
    }
}

/* Every worker sends one message with its own tag; rank 0 takes them with
 * MPI_ANY_SOURCE and MPI_ANY_TAG and checks source and tag against the
 * content. */
static void test_any_source(void)
{
    char err[ABC_ERRLEN];
    if (rank != 0) {
        char text[32];
        int tag = rank == 1 ? TAG_RESULT : TAG_SHUTDOWN;
        int n = snprintf(text, sizeof text, "from %d tag %d", rank, tag);
        int rc = proto_send(MPI_COMM_WORLD, 0, tag, text, (size_t)n, err);
        REQUIRE(rc == 0, "%s", err);
        return;
    }
    for (int k = 1; k < nranks; k++) {
        char *b;
        size_t len;
        int src = -1, tag = -1;
        int rc = proto_recv(MPI_COMM_WORLD, MPI_ANY_SOURCE, MPI_ANY_TAG, &b,
                            &len, &src, &tag, err);
        REQUIRE(rc == 0, "%s", err);
        char want[32];
        int n = snprintf(want, sizeof want, "from %d tag %d", src, tag);
        CHECK(len == (size_t)n && memcmp(b, want, len) == 0 &&
                  tag == (src == 1 ? TAG_RESULT : TAG_SHUTDOWN),
              "any-source message %.*s: src %d tag %d", (int)len, b, src, tag);
        free(b);
    }
    printf("ok   any-source, any-tag receives\n");
}

static volatile sig_atomic_t stop_flag;

static void on_alarm(int sig)
{
    (void)sig;
    stop_flag = 1;
}

/* The stop flag: already raised, and raised by a signal while waiting for a
 * message nobody sends. Then MPI errors come back with the rank. */
static void test_stop_and_errors(void)
{
    char err[ABC_ERRLEN];
    if (rank == 0) {
        char *b = (char *)"x";
        size_t len = 7;
        stop_flag = 1;
        int rc = proto_recv_or_stop(MPI_COMM_WORLD, MPI_ANY_SOURCE, MPI_ANY_TAG,
                                    &stop_flag, &b, &len, NULL, NULL, err);
        CHECK(rc == ABC_ESTOPPED && b == NULL && len == 0, "raised flag: rc %d",
              rc);

        stop_flag = 0;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_alarm;
        sigemptyset(&sa.sa_mask);
        REQUIRE(sigaction(SIGALRM, &sa, NULL) == 0, "sigaction");
        alarm(1);
        rc = proto_recv_or_stop(MPI_COMM_WORLD, 1, 99, &stop_flag, &b, &len,
                                NULL, NULL, err);
        CHECK(rc == ABC_ESTOPPED && strstr(err, "rank 0"),
              "signal while waiting: rc %d %s", rc, err);
        printf("ok   stop flag (raised, and by SIGALRM while waiting): %s\n",
               err);

        rc = proto_send(MPI_COMM_WORLD, 99, TAG_REQUEST, "x", 1, err);
        CHECK(rc == ABC_EMPI && strstr(err, "rank 0") && strstr(err, "rank 99"),
              "send to rank 99: rc %d %s", rc, err);
        printf("ok   send to a bad rank: %s\n", err);
        rc = proto_recv(MPI_COMM_WORLD, 99, TAG_RESULT, &b, &len, NULL, NULL,
                        err);
        CHECK(rc == ABC_EMPI && b == NULL && strstr(err, "rank 0"),
              "receive from rank 99: rc %d %s", rc, err);
        printf("ok   receive from a bad rank: %s\n", err);
        rc = proto_send(MPI_COMM_WORLD, 1, TAG_REQUEST, "x",
                        (size_t)INT32_MAX + 1, err);
        CHECK(rc == ABC_EVALUE && strstr(err, "INT_MAX"),
              "2 GiB send: rc %d %s", rc, err);
    }
    /* Nothing may be left in flight. */
    int flag = 1;
    MPI_Status st;
    int rc =
        MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &st);
    REQUIRE(rc == MPI_SUCCESS, "MPI_Iprobe");
    CHECK(!flag, "rank %d: a message from %d (tag %d) is left", rank,
          st.MPI_SOURCE, st.MPI_TAG);
}

/* Rank 0 tells the workers to stop; they check the message. */
static void test_shutdown(void)
{
    char err[ABC_ERRLEN];
    if (rank == 0) {
        struct proto_shutdown sd;
        snprintf(sd.reason, sizeof sd.reason, "test over");
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        int rc = proto_pack_shutdown(&sd, &sb, err);
        REQUIRE(rc == 0, "%s", err);
        for (int w = 1; w < nranks; w++) {
            rc = proto_send(MPI_COMM_WORLD, w, TAG_SHUTDOWN, sb.data, sb.size,
                            err);
            REQUIRE(rc == 0, "%s", err);
        }
        msgpack_sbuffer_destroy(&sb);
        return;
    }
    char *b;
    size_t len;
    int tag;
    int rc =
        proto_recv(MPI_COMM_WORLD, 0, MPI_ANY_TAG, &b, &len, NULL, &tag, err);
    REQUIRE(rc == 0, "%s", err);
    struct proto_shutdown sd;
    rc = proto_unpack_shutdown(b, len, &sd, err);
    CHECK(rc == 0 && tag == TAG_SHUTDOWN && strcmp(sd.reason, "test over") == 0,
          "shutdown: %s", err);
    free(b);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec +
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec;
}

static double wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The measurement by hand (see the top of the file). */
static void cpu_wait(void)
{
    char err[ABC_ERRLEN];
    REQUIRE(nranks == 2, "--cpu-wait runs on 2 ranks");
    for (int round = 0; round < 2; round++) {
        if (rank == 1) {
            sleep(3);
            int rc = proto_send(MPI_COMM_WORLD, 0, TAG_RESULT, "done", 4, err);
            REQUIRE(rc == 0, "%s", err);
            continue;
        }
        double c0 = cpu_seconds(), w0 = wall_seconds();
        if (round == 0) {
            char *b;
            size_t len;
            int rc = proto_recv(MPI_COMM_WORLD, 1, TAG_RESULT, &b, &len, NULL,
                                NULL, err);
            REQUIRE(rc == 0, "%s", err);
            free(b);
        } else {
            char b[8];
            int rc = MPI_Recv(b, sizeof b, MPI_BYTE, 1, TAG_RESULT,
                              MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            REQUIRE(rc == MPI_SUCCESS, "MPI_Recv");
        }
        double c = cpu_seconds() - c0, w = wall_seconds() - w0;
        printf("rank 0 waiting in %-10s: wall %.3f s, cpu %.3f s (%.1f%% of "
               "a core)\n",
               round == 0 ? "proto_recv" : "MPI_Recv", w, c, 100 * c / w);
    }
}

int main(int argc, char **argv)
{
    int rc = MPI_Init(&argc, &argv);
    if (rc != MPI_SUCCESS) {
        fprintf(stderr, "MPI_Init failed\n");
        return 1;
    }
    REQUIRE(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN) ==
                MPI_SUCCESS,
            "MPI_Comm_set_errhandler");
    REQUIRE(MPI_Comm_rank(MPI_COMM_WORLD, &rank) == MPI_SUCCESS, "rank");
    REQUIRE(MPI_Comm_size(MPI_COMM_WORLD, &nranks) == MPI_SUCCESS, "size");
    if (argc > 1 && strcmp(argv[1], "--cpu-wait") == 0) {
        cpu_wait();
        MPI_Finalize();
        return 0;
    }
    REQUIRE(nranks == 3, "test_transport runs on 3 ranks, not %d", nranks);

    test_bcast();
    test_request_reply();
    test_sizes();
    test_any_source();
    test_stop_and_errors();
    test_shutdown();

    if (check_failures_) {
        fprintf(stderr, "rank %d: %d checks failed\n", rank, check_failures_);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    REQUIRE(MPI_Barrier(MPI_COMM_WORLD) == MPI_SUCCESS, "MPI_Barrier");
    if (rank == 0) check_finish("test_transport (rank 0)");
    MPI_Finalize();
    return 0;
}

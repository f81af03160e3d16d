/* dp.c - data-parallel training over MPI: the bucketed gradient sums of
 * the engine's train_dp hook and the lead/follow protocol (see dp.h). */
#include "dp.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "core/err.h"
#include "io/checkpoint.h"
#include "messages.h"
#include "transport.h"

#define DP_BUCKET_KB_DEFAULT 1024

struct dp {
    MPI_Comm comm;
    int rank, size;
    enum dp_reduce algo;
    size_t bucket; /* floats per bucket */
    struct train_dp hook;
    /* grown on demand */
    float *scratch; /* the slices other ranks send to this one */
    size_t scratch_n;
    MPI_Request *reqs; /* two per bucket */
    int *counts;       /* per bucket: send counts and displacements, receive
                          counts and displacements (size each) */
    int nbuckets_cap;
    void *small; /* sum_doubles / same_u64: size * n values */
    size_t small_bytes;
    double reduce_s;
    /* the sum in progress (hook_sum_begin .. hook_sum_end) */
    float *ov_v;
    size_t ov_n;
    float ov_scale;
    int ov_nb, ov_next; /* buckets; the next to start (counting down) */
    int ov_rc;          /* an error met in hook_sum_ready, in ov_err */
    char ov_err[ABC_ERRLEN];
    double ov_t; /* seconds spent in hook_sum_ready */
};

/* "rank R: what: MPI's message" into err. Returns ABC_EMPI. */
static int mpi_error(const struct dp *dp, int code, const char *what, char *err)
{
    char msg[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(code, msg, &n) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "MPI error code %d", code);
    return abc_errf(err, ABC_EMPI, "rank %d: data-parallel %s: %s", dp->rank,
                    what, msg);
}

/* Makes room for nb buckets and nfloats floats of received slices. */
static int dp_reserve(struct dp *dp, int nb, size_t nfloats, char *err)
{
    if (nb > dp->nbuckets_cap) {
        MPI_Request *r = realloc(dp->reqs, sizeof *r * 2 * (size_t)nb);
        if (r) dp->reqs = r;
        int *c = realloc(dp->counts, sizeof *c * 4 * (size_t)dp->size * nb);
        if (c) dp->counts = c;
        if (!r || !c)
            return abc_errf(err, ABC_ENOMEM,
                            "rank %d: out of memory for %d buckets", dp->rank,
                            nb);
        dp->nbuckets_cap = nb;
    }
    if (nfloats > dp->scratch_n) {
        float *s = realloc(dp->scratch, sizeof *s * nfloats);
        if (!s)
            return abc_errf(err, ABC_ENOMEM,
                            "rank %d: out of memory for %zu floats of "
                            "gradient slices",
                            dp->rank, nfloats);
        dp->scratch = s;
        dp->scratch_n = nfloats;
    }
    return 0;
}

static int dp_reserve_small(struct dp *dp, size_t bytes, char *err)
{
    if (bytes <= dp->small_bytes) return 0;
    void *p = realloc(dp->small, bytes);
    if (!p)
        return abc_errf(err, ABC_ENOMEM, "rank %d: out of memory", dp->rank);
    dp->small = p;
    dp->small_bytes = bytes;
    return 0;
}

/* ---- the gradient sum, in buckets --------------------------------------
 * A sum runs as begin (v, n, scale), any number of ready(lo) calls while
 * the backward pass finishes v from the end down (v[lo, n) is final), and
 * end. ready starts the exchange of every bucket that lies wholly in the
 * finished part (after multiplying it by scale) and lets MPI progress the
 * ones in flight, so communication overlaps the rest of the backward pass;
 * end starts the rest, completes them all in the order they were started,
 * and leaves the sums in v. Buckets start from the last one down; every
 * rank starts them in the same order (they run the same model), as
 * collectives require. Per bucket:
 *   ordered:   every rank receives one slice (train_shard of the bucket)
 *              from all ranks (MPI_Ialltoallv), sums it in rank order, and
 *              hands the sum to all (MPI_Iallgatherv in place): the bits do
 *              not depend on MPI's algorithm or on the timing;
 *   allreduce: MPI_Iallreduce in place.
 * The count arrays of a bucket stay untouched until its calls complete, as
 * nonblocking collectives require. An MPI error inside ready is kept and
 * returned by end (ready has no way to return it). */

static size_t bucket_count(const struct dp *dp, int b)
{
    size_t off = (size_t)b * dp->bucket;
    return dp->ov_n - off < dp->bucket ? dp->ov_n - off : dp->bucket;
}

/* Where bucket b's received slices go: at most P * ceil(cnt / P) <= cnt +
 * P floats per bucket, so b * (bucket + P) never overlaps. */
static float *bucket_scratch(const struct dp *dp, int b)
{
    return dp->scratch + (size_t)b * (dp->bucket + (size_t)dp->size);
}

static int bucket_start(struct dp *dp, int b, char *err)
{
    const int P = dp->size, me = dp->rank;
    float *v = dp->ov_v + (size_t)b * dp->bucket;
    const int cnt = (int)bucket_count(dp, b);
    if (dp->ov_scale != 1.0f)
        for (int j = 0; j < cnt; j++)
            v[j] *= dp->ov_scale;
    int mrc;
    if (dp->algo == DP_REDUCE_ALLREDUCE) {
        mrc = MPI_Iallreduce(MPI_IN_PLACE, v, cnt, MPI_FLOAT, MPI_SUM, dp->comm,
                             &dp->reqs[b]);
        if (mrc != MPI_SUCCESS)
            return mpi_error(dp, mrc, "MPI_Iallreduce", err);
        return 0;
    }
    int *scount = dp->counts + (size_t)4 * P * b, *sdispl = scount + P;
    int *rcount = sdispl + P, *rdispl = rcount + P;
    for (int r = 0; r < P; r++)
        train_shard(cnt, r, P, &sdispl[r], &scount[r]);
    const int mine = scount[me]; /* this rank's slice, from everyone */
    for (int r = 0; r < P; r++)
        rcount[r] = mine, rdispl[r] = r * mine;
    mrc = MPI_Ialltoallv(v, scount, sdispl, MPI_FLOAT, bucket_scratch(dp, b),
                         rcount, rdispl, MPI_FLOAT, dp->comm, &dp->reqs[b]);
    if (mrc != MPI_SUCCESS) return mpi_error(dp, mrc, "MPI_Ialltoallv", err);
    return 0;
}

static int hook_sum_begin(void *ctx, float *v, size_t n, float scale, char *err)
{
    struct dp *dp = ctx;
    dp->ov_v = v;
    dp->ov_n = n;
    dp->ov_nb = 0;
    dp->ov_next = -1;
    dp->ov_rc = 0;
    dp->ov_t = 0;
    if (n == 0) return 0;
    size_t nb = (n + dp->bucket - 1) / dp->bucket;
    if (nb > INT_MAX / 4 / (size_t)dp->size / 2)
        return abc_errf(err, ABC_EVALUE, "rank %d: %zu buckets are too many",
                        dp->rank, nb);
    int rc = dp_reserve(dp, (int)nb, n + (size_t)dp->size * nb, err);
    if (rc) return rc;
    dp->ov_nb = (int)nb;
    dp->ov_next = (int)nb - 1;
    dp->ov_scale = scale;
    return 0;
}

/* Starts the buckets that lie wholly in v[lo, n), from the last down. */
static void start_ready(struct dp *dp, size_t lo)
{
    while (!dp->ov_rc && dp->ov_next >= 0 &&
           (size_t)dp->ov_next * dp->bucket >= lo) {
        dp->ov_rc = bucket_start(dp, dp->ov_next, dp->ov_err);
        if (!dp->ov_rc) dp->ov_next--;
    }
}

static void hook_sum_ready(void *ctx, size_t lo)
{
    struct dp *dp = ctx;
    if (dp->ov_nb == 0 || dp->ov_rc) return;
    double t0 = now_seconds();
    start_ready(dp, lo);
    /* started: buckets ov_next+1 .. nb-1; let MPI move them along */
    int started = dp->ov_nb - 1 - dp->ov_next;
    if (started > 0) {
        int flag;
        MPI_Testall(started, dp->reqs + dp->ov_next + 1, &flag,
                    MPI_STATUSES_IGNORE);
    }
    dp->ov_t += now_seconds() - t0;
}

static int hook_sum_end(void *ctx, char *err)
{
    struct dp *dp = ctx;
    double t0 = now_seconds();
    const int nb = dp->ov_nb, P = dp->size, me = dp->rank;
    int rc = dp->ov_rc;
    if (rc) snprintf(err, ABC_ERRLEN, "%s", dp->ov_err);
    if (!rc) start_ready(dp, 0);
    if (!rc && dp->ov_rc) {
        rc = dp->ov_rc;
        snprintf(err, ABC_ERRLEN, "%s", dp->ov_err);
    }
    /* buckets nb-1 .. first were started (first = ov_next + 1) */
    const int first = dp->ov_next + 1;
    char werr[ABC_ERRLEN];
    if (dp->algo == DP_REDUCE_ALLREDUCE || nb == 0) {
        int wrc = proto_wait_all(dp->comm, nb - first, dp->reqs + first,
                                 "gradient sum", rc ? werr : err);
        rc = rc ? rc : wrc;
    } else {
        MPI_Request *ga = dp->reqs + nb;
        int nga = 0;
        for (int b = nb - 1; b >= first; b--) {
            int wrc = proto_wait_all(dp->comm, 1, &dp->reqs[b],
                                     "gradient exchange", rc ? werr : err);
            if (!rc) rc = wrc;
            if (rc) continue; /* still wait for the other started ones */
            int *scount = dp->counts + (size_t)4 * P * b, *sdispl = scount + P;
            const int mine = scount[me];
            const float *sl = bucket_scratch(dp, b);
            float *v = dp->ov_v + (size_t)b * dp->bucket;
            float *dst = v + sdispl[me];
            for (int j = 0; j < mine; j++) {
                float acc = sl[j];
                for (int r = 1; r < P; r++)
                    acc += sl[(size_t)r * mine + j];
                dst[j] = acc;
            }
            int mrc =
                MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, v, scount,
                                sdispl, MPI_FLOAT, dp->comm, &ga[nga]);
            if (mrc != MPI_SUCCESS)
                rc = mpi_error(dp, mrc, "MPI_Iallgatherv", err);
            else
                nga++;
        }
        int wrc = proto_wait_all(dp->comm, nga, ga, "gradient gather",
                                 rc ? werr : err);
        rc = rc ? rc : wrc;
    }
    dp->ov_nb = 0;
    dp->reduce_s += dp->ov_t + (now_seconds() - t0);
    return rc;
}

/* The whole sum after the fact: begin, then end. */
static int hook_sum_floats(void *ctx, float *v, size_t n, char *err)
{
    int rc = hook_sum_begin(ctx, v, n, 1.0f, err);
    return rc ? rc : hook_sum_end(ctx, err);
}

/* Gathers every rank's n values of elem bytes into dp->small (rank r's at
 * r * n). */
static int gather_small(struct dp *dp, const void *v, int n, MPI_Datatype t,
                        size_t elem, char *err)
{
    int rc = dp_reserve_small(dp, elem * (size_t)n * dp->size, err);
    if (rc) return rc;
    MPI_Request req;
    int mrc = MPI_Iallgather(v, n, t, dp->small, n, t, dp->comm, &req);
    if (mrc != MPI_SUCCESS) return mpi_error(dp, mrc, "MPI_Iallgather", err);
    return proto_wait_all(dp->comm, 1, &req, "statistics", err);
}

static int hook_sum_doubles(void *ctx, double *v, int n, char *err)
{
    struct dp *dp = ctx;
    int rc = gather_small(dp, v, n, MPI_DOUBLE, sizeof(double), err);
    if (rc) return rc;
    const double *all = dp->small;
    for (int i = 0; i < n; i++) {
        double acc = all[i];
        for (int r = 1; r < dp->size; r++)
            acc += all[(size_t)r * n + i];
        v[i] = acc;
    }
    return 0;
}

static int hook_same_u64(void *ctx, uint64_t v, int *same, char *err)
{
    struct dp *dp = ctx;
    int rc = gather_small(dp, &v, 1, MPI_UINT64_T, sizeof(uint64_t), err);
    if (rc) return rc;
    const uint64_t *all = dp->small;
    *same = 1;
    for (int r = 0; r < dp->size; r++)
        if (all[r] != v) *same = 0;
    return 0;
}

int dp_create(struct dp **out, MPI_Comm comm, char *err)
{
    *out = NULL;
    enum dp_reduce algo = DP_REDUCE_ORDERED;
    const char *e = getenv("ABC_DP_REDUCE");
    if (e && *e) {
        if (strcmp(e, "ordered") == 0)
            algo = DP_REDUCE_ORDERED;
        else if (strcmp(e, "allreduce") == 0)
            algo = DP_REDUCE_ALLREDUCE;
        else
            return abc_errf(err, ABC_EVALUE,
                            "environment ABC_DP_REDUCE='%s': expected "
                            "ordered or allreduce",
                            e);
    }
    long kb = DP_BUCKET_KB_DEFAULT;
    e = getenv("ABC_DP_BUCKET_KB");
    if (e && *e) {
        char *end;
        kb = strtol(e, &end, 10);
        if (*end || kb < 1 || kb > 1048576)
            return abc_errf(err, ABC_EVALUE,
                            "environment ABC_DP_BUCKET_KB='%s': expected "
                            "kilobytes 1..1048576",
                            e);
    }
    int overlap = 1;
    e = getenv("ABC_DP_OVERLAP");
    if (e && *e) {
        if (strcmp(e, "0") != 0 && strcmp(e, "1") != 0)
            return abc_errf(err, ABC_EVALUE,
                            "environment ABC_DP_OVERLAP='%s': expected 0 or 1",
                            e);
        overlap = e[0] == '1';
    }
    struct dp *dp = calloc(1, sizeof *dp);
    if (!dp) return abc_errf(err, ABC_ENOMEM, "out of memory");
    dp->comm = comm;
    dp->algo = algo;
    dp->bucket = (size_t)kb * 1024 / sizeof(float);
    int rc = proto_comm_info(comm, &dp->rank, &dp->size, err);
    if (rc) {
        free(dp);
        return rc;
    }
    dp->hook = (struct train_dp){.rank = dp->rank,
                                 .size = dp->size,
                                 .sum_floats = hook_sum_floats,
                                 .sum_begin = overlap ? hook_sum_begin : NULL,
                                 .sum_ready = overlap ? hook_sum_ready : NULL,
                                 .sum_end = overlap ? hook_sum_end : NULL,
                                 .sum_doubles = hook_sum_doubles,
                                 .same_u64 = hook_same_u64,
                                 .ctx = dp};
    *out = dp;
    return 0;
}

void dp_destroy(struct dp *dp)
{
    if (!dp) return;
    free(dp->scratch);
    free(dp->reqs);
    free(dp->counts);
    free(dp->small);
    free(dp);
}

struct train_dp *dp_hook(struct dp *dp)
{
    return &dp->hook;
}

double dp_reduce_seconds(const struct dp *dp)
{
    return dp->reduce_s;
}

/* ---- lead and follow ---------------------------------------------------- */

static uLong crc_bytes(uLong crc, const uint8_t *p, size_t n)
{
    while (n > 0) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, p, k);
        p += k;
        n -= k;
    }
    return crc;
}

uint64_t dp_data_crc(const struct data_splits *s)
{
    const struct dataset *d[2] = {&s->train, &s->val};
    uLong crc = crc32(0L, Z_NULL, 0);
    for (int i = 0; i < 2; i++) {
        if (d[i]->n <= 0) continue;
        crc = crc_bytes(crc, d[i]->images,
                        (size_t)d[i]->n * d[i]->c * d[i]->h * d[i]->w);
        crc = crc_bytes(crc, d[i]->labels, (size_t)d[i]->n);
    }
    return (uint64_t)crc;
}

/* The message that describes a training to the followers. */
static int phase_from(struct proto_train_phase *p,
                      const struct train_config *tc,
                      const struct data_splits *s, uint64_t seed,
                      const struct train_io *io, const struct slim_penalty *pen,
                      char *err)
{
    memset(p, 0, sizeof *p);
    if (tc->nmilestones < 0 || tc->nmilestones > PROTO_MAX_MILESTONES)
        return abc_errf(err, ABC_EVALUE,
                        "data-parallel training: %d learning-rate milestones, "
                        "at most %d travel",
                        tc->nmilestones, PROTO_MAX_MILESTONES);
    p->seed = seed;
    p->epochs = tc->epochs;
    p->batch = tc->batch_size;
    p->lr = tc->lr;
    p->momentum = tc->momentum;
    p->nesterov = tc->nesterov != 0;
    p->weight_decay = tc->weight_decay;
    p->schedule = tc->schedule;
    p->nmilestones = tc->nmilestones;
    memcpy(p->milestones, tc->milestones,
           sizeof(int) * (size_t)tc->nmilestones);
    p->gamma = tc->gamma;
    p->warmup_epochs = tc->warmup_epochs;
    p->sync_bn = tc->sync_bn != 0;
    if (io) {
        p->stop_at_epoch = io->stop_at_epoch > 0 ? io->stop_at_epoch : 0;
        p->stop_at_step = io->stop_at_step > 0 ? io->stop_at_step : 0;
        p->skip_val = io->skip_val != 0;
    }
    if (pen) {
        p->sparsity = pen->s;
        p->sparsity_all_bn = pen->all_bn != 0;
    }
    p->train_images = s->train.n;
    p->val_images = s->val.n;
    p->data_crc = dp_data_crc(s);
    return 0;
}

/* The follower's schedule from the message (every field the training
 * reads; the rest of train_config stays zero). */
static void phase_to(const struct proto_train_phase *p, struct train_config *tc)
{
    memset(tc, 0, sizeof *tc);
    tc->epochs = p->epochs;
    tc->batch_size = p->batch;
    tc->lr = (float)p->lr;
    tc->momentum = (float)p->momentum;
    tc->nesterov = p->nesterov;
    tc->weight_decay = (float)p->weight_decay;
    tc->schedule = p->schedule;
    tc->nmilestones = p->nmilestones;
    memcpy(tc->milestones, p->milestones, sizeof(int) * (size_t)p->nmilestones);
    tc->gamma = (float)p->gamma;
    tc->warmup_epochs = p->warmup_epochs;
    tc->sync_bn = p->sync_bn;
    tc->sparsity = (float)p->sparsity;
    tc->sparsity_all_bn = p->sparsity_all_bn;
}

int dp_lead(struct dp *dp, struct model *m, const struct train_config *tc,
            const struct data_splits *s, uint64_t seed, struct train_state *st,
            const struct train_io *io, const struct slim_penalty *pen,
            char *err)
{
    if (dp->rank != 0)
        return abc_errf(err, ABC_EVALUE,
                        "rank %d: only rank 0 leads a data-parallel training",
                        dp->rank);
    if (io && io->after_backward)
        return abc_errf(err, ABC_EVALUE,
                        "data-parallel training: an after_backward hook "
                        "cannot travel to the other ranks (only slimming's "
                        "penalty does)");
    struct proto_train_phase p;
    int rc = phase_from(&p, tc, s, seed, io, pen, err);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char *model = NULL;
    size_t model_len = 0;
    /* Everything is ready before the first broadcast: once the followers
     * have the message they expect the model, then the training. */
    if (!rc) rc = proto_pack_train_phase(&p, &sb, err);
    if (!rc) rc = checkpoint_pack(m, st, &model, &model_len, err);
    if (!rc) {
        char *msg = sb.data;
        size_t len = sb.size;
        rc = proto_bcast_bytes(dp->comm, 0, &msg, &len, err);
    }
    if (!rc) rc = proto_bcast_bytes(dp->comm, 0, &model, &model_len, err);
    msgpack_sbuffer_destroy(&sb);
    free(model);
    if (rc) return rc;
    struct train_io lio = {0};
    if (io) lio = *io;
    /* the term is added iff it is sent (s > 0), on every rank alike */
    lio.after_backward = pen && pen->s > 0 ? slim_after_backward : NULL;
    lio.hook_ctx = (void *)pen;
    lio.dp = &dp->hook;
    double r0 = dp->reduce_s, t0 = now_seconds();
    rc = train_model(m, tc, s, seed, st, &lio, err);
    if (!rc && io && io->progress)
        fprintf(io->progress,
                "%s: %.1f s of %.1f s in gradient sums (rank 0, %s, buckets "
                "of %zu KiB)\n",
                io->tag ? io->tag : "train", dp->reduce_s - r0,
                now_seconds() - t0,
                dp->algo == DP_REDUCE_ORDERED ? "ordered" : "allreduce",
                dp->bucket * sizeof(float) / 1024);
    return rc;
}

int dp_release(struct dp *dp, char *err)
{
    char *none = NULL;
    size_t len = 0;
    return proto_bcast_bytes(dp->comm, 0, &none, &len, err);
}

/* One training rank 0 leads, from its message msg[0..len). */
static int follow_one(struct dp *dp, const struct config *c,
                      struct data_splits *d, int *have_data, const char *msg,
                      size_t len, const volatile sig_atomic_t *stop, char *err)
{
    struct proto_train_phase p;
    int rc = proto_unpack_train_phase(msg, len, &p, err);
    char *bytes = NULL;
    size_t nbytes = 0;
    /* the model follows the message whatever this rank made of it */
    char berr[ABC_ERRLEN];
    int brc = proto_bcast_bytes(dp->comm, 0, &bytes, &nbytes, rc ? berr : err);
    if (rc || brc) {
        free(bytes);
        return abc_errprefix(err, rc ? rc : brc, "rank %d", dp->rank);
    }
    struct model *m = NULL;
    struct train_state st = {0};
    rc = checkpoint_load_mem("rank 0's model", bytes, nbytes, &m, &st, err);
    free(bytes);
    if (!rc && !*have_data) {
        rc = data_open(d, c, 0, err);
        *have_data = rc == 0;
    }
    if (!rc && (d->train.n != p.train_images || d->val.n != p.val_images ||
                dp_data_crc(d) != p.data_crc))
        rc = abc_errf(err, ABC_EVALUE,
                      "%s: this rank's data split (%d training, %d validation "
                      "images) is not rank 0's (%d, %d, or other images): "
                      "every rank must read the same config and data",
                      c->path, d->train.n, d->val.n, p.train_images,
                      p.val_images);
    if (rc) {
        model_destroy(m);
        free(st.velocity);
        return abc_errprefix(err, rc, "rank %d", dp->rank);
    }
    struct train_config tc;
    phase_to(&p, &tc);
    struct slim_penalty pen = {.s = tc.sparsity, .all_bn = tc.sparsity_all_bn};
    struct train_io io = {.stop = stop,
                          .stop_at_epoch = p.stop_at_epoch,
                          .stop_at_step = p.stop_at_step,
                          .skip_val = p.skip_val,
                          .after_backward =
                              p.sparsity > 0 ? slim_after_backward : NULL,
                          .hook_ctx = &pen,
                          .dp = &dp->hook};
    rc = train_model(m, &tc, d, p.seed, &st, &io, err);
    model_destroy(m);
    free(st.velocity);
    if (rc && dp->hook.shared_error) return 0; /* rank 0 reports it */
    return rc ? abc_errprefix(err, rc, "rank %d", dp->rank) : 0;
}

int dp_follow(struct dp *dp, const struct config *c,
              const volatile sig_atomic_t *stop, char *err)
{
    struct data_splits d;
    int have_data = 0, rc = 0;
    for (;;) {
        char *msg = NULL;
        size_t len = 0;
        /* Wait for rank 0 even when stopped: it releases us. */
        if ((rc = proto_bcast_bytes(dp->comm, 0, &msg, &len, err))) break;
        if (len == 0) { /* released */
            free(msg);
            break;
        }
        rc = follow_one(dp, c, &d, &have_data, msg, len, stop, err);
        free(msg);
        if (rc) break;
    }
    if (have_data) data_close(&d);
    return rc;
}

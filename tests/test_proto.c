/* test_proto.c - the wire messages (proto/messages.c), on one process: round
 * trips of every message with all fields equal (typical, minimal and
 * maximal values), packing refuses bad structs, and every decoder survives
 * hostile input: every truncation, seeded random bytes, every single bit
 * flip, and hand-built maps with wrong/missing/duplicate/unknown fields,
 * out-of-range values, bad versions, depth bombs and huge declared sizes,
 * each rejected with an error that names the field. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/err.h"
#include "core/rng.h"
#include "messages.h"

/* ---- helpers ------------------------------------------------------------ */

enum which { W_REQUEST, W_RESULT, W_SHUTDOWN, W_PEEK };

/* Decodes buf with the decoder `w` into scratch structs. */
static int decode(enum which w, const char *buf, size_t len, char *err)
{
    static struct proto_eval_request rq;
    static struct proto_eval_result rs;
    static struct proto_shutdown sd;
    enum proto_type t;
    err[0] = 0;
    switch (w) {
    case W_REQUEST:
        return proto_unpack_eval_request(buf, len, &rq, err);
    case W_RESULT:
        return proto_unpack_eval_result(buf, len, &rs, err);
    case W_SHUTDOWN:
        return proto_unpack_shutdown(buf, len, &sd, err);
    case W_PEEK:
        return proto_peek_type(buf, len, &t, err);
    }
    return -1;
}

static struct proto_eval_request sample_request(void)
{
    struct proto_eval_request m;
    memset(&m, 0, sizeof m);
    m.eval_id = 1234567890123ULL;
    static const int s[] = {11, 3, 64, 1, 256, 4096, 7, 9, 12, 1, 2, 3, 500};
    m.nlayers = (int)(sizeof s / sizeof s[0]);
    memcpy(m.structure, s, sizeof s);
    m.seed = 0xdeadbeefcafef00dULL;
    m.budget = (struct proto_budget){.train_images = 5000,
                                     .epochs = 2,
                                     .steps = 0,
                                     .batch = 128,
                                     .lr = 0.01,
                                     .momentum = 0.9,
                                     .weight_decay = 5e-4,
                                     .val_images = 0,
                                     .proxy = 1,
                                     .bn_batches = 20};
    m.cycle = 7;
    m.phase = PROTO_PHASE_ONLOOKER;
    m.candidate = 3;
    return m;
}

static struct proto_eval_result sample_result(int ok)
{
    struct proto_eval_result m;
    memset(&m, 0, sizeof m);
    m.eval_id = 42;
    m.ok = ok;
    if (ok) {
        m.val_acc = 0.8765;
        m.val_loss = 0.3456;
        m.images_per_s = 1523.25;
        m.wall_s = 12.5;
        m.flops = 40550000;
        m.params = 270000;
    } else {
        snprintf(m.error, sizeof m.error, "NaN loss at step 17");
    }
    m.worker = 2;
    return m;
}

static int request_equal(const struct proto_eval_request *a,
                         const struct proto_eval_request *b)
{
    int eq = a->eval_id == b->eval_id && a->nlayers == b->nlayers &&
             a->seed == b->seed && a->cycle == b->cycle &&
             a->phase == b->phase && a->candidate == b->candidate &&
             a->budget.train_images == b->budget.train_images &&
             a->budget.epochs == b->budget.epochs &&
             a->budget.steps == b->budget.steps &&
             a->budget.batch == b->budget.batch &&
             a->budget.lr == b->budget.lr &&
             a->budget.momentum == b->budget.momentum &&
             a->budget.weight_decay == b->budget.weight_decay &&
             a->budget.val_images == b->budget.val_images &&
             a->budget.proxy == b->budget.proxy &&
             a->budget.bn_batches == b->budget.bn_batches;
    for (int i = 0; eq && i < a->nlayers; i++)
        eq = a->structure[i] == b->structure[i];
    return eq;
}

static int result_equal(const struct proto_eval_result *a,
                        const struct proto_eval_result *b)
{
    return a->eval_id == b->eval_id && a->ok == b->ok &&
           a->val_acc == b->val_acc && a->val_loss == b->val_loss &&
           a->images_per_s == b->images_per_s && a->wall_s == b->wall_s &&
           a->flops == b->flops && a->params == b->params &&
           a->worker == b->worker && strcmp(a->error, b->error) == 0;
}

/* The valid encodings collected by the round trips, for the hostile tests. */
#define MAX_SAMPLES 32
static struct sample {
    char *buf;
    size_t len;
    enum which w;
} samples[MAX_SAMPLES];
static int nsamples;

static void keep_sample(const msgpack_sbuffer *sb, enum which w)
{
    if (nsamples == MAX_SAMPLES) return;
    samples[nsamples].buf = malloc(sb->size);
    if (!samples[nsamples].buf) return;
    memcpy(samples[nsamples].buf, sb->data, sb->size);
    samples[nsamples].len = sb->size;
    samples[nsamples].w = w;
    nsamples++;
}

/* ---- round trips -------------------------------------------------------- */

static void roundtrip_request(const char *what,
                              const struct proto_eval_request *m)
{
    char err[ABC_ERRLEN] = "";
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int rc = proto_pack_eval_request(m, &sb, err);
    CHECK(rc == 0, "%s: pack: %s", what, err);
    if (rc == 0) {
        struct proto_eval_request back;
        rc = proto_unpack_eval_request(sb.data, sb.size, &back, err);
        CHECK(rc == 0, "%s: unpack: %s", what, err);
        CHECK(rc || request_equal(m, &back), "%s: fields differ", what);
        enum proto_type t = 0;
        rc = proto_peek_type(sb.data, sb.size, &t, err);
        CHECK(rc == 0 && t == PROTO_EVAL_REQUEST, "%s: peek: %d %s", what,
              (int)t, err);
        printf("ok   %s: %zu bytes\n", what, sb.size);
        keep_sample(&sb, W_REQUEST);
    }
    msgpack_sbuffer_destroy(&sb);
}

static void roundtrip_result(const char *what,
                             const struct proto_eval_result *m)
{
    char err[ABC_ERRLEN] = "";
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int rc = proto_pack_eval_result(m, &sb, err);
    CHECK(rc == 0, "%s: pack: %s", what, err);
    if (rc == 0) {
        struct proto_eval_result back;
        rc = proto_unpack_eval_result(sb.data, sb.size, &back, err);
        CHECK(rc == 0, "%s: unpack: %s", what, err);
        CHECK(rc || result_equal(m, &back), "%s: fields differ", what);
        enum proto_type t = 0;
        rc = proto_peek_type(sb.data, sb.size, &t, err);
        CHECK(rc == 0 && t == PROTO_EVAL_RESULT, "%s: peek: %d %s", what,
              (int)t, err);
        printf("ok   %s: %zu bytes\n", what, sb.size);
        keep_sample(&sb, W_RESULT);
    }
    msgpack_sbuffer_destroy(&sb);
}

static void roundtrip_shutdown(const char *what, const struct proto_shutdown *m)
{
    char err[ABC_ERRLEN] = "";
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    int rc = proto_pack_shutdown(m, &sb, err);
    CHECK(rc == 0, "%s: pack: %s", what, err);
    if (rc == 0) {
        struct proto_shutdown back;
        rc = proto_unpack_shutdown(sb.data, sb.size, &back, err);
        CHECK(rc == 0, "%s: unpack: %s", what, err);
        CHECK(rc || strcmp(m->reason, back.reason) == 0, "%s: reason differs",
              what);
        enum proto_type t = 0;
        rc = proto_peek_type(sb.data, sb.size, &t, err);
        CHECK(rc == 0 && t == PROTO_SHUTDOWN, "%s: peek: %d %s", what, (int)t,
              err);
        printf("ok   %s: %zu bytes\n", what, sb.size);
        keep_sample(&sb, W_SHUTDOWN);
    }
    msgpack_sbuffer_destroy(&sb);
}

static void test_roundtrips(void)
{
    struct proto_eval_request rq = sample_request();
    roundtrip_request("request typical", &rq);

    for (int p = PROTO_PHASE_INIT; p <= PROTO_PHASE_SCOUT; p++) {
        rq.phase = (enum proto_phase)p;
        char what[64];
        snprintf(what, sizeof what, "request phase %s",
                 proto_phase_name(rq.phase));
        roundtrip_request(what, &rq);
    }

    memset(&rq, 0, sizeof rq); /* the smallest values of every field */
    rq.nlayers = 1;
    rq.structure[0] = 1;
    rq.budget.train_images = 1;
    rq.budget.batch = 1;
    rq.budget.lr = DBL_TRUE_MIN;
    rq.budget.bn_batches = 1;
    rq.phase = PROTO_PHASE_INIT;
    roundtrip_request("request minimal", &rq);

    rq.eval_id = UINT64_MAX; /* the largest values of every field */
    rq.seed = UINT64_MAX;
    rq.nlayers = PROTO_MAX_LAYERS;
    for (int i = 0; i < PROTO_MAX_LAYERS; i++)
        rq.structure[i] = PROTO_MAX_CHANNELS;
    rq.budget = (struct proto_budget){.train_images = INT_MAX,
                                      .epochs = PROTO_MAX_EPOCHS,
                                      .steps = PROTO_MAX_STEPS,
                                      .batch = PROTO_MAX_BATCH,
                                      .lr = DBL_MAX,
                                      .momentum = nextafter(1.0, 0.0),
                                      .weight_decay = DBL_MAX,
                                      .val_images = INT_MAX,
                                      .proxy = 1,
                                      .bn_batches = PROTO_MAX_BN_BATCHES};
    rq.cycle = INT_MAX;
    rq.phase = PROTO_PHASE_SCOUT;
    rq.candidate = INT_MAX;
    roundtrip_request("request maximal (256 layers)", &rq);
    /* absurd training is refused, naming the field and the limit */
    {
        struct {
            int *f;
            int v;
            const char *want;
        } big[] = {{&rq.budget.epochs, PROTO_MAX_EPOCHS + 1,
                    "\"budget.epochs\": 100001 out of range [0, 100000]"},
                   {&rq.budget.steps, PROTO_MAX_STEPS + 1, "budget.steps"},
                   {&rq.budget.bn_batches, INT_MAX, "budget.bn_batches"}};
        for (int i = 0; i < 3; i++) {
            struct proto_eval_request b = rq;
            *(int *)((char *)&b + ((char *)big[i].f - (char *)&rq)) = big[i].v;
            char err[ABC_ERRLEN] = "";
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            int rc = proto_pack_eval_request(&b, &sb, err);
            CHECK(rc == ABC_EVALUE && sb.size == 0 && strstr(err, big[i].want),
                  "absurd %s: rc %d, %s", big[i].want, rc, err);
            msgpack_sbuffer_destroy(&sb);
        }
    }

    struct proto_eval_result rs = sample_result(1);
    roundtrip_result("result ok", &rs);
    rs = sample_result(0);
    roundtrip_result("result error", &rs);
    memset(&rs, 0, sizeof rs);
    rs.ok = 1;
    roundtrip_result("result zeros", &rs);
    rs.eval_id = UINT64_MAX;
    rs.ok = 0;
    rs.val_acc = 1.0;
    rs.val_loss = DBL_MAX;
    rs.images_per_s = DBL_MAX;
    rs.wall_s = DBL_MAX;
    rs.flops = INT64_MAX;
    rs.params = INT64_MAX;
    rs.worker = INT_MAX;
    for (int i = 0; i < PROTO_MAX_ERROR; i++)
        rs.error[i] = (char)(' ' + i % 95);
    rs.error[PROTO_MAX_ERROR] = 0;
    roundtrip_result("result maximal (1024-byte error)", &rs);
    snprintf(rs.error, sizeof rs.error, "caf\xc3\xa9: UTF-8 \"quoted\"\n");
    roundtrip_result("result UTF-8 error", &rs);

    struct proto_shutdown sd = {""};
    roundtrip_shutdown("shutdown", &sd);
    snprintf(sd.reason, sizeof sd.reason, "search finished");
    roundtrip_shutdown("shutdown with reason", &sd);
    memset(sd.reason, 'r', PROTO_MAX_REASON);
    sd.reason[PROTO_MAX_REASON] = 0;
    roundtrip_shutdown("shutdown maximal reason", &sd);

    /* Each decoder refuses the other messages, naming "type". */
    char err[ABC_ERRLEN];
    for (int i = 0; i < nsamples; i++)
        for (enum which w = W_REQUEST; w <= W_SHUTDOWN; w++) {
            if (w == samples[i].w) continue;
            int rc = decode(w, samples[i].buf, samples[i].len, err);
            CHECK(rc == ABC_EFORMAT && strstr(err, "\"type\""),
                  "sample %d decoded as %d: rc %d, %s", i, (int)w, rc, err);
        }
}

/* ---- packing refuses bad structs ---------------------------------------- */

static void expect_pack_fail(const char *what, int rc, const char *err,
                             const msgpack_sbuffer *sb, const char *needle)
{
    CHECK(rc == ABC_EVALUE && strstr(err, needle) && sb->size == 0,
          "%s: rc %d, %zu bytes, err \"%s\" (want \"%s\")", what, rc, sb->size,
          err, needle);
}

static void test_pack_refuses(void)
{
    char err[ABC_ERRLEN];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    struct proto_eval_request rq;
#define BAD_REQ(stmt, needle)                                                  \
    do {                                                                       \
        rq = sample_request();                                                 \
        stmt;                                                                  \
        err[0] = 0;                                                            \
        int rc_ = proto_pack_eval_request(&rq, &sb, err);                      \
        expect_pack_fail(#stmt, rc_, err, &sb, needle);                        \
    } while (0)
    BAD_REQ(rq.nlayers = 0, "\"structure\"");
    BAD_REQ(rq.nlayers = PROTO_MAX_LAYERS + 1, "\"structure\"");
    BAD_REQ(rq.structure[2] = 0, "\"structure[2]\"");
    BAD_REQ(rq.structure[0] = PROTO_MAX_CHANNELS + 1, "\"structure[0]\"");
    BAD_REQ(rq.budget.batch = -1, "\"budget.batch\"");
    BAD_REQ(rq.budget.train_images = 0, "\"budget.train_images\"");
    BAD_REQ(rq.budget.lr = 0, "\"budget.lr\"");
    BAD_REQ(rq.budget.lr = NAN, "\"budget.lr\"");
    BAD_REQ(rq.budget.momentum = 1, "\"budget.momentum\"");
    BAD_REQ(rq.budget.weight_decay = INFINITY, "\"budget.weight_decay\"");
    BAD_REQ(rq.budget.val_images = -1, "\"budget.val_images\"");
    BAD_REQ(rq.budget.proxy = 2, "\"budget.proxy\"");
    BAD_REQ(rq.budget.bn_batches = 0, "\"budget.bn_batches\"");
    BAD_REQ(rq.cycle = -1, "\"cycle\"");
    BAD_REQ(rq.phase = (enum proto_phase)9, "\"phase\"");
    BAD_REQ(rq.candidate = -2, "\"candidate\"");
#undef BAD_REQ
    struct proto_eval_result rs;
#define BAD_RES(okv, stmt, needle)                                             \
    do {                                                                       \
        rs = sample_result(okv);                                               \
        stmt;                                                                  \
        err[0] = 0;                                                            \
        int rc_ = proto_pack_eval_result(&rs, &sb, err);                       \
        expect_pack_fail(#stmt, rc_, err, &sb, needle);                        \
    } while (0)
    BAD_RES(1, rs.val_acc = 1.5, "\"val_acc\"");
    BAD_RES(1, rs.val_loss = NAN, "\"val_loss\"");
    BAD_RES(1, rs.wall_s = -1, "\"wall_s\"");
    BAD_RES(1, rs.flops = -1, "\"flops\"");
    BAD_RES(1, rs.ok = 2, "\"ok\"");
    BAD_RES(1, strcpy(rs.error, "x"), "\"error\"");
    BAD_RES(0, rs.error[0] = 0, "\"error\"");
    BAD_RES(0, memset(rs.error, 'x', sizeof rs.error), "\"error\"");
#undef BAD_RES
    struct proto_shutdown sd;
    memset(sd.reason, 'x', sizeof sd.reason);
    int rc = proto_pack_shutdown(&sd, &sb, err);
    expect_pack_fail("unterminated reason", rc, err, &sb, "\"reason\"");
    msgpack_sbuffer_destroy(&sb);
}

/* ---- hand-built maps ---------------------------------------------------- */

/* A value to put in a hand-built map. */
enum vkind {
    V_NIL,
    V_TRUE,
    V_FALSE,
    V_UINT,
    V_INT,
    V_F64,
    V_F32,
    V_STR,
    V_BIN,
    V_EXT,
    V_INTS,
    V_EMPTY_MAP,
    V_BUDGET,
    V_RAW
};
struct val {
    enum vkind k;
    uint64_t u;
    int64_t i;
    double f;
    const char *s;   /* V_STR, V_BIN, V_RAW (bytes) */
    size_t n;        /* their length; V_INTS: count */
    const int *ints; /* V_INTS */
};
struct kv {
    const char *key;
    int int_key; /* the key is the integer 7, not a string */
    struct val v;
};
/* A message as key/value lists: the top map and the budget map (packed
 * where a top value is V_BUDGET). */
struct doc {
    struct kv top[24], budget[16];
    int ntop, nbudget;
};

#define VU(x) ((struct val){.k = V_UINT, .u = (x)})
#define VI(x) ((struct val){.k = V_INT, .i = (x)})
#define VF(x) ((struct val){.k = V_F64, .f = (x)})
#define VS(x) ((struct val){.k = V_STR, .s = (x), .n = strlen(x)})

static int pack_val(msgpack_packer *pk, const struct doc *d,
                    const struct val *v);

static int pack_kvs(msgpack_packer *pk, const struct doc *d,
                    const struct kv *kv, int n)
{
    int rc = msgpack_pack_map(pk, (size_t)n);
    for (int i = 0; i < n && !rc; i++) {
        if (kv[i].int_key)
            rc = msgpack_pack_int(pk, 7);
        else
            rc = msgpack_pack_str(pk, strlen(kv[i].key)) ||
                 msgpack_pack_str_body(pk, kv[i].key, strlen(kv[i].key));
        rc = rc || pack_val(pk, d, &kv[i].v);
    }
    return rc;
}

static int pack_val(msgpack_packer *pk, const struct doc *d,
                    const struct val *v)
{
    switch (v->k) {
    case V_NIL:
        return msgpack_pack_nil(pk);
    case V_TRUE:
        return msgpack_pack_true(pk);
    case V_FALSE:
        return msgpack_pack_false(pk);
    case V_UINT:
        return msgpack_pack_uint64(pk, v->u);
    case V_INT:
        return msgpack_pack_int64(pk, v->i);
    case V_F64:
        return msgpack_pack_double(pk, v->f);
    case V_F32:
        return msgpack_pack_float(pk, (float)v->f);
    case V_STR:
        return msgpack_pack_str(pk, v->n) ||
               msgpack_pack_str_body(pk, v->s, v->n);
    case V_BIN:
        return msgpack_pack_bin(pk, v->n) ||
               msgpack_pack_bin_body(pk, v->s, v->n);
    case V_EXT:
        return msgpack_pack_ext(pk, 2, 5) || msgpack_pack_ext_body(pk, "ab", 2);
    case V_INTS: {
        int rc = msgpack_pack_array(pk, v->n);
        for (size_t i = 0; i < v->n && !rc; i++)
            rc = msgpack_pack_int(pk, v->ints[i]);
        return rc;
    }
    case V_EMPTY_MAP:
        return msgpack_pack_map(pk, 0);
    case V_BUDGET:
        return pack_kvs(pk, d, d->budget, d->nbudget);
    case V_RAW:
        return msgpack_sbuffer_write(pk->data, v->s, v->n);
    }
    return -1;
}

/* Packs d into sb (emptied first). */
static void doc_pack(const struct doc *d, msgpack_sbuffer *sb)
{
    msgpack_sbuffer_clear(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int rc = pack_kvs(&pk, d, d->top, d->ntop);
    if (rc) {
        fprintf(stderr, "test_proto: out of memory packing a test map\n");
        exit(1);
    }
}

static const int sample_structure[] = {4, 8, 16, 1};

static void doc_request(struct doc *d)
{
    memset(d, 0, sizeof *d);
    struct kv top[] = {
        {"type", 0, VS("eval_request")},
        {"version", 0, VU(1)},
        {"eval_id", 0, VU(99)},
        {"structure", 0, {.k = V_INTS, .ints = sample_structure, .n = 4}},
        {"seed", 0, VU(12345)},
        {"budget", 0, {.k = V_BUDGET}},
        {"cycle", 0, VU(2)},
        {"phase", 0, VS("employed")},
        {"candidate", 0, VU(5)},
    };
    struct kv budget[] = {
        {"train_images", 0, VU(1000)}, {"epochs", 0, VU(1)},
        {"steps", 0, VU(0)},           {"batch", 0, VU(64)},
        {"lr", 0, VF(0.05)},           {"momentum", 0, VF(0.9)},
        {"weight_decay", 0, VF(1e-4)}, {"val_images", 0, VU(500)},
        {"proxy", 0, VU(0)},           {"bn_batches", 0, VU(20)},
    };
    memcpy(d->top, top, sizeof top);
    d->ntop = (int)(sizeof top / sizeof top[0]);
    memcpy(d->budget, budget, sizeof budget);
    d->nbudget = (int)(sizeof budget / sizeof budget[0]);
}

static void doc_result(struct doc *d, int ok)
{
    memset(d, 0, sizeof *d);
    struct kv top[] = {
        {"type", 0, VS("eval_result")},
        {"version", 0, VU(1)},
        {"eval_id", 0, VU(99)},
        {"ok", 0, {.k = ok ? V_TRUE : V_FALSE}},
        {"val_acc", 0, VF(0.5)},
        {"val_loss", 0, VF(1.25)},
        {"images_per_s", 0, VF(800)},
        {"wall_s", 0, VF(3.5)},
        {"flops", 0, VU(1000000)},
        {"params", 0, VU(20000)},
        {"worker", 0, VU(1)},
        {"stopped", 0, {.k = V_FALSE}},
        {"error", 0, VS("out of memory")},
    };
    memcpy(d->top, top, sizeof top);
    d->ntop = (int)(sizeof top / sizeof top[0]) - (ok ? 1 : 0);
}

static void doc_shutdown(struct doc *d)
{
    memset(d, 0, sizeof *d);
    d->top[0] = (struct kv){"type", 0, VS("shutdown")};
    d->top[1] = (struct kv){"version", 0, VU(1)};
    d->top[2] = (struct kv){"reason", 0, VS("done")};
    d->ntop = 3;
}

/* The entry named by path ("lr" or "budget.lr"), or NULL; *list / *n say
 * which map it is in. */
static struct kv *doc_find(struct doc *d, const char *path, struct kv **list,
                           int **n)
{
    *list = d->top;
    *n = &d->ntop;
    if (strncmp(path, "budget.", 7) == 0) {
        *list = d->budget;
        *n = &d->nbudget;
        path += 7;
    }
    for (int i = 0; i < **n; i++)
        if (!(*list)[i].int_key && strcmp((*list)[i].key, path) == 0)
            return &(*list)[i];
    return NULL;
}

static void doc_set(struct doc *d, const char *path, struct val v)
{
    struct kv *list;
    int *n;
    struct kv *e = doc_find(d, path, &list, &n);
    if (!e) {
        fprintf(stderr, "test_proto: no field %s in the test map\n", path);
        exit(1);
    }
    e->v = v;
}

static void doc_remove(struct doc *d, const char *path)
{
    struct kv *list;
    int *n;
    struct kv *e = doc_find(d, path, &list, &n);
    if (e) {
        memmove(e, e + 1, (size_t)(list + *n - (e + 1)) * sizeof *e);
        (*n)--;
    }
}

static void doc_append(struct doc *d, int in_budget, struct kv kv)
{
    if (in_budget)
        d->budget[d->nbudget++] = kv;
    else
        d->top[d->ntop++] = kv;
}

/* Packs d, decodes it with w, and checks the decoder refuses it with an
 * error containing needle. */
static void expect_reject(const char *what, const struct doc *d, enum which w,
                          const char *needle)
{
    char err[ABC_ERRLEN];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    doc_pack(d, &sb);
    int rc = decode(w, sb.data, sb.size, err);
    CHECK(rc != 0 && err[0] && strstr(err, needle),
          "%s: rc %d, err \"%s\" (want \"%s\")", what, rc, err, needle);
    msgpack_sbuffer_destroy(&sb);
}

static void expect_accept(const char *what, const struct doc *d, enum which w)
{
    char err[ABC_ERRLEN];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    doc_pack(d, &sb);
    int rc = decode(w, sb.data, sb.size, err);
    CHECK(rc == 0, "%s: %s", what, err);
    msgpack_sbuffer_destroy(&sb);
}

/* msgpack categories, for "a value of the wrong type". */
enum cat { C_NIL, C_BOOL, C_INT, C_FLOAT, C_STR, C_ARRAY, C_MAP, C_BIN, C_EXT };

static const struct {
    enum cat c;
    struct val v;
} wrong[] = {
    {C_NIL, {.k = V_NIL}},
    {C_BOOL, {.k = V_TRUE}},
    {C_INT, {.k = V_UINT, .u = 5}},
    {C_INT, {.k = V_INT, .i = -5}},
    {C_FLOAT, {.k = V_F64, .f = 1.5}},
    {C_FLOAT, {.k = V_F32, .f = 0.25}},
    {C_STR, {.k = V_STR, .s = "x", .n = 1}},
    {C_ARRAY, {.k = V_INTS, .ints = sample_structure, .n = 1}},
    {C_MAP, {.k = V_EMPTY_MAP}},
    {C_BIN, {.k = V_BIN, .s = "\x01\x02", .n = 2}},
    {C_EXT, {.k = V_EXT}},
};

struct fieldcat {
    const char *path;
    enum cat c;
};

static const struct fieldcat request_cats[] = {
    {"type", C_STR},
    {"version", C_INT},
    {"eval_id", C_INT},
    {"structure", C_ARRAY},
    {"seed", C_INT},
    {"budget", C_MAP},
    {"cycle", C_INT},
    {"phase", C_STR},
    {"candidate", C_INT},
    {"budget.train_images", C_INT},
    {"budget.epochs", C_INT},
    {"budget.steps", C_INT},
    {"budget.batch", C_INT},
    {"budget.lr", C_FLOAT},
    {"budget.momentum", C_FLOAT},
    {"budget.weight_decay", C_FLOAT},
    {"budget.val_images", C_INT},
    {"budget.proxy", C_INT},
    {"budget.bn_batches", C_INT},
};
static const struct fieldcat result_cats[] = {
    {"type", C_STR},           {"version", C_INT},
    {"eval_id", C_INT},        {"ok", C_BOOL},
    {"val_acc", C_FLOAT},      {"val_loss", C_FLOAT},
    {"images_per_s", C_FLOAT}, {"wall_s", C_FLOAT},
    {"flops", C_INT},          {"params", C_INT},
    {"worker", C_INT},         {"stopped", C_BOOL},
    {"error", C_STR},
};
static const struct fieldcat shutdown_cats[] = {
    {"type", C_STR}, {"version", C_INT}, {"reason", C_STR}};

static void make_doc(struct doc *d, enum which w)
{
    if (w == W_REQUEST)
        doc_request(d);
    else if (w == W_RESULT)
        doc_result(d, 0); /* ok = false: every field present */
    else
        doc_shutdown(d);
}

/* For every field of one message: wrong msgpack type, missing, duplicate. */
static void test_fields(enum which w, const struct fieldcat *cats, int ncats)
{
    struct doc d;
    char what[128], needle[64];
    make_doc(&d, w);
    expect_accept("the hand-built map itself", &d, w);
    for (int i = 0; i < ncats; i++) {
        const char *path = cats[i].path;
        /* version errors read "message version ..." */
        if (strcmp(path, "version") == 0)
            snprintf(needle, sizeof needle, "version");
        else
            snprintf(needle, sizeof needle, "\"%s\"", path);
        for (size_t j = 0; j < sizeof wrong / sizeof wrong[0]; j++) {
            if (wrong[j].c == cats[i].c) continue;
            make_doc(&d, w);
            doc_set(&d, path, wrong[j].v);
            snprintf(what, sizeof what, "%s of wrong type #%zu", path, j);
            expect_reject(what, &d, w, needle);
        }
        make_doc(&d, w);
        doc_remove(&d, path);
        snprintf(what, sizeof what, "%s missing", path);
        if (strcmp(path, "reason") == 0)
            expect_accept(what, &d, w); /* optional */
        else
            expect_reject(what, &d, w, needle);

        make_doc(&d, w);
        struct kv *list;
        int *n;
        struct kv copy = *doc_find(&d, path, &list, &n);
        doc_append(&d, list == d.budget, copy);
        snprintf(what, sizeof what, "%s duplicated", path);
        expect_reject(what, &d, w, "duplicate");
        expect_reject(what, &d, w, needle);
    }
    make_doc(&d, w);
    doc_append(&d, 0, (struct kv){"bogus", 0, VU(1)});
    expect_reject("unknown field", &d, w, "unknown field \"bogus\"");
    make_doc(&d, w);
    doc_append(&d, 0, (struct kv){"", 1, VU(1)});
    expect_reject("integer key", &d, w, "not a str");
    if (w == W_REQUEST) {
        make_doc(&d, w);
        doc_append(&d, 1, (struct kv){"bogus", 0, VU(1)});
        expect_reject("unknown budget field", &d, w, "\"budget.bogus\"");
    }
}

struct range_case {
    enum which w;
    const char *path;
    struct val v;
    const char *needle;
};

static void test_ranges(void)
{
    static int big_structure[1000],
        zero_entry[] = {3, 0, 5}, big_entry[] = {3, 65537}, neg_entry[] = {-3};
    for (int i = 0; i < 1000; i++)
        big_structure[i] = 2;
    static char long_error[5000], nul_error[] = "bad\0byte";
    memset(long_error, 'e', sizeof long_error);
    const struct range_case cases[] = {
        {W_REQUEST, "budget.batch", VI(-1), "\"budget.batch\""},
        {W_REQUEST, "budget.batch", VU(0), "\"budget.batch\""},
        {W_REQUEST, "budget.batch", VU(65537), "\"budget.batch\""},
        {W_REQUEST, "budget.train_images", VU(0), "\"budget.train_images\""},
        {W_REQUEST, "budget.train_images", VU(1ULL << 40),
         "\"budget.train_images\""},
        {W_REQUEST, "budget.epochs", VI(-1), "\"budget.epochs\""},
        {W_REQUEST, "budget.steps", VI(-7), "\"budget.steps\""},
        {W_REQUEST, "budget.val_images", VI(-1), "\"budget.val_images\""},
        {W_REQUEST, "budget.lr", VF(0), "\"budget.lr\""},
        {W_REQUEST, "budget.lr", VF(-0.1), "\"budget.lr\""},
        {W_REQUEST, "budget.lr", VF(INFINITY), "\"budget.lr\""},
        {W_REQUEST, "budget.lr", VF(NAN), "\"budget.lr\""},
        {W_REQUEST, "budget.momentum", VF(1.0), "\"budget.momentum\""},
        {W_REQUEST, "budget.momentum", VF(-0.1), "\"budget.momentum\""},
        {W_REQUEST, "budget.weight_decay", VF(-1e-4),
         "\"budget.weight_decay\""},
        {W_REQUEST,
         "structure",
         {.k = V_INTS, .ints = zero_entry, .n = 3},
         "\"structure[1]\""},
        {W_REQUEST,
         "structure",
         {.k = V_INTS, .ints = big_entry, .n = 2},
         "\"structure[1]\""},
        {W_REQUEST,
         "structure",
         {.k = V_INTS, .ints = neg_entry, .n = 1},
         "\"structure[0]\""},
        {W_REQUEST,
         "structure",
         {.k = V_INTS, .ints = big_structure, .n = 1000},
         "\"structure\""},
        {W_REQUEST,
         "structure",
         {.k = V_INTS, .ints = big_structure, .n = 257},
         "\"structure\""},
        {W_REQUEST,
         "structure",
         {.k = V_INTS, .ints = big_structure, .n = 0},
         "\"structure\""},
        {W_REQUEST,
         "structure",
         {.k = V_RAW, .s = "\x92\x01\xa1x", .n = 4},
         "\"structure[1]\""},
        {W_REQUEST, "eval_id", VI(-1), "\"eval_id\""},
        {W_REQUEST, "seed", VI(-9), "\"seed\""},
        {W_REQUEST, "cycle", VI(-1), "\"cycle\""},
        {W_REQUEST, "cycle", VU(1ULL << 31), "\"cycle\""},
        {W_REQUEST, "candidate", VI(-1), "\"candidate\""},
        {W_REQUEST, "phase", VS("bogus"), "\"phase\""},
        {W_REQUEST, "phase", VS(""), "\"phase\""},
        {W_REQUEST, "phase", VS("init "), "\"phase\""},
        {W_REQUEST, "type", VS("bogus"), "\"type\""},
        {W_REQUEST, "type", VS("eval_result"), "\"type\""},
        {W_REQUEST, "version", VU(2), "message version 2, this build speaks 1"},
        {W_REQUEST, "version", VU(0), "message version 0"},
        {W_REQUEST, "version", VI(-1), "message version -1"},
        {W_RESULT, "val_acc", VF(1.5), "\"val_acc\""},
        {W_RESULT, "val_acc", VF(-0.01), "\"val_acc\""},
        {W_RESULT, "val_acc", VF(NAN), "\"val_acc\""},
        {W_RESULT, "val_loss", VF(-1), "\"val_loss\""},
        {W_RESULT, "val_loss", VF(INFINITY), "\"val_loss\""},
        {W_RESULT, "images_per_s", VF(-5), "\"images_per_s\""},
        {W_RESULT, "wall_s", VF(-1), "\"wall_s\""},
        {W_RESULT, "wall_s", VF(NAN), "\"wall_s\""},
        {W_RESULT, "flops", VI(-1), "\"flops\""},
        {W_RESULT, "flops", VU(1ULL << 63), "\"flops\""},
        {W_RESULT, "params", VI(-1), "\"params\""},
        {W_RESULT, "worker", VI(-1), "\"worker\""},
        {W_RESULT, "worker", VU(1ULL << 32), "\"worker\""},
        {W_RESULT, "eval_id", VI(-2), "\"eval_id\""},
        {W_RESULT,
         "error",
         {.k = V_STR, .s = long_error, .n = 5000},
         "\"error\""},
        {W_RESULT,
         "error",
         {.k = V_STR, .s = long_error, .n = 1025},
         "\"error\""},
        {W_RESULT, "error", {.k = V_STR, .s = nul_error, .n = 8}, "\"error\""},
        {W_RESULT, "error", VS(""), "\"error\""},
        {W_RESULT, "version", VU(2), "message version 2, this build speaks 1"},
        {W_SHUTDOWN,
         "reason",
         {.k = V_STR, .s = long_error, .n = 257},
         "\"reason\""},
        {W_SHUTDOWN, "version", VU(2),
         "message version 2, this build speaks 1"},
        {W_SHUTDOWN, "type", VS("shutdow"), "\"type\""},
    };
    struct doc d;
    char what[160];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        make_doc(&d, cases[i].w);
        doc_set(&d, cases[i].path, cases[i].v);
        snprintf(what, sizeof what, "range case %zu (%s)", i, cases[i].path);
        expect_reject(what, &d, cases[i].w, cases[i].needle);
    }

    /* The edges themselves are accepted, and float32 is a float. */
    const struct range_case good[] = {
        {W_REQUEST, "budget.batch", VU(65536), ""},
        {W_REQUEST, "budget.momentum", VF(0), ""},
        {W_REQUEST, "budget.lr", {.k = V_F32, .f = 0.5}, ""},
        {W_REQUEST, "budget.val_images", VU(0), ""},
        {W_REQUEST,
         "structure",
         {.k = V_INTS, .ints = big_structure, .n = 256},
         ""},
        {W_RESULT, "val_acc", VF(1.0), ""},
        {W_RESULT, "val_acc", VF(0.0), ""},
        {W_RESULT, "error", {.k = V_STR, .s = long_error, .n = 1024}, ""},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        make_doc(&d, good[i].w);
        doc_set(&d, good[i].path, good[i].v);
        snprintf(what, sizeof what, "edge case %zu (%s)", i, good[i].path);
        expect_accept(what, &d, good[i].w);
    }

    /* "error" must be present iff ok is false. */
    doc_result(&d, 1);
    expect_accept("ok result without error", &d, W_RESULT);
    doc_append(&d, 0, (struct kv){"error", 0, VS("x")});
    expect_reject("ok result with error", &d, W_RESULT, "\"error\"");
    doc_result(&d, 0);
    doc_remove(&d, "error");
    expect_reject("failed result without error", &d, W_RESULT, "\"error\"");
}

/* ---- raw hostile bytes -------------------------------------------------- */

static void expect_raw_reject(const char *what, const char *buf, size_t len,
                              const char *needle)
{
    char err[ABC_ERRLEN];
    for (enum which w = W_REQUEST; w <= W_PEEK; w++) {
        int rc = decode(w, buf, len, err);
        CHECK(rc != 0 && err[0] && (!needle || strstr(err, needle)),
              "%s (decoder %d): rc %d, err \"%s\" (want \"%s\")", what, (int)w,
              rc, err, needle ? needle : "");
    }
}

static void test_raw(void)
{
    char err[ABC_ERRLEN];
    expect_raw_reject("empty", "", 0, "empty");
    expect_raw_reject("NULL", NULL, 0, "empty");
    expect_raw_reject("top-level array", "\x92\x01\x02", 3, "map");
    expect_raw_reject("top-level int", "\x05", 1, "map");
    expect_raw_reject("top-level str", "\xacshutdown....", 13, "map");
    expect_raw_reject("top-level nil", "\xc0", 1, "map");
    expect_raw_reject("never-used byte 0xc1", "\xc1", 1, "0xc1");
    expect_raw_reject("empty map", "\x80", 1, "\"version\"");

    /* Huge declared sizes in tiny buffers: refused before msgpack-c sees
     * them (it would allocate count * 24 bytes up front). */
    expect_raw_reject("array32 of 2^32-1", "\xdd\xff\xff\xff\xff", 5,
                      "declares");
    expect_raw_reject("array32 of 2^32-1 + bytes",
                      "\xdd\xff\xff\xff\xff\x01\x02\x03", 8, "declares");
    expect_raw_reject("map32 of 2^32-1", "\xdf\xff\xff\xff\xff", 5, "declares");
    expect_raw_reject("map16 of 65535", "\xde\xff\xff\xa1x\x01", 6, "declares");
    expect_raw_reject("str32 of 4 GiB",
                      "\xdb\xff\xff\xff\xff"
                      "abc",
                      8, "truncated");
    expect_raw_reject("bin32 of 4 GiB", "\xc6\xff\xff\xff\xff", 5, "truncated");
    expect_raw_reject("ext32 of 4 GiB", "\xc9\xff\xff\xff\xff\x01", 6,
                      "truncated");
    expect_raw_reject("header cut", "\xdd\xff", 2, "truncated");

    struct doc d;
    doc_request(&d);
    doc_set(&d, "structure",
            (struct val){.k = V_RAW, .s = "\xdd\xff\xff\xff\xff\x01", .n = 6});
    expect_reject("huge structure array inside a request", &d, W_REQUEST,
                  "declares");
    doc_request(&d);
    doc_set(&d, "budget",
            (struct val){.k = V_RAW, .s = "\xdf\x7f\xff\xff\xff", .n = 5});
    expect_reject("huge budget map inside a request", &d, W_REQUEST,
                  "declares");

    /* Depth bombs: deep nesting alone, and as a field value. */
    size_t deep = 60000; /* under PROTO_MAX_MESSAGE, so depth is what fails */
    char *bomb = malloc(deep + 1);
    if (!bomb) {
        CHECK(0, "out of memory");
        return;
    }
    memset(bomb, 0x91, deep); /* [[[[...0...]]]] */
    bomb[deep] = 0;
    expect_raw_reject("array depth bomb", bomb, deep + 1, "nested");
    for (size_t i = 0; i + 2 < deep; i += 3) {
        bomb[i] = (char)0x81; /* {"a": {"a": ...}} */
        bomb[i + 1] = (char)0xa1;
        bomb[i + 2] = 'a';
    }
    expect_raw_reject("map depth bomb", bomb, deep - deep % 3, "nested");
    memset(bomb, 0x91, 40);
    bomb[40] = 0;
    doc_request(&d);
    doc_set(&d, "budget", (struct val){.k = V_RAW, .s = bomb, .n = 41});
    expect_reject("depth bomb as budget", &d, W_REQUEST, "nested");
    doc_request(&d);
    doc_set(&d, "structure", (struct val){.k = V_RAW, .s = bomb + 34, .n = 7});
    expect_reject("nested arrays as structure", &d, W_REQUEST,
                  "\"structure[0]\"");
    free(bomb);

    /* Too big, trailing bytes, concatenated messages. */
    char *big = calloc(1, PROTO_MAX_MESSAGE + 1);
    if (big) {
        expect_raw_reject("oversized", big, PROTO_MAX_MESSAGE + 1, "exceeds");
        free(big);
    }
    for (int i = 0; i < nsamples; i++) {
        size_t n = samples[i].len;
        char *b = malloc(2 * n);
        if (!b) continue;
        memcpy(b, samples[i].buf, n);
        memcpy(b + n, samples[i].buf, n);
        int rc = decode(samples[i].w, b, n + 1, err);
        CHECK(rc == ABC_EFORMAT && strstr(err, "trailing"),
              "sample %d + 1 byte: %d %s", i, rc, err);
        rc = decode(samples[i].w, b, 2 * n, err);
        CHECK(rc == ABC_EFORMAT && strstr(err, "trailing"),
              "sample %d twice: %d %s", i, rc, err);
        rc = decode(W_PEEK, b, 2 * n, err);
        CHECK(rc == ABC_EFORMAT && strstr(err, "trailing"),
              "sample %d twice, peek: %d %s", i, rc, err);
        free(b);
    }
}

/* Every proper prefix of every valid encoding is refused by every decoder. */
static void test_truncations(void)
{
    char err[ABC_ERRLEN];
    long tried = 0, bad = 0;
    for (int i = 0; i < nsamples; i++)
        for (size_t n = 0; n < samples[i].len; n++)
            for (enum which w = W_REQUEST; w <= W_PEEK; w++) {
                /* an exact-size copy, so that ASan sees any overread */
                char *b = malloc(n ? n : 1);
                if (!b) continue;
                memcpy(b, samples[i].buf, n);
                int rc = decode(w, b, n, err);
                tried++;
                if (rc == 0 || !err[0]) {
                    bad++;
                    CHECK(0, "sample %d cut to %zu bytes accepted by %d", i, n,
                          (int)w);
                }
                free(b);
            }
    printf("ok   truncations: %ld decodes, %ld accepted\n", tried, bad);
}

/* A decoded message must be valid: packing it again works and gives a
 * message that decodes to the same fields. */
static void check_consistent(enum which w, const char *buf, size_t len,
                             const char *what)
{
    char err[ABC_ERRLEN];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (w == W_REQUEST) {
        struct proto_eval_request a, b;
        int rc = proto_unpack_eval_request(buf, len, &a, err);
        rc = rc ? rc : proto_pack_eval_request(&a, &sb, err);
        rc = rc ? rc : proto_unpack_eval_request(sb.data, sb.size, &b, err);
        CHECK(rc == 0 && request_equal(&a, &b), "%s: %s", what, err);
    } else if (w == W_RESULT) {
        struct proto_eval_result a, b;
        int rc = proto_unpack_eval_result(buf, len, &a, err);
        rc = rc ? rc : proto_pack_eval_result(&a, &sb, err);
        rc = rc ? rc : proto_unpack_eval_result(sb.data, sb.size, &b, err);
        CHECK(rc == 0 && result_equal(&a, &b), "%s: %s", what, err);
    } else if (w == W_SHUTDOWN) {
        struct proto_shutdown a, b;
        int rc = proto_unpack_shutdown(buf, len, &a, err);
        rc = rc ? rc : proto_pack_shutdown(&a, &sb, err);
        rc = rc ? rc : proto_unpack_shutdown(sb.data, sb.size, &b, err);
        CHECK(rc == 0 && strcmp(a.reason, b.reason) == 0, "%s: %s", what, err);
    }
    msgpack_sbuffer_destroy(&sb);
}

/* Every single bit flip of every valid encoding: decoded or refused, never
 * a crash, and whatever is accepted is a valid message. */
static void test_bitflips(void)
{
    char err[ABC_ERRLEN], what[64];
    long tried = 0, accepted = 0;
    for (int i = 0; i < nsamples; i++) {
        size_t n = samples[i].len;
        char *b = malloc(n);
        if (!b) continue;
        for (size_t bit = 0; bit < 8 * n; bit++) {
            memcpy(b, samples[i].buf, n);
            b[bit / 8] ^= (char)(1 << bit % 8);
            for (enum which w = W_REQUEST; w <= W_PEEK; w++) {
                int rc = decode(w, b, n, err);
                tried++;
                CHECK(rc == 0 || err[0], "no error text");
                if (rc == 0 && w != W_PEEK) {
                    accepted++;
                    snprintf(what, sizeof what, "sample %d bit %zu", i, bit);
                    check_consistent(w, b, n, what);
                }
            }
        }
        free(b);
    }
    printf("ok   bit flips: %ld decodes, %ld accepted as valid messages\n",
           tried, accepted);
}

/* Seeded random bytes, and random mutations of valid encodings. */
static void test_random(void)
{
    char err[ABC_ERRLEN];
    struct rng r;
    rng_seed(&r, 20240607);
    long accepted = 0, tried = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t n;
        char *b;
        if (iter % 2 == 0 || nsamples == 0) { /* pure noise */
            n = (size_t)rng_below(&r, 300);
            b = malloc(n ? n : 1);
            if (!b) continue;
            for (size_t k = 0; k < n; k++)
                b[k] = (char)rng_u64(&r);
            if (n && iter % 4 == 0)
                b[0] = (char)(0x80 | (rng_u64(&r) & 0x0f)); /* a fixmap */
        } else { /* a valid message with a few random bytes overwritten */
            const struct sample *s =
                &samples[rng_below(&r, (uint64_t)nsamples)];
            n = s->len;
            b = malloc(n);
            if (!b) continue;
            memcpy(b, s->buf, n);
            int k = 1 + (int)rng_below(&r, 4);
            for (int j = 0; j < k; j++)
                b[rng_below(&r, n)] = (char)rng_u64(&r);
            if (rng_below(&r, 4) == 0)
                n = (size_t)rng_below(&r, n + 1); /* and maybe cut */
        }
        for (enum which w = W_REQUEST; w <= W_PEEK; w++) {
            int rc = decode(w, b, n, err);
            tried++;
            CHECK(rc == 0 || err[0], "no error text");
            if (rc == 0 && w != W_PEEK) {
                accepted++;
                check_consistent(w, b, n, "random input");
            }
        }
        free(b);
    }
    printf("ok   random inputs: %ld decodes, %ld accepted as valid messages\n",
           tried, accepted);
}

static void test_errors_read_well(void)
{
    /* A sample of the messages, for the log. */
    struct doc d;
    char err[ABC_ERRLEN];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    doc_request(&d);
    doc_set(&d, "budget.lr", VF(-1));
    doc_pack(&d, &sb);
    decode(W_REQUEST, sb.data, sb.size, err);
    printf("e.g. %s\n", err);
    doc_request(&d);
    doc_set(&d, "version", VU(2));
    doc_pack(&d, &sb);
    decode(W_REQUEST, sb.data, sb.size, err);
    printf("e.g. %s\n", err);
    CHECK(strcmp(err, "eval_request: message version 2, this build speaks 1") ==
              0,
          "%s", err);
    decode(W_RESULT, "\xdd\xff\xff\xff\xff", 5, err);
    printf("e.g. %s\n", err);
    msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
    test_roundtrips();
    test_pack_refuses();
    test_fields(W_REQUEST, request_cats,
                (int)(sizeof request_cats / sizeof request_cats[0]));
    test_fields(W_RESULT, result_cats,
                (int)(sizeof result_cats / sizeof result_cats[0]));
    test_fields(W_SHUTDOWN, shutdown_cats,
                (int)(sizeof shutdown_cats / sizeof shutdown_cats[0]));
    test_ranges();
    test_raw();
    test_truncations();
    test_bitflips();
    test_random();
    test_errors_read_well();
    for (int i = 0; i < nsamples; i++)
        free(samples[i].buf);
    return check_finish("test_proto");
}

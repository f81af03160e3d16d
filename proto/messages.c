/* messages.c - pack/unpack of the wire messages (see messages.h). Each
 * message is described by one table of fields (name, kind, offset, range)
 * that drives packing, validation and unpacking alike. Decoding first walks
 * the raw bytes (mpread_scan) so that no declared length or count exceeds
 * the bytes that follow and nesting stays shallow: only then is msgpack-c
 * asked to build objects, so it never pre-allocates from a hostile count. */
#include "messages.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "io/mpread.h"

/* ---- names -------------------------------------------------------------- */

const char *proto_type_name(enum proto_type t)
{
    switch (t) {
    case PROTO_EVAL_REQUEST:
        return "eval_request";
    case PROTO_EVAL_RESULT:
        return "eval_result";
    case PROTO_SHUTDOWN:
        return "shutdown";
    case PROTO_TRAIN_PHASE:
        return "train_phase";
    }
    return "?";
}

static const char *const phase_names[] = {"init", "employed", "onlooker",
                                          "scout"};
#define NPHASES ((int)(sizeof phase_names / sizeof phase_names[0]))

const char *proto_phase_name(enum proto_phase p)
{
    return (int)p >= 0 && (int)p < NPHASES ? phase_names[p] : "?";
}

int proto_phase_parse(const char *name, enum proto_phase *out)
{
    for (int i = 0; i < NPHASES; i++)
        if (strcmp(name, phase_names[i]) == 0) {
            *out = (enum proto_phase)i;
            return 0;
        }
    return -1;
}

/* ---- raw byte walk ------------------------------------------------------ */

/* Reports what mpread_scan found wrong with the bytes. */
static int scan_error(const struct mpread_scan *s, char *err)
{
    const char *kind = s->is_map ? "map" : "array";
    switch (s->status) {
    case MPREAD_OK:
        break;
    case MPREAD_END:
        return abc_errf(err, ABC_EFORMAT,
                        "truncated: an object expected at byte %zu", s->at);
    case MPREAD_SHORT_HEADER:
        return abc_errf(err, ABC_EFORMAT,
                        "truncated: header at byte %zu needs %d more bytes",
                        s->at, (int)s->need);
    case MPREAD_SHORT_BODY:
        return abc_errf(err, ABC_EFORMAT,
                        "truncated: object at byte %zu needs %" PRIu64
                        " bytes, %zu follow",
                        s->at, s->need, s->have);
    case MPREAD_COUNT:
        return abc_errf(
            err, ABC_EFORMAT,
            "%s at byte %zu declares %" PRIu64 " %s but only %zu bytes follow",
            kind, s->at, s->count, s->is_map ? "entries" : "elements", s->have);
    case MPREAD_DEPTH:
        return abc_errf(err, ABC_EFORMAT,
                        "%s at byte %zu nested deeper than %d levels", kind,
                        s->at, PROTO_MAX_DEPTH);
    case MPREAD_BAD_BYTE:
        return abc_errf(err, ABC_EFORMAT,
                        "invalid msgpack byte 0xc1 at byte %zu", s->at);
    }
    return abc_errf(err, ABC_EFORMAT, "msgpack scan status %d at byte %zu",
                    (int)s->status, s->at);
}

/* Checks buf[0..len) is exactly one sane msgpack object and unpacks it into
 * u (which the caller initialised and always destroys). what names the
 * message for the error. */
static int decode_top(const char *what, const char *buf, size_t len,
                      msgpack_unpacked *u, char *err)
{
    if (!buf || len == 0)
        return abc_errf(err, ABC_EFORMAT, "%s: empty message", what);
    if (len > PROTO_MAX_MESSAGE)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: message of %zu bytes exceeds the limit of %d",
                        what, len, PROTO_MAX_MESSAGE);
    struct mpread_scan s;
    mpread_scan(buf, len, PROTO_MAX_DEPTH, MPREAD_BOUND_EACH, &s);
    if (s.status != MPREAD_OK) {
        int rc = scan_error(&s, err);
        return abc_errprefix(err, rc, "%s: malformed msgpack", what);
    }
    if (s.end != len)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: %zu trailing bytes after the message (at byte "
                        "%zu)",
                        what, len - s.end, s.end);

    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack_next(u, buf, len, &off);
    switch (ur) {
    case MSGPACK_UNPACK_SUCCESS:
        if (off != len)
            return abc_errf(err, ABC_EFORMAT,
                            "%s: %zu trailing bytes after the message", what,
                            len - off);
        return 0;
    case MSGPACK_UNPACK_EXTRA_BYTES:
        return abc_errf(err, ABC_EFORMAT,
                        "%s: trailing bytes after the message", what);
    case MSGPACK_UNPACK_CONTINUE:
        return abc_errf(err, ABC_EFORMAT, "%s: truncated message (%zu bytes)",
                        what, len);
    case MSGPACK_UNPACK_PARSE_ERROR:
        return abc_errf(err, ABC_EFORMAT, "%s: msgpack parse error", what);
    case MSGPACK_UNPACK_NOMEM_ERROR:
        return abc_errf(err, ABC_ENOMEM,
                        "%s: out of memory unpacking %zu bytes", what, len);
    }
    return abc_errf(err, ABC_EFORMAT, "%s: msgpack_unpack_next returned %d",
                    what, (int)ur);
}

/* Reads "version" and "type" of a top-level object (the first occurrence
 * of each: duplicates are refused later by decode_map). The version is
 * checked first, since another version may have other types. */
static int read_header(const msgpack_object *o, const char *what,
                       enum proto_type *t, char *err)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: expected a map at the top level, got %s", what,
                        mpread_type_name(o->type));
    const msgpack_object *type = NULL, *version = NULL;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        if (!type && mpread_str_eq(&kv->key, "type")) type = &kv->val;
        if (!version && mpread_str_eq(&kv->key, "version")) version = &kv->val;
    }
    if (!version)
        return abc_errf(err, ABC_EFORMAT, "%s: missing field \"version\"",
                        what);
    if (version->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: message version %" PRId64 ", this build speaks %d",
                        what, version->via.i64, PROTO_VERSION);
    if (version->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: field \"version\": expected an integer, got %s",
                        what, mpread_type_name(version->type));
    if (version->via.u64 != PROTO_VERSION)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: message version %" PRIu64 ", this build speaks %d",
                        what, version->via.u64, PROTO_VERSION);
    if (!type)
        return abc_errf(err, ABC_EFORMAT, "%s: missing field \"type\"", what);
    if (type->type != MSGPACK_OBJECT_STR)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: field \"type\": expected a str, got %s", what,
                        mpread_type_name(type->type));
    static const enum proto_type all[] = {PROTO_EVAL_REQUEST, PROTO_EVAL_RESULT,
                                          PROTO_SHUTDOWN, PROTO_TRAIN_PHASE};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (mpread_str_eq(type, proto_type_name(all[i]))) {
            *t = all[i];
            return 0;
        }
    char s[44];
    return abc_errf(err, ABC_EFORMAT,
                    "%s: field \"type\": unknown message type \"%s\"", what,
                    mpread_str_show(type, s, sizeof s));
}

/* ---- field tables ------------------------------------------------------- */

enum field_kind {
    F_TYPE,      /* "type": the message name */
    F_VERSION,   /* "version": PROTO_VERSION */
    F_U64,       /* uint64_t, any value */
    F_INT,       /* int in [ilo, ihi] */
    F_I64,       /* int64_t in [ilo, ihi] */
    F_F64,       /* finite double in flo..fhi (open ends where flagged) */
    F_BOOL,      /* int 0/1 */
    F_STR,       /* char[cap + 1], at most cap bytes, no NUL inside */
    F_PHASE,     /* enum proto_phase as its name */
    F_STRUCTURE, /* int[PROTO_MAX_LAYERS] at off, count (int) at off2 */
    F_BUDGET,    /* struct proto_budget as a nested map */
    F_INTLIST,   /* int[cap] at off, count (int, 0..cap) at off2, each
                    entry in [ilo, ihi] */
};

struct field {
    const char *name;
    enum field_kind kind;
    size_t off, off2;
    int64_t ilo, ihi;
    double flo, fhi;
    int flo_open, fhi_open;
    size_t cap;
    int optional; /* may be absent (F_STR: absent = "") */
};

struct table {
    const char *what; /* message name, also the "type" value */
    const struct field *f;
    int n;
};

#define FHEAD(nm, k)                                                           \
    {                                                                          \
        .name = nm, .kind = k                                                  \
    }
#define FU64(nm, s, m)                                                         \
    {                                                                          \
        .name = nm, .kind = F_U64, .off = offsetof(s, m)                       \
    }
#define FINT(nm, s, m, lo, hi)                                                 \
    {                                                                          \
        .name = nm, .kind = F_INT, .off = offsetof(s, m), .ilo = lo, .ihi = hi \
    }
#define FI64(nm, s, m, lo, hi)                                                 \
    {                                                                          \
        .name = nm, .kind = F_I64, .off = offsetof(s, m), .ilo = lo, .ihi = hi \
    }
#define FF64(nm, s, m, lo, loopen, hi, hiopen)                                 \
    {                                                                          \
        .name = nm, .kind = F_F64, .off = offsetof(s, m), .flo = lo,           \
        .flo_open = loopen, .fhi = hi, .fhi_open = hiopen                      \
    }
#define FBOOL(nm, s, m)                                                        \
    {                                                                          \
        .name = nm, .kind = F_BOOL, .off = offsetof(s, m)                      \
    }
#define FSTR(nm, s, m, c, opt)                                                 \
    {                                                                          \
        .name = nm, .kind = F_STR, .off = offsetof(s, m), .cap = c,            \
        .optional = opt                                                        \
    }

static const struct field budget_fields[] = {
    FINT("train_images", struct proto_budget, train_images, 1, INT32_MAX),
    FINT("epochs", struct proto_budget, epochs, 0, PROTO_MAX_EPOCHS),
    FINT("steps", struct proto_budget, steps, 0, PROTO_MAX_STEPS),
    FINT("batch", struct proto_budget, batch, 1, PROTO_MAX_BATCH),
    FF64("lr", struct proto_budget, lr, 0, 1, DBL_MAX, 0),
    FF64("momentum", struct proto_budget, momentum, 0, 0, 1, 1),
    FF64("weight_decay", struct proto_budget, weight_decay, 0, 0, DBL_MAX, 0),
    FINT("val_images", struct proto_budget, val_images, 0, INT32_MAX),
    FINT("proxy", struct proto_budget, proxy, 0, 1),
    FINT("bn_batches", struct proto_budget, bn_batches, 1,
         PROTO_MAX_BN_BATCHES),
};
static const struct table budget_table = {
    "budget", budget_fields, sizeof budget_fields / sizeof budget_fields[0]};

static const struct field request_fields[] = {
    FHEAD("type", F_TYPE),
    FHEAD("version", F_VERSION),
    FU64("eval_id", struct proto_eval_request, eval_id),
    {.name = "structure",
     .kind = F_STRUCTURE,
     .off = offsetof(struct proto_eval_request, structure),
     .off2 = offsetof(struct proto_eval_request, nlayers)},
    FU64("seed", struct proto_eval_request, seed),
    {.name = "budget",
     .kind = F_BUDGET,
     .off = offsetof(struct proto_eval_request, budget)},
    FINT("cycle", struct proto_eval_request, cycle, 0, INT32_MAX),
    {.name = "phase",
     .kind = F_PHASE,
     .off = offsetof(struct proto_eval_request, phase)},
    FINT("candidate", struct proto_eval_request, candidate, 0, INT32_MAX),
};
static const struct table request_table = {"eval_request", request_fields,
                                           sizeof request_fields /
                                               sizeof request_fields[0]};

static const struct field result_fields[] = {
    FHEAD("type", F_TYPE),
    FHEAD("version", F_VERSION),
    FU64("eval_id", struct proto_eval_result, eval_id),
    FBOOL("ok", struct proto_eval_result, ok),
    FF64("val_acc", struct proto_eval_result, val_acc, 0, 0, 1, 0),
    FF64("val_loss", struct proto_eval_result, val_loss, 0, 0, DBL_MAX, 0),
    FF64("images_per_s", struct proto_eval_result, images_per_s, 0, 0, DBL_MAX,
         0),
    FF64("wall_s", struct proto_eval_result, wall_s, 0, 0, DBL_MAX, 0),
    FI64("flops", struct proto_eval_result, flops, 0, INT64_MAX),
    FI64("params", struct proto_eval_result, params, 0, INT64_MAX),
    FINT("worker", struct proto_eval_result, worker, 0, INT32_MAX),
    FBOOL("stopped", struct proto_eval_result, stopped),
    FSTR("error", struct proto_eval_result, error, PROTO_MAX_ERROR, 1),
};
static const struct table result_table = {"eval_result", result_fields,
                                          sizeof result_fields /
                                              sizeof result_fields[0]};

static const struct field shutdown_fields[] = {
    FHEAD("type", F_TYPE),
    FHEAD("version", F_VERSION),
    FSTR("reason", struct proto_shutdown, reason, PROTO_MAX_REASON, 1),
};
static const struct table shutdown_table = {"shutdown", shutdown_fields,
                                            sizeof shutdown_fields /
                                                sizeof shutdown_fields[0]};

#define TP struct proto_train_phase
static const struct field train_phase_fields[] = {
    FHEAD("type", F_TYPE),
    FHEAD("version", F_VERSION),
    FU64("seed", TP, seed),
    FINT("epochs", TP, epochs, 1, INT32_MAX),
    FINT("batch", TP, batch, 1, PROTO_MAX_BATCH),
    FF64("lr", TP, lr, 0, 1, DBL_MAX, 0),
    FF64("momentum", TP, momentum, 0, 0, 1, 1),
    FBOOL("nesterov", TP, nesterov),
    FF64("weight_decay", TP, weight_decay, 0, 0, DBL_MAX, 0),
    FINT("schedule", TP, schedule, 0, 2),
    {.name = "milestones",
     .kind = F_INTLIST,
     .off = offsetof(TP, milestones),
     .off2 = offsetof(TP, nmilestones),
     .ilo = 0,
     .ihi = INT32_MAX,
     .cap = PROTO_MAX_MILESTONES},
    FF64("gamma", TP, gamma, 0, 0, DBL_MAX, 0),
    FINT("warmup_epochs", TP, warmup_epochs, 0, INT32_MAX),
    FBOOL("sync_bn", TP, sync_bn),
    FINT("stop_at_epoch", TP, stop_at_epoch, 0, INT32_MAX),
    FI64("stop_at_step", TP, stop_at_step, 0, INT64_MAX),
    FBOOL("skip_val", TP, skip_val),
    FF64("sparsity", TP, sparsity, 0, 0, DBL_MAX, 0),
    FBOOL("sparsity_all_bn", TP, sparsity_all_bn),
    FINT("train_images", TP, train_images, 1, INT32_MAX),
    FINT("val_images", TP, val_images, 0, INT32_MAX),
    FU64("data_crc", TP, data_crc),
};
#undef TP
static const struct table train_phase_table = {
    "train_phase", train_phase_fields,
    sizeof train_phase_fields / sizeof train_phase_fields[0]};

/* ---- validation of values (shared by pack and unpack) ------------------- */

static int check_int(const char *what, const char *prefix,
                     const struct field *f, int64_t v, char *err)
{
    if (v < f->ilo || v > f->ihi)
        return abc_errf(err, ABC_EVALUE,
                        "%s: field \"%s%s\": %" PRId64 " out of range [%" PRId64
                        ", %" PRId64 "]",
                        what, prefix, f->name, v, f->ilo, f->ihi);
    return 0;
}

static int check_f64(const char *what, const char *prefix,
                     const struct field *f, double v, char *err)
{
    int ok = isfinite(v) && (f->flo_open ? v > f->flo : v >= f->flo) &&
             (f->fhi_open ? v < f->fhi : v <= f->fhi);
    if (ok) return 0;
    char hi[32];
    if (f->fhi == DBL_MAX)
        snprintf(hi, sizeof hi, "inf)");
    else
        snprintf(hi, sizeof hi, "%g%c", f->fhi, f->fhi_open ? ')' : ']');
    return abc_errf(err, ABC_EVALUE,
                    "%s: field \"%s%s\": %g out of range %c%g, %s", what,
                    prefix, f->name, v, f->flo_open ? '(' : '[', f->flo, hi);
}

static int check_structure(const char *what, const char *prefix,
                           const struct field *f, int n, const int *c,
                           char *err)
{
    if (n < 1 || n > PROTO_MAX_LAYERS)
        return abc_errf(err, ABC_EVALUE,
                        "%s: field \"%s%s\": %d entries, expected 1..%d", what,
                        prefix, f->name, n, PROTO_MAX_LAYERS);
    for (int i = 0; i < n; i++)
        if (c[i] < 1 || c[i] > PROTO_MAX_CHANNELS)
            return abc_errf(err, ABC_EVALUE,
                            "%s: field \"%s%s[%d]\": %d channels, expected "
                            "1..%d",
                            what, prefix, f->name, i, c[i], PROTO_MAX_CHANNELS);
    return 0;
}

/* Checks every field of the struct at s against table t. */
static int check_struct(const char *what, const char *prefix,
                        const struct table *t, const void *s, char *err)
{
    const char *base = s;
    for (int i = 0; i < t->n; i++) {
        const struct field *f = &t->f[i];
        const void *p = base + f->off;
        int rc = 0;
        switch (f->kind) {
        case F_TYPE:
        case F_VERSION:
        case F_U64:
            break;
        case F_INT:
            rc = check_int(what, prefix, f, *(const int *)p, err);
            break;
        case F_I64:
            rc = check_int(what, prefix, f, *(const int64_t *)p, err);
            break;
        case F_F64:
            rc = check_f64(what, prefix, f, *(const double *)p, err);
            break;
        case F_BOOL:
            if (*(const int *)p != 0 && *(const int *)p != 1)
                rc = abc_errf(err, ABC_EVALUE,
                              "%s: field \"%s%s\": %d is not 0 or 1", what,
                              prefix, f->name, *(const int *)p);
            break;
        case F_STR:
            if (strnlen(p, f->cap + 1) > f->cap)
                rc = abc_errf(err, ABC_EVALUE,
                              "%s: field \"%s%s\": longer than %zu bytes", what,
                              prefix, f->name, f->cap);
            break;
        case F_PHASE: {
            int ph = (int)*(const enum proto_phase *)p;
            if (ph < 0 || ph >= NPHASES)
                rc = abc_errf(err, ABC_EVALUE,
                              "%s: field \"%s%s\": unknown phase %d", what,
                              prefix, f->name, ph);
            break;
        }
        case F_STRUCTURE:
            rc = check_structure(what, prefix, f,
                                 *(const int *)(base + f->off2), p, err);
            break;
        case F_BUDGET:
            rc = check_struct(what, "budget.", &budget_table, p, err);
            break;
        case F_INTLIST: {
            int cnt = *(const int *)(base + f->off2);
            if (cnt < 0 || (size_t)cnt > f->cap) {
                rc = abc_errf(err, ABC_EVALUE,
                              "%s: field \"%s%s\": %d entries, expected "
                              "0..%zu",
                              what, prefix, f->name, cnt, f->cap);
                break;
            }
            for (int j = 0; j < cnt && !rc; j++)
                rc = check_int(what, prefix, f, ((const int *)p)[j], err);
            break;
        }
        }
        if (rc) return rc;
    }
    return 0;
}

/* ---- packing ------------------------------------------------------------ */

static int pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

static int field_is_sent(const struct field *f, const char *base)
{
    return !(f->kind == F_STR && f->optional && base[f->off] == 0);
}

/* Packs the struct at s as a map by table t. Returns nonzero when a
 * msgpack_pack_* call failed (out of memory). */
static int pack_table(msgpack_packer *pk, const struct table *t, const void *s)
{
    const char *base = s;
    size_t n = 0;
    for (int i = 0; i < t->n; i++)
        n += (size_t)field_is_sent(&t->f[i], base);
    if (msgpack_pack_map(pk, n)) return -1;
    for (int i = 0; i < t->n; i++) {
        const struct field *f = &t->f[i];
        const void *p = base + f->off;
        if (!field_is_sent(f, base)) continue;
        if (pack_str(pk, f->name, strlen(f->name))) return -1;
        int rc = 0;
        switch (f->kind) {
        case F_TYPE:
            rc = pack_str(pk, t->what, strlen(t->what));
            break;
        case F_VERSION:
            rc = msgpack_pack_int(pk, PROTO_VERSION);
            break;
        case F_U64:
            rc = msgpack_pack_uint64(pk, *(const uint64_t *)p);
            break;
        case F_INT:
            rc = msgpack_pack_int(pk, *(const int *)p);
            break;
        case F_I64:
            rc = msgpack_pack_int64(pk, *(const int64_t *)p);
            break;
        case F_F64:
            rc = msgpack_pack_double(pk, *(const double *)p);
            break;
        case F_BOOL:
            rc = *(const int *)p ? msgpack_pack_true(pk)
                                 : msgpack_pack_false(pk);
            break;
        case F_STR:
            rc = pack_str(pk, p, strlen(p));
            break;
        case F_PHASE: {
            const char *ph = proto_phase_name(*(const enum proto_phase *)p);
            rc = pack_str(pk, ph, strlen(ph));
            break;
        }
        case F_STRUCTURE: {
            int cnt = *(const int *)(base + f->off2);
            const int *c = p;
            rc = msgpack_pack_array(pk, (size_t)cnt);
            for (int j = 0; j < cnt && !rc; j++)
                rc = msgpack_pack_int(pk, c[j]);
            break;
        }
        case F_BUDGET:
            rc = pack_table(pk, &budget_table, p);
            break;
        case F_INTLIST: {
            int cnt = *(const int *)(base + f->off2);
            rc = msgpack_pack_array(pk, (size_t)cnt);
            for (int j = 0; j < cnt && !rc; j++)
                rc = msgpack_pack_int(pk, ((const int *)p)[j]);
            break;
        }
        }
        if (rc) return -1;
    }
    return 0;
}

static int pack_message(const struct table *t, const void *s,
                        msgpack_sbuffer *out, char *err)
{
    int rc = check_struct(t->what, "", t, s, err);
    if (rc) return rc;
    size_t size0 = out->size;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    if (pack_table(&pk, t, s)) {
        out->size = size0;
        return abc_errf(err, ABC_ENOMEM, "%s: out of memory while packing",
                        t->what);
    }
    return 0;
}

int proto_pack_eval_request(const struct proto_eval_request *m,
                            msgpack_sbuffer *out, char *err)
{
    return pack_message(&request_table, m, out, err);
}

static int check_result_error(const struct proto_eval_result *m, char *err)
{
    if (m->ok && m->error[0])
        return abc_errf(err, ABC_EVALUE,
                        "eval_result: field \"error\" must be empty when ok "
                        "is true");
    if (!m->ok && !m->error[0])
        return abc_errf(err, ABC_EVALUE,
                        "eval_result: field \"error\" must be a non-empty "
                        "text when ok is false");
    return 0;
}

int proto_pack_eval_result(const struct proto_eval_result *m,
                           msgpack_sbuffer *out, char *err)
{
    int rc = check_struct(result_table.what, "", &result_table, m, err);
    if (!rc) rc = check_result_error(m, err);
    return rc ? rc : pack_message(&result_table, m, out, err);
}

int proto_pack_shutdown(const struct proto_shutdown *m, msgpack_sbuffer *out,
                        char *err)
{
    return pack_message(&shutdown_table, m, out, err);
}

int proto_pack_train_phase(const struct proto_train_phase *m,
                           msgpack_sbuffer *out, char *err)
{
    return pack_message(&train_phase_table, m, out, err);
}

/* ---- unpacking ---------------------------------------------------------- */

static int wrong_type(const char *what, const char *prefix, const char *name,
                      const char *expected, const msgpack_object *o, char *err)
{
    return abc_errf(err, ABC_EFORMAT, "%s: field \"%s%s\": expected %s, got %s",
                    what, prefix, name, expected, mpread_type_name(o->type));
}

/* Reads an integer object into v, range-checked by f (name given
 * separately so that array entries can be named "structure[3]"). */
static int get_int(const char *what, const char *prefix, const char *name,
                   const struct field *f, const msgpack_object *o, int64_t *v,
                   char *err)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)f->ihi)
            return abc_errf(err, ABC_EVALUE,
                            "%s: field \"%s%s\": %" PRIu64
                            " out of range [%" PRId64 ", %" PRId64 "]",
                            what, prefix, name, o->via.u64, f->ilo, f->ihi);
        *v = (int64_t)o->via.u64;
    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
    } else {
        return wrong_type(what, prefix, name, "an integer", o, err);
    }
    if (*v < f->ilo || *v > f->ihi)
        return abc_errf(err, ABC_EVALUE,
                        "%s: field \"%s%s\": %" PRId64 " out of range [%" PRId64
                        ", %" PRId64 "]",
                        what, prefix, name, *v, f->ilo, f->ihi);
    return 0;
}

static int decode_map(const char *what, const char *prefix,
                      const struct table *t, const msgpack_object_map *map,
                      void *s, uint64_t *seen_out, char *err);

static int decode_field(const char *what, const char *prefix,
                        const struct field *f, const msgpack_object *o,
                        char *base, char *err)
{
    void *p = base + f->off;
    char shown[44];
    switch (f->kind) {
    case F_TYPE:
    case F_VERSION:
        return 0; /* read_header checked the first one */
    case F_U64:
        if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            return abc_errf(err, ABC_EVALUE,
                            "%s: field \"%s%s\": %" PRId64 " is negative", what,
                            prefix, f->name, o->via.i64);
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return wrong_type(what, prefix, f->name, "an unsigned integer", o,
                              err);
        *(uint64_t *)p = o->via.u64;
        return 0;
    case F_INT:
    case F_I64: {
        int64_t v = 0;
        int rc = get_int(what, prefix, f->name, f, o, &v, err);
        if (rc) return rc;
        if (f->kind == F_INT)
            *(int *)p = (int)v;
        else
            *(int64_t *)p = v;
        return 0;
    }
    case F_F64:
        if (o->type != MSGPACK_OBJECT_FLOAT64 &&
            o->type != MSGPACK_OBJECT_FLOAT32)
            return wrong_type(what, prefix, f->name, "a float", o, err);
        *(double *)p = o->via.f64;
        return check_f64(what, prefix, f, o->via.f64, err);
    case F_BOOL:
        if (o->type != MSGPACK_OBJECT_BOOLEAN)
            return wrong_type(what, prefix, f->name, "a bool", o, err);
        *(int *)p = o->via.boolean ? 1 : 0;
        return 0;
    case F_STR:
        if (o->type != MSGPACK_OBJECT_STR)
            return wrong_type(what, prefix, f->name, "a str", o, err);
        if (o->via.str.size > f->cap)
            return abc_errf(err, ABC_EVALUE,
                            "%s: field \"%s%s\": %u bytes, at most %zu allowed",
                            what, prefix, f->name, o->via.str.size, f->cap);
        if (o->via.str.size && memchr(o->via.str.ptr, 0, o->via.str.size))
            return abc_errf(err, ABC_EVALUE,
                            "%s: field \"%s%s\": contains a NUL byte", what,
                            prefix, f->name);
        if (o->via.str.size) memcpy(p, o->via.str.ptr, o->via.str.size);
        ((char *)p)[o->via.str.size] = 0;
        return 0;
    case F_PHASE: {
        if (o->type != MSGPACK_OBJECT_STR)
            return wrong_type(what, prefix, f->name, "a str", o, err);
        for (int i = 0; i < NPHASES; i++)
            if (mpread_str_eq(o, phase_names[i])) {
                *(enum proto_phase *)p = (enum proto_phase)i;
                return 0;
            }
        return abc_errf(err, ABC_EVALUE,
                        "%s: field \"%s%s\": unknown phase \"%s\" (expected "
                        "init, employed, onlooker or scout)",
                        what, prefix, f->name,
                        mpread_str_show(o, shown, sizeof shown));
    }
    case F_STRUCTURE: {
        if (o->type != MSGPACK_OBJECT_ARRAY)
            return wrong_type(what, prefix, f->name, "an array", o, err);
        uint32_t n = o->via.array.size;
        if (n < 1 || n > PROTO_MAX_LAYERS)
            return abc_errf(err, ABC_EVALUE,
                            "%s: field \"%s%s\": %u entries, expected 1..%d",
                            what, prefix, f->name, n, PROTO_MAX_LAYERS);
        const struct field entry = {.ilo = 1, .ihi = PROTO_MAX_CHANNELS};
        int *c = p;
        for (uint32_t i = 0; i < n; i++) {
            char name[32];
            snprintf(name, sizeof name, "%s[%u]", f->name, i);
            int64_t v = 0;
            int rc = get_int(what, prefix, name, &entry, &o->via.array.ptr[i],
                             &v, err);
            if (rc) return rc;
            c[i] = (int)v;
        }
        *(int *)(base + f->off2) = (int)n;
        return 0;
    }
    case F_BUDGET:
        if (o->type != MSGPACK_OBJECT_MAP)
            return wrong_type(what, prefix, f->name, "a map", o, err);
        return decode_map(what, "budget.", &budget_table, &o->via.map, p, NULL,
                          err);
    case F_INTLIST: {
        if (o->type != MSGPACK_OBJECT_ARRAY)
            return wrong_type(what, prefix, f->name, "an array", o, err);
        uint32_t n = o->via.array.size;
        if (n > f->cap)
            return abc_errf(err, ABC_EVALUE,
                            "%s: field \"%s%s\": %u entries, expected 0..%zu",
                            what, prefix, f->name, n, f->cap);
        int *c = p;
        for (uint32_t i = 0; i < n; i++) {
            char name[32];
            snprintf(name, sizeof name, "%s[%u]", f->name, i);
            int64_t v = 0;
            int rc =
                get_int(what, prefix, name, f, &o->via.array.ptr[i], &v, err);
            if (rc) return rc;
            c[i] = (int)v;
        }
        *(int *)(base + f->off2) = (int)n;
        return 0;
    }
    }
    return abc_errf(err, ABC_EFORMAT, "%s: field \"%s%s\": bad table", what,
                    prefix, f->name);
}

/* Decodes a map by table t into s: every key a known field name, each
 * once, every field not marked optional present. seen_out (may be NULL)
 * gets one bit per table entry that was present. */
static int decode_map(const char *what, const char *prefix,
                      const struct table *t, const msgpack_object_map *map,
                      void *s, uint64_t *seen_out, char *err)
{
    uint64_t seen = 0;
    char shown[44];
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *k = &map->ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR)
            return abc_errf(err, ABC_EFORMAT,
                            "%s: key #%u of %s is not a str (got %s)", what, i,
                            *prefix ? "budget" : "the message",
                            mpread_type_name(k->type));
        int j = 0;
        while (j < t->n && !mpread_str_eq(k, t->f[j].name))
            j++;
        if (j == t->n)
            return abc_errf(err, ABC_EFORMAT, "%s: unknown field \"%s%s\"",
                            what, prefix,
                            mpread_str_show(k, shown, sizeof shown));
        if (seen >> j & 1)
            return abc_errf(err, ABC_EFORMAT, "%s: duplicate field \"%s%s\"",
                            what, prefix, t->f[j].name);
        seen |= (uint64_t)1 << j;
        int rc = decode_field(what, prefix, &t->f[j], &map->ptr[i].val, s, err);
        if (rc) return rc;
    }
    for (int j = 0; j < t->n; j++)
        if (!(seen >> j & 1) && !t->f[j].optional)
            return abc_errf(err, ABC_EFORMAT, "%s: missing field \"%s%s\"",
                            what, prefix, t->f[j].name);
    if (seen_out) *seen_out = seen;
    return 0;
}

static int field_index(const struct table *t, const char *name)
{
    for (int j = 0; j < t->n; j++)
        if (strcmp(t->f[j].name, name) == 0) return j;
    return -1;
}

/* Unpacks one message of table t's type into s (zeroed by the caller). */
static int unpack_message(const struct table *t, enum proto_type want,
                          const char *buf, size_t len, void *s, uint64_t *seen,
                          char *err)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    enum proto_type got = want;
    int rc = decode_top(t->what, buf, len, &u, err);
    if (!rc) rc = read_header(&u.data, t->what, &got, err);
    if (!rc && got != want)
        rc = abc_errf(err, ABC_EFORMAT,
                      "%s: field \"type\": expected \"%s\", got \"%s\"",
                      t->what, t->what, proto_type_name(got));
    if (!rc) rc = decode_map(t->what, "", t, &u.data.via.map, s, seen, err);
    msgpack_unpacked_destroy(&u);
    return rc;
}

int proto_unpack_eval_request(const char *buf, size_t len,
                              struct proto_eval_request *m, char *err)
{
    memset(m, 0, sizeof *m);
    return unpack_message(&request_table, PROTO_EVAL_REQUEST, buf, len, m, NULL,
                          err);
}

int proto_unpack_eval_result(const char *buf, size_t len,
                             struct proto_eval_result *m, char *err)
{
    memset(m, 0, sizeof *m);
    uint64_t seen = 0;
    int rc = unpack_message(&result_table, PROTO_EVAL_RESULT, buf, len, m,
                            &seen, err);
    if (rc) return rc;
    int has_error = (int)(seen >> field_index(&result_table, "error") & 1);
    if (m->ok && has_error)
        return abc_errf(err, ABC_EFORMAT,
                        "eval_result: field \"error\" present although ok is "
                        "true");
    if (!m->ok && !has_error)
        return abc_errf(err, ABC_EFORMAT,
                        "eval_result: missing field \"error\" (required when "
                        "ok is false)");
    return check_result_error(m, err);
}

int proto_unpack_shutdown(const char *buf, size_t len, struct proto_shutdown *m,
                          char *err)
{
    memset(m, 0, sizeof *m);
    return unpack_message(&shutdown_table, PROTO_SHUTDOWN, buf, len, m, NULL,
                          err);
}

int proto_unpack_train_phase(const char *buf, size_t len,
                             struct proto_train_phase *m, char *err)
{
    memset(m, 0, sizeof *m);
    return unpack_message(&train_phase_table, PROTO_TRAIN_PHASE, buf, len, m,
                          NULL, err);
}

int proto_peek_type(const char *buf, size_t len, enum proto_type *t, char *err)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = decode_top("message", buf, len, &u, err);
    if (!rc) rc = read_header(&u.data, "message", t, err);
    msgpack_unpacked_destroy(&u);
    return rc;
}

/* messages.h - the msgpack wire format between ranks: eval_request (rank 0 ->
 * worker), eval_result (worker -> rank 0) and shutdown. Every message is a
 * msgpack map with "type" (string) and "version" (PROTO_VERSION) plus its
 * fields; one pack/unpack pair per message. Packing validates the struct
 * first, unpacking validates everything: the msgpack itself (before
 * msgpack-c allocates anything), the type, the version, and every field's
 * presence, msgpack type and range, naming the field on error. */
#ifndef ABC_PROTO_MESSAGES_H
#define ABC_PROTO_MESSAGES_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#define PROTO_VERSION 1

#define PROTO_MAX_LAYERS 256     /* entries of a structure vector */
#define PROTO_MAX_CHANNELS 65536 /* kept channels of one layer */
#define PROTO_MAX_BATCH 65536
/* Training a budget may ask for (the config's own limits): larger values
 * are refused on pack and unpack, naming the field and the limit. */
#define PROTO_MAX_EPOCHS 100000
#define PROTO_MAX_STEPS 100000000
#define PROTO_MAX_BN_BATCHES 100000
#define PROTO_MAX_ERROR 1024    /* bytes of an eval_result error text */
#define PROTO_MAX_REASON 256    /* bytes of a shutdown reason */
#define PROTO_MAX_MESSAGE 65536 /* bytes of any encoded message */
#define PROTO_MAX_DEPTH 8       /* nesting of arrays/maps accepted */

enum proto_type {
    PROTO_EVAL_REQUEST = 1,
    PROTO_EVAL_RESULT = 2,
    PROTO_SHUTDOWN = 3,
    PROTO_TRAIN_PHASE = 4,
};

/* The ABC phase that produced a candidate (logging only). */
enum proto_phase {
    PROTO_PHASE_INIT = 0,
    PROTO_PHASE_EMPLOYED = 1,
    PROTO_PHASE_ONLOOKER = 2,
    PROTO_PHASE_SCOUT = 3,
};

/* "eval_request", "eval_result", "shutdown", "train_phase"; "?" for
 * anything else. */
const char *proto_type_name(enum proto_type t);
/* "init", "employed", "onlooker", "scout"; "?" for anything else. */
const char *proto_phase_name(enum proto_phase p);
/* Parses a phase name. Returns 0, or -1 if unknown. */
int proto_phase_parse(const char *name, enum proto_phase *out);

/* How much training one fitness evaluation gets. Ranges (checked on pack
 * and on unpack) in the comments. */
struct proto_budget {
    int train_images;    /* >= 1: training images used (INT32_MAX: all) */
    int epochs;          /* 0..PROTO_MAX_EPOCHS */
    int steps;           /* 0..PROTO_MAX_STEPS; > 0 overrides epochs */
    int batch;           /* 1..PROTO_MAX_BATCH */
    double lr;           /* finite, > 0 */
    double momentum;     /* [0, 1) */
    double weight_decay; /* finite, >= 0 */
    int val_images;      /* >= 0; 0 = the whole validation split */
    int proxy;           /* enum fitness_proxy: 0 train, 1 adaptive_bn */
    int bn_batches;      /* 1..PROTO_MAX_BN_BATCHES: adaptive_bn's
                            recalibration batches */
};

/* Rank 0 -> worker: evaluate one structure. */
struct proto_eval_request {
    uint64_t eval_id;
    int nlayers;                     /* 1..PROTO_MAX_LAYERS */
    int structure[PROTO_MAX_LAYERS]; /* each 1..PROTO_MAX_CHANNELS */
    uint64_t seed;
    struct proto_budget budget;
    int cycle;              /* >= 0 (logging) */
    enum proto_phase phase; /* (logging) */
    int candidate;          /* >= 0 (logging) */
};

/* Worker -> rank 0: the outcome of one evaluation. All numeric fields are
 * always sent (zero when !ok); error is sent iff !ok. */
struct proto_eval_result {
    uint64_t eval_id;
    int ok;                          /* 0 or 1 */
    double val_acc;                  /* [0, 1] */
    double val_loss;                 /* finite, >= 0 */
    double images_per_s;             /* finite, >= 0 (training throughput) */
    double wall_s;                   /* finite, >= 0 */
    int64_t flops;                   /* >= 0, multiply-accumulates per image */
    int64_t params;                  /* >= 0 */
    int worker;                      /* >= 0, the rank that evaluated */
    int stopped;                     /* 1: not evaluated, the worker was
                                        stopped by a signal (ok is 0): rank
                                        0 saves and stops, the candidate is
                                        made again on resume */
    char error[PROTO_MAX_ERROR + 1]; /* "" iff ok, else 1..PROTO_MAX_ERROR
                                        bytes, no NUL inside */
};

/* Rank 0 -> every other rank (broadcast, proto/dp.h): join one data-
 * parallel training. The model and its training state follow as a
 * checkpoint; the schedule is the train_config's (train/train.h), the
 * data is the receiver's own split of the same config, checked by size
 * and CRC-32. Ranges (checked on pack and unpack) in the comments. */
#define PROTO_MAX_MILESTONES 64
struct proto_train_phase {
    uint64_t seed;       /* the training's seed (shuffling, augmentation) */
    int epochs;          /* 1..INT32_MAX */
    int batch;           /* 1..PROTO_MAX_BATCH: the global batch */
    double lr;           /* finite, > 0 */
    double momentum;     /* [0, 1) */
    int nesterov;        /* 0 or 1 */
    double weight_decay; /* finite, >= 0 */
    int schedule;        /* enum lr_schedule: 0..2 */
    int nmilestones;     /* 0..PROTO_MAX_MILESTONES */
    int milestones[PROTO_MAX_MILESTONES]; /* each >= 0 */
    double gamma;                         /* finite, >= 0 */
    int warmup_epochs;                    /* >= 0 */
    int sync_bn;                          /* 0 or 1: synchronized BN */
    int stop_at_epoch;                    /* >= 0 (train_io) */
    int64_t stop_at_step;                 /* >= 0 (train_io) */
    int skip_val;                         /* 0 or 1 (train_io) */
    double sparsity;     /* finite, >= 0: slimming's s (0: none) */
    int sparsity_all_bn; /* 0 or 1 */
    int train_images;    /* >= 1: size of the training split */
    int val_images;      /* >= 0: size of the validation split */
    uint64_t data_crc;   /* CRC-32 of both splits' images and labels */
};

/* Rank 0 -> worker: leave the message loop. */
struct proto_shutdown {
    char reason[PROTO_MAX_REASON + 1]; /* optional; "" = not sent */
};

/* Packing. Each appends one message to out (a msgpack_sbuffer the caller
 * initialised with msgpack_sbuffer_init and later destroys). Returns 0,
 * ABC_EVALUE (a field is out of range; err names it, nothing is appended)
 * or ABC_ENOMEM (out is restored to its previous size). */
int proto_pack_eval_request(const struct proto_eval_request *m,
                            msgpack_sbuffer *out, char *err);
int proto_pack_eval_result(const struct proto_eval_result *m,
                           msgpack_sbuffer *out, char *err);
int proto_pack_shutdown(const struct proto_shutdown *m, msgpack_sbuffer *out,
                        char *err);
int proto_pack_train_phase(const struct proto_train_phase *m,
                           msgpack_sbuffer *out, char *err);

/* Unpacking. Each decodes exactly one message of its type from buf[0..len)
 * into *m (zeroed first; it copies everything out, buf is not kept).
 * Returns 0, ABC_EFORMAT (not valid msgpack, trailing bytes, not a map,
 * wrong type or version, missing / duplicate / unknown / mistyped field),
 * ABC_EVALUE (a field out of range) or ABC_ENOMEM. err names the message,
 * the field (nested ones as "budget.lr") or the byte offset. Any input,
 * however hostile, gives an error: never a crash, never an allocation
 * larger than a small multiple of len. */
int proto_unpack_eval_request(const char *buf, size_t len,
                              struct proto_eval_request *m, char *err);
int proto_unpack_eval_result(const char *buf, size_t len,
                             struct proto_eval_result *m, char *err);
int proto_unpack_shutdown(const char *buf, size_t len, struct proto_shutdown *m,
                          char *err);
int proto_unpack_train_phase(const char *buf, size_t len,
                             struct proto_train_phase *m, char *err);

/* Reads the type of a message (checking that it is well-formed msgpack, a
 * map, of a known type and of this version; the other fields are checked
 * by the matching unpack). Returns 0 or an error as above. */
int proto_peek_type(const char *buf, size_t len, enum proto_type *t, char *err);

#endif

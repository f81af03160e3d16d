/* checkpoint.h - model checkpoints in msgpack: format name and version,
 * architecture, structure vector, input shape, classes, every tensor (params
 * and BN buffers) by name with shape and raw little-endian float32 data, and
 * optionally optimizer state and training progress. Written atomically
 * (temp file in the same directory, fsync, rename) so a crash never leaves a
 * half-written file where a good one was. Loading validates everything. */
#ifndef ABC_CHECKPOINT_H
#define ABC_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "io/config.h"
#include "nn/model.h"

#define CHECKPOINT_FORMAT "abcprune-checkpoint"
#define CHECKPOINT_VERSION                                                     \
    2 /* 2: CRC-32 of every tensor and of the                                  \
         velocity; version 1 files (no checksums)                              \
         are still read */

/* Largest file checkpoint_load reads: well above vgg16 with velocity
 * (about 120 MB), well below what a 32-bit msgpack length can address. */
#define CHECKPOINT_MAX_BYTES ((size_t)1 << 30)

/* Training progress and optimizer state stored alongside the weights. */
struct train_state {
    int epoch;           /* epochs completed */
    int64_t step;        /* optimizer steps taken */
    double best_val_acc; /* best validation accuracy so far (0..1) */
    float *velocity;     /* SGD momentum, m->nparams floats, or NULL */
    int has_split;       /* 1: the next two say which training/
                            validation split the model was trained on */
    uint64_t split_seed; /* data.split_seed */
    int val_size;        /* data.val_size */
};

/* Writes m (and st, if not NULL) to path atomically. */
int checkpoint_save(const char *path, const struct model *m,
                    const struct train_state *st, char *err);

/* Serialises m (and st, if not NULL) into *buf, malloc'ed (caller frees),
 * *len bytes: exactly what checkpoint_save would write. Refuses what
 * checkpoint_save refuses (non-finite values). */
int checkpoint_pack(const struct model *m, const struct train_state *st,
                    char **buf, size_t *len, char *err);

/* Reads path, builds the model it describes (model_create) and fills its
 * tensors. If st is not NULL it receives the training state; st->velocity is
 * malloc'ed (caller frees) when the file has optimizer state, else NULL.
 * Errors name the path and what is wrong: not msgpack, truncated, wrong
 * format/version, unknown architecture, bad structure, missing/extra/
 * mis-shaped tensor, wrong data length, non-finite values. */
int checkpoint_load(const char *path, struct model **out,
                    struct train_state *st, char *err);

/* checkpoint_load of the bytes buf[0..len) (a file read whole, a message):
 * the same validation, with name (a path, or what the bytes are) in the
 * messages. buf is only read and may be freed as soon as this returns. */
int checkpoint_load_mem(const char *name, const char *buf, size_t len,
                        struct model **out, struct train_state *st, char *err);

/* Sets st's split to c's (data.split_seed, data.val_size): what a
 * training under c records in its checkpoints. */
void checkpoint_set_split(struct train_state *st, const struct config *c);

/* Returns 0 when the model st was loaded with (from name) was trained on
 * c's training/validation split, else ABC_EVALUE naming both splits (a
 * step that scores on c's validation images must not use a model that
 * trained on them), or naming a file that records no split. */
int checkpoint_check_split(const char *name, const struct train_state *st,
                           const struct config *c, char *err);

/* Returns 0 when a and b have the same architecture, input shape, classes
 * and structure (so tensors can be copied between them), else an error
 * naming the first mismatch. */
int checkpoint_check_compatible(const struct model *a, const struct model *b,
                                char *err);

#endif

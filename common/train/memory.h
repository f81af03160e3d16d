/* memory.h - how much memory one worker (or the single rank) needs for a
 * config, estimated before anything big is allocated: the model's
 * parameters, gradients and SGD velocity, the pretrained copy a search
 * worker slices from, the activations at the largest batch size of any
 * step, one input batch, and the dataset in memory at its peak (the file's
 * images and their training/validation copies, plus the test set). `info`
 * prints it; the command line refuses a config whose estimate exceeds the
 * memory of the host. */
#ifndef ABC_TRAIN_MEMORY_H
#define ABC_TRAIN_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "io/config.h"

struct memory_estimate {
    int64_t params;          /* trainable parameters of the model */
    size_t param_bytes;      /* parameters and BN buffers, float32 */
    size_t grad_bytes;       /* gradients of the parameters */
    size_t velocity_bytes;   /* SGD momentum, one per parameter */
    size_t baseline_bytes;   /* the pretrained model a worker slices from */
    int batch;               /* the largest batch size of any step */
    const char *batch_key;   /* the key that sets it, "train.batch_size" */
    size_t activation_bytes; /* model_activation_bytes at batch */
    size_t input_bytes;      /* one batch as floats, and its labels */
    int64_t train_images;    /* images of the dataset's training file */
    int64_t test_images;     /* images of its test file */
    size_t data_bytes;       /* images + labels at the peak of loading */
    size_t total;            /* the sum of all the above */
};

/* Estimates the memory per worker of config c for input images of
 * in_c x in_h x in_w (the dataset's: pipeline_input_shape). Builds the
 * config's model (model.arch and model.channels: bounded by the
 * architecture's full widths) to count it; the activations and data are
 * computed, never allocated. Returns 0, or the model's error naming
 * c->path. */
int memory_estimate_config(const struct config *c, int in_c, int in_h, int in_w,
                           struct memory_estimate *e, char *err);

/* Physical memory of this host in bytes (0 if unknown). */
uint64_t memory_host_bytes(void);

/* Returns 0 when e->total <= limit_bytes (or limit_bytes is 0), else
 * ABC_EVALUE with a message naming name (the config's path), the key that
 * makes the estimate that large (the batch size's key with its value when
 * the activations dominate, data.dataset for the data, model.channels for
 * the model), the estimate, its parts and the limit, described by
 * limit_what ("this host's memory"). */
int memory_check(const struct memory_estimate *e, uint64_t limit_bytes,
                 const char *limit_what, const char *name, char *err);

#endif

/* data.h - datasets (Fashion-MNIST IDX, gzip-compressed as Debian ships it;
 * CIFAR-10 binary), a deterministic validation split, and a batch loader
 * with seeded shuffling and augmentation (random crop with zero padding,
 * horizontal flip, per-channel normalisation). Images stay uint8 in memory
 * and become normalised float NCHW batches in loader_next. */
#ifndef ABC_DATA_H
#define ABC_DATA_H

#include <stdint.h>

#include "core/rng.h"

/* Where Debian's dataset-fashion-mnist package installs the IDX files. */
#define DATA_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

struct dataset {
    int n, c, h, w; /* n images of c x h x w */
    int num_classes;
    uint8_t *images; /* n*c*h*w bytes, NCHW */
    uint8_t *labels; /* n bytes, each < num_classes */
};

/* Reads an IDX image file and its label file (gzip or plain: zlib's gzread
 * handles both). Validates magic numbers, dimensions, sizes against the file
 * length, label range and that the counts match; errors name the file and
 * the byte offset or field. On success d owns its arrays. */
int dataset_load_idx(struct dataset *d, const char *images_path,
                     const char *labels_path, char *err);

/* Loads Fashion-MNIST train (60k) and test (10k) from dir; dir NULL or ""
 * means DATA_FASHION_MNIST_DIR. Looks for train-images-idx3-ubyte.gz etc.
 * (and the same names without .gz). Either output may be NULL. */
int dataset_load_fashion_mnist(struct dataset *train, struct dataset *test,
                               const char *dir, char *err);

/* Reads CIFAR-10 binary batch files (records of 1 label byte + 3072 image
 * bytes). The file length must be a multiple of 3073; labels < 10. */
int dataset_load_cifar10_files(struct dataset *d, const char *const *paths,
                               int npaths, char *err);
/* Loads data_batch_1..5.bin (train) and test_batch.bin (test) from dir
 * (the layout of cifar-10-batches-bin). Either output may be NULL. */
int dataset_load_cifar10(struct dataset *train, struct dataset *test,
                         const char *dir, char *err);

/* Splits full deterministically (seeded permutation) into train and val
 * (val_size images). Outputs own copies. val_size may be 0. */
int dataset_split(const struct dataset *full, int val_size, uint64_t seed,
                  struct dataset *train, struct dataset *val, char *err);

/* Copies the first n images of src into dst (n <= src->n). For subsets of
 * an already-shuffled split. */
int dataset_head(const struct dataset *src, int n, struct dataset *dst,
                 char *err);

void dataset_free(struct dataset *d);

struct augment {
    int crop_pad;          /* 0 = no random crop; else pad by this and crop */
    int flip;              /* random horizontal flip with p = 0.5 */
    float mean[3], std[3]; /* per-channel normalisation of x/255 */
};

/* Iterates over a dataset in batches. Training loaders shuffle and augment
 * with a per-epoch seed; evaluation loaders keep order and only normalise. */
struct loader {
    const struct dataset *d;
    int batch;
    int shuffle, train_aug;
    struct augment aug;
    uint64_t seed;
    int *order; /* permutation of [0,n) for the current epoch */
    int pos;
    struct rng rng; /* augmentation draws for the current epoch */
    float *lut;     /* c x 256: normalised value of each byte */
};

/* shuffle != 0: loader_start reshuffles with rng_derive(seed, epoch).
 * train_aug != 0: apply crop/flip (normalisation always). */
int loader_init(struct loader *l, const struct dataset *d, int batch,
                int shuffle, int train_aug, const struct augment *aug,
                uint64_t seed, char *err);
/* Starts epoch `epoch` (any integer): order and augmentation draws are a
 * pure function of (seed, epoch). */
void loader_start(struct loader *l, int epoch);
/* Fills x (batch,c,h,w) and labels (batch); returns the number of images
 * placed (< batch only for the last batch of an epoch, 0 when done). */
int loader_next(struct loader *l, float *x, int *labels);
void loader_free(struct loader *l);

#endif

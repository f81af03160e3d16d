/* data.c - dataset readers (Fashion-MNIST IDX through zlib, CIFAR-10
 * binary), the seeded validation split, and the batch loader with per-epoch
 * shuffling, random crop with zero padding, horizontal flip and per-channel
 * normalisation (see data.h). Every malformed file is rejected with an error
 * that names the file and the byte offset or field. */
#include "data/data.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "core/err.h"

#define IDX_MAGIC_IMAGES 0x00000803u /* unsigned bytes, 3 dimensions */
#define IDX_MAGIC_LABELS 0x00000801u /* unsigned bytes, 1 dimension */
#define DATA_MAX_N (1 << 24)         /* images per dataset */
#define DATA_MAX_DIM 4096            /* image height and width */
#define DATA_NUM_CLASSES 10
#define CIFAR_SIDE 32
#define CIFAR_IMAGE_BYTES (3 * CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_RECORD_BYTES (1 + CIFAR_IMAGE_BYTES)
#define DATA_PATH_MAX 4096

/* ---- IDX (Fashion-MNIST) ------------------------------------------------ */

/* An open IDX file and how many uncompressed bytes have been read from it. */
struct idx_file {
    gzFile f;
    const char *path;
    uint64_t off;
};

static int idx_open(struct idx_file *x, const char *path, char *err)
{
    x->path = path;
    x->off = 0;
    errno = 0;
    x->f = gzopen(path, "rb");
    if (!x->f)
        return abc_errf(err, ABC_EIO, "%s: cannot open: %s", path,
                        errno ? strerror(errno) : "out of memory");
    if (gzbuffer(x->f, 1u << 18) != 0) {
        gzclose(x->f);
        x->f = NULL;
        return abc_errf(err, ABC_EIO, "%s: gzbuffer failed", path);
    }
    return 0;
}

static const char *idx_zmsg(struct idx_file *x, int *zerr);

/* Reads exactly n bytes. `what` and `expected_total` describe the file for
 * the error when it ends early. */
static int idx_read(struct idx_file *x, void *buf, size_t n,
                    uint64_t expected_total, const char *what, char *err)
{
    unsigned char *p = buf;
    size_t got = 0;
    while (got < n) {
        size_t want = n - got;
        if (want > (1u << 30)) want = 1u << 30;
        int r = gzread(x->f, p + got, (unsigned)want);
        if (r < 0) {
            int zerr;
            const char *msg = idx_zmsg(x, &zerr);
            return abc_errf(err, ABC_EFORMAT,
                            "%s: read error at byte offset %" PRIu64 ": %s",
                            x->path, x->off + got, msg);
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    if (got < n) {
        int zerr;
        const char *msg = idx_zmsg(x, &zerr);
        return abc_errf(err, ABC_EFORMAT,
                        "%s: truncated: data ran out at byte offset %" PRIu64
                        " while reading %s (expected %" PRIu64
                        " bytes in all)%s%s",
                        x->path, x->off + got, what, expected_total,
                        zerr == Z_BUF_ERROR ? "; gzip stream cut short: " : "",
                        zerr == Z_BUF_ERROR ? msg : "");
    }
    x->off += n;
    return 0;
}

/* Checks that the file holds nothing after the expected bytes and that a
 * gzip stream ended properly (trailer and CRC present), then closes it. */
static int idx_finish(struct idx_file *x, char *err)
{
    unsigned char extra;
    int r = gzread(x->f, &extra, 1);
    int zerr = Z_OK;
    const char *msg = idx_zmsg(x, &zerr);
    int rc = 0;
    if (r > 0)
        rc = abc_errf(err, ABC_EFORMAT,
                      "%s: trailing data after byte offset %" PRIu64
                      " (the header says the file holds exactly %" PRIu64
                      " bytes)",
                      x->path, x->off, x->off);
    else if (r < 0 || zerr != Z_OK)
        rc = abc_errf(err, ABC_EFORMAT,
                      "%s: corrupt or truncated gzip stream after byte "
                      "offset %" PRIu64 ": %s",
                      x->path, x->off, msg);
    int cr = gzclose(x->f);
    x->f = NULL;
    if (rc == 0 && cr != Z_OK)
        rc = abc_errf(err, ABC_EIO, "%s: error closing file (zlib code %d)",
                      x->path, cr);
    return rc;
}

/* zlib's message for the last error, without the "path: " it prepends. */
static const char *idx_zmsg(struct idx_file *x, int *zerr)
{
    const char *msg = gzerror(x->f, zerr);
    size_t len = strlen(x->path);
    if (!strncmp(msg, x->path, len) && !strncmp(msg + len, ": ", 2))
        msg += len + 2;
    return msg;
}

static void idx_close(struct idx_file *x)
{
    if (x->f) gzclose(x->f);
    x->f = NULL;
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
           (uint32_t)b[3];
}

/* Refuses, before anything is allocated, a header that declares more data
 * bytes than the file can hold: a plain file its size less the header_bytes
 * read (the same "truncated" error idx_read would give after reading), a
 * gzip'd one IDX_MAX_INFLATE times its size (deflate's largest expansion
 * is 1032:1). what describes the data for the message. */
#define IDX_MAX_INFLATE 1032
static int idx_check_room(struct idx_file *x, int header_bytes, size_t bytes,
                          const char *what, char *err)
{
    struct stat st;
    if (stat(x->path, &st) != 0)
        return abc_errf(err, ABC_EIO, "%s: cannot stat: %s", x->path,
                        strerror(errno));
    uint64_t size = (uint64_t)st.st_size;
    uint64_t total = (uint64_t)header_bytes + (uint64_t)bytes;
    if (gzdirect(x->f)) {
        if (total > size)
            return abc_errf(err, ABC_EFORMAT,
                            "%s: truncated: data ran out at byte offset "
                            "%" PRIu64 " while reading %s (expected %" PRIu64
                            " bytes in all)",
                            x->path, size, what, total);
    } else if (bytes / IDX_MAX_INFLATE > size) {
        return abc_errf(err, ABC_EFORMAT,
                        "%s: byte offset 4: the header declares %s (%zu "
                        "bytes), more than a %" PRIu64 "-byte gzip file can "
                        "hold (deflate expands at most %d:1)",
                        x->path, what, bytes, size, IDX_MAX_INFLATE);
    }
    return 0;
}

static int check_dim(const char *path, int byte_off, const char *name,
                     uint32_t v, uint32_t max, char *err)
{
    if (v == 0 || v > max)
        return abc_errf(err, ABC_EFORMAT,
                        "%s: byte offset %d: %s is %" PRIu32
                        ", expected 1..%" PRIu32,
                        path, byte_off, name, v, max);
    return 0;
}

static int read_idx_images(struct dataset *d, const char *path, char *err)
{
    struct idx_file x;
    unsigned char hdr[16];
    int rc = idx_open(&x, path, err);
    if (rc) return rc;
    if ((rc = idx_read(&x, hdr, 4, 16, "the magic number", err))) goto fail;
    uint32_t magic = be32(hdr);
    if (magic != IDX_MAGIC_IMAGES) {
        rc =
            abc_errf(err, ABC_EFORMAT,
                     "%s: byte offset 0: bad magic number 0x%08" PRIx32
                     ", expected 0x%08x (IDX image file: unsigned bytes, 3 "
                     "dimensions)%s",
                     path, magic, IDX_MAGIC_IMAGES,
                     magic == IDX_MAGIC_LABELS ? "; this is a label file" : "");
        goto fail;
    }
    if ((rc = idx_read(&x, hdr + 4, 12, 16, "the dimensions", err))) goto fail;
    uint32_t n = be32(hdr + 4), h = be32(hdr + 8), w = be32(hdr + 12);
    if ((rc = check_dim(path, 4, "image count", n, DATA_MAX_N, err)) ||
        (rc = check_dim(path, 8, "image height", h, DATA_MAX_DIM, err)) ||
        (rc = check_dim(path, 12, "image width", w, DATA_MAX_DIM, err)))
        goto fail;
    size_t bytes = (size_t)n * h * w;
    char what[96];
    snprintf(what, sizeof what, "%" PRIu32 " images of %" PRIu32 "x%" PRIu32, n,
             h, w);
    if ((rc = idx_check_room(&x, 16, bytes, what, err))) goto fail;
    d->images = malloc(bytes);
    if (!d->images) {
        rc = abc_errf(err, ABC_ENOMEM, "%s: cannot allocate %zu bytes", path,
                      bytes);
        goto fail;
    }
    if ((rc = idx_read(&x, d->images, bytes, 16 + (uint64_t)bytes, what, err)))
        goto fail;
    if ((rc = idx_finish(&x, err))) goto fail;
    d->n = (int)n;
    d->c = 1;
    d->h = (int)h;
    d->w = (int)w;
    return 0;
fail:
    idx_close(&x);
    free(d->images);
    d->images = NULL;
    return rc;
}

static int read_idx_labels(struct dataset *d, const char *path,
                           const char *images_path, char *err)
{
    struct idx_file x;
    unsigned char hdr[8];
    int rc = idx_open(&x, path, err);
    if (rc) return rc;
    if ((rc = idx_read(&x, hdr, 4, 8, "the magic number", err))) goto fail;
    uint32_t magic = be32(hdr);
    if (magic != IDX_MAGIC_LABELS) {
        rc = abc_errf(err, ABC_EFORMAT,
                      "%s: byte offset 0: bad magic number 0x%08" PRIx32
                      ", expected 0x%08x (IDX label file: unsigned bytes, 1 "
                      "dimension)%s",
                      path, magic, IDX_MAGIC_LABELS,
                      magic == IDX_MAGIC_IMAGES ? "; this is an image file"
                                                : "");
        goto fail;
    }
    if ((rc = idx_read(&x, hdr + 4, 4, 8, "the label count", err))) goto fail;
    uint32_t n = be32(hdr + 4);
    if ((rc = check_dim(path, 4, "label count", n, DATA_MAX_N, err))) goto fail;
    if (d->n != (int)n) {
        rc = abc_errf(err, ABC_EFORMAT,
                      "%s: byte offset 4: %" PRIu32
                      " labels, but %s has %d images",
                      path, n, images_path, d->n);
        goto fail;
    }
    d->labels = malloc(n);
    if (!d->labels) {
        rc = abc_errf(err, ABC_ENOMEM, "%s: cannot allocate %" PRIu32 " bytes",
                      path, n);
        goto fail;
    }
    char what[48];
    snprintf(what, sizeof what, "%" PRIu32 " labels", n);
    if ((rc = idx_read(&x, d->labels, n, 8 + (uint64_t)n, what, err)))
        goto fail;
    if ((rc = idx_finish(&x, err))) goto fail;
    for (uint32_t i = 0; i < n; i++)
        if (d->labels[i] >= DATA_NUM_CLASSES) {
            rc = abc_errf(err, ABC_EFORMAT,
                          "%s: byte offset %" PRIu32
                          ": label %d of image %" PRIu32
                          " is out of range, expected 0..%d",
                          path, 8 + i, d->labels[i], i, DATA_NUM_CLASSES - 1);
            goto fail;
        }
    return 0;
fail:
    idx_close(&x);
    free(d->labels);
    d->labels = NULL;
    return rc;
}

int dataset_load_idx(struct dataset *d, const char *images_path,
                     const char *labels_path, char *err)
{
    struct dataset t;
    memset(&t, 0, sizeof t);
    memset(d, 0, sizeof *d);
    int rc = read_idx_images(&t, images_path, err);
    if (rc) return rc;
    rc = read_idx_labels(&t, labels_path, images_path, err);
    if (rc) {
        dataset_free(&t);
        return rc;
    }
    t.num_classes = DATA_NUM_CLASSES;
    *d = t;
    return 0;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Finds dir/base.gz or dir/base; fills out (DATA_PATH_MAX bytes). */
static int fashion_find(const char *dir, const char *base, char *out, char *err)
{
    int len = snprintf(out, DATA_PATH_MAX, "%s/%s.gz", dir, base);
    if (len < 0 || len >= DATA_PATH_MAX)
        return abc_errf(err, ABC_EVALUE,
                        "fashion-mnist: data dir path too "
                        "long");
    if (file_exists(out)) return 0;
    snprintf(out, DATA_PATH_MAX, "%s/%s", dir, base);
    if (file_exists(out)) return 0;
    struct stat st;
    const char *why = stat(dir, &st) != 0    ? "the folder does not exist"
                      : !S_ISDIR(st.st_mode) ? "it is not a folder"
                                             : "the file is not there";
    return abc_errf(err, ABC_EIO,
                    "fashion-mnist: cannot find %s/%s.gz (nor %s/%s): %s. "
                    "Install Debian's package (apt-get install "
                    "dataset-fashion-mnist) or set data.dir to a folder "
                    "holding the IDX files",
                    dir, base, dir, base, why);
}

static int fashion_load_one(struct dataset *d, const char *dir,
                            const char *prefix, char *err)
{
    char ipath[DATA_PATH_MAX], lpath[DATA_PATH_MAX], base[64];
    int rc;
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", prefix);
    if ((rc = fashion_find(dir, base, ipath, err))) return rc;
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", prefix);
    if ((rc = fashion_find(dir, base, lpath, err))) return rc;
    return dataset_load_idx(d, ipath, lpath, err);
}

int dataset_load_fashion_mnist(struct dataset *train, struct dataset *test,
                               const char *dir, char *err)
{
    if (!dir || !dir[0]) dir = DATA_FASHION_MNIST_DIR;
    int rc;
    if (train && (rc = fashion_load_one(train, dir, "train", err))) return rc;
    if (test && (rc = fashion_load_one(test, dir, "t10k", err))) {
        if (train) dataset_free(train);
        return rc;
    }
    return 0;
}

/* ---- CIFAR-10 binary ---------------------------------------------------- */

int dataset_load_cifar10_files(struct dataset *d, const char *const *paths,
                               int npaths, char *err)
{
    memset(d, 0, sizeof *d);
    if (npaths <= 0)
        return abc_errf(err, ABC_EVALUE, "cifar10: no files given");
    size_t total = 0;
    for (int i = 0; i < npaths; i++) {
        struct stat st;
        if (stat(paths[i], &st) != 0)
            return abc_errf(err, ABC_EIO, "%s: cannot open: %s", paths[i],
                            strerror(errno));
        if (!S_ISREG(st.st_mode))
            return abc_errf(err, ABC_EIO, "%s: not a regular file", paths[i]);
        uint64_t size = (uint64_t)st.st_size;
        if (size == 0 || size % CIFAR_RECORD_BYTES != 0)
            return abc_errf(err, ABC_EFORMAT,
                            "%s: %" PRIu64 " bytes is not a positive multiple "
                            "of %d (CIFAR-10 binary record: 1 label byte + "
                            "%d image bytes)",
                            paths[i], size, CIFAR_RECORD_BYTES,
                            CIFAR_IMAGE_BYTES);
        total += size / CIFAR_RECORD_BYTES;
        if (total > DATA_MAX_N)
            return abc_errf(err, ABC_EFORMAT,
                            "cifar10: more than %d images in all", DATA_MAX_N);
    }
    struct dataset t = {.n = (int)total,
                        .c = 3,
                        .h = CIFAR_SIDE,
                        .w = CIFAR_SIDE,
                        .num_classes = DATA_NUM_CLASSES};
    t.images = malloc(total * CIFAR_IMAGE_BYTES);
    t.labels = malloc(total);
    if (!t.images || !t.labels) {
        dataset_free(&t);
        return abc_errf(err, ABC_ENOMEM, "cifar10: cannot allocate %zu images",
                        total);
    }
    size_t k = 0;
    for (int i = 0; i < npaths; i++) {
        FILE *f = fopen(paths[i], "rb");
        if (!f) {
            dataset_free(&t);
            return abc_errf(err, ABC_EIO, "%s: cannot open: %s", paths[i],
                            strerror(errno));
        }
        uint64_t off = 0;
        int rc = 0;
        for (;;) {
            unsigned char label;
            size_t got = fread(&label, 1, 1, f);
            if (got == 0) break;
            if (k == total) { /* the file grew since stat() */
                rc = abc_errf(err, ABC_EFORMAT,
                              "%s: more data than its size said, at byte "
                              "offset %" PRIu64,
                              paths[i], off);
                break;
            }
            got = fread(t.images + k * CIFAR_IMAGE_BYTES, 1, CIFAR_IMAGE_BYTES,
                        f);
            if (got != CIFAR_IMAGE_BYTES) {
                rc = abc_errf(err, ABC_EFORMAT,
                              "%s: truncated: data ran out at byte offset "
                              "%" PRIu64 " inside a record",
                              paths[i], off + 1 + got);
                break;
            }
            if (label >= DATA_NUM_CLASSES) {
                rc = abc_errf(err, ABC_EFORMAT,
                              "%s: byte offset %" PRIu64 ": label %d is out "
                              "of range, expected 0..%d",
                              paths[i], off, label, DATA_NUM_CLASSES - 1);
                break;
            }
            t.labels[k++] = label;
            off += CIFAR_RECORD_BYTES;
        }
        if (!rc && ferror(f))
            rc =
                abc_errf(err, ABC_EIO, "%s: read error at byte offset %" PRIu64,
                         paths[i], off);
        fclose(f);
        if (rc) {
            dataset_free(&t);
            return rc;
        }
    }
    if (k != total) {
        dataset_free(&t);
        return abc_errf(err, ABC_EFORMAT,
                        "cifar10: read %zu images, expected %zu (a file "
                        "shrank while reading)",
                        k, total);
    }
    *d = t;
    return 0;
}

static int cifar_load_set(struct dataset *d, const char *dir,
                          const char *const *names, int n, char *err)
{
    char buf[6][DATA_PATH_MAX];
    const char *paths[6];
    for (int i = 0; i < n; i++) {
        int len = snprintf(buf[i], DATA_PATH_MAX, "%s/%s", dir, names[i]);
        if (len < 0 || len >= DATA_PATH_MAX)
            return abc_errf(err, ABC_EVALUE, "cifar10: data dir path too long");
        if (!file_exists(buf[i]))
            return abc_errf(err, ABC_EIO,
                            "cifar10: cannot find %s: set data.dir to the "
                            "cifar-10-batches-bin folder of the CIFAR-10 "
                            "binary version",
                            buf[i]);
        paths[i] = buf[i];
    }
    return dataset_load_cifar10_files(d, paths, n, err);
}

int dataset_load_cifar10(struct dataset *train, struct dataset *test,
                         const char *dir, char *err)
{
    static const char *const train_names[] = {
        "data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
        "data_batch_4.bin", "data_batch_5.bin"};
    static const char *const test_names[] = {"test_batch.bin"};
    if (!dir || !dir[0])
        return abc_errf(err, ABC_EVALUE,
                        "cifar10: data.dir is not set (it must be the "
                        "cifar-10-batches-bin folder)");
    int rc;
    if (train && (rc = cifar_load_set(train, dir, train_names, 5, err)))
        return rc;
    if (test && (rc = cifar_load_set(test, dir, test_names, 1, err))) {
        if (train) dataset_free(train);
        return rc;
    }
    return 0;
}

/* ---- splits and subsets ------------------------------------------------- */

/* Allocates d for n images shaped like like (at least one byte each, so an
 * empty split is a valid dataset too). */
static int dataset_alloc_like(struct dataset *d, const struct dataset *like,
                              int n, char *err)
{
    size_t img = (size_t)like->c * like->h * like->w;
    memset(d, 0, sizeof *d);
    d->n = n;
    d->c = like->c;
    d->h = like->h;
    d->w = like->w;
    d->num_classes = like->num_classes;
    d->images = malloc(n ? (size_t)n * img : 1);
    d->labels = malloc(n ? (size_t)n : 1);
    if (!d->images || !d->labels) {
        dataset_free(d);
        return abc_errf(err, ABC_ENOMEM, "cannot allocate %d images", n);
    }
    return 0;
}

/* Copies images idx[0..n) of src into dst, in that order. */
static void dataset_gather(struct dataset *dst, const struct dataset *src,
                           const int *idx, int n)
{
    size_t img = (size_t)src->c * src->h * src->w;
    for (int i = 0; i < n; i++) {
        memcpy(dst->images + (size_t)i * img,
               src->images + (size_t)idx[i] * img, img);
        dst->labels[i] = src->labels[idx[i]];
    }
}

int dataset_split(const struct dataset *full_in, int val_size, uint64_t seed,
                  struct dataset *train, struct dataset *val, char *err)
{
    const struct dataset full_copy = *full_in, *full = &full_copy;
    memset(train, 0, sizeof *train);
    memset(val, 0, sizeof *val);
    if (val_size < 0 || val_size >= full->n)
        return abc_errf(err, ABC_EVALUE,
                        "validation split of %d images: expected 0..%d (the "
                        "training set has %d images)",
                        val_size, full->n - 1, full->n);
    int *perm = malloc((size_t)full->n * sizeof *perm);
    if (!perm)
        return abc_errf(err, ABC_ENOMEM, "cannot allocate a permutation");
    for (int i = 0; i < full->n; i++)
        perm[i] = i;
    struct rng r;
    rng_seed(&r, seed);
    rng_shuffle_int(&r, perm, full->n);
    int rc = dataset_alloc_like(val, full, val_size, err);
    if (!rc) rc = dataset_alloc_like(train, full, full->n - val_size, err);
    if (rc) {
        dataset_free(val);
        free(perm);
        return rc;
    }
    dataset_gather(val, full, perm, val_size);
    dataset_gather(train, full, perm + val_size, full->n - val_size);
    free(perm);
    return 0;
}

int dataset_head(const struct dataset *src_in, int n, struct dataset *dst,
                 char *err)
{
    /* Read src before clearing dst: a caller may pass a copy of *dst. */
    const struct dataset src_copy = *src_in, *src = &src_copy;
    memset(dst, 0, sizeof *dst);
    if (n < 0 || n > src->n)
        return abc_errf(err, ABC_EVALUE,
                        "subset of %d images: expected 0..%d (the set has %d)",
                        n, src->n, src->n);
    int rc = dataset_alloc_like(dst, src, n, err);
    if (rc) return rc;
    size_t img = (size_t)src->c * src->h * src->w;
    memcpy(dst->images, src->images, (size_t)n * img);
    memcpy(dst->labels, src->labels, (size_t)n);
    return 0;
}

void dataset_free(struct dataset *d)
{
    if (!d) return;
    free(d->images);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

/* ---- batch loader ------------------------------------------------------- */

int loader_init(struct loader *l, const struct dataset *d, int batch,
                int shuffle, int train_aug, const struct augment *aug,
                uint64_t seed, char *err)
{
    memset(l, 0, sizeof *l);
    if (!d || d->n <= 0 || !d->images || !d->labels)
        return abc_errf(err, ABC_EVALUE, "loader: empty dataset");
    if (d->c < 1 || d->c > 3 || d->h < 1 || d->w < 1)
        return abc_errf(err, ABC_EVALUE,
                        "loader: images of %dx%dx%d, expected 1..3 channels",
                        d->c, d->h, d->w);
    if (batch < 1)
        return abc_errf(err, ABC_EVALUE, "loader: batch size %d, expected >= 1",
                        batch);
    if (aug->crop_pad < 0)
        return abc_errf(err, ABC_EVALUE,
                        "loader: crop padding %d, expected >= 0",
                        aug->crop_pad);
    for (int ch = 0; ch < d->c; ch++)
        if (!isfinite(aug->mean[ch]) || !isfinite(aug->std[ch]) ||
            !(aug->std[ch] > 0))
            return abc_errf(err, ABC_EVALUE,
                            "loader: channel %d normalisation mean %g std %g, "
                            "expected finite with std > 0",
                            ch, aug->mean[ch], aug->std[ch]);
    l->order = malloc((size_t)d->n * sizeof *l->order);
    l->lut = malloc((size_t)d->c * 256 * sizeof *l->lut);
    if (!l->order || !l->lut) {
        loader_free(l);
        return abc_errf(err, ABC_ENOMEM, "loader: cannot allocate");
    }
    /* The same expression a reader would write: (x/255 - mean)/std. */
    for (int ch = 0; ch < d->c; ch++)
        for (int v = 0; v < 256; v++)
            l->lut[ch * 256 + v] =
                ((float)v / 255.0f - aug->mean[ch]) / aug->std[ch];
    l->d = d;
    l->batch = batch;
    l->shuffle = shuffle;
    l->train_aug = train_aug;
    l->aug = *aug;
    l->seed = seed;
    loader_start(l, 0);
    return 0;
}

void loader_start(struct loader *l, int epoch)
{
    uint64_t e = (uint64_t)(int64_t)epoch;
    for (int i = 0; i < l->d->n; i++)
        l->order[i] = i;
    if (l->shuffle) {
        struct rng r;
        rng_seed(&r, rng_derive(l->seed, e, 0, 0));
        rng_shuffle_int(&r, l->order, l->d->n);
    }
    rng_seed(&l->rng, rng_derive(l->seed, e, 1, 0));
    l->pos = 0;
}

/* One channel: out[y][x] = lut[in[y+dy][sx+dx]] with sx = x, or w-1-x when
 * flipped; pixels outside the image read as byte 0 (zero padding before
 * normalisation, as torchvision pads and then normalises). */
static void augment_plane(float *out, const uint8_t *in, int h, int w, int dy,
                          int dx, int flip, const float *lut)
{
    const float pad = lut[0];
    for (int y = 0; y < h; y++) {
        float *o = out + (size_t)y * w;
        int sy = y + dy;
        if (sy < 0 || sy >= h) {
            for (int x = 0; x < w; x++)
                o[x] = pad;
            continue;
        }
        const uint8_t *row = in + (size_t)sy * w;
        for (int x = 0; x < w; x++) {
            int sx = (flip ? w - 1 - x : x) + dx;
            o[x] = (sx >= 0 && sx < w) ? lut[row[sx]] : pad;
        }
    }
}

int loader_next(struct loader *l, float *x, int *labels)
{
    const struct dataset *d = l->d;
    int k = d->n - l->pos;
    if (k > l->batch) k = l->batch;
    if (k <= 0) return 0;
    const size_t plane = (size_t)d->h * d->w;
    const int p = l->aug.crop_pad;
    for (int i = 0; i < k; i++) {
        int idx = l->order[l->pos + i];
        int dy = 0, dx = 0, flip = 0;
        if (l->train_aug) {
            if (p > 0) {
                dy = (int)rng_below(&l->rng, 2 * (uint64_t)p + 1) - p;
                dx = (int)rng_below(&l->rng, 2 * (uint64_t)p + 1) - p;
            }
            if (l->aug.flip) flip = (int)(rng_u64(&l->rng) >> 63);
        }
        const uint8_t *src = d->images + (size_t)idx * d->c * plane;
        float *dst = x + (size_t)i * d->c * plane;
        for (int ch = 0; ch < d->c; ch++)
            augment_plane(dst + ch * plane, src + ch * plane, d->h, d->w, dy,
                          dx, flip, l->lut + ch * 256);
        labels[i] = d->labels[idx];
    }
    l->pos += k;
    return k;
}

void loader_free(struct loader *l)
{
    free(l->order);
    free(l->lut);
    memset(l, 0, sizeof *l);
}

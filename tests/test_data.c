/* test_data.c - dataset readers, split and loader (common/data.c).
 * Reads Debian's Fashion-MNIST (dataset-fashion-mnist must be installed),
 * writes tiny IDX and CIFAR-10 files into the working directory (CTest runs
 * it in build/testdata) to check every rejection, and checks the loader's
 * determinism, normalisation, crop and flip pixel by pixel. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "check.h"
#include "core/err.h"
#include "data/data.h"

#define CHECK_ERR(rc, err, needle)                                             \
    CHECK((rc) < 0 && strstr(err, needle), "rc %d, err '%s', want '%s'", rc,   \
          err, needle)

/* ---- writing test files ------------------------------------------------- */

static void put_be32(uint8_t *b, uint32_t v)
{
    b[0] = (uint8_t)(v >> 24);
    b[1] = (uint8_t)(v >> 16);
    b[2] = (uint8_t)(v >> 8);
    b[3] = (uint8_t)v;
}

/* Writes len bytes to path, gzip-compressed when gz. */
static void write_bytes(const char *path, const uint8_t *buf, size_t len,
                        int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        if (!f || (len && gzwrite(f, buf, (unsigned)len) != (int)len) ||
            gzclose(f) != Z_OK) {
            fprintf(stderr, "cannot write %s\n", path);
            exit(2);
        }
        return;
    }
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

/* An IDX image file of n images h x w whose bytes are data (n*h*w), then
 * `extra` bytes of garbage; the whole file cut to `keep` bytes if keep > 0. */
static void write_idx_images(const char *path, int gz, uint32_t magic,
                             uint32_t n, uint32_t h, uint32_t w,
                             const uint8_t *data, size_t ndata, size_t extra,
                             size_t keep)
{
    size_t len = 16 + ndata + extra;
    uint8_t *buf = calloc(len, 1);
    put_be32(buf, magic);
    put_be32(buf + 4, n);
    put_be32(buf + 8, h);
    put_be32(buf + 12, w);
    memcpy(buf + 16, data, ndata);
    memset(buf + 16 + ndata, 0xAB, extra);
    write_bytes(path, buf, keep ? keep : len, gz);
    free(buf);
}

static void write_idx_labels(const char *path, int gz, uint32_t magic,
                             uint32_t n, const uint8_t *labels, size_t nl)
{
    uint8_t *buf = calloc(8 + nl, 1);
    put_be32(buf, magic);
    put_be32(buf + 4, n);
    memcpy(buf + 8, labels, nl);
    write_bytes(path, buf, 8 + nl, gz);
    free(buf);
}

/* ---- Fashion-MNIST from Debian's package -------------------------------- */

static void test_fashion_mnist(void)
{
    char err[ABC_ERRLEN] = "";
    struct dataset train, test;
    int rc = dataset_load_fashion_mnist(&train, &test, NULL, err);
    CHECK(rc == 0, "loading Debian's fashion-mnist: %s", err);
    if (rc) return;
    CHECK(train.n == 60000 && train.c == 1 && train.h == 28 && train.w == 28,
          "train %dx%dx%dx%d", train.n, train.c, train.h, train.w);
    CHECK(test.n == 10000 && test.c == 1 && test.h == 28 && test.w == 28,
          "test %dx%dx%dx%d", test.n, test.c, test.h, test.w);
    CHECK(train.num_classes == 10, "%d classes", train.num_classes);
    CHECK(train.labels[0] == 9, "first train label %d, want 9",
          train.labels[0]);
    CHECK(train.labels[1] == 0, "second train label %d, want 0",
          train.labels[1]);
    CHECK(test.labels[0] == 9, "first test label %d, want 9", test.labels[0]);
    /* Byte sum and FNV-1a of the first image, computed with Python's gzip. */
    uint32_t sum = 0, fnv = 2166136261u;
    for (int i = 0; i < 784; i++) {
        sum += train.images[i];
        fnv = (fnv ^ train.images[i]) * 16777619u;
    }
    CHECK(sum == 76247, "first train image byte sum %u, want 76247", sum);
    CHECK(fnv == 0xf365a098u, "first train image FNV-1a 0x%08x", fnv);
    uint32_t tsum = 0;
    for (int i = 0; i < 784; i++)
        tsum += test.images[i];
    CHECK(tsum == 33456, "first test image byte sum %u, want 33456", tsum);
    int counts[10] = {0}, tcounts[10] = {0};
    for (int i = 0; i < train.n; i++)
        counts[train.labels[i]]++;
    for (int i = 0; i < test.n; i++)
        tcounts[test.labels[i]]++;
    for (int k = 0; k < 10; k++)
        CHECK(counts[k] == 6000 && tcounts[k] == 1000,
              "class %d: %d train / %d test images", k, counts[k], tcounts[k]);
    dataset_free(&train);
    dataset_free(&test);
    CHECK(train.images == NULL && train.n == 0, "dataset_free clears");

    /* Only one of the two, into a NULL other. */
    rc = dataset_load_fashion_mnist(NULL, &test, "", err);
    CHECK(rc == 0 && test.n == 10000, "test only: rc %d %s", rc, err);
    dataset_free(&test);
}

/* ---- tiny IDX files ----------------------------------------------------- */

enum { TN = 3, TH = 4, TW = 5 };

static void tiny_data(uint8_t *img, uint8_t *lab)
{
    for (int i = 0; i < TN * TH * TW; i++)
        img[i] = (uint8_t)(i * 7 + 3);
    lab[0] = 1;
    lab[1] = 9;
    lab[2] = 0;
}

static void test_idx_round_trip(void)
{
    uint8_t img[TN * TH * TW], lab[TN];
    char err[ABC_ERRLEN] = "";
    tiny_data(img, lab);
    for (int gz = 0; gz < 2; gz++) {
        const char *ip = gz ? "tiny-images.gz" : "tiny-images";
        const char *lp = gz ? "tiny-labels.gz" : "tiny-labels";
        write_idx_images(ip, gz, 0x803, TN, TH, TW, img, sizeof img, 0, 0);
        write_idx_labels(lp, gz, 0x801, TN, lab, TN);
        struct dataset d;
        int rc = dataset_load_idx(&d, ip, lp, err);
        CHECK(rc == 0, "gz %d: %s", gz, err);
        if (rc) continue;
        CHECK(d.n == TN && d.c == 1 && d.h == TH && d.w == TW &&
                  d.num_classes == 10,
              "gz %d: shape %dx%dx%dx%d", gz, d.n, d.c, d.h, d.w);
        CHECK(!memcmp(d.images, img, sizeof img), "gz %d: image bytes", gz);
        CHECK(!memcmp(d.labels, lab, TN), "gz %d: labels", gz);
        dataset_free(&d);
    }
}

static void test_idx_errors(void)
{
    uint8_t img[TN * TH * TW], lab[TN];
    char err[ABC_ERRLEN];
    struct dataset d;
    int rc;
    tiny_data(img, lab);
    write_idx_labels("ok-labels", 0, 0x801, TN, lab, TN);
    write_idx_images("ok-images.gz", 1, 0x803, TN, TH, TW, img, sizeof img, 0,
                     0);

    /* Bad magic, both files. */
    write_idx_images("bad-magic", 0, 0x804, TN, TH, TW, img, sizeof img, 0, 0);
    rc = dataset_load_idx(&d, "bad-magic", "ok-labels", err);
    CHECK_ERR(rc, err, "bad-magic: byte offset 0: bad magic number 0x00000804");
    rc = dataset_load_idx(&d, "ok-images.gz", "ok-images.gz", err);
    CHECK_ERR(rc, err, "this is an image file");
    CHECK(d.images == NULL && d.n == 0, "output cleared on error");

    /* Truncated data, plain and gzip: 7 bytes short of 16 + 60. */
    for (int gz = 0; gz < 2; gz++) {
        const char *p = gz ? "trunc.gz" : "trunc";
        write_idx_images(p, gz, 0x803, TN, TH, TW, img, sizeof img, 0,
                         16 + sizeof img - 7);
        rc = dataset_load_idx(&d, p, "ok-labels", err);
        CHECK_ERR(rc, err, p);
        CHECK_ERR(rc, err, "truncated: data ran out at byte offset 69");
    }
    /* Truncated inside the header. */
    write_idx_images("trunc-hdr", 0, 0x803, TN, TH, TW, img, sizeof img, 0, 10);
    rc = dataset_load_idx(&d, "trunc-hdr", "ok-labels", err);
    CHECK_ERR(rc, err, "data ran out at byte offset 10");
    /* A gzip stream cut in the middle of its compressed bytes. */
    {
        FILE *f = fopen("ok-images.gz", "rb");
        uint8_t buf[4096];
        size_t len = f ? fread(buf, 1, sizeof buf, f) : 0;
        if (f) fclose(f);
        write_bytes("cut.gz", buf, len / 2, 0);
        rc = dataset_load_idx(&d, "cut.gz", "ok-labels", err);
        CHECK_ERR(rc, err, "cut.gz: ");
        CHECK_ERR(rc, err, "truncated");
        /* Only the 8-byte gzip trailer (CRC, length) missing. */
        write_bytes("no-trailer.gz", buf, len - 8, 0);
        rc = dataset_load_idx(&d, "no-trailer.gz", "ok-labels", err);
        CHECK_ERR(rc, err, "no-trailer.gz: ");
    }

    /* Trailing garbage, plain and inside the gzip stream. */
    for (int gz = 0; gz < 2; gz++) {
        const char *p = gz ? "trailing.gz" : "trailing";
        write_idx_images(p, gz, 0x803, TN, TH, TW, img, sizeof img, 3, 0);
        rc = dataset_load_idx(&d, p, "ok-labels", err);
        CHECK_ERR(rc, err, "trailing data after byte offset 76");
    }

    /* Label out of range: image 1's label is 10 (byte offset 9). */
    uint8_t badlab[TN] = {1, 10, 0};
    write_idx_labels("bad-label", 0, 0x801, TN, badlab, TN);
    rc = dataset_load_idx(&d, "ok-images.gz", "bad-label", err);
    CHECK_ERR(rc, err, "bad-label: byte offset 9: label 10 of image 1");

    /* Counts that disagree. */
    write_idx_labels("two-labels", 0, 0x801, 2, lab, 2);
    rc = dataset_load_idx(&d, "ok-images.gz", "two-labels", err);
    CHECK_ERR(
        rc, err,
        "two-labels: byte offset 4: 2 labels, but ok-images.gz has 3 images");

    /* Dimensions: zero and absurd. */
    write_idx_images("zero-n", 0, 0x803, 0, TH, TW, img, 0, 0, 0);
    rc = dataset_load_idx(&d, "zero-n", "ok-labels", err);
    CHECK_ERR(rc, err, "zero-n: byte offset 4: image count is 0");
    write_idx_images("huge-h", 0, 0x803, TN, 5000, TW, img, sizeof img, 0, 0);
    rc = dataset_load_idx(&d, "huge-h", "ok-labels", err);
    CHECK_ERR(rc, err, "huge-h: byte offset 8: image height is 5000");

    /* Missing files. */
    rc = dataset_load_idx(&d, "no-such-images", "ok-labels", err);
    CHECK_ERR(rc, err, "no-such-images: cannot open");
    rc = dataset_load_idx(&d, "ok-images.gz", "no-such-labels", err);
    CHECK_ERR(rc, err, "no-such-labels: cannot open");
    CHECK(d.images == NULL, "images freed when the labels fail");
}

static void test_fashion_dir(void)
{
    char err[ABC_ERRLEN];
    struct dataset tr, te;
    int rc = dataset_load_fashion_mnist(&tr, &te, "no-such-dir", err);
    CHECK_ERR(rc, err, "no-such-dir/train-images-idx3-ubyte.gz");
    CHECK_ERR(rc, err, "apt-get install dataset-fashion-mnist");
    CHECK_ERR(rc, err, "data.dir");

    /* A folder with plain (not gzipped) files, test set missing. */
    uint8_t img[TN * TH * TW], lab[TN];
    tiny_data(img, lab);
    mkdir("fm-plain", 0755);
    write_idx_images("fm-plain/train-images-idx3-ubyte", 0, 0x803, TN, TH, TW,
                     img, sizeof img, 0, 0);
    write_idx_labels("fm-plain/train-labels-idx1-ubyte", 0, 0x801, TN, lab, TN);
    rc = dataset_load_fashion_mnist(&tr, NULL, "fm-plain", err);
    CHECK(rc == 0 && tr.n == TN && !memcmp(tr.images, img, sizeof img),
          "plain files in a folder: rc %d %s", rc, err);
    dataset_free(&tr);
    rc = dataset_load_fashion_mnist(&tr, &te, "fm-plain", err);
    CHECK_ERR(rc, err, "fm-plain/t10k-images-idx3-ubyte.gz");
    CHECK(tr.images == NULL, "train freed when test fails");
}

/* ---- CIFAR-10 ----------------------------------------------------------- */

static uint8_t cifar_byte(int rec, int j)
{
    return (uint8_t)((rec * 3072 + j) * 13 + 5);
}

static void write_cifar(const char *path, int first, int nrec,
                        const uint8_t *labels, size_t extra)
{
    size_t len = (size_t)nrec * 3073 + extra;
    uint8_t *buf = calloc(len, 1);
    for (int r = 0; r < nrec; r++) {
        buf[(size_t)r * 3073] = labels[r];
        for (int j = 0; j < 3072; j++)
            buf[(size_t)r * 3073 + 1 + j] = cifar_byte(first + r, j);
    }
    write_bytes(path, buf, len, 0);
    free(buf);
}

static void test_cifar(void)
{
    char err[ABC_ERRLEN];
    struct dataset d;
    uint8_t labels[5] = {3, 0, 9, 7, 1};
    write_cifar("cifar-a.bin", 0, 3, labels, 0);
    write_cifar("cifar-b.bin", 3, 2, labels + 3, 0);
    const char *one[] = {"cifar-a.bin"};
    int rc = dataset_load_cifar10_files(&d, one, 1, err);
    CHECK(rc == 0, "%s", err);
    if (!rc) {
        CHECK(d.n == 3 && d.c == 3 && d.h == 32 && d.w == 32 &&
                  d.num_classes == 10,
              "shape %dx%dx%dx%d", d.n, d.c, d.h, d.w);
        int bad = 0;
        for (int r = 0; r < 3; r++)
            for (int j = 0; j < 3072; j++)
                bad += d.images[r * 3072 + j] != cifar_byte(r, j);
        CHECK(bad == 0, "%d image bytes differ", bad);
        CHECK(!memcmp(d.labels, labels, 3), "labels");
        dataset_free(&d);
    }
    const char *two[] = {"cifar-a.bin", "cifar-b.bin"};
    rc = dataset_load_cifar10_files(&d, two, 2, err);
    CHECK(rc == 0 && d.n == 5, "two files: rc %d n %d %s", rc, d.n, err);
    if (!rc) {
        CHECK(d.images[4 * 3072 + 100] == cifar_byte(4, 100) &&
                  !memcmp(d.labels, labels, 5),
              "second file appended");
        dataset_free(&d);
    }

    write_cifar("cifar-long.bin", 0, 3, labels, 5);
    const char *lng[] = {"cifar-long.bin"};
    rc = dataset_load_cifar10_files(&d, lng, 1, err);
    CHECK_ERR(rc, err,
              "cifar-long.bin: 9224 bytes is not a positive multiple "
              "of 3073");
    uint8_t badl[3] = {3, 10, 0};
    write_cifar("cifar-label.bin", 0, 3, badl, 0);
    const char *bl[] = {"cifar-label.bin"};
    rc = dataset_load_cifar10_files(&d, bl, 1, err);
    CHECK_ERR(rc, err, "cifar-label.bin: byte offset 3073: label 10");
    const char *missing[] = {"cifar-a.bin", "no-such.bin"};
    rc = dataset_load_cifar10_files(&d, missing, 2, err);
    CHECK_ERR(rc, err, "no-such.bin: cannot open");
    CHECK(d.images == NULL, "output cleared");

    rc = dataset_load_cifar10(&d, NULL, "no-such-cifar", err);
    CHECK_ERR(rc, err, "no-such-cifar/data_batch_1.bin");
    rc = dataset_load_cifar10(&d, NULL, "", err);
    CHECK_ERR(rc, err, "data.dir");

    /* The cifar-10-batches-bin layout, one record per batch. */
    mkdir("cifar-dir", 0755);
    const char *names[] = {"data_batch_1.bin", "data_batch_2.bin",
                           "data_batch_3.bin", "data_batch_4.bin",
                           "data_batch_5.bin", "test_batch.bin"};
    for (int i = 0; i < 6; i++) {
        char p[256];
        snprintf(p, sizeof p, "cifar-dir/%s", names[i]);
        uint8_t l = (uint8_t)i;
        write_cifar(p, i, 1, &l, 0);
    }
    struct dataset tr, te;
    rc = dataset_load_cifar10(&tr, &te, "cifar-dir", err);
    CHECK(rc == 0 && tr.n == 5 && te.n == 1 && tr.labels[4] == 4 &&
              te.labels[0] == 5 && te.images[7] == cifar_byte(5, 7),
          "cifar dir: rc %d %s", rc, err);
    if (!rc) {
        dataset_free(&tr);
        dataset_free(&te);
    }
}

/* ---- split and head ----------------------------------------------------- */

/* n images of 1x1x2 whose bytes spell their index; label = index % 10. */
static void make_indexed(struct dataset *d, int n)
{
    d->n = n;
    d->c = 1;
    d->h = 1;
    d->w = 2;
    d->num_classes = 10;
    d->images = malloc((size_t)n * 2);
    d->labels = malloc((size_t)n);
    for (int i = 0; i < n; i++) {
        d->images[2 * i] = (uint8_t)(i & 255);
        d->images[2 * i + 1] = (uint8_t)(i >> 8);
        d->labels[i] = (uint8_t)(i % 10);
    }
}

static int index_of(const struct dataset *d, int i)
{
    return d->images[2 * i] | d->images[2 * i + 1] << 8;
}

static void test_split(void)
{
    char err[ABC_ERRLEN];
    struct dataset full, tr, va, tr2, va2, tr3, va3;
    make_indexed(&full, 1000);
    int rc = dataset_split(&full, 100, 7, &tr, &va, err);
    CHECK(rc == 0 && tr.n == 900 && va.n == 100, "rc %d %s", rc, err);
    if (rc) return;
    int *seen = calloc(1000, sizeof *seen);
    int labels_ok = 1;
    for (int i = 0; i < va.n; i++) {
        seen[index_of(&va, i)] += 1;
        labels_ok &= va.labels[i] == index_of(&va, i) % 10;
    }
    for (int i = 0; i < tr.n; i++) {
        seen[index_of(&tr, i)] += 1;
        labels_ok &= tr.labels[i] == index_of(&tr, i) % 10;
    }
    int once = 0;
    for (int i = 0; i < 1000; i++)
        once += seen[i] == 1;
    CHECK(once == 1000, "disjoint and complete: %d of 1000 seen exactly once",
          once);
    CHECK(labels_ok, "labels follow their images");
    int in_order = 1;
    for (int i = 1; i < va.n; i++)
        in_order &= index_of(&va, i) > index_of(&va, i - 1);
    CHECK(!in_order, "validation images are a shuffled choice");

    rc = dataset_split(&full, 100, 7, &tr2, &va2, err);
    CHECK(rc == 0 && !memcmp(va.images, va2.images, 200) &&
              !memcmp(tr.images, tr2.images, 1800),
          "same seed, same split");
    rc = dataset_split(&full, 100, 8, &tr3, &va3, err);
    CHECK(rc == 0 && memcmp(va.images, va3.images, 200),
          "another seed, another split");

    struct dataset h;
    rc = dataset_head(&tr, 10, &h, err);
    CHECK(rc == 0 && h.n == 10 && !memcmp(h.images, tr.images, 20) &&
              !memcmp(h.labels, tr.labels, 10),
          "head: rc %d %s", rc, err);
    dataset_free(&h);
    rc = dataset_head(&tr, 901, &h, err);
    CHECK_ERR(rc, err, "901");

    struct dataset t0, v0;
    rc = dataset_split(&full, 0, 7, &t0, &v0, err);
    CHECK(rc == 0 && t0.n == 1000 && v0.n == 0, "val_size 0: %s", err);
    dataset_free(&t0);
    dataset_free(&v0);
    rc = dataset_split(&full, 1000, 7, &t0, &v0, err);
    CHECK_ERR(rc, err, "validation split of 1000 images");

    free(seen);
    dataset_free(&full);
    dataset_free(&tr);
    dataset_free(&va);
    dataset_free(&tr2);
    dataset_free(&va2);
    dataset_free(&tr3);
    dataset_free(&va3);
}

/* ---- loader ------------------------------------------------------------- */

static void make_random(struct dataset *d, int n, int c, int h, int w,
                        uint64_t seed)
{
    struct rng r;
    rng_seed(&r, seed);
    size_t len = (size_t)n * c * h * w;
    d->n = n;
    d->c = c;
    d->h = h;
    d->w = w;
    d->num_classes = 10;
    d->images = malloc(len);
    d->labels = malloc((size_t)n);
    for (size_t i = 0; i < len; i++)
        d->images[i] = (uint8_t)rng_below(&r, 256);
    for (int i = 0; i < n; i++)
        d->labels[i] = (uint8_t)(i % 10);
}

/* Runs a whole epoch into x (n*c*h*w floats) and labels (n). */
static void run_epoch(struct loader *l, int epoch, float *x, int *labels)
{
    const struct dataset *d = l->d;
    size_t img = (size_t)d->c * d->h * d->w;
    loader_start(l, epoch);
    int got, done = 0;
    while ((got = loader_next(l, x + (size_t)done * img, labels + done)) > 0)
        done += got;
    CHECK(done == d->n, "epoch delivered %d of %d", done, d->n);
}

static const struct augment aug_none = {.crop_pad = 0,
                                        .flip = 0,
                                        .mean = {0.25f, 0.5f, 0.1f},
                                        .std = {0.3f, 0.2f, 0.7f}};

static void test_loader_determinism(void)
{
    char err[ABC_ERRLEN];
    struct dataset d;
    make_random(&d, 50, 1, 6, 6, 11);
    struct augment aug = aug_none;
    aug.crop_pad = 2;
    aug.flip = 1;
    struct loader a, b;
    int rc = loader_init(&a, &d, 16, 1, 1, &aug, 42, err);
    CHECK(rc == 0, "%s", err);
    rc = loader_init(&b, &d, 16, 1, 1, &aug, 42, err);
    CHECK(rc == 0, "%s", err);
    size_t len = 50 * 36;
    float *x1 = malloc(len * sizeof *x1), *x2 = malloc(len * sizeof *x2);
    int l1[50], l2[50];
    run_epoch(&a, 3, x1, l1);
    run_epoch(&a, 5, x2, l2); /* something else in between */
    run_epoch(&b, 3, x2, l2);
    CHECK(!memcmp(x1, x2, len * sizeof *x1) && !memcmp(l1, l2, sizeof l1),
          "same (seed, epoch) gives the same batches");
    run_epoch(&a, 3, x2, l2);
    CHECK(!memcmp(x1, x2, len * sizeof *x1), "restarting an epoch repeats it");
    run_epoch(&a, 4, x2, l2);
    CHECK(memcmp(l1, l2, sizeof l1) != 0, "another epoch, another order");
    CHECK(memcmp(x1, x2, len * sizeof *x1) != 0, "another epoch, other data");
    /* Every image once per epoch: labels i%10, so each label 5 times. */
    int counts[10] = {0};
    for (int i = 0; i < 50; i++)
        counts[l2[i]]++;
    int five = 0;
    for (int k = 0; k < 10; k++)
        five += counts[k] == 5;
    CHECK(five == 10, "an epoch is a permutation of the dataset");
    loader_free(&b);
    rc = loader_init(&b, &d, 16, 1, 1, &aug, 43, err);
    run_epoch(&b, 3, x2, l2);
    CHECK(memcmp(l1, l2, sizeof l1) != 0, "another seed, another order");
    loader_free(&a);
    loader_free(&b);
    free(x1);
    free(x2);
    dataset_free(&d);
}

static void test_loader_normalise(void)
{
    char err[ABC_ERRLEN];
    struct dataset d;
    make_random(&d, 10, 3, 3, 4, 5);
    size_t img = 3 * 3 * 4, len = 10 * img;
    float *x = malloc(len * sizeof *x), *want = malloc(len * sizeof *want);
    for (size_t i = 0; i < len; i++) {
        int ch = (int)(i % img / 12);
        want[i] = ((float)d.images[i] / 255.0f - aug_none.mean[ch]) /
                  aug_none.std[ch];
    }
    int labels[10];
    /* An evaluation loader, and a training loader with crop/flip off, and a
     * non-augmenting loader whose augment asks for crop and flip. */
    struct augment ignored = aug_none;
    ignored.crop_pad = 3;
    ignored.flip = 1;
    struct {
        int train_aug;
        const struct augment *aug;
    } cases[] = {{0, &aug_none}, {1, &aug_none}, {0, &ignored}};
    for (int k = 0; k < 3; k++) {
        struct loader l;
        int rc =
            loader_init(&l, &d, 4, 0, cases[k].train_aug, cases[k].aug, 1, err);
        CHECK(rc == 0, "%s", err);
        run_epoch(&l, 0, x, labels);
        char what[64];
        snprintf(what, sizeof what, "normalised values, case %d", k);
        CHECK_CLOSE(what, x, want, len, 0, 0);
        int ordered = 1;
        for (int i = 0; i < 10; i++)
            ordered &= labels[i] == i % 10;
        CHECK(ordered, "case %d: no shuffle keeps the order", k);
        loader_free(&l);
    }
    free(x);
    free(want);
    dataset_free(&d);
}

/* The value of image `in` (h x w, one channel) shifted by (dy, dx), then
 * flipped if flip, at (y, x); pad outside. */
static float shifted(const uint8_t *in, int h, int w, int dy, int dx, int flip,
                     int y, int x, float mean, float std)
{
    int sy = y + dy, sx = (flip ? w - 1 - x : x) + dx;
    int v = (sy >= 0 && sy < h && sx >= 0 && sx < w) ? in[sy * w + sx] : 0;
    return ((float)v / 255.0f - mean) / std;
}

/* Which (dy, dx, flip) with |dy|,|dx| <= p explain out exactly; -1 if none.
 * Encoded as ((dy+p)*(2p+1) + dx+p)*2 + flip. */
static int find_shift(const float *out, const uint8_t *in, int h, int w, int p,
                      float mean, float std)
{
    for (int dy = -p; dy <= p; dy++)
        for (int dx = -p; dx <= p; dx++)
            for (int f = 0; f < 2; f++) {
                int ok = 1;
                for (int y = 0; y < h && ok; y++)
                    for (int x = 0; x < w && ok; x++)
                        ok = out[y * w + x] ==
                             shifted(in, h, w, dy, dx, f, y, x, mean, std);
                if (ok) return ((dy + p) * (2 * p + 1) + dx + p) * 2 + f;
            }
    return -1;
}

static void test_loader_crop_flip(void)
{
    char err[ABC_ERRLEN];
    enum { H = 8, W = 8, P = 3, EPOCHS = 1000 };
    struct dataset d = {.n = 1, .c = 1, .h = H, .w = W, .num_classes = 10};
    uint8_t img[H * W], label = 4;
    for (int i = 0; i < H * W; i++)
        img[i] = (uint8_t)(1 + 3 * i); /* unique */
    d.images = img;
    d.labels = &label;
    float out[H * W];
    int lab;
    const float mean = aug_none.mean[0], std = aug_none.std[0];

    /* Known shift by hand: (dy, dx) = (1, -2) reads in[y+1][x-2]. */
    CHECK(shifted(img, H, W, 1, -2, 0, 0, 2, mean, std) ==
                  ((float)img[1 * W + 0] / 255.0f - mean) / std &&
              shifted(img, H, W, 1, -2, 0, 0, 1, mean, std) ==
                  (0.0f - mean) / std &&
              shifted(img, H, W, 0, 0, 1, 2, 0, mean, std) ==
                  ((float)img[2 * W + W - 1] / 255.0f - mean) / std,
          "the test's own shift/flip reference");

    const char *names[] = {"crop only", "flip only", "crop and flip"};
    for (int mode = 0; mode < 3; mode++) {
        struct augment aug = aug_none;
        aug.crop_pad = mode == 1 ? 0 : P;
        aug.flip = mode != 0;
        struct loader l;
        int rc = loader_init(&l, &d, 8, 1, 1, &aug, 9, err);
        CHECK(rc == 0, "%s", err);
        int seen[(2 * P + 1) * (2 * P + 1) * 2] = {0};
        int unexplained = 0, flips = 0, padded = 0;
        for (int e = 0; e < EPOCHS; e++) {
            loader_start(&l, e);
            int got = loader_next(&l, out, &lab);
            if (got != 1 || lab != 4) {
                unexplained++;
                continue;
            }
            int s = find_shift(out, img, H, W, P, mean, std);
            if (s < 0) {
                unexplained++;
                continue;
            }
            seen[s]++;
            flips += s & 1;
            for (int i = 0; i < H * W; i++)
                padded += out[i] == (0 - mean) / std;
        }
        CHECK(unexplained == 0, "%s: %d outputs are no shifted copy",
              names[mode], unexplained);
        int shifts = 0, nonzero = 0;
        for (int s = 0; s < (2 * P + 1) * (2 * P + 1); s++) {
            shifts += seen[2 * s] + seen[2 * s + 1] > 0;
            if (s != P * (2 * P + 1) + P)
                nonzero += seen[2 * s] + seen[2 * s + 1];
        }
        if (mode == 1) {
            CHECK(shifts == 1 && nonzero == 0 && padded == 0,
                  "flip only: never shifted (%d shifts, %d padded)", shifts,
                  padded);
        } else {
            CHECK(shifts == (2 * P + 1) * (2 * P + 1),
                  "%s: %d of 49 offsets seen in %d epochs", names[mode], shifts,
                  EPOCHS);
            CHECK(padded > 0, "%s: padding appears", names[mode]);
        }
        if (mode == 0)
            CHECK(flips == 0, "crop only: %d flips", flips);
        else
            CHECK(flips > EPOCHS * 2 / 5 && flips < EPOCHS * 3 / 5,
                  "%s: %d flips in %d", names[mode], flips, EPOCHS);
        loader_free(&l);
    }
}

static void test_loader_batches(void)
{
    char err[ABC_ERRLEN];
    struct dataset d;
    make_random(&d, 10, 1, 2, 2, 3);
    struct loader l;
    int rc = loader_init(&l, &d, 4, 1, 0, &aug_none, 1, err);
    CHECK(rc == 0, "%s", err);
    float x[16];
    int labels[4];
    int n1 = loader_next(&l, x, labels), n2 = loader_next(&l, x, labels),
        n3 = loader_next(&l, x, labels), n4 = loader_next(&l, x, labels);
    CHECK(n1 == 4 && n2 == 4 && n3 == 2 && n4 == 0,
          "batches of 10 by 4: %d %d %d %d", n1, n2, n3, n4);
    loader_start(&l, 1);
    CHECK(loader_next(&l, x, labels) == 4, "a new epoch starts over");
    loader_free(&l);

    struct augment bad = aug_none;
    bad.std[0] = 0;
    rc = loader_init(&l, &d, 4, 1, 0, &bad, 1, err);
    CHECK_ERR(rc, err, "std > 0");
    rc = loader_init(&l, &d, 0, 1, 0, &aug_none, 1, err);
    CHECK_ERR(rc, err, "batch size 0");
    dataset_free(&d);
}

int main(void)
{
    test_fashion_mnist();
    test_idx_round_trip();
    test_idx_errors();
    test_fashion_dir();
    test_cifar();
    test_split();
    test_loader_determinism();
    test_loader_normalise();
    test_loader_crop_flip();
    test_loader_batches();
    return check_finish("test_data");
}

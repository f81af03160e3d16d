/* gen_corpus.c - writes the seed corpora of the fuzz targets into
 * tests/fuzz/corpus/<target>/ with the product's own writers: small valid
 * files ("ok-*": a pruned smallnet checkpoint with and without optimizer
 * state, sync and async colonies, one message of each type, IDX files plain
 * and gzip'd, CIFAR records, configs with --set overrides) and a few broken
 * ones ("bad-*"). Built by tests/fuzz/fuzz.cmake (fuzz_gen_corpus); run from
 * anywhere as: fuzz_gen_corpus SOURCE_DIR. Deterministic: rerunning writes
 * the same bytes. test_fuzz_regress checks that every ok-* file is
 * accepted and every bad-* file refused. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <msgpack.h>
#include <zlib.h>

#include "colony.h"
#include "core/err.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "messages.h"
#include "nn/model.h"

static const char *g_root;

static void die(const char *what, const char *err)
{
    fprintf(stderr, "gen_corpus: %s: %s\n", what, err);
    exit(1);
}

static void put(const char *target, const char *name, const void *buf, size_t n)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/tests/fuzz/corpus/%s", g_root, target);
    mkdir(p, 0775);
    snprintf(p, sizeof p, "%s/tests/fuzz/corpus/%s/%s", g_root, target, name);
    FILE *f = fopen(p, "wb");
    if (!f || (n && fwrite(buf, 1, n, f) != n) || fclose(f) != 0)
        die("cannot write", p);
}

static void put_file(const char *target, const char *name, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot read", path);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    put(target, name, buf, n);
}

static void gen_checkpoint(void)
{
    char err[ABC_ERRLEN];
    int ch[3] = {2, 2, 3};
    struct model *m;
    if (model_create(&m, ARCH_SMALLNET, ch, 1, 8, 8, 10, err))
        die("model", err);
    model_init_weights(m, 7);
    char *buf;
    size_t len;
    if (checkpoint_pack(m, NULL, &buf, &len, err)) die("pack", err);
    put("checkpoint", "ok-smallnet", buf, len);
    /* broken: cut in half, one flipped data byte (caught by the CRC) */
    put("checkpoint", "bad-truncated", buf, len / 2);
    buf[len - 40] ^= 0x10;
    put("checkpoint", "bad-flipped", buf, len);
    free(buf);
    struct train_state st = {.epoch = 2, .step = 17, .best_val_acc = 0.5};
    st.velocity = calloc(m->nparams, sizeof(float));
    for (size_t i = 0; i < m->nparams; i++)
        st.velocity[i] = (float)i * 1e-3f;
    if (checkpoint_pack(m, &st, &buf, &len, err)) die("pack", err);
    put("checkpoint", "ok-smallnet-velocity", buf, len);
    free(buf);
    free(st.velocity);
    model_destroy(m);
}

static double fit(const int *code, int n)
{
    double s = 0;
    for (int j = 0; j < n; j++)
        s += code[j];
    return s / (10.0 * n);
}

static void put_colony(const struct colony *c, const char *name)
{
    char err[ABC_ERRLEN];
    const char *tmp = "gen_corpus_colony.tmp";
    if (colony_save(c, tmp, err)) die("colony_save", err);
    put_file("colony", name, tmp);
    remove(tmp);
}

static void gen_colony(void)
{
    char err[ABC_ERRLEN];
    struct colony_params p = {.nlayers = 3,
                              .K = 7,
                              .sn = 3,
                              .limit = 2,
                              .change_dims = 2,
                              .max_cycles = 2,
                              .seed = 5,
                              .redraw_same = 1};
    struct colony *c;
    if (colony_create(&c, &p, err)) die("colony", err);
    put_colony(c, "ok-init");
    const struct candidate *b;
    int n;
    double f[16];
    for (int step = 0; step < 3; step++) {
        if (colony_next_batch(c, &b, &n, err)) die("batch", err);
        for (int i = 0; i < n; i++)
            f[i] = fit(b[i].code, p.nlayers);
        if (step == 2) {
            colony_record(c, 0, f[0], err);
            put_colony(c, "ok-batch");
        }
        if (colony_apply(c, f, err)) die("apply", err);
    }
    put_colony(c, "ok-sync");
    {
        /* broken: cut inside, and one flipped byte (caught by the CRC) */
        const char *tmp = "gen_corpus_colony.tmp";
        if (colony_save(c, tmp, err)) die("colony_save", err);
        static char buf[4096];
        FILE *f = fopen(tmp, "rb");
        size_t len = f ? fread(buf, 1, sizeof buf, f) : 0;
        if (f) fclose(f);
        remove(tmp);
        put("colony", "bad-truncated", buf, len * 2 / 3);
        buf[len / 2] ^= 0x04;
        put("colony", "bad-flipped", buf, len);
    }
    /* async: switch and put two in flight */
    if (colony_async_begin(c, err)) die("async_begin", err);
    const struct candidate *cd;
    uint64_t ids[2];
    for (int i = 0; i < 2; i++) {
        if (colony_async_next(c, &cd, err) != 1) die("async_next", err);
        ids[i] = cd->eval_id;
    }
    colony_async_apply(c, ids[0], 0.5, err);
    put_colony(c, "ok-async");
    colony_destroy(c);
}

static void put_msg(const char *name, msgpack_sbuffer *sb)
{
    put("proto", name, sb->data, sb->size);
    msgpack_sbuffer_clear(sb);
}

static void gen_proto(void)
{
    char err[ABC_ERRLEN];
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    struct proto_eval_request rq = {.eval_id = 3,
                                    .nlayers = 3,
                                    .structure = {4, 8, 16},
                                    .seed = 99,
                                    .budget = {.train_images = 500,
                                               .epochs = 1,
                                               .steps = 0,
                                               .batch = 32,
                                               .lr = 0.01,
                                               .momentum = 0.9,
                                               .weight_decay = 5e-4,
                                               .val_images = 100,
                                               .proxy = 0,
                                               .bn_batches = 20},
                                    .cycle = 1,
                                    .phase = PROTO_PHASE_ONLOOKER,
                                    .candidate = 2};
    if (proto_pack_eval_request(&rq, &sb, err)) die("request", err);
    put_msg("ok-eval-request", &sb);
    struct proto_eval_result rs = {.eval_id = 3,
                                   .ok = 1,
                                   .val_acc = 0.75,
                                   .val_loss = 0.6,
                                   .images_per_s = 1200,
                                   .wall_s = 2.5,
                                   .flops = 123456,
                                   .params = 789,
                                   .worker = 2};
    if (proto_pack_eval_result(&rs, &sb, err)) die("result", err);
    put_msg("ok-eval-result", &sb);
    struct proto_eval_result rf = {.eval_id = 4, .ok = 0, .worker = 1};
    snprintf(rf.error, sizeof rf.error, "out of memory");
    if (proto_pack_eval_result(&rf, &sb, err)) die("result", err);
    put_msg("ok-eval-result-error", &sb);
    struct proto_shutdown sd = {.reason = "done"};
    if (proto_pack_shutdown(&sd, &sb, err)) die("shutdown", err);
    put_msg("ok-shutdown", &sb);
    struct proto_train_phase tp = {.seed = 1,
                                   .epochs = 2,
                                   .batch = 64,
                                   .lr = 0.1,
                                   .momentum = 0.9,
                                   .weight_decay = 5e-4,
                                   .schedule = 1,
                                   .nmilestones = 1,
                                   .milestones = {1},
                                   .gamma = 0.1,
                                   .sync_bn = 1,
                                   .train_images = 1000,
                                   .val_images = 100,
                                   .data_crc = 12345};
    if (proto_pack_train_phase(&tp, &sb, err)) die("train_phase", err);
    put_msg("ok-train-phase", &sb);
    /* broken: a map with an unknown type, an array */
    static const unsigned char unk[] = {0x82, 0xa4, 't', 'y',  'p', 'e', 0xa3,
                                        'x',  'y',  'z', 0xa7, 'v', 'e', 'r',
                                        's',  'i',  'o', 'n',  0x01};
    put("proto", "bad-unknown-type", unk, sizeof unk);
    static const unsigned char arr[] = {0x92, 0x01, 0x02};
    put("proto", "bad-array", arr, sizeof arr);
    msgpack_sbuffer_destroy(&sb);
}

/* An IDX pair of n images of h x w (deterministic pixels) with labels, as
 * the fuzz_idx input: 2-byte split, images, labels; gz: gzip each. */
static void gen_idx_one(const char *name, int n, int h, int w, int gz,
                        int bad_label)
{
    unsigned char img[4096], lab[256];
    size_t il = 0, ll = 0;
    uint32_t hdr[4] = {0x803, (uint32_t)n, (uint32_t)h, (uint32_t)w};
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 4; k++)
            img[il++] = (unsigned char)(hdr[i] >> (24 - 8 * k));
    for (int i = 0; i < n * h * w; i++)
        img[il++] = (unsigned char)(i * 37);
    uint32_t lh[2] = {0x801, (uint32_t)n};
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 4; k++)
            lab[ll++] = (unsigned char)(lh[i] >> (24 - 8 * k));
    for (int i = 0; i < n; i++)
        lab[ll++] = (unsigned char)(bad_label && i == n - 1 ? 10 : i % 10);
    unsigned char out[16384];
    size_t ol = 2;
    if (gz) {
        /* gzip each part (a deterministic header: no name, time 0) */
        unsigned char *parts[2] = {img, lab};
        size_t lens[2] = {il, ll}, zl[2];
        unsigned char z[2][8192];
        for (int p = 0; p < 2; p++) {
            z_stream s;
            memset(&s, 0, sizeof s);
            if (deflateInit2(&s, 9, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY))
                die("deflateInit2", "");
            s.next_in = parts[p];
            s.avail_in = (uInt)lens[p];
            s.next_out = z[p];
            s.avail_out = sizeof z[p];
            if (deflate(&s, Z_FINISH) != Z_STREAM_END) die("deflate", "");
            zl[p] = s.total_out;
            deflateEnd(&s);
        }
        memcpy(out + ol, z[0], zl[0]);
        ol += zl[0];
        memcpy(out + ol, z[1], zl[1]);
        ol += zl[1];
        out[0] = (unsigned char)(zl[0] >> 8);
        out[1] = (unsigned char)zl[0];
    } else {
        memcpy(out + ol, img, il);
        ol += il;
        memcpy(out + ol, lab, ll);
        ol += ll;
        out[0] = (unsigned char)(il >> 8);
        out[1] = (unsigned char)il;
    }
    put("idx", name, out, ol);
}

static void gen_idx(void)
{
    gen_idx_one("ok-plain", 3, 4, 5, 0, 0);
    gen_idx_one("ok-gzip", 4, 6, 6, 1, 0);
    gen_idx_one("bad-label", 2, 3, 3, 0, 1);
    /* a header declaring 2^24 images of 4096 x 4096: refused unread */
    static const unsigned char huge[] = {0x00, 0x10, 0, 0,    8, 3, 1, 0,    0,
                                         0,    0,    0, 0x10, 0, 0, 0, 0x10, 0};
    put("idx", "bad-huge-header", huge, sizeof huge);
}

static void gen_cifar(void)
{
    static unsigned char rec[3 * 3073];
    for (int r = 0; r < 3; r++) {
        rec[r * 3073] = (unsigned char)(r * 4);
        for (int i = 1; i < 3073; i++)
            rec[r * 3073 + i] = (unsigned char)(i * 7 + r);
    }
    put("cifar", "ok-one", rec, 3073);
    put("cifar", "ok-three", rec, sizeof rec);
    put("cifar", "bad-short", rec, 3000);
    rec[3073] = 10;
    put("cifar", "bad-label", rec, 2 * 3073);
}

static void gen_config(const char *root)
{
    static const char *const files[] = {"quickstart", "resnet20", "vgg16"};
    for (int i = 0; i < 3; i++) {
        char p[1024], name[64];
        snprintf(p, sizeof p, "%s/configs/%s.yaml", root, files[i]);
        snprintf(name, sizeof name, "ok-%s", files[i]);
        put_file("config", name, p);
    }
    /* YAML, NUL, then --set assignments, each NUL-terminated */
    static const char sets[] = "seed: 3\nmodel:\n  arch: smallnet\n"
                               "\0search.sn=4\0model.channels=[4, 8, 16]\0"
                               "search.fitness.steps=5\0train.schedule=step\0";
    put("config", "ok-sets", sets, sizeof sets - 1);
    static const char bad1[] = "search:\n  sn: 1\n";
    put("config", "bad-range", bad1, sizeof bad1 - 1);
    static const char bad2[] = "seed: 1\n\0search.sn=x\0";
    put("config", "bad-set", bad2, sizeof bad2 - 1);
    static const char bad3[] = "data: [1, 2\n";
    put("config", "bad-syntax", bad3, sizeof bad3 - 1);
}

static void gen_safetensors(void)
{
    char err[ABC_ERRLEN];
    float w[6] = {1, -2, 3.5f, 0, 1e-3f, 7};
    int64_t ix[2] = {4, -1};
    struct st_out t[2] = {{.name = "conv.weight",
                           .dtype = ST_F32,
                           .ndim = 2,
                           .shape = {2, 3},
                           .data = w},
                          {.name = "bn.num_batches_tracked",
                           .dtype = ST_I64,
                           .ndim = 1,
                           .shape = {2},
                           .data = ix}};
    const char *keys[1] = {"format"}, *vals[1] = {"pt"};
    unsigned char *buf;
    size_t len;
    if (st_pack(t, 2, keys, vals, 1, &buf, &len, err)) die("st_pack", err);
    put("safetensors", "ok-two", buf, len);
    put("safetensors", "bad-truncated", buf, len - 3);
    free(buf);
    if (st_pack(t, 1, NULL, NULL, 0, &buf, &len, err)) die("st_pack", err);
    put("safetensors", "ok-one", buf, len);
    buf[0] = 0xff; /* a header length beyond the file */
    put("safetensors", "bad-header-length", buf, len);
    free(buf);
}

static void gen_searchlog(void)
{
    static const char ok[] =
        "{\"event\":\"eval\",\"cycle\":0,\"phase\":\"init\",\"candidate\":0,"
        "\"eval_id\":0,\"source\":0,\"seed\":7,\"structure\":[1,6,38],"
        "\"code\":[1,2,6],\"fitness\":0.075,\"val_acc\":0.075,"
        "\"val_loss\":2.89,\"flops\":118568,\"params\":2595,\"worker\":1,"
        "\"seconds\":0.018,\"images_per_s\":12058.1}\n";
    put("searchlog", "ok-one-eval", ok, sizeof ok - 1);
    static const char bad[] = "{\"event\":\"eval\",\"cycle\":\n";
    put("searchlog", "bad-cut", bad, sizeof bad - 1);
    static const char bad2[] = "[1, 2]\n";
    put("searchlog", "bad-array", bad2, sizeof bad2 - 1);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_gen_corpus SOURCE_DIR\n");
        return 2;
    }
    g_root = argv[1];
    gen_checkpoint();
    gen_colony();
    gen_proto();
    gen_idx();
    gen_cifar();
    gen_config(argv[1]);
    gen_safetensors();
    gen_searchlog();
    return 0;
}

/* test_colony_file.c - the colony checkpoint (coordinator/colony_file.c):
 * a saved colony loads back equal and continues exactly; the bytes are the
 * same for the same state; every field is validated (type, range, codes in
 * 1..K, lengths, counters against phase and cycle, best against sources,
 * the saved batch against the one the state makes), each refusal naming
 * the file and the field; single-byte corruptions never crash. Writes its
 * files in the working directory. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <msgpack.h>

#include "check.h"
#include "colony.h"
#include "colony_test_util.h"
#include "core/err.h"
#include "core/rng.h"

/* A colony in the onlooker phase of cycle 1 with its batch made and the
 * results of candidates 0 and 3 recorded, saved to path and checked to load
 * back equal. */
static struct colony *saved_colony(const struct colony_params *p,
                                   const char *path)
{
    char err[ABC_ERRLEN];
    struct colony *c;
    colony_create(&c, p, err);
    const struct candidate *b;
    int n;
    double *f = malloc(sizeof(double) * (size_t)p->sn);
    for (int step = 0; step < 5; step++) {
        colony_next_batch(c, &b, &n, err);
        for (int i = 0; i < n; i++)
            f[i] = test_fitness(p, b[i].code, b[i].seed);
        colony_apply(c, f, err);
    }
    free(f);
    colony_next_batch(c, &b, &n, err);
    colony_record(c, 0, 0.25, err);
    colony_record(c, n > 3 ? 3 : 1, 0.5, err);
    CHECK(c->phase == COLONY_ONLOOKER && c->cycle == 1, "setup phase %s",
          colony_phase_name(c->phase));
    CHECK(colony_save(c, path, err) == 0, "save: %s", err);
    struct colony *l;
    CHECK(colony_load(path, &l, err) == 0, "load good: %s", err);
    if (l) {
        int r = n > 3 ? 3 : 1;
        CHECK(same_colony(c, l) && l->batch_ready && l->nbatch == n &&
                  l->have[0] && l->have[r] && !l->have[2] &&
                  l->results[0] == 0.25 && l->results[r] == 0.5,
              "loaded colony differs from the saved one");
        colony_destroy(l);
    }
    return c;
}

/* Every truncation, random files and random byte corruption of a small
 * colony file: all rejected with the path named, or (a flipped fitness
 * bit) loaded as a consistent colony. Never a crash. */
static void test_checkpoint_bytes(void)
{
    char err[ABC_ERRLEN];
    const char *good = "colony_small.msgpack", *bad = "colony_bad.msgpack";
    struct colony_params p = ref_params(9);
    p.nlayers = 3, p.sn = 3;
    struct colony *c = saved_colony(&p, good);
    unsigned char *buf = NULL;
    size_t len = 0;
    read_all(good, &buf, &len);
    printf("small colony checkpoint: %zu bytes (sn 3, 3 layers, with "
           "batch)\n",
           len);

    /* every truncation */
    int trunc_ok = 0;
    for (size_t k = 0; k < len; k++) {
        write_all(bad, buf, k);
        struct colony *t = (struct colony *)1;
        err[0] = '\0';
        int rc = colony_load(bad, &t, err);
        if (rc < 0 && t == NULL && strstr(err, bad))
            trunc_ok++;
        else if (rc == 0)
            colony_destroy(t);
    }
    CHECK(trunc_ok == (int)len, "%d of %zu truncations rejected", trunc_ok,
          len);
    expect_load_fails(bad, NULL, "last truncation");

    /* trailing garbage, random bytes, random corruption: never a crash */
    unsigned char *ext = malloc(len + 1);
    memcpy(ext, buf, len);
    ext[len] = 0xc0;
    write_all(bad, ext, len + 1);
    expect_load_fails(bad, "trailing garbage", "trailing byte");
    struct rng r;
    rng_seed(&r, 2024);
    unsigned char junk[512];
    int junk_ok = 0;
    for (int t = 0; t < 150; t++) {
        size_t jl = 1 + rng_below(&r, sizeof junk);
        for (size_t i = 0; i < jl; i++)
            junk[i] = (unsigned char)rng_u64(&r);
        if (t % 3 == 0) junk[0] = 0x8a; /* a map, so parsing goes deeper */
        write_all(bad, junk, jl);
        struct colony *x = (struct colony *)1;
        if (colony_load(bad, &x, err) < 0 && x == NULL)
            junk_ok++;
        else
            colony_destroy(x);
    }
    CHECK(junk_ok == 150, "%d of 150 random files rejected", junk_ok);
    int flips_loaded = 0;
    for (int t = 0; t < 400; t++) {
        memcpy(ext, buf, len);
        size_t at = rng_below(&r, len);
        ext[at] ^= (unsigned char)(1 + rng_below(&r, 255));
        write_all(bad, ext, len);
        struct colony *x = NULL;
        if (colony_load(bad, &x, err) == 0) {
            /* a flip may land in a fitness or a recorded result: what
             * loads must be a consistent colony that saves again */
            flips_loaded++;
            CHECK(colony_save(x, "colony_resaved.msgpack", err) == 0,
                  "resave: %s", err);
            colony_destroy(x);
        } else {
            CHECK(x == NULL && strstr(err, bad), "flip at %zu: %s", at, err);
        }
    }
    printf("400 single-byte corruptions: %d loaded (fitness bits), the rest "
           "rejected\n",
           flips_loaded);
    free(ext);

    free(buf);
    colony_destroy(c);
    remove(good);
    remove("colony_resaved.msgpack");
}

/* Field by field: each mutation of a good file is rejected with a message
 * naming the file and the field; a failed save leaves the old file. */
static void test_checkpoint_fields(void)
{
    char err[ABC_ERRLEN];
    const char *good = "colony_good.msgpack", *bad = "colony_bad.msgpack";
    struct colony_params p = ref_params(9);
    struct colony *c = saved_colony(&p, good);
    unsigned char *buf = NULL;
    size_t len = 0;
    read_all(good, &buf, &len);
    printf("colony checkpoint: %zu bytes (sn 10, 13 layers, with batch)\n",
           len);

    /* field by field */
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    msgpack_object obj;
    size_t off = 0;
    CHECK(msgpack_unpack((const char *)buf, len, &off, &zone, &obj) ==
              MSGPACK_UNPACK_SUCCESS,
          "unpack the good file");
    int bc = c->batch[0].code[0] % p.K + 1;
    int64_t bid = (int64_t)c->batch[1].eval_id + 1;
    struct mut muts[] = {
        {"format", M_STR, 0, 0, "abcprune-checkpoint", "format"},
        {"format", M_INT, 3, 0, NULL, "format is a int"},
        {"format", M_DELETE, 0, 0, NULL, "no \"format\""},
        {"version", M_INT, 2, 0, NULL, "version 2"},
        {"version", M_STR, 0, 0, "1", "version"},
        {"version", M_DELETE, 0, 0, NULL, "missing \"version\""},
        {"", M_ADD, 0, 0, NULL, "unknown key \"extra\""},
        {"params", M_ADD, 0, 0, NULL, "params: unknown key"},
        {"best", M_DELETE, 0, 0, NULL, "missing \"best\""},
        {"params.k", M_INT, 11, 0, NULL, "params.k"},
        {"params.k", M_INT, 3, 0, NULL, "code"},
        {"params.nlayers", M_INT, 12, 0, NULL, "foods[0].code: 13 entries"},
        {"params.nlayers", M_INT, 0, 0, NULL, "params.nlayers"},
        {"params.sn", M_INT, 1, 0, NULL, "params.sn"},
        {"params.sn", M_INT, 11, 0, NULL, "evaluations"},
        {"params.change_dims", M_INT, 14, 0, NULL, "params.change_dims"},
        {"params.limit", M_INT, -1, 0, NULL, "params.limit"},
        {"params.max_cycles", M_INT, 1, 0, NULL, "cycle"},
        {"params.seed", M_INT, 10, 0, NULL, "batch[0]"},
        {"params.seed", M_INT, -1, 0, NULL, "params.seed"},
        {"params.redraw_same", M_INT, 1, 0, NULL, "params.redraw_same"},
        {"phase", M_STR, 0, 0, "bogus", "phase"},
        {"phase", M_STR, 0, 0, "done", "cycle"},
        {"phase", M_STR, 0, 0, "scout", "evaluations"},
        {"phase", M_STR, 0, 0, "init", "cycle"},
        {"phase", M_INT, 2, 0, NULL, "phase"},
        {"cycle", M_INT, -1, 0, NULL, "cycle"},
        {"cycle", M_INT, 10, 0, NULL, "cycle"},
        {"evaluations", M_INT, 5, 0, NULL, "evaluations"},
        {"next_eval_id", M_INT, 3, 0, NULL, "next_eval_id"},
        {"next_eval_id", M_INT, 1000, 0, NULL, "batch[0]"},
        {"foods", M_NIL, 0, 0, NULL, "foods"},
        {"foods[0]", M_INT, 1, 0, NULL, "foods[0]"},
        {"foods[0].code[1]", M_INT, 0, 0, NULL, "foods[0].code[1]"},
        {"foods[0].code[1]", M_INT, 10, 0, NULL, "foods[0].code[1]"},
        {"foods[0].code[12]", M_STR, 0, 0, "5", "foods[0].code[12]"},
        {"foods[2].fitness", M_DOUBLE, 0, NAN, NULL, "foods[2].fitness"},
        {"foods[2].fitness", M_INT, 1, 0, NULL, "foods[2].fitness"},
        {"foods[2].fitness", M_DOUBLE, 0, 5.0, NULL, "best.fitness"},
        {"foods[3].trial", M_INT, -1, 0, NULL, "foods[3].trial"},
        {"foods[1].trial", M_DELETE, 0, 0, NULL, "foods[1]: missing \"trial\""},
        {"best", M_NIL, 0, 0, NULL, "best"},
        {"best.fitness", M_DOUBLE, 0, -5.0, NULL, "best.fitness"},
        {"best.fitness", M_DOUBLE, 0, INFINITY, NULL, "best.fitness"},
        {"best.eval_id", M_INT, 1000000, 0, NULL, "best.eval_id"},
        {"best.code[0]", M_INT, 0, 0, NULL, "best.code[0]"},
        {"batch", M_INT, 3, 0, NULL, "batch"},
        {"batch[0].code[0]", M_INT, bc, 0, NULL, "batch[0].code"},
        {"batch[1].eval_id", M_INT, bid, 0, NULL, "batch[1].eval_id"},
        {"batch[2].source", M_INT, 10, 0, NULL, "batch[2].source"},
        {"batch[0].fitness", M_DOUBLE, 0, INFINITY, NULL, "batch[0].fitness"},
        {"batch[0].fitness", M_STR, 0, 0, "x", "batch[0].fitness"},
    };
    int nm = (int)(sizeof muts / sizeof muts[0]);
    for (int i = 0; i < nm; i++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        repack(&pk, &obj, "", &muts[i]);
        write_all(bad, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
        char what[128];
        snprintf(what, sizeof what, "mutation %d (%s)", i,
                 *muts[i].path ? muts[i].path : "top level");
        expect_load_fails(bad, muts[i].expect, what);
    }
    /* batch removed: a valid file (the batch is made again on demand) */
    {
        struct mut m = {"batch", M_NIL, 0, 0, NULL, NULL};
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        repack(&pk, &obj, "", &m);
        write_all(bad, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
        struct colony *x;
        CHECK(colony_load(bad, &x, err) == 0 && same_colony(c, x) &&
                  !x->batch_ready,
              "without its batch: %s", err);
        colony_destroy(x);
    }
    /* a msgpack array at top level, a missing file */
    {
        unsigned char arr[] = {0x92, 0x01, 0x02};
        write_all(bad, arr, sizeof arr);
        expect_load_fails(bad, "expected a map", "array at top level");
        struct colony *x = (struct colony *)1;
        CHECK(colony_load("colony_no_such_file.msgpack", &x, err) == ABC_EIO &&
                  x == NULL && strstr(err, "colony_no_such_file"),
              "missing file: %s", err);
        /* a huge declared array must not be allocated */
        unsigned char huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
        write_all(bad, huge, sizeof huge);
        expect_load_fails(bad, "declares", "4G-entry array");
    }
    msgpack_zone_destroy(&zone);

    /* a failed save leaves the old file: the temp path is taken by a
     * directory, so the temp file cannot be created */
    {
        char tmpdir[256];
        snprintf(tmpdir, sizeof tmpdir, "%s.tmp.%ld", good, (long)getpid());
        CHECK(mkdir(tmpdir, 0700) == 0, "mkdir %s", tmpdir);
        colony_record(c, 1, 0.75, err);
        CHECK(colony_save(c, good, err) == ABC_EIO && strstr(err, good),
              "save over a blocked temp path: %s", err);
        unsigned char *now = NULL;
        size_t nl = 0;
        read_all(good, &now, &nl);
        CHECK(nl == len && !memcmp(now, buf, len),
              "a failed save changed the old file");
        free(now);
        rmdir(tmpdir);
        CHECK(colony_save(c, "no_such_dir/colony.msgpack", err) == ABC_EIO &&
                  strstr(err, "no_such_dir/colony.msgpack"),
              "save into a missing directory: %s", err);
    }
    free(buf);
    colony_destroy(c);
    remove(bad);
    remove(good);
    remove("colony_resume.msgpack");
}

int main(void)
{
    test_checkpoint_bytes();
    test_checkpoint_fields();
    return check_finish("test_colony_file");
}

/* test_colony_file.c - the colony checkpoint (coordinator/colony_file.c):
 * a saved colony loads back equal and continues exactly; the bytes are the
 * same for the same state; every field is validated (type, range, codes in
 * 1..K, lengths, counters against phase and cycle, best against sources,
 * the saved batch against the one the state makes), each refusal naming
 * the file and the field; the section checksums (version 3/4) refuse
 * every single-byte flip and truncation, naming the file and the section;
 * files of versions 1/2 (no checksums) still load. Writes its files in the
 * working directory. */
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
            /* a flip in a fitness or a recorded result: the checksums
             * must catch it */
            flips_loaded++;
            CHECK(colony_save(x, "colony_resaved.msgpack", err) == 0,
                  "resave: %s", err);
            colony_destroy(x);
        } else {
            CHECK(x == NULL && strstr(err, bad), "flip at %zu: %s", at, err);
        }
    }
    CHECK(flips_loaded == 0, "%d of 400 single-byte corruptions loaded",
          flips_loaded);
    printf("400 random single-byte corruptions: %d loaded, the rest "
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
        reseal(&sb);
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
        reseal(&sb);
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

/* The byte spans of the top-level entries of the file in buf, worked out
 * by re-encoding each key and value (the writer's encoding): offsets of
 * key, value and end, and the key names. Returns the count. */
struct span {
    size_t key, val, end;
    char name[32];
};
static int spans_of(const unsigned char *buf, size_t len, struct span *sp,
                    int max)
{
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    msgpack_object o;
    size_t off = 0;
    int n = 0;
    if (msgpack_unpack((const char *)buf, len, &off, &zone, &o) ==
            MSGPACK_UNPACK_SUCCESS &&
        o.type == MSGPACK_OBJECT_MAP) {
        size_t at = o.via.map.size < 16 ? 1 : 3;
        for (uint32_t j = 0; j < o.via.map.size && n < max; j++) {
            msgpack_sbuffer t;
            msgpack_sbuffer_init(&t);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &t, msgpack_sbuffer_write);
            msgpack_pack_object(&pk, o.via.map.ptr[j].key);
            size_t kl = t.size;
            msgpack_pack_object(&pk, o.via.map.ptr[j].val);
            sp[n].key = at;
            sp[n].val = at + kl;
            sp[n].end = at + t.size;
            snprintf(sp[n].name, sizeof sp[n].name, "%.*s",
                     (int)o.via.map.ptr[j].key.via.str.size,
                     o.via.map.ptr[j].key.via.str.ptr);
            at += t.size;
            n++;
            msgpack_sbuffer_destroy(&t);
        }
        CHECK(at == len, "re-encoded spans end at %zu, file has %zu", at, len);
    }
    msgpack_zone_destroy(&zone);
    return n;
}

/* One colony file (sync or async) against its checksums: the stored CRCs
 * equal an independent computation; every single-byte flip (3 patterns at
 * every offset) and every truncation is refused naming the file, and
 * naming the section of the byte whenever the damage leaves the msgpack
 * readable (flips) or cuts inside a value (truncations); the same file
 * without checksums as version 1/2 still loads, equal. */
static void check_sums(const char *what, const struct colony *c,
                       const char *good)
{
    char err[ABC_ERRLEN];
    const char *bad = "colony_sum_bad.msgpack";
    unsigned char *buf = NULL;
    size_t len = 0;
    read_all(good, &buf, &len);
    struct span sp[32];
    int n = spans_of(buf, len, sp, 32);

    /* the stored CRCs, recomputed independently */
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    msgpack_object o;
    size_t off = 0;
    msgpack_unpack((const char *)buf, len, &off, &zone, &o);
    const msgpack_object *crcs = NULL;
    int nsec = 0;
    for (uint32_t j = 0; j < o.via.map.size; j++) {
        if (!strcmp(sp[j].name, "crc32")) crcs = &o.via.map.ptr[j].val;
        nsec += is_section(&o.via.map.ptr[j].key);
    }
    CHECK(crcs && crcs->type == MSGPACK_OBJECT_MAP &&
              (int)crcs->via.map.size == nsec &&
              !strcmp(sp[n - 1].name, "crc32"),
          "%s: a crc32 map last, one CRC per section (%d)", what, nsec);
    int matched = 0;
    for (uint32_t i = 0; crcs && i < crcs->via.map.size; i++)
        for (uint32_t j = 0; j < o.via.map.size; j++) {
            const msgpack_object *k = &o.via.map.ptr[j].key;
            const msgpack_object_kv *ck = &crcs->via.map.ptr[i];
            if (k->via.str.size == ck->key.via.str.size &&
                !memcmp(k->via.str.ptr, ck->key.via.str.ptr, k->via.str.size))
                matched += ck->val.via.u64 == entry_crc(&o.via.map.ptr[j]);
        }
    CHECK(matched == nsec, "%s: %d of %d stored CRCs equal the recomputed ones",
          what, matched, nsec);

    /* every single-byte flip */
    unsigned char *x = malloc(len);
    static const unsigned char pats[] = {0x01, 0x20, 0xff};
    int flips = 0, refused = 0, by_section = 0, readable = 0;
    for (size_t at = 0; at < len; at++)
        for (int q = 0; q < 3; q++) {
            memcpy(x, buf, len);
            x[at] ^= pats[q];
            write_all(bad, x, len);
            struct colony *y = (struct colony *)1;
            err[0] = '\0';
            int rc = colony_load(bad, &y, err);
            flips++;
            if (rc < 0 && y == NULL && strstr(err, bad)) refused++;
            if (rc == 0) colony_destroy(y);
            /* the flip kept the msgpack readable with the same keys: the
             * error must name the section the byte is in */
            struct span fs[32];
            int fn = spans_of(x, len, fs, 32), same = fn == n;
            for (int j = 0; same && j < n; j++)
                same = !strcmp(fs[j].name, sp[j].name);
            if (!same) continue;
            int j = 0;
            while (j < n && !(at >= sp[j].key && at < sp[j].end))
                j++;
            if (j == n || !is_section_name(sp[j].name)) continue;
            readable++;
            char want[64];
            snprintf(want, sizeof want, "section \"%s\"", sp[j].name);
            if (strstr(err, want))
                by_section++;
            else
                CHECK(0, "%s: flip %02x at %zu (in %s): %s", what, pats[q], at,
                      sp[j].name, err);
        }
    CHECK(refused == flips, "%s: %d of %d flips refused naming the file", what,
          refused, flips);
    printf("%s: %zu bytes, %d sections; %d single-byte flips all refused, "
           "%d of the %d that leave the msgpack readable named the section\n",
           what, len, nsec, flips, by_section, readable);

    /* every truncation: a cut inside a value names its section */
    int cuts = 0, cut_named = 0, in_value = 0;
    for (size_t k = 0; k < len; k++) {
        write_all(bad, buf, k);
        struct colony *y = (struct colony *)1;
        err[0] = '\0';
        int rc = colony_load(bad, &y, err);
        cuts += rc < 0 && y == NULL && strstr(err, bad) != NULL;
        if (rc == 0) colony_destroy(y);
        for (int j = 0; j < n; j++)
            if (k > sp[j].val && k < sp[j].end) {
                char want[64];
                snprintf(want, sizeof want, "(in section \"%s\")", sp[j].name);
                in_value++;
                if (strstr(err, want))
                    cut_named++;
                else
                    CHECK(0, "%s: cut at %zu (in %s): %s", what, k, sp[j].name,
                          err);
            }
    }
    CHECK(cuts == (int)len, "%s: %d of %zu truncations refused naming the file",
          what, cuts, len);
    printf("%s: %zu truncations all refused; the %d inside a value named its "
           "section (%d)\n",
           what, len, in_value, cut_named);

    /* the same file as written before the checksums: version 1 (sync) or 2
     * (async) without "crc32" loads, equal; with "crc32" it is refused */
    {
        int async = c->async;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, o.via.map.size - 1);
        for (uint32_t j = 0; j < o.via.map.size; j++) {
            if (!strcmp(sp[j].name, "crc32")) continue;
            msgpack_pack_object(&pk, o.via.map.ptr[j].key);
            if (!strcmp(sp[j].name, "version"))
                msgpack_pack_int(&pk, async ? 2 : 1);
            else
                msgpack_pack_object(&pk, o.via.map.ptr[j].val);
        }
        write_all(bad, sb.data, sb.size);
        struct colony *y = NULL;
        CHECK(colony_load(bad, &y, err) == 0 && same_colony(c, y),
              "%s: the version %d file without checksums: %s", what,
              async ? 2 : 1, err);
        if (y) colony_destroy(y);
        /* and as version 3/4 without "crc32": refused */
        msgpack_sbuffer_clear(&sb);
        msgpack_pack_map(&pk, o.via.map.size - 1);
        for (uint32_t j = 0; j < o.via.map.size; j++) {
            if (strcmp(sp[j].name, "crc32")) {
                msgpack_pack_object(&pk, o.via.map.ptr[j].key);
                msgpack_pack_object(&pk, o.via.map.ptr[j].val);
            }
        }
        write_all(bad, sb.data, sb.size);
        expect_load_fails(bad, "missing \"crc32\"", "no crc32 in a v3/4 file");
        msgpack_sbuffer_destroy(&sb);
    }
    msgpack_zone_destroy(&zone);
    free(x);
    free(buf);
    remove(bad);
}

static void test_checksums(void)
{
    char err[ABC_ERRLEN];
    struct colony_params p = ref_params(9);
    p.nlayers = 4, p.sn = 3;
    struct colony *c = saved_colony(&p, "colony_sum_sync.msgpack");
    check_sums("sync colony (with batch)", c, "colony_sum_sync.msgpack");
    /* async, two in flight, one result back */
    struct colony *a;
    colony_create(&a, &p, err);
    const struct candidate *b, *cd;
    int n;
    double f[8];
    colony_next_batch(a, &b, &n, err);
    for (int i = 0; i < n; i++)
        f[i] = test_fitness(&p, b[i].code, b[i].seed);
    colony_apply(a, f, err);
    CHECK(colony_async_begin(a, err) == 0, "async_begin: %s", err);
    uint64_t id0 = 0;
    for (int i = 0; i < 3; i++) {
        colony_async_next(a, &cd, err);
        if (i == 0) id0 = cd->eval_id;
    }
    colony_async_apply(a, id0, 0.5, err);
    CHECK(colony_save(a, "colony_sum_async.msgpack", err) == 0, "save: %s",
          err);
    check_sums("async colony", a, "colony_sum_async.msgpack");
    colony_destroy(a);
    colony_destroy(c);
    remove("colony_sum_sync.msgpack");
    remove("colony_sum_async.msgpack");
}

int main(void)
{
    test_checksums();
    test_checkpoint_bytes();
    test_checkpoint_fields();
    return check_finish("test_colony_file");
}

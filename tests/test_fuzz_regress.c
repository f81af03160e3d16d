/* test_fuzz_regress.c - replays the fuzz targets' inputs in the normal
 * build (no clang needed): every file of tests/fuzz/regress/<target>/ (the
 * inputs that once crashed, hung or leaked a target, each fixed since) and
 * of the seed corpus tests/fuzz/corpus/<target>/ goes through the same
 * entry point as the libFuzzer target (tests/fuzz/targets.h). Each must
 * come back without a crash (a crash fails the test); a refusal must carry
 * a message naming the input; corpus files named ok-* must be accepted and
 * bad-* refused; every regression input must be refused. Reads
 * ABC_SOURCE_DIR (set by CTest) for the folders. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fuzz/targets.h"

/* The targets and their corpus folders (tests/fuzz/corpus/<name>). */
static const struct {
    const char *name;
    int (*run)(const uint8_t *d, size_t n, char *err);
} targets[] = {
    {"config", fuzz_run_config},
    {"checkpoint", fuzz_run_checkpoint},
    {"colony", fuzz_run_colony},
    {"proto", fuzz_run_proto},
    {"idx", fuzz_run_idx},
    {"cifar", fuzz_run_cifar},
    {"safetensors", fuzz_run_safetensors},
    {"searchlog", fuzz_run_searchlog},
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    unsigned char *b = malloc(cap);
    size_t got;
    while (b && (got = fread(b + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            unsigned char *nb = realloc(b, cap *= 2);
            if (!nb) free(b);
            b = nb;
        }
    }
    fclose(f);
    *n = len;
    return b;
}

/* Runs every file of dir through t; regress: all must be refused. Returns
 * the number of files. */
static int replay_dir(int t, const char *dir, int regress)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    char *names[1024];
    int nn = 0;
    struct dirent *e;
    while ((e = readdir(d)) && nn < 1024)
        if (e->d_name[0] != '.') names[nn++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)nn, sizeof names[0], cmp_str);
    int accepted = 0;
    for (int i = 0; i < nn; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t n = 0;
        unsigned char *buf = slurp(path, &n);
        CHECK(buf != NULL, "cannot read %s", path);
        if (!buf) continue;
        char err[ABC_ERRLEN] = "";
        int rc = targets[t].run(buf, n, err);
        free(buf);
        /* the idx and cifar targets go through temp files; messages have
         * no name (the transport adds the rank), only a text */
        int named = strstr(err, FUZZ_NAME) || strstr(err, "/tmp/abcfuzz.") ||
                    strstr(err, "--set ") ||
                    (!strcmp(targets[t].name, "proto") && err[0]);
        if (rc == 0)
            accepted++;
        else
            CHECK(named, "%s: %s: refused without naming the input: %s",
                  targets[t].name, names[i], err);
        if (regress) printf("  %s/%s: %s\n", targets[t].name, names[i], err);
        if (regress || !strncmp(names[i], "bad-", 4))
            CHECK(rc < 0, "%s: %s: accepted, expected a refusal",
                  targets[t].name, names[i]);
        else if (!strncmp(names[i], "ok-", 3))
            CHECK(rc == 0, "%s: %s: refused: %s", targets[t].name, names[i],
                  err);
        free(names[i]);
    }
    printf("%-10s %-7s %3d inputs, %3d accepted\n", targets[t].name,
           regress ? "regress" : "corpus", nn, accepted);
    return nn;
}

int main(void)
{
    const char *src = getenv("ABC_SOURCE_DIR");
    if (!src) src = "..";
    int ncorpus = 0, nregress = 0;
    for (int t = 0; t < (int)(sizeof targets / sizeof targets[0]); t++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/tests/fuzz/corpus/%s", src,
                 targets[t].name);
        int n = replay_dir(t, dir, 0);
        CHECK(n >= 3, "%s: %d corpus files in %s, expected a seed corpus",
              targets[t].name, n, dir);
        ncorpus += n;
        snprintf(dir, sizeof dir, "%s/tests/fuzz/regress/%s", src,
                 targets[t].name);
        nregress += replay_dir(t, dir, 1);
    }
    printf("replayed %d corpus and %d regression inputs\n", ncorpus, nregress);
    return check_finish("test_fuzz_regress");
}

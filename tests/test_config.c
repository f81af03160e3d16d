/* test_config.c - YAML experiment configs (common/config.c). Writes small
 * YAML files into the working directory (CTest runs it in build/testdata):
 * a full config, one that relies on defaults, and one file per error class,
 * each of which must be rejected with "file.yaml:LINE:COL" and the key. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "core/err.h"
#include "io/config.h"

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

/* Writes text to path, loads it over the defaults and checks that it fails
 * with a message holding both needles (the second may be NULL), and that
 * the config it was loaded into is left untouched. */
static void expect_error(const char *path, const char *text, const char *where,
                         const char *what)
{
    struct config c, before;
    char err[ABC_ERRLEN] = "";
    write_text(path, text);
    config_defaults(&c);
    before = c;
    int rc = config_load(&c, path, err);
    CHECK(rc < 0 && strstr(err, where) && (!what || strstr(err, what)),
          "%s: rc %d, err '%s', want '%s' and '%s'", path, rc, err, where,
          what ? what : "");
    CHECK(!memcmp(&c, &before, sizeof c), "%s: config changed on error", path);
}

static const char full_yaml[] = "# a full experiment\n"
                                "seed: 12345678901234\n"
                                "threads: 4\n"
                                "out_dir: runs/full-test\n"
                                "data:\n"
                                "  dataset: cifar10\n"
                                "  dir: \"/tmp/cifar 10\"\n"
                                "  val_size: 1000\n"
                                "  train_subset: 2000\n"
                                "  test_subset: 500\n"
                                "  crop_pad: 4\n"
                                "  flip: false\n"
                                "  mean: [0.4914, 0.4822, 0.4465]\n"
                                "  std: 0.25\n"
                                "model:\n"
                                "  arch: vgg16\n"
                                "  channels:\n"
                                "    - 16\n"
                                "    - 32\n"
                                "    - 64\n"
                                "train:\n"
                                "  epochs: 30\n"
                                "  batch_size: 64\n"
                                "  lr: 0.05\n"
                                "  momentum: 0.8\n"
                                "  nesterov: yes\n"
                                "  weight_decay: 1e-4\n"
                                "  schedule: step\n"
                                "  milestones: [10, 20]\n"
                                "  gamma: 0.2\n"
                                "  warmup_epochs: 2\n"
                                "  sync_bn: true\n";

static void test_full(void)
{
    struct config c;
    char err[ABC_ERRLEN] = "";
    write_text("full.yaml", full_yaml);
    config_defaults(&c);
    int rc = config_load(&c, "full.yaml", err);
    CHECK(rc == 0, "full.yaml: %s", err);
    if (rc) return;
    CHECK(!strcmp(c.path, "full.yaml"), "path '%s'", c.path);
    CHECK(c.seed == 12345678901234ULL, "seed %llu", (unsigned long long)c.seed);
    CHECK(c.threads == 4, "threads %d", c.threads);
    CHECK(!strcmp(c.out_dir, "runs/full-test"), "out_dir '%s'", c.out_dir);
    CHECK(c.data.dataset == DATASET_CIFAR10 &&
              !strcmp(config_choice_name("data.dataset", c.data.dataset),
                      "cifar10"),
          "dataset %d", c.data.dataset);
    CHECK(!strcmp(c.data.dir, "/tmp/cifar 10"), "dir '%s'", c.data.dir);
    CHECK(c.data.val_size == 1000 && c.data.train_subset == 2000 &&
              c.data.test_subset == 500 && c.data.crop_pad == 4 &&
              c.data.flip == 0,
          "data ints %d %d %d %d %d", c.data.val_size, c.data.train_subset,
          c.data.test_subset, c.data.crop_pad, c.data.flip);
    const float mean[3] = {0.4914f, 0.4822f, 0.4465f},
                std[3] = {0.25f, 0.25f, 0.25f};
    CHECK_CLOSE("data.mean", c.data.mean, mean, 3, 0, 0);
    CHECK_CLOSE("data.std (one value for every channel)", c.data.std, std, 3, 0,
                0);
    CHECK(!strcmp(c.model.arch, "vgg16"), "arch '%s'", c.model.arch);
    CHECK(c.model.nchannels == 3 && c.model.channels[0] == 16 &&
              c.model.channels[1] == 32 && c.model.channels[2] == 64,
          "channels: %d entries", c.model.nchannels);
    const struct train_config *t = &c.train;
    CHECK(t->epochs == 30 && t->batch_size == 64 && t->nesterov == 1 &&
              t->warmup_epochs == 2 && t->sync_bn == 1,
          "train ints %d %d %d %d %d", t->epochs, t->batch_size, t->nesterov,
          t->warmup_epochs, t->sync_bn);
    CHECK(c.finetune.sync_bn == 0 && c.slim.sync_bn == 0,
          "train.sync_bn is train's own: finetune %d slim %d",
          c.finetune.sync_bn, c.slim.sync_bn);
    CHECK(t->lr == 0.05f && t->momentum == 0.8f && t->weight_decay == 1e-4f &&
              t->gamma == 0.2f,
          "train floats %g %g %g %g", t->lr, t->momentum, t->weight_decay,
          t->gamma);
    CHECK(t->schedule == LR_STEP, "schedule %d", t->schedule);
    CHECK(t->nmilestones == 2 && t->milestones[0] == 10 &&
              t->milestones[1] == 20,
          "milestones: %d entries", t->nmilestones);
}

static void test_defaults(void)
{
    struct config d, c;
    char err[ABC_ERRLEN] = "";
    config_defaults(&d);
    CHECK(d.seed == 1 && d.threads == 0, "seed %llu threads %d",
          (unsigned long long)d.seed, d.threads);
    CHECK(d.data.dataset == DATASET_FASHION_MNIST && d.data.dir[0] == 0 &&
              d.data.val_size == 5000 && d.data.train_subset == 0 &&
              d.data.test_subset == 0 && d.data.crop_pad == 2 &&
              d.data.flip == 1 && d.data.mean[0] == 0 && d.data.std[2] == 0,
          "data defaults");
    CHECK(d.model.nchannels == 0 && d.model.arch[0], "model defaults");
    const struct train_config *t = &d.train;
    CHECK(t->epochs == 10 && t->batch_size == 128 && t->lr == 0.1f &&
              t->momentum == 0.9f && t->nesterov == 0 &&
              t->weight_decay == 5e-4f && t->schedule == LR_COSINE &&
              t->nmilestones == 0 && t->gamma == 0.1f &&
              t->warmup_epochs == 0 && t->sync_bn == 0 &&
              d.finetune.sync_bn == 0 && d.slim.sync_bn == 0,
          "train defaults");

    /* A file that sets two keys keeps every other default; out_dir comes
     * from the file name. "data:" alone is an empty section. */
    write_text("small-run.yaml", "# only the epochs\n"
                                 "data:\n"
                                 "train:\n"
                                 "  epochs: 3\n"
                                 "model: {arch: resnet20}\n");
    c = d;
    int rc = config_load(&c, "small-run.yaml", err);
    CHECK(rc == 0, "small-run.yaml: %s", err);
    CHECK(c.train.epochs == 3 && !strcmp(c.model.arch, "resnet20"),
          "set keys: epochs %d arch '%s'", c.train.epochs, c.model.arch);
    CHECK(!strcmp(c.out_dir, "runs/small-run"), "out_dir '%s'", c.out_dir);
    struct config want = d;
    want.train.epochs = 3;
    memcpy(want.model.arch, c.model.arch, sizeof want.model.arch);
    memcpy(want.out_dir, c.out_dir, sizeof want.out_dir);
    memcpy(want.path, c.path, sizeof want.path);
    CHECK(!memcmp(&want, &c, sizeof c), "every other field keeps its default");

    /* out_dir from a path with folders and dots. */
    mkdir("cfgdir", 0755);
    write_text("cfgdir/a.b.yaml", "seed: 2\n");
    config_defaults(&c);
    rc = config_load(&c, "cfgdir/a.b.yaml", err);
    CHECK(rc == 0 && !strcmp(c.out_dir, "runs/a.b") && c.seed == 2,
          "out_dir '%s' (%s)", c.out_dir, err);
}

static void test_errors(void)
{
    /* Unknown keys, top level and nested. */
    expect_error("unknown.yaml", "seed: 1\nbogus: 2\n",
                 "unknown.yaml:2:1:", "unknown key 'bogus'");
    expect_error("unknown2.yaml", "train:\n  epochs: 1\n  lrr: 0.1\n",
                 "unknown2.yaml:3:3:", "unknown key 'train.lrr'");

    /* Wrong node types. */
    expect_error("type-map.yaml", "train:\n  lr:\n    a: 1\n",
                 "type-map.yaml:3:5: key 'train.lr':", "got a mapping");
    expect_error("type-section.yaml", "seed: 1\ndata: 5\n",
                 "type-section.yaml:2:7: key 'data':", "expected a mapping");
    expect_error("type-list.yaml", "model:\n  arch: [vgg16]\n",
                 "type-list.yaml:2:9: key 'model.arch':", "got a list");
    expect_error("type-chan.yaml", "model:\n  channels: 16\n",
                 "type-chan.yaml:2:13: key 'model.channels':",
                 "expected a list of integers");
    expect_error("type-top.yaml", "- a\n- b\n", "type-top.yaml:1:1:",
                 "expected a mapping of keys at the top level");
    expect_error("type-key.yaml", "? [a, b]\n: 1\n",
                 "type-key.yaml:1:3:", "expected a key name");

    /* Not a number. */
    expect_error("nan.yaml", "train:\n  lr: abc\n", "nan.yaml:2:7:",
                 "key 'train.lr': expected a number in (0, 100], got 'abc'");
    expect_error("nan2.yaml", "train:\n  lr: .nan\n",
                 "nan2.yaml:2:7:", "key 'train.lr'");
    expect_error("nan3.yaml", "train:\n  lr: inf\n",
                 "nan3.yaml:2:7:", "key 'train.lr'");
    expect_error("int.yaml", "train:\n  epochs: 2.5\n", "int.yaml:2:11:",
                 "key 'train.epochs': expected an integer in [0, 100000]");
    expect_error("empty-val.yaml", "threads:\n", "empty-val.yaml:1:9:",
                 "key 'threads': expected an integer in [0, 1024], got "
                 "nothing");
    expect_error("seed.yaml", "seed: -1\n", "seed.yaml:1:7:", "key 'seed'");
    expect_error("bool.yaml", "data:\n  flip: maybe\n", "bool.yaml:2:9:",
                 "key 'data.flip': expected true or false, got 'maybe'");

    /* Out of range (inclusive and exclusive bounds, overflow). */
    expect_error("range.yaml", "train:\n  batch_size: 0\n", "range.yaml:2:15:",
                 "key 'train.batch_size': expected an integer in [1, 65536]");
    expect_error("range2.yaml", "train:\n  lr: 0\n",
                 "range2.yaml:2:7:", "key 'train.lr'");
    expect_error("range3.yaml", "train:\n  momentum: 1.0\n",
                 "range3.yaml:2:13:", "key 'train.momentum'");
    expect_error("range4.yaml", "\n\ntrain:\n  epochs: 99999999999999999999\n",
                 "range4.yaml:4:11:", "key 'train.epochs'");
    expect_error("range5.yaml", "data:\n  mean: [0.5, 1.5, 0.5]\n",
                 "range5.yaml:2:15:", "key 'data.mean'");

    /* Bad enums. */
    expect_error("enum.yaml", "model:\n  arch: resnet18\n", "enum.yaml:2:9:",
                 "key 'model.arch': expected one of "
                 "smallnet|vgg16|resnet20|resnet56|resnet110, got 'resnet18'");
    expect_error("enum2.yaml", "data:\n  dataset: mnist\n",
                 "enum2.yaml:2:12:", "key 'data.dataset'");
    expect_error("enum3.yaml", "train:\n  schedule: linear\n",
                 "enum3.yaml:2:13:", "key 'train.schedule'");

    /* Duplicate keys. */
    expect_error("dup.yaml", "seed: 1\nthreads: 2\nseed: 3\n", "dup.yaml:3:1:",
                 "key 'seed': duplicate key (first given at line 1)");
    expect_error("dup2.yaml", "train:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n",
                 "dup2.yaml:4:3:", "key 'train.lr': duplicate key");

    /* Lists: too long, not increasing, wrong length of a triple. */
    {
        char text[1024] = "model:\n  channels:\n";
        for (int i = 0; i < CONFIG_MAX_LIST + 1; i++)
            strcat(text, "    - 8\n");
        /* entry 65 is on line 2 + 65 = 67 */
        expect_error("long.yaml", text,
                     "long.yaml:67:7:", "key 'model.channels': list too long");
    }
    expect_error("order.yaml", "train:\n  milestones: [30, 20]\n",
                 "order.yaml:2:20:",
                 "key 'train.milestones': expected strictly increasing");
    expect_error("order2.yaml", "train:\n  milestones: [10, 10]\n",
                 "order2.yaml:2:20:", "key 'train.milestones'");
    expect_error("triple.yaml", "data:\n  mean: [0.1, 0.2]\n",
                 "triple.yaml:2:9:", "key 'data.mean'");

    /* Strings too long. */
    {
        static char text[CONFIG_PATH_MAX + 64];
        strcpy(text, "seed: 1\nout_dir: ");
        size_t len = strlen(text);
        memset(text + len, 'x', CONFIG_PATH_MAX);
        strcpy(text + len + CONFIG_PATH_MAX, "\n");
        expect_error("longstr.yaml", text,
                     "longstr.yaml:2:10:", "key 'out_dir'");
    }
    expect_error("emptystr.yaml", "out_dir: \"\"\n",
                 "emptystr.yaml:1:10:", "key 'out_dir'");

    /* Empty documents. */
    expect_error("empty.yaml", "", "empty.yaml:1:1:", "empty config");
    expect_error("comments.yaml", "# nothing here\n\n",
                 "comments.yaml:1:1:", "empty config");

    /* Two documents. */
    expect_error("twodoc.yaml", "seed: 1\n---\nseed: 2\n",
                 "twodoc.yaml:2:1:", "second YAML document");

    /* YAML syntax errors, at libyaml's problem mark (1-based). */
    expect_error("syntax.yaml", "seed: 1\nthreads: [1, 2\nout_dir: x\n",
                 "syntax.yaml:3:8:", "YAML syntax error");
    expect_error("syntax2.yaml", "train:\n  lr: 0.1\n epochs: 3\n",
                 "syntax2.yaml:3:2:", "YAML syntax error");
    expect_error("syntax3.yaml", "seed: 1\n\tthreads: 2\n",
                 "syntax3.yaml:2:1:", "YAML syntax error");
    expect_error("syntax4.yaml", "seed: \"abc\n",
                 "syntax4.yaml:2:1:", "YAML syntax error");
    expect_error("utf8.yaml", "seed: 1\nout_dir: \xff\xfe\n",
                 "utf8.yaml: byte offset 17:", NULL);

    /* Missing file. */
    {
        struct config c;
        char err[ABC_ERRLEN] = "";
        config_defaults(&c);
        int rc = config_load(&c, "no-such.yaml", err);
        CHECK(rc < 0 && strstr(err, "no-such.yaml: cannot open config"),
              "missing file: '%s'", err);
    }
}

/* --set KEY=VALUE overrides: values land in the right fields, later ones
 * win, errors name the assignment and leave the config untouched. */
/* Every enumerated key's spellings parse back to their values. */
static void test_choice_names(void)
{
    static const struct {
        const char *key;
        int n;
    } keys[] = {{"data.dataset", 2},     {"train.schedule", 3},
                {"search.schedule", 2},  {"search.filter_init", 2},
                {"finetune.inherit", 2}, {"slim.inherit", 2},
                {"slim.bn", 2},          {"search.fitness.proxy", 2}};
    char err[ABC_ERRLEN], set[128];
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        for (int v = 0; v < keys[k].n; v++) {
            struct config c;
            config_defaults(&c);
            const char *name = config_choice_name(keys[k].key, v);
            snprintf(set, sizeof set, "%s=%s", keys[k].key, name);
            int rc = config_set(&c, set, err);
            int got = -1;
            if (!strcmp(keys[k].key, "data.dataset")) got = c.data.dataset;
            if (!strcmp(keys[k].key, "train.schedule")) got = c.train.schedule;
            if (!strcmp(keys[k].key, "search.schedule"))
                got = c.search.schedule;
            if (!strcmp(keys[k].key, "search.filter_init"))
                got = c.search.filter_init;
            if (!strcmp(keys[k].key, "finetune.inherit"))
                got = c.finetune.inherit;
            if (!strcmp(keys[k].key, "slim.inherit")) got = c.slim.inherit;
            if (!strcmp(keys[k].key, "slim.bn")) got = c.slim.sparsity_all_bn;
            if (!strcmp(keys[k].key, "search.fitness.proxy"))
                got = c.search.fitness.proxy;
            CHECK(rc == 0 && got == v,
                  "%s: '%s' parses to %d, expected %d (%s)", keys[k].key, name,
                  got, v, rc ? err : "");
        }
    CHECK(!strcmp(config_choice_name("slim.bn", 2), "?") &&
              !strcmp(config_choice_name("no.such", 0), "?"),
          "unknown values and keys are \"?\"");
}

static void test_set(void)
{
    struct config c, before;
    char err[ABC_ERRLEN] = "";
    config_defaults(&c);
    int rc = config_set(&c, "search.sn=8", err);
    rc |= config_set(&c, "search.fitness.steps=5", err);
    rc |= config_set(&c, "seed=42", err);
    rc |= config_set(&c, "model.channels=[3, 5, 7]", err);
    rc |= config_set(&c, "search.schedule=async", err);
    rc |= config_set(&c, "train.lr=0.05", err);
    rc |= config_set(&c, "search.sn=9", err);
    CHECK(c.search.fitness.proxy == FITNESS_TRAIN, "default proxy %d",
          c.search.fitness.proxy);
    rc |= config_set(&c, "search.fitness.proxy=adaptive_bn", err);
    rc |= config_set(&c, "finetune.sync_bn=true", err);
    CHECK(rc == 0, "config_set: %s", err);
    CHECK(c.finetune.sync_bn == 1 && c.train.sync_bn == 0 &&
              c.slim.sync_bn == 0,
          "finetune.sync_bn=true: train %d finetune %d slim %d",
          c.train.sync_bn, c.finetune.sync_bn, c.slim.sync_bn);
    CHECK(c.search.fitness.proxy == FITNESS_ADAPTIVE_BN, "proxy %d",
          c.search.fitness.proxy);
    CHECK(c.search.sn == 9 && c.search.fitness.steps == 5 && c.seed == 42 &&
              c.model.nchannels == 3 && c.model.channels[2] == 7 &&
              c.search.schedule == SCHEDULE_ASYNC && c.train.lr == 0.05f,
          "config_set values: sn %d steps %d seed %llu", c.search.sn,
          c.search.fitness.steps, (unsigned long long)c.seed);
    static const char *const bad[][2] = {
        {"search.sn=1", "--set search.sn=1: key 'search.sn': expected an "
                        "integer in [2"},
        {"search.snn=4", "unknown key 'search.snn'"},
        {"nokey", "expected KEY=VALUE"},
        {"=4", "expected KEY=VALUE"},
        {"seed=", "expected KEY=VALUE"},
        {"search..sn=4", "bad key"},
        {"search.sn=[1", "YAML syntax error"},
        {"search=3", "key 'search': expected a mapping"},
        {"search.schedule=fast", "key 'search.schedule'"},
        {"search.fitness.proxy=eagle",
         "key 'search.fitness.proxy': expected one of train|adaptive_bn, got "
         "'eagle'"},
        {"search.fitness.proxy=", "expected KEY=VALUE"},
        {"train.sync_bn=maybe", "key 'train.sync_bn'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        before = c;
        err[0] = '\0';
        rc = config_set(&c, bad[i][0], err);
        CHECK(rc < 0 && strstr(err, bad[i][1]) && !strstr(err, ":1:"),
              "config_set(%s): rc %d, err '%s', want '%s'", bad[i][0], rc, err,
              bad[i][1]);
        CHECK(!memcmp(&c, &before, sizeof c), "config_set(%s) changed c",
              bad[i][0]);
    }
}

int main(void)
{
    test_full();
    test_defaults();
    test_errors();
    test_set();
    test_choice_names();
    return check_finish("test_config");
}

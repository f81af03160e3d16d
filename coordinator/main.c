/* main.c - the abcprune program: parses the command line and runs one
 * subcommand. Only this file exits; everything it calls returns errors.
 *   train CONFIG        train the full (baseline) model
 *   eval CONFIG CKPT    test accuracy of a checkpoint
 *   info CONFIG|CKPT    per-layer channels, params and FLOPs */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "config.h"
#include "err.h"
#include "jsonl.h"
#include "model.h"
#include "rng.h"
#include "threads.h"
#include "train.h"

#define ABCPRUNE_VERSION "0.1.0"
#define EXIT_USAGE 2

/* Labels of rng_derive for the model's initial weights. */
enum { SEED_INIT = 3 };

static const char *usage_main =
    "usage: abcprune COMMAND [OPTIONS] ARGS\n"
    "\n"
    "Finds a pruned CNN structure with an artificial bee colony search.\n"
    "\n"
    "commands:\n"
    "  train CONFIG        train the full model (the pretrained baseline)\n"
    "  eval CONFIG CKPT    test accuracy of a checkpoint on the config's data\n"
    "  info CONFIG|CKPT    per-layer channels, parameters and FLOPs\n"
    "\n"
    "`abcprune COMMAND --help` describes a command. --version prints the\n"
    "version.\n";

static const char *usage_train =
    "usage: abcprune train [--force] CONFIG\n"
    "\n"
    "Trains the full model of CONFIG (model, data and train sections) and\n"
    "writes OUT/baseline.ckpt and OUT/train.jsonl, OUT being the config's\n"
    "out_dir (default runs/<config name>). One progress line per epoch.\n"
    "An unfinished baseline.ckpt (from an interrupted run) is resumed; a\n"
    "finished one is left alone unless --force retrains from scratch.\n";

static const char *usage_eval =
    "usage: abcprune eval CONFIG CKPT\n"
    "\n"
    "Prints the test accuracy and loss of checkpoint CKPT on the test set\n"
    "of CONFIG's dataset.\n";

static const char *usage_info =
    "usage: abcprune info [--input CxHxW] CONFIG|CKPT\n"
    "\n"
    "Prints a table of the model's conv and linear layers: channels, kernel,\n"
    "output size, parameters and multiply-accumulates (FLOPs) per image, and\n"
    "the totals. A CONFIG's input shape is its dataset's (1x28x28 for\n"
    "fashion-mnist, 3x32x32 for cifar10) unless --input overrides it.\n";

static int usage_error(const char *usage, const char *fmt, const char *arg)
{
    fprintf(stderr, "abcprune: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n%s", usage);
    return EXIT_USAGE;
}

static int is_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

static int fail(const char *err)
{
    fprintf(stderr, "abcprune: error: %s\n", err);
    return 1;
}

/* mkdir -p. Returns 0 or an error naming the directory. */
static int make_dirs(const char *path, char *err)
{
    char buf[CONFIG_PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return abc_errf(err, ABC_EVALUE, "path too long: %s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0775) != 0 && errno != EEXIST)
                return abc_errf(err, ABC_EIO, "cannot create directory %s: %s",
                                buf, strerror(errno));
            *p = c;
            if (c == '\0') break;
        }
    }
    return 0;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void input_shape(const struct config *c, int *ch, int *h, int *w)
{
    if (strcmp(c->data.dataset, "cifar10") == 0)
        *ch = 3, *h = 32, *w = 32;
    else
        *ch = 1, *h = 28, *w = 28;
}

static int model_from_config(struct model **m, const struct config *c,
                             int ch, int h, int w, char *err)
{
    enum arch a;
    if (arch_parse(c->model.arch, &a) != 0)
        return abc_errf(err, ABC_EVALUE, "%s: unknown model.arch '%s'",
                        c->path, c->model.arch);
    int n = arch_prunable(a, NULL);
    if (c->model.nchannels && c->model.nchannels != n)
        return abc_errf(err, ABC_EVALUE,
                        "%s: model.channels has %d entries, %s has %d "
                        "prunable layers",
                        c->path, c->model.nchannels, c->model.arch, n);
    int rc = model_create(m, a, c->model.nchannels ? c->model.channels : NULL,
                          ch, h, w, 10, err);
    if (rc) return abc_errprefix(err, rc, "%s", c->path);
    return 0;
}

static int cmd_train(int argc, char **argv)
{
    int force = 0;
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(usage_train, stdout);
            return 0;
        } else if (strcmp(argv[i], "--force") == 0) {
            force = 1;
        } else if (argv[i][0] == '-') {
            return usage_error(usage_train, "train: unknown option %s",
                               argv[i]);
        } else if (path) {
            return usage_error(usage_train, "train: unexpected argument %s",
                               argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path) return usage_error(usage_train, "train: %s", "missing CONFIG");

    char err[ABC_ERRLEN];
    struct config c;
    config_defaults(&c);
    if (config_load(&c, path, err)) return fail(err);
    int threads = threads_setup(c.threads);

    char ckpt[CONFIG_PATH_MAX + 32], logp[CONFIG_PATH_MAX + 32];
    snprintf(ckpt, sizeof ckpt, "%s/baseline.ckpt", c.out_dir);
    snprintf(logp, sizeof logp, "%s/train.jsonl", c.out_dir);
    if (make_dirs(c.out_dir, err)) return fail(err);

    struct model *m = NULL;
    struct train_state st = {0};
    int ch, h, w;
    input_shape(&c, &ch, &h, &w);
    if (!force && file_exists(ckpt)) {
        if (checkpoint_load(ckpt, &m, &st, err)) return fail(err);
        struct model *want;
        if (model_from_config(&want, &c, ch, h, w, err)) {
            model_destroy(m);
            return fail(err);
        }
        int rc = checkpoint_check_compatible(m, want, err);
        model_destroy(want);
        if (rc) {
            model_destroy(m);
            fprintf(stderr,
                    "abcprune: error: %s does not match %s: %s\n"
                    "(use --force to retrain from scratch)\n",
                    ckpt, path, err);
            return 1;
        }
        if (st.epoch >= c.train.epochs) {
            fprintf(stderr,
                    "baseline already trained: %s (%d epochs); use --force "
                    "to retrain\n",
                    ckpt, st.epoch);
            model_destroy(m);
            free(st.velocity);
            return 0;
        }
        fprintf(stderr, "resuming %s from epoch %d\n", ckpt, st.epoch);
    } else {
        if (model_from_config(&m, &c, ch, h, w, err)) return fail(err);
        model_init_weights(m, rng_derive(c.seed, SEED_INIT, 0, 0));
    }

    struct data_splits s;
    if (data_open(&s, &c, 1, err)) {
        model_destroy(m);
        free(st.velocity);
        return fail(err);
    }
    FILE *log = jsonl_open(logp, st.epoch > 0, err);
    if (!log) {
        data_close(&s);
        model_destroy(m);
        free(st.velocity);
        return fail(err);
    }
    fprintf(stderr,
            "training %s (%lld params, %.2fM MACs/image) on %s: %d train, "
            "%d val, %d test images, %d threads\n",
            arch_name(m->arch), (long long)model_param_count(m),
            model_macs(m) / 1e6, c.data.dataset, s.train.n, s.val.n,
            s.test.n, threads);
    struct train_io io = {.ckpt_path = ckpt, .log = log, .progress = stderr,
                          .tag = "train"};
    int rc = train_model(m, &c.train, &s, c.seed, &st, &io, err);
    double test_acc = 0, test_loss = 0;
    if (!rc)
        rc = evaluate(m, &s.test, &s.aug, c.train.batch_size, &test_acc,
                      &test_loss, err);
    if (!rc) {
        fprintf(log,
                "{\"event\":\"done\",\"test_acc\":%.6f,\"test_loss\":%.6f,"
                "\"best_val_acc\":%.6f,\"checkpoint\":",
                test_acc, test_loss, st.best_val_acc);
        jsonl_string(log, ckpt);
        fputc('}', log);
        jsonl_end(log);
        printf("test accuracy %.2f%% (loss %.4f) on %d images; "
               "checkpoint %s\n",
               100 * test_acc, test_loss, s.test.n, ckpt);
    }
    fclose(log);
    data_close(&s);
    model_destroy(m);
    free(st.velocity);
    return rc ? fail(err) : 0;
}

static int cmd_eval(int argc, char **argv)
{
    const char *args[2];
    int nargs = 0;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(usage_eval, stdout);
            return 0;
        }
        if (argv[i][0] == '-')
            return usage_error(usage_eval, "eval: unknown option %s", argv[i]);
        if (nargs == 2)
            return usage_error(usage_eval, "eval: unexpected argument %s",
                               argv[i]);
        args[nargs++] = argv[i];
    }
    if (nargs != 2)
        return usage_error(usage_eval, "eval: %s", "expected CONFIG and CKPT");
    char err[ABC_ERRLEN];
    struct config c;
    config_defaults(&c);
    if (config_load(&c, args[0], err)) return fail(err);
    threads_setup(c.threads);
    struct model *m;
    if (checkpoint_load(args[1], &m, NULL, err)) return fail(err);
    struct data_splits s;
    if (data_open(&s, &c, 1, err)) {
        model_destroy(m);
        return fail(err);
    }
    int rc = 0;
    if (s.test.c != m->in_c || s.test.h != m->in_h || s.test.w != m->in_w) {
        rc = abc_errf(err, ABC_EVALUE,
                      "%s expects %dx%dx%d input, the dataset of %s has "
                      "%dx%dx%d",
                      args[1], m->in_c, m->in_h, m->in_w, args[0], s.test.c,
                      s.test.h, s.test.w);
    }
    double acc = 0, loss = 0;
    if (!rc)
        rc = evaluate(m, &s.test, &s.aug, c.train.batch_size, &acc, &loss,
                      err);
    if (!rc)
        printf("%s: test accuracy %.2f%% (loss %.4f) on %d images; %lld "
               "params, %.2fM MACs/image\n",
               args[1], 100 * acc, loss, s.test.n,
               (long long)model_param_count(m), model_macs(m) / 1e6);
    data_close(&s);
    model_destroy(m);
    return rc ? fail(err) : 0;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

static void print_table(const struct model *m)
{
    int64_t full_macs = 0, full_params = 0;
    struct model *full;
    char err[ABC_ERRLEN];
    if (model_create(&full, m->arch, NULL, m->in_c, m->in_h, m->in_w,
                     m->num_classes, err) == 0) {
        full_macs = model_macs(full);
        full_params = model_param_count(full);
        model_destroy(full);
    }
    printf("%s, input %dx%dx%d, %d classes\n", arch_name(m->arch), m->in_c,
           m->in_h, m->in_w, m->num_classes);
    printf("%-18s %6s %6s %3s %3s %9s %10s %12s %5s\n", "layer", "in", "out",
           "k", "s", "output", "params", "MACs", "prune");
    for (int i = 0; i < m->nlayers; i++) {
        const struct layer_info *l = &m->layers[i];
        char outs[32], pr[16] = "";
        snprintf(outs, sizeof outs, "%dx%d", l->hout, l->wout);
        if (l->prunable >= 0)
            snprintf(pr, sizeof pr, "#%d", l->prunable);
        printf("%-18s %6d %6d %3d %3d %9s %10lld %12lld %5s\n", l->name,
               l->cin, l->cout, l->k, l->stride, outs, (long long)l->params,
               (long long)l->macs, pr);
    }
    int64_t macs = model_macs(m), params = model_param_count(m);
    printf("total: %lld params (%.3fM), %lld MACs (%.2fM) per image\n",
           (long long)params, params / 1e6, (long long)macs, macs / 1e6);
    if (full_macs && (full_macs != macs || full_params != params))
        printf("vs full model: params -%.1f%%, MACs -%.1f%%\n",
               100.0 * (1 - (double)params / full_params),
               100.0 * (1 - (double)macs / full_macs));
    printf("structure:");
    for (int i = 0; i < m->nprunable; i++)
        printf(" %d/%d", m->channels[i], m->full[i]);
    printf("\n");
}

static int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    int ich = 0, ih = 0, iw = 0;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(usage_info, stdout);
            return 0;
        } else if (strcmp(argv[i], "--input") == 0) {
            char tail;
            if (i + 1 >= argc ||
                sscanf(argv[i + 1], "%dx%dx%d%c", &ich, &ih, &iw, &tail) != 3)
                return usage_error(usage_info,
                                   "info: --input expects CxHxW, e.g. "
                                   "3x32x32%s",
                                   "");
            i++;
        } else if (argv[i][0] == '-') {
            return usage_error(usage_info, "info: unknown option %s", argv[i]);
        } else if (path) {
            return usage_error(usage_info, "info: unexpected argument %s",
                               argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path)
        return usage_error(usage_info, "info: %s", "missing CONFIG or CKPT");
    char err[ABC_ERRLEN];
    struct model *m;
    if (has_suffix(path, ".yaml") || has_suffix(path, ".yml")) {
        struct config c;
        config_defaults(&c);
        if (config_load(&c, path, err)) return fail(err);
        int ch, h, w;
        input_shape(&c, &ch, &h, &w);
        if (ich) ch = ich, h = ih, w = iw;
        if (model_from_config(&m, &c, ch, h, w, err)) return fail(err);
    } else {
        if (ich)
            return usage_error(usage_info,
                               "info: --input applies to a CONFIG, not %s",
                               path);
        if (checkpoint_load(path, &m, NULL, err)) return fail(err);
    }
    print_table(m);
    model_destroy(m);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (is_help(cmd) || strcmp(cmd, "help") == 0) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("abcprune %s\n", ABCPRUNE_VERSION);
        return 0;
    }
    if (strcmp(cmd, "train") == 0) return cmd_train(argc - 2, argv + 2);
    if (strcmp(cmd, "eval") == 0) return cmd_eval(argc - 2, argv + 2);
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 2, argv + 2);
    return usage_error(usage_main, "unknown command '%s'", cmd);
}

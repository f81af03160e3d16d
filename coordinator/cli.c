/* cli.c - the abcprune command line: parses it, sets up MPI and signals,
 * and runs one subcommand. With proto/main.c, the only code that exits or
 * calls MPI_Abort; everything it calls returns errors. Rank 0 runs the
 * command; for `search` and `run`, ranks 1..N-1 serve evaluations through
 * the worker role that main() hands in (coordinator/ never includes
 * worker/). */
#include <errno.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/fileio.h"
#include "core/threads.h"
#include "dp.h"
#include "groups.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/onnx.h"
#include "io/safetensors.h"
#include "io/stmodel.h"
#include "methods.h"
#include "pipeline.h"
#include "proxycheck.h"
#include "roles.h"
#include "search.h"
#include "simulate.h"
#include "train/memory.h"
#include "train/train.h"
#include "transport.h"

#define ABCPRUNE_VERSION "0.2.0"
#define EXIT_USAGE 2
#define EXIT_STOPPED 75 /* stopped by a signal, state saved: run it again */

static volatile sig_atomic_t g_stop;
static const char *g_out_dir; /* --out DIR: overrides the config's out_dir */
#define MAX_SETS 64
static const char *g_sets[MAX_SETS]; /* --set KEY=VALUE, in order */
static int g_nsets;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* SIGTERM (Slurm at the time limit, kill), SIGUSR1 (Slurm's warning
 * before it) and SIGINT set the stop flag: the running step writes its
 * checkpoint and returns. */
static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

static const char *usage_main =
    "usage: abcprune COMMAND [OPTIONS] ARGS\n"
    "\n"
    "Finds a pruned CNN structure with an artificial bee colony search.\n"
    "\n"
    "commands:\n"
    "  run CONFIG          train -> search -> finetune, skipping finished "
    "steps\n"
    "  train CONFIG        train the full model (the pretrained baseline)\n"
    "  search CONFIG       ABC structure search (MPI: rank 0 + workers)\n"
    "  randsearch CONFIG   random search at ABC's cost, then its finetune\n"
    "  proxycheck CONFIG   do the fitness proxies rank structures as\n"
    "                      fine-tuning does? (before spending a cluster)\n"
    "  finetune CONFIG     fine-tune the best structure and write the report\n"
    "  slim CONFIG         Network Slimming (L1 on BN gamma) at the target\n"
    "  lasso CONFIG        He et al.'s LASSO channel selection at the target\n"
    "  uniform CONFIG      the same keep ratio in every layer (baseline)\n"
    "  random CONFIG       a random structure at the target (baseline)\n"
    "  eval CONFIG CKPT    test accuracy of a checkpoint on the config's data\n"
    "  info CONFIG|CKPT    per-layer channels, parameters and FLOPs\n"
    "  simulate CONFIG     predict the search on many workers from a log\n"
    "  import CONFIG FILE  a PyTorch model (.safetensors) as the baseline\n"
    "  export CKPT OUT     a checkpoint as .safetensors (PyTorch) or .onnx\n"
    "\n"
    "Launch search and run with mpirun/srun for workers (mpirun -np 3\n"
    "abcprune run CONFIG); with one rank the search runs in-process.\n"
    "--out DIR (any command) writes to DIR instead of the config's out_dir,\n"
    "e.g. a directory per Slurm job. --set KEY=VALUE (any command, may be\n"
    "repeated) overrides one config key after the file is read, e.g.\n"
    "--set search.sn=8 --set seed=2 --set model.channels=[8,16,32].\n"
    "`abcprune COMMAND --help` describes a command. --version prints the\n"
    "version. Exit status: 0 done, 1 error, 2 usage, 75 stopped by a signal\n"
    "after saving its state (run the same command again to resume).\n";

static const char *usage_train =
    "usage: abcprune train [--force] CONFIG\n"
    "\n"
    "Trains the full model of CONFIG (model, data and train sections) and\n"
    "writes OUT/baseline.ckpt and OUT/train.jsonl, OUT being the config's\n"
    "out_dir (default runs/<config name>). One progress line per epoch.\n"
    "An unfinished baseline.ckpt (from an interrupted run) is resumed; a\n"
    "finished one is left alone unless --force retrains from scratch.\n";

static const char *usage_search =
    "usage: [mpirun -np N] abcprune search [--resume] [--random] CONFIG\n"
    "\n"
    "Searches for the best pruned structure of OUT/baseline.ckpt with the\n"
    "ABC algorithm (search section of CONFIG). Rank 0 runs the colony, ranks\n"
    "1..N-1 evaluate structures; with one rank it evaluates in-process.\n"
    "Writes OUT/search.jsonl (one line per evaluation and per cycle),\n"
    "OUT/colony.ckpt (after every phase) and OUT/best.yaml. SIGTERM/SIGUSR1\n"
    "save the colony and exit 75; --resume continues from OUT/colony.ckpt\n"
    "to the same result an uninterrupted search reaches. --random runs\n"
    "the random search of `randsearch` instead (files in OUT/randsearch/).\n";

static const char *usage_randsearch =
    "usage: [mpirun -np N] abcprune randsearch CONFIG\n"
    "\n"
    "The fair null of the ABC search: random search with the same number of\n"
    "evaluations (the colony's phases, with every employed and onlooker\n"
    "candidate a fresh random shape instead of a neighbour), the same\n"
    "fitness, FLOPs target, seeds and schedule, then the best structure\n"
    "fine-tuned exactly as `finetune` does for ABC (L1 filters or the\n"
    "best candidate's weights, finetune.inherit). Everything goes to\n"
    "OUT/randsearch/: search.jsonl, colony.ckpt, best.yaml, pruned.ckpt,\n"
    "report.txt and report.json. Finished steps are skipped and unfinished\n"
    "ones resumed, so the same command continues after an interruption.\n"
    "The same in two steps: search --random, then finetune --random.\n";

static const char *usage_proxycheck =
    "usage: [mpirun -np N] abcprune proxycheck CONFIG\n"
    "\n"
    "Tells whether a search is worth running on this model at\n"
    "prune.flops_target: samples proxycheck.structures structures of the\n"
    "search's space at the target (the uniform cut, then random shapes\n"
    "scaled to it as the search scales its codes), scores each with every\n"
    "fitness proxy (train: search.fitness's short training; adaptive_bn:\n"
    "BN statistics re-estimated, no training) and with a short fine-tune\n"
    "(proxycheck.epochs at finetune's lr, proxycheck.seeds seeds, the whole\n"
    "validation split), one evaluation per task on the MPI workers. Writes\n"
    "OUT/proxycheck/proxycheck.csv, proxycheck.md (Kendall tau-b and\n"
    "Spearman rho per proxy with bootstrap 95 % intervals, between-\n"
    "structure vs seed variance, the headroom over the uniform cut) and,\n"
    "with gnuplot, proxycheck.png. Needs OUT/baseline.ckpt.\n";

static const char *usage_finetune =
    "usage: abcprune finetune [--random] CONFIG\n"
    "\n"
    "Builds the best structure of the finished search, inherits weights\n"
    "(finetune.inherit: best = the best candidate's trained weights,\n"
    "baseline = sliced from the baseline), fine-tunes it (finetune section)\n"
    "and writes OUT/pruned.ckpt, OUT/finetune.jsonl and the report\n"
    "OUT/report.txt / report.json (test accuracy, params, FLOPs, inference\n"
    "speed: baseline vs pruned). --random: of the random search\n"
    "(OUT/randsearch/, see randsearch).\n";

static const char *usage_run =
    "usage: [mpirun -np N] abcprune run CONFIG\n"
    "\n"
    "train, search and finetune in order; a step whose output exists is\n"
    "skipped and an unfinished one resumed, so after an interruption the\n"
    "same command continues where it stopped.\n";

static const char *usage_method =
    "usage: abcprune slim|lasso|uniform|random CONFIG\n"
    "\n"
    "Prunes OUT/baseline.ckpt (train it first) with one of the methods the\n"
    "ABC search is compared with, to the target of the prune section\n"
    "(flops_target: keep this fraction of the baseline's MACs; without it\n"
    "keep_fraction of the channels), then fine-tunes with the finetune\n"
    "section, exactly as the search's winner is fine-tuned:\n"
    "  slim     sparsity training with s*sum|gamma| (slim section), then one\n"
    "           global |gamma| threshold (Network Slimming)\n"
    "  lasso    uniform widths; channels chosen by LASSO on sampled feature\n"
    "           points, the next layer reconstructed by least squares\n"
    "           (lasso section; He et al. 2017)\n"
    "  uniform  the same keep ratio in every prunable layer, L1 filters\n"
    "  random   random widths and filters (seeded by the config's seed)\n"
    "Writes OUT/<method>/pruned.ckpt, finetune.jsonl, report.txt and\n"
    "report.json; an interrupted run resumes.\n";

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

static const char *usage_simulate =
    "usage: abcprune simulate [--workers LIST] [--schedule sync|async|both]\n"
    "                         [--log FILE] [--csv FILE] [--overhead S]\n"
    "                         [--group G] [--allreduce ALPHA,BETA]\n"
    "                         [--dp-efficiency E] CONFIG\n"
    "\n"
    "Runs CONFIG's colony (the real one, sync or async) against virtual\n"
    "workers on a virtual clock and prints, per worker count and schedule,\n"
    "one CSV row: predicted wall time, evaluations, evals/s, worker\n"
    "utilisation, best fitness per cycle. Evaluation seconds = a + b*FLOPs\n"
    "fitted on the log (default OUT/search.jsonl) times one of the fit's\n"
    "residual ratios (seeded); fitness = the logged one of the same code\n"
    "and seed, else the mean over the nearest logged codes (a sync run of\n"
    "the log's own config replays its search); each dispatch adds S\n"
    "seconds, the worker idle (default: fitted so that the\n"
    "log's own run replays to its wall time). --workers 1,2,3,16,64,256,1024\n"
    "(default), --schedule both (default), --csv FILE instead of stdout.\n"
    "--group G: G workers evaluate each candidate together, data-parallel\n"
    "(default: the config's search.ranks_per_eval; 0 there: W / sn); a\n"
    "candidate's time is then its training share / G, the rest whole, plus\n"
    "one gradient sum per step costing ALPHA s + BETA s/byte for 2 ranks\n"
    "(--allreduce; measure with mpirun -np 2 bench_allreduce), the training\n"
    "share scaling at efficiency E (default 1: ideal).\n";

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

/* Exit status for rc, printing err. */
static int finish(int rc, const char *err)
{
    if (rc == 0) return 0;
    int stopped = rc == ABC_ESTOPPED || rc == ABC_ETIMEOUT; /* resumable */
    fprintf(stderr, "abcprune: %s: %s\n", stopped ? "stopped" : "error", err);
    return stopped ? EXIT_STOPPED : 1;
}

/* The start of an MPI command: MPI_Init, errors returned (not fatal) on
 * MPI_COMM_WORLD, this rank and the size. Returns 0, or 1 after saying
 * that MPI_Init failed; aborts the job when MPI fails after MPI_Init. */
static int mpi_begin(int *rank, int *size, char *err)
{
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
        fprintf(stderr, "abcprune: error: MPI_Init failed\n");
        return 1;
    }
    if (MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN) !=
            MPI_SUCCESS ||
        proto_comm_info(MPI_COMM_WORLD, rank, size, err) != 0) {
        fprintf(stderr, "abcprune: error: %s\n",
                err[0] ? err : "MPI_Comm_set_errhandler failed");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return 0;
}

/* The end of an MPI command on every rank: done ranks wait in a barrier
 * sleeping (not spinning in MPI_Finalize), then finalize; rank 0 prints
 * rc's message. Returns the process exit status. */
static int mpi_end(MPI_Comm comm, int rank, int rc, const char *err)
{
    char berr[ABC_ERRLEN];
    if (proto_barrier(comm, berr) != 0) {
        fprintf(stderr, "abcprune: %s\n", berr);
        MPI_Abort(comm, 1);
    }
    MPI_Finalize();
    return rank == 0 ? finish(rc, err) : 0;
}

/* Parses "[flags] CONFIG": flags[i] is set when its name is given.
 * Returns 0, EXIT_USAGE after printing usage, or -1 after printing help. */
static int parse_args(int argc, char **argv, const char *usage,
                      const char *const *names, int *flags, int nflags,
                      const char **path, const char *cmd)
{
    *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(usage, stdout);
            return -1;
        }
        int known = 0;
        for (int f = 0; f < nflags; f++)
            if (strcmp(argv[i], names[f]) == 0) flags[f] = 1, known = 1;
        if (known) continue;
        char msg[64];
        snprintf(msg, sizeof msg, "%s: %%s %s", cmd,
                 argv[i][0] == '-' ? "is not an option"
                                   : "is one argument "
                                     "too many");
        if (argv[i][0] == '-' || *path) return usage_error(usage, msg, argv[i]);
        *path = argv[i];
    }
    if (!*path) return usage_error(usage, "%s: missing CONFIG", cmd);
    return 0;
}

static int load_config(struct config *c, const char *path, char *err)
{
    config_defaults(c);
    int rc = config_load(c, path, err);
    for (int i = 0; i < g_nsets && !rc; i++)
        rc = config_set(c, g_sets[i], err);
    if (!rc && g_out_dir &&
        snprintf(c->out_dir, sizeof c->out_dir, "%s", g_out_dir) >=
            (int)sizeof c->out_dir)
        rc = abc_errf(err, ABC_EVALUE, "--out: path too long: %s", g_out_dir);
    if (!rc) { /* absurd sizes are refused before anything is allocated
                  (a bad model is left to the step, which names it) */
        struct memory_estimate me;
        int ch, h, w;
        pipeline_input_shape(c, &ch, &h, &w);
        if (memory_estimate_config(c, ch, h, w, &me, err) == 0)
            rc = memory_check(&me, memory_host_bytes(), "this host's memory",
                              c->path, err);
    }
    if (!rc) threads_setup(c->threads);
    return rc;
}

/* Takes the global options --out DIR and --set KEY=VALUE out of argv
 * (before or after the command). Returns 0, or EXIT_USAGE when a value is
 * missing. */
static int take_out_dir(int *argc, char **argv)
{
    for (int i = 1; i < *argc; i++) {
        int set = strcmp(argv[i], "--set") == 0;
        if (!set && strcmp(argv[i], "--out") != 0) continue;
        if (i + 1 >= *argc || argv[i + 1][0] == '\0') {
            fprintf(stderr, "abcprune: %s\n\n%s",
                    set ? "--set needs KEY=VALUE" : "--out needs a directory",
                    usage_main);
            return EXIT_USAGE;
        }
        if (set && g_nsets == MAX_SETS) {
            fprintf(stderr, "abcprune: more than %d --set options\n", MAX_SETS);
            return EXIT_USAGE;
        }
        if (set)
            g_sets[g_nsets++] = argv[i + 1];
        else
            g_out_dir = argv[i + 1];
        for (int j = i; j + 2 <= *argc; j++)
            argv[j] = argv[j + 2];
        *argc -= 2;
        i--;
    }
    return 0;
}

/* A command whose trainings may run data-parallel: fn(c, arg, err). */
typedef int (*dp_command_fn)(const struct config *c, void *arg, char *err);

/* 1 when an MPI launcher (mpirun, srun with PMI) started this process. */
static int mpi_launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") ||
           getenv("PMI_RANK");
}

/* train, finetune and the methods: loads the config at path and runs fn.
 * Started by an MPI launcher with more than one rank, rank 0 runs fn and
 * every training in it is data-parallel over all ranks (the others follow
 * it, proto/dp.h); else fn runs alone, without MPI. Returns the exit
 * status. */
static int run_data_parallel(const char *path, dp_command_fn fn, void *arg)
{
    char err[ABC_ERRLEN] = "";
    struct config c;
    if (!mpi_launched()) {
        int rc = load_config(&c, path, err);
        if (!rc) rc = fn(&c, arg, err);
        return finish(rc, err);
    }
    MPI_Comm comm = MPI_COMM_WORLD;
    int rank = 0, size = 1;
    if (mpi_begin(&rank, &size, err)) return 1;
    struct dp *dp = NULL;
    int rc = load_config(&c, path, err); /* every rank fails alike */
    if (!rc && size > 1 && (rc = dp_create(&dp, comm, err)) != 0 &&
        rc != ABC_EVALUE) { /* ABC_EVALUE: the environment, alike too */
        fprintf(stderr, "abcprune: rank %d: error: %s\n", rank, err);
        MPI_Abort(comm, 1);
    }
    if (rc) {
        /* nothing collective happened yet */
    } else if (!dp) {
        rc = fn(&c, arg, err);
    } else if (rank == 0) {
        pipeline_set_data_parallel(dp);
        rc = fn(&c, arg, err);
        pipeline_set_data_parallel(NULL);
        char rerr[ABC_ERRLEN];
        if (dp_release(dp, rerr) != 0) {
            fprintf(stderr, "abcprune: error: %s\n", rerr);
            MPI_Abort(comm, 1);
        }
    } else if (dp_follow(dp, &c, &g_stop, err) != 0) {
        fprintf(stderr, "abcprune: error: %s\n", err);
        MPI_Abort(comm, 1);
    }
    dp_destroy(dp);
    return mpi_end(comm, rank, rc, err);
}

static int train_command(const struct config *c, void *arg, char *err)
{
    return pipeline_train(c, *(int *)arg, &g_stop, stderr, err);
}

static int cmd_train(int argc, char **argv)
{
    static const char *const names[] = {"--force"};
    int force = 0;
    const char *path;
    int u =
        parse_args(argc, argv, usage_train, names, &force, 1, &path, "train");
    if (u) return u < 0 ? 0 : u;
    return run_data_parallel(path, train_command, &force);
}

static int method_command(const struct config *c, void *arg, char *err)
{
    return method_run(c, *(enum method *)arg, &g_stop, stderr, stdout, err);
}

static int cmd_method(int argc, char **argv, enum method m)
{
    const char *path;
    int u = parse_args(argc, argv, usage_method, NULL, NULL, 0, &path,
                       method_name(m));
    if (u) return u < 0 ? 0 : u;
    return run_data_parallel(path, method_command, &m);
}

static int finetune_command(const struct config *c, void *arg, char *err)
{
    return pipeline_finetune(c, *(int *)arg, &g_stop, stderr, stdout, err);
}

static int cmd_finetune(int argc, char **argv)
{
    const char *path;
    static const char *const names[] = {"--random"};
    int random = 0;
    int u = parse_args(argc, argv, usage_finetune, names, &random, 1, &path,
                       "finetune");
    if (u) return u < 0 ? 0 : u;
    return run_data_parallel(path, finetune_command, &random);
}

/* Parses "CxHxW" (three integers 1..65536 joined by 'x', nothing after)
 * into *c, *h, *w. Returns 0, or -1 for anything else. */
static int parse_shape(const char *s, int *c, int *h, int *w)
{
    int *out[3] = {c, h, w};
    for (int k = 0; k < 3; k++) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 1 || v > 65536) return -1;
        *out[k] = (int)v;
        if (*end != (k < 2 ? 'x' : '\0')) return -1;
        s = end + 1;
    }
    return 0;
}

/* 1 when this process is one of several copies srun started without PMI
 * (srun -n N with no MPI plugin starts N copies that would each run the
 * whole command into the same directory, or abort in MPI_Init): the srun
 * step has more than one task (SLURM_STEP_NUM_TASKS, set by srun only) while
 * no launcher gave this process its rank (checked before MPI_Init) or the
 * MPI world has one rank (after). err says how to launch. */
static int slurm_singleton(const char *cmd, char *err)
{
    const char *tasks = getenv("SLURM_STEP_NUM_TASKS");
    char *end;
    if (!tasks || strtol(tasks, &end, 10) <= 1 || *end) return 0;
    const char *procid = getenv("SLURM_PROCID");
    abc_errf(err, ABC_EUSAGE,
             "srun started %s copies of `abcprune %s` (this is task %s) "
             "that are not one MPI job: srun was given no PMI plugin for "
             "Open MPI. "
             "Launch with `srun --mpi=pmix abcprune %s ...`, or with mpirun "
             "inside the allocation (see deploy/slurm/abcprune.sbatch)",
             tasks, cmd, procid ? procid : "?", cmd);
    return 1;
}

/* The commands that run a search under MPI. */
enum mpi_cmd {
    MPI_SEARCH,     /* search */
    MPI_RUN,        /* train, search, finetune */
    MPI_RANDSEARCH, /* random search, its finetune */
    MPI_PROXYCHECK, /* proxies against a short fine-tune */
};

/* search, run and randsearch under MPI: rank 0 runs the steps, the others
 * serve. */
static int mpi_main(int argc, char **argv, const char *usage, const char *cmd,
                    enum mpi_cmd what, role_serve_fn serve)
{
    static const char *const names[] = {"--resume", "--random"};
    int flags[2] = {0, 0};
    const char *path;
    int is_run = what == MPI_RUN;
    int u = parse_args(argc, argv, usage, names, flags,
                       what == MPI_SEARCH ? 2 : 0, &path, cmd);
    int resume = flags[0], random = flags[1] || what == MPI_RANDSEARCH;
    if (u) return u < 0 ? 0 : u;
    char early[ABC_ERRLEN];
    if (!getenv("PMIX_RANK") && !getenv("PMI_RANK") &&
        !getenv("OMPI_COMM_WORLD_SIZE") && slurm_singleton(cmd, early)) {
        /* srun without an MPI plugin: Open MPI's MPI_Init would abort
         * with a message about building PMI support; say what to do */
        fprintf(stderr, "abcprune: error: %s\n", early);
        return 1;
    }
    MPI_Comm comm = MPI_COMM_WORLD;
    char err[ABC_ERRLEN] = "";
    int rank = 0, size = 1;
    if (mpi_begin(&rank, &size, err)) return 1;
    if (size == 1 && slurm_singleton(cmd, err)) {
        /* every copy says so and stops before writing anything */
        fprintf(stderr, "abcprune: error: %s\n", err);
        MPI_Finalize();
        return 1;
    }
    struct config c;
    int rc = load_config(&c, path, err);
    int g = 1; /* every rank computes the same: all fail alike */
    if (!rc) rc = eval_groups_size(&c, size, &g, err);
    if (rc) { /* every rank read the same file and failed alike */
        if (rank == 0) finish(rc, err);
        MPI_Finalize();
        return 1;
    }
    /* run's baseline and fine-tune and randsearch's fine-tune train
     * data-parallel: the workers follow rank 0 before and after serving */
    int dp_before = is_run && size > 1,
        dp_after = (is_run || what == MPI_RANDSEARCH) && size > 1;
    struct dp *dp = NULL;
    if ((dp_before || dp_after) && (rc = dp_create(&dp, comm, err)) != 0) {
        fprintf(stderr, "abcprune: rank %d: error: %s\n", rank, err);
        MPI_Abort(comm, 1);
    }
    if (rank != 0) {
        if (dp_before && (rc = dp_follow(dp, &c, &g_stop, err)) == 0)
            rc = serve(comm, &c, &g_stop, err);
        else if (!dp_before)
            rc = serve(comm, &c, &g_stop, err);
        if (!rc && dp_after) rc = dp_follow(dp, &c, &g_stop, err);
        if (rc) {
            fprintf(stderr, "abcprune: worker error: %s\n", err);
            MPI_Abort(comm, 1);
        }
    } else if (what == MPI_PROXYCHECK) {
        rc = proxycheck_run(comm, &c, &g_stop, stderr, stdout, err);
    } else {
        struct search_opts o = {.resume = resume || !(what == MPI_SEARCH),
                                .stop = &g_stop,
                                .progress = stderr,
                                .random = random};
        pipeline_set_data_parallel(dp);
        char rerr[ABC_ERRLEN];
        if (is_run) {
            rc = pipeline_train(&c, 0, &g_stop, stderr, err);
            if (dp_before && dp_release(dp, rerr) != 0) {
                fprintf(stderr, "abcprune: error: %s\n", rerr);
                MPI_Abort(comm, 1);
            }
            if (rc) search_release_workers(comm);
        }
        if (!rc) rc = search_run(comm, &c, &o, err);
        if (!rc && (is_run || what == MPI_RANDSEARCH)) /* not search */
            rc = pipeline_finetune(&c, random, &g_stop, stderr, stdout, err);
        pipeline_set_data_parallel(NULL);
        if (dp_after && dp_release(dp, rerr) != 0) {
            fprintf(stderr, "abcprune: error: %s\n", rerr);
            MPI_Abort(comm, 1);
        }
        if (!rc && what == MPI_SEARCH && o.progress) {
            char best[CONFIG_PATH_MAX + 32];
            if (search_path(best, sizeof best, &c, SEARCH_BEST, err) == 0)
                fprintf(stderr, "search done: %s\n", best);
        }
    }
    dp_destroy(dp);
    if (rank == 0 && rc == ABC_ETIMEOUT) {
        /* a hung worker would never reach the barrier: end the job */
        int code = finish(rc, err);
        fflush(stderr);
        MPI_Abort(comm, code);
    }
    return mpi_end(comm, rank, rc, err);
}

/* Parses "A B" (two arguments, no options) of command cmd into args;
 * what names them for the error. Returns 0, -1 after printing help, or
 * EXIT_USAGE after printing the error and usage. */
static int two_args(int argc, char **argv, const char *usage, const char *cmd,
                    const char *what, const char *args[2])
{
    char fmt[64];
    int nargs = 0;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(usage, stdout);
            return -1;
        }
        const char *why = argv[i][0] == '-' ? "is not an option"
                          : nargs == 2      ? "is one argument too many"
                                            : NULL;
        if (why) {
            snprintf(fmt, sizeof fmt, "%s: %%s %s", cmd, why);
            return usage_error(usage, fmt, argv[i]);
        }
        args[nargs++] = argv[i];
    }
    if (nargs == 2) return 0;
    snprintf(fmt, sizeof fmt, "%s: expected %%s", cmd);
    return usage_error(usage, fmt, what);
}

static int cmd_eval(int argc, char **argv)
{
    const char *args[2];
    int u = two_args(argc, argv, usage_eval, "eval", "CONFIG and CKPT", args);
    if (u) return u < 0 ? 0 : u;
    char err[ABC_ERRLEN];
    struct config c;
    int rc = load_config(&c, args[0], err);
    if (rc) return finish(rc, err);
    struct model *m;
    if ((rc = checkpoint_load(args[1], &m, NULL, err))) return finish(rc, err);
    struct data_splits s;
    if ((rc = data_open(&s, &c, 1, err))) {
        model_destroy(m);
        return finish(rc, err);
    }
    if (s.test.c != m->in_c || s.test.h != m->in_h || s.test.w != m->in_w)
        rc = abc_errf(err, ABC_EVALUE,
                      "%s expects %dx%dx%d input, the dataset of %s has "
                      "%dx%dx%d",
                      args[1], m->in_c, m->in_h, m->in_w, args[0], s.test.c,
                      s.test.h, s.test.w);
    double acc = 0, loss = 0;
    if (!rc)
        rc = evaluate(m, &s.test, &s.aug, c.train.batch_size, &acc, &loss, err);
    if (!rc)
        printf("%s: test accuracy %.2f%% (loss %.4f) on %d images; %lld "
               "params, %.2fM MACs/image\n",
               args[1], 100 * acc, loss, s.test.n,
               (long long)model_param_count(m), model_macs(m) / 1e6);
    data_close(&s);
    model_destroy(m);
    return finish(rc, err);
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
        if (l->prunable >= 0) snprintf(pr, sizeof pr, "#%d", l->prunable);
        printf("%-18s %6d %6d %3d %3d %9s %10lld %12lld %5s\n", l->name, l->cin,
               l->cout, l->k, l->stride, outs, (long long)l->params,
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
            if (i + 1 >= argc || parse_shape(argv[i + 1], &ich, &ih, &iw))
                return usage_error(usage_info,
                                   "info: --input expects CxHxW, e.g. "
                                   "3x32x32%s",
                                   "");
            i++;
        } else if (argv[i][0] == '-') {
            return usage_error(usage_info, "info: %s is not an option",
                               argv[i]);
        } else if (path) {
            return usage_error(usage_info, "info: %s is one argument too many",
                               argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path)
        return usage_error(usage_info, "info: %s", "missing CONFIG or CKPT");
    char err[ABC_ERRLEN];
    struct model *m;
    struct memory_estimate me = {0};
    int rc;
    if (has_suffix(path, ".yaml") || has_suffix(path, ".yml")) {
        struct config c;
        config_defaults(&c);
        rc = config_load(&c, path, err);
        for (int i = 0; i < g_nsets && !rc; i++)
            rc = config_set(&c, g_sets[i], err);
        if (rc) return finish(rc, err);
        int ch, h, w;
        pipeline_input_shape(&c, &ch, &h, &w);
        if (ich) ch = ich, h = ih, w = iw;
        if ((rc = pipeline_model_from_config(&m, &c, ch, h, w, err)) ||
            (rc = memory_estimate_config(&c, ch, h, w, &me, err)))
            return finish(rc, err);
    } else {
        if (ich)
            return usage_error(
                usage_info, "info: --input applies to a CONFIG, not %s", path);
        if ((rc = checkpoint_load(path, &m, NULL, err))) return finish(rc, err);
    }
    print_table(m);
    model_destroy(m);
    if (me.total) {
        const double M = 1048576.0;
        uint64_t host = memory_host_bytes();
        printf("memory per worker (estimate): %.1f MiB = params+buffers %.1f "
               "+ grads %.1f + velocity %.1f + pretrained copy %.1f + "
               "activations %.1f (batch %d, %s) + input batch %.1f + data "
               "%.1f (%lld+%lld images, loading peak); this host has %.0f "
               "MiB\n",
               me.total / M, me.param_bytes / M, me.grad_bytes / M,
               me.velocity_bytes / M, me.baseline_bytes / M,
               me.activation_bytes / M, me.batch, me.batch_key,
               me.input_bytes / M, me.data_bytes / M,
               (long long)me.train_images, (long long)me.test_images, host / M);
    }
    return 0;
}

/* Parses "1,2,16" into w[0..max). Returns the count, or -1. */
static int parse_workers(const char *s, int *w, int max)
{
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 1000000 || n == max ||
            (*end && *end != ','))
            return -1;
        w[n++] = (int)v;
        s = *end ? end + 1 : end;
        if (*end && !*s) return -1;
    }
    return n;
}

static int cmd_simulate(int argc, char **argv)
{
    static int workers[64];
    struct sim_opts o = {
        .workers = workers, .sync = 1, .async = 1, .overhead = -1};
    const char *path = NULL, *csv_path = NULL;
    o.nworkers = parse_workers("1,2,3,16,64,256,1024", workers, 64);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (is_help(a)) {
            fputs(usage_simulate, stdout);
            return 0;
        }
        int opt = strcmp(a, "--workers") == 0 || strcmp(a, "--schedule") == 0 ||
                  strcmp(a, "--log") == 0 || strcmp(a, "--csv") == 0 ||
                  strcmp(a, "--overhead") == 0 || strcmp(a, "--group") == 0 ||
                  strcmp(a, "--allreduce") == 0 ||
                  strcmp(a, "--dp-efficiency") == 0;
        if (opt && (i + 1 >= argc || argv[i + 1][0] == '\0'))
            return usage_error(usage_simulate, "simulate: %s needs a value", a);
        const char *v = opt ? argv[++i] : NULL;
        char *end;
        if (strcmp(a, "--workers") == 0) {
            if ((o.nworkers = parse_workers(v, workers, 64)) <= 0)
                return usage_error(usage_simulate,
                                   "simulate: --workers '%s': expected a "
                                   "comma-separated list of 1..1000000 "
                                   "(at most 64)",
                                   v);
        } else if (strcmp(a, "--schedule") == 0) {
            o.sync = strcmp(v, "sync") == 0 || strcmp(v, "both") == 0;
            o.async = strcmp(v, "async") == 0 || strcmp(v, "both") == 0;
            if (!o.sync && !o.async)
                return usage_error(usage_simulate,
                                   "simulate: --schedule '%s': expected sync, "
                                   "async or both",
                                   v);
        } else if (strcmp(a, "--log") == 0) {
            o.log_path = v;
        } else if (strcmp(a, "--csv") == 0) {
            csv_path = v;
        } else if (strcmp(a, "--overhead") == 0) {
            o.overhead = strtod(v, &end);
            if (*end || !(o.overhead >= 0 && o.overhead < 1e6))
                return usage_error(usage_simulate,
                                   "simulate: --overhead '%s': expected "
                                   "seconds >= 0",
                                   v);
        } else if (strcmp(a, "--group") == 0) {
            long gv = strtol(v, &end, 10);
            if (*end || gv < 1 || gv > 65536)
                return usage_error(usage_simulate,
                                   "simulate: --group '%s': expected ranks "
                                   "per evaluation, 1..65536",
                                   v);
            o.group = (int)gv;
        } else if (strcmp(a, "--dp-efficiency") == 0) {
            o.dp_eff = strtod(v, &end);
            if (*end || !(o.dp_eff > 0 && o.dp_eff <= 1))
                return usage_error(usage_simulate,
                                   "simulate: --dp-efficiency '%s': expected "
                                   "a fraction in (0, 1]",
                                   v);
        } else if (strcmp(a, "--allreduce") == 0) {
            o.ar_alpha = strtod(v, &end);
            if (*end == ',') o.ar_beta = strtod(end + 1, &end);
            if (*end || !(o.ar_alpha >= 0 && o.ar_alpha < 10) ||
                !(o.ar_beta >= 0 && o.ar_beta < 1) || !strchr(v, ','))
                return usage_error(usage_simulate,
                                   "simulate: --allreduce '%s': expected "
                                   "ALPHA,BETA: seconds per gradient sum and "
                                   "seconds per byte, e.g. 2e-5,1e-9",
                                   v);
            o.have_ar = 1;
        } else if (a[0] == '-') {
            return usage_error(usage_simulate, "simulate: %s is not an option",
                               a);
        } else if (path) {
            return usage_error(usage_simulate,
                               "simulate: %s is one argument too many", a);
        } else {
            path = a;
        }
    }
    if (!path)
        return usage_error(usage_simulate, "simulate: %s", "missing CONFIG");
    char err[ABC_ERRLEN];
    struct config c;
    int rc = load_config(&c, path, err);
    if (rc) return finish(rc, err);
    FILE *csv = stdout;
    if (csv_path && !(csv = fopen(csv_path, "w"))) {
        rc = abc_errf(err, ABC_EIO, "%s: cannot write", csv_path);
        return finish(rc, err);
    }
    rc = sim_sweep(&c, &o, csv, stderr, err);
    if (csv != stdout && fclose(csv) && !rc)
        rc = abc_errf(err, ABC_EIO, "%s: cannot write", csv_path);
    return finish(rc, err);
}

static const char *usage_import =
    "usage: abcprune import [--force] [-o PATH] CONFIG FILE.safetensors\n"
    "\n"
    "Makes a PyTorch model saved as safetensors (deploy/torch/'s\n"
    "abcprune_torch.save_state_dict, or safetensors' save_file) the\n"
    "baseline of CONFIG: writes OUT/baseline.ckpt (-o: PATH), which run,\n"
    "search, finetune and the methods use as if `train` had made it: it\n"
    "records CONFIG's data split and counts as trained for train.epochs\n"
    "epochs. CONFIG gives the architecture (model.arch), the structure\n"
    "(model.channels, default full), the input shape (its dataset) and the\n"
    "classes; every tensor must fit them. Names: abcprune's (also those of\n"
    "ABCPruner's resnet_cifar.py), or vgg_cifar.py's features.N/classifier\n"
    "with a file that says __metadata__ arch vgg16; with or without\n"
    "DataParallel's module. prefix. Conv biases are folded into the next\n"
    "BN's running mean; F64, F16 and BF16 are converted to float32. An\n"
    "existing file is left alone unless --force.\n";

static const char *usage_export =
    "usage: abcprune export CKPT OUT.safetensors|OUT.onnx\n"
    "\n"
    "Writes checkpoint CKPT (full or pruned) for use outside abcprune, by\n"
    "the extension of OUT:\n"
    "  .safetensors  every tensor as float32 in abcprune's names, with\n"
    "                arch, structure, input_shape and classes in the\n"
    "                __metadata__: abcprune_torch.load(OUT) (deploy/torch/)\n"
    "                rebuilds the nn.Module and loads it with strict=True\n"
    "  .onnx         the inference graph (BN folded into the convs)\n";

/* import: a safetensors file -> the config's baseline checkpoint. */
static int cmd_import(int argc, char **argv)
{
    const char *args[2], *out = NULL;
    int nargs = 0, force = 0;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(usage_import, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--force") == 0) {
            force = 1;
        } else if (strcmp(argv[i], "-o") == 0) {
            if (i + 1 >= argc || argv[i + 1][0] == '\0')
                return usage_error(usage_import, "import: %s needs a path",
                                   "-o");
            out = argv[++i];
        } else if (argv[i][0] == '-') {
            return usage_error(usage_import, "import: %s is not an option",
                               argv[i]);
        } else if (nargs == 2) {
            return usage_error(usage_import,
                               "import: %s is one argument too many", argv[i]);
        } else {
            args[nargs++] = argv[i];
        }
    }
    if (nargs != 2)
        return usage_error(usage_import, "import: %s",
                           "expected CONFIG and FILE.safetensors");
    char err[ABC_ERRLEN], path[CONFIG_PATH_MAX + 32];
    struct config c;
    int rc = load_config(&c, args[0], err);
    if (!rc && !out) {
        rc = search_path(path, sizeof path, &c, SEARCH_BASELINE, err);
        if (!rc) rc = file_make_dirs(c.out_dir, err);
        out = path;
    }
    if (rc) return finish(rc, err);
    if (!force && file_exists(out))
        return finish(abc_errf(err, ABC_EVALUE,
                               "%s exists; import --force replaces it", out),
                      err);
    int ch, h, w;
    pipeline_input_shape(&c, &ch, &h, &w);
    struct model *want = NULL, *m = NULL;
    struct st_file f;
    if ((rc = pipeline_model_from_config(&want, &c, ch, h, w, err)))
        return finish(rc, err);
    if ((rc = st_read(&f, args[1], err))) {
        model_destroy(want);
        return finish(rc, err);
    }
    struct stmodel_want sw = {.arch = want->arch,
                              .in_c = ch,
                              .in_h = h,
                              .in_w = w,
                              .classes = want->num_classes,
                              .channels = want->channels,
                              .config = c.path};
    struct stmodel_report rep;
    rc = stmodel_import(&m, &f, &sw, &rep, err);
    st_free(&f);
    model_destroy(want);
    if (rc) return finish(rc, err);
    struct train_state st = {.epoch = c.train.epochs};
    checkpoint_set_split(&st, &c);
    rc = checkpoint_save(out, m, &st, err);
    if (!rc)
        fprintf(stderr,
                "imported %s: %s, %lld params, %.2fM MACs/image (%s names%s; "
                "%d conv biases folded into BN, %d tensors converted to "
                "float32, %d num_batches_tracked ignored) -> %s, on the "
                "split of %s\n",
                args[1], arch_name(m->arch), (long long)model_param_count(m),
                model_macs(m) / 1e6,
                rep.abcpruner_vgg ? "ABCPruner VGG" : "abcprune",
                rep.module_prefix ? ", module. prefix" : "", rep.folded,
                rep.converted, rep.ignored_batches, out, c.path);
    model_destroy(m);
    return finish(rc, err);
}

/* export: a checkpoint -> safetensors (PyTorch) or ONNX. */
static int cmd_export(int argc, char **argv)
{
    const char *args[2];
    int u = two_args(argc, argv, usage_export, "export",
                     "CKPT and OUT.safetensors or OUT.onnx", args);
    if (u) return u < 0 ? 0 : u;
    int onnx = has_suffix(args[1], ".onnx");
    if (!onnx && !has_suffix(args[1], ".safetensors"))
        return usage_error(usage_export,
                           "export: %s: expected a name ending in "
                           ".safetensors or .onnx",
                           args[1]);
    char err[ABC_ERRLEN];
    struct model *m;
    int rc = checkpoint_load(args[0], &m, NULL, err);
    if (rc) return finish(rc, err);
    rc = onnx ? onnx_export(m, args[1], err) : stmodel_export(m, args[1], err);
    if (!rc)
        fprintf(stderr, "exported %s (%s, %lld params) -> %s\n", args[0],
                arch_name(m->arch), (long long)model_param_count(m), args[1]);
    model_destroy(m);
    return finish(rc, err);
}

int cli_main(int argc, char **argv, role_serve_fn serve)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return EXIT_USAGE;
    }
    install_signals();
    int u = take_out_dir(&argc, argv);
    if (u) return u;
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
    if (strcmp(cmd, "search") == 0)
        return mpi_main(argc - 2, argv + 2, usage_search, "search", MPI_SEARCH,
                        serve);
    if (strcmp(cmd, "proxycheck") == 0)
        return mpi_main(argc - 2, argv + 2, usage_proxycheck, "proxycheck",
                        MPI_PROXYCHECK, serve);
    if (strcmp(cmd, "randsearch") == 0)
        return mpi_main(argc - 2, argv + 2, usage_randsearch, "randsearch",
                        MPI_RANDSEARCH, serve);
    if (strcmp(cmd, "finetune") == 0) return cmd_finetune(argc - 2, argv + 2);
    if (strcmp(cmd, "run") == 0)
        return mpi_main(argc - 2, argv + 2, usage_run, "run", MPI_RUN, serve);
    for (int m = 0; m < METHOD_COUNT; m++)
        if (strcmp(cmd, method_name((enum method)m)) == 0)
            return cmd_method(argc - 2, argv + 2, (enum method)m);
    if (strcmp(cmd, "eval") == 0) return cmd_eval(argc - 2, argv + 2);
    if (strcmp(cmd, "info") == 0) return cmd_info(argc - 2, argv + 2);
    if (strcmp(cmd, "simulate") == 0) return cmd_simulate(argc - 2, argv + 2);
    if (strcmp(cmd, "import") == 0) return cmd_import(argc - 2, argv + 2);
    if (strcmp(cmd, "export") == 0) return cmd_export(argc - 2, argv + 2);
    return usage_error(usage_main, "unknown command '%s'", cmd);
}

/* main.c - the abcprune program's entry: the one file that sees both roles.
 * It is compiled into the executable only, never into a folder's library:
 * the command line (coordinator/) gets the worker loop (worker/) as a
 * function, so coordinator/ and worker/ never include each other. */
#include <malloc.h>

#include "roles.h"
#include "worker.h"

int main(int argc, char **argv)
{
    /* Freed memory stays in the heap for the next allocation instead of
     * going back to the kernel: every search candidate builds a model
     * whose activation arena (tens of MB) would otherwise be a fresh
     * mapping, its pages faulted in again on first touch (the glibc
     * tunables of PyTorch's best CPU setup, bench/run_bench.sh, do the
     * same). A pruned ResNet-20 candidate's first training step took
     * ~0.12 s longer without it, ~3 % of its evaluation. */
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    return cli_main(argc, argv, worker_serve);
}

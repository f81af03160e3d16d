/* threads.c - OpenMP/OpenBLAS thread count from config or environment. */
#include "core/threads.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>

static int env_int(const char *name)
{
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    return (*end == '\0' && v > 0 && v < 4096) ? (int)v : 0;
}

int threads_setup(int requested)
{
    int n = requested;
    if (n <= 0) n = env_int("OMP_NUM_THREADS");
    if (n <= 0) n = env_int("SLURM_CPUS_PER_TASK");
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    return n;
}

/* threads.h - one place that decides how many OpenMP + OpenBLAS threads a
 * process uses: the config's `threads`, else OMP_NUM_THREADS, else
 * SLURM_CPUS_PER_TASK, else every processor. */
#ifndef ABC_THREADS_H
#define ABC_THREADS_H

/* Sets the OpenMP and OpenBLAS thread counts and returns the count used.
 * requested > 0 wins over the environment. */
int threads_setup(int requested);

#endif

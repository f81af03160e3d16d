/* bench_allreduce.c - what one gradient sum of data-parallel training
 * costs on this machine: the alpha-beta model the simulator's evaluation
 * groups use (abcprune simulate --allreduce ALPHA,BETA).
 *
 *   mpirun -np 2 build/bench_allreduce [REPS]
 *
 * Times the engine's hook (proto/dp.c, the default ordered reduction) on
 * sizes from 4 KB to 16 MB, REPS repetitions each (default 50; each the
 * slowest rank's time), fits t = alpha + beta * bytes by least squares on
 * the per-size medians, prints the table and one JSON line, and the CPU
 * model. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "dp.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void cpu_model(char *buf, size_t n)
{
    snprintf(buf, n, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                snprintf(buf, n, "%s", v + 2);
                buf[strcspn(buf, "\n")] = '\0';
            }
            break;
        }
    fclose(f);
}

int main(int argc, char **argv)
{
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) return 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    int reps = argc > 1 ? atoi(argv[1]) : 50;
    char err[ABC_ERRLEN];
    struct dp *dp = NULL;
    if (reps < 3 || size < 2 || dp_create(&dp, MPI_COMM_WORLD, err)) {
        if (rank == 0)
            fprintf(stderr,
                    "usage: mpirun -np 2 bench_allreduce [REPS >= 3]%s%s\n",
                    dp ? "" : ": ", dp ? "" : err);
        MPI_Finalize();
        return 2;
    }
    struct train_dp *h = dp_hook(dp);
    enum { NSIZES = 7 };
    const size_t floats[NSIZES] = {1024,   8192,    65536,  262144,
                                   524288, 1048576, 4194304};
    float *v = malloc(sizeof(float) * floats[NSIZES - 1]);
    double *t = malloc(sizeof(double) * (size_t)reps);
    double x[NSIZES], y[NSIZES];
    if (!v || !t) MPI_Abort(MPI_COMM_WORLD, 1);
    if (rank == 0) printf("ranks,bytes,median_us,min_us\n");
    for (int k = 0; k < NSIZES; k++) {
        size_t n = floats[k];
        for (int i = 0; i < reps; i++) {
            for (size_t j = 0; j < n; j++)
                v[j] = (float)((j + (size_t)rank) % 97) * 0.01f;
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            if (h->sum_floats(h->ctx, v, n, err)) {
                fprintf(stderr, "bench_allreduce: %s\n", err);
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
            t[i] = MPI_Wtime() - t0;
        }
        MPI_Allreduce(MPI_IN_PLACE, t, reps, MPI_DOUBLE, MPI_MAX,
                      MPI_COMM_WORLD);
        qsort(t, (size_t)reps, sizeof *t, cmp_double);
        x[k] = 4.0 * (double)n;
        y[k] = t[reps / 2];
        if (rank == 0)
            printf("%d,%.0f,%.1f,%.1f\n", size, x[k], 1e6 * y[k], 1e6 * t[0]);
    }
    /* least squares y = alpha + beta x */
    double mx = 0, my = 0, sxx = 0, sxy = 0;
    for (int k = 0; k < NSIZES; k++)
        mx += x[k] / NSIZES, my += y[k] / NSIZES;
    for (int k = 0; k < NSIZES; k++) {
        sxx += (x[k] - mx) * (x[k] - mx);
        sxy += (x[k] - mx) * (y[k] - my);
    }
    double beta = sxy / sxx, alpha = my - beta * mx;
    if (alpha < 0) alpha = y[0]; /* the smallest size's time bounds it */
    if (rank == 0) {
        char cpu[256];
        cpu_model(cpu, sizeof cpu);
        printf("{\"ranks\":%d,\"alpha_s\":%.3g,\"beta_s_per_byte\":%.3g,"
               "\"cpu\":\"%s\",\"reps\":%d}\n",
               size, alpha, beta, cpu, reps);
        printf("abcprune simulate --allreduce %.3g,%.3g ...\n", alpha, beta);
    }
    free(v);
    free(t);
    dp_destroy(dp);
    MPI_Finalize();
    return 0;
}

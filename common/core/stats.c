/* stats.c - rank correlations and the bootstrap (see stats.h). */
#include "core/stats.h"

#include <math.h>
#include <stdlib.h>

#include "core/rng.h"

static int sign(double d)
{
    return (d > 0) - (d < 0);
}

double stats_kendall_tau_b(const double *x, const double *y, int n)
{
    if (n < 2) return NAN;
    double nc = 0, nd = 0, tx = 0, ty = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            int s = sign(x[i] - x[j]) * sign(y[i] - y[j]);
            nc += s > 0;
            nd += s < 0;
            tx += x[i] == x[j];
            ty += y[i] == y[j];
        }
    double n0 = 0.5 * n * (n - 1);
    double den = sqrt((n0 - tx) * (n0 - ty));
    return den > 0 ? (nc - nd) / den : NAN;
}

/* Average ranks (1-based) of v[0..n) into r. */
static int ranks(const double *v, int n, double *r)
{
    int *ord = malloc(sizeof(int) * (size_t)n);
    if (!ord) return -1;
    for (int i = 0; i < n; i++)
        ord[i] = i;
    /* insertion sort: n is a few dozen structures */
    for (int i = 1; i < n; i++) {
        int k = ord[i], j = i - 1;
        while (j >= 0 && v[ord[j]] > v[k]) {
            ord[j + 1] = ord[j];
            j--;
        }
        ord[j + 1] = k;
    }
    for (int i = 0; i < n;) {
        int j = i;
        while (j + 1 < n && v[ord[j + 1]] == v[ord[i]])
            j++;
        for (int k = i; k <= j; k++)
            r[ord[k]] = 0.5 * (i + j) + 1;
        i = j + 1;
    }
    free(ord);
    return 0;
}

double stats_spearman_rho(const double *x, const double *y, int n)
{
    if (n < 2) return NAN;
    double *rx = malloc(sizeof(double) * (size_t)n);
    double *ry = malloc(sizeof(double) * (size_t)n);
    double rho = NAN;
    if (rx && ry && ranks(x, n, rx) == 0 && ranks(y, n, ry) == 0) {
        double mx = 0, my = 0;
        for (int i = 0; i < n; i++)
            mx += rx[i], my += ry[i];
        mx /= n;
        my /= n;
        double sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < n; i++) {
            sxy += (rx[i] - mx) * (ry[i] - my);
            sxx += (rx[i] - mx) * (rx[i] - mx);
            syy += (ry[i] - my) * (ry[i] - my);
        }
        if (sxx > 0 && syy > 0) rho = sxy / sqrt(sxx * syy);
    }
    free(rx);
    free(ry);
    return rho;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of sorted v[0..n) (linear interpolation). */
static double quantile(const double *v, int n, double q)
{
    double pos = q * (n - 1);
    int i = (int)floor(pos);
    if (i >= n - 1) return v[n - 1];
    return v[i] + (pos - i) * (v[i + 1] - v[i]);
}

int stats_bootstrap_ci(double (*stat)(const double *, const double *, int),
                       const double *x, const double *y, int n, int B,
                       uint64_t seed, double *lo, double *hi)
{
    *lo = *hi = NAN;
    if (n < 1 || B < 1) return 0;
    double *bx = malloc(sizeof(double) * (size_t)n);
    double *by = malloc(sizeof(double) * (size_t)n);
    double *vals = malloc(sizeof(double) * (size_t)B);
    if (!bx || !by || !vals) {
        free(bx);
        free(by);
        free(vals);
        return -1;
    }
    struct rng r;
    rng_seed(&r, seed);
    int m = 0;
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < n; i++) {
            int k = (int)rng_below(&r, (uint64_t)n);
            bx[i] = x[k];
            by[i] = y[k];
        }
        double v = stat(bx, by, n);
        if (isfinite(v)) vals[m++] = v;
    }
    if (m > 0) {
        qsort(vals, (size_t)m, sizeof *vals, cmp_double);
        *lo = quantile(vals, m, 0.025);
        *hi = quantile(vals, m, 0.975);
    }
    free(bx);
    free(by);
    free(vals);
    return 0;
}

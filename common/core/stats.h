/* stats.h - rank correlations with bootstrap intervals, for judging how
 * well a cheap fitness proxy ranks structures the way their fine-tuned
 * accuracy does (proxycheck). Pure functions of their inputs. */
#ifndef ABC_STATS_H
#define ABC_STATS_H

#include <stdint.h>

/* Kendall's tau-b of x and y (n pairs): (concordant - discordant) /
 * sqrt((n0 - tx)(n0 - ty)), n0 = n(n-1)/2 pairs, tx / ty the pairs tied in
 * x / y. NaN when n < 2 or either side is all ties. */
double stats_kendall_tau_b(const double *x, const double *y, int n);

/* Spearman's rho: Pearson's correlation of the average ranks (ties share
 * their mean rank). NaN when n < 2 or either side is constant. Returns
 * NaN as well when out of memory. */
double stats_spearman_rho(const double *x, const double *y, int n);

/* Percentile bootstrap: B resamples of the n pairs with replacement
 * (draws from seed), stat computed on each; *lo / *hi the 2.5 % and
 * 97.5 % quantiles of the finite values (NaN if none). Returns 0, or -1
 * out of memory. */
int stats_bootstrap_ci(double (*stat)(const double *, const double *, int),
                       const double *x, const double *y, int n, int B,
                       uint64_t seed, double *lo, double *hi);

#endif

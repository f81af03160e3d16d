/* test_stats.c - rank correlations against values worked by hand, and the
 * bootstrap interval's basic properties (common/core/stats.c). */
#include <math.h>

#include "check.h"
#include "core/stats.h"

static void near(const char *what, double got, double want)
{
    CHECK(fabs(got - want) < 1e-9, "%s: %.12g, expected %.12g", what, got,
          want);
}

int main(void)
{
    /* 10 pairs: 7 concordant, 3 discordant ((1,2), (1,3), (4,5)): 0.4.
     * Rank differences -2, 1, 1, -1, 1: rho = 1 - 6*8/(5*24) = 0.6. */
    double x[] = {1, 2, 3, 4, 5}, y[] = {3, 1, 2, 5, 4};
    near("tau, no ties", stats_kendall_tau_b(x, y, 5), 0.4);
    near("rho, no ties", stats_spearman_rho(x, y, 5), 0.6);
    /* A tie in x: 5 concordant of 6 pairs, 1 tied in x:
     * tau-b = 5 / sqrt(5 * 6). Ranks x 1, 2.5, 2.5, 4 and y 1, 3, 2, 4:
     * rho = 4.5 / sqrt(4.5 * 5). */
    double tx[] = {1, 2, 2, 3}, ty[] = {1, 3, 2, 4};
    near("tau-b, a tie", stats_kendall_tau_b(tx, ty, 4), 5 / sqrt(30));
    near("rho, a tie", stats_spearman_rho(tx, ty, 4), 4.5 / sqrt(22.5));
    double up[] = {0.1, 0.5, 0.7, 0.9}, down[] = {4, 3, 2, 1};
    near("tau, reversed", stats_kendall_tau_b(up, down, 4), -1);
    near("rho, reversed", stats_spearman_rho(up, down, 4), -1);
    near("tau, itself", stats_kendall_tau_b(up, up, 4), 1);
    double flat[] = {2, 2, 2, 2};
    CHECK(isnan(stats_kendall_tau_b(up, flat, 4)) &&
              isnan(stats_spearman_rho(up, flat, 4)) &&
              isnan(stats_kendall_tau_b(up, up, 1)),
          "a constant side or one pair has no correlation");

    double lo, hi, lo2, hi2;
    CHECK(stats_bootstrap_ci(stats_kendall_tau_b, up, up, 4, 500, 7, &lo,
                             &hi) == 0 &&
              lo == 1 && hi == 1,
          "a perfect ranking: [%g, %g], expected [1, 1]", lo, hi);
    stats_bootstrap_ci(stats_kendall_tau_b, x, y, 5, 1000, 7, &lo, &hi);
    stats_bootstrap_ci(stats_kendall_tau_b, x, y, 5, 1000, 7, &lo2, &hi2);
    CHECK(lo <= 0.4 && 0.4 <= hi && lo >= -1 && hi <= 1 && hi - lo > 0.3,
          "tau 0.4 of 5 pairs: interval [%g, %g]", lo, hi);
    CHECK(lo == lo2 && hi == hi2, "the same seed, another interval");
    return check_finish("test_stats");
}

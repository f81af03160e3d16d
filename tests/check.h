/* check.h - the tiny assertion kit every test uses. A failed check prints
 * file:line and the values, counts as a failure, and the test's main returns
 * check_finish(), which is non-zero when anything failed. Never assert(). */
#ifndef ABC_CHECK_H
#define ABC_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int check_failures_;
static int check_count_;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        check_count_++;                                                        \
        if (!(cond)) {                                                         \
            check_failures_++;                                                 \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
        }                                                                      \
    } while (0)

/* Compares two float arrays: |a-b| <= atol + rtol*|b| elementwise. Prints
 * the max abs difference either way, and the first offending index. */
static inline int check_close_f(const char *what, const float *a,
                                const float *b, size_t n, double atol,
                                double rtol, const char *file, int line)
{
    double maxd = 0;
    size_t bad = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= atol + rtol * fabs((double)b[i])) && bad == (size_t)-1)
            bad = i;
        if (d > maxd || d != d) maxd = d;
    }
    check_count_++;
    if (bad != (size_t)-1) {
        check_failures_++;
        fprintf(stderr,
                "FAIL %s:%d: %s: max|diff| %.3g, first bad [%zu] %.8g vs "
                "%.8g (atol %.1g rtol %.1g)\n",
                file, line, what, maxd, bad, a[bad], b[bad], atol, rtol);
        return 0;
    }
    printf("ok   %s: max|diff| %.3g over %zu values\n", what, maxd, n);
    return 1;
}
#define CHECK_CLOSE(what, a, b, n, atol, rtol)                                 \
    check_close_f(what, a, b, n, atol, rtol, __FILE__, __LINE__)

/* max |a - b| / max |b| over n values (NaN counts as an error), for
 * reporting how close two computations of one quantity came. */
static inline double check_rel_err(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > num || d != d) num = d;
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return den > 0 ? num / den : num;
}

static inline int check_finish(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, check_count_, check_failures_);
    return check_failures_ ? 1 : 0;
}

#endif

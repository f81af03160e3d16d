"""paired_stats.py - paired comparisons over seeds (stdlib only).

Used by compare_report.py (and proxycheck's report) for the verdict on
paired differences d_s = a_s - b_s, one per seed:
  t_interval(d)   mean and two-sided 95 % Student-t interval
  wilcoxon_p(d)   exact two-sided Wilcoxon signed-rank p-value (zeros
                  dropped, tied |d| given their average rank, p from all
                  2^n sign patterns: exact for the n <= 20 seeds of a
                  comparison)
  verdict(d)      "better" / "worse" / "no difference" from the interval
Run as a script it checks itself against values worked by hand."""
import itertools
import math

# Two-sided 95 % quantiles of Student's t, df = 1..30 (then the normal's).
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262,
         2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101,
         2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052,
         2.048, 2.045, 2.042]


def t975(df):
    """The 0.975 quantile of Student's t with df degrees of freedom."""
    if df < 1:
        raise ValueError("t quantile needs df >= 1")
    return _T975[df - 1] if df <= 30 else 1.960


def t_interval(d):
    """(mean, low, high) of the 95 % t-interval of the mean of d; with one
    value the interval is (nan, nan)."""
    n = len(d)
    if n == 0:
        raise ValueError("no paired differences")
    m = sum(d) / n
    if n < 2:
        return m, float("nan"), float("nan")
    sd = math.sqrt(sum((x - m) ** 2 for x in d) / (n - 1))
    h = t975(n - 1) * sd / math.sqrt(n)
    return m, m - h, m + h


def _ranks(values):
    """Average ranks (1-based) of values, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def wilcoxon_p(d, eps=1e-12):
    """Exact two-sided p of the Wilcoxon signed-rank test of d (zeros, |x|
    <= eps, dropped). 1.0 when no non-zero difference is left."""
    nz = [x for x in d if abs(x) > eps]
    n = len(nz)
    if n == 0:
        return 1.0
    if n > 20:
        raise ValueError("exact Wilcoxon enumerates 2^n patterns: n <= 20")
    r = _ranks([abs(x) for x in nz])
    w_plus = sum(rk for rk, x in zip(r, nz) if x > 0)
    total = sum(r)
    # statistic: distance of W+ from its mean total/2; two-sided
    obs = abs(w_plus - total / 2)
    hits = 0
    for signs in itertools.product((0, 1), repeat=n):
        w = sum(rk for rk, s in zip(r, signs) if s)
        if abs(w - total / 2) >= obs - 1e-9:
            hits += 1
    return hits / 2 ** n


def verdict(d):
    """'better' when the whole 95 % interval is above 0, 'worse' when below,
    else 'no difference' ('too few seeds' under 2)."""
    m, lo, hi = t_interval(d)
    if math.isnan(lo):
        return "too few seeds"
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    return "no difference"


def _selftest():
    # t: d = 1, 2, 3: mean 2, sd 1, h = 4.303 / sqrt(3) = 2.4843
    m, lo, hi = t_interval([1, 2, 3])
    assert abs(m - 2) < 1e-12 and abs(hi - 2 - 4.303 / math.sqrt(3)) < 1e-9
    # Wilcoxon: 5 positive differences, W+ = 15 of 15: only all-plus and
    # all-minus are as extreme: p = 2 / 32
    assert abs(wilcoxon_p([1, 2, 3, 4, 5]) - 2 / 32) < 1e-12
    # [1, -2, 3, 4, 5]: ranks 1..5, W+ = 13, mean 7.5, distance 5.5. Sign
    # subsets with rank sum >= 13 are the complements of sums <= 2: {}, {1},
    # {2}; and 3 with sum <= 2: p = 6 / 32 = 0.1875
    assert abs(wilcoxon_p([1, -2, 3, 4, 5]) - 0.1875) < 1e-12
    # ties: [1, 1, -1]: ranks 2, 2, 2, W+ = 4, mean 3, distance 1; every
    # pattern has W+ in {0, 2, 4, 6}, at distance >= 1: p = 1
    assert wilcoxon_p([1, 1, -1]) == 1.0
    assert wilcoxon_p([0, 0]) == 1.0
    assert verdict([2, 2.1, 1.9]) == "better" and verdict([-1, 1, 0.5]) == \
        "no difference" and verdict([-2, -2.1, -1.9]) == "worse"
    assert verdict([1, 2, 3]) == "no difference"  # 2 +- 2.48
    print("paired_stats: self-test ok")


if __name__ == "__main__":
    _selftest()

#!/usr/bin/python3
"""compare_report.py OUT - the table of deploy/compare.sh (stdlib only).

Reads every point OUT/t<target>/s<seed>/ (abc: report.json, abc.search_s,
abc.finetune_s; other methods: <method>/report.json, <method>.wall_s,
<method>/finetune.jsonl) and writes
  OUT/compare.csv        one row per run
  OUT/compare.md         per target: mean +- sample std over seeds per method,
                         then the paired verdict: per seed d = method -
                         uniform (and abc - randsearch) in test accuracy
                         points; mean, 95 % t-interval, exact Wilcoxon
                         signed-rank p over seeds (every method of a seed
                         fine-tunes with the same seed, so runs pair up)
  OUT/compare_deltas.dat gnuplot: per target, one row per comparison: index,
                         mean, low, high (points)
  OUT/compare_means.dat  gnuplot blocks (one per method): MACs (M), mean
                         test accuracy (%), std
  OUT/compare_methods.txt  the methods of those blocks, in order
Exits 1 with the file named when a report is missing or unreadable."""
import csv
import glob
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import paired_stats  # noqa: E402

METHODS = ["abc", "randsearch", "slim", "lasso", "uniform", "random"]
# (method, reference) pairs of the verdict, where both were run.
PAIRS = [(m, "uniform") for m in METHODS if m != "uniform"] + \
    [("abc", "randsearch")]


def fail(msg):
    print("compare_report.py: " + msg, file=sys.stderr)
    sys.exit(1)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail("%s: %s" % (path, e))


def read_number(path):
    try:
        with open(path) as f:
            return float(f.read().strip())
    except (OSError, ValueError) as e:
        fail("%s: expected a number of seconds: %s" % (path, e))


def epoch_seconds(path):
    total = 0.0
    if not os.path.exists(path):
        return total
    with open(path) as f:
        for n, line in enumerate(f, 1):
            try:
                e = json.loads(line)
            except ValueError:
                fail("%s:%d: not JSON" % (path, n))
            if e.get("event") == "epoch":
                total += float(e.get("epoch_s", 0))
    return total


def rows_of(out):
    rows = []
    for point in sorted(glob.glob(os.path.join(out, "t*", "s*"))):
        target = float(os.path.basename(os.path.dirname(point))[1:])
        seed = int(os.path.basename(point)[1:])
        for m in METHODS:
            if m in ("abc", "randsearch"):
                sub = point if m == "abc" else os.path.join(point, m)
                rp = os.path.join(sub, "report.json")
                if not os.path.exists(os.path.join(point, m + ".search_s")):
                    continue
                choose = read_number(os.path.join(point, m + ".search_s"))
                ft = read_number(os.path.join(point, m + ".finetune_s"))
            else:
                rp = os.path.join(point, m, "report.json")
                wp = os.path.join(point, m + ".wall_s")
                if not os.path.exists(wp):
                    continue
                ft = epoch_seconds(os.path.join(point, m, "finetune.jsonl"))
                choose = max(0.0, read_number(wp) - ft)
            r = read_json(rp)
            rows.append({
                "target": target, "seed": seed, "method": m,
                "macs": r["pruned_macs"], "macs_reduction": r["flops_reduction"],
                "params": r["pruned_params"],
                "params_reduction": r["params_reduction"],
                "test_acc": r["pruned_test_acc"],
                "baseline_test_acc": r["baseline_test_acc"],
                "baseline_macs": r["baseline_macs"],
                "baseline_params": r["baseline_params"],
                "choose_epochs": r["prune_epochs"],
                "finetune_epochs": r["finetune_epochs"],
                "choose_wall_s": round(choose, 1),
                "finetune_wall_s": round(ft, 1),
                "structure": " ".join(map(str, r["structure"])),
            })
    return rows


def mean_sd(xs):
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, 0.0
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def paired_section(rows, target, deltas):
    """The Markdown lines of the paired verdict at one target; appends each
    comparison's (target, label, mean, low, high) to deltas."""
    acc = {(r["method"], r["seed"]): 100 * r["test_acc"]
           for r in rows if r["target"] == target}
    out = []
    for m, ref in PAIRS:
        seeds = sorted(s for (mm, s) in acc if mm == m and (ref, s) in acc)
        if not seeds:
            continue
        d = [acc[(m, s)] - acc[(ref, s)] for s in seeds]
        mean, lo, hi = paired_stats.t_interval(d)
        p = paired_stats.wilcoxon_p(d)
        if not out:
            out += ["Paired differences in test accuracy (points; per seed "
                    "the same fine-tune seed for every method):", "",
                    "| comparison | seeds | mean Δ | 95 % t-interval "
                    "| Wilcoxon p | verdict | per seed |",
                    "|---|---|---|---|---|---|---|"]
        ci = "n/a" if math.isnan(lo) else "[%+.2f, %+.2f]" % (lo, hi)
        out.append("| %s − %s | %d | %+.2f | %s | %.3f | %s | %s |"
                   % (m, ref, len(d), mean, ci, p, paired_stats.verdict(d),
                      " ".join("%+.2f" % x for x in d)))
        deltas.append((target, "%s-%s" % (m, ref), mean,
                       mean if math.isnan(lo) else lo,
                       mean if math.isnan(hi) else hi))
    return out + [""] if out else []


def main():
    if len(sys.argv) != 2:
        fail("usage: compare_report.py OUT")
    out = sys.argv[1]
    rows = rows_of(out)
    if not rows:
        fail("%s: no finished runs (t*/s*/...)" % out)
    with open(os.path.join(out, "compare.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    base = rows[0]
    lines = ["Baseline: %.2f %% test accuracy, %.2fM MACs, %.3fM params."
             % (100 * base["baseline_test_acc"], base["baseline_macs"] / 1e6,
                base["baseline_params"] / 1e6), ""]
    means = {}
    deltas = []  # (target, label, mean, low, high)
    for target in sorted({r["target"] for r in rows}):
        lines += ["FLOPs target %.0f %% of the baseline:" % (100 * target), "",
                  "| method | MACs | FLOPs cut | params | params cut "
                  "| test acc % (mean ± sd) | seeds | choose: epochs "
                  "| choose: wall s | fine-tune wall s |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        stats = []
        for m in METHODS:
            rs = [r for r in rows if r["target"] == target and r["method"] == m]
            if not rs:
                continue
            acc = mean_sd([100 * r["test_acc"] for r in rs])
            macs = mean_sd([r["macs"] / 1e6 for r in rs])
            stats.append((acc, m, rs, macs))
            means.setdefault(m, []).append((macs[0], acc[0], acc[1]))
        stats.sort(key=lambda s: -s[0][0])
        for acc, m, rs, macs in stats:
            avg = lambda k: sum(r[k] for r in rs) / len(rs)
            lines.append(
                "| %s | %.2fM | %.1f %% | %.3fM | %.1f %% | %.2f ± %.2f | %d "
                "| %.2f | %.0f | %.0f |"
                % (m, macs[0], 100 * avg("macs_reduction"), avg("params") / 1e6,
                   100 * avg("params_reduction"), acc[0], acc[1], len(rs),
                   avg("choose_epochs"), avg("choose_wall_s"),
                   avg("finetune_wall_s")))
        lines.append("")
        lines += paired_section(rows, target, deltas)
    with open(os.path.join(out, "compare.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(out, "compare_means.dat"), "w") as f:
        for m in METHODS:
            if m not in means:
                continue
            f.write("# %s\n" % m)
            for x, y, e in sorted(means[m]):
                f.write("%.4f %.4f %.4f\n" % (x, y, e))
            f.write("\n\n")
    with open(os.path.join(out, "compare_deltas.dat"), "w") as f:
        f.write("# target comparison mean low high (test accuracy points)\n")
        for i, (t, label, m, lo, hi) in enumerate(deltas):
            f.write("%d %.2f \"%s\" %.4f %.4f %.4f\n" % (i, t, label, m, lo, hi))
    with open(os.path.join(out, "compare_methods.txt"), "w") as f:
        f.write(" ".join(m for m in METHODS if m in means) + "\n")
    print("\n".join(lines))
    print("wrote %s/compare.csv, compare.md, compare_means.dat" % out)


main()

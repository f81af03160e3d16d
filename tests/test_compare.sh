#!/usr/bin/env bash
# test_compare.sh - deploy/compare.sh on a tiny config (smallnet, 2k
# images): abc, randsearch and uniform x three seeds at one target. The CSV
# has one row per run with MACs within the target, the Markdown table has
# the target's section with every method and "mean ± sd" over 3 seeds that
# match the CSV's accuracies; the paired section's mean differences and
# 95 % t-intervals (t 4.303 at 2 degrees of freedom) match the CSV's
# per-seed differences; paired_stats passes its hand-worked self-test; both
# plots are PNGs; a second call skips finished runs (same CSV); bad
# arguments exit 2.
# usage: test_compare.sh SOURCE_DIR ABCPRUNE MPIEXEC WORKDIR
set -u
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
src="$1"
exe="$2"
mpiexec="$3"
work="$4/compare"
check_workdir "$work"

cat >c.yaml <<YAML
seed: 5
threads: 1
data: {val_size: 400, train_subset: 2048, test_subset: 500, crop_pad: 0, flip: false}
model: {arch: smallnet}
train: {epochs: 2, batch_size: 64, lr: 0.1}
finetune: {epochs: 1, batch_size: 64, lr: 0.02, inherit: baseline}
search:
  sn: 3
  max_cycles: 1
  alpha: 1.0
  fitness: {train_images: 256, val_images: 200, steps: 2, batch_size: 64}
YAML
launcher="$mpiexec --oversubscribe --allow-run-as-root"
"$src/deploy/compare.sh" -b "$exe" -M "$launcher" -n 2 -t 0.4 -s 1,2,3 -m abc,randsearch,uniform -o out c.yaml >log.txt 2>&1
check "compare.sh exits 0" test $? -eq 0 || tail -20 log.txt
check "CSV: 9 runs within the target" $py - out/compare.csv <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for r in rows: print(r["method"], r["seed"], r["macs"], r["baseline_macs"], r["test_acc"])
ok = len(rows) == 9 and sorted((r["method"], r["seed"]) for r in rows) == \
    sorted((m, s) for m in ("abc", "randsearch", "uniform") for s in "123") and \
    all(float(r["macs"]) <= 0.4 * float(r["baseline_macs"]) for r in rows)
sys.exit(0 if ok else 1)
PY
check "table: mean ± sd of each method matches the CSV" $py - out/compare.csv out/compare.md <<'PY'
import csv, re, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
md = open(sys.argv[2]).read()
ok = "FLOPs target 40 %" in md
for m in ("abc", "randsearch", "uniform"):
    accs = [100 * float(r["test_acc"]) for r in rows if r["method"] == m]
    want = "%.2f ± %.2f" % (statistics.mean(accs), statistics.stdev(accs))
    line = re.search(r"^\| %s \|.*$" % m, md, re.M)
    print(m, want, line.group(0) if line else None)
    ok = ok and line is not None and want in line.group(0) and "| 3 |" in line.group(0)
sys.exit(0 if ok else 1)
PY
check "paired section: mean Δ and t-interval from the CSV's per-seed pairs" $py - out/compare.csv out/compare.md <<'PY'
import csv, math, re, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
md = open(sys.argv[2]).read()
acc = {(r["method"], r["seed"]): 100 * float(r["test_acc"]) for r in rows}
ok = "Paired differences" in md
for a, b in (("abc", "uniform"), ("randsearch", "uniform"), ("abc", "randsearch")):
    d = [acc[(a, s)] - acc[(b, s)] for s in "123"]
    m = statistics.mean(d)
    h = 4.303 * statistics.stdev(d) / math.sqrt(3)
    line = re.search(r"^\| %s − %s \| 3 \|.*$" % (a, b), md, re.M)
    want = ["%+.2f" % m, "[%+.2f, %+.2f]" % (m - h, m + h),
            " ".join("%+.2f" % x for x in d)]
    print(a, b, want, line.group(0) if line else None)
    ok = ok and line is not None and all(w in line.group(0) for w in want)
sys.exit(0 if ok else 1)
PY
check "paired_stats: hand-worked t-intervals and exact Wilcoxon p" $py "$src/deploy/paired_stats.py"
check "the paired plot is a PNG" $py -c "import sys; sys.exit(0 if open('out/paired_deltas.png','rb').read(8) == b'\x89PNG\r\n\x1a\n' else 1)"
check "plot is a PNG" $py -c "import sys; sys.exit(0 if open('out/accuracy_vs_flops.png','rb').read(8) == b'\x89PNG\r\n\x1a\n' else 1)"
cp out/compare.csv first.csv
"$src/deploy/compare.sh" -b "$exe" -M "$launcher" -n 2 -t 0.4 -s 1,2,3 -m abc,randsearch,uniform -o out c.yaml >log2.txt 2>&1
check "a second call exits 0" test $? -eq 0
check "and reruns nothing (no method output)" test "$(grep -c '^== target' log2.txt)" -eq 0
check "the same CSV" cmp -s first.csv out/compare.csv
"$src/deploy/compare.sh" -b "$exe" -s x c.yaml >/dev/null 2>err.txt
check "a bad seed list exits 2 naming -s" test $? -eq 2 -a -n "$(grep -- '-s:' err.txt)"
check_finish test_compare

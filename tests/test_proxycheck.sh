#!/usr/bin/env bash
# test_proxycheck.sh - `abcprune proxycheck` on smallnet (2k images):
#  1. --help describes it; a config without prune.flops_target is refused
#     naming the key (exit 1), as is a missing baseline;
#  2. on 3 ranks (2 workers) it writes proxycheck.csv with one row per
#     structure, the uniform cut first, every structure at most the target
#     and within 5 % of it (smallnet's 3 layers are too coarse a grain for
#     the 1 % window that test_methods checks on ResNet-20), accuracies in [0, 1], the reference mean the mean of its seeds;
#  3. proxycheck.md's Kendall tau-b and Spearman rho per proxy equal the
#     ones computed here from the CSV by an independent implementation;
#  4. on 1 rank (in-process) the CSV is byte-identical: the results do not
#     depend on how many workers evaluated them.
# usage: test_proxycheck.sh ABCPRUNE MPIEXEC "PREFLAGS" WORKDIR
set -u
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
exe="$1"
mpiexec="$2"
read -r -a preflags <<<"${3//;/ }"
work="$4/proxycheck"
check_workdir "$work"

cat >p.yaml <<YAML
seed: 3
threads: 1
out_dir: $work/out
data: {val_size: 400, train_subset: 2048, test_subset: 200, crop_pad: 0, flip: false}
model: {arch: smallnet}
train: {epochs: 2, batch_size: 64, lr: 0.1}
finetune: {epochs: 1, batch_size: 64, lr: 0.05}
prune: {flops_target: 0.4}
search:
  alpha: 0.9
  filter_init: l1
  fitness: {train_images: 512, val_images: 400, steps: 4, batch_size: 64, bn_batches: 4}
proxycheck: {structures: 7, seeds: 2, epochs: 1, train_images: 1024}
YAML

"$exe" proxycheck --help >help.txt
check "--help exits 0 and describes the report" grep -q "Kendall tau-b" help.txt
"$exe" proxycheck p.yaml >/dev/null 2>err.txt
check "no baseline: exit 1, says to train" test $? -eq 1 -a -n "$(grep 'train it first' err.txt)"
"$exe" train p.yaml >/dev/null 2>&1
check "baseline trained" test -f out/baseline.ckpt
"$exe" --set prune.flops_target=0 proxycheck p.yaml >/dev/null 2>err.txt
check "no target: exit 1 naming prune.flops_target" test $? -eq 1 -a -n "$(grep 'prune.flops_target is 0' err.txt)"

"$mpiexec" -n 3 "${preflags[@]}" "$exe" proxycheck p.yaml >pc3.out 2>pc3.err
check "proxycheck on 3 ranks exits 0" test $? -eq 0 || tail -5 pc3.err
check "CSV: 7 structures, uniform first, at the target, means of the seeds" $py - out/proxycheck/proxycheck.csv out/baseline.ckpt "$exe" p.yaml <<'PY'
import csv, subprocess, sys
rows = list(csv.DictReader(open(sys.argv[1])))
info = subprocess.run([sys.argv[3], "info", sys.argv[4]], capture_output=True, text=True).stdout
full = 1919872  # smallnet, 16/32/64 channels
t = int(0.4 * full)
ok = len(rows) == 7 and rows[0]["kind"] == "uniform" and \
    all(r["kind"] == "random" for r in rows[1:])
for r in rows:
    m = int(r["macs"])
    accs = [float(r[k]) for k in ("proxy_train", "proxy_adaptive_bn",
                                  "reference_seed0", "reference_seed1")]
    mean = (float(r["reference_seed0"]) + float(r["reference_seed1"])) / 2
    print(r["structure"], r["kind"], m, t, accs, r["reference_mean"], r["channels"])
    ok = ok and 0.95 * t <= m <= t and all(0 <= a <= 1 for a in accs) and \
        abs(mean - float(r["reference_mean"])) < 2e-6
sys.exit(0 if ok else 1)
PY
check "tau-b and rho in the report equal an independent computation" $py - out/proxycheck/proxycheck.csv out/proxycheck/proxycheck.md <<'PY'
import csv, math, re, sys
rows = list(csv.DictReader(open(sys.argv[1])))
md = open(sys.argv[2]).read()
def tau_b(x, y):
    n = len(x); c = d = tx = ty = 0
    for i in range(n):
        for j in range(i + 1, n):
            a, b = x[i] - x[j], y[i] - y[j]
            if a == 0: tx += 1
            if b == 0: ty += 1
            if a * b > 0: c += 1
            elif a * b < 0: d += 1
    n0 = n * (n - 1) / 2
    return (c - d) / math.sqrt((n0 - tx) * (n0 - ty))
def ranks(v):
    s = sorted(v)
    return [s.index(a) + (s.count(a) - 1) / 2 + 1 for a in v]
def rho(x, y):
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return sxy / math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
ref = [float(r["reference_mean"]) for r in rows]
ok = True
for p in ("train", "adaptive_bn"):
    x = [float(r["proxy_" + p]) for r in rows]
    line = re.search(r"^\| %s \| ([+-][0-9.]+) \[.*?\] \| ([+-][0-9.]+) " % p, md, re.M)
    want = (tau_b(x, ref), rho(x, ref))
    print(p, want, line.groups() if line else None)
    ok = ok and line is not None and abs(float(line.group(1)) - want[0]) < 6e-4 \
        and abs(float(line.group(2)) - want[1]) < 6e-4
sys.exit(0 if ok else 1)
PY
cp out/proxycheck/proxycheck.csv pc3.csv
"$exe" proxycheck p.yaml >pc1.out 2>pc1.err
check "proxycheck in-process exits 0" test $? -eq 0
check "the same CSV on 1 rank as on 3" cmp -s pc3.csv out/proxycheck/proxycheck.csv
check_finish test_proxycheck

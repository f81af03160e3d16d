#!/usr/bin/env bash
# Throughput benchmark: our engine vs PyTorch CPU (Debian python3-torch) on
# the identical network and batch, measured side by side in one run,
# reported as ratios ours/PyTorch (> 1 = we are faster). Not a test.
# usage: bench/run_bench.sh [BUILD_DIR] [STEPS]   (writes bench-results.jsonl)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/../build}"
steps="${2:-10}"
out="${BENCH_OUT:-bench-results.jsonl}"
: >"$out"
for model in resnet20 resnet56 vgg16; do
  for threads in 1 2; do
    # Alternate the two implementations so machine noise hits both alike.
    OMP_NUM_THREADS=$threads "$build/bench_train" "$model" "$threads" 128 "$steps" | tee -a "$out"
    OMP_NUM_THREADS=$threads /usr/bin/python3 "$here/bench_torch.py" "$model" "$threads" 128 "$steps" | tee -a "$out"
  done
done
/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
key = lambda r: (r["model"], r["threads"])
ours = {key(r): r for r in rows if r["impl"] == "abcprune"}
ref = {key(r): r for r in rows if r["impl"] == "pytorch"}
print(f"\n{'model':10} {'thr':>3} {'train img/s ours':>17} {'torch':>8} {'ratio':>6}"
      f" {'infer img/s ours':>17} {'torch':>8} {'ratio':>6}")
for k in sorted(ours):
    o, t = ours[k], ref[k]
    print(f"{k[0]:10} {k[1]:>3} {o['train_img_s']:>17.0f} {t['train_img_s']:>8.0f}"
          f" {o['train_img_s'] / t['train_img_s']:>6.2f}"
          f" {o['infer_img_s']:>17.0f} {t['infer_img_s']:>8.0f}"
          f" {o['infer_img_s'] / t['infer_img_s']:>6.2f}")
PY

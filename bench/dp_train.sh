#!/usr/bin/env bash
# dp_train.sh - strong scaling of data-parallel training: the wall time of
# one training epoch of ARCH (default resnet20; Fashion-MNIST subset,
# global batch 128) on 1 rank with 1 thread, 1 rank with 2 threads, and 2
# ranks with 1 thread each (both reductions, the ordered one without
# overlapping the backward pass, and the ordered one with synchronized
# BatchNorm, train.sync_bn), the configurations alternated RUNS times
# so that a busy moment of a shared machine hits all of them alike. Prints one CSV
# row per run, then the medians, speedup t1/tN and efficiency t1/(N*tN).
# Training time = images / the log's images_per_s (validation excluded).
# usage: bench/dp_train.sh BUILD_DIR [RUNS (3)] [IMAGES (3072)] [ARCH]
#        [CONFIGS: comma-separated names to run, default all; 1r1t is the
#        speedups' reference and always runs]
set -u
build="${1:?usage: dp_train.sh BUILD_DIR [RUNS] [IMAGES]}"
runs="${2:-3}"
images="${3:-3072}"
arch="${4:-resnet20}"
only="${5:-}"
exe="$(cd "$build" && pwd)/abcprune"
mpirun=(mpirun --oversubscribe --allow-run-as-root)
work="$(mktemp -d /tmp/dp_train.XXXXXX)"
cd "$work" || exit 1
cat >cfg.yaml <<YAML
seed: 1
data: {val_size: 200, train_subset: $images, test_subset: 200}
model: {arch: $arch}
train: {epochs: 1, batch_size: 128, lr: 0.1}
YAML
# one run: name ranks threads reduce overlap sync_bn run ->
#   "name,run,ranks,threads,reduce,train_s,img_s,sum_s"
one() {
  local name="$1" ranks="$2" threads="$3" reduce="$4" overlap="$5" sync="$6" run="$7"
  local out="$work/$name-$run"
  if [ "$ranks" = 1 ]; then
    OMP_NUM_THREADS=$threads "$exe" --out "$out" --set threads="$threads" \
      train cfg.yaml >/dev/null 2>"$out.err"
  else
    OMP_NUM_THREADS=$threads ABC_DP_REDUCE=$reduce ABC_DP_OVERLAP=$overlap \
      "${mpirun[@]}" -np "$ranks" -x OMP_NUM_THREADS -x ABC_DP_REDUCE \
      -x ABC_DP_OVERLAP "$exe" --out "$out" \
      --set threads="$threads" --set train.sync_bn="$sync" train cfg.yaml \
      >/dev/null 2>"$out.err"
  fi
  local ips sum
  ips=$(grep -o '"images_per_s":[0-9.]*' "$out/train.jsonl" | cut -d: -f2)
  sum=$(grep -o '[0-9.]* s of [0-9.]* s in gradient sums' "$out.err" | cut -d' ' -f1)
  echo "$name,$run,$ranks,$threads,$reduce,$(echo "$images / $ips" | bc -l | xargs printf %.2f),$ips,${sum:-0}"
}
configs=("1r1t 1 1 - 1 false" "1r2t 1 2 - 1 false" "2r1t-ordered 2 1 ordered 1 false"
  "2r1t-ordered-nooverlap 2 1 ordered 0 false" "2r1t-allreduce 2 1 allreduce 1 false"
  "2r1t-ordered-syncbn 2 1 ordered 1 true")
{
  echo "config,run,ranks,threads,reduce,train_s,img_s,sum_s"
  for run in $(seq 1 "$runs"); do
    for c in "${configs[@]}"; do
      name="${c%% *}"
      [ -z "$only" ] || [ "$name" = 1r1t ] || [[ ",$only," == *",$name,"* ]] || continue
      # shellcheck disable=SC2086
      one $c "$run"
    done
  done
} | tee runs.csv
/usr/bin/python3 - runs.csv <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = {}
for name in dict.fromkeys(r["config"] for r in rows):
    rs = [r for r in rows if r["config"] == name]
    med[name] = (statistics.median(float(r["train_s"]) for r in rs),
                 int(rs[0]["ranks"]), statistics.median(float(r["sum_s"]) for r in rs))
t1 = med["1r1t"][0]
print("\nconfig,median_train_s,speedup,efficiency,median_sum_s")
for name, (t, n, s) in med.items():
    cores = n * (2 if name == "1r2t" else 1)
    print(f"{name},{t:.2f},{t1 / t:.2f},{t1 / (cores * t):.2f},{s:.2f}")
EOF
echo "(runs in $work)"

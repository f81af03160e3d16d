#!/usr/bin/env bash
# test_dp_cli.sh - data-parallel training through the command line (smallnet,
# 512 Fashion-MNIST images, 2 epochs, one thread per rank):
#  1. `mpirun -np 2 abcprune train` twice: bit-identical checkpoints and
#     identical losses, accuracies and steps in train.jsonl;
#  2. its loss curve against one rank's with the same global batch (64, and
#     33 that 2 ranks split 17 + 16): per-rank BatchNorm statistics make the
#     forward differ, so the tolerance is what a change of seed does to the
#     one-rank curve (and at least 0.02): data parallelism must perturb the
#     training less than another seed does; with train.sync_bn (batch 33)
#     the curve is one rank's within 1e-3;
#  3. slim (sparsity training + fine-tune) on 2 ranks twice: identical
#     checkpoints, every training data-parallel with agreeing weights;
#  4. `run` on 2 ranks: the baseline and the fine-tune train data-parallel
#     around the search, which still runs on the worker.
# usage: test_dp_cli.sh ABCPRUNE MPIEXEC "PREFLAGS" WORKDIR
set -u
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
exe="$1"
mpiexec="$2"
read -r -a preflags <<<"${3//;/ }"
work="$4/dp"
check_workdir "$work"
mpirun_n() { local n="$1"; shift; "$mpiexec" -n "$n" "${preflags[@]}" "$@"; }

cat >cfg.yaml <<YAML
seed: 11
threads: 1
out_dir: $work/out
data: {val_size: 200, train_subset: 512, test_subset: 500, crop_pad: 0, flip: false}
model: {arch: smallnet}
train: {epochs: 2, batch_size: 64, lr: 0.1}
finetune: {epochs: 1, batch_size: 64, lr: 0.02, inherit: baseline}
prune: {flops_target: 0.5}
slim: {epochs: 1, batch_size: 64, lr: 0.05, sparsity: 0.01}
search:
  sn: 2
  limit: 2
  max_cycles: 1
  alpha: 0.9
  fitness: {train_images: 128, val_images: 100, steps: 2, batch_size: 32}
YAML

# the epoch lines of a log without their timings
curve() { grep '"event":"epoch"' "$1" | sed -e 's/,"images_per_s".*//'; }
# losses of a log, one per line
losses() { grep -o '"loss":[0-9.]*' "$1" | cut -d: -f2; }

# 1. repeated 2-rank trainings
for r in a b; do
  mpirun_n 2 "$exe" --out "$work/two$r" train cfg.yaml >/dev/null 2>two$r.err
  check "2-rank train ($r) exits 0" test $? -eq 0
done
check "2-rank train twice: identical checkpoints" cmp -s twoa/baseline.ckpt twob/baseline.ckpt
check "2-rank train twice: identical loss logs" \
  diff <(curve twoa/train.jsonl) <(curve twob/train.jsonl)
check "the training was data-parallel and the ranks agreed" \
  grep -q "data-parallel over 2 ranks, weights agree" twoa.err
check "2 epochs of 8 steps logged" grep -q '"epoch":2,"epochs":2,"step":16' twoa/train.jsonl
check "every epoch logged as 2 ranks with per-rank BN statistics" \
  test "$(grep -c '"ranks":2,"bn_stats":"per-rank"' twoa/train.jsonl)" = 2

# 2. against one rank, with a seed's difference as the tolerance
within_seed() { # within_seed DP ONE OTHERSEED: |dp-one| <= max(.02, |other-one|)
  $py - "$1" "$2" "$3" <<'EOF'
import json, sys
def losses(p):
    return [json.loads(l)["loss"] for l in open(p) if '"epoch"' in l]
dp, one, other = (losses(p) for p in sys.argv[1:])
ok = len(dp) == len(one) == len(other) > 0
for e, (a, b, c) in enumerate(zip(dp, one, other)):
    tol = max(0.02, abs(c - b))
    print(f"epoch {e + 1}: data-parallel {a:.4f}, one rank {b:.4f} "
          f"(|diff| {abs(a - b):.4f}), other seed {c:.4f}: tolerance {tol:.4f}")
    ok = ok and abs(a - b) <= tol
sys.exit(0 if ok else 1)
EOF
}
for b in 64 33; do
  "$exe" --out "$work/one$b" --set train.batch_size=$b train cfg.yaml >/dev/null 2>one$b.err
  "$exe" --out "$work/seed$b" --set train.batch_size=$b --set seed=12 train cfg.yaml \
    >/dev/null 2>seed$b.err
  if [ "$b" = 64 ]; then
    cp -r twoa "two$b"
  else
    mpirun_n 2 "$exe" --out "$work/two$b" --set train.batch_size=$b train cfg.yaml \
      >/dev/null 2>two$b.err
  fi
  check "batch $b: 1-rank and 2-rank trainings finished" \
    test -s "one$b/baseline.ckpt" -a -s "seed$b/baseline.ckpt" -a -s "two$b/baseline.ckpt"
  check "batch $b: the 2-rank loss curve is within a seed's difference of one rank's" \
    within_seed "two$b/train.jsonl" "one$b/train.jsonl" "seed$b/train.jsonl"
done
check "batch 33: the same steps (15) on 1 and 2 ranks" \
  test "$(grep -c '"step":15' one33/train.jsonl two33/train.jsonl | cut -d: -f2 | sort -u)" = 1

# 2b. synchronized BN: the 2-rank training is one rank's up to rounding
close_curve() { # close_curve DP ONE TOL: |dp-one| <= TOL per epoch
  $py - "$1" "$2" "$3" <<'EOF'
import json, sys
def losses(p):
    return [json.loads(l)["loss"] for l in open(p) if '"epoch"' in l]
dp, one, tol = losses(sys.argv[1]), losses(sys.argv[2]), float(sys.argv[3])
ok = len(dp) == len(one) > 0
for e, (a, b) in enumerate(zip(dp, one)):
    print(f"epoch {e + 1}: synchronized BN {a:.6f}, one rank {b:.6f} "
          f"(|diff| {abs(a - b):.2g}, tolerance {tol})")
    ok = ok and abs(a - b) <= tol
sys.exit(0 if ok else 1)
EOF
}
mpirun_n 2 "$exe" --out "$work/sync33" --set train.batch_size=33 --set train.sync_bn=true \
  train cfg.yaml >/dev/null 2>sync33.err
check "batch 33, train.sync_bn: 2-rank train exits 0" test $? -eq 0
check "batch 33, train.sync_bn: the ranks synchronized BN and agreed" \
  grep -q "data-parallel over 2 ranks, weights agree.*synchronized BatchNorm" sync33.err
check "batch 33, train.sync_bn: the loss curve is one rank's (within 1e-3)" \
  close_curve sync33/train.jsonl one33/train.jsonl 1e-3
check "batch 33, train.sync_bn: the log says synchronized BN, one rank's says batch" \
  test "$(grep -c '"ranks":2,"bn_stats":"synchronized"' sync33/train.jsonl):$(grep -c '"ranks":1,"bn_stats":"batch"' one33/train.jsonl)" = 2:2

# 3. slimming on 2 ranks, twice, from the 2-rank baseline
for r in a b; do
  mkdir -p "slim$r" && cp twoa/baseline.ckpt "slim$r/"
  mpirun_n 2 "$exe" --out "$work/slim$r" slim cfg.yaml >/dev/null 2>slim$r.err
  check "2-rank slim ($r) exits 0" test $? -eq 0
done
check "slim: the sparsity training and the fine-tune were data-parallel" \
  test "$(grep -c 'data-parallel over 2 ranks, weights agree' slima.err)" -eq 2
check "slim twice: identical sparse checkpoints" cmp -s slima/slim/sparse.ckpt slimb/slim/sparse.ckpt
check "slim twice: identical pruned checkpoints" cmp -s slima/slim/pruned.ckpt slimb/slim/pruned.ckpt
check "slim twice: identical reports" \
  diff <(grep -v img/s slima/slim/report.txt) <(grep -v img/s slimb/slim/report.txt)

# 4. run: baseline and fine-tune data-parallel, the search on the worker
mpirun_n 2 "$exe" --out "$work/run" run cfg.yaml >/dev/null 2>run.err
check "2-rank run exits 0" test $? -eq 0
check "run: the baseline and the fine-tune were data-parallel" \
  test "$(grep -c 'data-parallel over 2 ranks, weights agree' run.err)" -eq 2
check "run: the search ran and the report was written" test -s run/report.json
check "run: the baseline equals the 2-rank train's" cmp -s run/baseline.ckpt twoa/baseline.ckpt

# errors: a bad reduction name stops every rank before anything runs
ABC_DP_REDUCE=fast mpirun_n 2 -x ABC_DP_REDUCE "$exe" --out "$work/bad" train cfg.yaml \
  >/dev/null 2>bad.err
check "ABC_DP_REDUCE=fast: exit 1" test $? -eq 1
check "ABC_DP_REDUCE=fast: named" grep -q "ABC_DP_REDUCE='fast'" bad.err
check "ABC_DP_REDUCE=fast: nothing written" test ! -e bad/baseline.ckpt

check_finish test_dp_cli.sh

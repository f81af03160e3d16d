#!/usr/bin/env bash
# test_cli.sh - the abcprune program end to end on a tiny config: train
# writes a checkpoint and a JSON-lines log whose test accuracy `eval`
# reproduces exactly; a second `train` resumes/skips; `info` totals match
# the model; bad usage exits 2, bad configs and checkpoints exit 1 with a
# message naming the file, and never modify the file.
# usage: test_cli.sh ABCPRUNE WORKDIR SOURCEDIR
set -u
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
exe="$1"
work="$2/cli"
src="$3"
check_workdir "$work"

cat >tiny.yaml <<'YAML'
seed: 5
out_dir: out
data:
  val_size: 500
  train_subset: 2048
  test_subset: 1000
  crop_pad: 0
  flip: false
model:
  arch: smallnet
train:
  epochs: 3
  batch_size: 64
  lr: 0.1
YAML

"$exe" train tiny.yaml >train.out 2>train.err
check "train exits 0" test $? -eq 0
check "checkpoint written" test -s out/baseline.ckpt
check "one progress line per epoch (3)" test "$(grep -c "^train epoch" train.err)" -eq 3
check "progress shows img/s and ETA" grep -q 'img/s  ETA' train.err
check "log has 3 epoch lines and a done line" \
  test "$(grep -c '"event":"epoch"' out/train.jsonl)" -eq 3 -a \
       "$(grep -c '"event":"done"' out/train.jsonl)" -eq 1
log_acc=$(/usr/bin/python3 -c 'import json,sys
rows=[json.loads(l) for l in open("out/train.jsonl")]
print("%.2f" % (100*rows[-1]["test_acc"]))')
eval_acc=$("$exe" eval tiny.yaml out/baseline.ckpt | sed -n 's/.*test accuracy \([0-9.]*\)%.*/\1/p')
check "eval reproduces the logged test accuracy ($log_acc% = $eval_acc%)" \
  test "$log_acc" = "$eval_acc"
check "accuracy is well above chance ($eval_acc% > 50%)" \
  /usr/bin/python3 -c "import sys; sys.exit(0 if float('$eval_acc') > 50 else 1)"

sum_before=$(md5sum out/baseline.ckpt)
"$exe" train tiny.yaml >/dev/null 2>again.err
check "second train exits 0" test $? -eq 0
check "second train leaves a finished baseline alone" grep -q "already trained" again.err
check "finished checkpoint unchanged" test "$sum_before" = "$(md5sum out/baseline.ckpt)"

macs=$("$exe" info out/baseline.ckpt | sed -n 's/^total: .* \([0-9]*\) MACs.*/\1/p')
# smallnet at 28x28: 16*9*784 + 32*16*9*196 + 64*32*9*49 + 64*10
check "info MACs of smallnet = 1919872 (got $macs)" test "$macs" = 1919872

mkdir -p other && cp out/baseline.ckpt other/
"$exe" train --out other tiny.yaml >/dev/null 2>out.err
check "--out DIR replaces the config's out_dir" grep -q "already trained: other/baseline.ckpt" out.err
"$exe" train tiny.yaml --out >/dev/null 2>&1; check "--out without DIR exits 2" test $? -eq 2

"$exe" >/dev/null 2>&1; check "no command exits 2" test $? -eq 2
"$exe" frobnicate >/dev/null 2>&1; check "unknown command exits 2" test $? -eq 2
"$exe" train --nope tiny.yaml >/dev/null 2>&1; check "unknown option exits 2" test $? -eq 2
"$exe" eval tiny.yaml >/dev/null 2>&1; check "missing argument exits 2" test $? -eq 2
"$exe" train --help | grep -q "usage: abcprune train"; check "train --help" test $? -eq 0

printf 'train:\n  lr: -1\n' >bad.yaml
"$exe" train bad.yaml >/dev/null 2>bad.err
check "bad config exits 1" test $? -eq 1
check "bad config error names file:line:col and key" grep -q "bad.yaml:2:7: key 'train.lr'" bad.err

head -c 2000 out/baseline.ckpt >trunc.ckpt
sum_trunc=$(md5sum trunc.ckpt)
"$exe" eval tiny.yaml trunc.ckpt >/dev/null 2>trunc.err
check "truncated checkpoint exits 1" test $? -eq 1
check "truncated checkpoint error names the file" grep -q "trunc.ckpt" trunc.err
check "truncated checkpoint not modified" test "$sum_trunc" = "$(md5sum trunc.ckpt)"

printf 'model:\n  arch: resnet20\nout_dir: out\n' >other.yaml
cp out/baseline.ckpt keep.ckpt
"$exe" train other.yaml >/dev/null 2>other.err
check "mismatched existing checkpoint refused" test $? -eq 1
check "refusal explains the mismatch" grep -q "does not match" other.err
check "mismatched checkpoint not overwritten" cmp -s keep.ckpt out/baseline.ckpt

for f in "$src"/configs/*.yaml; do
  "$exe" info "$f" >/dev/null 2>info.err
  check "shipped config $(basename "$f") loads and builds" test $? -eq 0
done

check_finish test_cli

#!/usr/bin/env bash
# test_launch.sh - deploy/mpirun-launch.sh: bad arguments exit 2 naming the
# problem; a search launched with a hostfile naming localhost runs on the
# ranks asked for and finishes with the full evaluation budget.
# usage: test_launch.sh ABCPRUNE SOURCEDIR WORKDIR
set -u
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
exe="$1"
launch="$2/deploy/mpirun-launch.sh"
work="$3/launch"
check_workdir "$work"

"$launch" -b "$exe" -n 0 -- run x.yaml >/dev/null 2>bad1.err
check "-n 0 exits 2" test $? -eq 2
check "-n 0 is named" grep -q -- "-n expects a positive integer, got '0'" bad1.err
"$launch" -b "$exe" -H missing.txt -- run x.yaml >/dev/null 2>bad2.err
check "missing hostfile exits 2" test $? -eq 2
check "missing hostfile is named" grep -q "hostfile missing.txt is not readable" bad2.err
"$launch" -b "$exe" --frobnicate -- run x.yaml >/dev/null 2>bad3.err
check "unknown option exits 2" test $? -eq 2
"$launch" -b "$exe" >/dev/null 2>bad4.err
check "missing abcprune arguments exit 2" test $? -eq 2

cat >cfg.yaml <<'YAML'
seed: 11
threads: 1
out_dir: out
data:
  val_size: 400
  train_subset: 1024
  crop_pad: 0
  flip: false
model:
  arch: smallnet
train:
  epochs: 1
  batch_size: 64
search:
  sn: 4
  limit: 2
  max_cycles: 3
  alpha: 0.9
  fitness:
    train_images: 256
    val_images: 200
    steps: 3
    batch_size: 64
YAML
"$exe" train cfg.yaml >/dev/null 2>train.err
check "baseline trains" test -s out/baseline.ckpt
echo "localhost slots=3" >hosts.txt
"$launch" -b "$exe" -H hosts.txt -N 3 -t 1 -- search cfg.yaml >/dev/null 2>launch.err
check "launched search exits 0" test $? -eq 0
check "the mpirun line is printed with the hostfile and threads" \
  grep -q -- "^+ mpirun -np 3 --hostfile hosts.txt --map-by ppr:3:node .*-x OMP_NUM_THREADS=1" launch.err
check "the search ran on 3 ranks with the full budget (28..31 evaluations)" \
  /usr/bin/python3 -c 'import json,sys
d=[json.loads(l) for l in open("out/search.jsonl") if "\"done\"" in l][-1]
sys.exit(0 if d["ranks"]==3 and 28<=d["evaluations"]<=31 else 1)'

check_finish test_launch

#!/usr/bin/env bash
# test_faults.sh - faults injected on purpose into a sync search on 3 ranks
# (smallnet, a few hundred images per evaluation), each checked against an
# uninterrupted reference run of the same config:
#  1. kill -9 (no chance to save) of rank 0 and of a worker at several
#     moments, then `search --resume`: the sequence of evaluated structures
#     and fitness values, the cycle lines, the final re-evaluation and
#     best.yaml equal the reference run's;
#  2. a worker that replies with bytes that are not msgpack, with a message
#     of an unknown type, or with a result for an evaluation it was never
#     sent (ABC_FAULT, worker/worker.c): rank 0 says so, scores the first
#     two as failed evaluations (fitness 0, the reason logged), ignores the
#     stray reply, and the search finishes with every evaluation once;
#  3. a worker that hangs: after search.eval_timeout_s rank 0 stops with its
#     colony saved and a message naming the rank and the evaluation, the job
#     ends (no rank waits forever), and `search --resume` finishes with the
#     reference's result;
#  4. a full disk while writing a model checkpoint (ulimit -f, SIGXFSZ
#     ignored: writes fail with EFBIG): `train` fails naming the file and
#     the reason, the previous good checkpoint is byte-identical, and a
#     rerun with space continues from it to the end.
# usage: test_faults.sh ABCPRUNE MPIEXEC "PREFLAGS" WORKDIR
set -u
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
exe="$1"
mpiexec="$2"
read -r -a preflags <<<"${3//;/ }"
work="$4/faults"
check_workdir "$work"
mpirun_n() { local n="$1"; shift; "$mpiexec" -n "$n" "${preflags[@]}" "$@"; }

config() { # config NAME OUT_DIR [extra yaml lines under search:]
  cat >"$1" <<YAML
seed: 5
threads: 1
out_dir: $2
data:
  val_size: 400
  train_subset: 2048
  test_subset: 200
  crop_pad: 0
  flip: false
model:
  arch: smallnet
train:
  epochs: ${EPOCHS:-2}
  batch_size: 64
  lr: 0.1
search:
  sn: 4
  limit: 2
  max_cycles: 3
${3:-}
  fitness:
    train_images: 768
    val_images: 400
    steps: 12
    batch_size: 64
    lr: 0.02
YAML
}

# What must not change: every eval (id, structure, fitness), cycle line and
# re-evaluation, in log order, and best.yaml.
# (Evals by eval id: a batch stopped part-way logs what finished, and the
# resumed run the rest, so the lines of that batch come in another order.)
seq_of() { $py -c 'import json,sys
L=[json.loads(l) for l in open(sys.argv[1]+"/search.jsonl")]
for r in sorted((r for r in L if r["event"]=="eval"), key=lambda r: r["eval_id"]):
    print("eval",r["eval_id"],r["structure"],"%.8f"%r["fitness"])
for r in L:
    if r["event"]=="cycle": print("cycle",r["cycle"],"%.8f"%r["best_fitness"],r["best_structure"])
    elif r["event"]=="reeval": print("reeval",r["structure"],r["fitness"])' "$1"
  grep -v '^#' "$1/best.yaml"; }

# The pid of rank R of the job started by `abcprune search ... CONFIG`.
rank_pid() { # rank_pid CONFIG R
  local p
  for p in $(pgrep -f "abcprune search .*$1"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null |
      grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

config base.yaml base
"$exe" train base.yaml 2>train.err >/dev/null
check "baseline trains" test -s base/baseline.ckpt

start() { # start NAME [extra yaml]: a fresh search directory NAME
  mkdir -p "$1" && cp base/baseline.ckpt "$1/"
  config "$1.yaml" "$1" "${2:-}"
}

start ref
mpirun_n 3 "$exe" search ref.yaml 2>ref.err
check "reference search exits 0" test $? -eq 0
seq_of ref >ref.seq
n_ref=$(grep -c '^eval' ref.seq)
check "reference: evaluations and a final choice logged ($n_ref evals)" \
  grep -q '^reeval' ref.seq

# 1. kill -9 at a moment: when search.jsonl has at least LINES lines (0:
#    as soon as the job's ranks are up, in the init batch), of rank R.
kill_at() { # kill_at NAME RANK LINES
  local name="$1" r="$2" lines="$3" pid="" t
  start "$name"
  mpirun_n 3 "$exe" search "$name.yaml" 2>"$name.err" &
  local job=$!
  for t in $(seq 1 600); do # up to 60 s
    if [ "$(cat "$name/search.jsonl" 2>/dev/null | wc -l)" -ge "$lines" ] &&
      pid=$(rank_pid "$name.yaml" "$r"); then
      break
    fi
    sleep 0.1
  done
  [ -n "$pid" ] && kill -9 "$pid"
  wait "$job"
  local code=$?
  check "kill -9 of rank $r at $lines log lines: the job ends without finishing (exit $code)" \
    test "$code" -ne 0 -a -n "$pid"
  mpirun_n 3 "$exe" search --resume "$name.yaml" 2>"$name.resume.err"
  check "kill -9 of rank $r at $lines log lines: --resume exits 0" test $? -eq 0
  seq_of "$name" >"$name.seq"
  check "kill -9 of rank $r at $lines log lines: resumed = uninterrupted (structures, fitness, cycles, final choice, best.yaml)" \
    cmp -s ref.seq "$name.seq"
}
half=$((n_ref / 2))
kill_at k0_start 0 0
kill_at k0_mid 0 "$half"
kill_at k0_late 0 "$n_ref"
kill_at k1_start 1 1
kill_at k2_mid 2 "$((half + 3))"

# 2. garbage, a message of an unknown type, a stray result.
start junk
mpirun_n 3 -x ABC_FAULT=garbage@5,unknown@9,stray@13 "$exe" search junk.yaml \
  2>junk.err
check "garbage replies: the search finishes (exit $?)" test $? -eq 0
$py -c 'import json,sys
L=[json.loads(l) for l in open("junk/search.jsonl")]
ev={r["eval_id"]:r for r in L if r["event"]=="eval"}
ids=sorted(ev)
# other fitness values steer the colony elsewhere: 4 + 3*8 evaluations plus
# up to 3 scouts, as any run of this config
ok=ids==list(range(len(ids))) and 28<=len(ids)<=31
for i in (5,9):
    ok=ok and ev[i]["fitness"]==0 and "unreadable result" in ev[i].get("error","")
ok=ok and "error" not in ev[13] and ev[13]["fitness"]>0
print("eval 5:",ev[5].get("error"),"| eval 9:",ev[9].get("error"),"| eval 13:",ev[13]["fitness"])
sys.exit(0 if ok else 1)' "$n_ref"
check "garbage and unknown-type replies score their evaluation 0 with the reason; the stray one changes nothing; every evaluation once" \
  test $? -eq 0
check "rank 0 reports the stray reply it ignored" \
  grep -q "ignored a reply from rank" junk.err

# 3. a hung worker.
start hang "  eval_timeout_s: 4"
SECONDS=0
timeout 180 "$mpiexec" -n 3 "${preflags[@]}" -x ABC_FAULT=hang@6 "$exe" search \
  hang.yaml 2>hang.err
code=$?
took=$SECONDS
grep "abcprune: stopped" hang.err
check "hung worker: the job ends by itself, non-zero (exit $code, ${took}s)" \
  test "$code" -ne 0 -a "$code" -ne 124 -a "$took" -lt 120
check "hung worker: rank 0 names the rank, the evaluation and the limit" \
  grep -Eq "rank [12] sent no result for evaluation 6 in 4 s \(search.eval_timeout_s\)" hang.err
check "hung worker: the colony is saved" test -s hang/colony.ckpt
mpirun_n 3 "$exe" search --resume hang.yaml 2>hang.resume.err
check "hung worker: --resume exits 0" test $? -eq 0
seq_of hang >hang.seq
check "hung worker: resumed = uninterrupted" cmp -s ref.seq hang.seq

# 3b. Log lines the colony does not count (as a kill between writing a
#     phase's lines and saving the colony leaves them): the hung search's
#     directory as it stopped, plus every later line of the reference's log;
#     --resume drops them and evaluates them again.
mkdir -p cut && cp base/baseline.ckpt cut/ && config cut.yaml cut "  eval_timeout_s: 4"
timeout 180 "$mpiexec" -n 3 "${preflags[@]}" -x ABC_FAULT=hang@10 "$exe" search \
  cut.yaml 2>cut.err
check "cut: stopped by the hung worker (exit $?)" test -s cut/colony.ckpt
have=$(wc -l <cut/search.jsonl)
$py -c 'import json,sys
have={json.loads(l).get("eval_id") for l in open("cut/search.jsonl")}
with open("cut/search.jsonl","a") as f:
    for l in open("ref/search.jsonl"):
        if json.loads(l).get("eval_id") not in have: f.write(l)'
echo "cut: $have lines, $(wc -l <cut/search.jsonl) with the reference's later lines"
mpirun_n 3 "$exe" search --resume cut.yaml 2>cut.resume.err
check "cut: --resume exits 0" test $? -eq 0
grep "dropped the last" cut.resume.err
check "cut: the resume says it dropped the lines the colony does not count" \
  grep -q "search.jsonl: dropped the last" cut.resume.err
seq_of cut >cut.seq
check "cut: resumed = uninterrupted, each evaluation logged once" \
  cmp -s ref.seq cut.seq

# 4. A full disk while writing a model checkpoint.
mkdir -p disk && cp base/baseline.ckpt disk/
EPOCHS=4 config disk.yaml disk
cp disk/baseline.ckpt good.ckpt
size_kb=$(($(stat -c %s good.ckpt) / 1024))
(
  trap '' XFSZ
  ulimit -f $((size_kb / 2))
  exec "$exe" train disk.yaml
) >/dev/null 2>disk.err
code=$?
cat disk.err
check "full disk: train fails (exit $code)" test "$code" -ne 0
check "full disk: the error names the checkpoint and the reason" \
  grep -Eq "disk/baseline.ckpt.*(File too large|No space)" disk.err
check "full disk: the previous checkpoint is untouched" cmp -s good.ckpt disk/baseline.ckpt
check "full disk: no temp file left behind" \
  test -z "$(ls disk | grep -v -e '^baseline.ckpt$' -e '^train.jsonl$')"
"$exe" train disk.yaml >/dev/null 2>disk2.err
check "full disk: with space again, train continues and finishes" \
  grep -q "resuming .*from epoch 2" disk2.err
$py -c 'import msgpack,sys
d=msgpack.unpackb(open("disk/baseline.ckpt","rb").read(),raw=False,strict_map_key=False)
st=d.get("train") or {}
print("epoch after the rerun:", st.get("epoch"))
sys.exit(0 if st.get("epoch")==4 else 1)'
check "full disk: the rerun reaches the configured 4 epochs" test $? -eq 0

check_finish test_faults

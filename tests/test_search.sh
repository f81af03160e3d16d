#!/usr/bin/env bash
# test_search.sh - the MPI search and the pipeline end to end on a tiny
# config (smallnet, a few hundred images per evaluation):
#  1. determinism: the same config on 1, 2 and 3 ranks gives the identical
#     sequence of evaluated structures and fitness values;
#  2. the best fitness never decreases from cycle to cycle;
#  3. resume: a search stopped by SIGTERM after its first cycle exits 75 with
#     a colony checkpoint, and `search --resume` ends with the same best
#     structure and fitness as the uninterrupted search;
#  4. evaluations that fail (a diverging loss) are logged as errors with
#     fitness 0 and do not stop the search;
#  5. `run` does train -> search -> finetune and writes a report whose pruned
#     net has fewer MACs; a second `run` skips every finished step;
#  6. the async schedule on 3 ranks: exit 0, exactly the budget of
#     evaluations (every role once, eval ids 0..n-1), best.yaml the max over
#     all of them, the best never decreasing over cycle lines; stopped by
#     SIGTERM and resumed: every role still evaluated exactly once (and
#     not resumable as sync); on 1 rank as well.
# usage: test_search.sh ABCPRUNE MPIEXEC "PREFLAGS" WORKDIR
set -u
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
exe="$1"
mpiexec="$2"
read -r -a preflags <<<"${3//;/ }"
work="$4/search"
check_workdir "$work"
mpirun_n() { local n="$1"; shift; "$mpiexec" -n "$n" "${preflags[@]}" "$@"; }

config() { # config NAME OUT_DIR [extra yaml lines for search:]
  cat >"$1" <<YAML
seed: 11
threads: 1
out_dir: $2
data:
  val_size: 400
  train_subset: 2048
  test_subset: 500
  crop_pad: 0
  flip: false
model:
  arch: smallnet
train:
  epochs: 3
  batch_size: 64
  lr: 0.1
search:
  schedule: ${SCHEDULE:-sync}
  sn: 4
  limit: 2
  change_dims: 2
  max_cycles: ${CYCLES:-3}
  alpha: 0.9
${3:-}
  fitness:
    train_images: ${FIT_IMAGES:-256}
    val_images: 200
    steps: 3
    batch_size: 64
    lr: ${FIT_LR:-0.01}
finetune:
  epochs: 1
  batch_size: 64
  lr: 0.02
YAML
}

# best.yaml of a finished search in $1: best_ever_fitness is the max over
# its evaluations; the final choice re-evaluated the top 3 distinct
# structures (the best draw first) with 2 seeds each, and best.yaml's
# fitness and structure are those of the best mean.
final_ok() { $py -c 'import json,re,sys
L=[json.loads(l) for l in open(sys.argv[1]+"/search.jsonl")]
ev=[r for r in L if r["event"]=="eval"]
re_=[r for r in L if r["event"]=="reeval"]
y=open(sys.argv[1]+"/best.yaml").read()
get=lambda k: re.search(r"^%s: (.*?)( *#.*)?$" % k, y, re.M).group(1)
top=max(ev, key=lambda r: r["fitness"])
best=max(re_, key=lambda r: r["mean"]) if re_ else None
print(len(re_), "re-evaluated; best draw", top["fitness"], "final", best and best["mean"], get("structure"))
ok=(abs(float(get("best_ever_fitness"))-top["fitness"])<1e-6 and 1<=len(re_)<=3
    and re_[0]["code"]==max(ev,key=lambda r:(r["fitness"],-r["eval_id"]))["code"]
    and all(len(r["fitness"])==2 and abs(sum(r["fitness"])/2-r["mean"])<1e-6 for r in re_)
    and len({tuple(r["code"]) for r in re_})==len(re_)
    and abs(float(get("fitness"))-best["mean"])<1e-6
    and json.loads(get("structure"))==best["structure"] and "done: true" in y)
sys.exit(0 if ok else 1)' "$1"; }

# A baseline shared by the searches below.
config base.yaml base
"$exe" train base.yaml 2>train.err >/dev/null
check "baseline trains" test -s base/baseline.ckpt

# 1. Determinism over 1, 2 and 3 ranks.
for n in 1 2 3; do
  mkdir -p np$n && cp base/baseline.ckpt np$n/
  config np$n.yaml np$n
  mpirun_n "$n" "$exe" search np$n.yaml 2>np$n.err
  check "search on $n rank(s) exits 0" test $? -eq 0
done
evals() { $py -c 'import json,sys
for l in open(sys.argv[1]):
    r=json.loads(l)
    if r["event"]=="eval": print(r["cycle"],r["phase"],r["candidate"],r["structure"],"%.6f"%r["fitness"])
    else: print("cycle",r["cycle"],"%.6f"%r["best_fitness"],r["best_structure"])' "$1"; }
evals np1/search.jsonl >np1.seq
evals np2/search.jsonl >np2.seq
evals np3/search.jsonl >np3.seq
n_evals=$(grep -vc '^cycle' np1.seq)
# SN + cycles*(2 SN + scouts): 4 + 3*8 = 28 plus at most 3 scouts
check "evaluations: 28..31 (got $n_evals)" test "$n_evals" -ge 28 -a "$n_evals" -le 31
check "1 and 2 ranks: identical structures and fitness" cmp -s np1.seq np2.seq
check "1 and 3 ranks: identical structures and fitness" cmp -s np1.seq np3.seq
check "several workers really shared the work" \
  test "$($py -c 'import json,sys
print(len({json.loads(l).get("worker") for l in open("np3/search.jsonl") if "\"eval\"" in l}))')" -eq 2
check "fitness values are real accuracies (some > 0.3)" \
  $py -c 'import json,sys
f=[json.loads(l)["fitness"] for l in open("np1/search.jsonl") if "\"eval\"" in l]
sys.exit(0 if max(f)>0.3 and min(f)>=0 else 1)'

# 1b. Evaluation groups (search.ranks_per_eval 2): each structure trained
# data-parallel by a group of two ranks; with the group size fixed the sync
# search is the same for one group (3 ranks) and two (5 ranks).
for n in 3 5; do
  mkdir -p g2n$n && cp base/baseline.ckpt g2n$n/
  config g2n$n.yaml g2n$n "  ranks_per_eval: 2"
  mpirun_n "$n" "$exe" search g2n$n.yaml 2>g2n$n.err
  check "ranks_per_eval 2 on $n ranks exits 0" test $? -eq 0
  evals g2n$n/search.jsonl >g2n$n.seq
done
check "ranks_per_eval 2: 2 groups (5 ranks) = 1 group (3 ranks), structures and fitness" \
  cmp -s g2n3.seq g2n5.seq
check "ranks_per_eval 2 on 5 ranks: both group leaders (ranks 1, 3) evaluated" \
  test "$($py -c 'import json
print(sorted({json.loads(l).get("worker") for l in open("g2n5/search.jsonl") if "\"eval\"" in l}))')" = "[1, 3]"
check "the done line records the group size" grep -q '"ranks_per_eval":2' g2n5/search.jsonl
mkdir -p g3 && cp base/baseline.ckpt g3/
config g3.yaml g3 "  ranks_per_eval: 3"
mpirun_n 3 "$exe" search g3.yaml 2>g3.err
check "ranks_per_eval 3 with 2 workers: refused (exit $?), naming the key" \
  grep -q "search.ranks_per_eval 3, but the job has 2 worker ranks" g3.err

# 2. The best never decreases and best.yaml holds the maximum.
check "best fitness is non-decreasing over cycles" $py -c 'import json,sys
b=[json.loads(l)["best_fitness"] for l in open("np2/search.jsonl") if "\"cycle\"" in l and "best_fitness" in l]
sys.exit(0 if len(b)==4 and all(x<=y for x,y in zip(b,b[1:])) else 1)'
check "best.yaml: the best draw is the max over all evaluations; the final choice the best mean of the re-evaluated top 3" \
  final_ok np2
check "best.yaml reports a FLOPs reduction" grep -qE '^flops_reduction: 0\.[0-9]*[1-9]' np2/best.yaml
check "search.dat: one line per evaluation, as the log" \
  test "$(wc -l <np2/search.dat)" -eq "$(grep -c '"event":"eval"' np2/search.jsonl)"
check "search.png is a PNG (gnuplot-nox is a dependency)" $py -c "import sys; sys.exit(0 if open('np2/search.png','rb').read(8) == b'\x89PNG\r\n\x1a\n' else 1)"

# 3. SIGTERM after the first cycle, then --resume.
mkdir -p stop && cp base/baseline.ckpt stop/
CYCLES=3 config stop.yaml stop
"$mpiexec" -n 2 "${preflags[@]}" "$exe" search stop.yaml 2>stop.err &
pid=$! # mpiexec itself: its children are the ranks
for _ in $(seq 600); do
  grep -q '"event":"cycle","cycle":1' stop/search.jsonl 2>/dev/null && break
  sleep 0.05
done
# Signal the ranks, as Slurm does (mpirun itself would report the signal).
pkill -TERM -P $pid
wait $pid
code=$?
check "SIGTERM: search exits 75 (got $code)" test "$code" -eq 75
check "SIGTERM: colony checkpoint written" test -s stop/colony.ckpt
check "SIGTERM: stopped before the end" grep -q 'done: false' stop/best.yaml
mpirun_n 2 "$exe" search stop.yaml 2>stop2.err
check "search without --resume refuses to overwrite" test $? -eq 1
mpirun_n 2 "$exe" search --resume stop.yaml 2>resume.err
check "resumed search exits 0" test $? -eq 0
grep -E '^(structure|code|fitness|flops|params): ' np2/best.yaml >want.best
grep -E '^(structure|code|fitness|flops|params): ' stop/best.yaml >got.best
check "resumed search ends with the uninterrupted best" cmp -s want.best got.best
check "resumed log has every evaluation exactly once" \
  cmp -s <(grep -v '^cycle' np2.seq | sort) <(evals stop/search.jsonl | grep -v '^cycle' | sort)

# 3b. A signal that reaches only a worker (not rank 0) stops the search
# too: the worker answers "stopped", rank 0 saves and exits 75.
mkdir -p wstop && cp base/baseline.ckpt wstop/
config wstop.yaml wstop
"$mpiexec" -n 3 "${preflags[@]}" "$exe" search wstop.yaml 2>wstop.err &
pid=$!
for _ in $(seq 600); do
  grep -q '"event":"cycle","cycle":1' wstop/search.jsonl 2>/dev/null && break
  sleep 0.05
done
for p in $(pgrep -P $pid); do
  tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx 'OMPI_COMM_WORLD_RANK=1' &&
    kill -TERM "$p"
done
wait $pid
code=$?
check "worker-only SIGTERM: search exits 75 (got $code)" test "$code" -eq 75
check "worker-only SIGTERM: rank 0 says which rank stopped" grep -q "rank 1 was stopped" wstop.err
mpirun_n 3 "$exe" search --resume wstop.yaml 2>wresume.err
check "after a worker's stop, --resume exits 0" test $? -eq 0
grep -E '^(structure|code|fitness|flops|params): ' wstop/best.yaml >wgot.best
check "after a worker's stop, --resume ends with the uninterrupted best" cmp -s want.best wgot.best

# 4. Failing evaluations do not stop the search.
mkdir -p bad && cp base/baseline.ckpt bad/
# 32 training images cannot fill one batch of 64: every evaluation fails.
CYCLES=1 FIT_IMAGES=32 config bad.yaml bad
mpirun_n 2 "$exe" search bad.yaml 2>bad.err
check "search with failing evaluations exits 0" test $? -eq 0
check "every failed evaluation is logged with its error and fitness 0" $py -c 'import json,sys
e=[json.loads(l) for l in open("bad/search.jsonl") if "\"eval\"" in l]
sys.exit(0 if len(e)>=12 and all(r["fitness"]==0 and "error" in r for r in e) else 1)'

# 5. The pipeline: run, then run again.
config pipe.yaml pipe
mpirun_n 2 "$exe" run pipe.yaml >pipe.out 2>pipe.err
check "run exits 0" test $? -eq 0
check "run wrote the pruned checkpoint and the report" test -s pipe/pruned.ckpt -a -s pipe/report.json
check "the pruned net is smaller and still learns (acc > 30%)" $py -c 'import json,sys
r=json.load(open("pipe/report.json"))
sys.exit(0 if r["pruned_macs"]<r["baseline_macs"] and r["pruned_test_acc"]>0.3 else 1)'
mpirun_n 2 "$exe" run pipe.yaml >pipe2.out 2>pipe2.err
check "second run exits 0" test $? -eq 0
check "second run skips training" grep -q "already trained" pipe2.err
check "second run reprints the same report" cmp -s <(grep -v img/s pipe.out) <(grep -v img/s pipe2.out)

# 6. The async schedule on 3 ranks (2 workers).
mkdir -p async && cp base/baseline.ckpt async/
SCHEDULE=async config async.yaml async
mpirun_n 3 "$exe" search async.yaml 2>async.err
check "async search on 3 ranks exits 0" test $? -eq 0
# Per phase: init sn = 4, employed and onlooker cycles*sn = 12 each (each
# role once), scouts at most one per cycle; ids 0..n-1 each once.
async_budget() { $py -c 'import json,sys,collections
e=[json.loads(l) for l in open(sys.argv[1]) if "\"eval\"" in l]
n=collections.Counter(r["phase"] for r in e)
roles=collections.Counter((r["cycle"],r["phase"],r["candidate"]) for r in e if r["phase"] in ("employed","onlooker"))
ids=sorted(r["eval_id"] for r in e)
ok=(n["init"]==4 and n["employed"]==12 and n["onlooker"]==12 and n["scout"]<=3
    and len(e)==28+n["scout"] and len(roles)==24 and max(roles.values())==1
    and len(set(ids))==len(ids) and (sys.argv[2]=="resumed" or ids==list(range(len(e)))))
if not ok: print(dict(n), len(e), sorted(roles.values())[-3:], ids[:5], file=sys.stderr)
sys.exit(0 if ok else 1)' "$@"; }
check "async: eval lines = the budget, every role once" async_budget async/search.jsonl fresh
check "async: both workers evaluated" \
  test "$($py -c 'import json,sys
print(len({json.loads(l).get("worker") for l in open("async/search.jsonl") if "\"eval\"" in l}))')" -eq 2
async_best() { $py -c 'import json,re,sys
L=[json.loads(l) for l in open(sys.argv[1]+"/search.jsonl")]
f=max(r["fitness"] for r in L if r["event"]=="eval")
b=[r["best_fitness"] for r in L if r["event"]=="cycle"]
y=open(sys.argv[1]+"/best.yaml").read()
yb=float(re.search(r"^best_ever_fitness: ([0-9.]+)",y,re.M).group(1))
ok=(abs(yb-f)<1e-6 and "done: true" in y and len(b)==4 and abs(b[-1]-f)<1e-6
    and all(x<=z for x,z in zip(b,b[1:])))
sys.exit(0 if ok else 1)' "$1" && final_ok "$1"; }
check "async: best.yaml is the max over all evaluations, best non-decreasing over 4 cycle lines" \
  async_best async
check "async: colony checkpoint is the async form (done)" \
  $py -c 'import sys; d=open("async/colony.ckpt","rb").read(); sys.exit(0 if b"async" in d and b"done" in d else 1)'
echo "info sync  3 ranks: $(grep '^search done' np3.err)"
echo "info async 3 ranks: $(grep '^search done' async.err)"

# SIGTERM in the middle of an async search, then --resume.
mkdir -p astop && cp base/baseline.ckpt astop/
SCHEDULE=async config astop.yaml astop
"$mpiexec" -n 3 "${preflags[@]}" "$exe" search astop.yaml 2>astop.err &
pid=$!
for _ in $(seq 600); do
  grep -q '"event":"cycle","cycle":1' astop/search.jsonl 2>/dev/null && break
  sleep 0.05
done
pkill -TERM -P $pid
wait $pid
code=$?
check "async SIGTERM: exits 75 (got $code)" test "$code" -eq 75
check "async SIGTERM: stopped before the end" grep -q 'done: false' astop/best.yaml
SCHEDULE=sync config astop_sync.yaml astop
mpirun_n 2 "$exe" search --resume astop_sync.yaml 2>aswitch.err
check "a stopped async search does not resume as sync" test $? -eq 1
check "the refusal names the schedule" grep -q 'with the async schedule' aswitch.err
mpirun_n 3 "$exe" search --resume astop.yaml 2>aresume.err
check "async resumed search exits 0" test $? -eq 0
check "async resumed: every role evaluated exactly once over both runs" \
  async_budget astop/search.jsonl resumed
check "async resumed: best.yaml is the max, best non-decreasing" async_best astop
mpirun_n 2 "$exe" search --resume astop_sync.yaml 2>aswitch.err
check "a finished async search re-run with sync is accepted" test $? -eq 0

# Async on one rank: evaluated in-process, one at a time.
mkdir -p async1 && cp base/baseline.ckpt async1/
SCHEDULE=async config async1.yaml async1
mpirun_n 1 "$exe" search async1.yaml 2>async1.err
check "async search on 1 rank exits 0" test $? -eq 0
check "async on 1 rank: eval lines = the budget, every role once" \
  async_budget async1/search.jsonl fresh
check "async on 1 rank: best.yaml is the max, best non-decreasing" async_best async1

check_finish test_search

#!/usr/bin/env bash
# test_scaling.sh - the scaling-study driver (deploy/scaling-study.sh) on a
# tiny sweep: smallnet, a few hundred images, 3 fitness steps, SN 2 and 3,
# 1 and 2 ranks, one seed, sync and async, one cycle. Asserts on its CSVs:
#  1. a row per point; evaluations = the done line's = the colony's budget
#     SN + cycles*2*SN + scouts (0 or 1 per cycle); workers = ranks-1 (1 for
#     one rank); utilisation and rank-0 CPU fractions in (0,1]; one best
#     fitness per cycle (init + 1), never falling, ending at the final one;
#  2. the sync search is the same on 1 and 2 ranks (same best per cycle);
#  3. the simulated sweep has a sync and an async row for 16..1024 workers
#     per SN, utilisation in (0,1], the same budget as the real runs (sync);
#     simulating a sync point from its own log replays its search exactly
#     (same best fitness per cycle);
#  4. the validation CSV has a row per point with finite relative errors;
#  5. three PNGs (magic bytes);
#  6. bad arguments exit 2 with a message (the driver's and simulate's);
#     a bad log line exits 1 naming file:line and the field.
# usage: test_scaling.sh ABCPRUNE MPIEXEC "PREFLAGS" WORKDIR SOURCE_DIR
set -u
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
exe="$1"
mpiexec="$2"
preflags="${3//;/ }"
work="$4/scaling"
src="$5"
driver="$src/deploy/scaling-study.sh"
check_workdir "$work"

cat >tiny.yaml <<YAML
seed: 3
threads: 1
out_dir: unused
data:
  val_size: 300
  train_subset: 1024
  test_subset: 200
  crop_pad: 0
  flip: false
model:
  arch: smallnet
train:
  epochs: 1
  batch_size: 64
  lr: 0.1
search:
  sn: 2
  limit: 1
  change_dims: 1
  max_cycles: 1
  alpha: 0.9
  fitness:
    train_images: 256
    val_images: 200
    steps: 3
    batch_size: 64
    lr: 0.02
YAML

# 6. Argument checks (before the sweep: cheap).
for bad in "--sn 0,2" "--ranks a" "--schedules sometimes" "--threads" \
           "--frobnicate" "tiny.yaml tiny.yaml" ""; do
  # shellcheck disable=SC2086
  bash "$driver" --abcprune "$exe" $bad >bad.out 2>bad.err
  code=$?
  check "bad arguments '$bad' exit 2 with a message (got $code)" \
    bash -c "[ $code -eq 2 ] && grep -q 'scaling-study.sh: ' bad.err"
done
bash "$driver" --help >help.out
check "--help exits 0 and prints the usage" grep -q '^usage: ' help.out

bash "$driver" --abcprune "$exe" --mpiexec "$mpiexec" --mpi-flags "$preflags" \
  --sn 2,3 --ranks 1,2 --seeds 5 --schedules sync,async --out out \
  --sim-workers 1,16,64,256,1024 tiny.yaml 2>driver.err
code=$?
check "the driver exits 0 (got $code)" test "$code" -eq 0
[ "$code" -eq 0 ] || tail -n 20 driver.err

# 1-2. The real table.
check "real.csv: a row per point, every column" $py - out/real.csv <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cols = ("sn ranks workers threads schedule seed wall_s evaluations evals_per_s "
        "worker_util coord_overhead best_fitness_per_cycle final_best_fitness "
        "final_flops").split()
pts = {(r["sn"], r["ranks"], r["schedule"], r["seed"]) for r in rows}
want = {(s, r, x, "5") for s in "23" for r in "12" for x in ("sync", "async")}
sys.exit(0 if len(rows) == 8 and pts == want and
         all(list(r.keys()) == cols for r in rows) else 1)
PY
check "real.csv: evaluations = the done line's = SN + 2 SN + scouts" $py - out <<'PY'
import csv, json, os, sys
ok = True
for r in csv.DictReader(open(os.path.join(sys.argv[1], "real.csv"))):
    d = os.path.join(sys.argv[1], "points",
                     "sn%s_r%s_%s_s%s" % (r["sn"], r["ranks"], r["schedule"], r["seed"]))
    lines = [json.loads(l) for l in open(os.path.join(d, "search.jsonl"))]
    done = [l for l in lines if l["event"] == "done"][0]
    scouts = sum(1 for l in lines if l["event"] == "eval" and l["phase"] == "scout")
    sn, ev = int(r["sn"]), int(r["evaluations"])
    good = (ev == done["evaluations"] == sn + 2 * sn + scouts and scouts <= 1
            and int(r["workers"]) == max(1, int(r["ranks"]) - 1)
            and int(r["threads"]) == 1)
    if not good:
        print("bad row", r, done, scouts)
    ok = ok and good
sys.exit(0 if ok else 1)
PY
check "real.csv: fractions in (0,1], best per cycle non-decreasing to the final" $py - out/real.csv <<'PY'
import csv, sys
ok = True
for r in csv.DictReader(open(sys.argv[1])):
    b = [float(x) for x in r["best_fitness_per_cycle"].split(";")]
    good = (0 < float(r["worker_util"]) <= 1 and 0 < float(r["coord_overhead"]) <= 1.05
            and float(r["wall_s"]) > 0
            and abs(float(r["evals_per_s"]) - int(r["evaluations"]) / float(r["wall_s"])) < 0.01
            and len(b) == 2 and b[0] <= b[1] and abs(b[-1] - float(r["final_best_fitness"])) < 1e-6
            and int(r["final_flops"]) > 0)
    if not good:
        print("bad row", r)
    ok = ok and good
sys.exit(0 if ok else 1)
PY
check "real.csv: the sync search is the same on 1 and 2 ranks" $py - out/real.csv <<'PY'
import csv, sys
s = {}
for r in csv.DictReader(open(sys.argv[1])):
    if r["schedule"] == "sync":
        s.setdefault(r["sn"], set()).add((r["best_fitness_per_cycle"], r["final_flops"], r["evaluations"]))
sys.exit(0 if len(s) == 2 and all(len(v) == 1 for v in s.values()) else 1)
PY

# 3. The simulated sweep.
check "sim.csv: sync and async rows for 16..1024 workers per SN, util in (0,1]" $py - out/sim.csv <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
have = {(r["sn"], r["schedule"], r["workers"]) for r in rows}
want = {(s, x, w) for s in "23" for x in ("sync", "async")
        for w in ("16", "64", "256", "1024")}
ok = want <= have and all(0 < float(r["worker_util"]) <= 1 and float(r["wall_s"]) > 0
                          for r in rows)
# more workers never slow the simulated sync search; 1024 >= SN+1 workers
# leave most of them idle
for s in "23":
    w = {int(r["workers"]): float(r["wall_s"]) for r in rows
         if r["sn"] == s and r["schedule"] == "sync"}
    ok = ok and all(w[a] >= w[b] - 1e-9 for a, b in zip(sorted(w), sorted(w)[1:]))
    u = [float(r["worker_util"]) for r in rows if r["sn"] == s and r["workers"] == "1024"]
    ok = ok and all(x < 0.01 for x in u)
sys.exit(0 if ok else 1)
PY
check "sim.csv: sync budget = the real sync runs'" $py - out <<'PY'
import csv, os, sys
real = {r["sn"]: r["evaluations"] for r in csv.DictReader(open(os.path.join(sys.argv[1], "real.csv")))
        if r["schedule"] == "sync"}
sim = [r for r in csv.DictReader(open(os.path.join(sys.argv[1], "sim.csv"))) if r["schedule"] == "sync"]
# the simulated colony may place a scout where the real one did not
sys.exit(0 if sim and all(abs(int(r["evaluations"]) - int(real[r["sn"]])) <= 1 for r in sim) else 1)
PY
"$exe" --set threads=1 --set search.sn=3 --set seed=5 simulate --workers 1 \
  --schedule sync --log out/points/sn3_r2_sync_s5/search.jsonl \
  --csv self.csv tiny.yaml 2>self.err
check "simulating a sync point from its own log replays its search" $py - self.csv out/real.csv <<'PY'
import csv, sys
s = list(csv.DictReader(open(sys.argv[1])))
r = [x for x in csv.DictReader(open(sys.argv[2]))
     if x["sn"] == "3" and x["ranks"] == "2" and x["schedule"] == "sync"]
sys.exit(0 if len(s) == 1 and len(r) == 1 and
         s[0]["best_fitness_per_cycle"] == r[0]["best_fitness_per_cycle"] and
         s[0]["final_flops"] == r[0]["final_flops"] and
         s[0]["evaluations"] == r[0]["evaluations"] else 1)
PY

"$exe" simulate --workers 0,2 tiny.yaml >/dev/null 2>sim.err
code=$?
check "simulate --workers 0,2 exits 2 (got $code)" test "$code" -eq 2
head -n 2 out/points/sn2_r1_sync_s5/search.jsonl >bad.jsonl
echo '{"event":"eval","seconds":1}' >>bad.jsonl
"$exe" simulate --log bad.jsonl tiny.yaml >/dev/null 2>sim.err
code=$?
check "simulate on a bad log exits 1 naming bad.jsonl:3 and the field" \
  bash -c "[ $code -eq 1 ] && grep -q 'bad.jsonl:3: field \"code\": missing' sim.err"

# 4. Validation.
check "sim_validation.csv: a row per point, finite errors" $py - out/sim_validation.csv <<'PY'
import csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
sys.exit(0 if len(rows) == 8 and all(
    math.isfinite(float(r["wall_rel_err"])) and math.isfinite(float(r["util_rel_err"]))
    and float(r["sim_wall_s"]) > 0 for r in rows) else 1)
PY

# 5. Plots.
for p in scaling_time scaling_cycles scaling_fitness; do
  check "$p.png is a PNG" bash -c \
    "[ \"\$(head -c 8 out/$p.png | od -An -tx1 | tr -d ' \n')\" = 89504e470d0a1a0a ]"
done

check_finish test_scaling

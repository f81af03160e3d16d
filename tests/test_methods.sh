#!/usr/bin/env bash
# test_methods.sh - the other pruning methods and the FLOPs budget end to
# end on a tiny config (smallnet, 2k images), all from one baseline:
#  1. slim, lasso, uniform and random each write a report whose pruned MACs
#     meet prune.flops_target (<= target, and >= 85 % of it: the largest
#     structure of the family, not just any), with the structure the report
#     names built by `info`, and a test accuracy in [0, 1];
#  2. slim's sparsity training shrinks the prunable layers' mean |gamma|
#     (s = 0.05) and leaves it where it was with s = 0;
#  3. lasso's per-layer reconstruction error is below plain slicing's;
#  4. uniform and lasso share the structure (lasso's widths are uniform's);
#     random differs between seeds and is the same for the same seed;
#  5. a second run of a finished method keeps its checkpoint (same report);
#  6. the ABC search under the budget: every candidate is repaired to fit
#     (no evaluation over it, the largest within 80 % of it), best.yaml's
#     flops meet it; on 1 and 2 ranks the same log (the repair is
#     deterministic);
#  7. errors: no baseline, an unreachable target.
# usage: test_methods.sh ABCPRUNE MPIEXEC "PREFLAGS" WORKDIR
set -u
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
exe="$1"
mpiexec="$2"
read -r -a preflags <<<"${3//;/ }"
work="$4/methods"
rm -rf "$work"
mkdir -p "$work"
cd "$work" || exit 1
py=/usr/bin/python3

cat >m.yaml <<YAML
seed: 5
threads: 1
out_dir: $work/out
data: {val_size: 400, train_subset: 2048, test_subset: 500, crop_pad: 0, flip: false}
model: {arch: smallnet}
train: {epochs: 2, batch_size: 64, lr: 0.1}
finetune: {epochs: 1, batch_size: 64, lr: 0.02, inherit: baseline}
prune: {flops_target: 0.5}
slim: {epochs: 2, batch_size: 64, lr: 0.05, sparsity: 0.05}
lasso: {images: 64, points_per_image: 8}
search:
  sn: 4
  limit: 2
  max_cycles: 2
  alpha: 0.9
  fitness: {train_images: 256, val_images: 200, steps: 3, batch_size: 64}
YAML

"$exe" slim m.yaml >/dev/null 2>err.txt
check "slim without a baseline fails (exit 1)" test $? -eq 1
check "and says to train first" grep -q "no baseline: train it first" err.txt
"$exe" train m.yaml >/dev/null 2>&1
check "baseline trained" test -f out/baseline.ckpt

# report.json field
field() { $py -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
structure() { $py -c "import json,sys; print(','.join(map(str,json.load(open(sys.argv[1]))['structure'])))" "$1"; }

for m in slim lasso uniform random; do
  "$exe" "$m" m.yaml >"$m.out" 2>"$m.err"
  check "$m exits 0" test $? -eq 0
  r="out/$m/report.json"
  check "$m wrote its report and checkpoint" test -f "$r" -a -f "out/$m/pruned.ckpt"
  check "$m: MACs within the budget and >= 85% of it" $py - "$r" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["flops_target"] * r["baseline_macs"]
ok = r["method"] and r["pruned_macs"] <= t and r["pruned_macs"] >= 0.85 * t \
    and 0 <= r["pruned_test_acc"] <= 1 and abs(r["flops_target"] - 0.5) < 1e-6
print(r["method"], r["pruned_macs"], "target", t, "acc", r["pruned_test_acc"])
sys.exit(0 if ok else 1)
PY
  s=$(structure "$r")
  macs=$("$exe" info --set "model.channels=[$s]" m.yaml | sed -n 's/.*params (.*), \([0-9]*\) MACs.*/\1/p')
  check "$m: info of its structure gives the report's MACs ($macs)" \
    test "$macs" = "$(field "$r" pruned_macs | cut -d. -f1)"
done

before_after() { sed -n 's/.*mean |gamma| \([0-9.]*\) -> \([0-9.]*\).*/\1 \2/p' "$1"; }
read -r g0 g1 <<<"$(before_after slim.err)"
check "slim s=0.05: mean |gamma| shrinks ($g0 -> $g1)" $py -c "import sys; sys.exit(0 if $g1 < 0.97 * $g0 else 1)"
rm -rf out/slim
"$exe" --set slim.sparsity=0 slim m.yaml >/dev/null 2>slim0.err
read -r h0 h1 <<<"$(before_after slim0.err)"
check "slim s=0: mean |gamma| stays ($h0 -> $h1)" $py -c "import sys; sys.exit(0 if abs($h1 - $h0) < 0.1 * $h0 else 1)"
check "slim s=0 shrinks less than s=0.05" $py -c "import sys; sys.exit(0 if $h1 > $g1 else 1)"

check "lasso: reconstruction beats slicing on every layer" $py - lasso.err <<'PY'
import re, sys
rows = re.findall(r"sliced ([0-9.e+-]+), reconstructed ([0-9.e+-]+)", open(sys.argv[1]).read())
print(rows)
sys.exit(0 if len(rows) == 3 and all(float(b) < float(a) for a, b in rows) else 1)
PY
check "lasso uses uniform's widths" test "$(structure out/lasso/report.json)" = "$(structure out/uniform/report.json)"
mkdir -p r2 && cp out/baseline.ckpt r2/
"$exe" --out "$work/r2" random m.yaml >/dev/null 2>&1
check "random: the same seed gives the same structure" test "$(structure r2/random/report.json)" = "$(structure out/random/report.json)"
mkdir -p r3 && cp out/baseline.ckpt r3/
"$exe" --out "$work/r3" --set seed=6 random m.yaml >/dev/null 2>&1
check "random: another seed another structure" test "$(structure r3/random/report.json)" != "$(structure out/random/report.json)"

cp out/uniform/pruned.ckpt u.ckpt
"$exe" uniform m.yaml >uniform2.out 2>/dev/null
check "a finished method is not redone (checkpoint kept)" cmp -s u.ckpt out/uniform/pruned.ckpt
check "and reports the same" test "$(grep 'test accuracy' uniform.out)" = "$(grep 'test accuracy' uniform2.out)"

"$exe" --set prune.flops_target=0.001 uniform m.yaml >/dev/null 2>err.txt
check "an unreachable target fails (exit 1)" test $? -eq 1
check "and names it" grep -q "below the smallest structure" err.txt

# The ABC search under the budget, on 1 and 2 ranks.
for n in 1 2; do
  mkdir -p "s$n" && cp out/baseline.ckpt "s$n/"
  "$mpiexec" -n "$n" "${preflags[@]}" "$exe" --out "$work/s$n" --set prune.flops_target=0.35 search m.yaml >/dev/null 2>"s$n.err"
  check "search under a budget on $n rank(s) exits 0" test $? -eq 0
done
check "search under the budget: every candidate repaired to fit, near it" $py - s1/search.jsonl s1/best.yaml <<'PY'
import json, re, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
evals = [l for l in lines if l.get("event") == "eval"]
best = open(sys.argv[2]).read()
flops = int(re.search(r"^flops: (\d+)", best, re.M).group(1))
flops_full = int(re.search(r"^flops_full: (\d+)", best, re.M).group(1))
budget = 0.35 * flops_full
top = max(e["flops"] for e in evals)
print(len(evals), "evals, largest", top, "best", flops, "budget", budget)
ok = evals and all(e["flops"] <= budget and "error" not in e for e in evals) \
    and flops <= budget and top >= 0.8 * budget
sys.exit(0 if ok else 1)
PY
strip() { $py -c "
import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get('event') == 'eval': print(e['eval_id'], e['structure'], e['fitness'], e.get('error',''))
" "$1"; }
check "the budgeted search is the same on 1 and 2 ranks" test "$(strip s1/search.jsonl)" = "$(strip s2/search.jsonl)"

# A budget below even the smallest code (all 1s: 20346 of 1919872 MACs):
# nothing can be repaired to fit, every candidate scores 0 untrained with
# the reason, and the search still ends.
mkdir -p s0 && cp out/baseline.ckpt s0/
"$exe" --out "$work/s0" --set prune.flops_target=0.01 search m.yaml >/dev/null 2>s0.err
check "a search under an impossible budget ends (exit 0)" test $? -eq 0
check "every candidate penalised (fitness 0, reason logged, not trained)" $py - s0/search.jsonl <<'PY'
import json, sys
evals = [json.loads(l) for l in open(sys.argv[1]) if '"eval"' in l]
print(len(evals), "evals")
sys.exit(0 if evals and all(e["fitness"] == 0 and e["seconds"] == 0 and
                            "over the FLOPs budget" in e["error"]
                            for e in evals) else 1)
PY

check_finish test_methods

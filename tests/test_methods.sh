#!/usr/bin/env bash
# test_methods.sh - the other pruning methods and the FLOPs budget end to
# end on a tiny config (ResNet-20, 2k images: fine enough a grain for the
# 1 % window; smallnet's 3 layers are too coarse), all from one baseline:
#  1. slim, lasso, uniform and random each write a report whose pruned MACs
#     meet prune.flops_target within 1 % (<= target, >= 99 % of it: every
#     method is compared at the same cost), with the structure the report
#     names built by `info`, and a test accuracy in [0, 1];
#  2. slim's sparsity training shrinks the prunable layers' mean |gamma|
#     (s = 0.05) and leaves it where it was with s = 0;
#  3. lasso's per-layer reconstruction error is below plain slicing's;
#  4. uniform and lasso share the structure (lasso's widths are uniform's);
#     random differs between seeds and is the same for the same seed;
#  5. a second run of a finished method keeps its checkpoint (same report);
#  6. the ABC search at the target: every candidate's code is scaled to it
#     (every evaluation's MACs and best.yaml's within 1 % under it, no
#     evaluation wasted); on 1 and 2 ranks the same log (the scaling is
#     deterministic);
#  7. randsearch on 2 ranks: its own directory, a report at the target with
#     method randsearch, the same init candidates as ABC (paired), its
#     employed/onlooker candidates other than ABC's, the same evaluation
#     count (up to scouts);
#  8. errors: no baseline, an unreachable target (methods and the search),
#     a baseline trained on another split (data.split_seed / val_size).
# usage: test_methods.sh ABCPRUNE MPIEXEC "PREFLAGS" WORKDIR
set -u
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
exe="$1"
mpiexec="$2"
read -r -a preflags <<<"${3//;/ }"
work="$4/methods"
check_workdir "$work"

cat >m.yaml <<YAML
seed: 5
threads: 1
out_dir: $work/out
data: {val_size: 400, train_subset: 2048, test_subset: 500, crop_pad: 0, flip: false}
model: {arch: resnet20}
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
# The split is the baseline's: a step on another split refuses it, naming
# both, and leaves nothing behind.
for step in uniform search; do
  "$exe" --set data.split_seed=7 "$step" m.yaml >/dev/null 2>err.txt
  check "$step on another split than the baseline's fails (exit 1)" test $? -eq 1
  check "and names both splits" grep -q "trained on another split (data.split_seed 1, data.val_size 400) than .* asks for (data.split_seed 7, data.val_size 400)" err.txt
done
check "and wrote nothing" test ! -e out/uniform -a ! -e out/colony.ckpt
"$exe" --set data.val_size=300 --set train.epochs=3 train m.yaml >/dev/null 2>err.txt
check "resuming a training on another split fails" grep -q "trained on another split" err.txt

# report.json field
field() { $py -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
structure() { $py -c "import json,sys; print(','.join(map(str,json.load(open(sys.argv[1]))['structure'])))" "$1"; }

for m in slim lasso uniform random; do
  "$exe" "$m" m.yaml >"$m.out" 2>"$m.err"
  check "$m exits 0" test $? -eq 0
  r="out/$m/report.json"
  check "$m wrote its report and checkpoint" test -f "$r" -a -f "out/$m/pruned.ckpt"
  check "$m: MACs within 1% under the target" $py - "$r" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r["flops_target"] * r["baseline_macs"]
ok = r["method"] and r["pruned_macs"] <= t and r["pruned_macs"] >= 0.99 * t \
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
sys.exit(0 if len(rows) == 9 and all(float(b) < float(a) for a, b in rows) else 1)
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
check "search at the target: every candidate within 1% under it" $py - s1/search.jsonl s1/best.yaml <<'PY'
import json, re, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
evals = [l for l in lines if l.get("event") == "eval"]
best = open(sys.argv[2]).read()
flops = int(re.search(r"^flops: (\d+)", best, re.M).group(1))
flops_full = int(re.search(r"^flops_full: (\d+)", best, re.M).group(1))
target = int(0.35 * flops_full)
lo = min(e["flops"] for e in evals)
hi = max(e["flops"] for e in evals)
print(len(evals), "evals, MACs", lo, "..", hi, "best", flops, "target", target)
ok = evals and all("error" not in e for e in evals) \
    and 0.99 * target <= lo and hi <= target and 0.99 * target <= flops <= target
sys.exit(0 if ok else 1)
PY
strip() { $py -c "
import json,sys
for l in open(sys.argv[1]):
    e = json.loads(l)
    if e.get('event') == 'eval': print(e['eval_id'], e['structure'], e['fitness'], e.get('error',''))
" "$1"; }
check "the budgeted search is the same on 1 and 2 ranks" test "$(strip s1/search.jsonl)" = "$(strip s2/search.jsonl)"

# randsearch: the colony's fair null, on 2 ranks, from the same baseline,
# in compare.sh's two steps: search --random (only the search), then
# finetune --random.
"$mpiexec" -n 2 "${preflags[@]}" "$exe" --out "$work/s2" --set prune.flops_target=0.35 search --random m.yaml >/dev/null 2>rs.err
check "search --random on 2 ranks exits 0" test $? -eq 0
check "search --random searched and fine-tuned nothing" \
  test -f s2/randsearch/best.yaml -a ! -e s2/randsearch/pruned.ckpt
"$exe" --out "$work/s2" --set prune.flops_target=0.35 finetune --random m.yaml >rs.out 2>>rs.err
check "finetune --random exits 0" test $? -eq 0
check "randsearch wrote its report, checkpoint and log in randsearch/" \
  test -f s2/randsearch/report.json -a -f s2/randsearch/pruned.ckpt -a -f s2/randsearch/search.jsonl
check "randsearch: paired with ABC, random moves, same count, at the target" $py - s2/search.jsonl s2/randsearch/search.jsonl s2/randsearch/report.json <<'PY'
import json, sys
def evals(p):
    return [e for e in map(json.loads, open(p)) if e.get("event") == "eval"]
abc, rnd = evals(sys.argv[1]), evals(sys.argv[2])
rep = json.load(open(sys.argv[3]))
init = lambda ev: [e["code"] for e in ev if e["phase"] == "init"]
moves = [e for e in rnd if e["phase"] in ("employed", "onlooker")]
abc_moves = [e for e in abc if e["phase"] in ("employed", "onlooker")]
# ABC's moves lean on their sources; random search's are fresh codes, so
# they differ from ABC's candidate at the same place almost always
diff = [sum(a != b for a, b in zip(e["code"], m["code"])) for e, m in zip(moves, abc_moves)]
t = rep["flops_target"] * rep["baseline_macs"]
print("init same:", init(abc) == init(rnd), "evals", len(abc), len(rnd),
      "moves differing from ABC's:", sum(d > 0 for d in diff), "of", len(diff),
      "report", rep["method"], rep["pruned_macs"], "target", t)
ok = init(abc) == init(rnd) and abs(len(abc) - len(rnd)) <= 2 \
    and sum(d > 0 for d in diff) >= 0.7 * len(diff) \
    and rep["method"] == "randsearch" and 0.99 * t <= rep["pruned_macs"] <= t
sys.exit(0 if ok else 1)
PY
"$mpiexec" -n 2 "${preflags[@]}" "$exe" --out "$work/s2" --set prune.flops_target=0.35 randsearch m.yaml >rs2.out 2>/dev/null
check "a finished randsearch is not redone (same report)" \
  test "$(grep 'test accuracy' rs.out)" = "$(grep 'test accuracy' rs2.out)"

# A target below the smallest structure: the search refuses to start.
mkdir -p s0 && cp out/baseline.ckpt s0/
"$exe" --out "$work/s0" --set prune.flops_target=0.001 search m.yaml >/dev/null 2>s0.err
check "a search at an unreachable target fails (exit 1)" test $? -eq 1
check "and names the key and the smallest structure" grep -q "prune.flops_target.*below the smallest structure" s0.err

check_finish test_methods

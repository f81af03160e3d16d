#!/usr/bin/env bash
# Throughput benchmark: our engine against PyTorch CPU (Debian's
# python3-torch, oneDNN) in its default configuration and in its best one
# here (channels_last + GLIBC_TUNABLES, see bench_torch.py), on the
# identical network, batch and input, measured side by side in one run:
# ROUNDS rounds, each running the three alternately for every model,
# structure and thread count, so machine noise hits all alike; the medians
# over rounds and the ratios ours / PyTorch (> 1 = we are faster) are
# printed with the CPU model and the BLAS kernel path that ran, and every
# measurement goes to a JSON-lines file. Not a test.
# usage: bench/run_bench.sh [BUILD_DIR] [STEPS] [ROUNDS] [CASES_FILE]
#   CASES_FILE: lines "ARCH STRUCTURE LABEL" (STRUCTURE: full or kept
#   channels per prunable layer, comma-separated); default bench/cases.txt
#   BENCH_OUT: the JSON-lines file (default bench-results.jsonl)
#   BENCH_ISA=avx2: an AVX2-only machine emulated on an AVX-512 one, both
#     sides restricted alike: ours runs its AVX2 kernels (ABC_GEMM=avx2),
#     PyTorch's oneDNN and ATen theirs (ONEDNN_MAX_CPU_ISA=AVX2,
#     ATEN_CPU_CAPABILITY=avx2). Default: each side's widest.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/../build}"
steps="${2:-10}"
rounds="${3:-2}"
cases="${4:-$here/cases.txt}"
out="${BENCH_OUT:-bench-results.jsonl}"
best_env="glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"
isa="${BENCH_ISA:-native}"
case "$isa" in
native) ours_isa=() torch_isa=() ;;
avx2) ours_isa=(ABC_GEMM=avx2) torch_isa=(ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2) ;;
*) echo "run_bench.sh: BENCH_ISA must be avx2 or native, not $isa" >&2; exit 2 ;;
esac
[ -x "$build/bench_train" ] || { echo "run_bench.sh: no $build/bench_train (build first)" >&2; exit 2; }
[ -r "$cases" ] || { echo "run_bench.sh: cannot read $cases" >&2; exit 2; }
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo "run_bench: $cpu, $(nproc) CPUs, OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}, ISA $isa, $rounds rounds x $steps steps" >&2
: >"$out"
for r in $(seq 1 "$rounds"); do
  while read -r arch structure label; do
    [ -z "$arch" ] || [ "${arch:0:1}" = "#" ] && continue
    for threads in 1 2; do
      tag() { sed "s/^{/{\"round\":$r,\"label\":\"$label\",\"cpu\":\"$cpu\",\"isa\":\"$isa\",/"; }
      env ${ours_isa[@]+"${ours_isa[@]}"} OMP_NUM_THREADS=$threads "$build/bench_train" "$arch" "$threads" 128 "$steps" 28 \
        "$([ "$structure" = full ] && echo "" || echo "$structure")" | tag >>"$out"
      env ${torch_isa[@]+"${torch_isa[@]}"} OMP_NUM_THREADS=$threads BENCH_IMPL=pytorch-default /usr/bin/python3 \
        "$here/bench_torch.py" "$arch" "$threads" 128 "$steps" 28 "$structure" | tag >>"$out"
      env ${torch_isa[@]+"${torch_isa[@]}"} OMP_NUM_THREADS=$threads BENCH_IMPL=pytorch-best GLIBC_TUNABLES="$best_env" \
        /usr/bin/python3 "$here/bench_torch.py" "$arch" "$threads" 128 "$steps" 28 \
        "$structure" --channels-last | tag >>"$out"
      echo "run_bench: round $r $label $threads thread(s) done" >&2
    done
  done <"$cases"
done
/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = {}
for r in rows:
    k = (r["label"], r["threads"], r["impl"])
    med.setdefault(k, []).append(r)
m = lambda k, f: statistics.median(x[f] for x in med[k])
labels = list(dict.fromkeys(r["label"] for r in rows))
o = [r for r in rows if r["impl"] == "abcprune"][0]
print("CPU: %s; ISA: %s; our GEMM: %s; OpenBLAS kernels: %s; rounds: %d" % (
    rows[0]["cpu"], rows[0].get("isa", "native"), o.get("gemm", "?"),
    o.get("blas_core", "?"), max(r["round"] for r in rows)))
print("| net | threads | MMACs | train img/s ours | PyTorch default | PyTorch best | ours/best "
      "| infer img/s ours | PyTorch best | ours/best |")
print("|---|---|---|---|---|---|---|---|---|---|")
for lab in labels:
    for t in (1, 2):
        o, d, b = (lab, t, "abcprune"), (lab, t, "pytorch-default"), (lab, t, "pytorch-best")
        if o not in med:
            continue
        macs = med[o][0]["macs"] / 1e6
        print("| %s | %d | %.1f | %.0f | %.0f | %.0f | %.2f | %.0f | %.0f | %.2f |" % (
            lab, t, macs, m(o, "train_img_s"), m(d, "train_img_s"), m(b, "train_img_s"),
            m(o, "train_img_s") / m(b, "train_img_s"), m(o, "infer_img_s"),
            m(b, "infer_img_s"), m(o, "infer_img_s") / m(b, "infer_img_s")))
# A pruned net's speedup over its full net (same arch, threads and engine)
# against its MACs reduction; the issue's target is a ratio >= 0.8.
full = {}
for lab in labels:
    r0 = med[(lab, 1, "abcprune")][0]
    if r0["structure"] in ("", "full"):
        full[r0["model"]] = lab
print()
print("| pruned net | threads | MACs reduction | train speedup ours | ratio | PyTorch best | ratio "
      "| infer speedup ours | ratio |")
print("|---|---|---|---|---|---|---|---|---|")
for lab in labels:
    r0 = med[(lab, 1, "abcprune")][0]
    if r0["structure"] in ("", "full") or r0["model"] not in full:
        continue
    f = full[r0["model"]]
    for t in (1, 2):
        o, fo = (lab, t, "abcprune"), (f, t, "abcprune")
        b, fb = (lab, t, "pytorch-best"), (f, t, "pytorch-best")
        if o not in med or fo not in med:
            continue
        red = med[fo][0]["macs"] / med[o][0]["macs"]
        so = m(o, "train_img_s") / m(fo, "train_img_s")
        sb = m(b, "train_img_s") / m(fb, "train_img_s")
        si = m(o, "infer_img_s") / m(fo, "infer_img_s")
        print("| %s | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |" % (
            lab, t, red, so, so / red, sb, sb / red, si, si / red))
PY

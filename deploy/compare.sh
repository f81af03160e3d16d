#!/usr/bin/env bash
# compare.sh - ABC against random search at the same evaluation count,
# Network Slimming, LASSO, uniform and random pruning: one baseline, the same
# FLOPs targets, the same fine-tuning, several paired seeds; then one table
# (Markdown + CSV) with the paired verdict, and plots.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: deploy/compare.sh [options] CONFIG

Trains CONFIG's baseline once (OUT/baseline.ckpt, kept if finished), then for
every FLOPs target and seed runs each method from it and fine-tunes the
result with CONFIG's finetune section:
  abc         mpirun -np RANKS abcprune search, then finetune
  randsearch  mpirun -np RANKS abcprune search --random, then
              finetune --random (the fair null: ABC's evaluation count,
              fitness, target and seeds, random shapes)
  slim        abcprune slim      (Network Slimming)
  lasso       abcprune lasso     (He et al. 2017)
  uniform     abcprune uniform
  random      abcprune random
Point directories: OUT/t<target>/s<seed>/ (abc's report at its top, the
others' in <method>/). Within a seed every method fine-tunes with the same
seed (--set seed=S), so the runs pair up; the training/validation split is
the baseline's for every seed (data.split_seed). Finished points are
skipped, so the same command continues an interrupted comparison. Then it
writes OUT/compare.csv (one row per run), OUT/compare.md (mean +- sample
std over seeds per method and target, then the paired verdict: per seed
method - uniform and abc - randsearch, mean, 95 % t-interval, Wilcoxon
signed-rank p), OUT/accuracy_vs_flops.png and OUT/paired_deltas.png
(gnuplot).

options:
  -t LIST    FLOPs targets, fractions of the baseline's MACs (default 0.5)
  -s LIST    seeds (default 1,2)
  -m LIST    methods (default abc,randsearch,slim,lasso,uniform,random)
  -n RANKS   ranks of the ABC search, rank 0 + RANKS-1 workers (default 3)
  -w N       threads per rank of the ABC search (default 1: ranks share
             the cores); the other steps use the config's threads
  -o DIR     output directory (default runs/<config name>, the config's
             default out_dir, so a baseline trained there is reused)
  -b BINARY  abcprune binary (default build/abcprune)
  -M CMD     MPI launcher (default "mpirun --oversubscribe --allow-run-as-root")
  -A OPTS    submit to Slurm instead of running here: a baseline job, then
             the points (target x seed) as a job array (--array, one point
             per task, RANKS tasks each, logs OUT/slurm/point_%A_%a.log)
             after it (--dependency=afterok), then the report job after the
             array. OPTS are more sbatch options for every job ("" for
             none), e.g. -A "-p batch --time=120". Each point records its
             Slurm job, array ids and node list (OUT/t*/s*/slurm.txt, and
             the search log's done line).
  -h         this help
Lists are comma-separated. Extra --set options for every run go after --:
  deploy/compare.sh -t 0.3,0.5 configs/compare.yaml -- --set finetune.epochs=2
EOF
}

die() { echo "compare.sh: $*" >&2; exit 2; }

targets=0.5 seeds=1,2 methods=abc,randsearch,slim,lasso,uniform,random ranks=3 wthreads=1
out="" bin=build/abcprune mpirun_cmd="mpirun --oversubscribe --allow-run-as-root"
slurm=0 sbatch_opts=""
argv=("$@") # for the jobs that -A submits: the same command, one stage each
# COMPARE_STAGE (set in those jobs): baseline | point (the array task's
# point) | report; unset: all of it here.
stage=${COMPARE_STAGE:-all}
case $stage in all | baseline | point | report) ;;
  *) echo "compare.sh: COMPARE_STAGE=$stage: expected baseline, point or report" >&2; exit 2 ;;
esac
while getopts ":t:s:m:n:w:o:b:M:A:h" opt; do
  case $opt in
    t) targets=$OPTARG ;;
    s) seeds=$OPTARG ;;
    m) methods=$OPTARG ;;
    n) ranks=$OPTARG ;;
    w) wthreads=$OPTARG ;;
    o) out=$OPTARG ;;
    b) bin=$OPTARG ;;
    M) mpirun_cmd=$OPTARG ;;
    A) slurm=1 sbatch_opts=$OPTARG ;;
    h) usage; exit 0 ;;
    :) die "-$OPTARG needs a value (see -h)" ;;
    *) die "unknown option -$OPTARG (see -h)" ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { usage >&2; exit 2; }
config=$1
shift
extra=()
if [ $# -gt 0 ]; then
  [ "$1" = "--" ] || die "unexpected argument '$1' (extra options go after --)"
  shift
  extra=("$@")
fi
[ -f "$config" ] || die "$config: no such config file"
[ -x "$bin" ] || die "$bin: not an executable (build first, or give -b)"
[[ $ranks =~ ^[1-9][0-9]*$ ]] || die "-n: expected a rank count >= 1, got '$ranks'"
[[ $wthreads =~ ^[1-9][0-9]*$ ]] || die "-w: expected a thread count >= 1, got '$wthreads'"
IFS=, read -r -a target_list <<<"$targets"
IFS=, read -r -a seed_list <<<"$seeds"
IFS=, read -r -a method_list <<<"$methods"
for t in "${target_list[@]}"; do
  [[ $t =~ ^0?\.[0-9]+$ ]] || die "-t: expected fractions in (0, 1) like 0.5, got '$t'"
done
for s in "${seed_list[@]}"; do
  [[ $s =~ ^[0-9]+$ ]] || die "-s: expected non-negative integer seeds, got '$s'"
done
for m in "${method_list[@]}"; do
  case $m in abc | randsearch | slim | lasso | uniform | random) ;;
    *) die "-m: unknown method '$m' (abc, randsearch, slim, lasso, uniform, random)" ;;
  esac
done
if [ -z "$out" ]; then
  stem=$(basename "$config")
  out="runs/${stem%.*}"
fi
mkdir -p "$out"
read -r -a mpirun_argv <<<"$mpirun_cmd"
launch=() # the ABC search: under MPI with workers, else in-process
[ "$ranks" -gt 1 ] && launch=("${mpirun_argv[@]}" -np "$ranks")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

now() { date +%s.%N; }
# run_timed FILE CMD...: runs CMD, records its wall seconds in FILE.
run_timed() {
  local file=$1 t0 rc=0
  shift
  t0=$(now)
  "$@" || rc=$?
  if [ $rc -ne 0 ]; then
    echo "compare.sh: failed (exit $rc): $*" >&2
    exit $rc
  fi
  awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.3f\n", a - b }' >"$file"
}

# The points in order: point k is targets[k / seeds] x seeds[k % seeds].
npoints=$((${#target_list[@]} * ${#seed_list[@]}))

if [ "$slurm" = 1 ] && [ "$stage" = all ]; then
  command -v sbatch >/dev/null || die "-A: sbatch not found (is this a Slurm cluster?)"
  read -r -a sbatch_argv <<<"$sbatch_opts"
  mkdir -p "$out/slurm"
  self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
  # the same command without -A, as each job's one stage
  again=()
  skip_next=0
  for a in "${argv[@]}"; do
    if [ $skip_next = 1 ]; then skip_next=0; continue; fi
    case $a in -A) skip_next=1; continue ;; -A*) continue ;; esac
    again+=("$a")
  done
  job() { # job STAGE SBATCH-OPTIONS...: submits one stage, prints its id
    local st=$1
    shift
    sbatch --parsable "${sbatch_argv[@]}" "$@" \
      --export=ALL,COMPARE_STAGE="$st" \
      --wrap "$(printf '%q ' bash "$self" "${again[@]}")"
  }
  jb=$(job baseline --job-name=compare-baseline \
    --output="$out/slurm/baseline_%j.log") || die "sbatch of the baseline job failed"
  ja=$(job point --job-name=compare-point --array="0-$((npoints - 1))" \
    --ntasks="$ranks" --dependency="afterok:$jb" \
    --output="$out/slurm/point_%A_%a.log") || die "sbatch of the point array failed"
  jr=$(job report --job-name=compare-report --dependency="afterok:$ja" \
    --output="$out/slurm/report_%j.log") || die "sbatch of the report job failed"
  printf 'baseline %s\npoints %s 0-%d\nreport %s\n' "$jb" "$ja" \
    "$((npoints - 1))" "$jr" >"$out/slurm/jobs.txt"
  echo "compare.sh: submitted baseline job $jb, points as array job $ja (tasks 0-$((npoints - 1)), logs $out/slurm/point_${ja}_<task>.log), report job $jr after them"
  exit 0
fi

if [ "$stage" = all ] || [ "$stage" = baseline ]; then
  echo "== baseline: $bin --out $out train $config"
  "$bin" --out "$out" "${extra[@]}" train "$config"
fi
only=-1 # the point of an array task, or -1: all
if [ "$stage" = point ]; then
  only=${SLURM_ARRAY_TASK_ID:-}
  [[ $only =~ ^[0-9]+$ ]] && [ "$only" -lt "$npoints" ] ||
    die "COMPARE_STAGE=point needs SLURM_ARRAY_TASK_ID in 0..$((npoints - 1)), got '$only'"
fi

k=-1
for t in "${target_list[@]}"; do
  for s in "${seed_list[@]}"; do
    k=$((k + 1))
    [ "$stage" = baseline ] || [ "$stage" = report ] && continue
    [ "$only" -ge 0 ] && [ "$k" -ne "$only" ] && continue
    p="$out/t$t/s$s"
    mkdir -p "$p"
    if [ -n "${SLURM_JOB_ID:-}" ]; then
      printf 'slurm_job_id %s\nslurm_array_job_id %s\nslurm_array_task_id %s\nslurm_job_nodelist %s\n' \
        "$SLURM_JOB_ID" "${SLURM_ARRAY_JOB_ID:-}" "${SLURM_ARRAY_TASK_ID:-}" \
        "${SLURM_JOB_NODELIST:-}" >"$p/slurm.txt"
    fi
    ln -f "$out/baseline.ckpt" "$p/baseline.ckpt" 2>/dev/null ||
      cp "$out/baseline.ckpt" "$p/baseline.ckpt"
    sets=(--set "seed=$s" --set "prune.flops_target=$t" "${extra[@]}")
    for m in "${method_list[@]}"; do
      if [ "$m" = abc ] || [ "$m" = randsearch ]; then
        rflag=() report="$p/report.json"
        [ "$m" = randsearch ] && rflag=(--random) report="$p/randsearch/report.json"
        [ -f "$report" ] && [ -f "$p/$m.finetune_s" ] && continue
        echo "== target $t seed $s: $m search on $ranks ranks"
        run_timed "$p/$m.search_s" "${launch[@]}" "$bin" --out "$p" \
          "${sets[@]}" --set "threads=$wthreads" search --resume "${rflag[@]}" "$config"
        run_timed "$p/$m.finetune_s" "$bin" --out "$p" "${sets[@]}" \
          finetune "${rflag[@]}" "$config"
      else
        [ -f "$p/$m/report.json" ] && [ -f "$p/$m.wall_s" ] && continue
        echo "== target $t seed $s: $m"
        run_timed "$p/$m.wall_s" "$bin" --out "$p" "${sets[@]}" "$m" "$config"
      fi
    done
  done
done

[ "$stage" = all ] || [ "$stage" = report ] || exit 0
/usr/bin/python3 "$here/compare_report.py" "$out"
if command -v gnuplot >/dev/null; then
  gnuplot -e "datafile='$out/compare_means.dat'; methods='$(cat "$out/compare_methods.txt")'; outfile='$out/accuracy_vs_flops.png'" \
    "$here/compare.gp"
  echo "plot: $out/accuracy_vs_flops.png"
  if [ -s "$out/compare_deltas.dat" ] && grep -qv '^#' "$out/compare_deltas.dat"; then
    gnuplot -e "datafile='$out/compare_deltas.dat'; outfile='$out/paired_deltas.png'" \
      "$here/compare_deltas.gp"
    echo "plot: $out/paired_deltas.png"
  fi
else
  echo "compare.sh: gnuplot not found: no plot (install gnuplot-nox)" >&2
fi

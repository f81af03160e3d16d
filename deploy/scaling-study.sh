#!/usr/bin/env bash
# scaling-study.sh - sweeps colony size x rank count x seed x schedule of the
# ABC search for one config, then predicts larger worker counts with the
# simulator (abcprune simulate) and checks the simulator against the real
# runs. Everything lands in one run directory:
#   baseline/              the baseline, trained once (or --baseline FILE)
#   points/NAME/           one search per point (NAME = snS_rR_SCHED_sSEED)
#   real.csv               one row per point (see README, "Scaling studies")
#   sim.csv                simulated sync and async searches, --sim-workers
#   sim_validation.csv     every real point simulated from another run's log
#   scaling_*.png          the plots (deploy/scaling/plots.gp)
# A point whose search finished (a done line) is kept when the script runs
# again, so an interrupted sweep continues.
#
#   deploy/scaling-study.sh --sn 4,8 --ranks 1,2,3 --seeds 1,2 configs/scaling.yaml
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: deploy/scaling-study.sh [options] CONFIG
  --sn LIST           colony sizes (search.sn), e.g. 4,8 (default 4,8)
  --ranks LIST        MPI rank counts; 1 = in-process, R > 1 = R-1 workers
                      (default 1,2,3)
  --seeds LIST        run seeds (default 1,2)
  --schedules LIST    sync, async or both (default sync,async)
  --threads N         threads per rank, set in every point's config (default 1)
  --set KEY=VALUE     another config override for every point and the
                      baseline (repeatable), e.g. --set search.max_cycles=1
  --out DIR           run directory (default runs/scaling)
  --baseline FILE     use this baseline.ckpt instead of training one
  --sim-workers LIST  simulated worker counts
                      (default 1,2,4,8,16,32,64,128,256,512,1024)
  --sim-sn LIST       colony sizes to simulate (default: the --sn list);
                      larger ones predict what more workers need
  --sim-log FILE      the log the simulated sweep fits on (default: the
                      point with the most ranks, largest SN, first seed,
                      sync if swept)
  --abcprune FILE     the binary (default build/abcprune next to deploy/)
  --mpiexec CMD       mpirun/mpiexec (default mpirun)
  --mpi-flags FLAGS   flags before the binary (default
                      "--oversubscribe --allow-run-as-root")
  --no-plots          skip gnuplot
  --slurm OPTS        submit to Slurm instead of running here: the baseline
                      job, the points as a job array (--array, one point per
                      task with max(--ranks) tasks, logs
                      OUT/slurm/point_%A_%a.log) after it, then the tables,
                      simulation and plots as a job after the array
                      (--dependency=afterok). OPTS: more sbatch options for
                      every job ("" for none), e.g. "-p batch --time=60".
                      Each point's search log records its Slurm ids.
  -h, --help          this help
Lists are comma-separated positive integers (schedules: names).
USAGE
}

die() { echo "scaling-study.sh: $*" >&2; echo >&2; usage >&2; exit 2; }
need() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }
intlist() { [[ "$2" =~ ^[1-9][0-9]{0,6}(,[1-9][0-9]{0,6})*$ ]] ||
  die "$1 expects a comma-separated list of positive integers, got '$2'"; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sns=4,8 ranks=1,2,3 seeds=1,2 schedules=sync,async threads=1
out=runs/scaling baseline="" sim_workers=1,2,4,8,16,32,64,128,256,512,1024
sim_sns="" sim_log="" exe="$here/../build/abcprune" mpiexec=mpirun
mpi_flags="--oversubscribe --allow-run-as-root" plots=1 config=""
sets=()
slurm=0 sbatch_opts=""
argv=("$@") # for the jobs --slurm submits: the same command, one stage each
# SCALING_STAGE (set in those jobs): baseline | point (the array task's
# point) | report; unset: all of it here.
stage=${SCALING_STAGE:-all}
case $stage in all | baseline | point | report) ;;
  *) echo "scaling-study.sh: SCALING_STAGE=$stage: expected baseline, point or report" >&2; exit 2 ;;
esac
while [ $# -gt 0 ]; do
  case "$1" in
    --sn) need "$@"; intlist "$1" "$2"; sns="$2"; shift 2 ;;
    --ranks) need "$@"; intlist "$1" "$2"; ranks="$2"; shift 2 ;;
    --seeds) need "$@"; intlist "$1" "$2"; seeds="$2"; shift 2 ;;
    --schedules) need "$@"
      [[ "$2" =~ ^(sync|async)(,(sync|async))?$ ]] ||
        die "--schedules expects sync, async or sync,async, got '$2'"
      schedules="$2"; shift 2 ;;
    --threads) need "$@"; [[ "$2" =~ ^[1-9][0-9]{0,3}$ ]] ||
        die "--threads expects a positive integer, got '$2'"
      threads="$2"; shift 2 ;;
    --set) need "$@"; [[ "$2" == *=* ]] || die "--set expects KEY=VALUE, got '$2'"
      sets+=(--set "$2"); shift 2 ;;
    --out) need "$@"; out="$2"; shift 2 ;;
    --baseline) need "$@"; baseline="$2"; shift 2 ;;
    --sim-workers) need "$@"; intlist "$1" "$2"; sim_workers="$2"; shift 2 ;;
    --sim-sn) need "$@"; intlist "$1" "$2"; sim_sns="$2"; shift 2 ;;
    --sim-log) need "$@"; sim_log="$2"; shift 2 ;;
    --abcprune) need "$@"; exe="$2"; shift 2 ;;
    --mpiexec) need "$@"; mpiexec="$2"; shift 2 ;;
    --mpi-flags) [ $# -ge 2 ] || die "--mpi-flags needs a value"
      mpi_flags="$2"; shift 2 ;;
    --no-plots) plots=0; shift ;;
    --slurm) [ $# -ge 2 ] || die "--slurm needs a value (\"\" for no options)"
      slurm=1; sbatch_opts="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option '$1'" ;;
    *) [ -z "$config" ] || die "one CONFIG only ('$config', then '$1')"
      config="$1"; shift ;;
  esac
done
[ -n "$config" ] || die "missing CONFIG"
[ -r "$config" ] || die "CONFIG $config is not readable"
[ -x "$exe" ] || die "no abcprune binary at $exe (build it, or pass --abcprune)"
command -v "$mpiexec" >/dev/null || die "$mpiexec not found (apt-get install openmpi-bin)"
py=/usr/bin/python3
[ -x "$py" ] || die "$py not found (apt-get install python3)"
[ -z "$baseline" ] || [ -r "$baseline" ] || die "baseline $baseline is not readable"
[ -z "$sim_log" ] || [ -r "$sim_log" ] || die "--sim-log $sim_log is not readable"
if [ "$plots" = 1 ]; then
  command -v gnuplot >/dev/null || die "gnuplot not found (apt-get install gnuplot-nox), or pass --no-plots"
fi
read -r -a mflags <<<"$mpi_flags"
IFS=, read -r -a SN <<<"$sns"
IFS=, read -r -a RANKS <<<"$ranks"
IFS=, read -r -a SEEDS <<<"$seeds"
IFS=, read -r -a SCHED <<<"$schedules"
IFS=, read -r -a SIMSN <<<"${sim_sns:-$sns}"
collect="$here/scaling/collect.py"
sets+=(--set "threads=$threads")
export OMP_NUM_THREADS="$threads"
mkdir -p "$out/points" "$out/validation"

# 1. The baseline, once.
npoints=$((${#SN[@]} * ${#RANKS[@]} * ${#SEEDS[@]} * ${#SCHED[@]}))
if [ "$slurm" = 1 ] && [ "$stage" = all ]; then
  command -v sbatch >/dev/null || die "--slurm: sbatch not found (is this a Slurm cluster?)"
  read -r -a sbatch_argv <<<"$sbatch_opts"
  mkdir -p "$out/slurm"
  self="$here/$(basename "${BASH_SOURCE[0]}")"
  again=() # the same command without --slurm
  skip_next=0
  for a in "${argv[@]}"; do
    if [ $skip_next = 1 ]; then skip_next=0; continue; fi
    [ "$a" = --slurm ] && { skip_next=1; continue; }
    again+=("$a")
  done
  job() { # job STAGE SBATCH-OPTIONS...: submits one stage, prints its id
    local st=$1
    shift
    sbatch --parsable "${sbatch_argv[@]}" "$@" --export=ALL,SCALING_STAGE="$st" \
      --wrap "$(printf '%q ' bash "$self" "${again[@]}")"
  }
  maxr=$(printf '%s\n' "${RANKS[@]}" | sort -n | tail -n 1)
  dep=()
  if [ -z "$baseline" ]; then
    jb=$(job baseline --job-name=scaling-baseline \
      --output="$out/slurm/baseline_%j.log") || die "sbatch of the baseline job failed"
    dep=(--dependency="afterok:$jb")
  fi
  ja=$(job point --job-name=scaling-point --array="0-$((npoints - 1))" \
    --ntasks="$maxr" "${dep[@]}" --output="$out/slurm/point_%A_%a.log") ||
    die "sbatch of the point array failed"
  jr=$(job report --job-name=scaling-report --dependency="afterok:$ja" \
    --output="$out/slurm/report_%j.log") || die "sbatch of the report job failed"
  printf 'baseline %s\npoints %s 0-%d\nreport %s\n' "${jb:-}" "$ja" \
    "$((npoints - 1))" "$jr" >"$out/slurm/jobs.txt"
  echo "scaling-study: submitted ${jb:+baseline job $jb, }points as array job $ja (tasks 0-$((npoints - 1)), logs $out/slurm/point_${ja}_<task>.log), report job $jr after them" >&2
  exit 0
fi
only=-1 # the point of an array task, or -1: all
if [ "$stage" = point ]; then
  only=${SLURM_ARRAY_TASK_ID:-}
  [[ $only =~ ^[0-9]+$ ]] && [ "$only" -lt "$npoints" ] ||
    die "SCALING_STAGE=point needs SLURM_ARRAY_TASK_ID in 0..$((npoints - 1)), got '$only'"
fi

own_base=0
if [ -z "$baseline" ]; then
  baseline="$out/baseline/baseline.ckpt"
  own_base=1
fi
if [ "$own_base" = 1 ] && { [ "$stage" = all ] || [ "$stage" = baseline ]; }; then
  echo "scaling-study: baseline -> $baseline" >&2
  "$exe" --out "$out/baseline" "${sets[@]}" train "$config" \
    >"$out/baseline.log" 2>&1 ||
    { echo "scaling-study.sh: training the baseline failed, see $out/baseline.log" >&2; exit 1; }
fi
[ "$stage" = baseline ] && exit 0

# 2. The real sweep.
workers_of() { if [ "$1" -gt 1 ]; then echo $(($1 - 1)); else echo 1; fi; }
name_of() { echo "sn$1_r$2_$3_s$4"; } # sn ranks schedule seed
k=0
[ "$stage" = point ] || : >"$out/points.txt"
for sn in "${SN[@]}"; do
  for r in "${RANKS[@]}"; do
    for sch in "${SCHED[@]}"; do
      for seed in "${SEEDS[@]}"; do
        k=$((k + 1))
        name=$(name_of "$sn" "$r" "$sch" "$seed")
        dir="$out/points/$name"
        if [ "$stage" = point ]; then
          [ $((k - 1)) -eq "$only" ] || continue
        else
          echo "$sn $r $(workers_of "$r") $threads $sch $seed points/$name" >>"$out/points.txt"
        fi
        [ "$stage" = report ] && continue # the array ran them
        if grep -qs '"event":"done"' "$dir/search.jsonl"; then
          echo "scaling-study: point $k/$npoints $name: done before, kept" >&2
          continue
        fi
        rm -rf "$dir"
        mkdir -p "$dir"
        cp "$baseline" "$dir/baseline.ckpt"
        t0=$(date +%s.%N)
        "$mpiexec" -np "$r" "${mflags[@]}" "$exe" --out "$dir" "${sets[@]}" \
          --set "search.sn=$sn" --set "seed=$seed" --set "search.schedule=$sch" \
          search "$config" >"$dir/search.out" 2>"$dir/search.err" ||
          { echo "scaling-study.sh: point $name failed, see $dir/search.err" >&2; exit 1; }
        echo "scaling-study: point $k/$npoints $name: $(tail -n 2 "$dir/search.err" | head -n 1 | sed 's/^search done: //') ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')s with mpirun)" >&2
      done
    done
  done
done
[ "$stage" = point ] && exit 0
"$py" "$collect" real "$out"

# 3. The simulated sweep, from one real run's log.
if [ -z "$sim_log" ]; then
  maxr=$(printf '%s\n' "${RANKS[@]}" | sort -n | tail -n 1)
  maxsn=$(printf '%s\n' "${SN[@]}" | sort -n | tail -n 1)
  refsch=${SCHED[0]}
  for s in "${SCHED[@]}"; do [ "$s" = sync ] && refsch=sync; done
  sim_log="$out/points/$(name_of "$maxsn" "$maxr" "$refsch" "${SEEDS[0]}")/search.jsonl"
fi
echo "scaling-study: simulating $sim_workers workers from $sim_log" >&2
first=1
for sn in "${SIMSN[@]}"; do
  "$exe" "${sets[@]}" --set "search.sn=$sn" --set "seed=${SEEDS[0]}" simulate \
    --workers "$sim_workers" --schedule both --log "$sim_log" \
    --csv "$out/sim_sn$sn.csv" "$config" 2>"$out/sim_sn$sn.err" ||
    { echo "scaling-study.sh: simulate failed:" >&2; cat "$out/sim_sn$sn.err" >&2; exit 1; }
  if [ $first = 1 ]; then cat "$out/sim_sn$sn.csv"; else tail -n +2 "$out/sim_sn$sn.csv"; fi
  first=0
  rm -f "$out/sim_sn$sn.csv"
done >"$out/sim.csv"
echo "$sim_log" >"$out/sim_log.txt"

# 4. Validation: every real point simulated from the log of the same
# (sn, ranks, schedule) with the next seed of the list (a held-out run);
# with one seed, from its own log.
: >"$out/validation/refs.txt"
for sn in "${SN[@]}"; do
  for r in "${RANKS[@]}"; do
    for sch in "${SCHED[@]}"; do
      for i in "${!SEEDS[@]}"; do
        seed=${SEEDS[$i]}
        rseed=${SEEDS[$(((i + 1) % ${#SEEDS[@]}))]}
        name=$(name_of "$sn" "$r" "$sch" "$seed")
        ref=$(name_of "$sn" "$r" "$sch" "$rseed")
        echo "$name $ref" >>"$out/validation/refs.txt"
        "$exe" "${sets[@]}" --set "search.sn=$sn" --set "seed=$seed" simulate \
          --workers "$(workers_of "$r")" --schedule "$sch" \
          --log "$out/points/$ref/search.jsonl" \
          --csv "$out/validation/$name.csv" "$config" 2>"$out/validation/$name.err" ||
          { echo "scaling-study.sh: simulate failed:" >&2; cat "$out/validation/$name.err" >&2; exit 1; }
      done
    done
  done
done
"$py" "$collect" validate "$out" | tee "$out/sim_validation.txt" >&2
"$py" "$collect" simplot "$out"

# 5. Plots.
if [ "$plots" = 1 ]; then
  gnuplot -e "dir='$out'; sns='${SN[*]}'; simsns='${SIMSN[*]}'" "$here/scaling/plots.gp"
  echo "scaling-study: plots $out/scaling_time.png $out/scaling_cycles.png $out/scaling_fitness.png" >&2
fi
echo "scaling-study: $out/real.csv, $out/sim.csv, $out/sim_validation.csv" >&2

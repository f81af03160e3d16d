#!/usr/bin/env bash
# test_slurm.sh - deploy/slurm/abcprune.sbatch on a real single-node Slurm
# cluster started here from Debian's packages (munge, slurmctld, slurmd; no
# systemd): (1) `run` submitted as a batch job COMPLETES and leaves
# best.yaml and the fine-tuned checkpoint; (2) a search job warned of its
# time limit (SIGUSR1 to the batch shell, what --signal=B:USR1 sends) saves
# its colony, requeues itself, and the requeued job finishes with the same
# best structure and fitness as an uninterrupted search; (3) `srun
# --mpi=none -n 2` (singletons, no PMI) is refused by every copy with the
# launch to use, before anything is written. Exits 77 (CTest:
# skipped) when the daemons cannot be started here; tears them down by PID.
# usage: test_slurm.sh ABCPRUNE SOURCEDIR WORKDIR MPIEXEC "PREFLAGS"
set -u
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
exe="$1"
sbatch_script="$2/deploy/slurm/abcprune.sbatch"
work="$3/slurm"
mpiexec="$4"
read -r -a preflags <<<"${5//;/ }"
skip() { echo "SKIP: $*"; exit 77; }
for b in sbatch scontrol sinfo scancel /usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/munged munge unmunge; do
  command -v "$b" >/dev/null 2>&1 || skip "$b not installed (apt-get install slurm-wlm munge)"
done
[ "$(id -u)" -eq 0 ] || skip "starting slurmd and munged needs root"

rm -rf "$work"
mkdir -p "$work"/{state,spool,log,run,job}
cd "$work" || exit 1
chown slurm:slurm state log && chmod 777 run job
export SLURM_CONF="$work/slurm.conf"
cat >"$SLURM_CONF" <<CONF
ClusterName=abctest
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MailProg=/bin/true
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=600
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/run/slurmctld.pid
SlurmdPidFile=$work/run/slurmd.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName=localhost CPUs=2 Sockets=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
chmod 644 "$SLURM_CONF"

started_munge=0
pids=()
teardown() {
  for f in run/slurmd.pid run/slurmctld.pid; do
    [ -s "$f" ] && pids+=("$(cat "$f")")
  done
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
  if [ "$started_munge" -eq 1 ] && [ -s /run/munge/munged.pid ]; then
    m=$(cat /run/munge/munged.pid); kill -TERM "$m" 2>/dev/null
    while kill -0 "$m" 2>/dev/null; do sleep 0.1; done
  fi
}
trap teardown EXIT
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged || skip "munged does not start here"
  started_munge=1
  for _ in $(seq 40); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
/usr/sbin/slurmctld || skip "slurmctld does not start here"
/usr/sbin/slurmd -N localhost || skip "slurmd does not start here"
for f in run/slurmctld.pid run/slurmd.pid; do
  for _ in $(seq 50); do [ -s "$f" ] && break; sleep 0.1; done
  [ -s "$f" ] && pids+=("$(cat "$f")")
done
for _ in $(seq 120); do [ "$(sinfo -h -o %T 2>/dev/null)" = idle ] && break; sleep 0.25; done
[ "$(sinfo -h -o %T 2>/dev/null)" = idle ] || skip "the Slurm node did not become idle: $(tail -3 log/slurmd.log)"

job_state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
wait_job() { # wait_job ID SECONDS: until it has ended; prints the state
  local s=""
  for _ in $(seq $(($2 * 4))); do
    s=$(job_state "$1")
    case "$s" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) break ;; esac
    sleep 0.25
  done
  echo "$s"
}

cat >job/cfg.yaml <<'YAML'
seed: 11
threads: 1
out_dir: ignored
data:
  val_size: 400
  train_subset: 2048
  test_subset: 500
  crop_pad: 0
  flip: false
model:
  arch: smallnet
train:
  epochs: 2
  batch_size: 64
  lr: 0.1
search:
  sn: 4
  limit: 2
  max_cycles: 12
  alpha: 0.9
  fitness:
    train_images: 256
    val_images: 200
    steps: 3
    batch_size: 64
finetune:
  epochs: 1
  batch_size: 64
  lr: 0.02
YAML
submit() { # submit COMMAND: prints the job id
  (cd job && CONFIG=cfg.yaml ABCPRUNE="$exe" COMMAND="$1" \
     sbatch --parsable --overcommit --time=10 "$sbatch_script")
}

# 1. The pipeline as a batch job.
id=$(submit run)
state=$(wait_job "$id" 240)
check "run job $id COMPLETED (got $state)" test "$state" = COMPLETED
check "the job wrote best.yaml in its own run directory" test -s "job/runs/job-$id/best.yaml"
check "the job wrote the fine-tuned checkpoint and report" \
  test -s "job/runs/job-$id/pruned.ckpt" -a -s "job/runs/job-$id/report.json"
base="job/runs/job-$id/baseline.ckpt"

# The uninterrupted search to compare with (same config, same baseline).
mkdir -p ref && cp "$base" ref/
(cd job && "$mpiexec" -n 3 "${preflags[@]}" "$exe" --out ../ref search cfg.yaml 2>../ref.err)
check "uninterrupted reference search exits 0" test $? -eq 0

# srun without PMI starts singletons: each refuses, says how to launch and
# writes nothing.
mkdir -p single && cp "$base" single/
(cd job && srun --mpi=none -n 2 --overcommit --time=2 "$exe" --out ../single \
   search cfg.yaml) >single.out 2>single.err
check "srun --mpi=none -n 2: the copies refuse (non-zero exit)" test $? -ne 0
check "and each says to launch with srun --mpi=pmix" \
  test "$(grep -c 'srun --mpi=pmix abcprune search' single.err)" -eq 2
check "and no search ran (no colony, no log)" test ! -e single/colony.ckpt -a ! -e single/search.jsonl

# 2. Time-limit warning -> checkpoint -> requeue -> same result.
id2=$(cd job && sbatch --parsable --hold --overcommit --time=10 \
        --export=ALL,CONFIG=cfg.yaml,ABCPRUNE="$exe",COMMAND=search "$sbatch_script")
mkdir -p "job/runs/job-$id2" && cp "$base" "job/runs/job-$id2/"
scontrol release "$id2"
log2="job/runs/job-$id2/search.jsonl"
for _ in $(seq 600); do
  grep -q '"event":"cycle","cycle":1' "$log2" 2>/dev/null && break
  sleep 0.1
done
scancel --batch --signal=USR1 "$id2"
state=$(wait_job "$id2" 240)
out2="job/abcprune-$id2.out"
check "warned job saved its state and requeued itself" grep -q "requeueing job $id2" "$out2"
check "the requeued job COMPLETED (got $state)" test "$state" = COMPLETED
check "the job ran twice (Restarts=1)" \
  test "$(scontrol show job "$id2" | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p')" -ge 1
grep -E '^(structure|code|fitness|flops|params): ' ref/best.yaml >want.best
grep -E '^(structure|code|fitness|flops|params): ' "job/runs/job-$id2/best.yaml" >got.best 2>/dev/null
check "requeued search ends with the uninterrupted best structure and fitness" \
  sh -c '[ "$(wc -l <want.best)" -eq 5 ] && cmp -s want.best got.best'
check "and the search is done" grep -q 'done: true' "job/runs/job-$id2/best.yaml"

# 4. compare.sh -A: the baseline job, the points as a job array after it,
#    the report job after the array.
src=$(dirname "$sbatch_script")/../..
sed -e 's/max_cycles: 12/max_cycles: 1/' job/cfg.yaml >job/cmp.yaml
(cd job && bash "$src/deploy/compare.sh" -t 0.5 -s 1,2 -m abc,uniform -n 2 \
   -o cmp -b "$exe" -A "--overcommit --time=10" cmp.yaml) >cmp.submit 2>&1
check "compare.sh -A submits (exit $?)" grep -q "submitted baseline job" cmp.submit
read -r _ jb <job/cmp/slurm/jobs.txt
ja=$(sed -n 's/^points \([0-9]*\) .*/\1/p' job/cmp/slurm/jobs.txt)
jr=$(sed -n 's/^report //p' job/cmp/slurm/jobs.txt)
state=$(wait_job "$jr" 400)
check "the report job $jr COMPLETED after the array $ja (got $state)" test "$state" = COMPLETED
check "one log per array task: point_${ja}_0.log, point_${ja}_1.log" \
  test -s "job/cmp/slurm/point_${ja}_0.log" -a -s "job/cmp/slurm/point_${ja}_1.log"
check "the baseline job's log" test -s "job/cmp/slurm/baseline_$jb.log"
check "each point records its array job, task and node list" sh -c \
  "grep -qx 'slurm_array_job_id $ja' job/cmp/t0.5/s1/slurm.txt &&
   grep -qx 'slurm_array_task_id 0' job/cmp/t0.5/s1/slurm.txt &&
   grep -qx 'slurm_array_task_id 1' job/cmp/t0.5/s2/slurm.txt &&
   grep -qx 'slurm_job_nodelist localhost' job/cmp/t0.5/s2/slurm.txt"
check "the search log's done line names the array job and task" \
  grep -q "\"slurm_array_job_id\":\"$ja\",\"slurm_array_task_id\":\"1\"" job/cmp/t0.5/s2/search.jsonl
check "the report has both seeds of both methods" \
  test "$(grep -Ec '^0.5,[12],(abc|uniform),' job/cmp/compare.csv)" -eq 4

# 5. scaling-study.sh --slurm: the same shape (points as an array).
(cd job && bash "$src/deploy/scaling-study.sh" --sn 4 --ranks 1,2 --seeds 1 \
   --schedules sync --set search.max_cycles=1 --sim-workers 1,4 --no-plots \
   --out scl --abcprune "$exe" --slurm "--overcommit --time=10" cfg.yaml) \
  >scl.submit 2>&1
check "scaling-study.sh --slurm submits" grep -q "submitted baseline job" scl.submit
jr=$(sed -n 's/^report //p' job/scl/slurm/jobs.txt)
ja=$(sed -n 's/^points \([0-9]*\) .*/\1/p' job/scl/slurm/jobs.txt)
state=$(wait_job "$jr" 400)
check "scaling: the report job COMPLETED (got $state)" test "$state" = COMPLETED
check "scaling: a log per array task and the tables" \
  test -s "job/scl/slurm/point_${ja}_0.log" -a -s "job/scl/slurm/point_${ja}_1.log" \
  -a -s job/scl/real.csv -a -s job/scl/sim.csv
check "scaling: real.csv has both points" test "$(tail -n +2 job/scl/real.csv | wc -l)" -eq 2

check_finish test_slurm

#!/usr/bin/env bash
# tests/fuzz/run.sh [SECONDS] [TARGET...] - runs the libFuzzer targets for a
# bounded time each (default 60 s; all targets when none is named: config
# checkpoint colony proto idx cifar safetensors searchlog), from their seed corpus
# tests/fuzz/corpus/<target> (read only: new inputs go to a scratch folder),
# with memory (-rss_limit_mb, -malloc_limit_mb) and per-input time
# (-timeout) limits, and tests/fuzz/<target>.dict as a dictionary where
# one exists. Builds build-fuzz with clang first (-DABC_FUZZ=ON) unless
# ABC_FUZZ_BUILD names an existing fuzz build. Prints the executions per
# target; exits non-zero when any target finds a crash, leak, timeout or
# out-of-memory: the input is saved as build-fuzz/findings/<target>/crash-*
# (fix the product, then copy it into tests/fuzz/regress/<target>/, which
# test_fuzz_regress replays in the normal build).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
secs="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] &&
  targets=(config checkpoint colony proto idx cifar safetensors searchlog)
case "$secs" in '' | *[!0-9]*) echo "run.sh: SECONDS must be a number, got '$secs'" >&2; exit 2 ;; esac

build="${ABC_FUZZ_BUILD:-$root/build-fuzz}"
if ! command -v clang >/dev/null 2>&1; then
  echo "run.sh: clang not found (Debian: apt-get install clang libclang-rt-14-dev libomp-dev)" >&2
  exit 2
fi
if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DABC_FUZZ=ON -DABC_WERROR=OFF >/dev/null || exit 2
fi
bins=()
for t in "${targets[@]}"; do bins+=("fuzz_$t"); done
cmake --build "$build" -j2 --target "${bins[@]}" >/dev/null || {
  echo "run.sh: building ${bins[*]} in $build failed" >&2; exit 2; }

failed=0
total=0
printf '%-11s %8s %12s %10s %s\n' target seconds executions exec/s result
for t in "${targets[@]}"; do
  corpus="$root/tests/fuzz/corpus/$t"
  [ -d "$corpus" ] || { echo "run.sh: no corpus $corpus" >&2; exit 2; }
  scratch="$build/fuzz-corpus/$t"
  findings="$build/findings/$t"
  mkdir -p "$scratch" "$findings"
  log="$build/findings/$t.log"
  # a dictionary of the format's words, where there is one (config keys)
  dict=()
  [ -f "$here/$t.dict" ] && dict=(-dict="$here/$t.dict")
  # scratch first: new inputs are written there, the seeds stay untouched.
  # OMP_NUM_THREADS=1: the loaders are serial; one thread keeps runs
  # deterministic and leaves the other core free.
  OMP_NUM_THREADS=1 \
  ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:allocator_may_return_null=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "$build/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=2048 \
    -malloc_limit_mb=1024 -timeout=10 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$findings/" "${dict[@]}" "$scratch" "$corpus" >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  if [ $rc -eq 0 ]; then result=clean; else
    result="FINDING (exit $rc): $(ls -t "$findings" | head -1), log $log"
    failed=1
  fi
  printf '%-11s %8s %12s %10s %s\n' "$t" "$secs" "${execs:-?}" "${rate:-?}" "$result"
  total=$((total + ${execs:-0}))
done
echo "total executions: $total"
exit $failed

#!/usr/bin/env bash
# test_style.sh - every C source and header follows .clang-format (fails
# naming each file clang-format would change and the first place), and the
# product code is clean under a small set of clang-tidy checks that find
# real bugs in C without false alarms here (.clang-tidy; it reads the build's
# compile_commands.json).
# usage: test_style.sh SOURCE_DIR BUILD_DIR
set -u
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
src="$1"
build="$2"
cd "$src" || exit 1
command -v clang-format >/dev/null ||
  { echo "test_style: clang-format not found (deploy/install-deps.sh installs it)"; exit 1; }
mapfile -t files < <(find common coordinator proto worker tests bench -name '*.[ch]' | sort)
check "there are sources to check (${#files[@]})" test "${#files[@]}" -gt 50
bad=()
for f in "${files[@]}"; do
  out=$(clang-format --dry-run --Werror "$f" 2>&1) || { bad+=("$f"); echo "$out" | head -3; }
done
check "every file is clang-formatted (${#bad[@]} not: ${bad[*]:-none})" test "${#bad[@]}" -eq 0
command -v clang-tidy >/dev/null ||
  { echo "test_style: clang-tidy not found (deploy/install-deps.sh installs it)"; exit 1; }
check "the build exported compile_commands.json" test -s "$build/compile_commands.json"
mapfile -t units < <(find common coordinator proto worker -name '*.c' | sort)
tidy=$(clang-tidy -p "$build" --quiet "${units[@]}" 2>/dev/null | grep -E 'warning:|error:')
[ -n "$tidy" ] && echo "$tidy" | head -20
check "clang-tidy (.clang-tidy checks): no warning in ${#units[@]} files" test -z "$tidy"
check_finish test_style

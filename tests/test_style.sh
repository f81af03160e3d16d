#!/usr/bin/env bash
# test_style.sh - every C source and header follows .clang-format: fails
# naming each file clang-format would change and the first place.
# usage: test_style.sh SOURCE_DIR
set -u
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
src="$1"
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
check_finish test_style

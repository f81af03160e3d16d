# check.sh - the shell tests' assertion kit (the twin of check.h), sourced:
#   check "what is asserted" COMMAND...   counts, prints ok/FAIL
#   check_finish NAME                     summary line; non-zero on failure
fails=0
checks=0
check() { # check DESCRIPTION COMMAND...
  checks=$((checks + 1))
  local what="$1"; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fails=$((fails + 1)); fi
}
check_finish() {
  echo "$1: $checks checks, $fails failed"
  [ "$fails" -eq 0 ]
}

# check.sh - the shell tests' assertion kit (the twin of check.h), sourced:
#   check "what is asserted" COMMAND...   counts, prints ok/FAIL
#   check_finish NAME                     summary line; non-zero on failure
#   check_workdir DIR                     a fresh, empty DIR, and cd into it
# and sets py, the Python with Debian's packages (numpy, torch, msgpack).
py=/usr/bin/python3
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
check_workdir() { # check_workdir DIR: every run starts from nothing
  rm -rf "$1" && mkdir -p "$1" && cd "$1" || { echo "cannot make $1"; exit 1; }
}

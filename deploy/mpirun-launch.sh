#!/usr/bin/env bash
# mpirun-launch.sh - launch abcprune with Open MPI's mpirun on lab servers:
# a hostfile, ranks per node, threads per rank. Checks its arguments,
# prints the mpirun line it runs, then runs it (exit status: mpirun's).
#
#   deploy/mpirun-launch.sh -H hosts.txt -N 4 -t 8 -- run configs/resnet56.yaml
#
# hosts.txt lists one machine per line ("node1 slots=4"); every machine must
# see the same abcprune binary, config and out_dir (a shared file system), or
# have copies at the same paths, and the Fashion-MNIST package installed;
# mpirun reaches them over ssh without a password.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: deploy/mpirun-launch.sh [options] -- ABCPRUNE_ARGS...
  -H FILE     hostfile (default: this machine only)
  -n N        total ranks (default: ranks per node x hosts in the hostfile,
              or 3 without one); rank 0 coordinates, the rest evaluate
  -N N        ranks per node (maps ranks with ppr:N:node)
  -t N        threads per rank, as OMP_NUM_THREADS (default 1; a config's
              own `threads:` takes precedence); ranks per node x
              threads should not exceed the cores of a node
  -b FILE     the abcprune binary (default: build/abcprune next to deploy/)
  -o          allow more ranks than slots (--oversubscribe)
  --dry-run   print the mpirun line, do not run it
  -h          this help
USAGE
}

die() { echo "mpirun-launch.sh: $*" >&2; echo >&2; usage >&2; exit 2; }
posint() { [[ "$2" =~ ^[1-9][0-9]{0,5}$ ]] || die "$1 expects a positive integer, got '$2'"; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
hostfile="" ranks="" per_node="" threads=1 oversub=0 dry=0
binary="$here/../build/abcprune"
while [ $# -gt 0 ]; do
  case "$1" in
    -H) [ $# -ge 2 ] || die "-H needs a file"; hostfile="$2"; shift 2 ;;
    -n) [ $# -ge 2 ] || die "-n needs a number"; posint -n "$2"; ranks="$2"; shift 2 ;;
    -N) [ $# -ge 2 ] || die "-N needs a number"; posint -N "$2"; per_node="$2"; shift 2 ;;
    -t) [ $# -ge 2 ] || die "-t needs a number"; posint -t "$2"; threads="$2"; shift 2 ;;
    -b) [ $# -ge 2 ] || die "-b needs a file"; binary="$2"; shift 2 ;;
    -o) oversub=1; shift ;;
    --dry-run) dry=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option '$1' (abcprune's arguments go after --)" ;;
  esac
done
[ $# -gt 0 ] || die "missing abcprune arguments after -- (e.g. -- run CONFIG)"
[ -x "$binary" ] || die "no abcprune binary at $binary (build it, or pass -b)"
command -v mpirun >/dev/null || die "mpirun not found (apt-get install openmpi-bin)"

hosts=1
if [ -n "$hostfile" ]; then
  [ -r "$hostfile" ] || die "hostfile $hostfile is not readable"
  hosts=$(grep -cvE '^[[:space:]]*(#|$)' "$hostfile" || true)
  [ "$hosts" -ge 1 ] || die "hostfile $hostfile names no host"
fi
if [ -z "$ranks" ]; then
  if [ -n "$per_node" ]; then ranks=$((per_node * hosts)); else ranks=3; fi
fi
[ "$ranks" -ge 1 ] || die "-n must be at least 1"

cmd=(mpirun -np "$ranks")
[ -n "$hostfile" ] && cmd+=(--hostfile "$hostfile")
[ -n "$per_node" ] && cmd+=(--map-by "ppr:$per_node:node")
[ "$oversub" -eq 1 ] && cmd+=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && cmd+=(--allow-run-as-root)
cmd+=(-x "OMP_NUM_THREADS=$threads" -x OPENBLAS_NUM_THREADS=1 "$binary" "$@")

echo "+ ${cmd[*]}" >&2
[ "$dry" -eq 1 ] && exit 0
exec "${cmd[@]}"

#!/usr/bin/env bash
# Installs every Debian package abcprune needs to build, test and run.
# Idempotent: re-running installs nothing new. Must run as root on Debian
# (or a derivative with apt-get); says so and fails otherwise.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libopenmpi-dev openmpi-bin            # MPI
  libopenblas-openmp-dev                # BLAS, OpenMP build
  liblapacke-dev                        # LAPACKE: least squares of LASSO pruning
  libmsgpack-dev                        # msgpack-c (messages, checkpoints)
  libyaml-dev                           # configs
  zlib1g-dev                            # gzip'd IDX files
  libcjson-dev                          # JSON: safetensors headers, search.jsonl
  libprotobuf-c-dev protobuf-c-compiler libonnx-dev  # ONNX export (onnx.proto)
  dataset-fashion-mnist                 # the data
  python3 python3-torch python3-numpy python3-msgpack  # reference tests
  python3-onnx                          # onnx.checker in the ONNX export test
  clang libclang-rt-14-dev              # libFuzzer targets (tests/fuzz)
  procps                                # pkill in the signal tests
  gnuplot-nox                           # scaling-study and search plots (headless)
  clang-format clang-tidy               # test_style: formatting, bug checks
  slurm-wlm slurmctld slurmd slurm-client munge  # the Slurm batch-script test
)

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps.sh: apt-get not found; this script is for Debian." >&2
  echo "Install the equivalents of: ${packages[*]}" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: must run as root (try: sudo $0)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps.sh: all ${#packages[@]} packages already installed"
  exit 0
fi
echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"

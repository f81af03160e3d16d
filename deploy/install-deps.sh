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
  clang libclang-rt-14-dev libomp-dev   # libFuzzer targets (tests/fuzz)
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
export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_install() { # apt-get install, after one apt-get update per run
  if [ "$apt_updated" -eq 0 ]; then apt-get update; apt_updated=1; fi
  apt-get install -y --no-install-recommends "$@"
}
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps.sh: all ${#packages[@]} packages already installed"
else
  echo "install-deps.sh: installing ${missing[*]}"
  apt_install "${missing[@]}"
fi

# Test-only: onnxruntime for Node.js from the npm registry (test_onnx runs
# the exported ONNX models in it), pinned, into a fixed directory; nothing
# is fetched when that version is already there. Without node and npm,
# Debian's nodejs and npm are installed first; node without npm is only a
# warning (abcprune itself does not need it; test_onnx then fails, saying
# why). ONNXRUNTIME_NODE_INSTALL=skip: no extra downloads (CUDA) outside
# the registry; the CPU runtime is in the package.
ORT_DIR=/opt/abcprune/node
ORT_VERSION=1.22.0
ort_installed() {
  command -v node >/dev/null 2>&1 &&
    node -e "process.exit(require('$ORT_DIR/node_modules/onnxruntime-node/package.json').version === '$ORT_VERSION' ? 0 : 1)" \
      2>/dev/null
}
if ! command -v node >/dev/null 2>&1 && ! command -v npm >/dev/null 2>&1; then
  echo "install-deps.sh: node and npm not found: installing Debian's nodejs and npm"
  apt_install nodejs npm
fi
if ort_installed; then
  echo "install-deps.sh: onnxruntime-node $ORT_VERSION already in $ORT_DIR"
elif ! command -v npm >/dev/null 2>&1; then
  echo "install-deps.sh: WARNING: node is installed but npm is not, so" \
       "onnxruntime-node (test-only) cannot be installed; test_onnx will fail" >&2
else
  echo "install-deps.sh: installing onnxruntime-node $ORT_VERSION into $ORT_DIR"
  mkdir -p "$ORT_DIR"
  # a failure here is a warning: abcprune itself does not need it (the
  # main job runs), and test_onnx fails saying onnxruntime is missing
  ONNXRUNTIME_NODE_INSTALL=skip npm install --prefix "$ORT_DIR" --no-audit \
    --no-fund --save-exact "onnxruntime-node@$ORT_VERSION" || true
  ort_installed ||
    echo "install-deps.sh: WARNING: onnxruntime-node $ORT_VERSION did not" \
         "install (test-only: test_onnx will fail)" >&2
fi

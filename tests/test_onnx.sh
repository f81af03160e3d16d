#!/usr/bin/env bash
# test_onnx.sh - `abcprune export CKPT OUT.onnx` end to end: for a full
# smallnet, a full ResNet-20, a pruned ResNet-20 (3 channels, non-square
# 30x22 input, 7 classes) and a pruned VGG-16, all with random weights and
# random BN statistics (tool_onnx_ref), the exported file passes
# onnx.checker (full check, python3-onnx) and the structural checks of
# onnx_check.py, and onnxruntime (npm onnxruntime-node, run by node) gives
# the engine's eval logits within 1e-4 relative (max abs diff / max abs
# logit). Then: an unwritable output is a clear error naming the file, and a
# failed export leaves an existing file alone.
# onnxruntime-node is a test-only dependency that deploy/install-deps.sh
# installs into /opt/abcprune/node (override: ABC_ORT_DIR). Without node the
# test is skipped (exit 77); node without onnxruntime-node is a FAILURE.
# usage: test_onnx.sh ABCPRUNE TOOL_ONNX_REF WORKDIR SOURCEDIR
set -u
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
exe="$1"
tool="$2"
work="$3/onnx"
src="$4"
ort="${ABC_ORT_DIR:-/opt/abcprune/node}"
check_workdir "$work"

if ! command -v node >/dev/null 2>&1; then
  echo "test_onnx: node not found: skipped (deploy/install-deps.sh installs it)"
  exit 77
fi
if [ ! -f "$ort/node_modules/onnxruntime-node/package.json" ]; then
  echo "test_onnx: FAIL: onnxruntime-node is not installed in $ort" \
       "(run deploy/install-deps.sh as root, or set ABC_ORT_DIR)"
  exit 1
fi

# case: name arch C H W classes structure(- = full) expected-structure nconv
run_case() {
  local name=$1 arch=$2 C=$3 H=$4 W=$5 K=$6 ch=$7 want=$8 nconv=$9 B=5
  "$tool" "$arch" "$C" "$H" "$W" "$K" "$B" "$name.ckpt" "$name" "$ch" 2>"$name.err"
  check "$name: checkpoint and reference logits written" \
    test $? -eq 0 -a -s "$name.ckpt" -a -s "$name.logits"
  "$exe" export "$name.ckpt" "$name.onnx" >"$name.export.out" 2>>"$name.err"
  check "$name: abcprune export exits 0" test $? -eq 0 -a -s "$name.onnx"
  [ -s "$name.onnx" ] || { cat "$name.err"; return; }
  "$py" "$src/tests/onnx_check.py" "$name.onnx" "$C" "$H" "$W" "$K" "$nconv" \
    "$want" >"$name.check.out" 2>&1
  local rc=$?
  sed 's/^/  /' "$name.check.out"
  check "$name: onnx.checker and the graph checks pass" test $rc -eq 0
  node "$src/tests/onnx_run.mjs" "$ort" "$name.onnx" "$name.x" "$B" "$C" "$H" "$W" \
    "$name.logits" "$K" 1e-4 >"$name.run.out" 2>&1
  rc=$?
  sed 's/^/  /' "$name.run.out"
  check "$name: onnxruntime logits = ours within 1e-4 relative" test $rc -eq 0
}

run_case smallnet smallnet 1 28 28 10 - 16,32,64 3
run_case resnet20 resnet20 1 28 28 10 - 16,16,16,32,32,32,64,64,64 19
run_case resnet20p resnet20 3 30 22 7 3,16,8,20,32,5,10,64,33 \
  3,16,8,20,32,5,10,64,33 19
run_case vgg16p vgg16 1 28 28 10 8,64,20,128,7,200,256,100,512,3,60,512,32 \
  8,64,20,128,7,200,256,100,512,3,60,512,32 13

# errors: an unwritable destination names the file, exits non-zero
ckpt_sum=$(md5sum <smallnet.ckpt)
"$exe" export smallnet.ckpt smallnet.ckpt/out.onnx >/dev/null 2>nodir.err
rc=$?
check "export under a regular file (not a directory) fails (exit $rc)" test $rc -ne 0
check "its message names the file ($(head -c 200 nodir.err))" grep -q "smallnet.ckpt/out.onnx" nodir.err
check "and the checkpoint is unchanged" test "$ckpt_sum" = "$(md5sum <smallnet.ckpt)"
# a failed export leaves an existing file alone: a truncated checkpoint
cp smallnet.onnx keep.onnx
head -c 100 smallnet.ckpt >trunc.ckpt
sum=$(md5sum <keep.onnx)
"$exe" export trunc.ckpt keep.onnx >/dev/null 2>trunc.err
rc=$?
check "export of a truncated checkpoint fails (exit $rc)" test $rc -ne 0
check "the existing keep.onnx is unchanged" test "$sum" = "$(md5sum <keep.onnx)"
check_finish test_onnx

#!/usr/bin/env bash
# test_safetensors_torch.sh - PyTorch models in and out (issue 13), one rank:
#  1. PyTorch writes randomly initialised, BN-randomised ResNet-20, ResNet-56
#     and VGG-16 (abcprune's names and ABCPruner's; F32, F64, F16, BF16;
#     DataParallel's module. prefix; VGG conv biases); `abcprune import`
#     then our eval forward gives PyTorch's float64 logits within 1e-4
#     (relative to the largest logit).
#  2. Files that must be refused are, with the tensor named.
#  3. Pruned checkpoints (prune_slice) exported: abcprune_torch.load
#     (strict=True) gives our logits within 1e-4; import(export(ckpt)) is
#     bit-identical; the structure comes from __metadata__ or the shapes.
#  4. The README's story on Fashion-MNIST: import as the baseline, `run`
#     skips training and prunes it, export, load in PyTorch.
# usage: test_safetensors_torch.sh ABCPRUNE SAFETENSORS_TOOL TESTDATA SRC
exe="$1" tool="$2" src="$4"
source "$src/tests/check.sh"
check_workdir "$3/safetensors_torch"
ref="$src/tests/safetensors_ref.py"

cat >base.yaml <<YAML
out_dir: out
model:
  arch: resnet20
train:
  epochs: 3
YAML

"$py" "$ref" make . || { echo "safetensors_ref.py make failed"; exit 1; }

# 1. import, then our logits against PyTorch's
while read -r name arch; do
  check "import $name" "$exe" import --set model.arch="$arch" base.yaml \
    "$name.safetensors" -o "$name.ckpt"
  "$tool" logits "$name.ckpt" "$name.x.f32" 4 "$name.ours.f32"
  check "$name: our logits = PyTorch's (1e-4)" \
    "$py" "$ref" compare "$name.ours.f32" "$name.ref.f32" 1e-4
done <cases.txt

# 2. refused, naming what is wrong; nothing written
refused() { # refused FILE ARCH SUBSTRING...
  local f="$1" arch="$2"; shift 2
  "$exe" import --set model.arch="$arch" base.yaml "$f" -o refused.ckpt \
    2>refused.err
  local rc=$? ok=1
  for s in "$@"; do grep -qF -- "$s" refused.err || ok=0; done
  cat refused.err
  [ "$rc" -eq 1 ] && [ "$ok" -eq 1 ] && [ ! -e refused.ckpt ]
}
check "ABCPruner's own VGG layout refused" refused \
  vgg16_abcpruner.safetensors vgg16 vgg16_abcpruner.safetensors \
  "5th max-pool" '"arch": "vgg16"'
check "missing and unknown keys named" refused resnet20_keys.safetensors \
  resnet20 resnet20_keys.safetensors layer2.1.bn1.running_var \
  layer9.0.conv1.weight
check "integer dtype refused" refused resnet20_int.safetensors resnet20 \
  "'fc.bias'" I32
check "wrong shape named" refused resnet20_shape.safetensors resnet20 \
  "'layer3.2.conv2.weight'" "[64,64,3,2]" "[64,64,3,3]"
check "wrong architecture" refused resnet56_ours.safetensors resnet20 \
  layer1.3.conv1.weight "212 more"
printf 'garbage' >junk.safetensors
check "not a safetensors file" refused junk.safetensors resnet20 \
  junk.safetensors truncated
check "export refuses another extension" \
  bash -c '! "$1" export resnet20_ours.ckpt out.pt 2>/dev/null && [ ! -e out.pt ]' \
  _ "$exe"

check "import --help" bash -c '"$1" import --help | grep -q "usage: abcprune import"' _ "$exe"
check "export without OUT: usage error (2)" bash -c \
  '"$1" export resnet20_ours.ckpt 2>/dev/null; [ $? -eq 2 ]' _ "$exe"
check "import -o without a path: usage error (2)" bash -c \
  '"$1" import base.yaml resnet20_ours.safetensors -o 2>/dev/null; [ $? -eq 2 ]' \
  _ "$exe"

# an existing file is not overwritten without --force
cp resnet20_ours.ckpt keep.ckpt
check "import refuses to overwrite" \
  bash -c '! "$1" import base.yaml resnet20_abc.safetensors -o keep.ckpt \
    2>err && grep -q -- --force err && cmp -s keep.ckpt resnet20_ours.ckpt' \
  _ "$exe"
check "import --force overwrites" "$exe" import --force base.yaml \
  resnet20_abc.safetensors -o keep.ckpt
check "... with the new weights" "$tool" same keep.ckpt resnet20_abc.ckpt

# 3. pruned checkpoints: export, PyTorch, round trip
r20="8,12,5,20,32,9,40,64,33"
vgg="32,17,128,64,100,256,7,512,300,200,1,512,64"
for spec in "resnet20 resnet20_ours $r20" "vgg16 vgg16_ours $vgg"; do
  read -r arch from chans <<<"$spec"
  p="pruned_$arch"
  "$tool" slice "$from.ckpt" "$chans" "$p.ckpt"
  check "export $p" "$exe" export "$p.ckpt" "$p.safetensors"
  "$tool" logits "$p.ckpt" "$from.x.f32" 4 "$p.ours.f32"
  check "$p: abcprune_torch.load (strict) = our logits (1e-4)" \
    "$py" "$ref" torchlogits "$p.safetensors" "$from.x.f32" "$p.torch.f32"
  check "... compared" "$py" "$ref" compare "$p.torch.f32" "$p.ours.f32" 1e-4
  check "$p: import(export(ckpt)) bit-identical" bash -c \
    '"$1" import --set model.arch=$2 --set model.channels=[$3] base.yaml \
       $4.safetensors -o $4.back.ckpt && "$5" same $4.ckpt $4.back.ckpt' \
    _ "$exe" "$arch" "$chans" "$p" "$tool"
done
check "pruned file, full config: says which model.channels to set" refused \
  pruned_resnet20.safetensors resnet20 "model.channels: [$r20]" \
  "from __metadata__"
check "full file, pruned config: says to remove model.channels" bash -c \
  '! "$1" import --set model.channels=[$2] base.yaml resnet20_abc.safetensors \
     -o full.ckpt 2>err && grep -q "remove model.channels from base.yaml" err' \
  _ "$exe" "$r20"
"$py" "$ref" resave pruned_resnet20.safetensors nometa.safetensors
check "no metadata: structure read from the shapes" refused \
  nometa.safetensors resnet20 "model.channels: [$r20]" "from its shapes"
check "no metadata, model.channels set: bit-identical" bash -c \
  '"$1" import --set model.channels=[$2] base.yaml nometa.safetensors \
     -o nometa.ckpt && "$3" same pruned_resnet20.ckpt nometa.ckpt' \
  _ "$exe" "$r20" "$tool"

# 4. the README's story: import as the baseline, prune, export, PyTorch
cat >story.yaml <<YAML
seed: 3
threads: 2
out_dir: story
data:
  val_size: 200
  train_subset: 512
  test_subset: 200
model:
  arch: resnet20
train:
  epochs: 2
search:
  sn: 2
  max_cycles: 1
  fitness:
    train_images: 128
    val_images: 100
    steps: 2
    batch_size: 64
finetune:
  epochs: 1
  batch_size: 64
  lr: 0.02
YAML
check "import story.yaml (default path)" "$exe" import story.yaml \
  resnet20_ours.safetensors
check "... baseline bit-identical to the -o import" "$tool" same \
  story/baseline.ckpt resnet20_ours.ckpt
"$exe" run story.yaml >run.out 2>run.err
check "run prunes the imported baseline" [ -s story/pruned.ckpt ]
check "run did not retrain the imported baseline" \
  grep -q "baseline already trained" run.err
check "... and left it as imported" "$tool" same story/baseline.ckpt \
  resnet20_ours.ckpt
check "export the pruned model" "$exe" export story/pruned.ckpt \
  story.safetensors
"$tool" logits story/pruned.ckpt resnet20_ours.x.f32 4 story.ours.f32
check "story: abcprune_torch.load = our logits" "$py" "$ref" torchlogits \
  story.safetensors resnet20_ours.x.f32 story.torch.f32
check "... compared (1e-4)" "$py" "$ref" compare story.torch.f32 \
  story.ours.f32 1e-4

check_finish test_safetensors_torch

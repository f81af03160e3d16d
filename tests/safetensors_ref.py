"""safetensors_ref.py - PyTorch side of test_safetensors.sh.

  make DIR               writes, per case, CASE.safetensors (a randomly
                         initialised, BN-randomised network), CASE.x.f32 (an
                         input batch) and CASE.ref.f32 (its eval logits,
                         computed in float64 from the weights as stored), and
                         DIR/cases.txt ("CASE ARCH" lines); plus files that
                         must be refused
  compare A.f32 B.f32 TOL    max|a - b| / max|b| <= TOL (prints it)
  torchlogits FILE X.f32 OUT.f32   abcprune_torch.load(FILE) (strict=True)
                         on the batch X, float64 -> float32 logits
  resave IN OUT          IN's tensors written again without __metadata__

The ABCPruner-named networks are written here from the layout of
lmbxmu/ABCPruner's model/resnet_cifar.py and model/vgg_cifar.py (not
imported from it); the "ours" ones come from deploy/torch/abcprune_torch.py.
"""

import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "deploy", "torch"))
import abcprune_torch  # noqa: E402

B = 4
IN = (1, 28, 28)


class AbcBlock(nn.Module):
    """resnet_cifar.py's ResBasicBlock: conv1/bn1/conv2/bn2, the shortcut a
    lambda (no parameters) padding planes//4 channels on both sides."""

    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = stride != 1 or inplanes != planes
        self.planes = planes

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        sc = x
        if self.pad:
            q = self.planes // 4
            sc = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, q, q), "constant", 0)
        return self.relu(out + sc)


class AbcResNet(nn.Module):
    def __init__(self, depth, in_c=1, classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_c, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        inplanes = 16
        for s, planes in enumerate((16, 32, 64)):
            blocks = []
            for b in range(n):
                blocks.append(AbcBlock(inplanes, planes,
                                       2 if s > 0 and b == 0 else 1))
                inplanes = planes
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).view(x.size(0), -1))


VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"]


class AbcVGG(nn.Module):
    """vgg_cifar.py's VGG: nn.Sequential features (conv with bias, BN,
    ReLU, "M" max-pools), classifier. abcprune_tail=True drops the fifth
    max-pool and ends in global average pooling (abcprune's layout under
    ABCPruner's names); False is vgg_cifar.py's own tail (5th max-pool,
    AvgPool2d(1), flatten)."""

    def __init__(self, abcprune_tail, in_c=1, classes=10):
        super().__init__()
        layers, c = [], in_c
        cfg = VGG16[:-1] if abcprune_tail else VGG16
        for x in cfg:
            if x == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, x, 3, padding=1), nn.BatchNorm2d(x),
                           nn.ReLU(inplace=True)]
                c = x
        if abcprune_tail:
            layers.append(nn.AdaptiveAvgPool2d(1))
        else:
            layers.append(nn.AvgPool2d(1, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, classes)

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.view(x.size(0), -1))


def randomise(model, g):
    """Random BN statistics and affine parameters, random conv biases."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(0.5 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=g))
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.2 * torch.randn(c, generator=g))
                m.num_batches_tracked.fill_(123)
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.copy_(0.3 * torch.randn(m.out_channels, generator=g))


def make_case(d, name, model, dtype, prefix="", arch=None, g=None):
    """Stores model's state_dict as dtype (floats only) under prefix, and
    the float64 eval logits of the stored (rounded) weights."""
    randomise(model, g)
    sd = {}
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                v.copy_(v.to(dtype).to(v.dtype))  # the stored precision
                sd[prefix + k] = v.to(dtype)
            else:
                sd[prefix + k] = v
    abcprune_torch.save_state_dict(sd, f"{d}/{name}.safetensors", arch=arch)
    x = torch.randn((B,) + IN, generator=g)
    model = model.double().eval()
    with torch.no_grad():
        ref = model(x.double()).float()
    x.numpy().astype("<f4").tofile(f"{d}/{name}.x.f32")
    ref.numpy().astype("<f4").tofile(f"{d}/{name}.ref.f32")


def make(d):
    g = torch.Generator().manual_seed(20260)
    torch.manual_seed(7)
    cases = []

    def case(name, arch, model, dtype, declare=False, **kw):
        make_case(d, name, model, dtype, g=g,
                  arch=arch if declare else None, **kw)
        cases.append(f"{name} {arch}")

    build = abcprune_torch.build
    case("resnet20_ours", "resnet20", build("resnet20"), torch.float64)
    case("resnet20_abc", "resnet20", AbcResNet(20), torch.float16,
         prefix="module.")
    case("resnet56_ours", "resnet56", build("resnet56"), torch.float32)
    case("resnet56_abc", "resnet56", AbcResNet(56), torch.bfloat16)
    case("vgg16_ours", "vgg16", build("vgg16"), torch.float32)
    case("vgg16_abc", "vgg16", AbcVGG(True), torch.float32, declare=True,
         prefix="module.")
    with open(f"{d}/cases.txt", "w") as f:
        f.write("\n".join(cases) + "\n")
    # vgg_cifar.py's own layout (5 max-pools, no global pooling): refused
    abcprune_torch.save_state_dict(AbcVGG(False), f"{d}/vgg16_abcpruner.safetensors")
    # one tensor missing, one unknown, one integer weight
    sd = dict(AbcResNet(20).state_dict())
    del sd["layer2.1.bn1.running_var"]
    sd["layer9.0.conv1.weight"] = torch.zeros(3)
    abcprune_torch.save_state_dict(sd, f"{d}/resnet20_keys.safetensors")
    sd = dict(AbcResNet(20).state_dict())
    sd["fc.bias"] = torch.zeros(10, dtype=torch.int32)
    abcprune_torch.save_state_dict(sd, f"{d}/resnet20_int.safetensors")
    sd = dict(AbcResNet(20).state_dict())
    sd["layer3.2.conv2.weight"] = torch.zeros(64, 64, 3, 2)
    abcprune_torch.save_state_dict(sd, f"{d}/resnet20_shape.safetensors")


def compare(a, b, tol):
    x = np.fromfile(a, dtype="<f4").astype(np.float64)
    y = np.fromfile(b, dtype="<f4").astype(np.float64)
    if x.shape != y.shape or x.size == 0:
        print(f"{a}: {x.size} values, {b}: {y.size}")
        return 1
    rel = np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-30)
    print(f"{a} vs {b}: max|diff|/max|ref| = {rel:.3g} (tolerance {tol}, "
          f"max|ref| {np.max(np.abs(y)):.3g})")
    return 0 if rel <= float(tol) else 1


def torchlogits(path, xpath, out):
    model = abcprune_torch.load(path).double()
    meta = abcprune_torch.read_safetensors(path)[1]
    shape = [int(v) for v in meta["input_shape"].strip("[]").split(",")]
    x = torch.from_numpy(np.fromfile(xpath, dtype="<f4")).reshape([-1] + shape)
    with torch.no_grad():
        model(x.double()).float().numpy().astype("<f4").tofile(out)
    return 0


def resave(src, dst):
    tensors, _ = abcprune_torch.read_safetensors(src)
    abcprune_torch.save_state_dict(tensors, dst)
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make":
        make(sys.argv[2])
        sys.exit(0)
    if cmd == "compare":
        sys.exit(compare(*sys.argv[2:5]))
    if cmd == "torchlogits":
        sys.exit(torchlogits(*sys.argv[2:5]))
    if cmd == "resave":
        sys.exit(resave(*sys.argv[2:4]))
    sys.exit(f"unknown command {cmd}")

"""abcprune_torch - PyTorch's side of abcprune's safetensors files.

Needs only torch and the standard library (no `safetensors` package).

Your model into abcprune (then `abcprune import CONFIG model.safetensors`):

    import abcprune_torch
    abcprune_torch.save_state_dict(model, "model.safetensors")

abcprune's result back into PyTorch (after `abcprune export CKPT
pruned.safetensors`):

    import abcprune_torch
    model = abcprune_torch.load("pruned.safetensors")   # nn.Module, eval mode
    logits = model(images)                              # (B, classes)

load() rebuilds the network abcprune ran, from the file's __metadata__
(arch, structure, input_shape, classes), with abcprune's tensor names, and
loads the weights with strict=True. The networks (as common/nn/model.c
builds them; 3x3 convs with padding 1 and no bias, each followed by
BatchNorm with eps 1e-5):
  resnet20/56/110  conv1-bn1-relu (16), three stages of n = 3/9/18 basic
                   blocks (16/32/64 wide, stride 2 at the first block of
                   stages 2 and 3): conv1(stride)-bn1-relu-conv2-bn2, plus
                   the "option A" shortcut (every stride-th pixel, channels
                   zero-padded on both sides), relu; global average pool,
                   fc. A block's conv1 width is its structure entry.
  vgg16            13 conv-bn-relu, 2x2 max-pools after convs 2, 4, 7 and
                   10, global average pool, fc.
  smallnet         conv-bn-relu-maxpool twice, conv-bn-relu, global
                   average pool, fc.
"""

import json
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

FORMAT = "abcprune-safetensors"

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
    "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
    "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}

_FULL = {"smallnet": [16, 32, 64],
         "vgg16": [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512,
                   512]}
for _a, _n in (("resnet20", 3), ("resnet56", 9), ("resnet110", 18)):
    _FULL[_a] = [16] * _n + [32] * _n + [64] * _n


def read_safetensors(path):
    """Returns ({name: tensor}, {metadata key: value}) of a safetensors
    file (tensors on the CPU, in the file's dtypes)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: truncated, not a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{path}: header length {n} runs past the end")
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    tensors = {}
    for name, e in header.items():
        if e["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name}: dtype {e['dtype']} "
                             "is not supported here")
        b, end = e["data_offsets"]
        dt = _DTYPES[e["dtype"]]
        raw = bytearray(data[base + b:base + end])
        t = (torch.frombuffer(raw, dtype=dt) if raw
             else torch.empty(0, dtype=dt))
        tensors[name] = t.reshape(e["shape"]).clone()
    return tensors, meta


def save_state_dict(model, path, metadata=None, arch=None):
    """Writes model.state_dict() (or a dict of tensors) to path as
    safetensors, every tensor in its own dtype. metadata: extra
    {str: str} for __metadata__; arch="vgg16" declares a network with
    abcprune's layout under other names (needed to import a VGG saved with
    nn.Sequential "features.N" names). The file is replaced atomically."""
    sd = model.state_dict() if hasattr(model, "state_dict") else model
    meta = dict(metadata or {})
    if arch is not None:
        meta["arch"] = arch
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = {str(k): str(v) for k, v in meta.items()}
    for name, t in sd.items():
        t = t.detach().cpu().contiguous()
        if t.dtype not in _NAMES:
            raise ValueError(f"{name}: dtype {t.dtype} is not supported")
        flat = t.reshape(-1)
        raw = (flat.view(torch.uint8).numpy().tobytes() if flat.numel()
               else b"")
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for raw in blobs:
            f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _Block(nn.Module):
    """A basic block; the shortcut is parameter-free (option A)."""

    def __init__(self, cin, width, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride, self.cin, self.planes = stride, cin, planes

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        sc = x
        if self.stride != 1 or self.cin != self.planes:
            sc = x[:, :, ::self.stride, ::self.stride]
            lo = (self.planes - self.cin) // 2
            sc = F.pad(sc, (0, 0, 0, 0, lo, self.planes - self.cin - lo))
        return F.relu(y + sc)


class ResNet(nn.Module):
    def __init__(self, n, structure, in_c, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for s in range(3):
            planes, blocks = 16 << s, []
            for b in range(n):
                stride = 2 if s > 0 and b == 0 else 1
                blocks.append(_Block(cin, structure[s * n + b], planes,
                                     stride))
                cin = planes
            setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class ConvNet(nn.Module):
    """vgg16 and smallnet: convN/bnN, max-pools after the given convs."""

    def __init__(self, structure, pools, in_c, classes):
        super().__init__()
        self.pools, cin = pools, in_c
        for i, c in enumerate(structure):
            setattr(self, f"conv{i + 1}", nn.Conv2d(cin, c, 3, 1, 1,
                                                    bias=False))
            setattr(self, f"bn{i + 1}", nn.BatchNorm2d(c))
            cin = c
        self.n = len(structure)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        for i in range(self.n):
            conv, bn = getattr(self, f"conv{i + 1}"), getattr(self, f"bn{i + 1}")
            x = F.relu(bn(conv(x)))
            if i in self.pools:
                x = F.max_pool2d(x, 2, 2)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build(arch, structure=None, input_shape=(1, 28, 28), classes=10):
    """The nn.Module abcprune runs for arch ("resnet20", "vgg16", ...) with
    structure (kept channels per prunable layer; None: the full model),
    randomly initialised, in training mode."""
    if arch not in _FULL:
        raise ValueError(f"unknown arch {arch!r}, expected one of "
                         f"{sorted(_FULL)}")
    full = _FULL[arch]
    structure = list(full if structure is None else structure)
    if len(structure) != len(full) or not all(
            1 <= c <= f for c, f in zip(structure, full)):
        raise ValueError(f"{arch}: structure {structure} does not fit the "
                         f"full widths {full}")
    in_c = input_shape[0]
    if arch == "vgg16":
        return ConvNet(structure, {1, 3, 6, 9}, in_c, classes)
    if arch == "smallnet":
        return ConvNet(structure, {0, 1}, in_c, classes)
    return ResNet(len(full) // 3, structure, in_c, classes)


def load(path):
    """The model of an `abcprune export` file: rebuilt from its metadata,
    weights loaded with strict=True, in eval mode."""
    tensors, meta = read_safetensors(path)
    missing = [k for k in ("arch", "structure", "input_shape", "classes")
               if k not in meta]
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)} in __metadata__ "
                         "(not written by `abcprune export`?)")
    model = build(meta["arch"], json.loads(meta["structure"]),
                  json.loads(meta["input_shape"]), int(meta["classes"]))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in tensors.items()}, strict=True)
    return model.eval()

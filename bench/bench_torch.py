#!/usr/bin/python3
"""PyTorch CPU side of the throughput benchmark: the identical network
(deploy/torch/abcprune_torch.py's build), batch and input, one JSON line like
bench_train's. usage: bench_torch.py ARCH THREADS [BATCH] [STEPS] [H]
[STRUCTURE|full] [--channels-last]. PyTorch's best CPU configuration here is
--channels-last with GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:
glibc.malloc.trim_threshold=1073741824 in the environment (run_bench.sh
sets it for the "best" runs)."""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "deploy", "torch"))
import abcprune_torch  # noqa: E402

def main():
    cl = "--channels-last" in sys.argv
    argv = [a for a in sys.argv if a != "--channels-last"]
    arch, threads = argv[1], int(argv[2])
    b = int(argv[3]) if len(argv) > 3 else 128
    steps = int(argv[4]) if len(argv) > 4 else 10
    h = int(argv[5]) if len(argv) > 5 else 28
    spec = argv[6] if len(argv) > 6 else "full"
    structure = None if spec == "full" else [int(c) for c in spec.split(",")]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = abcprune_torch.build(arch, structure, (1, h, h), 10)
    x = torch.randn(b, 1, h, h)
    if cl:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9,
                          weight_decay=5e-4)
    y = torch.randint(0, 10, (b,))
    net.train()
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    train = sorted(times)[steps // 2]
    net.eval()
    times = []
    with torch.no_grad():
        for i in range(steps + 1):
            t0 = time.perf_counter()
            net(x)
            if i >= 1:
                times.append(time.perf_counter() - t0)
    infer = sorted(times)[steps // 2]
    print(json.dumps({"impl": os.environ.get("BENCH_IMPL", "pytorch"),
                      "channels_last": cl,
                      "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
                      "model": arch, "structure": spec, "threads": threads,
                      "batch": b, "train_step_s": round(train, 5),
                      "train_img_s": round(b / train, 1),
                      "infer_batch_s": round(infer, 5),
                      "infer_img_s": round(b / infer, 1),
                      "torch": torch.__version__,
                      "mkldnn": bool(torch.backends.mkldnn.enabled)}))


if __name__ == "__main__":
    main()

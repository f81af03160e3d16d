#!/usr/bin/python3
"""PyTorch side of bench_conv: one 3x3, stride-1, padding-1 convolution
layer's forward and backward pass (batch B, channels_last, no bias) timed
like bench_conv (a warm-up forward, then ROUNDS timed forward + backward
pairs, medians), printed in bench_conv's columns. Run it with PyTorch's
best CPU configuration here (GLIBC_TUNABLES=glibc.malloc.mmap_threshold=
33554432:glibc.malloc.trim_threshold=1073741824) and alternate it with
bench_conv for a side-by-side comparison. Never a test.
usage: bench_torch_conv.py THREADS ROUNDS B Cin H W Cout [B Cin H W Cout ...]"""
import statistics
import sys
import time

import torch


def main():
    a = sys.argv[1:]
    if len(a) < 7 or (len(a) - 2) % 5:
        sys.exit("usage: bench_torch_conv.py THREADS ROUNDS B Cin H W Cout [...]")
    threads, rounds = int(a[0]), int(a[1])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    print("threads %d\n%-24s %-10s %-4s %9s %9s" % (
        threads, "B Cin HxW Cout", "algo", "dot", "fwd ms", "bwd ms"))
    for i in range(2, len(a), 5):
        b, cin, h, w, cout = (int(v) for v in a[i:i + 5])
        conv = torch.nn.Conv2d(cin, cout, 3, 1, 1, bias=False).to(
            memory_format=torch.channels_last)
        x = torch.randn(b, cin, h, w).contiguous(
            memory_format=torch.channels_last).requires_grad_(True)
        g = torch.randn(b, cout, h, w).contiguous(
            memory_format=torch.channels_last)
        conv(x)  # warm
        tf, tb = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            y = conv(x)
            t1 = time.perf_counter()
            y.backward(g)
            tf.append(t1 - t0)
            tb.append(time.perf_counter() - t1)
        print("%-24s %-10s %-4s %9.3f %9.3f" % (
            "%d %d %dx%d %d" % (b, cin, h, w, cout), "torch-best", "-",
            1e3 * statistics.median(tf), 1e3 * statistics.median(tb)))


if __name__ == "__main__":
    main()

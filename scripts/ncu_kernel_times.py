#!/usr/bin/env python3
"""Sums the GPU time of each kind of kernel from Nsight Compute's per-kernel summary.

Reads the text that `ncu --metrics gpu__time_duration.sum --print-summary per-kernel PROGRAM` prints (on standard
input or from a file) and prints, per kind of kernel, the time summed over every launch (average x invocations) and
its share of the total. The kinds are those of docs/models/gpt_cuda.md's profile: matrix products (cuBLAS and
CUTLASS kernels, unaligned `align1` ones apart), the causal softmax, LayerNorm, GELU, ...

    ncu --clock-control none --metrics gpu__time_duration.sum --print-summary per-kernel \\
        build-gpu/bench_gpt_cuda/bench_gpt_cuda --steps 1 > ncu.txt
    scripts/ncu_kernel_times.py ncu.txt
"""
import re
import sys

# (kind, substrings of the lower-cased kernel name): the first kind that matches names the kernel
KINDS = [
    ("sampling", ("decode", "draw", "kv_")),
    ("matrix products, unaligned (align1)", ("align1",)),
    ("matrix products", ("gemm", "kernel2", "splitk", "xmma")),
    ("attention softmax", ("softmax",)),
    ("attention permutes", ("permute", "heads_to_rows", "rows_to_heads")),
    ("layernorm", ("layernorm",)),
    ("gelu", ("gelu",)),
    ("log-softmax", ("logprob",)),
    ("adamw", ("adamw",)),
    ("residual", ("residual",)),
    ("encoder", ("encoder", "bucket")),
    ("bias / column sums", ("column", "bias")),
]
UNIT_US = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3, "s": 1e6, "second": 1e6}


def kind_of(name):
    lower = name.lower()
    for kind, keys in KINDS:
        if any(k in lower for k in keys):
            return kind
    return "other"


def kernel_times(text):
    """[(kernel name, total microseconds)] for every kernel block of the summary."""
    out = []
    for block in re.split(r"\n(?=  \S)", text):
        name = block.split("\n", 1)[0].strip()
        invocations = re.search(r"Invocations\s+(\d+)", block)
        metric = re.search(r"gpu__time_duration\.sum\s+(\S+)\s+([\d.,]+)\s+([\d.,]+)\s+([\d.,]+)", block)
        if not (invocations and metric):
            continue
        unit = metric.group(1)
        if unit not in UNIT_US:
            sys.exit(f"ncu_kernel_times: unknown time unit '{unit}' for kernel {name[:80]}")
        average = float(metric.group(4).replace(",", "")) * UNIT_US[unit]
        out.append((name, average * int(invocations.group(1))))
    return out


def main():
    args = sys.argv[1:]
    if args in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    if len(args) > 1 or (args and args[0].startswith("-")):
        print(f"ncu_kernel_times: unknown argument '{args[-1]}' (one file of ncu output, or standard input; --help)",
              file=sys.stderr)
        return 2
    try:
        text = open(args[0], encoding="utf-8", errors="replace").read() if args else sys.stdin.read()
    except OSError as e:
        print(f"ncu_kernel_times: {args[0]}: {e.strerror}", file=sys.stderr)
        return 2
    times = kernel_times(text)
    if not times:
        print("ncu_kernel_times: no kernel with gpu__time_duration.sum and Invocations in the input", file=sys.stderr)
        return 1
    total = sum(t for _, t in times)
    by_kind = {}
    for name, t in times:
        by_kind[kind_of(name)] = by_kind.get(kind_of(name), 0.0) + t
    print(f"{len(times)} kernels, {total / 1e3:.1f} ms in all")
    for kind, t in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<38} {t / 1e3:9.1f} ms  {100 * t / total:5.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Where a `perf record --call-graph dwarf` profile of `graft` spends its time, by Graft
function: each sample goes to the innermost frame that is Graft's own code and not one of
its SIMD trampolines (`lanes::with_avx2::run`, `with_avx512::run`, which every vectorised
loop compiles into and which a flat `perf report` shows as one line each), so that batch
norm's passes, the matrix kernel and the depthwise kernels come apart.

    perf record --call-graph dwarf,32768 -F 149 -o perf.data target/release/graft train ...
    perf script -i perf.data -F comm,tid,time,ip,sym > perf.txt
    python3 tools/perf_by_function.py perf.txt [--top 40]
"""
import argparse
import collections
import re


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("script", help="output of `perf script -F comm,tid,time,ip,sym`")
    ap.add_argument("--top", type=int, default=40)
    a = ap.parse_args()
    counts = collections.Counter()
    total = 0

    def flush(stack):
        nonlocal total
        if not stack:
            return
        total += 1
        key = None
        for frame in stack:  # innermost first
            if "graft::" in frame and "::with_avx2::run" not in frame \
                    and "::with_avx512::run" not in frame:
                key = re.search(r"(graft::[A-Za-z0-9_:]+)", frame).group(1)
                break
        counts[key or "other: " + stack[0][-60:]] += 1

    stack = []
    for line in open(a.script, errors="replace"):
        if not line.startswith(("\t", " ")):
            flush(stack)
            stack = []
            continue
        parts = line.strip().split(None, 1)
        if parts:
            stack.append(parts[1] if len(parts) > 1 else "")
    flush(stack)
    for key, n in counts.most_common(a.top):
        print(f"{100 * n / max(total, 1):5.1f}% {key}")


if __name__ == "__main__":
    main()

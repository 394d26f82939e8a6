#!/usr/bin/env python3
"""Where a fine-tuning step goes, by kind of layer, from the table `GRAFT_PROFILE=nodes
graft train ...` prints at its end: each row's seconds over the profiled steps, in ms a
step, summed per kind (forward/backward × 1x1, depthwise, batch norm — forward, with the
convolution joined to it — its statistics, the rest), then the largest rows.

    GRAFT_PROFILE=nodes target/release/graft train --model default \\
        --data target/bench_train/sub16 --epochs 4 --batch 32 --lr 0.0001 --device cpu \\
        --no-cache --export /tmp/profile.onnx [--precision bf16] > profile.txt 2>&1
    python3 tools/profile_steps.py profile.txt --steps 15 [--top 30]

`--steps`: the steps the table covers (it leaves out the first epoch: 3 epochs of 5 steps
in the command above). The rows' median-call column is left aside: several layers of one
shape share a backward row.
"""

import argparse
import collections


def rows(path):
    """(op, calls, seconds) for each row of the table."""
    out = []
    for line in open(path):
        p = line.split()
        if len(p) >= 5 and p[-2].endswith("%"):
            try:
                out.append((" ".join(p[:-4]), int(p[-4]), float(p[-3])))
            except ValueError:
                pass
    return out


def kind(op):
    way = "backward" if op.startswith("backward") else "forward"
    if "statistics" in op:
        return "forward batch norm statistics"
    if "BatchNormalization" in op and way == "forward":
        # Named by the batch norm's node: the joined op (batch norm + the depthwise or 1x1
        # convolution that reads it) is timed under it.
        return "forward batch norm + the convolution joined to it"
    if "BatchNormalization" in op:
        # The joined convolution's gradients have rows of their own.
        return "backward batch norm"
    if "depthwise" in op:
        return f"{way} depthwise"
    if "1x1" in op or any(k in op for k in ("_expand_conv", "_project_conv", "_conv_head")):
        return f"{way} 1x1"
    return f"{way} other"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("profile")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--top", type=int, default=30)
    a = ap.parse_args()
    table = rows(a.profile)
    if not table:
        raise SystemExit(f"{a.profile}: no GRAFT_PROFILE table found")
    ms = lambda s: 1000 * s / a.steps
    total = sum(s for _, _, s in table)
    print(f"{ms(total):.1f} ms a step profiled")
    kinds = collections.Counter()
    for op, _, s in table:
        kinds[kind(op)] += s
    for k, s in kinds.most_common():
        print(f"  {ms(s):7.1f} ms  {100 * s / total:5.1f} %  {k}")
    print("largest rows (ms a step, calls a step):")
    for op, calls, s in sorted(table, key=lambda r: -r[2])[: a.top]:
        print(f"  {ms(s):7.2f}  {calls / a.steps:4.1f}  {op}")


if __name__ == "__main__":
    main()

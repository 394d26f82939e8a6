#!/usr/bin/env python3
"""Where ONNX Runtime spends a forward pass, to set beside Graft's `GRAFT_PROFILE=nodes`.

    tools/pyenv.sh python tools/ort_profile.py target/bench/squeezenet1_1.onnx --batch 32
    ... tools/ort_profile.py assets/efficientnet_lite0.onnx --batch 1 --nodes --runs 30
    ... tools/ort_profile.py assets/efficientnet_lite0.onnx --batch 1 --threads 1 --timing

ONNX Runtime as `tools/peer.py` sets it up (all graph optimisations, a thread per core unless
`--threads`), with `SessionOptions.enable_profiling`: the seconds of each op type (or, with
`--nodes`, each node; after its graph optimisations a node is often a fused Conv + activation
named for its output) per run, averaged over the runs after the first. `--timing` prints the
median seconds of a pass without profiling instead (for single-thread against two-thread
comparisons: Graft's side is `RAYON_NUM_THREADS=N graft bench`).
"""
import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer  # noqa: E402


def session(path, threads, profile_prefix=None):
    opts = peer.ort_options()
    if threads:
        opts.intra_op_num_threads = threads
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (default: cores)")
    ap.add_argument("--nodes", action="store_true", help="per node, not per op type")
    ap.add_argument("--timing", action="store_true", help="median pass time, no profiling")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        s = session(a.model, a.threads, None if a.timing else os.path.join(tmp, "ort"))
        i = s.get_inputs()[0]
        x = np.random.rand(a.batch, *i.shape[1:]).astype(np.float32)
        if a.timing:
            for _ in range(3):
                s.run(None, {i.name: x})
            times = []
            for _ in range(a.runs):
                t = time.perf_counter()
                s.run(None, {i.name: x})
                times.append(time.perf_counter() - t)
            print("threads %d: median %.6f s a pass" % (a.threads or os.cpu_count(),
                                                         statistics.median(times)))
            return
        for _ in range(a.runs + 1):
            s.run(None, {i.name: x})
        events = json.load(open(s.end_profiling()))
    runs = [e for e in events if e.get("name") == "model_run"][1:]
    first_timed = runs[0]["ts"] if runs else 0
    total = sum(e["dur"] for e in runs) / 1e6 / max(len(runs), 1)
    seconds = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first_timed:
            key = e["name"][: -len("_kernel_time")] if a.nodes else e["args"].get("op_name")
            seconds[key] += e["dur"] / 1e6 / max(len(runs), 1)
    threads = a.threads or os.cpu_count()
    print("per run: %.6f s (onnxruntime %s, %d threads)" % (total, ort.__version__, threads))
    for key, t in sorted(seconds.items(), key=lambda kv: -kv[1]):
        print("%-60s %10.6f %5.1f%%" % (key, t, 100 * t / total))


if __name__ == "__main__":
    main()

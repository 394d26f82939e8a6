#!/usr/bin/env python3
"""Graft at 50,000 images (docs/BENCHMARKS.md, issue 12): scan time, resident memory of frozen
training at several cut points, how busy the cores are, and resident-memory growth of a long
fine-tuning run.

    cargo build --release
    /usr/bin/python3 tools/bench_large.py [--data DIR] [--runs scan,frozen,early,fine] [--out OUT.json]

The dataset is tools/make_large_dataset.py's (written to target/large_data when --data is not
given). Each run is `graft` as a user runs it; this script samples the process's resident
memory (VmRSS) and CPU time from /proc every 0.2 s:
  scan    `graft data` (wall time of the scan and header check)
  frozen  frozen backbone, the default cut (after global pooling: features fit in memory)
  early   frozen up to an early block (112×14×14 features per image: 4.4 GB at 50,000
          images, past the 1 GB memory budget, so they spill to disk)
  fine    full fine-tuning for --fine-iterations iterations on --fine-images of the images
          (resident memory at the end of the first epoch vs the end of the run)
"cores busy" is the process's CPU seconds over wall seconds while the frozen layers' features
are computed (decode + backbone): 2.0 is both cores of this machine.
"""
import argparse, json, os, re, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAFT = os.path.join(ROOT, "target", "release", "graft")
TICK = os.sysconf("SC_CLK_TCK")
# Lite0's early cut: the output of block 10 (112×14×14, stride 16).
EARLY_CUT = "/_blocks.10/Add"


def sample(proc, out, stop):
    """Samples (seconds, rss_mb, cpu_seconds) of `proc` until it ends."""
    t0 = time.time()
    while not stop.is_set() and proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024
            with open(f"/proc/{proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
                cpu = (int(fields[11]) + int(fields[12])) / TICK
            out.append((time.time() - t0, rss, cpu))
        except (OSError, AttributeError, IndexError):
            pass
        time.sleep(0.2)


def run(cmd, lines=None):
    """Runs `cmd`, returning (wall seconds, samples, stderr lines with their times)."""
    env = dict(os.environ, NO_COLOR="1")
    t0 = time.time()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    samples, stop = [], threading.Event()
    th = threading.Thread(target=sample, args=(proc, samples, stop))
    th.start()
    log = []
    for line in proc.stderr:
        log.append((time.time() - t0, line.rstrip()))
    proc.wait()
    stop.set()
    th.join()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n" + "\n".join(l for _, l in log[-20:]))
    return time.time() - t0, samples, log


def when(log, pattern):
    """The time of the first stderr line matching `pattern`, or None."""
    return next((t for t, l in log if re.search(pattern, l)), None)


def cores_busy(samples, t_from, t_to):
    inside = [s for s in samples if t_from <= s[0] <= t_to]
    if len(inside) < 2:
        return None
    return (inside[-1][2] - inside[0][2]) / (inside[-1][0] - inside[0][0])


def frozen(data, extra, name):
    with tempfile.TemporaryDirectory() as out:
        cmd = [GRAFT, "train", "--model", "default", "--data", data, "--epochs", "2", "--batch", "64",
               "--export", os.path.join(out, "m.onnx"), "--val-split", "0.2"] + extra
        wall, samples, log = run(cmd)
    # The feature pass: after the scan's summary line, until training starts.
    start = when(log, r"images in \d+ classes") or 0
    end = when(log, r"^training on") or wall
    r = {
        "run": name, "wall_s": round(wall, 1),
        "peak_rss_mb": round(max(s[1] for s in samples)),
        "feature_pass_s": round(end - start, 1),
        "cores_busy_computing_features": round(cores_busy(samples, start, end) or 0, 2),
        "spilled": any("kept in a file" in l for _, l in log),
        "messages": [l for _, l in log if "frozen" in l.lower() and "feature" in l.lower()][:3],
    }
    print(json.dumps(r), flush=True)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data")
    ap.add_argument("--runs", default="scan,frozen,early,fine")
    ap.add_argument("--fine-images", type=int, default=4000)
    ap.add_argument("--fine-iterations", type=int, default=2000)
    ap.add_argument("--fine-batch", type=int, default=8)
    ap.add_argument("--out")
    a = ap.parse_args()
    data = a.data or os.path.join(ROOT, "target", "large_data")
    if not os.path.isdir(data):
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_large_dataset.py"), data], check=True)
    runs = a.runs.split(",")
    results = {"machine_cpus": os.cpu_count(), "runs": []}
    if "scan" in runs:
        with tempfile.TemporaryDirectory() as out:
            report = os.path.join(out, "data.json")
            wall, samples, _ = run([GRAFT, "data", data, "--json", report])
            with open(report) as f:
                d = json.load(f)
        r = {"run": "scan", "files": d["files_checked"], "skipped": len(d["skipped"]),
             "scan_s": round(d["scan_seconds"], 2), "wall_s": round(wall, 2),
             "peak_rss_mb": round(max((s[1] for s in samples), default=0))}
        print(json.dumps(r), flush=True)
        results["runs"].append(r)
    if "frozen" in runs:
        results["runs"].append(frozen(data, ["--freeze-backbone"], "frozen_default_cut"))
    if "early" in runs:
        results["runs"].append(frozen(data, ["--freeze-until", EARLY_CUT], "frozen_early_cut"))
    if "fine" in runs:
        with tempfile.TemporaryDirectory() as tmp:
            # The first N images of each class, linked (not copied) into a smaller folder.
            small = os.path.join(tmp, "data")
            per_class = a.fine_images // len(os.listdir(data))
            for c in sorted(os.listdir(data)):
                os.makedirs(os.path.join(small, c))
                for f in sorted(os.listdir(os.path.join(data, c)))[:per_class]:
                    os.symlink(os.path.join(data, c, f), os.path.join(small, c, f))
            train_images = int(per_class * len(os.listdir(data)) * 0.8)
            per_epoch = -(-train_images // a.fine_batch)
            epochs = -(-a.fine_iterations // per_epoch)
            cmd = [GRAFT, "train", "--model", "default", "--data", small, "--epochs", str(epochs),
                   "--batch", str(a.fine_batch), "--val-split", "0.2", "--export", os.path.join(tmp, "m.onnx")]
            wall, samples, log = run(cmd)
        first = when(log, r"^epoch \d+: ")
        after_first = [s[1] for s in samples if first is not None and s[0] >= first]
        at_first = after_first[0] if after_first else None
        r = {"run": "fine_tuning", "images": per_class * len(os.listdir(data)), "batch": a.fine_batch,
             "epochs": epochs, "iterations": epochs * per_epoch, "wall_s": round(wall, 1),
             "rss_after_first_epoch_mb": round(at_first) if at_first else None,
             "rss_peak_after_first_epoch_mb": round(max(after_first)) if after_first else None,
             "growth_after_first_epoch_pct": round(100 * (max(after_first) / at_first - 1), 1) if at_first else None,
             "peak_rss_mb": round(max(s[1] for s in samples))}
        print(json.dumps(r), flush=True)
        results["runs"].append(r)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()

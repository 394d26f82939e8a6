#!/usr/bin/env bash
# Where burn's wgpu training of EfficientNet-Lite0 spends its time, on a lent GPU machine, in
# one run after tools/gpu_check.sh showed it far behind PyTorch CUDA:
#   run(command="tools/gpu_profile.sh", carry=["target/gpu", ".gl"], timeout_s=345)
# after tools/gpu_check.sh --build (the binary) and --slim (the checkout under the carry
# limit), as for the check; a dry run of the bookkeeping here: GPU_PROFILE_DEVICE=cpu.
# A. full fine-tuning, batch 32, 3 epochs with CubeCL's autotuning at its "minimal" level:
#    how much of the first epoch's wait is autotuning (gpu_check's default level: 133 s);
# B. the same with CubeCL's kernel profiler, compilation and autotune logs on (cubecl.toml in a
#    scratch folder): per kernel, its launches and GPU time over the last third of the launches
#    (about the last epoch, past compilation and tuning), how many kernels were compiled, and
#    the autotuning's own time (its candidates' compilation and benchmarks, summed).
# Out: $OUT/gpu_profile.json, $OUT/kernels.txt (the table), $OUT/profile.log.xz (raw),
# $OUT/compile.log and $OUT/autotune.log.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out="${OUT:-$root/target/gpu_out}"
mkdir -p "$out"
. tools/gpu_setup.sh
device="${GPU_PROFILE_DEVICE:-wgpu}"

"${PYTHON:-python3}" - "$bin" "$work" "$out" "$device" <<'PY'
import collections, json, os, re, statistics, subprocess, sys, time
graft, work, out, device = sys.argv[1:5]
result = {}
def save():
    json.dump(result, open(os.path.join(out, "gpu_profile.json"), "w"), indent=1)

sys.path.insert(0, "tools")
import gpu_dataset
data = os.path.join(work, "data")
gpu_dataset.write(data)

def train(tag, epochs, timeout, cwd):
    report = os.path.join(work, f"{tag}.json")
    args = [graft, "train", "--model", "default", "--data", data, "--epochs", str(epochs),
            "--batch", "32", "--device", device, "--val-split", "0",
            "--export", os.path.join(work, f"{tag}.onnx"), "--report", report]
    env = dict(os.environ, CUBECL_AUTOTUNE_LEVEL="minimal")
    t = time.perf_counter()
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
        text, ok = p.stdout + p.stderr, p.returncode == 0
    except subprocess.TimeoutExpired as e:
        text, ok = str(e), False
    row = {"wall_s": time.perf_counter() - t, "ok": ok}
    open(os.path.join(out, "train.log"), "a").write(" ".join(args) + "\n" + text + "\n")
    if ok:
        r = json.load(open(report))
        its = r["history"]["iterations"]
        row["epoch_seconds"] = r["epoch_seconds"]
        row["last_epoch_images_per_s"] = statistics.median(
            x["images_per_sec"] for x in its[-len(its) // epochs:])
    result[tag] = row
    save()

train("minimal_autotune", 3, float(os.environ.get("GPU_PROFILE_A_S", "170")), work)

prof = os.path.join(work, "prof")
os.makedirs(prof)
log, comp = os.path.join(work, "profile.log"), os.path.join(work, "compile.log")
tune = os.path.join(work, "autotune.log")
open(os.path.join(prof, "cubecl.toml"), "w").write(
    f'[profiling.logger]\nfile = "{log}"\nlevel = "medium"\n'
    f'[compilation.logger]\nfile = "{comp}"\nlevel = "basic"\n'
    f'[autotune.logger]\nfile = "{tune}"\nlevel = "minimal"\n')
train("profiled", 3, float(os.environ.get("GPU_PROFILE_B_S", "140")), prof)

def secs(d):
    m = re.match(r"([0-9.]+)(ns|µs|us|ms|s)$", d.strip())
    if not m:
        return None
    return float(m.group(1)) * {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]

if os.path.exists(log):
    lines = [l for l in open(log, errors="replace") if l.startswith("| ")]
    tail = lines[-len(lines) // 3:]
    by_name, by_kind = collections.defaultdict(lambda: [0, 0.0]), collections.defaultdict(lambda: [0, 0.0])
    for l in tail:
        parts = l.rstrip("\n").split("| ", 2)
        if len(parts) < 3:
            continue
        s = secs(parts[1].strip().rstrip("|").strip())
        if s is None:
            continue
        name = parts[2].strip()
        kind = re.split(r"[<({\s]", name, 1)[0]
        for table, key in ((by_name, name[:160]), (by_kind, kind)):
            table[key][0] += 1
            table[key][1] += s
    total = sum(v[1] for v in by_kind.values())
    with open(os.path.join(out, "kernels.txt"), "w") as f:
        f.write(f"{len(tail)} launches of {len(lines)} (last third), GPU time {total:.3f} s\n\n")
        for title, table in (("by kernel", by_kind), ("by kernel and shape", by_name)):
            f.write(f"## {title}\n")
            for k, (n, s) in sorted(table.items(), key=lambda kv: -kv[1][1])[:60]:
                f.write(f"{s * 1e3:10.2f} ms {100 * s / max(total, 1e-12):6.2f} % {n:7d}  {k}\n")
            f.write("\n")
    result["profiled_launches"] = len(lines)
    result["profiled_gpu_seconds_last_third"] = total
    result["top_kernels"] = [(k, round(s * 1e3, 2), n) for k, (n, s) in
                             sorted(by_kind.items(), key=lambda kv: -kv[1][1])[:25]]
    subprocess.run(["xz", "-6", "-T4", "-k", log])
    if os.path.getsize(log + ".xz") < 15_000_000:
        os.replace(log + ".xz", os.path.join(out, "profile.log.xz"))
if os.path.exists(comp):
    result["compiled_lines"] = sum(1 for _ in open(comp, errors="replace"))
    subprocess.run(["cp", comp, os.path.join(out, "compile.log")])
if os.path.exists(tune):
    # How much of the first epoch's wait is autotuning: each candidate's "compilation &
    # bench" time, summed, against the epoch (the rest is compiling the kernels that run).
    text = open(tune, errors="replace").read()
    runs = [(m.group(1), secs(m.group(2))) for m in
            re.finditer(r"Tuning: (\S+) \(compilation & bench: ([0-9.]+(?:ns|µs|us|ms|s))\)", text)]
    by_candidate = collections.Counter()
    for name, s in runs:
        by_candidate[name] += s or 0.0
    result["autotune"] = {
        "keys": len(re.findall(r"Fastest result", text)),
        "candidate_runs": len(runs),
        "seconds": round(sum(by_candidate.values()), 1),
        "top": [(k, round(v, 1)) for k, v in by_candidate.most_common(10)],
    }
    subprocess.run(["cp", tune, os.path.join(out, "autotune.log")])
save()
print(json.dumps(result, indent=1))
if os.path.exists(os.path.join(out, "kernels.txt")):
    print(open(os.path.join(out, "kernels.txt")).read()[:6000])
PY

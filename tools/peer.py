"""The peers (PyTorch, ONNX Runtime) at their best, set up one way for every benchmark here.

PyTorch counts physical cores: on a 2-vCPU machine `torch.get_num_threads()` is 1, and a
benchmark that leaves it there compares Graft with a peer held to half the machine. Every
benchmark calls `torch.set_num_threads(os.cpu_count())` itself before timing (in plain sight,
where a reader checks for it), builds ONNX Runtime sessions with `ort_options()`, and prints
`settings()` (which records the thread count) next to its numbers.
"""
import os

MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "LD_PRELOAD")

# PyTorch's memory layouts for images: its CPU convolutions (oneDNN) run channels-last 1.3-1.5x
# faster than NCHW on this machine, training and inference (docs/BENCHMARKS.md), so every
# PyTorch peer here is timed in both and the faster is the one compared.
LAYOUTS = ("nchw", "channels_last")
# The layout of the peers that do not time both (tools/bench_train.py does): the faster one
# here; `GRAFT_PEER_LAYOUT=nchw` reruns them in the other.
LAYOUT = os.environ.get("GRAFT_PEER_LAYOUT", "channels_last")


def modes():
    """How PyTorch can train a model here: eager; compiled (`torch.compile`, whose Inductor
    backend fuses the element-wise ops around convolutions into generated C++) where this
    PyTorch has it (2.0 on); and eager under bf16 autocast (`torch.autocast("cpu",
    torch.bfloat16)`: oneDNN's bf16 kernels, on CPUs with AVX512-BF16). Benchmarks that time
    training run each and compare the fastest; a way this PyTorch cannot run (1.13 has no
    bf16 kernel for ReLU6's backward pass) is reported and skipped. bf16 is tried only where
    the CPU multiplies bf16 (AVX512-BF16 or AMX): elsewhere oneDNN emulates it, slower than
    fp32 (on a 2-vCPU Zen 1, 0.55-1.17 img/s against fp32's 6-8: about a minute a step), so
    it cannot be the peer's best. docs/BENCHMARKS.md has what each gave."""
    import torch
    return (("eager",) + (("compiled",) if hasattr(torch, "compile") else ())
            + (("bf16",) if cpu_multiplies_bf16() else ()))


def cpu_multiplies_bf16():
    """Whether this CPU has bf16 dot products (Linux's /proc/cpuinfo flags; True where that
    cannot be read, so the bf16 way is tried rather than silently dropped)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


def to_layout(layout, *modules_or_tensors):
    """Models and image batches in `layout` (one of LAYOUTS), in the order given."""
    import torch
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    out = []
    for m in modules_or_tensors:
        out.append(m.to(memory_format=fmt) if isinstance(m, torch.nn.Module)
                   else m.contiguous(memory_format=fmt))
    return out[0] if len(out) == 1 else out


def ort_options():
    """ONNX Runtime with every graph optimisation and one intra-op thread per core."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = os.cpu_count()
    return opts


def settings():
    """What the peers ran with, to print beside their numbers."""
    out = {"cpus": os.cpu_count()}
    try:
        import torch
        out["torch"] = torch.__version__
        out["torch_threads"] = torch.get_num_threads()
        out["torch_layout"] = LAYOUT
    except ImportError:
        pass
    try:
        import onnxruntime as ort
        out["onnxruntime"] = ort.__version__
        out["ort_intra_op_threads"] = os.cpu_count()
    except ImportError:
        pass
    out.update({k: os.environ[k] for k in MALLOC_VARS if k in os.environ})
    return out

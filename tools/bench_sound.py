#!/usr/bin/env python3
"""Audio transfer learning, Graft vs a PyTorch/torchaudio script of the same recipe (issue 11).

    cargo build --release
    MALLOC_MMAP_THRESHOLD_=10000000000 MALLOC_TRIM_THRESHOLD_=10000000000 \\
        tools/pyenv.sh python tools/bench_sound.py [--pth efficientnet-lite0.pth] [--seed 0]
        [--floor-db 80]

Data: tools/make_sound_dataset.py writes target/bench_sound/data/{train,val} (100 and 50
clips per class of tone, chirp, noise and clicks, each under white background noise at -15
to -5 dB SNR; WAV 8/16/24-bit and float, FLAC, OGG/Vorbis and MP3 at 8-48 kHz, mono and
stereo; dataset seeds 0 and 1), once.

Recipe, for both: each file mixed to mono, resampled to 16 kHz, its first second (padded with
silence); log-mel spectrogram: frames of 512 samples every 160 without centring, periodic
Hann window, power, 64 bands 20-8000 Hz (the ONNX specification's MelWeightMatrix: PyTorch
reads the bank from Graft's exported file, so both use the same definition), ln(x + 1e-6)
held within 80 dB of the clip's loudest value;
standardised by the training clips' mean and standard deviation (each side measures its
own); resized to 224 x 224 bilinear with half-pixel centres; the plane repeated into RGB.
EfficientNet-Lite0 with its ImageNet weights (the embedded network; PyTorch loads the same
checkpoint, tools/efficientnet_lite0.py), backbone frozen, a new 4-class head; Adam lr 1e-3,
L2 1e-4, batch 32, 10 epochs, no augmentation, seed 0; features computed once on both sides
(PyTorch at its best). Accuracy on the validation clips; Graft's exported file is also run
in ONNX Runtime on the raw 16 kHz clips (torchaudio's decoding and resampling) and scored.
PyTorch: torchaudio decodes (libsndfile/ffmpeg backends) and resamples (its windowed-sinc
resampler), torch.stft computes the frames.

Front-end throughput: clips per second from files to the 3 x 224 x 224 network input on one
thread each (`graft bench-front`; the same steps in torch with torch.set_num_threads(1)).
"""
import argparse, json, os, subprocess, sys, time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from bench_train import checkpoint  # noqa: E402
from efficientnet_lite0 import EfficientNetLite0  # noqa: E402
import peer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAFT = os.path.join(ROOT, "target", "release", "graft")
WORK = os.path.join(ROOT, "target", "bench_sound")
RATE, CLIP, FFT, HOP, SIDE = 16000, 16000, 512, 160, 224
# Background noise at -15 to -5 dB: without it both sides score 100 % and agree trivially.
SNR = "-15,-5"
FLOOR_DB = 80.0  # --floor-db


def make_data(data):
    for part, per_class, seed in [("train", 100, 0), ("val", 50, 1)]:
        d = os.path.join(data, part)
        if not os.path.isdir(d):
            subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_sound_dataset.py"), d,
                            "--per-class", str(per_class), "--seed", str(seed), f"--snr={SNR}"],
                           check=True)


def folder(root):
    classes = sorted(os.listdir(root))
    return classes, [(os.path.join(root, c, f), i) for i, c in enumerate(classes)
                     for f in sorted(os.listdir(os.path.join(root, c)))]


def clip_of(path):
    import torchaudio
    x, sr = torchaudio.load(path)
    x = x.mean(0)
    if sr != RATE:
        x = torchaudio.functional.resample(x, sr, RATE)
    out = torch.zeros(CLIP)
    n = min(CLIP, len(x))
    out[:n] = x[:n]
    return out


def log_mel(clip, bank):
    spec = torch.stft(clip, n_fft=FFT, hop_length=HOP, win_length=FFT,
                      window=torch.hann_window(FFT, periodic=True), center=False,
                      onesided=True, return_complex=True)
    power = spec.abs() ** 2                      # [bins, frames]
    lm = torch.log(bank.T @ power + 1e-6)        # [mels, frames]
    # Held within FLOOR_DB of the clip's loudest value (librosa's top_db, Graft's floor_db).
    if FLOOR_DB <= 0:
        return lm
    return torch.maximum(lm, lm.max() - FLOOR_DB * np.log(10) / 10)


def to_input(lm, mean, std):
    x = ((lm - mean) / std)[None, None]
    x = nn.functional.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    return x[0].repeat(3, 1, 1)


def mel_bank(model_path):
    import onnx
    from onnx import numpy_helper
    m = onnx.load(model_path)
    t = next(t for t in m.graph.initializer if t.name.startswith("graft_audio/mel_weights"))
    return torch.from_numpy(numpy_helper.to_array(t).copy())


def torch_side(pth, bank, train, val, seed):
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    train_lm = [log_mel(clip_of(p), bank) for p, _ in train]
    allv = torch.cat([lm.flatten() for lm in train_lm])
    mean, std = allv.mean(), allv.std(unbiased=False)
    xs = peer.to_layout(peer.LAYOUT, torch.stack([to_input(lm, mean, std) for lm in train_lm]))
    ys = torch.tensor([y for _, y in train])
    model = EfficientNetLite0().load_checkpoint(torch.load(pth, map_location="cpu")).eval()
    model = peer.to_layout(peer.LAYOUT, model)

    def features(x):
        with torch.no_grad():
            out = []
            for i in range(0, len(x), 32):
                h = model.act(model._bn0(model._stem(x[i:i + 32])))
                for b in model._blocks:
                    h = b(h)
                h = model.act(model._bn1(model._conv_head(h)))
                out.append(torch.flatten(model._avg_pooling(h), 1))
            return torch.cat(out)

    feats = features(xs)
    head = nn.Linear(1280, len(set(ys.tolist())))
    opt = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    for _ in range(10):
        for idx in torch.randperm(len(ys), generator=g).split(32):
            loss = nn.functional.cross_entropy(head(feats[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    secs = time.perf_counter() - t0
    vx = peer.to_layout(peer.LAYOUT, torch.stack([to_input(log_mel(clip_of(p), bank), mean, std) for p, _ in val]))
    with torch.no_grad():
        pred = head(features(vx)).argmax(1)
    acc = float((pred == torch.tensor([y for _, y in val])).float().mean())
    return secs, acc, float(mean), float(std)


def ort_accuracy(model, val):
    import onnxruntime as ort
    sess = ort.InferenceSession(model, peer.ort_options(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    correct = 0
    for p, y in val:
        out = sess.run(None, {name: clip_of(p)[None].numpy()})[0]
        correct += int(int(np.argmax(out[0])) == y)
    return correct / len(val)


def torch_front_speed(bank, files):
    torch.set_num_threads(1)
    t = time.perf_counter()
    for p in files:
        to_input(log_mel(clip_of(p), bank), 0.0, 1.0)
    secs = time.perf_counter() - t
    torch.set_num_threads(os.cpu_count())
    return len(files) / secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pth")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--floor-db", type=float, default=80.0,
                    help="the spectrogram floor below each clip's loudest value, both sides (0: off)")
    a = ap.parse_args()
    global FLOOR_DB
    FLOOR_DB = a.floor_db
    torch.set_num_threads(os.cpu_count())  # PyTorch alone would use the physical cores
    threads = torch.get_num_threads()
    data = os.path.join(WORK, "data")
    make_data(data)
    classes, train = folder(os.path.join(data, "train"))
    _, val = folder(os.path.join(data, "val"))
    out = os.path.join(WORK, "graft")
    t = time.perf_counter()
    subprocess.run([GRAFT, "train", "--model", "default", "--data", os.path.join(data, "train"),
                    "--val-data", os.path.join(data, "val"), "--freeze-backbone", "--epochs", "10",
                    "--batch", "32", "--lr", "0.001", "--l2", "0.0001", "--solver", "adam",
                    "--seed", str(a.seed), "--floor-db", str(a.floor_db), "--device", "cpu",
                    "--export", out + ".onnx",
                    "--report", out + ".json"], check=True, stderr=subprocess.DEVNULL)
    graft_secs = time.perf_counter() - t
    report = json.load(open(out + ".json"))
    graft_acc = report["validation"]["accuracy"]
    bank = mel_bank(out + ".onnx")
    graft_ort = ort_accuracy(out + ".onnx", val)
    pth = checkpoint(a.pth)
    torch_secs, torch_acc, mean, std = torch_side(pth, bank, train, val, a.seed)
    files = [p for p, _ in val]
    front = json.loads(subprocess.run([GRAFT, "bench-front", os.path.join(data, "val"),
                                       "--floor-db", str(a.floor_db)],
                                      check=True, capture_output=True, text=True).stdout)
    torch_front = torch_front_speed(bank, files)
    result = {
        "peer": peer.settings(), "torch_threads": threads, "seed": a.seed, "floor_db": a.floor_db,
        "train_clips": len(train), "val_clips": len(val), "classes": classes,
        "accuracy": {"graft": graft_acc, "graft_file_in_onnxruntime": graft_ort,
                     "pytorch": torch_acc},
        "train_seconds": {"graft": graft_secs, "pytorch": torch_secs},
        "pytorch_log_mel_mean_std": [mean, std],
        "front_end_clips_per_s_one_thread": {"graft": front["clips_per_s"],
                                             "torchaudio": torch_front},
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

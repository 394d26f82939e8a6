#!/usr/bin/env python3
"""Writes a folder-per-class sound dataset of synthesised clips, for Graft's audio tests and
benchmarks (issue 11). No recordings are needed.

Classes (each clip 0.6-1.4 s, random loudness, a little background noise):
  tone    a steady sine between 300 and 3000 Hz, with a short fade in and out
  chirp   a sine sweeping up or down over an octave or more
  noise   white, pink or brown noise
  clicks  a click train at 4-40 clicks per second

Files come in mixed formats and sample rates, as users' folders do: WAV at 8, 16 and 24 bits
and 32-bit float, FLAC, OGG/Vorbis and MP3 (the last three through libsndfile, Debian's
python3-soundfile), at 8, 16, 22.05, 44.1 and 48 kHz, mono and stereo. With --formats wav
only WAV is written (no libsndfile needed).

    tools/pyenv.sh python tools/make_sound_dataset.py OUT [--per-class 60] [--seed 0]
        [--formats all|wav] [--snr LO,HI] [--fixtures DIR]

--snr LO,HI adds white background noise at a signal-to-noise ratio drawn in [LO, HI] dB per
clip (the benchmark's harder set).

--fixtures DIR also writes one short chirp in every format to DIR (the decoder's tests).
"""

import argparse
import os
import struct
import sys

import numpy as np

CLASSES = ["chirp", "clicks", "noise", "tone"]
RATES = [8000, 16000, 22050, 44100, 48000]


def tone(rng, rate, n):
    f = rng.uniform(300, 3000)
    t = np.arange(n) / rate
    return np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))


def chirp(rng, rate, n):
    f0 = rng.uniform(200, 1000)
    f1 = f0 * rng.uniform(2.0, 6.0)
    if rng.random() < 0.5:
        f0, f1 = f1, f0
    t = np.arange(n) / rate
    dur = n / rate
    # Linear sweep: phase is the integral of the frequency.
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * dur))
    return np.sin(phase)


def noise(rng, rate, n):
    white = rng.standard_normal(n)
    kind = rng.integers(3)
    if kind == 0:
        x = white
    else:
        spectrum = np.fft.rfft(white)
        f = np.fft.rfftfreq(n, 1 / rate)
        f[0] = f[1]
        spectrum /= f ** (0.5 if kind == 1 else 1.0)
        x = np.fft.irfft(spectrum, n)
    return x / (np.abs(x).max() + 1e-9)


def clicks(rng, rate, n):
    per_s = rng.uniform(4, 40)
    x = np.zeros(n)
    step = rate / per_s
    at = rng.uniform(0, step)
    click = np.hanning(max(8, int(rate * 0.002)))
    while at < n - len(click):
        i = int(at)
        x[i:i + len(click)] += click
        at += step
    return x


MAKERS = {"tone": tone, "chirp": chirp, "noise": noise, "clicks": clicks}


def clip(rng, cls, rate, snr=None):
    n = int(rate * rng.uniform(0.6, 1.4))
    x = MAKERS[cls](rng, rate, n)
    fade = np.ones(n)
    k = min(n // 4, int(rate * 0.02))
    fade[:k] = np.linspace(0, 1, k)
    fade[n - k:] = np.linspace(1, 0, k)
    x = x * fade
    if snr is not None:
        # Background noise at a random signal-to-noise ratio: the harder set.
        db = rng.uniform(*snr)
        rms = np.sqrt(np.mean(x * x)) + 1e-9
        x = x + rng.standard_normal(n) * rms / 10 ** (db / 20)
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.1, 0.8)
    x = x + rng.standard_normal(n) * 0.003
    return np.clip(x, -1, 1).astype(np.float32)


def write_wav(path, x, rate, bits, channels):
    """WAV with the standard library's struct: PCM 8/16/24-bit or IEEE float 32-bit."""
    if channels == 2:
        x = np.stack([x, x * 0.8], axis=1).reshape(-1)
    if bits == 8:
        data = np.round(x * 127 + 128).astype(np.uint8).tobytes()
        fmt = 1
    elif bits == 16:
        data = np.round(x * 32767).astype("<i2").tobytes()
        fmt = 1
    elif bits == 24:
        v = np.round(x * 8388607).astype("<i4")
        data = b"".join(int(s).to_bytes(3, "little", signed=True) for s in v)
        fmt = 1
    else:
        data = x.astype("<f4").tobytes()
        fmt = 3
    block = channels * bits // 8
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, fmt, channels, rate, rate * block, block, bits)
    header += b"data" + struct.pack("<I", len(data))
    with open(path, "wb") as f:
        f.write(header + data)


def write_other(path, x, rate, channels, fmt, subtype):
    import soundfile

    if channels == 2:
        x = np.stack([x, x * 0.8], axis=1)
    soundfile.write(path, x, rate, format=fmt, subtype=subtype)


# (extension, writer) choices, cycled per clip.
def formats(kind):
    wav = [
        ("wav", lambda p, x, r, c: write_wav(p, x, r, 16, c)),
        ("wav", lambda p, x, r, c: write_wav(p, x, r, 8, c)),
        ("wav", lambda p, x, r, c: write_wav(p, x, r, 24, c)),
        ("wav", lambda p, x, r, c: write_wav(p, x, r, 32, c)),
    ]
    if kind == "wav":
        return wav
    return wav + [
        ("flac", lambda p, x, r, c: write_other(p, x, r, c, "FLAC", "PCM_16")),
        ("ogg", lambda p, x, r, c: write_other(p, x, r, c, "OGG", "VORBIS")),
        ("mp3", lambda p, x, r, c: write_other(p, x, r, c, "MP3", "MPEG_LAYER_III")),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--per-class", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--formats", choices=["all", "wav"], default="all")
    ap.add_argument("--fixtures", help="also write one short clip per format here")
    ap.add_argument("--snr", help="LO,HI: add background noise at a random SNR in dB (harder)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    writers = formats(args.formats)
    snr = tuple(float(v) for v in args.snr.split(",")) if args.snr else None
    for cls in CLASSES:
        d = os.path.join(args.out, cls)
        os.makedirs(d, exist_ok=True)
        for i in range(args.per_class):
            rate = RATES[rng.integers(len(RATES))]
            # MP3 takes 8-48 kHz; Vorbis and FLAC any of these.
            ext, write = writers[(i + CLASSES.index(cls)) % len(writers)]
            channels = 2 if rng.random() < 0.3 else 1
            write(os.path.join(d, f"{cls}_{i:04d}.{ext}"), clip(rng, cls, rate, snr), rate, channels)
    if args.fixtures:
        os.makedirs(args.fixtures, exist_ok=True)
        fixed = np.random.default_rng(7)
        x = chirp(fixed, 16000, 4000).astype(np.float32) * 0.5
        for ext, write, name in [
            ("wav", lambda p, x, r, c: write_wav(p, x, r, 8, c), "chirp_u8"),
            ("wav", lambda p, x, r, c: write_wav(p, x, r, 16, c), "chirp_s16_stereo"),
            ("wav", lambda p, x, r, c: write_wav(p, x, r, 24, c), "chirp_s24"),
            ("wav", lambda p, x, r, c: write_wav(p, x, r, 32, c), "chirp_f32"),
            ("flac", lambda p, x, r, c: write_other(p, x, r, c, "FLAC", "PCM_16"), "chirp"),
            ("ogg", lambda p, x, r, c: write_other(p, x, r, c, "OGG", "VORBIS"), "chirp"),
            ("mp3", lambda p, x, r, c: write_other(p, x, r, c, "MP3", "MPEG_LAYER_III"), "chirp"),
        ]:
            channels = 2 if "stereo" in name else 1
            write(os.path.join(args.fixtures, f"{name}.{ext}"), x, 16000, channels)
        np.save(os.path.join(args.fixtures, "chirp_reference.npy"), x)
    print(f"wrote {args.per_class * len(CLASSES)} clips to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

//! Helpers shared by integration tests: tiny generated datasets, fixture paths, comparing
//! outputs.

#![allow(dead_code)]

use image::{Rgb, RgbImage};
use std::path::Path;

/// Writes an ImageFolder with `per_class` PNGs for each of three easily told apart classes:
/// bright, dark and red-tinted images with seeded noise.
pub fn write_dataset(root: &Path, per_class: usize, size: u32, seed: u64) {
    let classes: [(&str, [u8; 3]); 3] = [
        ("bright", [210, 210, 210]),
        ("dark", [40, 40, 40]),
        ("red", [200, 30, 30]),
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for (name, base) in classes {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let img = RgbImage::from_fn(size, size, |_, _| {
                let n = (rnd() % 61) as i32 - 30;
                Rgb(base.map(|c| (c as i32 + n).clamp(0, 255) as u8))
            });
            img.save(dir.join(format!("{i:03}.png"))).unwrap();
        }
    }
}

pub fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The largest difference, relative to the reference's largest magnitude (at least 1).
pub fn max_rel_error(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "output sizes differ");
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f32::max)
        / scale
}

/// NHWC values as NCHW (what the imported network of a channels-last file takes).
pub fn to_channels_first(shape: &[usize], x: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let [n, h, w, c] = shape[..] else {
        panic!("{shape:?} is not N×H×W×C")
    };
    let mut out = vec![0.0f32; x.len()];
    for b in 0..n {
        for y in 0..h {
            for xx in 0..w {
                for ch in 0..c {
                    out[((b * c + ch) * h + y) * w + xx] = x[((b * h + y) * w + xx) * c + ch];
                }
            }
        }
    }
    (vec![n, c, h, w], out)
}

/// A box dataset in the YOLO layout under `root`: `n` images of 192×144 (not square, so the
/// letterbox matters), a textured background and one to three objects each — red discs
/// (class "disc") and blue squares ("square"), 28–72 px across, apart from each other.
/// Returns every image's boxes (class, x0, y0, x1, y1) in pixels.
pub fn write_box_dataset(root: &Path, n: usize, seed: u64) -> Vec<Vec<(usize, [f32; 4])>> {
    let (w, h) = (192u32, 144u32);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move |m: u32| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % m as u64) as u32
    };
    std::fs::create_dir_all(root.join("images")).unwrap();
    std::fs::create_dir_all(root.join("labels")).unwrap();
    std::fs::write(root.join("data.yaml"), "names:\n  0: disc\n  1: square\n").unwrap();
    let mut all = Vec::new();
    for i in 0..n {
        let (gx, gy) = (rnd(80) as f32, rnd(80) as f32);
        let mut img = RgbImage::from_fn(w, h, |px, py| {
            let t = (px as f32 / w as f32 * gx + py as f32 / h as f32 * gy) as u8;
            Rgb([90 + t, 110 + t / 2, 70 + t / 3])
        });
        let mut boxes: Vec<(usize, [f32; 4])> = Vec::new();
        for _ in 0..1 + rnd(3) {
            let side = 28 + rnd(45);
            let (x0, y0) = (rnd(w - side), rnd(h - side));
            let b = [x0 as f32, y0 as f32, (x0 + side) as f32, (y0 + side) as f32];
            let apart = boxes.iter().all(|(_, o)| {
                b[0] > o[2] + 4.0 || o[0] > b[2] + 4.0 || b[1] > o[3] + 4.0 || o[1] > b[3] + 4.0
            });
            if !apart {
                continue;
            }
            let class = rnd(2) as usize;
            let r = side as f32 / 2.0;
            let (cx, cy) = (x0 as f32 + r, y0 as f32 + r);
            for py in y0..y0 + side {
                for px in x0..x0 + side {
                    let (dx, dy) = (px as f32 + 0.5 - cx, py as f32 + 0.5 - cy);
                    if class == 1 || dx * dx + dy * dy <= r * r {
                        let colour = if class == 0 {
                            [210, 40, 40]
                        } else {
                            [40, 60, 210]
                        };
                        img.put_pixel(px, py, Rgb(colour));
                    }
                }
            }
            boxes.push((class, b));
        }
        img.save(root.join(format!("images/{i:03}.png"))).unwrap();
        let lines: Vec<String> = boxes
            .iter()
            .map(|(c, b)| {
                let (cx, cy) = (
                    (b[0] + b[2]) / 2.0 / w as f32,
                    (b[1] + b[3]) / 2.0 / h as f32,
                );
                let (bw, bh) = ((b[2] - b[0]) / w as f32, (b[3] - b[1]) / h as f32);
                format!("{c} {cx} {cy} {bw} {bh}")
            })
            .collect();
        std::fs::write(root.join(format!("labels/{i:03}.txt")), lines.join("\n")).unwrap();
        all.push(boxes);
    }
    all
}

/// A sine of `hz` at `rate`, `n` samples.
pub fn sine(rate: u32, hz: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
        .collect()
}

/// A 16-bit mono WAV of `x` at `rate`.
pub fn write_wav(path: &Path, x: &[f32], rate: u32) {
    let data: Vec<u8> = x
        .iter()
        .flat_map(|v| ((v.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
        .collect();
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    for v in [1u16, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    for v in [2u16, 16] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    std::fs::write(path, out).unwrap();
}

/// Three classes of synthetic sounds, told apart by their spectrograms: steady tones, noise,
/// and click trains; `per_class` clips of 0.5–0.9 s each at 16 kHz.
pub fn write_sounds(root: &Path, per_class: usize, seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let rate = 16_000;
    for class in ["clicks", "noise", "tone"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..per_class {
            let n = (rate as f32 * rng.random_range(0.5..0.9)) as usize;
            let level = rng.random_range(0.2..0.8f32);
            let x: Vec<f32> = match class {
                "tone" => {
                    let hz = rng.random_range(400.0..2500.0);
                    sine(rate, hz, n).iter().map(|v| v * level).collect()
                }
                "noise" => (0..n).map(|_| rng.random_range(-level..level)).collect(),
                _ => {
                    let every = rate as usize / rng.random_range(5..30);
                    (0..n)
                        .map(|k| if k % every < 16 { level } else { 0.0 })
                        .collect()
                }
            };
            write_wav(&root.join(class).join(format!("{class}_{i}.wav")), &x, rate);
        }
    }
}

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

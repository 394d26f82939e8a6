//! Helpers shared by integration tests: tiny generated datasets.

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

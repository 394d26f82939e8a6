//! Seeded training augmentation, the options of MATLAB's `imageDataAugmenter` and
//! torchvision's usual transforms: random resized crop, reflections, rotation, translation.
//!
//! Every augmentation is one affine map from output pixels to source pixels, sampled once
//! bilinearly, so stacking options costs no extra passes.

use image::RgbImage;
use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Augmentation {
    /// Crop a random window of `scale` × the image area with aspect ratio in `ratio`.
    pub random_resized_crop: bool,
    pub scale: (f32, f32),
    pub ratio: (f32, f32),
    pub horizontal_flip: bool,
    pub vertical_flip: bool,
    /// Rotation, uniformly within ± this many degrees.
    pub rotation_degrees: f32,
    /// Translation, uniformly within ± this fraction of the output size, each axis.
    pub translation: f32,
}

impl Default for Augmentation {
    /// The common transfer-learning recipe: random resized crop and horizontal flips.
    fn default() -> Self {
        Self {
            random_resized_crop: true,
            scale: (0.25, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            horizontal_flip: true,
            vertical_flip: false,
            rotation_degrees: 0.0,
            translation: 0.0,
        }
    }
}

impl Augmentation {
    pub fn none() -> Self {
        Self {
            random_resized_crop: false,
            horizontal_flip: false,
            ..Self::default()
        }
    }

    pub fn is_active(&self) -> bool {
        self.random_resized_crop
            || self.horizontal_flip
            || self.vertical_flip
            || self.rotation_degrees != 0.0
            || self.translation != 0.0
    }
}

/// Source window (centre x, centre y, width, height) in source pixels.
type Window = (f32, f32, f32, f32);

/// The evaluation view: shorter side resized to `resize`, centre `crop` square.
fn center_window(w: f32, h: f32, resize: usize, crop: usize) -> Window {
    let side = w.min(h) * crop as f32 / resize as f32;
    (w / 2.0, h / 2.0, side, side)
}

fn random_window(w: f32, h: f32, a: &Augmentation, rng: &mut impl Rng) -> Option<Window> {
    let area = w * h;
    for _ in 0..10 {
        let target = area * rng.random_range(a.scale.0.min(a.scale.1)..=a.scale.1.max(a.scale.0));
        let (lr0, lr1) = (a.ratio.0.ln(), a.ratio.1.ln());
        let ratio = rng.random_range(lr0.min(lr1)..=lr1.max(lr0)).exp();
        let cw = (target * ratio).sqrt();
        let ch = (target / ratio).sqrt();
        if cw <= w && ch <= h && cw >= 1.0 && ch >= 1.0 {
            let x = rng.random_range(0.0..=(w - cw));
            let y = rng.random_range(0.0..=(h - ch));
            return Some((x + cw / 2.0, y + ch / 2.0, cw, ch));
        }
    }
    None
}

/// Renders an augmented `crop`×`crop` view of `img` (RGB bytes, HWC).
pub fn augmented_view(
    img: &RgbImage,
    resize: usize,
    crop: usize,
    a: &Augmentation,
    rng: &mut impl Rng,
) -> RgbImage {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let (cx, cy, ww, wh) = if a.random_resized_crop {
        random_window(w, h, a, rng).unwrap_or_else(|| center_window(w, h, resize, crop))
    } else {
        center_window(w, h, resize, crop)
    };
    let flip_x = if a.horizontal_flip && rng.random_bool(0.5) {
        -1.0
    } else {
        1.0
    };
    let flip_y = if a.vertical_flip && rng.random_bool(0.5) {
        -1.0
    } else {
        1.0
    };
    let theta = if a.rotation_degrees > 0.0 {
        rng.random_range(-a.rotation_degrees..=a.rotation_degrees)
            .to_radians()
    } else {
        0.0
    };
    let (tx, ty) = if a.translation > 0.0 {
        (
            rng.random_range(-a.translation..=a.translation),
            rng.random_range(-a.translation..=a.translation),
        )
    } else {
        (0.0, 0.0)
    };
    let (sin, cos) = theta.sin_cos();
    let mut out = RgbImage::new(crop as u32, crop as u32);
    let n = crop as f32;
    for v in 0..crop {
        for u in 0..crop {
            // Output pixel → [-0.5, 0.5]², shifted, flipped, rotated, scaled into the window.
            let px = ((u as f32 + 0.5) / n - 0.5 - tx) * flip_x;
            let py = ((v as f32 + 0.5) / n - 0.5 - ty) * flip_y;
            let rx = cos * px - sin * py;
            let ry = sin * px + cos * py;
            let sx = cx + rx * ww - 0.5;
            let sy = cy + ry * wh - 0.5;
            out.put_pixel(u as u32, v as u32, image::Rgb(bilinear(img, sx, sy)));
        }
    }
    out
}

/// Bilinear sample at a point inside the image's extent, edge pixels extended (no black
/// seeping in at the border; detection's letterbox, `detect/transform.rs`).
pub(crate) fn bilinear_clamped(img: &RgbImage, x: f32, y: f32) -> [u8; 3] {
    let x = x.clamp(0.0, img.width().saturating_sub(1) as f32);
    let y = y.clamp(0.0, img.height().saturating_sub(1) as f32);
    bilinear(img, x, y)
}

/// Bilinear sample with black outside the image.
fn bilinear(img: &RgbImage, x: f32, y: f32) -> [u8; 3] {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (x0, y0) = (x.floor() as i64, y.floor() as i64);
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let mut acc = [0.0f32; 3];
    for (dx, dy, wgt) in [
        (0, 0, (1.0 - fx) * (1.0 - fy)),
        (1, 0, fx * (1.0 - fy)),
        (0, 1, (1.0 - fx) * fy),
        (1, 1, fx * fy),
    ] {
        let (xi, yi) = (x0 + dx, y0 + dy);
        if wgt > 0.0 && xi >= 0 && yi >= 0 && xi < w && yi < h {
            let p = img.get_pixel(xi as u32, yi as u32).0;
            for c in 0..3 {
                acc[c] += wgt * p[c] as f32;
            }
        }
    }
    acc.map(|v| v.round().clamp(0.0, 255.0) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128])
        })
    }

    #[test]
    fn the_same_seed_gives_the_same_view() {
        let img = gradient(300, 200);
        let a = Augmentation {
            rotation_degrees: 15.0,
            translation: 0.1,
            vertical_flip: true,
            ..Augmentation::default()
        };
        let one = augmented_view(&img, 256, 64, &a, &mut ChaCha8Rng::seed_from_u64(7));
        let two = augmented_view(&img, 256, 64, &a, &mut ChaCha8Rng::seed_from_u64(7));
        let three = augmented_view(&img, 256, 64, &a, &mut ChaCha8Rng::seed_from_u64(8));
        assert_eq!(one, two);
        assert_ne!(one, three);
    }

    #[test]
    fn no_augmentation_is_the_centre_crop() {
        let img = gradient(200, 100);
        let view = augmented_view(
            &img,
            64,
            64,
            &Augmentation::none(),
            &mut ChaCha8Rng::seed_from_u64(0),
        );
        // Centre crop of a horizontal gradient: the left edge is at x = 50 of 200.
        let left = view.get_pixel(0, 32).0[0] as i32;
        assert!((left - 50 * 255 / 200).abs() <= 3, "left edge value {left}");
        let right = view.get_pixel(63, 32).0[0] as i32;
        assert!(
            (right - 150 * 255 / 200).abs() <= 3,
            "right edge value {right}"
        );
    }

    #[test]
    fn a_horizontal_flip_mirrors() {
        let img = gradient(100, 100);
        let a = Augmentation {
            random_resized_crop: false,
            horizontal_flip: true,
            ..Augmentation::none()
        };
        // Find a seed that flips and one that does not; their views mirror each other.
        let views: Vec<RgbImage> = (0..8)
            .map(|s| augmented_view(&img, 32, 32, &a, &mut ChaCha8Rng::seed_from_u64(s)))
            .collect();
        let plain = augmented_view(
            &img,
            32,
            32,
            &Augmentation::none(),
            &mut ChaCha8Rng::seed_from_u64(0),
        );
        let flipped = views
            .iter()
            .find(|v| **v != plain)
            .expect("some seed flips");
        assert_eq!(flipped.get_pixel(0, 5), plain.get_pixel(31, 5));
    }
}

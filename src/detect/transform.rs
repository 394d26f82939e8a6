//! An image and its boxes made into the detector's square input, the boxes moving with the
//! pixels: letterbox (keep the aspect ratio, pad with grey, as YOLO does) or stretch, and for
//! training a seeded augmentation — flips, random scale (zoom in crops, zoom out shows more
//! padding), translation, colour jitter.
//!
//! Every geometric change is one axis-aligned affine map from source pixels to output
//! pixels, so a box stays a box: its corners go through the same map as the pixels. Rotation
//! is left out on purpose: a rotated box's enclosing box is looser than the object.

use super::boxes::BBox;
use super::dataset::Object;
use image::RgbImage;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How the image meets the square input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fit {
    /// Keep the aspect ratio, centre, pad the rest with [`PAD`] grey.
    #[default]
    Letterbox,
    /// Scale each axis to the side (objects change shape).
    Stretch,
}

/// The letterbox padding colour (YOLO's 114 grey).
pub const PAD: u8 = 114;

/// A box smaller than this (pixels, either side) after the transform is dropped.
pub const MIN_SIDE: f32 = 2.0;

/// Of a box cut by the frame, at least this share of its area must remain, or it is dropped
/// (an object seen at its edge only is not one to find).
pub const MIN_VISIBLE: f32 = 0.25;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BoxAugmentation {
    pub horizontal_flip: bool,
    pub vertical_flip: bool,
    /// Random zoom, uniformly in this range (1 = the fitted size).
    pub scale: (f32, f32),
    /// Random shift, within ± this fraction of the side, each axis.
    pub translation: f32,
    /// Colour jitter: brightness, contrast and saturation each × a factor in 1 ± this.
    pub colour: f32,
}

impl Default for BoxAugmentation {
    /// YOLO's usual recipe, milder: flips, ±30 % scale, ±10 % shift, ±20 % colour.
    fn default() -> Self {
        Self {
            horizontal_flip: true,
            vertical_flip: false,
            scale: (0.7, 1.3),
            translation: 0.1,
            colour: 0.2,
        }
    }
}

/// The map from source pixels to output pixels: `u = sx·x + ox`, `v = sy·y + oy` (a flip is
/// a negative scale).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub sx: f32,
    pub sy: f32,
    pub ox: f32,
    pub oy: f32,
}

impl Placement {
    /// How `w × h` fits a `side` square, unaugmented.
    pub fn fit(w: u32, h: u32, side: usize, fit: Fit) -> Self {
        let (w, h, side) = (w as f32, h as f32, side as f32);
        let (sx, sy) = match fit {
            Fit::Letterbox => {
                let s = side / w.max(h);
                (s, s)
            }
            Fit::Stretch => (side / w, side / h),
        };
        Self {
            sx,
            sy,
            ox: (side - sx * w) / 2.0,
            oy: (side - sy * h) / 2.0,
        }
    }

    pub fn to_output(&self, b: &BBox) -> BBox {
        let (u0, u1) = (self.sx * b.x0 + self.ox, self.sx * b.x1 + self.ox);
        let (v0, v1) = (self.sy * b.y0 + self.oy, self.sy * b.y1 + self.oy);
        BBox::new(u0.min(u1), v0.min(v1), u0.max(u1), v0.max(v1))
    }

    /// A box found in the output, in the source image's pixels (for results and export).
    pub fn to_source(&self, b: &BBox) -> BBox {
        let (x0, x1) = ((b.x0 - self.ox) / self.sx, (b.x1 - self.ox) / self.sx);
        let (y0, y1) = ((b.y0 - self.oy) / self.sy, (b.y1 - self.oy) / self.sy);
        BBox::new(x0.min(x1), y0.min(y1), x0.max(x1), y0.max(y1))
    }
}

/// The network's input image and the boxes in its pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub image: RgbImage,
    pub objects: Vec<Object>,
    pub placement: Placement,
}

/// The evaluation view (no augmentation).
pub fn fitted(img: &RgbImage, objects: &[Object], side: usize, fit: Fit) -> View {
    let p = Placement::fit(img.width(), img.height(), side, fit);
    render(img, objects, side, p, [1.0; 3])
}

/// A training view: the fitted placement, then a random flip, zoom and shift about the
/// centre, and colour jitter.
pub fn augmented(
    img: &RgbImage,
    objects: &[Object],
    side: usize,
    fit: Fit,
    a: &BoxAugmentation,
    rng: &mut impl Rng,
) -> View {
    let mut p = Placement::fit(img.width(), img.height(), side, fit);
    let c = side as f32 / 2.0;
    let (lo, hi) = (a.scale.0.min(a.scale.1), a.scale.0.max(a.scale.1));
    let k = if hi > lo {
        rng.random_range(lo..=hi)
    } else {
        lo
    };
    let flip_x = a.horizontal_flip && rng.random_bool(0.5);
    let flip_y = a.vertical_flip && rng.random_bool(0.5);
    let t = a.translation.abs();
    let (tx, ty) = if t > 0.0 {
        (
            rng.random_range(-t..=t) * side as f32,
            rng.random_range(-t..=t) * side as f32,
        )
    } else {
        (0.0, 0.0)
    };
    // About the centre: u ↦ c + k·(u − c) (±) + t.
    let about = |s: f32, o: f32, flip: bool, shift: f32| {
        let (s, o) = (k * s, c + k * (o - c));
        if flip {
            (-s, 2.0 * c - o + shift)
        } else {
            (s, o + shift)
        }
    };
    (p.sx, p.ox) = about(p.sx, p.ox, flip_x, tx);
    (p.sy, p.oy) = about(p.sy, p.oy, flip_y, ty);
    let j = a.colour.abs();
    let mut factor = || {
        if j > 0.0 {
            rng.random_range(1.0 - j..=1.0 + j)
        } else {
            1.0
        }
    };
    let colour = [factor(), factor(), factor()];
    render(img, objects, side, p, colour)
}

/// Samples the output through the placement's inverse and moves the boxes through it.
/// `colour`: brightness, contrast, saturation factors.
fn render(img: &RgbImage, objects: &[Object], side: usize, p: Placement, colour: [f32; 3]) -> View {
    let mut out = RgbImage::from_pixel(side as u32, side as u32, image::Rgb([PAD; 3]));
    let (w, h) = (img.width() as f32, img.height() as f32);
    for v in 0..side {
        let y = ((v as f32 + 0.5) - p.oy) / p.sy - 0.5;
        if y < -0.5 || y > h - 0.5 {
            continue;
        }
        for u in 0..side {
            let x = ((u as f32 + 0.5) - p.ox) / p.sx - 0.5;
            if x < -0.5 || x > w - 0.5 {
                continue;
            }
            let px = crate::data::augment::bilinear_clamped(img, x, y);
            out.put_pixel(u as u32, v as u32, image::Rgb(jitter(px, colour)));
        }
    }
    let frame = side as f32;
    let objects = objects
        .iter()
        .filter_map(|o| {
            let moved = p.to_output(&o.bbox);
            let seen = moved.clipped(frame, frame);
            let kept = seen.width() >= MIN_SIDE
                && seen.height() >= MIN_SIDE
                && seen.area() >= MIN_VISIBLE * moved.area();
            kept.then_some(Object { bbox: seen, ..*o })
        })
        .collect();
    View {
        image: out,
        objects,
        placement: p,
    }
}

fn jitter(px: [u8; 3], [brightness, contrast, saturation]: [f32; 3]) -> [u8; 3] {
    if brightness == 1.0 && contrast == 1.0 && saturation == 1.0 {
        return px;
    }
    let f = px.map(|c| c as f32 * brightness);
    let grey = 0.299 * f[0] + 0.587 * f[1] + 0.114 * f[2];
    f.map(|c| {
        let c = grey + (c - grey) * saturation;
        let c = 127.5 + (c - 127.5) * contrast;
        c.round().clamp(0.0, 255.0) as u8
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A dark image with a red box where `b` is.
    fn scene(w: u32, h: u32, b: BBox) -> (RgbImage, Vec<Object>) {
        let img = RgbImage::from_fn(w, h, |x, y| {
            let (x, y) = (x as f32 + 0.5, y as f32 + 0.5);
            if x > b.x0 && x < b.x1 && y > b.y0 && y < b.y1 {
                image::Rgb([230, 20, 20])
            } else {
                image::Rgb([10, 40, 10])
            }
        });
        let objects = vec![Object {
            class: 0,
            bbox: b,
            difficult: false,
        }];
        (img, objects)
    }

    fn red(p: &image::Rgb<u8>) -> bool {
        p.0[0] > 120 && p.0[1] < 90
    }

    #[test]
    fn a_letterbox_keeps_the_aspect_and_maps_boxes_both_ways() {
        let b = BBox::new(20.0, 10.0, 60.0, 50.0);
        let (img, objects) = scene(200, 100, b);
        let v = fitted(&img, &objects, 64, Fit::Letterbox);
        // 200×100 → 64×32, centred: rows 16..48 hold the image, the rest is padding.
        assert_eq!(
            v.placement,
            Placement {
                sx: 0.32,
                sy: 0.32,
                ox: 0.0,
                oy: 16.0
            }
        );
        assert_eq!(v.image.get_pixel(5, 3).0, [PAD; 3]);
        assert_eq!(v.image.get_pixel(5, 60).0, [PAD; 3]);
        let o = v.objects[0].bbox;
        for (g, w) in [(o.x0, 6.4), (o.y0, 19.2), (o.x1, 19.2), (o.y1, 32.0)] {
            assert!((g - w).abs() < 1e-4, "{o:?}");
        }
        let back = v.placement.to_source(&o);
        assert!((back.x0 - b.x0).abs() < 1e-3 && (back.y1 - b.y1).abs() < 1e-3);
        assert!(red(v.image.get_pixel(12, 25)));
        let s = fitted(&img, &objects, 64, Fit::Stretch);
        assert_eq!((s.placement.sx, s.placement.sy), (0.32, 0.64));
    }

    /// Over many seeds, the augmented box lies on the red pixels: red inside it, not red just
    /// outside it (where the frame has pixels there); a flip happens about half the time.
    #[test]
    fn augmented_boxes_move_with_their_pixels() {
        let (img, objects) = scene(120, 90, BBox::new(30.0, 20.0, 70.0, 60.0));
        let a = BoxAugmentation {
            vertical_flip: true,
            colour: 0.0,
            ..BoxAugmentation::default()
        };
        let mut flipped = 0;
        for seed in 0..40 {
            let v = augmented(
                &img,
                &objects,
                96,
                Fit::Letterbox,
                &a,
                &mut ChaCha8Rng::seed_from_u64(seed),
            );
            flipped += (v.placement.sx < 0.0) as usize;
            let Some(o) = v.objects.first() else {
                continue;
            };
            let b = o.bbox;
            let (cx, cy) = (((b.x0 + b.x1) / 2.0) as u32, ((b.y0 + b.y1) / 2.0) as u32);
            assert!(
                red(v.image.get_pixel(cx, cy)),
                "seed {seed}: centre of {b:?}"
            );
            for (x, y) in [
                (b.x0 + 1.5, b.y0 + 1.5),
                (b.x1 - 1.5, b.y1 - 1.5),
                (b.x0 + 1.5, b.y1 - 1.5),
            ] {
                assert!(
                    red(v.image.get_pixel(x as u32, y as u32)),
                    "seed {seed}: inside {b:?}"
                );
            }
            for (x, y) in [
                (b.x0 - 2.0, cy as f32),
                (b.x1 + 2.0, cy as f32),
                (cx as f32, b.y1 + 2.0),
            ] {
                if x >= 0.0 && y >= 0.0 && x < 96.0 && y < 96.0 {
                    assert!(
                        !red(v.image.get_pixel(x as u32, y as u32)),
                        "seed {seed}: outside {b:?}"
                    );
                }
            }
        }
        assert!((8..=32).contains(&flipped), "{flipped} flips of 40");
    }

    #[test]
    fn the_same_seed_gives_the_same_view_and_colour_jitter_keeps_the_boxes() {
        let (img, objects) = scene(80, 80, BBox::new(10.0, 10.0, 40.0, 40.0));
        let a = BoxAugmentation::default();
        let one = augmented(
            &img,
            &objects,
            64,
            Fit::Letterbox,
            &a,
            &mut ChaCha8Rng::seed_from_u64(3),
        );
        let two = augmented(
            &img,
            &objects,
            64,
            Fit::Letterbox,
            &a,
            &mut ChaCha8Rng::seed_from_u64(3),
        );
        assert_eq!(one, two);
        let plain = BoxAugmentation {
            colour: 0.0,
            ..a.clone()
        };
        let three = augmented(
            &img,
            &objects,
            64,
            Fit::Letterbox,
            &plain,
            &mut ChaCha8Rng::seed_from_u64(3),
        );
        assert_eq!(one.objects, three.objects, "colour does not move boxes");
    }

    #[test]
    fn a_box_pushed_mostly_out_of_the_frame_is_dropped() {
        let (img, objects) = scene(100, 100, BBox::new(0.0, 40.0, 12.0, 60.0));
        let p = Placement {
            sx: 1.0,
            sy: 1.0,
            ox: -10.0,
            oy: 0.0,
        };
        let v = render(&img, &objects, 100, p, [1.0; 3]);
        assert!(v.objects.is_empty(), "{:?}", v.objects);
        let p = Placement { ox: -4.0, ..p };
        assert_eq!(render(&img, &objects, 100, p, [1.0; 3]).objects.len(), 1);
    }
}

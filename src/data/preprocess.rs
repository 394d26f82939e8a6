//! An image file → the network's input tensor, as the model's preprocessing says.

use crate::graph::Preprocess;
use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::U8x3;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageReader, Limits, RgbImage};
use std::path::Path;

/// Largest image Graft decodes, guarding against decompression bombs.
pub const MAX_IMAGE_PIXELS: u32 = 16_384;
pub const MAX_DECODE_BYTES: u64 = 512 << 20;

/// Decodes any format the `image` crate reads into 8-bit RGB (grayscale, alpha, 16-bit and
/// palette images included), with size limits.
pub fn load_rgb(path: &Path) -> Result<RgbImage, String> {
    let mut reader = ImageReader::open(path)
        .map_err(|e| format!("cannot open: {e}"))?
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?;
    if reader.format().is_none() {
        return Err("not an image (unknown format)".into());
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_PIXELS);
    limits.max_image_height = Some(MAX_IMAGE_PIXELS);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => format!("too large to decode safely ({e})"),
        other => format!("corrupt or unsupported image ({other})"),
    })?;
    Ok(to_rgb(img))
}

pub fn to_rgb(img: DynamicImage) -> RgbImage {
    img.to_rgb8()
}

/// Resize the shorter side to `resize`, centre-crop a `crop` square (the evaluation transform
/// of torchvision and Keras): bilinear (a triangle filter widened when shrinking, as Pillow's
/// and the image crate's), the crop resampled alone from the part of the image it covers.
pub fn resize_center_crop(img: &RgbImage, resize: usize, crop: usize) -> RgbImage {
    let (w, h) = img.dimensions();
    let side = crop as u32;
    if w == 0 || h == 0 || side == 0 {
        return RgbImage::new(side, side);
    }
    let scale = resize as f64 / w.min(h) as f64;
    let (nw, nh) = (
        ((w as f64 * scale).round() as u32).max(side),
        ((h as f64 * scale).round() as u32).max(side),
    );
    // The crop's place in the resized image, and so in the source's pixels.
    let (x, y) = ((nw - side) / 2, (nh - side) / 2);
    let (sx, sy) = (w as f64 / nw as f64, h as f64 / nh as f64);
    let (left, top) = (x as f64 * sx, y as f64 * sy);
    // Held inside the source: where the crop spans the resized side, `side · (w / side)`
    // can round past `w` (123 / 224 · 224), and the resizer refuses such a box.
    let box_ = [
        left,
        top,
        (side as f64 * sx).min(w as f64 - left),
        (side as f64 * sy).min(h as f64 - top),
    ];
    resampled(img, box_, (side, side))
}

/// `img` resized to `width × height` (bilinear, as [`resize_center_crop`]).
pub fn resize(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 || width == 0 || height == 0 {
        return RgbImage::new(width, height);
    }
    resampled(img, [0.0, 0.0, w as f64, h as f64], (width, height))
}

/// The part of `img` in `[left, top, width, height]` (source pixels, inside it) resampled
/// to `size`, bilinear. Sizes are not zero.
///
/// Typed images and `resize_typed`: the untyped `Resizer::resize` matches on the pixel type
/// at run time, so every one of its 13 pixel types' kernels (each in SSE4, AVX2 and plain
/// forms) was compiled into Graft — a fifth of the library's LLVM IR, built twice (library
/// and unit tests) in every cold build (docs/BENCHMARKS.md, "Build time").
fn resampled(img: &RgbImage, [left, top, width, height]: [f64; 4], size: (u32, u32)) -> RgbImage {
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear))
        .crop(left, top, width, height);
    let src = TypedImageRef::<U8x3>::from_buffer(img.width(), img.height(), img.as_raw())
        .expect("an RgbImage holds width × height RGB pixels");
    let mut pixels = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let mut dst = TypedImage::<U8x3>::from_buffer(size.0, size.1, &mut pixels)
            .expect("a buffer of width × height RGB pixels");
        RESIZER
            .with_borrow_mut(|r| r.resize_typed(&src, &mut dst, &options))
            .expect("non-empty sizes, a crop box inside the source");
    }
    RgbImage::from_raw(size.0, size.1, pixels).expect("width × height RGB pixels")
}

thread_local! {
    /// Each thread's resizer, whose buffers are kept from one image to the next.
    static RESIZER: std::cell::RefCell<Resizer> = std::cell::RefCell::new(Resizer::new());
}

/// HWC RGB bytes → normalised CHW floats.
pub fn normalize_chw(img: &RgbImage, p: &Preprocess) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0.0; 3 * plane];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            // Output plane `c` holds source channel `c`, or `2 - c` for BGR networks.
            let src = if p.bgr { 2 - c } else { c };
            out[c * plane + i] = (px.0[src] as f32 / 255.0 - p.mean[src]) / p.std[src];
        }
    }
    out
}

/// An image file → `[3, crop, crop]` floats for inference.
pub fn image_to_input(path: &Path, p: &Preprocess) -> Result<Vec<f32>, String> {
    let img = load_rgb(path)?;
    Ok(normalize_chw(
        &resize_center_crop(&img, p.resize, p.crop),
        p,
    ))
}

#[cfg(test)]
mod bgr_tests {
    use super::*;

    #[test]
    fn bgr_networks_get_blue_first_with_each_channels_own_statistics() {
        let img = RgbImage::from_pixel(2, 1, image::Rgb([255, 0, 204]));
        let mut p = Preprocess::imagenet(2);
        p.mean = [0.5, 0.0, 0.2];
        p.std = [0.5, 1.0, 0.2];
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5);
        // R = (1 − 0.5) / 0.5, G = 0, B = (0.8 − 0.2) / 0.2, plane by plane.
        let rgb = normalize_chw(&img, &p);
        assert!(close(&rgb, &[1.0, 1.0, 0.0, 0.0, 3.0, 3.0]), "{rgb:?}");
        p.bgr = true;
        let bgr = normalize_chw(&img, &p);
        assert!(close(&bgr, &[3.0, 3.0, 0.0, 0.0, 1.0, 1.0]), "{bgr:?}");
    }
}

#[cfg(test)]
mod resize_tests {
    use super::*;

    /// Against the image crate's resize of the whole picture then the crop (what this did
    /// before): within one level in every channel, for an enlarged picture, a shrunk one, a
    /// tall one, one whose short side is already the size, and a crop larger than the
    /// resize; an empty picture gives a black crop, not a panic; and a whole picture shrunk.
    #[test]
    fn centre_crop_matches_resize_then_crop() {
        // The largest difference between two pictures' values.
        let worst = |a: &RgbImage, b: &RgbImage| {
            let pairs = a.as_raw().iter().zip(b.as_raw());
            pairs.map(|(&x, &y)| x.abs_diff(y)).max().unwrap_or(0)
        };
        let picture = |w: u32, h: u32| {
            RgbImage::from_fn(w, h, |x, y| {
                let v = |s: u32| ((x * 37 + y * 91 + s * 53 + (x * y) % 17) % 256) as u8;
                image::Rgb([v(0), v(1), v(2)])
            })
        };
        for (w, h, resize, crop) in [
            (28, 28, 256, 224),
            (500, 375, 256, 224),
            (90, 300, 64, 56),
            (256, 300, 256, 224),
            (40, 30, 32, 48),
        ] {
            let img = picture(w, h);
            let got = resize_center_crop(&img, resize, crop);
            let scale = resize as f64 / w.min(h) as f64;
            let side = crop as u32;
            let (nw, nh) = (
                ((w as f64 * scale).round() as u32).max(side),
                ((h as f64 * scale).round() as u32).max(side),
            );
            let whole =
                image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle);
            let (x, y) = ((nw - side) / 2, (nh - side) / 2);
            let want = image::imageops::crop_imm(&whole, x, y, side, side).to_image();
            assert_eq!(got.dimensions(), (side, side));
            let off = worst(&got, &want);
            assert!(off <= 1, "{w}x{h} -> {resize} / {crop}: off by {off}");
        }
        let empty = resize_center_crop(&RgbImage::new(0, 0), 256, 224);
        assert_eq!(empty.dimensions(), (224, 224));
        // A crop as wide as the resized picture: its box ends at the source's edge, where
        // rounding must not carry it past (the resizer refuses such a box).
        for w in 20..700 {
            for (resize, crop) in [(224, 224), (64, 56), (32, 48)] {
                let got = resize_center_crop(&RgbImage::new(w, 701), resize, crop);
                assert_eq!(got.dimensions(), (crop as u32, crop as u32));
            }
        }
        // The whole picture resized (augmentation's shrink of large photos).
        let img = picture(500, 375);
        let got = resize(&img, 201, 150);
        let want = image::imageops::resize(&img, 201, 150, image::imageops::FilterType::Triangle);
        assert_eq!(got.dimensions(), (201, 150));
        let off = worst(&got, &want);
        assert!(off <= 1, "resize off by {off}");
    }
}

//! An image file → the network's input tensor, as the model's preprocessing says.

use crate::graph::Preprocess;
use image::imageops::FilterType;
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
/// of torchvision and Keras).
pub fn resize_center_crop(img: &RgbImage, resize: usize, crop: usize) -> RgbImage {
    let (w, h) = img.dimensions();
    let scale = resize as f64 / w.min(h) as f64;
    let (nw, nh) = (
        ((w as f64 * scale).round() as u32).max(crop as u32),
        ((h as f64 * scale).round() as u32).max(crop as u32),
    );
    let resized = image::imageops::resize(img, nw, nh, FilterType::Triangle);
    let (x, y) = ((nw - crop as u32) / 2, (nh - crop as u32) / 2);
    image::imageops::crop_imm(&resized, x, y, crop as u32, crop as u32).to_image()
}

/// HWC RGB bytes → normalised CHW floats.
pub fn normalize_chw(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0.0; 3 * plane];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (p.0[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    out
}

/// An image file → `[3, crop, crop]` floats for inference.
pub fn image_to_input(path: &Path, p: &Preprocess) -> Result<Vec<f32>, String> {
    let img = load_rgb(path)?;
    Ok(normalize_chw(
        &resize_center_crop(&img, p.resize, p.crop),
        p.mean,
        p.std,
    ))
}

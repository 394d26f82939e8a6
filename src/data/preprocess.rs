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

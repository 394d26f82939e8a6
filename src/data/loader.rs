//! Batches of decoded, transformed images, made on worker threads ahead of training.

use super::augment::{Augmentation, augmented_view};
use super::folder::{Sample, Skipped};
use super::preprocess::{load_rgb, normalize_chw, resize, resize_center_crop};
use crate::audio::clips::SoundFraming;
use crate::detect::dataset::Object;
use crate::detect::transform::{self as boxes, BoxAugmentation, Fit, Placement};
use crate::graph::Preprocess;
use crossbeam_channel::{Receiver, bounded};
use image::RgbImage;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How an image file becomes network input.
#[derive(Clone, Debug, PartialEq)]
pub struct Transform {
    pub preprocess: Preprocess,
    /// Input channels of the network: 3 (RGB) or 1 (luma).
    pub channels: usize,
    /// `None` for evaluation (resize + centre crop).
    pub augment: Option<Augmentation>,
    /// A detector's framing: the whole image into the square input with its boxes
    /// (`preprocess.crop` is the side); replaces resize, crop and `augment`.
    pub boxes: Option<BoxFraming>,
    /// A sound dataset's: each sample is a clip whose spectrogram fills the square input
    /// (`preprocess.crop` is the side); replaces everything about images.
    pub sound: Option<SoundFraming>,
}

/// How a box dataset's images meet a detector's input.
#[derive(Clone, Debug, PartialEq)]
pub struct BoxFraming {
    pub fit: Fit,
    /// `None` for evaluation.
    pub augment: Option<BoxAugmentation>,
}

/// An image's network values, and its boxes as framed (box datasets).
pub type Loaded = (Vec<f32>, Option<Framed>);

/// An image's boxes as the network saw them: objects in input pixels, and the map from the
/// image's pixels to the input's (to take predictions back).
#[derive(Clone, Debug, PartialEq)]
pub struct Framed {
    pub objects: Vec<Object>,
    pub placement: Placement,
    /// The image's own width and height.
    pub size: (u32, u32),
}

impl Transform {
    pub fn values_per_image(&self) -> usize {
        self.channels * self.preprocess.crop * self.preprocess.crop
    }

    /// Applies the transform to a decoded image and its objects (a box dataset's; empty for
    /// classification). `seed` fixes the augmentation.
    pub fn apply_framed(&self, img: &RgbImage, objects: &[Object], seed: u64) -> Loaded {
        let Some(framing) = &self.boxes else {
            return (self.apply(img, seed), None);
        };
        let side = self.preprocess.crop;
        let view = match &framing.augment {
            Some(a) => boxes::augmented(
                img,
                objects,
                side,
                framing.fit,
                a,
                &mut ChaCha8Rng::seed_from_u64(seed),
            ),
            None => boxes::fitted(img, objects, side, framing.fit),
        };
        (
            self.values(&view.image),
            Some(Framed {
                objects: view.objects,
                placement: view.placement,
                size: (img.width(), img.height()),
            }),
        )
    }

    /// Applies the classification transform to a decoded image. `seed` fixes the augmentation.
    pub fn apply(&self, img: &RgbImage, seed: u64) -> Vec<f32> {
        let p = &self.preprocess;
        let view = match &self.augment {
            Some(a) if a.is_active() => {
                // Shrink big photos first so bilinear sampling does not alias.
                let small;
                let src = if img.width().min(img.height()) as usize > 2 * p.resize {
                    let s = 2.0 * p.resize as f32 / img.width().min(img.height()) as f32;
                    small = resize(
                        img,
                        (img.width() as f32 * s).round() as u32,
                        (img.height() as f32 * s).round() as u32,
                    );
                    &small
                } else {
                    img
                };
                augmented_view(
                    src,
                    p.resize,
                    p.crop,
                    a,
                    &mut ChaCha8Rng::seed_from_u64(seed),
                )
            }
            _ => resize_center_crop(img, p.resize, p.crop),
        };
        self.values(&view)
    }

    /// The network's values for a view already at the input size: normalised CHW, or luma.
    fn values(&self, view: &RgbImage) -> Vec<f32> {
        let p = &self.preprocess;
        if self.channels == 1 {
            // Luma from R, G, B in that order, whatever order a colour network would take.
            let rgb = Preprocess {
                bgr: false,
                ..p.clone()
            };
            let chw = normalize_chw(view, &rgb);
            // Luma (ITU-R 601), normalised with the first channel's statistics.
            let plane = p.crop * p.crop;
            let (r, rest) = chw.split_at(plane);
            let (g, b) = rest.split_at(plane);
            let (m, s) = (p.mean, p.std);
            return (0..plane)
                .map(|i| {
                    let (rv, gv, bv) = (r[i] * s[0] + m[0], g[i] * s[1] + m[1], b[i] * s[2] + m[2]);
                    ((0.299 * rv + 0.587 * gv + 0.114 * bv) - m[0]) / s[0]
                })
                .collect();
        }
        normalize_chw(view, p)
    }

    pub fn load(&self, sample: &Sample, seed: u64) -> Result<Loaded, String> {
        if let Some(sound) = &self.sound {
            let side = self.preprocess.crop;
            return Ok((sound.input(sample, side, self.channels, seed)?, None));
        }
        Ok(self.apply_framed(&load_rgb(&sample.path)?, &sample.objects, seed))
    }
}

/// One batch: images (`[n, C, H, W]` row-major), their labels and dataset indices, their
/// boxes as framed (a box dataset's; else empty), and the files that failed to decode (left
/// out of the batch).
#[derive(Debug)]
pub struct Batch {
    pub indices: Vec<usize>,
    pub data: Vec<f32>,
    pub labels: Vec<usize>,
    pub framed: Vec<Framed>,
    pub failed: Vec<Skipped>,
}

/// The seed of one sample's augmentation in one epoch: independent of thread timing, so a
/// resumed run sees the same images.
pub fn sample_seed(seed: u64, epoch: usize, index: usize) -> u64 {
    seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (index as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
}

#[allow(clippy::too_many_arguments)]
/// Decodes batches of `order` on the rayon pool, `prefetch` batches ahead of the consumer.
/// Dropping the receiver or setting `cancel` stops the producer.
pub fn spawn_batches(
    samples: Arc<Vec<Sample>>,
    order: Vec<usize>,
    batch_size: usize,
    transform: Arc<Transform>,
    seed: u64,
    epoch: usize,
    prefetch: usize,
    cancel: Arc<AtomicBool>,
) -> Result<Receiver<Batch>, String> {
    let (tx, rx) = bounded(prefetch.max(1));
    std::thread::Builder::new()
        .name("graft-loader".into())
        .spawn(move || {
            for chunk in order.chunks(batch_size.max(1)) {
                if cancel.load(Ordering::Relaxed) {
                    return;
                }
                let decoded: Vec<(usize, Result<Loaded, String>)> = chunk
                    .par_iter()
                    .map(|&i| (i, transform.load(&samples[i], sample_seed(seed, epoch, i))))
                    .collect();
                let mut batch = Batch {
                    indices: Vec::with_capacity(chunk.len()),
                    data: Vec::with_capacity(chunk.len() * transform.values_per_image()),
                    labels: Vec::with_capacity(chunk.len()),
                    framed: Vec::new(),
                    failed: Vec::new(),
                };
                for (i, r) in decoded {
                    match r {
                        Ok((x, framed)) => {
                            batch.indices.push(i);
                            batch.data.extend(x);
                            batch.labels.push(samples[i].label);
                            batch.framed.extend(framed);
                        }
                        Err(reason) => batch.failed.push(Skipped {
                            path: samples[i].path.clone(),
                            reason,
                        }),
                    }
                }
                if tx.send(batch).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| format!("cannot start the image loader: {e}"))?;
    Ok(rx)
}

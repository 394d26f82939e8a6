//! Running a detector on images: letterbox into the input, the network's preprocessing,
//! one forward pass, decoding, suppression, and the boxes mapped back into the image's own
//! pixels (clipped to it; a box left with no area is dropped). Used by `graft detect`, and
//! by the window and evaluation as they arrive.

use super::boxes::BBox;
use super::transform::{self, Fit};
use super::yolo::{Predicted, Suppression, decode, image_maps, suppress};
use crate::engine::Model;
use crate::graph::Network;
use crate::graph::edit::DetectionSpec;
use crate::weights::Store;
use image::RgbImage;

pub struct Detector {
    model: Model,
    spec: DetectionSpec,
    preprocess: crate::graph::Preprocess,
    side: usize,
    pub fit: Fit,
    pub suppression: Suppression,
}

impl Detector {
    /// A detector from a network with a detection head (its metadata says what it predicts).
    pub fn new(
        net: &Network,
        store: &Store,
        device: &burn::tensor::Device,
    ) -> Result<Self, String> {
        let spec = DetectionSpec::of(net).ok_or(
            "the network has no detection head (no graft.detection metadata); add one first",
        )?;
        let side = match net.input.shape[..] {
            [_, 3, h, w] if h == w => h,
            ref s => return Err(format!("a detector takes square N×3×S×S images, not {s:?}")),
        };
        Ok(Self {
            model: Model::build(net, store, device).map_err(|e| e.to_string())?,
            fit: spec.fit,
            spec,
            preprocess: net.preprocess(),
            side,
            suppression: Suppression::default(),
        })
    }

    pub fn spec(&self) -> &DetectionSpec {
        &self.spec
    }

    /// The boxes found in `img`, in its pixels, best first.
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<Predicted>, String> {
        let view = transform::fitted(img, &[], self.side, self.fit);
        let data = crate::data::preprocess::normalize_chw(&view.image, &self.preprocess);
        let outputs = self
            .model
            .infer(&[1, 3, self.side, self.side], data)
            .map_err(|e| e.to_string())?;
        let found = decode(
            &image_maps(&outputs, 0)?,
            &self.spec,
            self.suppression.score_threshold,
        );
        let (iw, ih) = (img.width() as f32, img.height() as f32);
        let mapped = found
            .into_iter()
            .filter_map(|p| {
                let b: BBox = view.placement.to_source(&p.bbox).clipped(iw, ih);
                (b.area() > 0.0).then_some(Predicted { bbox: b, ..p })
            })
            .collect();
        Ok(suppress(mapped, &self.suppression))
    }
}

/// A class's colour: the same in drawn images and in the window.
pub fn class_rgb(class: usize) -> [u8; 3] {
    const COLOURS: [[u8; 3]; 6] = [
        [230, 25, 75],
        [60, 180, 75],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
    ];
    COLOURS[class % COLOURS.len()]
}

/// Draws each box's outline (2 px, a colour per class) onto `img`.
pub fn draw(img: &mut RgbImage, boxes: &[Predicted]) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    for p in boxes {
        let c = image::Rgb(class_rgb(p.class));
        let (x0, y0) = (p.bbox.x0 as i64, p.bbox.y0 as i64);
        let (x1, y1) = ((p.bbox.x1 as i64).min(w - 1), (p.bbox.y1 as i64).min(h - 1));
        let mut put = |x: i64, y: i64| {
            if (0..w).contains(&x) && (0..h).contains(&y) {
                img.put_pixel(x as u32, y as u32, c);
            }
        };
        for t in 0..2 {
            for x in x0..=x1 {
                put(x, y0 + t);
                put(x, y1 - t);
            }
            for y in y0..=y1 {
                put(x0 + t, y);
                put(x1 - t, y);
            }
        }
    }
}

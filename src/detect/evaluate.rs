//! A detector's results on labelled images: each image's prediction map decoded, suppressed
//! and taken back into the image's own pixels, matched against its true boxes by the two
//! reference AP definitions ([`ap`](super::ap)), and each image's mistakes counted so the
//! worst can be shown. Validation during training, the final evaluation of a run and
//! `graft evaluate` on a box dataset all collect through [`Collector`].

use super::ap::{self, Detection, Report, Truth};
use super::dataset::Object;
use super::yolo::{MapRef, Predicted, Suppression, decode, suppress};
use crate::data::loader::Framed;
use crate::graph::edit::DetectionSpec;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What AP is computed from: every box down to a score of 0.001, at most COCO's 100 per image
/// (the reference evaluations' settings; a higher threshold cuts the tail of the PR curve).
pub const AP_SUPPRESSION: Suppression = Suppression {
    score_threshold: 0.001,
    iou_threshold: 0.45,
    max_detections: ap::COCO_MAX_DETECTIONS,
};

/// The score a box needs to count as "found" when an image's mistakes are counted, and the
/// lowest score kept per image for showing (the window's threshold slider goes no lower).
pub const SHOWN_SCORE: f32 = 0.25;
pub const KEPT_SCORE: f32 = 0.05;

/// One image's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageResult {
    pub path: PathBuf,
    /// True boxes, in the image's pixels.
    pub truths: Vec<Object>,
    /// Predicted boxes scoring at least [`KEPT_SCORE`], in the image's pixels, best first.
    pub predicted: Vec<Predicted>,
    /// Missed true boxes plus false boxes at [`SHOWN_SCORE`] and IoU 0.5: the worst
    /// images have the most.
    pub mistakes: usize,
}

/// A detector's results on a set of images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetectionEvaluation {
    pub classes: Vec<String>,
    /// Per-class AP (VOC at 0.5 and COCO over 0.5…0.95), PR curves, the means.
    pub report: Report,
    pub images: Vec<ImageResult>,
    /// Mean detection loss per image (NaN where no loss was computed).
    pub loss: f64,
}

impl DetectionEvaluation {
    /// The images with the most mistakes first (ties: more true boxes first).
    pub fn worst(&self, n: usize) -> Vec<&ImageResult> {
        let mut v: Vec<&ImageResult> = self.images.iter().filter(|i| i.mistakes > 0).collect();
        v.sort_by(|a, b| {
            b.mistakes
                .cmp(&a.mistakes)
                .then(b.truths.len().cmp(&a.truths.len()))
        });
        v.truncate(n);
        v
    }
}

/// Gathers images' predictions and truths, then computes the report.
pub struct Collector {
    spec: DetectionSpec,
    detections: Vec<Detection>,
    truths: Vec<Truth>,
    images: Vec<ImageResult>,
    loss_sum: f64,
    loss_images: usize,
}

impl Collector {
    pub fn new(spec: DetectionSpec) -> Self {
        Self {
            spec,
            detections: Vec::new(),
            truths: Vec::new(),
            images: Vec::new(),
            loss_sum: 0.0,
            loss_images: 0,
        }
    }

    /// One image: its prediction maps (one per scale), how it was framed, its file and its
    /// true boxes in its own pixels.
    pub fn add(&mut self, maps: &[MapRef], framed: &Framed, path: PathBuf, truths: &[Object]) {
        let image = self.images.len();
        let p = &framed.placement;
        let (iw, ih) = (framed.size.0 as f32, framed.size.1 as f32);
        // Back in the image's pixels, clipped to it (as `Detector` does); empty boxes dropped.
        let found: Vec<Predicted> = decode(maps, &self.spec, AP_SUPPRESSION.score_threshold)
            .into_iter()
            .filter_map(|d| {
                let bbox = p.to_source(&d.bbox).clipped(iw, ih);
                (bbox.area() > 0.0).then_some(Predicted { bbox, ..d })
            })
            .collect();
        let found = suppress(found, &AP_SUPPRESSION);
        self.detections.extend(found.iter().map(|d| Detection {
            image,
            class: d.class,
            score: d.score,
            bbox: d.bbox,
        }));
        self.truths.extend(truths.iter().map(|t| Truth {
            image,
            class: t.class,
            bbox: t.bbox,
            difficult: t.difficult,
        }));
        let shown: Vec<&Predicted> = found.iter().filter(|d| d.score >= SHOWN_SCORE).collect();
        let mut matched = vec![false; truths.len()];
        let mut false_boxes = 0;
        for d in &shown {
            let hit = truths
                .iter()
                .enumerate()
                .filter(|(i, t)| !matched[*i] && t.class == d.class && t.bbox.iou(&d.bbox) >= 0.5)
                .max_by(|a, b| a.1.bbox.iou(&d.bbox).total_cmp(&b.1.bbox.iou(&d.bbox)));
            match hit {
                Some((i, _)) => matched[i] = true,
                None => false_boxes += 1,
            }
        }
        let missed = truths
            .iter()
            .zip(&matched)
            .filter(|(t, m)| !**m && !t.difficult)
            .count();
        self.images.push(ImageResult {
            path,
            truths: truths.to_vec(),
            predicted: found
                .into_iter()
                .filter(|d| d.score >= KEPT_SCORE)
                .collect(),
            mistakes: missed + false_boxes,
        });
    }

    /// Adds a batch's summed loss over `images` images.
    pub fn add_loss(&mut self, sum: f64, images: usize) {
        self.loss_sum += sum;
        self.loss_images += images;
    }

    pub fn finish(self) -> DetectionEvaluation {
        DetectionEvaluation {
            report: ap::evaluate(&self.detections, &self.truths, self.spec.classes.len()),
            classes: self.spec.classes,
            images: self.images,
            loss: if self.loss_images > 0 {
                self.loss_sum / self.loss_images as f64
            } else {
                f64::NAN
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::BBox;
    use crate::detect::transform::{Fit, Placement};
    use crate::detect::yolo::{maps_saying, targets};

    /// A map that says exactly an image's (letterboxed) boxes gives AP 1 for both
    /// definitions, the boxes back in the image's pixels, and no mistakes; a map that says
    /// nothing gives AP 0 and counts each box as missed.
    #[test]
    fn a_perfect_map_scores_one_and_an_empty_one_zero() {
        let spec = DetectionSpec {
            classes: vec!["cat".into(), "dog".into()],
            scales: vec![crate::graph::edit::Scale {
                stride: 16,
                anchors: vec![(20.0, 20.0), (60.0, 40.0)],
            }],
            fit: Default::default(),
        };
        // A 128×64 image letterboxed into 64×64: scale 0.5, 16 px bands top and bottom.
        let placement = Placement::fit(128, 64, 64, Fit::Letterbox);
        let truths = vec![
            Object {
                class: 0,
                bbox: BBox::new(10.0, 10.0, 50.0, 50.0),
                difficult: false,
            },
            Object {
                class: 1,
                bbox: BBox::new(60.0, 4.0, 120.0, 60.0),
                difficult: false,
            },
        ];
        let framed = Framed {
            objects: truths
                .iter()
                .map(|o| Object {
                    bbox: placement.to_output(&o.bbox),
                    ..*o
                })
                .collect(),
            placement,
            size: (128, 64),
        };
        let size = (4, 4);
        let ts = targets(&framed.objects, &spec, &[size]);
        let map = maps_saying(&spec, &ts, &[size]).remove(0);
        let mut c = Collector::new(spec.clone());
        c.add(&[(&map, size)], &framed, "a.png".into(), &truths);
        let e = c.finish();
        assert!((e.report.map50 - 1.0).abs() < 1e-6, "{:?}", e.report);
        assert!(e.report.map > 0.99, "{:?}", e.report);
        assert_eq!(e.images[0].mistakes, 0);
        for t in &truths {
            assert!(
                e.images[0]
                    .predicted
                    .iter()
                    .any(|p| p.class == t.class && p.bbox.iou(&t.bbox) > 0.999),
                "{:?} not found in {:?}",
                t,
                e.images[0].predicted
            );
        }

        let mut c = Collector::new(spec);
        let nothing = vec![-12.0; map.len()];
        c.add(&[(&nothing, size)], &framed, "a.png".into(), &truths);
        let e = c.finish();
        assert_eq!(e.report.map50, 0.0);
        assert_eq!(e.images[0].mistakes, 2);
        assert_eq!(e.worst(5).len(), 1);
    }
}

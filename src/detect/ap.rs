//! Average precision, by the two reference definitions detection results are compared with:
//! - **VOC** (`voc_eval.py`, 2010 onwards): detections in score order each take the ground
//!   truth box they overlap most; a hit needs IoU > threshold and that box still unmatched
//!   ("difficult" boxes neither count nor penalise); AP is the area under the precision
//!   envelope at every recall step ("all points"). Graft's **mAP@0.5**.
//! - **COCO** (`cocoeval.py`): each detection takes the best *unmatched* box with IoU ≥
//!   threshold, at most 100 detections per image; AP is the precision envelope averaged at
//!   the 101 recalls 0, 0.01, …, 1. Graft's **mAP@[.5:.95]** averages it over the IoU
//!   thresholds 0.5, 0.55, …, 0.95. Classes without ground truth are left out of the means.

use super::boxes::BBox;
use serde::{Deserialize, Serialize};

/// A predicted box.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    pub image: usize,
    pub class: usize,
    pub score: f32,
    pub bbox: BBox,
}

/// A ground-truth box.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Truth {
    pub image: usize,
    pub class: usize,
    pub bbox: BBox,
    /// VOC's "difficult": neither a miss when not found nor a hit when found.
    pub difficult: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Definition {
    Voc,
    Coco,
}

/// COCO's limit of detections per image.
pub const COCO_MAX_DETECTIONS: usize = 100;

/// Precision and recall after each detection of one class, in score order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    pub precision: Vec<f32>,
    pub recall: Vec<f32>,
    /// Ground-truth boxes that count.
    pub truths: usize,
}

/// The precision–recall curve of `class` at an IoU threshold.
pub fn curve(
    detections: &[Detection],
    truths: &[Truth],
    class: usize,
    iou: f32,
    definition: Definition,
) -> Curve {
    let gts: Vec<&Truth> = truths.iter().filter(|t| t.class == class).collect();
    let counted = gts.iter().filter(|t| !t.difficult).count();
    let mut dets: Vec<&Detection> = detections.iter().filter(|d| d.class == class).collect();
    // Stable: equal scores keep their order, as numpy's mergesort does in both references.
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    if definition == Definition::Coco {
        let mut per_image = std::collections::HashMap::<usize, usize>::new();
        dets.retain(|d| {
            let n = per_image.entry(d.image).or_default();
            *n += 1;
            *n <= COCO_MAX_DETECTIONS
        });
    }
    let mut matched = vec![false; gts.len()];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut out = Curve {
        truths: counted,
        ..Curve::default()
    };
    for d in dets {
        let same_image = || (0..gts.len()).filter(|&j| gts[j].image == d.image);
        let hit = match definition {
            Definition::Voc => {
                // The most-overlapping box, matched or not.
                let best = same_image().map(|j| (j, d.bbox.iou(&gts[j].bbox))).fold(
                    None,
                    |b: Option<(usize, f32)>, (j, o)| match b {
                        Some((_, bo)) if bo >= o => b,
                        _ => Some((j, o)),
                    },
                );
                match best {
                    Some((j, o)) if o > iou => {
                        if gts[j].difficult {
                            continue;
                        }
                        !std::mem::replace(&mut matched[j], true)
                    }
                    _ => false,
                }
            }
            Definition::Coco => {
                // The best unmatched counted box at or above the threshold (ties: the later
                // box, as cocoeval's loop); a box to ignore only when no counted box
                // qualifies, and then the detection is ignored too.
                let floor = iou.min(1.0 - 1e-10);
                let best = |difficult: bool| {
                    same_image()
                        .filter(|&j| !matched[j] && gts[j].difficult == difficult)
                        .map(|j| (j, d.bbox.iou(&gts[j].bbox)))
                        .fold(None, |b: Option<(usize, f32)>, (j, o)| {
                            if o >= b.map_or(floor, |b| b.1) {
                                Some((j, o))
                            } else {
                                b
                            }
                        })
                };
                match best(false).or_else(|| best(true)) {
                    Some((j, _)) => {
                        matched[j] = true;
                        if gts[j].difficult {
                            continue;
                        }
                        true
                    }
                    None => false,
                }
            }
        };
        if hit {
            tp += 1;
        } else {
            fp += 1;
        }
        out.precision.push(tp as f32 / (tp + fp) as f32);
        out.recall.push(if counted > 0 {
            tp as f32 / counted as f32
        } else {
            0.0
        });
    }
    out
}

/// The area under the curve by `definition`'s interpolation; `None` without ground truth.
pub fn average_precision(curve: &Curve, definition: Definition) -> Option<f32> {
    if curve.truths == 0 {
        return None;
    }
    // The precision envelope: the best precision at this recall or any higher one.
    let mut envelope = curve.precision.clone();
    for i in (0..envelope.len().saturating_sub(1)).rev() {
        envelope[i] = envelope[i].max(envelope[i + 1]);
    }
    Some(match definition {
        Definition::Voc => {
            let mut ap = 0.0f64;
            let mut last_recall = 0.0f32;
            for (r, p) in curve.recall.iter().zip(&envelope) {
                ap += f64::from(r - last_recall) * f64::from(*p);
                last_recall = *r;
            }
            ap as f32
        }
        Definition::Coco => {
            let total: f64 = (0..=100)
                .map(|k| {
                    let r = k as f32 / 100.0;
                    // The first point whose recall reaches r (numpy searchsorted, left).
                    let i = curve.recall.partition_point(|&x| x < r);
                    envelope.get(i).copied().map_or(0.0, f64::from)
                })
                .sum();
            (total / 101.0) as f32
        }
    })
}

/// One class's results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassAp {
    pub class: usize,
    pub truths: usize,
    /// VOC all-points AP at IoU 0.5.
    pub ap50: Option<f32>,
    /// COCO AP averaged over IoU 0.5 … 0.95.
    pub ap: Option<f32>,
    /// The VOC curve at IoU 0.5, for plotting.
    pub curve: Curve,
}

/// Every class's AP and their means.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub classes: Vec<ClassAp>,
    /// Mean VOC AP at IoU 0.5 over classes with ground truth.
    pub map50: f32,
    /// Mean COCO AP over IoU 0.5 … 0.95 and over classes with ground truth.
    pub map: f32,
}

/// The IoU thresholds of COCO's mAP: 0.5, 0.55, …, 0.95.
pub fn coco_thresholds() -> impl Iterator<Item = f32> {
    (0..10).map(|k| 0.5 + 0.05 * k as f32)
}

pub fn evaluate(detections: &[Detection], truths: &[Truth], classes: usize) -> Report {
    let per_class: Vec<ClassAp> = (0..classes)
        .map(|c| {
            let voc = curve(detections, truths, c, 0.5, Definition::Voc);
            let coco: Vec<f32> = coco_thresholds()
                .filter_map(|t| {
                    average_precision(
                        &curve(detections, truths, c, t, Definition::Coco),
                        Definition::Coco,
                    )
                })
                .collect();
            ClassAp {
                class: c,
                truths: voc.truths,
                ap50: average_precision(&voc, Definition::Voc),
                ap: (!coco.is_empty()).then(|| coco.iter().sum::<f32>() / coco.len() as f32),
                curve: voc,
            }
        })
        .collect();
    let mean = |v: Vec<f32>| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f32>() / v.len() as f32
        }
    };
    Report {
        map50: mean(per_class.iter().filter_map(|c| c.ap50).collect()),
        map: mean(per_class.iter().filter_map(|c| c.ap).collect()),
        classes: per_class,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: f32) -> BBox {
        BBox::new(x, 0.0, x + 10.0, 10.0)
    }

    fn truth(image: usize, x: f32) -> Truth {
        Truth {
            image,
            class: 0,
            bbox: b(x),
            difficult: false,
        }
    }

    fn det(image: usize, score: f32, bbox: BBox) -> Detection {
        Detection {
            image,
            class: 0,
            score,
            bbox,
        }
    }

    /// Three boxes (two images), four detections: hit, miss, hit, duplicate.
    /// Score order: d1 hit (P 1, R 1/3), d2 false (1/2, 1/3), d3 hit (2/3, 2/3),
    /// d4 duplicate of d1's box (1/2, 2/3).
    /// VOC all points: envelope at R=1/3 is 1, at 2/3 is 2/3: AP = 1/3·1 + 1/3·2/3 = 5/9.
    /// COCO 101: recalls 0…0.33 (34 points) take 1, 0.34…0.66 (33 points) take 2/3, the
    /// remaining 34 are never reached: (34 + 22) / 101 = 56/101.
    fn worked() -> (Vec<Detection>, Vec<Truth>) {
        let truths = vec![truth(0, 0.0), truth(0, 50.0), truth(1, 0.0)];
        let dets = vec![
            det(0, 0.9, b(0.0)),
            det(1, 0.8, b(30.0)),
            det(1, 0.7, b(1.0)),
            det(0, 0.6, b(0.5)),
        ];
        (dets, truths)
    }

    #[test]
    fn voc_all_points_of_a_worked_case() {
        let (dets, truths) = worked();
        let c = curve(&dets, &truths, 0, 0.5, Definition::Voc);
        assert_eq!(c.truths, 3);
        let want_p = [1.0, 0.5, 2.0 / 3.0, 0.5];
        let want_r = [1.0 / 3.0, 1.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0];
        for i in 0..4 {
            assert!((c.precision[i] - want_p[i]).abs() < 1e-6, "{c:?}");
            assert!((c.recall[i] - want_r[i]).abs() < 1e-6, "{c:?}");
        }
        let ap = average_precision(&c, Definition::Voc).unwrap();
        assert!((ap - 5.0 / 9.0).abs() < 1e-6, "{ap}");
    }

    #[test]
    fn coco_101_points_of_the_same_case() {
        let (dets, truths) = worked();
        let c = curve(&dets, &truths, 0, 0.5, Definition::Coco);
        let ap = average_precision(&c, Definition::Coco).unwrap();
        assert!((ap - 56.0 / 101.0).abs() < 1e-6, "{ap}");
    }

    /// Where the two matchings differ: a detection whose most-overlapping box is taken. VOC
    /// calls it a false positive; COCO lets it take the next box that overlaps enough.
    #[test]
    fn voc_and_coco_matching_differ_as_defined() {
        // A at x = 0, B at x = 3. d1 is B exactly (IoU with A 0.54) and takes it. d2 at x = 2
        // overlaps B most (9/11 = 0.82), A enough (8/12 = 0.67): VOC calls it a false
        // positive (its best box is taken); COCO gives it A.
        let truths = vec![truth(0, 0.0), truth(0, 3.0)];
        let dets = vec![det(0, 0.9, b(3.0)), det(0, 0.8, b(2.0))];
        let voc = curve(&dets, &truths, 0, 0.5, Definition::Voc);
        assert_eq!(voc.precision, vec![1.0, 0.5]);
        let coco = curve(&dets, &truths, 0, 0.5, Definition::Coco);
        assert_eq!(coco.precision, vec![1.0, 1.0]);
        assert_eq!(average_precision(&coco, Definition::Coco), Some(1.0));
        // VOC: R 1/2 at P 1, then nothing more: AP = 1/2.
        assert_eq!(average_precision(&voc, Definition::Voc), Some(0.5));
    }

    #[test]
    fn thresholds_are_strict_for_voc_and_inclusive_for_coco() {
        // IoU exactly 0.5: box of 10×10 against one shifted to overlap 2/3 of width…
        // x=0..10 vs x=10/3..40/3: inter 20/3·10, union 200 − 200/3 → IoU 0.5.
        let truths = vec![truth(0, 0.0)];
        let dets = vec![det(0, 0.9, b(10.0 / 3.0))];
        let o = dets[0].bbox.iou(&truths[0].bbox);
        assert!((o - 0.5).abs() < 1e-6, "{o}");
        let at = |d| {
            // Nudge to exactly the computed IoU so the comparison, not rounding, decides.
            average_precision(&curve(&dets, &truths, 0, o, d), d).unwrap()
        };
        assert_eq!(at(Definition::Voc), 0.0);
        assert_eq!(at(Definition::Coco), 1.0);
    }

    #[test]
    fn difficult_boxes_neither_count_nor_penalise_and_empty_classes_are_left_out() {
        let mut truths = vec![truth(0, 0.0), truth(0, 50.0)];
        truths[1].difficult = true;
        let dets = vec![det(0, 0.9, b(50.0)), det(0, 0.8, b(0.0))];
        let c = curve(&dets, &truths, 0, 0.5, Definition::Voc);
        assert_eq!((c.truths, c.precision.clone()), (1, vec![1.0]));
        assert_eq!(average_precision(&c, Definition::Voc), Some(1.0));
        // Class 1 has no ground truth: out of the means.
        let r = evaluate(&dets, &truths, 2);
        assert_eq!(r.classes[1].ap50, None);
        assert_eq!(r.map50, 1.0);
        assert_eq!(r.map, 1.0);
    }

    #[test]
    fn coco_keeps_a_hundred_detections_per_image() {
        let truths = vec![truth(0, 0.0)];
        let mut dets: Vec<Detection> = (0..100)
            .map(|i| det(0, 0.9, b(200.0 + i as f32 * 20.0)))
            .collect();
        dets.push(det(0, 0.1, b(0.0)));
        let coco = curve(&dets, &truths, 0, 0.5, Definition::Coco);
        assert_eq!(average_precision(&coco, Definition::Coco), Some(0.0));
        let voc = curve(&dets, &truths, 0, 0.5, Definition::Voc);
        assert!(average_precision(&voc, Definition::Voc).unwrap() > 0.0);
    }
}

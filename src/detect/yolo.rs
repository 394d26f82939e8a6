//! The prediction maps' meaning, both ways (YOLO v2/v3): per scale, per cell `(i, j)` and
//! anchor `a`, channels `tx ty tw th obj c₀ c₁ …` at `a · (5 + K)` in that scale's map.
//! - **Decoding**: centre `((σ(tx) + j) · s, (σ(ty) + i) · s)`, size `(aw · e^tw, ah · e^th)`,
//!   score `σ(obj) · σ(c_k)`; every scale's boxes together, then class-aware non-maximum
//!   suppression.
//! - **Targets**: each true box goes to the anchor whose shape fits it best (IoU of centred
//!   boxes) over all scales, at the cell of that scale holding its centre, with the
//!   `tx ty tw th` that decode back to it (YOLO v3's assignment).
//!
//! The loss compares the two on burn tensors; export writes the decoding as ONNX ops.

use super::anchors::shape_iou;
use super::boxes::BBox;
use super::dataset::Object;
use crate::graph::edit::{DetectionSpec, Scale};

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn logit(p: f32) -> f32 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

/// One predicted box in input pixels.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Predicted {
    pub class: usize,
    pub score: f32,
    pub bbox: BBox,
}

/// Non-maximum suppression and limits, shared by the window, the CLI and the export.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Suppression {
    pub score_threshold: f32,
    pub iou_threshold: f32,
    pub max_detections: usize,
}

impl Default for Suppression {
    fn default() -> Self {
        Self {
            score_threshold: 0.25,
            iou_threshold: 0.45,
            max_detections: 100,
        }
    }
}

/// One box from its raw `tx ty tw th` at cell (row, column) with an anchor, in input pixels
/// (the size's exponent is capped at 10 so a wild prediction stays finite).
pub fn decode_box(t: [f32; 4], (i, j): (usize, usize), (aw, ah): (f32, f32), stride: f32) -> BBox {
    BBox::from_centre(
        (sigmoid(t[0]) + j as f32) * stride,
        (sigmoid(t[1]) + i as f32) * stride,
        aw * t[2].min(10.0).exp(),
        ah * t[3].min(10.0).exp(),
    )
}

/// One image's prediction map at one scale: its values (`channels × h × w`, row-major, as the
/// head writes them) and `(h, w)`.
pub type MapRef<'a> = (&'a [f32], (usize, usize));

/// A batch's outputs copied to the host (`engine::to_host`).
pub type Outputs = [crate::engine::HostOutput];

/// Image `j`'s maps (one per scale) out of a batch's outputs (`[N, C, h, w]` each).
pub fn image_maps<'a>(outputs: &'a Outputs, j: usize) -> Result<Vec<MapRef<'a>>, String> {
    outputs
        .iter()
        .map(|(dims, values)| {
            let [n, c, h, w] = dims[..] else {
                return Err(format!("a detection output is {dims:?}, not N×C×H×W"));
            };
            let per = c * h * w;
            values
                .get(j * per..(j + 1) * per)
                .filter(|_| j < n)
                .map(|v| (v, (h, w)))
                .ok_or_else(|| format!("no image {j} in a batch of {n}"))
        })
        .collect()
}

/// Decodes one image's prediction maps (one per scale, as the spec lists them) into boxes
/// scoring at least `min_score`, before suppression.
pub fn decode(maps: &[MapRef], spec: &DetectionSpec, min_score: f32) -> Vec<Predicted> {
    let mut out = Vec::new();
    for (scale, &(map, (h, w))) in spec.scales.iter().zip(maps) {
        decode_scale(map, spec, scale, (h, w), min_score, &mut out);
    }
    out
}

fn decode_scale(
    map: &[f32],
    spec: &DetectionSpec,
    scale: &Scale,
    (h, w): (usize, usize),
    min_score: f32,
    out: &mut Vec<Predicted>,
) {
    let per = spec.per_anchor();
    let cells = h * w;
    if map.len() < scale.anchors.len() * per * cells {
        return;
    }
    let at = |a: usize, k: usize, cell: usize| map[(a * per + k) * cells + cell];
    let s = scale.stride as f32;
    for (a, &(aw, ah)) in scale.anchors.iter().enumerate() {
        for cell in 0..cells {
            let obj = sigmoid(at(a, 4, cell));
            if obj < min_score {
                continue;
            }
            let (best, p) = (0..spec.classes.len())
                .map(|k| (k, sigmoid(at(a, 5 + k, cell))))
                .fold((0, f32::MIN), |b, x| if x.1 > b.1 { x } else { b });
            let score = obj * p;
            if score < min_score {
                continue;
            }
            let t = [0, 1, 2, 3].map(|k| at(a, k, cell));
            out.push(Predicted {
                class: best,
                score,
                bbox: decode_box(t, (cell / w, cell % w), (aw, ah), s),
            });
        }
    }
}

/// Class-aware NMS: per class, highest score first, dropping boxes that overlap a kept one
/// by more than the threshold; at most `max_detections`, best first.
pub fn suppress(mut boxes: Vec<Predicted>, s: &Suppression) -> Vec<Predicted> {
    boxes.retain(|b| b.score >= s.score_threshold);
    boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Predicted> = Vec::new();
    for b in boxes {
        if kept.len() == s.max_detections {
            break;
        }
        let clash = kept
            .iter()
            .any(|k| k.class == b.class && k.bbox.iou(&b.bbox) > s.iou_threshold);
        if !clash {
            kept.push(b);
        }
    }
    kept
}

/// What one true box asks of the prediction maps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Target {
    /// The scale (map) and the anchor within it.
    pub scale: usize,
    pub anchor: usize,
    /// Row and column of the cell.
    pub cell: (usize, usize),
    /// The raw `tx ty tw th` that decode to the box.
    pub t: [f32; 4],
    pub class: usize,
    /// The box in input pixels (for a GIoU loss on the decoded prediction).
    pub bbox: BBox,
}

/// Targets for one image's boxes (input pixels) on maps of `sizes` (h, w), one per scale.
/// Two boxes wanting the same cell and anchor: the larger keeps it (it is the harder one to
/// find elsewhere). Ignored (difficult) boxes get no target.
pub fn targets(objects: &[Object], spec: &DetectionSpec, sizes: &[(usize, usize)]) -> Vec<Target> {
    let mut order: Vec<&Object> = objects.iter().filter(|o| !o.difficult).collect();
    order.sort_by(|a, b| b.bbox.area().total_cmp(&a.bbox.area()));
    // Every (scale, anchor) with its size, to pick the best fit over all scales.
    let anchors: Vec<(usize, usize, (f32, f32))> = spec
        .scales
        .iter()
        .zip(sizes)
        .enumerate()
        .flat_map(|(k, (s, _))| s.anchors.iter().enumerate().map(move |(a, &wh)| (k, a, wh)))
        .collect();
    let mut out: Vec<Target> = Vec::new();
    for o in order {
        let b = o.bbox;
        let (bw, bh) = (b.width().max(1e-3), b.height().max(1e-3));
        let Some(&(scale, anchor, (aw, ah))) = anchors
            .iter()
            .max_by(|p, q| shape_iou((bw, bh), p.2).total_cmp(&shape_iou((bw, bh), q.2)))
        else {
            break;
        };
        let (h, w) = sizes[scale];
        let s = spec.scales[scale].stride as f32;
        let (cx, cy) = ((b.x0 + b.x1) / 2.0, (b.y0 + b.y1) / 2.0);
        let j = ((cx / s) as usize).min(w - 1);
        let i = ((cy / s) as usize).min(h - 1);
        if out
            .iter()
            .any(|t| (t.scale, t.anchor, t.cell) == (scale, anchor, (i, j)))
        {
            continue;
        }
        out.push(Target {
            scale,
            anchor,
            cell: (i, j),
            t: [
                logit(cx / s - j as f32),
                logit(cy / s - i as f32),
                (bw / aw).ln(),
                (bh / ah).ln(),
            ],
            class: o.class,
            bbox: b,
        });
    }
    out
}

#[cfg(test)]
/// Maps (one per scale) that say exactly the targets: objectness and class logits high
/// there, low elsewhere.
pub(crate) fn maps_saying(
    spec: &DetectionSpec,
    ts: &[Target],
    sizes: &[(usize, usize)],
) -> Vec<Vec<f32>> {
    let per = spec.per_anchor();
    let mut maps: Vec<Vec<f32>> = spec
        .scales
        .iter()
        .zip(sizes)
        .map(|(s, (h, w))| vec![-12.0f32; s.anchors.len() * per * h * w])
        .collect();
    for t in ts {
        let (h, w) = sizes[t.scale];
        let (cells, cell) = (h * w, t.cell.0 * w + t.cell.1);
        let map = &mut maps[t.scale];
        for k in 0..4 {
            map[(t.anchor * per + k) * cells + cell] = t.t[k];
        }
        map[(t.anchor * per + 4) * cells + cell] = 12.0;
        map[(t.anchor * per + 5 + t.class) * cells + cell] = 12.0;
    }
    maps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DetectionSpec {
        DetectionSpec {
            classes: vec!["cat".into(), "dog".into()],
            scales: vec![Scale {
                stride: 32,
                anchors: vec![(20.0, 20.0), (60.0, 40.0)],
            }],
            fit: Default::default(),
        }
    }

    /// With two scales, a small box goes to the fine map's small anchor and a large one to the
    /// coarse map's large anchor, each at the cell of its own stride, and the two maps decode
    /// back to both boxes.
    #[test]
    fn two_scales_share_the_boxes_by_size_and_decode_together() {
        let spec = DetectionSpec {
            classes: vec!["cat".into(), "dog".into()],
            scales: vec![
                Scale {
                    stride: 16,
                    anchors: vec![(12.0, 12.0), (24.0, 20.0)],
                },
                Scale {
                    stride: 32,
                    anchors: vec![(60.0, 60.0), (110.0, 90.0)],
                },
            ],
            fit: Default::default(),
        };
        let sizes = [(8, 8), (4, 4)];
        let objects = vec![
            object(0, BBox::new(40.0, 40.0, 62.0, 60.0)),
            object(1, BBox::new(10.0, 20.0, 120.0, 110.0)),
        ];
        let ts = targets(&objects, &spec, &sizes);
        let small = ts.iter().find(|t| t.class == 0).unwrap();
        assert_eq!(
            (small.scale, small.anchor, small.cell),
            (0, 1, (3, 3)),
            "centre (51, 50) at stride 16"
        );
        let large = ts.iter().find(|t| t.class == 1).unwrap();
        assert_eq!(
            (large.scale, large.anchor, large.cell),
            (1, 1, (2, 2)),
            "centre (65, 65) at stride 32"
        );
        let maps = maps_saying(&spec, &ts, &sizes);
        let refs: Vec<MapRef> = maps.iter().zip(sizes).map(|(m, s)| (&m[..], s)).collect();
        let found = suppress(decode(&refs, &spec, 0.01), &Suppression::default());
        assert_eq!(found.len(), 2, "{found:?}");
        for o in &objects {
            let p = found.iter().find(|p| p.class == o.class).unwrap();
            assert!(p.bbox.iou(&o.bbox) > 0.999, "{:?} vs {:?}", p.bbox, o.bbox);
        }
        // A batch's outputs split per image.
        let outputs = vec![
            (
                vec![2, 14, 8, 8],
                (0..2 * 14 * 64).map(|v| v as f32).collect(),
            ),
            (
                vec![2, 14, 4, 4],
                (0..2 * 14 * 16).map(|v| v as f32).collect(),
            ),
        ];
        let second = image_maps(&outputs, 1).unwrap();
        assert_eq!(second[0].0[0], (14 * 64) as f32);
        assert_eq!(second[1].1, (4, 4));
        assert!(image_maps(&outputs, 2).is_err());
    }

    fn object(class: usize, b: BBox) -> Object {
        Object {
            class,
            bbox: b,
            difficult: false,
        }
    }

    /// A map that says exactly the targets (objectness and class logits high there, low
    /// elsewhere) decodes back to the true boxes.
    #[test]
    fn targets_decode_back_to_their_boxes() {
        let spec = spec();
        let (h, w) = (4, 5);
        let objects = vec![
            object(0, BBox::new(10.0, 12.0, 30.0, 34.0)),
            object(1, BBox::new(70.0, 60.0, 135.0, 98.0)),
        ];
        let ts = targets(&objects, &spec, &[(h, w)]);
        assert_eq!(ts.len(), 2);
        let cat = ts.iter().find(|t| t.class == 0).unwrap();
        assert_eq!((cat.anchor, cat.cell), (0, (0, 0)));
        let dog = ts.iter().find(|t| t.class == 1).unwrap();
        assert_eq!(
            (dog.anchor, dog.cell),
            (1, (2, 3)),
            "centre (102.5, 79) in cell row 2, col 3"
        );

        let maps = maps_saying(&spec, &ts, &[(h, w)]);
        let found = suppress(
            decode(&[(&maps[0], (h, w))], &spec, 0.01),
            &Suppression::default(),
        );
        assert_eq!(found.len(), 2, "{found:?}");
        for o in &objects {
            let p = found.iter().find(|p| p.class == o.class).unwrap();
            assert!(p.bbox.iou(&o.bbox) > 0.999, "{:?} vs {:?}", p.bbox, o.bbox);
            assert!(p.score > 0.99);
        }
    }

    #[test]
    fn suppression_is_per_class_and_keeps_the_best() {
        let p = |class, score, x: f32| Predicted {
            class,
            score,
            bbox: BBox::new(x, 0.0, x + 10.0, 10.0),
        };
        let boxes = vec![
            p(0, 0.9, 0.0),
            p(0, 0.8, 1.0), // IoU 9/11 with the first: gone
            p(1, 0.7, 1.0), // another class: kept
            p(0, 0.6, 20.0),
            p(0, 0.1, 40.0), // below the score threshold
        ];
        let kept = suppress(boxes, &Suppression::default());
        let got: Vec<(usize, f32)> = kept.iter().map(|k| (k.class, k.score)).collect();
        assert_eq!(got, vec![(0, 0.9), (1, 0.7), (0, 0.6)]);
        let one = suppress(
            kept,
            &Suppression {
                max_detections: 1,
                ..Suppression::default()
            },
        );
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn two_boxes_for_one_cell_and_anchor_keep_the_larger_and_difficult_boxes_none() {
        let spec = spec();
        let mut objects = vec![
            object(0, BBox::new(2.0, 2.0, 20.0, 20.0)),
            object(1, BBox::new(0.0, 0.0, 24.0, 24.0)),
            object(0, BBox::new(100.0, 100.0, 110.0, 110.0)),
        ];
        objects[2].difficult = true;
        let ts = targets(&objects, &spec, &[(4, 4)]);
        assert_eq!(ts.len(), 1);
        assert_eq!(ts[0].class, 1);
    }
}

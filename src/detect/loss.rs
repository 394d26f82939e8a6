//! The detection loss on burn tensors (autodiff flows through it): for a batch's prediction
//! maps `[B, A·(5+K), H, W]` (one per scale) and each image's [`Target`]s,
//! - **box**: 1 − GIoU between decoded predictions and true boxes, at the assigned cells;
//! - **objectness**: binary cross-entropy, 1 at assigned cells, 0 elsewhere — except cells
//!   whose prediction already overlaps some true box by IoU > [`IGNORE_IOU`] (YOLO v3's
//!   rule: a good box the assignment did not pick is not punished);
//! - **class**: binary cross-entropy per class at the assigned cells.
//!
//! Box and class terms are means over the assigned cells of every scale; objectness is summed
//! over the counted cells of an image (every scale) and averaged over images; each is weighted
//! by [`LossWeights`]. The targets and masks are built on the host from
//! [`yolo::targets`](super::yolo::targets); the arithmetic that needs gradients stays on the
//! device.

use super::yolo::{Target, decode_box};
use crate::graph::edit::DetectionSpec;
use burn::tensor::activation::{sigmoid, softplus};
use burn::tensor::{Device, Tensor, TensorData};

/// A prediction overlapping a true box by more than this is not taught "nothing here".
pub const IGNORE_IOU: f32 = 0.5;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossWeights {
    pub box_: f32,
    pub objectness: f32,
    pub class: f32,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self {
            box_: 1.0,
            objectness: 1.0,
            class: 1.0,
        }
    }
}

/// The loss and its terms (host values, for the plots).
pub struct Loss {
    pub total: Tensor<1>,
    pub box_: f32,
    pub objectness: f32,
    pub class: f32,
}

/// BCE with logits: softplus(x) − x·t, stable for large |x|.
fn bce(x: Tensor<3>, t: Tensor<3>) -> Tensor<3> {
    softplus(x.clone(), 1.0).sub(x.mul(t))
}

/// One scale's sums (not yet normalised): objectness BCE over counted cells, 1 − GIoU and
/// class BCE over assigned cells, and the number of assigned cells.
struct Sums {
    objectness: Tensor<1>,
    box_: Option<Tensor<1>>,
    class: Option<Tensor<1>>,
    positives: f32,
}

/// The loss of a batch's prediction maps (one `[B, A·(5+K), H, W]` tensor per scale, as the
/// spec lists them) against each image's targets over all scales.
pub fn loss(
    preds: Vec<Tensor<4>>,
    targets: &[Vec<Target>],
    spec: &DetectionSpec,
    weights: &LossWeights,
    device: &Device,
) -> Result<Loss, String> {
    if preds.len() != spec.scales.len() {
        return Err(format!(
            "{} prediction maps for a head of {} scales",
            preds.len(),
            spec.scales.len()
        ));
    }
    let b = preds.first().map_or(0, |p| p.dims()[0]);
    let sums = preds
        .into_iter()
        .enumerate()
        .map(|(scale, pred)| scale_sums(pred, scale, targets, spec, device))
        .collect::<Result<Vec<_>, String>>()?;
    let zero = || Tensor::<1>::zeros([1], device);
    let add = |a: Option<Tensor<1>>, b: Option<Tensor<1>>| match (a, b) {
        (Some(a), Some(b)) => Some(a.add(b)),
        (a, b) => a.or(b),
    };
    let (mut obj, mut box_sum, mut cls_sum, mut n_pos) = (None, None, None, 0.0f32);
    for s in sums {
        obj = add(obj, Some(s.objectness));
        box_sum = add(box_sum, s.box_);
        cls_sum = add(cls_sum, s.class);
        n_pos += s.positives;
    }
    // Objectness summed over every counted cell, per image (YOLO v3's normalisation: a mean
    // over cells would divide the few cells holding objects by the many that do not); box and
    // class terms are means over the assigned cells of every scale.
    let obj_loss = obj.unwrap_or_else(zero).div_scalar(b.max(1) as f32);
    let k = spec.classes.len();
    let box_loss = box_sum.map_or_else(zero, |t| t.div_scalar(n_pos.max(1.0)));
    let cls_loss = cls_sum.map_or_else(zero, |t| t.div_scalar(n_pos.max(1.0) * k.max(1) as f32));
    let value = |t: &Tensor<1>| -> Result<f32, String> {
        Ok(crate::engine::params::to_vec(&t.clone().detach())?[0])
    };
    let (bv, ov, cv) = (value(&box_loss)?, value(&obj_loss)?, value(&cls_loss)?);
    let total = box_loss
        .mul_scalar(weights.box_)
        .add(obj_loss.mul_scalar(weights.objectness))
        .add(cls_loss.mul_scalar(weights.class));
    Ok(Loss {
        total,
        box_: bv,
        objectness: ov,
        class: cv,
    })
}

fn scale_sums(
    pred: Tensor<4>,
    scale: usize,
    targets: &[Vec<Target>],
    spec: &DetectionSpec,
    device: &Device,
) -> Result<Sums, String> {
    let [b, channels, h, w] = pred.dims();
    let anchors = &spec.scales[scale].anchors;
    let (a, per, hw, k) = (anchors.len(), spec.per_anchor(), h * w, spec.classes.len());
    if channels != a * per || targets.len() != b {
        return Err(format!(
            "prediction map {scale} of {channels} channels for {a} anchors × {per}, {} target \
             lists for a batch of {b}",
            targets.len()
        ));
    }
    // [B·A, per, HW]: one row of channels per image and anchor.
    let p = pred.reshape([b * a, per, hw]);
    let host = crate::engine::params::to_vec(&p.clone().detach())?;
    let s = spec.scales[scale].stride as f32;

    // Host-side targets and masks, laid out like `p`'s slices.
    let mut pos = vec![0.0f32; b * a * hw];
    let mut tbox = vec![0.0f32; b * a * 4 * hw];
    let mut tcls = vec![0.0f32; b * a * k.max(1) * hw];
    let mut counted = vec![1.0f32; b * a * hw];
    let decode_host = |row: usize, cell: usize| {
        let t = [0, 1, 2, 3].map(|c| host[(row * per + c) * hw + cell]);
        decode_box(t, (cell / w, cell % w), anchors[row % a], s)
    };
    for (img, ts) in targets.iter().enumerate() {
        for row in img * a..(img + 1) * a {
            for cell in 0..hw {
                let guess = decode_host(row, cell);
                if ts.iter().any(|t| guess.iou(&t.bbox) > IGNORE_IOU) {
                    counted[row * hw + cell] = 0.0;
                }
            }
        }
        for t in ts.iter().filter(|t| t.scale == scale) {
            let row = img * a + t.anchor;
            let cell = t.cell.0 * w + t.cell.1;
            pos[row * hw + cell] = 1.0;
            counted[row * hw + cell] = 1.0;
            for (c, v) in [t.bbox.x0, t.bbox.y0, t.bbox.x1, t.bbox.y1]
                .into_iter()
                .enumerate()
            {
                tbox[(row * 4 + c) * hw + cell] = v;
            }
            if t.class < k {
                tcls[(row * k + t.class) * hw + cell] = 1.0;
            }
        }
    }
    let positives = pos.iter().sum::<f32>();
    let ten = |data: Vec<f32>, c: usize| {
        Tensor::<3>::from_data(TensorData::new(data, [b * a, c, hw]), device)
    };
    let pos_t = ten(pos, 1);
    let obj = p.clone().narrow(1, 4, 1);
    let objectness = bce(obj, pos_t.clone()).mul(ten(counted, 1)).sum();
    if positives == 0.0 {
        return Ok(Sums {
            objectness,
            box_: None,
            class: None,
            positives,
        });
    }
    // Decoded boxes, as `decode` computes them, for every cell.
    let mut grid = vec![0.0f32; 2 * hw];
    for cell in 0..hw {
        grid[cell] = (cell % w) as f32;
        grid[hw + cell] = (cell / w) as f32;
    }
    let grid = Tensor::<3>::from_data(TensorData::new(grid, [1, 2, hw]), device);
    let mut sizes = Vec::with_capacity(b * a * 2);
    for _ in 0..b {
        for &(aw, ah) in anchors {
            sizes.extend([aw, ah]);
        }
    }
    let sizes = Tensor::<3>::from_data(TensorData::new(sizes, [b * a, 2, 1]), device);
    let centre = sigmoid(p.clone().narrow(1, 0, 2)).add(grid).mul_scalar(s);
    let size = p.clone().narrow(1, 2, 2).clamp_max(10.0).exp().mul(sizes);
    let half = size.div_scalar(2.0);
    let lo = centre.clone().sub(half.clone());
    let hi = centre.add(half);
    let t = ten(tbox, 4);
    let (tlo, thi) = (t.clone().narrow(1, 0, 2), t.narrow(1, 2, 2));
    let extent = |lo: Tensor<3>, hi: Tensor<3>| {
        let d = hi.sub(lo).clamp_min(0.0);
        d.clone().narrow(1, 0, 1).mul(d.narrow(1, 1, 1))
    };
    let area_p = extent(lo.clone(), hi.clone());
    let area_t = extent(tlo.clone(), thi.clone());
    let inter = extent(
        lo.clone().max_pair(tlo.clone()),
        hi.clone().min_pair(thi.clone()),
    );
    let union = area_p.add(area_t).sub(inter.clone()).add_scalar(1e-7);
    let hull = extent(lo.min_pair(tlo), hi.max_pair(thi)).add_scalar(1e-7);
    let giou = inter
        .div(union.clone())
        .sub(hull.clone().sub(union).div(hull));
    let box_ = giou.neg().add_scalar(1.0).mul(pos_t.clone()).sum();
    let class = (k > 0).then(|| bce(p.narrow(1, 5, k), ten(tcls, k)).mul(pos_t).sum());
    Ok(Sums {
        objectness,
        box_: Some(box_),
        class,
        positives,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::boxes::BBox;
    use crate::detect::dataset::Object;
    use crate::detect::yolo::{Suppression, decode, suppress, targets};
    use crate::graph::edit::Scale;

    fn object(class: usize, bbox: BBox) -> Object {
        Object {
            class,
            bbox,
            difficult: false,
        }
    }

    /// Gradient descent on free prediction maps (one per scale, of `sizes`), through this
    /// loss alone: the loss falls below a fifth of its start and, decoded and suppressed, the
    /// maps give each box (IoU > 0.8) with its class and nothing else above 0.05.
    fn descent_finds(spec: &DetectionSpec, sizes: &[(usize, usize)], objects: &[Object]) {
        let ts = vec![targets(objects, spec, sizes)];
        let device = Device::flex().autodiff();
        let per = spec.per_anchor();
        let mut maps: Vec<Tensor<4>> = spec
            .scales
            .iter()
            .zip(sizes)
            .map(|(s, &(h, w))| {
                Tensor::<4>::zeros([1, s.anchors.len() * per, h, w], &device).require_grad()
            })
            .collect();
        let mut first = None;
        let mut last = 0.0;
        for _ in 0..500 {
            let l = loss(maps.clone(), &ts, spec, &LossWeights::default(), &device).unwrap();
            let value = crate::engine::params::to_vec(&l.total.clone().detach()).unwrap()[0];
            first.get_or_insert(value);
            last = value;
            let grads = l.total.backward();
            maps = maps
                .into_iter()
                .map(|m| {
                    let g = m.grad(&grads).unwrap();
                    m.inner().sub(g.mul_scalar(0.25)).autodiff().require_grad()
                })
                .collect();
        }
        let first = first.unwrap();
        assert!(last < first * 0.2, "loss {first} → {last}");
        let host: Vec<Vec<f32>> = maps
            .iter()
            .map(|m| crate::engine::params::to_vec(&m.clone().inner()).unwrap())
            .collect();
        let refs: Vec<_> = host.iter().zip(sizes).map(|(m, &s)| (&m[..], s)).collect();
        let found = suppress(decode(&refs, spec, 0.05), &Suppression::default());
        assert_eq!(found.len(), objects.len(), "{found:?}");
        for o in objects {
            let p = found.iter().find(|p| p.class == o.class).unwrap();
            assert!(p.bbox.iou(&o.bbox) > 0.8, "{:?} vs {:?}", p.bbox, o.bbox);
        }
    }

    #[test]
    fn descending_the_loss_on_a_free_map_finds_the_boxes() {
        let spec = DetectionSpec {
            classes: vec!["cat".into(), "dog".into()],
            scales: vec![Scale {
                stride: 16,
                anchors: vec![(20.0, 20.0), (60.0, 40.0)],
            }],
            fit: Default::default(),
        };
        let objects = [
            object(0, BBox::new(6.0, 8.0, 30.0, 28.0)),
            object(1, BBox::new(20.0, 30.0, 62.0, 62.0)),
        ];
        descent_finds(&spec, &[(4, 4)], &objects);
    }

    /// Two scales: the small box is learnt on the fine map, the large one on the coarse map,
    /// through one loss.
    #[test]
    fn descending_the_loss_on_two_scales_finds_small_and_large_boxes() {
        let spec = DetectionSpec {
            classes: vec!["cat".into(), "dog".into()],
            scales: vec![
                Scale {
                    stride: 16,
                    anchors: vec![(20.0, 20.0)],
                },
                Scale {
                    stride: 32,
                    anchors: vec![(70.0, 60.0)],
                },
            ],
            fit: Default::default(),
        };
        let objects = [
            object(0, BBox::new(6.0, 8.0, 30.0, 28.0)),
            object(1, BBox::new(40.0, 50.0, 118.0, 112.0)),
        ];
        let ts = targets(&objects, &spec, &[(8, 8), (4, 4)]);
        assert_eq!(ts.iter().map(|t| t.scale).collect::<Vec<_>>(), [1, 0]);
        descent_finds(&spec, &[(8, 8), (4, 4)], &objects);
    }
}

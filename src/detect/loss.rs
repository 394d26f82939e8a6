//! The detection loss on burn tensors (autodiff flows through it): for a batch's prediction
//! maps `[B, A·(5+K), H, W]` and each image's [`Target`]s,
//! - **box**: 1 − GIoU between decoded predictions and true boxes, at the assigned cells;
//! - **objectness**: binary cross-entropy, 1 at assigned cells, 0 elsewhere — except cells
//!   whose prediction already overlaps some true box by IoU > [`IGNORE_IOU`] (YOLO v3's
//!   rule: a good box the assignment did not pick is not punished);
//! - **class**: binary cross-entropy per class at the assigned cells.
//!
//! Box and class terms are means over the assigned cells; objectness is summed over the
//! counted cells of an image and averaged over images; each is weighted by [`LossWeights`]. The targets and masks are built on the host from
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

pub fn loss(
    pred: Tensor<4>,
    targets: &[Vec<Target>],
    spec: &DetectionSpec,
    weights: &LossWeights,
    device: &Device,
) -> Result<Loss, String> {
    let [b, channels, h, w] = pred.dims();
    let (a, per, hw, k) = (
        spec.anchors.len(),
        spec.per_anchor(),
        h * w,
        spec.classes.len(),
    );
    if channels != a * per || targets.len() != b {
        return Err(format!(
            "prediction map of {channels} channels for {a} anchors × {per}, {} target lists for \
             a batch of {b}",
            targets.len()
        ));
    }
    // [B·A, per, HW]: one row of channels per image and anchor.
    let p = pred.reshape([b * a, per, hw]);
    let host = crate::engine::params::to_vec(&p.clone().detach())?;
    let s = spec.stride as f32;

    // Host-side targets and masks, laid out like `p`'s slices.
    let mut pos = vec![0.0f32; b * a * hw];
    let mut tbox = vec![0.0f32; b * a * 4 * hw];
    let mut tcls = vec![0.0f32; b * a * k.max(1) * hw];
    let mut counted = vec![1.0f32; b * a * hw];
    let decode_host = |row: usize, cell: usize| {
        let t = [0, 1, 2, 3].map(|c| host[(row * per + c) * hw + cell]);
        decode_box(t, (cell / w, cell % w), spec.anchors[row % a], s)
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
        for t in ts {
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
    let n_pos = pos.iter().sum::<f32>();
    let ten = |data: Vec<f32>, c: usize| {
        Tensor::<3>::from_data(TensorData::new(data, [b * a, c, hw]), device)
    };
    let pos_t = ten(pos, 1);

    // Objectness summed over every counted cell, per image (YOLO v3's normalisation: a mean
    // over cells would divide the few cells holding objects by the many that do not).
    let obj = p.clone().narrow(1, 4, 1);
    let obj_loss = bce(obj, pos_t.clone())
        .mul(ten(counted, 1))
        .sum()
        .div_scalar(b as f32);

    let (box_loss, cls_loss) = if n_pos > 0.0 {
        // Decoded boxes, as `decode` computes them, for every cell.
        let mut grid = vec![0.0f32; 2 * hw];
        for cell in 0..hw {
            grid[cell] = (cell % w) as f32;
            grid[hw + cell] = (cell / w) as f32;
        }
        let grid = Tensor::<3>::from_data(TensorData::new(grid, [1, 2, hw]), device);
        let mut anchors = Vec::with_capacity(b * a * 2);
        for _ in 0..b {
            for &(aw, ah) in &spec.anchors {
                anchors.extend([aw, ah]);
            }
        }
        let anchors = Tensor::<3>::from_data(TensorData::new(anchors, [b * a, 2, 1]), device);
        let centre = sigmoid(p.clone().narrow(1, 0, 2)).add(grid).mul_scalar(s);
        let size = p.clone().narrow(1, 2, 2).clamp_max(10.0).exp().mul(anchors);
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
        let box_loss = giou
            .neg()
            .add_scalar(1.0)
            .mul(pos_t.clone())
            .sum()
            .div_scalar(n_pos);
        let cls_loss = if k > 0 {
            bce(p.narrow(1, 5, k), ten(tcls, k))
                .mul(pos_t)
                .sum()
                .div_scalar(n_pos * k as f32)
        } else {
            Tensor::<1>::zeros([1], device)
        };
        (box_loss, cls_loss)
    } else {
        (
            Tensor::<1>::zeros([1], device),
            Tensor::<1>::zeros([1], device),
        )
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::boxes::BBox;
    use crate::detect::dataset::Object;
    use crate::detect::yolo::{Suppression, decode, suppress, targets};

    /// Gradient descent on a free prediction map, through this loss alone, finds the true
    /// boxes: decoded and suppressed, the map gives each box (IoU > 0.8) with its class and
    /// nothing else above the score threshold.
    #[test]
    fn descending_the_loss_on_a_free_map_finds_the_boxes() {
        let spec = DetectionSpec {
            classes: vec!["cat".into(), "dog".into()],
            anchors: vec![(20.0, 20.0), (60.0, 40.0)],
            stride: 16,
            fit: Default::default(),
        };
        let (h, w) = (4, 4);
        let objects = vec![
            Object {
                class: 0,
                bbox: BBox::new(6.0, 8.0, 30.0, 28.0),
                difficult: false,
            },
            Object {
                class: 1,
                bbox: BBox::new(20.0, 30.0, 62.0, 62.0),
                difficult: false,
            },
        ];
        let ts = vec![targets(&objects, &spec, (h, w))];
        let device = Device::flex().autodiff();
        let channels = spec.anchors.len() * spec.per_anchor();
        let mut map = Tensor::<4>::zeros([1, channels, h, w], &device).require_grad();
        let mut first = None;
        let mut last = 0.0;
        for _ in 0..300 {
            let l = loss(map.clone(), &ts, &spec, &LossWeights::default(), &device).unwrap();
            let value = crate::engine::params::to_vec(&l.total.clone().detach()).unwrap()[0];
            first.get_or_insert(value);
            last = value;
            let grads = l.total.backward();
            let g = map.grad(&grads).unwrap();
            map = map.inner().sub(g.mul_scalar(0.5)).autodiff().require_grad();
        }
        let first = first.unwrap();
        assert!(last < first * 0.2, "loss {first} → {last}");
        let host = crate::engine::params::to_vec(&map.inner()).unwrap();
        let found = suppress(decode(&host, &spec, (h, w), 0.05), &Suppression::default());
        assert_eq!(found.len(), 2, "{found:?}");
        for o in &objects {
            let p = found.iter().find(|p| p.class == o.class).unwrap();
            assert!(p.bbox.iou(&o.bbox) > 0.8, "{:?} vs {:?}", p.bbox, o.bbox);
        }
    }
}

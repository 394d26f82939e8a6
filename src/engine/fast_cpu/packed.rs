//! A convolution's filters packed once for Graft's matrix kernel (`mm.rs`) and kept with the
//! plan step that runs it.

use super::mm;
use burn::backend::flex::FlexTensor;
use std::sync::{Arc, Mutex};

/// A convolution's filters packed for `mm` (one block per group), kept between runs of a
/// plan with the weight tensor they were packed from. At batch 1 packing every convolution's
/// filters on every run was 7–9 % of a forward pass (ONNX Runtime packs once, at load).
///
/// Holding a clone of the weight keeps its buffer alive and unchanged — flex copies a shared
/// buffer before writing to it — so a weight whose values sit at the same address, with the
/// same shape, is the same weight: a plan whose weights change (validation between training
/// steps) packs again and lets the old ones go.
#[derive(Clone, Default)]
pub struct PackedFilters(Arc<Mutex<Option<Packed>>>);

struct Packed {
    weight: FlexTensor,
    groups: usize,
    filters: Arc<Vec<mm::PackedA>>,
}

impl std::fmt::Debug for PackedFilters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PackedFilters")
    }
}

impl PackedFilters {
    /// `weight`'s filters packed in `groups` (packed now unless this is the weight they were
    /// packed from last time). `None` where `mm` does not run.
    pub(super) fn get(&self, weight: &FlexTensor, groups: usize) -> Option<Arc<Vec<mm::PackedA>>> {
        if !mm::available() {
            return None;
        }
        let ws = weight.as_slice::<f32>()?;
        let dims = weight.layout().shape().to_vec();
        let (rows, k) = (dims[0] / groups, dims[1..].iter().product());
        let same = |p: &Packed| {
            let theirs = p.weight.as_slice::<f32>();
            p.groups == groups
                && theirs.is_some_and(|t| std::ptr::eq(t, ws))
                && p.weight.layout().shape().to_vec() == dims
        };
        // A poisoned lock held a half-made entry at worst: replaced below.
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = slot.as_ref().filter(|p| same(p)) {
            return Some(p.filters.clone());
        }
        let filters = Arc::new(mm::PackedA::groups(ws, groups, rows, k));
        *slot = Some(Packed {
            weight: weight.clone(),
            groups,
            filters: filters.clone(),
        });
        Some(filters)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{max_diff, seq};
    use super::super::{Act, dense_conv, flex, pointwise_conv};
    use super::*;
    use crate::graph::Conv;
    use burn::tensor::{Device, Tensor, TensorData};

    /// A plan's packed filters: reused for the same weight, packed again for a new one (the
    /// answer then the new weight's), for 1x1 and grouped 3x3 convolutions alike.
    #[test]
    fn packed_filters_follow_the_weight() {
        let dev = Device::flex();
        let t4 = |v: Vec<f32>, d: [usize; 4]| Tensor::<4>::from_data(TensorData::new(v, d), &dev);
        let x = t4(seq(2 * 4 * 6 * 6, 1), [2, 4, 6, 6]);
        let cases = [([6, 4, 1, 1], [0; 4], 1), ([6, 2, 3, 3], [1; 4], 2)];
        for (dims, pads, groups) in cases {
            let conv = Conv {
                strides: [1, 1],
                pads,
                dilations: [1, 1],
                groups,
            };
            let run = |w: &Tensor<4>, packs: &PackedFilters| {
                pointwise_conv(&x, w, None, &conv, Act::NONE, packs)
                    .or_else(|| dense_conv(&x, w, None, &conv, Act::NONE, packs))
                    .expect("applies")
            };
            let len = dims.iter().product();
            let (w1, w2) = (t4(seq(len, 5), dims), t4(seq(len, 90_000), dims));
            let packs = PackedFilters::default();
            let first = run(&w1, &packs);
            if mm::available() {
                let held = packs.get(&flex(&w1).unwrap(), groups).unwrap();
                let again = packs.get(&flex(&w1.clone()).unwrap(), groups).unwrap();
                assert!(Arc::ptr_eq(&held, &again), "{dims:?}: packed again");
            }
            assert_eq!(max_diff(run(&w1, &packs), first.clone()), 0.0);
            let second = run(&w2, &packs);
            assert_eq!(
                max_diff(second.clone(), run(&w2, &PackedFilters::default())),
                0.0
            );
            assert!(
                max_diff(second, first) > 0.0,
                "{dims:?}: the old filters answered"
            );
        }
    }
}

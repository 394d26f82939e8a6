//! Batch statistics handed from the op that writes an activation to the batch norm that
//! reads it next, so that the batch norm needs no pass of its own over the activation to
//! sum them (`norm::batch_stats` read all of it from memory: Lite0's 96 x 112 x 112 expand
//! output at batch 32, 154 MB, 7.5 ms a step). The writer sums each piece while it is still
//! in cache (`moments`): the joined batch norm + depthwise step its planes
//! (`depthwise::Geometry::forward_with_moments`), a 1x1 its tasks' blocks
//! (`pointwise::forward_with_moments`, from `train::conv`).
//!
//! Keyed by the activation's autodiff node: node ids are never reused, so a hand-off can only
//! reach the tensor it was summed from, and an autodiff tensor's values never change under
//! its node. A hand-off nobody takes (an activation whose reader is not a batch norm that
//! learns) is dropped when newer ones push it out. Per thread: a forward pass runs its ops
//! one after the other on one thread (their kernels fan out to the pool and return).

use super::super::norm::Stats;
use burn_autodiff::NodeId;
use std::cell::RefCell;
use std::collections::VecDeque;

/// Per-plane moments of one activation: `(mean, m2)` of plane `b · c + ch`.
struct Handed {
    node: NodeId,
    /// `[n, c, values per channel per image]`.
    dims: [usize; 3],
    planes: Vec<(f64, f64)>,
}

/// The smallest planes whose writer sums them one by one for the next batch norm. Below it
/// the sums' fixed cost a plane is more than the batch norm's own pass costs (that pass reads
/// a small activation): per step in Lite0 (`GRAFT_PROFILE=nodes`), the 7x7 joined depthwise
/// steps took 1.5 ms more and their statistics passes had taken 0.6; at 56x56 and 112x112 no
/// visible cost against 2.1-2.8 ms saved; 28x28 about even. The grouped depthwise pass, which
/// sums a vector of channels at a time (`moments::lane_moments`), hands any map's.
pub(super) const MIN_PLANE: usize = 1024;

/// Hand-offs not yet taken, oldest first. A training step hands one per depthwise
/// convolution and its reader takes it at once; a few slots are room enough.
const SLOTS: usize = 4;

thread_local! {
    static HANDED: RefCell<VecDeque<Handed>> = const { RefCell::new(VecDeque::new()) };
}

/// Hands the moments of `node`'s planes (`moments::plane_moments`, plane `b · c + ch` of
/// `dims`) to the batch norm that reads it.
pub(super) fn hand(node: NodeId, dims: [usize; 3], planes: Vec<(f64, f64)>) {
    assert_eq!(planes.len(), dims[0] * dims[1], "a moment per plane");
    HANDED.with_borrow_mut(|handed| {
        if handed.len() == SLOTS {
            handed.pop_front();
        }
        handed.push_back(Handed { node, dims, planes });
    });
}

/// The batch statistics of `node`'s values (`dims`) where its writer handed their moments,
/// taken (a second call gets `None`); `None` where it did not.
pub(super) fn take(node: NodeId, dims: [usize; 3], epsilon: f64) -> Option<Stats> {
    let h = HANDED.with_borrow_mut(|handed| {
        let at = handed
            .iter()
            .position(|h| h.node == node && h.dims == dims)?;
        handed.remove(at)
    })?;
    Some(Stats::from_moments(&h.planes, dims, epsilon))
}

#[cfg(test)]
mod tests {
    use super::super::super::depthwise::Geometry;
    use super::super::super::moments::plane_moments;
    use super::super::super::norm;
    use super::super::tests::{constant, leaf, vals};
    use super::super::{BatchNormArgs, norm_depthwise, tracked};
    use super::*;
    use crate::graph::Conv;

    /// Relative error of `a` against `b`, over their largest magnitude.
    fn off(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(1e-30f32, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
            / scale
    }

    /// A hand-off was made, and holds the statistics `batch_stats` sums over `values`.
    fn assert_handed(handed: Option<Stats>, values: &[f32], dims: [usize; 3], what: &str) {
        let got = handed.unwrap_or_else(|| panic!("{what}: handed"));
        let want = norm::batch_stats(values, dims, 1e-5);
        assert!(off(&got.mean, &want.mean) < 1e-6, "{what}: mean");
        assert!(off(&got.var, &want.var) < 1e-5, "{what}: variance");
    }

    /// Statistics merged from planes' moments are those `batch_stats` sums over the
    /// channels, to rounding: planes with a masked tail (7x7) and without, and values far
    /// from zero (a mean 1000 times the spread, where sums of squares about zero would lose
    /// the variance).
    #[test]
    fn moments_merge_to_the_batch_statistics() {
        for (dims @ [n, c, hw], offset) in [([3, 5, 49], 0.0), ([2, 4, 3136], 1000.0)] {
            let xs: Vec<f32> = super::super::super::tests::seq(n * c * hw, 7)
                .into_iter()
                .enumerate()
                .map(|(i, v)| v + offset + (i / hw % c) as f32 * 0.25)
                .collect();
            let planes: Vec<(f64, f64)> = xs.chunks_exact(hw).map(plane_moments).collect();
            let got = Stats::from_moments(&planes, dims, 1e-3);
            let want = norm::batch_stats(&xs, dims, 1e-3);
            assert!(off(&got.mean, &want.mean) < 1e-7, "{dims:?}: mean");
            assert!(off(&got.var, &want.var) < 1e-5, "{dims:?}: variance");
            assert!(off(&got.inv_std, &want.inv_std) < 1e-5, "{dims:?}: 1/std");
        }
    }

    /// A 1x1 convolution hands its output's statistics where its map has [`MIN_PLANE`]
    /// pixels or more (48x48: several runs of pixels a plane, merged) and the matrix kernel
    /// runs; none for a smaller map.
    #[test]
    fn conv_1x1_hands_its_output_statistics() {
        let conv = Conv {
            strides: [1, 1],
            pads: [0; 4],
            dilations: [1, 1],
            groups: 1,
        };
        for (n, c, co, h) in [(2, 16, 40, 48), (2, 16, 8, 16)] {
            let x = constant([n, c, h, h], 1, 0.5).require_grad();
            let wt = leaf([co, c, 1, 1], 7);
            let y = super::super::conv(&x, &wt, None, &conv).expect("applies");
            let dims = [n, co, h * h];
            let handed = take(tracked(&y).expect("autodiff").id(), dims, 1e-5);
            if h * h < MIN_PLANE || !super::super::super::mm::available() {
                assert!(handed.is_none(), "{h}x{h}: nothing handed");
                continue;
            }
            assert_handed(handed, &vals(y), dims, &format!("{h}x{h}"));
        }
    }

    /// The joined batch norm and depthwise convolution hands its output's statistics to
    /// the next batch norm: those of the values it returned, whether its planes went one
    /// by one (56-value rows) or in groups of channels (20-value rows and smaller, where the
    /// machine has AVX-512: any size of plane, 7x7 and a partial group of channels too);
    /// none for smaller planes one by one (under [`MIN_PLANE`]: 8 rows of 64).
    #[test]
    fn norm_depthwise_hands_its_output_statistics() {
        // (n, c, h, w, stride)
        let cases = [
            (2, 6, 56, 56, 1),
            (3, 20, 64, 20, 1),
            (3, 20, 14, 14, 2),
            (2, 21, 7, 7, 1),
            (2, 6, 8, 64, 1),
        ];
        for (n, c, h, w, s) in cases {
            let conv = Conv {
                strides: [s, s],
                pads: [1, 1, 1, 1],
                dilations: [1, 1],
                groups: c,
            };
            let x = constant([n, c, h, w], 1, 0.5).require_grad();
            let (gamma, beta, wt) = (leaf([c], 4), leaf([c], 9), leaf([c, 1, 3, 3], 7));
            let args = BatchNormArgs {
                gamma: &gamma,
                beta: &beta,
                epsilon: 1e-5,
                clamp: (0.0, 6.0),
            };
            let (y, _, _) = norm_depthwise(&x, args, &wt, None, &conv).expect("applies");
            let [_, _, oh, ow] = y.dims();
            let dims = [n, c, oh * ow];
            let id = tracked(&y).expect("an autodiff tensor").id();
            let handed = take(id, dims, 1e-5);
            let grouped = Geometry::new([n, c, h, w], [c, 1, 3, 3], &conv)
                .expect("depthwise")
                .by_channel_groups();
            if oh * ow < MIN_PLANE && !grouped {
                assert!(
                    handed.is_none(),
                    "{n}x{c} {h}x{w}: small planes hand nothing"
                );
                continue;
            }
            assert_handed(handed, &vals(y), dims, &format!("{n}x{c} {h}x{w}"));
        }
    }

    /// A hand-off reaches only its node with its dimensions, once; the oldest gives way when
    /// the slots are full.
    #[test]
    fn a_handoff_reaches_its_node_once() {
        let (a, b) = (NodeId::new(), NodeId::new());
        let dims = [2, 3, 4];
        let planes = vec![(1.0, 3.0); 6];
        hand(a, dims, planes.clone());
        assert!(take(b, dims, 1e-5).is_none(), "another node");
        assert!(take(a, [3, 2, 4], 1e-5).is_none(), "other dimensions");
        let s = take(a, dims, 1e-5).expect("its own node");
        assert_eq!(s.mean, vec![1.0; 3]);
        // Each channel: two planes of 4 values, mean 1, m2 3 each: variance 6 / 8.
        assert_eq!(s.var, vec![0.75; 3]);
        assert!(take(a, dims, 1e-5).is_none(), "taken once");

        let first = NodeId::new();
        hand(first, dims, planes.clone());
        for _ in 0..SLOTS {
            hand(NodeId::new(), dims, planes.clone());
        }
        assert!(take(first, dims, 1e-5).is_none(), "pushed out");
    }
}

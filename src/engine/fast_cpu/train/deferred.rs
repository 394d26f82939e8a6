//! A batch norm's input gradient handed unwritten to the 1x1 convolution that wrote the
//! batch norm's input (an inverted-residual block's expand 1x1 and its first batch norm):
//! the batch norm registers the gradient it was given (`raw`) and hands its map
//! (`norm::GradMap`: the gradient is `map(raw, x)`, `x` its input), and the 1x1's backward
//! pass applies the map as its dot products read each chunk (`dot_grad::add_then`). Written
//! out, batch norm's input gradient was a pass that read two activations and wrote one, and
//! the 1x1 read it back (Lite0's 96-channel 112x112 map at batch 32: 154 MB each).
//!
//! The hand-off is keyed by the 1x1's output node, as `handed` is. The 1x1 offers in its
//! forward pass to take a deferred gradient (`offer`); a batch norm reading that node
//! defers only then (`offered`), so the raw gradient never reaches an op that would take it
//! for the real one. Should autodiff add another reader's gradient to the raw one, the sum
//! is a new buffer (the hand-off holds the raw one, so it is never summed in place): the
//! 1x1 then finds a tensor that is not the raw one and `resolve`s it.

use super::super::norm::GradMap;
use super::super::with_avx512;
use super::{contiguous, flex_tensor, unique_values_mut, values};
use burn::backend::flex::FlexTensor;
use burn_autodiff::NodeId;
use rayon::prelude::*;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Mutex;

/// A batch norm's input gradient, unwritten: `map(raw, x)`.
pub(super) struct Deferred {
    /// The gradient of the batch norm's output as it was given (the tensor registered).
    pub raw: FlexTensor,
    /// The batch norm's input (the 1x1's output).
    pub x: FlexTensor,
    pub map: GradMap,
    /// `[n, c, values per channel per image]`.
    pub dims: [usize; 3],
}

/// Offers not yet taken, oldest first: the batch norm that reads the 1x1's output asks at
/// once, so a few slots are room enough; an offer nobody takes is pushed out.
const OFFERS: usize = 8;
/// Deferred gradients not yet taken. A backward pass takes each soon after it is handed (one
/// or two wait at a time, a few more with trainings on several threads); a hand-off pushed
/// out would leave the raw gradient for the real one, so the room is far beyond that. One
/// left behind by a step that failed is pushed out by later steps.
const PENDING: usize = 64;

thread_local! {
    /// Nodes whose writer takes a deferred gradient. Per thread, as `handed`: a forward pass
    /// runs its ops one after the other on one thread.
    static OFFERED: RefCell<VecDeque<NodeId>> = const { RefCell::new(VecDeque::new()) };
}

/// Deferred gradients by node. Not per thread: nothing promises that autodiff runs every
/// backward step on one thread, and a hand-off lost would leave the raw gradient for the
/// real one.
static DEFERRED: Mutex<VecDeque<(NodeId, Deferred)>> = Mutex::new(VecDeque::new());

/// The 1x1 that wrote `node` takes its gradient deferred.
pub(super) fn offer(node: NodeId) {
    OFFERED.with_borrow_mut(|o| {
        if o.len() == OFFERS {
            o.pop_front();
        }
        o.push_back(node);
    });
}

/// Whether `node`'s writer takes its gradient deferred (the offer taken: a second call says
/// no).
pub(super) fn offered(node: NodeId) -> bool {
    OFFERED.with_borrow_mut(|o| {
        let at = o.iter().position(|&n| n == node);
        at.map(|at| o.remove(at)).is_some()
    })
}

/// Hands `node`'s gradient, deferred.
pub(super) fn defer(node: NodeId, d: Deferred) {
    let mut all = DEFERRED.lock().unwrap_or_else(|e| e.into_inner());
    if all.len() == PENDING {
        all.pop_front();
    }
    all.push_back((node, d));
}

/// `node`'s deferred gradient, taken.
pub(super) fn take(node: NodeId) -> Option<Deferred> {
    let mut all = DEFERRED.lock().unwrap_or_else(|e| e.into_inner());
    let at = all.iter().position(|(n, _)| *n == node)?;
    all.remove(at).map(|(_, d)| d)
}

/// The gradient of `node`'s output for its writer's backward pass, from `got` (what
/// autodiff gathered): where a batch norm deferred its input gradient and the writer `takes`
/// the map as it reads, the raw gradient and the hand-off (the map applied as each piece is
/// read); where it cannot take it, or another reader's gradient was added, the gradient
/// written out here (`Deferred::resolve`); else `got` as it is.
pub(super) fn gradient(
    node: NodeId,
    got: FlexTensor,
    takes: bool,
) -> (FlexTensor, Option<Deferred>) {
    match take(node) {
        Some(d) if takes && d.is_raw(&got) => (d.raw.clone(), Some(d)),
        Some(d) => (d.resolve(got), None),
        None => (contiguous(&got), None),
    }
}

impl Deferred {
    /// Whether `got`, the gradient autodiff gathered for the node, is the raw one alone.
    /// A strided view is never the raw one (that was registered contiguous), so nothing is
    /// copied to find out.
    pub fn is_raw(&self, got: &FlexTensor) -> bool {
        let raw = values(&self.raw).as_ptr();
        got.as_slice::<f32>()
            .is_some_and(|g| std::ptr::eq(g.as_ptr(), raw))
            && got.layout().shape() == self.raw.layout().shape()
    }

    /// The gradient written out from `got`: `map(raw, x)`, plus whatever other readers
    /// added (`got − raw`), for a 1x1 that cannot apply the map as it reads.
    pub fn resolve(self, got: FlexTensor) -> FlexTensor {
        let [_, c, hw] = self.dims;
        let shape = self.raw.layout().shape().clone();
        let xs = values(&self.x);
        let planes = |gs: &mut [f32], raw: Option<&[f32]>| {
            gs.par_chunks_mut(hw.max(1))
                .zip(xs.par_chunks(hw.max(1)))
                .enumerate()
                .for_each(|(i, (g, x))| {
                    let raw = raw.map(|r| &r[i * hw..(i + 1) * hw]);
                    apply(g, raw, x, self.map.channel(i % c))
                })
        };
        if !self.is_raw(&got) {
            let mut out = values(&contiguous(&got)).to_vec();
            planes(&mut out, Some(values(&self.raw)));
            return flex_tensor(out, shape);
        }
        // The raw gradient alone: written over in place once the hand-off's copy is let go.
        drop(got);
        let Deferred { mut raw, .. } = self;
        if let Some(gs) = unique_values_mut(&mut raw) {
            planes(gs, None);
            return raw;
        }
        let mut out = values(&raw).to_vec();
        planes(&mut out, None);
        flex_tensor(out, shape)
    }
}

/// One plane: `g = map(g, x)`, or with `raw`, `g = g − raw + map(raw, x)` (the other
/// readers' part kept).
fn apply(g: &mut [f32], raw: Option<&[f32]>, x: &[f32], map: super::super::norm::ChannelGrad) {
    with_avx512(
        #[inline(always)]
        || match raw {
            None => {
                for (g, &x) in g.iter_mut().zip(x) {
                    *g = map.apply(*g, x);
                }
            }
            Some(raw) => {
                for ((g, &r), &x) in g.iter_mut().zip(raw).zip(x) {
                    *g = (*g - r) + map.apply(r, x);
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::{constant, grad, leaf, max_diff, vals};
    use super::super::{BatchNormArgs, batch_norm, conv, norm_depthwise, norm_pointwise, tracked};
    use super::*;
    use crate::graph::Conv;
    use burn::tensor::Tensor;

    const ONE_BY_ONE: Conv = Conv {
        strides: [1, 1],
        pads: [0; 4],
        dilations: [1, 1],
        groups: 1,
    };

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a pool")
    }

    /// The largest difference between `got` and `want`, relative to `want`'s largest value.
    fn relative_off(got: &[f32], want: &[f32]) -> f32 {
        let scale = want.iter().fold(1e-30f32, |m, v| m.max(v.abs()));
        max_diff(got, want) / scale
    }

    /// A batch norm with `gamma` and `beta` and a ReLU6, as Lite0's blocks have.
    fn relu6<'a>(gamma: &'a Tensor<1>, beta: &'a Tensor<1>) -> BatchNormArgs<'a> {
        BatchNormArgs {
            gamma,
            beta,
            epsilon: 1e-5,
            clamp: (0.0, 6.0),
        }
    }

    /// A 1x1 offers to take its gradient deferred where its gradients go chunk by chunk
    /// (AVX-512, large map, no bias), and not on a small map or with a bias.
    #[test]
    fn a_1x1_offers_where_it_can_take_the_map() {
        let big = super::super::super::has_avx512();
        for (h, bias, offers) in [(24, false, big), (8, false, false), (24, true, false)] {
            let x = constant([2, 8, h, h], 1, 0.0).require_grad();
            let wt = leaf([16, 8, 1, 1], 7);
            let b = constant([16], 3, 0.0);
            // Offers are per thread: asked on the thread that ran the op.
            let got = pool().install(|| {
                let y = conv(&x, &wt, bias.then_some(&b), &ONE_BY_ONE).expect("applies");
                offered(tracked(&y).expect("autodiff").id())
            });
            assert_eq!(got, offers, "{h}x{h} bias {bias}");
        }
    }

    /// Expand 1x1 → joined batch norm + ReLU6 + depthwise, the batch norm's input gradient
    /// deferred to the 1x1 (no bias), against the same chain not deferred (a bias of zeros,
    /// which adds nothing): the same input and weight gradients to the bit. With a second
    /// reader of the 1x1's output, whose gradient autodiff adds to the raw one (written out
    /// by `resolve`): the same to rounding. With the 1x1's weight frozen, its backward pass
    /// cannot take the map (no dot products) and `resolve` writes the raw gradient out: the
    /// same bits again.
    #[test]
    fn a_deferred_gradient_is_the_written_one() {
        let (n, c, co, h) = (2, 8, 16, 24);
        let dw = Conv {
            strides: [1, 1],
            pads: [1; 4],
            dilations: [1, 1],
            groups: co,
        };
        for (second_reader, frozen) in [(false, false), (true, false), (false, true)] {
            let run = |deferred: bool| {
                let x = leaf([n, c, h, h], 1);
                let wt = constant([co, c, 1, 1], 7, 0.0);
                let wt = if frozen { wt } else { wt.require_grad() };
                let zero = constant([co], 3, 0.0).mul_scalar(0.0);
                let (gamma, beta, wd) = (leaf([co], 4), leaf([co], 9), leaf([co, 1, 3, 3], 5));
                let grads = pool().install(|| {
                    let bias = (!deferred).then_some(&zero);
                    let y = conv(&x, &wt, bias, &ONE_BY_ONE).expect("applies");
                    let args = relu6(&gamma, &beta);
                    let (z, _, _) = norm_depthwise(&y, args, &wd, None, &dw).expect("applies");
                    let r = constant(z.dims(), 11, 0.0);
                    let mut l = z.mul(r).sum();
                    if second_reader {
                        let r2 = constant(y.dims(), 13, 0.0);
                        l = l + y.mul(r2).sum();
                    }
                    l.backward()
                });
                let gw = if frozen {
                    Vec::new()
                } else {
                    grad(&wt, &grads)
                };
                let gs: [Vec<f32>; 2] = [grad(&x, &grads), gw];
                let affine: Vec<f32> = vals(gamma.grad(&grads).expect("gamma"))
                    .into_iter()
                    .chain(vals(beta.grad(&grads).expect("beta")))
                    .collect();
                (gs, affine)
            };
            let (got, got_affine) = run(true);
            let (want, want_affine) = run(false);
            assert!(
                got_affine == want_affine,
                "gamma and beta: not the same bits"
            );
            for (what, got, want) in [("x", &got[0], &want[0]), ("weight", &got[1], &want[1])] {
                if second_reader {
                    let off = relative_off(got, want);
                    assert!(off < 1e-5, "{what}, two readers: {off} (relative)");
                } else {
                    assert!(got == want, "{what}: not the same bits");
                }
            }
        }
    }

    /// A joined batch norm + depthwise step offers to take the next batch norm's input
    /// gradient where its gradients go plane by plane (a map 40 wide), not where they go by
    /// groups of channels (8 wide, on AVX2 and AVX-512).
    #[test]
    fn a_depthwise_step_offers_where_it_can_take_the_map() {
        let grouped = super::super::super::has_avx2_fma();
        for (w, offers) in [(40, true), (8, !grouped)] {
            let x = constant([2, 8, 6, w], 1, 0.0).require_grad();
            let (gamma, beta, wd) = (leaf([8], 4), leaf([8], 9), leaf([8, 1, 3, 3], 5));
            let dw = Conv {
                strides: [1, 1],
                pads: [1; 4],
                dilations: [1, 1],
                groups: 8,
            };
            let got = pool().install(|| {
                let args = relu6(&gamma, &beta);
                let (y, _, _) = norm_depthwise(&x, args, &wd, None, &dw).expect("applies");
                offered(tracked(&y).expect("autodiff").id())
            });
            assert_eq!(got, offers, "{w} wide");
        }
    }

    /// Joined batch norm + ReLU6 + depthwise → joined batch norm + ReLU6 + 1x1 (an
    /// inverted-residual block's middle), the second batch norm's input gradient deferred to
    /// the depthwise step and mapped plane by plane, against the same chain with the first
    /// pair apart and a plain depthwise convolution with a bias of zeros, which takes no
    /// deferred gradient: every gradient the same to rounding (the first batch norm's sums
    /// are taken per plane joined, per channel apart). With a second reader of the depthwise
    /// output (the deferred gradient written out by `resolve`), likewise. A plane mapped
    /// wrongly or not at all is off by whole terms.
    #[test]
    fn a_depthwise_step_takes_the_next_batch_norms_gradient() {
        let (n, c, co, h, w) = (2, 32, 12, 20, 40);
        let dw = Conv {
            strides: [1, 1],
            pads: [1; 4],
            dilations: [1, 1],
            groups: c,
        };
        for second_reader in [false, true] {
            let run = |deferred: bool| {
                let x = leaf([n, c, h, w], 1);
                let (g0, b0, wd) = (leaf([c], 4), leaf([c], 9), leaf([c, 1, 3, 3], 5));
                let (g1, b1, w1) = (leaf([c], 6), leaf([c], 8), leaf([co, c, 1, 1], 7));
                let zero = constant([c], 3, 0.0).mul_scalar(0.0);
                let grads = pool().install(|| {
                    let y = if deferred {
                        let args = relu6(&g0, &b0);
                        norm_depthwise(&x, args, &wd, None, &dw).expect("applies").0
                    } else {
                        let (a, _, _) = batch_norm(&x, &g0, &b0, 1e-5, (0.0, 6.0)).expect("bn");
                        conv(&a, &wd, Some(&zero), &dw).expect("applies")
                    };
                    let args = relu6(&g1, &b1);
                    let (z, _, _) =
                        norm_pointwise(&y, args, &w1, None, &ONE_BY_ONE).expect("applies");
                    let mut l = z.mul(constant([n, co, h, w], 11, 0.0)).sum();
                    if second_reader {
                        l = l + y.mul(constant([n, c, h, w], 13, 0.0)).sum();
                    }
                    l.backward()
                });
                let v = |t: Option<_>| vals(t.expect("a gradient"));
                [
                    grad(&x, &grads),
                    v(g0.grad(&grads)),
                    v(b0.grad(&grads)),
                    grad(&wd, &grads),
                    v(g1.grad(&grads)),
                    v(b1.grad(&grads)),
                    grad(&w1, &grads),
                ]
            };
            let (got, want) = (run(true), run(false));
            let names = [
                "x",
                "gamma 0",
                "beta 0",
                "depthwise",
                "gamma 1",
                "beta 1",
                "1x1",
            ];
            for ((what, got), want) in names.iter().zip(&got).zip(&want) {
                let off = relative_off(got, want);
                assert!(
                    off < 1e-5,
                    "{what}, second reader {second_reader}: {off} (relative)"
                );
            }
        }
    }

    /// Nothing taken twice: a hand-off goes to its node once.
    #[test]
    fn a_deferred_gradient_is_taken_once() {
        let node = NodeId::new();
        let t = flex_tensor(vec![1.0; 4], [1, 1, 4]);
        let (map, _, _) = crate::engine::fast_cpu::norm::backward_terms(
            &[0.5; 4],
            &[1.0; 4],
            [1, 1, 4],
            &crate::engine::fast_cpu::norm::Affine {
                mean: &[0.0],
                inv_std: &[1.0],
                gamma: &[1.0],
                beta: &[0.0],
                clamp: (f32::NEG_INFINITY, f32::INFINITY),
            },
            None,
        );
        let d = Deferred {
            raw: t.clone(),
            x: t,
            map,
            dims: [1, 1, 4],
        };
        defer(node, d);
        assert!(take(NodeId::new()).is_none(), "another node");
        assert!(take(node).is_some(), "its node");
        assert!(take(node).is_none(), "taken once");
    }
}

//! Batch normalisation with batch statistics, its clamp and the depthwise convolution that
//! reads it (an inverted-residual block's expand batch norm and depthwise step) as one
//! autodiff op. The normalised activation is never written: the convolution maps each plane
//! as it stages it (`depthwise::InputMap`), forward and in the weight gradient. Apart, batch
//! norm wrote it and the convolution read it back, both passes memory-bound on the large
//! early maps (154 MB each at batch 32 in Lite0's 112x112 block), and autodiff kept it as
//! well as the batch norm's input. Batch norm's backward pass takes its two sums from the
//! convolution's input gradient where that goes plane by plane (`norm::plane_grad_sums`),
//! sparing it a pass over both operands. Where its gradients go plane by plane, the op takes
//! the gradient of the batch norm that reads its output unwritten (`deferred`), each plane
//! mapped as it is taken. The values and gradients are those of the two ops run apart, to
//! the order of their sums (`norm_depthwise_matches_the_ops_apart`).

use super::super::depthwise::Geometry;
use super::super::norm::{self, Affine};
use super::super::{Act, ConvGrads};
use super::{
    AutodiffTensor, BatchNormState, contiguous, deferred, flex_tensor, handed, into_tensor,
    profile, register_weight_bias, tracked, tracked_bias, values,
};
use crate::graph::Conv;
use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::Tensor;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};

#[derive(Debug)]
struct NormDepthwiseBackward;

/// What the backward pass needs: the batch norm's, and the convolution's geometry and
/// filters.
#[derive(Clone, Debug)]
struct NormDepthwiseState {
    norm: BatchNormState,
    geometry: Geometry,
    weight: FlexTensor,
    weight_shape: [usize; 4],
}

impl Backward<Flex, 5> for NormDepthwiseBackward {
    type State = NormDepthwiseState;

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x, gamma, beta, w, b] = ops.parents.map(|p| p.map(|node| node.id));
        let s = ops.state;
        let geometry = &s.geometry;
        // The gradient of the output as autodiff gathered it; where the batch norm that
        // reads the output deferred its input gradient, its map applied as each plane is
        // taken, or written out here where another reader's gradient was added to it.
        let got = grads.consume::<Flex>(&ops.node);
        let (g, deferred) = deferred::gradient(ops.node.id, got, geometry.takes_grad_map());
        let what = match geometry.stride {
            [1, 1] => "backward: Conv (depthwise)",
            _ => "backward: Conv (depthwise, strided)",
        };
        let shape = s.norm.x.layout().shape();
        let x_shape: [usize; 4] = [shape[0], shape[1], shape[2], shape[3]];
        let (ConvGrads { x: dz, weight_bias }, sums) = profile::time(what, &x_shape, || {
            geometry.backward_mapped(
                values(&s.norm.x),
                Some(&s.norm.affine()),
                values(&s.weight),
                (
                    values(&g),
                    deferred.as_ref().map(|d| (values(&d.x), &d.map)),
                ),
                x.is_some() || gamma.is_some() || beta.is_some(),
                w.is_some() || b.is_some(),
            )
        });
        if let Some(dz) = dz {
            let dz = flex_tensor(dz, shape.clone());
            s.norm
                .backward(dz, sums.as_deref(), [x, gamma, beta], grads);
        }
        register_weight_bias(weight_bias, s.weight_shape, [w, b], grads);
    }
}

/// A batch norm's parameters and its clamp (`(-inf, inf)` for none).
#[derive(Clone, Copy)]
pub struct BatchNormArgs<'a> {
    pub gamma: &'a Tensor<1>,
    pub beta: &'a Tensor<1>,
    pub epsilon: f64,
    pub clamp: (f32, f32),
}

/// What a batch norm joined to the convolution that reads it starts from, both ways
/// (`norm_depthwise`, `norm_pointwise`): its operands tracked and contiguous, and the batch
/// statistics.
pub(super) struct Joined {
    tracked: [AutodiffTensor; 5],
    /// x, gamma, beta, the weight, the bias (zeros where there is none).
    pub values: [FlexTensor; 5],
    stats: norm::Stats,
    clamp: (f32, f32),
    /// `[n, c, values per channel per image]`.
    dims: [usize; 3],
    /// x's writer takes the batch norm's input gradient unwritten (`deferred`).
    defer: bool,
}

impl Joined {
    /// `None` where the tensors are not autodiff flex tensors or the batch norm's parameters
    /// are not one value per channel of `x`; `co`: the convolution's output channels.
    pub fn new(
        x: &Tensor<4>,
        norm: BatchNormArgs,
        weight: &Tensor<4>,
        bias: Option<&Tensor<1>>,
        co: usize,
    ) -> Option<Self> {
        let [n, c, h, w] = x.dims();
        if norm.gamma.dims() != [c] || norm.beta.dims() != [c] {
            return None;
        }
        let tracked = [
            tracked(x)?,
            tracked(norm.gamma)?,
            tracked(norm.beta)?,
            tracked(weight)?,
            tracked_bias(bias, co)?,
        ];
        let operands = tracked.each_ref().map(|t| contiguous(t.primitive()));
        let dims = [n, c, h * w];
        // Summed by the op that wrote x where it could (`handed`), else a pass here.
        let stats = handed::take(tracked[0].id(), dims, norm.epsilon).unwrap_or_else(|| {
            profile::time("BatchNormalization (statistics)", &dims, || {
                norm::batch_stats(values(&operands[0]), dims, norm.epsilon)
            })
        });
        let defer = deferred::offered(tracked[0].id());
        Some(Joined {
            tracked,
            values: operands,
            stats,
            clamp: norm.clamp,
            dims,
            defer,
        })
    }

    /// The batch norm with this batch's statistics.
    pub fn affine(&self) -> Affine<'_> {
        Affine {
            mean: &self.stats.mean,
            inv_std: &self.stats.inv_std,
            gamma: values(&self.values[1]),
            beta: values(&self.values[2]),
            clamp: self.clamp,
        }
    }

    /// The op `backward` over x, gamma, beta, weight and bias with output `out`: its output,
    /// and the batch mean and biased variance (untracked, for the running statistics).
    /// `state` makes the op's state from the batch norm's and the contiguous weight.
    pub fn finish<B: Backward<Flex, 5>>(
        self,
        backward: B,
        out: FlexTensor,
        state: impl FnOnce(BatchNormState, FlexTensor) -> B::State,
    ) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
        let c = self.dims[1];
        let untracked = |v: &[f32]| into_tensor(AutodiffTensor::new(flex_tensor(v.to_vec(), [c])));
        let (mean, var) = (untracked(&self.stats.mean), untracked(&self.stats.var));
        let [x, gamma, beta, weight, _] = self.values;
        let y = match backward
            .prepare::<NoCheckpointing>(self.tracked.each_ref().map(|t| t.node()))
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let norm = BatchNormState {
                    x,
                    gamma,
                    beta,
                    mean: self.stats.mean,
                    inv_std: self.stats.inv_std,
                    clamp: self.clamp,
                    dims: self.dims,
                    defer: self.defer,
                };
                prep.finish(state(norm, weight), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        (into_tensor(y), mean, var)
    }
}

/// `depthwise(clamp(batch_norm(x)))` with the batch's own statistics, as one autodiff op:
/// the convolution's output, and the batch mean and biased variance per channel (untracked,
/// for the running statistics). `None` when the convolution is not depthwise or the tensors
/// are not autodiff flex tensors (the caller then runs the two ops apart).
pub fn norm_depthwise(
    x: &Tensor<4>,
    norm: BatchNormArgs,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    conv: &Conv,
) -> Option<(Tensor<4>, Tensor<1>, Tensor<1>)> {
    let geometry = Geometry::new(x.dims(), weight.dims(), conv)?;
    let c = geometry.c;
    let joined = Joined::new(x, norm, weight, bias, c)?;
    let [xv, _, _, wv, biasv] = &joined.values;
    let (n, ohw) = (geometry.n, geometry.oh * geometry.ow);
    let (xs, ws, bs) = (
        values(xv),
        values(wv),
        bias.is_some().then(|| values(biasv)),
    );
    let affine = joined.affine();
    // The output's moments where they cost less than the next batch norm's own pass: the
    // grouped pass sums a vector of channels a pixel from its pixel-major output, on any
    // map; plane by plane, a plane of at least `MIN_PLANE` values.
    let (out, moments) = if geometry.by_channel_groups() || ohw >= handed::MIN_PLANE {
        let (out, moments) = geometry.forward_with_moments(xs, ws, bs, Some(&affine));
        (out, Some(moments))
    } else {
        (
            geometry.forward_mapped(xs, ws, bs, Act::NONE, Some(&affine)),
            None,
        )
    };
    let out = flex_tensor(out, [n, c, geometry.oh, geometry.ow]);
    let takes_deferred = geometry.takes_grad_map();
    let weight_shape = weight.dims();
    let (y, mean, var) = joined.finish(NormDepthwiseBackward, out, |norm, weight| {
        NormDepthwiseState {
            norm,
            geometry,
            weight,
            weight_shape,
        }
    });
    // The output's statistics for the batch norm that reads it next (an inverted-residual
    // block's second, joined to the project 1x1).
    if let Some(t) = tracked(&y) {
        if let Some(moments) = moments {
            handed::hand(t.id(), [n, c, ohw], moments);
        }
        // Its backward pass takes the next batch norm's input gradient unwritten.
        if takes_deferred {
            deferred::offer(t.id());
        }
    }
    Some((y, mean, var))
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::tests::{constant, grad, leaf, loss, max_diff, vals};
    use super::*;

    /// A batch norm joined to the convolution that reads it (`norm_depthwise`,
    /// `norm_pointwise`) against Graft's two ops apart (each checked against burn's in `train.rs`):
    /// the same output, batch statistics and gradients for the input, gamma, beta, weight
    /// and bias; the clamp must cut where it has a lower bound. `false` where `fused`
    /// declines (the caller says whether it may).
    pub(in crate::engine::fast_cpu::train) fn fused_matches_apart(
        fused: impl Fn(
            &Tensor<4>,
            BatchNormArgs,
            &Tensor<4>,
            Option<&Tensor<1>>,
            &Conv,
        ) -> Option<(Tensor<4>, Tensor<1>, Tensor<1>)>,
        ([n, c, h, w], weight, conv): ([usize; 4], [usize; 4], &Conv),
        clamp: (f32, f32),
        with_bias: bool,
    ) -> bool {
        let what = format!("{n}x{c} {h}x{w} weight {weight:?} {conv:?} {clamp:?} {with_bias}");
        let make = || {
            let x = constant([n, c, h, w], 1, 0.5).require_grad();
            let (gamma, beta) = (leaf([c], 4), leaf([c], 9));
            let (wt, b) = (leaf(weight, 7), leaf([weight[0]], 3));
            (x, gamma, beta, wt, b)
        };
        let (x, gamma, beta, wt, b) = make();
        let norm = BatchNormArgs {
            gamma: &gamma,
            beta: &beta,
            epsilon: 1e-5,
            clamp,
        };
        let Some((y, mean, var)) = fused(&x, norm, &wt, with_bias.then_some(&b), conv) else {
            return false;
        };
        let got_y = vals(y.clone().detach());
        let gg = loss(y, 13);

        let (xr, gr_, br_, wr, br) = make();
        let (z, mean_r, var_r) =
            super::super::batch_norm(&xr, &gr_, &br_, 1e-5, clamp).expect("applies");
        let yr = super::super::conv(&z, &wr, with_bias.then_some(&br), conv).expect("applies");
        let want_y = vals(yr.clone().detach());
        let gr = loss(yr, 13);
        assert_eq!(vals(mean), vals(mean_r), "{what}: mean");
        assert_eq!(vals(var), vals(var_r), "{what}: variance");
        assert!(max_diff(&got_y, &want_y) < 1e-5, "{what}: output");
        let z = vals(z.detach());
        if clamp.0 > f32::NEG_INFINITY {
            assert!(z.contains(&clamp.0), "{what}: the clamp cuts");
        }
        let mut pairs = vec![
            ("x", grad(&x, &gg), grad(&xr, &gr)),
            ("gamma", grad(&gamma, &gg), grad(&gr_, &gr)),
            ("beta", grad(&beta, &gg), grad(&br_, &gr)),
            ("weight", grad(&wt, &gg), grad(&wr, &gr)),
        ];
        if with_bias {
            pairs.push(("bias", grad(&b, &gg), grad(&br, &gr)));
        }
        // Batch norm's sums may be taken in another order (per plane in the depthwise
        // pair, per chunk of pixels in the 1x1 one, per channel apart): the same values
        // added differently in f32 lanes. Beta's gradient, Σ g over a channel, cancels most
        // (2e-6 of its largest value on a 2 x 24 x 24 map with no clamp); a sum that
        // missed or miscut a chunk is off by whole terms.
        for (name, a, b) in pairs {
            let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            let err = max_diff(&a, &b) / scale;
            assert!(
                err < 1e-5,
                "{what}: {name} gradient off by {err} (relative)"
            );
        }
        true
    }

    /// The fused op against batch norm and the depthwise convolution run apart
    /// (`fused_matches_apart`). Cases for every way a plane is staged: 16-lane planes (3x3
    /// stride 1, 5x5 stride 2 with asymmetric padding), 8-lane rows (a dilated filter), and
    /// groups of 16 channels on narrow maps (stride 1 and 2, the last group partial; at
    /// stride 2 on planes whose batch norm sums the input gradient's pass takes) where the
    /// machine has AVX-512; clamps that cut at one bound, both, or none; with and without a
    /// bias.
    #[test]
    fn norm_depthwise_matches_the_ops_apart() {
        let none = (f32::NEG_INFINITY, f32::INFINITY);
        let relu = (0.0, f32::INFINITY);
        // (n, c, h, w, k, stride, dilation, pads [t, l, b, r], clamp, bias)
        let cases = [
            (2, 3, 9, 40, 3, 1, 1, [1, 1, 1, 1], (0.0, 6.0), true),
            (2, 3, 10, 70, 5, 2, 1, [1, 2, 2, 1], (-0.3, 0.5), false),
            (1, 4, 8, 37, 3, 1, 2, [2, 2, 2, 2], none, true),
            (2, 18, 14, 14, 5, 1, 1, [2, 2, 2, 2], (-0.3, 0.5), true),
            (2, 20, 9, 9, 3, 2, 1, [1, 1, 1, 1], relu, false),
            // Groups at stride 2 on planes large enough for the input gradient's pass to
            // take batch norm's sums (`SUMS_FROM`), the last group partial.
            (2, 18, 36, 36, 5, 2, 1, [1, 1, 2, 2], (0.0, 6.0), false),
        ];
        for (n, c, h, w, k, s, d, pads, clamp, with_bias) in cases {
            let conv = Conv {
                strides: [s, s],
                pads,
                dilations: [d, d],
                groups: c,
            };
            let shapes = ([n, c, h, w], [c, 1, k, k], &conv);
            assert!(fused_matches_apart(
                norm_depthwise,
                shapes,
                clamp,
                with_bias
            ));
        }
    }
}

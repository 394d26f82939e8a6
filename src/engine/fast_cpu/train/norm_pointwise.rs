//! Batch normalisation with batch statistics, its clamp and the 1x1 convolution that alone
//! reads it (an inverted-residual block's depthwise batch norm and project step; a block's
//! last batch norm and the next block's expand where no skip joins them) as one autodiff op,
//! where the 1x1's kernels can map their input (`pointwise::maps_input`). The normalised
//! activation is never written: the 1x1 takes its input through the batch norm as it packs
//! it, and its weight gradient as it reads or packs each chunk (`norm::InputMap`). Apart, batch norm wrote it and the 1x1 read it back,
//! the batch norm's pass memory-bound (51 MB read and written for Lite0's 112x112 block at
//! batch 32), and autodiff kept it as well as the batch norm's input. The values and
//! gradients are those of the two ops run apart (`norm_pointwise_matches_the_ops_apart`).

use super::super::pointwise;
use super::norm_depthwise::Joined;
use super::{
    Act, BatchNormArgs, BatchNormState, contiguous, flex_tensor, profile, register_weight_bias,
    values,
};
use crate::engine::precision::{self, Precision};
use crate::graph::Conv;
use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::Tensor;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops};

#[derive(Debug)]
struct NormPointwiseBackward;

/// What the backward pass needs: the batch norm's, and the 1x1's dimensions and filters.
#[derive(Clone, Debug)]
struct NormPointwiseState {
    norm: BatchNormState,
    /// `[n, c, co, hw]`.
    dims: [usize; 4],
    weight: FlexTensor,
    weight_shape: [usize; 4],
    /// The forward pass's (`precision::training`), for the gradients' products.
    precision: Precision,
}

impl Backward<Flex, 5> for NormPointwiseBackward {
    type State = NormPointwiseState;

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x, gamma, beta, w, b] = ops.parents.map(|p| p.map(|node| node.id));
        let g = contiguous(&grads.consume::<Flex>(&ops.node));
        let s = ops.state;
        let x_shape = s.norm.x.layout().shape().clone();
        let (grads_1x1, sums) = profile::time("backward: Conv 1x1", &x_shape, || {
            pointwise::backward_mapped(
                (values(&s.norm.x), Some(&s.norm.affine())),
                values(&s.weight),
                (values(&g), None),
                s.dims,
                x.is_some() || gamma.is_some() || beta.is_some(),
                (w.is_some() || b.is_some(), b.is_some()),
                s.precision,
            )
        });
        if let Some(dz) = grads_1x1.x {
            s.norm.backward(
                flex_tensor(dz, x_shape),
                sums.as_deref(),
                [x, gamma, beta],
                grads,
            );
        }
        register_weight_bias(grads_1x1.weight_bias, s.weight_shape, [w, b], grads);
    }
}

/// `conv1x1(clamp(batch_norm(x)))` with the batch's own statistics, as one autodiff op: the
/// convolution's output, and the batch mean and biased variance per channel (untracked, for
/// the running statistics). `None` when the convolution is not a 1x1 these kernels map
/// (`pointwise::maps_input`) or the tensors are not autodiff flex tensors (the caller then
/// runs the two ops apart).
pub fn norm_pointwise(
    x: &Tensor<4>,
    norm: BatchNormArgs,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    conv: &Conv,
) -> Option<(Tensor<4>, Tensor<1>, Tensor<1>)> {
    let dims = pointwise::dims(x.dims(), weight.dims(), conv)?;
    let [n, _, co, _] = dims;
    if !pointwise::maps_input(dims) {
        return None;
    }
    let joined = Joined::new(x, norm, weight, bias, co)?;
    let [xv, _, _, wv, biasv] = &joined.values;
    let precision = precision::training();
    let out = pointwise::forward_mapped(
        values(xv),
        &joined.affine(),
        values(wv),
        bias.is_some().then(|| values(biasv)),
        dims,
        Act::NONE,
        precision,
    );
    let [_, _, h, w] = x.dims();
    let out = flex_tensor(out, [n, co, h, w]);
    let weight_shape = weight.dims();
    Some(joined.finish(NormPointwiseBackward, out, |norm, weight| {
        NormPointwiseState {
            norm,
            dims,
            weight,
            weight_shape,
            precision,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::super::norm_depthwise::tests::fused_matches_apart;
    use super::*;

    /// The fused op against batch norm and the 1x1 convolution run apart
    /// (`fused_matches_apart`). Maps past one chunk of the dot products with a partial last
    /// vector; more input than output channels and the other way round; small maps (the
    /// matrix kernel); clamps that cut at one bound, both, or none; with and without a bias.
    /// In a pool of two threads, so that every case is joined where the machine has AVX-512.
    #[test]
    fn norm_pointwise_matches_the_ops_apart() {
        let none = (f32::NEG_INFINITY, f32::INFINITY);
        // (n, c, co, h, w, clamp, bias)
        let cases = [
            (2, 40, 5, 23, 51, (0.0, 6.0), true),
            (3, 28, 33, 32, 17, (-0.3, 0.5), false),
            (2, 26, 3, 24, 24, none, true),
            // Small maps: the matrix kernel's weight gradient, images split over the threads
            // or one spread over them.
            (3, 48, 16, 14, 14, (-0.3, 0.5), false),
            (1, 32, 8, 7, 7, (0.0, 6.0), true),
        ];
        let conv = Conv {
            strides: [1, 1],
            pads: [0; 4],
            dilations: [1, 1],
            groups: 1,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a pool");
        for (n, c, co, h, w, clamp, with_bias) in cases {
            let shapes = ([n, c, h, w], [co, c, 1, 1], &conv);
            let joined =
                pool.install(|| fused_matches_apart(norm_pointwise, shapes, clamp, with_bias));
            let applies = pool.install(|| pointwise::maps_input([n, c, co, h * w]));
            assert_eq!(
                joined, applies,
                "{n}x{c} -> {co} {h}x{w}: joined where it applies"
            );
            if super::super::super::has_avx512() {
                assert!(joined, "{n}x{c} -> {co} {h}x{w}: joined on AVX-512");
            }
        }
    }
}

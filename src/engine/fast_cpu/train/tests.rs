use super::super::tests::seq;
use super::*;
use burn::tensor::module::{batch_norm_train, conv2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Gradients as TensorGradients};

/// A tensor on the autodiff CPU device (values `offset` + [-1, 1)).
pub(super) fn constant<const D: usize>(shape: [usize; D], seed: u32, offset: f32) -> Tensor<D> {
    let len = shape.iter().product();
    let v = seq(len, seed)
        .into_iter()
        .map(|v| v + offset)
        .collect::<Vec<_>>();
    Tensor::from_data(TensorData::new(v, shape), &Device::flex().autodiff())
}

/// A leaf tensor on the autodiff CPU device that asks for its gradient.
pub(super) fn leaf<const D: usize>(shape: [usize; D], seed: u32) -> Tensor<D> {
    constant(shape, seed, 0.0).require_grad()
}

pub(super) fn vals<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

pub(super) fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Σ y·r for a fixed r, so every output has its own gradient weight.
pub(super) fn loss<const D: usize>(y: Tensor<D>, seed: u32) -> TensorGradients {
    let r = Tensor::from_data(
        TensorData::new(seq(y.shape().num_elements(), seed), y.dims()),
        &y.device(),
    );
    y.mul(r).sum().backward()
}

pub(super) fn grad<const D: usize>(t: &Tensor<D>, grads: &TensorGradients) -> Vec<f32> {
    vals(t.grad(grads).expect("a gradient"))
}

/// Each case's forward output and x, weight and bias gradients against burn's conv2d
/// under autodiff: depthwise with strides 1 and 2, dilation, asymmetric padding, narrow
/// and wide rows, 1x1, and dense (k×k, strided, dilated).
#[test]
fn conv_gradients_match_burn() {
    // (n, c, co, h, w, k, stride, dilation, pads [t, l, b, r], groups)
    let cases = [
        (2, 3, 3, 9, 11, 3, 1, 1, [1, 1, 1, 1], 3),
        (2, 4, 4, 8, 8, 3, 2, 1, [0, 0, 1, 1], 4),
        (1, 3, 3, 10, 7, 5, 2, 1, [1, 2, 2, 1], 3),
        (2, 2, 2, 12, 12, 3, 1, 2, [2, 2, 2, 2], 2),
        (3, 5, 5, 6, 45, 3, 1, 1, [1, 1, 1, 1], 5),
        (2, 3, 3, 7, 9, 3, 2, 1, [1, 1, 1, 1], 3),
        // More channels than one group of 16 (narrow maps go by groups on AVX2 and
        // AVX-512), the last group partial (4 channels; 13, whose second AVX2 vector is
        // partial): 5x5 stride 1, and 3x3 stride 2.
        (2, 20, 20, 7, 7, 5, 1, 1, [2, 2, 2, 2], 20),
        (2, 29, 29, 9, 9, 3, 2, 1, [1, 1, 1, 1], 29),
        // Rows of tiles of 7 outputs (the weight gradient's sliding tap sums), strides 1
        // and 2.
        (2, 17, 17, 14, 14, 3, 1, 1, [1, 1, 1, 1], 17),
        (3, 17, 17, 14, 14, 5, 1, 1, [2, 2, 2, 2], 17),
        (2, 17, 17, 14, 14, 3, 2, 1, [1, 1, 1, 1], 17),
        (1, 17, 17, 28, 28, 5, 2, 1, [2, 2, 2, 2], 17),
        (2, 18, 18, 9, 9, 3, 2, 1, [1, 1, 1, 1], 18),
        // Strided rows of 24-31 outputs: the forward pass in 16-lane planes
        // (`depthwise_wide.rs`), the gradients by groups (`grads_by_channel_groups`); and a
        // wide strided 5x5, both passes plane by plane.
        (2, 18, 18, 6, 50, 3, 2, 1, [1, 1, 1, 1], 18),
        (1, 3, 3, 9, 70, 5, 2, 1, [2, 2, 2, 2], 3),
        // Wide 3x3 stride-2 planes, both paddings: the input gradient written in place
        // (`depthwise_stride2.rs`).
        (2, 3, 3, 10, 70, 3, 2, 1, [0, 0, 1, 1], 3),
        (1, 3, 3, 9, 67, 3, 2, 1, [1, 1, 1, 1], 3),
        (2, 5, 7, 3, 4, 1, 1, 1, [0; 4], 1),
        // More pixels than one block of the weight gradient's sum (`GRAD_KC`).
        (3, 16, 24, 20, 30, 1, 1, 1, [0; 4], 1),
        // One image: the weight gradient's output channels split over the threads.
        (1, 8, 40, 9, 9, 1, 1, 1, [0; 4], 1),
        // Small maps, many images: the weight gradient's per-thread sums over images.
        (9, 12, 20, 7, 7, 1, 1, 1, [0; 4], 1),
        (40, 6, 13, 7, 7, 1, 1, 1, [0; 4], 1),
        // Large maps, a small weight: the weight gradient as dot products (`dot_grad`)
        // where the machine has AVX-512 and the images outnumber the threads.
        (4, 8, 12, 33, 32, 1, 1, 1, [0; 4], 1),
        // Dense: a stem (3 channels, 3x3 stride 2, padding bottom/right only), 3x3 with
        // padding, a strided 1x1, 5x5 dilated; images enough for two chunks of patches
        // only at real sizes, so one here.
        (2, 3, 8, 15, 15, 3, 2, 1, [0, 0, 1, 1], 1),
        (3, 5, 7, 9, 8, 3, 1, 1, [1, 1, 1, 1], 1),
        (2, 6, 4, 8, 9, 1, 2, 1, [0; 4], 1),
        (2, 2, 3, 12, 11, 5, 1, 2, [3, 2, 1, 4], 1),
        // Strided input gradients by phases (`dense_backward.rs`): ResNet's 3x3 stride 2
        // on odd and even sizes, its 7x7 stride-2 stem, a 3x3 of stride 3, and a 1x1 of
        // stride 3 (phases no tap reaches: zeros).
        (2, 4, 6, 9, 10, 3, 2, 1, [1, 1, 1, 1], 1),
        (1, 2, 3, 13, 12, 7, 2, 1, [3, 3, 3, 3], 1),
        (1, 2, 2, 10, 11, 3, 3, 1, [1, 1, 1, 1], 1),
        (1, 3, 2, 10, 8, 1, 3, 1, [0; 4], 1),
    ];
    for (n, c, co, h, w, k, s, d, pads, groups) in cases {
        let what = format!("{n}x{c}->{co} {h}x{w} k{k} s{s} d{d} {pads:?} g{groups}");
        let conv = Conv {
            strides: [s, s],
            pads,
            dilations: [d, d],
            groups,
        };
        let (x, wt, b) = (
            leaf([n, c, h, w], 1),
            leaf([co, c / groups, k, k], 7),
            leaf([co], 3),
        );
        let y = super::conv(&x, &wt, Some(&b), &conv).expect("applies");
        let got_y = vals(y.clone().detach());
        let gg = loss(y, 11);

        let (xr, wr, br) = (
            leaf([n, c, h, w], 1),
            leaf([co, c / groups, k, k], 7),
            leaf([co], 3),
        );
        let opts = ConvOptions::new_with_padding(
            [s, s],
            [(pads[0], pads[2]), (pads[1], pads[3])],
            [d, d],
            groups,
        );
        let yr = conv2d(xr.clone(), wr.clone(), Some(br.clone()), opts);
        assert_eq!(got_y.len(), yr.shape().num_elements(), "{what}");
        let want_y = vals(yr.clone().detach());
        let gr = loss(yr, 11);
        assert!(max_diff(&got_y, &want_y) < 1e-4, "{what}: output");
        for (name, a, b) in [
            ("x", grad(&x, &gg), grad(&xr, &gr)),
            ("weight", grad(&wt, &gg), grad(&wr, &gr)),
            ("bias", grad(&b, &gg), grad(&br, &gr)),
        ] {
            // Relative to the gradient's size, as tight as 1e-3 for gradients up to 10:
            // a weight gradient summing thousands of products (4 images of 33x32) rounds
            // differently by path — AVX-512's dot products, AVX2's matrix kernel, burn's
            // — and on AVX2 came 1.05e-3 from burn's.
            let err = max_diff(&a, &b);
            let scale = b.iter().fold(10.0f32, |m, v| m.max(v.abs()));
            assert!(
                err < 1e-4 * scale,
                "{what}: {name} gradient off by {err} (largest {scale})"
            );
        }
    }
}

/// Without a bias, and with a weight that wants no gradient (a frozen layer): values and
/// x's gradient, depthwise, 1x1 and dense.
#[test]
fn conv_without_bias_or_weight_gradient() {
    for (weight_shape, pad, groups) in [
        ([4, 1, 3, 3], 1, 4),
        ([6, 4, 1, 1], 0, 1),
        ([5, 4, 3, 3], 1, 1),
    ] {
        let conv = Conv {
            strides: [1, 1],
            pads: [pad; 4],
            dilations: [1, 1],
            groups,
        };
        let x = leaf([2, 4, 5, 6], 1);
        let frozen = constant(weight_shape, 2, 0.0);
        let y = super::conv(&x, &frozen, None, &conv).expect("applies");
        let got_y = vals(y.clone().detach());
        let grads = loss(y, 5);
        let xr = leaf([2, 4, 5, 6], 1);
        let opts = ConvOptions::new([1, 1], [pad, pad], [1, 1], groups);
        let yr = conv2d(xr.clone(), frozen.clone(), None, opts);
        assert!(max_diff(&got_y, &vals(yr.clone().detach())) < 1e-4);
        let gr = loss(yr, 5);
        assert!(max_diff(&grad(&x, &grads), &grad(&xr, &gr)) < 1e-4);
    }
}

#[test]
fn batch_norm_matches_burn() {
    let none = (f32::NEG_INFINITY, f32::INFINITY);
    // A large mean next to a small spread: the variance must survive it. A narrow clamp
    // cuts values at both bounds.
    let cases = [
        ([4, 3, 5, 7], 0.0f32, none),
        ([2, 6, 9, 9], 100.0, none),
        ([3, 4, 6, 5], 0.0, (-0.3, 0.5)),
        ([2, 5, 4, 4], 0.0, (0.0, f32::INFINITY)),
        // Small planes, many channels: tasks take blocks of channels (`norm::channel_blocks`),
        // the last one short.
        ([2, 301, 2, 3], 0.0, (0.0, 6.0)),
        // Planes of 64 values and more go plane by plane, smaller ones as runs.
        ([2, 3, 16, 17], 0.0, (0.0, 6.0)),
    ];
    for (shape, offset, (lo, hi)) in cases {
        let what = format!("{shape:?} +{offset} [{lo}, {hi}]");
        let x = constant(shape, 1, offset).require_grad();
        let (gamma, beta) = (leaf([shape[1]], 4), leaf([shape[1]], 9));
        let (y, mean, var) = batch_norm(&x, &gamma, &beta, 1e-5, (lo, hi)).expect("applies");
        let got_y = vals(y.clone().detach());
        let gg = loss(y, 13);

        let xr = constant(shape, 1, offset).require_grad();
        let (gr_, br) = (leaf([shape[1]], 4), leaf([shape[1]], 9));
        let r = batch_norm_train(xr.clone(), gr_.clone(), br.clone(), 1e-5);
        assert!(max_diff(&vals(mean), &vals(r.mean)) < 1e-4 * (1.0 + offset));
        assert!(max_diff(&vals(var), &vals(r.variance)) < 1e-4);
        let yr = r.output.clamp(lo, hi);
        let want_y = vals(yr.clone().detach());
        assert!(max_diff(&got_y, &want_y) < 1e-3, "{what}: output");
        if lo > f32::NEG_INFINITY {
            assert!(want_y.contains(&lo), "{what}: the clamp cuts");
        }
        let gr = loss(yr, 13);
        for (name, a, b) in [
            ("x", grad(&x, &gg), grad(&xr, &gr)),
            ("gamma", grad(&gamma, &gg), grad(&gr_, &gr)),
            ("beta", grad(&beta, &gg), grad(&br, &gr)),
        ] {
            let err = max_diff(&a, &b);
            assert!(err < 2e-3, "{what}: {name} gradient off by {err}");
        }
    }
}

/// ReLU6 and ReLU: values and gradients (zero outside the bounds and at them, like
/// PyTorch), for an unshared input (changed in place) and a shared one (copied: the
/// other holder keeps its values).
#[test]
fn clamp_values_and_gradients() {
    let data = vec![-2.0f32, 0.0, 0.5, 6.0, 7.0, 3.0];
    let dev = Device::flex().autodiff();
    for (lo, hi) in [(0.0, 6.0), (0.0, f32::INFINITY)] {
        for shared in [false, true] {
            let x = Tensor::<1>::from_data(TensorData::new(data.clone(), [6]), &dev).require_grad();
            let input = if shared {
                x.clone()
            } else {
                x.clone().mul_scalar(1.0)
            };
            let y = super::clamp(input, lo, hi, |_| panic!("applies"));
            let want: Vec<f32> = data.iter().map(|&v| v.clamp(lo, hi)).collect();
            assert_eq!(vals(y.clone().detach()), want);
            let grads = y.sum().backward();
            let want_grad: Vec<f32> = data
                .iter()
                .map(|&v| if lo < v && v < hi { 1.0 } else { 0.0 })
                .collect();
            assert_eq!(grad(&x, &grads), want_grad, "[{lo}, {hi}] shared {shared}");
            assert_eq!(vals(x.detach()), data);
        }
    }
    // Not an autodiff tensor: given back untouched.
    let plain = Tensor::<1>::from_data(TensorData::new(data.clone(), [6]), &Device::flex());
    let mut given_back = false;
    let y = super::clamp(plain, 0.0, 6.0, |t| {
        given_back = true;
        t
    });
    assert!(given_back);
    assert_eq!(vals(y), data);
}

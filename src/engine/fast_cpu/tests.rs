//! The kernels' entry points (`fast_cpu/mod.rs`) against burn's own ops, and helpers the
//! kernel files' tests share.

use super::*;
use burn::tensor::Device;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;

#[path = "tests_norm.rs"]
mod norm_backward;

/// The largest difference between two tensors of the same shape.
pub(super) fn max_diff<const D: usize>(got: Tensor<D>, want: Tensor<D>) -> f32 {
    assert_eq!(got.dims(), want.dims(), "shapes");
    let g: Vec<f32> = got.into_data().try_to_vec::<f32>().unwrap();
    let e: Vec<f32> = want.into_data().try_to_vec::<f32>().unwrap();
    g.iter()
        .zip(&e)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Deterministic values in [-1, 1) (also for `train`'s tests).
pub(super) fn seq(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let v = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
            (v % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// burn's own op for a fused activation.
fn burn_act(t: Tensor<4>, act: Act) -> Tensor<4> {
    match act {
        Act::Clamp(lo, hi) => t.clamp_min(lo).clamp_max(hi),
        Act::Silu => burn::tensor::activation::silu(t),
    }
}

/// The fused kernel against burn's own convolution + activation, over the shapes networks use:
/// strides 1 and 2, dilation, asymmetric (TensorFlow "same") padding, 3x3 and 5x5.
#[test]
fn depthwise_matches_burn() {
    let dev = Device::flex();
    let cases = [
        // (h, w, k, stride, dilation, pads [t, l, b, r], activation)
        (9, 11, 3, 1, 1, [1, 1, 1, 1], Act::Clamp(0.0, 6.0)),
        (8, 8, 3, 2, 1, [0, 0, 1, 1], Act::Clamp(0.0, 6.0)),
        (10, 7, 5, 2, 1, [1, 2, 2, 1], Act::NONE),
        (
            12,
            12,
            3,
            1,
            2,
            [2, 2, 2, 2],
            Act::Clamp(0.0, f32::INFINITY),
        ),
        (5, 6, 3, 1, 1, [0, 0, 0, 0], Act::Clamp(-0.5, 0.5)),
        (9, 11, 3, 1, 1, [1, 1, 1, 1], Act::Silu),
        // Rows of 32 or more outputs take the 4-vector path.
        (6, 45, 3, 1, 1, [1, 1, 1, 1], Act::Clamp(0.0, 6.0)),
        (7, 70, 5, 2, 1, [1, 2, 2, 1], Act::Clamp(0.0, 6.0)),
        (6, 45, 3, 1, 1, [1, 1, 1, 1], Act::Silu),
        // Stride 2 with an odd left pad (even columns to phase 1), and stride 3.
        (9, 9, 3, 2, 1, [1, 1, 1, 1], Act::NONE),
        (11, 10, 3, 3, 1, [1, 1, 1, 1], Act::Clamp(0.0, 6.0)),
        // 7 rows: a tile of 4, a pair, one.
        (7, 7, 5, 1, 1, [2, 2, 2, 2], Act::Clamp(0.0, 6.0)),
        // Narrow maps' sliding tiles (`depthwise_blocked::Geometry::sliding`): 3x3 on rows
        // of 14 (two tiles of 7), 5x5 on rows of 10 (tiles of 8, the second partial).
        (6, 14, 3, 1, 1, [1, 1, 1, 1], Act::Clamp(0.0, 6.0)),
        (6, 10, 5, 1, 1, [2, 2, 2, 2], Act::Silu),
        // 16-lane rows plane by plane on AVX-512 (`depthwise_wide.rs`): runs of 4 vectors and
        // one of 1 (rows of 70, 13 rows: bands of 8, 4, 1), of 3 (40 columns, bands of 2 and
        // one row), two runs of 4 (120), and strided rows of 24 or more (25 outputs, 2
        // vectors in bands of 4; an odd left pad), SiLU and no activation.
        (13, 70, 3, 1, 1, [1, 1, 1, 1], Act::Clamp(0.0, 6.0)),
        (31, 40, 5, 1, 1, [2, 2, 2, 2], Act::Silu),
        (5, 120, 3, 1, 1, [1, 1, 1, 1], Act::NONE),
        (15, 50, 3, 2, 1, [1, 1, 1, 1], Act::Clamp(0.0, 6.0)),
        (49, 49, 5, 2, 1, [1, 2, 2, 1], Act::Silu),
    ];
    for (h, w, k, s, d, pads, act) in cases {
        // 29 channels: narrow maps go by groups of 16 channels (`depthwise_blocked.rs`), one
        // whole and one of 13 (on AVX2, a whole vector and one of 5).
        let (n, c) = (2, 29);
        let x = Tensor::<4>::from_data(TensorData::new(seq(n * c * h * w, 1), [n, c, h, w]), &dev);
        let wt = Tensor::<4>::from_data(TensorData::new(seq(c * k * k, 7), [c, 1, k, k]), &dev);
        let b = Tensor::<1>::from_data(TensorData::new(seq(c, 3), [c]), &dev);
        let conv = Conv {
            strides: [s, s],
            pads,
            dilations: [d, d],
            groups: c,
        };
        let got = depthwise_conv(&x, &wt, Some(&b), &conv, act).expect("applies");
        let opts = ConvOptions::new_with_padding(
            [s, s],
            [(pads[0], pads[2]), (pads[1], pads[3])],
            [d, d],
            c,
        );
        let want = burn_act(conv2d(x, wt, Some(b), opts), act);
        let case = format!("case {h}x{w} k{k} s{s} d{d} {pads:?} {act:?}");
        assert_eq!(got.dims(), want.dims(), "{case}");
        let err = max_diff(got, want);
        assert!(err < 1e-5, "{case}: error {err}");
    }
}

#[test]
fn pointwise_matches_burn() {
    let dev = Device::flex();
    // Small and large channel counts (one tile, many tiles), with and without bias.
    for (n, c, co, h, w, bias, act) in [
        (2, 5, 7, 3, 4, true, Act::Clamp(0.0, 6.0)),
        (3, 16, 24, 20, 30, false, Act::Clamp(0.0, 6.0)),
        (1, 8, 2048, 6, 6, true, Act::Clamp(0.0, 6.0)),
        (2, 5, 7, 3, 4, true, Act::Silu),
        (3, 16, 24, 20, 30, true, Act::NONE),
        // Small maps, many images: runs of pixels cross from one image into the next.
        (40, 8, 13, 7, 7, true, Act::Silu),
        (33, 20, 9, 5, 5, false, Act::Clamp(0.0, 6.0)),
        // One small image, long sums: pixels as the kernel's rows where AVX-512 runs
        // (`mm::by_pixels`), 5 pairs of strips split in runs of pixels, a lone last strip.
        (1, 96, 160, 7, 7, true, Act::Clamp(0.0, 6.0)),
        (1, 64, 40, 6, 9, false, Act::Silu),
    ] {
        let x = Tensor::<4>::from_data(TensorData::new(seq(n * c * h * w, 1), [n, c, h, w]), &dev);
        let wt = Tensor::<4>::from_data(TensorData::new(seq(co * c, 5), [co, c, 1, 1]), &dev);
        let b = bias.then(|| Tensor::<1>::from_data(TensorData::new(seq(co, 9), [co]), &dev));
        let conv = Conv {
            strides: [1, 1],
            pads: [0; 4],
            dilations: [1, 1],
            groups: 1,
        };
        let got = pointwise_conv(&x, &wt, b.as_ref(), &conv, act, &PackedFilters::default())
            .expect("applies");
        let want = burn_act(
            conv2d(x, wt, b, ConvOptions::new([1, 1], [0, 0], [1, 1], 1)),
            act,
        );
        let err = max_diff(got, want);
        assert!(err < 1e-4, "{n}x{c}->{co} {h}x{w} {act:?}: error {err}");
    }
}

/// The fused 1x1 + depthwise pass against the two kernels run one after the other:
/// channel counts that leave a partial panel and a partial block, several blocks per
/// image (a large map), many small images, strides 1 and 2, 3x3 and 5x5, with and without
/// biases, ReLU6 and SiLU on either convolution.
#[test]
fn expand_depthwise_matches_the_two_kernels() {
    let dev = Device::flex();
    let silu = Act::Silu;
    let relu6 = Act::Clamp(0.0, 6.0);
    if !mm::available() {
        return;
    }
    for (n, c, co, h, w, k, stride, bias, acts) in [
        (2, 5, 13, 9, 11, 3, 1, true, [relu6, relu6]),
        (1, 16, 96, 56, 56, 3, 2, true, [relu6, relu6]),
        (3, 24, 144, 30, 30, 5, 1, false, [silu, Act::NONE]),
        (9, 40, 50, 7, 7, 3, 1, true, [Act::NONE, silu]),
    ] {
        let x = Tensor::<4>::from_data(TensorData::new(seq(n * c * h * w, 1), [n, c, h, w]), &dev);
        let w1 = Tensor::<4>::from_data(TensorData::new(seq(co * c, 5), [co, c, 1, 1]), &dev);
        let b1 = Tensor::<1>::from_data(TensorData::new(seq(co, 9), [co]), &dev);
        let w2 = Tensor::<4>::from_data(TensorData::new(seq(co * k * k, 3), [co, 1, k, k]), &dev);
        let b2 = Tensor::<1>::from_data(TensorData::new(seq(co, 4), [co]), &dev);
        let (b1, b2) = (bias.then_some(&b1), bias.then_some(&b2));
        let one = Conv {
            strides: [1, 1],
            pads: [0; 4],
            dilations: [1, 1],
            groups: 1,
        };
        let pad = k / 2;
        let dw = Conv {
            strides: [stride; 2],
            pads: [pad; 4],
            dilations: [1, 1],
            groups: co,
        };
        let packs = PackedFilters::default();
        let step = |weight, bias, conv, act| ConvStep {
            weight,
            bias,
            conv,
            act,
        };
        let got = expand_depthwise_always(
            &x,
            step(&w1, b1, &one, acts[0]),
            &packs,
            step(&w2, b2, &dw, acts[1]),
        )
        .expect("applies");
        let mid = pointwise_conv(&x, &w1, b1, &one, acts[0], &packs).expect("1x1");
        let want = depthwise_conv(&mid, &w2, b2, &dw, acts[1]).expect("depthwise");
        let case = format!("{n}x{c}->{co} {h}x{w} k{k} s{stride} {acts:?}");
        assert_eq!(got.dims(), want.dims(), "{case}");
        let err = max_diff(got, want);
        assert!(err < 1e-5, "{case}: error {err}");
    }
}

/// The fused pass is declined where its blocks are too few for the threads (one image of
/// Lite0's 144-channel block: three blocks of 48 channels) and taken for a batch.
#[test]
fn expand_depthwise_is_declined_for_too_few_blocks() {
    let dw = |n| {
        let conv = Conv {
            strides: [2, 2],
            pads: [2; 4],
            dilations: [1, 1],
            groups: 144,
        };
        depthwise::Geometry::new([n, 144, 56, 56], [144, 1, 5, 5], &conv).expect("depthwise")
    };
    // Where the depthwise pass goes by groups (AVX2, AVX-512), at most three blocks of 48
    // channels (two on one thread): fewer than four tasks a thread. Without groups, blocks
    // are single panels of 6 and may be enough (a 512 KB L2 makes twelve of 12 channels).
    if dw(1).by_channel_groups() {
        assert!(!fused::pays(144, 56 * 56, 1, &dw(1)));
    }
    assert!(fused::pays(144, 56 * 56, 32, &dw(32)));
}

/// The im2col kernel against burn's convolution: 3x3 and 7x7, strides, dilation,
/// asymmetric padding, groups, a strided 1x1, tiles smaller than the map.
#[test]
fn dense_matches_burn() {
    let dev = Device::flex();
    let cases = [
        // (n, c, co, h, w, k, stride, dilation, pads [t, l, b, r], groups)
        (2, 3, 8, 9, 11, 3, 1, 1, [1, 1, 1, 1], 1),
        (1, 3, 16, 30, 30, 7, 2, 1, [3, 3, 3, 3], 1),
        // Stride 2 across an odd width (a short phase), runs of rows across planes.
        (2, 3, 5, 13, 13, 3, 2, 1, [1, 1, 1, 1], 1),
        (2, 4, 6, 8, 8, 3, 2, 1, [0, 0, 1, 1], 2),
        (1, 5, 4, 12, 10, 3, 1, 2, [2, 2, 2, 2], 1),
        (2, 6, 10, 7, 9, 1, 2, 1, [0, 0, 0, 0], 1),
        // Strided 1x1s run as plain 1x1s on the pixels they read: stride 3, odd sizes.
        (3, 5, 4, 10, 11, 1, 3, 1, [0, 0, 0, 0], 1),
        // ... and one whose bottom/right padding an output reads (left to the patches).
        (2, 3, 4, 8, 8, 1, 2, 1, [0, 0, 1, 1], 1),
        (1, 2, 3, 5, 6, 5, 1, 1, [2, 1, 2, 3], 1),
        // Many channels: several tiles per image.
        (1, 300, 8, 40, 40, 3, 1, 1, [1, 1, 1, 1], 1),
        // Small maps, many images: runs of pixels cross from one image into the next
        // (ReLU6 alone, SiLU grouped).
        (34, 4, 9, 7, 7, 3, 1, 1, [1, 1, 1, 1], 1),
        (9, 4, 6, 5, 5, 3, 1, 1, [1, 1, 1, 1], 2),
        // Stride 3 across odd widths (phases of unequal length), dilated.
        (3, 2, 7, 11, 13, 3, 3, 2, [1, 2, 0, 1], 1),
        (2, 3, 5, 9, 10, 3, 3, 1, [1, 1, 1, 1], 1),
    ];
    for (n, c, co, h, w, k, s, d, pads, groups) in cases {
        let x = Tensor::<4>::from_data(TensorData::new(seq(n * c * h * w, 1), [n, c, h, w]), &dev);
        let cg = c / groups;
        let wt = Tensor::<4>::from_data(
            TensorData::new(seq(co * cg * k * k, 7), [co, cg, k, k]),
            &dev,
        );
        let b = Tensor::<1>::from_data(TensorData::new(seq(co, 3), [co]), &dev);
        let conv = Conv {
            strides: [s, s],
            pads,
            dilations: [d, d],
            groups,
        };
        // SiLU on the grouped case, ReLU6 elsewhere.
        let act = if groups > 1 {
            Act::Silu
        } else {
            Act::Clamp(0.0, 6.0)
        };
        let got =
            dense_conv(&x, &wt, Some(&b), &conv, act, &PackedFilters::default()).expect("applies");
        let opts = ConvOptions::new_with_padding(
            [s, s],
            [(pads[0], pads[2]), (pads[1], pads[3])],
            [d, d],
            groups,
        );
        let want = burn_act(conv2d(x, wt, Some(b), opts), act);
        let case = format!("{n}x{c}->{co} {h}x{w} k{k} s{s} d{d} {pads:?} g{groups} {act:?}");
        assert_eq!(got.dims(), want.dims(), "{case}");
        let err = max_diff(got, want);
        assert!(err < 1e-3, "{case}: error {err}");
    }
}

/// Pooling against burn's: max and average (with and without the padding counted),
/// strides, asymmetric padding, ceil mode, a window larger than the stride.
#[test]
fn pooling_matches_burn() {
    use burn::tensor::module::{avg_pool2d, max_pool2d};
    use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
    let dev = Device::flex();
    let cases = [
        // (h, w, k, stride, pads [t, l, b, r], ceil)
        (112, 112, 3, 2, [1, 1, 1, 1], false),
        (9, 11, 3, 2, [0, 0, 0, 0], true),
        (8, 7, 2, 2, [0, 0, 0, 0], false),
        (10, 10, 3, 1, [1, 1, 1, 1], false),
        (7, 9, 3, 2, [1, 0, 0, 1], true),
        (14, 14, 5, 3, [2, 2, 2, 2], false),
        // Stride 3 across an odd width (phases of unequal length), ceil mode.
        (13, 17, 3, 3, [1, 1, 1, 1], true),
        // Stride 1 (one flat loop per tap): GoogLeNet's 7x7, a 5x5 window on a map narrower
        // than it is padded, one-sided and no padding, ceil mode.
        (7, 7, 3, 1, [1, 1, 1, 1], true),
        (4, 6, 5, 1, [2, 2, 2, 2], false),
        (9, 8, 2, 1, [0, 1, 1, 0], false),
        (6, 5, 3, 1, [0, 0, 0, 0], false),
    ];
    for (h, w, k, s, pads, ceil) in cases {
        let (n, c) = (2, 3);
        let x = Tensor::<4>::from_data(TensorData::new(seq(n * c * h * w, 1), [n, c, h, w]), &dev);
        let p = Pool {
            kernel: [k, k],
            strides: [s, s],
            pads,
            dilations: [1, 1],
            ceil_mode: ceil,
        };
        let pairs = [(pads[0], pads[2]), (pads[1], pads[3])];
        let case = format!("{h}x{w} k{k} s{s} {pads:?} ceil {ceil}");
        let compare = |got: Tensor<4>, want: Tensor<4>, what: &str| {
            let err = max_diff(got, want);
            assert!(err < 1e-5, "{what} {case}: error {err}");
        };
        let got = pool(&x, &p, PoolKind::Max).expect("applies");
        let opts = MaxPoolOptions::new([k, k])
            .with_stride([s, s])
            .with_padding_pairs(pairs)
            .with_ceil_mode(ceil);
        compare(got, max_pool2d(x.clone(), opts), "max");
        for include in [false, true] {
            let got = pool(
                &x,
                &p,
                PoolKind::Average {
                    count_include_pad: include,
                },
            )
            .expect("applies");
            let opts = AvgPoolOptions::new([k, k])
                .with_stride([s, s])
                .with_padding_pairs(pairs)
                .with_count_include_pad(include)
                .with_ceil_mode(ceil);
            compare(
                got,
                avg_pool2d(x.clone(), opts),
                &format!("average (pads counted: {include})"),
            );
        }
    }
    // Dilated max pools (burn's average pool takes no dilation), strides 1 and 2.
    for s in [1, 2] {
        let (n, c, h, w) = (2, 3, 11, 10);
        let x = Tensor::<4>::from_data(TensorData::new(seq(n * c * h * w, 1), [n, c, h, w]), &dev);
        let p = Pool {
            kernel: [3, 2],
            strides: [s, s],
            pads: [2, 1, 1, 2],
            dilations: [2, 3],
            ceil_mode: false,
        };
        let got = pool(&x, &p, PoolKind::Max).expect("applies");
        let opts = MaxPoolOptions::new([3, 2])
            .with_stride([s, s])
            .with_padding_pairs([(2, 1), (1, 2)])
            .with_dilation([2, 3]);
        let err = max_diff(got, max_pool2d(x, opts));
        assert!(err < 1e-5, "dilated max, stride {s}: error {err}");
    }
}

/// Long copies (streaming stores from the first 32-byte boundary on, plain head and tail)
/// and short ones copy every value, wherever the destination starts.
#[test]
fn streaming_copies_copy_everything() {
    let src: Vec<f32> = (0..70_003).map(|i| i as f32).collect();
    for (offset, len) in [(0, 70_003), (1, 70_001), (3, 65_536), (5, 100)] {
        let mut out: Vec<std::mem::MaybeUninit<f32>> =
            vec![std::mem::MaybeUninit::new(f32::NAN); offset + len + 2];
        lanes::copy_streaming(&mut out[offset..offset + len], &src[..len]);
        // SAFETY: every value was initialised (NaN, then the copy).
        let out: Vec<f32> = out
            .into_iter()
            .map(|v| unsafe { v.assume_init() })
            .collect();
        assert_eq!(
            &out[offset..offset + len],
            &src[..len],
            "offset {offset}, {len} values"
        );
        assert!(
            out[..offset]
                .iter()
                .chain(&out[offset + len..])
                .all(|v| v.is_nan())
        );
    }
}

/// Global average and max pooling against burn's mean and max over the trailing axes:
/// planes shorter and longer than the 32 lanes, fewer and more planes than a task takes.
#[test]
fn global_pooling_matches_burn() {
    let dev = Device::flex();
    for (n, c, h, w) in [(2, 3, 7, 7), (1, 5, 1, 3), (3, 700, 2, 2), (2, 4, 13, 11)] {
        let x = Tensor::<4>::from_data(TensorData::new(seq(n * c * h * w, 1), [n, c, h, w]), &dev);
        let case = format!("{n}x{c}x{h}x{w}");
        let average = PoolKind::Average {
            count_include_pad: false,
        };
        let got = global_pool(&x, average).expect("applies");
        let err = max_diff(got, x.clone().mean_dims(&[2, 3]));
        assert!(err < 1e-5, "average {case}: error {err}");
        let got = global_pool(&x, PoolKind::Max).expect("applies");
        let err = max_diff(got, x.clone().max_dims(&[2, 3]));
        assert!(err < 1e-6, "max {case}: error {err}");
    }
}

/// The vectorised exp (within its ±87) and sigmoid (everywhere) against the standard
/// library's.
#[test]
fn exp_and_sigmoid_are_accurate() {
    let mut worst = (0.0f32, 0.0f32);
    for i in -20_000..=20_000 {
        let v = i as f32 * 0.005;
        if v.abs() <= 87.0 {
            let rel = (lanes::exp1(v) / v.exp() - 1.0).abs();
            worst.0 = worst.0.max(rel);
        }
        let s = 1.0 / (1.0 + (-v).exp());
        worst.1 = worst.1.max((sigmoid1(v) - s).abs());
    }
    assert!(worst.0 < 3e-7, "exp relative error {}", worst.0);
    assert!(worst.1 < 2e-7, "sigmoid error {}", worst.1);
    assert!(sigmoid1(-200.0) < 1e-37);
    assert_eq!(sigmoid1(200.0), 1.0);
    assert!(lanes::exp1(f32::NAN).is_nan());
    let dev = Device::flex();
    let x = Tensor::<1>::from_data(TensorData::new(vec![-1.0f32, 0.0, 2.0], [3]), &dev);
    let y: Vec<f32> = silu(x).into_data().try_to_vec::<f32>().unwrap();
    let want = [-1.0 / (1.0 + 1f32.exp()), 0.0, 2.0 / (1.0 + (-2f32).exp())];
    for (a, b) in y.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{y:?}");
    }
}

#[test]
fn inference_batch_norm_matches_burn() {
    use burn::tensor::module::batch_norm;
    let dev = Device::flex();
    let (n, c, h, w) = (2, 5, 3, 4);
    let x = Tensor::<4>::from_data(TensorData::new(seq(n * c * h * w, 1), [n, c, h, w]), &dev);
    let vec = |seed, shift: f32| {
        let v: Vec<f32> = seq(c, seed).iter().map(|v| v + shift).collect();
        Tensor::<1>::from_data(TensorData::new(v, [c]), &dev)
    };
    let (g, b, m, v) = (vec(2, 0.0), vec(3, 0.0), vec(4, 0.0), vec(5, 1.5));
    let got =
        batch_norm_inference(&x, [&g, &b, &m, &v], 1e-5, (0.0, f32::INFINITY)).expect("applies");
    let want = batch_norm(x, g, b, m, v, 1e-5).clamp_min(0.0);
    let err = max_diff(got, want);
    assert!(err < 1e-5, "error {err}");
}

#[test]
fn concat_matches_burn_on_every_axis() {
    let dev = Device::flex();
    for axis in 0..4 {
        let parts: Vec<Tensor<4>> = [2usize, 3, 1]
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                let mut d = [2usize, 3, 4, 5];
                d[axis] = k;
                let n = d.iter().product();
                Tensor::<4>::from_data(TensorData::new(seq(n, i as u32), d), &dev)
            })
            .collect();
        let got = concat(&parts, axis).expect("applies");
        let want = Tensor::cat(parts, axis);
        assert_eq!(got.dims(), want.dims());
        assert_eq!(
            got.into_data().try_to_vec::<f32>().unwrap(),
            want.into_data().try_to_vec::<f32>().unwrap(),
            "axis {axis}"
        );
    }
}

/// ShuffleNet-v2's channel shuffle on strided views: the transposed view copied by
/// `reshapeable` (runs of 20 values, so Graft's copy runs) and half of it, a sliced view,
/// concatenated; both against burn's own.
#[test]
fn strided_views_reshape_and_concat_like_burn() {
    let dev = Device::flex();
    let values = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
    let (n, c, h, w) = (2, 6, 4, 5);
    let x = Tensor::<4>::from_data(TensorData::new(seq(n * c * h * w, 3), [n, c, h, w]), &dev);
    let view = x.reshape([n, 2, c / 2, h, w]).swap_dims(1, 2);
    let shuffled = reshapeable(view.clone(), &[n, c, h, w]);
    assert!(flex(&shuffled).is_some(), "the view was made contiguous");
    let want = view.reshape([n, c, h, w]);
    let shuffled = shuffled.reshape([n, c, h, w]);
    assert_eq!(values(shuffled.clone()), values(want.clone()));

    let half = shuffled.slice([0..n, 0..c / 2, 0..h, 0..w]);
    assert!(flex(&half).is_none(), "a strided view");
    let other = Tensor::<4>::from_data(TensorData::new(seq(n * 2 * h * w, 5), [n, 2, h, w]), &dev);
    let parts = [half, other];
    let got = concat(&parts, 1).expect("applies to a strided part");
    assert_eq!(values(got), values(Tensor::cat(parts.to_vec(), 1)));
    // A part not contiguous from the axis on (a transposed plane) is left to burn.
    let transposed =
        Tensor::<4>::from_data(TensorData::new(seq(n * 2 * h * w, 7), [n, 2, w, h]), &dev)
            .swap_dims(2, 3);
    assert!(concat(&[parts[0].clone(), transposed], 1).is_none());
}

#[test]
fn clamp_is_one_pass_and_in_place_when_unshared() {
    let dev = Device::flex();
    let x = Tensor::<2>::from_data(TensorData::new(vec![-2.0f32, 0.5, 7.0, 3.0], [2, 2]), &dev);
    let y: Vec<f32> = clamp(x, 0.0, 6.0).into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(y, vec![0.0, 0.5, 6.0, 3.0]);
    // A shared tensor is copied, the other reference keeps its values.
    let x = Tensor::<1>::from_data(TensorData::new(vec![-1.0f32, 9.0], [2]), &dev);
    let keep = x.clone();
    let y: Vec<f32> = clamp(x, 0.0, 6.0).into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(y, vec![0.0, 6.0]);
    assert_eq!(
        keep.into_data().try_to_vec::<f32>().unwrap(),
        vec![-1.0, 9.0]
    );
}

/// The few-row Gemm against burn's matmul: one and four rows, a length that leaves a
/// tail after the 64-value chunks, outputs that leave a partial block, with and without a
/// bias, alpha and beta other than 1; more rows than it takes are declined.
#[test]
fn linear_matches_burn() {
    let dev = Device::flex();
    for (n, k, o, bias, alpha, beta) in [
        (1, 1280, 1000, true, 1.0, 1.0),
        (4, 70, 130, false, 1.0, 1.0),
        (2, 33, 5, true, 0.5, -2.0),
    ] {
        let x = Tensor::<2>::from_data(TensorData::new(seq(n * k, 1), [n, k]), &dev);
        let w = Tensor::<2>::from_data(TensorData::new(seq(o * k, 2), [o, k]), &dev);
        let b = Tensor::<1>::from_data(TensorData::new(seq(o, 3), [o]), &dev);
        let b = bias.then_some(&b);
        let got = linear(&x, &w, b, alpha, beta).expect("applies");
        let mut want = x.clone().matmul(w.clone().transpose()).mul_scalar(alpha);
        if let Some(b) = b {
            want = want.add(b.clone().mul_scalar(beta).unsqueeze::<2>());
        }
        let err = max_diff(got, want);
        assert!(err < 1e-3, "{n}x{k}->{o}: error {err}");
    }
    let x = Tensor::<2>::from_data(TensorData::new(seq(5 * 8, 1), [5, 8]), &dev);
    let w = Tensor::<2>::from_data(TensorData::new(seq(3 * 8, 2), [3, 8]), &dev);
    assert!(linear(&x, &w, None, 1.0, 1.0).is_none(), "5 rows");
}

/// Whether outputs are NaN exactly where `reads(output)` says they read the one NaN input.
fn nan_exactly_where(out: &[f32], reads: impl Fn(usize) -> bool, what: &str) {
    for (i, v) in out.iter().enumerate() {
        assert_eq!(v.is_nan(), reads(i), "{what}: output {i} is {v}");
    }
}

/// A NaN in the input comes out as NaN wherever it is read, with or without a clamp, as
/// burn's and PyTorch's ops give it (a clamp written `max(v, lo)` in 16 lanes gave `lo`,
/// and with no clamp, −∞): depthwise by groups of channels, in 16-lane planes and in 8-lane
/// rows; 1x1 through the matrix kernel (its input read in place and packed, maps within an
/// image and across images) and by pixels.
#[test]
fn a_nan_input_comes_out_as_nan() {
    for act in [Act::NONE, Act::Clamp(0.0, 6.0)] {
        // (c, h, w, k, stride, dilation, pad)
        for (c, h, w, k, s, d, p) in [
            (20, 7, 7, 3, 1, 1, 1),
            (2, 9, 40, 3, 1, 1, 1),
            (2, 10, 70, 5, 2, 1, 2),
            (2, 9, 45, 3, 1, 2, 2),
        ] {
            let conv = Conv {
                strides: [s, s],
                pads: [p; 4],
                dilations: [d, d],
                groups: c,
            };
            let g = depthwise::Geometry::new([2, c, h, w], [c, 1, k, k], &conv).expect("depthwise");
            let (r0, c0) = (h / 2, w / 3);
            let mut xs = seq(2 * c * h * w, 3);
            xs[(c + 1) * h * w + r0 * w + c0] = f32::NAN; // image 1, channel 1
            let out = g.forward(&xs, &seq(c * k * k, 5), None, act);
            let (oh, ow) = (g.oh, g.ow);
            let reads = |i: usize| {
                let (plane, oy, ox) = (i / (oh * ow), i % (oh * ow) / ow, i % ow);
                plane == c + 1
                    && (0..k).any(|ki| oy * s + ki * d == r0 + p)
                    && (0..k).any(|kj| ox * s + kj * d == c0 + p)
            };
            nan_exactly_where(
                &out,
                reads,
                &format!("depthwise {c}x{h}x{w} k{k} s{s} d{d} {act:?}"),
            );
        }
        // (n, c, co, hw)
        for (n, c, co, hw) in [
            (2, 16, 24, 49),
            (2, 40, 24, 49),
            (2, 40, 36, 1056),
            (1, 96, 40, 49),
        ] {
            let mut xs = seq(n * c * hw, 3);
            let (b, pixel) = (n - 1, hw / 2);
            xs[(b * c + 1) * hw + pixel] = f32::NAN;
            let out = pointwise::forward(&xs, &seq(co * c, 5), None, None, [n, c, co, hw], act);
            let reads = |i: usize| i / (co * hw) == b && i % hw == pixel;
            nan_exactly_where(&out, reads, &format!("1x1 {n}x{c}->{co} {hw} {act:?}"));
        }
    }
}

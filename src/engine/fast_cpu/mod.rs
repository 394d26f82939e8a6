//! Kernels of Graft's own for burn's `flex` CPU backend, where flex runs an op as several
//! passes over memory and the network is memory-bound (docs/BENCHMARKS.md).
//!
//! This module holds the inference entry points (plain flex tensors; autodiff tensors are
//! refused); [`train`] the training ops (autodiff-over-flex tensors); `depthwise`,
//! `pointwise` and `norm` the kernels on plain slices that both use. Each entry point takes
//! burn tensors and returns `None` (or the input back) when it does not apply — another
//! backend, a layout it does not handle — and the caller then runs burn's op.

mod columns;
mod dense;
mod depthwise;
mod fused;
mod gather;
mod lanes;
mod mm;
mod norm;
mod packed;
mod pointwise;
mod pool;
mod strided;
pub mod train;

use crate::graph::{Conv, Pool};
use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor, TensorData};
pub use lanes::Act;
use lanes::{ConvGrads, clamp1, conv_output, sigmoid1, with_avx2};
#[cfg(target_arch = "x86_64")]
use lanes::{has_avx2_fma, has_avx512};
pub use packed::PackedFilters;
pub use pool::Kind as PoolKind;
use rayon::prelude::*;

/// `GRAFT_FAST_CPU=0` turns these kernels off (burn's ops run instead), to measure them.
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("GRAFT_FAST_CPU").map_or(true, |v| v != "0"))
}

/// A float tensor's flex primitive when it is one contiguous run (a cheap reference-counted
/// clone); `flex_view` takes strided views too.
fn flex<const D: usize>(t: &Tensor<D>) -> Option<FlexTensor> {
    flex_view(t).filter(|p| p.as_slice::<f32>().is_some())
}

fn wrap<const D: usize>(data: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    Tensor::from_primitive::<Flex>(FlexTensor::from_data(TensorData::new(data, shape)))
}

/// `min(max(x, lo), hi)` in one pass, in place when `x` is not shared.
pub fn clamp<const D: usize>(x: Tensor<D>, lo: f32, hi: f32) -> Tensor<D> {
    map_in_place(
        x,
        move |v| clamp1(v, lo, hi),
        |x| x.clamp_min(lo).clamp_max(hi),
    )
}

/// The logistic sigmoid in one vectorised pass (flex computes it as `exp(log_sigmoid(x))`,
/// 70 % of EfficientNet-B0's forward pass); burn's on other tensors.
pub fn sigmoid<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    map_in_place(x, sigmoid1, burn::tensor::activation::sigmoid)
}

/// SiLU (`x · sigmoid(x)`, the Sigmoid + Mul pair `optimize::fuse_silu` joins) in one pass;
/// burn's on other tensors.
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    map_in_place(x, |v| v * sigmoid1(v), burn::tensor::activation::silu)
}

/// `f` on every value of a flex tensor in one parallel, vectorised pass, in place when `x`
/// is not shared; `otherwise(x)` when it is not a flex f32 tensor (autodiff, wgpu).
fn map_in_place<const D: usize>(
    x: Tensor<D>,
    f: impl Fn(f32) -> f32 + Sync + Copy,
    otherwise: impl FnOnce(Tensor<D>) -> Tensor<D>,
) -> Tensor<D> {
    if flex(&x).is_none() {
        return otherwise(x);
    }
    let shape = x.dims();
    let Ok(mut p) = x.try_into_primitive::<Flex>() else {
        unreachable!("checked by flex() above")
    };
    if let Some(s) = unique_values_mut(&mut p) {
        map_slice(s, f);
        return Tensor::from_primitive::<Flex>(p);
    }
    let mut v = p.as_slice::<f32>().map(<[f32]>::to_vec).unwrap_or_default();
    map_slice(&mut v, f);
    wrap(v, shape)
}

/// `f` on every value, in parallel chunks compiled for AVX2.
fn map_slice(s: &mut [f32], f: impl Fn(f32) -> f32 + Sync + Copy) {
    s.par_chunks_mut(1 << 14).for_each(|c| {
        with_avx2(
            #[inline(always)]
            || {
                for v in c {
                    *v = f(*v);
                }
            },
        )
    })
}

fn clamp_slice(s: &mut [f32], lo: f32, hi: f32) {
    map_slice(s, move |v| clamp1(v, lo, hi))
}

/// An f32 tensor's values to change in place, when it owns its whole buffer and is its whole
/// buffer (no other tensor shares it, no offset view).
fn unique_values_mut(t: &mut FlexTensor) -> Option<&mut [f32]> {
    let len = t.layout().shape().num_elements();
    if t.dtype() != DType::F32 || t.layout().start_offset() != 0 || !t.is_contiguous() {
        return None;
    }
    let s = t.try_storage_mut::<f32>()?;
    (s.len() == len).then_some(s)
}

/// Input, weight and (optional) bias values of a convolution.
type OperandValues<'a> = (&'a [f32], &'a [f32], Option<&'a [f32]>);

/// A convolution's input, weight and bias as flex tensors, when all of them are.
struct ConvOperands {
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
}

impl ConvOperands {
    fn new(x: &Tensor<4>, weight: &Tensor<4>, bias: Option<&Tensor<1>>) -> Option<Self> {
        Some(ConvOperands {
            x: flex(x)?,
            weight: flex(weight)?,
            bias: match bias {
                Some(b) => Some(flex(b)?),
                None => None,
            },
        })
    }

    /// Input, weight and bias values (contiguous, checked by `flex`).
    fn slices(&self) -> Option<OperandValues<'_>> {
        let bias = match &self.bias {
            Some(b) => Some(b.as_slice::<f32>()?),
            None => None,
        };
        Some((self.x.as_slice()?, self.weight.as_slice()?, bias))
    }
}

/// A depthwise convolution (one filter per channel) with its bias and a following activation
/// (ReLU, ReLU6, SiLU) in one pass over the activation: padding (asymmetric too) is added per plane
/// in a cache-sized scratch buffer, not by copying the whole activation, and there is no
/// separate bias or activation pass. `None` when this is not a depthwise convolution on flex
/// tensors.
pub fn depthwise_conv(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    conv: &Conv,
    act: Act,
) -> Option<Tensor<4>> {
    let g = depthwise::Geometry::new(x.dims(), weight.dims(), conv)?;
    let ops = ConvOperands::new(x, weight, bias)?;
    let (xs, ws, bs) = ops.slices()?;
    let out = g.forward(xs, ws, bs, act);
    Some(wrap(out, [g.n, g.c, g.oh, g.ow]))
}

/// A 1x1 convolution (stride 1, no padding, one group) as matrix-kernel tiles over the
/// pixels, each tile started from the bias and activated while it is still in cache: flex
/// runs a gemm but then adds the bias and clamps in two more passes over the whole
/// activation. `None` when the convolution is not of that kind or the tensors are not flex
/// tensors.
pub fn pointwise_conv(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    conv: &Conv,
    act: Act,
    packs: &PackedFilters,
) -> Option<Tensor<4>> {
    let dims @ [n, _, co, _] = pointwise::dims(x.dims(), weight.dims(), conv)?;
    let ops = ConvOperands::new(x, weight, bias)?;
    let (xs, ws, bs) = ops.slices()?;
    let packed = packs.get(&ops.weight, 1);
    let out = pointwise::forward(xs, ws, packed.as_ref().map(|p| &p[0]), bs, dims, act);
    let [_, _, h, w] = x.dims();
    Some(wrap(out, [n, co, h, w]))
}

/// One convolution of a pair for [`expand_depthwise`]: weight, bias, attributes, the
/// activation fused into it.
pub struct ConvStep<'a> {
    pub weight: &'a Tensor<4>,
    pub bias: Option<&'a Tensor<1>>,
    pub conv: &'a Conv,
    pub act: Act,
}

/// A 1x1 convolution (as [`pointwise_conv`]) and the depthwise convolution (as
/// [`depthwise_conv`]) that alone reads its output, in one pass whose expanded activation
/// stays in cache (`fused.rs`). `None` when the pair is not of that kind on flex tensors, or
/// the matrix kernel does not run here.
pub fn expand_depthwise(
    x: &Tensor<4>,
    expand: ConvStep<'_>,
    packs: &PackedFilters,
    depthwise: ConvStep<'_>,
) -> Option<Tensor<4>> {
    let [n, c, co, hw] = pointwise::dims(x.dims(), expand.weight.dims(), expand.conv)?;
    let [_, _, h, w] = x.dims();
    let g = depthwise::Geometry::new([n, co, h, w], depthwise.weight.dims(), depthwise.conv)?;
    let ops = ConvOperands::new(x, expand.weight, expand.bias)?;
    let (xs, _, bs) = ops.slices()?;
    // (`x` stands in for the depthwise input, which is never made.)
    let dw = ConvOperands::new(x, depthwise.weight, depthwise.bias)?;
    let (_, dw_ws, dw_bs) = dw.slices()?;
    let packed = packs.get(&ops.weight, 1)?;
    let out = fused::forward(
        xs,
        [n, c, hw],
        &packed[0],
        bs,
        expand.act,
        &g,
        dw_ws,
        dw_bs,
        depthwise.act,
    );
    Some(wrap(out, [n, co, g.oh, g.ow]))
}

/// Any other convolution on flex tensors — k×k, strided, grouped, 1x1 with a stride or
/// padding — as im2col tiles and the matrix kernel, with the bias and activation fused
/// (`dense.rs`). `None` for depthwise and plain 1x1 convolutions (their own kernels) and for
/// other tensors.
pub fn dense_conv(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    conv: &Conv,
    act: Act,
    packs: &PackedFilters,
) -> Option<Tensor<4>> {
    let g = dense::Geometry::new(x.dims(), weight.dims(), conv)?;
    let ops = ConvOperands::new(x, weight, bias)?;
    let (xs, ws, bs) = ops.slices()?;
    let packed = packs.get(&ops.weight, conv.groups);
    let out = g.forward(xs, ws, packed.as_ref().map(|p| p.as_slice()), bs, act);
    Some(wrap(out, [g.n, g.co, g.oh, g.ow]))
}

/// Max or average pooling on a flex tensor in one pass per plane, padding never copied
/// (`pool.rs`). `None` for other tensors.
pub fn pool(x: &Tensor<4>, pool: &Pool, kind: PoolKind) -> Option<Tensor<4>> {
    let g = pool::Geometry::new(x.dims(), pool)?;
    let p = flex(x)?;
    let out = g.forward(p.as_slice()?, kind);
    let [n, c, _, _] = x.dims();
    Some(wrap(out, [n, c, g.oh, g.ow]))
}

/// Batch norm with running statistics (inference: DenseNet's BN → ReLU → Conv, which no
/// convolution before it can absorb) and its fused clamp, in one pass (`norm::normalize`);
/// flex takes several. `None` for other tensors.
pub fn batch_norm_inference<const D: usize>(
    x: &Tensor<D>,
    [gamma, beta, mean, var]: [&Tensor<1>; 4],
    epsilon: f64,
    clamp: (f32, f32),
) -> Option<Tensor<D>> {
    let shape = x.dims();
    if D < 2 {
        return None;
    }
    let (n, c) = (shape[0], shape[1]);
    let xp = flex(x)?;
    let per_channel = [gamma, beta, mean, var].map(flex);
    let [Some(g), Some(b), Some(m), Some(v)] = &per_channel else {
        return None;
    };
    let (g, b, m, v): (&[f32], &[f32], &[f32], &[f32]) =
        (g.as_slice()?, b.as_slice()?, m.as_slice()?, v.as_slice()?);
    if [g.len(), b.len(), m.len(), v.len()] != [c; 4] {
        return None;
    }
    let inv_std: Vec<f32> = v
        .iter()
        .map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32)
        .collect();
    let affine = norm::Affine {
        mean: m,
        inv_std: &inv_std,
        gamma: g,
        beta: b,
        clamp,
    };
    let out = norm::normalize(xp.as_slice()?, [n, c, shape[2..].iter().product()], &affine);
    Some(wrap(out, shape))
}

/// Tensors joined along `axis` by block copies, in parallel over the axes before it (flex's
/// general concatenation was a fifth of ShuffleNet-v2's time). The parts may be strided views
/// (ShuffleNet concatenates half of a shuffled tensor) as long as each is contiguous from
/// `axis` on. `None` for other tensors or parts that disagree off the axis.
pub fn concat<const D: usize>(parts: &[Tensor<D>], axis: usize) -> Option<Tensor<D>> {
    let first = parts.first()?.dims();
    if axis >= D || parts.len() < 2 {
        return None;
    }
    let mut shape = first;
    shape[axis] = 0;
    let mut flexes = Vec::with_capacity(parts.len());
    for t in parts {
        let d = t.dims();
        if (0..D).any(|k| k != axis && d[k] != first[k]) {
            return None;
        }
        shape[axis] += d[axis];
        flexes.push(flex_view(t)?);
    }
    let runs: Vec<strided::Runs> = flexes
        .iter()
        .map(|f| strided::Runs::at(f, axis))
        .collect::<Option<_>>()?;
    let outer: usize = first[..axis].iter().product();
    // Each part's block per outer index, and the output's.
    let row: usize = runs.iter().map(|r| r.len).sum();
    let mut out = vec![0.0f32; outer * row];
    out.par_chunks_mut(row.max(1))
        .enumerate()
        .for_each(|(o, dst)| {
            let mut at = 0;
            for r in &runs {
                dst[at..at + r.len].copy_from_slice(r.get(o));
                at += r.len;
            }
        });
    Some(wrap(out, shape))
}

/// `t` ready to be reshaped to `shape`: itself when flex can reshape it as it is (contiguous,
/// or a view whose strides allow it), else its values copied into row-major order by
/// parallel block copies where that applies (`strided::to_contiguous`), flex's copy
/// otherwise.
pub fn reshapeable<const D: usize>(t: Tensor<D>, shape: &[usize]) -> Tensor<D> {
    let Some(f) = flex_view(&t) else {
        return t;
    };
    let as_view = f
        .layout()
        .reshape(burn::tensor::Shape::from(shape.to_vec()))
        .is_some();
    match (as_view, strided::to_contiguous(&f)) {
        (false, Some(values)) => wrap(values, t.dims()),
        _ => t,
    }
}

/// A float tensor's flex primitive in any layout (strided views too), when it has one.
fn flex_view<const D: usize>(t: &Tensor<D>) -> Option<FlexTensor> {
    if !enabled() {
        return None;
    }
    let p = t.clone().try_into_primitive::<Flex>().ok()?;
    (p.dtype() == DType::F32).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;

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
        ];
        for (h, w, k, s, d, pads, act) in cases {
            let (n, c) = (2, 3);
            let x =
                Tensor::<4>::from_data(TensorData::new(seq(n * c * h * w, 1), [n, c, h, w]), &dev);
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
        ] {
            let x =
                Tensor::<4>::from_data(TensorData::new(seq(n * c * h * w, 1), [n, c, h, w]), &dev);
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
        for (n, c, co, h, w, k, stride, bias, acts) in [
            (2, 5, 13, 9, 11, 3, 1, true, [relu6, relu6]),
            (1, 16, 96, 56, 56, 3, 2, true, [relu6, relu6]),
            (3, 24, 144, 30, 30, 5, 1, false, [silu, Act::NONE]),
            (9, 40, 50, 7, 7, 3, 1, true, [Act::NONE, silu]),
        ] {
            if !mm::available() {
                return;
            }
            let x =
                Tensor::<4>::from_data(TensorData::new(seq(n * c * h * w, 1), [n, c, h, w]), &dev);
            let w1 = Tensor::<4>::from_data(TensorData::new(seq(co * c, 5), [co, c, 1, 1]), &dev);
            let b1 = Tensor::<1>::from_data(TensorData::new(seq(co, 9), [co]), &dev);
            let w2 =
                Tensor::<4>::from_data(TensorData::new(seq(co * k * k, 3), [co, 1, k, k]), &dev);
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
            let got = expand_depthwise(
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

    /// The im2col kernel against burn's convolution: 3x3 and 7x7, strides, dilation,
    /// asymmetric padding, groups, a strided 1x1, tiles smaller than the map.
    #[test]
    fn dense_matches_burn() {
        let dev = Device::flex();
        let cases = [
            // (n, c, co, h, w, k, stride, dilation, pads [t, l, b, r], groups)
            (2, 3, 8, 9, 11, 3, 1, 1, [1, 1, 1, 1], 1),
            (1, 3, 16, 30, 30, 7, 2, 1, [3, 3, 3, 3], 1),
            (2, 4, 6, 8, 8, 3, 2, 1, [0, 0, 1, 1], 2),
            (1, 5, 4, 12, 10, 3, 1, 2, [2, 2, 2, 2], 1),
            (2, 6, 10, 7, 9, 1, 2, 1, [0, 0, 0, 0], 1),
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
            let x =
                Tensor::<4>::from_data(TensorData::new(seq(n * c * h * w, 1), [n, c, h, w]), &dev);
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
            let got = dense_conv(&x, &wt, Some(&b), &conv, act, &PackedFilters::default())
                .expect("applies");
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
        ];
        for (h, w, k, s, pads, ceil) in cases {
            let (n, c) = (2, 3);
            let x =
                Tensor::<4>::from_data(TensorData::new(seq(n * c * h * w, 1), [n, c, h, w]), &dev);
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
        let got = batch_norm_inference(&x, [&g, &b, &m, &v], 1e-5, (0.0, f32::INFINITY))
            .expect("applies");
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
        let other =
            Tensor::<4>::from_data(TensorData::new(seq(n * 2 * h * w, 5), [n, 2, h, w]), &dev);
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
}

//! Kernels of Graft's own for burn's `flex` CPU backend, where flex runs an op as several
//! passes over memory and the network is memory-bound (docs/BENCHMARKS.md).
//!
//! This module holds the inference entry points (plain flex tensors; autodiff tensors are
//! refused); [`train`] the training ops (autodiff-over-flex tensors); `depthwise`,
//! `pointwise` and `norm` the kernels on plain slices that both use. Each entry point takes
//! burn tensors and returns `None` (or the input back) when it does not apply — another
//! backend, a layout it does not handle — and the caller then runs burn's op.

mod adam;
mod blocking;
mod columns;
mod concat;
mod dense;
mod depthwise;
mod dot_grad;
mod fused;
mod gather;
mod lanes;
mod linear;
mod mm;
mod moments;
mod norm;
mod packed;
mod pointwise;
mod pool;
mod strided;
pub mod timing;
pub mod train;
mod weight_grad;

use crate::graph::{Conv, Pool};
pub use adam::{AdamStep, adam_runs_on, adam_step};
use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor, TensorData};
pub use concat::{Joined, concat};
pub use lanes::{Act, conv_output};
use lanes::{ConvGrads, clamp1, sigmoid1, split_phases, with_avx2, with_avx512};
#[cfg(target_arch = "x86_64")]
use lanes::{has_avx2_fma, has_avx512};
pub use mm::bf16_available;
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
/// stays in cache (`fused.rs`). `None` when the pair is not of that kind on flex tensors,
/// the matrix kernel does not run here, or the batch is too small for the fused pass to pay
/// (`fused::pays`): the caller then runs the two apart.
pub fn expand_depthwise(
    x: &Tensor<4>,
    expand: ConvStep<'_>,
    packs: &PackedFilters,
    depthwise: ConvStep<'_>,
) -> Option<Tensor<4>> {
    let [n, _, co, hw] = pointwise::dims(x.dims(), expand.weight.dims(), expand.conv)?;
    let [_, _, h, w] = x.dims();
    let g = depthwise::Geometry::new([n, co, h, w], depthwise.weight.dims(), depthwise.conv)?;
    if !fused::pays(co, hw, n, &g) {
        return None;
    }
    expand_depthwise_always(x, expand, packs, depthwise)
}

/// [`expand_depthwise`] even where it does not pay (the tests' way to the fused kernel on
/// small shapes).
fn expand_depthwise_always(
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

/// A Gemm with its weight `[o, k]` (`transB`) and bias on a few rows of a flex tensor, as
/// dot products spread over the threads (`linear.rs`): `alpha · x · wᵀ + beta · bias`.
/// `None` for more rows than [`linear::MAX_ROWS`] (burn's matmul packs for those) and for
/// other tensors.
pub fn linear(
    x: &Tensor<2>,
    weight: &Tensor<2>,
    bias: Option<&Tensor<1>>,
    alpha: f32,
    beta: f32,
) -> Option<Tensor<2>> {
    let ([n, k], [o, k2]) = (x.dims(), weight.dims());
    if n > linear::MAX_ROWS || k != k2 {
        return None;
    }
    let (x, w) = (flex(x)?, flex(weight)?);
    let b = match bias {
        Some(b) => Some(flex(b)?),
        None => None,
    };
    let bs = match &b {
        Some(b) => Some(b.as_slice::<f32>()?),
        None => None,
    };
    let out = linear::forward(x.as_slice()?, w.as_slice()?, bs, [n, k, o], alpha, beta);
    Some(wrap(out, [n, o]))
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

/// Global average or max pooling of a flex tensor of rank ≥ 3 over its axes after the
/// second, those axes kept with size 1 (`pool::global`). `None` for other tensors.
pub fn global_pool<const D: usize>(x: &Tensor<D>, kind: PoolKind) -> Option<Tensor<D>> {
    let dims = x.dims();
    let plane: usize = dims.get(2..)?.iter().product();
    if D < 3 || plane == 0 {
        return None;
    }
    let p = flex(x)?;
    let out = pool::global(p.as_slice()?, plane, kind);
    let mut shape = dims;
    shape[2..].fill(1);
    Some(wrap(out, shape))
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

/// Whether these kernels take `t`: an f32 flex tensor, the kernels not turned off.
pub fn takes<const D: usize>(t: &Tensor<D>) -> bool {
    flex_view(t).is_some()
}

#[cfg(test)]
mod tests;

//! Training ops of Graft's own for burn's `flex` CPU backend under autodiff: depthwise, 1x1
//! and other one-group convolutions, batch normalisation with batch statistics, and clamps
//! (ReLU, ReLU6), each a burn autodiff op (`burn_autodiff::ops::Backward`) whose forward and backward passes are the
//! slice kernels of this module's siblings. burn's own versions of these are compositions:
//! a depthwise convolution's gradients run as grouped transposed convolutions plus a loop over
//! channels, a 1x1 convolution's through transposed copies, batch norm as a dozen elementwise
//! passes each way; for mobile networks they were most of a fine-tuning step
//! (docs/BENCHMARKS.md).
//!
//! Each entry point returns `None` when it does not apply (another backend, no autodiff, a
//! layout it does not handle) and the caller runs burn's op. Every gradient is checked against
//! burn's in the tests below.

use super::dense;
use super::depthwise::Geometry;
use super::norm::GradMap;
use super::{Act, ConvGrads, clamp_slice, enabled, mm, pointwise, unique_values_mut, with_avx2};
use crate::engine::precision::{self, Precision};
use crate::engine::profile;
use crate::graph::Conv;
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Shape, Tensor, TensorData};
use burn_autodiff::NodeId;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_backend::ops::ModuleOps;
use rayon::prelude::*;

// Batch norm fused with the depthwise or 1x1 convolution that reads it.
mod batch_norm;
mod deferred;
mod handed;
mod norm_depthwise;
mod norm_pointwise;
use batch_norm::BatchNormState;
pub use batch_norm::batch_norm;
pub use norm_depthwise::{BatchNormArgs, norm_depthwise};
pub use norm_pointwise::norm_pointwise;

type Ad = Autodiff<Flex>;
type AutodiffTensor = <Ad as burn_backend::BackendTypes>::FloatTensorPrimitive;

/// A float tensor's autodiff-over-flex primitive, when it has one (a cheap clone).
fn tracked<const D: usize>(t: &Tensor<D>) -> Option<AutodiffTensor> {
    if !enabled() {
        return None;
    }
    let p = t.clone().try_into_primitive::<Ad>().ok()?;
    (p.primitive().dtype() == DType::F32).then_some(p)
}

/// A convolution's bias as an autodiff primitive: its own when it has one (`None` when that
/// is not an autodiff flex tensor), else `c` zeros that nothing tracks, so that the op has
/// one shape and no gradient is computed for an absent bias.
fn tracked_bias(bias: Option<&Tensor<1>>, c: usize) -> Option<AutodiffTensor> {
    match bias {
        Some(b) => tracked(b),
        None => Some(AutodiffTensor::new(flex_tensor(vec![0.0; c], [c]))),
    }
}

/// `t` in contiguous row-major order (itself when it already is: a reference-count clone).
fn contiguous(t: &FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t.clone()
    } else {
        t.to_contiguous()
    }
}

/// [`contiguous`] for a tensor given up, so an unshared buffer stays unshared.
fn into_contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The values of a tensor made by [`contiguous`].
fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("an f32 tensor made contiguous by `contiguous`")
}

fn flex_tensor(data: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, shape))
}

fn into_tensor<const D: usize>(t: AutodiffTensor) -> Tensor<D> {
    Tensor::from_primitive::<Ad>(t)
}

/// Which convolution kernel a convolution runs.
#[derive(Clone, Debug)]
enum ConvKind {
    Depthwise(Geometry),
    /// `[n, c, co, hw]`.
    Pointwise([usize; 4]),
    /// Any other convolution of one group (a stem, ResNet's 3x3s): Graft's forward kernel,
    /// weight gradient and input gradient (`dense::Geometry::input_gradient`); where that
    /// declines (dilation with a stride, padding wider than the kernel's span), burn's
    /// `conv2d_x_backward` with these options.
    Dense(dense::Geometry, ConvOptions<2>),
}

impl ConvKind {
    fn new(x: [usize; 4], weight: [usize; 4], conv: &Conv) -> Option<Self> {
        if let Some(g) = Geometry::new(x, weight, conv) {
            return Some(ConvKind::Depthwise(g));
        }
        if let Some(dims) = pointwise::dims(x, weight, conv) {
            return Some(ConvKind::Pointwise(dims));
        }
        let g = dense::Geometry::new(x, weight, conv).filter(|_| conv.groups == 1)?;
        let options = ConvOptions::new_with_padding(
            conv.strides,
            [(conv.pads[0], conv.pads[2]), (conv.pads[1], conv.pads[3])],
            conv.dilations,
            conv.groups,
        );
        Some(ConvKind::Dense(g, options))
    }

    fn output_shape(&self, x: [usize; 4]) -> [usize; 4] {
        match self {
            ConvKind::Depthwise(g) => [g.n, g.c, g.oh, g.ow],
            ConvKind::Pointwise([n, _, co, _]) => [*n, *co, x[2], x[3]],
            ConvKind::Dense(g, _) => [g.n, g.co, g.oh, g.ow],
        }
    }

    /// The output, and for a 1x1 on maps of at least [`handed::MIN_PLANE`] pixels its
    /// planes' moments, summed as its tasks write them, for the batch norm that reads it
    /// next (an inverted-residual block's expand and first batch norm, joined to the
    /// depthwise step: `handed`).
    /// `precision`: a 1x1's products' (`engine::precision`).
    fn forward(
        &self,
        xs: &[f32],
        ws: &[f32],
        bs: Option<&[f32]>,
        precision: Precision,
    ) -> (Vec<f32>, Option<Vec<(f64, f64)>>) {
        match self {
            ConvKind::Depthwise(g) => (g.forward(xs, ws, bs, Act::NONE), None),
            ConvKind::Pointwise(dims) if dims[3] >= handed::MIN_PLANE => {
                pointwise::forward_with_moments(xs, ws, bs, *dims, precision)
            }
            ConvKind::Pointwise(dims) => {
                (pointwise::forward_at(xs, ws, bs, *dims, precision), None)
            }
            ConvKind::Dense(g, _) => {
                // At training's precision (fp32 on machines the matrix kernel does not run).
                let packed = mm::available().then(|| g.packed(ws, precision));
                (g.forward(xs, ws, packed.as_deref(), bs, Act::NONE), None)
            }
        }
    }

    /// The gradients the slice kernels give: all of them, but a dense convolution's input
    /// gradient where its kernel declines (see [`ConvKind::Dense`]). `want_w`: the weight
    /// gradient and, when `want_b`, the bias's (else zeros where summing it costs a pass).
    /// `g_map`: a 1x1's output gradient as the map of `gs` that a batch norm deferred, where
    /// [`Self::takes_grad_map`].
    fn backward(
        &self,
        xs: &[f32],
        ws: &[f32],
        (gs, g_map): (&[f32], Option<(&[f32], &GradMap)>),
        want_dx: bool,
        want_w: (bool, bool),
        precision: Precision,
    ) -> ConvGrads {
        assert!(
            g_map.is_none() || self.takes_grad_map(want_dx, want_w),
            "a mapped output gradient only where the kernel takes one"
        );
        match self {
            ConvKind::Depthwise(g) => g.backward(xs, ws, gs, want_dx, want_w.0),
            ConvKind::Pointwise(dims) => {
                let g = (gs, g_map);
                pointwise::backward_mapped((xs, None), ws, g, *dims, want_dx, want_w, precision).0
            }
            ConvKind::Dense(g, _) => ConvGrads {
                x: want_dx.then(|| g.input_gradient(ws, gs)).flatten(),
                weight_bias: want_w
                    .0
                    .then(|| g.weight_gradient(xs, ws, gs, want_w.1, precision)),
            },
        }
    }

    /// Whether the backward pass takes its output gradient through a batch norm's map
    /// (`deferred`): a 1x1 whose gradients go chunk by chunk through the dot products.
    fn takes_grad_map(&self, want_dx: bool, want_w: (bool, bool)) -> bool {
        matches!(self, ConvKind::Pointwise(dims) if pointwise::takes_grad_map(*dims, want_dx, want_w))
    }
}

#[derive(Debug)]
struct ConvBackward;

/// What a convolution's backward pass needs: its kernel, input and weight (contiguous), and
/// their shapes.
#[derive(Clone, Debug)]
struct ConvState {
    kind: ConvKind,
    x: FlexTensor,
    weight: FlexTensor,
    x_shape: [usize; 4],
    weight_shape: [usize; 4],
    /// The forward pass's (`precision::training`), for the gradients' products.
    precision: Precision,
}

impl Backward<Flex, 3> for ConvBackward {
    type State = ConvState;

    fn backward(self, ops: Ops<ConvState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let s = ops.state;
        let want_dx = node_x.is_some();
        let want_w = (node_w.is_some() || node_b.is_some(), node_b.is_some());
        let got = grads.consume::<Flex>(&ops.node);
        // The next batch norm's input gradient, deferred to this op where it offered: the
        // map applied as the kernel reads, or written out here where it cannot be.
        let takes = s.kind.takes_grad_map(want_dx, want_w);
        let (g, deferred) = deferred::gradient(ops.node.id, got, takes);
        let what = match &s.kind {
            ConvKind::Depthwise(g) if g.stride == [1, 1] => "backward: Conv (depthwise)",
            ConvKind::Depthwise(_) => "backward: Conv (depthwise, strided)",
            ConvKind::Pointwise(_) => "backward: Conv 1x1",
            ConvKind::Dense(..) => "backward: Conv",
        };
        let ConvGrads { x: dx, weight_bias } = profile::time(what, &s.x_shape, || {
            s.kind.backward(
                values(&s.x),
                values(&s.weight),
                (
                    values(&g),
                    deferred.as_ref().map(|d| (values(&d.x), &d.map)),
                ),
                want_dx,
                want_w,
                s.precision,
            )
        });
        if let Some(node) = node_x {
            let dx = match (dx, &s.kind) {
                (Some(dx), _) => flex_tensor(dx, s.x_shape),
                (None, ConvKind::Dense(_, options)) => profile::time(what, &s.x_shape, || {
                    Flex::conv2d_x_backward(
                        s.x.clone(),
                        s.weight.clone(),
                        g.clone(),
                        options.clone(),
                    )
                }),
                (None, _) => unreachable!("the slice kernels give the input gradient asked for"),
            };
            grads.register::<Flex>(node.id, dx);
        }
        let ids = [node_w, node_b].map(|p| p.map(|node| node.id));
        register_weight_bias(weight_bias, s.weight_shape, ids, grads);
    }
}

/// Registers a convolution's weight and bias gradients, where computed, for the nodes that
/// ask for them.
fn register_weight_bias(
    weight_bias: Option<(Vec<f32>, Vec<f32>)>,
    weight_shape: [usize; 4],
    [w, b]: [Option<NodeId>; 2],
    grads: &mut Gradients,
) {
    let Some((dw, db)) = weight_bias else { return };
    if let Some(id) = w {
        grads.register::<Flex>(id, flex_tensor(dw, weight_shape));
    }
    if let Some(id) = b {
        let co = db.len();
        grads.register::<Flex>(id, flex_tensor(db, [co]));
    }
}

/// A depthwise or 1x1 convolution as one autodiff op with Graft's kernels both ways. `None`
/// when the convolution is of another kind or the tensors are not autodiff flex tensors.
pub fn conv(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    conv: &Conv,
) -> Option<Tensor<4>> {
    let kind = ConvKind::new(x.dims(), weight.dims(), conv)?;
    // A 1x1 whose gradients go chunk by chunk takes the next batch norm's input gradient
    // unwritten (`deferred`); with a bias, that gradient's sum would be a pass anyway.
    let takes_deferred = bias.is_none() && kind.takes_grad_map(true, (true, false));
    let (xa, wa) = (tracked(x)?, tracked(weight)?);
    let ba = tracked_bias(bias, weight.dims()[0])?;
    let (xv, wv, bv) = (
        contiguous(xa.primitive()),
        contiguous(wa.primitive()),
        contiguous(ba.primitive()),
    );
    let precision = precision::training();
    let (out, moments) = kind.forward(
        values(&xv),
        values(&wv),
        bias.is_some().then(|| values(&bv)),
        precision,
    );
    let shape @ [n, co, oh, ow] = kind.output_shape(x.dims());
    let out = flex_tensor(out, shape);
    let y = match ConvBackward
        .prepare::<NoCheckpointing>([xa.node(), wa.node(), ba.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            ConvState {
                kind,
                x: xv,
                weight: wv,
                x_shape: x.dims(),
                weight_shape: weight.dims(),
                precision,
            },
            out,
        ),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    let y = into_tensor(y);
    if let Some(t) = tracked(&y) {
        if let Some(moments) = moments {
            handed::hand(t.id(), [n, co, oh * ow], moments);
        }
        if takes_deferred {
            deferred::offer(t.id());
        }
    }
    Some(y)
}

#[derive(Debug)]
struct ClampBackward;

impl Backward<Flex, 1> for ClampBackward {
    /// The op's output (contiguous) and its bounds.
    type State = (FlexTensor, f32, f32);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        let Some(node) = node_x else { return };
        let (y, lo, hi) = ops.state;
        let shape = g.layout().shape().clone();
        // The gradient passes where the output is strictly inside the bounds (PyTorch's
        // hardtanh and relu: zero at the bounds themselves).
        // A select, not a branch, so the loop vectorises.
        let mask = |gs: &mut [f32], ys: &[f32]| {
            gs.par_chunks_mut(1 << 14)
                .zip(ys.par_chunks(1 << 14))
                .for_each(|(gs, ys)| {
                    with_avx2(
                        #[inline(always)]
                        || {
                            for (g, &y) in gs.iter_mut().zip(ys) {
                                *g = if (lo < y) & (y < hi) { *g } else { 0.0 };
                            }
                        },
                    )
                })
        };
        let dims = shape.clone();
        let dx = profile::time("backward: Clip", &dims, || {
            let mut g = into_contiguous(g);
            let ys = values(&y);
            match unique_values_mut(&mut g) {
                Some(gs) => {
                    mask(gs, ys);
                    g
                }
                None => {
                    let mut v = values(&g).to_vec();
                    mask(&mut v, ys);
                    flex_tensor(v, shape)
                }
            }
        });
        grads.register::<Flex>(node.id, dx);
    }
}

/// `min(max(x, lo), hi)` as one autodiff op (ReLU, ReLU6), forward in place when `x` is not
/// shared; `otherwise(x)` when `x` is not an autodiff flex tensor.
pub fn clamp<const D: usize>(
    x: Tensor<D>,
    lo: f32,
    hi: f32,
    otherwise: impl FnOnce(Tensor<D>) -> Tensor<D>,
) -> Tensor<D> {
    if tracked(&x).is_none() {
        return otherwise(x);
    }
    let shape = x.dims();
    let Ok(xa) = x.try_into_primitive::<Ad>() else {
        unreachable!("checked by tracked() above")
    };
    let (p, guard) = xa.into_parts();
    let mut p = into_contiguous(p);
    let y = match unique_values_mut(&mut p) {
        Some(v) => {
            clamp_slice(v, lo, hi);
            p
        }
        None => {
            let mut v = values(&p).to_vec();
            clamp_slice(&mut v, lo, hi);
            flex_tensor(v, shape)
        }
    };
    let y = match ClampBackward
        .prepare::<NoCheckpointing>([guard])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((y.clone(), lo, hi), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    };
    into_tensor(y)
}

#[cfg(test)]
mod tests;

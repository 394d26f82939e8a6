//! Training ops of Graft's own for burn's GPU backend (cubecl: wgpu, and CUDA where built)
//! under autodiff: a depthwise convolution whose weight gradient is k² parallel reductions.
//!
//! burn-cubecl 0.22 computes a depthwise convolution's weight gradient as one grouped *direct*
//! convolution of the input by the output gradient (`backward_weight/fallback.rs`,
//! `conv_weight_grad_depthwise`): each of the C·k² weights is one GPU thread summing N·OH·OW
//! products in series — 864 threads for Lite0's 96-channel 3x3, each summing 100,352 products.
//! On an H200 that one kernel was half of a fine-tuning step's GPU time (docs/BENCHMARKS.md,
//! "First measurement"). Here each tap's gradient is Σ over N, OH, OW of the output gradient
//! times the input the tap read (a strided view of the padded input): an element-wise product
//! and a reduction, which burn runs over the whole GPU (and its fusion may join the two).
//! The forward pass and the input gradient stay burn's.
//!
//! Like `fast_cpu::train`, the entry point returns `None` where it does not apply (another
//! backend, no autodiff, not depthwise, sums too short to pay: [`REDUCE_FROM`];
//! `GRAFT_GPU_OPS=0`) and the caller runs burn's op.

use crate::graph::{Conv, window_out};
use burn::backend::{Autodiff, Cube};
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{DType, Slice, Tensor};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_backend::ops::ModuleOps;

type Ad = Autodiff<Cube>;
type AutodiffTensor = <Ad as burn_backend::BackendTypes>::FloatTensorPrimitive;
type Primitive = <Cube as burn_backend::BackendTypes>::FloatTensorPrimitive;

/// `GRAFT_GPU_OPS=0` turns these ops off (burn's run instead), to measure them
/// (`tools/gpu_check.sh` trains Lite0 both ways).
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("GRAFT_GPU_OPS").map_or(true, |v| v != "0"))
}

/// A float tensor's autodiff-over-cubecl primitive, when it has one (a cheap clone).
fn tracked<const D: usize>(t: &Tensor<D>) -> Option<AutodiffTensor> {
    let p = t.clone().try_into_primitive::<Ad>().ok()?;
    (p.primitive().dtype == DType::F32).then_some(p)
}

/// The products a weight's gradient sums (N·OH·OW) from which [`weight_gradient`] takes
/// over from burn's kernel. Not measured (no GPU here): burn's kernel runs a thread per
/// weight summing those products in series — slow where the sums are long and the threads
/// few (Lite0's 112×112 and 56×56 maps at batch 32: 288–3,600 threads of 100,352–401,408
/// products), cheap where they are short and the threads many (its 14×14 and 7×7 maps:
/// 6,272 and 1,568 products, 4,320–28,800 threads); [`weight_gradient`] is 2–3 GPU ops a
/// tap (75 for a 5×5), each with the backend's own cost to launch.
const REDUCE_FROM: usize = 16_384;

/// A depthwise convolution (one input channel per output channel) on the GPU under autodiff,
/// its weight gradient by [`weight_gradient`] where each weight's sum is long
/// ([`REDUCE_FROM`]); `None` for anything else.
pub fn depthwise_conv(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    conv: &Conv,
) -> Option<Tensor<4>> {
    let [n, c, h, w] = x.dims();
    let [co, per_group, kh, kw] = weight.dims();
    if !enabled() || conv.groups != c || co != c || per_group != 1 {
        return None;
    }
    let [oh, ow] = output_size([h, w], [kh, kw], conv)?;
    if n * oh * ow < REDUCE_FROM {
        return None;
    }
    let (xa, wa) = (tracked(x)?, tracked(weight)?);
    let options = ConvOptions::new_with_padding(
        conv.strides,
        [(conv.pads[0], conv.pads[2]), (conv.pads[1], conv.pads[3])],
        conv.dilations,
        conv.groups,
    );
    let (xp, wp) = (xa.primitive().clone(), wa.primitive().clone());
    let out = Cube::conv2d(xp.clone(), wp.clone(), None, options.clone());
    let y = match DepthwiseBackward
        .prepare::<NoCheckpointing>([xa.node(), wa.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            DepthwiseState {
                x: xp,
                weight: wp,
                options,
                conv: conv.clone(),
                kernel: [kh, kw],
            },
            out,
        ),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    let y = Tensor::<4>::from_primitive::<Ad>(y);
    // The bias as burn's broadcast add: its gradient (a sum of the output gradient) is
    // burn's reduction, and fusion joins the add to the next op.
    Some(match bias {
        Some(b) => y + b.clone().reshape([1, c, 1, 1]),
        None => y,
    })
}

#[derive(Debug)]
struct DepthwiseBackward;

#[derive(Clone, Debug)]
struct DepthwiseState {
    x: Primitive,
    weight: Primitive,
    options: ConvOptions<2>,
    conv: Conv,
    kernel: [usize; 2],
}

impl Backward<Cube, 2> for DepthwiseBackward {
    type State = DepthwiseState;

    fn backward(self, ops: Ops<DepthwiseState, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let g = grads.consume::<Cube>(&ops.node);
        let s = ops.state;
        if let Some(node) = node_x {
            let dx = Cube::conv2d_x_backward(s.x.clone(), s.weight, g.clone(), s.options);
            grads.register::<Cube>(node.id, dx);
        }
        if let Some(node) = node_w {
            grads.register::<Cube>(node.id, weight_gradient(s.x, g, &s.conv, s.kernel));
        }
    }
}

/// A depthwise convolution's weight gradient, `[c, 1, kh, kw]`: for each tap, Σ over the
/// batch and the output positions of `g` times the input that tap read — the padded input's
/// view from the tap's offset at the convolution's stride.
fn weight_gradient(x: Primitive, g: Primitive, conv: &Conv, [kh, kw]: [usize; 2]) -> Primitive {
    let x = Tensor::<4>::from_primitive::<Cube>(x);
    let g = Tensor::<4>::from_primitive::<Cube>(g);
    let [n, c, _, _] = x.dims();
    let [_, _, oh, ow] = g.dims();
    let [top, left, bottom, right] = conv.pads;
    let padded = x.pad([(top, bottom), (left, right)], PadMode::Constant(0.0));
    let [sy, sx] = conv.strides;
    let [dy, dx] = conv.dilations;
    // The rows (or columns) a tap at `offset` reads: `count` of them, `step` apart.
    let along = |offset: usize, count: usize, step: usize| {
        Slice::new(
            offset as isize,
            Some((offset + (count - 1) * step + 1) as isize),
            step as isize,
        )
    };
    let taps: Vec<Tensor<3>> = (0..kh * kw)
        .map(|tap| {
            let (ky, kx) = (tap / kw, tap % kw);
            let read = padded.clone().slice(
                [
                    Slice::full(),
                    Slice::full(),
                    along(ky * dy, oh, sy),
                    along(kx * dx, ow, sx),
                ]
                .as_slice(),
            );
            (read * g.clone())
                .reshape([n, c, oh * ow])
                .sum_dim(2)
                .sum_dim(0)
        })
        .collect();
    Tensor::cat(taps, 2)
        .reshape([c, 1, kh, kw])
        .try_into_primitive::<Cube>()
        .expect("made from cubecl tensors")
}

/// A convolution's output height and width (the shape rules' `window_out`); `None` where
/// the filter overhangs the padded input (the caller's burn op then reports it).
fn output_size([h, w]: [usize; 2], [kh, kw]: [usize; 2], conv: &Conv) -> Option<[usize; 2]> {
    let [top, left, bottom, right] = conv.pads;
    let [sy, sx] = conv.strides;
    let [dy, dx] = conv.dilations;
    Some([
        window_out(h, kh, sy, top, bottom, dy, false).ok()?,
        window_out(w, kw, sx, left, right, dx, false).ok()?,
    ])
}

//! The operations Graft understands and their attributes. The elementwise families live in
//! `elementwise.rs`, each op's shape rule in `op_shapes.rs`, the shape arithmetic they share
//! in `shape_math.rs`.
//!
//! Attributes are stored resolved: `auto_pad` becomes explicit pads, attributes that later
//! opsets moved to inputs (Clip's min/max, Reshape's shape, Split's sizes, Pad's pads) are
//! folded in at import, and defaults are filled. An `Op` therefore says exactly what the
//! engine computes, whatever opset the file came from.

use super::elementwise::{Binary, Nary, Reduce, Unary};
use serde::{Deserialize, Serialize};

/// A 2-D convolution. Inputs: `x [N,C,H,W]`, `weight [M, C/groups, kh, kw]`, optional `bias [M]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv {
    pub strides: [usize; 2],
    /// `[top, left, bottom, right]`, ONNX's `[x1_begin, x2_begin, x1_end, x2_end]`.
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    pub groups: usize,
}

/// A 2-D pooling window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
    pub ceil_mode: bool,
}

/// How Resize samples: ONNX `nearest` with floor sampling (`asymmetric`/`floor`, which is
/// also what every coordinate mode gives for integer upscales), or `linear` with the corners
/// aligned or half-pixel centres. Import refuses the combinations that would compute
/// something else.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum ResizeMode {
    Nearest,
    Linear { align_corners: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum PadMode {
    Constant(f32),
    Reflect,
    Edge,
}

/// One operation of the network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    Conv(Conv),
    /// Inputs: x, scale, bias, running mean, running variance.
    BatchNorm {
        epsilon: f32,
        momentum: f32,
    },
    /// Inputs: x, scale, optional bias. Normalises over the axes from `axis` to the end.
    LayerNorm {
        axis: i64,
        epsilon: f32,
    },
    Lrn {
        size: usize,
        alpha: f32,
        beta: f32,
        bias: f32,
    },
    /// `alpha * A' B' + beta * C` with A' = transpose(A) if `trans_a`, likewise B.
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
    },
    MatMul,
    Unary(Unary),
    LeakyRelu {
        alpha: f32,
    },
    Elu {
        alpha: f32,
    },
    /// `max(0, min(1, alpha * x + beta))`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    Clip {
        min: Option<f32>,
        max: Option<f32>,
    },
    Gelu {
        tanh: bool,
    },
    Binary(Binary),
    Nary(Nary),
    MaxPool(Pool),
    AveragePool {
        pool: Pool,
        count_include_pad: bool,
    },
    GlobalAveragePool,
    GlobalMaxPool,
    /// Empty `axes` reduces over every axis.
    Reduce {
        kind: Reduce,
        axes: Vec<i64>,
        keepdims: bool,
    },
    /// `legacy`: opset < 13 semantics, where the input is coerced to 2-D at `axis`.
    Softmax {
        axis: i64,
        legacy: bool,
    },
    LogSoftmax {
        axis: i64,
        legacy: bool,
    },
    Concat {
        axis: i64,
    },
    Split {
        axis: i64,
        sizes: Vec<usize>,
    },
    Slice {
        starts: Vec<i64>,
        ends: Vec<i64>,
        axes: Vec<i64>,
        steps: Vec<i64>,
    },
    /// Gather along `axis` with constant indices; `scalar` removes the axis (index of rank 0).
    Gather {
        axis: i64,
        indices: Vec<i64>,
        scalar: bool,
    },
    Flatten {
        axis: i64,
    },
    Reshape {
        shape: Vec<i64>,
        allowzero: bool,
    },
    Transpose {
        perm: Vec<usize>,
    },
    /// Empty `axes` removes every axis of size 1.
    Squeeze {
        axes: Vec<i64>,
    },
    Unsqueeze {
        axes: Vec<i64>,
    },
    /// Expand (broadcast) to a shape.
    Expand {
        shape: Vec<i64>,
    },
    /// `pads`: every axis's begin, then every axis's end (ONNX order).
    Pad {
        pads: Vec<i64>,
        mode: PadMode,
    },
    /// Resize / Upsample of `[N,C,H,W]`: the output is `floor(H × scales[0]) ×
    /// floor(W × scales[1])`.
    Resize {
        scales: [f32; 2],
        mode: ResizeMode,
    },
    Dropout {
        ratio: f32,
    },
    Identity,
    /// A node Graft cannot run. It keeps its place, inputs, outputs and attributes so that the
    /// rest of the network still opens and can be cut before it.
    Unsupported {
        op_type: String,
        domain: String,
        reason: String,
        attributes: Vec<(String, String)>,
    },
}

impl Op {
    /// The ONNX operator this op is written as.
    pub fn onnx_type(&self) -> &str {
        match self {
            Op::Conv(_) => "Conv",
            Op::BatchNorm { .. } => "BatchNormalization",
            Op::LayerNorm { .. } => "LayerNormalization",
            Op::Lrn { .. } => "LRN",
            Op::Gemm { .. } => "Gemm",
            Op::MatMul => "MatMul",
            Op::Unary(u) => u.onnx_name(),
            Op::LeakyRelu { .. } => "LeakyRelu",
            Op::Elu { .. } => "Elu",
            Op::HardSigmoid { .. } => "HardSigmoid",
            Op::Clip { .. } => "Clip",
            Op::Gelu { .. } => "Gelu",
            Op::Binary(b) => b.onnx_name(),
            Op::Nary(n) => n.onnx_name(),
            Op::MaxPool(_) => "MaxPool",
            Op::AveragePool { .. } => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::GlobalMaxPool => "GlobalMaxPool",
            Op::Reduce { kind, .. } => kind.onnx_name(),
            Op::Softmax { .. } => "Softmax",
            Op::LogSoftmax { .. } => "LogSoftmax",
            Op::Concat { .. } => "Concat",
            Op::Split { .. } => "Split",
            Op::Slice { .. } => "Slice",
            Op::Gather { .. } => "Gather",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape { .. } => "Reshape",
            Op::Transpose { .. } => "Transpose",
            Op::Squeeze { .. } => "Squeeze",
            Op::Unsqueeze { .. } => "Unsqueeze",
            Op::Expand { .. } => "Expand",
            Op::Pad { .. } => "Pad",
            Op::Resize { .. } => "Resize",
            Op::Dropout { .. } => "Dropout",
            Op::Identity => "Identity",
            Op::Unsupported { op_type, .. } => op_type,
        }
    }

    pub fn is_supported(&self) -> bool {
        !matches!(self, Op::Unsupported { .. })
    }

    /// Which inputs are learnable parameters (when they are stored weights, not activations).
    pub fn learnable_inputs(&self) -> &'static [usize] {
        match self {
            Op::Conv(_) | Op::Gemm { .. } | Op::BatchNorm { .. } | Op::LayerNorm { .. } => &[1, 2],
            Op::MatMul => &[1],
            _ => &[],
        }
    }

    /// Whether the output's axis 0 is the input's axis 0 (the batch stays first), judged from
    /// the op alone. Conservative: `false` where unsure.
    pub fn keeps_batch_axis(&self) -> bool {
        let not_zero = |axes: &[i64]| axes.iter().all(|&a| a != 0);
        match self {
            Op::Conv(_)
            | Op::BatchNorm { .. }
            | Op::Lrn { .. }
            | Op::MatMul
            | Op::Unary(_)
            | Op::LeakyRelu { .. }
            | Op::Elu { .. }
            | Op::HardSigmoid { .. }
            | Op::Clip { .. }
            | Op::Gelu { .. }
            | Op::Binary(_)
            | Op::Nary(_)
            | Op::MaxPool(_)
            | Op::AveragePool { .. }
            | Op::GlobalAveragePool
            | Op::GlobalMaxPool
            | Op::Dropout { .. }
            | Op::Identity
            | Op::Resize { .. }
            | Op::Expand { .. } => true,
            Op::LayerNorm { axis, .. } => *axis != 0,
            Op::Gemm { trans_a, .. } => !trans_a,
            Op::Reduce { axes, .. } => !axes.is_empty() && not_zero(axes),
            Op::Softmax { axis, legacy } | Op::LogSoftmax { axis, legacy } => {
                *axis != 0 && (!legacy || *axis >= 1)
            }
            Op::Concat { axis } | Op::Split { axis, .. } | Op::Gather { axis, .. } => *axis != 0,
            Op::Slice { axes, .. } | Op::Squeeze { axes } | Op::Unsqueeze { axes } => {
                !axes.is_empty() && not_zero(axes)
            }
            Op::Flatten { axis } => *axis >= 1,
            Op::Reshape { shape, .. } => shape.first() == Some(&0),
            Op::Transpose { perm } => perm.first() == Some(&0),
            Op::Pad { pads, .. } => {
                let r = pads.len() / 2;
                r > 0 && pads[0] == 0 && pads[r] == 0
            }
            Op::Unsupported { .. } => false,
        }
    }
}

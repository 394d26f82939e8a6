//! The operations Graft understands, with their attributes and shape rules.
//!
//! Attributes are stored resolved: `auto_pad` becomes explicit pads, attributes that later
//! opsets moved to inputs (Clip's min/max, Reshape's shape, Split's sizes, Pad's pads) are
//! folded in at import, and defaults are filled. An `Op` therefore says exactly what the
//! engine computes, whatever opset the file came from.

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

/// Element-wise functions of one input without parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unary {
    Relu,
    Sigmoid,
    Tanh,
    Erf,
    Sqrt,
    Exp,
    Log,
    Abs,
    Neg,
    Reciprocal,
    Floor,
    Ceil,
    HardSwish,
    Softplus,
    Silu,
    Mish,
    Sin,
    Cos,
    Sign,
    Round,
    Softsign,
}

impl Unary {
    pub fn onnx_name(self) -> &'static str {
        match self {
            Unary::Relu => "Relu",
            Unary::Sigmoid => "Sigmoid",
            Unary::Tanh => "Tanh",
            Unary::Erf => "Erf",
            Unary::Sqrt => "Sqrt",
            Unary::Exp => "Exp",
            Unary::Log => "Log",
            Unary::Abs => "Abs",
            Unary::Neg => "Neg",
            Unary::Reciprocal => "Reciprocal",
            Unary::Floor => "Floor",
            Unary::Ceil => "Ceil",
            Unary::HardSwish => "HardSwish",
            Unary::Softplus => "Softplus",
            Unary::Silu => "Silu",
            Unary::Mish => "Mish",
            Unary::Sin => "Sin",
            Unary::Cos => "Cos",
            Unary::Sign => "Sign",
            Unary::Round => "Round",
            Unary::Softsign => "Softsign",
        }
    }

    pub const ALL: [Unary; 21] = [
        Unary::Relu,
        Unary::Sigmoid,
        Unary::Tanh,
        Unary::Erf,
        Unary::Sqrt,
        Unary::Exp,
        Unary::Log,
        Unary::Abs,
        Unary::Neg,
        Unary::Reciprocal,
        Unary::Floor,
        Unary::Ceil,
        Unary::HardSwish,
        Unary::Softplus,
        Unary::Silu,
        Unary::Mish,
        Unary::Sin,
        Unary::Cos,
        Unary::Sign,
        Unary::Round,
        Unary::Softsign,
    ];
}

/// Element-wise functions of two inputs with NumPy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

impl Binary {
    pub fn onnx_name(self) -> &'static str {
        match self {
            Binary::Add => "Add",
            Binary::Sub => "Sub",
            Binary::Mul => "Mul",
            Binary::Div => "Div",
            Binary::Pow => "Pow",
        }
    }

    pub const ALL: [Binary; 5] = [
        Binary::Add,
        Binary::Sub,
        Binary::Mul,
        Binary::Div,
        Binary::Pow,
    ];
}

/// Element-wise functions of any number of inputs with NumPy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Nary {
    Sum,
    Mean,
    Max,
    Min,
}

impl Nary {
    pub fn onnx_name(self) -> &'static str {
        match self {
            Nary::Sum => "Sum",
            Nary::Mean => "Mean",
            Nary::Max => "Max",
            Nary::Min => "Min",
        }
    }

    pub const ALL: [Nary; 4] = [Nary::Sum, Nary::Mean, Nary::Max, Nary::Min];
}

/// Reductions over axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reduce {
    Mean,
    Sum,
    Max,
    Min,
    Prod,
    L1,
    L2,
    SumSquare,
    LogSumExp,
}

impl Reduce {
    pub fn onnx_name(self) -> &'static str {
        match self {
            Reduce::Mean => "ReduceMean",
            Reduce::Sum => "ReduceSum",
            Reduce::Max => "ReduceMax",
            Reduce::Min => "ReduceMin",
            Reduce::Prod => "ReduceProd",
            Reduce::L1 => "ReduceL1",
            Reduce::L2 => "ReduceL2",
            Reduce::SumSquare => "ReduceSumSquare",
            Reduce::LogSumExp => "ReduceLogSumExp",
        }
    }

    /// The opset from which `axes` is an input rather than an attribute.
    pub fn axes_input_from(self) -> i64 {
        if self == Reduce::Sum { 13 } else { 18 }
    }

    pub const ALL: [Reduce; 9] = [
        Reduce::Mean,
        Reduce::Sum,
        Reduce::Max,
        Reduce::Min,
        Reduce::Prod,
        Reduce::L1,
        Reduce::L2,
        Reduce::SumSquare,
        Reduce::LogSumExp,
    ];
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

    /// Output shapes from input shapes (`None` for an absent optional input).
    pub fn infer_shapes(
        &self,
        inputs: &[Option<&[usize]>],
        n_outputs: usize,
    ) -> Result<Vec<Vec<usize>>, String> {
        let x = |i: usize| -> Result<&[usize], String> {
            inputs
                .get(i)
                .copied()
                .flatten()
                .ok_or_else(|| format!("input {i} is missing"))
        };
        let one = |s: Vec<usize>| Ok(vec![s]);
        match self {
            Op::Conv(c) => {
                let (x, w) = (x(0)?, x(1)?);
                rank(x, 4, "input")?;
                rank(w, 4, "weight")?;
                let g = c.groups;
                if g == 0 || x[1] != w[1] * g || w[0] % g != 0 {
                    return Err(format!(
                        "input has {} channels but the weight {:?} with {} groups expects {}",
                        x[1],
                        w,
                        g,
                        w[1] * g
                    ));
                }
                if let Some(b) = inputs.get(2).copied().flatten()
                    && b != [w[0]]
                {
                    return Err(format!("bias shape {b:?} does not match {} filters", w[0]));
                }
                let h = window_out(
                    x[2],
                    w[2],
                    c.strides[0],
                    c.pads[0],
                    c.pads[2],
                    c.dilations[0],
                    false,
                )?;
                let wd = window_out(
                    x[3],
                    w[3],
                    c.strides[1],
                    c.pads[1],
                    c.pads[3],
                    c.dilations[1],
                    false,
                )?;
                one(vec![x[0], w[0], h, wd])
            }
            Op::BatchNorm { .. } => {
                let x0 = x(0)?;
                if x0.len() < 2 {
                    return Err(format!("input rank {} < 2", x0.len()));
                }
                for i in 1..5 {
                    if x(i)? != [x0[1]] {
                        return Err(format!(
                            "input {i} has shape {:?}, expected [{}]",
                            x(i)?,
                            x0[1]
                        ));
                    }
                }
                one(x0.to_vec())
            }
            Op::LayerNorm { axis, .. } => {
                let x0 = x(0)?;
                let a = norm_axis(*axis, x0.len())?;
                let tail: usize = x0[a..].iter().product();
                let s: usize = x(1)?.iter().product();
                if s != tail {
                    return Err(format!("scale has {s} values, normalised axes have {tail}"));
                }
                one(x0.to_vec())
            }
            Op::Lrn { .. } => {
                let x0 = x(0)?;
                rank(x0, 4, "input")?;
                one(x0.to_vec())
            }
            Op::Gemm {
                trans_a, trans_b, ..
            } => {
                let (a, b) = (x(0)?, x(1)?);
                rank(a, 2, "A")?;
                rank(b, 2, "B")?;
                let (m, k) = if *trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
                let (k2, n) = if *trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
                if k != k2 {
                    return Err(format!("A {a:?} and B {b:?} do not multiply"));
                }
                if let Some(c) = inputs.get(2).copied().flatten() {
                    broadcast(c, &[m, n]).map_err(|e| format!("C: {e}"))?;
                }
                one(vec![m, n])
            }
            Op::MatMul => one(matmul_shape(x(0)?, x(1)?)?),
            Op::Unary(_)
            | Op::LeakyRelu { .. }
            | Op::Elu { .. }
            | Op::HardSigmoid { .. }
            | Op::Clip { .. }
            | Op::Gelu { .. }
            | Op::Softmax { .. }
            | Op::LogSoftmax { .. }
            | Op::Identity => {
                let x0 = x(0)?;
                if let Op::Softmax { axis, .. } | Op::LogSoftmax { axis, .. } = self {
                    norm_axis(*axis, x0.len())?;
                }
                one(x0.to_vec())
            }
            Op::Dropout { .. } => Ok(vec![x(0)?.to_vec(); n_outputs.max(1)]),
            Op::Binary(_) => one(broadcast(x(0)?, x(1)?)?),
            Op::Nary(_) => {
                let mut s = x(0)?.to_vec();
                for i in 1..inputs.len() {
                    s = broadcast(&s, x(i)?)?;
                }
                one(s)
            }
            Op::MaxPool(p) | Op::AveragePool { pool: p, .. } => {
                let x0 = x(0)?;
                rank(x0, 4, "input")?;
                let h = window_out(
                    x0[2],
                    p.kernel[0],
                    p.strides[0],
                    p.pads[0],
                    p.pads[2],
                    p.dilations[0],
                    p.ceil_mode,
                )?;
                let w = window_out(
                    x0[3],
                    p.kernel[1],
                    p.strides[1],
                    p.pads[1],
                    p.pads[3],
                    p.dilations[1],
                    p.ceil_mode,
                )?;
                one(vec![x0[0], x0[1], h, w])
            }
            Op::GlobalAveragePool | Op::GlobalMaxPool => {
                let x0 = x(0)?;
                if x0.len() < 3 {
                    return Err(format!("input rank {} < 3", x0.len()));
                }
                let mut s = x0[..2].to_vec();
                s.resize(x0.len(), 1);
                one(s)
            }
            Op::Reduce { axes, keepdims, .. } => {
                let x0 = x(0)?;
                let axes = norm_axes_or_all(axes, x0.len())?;
                let mut s = Vec::new();
                for (i, &d) in x0.iter().enumerate() {
                    if axes.contains(&i) {
                        if *keepdims {
                            s.push(1);
                        }
                    } else {
                        s.push(d);
                    }
                }
                one(s)
            }
            Op::Concat { axis } => {
                let first = x(0)?;
                let a = norm_axis(*axis, first.len())?;
                let mut out = first.to_vec();
                out[a] = 0;
                for i in 0..inputs.len() {
                    let s = x(i)?;
                    if s.len() != first.len()
                        || s.iter()
                            .zip(first)
                            .enumerate()
                            .any(|(j, (p, q))| j != a && p != q)
                    {
                        return Err(format!(
                            "input {i} {s:?} does not match {first:?} outside axis {a}"
                        ));
                    }
                    out[a] += s[a];
                }
                one(out)
            }
            Op::Split { axis, sizes } => {
                let x0 = x(0)?;
                let a = norm_axis(*axis, x0.len())?;
                if sizes.iter().sum::<usize>() != x0[a] || sizes.len() != n_outputs {
                    return Err(format!(
                        "sizes {sizes:?} do not split axis {a} of {x0:?} into {n_outputs} parts"
                    ));
                }
                Ok(sizes
                    .iter()
                    .map(|&n| {
                        let mut s = x0.to_vec();
                        s[a] = n;
                        s
                    })
                    .collect())
            }
            Op::Slice {
                starts,
                ends,
                axes,
                steps,
            } => {
                let x0 = x(0)?;
                let mut out = x0.to_vec();
                for (i, &ax) in axes.iter().enumerate() {
                    let a = norm_axis(ax, x0.len())?;
                    let (s, e, st) = (starts[i], ends[i], steps[i]);
                    out[a] = slice_range(x0[a], s, e, st)?.2;
                }
                one(out)
            }
            Op::Gather {
                axis,
                indices,
                scalar,
            } => {
                let x0 = x(0)?;
                let a = norm_axis(*axis, x0.len())?;
                for &i in indices {
                    if i >= x0[a] as i64 || i < -(x0[a] as i64) {
                        return Err(format!("index {i} out of range for axis of size {}", x0[a]));
                    }
                }
                let mut s = x0.to_vec();
                if *scalar {
                    s.remove(a);
                } else {
                    s[a] = indices.len();
                }
                one(s)
            }
            Op::Flatten { axis } => {
                let x0 = x(0)?;
                let a = if *axis < 0 {
                    norm_axis(*axis, x0.len())?
                } else {
                    (*axis as usize).min(x0.len())
                };
                one(vec![x0[..a].iter().product(), x0[a..].iter().product()])
            }
            Op::Reshape { shape, allowzero } => one(reshape_shape(x(0)?, shape, *allowzero)?),
            Op::Transpose { perm } => {
                let x0 = x(0)?;
                let mut seen = vec![false; x0.len()];
                if perm.len() != x0.len()
                    || perm
                        .iter()
                        .any(|&p| p >= x0.len() || std::mem::replace(&mut seen[p], true))
                {
                    return Err(format!(
                        "perm {perm:?} is not a permutation of rank {}",
                        x0.len()
                    ));
                }
                one(perm.iter().map(|&p| x0[p]).collect())
            }
            Op::Squeeze { axes } => {
                let x0 = x(0)?;
                let axes: Vec<usize> = if axes.is_empty() {
                    (0..x0.len()).filter(|&i| x0[i] == 1).collect()
                } else {
                    norm_axes(axes, x0.len())?
                };
                if let Some(&a) = axes.iter().find(|&&a| x0[a] != 1) {
                    return Err(format!("cannot squeeze axis {a} of size {}", x0[a]));
                }
                one(x0
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !axes.contains(i))
                    .map(|(_, &d)| d)
                    .collect())
            }
            Op::Unsqueeze { axes } => {
                let x0 = x(0)?;
                let r = x0.len() + axes.len();
                let axes = norm_axes(axes, r)?;
                let mut it = x0.iter();
                one((0..r)
                    .map(|i| {
                        if axes.contains(&i) {
                            1
                        } else {
                            *it.next().unwrap_or(&1)
                        }
                    })
                    .collect())
            }
            Op::Expand { shape } => {
                let target: Vec<usize> = shape.iter().map(|&d| d.max(1) as usize).collect();
                one(broadcast(x(0)?, &target)?)
            }
            Op::Pad { pads, .. } => {
                let x0 = x(0)?;
                if pads.len() != 2 * x0.len() {
                    return Err(format!("{} pads for rank {}", pads.len(), x0.len()));
                }
                let r = x0.len();
                let mut out = Vec::with_capacity(r);
                for i in 0..r {
                    let d = x0[i] as i64 + pads[i] + pads[i + r];
                    if d < 0 {
                        return Err(format!("padding leaves axis {i} with size {d}"));
                    }
                    out.push(d as usize);
                }
                one(out)
            }
            Op::Unsupported { op_type, .. } => Err(format!("{op_type} is not supported")),
        }
    }
}

fn rank(s: &[usize], r: usize, what: &str) -> Result<(), String> {
    if s.len() == r {
        Ok(())
    } else {
        Err(format!("{what} has rank {} ({s:?}), expected {r}", s.len()))
    }
}

/// Output length of a sliding window (convolution or pooling).
pub fn window_out(
    len: usize,
    kernel: usize,
    stride: usize,
    pad_begin: usize,
    pad_end: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Result<usize, String> {
    if stride == 0 || kernel == 0 || dilation == 0 {
        return Err("kernel, stride and dilation must be positive".into());
    }
    let span = dilation * (kernel - 1) + 1;
    let padded = len + pad_begin + pad_end;
    if padded < span {
        return Err(format!(
            "window of {span} is larger than the padded input of {padded}"
        ));
    }
    let mut out = if ceil_mode {
        (padded - span).div_ceil(stride) + 1
    } else {
        (padded - span) / stride + 1
    };
    // A last window that would start in the end padding is dropped (PyTorch, ONNX Runtime).
    if ceil_mode && (out - 1) * stride >= len + pad_begin {
        out -= 1;
    }
    Ok(out)
}

/// Normalise a possibly negative axis for a tensor of rank `r`.
pub fn norm_axis(axis: i64, r: usize) -> Result<usize, String> {
    let a = if axis < 0 { axis + r as i64 } else { axis };
    if a < 0 || a >= r as i64 {
        Err(format!("axis {axis} is out of range for rank {r}"))
    } else {
        Ok(a as usize)
    }
}

pub fn norm_axes(axes: &[i64], r: usize) -> Result<Vec<usize>, String> {
    axes.iter().map(|&a| norm_axis(a, r)).collect()
}

fn norm_axes_or_all(axes: &[i64], r: usize) -> Result<Vec<usize>, String> {
    if axes.is_empty() {
        Ok((0..r).collect())
    } else {
        norm_axes(axes, r)
    }
}

/// NumPy broadcasting of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    Ok(out)
}

/// NumPy matmul shape rules.
pub fn matmul_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    if a.is_empty() || b.is_empty() {
        return Err("matmul of a scalar".into());
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(format!("shapes {a:?} and {b:?} do not multiply"));
    }
    let mut out = broadcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Ok(out)
}

/// ONNX Reshape: 0 copies the input's dimension (unless `allowzero`), -1 is inferred.
pub fn reshape_shape(x: &[usize], shape: &[i64], allowzero: bool) -> Result<Vec<usize>, String> {
    let total: usize = x.iter().product();
    let mut out = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &d) in shape.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(
                *x.get(i)
                    .ok_or_else(|| format!("0 at position {i} copies a missing dimension"))?,
            ),
            d if d >= 0 => out.push(d as usize),
            _ => return Err(format!("invalid target shape {shape:?}")),
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape {x:?} to {shape:?}"));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!(
            "cannot reshape {x:?} ({total} values) to {shape:?}"
        ));
    }
    Ok(out)
}

/// ONNX Slice on one axis of length `len`: `(first index, step, count)`.
pub fn slice_range(
    len: usize,
    start: i64,
    end: i64,
    step: i64,
) -> Result<(i64, i64, usize), String> {
    if step == 0 {
        return Err("slice step 0".into());
    }
    let len = len as i64;
    let adj = |v: i64| if v < 0 { v.saturating_add(len) } else { v };
    let (s, e) = (adj(start), adj(end));
    let (s, e) = if step > 0 {
        (s.clamp(0, len), e.clamp(0, len))
    } else {
        (s.clamp(-1, len - 1), e.clamp(-1, len - 1))
    };
    let count = if step > 0 {
        if e > s { (e - s + step - 1) / step } else { 0 }
    } else if s > e {
        (s - e + (-step) - 1) / (-step)
    } else {
        0
    };
    Ok((s, step, count as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_ceil_mode_drops_a_window_starting_in_padding() {
        // PyTorch: MaxPool2d(3, 2, ceil_mode=True) on 112 -> 56; on 6 -> 3 (not 4).
        assert_eq!(window_out(112, 3, 2, 0, 0, 1, true), Ok(56));
        assert_eq!(window_out(6, 3, 2, 0, 0, 1, true), Ok(3));
        assert_eq!(window_out(7, 2, 2, 0, 0, 1, true), Ok(4));
        assert_eq!(window_out(7, 2, 2, 0, 0, 1, false), Ok(3));
        assert_eq!(window_out(224, 3, 2, 0, 1, 1, false), Ok(112));
    }

    #[test]
    fn reshape_copies_zero_and_infers_minus_one() {
        assert_eq!(reshape_shape(&[2, 8, 4], &[0, -1], false), Ok(vec![2, 32]));
        assert!(reshape_shape(&[2, 8, 4], &[3, -1], false).is_err());
        assert_eq!(reshape_shape(&[2, 0], &[0, 5], true), Ok(vec![0, 5]));
    }

    #[test]
    fn slice_clamps_like_onnx() {
        assert_eq!(slice_range(10, 2, i64::MAX, 1), Ok((2, 1, 8)));
        assert_eq!(slice_range(10, -3, -1, 1), Ok((7, 1, 2)));
        assert_eq!(slice_range(10, -1, i64::MIN, -1), Ok((9, -1, 10)));
        assert_eq!(slice_range(10, 0, 10, 3), Ok((0, 3, 4)));
    }

    #[test]
    fn broadcast_and_matmul_shapes() {
        assert_eq!(broadcast(&[2, 3, 4, 4], &[3, 1, 1]), Ok(vec![2, 3, 4, 4]));
        assert!(broadcast(&[2, 3], &[4]).is_err());
        assert_eq!(matmul_shape(&[2, 5, 7, 16], &[16, 4]), Ok(vec![2, 5, 7, 4]));
        assert_eq!(matmul_shape(&[16], &[16, 4]), Ok(vec![4]));
    }
}

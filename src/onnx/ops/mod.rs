//! One file per family of ONNX ops, holding both directions side by side: how each ONNX node
//! becomes a graph [`Op`] (import) and how each `Op` is written back (export). Importers are
//! found by ONNX name in [`importer`], exporters by `Op` in [`exporter`]; `emit.rs` holds
//! what exporters write with.

mod activation;
mod conv;
mod elementwise;
pub mod emit;
mod linear;
mod misc;
mod norm;
mod pool;
mod resize;
mod shape;

use super::attrs::Attrs;
use super::tensor::HostTensor;
use crate::graph::Op;
use onnx_ir::NodeProto;

/// One input of the node being imported.
pub struct InputRef<'a> {
    /// Empty for an absent optional input.
    pub name: &'a str,
    /// Its value, when known at import time.
    pub constant: Option<&'a HostTensor>,
    /// Its shape, when known.
    pub shape: Option<&'a [usize]>,
}

/// What an importer sees of a node.
pub struct Ctx<'a> {
    pub node: &'a NodeProto,
    pub attrs: Attrs<'a>,
    pub opset: i64,
    pub inputs: Vec<InputRef<'a>>,
    pub n_outputs: usize,
}

impl Ctx<'_> {
    pub fn present(&self, i: usize) -> bool {
        self.inputs.get(i).is_some_and(|x| !x.name.is_empty())
    }

    pub fn constant(&self, i: usize) -> Option<&HostTensor> {
        self.inputs.get(i).and_then(|x| x.constant)
    }

    /// An input that must be known at import time (shapes, axes, pads, weights).
    pub fn require_constant(&self, i: usize, what: &str) -> Result<&HostTensor, String> {
        self.constant(i).ok_or_else(|| {
            format!("its {what} (input {i}) is computed at run time; Graft needs it constant")
        })
    }

    pub fn shape(&self, i: usize) -> Result<&[usize], String> {
        self.inputs
            .get(i)
            .and_then(|x| x.shape)
            .ok_or_else(|| format!("the shape of input {i} is unknown"))
    }

    /// The names of inputs `idx`, for the graph node ("" where absent).
    pub fn keep(&self, idx: &[usize]) -> Vec<String> {
        idx.iter()
            .map(|&i| self.inputs.get(i).map_or("", |x| x.name).to_owned())
            .collect()
    }

    /// Fails if any output beyond the first `n` is used: Graft computes only those.
    pub fn only_outputs(&self, n: usize, used: &dyn Fn(&str) -> bool) -> Result<(), String> {
        for name in self.node.output.iter().skip(n) {
            if !name.is_empty() && used(name) {
                return Err(format!(
                    "its output '{name}' is used, and Graft computes only the first {n}"
                ));
            }
        }
        Ok(())
    }
}

/// An imported node: its op, and the inputs that stay graph inputs (activations and weights;
/// inputs folded into attributes are dropped).
pub struct Lowered {
    pub op: Op,
    pub inputs: Vec<String>,
    /// How many of the node's outputs the op produces (extra ONNX outputs are dropped).
    pub outputs: usize,
}

impl Lowered {
    pub fn new(op: Op, inputs: Vec<String>) -> Self {
        Self {
            op,
            inputs,
            outputs: 1,
        }
    }
}

pub type ImportFn = fn(&Ctx) -> Result<Lowered, String>;

pub type ExportFn = fn(&mut emit::Emitter, &crate::graph::Node) -> Result<(), String>;

/// The exporter of an op, by family; `None` for a placeholder Graft cannot run (and so cannot
/// write). No wildcard: a new `Op` variant must be given a family here.
pub fn exporter(op: &Op) -> Option<ExportFn> {
    Some(match op {
        Op::Conv(_) => conv::export,
        Op::MaxPool(_) | Op::AveragePool { .. } | Op::GlobalAveragePool | Op::GlobalMaxPool => {
            pool::export
        }
        Op::BatchNorm { .. } | Op::LayerNorm { .. } | Op::Lrn { .. } => norm::export,
        Op::Gemm { .. } | Op::MatMul => linear::export,
        Op::Unary(_)
        | Op::LeakyRelu { .. }
        | Op::Elu { .. }
        | Op::HardSigmoid { .. }
        | Op::Clip { .. }
        | Op::Gelu { .. }
        | Op::Softmax { .. }
        | Op::LogSoftmax { .. } => activation::export,
        Op::Binary(_) | Op::Nary(_) => elementwise::export,
        Op::Concat { .. }
        | Op::Split { .. }
        | Op::Slice { .. }
        | Op::Gather { .. }
        | Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Expand { .. }
        | Op::Pad { .. } => shape::export,
        Op::Resize { .. } => resize::export,
        Op::Reduce { .. } | Op::Dropout { .. } | Op::Identity => misc::export,
        Op::Unsupported { .. } => return None,
    })
}

/// The importer for an op of the default ONNX domain, `None` if Graft does not support it.
pub fn importer(op_type: &str) -> Option<ImportFn> {
    Some(match op_type {
        "Conv" => conv::conv,
        "MaxPool" => pool::max_pool,
        "AveragePool" => pool::average_pool,
        "GlobalAveragePool" | "GlobalMaxPool" => pool::global,
        "BatchNormalization" => norm::batch_norm,
        "LayerNormalization" => norm::layer_norm,
        "LRN" => norm::lrn,
        "Gemm" => linear::gemm,
        "MatMul" => linear::matmul,
        "Relu" | "Sigmoid" | "Tanh" | "Erf" | "Sqrt" | "Exp" | "Log" | "Abs" | "Neg"
        | "Reciprocal" | "Floor" | "Ceil" | "HardSwish" | "Softplus" | "Mish" | "Silu" | "Sin"
        | "Cos" | "Sign" | "Round" | "Softsign" => activation::unary,
        "LeakyRelu" | "Elu" | "HardSigmoid" | "Gelu" => activation::parametric,
        "Clip" => activation::clip,
        "Softmax" | "LogSoftmax" => activation::softmax,
        "Add" | "Sub" | "Mul" | "Div" | "Pow" => elementwise::binary,
        "Sum" | "Mean" | "Max" | "Min" => elementwise::nary,
        "Flatten" => shape::flatten,
        "Reshape" => shape::reshape,
        "Transpose" => shape::transpose,
        "Squeeze" | "Unsqueeze" => shape::squeeze,
        "Concat" => shape::concat,
        "Split" => shape::split,
        "Slice" => shape::slice,
        "Gather" => shape::gather,
        "Expand" => shape::expand,
        "Pad" => shape::pad,
        "Resize" | "Upsample" => resize::resize,
        "Dropout" => misc::dropout,
        "Identity" => misc::identity,
        "Cast" => misc::cast,
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceSumSquare" | "ReduceLogSumExp" => misc::reduce,
        _ => return None,
    })
}

/// Every op type [`importer`] accepts (for documentation and the conformance table).
pub const SUPPORTED: &[&str] = &[
    "Abs",
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Ceil",
    "Clip",
    "Concat",
    "Conv",
    "Cos",
    "Div",
    "Dropout",
    "Elu",
    "Erf",
    "Exp",
    "Expand",
    "Flatten",
    "Floor",
    "Gather",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LRN",
    "LayerNormalization",
    "LeakyRelu",
    "Log",
    "LogSoftmax",
    "MatMul",
    "Max",
    "MaxPool",
    "Mean",
    "Min",
    "Mish",
    "Mul",
    "Neg",
    "Pad",
    "Pow",
    "Reciprocal",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
    "Relu",
    "Reshape",
    "Resize",
    "Round",
    "Sigmoid",
    "Sign",
    "Silu",
    "Sin",
    "Slice",
    "Softmax",
    "Softplus",
    "Softsign",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Tanh",
    "Transpose",
    "Unsqueeze",
    "Upsample",
];

/// 2-D window attributes shared by Conv and the pools: `auto_pad` resolved into explicit pads
/// for the input's spatial size.
pub fn window_pads(
    ctx: &Ctx,
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
) -> Result<[usize; 4], String> {
    let auto = ctx.attrs.string("auto_pad").unwrap_or_default();
    match auto.as_str() {
        "" | "NOTSET" => {
            let pads = ctx.attrs.ints("pads").unwrap_or_else(|| vec![0; 4]);
            if pads.len() != 4 || pads.iter().any(|&p| p < 0) {
                return Err(format!("pads {pads:?} are not 4 non-negative values"));
            }
            Ok([
                pads[0] as usize,
                pads[1] as usize,
                pads[2] as usize,
                pads[3] as usize,
            ])
        }
        "VALID" => Ok([0; 4]),
        "SAME_UPPER" | "SAME_LOWER" => {
            let x = ctx.shape(0)?;
            if x.len() != 4 {
                return Err("auto_pad needs a 4-D input".into());
            }
            let mut begin = [0; 2];
            let mut end = [0; 2];
            for i in 0..2 {
                let len = x[2 + i];
                let out = len.div_ceil(strides[i]);
                let span = dilations[i] * (kernel[i] - 1) + 1;
                let total = ((out - 1) * strides[i] + span).saturating_sub(len);
                let small = total / 2;
                (begin[i], end[i]) = if auto == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
            }
            Ok([begin[0], begin[1], end[0], end[1]])
        }
        other => Err(format!("auto_pad {other} is not an ONNX value")),
    }
}

/// A 2-element attribute (`strides`, `dilations`) with a default.
pub fn pair(ctx: &Ctx, name: &str, default: usize) -> Result<[usize; 2], String> {
    match ctx.attrs.ints(name) {
        None => Ok([default; 2]),
        Some(v) if v.len() == 2 && v.iter().all(|&x| x > 0) => Ok([v[0] as usize, v[1] as usize]),
        Some(v) => Err(format!(
            "{name} {v:?}: Graft supports 2-D windows with positive sizes"
        )),
    }
}

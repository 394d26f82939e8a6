//! int8 files read as float, so that they can be fine-tuned like any other network.
//!
//! Both forms ONNX Runtime's quantizer writes are rewritten at the protobuf level before
//! lowering, so the rest of the importer only ever sees float ops:
//! - **QDQ**: activations pass through `QuantizeLinear → DequantizeLinear`; weights are int8
//!   initializers behind `DequantizeLinear` (folded to float by `fold.rs`).
//! - **QOperator**: `QLinearConv`, `QLinearMatMul` and ONNX Runtime's `com.microsoft`
//!   `QLinearAdd`, `QLinearMul`, `QLinearConcat`, `QLinearAveragePool`,
//!   `QLinearGlobalAveragePool`, `QLinearLeakyRelu`, `QLinearSigmoid` and `QGemm` read and
//!   write int8/uint8 values; ops such as `MaxPool`, `Flatten` or `Reshape` apply to the
//!   integers directly, which in float is the same op.
//!
//! Every quantized value becomes the float value it stands for: constant weights and int32
//! biases are dequantised into new float initializers, each QLinear op becomes its float op,
//! and activation `QuantizeLinear`/`DequantizeLinear` become `Identity`. The rounding of
//! activations is dropped (that is the difference from ONNX Runtime's int8 run). One effect of
//! quantization is kept: where a value's representable range starts at exactly 0 (uint8 with
//! zero point 0, int8 with −128), nothing negative survives, and ONNX Runtime's quantizer
//! relies on that to delete the `Relu` before it; Graft writes that `Relu` back.

use super::ImportError;
use super::attrs::Attrs;
use super::fold::dequantize;
use super::ops::emit::Names;
use super::tensor::{HostTensor, dtype};
use onnx_ir::{GraphProto, NodeProto};
use std::collections::{HashMap, HashSet};

/// Which int8 form a file used (for the note `inspect` shows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Qdq,
    QOperator,
}

impl Form {
    pub fn note(self) -> String {
        let form = match self {
            Form::Qdq => "QDQ",
            Form::QOperator => "QOperator: QLinearConv and the like",
        };
        format!(
            "int8 file ({form}): weights dequantised to float32 on import and activation \
             rounding dropped, so it can be fine-tuned; exported in float32"
        )
    }
}

/// Where a QLinear op's operands sit among its inputs.
struct Layout {
    /// The float op it becomes.
    float_op: &'static str,
    /// Index of each quantized operand; its scale and zero point follow it.
    operands: Vec<usize>,
    /// Index of the output's scale (its zero point follows), if the output is quantized.
    output: Option<usize>,
    /// Index of an int32 bias at the scale of operand 0 × operand 1 (Conv, Gemm).
    bias: Option<usize>,
}

fn layout(node: &NodeProto) -> Option<Layout> {
    let ms = node.domain == "com.microsoft";
    let std = node.domain.is_empty() || node.domain == "ai.onnx";
    let l = |float_op, operands: &[usize], output, bias| {
        Some(Layout {
            float_op,
            operands: operands.to_vec(),
            output,
            bias,
        })
    };
    match node.op_type.as_str() {
        "QLinearConv" if std => l("Conv", &[0, 3], Some(6), Some(8)),
        "QLinearMatMul" if std => l("MatMul", &[0, 3], Some(6), None),
        "QGemm" if ms => l("Gemm", &[0, 3], Some(7), Some(6)),
        "QLinearAdd" if ms => l("Add", &[0, 3], Some(6), None),
        "QLinearMul" if ms => l("Mul", &[0, 3], Some(6), None),
        "QLinearAveragePool" if ms => l("AveragePool", &[0], Some(3), None),
        "QLinearGlobalAveragePool" if ms => l("GlobalAveragePool", &[0], Some(3), None),
        "QLinearLeakyRelu" if ms => l("LeakyRelu", &[0], Some(3), None),
        "QLinearSigmoid" if ms => l("Sigmoid", &[0], Some(3), None),
        "QLinearConcat" if ms => {
            // Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) per input.
            let operands: Vec<usize> = (2..node.input.len()).step_by(3).collect();
            l("Concat", &operands, Some(0), None)
        }
        _ => None,
    }
}

/// Rewrites an int8 file into float ops, adding the dequantised constants to `initializers`;
/// `None` when the file holds nothing quantized.
pub fn to_float(
    graph: &GraphProto,
    initializers: &mut HashMap<String, HostTensor>,
) -> Result<Option<(GraphProto, Form)>, ImportError> {
    let quantized = |n: &NodeProto| layout(n).is_some() || n.op_type == "QuantizeLinear";
    if !graph.node.iter().any(quantized) {
        return Ok(None);
    }
    let form = if graph.node.iter().any(|n| layout(n).is_some()) {
        Form::QOperator
    } else {
        Form::Qdq
    };
    let mut r = Rewrite {
        constants: constant_values(graph, initializers),
        types: graph
            .initializer
            .iter()
            .map(|t| (t.name.clone(), t.data_type))
            .collect(),
        producers: graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(move |o| (o.clone(), n.op_type.clone())))
            .collect(),
        names: Names::new(
            graph
                .node
                .iter()
                .flat_map(|n| n.input.iter().chain(&n.output).cloned())
                .chain(initializers.keys().cloned())
                .collect(),
        ),
        initializers,
    };
    let mut out = graph.clone();
    out.node.clear();
    for node in &graph.node {
        let err = |message: String| ImportError::Node {
            node: node.name.clone(),
            op: node.op_type.clone(),
            message,
        };
        let std = node.domain.is_empty() || node.domain == "ai.onnx";
        let activation = node.input.first().is_some_and(|v| !r.constants.contains(v));
        if std && activation && node.op_type == "QuantizeLinear" {
            let relu = r.range_starts_at_zero(node.input.get(2))
                && r.producers.get(&node.input[0]).map(String::as_str) != Some("Relu");
            let op = if relu { "Relu" } else { "Identity" };
            out.node
                .push(float_node(node, op, vec![node.input[0].clone()]));
        } else if std && activation && node.op_type == "DequantizeLinear" {
            out.node
                .push(float_node(node, "Identity", vec![node.input[0].clone()]));
        } else if let Some(l) = layout(node) {
            out.node.extend(r.qlinear(node, &l).map_err(err)?);
        } else {
            out.node.push(node.clone());
        }
    }
    Ok(Some((out, form)))
}

struct Rewrite<'a> {
    initializers: &'a mut HashMap<String, HostTensor>,
    /// Values known without running the network (initializers and what folds from them).
    constants: HashSet<String>,
    /// Element type of each initializer (to tell uint8 zero points from int8 ones).
    types: HashMap<String, i32>,
    /// The op type producing each value.
    producers: HashMap<String, String>,
    /// Every name in use, so that new values never collide.
    names: Names,
}

impl Rewrite<'_> {
    fn fresh(&mut self, base: &str) -> String {
        self.names.fresh(base)
    }

    fn constant(&self, name: &str, what: &str) -> Result<&HostTensor, String> {
        self.initializers
            .get(name)
            .ok_or_else(|| format!("its {what} '{name}' is not an initializer"))
    }

    /// Whether a quantized value with this zero point holds nothing below 0: uint8 with
    /// zero point 0 (also the default when none is given), or int8 with −128.
    fn range_starts_at_zero(&self, zero: Option<&String>) -> bool {
        let Some(zero) = zero.filter(|z| !z.is_empty()) else {
            return true;
        };
        let Some(value) = self.initializers.get(zero) else {
            return false;
        };
        let lowest = match self.types.get(zero) {
            Some(&dtype::UINT8) => 0,
            Some(&dtype::INT8) => -128,
            _ => return false,
        };
        value.to_i64().iter().all(|&z| z == lowest)
    }

    /// A QLinear node as its float op (plus a `Relu` where its output range starts at 0).
    fn qlinear(&mut self, node: &NodeProto, l: &Layout) -> Result<Vec<NodeProto>, String> {
        let at = |i: usize| node.input.get(i).filter(|v| !v.is_empty());
        if Attrs::of(node).int("channels_last", 0) != 0 {
            return Err("channels_last=1 (NHWC int8 pooling) is not supported".into());
        }
        let mut inputs = Vec::new();
        let mut nonnegative = true;
        for (k, &i) in l.operands.iter().enumerate() {
            let value = at(i).ok_or("an operand is missing")?;
            let (scale, zero) = (at(i + 1).ok_or("a scale is missing")?, at(i + 2));
            if self.constants.contains(value) {
                // A weight: dequantised once, per output channel where its scale says so.
                let axis = match (l.float_op, k) {
                    ("Conv", 1) => 0,
                    ("MatMul", 1) => -1,
                    ("Gemm", 1) => {
                        let trans_b = Attrs::of(node).int("transB", 0);
                        if trans_b != 0 { 0 } else { 1 }
                    }
                    _ => 1,
                };
                let q = self.constant(value, "operand")?.clone();
                let s = self.constant(scale, "scale")?.to_f32();
                let z = zero.map(|z| self.constant(z, "zero point")).transpose()?;
                let z = z.map(HostTensor::to_f32);
                let float = dequantize(&q, &s, z.as_deref(), axis)?;
                let name = self.fresh(&format!("{value}/float"));
                self.initializers.insert(name.clone(), float);
                self.constants.insert(name.clone());
                inputs.push(name);
                nonnegative = false;
            } else {
                nonnegative &= self.range_starts_at_zero(zero);
                inputs.push(value.clone());
            }
        }
        if let Some(b) = l.bias.and_then(at) {
            // int32 bias at scale (x scale × w scale[c]).
            let q = self.constant(b, "bias")?.to_f32();
            let x_scale = self.constant(&node.input[1], "input scale")?.to_f32();
            let w_scale = self.constant(&node.input[4], "weight scale")?.to_f32();
            let [xs] = x_scale[..] else {
                return Err("its input scale is not one value".into());
            };
            if w_scale.len() != 1 && w_scale.len() != q.len() {
                return Err(format!(
                    "{} weight scales for a bias of {}",
                    w_scale.len(),
                    q.len()
                ));
            }
            let float = q
                .iter()
                .enumerate()
                .map(|(c, &v)| v * xs * w_scale[if w_scale.len() == 1 { 0 } else { c }])
                .collect();
            let name = self.fresh(&format!("{b}/float"));
            let shape = self.initializers[b].shape.clone();
            self.initializers
                .insert(name.clone(), HostTensor::f32(shape, float));
            self.constants.insert(name.clone());
            inputs.push(name);
        }
        let mut op = float_node(node, l.float_op, inputs);
        op.attribute.retain(|a| a.name != "channels_last");
        // An output range starting at 0 clips negatives: a Relu the quantizer folded away.
        // Pools, sums and concatenations of non-negative values need none.
        let averaging = matches!(l.float_op, "AveragePool" | "GlobalAveragePool" | "Concat");
        let sum = l.float_op == "Add";
        let clips = l.output.is_some_and(|o| at(o).is_some())
            && self.range_starts_at_zero(l.output.and_then(|o| at(o + 1)))
            && !((averaging || sum) && nonnegative)
            && l.float_op != "Sigmoid";
        if !clips {
            return Ok(vec![op]);
        }
        let out = node.output.first().ok_or("it has no output")?.clone();
        let linear = self.fresh(&format!("{out}/linear"));
        op.output = vec![linear.clone()];
        let mut relu = float_node(node, "Relu", vec![linear]);
        relu.name = self.fresh(&format!("{}/relu", node.name));
        relu.output = vec![out];
        Ok(vec![op, relu])
    }
}

/// `node` as a default-domain op with these inputs, keeping its name, outputs (the first
/// only: quantized ops have one) and attributes.
fn float_node(node: &NodeProto, op_type: &str, inputs: Vec<String>) -> NodeProto {
    let mut n = node.clone();
    n.op_type = op_type.into();
    n.domain = String::new();
    n.input = inputs;
    n.output.truncate(1);
    if matches!(op_type, "Identity" | "Relu") {
        n.attribute.clear();
    }
    n
}

/// Values computable without the network's input: initializers, `Constant` outputs, and
/// outputs of nodes reading only those (to a fixed point, for files not sorted).
fn constant_values(
    graph: &GraphProto,
    initializers: &HashMap<String, HostTensor>,
) -> HashSet<String> {
    let mut known: HashSet<String> = initializers.keys().cloned().collect();
    loop {
        let before = known.len();
        for n in &graph.node {
            if n.input.iter().all(|v| v.is_empty() || known.contains(v)) {
                known.extend(n.output.iter().cloned());
            }
        }
        if known.len() == before {
            return known;
        }
    }
}

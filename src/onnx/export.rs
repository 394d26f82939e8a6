//! [`Network`] + [`Store`] → ONNX, keeping the network's own node and value names, so that the
//! exported file has the user's structure rather than a re-traced graph.
//!
//! Ops are written in the semantics of opset 17 (20 when the network has a Gelu), which
//! ONNX Runtime, tract, TensorRT and OpenVINO read. Folded attributes that later opsets take
//! as inputs (Reshape's shape, Clip's bounds, Slice's ranges, ...) become small initializers.

use super::import::{LABELS_KEY, PREPROCESS_KEY};
use super::tensor::{f32_proto, i64_proto};
use crate::graph::shape::{self, Dim};
use crate::graph::{Network, Node, Op, PadMode, Reduce, Unary};
use crate::weights::Store;
use onnx_ir::{
    AttributeProto, AttributeType, Message, ModelProto, NodeProto, TensorProto, ValueInfoProto,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub const EXPORT_OPSET: i64 = 17;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("node '{node}' ({op}) cannot be exported: {reason}")]
    Node {
        node: String,
        op: String,
        reason: String,
    },
    #[error("the network is not valid: {0}")]
    Invalid(String),
    #[error("{0}")]
    Write(String),
}

/// Writes the network as an ONNX file, atomically.
pub fn export_file(net: &Network, store: &Store, path: &Path) -> Result<(), ExportError> {
    let bytes = export_bytes(net, store)?;
    crate::files::write_atomic(path, &bytes).map_err(ExportError::Write)
}

/// The labels file written next to an export: `model.onnx` → `model.labels.txt`.
pub fn labels_path(export: &Path) -> PathBuf {
    export.with_extension("labels.txt")
}

/// Writes the model and its class names (one per line, next to it), each atomically, and
/// returns the model's bytes (for a check in another runtime). What `graft train --export`
/// and the window's "Export ONNX…" write.
pub fn export_with_labels(net: &Network, store: &Store, path: &Path) -> Result<Vec<u8>, String> {
    let bytes = export_bytes(net, store).map_err(|e| e.to_string())?;
    crate::files::write_atomic(path, &bytes)?;
    crate::files::write_atomic(
        &labels_path(path),
        (net.metadata.labels.join("\n") + "\n").as_bytes(),
    )?;
    Ok(bytes)
}

pub fn export_bytes(net: &Network, store: &Store) -> Result<Vec<u8>, ExportError> {
    to_model(net, store)?
        .write_to_bytes()
        .map_err(|e| ExportError::Write(format!("cannot encode the model: {e}")))
}

pub fn to_model(net: &Network, store: &Store) -> Result<ModelProto, ExportError> {
    let opset = if net.nodes.iter().any(|n| matches!(n.op, Op::Gelu { .. })) {
        20
    } else {
        EXPORT_OPSET
    };
    let mut ex = Exporter {
        nodes: Vec::new(),
        initializers: Vec::new(),
        taken: net
            .nodes
            .iter()
            .flat_map(|n| {
                n.inputs
                    .iter()
                    .chain(&n.outputs)
                    .chain(std::iter::once(&n.name))
            })
            .cloned()
            .chain(store.iter().map(|(k, _)| k.clone()))
            .collect(),
    };
    let mut weights = HashSet::new();
    for node in &net.nodes {
        for input in node.present_inputs() {
            if store.contains(input) {
                weights.insert(input.to_owned());
            }
        }
        ex.node(node)?;
    }
    let mut graph = onnx_ir::GraphProto::new();
    graph.name = net.name.clone();
    let mut names: Vec<&String> = weights.iter().collect();
    names.sort();
    for name in names {
        let t = store
            .get(name)
            .ok_or_else(|| ExportError::Invalid(format!("weight '{name}' is missing")))?;
        graph.initializer.push(f32_proto(name, &t.shape, &t.data));
    }
    graph.initializer.append(&mut ex.initializers);
    graph.node = ex.nodes;

    let (shapes, errors) = shape::symbolic(net, store);
    if let Some(e) = errors.first() {
        return Err(ExportError::Invalid(format!(
            "node '{}': {}",
            e.node, e.message
        )));
    }
    let input_dims: Vec<Dim> = net
        .input
        .shape
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            if i == 0 && net.input.free_batch {
                Dim::Batch
            } else {
                Dim::Fixed(d)
            }
        })
        .collect();
    graph.input.push(value_info(&net.input.name, &input_dims));
    for out in &net.outputs {
        let dims = shapes
            .get(out)
            .ok_or_else(|| ExportError::Invalid(format!("output '{out}' is not computed")))?;
        graph.output.push(value_info(out, dims));
    }

    let mut model = ModelProto::new();
    model.ir_version = 8;
    model.producer_name = "graft".into();
    model.producer_version = env!("CARGO_PKG_VERSION").into();
    model.doc_string = net.metadata.doc.clone();
    model.opset_import.push(Default::default());
    if let Some(o) = model.opset_import.last_mut() {
        o.domain = String::new();
        o.version = opset;
    }
    let mut props: Vec<(String, String)> = Vec::new();
    if !net.metadata.labels.is_empty() {
        props.push((
            LABELS_KEY.into(),
            serde_json::to_string(&net.metadata.labels).unwrap_or_default(),
        ));
    }
    if let Some(p) = &net.metadata.preprocess {
        props.push((
            PREPROCESS_KEY.into(),
            serde_json::to_string(p).unwrap_or_default(),
        ));
    }
    props.extend(net.metadata.extra.iter().cloned());
    for (key, value) in props {
        model.metadata_props.push(Default::default());
        if let Some(p) = model.metadata_props.last_mut() {
            p.key = key;
            p.value = value;
        }
    }
    model.graph = Some(graph).into();
    Ok(model)
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let mut vi = ValueInfoProto::new();
    vi.name = name.to_owned();
    let mut ty = onnx_ir::TypeProto::new();
    let tt = ty.mut_tensor_type();
    tt.elem_type = super::tensor::dtype::FLOAT;
    let shape = tt.shape.mut_or_insert_default();
    for d in dims {
        shape.dim.push(Default::default());
        if let Some(dim) = shape.dim.last_mut() {
            match d {
                Dim::Batch => dim.set_dim_param("N".into()),
                Dim::Fixed(n) => dim.set_dim_value(*n as i64),
            }
        }
    }
    vi.type_ = Some(ty).into();
    vi
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INT.into();
    a.i = v;
    a
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INTS.into();
    a.ints = v.to_vec();
    a
}

fn attr_float(name: &str, v: f32) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::FLOAT.into();
    a.f = v;
    a
}

fn attr_string(name: &str, v: &str) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::STRING.into();
    a.s = v.as_bytes().to_vec().into();
    a
}

fn usizes(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

struct Exporter {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// Every name in use, so that added initializers and helper nodes never collide.
    taken: HashSet<String>,
}

impl Exporter {
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_owned();
        let mut i = 1;
        while !self.taken.insert(name.clone()) {
            name = format!("{base}_{i}");
            i += 1;
        }
        name
    }

    fn ints(&mut self, node: &str, what: &str, data: &[i64]) -> String {
        let name = self.fresh(&format!("{node}/{what}"));
        self.initializers
            .push(i64_proto(&name, &[data.len()], data));
        name
    }

    fn scalar(&mut self, node: &str, what: &str, v: f32) -> String {
        let name = self.fresh(&format!("{node}/{what}"));
        self.initializers.push(f32_proto(&name, &[], &[v]));
        name
    }

    fn emit(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) {
        let mut n = NodeProto::new();
        n.op_type = op_type.into();
        n.name = name.into();
        n.input = inputs;
        n.output = outputs;
        n.attribute = attrs;
        self.nodes.push(n);
    }

    fn node(&mut self, node: &Node) -> Result<(), ExportError> {
        let name = node.name.as_str();
        let ins = node.inputs.clone();
        let outs = node.outputs.clone();
        let x = ins.first().cloned().unwrap_or_default();
        let err = |reason: &str| ExportError::Node {
            node: name.into(),
            op: node.op.onnx_type().into(),
            reason: reason.into(),
        };
        match &node.op {
            Op::Conv(c) => {
                let attrs = vec![
                    attr_ints("strides", &usizes(&c.strides)),
                    attr_ints("pads", &usizes(&c.pads)),
                    attr_ints("dilations", &usizes(&c.dilations)),
                    attr_int("group", c.groups as i64),
                ];
                self.emit("Conv", name, trim(ins), outs, attrs);
            }
            Op::BatchNorm { epsilon, momentum } => {
                self.emit(
                    "BatchNormalization",
                    name,
                    ins,
                    outs,
                    vec![
                        attr_float("epsilon", *epsilon),
                        attr_float("momentum", *momentum),
                    ],
                );
            }
            Op::LayerNorm { axis, epsilon } => {
                self.emit(
                    "LayerNormalization",
                    name,
                    trim(ins),
                    outs,
                    vec![attr_int("axis", *axis), attr_float("epsilon", *epsilon)],
                );
            }
            Op::Lrn {
                size,
                alpha,
                beta,
                bias,
            } => {
                let attrs = vec![
                    attr_int("size", *size as i64),
                    attr_float("alpha", *alpha),
                    attr_float("beta", *beta),
                    attr_float("bias", *bias),
                ];
                self.emit("LRN", name, ins, outs, attrs);
            }
            Op::Gemm {
                alpha,
                beta,
                trans_a,
                trans_b,
            } => {
                let attrs = vec![
                    attr_float("alpha", *alpha),
                    attr_float("beta", *beta),
                    attr_int("transA", *trans_a as i64),
                    attr_int("transB", *trans_b as i64),
                ];
                self.emit("Gemm", name, trim(ins), outs, attrs);
            }
            Op::MatMul => self.emit("MatMul", name, ins, outs, vec![]),
            Op::Unary(Unary::Silu) => {
                // No ONNX op before opset 22's Swish: x * sigmoid(x).
                let s = self.fresh(&format!("{name}/sigmoid"));
                self.emit(
                    "Sigmoid",
                    &format!("{name}/Sigmoid"),
                    vec![x.clone()],
                    vec![s.clone()],
                    vec![],
                );
                self.emit("Mul", name, vec![x, s], outs, vec![]);
            }
            Op::Unary(Unary::Mish) => {
                // Mish is opset 18: x * tanh(softplus(x)).
                let sp = self.fresh(&format!("{name}/softplus"));
                let th = self.fresh(&format!("{name}/tanh"));
                self.emit(
                    "Softplus",
                    &format!("{name}/Softplus"),
                    vec![x.clone()],
                    vec![sp.clone()],
                    vec![],
                );
                self.emit(
                    "Tanh",
                    &format!("{name}/Tanh"),
                    vec![sp],
                    vec![th.clone()],
                    vec![],
                );
                self.emit("Mul", name, vec![x, th], outs, vec![]);
            }
            Op::Unary(u) => self.emit(u.onnx_name(), name, ins, outs, vec![]),
            Op::LeakyRelu { alpha } => self.emit(
                "LeakyRelu",
                name,
                ins,
                outs,
                vec![attr_float("alpha", *alpha)],
            ),
            Op::Elu { alpha } => {
                self.emit("Elu", name, ins, outs, vec![attr_float("alpha", *alpha)])
            }
            Op::HardSigmoid { alpha, beta } => self.emit(
                "HardSigmoid",
                name,
                ins,
                outs,
                vec![attr_float("alpha", *alpha), attr_float("beta", *beta)],
            ),
            Op::Clip { min, max } => {
                let lo = min.map(|v| self.scalar(name, "min", v)).unwrap_or_default();
                let hi = max.map(|v| self.scalar(name, "max", v)).unwrap_or_default();
                self.emit("Clip", name, trim(vec![x, lo, hi]), outs, vec![]);
            }
            Op::Gelu { tanh } => self.emit(
                "Gelu",
                name,
                ins,
                outs,
                vec![attr_string(
                    "approximate",
                    if *tanh { "tanh" } else { "none" },
                )],
            ),
            Op::Binary(b) => self.emit(b.onnx_name(), name, ins, outs, vec![]),
            Op::Nary(n) => self.emit(n.onnx_name(), name, ins, outs, vec![]),
            Op::MaxPool(p) => {
                let attrs = vec![
                    attr_ints("kernel_shape", &usizes(&p.kernel)),
                    attr_ints("strides", &usizes(&p.strides)),
                    attr_ints("pads", &usizes(&p.pads)),
                    attr_ints("dilations", &usizes(&p.dilations)),
                    attr_int("ceil_mode", p.ceil_mode as i64),
                ];
                self.emit("MaxPool", name, ins, outs, attrs);
            }
            Op::AveragePool {
                pool: p,
                count_include_pad,
            } => {
                let attrs = vec![
                    attr_ints("kernel_shape", &usizes(&p.kernel)),
                    attr_ints("strides", &usizes(&p.strides)),
                    attr_ints("pads", &usizes(&p.pads)),
                    attr_int("ceil_mode", p.ceil_mode as i64),
                    attr_int("count_include_pad", *count_include_pad as i64),
                ];
                self.emit("AveragePool", name, ins, outs, attrs);
            }
            Op::GlobalAveragePool => self.emit("GlobalAveragePool", name, ins, outs, vec![]),
            Op::GlobalMaxPool => self.emit("GlobalMaxPool", name, ins, outs, vec![]),
            Op::Reduce {
                kind,
                axes,
                keepdims,
            } => {
                let mut attrs = vec![attr_int("keepdims", *keepdims as i64)];
                let mut inputs = vec![x];
                if *kind == Reduce::Sum {
                    if !axes.is_empty() {
                        inputs.push(self.ints(name, "axes", axes));
                    }
                } else if !axes.is_empty() {
                    attrs.push(attr_ints("axes", axes));
                }
                self.emit(kind.onnx_name(), name, inputs, outs, attrs);
            }
            Op::Softmax { axis, legacy } | Op::LogSoftmax { axis, legacy } => {
                let op_type = node.op.onnx_type();
                if *legacy {
                    // Opset < 13 semantics: softmax over everything from `axis` on.
                    let flat = self.fresh(&format!("{name}/flat"));
                    let soft = self.fresh(&format!("{name}/soft"));
                    let shp = self.fresh(&format!("{name}/shape"));
                    self.emit(
                        "Flatten",
                        &format!("{name}/Flatten"),
                        vec![x.clone()],
                        vec![flat.clone()],
                        vec![attr_int("axis", *axis)],
                    );
                    self.emit(
                        op_type,
                        &format!("{name}/{op_type}"),
                        vec![flat],
                        vec![soft.clone()],
                        vec![attr_int("axis", 1)],
                    );
                    self.emit(
                        "Shape",
                        &format!("{name}/Shape"),
                        vec![x],
                        vec![shp.clone()],
                        vec![],
                    );
                    self.emit("Reshape", name, vec![soft, shp], outs, vec![]);
                } else {
                    self.emit(op_type, name, ins, outs, vec![attr_int("axis", *axis)]);
                }
            }
            Op::Concat { axis } => {
                self.emit("Concat", name, ins, outs, vec![attr_int("axis", *axis)])
            }
            Op::Split { axis, sizes } => {
                let s = self.ints(name, "split", &usizes(sizes));
                self.emit(
                    "Split",
                    name,
                    vec![x, s],
                    outs,
                    vec![attr_int("axis", *axis)],
                );
            }
            Op::Slice {
                starts,
                ends,
                axes,
                steps,
            } => {
                let inputs = vec![
                    x,
                    self.ints(name, "starts", starts),
                    self.ints(name, "ends", ends),
                    self.ints(name, "axes", axes),
                    self.ints(name, "steps", steps),
                ];
                self.emit("Slice", name, inputs, outs, vec![]);
            }
            Op::Gather {
                axis,
                indices,
                scalar,
            } => {
                let iname = self.fresh(&format!("{name}/indices"));
                let shape: Vec<usize> = if *scalar { vec![] } else { vec![indices.len()] };
                self.initializers.push(i64_proto(&iname, &shape, indices));
                self.emit(
                    "Gather",
                    name,
                    vec![x, iname],
                    outs,
                    vec![attr_int("axis", *axis)],
                );
            }
            Op::Flatten { axis } => {
                self.emit("Flatten", name, ins, outs, vec![attr_int("axis", *axis)])
            }
            Op::Reshape { shape, allowzero } => {
                let s = self.ints(name, "shape", shape);
                let attrs = if *allowzero {
                    vec![attr_int("allowzero", 1)]
                } else {
                    vec![]
                };
                self.emit("Reshape", name, vec![x, s], outs, attrs);
            }
            Op::Transpose { perm } => self.emit(
                "Transpose",
                name,
                ins,
                outs,
                vec![attr_ints("perm", &usizes(perm))],
            ),
            Op::Squeeze { axes } => {
                let mut inputs = vec![x];
                if !axes.is_empty() {
                    inputs.push(self.ints(name, "axes", axes));
                }
                self.emit("Squeeze", name, inputs, outs, vec![]);
            }
            Op::Unsqueeze { axes } => {
                let a = self.ints(name, "axes", axes);
                self.emit("Unsqueeze", name, vec![x, a], outs, vec![]);
            }
            Op::Expand { shape } => {
                let s = self.ints(name, "shape", shape);
                self.emit("Expand", name, vec![x, s], outs, vec![]);
            }
            Op::Pad { pads, mode } => {
                let p = self.ints(name, "pads", pads);
                let (mode_name, value) = match mode {
                    PadMode::Constant(v) => ("constant", Some(*v)),
                    PadMode::Reflect => ("reflect", None),
                    PadMode::Edge => ("edge", None),
                };
                let mut inputs = vec![x, p];
                if let Some(v) = value {
                    inputs.push(self.scalar(name, "value", v));
                }
                self.emit(
                    "Pad",
                    name,
                    inputs,
                    outs,
                    vec![attr_string("mode", mode_name)],
                );
            }
            Op::Dropout { ratio } => {
                let r = self.scalar(name, "ratio", *ratio);
                self.emit("Dropout", name, vec![x, r], outs, vec![]);
            }
            Op::Identity => self.emit("Identity", name, ins, outs, vec![]),
            Op::Unsupported { .. } => {
                return Err(err(
                    "Graft cannot run this op, so it cannot write it either; cut the network before it",
                ));
            }
        }
        Ok(())
    }
}

/// Drops trailing absent optional inputs (ONNX allows omitting them).
fn trim(mut inputs: Vec<String>) -> Vec<String> {
    while inputs.last().is_some_and(String::is_empty) {
        inputs.pop();
    }
    inputs
}

//! What op exporters write with: [`Emitter`] collects nodes and small initializers under
//! names that never collide; attribute builders; the pieces of a graph node an exporter needs.

use super::super::tensor::{f32_proto, i64_proto};
use crate::graph::Node;
use onnx_ir::{AttributeProto, AttributeType, GraphProto, NodeProto, TensorProto, ValueInfoProto};
use std::collections::HashSet;

/// Every name in use, handing out new ones that never collide (`base`, else `base_1`, …).
pub struct Names(HashSet<String>);

impl Names {
    pub fn new(taken: HashSet<String>) -> Self {
        Self(taken)
    }

    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_owned();
        let mut i = 1;
        while !self.0.insert(name.clone()) {
            name = format!("{base}_{i}");
            i += 1;
        }
        name
    }
}

pub struct Emitter {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    /// So that added initializers and helper nodes never collide.
    names: Names,
}

impl Emitter {
    /// An emitter that avoids every name in `taken` (the network's node, value and weight
    /// names).
    pub fn new(taken: HashSet<String>) -> Self {
        Self {
            nodes: Vec::new(),
            initializers: Vec::new(),
            names: Names::new(taken),
        }
    }

    pub fn fresh(&mut self, base: &str) -> String {
        self.names.fresh(base)
    }

    /// A 1-D integer initializer named after `node` and `what`; returns its name.
    pub fn ints(&mut self, node: &str, what: &str, data: &[i64]) -> String {
        self.ints_shaped(node, what, &[data.len()], data)
    }

    /// An integer initializer of any shape (a scalar: `[]`).
    pub fn ints_shaped(&mut self, node: &str, what: &str, shape: &[usize], data: &[i64]) -> String {
        let name = self.fresh(&format!("{node}/{what}"));
        self.initializers.push(i64_proto(&name, shape, data));
        name
    }

    /// A 1-D float initializer named after `node` and `what`; returns its name.
    pub fn floats(&mut self, node: &str, what: &str, data: &[f32]) -> String {
        let name = self.fresh(&format!("{node}/{what}"));
        self.initializers
            .push(f32_proto(&name, &[data.len()], data));
        name
    }

    pub fn scalar(&mut self, node: &str, what: &str, v: f32) -> String {
        let name = self.fresh(&format!("{node}/{what}"));
        self.initializers.push(f32_proto(&name, &[], &[v]));
        name
    }

    pub fn emit(
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
}

/// An [`Emitter`] for what an exporter adds around a network (a detector's decoding, a sound
/// network's front end): every node and constant is named under `prefix`, by which the
/// importer finds them and takes them away again.
pub struct Prefixed {
    pub ex: Emitter,
    prefix: &'static str,
}

impl Prefixed {
    /// An emitter avoiding every name already in `graph`.
    pub fn for_graph(graph: &GraphProto, prefix: &'static str) -> Self {
        let taken: HashSet<String> = graph
            .node
            .iter()
            .flat_map(|n| {
                n.input
                    .iter()
                    .chain(&n.output)
                    .chain(std::iter::once(&n.name))
                    .cloned()
            })
            .chain(graph.initializer.iter().map(|t| t.name.clone()))
            .chain(graph.input.iter().map(|i| i.name.clone()))
            .chain(graph.output.iter().map(|o| o.name.clone()))
            .collect();
        Self {
            ex: Emitter::new(taken),
            prefix,
        }
    }

    /// A node of `op` with one new output; returns the output's name.
    pub fn node(&mut self, op: &str, inputs: Vec<String>, attrs: Vec<AttributeProto>) -> String {
        let name = self.ex.fresh(&format!("{}{op}", self.prefix));
        let out = self.ex.fresh(&name);
        self.ex.emit(op, &name, inputs, vec![out.clone()], attrs);
        out
    }

    /// A fresh name under the prefix.
    pub fn fresh(&mut self, what: &str) -> String {
        self.ex.fresh(&format!("{}{what}", self.prefix))
    }

    pub fn ints(&mut self, what: &str, v: &[i64]) -> String {
        self.ex.ints(self.prefix.trim_end_matches('/'), what, v)
    }

    pub fn scalar_i64(&mut self, what: &str, v: i64) -> String {
        self.ex
            .ints_shaped(self.prefix.trim_end_matches('/'), what, &[], &[v])
    }

    pub fn floats(&mut self, what: &str, shape: &[usize], v: &[f32]) -> String {
        let name = self.fresh(what);
        self.ex.initializers.push(f32_proto(&name, shape, v));
        name
    }
}

/// A dimension of a graph input's or output's declared shape.
#[derive(Clone, Copy, Debug)]
pub enum ValueDim {
    /// Named and free (`N`, the batch; `D`, a detector's count of boxes).
    Param(&'static str),
    Fixed(usize),
}

/// A graph input's or output's declaration: name, ONNX element type, shape.
pub fn value_info(name: &str, elem: i32, dims: &[ValueDim]) -> ValueInfoProto {
    let mut vi = ValueInfoProto::new();
    vi.name = name.to_owned();
    let mut ty = onnx_ir::TypeProto::new();
    let tt = ty.mut_tensor_type();
    tt.elem_type = elem;
    let shape = tt.shape.mut_or_insert_default();
    for d in dims {
        shape.dim.push(Default::default());
        if let Some(dim) = shape.dim.last_mut() {
            match d {
                ValueDim::Fixed(n) => dim.set_dim_value(*n as i64),
                ValueDim::Param(p) => dim.set_dim_param((*p).into()),
            }
        }
    }
    vi.type_ = Some(ty).into();
    vi
}

/// The parts of a graph node an exporter writes from: its name, inputs, outputs and first
/// input.
pub struct Parts<'a> {
    pub name: &'a str,
    pub ins: Vec<String>,
    pub outs: Vec<String>,
    pub x: String,
}

pub fn parts(node: &Node) -> Parts<'_> {
    Parts {
        name: &node.name,
        ins: node.inputs.clone(),
        outs: node.outputs.clone(),
        x: node.inputs.first().cloned().unwrap_or_default(),
    }
}

pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INT.into();
    a.i = v;
    a
}

pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INTS.into();
    a.ints = v.to_vec();
    a
}

pub fn attr_float(name: &str, v: f32) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::FLOAT.into();
    a.f = v;
    a
}

pub fn attr_string(name: &str, v: &str) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::STRING.into();
    a.s = v.as_bytes().to_vec().into();
    a
}

pub fn usizes(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

/// Drops trailing absent optional inputs (ONNX allows omitting them).
pub fn trim(mut inputs: Vec<String>) -> Vec<String> {
    while inputs.last().is_some_and(String::is_empty) {
        inputs.pop();
    }
    inputs
}

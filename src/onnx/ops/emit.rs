//! What op exporters write with: [`Emitter`] collects nodes and small initializers under
//! names that never collide; attribute builders; the pieces of a graph node an exporter needs.

use super::super::tensor::{f32_proto, i64_proto};
use crate::graph::Node;
use onnx_ir::{AttributeProto, AttributeType, NodeProto, TensorProto};
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

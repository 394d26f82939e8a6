//! Reading a node's attributes by name, with defaults.

use super::tensor::{self, HostTensor};
use onnx_ir::{AttributeProto, NodeProto};

pub struct Attrs<'a> {
    attrs: &'a [AttributeProto],
}

impl<'a> Attrs<'a> {
    pub fn of(node: &'a NodeProto) -> Self {
        Self {
            attrs: &node.attribute,
        }
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.attrs.iter().find(|a| a.name == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).map_or(default, |a| a.i)
    }

    pub fn float(&self, name: &str, default: f32) -> f32 {
        self.get(name).map_or(default, |a| a.f)
    }

    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
    }

    pub fn floats(&self, name: &str) -> Option<Vec<f32>> {
        self.get(name).map(|a| a.floats.clone())
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }

    pub fn tensor(&self, name: &str) -> Option<Result<HostTensor, String>> {
        self.get(name)
            .and_then(|a| a.t.as_ref())
            .map(tensor::from_proto)
    }

    /// Every attribute as `(name, value as text)`, for placeholders and display.
    pub fn summary(&self) -> Vec<(String, String)> {
        self.attrs
            .iter()
            .map(|a| {
                let value = if !a.ints.is_empty() {
                    format!("{:?}", a.ints)
                } else if !a.floats.is_empty() {
                    format!("{:?}", a.floats)
                } else if !a.s.is_empty() {
                    String::from_utf8_lossy(&a.s).into_owned()
                } else if a.t.is_some() {
                    "<tensor>".into()
                } else if a.g.is_some() {
                    "<graph>".into()
                } else if a.f != 0.0 {
                    a.f.to_string()
                } else {
                    a.i.to_string()
                };
                (a.name.clone(), value)
            })
            .collect()
    }
}

//! `analyze()`: what a network is (shapes, parameters, MACs per node) and what is wrong with
//! it (errors and warnings per node).

use super::shape::{self, Dim};
use super::{Network, Op};
use crate::weights::Store;
use std::collections::{HashMap, HashSet};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    /// The node concerned, `None` for the network as a whole.
    pub node: Option<String>,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match &self.node {
            Some(n) => write!(f, "{sev}: node '{n}': {}", self.message),
            None => write!(f, "{sev}: {}", self.message),
        }
    }
}

/// Per-node facts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeInfo {
    /// Shapes of the outputs, `None` where they could not be inferred.
    pub output_shapes: Vec<Option<Vec<Dim>>>,
    /// Learnable parameters (weights and biases; not BatchNorm's running statistics).
    pub params: usize,
    /// Multiply-accumulates for one image.
    pub macs: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Analysis {
    /// Parallel to `Network::nodes`.
    pub nodes: Vec<NodeInfo>,
    pub issues: Vec<Issue>,
    pub total_params: usize,
    pub trainable_params: usize,
    pub total_macs: u64,
}

impl Analysis {
    pub fn errors(&self) -> impl Iterator<Item = &Issue> {
        self.issues.iter().filter(|i| i.severity == Severity::Error)
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    /// Issues about one node.
    pub fn issues_for<'a>(&'a self, node: &'a str) -> impl Iterator<Item = &'a Issue> + 'a {
        self.issues
            .iter()
            .filter(move |i| i.node.as_deref() == Some(node))
    }
}

pub fn analyze(net: &Network, store: &Store) -> Analysis {
    let mut issues = Vec::new();
    let mut err = |node: Option<&str>, message: String| {
        issues.push(Issue {
            severity: Severity::Error,
            node: node.map(str::to_owned),
            message,
        })
    };

    // Structure: unique names, every input defined before use, outputs produced.
    let mut names = HashSet::new();
    let mut defined: HashSet<&str> = HashSet::from([net.input.name.as_str()]);
    let mut producers: HashMap<&str, &str> = HashMap::new();
    for node in &net.nodes {
        if !names.insert(node.name.as_str()) {
            err(Some(&node.name), "another node has the same name".into());
        }
        for input in node.present_inputs() {
            if !defined.contains(input) && !store.contains(input) {
                let why = if producers.contains_key(input) {
                    "is produced later (the nodes are not in order)"
                } else {
                    "is neither produced by a node nor a stored weight"
                };
                err(Some(&node.name), format!("input '{input}' {why}"));
            }
        }
        for output in node.outputs.iter().filter(|o| !o.is_empty()) {
            if let Some(prev) = producers.insert(output, &node.name) {
                err(
                    Some(&node.name),
                    format!("output '{output}' is also produced by '{prev}'"),
                );
            }
            defined.insert(output);
        }
        if let Op::Unsupported {
            op_type, reason, ..
        } = &node.op
        {
            err(
                Some(&node.name),
                format!("op {op_type} is not supported: {reason}"),
            );
        }
        if node.lr_factor < 0.0 || !node.lr_factor.is_finite() {
            err(
                Some(&node.name),
                format!("learn-rate factor {} must be ≥ 0", node.lr_factor),
            );
        }
    }
    if net.outputs.is_empty() {
        err(None, "the network has no output".into());
    }
    for out in &net.outputs {
        if !defined.contains(out.as_str()) {
            err(None, format!("output '{out}' is not produced by any node"));
        }
    }

    let (shapes, shape_errors) = shape::symbolic(net, store);
    for e in shape_errors {
        // An unsupported node's missing shape rule is already reported above.
        if net.node(&e.node).is_some_and(|n| n.op.is_supported()) {
            err(Some(&e.node), e.message);
        }
    }
    let (concrete, _) = shape::infer(net, store, 1);

    // Dead ends: nodes that feed nothing and are not outputs.
    let used: HashSet<&str> = net
        .nodes
        .iter()
        .flat_map(|n| n.present_inputs())
        .chain(net.outputs.iter().map(String::as_str))
        .collect();
    for node in &net.nodes {
        if node.outputs.iter().all(|o| !used.contains(o.as_str())) {
            issues.push(Issue {
                severity: Severity::Warning,
                node: Some(node.name.clone()),
                message: "its output is not used".into(),
            });
        }
    }

    let mut infos = Vec::with_capacity(net.nodes.len());
    let (mut total_params, mut trainable_params, mut total_macs) = (0, 0, 0u64);
    for node in &net.nodes {
        let params: usize = node
            .op
            .learnable_inputs()
            .iter()
            .filter_map(|&i| node.inputs.get(i))
            .filter_map(|name| store.get(name))
            .map(|t| t.len())
            .sum();
        let macs = macs(node, &concrete, store);
        total_params += params;
        if !node.is_frozen() {
            trainable_params += params;
        }
        total_macs += macs;
        infos.push(NodeInfo {
            output_shapes: node
                .outputs
                .iter()
                .map(|o| shapes.get(o).cloned())
                .collect(),
            params,
            macs,
        });
    }
    issues.sort_by_key(|i| std::cmp::Reverse(i.severity));
    Analysis {
        nodes: infos,
        issues,
        total_params,
        trainable_params,
        total_macs,
    }
}

/// Multiply-accumulates of one node for one image.
fn macs(node: &super::Node, shapes: &shape::Shapes, store: &Store) -> u64 {
    let shape_of = |name: &str| {
        shapes
            .get(name)
            .map(Vec::as_slice)
            .or_else(|| store.get(name).map(|t| t.shape.as_slice()))
    };
    let out = node.outputs.first().and_then(|o| shapes.get(o));
    let numel = |s: &[usize]| s.iter().product::<usize>() as u64;
    match (&node.op, out) {
        (Op::Conv(_), Some(out)) => {
            let Some(w) = node.inputs.get(1).and_then(|w| shape_of(w)) else {
                return 0;
            };
            // Per image: output values × (input channels per group × kernel area).
            numel(&out[1..]) * (w[1] * w[2] * w[3]) as u64
        }
        (Op::Gemm { trans_b, .. }, Some(out)) => {
            let Some(b) = node.inputs.get(1).and_then(|b| shape_of(b)) else {
                return 0;
            };
            let k = if *trans_b { b[1] } else { b[0] };
            out.get(1).map_or(0, |&n| (n * k) as u64)
        }
        (Op::MatMul, Some(out)) => {
            let Some(a) = node.inputs.first().and_then(|a| shape_of(a)) else {
                return 0;
            };
            let k = *a.last().unwrap_or(&0) as u64;
            numel(out.get(1..).unwrap_or(&[])) * k
        }
        _ => 0,
    }
}

//! Shape inference over a whole network.
//!
//! Shapes are computed for a concrete batch size; [`symbolic`] runs it for two batch sizes
//! and marks the dimensions that follow the batch, which is how shapes are shown (`N×32×112×112`).

use super::Network;
use crate::weights::Store;
use std::collections::HashMap;
use std::fmt;

/// Concrete shapes by value name.
pub type Shapes = HashMap<String, Vec<usize>>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeError {
    pub node: String,
    pub message: String,
}

/// Shapes of every value for `batch` images, and the nodes whose inputs do not fit. Values
/// after a failing node are left out; their nodes are not reported again.
pub fn infer(net: &Network, store: &Store, batch: usize) -> (Shapes, Vec<ShapeError>) {
    let mut shapes = Shapes::new();
    let mut input = net.input.shape.clone();
    if net.input.free_batch
        && let Some(b) = input.first_mut()
    {
        *b = batch;
    }
    shapes.insert(net.input.name.clone(), input);
    let mut errors = Vec::new();
    for node in &net.nodes {
        let mut inputs = Vec::with_capacity(node.inputs.len());
        let mut unknown = false;
        for name in &node.inputs {
            if name.is_empty() {
                inputs.push(None);
            } else if let Some(s) = shapes.get(name) {
                inputs.push(Some(s.as_slice()));
            } else if let Some(t) = store.get(name) {
                inputs.push(Some(t.shape.as_slice()));
            } else {
                unknown = true;
                break;
            }
        }
        if unknown {
            continue;
        }
        match node.op.infer_shapes(&inputs, node.outputs.len()) {
            Ok(outs) => {
                for (name, s) in node.outputs.iter().zip(outs) {
                    if !name.is_empty() {
                        shapes.insert(name.clone(), s);
                    }
                }
            }
            Err(message) => errors.push(ShapeError {
                node: node.name.clone(),
                message,
            }),
        }
    }
    (shapes, errors)
}

/// One dimension of a displayed shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    /// Follows the batch size.
    Batch,
    Fixed(usize),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Batch => write!(f, "N"),
            Dim::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// Formats a shape as `N×3×224×224`.
pub fn format_dims(dims: &[Dim]) -> String {
    if dims.is_empty() {
        return "scalar".into();
    }
    dims.iter()
        .map(Dim::to_string)
        .collect::<Vec<_>>()
        .join("×")
}

/// Shapes with batch-following dimensions marked, from inference at batch 1 and 2.
pub fn symbolic(net: &Network, store: &Store) -> (HashMap<String, Vec<Dim>>, Vec<ShapeError>) {
    let (one, errors) = infer(net, store, 1);
    let (two, _) = infer(net, store, 2);
    let dims = one
        .into_iter()
        .map(|(name, s1)| {
            let s2 = two.get(&name);
            let dims = s1
                .iter()
                .enumerate()
                .map(|(i, &d)| match s2.and_then(|s| s.get(i)) {
                    Some(&d2) if d2 != d => Dim::Batch,
                    _ => Dim::Fixed(d),
                })
                .collect();
            (name, dims)
        })
        .collect();
    (dims, errors)
}

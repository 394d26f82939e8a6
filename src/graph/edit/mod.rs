//! Edits of a network as reversible commands: each one keeps the graph valid or says why not,
//! and returns a [`Change`] that undoes and redoes it (the GUI's undo stack holds them).
//!
//! This file dispatches edits; `head.rs` finds the classifier and adapts the head,
//! `library.rs` builds layers from the layer library, `reach.rs` answers what depends on
//! what (and cuts and prunes).

mod detection_head;
mod head;
mod library;
mod reach;

pub use detection_head::{
    DETECT_OUTPUT, DETECT_PREFIX, DETECTION_KEY, DetectionSpec, Scale, coarser_feature,
    default_feature, output_name,
};
pub use head::{
    HEAD_CLASSIFIER, HEAD_FLATTEN, HEAD_OUTPUT, HEAD_SOFTMAX, find_classifier, freeze_backbone,
    head_nodes, head_start,
};
pub use library::{LayerKind, NewLayer};
pub use reach::{ancestors, cut_after, descendants, prune};

use super::analyze::{Severity, analyze};
use super::{Network, Op};
use crate::weights::{Store, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("there is no node named '{0}'")]
    NoSuchNode(String),
    #[error("{0}")]
    Invalid(String),
}

/// A change the user asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Edit {
    SetFrozen {
        node: String,
        frozen: bool,
    },
    /// Freeze `node` and every node it depends on.
    FreezeUntil {
        node: String,
    },
    /// Unfreeze `node` and every node that depends on it.
    UnfreezeFrom {
        node: String,
    },
    SetLrFactor {
        node: String,
        factor: f32,
    },
    /// Replace the final classifier (and any softmax after it) by a freshly initialised one
    /// for `classes`, followed by a softmax.
    AdaptHead {
        classes: Vec<String>,
        seed: u64,
    },
    /// Replace everything after `node` (a feature map) by a detection head for `classes`
    /// with `anchors` ((width, height) in input pixels), freshly initialised. Non-empty
    /// `coarse_anchors` add a second scale on the deepest map at twice `node`'s stride
    /// ([`coarser_feature`]), predicting those anchors.
    AddDetectionHead {
        node: String,
        classes: Vec<String>,
        anchors: Vec<(f32, f32)>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        coarse_anchors: Vec<(f32, f32)>,
        seed: u64,
    },
    /// Keep the network up to `node` (its first output becomes the output).
    CutAfter {
        node: String,
    },
    /// Remove a node with one input and one output, wiring its readers to its input.
    RemoveNode {
        node: String,
    },
    /// Change a node's attributes (same op kind).
    SetOp {
        node: String,
        op: Op,
    },
    /// Insert a new layer reading `node`'s first output; `node`'s readers read the new layer.
    InsertAfter {
        node: String,
        layer: NewLayer,
    },
    /// Replace `node` by a new layer reading its first input and writing its first output.
    Replace {
        node: String,
        layer: NewLayer,
    },
    /// Make input `index` of `node` read `value` (a wire in the graph view).
    Rewire {
        node: String,
        index: usize,
        value: String,
    },
}

/// What an edit changed: the node lists before and after (small) and the weights it removed
/// and added (only those), enough to undo and redo.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub edit: Edit,
    before: Network,
    after: Network,
    removed: Vec<(String, Tensor)>,
    added: Vec<(String, Tensor)>,
}

impl Change {
    pub fn undo(&self, net: &mut Network, store: &mut Store) {
        *net = self.before.clone();
        for (name, _) in &self.added {
            store.remove(name);
        }
        for (name, t) in &self.removed {
            store.insert(name.clone(), t.clone());
        }
    }

    pub fn redo(&self, net: &mut Network, store: &mut Store) {
        *net = self.after.clone();
        for (name, _) in &self.removed {
            store.remove(name);
        }
        for (name, t) in &self.added {
            store.insert(name.clone(), t.clone());
        }
    }
}

/// Applies `edit`. If it would add errors to the network's analysis, nothing changes and the
/// error lists them.
pub fn apply(net: &mut Network, store: &mut Store, edit: &Edit) -> Result<Change, EditError> {
    let before = net.clone();
    let errors_before: HashSet<String> = analyze(net, store)
        .issues
        .into_iter()
        .filter(|i| i.severity == Severity::Error)
        .map(|i| i.to_string())
        .collect();
    let mut work = net.clone();
    let (removed, added) = apply_inner(&mut work, store, edit)?;
    // Tentatively commit the weights to check the result, then roll back on failure.
    for (name, _) in &removed {
        store.remove(name);
    }
    for (name, t) in &added {
        store.insert(name.clone(), t.clone());
    }
    let new_errors: Vec<String> = analyze(&work, store)
        .issues
        .into_iter()
        .filter(|i| i.severity == Severity::Error)
        .map(|i| i.to_string())
        .filter(|e| !errors_before.contains(e))
        .collect();
    if !new_errors.is_empty() {
        for (name, _) in &added {
            store.remove(name);
        }
        for (name, t) in &removed {
            store.insert(name.clone(), t.clone());
        }
        return Err(EditError::Invalid(format!(
            "the edit would break the network: {}",
            new_errors.join("; ")
        )));
    }
    *net = work.clone();
    Ok(Change {
        edit: edit.clone(),
        before,
        after: work,
        removed,
        added,
    })
}

type Weights = Vec<(String, Tensor)>;

fn index(net: &Network, node: &str) -> Result<usize, EditError> {
    net.node_index(node)
        .ok_or_else(|| EditError::NoSuchNode(node.to_owned()))
}

/// A node's position and the name of its first output (what "after this node" reads).
fn first_output(net: &Network, node: &str) -> Result<(usize, String), EditError> {
    let i = index(net, node)?;
    let value = net.nodes[i]
        .outputs
        .first()
        .cloned()
        .ok_or_else(|| EditError::Invalid(format!("'{node}' has no output")))?;
    Ok((i, value))
}

fn apply_inner(
    net: &mut Network,
    store: &Store,
    edit: &Edit,
) -> Result<(Weights, Weights), EditError> {
    match edit {
        Edit::SetFrozen { node, frozen } => {
            let i = index(net, node)?;
            net.nodes[i].frozen = *frozen;
            if !frozen && net.nodes[i].lr_factor == 0.0 {
                net.nodes[i].lr_factor = 1.0;
            }
        }
        Edit::FreezeUntil { node } => {
            let i = index(net, node)?;
            for j in ancestors(net, i) {
                net.nodes[j].frozen = true;
            }
        }
        Edit::UnfreezeFrom { node } => {
            let i = index(net, node)?;
            for j in descendants(net, i) {
                net.nodes[j].frozen = false;
                if net.nodes[j].lr_factor == 0.0 {
                    net.nodes[j].lr_factor = 1.0;
                }
            }
        }
        Edit::SetLrFactor { node, factor } => {
            if !factor.is_finite() || *factor < 0.0 {
                return Err(EditError::Invalid(format!(
                    "learn-rate factor {factor} must be ≥ 0"
                )));
            }
            let i = index(net, node)?;
            net.nodes[i].lr_factor = *factor;
        }
        Edit::AdaptHead { classes, seed } => return head::adapt_head(net, store, classes, *seed),
        Edit::AddDetectionHead {
            node,
            classes,
            anchors,
            coarse_anchors,
            seed,
        } => {
            return detection_head::add(net, store, node, classes, anchors, coarse_anchors, *seed);
        }
        Edit::InsertAfter { node, layer } => return library::insert_after(net, store, node, layer),
        Edit::Replace { node, layer } => return library::replace(net, store, node, layer),
        Edit::Rewire { node, index, value } => {
            let i = self::index(net, node)?;
            let defined = value == &net.input.name
                || store.contains(value)
                || net.nodes[..i].iter().any(|n| n.outputs.contains(value));
            if !defined {
                return Err(EditError::Invalid(format!(
                    "'{value}' is not computed before '{node}'"
                )));
            }
            let n = &mut net.nodes[i];
            if *index >= n.inputs.len() {
                n.inputs.resize(index + 1, String::new());
            }
            n.inputs[*index] = value.clone();
        }
        Edit::CutAfter { node } => {
            let (cut, kept) = cut_after(net, store, node)?;
            *net = cut;
            let removed = store
                .iter()
                .filter(|(k, _)| !kept.contains(k))
                .map(|(k, t)| (k.clone(), t.clone()))
                .collect();
            return Ok((removed, Vec::new()));
        }
        Edit::RemoveNode { node } => {
            let i = index(net, node)?;
            let n = &net.nodes[i];
            let data_inputs: Vec<&str> =
                n.present_inputs().filter(|v| !store.contains(v)).collect();
            let ([input], [output]) = (data_inputs.as_slice(), n.outputs.as_slice()) else {
                return Err(EditError::Invalid(format!(
                    "'{node}' has {} activation inputs and {} outputs; only a node with one of each can be removed",
                    data_inputs.len(),
                    n.outputs.len()
                )));
            };
            let (input, output) = (input.to_string(), output.clone());
            let weights: Vec<String> = n
                .present_inputs()
                .filter(|v| store.contains(v))
                .map(str::to_owned)
                .collect();
            net.nodes.remove(i);
            for m in &mut net.nodes {
                for v in &mut m.inputs {
                    if *v == output {
                        *v = input.clone();
                    }
                }
            }
            for o in &mut net.outputs {
                if *o == output {
                    *o = input.clone();
                }
            }
            let still_read: HashSet<&str> =
                net.nodes.iter().flat_map(|n| n.present_inputs()).collect();
            let removed = weights
                .into_iter()
                .filter(|w| !still_read.contains(w.as_str()))
                .filter_map(|w| store.get(&w).map(|t| (w.clone(), t.clone())))
                .collect();
            return Ok((removed, Vec::new()));
        }
        Edit::SetOp { node, op } => {
            let i = index(net, node)?;
            if std::mem::discriminant(&net.nodes[i].op) != std::mem::discriminant(op) {
                return Err(EditError::Invalid(format!(
                    "'{node}' is a {}; use a replace edit to change it into a {}",
                    net.nodes[i].op.onnx_type(),
                    op.onnx_type()
                )));
            }
            net.nodes[i].op = op.clone();
        }
    }
    Ok((Vec::new(), Vec::new()))
}

/// The one weight initialiser of new layers and heads: PyTorch's default for Linear and Conv
/// weights and biases, U(-1/√fan_in, 1/√fan_in), seeded so an edit replays to the same bytes.
struct Initializer(ChaCha8Rng);

impl Initializer {
    fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    fn uniform(&mut self, count: usize, fan_in: usize) -> Vec<f32> {
        let b = 1.0 / (fan_in.max(1) as f32).sqrt();
        (0..count).map(|_| self.0.random_range(-b..=b)).collect()
    }
}

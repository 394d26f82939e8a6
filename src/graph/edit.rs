//! Edits of a network as reversible commands: each one keeps the graph valid or says why not,
//! and returns a [`Change`] that undoes and redoes it (the GUI's undo stack holds them).

use super::analyze::{Severity, analyze};
use super::{Network, Node, Op};
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

/// A layer from the layer library, with what its weights need.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LayerKind {
    Conv {
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    },
    Linear {
        out_features: usize,
    },
    BatchNorm,
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Sigmoid,
    Tanh,
    Gelu,
    Dropout {
        ratio: f32,
    },
    MaxPool {
        kernel: usize,
        stride: usize,
    },
    AvgPool {
        kernel: usize,
        stride: usize,
    },
    GlobalAvgPool,
    Flatten,
    Softmax,
}

impl LayerKind {
    /// The library, with sensible defaults, in the order the UI lists them.
    pub fn library() -> Vec<LayerKind> {
        vec![
            LayerKind::Conv {
                out_channels: 64,
                kernel: 3,
                stride: 1,
                padding: 1,
            },
            LayerKind::Linear { out_features: 128 },
            LayerKind::BatchNorm,
            LayerKind::Relu,
            LayerKind::LeakyRelu { alpha: 0.1 },
            LayerKind::Sigmoid,
            LayerKind::Tanh,
            LayerKind::Gelu,
            LayerKind::Dropout { ratio: 0.5 },
            LayerKind::MaxPool {
                kernel: 2,
                stride: 2,
            },
            LayerKind::AvgPool {
                kernel: 2,
                stride: 2,
            },
            LayerKind::GlobalAvgPool,
            LayerKind::Flatten,
            LayerKind::Softmax,
        ]
    }

    pub fn label(&self) -> &'static str {
        match self {
            LayerKind::Conv { .. } => "Convolution",
            LayerKind::Linear { .. } => "Linear (fully connected)",
            LayerKind::BatchNorm => "Batch normalization",
            LayerKind::Relu => "ReLU",
            LayerKind::LeakyRelu { .. } => "Leaky ReLU",
            LayerKind::Sigmoid => "Sigmoid",
            LayerKind::Tanh => "Tanh",
            LayerKind::Gelu => "GELU",
            LayerKind::Dropout { .. } => "Dropout",
            LayerKind::MaxPool { .. } => "Max pooling",
            LayerKind::AvgPool { .. } => "Average pooling",
            LayerKind::GlobalAvgPool => "Global average pooling",
            LayerKind::Flatten => "Flatten",
            LayerKind::Softmax => "Softmax",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewLayer {
    pub name: String,
    pub kind: LayerKind,
    pub seed: u64,
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
        Edit::AdaptHead { classes, seed } => return adapt_head(net, store, classes, *seed),
        Edit::InsertAfter { node, layer } => return insert_after(net, store, node, layer),
        Edit::Replace { node, layer } => return replace(net, store, node, layer),
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

/// Node `i` and every node it depends on.
pub fn ancestors(net: &Network, i: usize) -> Vec<usize> {
    let mut needed: HashSet<&str> = net.nodes[i].present_inputs().collect();
    let mut out = vec![i];
    for j in (0..i).rev() {
        if net.nodes[j]
            .outputs
            .iter()
            .any(|o| needed.contains(o.as_str()))
        {
            out.push(j);
            needed.extend(net.nodes[j].present_inputs());
        }
    }
    out
}

/// Node `i` and every node that depends on it.
pub fn descendants(net: &Network, i: usize) -> Vec<usize> {
    let mut produced: HashSet<&str> = net.nodes[i].outputs.iter().map(String::as_str).collect();
    let mut out = vec![i];
    for j in i + 1..net.nodes.len() {
        if net.nodes[j].present_inputs().any(|v| produced.contains(v)) {
            out.push(j);
            produced.extend(net.nodes[j].outputs.iter().map(String::as_str));
        }
    }
    out
}

/// The network up to and including `node`: its first output becomes the network's output and
/// everything not needed to compute it is removed, weights included. This is how a network
/// whose head holds an unsupported op still serves as a backbone.
pub fn cut_after(net: &Network, store: &Store, node: &str) -> Result<(Network, Store), EditError> {
    let i = index(net, node)?;
    let out = net.nodes[i]
        .outputs
        .first()
        .cloned()
        .ok_or_else(|| EditError::Invalid(format!("node '{node}' has no output")))?;
    let mut net = net.clone();
    let mut store = store.clone();
    net.outputs = vec![out];
    prune(&mut net, &mut store);
    Ok((net, store))
}

/// Removes the nodes that no output depends on, and the weights no node reads.
pub fn prune(net: &mut Network, store: &mut Store) {
    let mut needed: HashSet<String> = net.outputs.iter().cloned().collect();
    let mut keep = vec![false; net.nodes.len()];
    for (i, node) in net.nodes.iter().enumerate().rev() {
        if node.outputs.iter().any(|o| needed.contains(o)) {
            keep[i] = true;
            needed.extend(node.present_inputs().map(str::to_owned));
        }
    }
    let mut k = keep.into_iter();
    net.nodes.retain(|_| k.next().unwrap_or(false));
    let read: HashSet<&str> = net.nodes.iter().flat_map(|n| n.present_inputs()).collect();
    store.retain(|name| read.contains(name));
}

/// Ops that may follow a classifier without being part of it (they are kept, except
/// softmaxes, which the new head replaces).
fn is_tail_op(op: &Op) -> bool {
    matches!(
        op,
        Op::Softmax { .. }
            | Op::LogSoftmax { .. }
            | Op::Identity
            | Op::Flatten { .. }
            | Op::Reshape { .. }
            | Op::Squeeze { .. }
            | Op::Dropout { .. }
            | Op::GlobalAveragePool
            | Op::GlobalMaxPool
            | Op::Reduce { .. }
            | Op::Unary(crate::graph::Unary::Relu)
    )
}

/// The index of the final learnable classifier: the last Gemm/MatMul (or a 1×1 Conv, as in
/// SqueezeNet) before the output, with only shape ops, pooling and softmax after it.
pub fn find_classifier(net: &Network, store: &Store) -> Option<usize> {
    let mut value = net.outputs.first()?.clone();
    loop {
        let i = net.producer(&value)?;
        let node = &net.nodes[i];
        let weight = node.inputs.get(1).and_then(|w| store.get(w));
        match &node.op {
            Op::Gemm { .. } | Op::MatMul if weight.is_some_and(|w| w.shape.len() == 2) => {
                return Some(i);
            }
            Op::Conv(c)
                if c.groups == 1 && weight.is_some_and(|w| w.shape[2] == 1 && w.shape[3] == 1) =>
            {
                return Some(i);
            }
            // A MatMul classifier's bias.
            Op::Binary(crate::graph::Binary::Add)
                if node.inputs.get(1).is_some_and(|b| store.contains(b)) => {}
            op if is_tail_op(op) => {}
            _ => return None,
        }
        value = node.inputs.first()?.clone();
    }
}

pub const HEAD_CLASSIFIER: &str = "head/classifier";
pub const HEAD_SOFTMAX: &str = "head/softmax";
pub const HEAD_OUTPUT: &str = "probabilities";

fn adapt_head(
    net: &mut Network,
    store: &Store,
    classes: &[String],
    seed: u64,
) -> Result<(Weights, Weights), EditError> {
    if classes.len() < 2 {
        return Err(EditError::Invalid(format!(
            "a classifier needs at least two classes, got {}",
            classes.len()
        )));
    }
    let ci = find_classifier(net, store).ok_or_else(|| {
        EditError::Invalid("no final classifier found (a Gemm/MatMul or 1×1 Conv followed only by pooling, reshapes and softmax)".into())
    })?;
    let (shapes, _) = super::shape::infer(net, store, 1);
    let old = net.nodes[ci].clone();
    let w = store
        .get(&old.inputs[1])
        .ok_or_else(|| EditError::Invalid("classifier weight missing".into()))?;
    let n = classes.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // PyTorch's default initialisation of Linear and Conv: U(-1/√fan_in, 1/√fan_in).
    let mut uniform = |count: usize, fan_in: usize| -> Vec<f32> {
        let b = 1.0 / (fan_in.max(1) as f32).sqrt();
        (0..count).map(|_| rng.random_range(-b..=b)).collect()
    };
    let input_rank = shapes.get(&old.inputs[0]).map(Vec::len);
    let (op, weight, bias) = match &old.op {
        Op::Conv(c) => {
            let fan_in = w.shape[1] * w.shape[2] * w.shape[3];
            let shape = vec![n, w.shape[1], w.shape[2], w.shape[3]];
            let data = uniform(n * fan_in, fan_in);
            (
                Op::Conv(c.clone()),
                Tensor { shape, data },
                uniform(n, fan_in),
            )
        }
        Op::Gemm {
            trans_b, trans_a, ..
        } => {
            let fan_in = if *trans_b { w.shape[1] } else { w.shape[0] };
            let data = uniform(n * fan_in, fan_in);
            let op = Op::Gemm {
                alpha: 1.0,
                beta: 1.0,
                trans_a: *trans_a,
                trans_b: true,
            };
            (
                op,
                Tensor {
                    shape: vec![n, fan_in],
                    data,
                },
                uniform(n, fan_in),
            )
        }
        _ if input_rank == Some(2) => {
            // A rank-2 MatMul classifier becomes a Gemm with its bias.
            let fan_in = w.shape[0];
            let data = uniform(n * fan_in, fan_in);
            let op = Op::Gemm {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b: true,
            };
            (
                op,
                Tensor {
                    shape: vec![n, fan_in],
                    data,
                },
                uniform(n, fan_in),
            )
        }
        _ => {
            let fan_in = w.shape[0];
            (
                Op::MatMul,
                Tensor {
                    shape: vec![fan_in, n],
                    data: uniform(n * fan_in, fan_in),
                },
                uniform(n, fan_in),
            )
        }
    };

    // The tail after the classifier: softmaxes and a MatMul's bias Add go; the rest stays.
    let mut removed_nodes: HashSet<usize> = HashSet::new();
    let mut value = old.outputs[0].clone();
    let mut last_kept_output = value.clone();
    for j in ci + 1..net.nodes.len() {
        let node = &net.nodes[j];
        if node.inputs.first() != Some(&value) {
            continue;
        }
        let matmul_bias = matches!(old.op, Op::MatMul)
            && matches!(node.op, Op::Binary(crate::graph::Binary::Add))
            && node.inputs.get(1).is_some_and(|b| store.contains(b));
        if matches!(node.op, Op::Softmax { .. } | Op::LogSoftmax { .. }) || matmul_bias {
            removed_nodes.insert(j);
        } else {
            last_kept_output = node.outputs[0].clone();
        }
        value = node.outputs[0].clone();
    }
    // Rewire: nodes after a dropped node read what it read.
    let mut removed_weights: Weights = Vec::new();
    let mut read_old: Vec<String> = old.present_inputs().skip(1).map(str::to_owned).collect();
    let mut renames: Vec<(String, String)> = Vec::new();
    for &j in &removed_nodes {
        let node = &net.nodes[j];
        read_old.extend(node.present_inputs().skip(1).map(str::to_owned));
        renames.push((node.outputs[0].clone(), node.inputs[0].clone()));
    }
    let mut kept: Vec<Node> = Vec::with_capacity(net.nodes.len() + 1);
    for (j, node) in net.nodes.iter().enumerate() {
        if removed_nodes.contains(&j) {
            continue;
        }
        let mut node = node.clone();
        for v in &mut node.inputs {
            // Follow renames through chains of dropped nodes.
            while let Some((_, to)) = renames.iter().find(|(from, _)| from == v) {
                *v = to.clone();
            }
        }
        if j == ci {
            node.name = HEAD_CLASSIFIER.into();
            node.op = op.clone();
            node.inputs = vec![
                node.inputs[0].clone(),
                "head.classifier.weight".into(),
                "head.classifier.bias".into(),
            ];
            if matches!(op, Op::MatMul) {
                node.inputs.truncate(2);
            }
            node.frozen = false;
            node.lr_factor = 1.0;
        }
        kept.push(node);
    }
    let mut final_value = last_kept_output;
    while let Some((_, to)) = renames.iter().find(|(from, _)| *from == final_value) {
        final_value = to.clone();
    }
    let mut added: Weights = vec![("head.classifier.weight".into(), weight)];
    if matches!(op, Op::MatMul) {
        // A MatMul head keeps its bias as an Add.
        kept.push(Node::new(
            "head/bias",
            Op::Binary(crate::graph::Binary::Add),
            vec![final_value.clone(), "head.classifier.bias".into()],
            vec!["head/logits".into()],
        ));
        final_value = "head/logits".into();
    }
    added.push((
        "head.classifier.bias".into(),
        Tensor {
            shape: vec![n],
            data: bias,
        },
    ));
    kept.push(Node::new(
        HEAD_SOFTMAX,
        Op::Softmax {
            axis: -1,
            legacy: false,
        },
        vec![final_value],
        vec![HEAD_OUTPUT.into()],
    ));
    net.nodes = kept;
    net.outputs = vec![HEAD_OUTPUT.into()];
    net.metadata.labels = classes.to_vec();

    let still_read: HashSet<&str> = net.nodes.iter().flat_map(|n| n.present_inputs()).collect();
    read_old.sort();
    read_old.dedup();
    for name in read_old {
        if !still_read.contains(name.as_str())
            && let Some(t) = store.get(&name)
        {
            removed_weights.push((name, t.clone()));
        }
    }
    Ok((removed_weights, added))
}

/// The first node of the head (the classifier), for "freeze the backbone".
pub fn head_start(net: &Network, store: &Store) -> Option<usize> {
    net.node_index(HEAD_CLASSIFIER)
        .or_else(|| find_classifier(net, store))
}

/// Freezes every node before the head's classifier.
pub fn freeze_backbone(net: &mut Network, store: &Store) -> Result<(), EditError> {
    let h = head_start(net, store)
        .ok_or_else(|| EditError::Invalid("no classifier found to freeze up to".into()))?;
    let head: HashSet<usize> = descendants(net, h).into_iter().collect();
    for (j, n) in net.nodes.iter_mut().enumerate() {
        n.frozen = !head.contains(&j);
    }
    Ok(())
}

/// Largest weight tensor a library layer may have (256 M values, 1 GiB): a project file or a
/// typo asking for more gets an error, not an allocation that aborts the process.
const MAX_NEW_VALUES: usize = 1 << 28;

fn check_new_size(dims: &[usize]) -> Result<(), EditError> {
    match dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
        Some(n) if n <= MAX_NEW_VALUES => Ok(()),
        _ => Err(EditError::Invalid(format!(
            "a {dims:?} weight is too large (at most {MAX_NEW_VALUES} values)"
        ))),
    }
}

/// Builds a library layer for an input of `shape` (with batch): the node and its new weights.
fn build_layer(
    layer: &NewLayer,
    input: &str,
    output: &str,
    shape: &[usize],
) -> Result<(Node, Weights), EditError> {
    use super::{Conv, Pool, Unary};
    let mut rng = ChaCha8Rng::seed_from_u64(layer.seed);
    let mut uniform = |count: usize, fan_in: usize| -> Vec<f32> {
        let b = 1.0 / (fan_in.max(1) as f32).sqrt();
        (0..count).map(|_| rng.random_range(-b..=b)).collect()
    };
    let name = &layer.name;
    let w = format!("{name}.weight");
    let b = format!("{name}.bias");
    let channels = shape.get(1).copied().unwrap_or(0);
    let need4 = |what: &str| {
        if shape.len() == 4 {
            Ok(())
        } else {
            Err(EditError::Invalid(format!(
                "{what} needs an N×C×H×W input, this one is {shape:?}"
            )))
        }
    };
    let mut weights = Vec::new();
    let (op, inputs) = match &layer.kind {
        LayerKind::Conv {
            out_channels,
            kernel,
            stride,
            padding,
        } => {
            need4("a convolution")?;
            check_new_size(&[*out_channels, channels, *kernel, *kernel])?;
            let fan_in = channels * kernel * kernel;
            weights.push((
                w.clone(),
                Tensor {
                    shape: vec![*out_channels, channels, *kernel, *kernel],
                    data: uniform(out_channels * fan_in, fan_in),
                },
            ));
            weights.push((
                b.clone(),
                Tensor {
                    shape: vec![*out_channels],
                    data: uniform(*out_channels, fan_in),
                },
            ));
            let conv = Conv {
                strides: [*stride; 2],
                pads: [*padding; 4],
                dilations: [1, 1],
                groups: 1,
            };
            (Op::Conv(conv), vec![input.to_owned(), w, b])
        }
        LayerKind::Linear { out_features } => {
            if shape.len() != 2 {
                return Err(EditError::Invalid(format!(
                    "a linear layer needs an N×features input, this one is {shape:?}; insert a Flatten first"
                )));
            }
            check_new_size(&[*out_features, channels])?;
            weights.push((
                w.clone(),
                Tensor {
                    shape: vec![*out_features, channels],
                    data: uniform(out_features * channels, channels),
                },
            ));
            weights.push((
                b.clone(),
                Tensor {
                    shape: vec![*out_features],
                    data: uniform(*out_features, channels),
                },
            ));
            (
                Op::Gemm {
                    alpha: 1.0,
                    beta: 1.0,
                    trans_a: false,
                    trans_b: true,
                },
                vec![input.to_owned(), w, b],
            )
        }
        LayerKind::BatchNorm => {
            let names: Vec<String> = ["scale", "bias", "mean", "var"]
                .iter()
                .map(|k| format!("{name}.{k}"))
                .collect();
            for (n, v) in names.iter().zip([1.0, 0.0, 0.0, 1.0]) {
                weights.push((
                    n.clone(),
                    Tensor {
                        shape: vec![channels],
                        data: vec![v; channels],
                    },
                ));
            }
            let mut inputs = vec![input.to_owned()];
            inputs.extend(names);
            (
                Op::BatchNorm {
                    epsilon: 1e-5,
                    momentum: 0.9,
                },
                inputs,
            )
        }
        LayerKind::Relu => (Op::Unary(Unary::Relu), vec![input.to_owned()]),
        LayerKind::LeakyRelu { alpha } => (Op::LeakyRelu { alpha: *alpha }, vec![input.to_owned()]),
        LayerKind::Sigmoid => (Op::Unary(Unary::Sigmoid), vec![input.to_owned()]),
        LayerKind::Tanh => (Op::Unary(Unary::Tanh), vec![input.to_owned()]),
        LayerKind::Gelu => (Op::Gelu { tanh: false }, vec![input.to_owned()]),
        LayerKind::Dropout { ratio } => (Op::Dropout { ratio: *ratio }, vec![input.to_owned()]),
        LayerKind::MaxPool { kernel, stride } | LayerKind::AvgPool { kernel, stride } => {
            need4("pooling")?;
            let pool = Pool {
                kernel: [*kernel; 2],
                strides: [*stride; 2],
                pads: [0; 4],
                dilations: [1, 1],
                ceil_mode: false,
            };
            let op = if matches!(layer.kind, LayerKind::MaxPool { .. }) {
                Op::MaxPool(pool)
            } else {
                Op::AveragePool {
                    pool,
                    count_include_pad: false,
                }
            };
            (op, vec![input.to_owned()])
        }
        LayerKind::GlobalAvgPool => {
            need4("global pooling")?;
            (Op::GlobalAveragePool, vec![input.to_owned()])
        }
        LayerKind::Flatten => (Op::Flatten { axis: 1 }, vec![input.to_owned()]),
        LayerKind::Softmax => (
            Op::Softmax {
                axis: -1,
                legacy: false,
            },
            vec![input.to_owned()],
        ),
    };
    Ok((
        Node::new(name.clone(), op, inputs, vec![output.to_owned()]),
        weights,
    ))
}

fn unique_name(net: &Network, store: &Store, base: &str) -> Result<(), EditError> {
    if base.is_empty()
        || net.node(base).is_some()
        || net
            .nodes
            .iter()
            .any(|n| n.outputs.iter().any(|o| o == base))
        || store.contains(&format!("{base}.weight"))
    {
        return Err(EditError::Invalid(format!(
            "the name '{base}' is empty or already used"
        )));
    }
    Ok(())
}

fn insert_after(
    net: &mut Network,
    store: &Store,
    node: &str,
    layer: &NewLayer,
) -> Result<(Weights, Weights), EditError> {
    unique_name(net, store, &layer.name)?;
    let i = index(net, node)?;
    let value = net.nodes[i]
        .outputs
        .first()
        .cloned()
        .ok_or_else(|| EditError::Invalid(format!("'{node}' has no output")))?;
    let (shapes, _) = super::shape::infer(net, store, 1);
    let shape = shapes
        .get(&value)
        .cloned()
        .ok_or_else(|| EditError::Invalid(format!("the shape after '{node}' is unknown")))?;
    let out = format!("{}_output", layer.name);
    let (new, weights) = build_layer(layer, &value, &out, &shape)?;
    for n in &mut net.nodes {
        for v in &mut n.inputs {
            if *v == value {
                *v = out.clone();
            }
        }
    }
    for o in &mut net.outputs {
        if *o == value {
            *o = out.clone();
        }
    }
    net.nodes.insert(i + 1, new);
    Ok((Vec::new(), weights))
}

fn replace(
    net: &mut Network,
    store: &Store,
    node: &str,
    layer: &NewLayer,
) -> Result<(Weights, Weights), EditError> {
    let i = index(net, node)?;
    if layer.name != node {
        unique_name(net, store, &layer.name)?;
    }
    let old = net.nodes[i].clone();
    let input = old
        .inputs
        .first()
        .cloned()
        .ok_or_else(|| EditError::Invalid(format!("'{node}' has no input")))?;
    let output = old
        .outputs
        .first()
        .cloned()
        .ok_or_else(|| EditError::Invalid(format!("'{node}' has no output")))?;
    let (shapes, _) = super::shape::infer(net, store, 1);
    let shape = shapes
        .get(&input)
        .or_else(|| (input == net.input.name).then_some(&net.input.shape))
        .cloned()
        .ok_or_else(|| EditError::Invalid(format!("the shape before '{node}' is unknown")))?;
    let (new, weights) = build_layer(layer, &input, &output, &shape)?;
    net.nodes[i] = new;
    let still_read: HashSet<&str> = net.nodes.iter().flat_map(|n| n.present_inputs()).collect();
    let removed = old
        .present_inputs()
        .skip(1)
        .filter(|w| !still_read.contains(w))
        .filter_map(|w| store.get(w).map(|t| (w.to_owned(), t.clone())))
        .collect();
    Ok((removed, weights))
}

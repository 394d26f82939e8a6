//! The frozen-prefix cache: when every node up to a cut is frozen (and no augmentation
//! changes the images), the activations at the cut are the same every epoch, so they are
//! computed once per image and later epochs run only the trainable rest.

use crate::data::folder::{Sample, Skipped};
use crate::data::loader::{Framed, Transform, spawn_batches};
use crate::engine::{Mode, Model, Value, optimize};
use crate::graph::{Input, Network, Op};
use crate::weights::Store;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Largest cache Graft keeps in memory.
pub const MAX_CACHE_BYTES: usize = 4 << 30;

/// Where the network splits: nodes `..=last` form the frozen prefix, `value` is the only
/// activation that crosses the cut.
#[derive(Clone, Debug, PartialEq)]
pub struct Cut {
    pub last: usize,
    pub value: String,
}

/// A node whose output does not depend on training: frozen, or without learnable weights,
/// and not random (Dropout).
fn is_fixed(net: &Network, store: &Store, i: usize) -> bool {
    let node = &net.nodes[i];
    if matches!(&node.op, Op::Dropout { ratio } if *ratio > 0.0) {
        return false;
    }
    node.is_frozen()
        || node
            .op
            .learnable_inputs()
            .iter()
            .all(|&k| node.inputs.get(k).is_none_or(|v| !store.contains(v)))
            && !matches!(node.op, Op::BatchNorm { .. })
}

/// The latest cut whose prefix is fixed and holds at least one weighted layer.
pub fn find_cut(net: &Network, store: &Store) -> Option<Cut> {
    let outputs: HashSet<&str> = net.outputs.iter().map(String::as_str).collect();
    let mut best = None;
    let mut weighted = false;
    for i in 0..net.nodes.len() {
        if !is_fixed(net, store, i) {
            break;
        }
        weighted |= !net.nodes[i].op.learnable_inputs().is_empty();
        // Activations produced so far that later nodes (or outputs) still read.
        let later: HashSet<&str> = net.nodes[i + 1..]
            .iter()
            .flat_map(|n| n.present_inputs())
            .collect();
        let live: Vec<&str> = std::iter::once(net.input.name.as_str())
            .chain(
                net.nodes[..=i]
                    .iter()
                    .flat_map(|n| n.outputs.iter().map(String::as_str)),
            )
            .filter(|v| later.contains(v) || outputs.contains(v))
            .collect();
        if let [v] = live.as_slice()
            && !outputs.contains(v)
            && weighted
        {
            best = Some(Cut {
                last: i,
                value: v.to_string(),
            });
        }
    }
    best
}

/// The network after the cut, reading the cut activation as its input.
pub fn head_network(net: &Network, cut: &Cut, dims: &[usize]) -> Network {
    let mut shape = vec![1];
    shape.extend_from_slice(dims);
    Network {
        name: format!("{} (head)", net.name),
        input: Input {
            name: cut.value.clone(),
            shape,
            free_batch: true,
        },
        outputs: net.outputs.clone(),
        nodes: net.nodes[cut.last + 1..].to_vec(),
        metadata: net.metadata.clone(),
    }
}

/// The network up to the cut, rewritten for inference (it is frozen, so BatchNorm folding is
/// exact).
pub fn prefix_network(net: &Network, store: &Store, cut: &Cut) -> (Network, Store) {
    let mut prefix = net.clone();
    prefix.nodes.truncate(cut.last + 1);
    prefix.outputs = vec![cut.value.clone()];
    optimize::for_inference(&prefix, store)
}

/// Cached activations of a set of samples.
#[derive(Debug, Default)]
pub struct Features {
    /// Per-image values, `values_per_image` each, in `kept` order.
    pub data: Vec<f32>,
    pub labels: Vec<usize>,
    /// A box dataset's boxes as framed, in `kept` order (else empty).
    pub framed: Vec<Framed>,
    /// Indices into the sample list of the images that decoded.
    pub kept: Vec<usize>,
    pub failed: Vec<Skipped>,
}

impl Features {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Runs the prefix over every sample once.
pub fn compute(
    prefix: &Model,
    samples: Arc<Vec<Sample>>,
    transform: Arc<Transform>,
    batch: usize,
    cancel: Arc<AtomicBool>,
    mut progress: impl FnMut(usize, usize),
) -> Result<Features, String> {
    let total = samples.len();
    let order: Vec<usize> = (0..total).collect();
    let rx = spawn_batches(
        samples,
        order,
        batch,
        transform.clone(),
        0,
        0,
        2,
        cancel.clone(),
    )?;
    let mut out = Features::default();
    let mut done = 0;
    let input_dims = prefix.plan.input_dims().to_vec();
    for b in rx {
        done += b.indices.len() + b.failed.len();
        out.failed.extend(b.failed);
        if !b.indices.is_empty() {
            let mut shape = vec![b.indices.len()];
            shape.extend_from_slice(&input_dims);
            let x = Value::from_data(&shape, b.data, prefix.device());
            let y = prefix
                .forward(x, Mode::Inference)
                .map_err(|e| e.to_string())?;
            out.data.extend(y[0].to_vec()?);
            out.labels.extend(b.labels);
            out.framed.extend(b.framed);
            out.kept.extend(b.indices);
        }
        progress(done, total);
        if cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err("cancelled".into());
        }
    }
    Ok(out)
}

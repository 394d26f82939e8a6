//! [`Network`] + [`Store`] → ONNX, keeping the network's own node and value names, so that the
//! exported file has the user's structure rather than a re-traced graph.
//!
//! Ops are written in the semantics of opset 17 (20 when the network has a Gelu), which
//! ONNX Runtime, tract, TensorRT and OpenVINO read. Folded attributes that later opsets take
//! as inputs (Reshape's shape, Clip's bounds, Slice's ranges, ...) become small initializers.

use super::detector::Decoding;
use super::import::{LABELS_KEY, PREPROCESS_KEY};
use super::ops::emit::{Emitter, ValueDim, value_info};
use super::tensor::f32_proto;
use crate::detect::yolo::Suppression;
use crate::graph::shape::{self, Dim};
use crate::graph::{Network, Node, Op};
use crate::weights::Store;
use onnx_ir::{Message, ModelProto, ValueInfoProto};
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
/// and the window's "Export ONNX…" write. A detector gets its decoding and non-maximum
/// suppression inside ([`export_with_labels_as`] chooses otherwise).
pub fn export_with_labels(net: &Network, store: &Store, path: &Path) -> Result<Vec<u8>, String> {
    export_with_labels_as(
        net,
        store,
        path,
        Decoding::default(),
        &Suppression::default(),
    )
}

/// [`export_with_labels`] with a detector's outputs chosen (a classifier ignores them).
pub fn export_with_labels_as(
    net: &Network,
    store: &Store,
    path: &Path,
    decoding: Decoding,
    suppression: &Suppression,
) -> Result<Vec<u8>, String> {
    let bytes = super::detector::to_model(net, store, decoding, suppression)
        .map_err(|e| e.to_string())?
        .write_to_bytes()
        .map_err(|e| format!("cannot encode the model: {e}"))?;
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
    // A channels-last file is written channels-last again (onnx/layout.rs).
    let net = &*super::layout::channels_last_for_export(net);
    let opset = if net.nodes.iter().any(|n| matches!(n.op, Op::Gelu { .. })) {
        20
    } else {
        EXPORT_OPSET
    };
    let mut ex = Emitter::new(
        net.nodes
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
    );
    let mut weights = HashSet::new();
    for node in &net.nodes {
        for input in node.present_inputs() {
            if store.contains(input) {
                weights.insert(input.to_owned());
            }
        }
        write_node(&mut ex, node)?;
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
    graph.input.push(float_info(&net.input.name, &input_dims));
    for out in &net.outputs {
        let dims = shapes
            .get(out)
            .ok_or_else(|| ExportError::Invalid(format!("output '{out}' is not computed")))?;
        graph.output.push(float_info(out, dims));
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
    // A network trained on sound takes raw audio: its spectrogram front end goes first.
    super::sound::prepend_front_end(&mut model, net)?;
    Ok(model)
}

/// Writes one node through its family's exporter (`ops::exporter`).
fn write_node(ex: &mut Emitter, node: &Node) -> Result<(), ExportError> {
    let failed = |reason: String| ExportError::Node {
        node: node.name.clone(),
        op: node.op.onnx_type().into(),
        reason,
    };
    let export = super::ops::exporter(&node.op).ok_or_else(|| {
        failed(
            "Graft cannot run this op, so it cannot write it either; cut the network before it"
                .into(),
        )
    })?;
    export(ex, node).map_err(failed)
}

/// A float value's declaration, the batch as `N`.
fn float_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let dims: Vec<ValueDim> = dims
        .iter()
        .map(|d| match d {
            Dim::Batch => ValueDim::Param("N"),
            Dim::Fixed(n) => ValueDim::Fixed(*n),
        })
        .collect();
    value_info(name, super::tensor::dtype::FLOAT, &dims)
}

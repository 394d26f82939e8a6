use crate::format::{elide_start, group};
use crate::graph::analyze::{Analysis, Severity, analyze};
use crate::graph::shape::{Dim, format_dims};
use crate::graph::{Network, Preprocess};
use serde::Serialize;
use std::path::Path;

pub fn run(path: &Path, attributes: bool, json: bool) -> Result<(), String> {
    let imported = super::open_model(path)?;
    let (net, store) = (&imported.network, &imported.store);
    let analysis = analyze(net, store);
    let input_dims = crate::graph::shape::symbolic(net, store)
        .0
        .get(&net.input.name)
        .cloned()
        .unwrap_or_default();
    if json {
        let report = Report::new(net, &analysis, &input_dims);
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{text}");
        return Ok(());
    }
    print_table(net, &analysis, &input_dims, attributes);
    Ok(())
}

/// `graft inspect --json`: every node with its full name, for scripts.
#[derive(Serialize)]
struct Report<'a> {
    name: &'a str,
    input: InputReport<'a>,
    opset: i64,
    producer: &'a str,
    nodes: Vec<NodeReport<'a>>,
    parameters: usize,
    trainable_parameters: usize,
    macs_per_image: u64,
    labels: &'a [String],
    preprocess: Preprocess,
    /// What import changed (float16 computed in float32, channels-last fed channels-first).
    notes: &'a [String],
    issues: Vec<IssueReport<'a>>,
}

#[derive(Serialize)]
struct InputReport<'a> {
    name: &'a str,
    /// Dimensions as text: a number, or "N" for the batch.
    shape: Vec<String>,
}

#[derive(Serialize)]
struct NodeReport<'a> {
    name: &'a str,
    op: &'a str,
    inputs: Vec<&'a str>,
    outputs: &'a [String],
    /// One entry per output; `null` where the shape could not be inferred.
    output_shapes: Vec<Option<Vec<String>>>,
    parameters: usize,
    macs: u64,
    frozen: bool,
    lr_factor: f32,
    supported: bool,
}

#[derive(Serialize)]
struct IssueReport<'a> {
    severity: &'static str,
    node: Option<&'a str>,
    message: &'a str,
}

fn dims_text(dims: &[Dim]) -> Vec<String> {
    dims.iter().map(Dim::to_string).collect()
}

impl<'a> Report<'a> {
    fn new(net: &'a Network, analysis: &'a Analysis, input_dims: &[Dim]) -> Self {
        Report {
            name: &net.name,
            input: InputReport {
                name: &net.input.name,
                shape: dims_text(input_dims),
            },
            opset: net.metadata.opset,
            producer: &net.metadata.producer,
            nodes: net
                .nodes
                .iter()
                .zip(&analysis.nodes)
                .map(|(n, info)| NodeReport {
                    name: &n.name,
                    op: n.op.onnx_type(),
                    inputs: n.present_inputs().collect(),
                    outputs: &n.outputs,
                    output_shapes: info
                        .output_shapes
                        .iter()
                        .map(|s| s.as_deref().map(dims_text))
                        .collect(),
                    parameters: info.params,
                    macs: info.macs,
                    frozen: n.is_frozen(),
                    lr_factor: n.lr_factor,
                    supported: n.op.is_supported(),
                })
                .collect(),
            parameters: analysis.total_params,
            trainable_parameters: analysis.trainable_params,
            macs_per_image: analysis.total_macs,
            labels: &net.metadata.labels,
            preprocess: net.preprocess(),
            notes: &net.metadata.notes,
            issues: analysis
                .issues
                .iter()
                .map(|i| IssueReport {
                    severity: match i.severity {
                        Severity::Error => "error",
                        Severity::Warning => "warning",
                    },
                    node: i.node.as_deref(),
                    message: &i.message,
                })
                .collect(),
        }
    }
}

fn print_table(net: &Network, analysis: &Analysis, input_dims: &[Dim], attributes: bool) {
    let name_w = net
        .nodes
        .iter()
        .map(|n| n.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 60);
    let op_w = net
        .nodes
        .iter()
        .map(|n| n.op.onnx_type().len())
        .max()
        .unwrap_or(2)
        .max(2);
    println!(
        "{} — input '{}' {}, opset {}, {}",
        net.name,
        net.input.name,
        format_dims(input_dims),
        net.metadata.opset,
        if net.metadata.producer.is_empty() {
            "unknown producer"
        } else {
            &net.metadata.producer
        }
    );
    println!(
        "{:>4}  {:<name_w$}  {:<op_w$}  {:<20}  {:>10}  {:>12}",
        "#", "name", "op", "output shape", "params", "MACs"
    );
    for (i, (node, info)) in net.nodes.iter().zip(&analysis.nodes).enumerate() {
        let shape = info
            .output_shapes
            .iter()
            .map(|s| s.as_ref().map_or("?".into(), |d| format_dims(d)))
            .collect::<Vec<_>>()
            .join(", ");
        let name = elide_start(&node.name, name_w);
        let flag = if node.op.is_supported() {
            ""
        } else {
            "  UNSUPPORTED"
        };
        println!(
            "{i:>4}  {name:<name_w$}  {:<op_w$}  {shape:<20}  {:>10}  {:>12}{flag}",
            node.op.onnx_type(),
            group(info.params as u64),
            group(info.macs),
        );
        if attributes {
            println!("      {:?}", node.op);
        }
    }
    println!(
        "{} nodes, {} parameters ({} trainable), {} MACs per image",
        net.nodes.len(),
        group(analysis.total_params as u64),
        group(analysis.trainable_params as u64),
        group(analysis.total_macs)
    );
    if !net.metadata.labels.is_empty() {
        println!(
            "{} class names; preprocessing: {:?}",
            net.metadata.labels.len(),
            net.preprocess()
        );
    }
    for note in &net.metadata.notes {
        println!("note: {note}");
    }
    for issue in &analysis.issues {
        if issue.severity == Severity::Error || attributes {
            println!("{issue}");
        }
    }
    let warnings = analysis
        .issues
        .iter()
        .filter(|i| i.severity == Severity::Warning)
        .count();
    if warnings > 0 && !attributes {
        println!("{warnings} warning(s); --attributes lists them");
    }
}

use crate::graph::analyze::{Severity, analyze};
use crate::graph::shape::format_dims;
use std::path::Path;

pub fn run(path: &Path, attributes: bool) -> Result<(), String> {
    let imported = super::open_model(path)?;
    let (net, store) = (&imported.network, &imported.store);
    let analysis = analyze(net, store);

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
        format_dims(
            &crate::graph::shape::symbolic(net, store)
                .0
                .get(&net.input.name)
                .cloned()
                .unwrap_or_default()
        ),
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
        let mut name = node.name.clone();
        if name.chars().count() > name_w {
            name = format!(
                "…{}",
                name.chars()
                    .skip(name.chars().count() - name_w + 1)
                    .collect::<String>()
            );
        }
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
    Ok(())
}

/// 1234567 → "1,234,567".
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

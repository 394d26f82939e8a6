//! The head: finding the final classifier, replacing it for new classes, freezing what comes
//! before it.

use super::{EditError, Initializer, Weights, descendants};
use crate::graph::{Network, Node, Op};
use crate::weights::{Store, Tensor};
use std::collections::HashSet;

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
pub const HEAD_FLATTEN: &str = "head/flatten";
pub const HEAD_OUTPUT: &str = "probabilities";

pub(super) fn adapt_head(
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
    let (shapes, _) = crate::graph::shape::infer(net, store, 1);
    let old = net.nodes[ci].clone();
    let w = store
        .get(&old.inputs[1])
        .ok_or_else(|| EditError::Invalid("classifier weight missing".into()))?;
    let n = classes.len();
    let mut init = Initializer::new(seed);
    let mut uniform = |count, fan_in| init.uniform(count, fan_in);
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
    // Caffe-era files end in N×K×1×1 (a 1×1 Conv classifier, then pooling): the new head
    // gives N×K, what the loss, the softmax and every consumer of class scores expect.
    if shapes.get(&final_value).is_some_and(|s| s.len() != 2) {
        kept.push(Node::new(
            HEAD_FLATTEN,
            Op::Flatten { axis: 1 },
            vec![final_value],
            vec!["head/scores".into()],
        ));
        final_value = "head/scores".into();
    }
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

/// The first node of the head (the classifier, or a detection head's first node), for
/// "freeze the backbone": every node before it belongs to the backbone.
pub fn head_start(net: &Network, store: &Store) -> Option<usize> {
    net.node_index(HEAD_CLASSIFIER)
        .or_else(|| {
            net.nodes
                .iter()
                .position(|n| n.name.starts_with(super::DETECT_PREFIX))
        })
        .or_else(|| find_classifier(net, store))
}

/// The head's nodes: its first node ([`head_start`]) and every node after it, and every node
/// of a detection head with what follows (a two-scale head's fine branch reads the backbone,
/// not the head's first node).
pub fn head_nodes(net: &Network, store: &Store) -> Option<HashSet<usize>> {
    let h = head_start(net, store)?;
    let mut head: HashSet<usize> = descendants(net, h).into_iter().collect();
    for (i, n) in net.nodes.iter().enumerate() {
        if n.name.starts_with(super::DETECT_PREFIX) && !head.contains(&i) {
            head.extend(descendants(net, i));
        }
    }
    Some(head)
}

/// Freezes every node outside the head.
pub fn freeze_backbone(net: &mut Network, store: &Store) -> Result<(), EditError> {
    let head = head_nodes(net, store)
        .ok_or_else(|| EditError::Invalid("no classifier found to freeze up to".into()))?;
    for (j, n) in net.nodes.iter_mut().enumerate() {
        n.frozen = !head.contains(&j);
    }
    Ok(())
}

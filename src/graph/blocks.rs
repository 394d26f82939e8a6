//! Blocks: the groups of nodes the graph view shows collapsed — an inception module, a
//! residual block, a dense layer, a stage of a plain chain.
//!
//! Two sources. Files exported from PyTorch name nodes by module path
//! (`/layer1/layer1.0/conv1/Conv`), and Caffe2 conversions often by layer
//! (`inception_3a/1x1`): there the shallowest path prefix that gives groups of at most
//! `MAX_NAMED` nodes is a block. Files whose names carry no path (`Conv_12`, `n12`) get blocks
//! from their structure: the single-entry/single-exit region that ends at each join (Concat,
//! Add, Mul) and starts at that join's immediate dominator, then runs of a plain chain cut
//! after each pooling layer.

use super::{Binary, Nary, Network, Op};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Most nodes a name group may hold before it is split by the next path level.
const MAX_NAMED: usize = 24;
/// Largest structural region kept as one block (a dense block whose every layer reads every
/// earlier one is one region; beyond this size it is better read layer by layer).
const MAX_REGION: usize = 48;
/// Shortest run of a plain chain worth a block of its own.
const MIN_STAGE: usize = 3;

/// Blocks by key (a module path, or `"residual 3"`-style names for structural ones), each with
/// its members in execution order. Every node is in at most one block; blocks hold ≥ 2 nodes.
pub fn blocks(net: &Network) -> BTreeMap<String, Vec<usize>> {
    let with_path = net
        .nodes
        .iter()
        .filter(|n| !path(&n.name).is_empty())
        .count();
    if with_path * 2 >= net.nodes.len() && with_path > 0 {
        by_name(net)
    } else {
        by_structure(net)
    }
}

/// The path components of a node name: `/_blocks.3/_depthwise/conv/Conv` →
/// `["_blocks.3", "_depthwise", "conv"]` (the last part names the node, not a module).
fn path(name: &str) -> Vec<&str> {
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    parts[..parts.len().saturating_sub(1)].to_vec()
}

/// Groups nodes by module path: the shallowest prefix that gives groups of at most
/// `MAX_NAMED` nodes. Nodes without a path stay on their own.
fn by_name(net: &Network) -> BTreeMap<String, Vec<usize>> {
    let mut out: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut pending: Vec<(usize, Vec<usize>)> = vec![(1, (0..net.nodes.len()).collect())];
    while let Some((depth, members)) = pending.pop() {
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for &i in &members {
            let p = path(&net.nodes[i].name);
            if p.len() >= depth {
                groups.entry(p[..depth].join("/")).or_default().push(i);
            }
        }
        for (key, g) in groups {
            let deeper = g.iter().any(|&i| path(&net.nodes[i].name).len() > depth);
            if g.len() > MAX_NAMED && deeper {
                pending.push((depth + 1, g));
            } else if g.len() > 1 {
                out.insert(key, g);
            }
        }
    }
    out
}

/// The node graph with a virtual root (reads of the network input) and a virtual sink
/// (network outputs and unread values), both numbered `n`.
struct Dag {
    preds: Vec<Vec<usize>>,
    succs: Vec<Vec<usize>>,
}

impl Dag {
    fn new(net: &Network) -> Self {
        let n = net.nodes.len();
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, node) in net.nodes.iter().enumerate() {
            for o in &node.outputs {
                producer.insert(o, i);
            }
        }
        let mut preds = vec![Vec::new(); n];
        let mut succs = vec![Vec::new(); n];
        for (i, node) in net.nodes.iter().enumerate() {
            for v in node.present_inputs() {
                let p = producer.get(v).copied().filter(|&p| p < i);
                let p = match p {
                    Some(p) => p,
                    None if v == net.input.name => n,
                    None => continue,
                };
                if !preds[i].contains(&p) {
                    preds[i].push(p);
                    if p < n {
                        succs[p].push(i);
                    }
                }
            }
            if preds[i].is_empty() {
                preds[i].push(n);
            }
        }
        let outputs: HashSet<&str> = net.outputs.iter().map(String::as_str).collect();
        for (i, node) in net.nodes.iter().enumerate() {
            if succs[i].is_empty() || node.outputs.iter().any(|o| outputs.contains(o.as_str())) {
                succs[i].push(n);
            }
        }
        Dag { preds, succs }
    }
}

/// Immediate dominators over `order` (a topological order of the nodes), with `root` = n
/// standing before every node; `edges_in[v]` are the nodes every path to `v` comes through
/// one of. Returns (idom, depth), both with an entry for the root.
fn dominators(
    n: usize,
    order: impl Iterator<Item = usize>,
    edges_in: &[Vec<usize>],
) -> (Vec<usize>, Vec<usize>) {
    let mut idom = vec![n; n + 1];
    let mut depth = vec![0usize; n + 1];
    for v in order {
        let mut d: Option<usize> = None;
        for &p in &edges_in[v] {
            d = Some(match d {
                None => p,
                Some(mut a) => {
                    let mut b = p;
                    while a != b {
                        while depth[a] > depth[b] {
                            a = idom[a];
                        }
                        while depth[b] > depth[a] {
                            b = idom[b];
                        }
                        if a != b {
                            a = idom[a];
                            b = idom[b];
                        }
                    }
                    a
                }
            });
        }
        idom[v] = d.unwrap_or(n);
        depth[v] = depth[idom[v]] + 1;
    }
    (idom, depth)
}

/// Whether `d` is on the dominator-tree path from `v` up to the root.
fn above(idom: &[usize], depth: &[usize], d: usize, mut v: usize) -> bool {
    while depth[v] > depth[d] {
        v = idom[v];
    }
    v == d
}

/// What a region closed by `join` is, for its name.
fn kind(net: &Network, dag: &Dag, join: usize, entry: usize) -> &'static str {
    match &net.nodes[join].op {
        Op::Binary(Binary::Add) | Op::Nary(Nary::Sum) => "residual",
        Op::Binary(Binary::Mul) => "gate",
        Op::Concat { .. } => {
            // A dense layer concatenates its input with what it made from it.
            if dag.preds[join].contains(&entry) {
                "dense"
            } else if dag.preds[join].len() >= 3 {
                "inception"
            } else {
                "branches"
            }
        }
        _ => "block",
    }
}

fn is_activation(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(_)
            | Op::LeakyRelu { .. }
            | Op::Elu { .. }
            | Op::HardSigmoid { .. }
            | Op::Clip { .. }
            | Op::Gelu { .. }
    )
}

fn is_pool(op: &Op) -> bool {
    matches!(
        op,
        Op::MaxPool(_) | Op::AveragePool { .. } | Op::GlobalAveragePool | Op::GlobalMaxPool
    )
}

/// Blocks from the graph's structure (see the module comment).
fn by_structure(net: &Network) -> BTreeMap<String, Vec<usize>> {
    let n = net.nodes.len();
    let dag = Dag::new(net);
    let (idom, dom_depth) = dominators(n, 0..n, &dag.preds);
    let (ipdom, pdom_depth) = dominators(n, (0..n).rev(), &dag.succs);
    // One candidate region per join: from its immediate dominator (excluded) to it.
    let mut candidates: Vec<(usize, usize, Vec<usize>)> = Vec::new();
    for j in 0..n {
        if dag.preds[j].len() < 2 {
            continue;
        }
        let d = idom[j];
        let start = if d == n { 0 } else { d + 1 };
        let members: Vec<usize> = (start..=j)
            .filter(|&v| {
                above(&idom, &dom_depth, d, v) && (v == j || above(&ipdom, &pdom_depth, j, v))
            })
            .collect();
        if members.len() >= 2 && members.len() <= MAX_REGION {
            candidates.push((j, d, members));
        }
    }
    // The largest regions first; a region inside a chosen one belongs to it.
    candidates.sort_by(|a, b| b.2.len().cmp(&a.2.len()).then(a.0.cmp(&b.0)));
    let mut taken = vec![false; n];
    let mut chosen: Vec<(&'static str, Vec<usize>)> = Vec::new();
    for (j, d, members) in candidates {
        if members.iter().any(|&m| taken[m]) {
            continue;
        }
        let mut members = members;
        // The activation after a residual Add belongs to its block.
        let mut tail = j;
        while let [next] = dag.succs[tail].as_slice()
            && *next < n
            && !taken[*next]
            && !members.contains(next)
            && dag.preds[*next] == [tail]
            && is_activation(&net.nodes[*next].op)
        {
            members.push(*next);
            tail = *next;
        }
        for &m in &members {
            taken[m] = true;
        }
        chosen.push((kind(net, &dag, j, d), members));
    }
    // What is left: runs of the plain chain, cut after each pooling layer.
    let mut run: Vec<usize> = Vec::new();
    let flush = |run: &mut Vec<usize>, chosen: &mut Vec<(&'static str, Vec<usize>)>| {
        let has_weights = run
            .iter()
            .any(|&i| matches!(net.nodes[i].op, Op::Conv(_) | Op::Gemm { .. }));
        if run.len() >= MIN_STAGE && has_weights {
            chosen.push(("stage", std::mem::take(run)));
        }
        run.clear();
    };
    for (i, &done) in taken.iter().enumerate() {
        if done {
            flush(&mut run, &mut chosen);
            continue;
        }
        run.push(i);
        if is_pool(&net.nodes[i].op) {
            flush(&mut run, &mut chosen);
        }
    }
    flush(&mut run, &mut chosen);
    // Numbered per kind in execution order: "inception 1", "inception 2", …
    chosen.sort_by_key(|(_, m)| m[0]);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let mut out = BTreeMap::new();
    for (kind, mut members) in chosen {
        members.sort_unstable();
        let k = counts.entry(kind).or_default();
        *k += 1;
        out.insert(format!("{kind} {k}"), members);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(path: &str) -> Network {
        crate::onnx::import(format!(
            "{}/tests/fixtures/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
        .network
    }

    /// Every node in at most one block, every block ≥ 2 nodes in execution order.
    fn check_partition(net: &Network, blocks: &BTreeMap<String, Vec<usize>>) {
        let mut seen = HashSet::new();
        for (key, members) in blocks {
            assert!(members.len() >= 2, "{key}: {members:?}");
            assert!(members.windows(2).all(|w| w[0] < w[1]), "{key}");
            for &m in members {
                assert!(m < net.nodes.len());
                assert!(seen.insert(m), "node {m} in two blocks");
            }
        }
    }

    #[test]
    fn module_paths_make_blocks() {
        let net = load("googlenet_op11/model.onnx");
        let b = blocks(&net);
        check_partition(&net, &b);
        for key in ["inception3a", "inception4e", "inception5b"] {
            assert!(b.contains_key(key), "{key} in {:?}", b.keys());
        }
        // The four towers and their Concat.
        let concat = net.node_index("/inception3a/Concat").unwrap();
        assert!(b["inception3a"].contains(&concat));
    }

    #[test]
    fn caffe2_inception_without_names_gets_nine_inception_blocks() {
        // The onnx package's light GoogLeNet (a Caffe2 conversion): nodes are `n0`, `n1`, …
        let net = load("light/light_inception_v1.onnx");
        assert!(net.nodes.iter().all(|n| path(&n.name).is_empty()));
        let b = blocks(&net);
        check_partition(&net, &b);
        let inceptions: Vec<_> = b.keys().filter(|k| k.starts_with("inception ")).collect();
        assert_eq!(inceptions.len(), 9, "{:?}", b.keys());
        // Each ends in its Concat and holds four towers: four members read the entry.
        for k in inceptions {
            let m = &b[k];
            let last = &net.nodes[*m.last().unwrap()];
            assert!(
                matches!(last.op, Op::Concat { .. }),
                "{k} ends in {:?}",
                last.op
            );
            let entry_value = &net.nodes[m[0] - 1].outputs[0];
            let readers = m
                .iter()
                .filter(|&&i| net.nodes[i].inputs.contains(entry_value))
                .count();
            assert_eq!(readers, 4, "{k}");
        }
        // The stem (conv, pool, LRN …) is a stage, not loose nodes.
        assert!(b.contains_key("stage 1"), "{:?}", b.keys());
    }

    #[test]
    fn caffe2_resnet50_without_names_gets_sixteen_residual_blocks() {
        let net = load("light/light_resnet50.onnx");
        let b = blocks(&net);
        check_partition(&net, &b);
        let residual: Vec<_> = b.keys().filter(|k| k.starts_with("residual ")).collect();
        assert_eq!(residual.len(), 16, "{:?}", b.keys());
        // The activation after each Add is inside its block, so blocks chain value to value.
        for k in residual {
            let last = &net.nodes[*b[k].last().unwrap()];
            assert!(is_activation(&last.op), "{k} ends in {:?}", last.op);
        }
    }

    #[test]
    fn caffe2_densenet_without_names_gets_a_block_per_dense_layer() {
        let net = load("light/light_densenet121.onnx");
        let b = blocks(&net);
        check_partition(&net, &b);
        let dense = b.keys().filter(|k| k.starts_with("dense ")).count();
        // DenseNet-121: 6 + 12 + 24 + 16 dense layers.
        assert_eq!(dense, 58, "{:?}", b.keys());
    }
}

//! What the graph view shows and where: nodes grouped into collapsible blocks by their
//! module path (`/_blocks.3/...`), and a layered top-to-bottom layout.
//!
//! egui-snarl lays out every node every frame, so a 300-node network is drawn as a few dozen
//! blocks until the user opens one; branches of a block (ResNet's skip, Inception's towers)
//! sit side by side inside it when it is open.

use crate::graph::Network;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Most nodes a block may hold before it is split by the next path level.
const MAX_BLOCK: usize = 24;

/// One box in the view.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Item {
    Input,
    /// A node, by index into `Network::nodes`.
    Layer(usize),
    /// A collapsed group of nodes (indices in execution order), by its path key.
    Block {
        key: String,
        members: Vec<usize>,
    },
    Output(usize),
}

/// The path components of a node name: `/_blocks.3/_depthwise/conv/Conv` →
/// `["_blocks.3", "_depthwise", "conv"]` (the last part names the op, not a module).
fn path(name: &str) -> Vec<&str> {
    let parts: Vec<&str> = name.split('/').filter(|p| !p.is_empty()).collect();
    parts[..parts.len().saturating_sub(1)].to_vec()
}

/// Groups nodes by module path: the shallowest prefix that gives groups of at most
/// `MAX_BLOCK` nodes. Nodes without a path stay on their own.
pub fn blocks(net: &Network) -> BTreeMap<String, Vec<usize>> {
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
            if g.len() > MAX_BLOCK && deeper {
                pending.push((depth + 1, g));
            } else if g.len() > 1 {
                out.insert(key, g);
            }
        }
    }
    out
}

/// The items to show: blocks not in `open` are collapsed; everything else is a layer.
pub fn items(net: &Network, open: &HashSet<String>) -> Vec<Item> {
    let groups = blocks(net);
    let mut block_of: HashMap<usize, &String> = HashMap::new();
    for (key, members) in &groups {
        if !open.contains(key) {
            for &m in members {
                block_of.insert(m, key);
            }
        }
    }
    let mut items = vec![Item::Input];
    let mut placed: HashSet<&String> = HashSet::new();
    for i in 0..net.nodes.len() {
        match block_of.get(&i) {
            Some(key) => {
                if placed.insert(key) {
                    items.push(Item::Block {
                        key: (*key).clone(),
                        members: groups[*key].clone(),
                    });
                }
            }
            None => items.push(Item::Layer(i)),
        }
    }
    items.extend((0..net.outputs.len()).map(Item::Output));
    items
}

/// Edges between items: `(from, to)` where a value made in `from` is read in `to`.
pub fn edges(net: &Network, items: &[Item]) -> Vec<(usize, usize)> {
    let mut owner: HashMap<&str, usize> = HashMap::new();
    owner.insert(&net.input.name, 0);
    let mut reader: Vec<(usize, usize)> = Vec::new(); // (node index, item)
    for (k, item) in items.iter().enumerate() {
        let nodes: Vec<usize> = match item {
            Item::Layer(i) => vec![*i],
            Item::Block { members, .. } => members.clone(),
            _ => vec![],
        };
        for i in nodes {
            for o in &net.nodes[i].outputs {
                owner.insert(o, k);
            }
            reader.push((i, k));
        }
    }
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (i, k) in reader {
        for v in net.nodes[i].present_inputs() {
            if let Some(&from) = owner.get(v)
                && from != k
                && !out.contains(&(from, k))
            {
                out.push((from, k));
            }
        }
    }
    for (k, item) in items.iter().enumerate() {
        if let Item::Output(o) = item
            && let Some(&from) = net.outputs.get(*o).and_then(|v| owner.get(v.as_str()))
        {
            out.push((from, k));
        }
    }
    out
}

/// Rows per band: a deep chain is folded into side-by-side bands so that it fits a screen at a
/// readable zoom instead of one very tall column.
pub const BAND_ROWS: usize = 7;

/// Positions (x, y) per item: rows by longest path from the input, columns ordered by the
/// mean column of each item's predecessors, centred; every `BAND_ROWS` rows start a new band
/// to the right.
pub fn positions(
    items: &[Item],
    edges: &[(usize, usize)],
    col_width: f32,
    row_height: f32,
) -> Vec<(f32, f32)> {
    let n = items.len();
    let mut row = vec![0usize; n];
    // Items are in execution order, so one pass gives the longest path.
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in edges {
        preds[b].push(a);
    }
    for k in 0..n {
        row[k] = preds[k].iter().map(|&p| row[p] + 1).max().unwrap_or(0);
    }
    let rows = row.iter().copied().max().unwrap_or(0) + 1;
    let mut col = vec![0.0f32; n];
    for r in 0..rows {
        let mut members: Vec<usize> = (0..n).filter(|&k| row[k] == r).collect();
        let key = |k: usize| -> f32 {
            if preds[k].is_empty() {
                0.0
            } else {
                preds[k].iter().map(|&p| col[p]).sum::<f32>() / preds[k].len() as f32
            }
        };
        members.sort_by(|&a, &b| key(a).total_cmp(&key(b)).then(a.cmp(&b)));
        let width = members.len() as f32;
        for (j, &k) in members.iter().enumerate() {
            col[k] = j as f32 - (width - 1.0) / 2.0;
        }
    }
    let widest = (0..rows)
        .map(|r| row.iter().filter(|&&x| x == r).count())
        .max()
        .unwrap_or(1) as f32;
    let band_width = (widest + 0.6) * col_width;
    (0..n)
        .map(|k| {
            let band = row[k] / BAND_ROWS;
            (
                band as f32 * band_width + col[k] * col_width,
                (row[k] % BAND_ROWS) as f32 * row_height,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_network_collapses_to_a_few_dozen_blocks() {
        let net = crate::onnx::import_bytes(crate::DEFAULT_MODEL)
            .unwrap()
            .network;
        let closed = items(&net, &HashSet::new());
        assert!(closed.len() < 40, "{} items", closed.len());
        assert!(
            closed
                .iter()
                .any(|i| matches!(i, Item::Block { key, .. } if key == "_blocks.3"))
        );
        let mut open = HashSet::new();
        open.insert("_blocks.3".to_string());
        let opened = items(&net, &open);
        assert!(opened.len() > closed.len());
        let e = edges(&net, &closed);
        let pos = positions(&closed, &e, 200.0, 100.0);
        // A chain: each item below the one before, folded into bands side by side.
        assert!(pos.windows(2).take(BAND_ROWS - 1).all(|w| w[1].1 > w[0].1));
        let bands: HashSet<i32> = pos.iter().map(|p| (p.0 / 200.0).round() as i32).collect();
        assert!(
            bands.len() >= 4,
            "a 30-item chain is folded into bands: {bands:?}"
        );
    }

    #[test]
    fn branches_sit_side_by_side() {
        // resnet18: an open residual block has its conv path and skip in different columns.
        let net = crate::onnx::import(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/resnet18_op13/model.onnx"
        ))
        .unwrap()
        .network;
        let all: HashSet<String> = blocks(&net).keys().cloned().collect();
        let it = items(&net, &all);
        let e = edges(&net, &it);
        let pos = positions(&it, &e, 200.0, 100.0);
        let xs: HashSet<i32> = pos.iter().map(|p| p.0 as i32).collect();
        assert!(xs.len() > 1, "some items are beside others");
    }
}

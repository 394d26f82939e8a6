//! What the graph view shows and where: nodes grouped into collapsible blocks
//! (`graph::blocks`), drawn as a layered top-to-bottom layout (`layered`).
//!
//! egui-snarl lays out every node every frame, so a 300-node network is drawn as a few dozen
//! blocks until the user opens one; an open block's contents take its place in the layering,
//! its branches (ResNet's skip, Inception's towers) side by side, and the rest moves down.
//! The layout is computed when the network or the open blocks change, never per frame.

mod layered;

pub use layered::{Layout, Params, Route};

use crate::graph::Network;
use std::collections::{BTreeMap, HashMap, HashSet};

/// A node's box in graph units: wide enough for a 30-character name, tall enough for a
/// layer's details (op, name, shape, parameters, one note).
pub const NODE: [f32; 2] = [240.0, 100.0];

/// The view's geometry: boxes, gaps, and a picture about as wide as a graph panel.
pub fn params() -> Params {
    Params {
        node: NODE,
        gap: [36.0, 48.0],
        wire: 14.0,
        band_gap: 110.0,
        aspect: 1.5,
    }
}

/// One box in the view.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Item {
    Input,
    /// A node, by index into `Network::nodes`.
    Layer(usize),
    /// A collapsed group of nodes (indices in execution order), by its key.
    Block {
        key: String,
        members: Vec<usize>,
    },
    Output(usize),
}

/// Everything the view draws for one state of the network and its open blocks.
pub struct View {
    pub items: Vec<Item>,
    /// `(from, to)` item indices: a value made in `from` is read in `to`.
    pub edges: Vec<(usize, usize)>,
    pub layout: Layout,
}

/// Items, edges and their layout.
pub fn arrange(
    net: &Network,
    blocks: &BTreeMap<String, Vec<usize>>,
    open: &HashSet<String>,
) -> View {
    let items = items(net, blocks, open);
    let edges = edges(net, &items);
    let layout = layered::layout(items.len(), &edges, &params());
    View {
        items,
        edges,
        layout,
    }
}

/// The items to show: blocks not in `open` are collapsed; everything else is a layer.
pub fn items(
    net: &Network,
    groups: &BTreeMap<String, Vec<usize>>,
    open: &HashSet<String>,
) -> Vec<Item> {
    let mut block_of: HashMap<usize, &String> = HashMap::new();
    for (key, members) in groups {
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
                        members: groups[key.as_str()].clone(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::blocks::blocks;
    use crate::graph::{Network, Op};

    fn load(path: &str) -> Network {
        crate::onnx::import(format!(
            "{}/tests/fixtures/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
        .network
    }

    /// What every layout must be: boxes apart, wires downward.
    fn check(name: &str, view: &View) {
        let pos = &view.layout.pos;
        let mut order: Vec<usize> = (0..pos.len()).collect();
        order.sort_by(|&a, &b| pos[a][0].total_cmp(&pos[b][0]));
        // Sweep by x: only boxes whose x ranges meet can overlap.
        for (k, &a) in order.iter().enumerate() {
            for &b in &order[k + 1..] {
                if pos[b][0] >= pos[a][0] + NODE[0] {
                    break;
                }
                let apart = pos[b][1] >= pos[a][1] + NODE[1] || pos[a][1] >= pos[b][1] + NODE[1];
                assert!(
                    apart,
                    "{name}: {:?} at {:?} overlaps {:?} at {:?}",
                    view.items[a], pos[a], view.items[b], pos[b]
                );
            }
        }
        for &(a, b) in &view.edges {
            let (la, lb) = (view.layout.layer[a], view.layout.layer[b]);
            assert!(
                la < lb,
                "{name}: edge {:?} → {:?} goes from layer {la} to {lb}",
                view.items[a],
                view.items[b]
            );
            if view.layout.band[a] == view.layout.band[b] {
                assert!(pos[a][1] < pos[b][1], "{name}: edge drawn upward in a band");
            } else {
                assert_eq!(view.layout.band[a] + 1, view.layout.band[b], "{name}");
            }
        }
    }

    /// Layer order of the items outside `key` is the same with the block open as closed.
    fn keeps_order(name: &str, closed: &View, opened: &View, key: &str) {
        let layer_of = |v: &View| -> HashMap<Item, usize> {
            v.items
                .iter()
                .cloned()
                .zip(v.layout.layer.iter().copied())
                .filter(|(item, _)| !matches!(item, Item::Block { key: k, .. } if k == key))
                .collect()
        };
        let (before, after) = (layer_of(closed), layer_of(opened));
        for (a, la) in &before {
            for (b, lb) in &before {
                if la < lb {
                    let (Some(a2), Some(b2)) = (after.get(a), after.get(b)) else {
                        continue;
                    };
                    assert!(a2 < b2, "{name}, {key} open: {a:?} no longer above {b:?}");
                }
            }
        }
    }

    /// Closed, then each block opened in turn.
    fn check_network(path: &str) -> usize {
        let net = load(path);
        let groups = blocks(&net);
        let closed = arrange(&net, &groups, &HashSet::new());
        check(path, &closed);
        for key in groups.keys() {
            let open: HashSet<String> = [key.clone()].into();
            let opened = arrange(&net, &groups, &open);
            check(&format!("{path} with {key} open"), &opened);
            keeps_order(path, &closed, &opened, key);
        }
        // Closing gives back the same picture: the layout is a function of what is open.
        let again = arrange(&net, &groups, &HashSet::new());
        assert_eq!(again.layout.pos, closed.layout.pos, "{path}");
        let all: HashSet<String> = groups.keys().cloned().collect();
        check(&format!("{path} all open"), &arrange(&net, &groups, &all));
        groups.len()
    }

    #[test]
    fn layouts_of_real_networks_keep_boxes_apart_and_wires_downward() {
        // (fixture, fewest blocks expected): ResNet-18's 49 nodes group as its four stages.
        for (path, least) in [
            ("googlenet_op11/model.onnx", 9),
            ("resnet18_op13/model.onnx", 4),
            ("densenet121_op13/model.onnx", 8),
            ("../../assets/efficientnet_lite0.onnx", 16),
            ("light/light_inception_v1.onnx", 9),
            ("light/light_resnet50.onnx", 16),
        ] {
            let blocks = check_network(path);
            assert!(blocks >= least, "{path}: {blocks} blocks");
        }
    }

    #[test]
    fn the_full_caffe2_densenet_lays_out_with_every_block_open() {
        // 668 nodes with its dense layers' concatenations: the biggest graph Graft draws.
        let net = load("light/light_densenet121.onnx");
        let groups = blocks(&net);
        let all: HashSet<String> = groups.keys().cloned().collect();
        let view = arrange(&net, &groups, &all);
        check("light_densenet121 all open", &view);
        assert!(view.items.len() > 600);
    }

    /// The layers the first node of each tower sits in: those reading the block's input.
    fn tower_layers(net: &Network, view: &View, members: &[usize]) -> Vec<usize> {
        let inside: HashSet<&str> = members
            .iter()
            .flat_map(|&m| net.nodes[m].outputs.iter().map(String::as_str))
            .collect();
        view.items
            .iter()
            .zip(&view.layout.layer)
            .filter_map(|(item, &l)| match item {
                Item::Layer(i)
                    if members.contains(i)
                        && !net.nodes[*i].present_inputs().any(|v| inside.contains(v))
                        && !matches!(net.nodes[*i].op, Op::Concat { .. }) =>
                {
                    Some(l)
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_open_inception_block_puts_its_four_towers_side_by_side() {
        for (path, key) in [
            ("googlenet_op11/model.onnx", "inception3a"),
            ("light/light_inception_v1.onnx", "inception 1"),
        ] {
            let net = load(path);
            let groups = blocks(&net);
            let view = arrange(&net, &groups, &[key.to_string()].into());
            let layers = tower_layers(&net, &view, &groups[key]);
            assert_eq!(layers.len(), 4, "{path}: towers {layers:?}");
            assert!(layers.iter().all(|&l| l == layers[0]), "{path}: {layers:?}");
            // Side by side: four different x at that layer, in one band.
            let xs: HashSet<i32> = view
                .items
                .iter()
                .enumerate()
                .filter(|(k, _)| view.layout.layer[*k] == layers[0])
                .map(|(k, _)| view.layout.pos[k][0] as i32)
                .collect();
            assert_eq!(xs.len(), 4, "{path}");
        }
    }

    #[test]
    fn the_default_network_collapses_to_a_few_dozen_blocks_that_fit_a_screen() {
        let net = crate::onnx::import_bytes(crate::DEFAULT_MODEL)
            .unwrap()
            .network;
        let groups = blocks(&net);
        let view = arrange(&net, &groups, &HashSet::new());
        assert!(view.items.len() < 40, "{} items", view.items.len());
        // A chain of ~30 boxes is wrapped into bands: the picture is screen-shaped, so fitted
        // in a 1100×700 panel it is drawn at a zoom where text stays readable.
        let [w, h] = view.layout.size;
        let zoom = (1100.0 / w).min(700.0 / h);
        assert!(zoom > 0.3, "{w}×{h} fits at zoom {zoom}");
    }
}

//! A layered (Sugiyama-style) drawing of a directed graph, top to bottom:
//!
//! 1. order: a topological order (Kahn, lowest index first, so execution order is kept);
//!    edges against it — only a badly grouped file has any — are drawn reversed;
//! 2. layers: longest path from the top;
//! 3. long edges: one dummy point per layer they pass, so wires get room of their own;
//! 4. crossings: barycenter sweeps down and up, keeping the order with the fewest crossings;
//! 5. x: each layer placed as close as it can to its neighbours' mean under minimum gaps
//!    (isotonic regression, pool-adjacent-violators), sweeping down and up;
//! 6. bands: a deep drawing is wrapped into side-by-side bands, cut only after a layer that
//!    holds a single node, so nothing but that node's wires crosses from band to band and a
//!    block is never split; the band height is picked for a screen-shaped picture.
//!
//! No crate offered layering with bands and fixed-order tie breaks (rust-sugiyama lays out
//! components without them), and this is ~300 lines with tests of its own.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Sizes, in graph units.
#[derive(Clone, Debug)]
pub struct Params {
    /// Every node's box (width, height).
    pub node: [f32; 2],
    /// Horizontal gap between boxes, vertical gap between layers.
    pub gap: [f32; 2],
    /// Width a wire passing through a layer takes.
    pub wire: f32,
    /// Space between bands.
    pub band_gap: f32,
    /// Width over height wanted for the whole drawing; sets the band height.
    pub aspect: f32,
}

/// A wire: from the bottom centre of `from` to the top centre of `to`, through `points`.
#[derive(Clone, Debug)]
pub struct Route {
    pub from: usize,
    pub to: usize,
    pub points: Vec<[f32; 2]>,
}

#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// Top-left corner of each node's box.
    pub pos: Vec<[f32; 2]>,
    /// Layer of each node, 0 at the top, counted on through the bands.
    pub layer: Vec<usize>,
    /// Band (column of the wrapped drawing) of each node.
    pub band: Vec<usize>,
    pub routes: Vec<Route>,
    /// Width and height of the whole drawing.
    pub size: [f32; 2],
}

/// Lays out `n` nodes joined by `edges` (from, to).
pub fn layout(n: usize, edges: &[(usize, usize)], p: &Params) -> Layout {
    if n == 0 {
        return Layout::default();
    }
    let mut clean: Vec<(usize, usize)> = edges
        .iter()
        .copied()
        .filter(|&(a, b)| a != b && a < n && b < n)
        .collect();
    clean.sort_unstable();
    clean.dedup();
    let rank = topological_rank(n, &clean);
    // Each edge as (upper, lower) in the drawing.
    let down: Vec<(usize, usize)> = clean
        .iter()
        .map(|&(a, b)| if rank[a] < rank[b] { (a, b) } else { (b, a) })
        .collect();
    let mut by_rank: Vec<usize> = (0..n).collect();
    by_rank.sort_by_key(|&v| rank[v]);
    let mut layer = vec![0usize; n];
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in &down {
        preds[b].push(a);
    }
    for &v in &by_rank {
        layer[v] = preds[v].iter().map(|&u| layer[u] + 1).max().unwrap_or(0);
    }
    // Dummy points: node ids n.. ; each edge becomes a chain, top to bottom.
    let mut node_layer = layer.clone();
    let mut chains: Vec<Vec<usize>> = Vec::with_capacity(down.len());
    for &(a, b) in &down {
        let mut chain = vec![a];
        for l in layer[a] + 1..layer[b] {
            chain.push(node_layer.len());
            node_layer.push(l);
        }
        chain.push(b);
        chains.push(chain);
    }
    let total = node_layer.len();
    let mut up_adj: Vec<Vec<usize>> = vec![Vec::new(); total];
    let mut down_adj: Vec<Vec<usize>> = vec![Vec::new(); total];
    for chain in &chains {
        for w in chain.windows(2) {
            down_adj[w[0]].push(w[1]);
            up_adj[w[1]].push(w[0]);
        }
    }
    let layers_n = layer.iter().copied().max().unwrap_or(0) + 1;
    let mut layers: Vec<Vec<usize>> = vec![Vec::new(); layers_n];
    for &v in &by_rank {
        layers[layer[v]].push(v);
    }
    for (d, &l) in node_layer.iter().enumerate().skip(n) {
        layers[l].push(d);
    }
    reduce_crossings(&mut layers, &up_adj, &down_adj);
    let width = |v: usize| if v < n { p.node[0] } else { p.wire };
    let x = assign_x(&layers, &up_adj, &down_adj, n, &width, p);
    // Bands.
    let pitch = p.node[1] + p.gap[1];
    let extent = |l: &Vec<usize>| -> (f32, f32) {
        l.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| {
            (lo.min(x[v] - width(v) / 2.0), hi.max(x[v] + width(v) / 2.0))
        })
    };
    let widest = layers
        .iter()
        .map(|l| {
            let (lo, hi) = extent(l);
            hi - lo
        })
        .fold(p.node[0], f32::max);
    let height = ((layers_n as f32 * (widest + p.band_gap)) / (p.aspect * pitch))
        .sqrt()
        .ceil()
        .max(6.0) as usize;
    let mut band_of = vec![0usize; layers_n];
    let mut band_start = vec![0usize];
    for l in 0..layers_n {
        band_of[l] = band_start.len() - 1;
        let start = *band_start.last().unwrap_or(&0);
        let single = matches!(layers[l].as_slice(), [v] if *v < n);
        let left = layers_n - (l + 1);
        if single && l + 1 - start >= height && left >= height / 3 && left > 0 {
            band_start.push(l + 1);
        }
    }
    let bands = band_start.len();
    let mut shift = vec![0.0f32; bands];
    let mut band_right = vec![0.0f32; bands];
    let mut cursor = 0.0f32;
    let mut tallest = 0usize;
    for b in 0..bands {
        let end = band_start.get(b + 1).copied().unwrap_or(layers_n);
        let (lo, hi) = layers[band_start[b]..end]
            .iter()
            .map(extent)
            .fold((f32::MAX, f32::MIN), |(a, b), (c, d)| (a.min(c), b.max(d)));
        shift[b] = cursor - lo;
        cursor += hi - lo;
        band_right[b] = cursor;
        cursor += p.band_gap;
        tallest = tallest.max(end - band_start[b]);
    }
    let centre = |v: usize| -> [f32; 2] {
        let l = node_layer[v];
        let b = band_of[l];
        [x[v] + shift[b], (l - band_start[b]) as f32 * pitch]
    };
    let pos: Vec<[f32; 2]> = (0..n)
        .map(|v| {
            let [cx, y] = centre(v);
            [cx - p.node[0] / 2.0, y]
        })
        .collect();
    let routes = chains
        .iter()
        .zip(&clean)
        .map(|(chain, &(from, to))| {
            let [ax, ay] = centre(chain[0]);
            let mut pts: Vec<[f32; 2]> = vec![[ax, ay + p.node[1]]];
            for w in chain.windows(2) {
                let (prev, v) = (w[0], w[1]);
                let [cx, y] = centre(v);
                let (bp, bv) = (band_of[node_layer[prev]], band_of[node_layer[v]]);
                if bp != bv {
                    // Down out of the band, along the gutter, up, across, in.
                    let [px, py] = centre(prev);
                    let below = py + p.node[1] + p.gap[1] / 2.0;
                    let gutter = band_right[bp] + p.band_gap / 2.0;
                    let above = -p.gap[1] / 2.0;
                    pts.extend([[px, below], [gutter, below], [gutter, above], [cx, above]]);
                }
                pts.push([cx, y]);
                if v >= n {
                    // A dummy spans its layer's box height.
                    pts.push([cx, y + p.node[1]]);
                }
            }
            // Straight runs through dummies need no inner points.
            let mut simple: Vec<[f32; 2]> = Vec::with_capacity(pts.len());
            for (i, q) in pts.iter().enumerate() {
                let inner = i > 0 && i + 1 < pts.len();
                if inner && (pts[i - 1][0] - q[0]).abs() < 0.5 && (pts[i + 1][0] - q[0]).abs() < 0.5
                {
                    continue;
                }
                simple.push(*q);
            }
            if rank[from] > rank[to] {
                simple.reverse();
            }
            Route {
                from,
                to,
                points: simple,
            }
        })
        .collect();
    Layout {
        pos,
        layer,
        band: (0..n).map(|v| band_of[node_layer[v]]).collect(),
        routes,
        size: [
            (cursor - p.band_gap).max(p.node[0]),
            tallest as f32 * pitch - p.gap[1],
        ],
    }
}

/// Position of each node in a topological order that takes the lowest index first; nodes
/// on a cycle follow in index order.
fn topological_rank(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut indeg = vec![0usize; n];
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in edges {
        indeg[b] += 1;
        succ[a].push(b);
    }
    let mut heap: BinaryHeap<Reverse<usize>> =
        (0..n).filter(|&v| indeg[v] == 0).map(Reverse).collect();
    let mut rank = vec![usize::MAX; n];
    let mut next = 0;
    while let Some(Reverse(v)) = heap.pop() {
        rank[v] = next;
        next += 1;
        for &w in &succ[v] {
            indeg[w] -= 1;
            if indeg[w] == 0 {
                heap.push(Reverse(w));
            }
        }
    }
    for r in rank.iter_mut().filter(|r| **r == usize::MAX) {
        *r = next;
        next += 1;
    }
    rank
}

/// Crossings between each pair of neighbouring layers, summed.
fn crossings(layers: &[Vec<usize>], down: &[Vec<usize>], pos: &[usize]) -> usize {
    let mut total = 0;
    for l in layers.iter().take(layers.len().saturating_sub(1)) {
        let mut ends: Vec<(usize, usize)> = l
            .iter()
            .flat_map(|&u| down[u].iter().map(move |&v| (u, v)))
            .map(|(u, v)| (pos[u], pos[v]))
            .collect();
        ends.sort_unstable();
        for i in 0..ends.len() {
            for j in i + 1..ends.len() {
                if ends[j].1 < ends[i].1 && ends[j].0 > ends[i].0 {
                    total += 1;
                }
            }
        }
    }
    total
}

/// Barycenter sweeps; keeps the best order seen.
fn reduce_crossings(layers: &mut [Vec<usize>], up: &[Vec<usize>], down: &[Vec<usize>]) {
    let total = up.len();
    let mut pos = vec![0usize; total];
    let index = |layers: &[Vec<usize>], pos: &mut Vec<usize>| {
        for l in layers {
            for (i, &v) in l.iter().enumerate() {
                pos[v] = i;
            }
        }
    };
    index(layers, &mut pos);
    let mut best = layers.to_vec();
    let mut best_count = crossings(layers, down, &pos);
    let reorder = |l: &mut Vec<usize>, adj: &[Vec<usize>], pos: &mut Vec<usize>| {
        let key: Vec<f32> = l
            .iter()
            .map(|&v| {
                if adj[v].is_empty() {
                    pos[v] as f32
                } else {
                    adj[v].iter().map(|&u| pos[u] as f32).sum::<f32>() / adj[v].len() as f32
                }
            })
            .collect();
        let mut order: Vec<usize> = (0..l.len()).collect();
        order.sort_by(|&a, &b| key[a].total_cmp(&key[b]).then(a.cmp(&b)));
        let new: Vec<usize> = order.iter().map(|&i| l[i]).collect();
        for (i, &v) in new.iter().enumerate() {
            pos[v] = i;
        }
        *l = new;
    };
    for _ in 0..6 {
        if best_count == 0 {
            break;
        }
        for l in layers.iter_mut().skip(1) {
            reorder(l, up, &mut pos);
        }
        for l in (0..layers.len().saturating_sub(1)).rev() {
            reorder(&mut layers[l], down, &mut pos);
        }
        let c = crossings(layers, down, &pos);
        if c < best_count {
            best_count = c;
            best = layers.to_vec();
        }
    }
    layers.clone_from_slice(&best);
}

/// x of each node's centre.
fn assign_x(
    layers: &[Vec<usize>],
    up: &[Vec<usize>],
    down: &[Vec<usize>],
    real: usize,
    width: &dyn Fn(usize) -> f32,
    p: &Params,
) -> Vec<f32> {
    let mut x = vec![0.0f32; up.len()];
    let gap = |a: usize, b: usize| {
        (width(a) + width(b)) / 2.0
            + if a < real && b < real {
                p.gap[0]
            } else {
                p.gap[0] / 4.0
            }
    };
    for l in layers {
        let mut cx = 0.0;
        for (i, &v) in l.iter().enumerate() {
            if i > 0 {
                cx += gap(l[i - 1], v);
            }
            x[v] = cx;
        }
        let mid = cx / 2.0;
        for &v in l {
            x[v] -= mid;
        }
    }
    let mean = |adj: &[usize], x: &[f32], own: f32| {
        if adj.is_empty() {
            own
        } else {
            adj.iter().map(|&u| x[u]).sum::<f32>() / adj.len() as f32
        }
    };
    let place = |l: &[usize], x: &mut Vec<f32>, adj: &dyn Fn(usize) -> Vec<usize>| {
        let want: Vec<f32> = l.iter().map(|&v| mean(&adj(v), x, x[v])).collect();
        let gaps: Vec<f32> = (0..l.len())
            .map(|i| if i == 0 { 0.0 } else { gap(l[i - 1], l[i]) })
            .collect();
        for (v, nx) in l.iter().zip(isotonic(&want, &gaps)) {
            x[*v] = nx;
        }
    };
    for _ in 0..8 {
        for l in layers.iter().skip(1) {
            place(l, &mut x, &|v| up[v].clone());
        }
        for l in layers.iter().rev().skip(1) {
            place(l, &mut x, &|v| down[v].clone());
        }
    }
    for l in layers {
        place(l, &mut x, &|v| {
            let mut both = up[v].clone();
            both.extend(&down[v]);
            both
        });
    }
    x
}

/// Positions as close as possible (least squares) to `want`, in order, each at least
/// `gaps[i]` right of the one before (pool adjacent violators on `want - offset`).
fn isotonic(want: &[f32], gaps: &[f32]) -> Vec<f32> {
    let mut offset = vec![0.0f32; want.len()];
    for i in 1..want.len() {
        offset[i] = offset[i - 1] + gaps[i];
    }
    // (sum of targets, count) per pooled run.
    let mut runs: Vec<(f32, usize)> = Vec::new();
    for i in 0..want.len() {
        runs.push((want[i] - offset[i], 1));
        while runs.len() >= 2 {
            let (s1, c1) = runs[runs.len() - 1];
            let (s0, c0) = runs[runs.len() - 2];
            if s0 / c0 as f32 > s1 / c1 as f32 {
                runs.pop();
                runs.pop();
                runs.push((s0 + s1, c0 + c1));
            } else {
                break;
            }
        }
    }
    let mut out = Vec::with_capacity(want.len());
    for (s, c) in runs {
        let m = s / c as f32;
        for _ in 0..c {
            out.push(m + offset[out.len()]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            node: [100.0, 50.0],
            gap: [20.0, 30.0],
            wire: 10.0,
            band_gap: 60.0,
            aspect: 1.6,
        }
    }

    #[test]
    fn isotonic_keeps_gaps_and_is_least_squares() {
        // Two nodes both wanting 0 with a gap of 10: −5 and 5.
        assert_eq!(isotonic(&[0.0, 0.0], &[0.0, 10.0]), vec![-5.0, 5.0]);
        // Already apart: unchanged.
        assert_eq!(isotonic(&[0.0, 50.0], &[0.0, 10.0]), vec![0.0, 50.0]);
        // Wanting the wrong order: pooled to the mean.
        assert_eq!(isotonic(&[10.0, 0.0], &[0.0, 10.0]), vec![0.0, 10.0]);
    }

    #[test]
    fn a_diamond_is_drawn_top_down_with_branches_side_by_side() {
        // 0 → 1, 0 → 2, 1 → 3, 2 → 3
        let l = layout(4, &[(0, 1), (0, 2), (1, 3), (2, 3)], &params());
        assert_eq!(l.layer, vec![0, 1, 1, 2]);
        assert_eq!(l.pos[1][1], l.pos[2][1]);
        assert!(l.pos[1][0] + 100.0 <= l.pos[2][0], "{:?}", l.pos);
        // The join sits centred under its branches.
        let mid = (l.pos[1][0] + l.pos[2][0]) / 2.0;
        assert!((l.pos[3][0] - mid).abs() < 1.0);
        assert_eq!(l.routes.len(), 4);
    }

    #[test]
    fn a_long_edge_gets_a_lane_and_no_crossing() {
        // A skip over a chain of three: the skip's dummies sit beside the chain.
        let e = [(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)];
        let l = layout(5, &e, &params());
        let skip = l.routes.iter().find(|r| r.from == 0 && r.to == 4).unwrap();
        // Its lane is beside the chain's boxes, not through them.
        let lane = skip.points[1][0];
        for v in 1..4 {
            let (x0, x1) = (l.pos[v][0], l.pos[v][0] + 100.0);
            assert!(lane <= x0 || lane >= x1, "lane {lane} crosses node {v}");
        }
    }

    #[test]
    fn a_deep_chain_wraps_into_bands_at_single_nodes() {
        let e: Vec<(usize, usize)> = (0..59).map(|i| (i, i + 1)).collect();
        let l = layout(60, &e, &params());
        let bands = l.band.iter().max().unwrap() + 1;
        assert!(bands >= 3, "{bands} bands");
        // Screen-shaped, not a tall column.
        assert!(l.size[0] / l.size[1] > 0.8, "{:?}", l.size);
        // The wire between bands goes round through the gutter.
        let cross = l
            .routes
            .iter()
            .find(|r| l.band[r.from] != l.band[r.to])
            .unwrap();
        assert!(cross.points.len() >= 5);
    }

    #[test]
    fn a_cycle_still_lays_out() {
        let l = layout(3, &[(0, 1), (1, 2), (2, 1)], &params());
        assert_eq!(l.pos.len(), 3);
        assert!(l.layer[1] < l.layer[2]);
    }
}

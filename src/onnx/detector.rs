//! A detector's decoding written into its ONNX file, so that any runtime gets boxes, not a
//! prediction map: after the head's maps `[N, A·(5+K), H, W]` (one per scale) the exporter
//! appends
//! - **boxes** `[N, M, 4]` (x0, y0, x1, y1 in input pixels; M = Σ A·H·W over the scales, the
//!   finest first) and **scores** `[N, M, K]`: σ offsets plus the cell, anchor × e^t (exponent
//!   capped at 10), σ(obj)·σ(class) kept for each box's best class only — exactly
//!   `detect::yolo::decode`;
//! - with [`Decoding::Nms`], ONNX `NonMaxSuppression` (class-aware, the [`Suppression`]'s IoU
//!   and score thresholds, its max detections per class) and gathers: **boxes** `[D, 4]`,
//!   **scores** `[D]`, **classes** `[D]` (int64) and **batch_index** `[D]` (int64).
//!
//! The maps stay outputs (last), and every appended node's name starts with
//! [`DECODE_PREFIX`], so Graft's importer removes the decoding again (the engine decodes in
//! Rust) and a re-imported detector is the network that was exported. Boxes are in the
//! letterboxed input's pixels; `graft.detection` in the metadata says how the image was
//! fitted, so a caller can map them back.

use super::export::ExportError;
use super::ops::emit::{Prefixed, ValueDim, attr_int, attr_ints, value_info};
use crate::detect::yolo::Suppression;
use crate::graph::Network;
use crate::graph::edit::{DetectionSpec, Scale};
use crate::weights::Store;
use onnx_ir::{GraphProto, ModelProto};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Names of the nodes the exporter appends start with this.
pub const DECODE_PREFIX: &str = "graft_decode/";

/// What an exported detector outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Decoding {
    /// The final detections, after non-maximum suppression inside the file.
    #[default]
    Nms,
    /// Every decoded box and its per-class scores; the caller suppresses.
    Boxes,
    /// The raw prediction map only (decode it with `graft.detection`'s anchors).
    Map,
}

/// The network exported with its decoding appended.
pub fn to_model(
    net: &Network,
    store: &Store,
    decoding: Decoding,
    suppression: &Suppression,
) -> Result<ModelProto, ExportError> {
    let mut model = super::export::to_model(net, store)?;
    let Some(spec) = DetectionSpec::of(net) else {
        return Ok(model);
    };
    if decoding == Decoding::Map {
        return Ok(model);
    }
    if net.outputs.len() != spec.scales.len() {
        return Err(ExportError::Invalid(format!(
            "the detector has {} outputs for {} scales",
            net.outputs.len(),
            spec.scales.len()
        )));
    }
    let (shapes, _) = crate::graph::shape::infer(net, store, 1);
    let per = spec.per_anchor();
    let mut maps = Vec::new();
    for (map, scale) in net.outputs.iter().zip(&spec.scales) {
        let Some(&[_, channels, h, w]) = shapes.get(map).map(Vec::as_slice) else {
            return Err(ExportError::Invalid(format!(
                "the detection output '{map}' is not N×C×H×W"
            )));
        };
        let a = scale.anchors.len();
        if channels != a * per {
            return Err(ExportError::Invalid(format!(
                "the detection output '{map}' has {channels} channels, not {a} anchors × {per}"
            )));
        }
        maps.push(MapInfo {
            name: map,
            scale,
            size: (h, w),
        });
    }
    let opset = model
        .opset_import
        .first()
        .map_or(super::export::EXPORT_OPSET, |o| o.version);
    let graph = model.graph.mut_or_insert_default();
    let mut p = Prefixed::for_graph(graph, DECODE_PREFIX);
    let d = Decoder {
        p: &mut p,
        spec: &spec,
        opset,
    };
    let outputs = d.write(&maps, decoding, suppression);
    graph.node.append(&mut p.ex.nodes);
    graph.initializer.append(&mut p.ex.initializers);
    // The decoded outputs first, the maps last.
    let map_info = graph.output.drain(..).collect::<Vec<_>>();
    for (name, elem, dims) in outputs {
        graph.output.push(value_info(&name, elem, &dims));
    }
    graph.output.extend(map_info);
    Ok(model)
}

/// A graph without the decoding [`to_model`] appended (`None` when it has none): the nodes
/// named with [`DECODE_PREFIX`] and the outputs they made go; the map is the output again.
pub fn without_decoding(graph: &GraphProto) -> Option<GraphProto> {
    if !graph.node.iter().any(|n| n.name.starts_with(DECODE_PREFIX)) {
        return None;
    }
    let mut g = graph.clone();
    let (decode, keep): (Vec<_>, Vec<_>) = g
        .node
        .drain(..)
        .partition(|n| n.name.starts_with(DECODE_PREFIX));
    g.node = keep;
    let made: HashSet<&String> = decode.iter().flat_map(|n| &n.output).collect();
    g.output.retain(|o| !made.contains(&o.name));
    let used: HashSet<&String> = g.node.iter().flat_map(|n| &n.input).collect();
    let drop: HashSet<String> = decode
        .iter()
        .flat_map(|n| &n.input)
        .filter(|i| !used.contains(i))
        .cloned()
        .collect();
    g.initializer.retain(|t| !drop.contains(&t.name));
    Some(g)
}

/// The batch and the number of detections, as an output's dimensions.
const N: ValueDim = ValueDim::Param("N");
const D: ValueDim = ValueDim::Param("D");

/// (name, ONNX element type, dims).
type Output = (String, i32, Vec<ValueDim>);

/// One prediction map of the exported graph.
struct MapInfo<'a> {
    name: &'a str,
    scale: &'a Scale,
    size: (usize, usize),
}

struct Decoder<'a> {
    p: &'a mut Prefixed,
    spec: &'a DetectionSpec,
    opset: i64,
}

impl Decoder<'_> {
    fn node(
        &mut self,
        op: &str,
        inputs: Vec<String>,
        attrs: Vec<onnx_ir::AttributeProto>,
    ) -> String {
        self.p.node(op, inputs, attrs)
    }

    /// `x[..., from..to]` on axis 2.
    fn slice(&mut self, x: &str, from: i64, to: i64) -> String {
        let (s, e, ax) = (
            self.p.ints("start", &[from]),
            self.p.ints("end", &[to]),
            self.p.ints("axis", &[2]),
        );
        self.node("Slice", vec![x.into(), s, e, ax], vec![])
    }

    /// One scale's boxes `[N, Mₛ, 4]` and best-class scores `[N, Mₛ, K]`.
    fn decode_scale(&mut self, map: &MapInfo) -> (String, String) {
        let (h, w) = map.size;
        let (a, per) = (map.scale.anchors.len(), self.spec.per_anchor());
        let (hw, m) = (h * w, a * h * w);
        // [N, A·per, H, W] → [N, A, per, HW] → [N, A, HW, per] → [N, M, per].
        let shape = self.p.ints("shape", &[0, a as i64, per as i64, hw as i64]);
        let r = self.node("Reshape", vec![map.name.into(), shape], vec![]);
        let t = self.node("Transpose", vec![r], vec![attr_ints("perm", &[0, 1, 3, 2])]);
        let shape = self.p.ints("shape", &[0, m as i64, per as i64]);
        let f = self.node("Reshape", vec![t, shape], vec![]);

        // Each row's cell (column, row) and anchor, in the order of M.
        let (mut grid, mut anchors) = (Vec::with_capacity(2 * m), Vec::with_capacity(2 * m));
        for &(aw, ah) in &map.scale.anchors {
            for cell in 0..hw {
                grid.extend([(cell % w) as f32, (cell / w) as f32]);
                anchors.extend([aw, ah]);
            }
        }
        let grid = self.p.floats("grid", &[1, m, 2], &grid);
        let anchors = self.p.floats("anchors", &[1, m, 2], &anchors);
        let stride = self.p.floats("stride", &[], &[map.scale.stride as f32]);
        let cap = self.p.floats("cap", &[], &[10.0]);
        let half = self.p.floats("half", &[], &[0.5]);

        let xy = self.slice(&f, 0, 2);
        let wh = self.slice(&f, 2, 4);
        let obj = self.slice(&f, 4, 5);
        let cls = self.slice(&f, 5, per as i64);
        let sxy = self.node("Sigmoid", vec![xy], vec![]);
        let cxy = self.node("Add", vec![sxy, grid], vec![]);
        let centre = self.node("Mul", vec![cxy, stride], vec![]);
        let capped = self.node("Min", vec![wh, cap], vec![]);
        let ewh = self.node("Exp", vec![capped], vec![]);
        let size = self.node("Mul", vec![ewh, anchors], vec![]);
        let halfsize = self.node("Mul", vec![size, half], vec![]);
        let lo = self.node("Sub", vec![centre.clone(), halfsize.clone()], vec![]);
        let hi = self.node("Add", vec![centre, halfsize], vec![]);
        let boxes = self.node("Concat", vec![lo, hi], vec![attr_int("axis", 2)]);

        // σ(obj)·σ(class), kept for the best class only (as `decode` does).
        let p = self.node("Sigmoid", vec![cls], vec![]);
        let best = if self.opset >= 18 {
            let axes = self.p.ints("axes", &[2]);
            self.node(
                "ReduceMax",
                vec![p.clone(), axes],
                vec![attr_int("keepdims", 1)],
            )
        } else {
            self.node(
                "ReduceMax",
                vec![p.clone()],
                vec![attr_ints("axes", &[2]), attr_int("keepdims", 1)],
            )
        };
        let is_best = self.node("Equal", vec![p.clone(), best], vec![]);
        let mask = self.node(
            "Cast",
            vec![is_best],
            vec![attr_int("to", super::tensor::dtype::FLOAT as i64)],
        );
        let sobj = self.node("Sigmoid", vec![obj], vec![]);
        let joint = self.node("Mul", vec![sobj, p], vec![]);
        let scores = self.node("Mul", vec![joint, mask], vec![]);
        (boxes, scores)
    }

    /// Every scale decoded, then the outputs `decoding` asks for.
    fn write(mut self, maps: &[MapInfo], decoding: Decoding, s: &Suppression) -> Vec<Output> {
        let k = self.spec.classes.len();
        let m: usize = maps
            .iter()
            .map(|x| x.scale.anchors.len() * x.size.0 * x.size.1)
            .sum();
        let (boxes, scores): (Vec<String>, Vec<String>) =
            maps.iter().map(|x| self.decode_scale(x)).unzip();
        let mut joined = |parts: Vec<String>| match <[String; 1]>::try_from(parts) {
            Ok([one]) => one,
            Err(parts) => self.node("Concat", parts, vec![attr_int("axis", 1)]),
        };
        let (boxes, scores) = (joined(boxes), joined(scores));

        let float = super::tensor::dtype::FLOAT;
        if decoding == Decoding::Boxes {
            let b = self.rename(&boxes, "boxes");
            let sc = self.rename(&scores, "scores");
            return vec![
                (b, float, vec![N, ValueDim::Fixed(m), ValueDim::Fixed(4)]),
                (sc, float, vec![N, ValueDim::Fixed(m), ValueDim::Fixed(k)]),
            ];
        }

        // NonMaxSuppression takes scores [N, K, M] and gives (batch, class, box) triples.
        let st = self.node(
            "Transpose",
            vec![scores],
            vec![attr_ints("perm", &[0, 2, 1])],
        );
        let max = self.p.ints("max_per_class", &[s.max_detections as i64]);
        let iou = self.p.floats("iou", &[1], &[s.iou_threshold]);
        let min_score = self.p.floats("score", &[1], &[s.score_threshold]);
        let sel = self.node(
            "NonMaxSuppression",
            vec![boxes.clone(), st.clone(), max, iou, min_score],
            vec![attr_int("center_point_box", 0)],
        );
        let column = |d: &mut Self, i: i64| {
            let idx = d.p.scalar_i64("column", i);
            d.node("Gather", vec![sel.clone(), idx], vec![attr_int("axis", 1)])
        };
        let (bi, ci, mi) = (
            column(&mut self, 0),
            column(&mut self, 1),
            column(&mut self, 2),
        );
        let m_const = self.p.scalar_i64("M", m as i64);
        let k_const = self.p.scalar_i64("K", k as i64);
        // Box b·M + m of boxes [N·M, 4]; score (b·K + c)·M + m of scores [N·K·M].
        let bm = self.node("Mul", vec![bi.clone(), m_const.clone()], vec![]);
        let box_index = self.node("Add", vec![bm, mi.clone()], vec![]);
        let flat = self.p.ints("shape", &[-1, 4]);
        let all_boxes = self.node("Reshape", vec![boxes, flat], vec![]);
        let picked = self.node(
            "Gather",
            vec![all_boxes, box_index],
            vec![attr_int("axis", 0)],
        );
        let bk = self.node("Mul", vec![bi.clone(), k_const], vec![]);
        let bkc = self.node("Add", vec![bk, ci.clone()], vec![]);
        let bkcm = self.node("Mul", vec![bkc, m_const], vec![]);
        let score_index = self.node("Add", vec![bkcm, mi], vec![]);
        let flat = self.p.ints("shape", &[-1]);
        let all_scores = self.node("Reshape", vec![st, flat], vec![]);
        let picked_scores = self.node(
            "Gather",
            vec![all_scores, score_index],
            vec![attr_int("axis", 0)],
        );
        let int64 = super::tensor::dtype::INT64;
        vec![
            (
                self.rename(&picked, "boxes"),
                float,
                vec![D, ValueDim::Fixed(4)],
            ),
            (self.rename(&picked_scores, "scores"), float, vec![D]),
            (self.rename(&ci, "classes"), int64, vec![D]),
            (self.rename(&bi, "batch_index"), int64, vec![D]),
        ]
    }

    /// An Identity giving `value` an output's plain name.
    fn rename(&mut self, value: &str, name: &str) -> String {
        let out = self.p.ex.fresh(name);
        let node = self.p.fresh(name);
        self.p.ex.emit(
            "Identity",
            &node,
            vec![value.into()],
            vec![out.clone()],
            vec![],
        );
        out
    }
}

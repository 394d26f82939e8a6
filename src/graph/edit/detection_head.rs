//! The detection head (issue 10): everything after a backbone feature map is replaced by
//! ordinary graph nodes — Conv 3×3, BatchNorm, LeakyReLU, and a 1×1 prediction Conv giving,
//! per cell and anchor, `tx ty tw th objectness class…` (YOLO v2/v3's layout). Because they
//! are ordinary nodes, freezing, learn-rate factors, the inspector, undo, the frozen-feature
//! cache and export work on them unchanged.
//!
//! Anchor-based, YOLO v2/v3 style, rather than anchor-free: the anchors come from the
//! training boxes (k-means on IoU, `detect::anchors`), which the data panel shows and the
//! user can reason about, as in MATLAB's workflow; the decoding is a handful of elementwise
//! ops that export to plain ONNX.
//!
//! **Two scales** (optional, YOLO v3's two-map layout): the deepest map at twice the chosen
//! map's stride gets its own block and prediction (the larger anchors); its features, through
//! a 1×1 Conv + BatchNorm and upsampled ×2 (nearest), are added into the fine block before its
//! activation (the smaller anchors). Added, as FPN's top-down path does, rather than
//! concatenated before the fine block's 3×3 Conv as YOLO v3-tiny does: with a frozen backbone
//! the chosen map is a cached input, and a concatenation would make that Conv compute its
//! input gradient over every channel of it (21.6 against 30.1 images/s on the detection
//! benchmark's data, docs/BENCHMARKS.md). The network has one output per scale, finest first.
//!
//! What the head is for travels in the network's metadata (`graft.detection`, kept in the
//! exported file's `metadata_props`): classes, and per scale its stride and anchors.

use super::{EditError, Initializer, Weights, first_output, index};
use crate::graph::elementwise::Binary;
use crate::graph::{Conv, Network, Node, Op, ResizeMode};
use crate::weights::{Store, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The metadata key of [`DetectionSpec`].
pub const DETECTION_KEY: &str = "graft.detection";
/// Every node of a detection head is named with this prefix.
pub const DETECT_PREFIX: &str = "detect/";
/// The finest scale's prediction map (the only one of a one-scale head).
pub const DETECT_OUTPUT: &str = "detections";

/// The name of scale `i`'s prediction map: `detections`, then `detections_1`, ….
pub fn output_name(i: usize) -> String {
    match i {
        0 => DETECT_OUTPUT.into(),
        i => format!("{DETECT_OUTPUT}_{i}"),
    }
}

/// One prediction map: its cell size and the anchors its cells predict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    /// Input pixels per cell.
    pub stride: usize,
    /// (width, height) in input pixels, one per anchor.
    pub anchors: Vec<(f32, f32)>,
}

/// What a detection head predicts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "SpecRecord")]
pub struct DetectionSpec {
    pub classes: Vec<String>,
    /// One per prediction map, in the order of the network's outputs (finest first).
    pub scales: Vec<Scale>,
    /// How images meet the square input (set by training; files without it letterbox).
    pub fit: crate::detect::transform::Fit,
}

/// The spec as files hold it: files written before two scales existed have one scale's
/// `anchors` and `stride` at the top level.
#[derive(Deserialize)]
struct SpecRecord {
    classes: Vec<String>,
    #[serde(default)]
    scales: Vec<Scale>,
    #[serde(default)]
    anchors: Vec<(f32, f32)>,
    #[serde(default)]
    stride: usize,
    #[serde(default)]
    fit: crate::detect::transform::Fit,
}

impl From<SpecRecord> for DetectionSpec {
    fn from(r: SpecRecord) -> Self {
        let mut scales = r.scales;
        if scales.is_empty() && !r.anchors.is_empty() {
            scales.push(Scale {
                stride: r.stride,
                anchors: r.anchors,
            });
        }
        Self {
            classes: r.classes,
            scales,
            fit: r.fit,
        }
    }
}

impl DetectionSpec {
    /// Channels per anchor: box (4), objectness (1), one score per class.
    pub fn per_anchor(&self) -> usize {
        5 + self.classes.len()
    }

    /// Anchors over all scales.
    pub fn anchor_count(&self) -> usize {
        self.scales.iter().map(|s| s.anchors.len()).sum()
    }

    /// The spec a network's metadata holds, if it has a detection head.
    pub fn of(net: &Network) -> Option<Self> {
        let (_, v) = net
            .metadata
            .extra
            .iter()
            .find(|(k, _)| k == DETECTION_KEY)?;
        serde_json::from_str(v).ok()
    }

    /// Records the spec in the network's metadata (replacing any earlier one).
    pub fn write_to(&self, net: &mut Network) {
        let json = serde_json::to_string(self).unwrap_or_default();
        net.metadata.extra.retain(|(k, _)| k != DETECTION_KEY);
        net.metadata.extra.push((DETECTION_KEY.into(), json));
    }

    /// "5 anchors at stride 16" or "3 anchors at stride 16 + 3 at stride 32".
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .scales
            .iter()
            .map(|s| format!("{} at stride {}", s.anchors.len(), s.stride))
            .collect();
        format!("anchors: {}", parts.join(" + "))
    }
}

/// Per node, the stride of its first output when that is a feature map (N×C×H×W, H > 1).
fn strides(net: &Network, store: &Store) -> Vec<Option<usize>> {
    let (shapes, _) = crate::graph::shape::infer(net, store, 1);
    let side = net.input.shape.get(2).copied().unwrap_or(0);
    net.nodes
        .iter()
        .map(|n| {
            let s = shapes.get(n.outputs.first()?)?;
            (s.len() == 4 && s[2] > 1 && side % s[2] == 0).then(|| side / s[2])
        })
        .collect()
}

/// The feature map a detection head goes on by default: the deepest 4-D output whose stride
/// is 16, else 32 (before any global pooling). Stride 16 as MATLAB's YOLO v2 examples pick
/// (ResNet-50's `activation_40_relu`): on the embedded EfficientNet-Lite0 at 224 px its 14×14
/// map gave mAP@0.5 0.93 where the 7×7 stride-32 map gave 0.48, same data and recipe
/// (docs/BENCHMARKS.md); the coarser grid cannot place medium and small boxes.
pub fn default_feature(net: &Network, store: &Store) -> Option<String> {
    let strides = strides(net, store);
    [16, 32].into_iter().find_map(|want| {
        let i = strides.iter().rposition(|&s| s == Some(want))?;
        Some(net.nodes[i].name.clone())
    })
}

/// The second scale's feature map for a head on `node`: the deepest map, computed from
/// `node`'s, at twice its stride.
pub fn coarser_feature(net: &Network, store: &Store, node: &str) -> Result<String, EditError> {
    let i = index(net, node)?;
    let strides = strides(net, store);
    let Some(s) = strides[i] else {
        return Err(EditError::Invalid(format!(
            "'{node}' does not give a feature map (N×C×H×W); a detection head needs one"
        )));
    };
    let after: HashSet<usize> = super::descendants(net, i).into_iter().collect();
    (0..net.nodes.len())
        .rev()
        .find(|j| after.contains(j) && strides[*j] == Some(2 * s))
        .map(|j| net.nodes[j].name.clone())
        .ok_or_else(|| {
            EditError::Invalid(format!(
                "no feature map at stride {} follows '{node}' (stride {s}); a second scale needs one",
                2 * s
            ))
        })
}

pub(super) fn add(
    net: &mut Network,
    store: &Store,
    node: &str,
    classes: &[String],
    anchors: &[(f32, f32)],
    coarse_anchors: &[(f32, f32)],
    seed: u64,
) -> Result<(Weights, Weights), EditError> {
    if classes.is_empty() {
        return Err(EditError::Invalid(
            "a detector needs at least one class".into(),
        ));
    }
    for a in [anchors, coarse_anchors] {
        if a.iter().any(|&(w, h)| !(w > 0.0 && h > 0.0)) {
            return Err(EditError::Invalid(format!(
                "anchors {a:?} must be positive sizes"
            )));
        }
    }
    if anchors.is_empty() {
        return Err(EditError::Invalid("a detector needs anchors".into()));
    }
    let two = !coarse_anchors.is_empty();
    let (shapes, _) = crate::graph::shape::infer(net, store, 1);
    let side = net.input.shape.get(2).copied().unwrap_or(0);
    // A node's feature map: its value, channels and height (a whole number of strides).
    let map_of = |node: &str| -> Result<(String, usize, usize), EditError> {
        let (_, value) = first_output(net, node)?;
        let Some(&[_, channels, h, _]) = shapes.get(&value).map(Vec::as_slice) else {
            return Err(EditError::Invalid(format!(
                "'{node}' does not give a feature map (N×C×H×W); a detection head needs one"
            )));
        };
        if h == 0 || side % h != 0 {
            return Err(EditError::Invalid(format!(
                "'{node}' is {h} cells high for a {side}-pixel input: not a whole stride"
            )));
        }
        Ok((value, channels, h))
    };
    let fine = map_of(node)?;
    let coarse_node = if two {
        Some(coarser_feature(net, store, node)?)
    } else {
        None
    };
    let coarse = coarse_node.as_deref().map(map_of).transpose()?;
    if let Some((_, _, h)) = &coarse
        && 2 * h != fine.2
    {
        return Err(EditError::Invalid(format!(
            "the maps are {} and {h} cells high: two scales need an input side that is a multiple of {}",
            fine.2,
            2 * side / fine.2
        )));
    }
    let mut scales = vec![Scale {
        stride: side / fine.2,
        anchors: anchors.to_vec(),
    }];
    if let Some((_, _, h)) = &coarse {
        scales.push(Scale {
            stride: side / h,
            anchors: coarse_anchors.to_vec(),
        });
    }
    let spec = DetectionSpec {
        classes: classes.to_vec(),
        scales,
        fit: Default::default(),
    };

    // Keep what the feature maps need; the old head goes.
    let old_weights: HashSet<String> = store.iter().map(|(k, _)| k.clone()).collect();
    let (mut cut, kept) = super::cut_after(net, store, coarse_node.as_deref().unwrap_or(node))?;
    if !cut.nodes.iter().any(|n| n.outputs.contains(&fine.0)) {
        return Err(EditError::Invalid(format!(
            "'{node}' is not on the way to the coarser map"
        )));
    }
    let removed: Weights = old_weights
        .iter()
        .filter(|k| !kept.contains(k))
        .filter_map(|k| store.get(k).map(|t| (k.clone(), t.clone())))
        .collect();

    let per = spec.per_anchor();
    let mut b = HeadBuilder {
        nodes: Vec::new(),
        weights: Vec::new(),
        init: Initializer::new(seed),
    };
    let width = fine.1.clamp(32, 256);
    let mut top_down = None;
    if let Some((value, channels, _)) = &coarse {
        // The coarse scale first: the fine one adds its upsampled features.
        let coarse_width = (*channels).clamp(32, 256);
        let normed = b.conv_bn("detect/s1", value, *channels, coarse_width, 3);
        let features = b.activate("detect/s1", &normed);
        let outputs = coarse_anchors.len() * per;
        b.predict(
            "detect/s1",
            &features,
            coarse_width,
            outputs,
            per,
            &output_name(1),
        );
        let lateral = b.conv_bn("detect/up", &features, coarse_width, width, 1);
        let up = "detect/up/resized".to_string();
        b.nodes.push(Node::new(
            "detect/up/resize",
            Op::Resize {
                scales: [2.0, 2.0],
                mode: ResizeMode::Nearest,
            },
            vec![lateral],
            vec![up.clone()],
        ));
        top_down = Some(up);
    }
    let mut normed = b.conv_bn("detect", &fine.0, fine.1, width, 3);
    if let Some(up) = top_down {
        let merged = "detect/merged".to_string();
        b.nodes.push(Node::new(
            "detect/merge",
            Op::Binary(Binary::Add),
            vec![normed, up],
            vec![merged.clone()],
        ));
        normed = merged;
    }
    let features = b.activate("detect", &normed);
    b.predict(
        "detect",
        &features,
        width,
        anchors.len() * per,
        per,
        DETECT_OUTPUT,
    );

    cut.nodes.extend(b.nodes);
    cut.outputs = (0..spec.scales.len()).map(output_name).collect();
    cut.metadata.labels = classes.to_vec();
    spec.write_to(&mut cut);
    *net = cut;
    Ok((removed, b.weights))
}

/// Appends a head's nodes and their fresh weights. Node names are `{prefix}/conv`, …; weight
/// names the same with dots (`detect/s1` → `detect.s1.conv.weight`).
struct HeadBuilder {
    nodes: Vec<Node>,
    weights: Weights,
    init: Initializer,
}

impl HeadBuilder {
    fn weight(&mut self, prefix: &str, name: &str, t: Tensor) -> String {
        let key = format!("{}.{name}", prefix.replace('/', "."));
        self.weights.push((key.clone(), t));
        key
    }

    /// Conv k×k (same padding) → BatchNorm; returns the normalised value.
    fn conv_bn(&mut self, prefix: &str, input: &str, cin: usize, cout: usize, k: usize) -> String {
        let fan = cin * k * k;
        let w = Tensor {
            shape: vec![cout, cin, k, k],
            data: self.init.uniform(cout * fan, fan),
        };
        let w = self.weight(prefix, "conv.weight", w);
        let bn: Vec<String> = [("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", 1.0)]
            .into_iter()
            .map(|(n, v)| self.weight(prefix, &format!("bn.{n}"), filled(cout, v)))
            .collect();
        let (conv_out, bn_out) = (format!("{prefix}/conv_out"), format!("{prefix}/bn_out"));
        self.nodes.extend([
            Node::new(
                format!("{prefix}/conv"),
                conv(k / 2),
                vec![input.into(), w],
                vec![conv_out.clone()],
            ),
            Node::new(
                format!("{prefix}/bn"),
                Op::BatchNorm {
                    epsilon: 1e-5,
                    momentum: 0.9,
                },
                std::iter::once(conv_out).chain(bn).collect(),
                vec![bn_out.clone()],
            ),
        ]);
        bn_out
    }

    /// LeakyReLU(0.1) as `{prefix}/act`; returns its output, `{prefix}/features`.
    fn activate(&mut self, prefix: &str, input: &str) -> String {
        let out = format!("{prefix}/features");
        self.nodes.push(Node::new(
            format!("{prefix}/act"),
            Op::LeakyRelu { alpha: 0.1 },
            vec![input.into()],
            vec![out.clone()],
        ));
        out
    }

    /// The 1×1 prediction Conv writing `output`. Objectness and class scores start at a prior
    /// of 1 % (RetinaNet's initialisation): nearly every cell holds nothing, and a 50 % start
    /// swamps the first steps' loss.
    fn predict(
        &mut self,
        prefix: &str,
        input: &str,
        cin: usize,
        cout: usize,
        per: usize,
        output: &str,
    ) {
        let w = Tensor {
            shape: vec![cout, cin, 1, 1],
            data: self.init.uniform(cout * cin, cin),
        };
        let w = self.weight(prefix, "predict.weight", w);
        let prior = -(99.0f32).ln();
        let bias = (0..cout)
            .map(|k| if k % per >= 4 { prior } else { 0.0 })
            .collect();
        let bias = self.weight(
            prefix,
            "predict.bias",
            Tensor {
                shape: vec![cout],
                data: bias,
            },
        );
        self.nodes.push(Node::new(
            format!("{prefix}/predict"),
            conv(0),
            vec![input.into(), w, bias],
            vec![output.into()],
        ));
    }
}

fn conv(pad: usize) -> Op {
    Op::Conv(Conv {
        strides: [1, 1],
        pads: [pad; 4],
        dilations: [1, 1],
        groups: 1,
    })
}

fn filled(n: usize, v: f32) -> Tensor {
    Tensor {
        shape: vec![n],
        data: vec![v; n],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files written before two scales existed hold one scale's anchors and stride at the top
    /// level: they read as one scale; what is written now reads back the same.
    #[test]
    fn a_one_scale_spec_from_an_older_file_reads_as_one_scale() {
        let old = r#"{"classes":["cat"],"anchors":[[20.0,30.0],[60.0,40.0]],"stride":16,"fit":"Stretch"}"#;
        let spec: DetectionSpec = serde_json::from_str(old).unwrap();
        assert_eq!(
            spec.scales,
            vec![Scale {
                stride: 16,
                anchors: vec![(20.0, 30.0), (60.0, 40.0)],
            }]
        );
        assert_eq!(spec.fit, crate::detect::transform::Fit::Stretch);
        let again: DetectionSpec =
            serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(again, spec);
        assert_eq!(spec.describe(), "anchors: 2 at stride 16");
    }
}

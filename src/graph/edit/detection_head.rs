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
//! What the head is for travels in the network's metadata (`graft.detection`, kept in the
//! exported file's `metadata_props`): classes, anchors in input pixels, stride.

use super::{EditError, Initializer, Weights, index};
use crate::graph::{Conv, Network, Node, Op};
use crate::weights::{Store, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The metadata key of [`DetectionSpec`].
pub const DETECTION_KEY: &str = "graft.detection";
pub const DETECT_CONV: &str = "detect/conv";
pub const DETECT_OUTPUT: &str = "detections";

/// What a detection head predicts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetectionSpec {
    pub classes: Vec<String>,
    /// (width, height) in input pixels, one per anchor.
    pub anchors: Vec<(f32, f32)>,
    /// Input pixels per feature-map cell.
    pub stride: usize,
    /// How images meet the square input (set by training; files without it letterbox).
    #[serde(default)]
    pub fit: crate::detect::transform::Fit,
}

impl DetectionSpec {
    /// Channels per anchor: box (4), objectness (1), one score per class.
    pub fn per_anchor(&self) -> usize {
        5 + self.classes.len()
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
}

/// The feature map a detection head goes on by default: the deepest 4-D output whose stride
/// is 16, else 32 (before any global pooling). Stride 16 as MATLAB's YOLO v2 examples pick
/// (ResNet-50's `activation_40_relu`): on the embedded EfficientNet-Lite0 at 224 px its 14×14
/// map gave mAP@0.5 0.93 where the 7×7 stride-32 map gave 0.48, same data and recipe
/// (docs/BENCHMARKS.md); the coarser grid cannot place medium and small boxes.
pub fn default_feature(net: &Network, store: &Store) -> Option<String> {
    let (shapes, _) = crate::graph::shape::infer(net, store, 1);
    let side = *net.input.shape.get(2)?;
    let stride_of = |n: &Node| {
        let s = shapes.get(n.outputs.first()?)?;
        (s.len() == 4 && s[2] > 1).then(|| side / s[2])
    };
    [16, 32].into_iter().find_map(|want| {
        net.nodes
            .iter()
            .rev()
            .find(|n| stride_of(n) == Some(want))
            .map(|n| n.name.clone())
    })
}

pub(super) fn add(
    net: &mut Network,
    store: &Store,
    node: &str,
    classes: &[String],
    anchors: &[(f32, f32)],
    seed: u64,
) -> Result<(Weights, Weights), EditError> {
    if classes.is_empty() {
        return Err(EditError::Invalid(
            "a detector needs at least one class".into(),
        ));
    }
    if anchors.is_empty() || anchors.iter().any(|&(w, h)| !(w > 0.0 && h > 0.0)) {
        return Err(EditError::Invalid(format!(
            "anchors {anchors:?} must be positive sizes"
        )));
    }
    let i = index(net, node)?;
    let feature = net.nodes[i]
        .outputs
        .first()
        .cloned()
        .ok_or_else(|| EditError::Invalid(format!("'{node}' has no output")))?;
    let (shapes, _) = crate::graph::shape::infer(net, store, 1);
    let Some(&[_, channels, h, _]) = shapes.get(&feature).map(Vec::as_slice) else {
        return Err(EditError::Invalid(format!(
            "'{node}' does not give a feature map (N×C×H×W); a detection head needs one"
        )));
    };
    let side = net.input.shape.get(2).copied().unwrap_or(0);
    if h == 0 || side % h != 0 {
        return Err(EditError::Invalid(format!(
            "'{node}' is {h} cells high for a {side}-pixel input: not a whole stride"
        )));
    }
    let spec = DetectionSpec {
        classes: classes.to_vec(),
        anchors: anchors.to_vec(),
        stride: side / h,
        fit: Default::default(),
    };

    // Keep what the feature map needs; the old head goes.
    let old_weights: HashSet<String> = store.iter().map(|(k, _)| k.clone()).collect();
    let (mut cut, kept) = super::cut_after(net, store, node)?;
    let removed: Weights = old_weights
        .iter()
        .filter(|k| !kept.contains(k))
        .filter_map(|k| store.get(k).map(|t| (k.clone(), t.clone())))
        .collect();

    let width = channels.clamp(32, 256);
    let outputs = anchors.len() * spec.per_anchor();
    let mut init = Initializer::new(seed);
    let fan3 = channels * 9;
    let mut added: Weights = vec![
        (
            "detect.conv.weight".into(),
            Tensor {
                shape: vec![width, channels, 3, 3],
                data: init.uniform(width * fan3, fan3),
            },
        ),
        ("detect.bn.scale".into(), filled(width, 1.0)),
        ("detect.bn.bias".into(), filled(width, 0.0)),
        ("detect.bn.mean".into(), filled(width, 0.0)),
        ("detect.bn.var".into(), filled(width, 1.0)),
        (
            "detect.predict.weight".into(),
            Tensor {
                shape: vec![outputs, width, 1, 1],
                data: init.uniform(outputs * width, width),
            },
        ),
    ];
    // Objectness and class scores start at a prior of 1 % (RetinaNet's initialisation):
    // nearly every cell holds nothing, and a 50 % start swamps the first steps' loss.
    let prior = -(99.0f32).ln();
    let mut bias = vec![0.0f32; outputs];
    for (k, b) in bias.iter_mut().enumerate() {
        if k % spec.per_anchor() >= 4 {
            *b = prior;
        }
    }
    added.push((
        "detect.predict.bias".into(),
        Tensor {
            shape: vec![outputs],
            data: bias,
        },
    ));
    let conv = |pad: usize| {
        Op::Conv(Conv {
            strides: [1, 1],
            pads: [pad; 4],
            dilations: [1, 1],
            groups: 1,
        })
    };
    cut.nodes.extend([
        Node::new(
            DETECT_CONV,
            conv(1),
            vec![feature, "detect.conv.weight".into()],
            vec!["detect/conv_out".into()],
        ),
        Node::new(
            "detect/bn",
            Op::BatchNorm {
                epsilon: 1e-5,
                momentum: 0.9,
            },
            vec![
                "detect/conv_out".into(),
                "detect.bn.scale".into(),
                "detect.bn.bias".into(),
                "detect.bn.mean".into(),
                "detect.bn.var".into(),
            ],
            vec!["detect/bn_out".into()],
        ),
        Node::new(
            "detect/act",
            Op::LeakyRelu { alpha: 0.1 },
            vec!["detect/bn_out".into()],
            vec!["detect/features".into()],
        ),
        Node::new(
            "detect/predict",
            conv(0),
            vec![
                "detect/features".into(),
                "detect.predict.weight".into(),
                "detect.predict.bias".into(),
            ],
            vec![DETECT_OUTPUT.into()],
        ),
    ]);
    for n in cut
        .nodes
        .iter_mut()
        .filter(|n| n.name.starts_with("detect/"))
    {
        n.frozen = false;
    }
    cut.outputs = vec![DETECT_OUTPUT.into()];
    cut.metadata.labels = classes.to_vec();
    spec.write_to(&mut cut);
    *net = cut;
    Ok((removed, added))
}

fn filled(n: usize, v: f32) -> Tensor {
    Tensor {
        shape: vec![n],
        data: vec![v; n],
    }
}

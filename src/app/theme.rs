//! Colours, so that every panel speaks the same visual language.

use crate::graph::Op;
use egui::Color32;

pub const NODE_FILL: Color32 = Color32::from_rgb(38, 42, 50);
/// Frozen layers are tinted blue-grey: their weights do not change.
pub const FROZEN_FILL: Color32 = Color32::from_rgb(27, 36, 62);
/// The head (the layers trained for the new task) and the frozen-feature cut.
pub const HEAD: Color32 = Color32::from_rgb(80, 200, 190);
pub const HEAD_FILL: Color32 = Color32::from_rgb(24, 58, 60);
/// Layers Graft cannot run.
pub const ERROR_FILL: Color32 = Color32::from_rgb(78, 30, 32);
/// The search match.
pub const FOUND: Color32 = Color32::from_rgb(120, 220, 255);
pub const SELECTED: Color32 = Color32::from_rgb(250, 200, 80);
pub const ERROR: Color32 = Color32::from_rgb(235, 90, 80);
pub const WARNING: Color32 = Color32::from_rgb(230, 180, 70);
pub const OK: Color32 = Color32::from_rgb(110, 200, 120);
pub const PIN: Color32 = Color32::from_rgb(150, 160, 180);
pub const TRAIN: Color32 = Color32::from_rgb(90, 160, 240);
pub const TRAIN_SMOOTH: Color32 = Color32::from_rgb(30, 110, 230);
pub const VALIDATION: Color32 = Color32::from_rgb(240, 140, 60);
/// A detector's loss terms.
pub const BOX_TERM: Color32 = Color32::from_rgb(120, 210, 140);
pub const OBJECT_TERM: Color32 = Color32::from_rgb(190, 140, 255);
pub const CLASS_TERM: Color32 = Color32::from_rgb(255, 200, 90);

/// A class's colour in boxes drawn in the window (the same palette `detect::predict::draw`
/// uses on images).
pub fn class_color(class: usize) -> Color32 {
    let [r, g, b] = crate::detect::predict::class_rgb(class);
    Color32::from_rgb(r, g, b)
}

/// A colour per op family: convolutions, normalisation, activations, pooling, dense.
pub fn op_color(op: &Op) -> Color32 {
    match op {
        Op::Conv(_) => Color32::from_rgb(110, 170, 255),
        Op::BatchNorm { .. } | Op::LayerNorm { .. } | Op::Lrn { .. } => {
            Color32::from_rgb(190, 140, 255)
        }
        Op::Gemm { .. } | Op::MatMul => Color32::from_rgb(255, 200, 90),
        Op::MaxPool(_)
        | Op::AveragePool { .. }
        | Op::GlobalAveragePool
        | Op::GlobalMaxPool
        | Op::Reduce { .. } => Color32::from_rgb(255, 150, 90),
        Op::Unary(_)
        | Op::LeakyRelu { .. }
        | Op::Clip { .. }
        | Op::HardSigmoid { .. }
        | Op::Elu { .. }
        | Op::Gelu { .. } => Color32::from_rgb(120, 210, 140),
        Op::Softmax { .. } | Op::LogSoftmax { .. } => Color32::from_rgb(255, 120, 160),
        Op::Unsupported { .. } => ERROR,
        _ => Color32::from_rgb(190, 195, 205),
    }
}

/// Heatmap colour for a fraction in [0, 1].
pub fn heat(f: f32) -> Color32 {
    let f = f.clamp(0.0, 1.0);
    let lerp = |a: u8, b: u8| (a as f32 + (b as f32 - a as f32) * f) as u8;
    Color32::from_rgb(lerp(30, 40), lerp(36, 120), lerp(48, 230))
}

/// A spectrogram's colour for a fraction in [0, 1]: black through purple and orange to pale
/// yellow (a magma-like ramp, so loudness reads at a glance).
pub fn spectrogram(f: f32) -> [u8; 3] {
    const STOPS: [[f32; 3]; 5] = [
        [0.0, 0.0, 4.0],
        [80.0, 18.0, 123.0],
        [182.0, 54.0, 121.0],
        [251.0, 136.0, 97.0],
        [252.0, 253.0, 191.0],
    ];
    let x = f.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let t = x - i as f32;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    [0, 1, 2].map(|c| (a[c] + (b[c] - a[c]) * t) as u8)
}

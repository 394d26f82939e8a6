//! A sound network's front end written into its ONNX file, so that a deployment feeds raw
//! audio: the file's input is **waveform** `[N, samples]` (mono, at the front end's rate, one
//! clip's length), and before the network the exporter puts (opset 17):
//!
//! `Unsqueeze` → `STFT` (frames of `fft` samples every `hop`, a periodic Hann window as a
//! constant, one-sided) → power (`Mul`, `ReduceSum` over real and imaginary) → `MatMul` by
//! the mel filter bank (a constant: see `audio::mel` for why not `MelWeightMatrix`) →
//! `Add` offset, `Log` → held within `floor_db` of the clip's loudest (`ReduceMax`, `Max`) →
//! standardise (`Sub` mean, `Div` spread) → `Transpose` to bands × time →
//! `Resize` (linear, half-pixel) to the network's square input → `Concat` into its channels.
//!
//! These are exactly `audio::front`'s steps, so any runtime gives Graft's numbers. Every
//! node's name starts with [`FRONT_PREFIX`]; Graft's importer removes them again (the engine
//! computes the front end in Rust) and the re-imported network is the one exported, its
//! front end still in the metadata (`graft.audio`).

use super::export::ExportError;
use super::ops::emit::{Prefixed, ValueDim, attr_int, attr_ints, attr_string, value_info};
use crate::audio::front::FrontEnd;
use crate::audio::mel::mel_weights;
use crate::graph::Network;
use onnx_ir::{GraphProto, ModelProto, ValueInfoProto};
use std::collections::HashSet;

/// Names of the nodes the exporter prepends start with this.
pub const FRONT_PREFIX: &str = "graft_audio/";
/// The exported file's input.
pub const WAVEFORM: &str = "waveform";
/// The name of the constant holding the network's input side (what the importer reads back).
const SIZE: &str = "graft_audio/size";

/// Puts the front end before the network's input, if the network was trained on sound.
pub fn prepend_front_end(model: &mut ModelProto, net: &Network) -> Result<(), ExportError> {
    let Some(front) = FrontEnd::of(net) else {
        return Ok(());
    };
    let (channels, side) = match net.input.shape[..] {
        [_, c, h, w] if h == w => (c, h),
        ref s => {
            return Err(ExportError::Invalid(format!(
                "a sound network takes square spectrogram images, not {s:?}"
            )));
        }
    };
    let s = &front.settings;
    let m = &s.mel;
    let samples = s.clip_samples();
    let opset = model
        .opset_import
        .first()
        .map_or(super::export::EXPORT_OPSET, |o| o.version);
    let graph = model.graph.mut_or_insert_default();
    if graph.input.iter().any(|i| i.name == WAVEFORM)
        || graph
            .node
            .iter()
            .any(|n| n.output.iter().any(|o| o == WAVEFORM))
    {
        return Err(ExportError::Invalid(format!(
            "the network already has a value named '{WAVEFORM}'"
        )));
    }
    let mut f = Prefixed::for_graph(graph, FRONT_PREFIX);
    let wave = WAVEFORM.to_string();
    let axis2 = f.ints("axes", &[2]);
    let signal = f.node("Unsqueeze", vec![wave.clone(), axis2], vec![]);
    let hop = f.scalar_i64("hop", m.hop as i64);
    let window: Vec<f32> = (0..m.fft)
        .map(|n| {
            let x = 2.0 * std::f64::consts::PI * n as f64 / m.fft as f64;
            (0.5 - 0.5 * x.cos()) as f32
        })
        .collect();
    let window = f.floats("window", &[m.fft], &window);
    let length = f.scalar_i64("frame_length", m.fft as i64);
    let stft = f.node(
        "STFT",
        vec![signal, hop, window, length],
        vec![attr_int("onesided", 1)],
    );
    let squared = f.node("Mul", vec![stft.clone(), stft], vec![]);
    let last = f.ints("axes", &[-1]);
    let power = f.node(
        "ReduceSum",
        vec![squared, last],
        vec![attr_int("keepdims", 0)],
    );
    let bank = f.floats("mel_weights", &[m.bins(), m.mels], &mel_weights(m));
    let mel = f.node("MatMul", vec![power, bank], vec![]);
    let offset = f.floats("log_offset", &[], &[m.log_offset]);
    let shifted = f.node("Add", vec![mel, offset], vec![]);
    let mut log = f.node("Log", vec![shifted], vec![]);
    if s.floor_db > 0.0 {
        // Held within floor_db of the clip's loudest value: max over frames and bands.
        let top = if opset >= 18 {
            let axes = f.ints("axes", &[1, 2]);
            f.node(
                "ReduceMax",
                vec![log.clone(), axes],
                vec![attr_int("keepdims", 1)],
            )
        } else {
            f.node(
                "ReduceMax",
                vec![log.clone()],
                vec![attr_ints("axes", &[1, 2]), attr_int("keepdims", 1)],
            )
        };
        let depth = f.floats("floor", &[], &[s.floor_db * std::f32::consts::LN_10 / 10.0]);
        let floor = f.node("Sub", vec![top, depth], vec![]);
        log = f.node("Max", vec![log, floor], vec![]);
    }
    let mean = f.floats("mean", &[], &[front.mean]);
    let centred = f.node("Sub", vec![log, mean], vec![]);
    let std = f.floats("std", &[], &[front.std]);
    let standard = f.node("Div", vec![centred, std], vec![]);
    let bands = f.node(
        "Transpose",
        vec![standard],
        vec![attr_ints("perm", &[0, 2, 1])],
    );
    let axis1 = f.ints("axes", &[1]);
    let plane = f.node("Unsqueeze", vec![bands, axis1], vec![]);
    // Resize by sizes (the batch and channel from the input, then side × side): scales would
    // leave the output size to float rounding.
    let shape = f.node("Shape", vec![plane.clone()], vec![]);
    let (from, to, zero) = (
        f.ints("start", &[0]),
        f.ints("end", &[2]),
        f.ints("axes", &[0]),
    );
    let nc = f.node("Slice", vec![shape, from, to, zero], vec![]);
    let hw = f.ints("size", &[side as i64, side as i64]);
    let sizes = f.node("Concat", vec![nc, hw], vec![attr_int("axis", 0)]);
    let resized = f.node(
        "Resize",
        vec![plane, String::new(), String::new(), sizes],
        vec![
            attr_string("mode", "linear"),
            attr_string("coordinate_transformation_mode", "half_pixel"),
        ],
    );
    // The one plane into every channel, under the network's own input name.
    let name = f.fresh("channels");
    f.ex.emit(
        "Concat",
        &name,
        vec![resized; channels],
        vec![net.input.name.clone()],
        vec![attr_int("axis", 1)],
    );

    let mut nodes = std::mem::take(&mut f.ex.nodes);
    nodes.append(&mut graph.node);
    graph.node = nodes;
    graph.initializer.append(&mut f.ex.initializers);
    graph.input.retain(|i| i.name != net.input.name);
    graph.input.insert(0, waveform_info(samples));
    Ok(())
}

/// A graph without the front end [`prepend_front_end`] put in (`None` when it has none): its
/// nodes and constants go, and the network's image input `[N, C, side, side]` is the input
/// again.
pub fn without_front_end(graph: &GraphProto) -> Option<GraphProto> {
    if !graph.node.iter().any(|n| n.name.starts_with(FRONT_PREFIX)) {
        return None;
    }
    let mut g = graph.clone();
    let (front, keep): (Vec<_>, Vec<_>) = g
        .node
        .drain(..)
        .partition(|n| n.name.starts_with(FRONT_PREFIX));
    g.node = keep;
    // The last node gives the network's input: its channels are its inputs, its side the
    // `size` constant of the Resize.
    let last = front.last()?;
    let input = last.output.first()?.clone();
    let channels = last.input.len();
    let side = graph
        .initializer
        .iter()
        .find(|t| t.name.starts_with(SIZE))
        .and_then(|t| super::tensor::from_proto(t).ok())
        .and_then(|h| h.to_i64().first().copied())? as usize;
    let used: HashSet<&String> = g.node.iter().flat_map(|n| &n.input).collect();
    let dropped: HashSet<String> = front
        .iter()
        .flat_map(|n| &n.input)
        .filter(|i| !used.contains(i))
        .cloned()
        .collect();
    g.initializer.retain(|t| !dropped.contains(&t.name));
    g.input.retain(|i| i.name != WAVEFORM);
    g.input.insert(
        0,
        image_info(&input, &[None, Some(channels), Some(side), Some(side)]),
    );
    Some(g)
}

fn waveform_info(samples: usize) -> ValueInfoProto {
    image_info(WAVEFORM, &[None, Some(samples)])
}

/// A float input's declaration; `None` dims are the batch `N`.
fn image_info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    let dims: Vec<ValueDim> = dims
        .iter()
        .map(|d| d.map_or(ValueDim::Param("N"), ValueDim::Fixed))
        .collect();
    value_info(name, super::tensor::dtype::FLOAT, &dims)
}

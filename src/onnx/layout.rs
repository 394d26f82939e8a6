//! Channels-last inputs. Files from TensorFlow converters (tf2onnx, keras2onnx) take
//! N×H×W×C images and transpose them inside. Graft feeds every network N×C×H×W, so on import
//! the input becomes channels-first and one Transpose node (`NHWC_NODE`) turns it back into
//! what the file's first layers read; on export that node is removed again, so the retrained
//! file keeps the original channels-last input that deployments already feed.

use crate::graph::{Network, Node, Op};
use std::borrow::Cow;

/// The node that makes the file's channels-last value from Graft's channels-first input.
pub const NHWC_NODE: &str = "graft/channels_last_input";

/// Whether `shape` reads as N×H×W×C: 1 or 3 channels last, and a plane that is not.
fn is_channels_last(shape: &[usize]) -> bool {
    matches!(shape, [_, h, w, c] if (*c == 1 || *c == 3) && *h > 4 && *w > 4)
}

/// Turns a channels-last input into a channels-first one followed by `NHWC_NODE`.
pub fn channels_first(net: &mut Network) {
    if !is_channels_last(&net.input.shape) || net.node(NHWC_NODE).is_some() {
        return;
    }
    let name = net.input.name.clone();
    let inner = format!("{name}/channels_last");
    for node in &mut net.nodes {
        for i in &mut node.inputs {
            if *i == name {
                i.clone_from(&inner);
            }
        }
    }
    for out in &mut net.outputs {
        if *out == name {
            out.clone_from(&inner);
        }
    }
    let s = &net.input.shape;
    net.input.shape = vec![s[0], s[3], s[1], s[2]];
    net.metadata.notes.push(
        "channels-last input: fed channels-first inside Graft, exported channels-last".into(),
    );
    net.nodes.insert(
        0,
        Node::new(
            NHWC_NODE,
            Op::Transpose {
                perm: vec![0, 2, 3, 1],
            },
            vec![name],
            vec![inner],
        ),
    );
}

/// The network as the file had it: `NHWC_NODE` removed and the input channels-last again.
pub fn channels_last_for_export(net: &Network) -> Cow<'_, Network> {
    let Some(k) = net.node_index(NHWC_NODE) else {
        return Cow::Borrowed(net);
    };
    let mut out = net.clone();
    let node = out.nodes.remove(k);
    let (inner, name) = (&node.outputs[0], &node.inputs[0]);
    for n in &mut out.nodes {
        for i in &mut n.inputs {
            if i == inner {
                i.clone_from(name);
            }
        }
    }
    for o in &mut out.outputs {
        if o == inner {
            o.clone_from(name);
        }
    }
    let s = &net.input.shape;
    out.input.shape = vec![s[0], s[2], s[3], s[1]];
    Cow::Owned(out)
}

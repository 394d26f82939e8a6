//! Graph rewrites that make a plan faster without changing its results.

use crate::graph::{Binary, Network, Op, PadMode, Unary};
use crate::weights::{Store, Tensor};

/// Every inference rewrite, in order: zero padding into the convolutions that read it,
/// Sigmoid + Mul into SiLU, then BatchNorm into the convolutions before it. Training plans fold only the padding
/// (`Model::build` does that for them): BatchNorm must stay to learn.
pub fn for_inference(net: &Network, store: &Store) -> (Network, Store) {
    fold_batchnorm(&fuse_silu(&fold_pads(net)), store)
}

/// Joins `Mul(x, Sigmoid(x))` (how PyTorch exports SiLU/Swish, in every block of
/// EfficientNet-B0) into one `Silu` step when the sigmoid has no other reader: one pass over
/// the activation and no sigmoid tensor in between.
pub fn fuse_silu(net: &Network) -> Network {
    let mut net = net.clone();
    let mut i = 0;
    while i < net.nodes.len() {
        match silu_pair(&net, i) {
            Some((sigmoid, x)) => {
                net.nodes[i].op = Op::Unary(Unary::Silu);
                net.nodes[i].inputs = vec![x];
                net.nodes.remove(sigmoid);
                // The Mul moved down one place if the sigmoid was before it; look at the
                // same node again either way (nothing it holds can fuse twice).
                i = i.saturating_sub(usize::from(sigmoid < i));
            }
            None => i += 1,
        }
    }
    net
}

/// `(sigmoid node, x)` when node `mul` is `Mul(x, s)` or `Mul(s, x)` with `s = Sigmoid(x)`
/// read by that Mul alone.
fn silu_pair(net: &Network, mul: usize) -> Option<(usize, String)> {
    let node = &net.nodes[mul];
    if node.op != Op::Binary(Binary::Mul) || node.inputs.len() != 2 {
        return None;
    }
    (0..2).find_map(|k| {
        let (s, x) = (&node.inputs[k], &node.inputs[1 - k]);
        let sig = net.producer(s)?;
        let fused = net.nodes[sig].op == Op::Unary(Unary::Sigmoid)
            && net.nodes[sig].inputs.first() == Some(x)
            && net.consumers(s) == [mul]
            && !net.outputs.contains(s);
        fused.then(|| (sig, x.clone()))
    })
}

/// Folds a spatial zero `Pad` whose only readers are convolutions into their (asymmetric)
/// padding: TensorFlow-style "same" padding, exported as `Pad` + `Conv` (EfficientNet-Lite0
/// before each stride-2 convolution), then costs no copy of the activation.
pub fn fold_pads(net: &Network) -> Network {
    let mut net = net.clone();
    let mut i = 0;
    while i < net.nodes.len() {
        let Some(extra) = spatial_zero_pad(&net.nodes[i].op) else {
            i += 1;
            continue;
        };
        let (Some(x), Some(out)) = (
            net.nodes[i].inputs.first().cloned(),
            net.nodes[i].outputs.first().cloned(),
        ) else {
            i += 1;
            continue;
        };
        let readers = net.consumers(&out);
        let all_convs = !readers.is_empty()
            && readers.iter().all(|&r| {
                matches!(net.nodes[r].op, Op::Conv(_))
                    && net.nodes[r].inputs.iter().skip(1).all(|n| n != &out)
            });
        if !all_convs || net.outputs.contains(&out) {
            i += 1;
            continue;
        }
        for r in readers {
            let node = &mut net.nodes[r];
            if let Op::Conv(c) = &mut node.op {
                for (p, e) in c.pads.iter_mut().zip(extra) {
                    *p += e;
                }
            }
            node.inputs[0] = x.clone();
        }
        net.nodes.remove(i);
    }
    net
}

/// `[top, left, bottom, right]` when `op` pads only the two spatial axes of a 4-D tensor with
/// zeros (no cropping).
fn spatial_zero_pad(op: &Op) -> Option<[usize; 4]> {
    let Op::Pad {
        pads,
        mode: PadMode::Constant(v),
    } = op
    else {
        return None;
    };
    let batch_channel_untouched = [0, 1, 4, 5].iter().all(|&k| pads.get(k) == Some(&0));
    if *v != 0.0 || pads.len() != 8 || !batch_channel_untouched || pads.iter().any(|&p| p < 0) {
        return None;
    }
    Some([pads[2], pads[3], pads[6], pads[7]].map(|p| p as usize))
}

/// Folds each BatchNorm that directly follows a convolution into the convolution's weights
/// and bias (inference only: training needs the BatchNorm). Returns the rewritten network and
/// store; the originals are untouched.
pub fn fold_batchnorm(net: &Network, store: &Store) -> (Network, Store) {
    let mut net = net.clone();
    let mut store = store.clone();
    let mut i = 0;
    while i < net.nodes.len() {
        match foldable(&net, &store, i) {
            // The BatchNorm at `i` is removed; the next node moves into its place.
            Some((conv, bn)) => apply(&mut net, &mut store, conv, bn),
            None => i += 1,
        }
    }
    (net, store)
}

/// `Some((conv, bn))` when node `bn` is a BatchNorm whose input is a convolution read by
/// nothing else.
fn foldable(net: &Network, store: &Store, bn: usize) -> Option<(usize, usize)> {
    let node = &net.nodes[bn];
    if !matches!(node.op, Op::BatchNorm { .. }) {
        return None;
    }
    let x = node.inputs.first()?;
    let conv = net.producer(x)?;
    if !matches!(net.nodes[conv].op, Op::Conv(_))
        || net.consumers(x).len() != 1
        || net.outputs.contains(x)
        || !(1..5).all(|i| node.inputs.get(i).is_some_and(|n| store.contains(n)))
    {
        return None;
    }
    let out_ch = *store.get(net.nodes[conv].inputs.get(1)?)?.shape.first()?;
    let bias_ok = match net.nodes[conv].inputs.get(2).filter(|n| !n.is_empty()) {
        Some(b) => store.get(b)?.len() == out_ch,
        None => true,
    };
    let stats_ok = (1..5).all(|i| {
        store
            .get(&node.inputs[i])
            .is_some_and(|t| t.len() == out_ch)
    });
    (bias_ok && stats_ok).then_some((conv, bn))
}

fn apply(net: &mut Network, store: &mut Store, conv: usize, bn: usize) {
    let Op::BatchNorm { epsilon, .. } = net.nodes[bn].op else {
        unreachable!("foldable() checked the op")
    };
    let get = |i: usize| {
        store
            .get(&net.nodes[bn].inputs[i])
            .map(|t| t.data.clone())
            .unwrap_or_default()
    };
    let (gamma, beta, mean, var) = (get(1), get(2), get(3), get(4));
    let w_name = net.nodes[conv].inputs[1].clone();
    let w = store
        .get(&w_name)
        .cloned()
        .unwrap_or_else(|| Tensor::zeros(vec![0]));
    let out_ch = w.shape[0];
    let per = w.len() / out_ch;
    let scale: Vec<f32> = (0..out_ch)
        .map(|c| gamma[c] / (var[c] + epsilon).sqrt())
        .collect();
    let mut wd = w.data.clone();
    for c in 0..out_ch {
        for v in &mut wd[c * per..(c + 1) * per] {
            *v *= scale[c];
        }
    }
    let old_bias = net.nodes[conv]
        .inputs
        .get(2)
        .filter(|n| !n.is_empty())
        .and_then(|n| store.get(n))
        .map(|t| t.data.clone())
        .unwrap_or_else(|| vec![0.0; out_ch]);
    let bias: Vec<f32> = (0..out_ch)
        .map(|c| (old_bias[c] - mean[c]) * scale[c] + beta[c])
        .collect();

    // New tensors under new names: the originals may be shared with other nodes.
    let conv_name = net.nodes[conv].name.clone();
    let (wn, bn_name) = (
        format!("{conv_name}::folded_weight"),
        format!("{conv_name}::folded_bias"),
    );
    store.insert(
        wn.clone(),
        Tensor {
            shape: w.shape.clone(),
            data: wd,
        },
    );
    store.insert(
        bn_name.clone(),
        Tensor {
            shape: vec![out_ch],
            data: bias,
        },
    );
    let bn_out = net.nodes[bn].outputs[0].clone();
    let c = &mut net.nodes[conv];
    c.inputs.resize(3, String::new());
    c.inputs[1] = wn;
    c.inputs[2] = bn_name;
    c.outputs[0] = bn_out;
    net.nodes.remove(bn);
}

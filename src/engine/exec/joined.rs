//! A Concat run with the convolutions it joins ([`Step::parts`]): along the channels of
//! rank-4 flex tensors, each convolution writes its channels of the joined tensor in place
//! (`fast_cpu::Joined`) and the other inputs are copied in; anywhere else the parts run as
//! steps of their own and the Concat joins their outputs.

use super::super::fast_cpu::{self, Act, Joined};
use super::super::params::{ConvParams, LayerParams};
use super::super::value::Value;
use super::super::{Mode, Src, Step};
use super::Res;
use crate::graph::{Conv, Op, norm_axis};
use burn::tensor::Tensor;

/// One of a Concat's parts with what it reads.
pub struct Part<'a> {
    pub step: &'a Step,
    pub inputs: Vec<Option<Value>>,
    pub layer: Option<&'a LayerParams>,
}

/// The Concat `step` on `inputs` (those its parts make are `None`) and its parts.
pub fn run_joined(
    step: &Step,
    mut inputs: Vec<Option<Value>>,
    parts: Vec<Part<'_>>,
    mode: Mode,
) -> Res {
    let Op::Concat { axis } = step.op else {
        return Err("convolutions joined to a step that is not a Concat".into());
    };
    // The Concat's input each part makes.
    let mut at = Vec::with_capacity(parts.len());
    for p in &parts {
        let made = |s: &Option<Src>| matches!(s, Some(Src::Slot(x)) if p.step.outputs == [*x]);
        match step.inputs.iter().position(made) {
            Some(k) if inputs[k].is_none() => at.push(k),
            _ => return Err(format!("{}: not one of the Concat's inputs", p.step.node)),
        }
    }
    if let Some(joined) = layout(axis, &inputs, &parts, &at) {
        return fill(joined, inputs, parts, &at, mode);
    }
    for (p, k) in parts.into_iter().zip(at) {
        inputs[k] = run_part(p, mode)?.into_iter().next();
    }
    super::run(step, inputs, None, mode)
}

fn run_part(p: Part<'_>, mode: Mode) -> Res {
    super::run(p.step, p.inputs, p.layer, mode).map_err(|e| format!("{}: {e}", p.step.node))
}

/// A part's convolution: its attributes, its weight and bias, and its input.
fn conv_of<'p>(p: &'p Part<'_>) -> Option<(&'p Conv, &'p ConvParams, &'p Tensor<4>)> {
    let Op::Conv(c) = &p.step.op else { return None };
    let Some(Value::R4(x)) = p.inputs.first()? else {
        return None;
    };
    let Some(LayerParams::Conv(params)) = p.layer else {
        return None;
    };
    Some((c, params, x))
}

/// Room for the joined tensor when every input is a rank-4 flex tensor joined along the
/// channels and every part a convolution whose output shape follows from its input's.
fn layout(axis: i64, inputs: &[Option<Value>], parts: &[Part<'_>], at: &[usize]) -> Option<Joined> {
    if norm_axis(axis, 4).ok()? != 1 {
        return None;
    }
    let mut dims = Vec::with_capacity(inputs.len());
    for (k, v) in inputs.iter().enumerate() {
        let d = match at.iter().position(|&a| a == k) {
            Some(i) => {
                let (c, params, x) = conv_of(&parts[i])?;
                let [co, _, kh, kw] = params.weight.val().dims();
                let [n, _, h, w] = x.dims();
                let [oh, ow] =
                    fast_cpu::conv_output([h, w], [kh, kw], c.strides, c.dilations, c.pads)?;
                fast_cpu::takes(x).then_some([n, co, oh, ow])?
            }
            None => match v {
                Some(Value::R4(t)) if fast_cpu::takes(t) => t.dims(),
                _ => return None,
            },
        };
        dims.push(d);
    }
    let [n, _, h, w] = *dims.first()?;
    if dims.iter().any(|d| [d[0], d[2], d[3]] != [n, h, w]) {
        return None;
    }
    let channels: Vec<usize> = dims.iter().map(|d| d[1]).collect();
    Joined::new(n, [h, w], &channels)
}

/// Every input written into `joined`: the parts' convolutions in place where the kernels
/// take them (else run as steps and copied), the other inputs copied.
fn fill(
    mut joined: Joined,
    inputs: Vec<Option<Value>>,
    parts: Vec<Part<'_>>,
    at: &[usize],
    mode: Mode,
) -> Res {
    let disagree = || "the joined tensors' shapes disagree".to_string();
    for (p, &k) in parts.into_iter().zip(at) {
        let in_place = conv_of(&p).and_then(|(c, params, x)| {
            let (w, b) = (params.weight.val(), params.bias.as_ref().map(|b| b.val()));
            let act = p.step.act.unwrap_or(Act::NONE);
            joined.conv(k, x, (&w, b.as_ref()), c, act, &p.step.packs)
        });
        if in_place.is_none() {
            let y = run_part(p, mode)?.into_iter().next().ok_or_else(disagree)?;
            joined.copy(k, &y.into_r4()?).ok_or_else(disagree)?;
        }
    }
    for (k, v) in inputs.into_iter().enumerate() {
        if let Some(v) = v {
            joined.copy(k, &v.into_r4()?).ok_or_else(disagree)?;
        }
    }
    let y = joined
        .finish()
        .ok_or("a joined tensor's part was not made")?;
    Ok(vec![Value::R4(y)])
}

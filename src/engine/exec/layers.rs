//! The layers whose step carries a fused activation — convolution and batch norm — and the
//! activation itself where no kernel applied it: Graft's CPU kernels first (and its GPU
//! depthwise weight gradient), burn's ops otherwise.

use super::super::fast_cpu::{self, Act};
use super::super::gpu_train;
use super::super::params::{BatchNormParams, LayerParams};
use super::super::value::{Value, map, visit};
use super::super::{Mode, Step};
use super::{Res, lift_same};
use crate::graph::{Conv, Op};
use burn::tensor::Tensor;
use burn::tensor::activation as act;
use burn::tensor::module::{self, batch_norm_train, conv2d};
use burn::tensor::ops::ConvOptions;

/// A convolution: Graft's CPU kernels where they apply (inference, then training), burn's
/// op otherwise, with the step's fused activation.
pub(super) fn conv(
    step: &Step,
    c: &Conv,
    x: Value,
    layer: Option<&LayerParams>,
    mode: Mode,
) -> Res {
    let one = |v: Value| Ok(vec![v]);
    let Some(LayerParams::Conv(p)) = layer else {
        return Err("convolution without weights".into());
    };
    let x = x.into_r4()?;
    let (weight, bias) = (p.weight.val(), p.bias.as_ref().map(|b| b.val()));
    let act = step.act.unwrap_or(Act::NONE);
    let fast = fast_cpu::depthwise_conv(&x, &weight, bias.as_ref(), c, act)
        .or_else(|| fast_cpu::pointwise_conv(&x, &weight, bias.as_ref(), c, act, &step.packs))
        .or_else(|| fast_cpu::dense_conv(&x, &weight, bias.as_ref(), c, act, &step.packs));
    if let Some(y) = fast {
        return one(Value::R4(y));
    }
    // Training on the CPU: the same kernels as one autodiff op with their own
    // gradients (activations are fused into training plans' batch norms, not
    // convolutions: see `fuse_activations`).
    if step.act.is_none()
        && let Some(y) = fast_cpu::train::conv(&x, &weight, bias.as_ref(), c)
    {
        return one(Value::R4(y));
    }
    let opts = ConvOptions::new_with_padding(
        c.strides,
        [(c.pads[0], c.pads[2]), (c.pads[1], c.pads[3])],
        c.dilations,
        c.groups,
    );
    // Training on the GPU: burn's convolution, with Graft's depthwise weight gradient.
    let y = gpu_train::depthwise_conv(&x, &weight, bias.as_ref(), c)
        .unwrap_or_else(|| conv2d(x, weight, bias, opts));
    one(activate(Value::R4(y), step.act, mode))
}

/// A 1x1 convolution and the depthwise convolution fused after it, in one pass of Graft's
/// CPU kernels (`fast_cpu::expand_depthwise`); `None` where those do not apply (the caller
/// then runs the two steps one after the other).
pub(super) fn expand_depthwise(
    steps: [&Step; 2],
    inputs: &[Option<Value>],
    layers: [Option<&LayerParams>; 2],
) -> Option<Value> {
    let [Some(LayerParams::Conv(p)), Some(LayerParams::Conv(q))] = layers else {
        return None;
    };
    let (Op::Conv(c), Op::Conv(d)) = (&steps[0].op, &steps[1].op) else {
        return None;
    };
    let Some(Value::R4(x)) = inputs.first()? else {
        return None;
    };
    let (w, b) = (p.weight.val(), p.bias.as_ref().map(|b| b.val()));
    let (dw, db) = (q.weight.val(), q.bias.as_ref().map(|b| b.val()));
    let step = |weight, bias, conv, step: &Step| fast_cpu::ConvStep {
        weight,
        bias,
        conv,
        act: step.act.unwrap_or(Act::NONE),
    };
    let y = fast_cpu::expand_depthwise(
        x,
        step(&w, b.as_ref(), c, steps[0]),
        &steps[0].packs,
        step(&dw, db.as_ref(), d, steps[1]),
    )?;
    Some(Value::R4(y))
}

/// A batch norm: batch statistics while training (unless frozen), running ones otherwise,
/// with the step's fused activation.
pub(super) fn batch_norm(
    step: &Step,
    (epsilon, momentum): (f32, f32),
    x: Value,
    layer: Option<&LayerParams>,
    mode: Mode,
) -> Res {
    let one = |v: Value| Ok(vec![v]);
    let Some(LayerParams::BatchNorm(p)) = layer else {
        return Err("batch norm without parameters".into());
    };

    let eps = epsilon as f64;
    // A frozen BatchNorm always uses its running statistics (Keras, MATLAB).
    if mode == Mode::Train && !step.frozen {
        let count = {
            let d = x.dims();
            d.iter().product::<usize>() / d[1].max(1)
        };
        let (gamma, beta) = (p.gamma.val(), p.beta.val());
        let (range, after) = clamp_part(step.act);
        // On the CPU, Graft's own op with the clamp fused (two passes each way);
        // elsewhere burn's, then the clamp.
        let (y, mean, var) = visit!(x, t => {
            match fast_cpu::train::batch_norm(&t, &gamma, &beta, eps, range) {
                Some((y, mean, var)) => (activate(lift_same(y), after, mode), mean, var),
                None => {
                    let r = batch_norm_train(t, gamma.clone(), beta.clone(), eps);
                    (activate(lift_same(r.output), step.act, mode), r.mean, r.variance)
                }
            }
        });
        update_running(p, [mean, var], count, momentum);
        one(y)
    } else {
        // `value_sync`: a validation between steps on the training thread sees the
        // latest step's update, not the one before.
        let (mean, var) = (p.running_mean.value_sync(), p.running_var.value_sync());
        let (gamma, beta) = (p.gamma.val(), p.beta.val());
        let (range, after) = clamp_part(step.act);
        let stats = [&gamma, &beta, &mean, &var];
        let fast =
            visit!(&x, t => fast_cpu::batch_norm_inference(t, stats, eps, range).map(lift_same));
        if let Some(y) = fast {
            return one(activate(y, after, mode));
        }
        let y = map!(x, t => module::batch_norm(t, p.gamma.val(), p.beta.val(), mean.clone(), var.clone(), eps));
        one(activate(y, step.act, mode))
    }
}

/// A batch norm's running statistics after a training step whose batch (`count` values a
/// channel) had `mean` and biased variance `var`. ONNX momentum m keeps m of the old
/// statistic; like PyTorch, the running variance takes the unbiased batch variance.
fn update_running(p: &BatchNormParams, [mean, var]: [Tensor<1>; 2], count: usize, momentum: f32) {
    let m = momentum as f64;
    let unbiased = var.mul_scalar(count as f64 / (count.max(2) - 1) as f64);
    p.running_mean.update(
        p.running_mean
            .value_sync()
            .mul_scalar(m)
            .add(mean.mul_scalar(1.0 - m))
            .detach(),
    );
    p.running_var.update(
        p.running_var
            .value_sync()
            .mul_scalar(m)
            .add(unbiased.mul_scalar(1.0 - m))
            .detach(),
    );
    // burn keeps an update per thread until a read on that same thread takes it in: the
    // forward pass runs on a CPU worker, and `write_back` reads on the caller's thread, which
    // saw the statistics one step behind (without a validation pass after it, the last
    // step's never reached an export). Taken in here, every thread reads this step's.
    let _ = (p.running_mean.value_sync(), p.running_var.value_sync());
}

/// A batch norm that learns and the depthwise or 1x1 convolution that alone reads it
/// (`fusion::fuse_norm_conv`), as Graft's one CPU training op
/// (`fast_cpu::train::norm_depthwise`, `norm_pointwise`); `None` where that does not apply
/// (evaluation mode, another device, a 1x1 whose kernels cannot map their input,
/// `pointwise::maps_input`), and
/// the caller runs the two steps one after the other.
pub(super) fn norm_conv(
    steps: [&Step; 2],
    inputs: &[Option<Value>],
    layers: [Option<&LayerParams>; 2],
    mode: Mode,
) -> Option<Value> {
    let [Some(LayerParams::BatchNorm(p)), Some(LayerParams::Conv(q))] = layers else {
        return None;
    };
    let (Op::BatchNorm { epsilon, momentum }, Op::Conv(c)) = (&steps[0].op, &steps[1].op) else {
        return None;
    };
    if mode != Mode::Train || steps[0].frozen || steps[1].act.is_some() {
        return None;
    }
    let ((lo, hi), None) = clamp_part(steps[0].act) else {
        return None;
    };
    let Some(Value::R4(x)) = inputs.first()? else {
        return None;
    };
    let (gamma, beta) = (p.gamma.val(), p.beta.val());
    let (weight, bias) = (q.weight.val(), q.bias.as_ref().map(|b| b.val()));
    let norm = fast_cpu::train::BatchNormArgs {
        gamma: &gamma,
        beta: &beta,
        epsilon: *epsilon as f64,
        clamp: (lo, hi),
    };
    let (y, mean, var) = fast_cpu::train::norm_depthwise(x, norm, &weight, bias.as_ref(), c)
        .or_else(|| fast_cpu::train::norm_pointwise(x, norm, &weight, bias.as_ref(), c))?;
    let [n, _, h, w] = x.dims();
    update_running(p, [mean, var], n * h * w, *momentum);
    Some(Value::R4(y))
}

/// A step's fused activation as its own pass (where no kernel applied it).
pub(super) fn activate(y: Value, act: Option<Act>, mode: Mode) -> Value {
    match act {
        None => y,
        Some(Act::Clamp(lo, hi)) => clamp(y, lo, hi, mode),
        Some(Act::Silu) => map!(y, t => fast_cpu::silu(t)),
    }
}

/// A step's fused activation split into the clamp a batch-norm kernel applies itself and
/// what is left to [`activate`] after it (SiLU).
fn clamp_part(act: Option<Act>) -> ((f32, f32), Option<Act>) {
    match act {
        Some(Act::Clamp(lo, hi)) => ((lo, hi), None),
        other => ((f32::NEG_INFINITY, f32::INFINITY), other),
    }
}

/// `min(max(x, lo), hi)` (Clip, ReLU, ReLU6, and clamps fused into a step). Inference on
/// the CPU: one in-place pass, where flex's own `clamp` is a scalar loop. Training on the
/// CPU: one autodiff op, one pass each way. Elsewhere: ReLU as burn's relu (a one-pass
/// backward) and an upper bound as `clamp_max`, where `clamp_min` would be a comparison plus
/// a masked fill forward and backward.
pub(super) fn clamp(x: Value, lo: f32, hi: f32, mode: Mode) -> Value {
    if mode == Mode::Inference && lo > f32::NEG_INFINITY && hi < f32::INFINITY {
        return map!(x, t => fast_cpu::clamp(t, lo, hi));
    }
    map!(x, t => fast_cpu::train::clamp(t, lo, hi, |t| burn_clamp(t, lo, hi)))
}

fn burn_clamp<const D: usize>(t: Tensor<D>, lo: f32, hi: f32) -> Tensor<D> {
    let t = if lo == 0.0 {
        act::relu(t)
    } else if lo > f32::NEG_INFINITY {
        t.clamp_min(lo)
    } else {
        t
    };
    if hi < f32::INFINITY {
        t.clamp_max(hi)
    } else {
        t
    }
}

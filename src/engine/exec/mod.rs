//! What each op computes, on burn tensors. The layers with parameters and a fused
//! activation (convolution, batch norm) are in `layers.rs`.

mod joined;
mod layers;

pub use joined::{Part, run_joined};

use layers::clamp;

use super::fast_cpu;
use super::params::LayerParams;
use super::value::{Value, map, visit, zip};
use super::{Mode, Step, profile};
use crate::graph::{
    Binary, Nary, Op, PadMode, Reduce, ResizeMode, Unary, norm_axis, reshape_shape, resized,
    slice_range,
};
use burn::tensor::activation as act;
use burn::tensor::module::{avg_pool2d, interpolate, layer_norm, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, InterpolateMode, InterpolateOptions, MaxPoolOptions};
use burn::tensor::{Distribution, Int, Slice, Tensor, TensorData};
use std::time::Instant;

type Res = Result<Vec<Value>, String>;

/// A step and the one fused after it (`Step::then`): in one pass where Graft's CPU kernels
/// can (`layers::expand_depthwise` in inference, `layers::norm_conv` in training), else
/// one after the other. Under `GRAFT_PROFILE` the pair
/// is timed here (the plan's loop leaves it): as one fused step, or as its two steps, each
/// under its own node, when they ran apart (at batch 1 most pairs do, `fast_cpu::fused::pays`).
pub fn run_pair(
    [first, second]: [&Step; 2],
    inputs: Vec<Option<Value>>,
    [layer, next_layer]: [Option<&LayerParams>; 2],
    mode: Mode,
) -> Res {
    let started = profile::enabled().then(Instant::now);
    let fused = match first.op {
        Op::BatchNorm { .. } => {
            layers::norm_conv([first, second], &inputs, [layer, next_layer], mode)
        }
        _ => layers::expand_depthwise([first, second], &inputs, [layer, next_layer]),
    };
    if let Some(y) = fused {
        let outs = vec![y];
        if let Some(t) = started {
            profile::record(first, &outs, t, true);
        }
        return Ok(outs);
    }
    let mid = run(first, inputs, layer, mode)?;
    if let Some(t) = started {
        profile::record(first, &mid, t, false);
    }
    let started = profile::enabled().then(Instant::now);
    let mut next_inputs = vec![None; second.inputs.len()];
    next_inputs[0] = mid.into_iter().next();
    let outs = run(second, next_inputs, next_layer, mode)?;
    if let Some(t) = started {
        profile::record(second, &outs, t, false);
    }
    Ok(outs)
}

pub fn run(
    step: &Step,
    mut inputs: Vec<Option<Value>>,
    layer: Option<&LayerParams>,
    mode: Mode,
) -> Res {
    let mut take = |i: usize| -> Result<Value, String> {
        inputs
            .get_mut(i)
            .and_then(Option::take)
            .ok_or_else(|| format!("input {i} is missing"))
    };
    let one = |v: Value| Ok(vec![v]);
    match &step.op {
        Op::Conv(c) => layers::conv(step, c, take(0)?, layer, mode),
        Op::BatchNorm { epsilon, momentum } => {
            layers::batch_norm(step, (*epsilon, *momentum), take(0)?, layer, mode)
        }
        Op::LayerNorm { axis, epsilon } => {
            let Some(LayerParams::Norm(p)) = layer else {
                return Err("layer norm without parameters".into());
            };
            let x = take(0)?;
            let dims = x.dims();
            let a = norm_axis(*axis, dims.len())?;
            let inner: usize = dims[a..].iter().product();
            let outer: usize = dims[..a].iter().product();
            let y = layer_norm(
                x.reshape(&[outer, inner]).into_r2()?,
                p.scale.val(),
                p.bias.as_ref().map(|b| b.val()),
                *epsilon as f64,
            );
            one(Value::R2(y).reshape(&dims))
        }
        Op::Lrn {
            size,
            alpha,
            beta,
            bias,
        } => {
            let x = take(0)?.into_r4()?;
            let [n, c, h, w] = x.dims();
            // Mean of squares over a window of channels, as a [size, 1] average pool.
            let sq = x.clone().square().reshape([n, 1, c, h * w]);
            let pad_begin = (size - 1) / 2;
            let pad_end = size - 1 - pad_begin;
            let opts = AvgPoolOptions::new([*size, 1])
                .with_stride([1, 1])
                .with_padding_pairs([(pad_begin, pad_end), (0, 0)])
                .with_count_include_pad(true);
            let mean = avg_pool2d(sq, opts).reshape([n, c, h, w]);
            let denom = mean.mul_scalar(*alpha).add_scalar(*bias).powf_scalar(*beta);
            one(Value::R4(x.div(denom)))
        }
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => {
            let a = take(0)?.into_r2()?;
            let a = if *trans_a { a.transpose() } else { a };
            let (mut y, has_bias) = match layer {
                Some(LayerParams::Dense(p))
                    if *trans_b
                        && let Some(y) = fast_cpu::linear(
                            &a,
                            &p.weight.val(),
                            p.bias.as_ref().map(|b| b.val()).as_ref(),
                            *alpha,
                            *beta,
                        ) =>
                {
                    (y, p.bias.is_some())
                }
                Some(LayerParams::Dense(p)) => {
                    let w = p.weight.val();
                    let w = if *trans_b { w.transpose() } else { w };
                    let mut y = a.matmul(w);
                    if *alpha != 1.0 {
                        y = y.mul_scalar(*alpha);
                    }
                    if let Some(b) = &p.bias {
                        y = y.add(b.val().mul_scalar(*beta).unsqueeze::<2>());
                    }
                    (y, p.bias.is_some())
                }
                _ => {
                    let b = take(1)?.into_r2()?;
                    let b = if *trans_b { b.transpose() } else { b };
                    (a.matmul(b).mul_scalar(*alpha), false)
                }
            };
            if !has_bias && let Ok(c) = take(2) {
                let c = c.lift(2).into_r2()?;
                y = y.add(c.mul_scalar(*beta));
            }
            one(Value::R2(y))
        }
        Op::MatMul => {
            let a = take(0)?;
            match layer {
                Some(LayerParams::Dense(p)) => {
                    // x [..., K] · W [K, N]: flatten the leading axes into one.
                    let dims = a.dims();
                    let k = *dims.last().unwrap_or(&1);
                    let rows = dims.iter().product::<usize>() / k.max(1);
                    let y = a.reshape(&[rows, k]).into_r2()?.matmul(p.weight.val());
                    let mut out = dims.clone();
                    *out.last_mut().unwrap_or(&mut 0) = y.dims()[1];
                    one(Value::R2(y).reshape(&out))
                }
                _ => {
                    let b = take(1)?;
                    one(matmul(a, b)?)
                }
            }
        }
        Op::Unary(u) => {
            let x = take(0)?;
            one(match u {
                Unary::Relu => clamp(x, 0.0, f32::INFINITY, mode),
                Unary::Sigmoid => map!(x, t => fast_cpu::sigmoid(t)),
                Unary::Tanh => map!(x, t => t.tanh()),
                Unary::Erf => map!(x, t => t.erf()),
                Unary::Sqrt => map!(x, t => t.sqrt()),
                Unary::Exp => map!(x, t => t.exp()),
                Unary::Log => map!(x, t => t.log()),
                Unary::Abs => map!(x, t => t.abs()),
                Unary::Neg => map!(x, t => t.neg()),
                Unary::Reciprocal => map!(x, t => t.recip()),
                Unary::Floor => map!(x, t => t.floor()),
                Unary::Ceil => map!(x, t => t.ceil()),
                Unary::HardSwish => map!(x, t => act::hard_swish(t)),
                Unary::Softplus => map!(x, t => act::softplus(t, 1.0)),
                Unary::Silu => map!(x, t => fast_cpu::silu(t)),
                Unary::Mish => map!(x, t => act::mish(t)),
                Unary::Sin => map!(x, t => t.sin()),
                Unary::Cos => map!(x, t => t.cos()),
                Unary::Sign => map!(x, t => t.sign()),
                Unary::Round => map!(x, t => t.round()),
                Unary::Softsign => map!(x, t => t.clone().div(t.abs().add_scalar(1.0))),
            })
        }
        Op::LeakyRelu { alpha } => one(map!(take(0)?, t => act::leaky_relu(t, *alpha as f64))),
        Op::Elu { alpha } => one(map!(take(0)?, t => act::elu(t, *alpha as f64))),
        Op::HardSigmoid { alpha, beta } => {
            one(map!(take(0)?, t => act::hard_sigmoid(t, *alpha as f64, *beta as f64)))
        }
        Op::Clip { min, max } => one(clamp(
            take(0)?,
            min.unwrap_or(f32::NEG_INFINITY),
            max.unwrap_or(f32::INFINITY),
            mode,
        )),
        Op::Gelu { tanh } => {
            let x = take(0)?;
            one(if *tanh {
                map!(x, t => act::gelu_approximate(t))
            } else {
                map!(x, t => act::gelu(t))
            })
        }
        Op::Binary(b) => {
            let (x, y) = (take(0)?, take(1)?);
            let r = x.rank().max(y.rank());
            let (x, y) = (x.lift(r), y.lift(r));
            one(match b {
                Binary::Add => zip!(x, y, (p, q) => p.add(q)),
                Binary::Sub => zip!(x, y, (p, q) => p.sub(q)),
                Binary::Mul => zip!(x, y, (p, q) => p.mul(q)),
                Binary::Div => zip!(x, y, (p, q) => p.div(q)),
                Binary::Pow => zip!(x, y, (p, q) => pow(p, q)),
            })
        }
        Op::Nary(n) => {
            let values: Vec<Value> = inputs.into_iter().flatten().collect();
            let count = values.len();
            let r = values.iter().map(Value::rank).max().unwrap_or(1);
            let mut it = values.into_iter().map(|v| v.lift(r));
            let mut acc = it.next().ok_or("no inputs")?;
            for v in it {
                acc = match n {
                    Nary::Sum | Nary::Mean => zip!(acc, v, (p, q) => p.add(q)),
                    Nary::Max => {
                        zip!(acc, v, (p, q) => { let s = broadcast_dims(&p.dims(), &q.dims()); p.expand(s).max_pair(q.expand(s)) })
                    }
                    Nary::Min => {
                        zip!(acc, v, (p, q) => { let s = broadcast_dims(&p.dims(), &q.dims()); p.expand(s).min_pair(q.expand(s)) })
                    }
                };
            }
            if *n == Nary::Mean {
                acc = map!(acc, t => t.div_scalar(count as f32));
            }
            one(acc)
        }
        Op::MaxPool(p) => {
            let x = take(0)?.into_r4()?;
            if let Some(y) = fast_cpu::pool(&x, p, fast_cpu::PoolKind::Max) {
                return one(Value::R4(y));
            }
            let opts = MaxPoolOptions::new(p.kernel)
                .with_stride(p.strides)
                .with_padding_pairs([(p.pads[0], p.pads[2]), (p.pads[1], p.pads[3])])
                .with_dilation(p.dilations)
                .with_ceil_mode(p.ceil_mode);
            one(Value::R4(max_pool2d(x, opts)))
        }
        Op::AveragePool {
            pool: p,
            count_include_pad,
        } => {
            let x = take(0)?.into_r4()?;
            let kind = fast_cpu::PoolKind::Average {
                count_include_pad: *count_include_pad,
            };
            if let Some(y) = fast_cpu::pool(&x, p, kind) {
                return one(Value::R4(y));
            }
            let opts = AvgPoolOptions::new(p.kernel)
                .with_stride(p.strides)
                .with_padding_pairs([(p.pads[0], p.pads[2]), (p.pads[1], p.pads[3])])
                .with_count_include_pad(*count_include_pad)
                .with_ceil_mode(p.ceil_mode);
            one(Value::R4(avg_pool2d(x, opts)))
        }
        Op::GlobalAveragePool | Op::GlobalMaxPool => {
            let x = take(0)?;
            let kind = match step.op {
                Op::GlobalMaxPool => fast_cpu::PoolKind::Max,
                _ => fast_cpu::PoolKind::Average {
                    count_include_pad: false,
                },
            };
            if let Some(y) = visit!(&x, t => fast_cpu::global_pool(t, kind).map(lift_same)) {
                return one(y);
            }
            let axes: Vec<usize> = (2..x.rank()).collect();
            one(if matches!(step.op, Op::GlobalAveragePool) {
                map!(x, t => t.mean_dims(&axes))
            } else {
                map!(x, t => t.max_dims(&axes))
            })
        }
        Op::Reduce {
            kind,
            axes,
            keepdims,
        } => {
            let x = take(0)?;
            let dims = x.dims();
            let axes: Vec<usize> = if axes.is_empty() {
                (0..dims.len()).collect()
            } else {
                axes.iter()
                    .map(|&a| norm_axis(a, dims.len()))
                    .collect::<Result<_, _>>()?
            };
            // A mean or max over every axis after the second (ShuffleNet-v2's head) is a
            // global pooling.
            let mut sorted = axes.clone();
            sorted.sort_unstable();
            let trailing = dims.len() >= 3 && sorted.into_iter().eq(2..dims.len());
            let pooled = match kind {
                Reduce::Mean if trailing => Some(fast_cpu::PoolKind::Average {
                    count_include_pad: false,
                }),
                Reduce::Max if trailing => Some(fast_cpu::PoolKind::Max),
                _ => None,
            }
            .and_then(|kind| visit!(&x, t => fast_cpu::global_pool(t, kind).map(lift_same)));
            let y = match pooled {
                Some(y) => y,
                None => match kind {
                    Reduce::Mean => map!(x, t => t.mean_dims(&axes)),
                    Reduce::Sum => map!(x, t => t.sum_dims(&axes)),
                    Reduce::Max => map!(x, t => t.max_dims(&axes)),
                    Reduce::Min => map!(x, t => t.min_dims(&axes)),
                    Reduce::Prod => map!(x, t => t.prod_dims(&axes)),
                    Reduce::L1 => map!(x, t => t.abs().sum_dims(&axes)),
                    Reduce::L2 => map!(x, t => t.square().sum_dims(&axes).sqrt()),
                    Reduce::SumSquare => map!(x, t => t.square().sum_dims(&axes)),
                    Reduce::LogSumExp => map!(x, t => {
                        let m = t.clone().max_dims(&axes).detach();
                        t.sub(m.clone()).exp().sum_dims(&axes).log().add(m)
                    }),
                },
            };
            if *keepdims {
                one(y)
            } else {
                let out: Vec<usize> = dims
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !axes.contains(i))
                    .map(|(_, &d)| d)
                    .collect();
                one(y.reshape(&out))
            }
        }
        Op::Softmax { axis, legacy } | Op::LogSoftmax { axis, legacy } => {
            let x = take(0)?;
            let dims = x.dims();
            let a = norm_axis(*axis, dims.len())?;
            let log = matches!(step.op, Op::LogSoftmax { .. });
            let f = |v: Value, a: usize| {
                if log {
                    map!(v, t => act::log_softmax(t, a))
                } else {
                    map!(v, t => act::softmax(t, a))
                }
            };
            if *legacy && a + 1 != dims.len() {
                // Opset < 13: the input is coerced to 2-D at `axis`.
                let outer: usize = dims[..a].iter().product();
                let y = f(x.reshape(&[outer, dims[a..].iter().product()]), 1);
                one(y.reshape(&dims))
            } else {
                one(f(x, a))
            }
        }
        Op::Concat { axis } => {
            let values: Vec<Value> = inputs.into_iter().flatten().collect();
            let r = values.iter().map(Value::rank).max().unwrap_or(1);
            let a = norm_axis(*axis, r)?;
            macro_rules! cat {
                ($V:ident) => {{
                    let parts = values
                        .into_iter()
                        .map(|v| match v {
                            Value::$V(t) => Ok(t),
                            o => Err(format!("concat of ranks {} and {}", o.rank(), r)),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Value::$V(fast_cpu::concat(&parts, a).unwrap_or_else(|| Tensor::cat(parts, a)))
                }};
            }
            one(match r {
                1 => cat!(R1),
                2 => cat!(R2),
                3 => cat!(R3),
                4 => cat!(R4),
                5 => cat!(R5),
                _ => cat!(R6),
            })
        }
        Op::Split { axis, sizes } => {
            let x = take(0)?;
            let a = norm_axis(*axis, x.rank())?;
            Ok(match x {
                Value::R1(t) => t
                    .split_with_sizes(sizes.clone(), a)
                    .into_iter()
                    .map(Value::R1)
                    .collect(),
                Value::R2(t) => t
                    .split_with_sizes(sizes.clone(), a)
                    .into_iter()
                    .map(Value::R2)
                    .collect(),
                Value::R3(t) => t
                    .split_with_sizes(sizes.clone(), a)
                    .into_iter()
                    .map(Value::R3)
                    .collect(),
                Value::R4(t) => t
                    .split_with_sizes(sizes.clone(), a)
                    .into_iter()
                    .map(Value::R4)
                    .collect(),
                Value::R5(t) => t
                    .split_with_sizes(sizes.clone(), a)
                    .into_iter()
                    .map(Value::R5)
                    .collect(),
                Value::R6(t) => t
                    .split_with_sizes(sizes.clone(), a)
                    .into_iter()
                    .map(Value::R6)
                    .collect(),
            })
        }
        Op::Slice {
            starts,
            ends,
            axes,
            steps,
        } => {
            let x = take(0)?;
            let dims = x.dims();
            let mut slices: Vec<Slice> = dims.iter().map(|_| Slice::full()).collect();
            for (k, &ax) in axes.iter().enumerate() {
                let a = norm_axis(ax, dims.len())?;
                let (first, step_, count) = slice_range(dims[a], starts[k], ends[k], steps[k])?;
                if count == 0 {
                    return Err("a slice with no elements".into());
                }
                slices[a] = if step_ > 0 {
                    Slice::new(
                        first as isize,
                        Some((first + step_ * (count as i64 - 1) + 1) as isize),
                        step_ as isize,
                    )
                } else {
                    // burn walks a negative step backwards from the end of the range.
                    let low = first + step_ * (count as i64 - 1);
                    Slice::new(low as isize, Some(first as isize + 1), step_ as isize)
                };
            }
            one(map!(x, t => t.slice(slices.as_slice())))
        }
        Op::Gather {
            axis,
            indices,
            scalar,
        } => {
            let x = take(0)?;
            let dims = x.dims();
            let a = norm_axis(*axis, dims.len())?;
            let idx: Vec<i64> = indices
                .iter()
                .map(|&i| if i < 0 { i + dims[a] as i64 } else { i })
                .collect();
            let device = x.device();
            let n = idx.len();
            let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [n]), &device);
            let y = map!(x, t => t.select(a, idx.clone()));
            if *scalar {
                let mut out = dims.clone();
                out.remove(a);
                one(y.reshape(&out))
            } else {
                one(y)
            }
        }
        Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Identity => {
            let x = take(0)?;
            let dims = x.dims();
            let out = match &step.op {
                Op::Flatten { axis } => {
                    let a = if *axis < 0 {
                        norm_axis(*axis, dims.len())?
                    } else {
                        (*axis as usize).min(dims.len())
                    };
                    vec![dims[..a].iter().product(), dims[a..].iter().product()]
                }
                Op::Reshape { shape, allowzero } => reshape_shape(&dims, shape, *allowzero)?,
                Op::Identity => return one(x),
                op => op.infer_shapes(&[Some(&dims)], 1)?.remove(0),
            };
            if out.len() > super::value::MAX_RANK {
                return Err(format!("rank {} is above Graft's limit of 6", out.len()));
            }
            let x = map!(x, t => fast_cpu::reshapeable(t, &out));
            one(x.reshape(&out))
        }
        Op::Transpose { perm } => {
            let x = take(0)?;
            macro_rules! perm {
                ($t:ident, $n:literal) => {{
                    let mut p = [0usize; $n];
                    p.copy_from_slice(perm);
                    $t.permute(p)
                }};
            }
            one(match x {
                Value::R1(t) => Value::R1(t),
                Value::R2(t) => Value::R2(perm!(t, 2)),
                Value::R3(t) => Value::R3(perm!(t, 3)),
                Value::R4(t) => Value::R4(perm!(t, 4)),
                Value::R5(t) => Value::R5(perm!(t, 5)),
                Value::R6(t) => Value::R6(perm!(t, 6)),
            })
        }
        Op::Expand { shape } => {
            let x = take(0)?;
            let target: Vec<usize> = shape.iter().map(|&d| d.max(1) as usize).collect();
            let out = crate::graph::broadcast(&x.dims(), &target)?;
            let x = x.lift(out.len());
            one(expand(x, &out))
        }
        Op::Pad { pads, mode } => {
            let x = take(0)?;
            let dims = x.dims();
            let r = dims.len();
            let pairs: Vec<(usize, usize)> = (0..r)
                .map(|i| (pads[i].max(0) as usize, pads[i + r].max(0) as usize))
                .collect();
            let burn_mode = match mode {
                PadMode::Constant(v) => burn::tensor::ops::PadMode::Constant(*v),
                PadMode::Reflect => burn::tensor::ops::PadMode::Reflect,
                PadMode::Edge => burn::tensor::ops::PadMode::Edge,
            };
            let mut y = if pairs.iter().any(|&(a, b)| a + b > 0) {
                map!(x, t => t.pad(pairs.clone(), burn_mode))
            } else {
                x
            };
            // Negative pads crop.
            if pads.iter().any(|&p| p < 0) {
                let d = y.dims();
                let slices: Vec<Slice> = (0..r)
                    .map(|i| {
                        let begin = (-pads[i]).max(0) as isize;
                        let end = d[i] as isize - (-pads[i + r]).max(0) as isize;
                        Slice::new(begin, Some(end), 1)
                    })
                    .collect();
                y = map!(y, t => t.slice(slices.as_slice()));
            }
            one(y)
        }
        Op::Resize { scales, mode } => {
            let x = take(0)?.into_r4()?;
            let [_, _, h, w] = x.dims();
            let size = [resized(h, scales[0]), resized(w, scales[1])];
            let options = match mode {
                // burn's nearest samples floor(out × in / out_size): ONNX's asymmetric/floor.
                ResizeMode::Nearest => InterpolateOptions::new(InterpolateMode::Nearest),
                ResizeMode::Linear { align_corners } => {
                    InterpolateOptions::new(InterpolateMode::Bilinear)
                        .with_align_corners(*align_corners)
                }
            };
            one(Value::R4(interpolate(x, options.with_output_size(size))))
        }
        Op::Dropout { ratio } => {
            let x = take(0)?;
            if mode == Mode::Train && *ratio > 0.0 {
                let keep = 1.0 - *ratio as f64;
                one(map!(x, t => {
                    let mask = t.random_like(Distribution::Bernoulli(keep));
                    t.mul(mask).div_scalar(keep)
                }))
            } else {
                one(x)
            }
        }
        Op::Unsupported { op_type, .. } => Err(format!("{op_type} is not supported")),
    }
}

fn broadcast_dims<const D: usize>(a: &[usize; D], b: &[usize; D]) -> [usize; D] {
    let mut out = [0; D];
    for i in 0..D {
        out[i] = a[i].max(b[i]);
    }
    out
}

fn pow<const D: usize>(p: Tensor<D>, q: Tensor<D>) -> Tensor<D> {
    // The common case (ConvNeXt's decomposed LayerNorm): a constant exponent of 2.
    if q.dims().iter().all(|&d| d == 1)
        && let Ok(v) = q.to_data().convert::<f32>().try_to_vec::<f32>()
        && v.len() == 1
    {
        return if v[0] == 2.0 {
            p.square()
        } else {
            p.powf_scalar(v[0])
        };
    }
    let s = broadcast_dims(&p.dims(), &q.dims());
    p.expand(s).powf(q.expand(s))
}

/// Rank-preserving helper used with `visit!` where the tensor type is generic.
fn lift_same<const D: usize>(t: Tensor<D>) -> Value {
    Value::from_tensor(t)
}

fn expand(x: Value, out: &[usize]) -> Value {
    macro_rules! e {
        ($t:ident, $n:literal, $V:ident) => {{
            let mut s = [0usize; $n];
            s.copy_from_slice(out);
            Value::$V($t.expand(s))
        }};
    }
    match x {
        Value::R1(t) => e!(t, 1, R1),
        Value::R2(t) => e!(t, 2, R2),
        Value::R3(t) => e!(t, 3, R3),
        Value::R4(t) => e!(t, 4, R4),
        Value::R5(t) => e!(t, 5, R5),
        Value::R6(t) => e!(t, 6, R6),
    }
}

/// NumPy matmul between two activations.
fn matmul(a: Value, b: Value) -> Result<Value, String> {
    let (da, db) = (a.dims(), b.dims());
    let out = crate::graph::matmul_shape(&da, &db)?;
    let a = if da.len() == 1 {
        a.reshape(&[1, da[0]])
    } else {
        a
    };
    let b = if db.len() == 1 {
        b.reshape(&[db[0], 1])
    } else {
        b
    };
    let r = a.rank().max(b.rank());
    let (a, b) = (a.lift(r), b.lift(r));
    // Broadcast the batch axes explicitly.
    let (ea, eb) = (a.dims(), b.dims());
    let batch = crate::graph::broadcast(&ea[..r - 2], &eb[..r - 2])?;
    let mut sa = batch.clone();
    sa.extend_from_slice(&ea[r - 2..]);
    let mut sb = batch;
    sb.extend_from_slice(&eb[r - 2..]);
    let (a, b) = (expand(a, &sa), expand(b, &sb));
    let y = zip!(a, b, (p, q) => p.matmul(q));
    Ok(y.reshape(&out))
}

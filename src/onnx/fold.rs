//! Import-time evaluation of the ops whose inputs are all constants.
//!
//! PyTorch wraps `view`/`flatten`/`chunk` and TF-style padding in chains of Shape, Gather,
//! Unsqueeze, Concat, Slice and arithmetic on integers. Graft evaluates those chains when the
//! file is opened and folds their results into the attributes of the node they feed, so the
//! engine only ever runs float ops on activations.

use super::attrs::Attrs;
use super::tensor::{HostData, HostTensor, dtype};
use crate::graph::{broadcast, norm_axis, reshape_shape, slice_range};

type Out = Result<Vec<HostTensor>, String>;

/// Evaluates `op_type` on constant inputs; `None` if Graft does not fold this op.
pub fn eval(
    op_type: &str,
    attrs: &Attrs,
    inputs: &[Option<&HostTensor>],
    opset: i64,
) -> Option<Out> {
    let input = |i: usize| -> Result<&HostTensor, String> {
        inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| format!("input {i} is missing"))
    };
    let one = |t: HostTensor| Ok(vec![t]);
    let result = match op_type {
        "Identity" => input(0).cloned().map(|t| vec![t]),
        "Cast" => input(0).and_then(|x| {
            let to = attrs.int("to", dtype::FLOAT as i64) as i32;
            if dtype::is_float(to) {
                one(HostTensor::f32(x.shape.clone(), x.to_f32()))
            } else {
                one(HostTensor::i64(x.shape.clone(), x.to_i64()))
            }
        }),
        "Size" => input(0).and_then(|x| one(HostTensor::i64(vec![], vec![x.len() as i64]))),
        // Quantised weights (QDQ form): (x − zero point) × scale, per tensor or per channel.
        "DequantizeLinear" => (|| {
            let (x, scale) = (input(0)?, input(1)?);
            let zero = inputs.get(2).copied().flatten().map(HostTensor::to_f32);
            dequantize(x, &scale.to_f32(), zero.as_deref(), attrs.int("axis", 1)).map(|t| vec![t])
        })(),
        "Gather" => input(0).and_then(|x| {
            let idx = input(1)?;
            gather(x, idx, attrs.int("axis", 0)).map(|t| vec![t])
        }),
        "Unsqueeze" => input(0).and_then(|x| {
            let axes = axes_arg(attrs, inputs, opset, 13)?.unwrap_or_default();
            let r = x.shape.len() + axes.len();
            let axes: Vec<usize> = axes
                .iter()
                .map(|&a| norm_axis(a, r))
                .collect::<Result<_, _>>()?;
            let mut it = x.shape.iter();
            let shape = (0..r)
                .map(|i| {
                    if axes.contains(&i) {
                        1
                    } else {
                        *it.next().unwrap_or(&1)
                    }
                })
                .collect();
            one(with_shape(x, shape))
        }),
        "Squeeze" => input(0).and_then(|x| {
            let axes = axes_arg(attrs, inputs, opset, 13)?;
            let r = x.shape.len();
            let axes: Vec<usize> = match axes {
                Some(a) if !a.is_empty() => a
                    .iter()
                    .map(|&a| norm_axis(a, r))
                    .collect::<Result<_, _>>()?,
                _ => (0..r).filter(|&i| x.shape[i] == 1).collect(),
            };
            let shape = x
                .shape
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect();
            one(with_shape(x, shape))
        }),
        "Reshape" => input(0).and_then(|x| {
            let target = input(1)?.to_i64();
            let shape = reshape_shape(&x.shape, &target, attrs.int("allowzero", 0) != 0)?;
            one(with_shape(x, shape))
        }),
        "Flatten" => input(0).and_then(|x| {
            let a = attrs.int("axis", 1);
            let a = if a < 0 {
                norm_axis(a, x.shape.len())?
            } else {
                (a as usize).min(x.shape.len())
            };
            one(with_shape(
                x,
                vec![x.shape[..a].iter().product(), x.shape[a..].iter().product()],
            ))
        }),
        "Concat" => {
            let parts: Vec<&HostTensor> = inputs.iter().flatten().copied().collect();
            concat(&parts, attrs.int("axis", 0)).map(|t| vec![t])
        }
        "Slice" => input(0).and_then(|x| {
            let (starts, ends, axes, steps) = if opset < 10 {
                let starts = attrs.ints("starts").unwrap_or_default();
                let axes = attrs
                    .ints("axes")
                    .unwrap_or_else(|| (0..starts.len() as i64).collect());
                (
                    starts.clone(),
                    attrs.ints("ends").unwrap_or_default(),
                    axes,
                    vec![1; starts.len()],
                )
            } else {
                let starts = input(1)?.to_i64();
                let ends = input(2)?.to_i64();
                let axes = inputs
                    .get(3)
                    .copied()
                    .flatten()
                    .map(HostTensor::to_i64)
                    .unwrap_or_else(|| (0..starts.len() as i64).collect());
                let steps = inputs
                    .get(4)
                    .copied()
                    .flatten()
                    .map(HostTensor::to_i64)
                    .unwrap_or_else(|| vec![1; starts.len()]);
                (starts, ends, axes, steps)
            };
            slice(x, &starts, &ends, &axes, &steps).map(|t| vec![t])
        }),
        "Transpose" => input(0).and_then(|x| {
            let perm: Vec<usize> = attrs
                .ints("perm")
                .map(|p| p.iter().map(|&v| v as usize).collect())
                .unwrap_or_else(|| (0..x.shape.len()).rev().collect());
            transpose(x, &perm).map(|t| vec![t])
        }),
        "ConstantOfShape" => input(0).and_then(|s| {
            let shape: Vec<usize> = s.to_i64().iter().map(|&d| d.max(0) as usize).collect();
            // Converted files (the onnx package's light models) make whole weight tensors
            // this way: VGG's first dense layer holds 103 M values. 1 GiB of f32 at most.
            let n = crate::weights::numel(&shape)
                .filter(|&n| n <= 1 << 28)
                .ok_or_else(|| format!("shape {shape:?} is too large (at most 2^28 values)"))?;
            let value = match attrs.tensor("value") {
                Some(t) => t?,
                None => HostTensor::f32(vec![1], vec![0.0]),
            };
            one(match value.data {
                HostData::F32(v) => {
                    HostTensor::f32(shape, vec![v.first().copied().unwrap_or(0.0); n])
                }
                HostData::I64(v) => {
                    HostTensor::i64(shape, vec![v.first().copied().unwrap_or(0); n])
                }
            })
        }),
        "Range" => (|| {
            let (s, l, d) = (input(0)?, input(1)?, input(2)?);
            let not_scalar = || "start, limit and delta must each hold one value".to_string();
            if s.is_float() {
                let f = |t: &HostTensor| t.scalar_f32().ok_or_else(not_scalar);
                let (s, l, d) = (f(s)?, f(l)?, f(d)?);
                // A zero delta gives an infinite count (refused below), a NaN one none.
                let n = ((l - s) / d).ceil().max(0.0) as usize;
                if n > 1 << 24 {
                    return Err("range too long".to_string());
                }
                one(HostTensor::f32(
                    vec![n],
                    (0..n).map(|i| s + i as f32 * d).collect(),
                ))
            } else {
                let i = |t: &HostTensor| t.scalar_i64().ok_or_else(not_scalar);
                let (s, l, d) = (i(s)?, i(l)?, i(d)?);
                if d == 0 {
                    return Err("range step 0".to_string());
                }
                // In i128: limit − start of two i64 cannot overflow there.
                let n = ((l as i128 - s as i128) as f64 / d as f64).ceil().max(0.0) as usize;
                if n > 1 << 24 {
                    return Err("range too long".to_string());
                }
                let values = (0..n as i64)
                    .map(|k| k.checked_mul(d).and_then(|v| v.checked_add(s)))
                    .collect::<Option<Vec<i64>>>()
                    .ok_or("range values overflow 64-bit integers")?;
                one(HostTensor::i64(vec![n], values))
            }
        })(),
        "Expand" => input(0).and_then(|x| {
            let target: Vec<usize> = input(1)?
                .to_i64()
                .iter()
                .map(|&d| d.max(0) as usize)
                .collect();
            let shape = broadcast(&x.shape, &target)?;
            let map = broadcast_map(&x.shape, &shape);
            one(pick(x, shape, &map))
        }),
        "Where" => (|| {
            let (c, a, b) = (input(0)?, input(1)?, input(2)?);
            let shape = broadcast(&broadcast(&c.shape, &a.shape)?, &b.shape)?;
            let (mc, ma, mb) = (
                broadcast_map(&c.shape, &shape),
                broadcast_map(&a.shape, &shape),
                broadcast_map(&b.shape, &shape),
            );
            let cond = c.to_i64();
            one(match (&a.data, &b.data) {
                (HostData::I64(x), HostData::I64(y)) => HostTensor::i64(
                    shape,
                    (0..mc.len())
                        .map(|i| if cond[mc[i]] != 0 { x[ma[i]] } else { y[mb[i]] })
                        .collect(),
                ),
                _ => {
                    let (x, y) = (a.to_f32(), b.to_f32());
                    HostTensor::f32(
                        shape,
                        (0..mc.len())
                            .map(|i| if cond[mc[i]] != 0 { x[ma[i]] } else { y[mb[i]] })
                            .collect(),
                    )
                }
            })
        })(),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Mod" | "Equal" | "Less"
        | "Greater" | "And" | "Or" => (|| one(binary(op_type, input(0)?, input(1)?)?))(),
        "Neg" | "Abs" | "Sqrt" | "Floor" | "Ceil" | "Not" | "Reciprocal" | "Exp" | "Relu" => {
            input(0).and_then(|x| one(unary(op_type, x)))
        }
        "ReduceProd" | "ReduceSum" | "ReduceMax" | "ReduceMin" => input(0).and_then(|x| {
            let axes = if op_type == "ReduceSum" {
                axes_arg(attrs, inputs, opset, 13)?
            } else {
                axes_arg(attrs, inputs, opset, 18)?
            };
            reduce(
                op_type,
                x,
                axes.unwrap_or_default(),
                attrs.int("keepdims", 1) != 0,
            )
            .map(|t| vec![t])
        }),
        _ => return None,
    };
    Some(result)
}

/// `axes` as an attribute (before `input_from`) or as input 1 (from that opset on).
fn axes_arg(
    attrs: &Attrs,
    inputs: &[Option<&HostTensor>],
    opset: i64,
    input_from: i64,
) -> Result<Option<Vec<i64>>, String> {
    if opset < input_from {
        Ok(attrs.ints("axes"))
    } else {
        Ok(inputs.get(1).copied().flatten().map(HostTensor::to_i64))
    }
}

fn with_shape(x: &HostTensor, shape: Vec<usize>) -> HostTensor {
    HostTensor {
        shape,
        data: x.data.clone(),
    }
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// For each element of `out` (row-major), the flat index of the element of `input` that
/// NumPy broadcasting reads.
pub fn broadcast_map(input: &[usize], out: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    let r = out.len();
    let off = r - input.len();
    let in_strides = strides(input);
    let out_strides = strides(out);
    (0..n)
        .map(|flat| {
            let mut idx = 0;
            for ax in off..r {
                let coord = (flat / out_strides[ax]) % out[ax];
                let d = input[ax - off];
                if d != 1 {
                    idx += coord * in_strides[ax - off];
                }
            }
            idx
        })
        .collect()
}

fn pick(x: &HostTensor, shape: Vec<usize>, map: &[usize]) -> HostTensor {
    match &x.data {
        HostData::F32(v) => HostTensor::f32(shape, map.iter().map(|&i| v[i]).collect()),
        HostData::I64(v) => HostTensor::i64(shape, map.iter().map(|&i| v[i]).collect()),
    }
}

fn gather(x: &HostTensor, idx: &HostTensor, axis: i64) -> Result<HostTensor, String> {
    let a = norm_axis(axis, x.shape.len())?;
    let dim = x.shape[a] as i64;
    let indices: Vec<usize> = idx
        .to_i64()
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + dim } else { i };
            if (0..dim).contains(&j) {
                Ok(j as usize)
            } else {
                Err(format!("index {i} out of range {dim}"))
            }
        })
        .collect::<Result<_, _>>()?;
    let outer: usize = x.shape[..a].iter().product();
    let inner: usize = x.shape[a + 1..].iter().product();
    let mut map = Vec::with_capacity(outer * indices.len() * inner);
    for o in 0..outer {
        for &i in &indices {
            for k in 0..inner {
                map.push((o * x.shape[a] + i) * inner + k);
            }
        }
    }
    let mut shape = x.shape[..a].to_vec();
    shape.extend_from_slice(&idx.shape);
    shape.extend_from_slice(&x.shape[a + 1..]);
    Ok(pick(x, shape, &map))
}

fn concat(parts: &[&HostTensor], axis: i64) -> Result<HostTensor, String> {
    let first = parts.first().ok_or("no inputs")?;
    let a = norm_axis(axis, first.shape.len())?;
    let float = parts.iter().any(|p| p.is_float());
    let outer: usize = first.shape[..a].iter().product();
    let mut shape = first.shape.clone();
    shape[a] = parts
        .iter()
        .map(|p| p.shape.get(a).copied().unwrap_or(0))
        .sum();
    for p in parts {
        if p.shape.len() != first.shape.len() {
            return Err("concat of tensors of different ranks".into());
        }
    }
    let mut f = Vec::new();
    let mut i = Vec::new();
    for o in 0..outer {
        for p in parts {
            let chunk: usize = p.shape[a..].iter().product();
            if float {
                f.extend_from_slice(&p.to_f32()[o * chunk..(o + 1) * chunk]);
            } else {
                i.extend_from_slice(&p.to_i64()[o * chunk..(o + 1) * chunk]);
            }
        }
    }
    Ok(if float {
        HostTensor::f32(shape, f)
    } else {
        HostTensor::i64(shape, i)
    })
}

fn slice(
    x: &HostTensor,
    starts: &[i64],
    ends: &[i64],
    axes: &[i64],
    steps: &[i64],
) -> Result<HostTensor, String> {
    let r = x.shape.len();
    let mut first = vec![0i64; r];
    let mut step = vec![1i64; r];
    let mut shape = x.shape.clone();
    for (k, &ax) in axes.iter().enumerate() {
        let a = norm_axis(ax, r)?;
        let (s, st, n) = slice_range(
            x.shape[a],
            *starts.get(k).ok_or("starts too short")?,
            *ends.get(k).ok_or("ends too short")?,
            *steps.get(k).unwrap_or(&1),
        )?;
        first[a] = s;
        step[a] = st;
        shape[a] = n;
    }
    let in_strides = strides(&x.shape);
    let out_strides = strides(&shape);
    let n: usize = shape.iter().product();
    let map: Vec<usize> = (0..n)
        .map(|flat| {
            (0..r)
                .map(|ax| {
                    let c = (flat / out_strides[ax]) % shape[ax];
                    (first[ax] + c as i64 * step[ax]) as usize * in_strides[ax]
                })
                .sum()
        })
        .collect();
    Ok(pick(x, shape, &map))
}

pub fn transpose(x: &HostTensor, perm: &[usize]) -> Result<HostTensor, String> {
    let r = x.shape.len();
    if perm.len() != r || (0..r).any(|i| !perm.contains(&i)) {
        return Err(format!("perm {perm:?} is not a permutation of rank {r}"));
    }
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let in_strides = strides(&x.shape);
    let out_strides = strides(&shape);
    let n: usize = shape.iter().product();
    let map: Vec<usize> = (0..n)
        .map(|flat| {
            (0..r)
                .map(|ax| ((flat / out_strides[ax]) % shape[ax]) * in_strides[perm[ax]])
                .sum()
        })
        .collect();
    Ok(pick(x, shape, &map))
}

fn binary(op: &str, a: &HostTensor, b: &HostTensor) -> Result<HostTensor, String> {
    let shape = broadcast(&a.shape, &b.shape)?;
    let (ma, mb) = (
        broadcast_map(&a.shape, &shape),
        broadcast_map(&b.shape, &shape),
    );
    let cmp = matches!(op, "Equal" | "Less" | "Greater" | "And" | "Or");
    if let (HostData::I64(x), HostData::I64(y)) = (&a.data, &b.data) {
        let f = |p: i64, q: i64| -> Result<i64, String> {
            Ok(match op {
                "Add" => p.wrapping_add(q),
                "Sub" => p.wrapping_sub(q),
                "Mul" => p.wrapping_mul(q),
                "Div" => p.checked_div(q).ok_or("integer division by zero")?,
                "Mod" => p.checked_rem(q).ok_or("integer modulo by zero")?,
                "Pow" => p.saturating_pow(q.clamp(0, 63) as u32),
                "Max" => p.max(q),
                "Min" => p.min(q),
                "Equal" => (p == q) as i64,
                "Less" => (p < q) as i64,
                "Greater" => (p > q) as i64,
                "And" => (p != 0 && q != 0) as i64,
                _ => (p != 0 || q != 0) as i64,
            })
        };
        let data = (0..ma.len())
            .map(|i| f(x[ma[i]], y[mb[i]]))
            .collect::<Result<_, _>>()?;
        return Ok(HostTensor::i64(shape, data));
    }
    let (x, y) = (a.to_f32(), b.to_f32());
    let f = |p: f32, q: f32| match op {
        "Add" => p + q,
        "Sub" => p - q,
        "Mul" => p * q,
        "Div" => p / q,
        "Mod" => p % q,
        "Pow" => p.powf(q),
        "Max" => p.max(q),
        "Min" => p.min(q),
        "Equal" => (p == q) as i64 as f32,
        "Less" => (p < q) as i64 as f32,
        "Greater" => (p > q) as i64 as f32,
        "And" => (p != 0.0 && q != 0.0) as i64 as f32,
        _ => (p != 0.0 || q != 0.0) as i64 as f32,
    };
    let data: Vec<f32> = (0..ma.len()).map(|i| f(x[ma[i]], y[mb[i]])).collect();
    Ok(if cmp {
        HostTensor::i64(shape, data.iter().map(|&v| v as i64).collect())
    } else {
        HostTensor::f32(shape, data)
    })
}

fn unary(op: &str, x: &HostTensor) -> HostTensor {
    match &x.data {
        HostData::I64(v) => HostTensor::i64(
            x.shape.clone(),
            v.iter()
                .map(|&p| match op {
                    "Neg" => -p,
                    "Abs" => p.abs(),
                    "Not" => (p == 0) as i64,
                    "Relu" => p.max(0),
                    "Sqrt" => (p as f64).sqrt() as i64,
                    _ => p,
                })
                .collect(),
        ),
        HostData::F32(v) => HostTensor::f32(
            x.shape.clone(),
            v.iter()
                .map(|&p| match op {
                    "Neg" => -p,
                    "Abs" => p.abs(),
                    "Sqrt" => p.sqrt(),
                    "Floor" => p.floor(),
                    "Ceil" => p.ceil(),
                    "Not" => (p == 0.0) as i64 as f32,
                    "Reciprocal" => 1.0 / p,
                    "Exp" => p.exp(),
                    "Relu" => p.max(0.0),
                    _ => p,
                })
                .collect(),
        ),
    }
}

fn reduce(op: &str, x: &HostTensor, axes: Vec<i64>, keepdims: bool) -> Result<HostTensor, String> {
    let r = x.shape.len();
    let axes: Vec<usize> = if axes.is_empty() {
        (0..r).collect()
    } else {
        axes.iter()
            .map(|&a| norm_axis(a, r))
            .collect::<Result<_, _>>()?
    };
    let out_full: Vec<usize> = x
        .shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect();
    let n_out: usize = out_full.iter().product();
    let out_strides = strides(&out_full);
    let in_strides = strides(&x.shape);
    let vals = x.to_f32();
    let init = match op {
        "ReduceProd" => 1.0,
        "ReduceMax" => f32::NEG_INFINITY,
        "ReduceMin" => f32::INFINITY,
        _ => 0.0,
    };
    let mut acc = vec![init; n_out];
    for (flat, &v) in vals.iter().enumerate() {
        let o: usize = (0..r)
            .map(|ax| {
                if axes.contains(&ax) {
                    0
                } else {
                    ((flat / in_strides[ax]) % x.shape[ax]) * out_strides[ax]
                }
            })
            .sum();
        acc[o] = match op {
            "ReduceProd" => acc[o] * v,
            "ReduceMax" => acc[o].max(v),
            "ReduceMin" => acc[o].min(v),
            _ => acc[o] + v,
        };
    }
    let shape = if keepdims {
        out_full
    } else {
        x.shape
            .iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(i))
            .map(|(_, &d)| d)
            .collect()
    };
    Ok(if x.is_float() {
        HostTensor::f32(shape, acc)
    } else {
        HostTensor::i64(shape, acc.iter().map(|&v| v as i64).collect())
    })
}

/// `DequantizeLinear` on a constant: scale and zero point are scalars or one per slice
/// along `axis`.
pub(super) fn dequantize(
    x: &HostTensor,
    scale: &[f32],
    zero: Option<&[f32]>,
    axis: i64,
) -> Result<HostTensor, String> {
    let values = x.to_f32();
    let per = |v: &[f32], what: &str| -> Result<(), String> {
        if v.is_empty() {
            Err(format!("empty {what}"))
        } else {
            Ok(())
        }
    };
    per(scale, "scale")?;
    if let Some(z) = zero {
        per(z, "zero point")?;
        if z.len() != scale.len() {
            return Err("scale and zero point differ in length".into());
        }
    }
    let (channels, inner) = if scale.len() == 1 {
        (1, values.len().max(1))
    } else {
        let a = norm_axis(axis, x.shape.len())?;
        if x.shape[a] != scale.len() {
            return Err(format!(
                "{} scales for axis {a} of size {}",
                scale.len(),
                x.shape[a]
            ));
        }
        (scale.len(), x.shape[a + 1..].iter().product::<usize>())
    };
    let out = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / inner) % channels;
            (v - zero.map_or(0.0, |z| z[c])) * scale[c]
        })
        .collect();
    Ok(HostTensor::f32(x.shape.clone(), out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dequantize_per_tensor_and_per_channel() {
        let x = HostTensor::i64(vec![2, 2], vec![-2, 4, 10, -10]);
        let t = dequantize(&x, &[0.5], Some(&[2.0]), 1).unwrap();
        assert_eq!(t.to_f32(), vec![-2.0, 1.0, 4.0, -6.0]);
        // One scale per row (axis 0).
        let t = dequantize(&x, &[1.0, 0.1], None, 0).unwrap();
        assert_eq!(t.to_f32(), vec![-2.0, 4.0, 1.0, -1.0]);
        assert!(dequantize(&x, &[1.0, 2.0, 3.0], None, 0).is_err());
    }

    #[test]
    fn constant_of_shape_makes_real_weight_sizes_and_refuses_absurd_ones() {
        // The onnx package's light AlexNet (4 KB) builds its 61 M weights this way; its
        // first dense layer alone is 9216×4096.
        let net = crate::onnx::import(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/light/light_bvlc_alexnet.onnx"
        ))
        .unwrap();
        let params: usize = net.store.iter().map(|(_, t)| t.data.len()).sum();
        assert!(params > 60_000_000, "{params}");
        let node = onnx_ir::NodeProto::default();
        let shape = HostTensor::i64(vec![2], vec![1 << 20, 1 << 20]);
        let err = eval("ConstantOfShape", &Attrs::of(&node), &[Some(&shape)], 13)
            .unwrap()
            .unwrap_err();
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn gather_slice_and_transpose_follow_onnx() {
        let x = HostTensor::i64(vec![2, 3], vec![0, 1, 2, 3, 4, 5]);
        let g = gather(&x, &HostTensor::i64(vec![], vec![-1]), 1).unwrap();
        assert_eq!(g, HostTensor::i64(vec![2], vec![2, 5]));
        let s = slice(&x, &[1], &[i64::MAX], &[1], &[1]).unwrap();
        assert_eq!(s, HostTensor::i64(vec![2, 2], vec![1, 2, 4, 5]));
        let r = slice(&x, &[-1], &[i64::MIN], &[1], &[-1]).unwrap();
        assert_eq!(r, HostTensor::i64(vec![2, 3], vec![2, 1, 0, 5, 4, 3]));
        let t = transpose(&x, &[1, 0]).unwrap();
        assert_eq!(t, HostTensor::i64(vec![3, 2], vec![0, 3, 1, 4, 2, 5]));
    }

    #[test]
    fn range_refuses_empty_operands_zero_steps_and_overflow() {
        let node = onnx_ir::NodeProto::default();
        let range = |s: HostTensor, l: HostTensor, d: HostTensor| {
            eval(
                "Range",
                &Attrs::of(&node),
                &[Some(&s), Some(&l), Some(&d)],
                13,
            )
            .unwrap()
        };
        let i = |v: i64| HostTensor::i64(vec![], vec![v]);
        assert_eq!(
            range(i(2), i(9), i(3)).unwrap(),
            vec![HostTensor::i64(vec![3], vec![2, 5, 8])]
        );
        assert_eq!(
            range(i(5), i(0), i(-2)).unwrap(),
            vec![HostTensor::i64(vec![3], vec![5, 3, 1])]
        );
        let empty = HostTensor::i64(vec![0], vec![]);
        assert!(
            range(empty.clone(), i(3), i(1))
                .unwrap_err()
                .contains("one value")
        );
        assert!(range(i(0), i(3), i(0)).is_err());
        // limit − start overflows i64: refused, not wrapped.
        assert!(range(i(i64::MIN), i(i64::MAX), i(1)).is_err());
        assert!(range(i(i64::MAX - 1), i(i64::MAX), i(2)).is_ok());
        let f = |v: f32| HostTensor::f32(vec![], vec![v]);
        assert!(range(f(0.0), f(1.0), f(0.0)).is_err(), "zero float step");
        assert!(range(f(0.0), f(1.0), f(f32::NAN)).is_ok());
        assert!(range(HostTensor::f32(vec![0], vec![]), f(1.0), f(1.0)).is_err());
    }

    #[test]
    fn binary_broadcasts_and_keeps_integers() {
        let a = HostTensor::i64(vec![2, 1], vec![7, 9]);
        let b = HostTensor::i64(vec![2], vec![2, 3]);
        assert_eq!(
            binary("Div", &a, &b).unwrap(),
            HostTensor::i64(vec![2, 2], vec![3, 2, 4, 3])
        );
        assert!(binary("Div", &a, &HostTensor::i64(vec![], vec![0])).is_err());
        let f = binary("Mul", &HostTensor::f32(vec![1], vec![0.5]), &b).unwrap();
        assert_eq!(f, HostTensor::f32(vec![2], vec![1.0, 1.5]));
    }

    #[test]
    fn concat_and_reduce() {
        let a = HostTensor::i64(vec![1, 2], vec![1, 2]);
        let b = HostTensor::i64(vec![1, 1], vec![3]);
        assert_eq!(
            concat(&[&a, &b], 1).unwrap(),
            HostTensor::i64(vec![1, 3], vec![1, 2, 3])
        );
        let p = reduce(
            "ReduceProd",
            &HostTensor::i64(vec![3], vec![2, 3, 4]),
            vec![],
            false,
        )
        .unwrap();
        assert_eq!(p, HostTensor::i64(vec![], vec![24]));
    }
}

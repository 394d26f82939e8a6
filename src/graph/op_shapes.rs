//! Each op's shape rule: output shapes from input shapes, checked, with the reason when they
//! do not fit.

use super::Op;
use super::shape_math::{
    broadcast, matmul_shape, norm_axes, norm_axes_or_all, norm_axis, rank, reshape_shape,
    slice_range, window_out,
};

impl Op {
    /// Output shapes from input shapes (`None` for an absent optional input).
    pub fn infer_shapes(
        &self,
        inputs: &[Option<&[usize]>],
        n_outputs: usize,
    ) -> Result<Vec<Vec<usize>>, String> {
        let x = |i: usize| -> Result<&[usize], String> {
            inputs
                .get(i)
                .copied()
                .flatten()
                .ok_or_else(|| format!("input {i} is missing"))
        };
        let one = |s: Vec<usize>| Ok(vec![s]);
        match self {
            Op::Conv(c) => {
                let (x, w) = (x(0)?, x(1)?);
                rank(x, 4, "input")?;
                rank(w, 4, "weight")?;
                let g = c.groups;
                if g == 0 || x[1] != w[1] * g || w[0] % g != 0 {
                    return Err(format!(
                        "input has {} channels but the weight {:?} with {} groups expects {}",
                        x[1],
                        w,
                        g,
                        w[1] * g
                    ));
                }
                if let Some(b) = inputs.get(2).copied().flatten()
                    && b != [w[0]]
                {
                    return Err(format!("bias shape {b:?} does not match {} filters", w[0]));
                }
                let h = window_out(
                    x[2],
                    w[2],
                    c.strides[0],
                    c.pads[0],
                    c.pads[2],
                    c.dilations[0],
                    false,
                )?;
                let wd = window_out(
                    x[3],
                    w[3],
                    c.strides[1],
                    c.pads[1],
                    c.pads[3],
                    c.dilations[1],
                    false,
                )?;
                one(vec![x[0], w[0], h, wd])
            }
            Op::BatchNorm { .. } => {
                let x0 = x(0)?;
                if x0.len() < 2 {
                    return Err(format!("input rank {} < 2", x0.len()));
                }
                for i in 1..5 {
                    if x(i)? != [x0[1]] {
                        return Err(format!(
                            "input {i} has shape {:?}, expected [{}]",
                            x(i)?,
                            x0[1]
                        ));
                    }
                }
                one(x0.to_vec())
            }
            Op::LayerNorm { axis, .. } => {
                let x0 = x(0)?;
                let a = norm_axis(*axis, x0.len())?;
                let tail: usize = x0[a..].iter().product();
                let s: usize = x(1)?.iter().product();
                if s != tail {
                    return Err(format!("scale has {s} values, normalised axes have {tail}"));
                }
                one(x0.to_vec())
            }
            Op::Lrn { .. } => {
                let x0 = x(0)?;
                rank(x0, 4, "input")?;
                one(x0.to_vec())
            }
            Op::Gemm {
                trans_a, trans_b, ..
            } => {
                let (a, b) = (x(0)?, x(1)?);
                rank(a, 2, "A")?;
                rank(b, 2, "B")?;
                let (m, k) = if *trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
                let (k2, n) = if *trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
                if k != k2 {
                    return Err(format!("A {a:?} and B {b:?} do not multiply"));
                }
                if let Some(c) = inputs.get(2).copied().flatten() {
                    broadcast(c, &[m, n]).map_err(|e| format!("C: {e}"))?;
                }
                one(vec![m, n])
            }
            Op::MatMul => one(matmul_shape(x(0)?, x(1)?)?),
            Op::Unary(_)
            | Op::LeakyRelu { .. }
            | Op::Elu { .. }
            | Op::HardSigmoid { .. }
            | Op::Clip { .. }
            | Op::Gelu { .. }
            | Op::Softmax { .. }
            | Op::LogSoftmax { .. }
            | Op::Identity => {
                let x0 = x(0)?;
                if let Op::Softmax { axis, .. } | Op::LogSoftmax { axis, .. } = self {
                    norm_axis(*axis, x0.len())?;
                }
                one(x0.to_vec())
            }
            Op::Dropout { .. } => Ok(vec![x(0)?.to_vec(); n_outputs.max(1)]),
            Op::Binary(_) => one(broadcast(x(0)?, x(1)?)?),
            Op::Nary(_) => {
                let mut s = x(0)?.to_vec();
                for i in 1..inputs.len() {
                    s = broadcast(&s, x(i)?)?;
                }
                one(s)
            }
            Op::MaxPool(p) | Op::AveragePool { pool: p, .. } => {
                let x0 = x(0)?;
                rank(x0, 4, "input")?;
                let h = window_out(
                    x0[2],
                    p.kernel[0],
                    p.strides[0],
                    p.pads[0],
                    p.pads[2],
                    p.dilations[0],
                    p.ceil_mode,
                )?;
                let w = window_out(
                    x0[3],
                    p.kernel[1],
                    p.strides[1],
                    p.pads[1],
                    p.pads[3],
                    p.dilations[1],
                    p.ceil_mode,
                )?;
                one(vec![x0[0], x0[1], h, w])
            }
            Op::GlobalAveragePool | Op::GlobalMaxPool => {
                let x0 = x(0)?;
                if x0.len() < 3 {
                    return Err(format!("input rank {} < 3", x0.len()));
                }
                let mut s = x0[..2].to_vec();
                s.resize(x0.len(), 1);
                one(s)
            }
            Op::Reduce { axes, keepdims, .. } => {
                let x0 = x(0)?;
                let axes = norm_axes_or_all(axes, x0.len())?;
                let mut s = Vec::new();
                for (i, &d) in x0.iter().enumerate() {
                    if axes.contains(&i) {
                        if *keepdims {
                            s.push(1);
                        }
                    } else {
                        s.push(d);
                    }
                }
                one(s)
            }
            Op::Concat { axis } => {
                let first = x(0)?;
                let a = norm_axis(*axis, first.len())?;
                let mut out = first.to_vec();
                out[a] = 0;
                for i in 0..inputs.len() {
                    let s = x(i)?;
                    if s.len() != first.len()
                        || s.iter()
                            .zip(first)
                            .enumerate()
                            .any(|(j, (p, q))| j != a && p != q)
                    {
                        return Err(format!(
                            "input {i} {s:?} does not match {first:?} outside axis {a}"
                        ));
                    }
                    out[a] += s[a];
                }
                one(out)
            }
            Op::Split { axis, sizes } => {
                let x0 = x(0)?;
                let a = norm_axis(*axis, x0.len())?;
                if sizes.iter().sum::<usize>() != x0[a] || sizes.len() != n_outputs {
                    return Err(format!(
                        "sizes {sizes:?} do not split axis {a} of {x0:?} into {n_outputs} parts"
                    ));
                }
                Ok(sizes
                    .iter()
                    .map(|&n| {
                        let mut s = x0.to_vec();
                        s[a] = n;
                        s
                    })
                    .collect())
            }
            Op::Slice {
                starts,
                ends,
                axes,
                steps,
            } => {
                let x0 = x(0)?;
                let mut out = x0.to_vec();
                for (i, &ax) in axes.iter().enumerate() {
                    let a = norm_axis(ax, x0.len())?;
                    let (s, e, st) = (starts[i], ends[i], steps[i]);
                    out[a] = slice_range(x0[a], s, e, st)?.2;
                }
                one(out)
            }
            Op::Gather {
                axis,
                indices,
                scalar,
            } => {
                let x0 = x(0)?;
                let a = norm_axis(*axis, x0.len())?;
                for &i in indices {
                    if i >= x0[a] as i64 || i < -(x0[a] as i64) {
                        return Err(format!("index {i} out of range for axis of size {}", x0[a]));
                    }
                }
                let mut s = x0.to_vec();
                if *scalar {
                    s.remove(a);
                } else {
                    s[a] = indices.len();
                }
                one(s)
            }
            Op::Flatten { axis } => {
                let x0 = x(0)?;
                let a = if *axis < 0 {
                    norm_axis(*axis, x0.len())?
                } else {
                    (*axis as usize).min(x0.len())
                };
                one(vec![x0[..a].iter().product(), x0[a..].iter().product()])
            }
            Op::Reshape { shape, allowzero } => one(reshape_shape(x(0)?, shape, *allowzero)?),
            Op::Transpose { perm } => {
                let x0 = x(0)?;
                let mut seen = vec![false; x0.len()];
                if perm.len() != x0.len()
                    || perm
                        .iter()
                        .any(|&p| p >= x0.len() || std::mem::replace(&mut seen[p], true))
                {
                    return Err(format!(
                        "perm {perm:?} is not a permutation of rank {}",
                        x0.len()
                    ));
                }
                one(perm.iter().map(|&p| x0[p]).collect())
            }
            Op::Squeeze { axes } => {
                let x0 = x(0)?;
                let axes: Vec<usize> = if axes.is_empty() {
                    (0..x0.len()).filter(|&i| x0[i] == 1).collect()
                } else {
                    norm_axes(axes, x0.len())?
                };
                if let Some(&a) = axes.iter().find(|&&a| x0[a] != 1) {
                    return Err(format!("cannot squeeze axis {a} of size {}", x0[a]));
                }
                one(x0
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !axes.contains(i))
                    .map(|(_, &d)| d)
                    .collect())
            }
            Op::Unsqueeze { axes } => {
                let x0 = x(0)?;
                let r = x0.len() + axes.len();
                let axes = norm_axes(axes, r)?;
                let mut it = x0.iter();
                one((0..r)
                    .map(|i| {
                        if axes.contains(&i) {
                            1
                        } else {
                            *it.next().unwrap_or(&1)
                        }
                    })
                    .collect())
            }
            Op::Expand { shape } => {
                let target: Vec<usize> = shape.iter().map(|&d| d.max(1) as usize).collect();
                one(broadcast(x(0)?, &target)?)
            }
            Op::Pad { pads, .. } => {
                let x0 = x(0)?;
                if pads.len() != 2 * x0.len() {
                    return Err(format!("{} pads for rank {}", pads.len(), x0.len()));
                }
                let r = x0.len();
                let mut out = Vec::with_capacity(r);
                for i in 0..r {
                    let d = x0[i] as i64 + pads[i] + pads[i + r];
                    if d < 0 {
                        return Err(format!("padding leaves axis {i} with size {d}"));
                    }
                    out.push(d as usize);
                }
                one(out)
            }
            Op::Resize { scales, .. } => {
                let x0 = x(0)?;
                if x0.len() != 4 {
                    return Err(format!(
                        "Resize of a rank-{} value; Graft resizes N×C×H×W",
                        x0.len()
                    ));
                }
                let h = resized(x0[2], scales[0]);
                let w = resized(x0[3], scales[1]);
                if h == 0 || w == 0 {
                    return Err(format!(
                        "resizing {}×{} by {scales:?} leaves nothing",
                        x0[2], x0[3]
                    ));
                }
                one(vec![x0[0], x0[1], h, w])
            }
            Op::Unsupported { op_type, .. } => Err(format!("{op_type} is not supported")),
        }
    }
}

/// ONNX's output size for a resize: `floor(size × scale)`, computed in f32 as ONNX Runtime
/// does (import picks scales for which this gives the size the file asked for).
pub fn resized(size: usize, scale: f32) -> usize {
    (size as f32 * scale).floor().max(0.0) as usize
}

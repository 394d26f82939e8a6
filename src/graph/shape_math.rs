//! Shape arithmetic shared by the shape rules, the importer's constant folding and the
//! engine: broadcasting, matmul, reshape, slice ranges, sliding windows, axes.

pub(super) fn rank(s: &[usize], r: usize, what: &str) -> Result<(), String> {
    if s.len() == r {
        Ok(())
    } else {
        Err(format!("{what} has rank {} ({s:?}), expected {r}", s.len()))
    }
}

/// Output length of a sliding window (convolution or pooling).
pub fn window_out(
    len: usize,
    kernel: usize,
    stride: usize,
    pad_begin: usize,
    pad_end: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Result<usize, String> {
    if stride == 0 || kernel == 0 || dilation == 0 {
        return Err("kernel, stride and dilation must be positive".into());
    }
    let span = dilation * (kernel - 1) + 1;
    let padded = len + pad_begin + pad_end;
    if padded < span {
        return Err(format!(
            "window of {span} is larger than the padded input of {padded}"
        ));
    }
    let mut out = if ceil_mode {
        (padded - span).div_ceil(stride) + 1
    } else {
        (padded - span) / stride + 1
    };
    // A last window that would start in the end padding is dropped (PyTorch, ONNX Runtime).
    if ceil_mode && (out - 1) * stride >= len + pad_begin {
        out -= 1;
    }
    Ok(out)
}

/// Normalise a possibly negative axis for a tensor of rank `r`.
pub fn norm_axis(axis: i64, r: usize) -> Result<usize, String> {
    let a = if axis < 0 { axis + r as i64 } else { axis };
    if a < 0 || a >= r as i64 {
        Err(format!("axis {axis} is out of range for rank {r}"))
    } else {
        Ok(a as usize)
    }
}

pub fn norm_axes(axes: &[i64], r: usize) -> Result<Vec<usize>, String> {
    axes.iter().map(|&a| norm_axis(a, r)).collect()
}

pub(super) fn norm_axes_or_all(axes: &[i64], r: usize) -> Result<Vec<usize>, String> {
    if axes.is_empty() {
        Ok((0..r).collect())
    } else {
        norm_axes(axes, r)
    }
}

/// NumPy broadcasting of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    Ok(out)
}

/// NumPy matmul shape rules.
pub fn matmul_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    if a.is_empty() || b.is_empty() {
        return Err("matmul of a scalar".into());
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(format!("shapes {a:?} and {b:?} do not multiply"));
    }
    let mut out = broadcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    if a.len() > 1 {
        out.push(m);
    }
    if b.len() > 1 {
        out.push(n);
    }
    Ok(out)
}

/// ONNX Reshape: 0 copies the input's dimension (unless `allowzero`), -1 is inferred.
pub fn reshape_shape(x: &[usize], shape: &[i64], allowzero: bool) -> Result<Vec<usize>, String> {
    let total: usize = x.iter().product();
    let mut out = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &d) in shape.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(
                *x.get(i)
                    .ok_or_else(|| format!("0 at position {i} copies a missing dimension"))?,
            ),
            d if d >= 0 => out.push(d as usize),
            _ => return Err(format!("invalid target shape {shape:?}")),
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape {x:?} to {shape:?}"));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!(
            "cannot reshape {x:?} ({total} values) to {shape:?}"
        ));
    }
    Ok(out)
}

/// ONNX Slice on one axis of length `len`: `(first index, step, count)`.
pub fn slice_range(
    len: usize,
    start: i64,
    end: i64,
    step: i64,
) -> Result<(i64, i64, usize), String> {
    if step == 0 {
        return Err("slice step 0".into());
    }
    let len = len as i64;
    let adj = |v: i64| if v < 0 { v.saturating_add(len) } else { v };
    let (s, e) = (adj(start), adj(end));
    let (s, e) = if step > 0 {
        (s.clamp(0, len), e.clamp(0, len))
    } else {
        (s.clamp(-1, len - 1), e.clamp(-1, len - 1))
    };
    let count = if step > 0 {
        if e > s { (e - s + step - 1) / step } else { 0 }
    } else if s > e {
        (s - e + (-step) - 1) / (-step)
    } else {
        0
    };
    Ok((s, step, count as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_ceil_mode_drops_a_window_starting_in_padding() {
        // PyTorch: MaxPool2d(3, 2, ceil_mode=True) on 112 -> 56; on 6 -> 3 (not 4).
        assert_eq!(window_out(112, 3, 2, 0, 0, 1, true), Ok(56));
        assert_eq!(window_out(6, 3, 2, 0, 0, 1, true), Ok(3));
        assert_eq!(window_out(7, 2, 2, 0, 0, 1, true), Ok(4));
        assert_eq!(window_out(7, 2, 2, 0, 0, 1, false), Ok(3));
        assert_eq!(window_out(224, 3, 2, 0, 1, 1, false), Ok(112));
    }

    #[test]
    fn reshape_copies_zero_and_infers_minus_one() {
        assert_eq!(reshape_shape(&[2, 8, 4], &[0, -1], false), Ok(vec![2, 32]));
        assert!(reshape_shape(&[2, 8, 4], &[3, -1], false).is_err());
        assert_eq!(reshape_shape(&[2, 0], &[0, 5], true), Ok(vec![0, 5]));
    }

    #[test]
    fn slice_clamps_like_onnx() {
        assert_eq!(slice_range(10, 2, i64::MAX, 1), Ok((2, 1, 8)));
        assert_eq!(slice_range(10, -3, -1, 1), Ok((7, 1, 2)));
        assert_eq!(slice_range(10, -1, i64::MIN, -1), Ok((9, -1, 10)));
        assert_eq!(slice_range(10, 0, 10, 3), Ok((0, 3, 4)));
    }

    #[test]
    fn broadcast_and_matmul_shapes() {
        assert_eq!(broadcast(&[2, 3, 4, 4], &[3, 1, 1]), Ok(vec![2, 3, 4, 4]));
        assert!(broadcast(&[2, 3], &[4]).is_err());
        assert_eq!(matmul_shape(&[2, 5, 7, 16], &[16, 4]), Ok(vec![2, 5, 7, 4]));
        assert_eq!(matmul_shape(&[16], &[16, 4]), Ok(vec![4]));
    }
}

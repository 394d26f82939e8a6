use super::emit::{Emitter, Parts, attr_int, attr_ints, attr_string, parts, usizes};
use super::{Ctx, Lowered};
use crate::graph::Node;
use crate::graph::{Op, PadMode, norm_axis};

pub fn flatten(ctx: &Ctx) -> Result<Lowered, String> {
    Ok(Lowered::new(
        Op::Flatten {
            axis: ctx.attrs.int("axis", 1),
        },
        ctx.keep(&[0]),
    ))
}

pub fn reshape(ctx: &Ctx) -> Result<Lowered, String> {
    let shape = if ctx.opset < 5 {
        ctx.attrs.ints("shape").ok_or("shape is missing")?
    } else {
        ctx.require_constant(1, "target shape")?.to_i64()
    };
    Ok(Lowered::new(
        Op::Reshape {
            shape,
            allowzero: ctx.attrs.int("allowzero", 0) != 0,
        },
        ctx.keep(&[0]),
    ))
}

pub fn transpose(ctx: &Ctx) -> Result<Lowered, String> {
    let perm = match ctx.attrs.ints("perm") {
        Some(p) => p.iter().map(|&v| v.max(0) as usize).collect(),
        None => (0..ctx.shape(0)?.len()).rev().collect(),
    };
    Ok(Lowered::new(Op::Transpose { perm }, ctx.keep(&[0])))
}

pub fn squeeze(ctx: &Ctx) -> Result<Lowered, String> {
    let axes = if ctx.opset < 13 {
        ctx.attrs.ints("axes").unwrap_or_default()
    } else if ctx.present(1) {
        ctx.require_constant(1, "axes")?.to_i64()
    } else {
        Vec::new()
    };
    let op = if ctx.node.op_type == "Squeeze" {
        Op::Squeeze { axes }
    } else {
        if axes.is_empty() {
            return Err("Unsqueeze without axes".into());
        }
        Op::Unsqueeze { axes }
    };
    Ok(Lowered::new(op, ctx.keep(&[0])))
}

pub fn concat(ctx: &Ctx) -> Result<Lowered, String> {
    // Opsets 1-3 default the axis to 1; later ones require it.
    if !ctx.attrs.has("axis") && ctx.opset >= 4 {
        return Err("axis is missing".into());
    }
    let all: Vec<usize> = (0..ctx.inputs.len()).collect();
    Ok(Lowered::new(
        Op::Concat {
            axis: ctx.attrs.int("axis", 1),
        },
        ctx.keep(&all),
    ))
}

pub fn split(ctx: &Ctx) -> Result<Lowered, String> {
    let axis = ctx.attrs.int("axis", 0);
    let given = if ctx.opset < 13 {
        ctx.attrs.ints("split")
    } else if ctx.present(1) {
        Some(ctx.require_constant(1, "split sizes")?.to_i64())
    } else {
        None
    };
    let n = ctx.n_outputs;
    let sizes = match given {
        Some(s) => s.iter().map(|&v| v.max(0) as usize).collect(),
        None => {
            let x = ctx.shape(0)?;
            let len = x[norm_axis(axis, x.len())?];
            // Equal parts; with opset 18's num_outputs the last part may be smaller.
            let part = len.div_ceil(n.max(1));
            (0..n)
                .map(|i| part.min(len.saturating_sub(i * part)))
                .collect()
        }
    };
    Ok(Lowered {
        op: Op::Split { axis, sizes },
        inputs: ctx.keep(&[0]),
        outputs: n,
    })
}

pub fn slice(ctx: &Ctx) -> Result<Lowered, String> {
    let (starts, ends, axes, steps) = if ctx.opset < 10 {
        let starts = ctx.attrs.ints("starts").ok_or("starts is missing")?;
        let ends = ctx.attrs.ints("ends").ok_or("ends is missing")?;
        let axes = ctx
            .attrs
            .ints("axes")
            .unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = vec![1; starts.len()];
        (starts, ends, axes, steps)
    } else {
        let starts = ctx.require_constant(1, "starts")?.to_i64();
        let ends = ctx.require_constant(2, "ends")?.to_i64();
        let axes = if ctx.present(3) {
            ctx.require_constant(3, "axes")?.to_i64()
        } else {
            (0..starts.len() as i64).collect()
        };
        let steps = if ctx.present(4) {
            ctx.require_constant(4, "steps")?.to_i64()
        } else {
            vec![1; starts.len()]
        };
        (starts, ends, axes, steps)
    };
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("starts, ends, axes and steps differ in length".into());
    }
    // Graft's tensors are never empty.
    if let Ok(x) = ctx.shape(0) {
        for (k, &a) in axes.iter().enumerate() {
            let a = norm_axis(a, x.len())?;
            if crate::graph::slice_range(x[a], starts[k], ends[k], steps[k])?.2 == 0 {
                return Err(format!("the slice of axis {a} is empty"));
            }
        }
    }
    Ok(Lowered::new(
        Op::Slice {
            starts,
            ends,
            axes,
            steps,
        },
        ctx.keep(&[0]),
    ))
}

pub fn gather(ctx: &Ctx) -> Result<Lowered, String> {
    let idx = ctx.require_constant(1, "indices")?;
    if idx.shape.len() > 1 {
        return Err("indices of rank > 1 on an activation are not supported".into());
    }
    Ok(Lowered::new(
        Op::Gather {
            axis: ctx.attrs.int("axis", 0),
            indices: idx.to_i64(),
            scalar: idx.shape.is_empty(),
        },
        ctx.keep(&[0]),
    ))
}

pub fn expand(ctx: &Ctx) -> Result<Lowered, String> {
    let shape = ctx.require_constant(1, "shape")?.to_i64();
    Ok(Lowered::new(Op::Expand { shape }, ctx.keep(&[0])))
}

pub fn pad(ctx: &Ctx) -> Result<Lowered, String> {
    let mode = ctx
        .attrs
        .string("mode")
        .unwrap_or_else(|| "constant".into());
    let (pads, value) = if ctx.opset < 11 {
        (
            ctx.attrs
                .ints("pads")
                .or_else(|| ctx.attrs.ints("paddings"))
                .ok_or("pads is missing")?,
            ctx.attrs.float("value", 0.0),
        )
    } else {
        let pads = ctx.require_constant(1, "pads")?.to_i64();
        let value = if ctx.present(2) {
            ctx.require_constant(2, "constant value")?
                .scalar_f32()
                .ok_or("constant value is not a scalar")?
        } else {
            0.0
        };
        (pads, value)
    };
    // Opset 18 may name the padded axes; expand to every axis.
    let pads = if ctx.present(3) {
        let axes = ctx.require_constant(3, "axes")?.to_i64();
        let r = ctx.shape(0)?.len();
        let mut full = vec![0; 2 * r];
        for (k, &a) in axes.iter().enumerate() {
            let a = norm_axis(a, r)?;
            full[a] = pads[k];
            full[a + r] = pads[k + axes.len()];
        }
        full
    } else {
        pads
    };
    let mode = match mode.as_str() {
        "constant" => PadMode::Constant(value),
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        other => return Err(format!("pad mode {other} is not supported")),
    };
    if pads.iter().any(|&p| p < 0) && mode != PadMode::Constant(value) {
        return Err("negative pads are supported only in constant mode".into());
    }
    Ok(Lowered::new(Op::Pad { pads, mode }, ctx.keep(&[0])))
}

/// Writes a node of this family (the dispatch is `exporter` in `ops/mod.rs`).
pub fn export(e: &mut Emitter, node: &Node) -> Result<(), String> {
    let Parts { name, ins, outs, x } = parts(node);
    match &node.op {
        Op::Concat { axis } => e.emit("Concat", name, ins, outs, vec![attr_int("axis", *axis)]),
        Op::Split { axis, sizes } => {
            let s = e.ints(name, "split", &usizes(sizes));
            e.emit(
                "Split",
                name,
                vec![x, s],
                outs,
                vec![attr_int("axis", *axis)],
            );
        }
        Op::Slice {
            starts,
            ends,
            axes,
            steps,
        } => {
            let inputs = vec![
                x,
                e.ints(name, "starts", starts),
                e.ints(name, "ends", ends),
                e.ints(name, "axes", axes),
                e.ints(name, "steps", steps),
            ];
            e.emit("Slice", name, inputs, outs, vec![]);
        }
        Op::Gather {
            axis,
            indices,
            scalar,
        } => {
            let shape: Vec<usize> = if *scalar { vec![] } else { vec![indices.len()] };
            let iname = e.ints_shaped(name, "indices", &shape, indices);
            e.emit(
                "Gather",
                name,
                vec![x, iname],
                outs,
                vec![attr_int("axis", *axis)],
            );
        }
        Op::Flatten { axis } => e.emit("Flatten", name, ins, outs, vec![attr_int("axis", *axis)]),
        Op::Reshape { shape, allowzero } => {
            let s = e.ints(name, "shape", shape);
            let attrs = if *allowzero {
                vec![attr_int("allowzero", 1)]
            } else {
                vec![]
            };
            e.emit("Reshape", name, vec![x, s], outs, attrs);
        }
        Op::Transpose { perm } => e.emit(
            "Transpose",
            name,
            ins,
            outs,
            vec![attr_ints("perm", &usizes(perm))],
        ),
        Op::Squeeze { axes } => {
            let mut inputs = vec![x];
            if !axes.is_empty() {
                inputs.push(e.ints(name, "axes", axes));
            }
            e.emit("Squeeze", name, inputs, outs, vec![]);
        }
        Op::Unsqueeze { axes } => {
            let a = e.ints(name, "axes", axes);
            e.emit("Unsqueeze", name, vec![x, a], outs, vec![]);
        }
        Op::Expand { shape } => {
            let s = e.ints(name, "shape", shape);
            e.emit("Expand", name, vec![x, s], outs, vec![]);
        }
        Op::Pad { pads, mode } => {
            let p = e.ints(name, "pads", pads);
            let (mode_name, value) = match mode {
                PadMode::Constant(v) => ("constant", Some(*v)),
                PadMode::Reflect => ("reflect", None),
                PadMode::Edge => ("edge", None),
            };
            let mut inputs = vec![x, p];
            if let Some(v) = value {
                inputs.push(e.scalar(name, "value", v));
            }
            e.emit(
                "Pad",
                name,
                inputs,
                outs,
                vec![attr_string("mode", mode_name)],
            );
        }
        other => return Err(format!("{} is not exported here", other.onnx_type())),
    }
    Ok(())
}

use super::emit::{Emitter, Parts, attr_int, attr_ints, parts};
use super::{Ctx, Lowered};
use crate::graph::Node;
use crate::graph::{Op, Reduce};
use crate::onnx::tensor::dtype;

pub fn dropout(ctx: &Ctx) -> Result<Lowered, String> {
    if ctx.present(2) && ctx.require_constant(2, "training_mode")?.to_i64().first() == Some(&1) {
        return Err("training_mode=true makes inference random".into());
    }
    let ratio = if ctx.opset < 12 {
        ctx.attrs.float("ratio", 0.5)
    } else if ctx.present(1) {
        ctx.require_constant(1, "ratio")?
            .scalar_f32()
            .ok_or("ratio is not a scalar")?
    } else {
        0.5
    };
    Ok(Lowered::new(Op::Dropout { ratio }, ctx.keep(&[0])))
}

pub fn identity(ctx: &Ctx) -> Result<Lowered, String> {
    Ok(Lowered::new(Op::Identity, ctx.keep(&[0])))
}

/// A cast of an activation: to a float type it changes nothing in an f32 engine.
pub fn cast(ctx: &Ctx) -> Result<Lowered, String> {
    let to = ctx.attrs.int("to", dtype::FLOAT as i64) as i32;
    if !dtype::is_float(to) {
        return Err(format!("cast of an activation to element type {to}"));
    }
    Ok(Lowered::new(Op::Identity, ctx.keep(&[0])))
}

pub fn reduce(ctx: &Ctx) -> Result<Lowered, String> {
    let kind = Reduce::ALL
        .into_iter()
        .find(|r| r.onnx_name() == ctx.node.op_type)
        .ok_or("not a reduction")?;
    let axes = if ctx.opset < kind.axes_input_from() {
        ctx.attrs.ints("axes").unwrap_or_default()
    } else if ctx.present(1) {
        ctx.require_constant(1, "axes")?.to_i64()
    } else {
        Vec::new()
    };
    if axes.is_empty() && ctx.attrs.int("noop_with_empty_axes", 0) != 0 {
        return Ok(Lowered::new(Op::Identity, ctx.keep(&[0])));
    }
    Ok(Lowered::new(
        Op::Reduce {
            kind,
            axes,
            keepdims: ctx.attrs.int("keepdims", 1) != 0,
        },
        ctx.keep(&[0]),
    ))
}

/// Writes a node of this family (the dispatch is `exporter` in `ops/mod.rs`).
pub fn export(e: &mut Emitter, node: &Node) -> Result<(), String> {
    let Parts { name, ins, outs, x } = parts(node);
    match &node.op {
        Op::Reduce {
            kind,
            axes,
            keepdims,
        } => {
            let mut attrs = vec![attr_int("keepdims", *keepdims as i64)];
            let mut inputs = vec![x];
            if *kind == Reduce::Sum {
                if !axes.is_empty() {
                    inputs.push(e.ints(name, "axes", axes));
                }
            } else if !axes.is_empty() {
                attrs.push(attr_ints("axes", axes));
            }
            e.emit(kind.onnx_name(), name, inputs, outs, attrs);
        }
        Op::Dropout { ratio } => {
            let r = e.scalar(name, "ratio", *ratio);
            e.emit("Dropout", name, vec![x, r], outs, vec![]);
        }
        Op::Identity => e.emit("Identity", name, ins, outs, vec![]),
        other => return Err(format!("{} is not exported here", other.onnx_type())),
    }
    Ok(())
}

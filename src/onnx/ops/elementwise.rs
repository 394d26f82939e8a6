use super::emit::{Emitter, Parts, parts};
use super::{Ctx, Lowered};
use crate::graph::Node;
use crate::graph::{Binary, Nary, Op};

pub fn binary(ctx: &Ctx) -> Result<Lowered, String> {
    let b = Binary::ALL
        .into_iter()
        .find(|b| b.onnx_name() == ctx.node.op_type)
        .ok_or("not a binary op")?;
    if ctx.inputs.len() != 2 {
        return Err(format!("{} inputs; Graft supports 2", ctx.inputs.len()));
    }
    // Opset < 7 used an explicit `broadcast`/`axis`; every file from a modern exporter uses
    // NumPy broadcasting.
    if ctx.attrs.has("axis") {
        return Err("legacy broadcast with an axis (opset < 7) is not supported".into());
    }
    Ok(Lowered::new(Op::Binary(b), ctx.keep(&[0, 1])))
}

pub fn nary(ctx: &Ctx) -> Result<Lowered, String> {
    let n = Nary::ALL
        .into_iter()
        .find(|n| n.onnx_name() == ctx.node.op_type)
        .ok_or("not an n-ary op")?;
    let all: Vec<usize> = (0..ctx.inputs.len()).collect();
    if all.is_empty() {
        return Err("no inputs".into());
    }
    Ok(Lowered::new(Op::Nary(n), ctx.keep(&all)))
}

/// Writes a node of this family (the dispatch is `exporter` in `ops/mod.rs`).
pub fn export(e: &mut Emitter, node: &Node) -> Result<(), String> {
    let Parts {
        name, ins, outs, ..
    } = parts(node);
    match &node.op {
        Op::Binary(b) => e.emit(b.onnx_name(), name, ins, outs, vec![]),
        Op::Nary(n) => e.emit(n.onnx_name(), name, ins, outs, vec![]),
        other => return Err(format!("{} is not exported here", other.onnx_type())),
    }
    Ok(())
}

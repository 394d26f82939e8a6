use super::emit::{Emitter, Parts, attr_float, attr_int, parts, trim};
use super::{Ctx, Lowered};
use crate::graph::Node;
use crate::graph::Op;

pub fn gemm(ctx: &Ctx) -> Result<Lowered, String> {
    Ok(Lowered::new(
        Op::Gemm {
            alpha: ctx.attrs.float("alpha", 1.0),
            beta: ctx.attrs.float("beta", 1.0),
            trans_a: ctx.attrs.int("transA", 0) != 0,
            trans_b: ctx.attrs.int("transB", 0) != 0,
        },
        ctx.keep(&[0, 1, 2]),
    ))
}

pub fn matmul(ctx: &Ctx) -> Result<Lowered, String> {
    Ok(Lowered::new(Op::MatMul, ctx.keep(&[0, 1])))
}

/// Writes a node of this family (the dispatch is `exporter` in `ops/mod.rs`).
pub fn export(e: &mut Emitter, node: &Node) -> Result<(), String> {
    let Parts {
        name, ins, outs, ..
    } = parts(node);
    match &node.op {
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => {
            let attrs = vec![
                attr_float("alpha", *alpha),
                attr_float("beta", *beta),
                attr_int("transA", *trans_a as i64),
                attr_int("transB", *trans_b as i64),
            ];
            e.emit("Gemm", name, trim(ins), outs, attrs);
        }
        Op::MatMul => e.emit("MatMul", name, ins, outs, vec![]),
        other => return Err(format!("{} is not exported here", other.onnx_type())),
    }
    Ok(())
}

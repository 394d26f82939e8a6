use super::{Ctx, Lowered};
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

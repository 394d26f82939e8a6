use super::emit::{Emitter, Parts, attr_float, attr_int, parts, trim};
use super::{Ctx, Lowered};
use crate::graph::Node;
use crate::graph::Op;

pub fn batch_norm(ctx: &Ctx) -> Result<Lowered, String> {
    for (i, what) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")] {
        ctx.require_constant(i, what)?;
    }
    if ctx.attrs.int("training_mode", 0) != 0 {
        return Err("training_mode=1 (batch statistics at inference) is not supported".into());
    }
    // Opsets 1–8: `spatial=0` keeps statistics per activation, not per channel. (`is_test`
    // of opsets 1–6 is ignored, as ONNX Runtime does: an imported network is evaluated with
    // its running statistics.)
    if ctx.opset < 9 && ctx.attrs.int("spatial", 1) == 0 {
        return Err("spatial=0 (statistics per activation) is not supported".into());
    }
    Ok(Lowered::new(
        Op::BatchNorm {
            epsilon: ctx.attrs.float("epsilon", 1e-5),
            momentum: ctx.attrs.float("momentum", 0.9),
        },
        ctx.keep(&[0, 1, 2, 3, 4]),
    ))
}

pub fn layer_norm(ctx: &Ctx) -> Result<Lowered, String> {
    ctx.require_constant(1, "scale")?;
    if ctx.present(2) {
        ctx.require_constant(2, "bias")?;
    }
    Ok(Lowered::new(
        Op::LayerNorm {
            axis: ctx.attrs.int("axis", -1),
            epsilon: ctx.attrs.float("epsilon", 1e-5),
        },
        ctx.keep(&[0, 1, 2]),
    ))
}

pub fn lrn(ctx: &Ctx) -> Result<Lowered, String> {
    let size = ctx.attrs.int("size", 0);
    if size < 1 {
        return Err("size must be a positive integer".into());
    }
    Ok(Lowered::new(
        Op::Lrn {
            size: size as usize,
            alpha: ctx.attrs.float("alpha", 1e-4),
            beta: ctx.attrs.float("beta", 0.75),
            bias: ctx.attrs.float("bias", 1.0),
        },
        ctx.keep(&[0]),
    ))
}

/// Writes a node of this family (the dispatch is `exporter` in `ops/mod.rs`).
pub fn export(e: &mut Emitter, node: &Node) -> Result<(), String> {
    let Parts {
        name, ins, outs, ..
    } = parts(node);
    match &node.op {
        Op::BatchNorm { epsilon, momentum } => {
            e.emit(
                "BatchNormalization",
                name,
                ins,
                outs,
                vec![
                    attr_float("epsilon", *epsilon),
                    attr_float("momentum", *momentum),
                ],
            );
        }
        Op::LayerNorm { axis, epsilon } => {
            e.emit(
                "LayerNormalization",
                name,
                trim(ins),
                outs,
                vec![attr_int("axis", *axis), attr_float("epsilon", *epsilon)],
            );
        }
        Op::Lrn {
            size,
            alpha,
            beta,
            bias,
        } => {
            let attrs = vec![
                attr_int("size", *size as i64),
                attr_float("alpha", *alpha),
                attr_float("beta", *beta),
                attr_float("bias", *bias),
            ];
            e.emit("LRN", name, ins, outs, attrs);
        }
        other => return Err(format!("{} is not exported here", other.onnx_type())),
    }
    Ok(())
}

use super::{Ctx, Lowered};
use crate::graph::{Op, Unary};

pub fn unary(ctx: &Ctx) -> Result<Lowered, String> {
    let u = Unary::ALL
        .into_iter()
        .find(|u| u.onnx_name() == ctx.node.op_type)
        .ok_or("not an element-wise function")?;
    Ok(Lowered::new(Op::Unary(u), ctx.keep(&[0])))
}

pub fn parametric(ctx: &Ctx) -> Result<Lowered, String> {
    let a = &ctx.attrs;
    let op = match ctx.node.op_type.as_str() {
        "LeakyRelu" => Op::LeakyRelu {
            alpha: a.float("alpha", 0.01),
        },
        "Elu" => Op::Elu {
            alpha: a.float("alpha", 1.0),
        },
        "HardSigmoid" => Op::HardSigmoid {
            alpha: a.float("alpha", 0.2),
            beta: a.float("beta", 0.5),
        },
        _ => Op::Gelu {
            tanh: a.string("approximate").as_deref() == Some("tanh"),
        },
    };
    Ok(Lowered::new(op, ctx.keep(&[0])))
}

pub fn clip(ctx: &Ctx) -> Result<Lowered, String> {
    let (min, max) = if ctx.opset < 11 {
        (
            ctx.attrs
                .has("min")
                .then(|| ctx.attrs.float("min", f32::MIN)),
            ctx.attrs
                .has("max")
                .then(|| ctx.attrs.float("max", f32::MAX)),
        )
    } else {
        let bound = |i: usize, what: &str| -> Result<Option<f32>, String> {
            if !ctx.present(i) {
                return Ok(None);
            }
            let t = ctx.require_constant(i, what)?;
            t.scalar_f32()
                .map(Some)
                .ok_or(format!("{what} is not a scalar"))
        };
        (bound(1, "min")?, bound(2, "max")?)
    };
    Ok(Lowered::new(Op::Clip { min, max }, ctx.keep(&[0])))
}

pub fn softmax(ctx: &Ctx) -> Result<Lowered, String> {
    let old = ctx.opset < 13;
    let axis = ctx.attrs.int("axis", if old { 1 } else { -1 });
    // The opset < 13 coercion to 2-D changes nothing when the axis is the last one.
    let last = ctx
        .shape(0)
        .is_ok_and(|s| axis == -1 || axis == s.len() as i64 - 1);
    let legacy = old && !last;
    let op = if ctx.node.op_type == "Softmax" {
        Op::Softmax { axis, legacy }
    } else {
        Op::LogSoftmax { axis, legacy }
    };
    Ok(Lowered::new(op, ctx.keep(&[0])))
}

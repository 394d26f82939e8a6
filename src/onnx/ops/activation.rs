use super::emit::{Emitter, Parts, attr_float, attr_int, attr_string, parts, trim};
use super::{Ctx, Lowered};
use crate::graph::Node;
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

/// Writes a node of this family (the dispatch is `exporter` in `ops/mod.rs`).
pub fn export(e: &mut Emitter, node: &Node) -> Result<(), String> {
    let Parts { name, ins, outs, x } = parts(node);
    match &node.op {
        Op::Unary(Unary::Silu) => {
            // No ONNX op before opset 22's Swish: x * sigmoid(x).
            let s = e.fresh(&format!("{name}/sigmoid"));
            e.emit(
                "Sigmoid",
                &format!("{name}/Sigmoid"),
                vec![x.clone()],
                vec![s.clone()],
                vec![],
            );
            e.emit("Mul", name, vec![x, s], outs, vec![]);
        }
        Op::Unary(Unary::Mish) => {
            // Mish is opset 18: x * tanh(softplus(x)).
            let sp = e.fresh(&format!("{name}/softplus"));
            let th = e.fresh(&format!("{name}/tanh"));
            e.emit(
                "Softplus",
                &format!("{name}/Softplus"),
                vec![x.clone()],
                vec![sp.clone()],
                vec![],
            );
            e.emit(
                "Tanh",
                &format!("{name}/Tanh"),
                vec![sp],
                vec![th.clone()],
                vec![],
            );
            e.emit("Mul", name, vec![x, th], outs, vec![]);
        }
        Op::Unary(u) => e.emit(u.onnx_name(), name, ins, outs, vec![]),
        Op::LeakyRelu { alpha } => e.emit(
            "LeakyRelu",
            name,
            ins,
            outs,
            vec![attr_float("alpha", *alpha)],
        ),
        Op::Elu { alpha } => e.emit("Elu", name, ins, outs, vec![attr_float("alpha", *alpha)]),
        Op::HardSigmoid { alpha, beta } => e.emit(
            "HardSigmoid",
            name,
            ins,
            outs,
            vec![attr_float("alpha", *alpha), attr_float("beta", *beta)],
        ),
        Op::Clip { min, max } => {
            let lo = min.map(|v| e.scalar(name, "min", v)).unwrap_or_default();
            let hi = max.map(|v| e.scalar(name, "max", v)).unwrap_or_default();
            e.emit("Clip", name, trim(vec![x, lo, hi]), outs, vec![]);
        }
        Op::Gelu { tanh } => e.emit(
            "Gelu",
            name,
            ins,
            outs,
            vec![attr_string(
                "approximate",
                if *tanh { "tanh" } else { "none" },
            )],
        ),
        Op::Softmax { axis, legacy } | Op::LogSoftmax { axis, legacy } => {
            let op_type = node.op.onnx_type();
            if *legacy {
                // Opset < 13 semantics: softmax over everything from `axis` on.
                let flat = e.fresh(&format!("{name}/flat"));
                let soft = e.fresh(&format!("{name}/soft"));
                let shp = e.fresh(&format!("{name}/shape"));
                e.emit(
                    "Flatten",
                    &format!("{name}/Flatten"),
                    vec![x.clone()],
                    vec![flat.clone()],
                    vec![attr_int("axis", *axis)],
                );
                e.emit(
                    op_type,
                    &format!("{name}/{op_type}"),
                    vec![flat],
                    vec![soft.clone()],
                    vec![attr_int("axis", 1)],
                );
                e.emit(
                    "Shape",
                    &format!("{name}/Shape"),
                    vec![x],
                    vec![shp.clone()],
                    vec![],
                );
                e.emit("Reshape", name, vec![soft, shp], outs, vec![]);
            } else {
                e.emit(op_type, name, ins, outs, vec![attr_int("axis", *axis)]);
            }
        }
        other => return Err(format!("{} is not exported here", other.onnx_type())),
    }
    Ok(())
}

use super::emit::{Emitter, Parts, attr_int, attr_ints, parts, usizes};
use super::{Ctx, Lowered, pair, window_pads};
use crate::graph::Node;
use crate::graph::{Op, Pool};

fn pool(ctx: &Ctx) -> Result<Pool, String> {
    let k = ctx
        .attrs
        .ints("kernel_shape")
        .ok_or("kernel_shape is missing")?;
    if k.len() != 2 || k.iter().any(|&v| v < 1) {
        return Err(format!("kernel_shape {k:?}: Graft supports 2-D pooling"));
    }
    let kernel = [k[0] as usize, k[1] as usize];
    let strides = pair(ctx, "strides", 1)?;
    let dilations = pair(ctx, "dilations", 1)?;
    let pads = window_pads(ctx, kernel, strides, dilations)?;
    Ok(Pool {
        kernel,
        strides,
        pads,
        dilations,
        ceil_mode: ctx.attrs.int("ceil_mode", 0) != 0,
    })
}

pub fn max_pool(ctx: &Ctx) -> Result<Lowered, String> {
    if ctx.attrs.int("storage_order", 0) != 0 {
        return Err("storage_order 1 is not supported".into());
    }
    Ok(Lowered::new(Op::MaxPool(pool(ctx)?), ctx.keep(&[0])))
}

pub fn average_pool(ctx: &Ctx) -> Result<Lowered, String> {
    let p = pool(ctx)?;
    if p.dilations != [1, 1] {
        return Err("dilated average pooling is not supported".into());
    }
    Ok(Lowered::new(
        Op::AveragePool {
            pool: p,
            count_include_pad: ctx.attrs.int("count_include_pad", 0) != 0,
        },
        ctx.keep(&[0]),
    ))
}

pub fn global(ctx: &Ctx) -> Result<Lowered, String> {
    let op = if ctx.node.op_type == "GlobalMaxPool" {
        Op::GlobalMaxPool
    } else {
        Op::GlobalAveragePool
    };
    Ok(Lowered::new(op, ctx.keep(&[0])))
}

/// Writes a node of this family (the dispatch is `exporter` in `ops/mod.rs`).
pub fn export(e: &mut Emitter, node: &Node) -> Result<(), String> {
    let Parts {
        name, ins, outs, ..
    } = parts(node);
    match &node.op {
        Op::MaxPool(p) => {
            let attrs = vec![
                attr_ints("kernel_shape", &usizes(&p.kernel)),
                attr_ints("strides", &usizes(&p.strides)),
                attr_ints("pads", &usizes(&p.pads)),
                attr_ints("dilations", &usizes(&p.dilations)),
                attr_int("ceil_mode", p.ceil_mode as i64),
            ];
            e.emit("MaxPool", name, ins, outs, attrs);
        }
        Op::AveragePool {
            pool: p,
            count_include_pad,
        } => {
            let attrs = vec![
                attr_ints("kernel_shape", &usizes(&p.kernel)),
                attr_ints("strides", &usizes(&p.strides)),
                attr_ints("pads", &usizes(&p.pads)),
                attr_int("ceil_mode", p.ceil_mode as i64),
                attr_int("count_include_pad", *count_include_pad as i64),
            ];
            e.emit("AveragePool", name, ins, outs, attrs);
        }
        Op::GlobalAveragePool => e.emit("GlobalAveragePool", name, ins, outs, vec![]),
        Op::GlobalMaxPool => e.emit("GlobalMaxPool", name, ins, outs, vec![]),
        other => return Err(format!("{} is not exported here", other.onnx_type())),
    }
    Ok(())
}

use super::emit::{Emitter, Parts, attr_int, attr_ints, parts, trim, usizes};
use super::{Ctx, Lowered, pair, window_pads};
use crate::graph::Node;
use crate::graph::{Conv, Op};

pub fn conv(ctx: &Ctx) -> Result<Lowered, String> {
    let w = ctx.require_constant(1, "weight")?;
    if w.shape.len() != 4 {
        return Err(format!(
            "weight shape {:?}: Graft supports 2-D convolutions",
            w.shape
        ));
    }
    if ctx.present(2) {
        ctx.require_constant(2, "bias")?;
    }
    let kernel = [w.shape[2], w.shape[3]];
    if let Some(k) = ctx.attrs.ints("kernel_shape")
        && k != [kernel[0] as i64, kernel[1] as i64]
    {
        return Err(format!(
            "kernel_shape {k:?} disagrees with the weight {:?}",
            w.shape
        ));
    }
    let strides = pair(ctx, "strides", 1)?;
    let dilations = pair(ctx, "dilations", 1)?;
    let groups = ctx.attrs.int("group", 1);
    if groups < 1 {
        return Err(format!("group {groups} must be positive"));
    }
    let pads = window_pads(ctx, kernel, strides, dilations)?;
    Ok(Lowered::new(
        Op::Conv(Conv {
            strides,
            pads,
            dilations,
            groups: groups as usize,
        }),
        ctx.keep(&[0, 1, 2]),
    ))
}

/// Writes a node of this family (the dispatch is `exporter` in `ops/mod.rs`).
pub fn export(e: &mut Emitter, node: &Node) -> Result<(), String> {
    let Parts {
        name, ins, outs, ..
    } = parts(node);
    match &node.op {
        Op::Conv(c) => {
            let attrs = vec![
                attr_ints("strides", &usizes(&c.strides)),
                attr_ints("pads", &usizes(&c.pads)),
                attr_ints("dilations", &usizes(&c.dilations)),
                attr_int("group", c.groups as i64),
            ];
            e.emit("Conv", name, trim(ins), outs, attrs);
        }
        other => return Err(format!("{} is not exported here", other.onnx_type())),
    }
    Ok(())
}

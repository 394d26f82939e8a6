//! Resize (opsets 10–19) and its predecessor Upsample (7–9, read by old Caffe2/MXNet/Keras
//! exports and YOLO necks), both directions.
//!
//! What Graft computes is burn's `interpolate`: nearest with floor sampling, or bilinear with
//! aligned corners or half-pixel centres. Each ONNX spelling is mapped onto one of these only
//! where the two compute the same thing; anything else is refused naming the attribute, so
//! that a network never silently computes something other than its file says.

use super::emit::{Emitter, Parts, attr_string, parts};
use super::{Ctx, Lowered};
use crate::graph::{Node, Op, ResizeMode, resized};

pub fn resize(ctx: &Ctx) -> Result<Lowered, String> {
    let x = ctx.shape(0)?;
    let [_, c, h, w] = x[..] else {
        return Err(format!(
            "a rank-{} input; Graft resizes N×C×H×W images",
            x.len()
        ));
    };
    let upsample = ctx.node.op_type == "Upsample";
    // Upsample and Resize-10 know one coordinate mapping, `asymmetric`; ONNX Runtime samples
    // nearest with floor when enlarging ("simple").
    let old = upsample || ctx.opset < 11;
    let scales = requested_scales(ctx, upsample, [c, h, w])?;
    let out = [resized(h, scales[0]), resized(w, scales[1])];
    let mode = ctx.attrs.string("mode").unwrap_or_else(|| "nearest".into());
    let coordinates = if old {
        "asymmetric".to_owned()
    } else {
        ctx.attrs
            .string("coordinate_transformation_mode")
            .unwrap_or_else(|| "half_pixel".into())
    };
    if ctx.attrs.int("antialias", 0) != 0 && (out[0] < h || out[1] < w) {
        return Err("antialiased downsampling is not supported".into());
    }
    let policy = ctx.attrs.string("keep_aspect_ratio_policy");
    if policy.as_deref().is_some_and(|p| p != "stretch") {
        return Err(format!(
            "keep_aspect_ratio_policy {} is not supported",
            policy.unwrap_or_default()
        ));
    }
    let integer_upscale = out[0].is_multiple_of(h) && out[1].is_multiple_of(w);
    let mode = match mode.as_str() {
        "nearest" => {
            let rounding = if old {
                "floor".to_owned()
            } else {
                ctx.attrs
                    .string("nearest_mode")
                    .unwrap_or_else(|| "round_prefer_floor".into())
            };
            // Floor sampling at x·in/out; with an integer upscale, half-pixel centres rounded
            // either way land on the same pixel.
            let same = match (coordinates.as_str(), rounding.as_str()) {
                ("asymmetric", "floor") => !old || (out[0] >= h && out[1] >= w),
                (
                    "half_pixel" | "pytorch_half_pixel",
                    "round_prefer_floor" | "round_prefer_ceil",
                ) => integer_upscale,
                _ => false,
            };
            if !same {
                return Err(format!(
                    "nearest resize from {h}×{w} to {}×{} with coordinate_transformation_mode \
                     {coordinates} and nearest_mode {rounding}: Graft samples nearest as \
                     asymmetric/floor (any integer upscale is fine)",
                    out[0], out[1]
                ));
            }
            ResizeMode::Nearest
        }
        "linear" | "bilinear" => match coordinates.as_str() {
            "align_corners" => ResizeMode::Linear {
                align_corners: true,
            },
            "half_pixel" => ResizeMode::Linear {
                align_corners: false,
            },
            // Differs from half_pixel only for an output of size 1.
            "pytorch_half_pixel" if out[0] > 1 && out[1] > 1 => ResizeMode::Linear {
                align_corners: false,
            },
            other => {
                return Err(format!(
                    "linear resize with coordinate_transformation_mode {other}: Graft \
                     computes align_corners and half_pixel"
                ));
            }
        },
        other => return Err(format!("{other} resizing is not supported")),
    };
    Ok(Lowered::new(Op::Resize { scales, mode }, ctx.keep(&[0])))
}

/// The height and width scales the node asks for, from `scales` (attribute or input) or
/// `sizes`; a size is turned into the scale that gives exactly it under `floor(in × scale)`.
fn requested_scales(ctx: &Ctx, upsample: bool, [c, h, w]: [usize; 3]) -> Result<[f32; 2], String> {
    let full = |v: Vec<f32>, what: &str| -> Result<[f32; 2], String> {
        match v[..] {
            [n, cs, sh, sw] if n == 1.0 && cs == 1.0 && sh > 0.0 && sw > 0.0 => Ok([sh, sw]),
            _ => Err(format!(
                "{what} {v:?}: Graft resizes height and width only (4 values, the first two 1)"
            )),
        }
    };
    if upsample && ctx.opset < 7 {
        // The experimental Upsample-1: two attributes.
        let scale = |a| ctx.attrs.has(a).then(|| ctx.attrs.float(a, 1.0));
        return match (scale("height_scale"), scale("width_scale")) {
            (Some(sh), Some(sw)) if sh > 0.0 && sw > 0.0 => Ok([sh, sw]),
            _ => Err("height_scale and width_scale must be positive".into()),
        };
    }
    if upsample && ctx.opset < 9 {
        let v = ctx
            .attrs
            .floats("scales")
            .ok_or("its scales attribute is missing")?;
        return full(v, "scales");
    }
    // Upsample-9 and Resize-10: (X, scales); Resize-11+: (X, roi, scales, sizes).
    let (scales_at, sizes_at) = if upsample || ctx.opset < 11 {
        (1, None)
    } else {
        (2, Some(3))
    };
    // Opset 18 lets scales/sizes name some axes only.
    let axes = ctx.attrs.ints("axes");
    let spread = |v: Vec<f32>, fill: f32| -> Result<Vec<f32>, String> {
        let Some(axes) = &axes else { return Ok(v) };
        if axes.len() != v.len() {
            return Err(format!("{} values for axes {axes:?}", v.len()));
        }
        let mut all = vec![fill; 4];
        for (&a, x) in axes.iter().zip(v) {
            let a = if a < 0 { a + 4 } else { a };
            *all.get_mut(a as usize).ok_or("an axis out of range")? = x;
        }
        Ok(all)
    };
    if let Some(sizes) = sizes_at.filter(|&i| ctx.present(i)) {
        let v = ctx.require_constant(sizes, "sizes")?.to_i64();
        let mut v = spread(v.iter().map(|&s| s as f32).collect(), -1.0)?;
        // The batch entry may be whatever batch the file was traced with.
        if let Some(batch) = v.first_mut() {
            *batch = -1.0;
        }
        match v[..] {
            [_, cs, sh, sw] if (cs < 0.0 || cs == c as f32) && sh >= 1.0 && sw >= 1.0 => {
                Ok([exact_scale(h, sh as usize), exact_scale(w, sw as usize)])
            }
            _ => Err(format!("sizes {v:?}: Graft resizes height and width only")),
        }
    } else if ctx.present(scales_at) && !ctx.require_constant(scales_at, "scales")?.is_empty() {
        let v = ctx.require_constant(scales_at, "scales")?.to_f32();
        let scales = full(spread(v, 1.0)?, "scales")?;
        // ONNX samples at 1/scale, Graft at in/out: the same only where in × scale is whole.
        for (side, s) in [h, w].into_iter().zip(scales) {
            let out = side as f32 * s;
            if (out - out.round()).abs() > 1e-3 {
                return Err(format!(
                    "scale {s} on a side of {side} gives {out}, not a whole size; Graft \
                     resizes by whole sizes"
                ));
            }
        }
        Ok(scales)
    } else {
        Err("neither scales nor sizes is given".into())
    }
}

/// The f32 scale closest to `out / size` for which `floor(size × scale) == out`.
fn exact_scale(size: usize, out: usize) -> f32 {
    let mut s = out as f32 / size as f32;
    while resized(size, s) < out {
        s = f32::from_bits(s.to_bits() + 1);
    }
    s
}

/// Writes a node of this family (the dispatch is `exporter` in `ops/mod.rs`).
pub fn export(e: &mut Emitter, node: &Node) -> Result<(), String> {
    let Parts { name, outs, x, .. } = parts(node);
    let Op::Resize { scales, mode } = &node.op else {
        return Err(format!("{} is not exported here", node.op.onnx_type()));
    };
    let s = e.floats(name, "scales", &[1.0, 1.0, scales[0], scales[1]]);
    let attrs = match mode {
        ResizeMode::Nearest => vec![
            attr_string("mode", "nearest"),
            attr_string("coordinate_transformation_mode", "asymmetric"),
            attr_string("nearest_mode", "floor"),
        ],
        ResizeMode::Linear { align_corners } => vec![
            attr_string("mode", "linear"),
            attr_string(
                "coordinate_transformation_mode",
                if *align_corners {
                    "align_corners"
                } else {
                    "half_pixel"
                },
            ),
        ],
    };
    e.emit("Resize", name, vec![x, String::new(), s], outs, attrs);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exact_scale_gives_the_size_asked_for() {
        for (size, out) in [(7, 10), (3, 7), (13, 26), (224, 100), (5, 5), (1000, 999)] {
            let s = exact_scale(size, out);
            assert_eq!(resized(size, s), out, "{size} → {out}");
            assert!((s - out as f32 / size as f32).abs() < 1e-5);
        }
    }
}

//! The 1x1 forward pass that also sums its output for the batch norm that reads it next
//! (an inverted-residual block's expand 1x1 and its first batch norm, `train::conv` handing
//! them on): each task sums the block it has just written, while it is in cache, instead of
//! the batch norm reading the whole activation back from memory (Lite0's 96 x 112 x 112 at
//! batch 32: 154 MB, 7.5 ms a step).

use super::super::columns::{Dst, filled};
use super::super::moments::{merge_moments, plane_moments};
use super::{Act, check_operands, forward_at, mm, multiply_images};
use crate::engine::Precision;
use std::ops::Range;

/// One task's block of the output: image `image`, rows `rows`, a run of `cols` pixels, and
/// each row's run's `(mean, m2)`.
pub(super) struct Block {
    image: usize,
    rows: Range<usize>,
    cols: usize,
    moments: Vec<(f64, f64)>,
}

impl Block {
    /// The moments of `rows` of image `b` at pixels `j0 .. j0 + cols` of `dst` (maps of
    /// `hw` pixels).
    ///
    /// # Safety
    /// Those values are written and nothing writes them meanwhile.
    pub(super) unsafe fn of(dst: &Dst, [b, j0, cols, hw]: [usize; 4], rows: Range<usize>) -> Self {
        let moments = rows
            .clone()
            .map(|r| {
                // SAFETY: as the caller promises.
                let run = unsafe {
                    std::slice::from_raw_parts(
                        dst.ptr().add(b * dst.image_stride + r * hw + j0),
                        cols,
                    )
                };
                plane_moments(run)
            })
            .collect();
        Block {
            image: b,
            rows,
            cols,
            moments,
        }
    }
}

/// [`forward`] without activation at training's `precision`, and each output plane's
/// `(mean, m2)` (plane `b · co +
/// o`, as `moments::plane_moments` gives them and `Stats::from_moments` merges them):
/// the blocks' moments merged per plane in task order. `None` for the moments where Graft's
/// matrix kernel does not run or a task's run may cross images (maps under
/// `mm::Columns::WHOLE_IMAGES_FROM` pixels).
pub fn forward_with_moments(
    xs: &[f32],
    ws: &[f32],
    bs: Option<&[f32]>,
    dims @ [n, c, co, hw]: [usize; 4],
    precision: Precision,
) -> (Vec<f32>, Option<Vec<(f64, f64)>>) {
    if !mm::available() || hw < mm::Columns::WHOLE_IMAGES_FROM {
        return (forward_at(xs, ws, bs, dims, precision), None);
    }
    check_operands(xs, ws, bs, None, dims);
    let packed = mm::PackedA::new(ws, co, c).at(precision);
    let mut blocks = Vec::new();
    // SAFETY: the matrix kernel is there (checked above); `multiply_images` writes all
    // `n × co × hw` values (image stride `co × hw`).
    let out = unsafe {
        filled(n * co * hw, co * hw, |dst| {
            blocks = multiply_images(&packed, (xs, None), [n, c, hw], bs, Act::NONE, dst, true);
        })
    };
    // (count, mean, m2) per plane.
    let mut planes = vec![(0.0, 0.0, 0.0); n * co];
    for block in &blocks {
        for (r, &(mean, m2)) in block.rows.clone().zip(&block.moments) {
            let plane = &mut planes[block.image * co + r];
            *plane = merge_moments(*plane, (block.cols as f64, mean, m2));
        }
    }
    // Every plane whole: its runs' pixels add up to the map (or the kernel ran the other
    // way, one image of a small map, and gave no blocks).
    if planes.iter().any(|&(count, _, _)| count != hw as f64) {
        return (out, None);
    }
    (
        out,
        Some(planes.into_iter().map(|(_, m, m2)| (m, m2)).collect()),
    )
}

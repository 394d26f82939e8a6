//! A 1x1 convolution whose only reader is a depthwise convolution — the expand and depthwise
//! steps of MobileNet's and EfficientNet's inverted-residual blocks — run as one step of an
//! inference plan: each task computes the 1x1 output of one image's block of channels into
//! a buffer that stays in L2, and the depthwise convolution of those planes straight away.
//! The expanded activation, the widest of the block (6× its input), is then never written to
//! memory and read back: at batch 32 it does not fit any cache (144 × 56 × 56 × 32 values
//! are 57 MB), and the depthwise pass was bound by reading it (a third of Lite0's inference
//! time, with its arithmetic a quarter of that).

use super::Act;
use super::blocking;
use super::depthwise::{GROUP, Geometry};
use super::mm;
use super::pointwise::SendPtr;
use rayon::prelude::*;
use std::cell::Cell;
use std::mem::MaybeUninit;

/// The greatest common divisor.
const fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

thread_local! {
    /// Each thread's buffer of 1x1 output planes, kept between tasks and steps.
    static BUFFER: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Channels per task and tasks per image: whole panels of the kernel's rows (whole groups
/// of channels too where the depthwise pass goes by groups), their planes about a quarter
/// of L2 (as `mm`'s packed block: with 64 K values instead of 128 K on the 2 MB Xeon, batch
/// 32 ran 3-5 % slower; 256 K to 1 M were no faster), and enough tasks to give every thread
/// two.
fn channel_blocks(co: usize, hw: usize, n: usize, dw: &Geometry) -> (usize, usize) {
    let threads = rayon::current_num_threads().max(1);
    let by_cache = blocking::block_values() / hw.max(1);
    let by_tasks = co.div_ceil((2 * threads).div_ceil(n.max(1)));
    let unit = if dw.by_channel_groups() {
        mm::MR * GROUP / gcd(mm::MR, GROUP)
    } else {
        mm::MR
    };
    let block = by_cache.min(by_tasks).max(1).next_multiple_of(unit);
    (block, co.div_ceil(block))
}

/// Whether [`forward`] of `n` images of `hw` pixels into `co` channels beats the two
/// convolutions run apart: only when its tasks are at least four a thread. Blocks are
/// whole panels (and groups: 48 channels on narrow maps), so a small batch may split into
/// a few uneven ones — at batch 1, Lite0's 144 channels went as three blocks of 48, one
/// core idle a third of the step, and its 28x28 blocks ran no faster on two cores than on
/// one; apart, each convolution splits finely, and one image's expanded activation (1.8 MB
/// there) is read back from cache anyway. Lite0 batch 1 ran 1.035x (1.01-1.08) apart,
/// MobileNet-v2 0.99x (0.96-1.02).
pub fn pays(co: usize, hw: usize, n: usize, dw: &Geometry) -> bool {
    let (_, blocks) = channel_blocks(co, hw, n, dw);
    n * blocks >= 4 * rayon::current_num_threads().max(1)
}

/// The 1x1 convolution (filters `expand`, `[co, c]` packed, with its bias and activation)
/// of `xs` (`[n, c, hw]`), then `dw` (a depthwise convolution of its `[n, co, h, w]` output,
/// weights `dw_ws`, bias `dw_bs`, activation `dw_act`): the depthwise output, `[n, co, oh,
/// ow]`.
///
/// # Panics
/// When the operands' lengths disagree with the shapes, or `mm` is not available.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    xs: &[f32],
    [n, c, hw]: [usize; 3],
    expand: &mm::PackedA,
    expand_bs: Option<&[f32]>,
    expand_act: Act,
    dw: &Geometry,
    dw_ws: &[f32],
    dw_bs: Option<&[f32]>,
    dw_act: Act,
) -> Vec<f32> {
    assert!(mm::available(), "expand + depthwise: no matrix kernel");
    let co = expand.rows();
    assert_eq!(xs.len(), n * c * hw, "expand + depthwise: input length");
    assert_eq!(expand.k(), c, "expand + depthwise: filter length");
    assert!(
        expand_bs.is_none_or(|b| b.len() == co),
        "expand + depthwise: bias length"
    );
    assert_eq!([dw.n, dw.c], [n, co], "expand + depthwise: depthwise shape");
    let ohw = dw.oh * dw.ow;
    // Narrow maps' depthwise pass goes by groups of channels: blocks of whole groups.
    let grouped = dw.by_channel_groups().then(|| dw.grouped(dw_ws, dw_bs));
    let (block, blocks) = channel_blocks(co, hw, n, dw);
    let len = n * co * ohw;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let dst = SendPtr(out.as_mut_ptr());
    (0..n * blocks).into_par_iter().for_each(|t| {
        let (b, c0) = (t / blocks, (t % blocks) * block);
        let c1 = (c0 + block).min(co);
        let mut planes = BUFFER.take();
        planes.resize(block * hw, 0.0);
        let expanded = mm::Out {
            c: planes.as_mut_ptr(),
            row0: c0,
            ldc: hw,
            cols: hw,
            accumulate: false,
            span: mm::Span::ONE,
        };
        // SAFETY: `mm` runs here (asserted above); image b's input is `c × hw` values
        // (length asserted); rows c0..c1 of the 1x1 output (panels c0 / MR.., c0 a multiple
        // of MR) go to `planes`, which holds `block × hw` values.
        unsafe {
            let x = mm::B::Rows(xs.as_ptr().add(b * c * hw), hw);
            let panels = c0 / mm::MR..c1.div_ceil(mm::MR);
            mm::multiply(expand, panels, x, &expanded, expand_bs, expand_act);
        }
        if let Some(grouped) = &grouped {
            for g0 in (c0..c1).step_by(GROUP) {
                let g1 = (g0 + GROUP).min(c1);
                let input = &planes[(g0 - c0) * hw..(g1 - c0) * hw];
                // SAFETY: as below, for planes g0..g1 of image b.
                let out = unsafe {
                    let at = dst
                        .get()
                        .add((b * co + g0) * ohw)
                        .cast::<MaybeUninit<f32>>();
                    std::slice::from_raw_parts_mut(at, (g1 - g0) * ohw)
                };
                dw.group_of(grouped, g0 / GROUP, input, None, dw_act, out, None);
            }
            BUFFER.set(planes);
            return;
        }
        for ch in c0..c1 {
            let input = &planes[(ch - c0) * hw..(ch - c0 + 1) * hw];
            // SAFETY: tasks write disjoint planes (image b, channels c0..c1), which together
            // cover `out` (`n × co × ohw`); `out` outlives the loop.
            let plane = unsafe {
                let at = dst
                    .get()
                    .add((b * co + ch) * ohw)
                    .cast::<MaybeUninit<f32>>();
                std::slice::from_raw_parts_mut(at, ohw)
            };
            dw.channel(ch, input, None, dw_ws, dw_bs, dw_act, plane);
        }
        BUFFER.set(planes);
    });
    // SAFETY: the loop above wrote every element (see there).
    unsafe { out.set_len(len) };
    out
}

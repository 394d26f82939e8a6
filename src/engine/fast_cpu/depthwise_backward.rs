//! The backward pass of the depthwise convolution (`depthwise.rs`): input, weight and bias
//! gradients, plane by plane in the same zero-bordered scratch layouts as the forward pass.

use super::super::norm::{ChannelGrad, GradMap};
use super::{Act, Affine, Conv, ConvGrads, MaybeUninit, with_avx512};
use super::{Geometry, InputMap, Layout, PlaneMap, SCATTER, Scratch, V, WEIGHT_GRAD, with_scratch};
use rayon::prelude::*;

/// Taps whose weight gradients accumulate in registers together (a 3x3 filter's).
const G: usize = 9;

/// One plane of a deferred batch norm's input gradient, `map(g, y)`, into `out`.
fn stage(out: &mut [f32], g: &[f32], y: &[f32], map: ChannelGrad) {
    with_avx512(
        #[inline(always)]
        || {
            for ((o, &g), &y) in out.iter_mut().zip(g).zip(y) {
                *o = map.apply(g, y);
            }
        },
    )
}

/// A plane's outputs in the backward pass, each there when asked for: its input gradient,
/// its weight and bias gradient partials, its batch norm sums.
type PlaneOut<'a> = (
    (Option<&'a mut [MaybeUninit<f32>]>, Option<&'a mut [f32]>),
    Option<&'a mut (f64, f64)>,
);

/// Each of `planes` items of `outs` as `Some`, or `None` for every plane where `outs` is
/// empty (that output was not asked for).
fn optional<'a, T: Send + 'a>(
    outs: impl IndexedParallelIterator<Item = T> + 'a,
    planes: usize,
) -> impl IndexedParallelIterator<Item = Option<T>> + 'a {
    if outs.len() == 0 {
        rayon::iter::Either::Left((0..planes).into_par_iter().map(|_| None))
    } else {
        rayon::iter::Either::Right(outs.map(Some))
    }
}

impl Geometry {
    /// The gradients of [`Self::forward`] (without clamp) given the output gradient `gs`:
    /// the input gradient when `want_dx`, and the weight and bias gradients when `want_dw`.
    pub fn backward(
        &self,
        xs: &[f32],
        ws: &[f32],
        gs: &[f32],
        want_dx: bool,
        want_dw: bool,
    ) -> ConvGrads {
        self.backward_mapped(xs, None, ws, (gs, None), want_dx, want_dw)
            .0
    }

    /// Whether [`Self::backward_mapped`] takes its output gradient through a batch norm's
    /// gradient map: where both gradients go plane by plane (not by groups of channels),
    /// so that each plane of it can be mapped into the thread's scratch as it is taken.
    pub fn takes_grad_map(&self) -> bool {
        !self.grads_by_channel_groups() && self.transposed().is_none_or(|t| !t.by_channel_groups())
    }

    /// The gradients of [`Self::forward_mapped`] (without clamp): the input gradient is the
    /// normalised input's (`norm` is applied to `xs` where the weight gradient reads it).
    /// With `norm`, also each channel's sums that batch norm's backward pass starts from
    /// (`norm::plane_grad_sums`, added in image order), where the input gradient went plane
    /// by plane or, at a stride other than 1, by groups of channels
    /// (`input_grad_blocked`): each plane's are taken while it is in cache, which spares
    /// batch norm a pass over it and its input. With a gradient map `(y, map)`, the output
    /// gradient is `map(gs, y)` — `gs` the gradient of the batch norm that reads this
    /// convolution's output `y` (`train::deferred`) — each plane mapped into scratch as it
    /// is taken, so that batch norm's input gradient is never written; only where
    /// [`Self::takes_grad_map`].
    pub fn backward_mapped(
        &self,
        xs: &[f32],
        norm: Option<&Affine>,
        ws: &[f32],
        (gs, g_map): (&[f32], Option<(&[f32], &GradMap)>),
        want_dx: bool,
        want_dw: bool,
    ) -> (ConvGrads, Option<Vec<(f64, f64)>>) {
        self.check_operands(xs, ws, None, Some(gs));
        assert!(
            g_map.is_none_or(|(y, m)| y.len() == gs.len() && m.channels() == self.c),
            "depthwise gradients: gradient map lengths"
        );
        assert!(
            g_map.is_none() || self.takes_grad_map(),
            "depthwise gradients: no mapped output gradient here"
        );
        let map = self.input_map(norm);
        let map = map.as_ref();
        let (n, c, hw, ohw, taps) = (
            self.n,
            self.c,
            self.h * self.w,
            self.oh * self.ow,
            self.taps(),
        );
        // With stride 1, the input gradient is itself a depthwise convolution: of the output
        // gradient, with the filter turned half a circle, so it runs the forward kernel.
        let transposed = self.transposed();
        let flipped: Vec<f32> = match &transposed {
            Some(_) => ws
                .chunks_exact(taps)
                .flat_map(|f| f.iter().rev().copied())
                .collect(),
            None => Vec::new(),
        };
        // On narrow maps the forward pass goes by groups of channels (`depthwise_blocked`):
        // the stride-1 input gradient too (it is that forward pass), as a pass of its own
        // before the weight gradient's. With the weight gradient below, Lite0's 1152-channel
        // 7x7 layer went from 0.22 to 0.11-0.14 s per 8 fine-tuning steps.
        let (grouped_dx, grouped_sums) = match &transposed {
            Some(t) if want_dx && t.by_channel_groups() => {
                (Some(t.forward(gs, &flipped, None, Act::NONE)), None)
            }
            // Other strides: the gradients scattered into a group's bordered buffer, with
            // the batch norm's sums as each group's planes are written.
            _ if want_dx && self.grads_by_channel_groups() => {
                let (dx, sums) = self.input_grad_blocked(ws, gs, norm.map(|f| (xs, f)));
                (Some(dx), sums)
            }
            _ => (None, None),
        };
        let want_dx = want_dx && grouped_dx.is_none();
        // The weight gradient likewise, by groups of channels on narrow maps.
        let grouped_dw = (want_dw && self.grads_by_channel_groups())
            .then(|| self.weight_grad_blocked(xs, map, gs));
        let want_dw = want_dw && grouped_dw.is_none();
        // Per plane: its share of the weight gradient (taps) and of the bias gradient (1),
        // summed over the images below, so that planes stay independent tasks; and of batch
        // norm's sums.
        let mut partial = vec![0.0f32; if want_dw { n * c * (taps + 1) } else { 0 }];
        let want_sums = want_dx && norm.is_some();
        let mut plane_sums = vec![(0.0f64, 0.0f64); if want_sums { n * c } else { 0 }];
        let dx_len = if want_dx { n * c * hw } else { 0 };
        let mut dx: Vec<f32> = Vec::with_capacity(dx_len);
        let dx_planes = dx.spare_capacity_mut()[..dx_len].par_chunks_mut(hw.max(1));
        let partials = partial.par_chunks_mut(taps + 1);
        let sums = plane_sums.par_iter_mut();
        let per_plane = |(plane, ((dx, part), sums)): (usize, PlaneOut)| {
            with_scratch(|scratch: &mut Scratch| {
                let ch = plane % c;
                let input = &xs[plane * hw..(plane + 1) * hw];
                let filter = &ws[ch * taps..(ch + 1) * taps];
                let at = plane * ohw..(plane + 1) * ohw;
                // The plane's output gradient: in place, or mapped into scratch.
                let mut staged = std::mem::take(&mut scratch.g);
                let g = match g_map {
                    None => &gs[at],
                    Some((y, m)) => {
                        staged.resize(ohw, 0.0);
                        stage(&mut staged, &gs[at.clone()], &y[at], m.channel(ch));
                        &staged[..]
                    }
                };
                if let Some(part) = part {
                    self.weight_grad(input, InputMap::of(map, ch), g, part, scratch);
                }
                if let Some(dx) = dx {
                    match &transposed {
                        Some(t) => {
                            let flipped = &flipped[ch * taps..(ch + 1) * taps];
                            t.plane(g, None, flipped, 0.0, Act::NONE, dx, &mut scratch.a);
                        }
                        None if self.grads_in_place() => self.input_grad_in_place(filter, g, dx),
                        None => self.input_grad_scatter(filter, g, dx, &mut scratch.a),
                    }
                    if let (Some(sums), Some(norm)) = (sums, norm) {
                        // SAFETY: the plane was written whole just above; `MaybeUninit<f32>`
                        // has the layout of `f32`.
                        let dx = unsafe { &*(dx as *const [MaybeUninit<f32>] as *const [f32]) };
                        *sums = super::super::norm::plane_grad_sums(dx, input, norm, ch);
                    }
                }
                scratch.g = staged;
            })
        };
        if want_dx || want_dw {
            let planes = n * c;
            optional(dx_planes, planes)
                .zip(optional(partials, planes))
                .zip(optional(sums, planes))
                .enumerate()
                .for_each(per_plane);
        }
        // SAFETY: every plane of `dx` was written above (`plane` and `input_grad_scatter`
        // write every element).
        unsafe { dx.set_len(dx_len) };
        let dw = grouped_dw.or_else(|| {
            want_dw.then(|| {
                let mut dw = vec![0.0f32; c * taps];
                let mut db = vec![0.0f32; c];
                for image in partial.chunks_exact(c * (taps + 1)) {
                    for (ch, p) in image.chunks_exact(taps + 1).enumerate() {
                        for (d, v) in dw[ch * taps..(ch + 1) * taps].iter_mut().zip(p) {
                            *d += v;
                        }
                        db[ch] += p[taps];
                    }
                }
                (dw, db)
            })
        });
        let grads = ConvGrads {
            x: grouped_dx.or(want_dx.then_some(dx)),
            weight_bias: dw,
        };
        let want_sums = want_sums || grouped_sums.is_some();
        let plane_sums = grouped_sums.unwrap_or(plane_sums);
        let sums = want_sums.then(|| {
            let mut totals = vec![(0.0f64, 0.0f64); c];
            for image in plane_sums.chunks_exact(c) {
                for (t, s) in totals.iter_mut().zip(image) {
                    (t.0, t.1) = (t.0 + s.0, t.1 + s.1);
                }
            }
            totals
        });
        (grads, sums)
    }

    /// For stride 1: the convolution that maps an output gradient plane to the input
    /// gradient plane (same dilation, the filter turned around, the padding mirrored).
    /// `None` for other strides, or padding wider than the filter's span.
    fn transposed(&self) -> Option<Geometry> {
        if self.stride != [1, 1] {
            return None;
        }
        let [dh, dw] = self.dilation;
        let (reach_h, reach_w) = (dh * (self.kh - 1), dw * (self.kw - 1));
        let [top, left] = self.pad;
        // Forward: oh = h + top + bottom - reach_h, so the far pads follow.
        let bottom = (self.oh + reach_h).checked_sub(self.h + top)?;
        let right = (self.ow + reach_w).checked_sub(self.w + left)?;
        let pads = [
            reach_h.checked_sub(top)?,
            reach_w.checked_sub(left)?,
            reach_h.checked_sub(bottom)?,
            reach_w.checked_sub(right)?,
        ];
        let conv = Conv {
            strides: [1, 1],
            pads,
            dilations: self.dilation,
            groups: self.c,
        };
        let t = Geometry::new(
            [self.n, self.c, self.oh, self.ow],
            [self.c, 1, self.kh, self.kw],
            &conv,
        )?;
        (t.oh == self.h && t.ow == self.w).then_some(t)
    }

    /// One plane's weight gradient (one value per tap) then bias gradient, into `part`:
    /// dW[tap] = Σ over outputs of g · (the input value the tap read). The output gradient
    /// is copied into rows of whole vectors (zeros beyond the last column); then for each
    /// vector of it, up to `G` taps accumulate in registers, each with one load of input.
    fn weight_grad(
        &self,
        input: &[f32],
        map: Option<PlaneMap>,
        g: &[f32],
        part: &mut [f32],
        Scratch {
            a: xpad, b: gpad, ..
        }: &mut Scratch,
    ) {
        // Large 3x3 stride-1 maps read in place, as the forward pass does (the bordered copy
        // was about a third of the forward's time there).
        if self.reads_in_place() {
            return self.weight_grad_in_place(input, map, g, part);
        }
        let Layout { p, offsets } = &self.layouts[WEIGHT_GRAD];
        self.fill(p, input, map, xpad);
        let (oh, ow) = (self.oh, self.ow);
        let ow_v = ow.div_ceil(V) * V;
        // Rows of whole vectors: the plane itself where they are already (Lite0's 112, 56).
        let gpad: &[f32] = if ow == ow_v {
            g
        } else {
            gpad.clear();
            gpad.resize(oh * ow_v, 0.0);
            for (dst, row) in gpad.chunks_exact_mut(ow_v).zip(g.chunks_exact(ow)) {
                dst[..ow].copy_from_slice(row);
            }
            gpad
        };
        let step = self.stride[0] * p.pw;
        // The furthest any read reaches (unused taps of a group read at offset 0).
        let furthest = offsets.iter().copied().max().unwrap_or(0) + (oh - 1) * step + ow_v;
        assert!(furthest <= xpad.len(), "depthwise scratch too small");
        for (group, first) in offsets.chunks(G).zip((0..).step_by(G)) {
            let mut at = [0usize; G];
            at[..group.len()].copy_from_slice(group);
            let (sums, g_sum) = tap_sums(xpad, gpad, ow_v, step, &at);
            part[first..first + group.len()].copy_from_slice(&sums[..group.len()]);
            // The bias gradient, from the first group's pass over the gradient.
            if first == 0 {
                part[self.taps()] = g_sum;
            }
        }
    }

    /// One plane's input gradient for any stride: each output's gradient flows back to every
    /// input value it read, scattered into a zero-bordered scratch plane laid out like the
    /// forward one (so each tap adds a contiguous run), then unbordered into `dx`.
    fn input_grad_scatter(
        &self,
        filter: &[f32],
        g: &[f32],
        dx: &mut [MaybeUninit<f32>],
        dpad: &mut Vec<f32>,
    ) {
        let Layout { p, offsets } = &self.layouts[SCATTER];
        let step = self.stride[0] * p.pw;
        let ow = self.ow;
        dpad.clear();
        dpad.resize(self.stride[1] * p.rows * p.pw, 0.0);
        // 16 lanes where the CPU has them: Lite0's 56-value rows are 3.5 vectors, not 7
        // (the 112x112 block's stride-2 input gradient 39-40 -> 35-36 ms in a timing loop).
        with_avx512(
            #[inline(always)]
            || {
                for (r, g_row) in g.chunks_exact(ow).enumerate() {
                    for (&at, &wv) in offsets.iter().zip(filter) {
                        let d = &mut dpad[at + r * step..at + r * step + ow];
                        for (d, &gv) in d.iter_mut().zip(g_row) {
                            *d += gv * wv;
                        }
                    }
                }
            },
        );
        self.unfill(p, dpad, dx);
    }
}

/// Per tap of a group: Σ over the rows r and vectors o of `gpad` (rows of `ow_v`) of
/// g · xpad[at + r * step + o]; and Σ g, in vector lanes alongside (a plain sum over the
/// plane is a chain of dependent adds, 4 cycles a value: it took longer than all the taps'
/// products on Lite0's 112x112 planes). Checks that every read stays inside `xpad` before
/// any (the AVX2 path reads unchecked).
fn tap_sums(
    xpad: &[f32],
    gpad: &[f32],
    ow_v: usize,
    step: usize,
    at: &[usize; G],
) -> ([f32; G], f32) {
    assert!(
        ow_v > 0 && ow_v.is_multiple_of(V) && gpad.len().is_multiple_of(ow_v),
        "tap_sums: rows of whole vectors"
    );
    let rows = gpad.len() / ow_v;
    if rows == 0 {
        return ([0.0; G], 0.0);
    }
    let furthest = at.iter().copied().max().unwrap_or(0) + (rows - 1) * step + ow_v;
    assert!(furthest <= xpad.len(), "tap_sums: reads past the scratch");
    #[cfg(target_arch = "x86_64")]
    if super::super::has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above); reads stay inside `xpad`
        // (asserted above) and `gpad` (whole rows of whole vectors, asserted above).
        return unsafe { tap_sums_avx2(xpad, gpad, ow_v, step, at) };
    }
    let mut acc = [[0.0f32; V]; G];
    let mut g_sum = [0.0f32; V];
    for (r, g_row) in gpad.chunks_exact(ow_v).enumerate() {
        for (o, gv) in g_row.chunks_exact(V).enumerate() {
            let base = r * step + o * V;
            for (acc, &at) in acc.iter_mut().zip(at) {
                let x = &xpad[at + base..at + base + V];
                for t in 0..V {
                    acc[t] += gv[t] * x[t];
                }
            }
            for t in 0..V {
                g_sum[t] += gv[t];
            }
        }
    }
    (acc.map(|a| a.iter().sum()), g_sum.iter().sum())
}

/// [`tap_sums`] with the `G` accumulators in AVX registers (written with intrinsics: the
/// compiler's vectoriser leaves the portable version's 72 scalar sums on the stack).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tap_sums_avx2(
    xpad: &[f32],
    gpad: &[f32],
    ow_v: usize,
    step: usize,
    at: &[usize; G],
) -> ([f32; G], f32) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); G];
    let mut g_sum = _mm256_setzero_ps();
    let xp = xpad.as_ptr();
    for (r, g_row) in gpad.chunks_exact(ow_v).enumerate() {
        for o in (0..ow_v).step_by(V) {
            // SAFETY: o + V <= ow_v = g_row.len(); the x reads are the caller's check.
            unsafe {
                let gv = _mm256_loadu_ps(g_row.as_ptr().add(o));
                g_sum = _mm256_add_ps(g_sum, gv);
                let base = r * step + o;
                for t in 0..G {
                    let x = _mm256_loadu_ps(xp.add(at[t] + base));
                    acc[t] = _mm256_fmadd_ps(gv, x, acc[t]);
                }
            }
        }
    }
    let total = |a| {
        let mut lanes = [0.0f32; V];
        // SAFETY: `lanes` holds exactly one vector.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), a) };
        lanes.iter().sum()
    };
    (acc.map(total), total(g_sum))
}

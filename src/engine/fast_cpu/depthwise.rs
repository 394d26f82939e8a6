//! Depthwise convolution (one filter per channel) on plain `f32` slices in NCHW order: the
//! forward pass with a fused bias and activation here, the backward pass (input, weight and
//! bias gradients) in `depthwise_backward.rs`. Each channel of each image is one task, worked
//! in a zero-bordered scratch copy of its plane that fits in L2.

use super::moments::plane_moments;
use super::norm::Affine;
pub(super) use super::norm::{InputMap, PlaneMap};
use super::{Act, ConvGrads, clamp1, conv_output, with_avx512};
use crate::graph::Conv;
use rayon::prelude::*;
use std::mem::MaybeUninit;

// The backward pass (input, weight and bias gradients). By `path`, so that the file is found
// the same way here and where `tools/miri` includes this one.
#[path = "depthwise_backward.rs"]
mod backward;
#[path = "depthwise_blocked.rs"]
mod blocked;
#[path = "depthwise_in_place.rs"]
mod in_place;
#[path = "depthwise_stride2.rs"]
mod stride2;
#[path = "depthwise_wide.rs"]
mod wide;
pub use blocked::L as GROUP;

/// Outputs computed together, held in registers across every kernel tap.
const V: usize = 8;

/// A plane kernel's activation: the clamp it applies in registers as it writes, and the
/// activation (SiLU) left for a pass over the finished plane.
fn clamp_then(act: Act) -> ((f32, f32), Option<Act>) {
    match act {
        Act::Clamp(lo, hi) => ((lo, hi), None),
        Act::Silu => ((f32::NEG_INFINITY, f32::INFINITY), Some(act)),
    }
}

/// Scratch planes.
#[derive(Default)]
struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
    /// The backward pass's output gradient plane taken through a batch norm's gradient
    /// map (`Geometry::backward_mapped`).
    g: Vec<f32>,
}

thread_local! {
    /// Each thread's scratch planes, kept between planes and convolutions: a set per rayon
    /// split was a fresh allocation each time, its pages zeroed by the kernel.
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch planes.
/// A plane its writer has filled, read back.
///
/// # Safety
/// Every element of `o` is initialised.
unsafe fn written(o: &[MaybeUninit<f32>]) -> &[f32] {
    // SAFETY: as the caller promises; `MaybeUninit<f32>` has the layout of `f32`.
    unsafe { &*(o as *const [MaybeUninit<f32>] as *const [f32]) }
}

fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    let mut s = SCRATCH.take();
    let r = f(&mut s);
    SCRATCH.set(s);
    r
}

/// The shape of one depthwise convolution, per plane.
#[derive(Clone, Debug)]
pub struct Geometry {
    pub n: usize,
    pub c: usize,
    h: usize,
    w: usize,
    pub oh: usize,
    pub ow: usize,
    kh: usize,
    kw: usize,
    pub stride: [usize; 2],
    dilation: [usize; 2],
    pad: [usize; 2],
    /// Scratch layouts, computed once per convolution (not per plane): the forward kernel's
    /// (outputs `forward_block()` at a time), the weight gradient's (whole vectors) and the
    /// input-gradient scatter's (single outputs).
    layouts: [Layout; 3],
}

/// A scratch layout and where each tap reads in it.
#[derive(Clone, Debug, Default)]
struct Layout {
    p: Padded,
    /// Per tap: where output (row 0, column 0) reads. Output (r, o) reads
    /// `offset + r * sh * pw + o`.
    offsets: Vec<usize>,
}

const FORWARD: usize = 0;
const WEIGHT_GRAD: usize = 1;
const SCATTER: usize = 2;

/// Where a plane sits in its scratch buffer: `phases` copies (one per column phase when the
/// stride is s > 1: column j*s + p goes to phase p) of `rows` rows of `pw` values.
#[derive(Clone, Debug, Default)]
struct Padded {
    rows: usize,
    pw: usize,
}

impl Geometry {
    /// The geometry of `conv` on an input of `dims` with a weight of `weight_dims`, when it is
    /// a depthwise convolution with a non-empty result.
    pub fn new(dims: [usize; 4], weight_dims: [usize; 4], conv: &Conv) -> Option<Self> {
        let [n, c, h, w] = dims;
        let [co, per_group, kh, kw] = weight_dims;
        if conv.groups != c || co != c || per_group != 1 || kh * kw == 0 || n * c == 0 {
            return None;
        }
        let [oh, ow] = conv_output([h, w], [kh, kw], conv.strides, conv.dilations, conv.pads)?;
        let mut g = Geometry {
            n,
            c,
            h,
            w,
            oh,
            ow,
            kh,
            kw,
            stride: conv.strides,
            dilation: conv.dilations,
            pad: [conv.pads[0], conv.pads[1]],
            layouts: Default::default(),
        };
        // The forward layout also covers whole 16-lane vectors across (`depthwise_wide.rs`).
        g.layouts = [g.forward_block().max(wide::L), V, 1].map(|block| {
            let p = g.padded(block);
            Layout {
                offsets: g.tap_offsets(&p),
                p,
            }
        });
        Some(g)
    }

    /// Outputs the forward kernel computes at once: wide rows take 4 vectors per step, so
    /// each tap's bookkeeping feeds 4 FMAs; narrow rows (7 or 14 columns deep in a network)
    /// one.
    fn forward_block(&self) -> usize {
        if self.ow >= 4 * V { 4 * V } else { V }
    }

    /// The slices a pass reads have the lengths this convolution's dimensions say (the
    /// kernels index and read unchecked on that basis).
    fn check_operands(&self, xs: &[f32], ws: &[f32], bs: Option<&[f32]>, gs: Option<&[f32]>) {
        assert_eq!(
            xs.len(),
            self.n * self.c * self.h * self.w,
            "depthwise: input length"
        );
        assert_eq!(ws.len(), self.c * self.taps(), "depthwise: weight length");
        if let Some(bs) = bs {
            assert_eq!(bs.len(), self.c, "depthwise: bias length");
        }
        if let Some(gs) = gs {
            assert_eq!(gs.len(), self.output_len(), "depthwise: gradient length");
        }
    }

    /// The map of `norm` (one value per channel in each of its slices).
    fn input_map(&self, norm: Option<&Affine>) -> Option<InputMap> {
        let norm = norm?;
        for v in [norm.mean, norm.inv_std, norm.gamma, norm.beta] {
            assert_eq!(v.len(), self.c, "depthwise: batch norm length");
        }
        Some(InputMap::new(norm, self.c))
    }

    pub fn output_len(&self) -> usize {
        self.n * self.c * self.oh * self.ow
    }

    fn taps(&self) -> usize {
        self.kh * self.kw
    }

    /// The scratch layout when outputs are produced `block` at a time: rows the last output
    /// row reaches, columns the last block of outputs reaches (beyond the real padding, zeros
    /// that only unused lanes read).
    fn padded(&self, block: usize) -> Padded {
        let [sh, sw] = self.stride;
        let [dh, dw] = self.dilation;
        let [top, left] = self.pad;
        let rows = ((self.oh - 1) * sh + (self.kh - 1) * dh + 1).max(top + self.h);
        let cols = ((self.ow.div_ceil(block) * block - 1) * sw + (self.kw - 1) * dw + 1)
            .max(left + self.w);
        Padded {
            rows,
            pw: cols.div_ceil(sw),
        }
    }

    /// Copies `input` (one plane) into `scratch`, zero-bordered and split by column phase.
    /// Only the border is zeroed, not the whole buffer first, and stride 2 splits each row
    /// into its two phases in one pass (a strided scalar copy per phase was 1/12 of a
    /// batch-1 forward pass).
    /// With `map`, each value goes through it on the way (the border stays zero: the
    /// convolution pads the mapped plane).
    /// Compiled for the widest vectors the CPU has: the stride-2 split and the map take
    /// 16 lanes at a time there (baseline x86-64 code moved two values at a time).
    fn fill(&self, p: &Padded, input: &[f32], map: Option<PlaneMap>, scratch: &mut Vec<f32>) {
        with_avx512(
            #[inline(always)]
            || match map {
                None => self.fill_with(p, input, scratch, |v| v),
                Some(m) => self.fill_with(p, input, scratch, |v| m.apply(v)),
            },
        )
    }

    #[inline(always)]
    fn fill_with(&self, p: &Padded, input: &[f32], scratch: &mut Vec<f32>, f: impl Fn(f32) -> f32) {
        let [_, sw] = self.stride;
        let [top, left] = self.pad;
        let (w, plane) = (self.w, p.rows * p.pw);
        // Growing zeroes the new part; every other element is written below.
        scratch.resize(sw * plane, 0.0);
        scratch.truncate(sw * plane);
        // Padded column pc = left + c lands in phase pc % sw at index pc / sw: phase ph holds
        // columns c = first, first + sw, … from index `start` on.
        let run = |ph: usize| {
            let first = (ph + sw - left % sw) % sw;
            let count = w.saturating_sub(first).div_ceil(sw);
            (first, (left + first) / sw, count)
        };
        for (ph, phase) in scratch.chunks_exact_mut(plane).enumerate() {
            let (_, start, count) = run(ph);
            let (above, rest) = phase.split_at_mut(top * p.pw);
            let (inside, below) = rest.split_at_mut(self.h * p.pw);
            above.fill(0.0);
            below.fill(0.0);
            for row in inside.chunks_exact_mut(p.pw) {
                row[..start].fill(0.0);
                row[start + count..].fill(0.0);
            }
        }
        let rows = input.chunks_exact(w).enumerate();
        match sw {
            1 => {
                for (r, in_row) in rows {
                    let at = (top + r) * p.pw + left;
                    for (d, &v) in scratch[at..at + w].iter_mut().zip(in_row) {
                        *d = f(v);
                    }
                }
            }
            2 => {
                // Even columns to one phase, odd to the other, in one pass that vectorises.
                let (a, b) = scratch.split_at_mut(plane);
                let (even, odd) = if left % 2 == 0 { (a, b) } else { (b, a) };
                let (at_even, at_odd) = (left / 2, left.div_ceil(2));
                for (r, in_row) in rows {
                    let at = (top + r) * p.pw;
                    let ev = &mut even[at + at_even..][..w.div_ceil(2)];
                    let od = &mut odd[at + at_odd..][..w / 2];
                    for ((e, o), pair) in
                        ev.iter_mut().zip(od.iter_mut()).zip(in_row.chunks_exact(2))
                    {
                        *e = f(pair[0]);
                        *o = f(pair[1]);
                    }
                    if w % 2 == 1 {
                        ev[w / 2] = f(in_row[w - 1]);
                    }
                }
            }
            _ => {
                for (r, in_row) in rows {
                    for ph in 0..sw {
                        let (first, start, count) = run(ph);
                        let at = (ph * p.rows + top + r) * p.pw + start;
                        let dst = &mut scratch[at..at + count];
                        for (d, &v) in dst.iter_mut().zip(in_row.iter().skip(first).step_by(sw)) {
                            *d = f(v);
                        }
                    }
                }
            }
        }
    }

    /// The inverse of [`Self::fill`]: the plane's values (no border) out of `scratch`,
    /// compiled for the widest vectors the CPU has (baseline x86-64 code interleaved the
    /// stride-2 phases two values at a time: a quarter of a stride-2 input gradient).
    fn unfill(&self, p: &Padded, scratch: &[f32], out: &mut [MaybeUninit<f32>]) {
        with_avx512(
            #[inline(always)]
            || self.unfill_phases(p, scratch, out),
        )
    }

    #[inline(always)]
    fn unfill_phases(&self, p: &Padded, scratch: &[f32], out: &mut [MaybeUninit<f32>]) {
        let [_, sw] = self.stride;
        let [top, left] = self.pad;
        let w = self.w;
        if sw == 2 {
            // The two phases interleaved in one pass that vectorises (as `fill` splits them);
            // a strided write per phase made this half of a stride-2 input gradient.
            let plane = p.rows * p.pw;
            let (a, b) = scratch.split_at(plane);
            let (even, odd) = if left % 2 == 0 { (a, b) } else { (b, a) };
            let (at_even, at_odd) = (left / 2, left.div_ceil(2));
            for (r, out_row) in out.chunks_exact_mut(w).enumerate() {
                let at = (top + r) * p.pw;
                let ev = &even[at + at_even..][..w.div_ceil(2)];
                let od = &odd[at + at_odd..][..w / 2];
                for ((pair, &e), &o) in out_row.chunks_exact_mut(2).zip(ev).zip(od) {
                    pair[0].write(e);
                    pair[1].write(o);
                }
                if w % 2 == 1 {
                    out_row[w - 1].write(ev[w / 2]);
                }
            }
            return;
        }
        for (r, out_row) in out.chunks_exact_mut(w).enumerate() {
            let pr = top + r;
            // Phase by phase, as in `fill`: a contiguous read, a strided write.
            for ph in 0..sw {
                let first = (ph + sw - left % sw) % sw;
                let src_at = (ph * p.rows + pr) * p.pw + (left + first) / sw;
                let src = &scratch[src_at..(ph * p.rows + pr + 1) * p.pw];
                for (d, &v) in out_row.iter_mut().skip(first).step_by(sw).zip(src) {
                    d.write(v);
                }
            }
        }
    }

    /// Per tap: where output (row 0, column 0) reads in the scratch buffer (see `Layout`).
    fn tap_offsets(&self, p: &Padded) -> Vec<usize> {
        let [_, sw] = self.stride;
        let [dh, dw] = self.dilation;
        (0..self.kh)
            .flat_map(|ki| (0..self.kw).map(move |kj| (ki, kj)))
            .map(|(ki, kj)| {
                let pc = kj * dw;
                ((pc % sw) * p.rows + ki * dh) * p.pw + pc / sw
            })
            .collect()
    }

    /// The convolution of every plane of `xs` (NCHW) with its channel's filter in `ws`
    /// (`[c, 1, kh, kw]`), plus bias, through the activation `act`.
    pub fn forward(&self, xs: &[f32], ws: &[f32], bs: Option<&[f32]>, act: Act) -> Vec<f32> {
        self.forward_mapped(xs, ws, bs, act, None)
    }

    /// [`Self::forward`] of `xs` through the batch norm (and clamp) `norm` (see [`InputMap`]).
    pub fn forward_mapped(
        &self,
        xs: &[f32],
        ws: &[f32],
        bs: Option<&[f32]>,
        act: Act,
        norm: Option<&Affine>,
    ) -> Vec<f32> {
        self.forward_planes(xs, ws, bs, act, norm, false).0
    }

    /// [`Self::forward_mapped`], and each output plane's `moments::plane_moments` (plane
    /// `b · c + ch`), summed just after the plane is written, while it is in cache: the
    /// statistics of the batch norm that reads the output next (`train::norm_depthwise`)
    /// without a pass of its own over it.
    pub fn forward_with_moments(
        &self,
        xs: &[f32],
        ws: &[f32],
        bs: Option<&[f32]>,
        norm: Option<&Affine>,
    ) -> (Vec<f32>, Vec<(f64, f64)>) {
        self.forward_planes(xs, ws, bs, Act::NONE, norm, true)
    }

    /// The output, and with `moments` each plane's (else none).
    fn forward_planes(
        &self,
        xs: &[f32],
        ws: &[f32],
        bs: Option<&[f32]>,
        act: Act,
        norm: Option<&Affine>,
        moments: bool,
    ) -> (Vec<f32>, Vec<(f64, f64)>) {
        let (c, hw, ohw) = (self.c, self.h * self.w, self.oh * self.ow);
        self.check_operands(xs, ws, bs, None);
        let map = self.input_map(norm);
        let map = map.as_ref();
        let len = self.output_len();
        let mut out: Vec<f32> = Vec::with_capacity(len);
        let out_planes = &mut out.spare_capacity_mut()[..len];
        let sums = if self.by_channel_groups() {
            self.forward_blocked(xs, ws, bs, act, map, out_planes, moments)
        } else {
            let planes = out_planes.par_chunks_mut(ohw).enumerate();
            let plane = |(plane, o): (usize, &mut [MaybeUninit<f32>])| {
                let input = &xs[plane * hw..(plane + 1) * hw];
                self.channel(plane % c, input, map, ws, bs, act, o);
                // SAFETY: `channel` wrote every element of `o`; `MaybeUninit<f32>` has the
                // layout of `f32`.
                moments.then(|| plane_moments(unsafe { written(o) }))
            };
            if moments {
                planes.map(|p| plane(p).unwrap_or_default()).collect()
            } else {
                planes.for_each(|p| {
                    plane(p);
                });
                Vec::new()
            }
        };
        // SAFETY: `forward_blocked` or `channel` wrote every element of every output plane.
        unsafe { out.set_len(len) };
        (out, sums)
    }

    /// Channel `ch`'s output plane from its input plane (`h × w` values): one task of
    /// [`Self::forward`], for callers that make the input a few planes at a time.
    #[allow(clippy::too_many_arguments)]
    pub fn channel(
        &self,
        ch: usize,
        input: &[f32],
        map: Option<&InputMap>,
        ws: &[f32],
        bs: Option<&[f32]>,
        act: Act,
        out: &mut [MaybeUninit<f32>],
    ) {
        let taps = self.taps();
        assert_eq!(input.len(), self.h * self.w, "depthwise: plane length");
        assert_eq!(
            out.len(),
            self.oh * self.ow,
            "depthwise: output plane length"
        );
        assert_eq!(ws.len(), self.c * taps, "depthwise: weight length");
        assert!(
            bs.is_none_or(|b| b.len() == self.c),
            "depthwise: bias length"
        );
        let filter = &ws[ch * taps..(ch + 1) * taps];
        let b = bs.map_or(0.0, |b| b[ch]);
        let map = InputMap::of(map, ch);
        with_scratch(|s| self.plane(input, map, filter, b, act, out, &mut s.a));
    }

    /// One channel of one image. The plane is first copied into a zero-bordered scratch
    /// buffer (see [`Self::fill`]): then every kernel tap reads a contiguous run with no
    /// bounds logic, and each output, started from the bias, accumulates all taps in
    /// registers and goes through the activation and is written once.
    #[allow(clippy::too_many_arguments)]
    fn plane(
        &self,
        input: &[f32],
        map: Option<PlaneMap>,
        filter: &[f32],
        bias: f32,
        act: Act,
        out: &mut [MaybeUninit<f32>],
        scratch: &mut Vec<f32>,
    ) {
        if self.wide_kernel() {
            return self.plane_wide(input, map, filter, bias, act, out, scratch);
        }
        // The binary targets baseline x86-64 (SSE2); this loop is worth 8-wide FMA.
        #[cfg(target_arch = "x86_64")]
        if super::has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { self.plane_avx2(input, map, filter, bias, act, out, scratch) };
        }
        self.plane_with::<false>(input, map, filter, bias, act, out, scratch)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    fn plane_avx2(
        &self,
        input: &[f32],
        map: Option<PlaneMap>,
        filter: &[f32],
        bias: f32,
        act: Act,
        out: &mut [MaybeUninit<f32>],
        scratch: &mut Vec<f32>,
    ) {
        self.plane_with::<true>(input, map, filter, bias, act, out, scratch)
    }

    /// The body of [`Self::plane`], compiled once per instruction set; `FMA` is whether
    /// `mul_add` is one instruction (without it, it would be a library call).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn plane_with<const FMA: bool>(
        &self,
        input: &[f32],
        map: Option<PlaneMap>,
        filter: &[f32],
        bias: f32,
        act: Act,
        out: &mut [MaybeUninit<f32>],
        scratch: &mut Vec<f32>,
    ) {
        // A clamp is applied in registers as each output is written; SiLU, whose exp the
        // compiler does not vectorise across a few registers, as a pass over the finished
        // plane while it is still in cache.
        let (clamp, after) = clamp_then(act);
        if self.forward_block() == 4 * V {
            self.rows::<FMA, 4, 1>(input, map, filter, bias, clamp, out, scratch)
        } else {
            self.rows::<FMA, 1, 4>(input, map, filter, bias, clamp, out, scratch)
        }
        if let Some(act) = after {
            // SAFETY: `rows` wrote every element of the plane; `MaybeUninit<f32>` has the
            // layout of `f32`.
            let plane = unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) };
            act.apply_all(plane);
        }
    }

    /// The plane in tiles of `R` output rows × `U` vectors, each tile's sums in registers
    /// while the taps pass: one weight broadcast then feeds `R · U` FMAs. Wide rows take
    /// 4 vectors of one row; narrow ones (28, 14 or 7 columns deep in a network) 4 rows of
    /// one vector — one row at a time was 3 loads per FMA there.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn rows<const FMA: bool, const U: usize, const R: usize>(
        &self,
        input: &[f32],
        map: Option<PlaneMap>,
        filter: &[f32],
        bias: f32,
        clamp: (f32, f32),
        out: &mut [MaybeUninit<f32>],
        scratch: &mut Vec<f32>,
    ) {
        let block = U * V;
        let Layout { p, offsets } = &self.layouts[FORWARD];
        debug_assert_eq!(block, self.forward_block());
        self.fill(p, input, map, scratch);
        let src = scratch.as_slice();
        let step = self.stride[0] * p.pw;
        // The furthest any read below reaches; checked once instead of at every load.
        let furthest = offsets.iter().copied().max().unwrap_or(0)
            + (self.oh - 1) * step
            + self.ow.div_ceil(block) * block;
        assert!(furthest <= src.len(), "depthwise scratch too small");
        let ow = self.ow;
        let write = |r: usize, o: usize, acc: &[[f32; V]; U], out: &mut [MaybeUninit<f32>]| {
            let row = &mut out[r * ow..(r + 1) * ow];
            for (u, acc) in acc.iter().enumerate() {
                let o = o + u * V;
                if o + V <= ow {
                    // A whole vector: a fixed count, so the clamp and store vectorise.
                    let dst = &mut row[o..o + V];
                    for t in 0..V {
                        dst[t].write(clamp1(acc[t], clamp.0, clamp.1));
                    }
                } else if o < ow {
                    for (d, &v) in row[o..].iter_mut().zip(acc) {
                        d.write(clamp1(v, clamp.0, clamp.1));
                    }
                }
            }
        };
        let whole = self.oh / R * R;
        for r in (0..whole).step_by(R) {
            for o in (0..ow).step_by(block) {
                // SAFETY: rows r..r + R < oh and columns o..o + block read at most
                // `furthest` (asserted above).
                let acc =
                    unsafe { tile::<FMA, U, R>(src, offsets, filter, bias, r * step + o, step) };
                for (i, acc) in acc.iter().enumerate() {
                    write(r + i, o, acc, out);
                }
            }
        }
        // The rows left over: in pairs when tiles are taller (7 rows: 4 + 2 + 1), then one.
        let mut rest = whole;
        while R > 2 && rest + 2 <= self.oh {
            for o in (0..ow).step_by(block) {
                // SAFETY: as above, two rows.
                let acc =
                    unsafe { tile::<FMA, U, 2>(src, offsets, filter, bias, rest * step + o, step) };
                for (i, acc) in acc.iter().enumerate() {
                    write(rest + i, o, acc, out);
                }
            }
            rest += 2;
        }
        for r in rest..self.oh {
            for o in (0..ow).step_by(block) {
                // SAFETY: as above, one row.
                let [acc] =
                    unsafe { tile::<FMA, U, 1>(src, offsets, filter, bias, r * step + o, step) };
                write(r, o, &acc, out);
            }
        }
    }
}

/// The sums of one tile of `R` output rows × `U` vectors from `at` on (rows `step` apart in
/// `src`), started from `bias`.
///
/// # Safety
/// Every read stays inside `src`: `max(offsets) + at + (R - 1) · step + U · V <= src.len()`.
#[inline(always)]
unsafe fn tile<const FMA: bool, const U: usize, const R: usize>(
    src: &[f32],
    offsets: &[usize],
    filter: &[f32],
    bias: f32,
    at: usize,
    step: usize,
) -> [[[f32; V]; U]; R] {
    let mut acc = [[[bias; V]; U]; R];
    for (&off, &wv) in offsets.iter().zip(filter) {
        for (i, acc) in acc.iter_mut().enumerate() {
            let at = off + at + i * step;
            for (u, acc) in acc.iter_mut().enumerate() {
                // SAFETY: within the reads the caller vouches for.
                let x = unsafe { src.get_unchecked(at + u * V..at + u * V + V) };
                for t in 0..V {
                    acc[t] = if FMA {
                        x[t].mul_add(wv, acc[t])
                    } else {
                        acc[t] + wv * x[t]
                    };
                }
            }
        }
    }
    acc
}

//! Convolutions that are neither 1x1 nor depthwise — 3x3, 5x5, 7x7, strided, grouped (the
//! stems of every network, ResNet's and VGG's bodies, GoogLeNet's towers) — on plain `f32`
//! slices in NCHW order, for inference: Graft's matrix kernel (`mm.rs`) multiplies each
//! group's filters by the input patches, which its packing reads straight from the input
//! (no unfolded copy), and adds the bias and activation before its single store. Without
//! AVX2, a tile's patches are unfolded (im2col) into an L2-sized buffer for `gemm`. flex
//! unfolds the whole batch at once (a 32-image batch of ResNet-18's first block is 230 MB of
//! patches), then adds the bias and clamps in passes over the whole activation.

use super::columns::{Dst, filled};
use super::gather::Plan;
use super::pointwise::{self, SendPtr, Tasks, Tile, parallelism};
use super::{Act, conv_output, mm, split_phases};
use crate::engine::Precision;
use crate::graph::Conv;
use rayon::prelude::*;
use std::cell::Cell;

/// The input gradient (`dense_backward.rs`).
#[path = "dense_backward.rs"]
mod backward;

/// Bytes of unfolded patches per tile of the `gemm` fallback (machines without AVX2): about
/// L2's size, so gemm packs them from cache
/// (64 KB to 4 MB measured the same on ResNet-18 and GoogLeNet within this machine's noise).
const SCRATCH_BYTES: usize = 512 << 10;

/// The shape of one convolution these kernels run.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub n: usize,
    pub c: usize,
    h: usize,
    w: usize,
    pub co: usize,
    groups: usize,
    kh: usize,
    kw: usize,
    stride: [usize; 2],
    dilation: [usize; 2],
    /// Top and left padding (bottom and right follow from the output size).
    pad: [usize; 2],
    pub oh: usize,
    pub ow: usize,
}

impl Geometry {
    /// The geometry of `conv` on an input of `dims` with a weight of `weight_dims`, when these
    /// kernels run it: not depthwise (one input channel per group with as many groups as
    /// channels has its own kernel), not a plain 1x1 (gemm straight on the input), nothing
    /// empty.
    pub fn new(dims: [usize; 4], weight_dims: [usize; 4], conv: &Conv) -> Option<Self> {
        let [n, c, h, w] = dims;
        let [co, cg, kh, kw] = weight_dims;
        let groups = conv.groups;
        if groups == 0 || c % groups != 0 || co % groups != 0 || cg != c / groups {
            return None;
        }
        let depthwise = groups == c && cg == 1;
        let plain_1x1 =
            (kh, kw) == (1, 1) && groups == 1 && conv.strides == [1, 1] && conv.pads == [0; 4];
        if depthwise || plain_1x1 || n * c * co * kh * kw == 0 {
            return None;
        }
        let [oh, ow] = conv_output([h, w], [kh, kw], conv.strides, conv.dilations, conv.pads)?;
        Some(Geometry {
            n,
            c,
            h,
            w,
            co,
            groups,
            kh,
            kw,
            stride: conv.strides,
            dilation: conv.dilations,
            pad: [conv.pads[0], conv.pads[1]],
            oh,
            ow,
        })
    }

    /// Each group's filters packed for [`Self::forward`], multiplied at training's
    /// `precision` (`mm::PackedA::at`: Lite0's stem, 32 filters of 27 steps, 6.2-6.4 ->
    /// 5.4-5.5 ms in bf16 in the harness).
    pub fn packed(&self, ws: &[f32], precision: Precision) -> Vec<mm::PackedA> {
        let packed = mm::PackedA::groups(ws, self.groups, self.co / self.groups, self.k());
        packed.into_iter().map(|p| p.at(precision)).collect()
    }

    /// Rows of the unfolded patches of one group: input channels × kernel taps.
    fn k(&self) -> usize {
        self.c / self.groups * self.kh * self.kw
    }

    /// `act(conv(x, w) + b)`, `[n, co, oh, ow]`. `packed`: each group's filters already
    /// packed for `mm` (an inference plan keeps them between runs), else packed here when
    /// `mm` runs.
    pub fn forward(
        &self,
        xs: &[f32],
        ws: &[f32],
        packed: Option<&[mm::PackedA]>,
        bs: Option<&[f32]>,
        act: Act,
    ) -> Vec<f32> {
        let (n, co, ohw) = (self.n, self.co, self.oh * self.ow);
        if !mm::available() {
            assert_eq!(xs.len(), n * self.c * self.h * self.w, "convolution: input");
            assert_eq!(ws.len(), co * self.k(), "convolution: weight");
            assert!(bs.is_none_or(|b| b.len() == co), "convolution: bias");
            return match self.strided_1x1_input(xs) {
                Some(picked) => {
                    let dims = [n, self.c, co, ohw];
                    pointwise::forward(&picked, ws, None, bs, dims, act)
                }
                None => self.forward_gemm(xs, ws, bs, act),
            };
        }
        // SAFETY: AVX2 is there (checked above); `forward_into` writes all `n × co × ohw`
        // values (image stride `co × ohw`).
        unsafe {
            filled(n * co * ohw, co * ohw, |dst| {
                self.forward_into(xs, ws, packed, bs, act, dst)
            })
        }
    }

    /// [`Self::forward`] through Graft's matrix kernel into `dst` (a Concat's joined buffer,
    /// or the output's own).
    ///
    /// # Safety
    /// [`mm::available`] is true; `dst` is valid for `n` images of `co × oh × ow` values
    /// (see [`Dst`]).
    pub unsafe fn forward_into(
        &self,
        xs: &[f32],
        ws: &[f32],
        packed: Option<&[mm::PackedA]>,
        bs: Option<&[f32]>,
        act: Act,
        dst: Dst,
    ) {
        let (n, co, ohw) = (self.n, self.co, self.oh * self.ow);
        assert_eq!(xs.len(), n * self.c * self.h * self.w, "convolution: input");
        assert_eq!(ws.len(), co * self.k(), "convolution: weight");
        assert!(bs.is_none_or(|b| b.len() == co), "convolution: bias");
        if let Some(picked) = self.strided_1x1_input(xs) {
            let dims = [n, self.c, co, ohw];
            let packed = packed.map(|p| &p[0]);
            // SAFETY: as the caller promises.
            return unsafe { pointwise::forward_into(&picked, ws, packed, bs, dims, act, dst) };
        }
        let (k, cog) = (self.k(), co / self.groups);
        // Graft's kernel (`mm.rs`), each group's filters packed once.
        let own;
        let packed = match packed {
            Some(p) => p,
            None => {
                own = mm::PackedA::groups(ws, self.groups, cog, k);
                own.as_slice()
            }
        };
        assert!(
            packed.len() == self.groups && packed.iter().all(|g| [g.rows(), g.k()] == [cog, k]),
            "convolution: packed filters"
        );
        // Tasks are runs of output pixels counted over the whole batch, one image's after
        // another's: a run may cross from one image into the next, so small maps fill the
        // kernel's strips and share the filters' trips through cache.
        // Too few runs to keep every thread busy (a small batch of small maps): blocks of
        // output channels as well.
        let input = Phased::new(self, xs);
        let tasks = Tasks::new(mm::Columns::new(n, ohw), packed[0].panels());
        (0..tasks.count).into_par_iter().for_each(|t| {
            let ((first, cols), panels) = tasks.get(t);
            for (g, packed) in packed.iter().enumerate() {
                let patches = Patches {
                    geometry: self,
                    input: &input,
                    group: g,
                };
                let out = mm::Out {
                    // SAFETY: group g's output channels start g · cog rows into image 0.
                    c: unsafe { dst.ptr().add(g * cog * ohw) },
                    row0: 0,
                    ldc: ohw,
                    cols,
                    accumulate: false,
                    span: mm::Span {
                        first,
                        pixels: ohw,
                        image_stride: dst.image_stride,
                    },
                };
                let bias = bs.map(|b| &b[g * cog..(g + 1) * cog]);
                // SAFETY: AVX2 is there (the caller's promise); tasks write disjoint pixel
                // runs or blocks of channels and groups disjoint channels, which together
                // cover the `n × co × ohw` values of `dst`; the patches are read from `xs`
                // (length asserted above).
                unsafe {
                    let b = mm::B::Gather(&patches);
                    mm::multiply(packed, panels.clone(), b, &out, bias, act);
                }
            }
        });
    }

    /// For a 1x1 convolution with a stride and no padding (ResNet's downsampling
    /// shortcuts), the input pixels it reads (one in `sh · sw`) gathered into a compact
    /// `[n, c, oh, ow]` map, which then runs as a plain 1x1 convolution: through the
    /// patches (a phase-split copy of the whole input first) those ran at 30–90 GFLOP/s
    /// where ResNet-18's 3x3s run at 200. `None` for every other convolution.
    fn strided_1x1_input(&self, xs: &[f32]) -> Option<Vec<f32>> {
        let [sh, sw] = self.stride;
        let (h, w, oh, ow) = (self.h, self.w, self.oh, self.ow);
        // Bottom or right padding that an output reads (`pad` holds top and left only) is
        // left to the patches.
        if (self.kh, self.kw, self.groups, self.pad) != (1, 1, 1, [0, 0])
            || (ow - 1) * sw >= w
            || (oh - 1) * sh >= h
        {
            return None;
        }
        let len = self.n * self.c * oh * ow;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        out.spare_capacity_mut()[..len]
            .par_chunks_mut(oh * ow)
            .zip(xs.par_chunks(h * w))
            .with_min_len((4096 / (oh * ow)).max(1))
            .for_each(|(dst, plane)| {
                for (oy, line) in dst.chunks_exact_mut(ow).enumerate() {
                    let row = &plane[oy * sh * w..][..w];
                    for (d, &v) in line.iter_mut().zip(row.iter().step_by(sw)) {
                        d.write(v);
                    }
                }
            });
        // SAFETY: each plane's `oh` lines of `ow` were written whole: row `oy · sh` is inside
        // the plane and holds `ow` columns a stride apart (both checked above).
        unsafe { out.set_len(len) };
        Some(out)
    }

    /// [`Self::forward`] through the `gemm` crate (machines without AVX2 and FMA): the
    /// patches of a tile of one image's pixels unfolded into a scratch buffer about the size
    /// of L2, then one gemm per group straight into the output.
    fn forward_gemm(&self, xs: &[f32], ws: &[f32], bs: Option<&[f32]>, act: Act) -> Vec<f32> {
        let (n, co, ohw) = (self.n, self.co, self.oh * self.ow);
        let (k, cog, cg) = (self.k(), co / self.groups, self.c / self.groups);
        // Output pixels per tile: the patches fill the scratch budget, at least a row of a
        // small map, never more than the map.
        let tile = (SCRATCH_BYTES / 4 / k).max(16).min(ohw);
        let tiles = ohw.div_ceil(tile);
        let par = parallelism(n * tiles);
        let len = n * co * ohw;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        let dst = SendPtr(out.as_mut_ptr());
        (0..n * tiles).into_par_iter().for_each(|t| {
            let (b, p0) = (t / tiles, (t % tiles) * tile);
            let cols = tile.min(ohw - p0);
            // Taken out, not borrowed: a worker waiting inside gemm's own parallel loop may
            // start another tile meanwhile, which then makes a buffer of its own.
            let mut patches = SCRATCH.take();
            patches.resize(k * cols, 0.0);
            for g in 0..self.groups {
                let x = &xs[(b * self.c + g * cg) * self.h * self.w..][..cg * self.h * self.w];
                for (row, dst) in patches.chunks_exact_mut(cols).enumerate() {
                    let (ci, tap) = (row / (self.kh * self.kw), row % (self.kh * self.kw));
                    let plane = &x[ci * self.h * self.w..(ci + 1) * self.h * self.w];
                    self.tap_runs(plane, tap, p0, dst);
                }
                // SAFETY: tiles are disjoint pixel ranges of disjoint images and groups
                // write disjoint output channels, so no two tasks write the same element
                // and every element is written by one; the weight rows of group g are
                // `cog × k` at `g * cog * k`; the patches are `k × cols`; `out` outlives
                // the parallel loop.
                unsafe {
                    let tile = Tile {
                        dst: dst.get().add((b * co + g * cog) * ohw + p0),
                        dst_row: ohw,
                        rows: cog,
                        cols,
                    };
                    tile.bias_gemm_act(
                        (ws.as_ptr().add(g * cog * k), k),
                        (patches.as_ptr(), cols),
                        k,
                        bs.map(|b| &b[g * cog..(g + 1) * cog]),
                        act,
                        par,
                    );
                }
            }
            SCRATCH.set(patches);
        });
        // SAFETY: the loop above wrote every element (see there).
        unsafe { out.set_len(len) };
        out
    }

    /// For output pixels `p0..p0 + out.len()` of one image (row-major over the output map),
    /// the value kernel tap `tap` (`ky · kw + kx`) reads from input plane `plane`, zero where
    /// it falls in the padding.
    fn tap_runs(&self, plane: &[f32], tap: usize, p0: usize, out: &mut [f32]) {
        let (h, w, ow) = (self.h, self.w, self.ow);
        let [sh, sw] = self.stride;
        let [dh, dw] = self.dilation;
        let [top, left] = self.pad;
        let (ky, kx) = (tap / self.kw, tap % self.kw);
        // Runs of pixels within one output row.
        let mut p = p0;
        let end = p0 + out.len();
        while p < end {
            let (oy, ox0) = (p / ow, p % ow);
            let run = (ow - ox0).min(end - p);
            let out = &mut out[p - p0..p - p0 + run];
            p += run;
            let iy = (oy * sh + ky * dh) as isize - top as isize;
            if iy < 0 || iy >= h as isize {
                out.fill(0.0);
                continue;
            }
            let src = &plane[iy as usize * w..(iy as usize + 1) * w];
            // Input column of output column ox: ox * sw + kx * dw - left.
            let first = (ox0 * sw + kx * dw) as isize - left as isize;
            if sw == 1 {
                // One copy between the zeros of the left and right padding.
                let lo = (-first).clamp(0, run as isize) as usize;
                let hi = (w as isize - first).clamp(lo as isize, run as isize) as usize;
                out[..lo].fill(0.0);
                out[hi..].fill(0.0);
                if hi > lo {
                    let at = (first + lo as isize) as usize;
                    out[lo..hi].copy_from_slice(&src[at..at + hi - lo]);
                }
                continue;
            }
            for (o, v) in out.iter_mut().enumerate() {
                let ix = first + (o * sw) as isize;
                *v = if ix >= 0 && ix < w as isize {
                    src[ix as usize]
                } else {
                    0.0
                };
            }
        }
    }
}

/// A convolution's input with each row split by column phase when the stride across is
/// s > 1 (`lanes::split_phases`), so that every run a kernel tap reads is consecutive and is
/// copied whole into the packing (one value at a time was most of a strided convolution's
/// gathering). With stride 1, the input as it is.
struct Phased<'a> {
    values: std::borrow::Cow<'a, [f32]>,
    /// Columns per phase.
    phase: usize,
    stride: usize,
}

impl<'a> Phased<'a> {
    fn new(g: &Geometry, xs: &'a [f32]) -> Self {
        let (w, s) = (g.w, g.stride[1]);
        if s == 1 {
            return Phased {
                values: xs.into(),
                phase: w,
                stride: 1,
            };
        }
        let phase = w.div_ceil(s);
        let len = xs.len() / w * s * phase;
        // Filled by runs of 16 rows in the parallel loop (`vec![0.0; len]` was a serial
        // pass over the whole batch first: 19 MB for Lite0's stem at batch 32; by planes, a
        // batch of one RGB image made three tasks for two threads).
        const ROWS: usize = 16;
        let mut values: Vec<f32> = Vec::with_capacity(len);
        values.spare_capacity_mut()[..len]
            .par_chunks_mut(ROWS * s * phase)
            .zip(xs.par_chunks(ROWS * w))
            .for_each(|(split, plane)| {
                for (dst, row) in split.chunks_exact_mut(s * phase).zip(plane.chunks_exact(w)) {
                    split_phases(row, s, dst);
                }
            });
        // SAFETY: the chunks cover the `len` values (`xs` holds whole rows: `len / (s ·
        // phase)` of them), each row's written whole by `split_phases`.
        unsafe { values.set_len(len) };
        Phased {
            values: values.into(),
            phase,
            stride: s,
        }
    }

    /// Where input column x of a row lies within it.
    fn column(&self, x: usize) -> usize {
        (x % self.stride) * self.phase + x / self.stride
    }
}

/// One group's unfolded patches as the right-hand operand of `mm`, read straight from the
/// input: row `(ci, ky, kx)` holds, for each output pixel of the batch, the input value that
/// tap reads. Packed straight from the input through a [`Plan`] of each tap's runs, where an
/// unfolded copy of the tile's patches went through L2 (and was 12 % of ResNet-18's time).
struct Patches<'a> {
    geometry: &'a Geometry,
    input: &'a Phased<'a>,
    group: usize,
}

impl mm::Gather for Patches<'_> {
    fn pack(&self, k0: usize, kc: usize, j0: usize, block: usize, strips: &mut [f32]) {
        let g = self.geometry;
        let taps = g.kh * g.kw;
        let (ohw, w) = (g.oh * g.ow, g.w as isize);
        let row_len = self.input.stride * self.input.phase;
        let plane = g.h * row_len;
        let [sh, sw] = g.stride;
        let [dh, dw] = g.dilation;
        let [top, left] = g.pad;
        Plan::with(kc, |plan| {
            for tap in 0..taps {
                plan.tap();
                let (ky, kx) = (tap / g.kw, tap % g.kw);
                // Runs of the block's columns within one output row.
                let mut d = 0;
                while d < block {
                    let (b, p) = ((j0 + d) / ohw, (j0 + d) % ohw);
                    let (oy, ox0) = (p / g.ow, p % g.ow);
                    let run = (g.ow - ox0).min(block - d);
                    let iy = (oy * sh + ky * dh) as isize - top as isize;
                    if iy < 0 || iy >= g.h as isize {
                        plan.zeros(d, run);
                        d += run;
                        continue;
                    }
                    // Input column of the run's o-th output: first + o · sw; those in
                    // lo..hi fall inside the row (and lie side by side in its phase).
                    let first = (ox0 * sw + kx * dw) as isize - left as isize;
                    let step = sw as isize;
                    let lo = ((-first).max(0) + step - 1) / step;
                    let lo = (lo as usize).min(run);
                    let hi = ((w - first).max(0) + step - 1) / step;
                    let hi = (hi as usize).clamp(lo, run);
                    plan.zeros(d, lo);
                    if hi > lo {
                        let x = self.input.column((first + (lo * sw) as isize) as usize);
                        plan.values(d + lo, hi - lo, b * g.c * plane + iy as usize * row_len + x);
                    }
                    plan.zeros(d + hi, run - hi);
                    d += run;
                }
            }
            let c0 = self.group * (g.c / g.groups);
            plan.pack(&self.input.values, k0, |ci| (c0 + ci) * plane, None, strips);
        });
    }
}

thread_local! {
    /// Each worker's patch buffer for the `gemm` fallback, kept between tiles and
    /// convolutions.
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forward pass at each precision against plain loops: a stem's shape (3 channels,
    /// 3x3, stride 2, 32 filters) in bf16 against the operands rounded to bf16 where the
    /// machine multiplies bf16 (products of unrounded operands are off by ~1e-2 there), in
    /// fp32 against them as they are; fewer filters than `mm::BF16_FROM` stay fp32.
    #[test]
    fn forward_at_each_precision_matches_plain_loops() {
        if !mm::available() {
            return;
        }
        let val = |i: usize, s: usize| ((i * 7919 + s * 104_729) % 201) as f32 / 100.0 - 1.0;
        let bf16 = mm::bf16_available();
        let conv = Conv {
            strides: [2, 2],
            pads: [0, 0, 1, 1],
            dilations: [1, 1],
            groups: 1,
        };
        for (co, precision) in [
            (32, Precision::Bf16),
            (32, Precision::Fp32),
            (8, Precision::Bf16),
        ] {
            let rounded = precision == Precision::Bf16 && bf16 && co >= mm::BF16_FROM;
            let round = |v: f32| if rounded { mm::rounded_to_bf16(v) } else { v };
            let (n, c, h, w, k) = (2, 3, 20, 22, 3);
            let g = Geometry::new([n, c, h, w], [co, c, k, k], &conv).expect("dense");
            let xs: Vec<f32> = (0..n * c * h * w).map(|i| val(i, 1)).collect();
            let ws: Vec<f32> = (0..co * c * k * k).map(|i| val(i, 2)).collect();
            let packed = g.packed(&ws, precision);
            assert_eq!(packed[0].is_bf16(), rounded, "{co} filters, {precision:?}");
            let out = g.forward(&xs, &ws, Some(&packed), None, Act::NONE);
            let (oh, ow) = (g.oh, g.ow);
            for (b, o) in (0..n).flat_map(|b| (0..co).map(move |o| (b, o))) {
                for (oy, ox) in (0..oh).flat_map(|y| (0..ow).map(move |x| (y, x))) {
                    let mut want = 0.0f64;
                    for (i, ky, kx) in
                        (0..c).flat_map(|i| (0..k * k).map(move |t| (i, t / k, t % k)))
                    {
                        let (iy, ix) = (oy * 2 + ky, ox * 2 + kx);
                        if iy >= h || ix >= w {
                            continue;
                        }
                        let x = xs[((b * c + i) * h + iy) * w + ix];
                        want += round(x) as f64 * round(ws[((o * c + i) * k + ky) * k + kx]) as f64;
                    }
                    let got = out[((b * co + o) * oh + oy) * ow + ox] as f64;
                    assert!(
                        (got - want).abs() < 1e-4,
                        "{co} filters, {precision:?}: [{b}, {o}, {oy}, {ox}] {got} vs {want}"
                    );
                }
            }
        }
    }
}

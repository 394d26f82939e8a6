//! Depthwise convolution (one filter per channel) on plain `f32` slices in NCHW order: the
//! forward pass with a fused bias and clamp, and the backward pass (input, weight and bias
//! gradients). Each channel of each image is one task, worked in a zero-bordered scratch copy
//! of its plane that fits in L2.

use super::{ConvGrads, clamp1};
use crate::graph::Conv;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Outputs computed together, held in registers across every kernel tap.
const V: usize = 8;

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
    stride: [usize; 2],
    dilation: [usize; 2],
    pad: [usize; 2],
}

/// Where a plane sits in its scratch buffer: `phases` copies (one per column phase when the
/// stride is s > 1: column j*s + p goes to phase p) of `rows` rows of `pw` values.
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
        let [sh, sw] = conv.strides;
        let [dh, dw] = conv.dilations;
        let [top, left, bottom, right] = conv.pads;
        let span_h = dh * (kh - 1) + 1;
        let span_w = dw * (kw - 1) + 1;
        if h + top + bottom < span_h || w + left + right < span_w || sh * sw == 0 {
            return None;
        }
        Some(Geometry {
            n,
            c,
            h,
            w,
            oh: (h + top + bottom - span_h) / sh + 1,
            ow: (w + left + right - span_w) / sw + 1,
            kh,
            kw,
            stride: [sh, sw],
            dilation: [dh, dw],
            pad: [top, left],
        })
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
    fn fill(&self, p: &Padded, input: &[f32], scratch: &mut Vec<f32>) {
        let [_, sw] = self.stride;
        let [top, left] = self.pad;
        scratch.clear();
        scratch.resize(sw * p.rows * p.pw, 0.0);
        for (r, in_row) in input.chunks_exact(self.w).enumerate() {
            let pr = top + r;
            if sw == 1 {
                let at = pr * p.pw + left;
                scratch[at..at + self.w].copy_from_slice(in_row);
                continue;
            }
            // Padded column pc = left + c lands in phase pc % sw at index pc / sw.
            for ph in 0..sw {
                let first = (ph + sw - left % sw) % sw; // the first c with (left + c) % sw == ph
                let dst_at = (ph * p.rows + pr) * p.pw + (left + first) / sw;
                let dst = &mut scratch[dst_at..(ph * p.rows + pr + 1) * p.pw];
                for (d, &v) in dst.iter_mut().zip(in_row.iter().skip(first).step_by(sw)) {
                    *d = v;
                }
            }
        }
    }

    /// The inverse of [`Self::fill`]: the plane's values (no border) out of `scratch`.
    fn unfill(&self, p: &Padded, scratch: &[f32], out: &mut [f32]) {
        let [_, sw] = self.stride;
        let [top, left] = self.pad;
        for (r, out_row) in out.chunks_exact_mut(self.w).enumerate() {
            let pr = top + r;
            for (col, v) in out_row.iter_mut().enumerate() {
                let pc = left + col;
                *v = scratch[((pc % sw) * p.rows + pr) * p.pw + pc / sw];
            }
        }
    }

    /// Per tap: where output (row 0, column 0) reads in the scratch buffer. Output (r, o)
    /// reads `offset + r * sh * pw + o`.
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
    /// (`[c, 1, kh, kw]`), plus bias, clamped to `clamp`.
    pub fn forward(
        &self,
        xs: &[f32],
        ws: &[f32],
        bs: Option<&[f32]>,
        clamp: (f32, f32),
    ) -> Vec<f32> {
        let (c, hw, ohw, taps) = (self.c, self.h * self.w, self.oh * self.ow, self.taps());
        let len = self.output_len();
        let mut out: Vec<f32> = Vec::with_capacity(len);
        out.spare_capacity_mut()[..len]
            .par_chunks_mut(ohw)
            .enumerate()
            .for_each_init(Vec::new, |scratch, (plane, o)| {
                let ch = plane % c;
                let input = &xs[plane * hw..(plane + 1) * hw];
                let filter = &ws[ch * taps..(ch + 1) * taps];
                let b = bs.map_or(0.0, |b| b[ch]);
                self.plane(input, filter, b, clamp, o, scratch);
            });
        // SAFETY: `plane` wrote every element of every output plane.
        unsafe { out.set_len(len) };
        out
    }

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
        let (n, c, hw, ohw, taps) = (
            self.n,
            self.c,
            self.h * self.w,
            self.oh * self.ow,
            self.taps(),
        );
        // Per plane: its share of the weight gradient (taps) and of the bias gradient (1),
        // summed over the images below, so that planes stay independent tasks.
        let mut partial = vec![0.0f32; if want_dw { n * c * (taps + 1) } else { 0 }];
        let mut dx = vec![0.0f32; if want_dx { n * c * hw } else { 0 }];
        let dx_planes = dx.par_chunks_mut(hw.max(1)).map(Some);
        let partials = partial.par_chunks_mut(taps + 1).map(Some);
        let per_plane = |scratch: &mut (Vec<f32>, Vec<f32>), (plane, (dx, part))| {
            let ch = plane % c;
            let input = &xs[plane * hw..(plane + 1) * hw];
            let filter = &ws[ch * taps..(ch + 1) * taps];
            let g = &gs[plane * ohw..(plane + 1) * ohw];
            self.backward_plane(input, filter, g, dx, part, scratch);
        };
        let none = || (0..n * c).into_par_iter().map(|_| None);
        match (want_dx, want_dw) {
            (true, true) => dx_planes
                .zip(partials)
                .enumerate()
                .for_each_init(Default::default, per_plane),
            (true, false) => dx_planes
                .zip(none())
                .enumerate()
                .for_each_init(Default::default, per_plane),
            (false, true) => none()
                .zip(partials)
                .enumerate()
                .for_each_init(Default::default, per_plane),
            (false, false) => {}
        }
        let dw = want_dw.then(|| {
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
        });
        ConvGrads {
            x: want_dx.then_some(dx),
            weight_bias: dw,
        }
    }

    /// One plane's backward pass: the input gradient into `dx`, and the weight gradient (one
    /// value per tap) then the bias gradient into `part`.
    fn backward_plane(
        &self,
        input: &[f32],
        filter: &[f32],
        g: &[f32],
        dx: Option<&mut [f32]>,
        part: Option<&mut [f32]>,
        scratch: &mut (Vec<f32>, Vec<f32>),
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { self.backward_plane_avx2(input, filter, g, dx, part, scratch) };
        }
        self.backward_plane_with::<false>(input, filter, g, dx, part, scratch)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn backward_plane_avx2(
        &self,
        input: &[f32],
        filter: &[f32],
        g: &[f32],
        dx: Option<&mut [f32]>,
        part: Option<&mut [f32]>,
        scratch: &mut (Vec<f32>, Vec<f32>),
    ) {
        self.backward_plane_with::<true>(input, filter, g, dx, part, scratch)
    }

    #[inline(always)]
    fn backward_plane_with<const FMA: bool>(
        &self,
        input: &[f32],
        filter: &[f32],
        g: &[f32],
        dx: Option<&mut [f32]>,
        part: Option<&mut [f32]>,
        (xpad, dpad): &mut (Vec<f32>, Vec<f32>),
    ) {
        let p = self.padded(1);
        let offsets = self.tap_offsets(&p);
        let step = self.stride[0] * p.pw;
        let ow = self.ow;
        if let Some(part) = part {
            // dW[tap] = sum over outputs of g * (the input value the tap read).
            self.fill(&p, input, xpad);
            for (d, &at) in part.iter_mut().zip(&offsets) {
                let mut acc = [0.0f32; V];
                let mut tail = 0.0f32;
                for (r, g_row) in g.chunks_exact(ow).enumerate() {
                    let x_row = &xpad[at + r * step..at + r * step + ow];
                    tail += dot_into::<FMA>(&mut acc, g_row, x_row);
                }
                *d = acc.iter().sum::<f32>() + tail;
            }
            let mut acc = [0.0f32; V];
            let tail = dot_into::<FMA>(&mut acc, g, &[]);
            part[self.taps()] = acc.iter().sum::<f32>() + tail;
        }
        if let Some(dx) = dx {
            // Each output's gradient flows back to every input value it read, scattered into
            // a zero-bordered scratch plane laid out like the forward one, then unbordered.
            dpad.clear();
            dpad.resize(self.stride[1] * p.rows * p.pw, 0.0);
            for (r, g_row) in g.chunks_exact(ow).enumerate() {
                for (&at, &wv) in offsets.iter().zip(filter) {
                    let d = &mut dpad[at + r * step..at + r * step + ow];
                    for (d, &gv) in d.iter_mut().zip(g_row) {
                        *d = if FMA {
                            gv.mul_add(wv, *d)
                        } else {
                            *d + gv * wv
                        };
                    }
                }
            }
            self.unfill(&p, dpad, dx);
        }
    }

    /// One channel of one image. The plane is first copied into a zero-bordered scratch
    /// buffer (see [`Self::fill`]): then every kernel tap reads a contiguous run with no
    /// bounds logic, and each output, started from the bias, accumulates all taps in
    /// registers and is clamped and written once.
    fn plane(
        &self,
        input: &[f32],
        filter: &[f32],
        bias: f32,
        clamp: (f32, f32),
        out: &mut [MaybeUninit<f32>],
        scratch: &mut Vec<f32>,
    ) {
        // The binary targets baseline x86-64 (SSE2); this loop is worth 8-wide FMA.
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { self.plane_avx2(input, filter, bias, clamp, out, scratch) };
        }
        self.plane_with::<false>(input, filter, bias, clamp, out, scratch)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn plane_avx2(
        &self,
        input: &[f32],
        filter: &[f32],
        bias: f32,
        clamp: (f32, f32),
        out: &mut [MaybeUninit<f32>],
        scratch: &mut Vec<f32>,
    ) {
        self.plane_with::<true>(input, filter, bias, clamp, out, scratch)
    }

    /// The body of [`Self::plane`], compiled once per instruction set; `FMA` is whether
    /// `mul_add` is one instruction (without it, it would be a library call).
    #[inline(always)]
    fn plane_with<const FMA: bool>(
        &self,
        input: &[f32],
        filter: &[f32],
        bias: f32,
        clamp: (f32, f32),
        out: &mut [MaybeUninit<f32>],
        scratch: &mut Vec<f32>,
    ) {
        // Wide rows take 4 vectors per step, so each tap's bookkeeping feeds 4 FMAs; narrow
        // rows (7 or 14 columns deep in a network) one.
        if self.ow >= 4 * V {
            self.rows::<FMA, 4>(input, filter, bias, clamp, out, scratch)
        } else {
            self.rows::<FMA, 1>(input, filter, bias, clamp, out, scratch)
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn rows<const FMA: bool, const U: usize>(
        &self,
        input: &[f32],
        filter: &[f32],
        bias: f32,
        clamp: (f32, f32),
        out: &mut [MaybeUninit<f32>],
        scratch: &mut Vec<f32>,
    ) {
        let block = U * V;
        let p = self.padded(block);
        self.fill(&p, input, scratch);
        let src = scratch.as_slice();
        let taps: Vec<(usize, f32)> = self
            .tap_offsets(&p)
            .into_iter()
            .zip(filter.iter().copied())
            .collect();
        let step = self.stride[0] * p.pw;
        // The furthest any read below reaches; checked once instead of at every load.
        let furthest = taps.iter().map(|t| t.0).max().unwrap_or(0)
            + (self.oh - 1) * step
            + self.ow.div_ceil(block) * block;
        assert!(furthest <= src.len(), "depthwise scratch too small");
        let (lo, hi) = clamp;
        for (r, row) in out.chunks_exact_mut(self.ow).enumerate() {
            let row_at = r * step;
            for o in (0..self.ow).step_by(block) {
                let mut acc = [[bias; V]; U];
                for &(at, wv) in &taps {
                    let at = at + row_at + o;
                    for (u, acc) in acc.iter_mut().enumerate() {
                        // SAFETY: at + u*V + V <= furthest <= src.len() (asserted above).
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
                for (dst, v) in row[o..].iter_mut().zip(acc.into_iter().flatten()) {
                    dst.write(clamp1(v, lo, hi));
                }
            }
        }
    }
}

/// Adds `a · b` into `acc` lane by lane (whole blocks of `V`) and returns the dot product of
/// the remaining tail; with `b` empty, sums `a` instead. Lanes keep the loop vectorised:
/// one running sum would be a serial chain of dependent adds.
#[inline(always)]
fn dot_into<const FMA: bool>(acc: &mut [f32; V], a: &[f32], b: &[f32]) -> f32 {
    let whole = a.len() / V * V;
    let mut tail = 0.0;
    if b.is_empty() {
        for chunk in a[..whole].chunks_exact(V) {
            for (s, &v) in acc.iter_mut().zip(chunk) {
                *s += v;
            }
        }
        for &v in &a[whole..] {
            tail += v;
        }
        return tail;
    }
    for (ca, cb) in a[..whole].chunks_exact(V).zip(b[..whole].chunks_exact(V)) {
        for t in 0..V {
            acc[t] = if FMA {
                ca[t].mul_add(cb[t], acc[t])
            } else {
                acc[t] + ca[t] * cb[t]
            };
        }
    }
    for (&x, &y) in a[whole..].iter().zip(&b[whole..]) {
        tail = if FMA {
            x.mul_add(y, tail)
        } else {
            tail + x * y
        };
    }
    tail
}

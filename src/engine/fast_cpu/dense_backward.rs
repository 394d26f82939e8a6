//! The gradients of a dense convolution of one group (`dense.rs`). The weight gradient is a
//! 1x1 convolution's, of each image's unfolded patches (`weight_grad::add_weight_grad`). The
//! input gradient is convolutions the forward kernel runs: with a stride of 1 the gradient is one — of the output gradient,
//! with the filters' input and output channels swapped and their taps turned half a circle;
//! with a larger stride (dilation 1) each phase of the input (rows `py, py + s, …`, columns
//! likewise) is one, with the taps that reach that phase. burn's `conv2d_x_backward` (a
//! transposed convolution through its own im2col and gemm) held ResNet-18's fine-tuning at
//! 14.8–15.2 images/s where stride 1 alone through here ran 17.5–18.5.

use super::super::weight_grad;
use super::{Act, Conv, Geometry, pointwise, split_phases};
use crate::engine::Precision;
use rayon::prelude::*;
use std::cell::Cell;

thread_local! {
    /// Each worker's unfolded patches of one image and that image's rows split by column
    /// phase, kept between images and steps.
    static UNFOLDED: Cell<(Vec<f32>, Vec<f32>)> = const { Cell::new((Vec::new(), Vec::new())) };
}

/// Which taps along one axis reach phase `p` of the input, for a stride `s`, top (or left)
/// padding `pad` and `k` taps: their indices, and the padding the phase's convolution of the
/// output gradient takes before and after it so that it has `q` outputs — `None` where that
/// padding would be negative (the phase's first outputs read before the gradient's start).
/// The phase's output `j` is input `p + s · j`; tap `t` reads gradient row `(p + pad − t) / s
/// + j` where that divides.
fn phase_taps(p: usize, s: usize, pad: usize, k: usize, q: usize, o: usize) -> Option<Axis> {
    let taps: Vec<usize> = (0..k)
        .filter(|t| (p + pad + s * k - t).is_multiple_of(s))
        .collect();
    let Some(&first) = taps.first() else {
        return Some(Axis { taps, pads: [0, 0] });
    };
    // Turned round, the phase's convolution reads gradient row `j + a − before` with its
    // tap a = m − 1 − (index of t); the first tap reads row j + (p + pad − first) / s.
    let m = taps.len() as isize;
    let lead = (p + pad) as isize - first as isize;
    let before = m - 1 - lead.div_euclid(s as isize);
    let after = q as isize + m - 1 - before - o as isize;
    (before >= 0 && after >= 0).then_some(Axis {
        taps,
        pads: [before as usize, after as usize],
    })
}

/// One axis of a phase's convolution: the filter taps it takes, the padding before and after.
struct Axis {
    taps: Vec<usize>,
    pads: [usize; 2],
}

impl Geometry {
    /// The input gradient of [`Self::forward`] given its output gradient `gs` (`[n, co, oh,
    /// ow]`): `[n, c, h, w]`. `None` where these kernels do not run it (groups, a stride with
    /// dilation, padding wider than the kernel's span): burn's `conv2d_x_backward` then.
    pub fn input_gradient(&self, ws: &[f32], gs: &[f32]) -> Option<Vec<f32>> {
        let (n, c, co) = (self.n, self.c, self.co);
        let (kh, kw) = (self.kh, self.kw);
        if self.groups != 1 || (self.stride != [1, 1] && self.dilation != [1, 1]) {
            return None;
        }
        assert_eq!(ws.len(), co * c * kh * kw, "input gradient: weight");
        assert_eq!(
            gs.len(),
            n * co * self.oh * self.ow,
            "input gradient: output gradient"
        );
        if self.stride == [1, 1] {
            let [dh, dw] = self.dilation;
            let [top, left] = self.pad;
            // Stride 1: the forward pass's bottom padding is `span − top + oh − h`, so what
            // the gradient's convolution pads below is `h + top − oh` (likewise across).
            let pads = [
                ((kh - 1) * dh).checked_sub(top)?,
                ((kw - 1) * dw).checked_sub(left)?,
                (self.h + top).checked_sub(self.oh)?,
                (self.w + left).checked_sub(self.ow)?,
            ];
            let rows: Vec<usize> = (0..kh).collect();
            let cols: Vec<usize> = (0..kw).collect();
            let turned = self.turned(ws, &rows, &cols);
            return self.of_gradient(gs, &turned, [kh, kw], pads, self.dilation);
        }
        let [sh, sw] = self.stride;
        let (h, w) = (self.h, self.w);
        let mut dx = vec![0.0f32; n * c * h * w];
        for py in 0..sh.min(h) {
            let qh = (h - py).div_ceil(sh);
            let rows = phase_taps(py, sh, self.pad[0], kh, qh, self.oh)?;
            for px in 0..sw.min(w) {
                let qw = (w - px).div_ceil(sw);
                let cols = phase_taps(px, sw, self.pad[1], kw, qw, self.ow)?;
                if rows.taps.is_empty() || cols.taps.is_empty() {
                    // No tap reaches this phase: its gradient is zero.
                    continue;
                }
                let turned = self.turned(ws, &rows.taps, &cols.taps);
                let pads = [rows.pads[0], cols.pads[0], rows.pads[1], cols.pads[1]];
                let taps = [rows.taps.len(), cols.taps.len()];
                let phase = self.of_gradient(gs, &turned, taps, pads, [1, 1])?;
                assert_eq!(phase.len(), n * c * qh * qw, "input gradient: phase size");
                // Into its rows and columns of every plane.
                dx.par_chunks_mut(h * w)
                    .zip(phase.par_chunks(qh * qw))
                    .for_each(|(plane, part)| {
                        for (j, row) in part.chunks_exact(qw).enumerate() {
                            let at = &mut plane[(py + j * sh) * w..][..w];
                            for (v, &g) in at[px..].iter_mut().step_by(sw).zip(row) {
                                *v = g;
                            }
                        }
                    });
            }
        }
        Some(dx)
    }

    /// The weight and bias gradients of [`Self::forward`] given its output gradient `gs`
    /// (`[n, co, oh, ow]`): `(dW, db)`, dW in the weight's layout. One group only. Image by
    /// image, the patches (`[c·kh·kw, oh·ow]`) are unfolded into a buffer of the thread's
    /// ([`Self::unfold`]) and their gradient is a 1x1 convolution's (`g · patchesᵀ`,
    /// `weight_grad::add_weight_grad`), the images split into a fixed part per thread whose
    /// sums are added in order (a seeded run repeats). The whole batch's patches unfolded at
    /// once — Lite0's stem: 43 MB, zeroed, written value by value at stride 2, read back —
    /// took 10.9 ms for the stem at batch 32 where this takes 6.6–7.7 (hot, alone). The bias gradient is
    /// zeros unless `want_db` (see `pointwise::backward_mapped`). `precision`: training's,
    /// that of the 1x1 sums' products (in bf16 Lite0's stem's dot products take half the
    /// instructions: `cargo bench --bench kernels -- stem`).
    pub fn weight_gradient(
        &self,
        xs: &[f32],
        ws: &[f32],
        gs: &[f32],
        want_db: bool,
        precision: Precision,
    ) -> (Vec<f32>, Vec<f32>) {
        assert_eq!(self.groups, 1, "convolution gradient: one group");
        let (n, c, co, k, ohw, hw) = (
            self.n,
            self.c,
            self.co,
            self.k(),
            self.oh * self.ow,
            self.h * self.w,
        );
        assert_eq!(xs.len(), n * c * hw, "convolution gradient: input");
        assert_eq!(ws.len(), co * k, "convolution gradient: weight");
        assert_eq!(
            gs.len(),
            n * co * ohw,
            "convolution gradient: output gradient"
        );
        // The sums over a run of images; `par`: rayon's where one image is all there is to
        // spread over the threads.
        let run = |images: std::ops::Range<usize>, par: gemm::Parallelism| {
            let (mut dw, mut db) = (vec![0.0f32; co * k], vec![0.0f32; co]);
            let (mut patches, mut split) = UNFOLDED.take();
            for b in images {
                self.unfold(&xs[b * c * hw..(b + 1) * c * hw], &mut patches, &mut split);
                weight_grad::add_weight_grad(
                    (&patches, None),
                    &gs[b * co * ohw..(b + 1) * co * ohw],
                    [k, co, ohw],
                    0..1,
                    par,
                    (&mut dw, want_db.then_some(&mut db[..])),
                    precision,
                );
            }
            UNFOLDED.set((patches, split));
            (dw, db)
        };
        weight_grad::sum_over_images(n, run)
    }

    /// One image's patches (`x`: `[c, h, w]`) into `out`, `[c·kh·kw, oh·ow]`: row `(ci, ky,
    /// kx)` holds, for each output pixel, the input value that tap reads, zero in the
    /// padding. Where the stride across is s > 1 the rows are first split by column phase
    /// into `split` (`split_phases`), so each tap's run of an output row is one copy (value
    /// by value at stride 2, the unfolding was half the stem's weight gradient).
    fn unfold(&self, x: &[f32], out: &mut Vec<f32>, split: &mut Vec<f32>) {
        let (c, h, w, ow, ohw) = (self.c, self.h, self.w, self.ow, self.oh * self.ow);
        let taps = self.kh * self.kw;
        let [sh, sw] = self.stride;
        let [dh, dw] = self.dilation;
        let [top, left] = self.pad;
        let phase = w.div_ceil(sw);
        let row_len = sw * phase;
        let rows: &[f32] = if sw == 1 {
            x
        } else {
            split.clear();
            split.reserve(c * h * row_len);
            let spare = &mut split.spare_capacity_mut()[..c * h * row_len];
            for (dst, row) in spare.chunks_exact_mut(row_len).zip(x.chunks_exact(w)) {
                split_phases(row, sw, dst);
            }
            // SAFETY: `split_phases` wrote each of the `c · h` rows whole.
            unsafe { split.set_len(c * h * row_len) };
            split
        };
        // Every value is written below.
        out.resize(c * taps * ohw, 0.0);
        for (r, dst) in out.chunks_exact_mut(ohw).enumerate() {
            let (ci, tap) = (r / taps, r % taps);
            let (ky, kx) = (tap / self.kw, tap % self.kw);
            let plane = &rows[ci * h * row_len..(ci + 1) * h * row_len];
            // Output column o reads input column first + o · sw; those in lo..hi fall inside
            // the row, side by side in its phase.
            let first = (kx * dw) as isize - left as isize;
            let step = sw as isize;
            let lo = (((-first).max(0) + step - 1) / step) as usize;
            let lo = lo.min(ow);
            let hi = (((w as isize - first).max(0) + step - 1) / step) as usize;
            let hi = hi.clamp(lo, ow);
            let at = (hi > lo).then(|| {
                let x = (first + (lo * sw) as isize) as usize;
                (x % sw) * phase + x / sw
            });
            for (oy, d) in dst.chunks_exact_mut(ow).enumerate() {
                let iy = (oy * sh + ky * dh) as isize - top as isize;
                match at {
                    Some(at) if (0..h as isize).contains(&iy) => {
                        let src = &plane[iy as usize * row_len + at..][..hi - lo];
                        d[..lo].fill(0.0);
                        d[lo..hi].copy_from_slice(src);
                        d[hi..].fill(0.0);
                    }
                    _ => d.fill(0.0),
                }
            }
        }
    }

    /// The filters `[co, c, kh, kw]` as `[c, co, rows, cols]` over the taps `rows × cols`,
    /// each filter turned half a circle.
    fn turned(&self, ws: &[f32], rows: &[usize], cols: &[usize]) -> Vec<f32> {
        let (c, co, kh, kw) = (self.c, self.co, self.kh, self.kw);
        let (r, q) = (rows.len(), cols.len());
        let mut out = vec![0.0f32; c * co * r * q];
        for o in 0..co {
            for i in 0..c {
                let from = &ws[(o * c + i) * kh * kw..][..kh * kw];
                let to = &mut out[(i * co + o) * r * q..][..r * q];
                for (a, &ki) in rows.iter().rev().enumerate() {
                    for (b, &kj) in cols.iter().rev().enumerate() {
                        to[a * q + b] = from[ki * kw + kj];
                    }
                }
            }
        }
        out
    }

    /// The convolution of the output gradient (`[n, co, oh, ow]`) with `weight` (`[c, co,
    /// taps]`, stride 1): `[n, c, …]`.
    fn of_gradient(
        &self,
        gs: &[f32],
        weight: &[f32],
        [kh, kw]: [usize; 2],
        pads: [usize; 4],
        dilations: [usize; 2],
    ) -> Option<Vec<f32>> {
        let conv = Conv {
            strides: [1, 1],
            pads,
            dilations,
            groups: 1,
        };
        let dims = [self.n, self.co, self.oh, self.ow];
        let wdims = [self.c, self.co, kh, kw];
        Some(match Geometry::new(dims, wdims, &conv) {
            Some(g) => g.forward(gs, weight, None, None, Act::NONE),
            // A 1x1 without padding (a strided 1x1's one phase, or a padded 1x1's gradient).
            None => {
                let pw = pointwise::dims(dims, wdims, &conv)?;
                pointwise::forward(gs, weight, None, None, pw, Act::NONE)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against plain loops over every tap: strides 1 and 2 (odd and even widths), padding
    /// uneven and wider than a stride, dilation, a batch of one (spread over the threads)
    /// and of five (split into parts), with the bias gradient; and a stem's shape in bf16
    /// (maps of 1,024 pixels, whose sums are dot products), against the operands rounded to
    /// bf16 where the machine multiplies in bf16 (products of unrounded operands are off by
    /// ~0.1 there).
    #[test]
    fn weight_gradient_matches_plain_loops() {
        let val = |i: usize, s: usize| ((i * 7919 + s * 104_729) % 201) as f32 / 100.0 - 1.0;
        let bf16 = super::super::mm::bf16_available();
        let to_bf16 = super::super::mm::rounded_to_bf16;
        for (n, [h, w], k, s, pads, d, precision) in [
            (5, [9, 10], 3, 2, [1, 0, 1, 1], 1, Precision::Fp32),
            (1, [9, 11], 3, 2, [2, 2, 2, 2], 1, Precision::Fp32),
            (2, [8, 7], 3, 1, [1, 1, 1, 1], 2, Precision::Fp32),
            (5, [12, 13], 5, 2, [2, 1, 2, 2], 1, Precision::Fp32),
            (2, [64, 64], 3, 2, [0, 0, 1, 1], 1, Precision::Bf16),
        ] {
            let round = |v: f32| match precision {
                Precision::Bf16 if bf16 => to_bf16(v),
                _ => v,
            };
            let conv = Conv {
                strides: [s, s],
                pads,
                dilations: [d, d],
                groups: 1,
            };
            let (c, co) = (3, 4);
            let g = Geometry::new([n, c, h, w], [co, c, k, k], &conv).expect("dense");
            let (oh, ow) = (g.oh, g.ow);
            let xs: Vec<f32> = (0..n * c * h * w).map(|i| val(i, 1)).collect();
            let ws: Vec<f32> = (0..co * c * k * k).map(|i| val(i, 2)).collect();
            let gs: Vec<f32> = (0..n * co * oh * ow).map(|i| val(i, 3)).collect();
            let (dw, db) = g.weight_gradient(&xs, &ws, &gs, true, precision);
            for o in 0..co {
                let mut want_b = 0.0f64;
                for b in 0..n {
                    for p in 0..oh * ow {
                        want_b += gs[(b * co + o) * oh * ow + p] as f64;
                    }
                }
                assert!((db[o] as f64 - want_b).abs() < 1e-3, "db[{o}]");
                for i in 0..c {
                    for (ky, kx) in (0..k).flat_map(|a| (0..k).map(move |b| (a, b))) {
                        let mut want = 0.0f64;
                        for b in 0..n {
                            for (oy, ox) in (0..oh).flat_map(|a| (0..ow).map(move |b| (a, b))) {
                                let iy = (oy * s + ky * d) as isize - pads[0] as isize;
                                let ix = (ox * s + kx * d) as isize - pads[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let x = xs[((b * c + i) * h + iy as usize) * w + ix as usize];
                                let g = gs[((b * co + o) * oh + oy) * ow + ox];
                                want += round(x) as f64 * round(g) as f64;
                            }
                        }
                        let got = dw[((o * c + i) * k + ky) * k + kx] as f64;
                        assert!(
                            (got - want).abs() < 1e-3,
                            "n {n} {h}x{w} k{k} s{s}: dw[{o}, {i}, {ky}, {kx}] {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    /// ResNet's strided convolutions (3x3 and 7x7 with padding, the 1x1 downsample) and the
    /// stride-1 3x3 get their input gradient here, not burn's: a `None` would pass the
    /// gradient tests through burn's fallback unnoticed. (Their values are checked against
    /// burn in `train::tests::conv_gradients_match_burn`.)
    #[test]
    fn resnets_convolutions_are_covered() {
        for (h, k, s, p) in [
            (56, 3, 2, 1),
            (57, 3, 2, 1),
            (56, 1, 2, 0),
            (224, 7, 2, 3),
            (28, 3, 1, 1),
        ] {
            let conv = Conv {
                strides: [s, s],
                pads: [p; 4],
                dilations: [1, 1],
                groups: 1,
            };
            let g = Geometry::new([1, 2, h, h], [3, 2, k, k], &conv).expect("dense");
            let ws = vec![0.5f32; 3 * 2 * k * k];
            let gs = vec![1.0f32; 3 * g.oh * g.ow];
            let dx = g.input_gradient(&ws, &gs);
            assert_eq!(dx.map(|d| d.len()), Some(2 * h * h), "{h} k{k} s{s} p{p}");
        }
    }
}

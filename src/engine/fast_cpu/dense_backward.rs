//! The input gradient of a dense convolution of one group (`dense.rs`), as convolutions its
//! forward kernel runs: with a stride of 1 the gradient is one — of the output gradient,
//! with the filters' input and output channels swapped and their taps turned half a circle;
//! with a larger stride (dilation 1) each phase of the input (rows `py, py + s, …`, columns
//! likewise) is one, with the taps that reach that phase. burn's `conv2d_x_backward` (a
//! transposed convolution through its own im2col and gemm) held ResNet-18's fine-tuning at
//! 14.8–15.2 images/s where stride 1 alone through here ran 17.5–18.5.

use super::{Act, Conv, Geometry, pointwise};
use rayon::prelude::*;

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

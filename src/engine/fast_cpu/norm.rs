//! Batch normalisation in training mode on plain `f32` slices in NCHW-like order
//! (`[n, c, hw]`: images, channels, values per channel per image), with the clamp that
//! follows it (ReLU, ReLU6) fused in, forward and backward, each as two passes over the
//! activation where burn's composition of tensor ops takes a dozen.
//! Sums run in f32 lanes within a plane and f64 across planes; the variance pass sums squares
//! of values shifted by one of the channel's own values, so that a large mean does not cancel
//! away the variance's digits (the "shifted data" algorithm).

use super::{clamp1, with_avx2};
use rayon::prelude::*;

/// Per channel: the batch mean and the (biased) batch variance, over images and pixels.
pub fn stats(xs: &[f32], [n, c, hw]: [usize; 3]) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(xs.len(), n * c * hw, "batch norm: input length");
    let count = (n * hw).max(1) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let shift = xs.get(ch * hw).copied().unwrap_or(0.0);
            let (mut s, mut sq) = (0.0f64, 0.0f64);
            for b in 0..n {
                let plane = &xs[(b * c + ch) * hw..(b * c + ch + 1) * hw];
                let (ps, psq) = with_avx2(
                    #[inline(always)]
                    || shifted_sums(plane, shift),
                );
                s += ps;
                sq += psq;
            }
            let d = s / count;
            let var = (sq / count - d * d).max(0.0);
            ((shift as f64 + d) as f32, var as f32)
        })
        .unzip()
}

/// A batch norm's per-channel affine map and the clamp fused after it (ReLU, ReLU6).
pub struct Affine<'a> {
    pub mean: &'a [f32],
    pub inv_std: &'a [f32],
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub clamp: (f32, f32),
}

impl Affine<'_> {
    /// One value per channel in each per-channel slice.
    fn check(&self, c: usize) {
        for (what, v) in [
            ("mean", self.mean),
            ("inv_std", self.inv_std),
            ("gamma", self.gamma),
            ("beta", self.beta),
        ] {
            assert_eq!(v.len(), c, "batch norm: {what} length");
        }
    }

    /// `(scale, shift)` of channel `ch`: the output is `clamp(x * scale + shift)`. Forward
    /// and backward compute the pre-clamp value with this same expression, so the backward
    /// pass finds exactly the values the clamp cut.
    fn channel(&self, ch: usize) -> (f32, f32) {
        let scale = self.inv_std[ch] * self.gamma[ch];
        (scale, self.beta[ch] - self.mean[ch] * scale)
    }
}

/// `clamp((x - mean) * inv_std * gamma + beta)`, per channel.
pub fn normalize(xs: &[f32], [n, c, hw]: [usize; 3], f: &Affine) -> Vec<f32> {
    assert_eq!(xs.len(), n * c * hw, "batch norm: input length");
    f.check(c);
    let len = n * c * hw;
    let (lo, hi) = f.clamp;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(hw.max(1))
        .zip(xs.par_chunks(hw.max(1)))
        .enumerate()
        .for_each(|(plane, (o, x))| {
            let (scale, shift) = f.channel(plane % c);
            with_avx2(
                #[inline(always)]
                || {
                    for (o, &x) in o.iter_mut().zip(x) {
                        o.write(clamp1(x * scale + shift, lo, hi));
                    }
                },
            )
        });
    // SAFETY: the planes cover `out` (len = planes * hw) and each element was written.
    unsafe { out.set_len(len) };
    out
}

/// The gradients of [`normalize`] with batch statistics, given the output gradient `gs`:
/// the input gradient (which also flows through the mean and variance), and per channel the
/// gamma and beta gradients. The clamp passes the gradient only where the value was strictly
/// inside its bounds (PyTorch's relu and hardtanh).
pub fn backward(
    xs: &[f32],
    gs: &[f32],
    [n, c, hw]: [usize; 3],
    f: &Affine,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(xs.len(), n * c * hw, "batch norm: input length");
    assert_eq!(gs.len(), xs.len(), "batch norm: gradient length");
    f.check(c);
    let (lo, hi) = f.clamp;
    // Per channel: Σ g (beta's gradient) and Σ g·x̂ (gamma's gradient), x̂ = (x - mean)·inv_std,
    // with g already through the clamp.
    let (dgamma, dbeta): (Vec<f32>, Vec<f32>) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (scale, shift) = f.channel(ch);
            let mean = f.mean[ch];
            let (mut sg, mut sgx) = (0.0f64, 0.0f64);
            for b in 0..n {
                let at = (b * c + ch) * hw;
                let (g, x) = (&gs[at..at + hw], &xs[at..at + hw]);
                let (ps, psx) = with_avx2(
                    #[inline(always)]
                    || {
                        dot_sums(
                            g,
                            x,
                            #[inline(always)]
                            |g, x| {
                                let y = x * scale + shift;
                                let g = if (lo < y) & (y < hi) { g } else { 0.0 };
                                (g, g * (x - mean))
                            },
                        )
                    },
                );
                sg += ps;
                sgx += psx;
            }
            ((sgx * f.inv_std[ch] as f64) as f32, sg as f32)
        })
        .unzip();
    let count = (n * hw).max(1) as f32;
    let len = n * c * hw;
    let mut dx: Vec<f32> = Vec::with_capacity(len);
    dx.spare_capacity_mut()[..len]
        .par_chunks_mut(hw.max(1))
        .enumerate()
        .for_each(|(plane, d)| {
            let ch = plane % c;
            let at = plane * hw;
            let (scale, shift) = f.channel(ch);
            // dx = gamma·inv_std·(g - Σg/N - x̂·Σ(g·x̂)/N), written as a·g + k·x + e.
            let a = scale;
            let k = -a * dgamma[ch] * f.inv_std[ch] / count;
            let e = -a * dbeta[ch] / count - k * f.mean[ch];
            let (gs, xs) = (&gs[at..at + hw], &xs[at..at + hw]);
            with_avx2(
                #[inline(always)]
                || {
                    for ((d, &g), &x) in d.iter_mut().zip(gs).zip(xs) {
                        let y = x * scale + shift;
                        let g = if (lo < y) & (y < hi) { g } else { 0.0 };
                        d.write(a * g + k * x + e);
                    }
                },
            )
        });
    // SAFETY: the planes cover `dx` and each element was written.
    unsafe { dx.set_len(len) };
    (dx, dgamma, dbeta)
}

/// Σ (x - shift) and Σ (x - shift)² of one plane: f32 lanes within the plane (vectorised;
/// one running sum would be a chain of dependent adds), f64 across planes.
#[inline(always)]
fn shifted_sums(v: &[f32], shift: f32) -> (f64, f64) {
    let (mut s, mut sq) = ([0.0f32; 8], [0.0f32; 8]);
    let whole = v.len() / 8 * 8;
    for chunk in v[..whole].chunks_exact(8) {
        for t in 0..8 {
            let d = chunk[t] - shift;
            s[t] += d;
            sq[t] += d * d;
        }
    }
    let mut total = (lanes(&s), lanes(&sq));
    for &x in &v[whole..] {
        let d = x - shift;
        total.0 += d as f64;
        total.1 += (d * d) as f64;
    }
    total
}

/// Σ of the pairs `pair(g, x)` gives over one plane, like [`shifted_sums`].
#[inline(always)]
fn dot_sums(g: &[f32], x: &[f32], pair: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
    let (mut s, mut sx) = ([0.0f32; 8], [0.0f32; 8]);
    let whole = g.len() / 8 * 8;
    for (cg, cx) in g[..whole].chunks_exact(8).zip(x[..whole].chunks_exact(8)) {
        for t in 0..8 {
            let (a, b) = pair(cg[t], cx[t]);
            s[t] += a;
            sx[t] += b;
        }
    }
    let mut total = (lanes(&s), lanes(&sx));
    for (&g, &x) in g[whole..].iter().zip(&x[whole..]) {
        let (a, b) = pair(g, x);
        total.0 += a as f64;
        total.1 += b as f64;
    }
    total
}

#[inline(always)]
fn lanes(v: &[f32; 8]) -> f64 {
    v.iter().map(|&x| x as f64).sum()
}

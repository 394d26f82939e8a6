//! Batch normalisation on plain `f32` slices in NCHW-like order (`[n, c, hw]`: images,
//! channels, values per channel per image), with the clamp that follows it (ReLU, ReLU6)
//! fused in: in training mode forward and backward, each one task per channel that reads
//! the channel twice (the second time from cache), where burn's composition of tensor ops
//! takes a dozen passes over the activation; with running statistics (inference), one pass.
//! Sums run in f32 lanes within a plane and f64 across planes; the variance pass sums squares
//! of values shifted by one of the channel's own values, so that a large mean does not cancel
//! away the variance's digits (the "shifted data" algorithm).

use super::{clamp1, with_avx2};
use rayon::prelude::*;

/// Batch normalisation in training mode and its clamp: the output, and per channel the batch
/// mean, the (biased) batch variance and `1 / sqrt(var + epsilon)`.
pub struct Normalized {
    pub out: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub inv_std: Vec<f32>,
}

/// `clamp((x - mean) · inv_std · gamma + beta)` with the batch's own statistics. One task per
/// channel sums its planes and then normalises them, so the second read of a channel comes
/// from cache (a statistics pass over the whole activation and then a normalising pass read
/// it from memory twice: at batch 32 a 112x112 activation of 96 channels is 154 MB).
pub fn train_forward(
    xs: &[f32],
    [n, c, hw]: [usize; 3],
    gamma: &[f32],
    beta: &[f32],
    epsilon: f64,
    clamp: (f32, f32),
) -> Normalized {
    assert_eq!(xs.len(), n * c * hw, "batch norm: input length");
    assert!(
        gamma.len() == c && beta.len() == c,
        "batch norm: gamma, beta length"
    );
    let len = n * c * hw;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let dst = PlaneWriter(out.as_mut_ptr());
    let per_channel: Vec<(f32, f32, f32)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mean, var) = channel_stats(xs, [n, c, hw], ch);
            let inv_std = (1.0 / (var as f64 + epsilon).sqrt()) as f32;
            let f = Affine {
                mean: &[mean],
                inv_std: &[inv_std],
                gamma: &gamma[ch..ch + 1],
                beta: &beta[ch..ch + 1],
                clamp,
            };
            let (scale, shift) = f.channel(0);
            let (lo, hi) = clamp;
            for b in 0..n {
                let at = (b * c + ch) * hw;
                // SAFETY: plane (b, ch) is this task's alone, within `out`'s capacity.
                let o = unsafe { dst.plane(at, hw) };
                with_avx2(
                    #[inline(always)]
                    || {
                        for (o, &x) in o.iter_mut().zip(&xs[at..at + hw]) {
                            o.write(clamp1(x * scale + shift, lo, hi));
                        }
                    },
                )
            }
            (mean, var, inv_std)
        })
        .collect();
    // SAFETY: the channels' tasks wrote every plane.
    unsafe { out.set_len(len) };
    let (mut mean, mut var, mut inv_std) = (
        Vec::with_capacity(c),
        Vec::with_capacity(c),
        Vec::with_capacity(c),
    );
    for (m, v, i) in per_channel {
        mean.push(m);
        var.push(v);
        inv_std.push(i);
    }
    Normalized {
        out,
        mean,
        var,
        inv_std,
    }
}

/// Channel `ch`'s batch mean and (biased) batch variance, over images and pixels.
fn channel_stats(xs: &[f32], [n, c, hw]: [usize; 3], ch: usize) -> (f32, f32) {
    let count = (n * hw).max(1) as f64;
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
}

/// Where the channels' tasks write their planes (disjoint: plane `(b, ch)` is channel ch's).
#[derive(Clone, Copy)]
struct PlaneWriter(*mut f32);

// SAFETY: each task writes only its own channel's planes.
unsafe impl Send for PlaneWriter {}
unsafe impl Sync for PlaneWriter {}

impl PlaneWriter {
    /// The `len` values at `at`, to be written.
    ///
    /// # Safety
    /// They lie within the buffer's capacity and no other task touches them meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn plane(&self, at: usize, len: usize) -> &mut [std::mem::MaybeUninit<f32>] {
        // SAFETY: as the caller promises.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at).cast(), len) }
    }
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

/// The gradients of [`train_forward`] given the output gradient `gs`: the input gradient
/// (which also flows through the mean and variance), and per channel the gamma and beta
/// gradients. The clamp passes the gradient only where the value was strictly inside its
/// bounds (PyTorch's relu and hardtanh). One task per channel sums and then writes its
/// planes, the second read from cache (as in [`train_forward`]).
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
    let count = (n * hw).max(1) as f32;
    let len = n * c * hw;
    let mut dx: Vec<f32> = Vec::with_capacity(len);
    let dst = PlaneWriter(dx.as_mut_ptr());
    let (dgamma, dbeta): (Vec<f32>, Vec<f32>) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (scale, shift) = f.channel(ch);
            let mean = f.mean[ch];
            // Σ g (beta's gradient) and Σ g·x̂ (gamma's gradient), x̂ = (x - mean)·inv_std,
            // with g already through the clamp.
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
            let (dgamma, dbeta) = ((sgx * f.inv_std[ch] as f64) as f32, sg as f32);
            // dx = gamma·inv_std·(g - Σg/N - x̂·Σ(g·x̂)/N), written as a·g + k·x + e.
            let a = scale;
            let k = -a * dgamma * f.inv_std[ch] / count;
            let e = -a * dbeta / count - k * mean;
            for b in 0..n {
                let at = (b * c + ch) * hw;
                let (gs, xs) = (&gs[at..at + hw], &xs[at..at + hw]);
                // SAFETY: plane (b, ch) is this task's alone, within `dx`'s capacity.
                let d = unsafe { dst.plane(at, hw) };
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
            }
            (dgamma, dbeta)
        })
        .unzip();
    // SAFETY: the channels' tasks wrote every plane.
    unsafe { dx.set_len(len) };
    (dx, dgamma, dbeta)
}

/// Σ (x - shift) and Σ (x - shift)² of one plane: f32 lanes within the plane (vectorised),
/// f64 across planes.
#[inline(always)]
fn shifted_sums(v: &[f32], shift: f32) -> (f64, f64) {
    sums(
        v,
        v,
        #[inline(always)]
        |x, _| {
            let d = x - shift;
            (d, d * d)
        },
    )
}

/// Σ of the pairs `pair(g, x)` gives over one plane, like [`shifted_sums`].
#[inline(always)]
fn dot_sums(g: &[f32], x: &[f32], pair: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
    sums(g, x, pair)
}

/// Values summed at a time: four independent vectors of 8 lanes per sum. One vector's
/// running sum is a chain of dependent adds (4 cycles each), which held a plane already in
/// cache to a quarter of the speed its loads allow.
const SUM_CHUNK: usize = 32;

/// Σ `pair(a, b)` over two planes of equal length, both halves of the pairs.
#[inline(always)]
fn sums(a: &[f32], b: &[f32], pair: impl Fn(f32, f32) -> (f32, f32)) -> (f64, f64) {
    let (mut s, mut s2) = ([0.0f32; SUM_CHUNK], [0.0f32; SUM_CHUNK]);
    let whole = a.len() / SUM_CHUNK * SUM_CHUNK;
    for (ca, cb) in a[..whole]
        .chunks_exact(SUM_CHUNK)
        .zip(b[..whole].chunks_exact(SUM_CHUNK))
    {
        for t in 0..SUM_CHUNK {
            let (p, q) = pair(ca[t], cb[t]);
            s[t] += p;
            s2[t] += q;
        }
    }
    let mut total = (lanes(&s), lanes(&s2));
    for (&a, &b) in a[whole..].iter().zip(&b[whole..]) {
        let (p, q) = pair(a, b);
        total.0 += p as f64;
        total.1 += q as f64;
    }
    total
}

#[inline(always)]
fn lanes(v: &[f32; SUM_CHUNK]) -> f64 {
    v.iter().map(|&x| x as f64).sum()
}

//! Batch normalisation in training mode on plain `f32` slices in NCHW-like order
//! (`[n, c, hw]`: images, channels, values per channel per image), forward and backward, each
//! as two passes over the activation where burn's composition of tensor ops takes a dozen.
//! Sums run in f32 lanes within a plane and f64 across planes; the variance pass sums squares
//! of values shifted by one of the channel's own values, so that a large mean does not cancel
//! away the variance's digits (the "shifted data" algorithm).

use rayon::prelude::*;

/// Per channel: the batch mean and the (biased) batch variance, over images and pixels.
pub fn stats(xs: &[f32], [n, c, hw]: [usize; 3]) -> (Vec<f32>, Vec<f32>) {
    let count = (n * hw).max(1) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let shift = xs.get(ch * hw).copied().unwrap_or(0.0);
            let (mut s, mut sq) = (0.0f64, 0.0f64);
            for b in 0..n {
                let plane = &xs[(b * c + ch) * hw..(b * c + ch + 1) * hw];
                let (ps, psq) = shifted_sums(plane, shift);
                s += ps;
                sq += psq;
            }
            let d = s / count;
            let var = (sq / count - d * d).max(0.0);
            ((shift as f64 + d) as f32, var as f32)
        })
        .unzip()
}

/// `(x - mean) * inv_std * gamma + beta`, per channel.
pub fn normalize(
    xs: &[f32],
    [n, c, hw]: [usize; 3],
    mean: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    beta: &[f32],
) -> Vec<f32> {
    let mut out = vec![0.0f32; n * c * hw];
    out.par_chunks_mut(hw.max(1))
        .zip(xs.par_chunks(hw.max(1)))
        .enumerate()
        .for_each(|(plane, (o, x))| {
            let ch = plane % c;
            let scale = inv_std[ch] * gamma[ch];
            let shift = beta[ch] - mean[ch] * scale;
            for (o, &x) in o.iter_mut().zip(x) {
                *o = x * scale + shift;
            }
        });
    out
}

/// The gradients of [`normalize`] with batch statistics, given the output gradient `gs`:
/// the input gradient (which also flows through the mean and variance), and per channel the
/// gamma and beta gradients.
pub fn backward(
    xs: &[f32],
    gs: &[f32],
    [n, c, hw]: [usize; 3],
    mean: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    // Per channel: Σ g (beta's gradient) and Σ g·x̂ (gamma's gradient), x̂ = (x - mean)·inv_std.
    let (dgamma, dbeta): (Vec<f32>, Vec<f32>) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mut sg, mut sgx) = (0.0f64, 0.0f64);
            for b in 0..n {
                let at = (b * c + ch) * hw;
                let (ps, psx) = dot_sums(&gs[at..at + hw], &xs[at..at + hw], mean[ch]);
                sg += ps;
                sgx += psx;
            }
            ((sgx * inv_std[ch] as f64) as f32, sg as f32)
        })
        .unzip();
    let count = (n * hw).max(1) as f32;
    let mut dx = vec![0.0f32; n * c * hw];
    dx.par_chunks_mut(hw.max(1))
        .enumerate()
        .for_each(|(plane, d)| {
            let ch = plane % c;
            let at = plane * hw;
            // dx = gamma·inv_std·(g - Σg/N - x̂·Σ(g·x̂)/N), written as a·g + k·x + e.
            let a = gamma[ch] * inv_std[ch];
            let k = -a * dgamma[ch] * inv_std[ch] / count;
            let e = -a * dbeta[ch] / count - k * mean[ch];
            for ((d, &g), &x) in d.iter_mut().zip(&gs[at..at + hw]).zip(&xs[at..at + hw]) {
                *d = a * g + k * x + e;
            }
        });
    (dx, dgamma, dbeta)
}

/// Σ (x - shift) and Σ (x - shift)² of one plane: f32 lanes within the plane (vectorised;
/// one running sum would be a chain of dependent adds), f64 across planes.
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

/// Σ g and Σ g·(x - mean) of one plane, like [`shifted_sums`].
fn dot_sums(g: &[f32], x: &[f32], mean: f32) -> (f64, f64) {
    let (mut s, mut sx) = ([0.0f32; 8], [0.0f32; 8]);
    let whole = g.len() / 8 * 8;
    for (cg, cx) in g[..whole].chunks_exact(8).zip(x[..whole].chunks_exact(8)) {
        for t in 0..8 {
            s[t] += cg[t];
            sx[t] += cg[t] * (cx[t] - mean);
        }
    }
    let mut total = (lanes(&s), lanes(&sx));
    for (&g, &x) in g[whole..].iter().zip(&x[whole..]) {
        total.0 += g as f64;
        total.1 += (g * (x - mean)) as f64;
    }
    total
}

fn lanes(v: &[f32; 8]) -> f64 {
    v.iter().map(|&x| x as f64).sum()
}

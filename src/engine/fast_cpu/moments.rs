//! A batch's statistics from moments — each run's mean and sum of squared deviations —
//! taken by the pass that writes an activation while each piece is in cache, then merged,
//! instead of a batch norm's own pass over the whole activation (`train::handed`).

use super::norm::Stats;
use super::with_avx512;

/// Values summed at a time: two 16-lane vectors on AVX-512, four 8-lane ones on AVX2.
const LANES: usize = 32;

impl Stats {
    /// A batch's statistics from its planes' [`plane_moments`] (`[n, c, hw]`, plane
    /// `b · c + ch`), merged per channel in image order ([`merge_moments`], in f64): the
    /// same values `norm::batch_stats` sums, to rounding.
    pub fn from_moments(planes: &[(f64, f64)], [n, c, hw]: [usize; 3], epsilon: f64) -> Self {
        assert_eq!(planes.len(), n * c, "batch norm: a moment per plane");
        let per = hw as f64;
        let (mut mean, mut var, mut inv_std) = (Vec::new(), Vec::new(), Vec::new());
        for ch in 0..c {
            let (count, m, m2) = (0..n).fold((0.0, 0.0, 0.0), |acc, b| {
                let (pm, pm2) = planes[b * c + ch];
                merge_moments(acc, (per, pm, pm2))
            });
            let v = (m2 / count.max(1.0)).max(0.0) as f32;
            mean.push(m as f32);
            var.push(v);
            inv_std.push((1.0 / (v as f64 + epsilon).sqrt()) as f32);
        }
        Stats { mean, var, inv_std }
    }
}

/// Two runs' `(count, mean, m2)` as one run's (Chan, Golub and LeVeque's pairwise update).
pub fn merge_moments(
    (na, ma, m2a): (f64, f64, f64),
    (nb, mb, m2b): (f64, f64, f64),
) -> (f64, f64, f64) {
    let n = na + nb;
    if n == 0.0 {
        return (0.0, 0.0, 0.0);
    }
    let delta = mb - ma;
    (
        n,
        ma + delta * nb / n,
        m2a + m2b + delta * delta * na * nb / n,
    )
}

/// One plane's mean and sum of squared deviations from it (`(mean, m2)`), for a pass that
/// has just written the plane and still has it in cache (a depthwise convolution's output,
/// `depthwise::Geometry::forward_with_moments`; a run of a 1x1's output row,
/// `pointwise::forward_with_moments`): [`Stats::from_moments`] merges them. The
/// plane's first value is the shift its sums are taken from, as `norm::batch_stats` shifts
/// by the channel's.
pub fn plane_moments(plane: &[f32]) -> (f64, f64) {
    let Some(&shift) = plane.first() else {
        return (0.0, 0.0);
    };
    // Not `Sums`: its set-up and its f64 flush (64 dependent adds) cost more than a 7x7
    // plane's values (Lite0's 1152-channel joined steps 2.4 -> 5.6 ms a step with it). Here
    // 32 lanes, flushed by halving trees every 64 values a lane.
    let (s, sq) = with_avx512(
        #[inline(always)]
        || {
            let mut totals = (0.0f64, 0.0f64);
            for run in plane.chunks(64 * LANES) {
                let (mut s, mut q) = ([0.0f32; LANES], [0.0f32; LANES]);
                let chunks = run.chunks_exact(LANES);
                let rest = chunks.remainder();
                for chunk in chunks {
                    for t in 0..LANES {
                        let d = chunk[t] - shift;
                        s[t] += d;
                        q[t] += d * d;
                    }
                }
                // The tail through the same lanes, padded with the shift (a deviation of
                // 0): a loop of its own was scalar.
                let mut tail = [shift; LANES];
                tail[..rest.len()].copy_from_slice(rest);
                for t in 0..LANES {
                    let d = tail[t] - shift;
                    s[t] += d;
                    q[t] += d * d;
                }
                totals.0 += halved(s);
                totals.1 += halved(q);
            }
            totals
        },
    );
    let count = plane.len() as f64;
    let d = s / count;
    (shift as f64 + d, (sq - s * d).max(0.0))
}

/// The lanes' sum by halving (vector adds, not a chain of dependent scalar ones).
#[inline(always)]
fn halved(mut v: [f32; LANES]) -> f64 {
    let mut width = LANES / 2;
    while width > 0 {
        for t in 0..width {
            v[t] += v[t + width];
        }
        width /= 2;
    }
    v[0] as f64
}

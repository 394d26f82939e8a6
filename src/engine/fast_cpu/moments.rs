//! A batch's statistics from moments — each run's mean and sum of squared deviations —
//! taken by the pass that writes an activation while each piece is in cache, then merged,
//! instead of a batch norm's own pass over the whole activation (`train::handed`).

use super::norm::Stats;
use super::with_avx512;

/// Values summed at a time: two 16-lane vectors on AVX-512, four 8-lane ones on AVX2.
const LANES: usize = 32;

impl Stats {
    /// A batch's statistics from its planes' [`plane_moments`] (`[n, c, hw]`, plane
    /// `b · c + ch`), in f64: the same values `norm::batch_stats` sums, to rounding. The
    /// planes are of one size, so a channel's mean is its planes' means' mean, and its sum
    /// of squared deviations the planes' own plus `hw` times their means' squared
    /// deviations from it — two short sums in memory order, where merging plane after plane
    /// ([`merge_moments`]) chained two divisions a plane across strided reads (a 1152-channel
    /// 7x7 map at batch 32, on one thread: 0.31 ms, now 0.03, in a temporary timing loop).
    pub fn from_moments(planes: &[(f64, f64)], [n, c, hw]: [usize; 3], epsilon: f64) -> Self {
        assert_eq!(planes.len(), n * c, "batch norm: a moment per plane");
        let (per, images) = (hw as f64, n as f64);
        // Image by image, each a run of `c` planes in memory order.
        let mut m = vec![0.0f64; c];
        for image in planes.chunks_exact(c.max(1)) {
            for (m, &(pm, _)) in m.iter_mut().zip(image) {
                *m += pm;
            }
        }
        m.iter_mut().for_each(|m| *m /= images.max(1.0));
        let mut m2 = vec![0.0f64; c];
        for image in planes.chunks_exact(c.max(1)) {
            for ((m2, &m), &(pm, pm2)) in m2.iter_mut().zip(&m).zip(image) {
                *m2 += pm2 + per * (pm - m) * (pm - m);
            }
        }
        let var: Vec<f32> = m2
            .iter()
            .map(|m2| (m2 / (images * per).max(1.0)).max(0.0) as f32)
            .collect();
        Stats {
            mean: m.iter().map(|&m| m as f32).collect(),
            inv_std: var
                .iter()
                .map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32)
                .collect(),
            var,
        }
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

/// [`plane_moments`] of each of the first `out.len()` lanes of a pixel-major buffer (pixel
/// p's `W` lanes at `p · W`, one channel a lane): for a pass that holds its output that way
/// (the grouped depthwise pass, `depthwise_blocked.rs`), one vector of `W` channels at a
/// time, where reading each plane back took one horizontal sum per plane — as much as a 7x7
/// map's values cost to sum (Lite0's 672-channel 14x14 joined step at batch 32, in a
/// temporary timing loop: 0.9-1.5 ms over the step without moments; now within its noise).
/// Each lane's first value is its shift; f32 sums are flushed into f64 every 64 pixels, as
/// [`plane_moments`] flushes every 64 values a lane.
///
/// Inlined into its caller's vector code (`lanes::with_avx512`), which it runs inside.
#[inline(always)]
pub fn lane_moments<const W: usize>(pixels: &[f32], out: &mut [(f64, f64)]) {
    assert!(
        out.len() <= W && pixels.len().is_multiple_of(W),
        "moments: lanes of a pixel-major buffer"
    );
    let count = pixels.len() / W;
    let Some(shift) = pixels.first_chunk::<W>() else {
        out.fill((0.0, 0.0));
        return;
    };
    let (mut s, mut q) = ([0.0f64; W], [0.0f64; W]);
    for run in pixels.chunks(64 * W) {
        // Two pixels at a time into two pairs of sums: one pair's adds form a chain, each
        // waiting on the last.
        let (mut rs, mut rq) = ([[0.0f32; W]; 2], [[0.0f32; W]; 2]);
        let pairs = run.chunks_exact(2 * W);
        let last = pairs.remainder();
        for pair in pairs {
            for (k, px) in pair.chunks_exact(W).enumerate() {
                for t in 0..W {
                    let d = px[t] - shift[t];
                    rs[k][t] += d;
                    rq[k][t] += d * d;
                }
            }
        }
        for t in 0..last.len() {
            let d = last[t] - shift[t];
            rs[0][t] += d;
            rq[0][t] += d * d;
        }
        for t in 0..W {
            s[t] += (rs[0][t] + rs[1][t]) as f64;
            q[t] += (rq[0][t] + rq[1][t]) as f64;
        }
    }
    for (t, o) in out.iter_mut().enumerate() {
        let d = s[t] / count as f64;
        *o = (shift[t] as f64 + d, (q[t] - s[t] * d).max(0.0));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each lane's moments from a pixel-major buffer are its plane's `plane_moments`: maps of
    /// fewer and more than the 64 pixels summed in f32 at a time, values far from zero (a
    /// mean 1000 times their spread), fewer channels than lanes (the others not asked).
    #[test]
    fn lane_moments_are_each_planes() {
        const W: usize = 16;
        for (pixels, offset, asked) in [(49, 0.0, 16), (196, 1000.0, 16), (130, 3.0, 5)] {
            let planes: Vec<Vec<f32>> = (0..W)
                .map(|ch| {
                    (0..pixels)
                        .map(|p| offset + ((p * 37 + ch * 11) % 23) as f32 * 0.125 - ch as f32)
                        .collect()
                })
                .collect();
            let mut buffer = vec![0.0f32; pixels * W];
            for (ch, plane) in planes.iter().enumerate() {
                for (p, &v) in plane.iter().enumerate() {
                    buffer[p * W + ch] = v;
                }
            }
            let mut got = vec![(f64::NAN, f64::NAN); asked];
            lane_moments::<W>(&buffer, &mut got);
            for (ch, &(mean, m2)) in got.iter().enumerate() {
                let (want_mean, want_m2) = plane_moments(&planes[ch]);
                assert!(
                    (mean - want_mean).abs() <= 1e-6 * want_mean.abs().max(1.0),
                    "{pixels} pixels, lane {ch}: mean {mean} against {want_mean}"
                );
                assert!(
                    (m2 - want_m2).abs() <= 1e-4 * want_m2.max(1.0),
                    "{pixels} pixels, lane {ch}: m2 {m2} against {want_m2}"
                );
            }
        }
    }
}

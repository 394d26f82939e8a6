//! Batch normalisation on plain `f32` slices in NCHW-like order (`[n, c, hw]`: images,
//! channels, values per channel per image), with the clamp that follows it (ReLU, ReLU6)
//! fused in: in training mode forward and backward, each one task per block of channels
//! that reads the block twice (the second time from cache), where burn's composition of
//! tensor ops takes a dozen passes over the activation; with running statistics
//! (inference), one pass. Sums run in f32 lanes, flushed into f64 every few thousand values
//! (`Sums`); the variance pass sums squares
//! of values shifted by one of the channel's own values, so that a large mean does not cancel
//! away the variance's digits (the "shifted data" algorithm).

use super::{clamp1, with_avx512};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

#[path = "norm_backward.rs"]
mod backward;
pub use backward::{
    ChannelGrad, GradMap, backward, backward_in_place, backward_terms, plane_grad_sums,
};

/// Batch normalisation in training mode and its clamp: the output, and per channel the batch
/// mean, the (biased) batch variance and `1 / sqrt(var + epsilon)`.
pub struct Normalized {
    pub out: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub inv_std: Vec<f32>,
}

/// `clamp((x - mean) · inv_std · gamma + beta)` with the batch's own statistics. One task per
/// block of channels ([`channel_blocks`]) sums their planes and then normalises them, so the
/// second read comes from cache (a statistics pass over the whole activation and then a
/// normalising pass read it from memory twice: at batch 32 a 112x112 activation of 96
/// channels is 154 MB).
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
    let per = channel_blocks(c, hw);
    let blocks: Vec<Vec<(f32, f32, f32)>> = (0..c.div_ceil(per))
        .into_par_iter()
        .map(|block| {
            let chs = block * per..((block + 1) * per).min(c);
            let stats = block_stats(xs, [n, c, hw], chs.clone(), epsilon);
            let maps: Vec<(f32, f32)> = chs
                .clone()
                .zip(&stats)
                .map(|(ch, &(mean, _, inv_std))| {
                    Affine {
                        mean: &[mean],
                        inv_std: &[inv_std],
                        gamma: &gamma[ch..ch + 1],
                        beta: &beta[ch..ch + 1],
                        clamp,
                    }
                    .channel(0)
                })
                .collect();
            let (lo, hi) = clamp;
            // One call into the vector code for the whole block: one a plane cost as much
            // as a 7x7 plane's values.
            with_avx512(
                #[inline(always)]
                || {
                    for b in 0..n {
                        for (ch, &(scale, shift)) in chs.clone().zip(&maps) {
                            let at = (b * c + ch) * hw;
                            // SAFETY: plane (b, ch) is this task's alone, within `out`'s
                            // capacity.
                            let o = unsafe { dst.plane(at, hw) };
                            for (o, &x) in o.iter_mut().zip(&xs[at..at + hw]) {
                                o.write(clamp1(x * scale + shift, lo, hi));
                            }
                        }
                    }
                },
            );
            stats
        })
        .collect();
    // SAFETY: the blocks' tasks wrote every plane.
    unsafe { out.set_len(len) };
    let Stats { mean, var, inv_std } = Stats::from_blocks(blocks);
    Normalized {
        out,
        mean,
        var,
        inv_std,
    }
}

/// A batch's statistics per channel: mean, (biased) variance and `1 / sqrt(var + epsilon)`.
pub struct Stats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub inv_std: Vec<f32>,
}

impl Stats {
    fn from_blocks(blocks: Vec<Vec<(f32, f32, f32)>>) -> Self {
        let (mut mean, mut var, mut inv_std) = (Vec::new(), Vec::new(), Vec::new());
        for (m, v, i) in blocks.into_iter().flatten() {
            mean.push(m);
            var.push(v);
            inv_std.push(i);
        }
        Stats { mean, var, inv_std }
    }
}

/// [`train_forward`]'s statistics alone, where the normalised values are not written out
/// but computed by their reader (`depthwise::InputMap`): the same sums, so the same values.
pub fn batch_stats(xs: &[f32], [n, c, hw]: [usize; 3], epsilon: f64) -> Stats {
    assert_eq!(xs.len(), n * c * hw, "batch norm: input length");
    let per = channel_blocks(c, hw);
    let blocks = (0..c.div_ceil(per))
        .into_par_iter()
        .map(|block| {
            let chs = block * per..((block + 1) * per).min(c);
            block_stats(xs, [n, c, hw], chs, epsilon)
        })
        .collect();
    Stats::from_blocks(blocks)
}

/// Values of one image a task's block of channels holds at least (consecutive channels'
/// planes lie one after another): a task per channel read 7x7 planes as 196-byte pieces
/// 225 KB apart (EfficientNet-Lite0's 1152-channel blocks), at a quarter of the bandwidth
/// of 112x112 planes.
const RUN_VALUES: usize = 1024;

/// Channels per task: a run of at least [`RUN_VALUES`] per image, but at least four tasks a
/// thread.
fn channel_blocks(c: usize, hw: usize) -> usize {
    let tasks = 4 * rayon::current_num_threads();
    RUN_VALUES.div_ceil(hw.max(1)).min(c / tasks).max(1)
}

/// Image `b + 1`'s run of channels `chs` into L2 (`lanes::prefetch_l2`) while image b's is
/// read: the runs lie `c · hw` values apart, and the hardware's prefetcher starts over at
/// each (narrow maps' runs are a few KB: Lite0's 14x14 and 7x7 batch norms).
#[inline(always)]
pub(super) fn prefetch_next_run(xs: &[f32], b: usize, chs: Range<usize>, [n, c, hw]: [usize; 3]) {
    if b + 1 < n {
        let at = (b + 1) * c;
        super::lanes::prefetch_l2(&xs[(at + chs.start) * hw..(at + chs.end) * hw]);
    }
}

/// The batch mean, (biased) batch variance and `1 / sqrt(var + epsilon)` of channels `chs`,
/// over images and pixels, reading the images' runs of those channels in memory order.
fn block_stats(
    xs: &[f32],
    [n, c, hw]: [usize; 3],
    chs: Range<usize>,
    epsilon: f64,
) -> Vec<(f32, f32, f32)> {
    let count = (n * hw).max(1) as f64;
    let shifts: Vec<f32> = chs
        .clone()
        .map(|ch| xs.get(ch * hw).copied().unwrap_or(0.0))
        .collect();
    let sums = with_avx512(
        #[inline(always)]
        || {
            let mut sums: Vec<Sums> = shifts.iter().map(|_| Sums::new()).collect();
            for b in 0..n {
                prefetch_next_run(xs, b, chs.clone(), [n, c, hw]);
                for ((ch, sums), &shift) in chs.clone().zip(&mut sums).zip(&shifts) {
                    let plane = &xs[(b * c + ch) * hw..(b * c + ch + 1) * hw];
                    sums.add(
                        plane,
                        plane,
                        #[inline(always)]
                        |x, _| {
                            let d = x - shift;
                            (d, d * d)
                        },
                    );
                }
            }
            sums
        },
    );
    sums.into_iter()
        .zip(shifts)
        .map(|(sums, shift)| {
            let (s, sq) = sums.total();
            let d = s / count;
            let var = (sq / count - d * d).max(0.0) as f32;
            let inv_std = (1.0 / (var as f64 + epsilon).sqrt()) as f32;
            ((shift as f64 + d) as f32, var, inv_std)
        })
        .collect()
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
    pub fn channel(&self, ch: usize) -> (f32, f32) {
        let scale = self.inv_std[ch] * self.gamma[ch];
        (scale, self.beta[ch] - self.mean[ch] * scale)
    }
}

/// A batch norm and its clamp applied to a convolution's input as the convolution stages it
/// — a depthwise convolution copying each plane into its bordered scratch buffer or
/// transposing it into a group's, a 1x1 packing its pixels or taking them for its weight
/// gradient's dot products: `clamp(x · scale + shift, lo, hi)` per channel
/// (`Affine::channel`). Training joins a batch norm to the convolution that alone reads it
/// (`train::norm_depthwise`, `train::norm_pointwise`) through this, so the normalised
/// activation is never written out and read back: both passes over it were memory-bound,
/// 154 MB each at batch 32 in Lite0's 112x112 block. The expression and its order are
/// this module's (multiply, then add: not a fused multiply-add), so the staged values are
/// the ones batch norm would have written, to the bit.
pub struct InputMap {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
    pub clamp: (f32, f32),
}

/// One channel's [`InputMap`].
#[derive(Clone, Copy, Debug)]
pub struct PlaneMap {
    pub scale: f32,
    pub shift: f32,
    pub lo: f32,
    pub hi: f32,
}

impl PlaneMap {
    #[inline(always)]
    pub fn apply(self, v: f32) -> f32 {
        clamp1(v * self.scale + self.shift, self.lo, self.hi)
    }
}

impl InputMap {
    pub fn new(norm: &Affine, c: usize) -> Self {
        let (scale, shift) = (0..c).map(|ch| norm.channel(ch)).unzip();
        InputMap {
            scale,
            shift,
            clamp: norm.clamp,
        }
    }

    pub fn plane(&self, ch: usize) -> PlaneMap {
        PlaneMap {
            scale: self.scale[ch],
            shift: self.shift[ch],
            lo: self.clamp.0,
            hi: self.clamp.1,
        }
    }

    /// The map of channel `ch`, where there is one.
    pub fn of(map: Option<&Self>, ch: usize) -> Option<PlaneMap> {
        map.map(|m| m.plane(ch))
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
            with_avx512(
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

/// Values summed at a time: four independent vectors of 8 lanes per sum (two of 16 on
/// AVX-512). One vector's running sum is a chain of dependent adds (4 cycles each), which
/// held a plane already in cache to a quarter of the speed its loads allow.
const SUM_CHUNK: usize = 32;
/// Half a chunk, summed straight from a plane before the masked copy of what is left.
const HALF: usize = SUM_CHUNK / 2;

/// Values the f32 lanes take before they are added into the f64 totals: about 128 a lane,
/// or one plane when planes are larger.
const FLUSH_VALUES: usize = 128 * SUM_CHUNK;

/// A channel's two running sums of `pair(a, b)` over its planes: f32 lanes (vectorised) that
/// take planes whole, small ones several in a row, flushed into f64 totals every
/// [`FLUSH_VALUES`] and at the end. A plane's last partial chunk goes through the same
/// lanes, masked: summed per plane into f64 with a scalar tail, the 7x7 and 14x14 planes of
/// a network's last blocks ran batch norm at a quarter of the bandwidth of 112x112 ones.
struct Sums {
    s: [f32; SUM_CHUNK],
    s2: [f32; SUM_CHUNK],
    /// Values in the lanes since the last flush.
    taken: usize,
    total: (f64, f64),
}

impl Sums {
    #[inline(always)]
    fn new() -> Self {
        Sums {
            s: [0.0; SUM_CHUNK],
            s2: [0.0; SUM_CHUNK],
            taken: 0,
            total: (0.0, 0.0),
        }
    }

    /// Adds `pair(a[i], b[i])` over one plane (`a`, `b` of equal length).
    #[inline(always)]
    fn add(&mut self, a: &[f32], b: &[f32], pair: impl Fn(f32, f32) -> (f32, f32)) {
        let mut whole = a.len() / SUM_CHUNK * SUM_CHUNK;
        for (ca, cb) in a[..whole]
            .chunks_exact(SUM_CHUNK)
            .zip(b[..whole].chunks_exact(SUM_CHUNK))
        {
            self.add_lanes::<SUM_CHUNK>(ca, cb, &pair);
        }
        // Half a chunk more straight from the plane (a 7x7 plane's 49 values: 32 + 16 + 1,
        // one value through the masked copy instead of 17).
        if a.len() - whole >= HALF {
            let at = whole..whole + HALF;
            self.add_lanes::<HALF>(&a[at.clone()], &b[at], &pair);
            whole += HALF;
        }
        let rest = a.len() - whole;
        if rest > 0 {
            let (mut ta, mut tb) = ([0.0f32; SUM_CHUNK], [0.0f32; SUM_CHUNK]);
            ta[..rest].copy_from_slice(&a[whole..]);
            tb[..rest].copy_from_slice(&b[whole..]);
            for t in 0..SUM_CHUNK {
                let (p, q) = pair(ta[t], tb[t]);
                // A select, not a branch, so the loop vectorises.
                let keep = t < rest;
                self.s[t] += if keep { p } else { 0.0 };
                self.s2[t] += if keep { q } else { 0.0 };
            }
        }
        self.taken += a.len();
        if self.taken >= FLUSH_VALUES {
            self.flush();
        }
    }

    /// Adds `pair(a[t], b[t])` into the first `N` lanes (`a`, `b`: `N` values each; a
    /// length fixed at compile time, so the loop is whole vectors).
    #[inline(always)]
    fn add_lanes<const N: usize>(
        &mut self,
        a: &[f32],
        b: &[f32],
        pair: &impl Fn(f32, f32) -> (f32, f32),
    ) {
        const { assert!(N <= SUM_CHUNK) };
        let a: &[f32; N] = a.try_into().expect("N values");
        let b: &[f32; N] = b.try_into().expect("N values");
        for t in 0..N {
            let (p, q) = pair(a[t], b[t]);
            self.s[t] += p;
            self.s2[t] += q;
        }
    }

    #[inline(always)]
    fn flush(&mut self) {
        self.total.0 += lanes(&self.s);
        self.total.1 += lanes(&self.s2);
        (self.s, self.s2, self.taken) = ([0.0; SUM_CHUNK], [0.0; SUM_CHUNK], 0);
    }

    /// Both sums.
    #[inline(always)]
    fn total(mut self) -> (f64, f64) {
        self.flush();
        self.total
    }
}

#[inline(always)]
fn lanes(v: &[f32; SUM_CHUNK]) -> f64 {
    v.iter().map(|&x| x as f64).sum()
}

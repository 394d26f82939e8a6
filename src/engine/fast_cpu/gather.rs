//! Packing the right-hand operand of Graft's matrix kernel (`mm.rs`) straight from where its
//! values lie: a convolution's patches in its input (`dense.rs`), or 1x1 input planes whose
//! columns run on from one image into the next (`pointwise.rs`).
//!
//! Row r of such an operand is kernel tap `r % taps` of input channel `r / taps`, and where a
//! tap's values lie within a channel's plane is the same for every channel. So a block's
//! layout is worked out once per tap ([`Plan`]: pieces of at most one strip's width, each a
//! run of the input or zeros of the padding) and every channel's rows are then plain copies
//! into the packed strips. Finding the runs row by row (two divisions per output row of
//! every row of B, then a copy through a buffer) was a fifth of ResNet-18's time.

use super::blocking::strip_len;
use super::mm::NR;
use super::norm::InputMap;
use std::cell::Cell;
use std::ops::Range;

/// A piece of a packed row: `len` (1..=NR) columns of one strip, from `at` on in the packed
/// block for row 0 (row i at `at + i · NR`), read from `src` on in the channel's values, or
/// zeros ([`ZERO`]).
#[derive(Clone, Copy, Debug)]
struct Piece {
    at: usize,
    src: usize,
    len: usize,
}

/// `Piece::src` of padding.
const ZERO: usize = usize::MAX;

/// One block's pieces, tap by tap.
#[derive(Default)]
pub struct Plan {
    pieces: Vec<Piece>,
    /// Each tap's pieces.
    taps: Vec<Range<usize>>,
    /// Rows of the packed block (the strips' height).
    kc: usize,
}

/// Rows ahead whose pieces [`Plan::pack`] asks for while it packs a row.
const AHEAD: usize = 4;

thread_local! {
    /// Each thread's plan, kept between blocks (its vectors reach their size once).
    static PLAN: Cell<Plan> = Cell::new(Plan::default());
}

impl Plan {
    /// Runs `f` with this thread's plan, emptied, for a packed block `kc` rows high.
    pub fn with<R>(kc: usize, f: impl FnOnce(&mut Plan) -> R) -> R {
        let mut plan = PLAN.take();
        plan.pieces.clear();
        plan.taps.clear();
        plan.kc = kc;
        let r = f(&mut plan);
        PLAN.set(plan);
        r
    }

    /// Starts the next tap's pieces.
    pub fn tap(&mut self) {
        let at = self.pieces.len();
        self.taps.push(at..at);
    }

    /// Columns `d..d + len` of the block are zeros (padding) in the current tap.
    pub fn zeros(&mut self, d: usize, len: usize) {
        self.push(d, len, ZERO);
    }

    /// Columns `d..d + len` of the block read a channel's consecutive values from `src` on
    /// in the current tap.
    pub fn values(&mut self, d: usize, len: usize, src: usize) {
        self.push(d, len, src);
    }

    /// Splits a run at strip boundaries.
    fn push(&mut self, mut d: usize, mut len: usize, mut src: usize) {
        let tap = self.taps.last_mut().expect("gather plan: a tap first");
        while len > 0 {
            let lane = d % NR;
            let n = len.min(NR - lane);
            self.pieces.push(Piece {
                at: (d / NR) * strip_len(self.kc) + lane,
                src,
                len: n,
            });
            tap.end += 1;
            (d, len) = (d + n, len - n);
            if src != ZERO {
                src += n;
            }
        }
    }

    /// Packs rows `k0..k0 + kc` into `strips`: row r is the plan's tap `r % taps` of channel
    /// `r / taps`, whose values are `xs[channel(r / taps)..]` — through that channel's batch
    /// norm where `map` is given (a 1x1 joined to the batch norm it reads; padding stays
    /// zero).
    ///
    /// # Panics
    /// When a piece reads outside `xs` or writes outside `strips` (the plan and `channel`
    /// disagree with them).
    pub fn pack(
        &self,
        xs: &[f32],
        k0: usize,
        channel: impl Fn(usize) -> usize,
        map: Option<&InputMap>,
        strips: &mut [f32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if super::lanes::has_avx512() {
            // SAFETY: the CPU has AVX-512 (checked just above).
            return unsafe { self.pack_avx512(xs, k0, channel, map, strips) };
        }
        self.pack_portable(xs, k0, channel, map, strips)
    }

    /// [`Plan::pack`] on any CPU.
    fn pack_portable(
        &self,
        xs: &[f32],
        k0: usize,
        channel: impl Fn(usize) -> usize,
        map: Option<&InputMap>,
        strips: &mut [f32],
    ) {
        let taps = self.taps.len();
        for i in 0..self.kc {
            let r = k0 + i;
            let values = &xs[channel(r / taps)..];
            let map = InputMap::of(map, r / taps);
            for piece in &self.pieces[self.taps[r % taps].clone()] {
                let dst = &mut strips[piece.at + i * NR..][..piece.len];
                match (piece.src, piece.len) {
                    (ZERO, _) => dst.fill(0.0),
                    // A whole strip's row: a fixed-size copy (a few vector moves).
                    (src, NR) => {
                        let src: &[f32; NR] = values[src..src + NR].try_into().unwrap();
                        let dst: &mut [f32; NR] = dst.try_into().unwrap();
                        *dst = *src;
                    }
                    (src, len) => dst.copy_from_slice(&values[src..src + len]),
                }
                if let (Some(map), true) = (map, piece.src != ZERO) {
                    dst.iter_mut().for_each(|v| *v = map.apply(*v));
                }
            }
        }
    }
}

impl Plan {
    /// [`Plan::pack`] with each piece one masked 16-lane load and store (a piece is at most
    /// one strip, 16 values): pieces shorter than a strip were `memcpy` calls, and those calls
    /// with the per-piece branching were a sixth of ResNet-18's time. Bounds are checked per
    /// row against how far the row's tap reads and how far the plan writes.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn pack_avx512(
        &self,
        xs: &[f32],
        k0: usize,
        channel: impl Fn(usize) -> usize,
        map: Option<&InputMap>,
        strips: &mut [f32],
    ) {
        use super::lanes::clamp16;
        use std::arch::x86_64::*;
        const _: () = assert!(NR == 16, "one masked 16-lane vector per piece");
        let taps = self.taps.len();
        let reach: Vec<usize> = self
            .taps
            .iter()
            .map(|t| {
                self.pieces[t.clone()]
                    .iter()
                    .filter(|p| p.src != ZERO)
                    .map(|p| p.src + p.len)
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let written = self.pieces.iter().map(|p| p.at + p.len).max().unwrap_or(0);
        if self.kc > 0 {
            assert!(
                written + (self.kc - 1) * NR <= strips.len(),
                "gather: the plan writes past the strips"
            );
        }
        let zero = _mm512_setzero_ps();
        for i in 0..self.kc {
            let r = k0 + i;
            let base = channel(r / taps);
            let tap = r % taps;
            assert!(
                base <= xs.len() && reach[tap] <= xs.len() - base,
                "gather: a piece reads past the input"
            );
            let values = xs[base..].as_ptr();
            let row = strips[i * NR..].as_mut_ptr();
            // Row i + AHEAD's pieces into L2: a block's columns run over many images, each a
            // stream of its own down the channels (a 7x7 map's 1x1: 32 of them), more than
            // the hardware's prefetcher follows.
            if i + AHEAD < self.kc {
                let r = r + AHEAD;
                let (base, tap) = (channel(r / taps), r % taps);
                for piece in &self.pieces[self.taps[tap].clone()] {
                    if piece.src != ZERO {
                        let at = xs.as_ptr().wrapping_add(base + piece.src);
                        // A hint: it reads nothing, wherever `at` points.
                        _mm_prefetch::<_MM_HINT_T1>(at.cast());
                    }
                }
            }
            // The channel's batch norm, multiply then add as `norm.rs` computes it.
            let map = InputMap::of(map, r / taps).map(|m| {
                (
                    _mm512_set1_ps(m.scale),
                    _mm512_set1_ps(m.shift),
                    _mm512_set1_ps(m.lo),
                    _mm512_set1_ps(m.hi),
                )
            });
            for piece in &self.pieces[self.taps[tap].clone()] {
                let mask: __mmask16 = ((1u32 << piece.len) - 1) as u16;
                // SAFETY: the piece's `len` lanes lie within the strips and (not padding)
                // within the channel's values (asserted above); masked-off lanes are not
                // touched.
                unsafe {
                    let v = if piece.src == ZERO {
                        zero
                    } else {
                        let v = _mm512_maskz_loadu_ps(mask, values.add(piece.src));
                        match map {
                            Some((s, t, lo, hi)) => {
                                clamp16(_mm512_add_ps(_mm512_mul_ps(v, s), t), lo, hi)
                            }
                            None => v,
                        }
                    };
                    _mm512_mask_storeu_ps(row.add(piece.at), mask, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pieces split at strip boundaries land where packing puts those columns: strip s's
    /// row i at `s · strip_len(kc) + i · NR`, for zeros and runs.
    #[test]
    fn pieces_land_in_their_strips() {
        let kc = 3;
        let block = 2 * NR + 5;
        // Two channels of 100 values; channel c's value v is 1000 c + v.
        let xs: Vec<f32> = (0..200)
            .map(|i| (1000 * (i / 100) + i % 100) as f32)
            .collect();
        let mut strips = vec![f32::NAN; 3 * strip_len(kc)];
        let lay_out = |plan: &mut Plan| {
            // Tap 0: zeros, a run of 30 from value 10, a run of 4 from value 50.
            plan.tap();
            plan.zeros(0, 3);
            plan.values(3, 30, 10);
            plan.values(33, 4, 50);
            // Tap 1: a run over the whole block from value 2.
            plan.tap();
            plan.values(0, block, 2);
        };
        Plan::with(kc, |plan| {
            lay_out(plan);
            // Rows 1, 2, 3 of B: channel 0 tap 1, channel 1 tap 0, channel 1 tap 1.
            plan.pack(&xs, 1, |c| c * 100, None, &mut strips);
        });
        let want = |row: usize, d: usize| -> f32 {
            let (c, tap) = (row / 2, row % 2);
            let base = 1000.0 * c as f32;
            match (tap, d) {
                (1, d) => base + 2.0 + d as f32,
                (0, 0..3) => 0.0,
                (0, 3..33) => base + 10.0 + (d - 3) as f32,
                (0, d) => base + 50.0 + (d - 33) as f32,
                _ => unreachable!(),
            }
        };
        for i in 0..kc {
            for d in 0..block {
                let got = strips[(d / NR) * strip_len(kc) + i * NR + d % NR];
                assert_eq!(got, want(1 + i, d), "row {i} column {d}");
            }
        }
        // Lanes past the block's last column are left alone.
        assert!(strips[2 * strip_len(kc) + 5].is_nan());
        // The portable packing agrees lane for lane (`pack` took the AVX-512 one where the
        // machine has it).
        let mut portable = vec![f32::NAN; strips.len()];
        Plan::with(kc, |plan| {
            lay_out(plan);
            plan.pack_portable(&xs, 1, |c| c * 100, None, &mut portable);
        });
        for (i, (a, b)) in strips.iter().zip(&portable).enumerate() {
            assert!(a == b || (a.is_nan() && b.is_nan()), "lane {i}: {a} vs {b}");
        }
    }
}

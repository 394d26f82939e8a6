//! A 1x1 convolution of one image with its pixels as the kernel's rows and its output
//! channels as the vector lanes (`Cᵀ = xᵀ · Wᵀ`), on AVX-512: the input planes are read in
//! place (a pixel's value broadcast per step) and the filters, transposed into strips of 16
//! output channels, are packed once. Where [`super::multiply`] puts pixels in the lanes, a
//! 7x7 map (49 pixels) fills 3 strips of 16 and 1 lane of a fourth, and every block of
//! filters packs its copy of the input first: Lite0's 7x7 1x1s at batch 1 ran at 0.7× ONNX
//! Runtime's speed per node (whose NCHWc kernels vectorise over channels too and pack
//! nothing). The sums come out a pixel per vector, so each tile is turned round through a
//! small buffer as it is stored (a gather per output channel).

use super::{Act, MR, PackedA};
use std::ops::Range;

/// Output channels per strip: one 16-lane vector.
pub const LANES: usize = 16;
// The store's gather offsets are written out for rows of 16.
const _: () = assert!(LANES == 16);
/// Pixels per tile: 12 rows × 2 strips are 24 accumulators (2 loads of filters and 12
/// broadcasts a step).
pub const ROWS: usize = 12;

/// The filters `Wᵀ`, `k × rows`, as strips of [`LANES`] output channels (the last padded
/// with zeros), two strips interleaved step by step (`[k][2 · LANES]`) so that a tile reads
/// one stream; an odd last strip alone (`[k][LANES]`).
pub struct Strips {
    data: Vec<f32>,
    rows: usize,
    k: usize,
}

impl Strips {
    /// From the filters as [`PackedA`] holds them (rows in panels of [`MR`]).
    pub(super) fn new(a: &PackedA) -> Self {
        let (rows, k) = (a.rows, a.k);
        let strips = rows.div_ceil(LANES);
        let mut data = vec![0.0f32; strips * LANES * k];
        for row in 0..rows {
            let panel = a.panel(row / MR);
            let (s, lane) = (row / LANES, row % LANES);
            let (start, width) = Self::pair_of(s, strips, k);
            let lane = (s % 2) * LANES + lane;
            for i in 0..k {
                data[start + i * width + lane] = panel[i * MR + row % MR];
            }
        }
        Strips { data, rows, k }
    }

    /// Where the pair (or lone last strip) holding strip `s` starts, and its width.
    fn pair_of(s: usize, strips: usize, k: usize) -> (usize, usize) {
        let start = (s / 2) * 2 * LANES * k;
        let width = if s / 2 * 2 + 1 < strips { 2 } else { 1 };
        (start, width * LANES)
    }

    /// Strips of [`LANES`] output channels.
    pub fn strips(&self) -> usize {
        self.rows.div_ceil(LANES)
    }

    /// Pairs of strips (the last may be a lone strip): the unit of work of [`multiply`].
    pub fn pairs(&self) -> usize {
        self.strips().div_ceil(2)
    }
}

/// Whether [`multiply`] runs here and pays for one image's sums of `k` steps at `pixels`
/// pixels: on AVX-512, on small maps, with sums long enough that turning each tile round
/// costs little beside them.
pub fn applies(k: usize, pixels: usize) -> bool {
    super::wide() && k >= MIN_K && pixels <= MAX_PIXELS
}

/// Shortest sum worth it: a tile's 24 vectors of sums are turned round through a buffer.
const MIN_K: usize = 64;

/// Largest map worth it: Lite0's 7x7 1x1s ran 15-20 % faster per node at batch 1 on two
/// cores (`GRAFT_PROFILE=nodes`), its 14x14 ones 3-5 % faster on one core but 1.7-1.9x
/// slower on two — each task reads every input plane a step at a time, 784 bytes apart,
/// half of them from the other core's cache where the packing `multiply` reads each
/// plane as one run — and its 28x28 and 56x56 ones slower on one core already (k planes
/// read as k streams).
const MAX_PIXELS: usize = 64;

/// `act(Wᵀ-strips · x + bias)` for the output channels of strip pairs `pairs` at pixels
/// `pixels` of one image: `x` is the image's `k` input planes (`ldx` apart), `c` its output
/// planes (`ldc` apart), row 0 the filters' first.
///
/// # Safety
/// [`applies`] is true; `x` is valid for reads of `k` planes of `ldx` values at `pixels`;
/// `c` for writes of the pairs' rows (below `rows`) at `pixels`, `ldc` apart, and nothing
/// else touches them meanwhile.
#[allow(clippy::too_many_arguments)]
pub unsafe fn multiply(
    w: &Strips,
    pairs: Range<usize>,
    x: *const f32,
    ldx: usize,
    pixels: Range<usize>,
    (c, ldc): (*mut f32, usize),
    bias: Option<&[f32]>,
    act: Act,
) {
    assert!(pairs.end <= w.pairs(), "by pixels: pairs out of range");
    assert!(pixels.end <= ldx.min(ldc), "by pixels: pixels out of range");
    if let Some(bias) = bias {
        assert_eq!(bias.len(), w.rows, "by pixels: bias length");
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as the caller promises.
    unsafe {
        x86::multiply(
            w,
            pairs.clone(),
            x,
            ldx,
            pixels.clone(),
            (c, ldc),
            bias,
            act,
        )
    };
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("by_pixels::applies is false off x86-64");
    if act == Act::Silu {
        let rows = pairs.start * 2 * LANES..(pairs.end * 2 * LANES).min(w.rows);
        for row in rows {
            // SAFETY: the run was written above, within the caller's block.
            let vals = unsafe {
                std::slice::from_raw_parts_mut(c.add(row * ldc + pixels.start), pixels.len())
            };
            act.apply_all(vals);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::super::lanes::clamp16;
    use super::{Act, LANES, ROWS, Range, Strips};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn multiply(
        w: &Strips,
        pairs: Range<usize>,
        x: *const f32,
        ldx: usize,
        pixels: Range<usize>,
        (c, ldc): (*mut f32, usize),
        bias: Option<&[f32]>,
        act: Act,
    ) {
        // A clamp is applied in registers; SiLU by the caller, over the finished rows.
        let (lo, hi) = match act {
            Act::Clamp(lo, hi) => (lo, hi),
            Act::Silu => (f32::NEG_INFINITY, f32::INFINITY),
        };
        let (k, strips) = (w.k, w.strips());
        for q in pairs {
            let (start, width) = Strips::pair_of(2 * q, strips, k);
            // SAFETY: the pair's `k × width` values lie at `start`.
            let ws = unsafe { w.data.as_ptr().add(start) };
            let mut p0 = pixels.start;
            while p0 < pixels.end {
                let left = pixels.end - p0;
                let store = Store {
                    c,
                    ldc,
                    rows: w.rows,
                    strip0: 2 * q,
                    p0,
                    bias,
                    lo,
                    hi,
                };
                // SAFETY: the tile's pixels p0.. lie in `pixels`; its strips in the pair.
                let done = unsafe {
                    let x = x.add(p0);
                    if width == 2 * LANES {
                        tile_any::<2>(left, k, x, ldx, ws, &store)
                    } else {
                        tile_any::<1>(left, k, x, ldx, ws, &store)
                    }
                };
                p0 += done;
            }
        }
    }

    /// The largest tile of at most `left` pixels on `S` strips, stored; how many pixels
    /// it took.
    #[inline(always)]
    unsafe fn tile_any<const S: usize>(
        left: usize,
        k: usize,
        x: *const f32,
        ldx: usize,
        ws: *const f32,
        store: &Store<'_>,
    ) -> usize {
        // SAFETY: as the caller promises, for the tile's pixels.
        unsafe {
            match left {
                // A tile of 13 or 14 (28 accumulators) rather than 12 and a last one of 1
                // or 2: 49 pixels as 12 + 12 + 12 + 13.
                13 if S == 2 => store.tile(&tile::<13, S>(k, x, ldx, ws)),
                14 if S == 2 => store.tile(&tile::<14, S>(k, x, ldx, ws)),
                ROWS.. => store.tile(&tile::<ROWS, S>(k, x, ldx, ws)),
                8.. => store.tile(&tile::<8, S>(k, x, ldx, ws)),
                4.. => store.tile(&tile::<4, S>(k, x, ldx, ws)),
                2.. => store.tile(&tile::<2, S>(k, x, ldx, ws)),
                _ => store.tile(&tile::<1, S>(k, x, ldx, ws)),
            }
        }
    }

    /// `R` pixels' sums on `S` strips: per step, `S` vectors of filters and each pixel's
    /// input value broadcast.
    #[inline(always)]
    unsafe fn tile<const R: usize, const S: usize>(
        k: usize,
        x: *const f32,
        ldx: usize,
        ws: *const f32,
    ) -> [[__m512; S]; R] {
        // SAFETY: compiled into `multiply`, which has AVX-512.
        let mut acc = [[unsafe { _mm512_setzero_ps() }; S]; R];
        for i in 0..k {
            // SAFETY: plane i holds the tile's R pixels; the pair k × S · LANES values.
            unsafe {
                let mut f = [_mm512_setzero_ps(); S];
                for (t, f) in f.iter_mut().enumerate() {
                    *f = _mm512_loadu_ps(ws.add((i * S + t) * LANES));
                }
                let xi = x.add(i * ldx);
                for (r, acc) in acc.iter_mut().enumerate() {
                    let v = _mm512_set1_ps(*xi.add(r));
                    for (acc, &f) in acc.iter_mut().zip(&f) {
                        *acc = _mm512_fmadd_ps(v, f, *acc);
                    }
                }
            }
        }
        acc
    }

    /// Where a tile's sums go: output channel `strip0 · LANES + j` of pixel `p0 + r` at
    /// `c + (channel · ldc) + p0 + r`, plus the bias, clamped.
    struct Store<'a> {
        c: *mut f32,
        ldc: usize,
        rows: usize,
        strip0: usize,
        p0: usize,
        bias: Option<&'a [f32]>,
        lo: f32,
        hi: f32,
    }

    impl Store<'_> {
        /// Stores the tile (pixel r's sums of strip t at `acc[r][t]`); returns R.
        #[inline(always)]
        unsafe fn tile<const R: usize, const S: usize>(&self, acc: &[[__m512; S]; R]) -> usize {
            // Strip t of every pixel's sums: `acc[r][t]` down the rows.
            #[allow(clippy::needless_range_loop)]
            for t in 0..S {
                let row0 = (self.strip0 + t) * LANES;
                let valid = LANES.min(self.rows - row0);
                let mask: __mmask16 = if valid == LANES {
                    !0
                } else {
                    (1u16 << valid) - 1
                };
                // SAFETY: the bias has `rows` values, `valid` of them from row0; the tile's
                // rows below `rows` at its R pixels lie in C (the caller's promise).
                unsafe {
                    let b = match self.bias {
                        Some(b) => _mm512_maskz_loadu_ps(mask, b.as_ptr().add(row0)),
                        None => _mm512_setzero_ps(),
                    };
                    let (lo, hi) = (_mm512_set1_ps(self.lo), _mm512_set1_ps(self.hi));
                    let mut turn = [[0.0f32; LANES]; R];
                    for (r, v) in turn.iter_mut().enumerate() {
                        let s = clamp16(_mm512_add_ps(acc[r][t], b), lo, hi);
                        _mm512_storeu_ps(v.as_mut_ptr(), s);
                    }
                    // Channel j's R values gathered from the buffer's column j, stored as
                    // one run of pixels.
                    let rows_mask: __mmask16 = if R == LANES { !0 } else { (1u16 << R) - 1 };
                    // Row r of the buffer starts r · LANES values in.
                    let down = _mm512_setr_epi32(
                        0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240,
                    );
                    let base = turn.as_ptr().cast::<f32>();
                    for j in 0..valid {
                        let dst = self.c.add((row0 + j) * self.ldc + self.p0);
                        let col = _mm512_mask_i32gather_ps::<4>(
                            _mm512_setzero_ps(),
                            rows_mask,
                            down,
                            base.add(j),
                        );
                        _mm512_mask_storeu_ps(dst, rows_mask, col);
                    }
                }
            }
            R
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel against a plain triple loop: channel counts that leave a partial strip and
    /// a lone last strip, pixel counts that need tiles of 13, 14, 8, 4, 2 and 1, a block of
    /// pairs and pixels that is not the first, rows of the output wider than the block,
    /// each activation, with and without bias.
    #[test]
    fn multiply_matches_plain_loops() {
        if !super::super::wide() {
            return;
        }
        let val = |i: usize, s: usize| ((i * 7919 + s * 104_729) % 201) as f32 / 100.0 - 1.0;
        for (rows, k, hw, pairs, pixels, act, bias) in [
            (40, 64, 49, 0..2, 0..49, Act::Clamp(0.0, 6.0), true),
            (192, 70, 49, 1..5, 3..49, Act::NONE, false),
            (16, 9, 30, 0..1, 0..30, Act::Silu, true),
            (33, 5, 64, 0..2, 5..64, Act::Clamp(-0.5, 0.5), true),
            (70, 3, 14, 1..3, 0..14, Act::NONE, true),
            (48, 12, 27, 0..2, 0..27, Act::Clamp(-1.0, 1.0), false),
        ] {
            let w: Vec<f32> = (0..rows * k).map(|i| val(i, 1)).collect();
            let x: Vec<f32> = (0..k * hw).map(|i| val(i, 2)).collect();
            let b: Vec<f32> = (0..rows).map(|i| val(i, 3)).collect();
            let bias = bias.then_some(b.as_slice());
            let ldc = hw + 3;
            let mut c = vec![f32::NAN; rows * ldc];
            let packed = PackedA::new(&w, rows, k);
            // SAFETY: AVX-512 checked above; x holds k planes of hw, c rows of ldc.
            unsafe {
                multiply(
                    packed.by_pixels(),
                    pairs.clone(),
                    x.as_ptr(),
                    hw,
                    pixels.clone(),
                    (c.as_mut_ptr(), ldc),
                    bias,
                    act,
                )
            };
            let written = pairs.start * 2 * LANES..(pairs.end * 2 * LANES).min(rows);
            for r in 0..rows {
                for p in 0..ldc {
                    let got = c[r * ldc + p];
                    let case = format!("{rows}x{k} at {hw} pixels {act:?}: {r},{p}");
                    if !(written.contains(&r) && pixels.contains(&p)) {
                        assert!(got.is_nan(), "{case}: wrote outside the block");
                        continue;
                    }
                    let sum: f32 = (0..k).map(|i| w[r * k + i] * x[i * hw + p]).sum();
                    let want = act.apply(sum + bias.map_or(0.0, |b| b[r]));
                    assert!((got - want).abs() < 1e-4, "{case}: {got} vs {want}");
                }
            }
        }
    }
}

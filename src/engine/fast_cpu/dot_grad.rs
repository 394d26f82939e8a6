//! A 1x1 convolution's weight gradient for one image, `dw += g · xᵀ` (g: `co × hw`, x:
//! `c × hw`), as dot products on AVX-512: both operands are read in place, row by row. The
//! matrix kernel (`mm.rs`) wants one of them packed sum-major, a transposed copy of every
//! image's output gradient: for Lite0's 16-channel 112x112 layer, 154 MB a batch of 32 packed
//! for a 96 × 16 result. Used where the maps are large (many pixels per sum) and the result
//! small, so each output's 16 partial sums stay in a buffer the size of L2's share.

use super::norm::{GradMap, InputMap};
use crate::engine::Precision;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::ops::Range;

/// Lanes of a vector.
const L: usize = 16;
/// Rows of g and of x a tile takes: 4 × 4 outputs' sums in 16 registers, 8 loads per 16 FMAs.
const T: usize = 4;
/// Vectors of pixels a pass over every tile takes: g's and x's rows of the chunk (4 KB each)
/// stay in L2 while the tiles go by.
const CHUNK: usize = 64;
/// Rows ahead whose chunk the staging loops prefetch as they map a row. A chunk's row is
/// 4 KB of a plane, the next row's a plane further on, so the hardware's prefetcher starts
/// over on every row (and stops at each page's end); fetched two rows ahead, Lite0's
/// mapped 1x1 gradients on 28x28 to 112x112 maps took 3-8 % less of a step on a 2-vCPU
/// Zen 4 EPYC (0.7 % of the step in all).
const AHEAD: usize = 2;
/// Bytes a prefetch brings (one cache line).
#[cfg(target_arch = "x86_64")]
const LINE: usize = 64;
/// Pixels per map from which the dot products pay (28x28 maps gained 10 %, 56x56 and 112x112
/// 20-40 %): fewer, and each tile's running sums are loaded and stored about as often as
/// they are added to.
const MIN_PIXELS: usize = 512;
/// Most outputs (`co × c`) whose 16-lane sums are kept (1 MB, half of L2).
const MAX_OUTPUTS: usize = 16384;

/// Whether [`add`] runs for these sizes on this machine.
pub fn applies([c, co, hw]: [usize; 3]) -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::has_avx512() && hw >= MIN_PIXELS && co * c <= MAX_OUTPUTS && co * c > 0;
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (c, co, hw);
        false
    }
}

/// `dw[o · c + i] += Σ_p g[o · hw + p] · x[i · hw + p]` for every output `o` and input `i`,
/// x taken through `map` where there is one, the products at `precision` (see
/// [`add_then`]). Only where [`applies`] is true.
pub fn add(
    g: &[f32],
    x: (&[f32], Option<&InputMap>),
    [c, co, hw]: [usize; 3],
    dw: &mut [f32],
    precision: Precision,
) {
    add_then((g, None), x, [c, co, hw], dw, precision, |_, _| {});
}

/// Where the rows of the output gradient of a chunk of pixels lie for [`add_then`]'s
/// `after`: row `o` at `at + o · ld`, the chunk's first pixel first.
#[derive(Clone, Copy)]
pub struct Rows {
    pub at: *const f32,
    pub ld: usize,
}

/// [`add`], calling `after(pixels, rows)` as each chunk of pixels is done, while those
/// columns of `g` and `x` are still in cache (a 1x1 convolution's input gradient reads the
/// same columns of `g`, at `rows`: `pointwise::backward_mapped` computes it there instead
/// of in a pass of its own). With a map, x is taken through it (a batch norm joined to the
/// 1x1 that reads it): each chunk's rows of x are mapped into a buffer the tiles then read.
/// With a gradient map, `g` is the gradient of the batch norm that reads the 1x1's output,
/// and the 1x1's own output gradient is `map(g, y)` (`y`: the 1x1's output, `co × hw`),
/// staged the same way chunk by chunk, so batch norm's input gradient is never written
/// (`train::deferred`). In bf16 (`precision`, where the CPU has AVX512_BF16) each chunk's
/// rows of both operands are rounded to bf16 once and the tiles multiply pairs of pixels
/// (`vdpbf16ps`, fp32 sums): twice the products an instruction and half the bytes from L2
/// a product, as the matrix kernel's bf16 path; the rows handed to `after` stay fp32.
pub fn add_then(
    (g, g_map): (&[f32], Option<(&[f32], &GradMap)>),
    (x, map): (&[f32], Option<&InputMap>),
    [c, co, hw]: [usize; 3],
    dw: &mut [f32],
    precision: Precision,
    after: impl FnMut(Range<usize>, Rows),
) {
    assert!(applies([c, co, hw]), "dot weight gradient: does not apply");
    assert!(
        g.len() == co * hw && x.len() == c * hw && dw.len() == co * c,
        "dot weight gradient: lengths"
    );
    assert!(
        map.is_none_or(|m| m.scale.len() == c && m.shift.len() == c),
        "dot weight gradient: map length"
    );
    assert!(
        g_map.is_none_or(|(y, m)| y.len() == co * hw && m.channels() == co),
        "dot weight gradient: gradient map lengths"
    );
    let pairs = precision == Precision::Bf16 && super::mm::bf16_available();
    // SAFETY: `applies` checked AVX-512 (and `bf16_available` AVX512_BF16 for `pairs`); the
    // lengths are asserted above.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        tiles((g, g_map), (x, map), [c, co, hw], dw, pairs, after)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (after, map, g_map, pairs);
}

/// [`add`]'s body (`pairs`: in bf16, [`add_then`]).
///
/// # Safety
/// The CPU has AVX-512 F, and AVX512_BF16 with BW where `pairs`; `g`, `x`, `dw` and the
/// map have the lengths [`add_then`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tiles(
    (g, g_map): (&[f32], Option<(&[f32], &GradMap)>),
    (x, map): (&[f32], Option<&InputMap>),
    [c, co, hw]: [usize; 3],
    dw: &mut [f32],
    pairs: bool,
    mut after: impl FnMut(Range<usize>, Rows),
) {
    let vecs = hw.div_ceil(L);
    let last: __mmask16 = match hw % L {
        0 => !0,
        r => (1u16 << r) - 1,
    };
    // Each output's 16 partial sums, `[co][c]`.
    let mut sums = vec![_mm512_setzero_ps(); co * c];
    // With a map, each chunk's rows of x mapped: `c` rows of `CHUNK` vectors, in this
    // thread's buffer (every vector the tiles read is written first: never zeroed).
    let mut mapped = MAPPED.take();
    if map.is_some() && mapped.len() < c * CHUNK * L {
        mapped.resize(c * CHUNK * L, 0.0);
    }
    // With a gradient map, each chunk's rows of g mapped, likewise.
    let mut mapped_g = MAPPED_G.take();
    if g_map.is_some() && mapped_g.len() < co * CHUNK * L {
        mapped_g.resize(co * CHUNK * L, 0.0);
    }
    let mut next = NextChunk::default();
    for v0 in (0..vecs).step_by(CHUNK) {
        let v1 = (v0 + CHUNK).min(vecs);
        // Where the tiles read row i of x at vector v: `x_at + i · x_ld + (v - x_v0) · L`.
        let (x_at, x_ld, x_v0) = match map {
            None => (x.as_ptr(), hw, 0),
            Some(map) => {
                let (p0, p1) = (v0 * L, (v1 * L).min(hw));
                for (i, dst) in mapped.chunks_exact_mut(CHUNK * L).take(c).enumerate() {
                    let m = map.plane(i);
                    let (s, t) = (_mm512_set1_ps(m.scale), _mm512_set1_ps(m.shift));
                    let (lo, hi) = (_mm512_set1_ps(m.lo), _mm512_set1_ps(m.hi));
                    let src = &x[i * hw + p0..i * hw + p1];
                    let ahead = (i + AHEAD < c).then(|| x[(i + AHEAD) * hw + p0..].as_ptr());
                    for (q, (d, v)) in dst.chunks_exact_mut(L).zip(src.chunks(L)).enumerate() {
                        if let Some(a) = ahead {
                            // SAFETY: a prefetch does not fault; the address is within x
                            // (row i + AHEAD's chunk).
                            unsafe { _mm_prefetch::<_MM_HINT_T0>(a.add(q * L) as *const i8) };
                        }
                        let mask: __mmask16 = ((1u32 << v.len()) - 1) as u16;
                        // SAFETY: `v.len()` lanes read within `src`, all 16 written
                        // within `d` (one whole vector of the buffer).
                        unsafe {
                            let v = _mm512_maskz_loadu_ps(mask, v.as_ptr());
                            // Multiply then add, as `norm.rs` computes it.
                            let v = _mm512_add_ps(_mm512_mul_ps(v, s), t);
                            _mm512_storeu_ps(d.as_mut_ptr(), super::lanes::clamp16(v, lo, hi));
                        }
                    }
                }
                (mapped.as_ptr(), CHUNK * L, v0)
            }
        };
        // Where the tiles read row o of g at vector v: `g_at + o · g_ld + (v - g_v0) · L`.
        let (g_at, g_ld, g_v0) = match g_map {
            None => (g.as_ptr(), hw, 0),
            Some((y, gm)) => {
                let (p0, p1) = (v0 * L, (v1 * L).min(hw));
                for (o, dst) in mapped_g.chunks_exact_mut(CHUNK * L).take(co).enumerate() {
                    let m = gm.channel(o);
                    let (a, k, e) = (
                        _mm512_set1_ps(m.a),
                        _mm512_set1_ps(m.k),
                        _mm512_set1_ps(m.e),
                    );
                    let (s, t) = (_mm512_set1_ps(m.scale), _mm512_set1_ps(m.shift));
                    let (lo, hi) = (_mm512_set1_ps(m.lo), _mm512_set1_ps(m.hi));
                    let (gs, ys) = (&g[o * hw + p0..o * hw + p1], &y[o * hw + p0..o * hw + p1]);
                    let ahead = (o + AHEAD < co).then(|| {
                        let at = (o + AHEAD) * hw + p0;
                        (g[at..].as_ptr(), y[at..].as_ptr())
                    });
                    for (q, ((d, gv), yv)) in dst
                        .chunks_exact_mut(L)
                        .zip(gs.chunks(L))
                        .zip(ys.chunks(L))
                        .enumerate()
                    {
                        if let Some((ga, ya)) = ahead {
                            // SAFETY: a prefetch does not fault; the addresses are within g
                            // and y (row o + AHEAD's chunk).
                            unsafe {
                                _mm_prefetch::<_MM_HINT_T0>(ga.add(q * L) as *const i8);
                                _mm_prefetch::<_MM_HINT_T0>(ya.add(q * L) as *const i8);
                            }
                        }
                        let mask: __mmask16 = ((1u32 << gv.len()) - 1) as u16;
                        // SAFETY: `gv.len()` lanes read within `gs` and `ys`, all 16 written
                        // within `d` (one whole vector of the buffer).
                        unsafe {
                            let gv = _mm512_maskz_loadu_ps(mask, gv.as_ptr());
                            let yv = _mm512_maskz_loadu_ps(mask, yv.as_ptr());
                            // `norm::ChannelGrad::apply`, op for op: the pre-clamp value,
                            // g where the clamp let it through, then a·g' + k·y + e.
                            let pre = _mm512_add_ps(_mm512_mul_ps(yv, s), t);
                            let inside = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(lo, pre)
                                & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(pre, hi);
                            let gv = _mm512_maskz_mov_ps(inside, gv);
                            let v = _mm512_add_ps(
                                _mm512_add_ps(_mm512_mul_ps(a, gv), _mm512_mul_ps(k, yv)),
                                e,
                            );
                            _mm512_storeu_ps(d.as_mut_ptr(), v);
                        }
                    }
                }
                (mapped_g.as_ptr(), CHUNK * L, v0)
            }
        };
        // In bf16 each tile step takes a pair of vectors of pixels.
        let pixels = v0 * L..(v1 * L).min(hw);
        let steps_a_tile = if pairs {
            pixels.len().div_ceil(2 * L)
        } else {
            v1 - v0
        };
        // The next chunk's rows as they lie in memory, fetched into L2 while this chunk's
        // tiles compute, so that its staging (or in-place reads) finds them there.
        if v1 < vecs {
            let pixels = v1 * L..((v1 + CHUNK) * L).min(hw);
            let steps = co.div_ceil(T) * c.div_ceil(T) * steps_a_tile;
            next.plan(pixels, hw, [g, g_map.map_or(&[], |(y, _)| y), x], steps);
        } else {
            next.rows.clear();
        }
        if pairs {
            // SAFETY: as this function's caller promises for `pairs`; rows o < co of g
            // and i < c of x hold the chunk's pixels at the offsets given.
            unsafe {
                let g_rows = (g_at.add((v0 - g_v0) * L), g_ld);
                let x_rows = (x_at.add((v0 - x_v0) * L), x_ld);
                tiles_in_pairs(g_rows, x_rows, [c, co, pixels.len()], &mut sums, &mut next);
            }
        } else {
            for o0 in (0..co).step_by(T) {
                let ro = T.min(co - o0);
                for i0 in (0..c).step_by(T) {
                    let ri = T.min(c - i0);
                    let mut s = [[_mm512_setzero_ps(); T]; T];
                    for a in 0..ro {
                        for b in 0..ri {
                            s[a][b] = sums[(o0 + a) * c + i0 + b];
                        }
                    }
                    for v in v0..v1 {
                        next.step();
                        let m = if v + 1 == vecs { last } else { !0 };
                        let mut gv = [_mm512_setzero_ps(); T];
                        let mut xv = [_mm512_setzero_ps(); T];
                        // SAFETY: rows o0 + a < co of g and i0 + b < c of x (or of the mapped
                        // chunk, whose rows hold the chunk's vectors); the mask keeps the loads
                        // within the row's `hw` values.
                        unsafe {
                            for (a, gv) in gv.iter_mut().enumerate().take(ro) {
                                let at = (o0 + a) * g_ld + (v - g_v0) * L;
                                *gv = _mm512_maskz_loadu_ps(m, g_at.add(at));
                            }
                            for (b, xv) in xv.iter_mut().enumerate().take(ri) {
                                let at = (i0 + b) * x_ld + (v - x_v0) * L;
                                *xv = _mm512_maskz_loadu_ps(m, x_at.add(at));
                            }
                        }
                        // Rows past the edge hold zeros and their sums are not kept.
                        for a in 0..T {
                            for b in 0..T {
                                s[a][b] = _mm512_fmadd_ps(gv[a], xv[b], s[a][b]);
                            }
                        }
                    }
                    for a in 0..ro {
                        for b in 0..ri {
                            sums[(o0 + a) * c + i0 + b] = s[a][b];
                        }
                    }
                }
            }
        }
        let rows = Rows {
            // SAFETY: the chunk's first pixel of row 0, within g (or the staged rows).
            at: unsafe { g_at.add((v0 - g_v0) * L) },
            ld: g_ld,
        };
        after(v0 * L..(v1 * L).min(hw), rows);
    }
    MAPPED.set(mapped);
    MAPPED_G.set(mapped_g);
    for (d, s) in dw.iter_mut().zip(&sums) {
        *d += _mm512_reduce_add_ps(*s);
    }
}

/// One chunk's dot products in bf16 (see [`add_then`]): its `len` pixels of every row of g
/// and x (`(first pixel of row 0, row stride)`) rounded to bf16 into this thread's
/// buffers, two pixels to a 32-bit lane (the same pairing for both, so lane j's pair of
/// one meets the same pixels of the other), then the 4 × 4 tiles as [`tiles`]' own, one
/// `vdpbf16ps` (32 products) a tile step, into the same 16-lane fp32 `sums` (`[co][c]`).
///
/// # Safety
/// The CPU has AVX-512 F and BW and AVX512_BF16; rows `0..co` of g and `0..c` of x each
/// hold `len` values from where given.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn tiles_in_pairs(
    (g_at, g_ld): (*const f32, usize),
    (x_at, x_ld): (*const f32, usize),
    [c, co, len]: [usize; 3],
    sums: &mut [__m512],
    next: &mut NextChunk,
) {
    // 32-bit values a row's chunk of pairs takes (a whole chunk's pixels, paired).
    const ROW: usize = CHUNK * L / 2;
    let steps = len.div_ceil(2 * L);
    let mut pairs_g = PAIRS_G.take();
    let mut pairs_x = PAIRS_X.take();
    // SAFETY (all below): as the caller promises; the pair buffers hold `rows × ROW` values
    // and each row's `steps` vectors lie within its ROW (`len <= CHUNK · L`).
    unsafe {
        round_rows((g_at, g_ld), co, len, &mut pairs_g);
        round_rows((x_at, x_ld), c, len, &mut pairs_x);
        for o0 in (0..co).step_by(T) {
            let ro = T.min(co - o0);
            for i0 in (0..c).step_by(T) {
                let ri = T.min(c - i0);
                let mut s = [[_mm512_setzero_ps(); T]; T];
                for a in 0..ro {
                    for b in 0..ri {
                        s[a][b] = sums[(o0 + a) * c + i0 + b];
                    }
                }
                for q in 0..steps {
                    next.step();
                    // Rows past the edge are zeros and their sums are not kept.
                    let mut gv = [_mm512_setzero_si512(); T];
                    let mut xv = [_mm512_setzero_si512(); T];
                    for (a, gv) in gv.iter_mut().enumerate().take(ro) {
                        *gv =
                            _mm512_loadu_si512(pairs_g.as_ptr().add((o0 + a) * ROW + q * L).cast());
                    }
                    for (b, xv) in xv.iter_mut().enumerate().take(ri) {
                        *xv =
                            _mm512_loadu_si512(pairs_x.as_ptr().add((i0 + b) * ROW + q * L).cast());
                    }
                    for a in 0..T {
                        for b in 0..T {
                            s[a][b] = _mm512_dpbf16_ps(
                                s[a][b],
                                std::mem::transmute::<__m512i, __m512bh>(gv[a]),
                                std::mem::transmute::<__m512i, __m512bh>(xv[b]),
                            );
                        }
                    }
                }
                for a in 0..ro {
                    for b in 0..ri {
                        sums[(o0 + a) * c + i0 + b] = s[a][b];
                    }
                }
            }
        }
    }
    PAIRS_G.set(pairs_g);
    PAIRS_X.set(pairs_x);
}

/// `rows` rows of `len` values (`(row 0, row stride)`) rounded to bf16 into `out`, row r at
/// `r · CHUNK · L / 2`: 32 values a 512-bit vector in order, zeros past `len` up to the
/// vector's end (the tiles read whole vectors).
///
/// # Safety
/// As [`tiles_in_pairs`]'s caller promises.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn round_rows((at, ld): (*const f32, usize), rows: usize, len: usize, out: &mut Vec<u32>) {
    const ROW: usize = CHUNK * L / 2;
    assert!(len <= CHUNK * L, "dot weight gradient: chunk length");
    if out.len() < rows * ROW {
        out.resize(rows * ROW, 0);
    }
    let mask = |p: usize| -> __mmask16 {
        match len.saturating_sub(p) {
            n if n >= L => !0,
            n => ((1u32 << n) - 1) as u16,
        }
    };
    for r in 0..rows {
        // SAFETY: as the caller promises; loads masked to the row's `len` values, stores
        // within row r's ROW values.
        unsafe {
            let src = at.add(r * ld);
            let dst = out.as_mut_ptr().add(r * ROW);
            for p in (0..len).step_by(2 * L) {
                let lo = _mm512_maskz_loadu_ps(mask(p), src.add(p));
                let hi = _mm512_maskz_loadu_ps(mask(p + L), src.add(p + L));
                let both: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                _mm512_storeu_si512(dst.add(p / 2).cast(), both);
            }
        }
    }
}

/// Prefetches of the next chunk's rows spread over the current chunk's tile steps: staging
/// a chunk waits on memory and the tiles do not, so fetched one at a time the two never
/// overlapped (Lite0's 16 → 96 expand at 112x112 moves 11 MB an image at 13 GB/s where the
/// machine copies at 31). Into L2 (`T1`): into L1 (`T0`) they gained nothing, and the
/// tiles' own operands live there.
#[cfg(target_arch = "x86_64")]
#[derive(Default)]
struct NextChunk {
    /// Each row's first value in the chunk.
    rows: Vec<*const f32>,
    /// Cache lines a row's piece spans.
    lines: usize,
    /// Prefetches each tile step issues.
    per_step: usize,
    /// The next line to fetch: row, then line within it.
    at: (usize, usize),
}

#[cfg(target_arch = "x86_64")]
impl NextChunk {
    /// Plans the chunk `pixels` of each `hw`-long row of every operand (an empty operand has
    /// none), spread over `steps` tile steps.
    fn plan(&mut self, pixels: Range<usize>, hw: usize, operands: [&[f32]; 3], steps: usize) {
        self.rows.clear();
        for op in operands {
            let starts = (0..op.len() / hw).map(|r| op[r * hw + pixels.start..].as_ptr());
            self.rows.extend(starts);
        }
        self.lines = (pixels.len() * size_of::<f32>()).div_ceil(LINE);
        self.per_step = (self.rows.len() * self.lines).div_ceil(steps.max(1));
        self.at = (0, 0);
    }

    /// Issues one tile step's prefetches.
    #[inline(always)]
    fn step(&mut self) {
        for _ in 0..self.per_step {
            let Some(row) = self.rows.get(self.at.0) else {
                return;
            };
            // SAFETY: a prefetch does not fault; the address is within the row's piece
            // (`at.1 < lines`, so `at.1 · LINE` is less than the piece's bytes).
            unsafe {
                let a = row.byte_add(self.at.1 * LINE);
                _mm_prefetch::<_MM_HINT_T1>(a as *const i8);
            }
            self.at.1 += 1;
            if self.at.1 == self.lines {
                self.at = (self.at.0 + 1, 0);
            }
        }
    }
}

thread_local! {
    /// Each thread's chunk of mapped input rows, kept between calls (a fresh zeroed buffer
    /// per image was up to 1 MB to clear for Lite0's 240-channel 28x28 project).
    static MAPPED: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    /// Each thread's chunk of mapped output-gradient rows.
    static MAPPED_G: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    /// Each thread's chunk of output-gradient rows in bf16 pairs ([`tiles_in_pairs`]).
    static PAIRS_G: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
    /// Each thread's chunk of input rows in bf16 pairs.
    static PAIRS_X: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against plain loops: edge tiles in both operands (7 outputs, 5 inputs), pixels past one
    /// chunk with a partial last vector, and sums added to what `dw` held.
    #[test]
    fn dot_products_match_plain_loops() {
        let (c, co, hw) = (5, 7, CHUNK * L + 23);
        if !applies([c, co, hw]) {
            return;
        }
        let val = |i: usize, s: usize| ((i * 7919 + s * 104_729) % 201) as f32 / 100.0 - 1.0;
        let g: Vec<f32> = (0..co * hw).map(|i| val(i, 1)).collect();
        let x: Vec<f32> = (0..c * hw).map(|i| val(i, 2)).collect();
        let before: Vec<f32> = (0..co * c).map(|i| val(i, 3)).collect();
        let mut dw = before.clone();
        add(&g, (&x, None), [c, co, hw], &mut dw, Precision::Fp32);
        for o in 0..co {
            for i in 0..c {
                let want: f64 = before[o * c + i] as f64
                    + (0..hw)
                        .map(|p| g[o * hw + p] as f64 * x[i * hw + p] as f64)
                        .sum::<f64>();
                let got = dw[o * c + i] as f64;
                assert!((got - want).abs() < 1e-2, "({o}, {i}): {got} vs {want}");
            }
        }
    }

    /// Through a batch norm's map, the sums are those of the mapped input, to the bit:
    /// chunks past the first and a partial last vector, a clamp that cuts values on both
    /// sides.
    #[test]
    fn mapped_input_is_the_mapped_values() {
        let (c, co, hw) = (6, 5, 2 * CHUNK * L + 9);
        if !applies([c, co, hw]) {
            return;
        }
        let val = |i: usize, s: usize| ((i * 7919 + s * 104_729) % 201) as f32 / 50.0 - 2.0;
        let g: Vec<f32> = (0..co * hw).map(|i| val(i, 1)).collect();
        let x: Vec<f32> = (0..c * hw).map(|i| val(i, 2)).collect();
        let map = InputMap {
            scale: (0..c).map(|i| 0.5 + i as f32 * 0.3).collect(),
            shift: (0..c).map(|i| i as f32 * 0.2 - 0.4).collect(),
            clamp: (0.0, 1.5),
        };
        let mapped: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(j, &v)| map.plane(j / hw).apply(v))
            .collect();
        assert!(
            mapped.contains(&0.0) && mapped.contains(&1.5),
            "the clamp cuts"
        );
        for precision in [Precision::Fp32, Precision::Bf16] {
            let mut want = vec![0.0f32; co * c];
            add(&g, (&mapped, None), [c, co, hw], &mut want, precision);
            let mut got = vec![0.0f32; co * c];
            add(&g, (&x, Some(&map)), [c, co, hw], &mut got, precision);
            assert_eq!(got, want, "{precision:?}");
        }
    }

    /// `v` rounded to the nearest bf16 (ties to even), as `vcvtne2ps2bf16` rounds it.
    fn to_bf16(v: f32) -> f32 {
        let bits = v.to_bits();
        f32::from_bits((bits + 0x7fff + ((bits >> 16) & 1)) & 0xffff_0000)
    }

    /// In bf16, the sums of the operands' bf16 values' products: edge tiles in both operands,
    /// a last chunk whose pixels end inside a pair and inside a vector (the rows lie one
    /// after the other, so a read past a row's end would take the next row's values), sums
    /// added to what `dw` held. Within fp32 rounding of the sums, far below bf16's.
    #[test]
    fn bf16_dot_products_are_the_rounded_operands() {
        let (c, co, hw) = (5, 7, 2 * CHUNK * L + 23);
        if !applies([c, co, hw]) || !super::super::mm::bf16_available() {
            return;
        }
        // Values with more bits than bf16 keeps, so rounding them shows.
        let val = |i: usize, s: usize| ((i * 7919 + s * 104_729) % 2003) as f32 / 1001.0 - 1.0;
        let g: Vec<f32> = (0..co * hw).map(|i| val(i, 1)).collect();
        let x: Vec<f32> = (0..c * hw).map(|i| val(i, 2)).collect();
        let before: Vec<f32> = (0..co * c).map(|i| val(i, 3)).collect();
        let mut dw = before.clone();
        add(&g, (&x, None), [c, co, hw], &mut dw, Precision::Bf16);
        let mut off_fp32 = 0.0f64;
        for o in 0..co {
            for i in 0..c {
                let sum = |r: fn(f32) -> f32| -> f64 {
                    before[o * c + i] as f64
                        + (0..hw)
                            .map(|p| r(g[o * hw + p]) as f64 * r(x[i * hw + p]) as f64)
                            .sum::<f64>()
                };
                let (want, got) = (sum(to_bf16), dw[o * c + i] as f64);
                assert!((got - want).abs() < 2e-3, "({o}, {i}): {got} vs {want}");
                off_fp32 = off_fp32.max((got - sum(|v| v)).abs());
            }
        }
        assert!(off_fp32 > 1e-2, "the products were not rounded: {off_fp32}");
    }
}

//! The kernels behind [`super::multiply`]: one body compiled twice, for AVX2 + FMA
//! (`multiply`, the 6 × 16 micro-kernel) and for AVX-512 (`multiply_wide`: two panels × 2
//! strips through `kernel_tall`, a lone panel through `kernel_wide`), the packing of B into
//! strips (or, for short sums, reading it in place), and the epilogue that adds the bias,
//! clamps and stores each strip (`Store`, `Sums`).

use super::super::lanes::{clamp8, clamp16};
use super::bf16::{kernel_pairs_rows, pair_strip_len, to_pairs};
use super::{Act, B, MAX_NC, MR, NR, Out, PackedA, block_values, chunk_steps, strip_len};
use std::arch::x86_64::*;
use std::ops::Range;

/// Sums of at most this many steps read a row-major B (a 1x1 convolution's input planes)
/// in place on AVX-512 instead of packing it: with so few steps per output, packing B is a
/// large part of the work, repeated for every block of filters (8 of them a 112x112 image
/// in Lite0's first expand 1x1). Lite0 batch 32, per convolution: k = 16 1.15x, k = 24
/// 1.04x, k = 32 and 40 no faster (those pack, so that each kernel call reads a few
/// streams, not k rows a page apart).
pub(super) const IN_PLACE_K: usize = 24;

#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn multiply(
    a: &PackedA,
    panels: Range<usize>,
    b: B<'_>,
    out: &Out,
    bias: Option<&[f32]>,
    act: Act,
    scratch: &mut Vec<f32>,
) {
    // SAFETY: as the caller promises.
    unsafe { body::<false, false>(a, panels, b, out, bias, act, scratch, &mut Vec::new()) }
}

/// [`multiply`] with the AVX-512 kernels (`kernel_tall`, `kernel_wide`).
#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
pub(super) unsafe fn multiply_wide(
    a: &PackedA,
    panels: Range<usize>,
    b: B<'_>,
    out: &Out,
    bias: Option<&[f32]>,
    act: Act,
    scratch: &mut Vec<f32>,
) {
    // SAFETY: as the caller promises.
    unsafe { body::<true, false>(a, panels, b, out, bias, act, scratch, &mut Vec::new()) }
}

/// [`multiply`] with `a`'s bf16 panels: B packed as for the AVX-512 kernels, then taken to
/// bf16 pairs (`bf16::to_pairs`) for `bf16::kernel_pairs`. Only where `a.is_bf16()`.
#[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512bf16,avx2,fma")]
#[allow(clippy::too_many_arguments)] // multiply_wide's and the pairs' buffer
pub(super) unsafe fn multiply_bf16(
    a: &PackedA,
    panels: Range<usize>,
    b: B<'_>,
    out: &Out,
    bias: Option<&[f32]>,
    act: Act,
    scratch: &mut Vec<f32>,
    pairs: &mut Vec<u32>,
) {
    // SAFETY: as the caller promises.
    unsafe { body::<true, true>(a, panels, b, out, bias, act, scratch, pairs) }
}

/// The work of [`multiply`], compiled into each of its versions (`WIDE`: the AVX-512
/// kernels, pairs of panels through [`kernel_tall`]; else [`kernel`]; `BF16`: `a`'s bf16
/// panels and B in bf16 pairs through `bf16::kernel_pairs`).
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the call's operands and the two per-thread buffers
unsafe fn body<const WIDE: bool, const BF16: bool>(
    a: &PackedA,
    panels: Range<usize>,
    b: B<'_>,
    out: &Out,
    bias: Option<&[f32]>,
    act: Act,
    scratch: &mut Vec<f32>,
    pairs: &mut Vec<u32>,
) {
    let k = a.k;
    // The sum over k in chunks (`chunk_steps`; the last may be shorter): a panel's chunk
    // of A stays in L1 while the chunk runs, the strips of B stream from L2; each chunk
    // after the first adds to what the one before stored. In bf16 every chunk but the
    // last is of whole pairs of steps.
    let kc_max = chunk_steps(k);
    let kc_max = if BF16 && kc_max < k {
        kc_max & !1
    } else {
        kc_max
    };
    // Columns per packed block: the block (kc × nc) about a quarter of L2, so it stays
    // in cache while every panel of filters passes over it.
    let nc = (block_values() / kc_max / NR * NR).clamp(NR, MAX_NC);
    // A clamp is applied in registers; SiLU as a pass over the finished rows below.
    let (lo, hi) = match act {
        Act::Clamp(lo, hi) => (lo, hi),
        Act::Silu => (f32::NEG_INFINITY, f32::INFINITY),
    };
    let unclamped = (f32::NEG_INFINITY, f32::INFINITY);
    for j0 in (0..out.cols).step_by(nc) {
        let block = nc.min(out.cols - j0);
        let strips = block.div_ceil(NR);
        for k0 in (0..k).step_by(kc_max) {
            let kc = kc_max.min(k - k0);
            let (first, last) = (k0 == 0, k0 + kc == k);
            // Add to C: a later chunk, or a sum the caller asked for.
            let add = out.accumulate || !first;
            // The clamp with the last chunk only (earlier ones hold partial sums).
            let (lo, hi) = if last { (lo, hi) } else { unclamped };
            // Grown, never cleared: packing writes every value the kernels' stored
            // lanes read, and a partial last strip's unused columns keep whatever an
            // earlier block left there (their lanes' sums are never stored; lanes do not
            // mix). Zeroing the block each time was 5 % of a batch-1 forward pass.
            let need = strips * strip_len(kc);
            if scratch.len() < need {
                scratch.resize(need, 0.0);
            }
            // SAFETY (packing and kernels): reads of B stay within its rows k0..k0 + kc
            // and columns j0..j0 + block (<= cols) — strips read in place are whole, so
            // their NR columns lie within the block; writes of C stay within the
            // panels' rows (row < rows) and the block's columns; packed strip s of
            // `scratch` is its kc × NR values at s · strip_len(kc), counted from the
            // first strip not read in place; a panel's chunk is its steps k0..k0 + kc.
            unsafe {
                // Whole strips of a short sum's B read in place by the kernels (rows `ld`
                // apart, strips NR apart); the others packed into `scratch`.
                let in_place = match b {
                    _ if BF16 => None,
                    B::Rows(b, ldb) if WIDE && k <= IN_PLACE_K => {
                        Some((b.add(k0 * ldb + j0), ldb, block / NR))
                    }
                    B::Cached(b, ldb) if WIDE => Some((b.add(k0 * ldb + j0), ldb, block / NR)),
                    _ => None,
                };
                match b {
                    // Only a partial last strip packed (into strip 0 of `scratch`).
                    B::Rows(_, ldb) | B::Cached(_, ldb) if let Some((src, _, whole)) = in_place => {
                        if !block.is_multiple_of(NR) {
                            for i in 0..kc {
                                let src = src.add(i * ldb + whole * NR);
                                pack_row(src, i, kc, block % NR, scratch.as_mut_ptr());
                            }
                        }
                    }
                    // Row by row, so each row of B is read as one run (the prefetcher
                    // follows a few long runs, not k short ones), into strips of NR
                    // columns.
                    B::Rows(b, ldb) | B::Cached(b, ldb) => {
                        for i in 0..kc {
                            let src = b.add((k0 + i) * ldb + j0);
                            pack_row(src, i, kc, block, scratch.as_mut_ptr());
                        }
                    }
                    B::Gather(rows) => {
                        rows.pack(k0, kc, out.span.first + j0, block, &mut scratch[..need])
                    }
                }
                // Where each strip's columns lie in C: a whole strip of consecutive
                // columns is stored as two vectors from its first column's offset;
                // otherwise (a partial strip, a strip across images) column by column.
                // Found once per block: the divisions cost more than a short sum's
                // kernel when done per panel.
                let mut strip_at = [(0usize, false); MAX_NC / NR];
                // The other strips' columns one by one, found here too, not per panel (two
                // divisions a column: Lite0's 7x7 1x1s 1.09-1.10x alone).
                let mut columns_at = [[0usize; NR]; MAX_NC / NR];
                for (s, at) in strip_at.iter_mut().enumerate().take(strips) {
                    let (j, w) = (j0 + s * NR, NR.min(block - s * NR));
                    *at = (out.span.offset(j), w == NR && out.span.consecutive(j, w));
                    if !at.1 {
                        for (t, o) in columns_at[s].iter_mut().enumerate().take(w) {
                            *o = out.span.offset(j + t);
                        }
                    }
                }
                let store = Store {
                    out,
                    rows: a.rows,
                    bias: if first { bias } else { None },
                    add,
                    lo,
                    hi,
                    block,
                    strip_at: &strip_at,
                    columns_at: &columns_at,
                };
                // Strip s from s0 on: where it lies (its row stride, the spacing of the
                // strips after it) and how many strips from s0 lie alike.
                let (read, packed_from) = match in_place {
                    Some((src, ldb, whole)) => ((src, ldb), whole),
                    None => ((scratch.as_ptr(), NR), 0),
                };
                let strip = |s0: usize| {
                    if s0 < packed_from {
                        (read.0.add(s0 * NR), read.1, NR, packed_from - s0)
                    } else {
                        let at = scratch.as_ptr().add((s0 - packed_from) * strip_len(kc));
                        (at, NR, strip_len(kc), strips - s0)
                    }
                };
                if BF16 {
                    let need = strips * pair_strip_len(kc);
                    if pairs.len() < need {
                        pairs.resize(need, 0);
                    }
                    to_pairs(scratch.as_ptr(), strips, kc, pairs.as_mut_ptr());
                    let pstrip = pair_strip_len(kc);
                    let panel_at = |p: usize| a.panel_pairs(p).as_ptr().add(k0 / 2 * MR);
                    let mut p = panels.start;
                    while p < panels.end {
                        // Two panels at once as `kernel_tall` (a lone last one: no rows of
                        // the second).
                        let two = p + 1 < panels.end;
                        let (a0, a1) = (panel_at(p), panel_at(if two { p + 1 } else { p }));
                        let rows = if two {
                            a.rows.saturating_sub((p + 1) * MR).min(MR)
                        } else {
                            0
                        };
                        let mut s0 = 0;
                        while s0 < strips {
                            let b = pairs.as_ptr().add(s0 * pstrip);
                            if strips - s0 >= 2 {
                                let [top, bottom] =
                                    kernel_pairs_rows::<2>(rows, kc.div_ceil(2), a0, a1, b, pstrip);
                                for (t, (top, bottom)) in top.iter().zip(&bottom).enumerate() {
                                    store.strip(p, s0 + t, top);
                                    if two {
                                        store.strip(p + 1, s0 + t, bottom);
                                    }
                                }
                                s0 += 2;
                            } else {
                                let [[top], [bottom]] =
                                    kernel_pairs_rows::<1>(rows, kc.div_ceil(2), a0, a1, b, pstrip);
                                store.strip(p, s0, &top);
                                if two {
                                    store.strip(p + 1, s0, &bottom);
                                }
                                s0 += 1;
                            }
                        }
                        p += if two { 2 } else { 1 };
                    }
                    continue;
                }
                let mut p = panels.start;
                while p < panels.end {
                    let panel = a.panel(p).as_ptr().add(k0 * MR);
                    // Two panels at once (12 rows) on 2 strips: half the loads of B per
                    // FMA of the 6-row kernel on 4, B being what streams from L2.
                    if WIDE && p + 1 < panels.end {
                        let next = a.panel(p + 1).as_ptr().add(k0 * MR);
                        // The second panel's rows that hold filters (the last panel may
                        // hold fewer than MR).
                        let rows = a.rows.saturating_sub((p + 1) * MR).min(MR);
                        let mut s0 = 0;
                        while s0 < strips {
                            let (b, ld, spacing, alike) = strip(s0);
                            if alike >= 2 {
                                let [top, bottom] =
                                    kernel_tall_rows::<2>(rows, kc, panel, next, b, spacing, ld);
                                for (t, (top, bottom)) in top.iter().zip(&bottom).enumerate() {
                                    store.strip(p, s0 + t, top);
                                    store.strip(p + 1, s0 + t, bottom);
                                }
                                s0 += 2;
                            } else {
                                let [[top], [bottom]] =
                                    kernel_tall_rows::<1>(rows, kc, panel, next, b, spacing, ld);
                                store.strip(p, s0, &top);
                                store.strip(p + 1, s0, &bottom);
                                s0 += 1;
                            }
                        }
                        p += 2;
                        continue;
                    }
                    let mut s0 = 0;
                    while s0 < strips {
                        let (b, ld, spacing, alike) = strip(s0);
                        if WIDE && alike >= 4 {
                            let accs = kernel_wide::<4>(kc, panel, b, spacing, ld);
                            for (t, acc) in accs.iter().enumerate() {
                                store.strip(p, s0 + t, acc);
                            }
                            s0 += 4;
                        } else if WIDE && alike >= 2 {
                            let accs = kernel_wide::<2>(kc, panel, b, spacing, ld);
                            for (t, acc) in accs.iter().enumerate() {
                                store.strip(p, s0 + t, acc);
                            }
                            s0 += 2;
                        } else if WIDE {
                            let [acc] = kernel_wide::<1>(kc, panel, b, spacing, ld);
                            store.strip(p, s0, &acc);
                            s0 += 1;
                        } else {
                            store.strip(p, s0, &kernel(kc, panel, b));
                            s0 += 1;
                        }
                    }
                    p += 1;
                }
            }
        }
    }
    if act == Act::Silu {
        let rows = panels.start * MR..(panels.end * MR).min(a.rows);
        for row in rows {
            // Runs of consecutive columns (one per image the block covers).
            let mut j = 0;
            while j < out.cols {
                let g = out.span.first + j;
                let run = (out.span.pixels - g % out.span.pixels).min(out.cols - j);
                // SAFETY: the run was written above, within the caller's block.
                let vals = unsafe {
                    let at = out.c.add((row - out.row0) * out.ldc + out.span.offset(j));
                    std::slice::from_raw_parts_mut(at, run)
                };
                act.apply_all(vals);
                j += run;
            }
        }
    }
}

/// How a finished block of sums reaches C: the bias (the first chunk's), what C holds
/// (a later chunk's, or a sum), the clamp, and where each strip's columns lie.
struct Store<'a> {
    out: &'a Out,
    rows: usize,
    bias: Option<&'a [f32]>,
    add: bool,
    lo: f32,
    hi: f32,
    block: usize,
    strip_at: &'a [(usize, bool)],
    /// Where each column of a strip that is not whole lies.
    columns_at: &'a [[usize; NR]],
}

impl Store<'_> {
    /// Panel `p`'s sums for strip `s` of the block stored, row by row ([`Store::row`]).
    /// The six rows are six calls, not a loop: with a constant row each, every access to
    /// `acc` has a constant index once inlined, so the kernel's sums stay in registers. A
    /// loop's run-time index kept `acc` in memory, and in some builds (the same source, code
    /// split differently among codegen units) the AVX2 kernel then stored all 12 of its
    /// sums to the stack on every step of its loop — half its speed on Zen 1, whose 256-bit
    /// stores take two cycles. `tests/suite/kernel_code.rs` checks the built binary for that.
    #[inline(always)]
    unsafe fn strip(&self, p: usize, s: usize, acc: &impl Sums) {
        // SAFETY: as the caller promises.
        unsafe {
            self.row(p, 0, s, acc);
            self.row(p, 1, s, acc);
            self.row(p, 2, s, acc);
            self.row(p, 3, s, acc);
            self.row(p, 4, s, acc);
            self.row(p, 5, s, acc);
        }
    }

    /// Row `r` of panel `p`'s sums for strip `s` stored (nothing past the filters' last
    /// row): a whole strip of consecutive columns as vectors from its first column's
    /// offset, otherwise (a partial strip, a strip across images) column by column through
    /// a buffer.
    #[inline(always)]
    unsafe fn row(&self, p: usize, r: usize, s: usize, acc: &impl Sums) {
        let out = self.out;
        let row = p * MR + r;
        if row >= self.rows {
            return;
        }
        let (start, whole) = self.strip_at[s];
        let bias = self.bias.map_or(0.0, |b| b[row]);
        // SAFETY: rows below `rows` of the caller's panels and the block's columns lie
        // in C (`multiply`'s contract); `tmp` holds a strip's NR values.
        unsafe {
            let c_row = out.c.add((row - out.row0) * out.ldc);
            if whole {
                let dst = c_row.add(start);
                acc.finish(r, bias, self.add, (self.lo, self.hi), dst);
                return;
            }
            let w = NR.min(self.block - s * NR);
            let at = &self.columns_at[s];
            let mut tmp = [0.0f32; NR];
            if self.add {
                for (v, &o) in tmp.iter_mut().zip(at).take(w) {
                    *v = *c_row.add(o);
                }
            }
            acc.finish(r, bias, self.add, (self.lo, self.hi), tmp.as_mut_ptr());
            for (&v, &o) in tmp.iter().zip(at).take(w) {
                *c_row.add(o) = v;
            }
        }
    }
}

/// A micro-kernel's sums for one strip: 6 rows of 16 columns.
trait Sums {
    /// Row `r` plus `bias` (plus the 16 values at `dst` when `add`), clamped to `lo..hi`,
    /// written to the 16 values at `dst`.
    ///
    /// # Safety
    /// `dst` is valid for reads and writes of 16 values; the CPU has the kernel's
    /// features.
    unsafe fn finish(&self, r: usize, bias: f32, add: bool, lohi: (f32, f32), dst: *mut f32);
}

/// The AVX2 kernel's: row r's two 8-lane vectors at `2r`, `2r + 1`.
impl Sums for [__m256; 2 * MR] {
    #[inline(always)]
    unsafe fn finish(&self, r: usize, bias: f32, add: bool, (lo, hi): (f32, f32), dst: *mut f32) {
        // SAFETY: as the caller promises.
        unsafe {
            let bv = _mm256_set1_ps(bias);
            let (mut v0, mut v1) = (
                _mm256_add_ps(self[2 * r], bv),
                _mm256_add_ps(self[2 * r + 1], bv),
            );
            if add {
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(dst));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(dst.add(8)));
            }
            let (lo, hi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
            _mm256_storeu_ps(dst, clamp8(v0, lo, hi));
            _mm256_storeu_ps(dst.add(8), clamp8(v1, lo, hi));
        }
    }
}

/// The AVX-512 kernels': row r's 16-lane vector (one add, clamp and store a row where
/// the halves took two; Lite0 batch 32 measured 1.05× (0.96–1.09), batch 1 1.01×).
impl Sums for [__m512; MR] {
    #[inline(always)]
    unsafe fn finish(&self, r: usize, bias: f32, add: bool, (lo, hi): (f32, f32), dst: *mut f32) {
        // SAFETY: as the caller promises.
        unsafe {
            let mut v = _mm512_add_ps(self[r], _mm512_set1_ps(bias));
            if add {
                v = _mm512_add_ps(v, _mm512_loadu_ps(dst));
            }
            let v = clamp16(v, _mm512_set1_ps(lo), _mm512_set1_ps(hi));
            _mm512_storeu_ps(dst, v);
        }
    }
}

/// [`kernel_tall`] computing only the second panel's first `rows` rows, rounded up to 2, 4
/// or all: a last panel that holds 2 or 4 filters (32 output channels fill 5⅓ panels) pays
/// no FMAs for its empty rows. The rows left out come back zero.
#[inline(always)]
unsafe fn kernel_tall_rows<const S: usize>(
    rows: usize,
    k: usize,
    a0: *const f32,
    a1: *const f32,
    b: *const f32,
    strip: usize,
    ld: usize,
) -> [[[__m512; MR]; S]; 2] {
    // SAFETY: as the caller promises for `kernel_tall`.
    unsafe {
        match rows {
            0..=2 => kernel_tall::<S, 2>(k, a0, a1, b, strip, ld),
            3 | 4 => kernel_tall::<S, 4>(k, a0, a1, b, strip, ld),
            _ => kernel_tall::<S, MR>(k, a0, a1, b, strip, ld),
        }
    }
}

/// [`kernel_wide`] on two panels at once (`a0`'s rows, then the first `R1` of `a1`'s: up
/// to 12 rows) and `S` strips: with 2 strips, 24 accumulators fed by 2 loads of B and 12
/// broadcasts a step.
#[inline(always)]
unsafe fn kernel_tall<const S: usize, const R1: usize>(
    k: usize,
    a0: *const f32,
    a1: *const f32,
    b: *const f32,
    strip: usize,
    ld: usize,
) -> [[[__m512; MR]; S]; 2] {
    // SAFETY: compiled into `multiply_wide` only, which has AVX-512.
    let mut acc = [[[unsafe { _mm512_setzero_ps() }; S]; MR]; 2];
    for i in 0..k {
        // SAFETY: each panel has k × MR values and each strip k × NR.
        unsafe {
            let mut x = [_mm512_setzero_ps(); S];
            for (t, x) in x.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(b.add(t * strip + i * ld));
            }
            for (p, (a, acc)) in [a0, a1].into_iter().zip(acc.iter_mut()).enumerate() {
                let rows = if p == 0 { MR } else { R1 };
                for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                    let av = _mm512_set1_ps(*a.add(i * MR + r));
                    for (acc, &x) in acc.iter_mut().zip(&x) {
                        *acc = _mm512_fmadd_ps(av, x, *acc);
                    }
                }
            }
        }
    }
    // Row r of strip t at `acc[panel][r][t]`: regrouped by strip.
    std::array::from_fn(|p| std::array::from_fn(|t| std::array::from_fn(|r| acc[p][r][t])))
}

/// Row `i` of a block of B (`block` values at `src`) into the packed strips at `dst`:
/// strip s holds `kc × NR` values at `s · kc · NR`, row i's at `i · NR` within it.
#[inline(always)]
unsafe fn pack_row(src: *const f32, i: usize, kc: usize, block: usize, dst: *mut f32) {
    for s in 0..block.div_ceil(NR) {
        let w = NR.min(block - s * NR);
        // SAFETY: as the caller promises: `src` holds `block` values, `dst` the strips.
        unsafe {
            let dst = dst.add(s * strip_len(kc) + i * NR);
            if w == NR {
                _mm256_storeu_ps(dst, _mm256_loadu_ps(src.add(s * NR)));
                _mm256_storeu_ps(dst.add(8), _mm256_loadu_ps(src.add(s * NR + 8)));
            } else {
                for t in 0..w {
                    *dst.add(t) = *src.add(s * NR + t);
                }
            }
        }
    }
}

/// [`kernel`] on `S` strips at once with 16-lane vectors (`6 · S` accumulators of 16
/// lanes; with 4 strips 24 of the 32 registers, one load of B per 6 FMAs where the AVX2
/// kernel needs one per 6 half-width ones), each strip's rows of sums. `b` is strip 0's
/// first row; the others follow `strip` values apart, and each strip's rows `ld` apart
/// (packed: NR; read in place: B's row stride).
#[inline(always)]
unsafe fn kernel_wide<const S: usize>(
    k: usize,
    a: *const f32,
    b: *const f32,
    strip: usize,
    ld: usize,
) -> [[__m512; MR]; S] {
    // SAFETY: compiled into `multiply_wide` only, which has AVX-512.
    let mut acc = [[unsafe { _mm512_setzero_ps() }; S]; MR];
    for i in 0..k {
        // SAFETY: the panel has k × MR values and each strip k × NR.
        unsafe {
            let mut x = [_mm512_setzero_ps(); S];
            for (t, x) in x.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(b.add(t * strip + i * ld));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(i * MR + r));
                for (acc, &x) in acc.iter_mut().zip(&x) {
                    *acc = _mm512_fmadd_ps(av, x, *acc);
                }
            }
        }
    }
    std::array::from_fn(|t| std::array::from_fn(|r| acc[r][t]))
}

/// The 6 × 16 block `Σ_i A[.., i] · B[i, ..]` over `k` steps: `a` is a packed panel
/// (`[k][MR]`), `b` a packed strip (`[k][NR]`). Accumulators: row r's two vectors at
/// `2r`, `2r + 1`.
#[inline(always)]
unsafe fn kernel(k: usize, a: *const f32, b: *const f32) -> [__m256; 2 * MR] {
    // SAFETY: compiled into `multiply` and `multiply_wide`, which have AVX2.
    let mut acc = [unsafe { _mm256_setzero_ps() }; 2 * MR];
    for i in 0..k {
        // SAFETY: the panel has k × MR values and the strip k × NR.
        unsafe {
            let b0 = _mm256_loadu_ps(b.add(i * NR));
            let b1 = _mm256_loadu_ps(b.add(i * NR + 8));
            for r in 0..MR {
                let av = _mm256_broadcast_ss(&*a.add(i * MR + r));
                acc[2 * r] = _mm256_fmadd_ps(av, b0, acc[2 * r]);
                acc[2 * r + 1] = _mm256_fmadd_ps(av, b1, acc[2 * r + 1]);
            }
        }
    }
    acc
}

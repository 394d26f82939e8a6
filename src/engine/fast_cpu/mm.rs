//! Graft's own matrix multiply for convolutions on AVX2 + FMA: `act(A · B + bias)` written
//! straight into the output, where A is the filters (packed once per convolution) and B the
//! input pixels (a 1x1 convolution's input planes, patches gathered from a convolution's
//! input; or, for a weight gradient, xᵀ read by columns), with any row (or column) stride,
//! its columns possibly running on from one image into the next (`Span`). Also the 1x1 gradients'
//! products (`pointwise::backward`), with sums into the output (`Out::accumulate`).
//!
//! Why not the `gemm` crate that burn uses: it packs both operands on every call, the filters
//! included (every tile of every image repacked the same weights: 1.6 MB per tile for
//! MobileNet-v2's last 1x1), and leaves the bias and activation to passes of their own. Here
//! the filters are packed once, each L2-sized block of B once per block of filters, the sum
//! runs in chunks that stay in L1, and the 6 × 16 micro-kernel (12 accumulators, the BLIS
//! shape for 16 AVX registers) adds the bias and clamps before its single store. Where the
//! CPU has AVX-512, the same packing feeds 16-lane kernels, chosen at run time: two panels
//! (12 rows) on 2 strips at once (`kernel_tall`, 24 of the 32 registers), a lone last panel
//! on 4, 2 or 1 (`kernel_wide`).

use super::Act;
use super::blocking::{MAX_NC, block_values, chunk_steps, strip_len};
pub use super::columns::{Columns, Span};
use std::ops::Range;

/// Rows (output channels) per micro-kernel: one broadcast each per step.
pub const MR: usize = 6;
// `PackedA::strided` names the rows of a full panel one by one.
const _: () = assert!(MR == 6);
/// Columns (pixels) per micro-kernel: two 8-lane vectors.
pub const NR: usize = 16;
/// Sums of at most this many steps read a row-major B (a 1x1 convolution's input planes)
/// in place on AVX-512 instead of packing it: with so few steps per output, packing B is a
/// large part of the work, repeated for every block of filters (8 of them a 112x112 image
/// in Lite0's first expand 1x1). Lite0 batch 32, per convolution: k = 16 1.15x, k = 24
/// 1.04x, k = 32 and 40 no faster (those pack, so that each kernel call reads a few
/// streams, not k rows a page apart).
const IN_PLACE_K: usize = 24;
/// Whether this machine runs these kernels (AVX2 and FMA); other machines use `gemm`.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::has_avx2_fma();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// The filters, `rows × k`, packed as panels of [`MR`] rows, step-major within a panel
/// (`[k][MR]`, what the micro-kernel reads in order); the last panel is padded with zeros.
pub struct PackedA {
    data: Vec<f32>,
    rows: usize,
    k: usize,
}

impl PackedA {
    /// Packs `a` (row-major, `rows × k`).
    pub fn new(a: &[f32], rows: usize, k: usize) -> Self {
        assert_eq!(a.len(), rows * k, "packed filters: length");
        Self::strided(a, rows, k, k)
    }

    /// Packs `rows × k` values of `a` whose rows start `lda` apart (a block of columns of a
    /// wider matrix).
    pub fn strided(a: &[f32], rows: usize, k: usize, lda: usize) -> Self {
        assert!(k <= lda, "packed filters: row stride");
        assert!(
            rows == 0 || (rows - 1) * lda + k <= a.len(),
            "packed filters: length"
        );
        let panels = rows.div_ceil(MR);
        // Written in order, step by step (a weight gradient packs every image's output
        // gradient this way: zeroing the buffer first and scattering row by row was 4 % of
        // a fine-tuning step).
        let mut data = Vec::with_capacity(panels * k * MR);
        for p in 0..panels {
            let full = MR.min(rows - p * MR);
            let row = |r: usize| &a[(p * MR + r) * lda..][..k];
            if full == MR {
                let (r0, r1, r2, r3, r4, r5) = (row(0), row(1), row(2), row(3), row(4), row(5));
                for i in 0..k {
                    data.extend_from_slice(&[r0[i], r1[i], r2[i], r3[i], r4[i], r5[i]]);
                }
            } else {
                for i in 0..k {
                    data.extend((0..MR).map(|r| if r < full { row(r)[i] } else { 0.0 }));
                }
            }
        }
        PackedA { data, rows, k }
    }

    /// Packs each group's filters of a `[groups · rows, k]` matrix (one group: the whole).
    pub fn groups(a: &[f32], groups: usize, rows: usize, k: usize) -> Vec<PackedA> {
        assert_eq!(a.len(), groups * rows * k, "packed filters: length");
        (0..groups)
            .map(|g| PackedA::new(&a[g * rows * k..(g + 1) * rows * k], rows, k))
            .collect()
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn panels(&self) -> usize {
        self.rows.div_ceil(MR)
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.k * MR..(p + 1) * self.k * MR]
    }
}

/// The right-hand operand, `k × cols`.
#[derive(Clone, Copy)]
pub enum B<'a> {
    /// Row-major with rows `ld` apart: the input planes of a 1x1 convolution.
    Rows(*const f32, usize),
    /// Column-major with columns `ld` apart: `xᵀ` in a weight gradient `g · xᵀ`, which
    /// sums over the pixels, the contiguous axis of both.
    Cols(*const f32, usize),
    /// Rows written by their owner: a convolution's patches read straight from its input
    /// (no unfolded copy), or columns that run on from one image into the next.
    Gather(&'a dyn Gather),
}

/// A right-hand operand that packs its own rows (see [`B::Gather`]).
pub trait Gather: Sync {
    /// Rows `k0..k0 + kc` of B at columns `j0..j0 + block` (counted as the output's [`Span`]
    /// counts them, from the first image's first pixel) packed into `strips`: strip s's row
    /// i (its [`NR`] columns) at `s · strip_len(kc) + i · NR`. Lanes past `block` may be
    /// left as they are.
    fn pack(&self, k0: usize, kc: usize, j0: usize, block: usize, strips: &mut [f32]);
}

/// One call's output block: rows `panels` (in units of [`MR`]) of C, `cols` columns.
pub struct Out {
    /// Row `row0` of C (not of the block), in the first image.
    pub c: *mut f32,
    /// The first row of A that C holds: 0, but for a caller that writes a block of rows
    /// into a buffer of its own (`fused.rs`).
    pub row0: usize,
    /// Row stride of C.
    pub ldc: usize,
    pub cols: usize,
    /// Add the product to what C holds (a sum over images or blocks of k) instead of
    /// writing it; then there is no bias and no activation.
    pub accumulate: bool,
    /// Where the block's columns lie in C.
    pub span: Span,
}

/// Writes `act(A · B + bias)` (or adds `A · B`, see [`Out::accumulate`]) for the rows of
/// `panels` into `out`: B is `k × out.cols`; `bias` has one value per row of A. The packed
/// block of B goes to this thread's buffer ([`SCRATCH`]).
///
/// # Safety
/// [`available`] is true; `b` is valid for reads of `k × out.cols` values as its layout
/// says; `out.c` is valid for reads and writes of A's rows in `panels` (counted from
/// `out.row0`) × `out.cols` values `out.ldc` apart (initialised when accumulating), and
/// nothing else reads or writes them meanwhile.
pub unsafe fn multiply(
    a: &PackedA,
    panels: Range<usize>,
    b: B<'_>,
    out: &Out,
    bias: Option<&[f32]>,
    act: Act,
) {
    assert!(panels.end <= a.panels(), "mm: panels out of range");
    assert!(
        panels.start * MR >= out.row0,
        "mm: rows before the output's first"
    );
    // An empty sum would leave the output unwritten.
    assert!(a.k > 0, "mm: no steps to sum");
    if let Some(bias) = bias {
        assert_eq!(bias.len(), a.rows, "mm: bias length");
    }
    assert!(
        !out.accumulate || (bias.is_none() && act == Act::NONE),
        "mm: a sum takes no bias or activation"
    );
    // SAFETY: as the caller promises.
    unsafe { multiply_on(wide(), a, panels, b, out, bias, act) }
}

/// Whether this machine runs the AVX-512 micro-kernels (16-lane FMAs: twice the AVX2
/// kernel's work per instruction).
fn wide() -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::has_avx512();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// [`multiply`] on the AVX-512 kernel when `wide` (the machine has it), else the AVX2 one.
///
/// # Safety
/// As [`multiply`]'s; `wide` only where [`wide`] is true.
unsafe fn multiply_on(
    wide: bool,
    a: &PackedA,
    panels: Range<usize>,
    b: B<'_>,
    out: &Out,
    bias: Option<&[f32]>,
    act: Act,
) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut scratch = SCRATCH.take();
        // SAFETY: as the caller promises.
        unsafe {
            if wide {
                avx2::multiply_wide(a, panels, b, out, bias, act, &mut scratch)
            } else {
                avx2::multiply(a, panels, b, out, bias, act, &mut scratch)
            }
        };
        SCRATCH.set(scratch);
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("mm::available() is false off x86-64")
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// Each thread's packed block of B, kept between calls: a buffer per task (rayon's
    /// `for_each_init` makes one per split) was a fresh allocation zeroed by the kernel on
    /// every convolution, 4 % of a batch-1 forward pass.
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The kernels, AVX2 and (`multiply_wide`) AVX-512 versions of one body.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{
        Act, B, IN_PLACE_K, MAX_NC, MR, NR, Out, PackedA, block_values, chunk_steps, strip_len,
    };
    use std::arch::x86_64::*;
    use std::ops::Range;

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
        unsafe { body::<false>(a, panels, b, out, bias, act, scratch) }
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
        unsafe { body::<true>(a, panels, b, out, bias, act, scratch) }
    }

    /// The work of [`multiply`], compiled into each of its two versions (`WIDE`: the
    /// AVX-512 kernels, pairs of panels through [`kernel_tall`]; else [`kernel`]).
    #[inline(always)]
    unsafe fn body<const WIDE: bool>(
        a: &PackedA,
        panels: Range<usize>,
        b: B<'_>,
        out: &Out,
        bias: Option<&[f32]>,
        act: Act,
        scratch: &mut Vec<f32>,
    ) {
        let k = a.k;
        // The sum over k in chunks (`chunk_steps`; the last may be shorter): a panel's chunk
        // of A stays in L1 while the chunk runs, the strips of B stream from L2; each chunk
        // after the first adds to what the one before stored.
        let kc_max = chunk_steps(k);
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
                        B::Rows(b, ldb) if WIDE && k <= IN_PLACE_K => {
                            Some((b.add(k0 * ldb + j0), ldb, block / NR))
                        }
                        _ => None,
                    };
                    match b {
                        // Only a partial last strip packed (into strip 0 of `scratch`).
                        B::Rows(_, ldb) if let Some((src, _, whole)) = in_place => {
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
                        B::Rows(b, ldb) => {
                            for i in 0..kc {
                                let src = b.add((k0 + i) * ldb + j0);
                                pack_row(src, i, kc, block, scratch.as_mut_ptr());
                            }
                        }
                        B::Gather(rows) => {
                            rows.pack(k0, kc, out.span.first + j0, block, &mut scratch[..need])
                        }
                        // Column by column, each read as one run.
                        B::Cols(b, ld) => {
                            for col in 0..block {
                                let src = b.add((j0 + col) * ld + k0);
                                let at = (col / NR) * strip_len(kc) + col % NR;
                                let dst = scratch.as_mut_ptr().add(at);
                                for i in 0..kc {
                                    *dst.add(i * NR) = *src.add(i);
                                }
                            }
                        }
                    }
                    // Where each strip's columns lie in C: a whole strip of consecutive
                    // columns is stored as two vectors from its first column's offset;
                    // otherwise (a partial strip, a strip across images) column by column.
                    // Found once per block: the divisions cost more than a short sum's
                    // kernel when done per panel.
                    let mut strip_at = [(0usize, false); MAX_NC / NR];
                    for (s, at) in strip_at.iter_mut().enumerate().take(strips) {
                        let (j, w) = (j0 + s * NR, NR.min(block - s * NR));
                        *at = (out.span.offset(j), w == NR && out.span.consecutive(j, w));
                    }
                    let store = Store {
                        out,
                        rows: a.rows,
                        bias: if first { bias } else { None },
                        add,
                        lo,
                        hi,
                        j0,
                        block,
                        strip_at: &strip_at,
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
                    let mut p = panels.start;
                    while p < panels.end {
                        let panel = a.panel(p).as_ptr().add(k0 * MR);
                        // Two panels at once (12 rows) on 2 strips: half the loads of B per
                        // FMA of the 6-row kernel on 4, B being what streams from L2.
                        if WIDE && p + 1 < panels.end {
                            let next = a.panel(p + 1).as_ptr().add(k0 * MR);
                            let mut s0 = 0;
                            while s0 < strips {
                                let (b, ld, spacing, alike) = strip(s0);
                                if alike >= 2 {
                                    let [top, bottom] =
                                        kernel_tall::<2>(kc, panel, next, b, spacing, ld);
                                    for (t, (top, bottom)) in top.iter().zip(&bottom).enumerate() {
                                        store.strip(p, s0 + t, top);
                                        store.strip(p + 1, s0 + t, bottom);
                                    }
                                    s0 += 2;
                                } else {
                                    let [[top], [bottom]] =
                                        kernel_tall::<1>(kc, panel, next, b, spacing, ld);
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
        j0: usize,
        block: usize,
        strip_at: &'a [(usize, bool)],
    }

    impl Store<'_> {
        /// Panel `p`'s sums for strip `s` of the block stored: a whole strip of consecutive
        /// columns as vectors from its first column's offset, otherwise (a partial strip, a
        /// strip across images) column by column through a buffer.
        #[inline(always)]
        unsafe fn strip(&self, p: usize, s: usize, acc: &impl Sums) {
            let out = self.out;
            let (start, whole) = self.strip_at[s];
            let (j, w) = (self.j0 + s * NR, NR.min(self.block - s * NR));
            let mut at = [start; NR];
            if !whole {
                for (t, o) in at.iter_mut().enumerate().take(w) {
                    *o = out.span.offset(j + t);
                }
            }
            // SAFETY: rows below `rows` of the caller's panels and the block's columns lie
            // in C (`multiply`'s contract); `tmp` holds a strip's NR values.
            unsafe {
                for r in 0..MR {
                    let row = p * MR + r;
                    if row >= self.rows {
                        break;
                    }
                    let bias = self.bias.map_or(0.0, |b| b[row]);
                    let c_row = out.c.add((row - out.row0) * out.ldc);
                    if whole {
                        let dst = c_row.add(at[0]);
                        acc.finish(r, bias, self.add, (self.lo, self.hi), dst);
                        continue;
                    }
                    let mut tmp = [0.0f32; NR];
                    if self.add {
                        for (v, &o) in tmp.iter_mut().zip(&at).take(w) {
                            *v = *c_row.add(o);
                        }
                    }
                    acc.finish(r, bias, self.add, (self.lo, self.hi), tmp.as_mut_ptr());
                    for (&v, &o) in tmp.iter().zip(&at).take(w) {
                        *c_row.add(o) = v;
                    }
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
        unsafe fn finish(
            &self,
            r: usize,
            bias: f32,
            add: bool,
            (lo, hi): (f32, f32),
            dst: *mut f32,
        ) {
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
                _mm256_storeu_ps(dst, _mm256_min_ps(_mm256_max_ps(v0, lo), hi));
                _mm256_storeu_ps(dst.add(8), _mm256_min_ps(_mm256_max_ps(v1, lo), hi));
            }
        }
    }

    /// The AVX-512 kernels': row r's 16-lane vector (one add, clamp and store a row where
    /// the halves took two; Lite0 batch 32 measured 1.05× (0.96–1.09), batch 1 1.01×).
    impl Sums for [__m512; MR] {
        #[inline(always)]
        unsafe fn finish(
            &self,
            r: usize,
            bias: f32,
            add: bool,
            (lo, hi): (f32, f32),
            dst: *mut f32,
        ) {
            // SAFETY: as the caller promises.
            unsafe {
                let mut v = _mm512_add_ps(self[r], _mm512_set1_ps(bias));
                if add {
                    v = _mm512_add_ps(v, _mm512_loadu_ps(dst));
                }
                let v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(lo)), _mm512_set1_ps(hi));
                _mm512_storeu_ps(dst, v);
            }
        }
    }

    /// [`kernel_wide`] on two panels at once (`a0`'s rows, then `a1`'s: 12 rows) and `S`
    /// strips: with 2 strips, 24 accumulators fed by 2 loads of B and 12 broadcasts a step.
    #[inline(always)]
    unsafe fn kernel_tall<const S: usize>(
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
                for (a, acc) in [a0, a1].into_iter().zip(acc.iter_mut()) {
                    for (r, acc) in acc.iter_mut().enumerate() {
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
}

#[cfg(test)]
mod tests {
    use super::super::blocking::KC;
    use super::*;

    /// The kernel against a plain triple loop: row counts that leave a partial panel,
    /// column counts that leave a partial strip, a row stride wider than the block, each
    /// activation, a block of panels that is not the first, B in either layout, and sums
    /// into what C holds.
    #[test]
    fn multiply_matches_plain_loops() {
        if !available() {
            return;
        }
        let val = |i: usize, s: usize| ((i * 7919 + s * 104_729) % 201) as f32 / 100.0 - 1.0;
        for (rows, k, cols, act, by_cols, accumulate) in [
            (6, 1, 16, Act::NONE, false, false),
            (7, 5, 17, Act::Clamp(0.0, 6.0), false, false),
            (13, 33, 40, Act::Silu, false, false),
            (24, 64, 3, Act::Clamp(-0.2, 0.3), false, false),
            (7, 9, 17, Act::NONE, true, false),
            (13, 40, 35, Act::NONE, true, true),
            // Sums longer than one chunk (KC): partial sums stored, the clamp at the end.
            (9, 2 * KC + 44, 20, Act::Clamp(-0.5, 0.5), false, false),
            (7, KC + 1, 17, Act::NONE, true, true),
            // Strips enough for each kernel: a lone panel on 4 + 1 strips (in place but the
            // last), a pair of panels (12 rows at once) on 2 + 2 + 2 + 1 and a last lone
            // panel on 4 + 2 + 1.
            (7, 20, 70, Act::Clamp(0.0, 6.0), false, false),
            (19, 30, 100, Act::NONE, false, false),
            // A short sum (≤ IN_PLACE_K) read in place: a pair of panels on 2 + 1 strips of
            // B's rows and a packed partial one.
            (13, 24, 50, Act::Clamp(-0.5, 0.5), false, false),
        ] {
            let a: Vec<f32> = (0..rows * k).map(|i| val(i, 1)).collect();
            let (ld, ldc) = (if by_cols { k } else { cols } + 3, cols + 5);
            let bs: Vec<f32> = (0..k.max(cols) * ld).map(|i| val(i, 2)).collect();
            // B[i, j] in either layout.
            let bij = |i: usize, j: usize| {
                if by_cols {
                    bs[j * ld + i]
                } else {
                    bs[i * ld + j]
                }
            };
            let b = if by_cols {
                B::Cols(bs.as_ptr(), ld)
            } else {
                B::Rows(bs.as_ptr(), ld)
            };
            let bias: Vec<f32> = (0..rows).map(|i| val(i, 3)).collect();
            let bias = (!accumulate).then_some(bias.as_slice());
            let before = |r: usize, j: usize| if accumulate { val(r * ldc + j, 4) } else { 0.0 };
            let packed = PackedA::new(&a, rows, k);
            let mut c: Vec<f32> = (0..rows * ldc)
                .map(|i| {
                    if accumulate && i % ldc < cols {
                        before(i / ldc, i % ldc)
                    } else {
                        f32::NAN
                    }
                })
                .collect();
            let out = Out {
                c: c.as_mut_ptr(),
                row0: 0,
                ldc,
                cols,
                accumulate,
                span: Span::ONE,
            };
            // Two calls, the first panel and the rest, as parallel callers split the rows;
            // the second on the AVX-512 kernel where the machine has it.
            for (panels, wide) in [(0..1, false), (1..packed.panels(), wide())] {
                // SAFETY: AVX2 checked above, AVX-512 by `wide`; `bs` holds k × cols values
                // in B's layout at stride ld; c holds rows × ldc.
                unsafe { multiply_on(wide, &packed, panels, b, &out, bias, act) };
            }
            for r in 0..rows {
                for j in 0..ldc {
                    let got = c[r * ldc + j];
                    if j >= cols {
                        assert!(got.is_nan(), "wrote outside the block at {r},{j}");
                        continue;
                    }
                    let sum: f32 = (0..k).map(|i| a[r * k + i] * bij(i, j)).sum();
                    let want = before(r, j) + act.apply(sum + bias.map_or(0.0, |b| b[r]));
                    let case = format!("{rows}x{k}x{cols} {act:?} cols {by_cols} at {r},{j}");
                    assert!((got - want).abs() < 1e-4, "{case}: {got} vs {want}");
                }
            }
        }
    }

    /// A block of columns of a wider matrix packs as that block alone.
    #[test]
    fn strided_packing_takes_the_block() {
        let wide: Vec<f32> = (0..3 * 10).map(|i| i as f32).collect();
        let block: Vec<f32> = (0..3)
            .flat_map(|r| (2..6).map(move |c| (r * 10 + c) as f32))
            .collect();
        let a = PackedA::strided(&wide[2..], 3, 4, 10);
        let b = PackedA::new(&block, 3, 4);
        assert_eq!(a.data, b.data);
    }
}

//! Graft's own matrix multiply for convolutions on AVX2 + FMA: `act(A · B + bias)` written
//! straight into the output, where A is the filters (packed once per convolution) and B the
//! input pixels (a 1x1 convolution's input planes, patches gathered from a convolution's
//! input; or, for a weight gradient, xᵀ transposed into its strips), with any row stride,
//! its columns possibly running on from one image into the next (`Span`). Also the 1x1 gradients'
//! products (`pointwise::backward_mapped`), with sums into the output (`Out::accumulate`).
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
use crate::engine::Precision;
use std::ops::Range;

/// Rows (output channels) per micro-kernel: one broadcast each per step.
pub const MR: usize = 6;
// `PackedA::strided` names the rows of a full panel one by one, as `avx2::Store::strip` does.
const _: () = assert!(MR == 6);
/// Columns (pixels) per micro-kernel: two 8-lane vectors.
pub const NR: usize = 16;
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
    /// The same panels in bf16, two steps to a 32-bit value (`[k/2][MR]`, the odd step
    /// paired with zero), where [`PackedA::in_bf16`] asked for them: then B is taken to
    /// bf16 as it is packed and the products run on `vdpbf16ps` (fp32 sums).
    pairs: Option<Vec<u32>>,
    /// The same filters for [`by_pixels`], packed on first use.
    by_pixels: std::sync::OnceLock<by_pixels::Strips>,
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
        let mut data = Vec::with_capacity(rows.div_ceil(MR) * k * MR);
        for p in 0..rows.div_ceil(MR) {
            push_steps(&mut data, MR.min(rows - p * MR), k, |r| {
                &a[(p * MR + r) * lda..][..k]
            });
        }
        Self::of(data, rows, k)
    }

    /// Packs `aᵀ`, for `a` row-major `rows × cols` (so `cols` rows of `rows` steps): a
    /// panel's step s is row s of `a` at the panel's columns, so nothing is transposed
    /// first (a 1x1's input gradient `Wᵀ · g`, packed every backward pass: a transposed copy
    /// and then its packing read and wrote the filters twice).
    pub fn transposed(a: &[f32], rows: usize, cols: usize) -> Self {
        assert_eq!(a.len(), rows * cols, "packed filters: length");
        let mut data = Vec::with_capacity(cols.div_ceil(MR) * rows * MR);
        for c0 in (0..cols).step_by(MR) {
            let w = MR.min(cols - c0);
            for row in a.chunks_exact(cols) {
                data.extend_from_slice(&row[c0..c0 + w]);
                data.extend(std::iter::repeat_n(0.0, MR - w));
            }
        }
        Self::of(data, cols, rows)
    }

    /// Packs steps `k0..k0 + k` of `rows` rows whose steps run on from one image into the
    /// next: step s is pixel `s % hw` of image `s / hw`, whose row r starts at
    /// `(image · rows + r) · hw` (`[n, rows, hw]` planes). A weight gradient sums over a run
    /// of images as one sum this way.
    pub fn over_images(a: &[f32], rows: usize, hw: usize, k0: usize, k: usize) -> Self {
        assert!(
            hw > 0 && (k0 + k).div_ceil(hw) * rows * hw <= a.len(),
            "packed filters: length"
        );
        let mut data = Vec::with_capacity(rows.div_ceil(MR) * k * MR);
        for p in 0..rows.div_ceil(MR) {
            let mut s = k0;
            while s < k0 + k {
                let (b, px) = (s / hw, s % hw);
                let run = (hw - px).min(k0 + k - s);
                push_steps(&mut data, MR.min(rows - p * MR), run, |r| {
                    &a[(b * rows + p * MR + r) * hw + px..][..run]
                });
                s += run;
            }
        }
        Self::of(data, rows, k)
    }

    fn of(data: Vec<f32>, rows: usize, k: usize) -> Self {
        PackedA {
            data,
            rows,
            k,
            pairs: None,
            by_pixels: std::sync::OnceLock::new(),
        }
    }

    /// These filters multiplied in bf16 (8-bit mantissas, round to nearest even; sums in
    /// fp32) where the CPU multiplies bf16 pairs ([`bf16_available`]), else as they are:
    /// training's `--precision bf16`, twice the multiply-adds an instruction.
    pub fn in_bf16(mut self) -> Self {
        if !bf16_available() {
            return self;
        }
        let pairs_k = self.k.div_ceil(2);
        let mut pairs = vec![0u32; self.panels() * pairs_k * MR];
        for (p, out) in pairs.chunks_exact_mut(pairs_k * MR).enumerate() {
            let panel = self.panel(p);
            // Whole pairs of steps 16 lanes at a time, an odd last step alone.
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU multiplies bf16 (checked above); `panel` holds k × MR values
            // and `out` k/2 × MR.
            let done = unsafe { bf16::pair_panel(panel, self.k / 2, out) };
            #[cfg(not(target_arch = "x86_64"))]
            let done = 0;
            for i in done..pairs_k {
                for r in 0..MR {
                    let lo = bf16(panel[2 * i * MR + r]);
                    let hi = if 2 * i + 1 < self.k {
                        bf16(panel[(2 * i + 1) * MR + r])
                    } else {
                        0
                    };
                    out[i * MR + r] = u32::from(lo) | u32::from(hi) << 16;
                }
            }
        }
        self.pairs = Some(pairs);
        self
    }

    /// These filters at training's `precision`: [`PackedA::in_bf16`] for bf16, but where
    /// the filters have fewer than [`BF16_FROM`] rows or steps: each packed block of B is
    /// taken to bf16 once for all the rows and steps, which then pay little for it. (The
    /// bound was 32 until Lite0's 16- and 24-channel 1x1s measured faster in bf16 one by
    /// one — its 16 -> 96 expand at 112x112 forward 10.7-11.1 -> 8.2-8.4 ms, its 24 -> 144
    /// at 56x56 4.3-4.4 -> 3.4-4.1, their backward passes 0.3-1.4 ms faster — where whole
    /// steps had been too noisy to tell: docs/BENCHMARKS.md.)
    pub fn at(self, precision: Precision) -> Self {
        match precision {
            Precision::Bf16 if self.rows >= BF16_FROM && self.k >= BF16_FROM => self.in_bf16(),
            _ => self,
        }
    }

    /// Whether [`multiply`] runs these filters in bf16.
    pub fn is_bf16(&self) -> bool {
        self.pairs.is_some()
    }

    /// The filters as [`by_pixels::multiply`] reads them (packed the first time).
    pub fn by_pixels(&self) -> &by_pixels::Strips {
        self.by_pixels.get_or_init(|| by_pixels::Strips::new(self))
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

    /// Panel `p` in bf16 pairs (`[k/2][MR]`), where [`PackedA::in_bf16`] made them.
    fn panel_pairs(&self, p: usize) -> &[u32] {
        let len = self.k.div_ceil(2) * MR;
        let pairs = self.pairs.as_ref().expect("bf16 panels");
        &pairs[p * len..(p + 1) * len]
    }
}

/// `x` in bf16 (its top 16 bits), rounded to nearest even as `vcvtne2ps2bf16` rounds B;
/// a NaN stays a NaN.
pub(super) fn bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// `x` as the bf16 kernels take it (rounded by [`bf16`]), widened back: the operands of
/// the tests' reference sums.
#[cfg(test)]
pub(super) fn rounded_to_bf16(x: f32) -> f32 {
    f32::from_bits((bf16(x) as u32) << 16)
}

/// The fewest rows and steps of filters that [`PackedA::at`] multiplies in bf16.
pub const BF16_FROM: usize = 16;

/// Whether this machine multiplies bf16 operands ([`PackedA::in_bf16`]).
pub fn bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return super::lanes::has_avx512_bf16();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Steps `0..k` of one panel's `full` rows (`row(r)`, each at least k long) appended to
/// `data` step-major, rows past `full` as zeros. Written in order, step by step (a weight
/// gradient packs every image's output gradient this way: zeroing the buffer first and
/// scattering row by row was 4 % of a fine-tuning step).
#[inline(always)]
fn push_steps<'a>(data: &mut Vec<f32>, full: usize, k: usize, row: impl Fn(usize) -> &'a [f32]) {
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

/// The right-hand operand, `k × cols`.
#[derive(Clone, Copy)]
pub enum B<'a> {
    /// Row-major with rows `ld` apart: the input planes of a 1x1 convolution.
    Rows(*const f32, usize),
    /// [`B::Rows`] already in cache (just read by the caller): read in place on AVX-512
    /// whatever the sum's length, as no prefetcher need follow its rows.
    Cached(*const f32, usize),
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

/// Whether a sum of `k` steps over row-major planes (`B::Rows`) is read in place rather
/// than packed (`avx2::IN_PLACE_K`).
pub fn reads_in_place(k: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    return wide() && k <= avx2::IN_PLACE_K;
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = k;
        false
    }
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
        // SAFETY: as the caller promises; bf16 panels exist only where the CPU multiplies
        // bf16 (`PackedA::in_bf16`).
        unsafe {
            if a.is_bf16() {
                let mut pairs = PAIRS.take();
                avx2::multiply_bf16(a, panels, b, out, bias, act, &mut scratch, &mut pairs);
                PAIRS.set(pairs);
            } else if wide {
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
    /// Each thread's packed block of B in bf16 pairs, for bf16 filters.
    static PAIRS: std::cell::Cell<Vec<u32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// One image's 1x1 convolution with pixels as the kernel's rows (`mm/by_pixels.rs`).
pub mod by_pixels;

/// The kernels, AVX2 and (`multiply_wide`) AVX-512 versions of one body (`mm/avx2.rs`).
#[cfg(target_arch = "x86_64")]
mod avx2;

/// The bf16 pairs and micro-kernel behind `avx2::multiply_bf16` (`mm/bf16.rs`).
#[cfg(target_arch = "x86_64")]
mod bf16;

#[cfg(test)]
mod tests {
    use super::super::blocking::KC;
    use super::*;

    /// B column-major, columns `ld` apart, packed value by value (a weight gradient's
    /// transposed operand, as `weight_grad.rs` packs it).
    struct ByCols<'a> {
        bs: &'a [f32],
        ld: usize,
    }

    impl Gather for ByCols<'_> {
        fn pack(&self, k0: usize, kc: usize, j0: usize, block: usize, strips: &mut [f32]) {
            for col in 0..block {
                for i in 0..kc {
                    strips[(col / NR) * strip_len(kc) + i * NR + col % NR] =
                        self.bs[(j0 + col) * self.ld + k0 + i];
                }
            }
        }
    }

    /// The kernel against a plain triple loop: row counts that leave a partial panel,
    /// column counts that leave a partial strip, a row stride wider than the block, each
    /// activation, a block of panels that is not the first, B in either layout (row-major
    /// packed and read in place), and sums into what C holds.
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
            // A short sum (≤ `avx2::IN_PLACE_K`) read in place: a pair of panels on 2 + 1 strips of
            // B's rows and a packed partial one.
            (13, 24, 50, Act::Clamp(-0.5, 0.5), false, false),
            // A last pair (panels 1 and 2 of the second call below) whose second panel
            // holds 2, 3 or 4 filters (`kernel_tall_rows`: only those rows computed).
            (14, 20, 40, Act::NONE, false, false),
            (15, 20, 33, Act::NONE, false, true),
            (16, 30, 40, Act::Clamp(0.0, 6.0), false, false),
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
            let cols_of = ByCols { bs: &bs, ld };
            // Row-major B both ways: packed (or read in place for a short sum) and read in
            // place whatever the sum's length (`B::Cached`).
            let layouts = if by_cols {
                vec![B::Gather(&cols_of)]
            } else {
                vec![B::Rows(bs.as_ptr(), ld), B::Cached(bs.as_ptr(), ld)]
            };
            // Each layout in fp32, and in bf16 where the CPU multiplies it (against the
            // same sums of the operands rounded to bf16: the products are exact in fp32).
            let precisions: &[bool] = if bf16_available() {
                &[false, true]
            } else {
                &[false]
            };
            for (b, bf) in layouts
                .iter()
                .flat_map(|&b| precisions.iter().map(move |&bf| (b, bf)))
            {
                let round = |v: f32| {
                    if bf {
                        f32::from_bits(u32::from(bf16(v)) << 16)
                    } else {
                        v
                    }
                };
                let bias: Vec<f32> = (0..rows).map(|i| val(i, 3)).collect();
                let bias = (!accumulate).then_some(bias.as_slice());
                let before =
                    |r: usize, j: usize| if accumulate { val(r * ldc + j, 4) } else { 0.0 };
                let packed = PackedA::new(&a, rows, k);
                let packed = if bf { packed.in_bf16() } else { packed };
                assert_eq!(packed.is_bf16(), bf);
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
                        let sum: f32 = (0..k).map(|i| round(a[r * k + i]) * round(bij(i, j))).sum();
                        let want = before(r, j) + act.apply(sum + bias.map_or(0.0, |b| b[r]));
                        // Rounding grows with the terms' sizes, and the kernel splits the
                        // sum where the L2's size says (on a 1 MB L2, k = 513 came out
                        // 1.1e-4 off a sum of 133, where 2 MB ones had passed under 1e-4);
                        // a strip or row missed is off by whole terms.
                        let terms: f32 = (0..k).map(|i| (a[r * k + i] * bij(i, j)).abs()).sum();
                        let tolerance = 1e-4 + 2e-6 * terms;
                        let cached = matches!(b, B::Cached(..));
                        let case = format!(
                            "{rows}x{k}x{cols} {act:?} cols {by_cols} cached {cached} bf16 {bf}"
                        );
                        let case = format!("{case} at {r},{j}");
                        assert!((got - want).abs() < tolerance, "{case}: {got} vs {want}");
                    }
                }
            }
        }
    }

    /// Training's bf16 takes filters of at least `BF16_FROM` rows and steps, and only where
    /// the CPU multiplies bf16; fp32 leaves every filter as it is.
    #[test]
    fn bf16_takes_filters_large_enough() {
        let a = |rows: usize, k: usize| PackedA::new(&vec![0.5; rows * k], rows, k);
        let big = BF16_FROM;
        assert!(!a(big, big).at(Precision::Fp32).is_bf16());
        assert_eq!(a(big, big).at(Precision::Bf16).is_bf16(), bf16_available());
        assert!(!a(big - 1, 2 * big).at(Precision::Bf16).is_bf16());
        assert!(!a(2 * big, big - 1).at(Precision::Bf16).is_bf16());
    }

    /// A transpose packs as the transposed matrix does: full panels and a partial last
    /// one, a single row or column.
    #[test]
    fn transposed_packing_is_the_transposes() {
        for (rows, cols) in [(7, 13), (12, 6), (1, 5), (5, 1), (32, 20)] {
            let a: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5 - 3.0).collect();
            let t: Vec<f32> = (0..cols)
                .flat_map(|j| a.iter().skip(j).step_by(cols).copied().collect::<Vec<_>>())
                .collect();
            let (got, want) = (
                PackedA::transposed(&a, rows, cols),
                PackedA::new(&t, cols, rows),
            );
            assert_eq!((got.rows, got.k), (want.rows, want.k), "{rows}x{cols}");
            assert_eq!(got.data, want.data, "{rows}x{cols}");
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

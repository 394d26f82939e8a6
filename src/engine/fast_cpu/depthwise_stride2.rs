//! 3x3 depthwise convolutions at stride 2 with the planes read and written in place, on CPUs
//! with AVX-512 (a padding of 0 or 1 before the rows and columns: TensorFlow's "same" pads
//! 0 and 1, PyTorch's 1 and 1).
//!
//! - The forward pass (`in_place_rows_s2`, run by `depthwise_wide.rs`'s `plane_in_place`):
//!   each input row loaded and mapped once a band of output rows, its even and odd columns
//!   split into two 16-lane vectors (`vpermt2ps`), the third tap's column a one-lane shift
//!   of one of them (`valignd`) — where `plane_wide` first copies the plane into a
//!   zero-bordered buffer split by column phase.
//! - The input gradient (`input_grad_in_place`): each input pixel sums the taps that read it
//!   straight from the output gradient plane, even and odd columns as two vectors
//!   interleaved as they are stored — where `input_grad_scatter` adds every tap's products
//!   into a zeroed, bordered, phase-split buffer and copies it out: three passes over a plane
//!   four times the gradient's size, where this writes it once.
//!
//! Lite0's 96-channel 112x112 layer (block 1) is the largest depthwise layer of its step.

use super::in_place::{IN_PLACE_FROM, load_mapped, row_mask};
use super::{Geometry, PlaneMap};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Lanes of one vector.
const L: usize = 16;
/// Output rows a band of the forward loop computes.
const BAND: usize = 4;

impl Geometry {
    /// Whether [`Self::input_grad_in_place`] runs this convolution's input gradient: 3x3,
    /// stride 2 both ways, no dilation, a padding of 0 or 1 before the rows and columns (the
    /// ends' follow from the sizes: TensorFlow's "same" pads 0 and 1, PyTorch's 1 and 1), on
    /// a CPU with AVX-512.
    pub(super) fn grads_in_place(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return super::super::lanes::has_avx512()
            && (self.kh, self.kw, self.stride, self.dilation) == (3, 3, [2, 2], [1, 1])
            && self.pad[0] <= 1
            && self.pad[1] <= 1;
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// Whether `Self::plane_wide` reads this stride-2 plane in place (`Self::plane_in_place`,
    /// [`Self::in_place_rows_s2`]): as [`Self::grads_in_place`], over a batch of at least
    /// `IN_PLACE_FROM` bytes of input (the size rule of the stride-1 loop).
    pub(super) fn reads_in_place_s2(&self) -> bool {
        self.grads_in_place()
            && self.n * self.c * self.h * self.w * size_of::<f32>() >= IN_PLACE_FROM
    }

    /// `Self::plane_in_place`'s loop at stride 2 (see [`Self::reads_in_place_s2`]): bands
    /// of [`BAND`] output rows, each input row the band reads loaded and mapped once, in
    /// vectors of 32 columns split by parity; from the bias, the taps added row by row and
    /// left to right, as the bordered kernel adds them, so the same values to the bit.
    /// Output column c's tap kj reads input column 2c - left + kj: for 16 outputs from
    /// column 16v, the even and odd columns of input vectors 2v and 2v + 1, and either the
    /// even ones shifted one lane on (left 0: the next vector's first column) or the odd ones
    /// one lane back (left 1: the previous vector's last).
    ///
    /// # Safety
    /// AVX-512 F is there; `input` holds `h · w` values and `out` is writable for `oh · ow`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(super) unsafe fn in_place_rows_s2(
        &self,
        input: &[f32],
        map: Option<PlaneMap>,
        filter: &[f32],
        bias: f32,
        (lo, hi): (f32, f32),
        out: *mut f32,
    ) {
        let (h, w, oh, ow) = (self.h, self.w, self.oh, self.ow);
        let [top, left] = self.pad;
        // SAFETY (intrinsics): as the caller promises; every load and store is masked to
        // the row's values, and a vector wholly past a row's end is not loaded at all.
        unsafe {
            let wt: [__m512; 9] = std::array::from_fn(|i| _mm512_set1_ps(filter[i]));
            let (b, lo, hi) = (_mm512_set1_ps(bias), _mm512_set1_ps(lo), _mm512_set1_ps(hi));
            let map = map.map(|p| [p.scale, p.shift, p.lo, p.hi].map(|v| _mm512_set1_ps(v)));
            let map = map.as_ref();
            let even_idx =
                _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let odd_idx =
                _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            for v in 0..ow.div_ceil(L) {
                let mut r0 = 0;
                while r0 < oh {
                    let rows = BAND.min(oh - r0);
                    let mut acc = [b; BAND];
                    // Input rows 2·r0 - top + ki for ki in 0 .. 2·rows + 1, those in the plane.
                    for j in 0..2 * rows + 1 {
                        let Some(y) = (2 * r0 + j).checked_sub(top).filter(|&y| y < h) else {
                            continue;
                        };
                        let vector = |u: usize| load_mapped(input, w, [y, u], map);
                        // Columns 32v .. 32v + 32 of the row, split by parity.
                        let (first, second) = (vector(2 * v), vector(2 * v + 1));
                        let even = _mm512_permutex2var_ps(first, even_idx, second);
                        let odd = _mm512_permutex2var_ps(first, odd_idx, second);
                        // The taps' columns in filter order: 2c - left, 2c - left + 1, + 2.
                        let cols = if left == 0 {
                            let next = vector(2 * v + 2);
                            let shifted = _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(
                                _mm512_castps_si512(next),
                                _mm512_castps_si512(even),
                            ));
                            [even, odd, shifted]
                        } else {
                            let before = if v > 0 {
                                vector(2 * v - 1)
                            } else {
                                _mm512_setzero_ps()
                            };
                            // Lane 15 of `before` is column 32v - 1 (odd), then the odd ones.
                            let shifted = _mm512_castsi512_ps(_mm512_alignr_epi32::<15>(
                                _mm512_castps_si512(odd),
                                _mm512_castps_si512(before),
                            ));
                            [shifted, even, odd]
                        };
                        for (kj, &x) in cols.iter().enumerate() {
                            for (i, acc) in acc.iter_mut().enumerate().take(rows) {
                                // Input row j of the band serves output row r0 + i through
                                // filter row j - 2i.
                                let ki = j.wrapping_sub(2 * i);
                                if ki < 3 {
                                    *acc = _mm512_fmadd_ps(x, wt[3 * ki + kj], *acc);
                                }
                            }
                        }
                    }
                    let m = row_mask(ow, v);
                    for (i, acc) in acc.iter().enumerate().take(rows) {
                        let dst = out.add((r0 + i) * ow + v * L);
                        _mm512_mask_storeu_ps(dst, m, super::super::lanes::clamp16(*acc, lo, hi));
                    }
                    r0 += rows;
                }
            }
        }
    }

    /// One plane's input gradient from its output gradient `g` and 3x3 `filter` (see
    /// [`Self::grads_in_place`] for when): every element of `dx` written once.
    pub(super) fn input_grad_in_place(
        &self,
        filter: &[f32],
        g: &[f32],
        dx: &mut [MaybeUninit<f32>],
    ) {
        assert!(self.grads_in_place(), "depthwise: not an in-place gradient");
        assert_eq!(filter.len(), 9, "depthwise: filter length");
        assert_eq!(g.len(), self.oh * self.ow, "depthwise: gradient plane");
        assert_eq!(dx.len(), self.h * self.w, "depthwise: input plane");
        #[cfg(target_arch = "x86_64")]
        super::super::lanes::with_avx512(
            #[inline(always)]
            || {
                // SAFETY: inside `with_avx512` (`grads_in_place` checked AVX-512); the rows
                // read and written lie in `g` and `dx` (lengths asserted).
                unsafe { self.gather_rows(filter, g, dx.as_mut_ptr().cast()) }
            },
        );
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!(
            "grads_in_place is false off x86-64: {filter:?} {g:?} {}",
            dx.len()
        );
    }

    /// [`Self::input_grad_in_place`]'s loop: input row y, columns 2n + b (b the column's
    /// parity) take output row (y + top - ki) / 2 and column (2n + b + left - kj) / 2 through
    /// tap (ki, kj), where those divide evenly and lie in the plane — the output gradient's
    /// vector at n shifted by -1, 0 or +1 lanes (`valignd` of neighbouring vectors, zeros
    /// past the row's ends).
    ///
    /// # Safety
    /// AVX-512 F is there; `g` holds `oh · ow` values and `dx` is writable for `h · w`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn gather_rows(&self, filter: &[f32], g: &[f32], dx: *mut f32) {
        let (h, w, oh, ow) = (self.h, self.w, self.oh, self.ow);
        let [top, left] = self.pad;
        // SAFETY (intrinsics): as the caller promises; loads are masked to a row's `ow`
        // values, stores to its `w`.
        unsafe {
            let wt: [__m512; 9] = std::array::from_fn(|i| _mm512_set1_ps(filter[i]));
            // Even columns to words 0, 2, …, odd to 1, 3, … of the 32 stored.
            let lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            let hi_idx =
                _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            // Vectors of 16 output-gradient columns, each serving 32 input columns: as many
            // as cover the input row (its last columns may take the last output column's
            // taps only, through a shift).
            let vectors = w.div_ceil(2 * L);
            for y in 0..h {
                // Output rows and filter rows that reach input row y: (y + top - ki) even.
                let rows: [Option<(usize, usize)>; 2] = {
                    let mut found = [None; 2];
                    let mut k = 0;
                    for ki in 0..3 {
                        let t = y + top;
                        if t >= ki && (t - ki) % 2 == 0 && (t - ki) / 2 < oh {
                            found[k] = Some(((t - ki) / 2, ki));
                            k += 1;
                            if k == 2 {
                                break;
                            }
                        }
                    }
                    found
                };
                for v in 0..vectors {
                    let (mut even, mut odd) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                    for &(r, ki) in rows.iter().flatten() {
                        let row = g.as_ptr().add(r * ow);
                        // Vector u of the row, zeros past its end (not loaded at all).
                        let load = |u: usize| match row_mask(ow, u) {
                            0 => _mm512_setzero_ps(),
                            m => _mm512_maskz_loadu_ps(m, row.add(u * L)),
                        };
                        let cur = load(v);
                        let prev = if v > 0 {
                            load(v - 1)
                        } else {
                            _mm512_setzero_ps()
                        };
                        let next = load(v + 1);
                        // Column n + d of the output gradient, for the 16 columns n at v.
                        let shifted = |d: isize| match d {
                            -1 => _mm512_castsi512_ps(_mm512_alignr_epi32::<15>(
                                _mm512_castps_si512(cur),
                                _mm512_castps_si512(prev),
                            )),
                            0 => cur,
                            _ => _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(
                                _mm512_castps_si512(next),
                                _mm512_castps_si512(cur),
                            )),
                        };
                        for kj in 0..3 {
                            // Column 2n + b meets tap kj where b + left - kj is even.
                            let weight = wt[3 * ki + kj];
                            let b = (kj + left) % 2;
                            // b + left - kj is even: output column n + (b + left - kj) / 2.
                            let x = shifted((b as isize + left as isize - kj as isize) / 2);
                            if b == 0 {
                                even = _mm512_fmadd_ps(x, weight, even);
                            } else {
                                odd = _mm512_fmadd_ps(x, weight, odd);
                            }
                        }
                    }
                    let out = dx.add(y * w + 2 * v * L);
                    let first = _mm512_permutex2var_ps(even, lo_idx, odd);
                    let second = _mm512_permutex2var_ps(even, hi_idx, odd);
                    let m0 = row_mask(w, 2 * v);
                    let m1 = row_mask(w, 2 * v + 1);
                    if m0 != 0 {
                        _mm512_mask_storeu_ps(out, m0, first);
                    }
                    if m1 != 0 {
                        _mm512_mask_storeu_ps(out.add(L), m1, second);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::in_place::tests::{conv3x3, in_place_mismatch, val};
    use super::*;

    /// The forward plane read in place gives the bordered kernel's values to the bit: both
    /// paddings Graft meets and uneven ones, odd and even sizes, rows of less than one vector
    /// of outputs to several, with the batch norm's map (its clamp cutting), bias, a clamp
    /// and SiLU.
    #[test]
    fn forward_in_place_matches_the_bordered_plane() {
        let mut checked = 0;
        for [h, w] in [
            [3, 3],
            [5, 17],
            [9, 56],
            [7, 40],
            [6, 112],
            [4, 70],
            [2, 33],
            [11, 65],
        ] {
            for pads in [[0, 0, 1, 1], [1, 1, 1, 1], [1, 0, 0, 1], [0, 1, 1, 0]] {
                let Some(g) = Geometry::new([1, 1, h, w], [1, 1, 3, 3], &conv3x3(2, pads)) else {
                    continue;
                };
                if !g.grads_in_place() {
                    return;
                }
                assert!(!g.reads_in_place_s2(), "a small batch stays bordered");
                let input: Vec<f32> = (0..h * w).map(|i| val(i, 1)).collect();
                let filter: Vec<f32> = (0..9).map(|i| val(i, 2)).collect();
                if let Some(case) = in_place_mismatch(&g, &input, &filter) {
                    panic!("{h}x{w} pads {pads:?} {case}: not the bordered kernel's");
                }
                checked += 1;
            }
        }
        assert!(checked >= 28, "too few geometries checked: {checked}");
    }

    /// Against the definition (each output gradient value times each tap's weight, added at
    /// the input pixel the tap read): both paddings Graft meets (TensorFlow's 0 + 1, PyTorch's
    /// 1 + 1), none, and uneven ones; maps narrower than a vector, of a vector's width and
    /// more, odd and even, including rows whose last input columns only a shifted tap reaches.
    #[test]
    fn gradient_in_place_matches_the_definition() {
        let shapes = [
            [112, 112],
            [113, 113],
            [33, 34],
            [34, 33],
            [20, 7],
            [7, 20],
            [3, 3],
        ];
        let pads = [
            [0, 0, 1, 1],
            [1, 1, 1, 1],
            [0, 0, 0, 0],
            [1, 0, 0, 1],
            [0, 1, 1, 1],
        ];
        let mut checked = 0;
        for [h, w] in shapes {
            for pads in pads {
                let Some(geo) = Geometry::new([1, 1, h, w], [1, 1, 3, 3], &conv3x3(2, pads)) else {
                    continue;
                };
                if !geo.grads_in_place() {
                    return;
                }
                let (oh, ow) = (geo.oh, geo.ow);
                let val =
                    |i: usize, s: usize| ((i * 7919 + s * 104_729) % 201) as f32 / 100.0 - 1.0;
                let g: Vec<f32> = (0..oh * ow).map(|i| val(i, 1)).collect();
                let filter: Vec<f32> = (0..9).map(|i| val(i, 2)).collect();
                let mut want = vec![0.0f64; h * w];
                for r in 0..oh {
                    for c in 0..ow {
                        for ki in 0..3 {
                            for kj in 0..3 {
                                let (y, x) = (2 * r + ki, 2 * c + kj);
                                let (y, x) = (y.wrapping_sub(pads[0]), x.wrapping_sub(pads[1]));
                                if y < h && x < w {
                                    want[y * w + x] += (g[r * ow + c] * filter[3 * ki + kj]) as f64;
                                }
                            }
                        }
                    }
                }
                let mut dx = vec![MaybeUninit::new(f32::NAN); h * w];
                geo.input_grad_in_place(&filter, &g, &mut dx);
                for (i, (d, want)) in dx.iter().zip(&want).enumerate() {
                    // SAFETY: set to NaN above, overwritten or not.
                    let got = unsafe { d.assume_init() } as f64;
                    assert!(
                        (got - want).abs() < 1e-5,
                        "{h}x{w} pads {pads:?}: ({}, {}) {got} vs {want}",
                        i / w,
                        i % w
                    );
                }
                checked += 1;
            }
        }
        assert!(checked >= 30, "too few geometries checked: {checked}");
    }
}

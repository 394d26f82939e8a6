//! 3x3 stride-1 depthwise planes read in place, on CPUs with AVX-512 (what
//! `depthwise_wide.rs`'s `plane_wide` picks for batches of at least [`IN_PLACE_FROM`] bytes
//! of input): the forward pass (`plane_in_place`, which also runs `depthwise_stride2.rs`'s
//! rows at stride 2) and the weight gradient (`weight_grad_in_place`), with the masked,
//! mapped row loads both strides share (`load_mapped`, `row_mask`). No bordered copy: a
//! third of the forward's time on large maps (docs/BENCHMARKS.md, twenty-seventh session).

#[cfg(target_arch = "x86_64")]
use super::super::lanes::clamp16;
use super::wide::{L, U};
use super::{Act, Geometry, clamp_then};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

impl Geometry {
    /// Whether [`Self::plane_wide`] reads the plane in place ([`Self::plane_in_place`]): a 3x3
    /// filter at stride 1 with a padding of 1 all round (the output the input's size), over a
    /// batch of at least [`IN_PLACE_FROM`] bytes of input.
    pub(super) fn reads_in_place(&self) -> bool {
        self.wide_kernel()
            && (self.kh, self.kw, self.stride, self.pad) == (3, 3, [1, 1], [1, 1])
            && (self.oh, self.ow) == (self.h, self.w)
            && self.n * self.c * self.h * self.w * size_of::<f32>() >= IN_PLACE_FROM
    }

    /// [`Self::plane_wide`] without the bordered copy, for [`Self::reads_in_place`]: each
    /// input row loaded (and mapped) once a band of [`BAND`] output rows, in runs of [`U`]
    /// vectors with a vector on either side, the left and right taps' columns made in
    /// registers (`valignd` of neighbouring vectors; zeros past the row's ends and above and
    /// below the plane, as the bordered copy pads). The same products added in the same
    /// order as the bordered kernel's, from the bias, so the same values to the bit.
    /// The copy was a third of the forward's time on large maps, its row loop waiting on
    /// the input's loads (docs/BENCHMARKS.md, twenty-seventh session). At stride 2, for
    /// `reads_in_place_s2`, the rows are `depthwise_stride2.rs`'s (`in_place_rows_s2`).
    pub(super) fn plane_in_place(
        &self,
        input: &[f32],
        map: Option<super::PlaneMap>,
        filter: &[f32],
        bias: f32,
        act: Act,
        out: &mut [MaybeUninit<f32>],
    ) {
        let (h, w) = (self.h, self.w);
        assert_eq!(input.len(), h * w, "depthwise: plane length");
        let (clamp, after) = clamp_then(act);
        #[cfg(target_arch = "x86_64")]
        super::super::lanes::with_avx512(
            #[inline(always)]
            || {
                // SAFETY: inside `with_avx512` (`wide_kernel` checked AVX-512); the rows
                // read and written lie in `input` and `out` (lengths asserted).
                unsafe {
                    let dst = out.as_mut_ptr().cast();
                    match self.stride[0] {
                        1 => in_place_rows(input, [h, w], map, filter, bias, clamp, dst),
                        _ => self.in_place_rows_s2(input, map, filter, bias, clamp, dst),
                    }
                };
                if let Some(act) = after {
                    // SAFETY: the rows' loop wrote every element of the plane;
                    // `MaybeUninit<f32>` has the layout of `f32`.
                    let plane = unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) };
                    act.apply_all(plane);
                }
            },
        );
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!(
            "wide_kernel is false off x86-64: {map:?} {filter:?} {bias} {clamp:?} {after:?}"
        );
    }

    /// One plane's weight and bias gradients without the bordered copy, for
    /// [`Self::reads_in_place`]: `part[tap]` = Σ g · (the mapped input the tap read), then
    /// `part[9]` = Σ g. Each row of g goes by vectors, meeting the three input rows around
    /// it, each loaded and mapped once a row of g as the vectors slide along (the left and
    /// right taps' columns by `valignd`, as [`Self::plane_in_place`]). The sums run in 16
    /// lanes where the bordered path's run in 8, so the values agree to rounding, not to
    /// the bit.
    pub(super) fn weight_grad_in_place(
        &self,
        input: &[f32],
        map: Option<super::PlaneMap>,
        g: &[f32],
        part: &mut [f32],
    ) {
        let (h, w) = (self.h, self.w);
        assert!(self.reads_in_place(), "depthwise: not an in-place plane");
        assert!(
            input.len() == h * w && g.len() == h * w && part.len() == 10,
            "depthwise: weight gradient lengths"
        );
        #[cfg(target_arch = "x86_64")]
        super::super::lanes::with_avx512(
            #[inline(always)]
            || {
                // SAFETY: inside `with_avx512` (`reads_in_place` checked AVX-512); the rows
                // read lie in `input` and `g` (lengths asserted).
                let sums = unsafe { in_place_tap_sums(input, g, [h, w], map) };
                part.copy_from_slice(&sums);
            },
        );
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("wide_kernel is false off x86-64: {map:?} {input:?} {g:?}");
    }
}

/// Bytes of input (the whole batch's) from which a 3x3 stride-1 convolution reads its planes
/// in place: the first version of the loop took Lite0's 144-channel 56x56 layer at batch 32
/// (58 MB, from memory) from 6.31 to 4.88 ms, but at batch 1 (1.8 MB, in cache) from 0.119
/// to 0.150 (docs/BENCHMARKS.md).
pub(super) const IN_PLACE_FROM: usize = 16 << 20;
/// Output rows a band of [`in_place_rows`] computes.
const BAND: usize = 4;

/// The plane `[h, w]` of `input` convolved with the 3x3 `filter` (stride 1, padding 1) into
/// `out`, from `bias`, clamped; `map` applied to each input value first (see
/// [`Geometry::plane_in_place`]).
///
/// # Safety
/// AVX-512 F is there; `input` holds `h · w` values and `out` is writable for as many.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn in_place_rows(
    input: &[f32],
    [h, w]: [usize; 2],
    map: Option<super::PlaneMap>,
    filter: &[f32],
    bias: f32,
    (lo, hi): (f32, f32),
    out: *mut f32,
) {
    // SAFETY (intrinsics): as the caller promises; every load and store is masked to the
    // row's `w` values, and a vector past the row's end is not loaded at all.
    unsafe {
        let wt: [__m512; 9] = std::array::from_fn(|i| _mm512_set1_ps(filter[i]));
        let (b, lo, hi) = (_mm512_set1_ps(bias), _mm512_set1_ps(lo), _mm512_set1_ps(hi));
        let vectors = w.div_ceil(L);
        // The map as vectors (scale, shift, clamp), where there is one.
        let map = map.map(|p| [p.scale, p.shift, p.lo, p.hi].map(|v| _mm512_set1_ps(v)));
        let map = map.as_ref();
        for v0 in (0..vectors).step_by(U) {
            let mut r0 = 0;
            while r0 < h {
                let rows = BAND.min(h - r0);
                let mut acc = [[b; U]; BAND];
                // Input row ir serves output row r0 + i through filter row ir + 1 - r0 - i.
                for ir in r0.saturating_sub(1)..(r0 + rows + 1).min(h) {
                    let j = ir + 1 - r0;
                    let mut x = [_mm512_setzero_ps(); U + 2];
                    if v0 > 0 {
                        x[0] = load_mapped(input, w, [ir, v0 - 1], map);
                    }
                    for (v, x) in x[1..].iter_mut().enumerate() {
                        *x = load_mapped(input, w, [ir, v0 + v], map);
                    }
                    for v in 0..U {
                        let c = x[v + 1];
                        // Columns one left and one right of c's: lane 15 of the vector
                        // before, then c's first 15; c's last 15, then lane 0 of the next.
                        let left = _mm512_castsi512_ps(_mm512_alignr_epi32::<15>(
                            _mm512_castps_si512(c),
                            _mm512_castps_si512(x[v]),
                        ));
                        let right = _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(
                            _mm512_castps_si512(x[v + 2]),
                            _mm512_castps_si512(c),
                        ));
                        for (i, acc) in acc.iter_mut().enumerate() {
                            let ki = j.wrapping_sub(i);
                            if i < rows && ki < 3 {
                                acc[v] = _mm512_fmadd_ps(left, wt[3 * ki], acc[v]);
                                acc[v] = _mm512_fmadd_ps(c, wt[3 * ki + 1], acc[v]);
                                acc[v] = _mm512_fmadd_ps(right, wt[3 * ki + 2], acc[v]);
                            }
                        }
                    }
                }
                for (i, acc) in acc.iter().enumerate().take(rows) {
                    let dst = out.add((r0 + i) * w);
                    for (v, acc) in acc.iter().enumerate() {
                        let m = row_mask(w, v0 + v);
                        if m != 0 {
                            _mm512_mask_storeu_ps(dst.add((v0 + v) * L), m, clamp16(*acc, lo, hi));
                        }
                    }
                }
                r0 += rows;
            }
        }
    }
}

/// [`Geometry::weight_grad_in_place`]'s loop: the 9 taps' sums of g times the mapped input
/// (3x3, stride 1, padding 1; zeros outside the plane), then Σ g.
///
/// # Safety
/// AVX-512 F is there; `input` and `g` hold `h · w` values.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn in_place_tap_sums(
    input: &[f32],
    g: &[f32],
    [h, w]: [usize; 2],
    map: Option<super::PlaneMap>,
) -> [f32; 10] {
    // SAFETY (intrinsics): as the caller promises; loads are masked to a row's values and a
    // vector wholly past its end is not loaded.
    unsafe {
        let map = map.map(|p| [p.scale, p.shift, p.lo, p.hi].map(|v| _mm512_set1_ps(v)));
        let map = map.as_ref();
        let mut acc = [_mm512_setzero_ps(); 9];
        let mut g_sum = _mm512_setzero_ps();
        let vectors = w.div_ceil(L);
        for r in 0..h {
            // Input rows r - 1, r, r + 1 (None outside the plane).
            let rows: [Option<usize>; 3] =
                std::array::from_fn(|ki| (r + ki).checked_sub(1).filter(|&y| y < h));
            let mut prev = [_mm512_setzero_ps(); 3];
            let mut cur = [_mm512_setzero_ps(); 3];
            for ki in 0..3 {
                if let Some(y) = rows[ki] {
                    cur[ki] = load_mapped(input, w, [y, 0], map);
                }
            }
            for v in 0..vectors {
                let m = row_mask(w, v);
                let gv = _mm512_maskz_loadu_ps(m, g.as_ptr().add(r * w + v * L));
                g_sum = _mm512_add_ps(g_sum, gv);
                let mut next = [_mm512_setzero_ps(); 3];
                for ki in 0..3 {
                    if let Some(y) = rows[ki] {
                        next[ki] = load_mapped(input, w, [y, v + 1], map);
                    }
                }
                for ki in 0..3 {
                    let left = _mm512_castsi512_ps(_mm512_alignr_epi32::<15>(
                        _mm512_castps_si512(cur[ki]),
                        _mm512_castps_si512(prev[ki]),
                    ));
                    let right = _mm512_castsi512_ps(_mm512_alignr_epi32::<1>(
                        _mm512_castps_si512(next[ki]),
                        _mm512_castps_si512(cur[ki]),
                    ));
                    acc[3 * ki] = _mm512_fmadd_ps(gv, left, acc[3 * ki]);
                    acc[3 * ki + 1] = _mm512_fmadd_ps(gv, cur[ki], acc[3 * ki + 1]);
                    acc[3 * ki + 2] = _mm512_fmadd_ps(gv, right, acc[3 * ki + 2]);
                }
                (prev, cur) = (cur, next);
            }
        }
        let mut out = [0.0f32; 10];
        for (o, a) in out.iter_mut().zip(&acc) {
            *o = _mm512_reduce_add_ps(*a);
        }
        out[9] = _mm512_reduce_add_ps(g_sum);
        out
    }
}

/// The lanes of vector `v` of a row of `w` values that lie in the row.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) fn row_mask(w: usize, v: usize) -> __mmask16 {
    match w.saturating_sub(v * L) {
        0 => 0,
        n if n >= L => !0,
        n => (1u16 << n) - 1,
    }
}

/// Vector `v` of row `r` of `input` (rows of `w` values), through the map (scale, shift, lo,
/// hi) where there is one — multiply then add, as `norm::PlaneMap::apply`; zeros past the
/// row's end, mapped or not (the convolution pads the mapped plane).
///
/// # Safety
/// AVX-512 F is there; `input` holds row `r`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(super) unsafe fn load_mapped(
    input: &[f32],
    w: usize,
    [r, v]: [usize; 2],
    map: Option<&[__m512; 4]>,
) -> __m512 {
    let m = row_mask(w, v);
    // SAFETY: as the caller promises; the load is masked to the row's values, and a vector
    // wholly past its end is not loaded.
    unsafe {
        if m == 0 {
            return _mm512_setzero_ps();
        }
        let x = _mm512_maskz_loadu_ps(m, input.as_ptr().add(r * w + v * L));
        match map {
            None => x,
            Some([scale, shift, lo, hi]) => {
                let y = _mm512_add_ps(_mm512_mul_ps(x, *scale), *shift);
                _mm512_maskz_mov_ps(m, clamp16(y, *lo, *hi))
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::PlaneMap;
    use super::*;
    use crate::graph::Conv;

    /// Test values in [-2, 2), different for each `seed`.
    pub(in super::super) fn val(i: usize, seed: usize) -> f32 {
        ((i * 7919 + seed * 104_729) % 401) as f32 / 100.0 - 2.0
    }

    /// A batch norm's map whose clamp cuts the test values at both bounds.
    pub(in super::super) const MAP: PlaneMap = PlaneMap {
        scale: 0.7,
        shift: -0.2,
        lo: 0.0,
        hi: 1.0,
    };

    /// A 3x3 depthwise convolution of one channel.
    pub(in super::super) fn conv3x3(stride: usize, pads: [usize; 4]) -> Conv {
        Conv {
            strides: [stride; 2],
            pads,
            dilations: [1, 1],
            groups: 1,
        }
    }

    /// `g`'s plane read in place against its bordered kernel, to the bit, for one plane of
    /// input and a filter: with and without [`MAP`], the bias, a clamp and SiLU after. The
    /// first case that differs, named.
    pub(in super::super) fn in_place_mismatch(
        g: &Geometry,
        input: &[f32],
        filter: &[f32],
    ) -> Option<String> {
        let cases = [
            (None, 0.0, Act::NONE),
            (Some(MAP), 0.3, Act::NONE),
            (Some(MAP), -0.1, Act::Clamp(0.0, 6.0)),
            (None, 0.2, Act::Silu),
        ];
        cases.into_iter().find_map(|(map, bias, act)| {
            let run = |in_place: bool| {
                let mut out = vec![MaybeUninit::new(f32::NAN); g.oh * g.ow];
                if in_place {
                    g.plane_in_place(input, map, filter, bias, act, &mut out);
                } else {
                    g.plane_wide(input, map, filter, bias, act, &mut out, &mut Vec::new());
                }
                // SAFETY: every element was initialised above.
                out.iter()
                    .map(|v| unsafe { v.assume_init() }.to_bits())
                    .collect::<Vec<_>>()
            };
            (run(true) != run(false)).then(|| format!("{map:?} bias {bias} {act:?}"))
        })
    }

    /// The plane read in place gives the bordered kernel's values to the bit: rows of one
    /// vector, of a vector and one lane, half a last vector, two runs of vectors; heights of
    /// one row, a band and a row, several bands; with and without the batch norm's map (its
    /// clamp cutting), the bias, a clamp and SiLU after.
    #[test]
    fn reading_in_place_matches_the_bordered_plane() {
        if !super::super::super::lanes::has_avx512() {
            return;
        }
        let conv = conv3x3(1, [1; 4]);
        let mut cuts = false;
        for (h, w) in [(1, 16), (5, 17), (9, 56), (4, 40), (6, 112), (2, 70)] {
            let g = Geometry::new([1, 1, h, w], [1, 1, 3, 3], &conv).expect("a depthwise geometry");
            assert!(
                g.wide_kernel() && !g.reads_in_place(),
                "a small batch stays bordered"
            );
            let input: Vec<f32> = (0..h * w).map(|i| val(i, 1)).collect();
            let filter: Vec<f32> = (0..9).map(|i| val(i, 2)).collect();
            if let Some(case) = in_place_mismatch(&g, &input, &filter) {
                panic!("{h}x{w} {case}: not the bordered kernel's values");
            }
            let mapped: Vec<f32> = input.iter().map(|&v| MAP.apply(v)).collect();
            cuts |= mapped.contains(&0.0) && mapped.contains(&1.0);
        }
        assert!(cuts, "the map's clamp cuts at both bounds");
    }

    /// The weight and bias gradients read in place are the sums of their definition (each
    /// output gradient value times the mapped input each tap read, zeros outside the plane),
    /// to fp32 rounding: rows of under one vector to several, partial last vectors, with and
    /// without the batch norm's map.
    #[test]
    fn weight_grad_in_place_matches_the_definition() {
        if !super::super::super::lanes::has_avx512() {
            return;
        }
        let conv = conv3x3(1, [1; 4]);
        for (h, w) in [
            (1, 16),
            (5, 17),
            (9, 56),
            (4, 40),
            (6, 112),
            (2, 70),
            (3, 33),
        ] {
            // A batch large enough to be read in place; one plane of it is used.
            let g = Geometry::new([1 << 20, 1, h, w], [1, 1, 3, 3], &conv).expect("a geometry");
            assert!(g.reads_in_place(), "a large batch reads in place");
            let input: Vec<f32> = (0..h * w).map(|i| val(i, 1)).collect();
            let grad: Vec<f32> = (0..h * w).map(|i| val(i, 2)).collect();
            for map in [None, Some(MAP)] {
                let x = |y: isize, c: isize| -> f64 {
                    if y < 0 || c < 0 || y >= h as isize || c >= w as isize {
                        return 0.0;
                    }
                    let v = input[y as usize * w + c as usize];
                    map.map_or(v, |m| m.apply(v)) as f64
                };
                let mut part = [f32::NAN; 10];
                g.weight_grad_in_place(&input, map, &grad, &mut part);
                for (tap, &got) in part.iter().enumerate() {
                    let (mut want, mut scale) = (0.0f64, 0.0f64);
                    for r in 0..h {
                        for c in 0..w {
                            let gv = grad[r * w + c] as f64;
                            let term = match tap {
                                9 => gv,
                                _ => {
                                    let (ki, kj) = ((tap / 3) as isize, (tap % 3) as isize);
                                    gv * x(r as isize + ki - 1, c as isize + kj - 1)
                                }
                            };
                            want += term;
                            scale += term.abs();
                        }
                    }
                    let got = got as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * scale + 1e-6,
                        "{h}x{w} {map:?} tap {tap}: {got} vs {want}"
                    );
                }
            }
        }
    }
}

//! Depthwise convolution plane by plane with 16-lane vectors along the rows, on CPUs with
//! AVX-512: 3x3 and 5x5 filters at strides 1 and 2 (what MobileNet's and EfficientNet's wide
//! maps, 112x112 to 28x28, use). The plane sits in the same zero-bordered, phase-split
//! scratch copy as the 8-lane path in `depthwise.rs`; here the filter's size and the stride
//! are constants, so every tap's address is a row pointer plus a constant, and the taps'
//! weights are broadcast once per plane and kept in registers — one load of input per FMA of
//! 16 lanes, where the 8-lane path loaded a weight and an input per FMA of 8.

#[cfg(target_arch = "x86_64")]
use super::super::lanes::clamp16;
use super::{Act, FORWARD, Geometry, Layout, clamp_then};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Lanes of one vector (the forward layout pads rows to whole ones, `Geometry::new`).
pub(super) const L: usize = 16;
/// Vectors along a row summed together (fewer at a row's end).
pub(super) const U: usize = 4;

impl Geometry {
    /// Whether [`Self::plane_wide`] runs this convolution: square 3x3 or 5x5 filters, no
    /// dilation, the same stride of 1 or 2 both ways, on a CPU with AVX-512.
    pub(super) fn wide_kernel(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return super::super::lanes::has_avx512()
            && matches!((self.kh, self.kw), (3, 3) | (5, 5))
            && self.dilation == [1, 1]
            && self.stride[0] == self.stride[1]
            && matches!(self.stride[0], 1 | 2);
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// One channel of one image (see [`Self::wide_kernel`] for when): the plane bordered into
    /// `scratch` (or read in place where [`Self::reads_in_place`]), then each output row in
    /// tiles of up to [`U`] vectors, started from the bias, every tap's FMA into registers,
    /// clamped and written once (the last vector of a row masked); SiLU as a pass over the
    /// finished plane.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn plane_wide(
        &self,
        input: &[f32],
        map: Option<super::PlaneMap>,
        filter: &[f32],
        bias: f32,
        act: Act,
        out: &mut [MaybeUninit<f32>],
        scratch: &mut Vec<f32>,
    ) {
        assert!(self.wide_kernel(), "depthwise: not a wide-kernel geometry");
        assert_eq!(filter.len(), self.kh * self.kw, "depthwise: filter length");
        assert_eq!(out.len(), self.oh * self.ow, "depthwise: output plane");
        if self.reads_in_place() || self.reads_in_place_s2() {
            return self.plane_in_place(input, map, filter, bias, act, out);
        }
        let Layout { p, offsets } = &self.layouts[FORWARD];
        self.fill(p, input, map, scratch);
        // The furthest any read reaches: the last row's furthest tap, whole vectors across.
        let furthest = offsets.iter().copied().max().unwrap_or(0)
            + (self.oh - 1) * self.stride[0] * p.pw
            + self.ow.div_ceil(L) * L;
        assert!(furthest <= scratch.len(), "depthwise scratch too small");
        let (clamp, after) = clamp_then(act);
        let phase = p.rows * p.pw;
        #[cfg(target_arch = "x86_64")]
        super::super::lanes::with_avx512(
            // A plain match inside the AVX-512 context, not closures: each arm inlines there.
            // The SiLU pass too: outside it, `exp` compiled for baseline x86-64 (EfficientNet-
            // B0 at batch 32 ran 0.89x).
            #[inline(always)]
            || {
                match (self.kh, self.stride[0]) {
                    (3, 1) => {
                        self.wide_rows::<3, 1>(scratch, p.pw, phase, filter, bias, clamp, out)
                    }
                    (3, 2) => {
                        self.wide_rows::<3, 2>(scratch, p.pw, phase, filter, bias, clamp, out)
                    }
                    (5, 1) => {
                        self.wide_rows::<5, 1>(scratch, p.pw, phase, filter, bias, clamp, out)
                    }
                    (5, 2) => {
                        self.wide_rows::<5, 2>(scratch, p.pw, phase, filter, bias, clamp, out)
                    }
                    _ => unreachable!("wide_kernel admits 3x3 and 5x5 at strides 1 and 2"),
                }
                if let Some(act) = after {
                    // SAFETY: `wide_rows` wrote every element of the plane; `MaybeUninit<f32>`
                    // has the layout of `f32`.
                    let plane = unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) };
                    act.apply_all(plane);
                }
            },
        );
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("wide_kernel is false off x86-64: {phase} {bias} {clamp:?} {after:?}");
    }

    /// Every output row of the plane from the bordered `src` (`pw` values a row, column
    /// phase `q` of a stride-2 plane `q · phase` on), `K × K` taps at stride `S`: the row in
    /// runs of up to [`U`] vectors, each run down the plane in bands of rows — at least 8
    /// sums in flight (an FMA's latency is 4 cycles and two issue a cycle: one vector a row,
    /// one row at a time, waited on its own sum for every tap).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn wide_rows<const K: usize, const S: usize>(
        &self,
        src: &[f32],
        pw: usize,
        phase: usize,
        filter: &[f32],
        bias: f32,
        (lo, hi): (f32, f32),
        out: &mut [MaybeUninit<f32>],
    ) {
        // SAFETY (intrinsics): this runs inside `with_avx512` (`wide_kernel` checked it).
        let (w, b, lo, hi) = unsafe {
            let mut w = [_mm512_setzero_ps(); 25];
            for (w, &f) in w.iter_mut().zip(filter) {
                *w = _mm512_set1_ps(f);
            }
            (
                w,
                _mm512_set1_ps(bias),
                _mm512_set1_ps(lo),
                _mm512_set1_ps(hi),
            )
        };
        let run = Run {
            src: src.as_ptr(),
            pw,
            phase,
            dst: out.as_mut_ptr().cast(),
            oh: self.oh,
            ow: self.ow,
            w,
            b,
            lo,
            hi,
        };
        let vectors = self.ow.div_ceil(L);
        let mut v0 = 0;
        // SAFETY: every run reads rows r·S .. r·S + K of each phase for its rows r < oh and
        // at most `ow.div_ceil(L) · L` outputs across — inside `src` (the caller asserted
        // `furthest`) — and writes its own columns of `out`'s rows, masked at the row's end.
        unsafe {
            while vectors - v0 >= U {
                run.down::<K, S, U, 2>(v0 * L);
                v0 += U;
            }
            match vectors - v0 {
                0 => {}
                1 => run.down::<K, S, 1, 8>(v0 * L),
                2 => run.down::<K, S, 2, 4>(v0 * L),
                _ => run.down::<K, S, 3, 2>(v0 * L),
            }
        }
    }
}

/// What every band of one plane shares: the bordered input, the output plane, the taps'
/// weights broadcast, the bias and the clamp.
#[cfg(target_arch = "x86_64")]
struct Run {
    src: *const f32,
    pw: usize,
    phase: usize,
    dst: *mut f32,
    oh: usize,
    ow: usize,
    w: [__m512; 25],
    b: __m512,
    lo: __m512,
    hi: __m512,
}

#[cfg(target_arch = "x86_64")]
impl Run {
    /// The `V` vectors of outputs from column `o` on, down every row: bands of `R` rows,
    /// then of 4, 2 and 1 for the rows left.
    ///
    /// # Safety
    /// As [`Geometry::wide_rows`] promises for its runs.
    #[inline(always)]
    unsafe fn down<const K: usize, const S: usize, const V: usize, const R: usize>(
        &self,
        o: usize,
    ) {
        let mut r = 0;
        // SAFETY: as the caller promises; each band's rows are below `oh`.
        unsafe {
            while r + R <= self.oh {
                self.band::<K, S, V, R>(r, o);
                r += R;
            }
            if R > 4 && r + 4 <= self.oh {
                self.band::<K, S, V, 4>(r, o);
                r += 4;
            }
            if R > 2 && r + 2 <= self.oh {
                self.band::<K, S, V, 2>(r, o);
                r += 2;
            }
            if R > 1 && r < self.oh {
                self.band::<K, S, V, 1>(r, o);
            }
        }
    }

    /// Output rows `r .. r + R`, columns `o ..` (`V` vectors, the row's end masked): each
    /// input row the band reads is loaded once for every tap and output row that uses it.
    ///
    /// # Safety
    /// As for [`Self::down`], with `r + R <= oh`.
    #[inline(always)]
    unsafe fn band<const K: usize, const S: usize, const V: usize, const R: usize>(
        &self,
        r: usize,
        o: usize,
    ) {
        let mut acc = [[self.b; V]; R];
        // SAFETY: the reads stay within the rows and columns the caller vouches for.
        unsafe {
            let at = self.src.add(r * S * self.pw + o);
            // Input row j of the band serves output row i through filter row j - S·i.
            for j in 0..S * (R - 1) + K {
                for kj in 0..K {
                    let x = at.add(j * self.pw + (kj % S) * self.phase + kj / S);
                    let xs: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(x.add(v * L)));
                    for (i, acc) in acc.iter_mut().enumerate() {
                        if j >= S * i && j - S * i < K {
                            let wt = self.w[(j - S * i) * K + kj];
                            for (acc, &x) in acc.iter_mut().zip(&xs) {
                                *acc = _mm512_fmadd_ps(x, wt, *acc);
                            }
                        }
                    }
                }
            }
            let n = (self.ow - o).min(V * L);
            for (i, acc) in acc.iter().enumerate() {
                store(
                    self.dst.add((r + i) * self.ow + o),
                    acc,
                    n,
                    self.lo,
                    self.hi,
                );
            }
        }
    }
}

/// `acc`'s first `n` values (at most `V · L`), clamped to [lo, hi], to `dst`.
///
/// # Safety
/// AVX-512 F is there; `dst .. + n` is writable.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store<const V: usize>(
    dst: *mut f32,
    acc: &[__m512; V],
    n: usize,
    lo: __m512,
    hi: __m512,
) {
    for (v, acc) in acc.iter().enumerate() {
        let first = v * L;
        if first >= n {
            break;
        }
        let lanes = (n - first).min(L);
        let mask: __mmask16 = if lanes == L { !0 } else { (1u16 << lanes) - 1 };
        // SAFETY: as the caller promises; masked-off lanes are not written.
        unsafe {
            let y = clamp16(*acc, lo, hi);
            _mm512_mask_storeu_ps(dst.add(first), mask, y);
        }
    }
}

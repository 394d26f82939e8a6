//! The vectors the channel groups of `depthwise_blocked.rs` are computed in, at either width:
//! AVX-512's 16 lanes (one vector holds a pixel's [`L`] channels) or AVX2's 8 (two vectors a
//! pixel; every kernel runs its loops once per half, [`halves`]). The groups' layout is the
//! same on both, so only the vector operations and the transposes in and out of it differ.
//! Before AVX2 had them, CPUs without AVX-512 ran narrow maps plane by plane, where a 7x7
//! plane's bordered copy and per-row bookkeeping cost several times its sums: on a Zen 1,
//! Lite0's 1152@7x7 5x5 forward 12 → 3.6 ms and backward 28 → 7.4 ms at batch 32
//! (`cargo bench --bench kernels -- depthwise`, BENCHMARKS' fifty-fourth stop).

#[cfg(target_arch = "x86_64")]
use super::super::super::lanes::{clamp8, clamp16, transpose8, transpose16};
use super::{L, Place};
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// A vector of [`Lanes::N`] lanes and what the group kernels do with it.
///
/// # Safety (every method)
/// The CPU has the vector's instructions: the callers run inside `on_lanes!`, which picks
/// the type the CPU has and compiles its body for it; the methods inline into it. Pointers
/// are valid for the `N` values read or written.
pub(super) trait Lanes: Copy {
    /// Lanes a vector: [`L`] or half of it.
    const N: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(v: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(p: *mut f32, v: Self);
    /// `a · b + c` in one rounding.
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
    unsafe fn mul(a: Self, b: Self) -> Self;
    /// `lanes::clamp1` lane by lane (a NaN passes through).
    unsafe fn clamp(v: Self, lo: Self, hi: Self) -> Self;
    /// The `planes.len() / pixels` planes (at most [`L`]) of `planes` into `dst`
    /// pixel-major, where `place` says; lanes past the last plane zero. The caller checked
    /// the lengths ([`transpose`]).
    unsafe fn transpose(planes: &[f32], pixels: usize, dst: &mut [f32], place: Place);
    /// The inverse of [`Lanes::transpose`] for a pixel-major `src` (pixel p's lanes at
    /// `p · L`): its first `planes.len() / pixels` lanes into `planes`. The caller checked
    /// the lengths ([`untranspose`]).
    unsafe fn untranspose(src: &[f32], pixels: usize, planes: &mut [MaybeUninit<f32>]);
}

/// Where each vector of a pixel's [`L`] lanes starts: 0 (16 lanes), or 0 and 8.
#[inline(always)]
pub(super) fn halves<V: Lanes>() -> impl Iterator<Item = usize> {
    // A range with constant bounds: one pass, no loop, for 16 lanes.
    (0..L / V::N).map(|i| i * V::N)
}

/// [`Lanes::transpose`] after checking the lengths.
#[inline(always)]
pub(super) fn transpose<V: Lanes>(planes: &[f32], pixels: usize, dst: &mut [f32], place: Place) {
    let lanes = planes.len() / pixels;
    assert!(
        lanes <= L
            && planes.len() == lanes * pixels
            && place.pw >= place.w
            && dst.len() >= place.end(pixels),
        "transpose: planes"
    );
    // SAFETY: inside `on_lanes!` (the trait's contract); lengths asserted above.
    unsafe { V::transpose(planes, pixels, dst, place) }
}

/// [`Lanes::untranspose`] after checking the lengths.
#[inline(always)]
pub(super) fn untranspose<V: Lanes>(src: &[f32], pixels: usize, planes: &mut [MaybeUninit<f32>]) {
    let lanes = planes.len() / pixels;
    assert!(
        lanes <= L && planes.len() == lanes * pixels && src.len() >= pixels * L,
        "untranspose: planes"
    );
    // SAFETY: inside `on_lanes!` (the trait's contract); lengths asserted above.
    unsafe { V::untranspose(src, pixels, planes) }
}

/// Pixel `p`'s place in the buffer (values), for pixels taken in order: the row and column
/// followed along (a division per pixel cost as much as the transpose).
struct Walk {
    place: Place,
    x: usize,
    y: usize,
}

impl Walk {
    fn new(place: Place) -> Self {
        Walk { place, x: 0, y: 0 }
    }

    /// The next pixel's offset.
    #[inline(always)]
    fn next(&mut self) -> usize {
        let at = (self.place.origin + self.y * self.place.pw + self.x) * L;
        self.x += 1;
        if self.x == self.place.w {
            (self.x, self.y) = (0, self.y + 1);
        }
        at
    }
}

// SAFETY (the unsafe blocks of the one-intrinsic methods below): the trait's contract — the
// CPU has AVX-512 F, and the pointers hold a vector's values.
#[cfg(target_arch = "x86_64")]
impl Lanes for __m512 {
    const N: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        unsafe { _mm512_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self) {
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn clamp(v: Self, lo: Self, hi: Self) -> Self {
        unsafe { clamp16(v, lo, hi) }
    }

    /// 16 pixels at a time through a 16 × 16 transpose. Constant-index loops with the
    /// block's length as a condition, so the 16 vectors stay in registers (a loop to a
    /// run-time count kept them on the stack).
    #[inline(always)]
    unsafe fn transpose(planes: &[f32], pixels: usize, dst: &mut [f32], place: Place) {
        let lanes = planes.len() / pixels;
        let mut walk = Walk::new(place);
        let mut p0 = 0;
        while p0 < pixels {
            let n = L.min(pixels - p0);
            // SAFETY: rows l < lanes read `n` values of plane l from p0 (inside `planes`);
            // pixel p0 + j < pixels lands below `place.end(pixels)` (within `dst`).
            unsafe {
                let block = transpose16::load_transposed(planes.as_ptr().add(p0), pixels, lanes, n);
                for (j, v) in block.iter().enumerate() {
                    if j < n {
                        _mm512_storeu_ps(dst.as_mut_ptr().add(walk.next()), *v);
                    }
                }
            }
            p0 += n;
        }
    }

    #[inline(always)]
    unsafe fn untranspose(src: &[f32], pixels: usize, planes: &mut [MaybeUninit<f32>]) {
        let lanes = planes.len() / pixels;
        let mut p0 = 0;
        while p0 < pixels {
            let n = L.min(pixels - p0);
            // SAFETY: the loads read pixels p0..p0 + n of `src`, the stores `n` values of
            // planes l < lanes from p0.
            unsafe {
                let block = transpose16::load_transposed(src.as_ptr().add(p0 * L), L, n, L);
                let out = planes.as_mut_ptr().cast::<f32>();
                for (l, v) in block.iter().enumerate() {
                    if l < lanes {
                        transpose16::store_first(out.add(l * pixels + p0), *v, n);
                    }
                }
            }
            p0 += n;
        }
    }
}

// SAFETY (the unsafe blocks of the one-intrinsic methods below): the trait's contract — the
// CPU has AVX2 and FMA, and the pointers hold a vector's values.
#[cfg(target_arch = "x86_64")]
impl Lanes for __m256 {
    const N: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        unsafe { _mm256_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self) {
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn fmadd(a: Self, b: Self, c: Self) -> Self {
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn clamp(v: Self, lo: Self, hi: Self) -> Self {
        unsafe { clamp8(v, lo, hi) }
    }

    /// 8 pixels at a time, each half of their lanes through an 8 × 8 transpose.
    #[inline(always)]
    unsafe fn transpose(planes: &[f32], pixels: usize, dst: &mut [f32], place: Place) {
        const N: usize = transpose8::L;
        let lanes = planes.len() / pixels;
        let mut walk = Walk::new(place);
        let mut p0 = 0;
        while p0 < pixels {
            let n = N.min(pixels - p0);
            let mut at = [0usize; N];
            for (j, at) in at.iter_mut().enumerate() {
                if j < n {
                    *at = walk.next();
                }
            }
            for h in [0, N] {
                let rows = lanes.saturating_sub(h).min(N);
                // SAFETY: rows l < rows read `n` values of plane h + l from p0 (inside
                // `planes`); pixel p0 + j < pixels lands below `place.end(pixels)` (within
                // `dst`), its lanes h..h + 8 within its L.
                unsafe {
                    let block = match rows {
                        0 => [_mm256_setzero_ps(); N],
                        _ => transpose8::load_transposed(
                            planes.as_ptr().add(h * pixels + p0),
                            pixels,
                            rows,
                            n,
                        ),
                    };
                    for (j, v) in block.iter().enumerate() {
                        if j < n {
                            _mm256_storeu_ps(dst.as_mut_ptr().add(at[j] + h), *v);
                        }
                    }
                }
            }
            p0 += n;
        }
    }

    #[inline(always)]
    unsafe fn untranspose(src: &[f32], pixels: usize, planes: &mut [MaybeUninit<f32>]) {
        const N: usize = transpose8::L;
        let lanes = planes.len() / pixels;
        let mut p0 = 0;
        while p0 < pixels {
            let n = N.min(pixels - p0);
            for h in [0, N] {
                if h >= lanes {
                    break;
                }
                // SAFETY: the loads read lanes h..h + 8 of pixels p0..p0 + n of `src`, the
                // stores `n` values of planes h + l < lanes from p0.
                unsafe {
                    let block = transpose8::load_transposed(src.as_ptr().add(p0 * L + h), L, n, N);
                    let out = planes.as_mut_ptr().cast::<f32>();
                    for (l, v) in block.iter().enumerate() {
                        if h + l < lanes {
                            transpose8::store_first(out.add((h + l) * pixels + p0), *v, n);
                        }
                    }
                }
            }
            p0 += n;
        }
    }
}

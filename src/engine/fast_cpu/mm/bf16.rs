//! The matrix kernel's bf16 pieces (training's `--precision bf16`, `engine::precision`): the
//! filters' panels and B's packed strips turned into bf16 pairs of steps (one 32-bit value
//! holds a row's or column's steps 2i and 2i + 1, as `vdpbf16ps` pairs them), and the
//! 12 × 32 micro-kernel on them (`kernel_pairs`, fp32 sums). `avx2::multiply_bf16` runs them
//! inside the AVX-512 kernels' body; its packing and epilogue are theirs.

use super::super::blocking::strip_len;
use super::{MR, NR};
use std::arch::x86_64::*;

/// Pairs `0..pairs` of a packed fp32 panel (`[k][MR]`) as bf16 pairs (`[k/2][MR]`: row r's
/// steps 2i and 2i + 1 in one value, low half first), rounded as [`to_pairs`] rounds B;
/// how many it did (all of them: an odd last step is the caller's).
///
/// # Safety
/// The CPU has AVX512_BF16 and BW; `panel` holds at least `2 · pairs · MR` values and
/// `out` `pairs · MR`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
pub(super) unsafe fn pair_panel(panel: &[f32], pairs: usize, out: &mut [u32]) -> usize {
    assert!(
        panel.len() >= 2 * pairs * MR && out.len() >= pairs * MR,
        "bf16 pairs: lengths"
    );
    // Steps 2i and 2i + 1 are the panel's 12 values from 2i · MR: word 2r of the pairs is
    // value r (step 2i), word 2r + 1 value MR + r (step 2i + 1).
    const PAIR: [u16; 16] = [0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11, 0, 0, 0, 0];
    // SAFETY: as the caller promises; the loads and stores are masked to the 12 values and
    // 6 pairs of each step pair.
    unsafe {
        let idx = _mm256_loadu_si256(PAIR.as_ptr().cast());
        for i in 0..pairs {
            let v = _mm512_maskz_loadu_ps(0x0fff, panel.as_ptr().add(2 * i * MR));
            let words: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
            let paired = _mm256_permutexvar_epi16(idx, words);
            _mm256_mask_storeu_epi32(out.as_mut_ptr().add(i * MR).cast(), 0x3f, paired);
        }
    }
    pairs
}

/// Values from one strip of B in bf16 pairs to the next for a chunk of `kc` steps: its
/// `kc/2 × NR` pairs and a cache line more, as [`strip_len`].
pub(super) fn pair_strip_len(kc: usize) -> usize {
    kc.div_ceil(2) * NR + NR
}

/// The packed fp32 strips of a chunk of `kc` steps (at `src`, [`strip_len`] apart) as bf16
/// pairs at `dst` ([`pair_strip_len`] apart): pair i's lane j holds steps 2i (low half) and
/// 2i + 1 (high; zero past `kc`) of column j, as `vdpbf16ps` pairs them with A's.
#[inline(always)]
pub(super) unsafe fn to_pairs(src: *const f32, strips: usize, kc: usize, dst: *mut u32) {
    // `vcvtne2ps2bf16` puts one row's 16 values in the low half and the other's in the
    // high: lane j of the pair takes elements j and 16 + j.
    const INTERLEAVE: [u16; 32] = {
        let mut idx = [0u16; 32];
        let mut j = 0;
        while j < 16 {
            idx[2 * j] = j as u16;
            idx[2 * j + 1] = 16 + j as u16;
            j += 1;
        }
        idx
    };
    // SAFETY: as the caller promises: `strips` strips of `kc` rows of NR values at `src`,
    // room for as many strips of pairs at `dst`; the CPU has AVX512_BF16 and BW.
    unsafe {
        let idx = _mm512_loadu_si512(INTERLEAVE.as_ptr().cast());
        for s in 0..strips {
            let (src, dst) = (src.add(s * strip_len(kc)), dst.add(s * pair_strip_len(kc)));
            for i in 0..kc.div_ceil(2) {
                let lo = _mm512_loadu_ps(src.add(2 * i * NR));
                let hi = if 2 * i + 1 < kc {
                    _mm512_loadu_ps(src.add((2 * i + 1) * NR))
                } else {
                    _mm512_setzero_ps()
                };
                let both: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
                _mm512_storeu_si512(dst.add(i * NR).cast(), _mm512_permutexvar_epi16(idx, both));
            }
        }
    }
}

/// [`kernel_pairs`] with the second panel's first `rows` rows, rounded up to 2, 4 or all
/// (none: a lone panel), as `avx2::kernel_tall_rows`.
#[inline(always)]
pub(super) unsafe fn kernel_pairs_rows<const S: usize>(
    rows: usize,
    pairs: usize,
    a0: *const u32,
    a1: *const u32,
    b: *const u32,
    strip: usize,
) -> [[[__m512; MR]; S]; 2] {
    // SAFETY: as the caller promises for `kernel_pairs`.
    unsafe {
        match rows {
            0 => kernel_pairs::<S, 0>(pairs, a0, a1, b, strip),
            1 | 2 => kernel_pairs::<S, 2>(pairs, a0, a1, b, strip),
            3 | 4 => kernel_pairs::<S, 4>(pairs, a0, a1, b, strip),
            _ => kernel_pairs::<S, MR>(pairs, a0, a1, b, strip),
        }
    }
}

/// `avx2::kernel_tall` in bf16: each step of the loop is a pair of the sum's steps, one
/// `vdpbf16ps` a row and strip (32 multiply-adds into 16 fp32 sums). `a0`, `a1` are panels
/// of pairs (`[pairs][MR]`; `R1` rows of `a1`), `b` strip 0's first pair of rows (16 pairs),
/// the others `strip` values apart.
#[inline(always)]
unsafe fn kernel_pairs<const S: usize, const R1: usize>(
    pairs: usize,
    a0: *const u32,
    a1: *const u32,
    b: *const u32,
    strip: usize,
) -> [[[__m512; MR]; S]; 2] {
    // SAFETY: compiled into `multiply_bf16` only, which has AVX512_BF16.
    let mut acc = [[[unsafe { _mm512_setzero_ps() }; S]; MR]; 2];
    for i in 0..pairs {
        // SAFETY: each panel has `pairs × MR` values and each strip `pairs × NR`; bf16
        // vectors are 512 bits as the integer ones they are loaded as.
        unsafe {
            let mut x: [__m512bh; S] =
                [std::mem::transmute::<__m512i, __m512bh>(_mm512_setzero_si512()); S];
            for (t, x) in x.iter_mut().enumerate() {
                *x = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(
                    b.add(t * strip + i * NR).cast(),
                ));
            }
            for (p, (a, acc)) in [a0, a1].into_iter().zip(acc.iter_mut()).enumerate() {
                let rows = if p == 0 { MR } else { R1 };
                for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                    let av: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*a.add(i * MR + r) as i32));
                    for (acc, &x) in acc.iter_mut().zip(&x) {
                        *acc = _mm512_dpbf16_ps(*acc, av, x);
                    }
                }
            }
        }
    }
    std::array::from_fn(|p| std::array::from_fn(|t| std::array::from_fn(|r| acc[p][r][t])))
}

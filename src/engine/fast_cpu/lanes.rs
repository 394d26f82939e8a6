//! What the slice kernels share, with no tensor library in sight (so that
//! `tools/miri.sh` can run the kernels alone): CPU feature detection, the AVX2 trampoline,
//! the clamp and the other fused activations, the backward kernels' result.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Whether the CPU has AVX2 and FMA: detected once, the one check every kernel here uses.
#[cfg(target_arch = "x86_64")]
pub fn has_avx2_fma() -> bool {
    static DETECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DETECTED.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

/// Whether the CPU has AVX-512 (F and DQ): the kernels with 16-lane versions run those.
#[cfg(target_arch = "x86_64")]
pub fn has_avx512() -> bool {
    static DETECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DETECTED.get_or_init(|| {
        has_avx2_fma()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
    })
}

/// Whether the CPU multiplies bf16 pairs into fp32 sums (AVX512_BF16's `vdpbf16ps`, 32
/// multiply-adds an instruction where an fp32 FMA does 16: Zen 4, Sapphire Rapids; with BW
/// and VL for the pairing's word shuffles): the matrix kernel's bf16 operands
/// (`mm::PackedA::in_bf16`) run there.
#[cfg(target_arch = "x86_64")]
pub fn has_avx512_bf16() -> bool {
    static DETECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DETECTED.get_or_init(|| {
        has_avx512()
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    })
}

/// Runs `f` compiled for AVX2 and FMA when the CPU has them: the binary targets baseline
/// x86-64 (SSE2), and the elementwise loops here are worth 8-wide vectors. `f` and what it
/// calls must be `#[inline(always)]` to be compiled into the AVX2 function.
#[inline(always)]
pub fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        #[target_feature(enable = "avx2,fma")]
        fn run<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { run(f) };
    }
    f()
}

/// Runs `f` compiled for AVX-512 (F, with AVX2 and FMA) when the CPU has it, else as
/// [`with_avx2`] does: for loops over 16-lane arrays. `f` and what it calls must be
/// `#[inline(always)]`.
#[inline(always)]
pub fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn run<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the CPU has AVX-512 F, AVX2 and FMA (checked just above).
        return unsafe { run(f) };
    }
    with_avx2(f)
}

/// Asks for `values` to be brought into L2 (a hint; nothing on other targets): for a loop
/// that reads the next task's operands in an order the hardware's prefetcher does not
/// follow — a group of 16 planes read 16 values of each in turn.
#[inline(always)]
pub fn prefetch_l2(values: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in values.chunks(16) {
        // SAFETY: a prefetch of an address inside `values`; it reads nothing.
        unsafe {
            use std::arch::x86_64::*;
            _mm_prefetch::<_MM_HINT_T1>(line.as_ptr().cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

/// `src` copied into `dst` (equal lengths). Long runs (≥ 256 KB) bypass the cache with
/// streaming stores where the CPU has AVX2: a plain store first reads the line it writes,
/// and glibc's `memcpy` streams only past a threshold derived from the L3's size, which a VM
/// may report as hundreds of MB. Short runs are a plain copy.
pub fn copy_streaming(dst: &mut [std::mem::MaybeUninit<f32>], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "copy: lengths");
    const LONG: usize = 64 << 10;
    #[cfg(target_arch = "x86_64")]
    if src.len() >= LONG && has_avx2_fma() {
        #[target_feature(enable = "avx2")]
        fn stream(dst: &mut [std::mem::MaybeUninit<f32>], src: &[f32]) {
            use std::arch::x86_64::*;
            // Up to the first 32-byte boundary of `dst` plainly, then 8 values a store.
            let head = dst.as_ptr().align_offset(32).min(dst.len());
            dst[..head].write_copy_of_slice(&src[..head]);
            let body = (dst.len() - head) / 8 * 8;
            let (d, s) = (dst[head..].as_mut_ptr().cast::<f32>(), src[head..].as_ptr());
            for i in (0..body).step_by(8) {
                // SAFETY: `i + 8 <= body` values after `head` lie in both slices; `d + i` is
                // 32-byte aligned (`head` aligned it, `i` is a multiple of 8 values).
                unsafe { _mm256_stream_ps(d.add(i), _mm256_loadu_ps(s.add(i))) };
            }
            // Streaming stores are weakly ordered: fence before anyone reads the values.
            _mm_sfence();
            dst[head + body..].write_copy_of_slice(&src[head + body..]);
        }
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { stream(dst, src) };
    }
    dst.write_copy_of_slice(src);
}

/// `row` split by column phase for a stride of `s` across: column x goes to
/// `(x % s) · phase + x / s` of `dst` (`s` phases of `phase = ⌈len / s⌉` values; a short
/// phase's last lane is zero), every value of `dst` written. A strided kernel then reads the
/// columns one tap takes for a run of outputs (x, x + s, x + 2s, …) as one contiguous run.
/// Stride 2 in one pass that vectorises.
#[inline(always)]
pub fn split_phases(row: &[f32], s: usize, dst: &mut [std::mem::MaybeUninit<f32>]) {
    let (w, phase) = (row.len(), row.len().div_ceil(s));
    assert_eq!(dst.len(), s * phase, "split_phases: destination length");
    if s == 2 {
        let (even, odd) = dst.split_at_mut(phase);
        for ((e, o), pair) in even.iter_mut().zip(&mut *odd).zip(row.chunks_exact(2)) {
            e.write(pair[0]);
            o.write(pair[1]);
        }
        if w % 2 == 1 {
            even[phase - 1].write(row[w - 1]);
            odd[phase - 1].write(0.0);
        }
        return;
    }
    for (p, dst) in dst.chunks_exact_mut(phase).enumerate() {
        let mut written = 0;
        for (d, &v) in dst.iter_mut().zip(row.iter().skip(p).step_by(s)) {
            d.write(v);
            written += 1;
        }
        dst[written..].fill(std::mem::MaybeUninit::new(0.0));
    }
}

/// `v` limited to `[lo, hi]`, written as compares so it vectorises (`f32::max` handles NaN
/// with extra scalar code); NaN passes through, as in PyTorch.
#[inline(always)]
pub fn clamp1(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v < lo { lo } else { v };
    if v > hi { hi } else { v }
}

/// [`clamp1`] on 16 lanes, NaN passing through as there: the vector max and min return
/// their second operand when one is NaN, so `v` goes second (`max(v, lo)` turned a NaN into
/// `lo`, and with no clamp into −∞).
///
/// # Safety
/// The CPU has AVX-512 F (callers run inside `with_avx512` or an AVX-512 `target_feature`
/// function, which this inlines into).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn clamp16(v: __m512, lo: __m512, hi: __m512) -> __m512 {
    // SAFETY: as the caller promises.
    unsafe { _mm512_min_ps(hi, _mm512_max_ps(lo, v)) }
}

/// [`clamp16`] on 8 lanes.
///
/// # Safety
/// The CPU has AVX (callers run inside an AVX2 `target_feature` context).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub unsafe fn clamp8(v: __m256, lo: __m256, hi: __m256) -> __m256 {
    // SAFETY: as the caller promises.
    unsafe { _mm256_min_ps(hi, _mm256_max_ps(lo, v)) }
}

/// The activation a kernel applies as it writes each output, while the value is still in a
/// register: a clamp (ReLU, ReLU6, Clip; `Act::NONE` for none) or SiLU (`x · sigmoid(x)`,
/// EfficientNet-B0's activation, which otherwise is a pass of its own over every activation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    Clamp(f32, f32),
    Silu,
}

impl Act {
    /// No activation: a clamp to the whole line.
    pub const NONE: Act = Act::Clamp(f32::NEG_INFINITY, f32::INFINITY);

    /// `f(v)`. Callers with a loop of values match on `self` outside the loop (see
    /// [`Act::apply_all`]), so that each arm's loop vectorises on its own.
    #[inline(always)]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Act::Clamp(lo, hi) => clamp1(v, lo, hi),
            Act::Silu => v * sigmoid1(v),
        }
    }

    /// `f` on every value in place, with the match hoisted out of the loop.
    #[inline(always)]
    pub fn apply_all(self, vs: &mut [f32]) {
        match self {
            Act::Clamp(lo, hi) if (lo, hi) == (f32::NEG_INFINITY, f32::INFINITY) => {}
            Act::Clamp(lo, hi) => vs.iter_mut().for_each(|v| *v = clamp1(*v, lo, hi)),
            Act::Silu => vs.iter_mut().for_each(|v| *v *= sigmoid1(*v)),
        }
    }
}

/// What a convolution's backward kernel computed: the input gradient, and the weight
/// gradient with the bias gradient (each `None` when not asked for).
pub struct ConvGrads {
    pub x: Option<Vec<f32>>,
    pub weight_bias: Option<(Vec<f32>, Vec<f32>)>,
}

/// `e^v` to about 2 ulp, written so that loops of it vectorise (no table, no branch): `2^n`
/// by building the float's exponent, times Cephes' `expf` polynomial on the remainder.
/// Inputs are held to ±87 (beyond, `e^v` is 0 or overflows f32 anyway); NaN stays NaN.
#[inline(always)]
pub fn exp1(v: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n · ln 2 is exact enough.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = clamp1(v, -87.0, 87.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^n without a float-to-int conversion (Rust's saturating `as i32` does not vectorise:
    // each lane became a scalar convert and compare): n, a whole number in [-126, 126] here,
    // added to 1.5 · 2^23 lands in the float's low mantissa bits, which plus the bias shift
    // into the exponent field. A NaN stays NaN through `e`.
    const ROUND: f32 = 12_582_912.0;
    e * f32::from_bits((n + ROUND).to_bits().wrapping_add(127) << 23)
}

/// `1 / (1 + e^-v)`.
#[inline(always)]
pub fn sigmoid1(v: f32) -> f32 {
    1.0 / (1.0 + exp1(-v))
}

/// A convolution's (or pooling window's) output height and width, floor-divided: input
/// `[h, w]`, kernel `[kh, kw]` (≥ 1), strides, dilations and pads `[top, left, bottom,
/// right]`. `None` when a stride or dilation is zero or the padded input is shorter than the
/// kernel's span.
pub fn conv_output(
    [h, w]: [usize; 2],
    [kh, kw]: [usize; 2],
    [sh, sw]: [usize; 2],
    [dh, dw]: [usize; 2],
    [top, left, bottom, right]: [usize; 4],
) -> Option<[usize; 2]> {
    let span_h = dh * (kh - 1) + 1;
    let span_w = dw * (kw - 1) + 1;
    if sh * sw * dh * dw == 0 || h + top + bottom < span_h || w + left + right < span_w {
        return None;
    }
    Some([
        (h + top + bottom - span_h) / sh + 1,
        (w + left + right - span_w) / sw + 1,
    ])
}

/// 8 × 8 transposes in AVX2 registers (24 shuffles for 64 values): [`transpose16`]'s work on
/// machines without AVX-512, in place of strided scalar copies — the 1x1 weight gradient's
/// packing (`weight_grad::transposed`; its harness cases ~10 % faster on a Zen 1, BENCHMARKS)
/// and the depthwise channel groups' copies in and out (`depthwise_group_lanes.rs`).
#[cfg(target_arch = "x86_64")]
pub mod transpose8 {
    use std::arch::x86_64::*;

    /// Lanes of a vector, and rows of a block.
    pub const L: usize = 8;

    /// Rows `0..rows` (`stride` apart from `src`, their first `n` values each; the rest zero)
    /// as columns: vector j holds value j of every row.
    ///
    /// # Safety
    /// The CPU has AVX2; `src + r · stride .. + n` is readable for every r < rows. Inlined
    /// into callers that run inside `with_avx2`.
    #[inline(always)]
    pub unsafe fn load_transposed(
        src: *const f32,
        stride: usize,
        rows: usize,
        n: usize,
    ) -> [__m256; L] {
        // SAFETY: the CPU has AVX2, as the caller promises; a masked load reads no lane
        // its mask leaves out (and faults on none of them).
        unsafe {
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(L) as i32), lanes);
            let mut r = [_mm256_setzero_ps(); L];
            for (i, v) in r.iter_mut().enumerate() {
                if i < rows {
                    *v = if n >= L {
                        _mm256_loadu_ps(src.add(i * stride))
                    } else {
                        _mm256_maskload_ps(src.add(i * stride), mask)
                    };
                }
            }
            transpose(r)
        }
    }

    /// The first `n` lanes of `v` to `dst`.
    ///
    /// # Safety
    /// The CPU has AVX2; `dst .. + n` is writable.
    #[inline(always)]
    pub unsafe fn store_first(dst: *mut f32, v: __m256, n: usize) {
        // SAFETY: as the caller promises; a masked store writes (and faults on) no lane its
        // mask leaves out.
        unsafe {
            if n >= L {
                return _mm256_storeu_ps(dst, v);
            }
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lanes);
            _mm256_maskstore_ps(dst, mask, v)
        }
    }

    /// The 8 × 8 transpose of `r` (row i's lane j to row j's lane i).
    ///
    /// # Safety
    /// The CPU has AVX2 (the callers run inside `with_avx2`).
    #[inline(always)]
    unsafe fn transpose(r: [__m256; L]) -> [__m256; L] {
        // SAFETY: the CPU has AVX2, as the caller promises.
        unsafe {
            // Rows interleaved by 32-bit lanes, then by 64-bit pairs (each 128-bit half then
            // holds a 4 × 4 block's column), then the halves swapped into place.
            let mut t = [_mm256_setzero_ps(); L];
            for i in 0..4 {
                t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
            }
            let mut u = [_mm256_setzero_ps(); L];
            for i in 0..2 {
                let (a, b, c, d) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
                u[4 * i] = _mm256_shuffle_ps::<0x44>(a, c);
                u[4 * i + 1] = _mm256_shuffle_ps::<0xee>(a, c);
                u[4 * i + 2] = _mm256_shuffle_ps::<0x44>(b, d);
                u[4 * i + 3] = _mm256_shuffle_ps::<0xee>(b, d);
            }
            // u[k]'s half q holds column 4q + k of rows 0..4, u[4 + k]'s of rows 4..8.
            let mut v = [_mm256_setzero_ps(); L];
            for k in 0..4 {
                v[k] = _mm256_permute2f128_ps::<0x20>(u[k], u[4 + k]);
                v[4 + k] = _mm256_permute2f128_ps::<0x31>(u[k], u[4 + k]);
            }
            v
        }
    }
}

/// 16 × 16 transposes in registers (64 shuffles for 256 values, where scalar copies take a
/// load and a store each): the depthwise kernels' channel groups (`depthwise_blocked.rs`)
/// and the matrix kernel's packing of a transposed operand (`mm`, `B::Cols`).
#[cfg(target_arch = "x86_64")]
pub mod transpose16 {
    use std::arch::x86_64::*;

    /// Lanes of a vector, and rows of a block.
    pub const L: usize = 16;

    /// Rows `0..rows` (`stride` apart from `src`, their first `n` values each; the rest zero)
    /// as columns: vector j holds value j of every row.
    ///
    /// # Safety
    /// The CPU has AVX-512 F; `src + r · stride .. + n` is readable for every r < rows.
    /// Inlined, not a `target_feature` function of its own: each caller runs inside
    /// `with_avx512`, and a call returned the 16 vectors through the stack (3 % of a
    /// batch-1 pass).
    #[inline(always)]
    pub unsafe fn load_transposed(
        src: *const f32,
        stride: usize,
        rows: usize,
        n: usize,
    ) -> [__m512; L] {
        let mask: __mmask16 = if n >= L { !0 } else { (1u16 << n) - 1 };
        // SAFETY: the CPU has AVX-512 F, as the caller promises.
        let mut r = [unsafe { _mm512_setzero_ps() }; L];
        // Constant indices, `rows` a condition: the vectors stay in registers.
        for (i, v) in r.iter_mut().enumerate() {
            if i < rows {
                // SAFETY: as the caller promises; masked-off lanes are not read.
                *v = unsafe { _mm512_maskz_loadu_ps(mask, src.add(i * stride)) };
            }
        }
        // SAFETY: the CPU has AVX-512 F, as the caller promises.
        unsafe { transpose(r) }
    }

    /// The first `n` lanes of `v` to `dst`.
    ///
    /// # Safety
    /// The CPU has AVX-512 F; `dst .. + n` is writable.
    #[inline(always)]
    pub unsafe fn store_first(dst: *mut f32, v: __m512, n: usize) {
        let mask: __mmask16 = if n >= L { !0 } else { (1u16 << n) - 1 };
        // SAFETY: as the caller promises; masked-off lanes are not written.
        unsafe { _mm512_mask_storeu_ps(dst, mask, v) }
    }

    /// The 16 × 16 transpose of `r` (row i's lane j to row j's lane i).
    ///
    /// # Safety
    /// The CPU has AVX-512 F (the callers run inside `with_avx512`).
    #[inline(always)]
    unsafe fn transpose(r: [__m512; L]) -> [__m512; L] {
        // SAFETY: the CPU has AVX-512 F, as the caller promises.
        unsafe {
            // Pairs of rows interleaved by 32-bit lanes, then by 64-bit pairs: each 128-bit
            // block then holds a 4 × 4 block's column, and two rounds of 128-bit shuffles put
            // the blocks in order.
            let mut t = [_mm512_setzero_ps(); L];
            for i in 0..8 {
                t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
            }
            let mut u = [_mm512_setzero_ps(); L];
            for i in 0..4 {
                let (a, b, c, d) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
                let (a, b, c, d) = (
                    _mm512_castps_pd(a),
                    _mm512_castps_pd(b),
                    _mm512_castps_pd(c),
                    _mm512_castps_pd(d),
                );
                u[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
                u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
                u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
                u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
            }
            // u[4i + k]'s 128-bit block q holds column 4q + k of rows 4i..4i + 4.
            let mut v = [_mm512_setzero_ps(); L];
            for k in 0..4 {
                let (a, b, c, d) = (u[k], u[4 + k], u[8 + k], u[12 + k]);
                // Blocks 0 and 2 of a with those of b, blocks 1 and 3 likewise; c with d.
                let ab02 = _mm512_shuffle_f32x4::<0x88>(a, b);
                let ab13 = _mm512_shuffle_f32x4::<0xdd>(a, b);
                let cd02 = _mm512_shuffle_f32x4::<0x88>(c, d);
                let cd13 = _mm512_shuffle_f32x4::<0xdd>(c, d);
                v[k] = _mm512_shuffle_f32x4::<0x88>(ab02, cd02);
                v[8 + k] = _mm512_shuffle_f32x4::<0xdd>(ab02, cd02);
                v[4 + k] = _mm512_shuffle_f32x4::<0x88>(ab13, cd13);
                v[12 + k] = _mm512_shuffle_f32x4::<0xdd>(ab13, cd13);
            }
            v
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// Every block shape a caller asks for (rows and values per row from 0 to 8, rows
    /// strided): vector j holds value j of each row, zeros past the rows and values read.
    #[test]
    fn transpose8_blocks() {
        if !has_avx2_fma() {
            return;
        }
        let stride = 11;
        let src: Vec<f32> = (0..8 * stride).map(|i| i as f32 + 0.5).collect();
        for rows in 0..=8 {
            for n in 0..=8 {
                let got: [[f32; 8]; 8] = with_avx2(
                    #[inline(always)]
                    || {
                        // SAFETY: AVX2 is there (checked above); row r < 8 reads values
                        // r · stride .. + n ≤ 8, inside `src`.
                        let v =
                            unsafe { transpose8::load_transposed(src.as_ptr(), stride, rows, n) };
                        // SAFETY: an 8-lane vector is 8 f32 values.
                        v.map(|v| unsafe { std::mem::transmute::<_, [f32; 8]>(v) })
                    },
                );
                for (j, col) in got.iter().enumerate() {
                    for (r, &v) in col.iter().enumerate() {
                        let want = if r < rows && j < n {
                            src[r * stride + j]
                        } else {
                            0.0
                        };
                        assert_eq!(v, want, "{rows} rows of {n}: value {j} of row {r}");
                    }
                }
            }
        }
    }
}

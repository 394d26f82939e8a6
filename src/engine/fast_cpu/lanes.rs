//! What the slice kernels share, with no tensor library in sight (so that
//! `tools/miri.sh` can run the kernels alone): CPU feature detection, the AVX2 trampoline,
//! the clamp, the backward kernels' result.

/// Whether the CPU has AVX2 and FMA: detected once, the one check every kernel here uses.
#[cfg(target_arch = "x86_64")]
pub fn has_avx2_fma() -> bool {
    static DETECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DETECTED.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
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

/// `v` limited to `[lo, hi]`, written as compares so it vectorises (`f32::max` handles NaN
/// with extra scalar code); NaN passes through, as in PyTorch.
#[inline(always)]
pub fn clamp1(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v < lo { lo } else { v };
    if v > hi { hi } else { v }
}

/// What a convolution's backward kernel computed: the input gradient, and the weight
/// gradient with the bias gradient (each `None` when not asked for).
pub struct ConvGrads {
    pub x: Option<Vec<f32>>,
    pub weight_bias: Option<(Vec<f32>, Vec<f32>)>,
}

//! The kernels as Graft compiles them, with the smallest surroundings they need. Under Miri
//! the CPU reports no AVX2, so the portable (scalar) paths run: the ones whose unchecked reads
//! Miri can check.

/// Stand-in for `graft::graph`: the one type the depthwise kernel reads. A field that drifts
/// from Graft's `Conv` stops this crate compiling, which is the point.
pub mod graph {
    #[derive(Clone, Debug)]
    pub struct Conv {
        pub strides: [usize; 2],
        pub pads: [usize; 4],
        pub dilations: [usize; 2],
        pub groups: usize,
    }
}

// Some of its helpers (the backward kernels' result type aside) are Graft's alone.
#[allow(dead_code)]
#[path = "../../../src/engine/fast_cpu/lanes.rs"]
mod lanes;

#[cfg(target_arch = "x86_64")]
use lanes::has_avx2_fma;
pub use lanes::{Act, ConvGrads};
use lanes::{clamp1, conv_output, with_avx512};

#[path = "../../../src/engine/fast_cpu/depthwise.rs"]
pub mod depthwise;
#[path = "../../../src/engine/fast_cpu/moments.rs"]
pub mod moments;
#[path = "../../../src/engine/fast_cpu/norm.rs"]
pub mod norm;

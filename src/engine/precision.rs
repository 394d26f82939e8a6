//! How training multiplies: fp32 throughout (the default), or with the convolutions' matrix
//! products in bf16 (the 1x1s', and the dense convolutions' forward pass and weight
//! gradient; not the depthwise ones') — mixed precision, as PyTorch's autocast does it:
//! operands rounded to bf16 (8-bit mantissas), sums, weights, optimizer state and every
//! other op in fp32. On CPUs with AVX512_BF16 (`vdpbf16ps`: 32 multiply-adds an instruction
//! where an fp32 FMA does 16) the 1x1s are half of a fine-tuning step; elsewhere, and on the
//! GPU, training runs in fp32 whatever is asked (`effective` says so).
//!
//! The trainer sets the precision for the forward passes it runs (`training_with`), and a
//! plan's forward pass takes it along to the worker thread that runs its steps
//! (`Plan::forward`); each training op reads it as it runs forward (`training`) and keeps it
//! for its backward pass, which autodiff may run on another thread. Inference passes run
//! outside `training_with`, at fp32.

use serde::{Deserialize, Serialize};
use std::cell::Cell;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Every product in fp32.
    #[default]
    Fp32,
    /// The convolutions' matrix products in bf16 (a 1x1's forward, input gradient and
    /// weight gradient; a dense convolution's forward and weight gradient), with fp32 sums,
    /// where the CPU multiplies bf16.
    Bf16,
}

impl Precision {
    /// What training on this machine runs when asked for `self` on the CPU (`gpu`: false)
    /// or the GPU, and why not where that differs.
    pub fn effective(self, gpu: bool) -> (Precision, Option<&'static str>) {
        match self {
            Precision::Bf16 if gpu => (
                Precision::Fp32,
                Some("bf16 is for the CPU's 1x1 convolutions; on the GPU training runs in fp32"),
            ),
            Precision::Bf16 if !available_on_cpu() => (
                Precision::Fp32,
                Some("this CPU has no AVX512_BF16 (vdpbf16ps): training runs in fp32"),
            ),
            p => (p, None),
        }
    }
}

/// Whether this CPU multiplies bf16 (AVX512_BF16), so that [`Precision::Bf16`] runs.
pub fn available_on_cpu() -> bool {
    super::fast_cpu::bf16_available()
}

thread_local! {
    /// The precision of the training forward pass running on this thread.
    static TRAINING: Cell<Precision> = const { Cell::new(Precision::Fp32) };
}

/// Runs `f` (a training forward pass) with its ops at `precision`; the precision before it
/// again after, also when `f` panics.
pub fn training_with<R>(precision: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(Precision);
    impl Drop for Restore {
        fn drop(&mut self) {
            TRAINING.set(self.0);
        }
    }
    let _restore = Restore(TRAINING.replace(precision));
    f()
}

/// The precision of the training forward pass running on this thread.
pub fn training() -> Precision {
    TRAINING.get()
}

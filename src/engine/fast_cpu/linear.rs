//! A fully connected layer on a few rows — a classifier's Gemm at batch 1 — as dot products
//! of each input row with each row of the weight (`[o, k]`, PyTorch's Linear layout, an
//! ONNX Gemm with `transB`), blocks of outputs spread over the threads. burn's matmul ran
//! Lite0's 1280 → 1000 at batch 1 in 0.21 ms on two cores, no faster than on one: a
//! product with one row is bound by reading the weights, which every thread then shares.

use super::with_avx512;
use rayon::prelude::*;

/// Rows up to which [`forward`] is the way (each row reads all the weights again).
pub const MAX_ROWS: usize = 4;

/// Outputs per task: 64 rows of 1280 weights are 320 KB.
const BLOCK: usize = 64;

/// `alpha · x · wᵀ + beta · bias` for `x` `[n, k]` and `w` `[o, k]`: `[n, o]`.
///
/// # Panics
/// When the slices' lengths disagree with the shapes.
pub fn forward(
    xs: &[f32],
    ws: &[f32],
    bs: Option<&[f32]>,
    [n, k, o]: [usize; 3],
    alpha: f32,
    beta: f32,
) -> Vec<f32> {
    assert_eq!(xs.len(), n * k, "linear: input length");
    assert_eq!(ws.len(), o * k, "linear: weight length");
    assert!(bs.is_none_or(|b| b.len() == o), "linear: bias length");
    let mut out = vec![0.0f32; n * o];
    for (x, row) in xs
        .chunks_exact(k.max(1))
        .zip(out.chunks_exact_mut(o.max(1)))
    {
        row.par_chunks_mut(BLOCK)
            .enumerate()
            .for_each(|(block, outs)| {
                for (j, y) in outs.iter_mut().enumerate() {
                    let at = block * BLOCK + j;
                    let bias = bs.map_or(0.0, |b| beta * b[at]);
                    *y = alpha * dot(x, &ws[at * k..(at + 1) * k]) + bias;
                }
            });
    }
    out
}

/// Values summed at a time: four independent 16-lane vectors.
const LANES: usize = 64;

/// `Σ a·b` in f32 lanes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    with_avx512(
        #[inline(always)]
        || {
            let mut acc = [0.0f32; LANES];
            let whole = a.len() / LANES * LANES;
            for (ca, cb) in a[..whole]
                .chunks_exact(LANES)
                .zip(b[..whole].chunks_exact(LANES))
            {
                for t in 0..LANES {
                    acc[t] += ca[t] * cb[t];
                }
            }
            let tail: f32 = a[whole..].iter().zip(&b[whole..]).map(|(x, y)| x * y).sum();
            acc.iter().sum::<f32>() + tail
        },
    )
}

//! Strided flex tensors (transposed or sliced views, which flex makes without copying) read
//! as runs of contiguous values, so that copying one is a parallel loop of block copies.
//! ShuffleNet-v2's channel shuffle (Reshape → Transpose → Reshape) and the halves it slices
//! off for the next Concat are such views: flex copied them value by value or run by run on
//! one thread, a quarter of that network's time.

use burn::backend::flex::FlexTensor;
use burn::tensor::DType;

/// A tensor's values as `count()` runs of `len` contiguous values each, in row-major order.
pub struct Runs<'a> {
    storage: &'a [f32],
    start: usize,
    /// `(size, stride)` of each axis before the runs, outermost first.
    outer: Vec<(usize, usize)>,
    pub len: usize,
}

impl<'a> Runs<'a> {
    /// The runs of the axes from `split` on, when those axes are laid out as one row-major
    /// block and no stride is negative (a flipped view is left to flex).
    pub fn at(t: &'a FlexTensor, split: usize) -> Option<Self> {
        let layout = t.layout();
        let (shape, strides) = (layout.shape(), layout.strides());
        if t.dtype() != DType::F32 || split > shape.num_dims() || strides.iter().any(|&s| s < 0) {
            return None;
        }
        let mut len = 1usize;
        for k in (split..shape.num_dims()).rev() {
            // A size-1 axis may carry any stride: it is never stepped.
            if shape[k] != 1 && strides[k] as usize != len {
                return None;
            }
            len *= shape[k];
        }
        let outer: Vec<(usize, usize)> = (0..split)
            .map(|k| (shape[k], strides[k] as usize))
            .collect();
        let runs = Runs {
            storage: t.storage::<f32>(),
            start: layout.start_offset(),
            outer,
            len,
        };
        // The furthest value any run reaches must be in the buffer (`get` then cannot fail).
        if runs.count() > 0 && len > 0 {
            let last: usize = runs.outer.iter().map(|&(n, s)| (n - 1) * s).sum();
            if runs.start + last + len > runs.storage.len() {
                return None;
            }
        }
        Some(runs)
    }

    /// The runs of the innermost axes that are laid out contiguously.
    pub fn innermost(t: &'a FlexTensor) -> Option<Self> {
        let layout = t.layout();
        let (shape, strides) = (layout.shape(), layout.strides());
        let mut split = shape.num_dims();
        let mut len = 1usize;
        while split > 0 && (shape[split - 1] == 1 || strides[split - 1] == len as isize) {
            len *= shape[split - 1];
            split -= 1;
        }
        Self::at(t, split)
    }

    pub fn count(&self) -> usize {
        self.outer.iter().map(|&(n, _)| n).product()
    }

    /// Run `i` (`i < count()`).
    pub fn get(&self, i: usize) -> &'a [f32] {
        if self.len == 0 {
            return &[];
        }
        let mut at = self.start;
        let mut rest = i;
        for &(n, stride) in self.outer.iter().rev() {
            at += (rest % n) * stride;
            rest /= n;
        }
        &self.storage[at..at + self.len]
    }
}

/// `t`'s values in row-major order, copied run by run in parallel; `None` when `t` is
/// contiguous already or its runs are too short for block copies to beat flex's tiled
/// transpose (a full transpose has runs of one value).
pub fn to_contiguous(t: &FlexTensor) -> Option<Vec<f32>> {
    /// Shorter runs are flex's.
    const MIN_RUN: usize = 16;
    use rayon::prelude::*;
    if t.is_contiguous() {
        return None;
    }
    let runs = Runs::innermost(t)?;
    if runs.len < MIN_RUN {
        return None;
    }
    let len = runs.count() * runs.len;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(runs.len)
        // About 16 KB per task: a 7×7 plane is 49 values.
        .with_min_len((4096 / runs.len).max(1))
        .enumerate()
        .for_each(|(i, dst)| {
            dst.write_copy_of_slice(runs.get(i));
        });
    // SAFETY: each of the `count()` chunks of `len` values was written whole.
    unsafe { out.set_len(len) };
    Some(out)
}

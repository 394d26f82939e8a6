//! Joining tensors: along any axis by parallel block copies ([`concat`]), and along the
//! channels into a buffer that convolutions write their channels of in place ([`Joined`]:
//! a Concat whose parts are convolutions never copies them).

use super::columns::Dst;
use super::{
    Act, ConvOperands, PackedFilters, dense, flex_view, lanes, mm, pointwise, strided, wrap,
};
use crate::graph::Conv;
use burn::tensor::Tensor;
use rayon::prelude::*;

/// Tensors joined along `axis` by block copies, in parallel over the axes before it (flex's
/// general concatenation was a fifth of ShuffleNet-v2's time). The parts may be strided views
/// (ShuffleNet concatenates half of a shuffled tensor) as long as each is contiguous from
/// `axis` on. `None` for other tensors or parts that disagree off the axis.
pub fn concat<const D: usize>(parts: &[Tensor<D>], axis: usize) -> Option<Tensor<D>> {
    let first = parts.first()?.dims();
    if axis >= D || parts.len() < 2 {
        return None;
    }
    let mut shape = first;
    shape[axis] = 0;
    let mut flexes = Vec::with_capacity(parts.len());
    for t in parts {
        let d = t.dims();
        if (0..D).any(|k| k != axis && d[k] != first[k]) {
            return None;
        }
        shape[axis] += d[axis];
        flexes.push(flex_view(t)?);
    }
    let runs: Vec<strided::Runs> = flexes
        .iter()
        .map(|f| strided::Runs::at(f, axis))
        .collect::<Option<_>>()?;
    let outer: usize = first[..axis].iter().product();
    // Each part's block per outer index, and the output's.
    let row: usize = runs.iter().map(|r| r.len).sum();
    // Not zeroed first: DenseNet-121 joins 2.6 GB a batch of 32, and a zeroing pass over
    // the output was a third of that traffic.
    let len = outer * row;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(row.max(1))
        .enumerate()
        .for_each(|(o, dst)| {
            let mut at = 0;
            for r in &runs {
                lanes::copy_streaming(&mut dst[at..at + r.len], r.get(o));
                at += r.len;
            }
        });
    // SAFETY: the runs' lengths sum to `row`, so every value of every row was written.
    unsafe { out.set_len(len) };
    Some(wrap(out, shape))
}

/// A `[n, Σ channels, h, w]` tensor made part by part: a convolution writes its output
/// straight into its channels ([`Joined::conv`]), any other part is copied in
/// ([`Joined::copy`]). SqueezeNet's and GoogLeNet's Concats join the outputs of convolutions
/// that nothing else reads; copied, every joined value was written twice and read once more.
pub struct Joined {
    /// Room for the whole tensor; its length stays 0 until every part is written.
    data: Vec<f32>,
    n: usize,
    plane: [usize; 2],
    /// Each part's first channel and channels.
    parts: Vec<(usize, usize)>,
    written: Vec<bool>,
}

impl Joined {
    /// Room for parts of `channels` channels each (in the order they are joined), `n` images
    /// of `plane` pixels. `None` where the matrix kernel does not run or these kernels are
    /// turned off (the parts are then joined by [`concat`]), or the tensor would be empty.
    pub fn new(n: usize, plane: [usize; 2], channels: &[usize]) -> Option<Self> {
        let total: usize = channels.iter().sum();
        if !super::enabled() || !mm::available() || n * total * plane[0] * plane[1] == 0 {
            return None;
        }
        let parts = channels
            .iter()
            .scan(0, |first, &c| {
                *first += c;
                Some((*first - c, c))
            })
            .collect();
        Some(Joined {
            data: Vec::with_capacity(n * total * plane[0] * plane[1]),
            n,
            plane,
            parts,
            written: vec![false; channels.len()],
        })
    }

    /// Values per image of the joined tensor.
    fn image(&self) -> usize {
        self.parts.iter().map(|p| p.1).sum::<usize>() * self.plane[0] * self.plane[1]
    }

    /// Part `part`'s shape, when it is not written yet.
    fn unwritten(&self, part: usize) -> Option<[usize; 4]> {
        let &(_, c) = self.parts.get(part)?;
        (!self.written[part]).then_some([self.n, c, self.plane[0], self.plane[1]])
    }

    /// Where part `part`'s values go.
    fn dst(&mut self, part: usize) -> Dst {
        let first = self.parts[part].0 * self.plane[0] * self.plane[1];
        let image = self.image();
        // SAFETY: the buffer has room for `n` images of `image` values; the part's channels
        // lie within each, and no other part's do.
        unsafe { Dst::new(self.data.as_mut_ptr().add(first), image) }
    }

    /// Part `part` as `act(conv(x, weight) + bias)`, written into its channels by the 1x1 or
    /// the dense kernel. `None`, with nothing written, where neither applies (a depthwise
    /// convolution, tensors other than flex's), the part is written already, or the
    /// output's shape is not the part's.
    pub fn conv(
        &mut self,
        part: usize,
        x: &Tensor<4>,
        (weight, bias): (&Tensor<4>, Option<&Tensor<1>>),
        conv: &Conv,
        act: Act,
        packs: &PackedFilters,
    ) -> Option<()> {
        let want = self.unwritten(part)?;
        let ops = ConvOperands::new(x, weight, bias)?;
        let (xs, ws, bs) = ops.slices()?;
        let [_, _, h, w] = x.dims();
        if let Some(dims @ [n, _, co, _]) = pointwise::dims(x.dims(), weight.dims(), conv) {
            if [n, co, h, w] != want {
                return None;
            }
            let packed = packs.get(&ops.weight, 1);
            let dst = self.dst(part);
            // SAFETY: the matrix kernel runs here (checked by `new`); `dst` holds the part.
            unsafe {
                let packed = packed.as_ref().map(|p| &p[0]);
                pointwise::forward_into(xs, ws, packed, bs, dims, act, dst);
            }
        } else {
            let g = dense::Geometry::new(x.dims(), weight.dims(), conv)?;
            if [g.n, g.co, g.oh, g.ow] != want {
                return None;
            }
            let packed = packs.get(&ops.weight, conv.groups);
            let dst = self.dst(part);
            // SAFETY: as above.
            unsafe {
                let packed = packed.as_ref().map(|p| p.as_slice());
                g.forward_into(xs, ws, packed, bs, act, dst);
            }
        }
        self.written[part] = true;
        Some(())
    }

    /// Part `part` copied in from `t`. `None`, with nothing written, where the part is written
    /// already or `t`'s shape is not the part's.
    pub fn copy(&mut self, part: usize, t: &Tensor<4>) -> Option<()> {
        if self.unwritten(part)? != t.dims() {
            return None;
        }
        let (first, image) = (
            self.parts[part].0 * self.plane[0] * self.plane[1],
            self.image(),
        );
        let len = self.n * image;
        let spare = &mut self.data.spare_capacity_mut()[..len];
        let view = flex_view(t);
        match view.as_ref().and_then(|f| strided::Runs::at(f, 1)) {
            Some(runs) => spare
                .par_chunks_mut(image)
                .enumerate()
                .for_each(|(b, dst)| {
                    lanes::copy_streaming(&mut dst[first..first + runs.len], runs.get(b))
                }),
            // Another layout (or another backend's tensor): its values in order first.
            None => {
                let values = t.to_data().convert::<f32>().try_into_vec::<f32>().ok()?;
                let per_image = values.len() / self.n;
                for (dst, src) in spare
                    .chunks_exact_mut(image)
                    .zip(values.chunks_exact(per_image))
                {
                    dst[first..first + per_image].write_copy_of_slice(src);
                }
            }
        }
        self.written[part] = true;
        Some(())
    }

    /// The joined tensor once every part is written (`None` before).
    pub fn finish(mut self) -> Option<Tensor<4>> {
        if !self.written.iter().all(|&w| w) {
            return None;
        }
        let (len, channels) = (self.n * self.image(), self.parts.iter().map(|p| p.1).sum());
        // SAFETY: every part's channels of every image were written (`written`), and the
        // parts' channels make up the whole.
        unsafe { self.data.set_len(len) };
        Some(wrap(
            self.data,
            [self.n, channels, self.plane[0], self.plane[1]],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{max_diff, seq};
    use super::*;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Device, TensorData};

    fn tensor<const D: usize>(dims: [usize; D], seed: u32) -> Tensor<D> {
        let n = dims.iter().product();
        Tensor::from_data(TensorData::new(seq(n, seed), dims), &Device::flex())
    }

    /// Convolutions written in place (a 1x1, a 3x3 with padding, a strided 3x3: each image's
    /// channels a joined image apart, not the part's) and a copied strided view, against
    /// burn's convolutions and concatenation; a part written twice, a part of the wrong
    /// shape, and a tensor finished early are refused.
    #[test]
    fn joined_parts_match_burn() {
        if !mm::available() {
            return;
        }
        let (n, c, h, w) = (2, 5, 9, 7);
        let x = tensor([n, c, h, w], 1);
        let wide = tensor([n, c, 2 * h, 2 * w], 2);
        let conv = |pads, s| Conv {
            strides: [s, s],
            pads,
            dilations: [1, 1],
            groups: 1,
        };
        let one = (tensor([3, c, 1, 1], 3), tensor([3], 4), conv([0; 4], 1));
        let three = (tensor([4, c, 3, 3], 5), tensor([4], 6), conv([1; 4], 1));
        let strided = (tensor([2, c, 3, 3], 7), tensor([2], 8), conv([1; 4], 2));
        // A view: every other channel of a tensor (contiguous from its planes on).
        let view = tensor([n, 4, h, w], 9)
            .slice([0..n, 0..4, 0..h, 0..w])
            .slice([0..n, 1..3, 0..h, 0..w]);
        let act = Act::Clamp(0.0, 6.0);
        let burn_conv = |x: &Tensor<4>, (wt, b, cv): &(Tensor<4>, Tensor<1>, Conv)| {
            let pads = [(cv.pads[0], cv.pads[2]), (cv.pads[1], cv.pads[3])];
            let opts = ConvOptions::new_with_padding(cv.strides, pads, [1, 1], 1);
            conv2d(x.clone(), wt.clone(), Some(b.clone()), opts).clamp(0.0, 6.0)
        };
        let want = Tensor::cat(
            vec![
                burn_conv(&x, &one),
                view.clone(),
                burn_conv(&x, &three),
                burn_conv(&wide, &strided),
            ],
            1,
        );
        let packs = PackedFilters::default();
        let mut joined = Joined::new(n, [h, w], &[3, 2, 4, 2]).expect("the kernel runs here");
        let mut put = |part, x: &Tensor<4>, (wt, b, cv): &(Tensor<4>, Tensor<1>, Conv)| {
            joined.conv(part, x, (wt, Some(b)), cv, act, &packs)
        };
        assert!(put(0, &wide, &one).is_none(), "a part of the wrong shape");
        assert!(put(3, &wide, &strided).is_some());
        assert!(put(0, &x, &one).is_some());
        assert!(put(0, &x, &one).is_none(), "a part written twice");
        assert!(put(2, &x, &three).is_some());
        let early = Joined::new(n, [h, w], &[3, 2]).expect("runs");
        assert!(early.finish().is_none(), "finished before its parts");
        assert!(joined.copy(1, &x).is_none(), "a copy of the wrong shape");
        assert!(joined.copy(1, &view).is_some());
        let got = joined.finish().expect("every part written");
        let err = max_diff(got, want);
        assert!(err < 1e-4, "joined parts: error {err}");
    }
}

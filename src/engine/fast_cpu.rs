//! Inference kernels of Graft's own for burn's `flex` CPU backend, where flex runs an op as
//! several passes over memory and the network is memory-bound (docs/BENCHMARKS.md).
//!
//! Each entry point takes burn tensors and returns `None` (or the input back) when it does not
//! apply — another backend, an autodiff tensor, a layout it does not handle — and the caller
//! then runs burn's op. Autodiff tensors are refused (they are not plain flex primitives), so
//! training is untouched.

use crate::graph::Conv;
use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// `GRAFT_FAST_CPU=0` turns these kernels off (burn's ops run instead), to measure them.
fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("GRAFT_FAST_CPU").map_or(true, |v| v != "0"))
}

/// A float tensor's flex primitive, when it has one (a cheap reference-counted clone).
fn flex<const D: usize>(t: &Tensor<D>) -> Option<FlexTensor> {
    if !enabled() {
        return None;
    }
    let p = t.clone().try_into_primitive::<Flex>().ok()?;
    (p.dtype() == DType::F32 && p.as_slice::<f32>().is_some()).then_some(p)
}

fn wrap<const D: usize>(data: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    Tensor::from_primitive::<Flex>(FlexTensor::from_data(TensorData::new(data, shape)))
}

/// `min(max(x, lo), hi)` in one pass, in place when `x` is not shared.
pub fn clamp<const D: usize>(x: Tensor<D>, lo: f32, hi: f32) -> Tensor<D> {
    if flex(&x).is_none() {
        return x.clamp_min(lo).clamp_max(hi);
    }
    let shape = x.dims();
    let Ok(mut p) = x.try_into_primitive::<Flex>() else {
        unreachable!("checked by flex() above")
    };
    // In place when this tensor owns its whole buffer and is its whole buffer.
    let len: usize = shape.iter().product();
    if p.layout().start_offset() == 0
        && let Some(s) = p.try_storage_mut::<f32>()
        && s.len() == len
    {
        clamp_slice(s, lo, hi);
        return Tensor::from_primitive::<Flex>(p);
    }
    let mut v = p.as_slice::<f32>().map(<[f32]>::to_vec).unwrap_or_default();
    clamp_slice(&mut v, lo, hi);
    wrap(v, shape)
}

/// `v` limited to `[lo, hi]`, written as compares so it vectorises (`f32::max` handles NaN
/// with extra scalar code); NaN passes through, as in PyTorch.
#[inline(always)]
fn clamp1(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v < lo { lo } else { v };
    if v > hi { hi } else { v }
}

fn clamp_slice(s: &mut [f32], lo: f32, hi: f32) {
    s.par_chunks_mut(1 << 14).for_each(|c| {
        for v in c {
            *v = clamp1(*v, lo, hi);
        }
    });
}

/// Input, weight and (optional) bias values of a convolution.
type OperandValues<'a> = (&'a [f32], &'a [f32], Option<&'a [f32]>);

/// A convolution's input, weight and bias as flex tensors, when all of them are.
struct ConvOperands {
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
}

impl ConvOperands {
    fn new(x: &Tensor<4>, weight: &Tensor<4>, bias: Option<&Tensor<1>>) -> Option<Self> {
        Some(ConvOperands {
            x: flex(x)?,
            weight: flex(weight)?,
            bias: match bias {
                Some(b) => Some(flex(b)?),
                None => None,
            },
        })
    }

    /// Input, weight and bias values (contiguous, checked by `flex`).
    fn slices(&self) -> Option<OperandValues<'_>> {
        let bias = match &self.bias {
            Some(b) => Some(b.as_slice::<f32>()?),
            None => None,
        };
        Some((self.x.as_slice()?, self.weight.as_slice()?, bias))
    }
}

/// A depthwise convolution (one filter per channel) with its bias and a following clamp
/// (ReLU, ReLU6) in one pass over the activation: padding (asymmetric too) is added per plane
/// in a cache-sized scratch buffer, not by copying the whole activation, and there is no
/// separate bias or activation pass. `None` when this is not a depthwise convolution on flex
/// tensors.
pub fn depthwise_conv(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    conv: &Conv,
    clamp: (f32, f32),
) -> Option<Tensor<4>> {
    let [n, c, h, w] = x.dims();
    let [co, per_group, kh, kw] = weight.dims();
    if conv.groups != c || co != c || per_group != 1 || kh * kw == 0 || n * c == 0 {
        return None;
    }
    let ops = ConvOperands::new(x, weight, bias)?;
    let (xs, ws, bs) = ops.slices()?;
    let [sh, sw] = conv.strides;
    let [dh, dw] = conv.dilations;
    let [top, left, bottom, right] = conv.pads;
    let span_h = dh * (kh - 1) + 1;
    let span_w = dw * (kw - 1) + 1;
    if h + top + bottom < span_h || w + left + right < span_w {
        return None;
    }
    let oh = (h + top + bottom - span_h) / sh + 1;
    let ow = (w + left + right - span_w) / sw + 1;
    let g = Geometry {
        h,
        w,
        oh,
        ow,
        kh,
        kw,
        stride: [sh, sw],
        dilation: [dh, dw],
        pad: [top, left],
    };
    let len = n * c * oh * ow;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(oh * ow)
        .enumerate()
        .for_each_init(Vec::new, |scratch, (plane, o)| {
            let ch = plane % c;
            let input = &xs[plane * h * w..(plane + 1) * h * w];
            let filter = &ws[ch * kh * kw..(ch + 1) * kh * kw];
            let b = bs.map_or(0.0, |b| b[ch]);
            g.plane(input, filter, b, clamp, o, scratch);
        });
    // SAFETY: `plane` wrote every element of every output plane.
    unsafe { out.set_len(len) };
    Some(wrap(out, [n, c, oh, ow]))
}

/// A 1x1 convolution (stride 1, no padding, one group) as gemm tiles over the pixels, each
/// tile started from the bias and clamped while it is still in cache: flex runs the same gemm
/// but then adds the bias and clamps in two more passes over the whole activation. `None` when
/// the convolution is not of that kind or the tensors are not flex tensors.
pub fn pointwise_conv(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    conv: &Conv,
    clamp: (f32, f32),
) -> Option<Tensor<4>> {
    let [n, c, h, w] = x.dims();
    let [co, ci, kh, kw] = weight.dims();
    if (ci, kh, kw) != (c, 1, 1)
        || conv.groups != 1
        || conv.strides != [1, 1]
        || conv.pads != [0; 4]
        || n * co * h * w == 0
    {
        return None;
    }
    let ops = ConvOperands::new(x, weight, bias)?;
    let (xs, ws, bs) = ops.slices()?;
    let hw = h * w;
    // About 256 KB of output per tile: it stays in L2 from the bias fill to the clamp.
    let tile = (65_536 / co).max(64).min(hw);
    let tiles = hw.div_ceil(tile);
    // Too few tiles to keep every thread busy (a small batch of small images, deep in a
    // network): gemm splits each one across the threads instead. (Every tile packs the whole
    // weight matrix, so more, smaller tiles would cost more than they spread.)
    let parallelism = if n * tiles < rayon::current_num_threads() {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    let len = n * co * hw;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let dst = SendPtr(out.as_mut_ptr());
    (0..n * tiles).into_par_iter().for_each(|t| {
        let (b, j0) = (t / tiles, (t % tiles) * tile);
        let cols = tile.min(hw - j0);
        let base = b * co * hw + j0;
        // SAFETY: tiles are disjoint column ranges of disjoint images, so no two tasks write
        // the same element; every element of the allocation belongs to exactly one tile and
        // is written (bias fill) before gemm reads it; `out` outlives the parallel loop.
        unsafe {
            for r in 0..co {
                // Not yet initialised: written through `MaybeUninit`, never read as f32.
                let row = std::slice::from_raw_parts_mut(
                    dst.get().add(base + r * hw).cast::<MaybeUninit<f32>>(),
                    cols,
                );
                for v in row {
                    v.write(bs.map_or(0.0, |b| b[r]));
                }
            }
            gemm::gemm(
                co,
                cols,
                c,
                dst.get().add(base),
                1,
                hw as isize,
                true,
                ws.as_ptr(),
                1,
                c as isize,
                xs.as_ptr().add(b * c * hw + j0),
                1,
                hw as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
            if clamp != (f32::NEG_INFINITY, f32::INFINITY) {
                for r in 0..co {
                    let row = std::slice::from_raw_parts_mut(dst.get().add(base + r * hw), cols);
                    for v in row {
                        *v = clamp1(*v, clamp.0, clamp.1);
                    }
                }
            }
        }
    });
    // SAFETY: the loop above wrote every element (see there).
    unsafe { out.set_len(len) };
    Some(wrap(out, [n, co, h, w]))
}

/// A raw output pointer shared by parallel tasks that write disjoint elements.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: only used for disjoint writes (see `pointwise_conv`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// A method (not field access) so closures capture the whole `Send` wrapper.
    fn get(self) -> *mut f32 {
        self.0
    }
}

struct Geometry {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    kh: usize,
    kw: usize,
    stride: [usize; 2],
    dilation: [usize; 2],
    pad: [usize; 2],
}

/// Outputs computed together, held in registers across every kernel tap.
const V: usize = 8;

impl Geometry {
    /// One channel of one image. The plane is first copied into a zero-bordered scratch
    /// buffer (it fits in L2), split by column phase when the stride is s > 1 (column
    /// j*s + p goes to phase p): then every kernel tap reads a contiguous run with no bounds
    /// logic, and each output, started from the bias, accumulates all taps in registers and
    /// is clamped and written once.
    fn plane(
        &self,
        input: &[f32],
        filter: &[f32],
        bias: f32,
        clamp: (f32, f32),
        out: &mut [MaybeUninit<f32>],
        scratch: &mut Vec<f32>,
    ) {
        // The binary targets baseline x86-64 (SSE2); this loop is worth 8-wide FMA.
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { self.plane_avx2(input, filter, bias, clamp, out, scratch) };
        }
        self.plane_with::<false>(input, filter, bias, clamp, out, scratch)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn plane_avx2(
        &self,
        input: &[f32],
        filter: &[f32],
        bias: f32,
        clamp: (f32, f32),
        out: &mut [MaybeUninit<f32>],
        scratch: &mut Vec<f32>,
    ) {
        self.plane_with::<true>(input, filter, bias, clamp, out, scratch)
    }

    /// The body of [`Self::plane`], compiled once per instruction set; `FMA` is whether
    /// `mul_add` is one instruction (without it, it would be a library call).
    #[inline(always)]
    fn plane_with<const FMA: bool>(
        &self,
        input: &[f32],
        filter: &[f32],
        bias: f32,
        clamp: (f32, f32),
        out: &mut [MaybeUninit<f32>],
        scratch: &mut Vec<f32>,
    ) {
        // Wide rows take 4 vectors per step, so each tap's bookkeeping feeds 4 FMAs; narrow
        // rows (7 or 14 columns deep in a network) one.
        if self.ow >= 4 * V {
            self.rows::<FMA, 4>(input, filter, bias, clamp, out, scratch)
        } else {
            self.rows::<FMA, 1>(input, filter, bias, clamp, out, scratch)
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn rows<const FMA: bool, const U: usize>(
        &self,
        input: &[f32],
        filter: &[f32],
        bias: f32,
        clamp: (f32, f32),
        out: &mut [MaybeUninit<f32>],
        scratch: &mut Vec<f32>,
    ) {
        let (h, w) = (self.h, self.w);
        let [sh, sw] = self.stride;
        let [dh, dw] = self.dilation;
        let [top, left] = self.pad;
        let block = U * V;
        // The padded plane: rows the last output row reaches, columns the last block of
        // outputs reaches (beyond the real padding, zeros that only unused lanes read).
        let rows = ((self.oh - 1) * sh + (self.kh - 1) * dh + 1).max(top + h);
        let cols =
            ((self.ow.div_ceil(block) * block - 1) * sw + (self.kw - 1) * dw + 1).max(left + w);
        let pw = cols.div_ceil(sw);
        scratch.clear();
        scratch.resize(sw * rows * pw, 0.0);
        for (r, in_row) in input.chunks_exact(w).enumerate() {
            let pr = top + r;
            if sw == 1 {
                let at = pr * pw + left;
                scratch[at..at + w].copy_from_slice(in_row);
                continue;
            }
            // Padded column pc = left + c lands in phase pc % sw at index pc / sw.
            for p in 0..sw {
                let first = (p + sw - left % sw) % sw; // the first c with (left + c) % sw == p
                let dst_at = (p * rows + pr) * pw + (left + first) / sw;
                let dst = &mut scratch[dst_at..(p * rows + pr + 1) * pw];
                for (d, &v) in dst.iter_mut().zip(in_row.iter().skip(first).step_by(sw)) {
                    *d = v;
                }
            }
        }
        let src = scratch.as_slice();
        // Per tap: where output (row 0, column 0) reads in the scratch buffer, and its weight.
        let taps: Vec<(usize, f32)> = (0..self.kh)
            .flat_map(|ki| (0..self.kw).map(move |kj| (ki, kj)))
            .map(|(ki, kj)| {
                let pc = kj * dw;
                (
                    ((pc % sw) * rows + ki * dh) * pw + pc / sw,
                    filter[ki * self.kw + kj],
                )
            })
            .collect();
        // The furthest any read below reaches; checked once instead of at every load.
        let furthest = taps.iter().map(|t| t.0).max().unwrap_or(0)
            + (self.oh - 1) * sh * pw
            + self.ow.div_ceil(block) * block;
        assert!(furthest <= src.len(), "depthwise scratch too small");
        let (lo, hi) = clamp;
        for (r, row) in out.chunks_exact_mut(self.ow).enumerate() {
            let row_at = r * sh * pw;
            for o in (0..self.ow).step_by(block) {
                let mut acc = [[bias; V]; U];
                for &(at, wv) in &taps {
                    let at = at + row_at + o;
                    for (u, acc) in acc.iter_mut().enumerate() {
                        // SAFETY: at + u*V + V <= furthest <= src.len() (asserted above).
                        let x = unsafe { src.get_unchecked(at + u * V..at + u * V + V) };
                        for t in 0..V {
                            acc[t] = if FMA {
                                x[t].mul_add(wv, acc[t])
                            } else {
                                acc[t] + wv * x[t]
                            };
                        }
                    }
                }
                for (dst, v) in row[o..].iter_mut().zip(acc.into_iter().flatten()) {
                    dst.write(clamp1(v, lo, hi));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;

    fn seq(n: usize, seed: u32) -> Vec<f32> {
        // Deterministic values in [-1, 1).
        (0..n)
            .map(|i| {
                let v = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (v % 2000) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// The fused kernel against burn's own convolution + clamp, over the shapes networks use:
    /// strides 1 and 2, dilation, asymmetric (TensorFlow "same") padding, 3x3 and 5x5.
    #[test]
    fn depthwise_matches_burn() {
        let dev = Device::flex();
        let cases = [
            // (h, w, k, stride, dilation, pads [t, l, b, r], clamp)
            (9, 11, 3, 1, 1, [1, 1, 1, 1], (0.0, 6.0)),
            (8, 8, 3, 2, 1, [0, 0, 1, 1], (0.0, 6.0)),
            (
                10,
                7,
                5,
                2,
                1,
                [1, 2, 2, 1],
                (f32::NEG_INFINITY, f32::INFINITY),
            ),
            (12, 12, 3, 1, 2, [2, 2, 2, 2], (0.0, f32::INFINITY)),
            (5, 6, 3, 1, 1, [0, 0, 0, 0], (-0.5, 0.5)),
            // Rows of 32 or more outputs take the 4-vector path.
            (6, 45, 3, 1, 1, [1, 1, 1, 1], (0.0, 6.0)),
            (7, 70, 5, 2, 1, [1, 2, 2, 1], (0.0, 6.0)),
        ];
        for (h, w, k, s, d, pads, range) in cases {
            let (n, c) = (2, 3);
            let x =
                Tensor::<4>::from_data(TensorData::new(seq(n * c * h * w, 1), [n, c, h, w]), &dev);
            let wt = Tensor::<4>::from_data(TensorData::new(seq(c * k * k, 7), [c, 1, k, k]), &dev);
            let b = Tensor::<1>::from_data(TensorData::new(seq(c, 3), [c]), &dev);
            let conv = Conv {
                strides: [s, s],
                pads,
                dilations: [d, d],
                groups: c,
            };
            let got = depthwise_conv(&x, &wt, Some(&b), &conv, range).expect("applies");
            let opts = ConvOptions::new_with_padding(
                [s, s],
                [(pads[0], pads[2]), (pads[1], pads[3])],
                [d, d],
                c,
            );
            let want = conv2d(x, wt, Some(b), opts)
                .clamp_min(range.0)
                .clamp_max(range.1);
            assert_eq!(
                got.dims(),
                want.dims(),
                "case {h}x{w} k{k} s{s} d{d} {pads:?}"
            );
            let g: Vec<f32> = got.into_data().try_to_vec::<f32>().unwrap();
            let e: Vec<f32> = want.into_data().try_to_vec::<f32>().unwrap();
            let err = g
                .iter()
                .zip(&e)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(
                err < 1e-5,
                "case {h}x{w} k{k} s{s} d{d} {pads:?}: error {err}"
            );
        }
    }

    #[test]
    fn pointwise_matches_burn() {
        let dev = Device::flex();
        // Small and large channel counts (one tile, many tiles), with and without bias.
        for (n, c, co, h, w, bias) in [
            (2, 5, 7, 3, 4, true),
            (3, 16, 24, 20, 30, false),
            (1, 8, 2048, 6, 6, true),
        ] {
            let x =
                Tensor::<4>::from_data(TensorData::new(seq(n * c * h * w, 1), [n, c, h, w]), &dev);
            let wt = Tensor::<4>::from_data(TensorData::new(seq(co * c, 5), [co, c, 1, 1]), &dev);
            let b = bias.then(|| Tensor::<1>::from_data(TensorData::new(seq(co, 9), [co]), &dev));
            let conv = Conv {
                strides: [1, 1],
                pads: [0; 4],
                dilations: [1, 1],
                groups: 1,
            };
            let got = pointwise_conv(&x, &wt, b.as_ref(), &conv, (0.0, 6.0)).expect("applies");
            let want = conv2d(x, wt, b, ConvOptions::new([1, 1], [0, 0], [1, 1], 1))
                .clamp_min(0.0)
                .clamp_max(6.0);
            let g: Vec<f32> = got.into_data().try_to_vec::<f32>().unwrap();
            let e: Vec<f32> = want.into_data().try_to_vec::<f32>().unwrap();
            let err = g
                .iter()
                .zip(&e)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-4, "{n}x{c}->{co} {h}x{w}: error {err}");
        }
    }

    #[test]
    fn clamp_is_one_pass_and_in_place_when_unshared() {
        let dev = Device::flex();
        let x = Tensor::<2>::from_data(TensorData::new(vec![-2.0f32, 0.5, 7.0, 3.0], [2, 2]), &dev);
        let y: Vec<f32> = clamp(x, 0.0, 6.0).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(y, vec![0.0, 0.5, 6.0, 3.0]);
        // A shared tensor is copied, the other reference keeps its values.
        let x = Tensor::<1>::from_data(TensorData::new(vec![-1.0f32, 9.0], [2]), &dev);
        let keep = x.clone();
        let y: Vec<f32> = clamp(x, 0.0, 6.0).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(y, vec![0.0, 6.0]);
        assert_eq!(
            keep.into_data().try_to_vec::<f32>().unwrap(),
            vec![-1.0, 9.0]
        );
    }
}

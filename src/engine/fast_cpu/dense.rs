//! Convolutions that are neither 1x1 nor depthwise — 3x3, 5x5, 7x7, strided, grouped (the
//! stems of every network, ResNet's and VGG's bodies, GoogLeNet's towers) — on plain `f32`
//! slices in NCHW order, for inference: the input patches of a tile of output pixels are
//! unfolded (im2col) into a scratch buffer about the size of L2, and one gemm per group
//! multiplies the filters by them straight into the output, which is started from the bias
//! put through its activation while still in cache. flex unfolds the whole batch at once (a 32-image batch of
//! ResNet-18's first block is 230 MB of patches), then adds the bias and clamps in passes
//! over the whole activation.

use super::pointwise::{SendPtr, Tile, parallelism};
use super::{Act, conv_output, mm};
use crate::graph::Conv;
use rayon::prelude::*;
use std::cell::Cell;

/// Bytes of unfolded patches per tile: about L2's size, so gemm packs them from cache
/// (64 KB to 4 MB measured the same on ResNet-18 and GoogLeNet within this machine's noise).
const SCRATCH_BYTES: usize = 512 << 10;

/// The shape of one convolution these kernels run.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub n: usize,
    pub c: usize,
    h: usize,
    w: usize,
    pub co: usize,
    groups: usize,
    kh: usize,
    kw: usize,
    stride: [usize; 2],
    dilation: [usize; 2],
    /// Top and left padding (bottom and right follow from the output size).
    pad: [usize; 2],
    pub oh: usize,
    pub ow: usize,
}

impl Geometry {
    /// The geometry of `conv` on an input of `dims` with a weight of `weight_dims`, when these
    /// kernels run it: not depthwise (one input channel per group with as many groups as
    /// channels has its own kernel), not a plain 1x1 (gemm straight on the input), nothing
    /// empty.
    pub fn new(dims: [usize; 4], weight_dims: [usize; 4], conv: &Conv) -> Option<Self> {
        let [n, c, h, w] = dims;
        let [co, cg, kh, kw] = weight_dims;
        let groups = conv.groups;
        if groups == 0 || c % groups != 0 || co % groups != 0 || cg != c / groups {
            return None;
        }
        let depthwise = groups == c && cg == 1;
        let plain_1x1 =
            (kh, kw) == (1, 1) && groups == 1 && conv.strides == [1, 1] && conv.pads == [0; 4];
        if depthwise || plain_1x1 || n * c * co * kh * kw == 0 {
            return None;
        }
        let [oh, ow] = conv_output([h, w], [kh, kw], conv.strides, conv.dilations, conv.pads)?;
        Some(Geometry {
            n,
            c,
            h,
            w,
            co,
            groups,
            kh,
            kw,
            stride: conv.strides,
            dilation: conv.dilations,
            pad: [conv.pads[0], conv.pads[1]],
            oh,
            ow,
        })
    }

    /// Rows of the unfolded patches of one group: input channels × kernel taps.
    fn k(&self) -> usize {
        self.c / self.groups * self.kh * self.kw
    }

    /// `act(conv(x, w) + b)`, `[n, co, oh, ow]`. `packed`: each group's filters already
    /// packed for `mm` (an inference plan keeps them between runs), else packed here when
    /// `mm` runs.
    pub fn forward(
        &self,
        xs: &[f32],
        ws: &[f32],
        packed: Option<&[mm::PackedA]>,
        bs: Option<&[f32]>,
        act: Act,
    ) -> Vec<f32> {
        let (n, co, ohw) = (self.n, self.co, self.oh * self.ow);
        assert_eq!(xs.len(), n * self.c * self.h * self.w, "convolution: input");
        assert_eq!(ws.len(), co * self.k(), "convolution: weight");
        if let Some(bs) = bs {
            assert_eq!(bs.len(), co, "convolution: bias");
        }
        let k = self.k();
        let (cog, cg) = (co / self.groups, self.c / self.groups);
        // Graft's kernel (`mm.rs`) where the CPU has AVX2, with each group's filters packed
        // once; `gemm` elsewhere.
        let own;
        let packed = match packed {
            _ if !mm::available() => None,
            Some(p) => Some(p),
            None => {
                own = mm::PackedA::groups(ws, self.groups, cog, k);
                Some(own.as_slice())
            }
        };
        if let Some(p) = packed {
            assert!(
                p.len() == self.groups && p.iter().all(|g| [g.rows(), g.k()] == [cog, k]),
                "convolution: packed filters"
            );
        }
        // Output pixels per tile: the patches fill the scratch budget, at least a row of a
        // small map, never more than the map.
        let mut tile = (SCRATCH_BYTES / 4 / k).max(16).min(ohw);
        let want = 2 * rayon::current_num_threads();
        if packed.is_some() && n * ohw.div_ceil(tile) < want {
            // Graft's kernel does not split a tile across threads (gemm does, below):
            // smaller tiles instead, down to one strip of the kernel.
            tile = ohw.div_ceil(want.div_ceil(n)).max(mm::NR).min(ohw);
        }
        let tiles = ohw.div_ceil(tile);
        let par = parallelism(n * tiles);
        let len = n * co * ohw;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        let dst = SendPtr(out.as_mut_ptr());
        (0..n * tiles).into_par_iter().for_each(|t| {
            let (b, p0) = (t / tiles, (t % tiles) * tile);
            let cols = tile.min(ohw - p0);
            // Taken out, not borrowed: a worker waiting inside gemm's own parallel loop may
            // start another tile meanwhile, which then makes a buffer of its own.
            let mut patches = SCRATCH.take();
            patches.resize(k * cols, 0.0);
            {
                for g in 0..self.groups {
                    let x = &xs[(b * self.c + g * cg) * self.h * self.w..][..cg * self.h * self.w];
                    self.unfold(x, p0, cols, &mut patches);
                    // SAFETY: tiles are disjoint pixel ranges of disjoint images and groups
                    // write disjoint output channels, so no two tasks write the same element
                    // and every element is written by one; the weight rows of group g are
                    // `cog × k` at `g * cog * k`; the patches are `k × cols`; `out` outlives
                    // the parallel loop.
                    unsafe {
                        let bias = bs.map(|b| &b[g * cog..(g + 1) * cog]);
                        let at = dst.get().add((b * co + g * cog) * ohw + p0);
                        if let Some(packed) = &packed {
                            let out = mm::Out {
                                c: at,
                                ldc: ohw,
                                cols,
                                accumulate: false,
                            };
                            let panels = 0..packed[g].panels();
                            let patches = mm::B::Rows(patches.as_ptr(), cols);
                            mm::multiply(&packed[g], panels, patches, &out, bias, act);
                            continue;
                        }
                        let tile = Tile {
                            dst: at,
                            dst_row: ohw,
                            rows: cog,
                            cols,
                        };
                        tile.bias_gemm_act(
                            (ws.as_ptr().add(g * cog * k), k),
                            (patches.as_ptr(), cols),
                            k,
                            bias,
                            act,
                            par,
                        );
                    }
                }
            }
            SCRATCH.set(patches);
        });
        // SAFETY: the loop above wrote every element (see there).
        unsafe { out.set_len(len) };
        out
    }

    /// The patches of output pixels `p0..p0 + cols` (row-major over the output map) of one
    /// group's input planes `x`: row `(ci, ky, kx)` holds, for each pixel, the input value
    /// that tap reads, zero where it falls in the padding.
    fn unfold(&self, x: &[f32], p0: usize, cols: usize, patches: &mut [f32]) {
        let (h, w, ow) = (self.h, self.w, self.ow);
        let [sh, sw] = self.stride;
        let [dh, dw] = self.dilation;
        let [top, left] = self.pad;
        let cg = self.c / self.groups;
        let mut row = 0;
        for ci in 0..cg {
            let plane = &x[ci * h * w..(ci + 1) * h * w];
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    let dst = &mut patches[row * cols..(row + 1) * cols];
                    row += 1;
                    // Runs of pixels within one output row.
                    let mut p = p0;
                    while p < p0 + cols {
                        let (oy, ox0) = (p / ow, p % ow);
                        let run = (ow - ox0).min(p0 + cols - p);
                        let out = &mut dst[p - p0..p - p0 + run];
                        p += run;
                        let iy = (oy * sh + ky * dh) as isize - top as isize;
                        if iy < 0 || iy >= h as isize {
                            out.fill(0.0);
                            continue;
                        }
                        let src = &plane[iy as usize * w..(iy as usize + 1) * w];
                        // Input column of output column ox: ox * sw + kx * dw - left.
                        let first = (ox0 * sw + kx * dw) as isize - left as isize;
                        if sw == 1 {
                            // One copy between the zeros of the left and right padding.
                            let lo = (-first).clamp(0, run as isize) as usize;
                            let hi = (w as isize - first).clamp(lo as isize, run as isize) as usize;
                            out[..lo].fill(0.0);
                            out[hi..].fill(0.0);
                            if hi > lo {
                                let at = (first + lo as isize) as usize;
                                out[lo..hi].copy_from_slice(&src[at..at + hi - lo]);
                            }
                            continue;
                        }
                        for (o, v) in out.iter_mut().enumerate() {
                            let ix = first + (o * sw) as isize;
                            *v = if ix >= 0 && ix < w as isize {
                                src[ix as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        }
    }
}

thread_local! {
    /// Each worker's patch buffer, kept between tiles and convolutions.
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

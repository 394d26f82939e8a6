//! Max and average pooling on plain `f32` slices in NCHW order, for inference: one task per
//! plane, each output read from its window's in-bounds cells (padding is never materialised).
//! flex's pooling took 10 % of ResNet-18's forward pass for its one 3x3 max pool.

use super::{split_phases, with_avx2};
use crate::graph::Pool;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// What a pooling window makes of its cells.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Max,
    /// Divided by the window's cells inside the input and the padding (ONNX
    /// `count_include_pad = 1`), or inside the input alone.
    Average {
        count_include_pad: bool,
    },
}

/// The shape of one pooling, per plane.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub planes: usize,
    h: usize,
    w: usize,
    pub oh: usize,
    pub ow: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    /// Top, left, bottom, right.
    pads: [usize; 4],
}

/// Outputs along one axis, as ONNX and PyTorch count them: with `ceil`, a last window that
/// would start in the bottom/right padding is dropped.
fn outputs(size: usize, k: usize, s: usize, d: usize, lo: usize, hi: usize, ceil: bool) -> usize {
    let span = d * (k - 1) + 1;
    let room = size + lo + hi - span;
    let mut n = if ceil { room.div_ceil(s) } else { room / s } + 1;
    if ceil && (n - 1) * s >= size + lo {
        n -= 1;
    }
    n
}

impl Geometry {
    pub fn new(dims: [usize; 4], pool: &Pool) -> Option<Self> {
        let [n, c, h, w] = dims;
        let [kh, kw] = pool.kernel;
        let [sh, sw] = pool.strides;
        let [dh, dw] = pool.dilations;
        let [top, left, bottom, right] = pool.pads;
        if n * c * h * w * kh * kw * sh * sw * dh * dw == 0
            || h + top + bottom < dh * (kh - 1) + 1
            || w + left + right < dw * (kw - 1) + 1
        {
            return None;
        }
        Some(Geometry {
            planes: n * c,
            h,
            w,
            oh: outputs(h, kh, sh, dh, top, bottom, pool.ceil_mode),
            ow: outputs(w, kw, sw, dw, left, right, pool.ceil_mode),
            kernel: pool.kernel,
            stride: pool.strides,
            dilation: pool.dilations,
            pads: pool.pads,
        })
    }

    pub fn forward(&self, xs: &[f32], kind: Kind) -> Vec<f32> {
        let (h, w, oh, ow) = (self.h, self.w, self.oh, self.ow);
        assert_eq!(xs.len(), self.planes * h * w, "pooling: input");
        let windows = self.windows(kind);
        let len = self.planes * oh * ow;
        let mut out: Vec<f32> = Vec::with_capacity(len);
        // Planes in groups of at least 4 K values a task: GoogLeNet's 7x7 and 14x14 pools
        // have tens of thousands of planes, each a task of rayon's was mostly overhead.
        let per_task = (4096 / (h * w)).max(1);
        out.spare_capacity_mut()[..len]
            .par_chunks_mut(per_task * oh * ow)
            .zip(xs.par_chunks(per_task * h * w))
            .for_each(|(o, x)| {
                for (o, x) in o.chunks_exact_mut(oh * ow).zip(x.chunks_exact(h * w)) {
                    self.plane(x, o, kind, &windows);
                }
            });
        // SAFETY: `plane` wrote every element of every output plane (each line whole).
        unsafe { out.set_len(len) };
        out
    }

    /// Where the windows fall, the same for every plane: found once per pooling (found per
    /// plane, with a task per plane, GoogLeNet's max pools took 0.498 s where they now take
    /// 0.458, before the other changes of `passes`).
    fn windows(&self, kind: Kind) -> Windows {
        let (w, ow) = (self.w, self.ow);
        let [_, kw] = self.kernel;
        let [_, sw] = self.stride;
        let [_, dw] = self.dilation;
        let [_, left, _, right] = self.pads;
        // Per column tap: the first output column it falls inside the input for, how many
        // do, and the input column of the first.
        let col_taps = (0..kw)
            .filter_map(|t| {
                let off = t * dw; // input column of output 0's tap t, plus `left`
                let first = left.saturating_sub(off).div_ceil(sw);
                if first >= ow || first * sw + off < left || first * sw + off - left >= w {
                    return None;
                }
                let last = ((w - 1 + left - off) / sw).min(ow - 1);
                Some((first, last + 1 - first, first * sw + off - left))
            })
            .collect();
        // Each output column's window, for an average's divisor.
        let cols = match kind {
            Kind::Max => Vec::new(),
            Kind::Average { .. } => (0..ow)
                .map(|ox| Taps::new(ox * sw, kw, dw, left, w, right))
                .collect(),
        };
        Windows { col_taps, cols }
    }

    /// Pools one plane in two passes (a window's max or sum is the max or sum over its rows of
    /// the max or sum over its columns): along each input row into `ow` columns, then down
    /// the columns. Both passes run over contiguous runs, which vectorise; a 3x3 window costs
    /// 6 reads an output instead of 9.
    fn plane(&self, x: &[f32], out: &mut [MaybeUninit<f32>], kind: Kind, windows: &Windows) {
        // One copy of the passes per kind, so the inner loops hold no test of it.
        match kind {
            Kind::Max => self.passes::<true>(x, out, kind, windows),
            Kind::Average { .. } => self.passes::<false>(x, out, kind, windows),
        }
    }

    #[inline(always)]
    fn passes<const MAX: bool>(
        &self,
        x: &[f32],
        out: &mut [MaybeUninit<f32>],
        kind: Kind,
        windows: &Windows,
    ) {
        let (h, w, ow) = (self.h, self.w, self.ow);
        let [kh, _] = self.kernel;
        let [sh, sw] = self.stride;
        let [dh, _] = self.dilation;
        let [top, _, bottom, _] = self.pads;
        let start = if MAX { f32::NEG_INFINITY } else { 0.0 };
        // `f32::max`, not a compare and select: LLVM turns `*d = if v > *d { v } else { *d }`
        // into masked stores, several times slower than max + blend on AMD's cores.
        let combine = |a: f32, b: f32| if MAX { a.max(b) } else { a + b };
        if sh == 1 && sw == 1 {
            return self.unit_stride::<MAX>(x, out, kind, windows);
        }
        let Windows { col_taps, cols } = windows;
        ROWS.with_borrow_mut(|(rows, phases, _)| {
            rows.clear();
            rows.resize(h * ow, start);
            // With a stride across, each input row is first split by column phase (column x
            // at `(x % sw) · phase + x / sw`), so every tap reads a contiguous run: read one
            // value at a time, GoogLeNet's stride-2 pools were most of its pooling time.
            let phase = w.div_ceil(sw);
            phases.resize(sw * phase, start);
            with_avx2(
                #[inline(always)]
                || {
                    for y in 0..h {
                        let row = &x[y * w..(y + 1) * w];
                        let src = if sw == 1 {
                            row
                        } else {
                            split_phases(row, sw, phases);
                            &phases[..]
                        };
                        let dst = &mut rows[y * ow..(y + 1) * ow];
                        for &(o0, n, ix0) in col_taps {
                            let at = (ix0 % sw) * phase + ix0 / sw;
                            for (d, &v) in dst[o0..o0 + n].iter_mut().zip(&src[at..at + n]) {
                                *d = combine(*d, v);
                            }
                        }
                    }
                    for oy in 0..self.oh {
                        let r = Taps::new(oy * sh, kh, dh, top, h, bottom);
                        let line = &mut out[oy * ow..(oy + 1) * ow];
                        // The window's first row is written (no zeroed output to start from),
                        // the others combined into it.
                        let first = match r.inside {
                            0 => None,
                            _ => Some(&rows[r.first * ow..(r.first + 1) * ow]),
                        };
                        for (i, d) in line.iter_mut().enumerate() {
                            d.write(first.map_or(start, |row| row[i]));
                        }
                        // SAFETY: every element of the line was written just above;
                        // `MaybeUninit<f32>` has the layout of `f32`.
                        let line = unsafe { &mut *(line as *mut [MaybeUninit<f32>] as *mut [f32]) };
                        for t in 1..r.inside {
                            let y = r.first + t * dh;
                            for (d, &v) in line.iter_mut().zip(&rows[y * ow..(y + 1) * ow]) {
                                *d = combine(*d, v);
                            }
                        }
                        if let Kind::Average { count_include_pad } = kind {
                            for (d, c) in line.iter_mut().zip(cols) {
                                *d /= r.cells(c, count_include_pad);
                            }
                        }
                    }
                },
            )
        });
    }
}

impl Geometry {
    /// [`Geometry::passes`] for a stride of 1 both ways (GoogLeNet's inception pools on
    /// 14x14 and 7x7 maps): the plane is copied into rows `pw` apart with the padding's
    /// columns in place, so that each tap of each pass is one flat loop over the whole plane
    /// (a loop per row and tap ran 7 or 14 values, mostly vector tails), and the finished
    /// rows are copied out.
    #[inline(always)]
    fn unit_stride<const MAX: bool>(
        &self,
        x: &[f32],
        out: &mut [MaybeUninit<f32>],
        kind: Kind,
        windows: &Windows,
    ) {
        let (h, w, oh, ow) = (self.h, self.w, self.oh, self.ow);
        let [kh, kw] = self.kernel;
        let [dh, dw] = self.dilation;
        let [top, left, bottom, right] = self.pads;
        // A row of the input with its padding; with a stride of 1, output column ox's window
        // starts at column ox of it, so `ow = pw - (kw - 1) · dw`.
        let pw = w + left + right;
        debug_assert_eq!(ow + (kw - 1) * dw, pw, "pooling: unit-stride width");
        let start = if MAX { f32::NEG_INFINITY } else { 0.0 };
        let combine = |a: f32, b: f32| if MAX { a.max(b) } else { a + b };
        ROWS.with_borrow_mut(|(rows, bordered, columns)| {
            bordered.resize(h * pw, start);
            rows.resize(h * pw, start);
            columns.resize(oh * pw, start);
            with_avx2(
                #[inline(always)]
                || {
                    for (dst, src) in bordered.chunks_exact_mut(pw).zip(x.chunks_exact(w)) {
                        dst[..left].fill(start);
                        dst[left..left + w].copy_from_slice(src);
                        dst[left + w..].fill(start);
                    }
                    // Along the rows: rows[y · pw + ox] is row y's window at column ox (the
                    // last row's padding columns are left as they are: never read).
                    let len = h * pw - (kw - 1) * dw;
                    rows[..len].copy_from_slice(&bordered[..len]);
                    for t in 1..kw {
                        let src = &bordered[t * dw..t * dw + len];
                        for (d, &v) in rows[..len].iter_mut().zip(src) {
                            *d = combine(*d, v);
                        }
                    }
                    // Down the columns, `pw` apart: the output rows whose windows lie inside
                    // the input in one flat loop per tap, the others (at the padding) row by
                    // row.
                    let inside = |oy: usize| oy >= top && oy + (kh - 1) * dh < h + top;
                    let first = (0..oh).find(|&oy| inside(oy)).unwrap_or(oh);
                    let end = (first..oh).find(|&oy| !inside(oy)).unwrap_or(oh);
                    if first < end {
                        let span = &mut columns[first * pw..end * pw];
                        let row = |t: usize| (first + t * dh - top) * pw;
                        span.copy_from_slice(&rows[row(0)..row(0) + span.len()]);
                        for t in 1..kh {
                            for (d, &v) in span.iter_mut().zip(&rows[row(t)..]) {
                                *d = combine(*d, v);
                            }
                        }
                    }
                    for oy in (0..first).chain(end..oh) {
                        let r = Taps::new(oy, kh, dh, top, h, bottom);
                        let line = &mut columns[oy * pw..(oy + 1) * pw];
                        if r.inside == 0 {
                            line.fill(start);
                        } else {
                            line.copy_from_slice(&rows[r.first * pw..(r.first + 1) * pw]);
                        }
                        for t in 1..r.inside {
                            let y = r.first + t * dh;
                            for (d, &v) in line.iter_mut().zip(&rows[y * pw..(y + 1) * pw]) {
                                *d = combine(*d, v);
                            }
                        }
                    }
                    for (oy, (dst, src)) in out
                        .chunks_exact_mut(ow)
                        .zip(columns.chunks_exact(pw))
                        .enumerate()
                    {
                        match kind {
                            Kind::Max => {
                                dst.write_copy_of_slice(&src[..ow]);
                            }
                            Kind::Average { count_include_pad } => {
                                let r = Taps::new(oy, kh, dh, top, h, bottom);
                                for ((d, &v), c) in dst.iter_mut().zip(src).zip(&windows.cols) {
                                    d.write(v / r.cells(c, count_include_pad));
                                }
                            }
                        }
                    }
                },
            )
        });
    }
}

/// Where a pooling's windows fall along a row (see [`Geometry::windows`]).
struct Windows {
    /// Per column tap inside the input: first output column, outputs, first input column.
    col_taps: Vec<(usize, usize, usize)>,
    /// Each output column's window (averages only).
    cols: Vec<Taps>,
}

thread_local! {
    /// Each worker's buffers, kept between planes: the row pass's result, and the split input
    /// row (strided pools) or the bordered plane (unit stride), and the column pass's rows
    /// (unit stride).
    static ROWS: std::cell::RefCell<(Vec<f32>, Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new())) };
}

/// Global average or max pooling: one value per plane of `plane` values, planes several to
/// a task (EfficientNet-B0's squeeze-and-excitation pools run on 7x7 maps of over a thousand
/// channels). burn's mean over the trailing axes took 13 % of B0's batch-32 time.
pub fn global(xs: &[f32], plane: usize, kind: Kind) -> Vec<f32> {
    assert!(
        plane > 0 && xs.len().is_multiple_of(plane),
        "global pooling: input"
    );
    let per_task = (4096 / plane).max(1);
    // One value a plane: zeroing it first is negligible.
    let mut out = vec![0.0f32; xs.len() / plane];
    out.par_chunks_mut(per_task)
        .zip(xs.par_chunks(per_task * plane))
        .for_each(|(o, x)| {
            with_avx2(
                #[inline(always)]
                || {
                    for (o, p) in o.iter_mut().zip(x.chunks_exact(plane)) {
                        *o = match kind {
                            Kind::Max => reduce(p, f32::NEG_INFINITY, f32::max),
                            Kind::Average { .. } => reduce(p, 0.0, |a, b| a + b) / plane as f32,
                        };
                    }
                },
            )
        });
    out
}

/// `v` folded by `f` from `start` in 32 independent lanes (one running value would be a chain
/// of dependent operations, a quarter of what the loads allow), then across the lanes.
#[inline(always)]
fn reduce(v: &[f32], start: f32, f: impl Fn(f32, f32) -> f32) -> f32 {
    const LANES: usize = 32;
    let mut acc = [start; LANES];
    let whole = v.len() / LANES * LANES;
    for chunk in v[..whole].chunks_exact(LANES) {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = f(*a, x);
        }
    }
    let lanes = acc.into_iter().fold(start, &f);
    v[whole..].iter().fold(lanes, |a, &x| f(a, x))
}

/// A window's taps along one axis: those inside the input are `inside` taps from input
/// coordinate `first`, a dilation apart (an unbroken run: padding is only at the ends); those
/// inside input + padding number `counted` (what `count_include_pad` divides by).
struct Taps {
    first: usize,
    inside: usize,
    counted: usize,
}

impl Taps {
    /// What an average divides by for the window of these rows (`self`) and `cols`: its cells
    /// inside the input and the padding, or inside the input alone (at least 1).
    fn cells(&self, cols: &Taps, count_include_pad: bool) -> f32 {
        let n = if count_include_pad {
            self.counted * cols.counted
        } else {
            self.inside * cols.inside
        };
        n.max(1) as f32
    }

    /// The window starting at padded coordinate `start`: `k` taps `d` apart, over an axis of
    /// `size` with `lo` and `hi` padding.
    fn new(start: usize, k: usize, d: usize, lo: usize, size: usize, hi: usize) -> Self {
        let at = |t: usize| start + t * d;
        let t0 = (0..k).find(|&t| at(t) >= lo).unwrap_or(k);
        let t1 = (t0..k).find(|&t| at(t) >= lo + size).unwrap_or(k);
        Taps {
            first: if t0 < k { at(t0) - lo } else { 0 },
            inside: t1 - t0,
            counted: (0..k).filter(|&t| at(t) < lo + size + hi).count(),
        }
    }
}

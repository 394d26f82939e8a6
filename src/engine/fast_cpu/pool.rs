//! Max and average pooling on plain `f32` slices in NCHW order, for inference: planes a few
//! to a task, each pooled by flat loops over a copy bordered by its left/right padding.
//! flex's pooling took 10 % of ResNet-18's forward pass for its one 3x3 max pool.

use super::with_avx2;
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

    /// Each output column's window along a row, the same for every plane (an average's
    /// divisor); empty for max pools.
    fn windows(&self, kind: Kind) -> Windows {
        let [_, kw] = self.kernel;
        let [_, sw] = self.stride;
        let [_, dw] = self.dilation;
        let [_, left, _, right] = self.pads;
        let cols = match kind {
            Kind::Max => Vec::new(),
            Kind::Average { .. } => (0..self.ow)
                .map(|ox| Taps::new(ox * sw, kw, dw, left, self.w, right))
                .collect(),
        };
        Windows { cols }
    }

    /// Pools one plane. One copy per kind, so the inner loops hold no test of it.
    fn plane(&self, x: &[f32], out: &mut [MaybeUninit<f32>], kind: Kind, windows: &Windows) {
        match kind {
            Kind::Max => self.passes::<true>(x, out, kind, windows),
            Kind::Average { .. } => self.passes::<false>(x, out, kind, windows),
        }
    }

    /// Pools one plane in two passes (a window's max or sum is the max or sum over its rows
    /// of the max or sum over its columns), each tap of each pass one flat loop over the
    /// whole plane at a stride of 1: the plane is copied into rows `pw` apart with its
    /// left/right padding in place (used as it is where there is none), combined along the
    /// rows, then down the columns for the output rows whose windows lie inside the input
    /// (the others, at the top/bottom padding, row by row), and the outputs are picked at
    /// the pooling's strides. At stride 2 that combines four times the values an output
    /// needs, in loops of thousands of values: a loop per input row and tap ran 13–55
    /// values, mostly vector tails (SqueezeNet's three 3x3 stride-2 pools 24 → 14 ms a
    /// batch of 32, GoogLeNet's inception pools at stride 1 0.024 → 0.009 s each).
    #[inline(always)]
    fn passes<const MAX: bool>(
        &self,
        x: &[f32],
        out: &mut [MaybeUninit<f32>],
        kind: Kind,
        windows: &Windows,
    ) {
        let (h, w, oh, ow) = (self.h, self.w, self.oh, self.ow);
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.stride;
        let [dh, dw] = self.dilation;
        let [top, left, bottom, right] = self.pads;
        // A row with its padding, and past it for a ceil-mode window that starts inside but
        // ends beyond (its cells there are the combine's identity).
        let pw = (w + left + right).max((ow - 1) * sw + (kw - 1) * dw + 1);
        let start = if MAX { f32::NEG_INFINITY } else { 0.0 };
        // `f32::max`, not a compare and select: LLVM turns `*d = if v > *d { v } else { *d }`
        // into masked stores, several times slower than max + blend on AMD's cores.
        let combine = |a: f32, b: f32| if MAX { a.max(b) } else { a + b };
        // Output row `oy` from `line`, its window's combined rows (`pw` wide).
        let emit = |oy: usize, dst: &mut [MaybeUninit<f32>], line: &[f32]| match kind {
            Kind::Max if sw == 1 => {
                dst.write_copy_of_slice(&line[..ow]);
            }
            // Every other value as pairs, which vectorise (an index times a stride does not).
            Kind::Max if sw == 2 && line.len() >= 2 * ow => {
                for (d, pair) in dst.iter_mut().zip(line.chunks_exact(2)) {
                    d.write(pair[0]);
                }
            }
            Kind::Max => {
                for (ox, d) in dst.iter_mut().enumerate() {
                    d.write(line[ox * sw]);
                }
            }
            Kind::Average { count_include_pad } => {
                let r = Taps::new(oy * sh, kh, dh, top, h, bottom);
                for (ox, (d, c)) in dst.iter_mut().zip(&windows.cols).enumerate() {
                    d.write(line[ox * sw] / r.cells(c, count_include_pad));
                }
            }
        };
        ROWS.with_borrow_mut(|(rows, bordered, columns)| {
            with_avx2(
                #[inline(always)]
                || {
                    let plane = if pw == w {
                        x
                    } else {
                        bordered.resize(h * pw, start);
                        for (dst, src) in bordered.chunks_exact_mut(pw).zip(x.chunks_exact(w)) {
                            dst[..left].fill(start);
                            dst[left..left + w].copy_from_slice(src);
                            dst[left + w..].fill(start);
                        }
                        &bordered[..]
                    };
                    // Along the rows: rows[y · pw + c] is row y's window starting at padded
                    // column c (the last row's final columns are left as they are: never
                    // picked).
                    rows.resize(h * pw, start);
                    let len = h * pw - (kw - 1) * dw;
                    if kw == 1 {
                        rows[..len].copy_from_slice(&plane[..len]);
                    } else {
                        let (a, b) = (&plane[..len], &plane[dw..dw + len]);
                        for ((d, &u), &v) in rows[..len].iter_mut().zip(a).zip(b) {
                            *d = combine(u, v);
                        }
                    }
                    for t in 2..kw {
                        let src = &plane[t * dw..t * dw + len];
                        for (d, &v) in rows[..len].iter_mut().zip(src) {
                            *d = combine(*d, v);
                        }
                    }
                    // Down the columns: the output rows whose windows lie inside the input,
                    // from every padded row between the first's and the last's (`sh` apart)
                    // in one flat loop per tap.
                    let inside = |oy: usize| oy * sh >= top && oy * sh + (kh - 1) * dh < h + top;
                    // Rows wider than FLAT_COLUMNS go row by row: a flat loop over the span
                    // combines `sh` times the rows needed, which only pays for short rows.
                    let first = match sh == 1 || pw < FLAT_COLUMNS {
                        true => (0..oh).find(|&oy| inside(oy)).unwrap_or(oh),
                        false => oh,
                    };
                    let end = (first..oh).find(|&oy| !inside(oy)).unwrap_or(oh);
                    if first < end {
                        let span_len = ((end - 1 - first) * sh + 1) * pw;
                        columns.resize(span_len, start);
                        let span = &mut columns[..span_len];
                        let row = |t: usize| (first * sh + t * dh - top) * pw;
                        span.copy_from_slice(&rows[row(0)..row(0) + span_len]);
                        for t in 1..kh {
                            for (d, &v) in span.iter_mut().zip(&rows[row(t)..]) {
                                *d = combine(*d, v);
                            }
                        }
                        for oy in first..end {
                            let at = (oy - first) * sh * pw;
                            emit(oy, &mut out[oy * ow..(oy + 1) * ow], &span[at..at + pw]);
                        }
                    }
                    // The output rows at the padding, one at a time.
                    columns.resize(pw, start);
                    for oy in (0..first).chain(end..oh) {
                        let r = Taps::new(oy * sh, kh, dh, top, h, bottom);
                        let line = &mut columns[..pw];
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
                        emit(oy, &mut out[oy * ow..(oy + 1) * ow], line);
                    }
                },
            )
        });
    }
}

/// Where a pooling's windows fall along a row (see [`Geometry::windows`]).
struct Windows {
    /// Each output column's window (averages only).
    cols: Vec<Taps>,
}

/// The row width from which a strided pool's column pass runs row by row (see
/// [`Geometry::passes`]).
const FLAT_COLUMNS: usize = 64;

thread_local! {
    /// Each worker's buffers, kept between planes: the row pass's result, the bordered plane
    /// and the column pass's rows.
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

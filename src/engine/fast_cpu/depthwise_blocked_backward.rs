//! Training's gradients of the depthwise convolution by groups of [`L`] channels on narrow
//! maps (`depthwise_blocked.rs`'s layout): the weight gradient (`weight_grad_blocked`) and
//! the input gradient for strides other than 1 (`input_grad_blocked`; stride 1 runs the
//! grouped forward pass on the turned filter, `depthwise_backward.rs`).

use super::super::super::lanes;
use super::super::super::norm::{Affine, plane_grad_sums};
use super::{
    BUFFERS, Bordered, Geometry, InputMap, L, Lanes, Place, Planes, Shared, halves, transpose,
    untranspose,
};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// The smallest planes whose batch norm sums [`Geometry::input_grad_blocked`] takes: on
/// smaller ones a plane's sums cost more than the batch norm's own pass over them (Lite0's
/// 240-channel 28x28 and 672-channel 14x14 strided steps 1.3-1.8 ms a step slower, their
/// batch norms 0.1-0.4 faster; its 144-channel 56x56 one 2 ms slower, its batch norm's 3.7
/// ms pass gone).
pub(in super::super) const SUMS_FROM: usize = 1024;

/// Most taps of one phase of a strided input gradient ([`Geometry::gather_taps`]) kept in
/// registers: a 5x5 filter's at stride 2.
const PHASE_TAPS: usize = 9;

impl Geometry {
    /// The weight and bias gradients of [`Geometry::forward`] (without clamp) given its
    /// output gradient `gs`, by groups of [`L`] channels as the forward pass on narrow maps
    /// goes: `(dw [c, taps], db [c])`. Each task takes one group over every image: the
    /// group's input transposed into the bordered layout and its output gradient into
    /// pixel-major order, then every tap's sum one FMA per output pixel (two on AVX2).
    /// Plane by plane (`depthwise_backward.rs`), a 7x7 plane's bordered copy and per-row
    /// vectors of 7 of 8 lanes cost several times the sums.
    pub(in super::super) fn weight_grad_blocked(
        &self,
        xs: &[f32],
        map: Option<&InputMap>,
        gs: &[f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let (n, c, taps) = (self.n, self.c, self.taps());
        let (hw, ohw) = (self.h * self.w, self.oh * self.ow);
        assert!(
            xs.len() == n * c * hw && gs.len() == n * c * ohw,
            "depthwise gradient: operands"
        );
        let groups = c.div_ceil(L);
        // Per group: `taps` sums of L lanes, then the bias's.
        let sums: Vec<Vec<f32>> = (0..groups)
            .into_par_iter()
            .map(|g| {
                let lanes = L.min(c - g * L);
                let map = InputMap::group(map, g);
                let (mut bordered, mut grad) = BUFFERS.take();
                let mut acc = vec![0.0f32; (taps + 1) * L];
                for b in 0..n {
                    let first = b * c + g * L;
                    // The next image's planes of the group, into L2 while this one's sums
                    // run (`lanes::prefetch_l2`).
                    if b + 1 < n {
                        let next = first + c;
                        lanes::prefetch_l2(&xs[next * hw..][..lanes * hw]);
                        lanes::prefetch_l2(&gs[next * ohw..][..lanes * ohw]);
                    }
                    // Every value of `grad` is written by its transpose.
                    grad.resize(ohw * L, 0.0);
                    grad.truncate(ohw * L);
                    on_lanes!(V => {
                        let input = &xs[first * hw..][..lanes * hw];
                        let pw = self.border_group::<V>(input, map.as_ref(), &mut bordered);
                        transpose::<V>(
                            &gs[first * ohw..][..lanes * ohw],
                            ohw,
                            &mut grad,
                            Place::compact(ohw),
                        );
                        self.tap_grads::<V>(&bordered, pw, &grad, &mut acc);
                    });
                }
                BUFFERS.set((bordered, grad));
                acc
            })
            .collect();
        let (mut dw, mut db) = (vec![0.0f32; c * taps], vec![0.0f32; c]);
        for (g, acc) in sums.iter().enumerate() {
            for lane in 0..L.min(c - g * L) {
                let ch = g * L + lane;
                for t in 0..taps {
                    dw[ch * taps + t] = acc[t * L + lane];
                }
                db[ch] = acc[taps * L + lane];
            }
        }
        (dw, db)
    }

    /// The input gradient of [`Geometry::forward`] (without clamp) given its output gradient
    /// `gs`, any stride, by groups of [`L`] channels: per image and group, each input pixel's
    /// sum over the taps that read it where [`Self::gather_margins`] allows (the output
    /// gradient in a bordered pixel-major buffer, [`Self::gather_taps`]), else each output's
    /// gradient vector times each tap's filter vector added into a bordered pixel-major
    /// buffer where that tap read ([`Self::scatter_taps`]); the map then transposed back
    /// into planes. Plane by plane (`input_grad_scatter`), a stride-2 7x7 map's rows of 7
    /// values cost their bookkeeping many times over.
    ///
    /// With `norm` (the batch norm joined before the convolution, and its input `xs`), also
    /// each plane's `norm::plane_grad_sums` (plane `b · c + ch`) on planes of [`SUMS_FROM`]
    /// values or more, taken as a group's planes are written, while they are in cache: the
    /// batch norm's backward pass then makes no pass of its own to sum them (Lite0's
    /// 144-channel 56x56 block read 116 MB for them).
    pub(in super::super) fn input_grad_blocked(
        &self,
        ws: &[f32],
        gs: &[f32],
        norm: Option<(&[f32], &Affine)>,
    ) -> (Vec<f32>, Option<Vec<(f64, f64)>>) {
        let (n, c) = (self.n, self.c);
        let (h, w, hw, ohw) = (self.h, self.w, self.h * self.w, self.oh * self.ow);
        assert!(
            gs.len() == n * c * ohw,
            "depthwise gradient: output gradient"
        );
        let grouped = self.grouped(ws, None);
        let (taps, [top, left]) = (grouped.taps, self.pad);
        let Bordered { rows, pw } = self.bordered();
        let gather = self.gather_margins();
        let groups = c.div_ceil(L);
        let len = n * c * hw;
        let mut dx: Vec<f32> = Vec::with_capacity(len);
        let dst: Planes = Shared(dx.as_mut_ptr().cast());
        let norm = norm.filter(|_| hw >= SUMS_FROM);
        let mut sums = vec![(0.0f64, 0.0f64); if norm.is_some() { n * c } else { 0 }];
        let sums_dst = Shared(sums.as_mut_ptr());
        // The batch norm's sums over the group's planes, just written.
        let plane_sums = |first: usize, lanes: usize, planes: &[MaybeUninit<f32>]| {
            let Some((xs, f)) = norm else { return };
            for lane in 0..lanes {
                let plane = first + lane;
                // SAFETY: `untranspose` wrote the group's planes whole; `MaybeUninit<f32>` has
                // the layout of `f32`. Slot `plane` is this task's alone (its group's
                // channels of its image).
                let (dz, slot) = unsafe {
                    (
                        &*(&planes[lane * hw..(lane + 1) * hw] as *const [MaybeUninit<f32>]
                            as *const [f32]),
                        &mut *sums_dst.get().add(plane),
                    )
                };
                *slot = plane_grad_sums(dz, &xs[plane * hw..(plane + 1) * hw], f, plane % c);
            }
        };
        (0..n * groups).into_par_iter().for_each(|task| {
            let (b, g) = (task / groups, task % groups);
            let (first, lanes) = (b * c + g * L, L.min(c - g * L));
            let filters = &grouped.filters[g * taps * L..(g + 1) * taps * L];
            let (mut bordered, mut grad) = BUFFERS.take();
            // SAFETY: task (b, g) writes planes `first..first + lanes` of `dx` (the group's
            // channels of image b), which no other task does; together they cover `dx`'s
            // `len` values, and `dx` outlives the loop.
            let planes =
                unsafe { std::slice::from_raw_parts_mut(dst.get().add(first * hw), lanes * hw) };
            // The next task's output gradient follows this one's: into L2 meanwhile.
            let next = (first + lanes) * ohw;
            lanes::prefetch_l2(&gs[next.min(gs.len())..(next + L * ohw).min(gs.len())]);
            if let Some(margins) = gather {
                on_lanes!(V => {
                    let g = &gs[first * ohw..][..lanes * ohw];
                    self.border_grad::<V>(g, margins, &mut bordered);
                    self.gather_taps::<V>(&bordered, margins, filters, &mut grad);
                    untranspose::<V>(&grad, hw, planes);
                });
                plane_sums(first, lanes, &*planes);
                BUFFERS.set((bordered, grad));
                return;
            }
            bordered.clear();
            bordered.resize(rows * pw * L, 0.0);
            grad.clear();
            grad.resize(ohw.max(hw) * L, 0.0);
            on_lanes!(V => {
                transpose::<V>(
                    &gs[first * ohw..][..lanes * ohw],
                    ohw,
                    &mut grad,
                    Place::compact(ohw),
                );
                self.scatter_taps::<V>(&grad, filters, pw, &mut bordered);
                // The interior, row by row, into `grad` as a compact pixel-major map.
                for y in 0..h {
                    let from = ((top + y) * pw + left) * L;
                    grad[y * w * L..(y + 1) * w * L]
                        .copy_from_slice(&bordered[from..from + w * L]);
                }
                untranspose::<V>(&grad, hw, planes);
            });
            plane_sums(first, lanes, &*planes);
            BUFFERS.set((bordered, grad));
        });
        // SAFETY: the tasks wrote every plane (`untranspose` writes all of its planes).
        unsafe { dx.set_len(len) };
        (dx, norm.map(|_| sums))
    }

    /// Where the input gradient goes by phases ([`Self::gather_taps`]), the zero margins of
    /// the output gradient's bordered copy: rows above and below, columns left and right.
    /// None without dilation, at a stride of 1 (the forward pass of the turned filter), or
    /// with more taps to a phase than [`PHASE_TAPS`].
    fn gather_margins(&self) -> Option<[usize; 4]> {
        let ([sh, sw], [kh, kw], [top, left]) = (self.stride, [self.kh, self.kw], self.pad);
        let fits = self.dilation == [1, 1]
            && sh >= 2
            && sw >= 2
            && kh.div_ceil(sh) * kw.div_ceil(sw) <= PHASE_TAPS;
        // An input row r (counted with the padding) meets output rows (r - ki) / sh: from
        // (kh - 1) / sh above the first to the last input row's, rows below the last.
        let below = ((self.h - 1 + top) / sh).saturating_sub(self.oh - 1);
        let right = ((self.w - 1 + left) / sw).saturating_sub(self.ow - 1);
        fits.then(|| [(kh - 1).div_ceil(sh), below, (kw - 1).div_ceil(sw), right])
    }

    /// The output gradient's planes (`g`, at most [`L`]) pixel-major into `bordered` within
    /// [`Self::gather_margins`]' zero margins.
    #[inline(always)]
    fn border_grad<V: Lanes>(
        &self,
        g: &[f32],
        [above, below, left, right]: [usize; 4],
        bordered: &mut Vec<f32>,
    ) {
        let (oh, ow) = (self.oh, self.ow);
        let (rows, pw) = (oh + above + below, ow + left + right);
        bordered.resize(rows * pw * L, 0.0);
        bordered.truncate(rows * pw * L);
        super::zero_border(bordered, [rows, pw], [above, left], [oh, ow]);
        let place = Place {
            w: ow,
            pw,
            origin: above * pw + left,
        };
        transpose::<V>(g, oh * ow, bordered, place);
    }

    /// The input gradient, pixel-major into `out` (`h · w` pixels, every one written), from
    /// the output gradient as [`Self::border_grad`] lays it out: each input pixel sums the
    /// taps that read it, a phase's (input rows and columns alike modulo the stride) taps
    /// kept in registers while its pixels of a row go by, four at a time, and each pixel
    /// stored once. [`Self::scatter_taps`] adds each product into memory (a load and a
    /// store a tap): Lite0's strided input gradients alone took 6 % (672@14x14 5x5) to 26 %
    /// (144@56x56 5x5) less time this way.
    #[inline(always)]
    fn gather_taps<V: Lanes>(
        &self,
        gb: &[f32],
        [above, _, left_m, right_m]: [usize; 4],
        filters: &[f32],
        out: &mut Vec<f32>,
    ) {
        /// Pixels of a row in flight.
        const P: usize = 4;
        let (h, w, kh, kw) = (self.h, self.w, self.kh, self.kw);
        let ([sh, sw], [top, left]) = (self.stride, self.pad);
        let gpw = self.ow + left_m + right_m;
        out.resize(h * w * L, 0.0);
        out.truncate(h * w * L);
        assert!(filters.len() == kh * kw * L, "depthwise gradient: filters");
        // The furthest pixel any read reaches: the last input pixel's phase, tap (py, px).
        let last = ((h - 1 + top) / sh + above) * gpw + (w - 1 + left) / sw + left_m;
        assert!(
            (last + 1) * L <= gb.len(),
            "depthwise gradient: bordered gradient"
        );
        for half in halves::<V>() {
            for iy in 0..h {
                let (a, py) = ((iy + top) / sh, (iy + top) % sh);
                for px in 0..sw {
                    // The phase's first input column and its taps: rows ki = py, py + sh, …
                    // read output row a - (ki - py) / sh, columns kj = px, px + sw, … output
                    // column b - (kj - px) / sw (b the pixel's (ix + left) / sw).
                    let ix0 = (px + sw - left % sw) % sw;
                    if ix0 >= w {
                        continue;
                    }
                    // SAFETY: inside `on_lanes!`.
                    let mut f = [unsafe { V::zero() }; PHASE_TAPS];
                    let mut at = [0usize; PHASE_TAPS];
                    let mut nt = 0;
                    for ki in (py..kh).step_by(sh) {
                        for kj in (px..kw).step_by(sw) {
                            // SAFETY: tap (ki, kj) < kh · kw filters (asserted above); at most
                            // PHASE_TAPS taps a phase (`gather_margins`).
                            f[nt] =
                                unsafe { V::load(filters.as_ptr().add((ki * kw + kj) * L + half)) };
                            // Row a - (ki - py) / sh + above ≥ 0 (above ≥ (kh - 1) / sh up); the
                            // column offset - (kj - px) / sw + left_m likewise ≥ 0.
                            at[nt] =
                                ((a + above - (ki - py) / sh) * gpw + left_m - (kj - px) / sw) * L;
                            nt += 1;
                        }
                    }
                    let (b0, count) = ((ix0 + left) / sw, (w - ix0).div_ceil(sw));
                    let mut i = 0;
                    while i < count {
                        let n = P.min(count - i);
                        // SAFETY (intrinsics): inside `on_lanes!`; pixel b0 + i + j's reads lie at
                        // or before `last` (asserted above), its store inside `out` (h · w
                        // pixels); lanes half..half + N within a pixel's L.
                        unsafe {
                            let mut acc = [V::zero(); P];
                            for t in 0..PHASE_TAPS {
                                if t < nt {
                                    for (j, acc) in acc.iter_mut().enumerate() {
                                        if j < n {
                                            let at = at[t] + (b0 + i + j) * L + half;
                                            let v = V::load(gb.as_ptr().add(at));
                                            *acc = V::fmadd(v, f[t], *acc);
                                        }
                                    }
                                }
                            }
                            for (j, acc) in acc.iter().enumerate().take(n) {
                                let ix = ix0 + (i + j) * sw;
                                V::store(out.as_mut_ptr().add((iy * w + ix) * L + half), *acc);
                            }
                        }
                        i += n;
                    }
                }
            }
        }
    }

    /// Adds each output's gradient (`grad`, pixel-major) times each tap's filter vector into
    /// `bordered` (laid out as [`Geometry::group`]'s input, `pw` pixels a row) where the tap
    /// read its input.
    #[inline(always)]
    fn scatter_taps<V: Lanes>(
        &self,
        grad: &[f32],
        filters: &[f32],
        pw: usize,
        bordered: &mut [f32],
    ) {
        let (oh, ow, kh, kw) = (self.oh, self.ow, self.kh, self.kw);
        let [sh, sw] = self.stride;
        let [dh, dw] = self.dilation;
        let furthest =
            (((oh - 1) * sh + (kh - 1) * dh) * pw + (ow - 1) * sw + (kw - 1) * dw + 1) * L;
        assert!(
            furthest <= bordered.len() && grad.len() >= oh * ow * L && filters.len() == kh * kw * L,
            "depthwise gradient: group buffers"
        );
        for half in halves::<V>() {
            for oy in 0..oh {
                for ox in 0..ow {
                    // SAFETY (intrinsics): inside `on_lanes!`; reads of `grad` and `filters` and
                    // the writes into `bordered` lie inside them (lengths and `furthest`
                    // asserted above; lanes half..half + N within a pixel's L).
                    unsafe {
                        let gv = V::load(grad.as_ptr().add((oy * ow + ox) * L + half));
                        let base = bordered
                            .as_mut_ptr()
                            .add((oy * sh * pw + ox * sw) * L + half);
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let f = V::load(filters.as_ptr().add((ki * kw + kj) * L + half));
                                let d = base.add((ki * dh * pw + kj * dw) * L);
                                V::store(d, V::fmadd(gv, f, V::load(d)));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds to `acc` (`[taps + 1][L]`) each tap's Σ over output pixels of the input value it
    /// read times the output gradient, and (last) Σ of the output gradient: `bordered` as
    /// [`Geometry::group`] lays it out (`pw` pixels a row), `grad` pixel-major (`oh · ow`
    /// pixels of [`L`] lanes). Taps go four at a time, so each gradient vector loaded feeds
    /// four FMAs — where [`Self::tap_grads_sliding`] does not take the geometry.
    #[inline(always)]
    fn tap_grads<V: Lanes>(&self, bordered: &[f32], pw: usize, grad: &[f32], acc: &mut [f32]) {
        // A plain match, as in `sums`: the const-generic kernels inline into this
        // `target_feature` context.
        if match (self.kw, self.stride[1]) {
            (3, 1) => self.tap_grads_sliding::<V, 3, 1>(bordered, pw, grad, acc),
            (5, 1) => self.tap_grads_sliding::<V, 5, 1>(bordered, pw, grad, acc),
            (3, 2) => self.tap_grads_sliding::<V, 3, 2>(bordered, pw, grad, acc),
            (5, 2) => self.tap_grads_sliding::<V, 5, 2>(bordered, pw, grad, acc),
            _ => false,
        } {
            return;
        }
        const T: usize = 4;
        let (oh, ow, kh, kw, taps) = (self.oh, self.ow, self.kh, self.kw, self.taps());
        let [sh, sw] = self.stride;
        let [dh, dw] = self.dilation;
        // As in `sums`: the furthest value a read reaches, checked once.
        let furthest =
            (((oh - 1) * sh + (kh - 1) * dh) * pw + (ow - 1) * sw + (kw - 1) * dw + 1) * L;
        assert!(
            furthest <= bordered.len() && grad.len() == oh * ow * L && acc.len() == (taps + 1) * L,
            "depthwise gradient: group buffers"
        );
        // Where each tap's value for output pixel (0, 0) lies; the unused taps of the last
        // four read offset 0 and are not kept.
        let offsets: Vec<usize> = (0..taps.next_multiple_of(T))
            .map(|t| match t < taps {
                true => ((t / kw) * dh * pw + (t % kw) * dw) * L,
                false => 0,
            })
            .collect();
        for half in halves::<V>() {
            for (quad, at) in offsets.chunks_exact(T).enumerate() {
                // SAFETY (all intrinsics below): inside `on_lanes!`; `acc` holds `taps + 1`
                // vectors of L lanes and this quad's taps t < taps are inside it; every read of
                // `bordered` lies before `furthest` and of `grad` inside it (asserted above;
                // lanes half..half + N within a pixel's L).
                unsafe {
                    let mut sums = [V::zero(); T];
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let g = V::load(grad.as_ptr().add((oy * ow + ox) * L + half));
                            let base = bordered.as_ptr().add((oy * sh * pw + ox * sw) * L + half);
                            for (sum, &at) in sums.iter_mut().zip(at) {
                                *sum = V::fmadd(V::load(base.add(at)), g, *sum);
                            }
                        }
                    }
                    for (i, sum) in sums.iter().enumerate() {
                        let t = quad * T + i;
                        if t < taps {
                            let a = acc.as_mut_ptr().add(t * L + half);
                            V::store(a, V::add(V::load(a), *sum));
                        }
                    }
                }
            }
        }
        add_bias_sums::<V>(grad, acc);
    }

    /// [`Self::tap_grads`] for a stride of `SW` across, `KW` taps a row (no dilation across)
    /// and rows of a multiple of `XT` outputs: per row of taps and tile, the tile's `XT`
    /// gradient vectors and the `(XT - 1) · SW + KW` input vectors they meet are loaded once
    /// for `KW · XT` FMAs into `KW` sums, where four taps at a time loaded an input for
    /// every FMA (5 loads per 4 FMAs). Alone, Lite0's 5x5 weight gradients at stride 1 on
    /// 7x7 to 28x28 maps took 20 % less time, its 3x3 on 14x14 8 %, its strided ones 9-15 %.
    /// False (nothing done) where the geometry is not of that kind.
    #[inline(always)]
    fn tap_grads_sliding<V: Lanes, const KW: usize, const SW: usize>(
        &self,
        bordered: &[f32],
        pw: usize,
        grad: &[f32],
        acc: &mut [f32],
    ) -> bool {
        /// Outputs a tile: rows of 7, 14, 28 and 56 outputs (Lite0's, MobileNet's) whole.
        const XT: usize = 7;
        let (oh, ow, kh, taps) = (self.oh, self.ow, self.kh, self.taps());
        let [sh, sw] = self.stride;
        let [dh, dw] = self.dilation;
        if (self.kw, sw, dw) != (KW, SW, 1) || !ow.is_multiple_of(XT) {
            return false;
        }
        let furthest = (((oh - 1) * sh + (kh - 1) * dh) * pw + (ow - 1) * SW + KW) * L;
        assert!(
            furthest <= bordered.len() && grad.len() == oh * ow * L && acc.len() == (taps + 1) * L,
            "depthwise gradient: group buffers"
        );
        for half in halves::<V>() {
            for ki in 0..kh {
                // SAFETY (all intrinsics below): inside `on_lanes!`; the tiles cover whole rows
                // (`ow` a multiple of XT), so every read of `grad` is inside it and of `bordered`
                // before `furthest` (asserted above; lanes half..half + N within a pixel's L);
                // `acc` holds `taps + 1` vectors of L lanes.
                unsafe {
                    let mut sums = [V::zero(); KW];
                    for oy in 0..oh {
                        let row = bordered.as_ptr().add((oy * sh + ki * dh) * pw * L + half);
                        for ox in (0..ow).step_by(XT) {
                            let g: [V; XT] = std::array::from_fn(|x| {
                                V::load(grad.as_ptr().add((oy * ow + ox + x) * L + half))
                            });
                            for (kj, sum) in sums.iter_mut().enumerate() {
                                for (x, g) in g.iter().enumerate() {
                                    let v = V::load(row.add(((ox + x) * SW + kj) * L));
                                    *sum = V::fmadd(v, *g, *sum);
                                }
                            }
                        }
                    }
                    for (kj, sum) in sums.iter().enumerate() {
                        let a = acc.as_mut_ptr().add((ki * KW + kj) * L + half);
                        V::store(a, V::add(V::load(a), *sum));
                    }
                }
            }
        }
        add_bias_sums::<V>(grad, acc);
        true
    }
}

/// Adds Σ over the pixels of `grad` (pixel-major, [`L`] lanes a pixel) to `acc`'s last
/// [`L`] values: the bias gradient's sums of [`Geometry::tap_grads`]. Inside `on_lanes!`.
#[inline(always)]
fn add_bias_sums<V: Lanes>(grad: &[f32], acc: &mut [f32]) {
    assert!(
        acc.len() >= L && grad.len().is_multiple_of(L),
        "depthwise gradient: bias sums"
    );
    let last = acc.len() - L;
    for half in halves::<V>() {
        // SAFETY: inside `on_lanes!`; the reads stay inside `grad`, the last L values of
        // `acc` inside it (asserted above; lanes half..half + N within L).
        unsafe {
            let mut sum = V::zero();
            for p in grad.chunks_exact(L) {
                sum = V::add(sum, V::load(p.as_ptr().add(half)));
            }
            let a = acc.as_mut_ptr().add(last + half);
            V::store(a, V::add(V::load(a), sum));
        }
    }
}

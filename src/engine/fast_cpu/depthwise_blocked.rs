//! Depthwise convolutions on narrow maps (the 7x7 and 14x14 maps deep in MobileNet and
//! EfficientNet) with channels in the vector lanes — the forward pass here, and training's
//! input gradient for strides other than 1 and weight gradient in
//! `depthwise_blocked_backward.rs`: [`L`] channels of an image are copied into one buffer,
//! pixel-major with each pixel's channels side by side and the padding in place, so that
//! every kernel tap of every output is one whole vector however narrow the map (two on AVX2,
//! `depthwise_group_lanes.rs`). Plane by plane (`Geometry::plane`), a 7-column row fills 7
//! of 8 lanes at best, and the bordered copy and the bookkeeping per row cost as much as the
//! sums.

use super::super::lanes;
use super::super::moments::lane_moments;
use super::{Act, Geometry, InputMap, clamp_then};

/// Runs `$body` with `$v` naming the groups' vector type ([`Lanes`]) and compiled for it:
/// AVX-512's where the CPU has it, else AVX2's (`by_channel_groups` is false without AVX2).
macro_rules! on_lanes {
    ($v:ident => $body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if lanes::has_avx512() {
                lanes::with_avx512(
                    #[inline(always)]
                    || {
                        type $v = std::arch::x86_64::__m512;
                        $body
                    },
                )
            } else {
                lanes::with_avx2(
                    #[inline(always)]
                    || {
                        type $v = std::arch::x86_64::__m256;
                        $body
                    },
                )
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("by_channel_groups is false off x86-64")
    }};
}

/// Training's gradients by groups (`depthwise_blocked_backward.rs`).
#[path = "depthwise_blocked_backward.rs"]
mod backward;
/// The groups' vectors at either width (`depthwise_group_lanes.rs`).
#[path = "depthwise_group_lanes.rs"]
mod group_lanes;
use group_lanes::{Lanes, halves, transpose, untranspose};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Channels per group: one AVX-512 vector, two AVX2 ones.
pub const L: usize = 16;
/// Outputs along a row summed together, so each weight vector loaded feeds `X` FMAs (where
/// [`Geometry::sliding`] does not apply).
const X: usize = 4;

thread_local! {
    /// Each thread's buffers: the group's bordered input and its outputs, both pixel-major.
    static BUFFERS: std::cell::Cell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

/// An output pointer shared by the tasks, which write disjoint parts (`pointwise::SendPtr`'s
/// twin: this file also compiles in `tools/miri`, without that one).
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: tasks write disjoint parts through it (see `forward_blocked`).
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// A method (not field access) so closures capture the whole `Send` wrapper.
    fn get(self) -> *mut T {
        self.0
    }
}

/// Output planes shared by the tasks.
type Planes = Shared<MaybeUninit<f32>>;

/// A depthwise convolution's filters tap-major per group of [`L`] channels (`[group][tap]
/// [lane]`) and its biases per group; lanes past the last channel hold zeros (their sums are
/// never written).
pub struct Grouped {
    filters: Vec<f32>,
    biases: Vec<f32>,
    taps: usize,
}

/// A group's [`InputMap`]: per lane scale and shift (zeros past the last channel: those
/// lanes are never stored), and the clamp.
pub(super) struct GroupMap {
    scale: [f32; L],
    shift: [f32; L],
    clamp: (f32, f32),
}

impl InputMap {
    pub(super) fn group(map: Option<&Self>, g: usize) -> Option<GroupMap> {
        let m = map?;
        let (mut scale, mut shift) = ([0.0; L], [0.0; L]);
        let chs = g * L..((g + 1) * L).min(m.scale.len());
        scale[..chs.len()].copy_from_slice(&m.scale[chs.clone()]);
        shift[..chs.len()].copy_from_slice(&m.shift[chs]);
        Some(GroupMap {
            scale,
            shift,
            clamp: m.clamp,
        })
    }
}

/// Where a group's input sits in its buffer: `rows` rows of `pw` pixels of [`L`] lanes.
struct Bordered {
    rows: usize,
    pw: usize,
}

impl Geometry {
    /// Whether the forward pass goes by groups of channels: maps whose rows fill few vectors
    /// (plane by plane, 4 rows of 1 vector a tile), on CPUs with AVX2 (whose 8 × 8 register
    /// transposes, as AVX-512's 16 × 16 ones, make the copies in and out cheap; scalar
    /// copies cost what they save). Not, where `depthwise_wide.rs` runs (AVX-512), strided
    /// rows of 24 outputs or more, which two 16-lane vectors cover well enough that
    /// `depthwise_wide.rs` plane by plane costs less than the transposes (a stride-2 map is
    /// four times its output: Lite0's 56x56 → 28x28 5x5 0.185 → 0.145 ms at batch 1; on 14
    /// outputs and fewer the groups stay faster).
    pub fn by_channel_groups(&self) -> bool {
        self.grads_by_channel_groups()
            && !(self.wide_kernel() && self.stride[0] == 2 && self.ow >= 24)
    }

    /// Whether training's gradients (other than the stride-1 input gradient, which is a
    /// forward pass) go by groups of channels: maps whose rows fill few 8-lane vectors, on
    /// CPUs with AVX2 — strided rows of 24 outputs too, whose plane-by-plane gradients
    /// (8 lanes, scattered) are slower (with AVX-512, Lite0's 56x56 → 28x28 5x5: 0.136
    /// against 0.185 s over 10 fine-tuning steps).
    pub fn grads_by_channel_groups(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return self.ow < 4 * super::V && lanes::has_avx2_fma();
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// The filters and biases as the groups read them (see [`Grouped`]).
    pub fn grouped(&self, ws: &[f32], bs: Option<&[f32]>) -> Grouped {
        let (c, taps) = (self.c, self.taps());
        assert_eq!(ws.len(), c * taps, "depthwise: weight length");
        assert!(bs.is_none_or(|b| b.len() == c), "depthwise: bias length");
        let groups = c.div_ceil(L);
        let mut filters = vec![0.0f32; groups * taps * L];
        for (ch, filter) in ws.chunks_exact(taps).enumerate() {
            for (t, &v) in filter.iter().enumerate() {
                filters[((ch / L) * taps + t) * L + ch % L] = v;
            }
        }
        let mut biases = vec![0.0f32; groups * L];
        if let Some(bs) = bs {
            biases[..c].copy_from_slice(bs);
        }
        Grouped {
            filters,
            biases,
            taps,
        }
    }

    /// Channels `g · L ..` of one image (`input`: their planes, at most [`L`]) into `planes`
    /// (as many output planes), every value written; with `moments` (one per plane), each
    /// plane's `moments::plane_moments`, summed from the group's pixel-major output while it
    /// is in cache (`moments::lane_moments`).
    #[allow(clippy::too_many_arguments)]
    pub fn group_of(
        &self,
        grouped: &Grouped,
        g: usize,
        input: &[f32],
        map: Option<&InputMap>,
        act: Act,
        planes: &mut [MaybeUninit<f32>],
        moments: Option<&mut [(f64, f64)]>,
    ) {
        let (hw, ohw, taps) = (self.h * self.w, self.oh * self.ow, grouped.taps);
        let lanes = input.len() / hw;
        assert!(
            lanes <= L && g * L + lanes <= self.c && input.len() == lanes * hw,
            "depthwise: a group's input"
        );
        assert_eq!(planes.len(), lanes * ohw, "depthwise: a group's output");
        assert!(
            moments.as_ref().is_none_or(|m| m.len() == lanes),
            "depthwise: a group's moments"
        );
        let filters = &grouped.filters[g * taps * L..(g + 1) * taps * L];
        let bias = &grouped.biases[g * L..(g + 1) * L];
        let map = InputMap::group(map, g);
        let (mut bordered, mut sums) = BUFFERS.take();
        on_lanes!(V => {
            let (map, bordered) = (map.as_ref(), &mut bordered);
            self.group::<V>(input, map, filters, bias, act, planes, bordered, &mut sums);
            if let Some(moments) = moments {
                lane_moments::<L>(&sums, moments);
            }
        });
        BUFFERS.set((bordered, sums));
    }

    /// [`Geometry::forward`] by groups of [`L`] channels (see the module's doc): `out` is
    /// `[n, c, oh, ow]`, every value written; with `moments`, each plane's
    /// (`moments::plane_moments`, plane `b · c + ch`) taken from its group's pixel-major
    /// output as the group finishes ([`Self::group_of`]), else none. Planes read back one
    /// by one cost a horizontal sum each, as much as a 7x7 plane's values.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward_blocked(
        &self,
        xs: &[f32],
        ws: &[f32],
        bs: Option<&[f32]>,
        act: Act,
        map: Option<&InputMap>,
        out: &mut [MaybeUninit<f32>],
        moments: bool,
    ) -> Vec<(f64, f64)> {
        let (n, c) = (self.n, self.c);
        let (hw, ohw) = (self.h * self.w, self.oh * self.ow);
        self.check_operands(xs, ws, bs, None);
        assert_eq!(out.len(), self.output_len(), "depthwise: output length");
        let grouped = self.grouped(ws, bs);
        let groups = c.div_ceil(L);
        let dst: Planes = Shared(out.as_mut_ptr());
        let mut sums = vec![(0.0, 0.0); if moments { n * c } else { 0 }];
        let sums_dst = Shared(sums.as_mut_ptr());
        (0..n * groups).into_par_iter().for_each(|task| {
            let (b, g) = (task / groups, task % groups);
            let (first, lanes) = (b * c + g * L, L.min(c - g * L));
            // SAFETY: task (b, g) writes planes `first..first + lanes` of `out` (the group's
            // channels of image b), which no other task does; together they cover `out`
            // (length asserted above), which outlives the loop.
            let planes =
                unsafe { std::slice::from_raw_parts_mut(dst.get().add(first * ohw), lanes * ohw) };
            // SAFETY: as the planes: moments `first..first + lanes` of `sums` (`n · c`
            // long) are this task's alone.
            let moments = moments.then(|| unsafe {
                std::slice::from_raw_parts_mut(sums_dst.get().add(first), lanes)
            });
            // The next task's planes follow these: into L2 while this group computes.
            let next = (first + lanes) * hw;
            lanes::prefetch_l2(&xs[next.min(xs.len())..(next + L * hw).min(xs.len())]);
            self.group_of(
                &grouped,
                g,
                &xs[first * hw..(first + lanes) * hw],
                map,
                act,
                planes,
                moments,
            );
        });
        sums
    }

    /// The layout of a group's input: every row and column a window reads, including those
    /// past the map that the last block of [`X`] outputs along a row reads for its unused
    /// outputs.
    fn bordered(&self) -> Bordered {
        let [sh, sw] = self.stride;
        let [dh, dw] = self.dilation;
        let [top, left] = self.pad;
        let rows = ((self.oh - 1) * sh + (self.kh - 1) * dh + 1).max(top + self.h);
        let cols = (self.ow.next_multiple_of(self.tile()) - 1) * sw + (self.kw - 1) * dw + 1;
        Bordered {
            rows,
            pw: cols.max(left + self.w),
        }
    }

    /// One group of `planes.len() / ohw` channels of one image.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn group<V: Lanes>(
        &self,
        input: &[f32],
        map: Option<&GroupMap>,
        filters: &[f32],
        bias: &[f32],
        act: Act,
        planes: &mut [MaybeUninit<f32>],
        bordered: &mut Vec<f32>,
        sums: &mut Vec<f32>,
    ) {
        let (oh, ow) = (self.oh, self.ow);
        let pw = self.border_group::<V>(input, map, bordered);
        let (clamp, after) = clamp_then(act);
        // Every value is written below.
        sums.resize(oh * ow * L, 0.0);
        sums.truncate(oh * ow * L);
        self.sums::<V>(bordered, pw, filters, bias, clamp, sums);
        if let Some(act) = after {
            act.apply_all(sums);
        }
        // Back to planes: each channel's outputs, one lane apart in `sums`.
        untranspose::<V>(sums, oh * ow, planes);
    }

    /// A group's input planes (at most [`L`]) into `bordered`, pixel-major in the
    /// [`Self::bordered`] layout, the border (and the lanes of absent channels) zero; returns
    /// its row length in pixels. Only the border is zeroed: `transpose` writes every lane of
    /// every pixel inside (zeroing the whole buffer first doubled the writes of a 14x14 group).
    /// With `map`, the pixels inside then go through it (the border stays zero: the
    /// convolution pads the mapped map).
    #[inline(always)]
    fn border_group<V: Lanes>(
        &self,
        input: &[f32],
        map: Option<&GroupMap>,
        bordered: &mut Vec<f32>,
    ) -> usize {
        let (h, w, [top, left]) = (self.h, self.w, self.pad);
        let Bordered { rows, pw } = self.bordered();
        bordered.resize(rows * pw * L, 0.0);
        bordered.truncate(rows * pw * L);
        zero_border(bordered, [rows, pw], [top, left], [h, w]);
        let place = Place {
            w,
            pw,
            origin: top * pw + left,
        };
        transpose::<V>(input, h * w, bordered, place);
        if let Some(map) = map {
            map_inside::<V>(bordered, place, [h, w], map);
        }
        pw
    }

    /// Every output of the group, clamped, pixel-major into `sums` (`oh · ow` pixels of
    /// [`L`] lanes) from the bordered input (`pw` pixels a row), a vector's lanes at a time
    /// ([`halves`]).
    #[inline(always)]
    fn sums<V: Lanes>(
        &self,
        bordered: &[f32],
        pw: usize,
        filters: &[f32],
        bias: &[f32],
        (lo, hi): (f32, f32),
        sums: &mut [f32],
    ) {
        let (oh, ow, kh, kw) = (self.oh, self.ow, self.kh, self.kw);
        let [sh, sw] = self.stride;
        let [dh, dw] = self.dilation;
        // The furthest value any read below reaches; checked once instead of at every load
        // (`bordered` covers every row and column the windows of
        // `ow.next_multiple_of(self.tile())` outputs reach).
        let furthest = (((oh - 1) * sh + (kh - 1) * dh) * pw
            + (ow.next_multiple_of(self.tile()) - 1) * sw
            + (kw - 1) * dw
            + 1)
            * L;
        assert!(
            furthest <= bordered.len()
                && filters.len() >= kh * kw * L
                && bias.len() == L
                && sums.len() == oh * ow * L,
            "depthwise: group buffers"
        );
        for h in halves::<V>() {
            // SAFETY (intrinsics): inside `on_lanes!`; lanes h..h + N lie within a pixel's L.
            let (lo, hi, b) =
                unsafe { (V::splat(lo), V::splat(hi), V::load(bias.as_ptr().add(h))) };
            let (bordered, filters, sums) = (&bordered[h..], &filters[h..], &mut sums[h..]);
            // A plain match, not a closure: a closure is not inlined into the caller's
            // `target_feature` context, and its intrinsics became calls (10x slower).
            let sliding = match (kw, self.tile()) {
                (3, 7) => self.sliding::<V, 3, 7>(bordered, pw, filters, (b, lo, hi), sums),
                (3, 8) => self.sliding::<V, 3, 8>(bordered, pw, filters, (b, lo, hi), sums),
                (5, 7) => self.sliding::<V, 5, 7>(bordered, pw, filters, (b, lo, hi), sums),
                (5, 8) => self.sliding::<V, 5, 8>(bordered, pw, filters, (b, lo, hi), sums),
                _ => false,
            };
            if sliding {
                continue;
            }
            for oy in 0..oh {
                for ox in (0..ow).step_by(X) {
                    let mut acc = [b; X];
                    for ki in 0..kh {
                        let row = (oy * sh + ki * dh) * pw;
                        for kj in 0..kw {
                            // SAFETY: tap (ki, kj)'s filter vector is inside `filters`, and
                            // every pixel read lies before `furthest` (both asserted above,
                            // the slices start h values in).
                            unsafe {
                                let f = V::load(filters.as_ptr().add((ki * kw + kj) * L));
                                for (x, acc) in acc.iter_mut().enumerate() {
                                    let at = (row + (ox + x) * sw + kj * dw) * L;
                                    let v = V::load(bordered.as_ptr().add(at));
                                    *acc = V::fmadd(v, f, *acc);
                                }
                            }
                        }
                    }
                    for (x, acc) in acc.iter().enumerate().take(ow - ox) {
                        let s = &mut sums[(oy * ow + ox + x) * L..][..V::N];
                        // SAFETY: `s` holds a vector's values.
                        unsafe { V::store(s.as_mut_ptr(), V::clamp(*acc, lo, hi)) };
                    }
                }
            }
        }
    }
}

impl Geometry {
    /// Outputs along a row per tile of [`Self::sums`]: 7 or 8 where [`Self::sliding`] runs
    /// (7 on rows of 7, 14 and 28, which 8 would pad by one), else [`X`].
    fn tile(&self) -> usize {
        let sliding = self.stride[1] == 1 && self.dilation[1] == 1 && matches!(self.kw, 3 | 5);
        match sliding {
            true if self.ow.is_multiple_of(7) => 7,
            true => 8,
            false => X,
        }
    }

    /// [`Self::sums`] for a stride of 1 across and `KW` taps a row, `XT` outputs a tile: a
    /// row's `XT + KW - 1` input vectors are loaded once for its `KW · XT` FMAs (the loops
    /// unrolled, the compiler keeps each load for every tap that reads it), where a tap at
    /// a time loaded each input again for every tap — 5 loads per 4 FMAs, the group's
    /// bordered input (64 KB for a 28x28 map with 5x5 taps) read from L2 five times over.
    /// False (nothing done) where the geometry is not of that kind. The slices start at
    /// the vector's first lane.
    #[inline(always)]
    fn sliding<V: Lanes, const KW: usize, const XT: usize>(
        &self,
        bordered: &[f32],
        pw: usize,
        filters: &[f32],
        (b, lo, hi): (V, V, V),
        sums: &mut [f32],
    ) -> bool {
        let (oh, ow, kh) = (self.oh, self.ow, self.kh);
        let [sh, _] = self.stride;
        let [dh, _] = self.dilation;
        if self.kw != KW || self.tile() != XT {
            return false;
        }
        for oy in 0..oh {
            for ox in (0..ow).step_by(XT) {
                let mut acc = [b; XT];
                for ki in 0..kh {
                    let row = ((oy * sh + ki * dh) * pw + ox) * L;
                    // SAFETY: as in `sums`: every read lies before its `furthest`, which
                    // counts the tiles' padded outputs; the filters hold kh × KW taps.
                    unsafe {
                        let base = bordered.as_ptr().add(row);
                        for kj in 0..KW {
                            let f = V::load(filters.as_ptr().add((ki * KW + kj) * L));
                            for (x, acc) in acc.iter_mut().enumerate() {
                                let v = V::load(base.add((x + kj) * L));
                                *acc = V::fmadd(v, f, *acc);
                            }
                        }
                    }
                }
                for (x, acc) in acc.iter().enumerate().take(ow - ox) {
                    let s = &mut sums[(oy * ow + ox + x) * L..][..V::N];
                    // SAFETY: `s` holds a vector's values.
                    unsafe { V::store(s.as_mut_ptr(), V::clamp(*acc, lo, hi)) };
                }
            }
        }
        true
    }
}

/// Zeroes what lies outside the `h × w` map placed at (`top`, `left`) in a pixel-major buffer
/// of `rows × pw` pixels of [`L`] lanes.
fn zero_border(
    buf: &mut [f32],
    [rows, pw]: [usize; 2],
    [top, left]: [usize; 2],
    [h, w]: [usize; 2],
) {
    assert!(
        buf.len() == rows * pw * L && top + h <= rows && left + w <= pw,
        "zero_border"
    );
    let row = pw * L;
    buf[..top * row].fill(0.0);
    buf[(top + h) * row..].fill(0.0);
    for r in buf[top * row..(top + h) * row].chunks_exact_mut(row) {
        r[..left * L].fill(0.0);
        r[(left + w) * L..].fill(0.0);
    }
}

/// `clamp(v · scale + shift)` for each pixel of the `h × w` map placed in `buf` ([`L`] lanes
/// a pixel): multiply then add, as `norm.rs` computes it, not a fused multiply-add, so the
/// values match its to the bit.
#[inline(always)]
fn map_inside<V: Lanes>(buf: &mut [f32], place: Place, [h, w]: [usize; 2], map: &GroupMap) {
    assert!(
        h * w == 0 || buf.len() >= place.end(h * w),
        "map_inside: buffer"
    );
    for half in halves::<V>() {
        // SAFETY: inside `on_lanes!`; every pixel touched lies below `place.end(h · w)`
        // (asserted), its lanes half..half + N within its L.
        unsafe {
            let (s, t) = (
                V::load(map.scale.as_ptr().add(half)),
                V::load(map.shift.as_ptr().add(half)),
            );
            let (lo, hi) = (V::splat(map.clamp.0), V::splat(map.clamp.1));
            for y in 0..h {
                let row = buf
                    .as_mut_ptr()
                    .add((place.origin + y * place.pw) * L + half);
                for x in 0..w {
                    let at = row.add(x * L);
                    let v = V::add(V::mul(V::load(at), s), t);
                    V::store(at, V::clamp(v, lo, hi));
                }
            }
        }
    }
}

/// Where the pixels of a map `w` wide go in a pixel-major buffer whose rows hold `pw` pixels:
/// pixel p to pixel `origin + (p / w) · pw + p % w` (each of [`L`] lanes).
#[derive(Clone, Copy)]
pub(super) struct Place {
    pub w: usize,
    pub pw: usize,
    pub origin: usize,
}

impl Place {
    /// A map's pixels one after another, from pixel 0.
    pub fn compact(w: usize) -> Self {
        Place {
            w,
            pw: w,
            origin: 0,
        }
    }

    /// The buffer length (values) that holds `pixels` pixels of the map: past the last
    /// pixel's, the furthest where rows are no wider than the buffer's (`pw ≥ w`).
    fn end(self, pixels: usize) -> usize {
        match pixels {
            0 => 0,
            _ => (self.origin + (pixels - 1) / self.w * self.pw + (pixels - 1) % self.w + 1) * L,
        }
    }
}

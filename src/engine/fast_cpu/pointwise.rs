//! 1x1 convolution (stride 1, no padding, one group) on plain `f32` slices in NCHW order,
//! as matrix products (Graft's own kernel, `mm.rs`, where the CPU has AVX2; the `gemm` crate
//! elsewhere): the forward pass with a fused bias and activation, and the backward pass.
//! Dimensions are `[n, c, co, hw]`: images, input channels, output channels, pixels.

use super::columns::{Dst, filled};
use super::gather::Plan;
use super::norm::{Affine, GradMap, InputMap};
use super::{Act, ConvGrads, dot_grad, mm, weight_grad};
use crate::engine::Precision;
use crate::graph::Conv;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

#[path = "pointwise_backward.rs"]
mod backward;
#[path = "pointwise_moments.rs"]
mod moments;
pub use backward::{backward_mapped, takes_grad_map};
pub use moments::forward_with_moments;

/// `[n, c, co, hw]` when `conv` on an input of `x` dims with a weight of `weight` dims is a
/// 1x1 convolution these kernels run (stride 1, no padding, one group, nothing empty).
pub fn dims(x: [usize; 4], weight: [usize; 4], conv: &Conv) -> Option<[usize; 4]> {
    let [n, c, h, w] = x;
    let [co, ci, kh, kw] = weight;
    let applies = (ci, kh, kw) == (c, 1, 1)
        && conv.groups == 1
        && conv.strides == [1, 1]
        && conv.pads == [0; 4]
        && n * c * co * h * w > 0;
    applies.then_some([n, c, co, h * w])
}

/// The slices have the lengths `[n, c, co, hw]` says: gemm reads and writes through raw
/// pointers on that basis.
fn check_operands(
    xs: &[f32],
    ws: &[f32],
    bs: Option<&[f32]>,
    gs: Option<&[f32]>,
    [n, c, co, hw]: [usize; 4],
) {
    assert_eq!(xs.len(), n * c * hw, "1x1 convolution: input length");
    assert_eq!(ws.len(), co * c, "1x1 convolution: weight length");
    if let Some(bs) = bs {
        assert_eq!(bs.len(), co, "1x1 convolution: bias length");
    }
    if let Some(gs) = gs {
        assert_eq!(gs.len(), n * co * hw, "1x1 convolution: gradient length");
    }
}

/// Output (or input-gradient) columns per tile of the `gemm` fallback: about 256 KB of
/// `rows` rows, so a tile stays in L2 from its bias fill to its clamp.
fn tile_cols(rows: usize, hw: usize) -> usize {
    (65_536 / rows.max(1)).max(64).min(hw)
}

/// Too few tiles to keep every thread busy (a small batch of small images, deep in a
/// network): gemm splits each one across the threads instead. (Every tile packs the whole
/// weight matrix, so more, smaller tiles would cost more than they spread.)
pub(super) fn parallelism(tasks: usize) -> gemm::Parallelism {
    if tasks < rayon::current_num_threads() {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    }
}

/// `act(W · x + b)` per image, as tiles over the pixels through Graft's matrix kernel (`mm`;
/// gemm without AVX2), each tile started from the bias and put through the activation while
/// it is still in cache (flex runs a gemm, then adds the bias and clamps in two more passes
/// over the whole activation).
/// `packed`: the filters already packed for `mm` (an inference plan keeps them between runs),
/// else they are packed here when `mm` runs.
pub fn forward(
    xs: &[f32],
    ws: &[f32],
    packed: Option<&mm::PackedA>,
    bs: Option<&[f32]>,
    [n, c, co, hw]: [usize; 4],
    act: Act,
) -> Vec<f32> {
    check_operands(xs, ws, bs, None, [n, c, co, hw]);
    if mm::available() {
        // SAFETY: `forward_into` writes all `n × co × hw` values (image stride `co × hw`).
        return unsafe {
            filled(n * co * hw, co * hw, |dst| {
                forward_into(xs, ws, packed, bs, [n, c, co, hw], act, dst)
            })
        };
    }
    let tile = tile_cols(co, hw);
    let tiles = hw.div_ceil(tile);
    let parallelism = parallelism(n * tiles);
    let len = n * co * hw;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let dst = SendPtr(out.as_mut_ptr());
    (0..n * tiles).into_par_iter().for_each(|t| {
        let (b, j0) = (t / tiles, (t % tiles) * tile);
        // SAFETY: tiles are disjoint column ranges of disjoint images, so no two tasks write
        // the same element, and every element belongs to exactly one tile; the operands'
        // lengths were checked; `out` outlives the parallel loop.
        unsafe {
            let tile = Tile {
                dst: dst.get().add(b * co * hw + j0),
                dst_row: hw,
                rows: co,
                cols: tile.min(hw - j0),
            };
            tile.bias_gemm_act(
                (ws.as_ptr(), c),
                (xs.as_ptr().add(b * c * hw + j0), hw),
                c,
                bs,
                act,
                parallelism,
            );
        }
    });
    // SAFETY: the loop above wrote every element (see there).
    unsafe { out.set_len(len) };
    out
}

/// [`forward`] without activation at training's `precision` (filters packed here).
pub fn forward_at(
    xs: &[f32],
    ws: &[f32],
    bs: Option<&[f32]>,
    [n, c, co, hw]: [usize; 4],
    precision: Precision,
) -> Vec<f32> {
    let packed = (precision != Precision::Fp32 && mm::available())
        .then(|| mm::PackedA::new(ws, co, c).at(precision));
    forward(xs, ws, packed.as_ref(), bs, [n, c, co, hw], Act::NONE)
}

/// Whether the 1x1 of `dims` can take its input through a batch norm
/// ([`forward_mapped`], [`backward_mapped`]): where its weight gradient maps each chunk of
/// the input as it reads it — dot products (maps of 512 pixels or more on AVX-512, an image
/// or more for every thread), or the matrix kernel with x on the right, packed by
/// transposes (no more output than input channels) — and its forward pass packs its input
/// anyway (a short sum read in place would have to pack it to map it: Lite0's 16-channel
/// 112x112 batch norm joined to the next block's expand cost 1.2 ms a step forward more
/// than the two apart).
pub fn maps_input([n, c, co, hw]: [usize; 4]) -> bool {
    let dots = n >= rayon::current_num_threads() && dot_grad::applies([c, co, hw]);
    mm::available() && !mm::reads_in_place(c) && (dots || co <= c)
}

/// [`forward`] of `clamp(batch_norm(x))` (`norm`: a batch norm joined to the 1x1 that alone
/// reads it, `train::norm_pointwise`), the batch norm applied as the pixels are packed, so
/// its output is never written nor read back; the products at training's `precision`. Only
/// where [`maps_input`].
pub fn forward_mapped(
    xs: &[f32],
    norm: &Affine,
    ws: &[f32],
    bs: Option<&[f32]>,
    [n, c, co, hw]: [usize; 4],
    act: Act,
    precision: Precision,
) -> Vec<f32> {
    check_operands(xs, ws, bs, None, [n, c, co, hw]);
    assert!(
        maps_input([n, c, co, hw]),
        "1x1 convolution: no mapped input here"
    );
    let map = InputMap::new(norm, c);
    let packed = mm::PackedA::new(ws, co, c).at(precision);
    // SAFETY: the matrix kernel is there (`maps_input`); `multiply_images` writes all
    // `n × co × hw` values (image stride `co × hw`).
    unsafe {
        filled(n * co * hw, co * hw, |dst| {
            multiply_images(&packed, (xs, Some(&map)), [n, c, hw], bs, act, dst, false);
        })
    }
}

/// [`forward`] through Graft's matrix kernel into `dst` (a Concat's joined buffer, or the
/// output's own).
///
/// # Safety
/// [`mm::available`] is true; `dst` is valid for `n` images of `co × hw` values (see
/// [`Dst`]).
pub unsafe fn forward_into(
    xs: &[f32],
    ws: &[f32],
    packed: Option<&mm::PackedA>,
    bs: Option<&[f32]>,
    [n, c, co, hw]: [usize; 4],
    act: Act,
    dst: Dst,
) {
    check_operands(xs, ws, bs, None, [n, c, co, hw]);
    let own;
    let packed = match packed {
        Some(p) => p,
        None => {
            own = mm::PackedA::new(ws, co, c);
            &own
        }
    };
    assert_eq!(
        [packed.rows(), packed.k()],
        [co, c],
        "1x1 convolution: packed filters"
    );
    // SAFETY: as the caller promises.
    unsafe { multiply_images(packed, (xs, None), [n, c, hw], bs, act, dst, false) };
}

/// `act(A · x + bias)` per image through Graft's own kernel (`mm.rs`), A packed once (the
/// filters, or their transpose for the input gradient), x `[n, k, hw]`: tasks over runs of
/// pixels counted over the whole batch (a run may go on into the next image, so 7x7 maps
/// fill the kernel's strips) and, when those are too few to keep every thread busy (a small
/// batch of small maps), blocks of output channels. With a map, x is taken through it as
/// it is packed (see [`forward_mapped`]). With `moments`, each task's block of the output
/// and its rows' `moments::plane_moments`, taken as the task finishes it, in task order (else
/// none; maps under `mm::Columns::WHOLE_IMAGES_FROM` pixels, whose runs cross images, give
/// none either).
///
/// # Safety
/// [`mm::available`] is true; `dst` is valid for `n` images of `rows × hw` values.
#[allow(clippy::too_many_arguments)]
unsafe fn multiply_images(
    packed: &mm::PackedA,
    (xs, map): (&[f32], Option<&InputMap>),
    [n, k, hw]: [usize; 3],
    bs: Option<&[f32]>,
    act: Act,
    dst: Dst,
    moments: bool,
) -> Vec<moments::Block> {
    assert_eq!(xs.len(), n * k * hw, "1x1 convolution: input length");
    assert_eq!(packed.k(), k, "1x1 convolution: filter length");
    let moments = moments && hw >= mm::Columns::WHOLE_IMAGES_FROM;
    if n == 1 && map.is_none() && mm::by_pixels::applies(k, hw) {
        // SAFETY: as the caller promises.
        unsafe { by_pixels(packed, xs, hw, bs, act, dst) };
        return Vec::new();
    }
    let tasks = Tasks::new(mm::Columns::new(n, hw), packed.panels());
    let planes = Planes { xs, k, hw, map };
    let blocks = (0..tasks.count).into_par_iter().map(|t| {
        let ((first, cols), panels) = tasks.get(t);
        let (b, j0) = (first / hw, first % hw);
        // Within one image the planes are read in place; across images, or through a map,
        // gathered.
        let x = if j0 + cols <= hw && map.is_none() {
            // SAFETY: image b's planes hold k rows of hw values, columns j0.. of which
            // are read (length asserted above).
            mm::B::Rows(unsafe { xs.as_ptr().add(b * k * hw + j0) }, hw)
        } else {
            mm::B::Gather(&planes)
        };
        let block_out = mm::Out {
            c: dst.ptr(),
            row0: 0,
            ldc: hw,
            cols,
            accumulate: false,
            span: mm::Span {
                first,
                pixels: hw,
                image_stride: dst.image_stride,
            },
        };
        // SAFETY: AVX2 is there (the caller's promise); tasks write disjoint blocks (pixel
        // runs, output channels), which together cover the `n × rows × hw` values `dst`
        // holds.
        unsafe { mm::multiply(packed, panels.clone(), x, &block_out, bs, act) };
        let rows = panels.start * mm::MR..(panels.end * mm::MR).min(packed.rows());
        // SAFETY: this task has just written those rows of image b at pixels j0 .. j0 +
        // cols (a run within one image: `moments` only for maps whose runs are), and no
        // other task touches them.
        moments.then(|| unsafe { moments::Block::of(&dst, [b, j0, cols, hw], rows) })
    });
    blocks.flatten().collect()
}

/// One image's `act(A · x + bias)` through [`mm::by_pixels`]: tasks over pairs of strips of
/// output channels, each split in two runs of pixels where that shares them out more evenly.
///
/// # Safety
/// As [`multiply_images`]'s, for one image.
unsafe fn by_pixels(
    packed: &mm::PackedA,
    xs: &[f32],
    hw: usize,
    bs: Option<&[f32]>,
    act: Act,
    dst: Dst,
) {
    use mm::by_pixels::ROWS;
    let strips = packed.by_pixels();
    let pairs = strips.pairs();
    // Tasks are pairs of strips, and each pair split in two runs of pixels where that
    // shares the pairs out more evenly (MobileNet-v2's 160 channels are 5 pairs: 3 and 2 on
    // two threads). No finer: tasks that split a row of the output write the cache line at
    // their border from both cores.
    let threads = rayon::current_num_threads();
    let balance = |units: usize| units as f64 / units.next_multiple_of(threads) as f64;
    let runs = if hw >= 2 * ROWS && balance(2 * pairs) > balance(pairs) {
        2
    } else {
        1
    };
    let run = hw.div_ceil(runs).next_multiple_of(ROWS);
    let runs = hw.div_ceil(run);
    let out = SendPtr(dst.ptr());
    (0..pairs * runs).into_par_iter().for_each(|t| {
        let (q, r) = (t / runs, t % runs);
        let pixels = r * run..((r + 1) * run).min(hw);
        // SAFETY: `xs` holds k planes of hw values (asserted by the caller); tasks write
        // disjoint blocks (pairs of strips × runs of pixels) of the `rows × hw` output.
        unsafe {
            mm::by_pixels::multiply(
                strips,
                q..q + 1,
                xs.as_ptr(),
                hw,
                pixels,
                (out.get(), hw),
                bs,
                act,
            )
        };
    });
}

/// `[n, k, hw]` planes as `mm`'s right-hand operand with columns over the whole batch:
/// row i of column `b · hw + p` is plane i of image b at pixel p.
struct Planes<'a> {
    xs: &'a [f32],
    k: usize,
    hw: usize,
    /// Each plane's batch norm, where the 1x1 is joined to the one it reads.
    map: Option<&'a InputMap>,
}

impl mm::Gather for Planes<'_> {
    fn pack(&self, k0: usize, kc: usize, j0: usize, block: usize, strips: &mut [f32]) {
        let (k, hw) = (self.k, self.hw);
        Plan::with(kc, |plan| {
            // One "tap": runs of consecutive pixels, one per image the block covers.
            plan.tap();
            let mut d = 0;
            while d < block {
                let (b, p) = ((j0 + d) / hw, (j0 + d) % hw);
                let run = (hw - p).min(block - d);
                plan.values(d, run, b * k * hw + p);
                d += run;
            }
            plan.pack(self.xs, k0, |i| i * hw, self.map, strips);
        });
    }
}

/// Blocks to split the output channels into so that `tasks` tasks per block keep every
/// thread busy (two tasks per thread, for balance), at most one block per panel.
pub(super) fn row_blocks(tasks: usize, panels: usize) -> usize {
    let want = 2 * rayon::current_num_threads();
    want.div_ceil(tasks.max(1)).clamp(1, panels.max(1))
}

/// A matrix product's parallel tasks: runs of output columns (`Columns`) times blocks of the
/// filters' panels ([`row_blocks`]), the runs going round fastest. Rayon hands each thread a
/// contiguous part of a loop's range: with the blocks going round fastest, one thread took
/// every block of a 14x14 map's first run (128 columns) and the other every block of the
/// second (68), and those convolutions ran only 1.28x faster on two cores than on one.
pub(super) struct Tasks {
    columns: mm::Columns,
    panels: usize,
    per_block: usize,
    pub count: usize,
}

impl Tasks {
    pub fn new(columns: mm::Columns, panels: usize) -> Self {
        let blocks = row_blocks(columns.tasks, panels);
        Tasks {
            columns,
            panels,
            per_block: panels.div_ceil(blocks),
            count: columns.tasks * blocks,
        }
    }

    /// Task `t`'s run of columns (its first column, counted over the batch, and its length)
    /// and its panels.
    pub fn get(&self, t: usize) -> ((usize, usize), std::ops::Range<usize>) {
        let (run, block) = (t % self.columns.tasks, t / self.columns.tasks);
        let panels = block * self.per_block..((block + 1) * self.per_block).min(self.panels);
        (self.columns.task(run), panels)
    }
}

/// `m` (`rows × cols`, row-major) transposed: the `x·gᵀ` weight gradient, single-threaded
/// in each backward pass (the input gradient's `Wᵀ` is packed straight from W:
/// `mm::PackedA::transposed`). In 16 × 16 blocks through registers on AVX-512
/// (`lanes::transpose16`, partial blocks masked), else in tiles that stay in L1: column by
/// column over a whole filter (1280 × 320 for Lite0's head) every write went to a line of
/// its own, 1.44 ms there (0.60 in tiles, 0.20 in registers).
pub(super) fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(m.len(), rows * cols, "transpose: length");
    #[cfg(target_arch = "x86_64")]
    if super::has_avx512() {
        use super::lanes::transpose16::{self, L};
        let mut t: Vec<f32> = Vec::with_capacity(m.len());
        let dst = t.as_mut_ptr();
        super::with_avx512(
            #[inline(always)]
            || {
                for r0 in (0..rows).step_by(L) {
                    let h = L.min(rows - r0);
                    for j0 in (0..cols).step_by(L) {
                        let w = L.min(cols - j0);
                        // SAFETY: AVX-512 is there (checked above); the block's rows
                        // r0..r0 + h read columns j0..j0 + w of `m` (rows × cols, asserted),
                        // and its w transposed rows go to columns r0..r0 + h of rows
                        // j0..j0 + w of `t`, inside its capacity (rows × cols).
                        unsafe {
                            let v = transpose16::load_transposed(
                                m.as_ptr().add(r0 * cols + j0),
                                cols,
                                h,
                                w,
                            );
                            for (j, v) in v.iter().enumerate().take(w) {
                                transpose16::store_first(dst.add((j0 + j) * rows + r0), *v, h);
                            }
                        }
                    }
                }
            },
        );
        // SAFETY: the blocks cover every row and column, so every value was written.
        unsafe { t.set_len(m.len()) };
        return t;
    }
    transpose_tiles(m, rows, cols)
}

/// [`transpose`] without AVX-512.
fn transpose_tiles(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; m.len()];
    for r0 in (0..rows).step_by(TILE) {
        for j0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                let row = &m[r * cols..(r + 1) * cols];
                for j in j0..(j0 + TILE).min(cols) {
                    t[j * rows + r] = row[j];
                }
            }
        }
    }
    t
}

/// A tile's side in [`transpose`] without AVX-512: 32 × 32 values, 4 KB each way, in L1.
const TILE: usize = 32;

pub(super) fn add_into(acc: &mut [f32], v: &[f32]) {
    for (a, b) in acc.iter_mut().zip(v) {
        *a += b;
    }
}

/// A raw output pointer shared by parallel tasks that write disjoint elements.
#[derive(Clone, Copy)]
pub(super) struct SendPtr<T = f32>(pub *mut T);
// SAFETY: only used for disjoint writes (see `forward` and `backward`).
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// A method (not field access) so closures capture the whole `Send` wrapper.
    pub fn get(self) -> *mut T {
        self.0
    }
}

/// A block of an output: `rows` rows of `cols` values, rows `dst_row` apart.
pub(super) struct Tile {
    pub dst: *mut f32,
    pub dst_row: usize,
    pub rows: usize,
    pub cols: usize,
}

impl Tile {
    /// Writes `act(A · B + bias)` into the tile (every element, initialised or not): `a` is
    /// `rows × k` and `b` is `k × cols`, each a pointer and its row stride. The tile is filled
    /// with the bias, gemm adds the product while it is in cache, and the activation follows
    /// at once (flex adds the bias and clamps in passes over the whole activation).
    ///
    /// # Safety
    /// `a`, `b` and the tile must be valid for those shapes and strides, the tile written by
    /// no one else meanwhile; `bias` has `rows` values.
    pub unsafe fn bias_gemm_act(
        &self,
        a: (*const f32, usize),
        b: (*const f32, usize),
        k: usize,
        bias: Option<&[f32]>,
        act: Act,
        parallelism: gemm::Parallelism,
    ) {
        // SAFETY: as the caller promises.
        unsafe {
            // Without a bias gemm writes the tile without reading it (`read_dst` false).
            if let Some(bs) = bias {
                for (r, &v) in bs.iter().enumerate().take(self.rows) {
                    // Not yet initialised: written through `MaybeUninit`, never read as f32.
                    let row = std::slice::from_raw_parts_mut(
                        self.dst.add(r * self.dst_row).cast::<MaybeUninit<f32>>(),
                        self.cols,
                    );
                    for x in row {
                        x.write(v);
                    }
                }
            }
            gemm::gemm(
                self.rows,
                self.cols,
                k,
                self.dst,
                1,
                self.dst_row as isize,
                bias.is_some(),
                a.0,
                1,
                a.1 as isize,
                b.0,
                1,
                b.1 as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
            if act != Act::NONE {
                for r in 0..self.rows {
                    let row =
                        std::slice::from_raw_parts_mut(self.dst.add(r * self.dst_row), self.cols);
                    super::with_avx2(
                        #[inline(always)]
                        || act.apply_all(row),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{transpose, transpose_tiles};

    /// Blocks and tiles whole and cut short on both sides, one row, one column: through
    /// registers where the machine has AVX-512, and the tiles every machine can run.
    #[test]
    fn transpose_moves_every_value() {
        for (rows, cols) in [(37, 70), (64, 32), (1, 45), (45, 1), (33, 33)] {
            let m: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            for t in [transpose(&m, rows, cols), transpose_tiles(&m, rows, cols)] {
                for r in 0..rows {
                    for j in 0..cols {
                        assert_eq!(t[j * rows + r], m[r * cols + j], "{rows}x{cols} at {r},{j}");
                    }
                }
            }
        }
    }
}

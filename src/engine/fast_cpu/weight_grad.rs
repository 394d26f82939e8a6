//! A 1x1 convolution's weight gradient (and a dense convolution's, of its unfolded patches):
//! which way its sums go (`add_weight_grad`: the dot products of `dot_grad.rs` on large maps,
//! this file's matrix-kernel path, gemm without AVX2), the fixed split of a batch's images
//! over the threads (`sum_over_images`), and the matrix-kernel path itself, where the dot
//! products do not apply (maps under 512 pixels, or results too large for their sums):
//! `dw += Σ_b a_b · b_bᵀ` over a run of images, `a_b` and `b_b` image b's planes
//! (`[n, rows, hw]` each, the sum over pixels). The images' pixels form one sum, cut into
//! chunks of [`GRAD_KC`] steps that run on from one image into the next: image by image,
//! a 7x7 map's sum was 49 steps, after each of which the kernel loaded and stored every one
//! of the result's sums again (Lite0's 1152 × 192 result: 221 K values per image).
//! `a`'s chunk is packed as the kernel's left operand (`PackedA::over_images`), `b`'s
//! transposed into its strips ([`ImageCols`]: 16 × 16 transposes in registers where the CPU
//! has AVX-512).

use super::Act;
use super::blocking::strip_len;
use super::dot_grad;
use super::mm::{self, NR};
use super::norm::InputMap;
use super::pointwise::{self, SendPtr, row_blocks};
use crate::engine::Precision;
use rayon::prelude::*;
use std::ops::Range;

/// Steps of the sum per packed chunk of `a`: a packed strip of `b` (`GRAD_KC` × 16) is 32 KB,
/// L1's size.
const GRAD_KC: usize = 512;

/// `dw += Σ_{b in images} a_b · b_bᵀ`: `a` holds `[n, a_rows, hw]` planes, `b` `[n, b_rows,
/// hw]`, `dw` is `a_rows × b_rows`. With `split`, blocks of `a`'s rows are spread over the
/// threads (too few images to give each thread its own). With a map, `b`'s planes are taken
/// through it as they are packed (a batch norm joined to the 1x1 that reads it). `a`'s
/// chunks are packed at `precision` (`mm::PackedA::at`). Only where
/// [`mm::available`].
pub fn add(
    a: &[f32],
    (b, map): (&[f32], Option<&InputMap>),
    [a_rows, b_rows, hw]: [usize; 3],
    images: Range<usize>,
    dw: &mut [f32],
    split: bool,
    precision: Precision,
) {
    assert!(mm::available(), "1x1 weight gradient: no matrix kernel");
    assert_eq!(dw.len(), a_rows * b_rows, "1x1 weight gradient: length");
    assert!(
        a.len() >= images.end * a_rows * hw && b.len() >= images.end * b_rows * hw,
        "1x1 weight gradient: operands"
    );
    assert!(
        map.is_none_or(|m| m.scale.len() == b_rows && m.shift.len() == b_rows),
        "1x1 weight gradient: map length"
    );
    let steps = images.len() * hw;
    let dst = SendPtr(dw.as_mut_ptr());
    for k0 in (0..steps).step_by(GRAD_KC) {
        let kc = GRAD_KC.min(steps - k0);
        let first = images.start * hw + k0;
        let packed = mm::PackedA::over_images(a, a_rows, hw, first, kc).at(precision);
        let cols = ImageCols {
            b,
            rows: b_rows,
            hw,
            first,
            map,
        };
        let blocks = if split {
            row_blocks(1, packed.panels())
        } else {
            1
        };
        let per_block = packed.panels().div_ceil(blocks);
        let block = |blk: usize| {
            let panels = blk * per_block..((blk + 1) * per_block).min(packed.panels());
            let out = mm::Out {
                c: dst.get(),
                row0: 0,
                ldc: b_rows,
                cols: b_rows,
                accumulate: true,
                span: mm::Span::ONE,
            };
            // SAFETY: the matrix kernel is there (asserted above); `cols` packs rows within
            // `b` (length asserted above); blocks write disjoint rows of `dw` (a_rows ×
            // b_rows, length asserted above), which outlives the loop.
            unsafe { mm::multiply(&packed, panels, mm::B::Gather(&cols), &out, None, Act::NONE) };
        };
        if blocks > 1 {
            (0..blocks).into_par_iter().for_each(block);
        } else {
            block(0);
        }
    }
}

/// `[n, rows, hw]` planes transposed as the kernel's right-hand operand: its row s (from
/// step `first` of the sum) is pixel `s % hw` of image `s / hw`, its column j plane j.
struct ImageCols<'a> {
    b: &'a [f32],
    rows: usize,
    hw: usize,
    first: usize,
    /// Each plane's batch norm, where there is one.
    map: Option<&'a InputMap>,
}

impl mm::Gather for ImageCols<'_> {
    fn pack(&self, k0: usize, kc: usize, j0: usize, block: usize, strips: &mut [f32]) {
        let strip_len = strip_len(kc);
        assert!(
            strips.len() >= block.div_ceil(NR) * strip_len && j0 + block <= self.rows,
            "1x1 weight gradient: packing"
        );
        let (rows, hw) = (self.rows, self.hw);
        for s in 0..block.div_ceil(NR) {
            let (col0, width) = (j0 + s * NR, NR.min(block - s * NR));
            let strip = &mut strips[s * strip_len..][..kc * NR];
            // The strip's columns' maps, lane by lane (identity past `width`).
            let lanes = self.map.map(|m| {
                let (mut scale, mut shift) = ([1.0f32; NR], [0.0f32; NR]);
                scale[..width].copy_from_slice(&m.scale[col0..col0 + width]);
                shift[..width].copy_from_slice(&m.shift[col0..col0 + width]);
                (scale, shift, m.clamp)
            });
            // Runs of steps within one image.
            let mut i = 0;
            while i < kc {
                let (image, px) = ((self.first + k0 + i) / hw, (self.first + k0 + i) % hw);
                let run = (hw - px).min(kc - i);
                let at = (image * rows + col0) * hw + px;
                let rows_out = &mut strip[i * NR..(i + run) * NR];
                // The next run, the next image's planes of these channels, into L2 meanwhile
                // (`lanes::prefetch_l2`): it lies `rows · hw` values on.
                if i + run < kc {
                    let next = ((image + 1) * rows + col0) * hw;
                    let len = (width - 1) * hw + hw.min(kc - i - run);
                    super::lanes::prefetch_l2(&self.b[next..next + len]);
                }
                transposed(&self.b[at..], hw, width, run, rows_out, lanes.as_ref());
                i += run;
            }
        }
    }
}

/// A strip's per-lane batch norm: scales, shifts, and the clamp.
type LaneMap = ([f32; NR], [f32; NR], (f32, f32));

/// Values `0..run` of `width` rows of `src` (`stride` apart) as `run` rows of [`NR`] lanes
/// in `dst` (lanes past `width` left as they are), each lane through its map where there is
/// one (multiply then add, as `norm.rs` computes it).
#[inline(always)]
fn transposed(
    src: &[f32],
    stride: usize,
    width: usize,
    run: usize,
    dst: &mut [f32],
    map: Option<&LaneMap>,
) {
    assert!(
        width <= NR
            && dst.len() == run * NR
            && (width == 0 || (width - 1) * stride + run <= src.len()),
        "1x1 weight gradient: transpose"
    );
    #[cfg(target_arch = "x86_64")]
    if super::has_avx512() {
        use super::lanes::{clamp16, transpose16};
        use std::arch::x86_64::*;
        const _: () = assert!(NR == transpose16::L);
        super::with_avx512(
            #[inline(always)]
            || {
                // SAFETY: AVX-512 is there (checked above); each array holds NR lanes.
                let map = map.map(|(s, t, (lo, hi))| unsafe {
                    (
                        _mm512_loadu_ps(s.as_ptr()),
                        _mm512_loadu_ps(t.as_ptr()),
                        _mm512_set1_ps(*lo),
                        _mm512_set1_ps(*hi),
                    )
                });
                for q in (0..run).step_by(NR) {
                    let n = NR.min(run - q);
                    // SAFETY: AVX-512 is there (checked above); rows r < width read values
                    // q..q + n, inside `src` (asserted above); row q + j < run of `dst`
                    // holds NR values.
                    unsafe {
                        let v = transpose16::load_transposed(src.as_ptr().add(q), stride, width, n);
                        for (j, &v) in v.iter().enumerate() {
                            if j < n {
                                let v = match map {
                                    Some((s, t, lo, hi)) => {
                                        clamp16(_mm512_add_ps(_mm512_mul_ps(v, s), t), lo, hi)
                                    }
                                    None => v,
                                };
                                _mm512_storeu_ps(dst.as_mut_ptr().add((q + j) * NR), v);
                            }
                        }
                    }
                }
            },
        );
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if super::has_avx2_fma() {
        use super::lanes::{clamp8, transpose8};
        use std::arch::x86_64::*;
        const H: usize = transpose8::L;
        const _: () = assert!(NR == 2 * H);
        super::with_avx2(
            #[inline(always)]
            || {
                // Each half of the lanes (rows 0..8, 8..16) by 8 × 8 blocks; a half past
                // `width` is left as it is.
                for half in 0..width.div_ceil(H) {
                    let rows = H.min(width - half * H);
                    // SAFETY: AVX2 is there (checked above); each array holds NR lanes.
                    let map = map.map(|(s, t, (lo, hi))| unsafe {
                        (
                            _mm256_loadu_ps(s.as_ptr().add(half * H)),
                            _mm256_loadu_ps(t.as_ptr().add(half * H)),
                            _mm256_set1_ps(*lo),
                            _mm256_set1_ps(*hi),
                        )
                    });
                    for q in (0..run).step_by(H) {
                        let n = H.min(run - q);
                        // SAFETY: AVX2 is there (checked above); rows half · 8 + r < width
                        // read values q..q + n, inside `src` (asserted above); row q + j <
                        // run of `dst` holds NR values, this half's 8 of them written.
                        unsafe {
                            let at = src.as_ptr().add(half * H * stride + q);
                            let v = transpose8::load_transposed(at, stride, rows, n);
                            for (j, &v) in v.iter().enumerate().take(n) {
                                let v = match map {
                                    Some((s, t, lo, hi)) => {
                                        clamp8(_mm256_add_ps(_mm256_mul_ps(v, s), t), lo, hi)
                                    }
                                    None => v,
                                };
                                _mm256_storeu_ps(dst.as_mut_ptr().add((q + j) * NR + half * H), v);
                            }
                        }
                    }
                }
            },
        );
        return;
    }
    for (i, row) in dst.chunks_exact_mut(NR).enumerate() {
        for (t, d) in row.iter_mut().enumerate().take(width) {
            *d = match map {
                Some((s, sh, (lo, hi))) => {
                    super::clamp1(src[t * stride + i] * s[t] + sh[t], *lo, *hi)
                }
                None => src[t * stride + i],
            };
        }
    }
}

/// `run`'s sums over `0..n` images (`n > 0`): a fixed split, one part per thread, the parts'
/// `(dw, db)` added in order — the same sums in the same order on every run (a
/// work-stealing reduction would add in a different order each time, and training with a
/// fixed seed would not repeat); with fewer images than threads, one run over them all with
/// rayon's parallelism (each image spread over the threads).
pub(super) fn sum_over_images(
    n: usize,
    run: impl Fn(Range<usize>, gemm::Parallelism) -> (Vec<f32>, Vec<f32>) + Sync,
) -> (Vec<f32>, Vec<f32>) {
    let threads = rayon::current_num_threads();
    if n < threads {
        return run(0..n, gemm::Parallelism::Rayon(0));
    }
    let per_part = n.div_ceil(threads);
    let parts: Vec<_> = (0..n.div_ceil(per_part))
        .into_par_iter()
        .map(|p| {
            run(
                p * per_part..n.min((p + 1) * per_part),
                gemm::Parallelism::None,
            )
        })
        .collect();
    let mut parts = parts.into_iter();
    let (mut dw, mut db) = parts.next().expect("images to sum");
    for (w, b) in parts {
        pointwise::add_into(&mut dw, &w);
        pointwise::add_into(&mut db, &b);
    }
    (dw, db)
}

/// `dw += Σ_b g_b · x_bᵀ` over `images` (`dw` in the weight's layout, `co × c`), and `db +=`
/// each row of `g` summed where it is given: dot products on large maps with a small result
/// (nothing packed), else Graft's matrix kernel (with blocks of rows spread over the threads
/// when `par` is rayon's: too few images to give each thread its own), else gemm. `xs` and
/// `gs` hold `[n, c, hw]` and `[n, co, hw]` planes, of which `images` are read. A dense
/// convolution's weight gradient runs here with one image's patches as `x`. `precision`:
/// the products', whichever way they go. With a map (a
/// joined batch norm), x is taken through it: by the dot products, or by the matrix kernel
/// where x goes on the right (no more output than input channels) — where `pointwise::maps_input`.
pub(super) fn add_weight_grad(
    (xs, map): (&[f32], Option<&InputMap>),
    gs: &[f32],
    [c, co, hw]: [usize; 3],
    images: Range<usize>,
    par: gemm::Parallelism,
    (dw, db): (&mut [f32], Option<&mut [f32]>),
    precision: Precision,
) {
    assert!(
        xs.len() >= images.end * c * hw && gs.len() >= images.end * co * hw,
        "1x1 weight gradient: operands"
    );
    assert_eq!(dw.len(), co * c, "1x1 weight gradient: length");
    let split = matches!(par, gemm::Parallelism::Rayon(_));
    let dots = !split && dot_grad::applies([c, co, hw]);
    assert!(
        map.is_none() || dots || (mm::available() && co <= c),
        "1x1 weight gradient: a map needs the dot products or x packed on the right"
    );
    if dots {
        for b in images.clone() {
            let g = &gs[b * co * hw..(b + 1) * co * hw];
            let x = &xs[b * c * hw..(b + 1) * c * hw];
            dot_grad::add(g, (x, map), [c, co, hw], dw, precision);
        }
    } else if mm::available() && co > c {
        // Through the matrix kernel, the operand with more rows goes on the right (packed
        // by 16 × 16 transposes), the other on the left (packed row by row): with more
        // output channels than input channels the sums are of `x · gᵀ`, `dwᵀ`, transposed
        // at the end (Lite0's 112 → 672 and 80 → 480 expands at 14x14: 1.26× per weight
        // gradient; about even at 7x7).
        let mut dwt = vec![0.0f32; c * co];
        add(
            xs,
            (gs, None),
            [c, co, hw],
            images.clone(),
            &mut dwt,
            split,
            precision,
        );
        pointwise::add_into(dw, &pointwise::transpose(&dwt, c, co));
    } else if mm::available() {
        add(
            gs,
            (xs, map),
            [co, c, hw],
            images.clone(),
            dw,
            split,
            precision,
        );
    } else {
        for b in images.clone() {
            // SAFETY: every pointer and stride stays inside `gs`'s and `xs`'s image b
            // and `dw` (lengths asserted above).
            unsafe {
                gemm::gemm(
                    co,
                    c,
                    hw,
                    dw.as_mut_ptr(),
                    1,
                    c as isize,
                    true,
                    gs.as_ptr().add(b * co * hw),
                    1,
                    hw as isize,
                    xs.as_ptr().add(b * c * hw),
                    hw as isize,
                    1,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    par,
                )
            }
        }
    }
    if let Some(db) = db {
        add_bias_grad(gs, [co, hw], images, db);
    }
}

/// `db +=` each row of image b's `g` (`co × hw`) summed, for b in `images`.
pub(super) fn add_bias_grad(
    gs: &[f32],
    [co, hw]: [usize; 2],
    images: Range<usize>,
    db: &mut [f32],
) {
    for b in images {
        let g = &gs[b * co * hw..(b + 1) * co * hw];
        for (d, row) in db.iter_mut().zip(g.chunks_exact(hw.max(1))) {
            *d += sum(row);
        }
    }
}

/// A sum in 8 lanes (vectorised; one running sum would be a chain of dependent adds).
fn sum(v: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let whole = v.len() / 8 * 8;
    for chunk in v[..whole].chunks_exact(8) {
        for (s, &x) in lanes.iter_mut().zip(chunk) {
            *s += x;
        }
    }
    lanes.iter().sum::<f32>() + v[whole..].iter().sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed strips hold the transposed planes where the kernel reads them: a block of
    /// columns from j0 (a partial last strip), steps from k0 within the chunk (the matrix
    /// kernel's own chunks start past 0 where L2 is small) running over image boundaries.
    #[test]
    fn image_columns_pack_transposed() {
        use mm::Gather;
        let (rows, hw, images) = (40, 7, 6);
        let b: Vec<f32> = (0..images * rows * hw).map(|i| i as f32).collect();
        let cols = ImageCols {
            b: &b,
            rows,
            hw,
            first: 9,
            map: None,
        };
        let (k0, kc, j0, block) = (5, 20, 3, 21);
        let strip_len = strip_len(kc);
        let mut strips = vec![f32::NAN; 2 * strip_len];
        cols.pack(k0, kc, j0, block, &mut strips);
        // Through a map, each column's own: scale and shift by plane, a clamp that cuts.
        let map = InputMap {
            scale: (0..rows).map(|r| 0.01 * (r + 1) as f32).collect(),
            shift: (0..rows).map(|r| -(r as f32)).collect(),
            clamp: (0.0, 9.0),
        };
        let mut mapped = vec![f32::NAN; 2 * strip_len];
        ImageCols {
            map: Some(&map),
            ..cols
        }
        .pack(k0, kc, j0, block, &mut mapped);
        for i in 0..kc {
            let (image, px) = ((9 + k0 + i) / hw, (9 + k0 + i) % hw);
            for j in 0..block {
                let at = (j / NR) * strip_len + i * NR + j % NR;
                let want = b[(image * rows + j0 + j) * hw + px];
                assert_eq!(strips[at], want, "step {i}, column {j}");
                let want = map.plane(j0 + j).apply(want);
                assert_eq!(mapped[at], want, "mapped: step {i}, column {j}");
            }
        }
        assert!(
            mapped.contains(&0.0) && mapped.contains(&9.0),
            "the clamp cuts"
        );
    }

    /// The sums against plain loops over images and pixels: 7x7 maps (chunks that run on
    /// from one image into the next, runs shorter than 16), a partial strip of columns, a
    /// partial panel of rows, more steps than one chunk, a run of images not starting at 0,
    /// and the rows split over the threads; added to what `dw` held.
    #[test]
    fn matches_plain_loops() {
        if !mm::available() {
            return;
        }
        for (a_rows, b_rows, hw, images, split) in [
            (13, 37, 49, 1..12, false),
            (7, 20, 49, 0..3, true),
            (30, 17, 196, 2..5, false),
            (6, 16, 5, 0..7, false),
            // Sums of 588 steps: chunks of 512 and 76, both in bf16 (a chunk of fewer than
            // `mm::BF16_FROM` steps runs in fp32).
            (40, 37, 49, 1..13, false),
            (36, 20, 196, 0..3, true),
        ] {
            let n = images.end;
            let a: Vec<f32> = (0..n * a_rows * hw)
                .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
                .collect();
            let b: Vec<f32> = (0..n * b_rows * hw)
                .map(|i| ((i * 53) % 97) as f32 / 48.0 - 1.0)
                .collect();
            let start: Vec<f32> = (0..a_rows * b_rows).map(|i| i as f32 * 0.01).collect();
            // In bf16 where the filters are large enough for it (`mm::BF16_FROM`): the sums
            // of the operands rounded to bf16.
            let bf16 = mm::bf16_available() && a_rows >= mm::BF16_FROM;
            let to_bf16 = mm::rounded_to_bf16;
            let ways: [(Precision, &dyn Fn(f32) -> f32); 2] =
                [(Precision::Fp32, &|v| v), (Precision::Bf16, &to_bf16)];
            for (precision, round) in ways.into_iter().take(1 + bf16 as usize) {
                let mut want = start.clone();
                for img in images.clone() {
                    for r in 0..a_rows {
                        for j in 0..b_rows {
                            let sum: f64 = (0..hw)
                                .map(|p| {
                                    round(a[(img * a_rows + r) * hw + p]) as f64
                                        * round(b[(img * b_rows + j) * hw + p]) as f64
                                })
                                .sum();
                            want[r * b_rows + j] += sum as f32;
                        }
                    }
                }
                let mut dw = start.clone();
                add(
                    &a,
                    (&b, None),
                    [a_rows, b_rows, hw],
                    images.clone(),
                    &mut dw,
                    split,
                    precision,
                );
                for (i, (&got, &w)) in dw.iter().zip(&want).enumerate() {
                    assert!(
                        (got - w).abs() <= 1e-3 * (1.0 + w.abs()),
                        "{precision:?} {a_rows}x{b_rows} over {hw} px, images {images:?}: \
                         {i} is {got}, want {w}"
                    );
                }
            }
        }
    }
}

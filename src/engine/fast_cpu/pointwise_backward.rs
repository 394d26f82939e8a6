//! The 1x1 convolution's backward pass: the input gradient `Wᵀ · g` and the weight and bias
//! gradients, with the input taken through a joined batch norm where `maps_input`.

use super::*;

/// Whether [`backward_mapped`] takes its output gradient through a batch norm's gradient map
/// for these sizes and gradients: where both gradients go chunk by chunk through the dot
/// products, and no bias gradient is wanted.
pub fn takes_grad_map([n, c, co, hw]: [usize; 4], want_dx: bool, want_w: (bool, bool)) -> bool {
    want_dx && want_w == (true, false) && fused_dx([n, c, co, hw])
}

/// Whether the input gradient is computed chunk by chunk with the weight gradient's dot
/// products (both gradients wanted).
fn fused_dx([n, c, co, hw]: [usize; 4]) -> bool {
    n >= rayon::current_num_threads() && dot_grad::applies([c, co, hw])
}

/// The gradients of [`forward_mapped`] (without clamp) given the output gradient `gs`: the
/// input gradient `Wᵀ · g` per image when `want_dx`, and when `want_dw` the weight gradient
/// `Σ g · xᵀ` over the images and the bias gradient (`g` summed per output channel; zeros
/// unless `want_db` — a pass over all of `g`, 2 % of a Lite0 step, whose convolutions have
/// no bias); the weight gradient taking `xs` through the batch norm `norm` where there is
/// one (the input gradient is the normalised input's), only where [`maps_input`]. With a
/// gradient map `(y, map)`, the output gradient is `map(gs, y)` — `gs` the gradient of the
/// batch norm that reads this 1x1's output `y` (`train::deferred`) — only where
/// [`takes_grad_map`]. `precision`: that of the products, through the matrix kernel
/// (`mm::PackedA::at`) and the dot products (`dot_grad::add_then`).
///
/// With `norm`, also each channel's sums that the batch norm's backward pass starts from
/// (`norm::plane_grad_sums` of the input gradient and `xs`, added in image order), where
/// the input gradient went chunk by chunk with the dot products: each chunk's are taken
/// while it and its rows of `xs` are in cache, which spares batch norm a pass over both
/// (as `depthwise::Geometry::backward_mapped` does plane by plane).
pub fn backward_mapped(
    (xs, norm): (&[f32], Option<&Affine>),
    ws: &[f32],
    (gs, g_map): (&[f32], Option<(&[f32], &GradMap)>),
    [n, c, co, hw]: [usize; 4],
    want_dx: bool,
    (want_dw, want_db): (bool, bool),
    precision: Precision,
) -> (ConvGrads, Option<Vec<(f64, f64)>>) {
    check_operands(xs, ws, None, Some(gs), [n, c, co, hw]);
    assert!(
        norm.is_none() || maps_input([n, c, co, hw]),
        "1x1 gradients: no mapped input here"
    );
    assert!(
        g_map.is_none() || takes_grad_map([n, c, co, hw], want_dx, (want_dw, want_db)),
        "1x1 gradients: no mapped output gradient here"
    );
    let map = norm.map(|f| InputMap::new(f, c));
    let map = map.as_ref();
    // Wᵀ (c × co), packed as the filters of the forward pass are.
    let packed_wt =
        (want_dx && mm::available()).then(|| mm::PackedA::transposed(ws, co, c).at(precision));
    // Large maps with both gradients: the input gradient of each chunk of pixels as the
    // weight gradient's dot products finish it (`dot_grad::add_then`), while the chunk of
    // the output gradient is in cache — apart, each gradient read all of it from memory
    // (Lite0's 16 → 96 expand at 112x112: 154 MB a batch, twice).
    let fused_dx = want_dx && want_dw && fused_dx([n, c, co, hw]);
    let mut dx_fused: Vec<f32> = Vec::with_capacity(if fused_dx { n * c * hw } else { 0 });
    let dx_dst = SendPtr(dx_fused.as_mut_ptr());
    // Per image and channel, the batch norm's two sums over the image's chunks (`norm`
    // with the fused input gradient only).
    let norm_sums = norm.filter(|_| fused_dx);
    let mut sums = vec![(0.0f64, 0.0f64); if norm_sums.is_some() { n * c } else { 0 }];
    let sums_dst = SendPtr(sums.as_mut_ptr());
    // Image b's input gradient at `pixels` (its columns of `Wᵀ · g`), g's rows at `rows`.
    let dx_chunk = |b: usize, pixels: std::ops::Range<usize>, rows: dot_grad::Rows| {
        let packed = packed_wt
            .as_ref()
            .expect("packed where the gradients are fused");
        let out = mm::Out {
            // SAFETY: image b's columns `pixels` of its c rows, inside `dx_fused`'s
            // capacity (`n × c × hw`).
            c: unsafe { dx_dst.get().add(b * c * hw + pixels.start) },
            row0: 0,
            ldc: hw,
            cols: pixels.len(),
            accumulate: false,
            span: mm::Span::ONE,
        };
        // The chunk's rows of g were just read by the dot products (or staged through a
        // gradient map), so the kernel reads them in place: packing them was 40 % of the
        // kernel's time on Lite0's 16 → 96 expand at 112x112 (16 rows of output a column),
        // whose backward pass takes 12 % less of a step without it.
        // SAFETY: AVX2 is there (`dot_grad::applies` asks AVX-512); B is the chunk's co rows
        // of g, `pixels.len()` columns each, where `dot_grad::add_then` says; images' chunks
        // are disjoint, and each image runs on one thread.
        unsafe {
            let b_rows = mm::B::Cached(rows.at, rows.ld);
            mm::multiply(packed, 0..packed.panels(), b_rows, &out, None, Act::NONE)
        };
        if let Some(f) = norm_sums {
            for i in 0..c {
                let at = b * c * hw + i * hw + pixels.start;
                // SAFETY: the chunk's row i of image b, just written above; image b's
                // slots of `sums` are this thread's alone (each image runs on one thread).
                let (dz, slot) = unsafe {
                    (
                        std::slice::from_raw_parts(dx_dst.get().add(at), pixels.len()),
                        &mut *sums_dst.get().add(b * c + i),
                    )
                };
                let (sg, sgx) =
                    super::super::norm::plane_grad_sums(dz, &xs[at..at + pixels.len()], f, i);
                *slot = (slot.0 + sg, slot.1 + sgx);
            }
        }
    };
    let dx = (want_dx && !fused_dx).then(|| {
        if let Some(packed) = &packed_wt {
            // SAFETY: AVX2 is there (checked above); `multiply_images` writes all
            // `n × c × hw` values.
            return unsafe {
                filled(n * c * hw, c * hw, |dst| {
                    multiply_images(packed, (gs, None), [n, co, hw], None, Act::NONE, dst, false);
                })
            };
        }
        let tile = tile_cols(c, hw);
        let tiles = hw.div_ceil(tile);
        let parallelism = parallelism(n * tiles);
        let mut dx = vec![0.0f32; n * c * hw];
        let dst = SendPtr(dx.as_mut_ptr());
        (0..n * tiles).into_par_iter().for_each(|t| {
            let (b, j0) = (t / tiles, (t % tiles) * tile);
            // SAFETY: tiles are disjoint column ranges of disjoint images; `dx` outlives the
            // loop. Wᵀ is W read with its strides swapped.
            unsafe {
                gemm::gemm(
                    c,
                    tile.min(hw - j0),
                    co,
                    dst.get().add(b * c * hw + j0),
                    1,
                    hw as isize,
                    false,
                    ws.as_ptr(),
                    c as isize,
                    1,
                    gs.as_ptr().add(b * co * hw + j0),
                    1,
                    hw as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                )
            }
        });
        dx
    });
    let dw = want_dw.then(|| {
        // The sums over a run of images, `images`, into one accumulator (the weight's
        // layout): each thread sums its own run, then the accumulators are added.
        let run = |images: Range<usize>, par: gemm::Parallelism| {
            let (mut dw, mut db) = (vec![0.0f32; co * c], vec![0.0f32; co]);
            let split = matches!(par, gemm::Parallelism::Rayon(_));
            if fused_dx && !split {
                // Large maps, small result: dot products, nothing packed, and the input
                // gradient of each chunk with them.
                for b in images.clone() {
                    let g = &gs[b * co * hw..(b + 1) * co * hw];
                    let g_map = g_map.map(|(y, m)| (&y[b * co * hw..(b + 1) * co * hw], m));
                    let x = &xs[b * c * hw..(b + 1) * c * hw];
                    dot_grad::add_then(
                        (g, g_map),
                        (x, map),
                        [c, co, hw],
                        &mut dw,
                        precision,
                        |p, rows| dx_chunk(b, p, rows),
                    );
                }
                if want_db {
                    weight_grad::add_bias_grad(gs, [co, hw], images, &mut db);
                }
            } else {
                weight_grad::add_weight_grad(
                    (xs, map),
                    gs,
                    [c, co, hw],
                    images,
                    par,
                    (&mut dw, want_db.then_some(&mut db[..])),
                    precision,
                );
            }
            (dw, db)
        };
        weight_grad::sum_over_images(n, run)
    });
    if fused_dx {
        // SAFETY: every image went through `run`'s dot products above (`n >= threads`: the
        // images split into parts, and `fused_dx` implies the dot products), and
        // `dot_grad::add_then` covers its pixels with chunks, each of whose `c × len` values
        // `dx_chunk` wrote.
        unsafe { dx_fused.set_len(n * c * hw) };
    }
    // Each channel's sums, its images' added in order.
    let totals = norm_sums.map(|_| {
        (0..c)
            .map(|i| {
                (0..n).fold((0.0, 0.0), |(s, t), b| {
                    let (sg, sgx) = sums[b * c + i];
                    (s + sg, t + sgx)
                })
            })
            .collect()
    });
    let grads = ConvGrads {
        x: dx.or(fused_dx.then_some(dx_fused)),
        weight_bias: dw,
    };
    (grads, totals)
}

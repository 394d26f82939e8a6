//! Timing of the training kernels at EfficientNet-Lite0's shapes, batch 32, one kernel at a
//! time (`cargo bench --bench kernels [-- FILTER]`, `benches/kernels.rs`): the numbers a
//! change to a kernel is judged by before a whole step is, where a step's ±10 % spread on a
//! shared machine hides a kernel's 20 %. Each case is run a few times to warm the caches
//! and the allocator, then `rounds` times; the median is printed with its rate (multiply-
//! adds a second for the 1x1s, bytes of the input a second for the depthwise passes).
//!
//! Not a test: nothing is asserted (the kernels' values are the unit tests' business).
//! Run it with the benchmarks' malloc settings (`MALLOC_MMAP_THRESHOLD_` and
//! `MALLOC_TRIM_THRESHOLD_` large): without them every call maps and faults its output
//! afresh, as `graft` itself (mimalloc, purging off) does not.

use super::depthwise::Geometry;
use super::norm::Affine;
use super::{Act, pointwise};
use crate::engine::Precision;
use crate::graph::Conv;
use std::time::Instant;

/// Lite0's 1x1 convolutions on 7x7 and 14x14 maps, where the step's 1x1 products are
/// compute-bound (`[c, co, hw]`), and large-map ones whose weight gradients are dot products.
const POINTWISE: [[usize; 3]; 10] = [
    [1152, 192, 49],
    [192, 1152, 49],
    [672, 112, 196],
    [112, 672, 196],
    [480, 80, 196],
    [80, 480, 196],
    [40, 240, 784],
    [240, 40, 784],
    [24, 144, 3136],
    [16, 96, 12544],
];

/// Lite0's depthwise convolutions on its large maps, its 28x28 strided one and its narrow
/// ones, which go by groups of channels (`[c, h, kernel, stride]`).
const DEPTHWISE: [[usize; 4]; 8] = [
    [32, 112, 3, 1],
    [96, 112, 3, 2],
    [144, 56, 3, 1],
    [144, 56, 5, 2],
    [240, 28, 3, 2],
    [480, 14, 3, 1],
    [672, 14, 5, 1],
    [1152, 7, 5, 1],
];

const BATCH: usize = 32;

/// Times every case whose name contains `filter` (all with an empty one), `rounds` runs
/// each, and prints a line a case.
pub fn run(filter: &str, rounds: usize) {
    let threads = rayon::current_num_threads();
    println!("batch {BATCH}, {threads} threads, median of {rounds} runs");
    for [c, co, hw] in POINTWISE {
        let xs = values(BATCH * c * hw, 1);
        let gs = values(BATCH * co * hw, 2);
        let ws = values(co * c, 3);
        let macs = (BATCH * c * co * hw) as f64;
        for precision in [Precision::Bf16, Precision::Fp32] {
            if precision == Precision::Bf16 && !super::bf16_available() {
                continue;
            }
            let p = format!("{precision:?}").to_lowercase();
            let name = format!("1x1 forward {c}->{co} @{hw} {p}");
            if name.contains(filter) {
                let packed = super::mm::available()
                    .then(|| super::mm::PackedA::new(&ws, co, c).at(precision));
                let dims = [BATCH, c, co, hw];
                let ms = median_ms(rounds, || {
                    pointwise::forward(&xs, &ws, packed.as_ref(), None, dims, Act::NONE)
                });
                report(&name, ms, macs, "GMAC/s");
            }
            // Training's expand 1x1s sum their output for the batch norm after them.
            let name = format!("1x1 forward+moments {c}->{co} @{hw} {p}");
            if name.contains(filter) {
                let dims = [BATCH, c, co, hw];
                let ms = median_ms(rounds, || {
                    pointwise::forward_with_moments(&xs, &ws, None, dims, precision)
                });
                report(&name, ms, macs, "GMAC/s");
            }
            for (part, dx, dw) in [
                ("dx+dw", true, true),
                ("dx", true, false),
                ("dw", false, true),
            ] {
                let name = format!("1x1 backward {part} {c}->{co} @{hw} {p}");
                if !name.contains(filter) {
                    continue;
                }
                let dims = [BATCH, c, co, hw];
                let ms = median_ms(rounds, || {
                    pointwise::backward_mapped(
                        (&xs, None),
                        &ws,
                        (&gs, None),
                        dims,
                        dx,
                        (dw, false),
                        precision,
                    )
                });
                let products = (dx as u8 + dw as u8) as f64;
                report(&name, ms, products * macs, "GMAC/s");
            }
        }
    }
    stem(filter, rounds);
    batch_norm(filter, rounds);
    for [c, h, k, stride] in DEPTHWISE {
        // Lite0's strided convolutions pad as TensorFlow's "same" does (the odd one of the
        // padding at the end: 0 and 1 for 3x3, 1 and 2 for 5x5); the others k / 2 all round.
        let (begin, end) = match stride {
            1 => (k / 2, k / 2),
            _ => ((k - 2) / 2, (k - 1) / 2),
        };
        let conv = Conv {
            strides: [stride; 2],
            pads: [begin, begin, end, end],
            dilations: [1, 1],
            groups: c,
        };
        let geometry =
            Geometry::new([BATCH, c, h, h], [c, 1, k, k], &conv).expect("a depthwise convolution");
        let xs = values(BATCH * c * h * h, 4);
        let ws = values(c * k * k, 5);
        let gs = values(geometry.output_len(), 6);
        let bytes = (xs.len() * 4) as f64;
        let shape = format!("{c}@{h}x{h} {k}x{k} stride {stride}");
        let name = format!("depthwise forward {shape}");
        if name.contains(filter) {
            let ms = median_ms(rounds, || geometry.forward(&xs, &ws, None, Act::NONE));
            report(&name, ms, bytes, "GB/s of input");
        }
        // As training runs it: the input through its batch norm and ReLU6 (a joined batch
        // norm), the output's moments for the batch norm after it.
        let name = format!("depthwise forward+norm+moments {shape}");
        if name.contains(filter) {
            let norm = NormValues::new(c, 7);
            let norm = norm.affine();
            let ms = median_ms(rounds, || {
                geometry.forward_with_moments(&xs, &ws, None, Some(&norm))
            });
            report(&name, ms, bytes, "GB/s of input");
        }
        for (part, dx, dw) in [
            ("dx+dw", true, true),
            ("dx", true, false),
            ("dw", false, true),
        ] {
            let name = format!("depthwise backward {part} {shape}");
            if name.contains(filter) {
                let ms = median_ms(rounds, || geometry.backward(&xs, &ws, &gs, dx, dw));
                report(&name, ms, bytes, "GB/s of input");
            }
        }
    }
}

/// Lite0's stem, a 3x3 stride-2 convolution of the RGB images into 32 channels at 112x112
/// (TensorFlow's "same" padding: 0 before, 1 after), which the dense kernel runs: its
/// forward pass and its weight gradient (the images need no gradient).
fn stem(filter: &str, rounds: usize) {
    let conv = Conv {
        strides: [2, 2],
        pads: [0, 0, 1, 1],
        dilations: [1, 1],
        groups: 1,
    };
    let (x, w) = ([BATCH, 3, 224, 224], [32, 3, 3, 3]);
    let geometry = super::dense::Geometry::new(x, w, &conv).expect("a dense convolution");
    let xs = values(x.iter().product(), 10);
    let ws = values(w.iter().product(), 11);
    let gs = values(BATCH * 32 * 112 * 112, 12);
    let macs = (BATCH * 32 * 112 * 112 * 27) as f64;
    for precision in [Precision::Bf16, Precision::Fp32] {
        if precision == Precision::Bf16 && !super::bf16_available() {
            continue;
        }
        let p = format!("{precision:?}").to_lowercase();
        let name = format!("stem forward 3->32 @112 stride 2 {p}");
        if name.contains(filter) {
            let ms = median_ms(rounds, || {
                let packed = geometry.packed(&ws, precision);
                geometry.forward(&xs, &ws, Some(&packed), None, Act::NONE)
            });
            report(&name, ms, macs, "GMAC/s");
        }
        let name = format!("stem backward dw 3->32 @112 stride 2 {p}");
        if name.contains(filter) {
            let ms = median_ms(rounds, || {
                geometry.weight_gradient(&xs, &ws, &gs, false, precision)
            });
            report(&name, ms, macs, "GMAC/s");
        }
    }
}

/// Lite0's batch norms (`[c, hw]`) whose backward passes sum and write their input
/// gradient themselves (no convolution gave them their sums): the narrow maps' (an
/// expand's output read by a depthwise step that goes by groups of channels, a depthwise
/// output read by a project 1x1 through the matrix kernel). Bytes: the input's.
const NORMS: [[usize; 2]; 4] = [[1152, 49], [672, 196], [480, 196], [240, 784]];

fn batch_norm(filter: &str, rounds: usize) {
    for [c, hw] in NORMS {
        let name = format!("batch norm backward {c}@{hw}");
        if !name.contains(filter) {
            continue;
        }
        let dims = [BATCH, c, hw];
        let xs = values(BATCH * c * hw, 13);
        let gs = values(BATCH * c * hw, 14);
        let norm = NormValues::new(c, 15);
        let norm = norm.affine();
        let ms = median_ms(rounds, || {
            super::norm::backward(&xs, &gs, dims, &norm, None)
        });
        report(&name, ms, (xs.len() * 4) as f64, "GB/s of input");
    }
}

/// A batch norm's statistics and parameters for `c` channels (`seed`: the first of three)
/// and a ReLU6, as the cases' joined batch norms take them.
struct NormValues {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl NormValues {
    fn new(c: usize, seed: usize) -> Self {
        NormValues {
            mean: values(c, seed),
            inv_std: vec![1.5; c],
            gamma: values(c, seed + 1),
            beta: values(c, seed + 2),
        }
    }

    fn affine(&self) -> Affine<'_> {
        Affine {
            mean: &self.mean,
            inv_std: &self.inv_std,
            gamma: &self.gamma,
            beta: &self.beta,
            clamp: (0.0, 6.0),
        }
    }
}

/// `len` values in [-0.5, 0.5), different for each `seed` (no zeros to shortcut).
fn values(len: usize, seed: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5 + 1e-4)
        .collect()
}

/// The median wall time of `rounds` calls of `f` in ms, after three to warm up.
fn median_ms<T>(rounds: usize, mut f: impl FnMut() -> T) -> f64 {
    for _ in 0..3 {
        std::hint::black_box(f());
    }
    let mut ms: Vec<f64> = (0..rounds.max(1))
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

fn report(name: &str, ms: f64, amount: f64, unit: &str) {
    println!("{name:<44} {ms:>8.3} ms {:>8.1} {unit}", amount / ms / 1e6);
}

//! Training batch norm's backward pass: the input gradient written (`backward`,
//! `backward_in_place`) or handed on as a map (`backward_terms`, `GradMap`), and the two sums
//! it starts from, per plane for a pass that has the plane in cache (`plane_grad_sums`).

use super::*;

/// The gradients of [`train_forward`] given the output gradient `gs`: the input gradient
/// (which also flows through the mean and variance), and per channel the gamma and beta
/// gradients. The clamp passes the gradient only where the value was strictly inside its
/// bounds (PyTorch's relu and hardtanh). One task per block of channels sums and then
/// writes their planes, the second read from cache (as in [`train_forward`]). `given`: each
/// channel's [`plane_grad_sums`] totals, where the pass that made `gs` summed them while
/// its planes were in cache; then only the writing pass runs. [`backward_in_place`] where
/// the caller can give `gs` up.
pub fn backward(
    xs: &[f32],
    gs: &[f32],
    dims: [usize; 3],
    f: &Affine,
    given: Option<&[(f64, f64)]>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(gs.len(), xs.len(), "batch norm: gradient length");
    let mut dx: Vec<f32> = Vec::with_capacity(xs.len());
    let planes = GradPlanes {
        g: gs.as_ptr(),
        dx: dx.as_mut_ptr(),
    };
    let (dgamma, dbeta) = backward_planes(xs, planes, dims, f, given);
    // SAFETY: `backward_planes` wrote every plane.
    unsafe { dx.set_len(xs.len()) };
    (dx, dgamma, dbeta)
}

/// [`backward`] with the input gradient written over `gs`: the gamma and beta gradients.
/// Each value is read just before it is overwritten, so the pass fetches no line only to
/// overwrite it, as a new buffer's stores do: 25-30 % less time on EfficientNet-Lite0's
/// large maps (a 154 MB activation with its sums given, 22-24 → 16-17 ms in a timing loop).
pub fn backward_in_place(
    xs: &[f32],
    gs: &mut [f32],
    dims: [usize; 3],
    f: &Affine,
    given: Option<&[(f64, f64)]>,
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(gs.len(), xs.len(), "batch norm: gradient length");
    let planes = GradPlanes {
        g: gs.as_ptr(),
        dx: gs.as_mut_ptr(),
    };
    backward_planes(xs, planes, dims, f, given)
}

/// Where [`backward_planes`] reads the output gradient and writes the input gradient: two
/// buffers, or one (`g == dx`, in place).
#[derive(Clone, Copy)]
struct GradPlanes {
    g: *const f32,
    dx: *mut f32,
}

// SAFETY: each task reads and writes only its own channels' planes.
unsafe impl Send for GradPlanes {}
unsafe impl Sync for GradPlanes {}

impl GradPlanes {
    /// The output gradient's `len` values at `at`.
    ///
    /// # Safety
    /// They lie within the buffer, and no `&mut` to them lives meanwhile.
    unsafe fn g(&self, at: usize, len: usize) -> &[f32] {
        // SAFETY: as the caller promises.
        unsafe { std::slice::from_raw_parts(self.g.add(at), len) }
    }

    /// The input gradient's `len` values at `at`: initialised (the output gradient's, in
    /// place) or not, as `T` says.
    ///
    /// # Safety
    /// They lie within the buffer, no other reference to them lives meanwhile, and `T` is
    /// `f32` only in place.
    #[allow(clippy::mut_from_ref)]
    unsafe fn dx<T>(&self, at: usize, len: usize) -> &mut [T] {
        // SAFETY: as the caller promises.
        unsafe { std::slice::from_raw_parts_mut(self.dx.add(at).cast(), len) }
    }
}

/// A batch norm's input gradient as a map of its output gradient `g` and input `x`, per
/// channel: `a · g' + k · x + e`, `g'` being `g` where the clamp let the value through
/// (`lo < x · scale + shift < hi`, the pre-clamp value as the forward pass computed it) and 0
/// elsewhere. [`backward`] writes it; [`backward_terms`] gives it to a pass that reads `g`
/// and `x` anyway (the 1x1 convolution that wrote `x`: `train::deferred`).
#[derive(Clone, Debug)]
pub struct GradMap {
    channels: Vec<ChannelGrad>,
}

/// One channel's [`GradMap`].
#[derive(Clone, Copy, Debug)]
pub struct ChannelGrad {
    pub a: f32,
    pub k: f32,
    pub e: f32,
    pub scale: f32,
    pub shift: f32,
    pub lo: f32,
    pub hi: f32,
}

impl ChannelGrad {
    /// The input gradient of one value: multiplies, then adds (no fused multiply-add), so
    /// every pass that applies it gives the same bits.
    #[inline(always)]
    pub fn apply(self, g: f32, x: f32) -> f32 {
        let y = x * self.scale + self.shift;
        let g = if (self.lo < y) & (y < self.hi) {
            g
        } else {
            0.0
        };
        self.a * g + self.k * x + self.e
    }
}

impl GradMap {
    pub fn channel(&self, ch: usize) -> ChannelGrad {
        self.channels[ch]
    }

    pub fn channels(&self) -> usize {
        self.channels.len()
    }
}

/// Channel `ch`'s gamma and beta gradients and input-gradient map from its two sums
/// (Σ g', Σ g'·(x − mean)) over `count` values:
/// dx = gamma·inv_std·(g' − Σg'/N − x̂·Σ(g'·x̂)/N), written as `a·g' + k·x + e`.
fn channel_grad(
    f: &Affine,
    ch: usize,
    (sg, sgx): (f64, f64),
    count: f32,
) -> (f32, f32, ChannelGrad) {
    let (dgamma, dbeta) = ((sgx * f.inv_std[ch] as f64) as f32, sg as f32);
    let (scale, shift) = f.channel(ch);
    let a = scale;
    let k = -a * dgamma * f.inv_std[ch] / count;
    let (lo, hi) = f.clamp;
    let map = ChannelGrad {
        a,
        k,
        e: -a * dbeta / count - k * f.mean[ch],
        scale,
        shift,
        lo,
        hi,
    };
    (dgamma, dbeta, map)
}

/// Planes smaller than this go as runs: each image's run of a block's channels (their
/// planes side by side) is one loop, the channels' coefficients spread over the run's values
/// (`Spread`). Plane by plane, a 7x7 plane is three vectors and a remainder: Lite0's
/// 1152-channel 7x7 batch norm backward 1.35-1.73 → 1.16-1.34 ms (`cargo bench --bench
/// kernels -- "batch norm"`, three alternating rounds). 14x14 planes (12 vectors and a
/// remainder) ran no faster as runs, whose loops read three to five coefficients a value.
const RUNS_BELOW: usize = 64;

/// Images whose values the runs' f32 sums take before they are added into the f64 totals.
const RUN_FLUSH_IMAGES: usize = 32;

/// A block of channels' coefficients spread over one image's run of their planes (`hw`
/// values each), value by value, so that a pass over small planes is one loop over the run.
struct Spread(Vec<f32>);

impl Spread {
    fn new(chs: std::ops::Range<usize>, hw: usize, of: impl Fn(usize) -> f32) -> Self {
        let mut spread = Vec::with_capacity(chs.len() * hw);
        for ch in chs {
            spread.resize(spread.len() + hw, of(ch));
        }
        Spread(spread)
    }
}

/// The output gradient's `len` values at `at`.
type GradAt<'g> = dyn Fn(usize, usize) -> &'g [f32] + Sync + 'g;

/// The two sums of channels `chs` over every image (`g_at(at, len)`: the output gradient's
/// `len` values at `at`).
fn block_totals(
    xs: &[f32],
    g_at: &GradAt,
    chs: std::ops::Range<usize>,
    dims @ [n, c, hw]: [usize; 3],
    f: &Affine,
) -> Vec<(f64, f64)> {
    if hw < RUNS_BELOW {
        return run_totals(xs, g_at, chs, dims, f);
    }
    with_avx512(
        #[inline(always)]
        || {
            let mut sums: Vec<Sums> = chs.clone().map(|_| Sums::new()).collect();
            for b in 0..n {
                prefetch_next_run(xs, b, chs.clone(), [n, c, hw]);
                if b + 1 < n {
                    for ch in chs.clone() {
                        super::super::lanes::prefetch_l2(g_at(((b + 1) * c + ch) * hw, hw));
                    }
                }
                for (ch, sums) in chs.clone().zip(&mut sums) {
                    let at = (b * c + ch) * hw;
                    add_grad_sums(sums, g_at(at, hw), &xs[at..at + hw], f, ch);
                }
            }
            sums.into_iter().map(Sums::total).collect()
        },
    )
}

/// [`block_totals`] over each image's run of the block's channels: per value of the run,
/// f32 sums over the images (flushed into the channels' f64 totals every
/// [`RUN_FLUSH_IMAGES`]), with the pre-clamp value computed as the forward pass did.
fn run_totals(
    xs: &[f32],
    g_at: &GradAt,
    chs: std::ops::Range<usize>,
    dims @ [n, c, hw]: [usize; 3],
    f: &Affine,
) -> Vec<(f64, f64)> {
    let len = chs.len() * hw;
    let scale = Spread::new(chs.clone(), hw, |ch| f.channel(ch).0);
    let shift = Spread::new(chs.clone(), hw, |ch| f.channel(ch).1);
    let mean = Spread::new(chs.clone(), hw, |ch| f.mean[ch]);
    let (lo, hi) = f.clamp;
    let mut totals = vec![(0.0f64, 0.0f64); chs.len()];
    let (mut s, mut s2) = (vec![0.0f32; len], vec![0.0f32; len]);
    with_avx512(
        #[inline(always)]
        || {
            for b in 0..n {
                let at = (b * c + chs.start) * hw;
                prefetch_next_run(xs, b, chs.clone(), dims);
                if b + 1 < n {
                    super::super::lanes::prefetch_l2(g_at(at + c * hw, len));
                }
                let (g, x) = (g_at(at, len), &xs[at..at + len]);
                let sums = s.iter_mut().zip(s2.iter_mut());
                let coefficients = scale.0.iter().zip(&shift.0).zip(&mean.0);
                for ((s, s2), ((&g, &x), ((&scale, &shift), &mean))) in
                    sums.zip(g.iter().zip(x).zip(coefficients))
                {
                    let y = x * scale + shift;
                    let g = if (lo < y) & (y < hi) { g } else { 0.0 };
                    *s += g;
                    *s2 += g * (x - mean);
                }
                if (b + 1) % RUN_FLUSH_IMAGES == 0 || b + 1 == n {
                    let planes = s.chunks_exact_mut(hw).zip(s2.chunks_exact_mut(hw));
                    for (t, (p, p2)) in totals.iter_mut().zip(planes) {
                        t.0 += p.iter().map(|&v| v as f64).sum::<f64>();
                        t.1 += p2.iter().map(|&v| v as f64).sum::<f64>();
                        p.fill(0.0);
                        p2.fill(0.0);
                    }
                }
            }
        },
    );
    totals
}

/// [`backward`]'s gamma and beta gradients and its input gradient as a map, unwritten: a
/// pass over `gs` and `xs` for the sums unless `given`, none otherwise.
pub fn backward_terms(
    xs: &[f32],
    gs: &[f32],
    dims @ [n, c, hw]: [usize; 3],
    f: &Affine,
    given: Option<&[(f64, f64)]>,
) -> (GradMap, Vec<f32>, Vec<f32>) {
    assert!(
        xs.len() == n * c * hw && gs.len() == xs.len(),
        "batch norm: lengths"
    );
    assert!(given.is_none_or(|g| g.len() == c), "batch norm: given sums");
    f.check(c);
    let totals: Vec<(f64, f64)> = match given {
        Some(given) => given.to_vec(),
        None => {
            let per = channel_blocks(c, hw);
            (0..c.div_ceil(per))
                .into_par_iter()
                .flat_map_iter(|block| {
                    let chs = block * per..((block + 1) * per).min(c);
                    block_totals(xs, &|at, len| &gs[at..at + len], chs, dims, f)
                })
                .collect()
        }
    };
    let count = (n * hw).max(1) as f32;
    let mut map = GradMap {
        channels: Vec::with_capacity(c),
    };
    let (mut dgamma, mut dbeta) = (Vec::with_capacity(c), Vec::with_capacity(c));
    for (ch, t) in totals.into_iter().enumerate() {
        let (dg, db, m) = channel_grad(f, ch, t, count);
        dgamma.push(dg);
        dbeta.push(db);
        map.channels.push(m);
    }
    (map, dgamma, dbeta)
}

fn backward_planes(
    xs: &[f32],
    planes: GradPlanes,
    dims @ [n, c, hw]: [usize; 3],
    f: &Affine,
    given: Option<&[(f64, f64)]>,
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(xs.len(), n * c * hw, "batch norm: input length");
    assert!(given.is_none_or(|g| g.len() == c), "batch norm: given sums");
    f.check(c);
    let count = (n * hw).max(1) as f32;
    let in_place = std::ptr::eq(planes.g, planes.dx);
    let per = channel_blocks(c, hw);
    let blocks: Vec<Vec<(f32, f32)>> = (0..c.div_ceil(per))
        .into_par_iter()
        .map(|block| {
            let chs = block * per..((block + 1) * per).min(c);
            // SAFETY: the planes (b, ch) of the channels in `chs` are this task's alone,
            // within both buffers (`xs.len()` values each); the slice lives only while they
            // are read.
            let g_at = |at: usize, len: usize| unsafe { planes.g(at, len) };
            // Σ g (beta's gradient) and Σ g·(x - mean) (gamma's, times inv_std), with g
            // already through the clamp: given, or summed here.
            let totals: Vec<(f64, f64)> = match given {
                Some(given) => given[chs.clone()].to_vec(),
                None => block_totals(xs, &g_at, chs.clone(), dims, f),
            };
            let (grads, maps): (Vec<(f32, f32)>, Vec<ChannelGrad>) = chs
                .clone()
                .zip(totals)
                .map(|(ch, t)| {
                    let (dgamma, dbeta, map) = channel_grad(f, ch, t, count);
                    ((dgamma, dbeta), map)
                })
                .unzip();
            if hw < RUNS_BELOW {
                let first_pass = given.is_some();
                apply_runs(xs, planes, (&maps, f.clamp), chs.clone(), dims, first_pass);
                return grads;
            }
            // One call into the vector code for the whole block (see `train_forward`).
            with_avx512(
                #[inline(always)]
                || {
                    for b in 0..n {
                        // With the sums given, this is the first pass over the block.
                        if given.is_some() {
                            prefetch_next_run(xs, b, chs.clone(), dims);
                            if b + 1 < n {
                                for ch in chs.clone() {
                                    let at = ((b + 1) * c + ch) * hw;
                                    super::super::lanes::prefetch_l2(g_at(at, hw));
                                }
                            }
                        }
                        for (ch, &map) in chs.clone().zip(&maps) {
                            let at = (b * c + ch) * hw;
                            let xs = &xs[at..at + hw];
                            if in_place {
                                // SAFETY: as above; in place, so the plane holds the output
                                // gradient, each value of which its input gradient replaces.
                                let d: &mut [f32] = unsafe { planes.dx(at, hw) };
                                for (d, &x) in d.iter_mut().zip(xs) {
                                    *d = map.apply(*d, x);
                                }
                            } else {
                                let gs = g_at(at, hw);
                                // SAFETY: as above; `dx` is a buffer of its own.
                                let d: &mut [MaybeUninit<f32>] = unsafe { planes.dx(at, hw) };
                                for ((d, &g), &x) in d.iter_mut().zip(gs).zip(xs) {
                                    d.write(map.apply(g, x));
                                }
                            }
                        }
                    }
                },
            );
            grads
        })
        .collect();
    blocks.into_iter().flatten().unzip()
}

/// [`backward_planes`]' writing pass over each image's run of the block's channels `chs`
/// (`maps`: theirs, and the clamp), each value through its channel's map as
/// `ChannelGrad::apply` computes it (the same bits as plane by plane). `first_pass`: the
/// sums were given, so the runs are not in cache yet and the next image's is fetched ahead.
fn apply_runs(
    xs: &[f32],
    planes: GradPlanes,
    (maps, (lo, hi)): (&[ChannelGrad], (f32, f32)),
    chs: std::ops::Range<usize>,
    dims @ [n, c, hw]: [usize; 3],
    first_pass: bool,
) {
    let len = chs.len() * hw;
    let of = |field: fn(&ChannelGrad) -> f32| Spread::new(0..maps.len(), hw, |i| field(&maps[i]));
    let (a, k, e) = (of(|m| m.a), of(|m| m.k), of(|m| m.e));
    let (scale, shift) = (of(|m| m.scale), of(|m| m.shift));
    let in_place = std::ptr::eq(planes.g, planes.dx);
    with_avx512(
        #[inline(always)]
        || {
            for b in 0..n {
                let at = (b * c + chs.start) * hw;
                if first_pass && b + 1 < n {
                    prefetch_next_run(xs, b, chs.clone(), dims);
                    // SAFETY: the next image's run of these channels: this task's alone.
                    super::super::lanes::prefetch_l2(unsafe { planes.g(at + c * hw, len) });
                }
                let x = &xs[at..at + len];
                // Each value's map, as the run's coefficients give it.
                let maps =
                    a.0.iter()
                        .zip(&k.0)
                        .zip(&e.0)
                        .zip(&scale.0)
                        .zip(&shift.0)
                        .map(|((((&a, &k), &e), &scale), &shift)| ChannelGrad {
                            a,
                            k,
                            e,
                            scale,
                            shift,
                            lo,
                            hi,
                        });
                if in_place {
                    // SAFETY: as above; in place, so the run holds the output gradient,
                    // each value of which its input gradient replaces.
                    let d: &mut [f32] = unsafe { planes.dx(at, len) };
                    for ((d, &x), map) in d.iter_mut().zip(x).zip(maps) {
                        *d = map.apply(*d, x);
                    }
                } else {
                    // SAFETY: as above; `dx` is a buffer of its own.
                    let (g, d): (&[f32], &mut [MaybeUninit<f32>]) =
                        unsafe { (planes.g(at, len), planes.dx(at, len)) };
                    for ((d, (&g, &x)), map) in d.iter_mut().zip(g.iter().zip(x)).zip(maps) {
                        d.write(map.apply(g, x));
                    }
                }
            }
        },
    );
}

/// Adds one plane of channel `ch` to the sums [`backward`] starts from: Σ g and
/// Σ g·(x - mean), g zero where the clamp cut (the pre-clamp value computed as the forward
/// pass did, so the same values are cut).
#[inline(always)]
fn add_grad_sums(sums: &mut Sums, g: &[f32], x: &[f32], f: &Affine, ch: usize) {
    let (scale, shift) = f.channel(ch);
    let (mean, (lo, hi)) = (f.mean[ch], f.clamp);
    sums.add(
        g,
        x,
        #[inline(always)]
        |g, x| {
            let y = x * scale + shift;
            let g = if (lo < y) & (y < hi) { g } else { 0.0 };
            (g, g * (x - mean))
        },
    );
}

/// [`backward`]'s two sums over one plane (`g`, `x`) of channel `ch`, for a pass that has
/// the plane in cache (a depthwise convolution's input gradient, `depthwise::backward_mapped`);
/// a channel's totals are its planes' sums added in image order.
pub fn plane_grad_sums(g: &[f32], x: &[f32], f: &Affine, ch: usize) -> (f64, f64) {
    assert_eq!(g.len(), x.len(), "batch norm: plane lengths");
    with_avx512(
        #[inline(always)]
        || {
            let mut sums = Sums::new();
            add_grad_sums(&mut sums, g, x, f, ch);
            sums.total()
        },
    )
}

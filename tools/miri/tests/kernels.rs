//! The kernels against plain loops on small shapes (small enough for Miri).

use graft_kernels_miri::Act;
use graft_kernels_miri::depthwise::Geometry;
use graft_kernels_miri::graph::Conv;
use graft_kernels_miri::norm::{self, Affine};

fn seq(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

/// Depthwise convolution, forward and backward, the slow way.
struct Naive {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    d: usize,
    p: [usize; 4],
}

impl Naive {
    fn out(&self) -> (usize, usize) {
        let span = self.d * (self.k - 1) + 1;
        (
            (self.h + self.p[0] + self.p[2] - span) / self.s + 1,
            (self.w + self.p[1] + self.p[3] - span) / self.s + 1,
        )
    }

    /// Calls `f(out index, in index or None, tap)` for every output and tap.
    fn each(&self, mut f: impl FnMut(usize, Option<usize>, usize, usize)) {
        let (oh, ow) = self.out();
        for b in 0..self.n {
            for ch in 0..self.c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let o = ((b * self.c + ch) * oh + oy) * ow + ox;
                        for ki in 0..self.k {
                            for kj in 0..self.k {
                                let iy = (oy * self.s + ki * self.d) as isize - self.p[0] as isize;
                                let ix = (ox * self.s + kj * self.d) as isize - self.p[1] as isize;
                                let inside = iy >= 0
                                    && ix >= 0
                                    && (iy as usize) < self.h
                                    && (ix as usize) < self.w;
                                let i = inside.then(|| {
                                    ((b * self.c + ch) * self.h + iy as usize) * self.w
                                        + ix as usize
                                });
                                f(o, i, ch, ki * self.k + kj);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn depthwise_forward_and_backward_match_plain_loops() {
    for (k, s, d, p, h, w) in [
        (3, 1, 1, [1, 1, 1, 1], 5, 7),
        (3, 2, 1, [1, 1, 1, 1], 6, 9),
        (3, 1, 2, [2, 2, 2, 2], 5, 5),
        (5, 2, 1, [2, 1, 2, 1], 7, 11),
    ] {
        let nv = Naive {
            n: 2,
            c: 3,
            h,
            w,
            k,
            s,
            d,
            p,
        };
        let conv = Conv {
            strides: [s, s],
            pads: p,
            dilations: [d, d],
            groups: 3,
        };
        let g = Geometry::new([2, 3, h, w], [3, 1, k, k], &conv).expect("a depthwise geometry");
        let taps = k * k;
        let (xs, ws, bs) = (seq(2 * 3 * h * w, 1), seq(3 * taps, 2), seq(3, 3));
        let y = g.forward(&xs, &ws, Some(&bs), Act::NONE);
        let mut want = vec![0.0f32; g.output_len()];
        for (o, v) in want.iter_mut().enumerate() {
            *v = bs[(o / (g.oh * g.ow)) % 3];
        }
        nv.each(|o, i, ch, t| {
            if let Some(i) = i {
                want[o] += ws[ch * taps + t] * xs[i];
            }
        });
        close(&y, &want, &format!("forward k{k} s{s} d{d}"));

        let gs = seq(g.output_len(), 4);
        let grads = g.backward(&xs, &ws, &gs, true, true);
        let (mut dx, mut dw, mut db) = (
            vec![0.0f32; xs.len()],
            vec![0.0f32; ws.len()],
            vec![0.0f32; 3],
        );
        for (o, v) in gs.iter().enumerate() {
            db[(o / (g.oh * g.ow)) % 3] += v;
        }
        nv.each(|o, i, ch, t| {
            if let Some(i) = i {
                dx[i] += gs[o] * ws[ch * taps + t];
                dw[ch * taps + t] += gs[o] * xs[i];
            }
        });
        close(grads.x.as_ref().unwrap(), &dx, "input gradient");
        let (gw, gb) = grads.weight_bias.as_ref().unwrap();
        close(gw, &dw, "weight gradient");
        close(gb, &db, "bias gradient");

        // Through a batch norm and clamp applied as the planes are staged: the plain pass on
        // the normalised input, and batch norm's gradient sums per plane.
        let (mean, inv_std, gamma, beta) = (seq(3, 5), vec![1.5f32; 3], seq(3, 6), seq(3, 7));
        let f = Affine {
            mean: &mean,
            inv_std: &inv_std,
            gamma: &gamma,
            beta: &beta,
            clamp: (0.0, 0.5),
        };
        let z: Vec<f32> = xs
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let (scale, shift) = f.channel(i / (h * w) % 3);
                (x * scale + shift).clamp(0.0, 0.5)
            })
            .collect();
        let mapped = g.forward_mapped(&xs, &ws, Some(&bs), Act::NONE, Some(&f));
        close(
            &mapped,
            &g.forward(&z, &ws, Some(&bs), Act::NONE),
            "mapped forward",
        );
        let (grads, sums) = g.backward_mapped(&xs, Some(&f), &ws, (&gs, None), true, true);
        let plain = g.backward(&z, &ws, &gs, true, true);
        close(
            grads.x.as_ref().unwrap(),
            plain.x.as_ref().unwrap(),
            "mapped input gradient",
        );
        let ((gw, _), (pw, _)) = (grads.weight_bias.unwrap(), plain.weight_bias.unwrap());
        close(&gw, &pw, "mapped weight gradient");
        // Plane by plane only (under Miri always; on AVX-512 these narrow maps go by groups).
        let dz = plain.x.unwrap();
        for (ch, &(sg, sgx)) in sums.iter().flatten().enumerate() {
            let (mut want_g, mut want_gx) = (0.0f32, 0.0f32);
            for b in 0..2 {
                for i in (b * 3 + ch) * h * w..(b * 3 + ch + 1) * h * w {
                    if z[i] > 0.0 && z[i] < 0.5 {
                        want_g += dz[i];
                        want_gx += dz[i] * (xs[i] - mean[ch]);
                    }
                }
            }
            close(
                &[sg as f32, sgx as f32],
                &[want_g, want_gx],
                "batch norm's sums",
            );
        }
    }
}

#[test]
fn batch_norm_with_clamp_matches_plain_loops() {
    let (n, c, hw) = (3, 2, 5);
    let xs: Vec<f32> = seq(n * c * hw, 5).iter().map(|v| v * 4.0 + 100.0).collect();
    let (gamma, beta) = (vec![1.5, 0.7], vec![0.1, -0.2]);
    let norm::Normalized {
        out: y,
        mean,
        var,
        inv_std,
    } = norm::train_forward(&xs, [n, c, hw], &gamma, &beta, 1e-5, (0.0, 0.8));
    let count = (n * hw) as f32;
    for ch in 0..c {
        let vals: Vec<f32> = (0..n)
            .flat_map(|b| xs[(b * c + ch) * hw..(b * c + ch + 1) * hw].to_vec())
            .collect();
        let m = vals.iter().sum::<f32>() / count;
        let v = vals.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / count;
        close(&[mean[ch], var[ch]], &[m, v], "statistics");
    }
    for ch in 0..c {
        close(
            &[inv_std[ch]],
            &[1.0 / (var[ch] + 1e-5).sqrt()],
            "inverse deviation",
        );
    }
    let f = Affine {
        mean: &mean,
        inv_std: &inv_std,
        gamma: &gamma,
        beta: &beta,
        clamp: (0.0, 0.8),
    };
    // Inference's one pass with the same statistics gives the same output.
    close(
        &norm::normalize(&xs, [n, c, hw], &f),
        &y,
        "running statistics",
    );
    let gs = seq(xs.len(), 6);
    let (dx, dgamma, dbeta) = norm::backward(&xs, &gs, [n, c, hw], &f, None);
    // Written over the gradient itself: the same values.
    let mut over = gs.clone();
    let (dgamma_over, dbeta_over) = norm::backward_in_place(&xs, &mut over, [n, c, hw], &f, None);
    close(&over, &dx, "input gradient in place");
    close(&dgamma_over, &dgamma, "gamma gradient in place");
    close(&dbeta_over, &dbeta, "beta gradient in place");
    let at = |b: usize, ch: usize, j: usize| (b * c + ch) * hw + j;
    for ch in 0..c {
        let (mut sg, mut sgx) = (0.0f32, 0.0f32);
        for b in 0..n {
            for j in 0..hw {
                let i = at(b, ch, j);
                let xhat = (xs[i] - mean[ch]) * inv_std[ch];
                let pre = gamma[ch] * xhat + beta[ch];
                close(&[y[i]], &[pre.clamp(0.0, 0.8)], "output");
                let g = if pre > 0.0 && pre < 0.8 { gs[i] } else { 0.0 };
                sg += g;
                sgx += g * xhat;
            }
        }
        close(
            &[dbeta[ch], dgamma[ch]],
            &[sg, sgx],
            "gamma and beta gradients",
        );
        for b in 0..n {
            for j in 0..hw {
                let i = at(b, ch, j);
                let xhat = (xs[i] - mean[ch]) * inv_std[ch];
                let pre = gamma[ch] * xhat + beta[ch];
                let g = if pre > 0.0 && pre < 0.8 { gs[i] } else { 0.0 };
                let want = gamma[ch] * inv_std[ch] / count * (count * g - sg - xhat * sgx);
                close(&[dx[i]], &[want], "input gradient");
            }
        }
    }
}

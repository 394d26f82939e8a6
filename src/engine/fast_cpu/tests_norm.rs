//! Batch norm's training backward pass on slices (`norm_backward.rs`): written in place or
//! not, and as the map a deferred gradient is staged through.

use super::*;

/// Batch norm's backward pass written over the output gradient (`norm::backward_in_place`)
/// gives what it writes to a new buffer (`norm::backward`), to the bit, whether it sums the
/// gradient itself or is given the sums: the same expressions, only where they are stored.
/// Each value is its channel's map (`norm::backward_terms`, as a deferred gradient is
/// staged) to the bit, and the sums it takes are those given to rounding — on small planes,
/// which go as runs of channels, and on larger ones, plane by plane.
#[test]
fn batch_norm_backward_in_place_matches_a_new_buffer() {
    // 7x9 planes (a masked tail in the sums plane by plane), 15x20 ones; a clamp that cuts
    // at both bounds.
    for hw in [63, 300] {
        batch_norm_backward_case([3, 5, hw]);
    }
}

fn batch_norm_backward_case(dims @ [n, c, hw]: [usize; 3]) {
    let (xs, gs) = (seq(n * c * hw, 1), seq(n * c * hw, 2));
    let (mean, inv_std) = (seq(c, 3), vec![1.5; c]);
    let (gamma, beta) = (seq(c, 4), seq(c, 5));
    let f = norm::Affine {
        mean: &mean,
        inv_std: &inv_std,
        gamma: &gamma,
        beta: &beta,
        clamp: (-0.3, 0.5),
    };
    let sums: Vec<(f64, f64)> = (0..c)
        .map(|ch| {
            (0..n).fold((0.0, 0.0), |(s, sx), b| {
                let at = (b * c + ch) * hw;
                let (p, q) = norm::plane_grad_sums(&gs[at..at + hw], &xs[at..at + hw], &f, ch);
                (s + p, sx + q)
            })
        })
        .collect();
    for given in [None, Some(&sums[..])] {
        let (dx, dgamma, dbeta) = norm::backward(&xs, &gs, dims, &f, given);
        let mut over = gs.clone();
        let (dgamma_over, dbeta_over) = norm::backward_in_place(&xs, &mut over, dims, &f, given);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&over),
            bits(&dx),
            "input gradient, sums given: {}",
            given.is_some()
        );
        assert_eq!(bits(&dgamma_over), bits(&dgamma));
        assert_eq!(bits(&dbeta_over), bits(&dbeta));
        assert_ne!(over, gs, "the gradient was written over");
        let (map, dgamma_terms, dbeta_terms) = norm::backward_terms(&xs, &gs, dims, &f, given);
        let mapped: Vec<f32> = (0..n * c * hw)
            .map(|i| map.channel(i / hw % c).apply(gs[i], xs[i]))
            .collect();
        assert_eq!(bits(&dx), bits(&mapped), "{dims:?}: each value its map");
        let near = |a: &[f32], b: &[f32]| {
            let scale = b.iter().fold(1e-30f32, |m, v| m.max(v.abs()));
            a.iter().zip(b).all(|(a, b)| (a - b).abs() <= 1e-5 * scale)
        };
        assert!(near(&dgamma, &dgamma_terms) && near(&dbeta, &dbeta_terms));
        let (given_gamma, given_beta): (Vec<f32>, Vec<f32>) = sums
            .iter()
            .enumerate()
            .map(|(ch, &(sg, sgx))| ((sgx * inv_std[ch] as f64) as f32, sg as f32))
            .unzip();
        assert!(
            near(&dgamma, &given_gamma) && near(&dbeta, &given_beta),
            "{dims:?}: the sums taken are those given"
        );
    }
}

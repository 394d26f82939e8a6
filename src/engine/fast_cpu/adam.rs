//! One Adam step of one parameter on flex tensors, in one pass over its values: the weight
//! decay, both moments, their bias corrections and the update together. burn's Adam runs a
//! dozen tensor ops per parameter, each a pass over memory into a buffer of its own (Lite0
//! fine-tuning: 17–21 ms a step for 4.7 M parameters). `train::adam` keeps the moments.

use super::{enabled, flex_view, unique_values_mut, with_avx512, wrap};
use burn::backend::Flex;
use burn::tensor::{Device, Tensor};
use rayon::prelude::*;

/// Values a task updates: a few hundred KB of the four arrays, enough to pay for the task.
const TASK: usize = 1 << 14;

/// Whether the fused step runs for parameters on `device` (flex; `GRAFT_FAST_CPU=0` turns it
/// off with the other kernels).
pub fn adam_runs_on(device: &Device) -> bool {
    enabled() && *device == Device::flex()
}

/// The constants of one step: burn's `AdaptiveMomentum` at step `time` (1 for the first),
/// the same expressions in f32 in the same order, so the values are burn's to the bit.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    lr: f32,
    beta_1: f32,
    beta_2: f32,
    /// `√(1 − β₂ᵗ) / (1 − β₁ᵗ)`.
    factor: f32,
    /// `ε · √(1 − β₂ᵗ)`.
    epsilon: f32,
    /// The L2 penalty (`g + p · penalty`), burn's `WeightDecay`.
    decay: Option<f32>,
}

impl AdamStep {
    pub fn new(
        lr: f64,
        (beta_1, beta_2): (f32, f32),
        epsilon: f32,
        decay: Option<f32>,
        time: usize,
    ) -> Self {
        let t = time as i32;
        let corrected = (1.0 - beta_2.powi(t)).sqrt();
        AdamStep {
            lr: lr as f32,
            beta_1,
            beta_2,
            factor: corrected / (1.0 - beta_1.powi(t)),
            epsilon: epsilon * corrected,
            decay,
        }
    }

    /// One value: `p` and its moments `m`, `v` updated from the gradient `g`. A first step
    /// starts from zero moments, which gives burn's first-step values exactly (`0 · β + x`
    /// is `x`).
    #[inline(always)]
    fn apply(&self, p: &mut f32, g: f32, m: &mut f32, v: &mut f32) {
        let g = match self.decay {
            Some(penalty) => *p * penalty + g,
            None => g,
        };
        *m = *m * self.beta_1 + g * (1.0 - self.beta_1);
        *v = *v * self.beta_2 + g * g * (1.0 - self.beta_2);
        let update = *m * self.factor / (v.sqrt() + self.epsilon);
        *p -= update * self.lr;
    }

    /// [`Self::apply`] over slices of equal length, in parallel tasks compiled for the
    /// widest vectors.
    fn run(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        assert!(
            g.len() == p.len() && m.len() == p.len() && v.len() == p.len(),
            "Adam: parameter, gradient and moments differ in length"
        );
        let s = *self;
        p.par_chunks_mut(TASK)
            .zip(g.par_chunks(TASK))
            .zip(m.par_chunks_mut(TASK))
            .zip(v.par_chunks_mut(TASK))
            .for_each(|(((p, g), m), v)| {
                with_avx512(
                    #[inline(always)]
                    || {
                        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
                            s.apply(p, g, m, v);
                        }
                    },
                )
            });
    }
}

/// One step of a parameter (`param`, a flex tensor, not autodiff) from its gradient: the
/// moments `m` and `v` (one value per parameter value) updated, and the new parameter — in
/// its own buffer when no other tensor shares it (a kept copy of the best weights does).
/// Either tensor may be a strided view (a dense layer's gradient is a transposed one).
/// `Err(param)` when either is not a flex f32 tensor of the moments' length.
pub fn adam_step<const D: usize>(
    param: Tensor<D>,
    grad: &Tensor<D>,
    m: &mut [f32],
    v: &mut [f32],
    step: &AdamStep,
) -> Result<Tensor<D>, Box<Tensor<D>>> {
    let (Some(_), Some(g)) = (flex_view(&param), flex_view(grad)) else {
        return Err(Box::new(param));
    };
    let g = if g.as_slice::<f32>().is_some() {
        g
    } else {
        g.to_contiguous()
    };
    let g = g.as_slice::<f32>().expect("made contiguous");
    if g.len() != m.len() || g.len() != v.len() || param.dims() != grad.dims() {
        return Err(Box::new(param));
    }
    let shape = param.dims();
    let Ok(mut p) = param.try_into_primitive::<Flex>() else {
        unreachable!("checked by flex_view() above")
    };
    if let Some(values) = unique_values_mut(&mut p) {
        step.run(values, g, m, v);
        return Ok(Tensor::from_primitive::<Flex>(p));
    }
    // Shared, or a view: the values in order into a buffer of their own.
    let mut values = match p.as_slice::<f32>() {
        Some(s) => s.to_vec(),
        None => p
            .to_contiguous()
            .as_slice::<f32>()
            .expect("contiguous")
            .to_vec(),
    };
    step.run(&mut values, g, m, v);
    Ok(wrap(values, shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    /// The pass gives what burn's Adam formula gives with burn's tensor ops, op by op, to
    /// the bit: three steps (the first from zero moments), with and without weight decay,
    /// over more values than one task holds.
    #[test]
    fn the_pass_is_burns_formula() {
        let device = Device::flex();
        let len = TASK + 37;
        let val = |i: usize, s: usize| ((i * 7919 + s * 104_729) % 401) as f32 / 200.0 - 1.0;
        let t = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [len]), &device);
        let read = |t: &Tensor<1>| t.to_data().try_to_vec::<f32>().expect("f32");
        for decay in [None, Some(0.01f32)] {
            let (beta_1, beta_2, epsilon) = (0.9f32, 0.999f32, 1e-8f32);
            let mut param = t((0..len).map(|i| val(i, 1)).collect());
            let (mut m, mut v) = (vec![0.0f32; len], vec![0.0f32; len]);
            let mut want_p = param.clone();
            let (mut want_m, mut want_v): (Option<Tensor<1>>, Option<Tensor<1>>) = (None, None);
            for time in 1..=3 {
                let grad = t((0..len).map(|i| val(i, 2 + time)).collect());
                let lr = 0.01 / time as f64;
                // burn's Adam, as burn-optim writes it.
                let mut g = grad.clone();
                if let Some(penalty) = decay {
                    g = want_p.clone().mul_scalar(penalty).add(g);
                }
                let m1 = match want_m.take() {
                    Some(m) => m.mul_scalar(beta_1).add(g.clone().mul_scalar(1.0 - beta_1)),
                    None => g.clone().mul_scalar(1.0 - beta_1),
                };
                let m2 = match want_v.take() {
                    Some(v) => v
                        .mul_scalar(beta_2)
                        .add(g.square().mul_scalar(1.0 - beta_2)),
                    None => g.square().mul_scalar(1.0 - beta_2),
                };
                let corrected = (1.0 - beta_2.powi(time as i32)).sqrt();
                let factor = corrected / (1.0 - beta_1.powi(time as i32));
                let update = m1
                    .clone()
                    .mul_scalar(factor)
                    .div(m2.clone().sqrt().add_scalar(epsilon * corrected));
                want_p = want_p - update.mul_scalar(lr);
                (want_m, want_v) = (Some(m1), Some(m2));

                let step = AdamStep::new(lr, (beta_1, beta_2), epsilon, decay, time);
                param = adam_step(param, &grad, &mut m, &mut v, &step).expect("flex tensors");
                assert_eq!(
                    read(&param),
                    read(&want_p),
                    "{decay:?} step {time}: parameter"
                );
                assert_eq!(
                    m,
                    read(want_m.as_ref().unwrap()),
                    "step {time}: first moment"
                );
                assert_eq!(
                    v,
                    read(want_v.as_ref().unwrap()),
                    "step {time}: second moment"
                );
            }
        }
    }

    /// A transposed gradient (a strided view, as a dense layer's is) steps each value with
    /// its own gradient.
    #[test]
    fn a_strided_gradient_is_read_in_order() {
        let device = Device::flex();
        let param = Tensor::<2>::from_data(TensorData::new(vec![0.0f32; 6], [2, 3]), &device);
        let grad = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, -1.0, 2.0, -2.0, 3.0, -3.0], [3, 2]),
            &device,
        )
        .transpose();
        let (mut m, mut v) = (vec![0.0; 6], vec![0.0; 6]);
        let step = AdamStep::new(0.1, (0.9, 0.999), 1e-8, None, 1);
        let new = adam_step(param, &grad, &mut m, &mut v, &step).expect("flex tensors");
        // A first step moves each value by lr against its gradient's sign.
        let got = new.to_data().try_to_vec::<f32>().unwrap();
        // Row 0's gradient is [1, 2, 3], row 1's [-1, -2, -3].
        let want = [-0.1f32, -0.1, -0.1, 0.1, 0.1, 0.1];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{got:?}");
        }
    }

    /// A parameter another tensor shares is updated into a buffer of its own: the other
    /// tensor keeps its values.
    #[test]
    fn a_shared_parameter_is_not_overwritten() {
        let device = Device::flex();
        let param = Tensor::<1>::from_data(TensorData::new(vec![1.0f32; 8], [8]), &device);
        let kept = param.clone();
        let grad = Tensor::<1>::from_data(TensorData::new(vec![0.5f32; 8], [8]), &device);
        let (mut m, mut v) = (vec![0.0; 8], vec![0.0; 8]);
        let step = AdamStep::new(0.1, (0.9, 0.999), 1e-8, None, 1);
        let new = adam_step(param, &grad, &mut m, &mut v, &step).expect("flex tensors");
        assert_eq!(kept.to_data().try_to_vec::<f32>().unwrap(), vec![1.0; 8]);
        let moved = new.to_data().try_to_vec::<f32>().unwrap();
        assert!(moved.iter().all(|&p| (p - 0.9).abs() < 1e-5), "{moved:?}");
    }
}

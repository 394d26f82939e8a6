//! burn's optimizers with per-layer learning-rate factors: gradients are split into groups of
//! equal factor and each group steps with `lr × factor`. Frozen layers have no gradients, so
//! no step ever touches them.

use super::options::{Solver, TrainingOptions};
use crate::engine::{Model, Params};
use burn::module::ParamId;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, RmsPropConfig, SgdConfig};
use burn::tensor::Gradients;

/// Parameters by learning-rate factor: `(factor, [(id, rank)])`.
#[derive(Clone, Debug, Default)]
pub struct Groups(Vec<(f32, Vec<(ParamId, usize)>)>);

impl Groups {
    pub fn from_plan(model: &Model) -> Self {
        let mut groups: Vec<(f32, Vec<(ParamId, usize)>)> = Vec::new();
        for step in model.plan.each_step() {
            let Some(l) = step.layer else { continue };
            if step.frozen {
                continue;
            }
            let params = model.params.layers[l].learnable();
            match groups.iter_mut().find(|(f, _)| *f == step.lr_factor) {
                Some((_, ids)) => ids.extend(params),
                None => groups.push((step.lr_factor, params)),
            }
        }
        Groups(groups)
    }
}

pub struct GroupedOptimizer {
    optim: ModuleOptimizer,
    groups: Groups,
}

impl GroupedOptimizer {
    pub fn new(o: &TrainingOptions, groups: Groups) -> Self {
        let decay = (o.l2 > 0.0).then_some(WeightDecayConfig {
            penalty: o.l2 as f32,
        });
        let optim = match o.solver {
            // PyTorch's SGD: no dampening.
            Solver::Sgdm => SgdConfig::new()
                .with_momentum(Some(MomentumConfig {
                    momentum: o.momentum,
                    dampening: 0.0,
                    nesterov: false,
                }))
                .with_weight_decay(decay)
                .init(),
            Solver::Adam => AdamConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(decay)
                .init(),
            Solver::Rmsprop => RmsPropConfig::new()
                .with_momentum(0.0)
                .with_epsilon(1e-8)
                .with_weight_decay(decay)
                .init(),
        };
        Self { optim, groups }
    }

    /// One update from the gradients of a loss.
    pub fn step(&mut self, lr: f64, params: Params, grads: Gradients) -> Params {
        let mut all = GradientsParams::from_grads(grads, &params);
        if let [(factor, _)] = self.groups.0.as_slice() {
            return self.optim.step(lr * *factor as f64, params, all);
        }
        let mut params = params;
        for (factor, ids) in &self.groups.0 {
            if *factor == 0.0 {
                continue;
            }
            let mut part = GradientsParams::new();
            for &(id, rank) in ids {
                match rank {
                    1 => move_grad::<1>(&mut all, &mut part, id),
                    2 => move_grad::<2>(&mut all, &mut part, id),
                    _ => move_grad::<4>(&mut all, &mut part, id),
                }
            }
            params = self.optim.step(lr * *factor as f64, params, part);
        }
        params
    }

    pub fn save(&self) -> Result<Vec<u8>, String> {
        self.optim
            .into_bytes()
            .map(|b| b.to_vec())
            .map_err(|e| format!("cannot save the optimizer state: {e:?}"))
    }

    pub fn load(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        let optim = self.optim.clone();
        self.optim = optim
            .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
            .map_err(|e| format!("cannot restore the optimizer state: {e:?}"))?;
        Ok(())
    }
}

fn move_grad<const D: usize>(from: &mut GradientsParams, to: &mut GradientsParams, id: ParamId) {
    if let Some(g) = from.remove::<D>(id) {
        to.register::<D>(id, g);
    }
}

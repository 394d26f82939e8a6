//! The optimizers with per-layer learning-rate factors: each parameter steps with
//! `lr × factor`. Frozen layers have no gradients, so no step ever touches them. Adam on the
//! CPU is Graft's one-pass Adam (`adam.rs`); SGDM, RMSprop and other devices run burn's, whose
//! gradients are split into groups of equal factor, each group stepping with its rate.

use super::adam::Adam;
use super::options::{Solver, TrainingOptions};
use crate::engine::fast_cpu::adam_runs_on;
use crate::engine::{Model, Params};
use burn::module::ParamId;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, RmsPropConfig, SgdConfig};
use burn::tensor::{Device, Gradients};
use std::collections::HashMap;

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

/// Adam's epsilon: PyTorch's (burn's default is 1e-5).
const EPSILON: f32 = 1e-8;

pub struct GroupedOptimizer {
    optim: Optim,
    groups: Groups,
}

enum Optim {
    Burn(ModuleOptimizer),
    /// With each parameter's factor.
    Adam(Adam, HashMap<ParamId, f32>),
}

impl GroupedOptimizer {
    /// The optimizer for parameters on `device` (the base device, not autodiff).
    pub fn new(o: &TrainingOptions, groups: Groups, device: &Device) -> Self {
        let decay = (o.l2 > 0.0).then_some(WeightDecayConfig {
            penalty: o.l2 as f32,
        });
        if o.solver == Solver::Adam && adam_runs_on(device) {
            let factors = groups
                .0
                .iter()
                .flat_map(|(f, ids)| ids.iter().map(|&(id, _)| (id, *f)))
                .collect();
            let adam = Adam::new(EPSILON, decay.map(|d| d.penalty));
            return Self {
                optim: Optim::Adam(adam, factors),
                groups,
            };
        }
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
            Solver::Adam => burn::optim::AdamConfig::new()
                .with_epsilon(EPSILON)
                .with_weight_decay(decay)
                .init(),
            Solver::Rmsprop => RmsPropConfig::new()
                .with_momentum(0.0)
                .with_epsilon(EPSILON)
                .with_weight_decay(decay)
                .init(),
        };
        Self {
            optim: Optim::Burn(optim),
            groups,
        }
    }

    /// One update from the gradients of a loss.
    pub fn step(&mut self, lr: f64, params: Params, grads: Gradients) -> Result<Params, String> {
        let mut all = GradientsParams::from_grads(grads, &params);
        let optim = match &mut self.optim {
            Optim::Adam(adam, factors) => {
                let lrs = factors
                    .iter()
                    .filter(|(_, f)| **f != 0.0)
                    .map(|(&id, &f)| (id, lr * f as f64))
                    .collect();
                return adam.step(&lrs, params, all);
            }
            Optim::Burn(optim) => optim,
        };
        if let [(factor, _)] = self.groups.0.as_slice() {
            return Ok(optim.step(lr * *factor as f64, params, all));
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
            params = optim.step(lr * *factor as f64, params, part);
        }
        Ok(params)
    }

    pub fn save(&self) -> Result<Vec<u8>, String> {
        match &self.optim {
            Optim::Adam(adam, _) => adam.to_bytes(),
            Optim::Burn(optim) => optim
                .into_bytes()
                .map(|b| b.to_vec())
                .map_err(|e| format!("cannot save the optimizer state: {e:?}")),
        }
    }

    pub fn load(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        let optim = match &mut self.optim {
            Optim::Adam(adam, _) => return adam.load(bytes),
            Optim::Burn(optim) => optim,
        };
        *optim = optim
            .clone()
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

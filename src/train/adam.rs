//! Adam for CPU training: each parameter's step is one pass (`fast_cpu::adam_step`) over its
//! values and the moments kept here, instead of burn's dozen tensor ops per parameter. The
//! values are burn's Adam's (same expressions in the same order, tested to the bit), and so
//! is the saved state: the same burnpack record (`{id}.momentum.moment_1`, `…moment_2`,
//! `{id}.momentum.time`, `{id}.__rank`, the parameter's path), so a checkpoint resumes with
//! either optimizer — a run on another device, or one saved before this existed.

use crate::engine::Params;
use crate::engine::fast_cpu::{AdamStep, adam_step};
use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Bytes, DType, Shape, Tensor};
use burn_pack::Scalar;
use std::collections::HashMap;

/// burn's Adam's defaults, which Graft's options do not change.
const BETAS: (f32, f32) = (0.9, 0.999);

/// One moment as a record holds it: its values and shape.
type Moment = (Vec<f32>, Vec<usize>);

/// One parameter's moments.
struct Moments {
    /// Steps taken (burn's `time`).
    time: usize,
    m: Vec<f32>,
    v: Vec<f32>,
    shape: Vec<usize>,
    /// Where the parameter lies in the module (`layers.3.Conv.weight`), as burn records it.
    path: String,
}

pub struct Adam {
    epsilon: f32,
    decay: Option<f32>,
    moments: HashMap<ParamId, Moments>,
}

impl Adam {
    pub fn new(epsilon: f32, decay: Option<f32>) -> Self {
        Adam {
            epsilon,
            decay,
            moments: HashMap::new(),
        }
    }

    /// One step of every parameter with a gradient in `grads` and a learning rate in `lrs`
    /// (a parameter left out is left as it is, as burn's grouped steps leave a group whose
    /// factor is 0).
    pub fn step(
        &mut self,
        lrs: &HashMap<ParamId, f64>,
        params: Params,
        mut grads: GradientsParams,
    ) -> Result<Params, String> {
        let mut stepper = Stepper {
            adam: self,
            lrs,
            grads: &mut grads,
            path: Vec::new(),
            failed: None,
        };
        let params = params.map(&mut stepper);
        match stepper.failed {
            Some(path) => Err(format!(
                "the CPU optimizer cannot update parameter {path}: not a CPU float tensor"
            )),
            None => Ok(params),
        }
    }

    /// The moments as burn's Adam records them (burnpack bytes).
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let mut ids: Vec<&ParamId> = self.moments.keys().collect();
        ids.sort_by_key(|id| id.val());
        let mut tensors = Vec::new();
        let mut scalars = Vec::new();
        let mut paths = Vec::new();
        for id in ids {
            let s = &self.moments[id];
            let key = id.val().to_string();
            for (name, values) in [("moment_1", &s.m), ("moment_2", &s.v)] {
                tensors.push(burn_pack::Tensor::new(
                    format!("{key}.momentum.{name}"),
                    DType::F32,
                    Shape::from(s.shape.clone()),
                    Some(id.val()),
                    Bytes::from_elems(values.clone()),
                ));
            }
            scalars.push((format!("{key}.momentum.time"), Scalar::UInt(s.time as u64)));
            scalars.push((format!("{key}.__rank"), Scalar::UInt(s.shape.len() as u64)));
            paths.push((key, s.path.clone()));
        }
        let mut writer = burn_pack::Writer::new(tensors);
        for (key, value) in &scalars {
            writer = writer.with_scalar(key, *value);
        }
        for (key, path) in &paths {
            writer = writer.with_metadata(key, path);
        }
        writer
            .into_bytes()
            .map(|b| b.to_vec())
            .map_err(|e| format!("cannot save the optimizer state: {e:?}"))
    }

    /// The moments from a record [`Self::to_bytes`] or burn's Adam wrote. A parameter whose
    /// record is incomplete starts afresh, as burn's loader leaves it.
    pub fn load(&mut self, bytes: Vec<u8>) -> Result<(), String> {
        let bad = |e: burn_pack::Error| format!("cannot restore the optimizer state: {e:?}");
        let reader = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes)).map_err(bad)?;
        let scalars = reader.scalars().clone();
        let paths = reader.metadata().clone();
        let mut halves: HashMap<u64, [Option<Moment>; 2]> = HashMap::new();
        for tensor in reader.into_tensors().map_err(bad)? {
            let (name, dtype, shape, id, bytes) = tensor.into_parts().map_err(bad)?;
            let Some(id) = id else { continue };
            let half = match name.rsplit_once('.') {
                Some((_, "moment_1")) => 0,
                Some((_, "moment_2")) => 1,
                _ => continue,
            };
            if dtype != DType::F32 {
                continue;
            }
            let values = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            halves.entry(id).or_default()[half] = Some((values, shape.to_vec()));
        }
        self.moments.clear();
        for (id, [m, v]) in halves {
            let time = scalars
                .get(&format!("{id}.momentum.time"))
                .and_then(|s| u64::try_from(*s).ok());
            let (Some((m, shape)), Some((v, _)), Some(time)) = (m, v, time) else {
                continue;
            };
            if m.len() != v.len() {
                continue;
            }
            let path = paths.get(&id.to_string()).cloned().unwrap_or_default();
            self.moments.insert(
                ParamId::from(id),
                Moments {
                    time: time as usize,
                    m,
                    v,
                    shape,
                    path,
                },
            );
        }
        Ok(())
    }
}

/// Visits the parameters of a module, stepping each that has a gradient and a learning rate.
struct Stepper<'a> {
    adam: &'a mut Adam,
    lrs: &'a HashMap<ParamId, f64>,
    grads: &'a mut GradientsParams,
    /// The module path so far, as burn's optimizer records it.
    path: Vec<String>,
    /// The first parameter that could not be stepped.
    failed: Option<String>,
}

impl ModuleMapper for Stepper<'_> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let grad = self.grads.remove::<D>(id);
        let (Some(grad), Some(&lr)) = (grad, self.lrs.get(&id)) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let len = grad.shape().num_elements();
        let path = self.path.join(".");
        let fresh = || Moments {
            time: 0,
            m: vec![0.0; len],
            v: vec![0.0; len],
            shape: grad.dims().to_vec(),
            path: path.clone(),
        };
        // A new parameter, or a record for another shape of it: start from zero moments.
        let moments = self.adam.moments.entry(id).or_insert_with(fresh);
        if moments.m.len() != len {
            *moments = fresh();
        }
        let step = AdamStep::new(
            lr,
            BETAS,
            self.adam.epsilon,
            self.adam.decay,
            moments.time + 1,
        );
        let tensor = match adam_step(tensor.inner(), &grad, &mut moments.m, &mut moments.v, &step) {
            Ok(updated) => {
                moments.time += 1;
                updated
            }
            Err(unchanged) => {
                self.failed.get_or_insert(path);
                *unchanged
            }
        };
        let tensor = Tensor::from_inner(tensor);
        let tensor = if require_grad {
            tensor.require_grad()
        } else {
            tensor
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::params::{ConvParams, LayerParams, param, param_id, to_vec};
    use burn::optim::AdamConfig;
    use burn::optim::decay::WeightDecayConfig;
    use burn::tensor::{Device, TensorData};

    fn params(values: [f32; 3]) -> Params {
        let device = Device::flex().autodiff();
        Params {
            layers: vec![LayerParams::Conv(ConvParams {
                weight: param(
                    param_id(0, 0),
                    [2, 1, 1, 1],
                    values[..2].to_vec(),
                    &device,
                    true,
                ),
                bias: Some(param(param_id(0, 1), [1], vec![values[2]], &device, true)),
            })],
        }
    }

    fn grads(step: usize) -> GradientsParams {
        let device = Device::flex();
        let s = step as f32;
        let mut g = GradientsParams::new();
        let w = TensorData::new(vec![0.3 * s, -0.7 / s], [2, 1, 1, 1]);
        g.register::<4>(param_id(0, 0), Tensor::from_data(w, &device));
        // The bias has a gradient at odd steps only: its step count runs behind.
        if step % 2 == 1 {
            let b = TensorData::new(vec![0.05 * s], [1]);
            g.register::<1>(param_id(0, 1), Tensor::from_data(b, &device));
        }
        g
    }

    fn values(p: &Params) -> Vec<f32> {
        let LayerParams::Conv(c) = &p.layers[0] else {
            unreachable!()
        };
        let mut v = to_vec(&c.weight.val()).unwrap();
        v.extend(to_vec(&c.bias.as_ref().unwrap().val()).unwrap());
        v
    }

    /// Four steps equal burn's Adam's to the bit, with weight decay and a parameter that
    /// misses some steps; after two, each optimizer's saved state resumes in the other and
    /// the last two steps still agree — the record is burn's. The parameters still ask for
    /// gradients after a step.
    #[test]
    fn steps_and_records_are_burns() {
        let lrs: HashMap<ParamId, f64> = [(param_id(0, 0), 0.01), (param_id(0, 1), 0.01)].into();
        let burn_adam = || {
            AdamConfig::new()
                .with_epsilon(1e-8)
                .with_weight_decay(Some(WeightDecayConfig { penalty: 0.01 }))
                .init()
        };
        let (mut ours, mut theirs) = (Adam::new(1e-8, Some(0.01)), burn_adam());
        let (mut p, mut q) = (params([0.5, -0.25, 0.1]), params([0.5, -0.25, 0.1]));
        for step in 1..=4 {
            if step == 3 {
                // Swap states through the record bytes.
                let ours_bytes = ours.to_bytes().unwrap();
                let theirs_bytes = theirs.into_bytes().unwrap().to_vec();
                ours = Adam::new(1e-8, Some(0.01));
                ours.load(theirs_bytes).unwrap();
                theirs = burn_adam()
                    .from_bytes(Bytes::from_bytes_vec(ours_bytes))
                    .unwrap();
            }
            p = ours.step(&lrs, p, grads(step)).unwrap();
            q = theirs.step(0.01, q, grads(step));
            assert_eq!(values(&p), values(&q), "step {step}");
        }
        let LayerParams::Conv(c) = &p.layers[0] else {
            unreachable!()
        };
        assert!(c.weight.val().is_require_grad(), "still trainable");
    }

    /// A parameter without a learning rate is left as it is, and takes no step.
    #[test]
    fn a_parameter_without_a_rate_is_left_alone() {
        let lrs: HashMap<ParamId, f64> = [(param_id(0, 1), 0.1)].into();
        let mut adam = Adam::new(1e-8, None);
        let p = adam
            .step(&lrs, params([0.5, -0.25, 0.1]), grads(1))
            .unwrap();
        let v = values(&p);
        assert_eq!(&v[..2], &[0.5, -0.25], "weight untouched");
        assert!((v[2] - 0.0).abs() < 1e-6, "bias stepped by lr: {}", v[2]);
        assert!(!adam.moments.contains_key(&param_id(0, 0)));
    }

    /// Bytes that are no record give an error, not a panic, and keep the moments.
    #[test]
    fn a_corrupt_record_is_an_error() {
        let lrs: HashMap<ParamId, f64> = [(param_id(0, 0), 0.01)].into();
        let mut adam = Adam::new(1e-8, None);
        adam.step(&lrs, params([0.5, -0.25, 0.1]), grads(1))
            .unwrap();
        let err = adam.load(vec![7; 40]).unwrap_err();
        assert!(err.contains("cannot restore"), "{err}");
        assert_eq!(adam.moments.len(), 1, "moments kept");
    }
}

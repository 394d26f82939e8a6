//! The learnable state of a network as a burn `Module`, one entry per parameterised node, so
//! that burn's autodiff and optimizers see every weight and nothing else.

use burn::module::{Module, Param, ParamId, RunningState};
use burn::tensor::{Device, Tensor, TensorData};

#[derive(Module, Debug)]
pub struct ConvParams {
    pub weight: Param<Tensor<4>>,
    pub bias: Option<Param<Tensor<1>>>,
}

/// Gemm / MatMul weights: `weight` as stored in the file (`[out, in]` when transposed).
#[derive(Module, Debug)]
pub struct DenseParams {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
}

/// LayerNorm scale and bias over the normalised axes, flattened.
#[derive(Module, Debug)]
pub struct NormParams {
    pub scale: Param<Tensor<1>>,
    pub bias: Option<Param<Tensor<1>>>,
}

#[derive(Module, Debug)]
pub struct BatchNormParams {
    pub gamma: Param<Tensor<1>>,
    pub beta: Param<Tensor<1>>,
    pub running_mean: RunningState<Tensor<1>>,
    pub running_var: RunningState<Tensor<1>>,
}

#[derive(Module, Debug)]
pub enum LayerParams {
    Conv(ConvParams),
    Dense(DenseParams),
    Norm(NormParams),
    BatchNorm(BatchNormParams),
}

/// Every parameterised node's state, indexed by the plan's `layer` numbers.
#[derive(Module, Debug)]
pub struct Params {
    pub layers: Vec<LayerParams>,
}

pub(crate) fn tensor<const D: usize>(
    shape: [usize; D],
    data: Vec<f32>,
    device: &Device,
) -> Tensor<D> {
    Tensor::from_data(TensorData::new(data, shape), device)
}

/// A parameter; frozen parameters never require a gradient. Ids are given, not random, so an
/// optimizer state saved in a checkpoint finds its parameters again after a restart.
pub(crate) fn param<const D: usize>(
    id: ParamId,
    shape: [usize; D],
    data: Vec<f32>,
    device: &Device,
    trainable: bool,
) -> Param<Tensor<D>> {
    Param::initialized(id, tensor(shape, data, device)).set_require_grad(trainable)
}

/// The id of parameter `slot` of layer `layer`.
pub(crate) fn param_id(layer: usize, slot: usize) -> ParamId {
    ParamId::from((layer * 8 + slot + 1) as u64)
}

impl LayerParams {
    /// Id and rank of each gradient-trained parameter (not BatchNorm's running statistics).
    pub fn learnable(&self) -> Vec<(ParamId, usize)> {
        let opt1 = |p: &Option<Param<Tensor<1>>>| p.as_ref().map(|p| (p.id, 1));
        match self {
            LayerParams::Conv(p) => [Some((p.weight.id, 4)), opt1(&p.bias)]
                .into_iter()
                .flatten()
                .collect(),
            LayerParams::Dense(p) => [Some((p.weight.id, 2)), opt1(&p.bias)]
                .into_iter()
                .flatten()
                .collect(),
            LayerParams::Norm(p) => [Some((p.scale.id, 1)), opt1(&p.bias)]
                .into_iter()
                .flatten()
                .collect(),
            LayerParams::BatchNorm(p) => vec![(p.gamma.id, 1), (p.beta.id, 1)],
        }
    }
}

pub(crate) fn to_vec<const D: usize>(t: &Tensor<D>) -> Result<Vec<f32>, String> {
    t.to_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| format!("{e:?}"))
}

impl Params {
    /// A copy that keeps today's BatchNorm running statistics. `clone()` shares them (burn's
    /// `RunningState` is shared state), so a clone kept as "the best weights so far" would
    /// see every later step's statistics; parameters themselves are immutable tensors. Call
    /// it on the thread that trains: `value_sync` takes that thread's latest update.
    pub fn snapshot(&self) -> Params {
        let layers = self
            .layers
            .iter()
            .map(|l| match l {
                LayerParams::BatchNorm(p) => LayerParams::BatchNorm(BatchNormParams {
                    gamma: p.gamma.clone(),
                    beta: p.beta.clone(),
                    running_mean: RunningState::new(p.running_mean.value_sync()),
                    running_var: RunningState::new(p.running_var.value_sync()),
                }),
                other => other.clone(),
            })
            .collect();
        Params { layers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot keeps the running statistics it was taken with while training goes on (a
    /// plain clone does not: that was how "best weights" came back with the last epoch's
    /// BatchNorm statistics).
    #[test]
    fn a_snapshot_keeps_its_batchnorm_statistics() {
        let device = Device::flex();
        let bn = |v: f32| BatchNormParams {
            gamma: param(param_id(0, 0), [2], vec![1.0; 2], &device, true),
            beta: param(param_id(0, 1), [2], vec![0.0; 2], &device, true),
            running_mean: RunningState::new(tensor([2], vec![v; 2], &device)),
            running_var: RunningState::new(tensor([2], vec![1.0; 2], &device)),
        };
        let live = Params {
            layers: vec![LayerParams::BatchNorm(bn(0.0))],
        };
        let kept = live.snapshot();
        let shared = live.clone();
        let LayerParams::BatchNorm(p) = &live.layers[0] else {
            unreachable!()
        };
        p.running_mean.update(tensor([2], vec![5.0; 2], &device));
        let mean = |ps: &Params| {
            let LayerParams::BatchNorm(p) = &ps.layers[0] else {
                unreachable!()
            };
            to_vec(&p.running_mean.value_sync()).unwrap()
        };
        assert_eq!(mean(&live), vec![5.0; 2]);
        assert_eq!(mean(&shared), vec![5.0; 2], "a clone shares the statistics");
        assert_eq!(mean(&kept), vec![0.0; 2], "a snapshot does not");
    }
}

//! The learnable state of a network as a burn `Module`, one entry per parameterised node, so
//! that burn's autodiff and optimizers see every weight and nothing else.

use burn::module::{Module, Param, RunningState};
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

/// A parameter; frozen parameters never require a gradient.
pub(crate) fn param<const D: usize>(
    shape: [usize; D],
    data: Vec<f32>,
    device: &Device,
    trainable: bool,
) -> Param<Tensor<D>> {
    Param::from_tensor(tensor(shape, data, device)).set_require_grad(trainable)
}

pub(crate) fn to_vec<const D: usize>(t: &Tensor<D>) -> Result<Vec<f32>, String> {
    t.to_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| format!("{e:?}"))
}

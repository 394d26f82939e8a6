//! The layer library: the layers a user can insert or put in place of one, built with fresh
//! weights for the input they get.

use super::{EditError, Initializer, Weights, first_output, index};
use crate::graph::{Network, Node, Op};
use crate::weights::{Store, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// A layer from the layer library, with what its weights need.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LayerKind {
    Conv {
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    },
    Linear {
        out_features: usize,
    },
    BatchNorm,
    Relu,
    LeakyRelu {
        alpha: f32,
    },
    Sigmoid,
    Tanh,
    Gelu,
    Dropout {
        ratio: f32,
    },
    MaxPool {
        kernel: usize,
        stride: usize,
    },
    AvgPool {
        kernel: usize,
        stride: usize,
    },
    GlobalAvgPool,
    Flatten,
    Softmax,
}

impl LayerKind {
    /// The library, with sensible defaults, in the order the UI lists them.
    pub fn library() -> Vec<LayerKind> {
        vec![
            LayerKind::Conv {
                out_channels: 64,
                kernel: 3,
                stride: 1,
                padding: 1,
            },
            LayerKind::Linear { out_features: 128 },
            LayerKind::BatchNorm,
            LayerKind::Relu,
            LayerKind::LeakyRelu { alpha: 0.1 },
            LayerKind::Sigmoid,
            LayerKind::Tanh,
            LayerKind::Gelu,
            LayerKind::Dropout { ratio: 0.5 },
            LayerKind::MaxPool {
                kernel: 2,
                stride: 2,
            },
            LayerKind::AvgPool {
                kernel: 2,
                stride: 2,
            },
            LayerKind::GlobalAvgPool,
            LayerKind::Flatten,
            LayerKind::Softmax,
        ]
    }

    pub fn label(&self) -> &'static str {
        match self {
            LayerKind::Conv { .. } => "Convolution",
            LayerKind::Linear { .. } => "Linear (fully connected)",
            LayerKind::BatchNorm => "Batch normalization",
            LayerKind::Relu => "ReLU",
            LayerKind::LeakyRelu { .. } => "Leaky ReLU",
            LayerKind::Sigmoid => "Sigmoid",
            LayerKind::Tanh => "Tanh",
            LayerKind::Gelu => "GELU",
            LayerKind::Dropout { .. } => "Dropout",
            LayerKind::MaxPool { .. } => "Max pooling",
            LayerKind::AvgPool { .. } => "Average pooling",
            LayerKind::GlobalAvgPool => "Global average pooling",
            LayerKind::Flatten => "Flatten",
            LayerKind::Softmax => "Softmax",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewLayer {
    pub name: String,
    pub kind: LayerKind,
    pub seed: u64,
}

/// Largest weight tensor a library layer may have (256 M values, 1 GiB): a project file or a
/// typo asking for more gets an error, not an allocation that aborts the process.
const MAX_NEW_VALUES: usize = 1 << 28;

fn check_new_size(dims: &[usize]) -> Result<(), EditError> {
    match dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
        Some(n) if n <= MAX_NEW_VALUES => Ok(()),
        _ => Err(EditError::Invalid(format!(
            "a {dims:?} weight is too large (at most {MAX_NEW_VALUES} values)"
        ))),
    }
}

/// Builds a library layer for an input of `shape` (with batch): the node and its new weights.
fn build_layer(
    layer: &NewLayer,
    input: &str,
    output: &str,
    shape: &[usize],
) -> Result<(Node, Weights), EditError> {
    use crate::graph::{Conv, Pool, Unary};
    let mut init = Initializer::new(layer.seed);
    let mut uniform = |count, fan_in| init.uniform(count, fan_in);
    let name = &layer.name;
    let w = format!("{name}.weight");
    let b = format!("{name}.bias");
    let channels = shape.get(1).copied().unwrap_or(0);
    let need4 = |what: &str| {
        if shape.len() == 4 {
            Ok(())
        } else {
            Err(EditError::Invalid(format!(
                "{what} needs an N×C×H×W input, this one is {shape:?}"
            )))
        }
    };
    let mut weights = Vec::new();
    let (op, inputs) = match &layer.kind {
        LayerKind::Conv {
            out_channels,
            kernel,
            stride,
            padding,
        } => {
            need4("a convolution")?;
            check_new_size(&[*out_channels, channels, *kernel, *kernel])?;
            let fan_in = channels * kernel * kernel;
            weights.push((
                w.clone(),
                Tensor {
                    shape: vec![*out_channels, channels, *kernel, *kernel],
                    data: uniform(out_channels * fan_in, fan_in),
                },
            ));
            weights.push((
                b.clone(),
                Tensor {
                    shape: vec![*out_channels],
                    data: uniform(*out_channels, fan_in),
                },
            ));
            let conv = Conv {
                strides: [*stride; 2],
                pads: [*padding; 4],
                dilations: [1, 1],
                groups: 1,
            };
            (Op::Conv(conv), vec![input.to_owned(), w, b])
        }
        LayerKind::Linear { out_features } => {
            if shape.len() != 2 {
                return Err(EditError::Invalid(format!(
                    "a linear layer needs an N×features input, this one is {shape:?}; insert a Flatten first"
                )));
            }
            check_new_size(&[*out_features, channels])?;
            weights.push((
                w.clone(),
                Tensor {
                    shape: vec![*out_features, channels],
                    data: uniform(out_features * channels, channels),
                },
            ));
            weights.push((
                b.clone(),
                Tensor {
                    shape: vec![*out_features],
                    data: uniform(*out_features, channels),
                },
            ));
            (
                Op::Gemm {
                    alpha: 1.0,
                    beta: 1.0,
                    trans_a: false,
                    trans_b: true,
                },
                vec![input.to_owned(), w, b],
            )
        }
        LayerKind::BatchNorm => {
            let names: Vec<String> = ["scale", "bias", "mean", "var"]
                .iter()
                .map(|k| format!("{name}.{k}"))
                .collect();
            for (n, v) in names.iter().zip([1.0, 0.0, 0.0, 1.0]) {
                weights.push((
                    n.clone(),
                    Tensor {
                        shape: vec![channels],
                        data: vec![v; channels],
                    },
                ));
            }
            let mut inputs = vec![input.to_owned()];
            inputs.extend(names);
            (
                Op::BatchNorm {
                    epsilon: 1e-5,
                    momentum: 0.9,
                },
                inputs,
            )
        }
        LayerKind::Relu => (Op::Unary(Unary::Relu), vec![input.to_owned()]),
        LayerKind::LeakyRelu { alpha } => (Op::LeakyRelu { alpha: *alpha }, vec![input.to_owned()]),
        LayerKind::Sigmoid => (Op::Unary(Unary::Sigmoid), vec![input.to_owned()]),
        LayerKind::Tanh => (Op::Unary(Unary::Tanh), vec![input.to_owned()]),
        LayerKind::Gelu => (Op::Gelu { tanh: false }, vec![input.to_owned()]),
        LayerKind::Dropout { ratio } => (Op::Dropout { ratio: *ratio }, vec![input.to_owned()]),
        LayerKind::MaxPool { kernel, stride } | LayerKind::AvgPool { kernel, stride } => {
            need4("pooling")?;
            let pool = Pool {
                kernel: [*kernel; 2],
                strides: [*stride; 2],
                pads: [0; 4],
                dilations: [1, 1],
                ceil_mode: false,
            };
            let op = if matches!(layer.kind, LayerKind::MaxPool { .. }) {
                Op::MaxPool(pool)
            } else {
                Op::AveragePool {
                    pool,
                    count_include_pad: false,
                }
            };
            (op, vec![input.to_owned()])
        }
        LayerKind::GlobalAvgPool => {
            need4("global pooling")?;
            (Op::GlobalAveragePool, vec![input.to_owned()])
        }
        LayerKind::Flatten => (Op::Flatten { axis: 1 }, vec![input.to_owned()]),
        LayerKind::Softmax => (
            Op::Softmax {
                axis: -1,
                legacy: false,
            },
            vec![input.to_owned()],
        ),
    };
    Ok((
        Node::new(name.clone(), op, inputs, vec![output.to_owned()]),
        weights,
    ))
}

fn unique_name(net: &Network, store: &Store, base: &str) -> Result<(), EditError> {
    if base.is_empty()
        || net.node(base).is_some()
        || net
            .nodes
            .iter()
            .any(|n| n.outputs.iter().any(|o| o == base))
        || store.contains(&format!("{base}.weight"))
    {
        return Err(EditError::Invalid(format!(
            "the name '{base}' is empty or already used"
        )));
    }
    Ok(())
}

pub(super) fn insert_after(
    net: &mut Network,
    store: &Store,
    node: &str,
    layer: &NewLayer,
) -> Result<(Weights, Weights), EditError> {
    unique_name(net, store, &layer.name)?;
    let (i, value) = first_output(net, node)?;
    let (shapes, _) = crate::graph::shape::infer(net, store, 1);
    let shape = shapes
        .get(&value)
        .cloned()
        .ok_or_else(|| EditError::Invalid(format!("the shape after '{node}' is unknown")))?;
    let out = format!("{}_output", layer.name);
    let (new, weights) = build_layer(layer, &value, &out, &shape)?;
    for n in &mut net.nodes {
        for v in &mut n.inputs {
            if *v == value {
                *v = out.clone();
            }
        }
    }
    for o in &mut net.outputs {
        if *o == value {
            *o = out.clone();
        }
    }
    net.nodes.insert(i + 1, new);
    Ok((Vec::new(), weights))
}

pub(super) fn replace(
    net: &mut Network,
    store: &Store,
    node: &str,
    layer: &NewLayer,
) -> Result<(Weights, Weights), EditError> {
    let i = index(net, node)?;
    if layer.name != node {
        unique_name(net, store, &layer.name)?;
    }
    let old = net.nodes[i].clone();
    let input = old
        .inputs
        .first()
        .cloned()
        .ok_or_else(|| EditError::Invalid(format!("'{node}' has no input")))?;
    let output = old
        .outputs
        .first()
        .cloned()
        .ok_or_else(|| EditError::Invalid(format!("'{node}' has no output")))?;
    let (shapes, _) = crate::graph::shape::infer(net, store, 1);
    let shape = shapes
        .get(&input)
        .or_else(|| (input == net.input.name).then_some(&net.input.shape))
        .cloned()
        .ok_or_else(|| EditError::Invalid(format!("the shape before '{node}' is unknown")))?;
    let (new, weights) = build_layer(layer, &input, &output, &shape)?;
    net.nodes[i] = new;
    let still_read: HashSet<&str> = net.nodes.iter().flat_map(|n| n.present_inputs()).collect();
    let removed = old
        .present_inputs()
        .skip(1)
        .filter(|w| !still_read.contains(w))
        .filter_map(|w| store.get(w).map(|t| (w.to_owned(), t.clone())))
        .collect();
    Ok((removed, weights))
}

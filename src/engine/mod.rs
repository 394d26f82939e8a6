//! Builds a burn model from the graph IR and runs it.
//!
//! [`Model::build`] lowers a [`Network`] + [`Store`] into an execution plan (one step per
//! node, activations in numbered slots, freed after their last use) and a [`Params`] module
//! holding every learnable tensor. The plan is plain data; the params are what burn's
//! autodiff and optimizers see. [`Model::write_back`] copies trained parameters back into a
//! [`Store`], so export never has to look inside burn.

mod device;
mod exec;
pub(crate) mod fast_cpu;
mod fusion;
pub mod gpu_train;
pub mod optimize;
pub mod params;
pub mod precision;
pub mod profile;
pub mod speed;
pub mod value;

pub use device::{DeviceChoice, DeviceInfo, select_device};
/// The training kernels' timing harness (`cargo bench --bench kernels`); not an API.
#[doc(hidden)]
pub use fast_cpu::timing as kernel_timing;
pub use params::Params;
pub use precision::Precision;
pub use value::Value;

use crate::graph::{Network, Op, shape};
use crate::weights::Store;
use burn::tensor::Device;
use params::{
    BatchNormParams, ConvParams, DenseParams, LayerParams, NormParams, param, param_id, tensor,
};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("node '{node}': op {op} is not supported ({reason})")]
    Unsupported {
        node: String,
        op: String,
        reason: String,
    },
    #[error("node '{node}': {message}")]
    Node { node: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// An output copied to the host: its shape and row-major values.
pub type HostOutput = (Vec<usize>, Vec<f32>);

/// A forward pass's outputs copied to the host.
pub fn to_host(values: &[Value]) -> Result<Vec<HostOutput>, String> {
    values.iter().map(|v| Ok((v.dims(), v.to_vec()?))).collect()
}

/// Whether a forward pass trains (batch statistics, dropout) or infers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Inference,
    Train,
}

#[derive(Clone, Copy, Debug)]
pub enum Src {
    /// A run-time activation.
    Slot(usize),
    /// A constant that is not a learnable parameter.
    Const(usize),
}

#[derive(Clone, Debug)]
pub struct Step {
    pub node: String,
    pub op: Op,
    /// Per node input; `None` for absent inputs and for those held in the step's layer.
    pub inputs: Vec<Option<Src>>,
    pub outputs: Vec<usize>,
    /// Index into `Params::layers` for parameterised nodes.
    pub layer: Option<usize>,
    pub frozen: bool,
    /// Multiplies the learning rate of this step's parameters.
    pub lr_factor: f32,
    /// Slots whose last reader is this step.
    pub last_use: Vec<usize>,
    /// An activation fused into this convolution or batch norm: a clamp (ReLU, ReLU6, Clip),
    /// or in inference plans SiLU.
    pub act: Option<fast_cpu::Act>,
    /// A convolution's filters as Graft's CPU matrix kernel reads them, kept between runs.
    pub packs: fast_cpu::PackedFilters,
    /// The depthwise convolution that alone reads this step's output, run with it in one
    /// pass: in inference plans after a 1x1 convolution (`fuse_expand_depthwise`), in
    /// training plans after a batch norm (`fuse_norm_conv`). This step's outputs are
    /// then that one's.
    pub then: Option<Box<Step>>,
    /// In inference plans, for a Concat: the convolutions whose outputs only it reads, run
    /// when it runs and written straight into the joined tensor (`fusion::fuse_concat_parts`,
    /// `exec::run_joined`).
    pub parts: Vec<Step>,
}

/// Which store tensors a layer's parameters came from.
#[derive(Clone, Debug)]
struct Binding {
    /// Store names, in the layer's parameter order (weight, bias) or (gamma, beta, mean, var).
    names: Vec<Option<String>>,
}

/// The executable form of a network.
#[derive(Clone, Debug)]
pub struct Plan {
    steps: Vec<Step>,
    constants: Vec<Value>,
    input_slot: usize,
    input_shape: Vec<usize>,
    free_batch: bool,
    output_slots: Vec<usize>,
    n_slots: usize,
    bindings: Vec<Binding>,
    device: Device,
}

/// A network ready to run: the plan and its parameters.
#[derive(Debug)]
pub struct Model {
    pub plan: Plan,
    pub params: Params,
}

impl Model {
    /// Builds the model on `device`. Parameters of nodes that are not frozen require gradients
    /// when `device` is an autodiff device.
    pub fn build(net: &Network, store: &Store, device: &Device) -> Result<Model, EngineError> {
        // Training plans fold zero Pads into the convolutions' own padding: a Pad copies the
        // whole activation forward and backward (a fifth of a fine-tuning forward pass for
        // EfficientNet-Lite0), the padding is free. Same values and gradients; the network
        // itself (and so any export) keeps its Pad nodes. Inference callers fold with
        // `optimize::for_inference` themselves, so an inference plan runs what it is given.
        let folded;
        let net = if device.is_autodiff() {
            folded = optimize::fold_pads(net);
            &folded
        } else {
            net
        };
        if let Some(n) = net.unsupported().next() {
            let Op::Unsupported {
                op_type, reason, ..
            } = &n.op
            else {
                unreachable!()
            };
            return Err(EngineError::Unsupported {
                node: n.name.clone(),
                op: op_type.clone(),
                reason: reason.clone(),
            });
        }
        // Every node's shapes must fit before burn sees them: burn panics on a mismatch.
        let (shapes, errors) = shape::infer(net, store, 1);
        if let Some(e) = errors.into_iter().next() {
            return Err(EngineError::Node {
                node: e.node,
                message: e.message,
            });
        }
        let (_, errors) = shape::infer(net, store, 2);
        if let Some(e) = errors.into_iter().next() {
            return Err(EngineError::Node {
                node: e.node,
                message: format!("with a batch of 2: {}", e.message),
            });
        }
        for out in &net.outputs {
            if !shapes.contains_key(out) {
                return Err(EngineError::Invalid(format!(
                    "output '{out}' is not computed"
                )));
            }
        }

        let mut slot_of: HashMap<&str, usize> = HashMap::new();
        slot_of.insert(&net.input.name, 0);
        let mut n_slots = 1;
        let mut constants = Vec::new();
        let mut const_of: HashMap<&str, usize> = HashMap::new();
        let mut layers = Vec::new();
        let mut bindings = Vec::new();
        let mut steps = Vec::with_capacity(net.nodes.len());
        let trainable = device.is_autodiff();

        for node in &net.nodes {
            let node_err = |message: String| EngineError::Node {
                node: node.name.clone(),
                message,
            };
            let learn = trainable && !node.is_frozen();
            let layer_no = layers.len();
            let id = |slot: usize| param_id(layer_no, slot);
            let stored = |i: usize| {
                node.inputs
                    .get(i)
                    .filter(|n| !n.is_empty())
                    .and_then(|n| store.get(n).map(|t| (n.clone(), t)))
            };
            // Parameterised ops take their weights into a layer.
            let (layer, held): (Option<LayerParams>, Vec<usize>) = match &node.op {
                Op::Conv(_) => {
                    let (wn, w) =
                        stored(1).ok_or_else(|| node_err("its weight is not stored".into()))?;
                    let s = [w.shape[0], w.shape[1], w.shape[2], w.shape[3]];
                    let bias = stored(2);
                    bindings.push(Binding {
                        names: vec![Some(wn), bias.as_ref().map(|b| b.0.clone())],
                    });
                    let layer = LayerParams::Conv(ConvParams {
                        weight: param(id(0), s, w.data.clone(), device, learn),
                        bias: bias
                            .map(|(_, b)| param(id(1), [b.len()], b.data.clone(), device, learn)),
                    });
                    (Some(layer), vec![1, 2])
                }
                Op::Gemm { .. } | Op::MatMul
                    if stored(1).is_some_and(|(_, w)| w.shape.len() == 2) =>
                {
                    let (wn, w) = stored(1).ok_or_else(|| node_err("weight missing".into()))?;
                    let out_features = match &node.op {
                        Op::Gemm { trans_b: true, .. } => w.shape[0],
                        _ => w.shape[1],
                    };
                    // A Gemm bias of N values ([N] or [1, N]) is a learnable bias; any other C
                    // stays a broadcast constant.
                    let bias = match &node.op {
                        Op::Gemm { .. } => stored(2).filter(|(_, c)| {
                            c.len() == out_features
                                && c.shape.len() <= 2
                                && c.shape.last() == Some(&out_features)
                        }),
                        _ => None,
                    };
                    bindings.push(Binding {
                        names: vec![Some(wn), bias.as_ref().map(|b| b.0.clone())],
                    });
                    let held = if bias.is_some() { vec![1, 2] } else { vec![1] };
                    let layer = LayerParams::Dense(DenseParams {
                        weight: param(
                            id(0),
                            [w.shape[0], w.shape[1]],
                            w.data.clone(),
                            device,
                            learn,
                        ),
                        bias: bias
                            .map(|(_, b)| param(id(1), [b.len()], b.data.clone(), device, learn)),
                    });
                    (Some(layer), held)
                }
                Op::LayerNorm { .. } => {
                    let (sn, s) =
                        stored(1).ok_or_else(|| node_err("its scale is not stored".into()))?;
                    let bias = stored(2);
                    bindings.push(Binding {
                        names: vec![Some(sn), bias.as_ref().map(|b| b.0.clone())],
                    });
                    let layer = LayerParams::Norm(NormParams {
                        scale: param(id(0), [s.len()], s.data.clone(), device, learn),
                        bias: bias
                            .map(|(_, b)| param(id(1), [b.len()], b.data.clone(), device, learn)),
                    });
                    (Some(layer), vec![1, 2])
                }
                Op::BatchNorm { .. } => {
                    let mut names = Vec::new();
                    let mut vals = Vec::new();
                    for i in 1..5 {
                        let (n, t) = stored(i)
                            .ok_or_else(|| node_err(format!("input {i} is not stored")))?;
                        names.push(Some(n));
                        vals.push(t);
                    }
                    bindings.push(Binding { names });
                    let c = vals[0].len();
                    let layer = LayerParams::BatchNorm(BatchNormParams {
                        gamma: param(id(0), [c], vals[0].data.clone(), device, learn),
                        beta: param(id(1), [c], vals[1].data.clone(), device, learn),
                        running_mean: burn::module::RunningState::new(tensor(
                            [c],
                            vals[2].data.clone(),
                            device,
                        )),
                        running_var: burn::module::RunningState::new(tensor(
                            [c],
                            vals[3].data.clone(),
                            device,
                        )),
                    });
                    (Some(layer), vec![1, 2, 3, 4])
                }
                _ => (None, vec![]),
            };
            let layer_index = layer.map(|l| {
                layers.push(l);
                layers.len() - 1
            });

            let mut inputs = Vec::with_capacity(node.inputs.len());
            for (i, name) in node.inputs.iter().enumerate() {
                if name.is_empty() || (layer_index.is_some() && held.contains(&i)) {
                    inputs.push(None);
                } else if let Some(&s) = slot_of.get(name.as_str()) {
                    inputs.push(Some(Src::Slot(s)));
                } else if let Some(t) = store.get(name) {
                    let c = *const_of.entry(name).or_insert_with(|| {
                        constants.push(Value::from_data(&t.shape, t.data.clone(), device));
                        constants.len() - 1
                    });
                    inputs.push(Some(Src::Const(c)));
                } else {
                    return Err(node_err(format!("input '{name}' is not available")));
                }
            }
            let mut outputs = Vec::with_capacity(node.outputs.len());
            for name in &node.outputs {
                slot_of.insert(name, n_slots);
                outputs.push(n_slots);
                n_slots += 1;
            }
            steps.push(Step {
                node: node.name.clone(),
                op: node.op.clone(),
                inputs,
                outputs,
                layer: layer_index,
                frozen: node.is_frozen(),
                lr_factor: node.lr_factor,
                last_use: Vec::new(),
                packs: Default::default(),
                act: None,
                then: None,
                parts: Vec::new(),
            });
        }
        let output_slots: Vec<usize> =
            net.outputs
                .iter()
                .map(|o| {
                    slot_of.get(o.as_str()).copied().ok_or_else(|| {
                        EngineError::Invalid(format!("output '{o}' is not computed"))
                    })
                })
                .collect::<Result<_, _>>()?;

        fusion::fuse_activations(&mut steps, &output_slots, trainable);
        if trainable {
            fusion::fuse_norm_conv(&mut steps, &output_slots, &layers);
        } else {
            fusion::fuse_expand_depthwise(&mut steps, &output_slots, &layers);
            fusion::fuse_concat_parts(&mut steps, &output_slots);
        }

        // Free each activation after its last reader (outputs live to the end); a Concat's
        // parts read theirs when it runs.
        let mut last: Vec<Option<usize>> = vec![None; n_slots];
        for (i, step) in steps.iter().enumerate() {
            let parts = step.parts.iter().flat_map(|p| &p.inputs);
            for src in step.inputs.iter().chain(parts).flatten() {
                if let Src::Slot(s) = src {
                    last[*s] = Some(i);
                }
            }
        }
        for &s in &output_slots {
            last[s] = None;
        }
        for (s, l) in last.iter().enumerate() {
            if let Some(i) = l {
                steps[*i].last_use.push(s);
            }
        }

        Ok(Model {
            plan: Plan {
                steps,
                constants,
                input_slot: 0,
                input_shape: net.input.shape.clone(),
                free_batch: net.input.free_batch,
                output_slots,
                n_slots,
                bindings,
                device: device.clone(),
            },
            params: params::Params { layers },
        })
    }

    /// Runs the network on a batch `[N, ...input shape]`.
    pub fn forward(&self, input: Value, mode: Mode) -> Result<Vec<Value>, EngineError> {
        self.plan.forward(&self.params, input, mode)
    }

    /// Runs on host data (`shape[0]` is the batch) and returns each output's shape and values.
    pub fn infer(&self, shape: &[usize], data: Vec<f32>) -> Result<Vec<HostOutput>, EngineError> {
        let input = Value::from_data(shape, data, &self.plan.device);
        let outputs = self.forward(input, Mode::Inference)?;
        to_host(&outputs).map_err(EngineError::Invalid)
    }

    /// Copies the parameters (and BatchNorm running statistics) back into `store`.
    pub fn write_back(&self, store: &mut Store) -> Result<(), EngineError> {
        self.plan.write_back(&self.params, store)
    }

    pub fn device(&self) -> &Device {
        &self.plan.device
    }
}

/// Runs `f` on one of rayon's workers when `device` is the CPU (flex; training's autodiff
/// device is the same device) and this thread is not one already, the other workers kept
/// awake until it returns. Each CPU kernel's parallel loop is then shared with the other workers directly; called from any
/// other thread, every op would be queued into the pool and the caller put to sleep until it
/// finished — a wake-up per op, 1/10 of a batch-1 forward pass. And between two ops an idle
/// worker goes to sleep and is woken by the next op's first task: a futex wake-up per op
/// (`perf stat`: 50 context switches a batch-1 pass of Lite0, two cores 1.23× one), so the
/// others wait for work in a loop that runs any task the pool has, as ONNX Runtime's threads
/// spin between ops. (Training steps, at batch 32 and milliseconds per op, showed no
/// difference within the machine's noise either way.)
fn on_cpu_workers<R: Send>(device: &Device, f: impl FnOnce() -> R + Send) -> R {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    if *device != Device::flex() || rayon::current_thread_index().is_some() {
        return f();
    }
    /// Marks the pass done however `f` ends (a panic too), so no worker waits forever.
    struct Done<'a>(&'a AtomicBool);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let (task, result, done) = (
        Mutex::new(Some(f)),
        Mutex::new(None),
        AtomicBool::new(false),
    );
    rayon::broadcast(|ctx| {
        if ctx.index() == 0 {
            let _done = Done(&done);
            let f = task.lock().map(|mut t| t.take()).ok().flatten();
            if let Some(f) = f {
                let r = f();
                if let Ok(mut slot) = result.lock() {
                    *slot = Some(r);
                }
            }
        } else {
            while !done.load(Ordering::Acquire) {
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    std::hint::spin_loop();
                }
            }
        }
    });
    match result.into_inner().ok().flatten() {
        Some(r) => r,
        None => unreachable!("worker 0 ran the pass (a panic in it propagates above)"),
    }
}

impl Plan {
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Every step, those joined to another (`Step::then`, `Step::parts`) included.
    pub fn each_step(&self) -> impl Iterator<Item = &Step> {
        fn all(step: &Step) -> Box<dyn Iterator<Item = &Step> + '_> {
            let joined = step.then.as_deref().into_iter().chain(&step.parts);
            Box::new(std::iter::once(step).chain(joined.flat_map(all)))
        }
        self.steps.iter().flat_map(all)
    }

    /// The expected input shape without the batch dimension.
    pub fn input_dims(&self) -> &[usize] {
        &self.input_shape[1..]
    }

    pub fn forward(
        &self,
        params: &Params,
        input: Value,
        mode: Mode,
    ) -> Result<Vec<Value>, EngineError> {
        let dims = input.dims();
        let batch_ok = if self.free_batch {
            dims.first() != Some(&0)
        } else {
            dims.first() == self.input_shape.first()
        };
        if dims.len() != self.input_shape.len() || dims[1..] != self.input_shape[1..] || !batch_ok {
            return Err(EngineError::Invalid(format!(
                "the input has shape {dims:?}; the network takes [N, {}]",
                self.input_shape[1..]
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        // The training precision goes with the steps to the worker that runs them.
        let precision = precision::training();
        on_cpu_workers(&self.device, || {
            precision::training_with(precision, || self.run_steps(params, input, mode))
        })
    }

    /// [`Self::forward`] after its checks, on this thread.
    fn run_steps(
        &self,
        params: &Params,
        input: Value,
        mode: Mode,
    ) -> Result<Vec<Value>, EngineError> {
        let mut slots: Vec<Option<Value>> = vec![None; self.n_slots];
        slots[self.input_slot] = Some(input);
        let profile = profile::enabled();
        for step in &self.steps {
            let started = profile.then(std::time::Instant::now);
            // The inputs a Concat's parts make are made when it runs.
            let made_by_part = |s: usize| step.parts.iter().any(|p| p.outputs.contains(&s));
            let inputs = self.read(step, &slots, made_by_part)?;
            let parts: Vec<exec::Part> = step
                .parts
                .iter()
                .map(|p| {
                    Ok(exec::Part {
                        step: p,
                        inputs: self.read(p, &slots, |_| false)?,
                        layer: p.layer.map(|l| &params.layers[l]),
                    })
                })
                .collect::<Result<_, EngineError>>()?;
            // Drop the plan's own references before the op runs, so a tensor read for the
            // last time can be updated in place.
            for &s in &step.last_use {
                slots[s] = None;
            }
            let layer = step.layer.map(|l| &params.layers[l]);
            let outs = match &step.then {
                _ if !parts.is_empty() => exec::run_joined(step, inputs, parts, mode),
                None => exec::run(step, inputs, layer, mode),
                Some(next) => {
                    let next_layer = next.layer.map(|l| &params.layers[l]);
                    exec::run_pair([step, next], inputs, [layer, next_layer], mode)
                }
            }
            .map_err(|message| EngineError::Node {
                node: step.node.clone(),
                message,
            })?;
            // A pair (`then`) is timed inside `run_pair`, which knows whether it ran fused.
            if let Some(t) = started.filter(|_| step.then.is_none()) {
                profile::record(step, &outs, t, false);
            }
            for (slot, v) in step.outputs.iter().zip(outs) {
                slots[*slot] = Some(v);
            }
        }
        self.output_slots
            .iter()
            .map(|&s| {
                slots[s]
                    .clone()
                    .ok_or_else(|| EngineError::Invalid("an output was not computed".into()))
            })
            .collect()
    }

    /// `step`'s inputs from the constants and `slots`; `None` for absent inputs and for the
    /// slots `skip` names.
    fn read(
        &self,
        step: &Step,
        slots: &[Option<Value>],
        skip: impl Fn(usize) -> bool,
    ) -> Result<Vec<Option<Value>>, EngineError> {
        step.inputs
            .iter()
            .map(|src| match src {
                None => Ok(None),
                Some(Src::Const(c)) => Ok(Some(self.constants[*c].clone())),
                Some(Src::Slot(s)) if skip(*s) => Ok(None),
                Some(Src::Slot(s)) => {
                    slots[*s]
                        .clone()
                        .map(Some)
                        .ok_or_else(|| EngineError::Node {
                            node: step.node.clone(),
                            message: "an input was not computed".into(),
                        })
                }
            })
            .collect()
    }

    /// Names of the store tensors the layers hold.
    pub fn bound_tensors(&self) -> Vec<String> {
        self.bindings
            .iter()
            .flat_map(|b| b.names.iter().flatten().cloned())
            .collect()
    }

    pub fn write_back(&self, params: &Params, store: &mut Store) -> Result<(), EngineError> {
        let err = |m: String| EngineError::Invalid(m);
        for (binding, layer) in self.bindings.iter().zip(&params.layers) {
            let values: Vec<Option<Vec<f32>>> = match layer {
                LayerParams::Conv(p) => vec![
                    Some(params::to_vec(&p.weight.val()).map_err(err)?),
                    p.bias
                        .as_ref()
                        .map(|b| params::to_vec(&b.val()))
                        .transpose()
                        .map_err(err)?,
                ],
                LayerParams::Dense(p) => vec![
                    Some(params::to_vec(&p.weight.val()).map_err(err)?),
                    p.bias
                        .as_ref()
                        .map(|b| params::to_vec(&b.val()))
                        .transpose()
                        .map_err(err)?,
                ],
                LayerParams::Norm(p) => vec![
                    Some(params::to_vec(&p.scale.val()).map_err(err)?),
                    p.bias
                        .as_ref()
                        .map(|b| params::to_vec(&b.val()))
                        .transpose()
                        .map_err(err)?,
                ],
                LayerParams::BatchNorm(p) => vec![
                    Some(params::to_vec(&p.gamma.val()).map_err(err)?),
                    Some(params::to_vec(&p.beta.val()).map_err(err)?),
                    Some(params::to_vec(&p.running_mean.value_sync()).map_err(err)?),
                    Some(params::to_vec(&p.running_var.value_sync()).map_err(err)?),
                ],
            };
            for (name, data) in binding.names.iter().zip(values) {
                if let (Some(name), Some(data)) = (name, data) {
                    // The store keeps the file's shape ([1, N] biases stay [1, N]).
                    let t = store
                        .get_mut(name)
                        .ok_or_else(|| err(format!("'{name}' is not in the store")))?;
                    if t.data.len() != data.len() {
                        return Err(err(format!("'{name}' changed size")));
                    }
                    t.data = data;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pass on the workers returns its result, runs its parallel loops on the pool while
    /// the other workers wait for work, and a panic in it reaches the caller (no worker left
    /// waiting for a pass that will not finish: the pool runs the next pass).
    #[test]
    fn a_pass_on_the_workers_returns_and_a_panic_in_it_surfaces() {
        use rayon::prelude::*;
        let device = Device::flex();
        let sum = on_cpu_workers(&device, || (0..10_000u64).into_par_iter().sum::<u64>());
        assert_eq!(sum, 49_995_000);
        let failed =
            std::panic::catch_unwind(|| on_cpu_workers(&device, || -> u8 { panic!("a bug") }));
        assert!(failed.is_err(), "the panic reaches the caller");
        assert_eq!(
            on_cpu_workers(&device, || 7),
            7,
            "the pool runs the next pass"
        );
    }
}

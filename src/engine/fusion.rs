//! Plan rewrites that let Graft's CPU kernels do in one pass what the graph spells as
//! several steps: an activation folded into the convolution or batch norm before it, a 1x1
//! convolution joined to the depthwise one that reads it, and the convolutions a Concat
//! joins run by it into the joined tensor. Each rewrite keeps the plan's results: a step
//! whose kernel does not apply at run time runs the steps one after the other.

use super::params::LayerParams;
use super::{Src, Step, fast_cpu};
use crate::graph::{Conv, Op};

/// Folds each ReLU / Clip (and, in inference plans, SiLU) that is the only reader of a step's
/// output into that step, so the CPU kernels apply it while the output is still in cache:
/// into convolutions in inference plans (`fast_cpu::depthwise_conv`), into batch norms in all
/// plans (training's `fast_cpu::train::batch_norm` is then one op with one gradient pass for
/// both; inference plans have few batch norms left after `optimize::for_inference`). Training
/// keeps a convolution's activation as its own op (the convolution's gradient kernels take
/// none), and SiLU too (the batch norm's gradient kernel knows clamps only).
pub(super) fn fuse_activations(steps: &mut Vec<Step>, output_slots: &[usize], trainable: bool) {
    let mut i = 0;
    while i < steps.len() {
        let takes_act = match steps[i].op {
            Op::Conv(_) => !trainable,
            Op::BatchNorm { .. } => true,
            _ => false,
        };
        let fusable = match steps[i].outputs.as_slice() {
            &[out] if takes_act && steps[i].act.is_none() && !output_slots.contains(&out) => {
                match only_reader(steps, i, out) {
                    Some(j) if matches!(steps[j].inputs.as_slice(), [Some(Src::Slot(x))] if *x == out) => {
                        activation(&steps[j].op, trainable).map(|a| (j, a))
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        match fusable {
            Some((j, act)) => {
                let step = steps.remove(j);
                steps[i].outputs = step.outputs;
                steps[i].act = Some(act);
            }
            None => i += 1,
        }
    }
}

/// The one step after step `i` that reads slot `out`, if only one does (a step reads what
/// the steps joined to it read: its `then` and its `parts`).
fn only_reader(steps: &[Step], i: usize, out: usize) -> Option<usize> {
    let mut readers = (i + 1..steps.len()).filter(|&j| reads(&steps[j], out));
    let j = readers.next()?;
    readers.next().is_none().then_some(j)
}

/// Whether `step`, or a step joined to it, reads slot `slot`.
fn reads(step: &Step, slot: usize) -> bool {
    step.inputs
        .iter()
        .any(|s| matches!(s, Some(Src::Slot(x)) if *x == slot))
        || step.then.as_deref().is_some_and(|t| reads(t, slot))
        || step.parts.iter().any(|p| reads(p, slot))
}

/// Joins each 1x1 convolution whose output only a depthwise convolution of its channels
/// reads (the expand and depthwise steps of an inverted-residual block) to that convolution
/// as its [`Step::then`], so that the CPU runs both in one pass and the expanded activation
/// never leaves cache (`fast_cpu::expand_depthwise`; other devices run them one after the
/// other). Inference plans only: training keeps the expanded activation for the backward
/// pass.
pub(super) fn fuse_expand_depthwise(
    steps: &mut Vec<Step>,
    output_slots: &[usize],
    layers: &[LayerParams],
) {
    join_conv_readers(
        steps,
        output_slots,
        layers,
        |step| {
            let (c, [co, _, kh, kw]) = conv(step, layers)?;
            pointwise(&c, [kh, kw]).then_some(co)
        },
        depthwise,
    );
}

/// Joins each batch norm that learns (not frozen) whose output only a depthwise convolution
/// of its channels, or only a 1x1 convolution, reads to that convolution as its
/// [`Step::then`], so that training on the CPU runs them as one op that never writes the
/// normalised activation (`fast_cpu::train::norm_depthwise`, `norm_pointwise`). Training
/// plans only; where that op does not apply (another device, evaluation mode, a 1x1 whose
/// kernels cannot map their input, `pointwise::maps_input`) the two run one after the other.
pub(super) fn fuse_norm_conv(
    steps: &mut Vec<Step>,
    output_slots: &[usize],
    layers: &[LayerParams],
) {
    join_conv_readers(
        steps,
        output_slots,
        layers,
        |step| {
            if !matches!(step.op, Op::BatchNorm { .. }) || step.frozen {
                return None;
            }
            let LayerParams::BatchNorm(p) = layers.get(step.layer?)? else {
                return None;
            };
            Some(p.gamma.val().dims()[0])
        },
        |conv, weight, c| {
            let [_, per_group, kh, kw] = weight;
            depthwise(conv, weight, c) || (pointwise(conv, [kh, kw]) && per_group == c)
        },
    );
}

/// A depthwise convolution of `c` channels (`weight`: `[co, per group, kh, kw]`).
fn depthwise(conv: &Conv, [co, per_group, ..]: [usize; 4], c: usize) -> bool {
    conv.groups == c && co == c && per_group == 1
}

/// A plain 1x1 convolution: one group, stride 1, no padding.
fn pointwise(conv: &Conv, kernel: [usize; 2]) -> bool {
    kernel == [1, 1] && conv.groups == 1 && conv.strides == [1, 1] && conv.pads == [0; 4]
}

/// A convolution step's attributes and weight shape.
fn conv(step: &Step, layers: &[LayerParams]) -> Option<(Conv, [usize; 4])> {
    let Op::Conv(c) = &step.op else { return None };
    let LayerParams::Conv(p) = layers.get(step.layer?)? else {
        return None;
    };
    Some((c.clone(), p.weight.val().dims()))
}

/// Joins each step that `channels` accepts (saying how many channels it writes) to the
/// convolution that alone reads its one output, where `reader` accepts that convolution
/// (its attributes, weight shape, and those channels), as its [`Step::then`]; the pair's
/// outputs are the convolution's. A step already joined is not joined again.
fn join_conv_readers(
    steps: &mut Vec<Step>,
    output_slots: &[usize],
    layers: &[LayerParams],
    channels: impl Fn(&Step) -> Option<usize>,
    reader: impl Fn(&Conv, [usize; 4], usize) -> bool,
) {
    let mut i = 0;
    while i < steps.len() {
        let pair = || -> Option<usize> {
            if steps[i].then.is_some() {
                return None;
            }
            let c = channels(&steps[i])?;
            let &[out] = steps[i].outputs.as_slice() else {
                return None;
            };
            if output_slots.contains(&out) {
                return None;
            }
            let j = only_reader(steps, i, out)?;
            let (conv, weight) = conv(&steps[j], layers)?;
            let reads_it = matches!(steps[j].inputs.first(), Some(Some(Src::Slot(x))) if *x == out)
                && steps[j].inputs[1..].iter().all(Option::is_none);
            (reads_it && reader(&conv, weight, c)).then_some(j)
        };
        if let Some(j) = pair() {
            let next = steps.remove(j);
            steps[i].outputs = next.outputs.clone();
            steps[i].then = Some(Box::new(next));
        }
        i += 1;
    }
}

/// The activation `op` is, when a kernel can apply it as it writes: a clamp, or SiLU outside
/// training plans.
fn activation(op: &Op, trainable: bool) -> Option<fast_cpu::Act> {
    use crate::graph::Unary;
    match op {
        Op::Unary(Unary::Relu) => Some(fast_cpu::Act::Clamp(0.0, f32::INFINITY)),
        Op::Unary(Unary::Silu) if !trainable => Some(fast_cpu::Act::Silu),
        Op::Clip { min, max } => Some(fast_cpu::Act::Clamp(
            min.unwrap_or(f32::NEG_INFINITY),
            max.unwrap_or(f32::INFINITY),
        )),
        _ => None,
    }
}

/// Moves each convolution whose output only a Concat reads (once) into that Concat's
/// [`Step::parts`], to run when the Concat runs and write its channels of the joined tensor
/// in place (`exec::run_joined`): SqueezeNet's fire modules and GoogLeNet's inception blocks
/// join the outputs of convolutions, and copying them was every joined value written twice.
/// Moving a part later is sound: its inputs were computed before it (the plan is in
/// topological order) and are freed only after their last reader, the Concat now
/// (`Model::build` counts the parts' inputs there).
pub(super) fn fuse_concat_parts(steps: &mut Vec<Step>, output_slots: &[usize]) {
    let mut j = 0;
    while j < steps.len() {
        if !matches!(steps[j].op, Op::Concat { .. }) {
            j += 1;
            continue;
        }
        let slots: Vec<usize> = steps[j]
            .inputs
            .iter()
            .filter_map(|s| match s {
                Some(Src::Slot(x)) => Some(*x),
                _ => None,
            })
            .collect();
        let mut moved = Vec::new();
        for (k, &slot) in slots.iter().enumerate() {
            let once = !slots[k + 1..].contains(&slot) && !slots[..k].contains(&slot);
            let producer = steps[..j].iter().rposition(|s| s.outputs.contains(&slot));
            let Some(i) = producer.filter(|_| once && !output_slots.contains(&slot)) else {
                continue;
            };
            let p = &steps[i];
            let fusable = matches!(p.op, Op::Conv(_))
                && p.then.is_none()
                && p.outputs == [slot]
                && only_reader(steps, i, slot) == Some(j);
            if fusable {
                moved.push(i);
            }
        }
        // Removed from the last, so the earlier indices stay put; kept in plan order.
        moved.sort_unstable();
        let mut parts: Vec<Step> = moved.iter().rev().map(|&i| steps.remove(i)).collect();
        parts.reverse();
        j -= moved.len();
        steps[j].parts = parts;
        j += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::super::Model;
    use crate::graph::{Conv, Input, Metadata, Network, Node, Op};
    use crate::weights::{Store, Tensor};
    use burn::tensor::Device;

    /// Two joins: the first of two convolutions (a 3x3 and a 1x1), the second of the first
    /// join and a convolution's output that a part of the first join also reads. The first
    /// join takes its convolutions as parts; the shared convolution stays a step of its own
    /// (moved into the second join, the part reading it would find it not computed), and
    /// the plan's answer is the unfused plan's (an autodiff device's, which fuses nothing).
    #[test]
    fn a_join_takes_the_convolutions_only_it_reads() {
        let conv = |pad| {
            Op::Conv(Conv {
                strides: [1, 1],
                pads: [pad; 4],
                dilations: [1, 1],
                groups: 1,
            })
        };
        let node = |name: &str, op, ins: &[&str]| {
            let ins = ins.iter().map(|s| s.to_string()).collect();
            Node::new(name, op, ins, vec![name.to_string()])
        };
        let cat = Op::Concat { axis: 1 };
        let net = Network {
            name: "joins".into(),
            input: Input {
                name: "x".into(),
                shape: vec![2, 3, 9, 7],
                free_batch: true,
            },
            outputs: vec!["j2".into()],
            nodes: vec![
                node("a", conv(0), &["x", "wa", "ba"]),
                node("b", conv(1), &["a", "wb", "bb"]),
                node("c", conv(0), &["x", "wc", "bc"]),
                node("j1", cat.clone(), &["b", "c"]),
                node("j2", cat, &["j1", "a"]),
            ],
            metadata: Metadata::default(),
        };
        let mut store = Store::new();
        let mut seed = 7u32;
        for (name, shape) in [
            ("wa", vec![4, 3, 1, 1]),
            ("ba", vec![4]),
            ("wb", vec![5, 4, 3, 3]),
            ("bb", vec![5]),
            ("wc", vec![2, 3, 1, 1]),
            ("bc", vec![2]),
        ] {
            let n = shape.iter().product();
            let data = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                })
                .collect();
            store.insert(name, Tensor::new(shape, data).expect("a tensor"));
        }
        let fused = Model::build(&net, &store, &Device::flex()).expect("builds");
        let steps = fused.plan.steps();
        let names: Vec<&str> = steps.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(names, ["a", "j1", "j2"], "the plan's steps");
        let parts: Vec<&str> = steps[1].parts.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(parts, ["b", "c"], "the first join's parts");
        assert!(steps[2].parts.is_empty(), "the second join's parts");

        let plain = Model::build(&net, &store, &Device::flex().autodiff()).expect("builds");
        let x: Vec<f32> = (0..2 * 3 * 9 * 7)
            .map(|i| (i % 17) as f32 / 8.0 - 1.0)
            .collect();
        let got = fused.infer(&[2, 3, 9, 7], x.clone()).expect("runs");
        let want = plain.infer(&[2, 3, 9, 7], x).expect("runs");
        assert_eq!(got[0].0, [2, 11, 9, 7]);
        assert_eq!(got[0].0, want[0].0);
        let err = got[0]
            .1
            .iter()
            .zip(&want[0].1)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 1e-4, "fused against plain: error {err}");
    }
}

#[cfg(test)]
mod norm_conv_tests {
    use super::super::{Mode, Model, Value};
    use crate::graph::{Conv, Input, Metadata, Network, Node, Op};
    use crate::weights::{Store, Tensor};
    use burn::tensor::Device;

    /// A training plan joins a batch norm (its ReLU6 folded in) to the depthwise or 1x1
    /// convolution that alone reads it; `each_step` still lists the convolution (the optimizer finds its
    /// weights through it). A training pass gives the output and running statistics of the
    /// same network whose batch norm output is also a network output (so not joined); the
    /// statistics, read back on this thread while the pass ran on a CPU worker, have moved
    /// (they were read a step behind before `update_running` took them in).
    #[test]
    fn a_training_plan_joins_a_batch_norm_to_its_convolution_reader() {
        for (groups, pads, w_shape, b_len) in
            [(4, 1, vec![4, 1, 3, 3], 4), (1, 0, vec![6, 4, 1, 1], 6)]
        {
            joins_its_reader(groups, pads, w_shape, b_len);
        }
    }

    /// [`a_training_plan_joins_a_batch_norm_to_its_convolution_reader`] for one reader.
    fn joins_its_reader(groups: usize, pads: usize, w_shape: Vec<usize>, b_len: usize) {
        let node = |name: &str, op, ins: &[&str]| {
            let ins = ins.iter().map(|s| s.to_string()).collect();
            Node::new(name, op, ins, vec![name.to_string()])
        };
        let net = |outputs: &[&str]| Network {
            name: "bn-dw".into(),
            input: Input {
                name: "x".into(),
                shape: vec![2, 4, 9, 11],
                free_batch: true,
            },
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            nodes: vec![
                node(
                    "n",
                    Op::BatchNorm {
                        epsilon: 1e-5,
                        momentum: 0.9,
                    },
                    &["x", "g", "b", "m", "v"],
                ),
                node(
                    "r",
                    Op::Clip {
                        min: Some(0.0),
                        max: Some(6.0),
                    },
                    &["n"],
                ),
                node(
                    "d",
                    Op::Conv(Conv {
                        strides: [1, 1],
                        pads: [pads; 4],
                        dilations: [1, 1],
                        groups,
                    }),
                    &["r", "wd", "bd"],
                ),
            ],
            metadata: Metadata::default(),
        };
        let mut store = Store::new();
        for (name, shape, base) in [
            ("g", vec![4], 1.0),
            ("b", vec![4], 0.1),
            ("m", vec![4], 0.0),
            ("v", vec![4], 1.0),
            ("wd", w_shape, 0.0),
            ("bd", vec![b_len], 0.0),
        ] {
            let n: usize = shape.iter().product();
            let data = (0..n).map(|i| base + (i % 7) as f32 / 7.0 - 0.4).collect();
            store.insert(name, Tensor::new(shape, data).expect("a tensor"));
        }
        let device = Device::flex().autodiff();
        let joined = Model::build(&net(&["d"]), &store, &device).expect("builds");
        let apart = Model::build(&net(&["d", "r"]), &store, &device).expect("builds");
        let steps = joined.plan.steps();
        assert_eq!(
            steps.len(),
            1,
            "one step: the batch norm, the convolution joined"
        );
        assert_eq!(steps[0].then.as_ref().map(|s| s.node.as_str()), Some("d"));
        let names: Vec<&str> = joined.plan.each_step().map(|s| s.node.as_str()).collect();
        assert_eq!(names, ["n", "d"], "every step");
        assert!(apart.plan.steps().iter().all(|s| s.then.is_none()));

        let x: Vec<f32> = (0..2 * 4 * 9 * 11)
            .map(|i| (i % 23) as f32 / 4.0 - 2.0)
            .collect();
        let run = |m: &Model| {
            let input = Value::from_data(&[2, 4, 9, 11], x.clone(), &device);
            let out = m.forward(input, Mode::Train).expect("runs")[0]
                .to_vec()
                .expect("values");
            let mut s = store.clone();
            m.write_back(&mut s).expect("writes back");
            (out, s.get("m").cloned(), s.get("v").cloned())
        };
        let (a, b) = (run(&joined), run(&apart));
        assert_eq!(a, b, "joined against apart: output, running statistics");
        assert_ne!(a.1, store.get("m").cloned(), "the running mean moved");
    }
}

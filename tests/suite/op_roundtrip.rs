//! Every `Op` variant (and every member of the elementwise and reduction families) through
//! export → import: the file Graft writes reads back to the same ops, and the re-imported
//! network computes the same values. `variant` matches `Op` without a wildcard, so a new
//! variant does not compile here until it has a case.

use burn::tensor::Device;
use graft::engine::Model;
use graft::graph::{
    Binary, Conv, Input, Metadata, Nary, Network, Node, Op, PadMode, Pool, Reduce, ResizeMode,
    Unary,
};
use graft::onnx;
use graft::weights::{Store, Tensor};
use std::collections::BTreeSet;

const X: [usize; 4] = [1, 4, 6, 6];

/// The variant's name; exhaustive on purpose.
fn variant(op: &Op) -> &'static str {
    match op {
        Op::Conv(_) => "Conv",
        Op::BatchNorm { .. } => "BatchNorm",
        Op::LayerNorm { .. } => "LayerNorm",
        Op::Lrn { .. } => "Lrn",
        Op::Gemm { .. } => "Gemm",
        Op::MatMul => "MatMul",
        Op::Unary(_) => "Unary",
        Op::LeakyRelu { .. } => "LeakyRelu",
        Op::Elu { .. } => "Elu",
        Op::HardSigmoid { .. } => "HardSigmoid",
        Op::Clip { .. } => "Clip",
        Op::Gelu { .. } => "Gelu",
        Op::Binary(_) => "Binary",
        Op::Nary(_) => "Nary",
        Op::MaxPool(_) => "MaxPool",
        Op::AveragePool { .. } => "AveragePool",
        Op::GlobalAveragePool => "GlobalAveragePool",
        Op::GlobalMaxPool => "GlobalMaxPool",
        Op::Reduce { .. } => "Reduce",
        Op::Softmax { .. } => "Softmax",
        Op::LogSoftmax { .. } => "LogSoftmax",
        Op::Concat { .. } => "Concat",
        Op::Split { .. } => "Split",
        Op::Slice { .. } => "Slice",
        Op::Gather { .. } => "Gather",
        Op::Flatten { .. } => "Flatten",
        Op::Reshape { .. } => "Reshape",
        Op::Transpose { .. } => "Transpose",
        Op::Squeeze { .. } => "Squeeze",
        Op::Unsqueeze { .. } => "Unsqueeze",
        Op::Expand { .. } => "Expand",
        Op::Pad { .. } => "Pad",
        Op::Resize { .. } => "Resize",
        Op::Dropout { .. } => "Dropout",
        Op::Identity => "Identity",
        Op::Unsupported { .. } => "Unsupported",
    }
}

/// A small network: `before` (ops from `x`), then the op under test reading `reads`.
struct Case {
    op: Op,
    before: Vec<(Op, Vec<&'static str>)>,
    reads: Vec<&'static str>,
    weights: Vec<(&'static str, Vec<usize>)>,
    outputs: usize,
}

fn case(op: Op, reads: &[&'static str]) -> Case {
    Case {
        op,
        before: Vec::new(),
        reads: reads.to_vec(),
        weights: Vec::new(),
        outputs: 1,
    }
}

impl Case {
    fn weights(mut self, w: &[(&'static str, &[usize])]) -> Self {
        self.weights = w.iter().map(|(n, s)| (*n, s.to_vec())).collect();
        self
    }
    fn after(mut self, op: Op, reads: &[&'static str]) -> Self {
        self.before.push((op, reads.to_vec()));
        self
    }

    fn build(&self, i: usize) -> (Network, Store) {
        let mut store = Store::new();
        let mut seed = 1u32 + i as u32;
        for (name, shape) in &self.weights {
            let n: usize = shape.iter().product();
            // Positive values: logs, roots, powers and variances stay defined.
            let data = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    0.2 + (seed >> 8) as f32 / (1u32 << 24) as f32
                })
                .collect();
            store.insert(*name, Tensor::new(shape.clone(), data).unwrap());
        }
        let mut nodes = Vec::new();
        for (k, (op, reads)) in self.before.iter().enumerate() {
            let ins = reads.iter().map(|s| s.to_string()).collect();
            nodes.push(Node::new(
                format!("pre{k}"),
                op.clone(),
                ins,
                vec![format!("p{k}")],
            ));
        }
        let outputs: Vec<String> = (0..self.outputs).map(|k| format!("y{k}")).collect();
        let ins = self.reads.iter().map(|s| s.to_string()).collect();
        nodes.push(Node::new("op", self.op.clone(), ins, outputs.clone()));
        let net = Network {
            name: format!("case{i}"),
            input: Input {
                name: "x".into(),
                shape: X.to_vec(),
                free_batch: true,
            },
            outputs,
            nodes,
            metadata: Metadata::default(),
        };
        (net, store)
    }
}

fn pool(k: usize, s: usize, p: usize) -> Pool {
    Pool {
        kernel: [k, k],
        strides: [s, s],
        pads: [p; 4],
        dilations: [1, 1],
        ceil_mode: false,
    }
}

fn cases() -> Vec<Case> {
    let mut v = vec![
        case(
            Op::Conv(Conv {
                strides: [1, 1],
                pads: [1; 4],
                dilations: [1, 1],
                groups: 2,
            }),
            &["x", "w", "b"],
        )
        .weights(&[("w", &[4, 2, 3, 3]), ("b", &[4])]),
        case(
            Op::BatchNorm {
                epsilon: 1e-5,
                momentum: 0.9,
            },
            &["x", "s", "b", "m", "v"],
        )
        .weights(&[("s", &[4]), ("b", &[4]), ("m", &[4]), ("v", &[4])]),
        case(
            Op::LayerNorm {
                axis: -1,
                epsilon: 1e-5,
            },
            &["x", "s", "b"],
        )
        .weights(&[("s", &[6]), ("b", &[6])]),
        case(
            Op::Lrn {
                size: 3,
                alpha: 1e-4,
                beta: 0.75,
                bias: 1.0,
            },
            &["x"],
        ),
        case(
            Op::Gemm {
                alpha: 1.0,
                beta: 1.0,
                trans_a: false,
                trans_b: true,
            },
            &["p0", "w", "b"],
        )
        .after(Op::Flatten { axis: 1 }, &["x"])
        .weights(&[("w", &[3, 144]), ("b", &[3])]),
        case(Op::MatMul, &["x", "w"]).weights(&[("w", &[6, 5])]),
        case(Op::LeakyRelu { alpha: 0.1 }, &["x"]),
        case(Op::Elu { alpha: 0.7 }, &["x"]),
        case(
            Op::HardSigmoid {
                alpha: 0.3,
                beta: 0.4,
            },
            &["x"],
        ),
        case(
            Op::Clip {
                min: Some(0.3),
                max: Some(0.8),
            },
            &["x"],
        ),
        case(
            Op::Clip {
                min: None,
                max: Some(0.5),
            },
            &["x"],
        ),
        case(Op::Gelu { tanh: false }, &["x"]),
        case(Op::Gelu { tanh: true }, &["x"]),
        case(Op::MaxPool(pool(2, 2, 0)), &["x"]),
        case(
            Op::AveragePool {
                pool: pool(3, 1, 1),
                count_include_pad: false,
            },
            &["x"],
        ),
        case(Op::GlobalAveragePool, &["x"]),
        case(Op::GlobalMaxPool, &["x"]),
        case(Op::Concat { axis: 1 }, &["x", "x"]),
        case(
            Op::Split {
                axis: 1,
                sizes: vec![1, 3],
            },
            &["x"],
        ),
        case(
            Op::Slice {
                starts: vec![1],
                ends: vec![5],
                axes: vec![2],
                steps: vec![2],
            },
            &["x"],
        ),
        case(
            Op::Gather {
                axis: 1,
                indices: vec![0, 2],
                scalar: false,
            },
            &["x"],
        ),
        case(
            Op::Gather {
                axis: 2,
                indices: vec![3],
                scalar: true,
            },
            &["x"],
        ),
        case(Op::Flatten { axis: 1 }, &["x"]),
        case(
            Op::Reshape {
                shape: vec![0, 8, -1],
                allowzero: false,
            },
            &["x"],
        ),
        case(
            Op::Transpose {
                perm: vec![0, 2, 3, 1],
            },
            &["x"],
        ),
        case(Op::Squeeze { axes: vec![2, 3] }, &["p0"]).after(Op::GlobalAveragePool, &["x"]),
        case(Op::Unsqueeze { axes: vec![1] }, &["x"]),
        case(
            Op::Expand {
                shape: vec![1, 4, 6, 6],
            },
            &["p0"],
        )
        .after(Op::GlobalMaxPool, &["x"]),
        case(Op::Dropout { ratio: 0.5 }, &["x"]),
        case(Op::Identity, &["x"]),
    ];
    for legacy in [false, true] {
        v.push(case(Op::Softmax { axis: 1, legacy }, &["x"]));
        v.push(case(Op::LogSoftmax { axis: 1, legacy }, &["x"]));
    }
    for (scales, mode) in [
        ([2.0, 2.0], ResizeMode::Nearest),
        ([3.0, 0.5], ResizeMode::Nearest),
        (
            [2.0, 1.5],
            ResizeMode::Linear {
                align_corners: false,
            },
        ),
        (
            [1.5, 2.0],
            ResizeMode::Linear {
                align_corners: true,
            },
        ),
    ] {
        v.push(case(Op::Resize { scales, mode }, &["x"]));
    }
    for mode in [PadMode::Constant(0.5), PadMode::Reflect, PadMode::Edge] {
        v.push(case(
            Op::Pad {
                pads: vec![0, 0, 1, 2, 0, 0, 2, 1],
                mode,
            },
            &["x"],
        ));
    }
    v.extend(Unary::ALL.map(|u| case(Op::Unary(u), &["x"])));
    v.extend(Binary::ALL.map(|b| case(Op::Binary(b), &["x", "c"]).weights(&[("c", &[4, 1, 1])])));
    v.extend(Nary::ALL.map(|n| case(Op::Nary(n), &["x", "c"]).weights(&[("c", &[4, 1, 1])])));
    v.extend(Reduce::ALL.map(|kind| {
        case(
            Op::Reduce {
                kind,
                axes: vec![2, 3],
                keepdims: true,
            },
            &["x"],
        )
    }));
    if let Some(split) = v.iter_mut().find(|c| matches!(c.op, Op::Split { .. })) {
        split.outputs = 2;
    }
    v
}

fn run(net: &Network, store: &Store, x: &[f32]) -> Vec<(Vec<usize>, Vec<f32>)> {
    let model =
        Model::build(net, store, &Device::flex()).unwrap_or_else(|e| panic!("{}: {e}", net.name));
    model
        .infer(&X, x.to_vec())
        .unwrap_or_else(|e| panic!("{}: {e}", net.name))
}

#[test]
fn every_op_survives_export_and_import() {
    let x: Vec<f32> = (0..X.iter().product::<usize>())
        .map(|i| 0.1 + ((i * 37) % 101) as f32 / 110.0)
        .collect();
    let mut covered = BTreeSet::new();
    let (mut same_op, mut compared) = (0, 0);
    let cases = cases();
    for (i, c) in cases.iter().enumerate() {
        let (net, store) = c.build(i);
        let what = format!("{:?}", c.op);
        let bytes = onnx::export_bytes(&net, &store).unwrap_or_else(|e| panic!("{what}: {e}"));
        let back = onnx::import_bytes(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        // The op comes back as it was, under its name, wherever the file keeps it as one node.
        if let Some(node) = back.network.node("op")
            && variant(&node.op) == variant(&c.op)
        {
            assert_eq!(node.op, c.op, "{what} read back differently");
            same_op += 1;
        }
        // And it computes the same values.
        let (want, got) = (run(&net, &store, &x), run(&back.network, &back.store, &x));
        assert_eq!(want.len(), got.len(), "{what}: outputs");
        for ((ws, wv), (gs, gv)) in want.iter().zip(&got) {
            assert_eq!(ws, gs, "{what}: shape");
            for (a, b) in wv.iter().zip(gv) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + a.abs()) || (a.is_nan() && b.is_nan()),
                    "{what}: {a} vs {b}"
                );
                compared += 1;
            }
        }
        covered.insert(variant(&c.op));
    }
    // Every variant but the placeholder has a case; the placeholder refuses to export.
    let all = [
        "Conv",
        "BatchNorm",
        "LayerNorm",
        "Lrn",
        "Gemm",
        "MatMul",
        "Unary",
        "LeakyRelu",
        "Elu",
        "HardSigmoid",
        "Clip",
        "Gelu",
        "Binary",
        "Nary",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "Reduce",
        "Softmax",
        "LogSoftmax",
        "Concat",
        "Split",
        "Slice",
        "Gather",
        "Flatten",
        "Reshape",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Expand",
        "Pad",
        "Dropout",
        "Identity",
    ];
    println!(
        "{} cases: {same_op} read back as the same op, {compared} values compared",
        cases.len()
    );
    assert!(
        same_op * 10 >= cases.len() * 9,
        "most ops read back as themselves"
    );
    let missing: Vec<_> = all.iter().filter(|v| !covered.contains(*v)).collect();
    assert!(missing.is_empty(), "no case for {missing:?}");

    let c = case(
        Op::Unsupported {
            op_type: "Mystery".into(),
            domain: String::new(),
            reason: "test".into(),
            attributes: Vec::new(),
        },
        &["x"],
    );
    let (net, store) = c.build(999);
    let err = onnx::export_bytes(&net, &store).unwrap_err().to_string();
    assert!(err.contains("'op'"), "the error names the node: {err}");
}

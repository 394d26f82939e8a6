//! Every committed fixture (small variants of the literature's architectures exported by
//! PyTorch, see tools/make_fixtures.py) runs on burn's flex CPU backend and matches PyTorch's
//! output: max |graft − reference| ≤ 1e-4 × max(1, max |reference|). Both as imported and
//! with the inference rewrites (`optimize::for_inference`: BatchNorm and zero Pad folded into
//! the convolutions), as `graft infer` runs it; on the CPU, inference plans also run Graft's
//! fused kernels (`engine/fast_cpu.rs`), so these fixtures check them on every architecture.

use crate::common;

use common::max_rel_error;
use graft::engine::{Model, optimize};
use graft::onnx;
use std::path::{Path, PathBuf};

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/fixtures exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("output.npy").exists())
        .collect();
    dirs.sort();
    dirs
}

fn model_path(dir: &Path) -> PathBuf {
    let own = dir.join("model.onnx");
    if own.exists() {
        own
    } else {
        // The embedded network's reference lives next to the fixtures, its file in assets/.
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/efficientnet_lite0.onnx")
    }
}

#[test]
fn every_fixture_matches_pytorch_on_cpu() {
    let device = burn::tensor::Device::flex();
    let mut failures = Vec::new();
    let dirs = fixtures();
    assert!(
        dirs.len() >= 20,
        "expected the committed fixtures, found {}",
        dirs.len()
    );
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let imported = onnx::import(model_path(&dir)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (shape, input) = graft::npy::read_f32(&dir.join("input.npy")).unwrap();
        let (out_shape, want) = graft::npy::read_f32(&dir.join("output.npy")).unwrap();
        let (folded_net, folded_store) =
            optimize::for_inference(&imported.network, &imported.store);
        for (variant, net, store) in [
            ("as imported", &imported.network, &imported.store),
            ("inference rewrites", &folded_net, &folded_store),
        ] {
            let result = Model::build(net, store, &device)
                .and_then(|m| m.infer(&shape, input.clone()))
                .map_err(|e| e.to_string());
            match result {
                Ok(outs) => {
                    let (s, got) = &outs[0];
                    let err = max_rel_error(got, &want);
                    if *s != out_shape || err > 1e-4 {
                        failures.push(format!(
                            "{name} ({variant}): shape {s:?} vs {out_shape:?}, error {err:.2e}"
                        ));
                    } else {
                        eprintln!("{name} ({variant}): error {err:.2e}");
                    }
                }
                Err(e) => failures.push(format!("{name} ({variant}): {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "parity failures:\n{}",
        failures.join("\n")
    );
}

/// The rewrites actually happen on the default network: TensorFlow-style padding (explicit
/// `Pad` before each stride-2 depthwise convolution) and every BatchNorm disappear, and the
/// rewritten network gives the same answers.
#[test]
fn inference_rewrites_fold_pads_and_batchnorms_of_the_default_network() {
    use graft::graph::Op;
    let imported = onnx::import_bytes(graft::DEFAULT_MODEL).unwrap();
    let count = |net: &graft::graph::Network, f: fn(&Op) -> bool| {
        net.nodes.iter().filter(|n| f(&n.op)).count()
    };
    let is_pad = |op: &Op| matches!(op, Op::Pad { .. });
    let is_bn = |op: &Op| matches!(op, Op::BatchNorm { .. });
    assert!(
        count(&imported.network, is_pad) >= 4,
        "Lite0 pads before its stride-2 convs"
    );
    assert!(count(&imported.network, is_bn) >= 40);
    let (net, store) = optimize::for_inference(&imported.network, &imported.store);
    assert_eq!(count(&net, is_pad), 0);
    assert_eq!(count(&net, is_bn), 0);

    let device = burn::tensor::Device::flex();
    let shape = [2usize, 3, 224, 224];
    let input: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let run = |net, store| {
        Model::build(net, store, &device)
            .and_then(|m| m.infer(&shape, input.clone()))
            .unwrap()
            .remove(0)
            .1
    };
    let want = run(&imported.network, &imported.store);
    let got = run(&net, &store);
    let err = max_rel_error(&got, &want);
    assert!(err < 1e-4, "rewritten network differs by {err:.2e}");

    // Inference plans run each block's expand 1x1 convolution and the depthwise one after
    // it as one step (15 of Lite0's 16 blocks expand; the answers above came through them).
    let fused = |steps: &[graft::engine::Step]| steps.iter().filter(|s| s.then.is_some()).count();
    let inference = Model::build(&net, &store, &device).unwrap();
    assert_eq!(fused(inference.plan.steps()), 15);

    // Training plans fold the Pads too (BatchNorm stays: it learns).
    let training = Model::build(
        &imported.network,
        &imported.store,
        &burn::tensor::Device::flex().autodiff(),
    )
    .unwrap();
    let steps = training.plan.steps();
    assert!(
        !steps.iter().any(|s| is_pad(&s.op)),
        "a Pad step in training"
    );
    assert!(steps.iter().filter(|s| is_bn(&s.op)).count() >= 40);
    // Training keeps the expanded activation, but joins each batch norm that only a
    // convolution reads to it, so the normalised activation is not written out: the stem's
    // and the 15 expand ones to their depthwise convolutions, each block's depthwise batch
    // norm to its project 1x1, block 0's last to block 1's expand and block 15's to the head
    // 1x1 (no skip reads those two).
    assert_eq!(fused(steps), 34);
    let reader_groups = |s: &graft::engine::Step| match s.then.as_deref().map(|t| &t.op) {
        Some(Op::Conv(c)) => Some(c.groups),
        _ => None,
    };
    assert!(
        steps
            .iter()
            .filter(|s| s.then.is_some())
            .all(|s| is_bn(&s.op) && reader_groups(s).is_some()),
        "training joins batch norms to their convolutions only"
    );
    assert_eq!(
        steps.iter().filter(|s| reader_groups(s) == Some(1)).count(),
        18,
        "batch norms joined to a 1x1"
    );
}

/// PyTorch exports SiLU as `Mul(x, Sigmoid(x))`: the rewrite joins each pair into one step
/// and leaves the squeeze-and-excitation sigmoids (which scale another tensor) alone.
#[test]
fn inference_rewrites_join_sigmoid_and_mul_into_silu() {
    use graft::graph::{Op, Unary};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/efficientnet_b0_op16");
    let imported = onnx::import(model_path(&dir)).unwrap();
    let count = |net: &graft::graph::Network, u: Unary| {
        net.nodes.iter().filter(|n| n.op == Op::Unary(u)).count()
    };
    let sigmoids = count(&imported.network, Unary::Sigmoid);
    let net = optimize::fuse_silu(&imported.network);
    let silus = count(&net, Unary::Silu);
    assert!(silus > 0, "B0's activations are SiLU");
    assert!(
        count(&net, Unary::Sigmoid) > 0,
        "the SE gates stay sigmoids"
    );
    assert_eq!(count(&net, Unary::Sigmoid) + silus, sigmoids);
    assert_eq!(net.nodes.len() + silus, imported.network.nodes.len());
}

//! Head adaptation on the literature's architectures, freezing, and undo/redo.

mod common;

use graft::engine::Model;
use graft::graph::Op;
use graft::graph::analyze::analyze;
use graft::graph::edit::{Edit, HEAD_CLASSIFIER, apply, find_classifier};
use graft::onnx;

fn classes(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("class{i}")).collect()
}

#[test]
fn adapt_head_finds_the_classifier_of_each_architecture() {
    let device = burn::tensor::Device::flex();
    for (fixture, kind) in [
        ("squeezenet1_1_op13", "Conv"),
        ("resnet18_op13", "Gemm"),
        ("mobilenet_v2_bn_op12", "Gemm"),
        ("efficientnet_b0_op16", "Gemm"),
        ("googlenet_op11", "Gemm"),
        ("densenet121_op13", "Gemm"),
        ("convnext_op17", "Gemm"),
        ("vgg16_op13", "Gemm"),
        ("caffenet_lrn_op11", "Gemm"),
        ("darknet_op13", "Conv"),
    ] {
        let imported = onnx::import(common::fixture(&format!("{fixture}/model.onnx"))).unwrap();
        let (mut net, mut store) = (imported.network, imported.store);
        let old =
            find_classifier(&net, &store).unwrap_or_else(|| panic!("{fixture}: no classifier"));
        assert_eq!(net.nodes[old].op.onnx_type(), kind, "{fixture}");
        apply(
            &mut net,
            &mut store,
            &Edit::AdaptHead {
                classes: classes(3),
                seed: 0,
            },
        )
        .unwrap_or_else(|e| panic!("{fixture}: {e}"));
        assert!(!analyze(&net, &store).has_errors(), "{fixture}");
        assert!(net.node(HEAD_CLASSIFIER).is_some());
        assert!(matches!(net.nodes.last().unwrap().op, Op::Softmax { .. }));
        assert_eq!(net.metadata.labels, classes(3));
        // One softmax only, even where the original ended in one (caffenet).
        assert_eq!(
            net.nodes
                .iter()
                .filter(|n| matches!(n.op, Op::Softmax { .. }))
                .count(),
            1,
            "{fixture}"
        );
        let [c, h, w] = net.input_chw().unwrap();
        let out = Model::build(&net, &store, &device)
            .unwrap()
            .infer(&[2, c, h, w], vec![0.1; 2 * c * h * w])
            .unwrap();
        assert_eq!(out[0].0, vec![2, 3], "{fixture}");
        let sum: f32 = out[0].1[..3].iter().sum();
        assert!(
            (sum - 1.0).abs() < 1e-5,
            "{fixture}: probabilities sum to {sum}"
        );
    }
}

#[test]
fn edits_undo_and_redo_exactly() {
    let imported = onnx::import(common::fixture("resnet18_bn_op14/model.onnx")).unwrap();
    let (mut net, mut store) = (imported.network.clone(), imported.store.clone());
    let mid = net.nodes[20].name.clone();
    let mut changes = Vec::new();
    for e in [
        Edit::AdaptHead {
            classes: classes(4),
            seed: 3,
        },
        Edit::FreezeUntil { node: mid.clone() },
        Edit::SetLrFactor {
            node: HEAD_CLASSIFIER.into(),
            factor: 10.0,
        },
        Edit::UnfreezeFrom {
            node: net.nodes[15].name.clone(),
        },
    ] {
        changes.push(apply(&mut net, &mut store, &e).unwrap());
    }
    assert!(net.nodes[..15].iter().all(|n| n.frozen) && !net.nodes[15].frozen);
    assert_eq!(net.node(HEAD_CLASSIFIER).unwrap().lr_factor, 10.0);
    let (after_net, after_store) = (net.clone(), store.clone());
    for c in changes.iter().rev() {
        c.undo(&mut net, &mut store);
    }
    assert_eq!(net, imported.network);
    assert_eq!(store, imported.store);
    for c in &changes {
        c.redo(&mut net, &mut store);
    }
    assert_eq!(net, after_net);
    assert_eq!(store, after_store);
}

#[test]
fn an_edit_that_would_break_the_network_changes_nothing() {
    let imported = onnx::import(common::fixture("resnet18_op13/model.onnx")).unwrap();
    let (mut net, mut store) = (imported.network.clone(), imported.store.clone());
    // Removing the first conv would feed 3 channels where 8 are expected.
    let conv = net
        .nodes
        .iter()
        .find(|n| n.op.onnx_type() == "Conv")
        .unwrap()
        .name
        .clone();
    let err = apply(&mut net, &mut store, &Edit::RemoveNode { node: conv }).unwrap_err();
    assert!(err.to_string().contains("would break"), "{err}");
    assert_eq!(net, imported.network);
    assert_eq!(store, imported.store);
    // A node that does not exist is named.
    assert!(
        apply(
            &mut net,
            &mut store,
            &Edit::FreezeUntil {
                node: "nope".into()
            }
        )
        .unwrap_err()
        .to_string()
        .contains("'nope'")
    );
    // A single-class head is refused.
    assert!(
        apply(
            &mut net,
            &mut store,
            &Edit::AdaptHead {
                classes: classes(1),
                seed: 0
            }
        )
        .is_err()
    );
}

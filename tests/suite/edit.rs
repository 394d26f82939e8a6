//! Head adaptation on the literature's architectures, freezing, and undo/redo.

use crate::common;

use graft::engine::Model;
use graft::graph::Op;
use graft::graph::analyze::analyze;
use graft::graph::edit::{Edit, HEAD_CLASSIFIER, apply, find_classifier};
use graft::onnx;

/// The largest |a − b| over two equally long lists.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

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

/// Every layer of the library inserted after (and put in place of) a layer of a small conv
/// network, and the wiring edits: each applies and undoes/redoes to the exact bytes, or is
/// refused and changes nothing.
#[test]
fn layer_library_edits_round_trip_through_undo_and_redo() {
    use graft::graph::edit::{LayerKind, NewLayer};
    let imported = onnx::import(common::fixture("darknet_op13/model.onnx")).unwrap();
    let net0 = imported.network.clone();
    // A convolution in the middle of the network, its successor, and a later node.
    let convs: Vec<usize> = (0..net0.nodes.len())
        .filter(|&i| net0.nodes[i].op.onnx_type() == "Conv")
        .collect();
    let mid = net0.nodes[convs[convs.len() / 2]].name.clone();
    let relu_after_mid = net0.nodes[convs[convs.len() / 2] + 1].name.clone();
    let mut edits: Vec<Edit> = LayerKind::library()
        .into_iter()
        .enumerate()
        .flat_map(|(i, kind)| {
            let layer = |suffix: &str| NewLayer {
                name: format!("lib{i}{suffix}"),
                kind: kind.clone(),
                seed: i as u64,
            };
            [
                Edit::InsertAfter {
                    node: mid.clone(),
                    layer: layer("a"),
                },
                Edit::Replace {
                    node: relu_after_mid.clone(),
                    layer: layer("r"),
                },
            ]
        })
        .collect();
    let mid_i = net0.node_index(&mid).unwrap();
    assert!(matches!(net0.nodes[mid_i + 1].op, Op::LeakyRelu { .. }));
    edits.extend([
        Edit::SetOp {
            node: relu_after_mid.clone(),
            op: Op::LeakyRelu { alpha: 0.2 },
        },
        Edit::CutAfter { node: mid.clone() },
        Edit::Rewire {
            node: relu_after_mid.clone(),
            index: 0,
            value: net0.nodes[mid_i].inputs[0].clone(),
        },
        Edit::RemoveNode {
            node: relu_after_mid.clone(),
        },
    ]);
    let mut applied = Vec::new();
    for e in &edits {
        let (mut net, mut store) = (imported.network.clone(), imported.store.clone());
        match apply(&mut net, &mut store, e) {
            Ok(change) => {
                assert_ne!(net, imported.network, "{e:?} changed nothing");
                let (after_net, after_store) = (net.clone(), store.clone());
                change.undo(&mut net, &mut store);
                assert_eq!(net, imported.network, "undo of {e:?}");
                assert_eq!(store, imported.store, "undo of {e:?}");
                change.redo(&mut net, &mut store);
                assert_eq!(net, after_net, "redo of {e:?}");
                assert_eq!(store, after_store, "redo of {e:?}");
                assert!(!analyze(&net, &store).has_errors(), "{e:?} left errors");
                applied.push(format!("{e:?}"));
            }
            Err(_) => {
                assert_eq!(net, imported.network, "a refused {e:?} changed the network");
                assert_eq!(store, imported.store, "a refused {e:?} changed the weights");
            }
        }
    }
    // Shape-keeping layers always fit after a convolution.
    for must in [
        "lib2a",
        "lib3a",
        "lib4a",
        "lib5a",
        "lib6a",
        "lib8a",
        "SetOp",
        "RemoveNode",
        "CutAfter",
    ] {
        assert!(
            applied.iter().any(|a| a.contains(must)),
            "{must} was refused; applied: {applied:#?}"
        );
    }
}

/// MACs per image against numbers worked out by hand on a network built in code.
#[test]
fn mac_counts_match_hand_computed_values() {
    use graft::graph::{Conv, Input, Metadata, Network, Node};
    use graft::weights::{Store, Tensor};
    let mut store = Store::new();
    let zeros = |shape: Vec<usize>| {
        let n = shape.iter().product();
        Tensor::new(shape, vec![0.0; n]).unwrap()
    };
    store.insert("w1", zeros(vec![8, 3, 3, 3]));
    store.insert("b1", zeros(vec![8]));
    store.insert("w2", zeros(vec![8, 1, 3, 3])); // depthwise
    store.insert("w3", zeros(vec![16, 8, 1, 1]));
    store.insert("fc", zeros(vec![10, 16]));
    store.insert("fcb", zeros(vec![10]));
    let conv = |stride, pad, groups| {
        Op::Conv(Conv {
            strides: [stride, stride],
            pads: [pad; 4],
            dilations: [1, 1],
            groups,
        })
    };
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let net = Network {
        name: "hand".into(),
        input: Input {
            name: "x".into(),
            shape: vec![1, 3, 32, 32],
            free_batch: true,
        },
        outputs: s(&["y"]),
        nodes: vec![
            // 3→8, 3×3, stride 2, pad 1: 16×16 outputs × 8 channels × 27 = 55,296.
            Node::new("c1", conv(2, 1, 1), s(&["x", "w1", "b1"]), s(&["a"])),
            // Depthwise 3×3, pad 1: 16×16 × 8 × 9 = 18,432.
            Node::new("c2", conv(1, 1, 8), s(&["a", "w2"]), s(&["b"])),
            // 1×1, 8→16: 16×16 × 16 × 8 = 32,768.
            Node::new("c3", conv(1, 0, 1), s(&["b", "w3"]), s(&["c"])),
            Node::new("pool", Op::GlobalAveragePool, s(&["c"]), s(&["d"])),
            Node::new("flat", Op::Flatten { axis: 1 }, s(&["d"]), s(&["e"])),
            // 16→10: 160.
            Node::new(
                "fc",
                Op::Gemm {
                    alpha: 1.0,
                    beta: 1.0,
                    trans_a: false,
                    trans_b: true,
                },
                s(&["e", "fc", "fcb"]),
                s(&["y"]),
            ),
        ],
        metadata: Metadata::default(),
    };
    let a = analyze(&net, &store);
    assert!(!a.has_errors(), "{:?}", a.issues);
    let macs: Vec<u64> = a.nodes.iter().map(|n| n.macs).collect();
    assert_eq!(macs, vec![55_296, 18_432, 32_768, 0, 0, 160]);
    assert_eq!(a.total_macs, 55_296 + 18_432 + 32_768 + 160);
    // Parameters: 8·27+8, 8·9, 16·8, 10·16+10.
    assert_eq!(a.total_params, 224 + 72 + 128 + 170);
}

/// A project's edits, saved as RON and read back, replay on the file to the same network and
/// the same exported bytes as the edits made in the window.
#[test]
fn a_saved_project_replays_to_the_same_network_bytes() {
    use graft::project::Project;
    let imported = onnx::import_bytes(graft::DEFAULT_MODEL).unwrap();
    let (mut net, mut store) = (imported.network.clone(), imported.store.clone());
    let mid = net.nodes[40].name.clone();
    let edits = vec![
        Edit::AdaptHead {
            classes: classes(5),
            seed: 11,
        },
        Edit::FreezeUntil { node: mid.clone() },
        Edit::SetLrFactor {
            node: HEAD_CLASSIFIER.into(),
            factor: 4.0,
        },
        Edit::InsertAfter {
            node: mid,
            layer: graft::graph::edit::NewLayer {
                name: "extra_bn".into(),
                kind: graft::graph::edit::LayerKind::BatchNorm,
                seed: 2,
            },
        },
    ];
    for e in &edits {
        apply(&mut net, &mut store, e).unwrap();
    }
    let direct = onnx::export_bytes(&net, &store).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.graft.ron");
    Project {
        edits,
        ..Project::default()
    }
    .save(&path)
    .unwrap();
    let reopened = Project::load(&path).unwrap();
    let (mut net2, mut store2) = (imported.network, imported.store);
    for e in &reopened.edits {
        apply(&mut net2, &mut store2, e).unwrap();
    }
    assert_eq!(net2, net);
    assert_eq!(onnx::export_bytes(&net2, &store2).unwrap(), direct);
}

/// Caffe-era files end in N×1000×1×1 (SqueezeNet's 1×1 Conv classifier, DenseNet's pooled
/// scores): the adapted head flattens to N×classes, so the loss and the softmax see class
/// scores. The onnx package's light models (tests/fixtures/light).
#[test]
fn a_four_dimensional_classifier_output_becomes_class_scores() {
    for file in ["light_squeezenet.onnx", "light_densenet121.onnx"] {
        let path = format!("{}/tests/fixtures/light/{file}", env!("CARGO_MANIFEST_DIR"));
        let mut imported = graft::onnx::import(&path).unwrap();
        let (net, store) = (&mut imported.network, &mut imported.store);
        let (before, _) = graft::graph::shape::infer(net, store, 1);
        assert_eq!(before[&net.outputs[0]].len(), 4, "{file} ends N×1000×1×1");
        graft::graph::edit::apply(
            net,
            store,
            &graft::graph::edit::Edit::AdaptHead {
                classes: vec!["a".into(), "b".into(), "c".into()],
                seed: 1,
            },
        )
        .unwrap();
        let (after, errors) = graft::graph::shape::infer(net, store, 2);
        assert!(errors.is_empty(), "{file}: {errors:?}");
        assert_eq!(after[&net.outputs[0]], vec![2, 3], "{file}");
        assert!(
            net.node(graft::graph::edit::HEAD_FLATTEN).is_some(),
            "{file}"
        );
    }
}

/// A detection head on a backbone (issue 10): on the default feature map (the deepest
/// stride-16 one), ordinary nodes ending in one prediction map of anchors × (box,
/// objectness, classes) channels, objectness starting near a 1 % prior; the spec travels in
/// the metadata and through export; freezing the backbone leaves the head trainable; undo
/// brings the classifier back; a node without a feature map is refused, naming it.
#[test]
fn a_detection_head_goes_on_a_feature_map_as_ordinary_nodes() {
    use graft::graph::edit::{DetectionSpec, default_feature, freeze_backbone};
    let imported = onnx::import_bytes(graft::DEFAULT_MODEL).unwrap();
    let (mut net, mut store) = (imported.network, imported.store);
    let original = net.clone();
    let feature = default_feature(&net, &store).unwrap();
    let (shapes, _) = graft::graph::shape::infer(&net, &store, 1);
    let out = &net.node(&feature).unwrap().outputs[0];
    assert_eq!(shapes[out][2..], [14, 14], "{feature}: stride 16 of 224");
    let anchors = vec![(30.0, 40.0), (80.0, 60.0), (150.0, 170.0)];
    let change = apply(
        &mut net,
        &mut store,
        &Edit::AddDetectionHead {
            node: feature.clone(),
            classes: classes(2),
            anchors: anchors.clone(),
            coarse_anchors: vec![],
            seed: 5,
        },
    )
    .unwrap();
    let spec = DetectionSpec::of(&net).unwrap();
    assert_eq!((spec.scales.len(), spec.per_anchor()), (1, 7), "one scale");
    assert_eq!(
        (spec.scales[0].stride, spec.scales[0].anchors.clone()),
        (16, anchors)
    );
    let (shapes, _) = graft::graph::shape::infer(&net, &store, 1);
    assert_eq!(shapes[&net.outputs[0]], vec![1, 21, 14, 14]);
    assert!(
        net.nodes
            .iter()
            .all(|n| !matches!(n.op, Op::Softmax { .. }))
    );

    let x: Vec<f32> = (0..2 * 3 * 224 * 224)
        .map(|i| ((i % 251) as f32 / 125.0) - 1.0)
        .collect();
    let device = burn::tensor::Device::flex();
    let y = Model::build(&net, &store, &device)
        .unwrap()
        .infer(&[2, 3, 224, 224], x.clone())
        .unwrap()[0]
        .1
        .clone();
    // Channel 4 of each anchor (objectness): about ln(1/99) = −4.6 before any training.
    let cells = 14 * 14;
    let objectness: Vec<f32> = (0..2)
        .flat_map(|b| (0..3).map(move |a| (b, a)))
        .flat_map(|(b, a)| {
            let start = (b * 21 + a * 7 + 4) * cells;
            y[start..start + cells].to_vec()
        })
        .collect();
    let mean = objectness.iter().sum::<f32>() / objectness.len() as f32;
    assert!(
        (-7.0..-2.5).contains(&mean),
        "objectness logits start near −4.6: {mean}"
    );

    // Export keeps the head and its spec.
    let again = onnx::import_bytes(&onnx::export_bytes(&net, &store).unwrap()).unwrap();
    assert_eq!(DetectionSpec::of(&again.network), Some(spec));
    let z = Model::build(&again.network, &again.store, &device)
        .unwrap()
        .infer(&[2, 3, 224, 224], x)
        .unwrap()[0]
        .1
        .clone();
    let diff = max_diff(&y, &z);
    assert!(diff < 1e-4, "export changed the predictions by {diff}");

    freeze_backbone(&mut net, &store).unwrap();
    for n in &net.nodes {
        assert_eq!(n.frozen, !n.name.starts_with("detect/"), "{}", n.name);
    }
    change.undo(&mut net, &mut store);
    net.nodes.iter_mut().for_each(|n| n.frozen = false);
    assert_eq!(net, original);

    let flat = net
        .nodes
        .iter()
        .find(|n| matches!(n.op, Op::Flatten { .. }))
        .unwrap()
        .name
        .clone();
    let err = apply(
        &mut net,
        &mut store,
        &Edit::AddDetectionHead {
            node: flat.clone(),
            classes: classes(2),
            anchors: vec![(10.0, 10.0)],
            coarse_anchors: vec![],
            seed: 1,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains(&flat) && err.contains("feature map"), "{err}");
}

/// Two scales (YOLO v3-tiny's layout): the chosen stride-16 map and the deepest stride-32 map
/// each get a prediction map, the coarse one's features upsampled into the fine one; the
/// outputs are finest first, the spec lists both scales with their anchors, export keeps
/// both maps and the spec, freezing the backbone leaves every head node trainable, and the
/// frozen-feature cache cuts after the backbone, caching both maps as one row per image that
/// the head network parts again. A map with nothing coarser after it is refused for two
/// scales.
#[test]
fn a_two_scale_detection_head_predicts_at_strides_16_and_32() {
    use graft::graph::edit::{DetectionSpec, default_feature, freeze_backbone};
    let imported = onnx::import_bytes(graft::DEFAULT_MODEL).unwrap();
    let (mut net, mut store) = (imported.network, imported.store);
    let feature = default_feature(&net, &store).unwrap();
    let fine_value = net.node(&feature).unwrap().outputs[0].clone();
    let (fine, coarse) = (
        vec![(20.0, 24.0), (40.0, 36.0)],
        vec![(90.0, 80.0), (150.0, 170.0), (200.0, 120.0)],
    );
    apply(
        &mut net,
        &mut store,
        &Edit::AddDetectionHead {
            node: feature.clone(),
            classes: classes(2),
            anchors: fine.clone(),
            coarse_anchors: coarse.clone(),
            seed: 5,
        },
    )
    .unwrap();
    let spec = DetectionSpec::of(&net).unwrap();
    let scales: Vec<_> = spec
        .scales
        .iter()
        .map(|s| (s.stride, s.anchors.clone()))
        .collect();
    assert_eq!(scales, vec![(16, fine), (32, coarse)]);
    assert_eq!(net.outputs, ["detections", "detections_1"]);
    let (shapes, _) = graft::graph::shape::infer(&net, &store, 1);
    assert_eq!(shapes["detections"], vec![1, 14, 14, 14]);
    assert_eq!(shapes["detections_1"], vec![1, 21, 7, 7]);
    assert!(analyze(&net, &store).errors().next().is_none());

    let x: Vec<f32> = (0..3 * 224 * 224)
        .map(|i| ((i % 251) as f32 / 125.0) - 1.0)
        .collect();
    let device = burn::tensor::Device::flex();
    let run = |net: &graft::graph::Network, store: &graft::weights::Store| {
        Model::build(net, store, &device)
            .unwrap()
            .infer(&[1, 3, 224, 224], x.clone())
            .unwrap()
    };
    let y = run(&net, &store);
    assert_eq!(y.len(), 2);
    let again = onnx::import_bytes(&onnx::export_bytes(&net, &store).unwrap()).unwrap();
    assert_eq!(DetectionSpec::of(&again.network), Some(spec));
    assert_eq!(again.network.outputs, net.outputs);
    let z = run(&again.network, &again.store);
    for ((_, a), (_, b)) in y.iter().zip(&z) {
        let diff = max_diff(a, b);
        assert!(diff < 1e-4, "export changed a map by {diff}");
    }

    freeze_backbone(&mut net, &store).unwrap();
    for n in &net.nodes {
        assert_eq!(n.frozen, !n.name.starts_with("detect/"), "{}", n.name);
    }
    let cut = graft::train::cache::find_cut(&net, &store).unwrap();
    assert_eq!(cut.values.len(), 2, "{cut:?}");
    assert!(cut.values.contains(&fine_value), "{cut:?}");
    // The cached rows (both maps, one after the other) through the head network give what
    // the whole network gives.
    use graft::train::cache::{head_network, prefix_network};
    let (prefix, prefix_store) = prefix_network(&net, &store, &cut);
    let rows = run(&prefix, &prefix_store);
    let dims: Vec<Vec<usize>> = rows.iter().map(|(d, _)| d[1..].to_vec()).collect();
    let flat: Vec<f32> = rows.iter().flat_map(|(_, v)| v.clone()).collect();
    let head = head_network(&net, &cut, &dims);
    let from_rows = Model::build(&head, &store, &device)
        .unwrap()
        .infer(&[1, flat.len()], flat)
        .unwrap();
    for ((_, a), (_, b)) in y.iter().zip(&from_rows) {
        let diff = max_diff(a, b);
        assert!(diff < 1e-3, "the cut changed a map by {diff}");
    }

    let (mut plain, mut plain_store) = {
        let i = onnx::import_bytes(graft::DEFAULT_MODEL).unwrap();
        (i.network, i.store)
    };
    let err = apply(
        &mut plain,
        &mut plain_store,
        &Edit::AddDetectionHead {
            node: "/act_1/Clip".into(),
            classes: classes(2),
            anchors: vec![(30.0, 30.0)],
            coarse_anchors: vec![(90.0, 90.0)],
            seed: 1,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("stride 64"), "{err}");
}

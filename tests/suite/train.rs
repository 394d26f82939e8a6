//! End to end: a small network learns a tiny generated dataset; frozen weights keep their
//! bytes; the export matches; a killed run resumes.

use crate::common;

use graft::data::Augmentation;
use graft::engine::{DeviceChoice, Model, Precision};
use graft::graph::edit::{Edit, apply, freeze_backbone};
use graft::onnx;
use graft::train::{
    History, Session, StopReason, TrainEvent, TrainJob, TrainingOptions, load_dataset,
};

/// The embedded, ImageNet-trained network: its features tell the classes apart, as in real
/// use (a random network's deep features barely depend on the input).
fn default_network() -> onnx::Imported {
    onnx::import_bytes(graft::DEFAULT_MODEL).unwrap()
}

/// A small random network (fast to fine-tune fully).
fn small_network() -> onnx::Imported {
    onnx::import(common::fixture("darknet_op13/model.onnx")).unwrap()
}

fn job(
    dir: &std::path::Path,
    imported: onnx::Imported,
    freeze: bool,
    options: TrainingOptions,
) -> TrainJob {
    let (mut net, mut store) = (imported.network, imported.store);
    let data = load_dataset(dir).unwrap();
    apply(
        &mut net,
        &mut store,
        &Edit::AdaptHead {
            classes: data.classes.clone(),
            seed: 1,
        },
    )
    .unwrap();
    if freeze {
        freeze_backbone(&mut net, &store).unwrap();
    }
    let (train, val) = data.split(0.25, 7).unwrap();
    TrainJob {
        network: net,
        store,
        train,
        validation: Some(val),
        options,
        checkpoint: None,
        resume: false,
    }
}

fn run(job: TrainJob) -> (graft::train::Outcome, Vec<TrainEvent>) {
    let session = Session::start(job, None).unwrap();
    let mut events = Vec::new();
    for e in session.events().iter() {
        match e {
            TrainEvent::Finished(o) => return (*o, events),
            TrainEvent::Failed(e) => panic!("training failed: {e}"),
            other => events.push(other),
        }
    }
    panic!("the session ended without a result");
}

/// Each iteration's training loss.
fn losses(o: &graft::train::Outcome) -> Vec<f64> {
    o.history.iterations.iter().map(|r| r.loss).collect()
}

#[test]
fn a_frozen_backbone_trains_its_head_from_cached_features() {
    let dir = tempfile::tempdir().unwrap();
    common::write_dataset(dir.path(), 12, 72, 3);
    let options = TrainingOptions {
        epochs: 8,
        batch_size: 8,
        learning_rate: 1e-2,
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    let job = job(dir.path(), default_network(), true, options);
    let before = job.store.clone();
    let frozen: Vec<String> = job
        .network
        .nodes
        .iter()
        .filter(|n| n.frozen)
        .flat_map(|n| n.inputs.iter().skip(1).cloned())
        .filter(|v| before.contains(v))
        .collect();
    let (outcome, events) = run(job);

    assert!(
        outcome.cached_prefix,
        "a frozen backbone without augmentation is computed once"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TrainEvent::Started { cached_nodes, .. } if *cached_nodes > 100))
    );
    assert_eq!(outcome.reason, StopReason::Completed);
    let its = &outcome.history.iterations;
    let first: f64 = its[..3].iter().map(|r| r.loss).sum::<f64>() / 3.0;
    let last: f64 = its[its.len() - 3..].iter().map(|r| r.loss).sum::<f64>() / 3.0;
    assert!(
        last < first * 0.7,
        "training loss should fall: {first:.3} → {last:.3}"
    );
    // The outcome's training loss and accuracy are the last epoch's, each batch weighted by
    // its images (here 8, 8, 8 and 3), not the last batch's alone.
    let images = events
        .iter()
        .find_map(|e| match e {
            TrainEvent::Started { train_images, .. } => Some(*train_images),
            _ => None,
        })
        .unwrap();
    let epoch: Vec<_> = its.iter().filter(|r| r.epoch == 8).collect();
    assert_eq!(epoch.len(), images.div_ceil(8));
    let weight = |i: usize| (images - 8 * i).min(8) as f64;
    let mean = |f: fn(&graft::train::IterationRecord) -> f64| {
        epoch
            .iter()
            .enumerate()
            .map(|(i, r)| f(r) * weight(i))
            .sum::<f64>()
            / images as f64
    };
    assert!((outcome.final_train_loss - mean(|r| r.loss)).abs() < 1e-9);
    assert!((outcome.final_train_accuracy - mean(|r| r.accuracy)).abs() < 1e-9);
    // Each epoch's time left: the steady epochs' time (`History::steady_epoch_seconds` of
    // the epochs so far) times the epochs to come.
    let seconds = &outcome.history.epoch_seconds;
    let mut ends = 0;
    for e in &events {
        if let TrainEvent::EpochEnd {
            epoch, eta_seconds, ..
        } = e
        {
            let so_far = History {
                epoch_seconds: seconds[..*epoch].to_vec(),
                ..Default::default()
            };
            let want = so_far.steady_epoch_seconds().unwrap() * (8 - epoch) as f64;
            assert!((eta_seconds - want).abs() < 1e-9, "epoch {epoch}");
            ends += 1;
        }
    }
    assert_eq!(ends, 8);
    let eval = outcome.evaluation.as_ref().unwrap();
    assert!(
        eval.accuracy >= 0.8,
        "validation accuracy {:.2} on an easy dataset",
        eval.accuracy
    );
    assert_eq!(eval.confusion.len(), 3);
    assert_eq!(eval.predictions.len(), 9);

    // Frozen weights (and BatchNorm statistics) are bit for bit unchanged; the head moved.
    assert!(frozen.len() > 100);
    for name in &frozen {
        assert_eq!(
            outcome.store.get(name),
            before.get(name),
            "frozen tensor {name} changed"
        );
    }
    assert_ne!(
        outcome.store.get("head.classifier.weight"),
        before.get("head.classifier.weight")
    );
}

/// The time left after an epoch counts steady epochs: not the first, which also compiles a
/// GPU's kernels (17× a steady epoch on lavapipe) or caches a frozen backbone's features.
#[test]
fn time_left_is_counted_from_steady_epochs() {
    let steady = |s: &[f64]| {
        History {
            epoch_seconds: s.to_vec(),
            ..Default::default()
        }
        .steady_epoch_seconds()
    };
    assert_eq!(steady(&[]), None);
    assert_eq!(steady(&[133.0]), Some(133.0), "nothing else to go by");
    assert_eq!(steady(&[133.0, 1.7]), Some(1.7));
    assert_eq!(steady(&[133.0, 2.0, 4.0]), Some(3.0));
    // A resumed run compiles again in its own first epoch: the median passes over it.
    assert_eq!(steady(&[133.0, 1.7, 60.0, 1.9]), Some(1.9));
}

/// The steady training rate: the median of the last epoch's iterations, whatever the first
/// steps took (a GPU compiling its kernels).
#[test]
fn the_steady_rate_is_the_last_epochs_median() {
    let record = |epoch, images_per_sec| graft::train::IterationRecord {
        epoch,
        iteration: 0,
        loss: 1.0,
        accuracy: 0.5,
        learning_rate: 1e-3,
        images_per_sec,
        terms: None,
    };
    let mut h = History::default();
    assert_eq!(h.steady_images_per_sec(), None);
    h.iterations = vec![record(1, 0.2), record(1, 300.0), record(2, 290.0)];
    assert_eq!(h.steady_images_per_sec(), Some(290.0));
    h.iterations.extend([record(2, 310.0), record(2, 5.0)]);
    assert_eq!(h.steady_images_per_sec(), Some(290.0));
}

#[test]
fn cached_features_over_the_memory_budget_spill_to_disk_and_train_the_same() {
    let dir = tempfile::tempdir().unwrap();
    common::write_dataset(dir.path(), 8, 64, 3);
    let options = |mb| TrainingOptions {
        epochs: 2,
        batch_size: 4,
        device: DeviceChoice::Cpu,
        cache_memory_mb: mb,
        ..Default::default()
    };
    let spill = graft::train::cache::spill_dir();
    let files_there = || std::fs::read_dir(&spill).map_or(0, |d| d.count());
    let before = files_there();
    let (in_memory, quiet) = run(job(dir.path(), default_network(), true, options(1024)));
    let (spilled, events) = run(job(dir.path(), default_network(), true, options(0)));

    let said = |events: &[TrainEvent]| {
        events
            .iter()
            .any(|e| matches!(e, TrainEvent::Message(m) if m.contains("kept in a file")))
    };
    assert!(said(&events), "a spill is announced");
    assert!(!said(&quiet), "features under the budget stay in memory");
    assert!(spilled.cached_prefix && in_memory.cached_prefix);
    // The same features read back from the file: the same run, loss for loss.
    assert_eq!(losses(&spilled), losses(&in_memory));
    assert_eq!(
        spilled.evaluation.unwrap().accuracy,
        in_memory.evaluation.unwrap().accuracy
    );
    // The spill file had no name: nothing is left behind.
    assert_eq!(files_there(), before);
}

#[test]
fn fine_tuning_with_augmentation_updates_unfrozen_layers_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    common::write_dataset(dir.path(), 8, 72, 5);
    let options = TrainingOptions {
        epochs: 2,
        batch_size: 6,
        learning_rate: 1e-3,
        device: DeviceChoice::Cpu,
        augmentation: Some(Augmentation {
            rotation_degrees: 10.0,
            ..Augmentation::default()
        }),
        ..Default::default()
    };
    let mut job = job(dir.path(), small_network(), false, options);
    // Freeze only the first two nodes: they must not change, their BatchNorm included.
    let first: Vec<String> = job.network.nodes[..3]
        .iter()
        .map(|n| n.name.clone())
        .collect();
    apply(
        &mut job.network,
        &mut job.store,
        &Edit::FreezeUntil {
            node: first[2].clone(),
        },
    )
    .unwrap();
    let frozen_names: Vec<String> = job.network.nodes[..3]
        .iter()
        .flat_map(|n| n.inputs.iter().skip(1).cloned())
        .filter(|v| job.store.contains(v))
        .collect();
    let trainable: Vec<String> = job
        .network
        .nodes
        .iter()
        .filter(|n| !n.frozen)
        .flat_map(|n| {
            n.op.learnable_inputs()
                .iter()
                .filter_map(|&i| n.inputs.get(i).cloned())
                .collect::<Vec<_>>()
        })
        .filter(|v| job.store.contains(v))
        .collect();
    let before = job.store.clone();
    let (outcome, _) = run(job);
    assert!(!outcome.cached_prefix, "augmentation rules out the cache");
    assert!(!frozen_names.is_empty() && trainable.len() >= 8);
    for n in &frozen_names {
        assert_eq!(outcome.store.get(n), before.get(n), "{n} is frozen");
    }
    for n in &trainable {
        assert_ne!(
            outcome.store.get(n),
            before.get(n),
            "{n} is trainable and should have changed"
        );
    }

    // The export, re-imported, gives the same probabilities as the trained network.
    let out = dir.path().join("trained.onnx");
    onnx::export_file(&outcome.network, &outcome.store, &out).unwrap();
    let again = onnx::import(&out).unwrap();
    assert_eq!(again.network.metadata.labels, vec!["bright", "dark", "red"]);
    let x: Vec<f32> = (0..2 * 3 * 64 * 64)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let device = burn::tensor::Device::flex();
    let a = Model::build(&outcome.network, &outcome.store, &device)
        .unwrap()
        .infer(&[2, 3, 64, 64], x.clone())
        .unwrap();
    let b = Model::build(&again.network, &again.store, &device)
        .unwrap()
        .infer(&[2, 3, 64, 64], x)
        .unwrap();
    let diff = a[0]
        .1
        .iter()
        .zip(&b[0].1)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f32::max);
    assert!(diff < 1e-6, "export changed the outputs by {diff}");
}

/// `precision: bf16` reaches the 1x1 convolutions of a full fine-tuning run (the trainer's
/// forward passes run their steps on a worker thread: the precision must go with them) and
/// trains close to fp32; where the CPU has no bf16 products, the run says so and is fp32's,
/// loss for loss.
#[test]
fn bf16_precision_trains_close_to_fp32_or_says_why_not() {
    let dir = tempfile::tempdir().unwrap();
    common::write_dataset(dir.path(), 4, 48, 5);
    let options = |precision| TrainingOptions {
        epochs: 1,
        batch_size: 4,
        learning_rate: 1e-4,
        device: DeviceChoice::Cpu,
        cache_features: false,
        precision,
        ..Default::default()
    };
    let (fp32, _) = run(job(
        dir.path(),
        default_network(),
        false,
        options(Precision::Fp32),
    ));
    let (bf16, events) = run(job(
        dir.path(),
        default_network(),
        false,
        options(Precision::Bf16),
    ));
    let said = |what: &str| {
        events
            .iter()
            .any(|e| matches!(e, TrainEvent::Message(m) if m.contains(what)))
    };
    if !graft::engine::precision::available_on_cpu() {
        assert!(said("no AVX512_BF16"), "the run says why it is fp32");
        assert_eq!(losses(&bf16), losses(&fp32));
        return;
    }
    assert!(
        said("matrix products in bf16"),
        "the run says it is mixed precision"
    );
    let (a, b) = (losses(&fp32), losses(&bf16));
    assert_eq!(a.len(), b.len());
    assert_ne!(a, b, "bf16 products change the losses");
    for (a, b) in a.iter().zip(&b) {
        // 8-bit mantissas in the products, fp32 sums: the loss moves in its third digit at
        // most over a few steps; a product left out or doubled would move it by far more.
        assert!(
            (a - b).abs() < 2e-2 * a.abs().max(1.0),
            "fp32 {a} vs bf16 {b}"
        );
    }
}

#[test]
fn a_frozen_batchnorm_uses_running_statistics_in_training() {
    let imported = onnx::import(common::fixture("mobilenet_v2_bn_op12/model.onnx")).unwrap();
    let (shape, x) =
        graft::npy::read_f32(&common::fixture("mobilenet_v2_bn_op12/input.npy")).unwrap();
    let device = burn::tensor::Device::flex().autodiff();
    let forward = |net: &graft::graph::Network, mode| {
        let m = Model::build(net, &imported.store, &device).unwrap();
        let input = graft::engine::Value::from_data(&shape, x.clone(), &device);
        m.forward(input, mode).unwrap()[0].to_vec().unwrap()
    };
    let mut frozen = imported.network.clone();
    for n in &mut frozen.nodes {
        n.frozen = true;
    }
    // Dropout is still active in training; compare with it removed.
    frozen
        .nodes
        .iter_mut()
        .filter(|n| matches!(n.op, graft::graph::Op::Dropout { .. }))
        .for_each(|n| n.op = graft::graph::Op::Identity);
    let train = forward(&frozen, graft::engine::Mode::Train);
    let infer = forward(&frozen, graft::engine::Mode::Inference);
    assert_eq!(
        train, infer,
        "frozen BatchNorm must not use batch statistics"
    );
    let mut unfrozen = frozen.clone();
    for n in &mut unfrozen.nodes {
        n.frozen = false;
    }
    assert_ne!(
        forward(&unfrozen, graft::engine::Mode::Train),
        infer,
        "trainable BatchNorm uses batch statistics"
    );
}

#[test]
fn pause_resume_and_stop_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    common::write_dataset(dir.path(), 8, 72, 9);
    let options = TrainingOptions {
        epochs: 1000,
        batch_size: 4,
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    let waked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w = waked.clone();
    let session = Session::start(
        job(dir.path(), small_network(), false, options),
        Some(std::sync::Arc::new(move || {
            w.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })),
    )
    .unwrap();
    let rx = session.events();
    let next_iteration = || loop {
        match rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("an event")
        {
            TrainEvent::Iteration(r) => return r.iteration,
            TrainEvent::Failed(e) => panic!("{e}"),
            _ => {}
        }
    };
    next_iteration();
    session.pause();
    // Drain what was in flight; then nothing moves while paused.
    let mut paused = false;
    while let Ok(e) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
        paused |= matches!(e, TrainEvent::Paused);
    }
    assert!(paused, "a Paused event");
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(300))
            .is_err(),
        "no progress while paused"
    );
    session.resume();
    next_iteration();
    session.stop();
    let outcome = loop {
        match rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("an event")
        {
            TrainEvent::Finished(o) => break o,
            TrainEvent::Failed(e) => panic!("{e}"),
            _ => {}
        }
    };
    assert_eq!(outcome.reason, StopReason::Stopped);
    assert!(outcome.history.iterations.len() < 100);
    assert!(
        waked.load(std::sync::atomic::Ordering::Relaxed) > 3,
        "the waker runs on events"
    );
}

/// One plain SGD step (no momentum, no L2, one batch holding every image) with and without a
/// learn-rate factor of 0.25 on one layer: that layer moves exactly a quarter as far, every
/// other layer the same, so the factor reaches the optimizer for that layer alone.
#[test]
fn learn_rate_factors_scale_each_layers_step() {
    let dir = tempfile::tempdir().unwrap();
    common::write_dataset(dir.path(), 4, 32, 5);
    let options = TrainingOptions {
        solver: graft::train::Solver::Sgdm,
        momentum: 0.0,
        l2: 0.0,
        epochs: 1,
        batch_size: 64,
        learning_rate: 0.05,
        warmup_epochs: 0.0,
        schedule: graft::train::Schedule::None,
        device: DeviceChoice::Cpu,
        augmentation: None,
        ..Default::default()
    };
    let plain = job(dir.path(), small_network(), false, options);
    let before = plain.store.clone();
    let conv = plain
        .network
        .nodes
        .iter()
        .filter(|n| n.op.onnx_type() == "Conv")
        .nth(2)
        .unwrap()
        .clone();
    let weight = conv.inputs[1].clone();
    let mut scaled = plain.clone();
    let i = scaled.network.node_index(&conv.name).unwrap();
    scaled.network.nodes[i].lr_factor = 0.25;
    let (a, _) = run(plain);
    let (b, _) = run(scaled);
    assert_eq!(a.history.iterations.len(), 1);
    let delta = |o: &graft::train::Outcome, name: &str| -> Vec<f32> {
        let (x, y) = (o.store.get(name).unwrap(), before.get(name).unwrap());
        x.data.iter().zip(&y.data).map(|(p, q)| p - q).collect()
    };
    let (da, db) = (delta(&a, &weight), delta(&b, &weight));
    let norm = da.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    assert!(norm > 0.0, "the layer did not move");
    for (x, y) in da.iter().zip(&db) {
        assert!(
            (y - 0.25 * x).abs() <= 1e-3 * norm,
            "factor 0.25: {y} vs {x}"
        );
    }
    // Another layer's step is unchanged.
    let other = a
        .network
        .nodes
        .iter()
        .filter(|n| n.op.onnx_type() == "Conv" && n.name != conv.name)
        .map(|n| n.inputs[1].clone())
        .next()
        .unwrap();
    let (oa, ob) = (delta(&a, &other), delta(&b, &other));
    let onorm = oa.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    assert!(onorm > 0.0);
    for (x, y) in oa.iter().zip(&ob) {
        assert!((x - y).abs() <= 1e-3 * onorm, "{x} vs {y}");
    }
}

/// Validation after every step with a learning rate too small to move any weight: the
/// validation loss never improves after the first, so patience 2 stops the run at the third
/// validation, keeping the first (best) weights.
#[test]
fn early_stopping_honours_patience() {
    let dir = tempfile::tempdir().unwrap();
    common::write_dataset(dir.path(), 8, 32, 9);
    let options = TrainingOptions {
        solver: graft::train::Solver::Sgdm,
        momentum: 0.0,
        epochs: 5,
        batch_size: 4,
        learning_rate: 1e-30,
        validation_frequency: 1,
        patience: Some(2),
        device: DeviceChoice::Cpu,
        augmentation: None,
        ..Default::default()
    };
    let (outcome, events) = run(job(dir.path(), small_network(), true, options));
    assert_eq!(outcome.reason, StopReason::EarlyStopped);
    assert_eq!(outcome.history.validations.len(), 3);
    assert_eq!(outcome.history.iterations.len(), 3, "stopped mid-epoch");
    let v = &outcome.history.validations;
    assert!(v[1].loss >= v[0].loss && v[2].loss >= v[0].loss);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, TrainEvent::Message(m) if m.contains("Stopped early")))
    );
}

/// `graft compare`: two networks, one recipe, one split; a table and a JSON report with a
/// line per network, the Pareto front marked, and the retrained files written.
#[test]
fn compare_trains_each_network_on_the_same_split() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::write_dataset(&data, 8, 32, 21);
    let fixture = |n: &str| {
        format!(
            "{}/tests/fixtures/{n}/model.onnx",
            env!("CARGO_MANIFEST_DIR")
        )
    };
    let report = dir.path().join("compare.json");
    let out_dir = dir.path().join("trained");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .args([
            "compare",
            "--models",
            &format!(
                "{},{}",
                fixture("resnet18_op13"),
                fixture("squeezenet1_1_op13")
            ),
            "--data",
            data.to_str().unwrap(),
            "--val-split",
            "0.25",
            "--epochs",
            "2",
            "--batch",
            "8",
            "--export-dir",
            out_dir.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("pareto") && stdout.contains("★"),
        "{stdout}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["validation_images"], serde_json::json!(6));
    assert_eq!(r["train_images"], serde_json::json!(18));
    let rows = r["networks"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let names: Vec<&str> = rows.iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["resnet18_op13", "squeezenet1_1_op13"]);
    for name in &names {
        assert!(
            out_dir.join(format!("{name}.onnx")).is_file(),
            "{name} exported"
        );
    }
    for row in rows {
        let acc = row["validation_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{row}");
        assert!(row["inference_images_per_s"].as_f64().unwrap() > 0.0);
        assert!(row["params"].as_u64().unwrap() > 1000);
        assert_eq!(row["per_class_accuracy"].as_array().unwrap().len(), 3);
    }
    assert!(rows.iter().any(|r| r["pareto"] == serde_json::json!(true)));
}

/// Files that are not fresh PyTorch exports fine-tune end to end: an int8 QOperator file
/// (read as float), a paddle2onnx-style file (nearest and bilinear Resize, forward and
/// backward; batch-1 Reshapes made batch-free) and an opset-7 file (Upsample). Each adapts
/// its head, trains every layer at batch 6, moves its convolution weights, and exports a
/// file that gives the trained network's answers.
#[test]
fn converted_and_quantised_files_fine_tune() {
    let dir = tempfile::tempdir().unwrap();
    common::write_dataset(dir.path(), 6, 24, 9);
    for (file, conv) in [
        ("int8/qoperator.onnx", "conv1"),
        ("converters/paddle.onnx", "conv2"),
        ("converters/old.onnx", "conv"),
    ] {
        let imported = onnx::import(common::fixture(file)).unwrap();
        let options = TrainingOptions {
            epochs: 2,
            batch_size: 6,
            learning_rate: 1e-2,
            device: DeviceChoice::Cpu,
            ..Default::default()
        };
        let job = job(dir.path(), imported, false, options);
        let weight = job
            .network
            .nodes
            .iter()
            .find(|n| n.name == conv)
            .map(|n| n.inputs[1].clone())
            .unwrap();
        let before = job.store.get(&weight).cloned().unwrap();
        let (outcome, _) = run(job);
        assert_eq!(outcome.reason, StopReason::Completed, "{file}");
        assert!(
            outcome
                .history
                .iterations
                .iter()
                .all(|r| r.loss.is_finite()),
            "{file}"
        );
        assert_ne!(
            outcome.store.get(&weight),
            Some(&before),
            "{file}: {conv} moved"
        );

        let bytes = onnx::export_bytes(&outcome.network, &outcome.store).unwrap();
        let again = onnx::import_bytes(&bytes).unwrap();
        let x: Vec<f32> = (0..2 * 3 * 16 * 16)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let device = burn::tensor::Device::flex();
        let infer = |i: &onnx::Imported| {
            Model::build(&i.network, &i.store, &device)
                .unwrap()
                .infer(&[2, 3, 16, 16], x.clone())
                .unwrap()[0]
                .1
                .clone()
        };
        let trained = onnx::Imported {
            network: outcome.network.clone(),
            store: outcome.store.clone(),
        };
        let (a, b) = (infer(&trained), infer(&again));
        let diff = a
            .iter()
            .zip(&b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-5, "{file}: export changed the outputs by {diff}");
    }
}

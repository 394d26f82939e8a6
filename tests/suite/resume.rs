//! `graft train --resume` after the process was killed continues from the last checkpoint
//! with the same data order, and ends with the weights an uninterrupted run gives.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn train_args(model: &str, data: &str, export: &str) -> Vec<String> {
    [
        "train",
        "--model",
        model,
        "--data",
        data,
        "--val-split",
        "0.25",
        "--epochs",
        "5",
        "--batch",
        "6",
        "--lr",
        "0.001",
        "--augment",
        "flip,rotate=10",
        "--seed",
        "3",
        "--device",
        "cpu",
        "--export",
        export,
    ]
    .map(str::to_owned)
    .to_vec()
}

#[test]
fn a_killed_run_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    common::write_dataset(&data, 8, 72, 11);
    let model = common::fixture("darknet_op13/model.onnx");
    let (data, model) = (
        data.to_str().unwrap().to_owned(),
        model.to_str().unwrap().to_owned(),
    );
    let exe = env!("CARGO_BIN_EXE_graft");

    let whole = dir.path().join("whole.onnx");
    let out = Command::new(exe)
        .args(train_args(&model, &data, whole.to_str().unwrap()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Kill the second run right after its second checkpoint.
    let resumed = dir.path().join("resumed.onnx");
    let mut child = Command::new(exe)
        .args(train_args(&model, &data, resumed.to_str().unwrap()))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        if line.unwrap().contains("checkpoint after epoch 2") {
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    assert!(!resumed.exists(), "the killed run must not have exported");
    let ckpt = resumed.with_extension("onnx.ckpt");
    assert!(ckpt.exists(), "the checkpoint survives the kill");

    let mut args = train_args(&model, &data, resumed.to_str().unwrap());
    args.push("--resume".to_owned());
    let out = Command::new(exe).args(&args).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    // The kill lands after checkpoint 2 (a fast machine may have written another since).
    let done: usize = log
        .split("Resuming after epoch ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume message: {log}"));
    assert!((2..5).contains(&done), "{log}");
    assert!(
        !log.contains(&format!("epoch {done}:")) && log.contains(&format!("epoch {}:", done + 1)),
        "finished epochs are not run again: {log}"
    );

    let a = graft::onnx::import(&whole).unwrap();
    let b = graft::onnx::import(&resumed).unwrap();
    let mut worst = 0.0f32;
    for (name, t) in a.store.iter() {
        let u = b.store.get(name).unwrap();
        for (x, y) in t.data.iter().zip(&u.data) {
            worst = worst.max((x - y).abs());
        }
    }
    assert!(
        worst <= 1e-5,
        "resumed weights differ from the uninterrupted run's by {worst}"
    );
}

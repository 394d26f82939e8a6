//! The `graft` commands on the embedded network, as a user runs them.

use std::path::Path;
use std::process::Command;

fn graft(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn path(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn predict_names_a_cat_in_a_photo_of_a_cat() {
    let (ok, out, err) = graft(&[
        "predict",
        "default",
        &path("tests/data/cat.png"),
        &path("tests/data/coffee.png"),
        "--top",
        "1",
    ]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].ends_with("cat.png"));
    assert!(
        lines[1].contains(" cat"),
        "top-1 for the cat photo: {}",
        lines[1]
    );
    assert!(
        lines[3].contains("espresso") || lines[3].contains("cup"),
        "top-1 for the coffee photo: {}",
        lines[3]
    );
}

#[test]
fn infer_writes_the_logits_pytorch_gives() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("y.npy");
    let (ok, _, err) = graft(&[
        "infer",
        &path("assets/efficientnet_lite0.onnx"),
        "--input",
        &path("tests/fixtures/efficientnet_lite0_default/input.npy"),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let (shape, got) = graft::npy::read_f32(&out).unwrap();
    let (_, want) = graft::npy::read_f32(Path::new(&path(
        "tests/fixtures/efficientnet_lite0_default/output.npy",
    )))
    .unwrap();
    assert_eq!(shape, vec![2, 1000]);
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f32::max)
        / scale;
    assert!(err <= 1e-4, "error {err}");
}

#[test]
fn inspect_lists_nodes_with_the_files_names_and_totals() {
    let (ok, out, err) = graft(&["inspect", "default"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("/_blocks.1/_depthwise/conv/Conv"),
        "node names are the file's"
    );
    assert!(out.contains("N×1280×1×1"), "shapes follow the batch");
    assert!(out.contains("4,652,008 parameters"), "{out}");
    assert!(out.contains("1000 class names"));
}

#[test]
fn inspect_json_lists_every_node_by_its_full_name() {
    let (ok, out, err) = graft(&["inspect", "default", "--json"]);
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let net = graft::onnx::import_bytes(graft::DEFAULT_MODEL)
        .unwrap()
        .network;
    let nodes = report["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), net.nodes.len());
    // Full names, never elided as in the table; in execution order.
    for (j, n) in nodes.iter().zip(&net.nodes) {
        assert_eq!(j["name"], n.name.as_str());
        assert_eq!(j["op"], n.op.onnx_type());
    }
    assert_eq!(report["parameters"], 4_652_008);
    assert_eq!(
        report["input"]["shape"],
        serde_json::json!(["N", "3", "224", "224"])
    );
    let last = nodes.last().unwrap();
    assert_eq!(last["output_shapes"][0], serde_json::json!(["N", "1000"]));
    assert_eq!(report["labels"].as_array().unwrap().len(), 1000);
}

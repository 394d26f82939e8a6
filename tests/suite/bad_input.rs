//! Bad files give one clear error line and a non-zero exit, never a panic; an unsupported op
//! becomes a placeholder that `inspect` shows, `infer` names, and `cut_after` removes.

use graft::graph::edit::cut_after;
use graft::onnx::{self, ImportError};
use onnx_ir::{Message, ModelProto};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn darknet() -> ModelProto {
    let bytes = std::fs::read(fixture("darknet_op13/model.onnx")).unwrap();
    ModelProto::parse_from_bytes(&bytes).unwrap()
}

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Runs the CLI; returns (exit success, stdout, stderr).
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

/// The CLI fails with exactly one `error:` line mentioning `needle`, and no panic.
fn assert_clean_failure(args: &[&str], needle: &str) {
    let (ok, _, err) = graft(args);
    assert!(!ok, "{args:?} should fail");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{err}");
    assert!(
        lines[0].contains(needle),
        "error line {:?} should mention {needle:?}",
        lines[0]
    );
    assert!(
        !err.contains("panicked") && !err.contains("internal failure"),
        "{err}"
    );
}

#[test]
fn truncated_random_and_foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(fixture("darknet_op13/model.onnx")).unwrap();
    let truncated = write(&dir, "truncated.onnx", &good[..good.len() / 2]);
    assert!(matches!(
        onnx::import(&truncated),
        Err(ImportError::NotOnnx(_))
    ));
    assert_clean_failure(
        &["inspect", truncated.to_str().unwrap()],
        "not an ONNX model",
    );

    // Seeded pseudo-random bytes.
    let mut x = 0x2545F4914F6CDD1Du64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let random = write(&dir, "random.onnx", &random);
    assert_clean_failure(&["inspect", random.to_str().unwrap()], "not an ONNX model");

    let png = fixture("../data/cat.png");
    assert_clean_failure(&["inspect", png.to_str().unwrap()], "not an ONNX model");
    let empty = write(&dir, "empty.onnx", b"");
    assert_clean_failure(&["inspect", empty.to_str().unwrap()], "empty");
    assert_clean_failure(&["inspect", "/nonexistent/model.onnx"], "cannot read");
}

#[test]
fn unknown_opset_cycle_and_missing_initializer_are_named() {
    let dir = tempfile::tempdir().unwrap();

    let mut m = darknet();
    m.opset_import[0].version = 99;
    let p = write(&dir, "opset.onnx", &m.write_to_bytes().unwrap());
    assert!(matches!(onnx::import(&p), Err(ImportError::Opset(99))));
    assert_clean_failure(&["inspect", p.to_str().unwrap()], "opset 99");

    // A cycle: the first conv reads the output of a later node.
    let mut m = darknet();
    let g = m.graph.as_mut().unwrap();
    let late = g.node[5].output[0].clone();
    g.node[0].input[0] = late;
    let p = write(&dir, "cycle.onnx", &m.write_to_bytes().unwrap());
    assert!(
        matches!(onnx::import(&p), Err(ImportError::Cycle(_))),
        "{:?}",
        onnx::import(&p).err()
    );
    assert_clean_failure(&["inspect", p.to_str().unwrap()], "cycle");

    // A weight the file forgot.
    let mut m = darknet();
    let g = m.graph.as_mut().unwrap();
    let conv = g.node.iter().find(|n| n.op_type == "Conv").unwrap();
    let (node, weight) = (conv.name.clone(), conv.input[1].clone());
    g.initializer.retain(|t| t.name != weight);
    let p = write(&dir, "missing.onnx", &m.write_to_bytes().unwrap());
    match onnx::import(&p) {
        Err(ImportError::Missing { node: n, value }) => {
            assert_eq!((n, value), (node.clone(), weight.clone()))
        }
        other => panic!("expected a missing value error, got {other:?}"),
    }
    assert_clean_failure(&["inspect", p.to_str().unwrap()], &weight);
}

#[test]
fn hostile_sizes_fail_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    // An initializer that claims 2^40 values but holds none.
    let mut m = darknet();
    let g = m.graph.as_mut().unwrap();
    g.initializer[0].dims = vec![1 << 20, 1 << 20];
    let p = write(&dir, "huge.onnx", &m.write_to_bytes().unwrap());
    assert!(matches!(
        onnx::import(&p),
        Err(ImportError::BadTensor { .. })
    ));
    assert_clean_failure(&["inspect", p.to_str().unwrap()], "too large");

    // Raw data that does not match its shape.
    let mut m = darknet();
    let g = m.graph.as_mut().unwrap();
    g.initializer[0].dims.push(3);
    let p = write(&dir, "mismatch.onnx", &m.write_to_bytes().unwrap());
    assert!(matches!(
        onnx::import(&p),
        Err(ImportError::BadTensor { .. })
    ));

    // A protobuf length prefix claiming 2 GiB in a 12-byte file.
    let lying = [0x3a, 0xff, 0xff, 0xff, 0xff, 0x07, 0, 0, 0, 0, 0, 0];
    let p = write(&dir, "lying.onnx", &lying);
    assert!(matches!(onnx::import(&p), Err(ImportError::NotOnnx(_))));
}

/// The darknet fixture with its classifier conv replaced by an op Graft does not know.
fn with_unsupported_head(dir: &tempfile::TempDir) -> (PathBuf, String) {
    let mut m = darknet();
    let g = m.graph.as_mut().unwrap();
    let cls = g
        .node
        .iter_mut()
        .rev()
        .find(|n| n.op_type == "Conv")
        .unwrap();
    cls.op_type = "FancyClassifier".into();
    cls.domain = "com.example".into();
    let name = cls.name.clone();
    (write(dir, "fancy.onnx", &m.write_to_bytes().unwrap()), name)
}

#[test]
fn an_unsupported_op_is_a_placeholder_that_can_be_cut_away() {
    let dir = tempfile::tempdir().unwrap();
    let (path, fancy) = with_unsupported_head(&dir);

    let imported = onnx::import(&path).expect("the rest of the network still opens");
    let placeholder = imported
        .network
        .unsupported()
        .next()
        .expect("a placeholder");
    assert_eq!(placeholder.name, fancy);
    assert_eq!(placeholder.op.onnx_type(), "FancyClassifier");
    assert_eq!(placeholder.inputs.len(), 3, "inputs are kept");

    let (ok, out, _) = graft(&["inspect", path.to_str().unwrap()]);
    assert!(ok, "inspect shows a network with placeholders");
    assert!(out.contains("UNSUPPORTED") && out.contains(&fancy), "{out}");

    let x = fixture("darknet_op13/input.npy");
    let y = dir.path().join("y.npy");
    assert_clean_failure(
        &[
            "infer",
            path.to_str().unwrap(),
            "--input",
            x.to_str().unwrap(),
            "--output",
            y.to_str().unwrap(),
        ],
        &fancy,
    );
    assert!(!y.exists());

    // Everything before the placeholder serves as a backbone.
    let before = &imported.network.nodes[imported.network.node_index(&fancy).unwrap() - 1].name;
    let (backbone, store) = cut_after(&imported.network, &imported.store, before).unwrap();
    assert!(backbone.unsupported().next().is_none());
    let (shape, data) = graft::npy::read_f32(&x).unwrap();
    let model =
        graft::engine::Model::build(&backbone, &store, &burn::tensor::Device::flex()).unwrap();
    let out = model.infer(&shape, data).unwrap();
    assert_eq!(out[0].0[0], 2, "batch of 2 features");
}

#[test]
fn unreadable_images_are_skipped_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(&dir, "broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg");
    let cat = fixture("../data/cat.png");
    let (ok, out, err) = graft(&[
        "predict",
        "default",
        cat.to_str().unwrap(),
        bad.to_str().unwrap(),
        "--top",
        "1",
    ]);
    assert!(!ok, "a failed image makes the exit non-zero");
    assert!(
        out.contains("cat"),
        "the good image is still classified: {out}"
    );
    assert!(
        err.contains("broken.jpg") && err.contains("corrupt"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
}

/// `files::write_png` (screenshots, `graft detect --draw`): what it writes reads back pixel
/// for pixel; a wrong pixel count or a missing folder is an error that names the file and
/// leaves the file that was there untouched.
#[test]
fn png_writes_are_whole_or_not_at_all() {
    use image::ExtendedColorType::{Rgb8, Rgba8};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shot.png");
    let rgba: Vec<u8> = (0..3 * 2 * 4).map(|i| (i * 10) as u8).collect();
    graft::files::write_png(&path, &rgba, [3, 2], Rgba8).unwrap();
    let back = image::open(&path).unwrap().to_rgba8();
    assert_eq!(back.dimensions(), (3, 2));
    assert_eq!(back.as_raw(), &rgba);

    let e = graft::files::write_png(&path, &rgba[..17], [3, 2], Rgb8).unwrap_err();
    assert!(e.contains("shot.png"), "{e}");
    assert_eq!(image::open(&path).unwrap().to_rgba8().as_raw(), &rgba);

    let missing = dir.path().join("no such folder").join("x.png");
    let e = graft::files::write_png(&missing, &rgba, [3, 2], Rgba8).unwrap_err();
    assert!(e.contains("no such folder"), "{e}");
}

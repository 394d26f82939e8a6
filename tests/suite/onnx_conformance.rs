//! The ONNX project's own node conformance tests (Debian's `libonnx-testdata`): every test
//! whose op Graft supports runs here and must match the expected output.
//!
//! Graft opens single-input float networks, so the harness feeds a test's first input as the
//! network input and turns the other inputs into initializers (the op then sees them as
//! constants, as a weight or a folded shape would be). Tests with a non-float first input or
//! output are outside what an image network computes and are skipped. A supported op given a
//! variant Graft refuses at import (a 1-D convolution, say) counts as "variant unsupported",
//! never as a pass. Set GRAFT_CONFORMANCE_TABLE=path to write the per-op table.

use graft::engine::Model;
use graft::onnx::tensor::{dtype, from_proto};
use graft::onnx::{ImportOptions, import_model, ops};
use onnx_ir::{Message, ModelProto, TensorProto};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const DATA: &str = "/usr/share/libonnx-testdata/data/node";

#[derive(Default)]
struct Tally {
    passed: usize,
    unsupported_variant: usize,
    failed: Vec<String>,
}

enum Outcome {
    Pass,
    Skip,
    Unsupported(String),
    Fail(String),
}

fn read_tensor(path: &Path) -> Option<TensorProto> {
    TensorProto::parse_from_bytes(&std::fs::read(path).ok()?).ok()
}

fn run_case(dir: &Path) -> Outcome {
    let Ok(bytes) = std::fs::read(dir.join("model.onnx")) else {
        return Outcome::Skip;
    };
    let Ok(mut model) = ModelProto::parse_from_bytes(&bytes) else {
        return Outcome::Fail("model does not parse".into());
    };
    let set = dir.join("test_data_set_0");
    let inputs: Vec<TensorProto> = (0..)
        .map(|i| set.join(format!("input_{i}.pb")))
        .take_while(|p| p.exists())
        .filter_map(|p| read_tensor(&p))
        .collect();
    let outputs: Vec<TensorProto> = (0..)
        .map(|i| set.join(format!("output_{i}.pb")))
        .take_while(|p| p.exists())
        .filter_map(|p| read_tensor(&p))
        .collect();
    if inputs.is_empty() || outputs.is_empty() {
        return Outcome::Skip;
    }
    if !dtype::is_float(inputs[0].data_type) || !dtype::is_float(outputs[0].data_type) {
        return Outcome::Skip;
    }
    let graph = model.graph.as_mut().expect("test models have a graph");
    // Sequences, optionals and maps are not tensors.
    if !graph.input[0]
        .type_
        .as_ref()
        .is_some_and(|t| t.has_tensor_type())
    {
        return Outcome::Skip;
    }
    // Inputs after the first become initializers.
    let names: Vec<String> = graph.input.iter().map(|i| i.name.clone()).collect();
    for (k, t) in inputs.iter().enumerate().skip(1) {
        let mut t = t.clone();
        t.name = names.get(k).cloned().unwrap_or_default();
        graph.initializer.push(t);
    }
    graph.input.truncate(1);
    // The declared shape of input 0 is the test data's own.
    if let Some(ty) = graph.input[0].type_.as_mut() {
        let shape = ty.mut_tensor_type().shape.mut_or_insert_default();
        shape.dim.clear();
        for &d in &inputs[0].dims {
            let mut dim = onnx_ir::TensorShapeProto::new()
                .dim
                .first()
                .cloned()
                .unwrap_or_default();
            dim.set_dim_value(d);
            shape.dim.push(dim);
        }
    }
    if inputs[0].dims.is_empty() {
        return Outcome::Skip;
    }
    let imported = match import_model(
        &model,
        &ImportOptions {
            free_batch: false,
            image_size: None,
        },
    ) {
        Ok(i) => i,
        Err(e) => return Outcome::Unsupported(e.to_string()),
    };
    if let Some(n) = imported.network.unsupported().next() {
        return Outcome::Unsupported(format!("{:?}", n.op));
    }
    let x = from_proto(&inputs[0]).expect("test input decodes");
    let device = burn::tensor::Device::flex();
    let result = Model::build(&imported.network, &imported.store, &device)
        .and_then(|m| m.infer(&x.shape, x.to_f32()));
    let got = match result {
        Ok(g) => g,
        Err(graft::engine::EngineError::Unsupported { reason, .. }) => {
            return Outcome::Unsupported(reason);
        }
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    for (k, (want, (shape, values))) in outputs.iter().zip(&got).enumerate() {
        if !dtype::is_float(want.data_type) {
            continue;
        }
        let want = from_proto(want).expect("test output decodes");
        let want_shape: Vec<usize> = if want.shape.is_empty() {
            vec![1]
        } else {
            want.shape.clone()
        };
        if *shape != want_shape {
            return Outcome::Fail(format!(
                "output {k}: shape {shape:?}, expected {want_shape:?}"
            ));
        }
        for (g, w) in values.iter().zip(want.to_f32()) {
            let ok =
                (g - w).abs() <= 1e-4 + 1e-3 * w.abs() || (g.is_nan() && w.is_nan()) || g == &w;
            if !ok {
                return Outcome::Fail(format!("output {k}: {g} vs expected {w}"));
            }
        }
    }
    Outcome::Pass
}

fn op_of(dir: &Path) -> Option<String> {
    let model = ModelProto::parse_from_bytes(&std::fs::read(dir.join("model.onnx")).ok()?).ok()?;
    // The op under test is the graph's last node (expanded tests add helpers before it).
    model.graph.as_ref()?.node.last().map(|n| n.op_type.clone())
}

#[test]
fn onnx_node_tests_of_supported_ops_pass() {
    let root = Path::new(DATA);
    assert!(
        root.exists(),
        "{DATA} is missing: install Debian's libonnx-testdata (tools/install-test-deps.sh does)"
    );
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    dirs.sort();
    let mut table: BTreeMap<String, Tally> = BTreeMap::new();
    let mut unsupported_ops: BTreeMap<String, usize> = BTreeMap::new();
    for dir in &dirs {
        let Some(op) = op_of(dir) else { continue };
        // `_expanded` tests check an op's function body, a different graph per op.
        if dir.to_string_lossy().ends_with("_expanded") {
            continue;
        }
        if ops::importer(&op).is_none() {
            *unsupported_ops.entry(op).or_default() += 1;
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let case = std::panic::catch_unwind(|| run_case(dir))
            .unwrap_or_else(|_| Outcome::Fail("panicked".into()));
        let tally = table.entry(op).or_default();
        match case {
            Outcome::Pass => tally.passed += 1,
            Outcome::Skip => {}
            Outcome::Unsupported(why) => {
                if std::env::var_os("GRAFT_CONFORMANCE_VERBOSE").is_some() {
                    eprintln!("variant unsupported: {name}: {why}");
                }
                tally.unsupported_variant += 1
            }
            Outcome::Fail(why) => tally.failed.push(format!("{name}: {why}")),
        }
    }
    let mut doc =
        String::from("| op | passed | variant unsupported | failed |\n|---|---:|---:|---:|\n");
    let (mut passed, mut failed) = (0, Vec::new());
    for (op, t) in &table {
        doc.push_str(&format!(
            "| {op} | {} | {} | {} |\n",
            t.passed,
            t.unsupported_variant,
            t.failed.len()
        ));
        passed += t.passed;
        failed.extend(t.failed.iter().cloned());
    }
    if let Ok(path) = std::env::var("GRAFT_CONFORMANCE_TABLE") {
        let others: Vec<String> = unsupported_ops.keys().cloned().collect();
        doc.push_str(&format!(
            "\nOps Graft does not implement ({}): {}\n",
            others.len(),
            others.join(", ")
        ));
        std::fs::write(path, &doc).unwrap();
    }
    eprintln!("{doc}");
    assert!(passed > 100, "only {passed} conformance tests passed");
    assert!(
        failed.is_empty(),
        "{} conformance failures:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

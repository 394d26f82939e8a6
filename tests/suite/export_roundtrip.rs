//! Export writes what import reads: every fixture survives import → export → import with its
//! node names and the same outputs, and the exported file runs in an independent runtime
//! (tract) with the same logits.

use crate::common;

use common::{max_rel_error, to_channels_first};
use graft::engine::Model;
use graft::onnx::{self, export_bytes};
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    dirs.sort();
    dirs
}

fn run_tract(bytes: &[u8], shape: &[usize], data: &[f32]) -> TractResult<Vec<f32>> {
    let model = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])?
        .with_input_fact(0, f32::fact(shape).into())?
        .into_optimized()?
        .into_runnable()?;
    let input = Tensor::from_shape(shape, data)?;
    let out = model.run(tvec!(input.into()))?;
    Ok(out[0]
        .to_plain_array_view::<f32>()?
        .iter()
        .copied()
        .collect())
}

#[test]
fn fixtures_survive_export_with_names_and_outputs() {
    let device = burn::tensor::Device::flex();
    let mut failures = Vec::new();
    for dir in fixtures() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let first = onnx::import(dir.join("model.onnx")).unwrap();
        let bytes =
            export_bytes(&first.network, &first.store).unwrap_or_else(|e| panic!("{name}: {e}"));
        let second =
            onnx::import_bytes(&bytes).unwrap_or_else(|e| panic!("{name}: re-import: {e}"));
        let names =
            |n: &graft::graph::Network| n.nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>();
        if names(&first.network) != names(&second.network) {
            failures.push(format!("{name}: node names changed"));
        }
        if first.network.metadata.labels != second.network.metadata.labels {
            failures.push(format!("{name}: labels changed"));
        }
        let (shape, input) = graft::npy::read_f32(&dir.join("input.npy")).unwrap();
        let (_, want) = graft::npy::read_f32(&dir.join("output.npy")).unwrap();
        let got = Model::build(&second.network, &second.store, &device)
            .and_then(|m| m.infer(&shape, input.clone()))
            .map(|o| o[0].1.clone());
        match got {
            Ok(g) if max_rel_error(&g, &want) <= 1e-4 => {}
            Ok(g) => failures.push(format!(
                "{name}: graft after export differs by {:.2e}",
                max_rel_error(&g, &want)
            )),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
        match run_tract(&bytes, &shape, &input) {
            Ok(t) if max_rel_error(&t, &want) <= 1e-4 => {}
            Ok(t) => failures.push(format!(
                "{name}: tract differs by {:.2e}",
                max_rel_error(&t, &want)
            )),
            Err(e) => failures.push(format!("{name}: tract: {e:#}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A channels-last file (as tf2onnx writes them: N×H×W×3 in, a Transpose inside): Graft feeds
/// it channels-first and matches ONNX Runtime; the export is channels-last again and runs in
/// tract on the original N×H×W×3 input with the same answers.
#[test]
fn a_channels_last_file_trains_channels_first_and_exports_channels_last() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nhwc");
    let imported = onnx::import(dir.join("nhwc.onnx")).unwrap();
    assert_eq!(imported.network.input.shape[1..], [3, 16, 16]);
    assert_eq!(imported.network.input_chw(), Some([3, 16, 16]));
    let (nhwc_shape, nhwc) = graft::npy::read_f32(&dir.join("input_nhwc.npy")).unwrap();
    let (_, want) = graft::npy::read_f32(&dir.join("output_ort.npy")).unwrap();
    // The same images, channels first.
    let (nchw_shape, nchw) = to_channels_first(&nhwc_shape, &nhwc);
    let device = burn::tensor::Device::flex();
    let model = Model::build(&imported.network, &imported.store, &device).unwrap();
    let outs = model.infer(&nchw_shape, nchw).unwrap();
    let err = max_rel_error(&outs[0].1, &want);
    assert!(err < 1e-4, "Graft vs ONNX Runtime: {err}");

    let bytes = export_bytes(&imported.network, &imported.store).unwrap();
    let proto = <onnx_ir::ModelProto as onnx_ir::Message>::parse_from_bytes(&bytes).unwrap();
    let input = &proto.graph.as_ref().unwrap().input[0];
    assert_eq!(input.name, "images:0");
    let dims: Vec<i64> = input
        .type_
        .as_ref()
        .unwrap()
        .tensor_type()
        .shape
        .dim
        .iter()
        .map(|d| d.dim_value())
        .collect();
    assert_eq!(
        dims[1..],
        [16, 16, 3],
        "exported input is channels-last again"
    );
    let got = run_tract(&bytes, &nhwc_shape, &nhwc).unwrap();
    let err = max_rel_error(&got, &want);
    assert!(err < 1e-4, "exported file in tract vs ONNX Runtime: {err}");
}

/// The onnx package's light model `file` with each ConstantOfShape weight replaced by a seeded
/// random initializer (so every channel differs), ending at the class scores before its
/// final softmax (which saturates to one-hot in deep networks).
fn randomised_light_model(file: &str, rnd: &mut impl FnMut() -> f32) -> Vec<u8> {
    use onnx_ir::{Message, ModelProto, TensorProto};
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/light")
        .join(file);
    let mut m = ModelProto::parse_from_bytes(&std::fs::read(path).unwrap()).unwrap();
    let g = m.graph.as_mut().unwrap();
    let dims_of = |t: &TensorProto| -> Vec<i64> {
        if t.int64_data.is_empty() {
            t.raw_data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect()
        } else {
            t.int64_data.clone()
        }
    };
    let shapes: std::collections::HashMap<String, Vec<i64>> = g
        .initializer
        .iter()
        .filter(|t| t.data_type == 7)
        .map(|t| (t.name.clone(), dims_of(t)))
        .collect();
    let mut weights = Vec::new();
    g.node.retain(|n| {
        if n.op_type != "ConstantOfShape" {
            return true;
        }
        let dims = shapes[&n.input[0]].clone();
        let count: i64 = dims.iter().product();
        // Kaiming-like scale keeps activations finite through 100+ layers; 1-D tensors
        // (BatchNorm variances and scales, biases) stay positive.
        let fan_in = dims.iter().skip(1).product::<i64>().max(1) as f32;
        let scale = (6.0 / fan_in).sqrt();
        let mut t = TensorProto::new();
        t.name = n.output[0].clone();
        t.data_type = 1;
        t.dims = dims.clone();
        t.float_data = (0..count)
            .map(|_| {
                let r = rnd();
                if dims.len() == 1 {
                    0.5 + r.abs()
                } else {
                    2.0 * r * scale
                }
            })
            .collect();
        weights.push(t);
        false
    });
    g.initializer.extend(weights);
    if let Some(k) = g.node.iter().rposition(|n| n.op_type == "Softmax")
        && g.output
            .first()
            .is_some_and(|o| g.node[k].output[0] == o.name)
    {
        let scores = g.node.remove(k).input[0].clone();
        g.output[0].name = scores;
        g.output[0].type_ = Default::default();
    }
    m.write_to_bytes().unwrap()
}

/// The Caffe2-era topologies of the ONNX Model Zoo (the onnx package's light models: LRN with
/// Caffe parameters, Dropout left in, Sum, channel shuffle as 5-D Reshape + Transpose,
/// N×1000×1×1 outputs), with random weights: Graft's class scores agree with ONNX Runtime's
/// (`tools/make_light_references.py` makes the same weights from the same stream) and with
/// tract's on the original graph, and with tract's on Graft's export.
#[test]
fn caffe2_era_topologies_agree_with_onnx_runtime_and_tract() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    for file in [
        "light_bvlc_alexnet.onnx",
        "light_inception_v1.onnx",
        "light_resnet50.onnx",
        "light_squeezenet.onnx",
        "light_shufflenet.onnx",
        "light_densenet121.onnx",
    ] {
        let original = randomised_light_model(file, &mut rnd);
        let imported = onnx::import_bytes(&original).unwrap_or_else(|e| panic!("{file}: {e}"));
        let (net, store) = (&imported.network, &imported.store);
        let shape = [1, 3, 224, 224];
        let input: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|_| rnd() * 2.0)
            .collect();
        let device = burn::tensor::Device::flex();
        let ours = Model::build(net, store, &device)
            .and_then(|m| m.infer(&shape, input.clone()))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let theirs = run_tract(&original, &shape, &input).unwrap_or_else(|e| panic!("{file}: {e}"));
        let err = max_rel_error(&ours[0].1, &theirs);
        let ort = reference("light", &file.replace(".onnx", ".ort.npy"));
        let err_ort = max_rel_error(&ours[0].1, &ort);
        let exported = run_tract(&export_bytes(net, store).unwrap(), &shape, &input).unwrap();
        let err_export = max_rel_error(&exported, &theirs);
        eprintln!(
            "{file}: vs ONNX Runtime {err_ort:.2e}, vs tract on the file {err:.2e}, \
             on the export {err_export:.2e}"
        );
        assert!(err_ort < 1e-4, "{file}: Graft vs ONNX Runtime {err_ort}");
        assert!(err < 1e-4, "{file}: Graft vs tract {err}");
        assert!(
            err_export < 1e-4,
            "{file}: export vs original in tract {err_export}"
        );
        // Not a degenerate constant: the scores differ from class to class.
        assert!(
            theirs.iter().any(|v| (v - theirs[0]).abs() > 1e-3),
            "{file}: constant output"
        );
    }
}

/// A generated fixture of `tests/fixtures/{dir}`: the file imported, with the note import
/// must have made about it, and Graft's CPU output on the `input` array there.
fn imported_with_note(
    dir: &str,
    file: &str,
    note: &str,
    input: &str,
) -> (onnx::Imported, Vec<f32>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let imported = onnx::import(dir.join(file)).unwrap();
    let notes = &imported.network.metadata.notes;
    assert!(notes.iter().any(|n| n.contains(note)), "{notes:?}");
    let (shape, data) = graft::npy::read_f32(&dir.join(input)).unwrap();
    let device = burn::tensor::Device::flex();
    let outs = Model::build(&imported.network, &imported.store, &device)
        .and_then(|m| m.infer(&shape, data))
        .unwrap();
    let out = outs[0].1.clone();
    (imported, out)
}

fn reference(dir: &str, file: &str) -> Vec<f32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(file);
    graft::npy::read_f32(&path).unwrap().1
}

/// A float16 file (input, weights and output in float16): Graft computes in float32, matches
/// ONNX Runtime's float16 result within float16's precision, and says what it did.
#[test]
fn a_float16_file_computes_in_float32_and_says_so() {
    let (_, ours) = imported_with_note("fp16", "fp16.onnx", "float32", "input.f32.npy");
    let err = max_rel_error(&ours, &reference("fp16", "output_ort.npy"));
    assert!(
        err < 1e-2,
        "Graft (float32) vs ONNX Runtime (float16): {err}"
    );
}

/// An int8 file in QDQ form (int8 weights behind DequantizeLinear, activations through
/// QuantizeLinear → DequantizeLinear): read as float — the weights dequantised exactly
/// (matching ONNX Runtime on the float network with those weights), the activation rounding
/// dropped (so it differs from ONNX Runtime's int8 result by that rounding only) — and said.
#[test]
fn an_int8_qdq_file_is_read_as_float() {
    let (imported, ours) = imported_with_note("int8", "qdq.onnx", "QDQ", "input.npy");
    let exact = max_rel_error(&ours, &reference("int8", "output_float.npy"));
    assert!(exact < 1e-5, "vs the dequantised float network: {exact}");
    let rounding = max_rel_error(&ours, &reference("int8", "output_qdq.npy"));
    assert!(rounding < 0.1, "vs ONNX Runtime's int8 run: {rounding}");
    // Trainable: the dequantised weights are ordinary parameters.
    assert!(
        imported
            .store
            .iter()
            .any(|(_, t)| t.shape == vec![8, 3, 3, 3])
    );
}

/// An int8 file in QOperator form (QLinearConv, QLinearMatMul and ONNX Runtime's
/// `com.microsoft` QLinearAdd, QLinearConcat, QLinearLeakyRelu, QLinearAveragePool,
/// QLinearGlobalAveragePool, QGemm, with MaxPool and Flatten on the uint8 values): read as the
/// float network it stands for — matching ONNX Runtime on that float network, and its int8
/// run within the activation rounding — with the Relus the quantizer folded into zero points
/// written back; it exports as plain float ONNX that tract runs with the same answers.
#[test]
fn an_int8_qoperator_file_is_read_as_float() {
    let (imported, ours) = imported_with_note("int8", "qoperator.onnx", "QOperator", "input.npy");
    let exact = max_rel_error(&ours, &reference("int8", "output_qoperator_float.npy"));
    assert!(exact < 1e-5, "vs the dequantised float network: {exact}");
    let rounding = max_rel_error(&ours, &reference("int8", "output_qoperator.npy"));
    assert!(rounding < 0.1, "vs ONNX Runtime's int8 run: {rounding}");

    let net = &imported.network;
    let op_of = |name: &str| {
        net.nodes
            .iter()
            .find(|n| n.name == name)
            .map(|n| n.op.onnx_type())
    };
    // Each QLinear op kept its name as its float op.
    for (name, op) in [
        ("conv1", "Conv"),
        ("conv2", "Conv"),
        ("add", "Add"),
        ("concat", "Concat"),
        ("lrelu", "LeakyRelu"),
        ("avgpool", "AveragePool"),
        ("gap", "GlobalAveragePool"),
        ("fc1", "MatMul"),
        ("fc2", "Gemm"),
    ] {
        assert_eq!(op_of(name), Some(op), "{name}");
    }
    // A Relu where the output's range starts at 0 after a weighted op; none after a sum or
    // concatenation of values that are already non-negative.
    for relu in ["conv1/relu", "conv2/relu", "fc1/relu"] {
        assert_eq!(op_of(relu), Some("Relu"), "{relu}");
    }
    assert!(op_of("add/relu").is_none() && op_of("concat/relu").is_none());
    // The weights are float parameters to fine-tune.
    assert!(
        net.nodes
            .iter()
            .all(|n| !n.op.onnx_type().starts_with("QLinear"))
    );
    assert!(
        imported
            .store
            .iter()
            .any(|(_, t)| t.shape == vec![8, 3, 3, 3])
    );

    let bytes = export_bytes(net, &imported.store).unwrap();
    let (shape, data) = graft::npy::read_f32(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/int8/input.npy"),
    )
    .unwrap();
    let theirs = run_tract(&bytes, &shape, &data).unwrap();
    let err = max_rel_error(&theirs, &ours);
    assert!(err < 1e-5, "tract on the exported file: {err}");

    // An int8 op Graft does not read stays a placeholder that names itself.
    use onnx_ir::Message;
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/int8/qoperator.onnx");
    let mut m = onnx_ir::ModelProto::parse_from_bytes(&std::fs::read(file).unwrap()).unwrap();
    let g = m.graph.as_mut().unwrap();
    g.node
        .iter_mut()
        .find(|n| n.name == "lrelu")
        .unwrap()
        .op_type = "QLinearSoftmax".into();
    let imported = onnx::import_bytes(&m.write_to_bytes().unwrap()).unwrap();
    let unsupported: Vec<_> = imported.network.unsupported().collect();
    assert!(
        unsupported.iter().any(|n| n.name == "lrelu"),
        "{:?}",
        unsupported.iter().map(|n| &n.name).collect::<Vec<_>>()
    );
}

/// A file that leaves the image size open (N×3×?×?) is built at the size asked for (224 when
/// none is), says so, and matches ONNX Runtime at that size; the command line takes the size
/// from `--input-size`.
#[test]
fn an_open_image_size_is_chosen_not_assumed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/open_size");
    let default = onnx::import(dir.join("open.onnx")).unwrap();
    assert_eq!(default.network.input.shape[1..], [3, 224, 224]);
    let options = onnx::ImportOptions {
        image_size: Some(32),
        ..Default::default()
    };
    let imported = onnx::import_with(dir.join("open.onnx"), &options).unwrap();
    assert_eq!(imported.network.input.shape[1..], [3, 32, 32]);
    let notes = &imported.network.metadata.notes;
    assert!(notes.iter().any(|n| n.contains("32×32")), "{notes:?}");
    let (shape, data) = graft::npy::read_f32(&dir.join("input32.npy")).unwrap();
    let device = burn::tensor::Device::flex();
    let outs = Model::build(&imported.network, &imported.store, &device)
        .and_then(|m| m.infer(&shape, data))
        .unwrap();
    let ours = &outs[0].1;
    let err = max_rel_error(ours, &reference("open_size", "output32.npy"));
    assert!(err < 1e-4, "vs ONNX Runtime at 32×32: {err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["inspect", "--json", "--input-size", "48"])
        .arg(dir.join("open.onnx"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["input"]["shape"],
        serde_json::json!(["N", "3", "48", "48"]),
        "{v}"
    );
}

/// Files written by converters and old exporters (tools/make_converter_fixtures.py):
/// paddle2onnx's hard-swish, Casts, Shape/Slice/Cast arithmetic feeding a nearest Resize,
/// a bilinear Resize to a non-integer size, and an SE block whose Reshapes bake in batch 1
/// although the input's batch is free; and an opset-7 file with Upsample's `scales`
/// attribute, BatchNormalization's `spatial`, Sum, Dropout and MatMul + Add. Each matches ONNX
/// Runtime at batch 2 (which ONNX Runtime itself cannot run for the paddle file: its
/// reference is each image alone), and its export runs in tract with the same answers.
#[test]
fn converter_and_old_exporter_files_match_onnx_runtime() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/converters");
    let (shape, data) = graft::npy::read_f32(&dir.join("input.npy")).unwrap();
    assert_eq!(shape[0], 2);
    let device = burn::tensor::Device::flex();
    for (file, want) in [
        ("paddle.onnx", "output_paddle.npy"),
        ("old.onnx", "output_old.npy"),
    ] {
        let imported = onnx::import(dir.join(file)).unwrap();
        let net = &imported.network;
        let unsupported: Vec<_> = net.unsupported().map(|n| n.name.clone()).collect();
        assert!(unsupported.is_empty(), "{file}: {unsupported:?}");
        let outs = Model::build(net, &imported.store, &device)
            .and_then(|m| m.infer(&shape, data.clone()))
            .unwrap();
        let ours = &outs[0].1;
        let err = max_rel_error(ours, &reference("converters", want));
        assert!(err < 1e-4, "{file} vs ONNX Runtime: {err}");
        let bytes = export_bytes(net, &imported.store).unwrap();
        let theirs = run_tract(&bytes, &shape, &data).unwrap();
        let err = max_rel_error(&theirs, ours);
        assert!(err < 1e-4, "{file}: tract on the export: {err}");
    }
    let paddle = onnx::import(dir.join("paddle.onnx")).unwrap().network;
    let op = |name: &str| {
        paddle
            .nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap()
            .op
            .clone()
    };
    // The batch-1 Reshapes copy the batch now.
    for name in ["se_flat", "se_unflat"] {
        let graft::graph::Op::Reshape { shape, .. } = op(name) else {
            panic!("{name} is not a Reshape")
        };
        assert_eq!(shape[0], 0, "{name}: {shape:?}");
    }
    assert!(matches!(
        op("upsample"),
        graft::graph::Op::Resize {
            scales: [2.0, 2.0],
            mode: graft::graph::ResizeMode::Nearest
        }
    ));
}

/// Resize spellings that would compute something else than Graft's sampling are refused,
/// naming the attribute, rather than imported wrongly.
#[test]
fn resize_modes_graft_cannot_compute_are_named() {
    use onnx_ir::Message;
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/converters/paddle.onnx");
    let model = onnx_ir::ModelProto::parse_from_bytes(&std::fs::read(file).unwrap()).unwrap();
    for (attr, value, expect) in [
        (
            "coordinate_transformation_mode",
            "asymmetric",
            "linear resize",
        ),
        ("mode", "cubic", "cubic"),
    ] {
        let mut m = model.clone();
        let g = m.graph.as_mut().unwrap();
        let node = g
            .node
            .iter_mut()
            .find(|n| n.name == "resize_linear")
            .unwrap();
        let a = node.attribute.iter_mut().find(|a| a.name == attr).unwrap();
        a.s = value.as_bytes().to_vec().into();
        let imported = onnx::import_bytes(&m.write_to_bytes().unwrap()).unwrap();
        let bad: Vec<_> = imported.network.unsupported().collect();
        assert_eq!(bad.len(), 1);
        let graft::graph::Op::Unsupported { reason, .. } = &bad[0].op else {
            unreachable!()
        };
        assert_eq!(bad[0].name, "resize_linear");
        assert!(reason.contains(expect), "{reason}");
    }
}

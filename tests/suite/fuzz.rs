//! A seeded mutation fuzzer over the fixtures: ONNX files changed the ways real files go wrong
//! (an op's type or attribute values, missing or extra inputs, empty or mis-shaped tensors,
//! odd opsets, truncation, flipped bytes) must import to a network or to an error, never a
//! panic; so must project files with damaged text, and replaying their edits. The counts of
//! inputs tried are printed (`cargo test --release --test suite fuzz:: -- --nocapture`); the seed is
//! fixed, so a failure repeats.

use graft::graph::analyze::analyze;
use graft::graph::edit::{Edit, LayerKind, NewLayer, apply};
use graft::onnx;
use graft::project::Project;
use onnx_ir::{AttributeProto, Message, ModelProto, TensorProto};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

/// xorshift64*: small, seeded, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
    /// Integers files get wrong: 0, ±1, off by one, huge, negative huge.
    fn nasty_int(&mut self, near: i64) -> i64 {
        *self.pick(&[
            0,
            1,
            -1,
            2,
            near + 1,
            near - 1,
            -near,
            i64::MAX,
            i64::MIN,
            1 << 31,
            -(1 << 40),
            7,
        ])
    }
}

const FIXTURES: &[&str] = &[
    "darknet_op13",
    "caffenet_lrn_op11",
    "shufflenet_v2_op11",
    "regnet_y_bn_op15",
    "densenet121_op13",
    "convnext_op17",
    "googlenet_op11",
    "mobilenet_v3_op17",
    "efficientnet_lite0_op13",
    // int8 QOperator, paddle2onnx-style (Resize, batch-1 Reshapes), opset 7 (Upsample).
    "int8/qoperator.onnx",
    "converters/paddle.onnx",
    "converters/old.onnx",
];

/// A fixture: a folder's `model.onnx`, or a file named directly.
fn load(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let file = if name.ends_with(".onnx") {
        path
    } else {
        path.join("model.onnx")
    };
    std::fs::read(file).unwrap()
}

/// A tensor with no values (shape `[0]`).
fn empty(t: &mut TensorProto) {
    t.dims = vec![0];
    t.raw_data.clear();
    t.float_data.clear();
    t.int64_data.clear();
}

/// One random change of the kinds real files have; returns what it did.
fn mutate(m: &mut ModelProto, rng: &mut Rng) -> String {
    let op_types: Vec<String> = m
        .graph
        .as_ref()
        .map(|g| g.node.iter().map(|n| n.op_type.clone()).collect())
        .unwrap_or_default();
    if rng.below(20) == 0 {
        let v = rng.nasty_int(13);
        if let Some(o) = m.opset_import.first_mut() {
            o.version = v;
        }
        return format!("opset {v}");
    }
    let Some(g) = m.graph.as_mut() else {
        return "no graph".into();
    };
    let nodes = g.node.len();
    match rng.below(11) {
        0 if nodes > 0 => {
            let i = rng.below(nodes);
            let t = rng.pick(&op_types).clone();
            g.node[i].op_type = t.clone();
            format!("node {i} becomes {t}")
        }
        1 | 2 if nodes > 0 => {
            // An attribute's values.
            let i = rng.below(nodes);
            let n = &mut g.node[i];
            if n.attribute.is_empty() {
                return "no attribute".into();
            }
            let a = rng.below(n.attribute.len());
            let attr: &mut AttributeProto = &mut n.attribute[a];
            let what = match rng.below(5) {
                0 => {
                    attr.i = rng.nasty_int(attr.i);
                    "i"
                }
                1 if !attr.ints.is_empty() => {
                    let k = rng.below(attr.ints.len());
                    attr.ints[k] = rng.nasty_int(attr.ints[k]);
                    "ints[k]"
                }
                2 => {
                    attr.ints.clear();
                    "ints cleared"
                }
                3 => {
                    attr.ints.push(rng.nasty_int(1));
                    "ints longer"
                }
                _ => {
                    attr.f = *rng.pick(&[0.0, -1.0, f32::NAN, f32::INFINITY, 1e30]);
                    "f"
                }
            };
            format!("node {i} ({}) attribute {}: {what}", n.op_type, attr.name)
        }
        3 if nodes > 0 => {
            let i = rng.below(nodes);
            let n = &mut g.node[i];
            match rng.below(3) {
                0 if !n.input.is_empty() => {
                    n.input.pop();
                    format!("node {i} ({}) loses an input", n.op_type)
                }
                1 => {
                    n.input.push(String::new());
                    format!("node {i} ({}) gains an empty input", n.op_type)
                }
                _ if n.input.len() > 1 => {
                    n.input.swap(0, 1);
                    format!("node {i} ({}) inputs swapped", n.op_type)
                }
                _ => "no input change".into(),
            }
        }
        4 if nodes > 0 => {
            let i = rng.below(nodes);
            let t = g.node[i].op_type.clone();
            g.node.remove(i);
            format!("node {i} ({t}) removed")
        }
        5 | 6 if !g.initializer.is_empty() => {
            // A tensor's shape or data.
            let i = rng.below(g.initializer.len());
            let t: &mut TensorProto = &mut g.initializer[i];
            match rng.below(4) {
                0 => {
                    empty(t);
                    format!("initializer {} emptied", t.name)
                }
                1 if !t.dims.is_empty() => {
                    let k = rng.below(t.dims.len());
                    t.dims[k] = rng.nasty_int(t.dims[k]);
                    format!("initializer {} dim {k}", t.name)
                }
                2 => {
                    t.dims.clear();
                    format!("initializer {} made scalar", t.name)
                }
                _ => {
                    let keep = rng.below(t.raw_data.len() + 1);
                    t.raw_data.truncate(keep);
                    format!("initializer {} data cut to {keep}", t.name)
                }
            }
        }
        7 if nodes > 0 => {
            // A Constant node's value, where the folding arithmetic reads it.
            let consts: Vec<usize> = (0..nodes)
                .filter(|&i| g.node[i].op_type == "Constant")
                .collect();
            let Some(&i) = consts.get(rng.below(consts.len().max(1))) else {
                return "no Constant".into();
            };
            let n = &mut g.node[i];
            for a in &mut n.attribute {
                if let Some(t) = a.t.as_mut() {
                    match rng.below(3) {
                        0 => empty(t),
                        1 => {
                            t.int64_data = vec![rng.nasty_int(3)];
                            t.raw_data.clear();
                            t.dims = vec![1];
                            t.data_type = 7;
                        }
                        _ => t.data_type = rng.nasty_int(7) as i32,
                    }
                }
            }
            format!("Constant node {i} changed")
        }
        8 => {
            // The input's shape.
            if let Some(input) = g.input.first_mut()
                && let Some(tt) = input.type_.as_mut()
                && tt.has_tensor_type()
                && let Some(s) = tt.mut_tensor_type().shape.as_mut()
                && !s.dim.is_empty()
            {
                let k = rng.below(s.dim.len());
                let v = rng.nasty_int(3);
                s.dim[k].set_dim_value(v);
                return format!("input dim {k} = {v}");
            }
            "no input shape".into()
        }
        9 if nodes > 1 => {
            // A wire to somewhere else (maybe later: a cycle).
            let i = rng.below(nodes);
            let j = rng.below(nodes);
            if let (Some(v), false) = (
                g.node[j].output.first().cloned(),
                g.node[i].input.is_empty(),
            ) {
                g.node[i].input[0] = v;
                return format!("node {i} reads node {j}");
            }
            "no rewire".into()
        }
        _ => {
            g.output.clear();
            "outputs removed".into()
        }
    }
}

/// Imports (and analyses) a file; `Err` with the panic message if anything panicked.
/// Imports and analyses `bytes`: whether it imported, or the panic's message.
fn survives(bytes: &[u8]) -> Result<bool, String> {
    catch_unwind(AssertUnwindSafe(|| match onnx::import_bytes(bytes) {
        Ok(imported) => {
            let _ = analyze(&imported.network, &imported.store);
            true
        }
        Err(_) => false,
    }))
    .map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

#[test]
fn mutated_onnx_files_never_panic() {
    // Quiet the default hook: hundreds of expected-to-be-caught panics would flood the log.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng(0x6AF7_0001);
    let budget = Duration::from_secs(60);
    let start = Instant::now();
    let (mut tried, mut imported) = (0usize, 0usize);
    let mut panics = Vec::new();
    'outer: for round in 0.. {
        for name in FIXTURES {
            if start.elapsed() > budget || tried >= 6000 {
                break 'outer;
            }
            let bytes = load(name);
            let base = ModelProto::parse_from_bytes(&bytes).unwrap();
            // Structured mutations, 1 to 3 at a time.
            for _ in 0..40 {
                let mut m = base.clone();
                let what: Vec<String> = (0..1 + rng.below(3))
                    .map(|_| mutate(&mut m, &mut rng))
                    .collect();
                let Ok(out) = m.write_to_bytes() else {
                    continue;
                };
                tried += 1;
                match survives(&out) {
                    Ok(ok) => imported += ok as usize,
                    Err(p) => panics.push(format!("{name} [{}]: {p}", what.join("; "))),
                }
            }
            // Byte-level damage: truncation and flipped bytes.
            for _ in 0..4 {
                let mut out = bytes.clone();
                if rng.below(2) == 0 {
                    out.truncate(rng.below(bytes.len()));
                } else {
                    for _ in 0..1 + rng.below(8) {
                        let k = rng.below(out.len());
                        out[k] ^= 1 << rng.below(8);
                    }
                }
                tried += 1;
                if let Err(p) = survives(&out) {
                    panics.push(format!("{name} [bytes, round {round}]: {p}"));
                }
            }
        }
    }
    std::panic::set_hook(hook);
    println!(
        "fuzz: {tried} mutated ONNX inputs, {imported} imported, {} panics",
        panics.len()
    );
    assert!(tried >= 500, "too few inputs tried: {tried}");
    assert!(
        panics.is_empty(),
        "{} panics:\n{}",
        panics.len(),
        panics.join("\n")
    );
}

#[test]
fn damaged_project_files_never_panic() {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let imported = onnx::import_bytes(&load("darknet_op13")).unwrap();
    let head = imported.network.nodes.last().unwrap().name.clone();
    let first = imported.network.nodes[0].name.clone();
    let project = Project {
        edits: vec![
            Edit::AdaptHead {
                classes: vec!["a".into(), "b".into()],
                seed: 3,
            },
            Edit::FreezeUntil {
                node: first.clone(),
            },
            Edit::SetLrFactor {
                node: head.clone(),
                factor: 2.0,
            },
            Edit::InsertAfter {
                node: first.clone(),
                layer: NewLayer {
                    name: "extra".into(),
                    kind: LayerKind::Conv {
                        out_channels: 4,
                        kernel: 3,
                        stride: 1,
                        padding: 1,
                    },
                    seed: 1,
                },
            },
            Edit::Rewire {
                node: head,
                index: 0,
                value: first,
            },
        ],
        ..Project::default()
    };
    let text = project.to_ron().unwrap();
    let mut rng = Rng(0x6AF7_0002);
    let (mut tried, mut parsed) = (0usize, 0usize);
    let mut panics = Vec::new();
    let numbers: Vec<usize> = text
        .char_indices()
        .filter(|(_, c)| c.is_ascii_digit())
        .map(|(i, _)| i)
        .collect();
    for _ in 0..1500 {
        let mut t = text.clone();
        match rng.below(4) {
            0 => {
                let k = *rng.pick(&numbers);
                let v = *rng.pick(&[
                    "0",
                    "-1",
                    "99999999999",
                    "1e40",
                    "NaN",
                    "18446744073709551615",
                ]);
                t.replace_range(k..k + 1, v);
            }
            1 => {
                let k = rng.below(t.len());
                let k = (0..=k).rev().find(|&i| t.is_char_boundary(i)).unwrap_or(0);
                t.truncate(k);
            }
            2 => {
                let k = rng.below(t.len());
                if t.is_char_boundary(k) && t.is_char_boundary(k + 1) {
                    t.remove(k);
                }
            }
            _ => {
                t = t.replace("\"a\"", "\"\"").replace("index: 0", "index: 7");
            }
        }
        tried += 1;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let Ok(p) = Project::from_ron(&t) else {
                return false;
            };
            let _ = p.options.validate();
            let (mut net, mut store) = (imported.network.clone(), imported.store.clone());
            for e in &p.edits {
                let _ = apply(&mut net, &mut store, e);
            }
            true
        }));
        match outcome {
            Ok(true) => parsed += 1,
            Ok(false) => {}
            Err(_) => panics.push(t.chars().take(300).collect::<String>()),
        }
    }
    std::panic::set_hook(hook);
    println!(
        "fuzz: {tried} damaged project files, {parsed} parsed and replayed, {} panics",
        panics.len()
    );
    assert!(
        parsed > 0,
        "no damaged project parsed: the mutations are too coarse"
    );
    assert!(
        panics.is_empty(),
        "{} panics, first:\n{}",
        panics.len(),
        panics[0]
    );
}

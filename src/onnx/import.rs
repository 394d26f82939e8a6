//! ONNX `ModelProto` → [`Network`] + [`Store`].
//!
//! Node names are the file's own. Constant sub-graphs (PyTorch's Shape/Gather/Concat chains,
//! TF-style padding arithmetic) are evaluated here and folded into the attributes of the node
//! they feed. Because the batch size must stay free, lowering runs twice, for batch 1 and 2:
//! a folded value that differs between the two depends on the batch and is rewritten (a
//! Reshape's batch entry becomes 0 or -1) or refused with a message.

use super::attrs::Attrs;
use super::fold;
use super::ops::{self, Ctx, InputRef};
use super::tensor::{self, HostTensor};
use super::{ImportError, MAX_OPSET, MIN_OPSET};
use crate::graph::{Input, Metadata, Network, Node, Op, Preprocess};
use crate::weights::Store;
use onnx_ir::{GraphProto, ModelProto, NodeProto};
use std::collections::{HashMap, HashSet};

/// A network as read from a file.
#[derive(Clone, Debug)]
pub struct Imported {
    pub network: Network,
    pub store: Store,
}

/// Metadata keys Graft reads and writes.
pub const LABELS_KEY: &str = "graft.labels";
pub const PREPROCESS_KEY: &str = "graft.preprocess";

/// How to read a file.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Treat dimension 0 of the input as a free batch size (image networks). When false, the
    /// input shape is exactly what the file declares.
    pub free_batch: bool,
    /// The side of the image for a file that leaves height and width open (`N×3×?×?`,
    /// common in converter exports and detection backbones); 224 when not given.
    pub image_size: Option<usize>,
}

/// The image side used when a file leaves it open and nobody chose one.
pub const DEFAULT_IMAGE_SIZE: usize = 224;

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            free_batch: true,
            image_size: None,
        }
    }
}

pub fn import_model(model: &ModelProto, options: &ImportOptions) -> Result<Imported, ImportError> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| ImportError::NotOnnx("it holds no graph".into()))?;
    if graph.node.is_empty() {
        return Err(ImportError::NotOnnx("its graph has no nodes".into()));
    }
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| ImportError::NotOnnx("it declares no opset of the ONNX domain".into()))?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        return Err(ImportError::Opset(opset));
    }
    if !graph.sparse_initializer.is_empty() {
        return Err(ImportError::Unsupported("sparse initializers".into()));
    }

    let mut initializers = HashMap::new();
    for t in &graph.initializer {
        let host = tensor::from_proto(t).map_err(|message| ImportError::BadTensor {
            name: t.name.clone(),
            message,
        })?;
        initializers.insert(t.name.clone(), host);
    }
    // A detector Graft exported carries its decoding; the engine decodes in Rust.
    let undecoded = super::detector::without_decoding(graph);
    let graph = undecoded.as_ref().unwrap_or(graph);
    // A sound network Graft exported carries its front end; the engine computes it in Rust.
    let unfronted = super::sound::without_front_end(graph);
    let graph = unfronted.as_ref().unwrap_or(graph);
    let dequantised = super::quantized::to_float(graph, &mut initializers)?;
    let graph = dequantised.as_ref().map_or(graph, |(g, _)| g);
    let (input, file_batch, open_size) = graph_input(graph, &initializers, options)?;
    let names = node_names(graph);
    let order = topological_order(graph, &names, &initializers, &input.name)?;

    let consumed: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .chain(graph.output.iter().map(|o| o.name.as_str()))
        .collect();
    let lower = |batch| {
        Lowering {
            graph,
            names: &names,
            opset,
            initializers: &initializers,
            consumed: &consumed,
            folded: HashMap::new(),
            shapes: HashMap::new(),
            nodes: Vec::new(),
            used_constants: HashMap::new(),
            file_batch: file_batch.filter(|_| options.free_batch),
            free_batch: options.free_batch,
            batch_axis: HashSet::new(),
            batch,
        }
        .run(&order, &input)
    };
    let (nodes, used_constants, folded) = if options.free_batch {
        let one = lower(1)?;
        let two = lower(2)?;
        for (name, t) in &one.used_constants {
            if two.used_constants.get(name) != Some(t) {
                return Err(ImportError::BatchDependent {
                    node: name.clone(),
                    what: "a constant".into(),
                });
            }
        }
        (
            reconcile(one.nodes, two.nodes)?,
            one.used_constants,
            one.folded,
        )
    } else {
        let one = lower(input.shape[0])?;
        (one.nodes, one.used_constants, one.folded)
    };

    let mut store = Store::new();
    for (name, t) in used_constants {
        store.insert(name, t.to_weights());
    }
    let outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    for out in &outputs {
        if folded.contains_key(out) || initializers.contains_key(out) {
            return Err(ImportError::Unsupported(format!(
                "output '{out}' is a constant, not computed from the input"
            )));
        }
    }
    let mut network = Network {
        name: if graph.name.is_empty() {
            "network".into()
        } else {
            graph.name.clone()
        },
        input,
        outputs,
        nodes,
        metadata: metadata(model, opset),
    };
    let half = |t: i32| t == tensor::dtype::FLOAT16 || t == tensor::dtype::BFLOAT16;
    let input_half = graph.input.iter().any(|i| {
        i.type_
            .as_ref()
            .filter(|t| t.has_tensor_type())
            .is_some_and(|t| half(t.tensor_type().elem_type))
    });
    network.metadata.open_image_size = open_size;
    if open_size {
        let side = options.image_size.unwrap_or(DEFAULT_IMAGE_SIZE);
        network.metadata.notes.push(format!(
            "the file leaves the image size open: built for {side}×{side} \
             (graft --input-size N chooses another)"
        ));
    }
    if let Some((_, form)) = &dequantised {
        network.metadata.notes.push(form.note());
    }
    if input_half || graph.initializer.iter().any(|t| half(t.data_type)) {
        network.metadata.notes.push(
            "16-bit floats in the file: Graft computes, trains and exports in float32".into(),
        );
    }
    super::layout::channels_first(&mut network);
    Ok(Imported { network, store })
}

/// The one non-initializer input, and the batch size the file fixes (if it does). With
/// `free_batch`, dimension 0 is the batch (stored as 1).
/// Also whether the file left the image size open.
fn graph_input(
    graph: &GraphProto,
    initializers: &HashMap<String, HostTensor>,
    options: &ImportOptions,
) -> Result<(Input, Option<usize>, bool), ImportError> {
    let free_batch = options.free_batch;
    let inputs: Vec<_> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains_key(&i.name))
        .collect();
    let [input] = inputs.as_slice() else {
        let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
        return Err(ImportError::Unsupported(format!(
            "Graft opens networks with one image input; this one has {} ({})",
            names.len(),
            names.join(", ")
        )));
    };
    let ty = input.type_.as_ref();
    let tensor_type = ty.filter(|t| t.has_tensor_type()).map(|t| t.tensor_type());
    if let Some(tt) = tensor_type
        && !tensor::dtype::is_float(tt.elem_type)
        && tt.elem_type != 0
    {
        return Err(ImportError::Unsupported(format!(
            "input '{}' has element type {}; Graft feeds float images",
            input.name, tt.elem_type
        )));
    }
    let dims: Vec<Option<usize>> = tensor_type
        .and_then(|tt| tt.shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .map(|d| (d.has_dim_value() && d.dim_value() > 0).then(|| d.dim_value() as usize))
                .collect()
        })
        .unwrap_or_default();
    if dims.is_empty() || dims.len() > crate::engine::value::MAX_RANK {
        return Err(ImportError::Unsupported(format!(
            "input '{}' has rank {}; Graft reads inputs of rank 1 to {}",
            input.name,
            dims.len(),
            crate::engine::value::MAX_RANK
        )));
    }
    let mut shape = Vec::with_capacity(dims.len());
    let mut open_size = false;
    for (i, d) in dims.iter().enumerate() {
        shape.push(match (i, d) {
            (0, _) if free_batch => 1,
            (_, Some(d)) => *d,
            // An image size the file leaves open: the one asked for, else the common one.
            (1, None) if dims.len() == 4 => 3,
            (2 | 3, None) if dims.len() == 4 => {
                open_size = true;
                options.image_size.unwrap_or(DEFAULT_IMAGE_SIZE)
            }
            _ => {
                return Err(ImportError::Unsupported(format!(
                    "input '{}' has no fixed size in dimension {i}",
                    input.name
                )));
            }
        });
    }
    Ok((
        Input {
            name: input.name.clone(),
            shape,
            free_batch,
        },
        dims[0],
        open_size,
    ))
}

/// A unique name per node: the file's, or `{op}_{index}` where it gave none or repeated one.
fn node_names(graph: &GraphProto) -> Vec<String> {
    let mut seen = HashSet::new();
    graph
        .node
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut name = if n.name.is_empty() {
                format!("{}_{i}", n.op_type)
            } else {
                n.name.clone()
            };
            while !seen.insert(name.clone()) {
                name = format!("{name}_{i}");
            }
            name
        })
        .collect()
}

/// Kahn's algorithm over value dependencies; a leftover node sits on a cycle.
fn topological_order(
    graph: &GraphProto,
    names: &[String],
    initializers: &HashMap<String, HostTensor>,
    input: &str,
) -> Result<Vec<usize>, ImportError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            producer.insert(o, i);
        }
    }
    let n = graph.node.len();
    let mut indegree = vec![0usize; n];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, node) in graph.node.iter().enumerate() {
        for value in node.input.iter().filter(|v| !v.is_empty()) {
            if let Some(&p) = producer.get(value.as_str()) {
                indegree[i] += 1;
                users[p].push(i);
            } else if value != input && !initializers.contains_key(value) {
                return Err(ImportError::Missing {
                    node: names[i].clone(),
                    value: value.clone(),
                });
            }
        }
    }
    for out in &graph.output {
        if !producer.contains_key(out.name.as_str()) && out.name != input {
            return Err(ImportError::Missing {
                node: "(graph output)".into(),
                value: out.name.clone(),
            });
        }
    }
    // Keep the file's order where it is already valid: always take the lowest ready index.
    let mut ready: std::collections::BTreeSet<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            indegree[u] -= 1;
            if indegree[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() < n {
        let stuck = (0..n).find(|&i| indegree[i] > 0).unwrap_or(0);
        return Err(ImportError::Cycle(names[stuck].clone()));
    }
    Ok(order)
}

struct Lowering<'a> {
    graph: &'a GraphProto,
    names: &'a [String],
    opset: i64,
    initializers: &'a HashMap<String, HostTensor>,
    consumed: &'a HashSet<&'a str>,
    /// Values computed at import time.
    folded: HashMap<String, HostTensor>,
    /// Shapes of run-time values.
    shapes: HashMap<String, Vec<usize>>,
    nodes: Vec<Node>,
    /// Constants that run-time nodes read (weights, biases, scalars).
    used_constants: HashMap<String, HostTensor>,
    /// The batch size the file was exported with, when it fixes one and the batch is free.
    file_batch: Option<usize>,
    /// Whether dimension 0 of the input is a free batch size.
    free_batch: bool,
    /// Values whose dimension 0 is the batch.
    batch_axis: HashSet<String>,
    /// The batch size of this lowering.
    batch: usize,
}

impl Lowering<'_> {
    fn constant(&self, name: &str) -> Option<&HostTensor> {
        self.folded
            .get(name)
            .or_else(|| self.initializers.get(name))
    }

    fn run(mut self, order: &[usize], input: &Input) -> Result<Self, ImportError> {
        let mut shape = input.shape.clone();
        shape[0] = self.batch;
        self.shapes.insert(input.name.clone(), shape);
        self.batch_axis.insert(input.name.clone());
        for &i in order {
            self.node(&self.graph.node[i], &self.names[i])?;
        }
        Ok(self)
    }

    fn node(&mut self, node: &NodeProto, name: &str) -> Result<(), ImportError> {
        let attrs = Attrs::of(node);
        let op_type = node.op_type.as_str();
        let default_domain = node.domain.is_empty() || node.domain == "ai.onnx";
        let node_err = |message: String| ImportError::Node {
            node: name.to_owned(),
            op: op_type.to_owned(),
            message,
        };

        // Constants and constant sub-graphs.
        if default_domain && op_type == "Constant" {
            let value = constant_value(&attrs).map_err(node_err)?;
            if let Some(out) = node.output.first() {
                self.folded.insert(out.clone(), value);
            }
            return Ok(());
        }
        let statics: Vec<Option<&HostTensor>> = node
            .input
            .iter()
            .map(|v| if v.is_empty() { None } else { self.constant(v) })
            .collect();
        let all_static = node
            .input
            .iter()
            .zip(&statics)
            .all(|(v, s)| v.is_empty() || s.is_some());
        if default_domain
            && all_static
            && !node.input.is_empty()
            && let Some(result) = fold::eval(op_type, &attrs, &statics, self.opset)
        {
            let outs = result.map_err(node_err)?;
            for (name, t) in node.output.iter().zip(outs) {
                self.folded.insert(name.clone(), t);
            }
            return Ok(());
        }
        if default_domain
            && op_type == "Shape"
            && let Some(s) = node.input.first().and_then(|v| self.shapes.get(v))
        {
            let r = s.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let start = clamp(attrs.int("start", 0));
            let end = clamp(attrs.int("end", r));
            let dims: Vec<i64> = s[start..end.max(start)].iter().map(|&d| d as i64).collect();
            self.folded.insert(
                node.output[0].clone(),
                HostTensor::i64(vec![dims.len()], dims),
            );
            return Ok(());
        }

        // A run-time node.
        let inputs: Vec<InputRef> = node
            .input
            .iter()
            .zip(&statics)
            .map(|(v, s)| InputRef {
                name: v,
                constant: *s,
                shape: s
                    .map(|t| t.shape.as_slice())
                    .or_else(|| self.shapes.get(v).map(Vec::as_slice)),
            })
            .collect();
        let ctx = Ctx {
            node,
            attrs: Attrs::of(node),
            opset: self.opset,
            inputs,
            n_outputs: node.output.len(),
        };
        let lowered = if !default_domain {
            Err(format!("it belongs to the custom domain '{}'", node.domain))
        } else {
            match ops::importer(op_type) {
                None => Err("Graft has no implementation of this op".to_string()),
                Some(import) => import(&ctx).and_then(|l| {
                    ctx.only_outputs(l.outputs, &|v| self.consumed.contains(v))
                        .map(|()| l)
                }),
            }
        };
        let (mut op, kept_inputs, n_out) = match lowered {
            Ok(l) => (l.op, l.inputs, l.outputs),
            Err(reason) => (
                Op::Unsupported {
                    op_type: op_type.to_owned(),
                    domain: node.domain.clone(),
                    reason,
                    attributes: attrs.summary(),
                },
                node.input.to_vec(),
                node.output.len(),
            ),
        };
        let outputs: Vec<String> = node.output.iter().take(n_out).cloned().collect();

        // A file exported with a fixed batch bakes it into Reshape targets ([1, 58, 2, 28, 28]);
        // where the reshaped value's first axis is the batch, the entry becomes "copy the
        // batch" (0) so that any batch size runs. Converters (paddle2onnx) write batch-1
        // targets even into files whose batch is free ([1, C, 1, 1] in SE blocks): there the
        // 1 is taken for the batch only when the rest of the target holds exactly one
        // sample's values, so that it cannot mean anything else.
        let batch_in = kept_inputs
            .first()
            .is_some_and(|v| self.batch_axis.contains(v));
        let per_sample = kept_inputs
            .first()
            .and_then(|v| self.shapes.get(v))
            .and_then(|s| s.get(1..))
            .map(|rest| rest.iter().product::<usize>() as i64);
        if let (
            true,
            Op::Reshape {
                shape,
                allowzero: false,
            },
        ) = (batch_in && self.free_batch, &mut op)
        {
            let rest = shape.get(1..).unwrap_or_default();
            let baked = match self.file_batch {
                Some(fb) => shape.first() == Some(&(fb as i64)),
                None => {
                    shape.first() == Some(&1)
                        && rest.iter().all(|&d| d > 0)
                        && per_sample == Some(rest.iter().product())
                }
            };
            if baked {
                shape[0] = 0;
            }
        }
        // A Reshape whose batch entry came from a Shape chain keeps the batch first too.
        let reshape_keeps =
            matches!(&op, Op::Reshape { shape, .. } if shape.first() == Some(&(self.batch as i64)));
        if batch_in && (op.keeps_batch_axis() || reshape_keeps) {
            self.batch_axis.extend(outputs.iter().cloned());
        }

        // Shapes of the outputs, for the importers downstream.
        let in_shapes: Vec<Option<&[usize]>> = kept_inputs
            .iter()
            .map(|v| {
                if v.is_empty() {
                    None
                } else {
                    self.constant(v)
                        .map(|t| t.shape.as_slice())
                        .or_else(|| self.shapes.get(v).map(Vec::as_slice))
                }
            })
            .collect();
        let all_known = kept_inputs
            .iter()
            .zip(&in_shapes)
            .all(|(v, s)| v.is_empty() || s.is_some());
        if all_known && let Ok(out_shapes) = op.infer_shapes(&in_shapes, outputs.len()) {
            for (o, s) in outputs.iter().zip(out_shapes) {
                self.shapes.insert(o.clone(), s);
            }
        }
        for v in &kept_inputs {
            if let Some(t) = self.constant(v) {
                self.used_constants.insert(v.clone(), t.clone());
            }
        }
        self.nodes.push(Node::new(name, op, kept_inputs, outputs));
        Ok(())
    }
}

/// The value of a `Constant` node, whichever attribute holds it.
fn constant_value(attrs: &Attrs) -> Result<HostTensor, String> {
    if let Some(t) = attrs.tensor("value") {
        return t;
    }
    if attrs.has("value_float") {
        return Ok(HostTensor::f32(
            vec![],
            vec![attrs.float("value_float", 0.0)],
        ));
    }
    if let Some(v) = attrs.floats("value_floats") {
        return Ok(HostTensor::f32(vec![v.len()], v));
    }
    if attrs.has("value_int") {
        return Ok(HostTensor::i64(vec![], vec![attrs.int("value_int", 0)]));
    }
    if let Some(v) = attrs.ints("value_ints") {
        return Ok(HostTensor::i64(vec![v.len()], v));
    }
    Err("a Constant without a value Graft reads".into())
}

/// Merges the lowerings at batch 1 and 2 into batch-free ops.
fn reconcile(one: Vec<Node>, two: Vec<Node>) -> Result<Vec<Node>, ImportError> {
    let mut nodes = Vec::with_capacity(one.len());
    for (mut a, b) in one.into_iter().zip(two) {
        if a.op != b.op {
            a.op = reconcile_op(&a.op, &b.op).ok_or_else(|| ImportError::BatchDependent {
                node: a.name.clone(),
                what: format!("its {} parameters", a.op.onnx_type()),
            })?;
        }
        nodes.push(a);
    }
    Ok(nodes)
}

fn reconcile_op(a: &Op, b: &Op) -> Option<Op> {
    match (a, b) {
        (
            Op::Reshape {
                shape: s1,
                allowzero,
            },
            Op::Reshape { shape: s2, .. },
        ) if s1.len() == s2.len() => {
            let differ: Vec<usize> = (0..s1.len()).filter(|&i| s1[i] != s2[i]).collect();
            let [i] = differ.as_slice() else { return None };
            // The entry that follows the batch: copy dimension 0, or infer it.
            let mut shape = s1.clone();
            shape[*i] = if *i == 0 && !allowzero {
                0
            } else if !s1.contains(&-1) {
                -1
            } else {
                return None;
            };
            Some(Op::Reshape {
                shape,
                allowzero: *allowzero,
            })
        }
        (Op::Expand { shape: s1 }, Op::Expand { shape: s2 }) if s1.len() == s2.len() => {
            // Expanding to the batch size is expanding to the input's own size.
            let shape = s1
                .iter()
                .zip(s2)
                .map(|(&p, &q)| if p == q { p } else { 1 })
                .collect();
            Some(Op::Expand { shape })
        }
        (
            Op::Slice {
                starts,
                ends: e1,
                axes,
                steps,
            },
            Op::Slice {
                starts: s2,
                ends: e2,
                ..
            },
        ) if starts == s2 && e1.len() == e2.len() => {
            // An end at the batch size is "to the end".
            let ends = e1
                .iter()
                .zip(e2)
                .map(|(&p, &q)| if p == q { p } else { i64::MAX })
                .collect();
            Some(Op::Slice {
                starts: starts.clone(),
                ends,
                axes: axes.clone(),
                steps: steps.clone(),
            })
        }
        _ => None,
    }
}

fn metadata(model: &ModelProto, opset: i64) -> Metadata {
    let mut meta = Metadata {
        producer: format!("{} {}", model.producer_name, model.producer_version)
            .trim()
            .to_owned(),
        opset,
        doc: model.doc_string.clone(),
        ..Metadata::default()
    };
    for prop in &model.metadata_props {
        match prop.key.as_str() {
            LABELS_KEY => match serde_json::from_str::<Vec<String>>(&prop.value) {
                Ok(labels) => meta.labels = labels,
                Err(_) => meta.extra.push((prop.key.clone(), prop.value.clone())),
            },
            PREPROCESS_KEY => match serde_json::from_str::<Preprocess>(&prop.value) {
                Ok(p) => meta.preprocess = Some(p),
                Err(_) => meta.extra.push((prop.key.clone(), prop.value.clone())),
            },
            _ => meta.extra.push((prop.key.clone(), prop.value.clone())),
        }
    }
    meta
}

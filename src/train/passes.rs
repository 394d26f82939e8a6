//! Passes over the data: where batches come from (decoded images or cached features), the
//! seeded epoch order, and the inference pass that validation and the final evaluation share.

use super::cache::Features;
use super::metrics::{Accumulator, Evaluation, argmax, softmax};
use super::session::Reporter;
use crate::data::folder::Sample;
use crate::data::loader::{Framed, Transform, spawn_batches};
use crate::detect::evaluate::{Collector, DetectionEvaluation};
use crate::detect::loss::{LossWeights, loss};
use crate::detect::yolo::{image_maps, targets};
use crate::engine::{Mode, Model, Params, Value};
use crate::graph::edit::DetectionSpec;
use burn::module::Module;
use burn::tensor::Device;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Where batches come from.
pub(super) enum Source {
    /// Decoded (and augmented) images every epoch.
    Images {
        samples: Arc<Vec<Sample>>,
        transform: Arc<Transform>,
    },
    /// Activations at the cut, computed once.
    Cached(Features),
}

impl Source {
    pub(super) fn len(&self) -> usize {
        match self {
            Source::Images { samples, .. } => samples.len(),
            Source::Cached(f) => f.len(),
        }
    }
}

/// A batch ready for the model: values, labels, boxes as framed (box datasets), and the
/// source indices.
pub(super) struct Ready {
    pub(super) data: Vec<f32>,
    pub(super) labels: Vec<usize>,
    pub(super) framed: Vec<Framed>,
    pub(super) indices: Vec<usize>,
}

/// How batches are made: their size, the augmentation seed, and where to report skipped files.
pub(super) struct Feeder<'a> {
    pub(super) batch_size: usize,
    pub(super) seed: u64,
    pub(super) cancel: Arc<AtomicBool>,
    pub(super) reporter: &'a Reporter,
}

/// Calls `f` for each batch of `order` from `source`, in order, until `f` returns false.
pub(super) fn for_each_batch(
    source: &Source,
    order: &[usize],
    epoch: usize,
    feed: &Feeder,
    mut f: impl FnMut(Ready) -> Result<bool, String>,
) -> Result<(), String> {
    let (batch_size, seed, cancel, reporter) =
        (feed.batch_size, feed.seed, &feed.cancel, feed.reporter);
    match source {
        Source::Cached(feat) => {
            for chunk in order.chunks(batch_size) {
                let data = feat.gather(chunk)?;
                let labels = chunk.iter().map(|&i| feat.labels[i]).collect();
                let framed = if feat.framed.is_empty() {
                    Vec::new()
                } else {
                    chunk.iter().map(|&i| feat.framed[i].clone()).collect()
                };
                if !f(Ready {
                    data,
                    labels,
                    framed,
                    indices: chunk.iter().map(|&i| feat.kept[i]).collect(),
                })? {
                    break;
                }
            }
        }
        Source::Images { samples, transform } => {
            let rx = spawn_batches(
                samples.clone(),
                order.to_vec(),
                batch_size,
                transform.clone(),
                seed,
                epoch,
                3,
                cancel.clone(),
            )?;
            for b in rx {
                for s in &b.failed {
                    reporter.message(format!("skipped {}: {}", s.path.display(), s.reason));
                }
                if b.indices.is_empty() {
                    continue;
                }
                if !f(Ready {
                    data: b.data,
                    labels: b.labels,
                    framed: b.framed,
                    indices: b.indices,
                })? {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The epoch's order of sample positions: a seeded shuffle, the same on every run.
pub(super) fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            seed.wrapping_add(epoch as u64)
                .wrapping_mul(0x2545_F491_4F6C_DD1D),
        ));
    }
    order
}

pub(super) fn to_input(data: Vec<f32>, n: usize, dims: &[usize], device: &Device) -> Value {
    let mut shape = vec![n];
    shape.extend_from_slice(dims);
    Value::from_data(&shape, data, device)
}

/// Runs the model in inference mode (no gradient graph) over every batch of a source, in
/// order, handing each batch (its labels, boxes, indices; not its data) and the outputs to
/// `each`. Validation and the final evaluation of both tasks go through here.
fn forward_batches(
    model: &Model,
    params: &Params,
    source: &Source,
    feed: &Feeder,
    mut each: impl FnMut(&Ready, Vec<Value>) -> Result<(), String>,
) -> Result<(), String> {
    let order: Vec<usize> = (0..source.len()).collect();
    let frozen = params.clone().no_grad();
    let device = model.device().clone();
    let dims = model.plan.input_dims().to_vec();
    for_each_batch(source, &order, 0, feed, |mut b| {
        let k = b.indices.len();
        let x = to_input(std::mem::take(&mut b.data), k, &dims, &device);
        let out = model
            .plan
            .forward(&frozen, x, Mode::Inference)
            .map_err(|e| e.to_string())?;
        if out.is_empty() {
            return Err("the network gave no output".into());
        }
        each(&b, out)?;
        Ok(true)
    })
}

/// Each item's logits, with its label and sample index (a classifier's passes).
pub(super) fn inference_pass(
    model: &Model,
    params: &Params,
    source: &Source,
    feed: &Feeder,
    mut each: impl FnMut(&[f32], usize, usize),
) -> Result<(), String> {
    forward_batches(model, params, source, feed, |b, out| {
        let logits = out[0].to_vec()?;
        let c = logits.len() / b.indices.len().max(1);
        for (j, (&label, &idx)) in b.labels.iter().zip(&b.indices).enumerate() {
            each(&logits[j * c..(j + 1) * c], label, idx);
        }
        Ok(())
    })
}

/// The detection loss of a batch's prediction maps (the network's outputs, one per scale)
/// against its framed boxes (training steps and validation alike).
pub(super) fn framed_loss(
    outputs: Vec<Value>,
    framed: &[Framed],
    spec: &DetectionSpec,
    weights: &LossWeights,
    device: &burn::tensor::Device,
) -> Result<crate::detect::loss::Loss, String> {
    let preds = outputs
        .into_iter()
        .map(Value::into_r4)
        .collect::<Result<Vec<_>, _>>()?;
    let sizes: Vec<(usize, usize)> = preds
        .iter()
        .map(|p| {
            let [_, _, h, w] = p.dims();
            (h, w)
        })
        .collect();
    let wanted: Vec<_> = framed
        .iter()
        .map(|f| targets(&f.objects, spec, &sizes))
        .collect();
    loss(preds, &wanted, spec, weights, device)
}

/// Mean cross-entropy and accuracy over a source.
pub(super) fn validate(
    model: &Model,
    params: &Params,
    source: &Source,
    feed: &Feeder,
) -> Result<(f64, f64), String> {
    let (mut loss_sum, mut correct, mut n) = (0.0f64, 0usize, 0usize);
    inference_pass(model, params, source, feed, |logits, label, _| {
        loss_sum += cross_entropy_of(logits, label);
        correct += usize::from(argmax(logits).0 == label);
        n += 1;
    })?;
    Ok((loss_sum / n.max(1) as f64, correct as f64 / n.max(1) as f64))
}

/// −log softmax(logits)[label], computed stably in f64.
pub(super) fn cross_entropy_of(logits: &[f32], label: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    let picked = logits.get(label).copied().unwrap_or(f32::NEG_INFINITY) as f64;
    max + sum.ln() - picked
}

/// Per-image predictions of the trained network on a source.
pub(super) fn evaluate_source(
    model: &Model,
    params: &Params,
    source: &Source,
    samples: &[Sample],
    classes: &[String],
    feed: &Feeder,
) -> Result<Evaluation, String> {
    let mut acc = Accumulator::new(classes.to_vec());
    inference_pass(model, params, source, feed, |logits, label, idx| {
        acc.add(&softmax(logits), label, samples[idx].path.clone());
    })?;
    Ok(acc.finish())
}

/// A detector over every item of a source, in inference mode: each image's map decoded and
/// matched against its sample's boxes, and the detection loss per image (validation's loss).
pub(super) fn detection_pass(
    model: &Model,
    params: &Params,
    source: &Source,
    samples: &[Sample],
    spec: &DetectionSpec,
    weights: &LossWeights,
    feed: &Feeder,
) -> Result<DetectionEvaluation, String> {
    let device = model.device().clone();
    let mut collector = Collector::new(spec.clone());
    forward_batches(model, params, source, feed, |b, maps| {
        let k = b.indices.len();
        let host = crate::engine::to_host(&maps)?;
        let l = framed_loss(maps, &b.framed, spec, weights, &device)?;
        let total = crate::engine::params::to_vec(&l.total)?[0] as f64;
        collector.add_loss(total * k as f64, k);
        for (j, (f, &idx)) in b.framed.iter().zip(&b.indices).enumerate() {
            let s = &samples[idx];
            collector.add(&image_maps(&host, j)?, f, s.path.clone(), &s.objects);
        }
        Ok(())
    })?;
    Ok(collector.finish())
}

//! The training loop behind [`Session`](super::Session).

use super::cache::{self, Features};
use super::checkpoint::{self, Checkpoint};
use super::events::{History, IterationRecord, Outcome, StopReason, TrainEvent, ValidationRecord};
use super::metrics::{Accumulator, Evaluation, argmax, softmax};
use super::optim::{GroupedOptimizer, Groups};
use super::session::{Control, Reporter, TrainJob};
use crate::data::Dataset;
use crate::data::folder::Sample;
use crate::data::loader::{Transform, spawn_batches};
use crate::engine::{Mode, Model, Params, Value, select_device};
use crate::graph::analyze::analyze;
use crate::graph::{Network, Op};
use crate::weights::Store;
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Where batches come from.
enum Source {
    /// Decoded (and augmented) images every epoch.
    Images {
        samples: Arc<Vec<Sample>>,
        transform: Arc<Transform>,
    },
    /// Activations at the cut, computed once.
    Cached(Features),
}

impl Source {
    fn len(&self) -> usize {
        match self {
            Source::Images { samples, .. } => samples.len(),
            Source::Cached(f) => f.len(),
        }
    }
}

/// A batch ready for the model: values, labels, and the source indices.
struct Ready {
    data: Vec<f32>,
    labels: Vec<usize>,
    indices: Vec<usize>,
}

/// How batches are made: their size, the augmentation seed, and where to report skipped files.
struct Feeder<'a> {
    batch_size: usize,
    seed: u64,
    cancel: Arc<AtomicBool>,
    reporter: &'a Reporter,
}

/// Calls `f` for each batch of `order` from `source`, in order, until `f` returns false.
fn for_each_batch(
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
            let per = feat.data.len() / feat.len().max(1);
            for chunk in order.chunks(batch_size) {
                let mut data = Vec::with_capacity(chunk.len() * per);
                for &i in chunk {
                    data.extend_from_slice(&feat.data[i * per..(i + 1) * per]);
                }
                let labels = chunk.iter().map(|&i| feat.labels[i]).collect();
                if !f(Ready {
                    data,
                    labels,
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
fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            seed.wrapping_add(epoch as u64)
                .wrapping_mul(0x2545_F491_4F6C_DD1D),
        ));
    }
    order
}

/// The network the loss sees: the output without its final softmax.
fn logits_network(net: &Network) -> Network {
    let mut net = net.clone();
    if let Some(out) = net.outputs.first().cloned()
        && let Some(i) = net.producer(&out)
        && matches!(net.nodes[i].op, Op::Softmax { .. })
    {
        net.outputs = vec![net.nodes[i].inputs[0].clone()];
        net.nodes.remove(i);
    }
    net
}

/// Mean cross-entropy of logits `[B, C]` against labels, and the batch accuracy.
fn cross_entropy(
    logits: Tensor<2>,
    labels: &[usize],
    device: &Device,
) -> Result<(Tensor<1>, f64), String> {
    let [b, c] = logits.dims();
    let mut onehot = vec![0.0f32; b * c];
    for (i, &l) in labels.iter().enumerate() {
        if l >= c {
            return Err(format!("label {l} but the network has {c} outputs"));
        }
        onehot[i * c + l] = 1.0;
    }
    let host = crate::engine::params::to_vec(&logits.clone().detach())?;
    let correct = (0..b)
        .filter(|&i| argmax(&host[i * c..(i + 1) * c]).0 == labels[i])
        .count();
    let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [b, c]), device);
    let logp = burn::tensor::activation::log_softmax(logits, 1);
    let loss = logp.mul(onehot).sum().neg().div_scalar(b as f32);
    Ok((loss, correct as f64 / b as f64))
}

fn to_input(data: Vec<f32>, n: usize, dims: &[usize], device: &Device) -> Value {
    let mut shape = vec![n];
    shape.extend_from_slice(dims);
    Value::from_data(&shape, data, device)
}

/// Loss and accuracy over a source, in inference mode, without building a gradient graph.
fn validate(
    model: &Model,
    params: &Params,
    source: &Source,
    feed: &Feeder,
) -> Result<(f64, f64), String> {
    let order: Vec<usize> = (0..source.len()).collect();
    let frozen = params.clone().no_grad();
    let device = model.device().clone();
    let dims = model.plan.input_dims().to_vec();
    let (mut loss_sum, mut correct, mut n) = (0.0, 0.0, 0usize);
    for_each_batch(source, &order, 0, feed, |b| {
        let k = b.labels.len();
        let out = model
            .plan
            .forward(
                &frozen,
                to_input(b.data, k, &dims, &device),
                Mode::Inference,
            )
            .map_err(|e| e.to_string())?;
        let (loss, acc) = cross_entropy(out[0].clone().into_r2()?, &b.labels, &device)?;
        loss_sum += crate::engine::params::to_vec(&loss)?[0] as f64 * k as f64;
        correct += acc * k as f64;
        n += k;
        Ok(true)
    })?;
    Ok((loss_sum / n.max(1) as f64, correct / n.max(1) as f64))
}

/// Per-image predictions of the trained network on a source.
fn evaluate_source(
    model: &Model,
    params: &Params,
    source: &Source,
    samples: &[Sample],
    classes: &[String],
    feed: &Feeder,
) -> Result<Evaluation, String> {
    let order: Vec<usize> = (0..source.len()).collect();
    let frozen = params.clone().no_grad();
    let device = model.device().clone();
    let dims = model.plan.input_dims().to_vec();
    let mut acc = Accumulator::new(classes.to_vec());
    for_each_batch(source, &order, 0, feed, |b| {
        let k = b.labels.len();
        let out = model
            .plan
            .forward(
                &frozen,
                to_input(b.data, k, &dims, &device),
                Mode::Inference,
            )
            .map_err(|e| e.to_string())?;
        let logits = out[0].to_vec()?;
        let c = logits.len() / k.max(1);
        for (j, (&label, &idx)) in b.labels.iter().zip(&b.indices).enumerate() {
            acc.add(
                &softmax(&logits[j * c..(j + 1) * c]),
                label,
                samples[idx].path.clone(),
            );
        }
        Ok(true)
    })?;
    Ok(acc.finish())
}

pub(crate) fn run(
    job: TrainJob,
    reporter: &Reporter,
    control: &Control,
) -> Result<Outcome, String> {
    let TrainJob {
        network,
        mut store,
        train,
        validation,
        options,
        checkpoint: ckpt_path,
        resume,
    } = job;
    options.validate()?;
    train.validate().map_err(|e| e.to_string())?;
    if let Some(v) = &validation {
        train.same_classes(v).map_err(|e| e.to_string())?;
    }
    let analysis = analyze(&network, &store);
    if let Some(e) = analysis.errors().next() {
        return Err(format!("the network is not valid: {e}"));
    }
    let classes = train.classes.clone();
    let logits_net = logits_network(&network);
    let (shapes, _) = crate::graph::shape::infer(&logits_net, &store, 1);
    let out_len = logits_net
        .outputs
        .first()
        .and_then(|o| shapes.get(o))
        .map(|s| s.iter().skip(1).product::<usize>());
    if out_len != Some(classes.len()) {
        return Err(format!(
            "the network has {} outputs but the dataset has {} classes; adapt the head to the dataset first",
            out_len.unwrap_or(0),
            classes.len()
        ));
    }
    let [channels, h, w] = network
        .input_chw()
        .ok_or("training needs an N×C×H×W image network")?;
    if h != w || (channels != 1 && channels != 3) {
        return Err(format!(
            "the network takes {channels}×{h}×{w}; Graft trains on square 1- or 3-channel images"
        ));
    }
    let mut preprocess = network.preprocess();
    if preprocess.crop != h {
        preprocess.resize = preprocess.resize * h / preprocess.crop.max(1);
        preprocess.crop = h;
    }

    let dev = select_device(options.device)?;
    if let Some(reason) = &dev.fallback_reason {
        reporter.message(format!("Training on the CPU: {reason}."));
    }
    dev.device.seed(options.seed);
    let train_device = dev.device.clone().autodiff();
    let cancel = Arc::new(AtomicBool::new(false));
    let eval_transform = Arc::new(Transform {
        preprocess: preprocess.clone(),
        channels,
        augment: None,
    });
    let augmenting = options.augmentation.as_ref().is_some_and(|a| a.is_active());
    let train_transform = Arc::new(Transform {
        preprocess,
        channels,
        augment: options.augmentation.clone(),
    });

    // The frozen prefix, computed once.
    let cut = if options.cache_features && !augmenting {
        cache::find_cut(&logits_net, &store)
    } else {
        None
    };
    let cut = cut.and_then(|c| {
        let dims: Vec<usize> = shapes.get(&c.value)?.iter().skip(1).copied().collect();
        let images = train.samples.len() + validation.as_ref().map_or(0, |v| v.samples.len());
        let bytes = dims.iter().product::<usize>() * 4 * images;
        if bytes > cache::MAX_CACHE_BYTES {
            reporter.message(format!(
                "Not caching the frozen layers: {} MB of activations would not fit.",
                bytes >> 20
            ));
            return None;
        }
        Some((c, dims))
    });
    let train_samples = Arc::new(train.samples.clone());
    let val_samples = Arc::new(
        validation
            .as_ref()
            .map(|v| v.samples.clone())
            .unwrap_or_default(),
    );
    let (train_net, train_src, val_src) = match &cut {
        Some((c, dims)) => {
            let (prefix, prefix_store) = cache::prefix_network(&logits_net, &store, c);
            let prefix_model =
                Model::build(&prefix, &prefix_store, &dev.device).map_err(|e| e.to_string())?;
            let stop = Arc::new(AtomicBool::new(false));
            let compute = |samples: &Arc<Vec<Sample>>, stage: &str| {
                cache::compute(
                    &prefix_model,
                    samples.clone(),
                    eval_transform.clone(),
                    32,
                    stop.clone(),
                    |done, total| {
                        reporter.send(TrainEvent::Progress {
                            stage: stage.into(),
                            done,
                            total,
                        });
                        if control.is_stopped() {
                            stop.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    },
                )
            };
            let t = compute(
                &train_samples,
                "Computing frozen-layer features (training images)",
            )?;
            let v = compute(
                &val_samples,
                "Computing frozen-layer features (validation images)",
            )?;
            for s in t.failed.iter().chain(&v.failed) {
                reporter.message(format!("skipped {}: {}", s.path.display(), s.reason));
            }
            (
                cache::head_network(&logits_net, c, dims),
                Source::Cached(t),
                Source::Cached(v),
            )
        }
        None => (
            logits_net.clone(),
            Source::Images {
                samples: train_samples.clone(),
                transform: train_transform.clone(),
            },
            Source::Images {
                samples: val_samples.clone(),
                transform: eval_transform.clone(),
            },
        ),
    };
    if train_src.len() == 0 {
        return Err("no training image could be read".into());
    }
    let has_val = val_src.len() > 0;

    // Resume.
    let fingerprint = checkpoint::fingerprint(&[
        &network
            .nodes
            .iter()
            .map(|n| format!("{}:{}:{}", n.name, n.frozen, n.lr_factor))
            .collect::<Vec<_>>()
            .join(","),
        &train
            .samples
            .iter()
            .map(|s| s.path.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(","),
        &format!(
            "{:?}{}{:?}{}",
            options.solver, options.batch_size, options.augmentation, options.seed
        ),
    ]);
    let mut start_epoch = 0;
    let mut iteration = 0;
    let mut history = History::default();
    let mut best_val_loss: Option<f64> = None;
    let mut since_best = 0;
    let mut best_store: Option<Store> = None;
    let mut optimizer_bytes = None;
    if resume && let Some(path) = ckpt_path.as_ref().filter(|p| p.exists()) {
        let c = checkpoint::load(path)?;
        if c.fingerprint != fingerprint {
            return Err(format!(
                "{} belongs to another network, dataset or options; remove it or train without --resume",
                path.display()
            ));
        }
        for (name, t) in c.store.iter() {
            store.insert(name.clone(), t.clone());
        }
        start_epoch = c.epochs_done;
        iteration = c.iteration;
        history = c.history;
        best_val_loss = c.best_val_loss;
        since_best = c.validations_since_best;
        best_store = c.best;
        optimizer_bytes = Some(c.optimizer);
        reporter.message(format!(
            "Resuming after epoch {start_epoch} from {}.",
            path.display()
        ));
    }

    let mut model = Model::build(&train_net, &store, &train_device).map_err(|e| e.to_string())?;
    let groups = Groups::from_plan(&model);
    let mut optim = GroupedOptimizer::new(&options, groups);
    if let Some(bytes) = optimizer_bytes {
        optim.load(bytes)?;
    }
    let mut best_params: Option<Params> = match &best_store {
        Some(b) => {
            let mut s = store.clone();
            for (k, t) in b.iter() {
                s.insert(k.clone(), t.clone());
            }
            Some(
                Model::build(&train_net, &s, &train_device)
                    .map_err(|e| e.to_string())?
                    .params,
            )
        }
        None => None,
    };

    let per_epoch = train_src.len().div_ceil(options.batch_size);
    let train_feed = Feeder {
        batch_size: options.batch_size,
        seed: options.seed,
        cancel: cancel.clone(),
        reporter,
    };
    let eval_feed = Feeder {
        batch_size: options.batch_size,
        seed: 0,
        cancel: cancel.clone(),
        reporter,
    };
    reporter.send(TrainEvent::Started {
        device: dev.description.clone(),
        train_images: train_src.len(),
        val_images: val_src.len(),
        iterations_per_epoch: per_epoch,
        epochs: options.epochs,
        cached_nodes: cut.as_ref().map_or(0, |(c, _)| c.last + 1),
    });
    let dims = model.plan.input_dims().to_vec();
    let mut reason = StopReason::Completed;
    let (mut images_seen, mut train_secs) = (0usize, 0.0f64);
    let (mut last_loss, mut last_acc) = (f64::NAN, f64::NAN);

    'epochs: for epoch in start_epoch..options.epochs {
        let epoch_start = Instant::now();
        let order = epoch_order(train_src.len(), options.seed, epoch, options.shuffle);
        let mut in_epoch = 0usize;
        let mut stop_now = false;
        let mut validate_now =
            |model: &Model, it: usize, history: &mut History| -> Result<bool, String> {
                let (loss, accuracy) = validate(model, &model.params, &val_src, &eval_feed)?;
                let rec = ValidationRecord {
                    epoch: epoch + 1,
                    iteration: it,
                    loss,
                    accuracy,
                };
                history.validations.push(rec.clone());
                reporter.send(TrainEvent::Validation(rec));
                let improved = best_val_loss.is_none_or(|b| loss < b);
                if improved {
                    best_val_loss = Some(loss);
                    since_best = 0;
                    best_params = Some(model.params.clone());
                } else {
                    since_best += 1;
                }
                Ok(options.patience.is_some_and(|p| since_best >= p))
            };
        for_each_batch(&train_src, &order, epoch, &train_feed, |b| {
            if control.is_paused() {
                reporter.send(TrainEvent::Paused);
                let stopped = control.wait_if_paused();
                reporter.send(TrainEvent::Resumed);
                if stopped {
                    stop_now = true;
                    return Ok(false);
                }
            }
            if control.is_stopped() {
                stop_now = true;
                return Ok(false);
            }
            let t = Instant::now();
            let k = b.labels.len();
            let x = to_input(b.data, k, &dims, &train_device);
            let out = model
                .plan
                .forward(&model.params, x, Mode::Train)
                .map_err(|e| e.to_string())?;
            let (loss, accuracy) =
                cross_entropy(out[0].clone().into_r2()?, &b.labels, &train_device)?;
            let loss_value = crate::engine::params::to_vec(&loss.clone().detach())?[0] as f64;
            if !loss_value.is_finite() {
                return Err(format!(
                    "the loss became {loss_value} at iteration {}; lower the learning rate",
                    iteration + 1
                ));
            }
            let grads = loss.backward();
            in_epoch += 1;
            let lr = options.learning_rate_at(epoch as f64 + in_epoch as f64 / per_epoch as f64);
            let params = std::mem::replace(&mut model.params, Params { layers: Vec::new() });
            model.params = optim.step(lr, params, grads);
            let secs = t.elapsed().as_secs_f64();
            images_seen += k;
            train_secs += secs;
            iteration += 1;
            (last_loss, last_acc) = (loss_value, accuracy);
            let rec = IterationRecord {
                epoch: epoch + 1,
                iteration,
                loss: loss_value,
                accuracy,
                learning_rate: lr,
                images_per_sec: k as f64 / secs.max(1e-9),
            };
            history.iterations.push(rec.clone());
            reporter.send(TrainEvent::Iteration(rec));
            if has_val
                && options.validation_frequency > 0
                && iteration % options.validation_frequency == 0
                && validate_now(&model, iteration, &mut history)?
            {
                reason = StopReason::EarlyStopped;
                stop_now = true;
                return Ok(false);
            }
            Ok(true)
        })?;
        if control.is_stopped() || (stop_now && reason != StopReason::EarlyStopped) {
            reason = StopReason::Stopped;
            break 'epochs;
        }
        if stop_now {
            break 'epochs;
        }
        if has_val
            && options.validation_frequency == 0
            && validate_now(&model, iteration, &mut history)?
        {
            reason = StopReason::EarlyStopped;
        }
        let secs = epoch_start.elapsed().as_secs_f64();
        history.epoch_seconds.push(secs);
        let mean = history.epoch_seconds.iter().sum::<f64>() / history.epoch_seconds.len() as f64;
        reporter.send(TrainEvent::EpochEnd {
            epoch: epoch + 1,
            seconds: secs,
            eta_seconds: mean * (options.epochs - epoch - 1) as f64,
        });
        if let Some(path) = &ckpt_path {
            let mut current = store.clone();
            model.write_back(&mut current).map_err(|e| e.to_string())?;
            let best = match &best_params {
                Some(p) => {
                    let mut b = store.clone();
                    model
                        .plan
                        .write_back(p, &mut b)
                        .map_err(|e| e.to_string())?;
                    Some(trained_only(&b, &model))
                }
                None => None,
            };
            let c = Checkpoint {
                fingerprint: fingerprint.clone(),
                epochs_done: epoch + 1,
                iteration,
                history: history.clone(),
                store: trained_only(&current, &model),
                best,
                best_val_loss,
                validations_since_best: since_best,
                optimizer: optim.save()?,
            };
            checkpoint::save(path, &c)?;
            reporter.send(TrainEvent::Checkpoint {
                path: path.clone(),
                epoch: epoch + 1,
            });
        }
        if reason == StopReason::EarlyStopped {
            reporter.message(format!(
                "Stopped early: validation loss did not improve for {} validations.",
                since_best
            ));
            break;
        }
    }

    // The weights to keep: the best validation point, else the last.
    let final_params = best_params.unwrap_or_else(|| model.params.clone());
    model
        .plan
        .write_back(&final_params, &mut store)
        .map_err(|e| e.to_string())?;
    let evaluation = if has_val {
        let eval_samples = validation
            .as_ref()
            .map(|v| v.samples.as_slice())
            .unwrap_or(&[]);
        Some(evaluate_source(
            &model,
            &final_params,
            &val_src,
            eval_samples,
            &classes,
            &eval_feed,
        )?)
    } else {
        None
    };
    let mut network = network;
    network.metadata.labels = classes;
    Ok(Outcome {
        network,
        store,
        history,
        reason,
        evaluation,
        final_train_loss: last_loss,
        final_train_accuracy: last_acc,
        images_per_sec: images_seen as f64 / train_secs.max(1e-9),
        cached_prefix: cut.is_some(),
    })
}

/// The tensors a model's layers hold (what training changes).
fn trained_only(store: &Store, model: &Model) -> Store {
    let names = model.plan.bound_tensors();
    let mut out = Store::new();
    for n in names {
        if let Some(t) = store.get(&n) {
            out.insert(n, t.clone());
        }
    }
    out
}

/// Scans and validates a dataset folder (for callers that start from a path).
pub fn load_dataset(root: &std::path::Path) -> Result<Dataset, String> {
    let never = AtomicBool::new(false);
    let d = crate::data::scan(root, &|_, _| {}, &never).map_err(|e| e.to_string())?;
    d.validate().map_err(|e| e.to_string())?;
    Ok(d)
}

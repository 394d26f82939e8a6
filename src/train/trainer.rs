//! The training loop behind [`Session`](super::Session).

use super::cache::{self, Features};
use super::checkpoint::{self, Checkpoint};
use super::events::{History, IterationRecord, Outcome, StopReason, TrainEvent, ValidationRecord};
use super::metrics::{Accumulator, Evaluation, argmax, softmax};
use super::optim::{GroupedOptimizer, Groups};
use super::options::TrainingOptions;
use super::session::{Control, Reporter, TrainJob};
use crate::data::Dataset;
use crate::data::folder::Sample;
use crate::data::loader::{Transform, spawn_batches};
use crate::engine::{Mode, Model, Params, Value, select_device};
use crate::graph::Network;
use crate::graph::analyze::analyze;
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
    if net.ends_in_softmax()
        && let Some(i) = net.outputs.first().and_then(|o| net.producer(o))
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

/// Runs the model in inference mode (no gradient graph) over every item of a source, in
/// order, and hands each item's logits to `each` with its label and sample index. Validation
/// and the final evaluation both go through here.
fn inference_pass(
    model: &Model,
    params: &Params,
    source: &Source,
    feed: &Feeder,
    mut each: impl FnMut(&[f32], usize, usize),
) -> Result<(), String> {
    let order: Vec<usize> = (0..source.len()).collect();
    let frozen = params.clone().no_grad();
    let device = model.device().clone();
    let dims = model.plan.input_dims().to_vec();
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
            each(&logits[j * c..(j + 1) * c], label, idx);
        }
        Ok(true)
    })
}

/// Mean cross-entropy and accuracy over a source.
fn validate(
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
fn cross_entropy_of(logits: &[f32], label: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    let picked = logits.get(label).copied().unwrap_or(f32::NEG_INFINITY) as f64;
    max + sum.ln() - picked
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
    let mut acc = Accumulator::new(classes.to_vec());
    inference_pass(model, params, source, feed, |logits, label, idx| {
        acc.add(&softmax(logits), label, samples[idx].path.clone());
    })?;
    Ok(acc.finish())
}

/// What the run learns from its job before touching data: the network the loss sees, the
/// classes, the input framing and the device.
struct Prepared {
    logits_net: Network,
    shapes: crate::graph::shape::Shapes,
    classes: Vec<String>,
    preprocess: crate::graph::Preprocess,
    channels: usize,
    dev: crate::engine::DeviceInfo,
}

/// Checks the job (options, data, network, head size, input) and picks the device.
fn prepare(job: &TrainJob, reporter: &Reporter) -> Result<Prepared, String> {
    let TrainJob {
        network,
        store,
        train,
        validation,
        options,
        ..
    } = job;
    options.validate()?;
    train.validate().map_err(|e| e.to_string())?;
    if let Some(v) = validation {
        train.same_classes(v).map_err(|e| e.to_string())?;
    }
    let analysis = analyze(network, store);
    if let Some(e) = analysis.errors().next() {
        return Err(format!("the network is not valid: {e}"));
    }
    let classes = train.classes.clone();
    let logits_net = logits_network(network);
    let (shapes, _) = crate::graph::shape::infer(&logits_net, store, 1);
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
    let (preprocess, [channels, h, w]) = network.input_preprocess()?;
    if channels != 1 && channels != 3 {
        return Err(format!(
            "the network takes {channels}×{h}×{w}; Graft trains on 1- or 3-channel images"
        ));
    }
    let dev = select_device(options.device)?;
    if let Some(reason) = &dev.fallback_reason {
        reporter.message(format!("Training on the CPU: {reason}."));
    }
    dev.device.seed(options.seed);
    Ok(Prepared {
        logits_net,
        shapes,
        classes,
        preprocess,
        channels,
        dev,
    })
}

/// Where training and validation batches come from, and the network that trains on them.
struct Sources {
    /// The frozen prefix's cut, when its activations are cached.
    cut: Option<(cache::Cut, Vec<usize>)>,
    /// The whole logits network, or the head after the cut.
    train_net: Network,
    train: Source,
    val: Source,
}

/// Decides whether the frozen prefix is cached and, if so, computes its activations once.
fn build_sources(
    job: &TrainJob,
    p: &Prepared,
    reporter: &Reporter,
    control: &Control,
) -> Result<Sources, String> {
    let (options, store) = (&job.options, &job.store);
    let eval_transform = Arc::new(Transform {
        preprocess: p.preprocess.clone(),
        channels: p.channels,
        augment: None,
    });
    let augmenting = options.augmentation.as_ref().is_some_and(|a| a.is_active());
    let train_transform = Arc::new(Transform {
        preprocess: p.preprocess.clone(),
        channels: p.channels,
        augment: options.augmentation.clone(),
    });
    let cut = if options.cache_features && !augmenting {
        cache::find_cut(&p.logits_net, store)
    } else {
        None
    };
    let cut = cut.and_then(|c| {
        let dims: Vec<usize> = p.shapes.get(&c.value)?.iter().skip(1).copied().collect();
        let images =
            job.train.samples.len() + job.validation.as_ref().map_or(0, |v| v.samples.len());
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
    let train_samples = Arc::new(job.train.samples.clone());
    let val_samples = Arc::new(
        job.validation
            .as_ref()
            .map(|v| v.samples.clone())
            .unwrap_or_default(),
    );
    let Some((c, dims)) = &cut else {
        return Ok(Sources {
            train_net: p.logits_net.clone(),
            train: Source::Images {
                samples: train_samples,
                transform: train_transform,
            },
            val: Source::Images {
                samples: val_samples,
                transform: eval_transform,
            },
            cut,
        });
    };
    let (prefix, prefix_store) = cache::prefix_network(&p.logits_net, store, c);
    let prefix_model =
        Model::build(&prefix, &prefix_store, &p.dev.device).map_err(|e| e.to_string())?;
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
    Ok(Sources {
        train_net: cache::head_network(&p.logits_net, c, dims),
        train: Source::Cached(t),
        val: Source::Cached(v),
        cut,
    })
}

/// Identifies the network, dataset and options a checkpoint belongs to.
fn fingerprint(job: &TrainJob) -> String {
    let options = &job.options;
    checkpoint::fingerprint(&[
        &job.network
            .nodes
            .iter()
            .map(|n| format!("{}:{}:{}", n.name, n.frozen, n.lr_factor))
            .collect::<Vec<_>>()
            .join(","),
        &job.train
            .samples
            .iter()
            .map(|s| s.path.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(","),
        &format!(
            "{:?}{}{:?}{}",
            options.solver, options.batch_size, options.augmentation, options.seed
        ),
    ])
}

/// Where the run stands: fresh, or as a checkpoint left it.
#[derive(Default)]
struct Progress {
    start_epoch: usize,
    iteration: usize,
    history: History,
    best_val_loss: Option<f64>,
    since_best: usize,
    best_store: Option<Store>,
    optimizer: Option<Vec<u8>>,
}

/// Loads the checkpoint to resume from (its weights go into `store`), or starts fresh.
fn resume_from(
    job: &TrainJob,
    fingerprint: &str,
    store: &mut Store,
    reporter: &Reporter,
) -> Result<Progress, String> {
    let Some(path) = job.checkpoint.as_ref().filter(|p| job.resume && p.exists()) else {
        return Ok(Progress::default());
    };
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
    reporter.message(format!(
        "Resuming after epoch {} from {}.",
        c.epochs_done,
        path.display()
    ));
    Ok(Progress {
        start_epoch: c.epochs_done,
        iteration: c.iteration,
        history: c.history,
        best_val_loss: c.best_val_loss,
        since_best: c.validations_since_best,
        best_store: c.best,
        optimizer: Some(c.optimizer),
    })
}

pub(crate) fn run(
    job: TrainJob,
    reporter: &Reporter,
    control: &Control,
) -> Result<Outcome, String> {
    let prepared = prepare(&job, reporter)?;
    let sources = build_sources(&job, &prepared, reporter, control)?;
    if sources.train.len() == 0 {
        return Err("no training image could be read".into());
    }
    let fingerprint = fingerprint(&job);
    let mut store = job.store.clone();
    let resumed = resume_from(&job, &fingerprint, &mut store, reporter)?;
    let mut run = Run::new(
        &job,
        &prepared,
        &sources,
        store,
        resumed,
        fingerprint,
        reporter,
    )?;
    reporter.send(TrainEvent::Started {
        device: prepared.dev.description.clone(),
        train_images: sources.train.len(),
        val_images: sources.val.len(),
        iterations_per_epoch: run.per_epoch,
        epochs: job.options.epochs,
        cached_nodes: sources.cut.as_ref().map_or(0, |(c, _)| c.last + 1),
    });
    for epoch in run.progress.start_epoch..job.options.epochs {
        let end = run.epoch(epoch, control)?;
        if end == EpochEnd::Stopped {
            run.reason = StopReason::Stopped;
            break;
        }
        // An epoch cut short by early stopping leaves no checkpoint: the run is over.
        if end != EpochEnd::EarlyStoppedMidway {
            run.end_epoch(epoch)?;
        }
        if end != EpochEnd::Completed {
            run.reason = StopReason::EarlyStopped;
            reporter.message(format!(
                "Stopped early: validation loss did not improve for {} validations.",
                run.progress.since_best
            ));
            break;
        }
    }
    run.finish(prepared.classes, sources.cut.is_some())
}

/// How an epoch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EpochEnd {
    Completed,
    /// The user stopped the run.
    Stopped,
    /// A validation during the epoch said to stop.
    EarlyStoppedMidway,
    /// The validation at the epoch's end said to stop.
    EarlyStoppedAtEnd,
}

/// A run in progress: the model and optimizer, where it stands, what it measured.
struct Run<'a> {
    network: &'a Network,
    options: &'a TrainingOptions,
    sources: &'a Sources,
    validation: Option<&'a Dataset>,
    reporter: &'a Reporter,
    /// The store the run started from (frozen weights included).
    store: Store,
    model: Model,
    optim: GroupedOptimizer,
    best_params: Option<Params>,
    progress: Progress,
    fingerprint: String,
    checkpoint: Option<std::path::PathBuf>,
    train_device: Device,
    per_epoch: usize,
    cancel: Arc<AtomicBool>,
    reason: StopReason,
    images_seen: usize,
    train_secs: f64,
    last: (f64, f64),
}

impl<'a> Run<'a> {
    fn new(
        job: &'a TrainJob,
        p: &Prepared,
        sources: &'a Sources,
        store: Store,
        mut progress: Progress,
        fingerprint: String,
        reporter: &'a Reporter,
    ) -> Result<Self, String> {
        let options = &job.options;
        let train_device = p.dev.device.clone().autodiff();
        let model =
            Model::build(&sources.train_net, &store, &train_device).map_err(|e| e.to_string())?;
        let mut optim = GroupedOptimizer::new(options, Groups::from_plan(&model));
        if let Some(bytes) = progress.optimizer.take() {
            optim.load(bytes)?;
        }
        let best_params = match &progress.best_store {
            Some(b) => {
                let mut s = store.clone();
                for (k, t) in b.iter() {
                    s.insert(k.clone(), t.clone());
                }
                Some(
                    Model::build(&sources.train_net, &s, &train_device)
                        .map_err(|e| e.to_string())?
                        .params,
                )
            }
            None => None,
        };
        Ok(Run {
            network: &job.network,
            options,
            sources,
            validation: job.validation.as_ref(),
            reporter,
            store,
            model,
            optim,
            best_params,
            progress,
            fingerprint,
            checkpoint: job.checkpoint.clone(),
            train_device,
            per_epoch: sources.train.len().div_ceil(options.batch_size),
            cancel: Arc::new(AtomicBool::new(false)),
            reason: StopReason::Completed,
            images_seen: 0,
            train_secs: 0.0,
            last: (f64::NAN, f64::NAN),
        })
    }

    /// Batches for training (augmentation seeded by the run's seed) or evaluation.
    fn feeder(&self, training: bool) -> Feeder<'a> {
        Feeder {
            batch_size: self.options.batch_size,
            seed: if training { self.options.seed } else { 0 },
            cancel: self.cancel.clone(),
            reporter: self.reporter,
        }
    }

    fn has_val(&self) -> bool {
        self.sources.val.len() > 0
    }

    /// Validates now; true when early stopping says to stop.
    fn validate_now(&mut self, epoch: usize) -> Result<bool, String> {
        let (loss, accuracy) = validate(
            &self.model,
            &self.model.params,
            &self.sources.val,
            &self.feeder(false),
        )?;
        let rec = ValidationRecord {
            epoch: epoch + 1,
            iteration: self.progress.iteration,
            loss,
            accuracy,
        };
        self.progress.history.validations.push(rec.clone());
        self.reporter.send(TrainEvent::Validation(rec));
        let p = &mut self.progress;
        if p.best_val_loss.is_none_or(|b| loss < b) {
            p.best_val_loss = Some(loss);
            p.since_best = 0;
            self.best_params = Some(self.model.params.clone());
        } else {
            p.since_best += 1;
        }
        Ok(self.options.patience.is_some_and(|n| p.since_best >= n))
    }

    /// One epoch of steps and the validations due in it.
    fn epoch(&mut self, epoch: usize, control: &Control) -> Result<EpochEnd, String> {
        let order = epoch_order(
            self.sources.train.len(),
            self.options.seed,
            epoch,
            self.options.shuffle,
        );
        let dims = self.model.plan.input_dims().to_vec();
        let mut in_epoch = 0usize;
        let mut ended = EpochEnd::Completed;
        let epoch_start = Instant::now();
        let (sources, feed) = (self.sources, self.feeder(true));
        for_each_batch(&sources.train, &order, epoch, &feed, |b| {
            if control.is_paused() {
                self.reporter.send(TrainEvent::Paused);
                let stopped = control.wait_if_paused();
                self.reporter.send(TrainEvent::Resumed);
                if stopped {
                    ended = EpochEnd::Stopped;
                    return Ok(false);
                }
            }
            if control.is_stopped() {
                ended = EpochEnd::Stopped;
                return Ok(false);
            }
            in_epoch += 1;
            self.step(b, epoch, in_epoch, &dims)?;
            let o = self.options;
            if self.has_val()
                && o.validation_frequency > 0
                && self.progress.iteration % o.validation_frequency == 0
                && self.validate_now(epoch)?
            {
                ended = EpochEnd::EarlyStoppedMidway;
                return Ok(false);
            }
            Ok(true)
        })?;
        if control.is_stopped() {
            return Ok(EpochEnd::Stopped);
        }
        if ended != EpochEnd::Completed {
            return Ok(ended);
        }
        if self.has_val() && self.options.validation_frequency == 0 && self.validate_now(epoch)? {
            ended = EpochEnd::EarlyStoppedAtEnd;
        }
        let secs = epoch_start.elapsed().as_secs_f64();
        let h = &mut self.progress.history;
        h.epoch_seconds.push(secs);
        let mean = h.epoch_seconds.iter().sum::<f64>() / h.epoch_seconds.len() as f64;
        self.reporter.send(TrainEvent::EpochEnd {
            epoch: epoch + 1,
            seconds: secs,
            eta_seconds: mean * (self.options.epochs - epoch - 1) as f64,
        });
        Ok(ended)
    }

    /// One optimizer step on a batch.
    fn step(
        &mut self,
        b: Ready,
        epoch: usize,
        in_epoch: usize,
        dims: &[usize],
    ) -> Result<(), String> {
        let t = Instant::now();
        let k = b.labels.len();
        let x = to_input(b.data, k, dims, &self.train_device);
        let out = self
            .model
            .plan
            .forward(&self.model.params, x, Mode::Train)
            .map_err(|e| e.to_string())?;
        let (loss, accuracy) =
            cross_entropy(out[0].clone().into_r2()?, &b.labels, &self.train_device)?;
        let loss_value = crate::engine::params::to_vec(&loss.clone().detach())?[0] as f64;
        if !loss_value.is_finite() {
            return Err(format!(
                "the loss became {loss_value} at iteration {}; lower the learning rate",
                self.progress.iteration + 1
            ));
        }
        let grads = loss.backward();
        let lr = self
            .options
            .learning_rate_at(epoch as f64 + in_epoch as f64 / self.per_epoch as f64);
        let params = std::mem::replace(&mut self.model.params, Params { layers: Vec::new() });
        self.model.params = self.optim.step(lr, params, grads);
        let secs = t.elapsed().as_secs_f64();
        self.images_seen += k;
        self.train_secs += secs;
        self.progress.iteration += 1;
        self.last = (loss_value, accuracy);
        let rec = IterationRecord {
            epoch: epoch + 1,
            iteration: self.progress.iteration,
            loss: loss_value,
            accuracy,
            learning_rate: lr,
            images_per_sec: k as f64 / secs.max(1e-9),
        };
        self.progress.history.iterations.push(rec.clone());
        self.reporter.send(TrainEvent::Iteration(rec));
        Ok(())
    }

    /// After an epoch that was not stopped: the checkpoint, if the run keeps one.
    fn end_epoch(&self, epoch: usize) -> Result<(), String> {
        let Some(path) = &self.checkpoint else {
            return Ok(());
        };
        let model = &self.model;
        let mut current = self.store.clone();
        model.write_back(&mut current).map_err(|e| e.to_string())?;
        let best = match &self.best_params {
            Some(p) => {
                let mut b = self.store.clone();
                model
                    .plan
                    .write_back(p, &mut b)
                    .map_err(|e| e.to_string())?;
                Some(trained_only(&b, model))
            }
            None => None,
        };
        let c = Checkpoint {
            fingerprint: self.fingerprint.clone(),
            epochs_done: epoch + 1,
            iteration: self.progress.iteration,
            history: self.progress.history.clone(),
            store: trained_only(&current, model),
            best,
            best_val_loss: self.progress.best_val_loss,
            validations_since_best: self.progress.since_best,
            optimizer: self.optim.save()?,
        };
        checkpoint::save(path, &c)?;
        self.reporter.send(TrainEvent::Checkpoint {
            path: path.clone(),
            epoch: epoch + 1,
        });
        Ok(())
    }

    /// The weights to keep (the best validation point, else the last), the evaluation on the
    /// validation images, and the outcome.
    fn finish(mut self, classes: Vec<String>, cached_prefix: bool) -> Result<Outcome, String> {
        let final_params = self
            .best_params
            .take()
            .unwrap_or_else(|| self.model.params.clone());
        let mut store = std::mem::take(&mut self.store);
        self.model
            .plan
            .write_back(&final_params, &mut store)
            .map_err(|e| e.to_string())?;
        let evaluation = match self.validation {
            Some(v) if self.has_val() => Some(evaluate_source(
                &self.model,
                &final_params,
                &self.sources.val,
                &v.samples,
                &classes,
                &self.feeder(false),
            )?),
            _ => None,
        };
        let mut network = self.network.clone();
        network.metadata.labels = classes;
        Ok(Outcome {
            network,
            store,
            history: self.progress.history,
            reason: self.reason,
            evaluation,
            final_train_loss: self.last.0,
            final_train_accuracy: self.last.1,
            images_per_sec: self.images_seen as f64 / self.train_secs.max(1e-9),
            cached_prefix,
        })
    }
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

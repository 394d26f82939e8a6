//! The training loop behind [`Session`](super::Session): `prepare.rs` readies the run,
//! `passes.rs` feeds it batches; here are the epochs, the steps, checkpoints and the outcome.

use super::checkpoint::{self, Checkpoint};
use super::events::{
    IterationRecord, LossTerms, MapScores, Outcome, StopReason, TrainEvent, ValidationRecord,
};
use super::metrics::argmax;
use super::optim::{GroupedOptimizer, Groups};
use super::options::TrainingOptions;
use super::passes::{
    Feeder, Ready, detection_pass, epoch_order, evaluate_source, for_each_batch, framed_loss,
    to_input, validate,
};
use super::prepare::{
    Prepared, Progress, Sources, build_sources, fingerprint, prepare, resume_from,
};
use super::session::{Control, Reporter, TrainJob};
use crate::data::Dataset;
use crate::engine::precision::{self, Precision};
use crate::engine::{Mode, Model, Params, Value};
use crate::graph::Network;
use crate::graph::edit::DetectionSpec;
use crate::weights::Store;
use burn::tensor::{Device, Tensor, TensorData};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

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
    if let Some(note) = prepared.dev.warm_up_note() {
        reporter.send(TrainEvent::Message(note.into()));
    }
    match job.options.precision.effective(prepared.dev.is_gpu) {
        (_, Some(why)) => reporter.send(TrainEvent::Message(why.into())),
        (Precision::Bf16, None) => reporter.send(TrainEvent::Message(
            "mixed precision: the convolutions' matrix products in bf16 (fp32 sums and weights)"
                .into(),
        )),
        _ => {}
    }
    for epoch in run.progress.start_epoch..job.options.epochs {
        let end = run.epoch(epoch, control)?;
        let more = epoch + 1 < job.options.epochs && end == EpochEnd::Completed;
        if epoch == run.progress.start_epoch && more {
            // Its steps also paid the first touch of the memory.
            crate::engine::profile::leave_out("this run's first epoch");
        }
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
                "Stopped early: validation {} did not improve for {} validations.",
                if run.detection.is_some() {
                    "mAP@0.5"
                } else {
                    "loss"
                },
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
    /// What a detector's head predicts; `None` trains a classifier.
    detection: Option<DetectionSpec>,
    /// A sound network's front end, written into the trained network.
    audio: Option<crate::audio::front::FrontEnd>,
    per_epoch: usize,
    cancel: Arc<AtomicBool>,
    reason: StopReason,
    images_seen: usize,
    train_secs: f64,
    /// The current epoch's running sums, each batch's loss and accuracy times its images: the
    /// outcome's training loss and accuracy are their means (one batch's, the last, swung with
    /// its few images: 12.5 % steps at batch 8).
    epoch_sums: EpochSums,
    /// What the forward passes run at (the options' where this machine has it).
    precision: Precision,
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
        let mut optim = GroupedOptimizer::new(options, Groups::from_plan(&model), &p.dev.device);
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
            detection: p.detection.clone(),
            audio: p.audio.clone(),
            per_epoch: sources.train.len().div_ceil(options.batch_size),
            cancel: Arc::new(AtomicBool::new(false)),
            reason: StopReason::Completed,
            images_seen: 0,
            train_secs: 0.0,
            epoch_sums: EpochSums::default(),
            precision: options.precision.effective(p.dev.is_gpu).0,
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

    /// Validates now; true when early stopping says to stop. The best point is the lowest
    /// validation loss for a classifier, the highest mAP@0.5 for a detector (its loss mixes
    /// terms whose balance shifts as it learns; mAP is what the user judges it by).
    fn validate_now(&mut self, epoch: usize) -> Result<bool, String> {
        let (loss, accuracy, map) = match (&self.detection, self.validation) {
            (Some(spec), Some(v)) => {
                let e = detection_pass(
                    &self.model,
                    &self.model.params,
                    &self.sources.val,
                    &v.samples,
                    spec,
                    &self.options.detection.loss,
                    &self.feeder(false),
                )?;
                let scores = MapScores {
                    map50: e.report.map50 as f64,
                    map: e.report.map as f64,
                };
                (e.loss, scores.map50, Some(scores))
            }
            _ => {
                let (loss, accuracy) = validate(
                    &self.model,
                    &self.model.params,
                    &self.sources.val,
                    &self.feeder(false),
                )?;
                (loss, accuracy, None)
            }
        };
        let rec = ValidationRecord {
            epoch: epoch + 1,
            iteration: self.progress.iteration,
            loss,
            accuracy,
            map,
        };
        self.progress.history.validations.push(rec.clone());
        self.reporter.send(TrainEvent::Validation(rec));
        // Lower is better: the loss, or a detector's mAP negated.
        let score = match map {
            Some(m) => -m.map50,
            None => loss,
        };
        let p = &mut self.progress;
        if p.best_val_loss.is_none_or(|b| score < b) {
            p.best_val_loss = Some(score);
            p.since_best = 0;
            self.best_params = Some(self.model.params.snapshot());
        } else {
            p.since_best += 1;
        }
        Ok(self.options.patience.is_some_and(|n| p.since_best >= n))
    }

    /// The batch's loss, its accuracy (NaN for a detector) and a detector's loss terms.
    fn batch_loss(
        &self,
        mut out: Vec<Value>,
        b: &Ready,
    ) -> Result<(Tensor<1>, f64, Option<LossTerms>), String> {
        let Some(spec) = &self.detection else {
            let logits = out.drain(..).next().ok_or("the network gave no output")?;
            let (loss, accuracy) = cross_entropy(logits.into_r2()?, &b.labels, &self.train_device)?;
            return Ok((loss, accuracy, None));
        };
        let l = framed_loss(
            out,
            &b.framed,
            spec,
            &self.options.detection.loss,
            &self.train_device,
        )?;
        let terms = LossTerms {
            box_: l.box_ as f64,
            objectness: l.objectness as f64,
            class: l.class as f64,
        };
        Ok((l.total, f64::NAN, Some(terms)))
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
                && self
                    .progress
                    .iteration
                    .is_multiple_of(o.validation_frequency)
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
        let steady = h.steady_epoch_seconds().unwrap_or(secs);
        self.reporter.send(TrainEvent::EpochEnd {
            epoch: epoch + 1,
            seconds: secs,
            eta_seconds: steady * (self.options.epochs - epoch - 1) as f64,
        });
        Ok(ended)
    }

    /// One optimizer step on a batch.
    fn step(
        &mut self,
        mut b: Ready,
        epoch: usize,
        in_epoch: usize,
        dims: &[usize],
    ) -> Result<(), String> {
        let t = Instant::now();
        let k = b.indices.len();
        let x = to_input(std::mem::take(&mut b.data), k, dims, &self.train_device);
        let plan = &self.model.plan;
        let out = precision::training_with(self.precision, || {
            plan.forward(&self.model.params, x, Mode::Train)
        })
        .map_err(|e| e.to_string())?;
        let (loss, accuracy, terms) = self.batch_loss(out, &b)?;
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
        self.model.params = self.optim.step(lr, params, grads)?;
        let secs = t.elapsed().as_secs_f64();
        self.images_seen += k;
        self.train_secs += secs;
        self.progress.iteration += 1;
        self.epoch_sums.add(epoch, loss_value, accuracy, k);
        let rec = IterationRecord {
            epoch: epoch + 1,
            iteration: self.progress.iteration,
            loss: loss_value,
            accuracy,
            learning_rate: lr,
            images_per_sec: k as f64 / secs.max(1e-9),
            terms,
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
        let (mut evaluation, mut detection) = (None, None);
        match (self.validation, &self.detection) {
            (Some(v), None) if self.has_val() => {
                evaluation = Some(evaluate_source(
                    &self.model,
                    &final_params,
                    &self.sources.val,
                    &v.samples,
                    &classes,
                    &self.feeder(false),
                )?);
            }
            (Some(v), Some(spec)) if self.has_val() => {
                detection = Some(detection_pass(
                    &self.model,
                    &final_params,
                    &self.sources.val,
                    &v.samples,
                    spec,
                    &self.options.detection.loss,
                    &self.feeder(false),
                )?);
            }
            _ => {}
        }
        let mut network = self.network.clone();
        network.metadata.labels = classes;
        if let Some(spec) = &self.detection {
            // The export says how its images were fitted, so every runtime frames them alike.
            let spec = DetectionSpec {
                fit: self.options.detection.fit,
                ..spec.clone()
            };
            spec.write_to(&mut network);
        }
        if let Some(front) = &self.audio {
            // The export and `graft predict` compute the same spectrograms from raw sound.
            front.write_to(&mut network);
        }
        let (final_train_loss, final_train_accuracy) = self.epoch_sums.mean();
        Ok(Outcome {
            network,
            store,
            history: self.progress.history,
            reason: self.reason,
            evaluation,
            detection,
            final_train_loss,
            final_train_accuracy,
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

/// The running sums behind [`Outcome::final_train_loss`] and `final_train_accuracy`: the
/// latest epoch's batches (of a run stopped mid-epoch, those done), weighted by their images.
#[derive(Default)]
struct EpochSums {
    epoch: usize,
    loss: f64,
    accuracy: f64,
    images: usize,
}

impl EpochSums {
    /// A batch of `images` in `epoch` (0-based); a new epoch starts the sums over.
    fn add(&mut self, epoch: usize, loss: f64, accuracy: f64, images: usize) {
        if epoch != self.epoch || self.images == 0 {
            *self = EpochSums {
                epoch,
                ..EpochSums::default()
            };
        }
        self.loss += loss * images as f64;
        self.accuracy += accuracy * images as f64;
        self.images += images;
    }

    /// (loss, accuracy) means; NaN before any batch (and the accuracy of a detector, whose
    /// batches have none).
    fn mean(&self) -> (f64, f64) {
        let n = self.images as f64;
        (self.loss / n, self.accuracy / n)
    }
}

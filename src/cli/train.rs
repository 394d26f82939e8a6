//! `graft train`: the library's training session with a progress bar (a classifier on an
//! image folder, or a detector on a box dataset).

use super::evaluate::{print_detection, print_evaluation, print_verify, print_verify_detector};
use super::train_detect::detector_job;
pub use super::train_detect::{FitArg, parse_box_augment};
use crate::audio::front::AudioSettings;
use crate::data::{Augmentation, Dataset};
use crate::engine::{DeviceChoice, Precision};
use crate::graph::edit::{Edit, apply, freeze_backbone};
use crate::train::{
    Outcome, Schedule, Session, Solver, StopReason, TrainEvent, TrainJob, TrainingOptions,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// The pretrained network (an ONNX file, or `default`).
    #[arg(long)]
    pub model: PathBuf,
    /// Training images: one sub-folder per class, or (`--task detect`) a box dataset in the
    /// YOLO, COCO or Pascal VOC layout.
    #[arg(long)]
    pub data: PathBuf,
    /// What to train: a classifier (a new head for the classes), or a detector (a YOLO-style
    /// detection head on a feature map of the backbone).
    #[arg(long, value_enum, default_value_t = TaskArg::Classify)]
    pub task: TaskArg,
    /// Detection: read the box dataset as this layout instead of detecting it.
    #[arg(long, value_enum)]
    pub format: Option<super::boxes::FormatArg>,
    /// Detection: how many anchor boxes per scale to estimate from the training boxes
    /// (k-means on IoU; default 5).
    #[arg(long)]
    pub anchors: Option<usize>,
    /// Detection: prediction maps of the head: 1 (the feature map), or 2 (and the deepest
    /// map at twice its stride, for the larger boxes; YOLO v3-tiny's layout). Default 1.
    #[arg(long)]
    pub scales: Option<usize>,
    /// Detection: the node whose output feeds the head (default: the deepest stride-16 feature
    /// map, else stride 32).
    #[arg(long)]
    pub feature: Option<String>,
    /// Detection: `letterbox` (keep the aspect ratio, pad) or `stretch` each image into the
    /// square input.
    #[arg(long, value_enum)]
    pub fit: Option<FitArg>,
    /// Detection: augmentation that moves the boxes: `default` (horizontal flip, ±30 % scale,
    /// ±10 % shift, ±20 % colour), `none`, or a list of `flip`, `vflip`, `scale=MIN:MAX`,
    /// `translate=FRACTION`, `colour=FRACTION`.
    #[arg(long)]
    pub box_augment: Option<String>,
    /// Detection: what the exported file outputs: `nms` (final boxes, scores, classes, batch
    /// index; ONNX NonMaxSuppression inside), `boxes` (every decoded box and its class
    /// scores), or `map` (the raw prediction map).
    #[arg(long, value_enum, default_value_t = crate::onnx::detector::Decoding::Nms)]
    pub decoding: crate::onnx::detector::Decoding,
    /// Detection: the exported file's suppression (`--score`, `--iou`, `--max`).
    #[command(flatten)]
    pub suppression: super::detect::SuppressionArgs,
    /// Validation images in a second folder with the same classes.
    #[command(flatten)]
    pub sound: super::sound::SoundArgs,
    #[arg(long, conflicts_with = "val_split")]
    pub val_data: Option<PathBuf>,
    /// Hold out this fraction of each class for validation (stratified, seeded).
    #[arg(long)]
    pub val_split: Option<f32>,
    /// Freeze every layer before the new head.
    #[arg(long, conflicts_with = "freeze_until")]
    pub freeze_backbone: bool,
    /// Freeze this node and everything before it.
    #[arg(long)]
    pub freeze_until: Option<String>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long, value_enum)]
    pub solver: Option<Solver>,
    #[arg(long)]
    pub momentum: Option<f64>,
    /// L2 regularisation.
    #[arg(long)]
    pub l2: Option<f64>,
    /// Learning-rate schedule: `none`, `cosine`, or `step:FACTOR:EPOCHS`.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Linear learning-rate warm-up, in epochs.
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Validate every N iterations (default: each epoch).
    #[arg(long)]
    pub validation_frequency: Option<usize>,
    /// Stop after N validations without improvement.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Augment training images: `default` (random resized crop + horizontal flip) or a list of
    /// `crop`, `flip`, `vflip`, `rotate=DEG`, `translate=FRACTION`, `scale=MIN`.
    #[arg(long, num_args = 0..=1, default_missing_value = "default")]
    pub augment: Option<String>,
    #[arg(long, value_enum)]
    pub device: Option<DeviceChoice>,
    /// Mixed precision: `bf16` multiplies the 1x1 convolutions in bf16 (fp32 sums and
    /// weights; CPUs with AVX512_BF16, else fp32 with a message). Default `fp32`.
    #[arg(long, value_enum)]
    pub precision: Option<Precision>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Do not cache the frozen layers' activations.
    #[arg(long)]
    pub no_cache: bool,
    /// The most memory the cached activations take, in MB (default 1024); beyond it they go
    /// to a file on disk (GRAFT_SPILL_DIR, else the cache folder), removed after training.
    #[arg(long, value_name = "MB")]
    pub cache_memory: Option<usize>,
    /// Start from options in a RON file (flags override them).
    #[arg(long)]
    pub options: Option<PathBuf>,
    /// Where to write the trained network.
    #[arg(long)]
    pub export: PathBuf,
    /// Write a JSON report (metrics, confusion matrix, timings).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Continue from the checkpoint next to `--export` (written at each epoch's end).
    #[arg(long)]
    pub resume: bool,
    /// Check the export in an independent runtime on the validation images.
    #[arg(long)]
    pub verify: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskArg {
    Classify,
    Detect,
}

pub fn parse_augment(spec: &str) -> Result<Augmentation, String> {
    if spec == "default" {
        return Ok(Augmentation::default());
    }
    let mut a = Augmentation::none();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .map_or((part, None), |(k, v)| (k, Some(v)));
        let num = |v: Option<&str>| -> Result<f32, String> {
            v.ok_or(format!("{key} needs a value ({key}=...)"))?
                .parse()
                .map_err(|_| format!("{part}: not a number"))
        };
        match key {
            "crop" => a.random_resized_crop = true,
            "flip" => a.horizontal_flip = true,
            "vflip" => a.vertical_flip = true,
            "rotate" => a.rotation_degrees = num(value)?,
            "translate" => a.translation = num(value)?,
            "scale" => {
                a.random_resized_crop = true;
                a.scale.0 = num(value)?;
            }
            other => {
                return Err(format!(
                    "unknown augmentation '{other}' (crop, flip, vflip, rotate=, translate=, scale=)"
                ));
            }
        }
    }
    Ok(a)
}

fn parse_schedule(s: &str) -> Result<Schedule, String> {
    match s {
        "none" => Ok(Schedule::None),
        "cosine" => Ok(Schedule::Cosine),
        _ => {
            let parts: Vec<&str> = s.split(':').collect();
            match parts.as_slice() {
                ["step", f, p] => Ok(Schedule::Step {
                    factor: f.parse().map_err(|_| format!("{s}: bad factor"))?,
                    period: p.parse().map_err(|_| format!("{s}: bad period"))?,
                }),
                _ => Err(format!(
                    "schedule '{s}': use none, cosine or step:FACTOR:EPOCHS"
                )),
            }
        }
    }
}

fn options(args: &TrainArgs) -> Result<TrainingOptions, String> {
    let mut o = match &args.options {
        Some(p) => TrainingOptions::from_ron(
            &std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
        )?,
        None => TrainingOptions::default(),
    };
    if let Some(v) = args.epochs {
        o.epochs = v;
    }
    if let Some(v) = args.batch {
        o.batch_size = v;
    }
    if let Some(v) = args.lr {
        o.learning_rate = v;
    }
    if let Some(v) = args.solver {
        o.solver = v;
    }
    if let Some(v) = args.momentum {
        o.momentum = v;
    }
    if let Some(v) = args.l2 {
        o.l2 = v;
    }
    if let Some(v) = &args.schedule {
        o.schedule = parse_schedule(v)?;
    }
    if let Some(v) = args.warmup {
        o.warmup_epochs = v;
    }
    if let Some(v) = args.validation_frequency {
        o.validation_frequency = v;
    }
    if let Some(v) = args.patience {
        o.patience = Some(v);
    }
    if let Some(v) = &args.augment {
        o.augmentation = Some(parse_augment(v)?);
    }
    if let Some(v) = args.device {
        o.device = v;
    }
    if let Some(v) = args.precision {
        o.precision = v;
    }
    if let Some(v) = args.seed {
        o.seed = v;
    }
    if args.no_cache {
        o.cache_features = false;
    }
    if let Some(mb) = args.cache_memory {
        o.cache_memory_mb = mb;
    }
    if let Some(f) = args.fit {
        o.detection.fit = f.into();
    }
    if let Some(s) = args.scales {
        o.detection.scales = s;
    }
    if let Some(a) = args.anchors {
        o.detection.anchors = a;
    }
    // Checked now, not after training, though only the export uses them.
    o.detection.suppression = args.suppression.get()?;
    o.detection.decoding = args.decoding;
    if let Some(v) = &args.box_augment {
        o.detection.augmentation = parse_box_augment(v)?;
    }
    if args.sound.sound_augment.is_some() {
        o.sound_augmentation = args.sound.augmentation()?;
    }
    o.validate()?;
    Ok(o)
}

/// Scans a folder of classes (images, or sound clips cut as `audio` says) with a progress
/// bar, and reports what it found.
pub(super) fn scan_with_bar(dir: &Path, audio: &AudioSettings) -> Result<Dataset, String> {
    let bar = ProgressBar::new(0).with_style(style("{msg} {bar:30} {pos}/{len}"));
    bar.set_message(format!("Scanning {}", dir.display()));
    let never = AtomicBool::new(false);
    let d = crate::data::scan_classes(
        dir,
        audio,
        &|done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        },
        &never,
    )
    .map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    for s in &d.skipped {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    d.validate().map_err(|e| e.to_string())?;
    let counts = d.counts();
    let summary: Vec<String> = d
        .classes
        .iter()
        .zip(&counts)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    let what = match &d.media {
        crate::data::Media::Images => "images",
        crate::data::Media::Sounds(a) => {
            let short = d
                .sounds
                .iter()
                .filter(|f| f.seconds < a.min_seconds)
                .count();
            if short > 0 {
                eprintln!(
                    "{short} files are shorter than {} s (padded with silence)",
                    a.min_seconds
                );
            }
            "sound clips"
        }
    };
    eprintln!(
        "{}: {} {what} in {} classes ({})",
        dir.display(),
        d.samples.len(),
        d.classes.len(),
        summary.join(", ")
    );
    Ok(d)
}

/// A log line above the bar, also when the bar is hidden (output not a terminal).
fn say(bar: &ProgressBar, line: impl AsRef<str>) {
    bar.suspend(|| eprintln!("{}", line.as_ref()));
}

pub(super) fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

pub fn run(args: TrainArgs) -> Result<(), String> {
    let options = options(&args)?;
    // Fail before training, not after it, if the export cannot be written.
    if let Some(dir) = args.export.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let (mut net, mut store, train, validation) = match args.task {
        TaskArg::Classify => classifier_job(&args, &options)?,
        TaskArg::Detect => detector_job(&args, &options)?,
    };
    let edit = |net: &mut _, store: &mut _, e: Edit| {
        apply(net, store, &e).map(|_| ()).map_err(|e| e.to_string())
    };
    if args.freeze_backbone {
        freeze_backbone(&mut net, &store).map_err(|e| e.to_string())?;
    } else if let Some(node) = &args.freeze_until {
        edit(
            &mut net,
            &mut store,
            Edit::FreezeUntil { node: node.clone() },
        )?;
    }
    if net.metadata.preprocess.is_none() {
        // Record what training used, so the export is self-describing.
        net.metadata.preprocess = Some(net.preprocess());
    }
    let checkpoint = args.export.with_extension("onnx.ckpt");
    let job = TrainJob {
        network: net,
        store,
        train,
        validation: validation.clone(),
        options: options.clone(),
        checkpoint: Some(checkpoint.clone()),
        resume: args.resume,
    };
    let session = Session::start(job, None)?;
    let outcome = watch(&session)?;
    session.join();
    if crate::engine::profile::enabled() {
        eprint!("{}", crate::engine::profile::report());
    }

    crate::onnx::export_with_labels_as(
        &outcome.network,
        &outcome.store,
        &args.export,
        options.detection.decoding,
        &options.detection.suppression,
    )?;
    eprintln!(
        "wrote {} and {}",
        args.export.display(),
        crate::onnx::labels_path(&args.export).display()
    );
    if outcome.reason == StopReason::Completed {
        // The run is complete; its checkpoint is no longer needed.
        let _ = std::fs::remove_file(&checkpoint);
    }
    let mut verify_report = None;
    if args.verify {
        let images: Vec<PathBuf> = validation
            .as_ref()
            .map(|v| v.samples.iter().map(|s| s.path.clone()).collect())
            .unwrap_or_else(|| crate::verify::inputs_for(&outcome.network, &args.data));
        let bytes = std::fs::read(&args.export).map_err(|e| e.to_string())?;
        let (net, store) = (&outcome.network, &outcome.store);
        if args.task == TaskArg::Detect {
            let r = crate::verify::verify_detector(&bytes, net, store, &images, 64)?;
            print_verify_detector(&r);
            verify_report = Some(json!(r));
        } else {
            let r = crate::verify::verify(&bytes, net, store, &images, 64)?;
            print_verify(&r);
            verify_report = Some(json!(r));
        }
    }
    if let Some(path) = &args.report {
        let mut report = outcome_json(&outcome, &options);
        if let Some(v) = verify_report {
            report["verify"] = json!(v);
        }
        super::write_json(path, &report)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// A network, its weights, and the training and validation sets.
pub(super) type Job = (
    crate::graph::Network,
    crate::weights::Store,
    Dataset,
    Option<Dataset>,
);

/// A classifier: the image folders, the network with its head adapted to their classes.
fn classifier_job(args: &TrainArgs, options: &TrainingOptions) -> Result<Job, String> {
    let audio = args.sound.settings()?;
    let data = scan_with_bar(&args.data, &audio)?;
    let imported = super::open_model_for(&args.model, &data)?;
    let (mut net, mut store) = (imported.network, imported.store);
    let (train, validation) = match (&args.val_data, args.val_split) {
        (Some(dir), _) => {
            let v = scan_with_bar(dir, &audio)?;
            data.same_classes(&v).map_err(|e| e.to_string())?;
            (data, Some(v))
        }
        (None, Some(f)) if f > 0.0 => {
            let (t, v) = data.split(f, options.seed).map_err(|e| e.to_string())?;
            (t, Some(v))
        }
        _ => (data, None),
    };
    apply(
        &mut net,
        &mut store,
        &Edit::AdaptHead {
            classes: train.classes.clone(),
            seed: options.seed,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok((net, store, train, validation))
}

/// Shows the session's events until it finishes.
pub(super) fn watch(session: &Session) -> Result<Outcome, String> {
    let bar =
        ProgressBar::new(0).with_style(style("{msg:40} {bar:30} {pos}/{len} [{elapsed}<{eta}]"));
    let mut total = 0u64;
    let mut last_val = String::new();
    for event in session.events().iter() {
        match event {
            TrainEvent::Started {
                device,
                train_images,
                val_images,
                iterations_per_epoch,
                epochs,
                cached_nodes,
            } => {
                total = (iterations_per_epoch * epochs) as u64;
                bar.set_length(total);
                say(
                    &bar,
                    format!(
                        "training on {device}: {train_images} images, {val_images} for validation, {epochs} epochs of {iterations_per_epoch} iterations{}",
                        if cached_nodes > 0 {
                            format!("; {cached_nodes} frozen nodes computed once")
                        } else {
                            String::new()
                        }
                    ),
                );
            }
            TrainEvent::Message(m) => say(&bar, m),
            TrainEvent::Progress {
                stage,
                done,
                total: t,
            } => {
                bar.set_length(t as u64);
                bar.set_position(done as u64);
                bar.set_message(stage);
            }
            TrainEvent::Iteration(r) => {
                bar.set_length(total);
                bar.set_position(r.iteration as u64);
                bar.set_message(match r.terms {
                    Some(t) => format!(
                        "epoch {} loss {:.3} (box {:.2} obj {:.2} cls {:.2}){last_val}",
                        r.epoch, r.loss, t.box_, t.objectness, t.class
                    ),
                    None => format!(
                        "epoch {} loss {:.3} acc {:.1}%{last_val}",
                        r.epoch,
                        r.loss,
                        r.accuracy * 100.0
                    ),
                });
            }
            TrainEvent::Validation(v) => {
                last_val = match v.map {
                    Some(m) => format!(
                        " val mAP@0.5 {:.1}% mAP {:.1}%",
                        m.map50 * 100.0,
                        m.map * 100.0
                    ),
                    None => format!(" val {:.1}%", v.accuracy * 100.0),
                }
            }
            TrainEvent::EpochEnd { epoch, seconds, .. } => {
                say(&bar, format!("epoch {epoch}: {seconds:.1} s{last_val}"))
            }
            TrainEvent::Checkpoint { path, epoch } => say(
                &bar,
                format!("checkpoint after epoch {epoch}: {}", path.display()),
            ),
            TrainEvent::Paused | TrainEvent::Resumed => {}
            TrainEvent::Finished(outcome) => {
                bar.finish_and_clear();
                print_summary(&outcome);
                return Ok(*outcome);
            }
            TrainEvent::Failed(e) => {
                bar.finish_and_clear();
                return Err(e);
            }
        }
    }
    Err("the training thread ended without a result".into())
}

fn print_summary(o: &Outcome) {
    let accuracy = if o.final_train_accuracy.is_nan() {
        String::new()
    } else {
        format!(", accuracy {:.2}%", o.final_train_accuracy * 100.0)
    };
    // The steady rate, and the whole run's where its first steps (a GPU compiling its
    // kernels) pulled it well below.
    let steady = o
        .history
        .steady_images_per_sec()
        .unwrap_or(o.images_per_sec);
    let whole = if o.images_per_sec < 0.8 * steady {
        format!(
            " ({:.1} over the whole run, its first steps included)",
            o.images_per_sec
        )
    } else {
        String::new()
    };
    eprintln!(
        "{}: last epoch's train loss {:.4}{accuracy}; {steady:.1} images/s{whole}{}",
        o.reason.words(),
        o.final_train_loss,
        if o.cached_prefix {
            " (frozen layers cached)"
        } else {
            ""
        }
    );
    if let Some(e) = &o.evaluation {
        print_evaluation(e);
    }
    if let Some(d) = &o.detection {
        print_detection(d);
    }
}

fn outcome_json(o: &Outcome, options: &TrainingOptions) -> serde_json::Value {
    json!({
        "classes": o.network.metadata.labels,
        "stop_reason": format!("{:?}", o.reason),
        "train": { "loss": o.final_train_loss, "accuracy": o.final_train_accuracy },
        "validation": o.evaluation.as_ref().map(|e| json!({
            "loss": e.loss, "accuracy": e.accuracy, "images": e.images,
            "confusion": e.confusion, "per_class": e.per_class,
            "misclassified": e.predictions.iter().filter(|p| p.label != p.predicted).collect::<Vec<_>>(),
        })),
        "detection": o.detection.as_ref().map(|d| json!({
            "map50": d.report.map50, "map": d.report.map, "loss": d.loss,
            "images": d.images.len(), "per_class": d.report.classes,
            "worst": d.worst(20),
        })),
        "images_per_sec": o.images_per_sec,
        "steady_images_per_sec": o.history.steady_images_per_sec(),
        "epoch_seconds": o.history.epoch_seconds,
        "cached_frozen_layers": o.cached_prefix,
        "history": o.history,
        "options": options,
    })
}

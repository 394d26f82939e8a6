//! `graft train` and `graft evaluate`: the library's training session with a progress bar.

use crate::data::{Augmentation, Dataset};
use crate::engine::{DeviceChoice, select_device};
use crate::graph::edit::{Edit, apply, freeze_backbone};
use crate::train::evaluate::evaluate;
use crate::train::{
    Evaluation, Outcome, Schedule, Session, Solver, StopReason, TrainEvent, TrainJob,
    TrainingOptions,
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
    /// Training images: one sub-folder per class.
    #[arg(long)]
    pub data: PathBuf,
    /// Validation images in a second folder with the same classes.
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
    #[arg(long)]
    pub seed: Option<u64>,
    /// Do not cache the frozen layers' activations.
    #[arg(long)]
    pub no_cache: bool,
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
    if let Some(v) = args.seed {
        o.seed = v;
    }
    if args.no_cache {
        o.cache_features = false;
    }
    o.validate()?;
    Ok(o)
}

pub(super) fn scan_with_bar(dir: &Path) -> Result<Dataset, String> {
    let bar = ProgressBar::new(0).with_style(style("{msg} {bar:30} {pos}/{len}"));
    bar.set_message(format!("Scanning {}", dir.display()));
    let never = AtomicBool::new(false);
    let d = crate::data::scan(
        dir,
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
    eprintln!(
        "{}: {} images in {} classes ({})",
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

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

pub fn run(args: TrainArgs) -> Result<(), String> {
    let options = options(&args)?;
    // Fail before training, not after it, if the export cannot be written.
    if let Some(dir) = args.export.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let data = scan_with_bar(&args.data)?;
    let imported = super::open_model_for(&args.model, &data)?;
    let (mut net, mut store) = (imported.network, imported.store);
    let (train, validation) = match (&args.val_data, args.val_split) {
        (Some(dir), _) => {
            let v = scan_with_bar(dir)?;
            data.same_classes(&v).map_err(|e| e.to_string())?;
            (data, Some(v))
        }
        (None, Some(f)) if f > 0.0 => {
            let (t, v) = data.split(f, options.seed).map_err(|e| e.to_string())?;
            (t, Some(v))
        }
        _ => (data, None),
    };
    let edit = |net: &mut _, store: &mut _, e: Edit| {
        apply(net, store, &e).map(|_| ()).map_err(|e| e.to_string())
    };
    edit(
        &mut net,
        &mut store,
        Edit::AdaptHead {
            classes: train.classes.clone(),
            seed: options.seed,
        },
    )?;
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

    crate::onnx::export_with_labels(&outcome.network, &outcome.store, &args.export)?;
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
            .unwrap_or_else(|| crate::verify::images_in(&args.data));
        let bytes = std::fs::read(&args.export).map_err(|e| e.to_string())?;
        let r = crate::verify::verify(&bytes, &outcome.network, &outcome.store, &images, 64)?;
        print_verify(&r);
        verify_report = Some(r);
    }
    if let Some(path) = &args.report {
        let mut report = outcome_json(&outcome, &options);
        if let Some(v) = verify_report {
            report["verify"] = json!(v);
        }
        crate::files::write_atomic(
            path,
            serde_json::to_string_pretty(&report)
                .map_err(|e| e.to_string())?
                .as_bytes(),
        )?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
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
                bar.set_message(format!(
                    "epoch {} loss {:.3} acc {:.1}%{last_val}",
                    r.epoch,
                    r.loss,
                    r.accuracy * 100.0
                ));
            }
            TrainEvent::Validation(v) => last_val = format!(" val {:.1}%", v.accuracy * 100.0),
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
    eprintln!(
        "{}: train loss {:.4}, accuracy {:.2}%; {:.1} images/s{}",
        match o.reason {
            StopReason::Completed => "finished",
            StopReason::Stopped => "stopped",
            StopReason::EarlyStopped => "stopped early",
        },
        o.final_train_loss,
        o.final_train_accuracy * 100.0,
        o.images_per_sec,
        if o.cached_prefix {
            " (frozen layers cached)"
        } else {
            ""
        }
    );
    if let Some(e) = &o.evaluation {
        print_evaluation(e);
    }
}

pub fn print_evaluation(e: &Evaluation) {
    eprintln!(
        "validation: accuracy {:.2}%, loss {:.4} on {} images",
        e.accuracy * 100.0,
        e.loss,
        e.images
    );
    let w = e
        .classes
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 24);
    eprintln!("{:<w$}  precision  recall     F1  images", "class");
    for m in &e.per_class {
        eprintln!(
            "{:<w$}  {:>9.3}  {:>6.3}  {:>5.3}  {:>6}",
            m.class, m.precision, m.recall, m.f1, m.support
        );
    }
    eprintln!("confusion (rows: true, columns: predicted):");
    for (c, row) in e.classes.iter().zip(&e.confusion) {
        eprintln!(
            "{:<w$}  {}",
            c,
            row.iter().map(|n| format!("{n:>5}")).collect::<String>()
        );
    }
}

fn print_verify(r: &crate::verify::VerifyReport) {
    eprintln!(
        "verify (tract vs Graft, {} images): max |logit difference| {:.2e}, top-1 agreement {:.1}% — {}",
        r.images,
        r.max_abs_diff,
        r.top1_agreement * 100.0,
        if r.passed() { "OK" } else { "MISMATCH" }
    );
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
        "images_per_sec": o.images_per_sec,
        "epoch_seconds": o.history.epoch_seconds,
        "cached_frozen_layers": o.cached_prefix,
        "history": o.history,
        "options": options,
    })
}

#[derive(clap::Args, Debug)]
pub struct EvaluateArgs {
    pub model: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub report: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
}

pub fn evaluate_cmd(args: EvaluateArgs) -> Result<(), String> {
    let imported = super::open_model(&args.model)?;
    let data = scan_with_bar(&args.data)?;
    let dev = select_device(args.device)?;
    let bar = ProgressBar::new(data.samples.len() as u64)
        .with_style(style("evaluating {bar:30} {pos}/{len}"));
    let run = evaluate(&imported.network, &imported.store, &data, &dev, |d, _| {
        bar.set_position(d as u64)
    })?;
    bar.finish_and_clear();
    for s in &run.failed {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    print_evaluation(&run.evaluation);
    if let Some(path) = &args.report {
        let e = &run.evaluation;
        let report = json!({
            "classes": e.classes, "accuracy": e.accuracy, "loss": e.loss, "images": e.images,
            "confusion": e.confusion, "per_class": e.per_class, "predictions": e.predictions,
            "skipped": run.failed,
        });
        crate::files::write_atomic(
            path,
            serde_json::to_string_pretty(&report)
                .map_err(|e| e.to_string())?
                .as_bytes(),
        )?;
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    pub model: PathBuf,
    /// Images to compare on (a folder, searched recursively).
    #[arg(long)]
    pub data: PathBuf,
    /// At most this many images.
    #[arg(long, default_value_t = 64)]
    pub limit: usize,
}

pub fn verify_cmd(args: VerifyArgs) -> Result<(), String> {
    let imported = super::open_model(&args.model)?;
    let bytes = if args.model.as_os_str() == "default" && !args.model.exists() {
        crate::DEFAULT_MODEL.to_vec()
    } else {
        std::fs::read(&args.model).map_err(|e| e.to_string())?
    };
    let images = crate::verify::images_in(&args.data);
    let r = crate::verify::verify(
        &bytes,
        &imported.network,
        &imported.store,
        &images,
        args.limit,
    )?;
    for (p, why) in &r.failed {
        eprintln!("skipped {}: {why}", p.display());
    }
    print_verify(&r);
    if r.passed() {
        Ok(())
    } else {
        Err("the runtimes disagree".into())
    }
}

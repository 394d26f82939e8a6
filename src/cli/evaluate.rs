//! `graft evaluate` and `graft verify`: a finished network (classifier or detector) on
//! labelled images, and an exported file checked in an independent runtime; and how their
//! results and a training run's evaluation are printed.

use super::train::{FitArg, scan_with_bar, style};
use crate::detect::evaluate::DetectionEvaluation;
use crate::engine::{DeviceChoice, select_device};
use crate::train::Evaluation;
use crate::train::evaluate::evaluate;
use indicatif::ProgressBar;
use serde_json::json;
use std::path::PathBuf;

/// A detector's AP table: per class, then the means.
pub fn print_detection(d: &DetectionEvaluation) {
    let r = &d.report;
    eprintln!(
        "validation: mAP@0.5 {:.1}%, mAP@[.5:.95] {:.1}% on {} images (loss {:.4})",
        r.map50 * 100.0,
        r.map * 100.0,
        d.images.len(),
        d.loss
    );
    let w = super::class_column(&d.classes);
    eprintln!("{:<w$}  boxes  AP@0.5  AP@[.5:.95]", "class");
    let pct = |v: Option<f32>| v.map_or("—".to_string(), |v| format!("{:.1}", v * 100.0));
    for c in &r.classes {
        eprintln!(
            "{:<w$}  {:>5}  {:>6}  {:>11}",
            d.classes.get(c.class).map_or("?", String::as_str),
            c.truths,
            pct(c.ap50),
            pct(c.ap)
        );
    }
}

pub fn print_evaluation(e: &Evaluation) {
    eprintln!(
        "validation: accuracy {:.2}%, loss {:.4} on {} images",
        e.accuracy * 100.0,
        e.loss,
        e.images
    );
    let w = super::class_column(&e.classes);
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

pub(super) fn print_verify_detector(r: &crate::verify::DetectorVerifyReport) {
    eprintln!(
        "verify (tract vs Graft, {} images, {} boxes): lowest IoU {:.4}, max |score difference|          {:.2e}, {} images with another box count, max |map difference| {:.2e} — {}",
        r.images,
        r.boxes,
        r.min_iou,
        r.max_score_diff,
        r.count_mismatches,
        r.max_map_diff,
        if r.passed() { "OK" } else { "MISMATCH" }
    );
}

pub(super) fn print_verify(r: &crate::verify::VerifyReport) {
    eprintln!(
        "verify (tract vs Graft, {} images): max |logit difference| {:.2e}, top-1 agreement {:.1}% — {}",
        r.images,
        r.max_abs_diff,
        r.top1_agreement * 100.0,
        if r.passed() { "OK" } else { "MISMATCH" }
    );
}

#[derive(clap::Args, Debug)]
pub struct EvaluateArgs {
    pub model: PathBuf,
    /// Labelled images: a folder per class for a classifier; a box dataset (YOLO, COCO or
    /// Pascal VOC layout) for a detector.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long)]
    pub report: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
    /// Detection: read the box dataset as this layout instead of detecting it.
    #[arg(long, value_enum)]
    pub format: Option<super::boxes::FormatArg>,
    /// Detection: how images meet the input (as in training).
    #[arg(long, value_enum, default_value_t = FitArg::Letterbox)]
    pub fit: FitArg,
}

pub fn evaluate_cmd(args: EvaluateArgs) -> Result<(), String> {
    let imported = super::open_model(&args.model)?;
    if crate::graph::edit::DetectionSpec::of(&imported.network).is_some() {
        return evaluate_detector_cmd(&args, &imported);
    }
    // A sound network's clips are cut as it was trained.
    let audio = crate::audio::front::FrontEnd::of(&imported.network)
        .map(|f| f.settings)
        .unwrap_or_default();
    let data = scan_with_bar(&args.data, &audio)?;
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
        super::write_json(path, &report)?;
    }
    Ok(())
}

/// `graft evaluate` with a detector: mAP on a box dataset.
fn evaluate_detector_cmd(
    args: &EvaluateArgs,
    imported: &crate::onnx::Imported,
) -> Result<(), String> {
    let boxes = crate::detect::dataset::load(&args.data, args.format.map(Into::into))
        .map_err(|e| e.to_string())?;
    for f in &boxes.findings {
        eprintln!("{f}");
    }
    let data = boxes.to_dataset();
    let dev = select_device(args.device)?;
    let bar = ProgressBar::new(data.samples.len() as u64)
        .with_style(style("evaluating {bar:30} {pos}/{len}"));
    let (d, failed) = crate::train::evaluate::evaluate_detector(
        &imported.network,
        &imported.store,
        &data,
        args.fit.into(),
        &dev,
        |done, _| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    for s in &failed {
        eprintln!("skipped {}: {}", s.path.display(), s.reason);
    }
    print_detection(&d);
    if let Some(path) = &args.report {
        let report = json!({
            "classes": d.classes, "map50": d.report.map50, "map": d.report.map,
            "per_class": d.report.classes, "images": d.images, "skipped": failed,
        });
        super::write_json(path, &report)?;
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
    let images = crate::verify::inputs_for(&imported.network, &args.data);
    if crate::graph::edit::DetectionSpec::of(&imported.network).is_some() {
        let r = crate::verify::verify_detector(
            &bytes,
            &imported.network,
            &imported.store,
            &images,
            args.limit,
        )?;
        for (p, why) in &r.failed {
            eprintln!("skipped {}: {why}", p.display());
        }
        print_verify_detector(&r);
        return if r.passed() {
            Ok(())
        } else {
            Err("the runtimes disagree".into())
        };
    }
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

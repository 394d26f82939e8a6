//! `graft compare`: which backbone suits *this* dataset? Every network gets the same recipe
//! on the same split with the same seed — a new head, the backbone frozen (its features
//! computed once) unless `--fine-tune` — one after another; then one table: validation
//! accuracy and loss, training time, inference images/s on this machine, parameters and the
//! retrained file's size, with the accuracy/speed Pareto front marked.

use super::train::{scan_with_bar, watch};
use crate::engine::DeviceChoice;
use crate::graph::edit::{Edit, apply, freeze_backbone};
use crate::train::{Session, TrainJob, TrainingOptions};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Gallery names or ONNX files, comma-separated (`resnet18,googlenet,my.onnx`).
    #[arg(long, value_delimiter = ',', required = true)]
    pub models: Vec<PathBuf>,
    /// One sub-folder of images per class.
    #[arg(long)]
    pub data: PathBuf,
    /// Validation images (else `--val-split` of `--data`).
    #[arg(long)]
    pub val_data: Option<PathBuf>,
    #[arg(long, default_value_t = 0.2)]
    pub val_split: f32,
    /// Train every layer instead of a new head on a frozen backbone.
    #[arg(long)]
    pub fine_tune: bool,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, value_enum)]
    pub device: Option<DeviceChoice>,
    /// Write each retrained network here as `<name>.onnx` (with its labels file).
    #[arg(long)]
    pub export_dir: Option<PathBuf>,
    /// The table as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// One network's line of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub model: String,
    pub validation_accuracy: f64,
    pub validation_loss: f64,
    /// Recall per class, in the dataset's class order.
    pub per_class_accuracy: Vec<(String, f64)>,
    pub train_seconds: f64,
    pub inference_images_per_s: f64,
    pub params: usize,
    pub file_bytes: usize,
    /// No other network is at least as accurate and as fast, and better in one.
    pub pareto: bool,
}

pub fn run(args: CompareArgs) -> Result<(), String> {
    if args.models.len() < 2 {
        return Err("compare needs two networks or more (--models a,b)".into());
    }
    let mut options = TrainingOptions::default();
    options.epochs = args.epochs.unwrap_or(options.epochs);
    options.batch_size = args.batch.unwrap_or(options.batch_size);
    options.learning_rate = args.lr.unwrap_or(options.learning_rate);
    options.seed = args.seed.unwrap_or(options.seed);
    options.device = args.device.unwrap_or(options.device);
    // One split for every network.
    let data = scan_with_bar(&args.data)?;
    let (train, validation) = match &args.val_data {
        Some(dir) => {
            let v = scan_with_bar(dir)?;
            data.same_classes(&v).map_err(|e| e.to_string())?;
            (data, v)
        }
        None => data
            .split(args.val_split, options.seed)
            .map_err(|e| e.to_string())?,
    };
    if let Some(dir) = &args.export_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut rows: Vec<Row> = Vec::new();
    for model in &args.models {
        let mut name = display_name(model);
        if rows.iter().any(|r| r.model == name) {
            name = format!("{name}-{}", rows.len() + 1);
        }
        eprintln!("── {name}");
        let started = Instant::now();
        let imported = super::open_model(model)?;
        let (mut net, mut store) = (imported.network, imported.store);
        apply(
            &mut net,
            &mut store,
            &Edit::AdaptHead {
                classes: train.classes.clone(),
                seed: options.seed,
            },
        )
        .map_err(|e| format!("{name}: {e}"))?;
        if !args.fine_tune {
            freeze_backbone(&mut net, &store).map_err(|e| format!("{name}: {e}"))?;
        }
        if net.metadata.preprocess.is_none() {
            net.metadata.preprocess = Some(net.preprocess());
        }
        let session = Session::start(
            TrainJob {
                network: net,
                store,
                train: train.clone(),
                validation: Some(validation.clone()),
                options: options.clone(),
                checkpoint: None,
                resume: false,
            },
            None,
        )?;
        let outcome = watch(&session)?;
        session.join();
        let train_seconds = started.elapsed().as_secs_f64();
        let eval = outcome
            .evaluation
            .as_ref()
            .ok_or_else(|| format!("{name}: no validation result"))?;
        let speed =
            crate::engine::speed::measure(&outcome.network, &outcome.store, 8, 5, options.device)?;
        let bytes = crate::onnx::export_bytes(&outcome.network, &outcome.store)
            .map_err(|e| format!("{name}: {e}"))?;
        if let Some(dir) = &args.export_dir {
            let out = dir.join(format!("{name}.onnx"));
            crate::onnx::export_with_labels(&outcome.network, &outcome.store, &out)?;
        }
        let analysis = crate::graph::analyze::analyze(&outcome.network, &outcome.store);
        rows.push(Row {
            model: name,
            validation_accuracy: eval.accuracy,
            validation_loss: eval.loss,
            per_class_accuracy: eval
                .per_class
                .iter()
                .map(|c| (c.class.clone(), c.recall))
                .collect(),
            train_seconds,
            inference_images_per_s: speed.images_per_s,
            params: analysis.total_params,
            file_bytes: bytes.len(),
            pareto: false,
        });
    }
    mark_pareto(&mut rows);
    print_table(&rows, validation.samples.len());
    if let Some(path) = &args.report {
        let report = serde_json::json!({
            "train_images": train.samples.len(),
            "validation_images": validation.samples.len(),
            "classes": train.classes,
            "fine_tune": args.fine_tune,
            "options": options,
            "networks": rows,
        });
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        crate::files::write_atomic(path, text.as_bytes())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// A network's name in the table: a gallery name as given, a file by its stem, or by its
/// folder when the file is just `model.onnx`.
fn display_name(model: &std::path::Path) -> String {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if stem == "model"
        && let Some(dir) = model.parent().and_then(|p| p.file_name())
    {
        return dir.to_string_lossy().into_owned();
    }
    stem
}

/// Marks the rows no other row beats on both accuracy and speed.
pub fn mark_pareto(rows: &mut [Row]) {
    let points: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.validation_accuracy, r.inference_images_per_s))
        .collect();
    for (i, r) in rows.iter_mut().enumerate() {
        let (a, s) = points[i];
        r.pareto = !points
            .iter()
            .enumerate()
            .any(|(j, &(b, t))| j != i && b >= a && t >= s && (b > a || t > s));
    }
}

fn print_table(rows: &[Row], val_images: usize) {
    let mut order: Vec<&Row> = rows.iter().collect();
    order.sort_by(|a, b| b.validation_accuracy.total_cmp(&a.validation_accuracy));
    println!(
        "{:<24} {:>9} {:>8} {:>9} {:>9} {:>8} {:>9}  pareto",
        "network", "val acc", "val loss", "train s", "infer/s", "params", "file MB"
    );
    for r in order {
        println!(
            "{:<24} {:>8.2}% {:>8.4} {:>9.1} {:>9.1} {:>7.2}M {:>9.2}  {}",
            r.model,
            r.validation_accuracy * 100.0,
            r.validation_loss,
            r.train_seconds,
            r.inference_images_per_s,
            r.params as f64 / 1e6,
            r.file_bytes as f64 / 1e6,
            if r.pareto { "★" } else { "" }
        );
    }
    println!("validation: {val_images} images; infer/s: batch 8 on this machine");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(acc: f64, speed: f64) -> Row {
        Row {
            model: String::new(),
            validation_accuracy: acc,
            validation_loss: 0.0,
            per_class_accuracy: vec![],
            train_seconds: 0.0,
            inference_images_per_s: speed,
            params: 0,
            file_bytes: 0,
            pareto: false,
        }
    }

    #[test]
    fn the_pareto_front_is_what_nothing_beats_on_both() {
        // (accuracy, speed): a is fastest, c most accurate, b beaten by c on both, d ties a.
        let mut rows = vec![
            row(0.7, 100.0),
            row(0.8, 20.0),
            row(0.9, 30.0),
            row(0.7, 100.0),
        ];
        mark_pareto(&mut rows);
        let front: Vec<bool> = rows.iter().map(|r| r.pareto).collect();
        assert_eq!(front, vec![true, false, true, true]);
    }
}

//! `graft compare`: which backbone suits *this* dataset? Every network runs through
//! `compare::train_one` with one recipe and split, one after another; then one table, the
//! accuracy/speed Pareto front marked.

use super::train::{scan_with_bar, watch};
use crate::compare::{Recipe, Row, mark_pareto};
use crate::engine::DeviceChoice;
use crate::train::TrainingOptions;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Gallery names or ONNX files, comma-separated (`resnet18,googlenet,my.onnx`).
    #[arg(long, value_delimiter = ',', required = true)]
    pub models: Vec<PathBuf>,
    /// One sub-folder of images (or sound clips) per class.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub sound: super::sound::SoundArgs,
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
    options.sound_augmentation = args.sound.augmentation()?;
    // One split for every network.
    let audio = args.sound.settings()?;
    let data = scan_with_bar(&args.data, &audio)?;
    let (train, validation) = match &args.val_data {
        Some(dir) => {
            let v = scan_with_bar(dir, &audio)?;
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
    let recipe = Recipe {
        options: options.clone(),
        fine_tune: args.fine_tune,
    };
    let mut rows: Vec<Row> = Vec::new();
    for model in &args.models {
        let mut name = display_name(model);
        if rows.iter().any(|r| r.model == name) {
            name = format!("{name}-{}", rows.len() + 1);
        }
        eprintln!("── {name}");
        let imported = super::open_model_for(model, &train)?;
        let trained = crate::compare::train_one(
            &name,
            imported,
            &train,
            &validation,
            &recipe,
            &mut |session| watch(session),
        )?;
        if let Some(dir) = &args.export_dir {
            let out = dir.join(format!("{name}.onnx"));
            crate::onnx::export_with_labels(&trained.network, &trained.store, &out)?;
        }
        rows.push(trained.row);
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
        super::write_json(path, &report)?;
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

//! `graft` subcommands for headless use, over the same library calls the GUI makes.

mod bench;
mod boxes;
mod compare;
mod data;
mod detect;
mod evaluate;
mod infer;
mod inspect;
mod models;
mod predict;
mod sound;
pub mod train;
mod train_detect;

use crate::engine::DeviceChoice;
use crate::onnx::{self, Imported};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "graft",
    version,
    about = "Transfer learning for image networks: open, adapt, train, export ONNX."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Open this project in the designer window.
    #[arg(long, global = false)]
    pub project: Option<PathBuf>,
    /// Start on the default network and sample data, not the last project.
    #[arg(long)]
    pub fresh: bool,
    /// Drive the window through the whole loop, save a screenshot of each view here, quit.
    #[arg(long, value_name = "DIR")]
    pub screenshots: Option<PathBuf>,
    /// Measure UI frame times (the Network tab while training, or with --data the Data tab),
    /// write them as JSON, quit.
    #[arg(long, value_name = "OUT.json")]
    pub frame_bench: Option<PathBuf>,
    /// Open this ONNX network in the window (with the sample data).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Open this data folder in the window instead of the sample data. With --frame-bench:
    /// measure the Data tab on it (scrolling its images, moving the split) instead of the
    /// Network tab while training.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Image side for networks whose file leaves height and width open (N×3×?×?); 224 if
    /// not given. Applies to every command that opens a network.
    #[arg(long, global = true, value_name = "N")]
    pub input_size: Option<usize>,
}

/// `--input-size`, for every network the command opens.
static INPUT_SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Records `--input-size` before a command runs.
pub fn set_input_size(size: Option<usize>) -> Result<(), String> {
    if let Some(s) = size {
        if !(8..=4096).contains(&s) {
            return Err(format!("--input-size {s}: give a side between 8 and 4096"));
        }
        let _ = INPUT_SIZE.set(s);
    }
    Ok(())
}

fn import_options() -> onnx::ImportOptions {
    onnx::ImportOptions {
        image_size: INPUT_SIZE.get().copied(),
        ..Default::default()
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show a network's nodes (name, op, output shape, parameters) and totals.
    Inspect {
        /// An ONNX file, or `default` for the embedded EfficientNet-Lite0.
        model: PathBuf,
        /// Also list every node's attributes.
        #[arg(long)]
        attributes: bool,
        /// Print JSON (every node with its full name, shapes, parameters, MACs) for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Run a network on a NumPy array (NCHW float32) and save the outputs as .npy.
    Infer {
        model: PathBuf,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
        device: DeviceChoice,
    },
    /// Classify images with the model's own preprocessing and class names.
    Predict {
        model: PathBuf,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// How many classes to show per image.
        #[arg(long, default_value_t = 5)]
        top: usize,
        #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
        device: DeviceChoice,
    },
    /// Train a new head (and any unfrozen layers) on a folder of images, then export ONNX.
    Train(Box<train::TrainArgs>),
    /// Accuracy, per-class metrics and confusion matrix of a network on a labelled folder.
    Evaluate(evaluate::EvaluateArgs),
    /// Run a file in an independent runtime (tract) and in Graft; compare the outputs.
    Verify(evaluate::VerifyArgs),
    /// Train the same new head on several networks with one recipe and split; compare
    /// accuracy, speed and size in one table.
    Compare(Box<compare::CompareArgs>),
    /// Find objects with a detector: boxes per image, printed, as JSON, or drawn.
    Detect(Box<detect::DetectArgs>),
    /// Check a box dataset (YOLO, COCO or Pascal VOC): classes, boxes per class, what was
    /// clipped, dropped or skipped, and anchor boxes for a detector.
    Boxes(boxes::BoxesArgs),
    /// Scan a folder of classes as training would: images (or sound clips) per class, the
    /// files skipped and why, and the scan's time.
    Data(data::DataArgs),
    /// The gallery of pretrained networks: list, download, locate.
    Models {
        #[command(subcommand)]
        action: models::ModelsAction,
    },
    /// Time the sound front end on one thread: every sound file under DIR decoded,
    /// resampled, cut to a clip and turned into a 224×224×3 spectrogram input (JSON line).
    BenchFront {
        dir: PathBuf,
        #[command(flatten)]
        sound: sound::SoundArgs,
    },
    /// Time inference: median images/s over repeated runs on random input (JSON line).
    Bench {
        model: PathBuf,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        #[arg(long, default_value_t = 10)]
        iterations: usize,
        #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
        device: DeviceChoice,
    },
}

/// Runs a subcommand; the error is one line for the user.
pub fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Inspect {
            model,
            attributes,
            json,
        } => inspect::run(&model, attributes, json),
        Command::Infer {
            model,
            input,
            output,
            device,
        } => infer::run(&model, &input, &output, device),
        Command::Predict {
            model,
            images,
            top,
            device,
        } => predict::run(&model, &images, top, device),
        Command::Train(args) => train::run(*args),
        Command::Evaluate(args) => evaluate::evaluate_cmd(args),
        Command::Verify(args) => evaluate::verify_cmd(args),
        Command::Bench {
            model,
            batch,
            iterations,
            device,
        } => bench::run(&model, batch, iterations.max(1), device),
        Command::BenchFront { dir, sound } => bench::front(&dir, &sound),
        Command::Models { action } => models::run(action),
        Command::Compare(args) => compare::run(*args),
        Command::Boxes(args) => boxes::run(&args),
        Command::Data(args) => data::run(&args),
        Command::Detect(args) => detect::run(&args),
    }
}

/// Writes a JSON report (pretty, atomically): `--report`, `--json`.
pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    crate::files::write_atomic(path, text.as_bytes())
}

/// The width of a printed table's class column: the longest name, 5 to 24 characters.
pub(crate) fn class_column(names: &[String]) -> usize {
    names
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 24)
}

/// Opens a model file, the embedded default for `default`, or a gallery network by name
/// (downloaded first when it is not cached).
pub fn open_model(path: &Path) -> Result<Imported, String> {
    if path.as_os_str() == "default" && !path.exists() {
        return onnx::import_bytes(crate::DEFAULT_MODEL)
            .map_err(|e| format!("{}: {e}", path.display()));
    }
    let file = model_path(path)?;
    crate::gallery::import_file(&file, &import_options())
        .map_err(|e| format!("{}: {e}", file.display()))
}

/// Opens a model for training on `data`: a file that leaves the image size open is built at
/// the images' typical side ([`Dataset::typical_side`](crate::data::Dataset::typical_side))
/// unless `--input-size` chose one.
pub fn open_model_for(path: &Path, data: &crate::data::Dataset) -> Result<Imported, String> {
    let imported = open_model(path)?;
    if !imported.network.metadata.open_image_size || INPUT_SIZE.get().is_some() {
        return Ok(imported);
    }
    let Some(side) = data.typical_side() else {
        return Ok(imported);
    };
    eprintln!(
        "{}: the file leaves the image size open; built at {side}×{side}, the training \
         images' typical side (--input-size N chooses another)",
        path.display()
    );
    let file = model_path(path)?;
    let options = onnx::ImportOptions {
        image_size: Some(side),
        ..import_options()
    };
    crate::gallery::import_file(&file, &options).map_err(|e| format!("{}: {e}", file.display()))
}

/// A model argument as a file path: itself, or a gallery network's cached file (downloaded
/// first when needed). For the window, which opens files.
pub fn model_path(path: &Path) -> Result<PathBuf, String> {
    match crate::gallery::entry_for(path)? {
        Some(entry) => models::pull_with_bar(&entry),
        None => Ok(path.to_path_buf()),
    }
}

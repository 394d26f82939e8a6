//! `graft detect MODEL IMAGE...`: the boxes a detector finds, in each image's own pixels —
//! printed, as JSON (`--json OUT`), or drawn onto copies of the images (`--draw DIR`).

use crate::detect::predict::{Detector, draw};
use crate::detect::yolo::Suppression;
use crate::engine::{DeviceChoice, select_device};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DetectArgs {
    /// A network with a detection head (an ONNX file Graft exported).
    pub model: PathBuf,
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Write every image's boxes as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write each image with its boxes drawn into this folder.
    #[arg(long)]
    pub draw: Option<PathBuf>,
    #[command(flatten)]
    pub suppression: SuppressionArgs,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
}

/// Non-maximum suppression and limits: `graft detect`'s, and what `graft train --task
/// detect` writes into the exported file.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct SuppressionArgs {
    /// Lowest score kept.
    #[arg(long, default_value_t = Suppression::default().score_threshold)]
    pub score: f32,
    /// Overlap above which the weaker of two boxes of a class is dropped.
    #[arg(long, default_value_t = Suppression::default().iou_threshold)]
    pub iou: f32,
    /// Most boxes per image (per class in an exported file's NonMaxSuppression).
    #[arg(long, default_value_t = Suppression::default().max_detections)]
    pub max: usize,
}

impl SuppressionArgs {
    pub fn get(&self) -> Result<Suppression, String> {
        if !(0.0..=1.0).contains(&self.score) || !(0.0..=1.0).contains(&self.iou) {
            return Err(format!(
                "--score {} and --iou {} must be between 0 and 1",
                self.score, self.iou
            ));
        }
        Ok(Suppression {
            score_threshold: self.score,
            iou_threshold: self.iou,
            max_detections: self.max.max(1),
        })
    }
}

pub fn run(args: &DetectArgs) -> Result<(), String> {
    let imported = super::open_model(&args.model)?;
    let dev = select_device(args.device)?;
    let mut detector = Detector::new(&imported.network, &imported.store, &dev.device)
        .map_err(|e| format!("{}: {e}", args.model.display()))?;
    detector.suppression = args.suppression.get()?;
    if let Some(dir) = &args.draw {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let classes = detector.spec().classes.clone();
    let mut report = Vec::new();
    let mut failed = 0;
    for path in &args.images {
        let mut img = match crate::data::preprocess::load_rgb(path) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("skipped {}: {e}", path.display());
                failed += 1;
                continue;
            }
        };
        let found = detector.detect(&img)?;
        println!("{}: {} boxes", path.display(), found.len());
        for p in &found {
            let b = p.bbox;
            println!(
                "  {:<16} {:5.1}%  {:.0},{:.0} – {:.0},{:.0}",
                classes[p.class],
                p.score * 100.0,
                b.x0,
                b.y0,
                b.x1,
                b.y1
            );
        }
        if let Some(dir) = &args.draw {
            draw(&mut img, &found);
            let name = path
                .file_name()
                .map_or("image.png".into(), |n| n.to_os_string());
            let out = dir.join(name).with_extension("png");
            let size = [img.width(), img.height()];
            crate::files::write_png(&out, img.as_raw(), size, image::ExtendedColorType::Rgb8)?;
        }
        report.push(serde_json::json!({
            "image": path,
            "boxes": found.iter().map(|p| serde_json::json!({
                "class": classes[p.class], "score": p.score,
                "box": [p.bbox.x0, p.bbox.y0, p.bbox.x1, p.bbox.y1],
            })).collect::<Vec<_>>(),
        }));
    }
    if let Some(out) = &args.json {
        super::write_json(out, &report)?;
    }
    if failed > 0 {
        return Err(format!(
            "{failed} of {} image(s) could not be read",
            args.images.len()
        ));
    }
    Ok(())
}

//! `graft boxes DIR`: what Graft reads of a box dataset — the layout found, classes, boxes
//! per class, what was clipped, dropped or skipped, box sizes, and the anchors k-means on IoU
//! finds for a square input of `--side` pixels (boxes letterboxed into it, as training will).

use crate::detect::anchors;
use crate::detect::dataset::{self, BoxFormat};
use crate::detect::transform::Fit;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct BoxesArgs {
    /// The dataset's folder (YOLO, COCO or Pascal VOC layout; found automatically).
    pub data: std::path::PathBuf,
    /// Read it as this layout instead of detecting it.
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// How many anchors to estimate.
    #[arg(long, default_value_t = 6)]
    pub anchors: usize,
    /// The detector's input side, for the anchors.
    #[arg(long, default_value_t = 416)]
    pub side: usize,
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FormatArg {
    Yolo,
    Coco,
    Voc,
}

impl From<FormatArg> for BoxFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Yolo => BoxFormat::Yolo,
            FormatArg::Coco => BoxFormat::Coco,
            FormatArg::Voc => BoxFormat::Voc,
        }
    }
}

pub fn run(args: &BoxesArgs) -> Result<(), String> {
    let ds = dataset::load(&args.data, args.format.map(Into::into)).map_err(|e| e.to_string())?;
    // Box sizes in the detector's input, where anchors live.
    let sizes = anchors::input_box_sizes(&ds.images, args.side, Fit::Letterbox);
    let found = anchors::estimate(&sizes, args.anchors, 0);
    let counts = ds.counts();
    if args.json {
        let v = serde_json::json!({
            "root": ds.root,
            "format": ds.format.name(),
            "images": ds.images.len(),
            "classes": ds.classes.iter().zip(&counts)
                .map(|(c, n)| serde_json::json!({"name": c, "boxes": n})).collect::<Vec<_>>(),
            "findings": ds.findings.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "side": args.side,
            "anchors": found.as_ref().ok().map(|a| &a.sizes),
            "anchor_mean_iou": found.as_ref().ok().map(|a| a.mean_iou),
            "anchor_error": found.as_ref().err(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!(
        "{}: {} layout, {} images, {} boxes",
        display(&ds.root),
        ds.format.name(),
        ds.images.len(),
        sizes.len()
    );
    for (c, n) in ds.classes.iter().zip(&counts) {
        println!("  {c:<24} {n:>7} boxes");
    }
    if !ds.findings.is_empty() {
        println!("{} findings:", ds.findings.len());
        for f in &ds.findings {
            println!("  {f}");
        }
    }
    if let Some(dir) = &ds.validation_dir {
        println!("validation images named by the dataset: {}", display(dir));
    }
    match found {
        Ok(a) => println!(
            "{} anchors for a {s}×{s} input (mean IoU {:.2}): {}",
            a.sizes.len(),
            a.mean_iou,
            a.list(),
            s = args.side
        ),
        Err(e) => println!("anchors: {e}"),
    }
    Ok(())
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

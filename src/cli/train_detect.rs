//! `graft train --task detect`: the detection arguments (`--fit`, `--box-augment`) and the job
//! a box dataset trains — the dataset read with its findings, the validation set, anchors
//! estimated from the training boxes, and the detection head on the chosen feature map (or
//! the network's own head kept, to fine-tune a detector).

use super::train::{Job, TrainArgs};
use crate::detect::dataset::Reading;
use crate::detect::transform::{BoxAugmentation, Fit};
use crate::graph::edit::apply;
use crate::train::TrainingOptions;
use std::path::Path;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum FitArg {
    Letterbox,
    Stretch,
}

impl From<FitArg> for Fit {
    fn from(f: FitArg) -> Self {
        match f {
            FitArg::Letterbox => Fit::Letterbox,
            FitArg::Stretch => Fit::Stretch,
        }
    }
}

/// `--box-augment`: `default`, `none`, or a list (see [`TrainArgs::box_augment`]).
pub fn parse_box_augment(spec: &str) -> Result<Option<BoxAugmentation>, String> {
    match spec {
        "default" => return Ok(Some(BoxAugmentation::default())),
        "none" => return Ok(None),
        _ => {}
    }
    let mut a = BoxAugmentation {
        horizontal_flip: false,
        vertical_flip: false,
        scale: (1.0, 1.0),
        translation: 0.0,
        colour: 0.0,
    };
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        let num = |v: &str| -> Result<f32, String> {
            v.parse::<f32>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or(format!("{part}: not a non-negative number"))
        };
        match key {
            "flip" => a.horizontal_flip = true,
            "vflip" => a.vertical_flip = true,
            "scale" => {
                let (lo, hi) = value
                    .split_once(':')
                    .ok_or(format!("{part}: use scale=MIN:MAX"))?;
                a.scale = (num(lo)?, num(hi)?);
                if a.scale.0 <= 0.0 || a.scale.0 > a.scale.1 {
                    return Err(format!("{part}: need 0 < MIN ≤ MAX"));
                }
            }
            "translate" => a.translation = num(value)?,
            "colour" | "color" => a.colour = num(value)?,
            other => {
                return Err(format!(
                    "unknown box augmentation '{other}' (flip, vflip, scale=MIN:MAX, translate=, colour=)"
                ));
            }
        }
    }
    Ok(Some(a))
}

/// Reads a box dataset and reports what it found.
fn load_boxes(dir: &Path, args: &TrainArgs) -> Result<crate::detect::dataset::BoxDataset, String> {
    let ds = crate::detect::dataset::load(dir, args.format.map(Into::into))
        .map_err(|e| e.to_string())?;
    for f in &ds.findings {
        eprintln!("{f}");
    }
    let counts = ds.counts();
    let summary: Vec<String> = ds
        .classes
        .iter()
        .zip(&counts)
        .map(|(c, n)| format!("{c} {n}"))
        .collect();
    eprintln!(
        "{}: {} layout, {} images, boxes per class: {}",
        dir.display(),
        ds.format.name(),
        ds.images.len(),
        summary.join(", ")
    );
    Ok(ds)
}

/// A detector: the box dataset (validation from `--val-data`, `--val-split`, or the folder
/// the dataset's own `data.yaml` names), anchors estimated from the training boxes at the
/// network's input side, and a detection head on the chosen feature map.
pub(super) fn detector_job(args: &TrainArgs, options: &TrainingOptions) -> Result<Job, String> {
    let boxes = load_boxes(&args.data, args)?;
    let data = boxes.to_dataset();
    data.validate().map_err(|e| e.to_string())?;
    let imported = super::open_model_for(&args.model, &data)?;
    let (mut net, mut store) = (imported.network, imported.store);
    let second = match (&args.val_data, args.val_split) {
        (Some(dir), _) => Some(load_boxes(dir, args)?),
        (None, None) => {
            let own = crate::detect::dataset::load_validation(&boxes, Reading::quiet())
                .map_err(|e| e.to_string())?;
            if let Some(v) = &own {
                eprintln!(
                    "{}: {} validation images named by the dataset",
                    v.root.display(),
                    v.images.len()
                );
            }
            own
        }
        _ => None,
    };
    let (train, train_images, validation) = match (second, args.val_split) {
        (Some(v), _) => {
            let v = v.to_dataset();
            data.same_classes(&v).map_err(|e| e.to_string())?;
            (data, boxes.images, Some(v))
        }
        (None, Some(f)) if f > 0.0 => {
            let (t, v) = data.split(f, options.seed).map_err(|e| e.to_string())?;
            let kept: std::collections::HashSet<&Path> =
                t.samples.iter().map(|s| s.path.as_path()).collect();
            let images = boxes
                .images
                .iter()
                .filter(|i| kept.contains(i.path.as_path()))
                .cloned()
                .collect();
            (t, images, Some(v))
        }
        _ => (data, boxes.images, None),
    };
    // A detector for these classes trains on (fine-tuning a trained one); anything else
    // gets a new head.
    if let Some(spec) = crate::graph::edit::DetectionSpec::of(&net)
        && spec.classes == train.classes
        && args.feature.is_none()
        && args.scales.is_none_or(|s| s == spec.scales.len())
    {
        eprintln!("keeping the network's detection head ({})", spec.describe());
        return Ok((net, store, train, validation));
    }
    let side = match net.input.shape[..] {
        [_, _, h, w] if h == w => h,
        ref s => {
            return Err(format!(
                "a detector takes square images; the network takes {s:?}"
            ));
        }
    };
    let sizes = crate::detect::anchors::input_box_sizes(&train_images, side, options.detection.fit);
    let anchors = crate::detect::anchors::estimate(&sizes, options.detection.anchor_total(), 0)?;
    eprintln!(
        "{} anchors for the {side}×{side} input (mean IoU {:.2}): {}",
        anchors.sizes.len(),
        anchors.mean_iou,
        anchors.list()
    );
    let node = match &args.feature {
        Some(n) => n.clone(),
        None => crate::graph::edit::default_feature(&net, &store)
            .ok_or("no stride-16 or stride-32 feature map found; name one with --feature")?,
    };
    let edit = options.detection.head_edit(
        node.clone(),
        train.classes.clone(),
        anchors.sizes,
        options.seed,
    );
    apply(&mut net, &mut store, &edit).map_err(|e| e.to_string())?;
    let spec = crate::graph::edit::DetectionSpec::of(&net).ok_or("the head was not added")?;
    eprintln!("detection head on {node} ({})", spec.describe());
    Ok((net, store, train, validation))
}

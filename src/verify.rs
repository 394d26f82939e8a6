//! Does an exported file behave elsewhere as it did here? Runs it in an independent ONNX
//! runtime (tract) and in Graft's engine on the same preprocessed images, and compares.

use crate::audio::clips::SoundFraming;
use crate::audio::front::FrontEnd;
use crate::data::Sample;
use crate::data::preprocess::image_to_input;
use crate::engine::{Model, optimize};
use crate::graph::Network;
use crate::weights::Store;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

#[derive(Clone, Debug, Serialize)]
pub struct VerifyReport {
    pub images: usize,
    /// Largest |tract − Graft| over every output value.
    pub max_abs_diff: f32,
    /// Images whose top-1 class is the same in both runtimes.
    pub top1_agreement: f64,
    pub failed: Vec<(PathBuf, String)>,
    /// The largest difference allowed: 1e-4 for images; 1e-3 for a sound network, whose file
    /// computes its spectrograms with the runtime's own FFT.
    pub tolerance: f32,
}

impl VerifyReport {
    /// The agreement Graft promises: every top-1 the same, outputs within the tolerance.
    pub fn passed(&self) -> bool {
        self.images > 0 && self.top1_agreement == 1.0 && self.max_abs_diff <= self.tolerance
    }
}

/// The shape of one input to the exported file: `[1, c, h, w]`, or `[1, samples]` of raw
/// sound for a network trained on sound.
fn file_input_shape(net: &Network) -> Result<Vec<usize>, String> {
    if let Some(f) = FrontEnd::of(net) {
        return Ok(vec![1, f.settings.clip_samples()]);
    }
    let [c, h, w] = net
        .input_chw()
        .ok_or("the network does not take N×C×H×W images")?;
    Ok(vec![1, c, h, w])
}

/// The file in tract, optimised and runnable for one input of `shape`.
fn tract_model(
    onnx_bytes: &[u8],
    shape: &[usize],
) -> Result<std::sync::Arc<TypedRunnableModel>, String> {
    tract_onnx::onnx()
        .model_for_read(&mut &onnx_bytes[..])
        .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(|e| format!("tract cannot load the file: {e:#}"))
}

/// Whether an independent runtime (tract) loads and optimises an exported file: the quick
/// check after every export in the window.
pub fn tract_loads(onnx_bytes: &[u8], net: &Network) -> Result<(), String> {
    let shape = file_input_shape(net).unwrap_or_else(|_| vec![1, 3, 224, 224]);
    tract_model(onnx_bytes, &shape).map(|_| ())
}

/// Compares on up to `limit` images (sound files for a network trained on sound: the file
/// gets the raw clip, Graft its own spectrogram of it). `onnx_bytes` is the file as written.
pub fn verify(
    onnx_bytes: &[u8],
    net: &Network,
    store: &Store,
    images: &[PathBuf],
    limit: usize,
) -> Result<VerifyReport, String> {
    let (pre, [c, h, w]) = net.input_preprocess()?;
    let file_shape = file_input_shape(net)?;
    let runnable = tract_model(onnx_bytes, &file_shape)?;
    let sound = FrontEnd::of(net).map(SoundFraming::plain);
    let (fnet, fstore) = optimize::for_inference(net, store);
    let model =
        Model::build(&fnet, &fstore, &burn::tensor::Device::flex()).map_err(|e| e.to_string())?;
    let mut report = VerifyReport {
        images: 0,
        max_abs_diff: 0.0,
        top1_agreement: 0.0,
        failed: Vec::new(),
        tolerance: if sound.is_some() { 1e-3 } else { 1e-4 },
    };
    let mut agree = 0;
    for path in images.iter().take(limit) {
        // (Graft's input, the file's input)
        let fed = match &sound {
            Some(framing) => {
                let sample = Sample {
                    path: path.clone(),
                    label: 0,
                    objects: Vec::new(),
                    start: Some(0.0),
                };
                framing
                    .clip(&sample)
                    .map(|clip| (framing.front.input(&clip, h, c), clip))
                    .map_err(|e| e.to_string())
            }
            None => match image_to_input(path, &pre) {
                Ok(x) if c == 3 => Ok((x.clone(), x)),
                Ok(_) => Err("verify feeds RGB images".into()),
                Err(e) => Err(e),
            },
        };
        let (x, file_x) = match fed {
            Ok(v) => v,
            Err(e) => {
                report.failed.push((path.clone(), e));
                continue;
            }
        };
        let ours = model
            .infer(&[1, c, h, w], x)
            .map_err(|e| e.to_string())?
            .remove(0)
            .1;
        let input = Tensor::from_shape(&file_shape, &file_x).map_err(|e| e.to_string())?;
        let out = runnable
            .run(tvec!(input.into()))
            .map_err(|e| format!("tract failed on {}: {e:#}", path.display()))?;
        let theirs: Vec<f32> = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| e.to_string())?
            .iter()
            .copied()
            .collect();
        if theirs.len() != ours.len() {
            return Err(format!(
                "tract gives {} outputs, Graft {}",
                theirs.len(),
                ours.len()
            ));
        }
        for (a, b) in ours.iter().zip(&theirs) {
            report.max_abs_diff = report.max_abs_diff.max((a - b).abs());
        }
        if crate::train::metrics::argmax(&ours).0 == crate::train::metrics::argmax(&theirs).0 {
            agree += 1;
        }
        report.images += 1;
    }
    report.top1_agreement = if report.images > 0 {
        agree as f64 / report.images as f64
    } else {
        0.0
    };
    Ok(report)
}

/// What [`verify`] feeds a network, sorted: every sound file under `dir` if it was trained
/// on sound, else every image.
pub fn inputs_for(net: &Network, dir: &Path) -> Vec<PathBuf> {
    files_in(dir, FrontEnd::of(net).is_some())
}

fn files_in(dir: &Path, sounds: bool) -> Vec<PathBuf> {
    let image = |p: &Path| {
        p.extension().is_some_and(|x| {
            crate::data::folder::IMAGE_EXTENSIONS
                .contains(&x.to_string_lossy().to_lowercase().as_str())
        })
    };
    crate::files::under(dir, |p| {
        if sounds {
            crate::audio::decode::is_audio(p)
        } else {
            image(p)
        }
    })
    .unwrap_or_default()
}

/// A detector's file against Graft: the same final boxes.
#[derive(Clone, Debug, Serialize)]
pub struct DetectorVerifyReport {
    pub images: usize,
    /// Boxes Graft found (over all images), each paired with the file's box of its class
    /// that overlaps it most.
    pub boxes: usize,
    /// Images where the two runtimes found a different number of boxes.
    pub count_mismatches: usize,
    /// The lowest IoU of a pair (1 when there were none).
    pub min_iou: f32,
    /// The largest |score difference| of a pair.
    pub max_score_diff: f32,
    /// Largest |tract − Graft| over the prediction maps (the file's last outputs).
    pub max_map_diff: f32,
    pub failed: Vec<(PathBuf, String)>,
}

impl DetectorVerifyReport {
    /// What Graft promises of an exported detector: the same boxes (IoU ≥ 0.99), scores
    /// within 1e-4.
    pub fn passed(&self) -> bool {
        self.images > 0
            && self.count_mismatches == 0
            && self.min_iou >= 0.99
            && self.max_score_diff <= 1e-4
    }
}

/// Runs a detector's file (decoding and NMS inside, `onnx::detector`) in tract and Graft's
/// own decoding and suppression on the same letterboxed images, and pairs the boxes.
pub fn verify_detector(
    onnx_bytes: &[u8],
    net: &Network,
    store: &Store,
    images: &[PathBuf],
    limit: usize,
) -> Result<DetectorVerifyReport, String> {
    use crate::detect::transform::fitted;
    use crate::detect::yolo::{Suppression, decode, image_maps, suppress};
    let spec = crate::graph::edit::DetectionSpec::of(net).ok_or("not a detector")?;
    let (pre, [c, h, w]) = net.input_preprocess()?;
    if c != 3 || h != w {
        return Err(format!("a detector takes 3×S×S images, not {c}×{h}×{w}"));
    }
    let runnable = tract_model(onnx_bytes, &[1, c, h, w])?;
    let (fnet, fstore) = optimize::for_inference(net, store);
    let model =
        Model::build(&fnet, &fstore, &burn::tensor::Device::flex()).map_err(|e| e.to_string())?;
    let s = Suppression::default();
    let mut r = DetectorVerifyReport {
        images: 0,
        boxes: 0,
        count_mismatches: 0,
        min_iou: 1.0,
        max_score_diff: 0.0,
        max_map_diff: 0.0,
        failed: Vec::new(),
    };
    for path in images.iter().take(limit) {
        let img = match crate::data::preprocess::load_rgb(path) {
            Ok(i) => i,
            Err(e) => {
                r.failed.push((path.clone(), e));
                continue;
            }
        };
        let view = fitted(&img, &[], h, spec.fit);
        let x = crate::data::preprocess::normalize_chw(&view.image, &pre);
        let maps = model
            .infer(&[1, c, h, w], x.clone())
            .map_err(|e| e.to_string())?;
        let ours = suppress(decode(&image_maps(&maps, 0)?, &spec, s.score_threshold), &s);
        let input = Tensor::from_shape(&[1, c, h, w], &x).map_err(|e| e.to_string())?;
        let out = runnable
            .run(tvec!(input.into()))
            .map_err(|e| format!("tract failed on {}: {e:#}", path.display()))?;
        let floats = |t: &TValue| -> Result<Vec<f32>, String> {
            Ok(t.to_plain_array_view::<f32>()
                .map_err(|e| e.to_string())?
                .iter()
                .copied()
                .collect())
        };
        if out.len() != 4 + maps.len() {
            return Err(format!(
                "the file has {} outputs; verify compares detectors exported with NMS inside \
                 (boxes, scores, classes, batch_index, then {} map(s))",
                out.len(),
                maps.len()
            ));
        }
        // The maps are the file's last outputs, in the spec's order.
        for ((_, map), theirs) in maps.iter().zip(&out[4..]) {
            let theirs = floats(theirs)?;
            if theirs.len() != map.len() {
                return Err(format!(
                    "the file's map has {} values, Graft's {}",
                    theirs.len(),
                    map.len()
                ));
            }
            for (a, b) in map.iter().zip(&theirs) {
                r.max_map_diff = r.max_map_diff.max((a - b).abs());
            }
        }
        let boxes = floats(&out[0])?;
        let scores = floats(&out[1])?;
        let classes: Vec<i64> = out[2]
            .to_plain_array_view::<i64>()
            .map_err(|e| e.to_string())?
            .iter()
            .copied()
            .collect();
        let mut used = vec![false; scores.len()];
        if scores.len() != ours.len() {
            r.count_mismatches += 1;
        }
        for o in &ours {
            let best = (0..scores.len())
                .filter(|&i| !used[i] && classes[i] == o.class as i64)
                .map(|i| {
                    let b = &boxes[i * 4..i * 4 + 4];
                    (
                        i,
                        crate::detect::BBox::new(b[0], b[1], b[2], b[3]).iou(&o.bbox),
                    )
                })
                .max_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((i, iou)) => {
                    used[i] = true;
                    r.min_iou = r.min_iou.min(iou);
                    r.max_score_diff = r.max_score_diff.max((scores[i] - o.score).abs());
                }
                None => r.min_iou = 0.0,
            }
            r.boxes += 1;
        }
        r.images += 1;
    }
    Ok(r)
}

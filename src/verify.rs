//! Does an exported file behave elsewhere as it did here? Runs it in an independent ONNX
//! runtime (tract) and in Graft's engine on the same preprocessed images, and compares.

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
}

impl VerifyReport {
    /// The agreement Graft promises: every top-1 the same, outputs within 1e-4.
    pub fn passed(&self) -> bool {
        self.images > 0 && self.top1_agreement == 1.0 && self.max_abs_diff <= 1e-4
    }
}

/// The file in tract, optimised and runnable for one `[1, c, h, w]` image.
fn tract_model(
    onnx_bytes: &[u8],
    [c, h, w]: [usize; 3],
) -> Result<std::sync::Arc<TypedRunnableModel>, String> {
    tract_onnx::onnx()
        .model_for_read(&mut &onnx_bytes[..])
        .and_then(|m| m.with_input_fact(0, f32::fact([1, c, h, w]).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(|e| format!("tract cannot load the file: {e:#}"))
}

/// Whether an independent runtime (tract) loads and optimises an exported file: the quick
/// check after every export in the window.
pub fn tract_loads(onnx_bytes: &[u8], net: &Network) -> Result<(), String> {
    let chw = net.input_chw().unwrap_or([3, 224, 224]);
    tract_model(onnx_bytes, chw).map(|_| ())
}

/// Compares on up to `limit` images. `onnx_bytes` is the file as written.
pub fn verify(
    onnx_bytes: &[u8],
    net: &Network,
    store: &Store,
    images: &[PathBuf],
    limit: usize,
) -> Result<VerifyReport, String> {
    let (pre, [c, h, w]) = net.input_preprocess()?;
    let runnable = tract_model(onnx_bytes, [c, h, w])?;
    let (fnet, fstore) = optimize::for_inference(net, store);
    let model =
        Model::build(&fnet, &fstore, &burn::tensor::Device::flex()).map_err(|e| e.to_string())?;
    let mut report = VerifyReport {
        images: 0,
        max_abs_diff: 0.0,
        top1_agreement: 0.0,
        failed: Vec::new(),
    };
    let mut agree = 0;
    for path in images.iter().take(limit) {
        let x = match image_to_input(path, &pre) {
            Ok(x) if c == 3 => x,
            Ok(_) => {
                report
                    .failed
                    .push((path.clone(), "verify feeds RGB images".into()));
                continue;
            }
            Err(e) => {
                report.failed.push((path.clone(), e));
                continue;
            }
        };
        let ours = model
            .infer(&[1, c, h, w], x.clone())
            .map_err(|e| e.to_string())?
            .remove(0)
            .1;
        let input = Tensor::from_shape(&[1, c, h, w], &x).map_err(|e| e.to_string())?;
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

/// Every image under `dir` (an image folder or a flat folder), sorted.
pub fn images_in(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| {
                crate::data::folder::IMAGE_EXTENSIONS
                    .contains(&x.to_string_lossy().to_lowercase().as_str())
            }) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

use crate::data::preprocess::image_to_input;
use crate::engine::{DeviceChoice, Model, optimize, select_device};
use crate::graph::Op;
use std::path::{Path, PathBuf};

const BATCH: usize = 16;

pub fn run(
    model: &Path,
    images: &[PathBuf],
    top: usize,
    device: DeviceChoice,
) -> Result<(), String> {
    let imported = super::open_model(model)?;
    let net = &imported.network;
    let [c, h, w] = net
        .input_chw()
        .ok_or("predict needs an N×C×H×W image network")?;
    if c != 3 {
        return Err(format!(
            "the network takes {c} channels; predict feeds RGB images"
        ));
    }
    let pre = net.preprocess();
    if pre.crop != h || pre.crop != w {
        return Err(format!(
            "the preprocessing crops {} but the network takes {h}×{w}",
            pre.crop
        ));
    }
    if net.metadata.preprocess.is_none() {
        eprintln!("note: the file has no graft.preprocess metadata; using ImageNet mean/std");
    }
    // A network that already ends in Softmax gives probabilities.
    let ends_in_softmax = net
        .outputs
        .first()
        .and_then(|o| net.producer(o))
        .is_some_and(|i| matches!(net.nodes[i].op, Op::Softmax { .. }));
    let dev = select_device(device)?;
    let (fnet, fstore) = optimize::for_inference(net, &imported.store);
    let model = Model::build(&fnet, &fstore, &dev.device).map_err(|e| e.to_string())?;

    let mut failed = Vec::new();
    for chunk in images.chunks(BATCH) {
        let mut batch = Vec::new();
        let mut paths = Vec::new();
        for path in chunk {
            match image_to_input(path, &pre) {
                Ok(x) => {
                    batch.extend(x);
                    paths.push(path);
                }
                Err(e) => failed.push(format!("{}: {e}", path.display())),
            }
        }
        if paths.is_empty() {
            continue;
        }
        let outputs = model
            .infer(&[paths.len(), 3, h, w], batch)
            .map_err(|e| e.to_string())?;
        let (shape, logits) = outputs
            .into_iter()
            .next()
            .ok_or("the network has no output")?;
        let classes = shape.iter().skip(1).product::<usize>();
        for (i, path) in paths.iter().enumerate() {
            let row = &logits[i * classes..(i + 1) * classes];
            let probs = if ends_in_softmax {
                row.to_vec()
            } else {
                softmax(row)
            };
            let mut order: Vec<usize> = (0..classes).collect();
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
            println!("{}", path.display());
            for &k in order.iter().take(top) {
                let name = net
                    .metadata
                    .labels
                    .get(k)
                    .cloned()
                    .unwrap_or_else(|| format!("class {k}"));
                println!("  {:6.2}%  {name}", probs[k] * 100.0);
            }
        }
    }
    for f in &failed {
        eprintln!("skipped {f}");
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} image(s) could not be read",
            failed.len(),
            images.len()
        ))
    }
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|v| v / sum).collect()
}

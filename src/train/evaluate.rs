//! Evaluating a finished network on a labelled image folder.

use super::metrics::{Accumulator, Evaluation};
use crate::classify::probabilities;
use crate::data::loader::{Transform, spawn_batches};
use crate::data::{Dataset, Skipped};
use crate::engine::{DeviceInfo, Mode, Model, Value, optimize};
use crate::graph::Network;
use crate::weights::Store;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// The evaluation and the images that could not be read.
pub struct EvaluationRun {
    pub evaluation: Evaluation,
    pub failed: Vec<Skipped>,
}

/// Runs `net` over every image of `data`. The dataset's class folders are matched to the
/// network's class names by name (in any order); a class the network does not know is an
/// error.
pub fn evaluate(
    net: &Network,
    store: &Store,
    data: &Dataset,
    device: &DeviceInfo,
    mut progress: impl FnMut(usize, usize),
) -> Result<EvaluationRun, String> {
    let labels = &net.metadata.labels;
    let mapping: Vec<usize> = if labels.is_empty() {
        (0..data.classes.len()).collect()
    } else {
        data.classes
            .iter()
            .map(|c| {
                labels.iter().position(|l| l == c).ok_or_else(|| {
                    format!("class folder '{c}' is not one of the network's classes")
                })
            })
            .collect::<Result<_, _>>()?
    };
    let classes = if labels.is_empty() {
        data.classes.clone()
    } else {
        labels.clone()
    };
    let (preprocess, [channels, h, _]) = net.input_preprocess()?;
    let transform = Arc::new(Transform {
        preprocess,
        channels,
        augment: None,
    });
    let ends_in_softmax = net.ends_in_softmax();
    let (fnet, fstore) = optimize::for_inference(net, store);
    let model = Model::build(&fnet, &fstore, &device.device).map_err(|e| e.to_string())?;
    let samples = Arc::new(data.samples.clone());
    let order: Vec<usize> = (0..samples.len()).collect();
    let rx = spawn_batches(
        samples.clone(),
        order,
        32,
        transform,
        0,
        0,
        2,
        Arc::new(AtomicBool::new(false)),
    )?;
    let mut acc = Accumulator::new(classes);
    let mut failed = Vec::new();
    let mut done = 0;
    for b in rx {
        done += b.indices.len() + b.failed.len();
        failed.extend(b.failed);
        if b.indices.is_empty() {
            continue;
        }
        let k = b.indices.len();
        let x = Value::from_data(&[k, channels, h, h], b.data, &device.device);
        let out = model
            .forward(x, Mode::Inference)
            .map_err(|e| e.to_string())?;
        let values = out[0].to_vec()?;
        let c = values.len() / k;
        for (j, (&label, &idx)) in b.labels.iter().zip(&b.indices).enumerate() {
            let row = &values[j * c..(j + 1) * c];
            acc.add(
                &probabilities(row, ends_in_softmax),
                mapping[label],
                samples[idx].path.clone(),
            );
        }
        progress(done, samples.len());
    }
    Ok(EvaluationRun {
        evaluation: acc.finish(),
        failed,
    })
}

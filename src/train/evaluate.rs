//! Evaluating a finished network on labelled images: a classifier on an image folder, a
//! detector on a box dataset.

use super::metrics::{Accumulator, Evaluation};
use crate::classify::probabilities;
use crate::data::loader::{Batch, BoxFraming, Transform, spawn_batches};
use crate::data::{Dataset, Sample, Skipped};
use crate::detect::evaluate::{Collector, DetectionEvaluation};
use crate::detect::transform::Fit;
use crate::engine::{DeviceInfo, Mode, Model, Value, optimize};
use crate::graph::Network;
use crate::graph::edit::DetectionSpec;
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
    progress: impl FnMut(usize, usize),
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
    let ends_in_softmax = net.ends_in_softmax();
    let mut acc = Accumulator::new(classes);
    let samples = &data.samples;
    let failed = over_images(net, store, samples, None, device, progress, |b, outputs| {
        let values = &outputs[0].1;
        let c = values.len() / b.indices.len();
        for (j, (&label, &idx)) in b.labels.iter().zip(&b.indices).enumerate() {
            let row = &values[j * c..(j + 1) * c];
            acc.add(
                &probabilities(row, ends_in_softmax),
                mapping[label],
                samples[idx].path.clone(),
            );
        }
        Ok(())
    })?;
    Ok(EvaluationRun {
        evaluation: acc.finish(),
        failed,
    })
}

/// A detector on a box dataset ([`Task::Detect`](crate::data::Task)): AP per class, PR
/// curves and each image's boxes and mistakes, with the images that could not be read. The
/// dataset's classes must be the detector's, in its order.
pub fn evaluate_detector(
    net: &Network,
    store: &Store,
    data: &Dataset,
    fit: Fit,
    device: &DeviceInfo,
    progress: impl FnMut(usize, usize),
) -> Result<(DetectionEvaluation, Vec<Skipped>), String> {
    let spec = DetectionSpec::of(net).ok_or("the network has no detection head")?;
    if spec.classes != data.classes {
        return Err(format!(
            "the detector finds {:?} but the dataset's classes are {:?}",
            spec.classes, data.classes
        ));
    }
    let framing = BoxFraming { fit, augment: None };
    let mut collector = Collector::new(spec);
    let samples = &data.samples;
    let failed = over_images(
        net,
        store,
        samples,
        Some(framing),
        device,
        progress,
        |b, outputs| {
            for (j, (f, &idx)) in b.framed.iter().zip(&b.indices).enumerate() {
                let s = &samples[idx];
                let maps = crate::detect::yolo::image_maps(outputs, j)?;
                collector.add(&maps, f, s.path.clone(), &s.objects);
            }
            Ok(())
        },
    )?;
    Ok((collector.finish(), failed))
}

/// Runs `net` (inference rewrites applied) over every image of `samples` in batches of 32,
/// with its own preprocessing (a detector's images framed by `boxes`), handing each batch
/// that decoded, with its outputs (dims and values, a detector's maps one per scale), to
/// `each`. Returns the images that could not be read.
fn over_images(
    net: &Network,
    store: &Store,
    samples: &[Sample],
    boxes: Option<BoxFraming>,
    device: &DeviceInfo,
    mut progress: impl FnMut(usize, usize),
    mut each: impl FnMut(&Batch, &crate::detect::yolo::Outputs) -> Result<(), String>,
) -> Result<Vec<Skipped>, String> {
    let (preprocess, [channels, _, _]) = net.input_preprocess()?;
    let side = preprocess.crop;
    let transform = Transform {
        preprocess,
        channels,
        augment: None,
        boxes,
        // A network trained on sound hears its clips through the front end it learned with.
        sound: crate::audio::front::FrontEnd::of(net).map(crate::audio::clips::SoundFraming::plain),
    };
    let (fnet, fstore) = optimize::for_inference(net, store);
    let model = Model::build(&fnet, &fstore, &device.device).map_err(|e| e.to_string())?;
    let samples = Arc::new(samples.to_vec());
    let order: Vec<usize> = (0..samples.len()).collect();
    let rx = spawn_batches(
        samples.clone(),
        order,
        32,
        Arc::new(transform),
        0,
        0,
        2,
        Arc::new(AtomicBool::new(false)),
    )?;
    let mut failed = Vec::new();
    let mut done = 0;
    for mut b in rx {
        done += b.indices.len() + b.failed.len();
        failed.append(&mut b.failed);
        if !b.indices.is_empty() {
            let k = b.indices.len();
            let data = std::mem::take(&mut b.data);
            let x = Value::from_data(&[k, channels, side, side], data, &device.device);
            let out = model
                .forward(x, Mode::Inference)
                .map_err(|e| e.to_string())?;
            if out.is_empty() {
                return Err("the network gave no output".into());
            }
            let host = crate::engine::to_host(&out)?;
            each(&b, &host)?;
        }
        progress(done, samples.len());
    }
    Ok(failed)
}

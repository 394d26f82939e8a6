use crate::classify::Classifier;
use crate::engine::{DeviceChoice, select_device};
use std::path::{Path, PathBuf};

pub fn run(
    model: &Path,
    images: &[PathBuf],
    top: usize,
    device: DeviceChoice,
) -> Result<(), String> {
    let imported = super::open_model(model)?;
    let net = &imported.network;
    if net.metadata.preprocess.is_none() {
        eprintln!("note: the file has no graft.preprocess metadata; using ImageNet mean/std");
    }
    let dev = select_device(device)?;
    let classifier = Classifier::new(net, &imported.store, &dev.device)?;
    let (predictions, failed) = classifier.classify(images)?;
    for p in &predictions {
        println!("{}", p.path.display());
        for (name, prob) in classifier.top(p, top) {
            println!("  {:6.2}%  {name}", prob * 100.0);
        }
    }
    for (path, reason) in &failed {
        eprintln!("skipped {}: {reason}", path.display());
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

//! A network on image files (or sound files, for a network trained on sound): the model's
//! own preprocessing, probabilities, the top classes. `graft predict` and the window's
//! "Classify an image" both go through [`Classifier`].

use crate::audio::clips::SoundFraming;
use crate::audio::front::FrontEnd;
use crate::data::Sample;
use crate::data::preprocess::image_to_input;
use crate::engine::{Model, optimize};
use crate::graph::{Network, Preprocess};
use crate::train::metrics::softmax;
use crate::weights::Store;
use burn::tensor::Device;
use std::path::{Path, PathBuf};

/// Images per forward pass.
const BATCH: usize = 16;

/// A network built for inference, with what it needs to turn files into class names.
pub struct Classifier {
    model: Model,
    preprocess: Preprocess,
    side: usize,
    channels: usize,
    /// A sound network's front end: files are clips (the first clip of a longer file).
    sound: Option<SoundFraming>,
    ends_in_softmax: bool,
    labels: Vec<String>,
}

/// Files that could not be read, each with the reason.
pub type Unreadable = Vec<(PathBuf, String)>;

/// One image's answer: probabilities per class (summing to 1).
pub struct Prediction {
    pub path: PathBuf,
    pub probabilities: Vec<f32>,
}

impl Classifier {
    /// Builds the inference plan (BatchNorm folded) of an RGB image network on `device`.
    pub fn new(net: &Network, store: &Store, device: &Device) -> Result<Self, String> {
        let (preprocess, [c, side, _]) = net.input_preprocess()?;
        let sound = FrontEnd::of(net).map(SoundFraming::plain);
        if c != 3 && sound.is_none() {
            return Err(format!(
                "the network takes {c} channels; Graft classifies RGB images"
            ));
        }
        let (fnet, fstore) = optimize::for_inference(net, store);
        let model = Model::build(&fnet, &fstore, device).map_err(|e| e.to_string())?;
        Ok(Self {
            model,
            preprocess,
            side,
            channels: c,
            sound,
            ends_in_softmax: net.ends_in_softmax(),
            labels: net.metadata.labels.clone(),
        })
    }

    /// A file's network input: its pixels preprocessed, or its first clip's spectrogram.
    fn input(&self, path: &Path) -> Result<Vec<f32>, String> {
        let Some(sound) = &self.sound else {
            return image_to_input(path, &self.preprocess);
        };
        let sample = Sample {
            path: path.to_path_buf(),
            label: 0,
            objects: Vec::new(),
            start: Some(0.0),
        };
        sound.input(&sample, self.side, self.channels, 0)
    }

    /// Classifies every image; files that cannot be read are returned with the reason, in
    /// order, and do not stop the rest.
    pub fn classify(&self, paths: &[PathBuf]) -> Result<(Vec<Prediction>, Unreadable), String> {
        let mut predictions = Vec::new();
        let mut failed = Vec::new();
        for chunk in paths.chunks(BATCH) {
            let mut batch = Vec::new();
            let mut read = Vec::new();
            for path in chunk {
                match self.input(path) {
                    Ok(x) => {
                        batch.extend(x);
                        read.push(path);
                    }
                    Err(e) => failed.push((path.clone(), e)),
                }
            }
            if read.is_empty() {
                continue;
            }
            let (_, out) = self
                .model
                .infer(&[read.len(), self.channels, self.side, self.side], batch)
                .map_err(|e| e.to_string())?
                .into_iter()
                .next()
                .ok_or("the network has no output")?;
            let classes = out.len() / read.len();
            for (row, path) in out.chunks(classes.max(1)).zip(read) {
                predictions.push(Prediction {
                    path: path.clone(),
                    probabilities: probabilities(row, self.ends_in_softmax),
                });
            }
        }
        Ok((predictions, failed))
    }

    /// One image, or the reason it cannot be read.
    pub fn classify_one(&self, path: &Path) -> Result<Prediction, String> {
        let (mut p, failed) = self.classify(&[path.to_path_buf()])?;
        match failed.into_iter().next() {
            Some((_, reason)) => Err(reason),
            None => p.pop().ok_or_else(|| "no prediction".to_string()),
        }
    }

    /// The `k` most likely classes, most likely first, by name ("class 7" where the file
    /// names none).
    pub fn top(&self, prediction: &Prediction, k: usize) -> Vec<(String, f32)> {
        top_k(&prediction.probabilities, k)
            .into_iter()
            .map(|(i, p)| (class_name(&self.labels, i), p))
            .collect()
    }
}

/// A network's output row as probabilities: as it is when the network ends in Softmax,
/// else through a softmax.
pub fn probabilities(row: &[f32], ends_in_softmax: bool) -> Vec<f32> {
    if ends_in_softmax {
        row.to_vec()
    } else {
        softmax(row)
    }
}

/// Indices and values of the `k` largest entries, largest first (ties keep index order).
pub fn top_k(values: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    order.into_iter().take(k).map(|i| (i, values[i])).collect()
}

/// The name of class `i`, or "class i" when the network has no (or too few) names.
pub fn class_name(labels: &[String], i: usize) -> String {
    labels
        .get(i)
        .cloned()
        .unwrap_or_else(|| format!("class {i}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_by_value_and_keeps_ties_in_index_order() {
        let v = [0.1, 0.5, 0.2, 0.5, 0.0];
        assert_eq!(top_k(&v, 3), vec![(1, 0.5), (3, 0.5), (2, 0.2)]);
        assert_eq!(top_k(&v, 10).len(), 5);
        assert!(top_k(&[], 3).is_empty());
    }

    #[test]
    fn probabilities_pass_softmax_outputs_through() {
        let row = [0.25, 0.75];
        assert_eq!(probabilities(&row, true), row.to_vec());
        let p = probabilities(&[0.0, 0.0], false);
        assert_eq!(p, vec![0.5, 0.5]);
    }

    #[test]
    fn class_names_fall_back_to_indices() {
        let labels = vec!["cat".to_string()];
        assert_eq!(class_name(&labels, 0), "cat");
        assert_eq!(class_name(&labels, 3), "class 3");
    }
}

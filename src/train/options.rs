//! What a training run does, as the user sets it (saved in projects as RON).

use crate::audio::front::AudioAugmentation;
use crate::data::Augmentation;
use crate::detect::loss::LossWeights;
use crate::detect::transform::{BoxAugmentation, Fit};
use crate::detect::yolo::Suppression;
use crate::engine::{DeviceChoice, Precision};
use crate::onnx::detector::Decoding;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Solver {
    /// Stochastic gradient descent with momentum.
    Sgdm,
    Adam,
    Rmsprop,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    /// Constant learning rate.
    None,
    /// Multiply by `factor` every `period` epochs.
    Step { factor: f64, period: usize },
    /// Cosine decay to zero over the run.
    Cosine,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainingOptions {
    pub solver: Solver,
    pub learning_rate: f64,
    /// SGDM's momentum (and RMSprop's).
    pub momentum: f64,
    /// L2 regularisation (weight decay).
    pub l2: f64,
    pub schedule: Schedule,
    /// Linear warm-up from 0 over this many epochs (fractions allowed).
    pub warmup_epochs: f64,
    pub epochs: usize,
    pub batch_size: usize,
    /// Validate every this many iterations; 0 validates at the end of each epoch.
    pub validation_frequency: usize,
    /// Stop after this many validations without a lower validation loss.
    pub patience: Option<usize>,
    /// Shuffle the training images every epoch.
    pub shuffle: bool,
    pub seed: u64,
    pub device: DeviceChoice,
    /// Training-time augmentation; `None` trains on the evaluation view.
    pub augmentation: Option<Augmentation>,
    /// Compute a frozen prefix's activations once and train only the rest (when possible).
    pub cache_features: bool,
    /// The most memory those activations take (MB); more go to a spill file on disk.
    pub cache_memory_mb: usize,
    /// What a detector's training adds (box datasets only).
    pub detection: DetectionOptions,
    /// Training-time changes to sound clips (sound datasets only); `None` trains on the
    /// clips as they are (and lets a frozen backbone's features be cached).
    pub sound_augmentation: Option<AudioAugmentation>,
    /// The convolutions' matrix products in fp32 or bf16 (`engine::precision`).
    pub precision: Precision,
}

/// A detector's training: how images meet the input, how boxes move with augmentation, and
/// the loss terms' weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DetectionOptions {
    /// Anchor boxes per cell of each scale when a head is added (k-means on the training
    /// boxes).
    pub anchors: usize,
    /// Prediction maps of a new head: 1 (the chosen feature map), or 2 (and the deepest map
    /// at twice its stride, which takes the larger anchors).
    pub scales: usize,
    pub fit: Fit,
    /// Training-time augmentation that moves the boxes; `None` trains on the fitted view
    /// (and lets a frozen backbone's features be cached).
    pub augmentation: Option<BoxAugmentation>,
    pub loss: LossWeights,
    /// Which found boxes the window shows and the export keeps (score, IoU, most per image);
    /// `graft train --score/--iou/--max` set the same.
    pub suppression: Suppression,
    /// What an exported detector outputs (`graft train --decoding`).
    pub decoding: Decoding,
}

impl DetectionOptions {
    /// Anchors to estimate for a new head: `anchors` per scale.
    pub fn anchor_total(&self) -> usize {
        self.anchors * self.scales
    }

    /// Of `n` estimated anchors (smallest area first), how many go to the finest map: with
    /// two scales the smaller half (YOLO v3's split by area), else all.
    pub fn fine_anchors(&self, n: usize) -> usize {
        if self.scales > 1 { n / 2 } else { n }
    }

    /// The [`Edit`](crate::graph::edit::Edit) that adds a head on `node` for `classes`, with
    /// estimated `anchors` (smallest area first, as `detect::anchors::estimate` gives them),
    /// split between the scales by [`Self::fine_anchors`].
    pub fn head_edit(
        &self,
        node: String,
        classes: Vec<String>,
        anchors: Vec<(f32, f32)>,
        seed: u64,
    ) -> crate::graph::edit::Edit {
        let mut anchors = anchors;
        let coarse = anchors.split_off(self.fine_anchors(anchors.len()));
        crate::graph::edit::Edit::AddDetectionHead {
            node,
            classes,
            anchors,
            coarse_anchors: coarse,
            seed,
        }
    }
}

impl Default for DetectionOptions {
    fn default() -> Self {
        Self {
            anchors: 5,
            scales: 1,
            fit: Fit::Letterbox,
            augmentation: Some(BoxAugmentation::default()),
            loss: LossWeights::default(),
            suppression: Suppression::default(),
            decoding: Decoding::default(),
        }
    }
}

impl Default for TrainingOptions {
    fn default() -> Self {
        Self {
            solver: Solver::Adam,
            learning_rate: 1e-3,
            momentum: 0.9,
            l2: 1e-4,
            schedule: Schedule::None,
            warmup_epochs: 0.0,
            epochs: 10,
            batch_size: 32,
            validation_frequency: 0,
            patience: None,
            shuffle: true,
            seed: 0,
            device: DeviceChoice::Auto,
            augmentation: None,
            cache_features: true,
            cache_memory_mb: 1024,
            detection: DetectionOptions::default(),
            sound_augmentation: None,
            precision: Precision::Fp32,
        }
    }
}

impl TrainingOptions {
    /// Learning rate at `progress` epochs into a run of `epochs` (fractional).
    pub fn learning_rate_at(&self, progress: f64) -> f64 {
        let base = self.learning_rate;
        let warm = if self.warmup_epochs > 0.0 && progress < self.warmup_epochs {
            (progress / self.warmup_epochs).max(1e-3)
        } else {
            1.0
        };
        let scheduled = match &self.schedule {
            Schedule::None => base,
            Schedule::Step { factor, period } => {
                base * factor.powi((progress / (*period).max(1) as f64).floor() as i32)
            }
            Schedule::Cosine => {
                let t = (progress / self.epochs.max(1) as f64).clamp(0.0, 1.0);
                base * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        };
        scheduled * warm
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(format!(
                "learning rate {} must be positive",
                self.learning_rate
            ));
        }
        if self.epochs == 0 || self.batch_size == 0 {
            return Err("epochs and batch size must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(format!("momentum {} must be in [0, 1)", self.momentum));
        }
        if self.l2 < 0.0 {
            return Err(format!("L2 {} must be ≥ 0", self.l2));
        }
        if !(1..=2).contains(&self.detection.scales) {
            return Err(format!(
                "a detection head has 1 or 2 scales, not {}",
                self.detection.scales
            ));
        }
        Ok(())
    }

    pub fn to_ron(&self) -> Result<String, String> {
        ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default())
            .map_err(|e| e.to_string())
    }

    pub fn from_ron(text: &str) -> Result<Self, String> {
        ron::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_and_warmup() {
        let mut o = TrainingOptions {
            learning_rate: 0.1,
            epochs: 10,
            ..Default::default()
        };
        assert_eq!(o.learning_rate_at(5.0), 0.1);
        o.schedule = Schedule::Step {
            factor: 0.5,
            period: 2,
        };
        assert!((o.learning_rate_at(4.5) - 0.025).abs() < 1e-12);
        o.schedule = Schedule::Cosine;
        assert!((o.learning_rate_at(5.0) - 0.05).abs() < 1e-12);
        assert!(o.learning_rate_at(10.0).abs() < 1e-12);
        o.warmup_epochs = 1.0;
        assert!(o.learning_rate_at(0.5) < 0.06);
    }

    #[test]
    fn options_round_trip_through_ron() {
        let o = TrainingOptions {
            solver: Solver::Sgdm,
            patience: Some(3),
            augmentation: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(TrainingOptions::from_ron(&o.to_ron().unwrap()).unwrap(), o);
        // Missing fields take defaults (files from older versions still load).
        assert_eq!(TrainingOptions::from_ron("(epochs: 3)").unwrap().epochs, 3);
    }
}

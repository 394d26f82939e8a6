//! What a training session reports, over a channel, as it runs.

use super::metrics::Evaluation;
use crate::detect::evaluate::DetectionEvaluation;
use crate::graph::Network;
use crate::weights::Store;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IterationRecord {
    pub epoch: usize,
    pub iteration: usize,
    pub loss: f64,
    /// The batch's accuracy (NaN for a detector, which has none per batch).
    pub accuracy: f64,
    pub learning_rate: f64,
    pub images_per_sec: f64,
    /// A detector's loss terms (unweighted), each plotted on its own.
    #[serde(default)]
    pub terms: Option<LossTerms>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossTerms {
    pub box_: f64,
    pub objectness: f64,
    pub class: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidationRecord {
    pub epoch: usize,
    pub iteration: usize,
    pub loss: f64,
    /// Accuracy; a detector's mAP@0.5.
    pub accuracy: f64,
    /// A detector's mean average precision.
    #[serde(default)]
    pub map: Option<MapScores>,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MapScores {
    /// VOC mAP at IoU 0.5.
    pub map50: f64,
    /// COCO mAP over IoU 0.5…0.95.
    pub map: f64,
}

/// Everything a run measured, for plots and reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub iterations: Vec<IterationRecord>,
    pub validations: Vec<ValidationRecord>,
    pub epoch_seconds: Vec<f64>,
}

impl History {
    /// Images a second at a steady pace: the median of the last epoch's iterations' rates,
    /// so that the first steps (on a GPU, compiling and tuning its kernels) do not count;
    /// `None` before any iteration.
    pub fn steady_images_per_sec(&self) -> Option<f64> {
        let last = self.iterations.last()?.epoch;
        crate::stats::median(
            self.iterations
                .iter()
                .filter(|r| r.epoch == last)
                .map(|r| r.images_per_sec)
                .collect(),
        )
    }

    /// Seconds a coming epoch should take, for the time left: the median of the epochs after
    /// the first, or the first alone until there is another. The first is no guide: it
    /// also compiles and tunes a GPU's kernels (17× a steady epoch on lavapipe, 133 s against
    /// 1.7 s on an H200; docs/BENCHMARKS.md) or builds a frozen backbone's cached features. The
    /// median passes over a resumed run's own first epoch too.
    pub fn steady_epoch_seconds(&self) -> Option<f64> {
        match self.epoch_seconds.as_slice() {
            [] => None,
            [first] => Some(*first),
            [_, rest @ ..] => crate::stats::median(rest.to_vec()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    /// All epochs ran.
    Completed,
    /// The user pressed Stop.
    Stopped,
    /// Validation loss stopped improving (patience).
    EarlyStopped,
}

impl StopReason {
    /// How the run ended, in words for a status line ("Training finished: …").
    pub fn words(self) -> &'static str {
        match self {
            StopReason::Completed => "finished",
            StopReason::Stopped => "stopped",
            StopReason::EarlyStopped => "stopped early",
        }
    }
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The trained network and weights (the best validation point when there is validation
    /// data, else the last iteration).
    pub network: Network,
    pub store: Store,
    pub history: History,
    pub reason: StopReason,
    /// On the validation images, with the returned weights (a classifier's).
    pub evaluation: Option<Evaluation>,
    /// A detector's results on the validation images, with the returned weights.
    pub detection: Option<DetectionEvaluation>,
    /// The training loss and accuracy over the last epoch's batches (those done, where the
    /// run stopped mid-epoch), weighted by their images; the accuracy NaN for a detector.
    pub final_train_loss: f64,
    pub final_train_accuracy: f64,
    /// Training throughput over the whole run (its first steps included; the steady rate is
    /// [`History::steady_images_per_sec`]).
    pub images_per_sec: f64,
    /// Whether a frozen prefix was computed once and cached.
    pub cached_prefix: bool,
}

#[derive(Clone, Debug)]
pub enum TrainEvent {
    Started {
        device: String,
        train_images: usize,
        val_images: usize,
        iterations_per_epoch: usize,
        epochs: usize,
        /// Nodes whose activations are computed once (the frozen prefix), if any.
        cached_nodes: usize,
    },
    /// Something the user should know (CPU fallback, skipped files, resume point).
    Message(String),
    /// A long preparation step (scanning, caching features).
    Progress {
        stage: String,
        done: usize,
        total: usize,
    },
    Iteration(IterationRecord),
    Validation(ValidationRecord),
    EpochEnd {
        epoch: usize,
        seconds: f64,
        eta_seconds: f64,
    },
    Checkpoint {
        path: PathBuf,
        epoch: usize,
    },
    Paused,
    Resumed,
    Finished(Box<Outcome>),
    Failed(String),
}

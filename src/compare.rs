//! Comparing backbones on the user's data: each network gets the same recipe — a new head,
//! the backbone frozen (its features computed once) unless fine-tuning, the same split and
//! seed — and one row: validation accuracy and loss, per-class accuracy, training time,
//! inference images/s on this machine, parameters and the retrained file's size. The rows
//! no other row beats on both accuracy and speed form the Pareto front. `graft compare` and
//! the window's comparison both run networks through `train_one`.

use crate::data::Dataset;
use crate::engine::DeviceChoice;
use crate::graph::Network;
use crate::graph::edit::{Edit, apply, freeze_backbone};
use crate::onnx::Imported;
use crate::train::{Outcome, Session, TrainJob, TrainingOptions};
use crate::weights::Store;
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct Recipe {
    pub options: TrainingOptions,
    /// Train every layer instead of a new head on a frozen backbone.
    pub fine_tune: bool,
}

/// One network's line of the comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub model: String,
    pub validation_accuracy: f64,
    pub validation_loss: f64,
    /// Recall per class, in the dataset's class order.
    pub per_class_accuracy: Vec<(String, f64)>,
    /// Opening, adapting, training and validating.
    pub train_seconds: f64,
    pub inference_images_per_s: f64,
    pub params: usize,
    pub file_bytes: usize,
    /// No other network is at least as accurate and as fast, and better in one.
    pub pareto: bool,
}

/// A trained network and its row.
pub struct Trained {
    pub row: Row,
    pub network: Network,
    pub store: Store,
}

/// Adapts the head to `train`'s classes, freezes the backbone unless fine-tuning, trains,
/// validates on `validation` and measures. `wait` follows the session until it ends (the
/// command line shows a progress bar, the window a status line and cancel).
pub fn train_one(
    name: &str,
    imported: Imported,
    train: &Dataset,
    validation: &Dataset,
    recipe: &Recipe,
    wait: &mut dyn FnMut(&Session) -> Result<Outcome, String>,
) -> Result<Trained, String> {
    let started = Instant::now();
    let (mut net, mut store) = (imported.network, imported.store);
    let options = &recipe.options;
    apply(
        &mut net,
        &mut store,
        &Edit::AdaptHead {
            classes: train.classes.clone(),
            seed: options.seed,
        },
    )
    .map_err(|e| format!("{name}: {e}"))?;
    if !recipe.fine_tune {
        freeze_backbone(&mut net, &store).map_err(|e| format!("{name}: {e}"))?;
    }
    if net.metadata.preprocess.is_none() {
        net.metadata.preprocess = Some(net.preprocess());
    }
    let session = Session::start(
        TrainJob {
            network: net,
            store,
            train: train.clone(),
            validation: Some(validation.clone()),
            options: options.clone(),
            checkpoint: None,
            resume: false,
        },
        None,
    )?;
    let outcome = wait(&session);
    session.join();
    let outcome = outcome?;
    let train_seconds = started.elapsed().as_secs_f64();
    let eval = outcome
        .evaluation
        .as_ref()
        .ok_or_else(|| format!("{name}: no validation result"))?;
    // Inference speed on the CPU unless the recipe chose a device.
    let device = match options.device {
        DeviceChoice::Auto => DeviceChoice::Cpu,
        d => d,
    };
    let speed = crate::engine::speed::measure(&outcome.network, &outcome.store, 8, 5, device)?;
    let bytes = crate::onnx::export_bytes(&outcome.network, &outcome.store)
        .map_err(|e| format!("{name}: {e}"))?;
    let analysis = crate::graph::analyze::analyze(&outcome.network, &outcome.store);
    Ok(Trained {
        row: Row {
            model: name.to_string(),
            validation_accuracy: eval.accuracy,
            validation_loss: eval.loss,
            per_class_accuracy: eval
                .per_class
                .iter()
                .map(|c| (c.class.clone(), c.recall))
                .collect(),
            train_seconds,
            inference_images_per_s: speed.images_per_s,
            params: analysis.total_params,
            file_bytes: bytes.len(),
            pareto: false,
        },
        network: outcome.network,
        store: outcome.store,
    })
}

/// Marks the rows no other row beats on both accuracy and speed.
pub fn mark_pareto(rows: &mut [Row]) {
    let points: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (r.validation_accuracy, r.inference_images_per_s))
        .collect();
    for (i, r) in rows.iter_mut().enumerate() {
        let (a, s) = points[i];
        r.pareto = !points
            .iter()
            .enumerate()
            .any(|(j, &(b, t))| j != i && b >= a && t >= s && (b > a || t > s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(acc: f64, speed: f64) -> Row {
        Row {
            model: String::new(),
            validation_accuracy: acc,
            validation_loss: 0.0,
            per_class_accuracy: vec![],
            train_seconds: 0.0,
            inference_images_per_s: speed,
            params: 0,
            file_bytes: 0,
            pareto: false,
        }
    }

    #[test]
    fn the_pareto_front_is_what_nothing_beats_on_both() {
        // (accuracy, speed): a is fastest, c most accurate, b beaten by c on both, d ties a.
        let mut rows = vec![
            row(0.7, 100.0),
            row(0.8, 20.0),
            row(0.9, 30.0),
            row(0.7, 100.0),
        ];
        mark_pareto(&mut rows);
        let front: Vec<bool> = rows.iter().map(|r| r.pareto).collect();
        assert_eq!(front, vec![true, false, true, true]);
    }
}

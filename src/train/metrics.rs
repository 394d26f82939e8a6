//! Classification metrics: accuracy, loss, per-class precision/recall/F1, the confusion
//! matrix and every validation image's prediction (for a gallery of mistakes).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Images of this class.
    pub support: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub path: PathBuf,
    pub label: usize,
    pub predicted: usize,
    pub confidence: f32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub classes: Vec<String>,
    pub images: usize,
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    pub per_class: Vec<ClassMetrics>,
    pub predictions: Vec<Prediction>,
}

/// Accumulates predictions batch by batch.
#[derive(Clone, Debug)]
pub struct Accumulator {
    classes: Vec<String>,
    confusion: Vec<Vec<usize>>,
    loss_sum: f64,
    predictions: Vec<Prediction>,
}

impl Accumulator {
    pub fn new(classes: Vec<String>) -> Self {
        let n = classes.len();
        Self {
            classes,
            confusion: vec![vec![0; n]; n],
            loss_sum: 0.0,
            predictions: Vec::new(),
        }
    }

    /// Adds one image: its probabilities (softmax output), true label and file.
    pub fn add(&mut self, probs: &[f32], label: usize, path: PathBuf) {
        let (predicted, confidence) = argmax(probs);
        self.loss_sum += -(probs.get(label).copied().unwrap_or(0.0).max(1e-12) as f64).ln();
        if label < self.confusion.len() && predicted < self.confusion.len() {
            self.confusion[label][predicted] += 1;
        }
        self.predictions.push(Prediction {
            path,
            label,
            predicted,
            confidence,
        });
    }

    pub fn finish(self) -> Evaluation {
        let n = self.classes.len();
        let images = self.predictions.len();
        let correct: usize = (0..n).map(|i| self.confusion[i][i]).sum();
        let per_class = (0..n)
            .map(|c| {
                let tp = self.confusion[c][c] as f64;
                let predicted: usize = (0..n).map(|t| self.confusion[t][c]).sum();
                let support: usize = self.confusion[c].iter().sum();
                let precision = if predicted > 0 {
                    tp / predicted as f64
                } else {
                    0.0
                };
                let recall = if support > 0 {
                    tp / support as f64
                } else {
                    0.0
                };
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassMetrics {
                    class: self.classes[c].clone(),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        Evaluation {
            classes: self.classes,
            images,
            accuracy: if images > 0 {
                correct as f64 / images as f64
            } else {
                0.0
            },
            loss: if images > 0 {
                self.loss_sum / images as f64
            } else {
                0.0
            },
            confusion: self.confusion,
            per_class,
            predictions: self.predictions,
        }
    }
}

pub fn argmax(v: &[f32]) -> (usize, f32) {
    v.iter()
        .copied()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, x)| {
            if x > best.1 { (i, x) } else { best }
        })
}

/// Softmax of one row of logits.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|v| v / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_recall_and_confusion() {
        let mut acc = Accumulator::new(vec!["a".into(), "b".into()]);
        // Two a's (one called b), one b (called b).
        acc.add(&[0.9, 0.1], 0, "1".into());
        acc.add(&[0.2, 0.8], 0, "2".into());
        acc.add(&[0.3, 0.7], 1, "3".into());
        let e = acc.finish();
        assert_eq!(e.confusion, vec![vec![1, 1], vec![0, 1]]);
        assert!((e.accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(e.per_class[0].precision, 1.0);
        assert_eq!(e.per_class[0].recall, 0.5);
        assert_eq!(e.per_class[1].precision, 0.5);
        assert!((e.per_class[1].f1 - 2.0 / 3.0).abs() < 1e-12);
        let expected_loss = -((0.9f64).ln() + (0.2f64).ln() + (0.7f64).ln()) / 3.0;
        assert!((e.loss - expected_loss).abs() < 1e-6);
    }
}

//! Training: options, a background session streaming events, checkpoints, the frozen-prefix
//! cache, and evaluation metrics.

mod adam;
pub mod cache;
pub mod checkpoint;
pub mod evaluate;
pub mod events;
pub mod metrics;
mod optim;
pub mod options;
mod passes;
mod prepare;
pub mod session;
mod trainer;

pub use events::{
    History, IterationRecord, LossTerms, MapScores, Outcome, StopReason, TrainEvent,
    ValidationRecord,
};
pub use metrics::Evaluation;
pub use options::{DetectionOptions, Schedule, Solver, TrainingOptions};
pub use session::{Control, Session, TrainJob, Waker};
pub use trainer::load_dataset;

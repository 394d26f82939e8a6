//! Images in, tensors out: ImageFolder scanning and splitting, decoding, augmentation,
//! normalisation, and batches made on worker threads.

pub mod augment;
pub mod folder;
pub mod loader;
pub mod preprocess;

pub use augment::Augmentation;
pub use folder::{DataError, Dataset, Sample, Skipped, Task, scan};
pub use loader::{Batch, BoxFraming, Framed, Transform};

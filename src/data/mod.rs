//! Images (and sound clips, through `audio`) in, tensors out: ImageFolder scanning and
//! splitting, decoding, augmentation, normalisation, and batches made on worker threads.

pub mod augment;
pub mod folder;
pub mod loader;
pub mod preprocess;

pub use augment::Augmentation;
pub use folder::{DataError, Dataset, Media, Sample, Skipped, Task, scan};
pub use loader::{Batch, BoxFraming, Framed, Transform};

/// Scans a folder of classes as what it holds: sound clips (cut and measured as `audio`
/// says) when most of its files are sounds, else images.
pub fn scan_classes(
    root: &std::path::Path,
    audio: &crate::audio::front::AudioSettings,
    progress: &(dyn Fn(usize, usize) + Sync),
    cancel: &std::sync::atomic::AtomicBool,
) -> Result<Dataset, DataError> {
    if crate::audio::clips::is_sound_folder(root) {
        crate::audio::clips::scan(root, audio, progress, cancel)
    } else {
        scan(root, progress, cancel)
    }
}

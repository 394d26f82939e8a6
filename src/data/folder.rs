//! ImageFolder datasets: one sub-folder per class under a root (the torchvision / Keras /
//! MATLAB `imageDatastore(..., 'LabelSource', 'foldernames')` convention).

use crate::detect::dataset::Object;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// File endings Graft tries to decode (everything the `image` crate reads).
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "gif", "bmp", "tif", "tiff", "webp", "pnm", "pbm", "pgm", "ppm", "ico",
    "qoi", "tga", "hdr",
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub path: PathBuf,
    /// The class of a classification image (0 in a box dataset, whose classes are per box).
    pub label: usize,
    /// A box dataset's objects in the image's own pixels (empty for classification).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<Object>,
    /// A sound dataset's clip: where it starts in its file, in seconds (long files give
    /// several clips; `Media::Sounds` says how long each is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<f32>,
}

/// What a dataset's files hold: images, or sounds whose clips become spectrogram images
/// (cut and computed as the settings say).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Media {
    #[default]
    Images,
    Sounds(crate::audio::front::AudioSettings),
}

/// A sound file as the scan read it (the Data tab's counts and durations).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SoundFile {
    pub path: PathBuf,
    pub label: usize,
    pub seconds: f32,
    /// The file's own sample rate and channel count.
    pub rate: u32,
}

/// What a dataset teaches: a class per image (a folder per class), or boxes with a class
/// each (a box dataset, `detect::dataset`). One `Dataset` type carries both so that the
/// session, the splits, the loader and the frozen-feature cache serve both tasks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Task {
    #[default]
    Classify,
    Detect,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// How many image headers [`Dataset::typical_side`] reads.
pub const SIDE_SAMPLES: usize = 64;

/// A scanned image folder.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub root: PathBuf,
    /// Class names: the sub-folder names, sorted.
    pub classes: Vec<String>,
    pub samples: Vec<Sample>,
    /// Files that will not be used, and why.
    pub skipped: Vec<Skipped>,
    #[serde(default)]
    pub task: Task,
    #[serde(default)]
    pub media: Media,
    /// A sound dataset's files (empty for images).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sounds: Vec<SoundFile>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataError {
    #[error("cannot read the folder {path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error(
        "{0} has no class sub-folders; put each class's images in a folder named after the class"
    )]
    NoClasses(PathBuf),
    #[error("{0} has no usable images")]
    NoImages(PathBuf),
    #[error("{0} has no usable sound files")]
    NoSounds(PathBuf),
    #[error("class '{0}' has no usable images")]
    EmptyClass(String),
    #[error(
        "class '{0}' has no boxes; remove it from the dataset's class list or label some of it"
    )]
    ClassWithoutBoxes(String),
    #[error("only one class ('{0}'): training a classifier needs at least two")]
    OneClass(String),
    #[error(
        "the validation folder's classes {found:?} differ from the training classes {expected:?}"
    )]
    ClassMismatch {
        expected: Vec<String>,
        found: Vec<String>,
    },
    #[error("validation split {0} must be between 0 and 1")]
    BadSplit(f32),
    #[error("cancelled")]
    Cancelled,
    #[error(
        "the validation folder holds other media (images vs sounds, or clips cut another way) than the training folder"
    )]
    MediaMismatch,
}

impl Dataset {
    /// What its samples are called in messages: "images", or "clips" for sounds.
    pub fn samples_noun(&self) -> &'static str {
        match self.media {
            Media::Images => "images",
            Media::Sounds(_) => "clips",
        }
    }

    /// Images per class; boxes per class in a box dataset.
    pub fn counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes.len()];
        for s in &self.samples {
            match self.task {
                Task::Classify => c[s.label] += 1,
                Task::Detect => {
                    for o in &s.objects {
                        c[o.class] += 1;
                    }
                }
            }
        }
        c
    }

    /// A classification set is trainable with at least two classes, each with at least one
    /// image; a box dataset with at least one class, each with at least one box.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.classes.is_empty() {
            return Err(DataError::NoClasses(self.root.clone()));
        }
        if self.samples.is_empty() {
            return Err(DataError::NoImages(self.root.clone()));
        }
        if let Some((i, _)) = self.counts().iter().enumerate().find(|(_, n)| **n == 0) {
            let name = self.classes[i].clone();
            return Err(match self.task {
                Task::Classify => DataError::EmptyClass(name),
                Task::Detect => DataError::ClassWithoutBoxes(name),
            });
        }
        if self.classes.len() == 1 && self.task == Task::Classify {
            return Err(DataError::OneClass(self.classes[0].clone()));
        }
        Ok(())
    }

    /// A stratified split: from each class, `fraction` of its images (rounded, at least one
    /// when the class has two or more) go to validation. The same seed gives the same split.
    pub fn split(&self, fraction: f32, seed: u64) -> Result<(Dataset, Dataset), DataError> {
        let (train, val) = self.split_indices(fraction, seed)?;
        let part = |indices: Vec<usize>| Dataset {
            root: self.root.clone(),
            classes: self.classes.clone(),
            samples: indices
                .into_iter()
                .map(|i| self.samples[i].clone())
                .collect(),
            skipped: Vec::new(),
            task: self.task,
            media: self.media.clone(),
            sounds: Vec::new(),
        };
        Ok((part(train), part(val)))
    }

    /// [`split`](Self::split) as positions in `samples` (training, validation), without
    /// copying a sample: what the Data tab counts as its slider moves.
    pub fn split_indices(
        &self,
        fraction: f32,
        seed: u64,
    ) -> Result<(Vec<usize>, Vec<usize>), DataError> {
        if !(0.0..1.0).contains(&fraction) || fraction.is_nan() {
            return Err(DataError::BadSplit(fraction));
        }
        let mut train = Vec::new();
        let mut val = Vec::new();
        // A box dataset's images hold several classes each: one group, split at random.
        let groups = match self.task {
            Task::Classify => self.classes.len(),
            Task::Detect => 1,
        };
        for class in 0..groups {
            // Split files, not samples: the clips of one sound file all land on one side, so
            // validation never hears a piece of a training recording. A file's clips are
            // adjacent in `samples` (scans make them so): a file is a run of equal paths.
            // (Hashing paths instead cost 20 ms at 50,000 images; the Data tab splits again
            // as its slider moves.)
            let members: Vec<usize> = (0..self.samples.len())
                .filter(|&i| self.task == Task::Detect || self.samples[i].label == class)
                .collect();
            let path = |k: usize| self.samples[members[k]].path.as_os_str();
            let mut file_of = Vec::with_capacity(members.len());
            let mut files = 0;
            for k in 0..members.len() {
                if k == 0 || path(k - 1) != path(k) {
                    files += 1;
                }
                file_of.push(files - 1);
            }
            let mut order: Vec<usize> = (0..files).collect();
            let mut rng = ChaCha8Rng::seed_from_u64(
                seed ^ (class as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            order.shuffle(&mut rng);
            let mut k = (files as f32 * fraction).round() as usize;
            if fraction > 0.0 && files >= 2 {
                k = k.clamp(1, files - 1);
            }
            let mut to_val = vec![false; files];
            for &f in &order[..k] {
                to_val[f] = true;
            }
            for (i, f) in members.into_iter().zip(file_of) {
                if to_val[f] {
                    val.push(i);
                } else {
                    train.push(i);
                }
            }
        }
        Ok((train, val))
    }

    /// The image side a network that leaves its input size open should be built at for these
    /// images: the median shorter side of up to [`SIDE_SAMPLES`] images spread over the set
    /// (read from their headers only), rounded to a multiple of 32 (the stride of most
    /// backbones) between 32 and 1024. `None` when no header can be read.
    pub fn typical_side(&self) -> Option<usize> {
        let n = self.samples.len();
        let step = n.div_ceil(SIDE_SAMPLES).max(1);
        let mut sides: Vec<u32> = self
            .samples
            .iter()
            .step_by(step)
            .filter_map(|s| image::image_dimensions(&s.path).ok())
            .map(|(w, h)| w.min(h))
            .collect();
        if sides.is_empty() {
            return None;
        }
        sides.sort_unstable();
        let median = sides[sides.len() / 2] as usize;
        Some((((median + 16) / 32) * 32).clamp(32, 1024))
    }

    /// Re-labels a second folder (a validation root) to these classes; its class set must
    /// be the same.
    pub fn same_classes(&self, other: &Dataset) -> Result<(), DataError> {
        if self.media != other.media {
            return Err(DataError::MediaMismatch);
        }
        if self.classes != other.classes || self.task != other.task {
            return Err(DataError::ClassMismatch {
                expected: self.classes.clone(),
                found: other.classes.clone(),
            });
        }
        Ok(())
    }
}

/// Scans `root`: classes are its sub-folders (sorted by name), images are the files inside
/// them (any depth). Each image's header is read to catch corrupt, foreign and oversized
/// files now rather than mid-training. `progress(done, total)` is called as files are checked;
/// setting `cancel` stops the scan.
pub fn scan(
    root: &Path,
    progress: &(dyn Fn(usize, usize) + Sync),
    cancel: &AtomicBool,
) -> Result<Dataset, DataError> {
    let (classes, files) = class_files(root)?;
    let checked = check_files(files, progress, cancel, |path, label| {
        check_image(path).map(|()| Sample {
            path: path.to_path_buf(),
            label,
            objects: Vec::new(),
            start: None,
        })
    })?;
    let mut dataset = Dataset {
        root: root.to_owned(),
        classes,
        ..Dataset::default()
    };
    for r in checked {
        match r {
            Ok(s) => dataset.samples.push(s),
            Err(s) => dataset.skipped.push(s),
        }
    }
    Ok(dataset)
}

/// Checks every file with `check` on the rayon pool: what it made, or the file skipped with
/// the reason. `progress(done, total)` as files are checked; `cancel` stops it.
pub(crate) fn check_files<T: Send>(
    files: Vec<ClassFile>,
    progress: &(dyn Fn(usize, usize) + Sync),
    cancel: &AtomicBool,
    check: impl Fn(&Path, usize) -> Result<T, String> + Sync,
) -> Result<Vec<Result<T, Skipped>>, DataError> {
    let total = files.len();
    let done = AtomicUsize::new(0);
    let checked: Vec<Result<T, Skipped>> = files
        .into_par_iter()
        .map(|(path, label)| {
            if cancel.load(Ordering::Relaxed) {
                return Err(Skipped {
                    path,
                    reason: "cancelled".into(),
                });
            }
            let result = check(&path, label).map_err(|reason| Skipped { path, reason });
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            result
        })
        .collect();
    if cancel.load(Ordering::Relaxed) {
        return Err(DataError::Cancelled);
    }
    Ok(checked)
}

/// A file under a class folder, with its class.
pub(crate) type ClassFile = (PathBuf, usize);

/// The class names under `root` (its sub-folders, sorted) and every file inside them with
/// its class, sorted: what an image scan and a sound scan both start from.
pub(crate) fn class_files(root: &Path) -> Result<(Vec<String>, Vec<ClassFile>), DataError> {
    let mut classes: Vec<(String, PathBuf)> = std::fs::read_dir(root)
        .map_err(|e| DataError::Unreadable {
            path: root.to_owned(),
            message: e.to_string(),
        })?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    classes.sort();
    if classes.is_empty() {
        return Err(DataError::NoClasses(root.to_owned()));
    }
    let mut files: Vec<(PathBuf, usize)> = Vec::new();
    for (label, (_, dir)) in classes.iter().enumerate() {
        collect_files(dir, label, &mut files);
    }
    files.sort();
    Ok((classes.into_iter().map(|(n, _)| n).collect(), files))
}

fn collect_files(dir: &Path, label: usize, out: &mut Vec<(PathBuf, usize)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let path = e.path();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        match e.file_type() {
            Ok(t) if t.is_dir() => collect_files(&path, label, out),
            Ok(_) => out.push((path, label)),
            Err(_) => {}
        }
    }
}

/// Reads the image header: format and size, within the decoder limits.
fn check_image(path: &Path) -> Result<(), String> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if !IMAGE_EXTENSIONS.contains(&ext.as_str()) {
        return Err("not an image (file type)".into());
    }
    let reader = image::ImageReader::open(path)
        .map_err(|e| format!("unreadable ({e})"))?
        .with_guessed_format()
        .map_err(|e| format!("unreadable ({e})"))?;
    if reader.format().is_none() {
        return Err("not an image (contents)".into());
    }
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| format!("corrupt ({e})"))?;
    let max = super::preprocess::MAX_IMAGE_PIXELS;
    if w == 0 || h == 0 {
        return Err("corrupt (empty image)".into());
    }
    if w > max || h > max {
        return Err(format!("too large ({w}×{h}; the limit is {max}×{max})"));
    }
    Ok(())
}

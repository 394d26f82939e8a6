//! Folders of sound clips, one sub-folder per class: scanned into a [`Dataset`] of
//! [`Media::Sounds`] whose samples are clips (a file's start, or windows of a long file),
//! and read back into network input by the loader ([`SoundFraming`]).

use super::decode::{self, AudioError, is_audio};
use super::front::{AudioAugmentation, AudioSettings, FrontEnd, clip, plane_to_input};
use super::long_files::LongFiles;
use crate::data::folder::{DataError, Dataset, Media, Sample, SoundFile, check_files, class_files};
use rand::SeedableRng;
use rayon::prelude::*;
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// A file whose loudest sample is below this (−80 dBFS) is silent: skipped and listed.
pub const SILENT_PEAK: f32 = 1e-4;

/// Whether `root`'s class folders hold sound files rather than images (more of them).
pub fn is_sound_folder(root: &Path) -> bool {
    let Ok((_, files)) = class_files(root) else {
        return false;
    };
    let sounds = files.iter().filter(|(p, _)| is_audio(p)).count();
    let images = files
        .iter()
        .filter(|(p, _)| {
            p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                crate::data::folder::IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())
            })
        })
        .count();
    sounds > 0 && sounds >= images
}

/// Scans a folder of sound clips: every file is decoded (in parallel) to check it and
/// measure it; unreadable, empty and silent files are skipped with the reason. Each good
/// file gives the clips `settings` cut from it. `progress(done, total)` as files are read;
/// `cancel` stops the scan.
pub fn scan(
    root: &Path,
    settings: &AudioSettings,
    progress: &(dyn Fn(usize, usize) + Sync),
    cancel: &AtomicBool,
) -> Result<Dataset, DataError> {
    let (classes, files) = class_files(root)?;
    let checked = check_files(files, progress, cancel, check)?;
    let mut dataset = Dataset {
        root: root.to_owned(),
        classes,
        media: Media::Sounds(settings.clone()),
        ..Dataset::default()
    };
    for r in checked {
        match r {
            Ok(f) => {
                for start in settings.clip_starts(f.seconds) {
                    dataset.samples.push(Sample {
                        path: f.path.clone(),
                        label: f.label,
                        objects: Vec::new(),
                        start: Some(start),
                    });
                }
                dataset.sounds.push(f);
            }
            Err(s) => dataset.skipped.push(s),
        }
    }
    if dataset.samples.is_empty() {
        return Err(DataError::NoSounds(root.to_owned()));
    }
    Ok(dataset)
}

/// Decodes a file to check and measure it; the reason it is skipped otherwise.
fn check(path: &Path, label: usize) -> Result<SoundFile, String> {
    if !is_audio(path) {
        return Err("not a sound file (file type)".into());
    }
    let sound = decode::decode(path).map_err(|e| match e {
        AudioError::Empty { .. } => "empty (no samples)".to_string(),
        AudioError::Unsupported { message, .. } => format!("not a sound file ({message})"),
        AudioError::Corrupt { message, .. } => format!("corrupt ({message})"),
        e => e.to_string(),
    })?;
    let peak = sound.samples.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if peak < SILENT_PEAK {
        return Err("silent".into());
    }
    Ok(SoundFile {
        path: path.to_path_buf(),
        label,
        seconds: sound.seconds() as f32,
        rate: sound.rate,
    })
}

/// How the loader turns a sound sample into network input.
#[derive(Clone, Debug, PartialEq)]
pub struct SoundFraming {
    pub front: FrontEnd,
    /// `None` for evaluation.
    pub augment: Option<AudioAugmentation>,
    /// The augmentation's background noise, decoded at the front end's rate
    /// ([`load_noise`]); empty without it.
    pub noise: std::sync::Arc<Vec<Vec<f32>>>,
    /// Files longer than a clip, decoded once for all their clips; shared by the clones the
    /// loader's threads hold.
    pub long_files: SharedLongFiles,
}

/// [`LongFiles`] shared by a framing's clones. Equal to any other: what is held in memory
/// does not change which clips a framing reads.
#[derive(Clone, Default)]
pub struct SharedLongFiles(pub std::sync::Arc<LongFiles>);

impl PartialEq for SharedLongFiles {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for SharedLongFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LongFiles({} bytes)", self.0.bytes())
    }
}

/// Every sound file under `folder` (any depth), mono at `rate`: the background noise an
/// augmentation mixes in. Files that do not decode are skipped; a folder without any sound
/// is an error naming it. Silent files are left out (they would add nothing).
pub fn load_noise(folder: &Path, rate: u32) -> Result<Vec<Vec<f32>>, String> {
    let files = crate::files::under(folder, is_audio)
        .map_err(|e| format!("cannot read the noise folder {}: {e}", folder.display()))?;
    let sounds: Vec<Vec<f32>> = files
        .par_iter()
        .filter_map(|p| decode::load(p, rate).ok())
        .filter(|s| s.iter().any(|v| v.abs() >= SILENT_PEAK))
        .collect();
    if sounds.is_empty() {
        return Err(format!(
            "the noise folder {} holds no sound file Graft can read",
            folder.display()
        ));
    }
    Ok(sounds)
}

impl SoundFraming {
    /// Evaluation framing: the front end alone.
    pub fn plain(front: FrontEnd) -> Self {
        SoundFraming {
            front,
            augment: None,
            noise: Default::default(),
            long_files: Default::default(),
        }
    }

    /// Training framing: with `augment`'s background noise loaded (when it names a folder).
    pub fn augmented(front: FrontEnd, augment: AudioAugmentation) -> Result<Self, String> {
        let noise = match &augment.noise_folder {
            Some(dir) => load_noise(dir, front.settings.mel.sample_rate)?,
            None => Vec::new(),
        };
        Ok(SoundFraming {
            front,
            augment: Some(augment),
            noise: std::sync::Arc::new(noise),
            long_files: Default::default(),
        })
    }
}

impl SoundFraming {
    /// The sample's clip at the front end's rate and length. When the settings cut files into
    /// windows, the file comes from [`LongFiles`], decoded once for all its clips (and for
    /// the next epoch, while within its budget).
    pub fn clip(&self, sample: &Sample) -> Result<Vec<f32>, AudioError> {
        let s = &self.front.settings;
        let rate = s.mel.sample_rate;
        let start = (sample.start.unwrap_or(0.0) as f64 * rate as f64).round() as usize;
        if s.hop_seconds > 0.0 {
            let sound = self.long_files.0.load(&sample.path, rate)?;
            return Ok(clip(&sound, start, s.clip_samples()));
        }
        let sound = decode::load(&sample.path, rate)?;
        Ok(clip(&sound, start, s.clip_samples()))
    }

    /// The network's input for a sample: `channels`×`side`×`side`, augmented with `seed`.
    pub fn input(
        &self,
        sample: &Sample,
        side: usize,
        channels: usize,
        seed: u64,
    ) -> Result<Vec<f32>, String> {
        let mut c = self.clip(sample).map_err(|e| e.to_string())?;
        let Some(a) = &self.augment else {
            return Ok(self.front.input(&c, side, channels));
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        a.wave(&mut c, self.front.settings.mel.sample_rate, &mut rng);
        a.mix_noise(&mut c, &self.noise, &mut rng);
        let (mut spec, h, w) = self.front.spectrogram(&c);
        a.masks(&mut spec, h, w, &mut rng);
        Ok(plane_to_input(&spec, h, w, side, channels))
    }
}

/// The front end for training on `dataset`: `settings` with the log-mel mean and spread of
/// up to `most` of its clips, spread over the set.
pub fn fit_front_end(
    dataset: &Dataset,
    settings: &AudioSettings,
    most: usize,
) -> Result<FrontEnd, String> {
    let framing = SoundFraming::plain(FrontEnd {
        settings: settings.clone(),
        mean: 0.0,
        std: 1.0,
    });
    let step = dataset.samples.len().div_ceil(most.max(1)).max(1);
    let clips: Vec<Vec<f32>> = dataset
        .samples
        .par_iter()
        .step_by(step)
        .filter_map(|s| framing.clip(s).ok())
        .collect();
    if clips.is_empty() {
        return Err("no training clip could be read to measure the spectrograms".into());
    }
    Ok(FrontEnd::fit(settings, &clips))
}

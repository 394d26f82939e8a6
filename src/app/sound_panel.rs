//! The data panel's parts for a folder of sound clips: spectrogram thumbnails, durations per
//! class, files shorter than the minimum, the front end's settings (changing them reads the
//! folder again), and sound augmentation with a preview of augmented spectrograms.

use super::jobs::Job;
use super::{AppCommand, theme};
use crate::audio::clips::SoundFraming;
use crate::audio::front::{AudioAugmentation, AudioSettings, FrontEnd};
use crate::data::{Dataset, Sample};
use crate::train::TrainingOptions;
use egui::{ColorImage, RichText, Ui};

/// A spectrogram's thumbnail height (mel bands are resampled to it).
const THUMB_HEIGHT: usize = 48;

/// A standardised `[mels, frames]` spectrogram as a picture: time left to right, low bands at
/// the bottom, values from −2.5 to +2.5 standard deviations on a dark-to-bright ramp.
pub fn spectrogram_picture(spec: &[f32], mels: usize, frames: usize) -> ColorImage {
    let (w, h) = (frames.max(1), THUMB_HEIGHT);
    let plane = crate::audio::front::resize_bilinear(spec, mels, frames, h, w);
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        // Row 0 of the plane is the lowest band: drawn at the bottom.
        let row = h - 1 - y;
        for x in 0..w {
            let t = ((plane[row * w + x] + 2.5) / 5.0).clamp(0.0, 1.0);
            rgb.extend_from_slice(&theme::spectrogram(t));
        }
    }
    ColorImage::from_rgb([w, h], &rgb)
}

/// Clips as the settings cut them, before any standardising (pictures standardise each clip
/// by its own values).
fn raw(settings: &AudioSettings) -> SoundFraming {
    SoundFraming::plain(FrontEnd {
        settings: settings.clone(),
        mean: 0.0,
        std: 1.0,
    })
}

/// A clip's spectrogram thumbnail (made off the UI thread by the scan job), standardised by
/// its own values so that quiet clips show their shape too.
pub fn spectrogram_thumbnail(sample: &Sample, settings: &AudioSettings) -> Option<ColorImage> {
    let clip = raw(settings).clip(sample).ok()?;
    let own = FrontEnd::fit(settings, std::slice::from_ref(&clip));
    let (spec, mels, frames) = own.spectrogram(&clip);
    Some(spectrogram_picture(&spec, mels, frames))
}

/// Augmented spectrograms of a few clips: three seeded views each of four (off the UI
/// thread).
pub fn augmentation_preview(
    ctx: &egui::Context,
    train: &Dataset,
    settings: AudioSettings,
    augmentation: AudioAugmentation,
    seed: u64,
) -> Job<Vec<ColorImage>> {
    let samples: Vec<Sample> = train
        .samples
        .iter()
        .step_by((train.samples.len() / 4).max(1))
        .take(4)
        .cloned()
        .collect();
    Job::spawn("Augmentation preview", ctx, move |_| {
        use rand::SeedableRng;
        let noise = match &augmentation.noise_folder {
            Some(dir) => crate::audio::clips::load_noise(dir, settings.mel.sample_rate)?,
            None => Vec::new(),
        };
        let mut out = Vec::new();
        for (k, s) in samples.iter().enumerate() {
            let clip = raw(&settings).clip(s).map_err(|e| e.to_string())?;
            let front = FrontEnd::fit(&settings, std::slice::from_ref(&clip));
            for j in 0..3 {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed + (k * 3 + j) as u64);
                let mut c = clip.clone();
                augmentation.wave(&mut c, settings.mel.sample_rate, &mut rng);
                augmentation.mix_noise(&mut c, &noise, &mut rng);
                let (mut spec, mels, frames) = front.spectrogram(&c);
                augmentation.masks(&mut spec, mels, frames, &mut rng);
                out.push(spectrogram_picture(&spec, mels, frames));
            }
        }
        Ok(out)
    })
}

/// Seconds of sound per class in a sound dataset.
pub fn seconds_per_class(train: &Dataset) -> Vec<f32> {
    let mut s = vec![0.0f32; train.classes.len()];
    for f in &train.sounds {
        if let Some(v) = s.get_mut(f.label) {
            *v += f.seconds;
        }
    }
    s
}

/// Files shorter than the minimum, the front end's settings (an Apply reads the folder again
/// with them) and sound augmentation; true when training options changed.
pub fn sound_ui(
    ui: &mut Ui,
    train: &Dataset,
    settings: &mut AudioSettings,
    options: &mut TrainingOptions,
    commands: &mut Vec<AppCommand>,
) -> bool {
    let short: Vec<_> = train
        .sounds
        .iter()
        .filter(|f| f.seconds < settings.min_seconds)
        .collect();
    if !short.is_empty() {
        egui::CollapsingHeader::new(
            RichText::new(format!(
                "⚠ {} files shorter than {} s (padded with silence)",
                short.len(),
                settings.min_seconds
            ))
            .color(theme::WARNING),
        )
        .show(ui, |ui| {
            for f in short.iter().take(200) {
                ui.label(
                    RichText::new(format!("{} — {:.2} s", f.path.display(), f.seconds)).small(),
                );
            }
        });
    }
    ui.separator();
    ui.label(RichText::new("Spectrogram").strong());
    let mut edited = settings.clone();
    egui::Grid::new("sound-settings")
        .num_columns(4)
        .show(ui, |ui| {
            let m = &mut edited.mel;
            setting(
                ui,
                "Sample rate (Hz)",
                &mut m.sample_rate,
                4000..=96000,
                1.0,
            );
            setting(ui, "Clip (s)", &mut edited.clip_seconds, 0.1..=60.0, 0.05);
            ui.end_row();
            setting(ui, "FFT size", &mut m.fft, 64..=8192, 1.0);
            setting(ui, "Hop (samples)", &mut m.hop, 1..=8192, 1.0);
            ui.end_row();
            setting(ui, "Mel bands", &mut m.mels, 8..=256, 1.0);
            let every = "Long files: a clip every (s, 0 = one)";
            setting(ui, every, &mut edited.hop_seconds, 0.0..=60.0, 0.05);
            ui.end_row();
            setting(ui, "Lowest band (Hz)", &mut m.fmin, 0.0..=20000.0, 1.0);
            setting(ui, "Highest band (Hz)", &mut m.fmax, 100.0..=48000.0, 1.0);
            ui.end_row();
        });
    if edited != *settings {
        *settings = edited;
    }
    let pending = match &train.media {
        crate::data::Media::Sounds(read_with) => read_with != settings,
        crate::data::Media::Images => false,
    };
    ui.horizontal(|ui| match settings.validate() {
        Err(e) => {
            ui.label(RichText::new(e).color(theme::ERROR));
        }
        Ok(()) if pending => {
            if ui
                .button("Apply and read the folder again")
                .on_hover_text("Clips are cut and measured with these settings")
                .clicked()
            {
                commands.push(AppCommand::Rescan);
            }
        }
        Ok(()) => {
            ui.label(
                RichText::new(format!(
                    "{} windows of {} samples per {} s clip",
                    settings.mel.frames(settings.clip_samples()),
                    settings.mel.fft,
                    settings.clip_seconds
                ))
                .small()
                .weak(),
            );
        }
    });
    ui.separator();
    sound_augmentation_ui(ui, &mut options.sound_augmentation, commands)
}

/// A labelled number in the settings grid.
fn setting<N: egui::emath::Numeric>(
    ui: &mut Ui,
    label: &str,
    value: &mut N,
    range: std::ops::RangeInclusive<N>,
    speed: f64,
) {
    ui.label(label);
    ui.add(egui::DragValue::new(value).range(range).speed(speed));
}

/// Time shift, gain, background noise and SpecAugment masks.
fn sound_augmentation_ui(
    ui: &mut Ui,
    augmentation: &mut Option<AudioAugmentation>,
    commands: &mut Vec<AppCommand>,
) -> bool {
    let (mut changed, on) =
        super::data_panel::augmentation_switch(ui, augmentation, "augment training clips");
    let Some(a) = on else {
        return changed;
    };
    changed |= ui
        .add(egui::Slider::new(&mut a.time_shift_seconds, 0.0..=0.5).text("time shift ± s"))
        .changed();
    changed |= ui
        .add(egui::Slider::new(&mut a.gain_db, 0.0..=20.0).text("gain ± dB"))
        .changed();
    ui.horizontal(|ui| {
        ui.label("Background noise");
        match &a.noise_folder {
            Some(dir) => {
                ui.label(RichText::new(dir.display().to_string()).monospace());
                if ui
                    .small_button("✖")
                    .on_hover_text("No background noise")
                    .clicked()
                {
                    commands.push(AppCommand::SetNoiseFolder(None));
                }
            }
            None => {
                ui.label(RichText::new("none").weak());
            }
        }
        if ui
            .button("Folder…")
            .on_hover_text("Sound files (any depth) mixed into training clips")
            .clicked()
        {
            commands.push(AppCommand::PickNoiseFolder);
        }
    });
    if a.noise_folder.is_some() {
        ui.horizontal(|ui| {
            changed |= ui
                .add(egui::Slider::new(&mut a.noise_probability, 0.0..=1.0).text("of clips"))
                .changed();
            ui.label("at SNR");
            changed |= ui
                .add(
                    egui::DragValue::new(&mut a.noise_snr_db.0)
                        .range(-20.0..=40.0)
                        .suffix(" dB"),
                )
                .changed();
            ui.label("to");
            changed |= ui
                .add(
                    egui::DragValue::new(&mut a.noise_snr_db.1)
                        .range(-20.0..=40.0)
                        .suffix(" dB"),
                )
                .changed();
        });
    }
    ui.horizontal(|ui| {
        ui.label("Time masks");
        changed |= ui
            .add(egui::DragValue::new(&mut a.time_masks).range(0..=4))
            .changed();
        changed |= ui
            .add(egui::Slider::new(&mut a.time_mask_fraction, 0.0..=0.5).text("longest"))
            .changed();
    });
    ui.horizontal(|ui| {
        ui.label("Frequency masks");
        changed |= ui
            .add(egui::DragValue::new(&mut a.freq_masks).range(0..=4))
            .changed();
        changed |= ui
            .add(egui::Slider::new(&mut a.freq_mask_fraction, 0.0..=0.5).text("widest"))
            .changed();
    });
    changed
}

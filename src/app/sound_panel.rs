//! The data panel's parts for a folder of sound clips: spectrogram thumbnails, durations per
//! class, files shorter than the minimum, the front end's settings (changing them reads the
//! folder again), and sound augmentation with a preview of augmented spectrograms.

use super::jobs::Job;
use super::{AppCommand, theme};
use crate::audio::clips::SoundFraming;
use crate::audio::front::{AudioAugmentation, AudioSettings, FrontEnd};
use crate::audio::playback::{PlayState, Playback};
use crate::data::{Dataset, Sample};
use crate::train::TrainingOptions;
use egui::{ColorImage, RichText, TextureHandle, Ui};
use egui_plot::{Line, Plot, PlotPoints, VLine};

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

/// Points of a waveform drawn: each is the min and max of its stretch of samples.
const WAVE_POINTS: usize = 1200;

/// A clip as the clip view shows it: its waveform as min/max pairs over time (seconds), and
/// its spectrogram.
pub struct Clip {
    pub sample: Sample,
    /// The clip's samples at the front end's rate, for the play button.
    pub samples: Vec<f32>,
    pub rate: u32,
    pub envelope: Vec<[f64; 2]>,
    pub seconds: f32,
    pub picture: ColorImage,
}

/// The clip view: the clip a thumbnail opened (decoded off the UI thread).
#[derive(Default)]
pub struct ClipViewState {
    shown: Option<(Clip, Option<TextureHandle>)>,
    job: Option<Job<Clip>>,
    error: Option<String>,
    /// The opened clip playing, if the play button was pressed.
    playing: Option<Playback>,
    /// Why the last playback made no sound (no sound device is a note, not an error).
    no_sound: Option<String>,
}

impl ClipViewState {
    /// Decodes `sample` as `settings` cut it, in a job.
    pub fn open(&mut self, ctx: &egui::Context, sample: Sample, settings: AudioSettings) {
        self.error = None;
        self.playing = None;
        self.job = Some(Job::spawn("Opening a clip", ctx, move |_| {
            let clip = raw(&settings).clip(&sample).map_err(|e| e.to_string())?;
            let rate = settings.mel.sample_rate as f64;
            let step = clip.len().div_ceil(WAVE_POINTS).max(1);
            let mut envelope = Vec::with_capacity(2 * WAVE_POINTS);
            for (i, part) in clip.chunks(step).enumerate() {
                let t = (i * step) as f64 / rate;
                let (lo, hi) = part
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
                envelope.push([t, lo as f64]);
                envelope.push([t, hi as f64]);
            }
            let own = FrontEnd::fit(&settings, std::slice::from_ref(&clip));
            let (spec, mels, frames) = own.spectrogram(&clip);
            Ok(Clip {
                seconds: clip.len() as f32 / rate as f32,
                picture: spectrogram_picture(&spec, mels, frames),
                envelope,
                sample,
                samples: clip,
                rate: settings.mel.sample_rate,
            })
        }));
    }
}

/// The opened clip: file, start, waveform and spectrogram, one above the other on one time
/// axis.
pub fn clip_view_ui(ui: &mut Ui, state: &mut ClipViewState) {
    if let Some(r) = super::jobs::take(&mut state.job) {
        match r {
            Ok(c) => state.shown = Some((c, None)),
            Err(e) => state.error = Some(e),
        }
    }
    if let Some(e) = &state.error {
        ui.label(RichText::new(e).color(theme::ERROR));
    }
    let Some((clip, texture)) = &mut state.shown else {
        if state.job.is_some() {
            ui.spinner();
        }
        return;
    };
    if texture.is_none() {
        *texture = Some(ui.ctx().load_texture(
            "clip-spectrogram",
            clip.picture.clone(),
            egui::TextureOptions::LINEAR,
        ));
    }
    ui.separator();
    let mut close = false;
    ui.horizontal(|ui| {
        play_button_ui(ui, clip, &mut state.playing, &mut state.no_sound);
        ui.label(
            RichText::new(format!(
                "{} from {:.2} s, {:.2} s",
                clip.sample.path.display(),
                clip.sample.start.unwrap_or(0.0),
                clip.seconds
            ))
            .monospace(),
        );
        close = ui
            .small_button("✖")
            .on_hover_text("Close the clip")
            .clicked();
    });
    if close {
        state.shown = None;
        state.playing = None;
        return;
    }
    if let Some(note) = &state.no_sound {
        ui.label(RichText::new(note).small().weak());
    }
    let width = ui.available_width().min(900.0);
    let Some((clip, texture)) = &state.shown else {
        return;
    };
    Plot::new("clip-waveform")
        .width(width)
        .height(90.0)
        .include_y(-1.0)
        .include_y(1.0)
        .include_x(0.0)
        .include_x(clip.seconds as f64)
        .x_axis_label("s")
        .allow_scroll(false)
        .allow_drag(false)
        .allow_zoom(false)
        .show(ui, |p| {
            p.line(
                Line::new("waveform", PlotPoints::from(clip.envelope.clone())).color(theme::TRAIN),
            );
            if let Some(playing) = &state.playing {
                p.vline(
                    VLine::new("playing", playing.seconds_played() as f64).color(theme::SELECTED),
                );
            }
        });
    if let Some(t) = texture {
        ui.add(
            egui::Image::from_texture(egui::load::SizedTexture::from_handle(t))
                .maintain_aspect_ratio(false)
                .fit_to_exact_size(egui::vec2(width, 96.0)),
        );
    }
}

/// ▶ plays the opened clip (as the front end cut and resampled it), ■ stops it. While it
/// plays the window repaints to move the waveform's play line.
fn play_button_ui(
    ui: &mut Ui,
    clip: &Clip,
    playing: &mut Option<Playback>,
    no_sound: &mut Option<String>,
) {
    let state = playing.as_ref().map(Playback::state);
    if let Some(PlayState::Failed(why)) = &state {
        *no_sound = Some(why.clone());
        *playing = None;
    } else if state == Some(PlayState::Done) {
        *playing = None;
    }
    if playing.is_some() {
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_millis(30));
        if ui.button("■").on_hover_text("Stop").clicked() {
            *playing = None;
        }
    } else if ui
        .button("▶")
        .on_hover_text("Play the clip as the network hears it (cut and resampled)")
        .clicked()
    {
        *no_sound = None;
        *playing = Some(Playback::start(clip.samples.clone(), clip.rate));
    }
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
            let floor = "Floor below the loudest (dB, 0 = off)";
            setting(ui, floor, &mut edited.floor_db, 0.0..=160.0, 1.0);
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

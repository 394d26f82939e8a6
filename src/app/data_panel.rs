//! The dataset: folder pickers, class table with counts and thumbnails, skipped files, the
//! validation split and augmentation with a preview.

use super::boxes_panel::BoxView;
use super::jobs::{Job, Progress};
use super::samples_view;
use super::thumbnails::Thumbnails;
use super::{AppCommand, theme};
use crate::data::augment::augmented_view;
use crate::data::preprocess::load_rgb;
use crate::data::{Augmentation, Dataset, Media};
use crate::detect::dataset::{BoxDataset, BoxFormat, Reading};
use crate::project::{DatasetSettings, Layout};
use crate::train::TrainingOptions;
use egui::{ColorImage, RichText, TextureHandle, Ui};
use rand::SeedableRng;
use std::path::PathBuf;
use std::sync::Arc;

const THUMB: u32 = 64;

/// What a scan job returns.
pub struct Scanned {
    pub train: Dataset,
    pub validation: Option<Dataset>,
    /// [`Dataset::typical_side`] of the training images.
    pub typical_side: Option<usize>,
    /// A box dataset as read (for its findings and box sizes) and sample images with boxes.
    pub boxes: Option<(BoxDataset, Vec<ColorImage>)>,
}

#[derive(Default)]
pub struct DataPanelState {
    pub settings: Option<DatasetSettings>,
    /// Shared, not copied: the panel reads it every frame and a folder may hold 50,000 images.
    pub train: Option<Arc<Dataset>>,
    pub validation: Option<Dataset>,
    /// The training images' typical side, for networks that leave their image size open.
    pub typical_side: Option<usize>,
    /// A box dataset's view (object detection); `None` for an image folder.
    pub boxes: Option<BoxView>,
    pub error: Option<String>,
    /// The training samples' thumbnails, made as they come on screen.
    pub(super) thumbs: Option<Thumbnails>,
    /// Each class's sample indices, in order (the class table and the browser).
    pub(super) by_class: Vec<Vec<usize>>,
    /// The split the panel shows, kept until its fraction, seed or dataset change.
    split_memo: Option<(SplitKey, SplitCounts)>,
    /// The image browser's class (`None`: every class).
    pub(super) browse_class: Option<usize>,
    /// Opens (or closes) the browser at the next frame (the frame benchmark).
    pub browse_open: Option<bool>,
    /// Scrolls the browser to this offset at the next frame (the frame benchmark).
    pub browse_scroll: Option<f32>,
    preview: Vec<TextureHandle>,
    pub preview_job: Option<Job<Vec<ColorImage>>>,
    /// A sound clip opened from its thumbnail: its waveform and spectrogram.
    pub clip: super::sound_panel::ClipViewState,
}

pub fn thumbnail(path: &std::path::Path, size: u32) -> Option<ColorImage> {
    let img = load_rgb(path).ok()?;
    let t = image::imageops::thumbnail(&img, size, size);
    Some(ColorImage::from_rgb(
        [t.width() as usize, t.height() as usize],
        t.as_raw(),
    ))
}

/// Reads a box dataset in `format` with its validation set (a second folder, or the one
/// its own `data.yaml` names) and sample images with their boxes drawn.
fn read_boxes(
    settings: &DatasetSettings,
    format: BoxFormat,
    p: &Progress,
) -> Result<Scanned, String> {
    let progress = |d: usize, t: usize| p.set(d, t);
    let reading = Reading {
        progress: &progress,
        cancel: p.cancel_flag(),
    };
    let read = |dir: &std::path::Path| {
        crate::detect::dataset::read(dir, Some(format), reading).map_err(|e| e.to_string())
    };
    let boxes = read(&settings.root)?;
    let train = boxes.to_dataset();
    let second = match &settings.val_root {
        Some(dir) => Some(read(dir)?),
        None => {
            crate::detect::dataset::load_validation(&boxes, reading).map_err(|e| e.to_string())?
        }
    };
    let validation = match second {
        Some(v) => {
            let v = v.to_dataset();
            train.same_classes(&v).map_err(|e| e.to_string())?;
            Some(v)
        }
        None => None,
    };
    let samples = boxes
        .images
        .iter()
        .filter(|i| !i.objects.is_empty())
        .take(super::boxes_panel::SAMPLES)
        .filter_map(super::boxes_panel::boxed_thumbnail)
        .collect();
    Ok(Scanned {
        typical_side: train.typical_side(),
        train,
        validation,
        boxes: Some((boxes, samples)),
    })
}

/// Scans the folders (off the UI thread) and makes thumbnails: as a box dataset (object
/// detection) when the layout says so or, left automatic, the folder looks like one.
pub fn scan_job(ctx: &egui::Context, settings: DatasetSettings) -> Job<Scanned> {
    Job::spawn("Scanning images", ctx, move |p: &Progress| {
        let sounds = match settings.layout.resolve(&settings.root) {
            Layout::Boxes(format) => return read_boxes(&settings, format, p),
            Layout::Sounds => true,
            Layout::Classes | Layout::Automatic => false,
        };
        let progress = |d: usize, t: usize| p.set(d, t);
        let scan = |dir: &std::path::Path| {
            if sounds {
                crate::audio::clips::scan(dir, &settings.audio, &progress, p.cancel_flag())
            } else {
                crate::data::scan(dir, &progress, p.cancel_flag())
            }
            .map_err(|e| e.to_string())
        };
        let train = scan(&settings.root)?;
        let validation = match &settings.val_root {
            Some(dir) => {
                let v = scan(dir)?;
                train.same_classes(&v).map_err(|e| e.to_string())?;
                Some(v)
            }
            None => None,
        };
        let typical_side = train.typical_side();
        Ok(Scanned {
            train,
            validation,
            typical_side,
            boxes: None,
        })
    })
}

impl DataPanelState {
    pub fn set_scanned(&mut self, ctx: &egui::Context, s: Scanned) {
        self.boxes = s
            .boxes
            .map(|(dataset, samples)| BoxView::new(ctx, dataset, samples));
        // A box dataset shows its own sample images (boxes drawn); the rest get lazy thumbnails.
        self.thumbs = self
            .boxes
            .is_none()
            .then(|| Thumbnails::new(ctx, &s.train, THUMB));
        self.by_class = vec![Vec::new(); s.train.classes.len()];
        for (i, sample) in s.train.samples.iter().enumerate() {
            if let Some(c) = self.by_class.get_mut(sample.label) {
                c.push(i);
            }
        }
        self.browse_class = None;
        self.split_memo = None;
        self.train = Some(Arc::new(s.train));
        self.validation = s.validation;
        self.typical_side = s.typical_side;
        self.preview.clear();
        self.error = None;
    }

    /// Training and validation sets as the options say (a split when there is no second folder).
    pub fn split(&self, seed: u64) -> Result<(Dataset, Option<Dataset>), String> {
        let train = self
            .train
            .as_deref()
            .ok_or("choose a dataset folder first")?;
        train.validate().map_err(|e| e.to_string())?;
        if let Some(v) = &self.validation {
            return Ok((train.clone(), Some(v.clone())));
        }
        let fraction = self.split_fraction();
        if fraction <= 0.0 {
            return Ok((train.clone(), None));
        }
        let (t, v) = train.split(fraction, seed).map_err(|e| e.to_string())?;
        Ok((t, Some(v)))
    }

    /// Thumbnails made and kept (the frame benchmark reports it).
    pub fn thumbnails_kept(&self) -> usize {
        self.thumbs.as_ref().map_or(0, Thumbnails::kept)
    }

    fn split_fraction(&self) -> f32 {
        self.settings.as_ref().map_or(0.2, |s| s.val_split)
    }

    /// What the panel shows of the split, computed once per change of fraction, seed or
    /// dataset (splitting 50,000 images every frame cost a frame's whole budget).
    fn split_counts(&mut self, seed: u64) -> &SplitCounts {
        let key = SplitKey {
            fraction: self.split_fraction().to_bits(),
            seed,
            second_folder: self.validation.is_some(),
        };
        if self.split_memo.as_ref().is_none_or(|(k, _)| *k != key) {
            let counts = if self.boxes.is_some() || self.validation.is_some() {
                // A box dataset's panel needs the validation images themselves.
                match self.split(seed) {
                    Ok((_, v)) => SplitCounts {
                        validation_counts: v.as_ref().map(Dataset::counts),
                        validation: v.map(Arc::new),
                    },
                    Err(_) => SplitCounts::default(),
                }
            } else {
                // Counts only: positions, no copies of 50,000 samples.
                let fraction = self.split_fraction();
                let validation_counts = self.train.as_deref().and_then(|t| {
                    let (_, v) = t.split_indices(fraction, seed).ok()?;
                    let mut c = vec![0; t.classes.len()];
                    for i in v {
                        c[t.samples[i].label] += 1;
                    }
                    Some(c)
                });
                SplitCounts {
                    validation: None,
                    validation_counts,
                }
            };
            self.split_memo = Some((key, counts));
        }
        &self.split_memo.as_ref().expect("just set").1
    }

    pub fn set_preview(&mut self, ctx: &egui::Context, imgs: Vec<ColorImage>) {
        self.preview = imgs
            .into_iter()
            .enumerate()
            .map(|(i, img)| ctx.load_texture(format!("aug-{i}"), img, egui::TextureOptions::LINEAR))
            .collect();
    }
}

#[derive(Clone, Copy, PartialEq)]
struct SplitKey {
    fraction: u32,
    seed: u64,
    second_folder: bool,
}

/// The validation side of the split the panel shows (`None` without one).
#[derive(Default)]
struct SplitCounts {
    validation: Option<Arc<Dataset>>,
    validation_counts: Option<Vec<usize>>,
}

/// Three seeded augmented views of each of `paths` (off the UI thread).
fn augmentation_preview(
    ctx: &egui::Context,
    paths: Vec<PathBuf>,
    augment: Augmentation,
    resize: usize,
    crop: usize,
    seed: u64,
) -> Job<Vec<ColorImage>> {
    Job::spawn("Augmentation preview", ctx, move |_| {
        let mut out = Vec::new();
        for (k, p) in paths.iter().enumerate() {
            let img = load_rgb(p)?;
            for j in 0..3 {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed + (k * 3 + j) as u64);
                let v = augmented_view(&img, resize, crop, &augment, &mut rng);
                let t = image::imageops::thumbnail(&v, 72, 72);
                out.push(ColorImage::from_rgb(
                    [t.width() as usize, t.height() as usize],
                    t.as_raw(),
                ));
            }
        }
        Ok(out)
    })
}

fn image(ui: &mut Ui, t: &TextureHandle, size: f32) {
    ui.add(
        egui::Image::from_texture(egui::load::SizedTexture::from_handle(t))
            .fit_to_exact_size(egui::vec2(size, size)),
    );
}

pub fn data_ui(
    ui: &mut Ui,
    state: &mut DataPanelState,
    options: &mut TrainingOptions,
    crop: (usize, usize),
    scanning: Option<&Progress>,
    commands: &mut Vec<AppCommand>,
) -> bool {
    let mut changed = false;
    ui.heading("Data");
    ui.horizontal(|ui| {
        if ui
            .button("📂 Choose data folder…")
            .on_hover_text(
                "One sub-folder of images or sound clips per class, or a box dataset for \
                 detection (YOLO data.yaml, COCO instances.json, Pascal VOC Annotations/); you \
                 can also drop a folder on the window",
            )
            .clicked()
        {
            commands.push(AppCommand::PickDataset);
        }
        if ui
            .button("Validation folder…")
            .on_hover_text("Optional: a second folder with the same classes")
            .clicked()
        {
            commands.push(AppCommand::PickValidation);
        }
        // What the folder was read as, for "automatic".
        let found = match (&state.boxes, &state.train) {
            (Some(v), _) => Some(v.dataset.format.name()),
            (None, Some(t)) if matches!(t.media, Media::Sounds(_)) => Some("sound clips"),
            (None, Some(_)) => Some("images"),
            (None, None) => None,
        };
        if let Some(s) = &mut state.settings {
            ui.label(RichText::new(s.root.display().to_string()).monospace());
            if layout_ui(ui, &mut s.layout, found) {
                commands.push(AppCommand::Rescan);
            }
        }
    });
    if let Some(p) = scanning {
        ui.horizontal(|ui| {
            ui.add(
                egui::ProgressBar::new(p.fraction().unwrap_or(0.0))
                    .show_percentage()
                    .text("Scanning images"),
            );
            if ui.button("Cancel").clicked() {
                p.cancel();
            }
        });
    }
    if let Some(e) = &state.error {
        ui.label(RichText::new(e).color(theme::ERROR));
    }
    // An `Arc`: the panel below both reads it and changes `state`.
    let Some(train) = state.train.clone() else {
        ui.label(RichText::new("No dataset yet.").weak());
        return changed;
    };
    if let Err(e) = train.validate() {
        ui.label(RichText::new(format!("⚠ {e}")).color(theme::ERROR));
    }
    ui.separator();
    // Split.
    let own_validation = state.validation.as_ref().filter(|_| {
        state
            .settings
            .as_ref()
            .is_some_and(|s| s.val_root.is_none())
    });
    if let Some(v) = own_validation {
        // A box dataset that names its own validation images (YOLO's `val:`).
        ui.label(format!(
            "Validation: {} ({} images, named by the dataset)",
            v.root.display(),
            v.samples.len()
        ));
    } else if let Some(s) = &mut state.settings {
        ui.horizontal(|ui| match &s.val_root {
            Some(v) => {
                ui.label(format!("Validation: {}", v.display()));
                if ui.button("Use a split instead").clicked() {
                    s.val_root = None;
                    commands.push(AppCommand::Rescan);
                }
            }
            None => {
                ui.label("Validation split");
                changed |= ui
                    .add(egui::Slider::new(&mut s.val_split, 0.0..=0.5).fixed_decimals(2))
                    .changed();
                ui.label(
                    RichText::new(if state.boxes.is_some() {
                        "random images, seeded"
                    } else if matches!(train.media, Media::Sounds(_)) {
                        "stratified per class, by file, seeded"
                    } else {
                        "stratified per class, seeded"
                    })
                    .weak(),
                );
            }
        });
    }
    if state.boxes.is_some() {
        let validation = state.split_counts(options.seed).validation.clone();
        if let Some(view) = &mut state.boxes {
            changed |= super::boxes_panel::boxes_ui(
                ui,
                view,
                &train,
                validation.as_deref(),
                options,
                crop.1,
                commands,
            );
        }
        if let (Some(a), Some(view)) = (&options.detection.augmentation, &state.boxes) {
            let (a, dataset) = (a.clone(), view.dataset.clone());
            let (fit, seed, side) = (options.detection.fit, options.seed, crop.1);
            preview_ui(ui, state, |ctx| {
                super::boxes_panel::augmentation_preview(ctx, &dataset, a, side, fit, seed)
            });
        }
        return changed;
    }
    let counts = train.counts();
    let val_counts = state
        .split_counts(options.seed)
        .validation_counts
        .clone()
        .unwrap_or_else(|| vec![0; counts.len()]);
    let sounds = matches!(train.media, Media::Sounds(_));
    let seconds = super::sound_panel::seconds_per_class(&train);
    if sounds {
        ui.label(format!(
            "Sound clips: {} clips from {} files in {} classes, {:.0} s of sound",
            train.samples.len(),
            train.sounds.len(),
            train.classes.len(),
            seconds.iter().sum::<f32>()
        ));
    } else {
        ui.label(format!(
            "{} images in {} classes",
            train.samples.len(),
            train.classes.len()
        ));
    }
    if let Some(thumbs) = &mut state.thumbs {
        thumbs.begin_frame(ui.ctx());
    }
    samples_view::class_table(ui, state, &train, &counts, &val_counts, &seconds);
    samples_view::browser_ui(ui, state, &train);
    samples_view::skipped_ui(ui, &train.skipped);
    if sounds {
        super::sound_panel::clip_view_ui(ui, &mut state.clip);
        if let Some(settings) = &mut state.settings {
            changed |=
                super::sound_panel::sound_ui(ui, &train, &mut settings.audio, options, commands);
        }
        if let (Some(a), Some(settings)) = (&options.sound_augmentation, &state.settings) {
            let (a, audio, seed) = (a.clone(), settings.audio.clone(), options.seed);
            preview_ui(ui, state, |ctx| {
                super::sound_panel::augmentation_preview(ctx, &train, audio, a, seed)
            });
        }
        return changed;
    }
    ui.separator();
    changed |= augmentation_ui(ui, options);
    if let Some(a) = options.augmentation.clone().filter(Augmentation::is_active)
        && let Some(train) = &state.train
    {
        let paths: Vec<PathBuf> = train
            .samples
            .iter()
            .step_by((train.samples.len() / 4).max(1))
            .take(4)
            .map(|s| s.path.clone())
            .collect();
        let seed = options.seed;
        preview_ui(ui, state, |ctx| {
            augmentation_preview(ctx, paths, a, crop.0, crop.1, seed)
        });
    }
    changed
}

/// The "Preview augmented samples" button (`start` makes the job) and the views it made.
fn preview_ui(
    ui: &mut Ui,
    state: &mut DataPanelState,
    start: impl FnOnce(&egui::Context) -> Job<Vec<ColorImage>>,
) {
    ui.horizontal(|ui| {
        if ui.button("Preview augmented samples").clicked() {
            state.preview_job = Some(start(ui.ctx()));
        }
        if state.preview_job.is_some() {
            ui.spinner();
        }
    });
    ui.horizontal_wrapped(|ui| {
        for t in &state.preview {
            image(ui, t, 72.0);
        }
    });
}

/// How the folder is read; true when the user chose another layout (the folder is then read
/// again).
fn layout_ui(ui: &mut Ui, layout: &mut Layout, found: Option<&str>) -> bool {
    let mut changed = false;
    ui.label("Layout");
    let shown = match (*layout, found) {
        (Layout::Automatic, Some(f)) => format!("automatic: {f}"),
        (l, _) => l.name().to_string(),
    };
    egui::ComboBox::from_id_salt("dataset-layout")
        .selected_text(shown)
        .show_ui(ui, |ui| {
            for l in Layout::ALL {
                changed |= ui.selectable_value(layout, l, l.name()).changed();
            }
        })
        .response
        .on_hover_text(
            "Automatic reads a box dataset (YOLO data.yaml, COCO instances.json, Pascal VOC \
             Annotations/) for detection and otherwise one sub-folder per class",
        );
    changed
}

/// The "Augmentation" heading with its on/off box for an optional augmentation (boxes,
/// sounds): switching it on starts from the defaults. Returns (changed, the settings when on);
/// when off it says what that buys.
pub fn augmentation_switch<'a, T: Default>(
    ui: &mut Ui,
    augmentation: &'a mut Option<T>,
    what: &str,
) -> (bool, Option<&'a mut T>) {
    let mut changed = false;
    let mut on = augmentation.is_some();
    ui.horizontal(|ui| {
        ui.label(RichText::new("Augmentation").strong());
        if ui.checkbox(&mut on, what).changed() {
            *augmentation = on.then(T::default);
            changed = true;
        }
    });
    if augmentation.is_none() {
        ui.label(
            RichText::new("Without augmentation a frozen backbone's features are computed once.")
                .small()
                .weak(),
        );
    }
    (changed, augmentation.as_mut())
}

/// Augmentation options (MATLAB's imageDataAugmenter set).
pub fn augmentation_ui(ui: &mut Ui, options: &mut TrainingOptions) -> bool {
    let mut changed = false;
    let mut on = options
        .augmentation
        .as_ref()
        .is_some_and(Augmentation::is_active);
    ui.horizontal(|ui| {
        ui.label(RichText::new("Augmentation").strong());
        if ui.checkbox(&mut on, "augment training images").changed() {
            options.augmentation = on.then(Augmentation::default);
            changed = true;
        }
    });
    if on {
        ui.label(
            RichText::new(
                "Augmenting turns off the frozen-layer cache: every epoch sees new images.",
            )
            .small()
            .weak(),
        );
        if let Some(a) = &mut options.augmentation {
            changed |= ui
                .checkbox(&mut a.random_resized_crop, "Random resized crop")
                .changed();
            if a.random_resized_crop {
                changed |= ui
                    .add(egui::Slider::new(&mut a.scale.0, 0.05..=1.0).text("smallest area"))
                    .changed();
            }
            changed |= ui
                .checkbox(&mut a.horizontal_flip, "Horizontal flip")
                .changed();
            changed |= ui.checkbox(&mut a.vertical_flip, "Vertical flip").changed();
            changed |= ui
                .add(
                    egui::Slider::new(&mut a.rotation_degrees, 0.0..=45.0)
                        .text("rotation ± degrees"),
                )
                .changed();
            changed |= ui
                .add(
                    egui::Slider::new(&mut a.translation, 0.0..=0.3).text("translation ± fraction"),
                )
                .changed();
        }
    }
    changed
}

//! The dataset: folder pickers, class table with counts and thumbnails, skipped files, the
//! validation split and augmentation with a preview.

use super::boxes_panel::BoxView;
use super::jobs::{Job, Progress};
use super::{AppCommand, theme};
use crate::data::augment::augmented_view;
use crate::data::preprocess::load_rgb;
use crate::data::{Augmentation, Dataset};
use crate::detect::dataset::BoxDataset;
use crate::project::DatasetSettings;
use crate::train::TrainingOptions;
use egui::{ColorImage, RichText, TextureHandle, Ui};
use rand::SeedableRng;
use std::path::PathBuf;

const THUMBS_PER_CLASS: usize = 6;
const THUMB: u32 = 64;

/// What a scan job returns.
pub struct Scanned {
    pub train: Dataset,
    pub validation: Option<Dataset>,
    pub thumbs: Vec<Vec<ColorImage>>,
    /// [`Dataset::typical_side`] of the training images.
    pub typical_side: Option<usize>,
    /// A box dataset as read (for its findings and box sizes) and sample images with boxes.
    pub boxes: Option<(BoxDataset, Vec<ColorImage>)>,
}

#[derive(Default)]
pub struct DataPanelState {
    pub settings: Option<DatasetSettings>,
    pub train: Option<Dataset>,
    pub validation: Option<Dataset>,
    /// The training images' typical side, for networks that leave their image size open.
    pub typical_side: Option<usize>,
    /// A box dataset's view (object detection); `None` for an image folder.
    pub boxes: Option<BoxView>,
    pub error: Option<String>,
    thumbs: Vec<Vec<TextureHandle>>,
    preview: Vec<TextureHandle>,
    pub preview_job: Option<Job<Vec<ColorImage>>>,
}

pub fn thumbnail(path: &std::path::Path, size: u32) -> Option<ColorImage> {
    let img = load_rgb(path).ok()?;
    let t = image::imageops::thumbnail(&img, size, size);
    Some(ColorImage::from_rgb(
        [t.width() as usize, t.height() as usize],
        t.as_raw(),
    ))
}

/// Reads a box dataset (YOLO, COCO or VOC layout) with its validation set (a second folder,
/// or the one its own `data.yaml` names) and sample images with their boxes drawn.
fn read_boxes(settings: &DatasetSettings) -> Result<Scanned, String> {
    let load =
        |dir: &std::path::Path| crate::detect::dataset::load(dir, None).map_err(|e| e.to_string());
    let boxes = load(&settings.root)?;
    let train = boxes.to_dataset();
    let second = match &settings.val_root {
        Some(dir) => Some(load(dir)?),
        None => crate::detect::dataset::load_validation(&boxes).map_err(|e| e.to_string())?,
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
        thumbs: Vec::new(),
        boxes: Some((boxes, samples)),
    })
}

/// Scans the folders (off the UI thread) and makes thumbnails. A folder in a box dataset's
/// layout is read as one (object detection).
pub fn scan_job(ctx: &egui::Context, settings: DatasetSettings) -> Job<Scanned> {
    Job::spawn("Scanning images", ctx, move |p: &Progress| {
        if crate::detect::dataset::detect_format(&settings.root).is_some() {
            return read_boxes(&settings);
        }
        let progress = |d: usize, t: usize| p.set(d, t);
        let train = crate::data::scan(&settings.root, &progress, p.cancel_flag())
            .map_err(|e| e.to_string())?;
        let validation = match &settings.val_root {
            Some(dir) => {
                let v = crate::data::scan(dir, &progress, p.cancel_flag())
                    .map_err(|e| e.to_string())?;
                train.same_classes(&v).map_err(|e| e.to_string())?;
                Some(v)
            }
            None => None,
        };
        let thumbs = (0..train.classes.len())
            .map(|c| {
                train
                    .samples
                    .iter()
                    .filter(|s| s.label == c)
                    .take(THUMBS_PER_CLASS)
                    .filter_map(|s| thumbnail(&s.path, THUMB))
                    .collect()
            })
            .collect();
        let typical_side = train.typical_side();
        Ok(Scanned {
            train,
            validation,
            thumbs,
            typical_side,
            boxes: None,
        })
    })
}

impl DataPanelState {
    pub fn set_scanned(&mut self, ctx: &egui::Context, s: Scanned) {
        self.thumbs = s
            .thumbs
            .into_iter()
            .enumerate()
            .map(|(c, imgs)| {
                imgs.into_iter()
                    .enumerate()
                    .map(|(i, img)| {
                        ctx.load_texture(
                            format!("thumb-{c}-{i}"),
                            img,
                            egui::TextureOptions::LINEAR,
                        )
                    })
                    .collect()
            })
            .collect();
        self.boxes = s
            .boxes
            .map(|(dataset, samples)| BoxView::new(ctx, dataset, samples));
        self.train = Some(s.train);
        self.validation = s.validation;
        self.typical_side = s.typical_side;
        self.preview.clear();
        self.error = None;
    }

    /// Training and validation sets as the options say (a split when there is no second folder).
    pub fn split(&self, seed: u64) -> Result<(Dataset, Option<Dataset>), String> {
        let train = self.train.as_ref().ok_or("choose a dataset folder first")?;
        train.validate().map_err(|e| e.to_string())?;
        if let Some(v) = &self.validation {
            return Ok((train.clone(), Some(v.clone())));
        }
        let fraction = self.settings.as_ref().map_or(0.2, |s| s.val_split);
        if fraction <= 0.0 {
            return Ok((train.clone(), None));
        }
        let (t, v) = train.split(fraction, seed).map_err(|e| e.to_string())?;
        Ok((t, Some(v)))
    }

    fn start_preview(
        &mut self,
        ctx: &egui::Context,
        augment: Augmentation,
        resize: usize,
        crop: usize,
        seed: u64,
    ) {
        let Some(train) = &self.train else { return };
        let paths: Vec<PathBuf> = train
            .samples
            .iter()
            .step_by((train.samples.len() / 4).max(1))
            .take(4)
            .map(|s| s.path.clone())
            .collect();
        self.preview_job = Some(Job::spawn("Augmentation preview", ctx, move |_| {
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
        }));
    }

    pub fn set_preview(&mut self, ctx: &egui::Context, imgs: Vec<ColorImage>) {
        self.preview = imgs
            .into_iter()
            .enumerate()
            .map(|(i, img)| ctx.load_texture(format!("aug-{i}"), img, egui::TextureOptions::LINEAR))
            .collect();
    }
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
            .button("📂 Choose image folder…")
            .on_hover_text(
                "One sub-folder per class, or a box dataset for detection (YOLO data.yaml, COCO \
                 instances.json, Pascal VOC Annotations/); you can also drop a folder on the window",
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
        if let Some(s) = &state.settings {
            ui.label(RichText::new(s.root.display().to_string()).monospace());
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
                    } else {
                        "stratified per class, seeded"
                    })
                    .weak(),
                );
            }
        });
    }
    if state.boxes.is_some() {
        let validation = state.split(options.seed).ok().and_then(|(_, v)| v);
        if let Some(view) = &mut state.boxes {
            changed |= super::boxes_panel::boxes_ui(
                ui,
                view,
                &train,
                validation.as_ref(),
                options,
                crop.1,
                commands,
            );
        }
        return changed;
    }
    let counts = train.counts();
    let val_counts = match state.split(options.seed) {
        Ok((_, Some(v))) => v.counts(),
        _ => vec![0; counts.len()],
    };
    ui.label(format!(
        "{} images in {} classes",
        train.samples.len(),
        train.classes.len()
    ));
    egui::ScrollArea::vertical()
        .id_salt("classes")
        .max_height(ui.available_height() * 0.55)
        .show(ui, |ui| {
            egui::Grid::new("class-table")
                .num_columns(4)
                .striped(true)
                .show(ui, |ui| {
                    ui.label(RichText::new("Class").strong());
                    ui.label(RichText::new("Images").strong());
                    ui.label(RichText::new("Validation").strong());
                    ui.label(RichText::new("Samples").strong());
                    ui.end_row();
                    for (c, name) in train.classes.iter().enumerate() {
                        ui.label(name);
                        let n = counts[c];
                        ui.label(if n == 0 {
                            RichText::new("0 — empty").color(theme::ERROR)
                        } else {
                            RichText::new(n.to_string())
                        });
                        ui.label(val_counts.get(c).copied().unwrap_or(0).to_string());
                        ui.horizontal(|ui| {
                            for t in state.thumbs.get(c).into_iter().flatten() {
                                image(ui, t, 40.0);
                            }
                        });
                        ui.end_row();
                    }
                });
        });
    if !train.skipped.is_empty() {
        egui::CollapsingHeader::new(
            RichText::new(format!("⚠ {} files skipped", train.skipped.len())).color(theme::WARNING),
        )
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("skipped")
                .max_height(120.0)
                .show(ui, |ui| {
                    for s in &train.skipped {
                        ui.label(
                            RichText::new(format!("{} — {}", s.path.display(), s.reason)).small(),
                        );
                    }
                });
        });
    }
    ui.separator();
    changed |= augmentation_ui(ui, options);
    if let Some(a) = options.augmentation.clone().filter(Augmentation::is_active) {
        ui.horizontal(|ui| {
            if ui.button("Preview augmented samples").clicked() {
                state.start_preview(ui.ctx(), a, crop.0, crop.1, options.seed);
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
    changed
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

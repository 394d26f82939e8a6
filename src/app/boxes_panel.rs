//! The data panel for a box dataset (object detection): the layout found, boxes per class
//! (training and validation), what the reader clipped, dropped or skipped, sample images
//! with their boxes in class colours, a histogram of box sizes in the detector's input with
//! the estimated anchors drawn over it, and augmentation that moves the boxes.

use super::jobs::Job;
use super::{AppCommand, theme};
use crate::data::Dataset;
use crate::detect::anchors::{self, Anchors};
use crate::detect::dataset::{BoxDataset, BoxImage, Object};
use crate::detect::transform::{BoxAugmentation, Fit};
use crate::train::TrainingOptions;
use crate::train::options::DetectionOptions;
use egui::{ColorImage, RichText, TextureHandle, Ui};
use egui_plot::{Bar, BarChart, Legend, Plot, VLine};
use image::RgbImage;
use std::sync::Arc;

/// Sample images shown with their boxes.
pub const SAMPLES: usize = 12;
/// Their longest side, in pixels.
const SAMPLE_SIDE: u32 = 112;
/// An augmentation preview's side, in pixels.
const PREVIEW_SIDE: u32 = 96;
/// Histogram bin width (pixels of √(w·h) in the input).
const BIN: f32 = 8.0;

/// `objects` drawn on `img` in class colours, their coordinates scaled by `scale`.
pub fn draw_objects(img: &mut RgbImage, objects: &[Object], scale: f32) {
    let boxes: Vec<crate::detect::yolo::Predicted> = objects
        .iter()
        .map(|o| crate::detect::yolo::Predicted {
            class: o.class,
            score: 1.0,
            bbox: crate::detect::BBox::new(
                o.bbox.x0 * scale,
                o.bbox.y0 * scale,
                o.bbox.x1 * scale,
                o.bbox.y1 * scale,
            ),
        })
        .collect();
    crate::detect::predict::draw(img, &boxes);
}

fn to_color_image(img: &RgbImage) -> ColorImage {
    ColorImage::from_rgb([img.width() as usize, img.height() as usize], img.as_raw())
}

/// A sample image with its boxes drawn (made off the UI thread by the scan job).
pub fn boxed_thumbnail(image: &BoxImage) -> Option<ColorImage> {
    let img = crate::data::preprocess::load_rgb(&image.path).ok()?;
    let mut t = image::imageops::thumbnail(&img, SAMPLE_SIDE, SAMPLE_SIDE);
    let s = t.width() as f32 / img.width().max(1) as f32;
    draw_objects(&mut t, &image.objects, s);
    Some(to_color_image(&t))
}

/// Augmented training views of a few images with objects, the boxes drawn where
/// augmentation moved them: three seeded views each of four images (off the UI thread).
pub fn augmentation_preview(
    ctx: &egui::Context,
    dataset: &Arc<BoxDataset>,
    augmentation: BoxAugmentation,
    side: usize,
    fit: Fit,
    seed: u64,
) -> Job<Vec<ColorImage>> {
    use rand::SeedableRng;
    let dataset = dataset.clone();
    Job::spawn("Augmentation preview", ctx, move |_| {
        let with_boxes: Vec<&BoxImage> = dataset
            .images
            .iter()
            .filter(|i| !i.objects.is_empty())
            .collect();
        let step = (with_boxes.len() / 4).max(1);
        let mut out = Vec::new();
        for (k, image) in with_boxes.iter().step_by(step).take(4).enumerate() {
            let img = crate::data::preprocess::load_rgb(&image.path)?;
            for j in 0..3 {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed + (k * 3 + j) as u64);
                let v = crate::detect::transform::augmented(
                    &img,
                    &image.objects,
                    side,
                    fit,
                    &augmentation,
                    &mut rng,
                );
                let mut shown = v.image;
                draw_objects(&mut shown, &v.objects, 1.0);
                out.push(to_color_image(&image::imageops::thumbnail(
                    &shown,
                    PREVIEW_SIDE,
                    PREVIEW_SIDE,
                )));
            }
        }
        Ok(out)
    })
}

/// (input side, anchor count, fit): what an [`Estimate`] depends on.
type EstimateKey = (usize, usize, Fit);

/// A box dataset as the panel shows it.
pub struct BoxView {
    /// Shared with the jobs that estimate anchors and make previews.
    pub dataset: Arc<BoxDataset>,
    samples: Vec<TextureHandle>,
    /// The latest estimate; shown (marked as such) while a newer one is made.
    estimate: Option<Estimate>,
    estimating: Option<(EstimateKey, Job<Estimate>)>,
}

/// The training boxes in a detector's input: their sizes √(w·h) and the anchors.
#[derive(Clone)]
pub struct Estimate {
    key: EstimateKey,
    pub sizes: Vec<f32>,
    pub anchors: Result<Anchors, String>,
}

impl Estimate {
    /// K-means on up to tens of thousands of boxes: tens of milliseconds, so it runs in a job
    /// when the panel asks.
    fn compute(images: &[BoxImage], key: EstimateKey) -> Self {
        let (side, count, fit) = key;
        let sizes = anchors::input_box_sizes(images, side, fit);
        Estimate {
            key,
            anchors: anchors::estimate(&sizes, count, 0),
            sizes: sizes.iter().map(|(w, h)| (w * h).sqrt()).collect(),
        }
    }
}

impl BoxView {
    pub fn new(ctx: &egui::Context, dataset: BoxDataset, samples: Vec<ColorImage>) -> Self {
        let samples = samples
            .into_iter()
            .enumerate()
            .map(|(i, img)| {
                ctx.load_texture(format!("boxes-{i}"), img, egui::TextureOptions::LINEAR)
            })
            .collect();
        Self {
            dataset: Arc::new(dataset),
            samples,
            estimate: None,
            estimating: None,
        }
    }

    /// The estimate the panel shows for `key`: the latest one made, which is for an older key
    /// (the flag is true) while a job makes the one for `key`.
    fn estimate_for(&mut self, ctx: &egui::Context, key: EstimateKey) -> (Option<&Estimate>, bool) {
        if let Some((k, job)) = &self.estimating
            && let Some(r) = job.poll()
        {
            // A failed job leaves its error in place of anchors, so it is not started again.
            self.estimate = Some(r.unwrap_or_else(|e| Estimate {
                key: *k,
                sizes: Vec::new(),
                anchors: Err(e),
            }));
            self.estimating = None;
        }
        let current = self.estimate.as_ref().is_some_and(|e| e.key == key);
        let started = self.estimating.as_ref().is_some_and(|(k, _)| *k == key);
        if !current && !started {
            let dataset = self.dataset.clone();
            let job = Job::spawn("Estimating anchors", ctx, move |_| {
                Ok(Estimate::compute(&dataset.images, key))
            });
            self.estimating = Some((key, job));
        }
        (self.estimate.as_ref(), !current)
    }

    /// The estimate for `key` now (what "Add detection head" uses): the panel's when it is
    /// for this key, else made here, once, on the click.
    pub fn estimate_now(&mut self, key: EstimateKey) -> &Estimate {
        if self.estimate.as_ref().is_none_or(|e| e.key != key) {
            self.estimate = Some(Estimate::compute(&self.dataset.images, key));
        }
        self.estimate.as_ref().expect("just set")
    }
}

/// The box dataset's part of the data panel; true when options changed.
pub fn boxes_ui(
    ui: &mut Ui,
    view: &mut BoxView,
    train: &Dataset,
    validation: Option<&Dataset>,
    options: &mut TrainingOptions,
    side: usize,
    commands: &mut Vec<AppCommand>,
) -> bool {
    let mut changed = false;
    let ds = &view.dataset;
    let counts = train.counts();
    let val_counts = validation.map_or(vec![0; counts.len()], Dataset::counts);
    ui.label(format!(
        "{} layout · {} images for training, {} for validation · {} boxes in {} classes",
        ds.format.name(),
        train.samples.len(),
        validation.map_or(0, |v| v.samples.len()),
        counts.iter().sum::<usize>(),
        train.classes.len()
    ));
    ui.columns(2, |cols| {
        egui::ScrollArea::vertical()
            .id_salt("box-classes")
            .max_height(180.0)
            .show(&mut cols[0], |ui| {
                egui::Grid::new("box-class-table")
                    .num_columns(3)
                    .striped(true)
                    .show(ui, |ui| {
                        ui.label(RichText::new("Class").strong());
                        ui.label(RichText::new("Boxes").strong());
                        ui.label(RichText::new("Validation").strong());
                        ui.end_row();
                        for (c, name) in train.classes.iter().enumerate() {
                            ui.label(
                                RichText::new(format!("■ {name}")).color(theme::class_color(c)),
                            );
                            let n = counts[c];
                            ui.label(if n == 0 {
                                RichText::new("0 — no boxes").color(theme::ERROR)
                            } else {
                                RichText::new(n.to_string())
                            });
                            ui.label(val_counts.get(c).copied().unwrap_or(0).to_string());
                            ui.end_row();
                        }
                    });
            });
        let ui = &mut cols[1];
        egui::ScrollArea::horizontal()
            .id_salt("box-samples")
            .show(ui, |ui| {
                ui.horizontal_wrapped(|ui| {
                    for t in &view.samples {
                        let size = t.size_vec2();
                        let k = 84.0 / size.x.max(size.y).max(1.0);
                        ui.add(
                            egui::Image::from_texture(egui::load::SizedTexture::from_handle(t))
                                .fit_to_exact_size(size * k),
                        );
                    }
                });
            });
    });
    if !ds.findings.is_empty() {
        egui::CollapsingHeader::new(
            RichText::new(format!(
                "⚠ {} findings (clipped, dropped, skipped)",
                ds.findings.len()
            ))
            .color(theme::WARNING),
        )
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .id_salt("box-findings")
                .max_height(100.0)
                .show(ui, |ui| {
                    for f in &ds.findings {
                        ui.label(RichText::new(f.to_string()).small());
                    }
                });
        });
    }
    ui.separator();
    let d = &mut options.detection;
    ui.horizontal(|ui| {
        ui.label(RichText::new("Anchors").strong());
        changed |= ui
            .add(egui::DragValue::new(&mut d.anchors).range(1..=12))
            .on_hover_text("How many anchor boxes the head predicts per cell of each scale (k-means on IoU over the training boxes)")
            .changed();
        ui.label("Scales");
        for (n, tip) in [
            (1, "One prediction map, on the chosen feature map"),
            (2, "Two prediction maps: the chosen map for the smaller anchors and the deepest map at twice its stride for the larger ones (YOLO v3-tiny)"),
        ] {
            changed |= ui
                .selectable_value(&mut d.scales, n, n.to_string())
                .on_hover_text(tip)
                .changed();
        }
        ui.label("Fit");
        changed |= ui
            .selectable_value(&mut d.fit, Fit::Letterbox, "letterbox")
            .on_hover_text("Keep the aspect ratio and pad with grey")
            .changed();
        changed |= ui
            .selectable_value(&mut d.fit, Fit::Stretch, "stretch")
            .changed();
        if ui
            .button("Add detection head")
            .on_hover_text("Replace the layers after the deepest stride-16 feature map (or the selected node) by a detection head with these anchors")
            .clicked()
        {
            commands.push(AppCommand::AddDetectionHead);
        }
    });
    let key = (side, d.anchor_total(), d.fit);
    let d = d.clone();
    let (estimate, stale) = view.estimate_for(ui.ctx(), key);
    if stale {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(RichText::new("estimating anchors…").small());
        });
    }
    if let Some(estimate) = estimate {
        match &estimate.anchors {
            Ok(a) => ui.label(
                RichText::new(format!(
                    "{} anchors for the {side}×{side} input, mean IoU {:.2}: {}",
                    a.sizes.len(),
                    a.mean_iou,
                    a.list()
                ))
                .small(),
            ),
            Err(e) => ui.label(RichText::new(format!("anchors: {e}")).color(theme::WARNING)),
        };
        size_histogram(ui, &estimate.sizes, estimate.anchors.as_ref().ok(), &d);
    }
    ui.separator();
    changed |= box_augmentation_ui(ui, &mut options.detection.augmentation);
    changed
}

/// Boxes per size bin (√(w·h) in input pixels) with the anchors' sizes as lines (with two
/// scales, the coarse map's anchors in their own colour).
fn size_histogram(ui: &mut Ui, sizes: &[f32], anchors: Option<&Anchors>, d: &DetectionOptions) {
    let top = sizes.iter().copied().fold(0.0f32, f32::max);
    let bins = ((top / BIN).ceil() as usize).clamp(1, 128);
    let mut counts = vec![0usize; bins];
    for s in sizes {
        counts[((s / BIN) as usize).min(bins - 1)] += 1;
    }
    let bars: Vec<Bar> = counts
        .iter()
        .enumerate()
        .map(|(i, &n)| Bar::new((i as f64 + 0.5) * BIN as f64, n as f64).width(BIN as f64 * 0.9))
        .collect();
    Plot::new("box-size-histogram")
        .height(140.0)
        .legend(Legend::default())
        .x_axis_label("box size √(w·h), input pixels")
        .y_axis_label("boxes")
        .allow_scroll(false)
        .show(ui, |p| {
            p.bar_chart(BarChart::new("boxes", bars).color(theme::TRAIN));
            let all = anchors.map(|a| a.sizes.as_slice()).unwrap_or_default();
            let fine = d.fine_anchors(all.len());
            for (i, (w, h)) in all.iter().enumerate() {
                let (name, colour) = match (d.scales > 1, i < fine) {
                    (false, _) => ("anchor", theme::VALIDATION),
                    (true, true) => ("fine-map anchor", theme::VALIDATION),
                    (true, false) => ("coarse-map anchor", theme::OBJECT_TERM),
                };
                p.vline(
                    VLine::new(format!("{name} {w:.0}×{h:.0}"), (w * h).sqrt() as f64)
                        .color(colour)
                        .width(2.0),
                );
            }
        });
}

/// Augmentation that moves the boxes with the pixels.
fn box_augmentation_ui(ui: &mut Ui, augmentation: &mut Option<BoxAugmentation>) -> bool {
    let (mut changed, on) = super::data_panel::augmentation_switch(
        ui,
        augmentation,
        "augment training images (boxes move with them)",
    );
    let Some(a) = on else {
        return changed;
    };
    ui.horizontal(|ui| {
        changed |= ui
            .checkbox(&mut a.horizontal_flip, "Horizontal flip")
            .changed();
        changed |= ui.checkbox(&mut a.vertical_flip, "Vertical flip").changed();
    });
    changed |= ui
        .add(egui::Slider::new(&mut a.scale.0, 0.3..=1.0).text("smallest zoom"))
        .changed();
    changed |= ui
        .add(egui::Slider::new(&mut a.scale.1, 1.0..=2.0).text("largest zoom"))
        .changed();
    changed |= ui
        .add(egui::Slider::new(&mut a.translation, 0.0..=0.3).text("shift ± fraction"))
        .changed();
    changed |= ui
        .add(egui::Slider::new(&mut a.colour, 0.0..=0.5).text("colour jitter ±"))
        .changed();
    changed
}

//! The data panel for a box dataset (object detection): the layout found, boxes per class
//! (training and validation), what the reader clipped, dropped or skipped, sample images
//! with their boxes in class colours, a histogram of box sizes in the detector's input with
//! the estimated anchors drawn over it, and augmentation that moves the boxes.

use super::{AppCommand, theme};
use crate::data::Dataset;
use crate::detect::anchors::{self, Anchors};
use crate::detect::dataset::{BoxDataset, BoxImage};
use crate::detect::transform::{BoxAugmentation, Fit};
use crate::train::TrainingOptions;
use egui::{ColorImage, RichText, TextureHandle, Ui};
use egui_plot::{Bar, BarChart, Legend, Plot, VLine};

/// Sample images shown with their boxes.
pub const SAMPLES: usize = 12;
/// Their longest side, in pixels.
const SAMPLE_SIDE: u32 = 112;
/// Histogram bin width (pixels of √(w·h) in the input).
const BIN: f32 = 8.0;

/// A sample image with its boxes drawn (made off the UI thread by the scan job).
pub fn boxed_thumbnail(image: &BoxImage) -> Option<ColorImage> {
    let img = crate::data::preprocess::load_rgb(&image.path).ok()?;
    let mut t = image::imageops::thumbnail(&img, SAMPLE_SIDE, SAMPLE_SIDE);
    let s = t.width() as f32 / img.width().max(1) as f32;
    let scaled: Vec<crate::detect::yolo::Predicted> = image
        .objects
        .iter()
        .map(|o| crate::detect::yolo::Predicted {
            class: o.class,
            score: 1.0,
            bbox: crate::detect::BBox::new(
                o.bbox.x0 * s,
                o.bbox.y0 * s,
                o.bbox.x1 * s,
                o.bbox.y1 * s,
            ),
        })
        .collect();
    crate::detect::predict::draw(&mut t, &scaled);
    Some(ColorImage::from_rgb(
        [t.width() as usize, t.height() as usize],
        t.as_raw(),
    ))
}

/// A box dataset as the panel shows it.
pub struct BoxView {
    pub dataset: BoxDataset,
    samples: Vec<TextureHandle>,
    /// Box sizes and anchors for (input side, count, fit), made when one of them changes.
    estimate: Option<Estimate>,
}

/// The training boxes in a detector's input: their sizes √(w·h) and the anchors.
#[derive(Clone)]
pub struct Estimate {
    key: (usize, usize, Fit),
    pub sizes: Vec<f32>,
    pub anchors: Result<Anchors, String>,
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
            dataset,
            samples,
            estimate: None,
        }
    }

    /// The training boxes fitted into a `side` input, and the `count` anchors k-means finds
    /// for them (the ones "Add detection head" uses); cached until an argument changes.
    pub fn estimate(&mut self, side: usize, count: usize, fit: Fit) -> &Estimate {
        let key = (side, count, fit);
        if self.estimate.as_ref().is_none_or(|e| e.key != key) {
            let sizes = anchors::input_box_sizes(&self.dataset.images, side, fit);
            self.estimate = Some(Estimate {
                key,
                anchors: anchors::estimate(&sizes, count, 0),
                sizes: sizes.iter().map(|(w, h)| (w * h).sqrt()).collect(),
            });
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
            .on_hover_text("How many anchor boxes the head predicts per cell (k-means on IoU over the training boxes)")
            .changed();
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
    let (count, fit) = (d.anchors, d.fit);
    let estimate = view.estimate(side, count, fit);
    match &estimate.anchors {
        Ok(a) => ui.label(
            RichText::new(format!(
                "{} anchors for the {side}×{side} input, mean IoU {:.2}: {}",
                a.sizes.len(),
                a.mean_iou,
                a.sizes
                    .iter()
                    .map(|(w, h)| format!("{w:.0}×{h:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .small(),
        ),
        Err(e) => ui.label(RichText::new(format!("anchors: {e}")).color(theme::WARNING)),
    };
    size_histogram(ui, &estimate.sizes, estimate.anchors.as_ref().ok());
    ui.separator();
    changed |= box_augmentation_ui(ui, &mut options.detection.augmentation);
    changed
}

/// Boxes per size bin (√(w·h) in input pixels) with the anchors' sizes as lines.
fn size_histogram(ui: &mut Ui, sizes: &[f32], anchors: Option<&Anchors>) {
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
            for (w, h) in anchors.map(|a| a.sizes.as_slice()).unwrap_or_default() {
                p.vline(
                    VLine::new(format!("anchor {w:.0}×{h:.0}"), (w * h).sqrt() as f64)
                        .color(theme::VALIDATION)
                        .width(2.0),
                );
            }
        });
}

/// Augmentation that moves the boxes with the pixels.
fn box_augmentation_ui(ui: &mut Ui, augmentation: &mut Option<BoxAugmentation>) -> bool {
    let mut changed = false;
    let mut on = augmentation.is_some();
    ui.horizontal(|ui| {
        ui.label(RichText::new("Augmentation").strong());
        if ui
            .checkbox(&mut on, "augment training images (boxes move with them)")
            .changed()
        {
            *augmentation = on.then(BoxAugmentation::default);
            changed = true;
        }
    });
    let Some(a) = augmentation else {
        ui.label(
            RichText::new("Without augmentation a frozen backbone's features are computed once.")
                .small()
                .weak(),
        );
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

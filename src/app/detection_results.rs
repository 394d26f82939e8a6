//! A detector's results: mAP@0.5 and mAP@[.5:.95], the per-class AP table, precision–recall
//! curves, and the validation images with the most mistakes, predicted boxes (class colours,
//! scores) over true ones (white). The boxes shown pass the project's [`Suppression`] (score,
//! IoU, most boxes), set here and used by the export too.

use super::jobs::{self, Job};
use super::theme;
use crate::detect::BBox;
use crate::detect::evaluate::{DetectionEvaluation, ImageResult, KEPT_SCORE};
use crate::detect::yolo::{Predicted, Suppression, suppress};
use egui::{ColorImage, RichText, TextureHandle, Ui};
use egui_plot::{Legend, Line, Plot, PlotPoints};

/// How many of the worst validation images are shown.
const WORST: usize = 24;
/// Their longest side when decoded.
const SIDE: u32 = 200;

/// A worst image as decoded off the UI thread: thumbnail, result, its own size.
type Decoded = (ColorImage, ImageResult, (u32, u32));

#[derive(Default)]
pub struct DetectionPanelState {
    worst: Vec<(TextureHandle, ImageResult, (u32, u32))>,
    /// The result the gallery shows (`LastRun::id`).
    worst_for: u64,
    worst_job: Option<Job<Vec<Decoded>>>,
}

/// What [`boxed_image`] draws over an image, in its own pixels.
pub struct Overlay<'a> {
    /// The image's width and height.
    pub size: (u32, u32),
    /// True boxes (thin, white).
    pub truths: &'a [BBox],
    /// Found boxes (as [`shown`] leaves them), drawn in class colours with class and score.
    pub found: &'a [Predicted],
    pub classes: &'a [String],
}

/// The boxes the window shows of `found`: through the project's suppression. Found boxes are
/// kept down to [`KEPT_SCORE`] and (for a dropped image) before any NMS, so every setting
/// is exact; a validation image's boxes went through the evaluation's NMS at IoU 0.45, so
/// there an IoU above that shows no more boxes than 0.45 does.
pub fn shown(found: &[Predicted], s: &Suppression) -> Vec<Predicted> {
    suppress(found.to_vec(), s)
}

/// An image, `longest` points on its longer side, with an [`Overlay`] of boxes.
pub fn boxed_image(ui: &mut Ui, texture: &TextureHandle, longest: f32, o: &Overlay) {
    let (w, h) = (o.size.0.max(1) as f32, o.size.1.max(1) as f32);
    let k = longest / w.max(h);
    let response = ui.add(
        egui::Image::from_texture(egui::load::SizedTexture::from_handle(texture))
            .fit_to_exact_size(egui::vec2(w * k, h * k)),
    );
    let r = response.rect;
    let painter = ui.painter_at(r);
    let to_screen = |b: &BBox| {
        egui::Rect::from_min_max(
            egui::pos2(r.left() + b.x0 * k, r.top() + b.y0 * k),
            egui::pos2(r.left() + b.x1 * k, r.top() + b.y1 * k),
        )
    };
    for t in o.truths {
        painter.rect_stroke(
            to_screen(t),
            0.0,
            egui::Stroke::new(1.0, egui::Color32::WHITE),
            egui::StrokeKind::Inside,
        );
    }
    for p in o.found {
        let colour = theme::class_color(p.class);
        let rect = to_screen(&p.bbox);
        painter.rect_stroke(
            rect,
            0.0,
            egui::Stroke::new(2.0, colour),
            egui::StrokeKind::Inside,
        );
        painter.text(
            rect.left_top() + egui::vec2(2.0, 1.0),
            egui::Align2::LEFT_TOP,
            format!(
                "{} {:.0}%",
                o.classes.get(p.class).map_or("?", String::as_str),
                p.score * 100.0
            ),
            egui::FontId::proportional(10.0),
            colour,
        );
    }
}

/// The suppression controls (score, IoU, most boxes) shared by the validation images, a
/// dropped image and the export; true when one changed.
pub fn suppression_ui(ui: &mut Ui, s: &mut Suppression) -> bool {
    ui.horizontal(|ui| {
        let mut changed = false;
        ui.label("Score ≥");
        changed |= ui
            .add(egui::Slider::new(&mut s.score_threshold, KEPT_SCORE..=0.95).fixed_decimals(2))
            .on_hover_text("Boxes scored lower are not shown or exported")
            .changed();
        ui.label("IoU ≤");
        changed |= ui
            .add(egui::Slider::new(&mut s.iou_threshold, 0.1..=0.95).fixed_decimals(2))
            .on_hover_text(
                "Non-maximum suppression: a box overlapping a better box of its class by more \
                 than this is dropped",
            )
            .changed();
        ui.label("At most");
        changed |= ui
            .add(egui::DragValue::new(&mut s.max_detections).range(1..=1000))
            .on_hover_text("Boxes per image, best first")
            .changed();
        ui.label("boxes");
        changed
    })
    .inner
}

/// The detector's results; true when the suppression changed.
pub fn detection_ui(
    ui: &mut Ui,
    state: &mut DetectionPanelState,
    suppression: &mut Suppression,
    run: u64,
    d: &DetectionEvaluation,
) -> bool {
    let r = &d.report;
    ui.label(
        RichText::new(format!(
            "Validation mAP@0.5 {:.1}% · mAP@[.5:.95] {:.1}% · {} images",
            r.map50 * 100.0,
            r.map * 100.0,
            d.images.len()
        ))
        .size(16.0)
        .strong(),
    );
    ui.columns(2, |cols| {
        ap_table(&mut cols[0], d);
        pr_curves(&mut cols[1], d);
    });
    ui.separator();
    let changed = suppression_ui(ui, suppression);
    worst_ui(ui, state, suppression, run, d);
    changed
}

fn ap_table(ui: &mut Ui, d: &DetectionEvaluation) {
    let pct = |v: Option<f32>| v.map_or("—".to_string(), |v| format!("{:.1}", v * 100.0));
    egui::ScrollArea::vertical()
        .id_salt("ap-table")
        .max_height(220.0)
        .show(ui, |ui| {
            egui::Grid::new("ap-table")
                .num_columns(4)
                .striped(true)
                .show(ui, |ui| {
                    for h in ["Class", "Boxes", "AP@0.5 %", "AP@[.5:.95] %"] {
                        ui.label(RichText::new(h).strong());
                    }
                    ui.end_row();
                    for c in &d.report.classes {
                        let name = d.classes.get(c.class).map_or("?", String::as_str);
                        ui.label(
                            RichText::new(format!("■ {name}")).color(theme::class_color(c.class)),
                        );
                        ui.label(c.truths.to_string());
                        ui.label(pct(c.ap50));
                        ui.label(pct(c.ap));
                        ui.end_row();
                    }
                });
        });
}

/// Each class's precision against recall at IoU 0.5 (the VOC curve its AP@0.5 integrates).
fn pr_curves(ui: &mut Ui, d: &DetectionEvaluation) {
    Plot::new("pr-curves")
        .height(220.0)
        .legend(Legend::default())
        .include_x(0.0)
        .include_x(1.0)
        .include_y(0.0)
        .include_y(1.0)
        .x_axis_label("recall")
        .y_axis_label("precision")
        .allow_scroll(false)
        .show(ui, |p| {
            for c in &d.report.classes {
                let points: Vec<[f64; 2]> = c
                    .curve
                    .recall
                    .iter()
                    .zip(&c.curve.precision)
                    .map(|(&r, &p)| [r as f64, p as f64])
                    .collect();
                let name = d.classes.get(c.class).cloned().unwrap_or_default();
                p.line(
                    Line::new(name, PlotPoints::from(points)).color(theme::class_color(c.class)),
                );
            }
        });
}

fn worst_ui(
    ui: &mut Ui,
    state: &mut DetectionPanelState,
    suppression: &Suppression,
    run: u64,
    d: &DetectionEvaluation,
) {
    let worst: Vec<ImageResult> = d.worst(WORST).into_iter().cloned().collect();
    ui.label(
        RichText::new(format!(
            "Validation images with the most mistakes (missed or false boxes at score 0.25): {}",
            d.images.iter().filter(|i| i.mistakes > 0).count()
        ))
        .strong(),
    );
    // Decoded off the UI thread, once per result; boxes are painted over them each frame.
    if state.worst_for != run {
        state.worst_for = run;
        state.worst.clear();
        state.worst_job = Some(Job::spawn("Worst images", ui.ctx(), move |_| {
            Ok(worst
                .into_iter()
                .filter_map(|r| {
                    let img = crate::data::preprocess::load_rgb(&r.path).ok()?;
                    let size = (img.width(), img.height());
                    let t = image::imageops::thumbnail(&img, SIDE, SIDE);
                    let c =
                        ColorImage::from_rgb([t.width() as usize, t.height() as usize], t.as_raw());
                    Some((c, r, size))
                })
                .collect())
        }));
    }
    if let Some(Ok(images)) = jobs::take(&mut state.worst_job) {
        state.worst = images
            .into_iter()
            .enumerate()
            .map(|(i, (img, r, size))| {
                let t =
                    ui.ctx()
                        .load_texture(format!("worst-{i}"), img, egui::TextureOptions::LINEAR);
                (t, r, size)
            })
            .collect();
    }
    egui::ScrollArea::vertical()
        .id_salt("worst")
        .show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                for (t, r, size) in &state.worst {
                    ui.vertical(|ui| {
                        let truths: Vec<BBox> = r.truths.iter().map(|o| o.bbox).collect();
                        let found = shown(&r.predicted, suppression);
                        boxed_image(
                            ui,
                            t,
                            160.0,
                            &Overlay {
                                size: *size,
                                truths: &truths,
                                found: &found,
                                classes: &d.classes,
                            },
                        );
                        ui.label(
                            RichText::new(format!(
                                "{} · {} mistakes",
                                r.path
                                    .file_name()
                                    .map(|n| n.to_string_lossy().into_owned())
                                    .unwrap_or_default(),
                                r.mistakes
                            ))
                            .small(),
                        );
                    });
                }
            });
        });
}

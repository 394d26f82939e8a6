//! Results: accuracy, a confusion-matrix heatmap, per-class precision/recall/F1, a gallery of
//! misclassified validation images, classifying a dropped image, and export.

use super::{AppCommand, theme};
use crate::detect::evaluate::DetectionEvaluation;
use crate::onnx::detector::Decoding;
use crate::train::{DetectionOptions, Evaluation};
use egui::{ColorImage, RichText, TextureHandle, Ui};

/// A classified image: its thumbnail and the top classes; for a detector, the boxes found
/// (in the image's pixels), the image's size and the class names.
pub struct Classified {
    pub path: std::path::PathBuf,
    pub image: Option<ColorImage>,
    pub top: Vec<(String, f32)>,
    pub boxes: Option<Detected>,
}

pub struct Detected {
    pub found: Vec<crate::detect::yolo::Predicted>,
    pub size: (u32, u32),
    pub classes: Vec<String>,
}

#[derive(Default)]
pub struct ResultsPanelState {
    /// Thumbnails of misclassified images, made lazily.
    gallery: Vec<(TextureHandle, String)>,
    /// The result the gallery shows (`LastRun::id`); 0 before any.
    gallery_for: u64,
    gallery_job: Option<super::jobs::Job<Vec<(ColorImage, String)>>>,
    pub classified: Option<(Option<TextureHandle>, Classified)>,
    pub export_note: Option<String>,
    pub detection: super::detection_results::DetectionPanelState,
}

impl ResultsPanelState {
    pub fn set_classified(&mut self, ctx: &egui::Context, mut c: Classified) {
        let tex = c
            .image
            .take()
            .map(|img| ctx.load_texture("classified", img, egui::TextureOptions::LINEAR));
        self.classified = Some((tex, c));
    }
}

/// The Results tab; true when a detector's options (suppression, export outputs) changed.
#[allow(clippy::too_many_arguments)]
pub fn results_ui(
    ui: &mut Ui,
    state: &mut ResultsPanelState,
    eval: Option<(u64, &Evaluation)>,
    detection: Option<(u64, &DetectionEvaluation)>,
    detector: bool,
    sound: bool,
    options: &mut DetectionOptions,
    trained: bool,
    commands: &mut Vec<AppCommand>,
) -> bool {
    let mut changed = false;
    ui.horizontal(|ui| {
        ui.heading("Results");
        ui.add_space(20.0);
        if ui
            .button("💾 Export ONNX…")
            .on_hover_text(
                "The network with its class names and preprocessing, and a labels file next to it",
            )
            .clicked()
        {
            commands.push(AppCommand::PickExport);
        }
        if detector {
            changed |= decoding_ui(ui, &mut options.decoding);
        }
        let what = if detector {
            "🖼 Detect in an image…"
        } else if sound {
            "🔊 Classify a sound file…"
        } else {
            "🖼 Classify an image…"
        };
        if ui
            .button(what)
            .on_hover_text("Or drop a file on the window")
            .clicked()
        {
            commands.push(AppCommand::PickClassify);
        }
    });
    if let Some(note) = &state.export_note {
        ui.label(RichText::new(note).small());
    }
    if !trained {
        ui.label(
            RichText::new("Not trained yet: the network still has the weights it was opened with.")
                .weak(),
        );
    }
    if let Some((Some(tex), c)) = &state.classified
        && let Some(d) = &c.boxes
    {
        ui.group(|ui| {
            changed |= super::detection_results::suppression_ui(ui, &mut options.suppression);
            let shown = super::detection_results::shown(&d.found, &options.suppression);
            ui.horizontal(|ui| {
                super::detection_results::boxed_image(
                    ui,
                    tex,
                    320.0,
                    &super::detection_results::Overlay {
                        size: d.size,
                        truths: &[],
                        found: &shown,
                        classes: &d.classes,
                    },
                );
                ui.vertical(|ui| {
                    ui.label(RichText::new(format!("{} boxes", shown.len())).strong());
                    for p in shown.iter().take(12) {
                        ui.label(
                            RichText::new(format!(
                                "{} {:.0}% at ({:.0}, {:.0})–({:.0}, {:.0})",
                                d.classes.get(p.class).map_or("?", String::as_str),
                                p.score * 100.0,
                                p.bbox.x0,
                                p.bbox.y0,
                                p.bbox.x1,
                                p.bbox.y1
                            ))
                            .color(theme::class_color(p.class)),
                        );
                    }
                });
            });
        });
    } else if let Some((tex, c)) = &state.classified {
        ui.group(|ui| {
            ui.horizontal(|ui| {
                if let Some(t) = tex {
                    ui.add(
                        egui::Image::from_texture(egui::load::SizedTexture::from_handle(t))
                            .fit_to_exact_size(egui::vec2(96.0, 96.0)),
                    );
                }
                ui.vertical(|ui| {
                    ui.label(
                        RichText::new(
                            c.path
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                        )
                        .strong(),
                    );
                    for (name, p) in &c.top {
                        ui.horizontal(|ui| {
                            ui.add(
                                egui::ProgressBar::new(*p)
                                    .desired_width(120.0)
                                    .text(format!("{:.1}%", p * 100.0)),
                            );
                            ui.label(name);
                        });
                    }
                });
            });
        });
    }
    if let Some((run, d)) = detection {
        changed |= super::detection_results::detection_ui(
            ui,
            &mut state.detection,
            &mut options.suppression,
            run,
            d,
        );
        return changed;
    }
    let Some((run, e)) = eval else {
        ui.label(RichText::new("Train with validation images to see a confusion matrix and per-class metrics here.").weak());
        return changed;
    };
    ui.label(
        RichText::new(format!(
            "Validation accuracy {:.2}% · loss {:.4} · {} images",
            e.accuracy * 100.0,
            e.loss,
            e.images
        ))
        .size(16.0)
        .strong(),
    );
    ui.columns(2, |cols| {
        confusion_ui(&mut cols[0], e);
        per_class_ui(&mut cols[1], e);
    });
    ui.separator();
    gallery_ui(ui, state, run, e);
    changed
}

/// What an exported detector outputs (the same choice as `graft train --decoding`).
fn decoding_ui(ui: &mut Ui, decoding: &mut Decoding) -> bool {
    let name = |d: Decoding| match d {
        Decoding::Nms => "final boxes (NMS inside)",
        Decoding::Boxes => "every decoded box",
        Decoding::Map => "the raw prediction map",
    };
    let mut changed = false;
    egui::ComboBox::from_id_salt("export-decoding")
        .selected_text(name(*decoding))
        .show_ui(ui, |ui| {
            for d in [Decoding::Nms, Decoding::Boxes, Decoding::Map] {
                changed |= ui.selectable_value(decoding, d, name(d)).changed();
            }
        })
        .response
        .on_hover_text(
            "What the exported file outputs: boxes, scores and classes after non-maximum \
             suppression with the settings below; every decoded box with its class scores \
             (the caller suppresses); or the head's map alone",
        );
    changed
}

fn confusion_ui(ui: &mut Ui, e: &Evaluation) {
    ui.label(RichText::new("Confusion matrix (rows: true class, columns: predicted)").strong());
    let n = e.classes.len();
    if n == 0 {
        return;
    }
    let label_w = 90.0;
    let cell = ((ui.available_width() - label_w) / n as f32).clamp(14.0, 48.0);
    let (rect, _) = ui.allocate_exact_size(
        egui::vec2(label_w + cell * n as f32, cell * n as f32 + 4.0),
        egui::Sense::hover(),
    );
    let painter = ui.painter_at(rect);
    let font = egui::FontId::proportional((cell * 0.38).clamp(8.0, 13.0));
    for (t, row) in e.confusion.iter().enumerate() {
        let total: usize = row.iter().sum::<usize>().max(1);
        let y = rect.top() + t as f32 * cell;
        painter.text(
            egui::pos2(rect.left() + label_w - 6.0, y + cell / 2.0),
            egui::Align2::RIGHT_CENTER,
            crate::format::elide_end(&e.classes[t], 12),
            font.clone(),
            ui.visuals().text_color(),
        );
        for (p, &count) in row.iter().enumerate() {
            let r = egui::Rect::from_min_size(
                egui::pos2(rect.left() + label_w + p as f32 * cell, y),
                egui::vec2(cell - 1.0, cell - 1.0),
            );
            let f = count as f32 / total as f32;
            let fill = if t == p {
                theme::heat(f)
            } else if count > 0 {
                egui::Color32::from_rgb(120 + (f * 135.0) as u8, 50, 50)
            } else {
                theme::heat(0.0)
            };
            painter.rect_filled(r, 2.0, fill);
            if count > 0 {
                painter.text(
                    r.center(),
                    egui::Align2::CENTER_CENTER,
                    count.to_string(),
                    font.clone(),
                    egui::Color32::WHITE,
                );
            }
        }
    }
}

fn per_class_ui(ui: &mut Ui, e: &Evaluation) {
    egui::ScrollArea::vertical()
        .id_salt("per-class")
        .max_height(260.0)
        .show(ui, |ui| {
            egui::Grid::new("per-class")
                .num_columns(5)
                .striped(true)
                .show(ui, |ui| {
                    for h in ["Class", "Precision", "Recall", "F1", "Images"] {
                        ui.label(RichText::new(h).strong());
                    }
                    ui.end_row();
                    for m in &e.per_class {
                        ui.label(&m.class);
                        ui.label(format!("{:.3}", m.precision));
                        ui.label(format!("{:.3}", m.recall));
                        ui.label(format!("{:.3}", m.f1));
                        ui.label(m.support.to_string());
                        ui.end_row();
                    }
                });
        });
}

fn gallery_ui(ui: &mut Ui, state: &mut ResultsPanelState, run: u64, e: &Evaluation) {
    let wrong: Vec<_> = e
        .predictions
        .iter()
        .filter(|p| p.label != p.predicted)
        .collect();
    ui.label(RichText::new(format!("Misclassified validation images ({})", wrong.len())).strong());
    // Thumbnails are decoded off the UI thread, once per result.
    if state.gallery_for != run {
        state.gallery_for = run;
        state.gallery.clear();
        let items: Vec<(std::path::PathBuf, String)> = wrong
            .iter()
            .take(48)
            .map(|p| {
                (
                    p.path.clone(),
                    format!(
                        "{} taken for {} ({:.0}%)",
                        e.classes[p.label],
                        e.classes[p.predicted],
                        p.confidence * 100.0
                    ),
                )
            })
            .collect();
        state.gallery_job = Some(super::jobs::Job::spawn("Gallery", ui.ctx(), move |_| {
            Ok(items
                .into_iter()
                .filter_map(|(path, caption)| {
                    Some((super::data_panel::thumbnail(&path, 72)?, caption))
                })
                .collect())
        }));
    }
    if let Some(Ok(images)) = super::jobs::take(&mut state.gallery_job) {
        state.gallery = images
            .into_iter()
            .enumerate()
            .map(|(i, (img, caption))| {
                (
                    ui.ctx()
                        .load_texture(format!("wrong-{i}"), img, egui::TextureOptions::LINEAR),
                    caption,
                )
            })
            .collect();
    }
    egui::ScrollArea::vertical()
        .id_salt("gallery")
        .show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                for (t, caption) in &state.gallery {
                    ui.vertical(|ui| {
                        ui.add(
                            egui::Image::from_texture(egui::load::SizedTexture::from_handle(t))
                                .fit_to_exact_size(egui::vec2(72.0, 72.0)),
                        );
                        ui.label(RichText::new(caption).small());
                    });
                }
            });
        });
}

//! A dataset's samples in the Data tab: the class table (counts and each class's first
//! thumbnails), the browser (every sample as a virtual grid) and the skipped-file list. Each
//! lays out only the rows on screen; thumbnails come from `DataPanelState`'s `Thumbnails`.

use super::data_panel::DataPanelState;
use super::theme;
use crate::data::{Dataset, Media};
use egui::{RichText, Ui};

/// Thumbnails beside each class in the class table.
const THUMBS_PER_CLASS: usize = 6;
/// The class table's row height: its 40 px thumbnails and the spacing below them.
const CLASS_ROW: f32 = 44.0;
/// A cell of the image browser's grid.
const BROWSE_CELL: f32 = 68.0;

/// One row per class: its name, counts (and seconds of sound), validation count and its first
/// samples' thumbnails. Only the rows on screen are laid out.
pub(super) fn class_table(
    ui: &mut Ui,
    state: &mut DataPanelState,
    train: &Dataset,
    counts: &[usize],
    val_counts: &[usize],
    seconds: &[f32],
) {
    let sounds = matches!(train.media, Media::Sounds(_));
    let header = |ui: &mut Ui| {
        ui.label(RichText::new("Class").strong());
        ui.label(RichText::new(if sounds { "Clips" } else { "Images" }).strong());
        if sounds {
            ui.label(RichText::new("Sound").strong());
        }
        ui.label(RichText::new("Validation").strong());
        ui.label(RichText::new("Samples").strong());
        ui.end_row();
    };
    egui::ScrollArea::vertical()
        .id_salt("classes")
        .max_height(ui.available_height() * 0.45)
        .show_rows(ui, CLASS_ROW, train.classes.len(), |ui, rows| {
            egui::Grid::new("class-table")
                .num_columns(if sounds { 5 } else { 4 })
                .striped(true)
                .show(ui, |ui| {
                    // The header stays at the top of whatever rows are shown.
                    header(ui);
                    for c in rows {
                        ui.label(&train.classes[c]);
                        let n = counts[c];
                        ui.label(if n == 0 {
                            RichText::new("0 — empty").color(theme::ERROR)
                        } else {
                            RichText::new(n.to_string())
                        });
                        if sounds {
                            ui.label(format!("{:.1} s", seconds[c]));
                        }
                        ui.label(val_counts.get(c).copied().unwrap_or(0).to_string());
                        ui.horizontal(|ui| {
                            let first: Vec<usize> = state
                                .by_class
                                .get(c)
                                .map(|v| v.iter().take(THUMBS_PER_CLASS).copied().collect())
                                .unwrap_or_default();
                            for i in first {
                                sample_thumb(ui, state, train, i, 40.0);
                            }
                        });
                        ui.end_row();
                    }
                });
        });
}

/// A sample's thumbnail at `height` (a spectrogram keeps its time-by-bands shape, up to three
/// times as wide, and opens the clip when clicked), or a grey box while it is made.
fn sample_thumb(ui: &mut Ui, state: &mut DataPanelState, train: &Dataset, i: usize, height: f32) {
    let Some(sample) = train.samples.get(i) else {
        return;
    };
    let name = sample
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let got = state.thumbs.as_mut().map(|t| t.get(i, sample));
    let texture = match got {
        Some(Ok(Some(t))) => t.clone(),
        Some(Err(())) => {
            let (rect, r) =
                ui.allocate_exact_size(egui::vec2(height, height), egui::Sense::hover());
            ui.painter()
                .rect_filled(rect, 2.0, theme::ERROR.gamma_multiply(0.3));
            r.on_hover_text(format!("{name}: does not decode"));
            return;
        }
        _ => {
            let (rect, r) =
                ui.allocate_exact_size(egui::vec2(height, height), egui::Sense::hover());
            ui.painter()
                .rect_filled(rect, 2.0, ui.visuals().faint_bg_color);
            r.on_hover_text(name);
            return;
        }
    };
    let size = texture.size_vec2();
    let sounds = matches!(train.media, Media::Sounds(_));
    let shown = if sounds {
        egui::vec2(height * size.x / size.y.max(1.0), height).min(egui::vec2(3.0 * height, height))
    } else {
        egui::vec2(height, height)
    };
    let image = egui::Image::from_texture(egui::load::SizedTexture::from_handle(&texture))
        .fit_to_exact_size(shown);
    if !sounds {
        // A square cell, the picture inside it at its own aspect ratio.
        let (cell, response) = ui.allocate_exact_size(shown, egui::Sense::hover());
        let fit = size * (height / size.x.max(size.y).max(1.0));
        image.paint_at(ui, egui::Rect::from_center_size(cell.center(), fit));
        response.on_hover_text(name);
        return;
    }
    let response = ui.add(image.sense(egui::Sense::click()));
    // A button to screen readers (and to kittest), named for its clip.
    response.widget_info(|| {
        egui::WidgetInfo::labeled(egui::WidgetType::Button, true, format!("Open clip {name}"))
    });
    let clicked = response
        .on_hover_text(format!("{name}: show its waveform and play it"))
        .clicked();
    if clicked && let Media::Sounds(a) = &train.media {
        state.clip.open(ui.ctx(), sample.clone(), a.clone());
    }
}

/// Every sample of a class (or all) as a grid of thumbnails; only the rows on screen are laid
/// out and only their thumbnails made, so a 50,000-image folder scrolls at frame rate.
pub(super) fn browser_ui(ui: &mut Ui, state: &mut DataPanelState, train: &Dataset) {
    let total = train.samples.len();
    egui::CollapsingHeader::new(format!("Browse the {} {}", total, train.samples_noun()))
        .id_salt("browse")
        .open(state.browse_open.take())
        .show(ui, |ui| {
            let shown = match state.browse_class {
                Some(c) => train.classes.get(c).cloned().unwrap_or_default(),
                None => "every class".into(),
            };
            egui::ComboBox::from_id_salt("browse-class")
                .selected_text(shown)
                .show_ui(ui, |ui| {
                    ui.selectable_value(&mut state.browse_class, None, "every class");
                    for (c, name) in train.classes.iter().enumerate() {
                        ui.selectable_value(&mut state.browse_class, Some(c), name);
                    }
                });
            let count = match state.browse_class {
                Some(c) => state.by_class.get(c).map_or(0, Vec::len),
                None => total,
            };
            let spacing = ui.spacing().item_spacing;
            let per_row = ((ui.available_width() + spacing.x) / (BROWSE_CELL + spacing.x))
                .floor()
                .max(1.0) as usize;
            let sounds = matches!(train.media, Media::Sounds(_));
            // Spectrograms are wider than tall: fewer per row.
            let per_row = if sounds { per_row.div_ceil(3) } else { per_row };
            let mut area = egui::ScrollArea::vertical()
                .id_salt("browse-grid")
                .max_height(360.0)
                .auto_shrink([false, true]);
            if let Some(y) = state.browse_scroll.take() {
                area = area.vertical_scroll_offset(y);
            }
            area.show_rows(ui, BROWSE_CELL, count.div_ceil(per_row), |ui, rows| {
                for row in rows {
                    ui.horizontal(|ui| {
                        for k in row * per_row..((row + 1) * per_row).min(count) {
                            let i = match state.browse_class {
                                Some(c) => state.by_class[c][k],
                                None => k,
                            };
                            sample_thumb(ui, state, train, i, BROWSE_CELL - spacing.y);
                        }
                    });
                }
            });
        });
}

/// The files the scan left out, each with its reason (only the rows on screen are laid out).
pub(super) fn skipped_ui(ui: &mut Ui, skipped: &[crate::data::Skipped]) {
    if skipped.is_empty() {
        return;
    }
    egui::CollapsingHeader::new(
        RichText::new(format!("⚠ {} files skipped", skipped.len())).color(theme::WARNING),
    )
    .show(ui, |ui| {
        let row = ui.text_style_height(&egui::TextStyle::Small) + ui.spacing().item_spacing.y;
        egui::ScrollArea::vertical()
            .id_salt("skipped")
            .max_height(120.0)
            .show_rows(ui, row, skipped.len(), |ui, rows| {
                for s in &skipped[rows] {
                    ui.label(RichText::new(format!("{} — {}", s.path.display(), s.reason)).small());
                }
            });
    });
}

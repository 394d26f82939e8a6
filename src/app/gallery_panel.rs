//! "New from pretrained…": the gallery as cards (size, published accuracy, what Graft
//! measured here), sortable and filterable; choosing one downloads it in the background
//! (progress, speed and cancel in the status bar) and opens it on the current dataset.

use super::AppCommand;
use super::theme;
use crate::format::group;
use crate::gallery::facts::Facts;
use crate::gallery::{Catalog, Entry, Place, cached};
use egui::{RichText, Ui};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    Accuracy,
    Size,
    Speed,
    Name,
}

impl SortBy {
    fn label(self) -> &'static str {
        match self {
            SortBy::Accuracy => "most accurate",
            SortBy::Size => "smallest",
            SortBy::Speed => "fastest",
            SortBy::Name => "name",
        }
    }
}

/// A card's width; three per row.
const CARD_W: f32 = 270.0;

/// Below this a network counts as small ("under 10 MB").
const SMALL: u64 = 10_000_000;

pub struct GalleryPanelState {
    pub open: bool,
    pub sort: SortBy,
    pub small_only: bool,
    pub downloaded_only: bool,
    pub find: String,
    /// The catalogue and where its files live; `None` until first shown (or given by tests).
    pub source: Option<(Catalog, Place)>,
    /// Loaded when the dialog opens and after each download.
    facts: BTreeMap<String, Facts>,
    /// Names of the entries in the cache (same times).
    downloaded: BTreeSet<String>,
    pub error: Option<String>,
}

impl Default for GalleryPanelState {
    fn default() -> Self {
        Self {
            open: false,
            sort: SortBy::Accuracy,
            small_only: false,
            downloaded_only: false,
            find: String::new(),
            source: None,
            facts: BTreeMap::new(),
            downloaded: BTreeSet::new(),
            error: None,
        }
    }
}

impl GalleryPanelState {
    /// With a given catalogue and cache (tests); `None` reads them when first shown.
    pub fn with_source(source: Option<(Catalog, Place)>) -> Self {
        Self {
            source,
            ..Default::default()
        }
    }

    /// Opens the dialog, reading the catalogue and the measured facts.
    pub fn show(&mut self) {
        self.open = true;
        if self.source.is_none() {
            match Catalog::load()
                .and_then(|c| Place::from_env().map(|p| (c, p)).map_err(|e| e.to_string()))
            {
                Ok(s) => self.source = Some(s),
                Err(e) => self.error = Some(e),
            }
        }
        self.refresh();
    }

    /// Reads what is downloaded and measured: when the dialog opens and after a download,
    /// not every frame.
    pub fn refresh(&mut self) {
        if let Some((catalog, place)) = &self.source {
            self.facts = crate::gallery::facts::load(place);
            self.downloaded = catalog
                .entries
                .iter()
                .filter(|e| cached(e, place).is_some())
                .map(|e| e.name.clone())
                .collect();
        }
    }

    pub fn entry(&self, name: &str) -> Option<(Entry, Place)> {
        let (catalog, place) = self.source.as_ref()?;
        Some((catalog.find(name)?.clone(), place.clone()))
    }

    /// The entries shown, in order.
    fn shown(&self) -> Vec<&Entry> {
        let Some((catalog, _)) = &self.source else {
            return Vec::new();
        };
        let q = self.find.trim().to_lowercase();
        let mut v: Vec<&Entry> = catalog
            .entries
            .iter()
            .filter(|e| !self.small_only || e.embedded || e.bytes < SMALL)
            .filter(|e| !self.downloaded_only || self.downloaded.contains(&e.name))
            .filter(|e| {
                q.is_empty()
                    || e.title.to_lowercase().contains(&q)
                    || e.family.to_lowercase().contains(&q)
            })
            .collect();
        let speed = |e: &Entry| self.facts.get(&e.name).and_then(|f| f.images_per_s);
        match self.sort {
            SortBy::Accuracy => {
                v.sort_by(|a, b| b.top1.unwrap_or(0.0).total_cmp(&a.top1.unwrap_or(0.0)))
            }
            SortBy::Size => v.sort_by_key(|e| if e.embedded { 0 } else { e.bytes }),
            // Measured speed first (fastest first); the rest by file size, a rough proxy.
            SortBy::Speed => v.sort_by(|a, b| match (speed(a), speed(b)) {
                (Some(x), Some(y)) => y.total_cmp(&x),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => a.bytes.cmp(&b.bytes),
            }),
            SortBy::Name => v.sort_by(|a, b| a.title.cmp(&b.title)),
        }
        v
    }
}

/// The dialog. `busy`: a download is running (cards cannot start another).
pub fn gallery_window(
    ctx: &egui::Context,
    state: &mut GalleryPanelState,
    busy: bool,
    selected: &mut BTreeSet<String>,
    fine_tune: &mut bool,
    commands: &mut Vec<AppCommand>,
) {
    if !state.open {
        return;
    }
    let mut open = true;
    egui::Window::new("New from pretrained")
        .open(&mut open)
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .fixed_size([CARD_W * 3.0 + 60.0, 560.0])
        .collapsible(false)
        .show(ctx, |ui| {
            controls(ui, state, commands);
            ui.horizontal(|ui| {
                let n = selected.len();
                let r = ui.add_enabled(
                    n >= 2 && !busy,
                    egui::Button::new(format!("Compare {n} ticked on my data…")),
                );
                if r.on_hover_text(
                    "Train a new head on each with the same recipe and split, then compare \
                     accuracy, speed and size",
                )
                .clicked()
                {
                    commands.push(AppCommand::StartCompare);
                    state.open = false;
                }
                ui.checkbox(fine_tune, "fine-tune every layer (slower)");
                ui.label(RichText::new("tick two or more cards").small().weak());
            });
            ui.separator();
            if let Some(e) = &state.error {
                ui.label(RichText::new(e).color(theme::ERROR));
            }
            let shown: Vec<Entry> = state.shown().into_iter().cloned().collect();
            if shown.is_empty() && state.error.is_none() {
                ui.label("No network matches these filters.");
            }
            egui::ScrollArea::vertical().show(ui, |ui| {
                for row in shown.chunks(3) {
                    ui.horizontal(|ui| {
                        for e in row {
                            card(ui, state, e, busy, selected, commands);
                        }
                    });
                }
            });
        });
    state.open &= open;
}

fn controls(ui: &mut Ui, state: &mut GalleryPanelState, commands: &mut Vec<AppCommand>) {
    ui.horizontal(|ui| {
        ui.label("Sort by");
        egui::ComboBox::from_id_salt("gallery-sort")
            .selected_text(state.sort.label())
            .show_ui(ui, |ui| {
                for s in [SortBy::Accuracy, SortBy::Size, SortBy::Speed, SortBy::Name] {
                    ui.selectable_value(&mut state.sort, s, s.label());
                }
            });
        ui.checkbox(&mut state.small_only, "under 10 MB");
        ui.checkbox(&mut state.downloaded_only, "downloaded");
        ui.add(
            egui::TextEdit::singleline(&mut state.find)
                .hint_text("search…")
                .desired_width(120.0),
        );
        if ui.button("Open ONNX file…").clicked() {
            commands.push(AppCommand::PickModel);
            state.open = false;
        }
    });
}

fn card(
    ui: &mut Ui,
    state: &mut GalleryPanelState,
    e: &Entry,
    busy: bool,
    selected: &mut BTreeSet<String>,
    commands: &mut Vec<AppCommand>,
) {
    let here = e.embedded || state.downloaded.contains(&e.name);
    let facts = state.facts.get(&e.name);
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.set_width(CARD_W - 20.0);
        ui.set_min_height(150.0);
        ui.vertical(|ui| {
            ui.label(RichText::new(&e.title).strong().size(15.0));
            ui.label(
                RichText::new(format!("{} · {} · opset {}", e.family, e.licence, e.opset))
                    .small()
                    .weak(),
            );
            let size = if e.embedded {
                "built in".to_string()
            } else {
                format!("{:.1} MB", e.bytes as f64 / 1e6)
            };
            let top1 = e
                .top1
                .map(|t| format!(" · ImageNet top-1 {t:.1}%"))
                .unwrap_or_default();
            ui.label(format!("{size}{top1}"));
            match facts {
                Some(f) => {
                    let speed = f
                        .images_per_s
                        .map(|s| format!(" · {s:.0} img/s"))
                        .unwrap_or_default();
                    ui.label(
                        RichText::new(format!(
                            "{} params · {:.2} GMACs{speed}",
                            group(f.params),
                            f.macs as f64 / 1e9
                        ))
                        .small(),
                    )
                    .on_hover_text(format!("measured on {}", f.device));
                }
                None => {
                    ui.label(
                        RichText::new("speed measured when first opened")
                            .small()
                            .weak(),
                    );
                }
            }
            ui.label(RichText::new(&e.note).small().weak());
            let label = if here { "Open" } else { "Download and open" };
            ui.horizontal(|ui| {
                let r = ui.add_enabled(!busy, egui::Button::new(label));
                if r.clicked() {
                    commands.push(AppCommand::OpenGallery(e.name.clone()));
                    state.open = false;
                }
                let mut ticked = selected.contains(&e.name);
                if ui.checkbox(&mut ticked, "compare").changed() {
                    if ticked {
                        selected.insert(e.name.clone());
                    } else {
                        selected.remove(&e.name);
                    }
                }
            });
            if here && !e.embedded {
                ui.label(RichText::new("✓ downloaded").small().color(theme::OK));
            }
        });
    });
}

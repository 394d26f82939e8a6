//! The window's frame around the tabs: menu bar, tab bar, status bar (with the status line
//! and background work), and the unsaved-changes prompt.

use super::{AppCommand, GraftApp, Tab, theme};
use crate::format::group;
use crate::project::ModelSource;
use egui::RichText;
use std::time::{Duration, Instant};

/// How long a status line stays up.
const STATUS_FOR: Duration = Duration::from_secs(12);

/// The status line: what just happened, or went wrong.
#[derive(Clone, Debug)]
pub(super) struct Status {
    pub text: String,
    pub error: bool,
    pub at: Instant,
}

/// Something waiting on the user's answer about unsaved changes.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Pending {
    Quit,
    Then(AppCommand),
}

/// The unsaved-changes prompt's buttons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Save,
    Discard,
    Cancel,
}

impl GraftApp {
    pub(super) fn set_info(&mut self, text: impl Into<String>) {
        self.status = Some(Status {
            text: text.into(),
            error: false,
            at: Instant::now(),
        });
    }

    /// An error for the status line, also printed to the terminal.
    pub(super) fn set_error(&mut self, text: impl Into<String>) {
        let text = text.into();
        eprintln!("graft: {text}");
        self.status = Some(Status {
            text,
            error: true,
            at: Instant::now(),
        });
    }

    pub(super) fn menu_ui(&mut self, ui: &mut egui::Ui) {
        let commands = &mut self.commands;
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                let item = |ui: &mut egui::Ui, commands: &mut Vec<_>, label: &str, c| {
                    if ui.button(label).clicked() {
                        commands.push(c);
                    }
                };
                item(ui, commands, "New project", AppCommand::NewProject);
                item(
                    ui,
                    commands,
                    "Open project…  Ctrl+O",
                    AppCommand::PickOpenProject,
                );
                ui.menu_button("Recent projects", |ui| {
                    for p in &self.app_state.recent {
                        let label = p.display().to_string();
                        item(ui, commands, &label, AppCommand::OpenProject(p.clone()));
                    }
                });
                item(ui, commands, "Save  Ctrl+S", AppCommand::Save);
                item(
                    ui,
                    commands,
                    "Save as…  Ctrl+Shift+S",
                    AppCommand::PickSaveAs,
                );
                ui.separator();
                item(
                    ui,
                    commands,
                    "New from pretrained…",
                    AppCommand::ShowGallery,
                );
                item(ui, commands, "Open network (ONNX)…", AppCommand::PickModel);
                item(
                    ui,
                    commands,
                    "Open the default network",
                    AppCommand::OpenModel(ModelSource::Default),
                );
                item(ui, commands, "Export ONNX…  Ctrl+E", AppCommand::PickExport);
            });
            ui.menu_button("Edit", |ui| {
                let (u, r) = self
                    .ws
                    .as_ref()
                    .map_or((false, false), |w| (w.can_undo(), w.can_redo()));
                if ui
                    .add_enabled(u, egui::Button::new("Undo  Ctrl+Z"))
                    .clicked()
                {
                    commands.push(AppCommand::Undo);
                }
                if ui
                    .add_enabled(r, egui::Button::new("Redo  Ctrl+Shift+Z"))
                    .clicked()
                {
                    commands.push(AppCommand::Redo);
                }
                ui.separator();
                if ui.button("Adapt to dataset").clicked() {
                    commands.push(AppCommand::AdaptHead);
                }
                if ui.button("Freeze backbone").clicked() {
                    commands.push(AppCommand::FreezeBackbone);
                }
            });
            ui.menu_button("View", |ui| {
                if ui.button("Fit graph to view  F").clicked() {
                    commands.push(AppCommand::FitView);
                }
                if ui.button("Comparison of backbones").clicked() {
                    commands.push(AppCommand::ShowComparison);
                }
            });
        });
    }

    pub(super) fn tabs_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            for (tab, label) in [
                (Tab::Network, "🕸 Network"),
                (Tab::Data, "🖼 Data"),
                (Tab::Training, "📈 Training"),
                (Tab::Results, "✔ Results"),
            ] {
                if ui
                    .selectable_label(self.tab == tab, RichText::new(label).size(15.0))
                    .clicked()
                {
                    self.tab = tab;
                }
            }
        });
    }

    pub(super) fn status_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            if let Some(ws) = &self.ws {
                ui.label(format!(
                    "{} · {} layers · {} parameters ({} trainable)",
                    ws.network.name,
                    ws.network.nodes.len(),
                    group(ws.analysis.total_params as u64),
                    group(ws.trainable_params() as u64)
                ));
            }
            if let Some(d) = &self.data.train {
                ui.separator();
                ui.label(format!(
                    "{} {} · {} classes",
                    d.samples.len(),
                    d.samples_noun(),
                    d.classes.len()
                ));
            }
            for (label, p) in [
                self.model_job
                    .as_ref()
                    .map(|j| (j.label.clone(), j.progress.fraction())),
                self.export_job.as_ref().map(|j| (j.label.clone(), None)),
                self.save_job.as_ref().map(|j| (j.label.clone(), None)),
            ]
            .into_iter()
            .flatten()
            {
                ui.separator();
                ui.spinner();
                ui.label(format!(
                    "{label}{}",
                    p.map(|f| format!(" {:.0}%", f * 100.0)).unwrap_or_default()
                ));
            }
            if let Some(job) = &self.download_job {
                ui.separator();
                let p = &job.progress;
                ui.label(&job.label);
                ui.add(
                    egui::ProgressBar::new(p.fraction().unwrap_or(0.0))
                        .desired_width(140.0)
                        .show_percentage(),
                );
                ui.label(format!(
                    "{:.1} MB · {:.1} MB/s",
                    p.done() as f64 / 1e6,
                    p.rate() / 1e6
                ));
                if ui.button("Cancel").clicked() {
                    self.commands.push(AppCommand::CancelDownload);
                }
            }
            if let Some(run) = &self.run
                && run.is_running()
            {
                ui.separator();
                ui.add(
                    egui::ProgressBar::new(run.fraction())
                        .desired_width(140.0)
                        .show_percentage(),
                );
            }
            if let Some(s) = &self.status
                && s.at.elapsed() < STATUS_FOR
            {
                ui.separator();
                ui.label(RichText::new(&s.text).color(if s.error {
                    theme::ERROR
                } else {
                    ui.visuals().text_color()
                }));
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if !self.hide_frame_time {
                    ui.label(
                        RichText::new(format!("frame p95 {:.1} ms", self.frames.recent_p95()))
                            .small()
                            .weak(),
                    );
                }
                if self.dirty {
                    ui.label(RichText::new("● unsaved").small().color(theme::WARNING));
                }
            });
        });
    }

    /// The unsaved-changes prompt, while something waits on it.
    pub(super) fn confirm_ui(&mut self, ctx: &egui::Context) {
        let Some(pending) = self.confirm.clone() else {
            return;
        };
        let mut answer = None;
        egui::Modal::new(egui::Id::new("unsaved")).show(ctx, |ui| {
            ui.heading("Unsaved changes");
            ui.label("The project has changes that are not saved.");
            ui.horizontal(|ui| {
                for (label, a) in [
                    ("Save", Answer::Save),
                    ("Discard", Answer::Discard),
                    ("Cancel", Answer::Cancel),
                ] {
                    if ui.button(label).clicked() {
                        answer = Some(a);
                    }
                }
            });
        });
        match answer {
            Some(Answer::Save) => {
                self.commands.push(AppCommand::Save);
                // Quitting waits for the save to finish (background.rs closes the window).
                if let Pending::Then(c) = pending {
                    self.confirm = None;
                    self.commands.push(c);
                }
            }
            Some(Answer::Discard) => {
                self.dirty = false;
                self.confirm = None;
                match pending {
                    Pending::Quit => {
                        self.allow_close = true;
                        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                    }
                    Pending::Then(c) => self.commands.push(c),
                }
            }
            Some(Answer::Cancel) => self.confirm = None,
            None => {}
        }
    }
}

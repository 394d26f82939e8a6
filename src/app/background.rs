//! Collecting what background work produced, once per frame: file dialogs, opened networks,
//! dataset scans, previews, exports, classifications, saves, training events; and autosave.

use super::actions::{Loaded, Picked};
use super::chrome::Pending;
use super::file_picker::PickEvent;
use super::frames::FrameStats;
use super::graph_panel::GraphPanelState;
use super::jobs::take;
use super::workspace::Workspace;
use super::{AppCommand, GraftApp, Tab};
use crate::project::{AppState, ModelSource};
use crate::train::Outcome;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Unsaved work is written to the autosave file this often.
const AUTOSAVE_EVERY: Duration = Duration::from_secs(60);

impl GraftApp {
    /// Polls every job and the training session.
    pub(super) fn poll(&mut self, ctx: &egui::Context) {
        self.poll_picker(ctx);
        if let Some(r) = take(&mut self.model_job) {
            match r {
                Ok(loaded) => self.opened(loaded),
                Err(e) => {
                    self.set_error(e);
                    if self.ws.is_none() {
                        self.open_default(ctx);
                    }
                }
            }
        }
        if let Some(r) = take(&mut self.compare.job) {
            self.gallery.refresh();
            match r {
                Ok(()) => self.set_info("comparison finished"),
                Err(e) => self.set_error(e),
            }
        }
        if let Some(r) = take(&mut self.download_job) {
            self.gallery.refresh();
            match r {
                Ok(path) => {
                    // A new network on the dataset already open.
                    self.project_path = None;
                    self.load_model(ctx, ModelSource::File(path), Vec::new(), None);
                }
                Err(e) => self.set_error(e),
            }
        }
        if self.model_job.is_none()
            && let Some(d) = self.pending_dataset.take()
        {
            self.scan(ctx, d);
            self.dirty = false;
        }
        if let Some(r) = take(&mut self.scan_job) {
            match r {
                Ok(s) => {
                    let n = s.train.samples.len();
                    let skipped = s.train.skipped.len();
                    let noun = s.train.samples_noun();
                    self.data.set_scanned(ctx, s);
                    self.set_info(if skipped > 0 {
                        format!("{n} {noun} found, {skipped} files skipped")
                    } else {
                        format!("{n} {noun} found")
                    });
                    self.fit_open_size(ctx);
                }
                Err(e) => {
                    self.data.error = Some(e.clone());
                    self.data.train = None;
                    self.set_error(e);
                }
            }
        }
        if let Some(r) = take(&mut self.data.preview_job) {
            match r {
                Ok(imgs) => self.data.set_preview(ctx, imgs),
                Err(e) => self.set_error(e),
            }
        }
        if let Some(r) = take(&mut self.export_job) {
            match r {
                Ok(note) => {
                    self.results.export_note = Some(note.clone());
                    self.set_info(note);
                }
                Err(e) => self.set_error(format!("Export failed: {e}")),
            }
        }
        if let Some(r) = take(&mut self.classify_job) {
            match r {
                Ok(c) => self.results.set_classified(ctx, c),
                Err(e) => self.set_error(format!("Cannot classify: {e}")),
            }
        }
        if let Some(r) = take(&mut self.save_job) {
            match r {
                Ok(path) => self.saved(ctx, path),
                Err(e) => self.set_error(format!("Save failed, the previous file is kept: {e}")),
            }
        }
        self.poll_training();
        self.autosave();
    }

    fn poll_picker(&mut self, ctx: &egui::Context) {
        match self.picker.update(ctx) {
            Some(PickEvent::Chosen(purpose, p)) => self.commands.push(match purpose {
                Picked::Model => AppCommand::OpenModel(ModelSource::File(p)),
                Picked::Dataset => AppCommand::OpenDataset(p),
                Picked::Validation => AppCommand::SetValidation(p),
                Picked::NoiseFolder => AppCommand::SetNoiseFolder(Some(p)),
                Picked::Export => AppCommand::Export(p),
                Picked::Classify => AppCommand::Classify(p),
                Picked::OpenProject => AppCommand::OpenProject(p),
                Picked::SaveAs => AppCommand::SaveAs(p),
            }),
            Some(PickEvent::FellBack) => {
                self.set_info("No desktop file dialog could open; using Graft's own.")
            }
            None => {}
        }
    }

    /// A network (and maybe its project) finished opening.
    fn opened(&mut self, loaded: Loaded) {
        // The same file with the same edits, read again (at another image size): the
        // project's unsaved state stays as it was.
        let rebuilt = loaded.project.is_none()
            && self
                .ws
                .as_ref()
                .is_some_and(|w| w.source == loaded.source && w.edits == loaded.edits);
        let mut ws = Workspace::new(
            loaded.source,
            loaded.imported.network,
            loaded.imported.store,
        );
        ws.edits = loaded.edits;
        let name = ws.network.name.clone();
        self.ws = Some(ws);
        self.graph = GraphPanelState::default();
        self.graph.fit = true;
        self.selected = None;
        self.dirty &= rebuilt;
        if let Some((path, project)) = loaded.project {
            self.options = project.options;
            self.compare.restore(project.comparison);
            match project.results {
                Some(r) => self.set_evaluation(Some(r.history), r.evaluation, r.detection),
                None => self.set_evaluation(None, None, None),
            }
            if let Some(d) = project.dataset {
                self.pending_dataset = Some(d);
            }
            self.remember(&path);
            self.project_path = Some(path);
        }
        self.set_info(format!("Opened {name}"));
    }

    fn saved(&mut self, ctx: &egui::Context, path: PathBuf) {
        self.dirty = false;
        self.remember(&path);
        self.set_info(format!("Saved {}", path.display()));
        self.project_path = Some(path);
        if self.confirm == Some(Pending::Quit) {
            self.allow_close = true;
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }

    /// Adds a project to the recent list (not in tests).
    fn remember(&mut self, path: &std::path::Path) {
        if !self.ephemeral {
            self.app_state.opened(path);
            let _ = self.app_state.save();
        }
    }

    fn poll_training(&mut self) {
        let mut ended = None;
        if let Some(run) = &mut self.run {
            let events: Vec<_> = run
                .session
                .as_ref()
                .map(|s| s.events().try_iter().collect())
                .unwrap_or_default();
            for e in events {
                if let Some(r) = run.apply(e) {
                    ended = Some(r);
                }
            }
        }
        let Some(result) = ended else {
            return;
        };
        if let Some(run) = &mut self.run
            && let Some(s) = run.session.take()
        {
            s.join();
        }
        match result {
            Ok(outcome) => self.trained(*outcome),
            Err(e) => self.set_error(format!("Training failed: {e}")),
        }
    }

    fn trained(&mut self, o: Outcome) {
        let score = match (&o.evaluation, &o.detection) {
            (Some(e), _) => format!("validation accuracy {:.1}%", e.accuracy * 100.0),
            (_, Some(d)) => format!("validation mAP@0.5 {:.1}%", d.report.map50 * 100.0),
            _ => "no validation images".into(),
        };
        self.set_evaluation(Some(o.history), o.evaluation, o.detection);
        if let Some(ws) = &mut self.ws {
            ws.set_trained(o.network, o.store);
        }
        self.dirty = true;
        let p95 = FrameStats::p95(&self.frames.during_training);
        eprintln!(
            "graft: training finished; UI frame time p95 {p95:.2} ms over {} frames",
            self.frames.during_training.len()
        );
        if let Ok(path) = std::env::var("GRAFT_FRAME_LOG") {
            let text: String = self
                .frames
                .during_training
                .iter()
                .map(|v| format!("{v:.3}\n"))
                .collect();
            let _ = std::fs::write(path, text);
        }
        self.set_info(format!("Training {}: {score}", o.reason.words()));
        if self.script.is_none() {
            self.tab = Tab::Results;
        }
    }

    /// Writes unsaved work to the autosave file every minute, on its own thread.
    fn autosave(&mut self) {
        if !self.dirty
            || self.ephemeral
            || self.ws.is_none()
            || self.last_autosave.elapsed() < AUTOSAVE_EVERY
        {
            return;
        }
        self.last_autosave = Instant::now();
        if let Some(path) = AppState::autosave_path() {
            let project = self.project();
            std::thread::spawn(move || {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let _ = project.save(&path);
            });
        }
    }
}

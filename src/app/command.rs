//! [`AppCommand`]: everything a widget can ask for, and [`GraftApp::handle`], the one place
//! the app's state changes in answer (undo and redo live here too).

use super::actions::Picked;
use super::chrome::Pending;
use super::file_picker::PickRequest;
use super::{GraftApp, Tab};
use crate::graph::edit::{Edit, freeze_backbone, head_start};
use crate::project::{DatasetSettings, ModelSource};
use crate::train::TrainingOptions;
use std::path::PathBuf;

/// Everything a widget can ask for.
#[derive(Clone, Debug, PartialEq)]
pub enum AppCommand {
    Edit(Edit),
    Undo,
    Redo,
    Select(Option<String>),
    Focus(String),
    FitView,
    AdaptHead,
    /// A detection head for the box dataset: on the selected node when it is a feature map,
    /// else the default one, with the anchors the data panel shows.
    AddDetectionHead,
    FreezeBackbone,
    PickModel,
    OpenModel(ModelSource),
    /// Rebuild a network whose file leaves the image size open at this side (`None`: the
    /// dataset's typical side).
    SetImageSize(Option<usize>),
    /// The gallery dialog ("New from pretrained…").
    ShowGallery,
    /// Download (if needed) and open a gallery network by name, keeping the dataset.
    OpenGallery(String),
    CancelDownload,
    /// Compare the gallery networks ticked in the gallery on the current dataset.
    StartCompare,
    /// The comparison window (the last comparison, also after reopening a project).
    ShowComparison,
    PickDataset,
    PickValidation,
    /// Sound augmentation: choose the folder of background noise; `None` stops mixing it in.
    PickNoiseFolder,
    SetNoiseFolder(Option<PathBuf>),
    OpenDataset(PathBuf),
    SetValidation(PathBuf),
    Rescan,
    StartTraining,
    PauseTraining,
    ResumeTraining,
    StopTraining,
    PickExport,
    Export(PathBuf),
    PickClassify,
    Classify(PathBuf),
    NewProject,
    PickOpenProject,
    OpenProject(PathBuf),
    Save,
    PickSaveAs,
    SaveAs(PathBuf),
    SetTab(Tab),
}

impl GraftApp {
    /// Handles every queued command; an error becomes the status line.
    pub(super) fn handle(&mut self, ctx: &egui::Context) {
        let commands = std::mem::take(&mut self.commands);
        for c in commands {
            if let Err(e) = self.handle_one(ctx, c) {
                self.set_error(e);
            }
        }
    }

    /// Replacing unsaved work asks first: true when the command now waits for the answer.
    fn guarded(&mut self, c: &AppCommand) -> bool {
        if self.dirty && self.confirm.is_none() {
            self.confirm = Some(Pending::Then(c.clone()));
            return true;
        }
        false
    }

    fn training(&self) -> bool {
        self.run.as_ref().is_some_and(|r| r.is_running())
    }

    fn handle_one(&mut self, ctx: &egui::Context, c: AppCommand) -> Result<(), String> {
        match c {
            AppCommand::Edit(e) => {
                if self.training() {
                    return Err("stop training before editing the network".into());
                }
                let ws = self.ws.as_mut().ok_or("no network open")?;
                let what = super::describe(&e);
                ws.apply(e)?;
                self.dirty = true;
                self.set_info(what);
            }
            AppCommand::Undo | AppCommand::Redo => {
                if self.training() {
                    return Err("stop training before undoing".into());
                }
                let ws = self.ws.as_mut().ok_or("no network open")?;
                let done = if c == AppCommand::Undo {
                    ws.undo().map(|w| format!("Undid {w}"))
                } else {
                    ws.redo().map(|w| format!("Redid {w}"))
                };
                if let Some(w) = done {
                    self.dirty = true;
                    self.set_info(w);
                }
            }
            AppCommand::Select(s) => self.selected = s,
            AppCommand::Focus(n) => {
                self.tab = Tab::Network;
                self.graph.focus = Some(n);
            }
            AppCommand::FitView => self.graph.fit = true,
            AppCommand::AdaptHead => {
                let classes = self
                    .data
                    .train
                    .as_ref()
                    .map(|d| d.classes.clone())
                    .ok_or("choose a dataset first: the new head gets one output per class")?;
                self.commands.push(AppCommand::Edit(Edit::AdaptHead {
                    classes,
                    seed: self.options.seed,
                }));
            }
            AppCommand::AddDetectionHead => {
                let edit = self.detection_head_edit()?;
                self.commands.push(AppCommand::Edit(edit));
                self.tab = Tab::Network;
            }
            AppCommand::FreezeBackbone => {
                if self.training() {
                    return Err("stop training first".into());
                }
                let ws = self.ws.as_ref().ok_or("no network open")?;
                let h = head_start(&ws.network, &ws.store).ok_or("no classifier found")?;
                if h == 0 {
                    return Err("nothing before the head to freeze".into());
                }
                let before = ws.network.nodes[h - 1].name.clone();
                // Check on a copy that the freeze applies, so the error comes now, not as a
                // refused edit.
                let mut probe = ws.network.clone();
                freeze_backbone(&mut probe, &ws.store).map_err(|e| e.to_string())?;
                self.commands
                    .push(AppCommand::Edit(Edit::FreezeUntil { node: before }));
            }
            AppCommand::PickModel => self.pick(
                ctx,
                PickRequest::file(Picked::Model, "Open a network").filter("ONNX", &["onnx"]),
            ),
            AppCommand::ShowGallery => self.gallery.show(),
            AppCommand::OpenGallery(name) => {
                if self.guarded(&AppCommand::OpenGallery(name.clone())) {
                    return Ok(());
                }
                if self.download_job.is_some() {
                    return Err("a download is already running".into());
                }
                if self.gallery.source.is_none() {
                    self.gallery.show();
                    self.gallery.open = false;
                }
                let (entry, place) = self
                    .gallery
                    .entry(&name)
                    .ok_or_else(|| format!("no network named {name} in the gallery"))?;
                self.download_job = Some(super::jobs::Job::spawn(
                    format!("Downloading {}", entry.title),
                    ctx,
                    move |p| {
                        let mut report = |g: &crate::gallery::Progress| {
                            p.set(g.done as usize, g.total as usize);
                            p.set_rate(g.bytes_per_s);
                        };
                        let path =
                            crate::gallery::pull(&entry, &place, &mut report, p.cancel_flag())
                                .map_err(|e| e.to_string())?;
                        // Measured once: parameters, MACs, images/s on this machine.
                        if !crate::gallery::facts::load(&place).contains_key(&entry.name)
                            && let Ok(mut imported) = crate::onnx::import(&path)
                        {
                            crate::gallery::complete(&entry, &mut imported);
                            let facts = crate::gallery::facts::measure(&imported);
                            crate::gallery::facts::record(&place, &entry.name, facts)?;
                        }
                        Ok(path)
                    },
                ));
            }
            AppCommand::StartCompare => {
                if self.compare.job.is_some() || self.training() {
                    return Err("wait for the running comparison or training to end".into());
                }
                let (train, validation) = self.data.split(self.options.seed)?;
                let validation = validation
                    .ok_or("comparing needs validation images: set a validation split")?;
                let mut entries = Vec::new();
                let mut place = None;
                for name in &self.compare.selected {
                    let (e, p) = self
                        .gallery
                        .entry(name)
                        .ok_or_else(|| format!("no network named {name} in the gallery"))?;
                    entries.push(e);
                    place = Some(p);
                }
                let place = place.ok_or("tick two or more networks in the gallery")?;
                let recipe = crate::compare::Recipe {
                    options: self.options.clone(),
                    fine_tune: self.compare.fine_tune,
                };
                self.compare
                    .start(ctx, entries, place, (train, validation), recipe);
            }
            AppCommand::ShowComparison => self.compare.open = true,
            AppCommand::CancelDownload => {
                if let Some(j) = &self.download_job {
                    j.progress.cancel();
                }
            }
            AppCommand::OpenModel(source) => {
                if self.guarded(&AppCommand::OpenModel(source.clone())) {
                    return Ok(());
                }
                self.project_path = None;
                self.load_model(ctx, source, Vec::new(), None);
            }
            AppCommand::SetImageSize(side) => {
                // Rebuilding re-reads the file: trained weights no file holds would be lost.
                if self.ws.as_ref().is_some_and(|w| w.trained) {
                    self.set_error(
                        "Export or save the trained network first: rebuilding at another \
                         image size re-reads the file",
                    );
                } else {
                    self.import_options.image_size = side;
                    self.dirty = true;
                    self.fit_open_size(ctx);
                }
            }
            AppCommand::PickDataset => self.pick(
                ctx,
                PickRequest::folder(Picked::Dataset, "Choose the image folder"),
            ),
            AppCommand::PickValidation => self.pick(
                ctx,
                PickRequest::folder(Picked::Validation, "Choose a validation folder"),
            ),
            AppCommand::OpenDataset(root) => {
                // A new folder is looked at afresh; the split and sound settings carry over.
                let previous = self.data.settings.clone().unwrap_or_default();
                self.scan(
                    ctx,
                    DatasetSettings {
                        root,
                        val_root: None,
                        layout: Default::default(),
                        ..previous
                    },
                );
                self.tab = Tab::Data;
            }
            AppCommand::PickNoiseFolder => self.pick(
                ctx,
                PickRequest::folder(Picked::NoiseFolder, "Choose a folder of background noise"),
            ),
            AppCommand::SetNoiseFolder(dir) => {
                if let Some(a) = &mut self.options.sound_augmentation {
                    a.noise_folder = dir;
                    self.dirty = true;
                }
            }
            AppCommand::SetValidation(dir) => {
                let mut s = self
                    .data
                    .settings
                    .clone()
                    .ok_or("choose the training folder first")?;
                s.val_root = Some(dir);
                self.scan(ctx, s);
            }
            AppCommand::Rescan => {
                if let Some(s) = self.data.settings.clone() {
                    self.scan(ctx, s);
                }
            }
            AppCommand::StartTraining => self.start_training(ctx)?,
            AppCommand::PauseTraining => {
                if let Some(s) = self.run.as_ref().and_then(|r| r.session.as_ref()) {
                    s.pause();
                }
            }
            AppCommand::ResumeTraining => {
                if let Some(s) = self.run.as_ref().and_then(|r| r.session.as_ref()) {
                    s.resume();
                }
            }
            AppCommand::StopTraining => {
                if let Some(s) = self.run.as_ref().and_then(|r| r.session.as_ref()) {
                    s.stop();
                }
            }
            AppCommand::PickExport => self.pick(
                ctx,
                PickRequest::save(Picked::Export, "Export ONNX", "model.onnx")
                    .filter("ONNX", &["onnx"]),
            ),
            AppCommand::Export(path) => self.export(ctx, path)?,
            AppCommand::PickClassify => {
                let request = if self.sound_network() {
                    PickRequest::file(Picked::Classify, "Classify a sound file")
                        .filter("Sounds", crate::audio::decode::AUDIO_EXTENSIONS)
                } else {
                    PickRequest::file(Picked::Classify, "Classify an image")
                        .filter("Images", crate::data::folder::IMAGE_EXTENSIONS)
                };
                self.pick(ctx, request)
            }
            AppCommand::Classify(path) => self.classify(ctx, path)?,
            AppCommand::NewProject => {
                if self.guarded(&AppCommand::NewProject) {
                    return Ok(());
                }
                self.project_path = None;
                self.set_evaluation(None, None, None);
                self.run = None;
                self.options = TrainingOptions::default();
                self.open_default(ctx);
            }
            AppCommand::PickOpenProject => self.pick(
                ctx,
                PickRequest::file(Picked::OpenProject, "Open a project")
                    .filter("Graft project", &["ron"]),
            ),
            AppCommand::OpenProject(p) => {
                if self.guarded(&AppCommand::OpenProject(p.clone())) {
                    return Ok(());
                }
                self.open_project(ctx, p);
            }
            AppCommand::Save => match self.project_path.clone() {
                Some(p) => self.save(ctx, p)?,
                None => self.commands.push(AppCommand::PickSaveAs),
            },
            AppCommand::PickSaveAs => self.pick(
                ctx,
                PickRequest::save(Picked::SaveAs, "Save the project", "project.graft.ron")
                    .filter("Graft project", &["ron"]),
            ),
            AppCommand::SaveAs(p) => self.save(ctx, p)?,
            AppCommand::SetTab(t) => self.tab = t,
        }
        Ok(())
    }
}

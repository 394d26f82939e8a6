//! The designer window (eframe/egui). Widgets never change the model directly: they push
//! [`AppCommand`]s, handled once per frame in [`GraftApp::handle`], which is also where undo
//! and redo live. Everything slower than a frame runs in a [`jobs::Job`] or the training
//! [`Session`](crate::train::Session) and is polled in [`eframe::App::logic`].

mod data_panel;
mod graph_panel;
mod inspector_panel;
mod jobs;
pub mod layout;
mod results_panel;
mod screenshots;
mod theme;
mod train_panel;
mod workspace;

use crate::graph::edit::{Edit, freeze_backbone};
use crate::onnx::{self, Imported};
use crate::project::{AppState, DatasetSettings, ModelSource, Project, Results};
use crate::train::{Evaluation, History, Session, TrainJob, TrainingOptions};
use data_panel::{DataPanelState, Scanned};
use egui::{Key, KeyboardShortcut, Modifiers, RichText};
use graph_panel::GraphPanelState;
use jobs::{Job, take};
use results_panel::{Classified, ResultsPanelState};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use train_panel::TrainRun;
use workspace::Workspace;

pub use workspace::describe;

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
    FreezeBackbone,
    PickModel,
    OpenModel(ModelSource),
    PickDataset,
    PickValidation,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Network,
    Data,
    Training,
    Results,
}

/// How the app starts.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Open this project instead of the last one.
    pub project: Option<PathBuf>,
    /// Start on the default network and sample data, ignoring the last project.
    pub fresh: bool,
    /// Run the screenshot script, writing PNGs here, then quit.
    pub screenshots: Option<PathBuf>,
    /// Do not read or write the remembered state (tests).
    pub ephemeral: bool,
    /// Measure UI frame times while training and write them here, then quit.
    pub frame_bench: Option<PathBuf>,
    /// Open this network (instead of the default) with the sample data.
    pub model: Option<PathBuf>,
}

/// The embedded sample dataset (Fashion-MNIST, 4 classes).
pub fn sample_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join("sample_data")
}

/// A model opened, possibly from a project.
struct Loaded {
    source: ModelSource,
    imported: Imported,
    edits: Vec<Edit>,
    project: Option<(PathBuf, Project)>,
}

/// What a native dialog returned.
enum Picked {
    Model(PathBuf),
    Dataset(PathBuf),
    Validation(PathBuf),
    Export(PathBuf),
    Classify(PathBuf),
    OpenProject(PathBuf),
    SaveAs(PathBuf),
}

/// Something waiting on the user's answer about unsaved changes.
#[derive(Clone, Debug, PartialEq)]
enum Pending {
    Quit,
    Then(AppCommand),
}

/// Frame times, to show and to measure the UI staying smooth while training.
#[derive(Default)]
pub struct FrameStats {
    pub recent: std::collections::VecDeque<f32>,
    pub during_training: Vec<f32>,
}

impl FrameStats {
    fn push(&mut self, ms: f32, training: bool) {
        self.recent.push_back(ms);
        if self.recent.len() > 240 {
            self.recent.pop_front();
        }
        if training {
            self.during_training.push(ms);
        }
    }

    pub fn p95(values: &[f32]) -> f32 {
        if values.is_empty() {
            return 0.0;
        }
        let mut v = values.to_vec();
        v.sort_by(f32::total_cmp);
        v[((v.len() as f32 * 0.95) as usize).min(v.len() - 1)]
    }
}

pub struct GraftApp {
    ws: Option<Workspace>,
    pub tab: Tab,
    graph: GraphPanelState,
    data: DataPanelState,
    results: ResultsPanelState,
    options: TrainingOptions,
    run: Option<TrainRun>,
    evaluation: Option<Evaluation>,
    history: Option<History>,
    selected: Option<String>,
    project_path: Option<PathBuf>,
    dirty: bool,
    app_state: AppState,
    ephemeral: bool,
    commands: Vec<AppCommand>,
    status: Option<(String, bool, Instant)>,
    model_job: Option<Job<Loaded>>,
    scan_job: Option<Job<Scanned>>,
    export_job: Option<Job<String>>,
    classify_job: Option<Job<Classified>>,
    save_job: Option<Job<PathBuf>>,
    dialog_job: Option<Job<Option<Picked>>>,
    /// Dataset to scan once the model is open (startup, projects).
    pending_dataset: Option<DatasetSettings>,
    confirm: Option<Pending>,
    allow_close: bool,
    pub frames: FrameStats,
    last_autosave: Instant,
    script: Option<screenshots::Script>,
    bench: Option<screenshots::FrameBench>,
}

impl GraftApp {
    pub fn new(ctx: &egui::Context, start: StartOptions) -> Self {
        let app_state = if start.ephemeral {
            AppState::default()
        } else {
            AppState::load()
        };
        let remember_last = !start.fresh
            && start.screenshots.is_none()
            && start.frame_bench.is_none()
            && start.model.is_none();
        let model = start.model.clone();
        let mut app = GraftApp {
            ws: None,
            tab: Tab::Network,
            graph: GraphPanelState::default(),
            data: DataPanelState::default(),
            results: ResultsPanelState::default(),
            options: TrainingOptions::default(),
            run: None,
            evaluation: None,
            history: None,
            selected: None,
            project_path: None,
            dirty: false,
            app_state,
            ephemeral: start.ephemeral,
            commands: Vec::new(),
            status: None,
            model_job: None,
            scan_job: None,
            export_job: None,
            classify_job: None,
            save_job: None,
            dialog_job: None,
            pending_dataset: None,
            confirm: None,
            allow_close: false,
            frames: FrameStats::default(),
            last_autosave: Instant::now(),
            script: start.screenshots.map(screenshots::Script::new),
            bench: start.frame_bench.map(screenshots::FrameBench::new),
        };
        let last = app
            .app_state
            .last
            .clone()
            .filter(|p| p.exists() && remember_last);
        match (model, start.project.or(last)) {
            (Some(m), _) => app.open_on_sample_data(ctx, ModelSource::File(m)),
            (None, Some(p)) => app.open_project(ctx, p),
            (None, None) => app.open_default(ctx),
        }
        app
    }

    fn open_default(&mut self, ctx: &egui::Context) {
        self.open_on_sample_data(ctx, ModelSource::Default);
    }

    /// Opens a network with the embedded sample dataset.
    fn open_on_sample_data(&mut self, ctx: &egui::Context, source: ModelSource) {
        self.load_model(ctx, source, Vec::new(), None);
        let sample = sample_data_dir();
        if sample.is_dir() {
            self.pending_dataset = Some(DatasetSettings {
                root: sample,
                val_root: None,
                val_split: 0.25,
            });
        }
    }

    fn load_model(
        &mut self,
        ctx: &egui::Context,
        source: ModelSource,
        edits: Vec<Edit>,
        project: Option<(PathBuf, Project)>,
    ) {
        let label = match &source {
            ModelSource::Default => "Opening EfficientNet-Lite0".to_string(),
            ModelSource::File(p) => format!("Opening {}", p.display()),
        };
        self.model_job = Some(Job::spawn(label, ctx, move |_| {
            let mut imported = match &source {
                ModelSource::Default => onnx::import_bytes(crate::DEFAULT_MODEL),
                ModelSource::File(p) => onnx::import(p),
            }
            .map_err(|e| e.to_string())?;
            for e in &edits {
                crate::graph::edit::apply(&mut imported.network, &mut imported.store, e)
                    .map_err(|err| format!("replaying '{}': {err}", describe(e)))?;
            }
            Ok(Loaded {
                source,
                imported,
                edits,
                project,
            })
        }));
    }

    fn open_project(&mut self, ctx: &egui::Context, path: PathBuf) {
        match Project::load(&path) {
            Ok(p) => {
                self.options = p.options.clone();
                self.load_model(ctx, p.model.clone(), p.edits.clone(), Some((path, p)));
            }
            Err(e) => {
                self.set_status(format!("Cannot open {}: {e}", path.display()), true);
                if self.ws.is_none() && self.model_job.is_none() {
                    self.open_default(ctx);
                }
            }
        }
    }

    fn set_status(&mut self, text: impl Into<String>, error: bool) {
        let text = text.into();
        if error {
            eprintln!("graft: {text}");
        }
        self.status = Some((text, error, Instant::now()));
    }

    pub fn workspace(&self) -> Option<&Workspace> {
        self.ws.as_ref()
    }

    pub fn is_busy(&self) -> bool {
        self.model_job.is_some()
            || self.scan_job.is_some()
            || self.export_job.is_some()
            || self.run.as_ref().is_some_and(TrainRun::is_running)
    }

    pub fn training_iterations(&self) -> usize {
        self.run.as_ref().map_or(0, |r| r.iterations.len())
    }

    pub fn evaluation(&self) -> Option<&Evaluation> {
        self.evaluation.as_ref()
    }

    pub fn dataset_classes(&self) -> Option<Vec<String>> {
        self.data.train.as_ref().map(|d| d.classes.clone())
    }

    pub fn push(&mut self, c: AppCommand) {
        self.commands.push(c);
    }

    pub fn options_mut(&mut self) -> &mut TrainingOptions {
        &mut self.options
    }

    fn training_ready(&self) -> Result<(), String> {
        let ws = self.ws.as_ref().ok_or("no network open")?;
        if self.scan_job.is_some() {
            return Err("the dataset is still being scanned".into());
        }
        let (train, _) = self.data.split(self.options.seed)?;
        if let Some(e) = ws.analysis.errors().next() {
            return Err(format!("fix the network first: {e}"));
        }
        let out = ws
            .network
            .outputs
            .first()
            .and_then(|o| ws.shapes.get(o))
            .map(|d| {
                d.iter()
                    .skip(1)
                    .map(|d| match d {
                        crate::graph::shape::Dim::Fixed(n) => *n,
                        _ => 1,
                    })
                    .product::<usize>()
            });
        if out != Some(train.classes.len()) || ws.network.metadata.labels != train.classes {
            return Err(format!(
                "the network's head does not match the {} classes: press \"Adapt to dataset\"",
                train.classes.len()
            ));
        }
        self.options.validate()
    }

    /// Handles every queued command.
    fn handle(&mut self, ctx: &egui::Context) {
        let commands = std::mem::take(&mut self.commands);
        for c in commands {
            if let Err(e) = self.handle_one(ctx, c) {
                self.set_status(e, true);
            }
        }
    }

    fn guarded(&mut self, c: AppCommand) -> bool {
        // Replacing the work in progress asks first.
        if self.dirty && self.confirm.is_none() {
            self.confirm = Some(Pending::Then(c));
            return true;
        }
        false
    }

    fn handle_one(&mut self, ctx: &egui::Context, c: AppCommand) -> Result<(), String> {
        let training = self.run.as_ref().is_some_and(TrainRun::is_running);
        match c {
            AppCommand::Edit(e) => {
                if training {
                    return Err("stop training before editing the network".into());
                }
                let ws = self.ws.as_mut().ok_or("no network open")?;
                let what = describe(&e);
                ws.apply(e)?;
                self.dirty = true;
                self.set_status(what, false);
            }
            AppCommand::Undo | AppCommand::Redo => {
                if training {
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
                    self.set_status(w, false);
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
            AppCommand::FreezeBackbone => {
                if training {
                    return Err("stop training first".into());
                }
                let ws = self.ws.as_ref().ok_or("no network open")?;
                let h = crate::graph::edit::head_start(&ws.network, &ws.store)
                    .ok_or("no classifier found")?;
                if h == 0 {
                    return Err("nothing before the head to freeze".into());
                }
                let before = ws.network.nodes[h - 1].name.clone();
                let mut probe = ws.network.clone();
                freeze_backbone(&mut probe, &ws.store).map_err(|e| e.to_string())?;
                self.commands
                    .push(AppCommand::Edit(Edit::FreezeUntil { node: before }));
            }
            AppCommand::PickModel => self.pick(ctx, "Open a network", |d| {
                d.add_filter("ONNX", &["onnx"])
                    .pick_file()
                    .map(Picked::Model)
            }),
            AppCommand::OpenModel(source) => {
                if self.guarded(AppCommand::OpenModel(source.clone())) {
                    return Ok(());
                }
                self.project_path = None;
                self.load_model(ctx, source, Vec::new(), None);
            }
            AppCommand::PickDataset => self.pick(ctx, "Choose the image folder", |d| {
                d.pick_folder().map(Picked::Dataset)
            }),
            AppCommand::PickValidation => self.pick(ctx, "Choose a validation folder", |d| {
                d.pick_folder().map(Picked::Validation)
            }),
            AppCommand::OpenDataset(root) => {
                let split = self.data.settings.as_ref().map_or(0.2, |s| s.val_split);
                self.scan(
                    ctx,
                    DatasetSettings {
                        root,
                        val_root: None,
                        val_split: split,
                    },
                );
                self.tab = Tab::Data;
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
            AppCommand::PickExport => self.pick(ctx, "Export ONNX", |d| {
                d.add_filter("ONNX", &["onnx"])
                    .set_file_name("model.onnx")
                    .save_file()
                    .map(Picked::Export)
            }),
            AppCommand::Export(path) => self.export(ctx, path)?,
            AppCommand::PickClassify => self.pick(ctx, "Classify an image", |d| {
                d.add_filter("Images", crate::data::folder::IMAGE_EXTENSIONS)
                    .pick_file()
                    .map(Picked::Classify)
            }),
            AppCommand::Classify(path) => self.classify(ctx, path)?,
            AppCommand::NewProject => {
                if self.guarded(AppCommand::NewProject) {
                    return Ok(());
                }
                self.project_path = None;
                self.evaluation = None;
                self.history = None;
                self.run = None;
                self.options = TrainingOptions::default();
                self.open_default(ctx);
            }
            AppCommand::PickOpenProject => self.pick(ctx, "Open a project", |d| {
                d.add_filter("Graft project", &["ron"])
                    .pick_file()
                    .map(Picked::OpenProject)
            }),
            AppCommand::OpenProject(p) => {
                if self.guarded(AppCommand::OpenProject(p.clone())) {
                    return Ok(());
                }
                self.open_project(ctx, p);
            }
            AppCommand::Save => match self.project_path.clone() {
                Some(p) => self.save(ctx, p)?,
                None => self.commands.push(AppCommand::PickSaveAs),
            },
            AppCommand::PickSaveAs => self.pick(ctx, "Save the project", |d| {
                d.add_filter("Graft project", &["ron"])
                    .set_file_name("project.graft.ron")
                    .save_file()
                    .map(Picked::SaveAs)
            }),
            AppCommand::SaveAs(p) => self.save(ctx, p)?,
            AppCommand::SetTab(t) => self.tab = t,
        }
        Ok(())
    }

    /// Opens a native dialog on its own thread (rfd blocks).
    fn pick(
        &mut self,
        ctx: &egui::Context,
        title: &'static str,
        f: impl FnOnce(rfd::FileDialog) -> Option<Picked> + Send + 'static,
    ) {
        if self.dialog_job.is_some() {
            return;
        }
        self.dialog_job = Some(Job::spawn("Dialog", ctx, move |_| {
            Ok(f(rfd::FileDialog::new().set_title(title)))
        }));
    }

    fn scan(&mut self, ctx: &egui::Context, settings: DatasetSettings) {
        if let Some(j) = &self.scan_job {
            j.progress.cancel();
        }
        self.data.settings = Some(settings.clone());
        self.scan_job = Some(data_panel::scan_job(ctx, settings));
        self.dirty = true;
    }

    fn start_training(&mut self, ctx: &egui::Context) -> Result<(), String> {
        self.training_ready()?;
        let ws = self.ws.as_ref().ok_or("no network open")?;
        let (train, validation) = self.data.split(self.options.seed)?;
        let mut network = ws.network.clone();
        if network.metadata.preprocess.is_none() {
            network.metadata.preprocess = Some(network.preprocess());
        }
        let job = TrainJob {
            network,
            store: ws.store.clone(),
            train,
            validation,
            options: self.options.clone(),
            checkpoint: None,
            resume: false,
        };
        let repaint = ctx.clone();
        let session = Session::start(
            job,
            Some(std::sync::Arc::new(move || repaint.request_repaint())),
        )?;
        self.run = Some(TrainRun::new(session));
        self.frames.during_training.clear();
        self.tab = Tab::Training;
        Ok(())
    }

    fn export(&mut self, ctx: &egui::Context, path: PathBuf) -> Result<(), String> {
        let ws = self.ws.as_ref().ok_or("no network open")?;
        let (net, store) = (ws.network.clone(), ws.store.clone());
        self.export_job = Some(Job::spawn("Exporting", ctx, move |_| {
            let bytes = onnx::export_bytes(&net, &store).map_err(|e| e.to_string())?;
            crate::files::write_atomic(&path, &bytes)?;
            let labels = crate::cli::train::labels_path(&path);
            crate::files::write_atomic(
                &labels,
                (net.metadata.labels.join("\n") + "\n").as_bytes(),
            )?;
            // Check that an independent runtime reads the file.
            let [c, h, w] = net.input_chw().unwrap_or([3, 224, 224]);
            Ok(format!(
                "Exported {} and {}. {}",
                path.display(),
                labels.display(),
                tract_check(&bytes, c, h, w)
            ))
        }));
        Ok(())
    }

    fn classify(&mut self, ctx: &egui::Context, path: PathBuf) -> Result<(), String> {
        let ws = self.ws.as_ref().ok_or("no network open")?;
        let (net, store) = (ws.network.clone(), ws.store.clone());
        self.tab = Tab::Results;
        self.classify_job = Some(Job::spawn("Classifying", ctx, move |_| {
            let pre = net.preprocess();
            let [c, h, w] = net.input_chw().ok_or("not an image network")?;
            let x = crate::data::preprocess::image_to_input(&path, &pre)?;
            let (fnet, fstore) = crate::engine::optimize::for_inference(&net, &store);
            let model = crate::engine::Model::build(&fnet, &fstore, &burn::tensor::Device::flex())
                .map_err(|e| e.to_string())?;
            let out = model
                .infer(&[1, c, h, w], x)
                .map_err(|e| e.to_string())?
                .remove(0)
                .1;
            let ends_in_softmax = net
                .outputs
                .first()
                .and_then(|o| net.producer(o))
                .is_some_and(|i| matches!(net.nodes[i].op, crate::graph::Op::Softmax { .. }));
            let probs = if ends_in_softmax {
                out
            } else {
                crate::train::metrics::softmax(&out)
            };
            let mut order: Vec<usize> = (0..probs.len()).collect();
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
            let top = order
                .iter()
                .take(5)
                .map(|&k| {
                    (
                        net.metadata
                            .labels
                            .get(k)
                            .cloned()
                            .unwrap_or_else(|| format!("class {k}")),
                        probs[k],
                    )
                })
                .collect();
            Ok(Classified {
                image: data_panel::thumbnail(&path, 96),
                path,
                top,
            })
        }));
        Ok(())
    }

    fn project(&self) -> Project {
        let ws = self.ws.as_ref();
        Project {
            model: ws.map_or(ModelSource::Default, |w| w.source.clone()),
            edits: ws.map(|w| w.edits.clone()).unwrap_or_default(),
            dataset: self.data.settings.clone(),
            options: self.options.clone(),
            results: self.history.clone().map(|history| Results {
                history,
                evaluation: self.evaluation.clone(),
            }),
            ..Project::default()
        }
    }

    fn save(&mut self, ctx: &egui::Context, path: PathBuf) -> Result<(), String> {
        let ws = self.ws.as_ref().ok_or("no network open")?;
        let mut project = self.project();
        // Trained weights go into a file next to the project, which then becomes its source.
        let weights = if ws.trained
            || matches!(ws.source, ModelSource::File(ref p) if *p == Project::weights_path(&path))
        {
            project.model = ModelSource::File(Project::weights_path(&path));
            project.edits.clear();
            Some((ws.network.clone(), ws.store.clone()))
        } else {
            None
        };
        let target = path.clone();
        self.save_job = Some(Job::spawn("Saving", ctx, move |_| {
            if let Some((net, store)) = weights {
                onnx::export_file(&net, &store, &Project::weights_path(&target))
                    .map_err(|e| e.to_string())?;
            }
            project.save(&target)?;
            Ok(target)
        }));
        Ok(())
    }

    /// Polls jobs and the training session.
    fn poll(&mut self, ctx: &egui::Context) {
        if let Some(r) = take(&mut self.dialog_job) {
            match r {
                Ok(Some(Picked::Model(p))) => self
                    .commands
                    .push(AppCommand::OpenModel(ModelSource::File(p))),
                Ok(Some(Picked::Dataset(p))) => self.commands.push(AppCommand::OpenDataset(p)),
                Ok(Some(Picked::Validation(p))) => self.commands.push(AppCommand::SetValidation(p)),
                Ok(Some(Picked::Export(p))) => self.commands.push(AppCommand::Export(p)),
                Ok(Some(Picked::Classify(p))) => self.commands.push(AppCommand::Classify(p)),
                Ok(Some(Picked::OpenProject(p))) => self.commands.push(AppCommand::OpenProject(p)),
                Ok(Some(Picked::SaveAs(p))) => self.commands.push(AppCommand::SaveAs(p)),
                Ok(None) => {}
                Err(e) => self.set_status(e, true),
            }
        }
        if let Some(r) = take(&mut self.model_job) {
            match r {
                Ok(loaded) => {
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
                    self.dirty = false;
                    if let Some((path, project)) = loaded.project {
                        self.options = project.options;
                        self.history = project.results.as_ref().map(|r| r.history.clone());
                        self.evaluation = project.results.and_then(|r| r.evaluation);
                        if let Some(d) = project.dataset {
                            self.pending_dataset = Some(d);
                        }
                        self.project_path = Some(path.clone());
                        if !self.ephemeral {
                            self.app_state.opened(&path);
                            let _ = self.app_state.save();
                        }
                    }
                    self.set_status(format!("Opened {name}"), false);
                }
                Err(e) => {
                    self.set_status(e, true);
                    if self.ws.is_none() {
                        self.open_default(ctx);
                    }
                }
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
                    self.data.set_scanned(ctx, s);
                    self.set_status(
                        format!(
                            "{n} images found{}",
                            if skipped > 0 {
                                format!(", {skipped} skipped")
                            } else {
                                String::new()
                            }
                        ),
                        false,
                    );
                }
                Err(e) => {
                    self.data.error = Some(e.clone());
                    self.data.train = None;
                    self.set_status(e, true);
                }
            }
        }
        if let Some(r) = take(&mut self.data.preview_job) {
            match r {
                Ok(imgs) => self.data.set_preview(ctx, imgs),
                Err(e) => self.set_status(e, true),
            }
        }
        if let Some(r) = take(&mut self.export_job) {
            match r {
                Ok(note) => {
                    self.results.export_note = Some(note.clone());
                    self.set_status(note, false);
                }
                Err(e) => self.set_status(format!("Export failed: {e}"), true),
            }
        }
        if let Some(r) = take(&mut self.classify_job) {
            match r {
                Ok(c) => self.results.set_classified(ctx, c),
                Err(e) => self.set_status(format!("Cannot classify: {e}"), true),
            }
        }
        if let Some(r) = take(&mut self.save_job) {
            match r {
                Ok(path) => {
                    self.dirty = false;
                    self.project_path = Some(path.clone());
                    if !self.ephemeral {
                        self.app_state.opened(&path);
                        let _ = self.app_state.save();
                    }
                    self.set_status(format!("Saved {}", path.display()), false);
                    if self.confirm == Some(Pending::Quit) {
                        self.allow_close = true;
                        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                    }
                }
                Err(e) => {
                    self.set_status(format!("Save failed, the previous file is kept: {e}"), true)
                }
            }
        }
        // Training events.
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
        if let Some(r) = ended {
            if let Some(run) = &mut self.run
                && let Some(s) = run.session.take()
            {
                s.join();
            }
            match r {
                Ok(outcome) => {
                    let o = *outcome;
                    self.history = Some(o.history.clone());
                    self.evaluation = o.evaluation.clone();
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
                    self.set_status(
                        format!(
                            "Training {:?}: validation accuracy {}",
                            o.reason,
                            o.evaluation
                                .as_ref()
                                .map_or("n/a".into(), |e| format!("{:.1}%", e.accuracy * 100.0))
                        ),
                        false,
                    );
                    if self.script.is_none() {
                        self.tab = Tab::Results;
                    }
                }
                Err(e) => self.set_status(format!("Training failed: {e}"), true),
            }
        }
        // Autosave unsaved work every minute.
        if self.dirty
            && !self.ephemeral
            && self.last_autosave.elapsed() > Duration::from_secs(60)
            && self.ws.is_some()
        {
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

    fn shortcuts(&mut self, ctx: &egui::Context) {
        let cmd = |m: Modifiers, k: Key| {
            ctx.input_mut(|i| i.consume_shortcut(&KeyboardShortcut::new(m, k)))
        };
        if cmd(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z) || cmd(Modifiers::COMMAND, Key::Y) {
            self.commands.push(AppCommand::Redo);
        }
        if cmd(Modifiers::COMMAND, Key::Z) {
            self.commands.push(AppCommand::Undo);
        }
        if cmd(Modifiers::COMMAND | Modifiers::SHIFT, Key::S) {
            self.commands.push(AppCommand::PickSaveAs);
        }
        if cmd(Modifiers::COMMAND, Key::S) {
            self.commands.push(AppCommand::Save);
        }
        if cmd(Modifiers::COMMAND, Key::O) {
            self.commands.push(AppCommand::PickOpenProject);
        }
        if cmd(Modifiers::COMMAND, Key::E) {
            self.commands.push(AppCommand::PickExport);
        }
        if cmd(Modifiers::COMMAND, Key::Enter) {
            self.commands.push(AppCommand::StartTraining);
        }
        let typing = ctx.egui_wants_keyboard_input();
        if !typing {
            if cmd(Modifiers::NONE, Key::F) {
                self.commands.push(AppCommand::FitView);
            }
            if cmd(Modifiers::NONE, Key::Delete)
                && let Some(n) = self.selected.clone()
            {
                self.commands
                    .push(AppCommand::Edit(Edit::RemoveNode { node: n }));
            }
            if cmd(Modifiers::NONE, Key::L)
                && let Some(ws) = &self.ws
                && let Some(n) = self.selected.as_ref().and_then(|n| ws.network.node(n))
            {
                self.commands.push(AppCommand::Edit(Edit::SetFrozen {
                    node: n.name.clone(),
                    frozen: !n.frozen,
                }));
            }
        }
        // Dropped files: a folder is a dataset, .onnx a network, .ron a project, an image is classified.
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        for p in dropped {
            let name = p.to_string_lossy().to_lowercase();
            let c = if p.is_dir() {
                AppCommand::OpenDataset(p)
            } else if name.ends_with(".onnx") {
                AppCommand::OpenModel(ModelSource::File(p))
            } else if name.ends_with(".ron") {
                AppCommand::OpenProject(p)
            } else {
                AppCommand::Classify(p)
            };
            self.commands.push(c);
        }
    }

    fn menu_ui(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                if ui.button("New project").clicked() {
                    self.commands.push(AppCommand::NewProject);
                }
                if ui.button("Open project…  Ctrl+O").clicked() {
                    self.commands.push(AppCommand::PickOpenProject);
                }
                ui.menu_button("Recent projects", |ui| {
                    for p in self.app_state.recent.clone() {
                        if ui.button(p.display().to_string()).clicked() {
                            self.commands.push(AppCommand::OpenProject(p));
                        }
                    }
                });
                if ui.button("Save  Ctrl+S").clicked() {
                    self.commands.push(AppCommand::Save);
                }
                if ui.button("Save as…  Ctrl+Shift+S").clicked() {
                    self.commands.push(AppCommand::PickSaveAs);
                }
                ui.separator();
                if ui.button("Open network (ONNX)…").clicked() {
                    self.commands.push(AppCommand::PickModel);
                }
                if ui.button("Open the default network").clicked() {
                    self.commands
                        .push(AppCommand::OpenModel(ModelSource::Default));
                }
                if ui.button("Export ONNX…  Ctrl+E").clicked() {
                    self.commands.push(AppCommand::PickExport);
                }
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
                    self.commands.push(AppCommand::Undo);
                }
                if ui
                    .add_enabled(r, egui::Button::new("Redo  Ctrl+Shift+Z"))
                    .clicked()
                {
                    self.commands.push(AppCommand::Redo);
                }
                ui.separator();
                if ui.button("Adapt to dataset").clicked() {
                    self.commands.push(AppCommand::AdaptHead);
                }
                if ui.button("Freeze backbone").clicked() {
                    self.commands.push(AppCommand::FreezeBackbone);
                }
            });
            ui.menu_button("View", |ui| {
                if ui.button("Fit graph to view  F").clicked() {
                    self.commands.push(AppCommand::FitView);
                }
            });
        });
    }

    fn status_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            if let Some(ws) = &self.ws {
                ui.label(format!(
                    "{} · {} layers · {} parameters ({} trainable)",
                    ws.network.name,
                    ws.network.nodes.len(),
                    crate::cli::group(ws.analysis.total_params as u64),
                    crate::cli::group(ws.trainable_params() as u64)
                ));
            }
            if let Some(d) = &self.data.train {
                ui.separator();
                ui.label(format!(
                    "{} images · {} classes",
                    d.samples.len(),
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
            if let Some((text, error, at)) = &self.status
                && at.elapsed() < Duration::from_secs(12)
            {
                ui.separator();
                ui.label(RichText::new(text).color(if *error {
                    theme::ERROR
                } else {
                    ui.visuals().text_color()
                }));
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let recent: Vec<f32> = self.frames.recent.iter().copied().collect();
                ui.label(
                    RichText::new(format!("frame p95 {:.1} ms", FrameStats::p95(&recent)))
                        .small()
                        .weak(),
                );
                if self.dirty {
                    ui.label(RichText::new("● unsaved").small().color(theme::WARNING));
                }
            });
        });
    }

    fn network_tab(&mut self, ui: &mut egui::Ui) {
        let Some(ws) = self.ws.as_ref() else {
            ui.centered_and_justified(|ui| ui.spinner());
            return;
        };
        egui::Panel::right("inspector")
            .resizable(true)
            .default_size(300.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("inspector")
                    .show(ui, |ui| {
                        inspector_panel::inspector_ui(ui, ws, &self.selected, &mut self.commands);
                    });
            });
        let mut status = None;
        egui::Panel::left("library")
            .resizable(true)
            .default_size(210.0)
            .show(ui, |ui| {
                ui.heading("Network");
                let matches_data = self
                    .data
                    .train
                    .as_ref()
                    .is_some_and(|d| d.classes == ws.network.metadata.labels);
                let adapt = ui.add_enabled(
                    self.data.train.is_some(),
                    egui::Button::new(RichText::new("✚ Adapt to dataset").strong()),
                );
                if adapt
                    .on_hover_text(
                        "Replace the final classifier with a new one for the dataset's classes",
                    )
                    .clicked()
                {
                    self.commands.push(AppCommand::AdaptHead);
                }
                if matches_data {
                    ui.label(
                        RichText::new(format!(
                            "✔ head matches the {} classes",
                            ws.network.metadata.labels.len()
                        ))
                        .small()
                        .color(theme::OK),
                    );
                }
                if ui
                    .button("🔒 Freeze backbone")
                    .on_hover_text("Freeze every layer before the head")
                    .clicked()
                {
                    self.commands.push(AppCommand::FreezeBackbone);
                }
                ui.horizontal(|ui| {
                    let r = ui.add(
                        egui::TextEdit::singleline(&mut self.graph.find)
                            .hint_text("find a layer…")
                            .desired_width(130.0),
                    );
                    if (r.lost_focus() && ui.input(|i| i.key_pressed(Key::Enter)))
                        || ui.button("🔍").clicked()
                    {
                        match self.graph.find_node(&ws.network) {
                            Some(n) => {
                                self.commands.push(AppCommand::Select(Some(n.clone())));
                                self.commands.push(AppCommand::Focus(n));
                            }
                            None => status = Some("no layer matches"),
                        }
                    }
                });
                if ui.button("⛶ Fit to view").clicked() {
                    self.commands.push(AppCommand::FitView);
                }
                ui.separator();
                ui.label(RichText::new("Layer library").strong());
                match &self.selected {
                    Some(n) => {
                        ui.label(
                            RichText::new(format!("click to insert after {}", short(n, 22)))
                                .small()
                                .weak(),
                        );
                        egui::ScrollArea::vertical()
                            .id_salt("library")
                            .max_height(260.0)
                            .show(ui, |ui| {
                                graph_panel::library_menu(
                                    ui,
                                    &ws.network,
                                    n,
                                    false,
                                    &mut self.commands,
                                );
                            });
                    }
                    None => {
                        ui.label(
                            RichText::new("Select a layer to insert after it.")
                                .small()
                                .weak(),
                        );
                    }
                }
                ui.separator();
                ui.label(RichText::new("Problems").strong());
                inspector_panel::problems_ui(ui, ws, &mut self.commands);
            });
        egui::CentralPanel::default().show(ui, |ui| {
            graph_panel::graph_ui(ui, &mut self.graph, ws, &self.selected, &mut self.commands);
        });
        if let Some(text) = status {
            self.status = Some((text.into(), false, Instant::now()));
        }
    }

    fn confirm_ui(&mut self, ctx: &egui::Context) {
        let Some(pending) = self.confirm.clone() else {
            return;
        };
        let mut answer = None;
        egui::Modal::new(egui::Id::new("unsaved")).show(ctx, |ui| {
            ui.heading("Unsaved changes");
            ui.label("The project has changes that are not saved.");
            ui.horizontal(|ui| {
                if ui.button("Save").clicked() {
                    answer = Some(0);
                }
                if ui.button("Discard").clicked() {
                    answer = Some(1);
                }
                if ui.button("Cancel").clicked() {
                    answer = Some(2);
                }
            });
        });
        match answer {
            Some(0) => {
                self.commands.push(AppCommand::Save);
                if let Pending::Then(c) = pending {
                    self.confirm = None;
                    self.commands.push(c);
                }
            }
            Some(1) => {
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
            Some(_) => self.confirm = None,
            None => {}
        }
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!(
            "…{}",
            s.chars()
                .skip(s.chars().count() - n + 1)
                .collect::<String>()
        )
    }
}

/// Loads an exported file in tract to prove another runtime reads it.
fn tract_check(bytes: &[u8], c: usize, h: usize, w: usize) -> String {
    use tract_onnx::prelude::*;
    let ok = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .and_then(|m| m.with_input_fact(0, f32::fact([1, c, h, w]).into()))
        .and_then(|m| m.into_optimized())
        .is_ok();
    if ok {
        "An independent runtime (tract) loads it.".into()
    } else {
        "Warning: tract could not load the exported file.".into()
    }
}

impl eframe::App for GraftApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.poll(ctx);
        if ctx.input(|i| i.viewport().close_requested())
            && self.dirty
            && !self.allow_close
            && self.script.is_none()
        {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.confirm = Some(Pending::Quit);
        }
        if let Some(mut s) = self.script.take() {
            s.step(self, ctx);
            if !s.done {
                self.script = Some(s);
            }
        }
        if let Some(mut b) = self.bench.take() {
            let last = self.frames.recent.back().copied();
            b.step(self, ctx, last);
            if !b.done {
                self.bench = Some(b);
            }
        }
        // Keep plots moving while anything runs in the background.
        if self.is_busy() || self.dialog_job.is_some() || self.classify_job.is_some() {
            ctx.request_repaint_after(Duration::from_millis(100));
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let started = Instant::now();
        let ctx = ui.ctx().clone();
        self.shortcuts(&ctx);
        egui::Panel::top("menu").show(ui, |ui| self.menu_ui(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_ui(ui));
        egui::Panel::top("tabs").show(ui, |ui| {
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
        });
        match self.tab {
            Tab::Network => self.network_tab(ui),
            Tab::Data => {
                egui::CentralPanel::default().show(ui, |ui| {
                    let crop = self.ws.as_ref().map(|w| {
                        let p = w.network.preprocess();
                        (p.resize, p.crop)
                    });
                    let scanning = self.scan_job.as_ref().map(|j| j.progress.clone());
                    if data_panel::data_ui(
                        ui,
                        &mut self.data,
                        &mut self.options,
                        crop.unwrap_or((256, 224)),
                        scanning.as_deref(),
                        &mut self.commands,
                    ) {
                        self.dirty = true;
                    }
                });
            }
            Tab::Training => {
                egui::CentralPanel::default().show(ui, |ui| {
                    let ready = self.training_ready();
                    train_panel::train_ui(
                        ui,
                        &mut self.run,
                        &mut self.options,
                        ready,
                        &mut self.commands,
                    );
                });
            }
            Tab::Results => {
                egui::CentralPanel::default().show(ui, |ui| {
                    let trained = self.ws.as_ref().is_some_and(|w| w.trained);
                    results_panel::results_ui(
                        ui,
                        &mut self.results,
                        self.evaluation.as_ref(),
                        trained,
                        &mut self.commands,
                    );
                });
            }
        }
        self.confirm_ui(&ctx);
        self.handle(&ctx);
        let training = self.run.as_ref().is_some_and(TrainRun::is_running);
        self.frames
            .push(started.elapsed().as_secs_f32() * 1000.0, training);
    }
}

/// Opens the window.
pub fn run(start: StartOptions) -> Result<(), String> {
    // Training and decoding run on rayon's threads; the window's thread must win the CPU.
    crate::priority::lower_rayon_pool();
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Graft")
            .with_inner_size([1440.0, 900.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "Graft",
        options,
        Box::new(move |cc| Ok(Box::new(GraftApp::new(&cc.egui_ctx, start)))),
    )
    .map_err(|e| format!("cannot open the window: {e}"))
}

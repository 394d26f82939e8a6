//! The designer window (eframe/egui). Widgets never change the model directly: they push
//! [`AppCommand`]s, handled once per frame in `command.rs`, which is also where undo and redo
//! live. Everything slower than a frame runs in a [`jobs::Job`] or the training
//! [`Session`](crate::train::Session), started in `actions.rs` and collected in
//! `background.rs`. `chrome.rs` draws the frame around the tabs, `shortcuts.rs` the keys and
//! drops, `library_panel.rs` the Network tab.

mod actions;
mod background;
mod boxes_panel;
mod chrome;
mod command;
mod compare_panel;
mod data_panel;
mod detection_results;
mod file_picker;
mod frames;
mod gallery_panel;
mod graph_panel;
mod graph_viewer;
mod inspector_panel;
mod jobs;
pub mod layout;
mod library_panel;
mod results_panel;
mod samples_view;
mod screenshots;
mod shortcuts;
mod sound_panel;
mod theme;
mod thumbnails;
mod train_panel;
mod workspace;

pub use command::AppCommand;
pub use frames::FrameStats;
pub use workspace::describe;

use crate::detect::evaluate::DetectionEvaluation;
use crate::project::{AppState, DatasetSettings, ModelSource};
use crate::train::{Evaluation, History, TrainingOptions};
use actions::Loaded;
use chrome::{Pending, Status};
use data_panel::{DataPanelState, Scanned};
use file_picker::FilePicker;
use graph_panel::GraphPanelState;
use jobs::Job;
use results_panel::{Classified, ResultsPanelState};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use train_panel::TrainRun;
use workspace::Workspace;

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
    /// A data folder to open instead of the sample data.
    pub data: Option<PathBuf>,
    /// Use Graft's in-window file browser, never the desktop's dialog
    /// (`GRAFT_FILE_DIALOG=builtin`; tests).
    pub builtin_file_dialog: bool,
    /// Leave the frame time out of the status bar (it differs every run; snapshot tests).
    pub hide_frame_time: bool,
    /// The gallery's catalogue and cache instead of `GRAFT_GALLERY` / the cache folder (tests).
    pub gallery: Option<(crate::gallery::Catalog, crate::gallery::Place)>,
    /// Image side for networks whose file leaves it open (`--input-size`).
    pub input_size: Option<usize>,
}

/// The embedded sample dataset (Fashion-MNIST, 4 classes).
pub fn sample_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join("sample_data")
}

/// The latest finished training (or the one a project was saved with). `id` changes with
/// every new result, so views that cache per result (the misclassified gallery) can tell
/// two runs apart even when their counts agree.
#[derive(Default)]
struct LastRun {
    id: u64,
    history: Option<History>,
    evaluation: Option<Evaluation>,
    /// A detector's results (then `evaluation` is `None`).
    detection: Option<DetectionEvaluation>,
}

pub struct GraftApp {
    ws: Option<Workspace>,
    pub tab: Tab,
    graph: GraphPanelState,
    data: DataPanelState,
    results: ResultsPanelState,
    options: TrainingOptions,
    run: Option<TrainRun>,
    last_run: LastRun,
    selected: Option<String>,
    project_path: Option<PathBuf>,
    dirty: bool,
    app_state: AppState,
    ephemeral: bool,
    commands: Vec<AppCommand>,
    status: Option<Status>,
    model_job: Option<Job<Loaded>>,
    /// A gallery network being downloaded (then measured), before it opens.
    download_job: Option<Job<PathBuf>>,
    /// How networks are imported (`--input-size`).
    import_options: crate::onnx::ImportOptions,
    gallery: gallery_panel::GalleryPanelState,
    compare: compare_panel::ComparePanelState,
    scan_job: Option<Job<Scanned>>,
    export_job: Option<Job<String>>,
    classify_job: Option<Job<Classified>>,
    save_job: Option<Job<PathBuf>>,
    picker: FilePicker,
    hide_frame_time: bool,
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
            && start.model.is_none()
            && start.data.is_none();
        let model = start.model.clone();
        let mut app = GraftApp {
            ws: None,
            tab: Tab::Network,
            graph: GraphPanelState::default(),
            data: DataPanelState::default(),
            results: ResultsPanelState::default(),
            options: TrainingOptions::default(),
            run: None,
            last_run: LastRun::default(),
            selected: None,
            project_path: None,
            dirty: false,
            app_state,
            ephemeral: start.ephemeral,
            commands: Vec::new(),
            status: None,
            model_job: None,
            download_job: None,
            import_options: crate::onnx::ImportOptions {
                image_size: start.input_size,
                ..Default::default()
            },
            gallery: gallery_panel::GalleryPanelState::with_source(start.gallery.clone()),
            compare: compare_panel::ComparePanelState::default(),
            scan_job: None,
            export_job: None,
            classify_job: None,
            save_job: None,
            picker: FilePicker::new(start.builtin_file_dialog),
            hide_frame_time: start.hide_frame_time,
            pending_dataset: None,
            confirm: None,
            allow_close: false,
            frames: FrameStats::default(),
            last_autosave: Instant::now(),
            script: start.screenshots.map(screenshots::Script::new),
            bench: start
                .frame_bench
                .map(|out| screenshots::FrameBench::new(out, start.data.is_some())),
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
        if let Some(root) = start.data {
            let previous = app.pending_dataset.take().unwrap_or_default();
            app.pending_dataset = Some(crate::project::DatasetSettings {
                root,
                val_root: None,
                layout: Default::default(),
                ..previous
            });
        }
        app
    }

    pub fn workspace(&self) -> Option<&Workspace> {
        self.ws.as_ref()
    }

    /// The graph view's zoom (screen pixels per graph unit), for tests.
    pub fn graph_zoom(&self) -> f32 {
        self.graph.zoom()
    }

    /// Where a rectangle of the graph view (graph units) is on screen, for tests.
    pub fn graph_to_screen(&self, r: egui::Rect) -> egui::Rect {
        self.graph.to_screen(r)
    }

    /// The minimap's screen rectangle, when one is shown (tests).
    pub fn minimap_rect(&self) -> Option<egui::Rect> {
        self.graph.minimap_rect()
    }

    /// The comparison's rows so far (tests).
    pub fn comparison(&self) -> Vec<crate::compare::Row> {
        self.compare.rows().into_iter().map(|(r, _)| r).collect()
    }

    pub fn is_busy(&self) -> bool {
        self.model_job.is_some()
            || self.download_job.is_some()
            || self.compare.job.is_some()
            || self.scan_job.is_some()
            || self.export_job.is_some()
            || self.run.as_ref().is_some_and(TrainRun::is_running)
    }

    pub fn training_iterations(&self) -> usize {
        self.run.as_ref().map_or(0, |r| r.iterations.len())
    }

    pub fn evaluation(&self) -> Option<&Evaluation> {
        self.last_run.evaluation.as_ref()
    }

    /// Whether the open network was trained on sound (takes clips, not images).
    pub fn sound_network(&self) -> bool {
        self.ws
            .as_ref()
            .is_some_and(|w| crate::audio::front::FrontEnd::of(&w.network).is_some())
    }

    /// A detector's results after training (`None` for a classifier).
    pub fn detection(&self) -> Option<&DetectionEvaluation> {
        self.last_run.detection.as_ref()
    }

    /// The latest validation record of the run shown (mAP for a detector).
    pub fn last_validation(&self) -> Option<&crate::train::ValidationRecord> {
        self.run.as_ref()?.validations.last()
    }

    pub fn dataset_classes(&self) -> Option<Vec<String>> {
        self.data.train.as_ref().map(|d| d.classes.clone())
    }

    /// The folder the dataset was read from.
    pub fn dataset_root(&self) -> Option<&std::path::Path> {
        self.data.train.as_ref().map(|d| d.root.as_path())
    }

    /// Whether the project has changes that are not saved.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Whether the unsaved-changes prompt is up.
    pub fn is_asking_to_save(&self) -> bool {
        self.confirm.is_some()
    }

    /// Whether Graft's in-window file browser is open.
    pub fn file_browser_open(&self) -> bool {
        self.picker.is_in_window()
    }

    /// The status line's text, if one is showing.
    pub fn status_text(&self) -> Option<&str> {
        self.status.as_ref().map(|s| s.text.as_str())
    }

    pub fn push(&mut self, c: AppCommand) {
        self.commands.push(c);
    }

    pub fn options_mut(&mut self) -> &mut TrainingOptions {
        &mut self.options
    }

    /// A new result replaces the last one (and gets a new id).
    fn set_evaluation(
        &mut self,
        history: Option<History>,
        evaluation: Option<Evaluation>,
        detection: Option<DetectionEvaluation>,
    ) {
        self.last_run = LastRun {
            id: self.last_run.id + 1,
            history,
            evaluation,
            detection,
        };
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
        if self.is_busy() || self.picker.is_open() || self.classify_job.is_some() {
            ctx.request_repaint_after(Duration::from_millis(100));
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let started = Instant::now();
        let ctx = ui.ctx().clone();
        self.shortcuts(&ctx);
        egui::Panel::top("menu").show(ui, |ui| self.menu_ui(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_ui(ui));
        egui::Panel::top("tabs").show(ui, |ui| self.tabs_ui(ui));
        match self.tab {
            Tab::Network => self.network_tab(ui),
            Tab::Data => {
                egui::CentralPanel::default().show(ui, |ui| {
                    let crop = self.ws.as_ref().and_then(|w| {
                        let (p, _) = w.network.input_preprocess().ok()?;
                        Some((p.resize, p.crop))
                    });
                    let scanning = self.scan_job.as_ref().map(|j| j.progress.clone());
                    // A box or sound dataset's panel is taller than a small window.
                    let changed = egui::ScrollArea::vertical()
                        .id_salt("data-tab")
                        .show(ui, |ui| {
                            data_panel::data_ui(
                                ui,
                                &mut self.data,
                                &mut self.options,
                                crop.unwrap_or((256, 224)),
                                scanning.as_deref(),
                                &mut self.commands,
                            )
                        })
                        .inner;
                    if changed {
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
                    let id = self.last_run.id;
                    let evaluation = self.last_run.evaluation.as_ref().map(|e| (id, e));
                    let detection = self.last_run.detection.as_ref().map(|d| (id, d));
                    let detector = self.ws.as_ref().is_some_and(|w| {
                        crate::graph::edit::DetectionSpec::of(&w.network).is_some()
                    });
                    let sound = self.sound_network();
                    self.dirty |= results_panel::results_ui(
                        ui,
                        &mut self.results,
                        evaluation,
                        detection,
                        detector,
                        sound,
                        &mut self.options.detection,
                        trained,
                        &mut self.commands,
                    );
                });
            }
        }
        gallery_panel::gallery_window(
            &ctx,
            &mut self.gallery,
            self.download_job.is_some() || self.compare.job.is_some(),
            &mut self.compare.selected,
            &mut self.compare.fine_tune,
            &mut self.commands,
        );
        compare_panel::compare_window(&ctx, &mut self.compare, &mut self.commands);
        self.confirm_ui(&ctx);
        self.drop_hint_ui(&ctx);
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

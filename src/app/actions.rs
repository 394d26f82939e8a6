//! What the app does in answer to commands, off the UI thread: open a network or project,
//! scan a dataset, start training, export, classify an image, save. Each starts a
//! [`Job`](super::jobs::Job) (or the training [`Session`]) whose result
//! [`background`](super::background) collects.

use super::file_picker::PickRequest;
use super::jobs::Job;
use super::results_panel::Classified;
use super::train_panel::TrainRun;
use super::{GraftApp, Tab, data_panel, describe};
use crate::classify::Classifier;
use crate::graph::edit::Edit;
use crate::graph::shape::Dim;
use crate::onnx::{self, Imported};
use crate::project::{DatasetSettings, ModelSource, Project, Results};
use crate::train::{Session, TrainJob};
use std::path::PathBuf;

/// A model opened, possibly from a project.
pub(super) struct Loaded {
    pub source: ModelSource,
    pub imported: Imported,
    pub edits: Vec<Edit>,
    pub project: Option<(PathBuf, Project)>,
}

/// What a file dialog was opened for; the chosen path becomes the matching command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Picked {
    Model,
    Dataset,
    Validation,
    NoiseFolder,
    Export,
    Classify,
    OpenProject,
    SaveAs,
}

impl GraftApp {
    pub(super) fn open_default(&mut self, ctx: &egui::Context) {
        self.open_on_sample_data(ctx, ModelSource::Default);
    }

    /// Opens a network with the embedded sample dataset.
    pub(super) fn open_on_sample_data(&mut self, ctx: &egui::Context, source: ModelSource) {
        self.load_model(ctx, source, Vec::new(), None);
        let sample = super::sample_data_dir();
        if sample.is_dir() {
            self.pending_dataset = Some(DatasetSettings {
                root: sample,
                val_split: 0.25,
                ..Default::default()
            });
        }
    }

    /// Imports a network and replays `edits` on it, in the background.
    pub(super) fn load_model(
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
        let options = self.import_options_now();
        self.model_job = Some(Job::spawn(label, ctx, move |_| {
            let mut imported = match &source {
                ModelSource::Default => onnx::import_bytes(crate::DEFAULT_MODEL),
                ModelSource::File(p) => crate::gallery::import_file(p, &options),
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

    /// How the next network is read: for a file that leaves the image size open, the side
    /// chosen (`--input-size`, the inspector's field, the project), else the dataset's
    /// typical side, else 224.
    pub(super) fn import_options_now(&self) -> onnx::ImportOptions {
        let mut options = self.import_options.clone();
        options.image_size = options.image_size.or(self.data.typical_side);
        options
    }

    /// Rebuilds a network whose file leaves the image size open at the side
    /// [`Self::import_options_now`] gives, replaying its edits — unless it is that size
    /// already, or holds trained weights that no file has yet.
    pub(super) fn fit_open_size(&mut self, ctx: &egui::Context) {
        let Some(ws) = &self.ws else { return };
        let Some(side) = self.import_options_now().image_size else {
            return;
        };
        if !ws.network.metadata.open_image_size
            || ws.trained
            || self.model_job.is_some()
            || ws.network.input.shape.get(2) == Some(&side)
        {
            return;
        }
        let (source, edits) = (ws.source.clone(), ws.edits.clone());
        self.load_model(ctx, source, edits, None);
    }

    pub(super) fn open_project(&mut self, ctx: &egui::Context, path: PathBuf) {
        match Project::load(&path) {
            Ok(p) => {
                self.options = p.options.clone();
                self.import_options.image_size = p.input_size;
                self.load_model(ctx, p.model.clone(), p.edits.clone(), Some((path, p)));
            }
            Err(e) => {
                self.set_error(format!("Cannot open {}: {e}", path.display()));
                if self.ws.is_none() && self.model_job.is_none() {
                    self.open_default(ctx);
                }
            }
        }
    }

    /// Opens a file dialog (native, or Graft's own where none can open).
    pub(super) fn pick(&mut self, ctx: &egui::Context, request: PickRequest) {
        self.picker.open(ctx, request);
    }

    pub(super) fn scan(&mut self, ctx: &egui::Context, settings: DatasetSettings) {
        if let Some(j) = &self.scan_job {
            j.progress.cancel();
        }
        self.data.settings = Some(settings.clone());
        self.scan_job = Some(data_panel::scan_job(ctx, settings));
        self.dirty = true;
    }

    /// The edit that puts a detection head on the open network for the box dataset: on the
    /// selected node if it gives a feature map, else on the default feature map; anchors as
    /// the data panel estimates them for the network's input side.
    pub(super) fn detection_head_edit(&mut self) -> Result<Edit, String> {
        let ws = self.ws.as_ref().ok_or("no network open")?;
        let train = self
            .data
            .train
            .as_ref()
            .ok_or("choose a box dataset first")?;
        let view = self
            .data
            .boxes
            .as_mut()
            .ok_or("the dataset has no boxes: choose a YOLO, COCO or Pascal VOC folder")?;
        let side = match ws.network.input.shape[..] {
            [_, _, h, w] if h == w => h,
            ref s => {
                return Err(format!(
                    "a detector takes square images; this network takes {s:?}"
                ));
            }
        };
        let d = &self.options.detection;
        let anchors = view
            .estimate_now((side, d.anchor_total(), d.fit))
            .anchors
            .clone()?
            .sizes;
        let is_map = |n: &str| {
            ws.network
                .nodes
                .iter()
                .find(|x| x.name == n)
                .is_some_and(|x| {
                    x.outputs
                        .first()
                        .and_then(|o| ws.shapes.get(o))
                        .is_some_and(|s| s.len() == 4)
                })
        };
        let node = match self.selected.as_deref().filter(|n| is_map(n)) {
            Some(n) => n.to_string(),
            None => crate::graph::edit::default_feature(&ws.network, &ws.store)
                .ok_or("no stride-16 or stride-32 feature map found; select one in the graph")?,
        };
        Ok(d.head_edit(node, train.classes.clone(), anchors, self.options.seed))
    }

    /// Why training cannot start now, if it cannot.
    pub(super) fn training_ready(&self) -> Result<(), String> {
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
                        Dim::Fixed(n) => *n,
                        Dim::Batch => 1,
                    })
                    .product::<usize>()
            });
        if train.task == crate::data::Task::Detect {
            let spec = crate::graph::edit::DetectionSpec::of(&ws.network);
            if spec.is_none_or(|s| s.classes != train.classes) {
                return Err(format!(
                    "the network has no detection head for the {} classes: press \"Add detection head\"",
                    train.classes.len()
                ));
            }
            return self.options.validate();
        }
        if out != Some(train.classes.len()) || ws.network.metadata.labels != train.classes {
            return Err(format!(
                "the network's head does not match the {} classes: press \"Adapt to dataset\"",
                train.classes.len()
            ));
        }
        self.options.validate()
    }

    pub(super) fn start_training(&mut self, ctx: &egui::Context) -> Result<(), String> {
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

    pub(super) fn export(&mut self, ctx: &egui::Context, path: PathBuf) -> Result<(), String> {
        let ws = self.ws.as_ref().ok_or("no network open")?;
        let (net, store) = (ws.network.clone(), ws.store.clone());
        // A detector's outputs and suppression as set in the Results tab.
        let (decoding, suppression) = (
            self.options.detection.decoding,
            self.options.detection.suppression,
        );
        self.export_job = Some(Job::spawn("Exporting", ctx, move |_| {
            let bytes = onnx::export_with_labels_as(&net, &store, &path, decoding, &suppression)?;
            let check = match crate::verify::tract_loads(&bytes, &net) {
                Ok(()) => "An independent runtime (tract) loads it.".to_string(),
                Err(e) => format!("Warning: {e}"),
            };
            Ok(format!(
                "Exported {} and {}. {check}",
                path.display(),
                onnx::labels_path(&path).display(),
            ))
        }));
        Ok(())
    }

    pub(super) fn classify(&mut self, ctx: &egui::Context, path: PathBuf) -> Result<(), String> {
        let ws = self.ws.as_ref().ok_or("no network open")?;
        let (net, store) = (ws.network.clone(), ws.store.clone());
        self.tab = Tab::Results;
        if crate::graph::edit::DetectionSpec::of(&net).is_some() {
            self.classify_job = Some(Job::spawn("Detecting", ctx, move |_| {
                let mut detector = crate::detect::predict::Detector::new(
                    &net,
                    &store,
                    &burn::tensor::Device::flex(),
                )?;
                // Every box down to the lowest score the window offers, before any NMS: the
                // Results tab applies the project's suppression as it is set, each frame.
                detector.suppression = crate::detect::yolo::Suppression {
                    score_threshold: crate::detect::evaluate::KEPT_SCORE,
                    iou_threshold: 1.0,
                    max_detections: usize::MAX,
                };
                let img = crate::data::preprocess::load_rgb(&path)?;
                let found = detector.detect(&img)?;
                Ok(Classified {
                    image: data_panel::thumbnail(&path, 320),
                    top: Vec::new(),
                    boxes: Some(super::results_panel::Detected {
                        found,
                        size: (img.width(), img.height()),
                        classes: detector.spec().classes.clone(),
                    }),
                    path,
                })
            }));
            return Ok(());
        }
        self.classify_job = Some(Job::spawn("Classifying", ctx, move |_| {
            let classifier = Classifier::new(&net, &store, &burn::tensor::Device::flex())?;
            let prediction = classifier.classify_one(&path)?;
            // A sound file is shown as the spectrogram of the clip the network heard.
            let image = match crate::audio::front::FrontEnd::of(&net) {
                Some(front) => super::sound_panel::spectrogram_thumbnail(
                    &crate::data::Sample {
                        path: path.clone(),
                        label: 0,
                        objects: Vec::new(),
                        start: Some(0.0),
                    },
                    &front.settings,
                ),
                None => data_panel::thumbnail(&path, 96),
            };
            Ok(Classified {
                image,
                top: classifier.top(&prediction, 5),
                boxes: None,
                path,
            })
        }));
        Ok(())
    }

    /// The project as it stands (what Save and autosave write).
    pub fn project(&self) -> Project {
        let ws = self.ws.as_ref();
        Project {
            model: ws.map_or(ModelSource::Default, |w| w.source.clone()),
            edits: ws.map(|w| w.edits.clone()).unwrap_or_default(),
            dataset: self.data.settings.clone(),
            options: self.options.clone(),
            results: self.last_run.history.clone().map(|history| Results {
                history,
                evaluation: self.last_run.evaluation.clone(),
                detection: self.last_run.detection.clone(),
            }),
            comparison: self.compare.rows(),
            input_size: self.import_options.image_size,
            ..Project::default()
        }
    }

    pub(super) fn save(&mut self, ctx: &egui::Context, path: PathBuf) -> Result<(), String> {
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
}

//! The `.graft.ron` project file: where the network came from, the edits made to it, the
//! dataset, the training options and the last results. Saved atomically: a failed save says
//! why and keeps the old file.

use crate::detect::dataset::BoxFormat;
use crate::graph::edit::Edit;
use crate::train::{Evaluation, History, TrainingOptions};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const EXTENSION: &str = "graft.ron";
const VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ModelSource {
    /// The embedded EfficientNet-Lite0.
    Default,
    File(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatasetSettings {
    pub root: PathBuf,
    /// A second folder for validation; else `val_split` of the training folder.
    pub val_root: Option<PathBuf>,
    pub val_split: f32,
    /// How the folders are read: found by looking, or as the user chose.
    pub layout: Layout,
    /// Sound folders: how clips are cut and turned into spectrograms.
    pub audio: crate::audio::front::AudioSettings,
}

/// How a dataset folder is read (the Data tab's "Layout"; `graft train --format` on the
/// command line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// A box dataset if the folder has one's files (data.yaml, an instances*.json,
    /// Annotations/), else sound clips if most files are sounds, else images; one
    /// sub-folder per class either way.
    #[default]
    Automatic,
    /// One sub-folder of images per class: classification.
    Classes,
    /// One sub-folder of sound clips per class: classification of spectrograms.
    Sounds,
    /// A box dataset in this layout: object detection.
    Boxes(crate::detect::dataset::BoxFormat),
}

impl Layout {
    pub const ALL: [Layout; 6] = [
        Layout::Automatic,
        Layout::Classes,
        Layout::Sounds,
        Layout::Boxes(BoxFormat::Yolo),
        Layout::Boxes(BoxFormat::Coco),
        Layout::Boxes(BoxFormat::Voc),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Layout::Automatic => "automatic",
            Layout::Classes => "images, folder per class",
            Layout::Sounds => "sound clips, folder per class",
            Layout::Boxes(f) => f.name(),
        }
    }

    /// The layout `root` is read in: this one, or for [`Layout::Automatic`] the one its files
    /// show.
    pub fn resolve(self, root: &std::path::Path) -> Layout {
        if self != Layout::Automatic {
            return self;
        }
        if let Some(f) = crate::detect::dataset::detect_format(root) {
            Layout::Boxes(f)
        } else if crate::audio::clips::is_sound_folder(root) {
            Layout::Sounds
        } else {
            Layout::Classes
        }
    }
}

impl Default for DatasetSettings {
    fn default() -> Self {
        Self {
            root: PathBuf::new(),
            val_root: None,
            val_split: 0.2,
            layout: Layout::Automatic,
            audio: Default::default(),
        }
    }
}

/// The last training run's results.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub history: History,
    pub evaluation: Option<Evaluation>,
    /// A detector's results (box datasets).
    #[serde(default)]
    pub detection: Option<crate::detect::evaluate::DetectionEvaluation>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Project {
    pub version: u32,
    pub model: ModelSource,
    /// Applied in order to the model as read from `model`.
    pub edits: Vec<Edit>,
    pub dataset: Option<DatasetSettings>,
    pub options: TrainingOptions,
    pub results: Option<Results>,
    /// The last comparison of backbones: a row per network and its retrained file.
    pub comparison: Vec<(crate::compare::Row, PathBuf)>,
    /// The image side chosen for a network whose file leaves it open (else the dataset's
    /// typical side is used).
    pub input_size: Option<usize>,
}

impl Default for Project {
    fn default() -> Self {
        Self {
            version: VERSION,
            model: ModelSource::Default,
            edits: Vec::new(),
            dataset: None,
            options: TrainingOptions::default(),
            results: None,
            comparison: Vec::new(),
            input_size: None,
        }
    }
}

impl Project {
    pub fn to_ron(&self) -> Result<String, String> {
        ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default())
            .map_err(|e| format!("cannot encode the project: {e}"))
    }

    pub fn from_ron(text: &str) -> Result<Self, String> {
        let p: Project = ron::from_str(text).map_err(|e| format!("not a Graft project: {e}"))?;
        if p.version > VERSION {
            return Err(format!(
                "the project was saved by a newer Graft (format {})",
                p.version
            ));
        }
        Ok(p)
    }

    pub fn save(&self, path: &Path) -> Result<(), String> {
        crate::files::write_atomic(path, self.to_ron()?.as_bytes())
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_ron(&text)
    }

    /// The file next to a project that holds its trained network.
    pub fn weights_path(project: &Path) -> PathBuf {
        let name = project
            .file_name()
            .map(|n| n.to_string_lossy().replace(".graft.ron", ""))
            .unwrap_or_default();
        project.with_file_name(format!("{name}.trained.onnx"))
    }
}

/// What the app remembers between starts (not part of any project).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppState {
    pub recent: Vec<PathBuf>,
    pub last: Option<PathBuf>,
}

impl AppState {
    pub fn path() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(base.join("graft").join("state.ron"))
    }

    pub fn load() -> Self {
        Self::path()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| ron::from_str(&t).ok())
            .unwrap_or_default()
    }

    pub fn save(&self) -> Result<(), String> {
        let path = Self::path().ok_or("no configuration folder")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let text = ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default())
            .map_err(|e| e.to_string())?;
        crate::files::write_atomic(&path, text.as_bytes())
    }

    pub fn opened(&mut self, path: &Path) {
        self.recent.retain(|p| p != path);
        self.recent.insert(0, path.to_owned());
        self.recent.truncate(10);
        self.last = Some(path.to_owned());
    }

    /// Where unsaved work is kept between autosaves.
    pub fn autosave_path() -> Option<PathBuf> {
        Self::path().map(|p| p.with_file_name(format!("autosave.{EXTENSION}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_round_trip_and_a_failed_save_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.graft.ron");
        let p = Project {
            edits: vec![
                Edit::FreezeUntil {
                    node: "/conv".into(),
                },
                Edit::AdaptHead {
                    classes: vec!["a".into(), "b".into()],
                    seed: 1,
                },
            ],
            dataset: Some(DatasetSettings {
                root: "/data".into(),
                ..Default::default()
            }),
            comparison: vec![(
                crate::compare::Row {
                    model: "ResNet-18".into(),
                    validation_accuracy: 0.5,
                    validation_loss: 1.25,
                    per_class_accuracy: vec![("a".into(), 0.75), ("b".into(), 0.25)],
                    train_seconds: 9.5,
                    inference_images_per_s: 21.5,
                    params: 11_000_000,
                    file_bytes: 44_000_000,
                    pareto: true,
                },
                "/cache/compare/resnet18.onnx".into(),
            )],
            ..Project::default()
        };
        p.save(&path).unwrap();
        assert_eq!(Project::load(&path).unwrap(), p);
        // Saving into a folder that does not exist fails with a message, and nothing is lost.
        let bad = dir.path().join("missing/p.graft.ron");
        assert!(p.save(&bad).unwrap_err().contains("cannot create"));
        assert_eq!(Project::load(&path).unwrap(), p);
        assert!(
            Project::from_ron("(version: 99)")
                .unwrap_err()
                .contains("newer")
        );
        assert_eq!(
            Project::weights_path(&path),
            dir.path().join("p.trained.onnx")
        );
    }
}

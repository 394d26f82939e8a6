//! The catalogue: one `Entry` per pretrained network, read from RON.

use crate::graph::Preprocess;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How the file lays out its input image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    NCHW,
    NHWC,
}

/// A pretrained network: where its file comes from and what its source says about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// What the command line and the window call it (`googlenet`).
    pub name: String,
    /// How it is shown (`GoogLeNet`).
    pub title: String,
    pub family: String,
    /// The file name in the cache and on a mirror.
    pub file: String,
    /// Shipped inside Graft (no download).
    #[serde(default)]
    pub embedded: bool,
    /// Tried in order; `GRAFT_MODEL_MIRROR` replaces them all.
    pub urls: Vec<String>,
    /// Of the file, lowercase hex; a download that does not match is deleted.
    pub sha256: String,
    pub bytes: u64,
    pub opset: u32,
    pub licence: String,
    pub source: String,
    pub layout: Layout,
    /// Channels, height, width.
    pub input: (usize, usize, usize),
    /// `None`: the file's own metadata says.
    pub preprocess: Option<Preprocess>,
    /// Where the class names come from (`ImageNet-1k`).
    pub labels: String,
    /// The source's published ImageNet top-1, in percent.
    pub top1: Option<f32>,
    pub note: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub entries: Vec<Entry>,
}

/// The catalogue shipped with Graft.
const BUILTIN: &str = include_str!("../../assets/gallery.ron");

impl Catalog {
    pub fn builtin() -> Result<Self, String> {
        Self::parse(BUILTIN, "the built-in gallery")
    }

    /// The built-in catalogue, or the file `GRAFT_GALLERY` names (a site's own list of
    /// networks, or a test's).
    pub fn load() -> Result<Self, String> {
        match std::env::var_os("GRAFT_GALLERY") {
            Some(p) => {
                let path = PathBuf::from(p);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("GRAFT_GALLERY {}: {e}", path.display()))?;
                Self::parse(&text, &path.display().to_string())
            }
            None => Self::builtin(),
        }
    }

    pub fn parse(text: &str, what: &str) -> Result<Self, String> {
        let catalog: Catalog = ron::from_str(text).map_err(|e| format!("{what}: {e}"))?;
        for e in &catalog.entries {
            let hex = e.sha256.len() == 64 && e.sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !e.embedded && !hex {
                return Err(format!("{what}: {}: sha256 is not 64 hex digits", e.name));
            }
            if e.file.contains('/') || e.file.contains('\\') || e.file.starts_with('.') {
                return Err(format!("{what}: {}: file must be a plain name", e.name));
            }
        }
        Ok(catalog)
    }

    /// By name or title, ignoring case.
    pub fn find(&self, name: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(name) || e.title.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_gallery_names_every_network_the_issue_asks_for() {
        let c = Catalog::builtin().unwrap();
        for name in [
            "googlenet",
            "vgg16",
            "vgg19",
            "squeezenet1.0",
            "squeezenet1.1",
            "mobilenetv2",
            "shufflenetv2",
            "resnet18",
            "resnet50",
            "alexnet",
            "densenet121",
            "efficientnet-lite4",
            "efficientnet-lite0",
        ] {
            let e = c.find(name).unwrap_or_else(|| panic!("{name} missing"));
            assert!(
                e.embedded || (!e.urls.is_empty() && e.bytes > 1_000_000),
                "{name}"
            );
            assert!(e.top1.is_some_and(|t| (50.0..90.0).contains(&t)), "{name}");
        }
        assert!(c.entries.len() >= 13);
        // Names are unique, and so are files.
        let mut names: Vec<&str> = c.entries.iter().map(|e| e.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), c.entries.len());
        // Caffe-era entries feed BGR; torchvision-style ones RGB.
        assert!(
            c.find("GoogLeNet")
                .unwrap()
                .preprocess
                .as_ref()
                .unwrap()
                .bgr
        );
        assert!(!c.find("resnet18").unwrap().preprocess.as_ref().unwrap().bgr);
        assert_eq!(c.find("efficientnet-lite4").unwrap().layout, Layout::NHWC);
    }

    #[test]
    fn a_bad_catalogue_is_refused_with_its_reason() {
        let entry = |sha: &str, file: &str| {
            format!(
                r#"(entries: [(name: "x", title: "X", family: "F", file: "{file}", urls: [],
                sha256: "{sha}", bytes: 1, opset: 13, licence: "", source: "",
                layout: NCHW, input: (3, 8, 8), preprocess: None, labels: "", top1: None,
                note: "")])"#
            )
        };
        let ok = "a".repeat(64);
        assert!(Catalog::parse(&entry(&ok, "x.onnx"), "t").is_ok());
        let e = Catalog::parse(&entry("abc", "x.onnx"), "t").unwrap_err();
        assert!(e.contains("sha256"), "{e}");
        let e = Catalog::parse(&entry(&ok, "../x.onnx"), "t").unwrap_err();
        assert!(e.contains("plain name"), "{e}");
        assert!(Catalog::parse("(entries: [", "t").is_err());
    }
}

//! The gallery: the pretrained networks Graft offers (`assets/gallery.ron`, written by
//! `tools/gallery_from_zoo.py` from the ONNX Model Zoo's manifest and READMEs), the local
//! cache they are downloaded into, and opening one by name.
//!
//! A name works wherever a file path does (`graft inspect googlenet`, `--model resnet18`):
//! `open` downloads it first if needed, then gives it the catalogue's preprocessing and class
//! names when the file itself carries none.

mod catalog;
mod download;
pub mod facts;

pub use catalog::{Catalog, Entry, Layout};
pub use download::{
    DownloadError, Place, Progress, cache_dir, cache_path, cached, pull, sha256_of,
};

use crate::onnx::{self, Imported};
use std::path::Path;
use std::sync::atomic::AtomicBool;

/// Opens a gallery entry: downloads it when it is not cached (reporting progress), imports
/// it, and fills in what the catalogue knows and the file does not say.
pub fn open(
    entry: &Entry,
    place: &Place,
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<Imported, String> {
    let path = pull(entry, place, on_progress, cancel).map_err(|e| e.to_string())?;
    let mut imported = onnx::import(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    complete(entry, &mut imported);
    Ok(imported)
}

/// The catalogue's preprocessing and class names, where the file has none of its own.
pub fn complete(entry: &Entry, imported: &mut Imported) {
    let meta = &mut imported.network.metadata;
    if meta.preprocess.is_none() {
        meta.preprocess = entry.preprocess.clone();
    }
    // ImageNet's names only for a network that still has ImageNet's 1000 outputs.
    let (shapes, _) = crate::graph::shape::infer(&imported.network, &imported.store, 1);
    let classes = imported
        .network
        .outputs
        .first()
        .and_then(|o| shapes.get(o))
        .map(|d| d.iter().skip(1).product::<usize>());
    let meta = &mut imported.network.metadata;
    if meta.labels.is_empty() && entry.labels == "ImageNet-1k" && classes == Some(1000) {
        meta.labels = imagenet_labels();
    }
}

/// ImageNet-1k's class names in the standard (ILSVRC-2012 synset) order, from the embedded
/// network's metadata.
pub fn imagenet_labels() -> Vec<String> {
    onnx::import_bytes(crate::DEFAULT_MODEL)
        .map(|i| i.network.metadata.labels)
        .unwrap_or_default()
}

/// Imports a file; a file from the gallery's cache also gets what its catalogue entry knows
/// (preprocessing, class names), as when it was opened by name.
pub fn import_file(
    path: &Path,
    options: &onnx::ImportOptions,
) -> Result<Imported, onnx::ImportError> {
    let mut imported = onnx::import_with(path, options)?;
    if let Some(entry) = entry_of_cached_file(path) {
        complete(&entry, &mut imported);
    }
    Ok(imported)
}

fn entry_of_cached_file(path: &Path) -> Option<Entry> {
    // Only looks: opening a file must not create the cache folder.
    let dir = std::fs::canonicalize(cache_path().ok()?).ok()?;
    let file = std::fs::canonicalize(path).ok()?;
    if file.parent()? != dir {
        return None;
    }
    let name = file.file_name()?.to_str()?;
    Catalog::load()
        .ok()?
        .entries
        .into_iter()
        .find(|e| e.file == name)
}

/// The catalogue entry a command-line model argument names, when it is not a file.
pub fn entry_for(arg: &Path) -> Result<Option<Entry>, String> {
    if arg.exists() {
        return Ok(None);
    }
    let Some(name) = arg.to_str() else {
        return Ok(None);
    };
    Ok(Catalog::load()?.find(name).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_imagenet_file_gets_the_catalogues_names_and_preprocessing() {
        let mut imported = onnx::import_bytes(crate::DEFAULT_MODEL).unwrap();
        let names = imported.network.metadata.labels.clone();
        assert_eq!(names.len(), 1000);
        imported.network.metadata.labels.clear();
        imported.network.metadata.preprocess = None;
        let catalog = Catalog::builtin().unwrap();
        let entry = catalog.find("googlenet").unwrap();
        complete(entry, &mut imported);
        assert_eq!(imported.network.metadata.labels, names);
        assert_eq!(imported.network.metadata.preprocess, entry.preprocess);
        // What the file says wins over the catalogue.
        let mut own = onnx::import_bytes(crate::DEFAULT_MODEL).unwrap();
        let before = own.network.metadata.clone();
        complete(entry, &mut own);
        assert_eq!(own.network.metadata, before);
    }
}

//! Box datasets in the three layouts people have, read into one form, with a report of what
//! was wrong instead of a crash:
//! - **YOLO**: `data.yaml` (class `names`, `train`/`val` image folders) or `classes.txt`,
//!   `images/…` and a `labels/…/NAME.txt` per image: `class cx cy w h` in 0..1 (polygon lines
//!   of segmentation sets are read as their bounding box).
//! - **COCO**: an `instances*.json` (`images`, `annotations` with `[x, y, w, h]` in pixels,
//!   `categories`); crowd regions are kept as boxes that neither count nor penalise.
//! - **Pascal VOC**: `Annotations/*.xml` next to `JPEGImages/`; `difficult` objects likewise.
//!
//! Boxes reaching outside their image are clipped and listed; boxes with no area left are
//! dropped and listed; images without boxes are kept (they teach "nothing here") and listed;
//! images whose header cannot be read are skipped and listed; a class id or name the dataset
//! does not declare is an error naming every file that uses it.

use super::boxes::BBox;
use crate::data::folder::IMAGE_EXTENSIONS;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BoxFormat {
    Yolo,
    Coco,
    Voc,
}

impl BoxFormat {
    pub fn name(self) -> &'static str {
        match self {
            BoxFormat::Yolo => "YOLO",
            BoxFormat::Coco => "COCO",
            BoxFormat::Voc => "Pascal VOC",
        }
    }
}

/// One object in an image.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Object {
    pub class: usize,
    pub bbox: BBox,
    /// VOC "difficult" or a COCO crowd region: not counted in AP either way.
    pub difficult: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoxImage {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    pub objects: Vec<Object>,
}

/// Something the reader fixed or skipped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Finding {
    Clipped { path: PathBuf, object: usize },
    ZeroArea { path: PathBuf, object: usize },
    NoObjects { path: PathBuf },
    Unreadable { path: PathBuf, reason: String },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Clipped { path, object } => {
                write!(
                    f,
                    "{}: box {object} reaches outside the image; clipped",
                    path.display()
                )
            }
            Finding::ZeroArea { path, object } => {
                write!(f, "{}: box {object} has no area; dropped", path.display())
            }
            Finding::NoObjects { path } => {
                write!(
                    f,
                    "{}: no boxes (used as an image without objects)",
                    path.display()
                )
            }
            Finding::Unreadable { path, reason } => {
                write!(f, "{}: skipped, {reason}", path.display())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BoxError {
    #[error(
        "{0} is not a box dataset Graft knows: expected data.yaml or classes.txt with images/ and \
         labels/ (YOLO), an instances*.json (COCO), or Annotations/ with JPEGImages/ (Pascal VOC)"
    )]
    Unrecognised(PathBuf),
    #[error("cannot read {path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error(
        "unknown class {class} (the dataset declares {declared}) in {}",
        list(files)
    )]
    UnknownClass {
        class: String,
        declared: usize,
        files: Vec<PathBuf>,
    },
    #[error("{0} has no images")]
    NoImages(PathBuf),
    #[error("cancelled")]
    Cancelled,
}

/// Progress and cancelling while a box dataset is read (each image's header is read: the
/// window's scan job shows how far it is and can stop it).
#[derive(Clone, Copy)]
pub struct Reading<'a> {
    /// Called with (images done, images in all).
    pub progress: &'a (dyn Fn(usize, usize) + Sync),
    pub cancel: &'a AtomicBool,
}

fn no_progress(_: usize, _: usize) {}
static NEVER_CANCELLED: AtomicBool = AtomicBool::new(false);

impl Reading<'static> {
    /// Neither progress nor cancelling (the command line, tests).
    pub fn quiet() -> Self {
        Reading {
            progress: &no_progress,
            cancel: &NEVER_CANCELLED,
        }
    }
}

impl Reading<'_> {
    fn step(&self, done: usize, total: usize) -> Result<(), BoxError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(BoxError::Cancelled);
        }
        (self.progress)(done, total);
        Ok(())
    }
}

fn list(files: &[PathBuf]) -> String {
    let shown: Vec<String> = files
        .iter()
        .take(5)
        .map(|p| p.display().to_string())
        .collect();
    if files.len() > 5 {
        format!("{} and {} more", shown.join(", "), files.len() - 5)
    } else {
        shown.join(", ")
    }
}

/// A box dataset as read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoxDataset {
    pub root: PathBuf,
    pub format: BoxFormat,
    pub classes: Vec<String>,
    pub images: Vec<BoxImage>,
    pub findings: Vec<Finding>,
    /// The validation images the dataset itself names (YOLO's `val:`), if any.
    pub validation_dir: Option<PathBuf>,
}

impl BoxDataset {
    /// Boxes per class.
    pub fn counts(&self) -> Vec<usize> {
        let mut n = vec![0; self.classes.len()];
        for o in self.images.iter().flat_map(|i| &i.objects) {
            n[o.class] += 1;
        }
        n
    }

    /// The images as a training set ([`Task::Detect`](crate::data::Task)): each sample
    /// carries its objects; images that did not decode are its skipped files.
    pub fn to_dataset(&self) -> crate::data::Dataset {
        crate::data::Dataset {
            root: self.root.clone(),
            classes: self.classes.clone(),
            samples: self
                .images
                .iter()
                .map(|i| crate::data::Sample {
                    path: i.path.clone(),
                    label: 0,
                    objects: i.objects.clone(),
                    start: None,
                })
                .collect(),
            skipped: self
                .findings
                .iter()
                .filter_map(|f| match f {
                    Finding::Unreadable { path, reason } => Some(crate::data::Skipped {
                        path: path.clone(),
                        reason: reason.clone(),
                    }),
                    _ => None,
                })
                .collect(),
            task: crate::data::Task::Detect,
            ..Default::default()
        }
    }

    /// Every box's (width, height) in pixels (for anchors and the size histogram).
    pub fn box_sizes(&self) -> Vec<(f32, f32)> {
        self.images
            .iter()
            .flat_map(|i| &i.objects)
            .map(|o| (o.bbox.width(), o.bbox.height()))
            .collect()
    }
}

/// Which layout `root` is in, if any.
pub fn detect_format(root: &Path) -> Option<BoxFormat> {
    // VOC first: its folder may also hold a classes.txt, which alone would look like YOLO.
    if root.join("Annotations").is_dir() {
        Some(BoxFormat::Voc)
    } else if coco_json(root).is_some() {
        Some(BoxFormat::Coco)
    } else if yolo_names_file(root).is_some() {
        Some(BoxFormat::Yolo)
    } else {
        None
    }
}

/// Reads a box dataset, in `format` or the one found.
pub fn load(root: &Path, format: Option<BoxFormat>) -> Result<BoxDataset, BoxError> {
    read(root, format, Reading::quiet())
}

/// [`load`] with progress and cancelling.
pub fn read(root: &Path, format: Option<BoxFormat>, r: Reading) -> Result<BoxDataset, BoxError> {
    let format = format
        .or_else(|| detect_format(root))
        .ok_or_else(|| BoxError::Unrecognised(root.to_path_buf()))?;
    let mut ds = match format {
        BoxFormat::Yolo => yolo(root, r)?,
        BoxFormat::Coco => coco(root, r)?,
        BoxFormat::Voc => voc(root, r)?,
    };
    if ds.images.is_empty() {
        return Err(BoxError::NoImages(root.to_path_buf()));
    }
    ds.images.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(ds)
}

fn read_text(path: &Path) -> Result<String, BoxError> {
    std::fs::read_to_string(path).map_err(|e| BoxError::Unreadable {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn malformed(path: &Path, message: impl Into<String>) -> BoxError {
    BoxError::Malformed {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Checks each raw box against its image: clipped when it reaches out, dropped without area.
fn finish_image(
    path: PathBuf,
    (width, height): (u32, u32),
    raw: Vec<Object>,
    findings: &mut Vec<Finding>,
) -> BoxImage {
    let mut objects = Vec::with_capacity(raw.len());
    for (i, mut o) in raw.into_iter().enumerate() {
        let c = o.bbox.clipped(width as f32, height as f32);
        if c.area() <= 0.0 {
            findings.push(Finding::ZeroArea {
                path: path.clone(),
                object: i,
            });
            continue;
        }
        if c != o.bbox {
            findings.push(Finding::Clipped {
                path: path.clone(),
                object: i,
            });
            o.bbox = c;
        }
        objects.push(o);
    }
    if objects.is_empty() {
        findings.push(Finding::NoObjects { path: path.clone() });
    }
    BoxImage {
        path,
        width,
        height,
        objects,
    }
}

/// An image's size from its header; one that cannot be read is listed and skipped.
fn image_size(path: &Path, findings: &mut Vec<Finding>) -> Option<(u32, u32)> {
    match image::image_dimensions(path) {
        Ok(s) => Some(s),
        Err(e) => {
            findings.push(Finding::Unreadable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
            None
        }
    }
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn images_under(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), BoxError> {
    let entries = std::fs::read_dir(dir).map_err(|e| BoxError::Unreadable {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            images_under(&p, out)?;
        } else if is_image(&p) {
            out.push(p);
        }
    }
    Ok(())
}

// ---- YOLO ------------------------------------------------------------------------------

fn yolo_names_file(root: &Path) -> Option<PathBuf> {
    ["data.yaml", "dataset.yaml", "classes.txt", "obj.names"]
        .iter()
        .map(|f| root.join(f))
        .find(|p| p.is_file())
}

fn yolo(root: &Path, r: Reading) -> Result<BoxDataset, BoxError> {
    let file = yolo_names_file(root).ok_or_else(|| BoxError::Unrecognised(root.to_path_buf()))?;
    let text = read_text(&file)?;
    let (classes, train, val) = if file.extension().is_some_and(|e| e == "yaml") {
        yolo_yaml(&file, &text, root)?
    } else {
        let names = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from);
        (names.collect(), root.join("images"), None)
    };
    let (images, findings) = yolo_images(&train, &classes, r)?;
    Ok(BoxDataset {
        root: root.to_path_buf(),
        format: BoxFormat::Yolo,
        classes,
        images,
        findings,
        validation_dir: val,
    })
}

/// The validation images a dataset names itself (YOLO's `val:` folder), read with the
/// training set's classes; `None` when it names none.
pub fn load_validation(ds: &BoxDataset, r: Reading) -> Result<Option<BoxDataset>, BoxError> {
    let Some(dir) = &ds.validation_dir else {
        return Ok(None);
    };
    let (mut images, findings) = match ds.format {
        BoxFormat::Yolo => yolo_images(dir, &ds.classes, r)?,
        // COCO and VOC keep validation in another file or folder: a second dataset.
        _ => return Ok(None),
    };
    if images.is_empty() {
        return Err(BoxError::NoImages(dir.clone()));
    }
    images.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Some(BoxDataset {
        root: dir.clone(),
        format: ds.format,
        classes: ds.classes.clone(),
        images,
        findings,
        validation_dir: None,
    }))
}

/// The images under `dir` and their YOLO label files, for `classes`.
fn yolo_images(
    dir: &Path,
    classes: &[String],
    r: Reading,
) -> Result<(Vec<BoxImage>, Vec<Finding>), BoxError> {
    let mut paths = Vec::new();
    images_under(dir, &mut paths)?;
    let mut findings = Vec::new();
    let mut unknown: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut images = Vec::new();
    let total = paths.len();
    for (i, path) in paths.into_iter().enumerate() {
        r.step(i, total)?;
        let Some(size) = image_size(&path, &mut findings) else {
            continue;
        };
        let label = yolo_label_path(&path);
        let text = match std::fs::read_to_string(&label) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(BoxError::Unreadable {
                    path: label,
                    message: e.to_string(),
                });
            }
        };
        let mut raw = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.is_empty() {
                continue;
            }
            let bad = || malformed(&label, format!("line {}: '{line}'", n + 1));
            let class: usize = fields[0].parse().map_err(|_| bad())?;
            let v: Vec<f32> = fields[1..]
                .iter()
                .map(|f| f.parse::<f32>().map_err(|_| bad()))
                .collect::<Result<_, _>>()?;
            let (w, h) = (size.0 as f32, size.1 as f32);
            let bbox = match v.len() {
                4 => BBox::from_centre(v[0] * w, v[1] * h, v[2] * w, v[3] * h),
                // A segmentation polygon: x y pairs.
                n if n >= 6 && n % 2 == 0 => {
                    let xs = v.iter().step_by(2).map(|x| x * w);
                    let ys = v.iter().skip(1).step_by(2).map(|y| y * h);
                    let (x0, x1) = xs.fold((f32::MAX, f32::MIN), |(a, b), x| (a.min(x), b.max(x)));
                    let (y0, y1) = ys.fold((f32::MAX, f32::MIN), |(a, b), y| (a.min(y), b.max(y)));
                    BBox::new(x0, y0, x1, y1)
                }
                _ => return Err(bad()),
            };
            if class >= classes.len() {
                unknown
                    .entry(class.to_string())
                    .or_default()
                    .push(label.clone());
                continue;
            }
            raw.push(Object {
                class,
                bbox,
                difficult: false,
            });
        }
        images.push(finish_image(path, size, raw, &mut findings));
    }
    if let Some((class, files)) = unknown.into_iter().next() {
        return Err(BoxError::UnknownClass {
            class,
            declared: classes.len(),
            files,
        });
    }
    Ok((images, findings))
}

/// `names` (a list, or a map from id to name), and the `train`/`val` image folders
/// (relative to `path:`, else to the file's folder).
fn yolo_yaml(
    file: &Path,
    text: &str,
    root: &Path,
) -> Result<(Vec<String>, PathBuf, Option<PathBuf>), BoxError> {
    use yaml_rust2::{Yaml, YamlLoader};
    let docs = YamlLoader::load_from_str(text).map_err(|e| malformed(file, e.to_string()))?;
    let doc = docs.first().ok_or_else(|| malformed(file, "empty"))?;
    let names: Vec<String> = match &doc["names"] {
        Yaml::Array(a) => a.iter().map(yaml_string).collect(),
        Yaml::Hash(h) => {
            let mut pairs: Vec<(i64, String)> = h
                .iter()
                .map(|(k, v)| (k.as_i64().unwrap_or(i64::MAX), yaml_string(v)))
                .collect();
            pairs.sort();
            if pairs.iter().enumerate().any(|(i, (k, _))| *k != i as i64) {
                return Err(malformed(file, "names: ids must be 0, 1, 2, …"));
            }
            pairs.into_iter().map(|(_, n)| n).collect()
        }
        _ => return Err(malformed(file, "no 'names' list of classes")),
    };
    if names.is_empty() {
        return Err(malformed(file, "'names' is empty"));
    }
    let base = match doc["path"].as_str() {
        Some(p) if Path::new(p).is_absolute() => PathBuf::from(p),
        Some(p) => root.join(p),
        None => root.to_path_buf(),
    };
    let dir = |key: &str| doc[key].as_str().map(|p| base.join(p));
    let train = dir("train").unwrap_or_else(|| root.join("images"));
    Ok((names, train, dir("val")))
}

fn yaml_string(y: &yaml_rust2::Yaml) -> String {
    match y {
        yaml_rust2::Yaml::String(s) => s.clone(),
        yaml_rust2::Yaml::Integer(i) => i.to_string(),
        yaml_rust2::Yaml::Real(r) => r.clone(),
        yaml_rust2::Yaml::Boolean(b) => b.to_string(),
        _ => String::new(),
    }
}

/// `…/images/…/x.jpg` → `…/labels/…/x.txt` (the last `images` folder), else `x.txt` beside it.
fn yolo_label_path(image: &Path) -> PathBuf {
    let parts: Vec<_> = image.components().collect();
    let txt = image.with_extension("txt");
    let Some(i) = parts.iter().rposition(|c| c.as_os_str() == "images") else {
        return txt;
    };
    let mut p = PathBuf::new();
    for (k, c) in parts.iter().enumerate() {
        p.push(if k == i {
            "labels".as_ref()
        } else {
            c.as_os_str()
        });
    }
    p.with_extension("txt")
}

// ---- COCO ------------------------------------------------------------------------------

fn coco_json(root: &Path) -> Option<PathBuf> {
    let mut found = Vec::new();
    for dir in [root.join("annotations"), root.to_path_buf()] {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            found.extend(entries.flatten().map(|e| e.path()).filter(|p| {
                p.extension().is_some_and(|e| e == "json")
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("instances"))
            }));
        }
        if !found.is_empty() {
            break;
        }
    }
    found.sort();
    // The training file first when there are several.
    let train = found
        .iter()
        .position(|p| p.to_string_lossy().contains("train"));
    train
        .map(|i| found[i].clone())
        .or_else(|| found.first().cloned())
}

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<CocoImage>,
    #[serde(default)]
    annotations: Vec<CocoAnnotation>,
    categories: Vec<CocoCategory>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: i64,
    file_name: String,
    #[serde(default)]
    width: u32,
    #[serde(default)]
    height: u32,
}

#[derive(Deserialize)]
struct CocoAnnotation {
    image_id: i64,
    category_id: i64,
    bbox: [f32; 4],
    #[serde(default)]
    iscrowd: u8,
}

#[derive(Deserialize)]
struct CocoCategory {
    id: i64,
    name: String,
}

fn coco(root: &Path, r: Reading) -> Result<BoxDataset, BoxError> {
    let file = coco_json(root).ok_or_else(|| BoxError::Unrecognised(root.to_path_buf()))?;
    let parsed: CocoFile =
        serde_json::from_str(&read_text(&file)?).map_err(|e| malformed(&file, e.to_string()))?;
    let mut categories = parsed.categories;
    categories.sort_by_key(|c| c.id);
    let index: BTreeMap<i64, usize> = categories
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id, i))
        .collect();
    let classes: Vec<String> = categories.into_iter().map(|c| c.name).collect();
    let json_dir = file.parent().unwrap_or(root);
    let folders = [
        root.join("images"),
        root.to_path_buf(),
        json_dir.to_path_buf(),
        json_dir.join("../images"),
    ];
    let mut by_image: BTreeMap<i64, Vec<Object>> = BTreeMap::new();
    let mut unknown: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for a in &parsed.annotations {
        let Some(&class) = index.get(&a.category_id) else {
            unknown
                .entry(a.category_id.to_string())
                .or_default()
                .push(file.clone());
            continue;
        };
        let [x, y, w, h] = a.bbox;
        by_image.entry(a.image_id).or_default().push(Object {
            class,
            bbox: BBox::new(x, y, x + w, y + h),
            difficult: a.iscrowd != 0,
        });
    }
    if let Some((class, files)) = unknown.into_iter().next() {
        return Err(BoxError::UnknownClass {
            class: format!("id {class}"),
            declared: classes.len(),
            files: files[..1].to_vec(),
        });
    }
    let mut findings = Vec::new();
    let mut images = Vec::new();
    let total = parsed.images.len();
    for (i, img) in parsed.images.into_iter().enumerate() {
        r.step(i, total)?;
        let path = folders
            .iter()
            .map(|f| f.join(&img.file_name))
            .find(|p| p.is_file())
            .unwrap_or_else(|| root.join("images").join(&img.file_name));
        let Some(size) = image_size(&path, &mut findings) else {
            continue;
        };
        if img.width != 0 && (img.width, img.height) != size {
            return Err(malformed(
                &file,
                format!(
                    "{} is {}×{} but the file says {}×{}",
                    img.file_name, size.0, size.1, img.width, img.height
                ),
            ));
        }
        let raw = by_image.remove(&img.id).unwrap_or_default();
        images.push(finish_image(path, size, raw, &mut findings));
    }
    Ok(BoxDataset {
        root: root.to_path_buf(),
        format: BoxFormat::Coco,
        classes,
        images,
        findings,
        validation_dir: None,
    })
}

// ---- Pascal VOC ------------------------------------------------------------------------

fn voc(root: &Path, r: Reading) -> Result<BoxDataset, BoxError> {
    let dir = root.join("Annotations");
    let mut xmls: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| BoxError::Unreadable {
            path: dir.clone(),
            message: e.to_string(),
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    xmls.sort();
    // Class names: a classes.txt / labels.txt if the set has one, else every name found.
    let declared = ["classes.txt", "labels.txt"]
        .iter()
        .map(|f| root.join(f))
        .find(|p| p.is_file());
    let mut parsed = Vec::new();
    // Two passes over the files (annotations, then image headers): progress counts both.
    let total = 2 * xmls.len();
    for (i, xml) in xmls.iter().enumerate() {
        r.step(i, total)?;
        parsed.push((xml.clone(), voc_file(xml)?));
    }
    let classes: Vec<String> = match &declared {
        Some(p) => read_text(p)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        None => {
            let mut names: Vec<String> = parsed
                .iter()
                .flat_map(|(_, f)| f.objects.iter().map(|o| o.0.clone()))
                .collect();
            names.sort();
            names.dedup();
            names
        }
    };
    let mut unknown: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut findings = Vec::new();
    let mut images = Vec::new();
    for (i, (xml, f)) in parsed.into_iter().enumerate() {
        r.step(xmls.len() + i, total)?;
        let path = root.join("JPEGImages").join(&f.filename);
        let Some(size) = image_size(&path, &mut findings) else {
            continue;
        };
        let mut raw = Vec::new();
        for (name, bbox, difficult) in f.objects {
            match classes.iter().position(|c| *c == name) {
                Some(class) => raw.push(Object {
                    class,
                    bbox,
                    difficult,
                }),
                None => unknown.entry(name).or_default().push(xml.clone()),
            }
        }
        images.push(finish_image(path, size, raw, &mut findings));
    }
    if let Some((class, files)) = unknown.into_iter().next() {
        return Err(BoxError::UnknownClass {
            class: format!("'{class}'"),
            declared: classes.len(),
            files,
        });
    }
    Ok(BoxDataset {
        root: root.to_path_buf(),
        format: BoxFormat::Voc,
        classes,
        images,
        findings,
        validation_dir: None,
    })
}

struct VocFile {
    filename: String,
    objects: Vec<(String, BBox, bool)>,
}

fn voc_file(path: &Path) -> Result<VocFile, BoxError> {
    let text = read_text(path)?;
    let doc = roxmltree::Document::parse(&text).map_err(|e| malformed(path, e.to_string()))?;
    let child = |n: roxmltree::Node, tag: &str| {
        n.children()
            .find(|c| c.has_tag_name(tag))
            .and_then(|c| c.text())
            .map(str::trim)
            .map(String::from)
    };
    let top = doc.root_element();
    let filename = child(top, "filename").ok_or_else(|| malformed(path, "no <filename>"))?;
    let mut objects = Vec::new();
    for o in top.children().filter(|c| c.has_tag_name("object")) {
        let name = child(o, "name").ok_or_else(|| malformed(path, "an <object> without <name>"))?;
        let b = o
            .children()
            .find(|c| c.has_tag_name("bndbox"))
            .ok_or_else(|| malformed(path, format!("object '{name}' has no <bndbox>")))?;
        let coord = |tag: &str| {
            child(b, tag)
                .and_then(|v| v.parse::<f32>().ok())
                .ok_or_else(|| malformed(path, format!("object '{name}': <{tag}> is not a number")))
        };
        let bbox = BBox::new(
            coord("xmin")?,
            coord("ymin")?,
            coord("xmax")?,
            coord("ymax")?,
        );
        let difficult = child(o, "difficult").is_some_and(|d| d == "1");
        objects.push((name, bbox, difficult));
    }
    Ok(VocFile { filename, objects })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yolo_label_paths_mirror_the_images_folder() {
        assert_eq!(
            yolo_label_path(Path::new("/d/images/train/a.jpg")),
            PathBuf::from("/d/labels/train/a.txt")
        );
        assert_eq!(
            yolo_label_path(Path::new("/d/x/a.png")),
            PathBuf::from("/d/x/a.txt")
        );
    }
}

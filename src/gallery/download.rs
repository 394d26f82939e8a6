//! Downloading a gallery file into the cache: each URL in turn (or the mirror), resuming a
//! partial file with an HTTP Range request, checking the sha256, and only then moving it into
//! place, so the cache never holds a file that is not the right one.
//!
//! A partial download stays as `<file>.part` and is resumed by the next attempt; a file whose
//! checksum does not match is deleted. Proxies come from the usual environment variables
//! (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, …: ureq reads them).

use super::catalog::Entry;
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Where a download stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    /// Over the current request.
    pub bytes_per_s: f64,
    pub url: String,
}

#[derive(Debug, PartialEq)]
pub enum DownloadError {
    Cancelled,
    /// The whole file arrived and is not the one the catalogue names; it was deleted.
    Checksum {
        file: String,
        expected: String,
        got: String,
    },
    Status {
        url: String,
        status: u16,
    },
    Network {
        url: String,
        message: String,
    },
    /// Writing the cache failed (a full disk, no permission).
    Io {
        path: PathBuf,
        message: String,
    },
    /// Every source failed; why each one did.
    Unreachable {
        file: String,
        attempts: Vec<String>,
    },
}

impl fmt::Display for DownloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cancelled => write!(
                f,
                "download cancelled (the partial file is kept and resumed next time)"
            ),
            Self::Checksum {
                file,
                expected,
                got,
            } => write!(
                f,
                "{file}: checksum mismatch (sha256 {got}, expected {expected}); the file was deleted"
            ),
            Self::Status { url, status } => write!(f, "{url}: HTTP {status}"),
            Self::Network { url, message } => write!(f, "{url}: {message}"),
            Self::Io { path, message } => write!(f, "{}: {message}", path.display()),
            Self::Unreachable { file, attempts } => {
                write!(f, "could not download {file}:")?;
                for a in attempts {
                    write!(f, "\n  {a}")?;
                }
                write!(
                    f,
                    "\nWithout internet, set GRAFT_MODEL_MIRROR to a server or folder that holds \
                     {file}, or open the file yourself (File → Open ONNX file…, or its path \
                     on the command line)."
                )
            }
        }
    }
}

impl std::error::Error for DownloadError {}

fn io_error(path: &Path, e: std::io::Error) -> DownloadError {
    DownloadError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The gallery's cache folder: `GRAFT_CACHE_DIR`, else the platform's cache folder
/// (`~/.cache/graft/models` on Linux). Not created.
pub fn cache_path() -> Result<PathBuf, DownloadError> {
    match std::env::var_os("GRAFT_CACHE_DIR") {
        Some(d) => Ok(PathBuf::from(d)),
        None => Ok(dirs::cache_dir()
            .ok_or_else(|| DownloadError::Io {
                path: PathBuf::from("~/.cache"),
                message: "no cache folder on this system (set GRAFT_CACHE_DIR)".into(),
            })?
            .join("graft")
            .join("models")),
    }
}

/// The gallery's cache folder, created if needed.
pub fn cache_dir() -> Result<PathBuf, DownloadError> {
    let dir = cache_path()?;
    fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
    Ok(dir)
}

/// Where files go and where they come from instead of the catalogue's URLs.
#[derive(Clone, Debug)]
pub struct Place {
    pub cache: PathBuf,
    /// A URL prefix or a folder holding the files (`GRAFT_MODEL_MIRROR`).
    pub mirror: Option<String>,
}

impl Place {
    /// `cache_dir()` and `GRAFT_MODEL_MIRROR`.
    pub fn from_env() -> Result<Self, DownloadError> {
        Ok(Self {
            cache: cache_dir()?,
            mirror: std::env::var("GRAFT_MODEL_MIRROR")
                .ok()
                .filter(|m| !m.is_empty()),
        })
    }
}

/// The entry's file when it is in the cache, complete.
pub fn cached(entry: &Entry, place: &Place) -> Option<PathBuf> {
    let path = place.cache.join(&entry.file);
    let len = fs::metadata(&path).ok()?.len();
    (entry.embedded || len == entry.bytes).then_some(path)
}

/// Where to fetch from: the mirror (a URL prefix, or a folder) when there is one, else the
/// catalogue's URLs.
enum Source {
    Url(String),
    Folder(PathBuf),
}

fn sources(entry: &Entry, place: &Place) -> Vec<Source> {
    match place.mirror.clone() {
        Some(m) if m.starts_with("http://") || m.starts_with("https://") => {
            vec![Source::Url(format!(
                "{}/{}",
                m.trim_end_matches('/'),
                entry.file
            ))]
        }
        Some(m) => vec![Source::Folder(PathBuf::from(
            m.strip_prefix("file://").unwrap_or(&m),
        ))],
        None => entry.urls.iter().cloned().map(Source::Url).collect(),
    }
}

/// The entry's file in the cache, downloaded first if it is not there.
pub fn pull(
    entry: &Entry,
    place: &Place,
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<PathBuf, DownloadError> {
    let dir = &place.cache;
    fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let dest = dir.join(&entry.file);
    if entry.embedded {
        if fs::metadata(&dest).map(|m| m.len()).ok() != Some(crate::DEFAULT_MODEL.len() as u64) {
            crate::files::write_atomic(&dest, crate::DEFAULT_MODEL).map_err(|message| {
                DownloadError::Io {
                    path: dest.clone(),
                    message,
                }
            })?;
        }
        return Ok(dest);
    }
    if cached(entry, place).is_some() {
        return Ok(dest);
    }
    let part = dir.join(format!("{}.part", entry.file));
    let mut attempts = Vec::new();
    for source in sources(entry, place) {
        let got = match &source {
            Source::Url(url) => fetch(url, &part, entry, on_progress, cancel),
            Source::Folder(folder) => copy_from(folder, &part, entry),
        };
        let got = got.and_then(|()| finish(entry, &part, &dest));
        match got {
            Ok(()) => return Ok(dest),
            Err(DownloadError::Cancelled) => return Err(DownloadError::Cancelled),
            Err(e @ DownloadError::Io { .. }) => return Err(e),
            Err(e) => attempts.push(e.to_string()),
        }
    }
    Err(DownloadError::Unreachable {
        file: entry.file.clone(),
        attempts,
    })
}

/// Checks the finished part file and moves it into place, or deletes it.
fn finish(entry: &Entry, part: &Path, dest: &Path) -> Result<(), DownloadError> {
    let got = sha256_of(part)?;
    if !got.eq_ignore_ascii_case(&entry.sha256) {
        let _ = fs::remove_file(part);
        return Err(DownloadError::Checksum {
            file: entry.file.clone(),
            expected: entry.sha256.clone(),
            got,
        });
    }
    fs::rename(part, dest).map_err(|e| io_error(dest, e))
}

pub fn sha256_of(path: &Path) -> Result<String, DownloadError> {
    let mut f = File::open(path).map_err(|e| io_error(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| io_error(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Copies the file from a mirror folder (sites without internet).
fn copy_from(folder: &Path, part: &Path, entry: &Entry) -> Result<(), DownloadError> {
    let src = folder.join(&entry.file);
    if !src.is_file() {
        return Err(DownloadError::Network {
            url: src.display().to_string(),
            message: "not in the mirror folder".into(),
        });
    }
    fs::copy(&src, part).map_err(|e| io_error(part, e))?;
    Ok(())
}

/// How many times one URL is asked again after its connection broke mid-file.
const RESUMES: usize = 4;

/// Downloads `url` into `part`, resuming what is already there.
fn fetch(
    url: &str,
    part: &Path,
    entry: &Entry,
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &AtomicBool,
) -> Result<(), DownloadError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(20)))
        .user_agent(format!("graft/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let network = |message: String| DownloadError::Network {
        url: url.to_string(),
        message,
    };
    let mut last = None;
    for _ in 0..=RESUMES {
        let mut have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if have > entry.bytes {
            fs::remove_file(part).map_err(|e| io_error(part, e))?;
            have = 0;
        }
        if have == entry.bytes {
            return Ok(());
        }
        let mut request = agent.get(url);
        if have > 0 {
            request = request.header("Range", format!("bytes={have}-"));
        }
        let response = request.call().map_err(|e| network(e.to_string()))?;
        let status = response.status().as_u16();
        let append = match status {
            206 => true,
            200 => false,
            // The part file is not a prefix the server can continue: start again.
            416 => {
                fs::remove_file(part).map_err(|e| io_error(part, e))?;
                continue;
            }
            s => {
                return Err(DownloadError::Status {
                    url: url.into(),
                    status: s,
                });
            }
        };
        let start = if append { have } else { 0 };
        let mut out = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(part)
            .map_err(|e| io_error(part, e))?;
        let mut reader = response.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 16];
        let (begun, mut reported) = (Instant::now(), Instant::now());
        let mut done = start;
        let broke = loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(DownloadError::Cancelled);
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) => break Some(e.to_string()),
            };
            if done + n as u64 > entry.bytes {
                return Err(network(format!(
                    "the server sent more than the {} bytes expected",
                    entry.bytes
                )));
            }
            out.write_all(&buf[..n]).map_err(|e| io_error(part, e))?;
            done += n as u64;
            if reported.elapsed() >= Duration::from_millis(100) {
                reported = Instant::now();
                on_progress(&Progress {
                    done,
                    total: entry.bytes,
                    bytes_per_s: (done - start) as f64 / begun.elapsed().as_secs_f64().max(1e-3),
                    url: url.into(),
                });
            }
        };
        out.flush().map_err(|e| io_error(part, e))?;
        drop(out);
        on_progress(&Progress {
            done,
            total: entry.bytes,
            bytes_per_s: (done - start) as f64 / begun.elapsed().as_secs_f64().max(1e-3),
            url: url.into(),
        });
        if done == entry.bytes {
            return Ok(());
        }
        // Cut short: ask again for the rest, unless nothing at all came.
        let reason = broke
            .unwrap_or_else(|| format!("connection closed at {done} of {} bytes", entry.bytes));
        if done == start {
            return Err(network(reason));
        }
        last = Some(reason);
    }
    Err(network(last.unwrap_or_else(|| "gave up".into())))
}

//! File dialogs: the platform's own where one can open, else Graft's in-window browser.
//!
//! rfd's Linux dialogs need a desktop portal or `zenity`; without either, rfd returns "no
//! file" at once, exactly as if the user had cancelled, and "Export ONNX…" would silently do
//! nothing. So: where neither can exist the in-window browser opens directly, and a native
//! dialog that comes back empty faster than a person can cancel one counts as one that could
//! not open: the in-window browser takes over, for this request and the rest of the session.

use super::actions::Picked;
use super::jobs::Job;
use egui_file_dialog::{DialogState, FileDialog};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Faster than any person opens and cancels a dialog.
const TOO_FAST: Duration = Duration::from_millis(400);

/// What kind of path is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    File,
    Folder,
    /// A file to write, with a suggested name.
    Save(&'static str),
}

/// One question to the user: what for, the window title, file or folder, a filter.
#[derive(Clone, Copy, Debug)]
pub(super) struct PickRequest {
    pub purpose: Picked,
    pub title: &'static str,
    pub mode: Mode,
    /// Name and extensions (without dots).
    pub filter: Option<(&'static str, &'static [&'static str])>,
}

impl PickRequest {
    pub fn file(purpose: Picked, title: &'static str) -> Self {
        Self {
            purpose,
            title,
            mode: Mode::File,
            filter: None,
        }
    }

    pub fn folder(purpose: Picked, title: &'static str) -> Self {
        Self {
            mode: Mode::Folder,
            ..Self::file(purpose, title)
        }
    }

    pub fn save(purpose: Picked, title: &'static str, name: &'static str) -> Self {
        Self {
            mode: Mode::Save(name),
            ..Self::file(purpose, title)
        }
    }

    pub fn filter(self, name: &'static str, extensions: &'static [&'static str]) -> Self {
        Self {
            filter: Some((name, extensions)),
            ..self
        }
    }

    /// Runs the native dialog (blocks until the user answers: call it off the UI thread).
    fn run_native(&self) -> Option<PathBuf> {
        let mut d = rfd::FileDialog::new().set_title(self.title);
        if let Some((name, ext)) = self.filter {
            d = d.add_filter(name, ext);
        }
        match self.mode {
            Mode::File => d.pick_file(),
            Mode::Folder => d.pick_folder(),
            Mode::Save(name) => d.set_file_name(name).save_file(),
        }
    }

    fn in_window(&self) -> FileDialog {
        let mut d = FileDialog::new()
            .title(self.title)
            .initial_directory(std::env::current_dir().unwrap_or_default());
        if let Some((name, ext)) = self.filter {
            d = d
                .add_file_filter_extensions(name, ext.to_vec())
                .default_file_filter(name);
            if let (Mode::Save(_), Some(first)) = (self.mode, ext.first()) {
                d = d
                    .add_save_extension(name, first)
                    .default_save_extension(name);
            }
        }
        if let Mode::Save(name) = self.mode {
            d = d.default_file_name(name);
        }
        match self.mode {
            Mode::File => d.pick_file(),
            Mode::Folder => d.pick_directory(),
            Mode::Save(_) => d.save_file(),
        }
        d
    }
}

/// Whether a native dialog can possibly open: a portal needs a session bus; rfd's fallback
/// is zenity.
fn native_plausible() -> bool {
    let zenity = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("zenity").is_file()));
    zenity || std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
}

/// At most one dialog at a time.
pub(super) struct FilePicker {
    native: bool,
    waiting: Option<(Job<Option<PathBuf>>, PickRequest, Instant)>,
    in_window: Option<(FileDialog, PickRequest)>,
}

/// What a frame of the picker produced.
pub(super) enum PickEvent {
    Chosen(Picked, PathBuf),
    /// The native dialog could not open; Graft's own is shown instead.
    FellBack,
}

impl FilePicker {
    /// `builtin`: never try the native dialog (tests, screenshots, or by choice).
    pub fn new(builtin: bool) -> Self {
        Self {
            native: !builtin && native_plausible(),
            waiting: None,
            in_window: None,
        }
    }

    pub fn is_open(&self) -> bool {
        self.waiting.is_some() || self.in_window.is_some()
    }

    pub fn is_in_window(&self) -> bool {
        self.in_window.is_some()
    }

    pub fn open(&mut self, ctx: &egui::Context, request: PickRequest) {
        if self.is_open() {
            return;
        }
        if self.native {
            let r = request;
            let job = Job::spawn("Dialog", ctx, move |_| Ok(r.run_native()));
            self.waiting = Some((job, request, Instant::now()));
        } else {
            self.in_window = Some((request.in_window(), request));
        }
    }

    /// Shows the in-window dialog and collects answers; call once per frame.
    pub fn update(&mut self, ctx: &egui::Context) -> Option<PickEvent> {
        if let Some((job, request, started)) = &self.waiting
            && let Some(result) = job.poll()
        {
            let (request, started) = (*request, *started);
            self.waiting = None;
            return match result {
                Ok(Some(path)) => Some(PickEvent::Chosen(request.purpose, path)),
                Ok(None) if started.elapsed() < TOO_FAST => {
                    self.native = false;
                    self.in_window = Some((request.in_window(), request));
                    Some(PickEvent::FellBack)
                }
                Ok(None) | Err(_) => None,
            };
        }
        let (dialog, request) = self.in_window.as_mut()?;
        dialog.update(ctx);
        match dialog.state() {
            DialogState::Picked(path) => {
                let event = PickEvent::Chosen(request.purpose, path.clone());
                self.in_window = None;
                Some(event)
            }
            DialogState::Closed | DialogState::Cancelled => {
                self.in_window = None;
                None
            }
            _ => None,
        }
    }
}

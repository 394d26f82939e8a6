//! Keyboard shortcuts, and files dropped on the window (with what a drop will do, shown while
//! the files hover).

use super::{AppCommand, GraftApp, theme};
use crate::graph::edit::Edit;
use crate::project::ModelSource;
use egui::{Key, KeyboardShortcut, Modifiers};
use std::path::{Path, PathBuf};

/// What dropping a path does: a folder is a dataset, `.onnx` a network, `.ron` a project,
/// anything else an image to classify.
pub(super) fn drop_command(path: PathBuf) -> AppCommand {
    let name = path.to_string_lossy().to_lowercase();
    if path.is_dir() {
        AppCommand::OpenDataset(path)
    } else if name.ends_with(".onnx") {
        AppCommand::OpenModel(ModelSource::File(path))
    } else if name.ends_with(".ron") {
        AppCommand::OpenProject(path)
    } else {
        AppCommand::Classify(path)
    }
}

/// The hint shown while files hover over the window. Platforms that do not say which files
/// hover (the path is empty until the drop) get a general hint.
pub(super) fn drop_hint(paths: &[PathBuf]) -> String {
    let what = |p: &Path| match drop_command(p.to_path_buf()) {
        AppCommand::OpenDataset(_) => "use as the dataset",
        AppCommand::OpenModel(_) => "open the network",
        AppCommand::OpenProject(_) => "open the project",
        _ => "classify the image",
    };
    match paths {
        [] => "Drop a folder (dataset), an .onnx network, a project or an image".into(),
        [p] if p.as_os_str().is_empty() => {
            "Drop a folder (dataset), an .onnx network, a project or an image".into()
        }
        [p] => format!("Drop to {}", what(p)),
        [first, ..] => format!(
            "Drop to {} (the first of {} files)",
            what(first),
            paths.len()
        ),
    }
}

impl GraftApp {
    pub(super) fn shortcuts(&mut self, ctx: &egui::Context) {
        let cmd = |m: Modifiers, k: Key| {
            ctx.input_mut(|i| i.consume_shortcut(&KeyboardShortcut::new(m, k)))
        };
        // Longer shortcuts first: Ctrl+Z would also match Ctrl+Shift+Z.
        let table = [
            (
                Modifiers::COMMAND | Modifiers::SHIFT,
                Key::Z,
                AppCommand::Redo,
            ),
            (Modifiers::COMMAND, Key::Y, AppCommand::Redo),
            (Modifiers::COMMAND, Key::Z, AppCommand::Undo),
            (
                Modifiers::COMMAND | Modifiers::SHIFT,
                Key::S,
                AppCommand::PickSaveAs,
            ),
            (Modifiers::COMMAND, Key::S, AppCommand::Save),
            (Modifiers::COMMAND, Key::O, AppCommand::PickOpenProject),
            (Modifiers::COMMAND, Key::E, AppCommand::PickExport),
            (Modifiers::COMMAND, Key::Enter, AppCommand::StartTraining),
        ];
        for (m, k, c) in table {
            if cmd(m, k) {
                self.commands.push(c);
            }
        }
        // Single keys only while no text field has the keyboard.
        if !ctx.egui_wants_keyboard_input() {
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
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        self.commands.extend(dropped.into_iter().map(drop_command));
    }

    /// While files hover over the window: a veil saying what the drop will do.
    pub(super) fn drop_hint_ui(&self, ctx: &egui::Context) {
        let hovering: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .hovered_files
                .iter()
                .map(|f| f.path.clone().unwrap_or_default())
                .collect()
        });
        if hovering.is_empty() {
            return;
        }
        let text = drop_hint(&hovering);
        let painter = ctx.layer_painter(egui::LayerId::new(
            egui::Order::Foreground,
            egui::Id::new("drop-hint"),
        ));
        let screen = ctx.content_rect();
        painter.rect_filled(screen, 0.0, egui::Color32::from_black_alpha(170));
        painter.text(
            screen.center(),
            egui::Align2::CENTER_CENTER,
            text,
            egui::FontId::proportional(26.0),
            theme::OK,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_map_to_commands_and_hints() {
        let dir = std::env::temp_dir();
        assert!(matches!(
            drop_command(dir.clone()),
            AppCommand::OpenDataset(_)
        ));
        assert!(matches!(
            drop_command("net.ONNX".into()),
            AppCommand::OpenModel(_)
        ));
        assert!(matches!(
            drop_command("p.graft.ron".into()),
            AppCommand::OpenProject(_)
        ));
        assert!(matches!(
            drop_command("cat.png".into()),
            AppCommand::Classify(_)
        ));
        assert_eq!(drop_hint(&[dir]), "Drop to use as the dataset");
        assert_eq!(drop_hint(&["a.onnx".into()]), "Drop to open the network");
        assert_eq!(
            drop_hint(&["a.png".into(), "b.png".into()]),
            "Drop to classify the image (the first of 2 files)"
        );
        assert!(drop_hint(&[PathBuf::new()]).starts_with("Drop a folder"));
    }
}

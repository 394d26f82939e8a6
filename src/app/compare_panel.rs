//! Comparing backbones in the window: the networks ticked in the gallery each get the same
//! recipe (the Training tab's options, backbone frozen unless "fine-tune every layer") on
//! the dataset's split, one after another in the background. A live table and a plot of
//! validation accuracy against inference speed, the Pareto front joined; "Use this one"
//! opens that network, trained head included.

use super::jobs::{Job, Progress};
use super::{AppCommand, theme};
use crate::compare::{Recipe, Row, mark_pareto, train_one};
use crate::data::Dataset;
use crate::format::group;
use crate::gallery::{Entry, Place};
use crate::project::ModelSource;
use crate::train::{Outcome, Session, TrainEvent};
use egui::RichText;
use egui_plot::{Line, Plot, PlotPoints, Points, Text};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Rows so far and what the job is doing, shared with it.
#[derive(Default)]
pub struct Shared {
    pub rows: Vec<(Row, PathBuf)>,
    pub status: String,
}

#[derive(Default)]
pub struct ComparePanelState {
    pub open: bool,
    pub fine_tune: bool,
    /// Gallery names ticked for comparison.
    pub selected: BTreeSet<String>,
    pub shared: Arc<Mutex<Shared>>,
    pub job: Option<Job<()>>,
}

impl ComparePanelState {
    pub fn rows(&self) -> Vec<(Row, PathBuf)> {
        self.shared
            .lock()
            .map(|s| s.rows.clone())
            .unwrap_or_default()
    }

    /// A comparison saved with a project (shown when the window is opened).
    pub fn restore(&mut self, rows: Vec<(Row, PathBuf)>) {
        let status = if rows.is_empty() {
            String::new()
        } else {
            format!("{} networks compared (saved with the project)", rows.len())
        };
        self.shared = Arc::new(Mutex::new(Shared { rows, status }));
    }

    /// Starts the comparison of `entries` on `train`/`validation`.
    pub fn start(
        &mut self,
        ctx: &egui::Context,
        entries: Vec<Entry>,
        place: Place,
        (train, validation): (Dataset, Dataset),
        recipe: Recipe,
    ) {
        let shared = Arc::new(Mutex::new(Shared::default()));
        self.shared = shared.clone();
        self.open = true;
        let n = entries.len();
        self.job = Some(Job::spawn("Comparing", ctx, move |p| {
            let say = |s: String| {
                if let Ok(mut g) = shared.lock() {
                    g.status = s;
                }
            };
            let out_dir = place.cache.join("compare");
            std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
            let mut failed = Vec::new();
            for (i, entry) in entries.iter().enumerate() {
                if p.cancel_flag().load(std::sync::atomic::Ordering::Relaxed) {
                    return Err("comparison cancelled".into());
                }
                let at = format!("{}/{n} {}", i + 1, entry.title);
                // One network that cannot be had or trained does not stop the others.
                match run_one(
                    entry,
                    &place,
                    &train,
                    &validation,
                    &recipe,
                    p,
                    &out_dir,
                    &|s| say(format!("{at}: {s}")),
                ) {
                    // A run stopped by Cancel trained fewer epochs: not a fair row.
                    _ if p.cancel_flag().load(std::sync::atomic::Ordering::Relaxed) => {
                        return Err("comparison cancelled".into());
                    }
                    Ok((row, path)) => {
                        if let Ok(mut g) = shared.lock() {
                            g.rows.push((row, path));
                            let mut rows: Vec<Row> =
                                g.rows.iter().map(|(r, _)| r.clone()).collect();
                            mark_pareto(&mut rows);
                            for ((r, _), marked) in g.rows.iter_mut().zip(rows) {
                                r.pareto = marked.pareto;
                            }
                        }
                    }
                    Err(e) => failed.push(format!("{}: {e}", entry.title)),
                }
            }
            if !failed.is_empty() {
                let text = format!("not compared: {}", failed.join("; "));
                say(text.clone());
                return Err(text);
            }
            say(format!("{n} networks compared"));
            Ok(())
        }));
    }
}

/// Downloads (if needed), trains and measures one network; writes it to `out_dir`.
#[allow(clippy::too_many_arguments)]
fn run_one(
    entry: &Entry,
    place: &Place,
    train: &Dataset,
    validation: &Dataset,
    recipe: &Recipe,
    p: &Progress,
    out_dir: &std::path::Path,
    say: &dyn Fn(String),
) -> Result<(Row, PathBuf), String> {
    say("downloading".into());
    let imported = crate::gallery::open(entry, place, &mut |_| {}, p.cancel_flag())?;
    say("training".into());
    let trained = train_one(
        &entry.title,
        imported,
        train,
        validation,
        recipe,
        &mut |s| follow(s, p, say),
    )?;
    let path = out_dir.join(format!("{}.onnx", entry.name));
    crate::onnx::export_with_labels(&trained.network, &trained.store, &path)?;
    Ok((trained.row, path))
}

/// Follows a training session: its progress into `p`, a status line, stop on cancel.
fn follow(session: &Session, p: &Progress, say: &dyn Fn(String)) -> Result<Outcome, String> {
    let mut total = 0;
    loop {
        if p.cancel_flag().load(std::sync::atomic::Ordering::Relaxed) {
            session.stop();
        }
        match session.events().recv_timeout(Duration::from_millis(100)) {
            Ok(TrainEvent::Started {
                iterations_per_epoch,
                epochs,
                ..
            }) => total = iterations_per_epoch * epochs,
            Ok(TrainEvent::Iteration(r)) => {
                p.set(r.iteration, total);
                say(format!("epoch {}, loss {:.3}", r.epoch, r.loss));
            }
            Ok(TrainEvent::Progress { stage, done, total }) => {
                p.set(done, total);
                say(stage);
            }
            Ok(TrainEvent::Finished(o)) => return Ok(*o),
            Ok(TrainEvent::Failed(e)) => return Err(e),
            Ok(_) => {}
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                return Err("training ended without a result".into());
            }
        }
    }
}

/// The comparison window.
pub fn compare_window(
    ctx: &egui::Context,
    state: &mut ComparePanelState,
    commands: &mut Vec<AppCommand>,
) {
    if !state.open {
        return;
    }
    let mut open = true;
    let rows = state.rows();
    let status = state
        .shared
        .lock()
        .map(|s| s.status.clone())
        .unwrap_or_default();
    egui::Window::new("Compare backbones")
        .open(&mut open)
        .default_size([900.0, 620.0])
        .show(ctx, |ui| {
            ui.horizontal(|ui| {
                if let Some(job) = &state.job {
                    ui.spinner();
                    ui.label(&status);
                    ui.add(
                        egui::ProgressBar::new(job.progress.fraction().unwrap_or(0.0))
                            .desired_width(120.0),
                    );
                    if ui.button("Cancel").clicked() {
                        job.progress.cancel();
                    }
                } else {
                    ui.label(&status);
                }
            });
            ui.label(
                RichText::new(
                    "Same recipe and split for each: a new head, the backbone frozen unless \
                     fine-tuning. Speed: inference at batch 8 on this machine.",
                )
                .small()
                .weak(),
            );
            table(ui, &rows, state.job.is_none(), commands);
            scatter(ui, &rows);
        });
    state.open &= open;
}

fn table(ui: &mut egui::Ui, rows: &[(Row, PathBuf)], done: bool, commands: &mut Vec<AppCommand>) {
    let mut order: Vec<&(Row, PathBuf)> = rows.iter().collect();
    order.sort_by(|a, b| b.0.validation_accuracy.total_cmp(&a.0.validation_accuracy));
    egui::Grid::new("compare-table")
        .striped(true)
        .num_columns(8)
        .show(ui, |ui| {
            for h in [
                "network",
                "val. accuracy",
                "loss",
                "train s",
                "img/s",
                "params",
                "file",
                "",
            ] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for (r, path) in order {
                let name = if r.pareto {
                    format!("★ {}", r.model)
                } else {
                    r.model.clone()
                };
                ui.label(name).on_hover_text(
                    r.per_class_accuracy
                        .iter()
                        .map(|(c, a)| format!("{c}: {:.1}%", a * 100.0))
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
                ui.label(format!("{:.1}%", r.validation_accuracy * 100.0));
                ui.label(format!("{:.3}", r.validation_loss));
                ui.label(format!("{:.0}", r.train_seconds));
                ui.label(format!("{:.1}", r.inference_images_per_s));
                ui.label(group(r.params as u64));
                ui.label(format!("{:.1} MB", r.file_bytes as f64 / 1e6));
                if ui
                    .add_enabled(done, egui::Button::new("Use this one"))
                    .on_hover_text("Open this network with its trained head")
                    .clicked()
                {
                    commands.push(AppCommand::OpenModel(ModelSource::File(path.clone())));
                }
                ui.end_row();
            }
        });
}

/// Accuracy against speed, each network labelled, the Pareto front joined.
fn scatter(ui: &mut egui::Ui, rows: &[(Row, PathBuf)]) {
    let point = |r: &Row| [r.inference_images_per_s, r.validation_accuracy * 100.0];
    let mut front: Vec<[f64; 2]> = rows
        .iter()
        .filter(|(r, _)| r.pareto)
        .map(|(r, _)| point(r))
        .collect();
    front.sort_by(|a, b| a[0].total_cmp(&b[0]));
    Plot::new("compare-plot")
        .height(260.0)
        .x_axis_label("images/s (inference, this machine)")
        .y_axis_label("validation accuracy %")
        .show(ui, |p| {
            p.line(Line::new("Pareto front", PlotPoints::from(front)).color(theme::HEAD));
            for (r, _) in rows {
                let colour = if r.pareto { theme::HEAD } else { theme::PIN };
                p.points(
                    Points::new(r.model.clone(), PlotPoints::from(vec![point(r)]))
                        .radius(5.0)
                        .color(colour),
                );
                p.text(
                    Text::new(r.model.clone(), point(r).into(), format!("  {}", r.model))
                        .anchor(egui::Align2::LEFT_CENTER)
                        .color(colour),
                );
            }
        });
}

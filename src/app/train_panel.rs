//! Training: the options form, Train / Pause / Stop, live loss and accuracy plots, progress
//! with ETA and images/s, and the session's messages.

use super::{AppCommand, theme};
use crate::engine::{DeviceChoice, Precision};
use crate::train::{
    IterationRecord, Schedule, Session, Solver, TrainEvent, TrainingOptions, ValidationRecord,
};
use egui::{RichText, Ui};
use egui_plot::{Legend, Line, Plot, PlotPoints, Points, VLine};
use std::time::Instant;

/// A live (or finished) run as the UI sees it.
pub struct TrainRun {
    pub session: Option<Session>,
    pub device: String,
    pub iterations: Vec<IterationRecord>,
    pub validations: Vec<ValidationRecord>,
    /// Iteration numbers where epochs ended.
    pub epoch_ends: Vec<usize>,
    pub total_iterations: usize,
    pub epochs: usize,
    pub eta_seconds: Option<f64>,
    pub stage: Option<(String, usize, usize)>,
    pub messages: Vec<String>,
    pub paused: bool,
    pub started: Instant,
    pub cached_nodes: usize,
    pub finished: bool,
}

impl TrainRun {
    pub fn new(session: Session) -> Self {
        Self {
            session: Some(session),
            device: String::new(),
            iterations: Vec::new(),
            validations: Vec::new(),
            epoch_ends: Vec::new(),
            total_iterations: 0,
            epochs: 0,
            eta_seconds: None,
            stage: None,
            messages: Vec::new(),
            paused: false,
            started: Instant::now(),
            cached_nodes: 0,
            finished: false,
        }
    }

    pub fn is_running(&self) -> bool {
        !self.finished
    }

    /// Applies an event; returns the outcome or failure when the run ends.
    pub fn apply(&mut self, e: TrainEvent) -> Option<Result<Box<crate::train::Outcome>, String>> {
        match e {
            TrainEvent::Started {
                device,
                iterations_per_epoch,
                epochs,
                cached_nodes,
                ..
            } => {
                self.device = device;
                self.total_iterations = iterations_per_epoch * epochs;
                self.epochs = epochs;
                self.cached_nodes = cached_nodes;
                self.stage = None;
            }
            TrainEvent::Message(m) => self.messages.push(m),
            TrainEvent::Progress { stage, done, total } => self.stage = Some((stage, done, total)),
            TrainEvent::Iteration(r) => {
                self.stage = None;
                self.iterations.push(r);
            }
            TrainEvent::Validation(v) => self.validations.push(v),
            TrainEvent::EpochEnd { eta_seconds, .. } => {
                self.eta_seconds = Some(eta_seconds);
                self.epoch_ends
                    .push(self.iterations.last().map_or(0, |r| r.iteration));
            }
            TrainEvent::Checkpoint { .. } => {}
            TrainEvent::Paused => self.paused = true,
            TrainEvent::Resumed => self.paused = false,
            TrainEvent::Finished(o) => {
                self.finished = true;
                return Some(Ok(o));
            }
            TrainEvent::Failed(e) => {
                self.finished = true;
                self.messages.push(format!("Failed: {e}"));
                return Some(Err(e));
            }
        }
        None
    }

    pub fn progress_text(&self) -> String {
        if let Some((stage, d, t)) = &self.stage {
            return format!("{stage}: {d}/{t}");
        }
        let Some(last) = self.iterations.last() else {
            return "Starting…".into();
        };
        let ips = self
            .iterations
            .iter()
            .rev()
            .take(20)
            .map(|r| r.images_per_sec)
            .sum::<f64>()
            / self.iterations.len().min(20) as f64;
        let eta = self
            .eta_seconds
            .map(|s| format!(" · ETA {}", fmt_duration(s)))
            .unwrap_or_default();
        let speed = if self.cached_nodes > 0 {
            format!("head trains at {ips:.0} images/s")
        } else {
            format!("{ips:.0} images/s")
        };
        format!(
            "epoch {}/{} · iteration {}/{} · {speed}{eta}",
            last.epoch, self.epochs, last.iteration, self.total_iterations
        )
    }

    pub fn fraction(&self) -> f32 {
        if let Some((_, d, t)) = &self.stage {
            return *d as f32 / (*t).max(1) as f32;
        }
        self.iterations.last().map_or(0.0, |r| {
            r.iteration as f32 / self.total_iterations.max(1) as f32
        })
    }
}

pub fn fmt_duration(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Exponential moving average, for the smoothed curves.
fn smooth(values: impl Iterator<Item = (f64, f64)>, alpha: f64) -> Vec<[f64; 2]> {
    let mut s = None;
    values
        .map(|(x, y)| {
            let v = match s {
                None => y,
                Some(p) => alpha * y + (1.0 - alpha) * p,
            };
            s = Some(v);
            [x, v]
        })
        .collect()
}

pub fn options_ui(ui: &mut Ui, o: &mut TrainingOptions, enabled: bool) {
    ui.add_enabled_ui(enabled, |ui| {
        egui::Grid::new("train-options")
            .num_columns(2)
            .spacing([12.0, 6.0])
            .show(ui, |ui| {
                ui.label("Solver");
                egui::ComboBox::from_id_salt("solver")
                    .selected_text(format!("{:?}", o.solver))
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut o.solver, Solver::Adam, "Adam");
                        ui.selectable_value(&mut o.solver, Solver::Sgdm, "SGD with momentum");
                        ui.selectable_value(&mut o.solver, Solver::Rmsprop, "RMSprop");
                    });
                ui.end_row();
                ui.label("Initial learning rate");
                ui.add(
                    egui::DragValue::new(&mut o.learning_rate)
                        .speed(1e-4)
                        .range(1e-7..=1.0)
                        .max_decimals(6),
                );
                ui.end_row();
                if o.solver == Solver::Sgdm {
                    ui.label("Momentum");
                    ui.add(egui::Slider::new(&mut o.momentum, 0.0..=0.99));
                    ui.end_row();
                }
                ui.label("L2 regularisation");
                ui.add(
                    egui::DragValue::new(&mut o.l2)
                        .speed(1e-5)
                        .range(0.0..=0.1)
                        .max_decimals(6),
                );
                ui.end_row();
                ui.label("Schedule");
                let label = match &o.schedule {
                    Schedule::None => "constant".to_string(),
                    Schedule::Cosine => "cosine".to_string(),
                    Schedule::Step { factor, period } => format!("×{factor} every {period} epochs"),
                };
                egui::ComboBox::from_id_salt("schedule")
                    .selected_text(label)
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut o.schedule, Schedule::None, "constant");
                        ui.selectable_value(&mut o.schedule, Schedule::Cosine, "cosine");
                        ui.selectable_value(
                            &mut o.schedule,
                            Schedule::Step {
                                factor: 0.1,
                                period: 10,
                            },
                            "step ×0.1 every 10 epochs",
                        );
                    });
                ui.end_row();
                ui.label("Warm-up epochs");
                ui.add(
                    egui::DragValue::new(&mut o.warmup_epochs)
                        .speed(0.1)
                        .range(0.0..=20.0),
                );
                ui.end_row();
                ui.label("Epochs");
                ui.add(egui::DragValue::new(&mut o.epochs).range(1..=1000));
                ui.end_row();
                ui.label("Batch size");
                ui.add(egui::DragValue::new(&mut o.batch_size).range(1..=1024));
                ui.end_row();
                ui.label("Validate every");
                ui.horizontal(|ui| {
                    ui.add(egui::DragValue::new(&mut o.validation_frequency).range(0..=100000));
                    ui.label(if o.validation_frequency == 0 {
                        "(each epoch)"
                    } else {
                        "iterations"
                    });
                });
                ui.end_row();
                ui.label("Early stop patience");
                let mut p = o.patience.unwrap_or(0);
                ui.horizontal(|ui| {
                    if ui
                        .add(egui::DragValue::new(&mut p).range(0..=100))
                        .changed()
                    {
                        o.patience = (p > 0).then_some(p);
                    }
                    ui.label(if p == 0 { "(off)" } else { "validations" });
                });
                ui.end_row();
                ui.label("Device");
                egui::ComboBox::from_id_salt("device")
                    .selected_text(format!("{:?}", o.device))
                    .show_ui(ui, |ui| {
                        ui.selectable_value(
                            &mut o.device,
                            DeviceChoice::Auto,
                            "Auto (GPU if present)",
                        );
                        ui.selectable_value(&mut o.device, DeviceChoice::Wgpu, "GPU (wgpu)");
                        ui.selectable_value(&mut o.device, DeviceChoice::Cpu, "CPU");
                    });
                ui.end_row();
                ui.label("Precision");
                egui::ComboBox::from_id_salt("precision")
                    .selected_text(match o.precision {
                        Precision::Fp32 => "fp32",
                        Precision::Bf16 => "bf16 (mixed)",
                    })
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut o.precision, Precision::Fp32, "fp32");
                        ui.selectable_value(&mut o.precision, Precision::Bf16, "bf16 (mixed)")
                            .on_hover_text(
                                "The convolutions' matrix products (not the depthwise ones) \
                                 in bf16 with fp32 sums and weights: faster on CPUs with \
                                 AVX512_BF16 (else fp32)",
                            );
                    });
                ui.end_row();
                ui.label("Seed");
                ui.add(egui::DragValue::new(&mut o.seed));
                ui.end_row();
                ui.label("Shuffle each epoch");
                ui.checkbox(&mut o.shuffle, "");
                ui.end_row();
                ui.label("Cache frozen layers");
                ui.horizontal(|ui| {
                    ui.checkbox(&mut o.cache_features, "").on_hover_text(
                        "Compute the frozen prefix once per image; much faster with a frozen \
                         backbone",
                    );
                    ui.add_enabled(
                        o.cache_features,
                        egui::DragValue::new(&mut o.cache_memory_mb)
                            .range(0..=1 << 20)
                            .speed(16)
                            .prefix("up to ")
                            .suffix(" MB in memory"),
                    )
                    .on_hover_text(
                        "Features beyond this go to a file on disk (the cache folder, or \
                         GRAFT_SPILL_DIR), removed after training",
                    );
                });
                ui.end_row();
            });
    });
}

pub fn train_ui(
    ui: &mut Ui,
    run: &mut Option<TrainRun>,
    options: &mut TrainingOptions,
    ready: Result<(), String>,
    commands: &mut Vec<AppCommand>,
) {
    let running = run.as_ref().is_some_and(TrainRun::is_running);
    ui.horizontal(|ui| {
        ui.heading("Training");
        ui.add_space(20.0);
        let can_train = !running && ready.is_ok();
        let r = ui.add_enabled(
            can_train,
            egui::Button::new(RichText::new("▶ Train").strong()),
        );
        let r = if let Err(why) = &ready {
            r.on_disabled_hover_text(why)
        } else {
            r
        };
        if r.clicked() {
            commands.push(AppCommand::StartTraining);
        }
        if running {
            let paused = run.as_ref().is_some_and(|r| r.paused);
            if ui
                .button(if paused { "⏵ Resume" } else { "⏸ Pause" })
                .clicked()
            {
                commands.push(if paused {
                    AppCommand::ResumeTraining
                } else {
                    AppCommand::PauseTraining
                });
            }
            if ui.button("⏹ Stop").clicked() {
                commands.push(AppCommand::StopTraining);
            }
        }
    });
    if let Err(why) = &ready
        && !running
    {
        ui.label(RichText::new(why).color(theme::WARNING));
    }
    ui.columns(2, |cols| {
        let (left, right) = cols.split_at_mut(1);
        egui::ScrollArea::vertical()
            .id_salt("options")
            .show(&mut left[0], |ui| {
                options_ui(ui, options, !running);
            });
        if let Some(r) = run.as_ref() {
            let ui = &mut right[0];
            ui.add(egui::ProgressBar::new(r.fraction()).text(r.progress_text()));
            ui.label(
                RichText::new(format!(
                    "{} · {:.0}s elapsed{}",
                    r.device,
                    r.started.elapsed().as_secs_f64(),
                    if r.cached_nodes > 0 {
                        format!(" · {} frozen layers computed once", r.cached_nodes)
                    } else {
                        String::new()
                    }
                ))
                .small(),
            );
            egui::ScrollArea::vertical()
                .id_salt("messages")
                .max_height(80.0)
                .stick_to_bottom(true)
                .show(ui, |ui| {
                    for m in &r.messages {
                        ui.label(RichText::new(m).small());
                    }
                });
        }
    });
    if let Some(r) = run.as_ref() {
        plots_ui(ui, r);
    }
}

/// A plot over the run's iterations, its x axis linked with the other training plots.
fn iteration_plot(id: &str, h: f32, total: f64, y_label: &str) -> Plot<'static> {
    Plot::new(id)
        .height(h)
        .legend(Legend::default())
        .include_x(0.0)
        .include_x(total)
        .include_y(0.0)
        .y_axis_label(y_label.to_owned())
        .link_axis("train-plots", [true, false])
}

fn plots_ui(ui: &mut Ui, r: &TrainRun) {
    let h = (ui.available_height() / 2.0 - 8.0).max(120.0);
    let loss_raw: Vec<[f64; 2]> = r
        .iterations
        .iter()
        .map(|i| [i.iteration as f64, i.loss])
        .collect();
    let loss_smooth = smooth(
        r.iterations.iter().map(|i| (i.iteration as f64, i.loss)),
        0.1,
    );
    let val_loss: Vec<[f64; 2]> = r
        .validations
        .iter()
        .map(|v| [v.iteration as f64, v.loss])
        .collect();
    let epochs = r.epoch_ends.clone();
    let total = r.total_iterations.max(1) as f64;
    // A detector has no accuracy: its top plot is validation mAP, its loss plot the terms.
    let detecting = r.iterations.iter().any(|i| i.terms.is_some())
        || r.validations.iter().any(|v| v.map.is_some());
    let epoch_lines = |p: &mut egui_plot::PlotUi| {
        for e in &epochs {
            p.vline(VLine::new("epoch", *e as f64).color(egui::Color32::from_gray(90)));
        }
    };
    if detecting {
        let series = |f: fn(&crate::train::MapScores) -> f64| -> Vec<[f64; 2]> {
            r.validations
                .iter()
                .filter_map(|v| Some([v.iteration as f64, f(v.map.as_ref()?) * 100.0]))
                .collect()
        };
        let (map50, map) = (series(|m| m.map50), series(|m| m.map));
        iteration_plot("map-plot", h, total, "validation mAP %")
            .include_y(100.0)
            .show(ui, |p| {
                p.line(
                    Line::new("mAP@0.5", PlotPoints::from(map50.clone())).color(theme::VALIDATION),
                );
                p.points(
                    Points::new("mAP@0.5 points", PlotPoints::from(map50))
                        .color(theme::VALIDATION)
                        .radius(4.0),
                );
                p.line(
                    Line::new("mAP@[.5:.95]", PlotPoints::from(map.clone()))
                        .color(theme::TRAIN_SMOOTH)
                        .style(egui_plot::LineStyle::dashed_loose()),
                );
                p.points(
                    Points::new("mAP@[.5:.95] points", PlotPoints::from(map))
                        .color(theme::TRAIN_SMOOTH)
                        .radius(3.0),
                );
                epoch_lines(p);
            });
        let term = |f: fn(&crate::train::LossTerms) -> f64| {
            smooth(
                r.iterations
                    .iter()
                    .filter_map(|i| Some((i.iteration as f64, f(i.terms.as_ref()?)))),
                0.1,
            )
        };
        let terms = [
            ("box (1 − GIoU)", term(|t| t.box_), theme::BOX_TERM),
            ("objectness", term(|t| t.objectness), theme::OBJECT_TERM),
            ("class", term(|t| t.class), theme::CLASS_TERM),
        ];
        iteration_plot("loss-plot", h, total, "loss")
            .x_axis_label("iteration")
            .show(ui, |p| {
                p.line(
                    Line::new("total", PlotPoints::from(loss_raw))
                        .color(theme::TRAIN.gamma_multiply(0.4)),
                );
                p.line(
                    Line::new("total (smoothed)", PlotPoints::from(loss_smooth))
                        .color(theme::TRAIN_SMOOTH)
                        .width(2.0),
                );
                for (name, points, colour) in terms {
                    p.line(Line::new(name, PlotPoints::from(points)).color(colour));
                }
                p.line(
                    Line::new("validation", PlotPoints::from(val_loss.clone()))
                        .color(theme::VALIDATION)
                        .style(egui_plot::LineStyle::dashed_loose()),
                );
                p.points(
                    Points::new("validation points", PlotPoints::from(val_loss))
                        .color(theme::VALIDATION)
                        .radius(4.0),
                );
                epoch_lines(p);
            });
        return;
    }
    let acc_raw: Vec<[f64; 2]> = r
        .iterations
        .iter()
        .map(|i| [i.iteration as f64, i.accuracy * 100.0])
        .collect();
    let acc_smooth = smooth(
        r.iterations
            .iter()
            .map(|i| (i.iteration as f64, i.accuracy * 100.0)),
        0.1,
    );
    let val_acc: Vec<[f64; 2]> = r
        .validations
        .iter()
        .map(|v| [v.iteration as f64, v.accuracy * 100.0])
        .collect();
    iteration_plot("accuracy-plot", h, total, "accuracy %")
        .include_y(100.0)
        .show(ui, |p| {
            p.line(
                Line::new("training", PlotPoints::from(acc_raw))
                    .color(theme::TRAIN.gamma_multiply(0.4)),
            );
            p.line(
                Line::new("training (smoothed)", PlotPoints::from(acc_smooth))
                    .color(theme::TRAIN_SMOOTH)
                    .width(2.0),
            );
            p.line(
                Line::new("validation", PlotPoints::from(val_acc.clone()))
                    .color(theme::VALIDATION)
                    .style(egui_plot::LineStyle::dashed_loose()),
            );
            p.points(
                Points::new("validation points", PlotPoints::from(val_acc))
                    .color(theme::VALIDATION)
                    .radius(4.0),
            );
            epoch_lines(p);
        });
    iteration_plot("loss-plot", h, total, "loss")
        .x_axis_label("iteration")
        .show(ui, |p| {
            p.line(
                Line::new("training", PlotPoints::from(loss_raw))
                    .color(theme::TRAIN.gamma_multiply(0.4)),
            );
            p.line(
                Line::new("training (smoothed)", PlotPoints::from(loss_smooth))
                    .color(theme::TRAIN_SMOOTH)
                    .width(2.0),
            );
            p.line(
                Line::new("validation", PlotPoints::from(val_loss.clone()))
                    .color(theme::VALIDATION)
                    .style(egui_plot::LineStyle::dashed_loose()),
            );
            p.points(
                Points::new("validation points", PlotPoints::from(val_loss))
                    .color(theme::VALIDATION)
                    .radius(4.0),
            );
            epoch_lines(p);
        });
}

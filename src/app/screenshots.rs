//! `graft --screenshots DIR`: drives the real window through the whole loop (network, data,
//! training with live plots, results) and saves a PNG of each view, then quits; the same for
//! a comparison and for detection (`GRAFT_SHOT`). Run under Xvfb by tools/screenshots.sh.

use super::{AppCommand, GraftApp, Tab};
use std::path::PathBuf;

pub struct Script {
    dir: PathBuf,
    stage: usize,
    wait: u32,
    shot: Option<String>,
    pub done: bool,
}

impl Script {
    /// `GRAFT_SHOT=compare` runs the comparison script instead, `GRAFT_SHOT=detect` the
    /// detection script on the box dataset `GRAFT_SHOT_DATA` names, `GRAFT_SHOT=sound` the
    /// data panel on the sound folder it names, `GRAFT_SHOT=large` the image browser on the
    /// (large) image folder it names (tools/screenshots.sh).
    pub fn new(dir: PathBuf) -> Self {
        let stage = match std::env::var("GRAFT_SHOT").as_deref() {
            Ok("compare") => 40,
            Ok("detect") => 60,
            Ok("sound") => 80,
            Ok("large") => 90,
            _ => 0,
        };
        Script {
            dir,
            stage,
            wait: 0,
            shot: None,
            done: false,
        }
    }

    /// Once the window is idle: opens the folder `GRAFT_SHOT_DATA` names (`what` it should
    /// be, for the message when it names none) on the Data tab. True when it did.
    fn open_shot_data(&mut self, app: &mut GraftApp, what: &str) -> bool {
        if app.ws.is_none() || app.is_busy() {
            return false;
        }
        let _ = std::fs::create_dir_all(&self.dir);
        match std::env::var_os("GRAFT_SHOT_DATA") {
            Some(d) => app.push(AppCommand::OpenDataset(PathBuf::from(d))),
            None => {
                eprintln!("GRAFT_SHOT_DATA names no {what}");
                self.stage = 99;
                return false;
            }
        }
        app.tab = Tab::Data;
        self.wait = 5;
        true
    }

    fn shoot(&mut self, ctx: &egui::Context, name: &str) {
        self.shot = Some(name.into());
        ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(egui::UserData::default()));
    }

    pub fn step(&mut self, app: &mut GraftApp, ctx: &egui::Context) {
        ctx.request_repaint();
        if let Some(name) = self.shot.clone() {
            let image = ctx.input(|i| {
                i.raw.events.iter().find_map(|e| match e {
                    egui::Event::Screenshot { image, .. } => Some(image.clone()),
                    _ => None,
                })
            });
            if let Some(img) = image {
                let path = self.dir.join(format!("{name}.png"));
                let pixels: Vec<u8> = img.pixels.iter().flat_map(|p| p.to_array()).collect();
                let size = [img.size[0] as u32, img.size[1] as u32];
                match crate::files::write_png(&path, &pixels, size, image::ExtendedColorType::Rgba8)
                {
                    Ok(()) => eprintln!("screenshot: {}", path.display()),
                    Err(e) => eprintln!("screenshot {name}: {e}"),
                }
                self.shot = None;
                self.stage += 1;
            }
            return;
        }
        if self.wait > 0 {
            self.wait -= 1;
            return;
        }
        match self.stage {
            // Network and sample data open: adapt the head and freeze the backbone.
            0 => {
                if app.ws.is_some() && app.data.train.is_some() && !app.is_busy() {
                    let _ = std::fs::create_dir_all(&self.dir);
                    app.push(AppCommand::AdaptHead);
                    app.push(AppCommand::FreezeBackbone);
                    app.options.epochs = 12;
                    app.options.batch_size = 16;
                    app.options.learning_rate = 2e-3;
                    app.tab = Tab::Network;
                    self.stage = 1;
                    self.wait = 5;
                }
            }
            1 => {
                // The whole network fitted: frozen backbone tinted, the new head in its
                // colour, the cached-feature cut marked. With GoogLeNet (the script's second
                // run) instead: its first inception block opened in place, then stop.
                app.graph.open_blocks.clear();
                if let Some(ws) = &app.ws
                    && crate::graph::blocks::blocks(&ws.network).contains_key("inception3a")
                {
                    app.graph.open_blocks.insert("inception3a".into());
                    app.graph.invalidate();
                    app.push(AppCommand::FitView);
                    self.stage = 20;
                    self.wait = 30;
                    return;
                }
                app.graph.invalidate();
                app.push(AppCommand::FitView);
                self.stage = 2;
                self.wait = 30;
            }
            20 => self.shoot(ctx, "graph_googlenet"),
            // Comparison: every gallery network ticked and compared on the sample data.
            40 => {
                if app.ws.is_some() && app.data.train.is_some() && !app.is_busy() {
                    let _ = std::fs::create_dir_all(&self.dir);
                    app.gallery.show();
                    app.gallery.open = false;
                    if let Some((catalog, _)) = &app.gallery.source {
                        app.compare.selected =
                            catalog.entries.iter().map(|e| e.name.clone()).collect();
                    }
                    app.options.epochs = 5;
                    app.push(AppCommand::StartCompare);
                    self.stage = 41;
                    self.wait = 5;
                }
            }
            41 => {
                if app.compare.job.is_none() {
                    self.stage = 42;
                    self.wait = 30;
                }
            }
            42 => self.shoot(ctx, "compare"),
            43 => self.stage = 99,
            // Detection: a box dataset, the head added, a short frozen-backbone run, results,
            // and the detector on one validation image.
            60 => {
                if self.open_shot_data(app, "box dataset") {
                    self.stage = 61;
                }
            }
            61 => {
                if app.data.boxes.is_some() && !app.is_busy() {
                    self.stage = 62;
                    self.wait = 30;
                }
            }
            62 => self.shoot(ctx, "data_boxes"),
            // Each command's edit lands a frame later, so the next waits.
            63 => {
                app.push(AppCommand::AddDetectionHead);
                self.stage = 70;
                self.wait = 5;
            }
            70 => {
                app.push(AppCommand::FreezeBackbone);
                self.stage = 71;
                self.wait = 5;
            }
            71 => {
                app.options.epochs = 30;
                app.options.batch_size = 16;
                app.options.learning_rate = 1e-3;
                app.options.detection.augmentation = None;
                app.push(AppCommand::StartTraining);
                self.stage = 64;
                self.wait = 5;
            }
            64 => {
                if app.run.as_ref().is_some_and(|r| r.finished) {
                    app.tab = Tab::Training;
                    self.stage = 65;
                    self.wait = 20;
                }
            }
            65 => self.shoot(ctx, "training_detect"),
            66 => {
                app.tab = Tab::Results;
                let image = app
                    .data
                    .validation
                    .as_ref()
                    .and_then(|v| v.samples.iter().find(|s| s.objects.len() >= 2))
                    .map(|s| s.path.clone());
                if let Some(p) = image {
                    app.push(AppCommand::Classify(p));
                }
                self.stage = 67;
                self.wait = 5;
            }
            67 => {
                if !app.is_busy() {
                    self.stage = 68;
                    self.wait = 40;
                }
            }
            68 => self.shoot(ctx, "results_detect"),
            69 => self.stage = 99,
            // Sound: a folder of clips in the data panel (spectrograms, seconds per class, one
            // clip's waveform, the front end's settings) with augmentation on and previewed.
            80 => {
                if self.open_shot_data(app, "sound folder") {
                    app.options.sound_augmentation =
                        Some(crate::audio::front::AudioAugmentation::default());
                    self.stage = 81;
                }
            }
            81 => {
                let sounds = app
                    .data
                    .train
                    .as_ref()
                    .is_some_and(|d| matches!(d.media, crate::data::Media::Sounds(_)));
                if sounds && !app.is_busy() {
                    if let (Some(train), Some(settings)) = (&app.data.train, &app.data.settings) {
                        // One clip opened, as a click on its thumbnail does.
                        if let Some(sample) = train.samples.iter().find(|s| s.label == 0) {
                            app.data
                                .clip
                                .open(ctx, sample.clone(), settings.audio.clone());
                        }
                        app.data.preview_job = Some(super::sound_panel::augmentation_preview(
                            ctx,
                            train,
                            settings.audio.clone(),
                            crate::audio::front::AudioAugmentation::default(),
                            app.options.seed,
                        ));
                    }
                    self.stage = 82;
                    self.wait = 10;
                }
            }
            82 => {
                if app.data.preview_job.is_none() {
                    self.stage = 83;
                    self.wait = 30;
                }
            }
            83 => self.shoot(ctx, "data_sounds"),
            84 => self.stage = 99,
            // A large image folder: the Data tab with the browser open, scrolled a way in.
            90 => {
                if self.open_shot_data(app, "image folder") {
                    self.stage = 91;
                }
            }
            91 => {
                if app.data.train.is_some() && !app.is_busy() {
                    app.data.browse_open = Some(true);
                    self.stage = 92;
                    self.wait = 5;
                }
            }
            92 => {
                app.data.browse_scroll = Some(12_000.0);
                self.stage = 93;
                self.wait = 60;
            }
            93 => self.shoot(ctx, "data_browse"),
            94 => self.stage = 99,
            2 => self.shoot(ctx, "graph"),
            3 => {
                // The gallery over the graph (sorted by published accuracy).
                app.gallery.show();
                self.stage = 30;
                self.wait = 20;
            }
            30 => self.shoot(ctx, "gallery"),
            31 => {
                app.gallery.open = false;
                app.tab = Tab::Data;
                app.options.augmentation = None;
                self.stage = 4;
                self.wait = 30;
            }
            4 => self.shoot(ctx, "data"),
            5 => {
                app.push(AppCommand::StartTraining);
                self.stage = 6;
                self.wait = 5;
            }
            6 => {
                let total = app.run.as_ref().map_or(1, |r| r.total_iterations.max(1));
                let finished = app.run.as_ref().is_some_and(|r| r.finished);
                if app.training_iterations() * 10 >= total * 6 || finished {
                    self.stage = 7;
                }
            }
            7 => self.shoot(ctx, "training"),
            8 => {
                if app.run.as_ref().is_none_or(|r| r.finished) {
                    app.tab = Tab::Results;
                    self.stage = 9;
                    self.wait = 40;
                }
            }
            9 => self.shoot(ctx, "results"),
            _ => {
                self.done = true;
                app.allow_close = true;
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
        }
    }
}

/// `graft --frame-bench OUT.json --model M.onnx`: measures how long the UI thread spends per
/// frame on the Network tab while full fine-tuning keeps the CPU cores busy, in three views of
/// the graph (every block open and fitted to the window; every block open, zoomed in on one
/// node; the default collapsed view), and writes the percentiles as JSON. Run under Xvfb by
/// tools/frame_bench.sh. With `--data DIR` it measures the Data tab on that folder instead
/// (`DATA_VIEWS`: the tab as opened, the image browser scrolled fast through every image, the
/// split slider moved every frame).
pub struct FrameBench {
    out: PathBuf,
    stage: usize,
    since: std::time::Instant,
    /// Frame times (ms) per measured view, in `views()` order.
    times: [Vec<f32>; 3],
    nodes: usize,
    /// Measuring the Data tab (`--data`), not the Network tab while training.
    data: bool,
    /// The browser's scroll offset (data views).
    scroll: f32,
    pub done: bool,
}

const VIEWS: [&str; 3] = ["expanded_fitted", "expanded_zoomed_in", "collapsed_fitted"];
const DATA_VIEWS: [&str; 3] = ["data_tab", "browse_scrolling", "split_slider_moving"];
const PHASE_SECS: u64 = 20;
/// The first measured stage.
const MEASURE: usize = 3;
/// How far the data bench scrolls the browser per frame: a fast fling, ~5 rows.
const SCROLL_PER_FRAME: f32 = 350.0;

impl FrameBench {
    pub fn new(out: PathBuf, data: bool) -> Self {
        FrameBench {
            out,
            stage: 0,
            since: std::time::Instant::now(),
            times: Default::default(),
            nodes: 0,
            data,
            scroll: 0.0,
            done: false,
        }
    }

    fn views(&self) -> [&'static str; 3] {
        if self.data { DATA_VIEWS } else { VIEWS }
    }

    /// Sets up the view measured in stage `MEASURE + view`.
    fn show_view(app: &mut GraftApp, view: usize) {
        let Some(ws) = &app.ws else { return };
        match view {
            0 | 1 => {
                app.graph.open_blocks = crate::graph::blocks::blocks(&ws.network)
                    .into_keys()
                    .collect()
            }
            _ => app.graph.open_blocks.clear(),
        }
        app.graph.invalidate();
        if view == 1 {
            // Zoom in on a node in the middle of the network.
            app.graph.focus = ws
                .network
                .nodes
                .get(ws.network.nodes.len() / 2)
                .map(|n| n.name.clone());
        } else {
            app.push(AppCommand::FitView);
        }
    }

    /// The data bench: waits for the folder's scan, then measures each view in turn.
    fn step_data(&mut self, app: &mut GraftApp, last_frame_ms: Option<f32>) {
        match self.stage {
            0 if app.data.train.is_some() && !app.is_busy() => {
                app.tab = Tab::Data;
                self.nodes = app.data.train.as_ref().map_or(0, |d| d.samples.len());
                self.stage = MEASURE;
                self.since = std::time::Instant::now();
            }
            0 => {} // Still scanning.
            s if s < MEASURE + DATA_VIEWS.len() => {
                let view = s - MEASURE;
                if let Some(ms) = last_frame_ms {
                    self.times[view].push(ms);
                }
                match view {
                    1 => {
                        self.scroll += SCROLL_PER_FRAME;
                        app.data.browse_scroll = Some(self.scroll);
                    }
                    2 => {
                        if let Some(s) = &mut app.data.settings {
                            s.val_split = if s.val_split == 0.2 { 0.21 } else { 0.2 };
                        }
                    }
                    _ => {}
                }
                if self.since.elapsed().as_secs() >= PHASE_SECS {
                    if view == 0 {
                        app.data.browse_open = Some(true);
                    }
                    self.stage += 1;
                    self.since = std::time::Instant::now();
                }
            }
            _ => {}
        }
    }

    pub fn step(&mut self, app: &mut GraftApp, ctx: &egui::Context, last_frame_ms: Option<f32>) {
        ctx.request_repaint();
        if self.data && self.stage < MEASURE + DATA_VIEWS.len() {
            self.step_data(app, last_frame_ms);
            return;
        }
        match self.stage {
            0 => {
                if app.ws.is_some() && app.data.train.is_some() && !app.is_busy() {
                    // Full fine-tuning: every layer trains, so the CPU stays loaded for the
                    // whole measurement (a frozen backbone's cached features make training
                    // nearly free after the first pass).
                    app.push(AppCommand::AdaptHead);
                    app.options.cache_features = false;
                    app.options.epochs = 1000;
                    app.options.batch_size = 8;
                    app.options.device = crate::engine::DeviceChoice::Cpu;
                    self.stage = 1;
                }
            }
            1 => {
                app.push(AppCommand::StartTraining);
                self.stage = 2;
            }
            2 => {
                app.tab = Tab::Network;
                self.nodes = app.ws.as_ref().map_or(0, |ws| ws.network.nodes.len());
                Self::show_view(app, 0);
                self.stage = MEASURE;
                self.since = std::time::Instant::now();
            }
            s if s < MEASURE + VIEWS.len() => {
                let view = s - MEASURE;
                let training = app.run.as_ref().is_some_and(|r| r.is_running());
                if let (Some(ms), true) = (last_frame_ms, training) {
                    self.times[view].push(ms);
                }
                if self.since.elapsed().as_secs() >= PHASE_SECS {
                    if view + 1 < VIEWS.len() {
                        Self::show_view(app, view + 1);
                    }
                    self.stage += 1;
                    self.since = std::time::Instant::now();
                }
            }
            _ => {
                app.push(AppCommand::StopTraining);
                let pct = |v: &[f32], q: f32| {
                    let mut s = v.to_vec();
                    s.sort_by(f32::total_cmp);
                    s.get(((s.len() as f32 * q) as usize).min(s.len().saturating_sub(1)))
                        .copied()
                        .unwrap_or(0.0)
                };
                let mut report = if self.data {
                    serde_json::json!({
                        "samples": self.nodes,
                        "thumbnails_kept": app.data.thumbnails_kept(),
                    })
                } else {
                    serde_json::json!({ "nodes": self.nodes })
                };
                for (name, t) in self.views().iter().zip(&self.times) {
                    report[*name] = serde_json::json!({
                        "frames": t.len(),
                        "p50_ms": pct(t, 0.5),
                        "p95_ms": pct(t, 0.95),
                        "max_ms": pct(t, 1.0),
                    });
                }
                let _ = std::fs::write(
                    &self.out,
                    serde_json::to_string_pretty(&report).unwrap_or_default(),
                );
                eprintln!("frame bench: {report}");
                self.done = true;
                app.allow_close = true;
                ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            }
        }
    }
}

//! The designer, driven headless with egui_kittest: open the default network and sample
//! data, toggle a freeze, adapt the head, train, see the plot receive points, stop, export a
//! file and re-import it; undo and redo with the keyboard.

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use graft::app::{AppCommand, GraftApp, StartOptions, Tab};
use std::time::{Duration, Instant};

fn harness() -> Harness<'static, GraftApp> {
    harness_with(StartOptions::default())
}

/// A fresh, ephemeral app (no remembered project, nothing written to the config folder; file
/// dialogs in the window, as no desktop dialog can open under test) with `options`' other
/// settings (a model, a gallery, …).
fn harness_with(options: StartOptions) -> Harness<'static, GraftApp> {
    Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_eframe(move |cc| {
            GraftApp::new(
                &cc.egui_ctx,
                StartOptions {
                    fresh: true,
                    ephemeral: true,
                    builtin_file_dialog: true,
                    ..options
                },
            )
        })
}

/// Steps frames until `done` holds (background work finishes on other threads).
fn wait_until(
    h: &mut Harness<'static, GraftApp>,
    what: &str,
    mut done: impl FnMut(&GraftApp) -> bool,
) {
    let start = Instant::now();
    while !done(h.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "timed out waiting for {what}"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    h.step();
}

/// Steps the window until `shown` finds what it looks for in the UI.
fn until_shown(
    h: &mut Harness<'static, GraftApp>,
    what: &str,
    shown: impl Fn(&Harness<'static, GraftApp>) -> bool,
) {
    let start = Instant::now();
    while !shown(h) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_whole_loop_in_the_window() {
    let mut h = harness();
    wait_until(&mut h, "the default network and sample data", |a| {
        a.workspace().is_some() && a.dataset_classes().is_some() && !a.is_busy()
    });
    assert_eq!(
        h.state().dataset_classes().unwrap(),
        vec!["bag", "sandal", "sneaker", "trouser"]
    );

    // Adapt the head with the button in the Network tab.
    h.get_by_label("✚ Adapt to dataset").click();
    h.run_steps(3);
    let ws = h.state().workspace().unwrap();
    assert_eq!(
        ws.network.metadata.labels,
        vec!["bag", "sandal", "sneaker", "trouser"]
    );

    // Freeze the backbone; then toggle one layer with the inspector and undo it with Ctrl+Z.
    h.get_by_label("🔒 Freeze backbone").click();
    h.run_steps(3);
    let frozen = |a: &GraftApp| {
        a.workspace()
            .unwrap()
            .network
            .nodes
            .iter()
            .filter(|n| n.frozen)
            .count()
    };
    let before = frozen(h.state());
    assert!(before > 100, "the backbone is frozen ({before} layers)");
    let conv = h.state().workspace().unwrap().network.nodes[1].name.clone();
    h.state_mut().push(AppCommand::Select(Some(conv.clone())));
    h.run_steps(3);
    h.get_by_label("Frozen (weights do not change)").click();
    h.run_steps(3);
    assert_eq!(
        frozen(h.state()),
        before - 1,
        "the checkbox unfreezes one layer"
    );
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    h.run_steps(3);
    assert_eq!(frozen(h.state()), before, "Ctrl+Z undoes it");
    h.key_press_modifiers(
        egui::Modifiers::COMMAND | egui::Modifiers::SHIFT,
        egui::Key::Z,
    );
    h.run_steps(3);
    assert_eq!(frozen(h.state()), before - 1, "Ctrl+Shift+Z redoes it");
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    h.run_steps(3);

    // Train for a long time; the plot receives points; then Stop.
    h.state_mut().push(AppCommand::SetTab(Tab::Training));
    h.run_steps(2);
    {
        let o = h.state_mut().options_mut();
        o.epochs = 500;
        o.batch_size = 8;
        o.device = graft::engine::DeviceChoice::Cpu;
    }
    h.get_by_label("▶ Train").click();
    wait_until(&mut h, "training iterations", |a| {
        a.training_iterations() >= 5
    });
    h.get_by_label("⏹ Stop").click();
    wait_until(&mut h, "training to stop", |a| !a.is_busy());
    assert!(h.state().workspace().unwrap().trained);
    assert!(
        h.state().evaluation().is_some(),
        "validation results after training"
    );

    // Export and re-import.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trained.onnx");
    h.state_mut().push(AppCommand::Export(path.clone()));
    wait_until(&mut h, "the export", |_| {
        path.exists() && dir.path().join("trained.labels.txt").exists()
    });
    wait_until(&mut h, "the export job", |a| !a.is_busy());
    let again = graft::onnx::import(&path).unwrap();
    assert_eq!(
        again.network.metadata.labels,
        vec!["bag", "sandal", "sneaker", "trouser"]
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("trained.labels.txt")).unwrap(),
        "bag\nsandal\nsneaker\ntrouser\n"
    );
}

/// Replacing unsaved work asks first: Cancel keeps everything, Discard goes ahead.
#[test]
fn the_unsaved_changes_prompt_guards_new_project() {
    let mut h = harness();
    wait_until(&mut h, "the default network and sample data", |a| {
        a.workspace().is_some() && a.dataset_classes().is_some() && !a.is_busy()
    });
    h.get_by_label("✚ Adapt to dataset").click();
    h.run_steps(3);
    assert!(h.state().is_dirty(), "an edit is an unsaved change");
    let adapted = h.state().workspace().unwrap().network.clone();

    h.state_mut().push(AppCommand::NewProject);
    h.run_steps(3);
    assert!(h.state().is_asking_to_save());
    h.get_by_label("Cancel").click();
    h.run_steps(3);
    assert!(!h.state().is_asking_to_save());
    assert_eq!(
        h.state().workspace().unwrap().network,
        adapted,
        "Cancel keeps the work"
    );
    assert!(h.state().is_dirty());

    h.state_mut().push(AppCommand::NewProject);
    h.run_steps(3);
    assert!(h.state().is_asking_to_save());
    h.get_by_label("Discard").click();
    wait_until(&mut h, "the new project", |a| {
        !a.is_busy() && a.workspace().is_some_and(|w| w.network != adapted)
    });
    assert!(!h.state().is_asking_to_save());
}

/// With no desktop dialog, "Export ONNX…" opens Graft's own file browser in the window
/// instead of doing nothing.
#[test]
fn export_without_a_desktop_dialog_opens_the_in_window_browser() {
    let mut h = harness();
    wait_until(&mut h, "the default network", |a| {
        a.workspace().is_some() && !a.is_busy()
    });
    assert!(!h.state().file_browser_open());
    h.state_mut().push(AppCommand::PickExport);
    h.run_steps(4);
    assert!(h.state().file_browser_open());
    // The browser is drawn: its title is on screen.
    assert!(h.query_all_by_label("Export ONNX").next().is_some());
}

/// Each tab as the software renderer draws it, against the PNGs in tests/snapshots/
/// (`UPDATE_SNAPSHOTS=1 cargo test --release --test suite gui::` rewrites them after a deliberate
/// change; look at them before committing). The frame time, which differs every run, is
/// hidden; everything else on screen is deterministic once the background work is done.
#[test]
fn each_tab_matches_its_snapshot() {
    let mut h = harness_with(StartOptions {
        hide_frame_time: true,
        ..Default::default()
    });
    wait_until(&mut h, "the default network and sample data", |a| {
        a.workspace().is_some() && a.dataset_classes().is_some() && !a.is_busy()
    });
    // The Data tab shows the dataset's path: open the sample data through a link whose path
    // is the same in every checkout.
    let link = std::env::temp_dir().join("graft-snapshot-sample-data");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(graft::app::sample_data_dir(), &link).unwrap();
    h.state_mut().push(AppCommand::OpenDataset(link.clone()));
    // The linked folder read, not the sample data already open: the status line must say
    // what the commands below did, whichever thread finishes first.
    wait_until(&mut h, "the linked dataset", |a| {
        !a.is_busy() && a.dataset_root() == Some(link.as_path())
    });
    h.state_mut().push(AppCommand::AdaptHead);
    h.state_mut().push(AppCommand::FreezeBackbone);
    // Software rendering differs from a GPU's by a little anti-aliasing, never by layout; and
    // a handful of pixels where graph wires meet nodes differ between runs of the same build
    // (4 seen). A moved widget or changed text differs by hundreds.
    let options = egui_kittest::SnapshotOptions::new()
        .threshold(2.0)
        .max_failed_pixels(20);
    let mut results = egui_kittest::SnapshotResults::new();
    for (tab, name) in [
        (Tab::Network, "tab_network"),
        (Tab::Data, "tab_data"),
        (Tab::Training, "tab_training"),
        (Tab::Results, "tab_results"),
    ] {
        h.state_mut().push(AppCommand::SetTab(tab));
        // The fit made when the network loaded depends on which frame that was (the panels'
        // widths settle over the first frames): fit again now that they have.
        h.state_mut().push(AppCommand::FitView);
        // Thumbnails and previews load on other threads: let them land, and the status line
        // (which shows for 12 s) settle to the same text every run.
        for _ in 0..40 {
            h.step();
            std::thread::sleep(Duration::from_millis(25));
        }
        wait_until(&mut h, "background work", |a| !a.is_busy());
        results.add(h.try_snapshot_options(name, &options));
    }
    results.unwrap();
}

/// A mouse click at a screen point (AccessKit's click does not reach widgets in the graph's
/// zoomed layer).
fn click_at(h: &mut Harness<'static, GraftApp>, pos: egui::Pos2) {
    h.hover_at(pos);
    h.run_steps(1);
    for pressed in [true, false] {
        h.event(egui::Event::PointerButton {
            pos,
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: Default::default(),
        });
        h.run_steps(1);
    }
    h.run_steps(2);
}

/// The graph stays legible: GoogLeNet (a Caffe2-style inception network exported from
/// torchvision), its first inception block opened in place, fitted to view. Every node title
/// on screen is at least 11 px high, read from the rendered layout (AccessKit bounds, in
/// graph units, through the graph's zoom and pan).
#[test]
fn an_opened_inception_block_fitted_to_view_has_readable_titles() {
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/googlenet_op11/model.onnx"
    );
    let mut h = harness_with(StartOptions {
        model: Some(model.into()),
        ..Default::default()
    });
    wait_until(&mut h, "GoogLeNet", |a| {
        a.workspace()
            .is_some_and(|w| w.network.node("/inception3a/Concat").is_some())
            && !a.is_busy()
    });
    h.state_mut().push(AppCommand::FitView);
    h.run_steps(3);
    // Closed, the block is one node; a click on its title opens it in place.
    assert!(h.query_by_label_contains("anch1/conv").is_none());
    let at = h
        .state()
        .graph_to_screen(h.get_by_label("inception3a").rect())
        .center();
    click_at(&mut h, at);
    // Opened in place and kept in sight: its first tower is on screen before any fit.
    let tower = h
        .state()
        .graph_to_screen(h.get_by_label_contains("anch1/conv").rect());
    assert!(
        tower.min.x >= 0.0 && tower.min.y >= 0.0 && tower.max.x <= 1400.0 && tower.max.y <= 900.0,
        "opened block's tower at {tower:?}"
    );
    h.state_mut().push(AppCommand::FitView);
    h.run_steps(3);
    let zoom = h.state().graph_zoom();
    if std::env::var_os("GRAFT_DEBUG_SHOT").is_some() {
        h.render().unwrap().save("/tmp/kittest_graph.png").unwrap();
    }
    // Names are elided from the start to fit a box ("…anch1/conv"): match their ends.
    let titles = [
        "inception3b",
        "maxpool2",
        "anch1/conv",
        "2.0/conv",
        "/branch4.1",
        "inception5b",
    ];
    for t in titles {
        let r = h.state().graph_to_screen(h.get_by_label_contains(t).rect());
        assert!(
            r.height() >= 11.0,
            "{t}: {:.1} px high at zoom {zoom:.2}",
            r.height()
        );
        // Fitted: every title is inside the window.
        assert!(
            r.min.x >= 0.0 && r.min.y >= 0.0 && r.max.x <= 1400.0 && r.max.y <= 900.0,
            "{t} at {r:?}"
        );
    }
    // Fitted means zoomed out (the towers and the rest fit the panel), not left at 1.
    assert!(zoom < 1.0, "zoom {zoom}");

    // Search (what the find box does): the match's closed block opens, the view centres
    // on it at a zoom where details show.
    let target = "/inception4c/branch3/branch3.0/conv/Conv";
    h.state_mut().push(AppCommand::Select(Some(target.into())));
    h.state_mut().push(AppCommand::Focus(target.into()));
    h.run_steps(4);
    // (inception3a is still open: its tower of the same name may be on screen too.)
    let centred = h
        .query_all_by_label_contains("ch3.0/conv")
        .map(|n| h.state().graph_to_screen(n.rect()))
        .any(|r| (r.center().x - 650.0).abs() < 300.0 && (r.center().y - 450.0).abs() < 250.0);
    assert!(centred, "the match is near the middle of the graph panel");

    // The minimap (the graph no longer fits): a click in its top-left corner moves the view
    // to the start of the network.
    let before = h.state().graph_to_screen(egui::Rect::ZERO).min;
    let map = h
        .state()
        .minimap_rect()
        .expect("a minimap when the graph does not fit");
    click_at(&mut h, map.left_top() + egui::vec2(3.0, 3.0));
    let after = h.state().graph_to_screen(egui::Rect::ZERO).min;
    assert!(
        after.y > before.y + 100.0,
        "view moved from {before:?} to {after:?}"
    );
}

/// Serves one file over HTTP on localhost for as long as the test runs.
fn serve_file(bytes: Vec<u8>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                bytes.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&bytes);
        }
    });
    base
}

/// The gallery in the window: cards, the "under 10 MB" filter, and "Download and open"
/// fetching a network from a local server and opening it on the dataset already loaded.
#[test]
fn the_gallery_downloads_a_network_and_keeps_the_dataset() {
    use graft::gallery::{Catalog, Place, sha256_of};
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/googlenet_op11/model.onnx"
    );
    let bytes = std::fs::read(fixture).unwrap();
    let base = serve_file(bytes.clone());
    let sha = sha256_of(std::path::Path::new(fixture)).unwrap();
    let big = "b".repeat(64);
    let catalog = Catalog::parse(
        &format!(
            r#"(entries: [
            (name: "tiny", title: "Tiny GoogLeNet", family: "Inception", file: "tiny.onnx",
             urls: ["{base}/tiny.onnx"], sha256: "{sha}", bytes: {}, opset: 11, licence: "test",
             source: "tests", layout: NCHW, input: (3, 64, 64), preprocess: None, labels: "",
             top1: Some(60.0), note: "a fixture"),
            (name: "big", title: "Big Fake", family: "VGG", file: "big.onnx",
             urls: ["{base}/big.onnx"], sha256: "{big}", bytes: 500000000, opset: 11,
             licence: "test", source: "tests", layout: NCHW, input: (3, 224, 224),
             preprocess: None, labels: "", top1: Some(70.0), note: "never downloaded"),
        ])"#,
            bytes.len()
        ),
        "test",
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let place = Place {
        cache: cache.path().into(),
        mirror: None,
    };
    let mut h = harness_with(StartOptions {
        gallery: Some((catalog, place)),
        ..Default::default()
    });
    wait_until(&mut h, "the default network and sample data", |a| {
        a.workspace().is_some() && a.dataset_classes().is_some() && !a.is_busy()
    });
    h.get_by_label("📚 Pretrained networks…").click();
    h.run_steps(3);
    assert!(h.query_by_label("Tiny GoogLeNet").is_some());
    assert!(h.query_by_label("Big Fake").is_some());
    h.get_by_label("under 10 MB").click();
    h.run_steps(3);
    assert!(
        h.query_by_label("Big Fake").is_none(),
        "a 500 MB network under 10 MB"
    );
    assert!(h.query_by_label("Tiny GoogLeNet").is_some());
    h.get_by_label("Download and open").click();
    wait_until(&mut h, "the downloaded network", |a| {
        !a.is_busy()
            && a.workspace()
                .is_some_and(|w| w.network.node("/inception3a/Concat").is_some())
    });
    // The dataset stayed; the file is in the cache, measured once.
    assert_eq!(h.state().dataset_classes().unwrap().len(), 4);
    assert!(cache.path().join("tiny.onnx").is_file());
    assert!(cache.path().join("facts.ron").is_file());
    h.get_by_label("📚 Pretrained networks…").click();
    h.run_steps(3);
    assert!(h.query_by_label("✓ downloaded").is_some());
    assert!(
        h.query_by_label_contains("params").is_some(),
        "measured facts on the card"
    );

    // Compare: tick both cards (the filter off again), run: a row per network that could be
    // had. The second one cannot be downloaded (its checksum is made up): that is reported
    // and the comparison goes on without it.
    h.get_by_label("under 10 MB").click();
    h.run_steps(2);
    let ticks: Vec<_> = h.query_all_by_label("compare").collect();
    assert_eq!(ticks.len(), 2);
    for t in ticks {
        t.click();
    }
    h.run_steps(2);
    h.get_by_label("Compare 2 ticked on my data…").click();
    h.run_steps(2);
    wait_until(&mut h, "the comparison", |a| !a.is_busy());
    let rows = h.state().comparison();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].model, "Tiny GoogLeNet");
    assert!(rows[0].pareto && rows[0].inference_images_per_s > 0.0);
    assert!((0.0..=1.0).contains(&rows[0].validation_accuracy));
    assert!(
        h.query_all_by_label_contains("not compared: Big Fake")
            .count()
            >= 1,
        "the failure is named"
    );
    // Use it: the network opens with its trained head for the dataset's 4 classes.
    h.get_by_label("Use this one").click();
    wait_until(&mut h, "the compared network", |a| {
        !a.is_busy()
            && a.workspace()
                .is_some_and(|w| w.network.metadata.labels.len() == 4)
    });
}

/// A network whose file leaves the image size open is built at the dataset's typical side
/// (the sample's 28 px images → 32), says so in the inspector, and is rebuilt at the side
/// typed there, with its edits replayed and the choice saved in the project.
#[test]
fn an_open_size_network_takes_its_size_from_the_data_then_from_the_inspector() {
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/open_size/open.onnx"
    );
    let mut h = harness_with(StartOptions {
        model: Some(model.into()),
        ..Default::default()
    });
    let side = |a: &GraftApp| a.workspace().map(|w| w.network.input.shape[2]);
    wait_until(&mut h, "the network rebuilt at the data's side", |a| {
        side(a) == Some(32) && a.dataset_classes().is_some() && !a.is_busy()
    });
    // Nothing selected: the inspector shows the network, its note and the size field.
    h.get_by_label("Image size");
    h.get_by_label("Rebuild");
    assert!(
        h.state()
            .workspace()
            .unwrap()
            .network
            .metadata
            .notes
            .iter()
            .any(|n| n.contains("32×32"))
    );

    h.get_by_label("✚ Adapt to dataset").click();
    h.run_steps(3);
    h.state_mut().push(AppCommand::SetImageSize(Some(64)));
    wait_until(&mut h, "the network rebuilt at 64", |a| {
        side(a) == Some(64) && !a.is_busy()
    });
    let ws = h.state().workspace().unwrap();
    assert_eq!(
        ws.network.metadata.labels.len(),
        4,
        "the adapted head replayed"
    );
    assert!(h.state().is_dirty(), "a chosen size is an unsaved change");
    let project = h.state().project();
    assert_eq!(project.input_size, Some(64));
}

/// Object detection in the window: open a YOLO box dataset, "Add detection head" (anchors
/// from the boxes), freeze the backbone, train a few epochs on the CPU, see validation mAP in
/// the plots' records and the results, then export a file whose decoding holds NMS.
#[test]
fn a_box_dataset_trains_a_detector_in_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("boxes");
    crate::common::write_box_dataset(&data, 24, 5);
    let mut h = harness();
    wait_until(&mut h, "the default network", |a| {
        a.workspace().is_some() && !a.is_busy()
    });
    h.state_mut().push(AppCommand::OpenDataset(data.clone()));
    wait_until(&mut h, "the box dataset", |a| {
        a.dataset_classes().is_some_and(|c| c == ["disc", "square"]) && !a.is_busy()
    });
    // Two scales, as the data panel's "Scales" choice sets them: the whole flow (cached
    // features of both maps, training, validation, export) runs on a two-map head.
    h.state_mut().options_mut().detection.scales = 2;
    h.state_mut().push(AppCommand::SetTab(Tab::Network));
    h.run_steps(2);
    h.get_by_label("✚ Add detection head").click();
    h.run_steps(3);
    let spec = graft::graph::edit::DetectionSpec::of(&h.state().workspace().unwrap().network)
        .expect("a detection head");
    assert_eq!(spec.classes, ["disc", "square"]);
    let anchors: Vec<usize> = spec.scales.iter().map(|s| s.anchors.len()).collect();
    assert_eq!(
        anchors,
        [5, 5],
        "the data panel's default anchor count, per scale"
    );
    h.get_by_label("🔒 Freeze backbone").click();
    h.run_steps(3);

    h.state_mut().push(AppCommand::SetTab(Tab::Training));
    h.run_steps(2);
    {
        let o = h.state_mut().options_mut();
        o.epochs = 3;
        o.batch_size = 8;
        o.learning_rate = 0.002;
        o.device = graft::engine::DeviceChoice::Cpu;
        o.detection.augmentation = None;
    }
    h.get_by_label("▶ Train").click();
    wait_until(&mut h, "training to finish", |a| {
        a.detection().is_some() && !a.is_busy()
    });
    let v = h.state().last_validation().expect("validations");
    assert!(v.map.is_some(), "validation reports mAP: {v:?}");
    let d = h.state().detection().unwrap();
    assert_eq!(d.classes, ["disc", "square"]);
    assert!(!d.images.is_empty());
    h.state_mut().push(AppCommand::SetTab(Tab::Results));
    h.run_steps(3);
    h.get_by_label("🖼 Detect in an image…");
    // The suppression the Results tab sets is the export's (score, IoU, most boxes).
    h.get_by_label("At most");
    h.state_mut()
        .options_mut()
        .detection
        .suppression
        .max_detections = 7;

    let path = dir.path().join("detector.onnx");
    h.state_mut().push(AppCommand::Export(path.clone()));
    wait_until(&mut h, "the export", |a| path.exists() && !a.is_busy());
    let bytes = std::fs::read(&path).unwrap();
    let model = <onnx_ir::ModelProto as onnx_ir::Message>::parse_from_bytes(&bytes).unwrap();
    let graph = model.graph.as_ref().unwrap();
    let nms = graph
        .node
        .iter()
        .find(|n| n.op_type == "NonMaxSuppression")
        .expect("NMS inside");
    let max = graph
        .initializer
        .iter()
        .find(|t| t.name == nms.input[2])
        .unwrap();
    let max = graft::onnx::tensor::from_proto(max).unwrap().to_i64();
    assert_eq!(max, [7]);
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        outputs,
        [
            "boxes",
            "scores",
            "classes",
            "batch_index",
            "detections",
            "detections_1"
        ]
    );
    let again = graft::onnx::import(&path).unwrap();
    assert!(graft::graph::edit::DetectionSpec::of(&again.network).is_some());
}

/// A folder of sound clips: read as sounds (spectrograms, seconds per class), a frozen
/// backbone trained on them, "Classify a sound file…" offered, and the export takes raw audio.
#[test]
fn a_sound_folder_trains_in_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("sounds");
    crate::common::write_sounds(&data, 8, 3);
    let mut h = harness();
    wait_until(&mut h, "the default network", |a| {
        a.workspace().is_some() && !a.is_busy()
    });
    h.state_mut().push(AppCommand::OpenDataset(data.clone()));
    wait_until(&mut h, "the sound folder", |a| {
        a.dataset_classes()
            .is_some_and(|c| c == ["clicks", "noise", "tone"])
            && !a.is_busy()
    });
    h.run_steps(3);
    h.get_by_label_contains("Sound clips: 24 clips from 24 files in 3 classes");
    // A thumbnail opens its clip; ▶ plays it: on a machine with sound the stop button shows,
    // on one without (this one, CI) a note says why — either way no error and no panic.
    until_shown(&mut h, "a clip's thumbnail", |h| {
        h.query_by_label("Open clip tone_0.wav").is_some()
    });
    h.get_by_label("Open clip tone_0.wav").click();
    until_shown(&mut h, "the clip view", |h| h.query_by_label("▶").is_some());
    h.get_by_label_contains("tone_0.wav from 0.00 s");
    h.get_by_label("▶").click();
    until_shown(&mut h, "playback or a note", |h| {
        h.query_by_label("■").is_some() || h.query_by_label_contains("no sound output").is_some()
    });
    // Nothing to apply until a spectrogram setting changes.
    assert!(
        h.query_by_label("Apply and read the folder again")
            .is_none()
    );

    h.state_mut().push(AppCommand::SetTab(Tab::Network));
    h.run_steps(2);
    h.get_by_label("✚ Adapt to dataset").click();
    h.run_steps(3);
    h.get_by_label("🔒 Freeze backbone").click();
    h.run_steps(3);
    h.state_mut().push(AppCommand::SetTab(Tab::Training));
    h.run_steps(2);
    {
        let o = h.state_mut().options_mut();
        o.epochs = 3;
        o.batch_size = 8;
        o.learning_rate = 0.01;
        o.device = graft::engine::DeviceChoice::Cpu;
    }
    h.get_by_label("▶ Train").click();
    wait_until(&mut h, "training to finish", |a| {
        a.evaluation().is_some() && !a.is_busy()
    });
    assert!(
        h.state().sound_network(),
        "the trained network keeps its front end"
    );
    h.state_mut().push(AppCommand::SetTab(Tab::Results));
    h.run_steps(3);
    h.get_by_label("🔊 Classify a sound file…");

    let path = dir.path().join("sounds.onnx");
    h.state_mut().push(AppCommand::Export(path.clone()));
    wait_until(&mut h, "the export", |a| path.exists() && !a.is_busy());
    let bytes = std::fs::read(&path).unwrap();
    let model = <onnx_ir::ModelProto as onnx_ir::Message>::parse_from_bytes(&bytes).unwrap();
    let graph = model.graph.as_ref().unwrap();
    assert_eq!(graph.input[0].name, "waveform");
    assert!(graph.node.iter().any(|n| n.op_type == "STFT"));
    let again = graft::onnx::import(&path).unwrap();
    assert!(graft::audio::front::FrontEnd::of(&again.network).is_some());
}

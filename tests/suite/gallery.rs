//! The gallery's downloads against a local HTTP server started by the test (no internet
//! here): success, a wrong checksum, a connection cut mid-file then resumed with a Range
//! request, a 404 then the next URL, cancel, a mirror folder, no network at all; and the
//! command line (`graft models pull/path`, `graft inspect NAME`) on a catalogue naming a
//! fixture.

use crate::common;

use graft::gallery::{Catalog, DownloadError, Entry, Layout, Place, Progress, pull, sha256_of};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the server answers a path.
#[derive(Clone)]
enum Mode {
    /// The file, honouring `Range: bytes=N-`.
    Serve,
    /// The first answer promises the whole file and stops after this many bytes.
    CutFirst(usize),
    /// Every answer is this status.
    Status(u16),
    /// 4 KiB every 20 ms.
    Slow,
}

/// What the server saw: path and Range header per request.
type Log = Arc<Mutex<Vec<(String, Option<String>)>>>;

/// Path, body, how to answer, how many times it was asked.
type Route = (String, Vec<u8>, Mode, AtomicUsize);

struct Server {
    base: String,
    log: Log,
}

fn serve(routes: Vec<(&str, Vec<u8>, Mode)>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let routes: Arc<Vec<Route>> = Arc::new(
        routes
            .into_iter()
            .map(|(p, b, m)| (p.to_string(), b, m, AtomicUsize::new(0)))
            .collect(),
    );
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (routes, seen) = (routes.clone(), seen.clone());
            std::thread::spawn(move || answer(stream, &routes, &seen));
        }
    });
    Server { base, log }
}

fn answer(mut s: TcpStream, routes: &[Route], log: &Log) {
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    log.lock().unwrap().push((path.clone(), range.clone()));
    let Some((_, body, mode, count)) = routes.iter().find(|r| r.0 == path) else {
        let _ = s
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let nth = count.fetch_add(1, Ordering::SeqCst);
    let from = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok())
        .unwrap_or(0);
    let head = |status: &str, len: usize, extra: &str| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\n{extra}Connection: close\r\n\r\n")
    };
    match mode {
        Mode::Status(code) => {
            let _ = s.write_all(head(&format!("{code} Nope"), 0, "").as_bytes());
        }
        Mode::CutFirst(n) if nth == 0 => {
            let _ = s.write_all(head("200 OK", body.len(), "").as_bytes());
            let _ = s.write_all(&body[..*n]);
        }
        Mode::Slow => {
            let _ = s.write_all(head("200 OK", body.len(), "").as_bytes());
            for chunk in body.chunks(4096) {
                if s.write_all(chunk).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        _ if from > 0 => {
            let extra = format!(
                "Content-Range: bytes {from}-{}/{}\r\n",
                body.len() - 1,
                body.len()
            );
            let _ = s.write_all(head("206 Partial Content", body.len() - from, &extra).as_bytes());
            let _ = s.write_all(&body[from..]);
        }
        _ => {
            let _ = s.write_all(head("200 OK", body.len(), "").as_bytes());
            let _ = s.write_all(body);
        }
    }
}

fn fixture() -> (PathBuf, Vec<u8>) {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/googlenet_op11/model.onnx"
    ));
    let bytes = std::fs::read(&p).unwrap();
    (p, bytes)
}

fn entry(file: &str, bytes: &[u8], sha: &str, urls: Vec<String>) -> Entry {
    Entry {
        name: "tiny-googlenet".into(),
        title: "Tiny GoogLeNet".into(),
        family: "Inception".into(),
        file: file.into(),
        embedded: false,
        urls,
        sha256: sha.into(),
        bytes: bytes.len() as u64,
        opset: 11,
        licence: "test".into(),
        source: "tests/fixtures".into(),
        layout: Layout::NCHW,
        input: (3, 64, 64),
        preprocess: None,
        labels: "ImageNet-1k".into(),
        top1: None,
        note: String::new(),
    }
}

fn place(dir: &Path) -> Place {
    Place {
        cache: dir.to_path_buf(),
        mirror: None,
    }
}

/// Files in the cache folder.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn downloads_check_resume_fall_back_and_cancel() {
    let (path, bytes) = fixture();
    let sha = sha256_of(&path).unwrap();
    let half = bytes.len() / 2;
    let server = serve(vec![
        ("/ok/model.onnx", bytes.clone(), Mode::Serve),
        ("/cut/model.onnx", bytes.clone(), Mode::CutFirst(half)),
        ("/gone/model.onnx", bytes.clone(), Mode::Status(404)),
        ("/broken/model.onnx", bytes.clone(), Mode::Status(500)),
        ("/slow/model.onnx", bytes.clone(), Mode::Slow),
        (
            "/wrong/model.onnx",
            bytes.iter().map(|b| b ^ 1).collect(),
            Mode::Serve,
        ),
    ]);
    let url = |p: &str| format!("{}/{p}/model.onnx", server.base);
    let never = AtomicBool::new(false);

    // Success: the file lands in the cache with the right bytes, progress reaches the end.
    let dir = tempfile::tempdir().unwrap();
    let mut last = None;
    let e = entry("model.onnx", &bytes, &sha, vec![url("ok")]);
    let got = pull(
        &e,
        &place(dir.path()),
        &mut |p: &Progress| last = Some(p.clone()),
        &never,
    )
    .unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), bytes);
    assert_eq!(
        last.map(|p| (p.done, p.total)),
        Some((bytes.len() as u64, bytes.len() as u64))
    );
    assert_eq!(listing(dir.path()), vec!["model.onnx"]);
    // Cached: no second request.
    let before = server.log.lock().unwrap().len();
    pull(&e, &place(dir.path()), &mut |_| {}, &never).unwrap();
    assert_eq!(server.log.lock().unwrap().len(), before);

    // Cut mid-file: resumed with a Range request for the rest, same bytes.
    let dir = tempfile::tempdir().unwrap();
    let e = entry("model.onnx", &bytes, &sha, vec![url("cut")]);
    let got = pull(&e, &place(dir.path()), &mut |_| {}, &never).unwrap();
    assert_eq!(std::fs::read(&got).unwrap(), bytes);
    let asked: Vec<Option<String>> = server
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == "/cut/model.onnx")
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(asked, vec![None, Some(format!("bytes={half}-"))]);

    // A partial file left by an earlier run is resumed, not fetched again.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.onnx.part"), &bytes[..1000]).unwrap();
    let e = entry("model.onnx", &bytes, &sha, vec![url("ok")]);
    pull(&e, &place(dir.path()), &mut |_| {}, &never).unwrap();
    assert_eq!(
        server.log.lock().unwrap().last().unwrap().1.as_deref(),
        Some("bytes=1000-")
    );

    // 404, then 500, then a good URL: the good one is used.
    let dir = tempfile::tempdir().unwrap();
    let e = entry(
        "model.onnx",
        &bytes,
        &sha,
        vec![url("gone"), url("broken"), url("ok")],
    );
    assert!(pull(&e, &place(dir.path()), &mut |_| {}, &never).is_ok());

    // Only failures: one message naming each URL and its reason, and the ways out.
    let e = entry("model.onnx", &bytes, &sha, vec![url("gone"), url("broken")]);
    let dir = tempfile::tempdir().unwrap();
    let err = pull(&e, &place(dir.path()), &mut |_| {}, &never)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&url("gone")) && err.contains("HTTP 404"),
        "{err}"
    );
    assert!(
        err.contains("HTTP 500") && err.contains("GRAFT_MODEL_MIRROR"),
        "{err}"
    );
    assert!(err.contains("Open ONNX file"), "{err}");
    assert!(listing(dir.path()).is_empty());

    // Wrong checksum: said, and nothing left behind.
    let e = entry("model.onnx", &bytes, &sha, vec![url("wrong")]);
    let err = pull(&e, &place(dir.path()), &mut |_| {}, &never)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("checksum mismatch") && err.contains("deleted"),
        "{err}"
    );
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));

    // No network: a closed port.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let e = entry(
        "model.onnx",
        &bytes,
        &sha,
        vec![format!("http://127.0.0.1:{port}/m.onnx")],
    );
    let err = pull(&e, &place(dir.path()), &mut |_| {}, &never).unwrap_err();
    assert!(matches!(err, DownloadError::Unreachable { .. }), "{err}");

    // Cancel: stops mid-file; the partial file is kept and the next pull resumes it.
    let cancel = AtomicBool::new(false);
    let e = entry("model.onnx", &bytes, &sha, vec![url("slow")]);
    let err = pull(
        &e,
        &place(dir.path()),
        &mut |p: &Progress| {
            if p.done > 8192 {
                cancel.store(true, Ordering::Relaxed);
            }
        },
        &cancel,
    )
    .unwrap_err();
    assert_eq!(err, DownloadError::Cancelled);
    assert_eq!(listing(dir.path()), vec!["model.onnx.part"]);
    let e = entry("model.onnx", &bytes, &sha, vec![url("ok")]);
    let got = pull(&e, &place(dir.path()), &mut |_| {}, &never).unwrap();
    assert_eq!(std::fs::read(got).unwrap(), bytes);
    assert_eq!(listing(dir.path()), vec!["model.onnx"]);

    // A mirror replaces the catalogue's URLs: a server …
    let dir = tempfile::tempdir().unwrap();
    let e = entry(
        "model.onnx",
        &bytes,
        &sha,
        vec!["http://127.0.0.1:9/never".into()],
    );
    let mirrored = Place {
        cache: dir.path().into(),
        mirror: Some(format!("{}/ok", server.base)),
    };
    assert!(pull(&e, &mirrored, &mut |_| {}, &never).is_ok());
    // … or a folder.
    let dir = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("model.onnx"), &bytes).unwrap();
    let mirrored = Place {
        cache: dir.path().into(),
        mirror: Some(folder.path().display().to_string()),
    };
    assert!(pull(&e, &mirrored, &mut |_| {}, &never).is_ok());
}

/// The command line on a catalogue (`GRAFT_GALLERY`) naming the GoogLeNet fixture served
/// locally: pull, path, inspect by name with the catalogue's class names.
#[test]
fn the_command_line_pulls_and_opens_by_name() {
    let (path, bytes) = fixture();
    let sha = sha256_of(&path).unwrap();
    let server = serve(vec![("/m/tiny.onnx", bytes.clone(), Mode::Serve)]);
    let work = tempfile::tempdir().unwrap();
    let mut e = entry(
        "tiny.onnx",
        &bytes,
        &sha,
        vec![format!("{}/m/tiny.onnx", server.base)],
    );
    e.preprocess = Some(graft::graph::Preprocess {
        bgr: true,
        ..graft::graph::Preprocess::imagenet(64)
    });
    let catalog = Catalog { entries: vec![e] };
    let list = work.path().join("gallery.ron");
    std::fs::write(&list, ron::to_string(&catalog).unwrap()).unwrap();
    let cache = work.path().join("cache");
    let graft = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_graft"))
            .args(args)
            .env("GRAFT_GALLERY", &list)
            .env("GRAFT_CACHE_DIR", &cache)
            .env_remove("GRAFT_MODEL_MIRROR")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = graft(&["models", "path", "tiny-googlenet"]);
    assert!(
        !ok && err.contains("graft models pull tiny-googlenet"),
        "{err}"
    );
    let (ok, out, err) = graft(&["models", "list"]);
    assert!(ok && out.contains("Tiny GoogLeNet"), "{out}{err}");
    let (ok, out, err) = graft(&["models", "pull", "tiny-googlenet"]);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(out.trim()).unwrap(), bytes);
    // Measured once after the download: parameters (90,500) shown by `list`.
    let (ok, out, _) = graft(&["models", "list"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("tiny-googlenet"))
        .unwrap();
    assert!(
        ok && line.contains("0.1 M") && line.ends_with("yes"),
        "{line}"
    );
    let (ok, out, _) = graft(&["models", "path", "Tiny GoogLeNet"]);
    assert!(ok && out.trim().ends_with("tiny.onnx"));
    // By name wherever a file path goes; the catalogue fills in what the file lacks: its
    // preprocessing, but not ImageNet's 1000 names for this 10-class network.
    let (ok, out, err) = graft(&["inspect", "--json", "tiny-googlenet"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["preprocess"]["bgr"],
        serde_json::json!(true),
        "{}",
        v["preprocess"]
    );
    assert_eq!(
        v["labels"].as_array().map(Vec::len),
        Some(0),
        "{}",
        v["labels"]
    );
    let (ok, _, err) = graft(&["inspect", "no-such-network"]);
    assert!(!ok && err.contains("no-such-network"), "{err}");
}

/// A stand-in for each network of the shipped catalogue: a small file of the same architecture
/// and form (the ONNX Model Zoo's files cannot be fetched here), with the reference output
/// ONNX Runtime gives on its input (for the torchvision-style fixtures, the output PyTorch and
/// ONNX Runtime agreed on when `tools/make_fixtures.py` wrote them).
/// Entry name, file, input, reference, whether the input is channels-last.
const STAND_INS: &[(&str, &str, &str, &str, bool)] = &[
    (
        "efficientnet-lite0",
        "",
        "efficientnet_lite0_default/input.npy",
        "efficientnet_lite0_default/output.npy",
        false,
    ),
    (
        "googlenet",
        "googlenet_op11/model.onnx",
        "googlenet_op11/input.npy",
        "googlenet_op11/output.npy",
        false,
    ),
    (
        "vgg16",
        "vgg16_op13/model.onnx",
        "vgg16_op13/input.npy",
        "vgg16_op13/output.npy",
        false,
    ),
    (
        "vgg19",
        "vgg19_op15/model.onnx",
        "vgg19_op15/input.npy",
        "vgg19_op15/output.npy",
        false,
    ),
    (
        "squeezenet1.0",
        "squeezenet1_0_op11/model.onnx",
        "squeezenet1_0_op11/input.npy",
        "squeezenet1_0_op11/output.npy",
        false,
    ),
    (
        "squeezenet1.1",
        "squeezenet1_1_op13/model.onnx",
        "squeezenet1_1_op13/input.npy",
        "squeezenet1_1_op13/output.npy",
        false,
    ),
    (
        "mobilenetv2",
        "mobilenet_v2_op10/model.onnx",
        "mobilenet_v2_op10/input.npy",
        "mobilenet_v2_op10/output.npy",
        false,
    ),
    (
        "shufflenetv2",
        "shufflenet_v2_op11/model.onnx",
        "shufflenet_v2_op11/input.npy",
        "shufflenet_v2_op11/output.npy",
        false,
    ),
    (
        "resnet18",
        "resnet18_op13/model.onnx",
        "resnet18_op13/input.npy",
        "resnet18_op13/output.npy",
        false,
    ),
    (
        "resnet50",
        "resnet50_op17/model.onnx",
        "resnet50_op17/input.npy",
        "resnet50_op17/output.npy",
        false,
    ),
    (
        "alexnet",
        "alexnet_op14/model.onnx",
        "alexnet_op14/input.npy",
        "alexnet_op14/output.npy",
        false,
    ),
    (
        "densenet121",
        "densenet121_op13/model.onnx",
        "densenet121_op13/input.npy",
        "densenet121_op13/output.npy",
        false,
    ),
    (
        "efficientnet-lite4",
        "nhwc/nhwc.onnx",
        "nhwc/input_nhwc.npy",
        "nhwc/output_ort.npy",
        true,
    ),
];

/// Done means, per gallery entry: it downloads (its stand-in, from the local server, with the
/// entry's own preprocessing and layout), imports, matches ONNX Runtime on its fixture,
/// adapts its head, trains (frozen backbone, the comparison's recipe) and exports a file that
/// gives the trained network's answers. A new catalogue entry fails here until it has a
/// stand-in.
#[test]
fn every_gallery_entry_downloads_matches_onnx_runtime_trains_and_exports() {
    let catalog = Catalog::builtin().unwrap();
    let names: Vec<&str> = catalog.entries.iter().map(|e| e.name.as_str()).collect();
    let covered: Vec<&str> = STAND_INS.iter().map(|s| s.0).collect();
    assert_eq!(
        names, covered,
        "every catalogue entry has a stand-in, in order"
    );

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let routes: Vec<(String, Vec<u8>)> = STAND_INS
        .iter()
        .filter(|s| !s.1.is_empty())
        .map(|s| {
            (
                format!("/{}", s.0),
                std::fs::read(fixtures.join(s.1)).unwrap(),
            )
        })
        .collect();
    let server = serve(
        routes
            .iter()
            .map(|(p, b)| (p.as_str(), b.clone(), Mode::Serve))
            .collect(),
    );
    let cache = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    common::write_dataset(data.path(), 6, 24, 3);
    let dataset = graft::data::scan(data.path(), &|_, _| {}, &AtomicBool::new(false)).unwrap();
    let (train, validation) = dataset.split(0.34, 1).unwrap();
    let recipe = graft::compare::Recipe {
        options: graft::train::TrainingOptions {
            epochs: 1,
            batch_size: 4,
            device: graft::engine::DeviceChoice::Cpu,
            ..Default::default()
        },
        fine_tune: false,
    };
    let device = burn::tensor::Device::flex();
    for &(name, file, input, want, channels_last) in STAND_INS {
        let mut entry = catalog.find(name).unwrap().clone();
        if !entry.embedded {
            let body = &routes.iter().find(|r| r.0 == format!("/{name}")).unwrap().1;
            let tmp = cache.path().join("stand-in");
            std::fs::write(&tmp, body).unwrap();
            entry.sha256 = sha256_of(&tmp).unwrap();
            entry.bytes = body.len() as u64;
            entry.urls = vec![format!("{}/{name}", server.base)];
        }
        let imported = graft::gallery::open(
            &entry,
            &place(cache.path()),
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Some(p) = &entry.preprocess {
            let got = imported.network.metadata.preprocess.as_ref();
            assert_eq!(got, Some(p), "{name}: the catalogue's preprocessing");
        }
        let (shape, x) = graft::npy::read_f32(&fixtures.join(input)).unwrap();
        let (shape, x) = if channels_last {
            common::to_channels_first(&shape, &x)
        } else {
            (shape, x)
        };
        let ours = graft::engine::Model::build(&imported.network, &imported.store, &device)
            .and_then(|m| m.infer(&shape, x.clone()))
            .unwrap_or_else(|e| panic!("{name}: {e}"))[0]
            .1
            .clone();
        let (_, reference) = graft::npy::read_f32(&fixtures.join(want)).unwrap();
        let err = common::max_rel_error(&ours, &reference);
        assert!(err < 1e-4, "{name} ({file}) vs ONNX Runtime: {err}");

        let trained =
            graft::compare::train_one(name, imported, &train, &validation, &recipe, &mut wait)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(trained.network.metadata.labels.len(), 3, "{name}: adapted");
        let bytes = graft::onnx::export_bytes(&trained.network, &trained.store).unwrap();
        let again = graft::onnx::import_bytes(&bytes).unwrap();
        let run = |net: &graft::graph::Network, store: &graft::weights::Store| {
            graft::engine::Model::build(net, store, &device)
                .and_then(|m| m.infer(&shape, x.clone()))
                .unwrap()[0]
                .1
                .clone()
        };
        let (a, b) = (
            run(&trained.network, &trained.store),
            run(&again.network, &again.store),
        );
        assert_eq!(a.len(), shape[0] * 3, "{name}: three classes out");
        let diff = common::max_rel_error(&b, &a);
        assert!(
            diff < 1e-5,
            "{name}: the export changed the answers by {diff}"
        );
    }
}

fn wait(session: &graft::train::Session) -> Result<graft::train::Outcome, String> {
    use graft::train::TrainEvent;
    for e in session.events().iter() {
        match e {
            TrainEvent::Finished(o) => return Ok(*o),
            TrainEvent::Failed(e) => return Err(e),
            _ => {}
        }
    }
    Err("the session ended without a result".into())
}

//! Audio's front end against the ONNX specification's mel filter bank and ONNX Runtime
//! running the ops the exported file will hold (tools/make_audio_references.py: STFT,
//! HannWindow, power, MatMul by the filter bank, log) on a synthesised clip.

use graft::audio::mel::{MelSettings, log_mel, mel_weights};
use std::path::Path;

fn fixture(name: &str) -> Vec<f32> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio")
        .join(name);
    graft::npy::read_f32(&path).unwrap().1
}

fn settings() -> MelSettings {
    MelSettings {
        sample_rate: 16_000,
        fft: 512,
        hop: 160,
        mels: 40,
        fmin: 20.0,
        fmax: 8_000.0,
        log_offset: 1e-6,
    }
}

#[test]
fn the_mel_filter_bank_is_the_onnx_specifications() {
    let ours = mel_weights(&settings());
    let theirs = fixture("mel_weights.npy");
    assert_eq!(ours.len(), theirs.len());
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-6, "largest difference {worst}");
    // Every band has weight somewhere.
    for m in 0..40 {
        assert!(
            (0..257).any(|b| ours[b * 40 + m] > 0.0),
            "band {m} is empty"
        );
    }
}

#[test]
fn the_log_mel_spectrogram_matches_onnx_runtime() {
    let clip = fixture("clip.npy");
    let s = settings();
    assert_eq!(s.frames(clip.len()), 47);
    let ours = log_mel(&clip, &s);
    let theirs = fixture("log_mel.npy");
    assert_eq!(ours.len(), theirs.len());
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-3, "largest difference in log-mel {worst}");
    // A clip shorter than one window has no frames rather than failing.
    assert!(log_mel(&clip[..100], &s).is_empty());
}

// ---- decoding, resampling, sound folders, training --------------------------------------

use crate::common::{sine, write_sounds, write_wav};
use graft::audio::decode::{decode, resample};
use graft::audio::front::AudioSettings;
use graft::data::Media;

fn formats(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio/formats")
        .join(name)
}

/// The largest |a − b| over the shorter length.
fn worst(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Normalised cross-correlation at the best lag within ±`lags` samples (lossy codecs delay
/// and smear the signal).
fn best_correlation(a: &[f32], b: &[f32], lags: i64) -> f32 {
    let dot = |lag: i64| {
        let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
        for (i, &x) in a.iter().enumerate() {
            let j = i as i64 + lag;
            if j < 0 || j as usize >= b.len() {
                continue;
            }
            let y = b[j as usize];
            ab += x as f64 * y as f64;
            aa += x as f64 * x as f64;
            bb += y as f64 * y as f64;
        }
        (ab / (aa * bb).sqrt().max(1e-12)) as f32
    };
    (-lags..=lags).map(dot).fold(f32::MIN, f32::max)
}

#[test]
fn every_format_decodes_to_the_same_sound() {
    // tools/make_sound_dataset.py --fixtures: one chirp in seven encodings.
    let reference = graft::npy::read_f32(&formats("chirp_reference.npy"))
        .unwrap()
        .1;
    for (file, tolerance) in [
        ("chirp_s24.wav", 1e-5),
        ("chirp_f32.wav", 1e-7),
        ("chirp.flac", 1e-4),
        ("chirp_u8.wav", 1.0 / 127.0 + 1e-3),
    ] {
        let s = decode(&formats(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(s.rate, 16_000, "{file}");
        assert_eq!(s.samples.len(), reference.len(), "{file}");
        let w = worst(&s.samples, &reference);
        assert!(w <= tolerance, "{file}: largest difference {w}");
    }
    // Stereo is mixed to mono: left x, right 0.8·x → 0.9·x.
    let s = decode(&formats("chirp_s16_stereo.wav")).unwrap();
    let want: Vec<f32> = reference.iter().map(|v| v * 0.9).collect();
    assert!(worst(&s.samples, &want) < 1e-3);
    // Lossy codecs: the same chirp, delayed a little.
    for file in ["chirp.ogg", "chirp.mp3"] {
        let s = decode(&formats(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(s.rate, 16_000, "{file}");
        let c = best_correlation(&reference, &s.samples, 1200);
        assert!(c > 0.9, "{file}: correlation {c}");
    }
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

#[test]
fn resampling_keeps_what_fits_and_filters_what_does_not() {
    let n = 44_100;
    let low = resample(&sine(44_100, 1000.0, n), 44_100, 16_000).unwrap();
    assert!(
        (low.len() as i64 - 16_000).abs() <= 1,
        "{} samples",
        low.len()
    );
    // Same tone at the same level: away from the ends (where the filter sees the clip's
    // edges), the best-fitting 1 kHz sinusoid leaves almost nothing, and has amplitude 1.
    let mid = &low[1000..low.len() - 1000];
    let (mut c, mut s_, mut cc, mut ss) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for (i, &v) in mid.iter().enumerate() {
        let t = 2.0 * std::f64::consts::PI * 1000.0 * (i + 1000) as f64 / 16_000.0;
        c += v as f64 * t.cos();
        s_ += v as f64 * t.sin();
        cc += t.cos() * t.cos();
        ss += t.sin() * t.sin();
    }
    let (a, b) = (c / cc, s_ / ss);
    let amplitude = (a * a + b * b).sqrt();
    assert!(
        (amplitude - 1.0).abs() < 0.01,
        "1 kHz comes out at amplitude {amplitude}"
    );
    let residual = mid
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let t = 2.0 * std::f64::consts::PI * 1000.0 * (i + 1000) as f64 / 16_000.0;
            let r = v as f64 - a * t.cos() - b * t.sin();
            r * r
        })
        .sum::<f64>()
        / mid.len() as f64;
    assert!(residual.sqrt() < 0.01, "residual rms {}", residual.sqrt());
    // 10 kHz is above the new Nyquist frequency (8 kHz): filtered out, not folded to 6 kHz
    // as picking the nearest sample would.
    let high = resample(&sine(44_100, 10_000.0, n), 44_100, 16_000).unwrap();
    assert!(rms(&high[1000..high.len() - 1000]) < 0.01);
}

#[test]
fn a_sound_folder_scans_with_its_bad_files_listed() {
    let dir = tempfile::tempdir().unwrap();
    write_sounds(dir.path(), 3, 1);
    let noise = dir.path().join("noise");
    std::fs::write(
        noise.join("garbage.wav"),
        b"RIFF\x10\0\0\0not a wave at all",
    )
    .unwrap();
    std::fs::write(noise.join("empty.mp3"), b"").unwrap();
    write_wav(&noise.join("silent.wav"), &vec![0.0; 8000], 16_000);
    // A long file cut into clips: 2.2 s every 0.5 s gives 3 one-second clips.
    write_wav(
        &dir.path().join("tone").join("long.wav"),
        &sine(16_000, 440.0, 35_200),
        16_000,
    );
    assert!(graft::audio::clips::is_sound_folder(dir.path()));
    use graft::project::Layout;
    assert_eq!(Layout::Automatic.resolve(dir.path()), Layout::Sounds);
    assert_eq!(Layout::Classes.resolve(dir.path()), Layout::Classes);
    let settings = AudioSettings {
        hop_seconds: 0.5,
        ..Default::default()
    };
    let never = std::sync::atomic::AtomicBool::new(false);
    let ds = graft::audio::clips::scan(dir.path(), &settings, &|_, _| {}, &never).unwrap();
    assert_eq!(ds.media, Media::Sounds(settings.clone()));
    assert_eq!(ds.classes, ["clicks", "noise", "tone"]);
    let reasons: Vec<(String, String)> = ds
        .skipped
        .iter()
        .map(|s| {
            (
                s.path.file_name().unwrap().to_string_lossy().into_owned(),
                s.reason.clone(),
            )
        })
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    for (file, want) in [
        ("garbage.wav", "not a sound file"),
        ("empty.mp3", "not a sound file"),
        ("silent.wav", "silent"),
    ] {
        let (_, why) = reasons.iter().find(|(f, _)| f == file).unwrap();
        assert!(why.starts_with(want), "{file}: {why}");
    }
    let long: Vec<f32> = ds
        .samples
        .iter()
        .filter(|s| s.path.ends_with("long.wav"))
        .map(|s| s.start.unwrap())
        .collect();
    assert_eq!(long, [0.0, 0.5, 1.0]);
    // The loader reads a long file's clips from one decode of it.
    let framing = graft::audio::clips::SoundFraming::plain(graft::audio::front::FrontEnd {
        settings: settings.clone(),
        mean: 0.0,
        std: 1.0,
    });
    let whole =
        graft::audio::decode::load(&dir.path().join("tone").join("long.wav"), 16_000).unwrap();
    for s in ds.samples.iter().filter(|s| s.path.ends_with("long.wav")) {
        let at = (s.start.unwrap() * 16_000.0) as usize;
        assert_eq!(framing.clip(s).unwrap(), whole[at..at + 16_000]);
    }
    assert_eq!(
        framing.long_files.0.bytes(),
        whole.len() * 4,
        "decoded once"
    );
    // Background noise for augmentation: every readable sound under a folder, at the rate;
    // a folder without any is an error naming it.
    let noise = graft::audio::clips::load_noise(dir.path(), 8_000).unwrap();
    assert_eq!(noise.len(), 3 * 3 + 1, "the good files, not the bad ones");
    let empty = tempfile::tempdir().unwrap();
    let e = graft::audio::clips::load_noise(empty.path(), 8_000).unwrap_err();
    assert!(e.contains(&empty.path().display().to_string()), "{e}");
    // A split keeps a file's clips together.
    let (train, val) = ds.split(0.5, 3).unwrap();
    let in_train = train.samples.iter().any(|s| s.path.ends_with("long.wav"));
    let in_val = val.samples.iter().any(|s| s.path.ends_with("long.wav"));
    assert!(in_train != in_val);
}

#[test]
fn a_frozen_image_network_learns_sounds_from_their_spectrograms() {
    use graft::graph::edit::{Edit, apply, freeze_backbone};
    use graft::train::{Session, TrainEvent, TrainJob, TrainingOptions};
    let dir = tempfile::tempdir().unwrap();
    write_sounds(dir.path(), 16, 5);
    let never = std::sync::atomic::AtomicBool::new(false);
    let settings = AudioSettings::default();
    let data = graft::data::scan_classes(dir.path(), &settings, &|_, _| {}, &never).unwrap();
    assert!(matches!(data.media, Media::Sounds(_)));
    let imported = graft::onnx::import_bytes(graft::DEFAULT_MODEL).unwrap();
    let (mut net, mut store) = (imported.network, imported.store);
    apply(
        &mut net,
        &mut store,
        &Edit::AdaptHead {
            classes: data.classes.clone(),
            seed: 1,
        },
    )
    .unwrap();
    freeze_backbone(&mut net, &store).unwrap();
    let (train, val) = data.split(0.25, 7).unwrap();
    let job = TrainJob {
        network: net,
        store,
        train,
        validation: Some(val),
        options: TrainingOptions {
            epochs: 8,
            batch_size: 8,
            learning_rate: 1e-2,
            device: graft::engine::DeviceChoice::Cpu,
            ..Default::default()
        },
        checkpoint: None,
        resume: false,
    };
    let session = Session::start(job, None).unwrap();
    let outcome = loop {
        match session.events().recv().unwrap() {
            TrainEvent::Finished(o) => break *o,
            TrainEvent::Failed(e) => panic!("training failed: {e}"),
            _ => {}
        }
    };
    assert!(
        outcome.cached_prefix,
        "clips without augmentation are cached"
    );
    let eval = outcome.evaluation.as_ref().unwrap();
    assert!(
        eval.accuracy >= 0.8,
        "validation accuracy {} on three easy sound classes",
        eval.accuracy
    );
    // The trained network carries its front end, with the clips' statistics.
    let front = graft::audio::front::FrontEnd::of(&outcome.network).unwrap();
    assert_eq!(front.settings, settings);
    assert!(front.std > 0.1 && front.mean.is_finite());
    // graft evaluate's path (the network's own front end) agrees with the session's report.
    let again = graft::train::evaluate::evaluate(
        &outcome.network,
        &outcome.store,
        &data.split(0.25, 7).unwrap().1,
        &graft::engine::select_device(graft::engine::DeviceChoice::Cpu).unwrap(),
        |_, _| {},
    )
    .unwrap();
    assert!((again.evaluation.accuracy - eval.accuracy).abs() < 1e-6);
    // The export takes raw sound: its front end inside (STFT, mel bank, log, standardise,
    // resize), and tract running it agrees with Graft's front end and engine.
    let bytes = graft::onnx::export_bytes(&outcome.network, &outcome.store).unwrap();
    let files = graft::verify::inputs_for(&outcome.network, dir.path());
    assert_eq!(files.len(), 48);
    let report =
        graft::verify::verify(&bytes, &outcome.network, &outcome.store, &files, 6).unwrap();
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(report.images, 6);
    assert!(
        report.passed(),
        "tract vs Graft: max |difference| {}, top-1 agreement {}",
        report.max_abs_diff,
        report.top1_agreement
    );
    // Graft reads its own file back as the network, the front end in its metadata.
    let back = graft::onnx::import_bytes(&bytes).unwrap();
    assert_eq!(back.network.input.shape, outcome.network.input.shape);
    assert_eq!(
        graft::audio::front::FrontEnd::of(&back.network),
        Some(front)
    );
    // `graft predict` on a clip names its class.
    let model = dir.path().join("sounds.onnx");
    std::fs::write(&model, &bytes).unwrap();
    let tone = dir.path().join("tone").join("tone_0.wav");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .arg("predict")
        .arg(&model)
        .arg(&tone)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = text.lines().nth(1).unwrap_or_default();
    assert!(first.ends_with("tone"), "graft predict said:\n{text}");
}

#[test]
fn long_files_are_decoded_once_and_the_oldest_goes_past_the_budget() {
    use graft::audio::long_files::LongFiles;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.wav"), dir.path().join("b.wav"));
    write_wav(&a, &sine(16_000, 440.0, 16_000), 16_000);
    write_wav(&b, &sine(16_000, 660.0, 16_000), 16_000);
    // Room for one second of sound at 16 kHz, not two.
    let files = LongFiles::with_budget(16_000 * 4 + 100);
    let first = files.load(&a, 16_000).unwrap();
    let again = files.load(&a, 16_000).unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "the second ask is served from memory"
    );
    assert_eq!(*first, graft::audio::decode::load(&a, 16_000).unwrap());
    files.load(&b, 16_000).unwrap();
    assert_eq!(files.bytes(), 16_000 * 4, "a was dropped for b");
    let a_again = files.load(&a, 16_000).unwrap();
    assert!(!Arc::ptr_eq(&first, &a_again), "a was decoded again");
    // A file that does not decode is reported each time and not kept.
    let bad = dir.path().join("bad.wav");
    std::fs::write(&bad, b"RIFF\x10\0\0\0not a wave").unwrap();
    assert!(files.load(&bad, 16_000).is_err());
    write_wav(&bad, &sine(16_000, 440.0, 8_000), 16_000);
    assert_eq!(files.load(&bad, 16_000).unwrap().len(), 8_000);
}

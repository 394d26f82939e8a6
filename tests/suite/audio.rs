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

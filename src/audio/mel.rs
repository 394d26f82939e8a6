//! The log-mel spectrogram, defined by the ONNX ops the exported file will hold (opset 17),
//! so that Graft's own front end and the file's give the same numbers:
//! frames of `fft` samples every `hop` (no centring or padding: ONNX `STFT`), a periodic Hann
//! window (`HannWindow`), the one-sided power spectrum, the ONNX specification's
//! `MelWeightMatrix` (triangles on whole FFT bins), then `ln(mel + offset)`.
//!
//! Decision: the export will hold the filter bank as a constant for a MatMul, not the
//! `MelWeightMatrix` op — ONNX Runtime's kernel spaces the bands by (mel(fmax) − mel(fmin)) /
//! (mels + 2) where the specification says mels + 1, so the op gives different numbers in
//! different runtimes; a constant gives the same everywhere.

use realfft::{RealFftPlanner, RealToComplex};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::sync::Arc;

/// The front end's settings (saved in the project and the exported file's metadata).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MelSettings {
    pub sample_rate: u32,
    /// FFT size = window length, in samples.
    pub fft: usize,
    pub hop: usize,
    pub mels: usize,
    pub fmin: f32,
    pub fmax: f32,
    /// Added before the log, so silence stays finite.
    pub log_offset: f32,
}

impl Default for MelSettings {
    /// 16 kHz speech-and-sound defaults: 32 ms windows every 10 ms, 64 bands to 8 kHz.
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            fft: 512,
            hop: 160,
            mels: 64,
            fmin: 20.0,
            fmax: 8_000.0,
            log_offset: 1e-6,
        }
    }
}

impl MelSettings {
    pub fn bins(&self) -> usize {
        self.fft / 2 + 1
    }

    /// Frames in a clip of `samples` (0 if shorter than one window).
    pub fn frames(&self, samples: usize) -> usize {
        if samples < self.fft || self.hop == 0 {
            0
        } else {
            1 + (samples - self.fft) / self.hop
        }
    }
}

fn hz_to_mel(hz: f64) -> f64 {
    2595.0 * (1.0 + hz / 700.0).log10()
}

fn mel_to_hz(mel: f64) -> f64 {
    700.0 * (10f64.powf(mel / 2595.0) - 1.0)
}

/// ONNX `MelWeightMatrix`: `[bins, mels]`, row-major. Band edges are evenly spaced in mel,
/// turned into whole FFT bins as `floor((fft + 1) · hz / rate)`, with triangles between them.
pub fn mel_weights(s: &MelSettings) -> Vec<f32> {
    let (bins, mels) = (s.bins(), s.mels);
    let (lo, hi) = (hz_to_mel(s.fmin as f64), hz_to_mel(s.fmax as f64));
    let step = (hi - lo) / (mels + 1) as f64;
    let edges: Vec<usize> = (0..mels + 2)
        .map(|k| {
            let hz = mel_to_hz(lo + step * k as f64);
            (((s.fft + 1) as f64 * hz) / s.sample_rate as f64)
                .floor()
                .max(0.0) as usize
        })
        .collect();
    let mut w = vec![0.0f32; bins * mels];
    let mut set = |bin: usize, band: usize, v: f32| {
        if bin < bins {
            w[bin * mels + band] = v;
        }
    };
    for band in 0..mels {
        let (left, centre, right) = (edges[band], edges[band + 1], edges[band + 2]);
        if centre == left {
            set(centre, band, 1.0);
        } else {
            for j in left..=centre {
                set(j, band, (j - left) as f32 / (centre - left) as f32);
            }
        }
        if right > centre {
            for j in centre..right {
                set(j, band, (right - j) as f32 / (right - centre) as f32);
            }
        }
    }
    w
}

/// What [`log_mel`] needs for one set of settings: the FFT plan, the window and each band's
/// non-zero weights. Made once per thread and settings (loaders call `log_mel` per clip).
struct Plan {
    settings: MelSettings,
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    /// Per band: its first bin and its weights from there.
    bands: Vec<(usize, Vec<f32>)>,
}

impl Plan {
    fn new(s: &MelSettings) -> Self {
        let (bins, mels) = (s.bins(), s.mels);
        let weights = mel_weights(s);
        let bands = (0..mels)
            .map(|m| {
                let w: Vec<f32> = (0..bins).map(|b| weights[b * mels + m]).collect();
                let first = w.iter().position(|v| *v != 0.0).unwrap_or(0);
                let last = w.iter().rposition(|v| *v != 0.0).map_or(first, |l| l + 1);
                (first, w[first..last.max(first)].to_vec())
            })
            .collect();
        // Periodic Hann: 0.5 − 0.5·cos(2πn/N).
        let window = (0..s.fft)
            .map(|n| {
                let x = 2.0 * std::f64::consts::PI * n as f64 / s.fft as f64;
                (0.5 - 0.5 * x.cos()) as f32
            })
            .collect();
        Plan {
            settings: s.clone(),
            fft: RealFftPlanner::<f32>::new().plan_fft_forward(s.fft),
            window,
            bands,
        }
    }
}

thread_local! {
    static PLAN: RefCell<Option<Plan>> = const { RefCell::new(None) };
}

/// `[frames, mels]` log-mel values of a mono clip, row-major.
pub fn log_mel(clip: &[f32], s: &MelSettings) -> Vec<f32> {
    PLAN.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.as_ref().is_none_or(|p| p.settings != *s) {
            *cached = Some(Plan::new(s));
        }
        let plan = cached.as_ref().expect("just set");
        log_mel_with(clip, s, plan)
    })
}

fn log_mel_with(clip: &[f32], s: &MelSettings, plan: &Plan) -> Vec<f32> {
    let (bins, mels, frames) = (s.bins(), s.mels, s.frames(clip.len()));
    let fft = &plan.fft;
    let mut frame = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut power = vec![0.0f32; bins];
    let mut out = vec![0.0f32; frames * mels];
    for f in 0..frames {
        let start = f * s.hop;
        for (k, v) in frame.iter_mut().enumerate() {
            *v = clip[start + k] * plan.window[k];
        }
        // Lengths come from the planner itself, so processing cannot fail.
        let _ = fft.process(&mut frame, &mut spectrum);
        for (p, c) in power.iter_mut().zip(&spectrum) {
            *p = c.norm_sqr();
        }
        for (m, (first, w)) in plan.bands.iter().enumerate() {
            let e: f32 = power[*first..*first + w.len()]
                .iter()
                .zip(w)
                .map(|(p, w)| p * w)
                .sum();
            out[f * mels + m] = (e + s.log_offset).ln();
        }
    }
    out
}

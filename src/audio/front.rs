//! A clip becomes an image network's input: its log-mel spectrogram ([`super::mel`]),
//! standardised by the training clips' mean and spread, laid out with mel bands as rows and
//! time as columns, resized to the network's square input by bilinear interpolation (ONNX
//! `Resize`, linear, half-pixel centres, as the exported file does it), and the one plane
//! repeated into every input channel.
//!
//! Decision: repeat the plane, not a learned 1×1 adapter. A pretrained first convolution
//! summed over three equal planes is the grey-image filter it already knows; an adapter would
//! add a layer to train before the backbone sees anything useful, and the export stays the
//! plain network.

use super::mel::{MelSettings, log_mel};
use crate::graph::Network;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Where a network trained on sound keeps its front end (`metadata_props` key).
pub const AUDIO_KEY: &str = "graft.audio";

/// How clips are cut from sound files and turned into spectrograms: saved in the project
/// (the Data tab), and with the statistics as [`FrontEnd`] in the trained network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AudioSettings {
    pub mel: MelSettings,
    /// Every clip is this long: shorter files are padded with silence, longer ones cropped
    /// (or cut into several clips, `hop_seconds`).
    pub clip_seconds: f32,
    /// Cut long files into clips starting every this many seconds; 0 takes one clip from the
    /// start of each file.
    pub hop_seconds: f32,
    /// Files shorter than this are reported (they are padded and kept).
    pub min_seconds: f32,
    /// A clip's log-mel values are held at most this many decibels below its loudest cell
    /// (librosa's `top_db`); 0 turns it off. Without it, bands a clip has no energy in (the
    /// upper half of a resampled 8 kHz file, digital silence) sit at the log offset, where
    /// the last bits of a resampler's or decoder's rounding decide their values.
    pub floor_db: f32,
}

impl Default for AudioSettings {
    fn default() -> Self {
        Self {
            mel: MelSettings::default(),
            clip_seconds: 1.0,
            hop_seconds: 0.0,
            min_seconds: 0.1,
            floor_db: 80.0,
        }
    }
}

impl AudioSettings {
    /// `[frames, mels]` log-mel values of a clip, held within [`floor_db`](Self::floor_db)
    /// of its loudest.
    pub fn log_mel(&self, clip: &[f32]) -> Vec<f32> {
        let mut lm = log_mel(clip, &self.mel);
        if let Some(floor) = self.floor_ln(&lm) {
            lm.iter_mut().for_each(|v| *v = v.max(floor));
        }
        lm
    }

    /// The floor in ln-power units: the loudest value less `floor_db` (10·log10 → ln).
    fn floor_ln(&self, lm: &[f32]) -> Option<f32> {
        let top = lm.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        (self.floor_db > 0.0 && top.is_finite())
            .then(|| top - self.floor_db * std::f32::consts::LN_10 / 10.0)
    }

    pub fn clip_samples(&self) -> usize {
        (self.clip_seconds.max(0.0) as f64 * self.mel.sample_rate as f64).round() as usize
    }

    /// Clip starts (seconds) in a file of `seconds`: one at 0, or every hop while a whole
    /// clip fits (and at least one).
    pub fn clip_starts(&self, seconds: f32) -> Vec<f32> {
        if self.hop_seconds <= 0.0 || seconds <= self.clip_seconds {
            return vec![0.0];
        }
        let n = ((seconds - self.clip_seconds) / self.hop_seconds).floor() as usize + 1;
        (0..n).map(|i| i as f32 * self.hop_seconds).collect()
    }

    pub fn validate(&self) -> Result<(), String> {
        let m = &self.mel;
        if m.sample_rate < 1000 {
            return Err(format!("sample rate {} Hz is too low", m.sample_rate));
        }
        if m.fft < 16 || m.hop == 0 || m.mels == 0 {
            return Err("the FFT size, hop and mel bands must be positive".into());
        }
        if !(m.fmin >= 0.0 && m.fmin < m.fmax && m.fmax <= m.sample_rate as f32 / 2.0) {
            return Err(format!(
                "mel range {}–{} Hz must lie within 0–{} Hz (half the sample rate)",
                m.fmin,
                m.fmax,
                m.sample_rate / 2
            ));
        }
        if !(self.floor_db >= 0.0 && self.floor_db.is_finite()) {
            return Err(format!(
                "the floor {} dB must be 0 (off) or more",
                self.floor_db
            ));
        }
        if m.frames(self.clip_samples()) < 2 {
            return Err(format!(
                "a {} s clip holds fewer than two {}-sample windows",
                self.clip_seconds, m.fft
            ));
        }
        Ok(())
    }
}

/// What turns a clip into the trained network's input: the settings and the training
/// clips' log-mel mean and standard deviation. Kept in the network's metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrontEnd {
    pub settings: AudioSettings,
    pub mean: f32,
    pub std: f32,
}

impl FrontEnd {
    /// The front end a network was trained with, if it was trained on sound.
    pub fn of(net: &Network) -> Option<Self> {
        let (_, v) = net.metadata.extra.iter().find(|(k, _)| k == AUDIO_KEY)?;
        serde_json::from_str(v).ok()
    }

    /// Records the front end in the network's metadata (replacing any earlier one).
    pub fn write_to(&self, net: &mut Network) {
        let json = serde_json::to_string(self).unwrap_or_default();
        net.metadata.extra.retain(|(k, _)| k != AUDIO_KEY);
        net.metadata.extra.push((AUDIO_KEY.into(), json));
    }

    /// Log-mel statistics over `clips` (each already [`clip`]ped), for standardising.
    pub fn fit(settings: &AudioSettings, clips: &[Vec<f32>]) -> Self {
        let (mut sum, mut sq, mut n) = (0.0f64, 0.0f64, 0usize);
        for c in clips {
            for v in settings.log_mel(c) {
                sum += v as f64;
                sq += (v as f64) * (v as f64);
                n += 1;
            }
        }
        let mean = if n > 0 { sum / n as f64 } else { 0.0 };
        let var = if n > 0 {
            sq / n as f64 - mean * mean
        } else {
            1.0
        };
        FrontEnd {
            settings: settings.clone(),
            mean: mean as f32,
            // A constant clip set (silence) still divides by something finite.
            std: var.max(1e-6).sqrt() as f32,
        }
    }

    /// `[mels, frames]` standardised log-mel values of a clip (mel bands as rows).
    pub fn spectrogram(&self, clip: &[f32]) -> (Vec<f32>, usize, usize) {
        let m = &self.settings.mel;
        let frames = m.frames(clip.len());
        let lm = self.settings.log_mel(clip);
        let mut out = vec![0.0f32; m.mels * frames];
        for f in 0..frames {
            for b in 0..m.mels {
                out[b * frames + f] = (lm[f * m.mels + b] - self.mean) / self.std;
            }
        }
        (out, m.mels, frames)
    }

    /// The network's input for a clip: `channels` copies of the spectrogram resized to
    /// `side`×`side`, CHW.
    pub fn input(&self, clip: &[f32], side: usize, channels: usize) -> Vec<f32> {
        let (spec, h, w) = self.spectrogram(clip);
        plane_to_input(&spec, h, w, side, channels)
    }
}

/// A `[h, w]` plane resized to `side`×`side` and repeated into `channels` planes.
pub fn plane_to_input(plane: &[f32], h: usize, w: usize, side: usize, channels: usize) -> Vec<f32> {
    let resized = resize_bilinear(plane, h, w, side, side);
    let mut out = Vec::with_capacity(channels * side * side);
    for _ in 0..channels {
        out.extend_from_slice(&resized);
    }
    out
}

/// ONNX `Resize` (mode linear, `half_pixel` coordinates, no antialiasing) of a `[h, w]`
/// plane to `[oh, ow]`: source coordinates `(x + 0.5)·in/out − 0.5`, clamped to the plane.
pub fn resize_bilinear(src: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let taps = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
        (0..n_out)
            .map(|o| {
                let x = ((o as f32 + 0.5) * n_in as f32 / n_out as f32 - 0.5)
                    .clamp(0.0, (n_in - 1) as f32);
                let x0 = x.floor() as usize;
                let x1 = (x0 + 1).min(n_in - 1);
                (x0, x1, x - x0 as f32)
            })
            .collect()
    };
    if h == 0 || w == 0 {
        return vec![0.0; oh * ow];
    }
    let (ys, xs) = (taps(h, oh), taps(w, ow));
    let mut out = Vec::with_capacity(oh * ow);
    for &(y0, y1, dy) in &ys {
        for &(x0, x1, dx) in &xs {
            let top = src[y0 * w + x0] * (1.0 - dx) + src[y0 * w + x1] * dx;
            let bottom = src[y1 * w + x0] * (1.0 - dx) + src[y1 * w + x1] * dx;
            out.push(top * (1.0 - dy) + bottom * dy);
        }
    }
    out
}

/// `len` samples of `sound` from `start` (samples), padded with silence past its end.
pub fn clip(sound: &[f32], start: usize, len: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; len];
    if start < sound.len() {
        let n = (sound.len() - start).min(len);
        out[..n].copy_from_slice(&sound[start..start + n]);
    }
    out
}

/// Training-time changes to a clip, seeded like image augmentation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AudioAugmentation {
    /// Move the clip by up to ± this many seconds (silence fills in).
    pub time_shift_seconds: f32,
    /// Scale the loudness by up to ± this many decibels.
    pub gain_db: f32,
    /// SpecAugment: this many time masks, each up to `time_mask_fraction` of the frames.
    pub time_masks: usize,
    pub time_mask_fraction: f32,
    /// SpecAugment: this many frequency masks, each up to `freq_mask_fraction` of the bands.
    pub freq_masks: usize,
    pub freq_mask_fraction: f32,
    /// Mix in background noise: a random stretch of a random sound file from this folder
    /// (any depth), into a clip with probability `noise_probability`, at a signal-to-noise
    /// ratio drawn from `noise_snr_db`.
    pub noise_folder: Option<std::path::PathBuf>,
    pub noise_probability: f32,
    pub noise_snr_db: (f32, f32),
}

impl Default for AudioAugmentation {
    fn default() -> Self {
        Self {
            time_shift_seconds: 0.1,
            gain_db: 6.0,
            time_masks: 1,
            time_mask_fraction: 0.1,
            freq_masks: 1,
            freq_mask_fraction: 0.1,
            noise_folder: None,
            noise_probability: 0.5,
            noise_snr_db: (5.0, 20.0),
        }
    }
}

impl AudioAugmentation {
    /// Background noise mixed into `clip` (when the draw says so): a random stretch of one of
    /// `noise` (looped if shorter), scaled to an SNR from `noise_snr_db` against the clip's
    /// own level.
    pub fn mix_noise(&self, clip: &mut [f32], noise: &[Vec<f32>], rng: &mut impl Rng) {
        let sounds: Vec<&Vec<f32>> = noise.iter().filter(|n| !n.is_empty()).collect();
        if sounds.is_empty()
            || clip.is_empty()
            || !rng.random_bool(self.noise_probability.clamp(0.0, 1.0) as f64)
        {
            return;
        }
        let n = sounds[rng.random_range(0..sounds.len())];
        let start = rng.random_range(0..n.len());
        let (lo, hi) = (
            self.noise_snr_db.0.min(self.noise_snr_db.1),
            self.noise_snr_db.0.max(self.noise_snr_db.1),
        );
        let snr = if hi > lo {
            rng.random_range(lo..=hi)
        } else {
            lo
        };
        let rms = |x: &mut dyn Iterator<Item = f32>| {
            let (sum, count) = x.fold((0.0f64, 0usize), |(s, c), v| (s + (v * v) as f64, c + 1));
            (sum / count.max(1) as f64).sqrt() as f32
        };
        let stretch = |i: usize| n[(start + i) % n.len()];
        let signal = rms(&mut clip.iter().copied());
        let noise_level = rms(&mut (0..clip.len()).map(stretch));
        if noise_level <= 0.0 {
            return;
        }
        // A silent clip still gets noise at the quietest level a clip of this set would.
        let k = signal.max(1e-3) / noise_level / 10f32.powf(snr / 20.0);
        for (i, v) in clip.iter_mut().enumerate() {
            *v += k * stretch(i);
        }
    }

    /// The clip shifted and its gain changed.
    pub fn wave(&self, clip: &mut [f32], rate: u32, rng: &mut impl Rng) {
        let max_shift = (self.time_shift_seconds.max(0.0) * rate as f32) as i64;
        if max_shift > 0 {
            let shift = rng.random_range(-max_shift..=max_shift);
            let n = clip.len() as i64;
            let moved: Vec<f32> = (0..n)
                .map(|i| {
                    let j = i - shift;
                    if (0..n).contains(&j) {
                        clip[j as usize]
                    } else {
                        0.0
                    }
                })
                .collect();
            clip.copy_from_slice(&moved);
        }
        if self.gain_db > 0.0 {
            let k = 10f32.powf(rng.random_range(-self.gain_db..=self.gain_db) / 20.0);
            clip.iter_mut().for_each(|v| *v *= k);
        }
    }

    /// SpecAugment masks on a standardised `[mels, frames]` spectrogram: masked cells become
    /// 0, the training mean.
    pub fn masks(&self, spec: &mut [f32], mels: usize, frames: usize, rng: &mut impl Rng) {
        let band = |n: usize, fraction: f32, rng: &mut dyn rand::RngCore| {
            let most = ((n as f32 * fraction.clamp(0.0, 1.0)) as usize).min(n);
            if most == 0 {
                return None;
            }
            let width = rng.random_range(0..=most);
            let start = rng.random_range(0..=n - width);
            Some((start, width))
        };
        for _ in 0..self.time_masks {
            if let Some((t0, w)) = band(frames, self.time_mask_fraction, rng) {
                for m in 0..mels {
                    spec[m * frames + t0..m * frames + t0 + w].fill(0.0);
                }
            }
        }
        for _ in 0..self.freq_masks {
            if let Some((f0, w)) = band(mels, self.freq_mask_fraction, rng) {
                spec[f0 * frames..(f0 + w) * frames].fill(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_a_constant_and_a_ramp() {
        let c = resize_bilinear(&[2.0; 6], 2, 3, 5, 7);
        assert!(c.iter().all(|v| (v - 2.0).abs() < 1e-6));
        // Upsampling a ramp by 2 with half-pixel centres: 0, 1 → 0, 0.25, 0.75, 1.
        let r = resize_bilinear(&[0.0, 1.0], 1, 2, 1, 4);
        let want = [0.0, 0.25, 0.75, 1.0];
        for (a, b) in r.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{r:?}");
        }
    }

    #[test]
    fn long_files_are_cut_every_hop() {
        let s = AudioSettings {
            clip_seconds: 1.0,
            hop_seconds: 0.5,
            ..Default::default()
        };
        assert_eq!(s.clip_starts(2.2), vec![0.0, 0.5, 1.0]);
        assert_eq!(s.clip_starts(0.4), vec![0.0]);
        let one = AudioSettings::default();
        assert_eq!(one.clip_starts(10.0), vec![0.0]);
    }

    #[test]
    fn clips_are_padded_and_cropped() {
        assert_eq!(clip(&[1.0, 2.0, 3.0], 1, 4), vec![2.0, 3.0, 0.0, 0.0]);
        assert_eq!(clip(&[1.0, 2.0, 3.0], 5, 2), vec![0.0, 0.0]);
    }

    #[test]
    fn background_noise_is_mixed_at_the_drawn_snr() {
        use rand::SeedableRng;
        let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
        let clip: Vec<f32> = (0..4000).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let noise = vec![
            (0..1000)
                .map(|i| if i % 2 == 0 { 0.1 } else { -0.1 })
                .collect(),
        ];
        let a = AudioAugmentation {
            noise_probability: 1.0,
            noise_snr_db: (6.0, 6.0),
            ..Default::default()
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut mixed = clip.clone();
        a.mix_noise(&mut mixed, &noise, &mut rng);
        let added: Vec<f32> = mixed.iter().zip(&clip).map(|(m, c)| m - c).collect();
        // 6 dB: the noise at half the clip's level, looped over the whole clip.
        let ratio = rms(&added) / rms(&clip);
        assert!((ratio - 0.5012).abs() < 0.01, "noise/clip level {ratio}");
        let never = AudioAugmentation {
            noise_probability: 0.0,
            ..a
        };
        let mut same = clip.clone();
        never.mix_noise(&mut same, &noise, &mut rng);
        assert_eq!(same, clip);
    }

    #[test]
    fn masks_zero_whole_rows_and_columns() {
        use rand::SeedableRng;
        let a = AudioAugmentation {
            time_masks: 1,
            time_mask_fraction: 0.5,
            freq_masks: 1,
            freq_mask_fraction: 0.5,
            ..Default::default()
        };
        let (mels, frames) = (8, 10);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut spec = vec![1.0f32; mels * frames];
        a.masks(&mut spec, mels, frames, &mut rng);
        // Every zero lies in a fully zeroed row or column.
        for m in 0..mels {
            for f in 0..frames {
                if spec[m * frames + f] == 0.0 {
                    let row = (0..frames).all(|g| spec[m * frames + g] == 0.0);
                    let col = (0..mels).all(|n| spec[n * frames + f] == 0.0);
                    assert!(row || col);
                }
            }
        }
    }
}

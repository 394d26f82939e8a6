//! Command-line settings for folders of sound clips: how clips are cut and resampled, the
//! spectrogram front end, and sound augmentation (`graft train`, `graft evaluate`,
//! `graft compare`).

use crate::audio::front::{AudioAugmentation, AudioSettings};
use crate::audio::mel::MelSettings;

#[derive(clap::Args, Debug, Clone)]
pub struct SoundArgs {
    /// Sound folders: the rate clips are resampled to, Hz.
    #[arg(long, default_value_t = MelSettings::default().sample_rate)]
    pub rate: u32,
    /// Sound folders: every clip's length in seconds (shorter files are padded).
    #[arg(long, default_value_t = AudioSettings::default().clip_seconds)]
    pub clip: f32,
    /// Sound folders: cut long files into clips starting every this many seconds (0: one
    /// clip from each file's start).
    #[arg(long, default_value_t = 0.0)]
    pub clip_hop: f32,
    /// Spectrogram: mel bands.
    #[arg(long, default_value_t = MelSettings::default().mels)]
    pub mels: usize,
    /// Spectrogram: FFT size (= window length), samples.
    #[arg(long, default_value_t = MelSettings::default().fft)]
    pub fft: usize,
    /// Spectrogram: samples between windows.
    #[arg(long, default_value_t = MelSettings::default().hop)]
    pub stft_hop: usize,
    /// Spectrogram: lowest band edge, Hz.
    #[arg(long, default_value_t = MelSettings::default().fmin)]
    pub fmin: f32,
    /// Spectrogram: highest band edge, Hz (default: half the rate).
    #[arg(long)]
    pub fmax: Option<f32>,
    /// Spectrogram: hold values within this many dB of each clip's loudest (0: off).
    #[arg(long, default_value_t = AudioSettings::default().floor_db)]
    pub floor_db: f32,
    /// Sound augmentation: `default`, `none`, or comma-separated `shift=SECONDS`,
    /// `gain=DB`, `time-masks=N`, `time-mask=FRACTION`, `freq-masks=N`, `freq-mask=FRACTION`,
    /// `noise=DIR` (mix in background noise from DIR's sound files), `noise-p=P`,
    /// `snr=LO:HI` (dB).
    #[arg(long, num_args = 0..=1, default_missing_value = "default")]
    pub sound_augment: Option<String>,
}

impl SoundArgs {
    pub fn settings(&self) -> Result<AudioSettings, String> {
        let s = AudioSettings {
            mel: MelSettings {
                sample_rate: self.rate,
                fft: self.fft,
                hop: self.stft_hop,
                mels: self.mels,
                fmin: self.fmin,
                fmax: self.fmax.unwrap_or(self.rate as f32 / 2.0),
                log_offset: MelSettings::default().log_offset,
            },
            clip_seconds: self.clip,
            hop_seconds: self.clip_hop,
            floor_db: self.floor_db,
            ..AudioSettings::default()
        };
        s.validate()?;
        Ok(s)
    }

    /// The augmentation `--sound-augment` asks for (`None` without it).
    pub fn augmentation(&self) -> Result<Option<AudioAugmentation>, String> {
        self.sound_augment
            .as_deref()
            .map_or(Ok(None), parse_sound_augment)
    }
}

fn parse_sound_augment(v: &str) -> Result<Option<AudioAugmentation>, String> {
    match v {
        "none" => return Ok(None),
        "default" => return Ok(Some(AudioAugmentation::default())),
        _ => {}
    }
    // Unnamed settings are off: only what the list names is applied.
    let mut a = AudioAugmentation {
        time_shift_seconds: 0.0,
        gain_db: 0.0,
        time_masks: 0,
        freq_masks: 0,
        ..AudioAugmentation::default()
    };
    for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or(format!("{part}: use key=value"))?;
        let number = || -> Result<f32, String> {
            value
                .parse::<f32>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or(format!("{part}: not a non-negative number"))
        };
        let count = || -> Result<usize, String> {
            value
                .parse::<usize>()
                .map_err(|_| format!("{part}: not a count"))
        };
        match key {
            "shift" => a.time_shift_seconds = number()?,
            "gain" => a.gain_db = number()?,
            "time-masks" => a.time_masks = count()?,
            "time-mask" => a.time_mask_fraction = number()?.min(1.0),
            "freq-masks" => a.freq_masks = count()?,
            "freq-mask" => a.freq_mask_fraction = number()?.min(1.0),
            "noise" => {
                let dir = std::path::PathBuf::from(value);
                if !dir.is_dir() {
                    return Err(format!("{part}: not a folder"));
                }
                a.noise_folder = Some(dir);
            }
            "noise-p" => a.noise_probability = number()?.min(1.0),
            "snr" => {
                let (lo, hi) = value
                    .split_once(':')
                    .ok_or(format!("{part}: use snr=LO:HI"))?;
                let db = |v: &str| {
                    v.parse::<f32>()
                        .ok()
                        .filter(|x| x.is_finite())
                        .ok_or(format!("{part}: not a number of dB"))
                };
                a.noise_snr_db = (db(lo)?, db(hi)?);
            }
            _ => {
                return Err(format!(
                    "{key}: unknown (use shift, gain, time-masks, time-mask, freq-masks, \
                     freq-mask, noise, noise-p, snr)"
                ));
            }
        }
    }
    Ok(Some(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sound_augmentation_lists_parse() {
        assert_eq!(parse_sound_augment("none").unwrap(), None);
        let a = parse_sound_augment("shift=0.2,time-masks=2")
            .unwrap()
            .unwrap();
        assert_eq!(a.time_shift_seconds, 0.2);
        assert_eq!(a.time_masks, 2);
        assert_eq!(a.gain_db, 0.0);
        assert!(parse_sound_augment("gain=-3").is_err());
        assert!(parse_sound_augment("noise=/no/such/folder").is_err());
        let n = parse_sound_augment("snr=0:10,noise-p=1").unwrap().unwrap();
        assert_eq!((n.noise_snr_db, n.noise_probability), ((0.0, 10.0), 1.0));
        assert!(parse_sound_augment("echo=1").is_err());
    }
}

//! Sound files in, mono samples at the chosen rate out. symphonia decodes (WAV at 8/16/24/32
//! bits or float, FLAC, OGG/Vorbis, MP3); channels are averaged to mono; rubato's FFT
//! resampler converts the rate (band-limited, not nearest-sample). Every failure is an
//! [`AudioError`] naming the file, so a scan can skip it and list why.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use std::path::{Path, PathBuf};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// File endings read as sound.
pub const AUDIO_EXTENSIONS: &[&str] = &["wav", "wave", "flac", "ogg", "oga", "mp3"];

/// The longest sound decoded, in seconds: a longer file is an error rather than gigabytes of
/// samples (an hour of 48 kHz audio is 700 MB as f32).
pub const MAX_SECONDS: f64 = 3600.0;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AudioError {
    #[error("cannot read {path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("{path}: not a sound file Graft reads ({message})")]
    Unsupported { path: PathBuf, message: String },
    #[error("{path}: corrupt ({message})")]
    Corrupt { path: PathBuf, message: String },
    #[error("{path}: no samples")]
    Empty { path: PathBuf },
    #[error("{path}: longer than {MAX_SECONDS} s")]
    TooLong { path: PathBuf },
    #[error("cannot resample {from} Hz to {to} Hz: {message}")]
    Resample { from: u32, to: u32, message: String },
}

/// A decoded sound: mono samples and their rate.
#[derive(Clone, Debug, PartialEq)]
pub struct Sound {
    pub samples: Vec<f32>,
    pub rate: u32,
}

impl Sound {
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / self.rate.max(1) as f64
    }
}

pub fn is_audio(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Decodes `path` to mono at its own rate.
pub fn decode(path: &Path) -> Result<Sound, AudioError> {
    let unsupported = |e: SymphoniaError| AudioError::Unsupported {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|e| AudioError::Unreadable {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            stream,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(unsupported)?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| AudioError::Unsupported {
            path: path.to_path_buf(),
            message: "no audio track".into(),
        })?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| AudioError::Unsupported {
            path: path.to_path_buf(),
            message: "no audio codec parameters".into(),
        })?;
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(unsupported)?;
    let mut mono: Vec<f32> = Vec::new();
    let mut rate = 0u32;
    let mut interleaved: Vec<f32> = Vec::new();
    let (mut decoded, mut bad) = (0usize, 0usize);
    let mut last_error = String::new();
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            // Some streams end on a short read instead of a clean end.
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(e) => {
                return Err(AudioError::Corrupt {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                });
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                decoded += 1;
                let spec = buf.spec();
                rate = spec.rate();
                let channels = spec.channels().count().max(1);
                interleaved.resize(buf.samples_interleaved(), 0.0);
                buf.copy_to_slice_interleaved(&mut interleaved);
                mono.extend(
                    interleaved
                        .chunks_exact(channels)
                        .map(|frame| frame.iter().sum::<f32>() / channels as f32),
                );
                if rate > 0 && mono.len() as f64 > MAX_SECONDS * rate as f64 {
                    return Err(AudioError::TooLong {
                        path: path.to_path_buf(),
                    });
                }
            }
            // A damaged packet is skipped, as players do; a file of nothing else is corrupt.
            Err(SymphoniaError::DecodeError(m)) => {
                bad += 1;
                last_error = m.to_string();
            }
            Err(e) => {
                return Err(AudioError::Corrupt {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                });
            }
        }
    }
    if decoded == 0 && bad > 0 {
        return Err(AudioError::Corrupt {
            path: path.to_path_buf(),
            message: last_error,
        });
    }
    if mono.is_empty() || rate == 0 {
        return Err(AudioError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(Sound {
        samples: mono,
        rate,
    })
}

/// `samples` at `from` Hz resampled to `to` Hz (rubato's synchronous FFT resampler: the
/// output lines up with the input, without the resampler's start-up delay).
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, AudioError> {
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let err = |message: String| AudioError::Resample { from, to, message };
    // Making a resampler plans its FFTs: one per thread and pair of rates, reused (a
    // loader resamples every clip of a folder recorded at the same rate).
    RESAMPLERS.with(|cell| {
        let mut cache = cell.borrow_mut();
        let resampler = match cache.entry((from, to)) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert(
                Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Both)
                    .map_err(|e| err(e.to_string()))?,
            ),
        };
        let input =
            InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| err(e.to_string()))?;
        // `process_all` resets the resampler first, so reuse cannot leak one clip into the next.
        let out = resampler
            .process_all(&input, samples.len(), None)
            .map_err(|e| err(e.to_string()))?;
        Ok(out.take_data())
    })
}

thread_local! {
    static RESAMPLERS: std::cell::RefCell<std::collections::HashMap<(u32, u32), Fft<f32>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// [`decode`] then [`resample`] to `rate`.
pub fn load(path: &Path, rate: u32) -> Result<Vec<f32>, AudioError> {
    let sound = decode(path)?;
    resample(&sound.samples, sound.rate, rate)
}

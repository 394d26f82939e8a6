//! Sound out of the speakers: the data panel's play button (issue 11).
//!
//! Decision (docs/ARCHITECTURE.md): ALSA's `libasound.so.2`, opened when the first clip plays
//! (libloading), through its five-call "simple" playback API. The audio output crates (cpal,
//! rodio, tinyaudio 2.0) link libasound at build time, which needs its development package
//! and pkg-config, so README's `cargo run` would fail on a fresh machine; and a binary linked
//! to it would not start on a machine without it. Opened at run time, a missing library or
//! sound device is an error value the panel shows quietly — no sound device is not an error
//! for the rest of Graft. Where ALSA's default device is PulseAudio or PipeWire (desktops), it
//! plays through them. Other systems than Linux get "no sound output on this system".
//!
//! A clip plays on its own thread in 50 ms writes, so stopping takes effect within one write
//! and the UI thread never waits on the device.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// ALSA's name for the system's default output.
pub const DEFAULT_DEVICE: &str = "default";

/// Where a playback is.
#[derive(Clone, Debug, PartialEq)]
pub enum PlayState {
    /// Opening the device or writing samples.
    Playing,
    /// Every sample was played (or the playback was stopped).
    Done,
    /// No sound output: the reason (no library, no device, the device refused the format).
    Failed(String),
}

/// One clip playing on its own thread. Dropping it stops the sound.
pub struct Playback {
    shared: Arc<Shared>,
    total: usize,
    rate: u32,
}

struct Shared {
    stop: AtomicBool,
    /// Frames handed to the device so far.
    written: AtomicUsize,
    state: Mutex<PlayState>,
}

impl Playback {
    /// Starts playing mono `samples` at `rate` Hz on the default output.
    pub fn start(samples: Vec<f32>, rate: u32) -> Self {
        Self::start_on(DEFAULT_DEVICE, samples, rate)
    }

    /// Starts playing on the ALSA device `device` ("default", "null", "hw:0", …).
    pub fn start_on(device: &str, samples: Vec<f32>, rate: u32) -> Self {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            written: AtomicUsize::new(0),
            state: Mutex::new(PlayState::Playing),
        });
        let total = samples.len();
        let (s, device) = (shared.clone(), device.to_string());
        let spawned = std::thread::Builder::new()
            .name("graft-playback".into())
            .spawn(move || {
                let end = match play(&device, &samples, rate, &s) {
                    Ok(()) => PlayState::Done,
                    Err(e) => PlayState::Failed(e),
                };
                *s.state.lock().unwrap_or_else(|p| p.into_inner()) = end;
            });
        if let Err(e) = spawned {
            *shared.state.lock().unwrap_or_else(|p| p.into_inner()) =
                PlayState::Failed(format!("cannot start a thread: {e}"));
        }
        Playback {
            shared,
            total,
            rate: rate.max(1),
        }
    }

    pub fn state(&self) -> PlayState {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Seconds handed to the device so far (what is heard lags by the device's latency, 0.1 s).
    pub fn seconds_played(&self) -> f32 {
        self.shared.written.load(Ordering::Relaxed) as f32 / self.rate as f32
    }

    pub fn seconds_total(&self) -> f32 {
        self.total as f32 / self.rate as f32
    }

    /// Stops within one write (50 ms); the state becomes [`PlayState::Done`].
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for Playback {
    fn drop(&mut self) {
        // The thread sees the flag and ends by itself: dropping never waits on the device.
        self.stop();
    }
}

#[cfg(target_os = "linux")]
fn play(device: &str, samples: &[f32], rate: u32, shared: &Shared) -> Result<(), String> {
    let alsa = alsa::library()?;
    let pcm = alsa::Pcm::open(alsa, device, rate)?;
    let chunk = (rate as usize / 20).max(64);
    for part in samples.chunks(chunk) {
        if shared.stop.load(Ordering::Relaxed) {
            pcm.drop_pending();
            return Ok(());
        }
        pcm.write(part)?;
        shared.written.fetch_add(part.len(), Ordering::Relaxed);
    }
    pcm.drain();
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn play(_device: &str, _samples: &[f32], _rate: u32, _shared: &Shared) -> Result<(), String> {
    Err("no sound output on this system (Graft plays sound through ALSA, on Linux)".into())
}

#[cfg(target_os = "linux")]
mod alsa {
    //! The few libasound calls playback needs, resolved at run time.
    use libloading::Library;
    use std::ffi::{CStr, CString, c_char, c_int, c_long, c_uint, c_ulong, c_void};
    use std::sync::OnceLock;

    const STREAM_PLAYBACK: c_int = 0;
    const FORMAT_FLOAT_LE: c_int = 14;
    const ACCESS_RW_INTERLEAVED: c_int = 3;
    /// The device's buffer, in microseconds: short enough for a stop to be heard at once.
    const LATENCY_US: c_uint = 100_000;

    type ErrorHandler =
        unsafe extern "C" fn(*const c_char, c_int, *const c_char, c_int, *const c_char);

    pub struct Alsa {
        open: unsafe extern "C" fn(*mut *mut c_void, *const c_char, c_int, c_int) -> c_int,
        set_params:
            unsafe extern "C" fn(*mut c_void, c_int, c_int, c_uint, c_uint, c_int, c_uint) -> c_int,
        writei: unsafe extern "C" fn(*mut c_void, *const c_void, c_ulong) -> c_long,
        recover: unsafe extern "C" fn(*mut c_void, c_int, c_int) -> c_int,
        drain: unsafe extern "C" fn(*mut c_void) -> c_int,
        drop: unsafe extern "C" fn(*mut c_void) -> c_int,
        close: unsafe extern "C" fn(*mut c_void) -> c_int,
        strerror: unsafe extern "C" fn(c_int) -> *const c_char,
        /// Keeps the functions above loaded.
        _library: Library,
    }

    /// libasound, loaded once for the process (or why it could not be).
    pub fn library() -> Result<&'static Alsa, String> {
        static ALSA: OnceLock<Result<Alsa, String>> = OnceLock::new();
        ALSA.get_or_init(load).as_ref().map_err(Clone::clone)
    }

    fn load() -> Result<Alsa, String> {
        // SAFETY: libasound's initialisers have no preconditions; each symbol below is given
        // the C signature of alsa-lib's public header (pcm.h, error.h).
        unsafe {
            let library = Library::new("libasound.so.2")
                .map_err(|e| format!("no sound output: ALSA's libasound.so.2 not found ({e})"))?;
            let missing = |e: libloading::Error| format!("no sound output: libasound: {e}");
            macro_rules! get {
                ($name:literal) => {
                    *library.get($name).map_err(missing)?
                };
            }
            // ALSA prints every failed lookup of a card to stderr; a machine without a sound
            // card is normal, and the error comes back as a value anyway.
            let set_handler: unsafe extern "C" fn(Option<ErrorHandler>) -> c_int =
                get!(b"snd_lib_error_set_handler\0");
            set_handler(Some(quiet));
            Ok(Alsa {
                open: get!(b"snd_pcm_open\0"),
                set_params: get!(b"snd_pcm_set_params\0"),
                writei: get!(b"snd_pcm_writei\0"),
                recover: get!(b"snd_pcm_recover\0"),
                drain: get!(b"snd_pcm_drain\0"),
                drop: get!(b"snd_pcm_drop\0"),
                close: get!(b"snd_pcm_close\0"),
                strerror: get!(b"snd_strerror\0"),
                _library: library,
            })
        }
    }

    /// ALSA's error handler is variadic; the arguments after the format are never read, which
    /// the C calling conventions of Linux's targets allow.
    unsafe extern "C" fn quiet(
        _file: *const c_char,
        _line: c_int,
        _function: *const c_char,
        _err: c_int,
        _fmt: *const c_char,
    ) {
    }

    impl Alsa {
        fn message(&self, code: c_int) -> String {
            // SAFETY: snd_strerror returns a static string for any code.
            unsafe {
                let s = (self.strerror)(code);
                if s.is_null() {
                    format!("error {code}")
                } else {
                    CStr::from_ptr(s).to_string_lossy().into_owned()
                }
            }
        }
    }

    /// An open playback device, mono f32 at one rate; closed when dropped.
    pub struct Pcm {
        alsa: &'static Alsa,
        handle: *mut c_void,
    }

    impl Pcm {
        pub fn open(alsa: &'static Alsa, device: &str, rate: u32) -> Result<Pcm, String> {
            let name = CString::new(device).map_err(|_| format!("bad device name {device:?}"))?;
            let mut handle = std::ptr::null_mut();
            // SAFETY: `handle` receives the device on success; `name` outlives the call.
            let code = unsafe { (alsa.open)(&mut handle, name.as_ptr(), STREAM_PLAYBACK, 0) };
            if code < 0 || handle.is_null() {
                return Err(format!(
                    "no sound output: cannot open ALSA device \"{device}\" ({})",
                    alsa.message(code)
                ));
            }
            let pcm = Pcm { alsa, handle };
            // Mono floats at the clip's rate; ALSA's plug layer converts to what the device
            // takes (soft_resample = 1).
            // SAFETY: `handle` is an open device.
            let code = unsafe {
                (alsa.set_params)(
                    handle,
                    FORMAT_FLOAT_LE,
                    ACCESS_RW_INTERLEAVED,
                    1,
                    rate,
                    1,
                    LATENCY_US,
                )
            };
            if code < 0 {
                return Err(format!(
                    "no sound output: ALSA device \"{device}\" refused mono at {rate} Hz ({})",
                    alsa.message(code)
                ));
            }
            Ok(pcm)
        }

        /// Writes every frame of `samples`, waiting for room; an underrun is recovered.
        pub fn write(&self, mut samples: &[f32]) -> Result<(), String> {
            while !samples.is_empty() {
                // SAFETY: `samples` holds `len` mono frames of f32, the format set at open.
                let n = unsafe {
                    (self.alsa.writei)(
                        self.handle,
                        samples.as_ptr().cast(),
                        samples.len() as c_ulong,
                    )
                };
                if n < 0 {
                    // SAFETY: an open device and the error writei returned.
                    let code = unsafe { (self.alsa.recover)(self.handle, n as c_int, 1) };
                    if code < 0 {
                        return Err(format!("sound output failed ({})", self.alsa.message(code)));
                    }
                    continue;
                }
                samples = &samples[(n as usize).min(samples.len())..];
            }
            Ok(())
        }

        /// Waits until what was written has been played.
        pub fn drain(&self) {
            // SAFETY: an open device.
            unsafe { (self.alsa.drain)(self.handle) };
        }

        /// Throws away what was written and not yet played.
        pub fn drop_pending(&self) {
            // SAFETY: an open device.
            unsafe { (self.alsa.drop)(self.handle) };
        }
    }

    impl Drop for Pcm {
        fn drop(&mut self) {
            // SAFETY: the device was opened by `open` and is closed once.
            unsafe { (self.alsa.close)(self.handle) };
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait(p: &Playback, limit: Duration) -> PlayState {
        let t0 = Instant::now();
        while p.state() == PlayState::Playing && t0.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(5));
        }
        p.state()
    }

    #[test]
    fn a_clip_plays_to_the_end_on_alsas_null_device() {
        // ALSA's "null" device takes samples like a sound card and discards them: the whole
        // path (library, open, format, writes, drain) runs without a sound card.
        let tone: Vec<f32> = (0..8000).map(|i| (i as f32 * 0.05).sin() * 0.1).collect();
        let p = Playback::start_on("null", tone, 16_000);
        assert_eq!(wait(&p, Duration::from_secs(10)), PlayState::Done);
        assert_eq!(p.seconds_played(), 0.5);
        assert_eq!(p.seconds_total(), 0.5);
    }

    #[test]
    fn stopping_ends_a_long_clip_early() {
        let p = Playback::start_on("null", vec![0.0; 16_000 * 600], 16_000);
        p.stop();
        assert_eq!(wait(&p, Duration::from_secs(5)), PlayState::Done);
        assert!(p.seconds_played() < 600.0, "{}", p.seconds_played());
    }

    #[test]
    fn a_missing_device_is_a_failure_with_its_name_not_a_panic() {
        let p = Playback::start_on("graft_no_such_device", vec![0.0; 1000], 16_000);
        match wait(&p, Duration::from_secs(10)) {
            PlayState::Failed(m) => assert!(m.contains("graft_no_such_device"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

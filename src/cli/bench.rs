use crate::engine::DeviceChoice;
use std::path::Path;

/// Times inference on random input (`engine::speed`); prints one JSON line with the median
/// images per second (for tools/bench_inference.py).
pub fn run(
    model: &Path,
    batch: usize,
    iterations: usize,
    device: DeviceChoice,
) -> Result<(), String> {
    let imported = super::open_model(model)?;
    let s = crate::engine::speed::measure(
        &imported.network,
        &imported.store,
        batch,
        iterations,
        device,
    )?;
    println!(
        "{{\"model\": \"{}\", \"device\": \"{}\", \"batch\": {batch}, \"median_s\": {:.6}, \"images_per_s\": {:.2}}}",
        imported.network.name, s.device, s.median_s, s.images_per_s
    );
    Ok(())
}

/// Clips per second through the sound front end (decode, resample, clip, log-mel,
/// standardise, resize, three channels) on one thread, for tools/bench_sound.py.
pub fn front(dir: &Path, sound: &super::sound::SoundArgs) -> Result<(), String> {
    use crate::audio::clips::SoundFraming;
    use crate::audio::front::FrontEnd;
    let settings = sound.settings()?;
    let framing = SoundFraming::plain(FrontEnd {
        settings,
        mean: 0.0,
        std: 1.0,
    });
    let files = crate::files::under(dir, crate::audio::decode::is_audio)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    if files.is_empty() {
        return Err(format!("no sound files under {}", dir.display()));
    }
    let start = std::time::Instant::now();
    let mut values = 0usize;
    for path in &files {
        let sample = crate::data::Sample {
            path: path.clone(),
            label: 0,
            objects: Vec::new(),
            start: Some(0.0),
        };
        values += framing.input(&sample, 224, 3, 0)?.len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"clips\": {}, \"seconds\": {secs:.4}, \"clips_per_s\": {:.2}, \"values\": {values}}}",
        files.len(),
        files.len() as f64 / secs
    );
    Ok(())
}

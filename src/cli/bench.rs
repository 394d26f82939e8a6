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

use crate::engine::{DeviceChoice, Model, Value, optimize, select_device};
use crate::graph::Network;
use std::path::Path;
use std::time::Instant;

/// Times inference on random input: warm-up runs, then `iterations` timed runs; prints one
/// JSON line with the median images per second (for tools/bench_inference.py).
pub fn run(
    model: &Path,
    batch: usize,
    iterations: usize,
    device: DeviceChoice,
) -> Result<(), String> {
    let imported = super::open_model(model)?;
    let dev = select_device(device)?;
    let (net, store) = optimize::for_inference(&imported.network, &imported.store);
    let model = Model::build(&net, &store, &dev.device).map_err(|e| e.to_string())?;
    let mut shape = net.input.shape.clone();
    shape[0] = batch;
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let input = Value::from_data(&shape, data, &dev.device);
    let once = || -> Result<f64, String> {
        let t = Instant::now();
        let out = model
            .forward(input.clone(), crate::engine::Mode::Inference)
            .map_err(|e| e.to_string())?;
        // Reading the result back waits for the device.
        out[0].to_vec()?;
        Ok(t.elapsed().as_secs_f64())
    };
    for _ in 0..3 {
        once()?;
    }
    crate::engine::profile::report();
    let mut times: Vec<f64> = (0..iterations).map(|_| once()).collect::<Result<_, _>>()?;
    if crate::engine::profile::enabled() {
        eprint!("{}", crate::engine::profile::report());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{{\"model\": \"{}\", \"device\": \"{}\", \"batch\": {batch}, \"median_s\": {median:.6}, \"images_per_s\": {:.2}}}",
        name(&net),
        dev.description,
        batch as f64 / median
    );
    Ok(())
}

fn name(net: &Network) -> &str {
    &net.name
}

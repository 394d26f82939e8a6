//! How fast a network infers on this machine: warm-up runs, then the median of timed runs on
//! fixed pseudo-random input (`graft bench`, the gallery's images/s).

use super::{DeviceChoice, Model, Value, optimize, select_device};
use crate::graph::Network;
use crate::weights::Store;
use std::time::Instant;

pub struct Speed {
    pub images_per_s: f64,
    pub median_s: f64,
    /// The device it ran on, in words (`CPU (flex, 2 threads)`).
    pub device: String,
}

pub fn measure(
    net: &Network,
    store: &Store,
    batch: usize,
    iterations: usize,
    device: DeviceChoice,
) -> Result<Speed, String> {
    let dev = select_device(device)?;
    let (net, store) = optimize::for_inference(net, store);
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
            .forward(input.clone(), super::Mode::Inference)
            .map_err(|e| e.to_string())?;
        // Reading the result back waits for the device.
        out[0].to_vec()?;
        Ok(t.elapsed().as_secs_f64())
    };
    for _ in 0..3 {
        once()?;
    }
    super::profile::report();
    let mut times: Vec<f64> = (0..iterations.max(1))
        .map(|_| once())
        .collect::<Result<_, _>>()?;
    if super::profile::enabled() {
        eprint!("{}", super::profile::report());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    Ok(Speed {
        images_per_s: batch as f64 / median,
        median_s: median,
        device: dev.description,
    })
}

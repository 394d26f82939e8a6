use crate::engine::{DeviceChoice, Model, optimize, select_device};
use std::path::Path;

pub fn run(model: &Path, input: &Path, output: &Path, device: DeviceChoice) -> Result<(), String> {
    let imported = super::open_model(model)?;
    let (shape, data) = crate::npy::read_f32(input)?;
    let dev = select_device(device)?;
    if let Some(reason) = &dev.fallback_reason {
        eprintln!("note: running on the CPU: {reason}");
    }
    let (net, store) = optimize::for_inference(&imported.network, &imported.store);
    let model = Model::build(&net, &store, &dev.device).map_err(|e| e.to_string())?;
    let outputs = model.infer(&shape, data).map_err(|e| e.to_string())?;
    let (shape, values) = outputs
        .into_iter()
        .next()
        .ok_or("the network has no output")?;
    crate::npy::write_f32(output, &shape, &values)?;
    eprintln!(
        "wrote {} {:?} ({})",
        output.display(),
        shape,
        dev.description
    );
    Ok(())
}

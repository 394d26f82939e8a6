//! A tiny forward pass on wgpu. Without a GPU this runs on Mesa's software Vulkan (lavapipe,
//! installed by tools/install-test-deps.sh), which compiles kernels slowly, so the network is
//! small and autotuning is minimal. The real wgpu numbers come from a GPU machine
//! (docs/BENCHMARKS.md).

use graft::engine::{DeviceChoice, Model, select_device};
use std::path::Path;

#[test]
fn a_small_network_runs_on_wgpu_with_cpu_answers() {
    // SAFETY: this test binary runs this one test; nothing else reads the environment.
    unsafe { std::env::set_var("CUBECL_AUTOTUNE_LEVEL", "minimal") };
    let dev = select_device(DeviceChoice::Wgpu)
        .expect("a wgpu adapter (install mesa-vulkan-drivers: tools/install-test-deps.sh)");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/darknet_op13");
    let imported = graft::onnx::import(dir.join("model.onnx")).unwrap();
    let (shape, input) = graft::npy::read_f32(&dir.join("input.npy")).unwrap();
    let (_, want) = graft::npy::read_f32(&dir.join("output.npy")).unwrap();
    let model = Model::build(&imported.network, &imported.store, &dev.device).unwrap();
    let got = model.infer(&shape, input).unwrap().remove(0).1;
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f32::max)
        / scale;
    assert!(
        err <= 1e-3,
        "wgpu ({}) differs from PyTorch by {err}",
        dev.description
    );
}

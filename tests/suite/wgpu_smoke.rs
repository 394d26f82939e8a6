//! Small checks on wgpu. Without a GPU they run on Mesa's software Vulkan (lavapipe,
//! installed by tools/install-test-deps.sh), which compiles kernels slowly, so the networks
//! and tensors are small and autotuning is minimal. The real wgpu numbers come from a GPU
//! machine (docs/BENCHMARKS.md).

use crate::common::{fixture, max_rel_error};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use graft::engine::{DeviceChoice, DeviceInfo, Model, gpu_train, select_device};
use graft::graph::Conv;
use std::sync::Once;

/// The wgpu device, autotuning minimal: every kernel's candidates compile on lavapipe, slowly.
fn wgpu() -> DeviceInfo {
    static MINIMAL: Once = Once::new();
    // SAFETY: set once. Rust's own reads of the environment take the lock `set_var` takes;
    // a C library reading it at this moment on another test's thread (Vulkan's loader, when
    // a test lists wgpu adapters) is the remaining race, as for any test that sets a variable.
    MINIMAL.call_once(|| unsafe { std::env::set_var("CUBECL_AUTOTUNE_LEVEL", "minimal") });
    select_device(DeviceChoice::Wgpu)
        .expect("a wgpu adapter (install mesa-vulkan-drivers: tools/install-test-deps.sh)")
}

#[test]
fn a_small_network_runs_on_wgpu_with_cpu_answers() {
    let dev = wgpu();
    let dir = fixture("darknet_op13");
    let imported = graft::onnx::import(dir.join("model.onnx")).unwrap();
    let (shape, input) = graft::npy::read_f32(&dir.join("input.npy")).unwrap();
    let (_, want) = graft::npy::read_f32(&dir.join("output.npy")).unwrap();
    let model = Model::build(&imported.network, &imported.store, &dev.device).unwrap();
    let got = model.infer(&shape, input).unwrap().remove(0).1;
    let err = max_rel_error(&got, &want);
    assert!(
        err <= 1e-3,
        "wgpu ({}) differs from PyTorch by {err}",
        dev.description
    );
}

/// Deterministic values in [-1, 1).
fn seq(len: usize, seed: u32) -> Vec<f32> {
    (0..len as u32)
        .map(|i| {
            let v = i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
            (v % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Graft's GPU depthwise convolution (its weight gradient Graft's own) against burn's
/// convolution on the CPU: output and x, weight and bias gradients, for a 3x3 and for a 5x5
/// with stride, dilation and asymmetric padding together.
#[test]
fn depthwise_gradients_on_wgpu_match_the_cpu() {
    let gpu = wgpu().device.autodiff();
    let cpu = Device::flex().autodiff();
    // (n, c, h, w, k, stride, dilation, pads [t, l, b, r]): each weight's gradient a sum of
    // 16,000-19,000 products, where Graft's takes over from burn's. Two cases, since each
    // compiles its own kernels on lavapipe (~20 s): the common 3x3, and the rest at once.
    let cases = [
        (2, 3, 96, 96, 3, 1, 1, [1, 1, 1, 1]),
        (8, 4, 97, 95, 5, 2, 2, [1, 2, 2, 1]),
    ];
    for (n, c, h, w, k, stride, dilation, pads) in cases {
        let conv = Conv {
            strides: [stride; 2],
            pads,
            dilations: [dilation; 2],
            groups: c,
        };
        let on = |dev: &Device, graft: bool| {
            let x =
                Tensor::<4>::from_data(TensorData::new(seq(n * c * h * w, 1), [n, c, h, w]), dev)
                    .require_grad();
            let wt = Tensor::<4>::from_data(TensorData::new(seq(c * k * k, 2), [c, 1, k, k]), dev)
                .require_grad();
            let b = Tensor::<1>::from_data(TensorData::new(seq(c, 3), [c]), dev).require_grad();
            let y = if graft {
                gpu_train::depthwise_conv(&x, &wt, Some(&b), &conv).expect("applies on wgpu")
            } else {
                let opts = ConvOptions::new_with_padding(
                    conv.strides,
                    [(pads[0], pads[2]), (pads[1], pads[3])],
                    conv.dilations,
                    c,
                );
                conv2d(x.clone(), wt.clone(), Some(b.clone()), opts)
            };
            // Σ y·r, so that every output has its own gradient weight.
            let r = Tensor::<4>::from_data(
                TensorData::new(seq(y.shape().num_elements(), 4), y.dims()),
                dev,
            );
            let grads = (y.clone() * r).sum().backward();
            let grad = |t: &Tensor<4>| values(t.grad(&grads).expect("a gradient"));
            [
                values(y),
                grad(&x),
                grad(&wt),
                values(b.grad(&grads).expect("a gradient")),
            ]
        };
        let (got, want) = (on(&gpu, true), on(&cpu, false));
        for (what, (g, e)) in ["output", "x gradient", "weight gradient", "bias gradient"]
            .iter()
            .zip(got.iter().zip(&want))
        {
            let off = max_rel_error(g, e);
            assert!(
                off < 1e-4,
                "{what} of {n}x{c}x{h}x{w}, {k}x{k} /{stride} d{dilation} {pads:?}: off by {off}"
            );
        }
    }
    // Not depthwise, short sums, or not under autodiff: burn's own op runs instead.
    let square = |c| Conv {
        strides: [1, 1],
        pads: [1; 4],
        dilations: [1, 1],
        groups: c,
    };
    let declines = |x: Tensor<4>, w: [usize; 4], conv: Conv| {
        let dev = x.device();
        gpu_train::depthwise_conv(&x, &Tensor::zeros(w, &dev), None, &conv).is_none()
    };
    assert!(declines(
        Tensor::zeros([1, 2, 128, 128], &gpu),
        [2, 2, 3, 3],
        square(1)
    ));
    assert!(declines(
        Tensor::zeros([1, 2, 64, 64], &gpu),
        [2, 1, 3, 3],
        square(2)
    ));
    let plain = wgpu().device;
    assert!(declines(
        Tensor::zeros([1, 2, 128, 128], &plain),
        [2, 1, 3, 3],
        square(2)
    ));
}

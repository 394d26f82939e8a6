//! Choosing where to run: a wgpu adapter when one is usable, else burn's `flex` CPU backend.
//! Never `Device::default()`, which may pick a much slower CPU backend.

use burn::tensor::{Device, DeviceType};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The GPU through wgpu, else the CPU.
    #[default]
    Auto,
    /// wgpu only (fails without an adapter).
    Wgpu,
    /// burn's flex CPU backend.
    Cpu,
}

/// The device picked and why.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub device: Device,
    /// "wgpu (NVIDIA H100)" or "cpu (flex)".
    pub description: String,
    pub is_gpu: bool,
    /// Set when `Auto` fell back to the CPU.
    pub fallback_reason: Option<String>,
}

impl DeviceInfo {
    /// What the user waits for before the first step on this device, when it is long enough
    /// to say: on a GPU, burn compiles and autotunes each kernel the first time a process
    /// runs it — EfficientNet-Lite0's first epoch took 133 s in a fresh H200 machine's first
    /// process and 52 s in a later one, against 1.7 s for each epoch after (docs/BENCHMARKS.md,
    /// GPU). What made the later one shorter is not established: CubeCL's tuning results and
    /// compiled kernels do not persist in Graft's build (its `persistence` feature is off, see
    /// Cargo.toml), so a GPU driver's own shader cache is the likely part.
    pub fn warm_up_note(&self) -> Option<&'static str> {
        self.is_gpu.then_some(
            "the first steps on the GPU compile and tune its kernels: up to a few minutes, \
             most the first time on this machine",
        )
    }
}

fn cpu(reason: Option<String>) -> DeviceInfo {
    DeviceInfo {
        device: Device::flex(),
        description: "cpu (flex)".into(),
        is_gpu: false,
        fallback_reason: reason,
    }
}

/// Picks a device. `Auto` takes the first wgpu adapter that is a real GPU; a software adapter
/// (Mesa's lavapipe) is far slower than `flex` for training, so `Auto` uses the CPU then.
pub fn select_device(choice: DeviceChoice) -> Result<DeviceInfo, String> {
    if choice == DeviceChoice::Cpu {
        return Ok(cpu(None));
    }
    let adapters = std::panic::catch_unwind(|| Device::enumerate(DeviceType::Wgpu).into_vec())
        .map_err(|_| "the wgpu runtime failed while listing adapters".to_string());
    let adapters = match adapters {
        Ok(a) => a,
        Err(e) if choice == DeviceChoice::Auto => return Ok(cpu(Some(e))),
        Err(e) => return Err(e),
    };
    let described: Vec<(Device, String, bool)> = adapters
        .into_iter()
        .map(|d| {
            let name = d
                .identity()
                .map(|i| format!("{i:?}"))
                .unwrap_or_else(|| "wgpu adapter".into());
            let software = is_software(&name);
            (d, name, software)
        })
        .collect();
    if let Some((d, name, _)) = described.iter().find(|(_, _, sw)| !sw) {
        return Ok(DeviceInfo {
            device: d.clone(),
            description: format!("wgpu ({})", short_name(name)),
            is_gpu: true,
            fallback_reason: None,
        });
    }
    match (choice, described.into_iter().next()) {
        (DeviceChoice::Wgpu, Some((d, name, _))) => Ok(DeviceInfo {
            device: d,
            description: format!("wgpu ({}, software)", short_name(&name)),
            is_gpu: false,
            fallback_reason: None,
        }),
        (DeviceChoice::Wgpu, None) => {
            Err("no wgpu adapter found (no GPU driver for Vulkan, Metal or DX12)".into())
        }
        (_, Some((_, name, _))) => Ok(cpu(Some(format!(
            "the only wgpu adapter is a software renderer ({}); the CPU backend is faster",
            short_name(&name)
        )))),
        (_, None) => Ok(cpu(Some("no GPU adapter found".into()))),
    }
}

fn is_software(name: &str) -> bool {
    let n = name.to_lowercase();
    n.contains("llvmpipe")
        || n.contains("lavapipe")
        || n.contains("swiftshader")
        || n.contains("software")
        || n.contains("cpu")
}

fn short_name(identity: &str) -> String {
    // `DeviceIdentity { name: "NVIDIA H100 80GB HBM3", ... }` → the name.
    identity
        .split("name: \"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or(identity)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_gpu_warns_of_its_warm_up() {
        assert_eq!(cpu(None).warm_up_note(), None);
        let gpu = DeviceInfo {
            is_gpu: true,
            description: "wgpu (NVIDIA H200)".into(),
            ..cpu(None)
        };
        assert!(gpu.warm_up_note().is_some_and(|n| n.contains("compile")));
    }
}

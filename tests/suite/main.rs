//! Graft's integration tests, one binary: each module was once its own `tests/*.rs`; linking
//! twenty binaries against burn, wgpu and tract cost minutes of every cold build (README's
//! 30-minute budget), one costs one link. Run a part by its module path:
//! `cargo test --release --test suite gui::` (`UPDATE_SNAPSHOTS=1` rewrites kittest snapshots).

mod audio;
mod bad_input;
mod cli;
mod common;
mod data;
mod detect;
mod detect_data;
mod edit;
mod export_roundtrip;
mod fuzz;
mod gallery;
#[cfg(feature = "window")]
mod gui;
mod kernel_code;
mod onnx_conformance;
mod op_roundtrip;
mod parity;
mod resume;
mod train;
mod wgpu_smoke;

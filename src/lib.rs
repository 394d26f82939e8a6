//! Graft: transfer learning for image networks.
//!
//! Data flows one way: file → [`graph`] → [`engine`] → results. See `docs/ARCHITECTURE.md`.

#[cfg(feature = "window")]
pub mod app;
pub mod audio;
pub mod classify;
pub mod cli;
pub mod compare;
pub mod data;
pub mod detect;
pub mod engine;
pub mod files;
pub mod format;
pub mod gallery;
pub mod graph;
pub mod npy;
pub mod onnx;
pub mod priority;
pub mod project;
pub mod stats;
pub mod train;
pub mod verify;
pub mod weights;

/// The embedded default network (EfficientNet-Lite0, ImageNet), as ONNX bytes.
pub const DEFAULT_MODEL: &[u8] = include_bytes!("../assets/efficientnet_lite0.onnx");

//! ONNX in and out: the only code that sees protobuf.
//!
//! [`import`] reads a file into the graph IR and a weight store, keeping the file's node
//! names; every malformed file is an `Err` naming what is wrong, never a panic. An op Graft
//! cannot run becomes an [`Op::Unsupported`](crate::graph::Op::Unsupported) placeholder, so
//! the rest of the network still opens.

mod attrs;
pub mod detector;
pub mod export;
mod fold;
mod import;
pub mod layout;
pub mod ops;
mod quantized;
pub mod sound;
pub mod tensor;

pub use export::{
    ExportError, export_bytes, export_file, export_with_labels, export_with_labels_as, labels_path,
};
pub use import::{ImportOptions, Imported, LABELS_KEY, PREPROCESS_KEY, import_model};

use onnx_ir::{Message, ModelProto};
use std::path::Path;

/// The opsets of the default domain Graft reads.
pub const MIN_OPSET: i64 = 1;
pub const MAX_OPSET: i64 = 22;

/// Largest model file Graft opens (protobuf's own limit is 2 GiB).
pub const MAX_FILE_BYTES: u64 = 2 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the file is {0} bytes; Graft opens ONNX files up to 2 GiB")]
    TooLarge(u64),
    #[error("not an ONNX model: {0}")]
    NotOnnx(String),
    #[error("opset {0} is not supported: Graft reads ONNX opsets {MIN_OPSET} to {MAX_OPSET}")]
    Opset(i64),
    #[error("the graph has a cycle through node '{0}'")]
    Cycle(String),
    #[error("node '{node}' reads '{value}', which no node produces and no initializer holds")]
    Missing { node: String, value: String },
    #[error("initializer '{name}': {message}")]
    BadTensor { name: String, message: String },
    #[error("node '{node}' ({op}): {message}")]
    Node {
        node: String,
        op: String,
        message: String,
    },
    #[error("node '{node}': {what} depend on the batch size in a way Graft cannot fold")]
    BatchDependent { node: String, what: String },
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Reads an ONNX file.
pub fn import(path: impl AsRef<Path>) -> Result<Imported, ImportError> {
    import_with(path, &ImportOptions::default())
}

/// Reads an ONNX file with import options (an image size for files that leave it open).
pub fn import_with(
    path: impl AsRef<Path>,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    let path = path.as_ref();
    let io = |source| ImportError::Io {
        path: path.display().to_string(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_FILE_BYTES {
        return Err(ImportError::TooLarge(len));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    import_bytes_with(&bytes, options)
}

/// Reads an ONNX model from memory.
pub fn import_bytes(bytes: &[u8]) -> Result<Imported, ImportError> {
    import_bytes_with(bytes, &ImportOptions::default())
}

pub fn import_bytes_with(bytes: &[u8], options: &ImportOptions) -> Result<Imported, ImportError> {
    if bytes.is_empty() {
        return Err(ImportError::NotOnnx("the file is empty".into()));
    }
    let model = ModelProto::parse_from_bytes(bytes)
        .map_err(|e| ImportError::NotOnnx(format!("it is not a valid ONNX protobuf ({e})")))?;
    import_model(&model, options)
}

//! Audio transfer learning (issue 11), built up in parts. So far: the log-mel spectrogram
//! front end, computed the way the exported ONNX file will compute it ([`mel`]). Decoding,
//! resampling, clip datasets and training come next; see docs/ARCHITECTURE.md.

pub mod mel;

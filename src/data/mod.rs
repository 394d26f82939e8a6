//! Images in, tensors out: decoding, resizing and normalisation.

pub mod preprocess;

//! Audio transfer learning (issue 11): sound files decoded and resampled ([`decode`]), folders
//! of clips scanned into datasets ([`clips`]), and the front end that turns a clip into an
//! image network's input ([`front`]: the log-mel spectrogram of [`mel`], standardised,
//! resized, repeated into the input's channels). See docs/ARCHITECTURE.md.

pub mod clips;
pub mod decode;
pub mod front;
pub mod long_files;
pub mod mel;
pub mod playback;

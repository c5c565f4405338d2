//! imgedge generator: stands in for the model server (`synth`) and is its upload path.
//!
//! - [`synth`]: deterministic sample masters (PNG bytes from index, size, seed).
//! - [`upload`]: [`Uploader`] puts PNGs at `outputs/YYYY-MM-DD/image_NNN.png` with
//!   metadata, skipping unchanged ones, versioning or overwriting changed ones, and
//!   invalidates CloudFront once per batch of overwrites.
//! - [`index`]: the pure decision of which key a file goes to.
//! - [`naming`]: prefixes, master names, invalidation paths (pure).
//! - [`png_header`]: width and height from a PNG's header.

pub mod index;
pub mod naming;
pub mod png_header;
pub mod synth;
pub mod upload;

pub use upload::{Action, BatchReport, Config, Retry, UploadError, UploadedImage, Uploader};

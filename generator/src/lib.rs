//! imgedge generator: stands in for the model server (`synth`) and is its upload path.
//!
//! - [`synth`]: deterministic sample masters (PNG bytes from index, size, seed), from
//!   the `samples` crate that `edge serve` seeds with too.
//! - [`upload`]: [`Uploader`] puts PNGs at `outputs/YYYY-MM-DD/image_NNN.png` with
//!   metadata, skipping unchanged ones, versioning or overwriting changed ones, and
//!   invalidates CloudFront once per batch of overwrites.
//! - [`index`]: the pure decision of which key a file goes to.
//! - [`naming`]: prefixes, master names, invalidation paths (pure).
//! - [`png_header`]: width and height from a PNG's header.
//!
//! It builds on the core (`edge` without its emulator or Lambda features): variant key
//! naming and the transform version come from `edge::key`, the S3 client settings and
//! variant deletion from `edge::store::S3Store`.

pub mod index;
pub mod naming;
pub mod png_header;
pub mod upload;

pub use samples::synth;

pub use upload::{Action, BatchReport, Config, Retry, UploadError, UploadedImage, Uploader};

//! imgedge's core: one master image in a bucket, every size and format a client asks for,
//! made once at the origin and cached at the edge.
//!
//! The map of the crate (request path order):
//! - [`key`]: the URI path → a validated [`key::MasterKey`].
//! - [`spec`]: the query → a canonical [`spec::VariantSpec`] (the cache key).
//! - [`transform`]: master bytes + spec → encoded variant (pure).
//! - [`store`]: the bucket (`FsStore`, `MemStore`, `S3Store`) behind one trait.
//! - [`service`]: `ensure_variant` — the variant exists and is fresh, or an [`error::Error`].
//! - [`cloudfront`]: CloudFront origin-request events ↔ the service (pure mapping).
//! - [`local`]: `edge serve`, the local CloudFront emulator.
//! - [`config`]: settings for the Lambda (`config.json`) and the CLI.
#![forbid(unsafe_code)]

pub mod cloudfront;
pub mod config;
pub mod error;
pub mod guard;
pub mod key;
pub mod local;
pub mod policy;
pub mod service;
pub mod sign;
pub mod spec;
pub mod store;
pub mod transform;

pub use error::{Error, ErrorKind, Result};

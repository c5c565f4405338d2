//! imgedge's core: one master image in a bucket, every size and format a client asks for,
//! made once at the origin and cached at the edge.
//!
//! The map of the crate (request path order):
//! - [`key`]: the URI path → a validated [`key::MasterKey`]; variant key naming and the
//!   transform version.
//! - [`spec`]: the query → a canonical [`spec::VariantSpec`] (the cache key).
//! - [`format`]: the image formats, shared by keys and specs.
//! - [`transform`]: master bytes + spec → encoded variant (pure).
//! - [`store`]: the bucket (`FsStore`, `MemStore`, `S3Store`) behind one trait.
//! - [`service`]: `ensure_variant` — the variant exists and is fresh, or an [`error::Error`].
//! - [`cloudfront`]: CloudFront origin-request events ↔ the service (pure mapping).
//! - [`function_url`]: Lambda Function URL requests ↔ the service (the regional mode; feature
//!   `regional`).
//! - [`config`]: settings for the Lambdas (`config.json`, the environment) and the CLI.
//! - [`lambda`]: what both Lambda binaries share (deadline, warm-up, the request's line).
//! - [`single_flight`]: one worker per key among concurrent callers.
//! - [`sign`], [`policy`], [`guard`]: signed URLs, the size/format policy and presets, and
//!   the order they run in before the query is parsed (DESIGN.md §10).
//!
//! Dependencies point one way: these modules know nothing of their callers. The callers
//! are the binaries (`bootstrap`, the Lambda@Edge handler, with the `lambda` feature;
//! `regional`, the Function URL handler, with `regional`; `edge`, the CLI, with `serve`), the local CloudFront emulator [`local`] (feature `serve`, never in the
//! Lambda) and the generator crate.
#![forbid(unsafe_code)]

pub mod cloudfront;
pub mod config;
pub mod error;
pub mod format;
#[cfg(feature = "regional")]
pub mod function_url;
pub mod guard;
pub mod key;
pub mod lambda;
#[cfg(feature = "serve")]
pub mod local;
pub mod observe;
pub mod policy;
pub mod service;
pub mod sign;
pub mod single_flight;
pub mod spec;
pub mod store;
pub mod transform;

pub use error::{Error, ErrorKind, Result};

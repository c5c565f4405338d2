//! `edge serve`: the local CloudFront emulator (DESIGN.md §5). Not part of the Lambda:
//! built only with the `serve` feature.
//!
//! A viewer request goes the way it goes through CloudFront in front of the
//! origin-request Lambda@Edge:
//! 1. cache key = the master key + the canonical query (what the viewer-request
//!    CloudFront Function produces; a request that does not resolve keeps its raw form),
//! 2. edge cache lookup (in memory, bounded by bytes, least recently used evicted first;
//!    TTL from the response's `Cache-Control`, errors included, 5xx never),
//! 3. on a miss: the same origin-request event CloudFront builds, the same handler the
//!    Lambda runs ([`cloudfront::handle_origin_request`]); a generated response is
//!    answered as is, a rewritten request is followed into the store,
//! 4. conditional GET (`If-None-Match` → 304) and HEAD, at hit and miss alike.
//!
//! Concurrent misses for one cache key are collapsed into one origin request, as
//! CloudFront does; the others are answered from the cache afterwards.

//! Modules by concern: [`cache`] (the edge cache), [`server`] (HTTP, viewer requests,
//! origin requests), [`pages`] (gallery HTML), [`playground`] (the page to try every
//! parameter, and its resolve endpoint), [`seed`] (sample masters for an empty bucket),
//! [`store_location`] (`--store`).

pub mod cache;
pub mod metrics;
pub mod pages;
pub mod playground;
pub mod seed;
mod server;
pub mod store_location;

use std::time::Duration;

use crate::guard::Guard;
use crate::observe::LogFormat;

/// CloudFront waits 30 s for an origin-request function; the Lambda's own deadline is
/// 25 s less a margin. The emulator answers within the same bound.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(25);

pub use server::{router, serve, server_timing, shutdown_signal, ViewerKey, INVALIDATE_HEADER};
pub use store_location::StoreLocation;

pub const X_CACHE_HIT: &str = "Hit from imgedge";
pub const X_CACHE_MISS: &str = "Miss from imgedge";
/// `POST` here drops edge cache entries, like a CloudFront invalidation.
pub const INVALIDATE_PATH: &str = "/_imgedge/invalidate";
/// The playground page (HTML/JS): every URL parameter on a master of the bucket.
pub const PLAYGROUND_PATH: &str = "/_imgedge/playground";
/// `GET` here: a query's canonical and (signed) URL as JSON, for loopback callers only.
pub const RESOLVE_PATH: &str = "/_imgedge/resolve";
/// Prometheus text of the emulator (DESIGN.md §11).
pub const METRICS_PATH: &str = "/metrics";

/// Settings of the emulator itself (the origin's limits live in [`crate::service::Origin`]).
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Upper bound of the edge cache: bodies, keys and headers.
    pub cache_bytes: u64,
    /// What the viewer-request function checks: signature, presets, policy.
    pub guard: Guard,
    /// Format of the per-request log line on stderr.
    pub log_format: LogFormat,
    /// An origin request still running after this is answered 504 `timeout` (no-store).
    pub request_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            cache_bytes: 256 * 1024 * 1024,
            guard: Guard::default(),
            log_format: LogFormat::Text,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

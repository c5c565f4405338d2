//! The transform pipeline: decode (limits checked from the header first) → orient →
//! plan → resize → flatten/pad → encode. Pure: bytes in, bytes out, no I/O. Deterministic.

use std::time::Duration;

use crate::error::Result;
use crate::spec::{Format, VariantSpec};

/// Resource limits, checked before decoding (configuration, not constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Maximum master pixels (width × height), read from the header.
    pub max_pixels: u64,
    /// Maximum master size in bytes.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 50_000_000,
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Wall time of each stage, for `Server-Timing` and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    pub decode: Duration,
    pub resize: Duration,
    pub encode: Duration,
}

/// An encoded variant.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub format: Format,
    pub width: u32,
    pub height: u32,
    pub timings: Timings,
}

/// Render `spec` from the master's bytes.
pub fn render(master: &[u8], spec: &VariantSpec, limits: &Limits) -> Result<Rendered> {
    let _ = (master, spec, limits);
    todo!()
}

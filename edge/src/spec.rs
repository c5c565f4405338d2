//! `VariantSpec`: the strict parser of the URL query (DESIGN.md §1) into one canonical
//! description of a variant. Pure: no I/O. The canonical query *is* the cache key and the
//! variant's S3 key, so every spelling of the same output maps to one spec.

use crate::error::{Error, Result};
use crate::key::MasterKey;

/// Image formats imgedge reads (masters) or writes (variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Png,
    Jpeg,
    Webp,
    Avif,
}

impl Format {
    /// File extension of a variant in this format (`jpg` for JPEG).
    pub fn extension(self) -> &'static str {
        todo!()
    }
    pub fn content_type(self) -> &'static str {
        todo!()
    }
    /// Master formats by key extension: `png`, `jpg`, `jpeg`, `webp` (lowercase only).
    pub fn from_master_extension(ext: &str) -> Option<Format> {
        let _ = ext;
        todo!()
    }
    pub fn is_lossy(self) -> bool {
        todo!()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fit {
    Cover,
    Contain,
    Fill,
    Inside,
    Outside,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rgb {
    pub r: u8,
    pub g: u8,
    pub b: u8,
}

/// A parsed, resolved, canonical variant request. dpr is already folded into the sizes,
/// `auto` is resolved, aliases are gone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VariantSpec {
    /// Requested box width in device pixels (dpr folded in), before the no-upscale rule.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// `Some` only when both width and height are given (default `Cover`).
    pub fit: Option<Fit>,
    /// Output format, resolved (never `auto`).
    pub format: Format,
    /// Quality for lossy outputs, 1–100 (default 80); unused for PNG.
    pub quality: u8,
    /// Padding colour for `contain` and alpha flattening for JPEG (default ffffff).
    pub background: Rgb,
    /// The master's format (from its key), needed to drop `fmt` when it is the default.
    pub master_format: Format,
}

impl VariantSpec {
    /// Parse a raw query string (no leading `?`) for a master of format `master_format`,
    /// with the viewer's `Accept` header for `fmt=auto`.
    pub fn parse(query: &str, master_format: Format, accept: Option<&str>) -> Result<VariantSpec> {
        let _ = (query, master_format, accept);
        todo!()
    }

    /// Canonical query: defaults dropped, fixed order `w,h,fit,fmt,q,bg`, `&`-joined.
    /// Empty when the spec asks for the master unchanged.
    pub fn to_query(&self) -> String {
        todo!()
    }

    /// True when the canonical query is empty: the master is served unchanged.
    pub fn is_identity(&self) -> bool {
        self.to_query().is_empty()
    }

    /// `_variants/v1/<master key>/<canonical query with & → ,>.<ext>`.
    pub fn variant_key(&self, master: &MasterKey) -> String {
        let _ = master;
        let _: Option<Error> = None;
        todo!()
    }
}

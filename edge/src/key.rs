//! Master keys: the viewer's URI path, validated before any store call (DESIGN.md §2).

use crate::error::Result;
use crate::spec::Format;

/// Prefix of every stored variant; viewers may not address it.
pub const VARIANTS_PREFIX: &str = "_variants/";

/// A validated master object key: percent-decoded UTF-8, no leading `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MasterKey(String);

impl MasterKey {
    /// Validate a percent-encoded URI path (as CloudFront gives it, with leading `/`).
    pub fn from_uri(uri: &str) -> Result<MasterKey> {
        let _ = uri;
        todo!()
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The master's format from its extension.
    pub fn format(&self) -> Format {
        todo!()
    }
}

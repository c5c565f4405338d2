//! Runtime configuration. In Lambda@Edge it comes from `config.json` beside the
//! executable (no environment variables there); elsewhere from flags and environment.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::policy::{Policy, PolicyError};
use crate::transform::Limits;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// Only for tests against a local S3 server; `AWS_ENDPOINT_URL` works too.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// `max_pixels` and `max_bytes` at the top level of the JSON.
    #[serde(flatten)]
    pub limits: Limits,
    /// The owner's policy (DESIGN.md §10), as in `policy.json`; checked by [`Config::policy`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<serde_json::Value>,
}

fn default_region() -> String {
    "us-east-1".to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

impl Config {
    /// The checked policy, if the config has one: a bad one stops the start with a
    /// message naming the entry.
    pub fn policy(&self) -> Result<Option<Policy>, PolicyError> {
        self.policy.clone().map(Policy::from_value).transpose()
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_example_parses_and_defaults_fill_in() {
        let c: Config = serde_json::from_str(
            r#"{"bucket": "my-image-bucket-2025", "region": "us-east-1", "endpoint_url": null,
                "max_pixels": 50000000, "max_bytes": 33554432}"#,
        )
        .unwrap();
        assert_eq!(c.limits, Limits::default());
        let c: Config = serde_json::from_str(r#"{"bucket": "b"}"#).unwrap();
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.limits, Limits::default());
        let c: Config = serde_json::from_str(r#"{"bucket": "b", "max_bytes": 7}"#).unwrap();
        assert_eq!(c.limits.max_bytes, 7);
        assert_eq!(c.limits.max_pixels, Limits::default().max_pixels);
        assert_eq!(c.policy().unwrap(), None);
    }

    #[test]
    fn the_policy_is_checked_when_read() {
        let c: Config =
            serde_json::from_str(r#"{"bucket": "b", "policy": {"widths": [256, 512]}}"#).unwrap();
        assert!(c.policy().unwrap().is_some());
        let c: Config =
            serde_json::from_str(r#"{"bucket": "b", "policy": {"widths": [256, 0]}}"#).unwrap();
        let e = c.policy().unwrap_err().to_string();
        assert!(e.contains("widths[1]"), "{e}");
    }
}

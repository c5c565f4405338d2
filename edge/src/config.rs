//! Runtime configuration. In Lambda@Edge it comes from `config.json` beside the
//! executable (no environment variables there); in the regional Lambda from its environment
//! ([`Config::from_env`]); elsewhere from flags and environment.

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
    #[error("environment variable {name}: {message}")]
    Env { name: &'static str, message: String },
}

/// The environment variables [`Config::from_env`] reads (besides the SDK's own
/// `AWS_REGION`, `AWS_ENDPOINT_URL` and credentials).
pub const BUCKET_VAR: &str = "IMGEDGE_BUCKET";
pub const REGION_VAR: &str = "IMGEDGE_REGION";
pub const MAX_PIXELS_VAR: &str = "IMGEDGE_MAX_PIXELS";
pub const MAX_BYTES_VAR: &str = "IMGEDGE_MAX_BYTES";
/// The policy's JSON itself: a Lambda's environment holds values, not files.
pub const POLICY_VAR: &str = "IMGEDGE_POLICY";
pub const POLICY_FILE_VAR: &str = "IMGEDGE_POLICY_FILE";

impl Config {
    /// The checked policy, if the config has one: a bad one stops the start with a
    /// message naming the entry.
    pub fn policy(&self) -> Result<Option<Policy>, PolicyError> {
        self.policy.clone().map(Policy::from_value).transpose()
    }

    /// The regional function's settings from its environment (`var` reads one variable;
    /// an empty value counts as unset): `IMGEDGE_BUCKET` (required), `IMGEDGE_REGION` (else
    /// `AWS_REGION`, which Lambda sets), `IMGEDGE_MAX_PIXELS`, `IMGEDGE_MAX_BYTES`, and the
    /// policy as JSON in `IMGEDGE_POLICY` or in the file `IMGEDGE_POLICY_FILE` (not both).
    /// `AWS_ENDPOINT_URL` is the SDK's own. The policy is parsed here and checked by
    /// [`Config::policy`].
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let bucket = var(BUCKET_VAR).ok_or(ConfigError::Env {
            name: BUCKET_VAR,
            message: "is required: the name of the image bucket".to_string(),
        })?;
        let region = var(REGION_VAR)
            .or_else(|| var("AWS_REGION"))
            .unwrap_or_else(default_region);
        let number = |name: &'static str, default: u64| match var(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(ConfigError::Env {
                    name,
                    message: format!("must be a positive integer, got '{v}'"),
                }),
        };
        let defaults = Limits::default();
        let limits = Limits {
            max_pixels: number(MAX_PIXELS_VAR, defaults.max_pixels)?,
            max_bytes: number(MAX_BYTES_VAR, defaults.max_bytes)?,
            ..defaults
        };
        let policy_text = match (var(POLICY_VAR), var(POLICY_FILE_VAR)) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Env {
                    name: POLICY_VAR,
                    message: format!(
                        "give the policy in {POLICY_VAR} or {POLICY_FILE_VAR}, not both"
                    ),
                })
            }
            (Some(text), None) => Some((POLICY_VAR, text)),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Some((POLICY_FILE_VAR, text))
            }
            (None, None) => None,
        };
        let policy = policy_text
            .map(|(name, text)| {
                serde_json::from_str(&text).map_err(|e| ConfigError::Env {
                    name,
                    message: format!("the policy is not JSON: {e}"),
                })
            })
            .transpose()?;
        Ok(Config {
            bucket,
            region,
            endpoint_url: None,
            limits,
            policy,
        })
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

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn environment_gives_bucket_region_limits_and_policy() {
        let c =
            Config::from_env(env(&[("IMGEDGE_BUCKET", "b"), ("AWS_REGION", "eu-west-1")])).unwrap();
        assert_eq!((c.bucket.as_str(), c.region.as_str()), ("b", "eu-west-1"));
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.policy, None);

        let c = Config::from_env(env(&[
            ("IMGEDGE_BUCKET", "b"),
            ("IMGEDGE_REGION", "us-west-2"),
            ("AWS_REGION", "eu-west-1"),
            ("IMGEDGE_MAX_PIXELS", "1000"),
            ("IMGEDGE_MAX_BYTES", " 77 "),
            ("IMGEDGE_POLICY", r#"{"widths": [256]}"#),
            ("IMGEDGE_POLICY_FILE", ""),
        ]))
        .unwrap();
        assert_eq!(c.region, "us-west-2");
        assert_eq!((c.limits.max_pixels, c.limits.max_bytes), (1000, 77));
        assert_eq!(
            c.limits.inline_max_bytes,
            Limits::default().inline_max_bytes
        );
        assert!(c.policy().unwrap().is_some());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.json");
        std::fs::write(&file, r#"{"widths": [0]}"#).unwrap();
        let path = file.to_str().unwrap();
        let c = Config::from_env(env(&[
            ("IMGEDGE_BUCKET", "b"),
            ("IMGEDGE_POLICY_FILE", path),
        ]))
        .unwrap();
        let e = c.policy().unwrap_err().to_string();
        assert!(e.contains("widths[0]"), "{e}");
    }

    #[test]
    fn environment_errors_name_the_variable() {
        for (vars, needle) in [
            (vec![], "IMGEDGE_BUCKET: is required"),
            (vec![("IMGEDGE_BUCKET", " ")], "IMGEDGE_BUCKET: is required"),
            (
                vec![("IMGEDGE_BUCKET", "b"), ("IMGEDGE_MAX_BYTES", "0")],
                "IMGEDGE_MAX_BYTES: must be a positive integer, got '0'",
            ),
            (
                vec![("IMGEDGE_BUCKET", "b"), ("IMGEDGE_MAX_PIXELS", "5e6")],
                "IMGEDGE_MAX_PIXELS: must be a positive integer",
            ),
            (
                vec![("IMGEDGE_BUCKET", "b"), ("IMGEDGE_POLICY", "{")],
                "IMGEDGE_POLICY: the policy is not JSON",
            ),
            (
                vec![
                    ("IMGEDGE_BUCKET", "b"),
                    ("IMGEDGE_POLICY", "{}"),
                    ("IMGEDGE_POLICY_FILE", "p.json"),
                ],
                "not both",
            ),
            (
                vec![
                    ("IMGEDGE_BUCKET", "b"),
                    ("IMGEDGE_POLICY_FILE", "/no/such/policy.json"),
                ],
                "cannot read /no/such/policy.json",
            ),
        ] {
            let e = Config::from_env(env(&vars)).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} does not say {needle}");
        }
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

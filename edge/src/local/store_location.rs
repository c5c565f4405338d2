//! `--store`: where the emulator's bucket is — a directory or `s3://bucket[/prefix]`.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use crate::store::{FsStore, S3Store, Store, StoreError};

/// `--store`: a directory (FsStore) or `s3://bucket[/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Fs(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl FromStr for StoreLocation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some(rest) = s.strip_prefix("s3://") else {
            if s.is_empty() {
                return Err("the store is empty; give a directory or s3://bucket[/prefix]".into());
            }
            return Ok(StoreLocation::Fs(PathBuf::from(s)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("no bucket in '{s}'; use s3://bucket[/prefix]"));
        }
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        Ok(StoreLocation::S3 {
            bucket: bucket.to_string(),
            prefix,
        })
    }
}

impl StoreLocation {
    /// Open the store; S3 uses the default credential chain and `AWS_ENDPOINT_URL`.
    pub async fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match self {
            StoreLocation::Fs(dir) => Arc::new(FsStore::new(dir.clone())?),
            StoreLocation::S3 { bucket, prefix } => {
                let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
                Arc::new(S3Store::connect(bucket, prefix, None, endpoint.as_deref()).await)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_locations_parse() {
        assert_eq!(
            "./.imgedge/bucket".parse(),
            Ok(StoreLocation::Fs(PathBuf::from("./.imgedge/bucket")))
        );
        assert_eq!(
            "s3://b".parse(),
            Ok(StoreLocation::S3 {
                bucket: "b".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            "s3://b/".parse(),
            Ok(StoreLocation::S3 {
                bucket: "b".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            "s3://b/some/prefix".parse(),
            Ok(StoreLocation::S3 {
                bucket: "b".into(),
                prefix: "some/prefix/".into()
            })
        );
        assert!("s3://".parse::<StoreLocation>().is_err());
        assert!("s3:///p".parse::<StoreLocation>().is_err());
        assert!("".parse::<StoreLocation>().is_err());
    }
}

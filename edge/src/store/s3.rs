//! `S3Store`: the bucket in S3 (or any S3-protocol endpoint) via aws-sdk-s3.

use async_trait::async_trait;
use bytes::Bytes;

use super::{Object, ObjectHead, PutOptions, PutOutcome, Store, StoreError};

#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Key prefix inside the bucket ("" or ending in `/`).
    prefix: String,
}

impl S3Store {
    /// Wrap a client built once per process.
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
    ) -> S3Store {
        S3Store {
            client,
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    /// Build a client from the default credential chain; `endpoint_url` (or
    /// `AWS_ENDPOINT_URL`) selects a custom endpoint, addressed path-style.
    pub async fn connect(
        bucket: &str,
        prefix: &str,
        region: Option<&str>,
        endpoint_url: Option<&str>,
    ) -> S3Store {
        let _ = (bucket, prefix, region, endpoint_url);
        todo!()
    }
}

#[async_trait]
impl Store for S3Store {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let _ = (key, &self.client);
        todo!()
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        let _ = key;
        todo!()
    }
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<PutOutcome, StoreError> {
        let _ = (key, body, opts);
        todo!()
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let _ = prefix;
        todo!()
    }
    async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        let _ = prefix;
        todo!()
    }
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

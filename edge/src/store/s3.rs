//! `S3Store`: the bucket in S3 (or any S3-protocol endpoint) via aws-sdk-s3.
//!
//! Keys are stored under the store's prefix and listed without it. Timeouts are bounded
//! so that a dead endpoint fails a request well inside Lambda@Edge's 30 s origin
//! timeout; error mapping and the reasons are in docs/stores.md.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use bytes::Bytes;

use super::{
    content_etag, Object, ObjectHead, ObjectMeta, PutOptions, PutOutcome, SmallObject, Store,
    StoreError,
};

/// A TCP connection that is not up in this time will not be (same region or loopback).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A response that stalls this long is dead; the attempt is retried.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Cap of one whole operation, retries included (until response headers).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Cap of reading a GetObject body (a 32 MiB master at ≥ 3 MB/s).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Standard retry mode: first try plus two retries, with jittered backoff.
pub const MAX_ATTEMPTS: u32 = 3;
/// DeleteObjects takes at most 1000 keys per call.
const DELETE_BATCH: usize = 1000;

#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Key prefix inside the bucket ("" or ending in `/`).
    prefix: String,
}

impl S3Store {
    /// Wrap a client built once per process. A non-empty `prefix` is normalised to end
    /// in `/` (and not start with one).
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
    ) -> S3Store {
        let prefix = prefix.into();
        let prefix = prefix.trim_start_matches('/');
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_string()
        } else {
            format!("{prefix}/")
        };
        S3Store {
            client,
            bucket: bucket.into(),
            prefix,
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
        let region = RegionProviderChain::first_try(region.map(|r| Region::new(r.to_string())))
            .or_default_provider()
            .or_else(Region::new("us-east-1"));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(READ_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        let config = S3Store::client_config(&sdk).build();
        S3Store::new(aws_sdk_s3::Client::from_conf(config), bucket, prefix)
    }

    /// The S3 client settings every part of imgedge uses on top of an SDK config: a
    /// custom endpoint (moto, s3s, MinIO…) is addressed path-style, because local
    /// S3-protocol servers do not resolve `bucket.host` names.
    pub fn client_config(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::config::Builder {
        aws_sdk_s3::config::Builder::from(sdk).force_path_style(sdk.endpoint_url().is_some())
    }

    fn full_key(&self, key: &str) -> Result<String, StoreError> {
        if key.is_empty() {
            return Err(StoreError::InvalidKey("empty key".into()));
        }
        Ok(format!("{}{}", self.prefix, key))
    }
}

/// What an S3 error means for the store contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Missing,
    /// `If-None-Match: *` lost: 412, or 409 while a concurrent conditional write is in
    /// flight (S3 then asks to retry; the other writer is about to win).
    Exists,
    Denied,
    Other,
}

fn classify(status: Option<u16>, code: Option<&str>) -> Failure {
    match (status, code) {
        // A missing bucket is a broken deployment, not a missing object.
        (_, Some("NoSuchBucket")) => Failure::Other,
        (_, Some("NoSuchKey" | "NotFound")) | (Some(404), _) => Failure::Missing,
        (_, Some("PreconditionFailed" | "ConditionalRequestConflict")) | (Some(412 | 409), _) => {
            Failure::Exists
        }
        (_, Some("AccessDenied")) | (Some(403), _) => Failure::Denied,
        _ => Failure::Other,
    }
}

fn failure<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> Failure {
    classify(e.raw_response().map(|r| r.status().as_u16()), e.code())
}

fn store_error<E, R>(what: &str, key: &str, e: &SdkError<E, R>, f: Failure) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let detail = format!("{what} {key:?}: {}", DisplayErrorContext(e));
    match f {
        Failure::Denied => StoreError::Denied(detail),
        _ => StoreError::Io(detail),
    }
}

fn meta_from(
    content_type: Option<&str>,
    cache_control: Option<&str>,
    metadata: Option<&HashMap<String, String>>,
) -> ObjectMeta {
    ObjectMeta {
        content_type: content_type.map(str::to_string),
        cache_control: cache_control.map(str::to_string),
        metadata: metadata
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// What both reads take from a GetObject answer.
struct Answer {
    meta: ObjectMeta,
    /// The object's ETag (computed from the body when S3 sends none).
    etag: String,
    body: Bytes,
    /// The whole object's size from `Content-Range: bytes 0-N/TOTAL` (a ranged answer).
    total: Option<u64>,
}

async fn read_answer(
    full: &str,
    out: aws_sdk_s3::operation::get_object::GetObjectOutput,
) -> Result<Answer, StoreError> {
    let meta = meta_from(out.content_type(), out.cache_control(), out.metadata());
    let etag = out.e_tag().map(str::to_string);
    let total = out
        .content_range()
        .and_then(|r| r.rsplit_once('/'))
        .and_then(|(_, total)| total.parse::<u64>().ok());
    let body = tokio::time::timeout(BODY_TIMEOUT, out.body.collect())
        .await
        .map_err(|_| StoreError::Io(format!("GetObject {full:?}: body read timed out")))?
        .map_err(|e| StoreError::Io(format!("GetObject {full:?}: reading body: {e}")))?
        .into_bytes();
    let etag = etag.unwrap_or_else(|| content_etag(&body));
    Ok(Answer {
        meta,
        etag,
        body,
        total,
    })
}

impl S3Store {
    /// GetObject of the full key, optionally of a byte range; the answer is read by
    /// [`read_answer`].
    async fn send_get(
        &self,
        full: &str,
        range: Option<String>,
    ) -> Result<
        aws_sdk_s3::operation::get_object::GetObjectOutput,
        SdkError<aws_sdk_s3::operation::get_object::GetObjectError, HttpResponse>,
    > {
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(full)
            .set_range(range)
            .send()
            .await
    }
}

#[async_trait]
impl Store for S3Store {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let full = self.full_key(key)?;
        let out = match self.send_get(&full, None).await {
            Ok(out) => out,
            Err(e) => {
                return match failure(&e) {
                    Failure::Missing => Ok(None),
                    f => Err(store_error("GetObject", &full, &e, f)),
                }
            }
        };
        let Answer {
            meta, etag, body, ..
        } = read_answer(&full, out).await?;
        Ok(Some(Object {
            head: ObjectHead {
                etag,
                size: body.len() as u64,
                meta,
            },
            body,
        }))
    }

    async fn get_small(&self, key: &str, limit: u64) -> Result<Option<SmallObject>, StoreError> {
        let full = self.full_key(key)?;
        let out = match self.send_get(&full, Some(format!("bytes=0-{limit}"))).await {
            Ok(out) => out,
            Err(e) => {
                return match failure(&e) {
                    Failure::Missing => Ok(None),
                    // An empty object has no byte 0 (416): read it plainly.
                    _ if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
                        Ok(self.get(key).await?.map(|o| SmallObject {
                            body: Some(o.body),
                            head: o.head,
                        }))
                    }
                    f => Err(store_error("GetObject", &full, &e, f)),
                };
            }
        };
        let Answer {
            meta,
            etag,
            body,
            total,
        } = read_answer(&full, out).await?;
        let size = total.unwrap_or(body.len() as u64);
        Ok(Some(SmallObject {
            head: ObjectHead { etag, size, meta },
            body: (size <= limit && body.len() as u64 == size).then_some(body),
        }))
    }

    async fn get_first_bytes(&self, key: &str, n: u64) -> Result<Option<Bytes>, StoreError> {
        let full = self.full_key(key)?;
        let range = format!("bytes=0-{}", n.saturating_sub(1));
        match self.send_get(&full, Some(range)).await {
            Ok(out) => {
                let mut body = read_answer(&full, out).await?.body;
                body.truncate(usize::try_from(n).unwrap_or(usize::MAX));
                Ok(Some(body))
            }
            Err(e) => match failure(&e) {
                Failure::Missing => Ok(None),
                // An empty object has no byte 0 (416).
                _ if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
                    Ok(Some(Bytes::new()))
                }
                f => Err(store_error("GetObject", &full, &e, f)),
            },
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        let full = self.full_key(key)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectHead {
                etag: out.e_tag().unwrap_or_default().to_string(),
                size: out.content_length().unwrap_or(0).max(0) as u64,
                meta: meta_from(out.content_type(), out.cache_control(), out.metadata()),
            })),
            Err(e) => match failure(&e) {
                Failure::Missing => Ok(None),
                f => Err(store_error("HeadObject", &full, &e, f)),
            },
        }
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<PutOutcome, StoreError> {
        let full = self.full_key(key)?;
        let computed = content_etag(&body);
        let meta = opts.meta;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .content_length(body.len() as i64)
            .set_content_type(meta.content_type)
            .set_cache_control(meta.cache_control)
            .set_metadata(Some(meta.metadata.into_iter().collect()))
            .body(ByteStream::from(body));
        if opts.if_none_match {
            req = req.if_none_match("*");
        }
        match req.send().await {
            Ok(out) => Ok(PutOutcome::Written {
                etag: out.e_tag().map_or(computed, str::to_string),
            }),
            Err(e) => match failure(&e) {
                Failure::Exists if opts.if_none_match => Ok(PutOutcome::AlreadyExists),
                f => Err(store_error("PutObject", &full, &e, f)),
            },
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let full = format!("{}{}", self.prefix, prefix);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                let f = failure(&e);
                store_error("ListObjectsV2", &full, &e, f)
            })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .filter_map(|k| k.strip_prefix(self.prefix.as_str()))
                    .map(str::to_string),
            );
        }
        // S3 already lists in UTF-8 byte order; other servers may not.
        keys.sort();
        Ok(keys)
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        let keys = self.list(prefix).await?;
        let mut deleted = 0;
        for batch in keys.chunks(DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|k| {
                    ObjectIdentifier::builder()
                        .key(format!("{}{k}", self.prefix))
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::Io(format!("DeleteObjects: {e}")))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| StoreError::Io(format!("DeleteObjects: {e}")))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| {
                    let f = failure(&e);
                    store_error("DeleteObjects", prefix, &e, f)
                })?;
            if let Some(err) = out.errors().first() {
                let detail = format!(
                    "DeleteObjects: {} of {} keys failed, first {:?}: {} {}",
                    out.errors().len(),
                    batch.len(),
                    err.key().unwrap_or_default(),
                    err.code().unwrap_or_default(),
                    err.message().unwrap_or_default()
                );
                return Err(if err.code() == Some("AccessDenied") {
                    StoreError::Denied(detail)
                } else {
                    StoreError::Io(detail)
                });
            }
            deleted += batch.len();
        }
        Ok(deleted)
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_errors_map_onto_the_store_contract() {
        let cases = [
            (Some(404), None, Failure::Missing),
            (Some(404), Some("NoSuchKey"), Failure::Missing),
            (None, Some("NotFound"), Failure::Missing),
            (Some(412), Some("PreconditionFailed"), Failure::Exists),
            (
                Some(409),
                Some("ConditionalRequestConflict"),
                Failure::Exists,
            ),
            (Some(403), Some("AccessDenied"), Failure::Denied),
            (Some(403), None, Failure::Denied),
            (Some(500), Some("InternalError"), Failure::Other),
            (Some(503), Some("SlowDown"), Failure::Other),
            (Some(404), Some("NoSuchBucket"), Failure::Other),
            (None, None, Failure::Other),
        ];
        for (status, code, want) in cases {
            assert_eq!(classify(status, code), want, "{status:?} {code:?}");
        }
    }

    #[test]
    fn prefix_is_normalised_to_a_folder() {
        let client = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .build(),
        );
        let store = |p: &str| S3Store::new(client.clone(), "b", p);
        assert_eq!(store("").prefix, "");
        assert_eq!(store("tenant").prefix, "tenant/");
        assert_eq!(store("/tenant/a/").prefix, "tenant/a/");
        assert_eq!(store("tenant").describe(), "s3://b/tenant/");
        assert!(matches!(
            store("").full_key(""),
            Err(StoreError::InvalidKey(_))
        ));
        assert_eq!(store("t").full_key("a.png").unwrap(), "t/a.png");
    }
}

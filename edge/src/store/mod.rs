//! The one seam for I/O: a bucket of objects. `FsStore` (local mode), `MemStore` (tests,
//! embedding) and `S3Store` (Lambda, real buckets) all pass the same conformance suite
//! (`conformance::run`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod fs;
mod memory;
mod s3;
mod traced;
pub use fs::FsStore;
pub use memory::MemStore;
pub use s3::S3Store;
pub use traced::{StoreCall, StoreTrace, TracedStore};

/// Errors of the storage layer; the request path maps them to `store_error` (502).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O failed: {0}")]
    Io(String),
    #[error("access denied by the store: {0}")]
    Denied(String),
    #[error("invalid store key: {0}")]
    InvalidKey(String),
}

impl From<StoreError> for crate::error::Error {
    fn from(e: StoreError) -> Self {
        // The detail goes to logs; viewers get a stable public message.
        tracing::error!(error = %e, "store failure");
        crate::error::Error::store("the image store failed; try again later")
    }
}

/// Headers and user metadata that travel with an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    /// User metadata (S3 `x-amz-meta-*`), keys lowercase.
    pub metadata: BTreeMap<String, String>,
}

/// What `head` returns: the object's identity and headers, no body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    /// Opaque entity tag, quoted as S3 returns it (e.g. `"9b2cf5…"`).
    pub etag: String,
    pub size: u64,
    pub meta: ObjectMeta,
}

/// What [`Store::get_small`] returns: `head.size` is the whole object's.
#[derive(Debug, Clone)]
pub struct SmallObject {
    pub head: ObjectHead,
    /// The whole body, when it fits the limit asked for.
    pub body: Option<Bytes>,
}

impl ObjectHead {
    /// True when user metadata `name` is exactly `value`.
    pub fn metadata_matches(&self, name: &str, value: &str) -> bool {
        self.meta.metadata.get(name).map(String::as_str) == Some(value)
    }
}

#[derive(Debug, Clone)]
pub struct Object {
    pub head: ObjectHead,
    pub body: Bytes,
}

#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub meta: ObjectMeta,
    /// Write only if the key does not exist yet (`If-None-Match: *`).
    pub if_none_match: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Written {
        etag: String,
    },
    /// `if_none_match` was set and the key already existed: another writer won.
    AlreadyExists,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The object, or `None` if the key does not exist.
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError>;
    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError>;
    /// Whole-object write: readers see the old object or the new one, never a mix.
    async fn put(&self, key: &str, body: Bytes, opts: PutOptions)
        -> Result<PutOutcome, StoreError>;
    /// The object's head, with its body only when it is at most `limit` bytes: one round
    /// trip that answers "does it exist, is it fresh, and here are its bytes if small".
    /// S3 asks for the first `limit + 1` bytes (a ranged GET), so a large object costs no
    /// more transfer than that; local stores read small objects whole.
    async fn get_small(&self, key: &str, limit: u64) -> Result<Option<SmallObject>, StoreError> {
        Ok(self.get(key).await?.map(|o| SmallObject {
            body: (o.head.size <= limit).then_some(o.body),
            head: o.head,
        }))
    }
    /// The object's first `n` bytes (all of it when shorter), or `None` if it does not
    /// exist: enough to tell an image's format without downloading it (a ranged GET on S3).
    async fn get_first_bytes(&self, key: &str, n: u64) -> Result<Option<Bytes>, StoreError> {
        Ok(self.get(key).await?.map(|o| {
            let end = o.body.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            o.body.slice(..end)
        }))
    }
    /// Keys under `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Delete every object under `prefix`; returns how many were deleted.
    async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError>;
    /// Human-readable description for logs (`fs:./.imgedge/bucket`, `s3://b/p`).
    fn describe(&self) -> String;
}

/// ETag of a body as S3 computes it for a single-part upload: the quoted hex MD5.
pub fn content_etag(body: &[u8]) -> String {
    use md5::{Digest, Md5};
    format!("\"{}\"", hex::encode(Md5::digest(body)))
}

//! `FsStore`: a bucket on the local filesystem (the default of `edge serve`).

use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Object, ObjectHead, PutOptions, PutOutcome, Store, StoreError};

#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<FsStore, StoreError> {
        let _ = root.into();
        todo!()
    }

    pub fn root(&self) -> &std::path::Path {
        &self.root
    }
}

#[async_trait]
impl Store for FsStore {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let _ = key;
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
        format!("fs:{}", self.root.display())
    }
}

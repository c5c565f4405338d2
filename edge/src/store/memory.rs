//! `MemStore`: an in-process bucket for tests and embedding.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use super::{content_etag, Object, ObjectHead, PutOptions, PutOutcome, Store, StoreError};

#[derive(Debug, Default)]
pub struct MemStore {
    objects: Mutex<BTreeMap<String, Object>>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Store for MemStore {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        Ok(self.objects.lock().unwrap().get(key).cloned())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .get(key)
            .map(|o| o.head.clone()))
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<PutOutcome, StoreError> {
        let mut objects = self.objects.lock().unwrap();
        if opts.if_none_match && objects.contains_key(key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        let etag = content_etag(&body);
        let head = ObjectHead {
            etag: etag.clone(),
            size: body.len() as u64,
            meta: opts.meta,
        };
        objects.insert(key.to_string(), Object { head, body });
        Ok(PutOutcome::Written { etag })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let objects = self.objects.lock().unwrap();
        Ok(objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        let mut objects = self.objects.lock().unwrap();
        let before = objects.len();
        objects.retain(|k, _| !k.starts_with(prefix));
        Ok(before - objects.len())
    }

    fn describe(&self) -> String {
        "memory".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn passes_the_store_conformance_suite() {
        crate::store::conformance::run(&MemStore::new()).await;
    }
}

//! The origin's job, independent of how it is called (Lambda@Edge, regional Lambda,
//! `edge serve`): resolve a viewer request into a master and a canonical spec, and make
//! sure the variant exists and is fresh in the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::key::MasterKey;
use crate::spec::VariantSpec;
use crate::store::{ObjectMeta, PutOptions, PutOutcome, Store};
use crate::transform::{self, Limits, Timings};

/// Cache-Control of every stored variant: its key changes whenever its content could.
pub const VARIANT_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";
/// User-metadata key holding the master ETag a variant was made from.
pub const SOURCE_ETAG: &str = "source-etag";

/// A viewer request resolved into what to serve: the master alone, or a variant of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub master: MasterKey,
    /// `None` when the master is served unchanged (no query, or a query that only
    /// repeats defaults).
    pub spec: Option<VariantSpec>,
}

impl Resolved {
    /// The canonical query of this request (empty for the master); with the path, the
    /// edge cache key.
    pub fn canonical_query(&self) -> String {
        self.spec
            .as_ref()
            .map(VariantSpec::to_query)
            .unwrap_or_default()
    }
}

/// Checks in the order of DESIGN.md §1: key, then query. Pure.
pub fn resolve(uri: &str, query: &str, accept: Option<&str>) -> Result<Resolved> {
    let master = MasterKey::from_uri(uri)?;
    let spec = if query.is_empty() {
        None
    } else {
        Some(VariantSpec::parse(query, master.format(), accept)?).filter(|s| !s.is_identity())
    };
    Ok(Resolved { master, spec })
}

/// How a variant request was satisfied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildStats {
    /// Reading the master from the store.
    pub fetch: Duration,
    pub timings: Timings,
    /// Writing the variant to the store.
    pub store: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    /// The key to serve (the variant's, or the master's for `Resolved::spec == None`).
    pub key: String,
    /// `Some` when this call rendered the variant; `None` when a fresh one was reused.
    pub built: Option<BuildStats>,
}

/// Make sure the variant of `master` described by `spec` exists in `store` and was made
/// from the master's current bytes; return its key.
///
/// A variant is fresh when its `source-etag` metadata equals the master's ETag. A missing
/// variant is written with `If-None-Match: *` (a concurrent writer that won is simply
/// used: output is deterministic); a stale one is overwritten. Objects are whole-object
/// PUTs, so nothing partial is ever visible.
pub async fn ensure_variant(
    store: &dyn Store,
    master: &MasterKey,
    spec: &VariantSpec,
    limits: &Limits,
) -> Result<Ensured> {
    let master_head = store
        .head(master.as_str())
        .await?
        .ok_or_else(|| not_found(master))?;
    let variant_key = spec.variant_key(master);
    let existing = store.head(&variant_key).await?;
    if let Some(v) = &existing {
        if v.meta.metadata.get(SOURCE_ETAG) == Some(&master_head.etag) {
            return Ok(Ensured {
                key: variant_key,
                built: None,
            });
        }
    }
    // The byte limit is checked from the object's size, before downloading it.
    if master_head.size > limits.max_bytes {
        return Err(Error::image_too_large(format!(
            "the image is {} bytes; the limit is {} bytes",
            master_head.size, limits.max_bytes
        )));
    }

    let started = Instant::now();
    let master_obj = store
        .get(master.as_str())
        .await?
        .ok_or_else(|| not_found(master))?;
    let fetch = started.elapsed();
    if master_obj.head.size > limits.max_bytes {
        return Err(Error::image_too_large(format!(
            "the image is {} bytes; the limit is {} bytes",
            master_obj.head.size, limits.max_bytes
        )));
    }

    let body = master_obj.body.clone();
    let render_spec = spec.clone();
    let render_limits = *limits;
    let rendered =
        tokio::task::spawn_blocking(move || transform::render(&body, &render_spec, &render_limits))
            .await
            .map_err(|e| Error::internal(format!("the transform task failed: {e}")))??;

    let started = Instant::now();
    let meta = ObjectMeta {
        content_type: Some(rendered.format.content_type().to_string()),
        cache_control: Some(VARIANT_CACHE_CONTROL.to_string()),
        metadata: [(SOURCE_ETAG.to_string(), master_obj.head.etag.clone())].into(),
    };
    let outcome = store
        .put(
            &variant_key,
            Bytes::from(rendered.bytes),
            PutOptions {
                meta,
                if_none_match: existing.is_none(),
            },
        )
        .await?;
    if outcome == PutOutcome::AlreadyExists {
        tracing::debug!(key = %variant_key, "another writer stored this variant first");
    }
    Ok(Ensured {
        key: variant_key,
        built: Some(BuildStats {
            fetch,
            timings: rendered.timings,
            store: started.elapsed(),
        }),
    })
}

fn not_found(master: &MasterKey) -> Error {
    Error::not_found(format!("no image at '{}'", master.as_str()))
}

/// The origin: a store, limits, and in-process single flight so that concurrent first
/// requests for one variant render it once.
pub struct Origin {
    store: Arc<dyn Store>,
    limits: Limits,
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Origin {
    pub fn new(store: Arc<dyn Store>, limits: Limits) -> Self {
        Origin {
            store,
            limits,
            inflight: Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Resolve and ensure: the key to serve for this viewer request.
    pub async fn handle(&self, uri: &str, query: &str, accept: Option<&str>) -> Result<Ensured> {
        let resolved = resolve(uri, query, accept)?;
        let Some(spec) = resolved.spec else {
            return Ok(Ensured {
                key: resolved.master.as_str().to_string(),
                built: None,
            });
        };
        let variant_key = spec.variant_key(&resolved.master);
        let lock = {
            let mut inflight = self.inflight.lock().unwrap();
            inflight.entry(variant_key.clone()).or_default().clone()
        };
        let result = {
            let _guard = lock.lock().await;
            ensure_variant(&*self.store, &resolved.master, &spec, &self.limits).await
        };
        // Forget the lock once nobody else holds or waits on it.
        let mut inflight = self.inflight.lock().unwrap();
        if Arc::strong_count(&lock) == 2 {
            inflight.remove(&variant_key);
        }
        result
    }
}

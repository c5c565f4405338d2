//! The origin's job, independent of how it is called (Lambda@Edge, regional Lambda,
//! `edge serve`): resolve a viewer request into a master and a canonical spec, and make
//! sure the variant exists and is fresh in the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::key::MasterKey;
use crate::single_flight::KeyedLocks;
use crate::spec::{Format, VariantSpec};
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
    // A master replaced between HEAD and GET is still bounded: `transform::render`
    // checks the byte limit on the bytes actually read.

    let body = master_obj.body.clone();
    let render_spec = spec.clone();
    let render_limits = *limits;
    let rendered =
        tokio::task::spawn_blocking(move || transform::render(&body, &render_spec, &render_limits))
            .await
            .map_err(|e| Error::internal_while("running the transform task", e))??;

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
    inflight: KeyedLocks,
}

impl Origin {
    pub fn new(store: Arc<dyn Store>, limits: Limits) -> Self {
        Origin {
            store,
            limits,
            inflight: KeyedLocks::new(),
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
        self.inflight
            .run(&variant_key, || {
                ensure_variant(&*self.store, &resolved.master, &spec, &self.limits)
            })
            .await
    }
}

/// The variant a query describes, made from a master file's bytes (`edge transform`):
/// the same resolve and render as the origin, minus the store. An identity query returns
/// the master unchanged.
pub fn transform_file(
    master: &[u8],
    master_extension: &str,
    query: &str,
    accept: Option<&str>,
    limits: &Limits,
) -> Result<Vec<u8>> {
    let format = Format::from_master_extension(master_extension).ok_or_else(|| {
        Error::invalid_key(format!(
            "the input's extension '{master_extension}' is not a supported master format; \
             use png, jpg, jpeg or webp"
        ))
    })?;
    if query.is_empty() {
        return Ok(master.to_vec());
    }
    let spec = VariantSpec::parse(query, format, accept)?;
    if spec.is_identity() {
        return Ok(master.to_vec());
    }
    Ok(transform::render(master, &spec, limits)?.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::store::MemStore;

    const MASTER: &str = "outputs/2025-02-01/image_001.png";

    fn png(width: u32, height: u32, shade: u8) -> Bytes {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, shade])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        Bytes::from(out.into_inner())
    }

    async fn store_with_master(body: Bytes) -> Arc<MemStore> {
        let store = Arc::new(MemStore::new());
        let meta = ObjectMeta {
            content_type: Some("image/png".into()),
            ..Default::default()
        };
        store
            .put(
                MASTER,
                body,
                PutOptions {
                    meta,
                    if_none_match: false,
                },
            )
            .await
            .unwrap();
        store
    }

    fn request(query: &str) -> (MasterKey, VariantSpec) {
        let resolved = resolve(&format!("/{MASTER}"), query, None).unwrap();
        (resolved.master, resolved.spec.expect("a variant query"))
    }

    #[tokio::test]
    async fn builds_once_then_reuses_a_fresh_variant() {
        let store = store_with_master(png(64, 48, 10)).await;
        let (master, spec) = request("w=32&fmt=webp");
        let first = ensure_variant(&*store, &master, &spec, &Limits::default())
            .await
            .unwrap();
        assert_eq!(
            first.key,
            "_variants/v1/outputs/2025-02-01/image_001.png/w=32,fmt=webp.webp"
        );
        assert!(first.built.is_some());
        let variant = store.get(&first.key).await.unwrap().unwrap();
        let master_etag = store.head(MASTER).await.unwrap().unwrap().etag;
        assert_eq!(variant.head.meta.metadata[SOURCE_ETAG], master_etag);
        assert_eq!(
            variant.head.meta.content_type.as_deref(),
            Some("image/webp")
        );
        assert_eq!(
            variant.head.meta.cache_control.as_deref(),
            Some(VARIANT_CACHE_CONTROL)
        );
        assert_eq!(&variant.body[..4], b"RIFF");

        let second = ensure_variant(&*store, &master, &spec, &Limits::default())
            .await
            .unwrap();
        assert_eq!(second.key, first.key);
        assert_eq!(second.built, None, "a fresh variant is reused");
    }

    #[tokio::test]
    async fn a_replaced_master_makes_the_variant_stale_and_it_is_rebuilt() {
        let store = store_with_master(png(64, 48, 10)).await;
        let (master, spec) = request("w=32&fmt=png");
        let first = ensure_variant(&*store, &master, &spec, &Limits::default())
            .await
            .unwrap();
        let old = store.get(&first.key).await.unwrap().unwrap();

        store
            .put(MASTER, png(64, 48, 200), PutOptions::default())
            .await
            .unwrap();
        let again = ensure_variant(&*store, &master, &spec, &Limits::default())
            .await
            .unwrap();
        assert!(again.built.is_some(), "stale variant rebuilt");
        let new = store.get(&again.key).await.unwrap().unwrap();
        assert_ne!(old.body, new.body);
        let master_etag = store.head(MASTER).await.unwrap().unwrap().etag;
        assert_eq!(new.head.meta.metadata[SOURCE_ETAG], master_etag);
    }

    #[tokio::test]
    async fn a_variant_without_source_etag_is_rebuilt() {
        let store = store_with_master(png(64, 48, 10)).await;
        let (master, spec) = request("w=16&fmt=jpeg");
        let key = spec.variant_key(&master);
        store
            .put(
                &key,
                Bytes::from_static(b"not a variant"),
                PutOptions::default(),
            )
            .await
            .unwrap();
        let ensured = ensure_variant(&*store, &master, &spec, &Limits::default())
            .await
            .unwrap();
        assert!(ensured.built.is_some());
        let body = store.get(&key).await.unwrap().unwrap().body;
        assert_eq!(&body[..3], &[0xFF, 0xD8, 0xFF], "a real JPEG replaced it");
    }

    #[tokio::test]
    async fn errors_leave_no_variant_behind() {
        // Missing master → 404.
        let store = Arc::new(MemStore::new());
        let (master, spec) = request("w=16&fmt=webp");
        let err = ensure_variant(&*store, &master, &spec, &Limits::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
        assert!(store.list("").await.unwrap().is_empty());

        // Not an image → 415.
        let store = store_with_master(Bytes::from_static(b"\x89PNG\r\n\x1a\ntruncated")).await;
        let err = ensure_variant(&*store, &master, &spec, &Limits::default())
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::UnsupportedImage);
        assert_eq!(store.list(VARIANTS).await.unwrap(), Vec::<String>::new());

        // Over the byte limit → 422 before reading the body.
        let store = store_with_master(png(64, 48, 10)).await;
        let limits = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        let err = ensure_variant(&*store, &master, &spec, &limits)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::ImageTooLarge);
        assert!(store.list(VARIANTS).await.unwrap().is_empty());

        // Over the pixel limit → 422 from the header.
        let limits = Limits {
            max_pixels: 64 * 48 - 1,
            ..Limits::default()
        };
        let err = ensure_variant(&*store, &master, &spec, &limits)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::ImageTooLarge);
        assert!(store.list(VARIANTS).await.unwrap().is_empty());
    }

    const VARIANTS: &str = crate::key::VARIANTS_PREFIX;

    #[tokio::test]
    async fn concurrent_first_requests_render_once() {
        let store = store_with_master(png(256, 256, 10)).await;
        let origin = Arc::new(Origin::new(store.clone(), Limits::default()));
        let uri = format!("/{MASTER}");
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let origin = origin.clone();
                let uri = uri.clone();
                tokio::spawn(async move { origin.handle(&uri, "w=100&fmt=webp", None).await })
            })
            .collect();
        let mut built = 0;
        for t in tasks {
            let ensured = t.await.unwrap().unwrap();
            built += usize::from(ensured.built.is_some());
        }
        assert_eq!(built, 1, "single flight: one render for 40 requests");
        assert_eq!(store.list(VARIANTS).await.unwrap().len(), 1);
        assert!(origin.inflight.is_empty(), "locks are forgotten");
    }

    #[test]
    fn resolve_checks_the_key_before_the_query() {
        let err = resolve("/a/../b.png", "w=0", None).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidKey);
        let err = resolve("/a/b.png", "w=0", None).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidParameter);
        let err = resolve("/_variants/v1/a.png/w=5.png", "", None).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound);
    }

    #[test]
    fn identity_queries_serve_the_master() {
        let r = resolve("/a/b.png", "fmt=png", None).unwrap();
        assert_eq!(r.spec, None);
        assert_eq!(r.canonical_query(), "");
        let r = resolve("/a/b.webp", "q=80&fmt=webp", None).unwrap();
        assert_eq!(r.spec, None);
        let r = resolve("/a/b.png", "w=5&fmt=webp", None).unwrap();
        assert_eq!(r.spec.map(|s| s.format), Some(Format::Webp));
    }
}

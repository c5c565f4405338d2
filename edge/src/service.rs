//! The origin's job, independent of how it is called (Lambda@Edge, regional Lambda,
//! `edge serve`): resolve a viewer request into a master and a canonical spec, and make
//! sure the variant exists and is fresh in the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::{Error, ErrorKind, Result};
use crate::key::{MasterKey, VariantName};
use crate::policy::Policy;
use crate::single_flight::KeyedLocks;
use crate::spec::{self, Format, VariantSpec};
use crate::store::{
    content_etag, Object, ObjectHead, ObjectMeta, PutOptions, PutOutcome, SmallObject, Store,
    StoreTrace, TracedStore,
};
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
    /// The query asked for `fmt=auto`, so the answer varies with `Accept`.
    pub varies_on_accept: bool,
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
    Ok(Resolved {
        master,
        spec,
        varies_on_accept: spec::asks_for_auto(query),
    })
}

/// The viewer request a variant's own path stands for, as its master's URI and canonical
/// query. In regional mode the viewer-request function rewrites each URL to the key of its
/// variant so that the bucket answers it; on a miss CloudFront's origin group sends that
/// same path to the regional function. Only a name this origin gives is one (the current
/// transform version, a canonical query, its output's extension): any other is a 404, since
/// no object of the origin's could be there.
pub fn variant_request(uri: &str) -> Result<(String, String)> {
    let name = VariantName::from_uri(uri)?;
    let named = VariantSpec::parse(&name.query, name.master.format(), None)
        .ok()
        .filter(|spec| spec.variant_key(&name.master) == name.key());
    match named {
        Some(_) => Ok((crate::key::key_to_uri(name.master.as_str()), name.query)),
        None => Err(Error::not_found(format!(
            "no variant is named '{}'",
            name.key()
        ))),
    }
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
    /// Size of the variant served; `None` for the master (the origin does not read it).
    pub bytes: Option<u64>,
    /// The variant's bytes when it is small enough for the origin-request to answer with
    /// them ([`Limits::inline_max_bytes`]), so CloudFront needs no fetch from the bucket.
    pub inline: Option<InlineVariant>,
}

/// A variant answered with its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineVariant {
    pub body: Bytes,
    pub content_type: String,
    /// The stored object's ETag (what a rewrite to the bucket would have served).
    pub etag: String,
}

impl InlineVariant {
    /// The headers the bucket would send with it, for an origin that answers with the bytes
    /// itself (CloudFront's generated response, the regional function).
    pub fn response_headers(&self) -> [(&'static str, &str); 3] {
        [
            ("Content-Type", &self.content_type),
            ("Cache-Control", VARIANT_CACHE_CONTROL),
            ("ETag", &self.etag),
        ]
    }
}

impl Ensured {
    /// A fresh variant found in the store, with its bytes when `get_small` brought them.
    fn reused(key: String, found: SmallObject) -> Ensured {
        Ensured {
            key,
            built: None,
            bytes: Some(found.head.size),
            inline: found.body.map(|body| InlineVariant {
                body,
                content_type: found.head.meta.content_type.unwrap_or_default(),
                etag: found.head.etag,
            }),
        }
    }

    /// The master, served as it is (the origin makes no store call for it).
    fn master(key: &MasterKey) -> Ensured {
        Ensured {
            key: key.as_str().to_string(),
            built: None,
            bytes: None,
            inline: None,
        }
    }
}

/// Make sure the variant of `master` described by `spec` exists in `store` and was made
/// from the master's current bytes; return its key.
///
/// A variant is fresh when its `source-etag` metadata equals the master's ETag. A missing
/// variant is written with `If-None-Match: *` (a concurrent writer that won is simply
/// used: output is deterministic); a stale one is overwritten. Objects are whole-object
/// PUTs, so nothing partial is ever visible.
///
/// One object per distinct output: the variant key is that of the spec clamped to the
/// master's size ([`transform::clamp`]), read from the master's `width`/`height`
/// metadata when the generator wrote it, else from the master itself once fetched.
///
/// Cheap repeated failures: a 415 or 422 found while rendering is remembered beside the
/// variants ([`MasterKey::failure_marker_key`], tied to the master's ETag and the limits),
/// so the next request answers it without downloading the master again.
///
/// Few round trips (the bucket may be a continent away): the first step asks for the
/// master's head, the variant (its bytes too, when small) and the marker at once, so a
/// fresh variant costs one round trip and a new one three (first step, GET master, PUT).
pub async fn ensure_variant(
    store: &dyn Store,
    master: &MasterKey,
    requested_spec: &VariantSpec,
    limits: &Limits,
) -> Result<Ensured> {
    ensure_variant_within(store, master, requested_spec, limits, None).await
}

/// [`ensure_variant`] whose render first takes room in `budget` (weighted by the master's
/// pixels): an origin that serves many viewers at once renders within a memory bound.
pub async fn ensure_variant_within(
    store: &dyn Store,
    master: &MasterKey,
    requested_spec: &VariantSpec,
    limits: &Limits,
    budget: Option<&RenderBudget>,
) -> Result<Ensured> {
    // The first step asks everything an ordinary request needs at once.
    let requested_key = requested_spec.variant_key(master);
    let marker_key = master.failure_marker_key();
    let inline_limit = limits.inline_max_bytes;
    let (master_head, requested, marker) = tokio::join!(
        store.head(master.as_str()),
        store.get_small(&requested_key, inline_limit),
        store.get(&marker_key),
    );
    let master_head = master_head?.ok_or_else(|| not_found(master))?;
    if let Some(failure) = marker?.and_then(|m| FailureMarker::read(&m, &master_head.etag, limits))
    {
        return Err(failure);
    }
    let mut requested = requested?;

    let mut spec = requested_spec.clone();
    let mut variant_key = requested_key;
    let master_size = master_size_from_metadata(&master_head.meta);
    if let Some(size) = master_size {
        let clamped = transform::clamp(&spec, size);
        if clamped != spec {
            spec = clamped;
            variant_key = spec.variant_key(master);
            requested = store.get_small(&variant_key, inline_limit).await?;
        }
    }
    if let Some(found) = requested.take_if(|v| is_fresh(&v.head, &master_head.etag)) {
        return Ok(Ensured::reused(variant_key, found));
    }
    // The byte limit is checked from the object's size, before downloading it. What is
    // not an image at all is a 415 first (DESIGN.md §1's order): its first bytes tell.
    if master_head.size > limits.max_bytes {
        let first = store
            .get_first_bytes(master.as_str(), SNIFF_BYTES)
            .await?
            .ok_or_else(|| not_found(master))?;
        let e = match transform::sniff(&first) {
            Err(unsupported) => unsupported,
            Ok(_) => Error::image_too_large(format!(
                "the image is {} bytes; the limit is {} bytes",
                master_head.size, limits.max_bytes
            )),
        };
        FailureMarker::remember(store, &marker_key, &e, &master_head.etag, limits).await;
        return Err(e);
    }

    let started = Instant::now();
    let master_obj = store
        .get(master.as_str())
        .await?
        .ok_or_else(|| not_found(master))?;
    let fetch = started.elapsed();
    // A master replaced between HEAD and GET is still bounded: `transform::render`
    // checks the byte limit on the bytes actually read.

    // The header is the truth (metadata may be missing, or wrong if another tool wrote
    // it). Without metadata the clamped variant may already exist: then nothing is rendered.
    if let Some(size) = transform::master_size(&master_obj.body).or(master_size) {
        let clamped = transform::clamp(requested_spec, size);
        if clamped != spec {
            spec = clamped;
            variant_key = spec.variant_key(master);
            requested = store.get_small(&variant_key, inline_limit).await?;
            if let Some(found) = requested.take_if(|v| is_fresh(&v.head, &master_obj.head.etag)) {
                return Ok(Ensured::reused(variant_key, found));
            }
        }
    }

    let _room = match budget {
        Some(budget) => {
            let size = transform::master_size(&master_obj.body).or(master_size);
            Some(
                budget
                    .admit(size.map_or(1, |(w, h)| u64::from(w) * u64::from(h)))
                    .await?,
            )
        }
        None => None,
    };
    let body = master_obj.body.clone();
    let render_spec = spec.clone();
    let render_limits = *limits;
    let rendered =
        tokio::task::spawn_blocking(move || transform::render(&body, &render_spec, &render_limits))
            .await
            .map_err(|e| Error::internal_while("running the transform task", e))?;
    let rendered = match rendered {
        Ok(rendered) => rendered,
        Err(e) => {
            FailureMarker::remember(store, &marker_key, &e, &master_obj.head.etag, limits).await;
            return Err(e);
        }
    };

    let started = Instant::now();
    let body = Bytes::from(rendered.bytes);
    let content_type = rendered.format.content_type().to_string();
    let meta = ObjectMeta {
        content_type: Some(content_type.clone()),
        cache_control: Some(VARIANT_CACHE_CONTROL.to_string()),
        metadata: [(SOURCE_ETAG.to_string(), master_obj.head.etag.clone())].into(),
    };
    let outcome = store
        .put(
            &variant_key,
            body.clone(),
            PutOptions {
                meta,
                if_none_match: requested.is_none(),
            },
        )
        .await?;
    // Output is deterministic: a concurrent writer that won stored these very bytes.
    let etag = match outcome {
        PutOutcome::Written { etag } => etag,
        PutOutcome::AlreadyExists => {
            tracing::debug!(key = %variant_key, "another writer stored this variant first");
            content_etag(&body)
        }
    };
    let bytes = body.len() as u64;
    Ok(Ensured {
        key: variant_key,
        bytes: Some(bytes),
        inline: (bytes <= inline_limit).then(|| InlineVariant {
            body,
            content_type,
            etag,
        }),
        built: Some(BuildStats {
            fetch,
            timings: rendered.timings,
            store: started.elapsed(),
        }),
    })
}

/// Bytes read of a master over the byte limit to tell its format (magic numbers need 12).
const SNIFF_BYTES: u64 = 64;

/// Made from the master's current bytes.
fn is_fresh(variant: &ObjectHead, master_etag: &str) -> bool {
    variant.metadata_matches(SOURCE_ETAG, master_etag)
}

/// Metadata keys the generator writes on a master: its displayed (oriented) size.
pub const WIDTH_METADATA: &str = "width";
pub const HEIGHT_METADATA: &str = "height";

fn master_size_from_metadata(meta: &ObjectMeta) -> Option<(u32, u32)> {
    let side = |name: &str| {
        meta.metadata
            .get(name)
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|&v| v > 0)
    };
    Some((side(WIDTH_METADATA)?, side(HEIGHT_METADATA)?))
}

/// A remembered 415/422 (`error.json`, DESIGN.md §3): the error's public JSON plus what it
/// depends on, `source-etag` named as in the variants' metadata. Honoured only for the same
/// master bytes (ETag) and the same limits, so a replaced master or raised limits are tried
/// again.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct FailureMarker {
    /// Informative (the kind decides it); absent in markers written before it was added.
    #[serde(default)]
    status: u16,
    error: ErrorKind,
    message: String,
    #[serde(rename = "source-etag", alias = "source_etag")]
    source_etag: String,
    max_pixels: u64,
    max_bytes: u64,
}

impl FailureMarker {
    fn read(object: &Object, master_etag: &str, limits: &Limits) -> Option<Error> {
        let m: FailureMarker = serde_json::from_slice(&object.body).ok()?;
        let remembered = matches!(
            m.error,
            ErrorKind::UnsupportedImage | ErrorKind::ImageTooLarge
        );
        (remembered
            && m.source_etag == master_etag
            && m.max_pixels == limits.max_pixels
            && m.max_bytes == limits.max_bytes)
            .then(|| Error::new(m.error, m.message))
    }

    /// Best effort: a failed write only means the next request renders again.
    async fn remember(store: &dyn Store, key: &str, e: &Error, master_etag: &str, limits: &Limits) {
        if !matches!(
            e.kind,
            ErrorKind::UnsupportedImage | ErrorKind::ImageTooLarge
        ) {
            return;
        }
        let marker = FailureMarker {
            status: e.status(),
            error: e.kind,
            message: e.message.clone(),
            source_etag: master_etag.to_string(),
            max_pixels: limits.max_pixels,
            max_bytes: limits.max_bytes,
        };
        let body = serde_json::to_vec(&marker).expect("a marker serialises");
        let meta = ObjectMeta {
            content_type: Some("application/json".to_string()),
            cache_control: Some("no-store".to_string()),
            metadata: [(SOURCE_ETAG.to_string(), master_etag.to_string())].into(),
        };
        let put = store
            .put(
                key,
                Bytes::from(body),
                PutOptions {
                    meta,
                    if_none_match: false,
                },
            )
            .await;
        if let Err(err) = put {
            tracing::warn!(key, error = %err, "could not remember the failure");
        }
    }
}

fn not_found(master: &MasterKey) -> Error {
    Error::not_found(format!("no image at '{}'", master.as_str()))
}

/// Pixels being rendered at once, bounded: a render takes room weighted by its master's
/// pixels (memory grows with them), waits at most `queue` for it, and is otherwise a 503
/// `busy` with `Retry-After`. A master larger than the whole budget takes all of it.
pub struct RenderBudget {
    room: tokio::sync::Semaphore,
    /// Whole budget in units of [`RenderBudget::UNIT`] pixels.
    units: u32,
    queue: Duration,
}

impl RenderBudget {
    /// Pixels per unit of room (a semaphore counts in `u32`).
    const UNIT: u64 = 1024;

    pub fn new(pixels: u64, queue: Duration) -> RenderBudget {
        let units = (pixels / Self::UNIT).clamp(1, u64::from(u32::MAX >> 4)) as u32;
        RenderBudget {
            room: tokio::sync::Semaphore::new(units as usize),
            units,
            queue,
        }
    }

    /// Room for a master of `pixels`, held until the returned permit drops.
    pub async fn admit(&self, pixels: u64) -> Result<tokio::sync::SemaphorePermit<'_>> {
        let want = pixels.div_ceil(Self::UNIT).clamp(1, u64::from(self.units)) as u32;
        match tokio::time::timeout(self.queue, self.room.acquire_many(want)).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Error::busy(
                "too many images are being made right now; try again in a moment",
            )),
        }
    }
}

/// The origin: a store, limits, the owner's policy, and in-process single flight so that
/// concurrent first requests for one variant render it once.
pub struct Origin {
    store: Arc<dyn Store>,
    limits: Limits,
    policy: Option<Policy>,
    budget: Option<Arc<RenderBudget>>,
    inflight: KeyedLocks,
}

impl Origin {
    pub fn new(store: Arc<dyn Store>, limits: Limits) -> Self {
        Origin {
            store,
            limits,
            policy: None,
            budget: None,
            inflight: KeyedLocks::new(),
        }
    }

    /// The origin re-checks what it is asked for against the policy (config.json's
    /// `"policy"`): its input is the viewer-request function's canonical query.
    pub fn with_policy(mut self, policy: Option<Policy>) -> Self {
        self.policy = policy;
        self
    }

    /// Renders take room in `budget` first (`edge serve`; a Lambda instance renders one
    /// event at a time and needs none).
    pub fn with_render_budget(mut self, budget: RenderBudget) -> Self {
        self.budget = Some(Arc::new(budget));
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn policy(&self) -> Option<&Policy> {
        self.policy.as_ref()
    }

    /// Resolve and ensure: the key to serve for this origin request (its query is the
    /// canonical one the viewer-request step forwards; a bare `preset=NAME` is expanded).
    pub async fn handle(&self, uri: &str, query: &str, accept: Option<&str>) -> Result<Ensured> {
        self.handle_traced(uri, query, accept, None).await.0
    }

    /// [`Origin::handle`], plus what it asked of the store (for logs, metrics and
    /// `Server-Timing`).
    ///
    /// Past `deadline` the work is dropped where it stands (a store call in flight is
    /// abandoned; a render finishes on its thread but is never stored) and the answer is a
    /// 504 `timeout`: nothing is written after it, and a PUT is whole or absent.
    pub async fn handle_traced(
        &self,
        uri: &str,
        query: &str,
        accept: Option<&str>,
        deadline: Option<Instant>,
    ) -> (Result<Ensured>, StoreTrace) {
        let store = TracedStore::new(self.store.clone());
        let work = self.ensure(&store, uri, query, accept);
        let result = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), work)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::timeout(
                        "the image took too long to make; try again in a moment",
                    ))
                }),
            None => work.await,
        };
        (result, store.trace())
    }

    async fn ensure(
        &self,
        store: &TracedStore,
        uri: &str,
        query: &str,
        accept: Option<&str>,
    ) -> Result<Ensured> {
        let resolved = match &self.policy {
            Some(policy) => {
                MasterKey::from_uri(uri)?;
                let resolved = resolve(uri, &policy.expand_preset(query)?, accept)?;
                if let Some(spec) = &resolved.spec {
                    policy.admits(spec)?;
                }
                resolved
            }
            None => resolve(uri, query, accept)?,
        };
        let Some(spec) = resolved.spec else {
            return Ok(Ensured::master(&resolved.master));
        };
        let variant_key = spec.variant_key(&resolved.master);
        self.inflight
            .run(&variant_key, || {
                ensure_variant_within(
                    store,
                    &resolved.master,
                    &spec,
                    &self.limits,
                    self.budget.as_deref(),
                )
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
            "_variants/v2/outputs/2025-02-01/image_001.png/w=32,fmt=webp.webp"
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
        // No variant: only the failure's marker.
        assert_eq!(
            store.list(VARIANTS).await.unwrap(),
            [master.failure_marker_key()]
        );

        // Over the byte limit → 422 without reading the body (its first bytes only),
        // remembered so the next request needs no read at all.
        let store = store_with_master(png(64, 48, 10)).await;
        let limits = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        let err = ensure_variant(&*store, &master, &spec, &limits)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::ImageTooLarge);
        assert_eq!(
            store.list(VARIANTS).await.unwrap(),
            [master.failure_marker_key()]
        );
        store.delete_prefix(VARIANTS).await.unwrap();

        // Over the pixel limit → 422 from the header.
        let limits = Limits {
            max_pixels: 64 * 48 - 1,
            ..Limits::default()
        };
        let err = ensure_variant(&*store, &master, &spec, &limits)
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::ImageTooLarge);
        assert_eq!(
            store.list(VARIANTS).await.unwrap(),
            [master.failure_marker_key()]
        );
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

    /// A store that counts what it hands out: body bytes read by GETs, and calls.
    #[derive(Default)]
    struct Counting {
        inner: MemStore,
        bytes_read: std::sync::atomic::AtomicU64,
        gets: std::sync::atomic::AtomicU64,
    }

    #[async_trait::async_trait]
    impl Store for Counting {
        async fn get(&self, key: &str) -> Result<Option<Object>, crate::store::StoreError> {
            use std::sync::atomic::Ordering::Relaxed;
            let got = self.inner.get(key).await?;
            self.gets.fetch_add(1, Relaxed);
            if let Some(o) = &got {
                self.bytes_read.fetch_add(o.body.len() as u64, Relaxed);
            }
            Ok(got)
        }
        async fn head(&self, key: &str) -> Result<Option<ObjectHead>, crate::store::StoreError> {
            self.inner.head(key).await
        }
        async fn get_first_bytes(
            &self,
            key: &str,
            n: u64,
        ) -> Result<Option<Bytes>, crate::store::StoreError> {
            use std::sync::atomic::Ordering::Relaxed;
            let got = self.inner.get_first_bytes(key, n).await?;
            self.gets.fetch_add(1, Relaxed);
            if let Some(b) = &got {
                self.bytes_read.fetch_add(b.len() as u64, Relaxed);
            }
            Ok(got)
        }
        async fn put(
            &self,
            key: &str,
            body: Bytes,
            opts: PutOptions,
        ) -> Result<PutOutcome, crate::store::StoreError> {
            self.inner.put(key, body, opts).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<String>, crate::store::StoreError> {
            self.inner.list(prefix).await
        }
        async fn delete_prefix(&self, prefix: &str) -> Result<usize, crate::store::StoreError> {
            self.inner.delete_prefix(prefix).await
        }
        fn describe(&self) -> String {
            "counting".into()
        }
    }

    async fn put_master(store: &dyn Store, body: Bytes, size_metadata: Option<(u32, u32)>) {
        let mut meta = ObjectMeta {
            content_type: Some("image/png".into()),
            ..Default::default()
        };
        if let Some((w, h)) = size_metadata {
            meta.metadata.insert(WIDTH_METADATA.into(), w.to_string());
            meta.metadata.insert(HEIGHT_METADATA.into(), h.to_string());
        }
        let opts = PutOptions {
            meta,
            if_none_match: false,
        };
        store.put(MASTER, body, opts).await.unwrap();
    }

    #[tokio::test]
    async fn requests_beyond_the_master_share_one_render_and_one_object() {
        // The issue's sweep: w=1000…8192 step 1 on a 1000-px master. With the generator's
        // size metadata (known before any download) and without it (from the header).
        for metadata in [Some((1000, 600)), None] {
            let store = MemStore::new();
            put_master(&store, png(1000, 600, 10), metadata).await;
            let mut keys = std::collections::BTreeSet::new();
            let mut renders = 0;
            for w in 1000..=8192 {
                let (master, spec) = request(&format!("w={w}&fmt=webp"));
                let ensured = ensure_variant(&store, &master, &spec, &Limits::default())
                    .await
                    .unwrap();
                renders += usize::from(ensured.built.is_some());
                keys.insert(ensured.key);
            }
            let want = "_variants/v2/outputs/2025-02-01/image_001.png/w=1000,fmt=webp.webp";
            assert_eq!(keys.into_iter().collect::<Vec<_>>(), [want], "{metadata:?}");
            assert_eq!(renders, 1, "{metadata:?}");
            assert_eq!(store.list(VARIANTS).await.unwrap(), [want], "{metadata:?}");
            let body = store.get(want).await.unwrap().unwrap().body;
            let img = image::load_from_memory(&body).unwrap();
            assert_eq!((img.width(), img.height()), (1000, 600));

            // A box beyond the master keeps its aspect: one object for every scale of it.
            let (master, a) = request("w=2000&h=2000&fmt=png");
            let (_, b) = request("w=8000&h=8000&fmt=png");
            let ka = ensure_variant(&store, &master, &a, &Limits::default())
                .await
                .unwrap();
            let kb = ensure_variant(&store, &master, &b, &Limits::default())
                .await
                .unwrap();
            assert_eq!(ka.key, kb.key);
            assert!(ka.key.ends_with("/w=600,h=600.png"), "{}", ka.key);
        }
    }

    #[tokio::test]
    async fn a_broken_master_is_read_once_then_answered_from_its_marker() {
        // 100 requests (distinct variants, so no edge cache could help) for a corrupt
        // 30 MiB master: one master download, then small marker reads.
        let store = Counting::default();
        let mut corrupt = b"\x89PNG\r\n\x1a\n".to_vec();
        corrupt.resize(30 << 20, 0x5a);
        put_master(&store, Bytes::from(corrupt), None).await;
        for w in 1..=100 {
            let (master, spec) = request(&format!("w={w}&fmt=webp"));
            let e = ensure_variant(&store, &master, &spec, &Limits::default())
                .await
                .unwrap_err();
            assert_eq!(e.kind, ErrorKind::UnsupportedImage, "request {w}");
        }
        let read = store.bytes_read.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            read < (30 << 20) + 100 * 1024,
            "{read} bytes read: the master once, markers after"
        );
        eprintln!("100 requests for a corrupt 30 MiB master read {read} bytes from the store");
        assert_eq!(
            store.list(VARIANTS).await.unwrap(),
            ["_variants/v2/outputs/2025-02-01/image_001.png/error.json"],
            "the marker is the only object beside the variants"
        );
        // The error's JSON plus the master's ETag under the metadata's name (DESIGN.md §3).
        let marker = store
            .get("_variants/v2/outputs/2025-02-01/image_001.png/error.json")
            .await
            .unwrap()
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&marker.body).unwrap();
        let master_etag = store.head(MASTER).await.unwrap().unwrap().etag;
        assert_eq!(json["status"], 415);
        assert_eq!(json["error"], "unsupported_image");
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(json["source-etag"], master_etag.as_str());
        assert_eq!(marker.head.meta.metadata[SOURCE_ETAG], master_etag);
        // A marker written before `status` and the hyphenated name still counts.
        let old = format!(
            r#"{{"error":"unsupported_image","message":"old","source_etag":{},"max_pixels":{},"max_bytes":{}}}"#,
            serde_json::Value::from(master_etag.as_str()),
            Limits::default().max_pixels,
            Limits::default().max_bytes
        );
        let old = Object {
            head: marker.head.clone(),
            body: Bytes::from(old),
        };
        assert_eq!(
            FailureMarker::read(&old, &master_etag, &Limits::default()).map(|e| e.message),
            Some("old".to_string())
        );

        // Replacing the master clears it: the new bytes are tried (and render).
        put_master(&store, png(20, 10, 1), None).await;
        let (master, spec) = request("w=10&fmt=webp");
        let ok = ensure_variant(&store, &master, &spec, &Limits::default())
            .await
            .unwrap();
        assert!(ok.built.is_some());
    }

    #[tokio::test]
    async fn over_the_byte_limit_what_is_no_image_is_415_and_an_image_422() {
        // DESIGN.md §1's order (readable before limits), from the first bytes alone.
        use std::sync::atomic::Ordering::Relaxed;
        let limits = Limits {
            max_bytes: 1 << 20,
            ..Limits::default()
        };
        let (master, spec) = request("w=10&fmt=webp");
        let mut text = b"%PDF-1.7 not an image ".to_vec();
        text.resize(4 << 20, b'x');
        let mut big_png = png(20, 10, 1).to_vec();
        big_png.resize(4 << 20, 0); // trailing bytes after IEND: a PNG over the limit
        for (body, kind) in [
            (text, ErrorKind::UnsupportedImage),
            (big_png, ErrorKind::ImageTooLarge),
        ] {
            let store = Counting::default();
            put_master(&store, Bytes::from(body), None).await;
            for _ in 0..3 {
                let e = ensure_variant(&store, &master, &spec, &limits)
                    .await
                    .unwrap_err();
                assert_eq!(e.kind, kind);
            }
            let read = store.bytes_read.load(Relaxed);
            assert!(
                read < 4096,
                "{kind:?}: {read} bytes read, the first bytes once, then the marker"
            );
            assert_eq!(
                store.list(VARIANTS).await.unwrap(),
                [master.failure_marker_key()]
            );
        }
    }

    #[tokio::test]
    async fn a_remembered_pixel_limit_holds_only_for_the_same_limits() {
        let store = MemStore::new();
        put_master(&store, png(64, 48, 10), None).await;
        let (master, spec) = request("w=16&fmt=webp");
        let tight = Limits {
            max_pixels: 100,
            ..Limits::default()
        };
        let e = ensure_variant(&store, &master, &spec, &tight)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ImageTooLarge);
        let again = ensure_variant(&store, &master, &spec, &tight)
            .await
            .unwrap_err();
        assert_eq!(again, e, "answered from the marker, same public error");
        // Raised limits: the marker no longer applies.
        let ok = ensure_variant(&store, &master, &spec, &Limits::default())
            .await
            .unwrap();
        assert!(ok.built.is_some());
    }

    #[tokio::test]
    async fn the_origin_rechecks_canonical_queries_against_its_policy() {
        let store = store_with_master(png(64, 48, 10)).await;
        let policy =
            Policy::parse(r#"{"widths": [16, 32], "dprs": [1, 2], "formats": ["auto"]}"#).unwrap();
        let origin = Origin::new(store, Limits::default()).with_policy(Some(policy));
        let uri = format!("/{MASTER}");
        // w=16&dpr=2 arrives as w=32; w=32&dpr=2 as w=64; auto as webp.
        for ok in ["w=32", "w=64", "w=16&fmt=webp"] {
            origin
                .handle(&uri, ok, None)
                .await
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, param) in [("w=20", "w"), ("w=16&fmt=jpeg", "fmt")] {
            let e = origin.handle(&uri, bad, None).await.unwrap_err();
            assert_eq!(
                (e.kind, e.param.as_deref()),
                (ErrorKind::InvalidParameter, Some(param)),
                "{bad}"
            );
        }
    }

    #[test]
    fn resolve_checks_the_key_before_the_query() {
        let err = resolve("/a/../b.png", "w=0", None).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidKey);
        let err = resolve("/a/b.png", "w=0", None).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidParameter);
        let err = resolve("/_variants/v2/a.png/w=5.png", "", None).unwrap_err();
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

//! Uploading masters to the bucket: one image at a time ([`Uploader::upload`], for a
//! model server in-process) or a directory ([`Uploader::upload_files`], for the CLI),
//! then one CloudFront invalidation for whatever was overwritten in place.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use base64::Engine;
use edge::sign::SigningKeys;
use edge::store::Store as _;
use futures::{StreamExt, TryStreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde::Serialize;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::index::{Existing, Plan, PrefixIndex};
use crate::naming::{self, MasterName};
use crate::png_header::{self, NotPng};

/// `Cache-Control` of keys that never change once written (the default mode).
pub const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of keys written with `--overwrite`, which may change in place:
/// CloudFront is invalidated explicitly, browsers pick up a replacement within an hour.
pub const CACHE_OVERWRITABLE: &str = "public, max-age=3600";
/// How many times a key picked for a new object may turn out taken by another writer.
const MAX_KEY_CONFLICTS: usize = 8;

/// Retries of throttled, 5xx, timed-out and connection-failed S3/CloudFront calls:
/// the SDK's standard strategy (exponential backoff with jitter).
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
        }
    }
}

/// Where and how to upload.
#[derive(Debug, Clone)]
pub struct Config {
    pub bucket: String,
    /// Key prefix, already expanded (see [`naming::expand_prefix`]), e.g. `outputs/2025-02-01/`.
    pub prefix: String,
    /// Replace a changed image in place instead of writing a new `_vN` key.
    pub overwrite: bool,
    /// Distribution to invalidate after overwrites.
    pub distribution_id: Option<String>,
    /// CloudFront (or `edge serve`) domain for the URLs in reports: `d123.cloudfront.net`
    /// or a base URL such as `http://127.0.0.1:8080`.
    pub cdn_domain: Option<String>,
    /// Uploads in flight at once.
    pub concurrency: usize,
    /// Plan and report, write nothing.
    pub dry_run: bool,
    pub retry: Retry,
    /// Signs the variant URLs of reports when URLs must be signed.
    pub signing_keys: Option<SigningKeys>,
    /// Variants made at upload (queries, presets already expanded): no viewer waits for
    /// their render. `fmt=auto` makes every answer a viewer can get (AVIF, WebP and the
    /// master's).
    pub eager: Vec<String>,
    /// Widths of each report's `srcset` (the policy's, else [`DEFAULT_SRCSET_WIDTHS`]).
    pub srcset_widths: Vec<u32>,
    /// AWS settings: credentials, region, `AWS_ENDPOINT_URL`.
    pub aws: aws_config::SdkConfig,
}

impl Config {
    /// Settings from the default AWS chain (environment, profile, instance role).
    pub async fn from_env(bucket: impl Into<String>, prefix: impl Into<String>) -> Config {
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Config {
            bucket: bucket.into(),
            prefix: prefix.into(),
            overwrite: false,
            distribution_id: None,
            cdn_domain: None,
            signing_keys: None,
            eager: Vec::new(),
            srcset_widths: DEFAULT_SRCSET_WIDTHS.to_vec(),
            concurrency: 8,
            dry_run: false,
            retry: Retry::default(),
            aws,
        }
    }
}

/// What happened to one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A new source: written at the next free number.
    New,
    /// Changed bytes written beside the old under `_vN`.
    Versioned,
    /// Changed bytes replaced the current key in place.
    Overwritten,
    /// The same bytes were already there.
    Skipped,
}

/// The variant each report links to.
const VARIANT_QUERY: &str = "w=512&fmt=webp";
/// `srcset` widths without a policy: common layout widths, each at most 2× the next.
pub const DEFAULT_SRCSET_WIDTHS: [u32; 5] = [320, 640, 960, 1280, 1920];

/// A variant made at upload, stored exactly as the origin would store it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EagerVariant {
    /// The canonical query (what the cache key and the variant key hold).
    pub query: String,
    pub key: String,
    /// Its URL (signed when keys are configured), when a CDN domain is configured.
    pub url: Option<String>,
    pub bytes: u64,
    /// False when a fresh one was already there.
    pub built: bool,
}

/// A master in the bucket (or, in a dry run, where it would be).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadedImage {
    pub key: String,
    /// CloudFront URL when a CDN domain is configured, else `s3://bucket/key`.
    pub url: String,
    /// The `?w=512&fmt=webp` variant's URL, when a CDN domain is configured.
    pub variant_url: Option<String>,
    /// S3 ETag of the object (empty in a dry run).
    pub etag: String,
    pub width: u32,
    pub height: u32,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    /// 1 for `image_NNN.png`, N for `image_NNN_vN.png`.
    pub version: u32,
    pub action: Action,
    /// `<img srcset>` for the configured widths (`fmt=auto`, signed when keys are set),
    /// when a CDN domain is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srcset: Option<String>,
    /// The eager variants made for it (empty without `--eager`, and in a dry run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub eager: Vec<EagerVariant>,
}

#[derive(Debug, Error)]
pub enum UploadError {
    #[error("{key}: eager variant '{query}' failed: {message}")]
    Eager {
        key: String,
        query: String,
        message: String,
    },
    #[error("{name}: {source}; not uploaded")]
    NotAnImage {
        name: String,
        #[source]
        source: NotPng,
    },
    #[error("{name}: the source name is empty")]
    EmptyName { name: String },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("S3 {operation} s3://{bucket}/{key} failed (gave up after up to {attempts} attempts): {message}")]
    S3 {
        operation: &'static str,
        bucket: String,
        key: String,
        attempts: u32,
        message: String,
    },
    #[error("{name}: {tries} keys in a row were taken by another writer; not uploaded")]
    KeyConflicts { name: String, tries: usize },
    #[error("CloudFront invalidation on {distribution_id} failed (gave up after up to {attempts} attempts): {message}")]
    Invalidation {
        distribution_id: String,
        attempts: u32,
        message: String,
    },
}

/// The CloudFront invalidation made for overwritten keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invalidation {
    /// CloudFront's invalidation id (`None` in a dry run).
    pub id: Option<String>,
    pub distribution_id: String,
    pub paths: Vec<String>,
}

/// Result of one file of a batch.
#[derive(Debug)]
pub enum FileOutcome {
    Done(UploadedImage),
    Failed(UploadError),
    /// Not started because the batch was stopped (Ctrl-C).
    NotAttempted,
}

#[derive(Debug)]
pub struct FileReport {
    pub path: PathBuf,
    pub outcome: FileOutcome,
}

/// Result of a batch, files in path order.
#[derive(Debug)]
pub struct BatchReport {
    pub files: Vec<FileReport>,
    pub invalidation: Option<Invalidation>,
    /// A failed invalidation (the overwrites themselves are done).
    pub invalidation_error: Option<UploadError>,
    /// Things that went wrong without failing an upload (e.g. variant cleanup).
    pub warnings: Vec<String>,
    pub interrupted: bool,
}

impl BatchReport {
    /// True when every file is in the bucket and any needed invalidation was made.
    pub fn success(&self) -> bool {
        !self.interrupted
            && self.invalidation_error.is_none()
            && self
                .files
                .iter()
                .all(|f| matches!(f.outcome, FileOutcome::Done(_)))
    }
}

/// Uploads masters under one prefix of one bucket.
pub struct Uploader {
    config: Config,
    s3: aws_sdk_s3::Client,
    /// The same client as the core's store, for deleting variants the way the core names them.
    variants: edge::store::S3Store,
    cloudfront: aws_sdk_cloudfront::Client,
    index: tokio::sync::Mutex<Option<PrefixIndex>>,
    overwritten: Mutex<Vec<String>>,
    warnings: Mutex<Vec<String>>,
}

/// `source-name` metadata: HTTP header values are ASCII, so anything else is
/// percent-encoded (and `%` itself, so decoding is unambiguous).
const METADATA_VALUE: &AsciiSet = &CONTROLS.add(b'%');

impl Uploader {
    pub fn new(config: Config) -> Uploader {
        let retry = RetryConfig::standard()
            .with_max_attempts(config.retry.max_attempts.max(1))
            .with_initial_backoff(config.retry.initial_backoff);
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .build();
        let s3 = aws_sdk_s3::Client::from_conf(
            edge::store::S3Store::client_config(&config.aws)
                .retry_config(retry.clone())
                .timeout_config(timeouts.clone())
                .build(),
        );
        let variants = edge::store::S3Store::new(s3.clone(), config.bucket.clone(), "");
        let cloudfront = aws_sdk_cloudfront::Client::from_conf(
            aws_sdk_cloudfront::config::Builder::from(&config.aws)
                .retry_config(retry)
                .timeout_config(timeouts)
                .build(),
        );
        Uploader {
            config,
            s3,
            variants,
            cloudfront,
            index: tokio::sync::Mutex::new(None),
            overwritten: Mutex::new(Vec::new()),
            warnings: Mutex::new(Vec::new()),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Uploads one PNG. `name_hint` identifies the image across calls (its file name,
    /// or a stable id from the model server): the same hint with the same bytes is
    /// skipped, with changed bytes it becomes a new version (or, with `overwrite`,
    /// replaces the key; call [`Uploader::invalidate_overwritten`] afterwards).
    pub async fn upload(
        &self,
        bytes: Vec<u8>,
        name_hint: &str,
    ) -> Result<UploadedImage, UploadError> {
        self.upload_in_turn(bytes, name_hint, None).await
    }

    /// [`Uploader::upload`], planning its key only in its `turn`, so a batch numbers
    /// new files in path order whatever order their reads finish in.
    async fn upload_in_turn(
        &self,
        bytes: Vec<u8>,
        name_hint: &str,
        mut turn: Option<Turn<'_>>,
    ) -> Result<UploadedImage, UploadError> {
        let checked = match png_header::dimensions(&bytes) {
            Err(source) => Err(UploadError::NotAnImage {
                name: name_hint.to_string(),
                source,
            }),
            Ok(_) if name_hint.trim().is_empty() => Err(UploadError::EmptyName {
                name: name_hint.to_string(),
            }),
            Ok(size) => Ok(size),
        };
        let (width, height) = match checked {
            Ok(size) => size,
            Err(e) => {
                Turn::finish(turn).await;
                return Err(e);
            }
        };
        let digest = Sha256::digest(&bytes);
        let sha256 = hex::encode(digest);
        let source = utf8_percent_encode(name_hint, METADATA_VALUE).to_string();
        let image = |name: MasterName, etag: String, action| {
            let key = self.key(name);
            UploadedImage {
                url: self.url(&key),
                variant_url: self.variant_url(&key),
                srcset: self.srcset(&key),
                eager: Vec::new(),
                key,
                etag,
                width,
                height,
                sha256: sha256.clone(),
                version: name.version,
                action,
            }
        };

        for _ in 0..MAX_KEY_CONFLICTS {
            if let Some(turn) = &turn {
                turn.wait().await;
            }
            let plan = {
                let mut guard = self.index.lock().await;
                if guard.is_none() {
                    match self.load_index().await {
                        Ok(index) => *guard = Some(index),
                        Err(e) => {
                            drop(guard);
                            Turn::finish(turn).await;
                            return Err(e);
                        }
                    }
                }
                guard
                    .as_mut()
                    .expect("loaded above")
                    .plan(&source, &sha256, self.config.overwrite)
            };
            // Planned: the next file in the batch may plan now.
            drop(turn.take());
            let action = match &plan {
                Plan::Skip { current } => {
                    let mut skipped = image(current.name, current.etag.clone(), Action::Skipped);
                    if !self.config.dry_run {
                        skipped.eager = self.make_eager(&skipped.key).await?;
                    }
                    return Ok(skipped);
                }
                Plan::New { .. } => Action::New,
                Plan::Version { .. } => Action::Versioned,
                Plan::Overwrite { .. } => Action::Overwritten,
            };
            let key = self.key(plan.name());
            if self.config.dry_run {
                if action == Action::Overwritten {
                    self.overwritten.lock().unwrap().push(key);
                }
                return Ok(image(plan.name(), String::new(), action));
            }
            let put = self
                .put(
                    &key,
                    &bytes,
                    &digest,
                    width,
                    height,
                    &sha256,
                    &source,
                    plan.creates_key(),
                )
                .await;
            let mut guard = self.index.lock().await;
            let index = guard.as_mut().expect("loaded before planning");
            match put {
                Ok(etag) => {
                    index.done(&source, plan.name(), &etag);
                    drop(guard);
                    if action == Action::Overwritten {
                        self.overwritten.lock().unwrap().push(key.clone());
                        if let Err(e) = self.delete_variants(&key).await {
                            self.warnings.lock().unwrap().push(format!(
                                "{key} was overwritten but its old variants were not all deleted \
                                 (the edge rebuilds them anyway: their source-etag no longer matches): {e}"
                            ));
                        }
                    }
                    let mut done = image(plan.name(), etag, action);
                    done.eager = self.make_eager(&done.key).await?;
                    return Ok(done);
                }
                Err(PutError::KeyTaken) => index.failed(&source, &plan, true),
                Err(PutError::Other(e)) => {
                    index.failed(&source, &plan, false);
                    return Err(e);
                }
            }
        }
        Err(UploadError::KeyConflicts {
            name: name_hint.to_string(),
            tries: MAX_KEY_CONFLICTS,
        })
    }

    /// Uploads files with bounded concurrency; stops starting new ones once `stop` is
    /// cancelled (uploads in flight finish: a PUT is atomic, never half-written), then
    /// invalidates CloudFront once for everything overwritten. `on_done` is called as
    /// each file finishes (for progress output).
    pub async fn upload_files(
        &self,
        paths: &[PathBuf],
        stop: &CancellationToken,
        on_done: &(dyn Fn(&FileReport) + Sync),
    ) -> BatchReport {
        let turns = tokio::sync::watch::Sender::new(0usize);
        let turns = &turns;
        let mut files: Vec<FileReport> = futures::stream::iter(paths.iter().cloned().enumerate())
            .map(|(ordinal, path)| async move {
                let turn = Turn { turns, ordinal };
                let outcome = if stop.is_cancelled() {
                    Turn::finish(Some(turn)).await;
                    FileOutcome::NotAttempted
                } else {
                    match self.upload_file(&path, turn).await {
                        Ok(image) => FileOutcome::Done(image),
                        Err(e) => FileOutcome::Failed(e),
                    }
                };
                let report = FileReport { path, outcome };
                on_done(&report);
                report
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let (invalidation, invalidation_error) = match self.invalidate_overwritten().await {
            Ok(inv) => (inv, None),
            Err(e) => (None, Some(e)),
        };
        BatchReport {
            files,
            invalidation,
            invalidation_error,
            warnings: std::mem::take(&mut *self.warnings.lock().unwrap()),
            interrupted: stop.is_cancelled(),
        }
    }

    async fn upload_file(&self, path: &Path, turn: Turn<'_>) -> Result<UploadedImage, UploadError> {
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => bytes,
            Err(source) => {
                Turn::finish(Some(turn)).await;
                return Err(UploadError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.upload_in_turn(bytes, &name, Some(turn)).await
    }

    /// Creates ONE invalidation for every key overwritten since the last call (paths
    /// collapsed to a wildcard over CloudFront's limit). `Ok(None)` when nothing was
    /// overwritten, or when no distribution is configured (a warning says so).
    pub async fn invalidate_overwritten(&self) -> Result<Option<Invalidation>, UploadError> {
        let keys = std::mem::take(&mut *self.overwritten.lock().unwrap());
        if keys.is_empty() {
            return Ok(None);
        }
        let Some(distribution_id) = self.config.distribution_id.clone() else {
            self.warnings.lock().unwrap().push(format!(
                "{} key(s) overwritten but no --distribution-id given: CloudFront may serve the old \
                 images until their cache expires",
                keys.len()
            ));
            return Ok(None);
        };
        let paths = naming::invalidation_paths(&keys);
        let id = if self.config.dry_run {
            None
        } else {
            Some(
                create_invalidation(
                    &self.cloudfront,
                    &distribution_id,
                    &paths,
                    self.config.retry.max_attempts,
                )
                .await?,
            )
        };
        Ok(Some(Invalidation {
            id,
            distribution_id,
            paths,
        }))
    }

    fn key(&self, name: MasterName) -> String {
        format!("{}{name}", self.config.prefix)
    }

    fn cdn_base(&self) -> Option<String> {
        let domain = self.config.cdn_domain.as_deref()?.trim_end_matches('/');
        Some(
            if domain.starts_with("http://") || domain.starts_with("https://") {
                domain.to_string()
            } else {
                format!("https://{domain}")
            },
        )
    }

    fn url(&self, key: &str) -> String {
        match self.cdn_base() {
            Some(base) => format!("{base}{}", naming::url_path(key)),
            None => format!("s3://{}/{key}", self.config.bucket),
        }
    }

    /// The `?w=512&fmt=webp` URL, signed when keys are configured.
    fn variant_url(&self, key: &str) -> Option<String> {
        let base = self.cdn_base()?;
        let path = naming::url_path(key);
        Some(format!(
            "{base}{path}?{}",
            self.signed(&path, VARIANT_QUERY)
        ))
    }

    fn s3_error<E: std::error::Error>(
        &self,
        operation: &'static str,
        key: &str,
        e: E,
    ) -> UploadError {
        UploadError::S3 {
            operation,
            bucket: self.config.bucket.clone(),
            key: key.to_string(),
            attempts: self.config.retry.max_attempts,
            message: DisplayErrorContext(e).to_string(),
        }
    }

    /// Lists the prefix's masters and reads their metadata (HEAD each, in parallel).
    async fn load_index(&self) -> Result<PrefixIndex, UploadError> {
        let prefix = &self.config.prefix;
        let mut names = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.config.bucket)
            .prefix(prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.s3_error("ListObjectsV2", prefix, e))?;
            for object in page.contents() {
                let key = object.key().unwrap_or_default();
                if let Some(name) = key
                    .strip_prefix(prefix.as_str())
                    .and_then(MasterName::parse)
                {
                    names.push(name);
                }
            }
        }
        let existing: Vec<Option<Existing>> = futures::stream::iter(names)
            .map(|name| async move {
                let key = self.key(name);
                match self
                    .s3
                    .head_object()
                    .bucket(&self.config.bucket)
                    .key(&key)
                    .send()
                    .await
                {
                    Ok(head) => {
                        let meta = head.metadata();
                        let get = |k: &str| meta.and_then(|m| m.get(k)).cloned();
                        Ok(Some(Existing {
                            name,
                            source_name: get("source-name"),
                            sha256: get("sha256"),
                            etag: head.e_tag().unwrap_or_default().to_string(),
                        }))
                    }
                    // Deleted between the listing and now: its number is free again.
                    Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                        Ok(None)
                    }
                    Err(e) => Err(self.s3_error("HeadObject", &key, e)),
                }
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .try_collect()
            .await?;
        Ok(PrefixIndex::new(existing.into_iter().flatten()))
    }

    #[allow(clippy::too_many_arguments)]
    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        digest: &[u8],
        width: u32,
        height: u32,
        sha256: &str,
        source: &str,
        creates_key: bool,
    ) -> Result<String, PutError> {
        let cache_control = if self.config.overwrite {
            CACHE_OVERWRITABLE
        } else {
            CACHE_IMMUTABLE
        };
        let mut request = self
            .s3
            .put_object()
            .bucket(&self.config.bucket)
            .key(key)
            .body(ByteStream::from(bytes.to_vec()))
            .content_type("image/png")
            .cache_control(cache_control)
            // S3 verifies the bytes it stored against our own SHA-256.
            .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(digest))
            .metadata("width", width.to_string())
            .metadata("height", height.to_string())
            .metadata("sha256", sha256)
            .metadata("source-name", source);
        if creates_key {
            // Another writer may have taken this key since we listed: never clobber it.
            request = request.if_none_match("*");
        }
        match request.send().await {
            Ok(out) => Ok(out.e_tag().unwrap_or_default().to_string()),
            Err(e)
                if creates_key && e.raw_response().is_some_and(|r| r.status().as_u16() == 412) =>
            {
                Err(PutError::KeyTaken)
            }
            Err(e) => Err(PutError::Other(self.s3_error("PutObject", key, e))),
        }
    }

    /// Makes the eager variants of the master at `key` with the core's own pipeline and
    /// key rules (`ensure_variant`: same key, bytes, metadata and `source-etag` as the
    /// origin would store), in parallel. After `--overwrite` the old variants are gone
    /// already, so these replace them before the batch's invalidation.
    async fn make_eager(&self, key: &str) -> Result<Vec<EagerVariant>, UploadError> {
        let uri = edge::key::key_to_uri(key);
        let mut specs = Vec::new();
        for query in &self.config.eager {
            // `auto` answers differ by Accept: make every one a viewer can get.
            for accept in [Some("image/avif"), Some("image/webp"), None] {
                let resolved = edge::service::resolve(&uri, query, accept).map_err(|e| {
                    UploadError::Eager {
                        key: key.to_string(),
                        query: query.clone(),
                        message: e.message,
                    }
                })?;
                if let Some(spec) = resolved.spec {
                    if !specs.contains(&spec) {
                        specs.push(spec);
                    }
                }
            }
        }
        let master = edge::key::MasterKey::from_uri(&uri).map_err(|e| UploadError::Eager {
            key: key.to_string(),
            query: String::new(),
            message: e.message,
        })?;
        let limits = edge::transform::Limits::default();
        let made = futures::future::try_join_all(specs.iter().map(|spec| async {
            let ensured = edge::service::ensure_variant(&self.variants, &master, spec, &limits)
                .await
                .map_err(|e| UploadError::Eager {
                    key: key.to_string(),
                    query: spec.to_query(),
                    message: e.message,
                })?;
            let query = spec.to_query();
            Ok::<_, UploadError>(EagerVariant {
                url: self.cdn_base().map(|base| {
                    let path = naming::url_path(key);
                    format!("{base}{path}?{}", self.signed(&path, &query))
                }),
                query,
                key: ensured.key,
                bytes: ensured.bytes.unwrap_or(0),
                built: ensured.built.is_some(),
            })
        }))
        .await?;
        Ok(made)
    }

    /// `query` with its `sig` when keys are configured.
    fn signed(&self, path: &str, query: &str) -> String {
        match &self.config.signing_keys {
            Some(keys) => keys.signed_query(path, query),
            None => query.to_string(),
        }
    }

    /// `URL?w=320&fmt=auto 320w, …` for the configured widths.
    fn srcset(&self, key: &str) -> Option<String> {
        let base = self.cdn_base()?;
        let path = naming::url_path(key);
        let entries: Vec<String> = self
            .config
            .srcset_widths
            .iter()
            .map(|w| {
                let query = format!("w={w}&fmt=auto");
                format!("{base}{path}?{} {w}w", self.signed(&path, &query))
            })
            .collect();
        (!entries.is_empty()).then(|| entries.join(", "))
    }

    /// Deletes the master's variants under every transform version
    /// (`_variants/v*/<key>/`, DESIGN.md §6): the core names them and deletes them
    /// through its own S3 store.
    async fn delete_variants(&self, key: &str) -> Result<usize, UploadError> {
        let mut deleted = 0;
        for prefix in edge::key::variant_prefixes_of_every_version(key) {
            deleted += self
                .variants
                .delete_prefix(&prefix)
                .await
                .map_err(|e| UploadError::S3 {
                    operation: "DeleteObjects",
                    bucket: self.config.bucket.clone(),
                    key: prefix.clone(),
                    attempts: self.config.retry.max_attempts,
                    message: e.to_string(),
                })?;
        }
        Ok(deleted)
    }
}

/// One file's place in a batch's planning order: it plans when all files before it
/// have planned (or given up), and lets the next one go when dropped.
struct Turn<'a> {
    turns: &'a tokio::sync::watch::Sender<usize>,
    ordinal: usize,
}

impl Turn<'_> {
    async fn wait(&self) {
        let mut planned = self.turns.subscribe();
        // The sender lives as long as the batch, so this cannot fail.
        let _ = planned.wait_for(|&n| n >= self.ordinal).await;
    }

    /// Waits for this turn, then passes it on (for files that plan nothing).
    async fn finish(turn: Option<Turn<'_>>) {
        if let Some(turn) = turn {
            turn.wait().await;
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.turns.send_modify(|n| *n += 1);
    }
}

enum PutError {
    /// `If-None-Match: *` failed: the key exists now.
    KeyTaken,
    Other(UploadError),
}

/// Creates one CloudFront invalidation and returns its id.
pub async fn create_invalidation(
    cloudfront: &aws_sdk_cloudfront::Client,
    distribution_id: &str,
    paths: &[String],
    attempts: u32,
) -> Result<String, UploadError> {
    use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};
    let fail = |message: String| UploadError::Invalidation {
        distribution_id: distribution_id.to_string(),
        attempts,
        message,
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Unique per request: CloudFront treats a repeated caller reference as the same call.
    let reference = format!(
        "imgedge-generator-{nanos}-{}",
        hex::encode(&Sha256::digest(paths.join("\n"))[..6])
    );
    let batch = InvalidationBatch::builder()
        .paths(
            Paths::builder()
                .quantity(paths.len() as i32)
                .set_items(Some(paths.to_vec()))
                .build()
                .map_err(|e| fail(e.to_string()))?,
        )
        .caller_reference(reference)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let out = cloudfront
        .create_invalidation()
        .distribution_id(distribution_id)
        .invalidation_batch(batch)
        .send()
        .await
        .map_err(|e| fail(DisplayErrorContext(e).to_string()))?;
    out.invalidation()
        .map(|i| i.id().to_string())
        .ok_or_else(|| fail("CloudFront answered without an invalidation".into()))
}

/// The files a batch uploads from `dir`: regular files, not hidden, sorted by name
/// (not recursive). Non-PNGs are included so they are reported as failed, not ignored.
pub fn list_dir(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !hidden && entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// A CloudFront client with the same settings as the uploader's (for `invalidate`).
pub fn cloudfront_client(aws: &aws_config::SdkConfig, retry: Retry) -> aws_sdk_cloudfront::Client {
    aws_sdk_cloudfront::Client::from_conf(
        aws_sdk_cloudfront::config::Builder::from(aws)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(retry.max_attempts.max(1))
                    .with_initial_backoff(retry.initial_backoff),
            )
            .build(),
    )
}

//! The emulator's HTTP side: a viewer request through the edge cache, on a miss the same
//! origin-request event and handler as the Lambda, a rewritten request followed into the
//! store; conditional GET and HEAD; the invalidation endpoint, the gallery and the
//! playground with its resolve endpoint.

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::response::Response;
use axum::Router;
use percent_encoding::percent_decode_str;

use super::cache::{edge_ttl, etag_matches, CacheHit, CachedResponse, EdgeCache};
use super::metrics::EdgeMetrics;
use super::pages;
use super::playground;
use super::{
    ServeOptions, INVALIDATE_PATH, METRICS_PATH, PLAYGROUND_PATH, RESOLVE_PATH, X_CACHE_HIT,
    X_CACHE_MISS,
};
use crate::cloudfront::{self, OriginRequestOutput};
use crate::error::Error;
use crate::guard::Guard;
use crate::observe::{self, LogFormat, RequestRecord};
use crate::service::{BuildStats, Origin};
use crate::single_flight::KeyedLocks;
use crate::store::StoreCall;

/// Where a viewer request lands in the cache and what query the origin sees: what the
/// viewer-request CloudFront Function computes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewerKey {
    /// `/<master key>` plus `?<canonical query>` when it is a variant.
    pub cache_key: String,
    /// The canonical query (what the viewer-request function forwards).
    pub origin_query: String,
    /// The viewer asked for `fmt=auto`: the answer carries `Vary: Accept`.
    pub varies_on_accept: bool,
}

impl ViewerKey {
    /// The master key (the cache key without its `/` and query).
    pub fn master_key(&self) -> &str {
        let path = self
            .cache_key
            .split_once('?')
            .map_or(&*self.cache_key, |(p, _)| p);
        path.trim_start_matches('/')
    }

    /// The function's checks in the order of DESIGN.md §10 (key, signature, preset, query,
    /// policy); an error is answered by the function itself, as CloudFront does, uncached.
    pub fn new(
        guard: &Guard,
        path: &str,
        query: &str,
        accept: Option<&str>,
    ) -> Result<ViewerKey, Error> {
        let resolved = guard.resolve(path, query, accept)?;
        let canonical = resolved.canonical_query();
        let mut cache_key = format!("/{}", resolved.master.as_str());
        if !canonical.is_empty() {
            cache_key.push('?');
            cache_key.push_str(&canonical);
        }
        Ok(ViewerKey {
            cache_key,
            origin_query: canonical,
            varies_on_accept: resolved.varies_on_accept,
        })
    }
}

/// What the edge answers a viewer GET with, before conditional/HEAD handling.
struct Answer {
    response: Arc<CachedResponse>,
    /// What is logged and counted for this request.
    record: RequestRecord,
    /// `Some(age)` for a cache hit.
    hit: Option<Duration>,
    /// The origin was asked (an edge cache miss).
    missed: bool,
    /// Every answer has one: the origin's store calls and stages on a miss, the lookup on a
    /// hit, the viewer step when it answered.
    server_timing: String,
    /// Add `Vary: Accept` (the viewer asked for `fmt=auto`).
    vary_accept: bool,
}

/// `Server-Timing` of a miss, in milliseconds: each store call the origin made
/// (`head-master`, `get-marker`, `put-variant`, …), the build stages when this request
/// rendered the variant, the origin-request handler as a whole, and reading the object.
pub fn server_timing(
    store_calls: &[StoreCall],
    stats: Option<&BuildStats>,
    origin: Duration,
    read: Option<Duration>,
) -> String {
    let mut parts = Vec::new();
    let mut push =
        |name: &str, d: Duration| parts.push(format!("{name};dur={:.3}", d.as_secs_f64() * 1000.0));
    for call in store_calls {
        push(&call.name(), call.duration);
    }
    if let Some(s) = stats {
        push("fetch", s.fetch);
        push("decode", s.timings.decode);
        push("resize", s.timings.resize);
        push("encode", s.timings.encode);
        push("store", s.store);
    }
    push("origin", origin);
    if let Some(read) = read {
        push("read", read);
    }
    parts.join(", ")
}

/// The `error` code of a JSON error body (DESIGN.md §1).
fn error_code(body: &[u8]) -> Option<&'static str> {
    #[derive(serde::Deserialize)]
    struct Body {
        error: String,
    }
    let code = serde_json::from_slice::<Body>(body).ok()?.error;
    crate::error::ErrorKind::ALL
        .iter()
        .map(|kind| kind.code())
        .find(|known| *known == code)
}

struct Edge {
    origin: Arc<Origin>,
    guard: Guard,
    log_format: LogFormat,
    metrics: EdgeMetrics,
    request_timeout: Duration,
    cache: EdgeCache,
    /// Per cache key: the one request that goes to the origin holds it.
    collapsing: KeyedLocks,
}

impl Edge {
    async fn viewer_request(&self, path: &str, query: &str, accept: Option<&str>) -> Answer {
        let started = Instant::now();
        let key = match ViewerKey::new(&self.guard, path, query, accept) {
            Ok(key) => key,
            Err(e) => {
                let mut record = RequestRecord::base(
                    cloudfront::next_request_id(),
                    path.trim_start_matches('/'),
                    query,
                    started.elapsed(),
                );
                record.set_error(&e);
                let timing = format!("viewer;dur={:.3}", record.total_ms);
                return Answer::from_viewer_function(&e, record, timing);
            }
        };
        let hit = |hit: CacheHit| {
            let mut record = RequestRecord::base(
                cloudfront::next_request_id(),
                key.master_key(),
                key.origin_query.as_str(),
                started.elapsed(),
            );
            record.outcome = match hit.response.status {
                // A cached error is counted and logged under its own code.
                400.. => error_code(&hit.response.body).unwrap_or("hit").to_string(),
                _ => "hit".to_string(),
            };
            record.status = hit.response.status;
            record.bytes_out = Some(hit.response.body.len() as u64);
            Answer::hit(hit, record)
        };
        let mut answer = match self.cache.get(&key.cache_key, Instant::now()) {
            Some(h) => hit(h),
            None => {
                self.collapsing
                    .run(&key.cache_key, || async {
                        match self.cache.get(&key.cache_key, Instant::now()) {
                            Some(h) => hit(h),
                            None => self.ask_origin(&key, path, accept).await,
                        }
                    })
                    .await
            }
        };
        answer.vary_accept = key.varies_on_accept;
        answer
    }

    async fn ask_origin(&self, key: &ViewerKey, path: &str, accept: Option<&str>) -> Answer {
        let _in_flight = self.metrics.in_flight();
        let started = Instant::now();
        let headers: Vec<(&str, &str)> = accept.map(|a| vec![("Accept", a)]).unwrap_or_default();
        let event = cloudfront::origin_request_event(path, &key.origin_query, &headers);
        let deadline = started + self.request_timeout;
        let (output, handled) =
            cloudfront::handle_origin_request_until(&self.origin, event, Some(deadline)).await;
        let origin_time = started.elapsed();
        let (response, read_time) = match output {
            OriginRequestOutput::Response(generated) => {
                (CachedResponse::from_generated(&generated), None)
            }
            OriginRequestOutput::Request(request) => {
                let started = Instant::now();
                // The viewer waits for the read too: one deadline for the whole miss.
                let response =
                    tokio::time::timeout_at(deadline.into(), self.read_object(&request.uri))
                        .await
                        .unwrap_or_else(|_| {
                            CachedResponse::from_error(&Error::timeout(
                        "the image took too long to read from the bucket; try again in a moment",
                    ))
                        });
                (response, Some(started.elapsed()))
            }
        };
        let response = Arc::new(response);
        if let Some(ttl) = edge_ttl(response.status, response.header("cache-control")) {
            self.cache
                .insert(&key.cache_key, response.clone(), ttl, Instant::now());
        }
        let mut record = handled.record;
        // What the viewer got: the object read after a rewrite may be gone (404).
        record.status = response.status;
        record.total_ms = observe::millis(started.elapsed());
        if record.status >= 400 && matches!(record.outcome.as_str(), "reused" | "built" | "master")
        {
            record.outcome = match record.status {
                404 => "not_found",
                504 => "timeout",
                _ => "store_error",
            }
            .to_string();
        }
        record.bytes_out = Some(response.body.len() as u64).filter(|_| response.status < 400);
        Answer {
            server_timing: server_timing(
                &handled.trace.calls,
                handled.built.as_ref(),
                origin_time,
                read_time,
            ),
            response,
            hit: None,
            missed: true,
            vary_accept: false,
            record,
        }
    }

    /// Follow the rewritten request into the bucket, as CloudFront does with S3.
    async fn read_object(&self, uri: &str) -> CachedResponse {
        let Some(key) = cloudfront::key_from_uri(uri) else {
            return CachedResponse::from_error(&Error::internal(
                "the origin-request handler returned an unusable uri",
            ));
        };
        match self.origin.store().get(&key).await {
            Ok(Some(object)) => CachedResponse::from_object(&key, object),
            // Gone between the handler's check and the read (deleted, or a stale master).
            Ok(None) => CachedResponse::from_error(&Error::not_found("not found")),
            Err(e) => CachedResponse::from_error(&Error::from(e)),
        }
    }

    fn invalidate(&self, query: &str) -> Response {
        let paths: Vec<String> = query
            .split('&')
            .filter_map(|pair| pair.strip_prefix("path="))
            .map(|v| percent_decode_str(v).decode_utf8_lossy().into_owned())
            .filter(|p| p.starts_with('/'))
            .collect();
        if paths.is_empty() {
            let e = Error::invalid_parameter(
                "path",
                "give one or more path=/key or path=/prefix* parameters (starting with /)",
            );
            return json_response(400, "no-store", e.to_json());
        }
        let invalidated: usize = paths.iter().map(|p| self.cache.invalidate(p)).sum();
        let body = serde_json::json!({ "invalidated": invalidated, "paths": paths });
        json_response(200, "no-store", body.to_string())
    }

    async fn gallery(&self) -> Response {
        match self.origin.store().list("").await {
            Ok(keys) => html_response(pages::gallery_html(
                &self.origin.store().describe(),
                &pages::masters(&keys),
                self.guard.keys.as_ref(),
            )),
            Err(e) => error_http(&Error::from(e)),
        }
    }

    async fn playground(&self) -> Response {
        match self.origin.store().list("").await {
            Ok(keys) => {
                let mut response =
                    html_response(playground::playground_html(&pages::masters(&keys)));
                // The page is self-contained: anything it would load from elsewhere fails.
                response.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'self'; script-src 'unsafe-inline'; \
                         style-src 'unsafe-inline'; img-src 'self'",
                    ),
                );
                response
            }
            Err(e) => error_http(&Error::from(e)),
        }
    }

    /// The resolve endpoint signs any query: only callers on this machine are answered.
    fn resolve(&self, request: &axum::http::request::Parts, query: &str) -> Response {
        let peer = request
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| *addr);
        let host = request
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri.authority().map(|a| a.as_str()));
        let forwarded = request.headers.contains_key(header::FORWARDED)
            || request.headers.contains_key("x-forwarded-for");
        // Signed URLs and per-configuration answers: never kept by any cache.
        match playground::check_local_caller(peer, host, forwarded) {
            Ok(()) => {
                let (status, body) = playground::resolve_answer(&self.guard, query);
                json_response(status, "no-store", body)
            }
            Err(refusal) => json_response(403, "no-store", refusal.to_json()),
        }
    }
}

impl Answer {
    fn hit(hit: CacheHit, record: RequestRecord) -> Answer {
        Answer {
            response: hit.response,
            hit: Some(hit.age),
            missed: false,
            server_timing: format!("edge-cache;desc=hit;dur={:.3}", record.total_ms),
            vary_accept: false,
            record,
        }
    }

    /// The viewer-request function's own answer: it never reaches the cache or the origin.
    fn from_viewer_function(e: &Error, record: RequestRecord, server_timing: String) -> Answer {
        Answer {
            response: Arc::new(CachedResponse::from_error(e)),
            hit: None,
            missed: false,
            server_timing,
            vary_accept: false,
            record,
        }
    }

    /// `Some(true)` for an edge cache hit, `Some(false)` for a miss, `None` when the viewer
    /// step answered (no lookup).
    fn edge_cache_hit(&self) -> Option<bool> {
        match (&self.hit, self.missed) {
            (Some(_), _) => Some(true),
            (None, true) => Some(false),
            (None, false) => None,
        }
    }

    fn into_response(self, if_none_match: Option<&str>, head: bool) -> Response {
        let r = &*self.response;
        let not_modified = r.status == 200
            && matches!((if_none_match, r.header("etag")), (Some(inm), Some(etag)) if etag_matches(inm, etag));
        let status = if not_modified { 304 } else { r.status };
        let mut builder = Response::builder().status(status);
        for (name, value) in &r.headers {
            // A 304 carries the validators and caching headers, not the representation's.
            if not_modified && name != "etag" && name != "cache-control" {
                continue;
            }
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder = builder.header(
            "x-cache",
            if self.hit.is_some() {
                X_CACHE_HIT
            } else {
                X_CACHE_MISS
            },
        );
        if let Some(age) = self.hit {
            builder = builder.header(header::AGE, age.as_secs());
        }
        builder = builder.header("server-timing", self.server_timing.as_str());
        if self.vary_accept {
            builder = builder.header(header::VARY, "Accept");
        }
        let body = if not_modified {
            Body::empty()
        } else {
            builder = builder.header(header::CONTENT_LENGTH, r.body.len());
            if head {
                Body::empty()
            } else {
                Body::from(r.body.clone())
            }
        };
        builder.body(body).unwrap_or_else(|_| {
            error_http(&Error::internal(
                "the origin sent a header that cannot be relayed",
            ))
        })
    }
}

fn html_response(html: String) -> Response {
    text_response("text/html; charset=utf-8", html)
}

fn text_response(content_type: &str, body: String) -> Response {
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(body))
        .expect("valid response")
}

/// The browser asks for it on every page; an SVG answers without a log of errors.
fn favicon() -> Response {
    let svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 16 16\">\
               <rect width=\"16\" height=\"16\" rx=\"3\" fill=\"#0f172a\"/>\
               <path d=\"M3 12l3-4 2 2 3-5 2 7z\" fill=\"#38bdf8\"/></svg>";
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "image/svg+xml")
        .header(header::CACHE_CONTROL, "public, max-age=86400")
        .body(Body::from(svg))
        .expect("valid response")
}

fn json_response(status: u16, cache_control: &str, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, cache_control)
        .body(Body::from(body))
        .expect("valid response")
}

fn error_http(error: &Error) -> Response {
    json_response(error.status(), error.cache_control(), error.to_json())
}

/// Header a caller of the invalidation endpoint must send. A browser cannot add it to a
/// cross-site request without a CORS preflight, which the emulator never grants, so a page
/// elsewhere cannot make the edge drop its cache (CSRF).
pub const INVALIDATE_HEADER: &str = "x-imgedge-invalidate";

/// `Some(403)` unless the invalidation request carries [`INVALIDATE_HEADER`] and no
/// foreign `Origin` (or a cross-site `Sec-Fetch-Site`).
fn invalidation_refusal(headers: &axum::http::HeaderMap) -> Option<Response> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = value("host").unwrap_or("");
    let same_origin = value("origin").is_none_or(|origin| {
        origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
    });
    let cross_site = matches!(value("sec-fetch-site"), Some("cross-site" | "same-site"));
    if value(INVALIDATE_HEADER).is_some() && same_origin && !cross_site {
        return None;
    }
    let body = serde_json::json!({
        "status": 403,
        "error": "forbidden",
        "message": format!(
            "invalidation needs the header {INVALIDATE_HEADER}: 1 and no foreign Origin \
             (e.g. curl -X POST -H '{INVALIDATE_HEADER}: 1' …)"
        ),
    });
    Some(json_response(403, "no-store", body.to_string()))
}

fn method_not_allowed(method: &Method) -> Response {
    let body = serde_json::json!({
        "status": 405,
        "error": "method_not_allowed",
        "message": format!("{method} is not allowed; use GET or HEAD"),
    });
    let mut response = json_response(405, "no-store", body.to_string());
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

async fn handle(State(edge): State<Arc<Edge>>, request: Request) -> Response {
    let started = Instant::now();
    // Only the head matters (viewer bodies are ignored); it is `Sync`, the body is not.
    let (request, _body) = request.into_parts();
    let method = request.method.clone();
    let path = request.uri.path().to_string();
    let query = request.uri.query().unwrap_or("").to_string();
    let header = |name: header::HeaderName| {
        cloudfront::fold_header_values(
            request
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        )
    };
    let accept = header(header::ACCEPT);
    let if_none_match = header(header::IF_NONE_MATCH);

    let head = method == Method::HEAD;
    let mut response = if method == Method::POST && path == INVALIDATE_PATH {
        match invalidation_refusal(&request.headers) {
            Some(refusal) => refusal,
            None => edge.invalidate(&query),
        }
    } else if method != Method::GET && !head {
        method_not_allowed(&method)
    } else if path == "/" {
        edge.gallery().await
    } else if path == PLAYGROUND_PATH {
        edge.playground().await
    } else if path == RESOLVE_PATH {
        edge.resolve(&request, &query)
    } else if path == METRICS_PATH {
        let (content_type, text) = edge.metrics.render(accept.as_deref());
        text_response(content_type, text)
    } else if path == "/favicon.ico" {
        favicon()
    } else {
        let answer = edge.viewer_request(&path, &query, accept.as_deref()).await;
        let mut record = answer.record.clone();
        record.total_ms = observe::millis(started.elapsed());
        edge.metrics.observe(&record, answer.edge_cache_hit());
        // One line per image request, written whole (never interleaved).
        let line = record.line(edge.log_format);
        let _ = writeln!(std::io::stderr().lock(), "{line}");
        answer.into_response(if_none_match.as_deref(), head)
    };
    // The template's response headers policy: no viewer may sniff a type (DESIGN.md §10).
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if head && response.headers().contains_key(header::CONTENT_LENGTH) {
        // Keep Content-Length of the GET; the body is dropped.
        *response.body_mut() = Body::empty();
    }

    tracing::debug!(
        %method,
        uri = %request.uri,
        status = response.status().as_u16(),
        ms = format_args!("{:.1}", started.elapsed().as_secs_f64() * 1000.0),
        "request"
    );
    response
}

/// The emulator as an axum router (for embedding and tests). Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`, as [`serve`] does: without the
/// peer address the resolve endpoint refuses every caller.
pub fn router(origin: Arc<Origin>, options: ServeOptions) -> Router {
    let edge = Arc::new(Edge {
        origin,
        guard: options.guard,
        log_format: options.log_format,
        metrics: EdgeMetrics::default(),
        request_timeout: options.request_timeout,
        cache: EdgeCache::new(options.cache_bytes),
        collapsing: KeyedLocks::new(),
    });
    Router::new().fallback(handle).with_state(edge)
}

/// Serve the emulator on `listener` until `shutdown` completes; in-flight requests finish.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    origin: Arc<Origin>,
    options: ServeOptions,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    // The peer address is what the resolve endpoint checks (loopback callers only).
    let service = router(origin, options).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform;

    #[test]
    fn a_cached_error_body_names_its_code() {
        for kind in crate::error::ErrorKind::ALL {
            let body = Error::new(kind, "m").to_json();
            assert_eq!(error_code(body.as_bytes()), Some(kind.code()));
        }
        assert_eq!(error_code(br#"{"error":"made_up"}"#), None);
        assert_eq!(error_code(b"\x89PNG"), None);
    }

    #[test]
    fn server_timing_lists_build_stages_only_when_built() {
        let ms = Duration::from_millis;
        let stats = BuildStats {
            fetch: ms(1),
            timings: transform::Timings {
                decode: ms(2),
                resize: ms(3),
                encode: ms(4),
            },
            store: ms(5),
        };
        let calls = [StoreCall {
            op: "head",
            object: "master",
            duration: ms(7),
        }];
        assert_eq!(
            server_timing(
                &calls,
                Some(&stats),
                ms(20),
                Some(Duration::from_micros(1500))
            ),
            "head-master;dur=7.000, fetch;dur=1.000, decode;dur=2.000, resize;dur=3.000, \
             encode;dur=4.000, store;dur=5.000, origin;dur=20.000, read;dur=1.500"
        );
        assert_eq!(server_timing(&[], None, ms(2), None), "origin;dur=2.000");
    }
}

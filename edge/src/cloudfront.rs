//! CloudFront origin-request events (Lambda@Edge) ↔ the service. The types are serde
//! models of AWS's documented event and result shapes (`aws_lambda_events` has none for
//! CloudFront); the mapping functions are pure, and `handle_origin_request` is the one
//! handler that both the Lambda `bootstrap` and `edge serve` run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use base64::Engine as _;
use percent_encoding::percent_decode_str;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::observe::RequestRecord;
use crate::service::{BuildStats, Ensured, InlineVariant, Origin};
use crate::store::StoreTrace;

/// One header as CloudFront writes it: `{"key": "Accept", "value": "image/webp"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub value: String,
}

/// Headers keyed by lowercase name: `{"accept": [{"key": "Accept", "value": "…"}]}`.
pub type Headers = BTreeMap<String, Vec<HeaderEntry>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginRequestEvent {
    #[serde(rename = "Records")]
    pub records: Vec<Record>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub cf: CfData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CfData {
    pub config: CfConfig,
    pub request: CfRequest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CfConfig {
    #[serde(default)]
    pub distribution_domain_name: String,
    #[serde(default)]
    pub distribution_id: String,
    #[serde(default)]
    pub event_type: String,
    #[serde(default)]
    pub request_id: String,
}

/// The request; returning it (possibly rewritten) forwards it to the origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CfRequest {
    #[serde(default)]
    pub client_ip: String,
    #[serde(default)]
    pub headers: Headers,
    pub method: String,
    /// Kept as raw JSON so it round-trips untouched (S3 or custom origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<serde_json::Value>,
    /// Raw query string, without `?`.
    #[serde(default)]
    pub querystring: String,
    /// Percent-encoded path as the viewer sent it.
    pub uri: String,
}

/// A generated response (an error, or a small variant's bytes); CloudFront answers it
/// without the origin, and caches it like an origin's response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CfResponse {
    /// CloudFront wants the status as a string: `"400"`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_description: Option<String>,
    #[serde(default)]
    pub headers: Headers,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// `base64` for a binary body (text when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_encoding: Option<String>,
}

impl CfResponse {
    /// The body's bytes: base64-decoded when `bodyEncoding` says so.
    pub fn body_bytes(&self) -> Option<Vec<u8>> {
        let body = self.body.as_deref()?;
        match self.body_encoding.as_deref() {
            Some("base64") => base64::engine::general_purpose::STANDARD.decode(body).ok(),
            _ => Some(body.as_bytes().to_vec()),
        }
    }
}

/// The answer for a variant small enough to send from the origin-request: its bytes
/// (base64) and the headers the bucket would have sent, so CloudFront needs no fetch.
pub fn variant_response(variant: &InlineVariant) -> CfResponse {
    let mut headers = Headers::new();
    for (name, value) in variant.response_headers() {
        header(&mut headers, name, value);
    }
    CfResponse {
        status: "200".to_string(),
        status_description: Some("OK".to_string()),
        headers,
        body: Some(base64::engine::general_purpose::STANDARD.encode(&variant.body)),
        body_encoding: Some("base64".to_string()),
    }
}

/// What the origin-request handler returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OriginRequestOutput {
    Response(CfResponse),
    Request(CfRequest),
}

/// Build an origin-request event the way CloudFront does for an S3 origin (used by
/// `edge serve` and tests). `headers` are (name, value) pairs as the viewer sent them.
pub fn origin_request_event(
    uri: &str,
    querystring: &str,
    headers: &[(&str, &str)],
) -> OriginRequestEvent {
    let mut map = Headers::new();
    for (name, value) in headers {
        header(&mut map, name, value);
    }
    let origin = serde_json::json!({
        "s3": {
            "authMethod": "none",
            "customHeaders": {},
            "domainName": "imgedge-local.s3.us-east-1.amazonaws.com",
            "path": "",
            "region": "us-east-1"
        }
    });
    OriginRequestEvent {
        records: vec![Record {
            cf: CfData {
                config: CfConfig {
                    distribution_domain_name: "imgedge.local".to_string(),
                    distribution_id: "IMGEDGELOCAL".to_string(),
                    event_type: "origin-request".to_string(),
                    request_id: next_request_id(),
                },
                request: CfRequest {
                    client_ip: "127.0.0.1".to_string(),
                    headers: map,
                    method: "GET".to_string(),
                    origin: Some(origin),
                    querystring: querystring.to_string(),
                    uri: uri.to_string(),
                },
            },
        }],
    }
}

/// A process-unique request id, so local logs can be correlated like CloudFront's.
/// A request id for the emulator's events and records (`imgedge-local-N`).
pub fn next_request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    format!("imgedge-local-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// One header in CloudFront's shape: `"content-type": [{"key": "Content-Type", …}]`.
fn header(headers: &mut Headers, name: &str, value: &str) {
    headers
        .entry(name.to_ascii_lowercase())
        .or_default()
        .push(HeaderEntry {
            key: Some(name.to_string()),
            value: value.to_string(),
        });
}

/// The reason phrase CloudFront shows beside a generated status.
fn status_description(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// The generated response for an error: status, JSON body, Content-Type, Cache-Control.
pub fn error_response(error: &Error) -> CfResponse {
    let mut headers = Headers::new();
    for (name, value) in error.response_headers() {
        header(&mut headers, name, value);
    }
    CfResponse {
        status: error.status().to_string(),
        status_description: Some(status_description(error.status()).to_string()),
        headers,
        body: Some(error.to_json()),
        body_encoding: None,
    }
}

/// The object key a (rewritten) request's uri addresses: percent-decoded, no leading `/`.
pub fn key_from_uri(uri: &str) -> Option<String> {
    let path = uri.strip_prefix('/')?;
    percent_decode_str(path)
        .decode_utf8()
        .ok()
        .map(|key| key.into_owned())
}

/// All values of a header, looked up case-insensitively (CloudFront lowercases the map's
/// keys, but hand-written events and other emitters may not), repeated values joined by
/// `", "` as HTTP folds them.
fn header_value(headers: &Headers, name: &str) -> Option<String> {
    fold_header_values(
        headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .flat_map(|(_, entries)| entries.iter().map(|e| e.value.as_str())),
    )
}

/// Repeated values of one header as one, joined by `", "` as HTTP folds them; `None`
/// when there are none.
pub fn fold_header_values<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    let values: Vec<&str> = values.collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// What the handler did besides its answer: the request's record (logs, metrics) and its
/// store calls and build stages (`Server-Timing`).
#[derive(Debug, Clone)]
pub struct Handled {
    pub record: RequestRecord,
    pub trace: StoreTrace,
    /// How the variant was built, when this request built it.
    pub built: Option<BuildStats>,
}

/// The origin-request handler: event in, rewritten request (uri = `/` + the variant or
/// master key, querystring cleared) or generated error response out, and what it did.
/// The record's request id is CloudFront's (`x-amz-cf-id`, the event's `requestId`).
pub async fn handle_origin_request(
    origin: &Origin,
    event: OriginRequestEvent,
) -> (OriginRequestOutput, Handled) {
    handle_origin_request_until(origin, event, None).await
}

/// [`handle_origin_request`] that answers a 504 `timeout` (no-store, nothing written) when
/// `deadline` passes first: the Lambda's deadline less a margin for the answer, or
/// `edge serve --request-timeout`.
pub async fn handle_origin_request_until(
    origin: &Origin,
    event: OriginRequestEvent,
    deadline: Option<Instant>,
) -> (OriginRequestOutput, Handled) {
    let started = Instant::now();
    let Some(record) = event.records.into_iter().next() else {
        let error = Error::internal("the origin-request event has no records");
        let record = RequestRecord::new(
            "",
            "",
            "",
            Err(&error),
            &StoreTrace::default(),
            started.elapsed(),
        );
        let handled = Handled {
            record,
            trace: StoreTrace::default(),
            built: None,
        };
        return (
            OriginRequestOutput::Response(error_response(&error)),
            handled,
        );
    };
    let request_id = record.cf.config.request_id;
    let mut request = record.cf.request;
    let accept = header_value(&request.headers, "accept");
    let (result, trace) = origin
        .handle_traced(
            &request.uri,
            &request.querystring,
            accept.as_deref(),
            deadline,
        )
        .await;
    // The key as a viewer would read it; the query is canonical (no `sig`) by now.
    let key = crate::key::MasterKey::from_uri(&request.uri)
        .map(|k| k.as_str().to_string())
        .unwrap_or_else(|_| request.uri.trim_start_matches('/').to_string());
    let record = RequestRecord::new(
        request_id,
        key,
        &request.querystring,
        result.as_ref(),
        &trace,
        started.elapsed(),
    );
    let built = result.as_ref().ok().and_then(|e| e.built.clone());
    let handled = Handled {
        record,
        trace,
        built,
    };
    let output = match result {
        Ok(Ensured {
            inline: Some(variant),
            ..
        }) => OriginRequestOutput::Response(variant_response(&variant)),
        Ok(ensured) => {
            request.uri = crate::key::key_to_uri(&ensured.key);
            request.querystring.clear();
            OriginRequestOutput::Request(request)
        }
        Err(error) => OriginRequestOutput::Response(error_response(&error)),
    };
    (output, handled)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::error::ErrorKind;
    use crate::service::{SOURCE_ETAG, VARIANT_CACHE_CONTROL};
    use crate::store::{MemStore, ObjectMeta, PutOptions, Store};
    use crate::transform::Limits;

    fn fixtures_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cloudfront")
    }

    fn fixture(name: &str) -> (serde_json::Value, OriginRequestEvent) {
        let text = std::fs::read_to_string(fixtures_dir().join(name)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let event = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        (value, event)
    }

    fn entry(key: &str, value: &str) -> HeaderEntry {
        HeaderEntry {
            key: Some(key.to_string()),
            value: value.to_string(),
        }
    }

    fn body_json(resp: &CfResponse) -> serde_json::Value {
        serde_json::from_str(resp.body.as_deref().unwrap()).unwrap()
    }

    fn header_of<'a>(headers: &'a Headers, name: &str) -> &'a str {
        &headers[name][0].value
    }

    #[test]
    fn every_fixture_deserialises_and_round_trips() {
        let mut seen = 0;
        for dirent in std::fs::read_dir(fixtures_dir()).unwrap() {
            let path = dirent.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let (value, event) = fixture(&name);
            assert_eq!(serde_json::to_value(&event).unwrap(), value, "{name}");
            seen += 1;
        }
        assert!(seen >= 3, "fixtures found: {seen}");
    }

    #[test]
    fn documented_origin_request_example_maps_its_fields() {
        let (_, event) = fixture("aws-origin-request.json");
        let cf = &event.records[0].cf;
        assert_eq!(cf.config.event_type, "origin-request");
        assert_eq!(cf.config.distribution_id, "EDFDVBD6EXAMPLE");
        assert_eq!(cf.request.client_ip, "203.0.113.178");
        assert_eq!(cf.request.uri, "/");
        assert_eq!(cf.request.querystring, "");
        assert_eq!(
            cf.request.headers["host"],
            vec![entry("Host", "example.org")]
        );
        let origin = cf.request.origin.as_ref().unwrap();
        assert_eq!(origin["custom"]["domainName"], "example.org");

        let (_, event) = fixture("aws-request-event-s3.json");
        let origin = event.records[0].cf.request.origin.clone().unwrap();
        assert_eq!(origin["s3"]["domainName"], "my-bucket.s3.amazonaws.com");
        assert_eq!(event.records[0].cf.request.querystring, "size=large");
    }

    #[test]
    fn built_event_looks_like_cloudfronts() {
        let event = origin_request_event(
            "/outputs/a.png",
            "w=5",
            &[
                ("Accept", "image/webp"),
                ("User-Agent", "curl/8"),
                ("accept", "image/avif"),
            ],
        );
        let json = serde_json::to_value(&event).unwrap();
        let cf = &json["Records"][0]["cf"];
        assert_eq!(cf["config"]["eventType"], "origin-request");
        let request = &cf["request"];
        assert_eq!(request["clientIp"], "127.0.0.1");
        assert_eq!(request["method"], "GET");
        assert_eq!(request["uri"], "/outputs/a.png");
        assert_eq!(request["querystring"], "w=5");
        assert_eq!(
            request["headers"]["accept"],
            serde_json::json!([{"key": "Accept", "value": "image/webp"},
                               {"key": "accept", "value": "image/avif"}])
        );
        assert_eq!(request["headers"]["user-agent"][0]["key"], "User-Agent");
        assert!(request["headers"].get("Accept").is_none());
        assert_eq!(request["origin"]["s3"]["authMethod"], "none");
        // What we emit is what we read back.
        let back: OriginRequestEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
        // Each event gets its own id, as CloudFront's do.
        let other = origin_request_event("/x.png", "", &[]);
        assert_ne!(
            other.records[0].cf.config.request_id,
            event.records[0].cf.config.request_id
        );
    }

    #[test]
    fn error_response_carries_status_json_and_cache_policy() {
        let cases = [
            (
                Error::invalid_parameter("w", "w must be 1–8192"),
                "400",
                "Bad Request",
            ),
            (Error::invalid_key("bad key"), "400", "Bad Request"),
            (Error::invalid_signature("no sig"), "403", "Forbidden"),
            (Error::not_found("no image"), "404", "Not Found"),
            (
                Error::unsupported_image("not an image"),
                "415",
                "Unsupported Media Type",
            ),
            (
                Error::image_too_large("too big"),
                "422",
                "Unprocessable Content",
            ),
            (Error::store("down"), "502", "Bad Gateway"),
            (Error::internal("bug"), "500", "Internal Server Error"),
        ];
        for (error, status, description) in cases {
            let resp = error_response(&error);
            assert_eq!(resp.status, status);
            assert_eq!(resp.status_description.as_deref(), Some(description));
            assert_eq!(header_of(&resp.headers, "content-type"), "application/json");
            assert_eq!(
                resp.headers["content-type"][0].key.as_deref(),
                Some("Content-Type")
            );
            assert_eq!(
                header_of(&resp.headers, "cache-control"),
                error.cache_control()
            );
            assert_eq!(
                resp.headers["cache-control"][0].key.as_deref(),
                Some("Cache-Control")
            );
            assert_eq!(resp.body.as_deref(), Some(error.to_json().as_str()));
            assert_eq!(body_json(&resp)["status"], error.status());
        }
        // Serialised in CloudFront's generated-response shape.
        let json = serde_json::to_value(error_response(&Error::not_found("x"))).unwrap();
        assert_eq!(json["status"], "404");
        assert_eq!(json["statusDescription"], "Not Found");
        assert_eq!(
            json["headers"]["cache-control"],
            serde_json::json!([{"key": "Cache-Control", "value": "public, max-age=60"}])
        );
    }

    #[test]
    fn error_body_stays_far_below_the_generated_response_limit() {
        // The largest message a viewer can provoke echoes at most a 2 KiB query; allow
        // far more and still stay three orders of magnitude under CloudFront's 1 MB.
        let resp = error_response(&Error::invalid_parameter("w", "x".repeat(16 * 1024)));
        let size = serde_json::to_string(&resp).unwrap().len();
        assert!(size < 1_000_000 / 32, "{size} bytes");
    }

    #[test]
    fn key_from_uri_percent_decodes() {
        assert_eq!(
            key_from_uri("/outputs/a.png").as_deref(),
            Some("outputs/a.png")
        );
        assert_eq!(
            key_from_uri("/outputs/my%20image%20%C3%BC.png").as_deref(),
            Some("outputs/my image ü.png")
        );
        assert_eq!(
            key_from_uri("/_variants/v2/o/a.png/w%3D512%2Cfmt%3Dwebp.webp").as_deref(),
            Some("_variants/v2/o/a.png/w=512,fmt=webp.webp")
        );
        assert_eq!(key_from_uri("/").as_deref(), Some(""));
        assert_eq!(key_from_uri("outputs/a.png"), None, "no leading slash");
        assert_eq!(key_from_uri("/bad%FF.png"), None, "not UTF-8");
    }

    #[test]
    fn rewritten_uri_encodes_all_but_unreserved_and_slash() {
        assert_eq!(
            crate::key::key_to_uri(
                "_variants/v2/outputs/2025-02-01/image_001.png/w=512,fmt=webp.webp"
            ),
            "/_variants/v2/outputs/2025-02-01/image_001.png/w%3D512%2Cfmt%3Dwebp.webp"
        );
        assert_eq!(
            crate::key::key_to_uri("a b+c%d?e#f&g~h.png"),
            "/a%20b%2Bc%25d%3Fe%23f%26g~h.png"
        );
        assert_eq!(crate::key::key_to_uri("ü/ß.png"), "/%C3%BC/%C3%9F.png");
        for key in ["outputs/a b.png", "x/ü,=;:@$!*'().jpg", "%2F/..%00.png"] {
            assert_eq!(
                key_from_uri(&crate::key::key_to_uri(key)).as_deref(),
                Some(key)
            );
        }
    }

    #[test]
    fn accept_is_found_in_any_case_and_repeated_values_are_joined() {
        let mut headers = Headers::new();
        assert_eq!(header_value(&headers, "accept"), None);
        headers.insert(
            "Accept".to_string(),
            vec![entry("Accept", "image/avif"), entry("Accept", "image/webp")],
        );
        assert_eq!(
            header_value(&headers, "accept").as_deref(),
            Some("image/avif, image/webp")
        );
        headers.insert("accept".to_string(), vec![entry("accept", "*/*")]);
        let joined = header_value(&headers, "ACCEPT").unwrap();
        assert_eq!(joined.split(", ").count(), 3, "{joined}");
    }

    /// An origin that always rewrites (no variant is small enough to answer with its
    /// bytes): the rewrite's shape is what these tests look at.
    fn origin_with(store: &Arc<MemStore>) -> Origin {
        origin_inlining(store, 0)
    }

    fn origin_inlining(store: &Arc<MemStore>, inline_max_bytes: u64) -> Origin {
        let limits = Limits {
            inline_max_bytes,
            ..Limits::default()
        };
        Origin::new(store.clone(), limits)
    }

    #[tokio::test]
    async fn small_variants_are_answered_with_their_bytes_and_the_cut_over_is_exact() {
        let (store, _) = store_with_master(MASTER).await;
        let event = || origin_request_event(&format!("/{MASTER}"), "w=200&fmt=webp", &[]);
        // Build it once to learn its size.
        let (out, _) = handle_origin_request(&origin_with(&store), event()).await;
        let key = key_from_uri(&expect_request(out).uri).unwrap();
        let stored = store.get(&key).await.unwrap().unwrap();
        let size = stored.body.len() as u64;

        // At the limit: the bytes, base64, with the headers the bucket would send.
        let (out, handled) = handle_origin_request(&origin_inlining(&store, size), event()).await;
        let resp = expect_response(out);
        assert_eq!(resp.status, "200");
        assert_eq!(resp.body_encoding.as_deref(), Some("base64"));
        assert_eq!(
            resp.body_bytes().unwrap(),
            stored.body.to_vec(),
            "base64 round trip"
        );
        assert_eq!(header_of(&resp.headers, "content-type"), "image/webp");
        assert_eq!(
            header_of(&resp.headers, "cache-control"),
            VARIANT_CACHE_CONTROL
        );
        assert_eq!(header_of(&resp.headers, "etag"), stored.head.etag);
        assert_eq!(
            resp.headers["content-type"][0].key.as_deref(),
            Some("Content-Type")
        );
        assert_eq!(handled.record.outcome, "reused");
        // The JSON CloudFront reads: bodyEncoding, status as a string.
        let json = serde_json::to_value(OriginRequestOutput::Response(resp)).unwrap();
        assert_eq!(json["bodyEncoding"], "base64");
        assert_eq!(json["status"], "200");

        // One byte over: the rewrite.
        let (out, _) = handle_origin_request(&origin_inlining(&store, size - 1), event()).await;
        assert_eq!(key_from_uri(&expect_request(out).uri).unwrap(), key);

        // A new variant under the limit is answered with the bytes it just stored.
        let new = origin_request_event(&format!("/{MASTER}"), "w=100&fmt=png", &[]);
        let (out, handled) = handle_origin_request(&origin_inlining(&store, 1 << 20), new).await;
        let resp = expect_response(out);
        assert_eq!(handled.record.outcome, "built");
        let stored = store
            .get("_variants/v2/outputs/2025-02-01/image_001.png/w=100.png")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.body_bytes().unwrap(), stored.body.to_vec());
        assert_eq!(header_of(&resp.headers, "etag"), stored.head.etag);
        assert_eq!(header_of(&resp.headers, "content-type"), "image/png");
    }

    #[tokio::test]
    async fn event_without_records_is_a_500_no_store_response() {
        let store = Arc::new(MemStore::new());
        let (out, stats) =
            handle_origin_request(&origin_with(&store), OriginRequestEvent { records: vec![] })
                .await;
        let OriginRequestOutput::Response(resp) = out else {
            panic!("expected a response, got {out:?}")
        };
        assert_eq!(resp.status, "500");
        assert_eq!(header_of(&resp.headers, "cache-control"), "no-store");
        assert_eq!(body_json(&resp)["error"], "internal");
        assert!(stats.built.is_none());
    }

    // The handler tests below run the whole core (key, spec, transform) over a MemStore.

    const MASTER: &str = "outputs/2025-02-01/image_001.png";

    fn png(width: u32, height: u32) -> Bytes {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        Bytes::from(out.into_inner())
    }

    async fn store_with_master(key: &str) -> (Arc<MemStore>, String) {
        let store = Arc::new(MemStore::new());
        let meta = ObjectMeta {
            content_type: Some("image/png".into()),
            ..Default::default()
        };
        store
            .put(
                key,
                png(640, 480),
                PutOptions {
                    meta,
                    if_none_match: false,
                },
            )
            .await
            .unwrap();
        let etag = store.head(key).await.unwrap().unwrap().etag;
        (store, etag)
    }

    fn expect_request(out: OriginRequestOutput) -> CfRequest {
        match out {
            OriginRequestOutput::Request(r) => r,
            OriginRequestOutput::Response(r) => panic!("expected a request, got {r:?}"),
        }
    }

    fn expect_response(out: OriginRequestOutput) -> CfResponse {
        match out {
            OriginRequestOutput::Response(r) => r,
            OriginRequestOutput::Request(r) => panic!("expected a response, got {r:?}"),
        }
    }

    #[tokio::test]
    async fn documented_event_is_rewritten_to_a_fresh_variant() {
        let (store, etag) = store_with_master(MASTER).await;
        let origin = origin_with(&store);
        let (_, event) = fixture("image_001-w512-webp.json");
        let original = event.records[0].cf.request.clone();

        let (out, stats) = handle_origin_request(&origin, event.clone()).await;
        let request = expect_request(out);
        assert_eq!(
            request.uri,
            "/_variants/v2/outputs/2025-02-01/image_001.png/w%3D512%2Cfmt%3Dwebp.webp"
        );
        assert_eq!(request.querystring, "");
        assert_eq!(request.headers, original.headers);
        assert_eq!(request.origin, original.origin);
        assert_eq!(request.method, original.method);
        assert_eq!(request.client_ip, original.client_ip);
        assert!(stats.built.is_some(), "first request renders");

        let key = key_from_uri(&request.uri).unwrap();
        let variant = store.get(&key).await.unwrap().expect("variant stored");
        assert_eq!(
            variant.head.meta.content_type.as_deref(),
            Some("image/webp")
        );
        assert_eq!(variant.head.meta.metadata.get(SOURCE_ETAG), Some(&etag));
        assert_eq!(&variant.body[..4], b"RIFF");

        let (out, stats) = handle_origin_request(&origin, event).await;
        assert_eq!(expect_request(out).uri, request.uri);
        assert!(stats.built.is_none(), "the fresh variant is reused");
    }

    #[tokio::test]
    async fn accept_header_in_any_case_drives_fmt_auto() {
        let (store, _) = store_with_master(MASTER).await;
        let origin = origin_with(&store);
        let mut event = origin_request_event(&format!("/{MASTER}"), "w=100&fmt=auto", &[]);
        event.records[0].cf.request.headers.insert(
            "Accept".to_string(),
            vec![entry("Accept", "image/png"), entry("Accept", "image/webp")],
        );
        let request = expect_request(handle_origin_request(&origin, event).await.0);
        assert!(request.uri.ends_with(".webp"), "{}", request.uri);

        let event = origin_request_event(&format!("/{MASTER}"), "w=100&fmt=auto", &[]);
        let request = expect_request(handle_origin_request(&origin, event).await.0);
        assert!(
            request.uri.ends_with(".png"),
            "no Accept → master's format: {}",
            request.uri
        );
    }

    #[tokio::test]
    async fn url_encoded_uri_addresses_the_decoded_key_and_is_re_encoded() {
        let key = "outputs/my image ü.png";
        let (store, _) = store_with_master(key).await;
        let origin = origin_with(&store);
        let uri = "/outputs/my%20image%20%C3%BC.png";

        let event = origin_request_event(uri, "", &[]);
        let request = expect_request(handle_origin_request(&origin, event).await.0);
        assert_eq!(request.uri, uri);

        let event = origin_request_event(uri, "w=10", &[]);
        let request = expect_request(handle_origin_request(&origin, event).await.0);
        assert_eq!(
            request.uri,
            "/_variants/v2/outputs/my%20image%20%C3%BC.png/w%3D10.png"
        );
        let stored = key_from_uri(&request.uri).unwrap();
        assert_eq!(stored, "_variants/v2/outputs/my image ü.png/w=10.png");
        assert!(store.head(&stored).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn missing_query_serves_the_master_and_writes_nothing() {
        let (store, _) = store_with_master(MASTER).await;
        let origin = origin_with(&store);
        let event = origin_request_event(&format!("/{MASTER}"), "", &[("Accept", "image/webp")]);
        let (out, stats) = handle_origin_request(&origin, event).await;
        let request = expect_request(out);
        assert_eq!(request.uri, format!("/{MASTER}"));
        assert_eq!(request.querystring, "");
        assert!(stats.built.is_none());
        assert_eq!(
            store.list("_variants/").await.unwrap(),
            Vec::<String>::new()
        );
    }

    #[tokio::test]
    async fn variants_prefix_is_not_addressable_by_viewers() {
        let (store, _) = store_with_master(MASTER).await;
        let origin = origin_with(&store);
        // Make the variant exist, then try to fetch it directly.
        let event = origin_request_event(&format!("/{MASTER}"), "w=10", &[]);
        let request = expect_request(handle_origin_request(&origin, event).await.0);
        for query in ["", "w=5"] {
            let event = origin_request_event(&request.uri, query, &[]);
            let resp = expect_response(handle_origin_request(&origin, event).await.0);
            assert_eq!(resp.status, "404", "query {query:?}");
            assert_eq!(body_json(&resp)["error"], "not_found");
            assert_eq!(
                header_of(&resp.headers, "cache-control"),
                "public, max-age=60"
            );
        }
    }

    #[tokio::test]
    async fn bad_requests_answer_json_errors_and_store_nothing() {
        let (store, _) = store_with_master(MASTER).await;
        let origin = origin_with(&store);
        let cases = [
            (
                format!("/{MASTER}"),
                "w=0",
                "400",
                ErrorKind::InvalidParameter,
                Some("w"),
            ),
            (
                format!("/{MASTER}"),
                "w=5&w=6",
                "400",
                ErrorKind::InvalidParameter,
                Some("w"),
            ),
            (
                format!("/{MASTER}"),
                "zoom=2",
                "400",
                ErrorKind::InvalidParameter,
                Some("zoom"),
            ),
            (
                "/outputs/../x.png".to_string(),
                "w=5",
                "400",
                ErrorKind::InvalidKey,
                None,
            ),
            (
                "/outputs/none.png".to_string(),
                "w=5",
                "404",
                ErrorKind::NotFound,
                None,
            ),
        ];
        for (uri, query, status, kind, param) in cases {
            let event = origin_request_event(&uri, query, &[]);
            let resp = expect_response(handle_origin_request(&origin, event).await.0);
            assert_eq!(resp.status, status, "{uri}?{query}");
            let body = body_json(&resp);
            assert_eq!(body["error"], kind.code(), "{uri}?{query}");
            assert_eq!(body["param"].as_str(), param, "{uri}?{query}");
            assert!(!body["message"].as_str().unwrap().is_empty());
        }
        assert_eq!(
            store.list("_variants/").await.unwrap(),
            Vec::<String>::new()
        );
    }
}

//! Lambda Function URL requests (payload format 2.0) ↔ the service: the regional mode's
//! handler (DESIGN.md §4, docs/deploy.md#modes). The viewer-request function rewrites each
//! URL to its variant's key; CloudFront's origin group asks the bucket for that key and, on
//! a 403/404, sends the same request here through the Function URL (OAC-signed). This
//! renders and stores the variant like the Lambda@Edge handler, then answers with its bytes
//! (base64, the way a Function URL carries a binary body) — or, for a variant too large for
//! a buffered response, with a redirect to the viewer's URL, which the bucket now answers.
//! The mapping is pure; [`handle_function_url_request`] is the one handler the `regional`
//! binary runs.

use std::time::Instant;

use aws_lambda_events::event::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use base64::Engine as _;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

use crate::cloudfront::{fold_header_values, key_from_uri, Handled};
use crate::error::{Error, Result};
use crate::key::{key_to_uri, MasterKey, VARIANTS_PREFIX};
use crate::observe::RequestRecord;
use crate::service::{self, Ensured, InlineVariant, Origin};
use crate::store::{ObjectMeta, PutOptions, SmallObject, StoreTrace, TracedStore};

/// Largest body answered with its bytes. A Function URL's buffered response is at most 6 MB
/// (6,291,456 bytes) of JSON, and a binary body goes base64 (4/3 larger): 4,500 KiB is
/// 6,144,000 base64 bytes, which leaves over 140 KB for the headers and the JSON around it.
/// AWS's image-optimization sample stops at a similar 4.7 MB.
pub const INLINE_MAX_BYTES: u64 = 4_500 * 1024;

/// Request header the regional viewer-request function sets to the URL as the viewer sent
/// it (path and query, `sig` included), and the distribution's origin request policy
/// forwards: where to send a viewer back to once a variant too large to answer is stored.
pub const VIEWER_URL_HEADER: &str = "x-imgedge-viewer-url";

/// A redirect's Cache-Control: the next request must reach the bucket, not this answer.
const REDIRECT_CACHE_CONTROL: &str = "no-store";

/// The answer and what the handler did (the request's record, its store calls).
pub async fn handle_function_url_request(
    origin: &Origin,
    event: LambdaFunctionUrlRequest,
    deadline: Option<Instant>,
) -> (LambdaFunctionUrlResponse, Handled) {
    let started = Instant::now();
    let request_id = event.request_context.request_id.clone().unwrap_or_default();
    let path = event.raw_path.clone().unwrap_or_else(|| "/".to_string());
    let raw_query = event.raw_query_string.clone().unwrap_or_default();
    let accept = header(&event.headers, "accept");

    // A variant's own path (the regional viewer-request function's rewrite) stands for its
    // master and canonical query; any other path is a viewer URL as in edge mode.
    let is_variant = key_from_uri(&path).is_some_and(|k| k.starts_with(VARIANTS_PREFIX));
    let request = if is_variant {
        service::variant_request(&path)
    } else {
        Ok((path.clone(), raw_query.clone()))
    };
    let (result, mut trace) = match &request {
        Ok((uri, query)) => {
            origin
                .handle_traced(uri, query, accept.as_deref(), deadline)
                .await
        }
        Err(e) => (Err(e.clone()), StoreTrace::default()),
    };

    let built = result.as_ref().ok().and_then(|e| e.built.clone());
    let answer = match result {
        Ok(ensured) => {
            let (uri, query) = request.as_ref().expect("resolved before it was ensured");
            let viewer_url = viewer_url(&event.headers, uri, query, &ensured);
            let named = is_variant.then(|| key_from_uri(&path)).flatten();
            let (answer, extra) = answer(origin, named, ensured, &viewer_url).await;
            trace.round_trips += extra.round_trips;
            trace.bytes_in += extra.bytes_in;
            trace.calls.extend(extra.calls);
            answer
        }
        Err(e) => Answer::Failed(e),
    };

    let key = match &request {
        Ok((uri, _)) => MasterKey::from_uri(uri)
            .map(|k| k.as_str().to_string())
            .unwrap_or_else(|_| path.trim_start_matches('/').to_string()),
        Err(_) => key_from_uri(&path).unwrap_or_else(|| path.trim_start_matches('/').to_string()),
    };
    let query = match &request {
        Ok((_, query)) => query.to_string(),
        Err(_) => String::new(),
    };
    let (response, record) = match answer {
        Answer::Bytes(ensured, variant) => {
            let mut record = RequestRecord::new(
                &request_id,
                key,
                &query,
                Ok(&ensured),
                &trace,
                started.elapsed(),
            );
            record.bytes_out = Some(variant.body.len() as u64);
            (
                bytes_response(&variant.response_headers(), &variant.body),
                record,
            )
        }
        Answer::Master(ensured, master) => {
            let mut record = RequestRecord::new(
                &request_id,
                key,
                &query,
                Ok(&ensured),
                &trace,
                started.elapsed(),
            );
            record.bytes_out = Some(master.body.len() as u64);
            let mut headers = vec![("Content-Type", master.content_type.as_str())];
            if let Some(cache_control) = master.cache_control.as_deref() {
                headers.push(("Cache-Control", cache_control));
            }
            headers.push(("ETag", master.etag.as_str()));
            (bytes_response(&headers, &master.body), record)
        }
        Answer::Redirect(ensured, location) => {
            let mut record = RequestRecord::new(
                &request_id,
                key,
                &query,
                Ok(&ensured),
                &trace,
                started.elapsed(),
            );
            record.status = 302;
            (redirect_response(&location), record)
        }
        Answer::Failed(error) => {
            let record = RequestRecord::new(
                &request_id,
                key,
                &query,
                Err(&error),
                &trace,
                started.elapsed(),
            );
            (error_response(&error), record)
        }
    };
    let handled = Handled {
        record,
        trace,
        built,
    };
    (response, handled)
}

/// What the request comes to, before it is put in the Function URL's shape.
enum Answer {
    Bytes(Ensured, InlineVariant),
    Master(Ensured, Master),
    Redirect(Ensured, String),
    Failed(Error),
}

/// A master's bytes and the headers the bucket would send with them.
struct Master {
    body: bytes::Bytes,
    content_type: String,
    cache_control: Option<String>,
    etag: String,
}

/// The answer for an ensured request, plus the store calls it needed beyond the service's.
/// `named` is the variant key the request's path named, if it named one.
async fn answer(
    origin: &Origin,
    named: Option<String>,
    mut ensured: Ensured,
    viewer_url: &str,
) -> (Answer, StoreTrace) {
    let store = TracedStore::new(origin.store().clone());
    let limit = origin.limits().inline_max_bytes;
    let answer = if let Some(variant) = ensured.inline.take() {
        Answer::Bytes(ensured, variant)
    } else if ensured.bytes.is_none() {
        // The master itself, which the bucket did not have a moment ago (that is why
        // CloudFront came here): a 404 unless it has arrived since.
        match master(&store, &ensured.key, limit).await {
            Ok(Some(master)) => Answer::Master(ensured, master),
            Ok(None) => Answer::Redirect(ensured, viewer_url.to_string()),
            Err(e) => Answer::Failed(e),
        }
    } else {
        // Too large to answer: the bucket serves it once the viewer comes back. It must be
        // at the very key the viewer-request function names, or the viewer would come back
        // here for ever: a request beyond the master's size was stored under its clamped key.
        match named {
            Some(requested) if requested != ensured.key => {
                match copy(&store, &ensured.key, &requested).await {
                    Ok(()) => Answer::Redirect(ensured, viewer_url.to_string()),
                    Err(e) => Answer::Failed(e),
                }
            }
            _ => Answer::Redirect(ensured, viewer_url.to_string()),
        }
    };
    (answer, store.trace())
}

/// The master's bytes when small enough to answer (`None` when it is larger), or a 404.
async fn master(store: &TracedStore, key: &str, limit: u64) -> Result<Option<Master>> {
    use crate::store::Store as _;
    let found: Option<SmallObject> = store.get_small(key, limit).await?;
    let found = found.ok_or_else(|| Error::not_found(format!("no image at '{key}'")))?;
    Ok(found.body.map(|body| Master {
        body,
        content_type: found
            .head
            .meta
            .content_type
            .unwrap_or_else(|| "application/octet-stream".to_string()),
        cache_control: found.head.meta.cache_control,
        etag: found.head.etag,
    }))
}

/// The object at `from` stored again at `to`, metadata and all (whole-object PUT).
async fn copy(store: &TracedStore, from: &str, to: &str) -> Result<()> {
    use crate::store::Store as _;
    let object = store
        .get(from)
        .await?
        .ok_or_else(|| Error::store("the variant vanished before it could be served"))?;
    let meta: ObjectMeta = object.head.meta;
    store
        .put(
            to,
            object.body,
            PutOptions {
                meta,
                if_none_match: false,
            },
        )
        .await?;
    Ok(())
}

/// Where to send the viewer back to: the URL it sent (the viewer-request function's
/// header), when that is a same-site path of the same master; else the canonical URL, which
/// the viewer-request function accepts as long as URLs need no signature.
fn viewer_url(headers: &HeaderMap, uri: &str, query: &str, ensured: &Ensured) -> String {
    let master = MasterKey::from_uri(uri).ok();
    let sent = header(headers, VIEWER_URL_HEADER).filter(|url| {
        let path = url.split_once('?').map_or(url.as_str(), |(p, _)| p);
        // Only a path on this site (never `//host` or a scheme), without odd characters,
        // naming the master served: no open redirect can be made of the header.
        url.starts_with('/')
            && !url.starts_with("//")
            && !url
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
            && MasterKey::from_uri(path).ok() == master
    });
    sent.unwrap_or_else(|| {
        let canonical = if ensured.bytes.is_none() { "" } else { query };
        match (master, canonical) {
            (Some(m), "") => key_to_uri(m.as_str()),
            (Some(m), q) => format!("{}?{q}", key_to_uri(m.as_str())),
            (None, _) => uri.to_string(),
        }
    })
}

/// A header's values folded into one, as HTTP does.
fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    fold_header_values(headers.get_all(name).iter().filter_map(|v| v.to_str().ok()))
}

fn response(status: i64, headers: &[(&str, &str)]) -> LambdaFunctionUrlResponse {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.append(name, value);
        }
    }
    let mut response = LambdaFunctionUrlResponse::default();
    response.status_code = status;
    response.headers = map;
    response
}

/// A 200 with a binary body: base64, flagged so the Function URL decodes it.
pub fn bytes_response(headers: &[(&str, &str)], body: &[u8]) -> LambdaFunctionUrlResponse {
    let mut response = response(200, headers);
    response.body = Some(base64::engine::general_purpose::STANDARD.encode(body));
    response.is_base64_encoded = true;
    response
}

/// An error: status, the JSON body and the same headers as every other error answer.
pub fn error_response(error: &Error) -> LambdaFunctionUrlResponse {
    let mut response = response(i64::from(error.status()), &error.response_headers());
    response.body = Some(error.to_json());
    response
}

/// A 302 to `location` that no cache keeps.
pub fn redirect_response(location: &str) -> LambdaFunctionUrlResponse {
    response(
        302,
        &[
            ("Location", location),
            ("Cache-Control", REDIRECT_CACHE_CONTROL),
        ],
    )
}

/// The body's bytes: base64-decoded when the response says so.
pub fn body_bytes(response: &LambdaFunctionUrlResponse) -> Option<Vec<u8>> {
    let body = response.body.as_deref()?;
    if response.is_base64_encoded {
        base64::engine::general_purpose::STANDARD.decode(body).ok()
    } else {
        Some(body.as_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::key::TRANSFORM_VERSION;
    use crate::policy::Policy;
    use crate::service::{SOURCE_ETAG, VARIANT_CACHE_CONTROL};
    use crate::store::{MemStore, Store};
    use crate::transform::Limits;

    const MASTER: &str = "outputs/2025-02-01/image_001.png";

    fn fixture_text(name: &str) -> String {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/function-url");
        std::fs::read_to_string(dir.join(name))
            .unwrap()
            .replace("{TRANSFORM_VERSION}", &TRANSFORM_VERSION.to_string())
    }

    fn fixture(name: &str) -> LambdaFunctionUrlRequest {
        serde_json::from_str(&fixture_text(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// The miss fixture asking for `path`, the viewer's URL header set to `viewer_url`.
    fn miss(path: &str, viewer_url: Option<&str>) -> LambdaFunctionUrlRequest {
        let mut event = fixture("variant-miss.json");
        event.raw_path = Some(path.to_string());
        event.request_context.http.path = Some(path.to_string());
        event.headers.remove(VIEWER_URL_HEADER);
        if let Some(url) = viewer_url {
            event
                .headers
                .insert(VIEWER_URL_HEADER, HeaderValue::from_str(url).unwrap());
        }
        event
    }

    fn png(width: u32, height: u32) -> Bytes {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 256) as u8])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        Bytes::from(out.into_inner())
    }

    async fn store_with_master() -> Arc<MemStore> {
        let store = Arc::new(MemStore::new());
        let meta = ObjectMeta {
            content_type: Some("image/png".into()),
            cache_control: Some("public, max-age=86400".into()),
            ..Default::default()
        };
        let opts = PutOptions {
            meta,
            if_none_match: false,
        };
        store.put(MASTER, png(640, 480), opts).await.unwrap();
        store
    }

    fn origin(store: &Arc<MemStore>, inline_max_bytes: u64) -> Origin {
        let limits = Limits {
            inline_max_bytes,
            ..Limits::default()
        };
        Origin::new(store.clone(), limits)
    }

    fn variant_path(query: &str, ext: &str) -> String {
        let master = MasterKey::from_uri(&format!("/{MASTER}")).unwrap();
        let format = crate::format::Format::from_master_extension(ext).unwrap();
        key_to_uri(&master.variant_key(query, format))
    }

    fn header_of<'a>(response: &'a LambdaFunctionUrlResponse, name: &str) -> &'a str {
        response.headers[name].to_str().unwrap()
    }

    fn body_json(response: &LambdaFunctionUrlResponse) -> serde_json::Value {
        assert!(!response.is_base64_encoded);
        serde_json::from_str(response.body.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn documented_payloads_read_and_answers_have_their_shape() {
        let event = fixture("aws-request.json");
        assert_eq!(event.raw_path.as_deref(), Some("/my/path"));
        assert_eq!(event.request_context.http.method.as_deref(), Some("POST"));
        assert_eq!(
            header(&event.headers, "header2").as_deref(),
            Some("value1,value2")
        );
        let miss = fixture("variant-miss.json");
        assert_eq!(miss.request_context.http.method.as_deref(), Some("GET"));
        assert!(miss.raw_path.unwrap().starts_with("/_variants/v"));

        // The documented answer reads as our type, and ours writes the documented names.
        let documented: serde_json::Value =
            serde_json::from_str(&fixture_text("aws-response.json")).unwrap();
        let read: LambdaFunctionUrlResponse = serde_json::from_value(documented.clone()).unwrap();
        assert_eq!(read.status_code, 201);
        let ours = serde_json::to_value(bytes_response(&[("Content-Type", "image/webp")], b"RIFF"))
            .unwrap();
        let names = |v: &serde_json::Value| {
            let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(names(&ours), names(&documented));
        assert_eq!(ours["statusCode"], 200);
        assert_eq!(ours["isBase64Encoded"], true);
        assert_eq!(ours["body"], "UklGRg==");
        assert_eq!(ours["headers"]["content-type"], "image/webp");
    }

    #[tokio::test]
    async fn a_miss_renders_stores_and_answers_the_bytes_then_reuses_them() {
        let store = store_with_master().await;
        let origin = origin(&store, INLINE_MAX_BYTES);
        let event = fixture("variant-miss.json");
        let key = key_from_uri(event.raw_path.as_deref().unwrap()).unwrap();

        let (response, handled) = handle_function_url_request(&origin, event.clone(), None).await;
        assert_eq!(response.status_code, 200);
        assert!(response.is_base64_encoded);
        let body = body_bytes(&response).unwrap();
        assert_eq!(&body[..4], b"RIFF");
        assert_eq!(header_of(&response, "content-type"), "image/webp");
        assert_eq!(header_of(&response, "cache-control"), VARIANT_CACHE_CONTROL);
        assert_eq!(handled.record.outcome, "built");
        assert_eq!(handled.record.key, MASTER);
        assert_eq!(handled.record.query, "w=512&fmt=webp");
        assert_eq!(handled.record.bytes_out, Some(body.len() as u64));
        assert_eq!(
            handled.record.request_id,
            "c7ad1b5b-39a5-4d53-94e4-e7b4e8f0a1b2"
        );
        assert!(handled.built.is_some());

        // Stored at the very key the path names, as the bucket will serve it next time.
        let stored = store.get(&key).await.unwrap().expect("variant stored");
        assert_eq!(stored.body.to_vec(), body);
        let master_etag = store.head(MASTER).await.unwrap().unwrap().etag;
        assert_eq!(stored.head.meta.metadata[SOURCE_ETAG], master_etag);
        assert_eq!(header_of(&response, "etag"), stored.head.etag);

        let (again, handled) = handle_function_url_request(&origin, event, None).await;
        assert_eq!(body_bytes(&again).unwrap(), body);
        assert_eq!(handled.record.outcome, "reused");
    }

    #[tokio::test]
    async fn names_the_origin_would_not_give_are_404_and_store_nothing() {
        let store = store_with_master().await;
        let origin = origin(&store, INLINE_MAX_BYTES);
        let older = variant_path("w=512&fmt=webp", "webp").replacen(
            &format!("/v{TRANSFORM_VERSION}/"),
            &format!("/v{}/", TRANSFORM_VERSION + 1),
            1,
        );
        for path in [
            variant_path("fmt=webp&w=512", "webp"), // not canonical order
            variant_path("w=512&fmt=webp", "png"),  // not its output's extension
            variant_path("w=512&fmt=webp&q=80", "webp"), // a default spelled out
            variant_path("w=0", "png"),             // no valid query at all
            variant_path("fmt=png", "png"),         // the master itself
            older,
        ] {
            let (response, handled) =
                handle_function_url_request(&origin, miss(&path, None), None).await;
            assert_eq!(response.status_code, 404, "{path}");
            assert_eq!(body_json(&response)["error"], "not_found", "{path}");
            assert_eq!(header_of(&response, "cache-control"), "public, max-age=60");
            assert_eq!(handled.record.outcome, "not_found");
        }
        assert_eq!(
            store.list("_variants/").await.unwrap(),
            Vec::<String>::new()
        );
    }

    #[tokio::test]
    async fn the_documented_request_is_a_json_400_not_a_panic() {
        let store = store_with_master().await;
        let origin = origin(&store, INLINE_MAX_BYTES);
        let (response, handled) =
            handle_function_url_request(&origin, fixture("aws-request.json"), None).await;
        assert_eq!(response.status_code, 400);
        assert_eq!(body_json(&response)["error"], "invalid_key");
        assert_eq!(header_of(&response, "content-type"), "application/json");
        assert_eq!(handled.record.status, 400);
    }

    #[tokio::test]
    async fn the_policy_is_checked_again_here() {
        let store = store_with_master().await;
        let policy = Policy::from_value(serde_json::json!({"widths": [256]})).unwrap();
        let origin = origin(&store, INLINE_MAX_BYTES).with_policy(Some(policy));
        // Below every allowed width (times any dpr, which the canonical form folded in).
        let outside = miss(&variant_path("w=100&fmt=webp", "webp"), None);
        let (response, _) = handle_function_url_request(&origin, outside, None).await;
        assert_eq!(response.status_code, 400);
        let body = body_json(&response);
        assert_eq!(
            (body["error"].as_str(), body["param"].as_str()),
            (Some("invalid_parameter"), Some("w"))
        );
        let allowed = miss(&variant_path("w=256", "png"), None);
        let (response, _) = handle_function_url_request(&origin, allowed, None).await;
        assert_eq!(response.status_code, 200);
    }

    #[tokio::test]
    async fn a_master_missing_from_the_bucket_is_a_json_404_and_one_that_arrived_is_served() {
        let store = store_with_master().await;
        let origin = origin(&store, INLINE_MAX_BYTES);
        let (response, handled) =
            handle_function_url_request(&origin, miss("/outputs/none.png", None), None).await;
        assert_eq!(response.status_code, 404);
        assert_eq!(body_json(&response)["error"], "not_found");
        assert_eq!(handled.record.outcome, "not_found");

        let path = format!("/{MASTER}");
        let (response, handled) =
            handle_function_url_request(&origin, miss(&path, None), None).await;
        assert_eq!(response.status_code, 200);
        assert_eq!(body_bytes(&response).unwrap(), png(640, 480).to_vec());
        assert_eq!(header_of(&response, "content-type"), "image/png");
        assert_eq!(
            header_of(&response, "cache-control"),
            "public, max-age=86400"
        );
        assert_eq!(handled.record.outcome, "master");
        assert_eq!(
            store.list("_variants/").await.unwrap(),
            Vec::<String>::new()
        );
    }

    #[tokio::test]
    async fn a_variant_too_large_to_answer_is_stored_and_the_viewer_sent_back() {
        let store = store_with_master().await;
        let origin = origin(&store, 10);
        let viewer = "/outputs/2025-02-01/image_001.png?fmt=webp&w=512&sig=abc";
        let path = variant_path("w=512&fmt=webp", "webp");
        let (response, handled) =
            handle_function_url_request(&origin, miss(&path, Some(viewer)), None).await;
        assert_eq!(response.status_code, 302);
        assert_eq!(header_of(&response, "location"), viewer);
        assert_eq!(header_of(&response, "cache-control"), "no-store");
        assert_eq!(response.body, None);
        assert_eq!(handled.record.status, 302);
        assert_eq!(handled.record.outcome, "built");
        assert!(store
            .head(&key_from_uri(&path).unwrap())
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn a_large_request_beyond_the_master_is_stored_under_the_name_asked_for() {
        // 640×480 master: w=4000 renders what w=640 does and is stored under w=640; the
        // bucket must also answer the name the viewer-request function gives, or the viewer
        // would be sent back here for ever.
        let store = store_with_master().await;
        let origin = origin(&store, 10);
        let path = variant_path("w=4000", "png");
        let (response, _) = handle_function_url_request(&origin, miss(&path, None), None).await;
        assert_eq!(response.status_code, 302);
        let clamped = store
            .get(&key_from_uri(&variant_path("w=640", "png")).unwrap())
            .await
            .unwrap()
            .expect("stored under the clamped key");
        let named = store
            .get(&key_from_uri(&path).unwrap())
            .await
            .unwrap()
            .expect("and under the name asked for");
        assert_eq!(named.body, clamped.body);
        assert_eq!(named.head.meta, clamped.head.meta);
        // Without the viewer's URL (signing off), the canonical URL of the request.
        assert_eq!(
            header_of(&response, "location"),
            format!("/{MASTER}?w=4000")
        );
    }

    #[tokio::test]
    async fn a_viewer_url_header_cannot_send_viewers_elsewhere() {
        let store = store_with_master().await;
        let origin = origin(&store, 10);
        let path = variant_path("w=300", "png");
        for forged in [
            "//evil.example/outputs/2025-02-01/image_001.png",
            "https://evil.example/outputs/2025-02-01/image_001.png",
            "/outputs/other.png?w=300",
            "/outputs/2025-02-01/image_001.png?w=300\u{7f}",
        ] {
            let Ok(_) = HeaderValue::from_str(forged) else {
                continue;
            };
            let (response, _) =
                handle_function_url_request(&origin, miss(&path, Some(forged)), None).await;
            assert_eq!(
                header_of(&response, "location"),
                format!("/{MASTER}?w=300"),
                "{forged}"
            );
        }
    }
}

//! CloudFront origin-request events: any JSON either fails to decode (serde's error) or
//! decodes to an event that re-encodes to itself, and the one handler answers it with a
//! rewritten request (to the master itself, whose absence S3 answers, or to a variant that
//! exists), or a generated response with a status and a JSON body; a 500 only for an event
//! with no records. The same event asked twice gets
//! the same answer (the second from the stored variant).
//!
//! Input: the event's JSON. The bucket (in memory, fresh for each input) holds three small
//! masters: `outputs/2025-02-01/image_001.png` (the key of the checked-in fixtures),
//! `photos/cat.jpg` and `photos/dog.webp`.
#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use edge::cloudfront::{
    handle_origin_request, key_from_uri, OriginRequestEvent, OriginRequestOutput,
};
use edge::key::{MasterKey, VARIANTS_PREFIX};
use edge::service::Origin;
use edge::store::{MemStore, ObjectMeta, PutOptions, Store};
use edge::transform::Limits;
use imgedge_fuzz::{limit_heap, TEXT_HEAP_LIMIT};
use libfuzzer_sys::fuzz_target;

struct Setup {
    runtime: tokio::runtime::Runtime,
    masters: Vec<(&'static str, &'static str, Bytes)>,
}

fn master(format: image::ImageFormat) -> Bytes {
    let img = image::RgbaImage::from_fn(24, 16, |x, y| {
        image::Rgba([
            (x * 10) as u8,
            (y * 15) as u8,
            128,
            if x < 4 { 90 } else { 255 },
        ])
    });
    let img = match format {
        image::ImageFormat::Jpeg => {
            image::DynamicImage::ImageRgb8(image::DynamicImage::ImageRgba8(img).to_rgb8())
        }
        _ => image::DynamicImage::ImageRgba8(img),
    };
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode a master");
    Bytes::from(out.into_inner())
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| Setup {
        runtime: tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime"),
        masters: vec![
            (
                "outputs/2025-02-01/image_001.png",
                "image/png",
                master(image::ImageFormat::Png),
            ),
            (
                "photos/cat.jpg",
                "image/jpeg",
                master(image::ImageFormat::Jpeg),
            ),
            (
                "photos/dog.webp",
                "image/webp",
                master(image::ImageFormat::WebP),
            ),
        ],
    })
}

fuzz_target!(|data: &[u8]| {
    limit_heap(TEXT_HEAP_LIMIT);
    let Ok(event) = serde_json::from_slice::<OriginRequestEvent>(data) else {
        return;
    };
    let json = serde_json::to_vec(&event).expect("an event encodes");
    let again: OriginRequestEvent = serde_json::from_slice(&json).expect("re-decodes");
    assert_eq!(again, event);

    let setup = setup();
    setup.runtime.block_on(async {
        let store = Arc::new(MemStore::new());
        for (key, content_type, body) in &setup.masters {
            let meta = ObjectMeta {
                content_type: Some(content_type.to_string()),
                ..Default::default()
            };
            let opts = PutOptions {
                meta,
                if_none_match: false,
            };
            store
                .put(key, body.clone(), opts)
                .await
                .expect("put a master");
        }
        let origin = Origin::new(store.clone(), Limits::default());
        let no_records = event.records.is_empty();
        let asked = event.records.first().map(|r| r.cf.request.uri.clone());
        let (first, _) = handle_origin_request(&origin, event.clone()).await;
        match &first {
            OriginRequestOutput::Request(request) => {
                assert!(request.querystring.is_empty(), "{request:?}");
                let key = key_from_uri(&request.uri).expect("a rewritten uri names a key");
                let master = MasterKey::from_uri(asked.as_deref().unwrap_or_default())
                    .expect("a request is forwarded only for a valid key");
                if key != master.as_str() {
                    assert!(key.starts_with(VARIANTS_PREFIX), "{key:?}");
                    let head = store.head(&key).await.expect("memory store");
                    assert!(
                        head.is_some(),
                        "the request goes to {key:?}, which does not exist"
                    );
                }
            }
            OriginRequestOutput::Response(response) => {
                let status: u16 = response.status.parse().expect("a numeric status");
                assert!((200..600).contains(&status), "{response:?}");
                assert_eq!(status == 500, no_records, "{response:?}");
                let body = response
                    .body_bytes()
                    .expect("a generated response has a body");
                if status != 200 {
                    let body: serde_json::Value =
                        serde_json::from_slice(&body).expect("an error body is JSON");
                    assert!(body["error"].is_string(), "{body}");
                }
                assert!(
                    response.headers.contains_key("cache-control"),
                    "{response:?}"
                );
            }
        }
        let (second, _) = handle_origin_request(&origin, event).await;
        assert_eq!(first, second, "the same event, answered twice");
    });
    imgedge_fuzz::report_peak();
});

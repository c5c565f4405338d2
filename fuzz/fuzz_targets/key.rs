//! Master key validation: any URI path is a key that obeys the safety rules and
//! round-trips through its URI, or a 400 `invalid_key` / 404 for the variants prefix.
//!
//! Input: the URI path as CloudFront gives it (percent-encoded, leading `/`).
#![no_main]

use edge::cloudfront::key_from_uri;
use edge::key::{key_to_uri, MasterKey, MAX_KEY_BYTES, TRANSFORM_VERSION, VARIANTS_PREFIX};
use edge::spec::Format;
use edge::ErrorKind;
use imgedge_fuzz::{expect_kind, limit_heap, TEXT_HEAP_LIMIT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    limit_heap(TEXT_HEAP_LIMIT);
    let uri = String::from_utf8_lossy(data);
    let key = match MasterKey::from_uri(&uri) {
        Ok(key) => key,
        Err(e) => {
            expect_kind(
                &e,
                &[ErrorKind::InvalidKey, ErrorKind::NotFound],
                "from_uri",
            );
            return;
        }
    };
    let k = key.as_str();
    assert!(!k.is_empty() && k.len() <= MAX_KEY_BYTES, "{k:?}");
    assert!(!k.starts_with(VARIANTS_PREFIX), "{k:?}");
    assert!(
        !k.contains("//") && !k.ends_with('/') && !k.starts_with('/'),
        "{k:?}"
    );
    assert!(
        k.split('/').all(|s| s != "." && s != ".."),
        "{k:?} has a dot segment"
    );
    assert!(!k.chars().any(|c| c.is_control() || c == '\\'), "{k:?}");
    let format = key.format();
    assert!(matches!(format, Format::Png | Format::Jpeg | Format::Webp));

    // One key, one URI: the URI we write for it (a rewrite, a redirect) names it again.
    let written = key_to_uri(k);
    assert_eq!(
        MasterKey::from_uri(&written).as_ref(),
        Ok(&key),
        "{written:?}"
    );
    assert_eq!(key_from_uri(&written).as_deref(), Some(k));

    let variant = key.variant_key("w=1", Format::Webp);
    let prefix = format!("{VARIANTS_PREFIX}v{TRANSFORM_VERSION}/{k}/");
    assert!(variant.starts_with(&prefix) && variant.ends_with("w=1.webp"));
    assert!(key.failure_marker_key().starts_with(&prefix));
});

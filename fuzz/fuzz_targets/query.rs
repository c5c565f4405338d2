//! The URL API's query parser: any query parses to a spec or a 400 naming a parameter,
//! and a spec's canonical query parses back to the same spec (the cache key is stable).
//!
//! Input lines: master format (`png`, `jpeg`, `webp`; anything else is png), the `Accept`
//! header (empty = none), the raw query.
#![no_main]

use edge::spec::{asks_for_auto, Format, VariantSpec, MAX_DIMENSION, MAX_QUERY_BYTES};
use edge::ErrorKind;
use imgedge_fuzz::{expect_kind, fields, limit_heap, optional, TEXT_HEAP_LIMIT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    limit_heap(TEXT_HEAP_LIMIT);
    let f = fields(data, 3);
    let master = match f[0].as_str() {
        "jpeg" | "jpg" => Format::Jpeg,
        "webp" => Format::Webp,
        _ => Format::Png,
    };
    let (accept, query) = (optional(&f[1]), f[2].as_str());
    let _ = asks_for_auto(query);
    let spec = match VariantSpec::parse(query, master, accept) {
        Ok(spec) => spec,
        Err(e) => {
            expect_kind(&e, &[ErrorKind::InvalidParameter], "parse");
            assert!(
                e.param.is_some(),
                "a 400 names its parameter: {}",
                e.to_json()
            );
            return;
        }
    };
    for side in [spec.width, spec.height].into_iter().flatten() {
        assert!((1..=MAX_DIMENSION).contains(&side), "{spec:?}");
    }
    assert_eq!(
        spec.fit.is_some(),
        spec.width.is_some() && spec.height.is_some()
    );
    assert_eq!(spec.master_format, master);

    let canonical = spec.to_query();
    assert!(canonical.len() <= MAX_QUERY_BYTES);
    assert!(
        canonical
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'=' || b == b'&'),
        "canonical query {canonical:?}"
    );
    // The canonical form needs no Accept (auto is resolved) and is its own canonical form.
    let again = VariantSpec::parse(&canonical, master, None).unwrap_or_else(|e| {
        panic!(
            "canonical {canonical:?} of {query:?} fails: {}",
            e.to_json()
        )
    });
    assert_eq!(again, spec, "{query:?} → {canonical:?}");
    assert_eq!(again.to_query(), canonical);
    assert_eq!(spec.is_identity(), canonical.is_empty());
});

//! The contract of [`Store`], as executable assertions. Every store runs the same suite:
//! `MemStore` and `FsStore` in unit tests, `S3Store` against an S3-protocol server in
//! `tests/tests/s3_store.rs`.
//!
//! Each case works under its own `conformance/<case>/` prefix and clears it first, so
//! the suite can run on a bucket that holds other objects. Failures panic (assertions).

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::{stream, StreamExt, TryStreamExt};

use super::{content_etag, ObjectMeta, PutOptions, PutOutcome, Store};

/// Every case, in order.
pub async fn run(store: &dyn Store) {
    missing(store).await;
    put_get_head(store).await;
    overwrite(store).await;
    if_none_match(store).await;
    if_none_match_race(store).await;
    list_prefix(store).await;
    delete_prefix(store).await;
    odd_keys(store).await;
    empty_body(store).await;
    many_keys(store).await;
    get_small(store).await;
    get_first_bytes(store).await;
}

/// `get_first_bytes`: exactly the first `n` bytes, all of a shorter object, `None` when
/// missing, and an empty object works.
async fn get_first_bytes(store: &dyn Store) {
    let ns = fresh_namespace(store, "get-first-bytes").await;
    let key = format!("{ns}m.png");
    let body: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 253) as u8).collect();
    put(store, &key, &body, meta("image/png", None, &[])).await;
    for n in [1u64, 16, 999, 1000, 4096] {
        let got = store
            .get_first_bytes(&key, n)
            .await
            .unwrap()
            .expect("present");
        assert_eq!(&got[..], &body[..(n as usize).min(1000)], "n {n}");
    }
    assert!(store
        .get_first_bytes(&format!("{ns}missing.png"), 16)
        .await
        .unwrap()
        .is_none());
    let empty = format!("{ns}empty.png");
    put(store, &empty, b"", meta("image/png", None, &[])).await;
    let got = store
        .get_first_bytes(&empty, 16)
        .await
        .unwrap()
        .expect("present");
    assert!(got.is_empty());
}

/// `get_small`: the body exactly when it fits (limit equal to the size included), the
/// whole object's head either way, `None` when missing, and an empty object works.
async fn get_small(store: &dyn Store) {
    let ns = fresh_namespace(store, "get-small").await;
    let m = meta(
        "image/webp",
        Some("public, max-age=1"),
        &[("source-etag", "\"abc\"")],
    );
    let key = format!("{ns}v.webp");
    let body: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
    put(store, &key, &body, m.clone()).await;
    let etag = store.head(&key).await.unwrap().unwrap().etag;
    for (limit, whole) in [(999, false), (1000, true), (5000, true), (10, false)] {
        let got = store
            .get_small(&key, limit)
            .await
            .unwrap_or_else(|e| panic!("get_small {limit}: {e}"))
            .expect("present");
        assert_eq!(
            got.head.size, 1000,
            "limit {limit}: the whole object's size"
        );
        assert_eq!(got.head.etag, etag, "limit {limit}");
        assert_eq!(got.head.meta, m, "limit {limit}");
        match got.body {
            Some(b) => {
                assert!(whole, "limit {limit}: no body expected");
                assert_eq!(&b[..], &body[..], "limit {limit}");
            }
            None => assert!(!whole, "limit {limit}: the body fits"),
        }
    }
    assert!(store
        .get_small(&format!("{ns}missing.webp"), 10)
        .await
        .unwrap()
        .is_none());
    let empty = format!("{ns}empty.webp");
    put(store, &empty, b"", m).await;
    let got = store.get_small(&empty, 10).await.unwrap().expect("present");
    assert_eq!((got.head.size, got.body.as_deref()), (0, Some(&b""[..])));
}

async fn fresh_namespace(store: &dyn Store, case: &str) -> String {
    let ns = format!("conformance/{case}/");
    store.delete_prefix(&ns).await.expect("clearing namespace");
    ns
}

fn meta(content_type: &str, cache_control: Option<&str>, pairs: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        content_type: Some(content_type.to_string()),
        cache_control: cache_control.map(str::to_string),
        metadata: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

async fn put(store: &dyn Store, key: &str, body: &[u8], meta: ObjectMeta) -> PutOutcome {
    store
        .put(
            key,
            Bytes::copy_from_slice(body),
            PutOptions {
                meta,
                if_none_match: false,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("put {key:?}: {e}"))
}

async fn put_if_absent(store: &dyn Store, key: &str, body: &[u8], meta: ObjectMeta) -> PutOutcome {
    store
        .put(
            key,
            Bytes::copy_from_slice(body),
            PutOptions {
                meta,
                if_none_match: true,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("conditional put {key:?}: {e}"))
}

/// get and head of the key agree with each other and with `body` / `meta`.
async fn assert_object(store: &dyn Store, key: &str, body: &[u8], meta: &ObjectMeta) {
    let got = store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get {key:?}: {e}"))
        .unwrap_or_else(|| panic!("get {key:?}: missing"));
    assert_eq!(&got.body[..], body, "body of {key:?}");
    assert_eq!(got.head.etag, content_etag(body), "etag of {key:?}");
    assert_eq!(got.head.size, body.len() as u64, "size of {key:?}");
    assert_eq!(&got.head.meta, meta, "meta of {key:?}");
    let head = store
        .head(key)
        .await
        .unwrap_or_else(|e| panic!("head {key:?}: {e}"))
        .unwrap_or_else(|| panic!("head {key:?}: missing"));
    assert_eq!(head, got.head, "head and get of {key:?} disagree");
}

/// Missing keys are `None`, not errors; an empty prefix lists nothing.
pub async fn missing(store: &dyn Store) {
    let ns = fresh_namespace(store, "missing").await;
    let key = format!("{ns}nothing-here.png");
    assert!(
        store.get(&key).await.unwrap().is_none(),
        "get of a missing key"
    );
    assert!(
        store.head(&key).await.unwrap().is_none(),
        "head of a missing key"
    );
    assert_eq!(store.list(&ns).await.unwrap(), Vec::<String>::new());
    assert_eq!(store.delete_prefix(&ns).await.unwrap(), 0);
}

/// A put is read back whole: bytes, quoted MD5 ETag, size, headers and user metadata.
pub async fn put_get_head(store: &dyn Store) {
    let ns = fresh_namespace(store, "put-get-head").await;
    let key = format!("{ns}outputs/2025-02-01/image_001.png");
    let body = b"\x89PNG\r\n\x1a\n not really a png, but bytes are bytes \x00\xff";
    let m = meta(
        "image/png",
        Some("public, max-age=31536000, immutable"),
        &[("source-etag", "\"abc123\""), ("width", "512")],
    );
    let outcome = put(store, &key, body, m.clone()).await;
    let etag = content_etag(body);
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() == 34);
    assert_eq!(outcome, PutOutcome::Written { etag });
    assert_object(store, &key, body, &m).await;

    // Without headers nothing is invented, except that a store may default the type.
    let bare = format!("{ns}bare.bin");
    put(store, &bare, b"bare", ObjectMeta::default()).await;
    let head = store.head(&bare).await.unwrap().expect("bare object");
    assert_eq!(head.meta.cache_control, None);
    assert_eq!(head.meta.metadata, BTreeMap::new());
    assert_eq!(head.etag, content_etag(b"bare"));
}

/// A second put replaces body, ETag and every header, also dropping old metadata.
pub async fn overwrite(store: &dyn Store) {
    let ns = fresh_namespace(store, "overwrite").await;
    let key = format!("{ns}a.webp");
    let first = meta(
        "image/webp",
        Some("no-cache"),
        &[("source-etag", "\"one\"")],
    );
    put(store, &key, b"first version", first).await;
    let second = meta("image/png", None, &[("width", "7")]);
    let outcome = put(store, &key, b"second, longer version", second.clone()).await;
    assert_eq!(
        outcome,
        PutOutcome::Written {
            etag: content_etag(b"second, longer version")
        }
    );
    assert_object(store, &key, b"second, longer version", &second).await;
    assert_eq!(store.list(&ns).await.unwrap(), vec![key]);
}

/// `if_none_match` writes a new key, and refuses an existing one leaving it untouched.
pub async fn if_none_match(store: &dyn Store) {
    let ns = fresh_namespace(store, "if-none-match").await;
    let key = format!("{ns}v.webp");
    let m = meta("image/webp", None, &[("source-etag", "\"winner\"")]);
    assert_eq!(
        put_if_absent(store, &key, b"winner", m.clone()).await,
        PutOutcome::Written {
            etag: content_etag(b"winner")
        }
    );
    let other = meta(
        "image/png",
        Some("no-store"),
        &[("source-etag", "\"loser\"")],
    );
    assert_eq!(
        put_if_absent(store, &key, b"loser", other).await,
        PutOutcome::AlreadyExists
    );
    assert_object(store, &key, b"winner", &m).await;
}

/// 16 concurrent conditional puts of different bodies: exactly one wins, and the stored
/// object is the winner's, whole.
pub async fn if_none_match_race(store: &dyn Store) {
    let ns = fresh_namespace(store, "race").await;
    let key = format!("{ns}_variants/v1/m.png/w=512,fmt=webp.webp");
    let bodies: Vec<Vec<u8>> = (0..16)
        .map(|i| format!("body of writer {i} ").repeat(100 + i).into_bytes())
        .collect();
    let outcomes = futures_util::future::join_all(bodies.iter().enumerate().map(|(i, body)| {
        let m = meta("image/webp", None, &[("writer", &i.to_string())]);
        put_if_absent(store, &key, body, m)
    }))
    .await;
    let winners: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o, PutOutcome::Written { .. }))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one writer wins: {outcomes:?}");
    let w = winners[0];
    assert_eq!(
        outcomes[w],
        PutOutcome::Written {
            etag: content_etag(&bodies[w])
        }
    );
    for (i, o) in outcomes.iter().enumerate() {
        if i != w {
            assert_eq!(o, &PutOutcome::AlreadyExists, "writer {i}");
        }
    }
    let m = meta("image/webp", None, &[("writer", &w.to_string())]);
    assert_object(store, &key, &bodies[w], &m).await;
}

/// `list` is a plain string prefix (as in S3), sorted by bytes, never outside the prefix.
pub async fn list_prefix(store: &dyn Store) {
    let ns = fresh_namespace(store, "list").await;
    // Written out of order on purpose.
    let keys = [
        "outputs/ab.png",
        "outputs/a/b.png",
        "outputs/a.png",
        "outputs/b.png",
        "outputsX.png",
        "other/a.png",
    ];
    for k in keys {
        put(
            store,
            &format!("{ns}{k}"),
            k.as_bytes(),
            ObjectMeta::default(),
        )
        .await;
    }
    let list = |p: &str| {
        let p = format!("{ns}{p}");
        async move { store.list(&p).await.unwrap() }
    };
    let full = |ks: &[&str]| ks.iter().map(|k| format!("{ns}{k}")).collect::<Vec<_>>();
    // '.' (0x2e) < '/' (0x2f) < 'b': byte order, not path order.
    assert_eq!(
        list("outputs/a").await,
        full(&["outputs/a.png", "outputs/a/b.png", "outputs/ab.png"])
    );
    assert_eq!(list("outputs/a/").await, full(&["outputs/a/b.png"]));
    assert_eq!(
        list("outputs").await,
        full(&[
            "outputs/a.png",
            "outputs/a/b.png",
            "outputs/ab.png",
            "outputs/b.png",
            "outputsX.png"
        ])
    );
    assert_eq!(
        list("").await,
        full(&[
            "other/a.png",
            "outputs/a.png",
            "outputs/a/b.png",
            "outputs/ab.png",
            "outputs/b.png",
            "outputsX.png"
        ])
    );
    assert_eq!(list("outputs/c").await, Vec::<String>::new());
    assert_eq!(list("nowhere/").await, Vec::<String>::new());
}

/// `delete_prefix` deletes exactly the listed keys and counts them.
pub async fn delete_prefix(store: &dyn Store) {
    let ns = fresh_namespace(store, "delete").await;
    let keys = [
        "_variants/v1/a.png/w=1.png",
        "_variants/v1/a.png/w=2.png",
        "_variants/v1/a.png2/w=1.png",
        "a.png",
    ];
    for k in keys {
        put(store, &format!("{ns}{k}"), b"x", ObjectMeta::default()).await;
    }
    assert_eq!(
        store
            .delete_prefix(&format!("{ns}_variants/v1/a.png/"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store.list(&ns).await.unwrap(),
        vec![
            format!("{ns}_variants/v1/a.png2/w=1.png"),
            format!("{ns}a.png")
        ]
    );
    assert!(store
        .get(&format!("{ns}_variants/v1/a.png/w=1.png"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .delete_prefix(&format!("{ns}_variants/v1/a.png/"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.delete_prefix(&ns).await.unwrap(), 2);
    assert_eq!(store.list(&ns).await.unwrap(), Vec::<String>::new());
}

/// Keys as users and variant keys spell them: spaces, Unicode, `=`, `,`, `+`, `%`, `&`.
pub async fn odd_keys(store: &dyn Store) {
    let ns = fresh_namespace(store, "odd-keys").await;
    let mut keys: Vec<String> = [
        "_variants/v1/outputs/2025-02-01/image_001.png/w=512,fmt=webp.webp",
        "photos/my holiday (1).png",
        "фото/日本語 ✓.png",
        "a+b%20c&d=e;f.png",
        "tilde~and'quote.jpg",
    ]
    .iter()
    .map(|k| format!("{ns}{k}"))
    .collect();
    for (i, key) in keys.iter().enumerate() {
        let m = meta("image/png", None, &[("n", &i.to_string())]);
        put(store, key, key.as_bytes(), m).await;
    }
    for (i, key) in keys.iter().enumerate() {
        let m = meta("image/png", None, &[("n", &i.to_string())]);
        assert_object(store, key, key.as_bytes(), &m).await;
    }
    keys.sort();
    assert_eq!(store.list(&ns).await.unwrap(), keys);
    assert_eq!(store.delete_prefix(&ns).await.unwrap(), keys.len());
    for key in &keys {
        assert!(store.head(key).await.unwrap().is_none(), "{key:?} deleted");
    }
}

/// A zero-byte object is an object (a truncated master must reach the decoder as such).
pub async fn empty_body(store: &dyn Store) {
    let ns = fresh_namespace(store, "empty").await;
    let key = format!("{ns}zero.png");
    let m = meta("image/png", None, &[]);
    put(store, &key, b"", m.clone()).await;
    assert_object(store, &key, b"", &m).await;
    assert_eq!(
        store.head(&key).await.unwrap().unwrap().etag,
        "\"d41d8cd98f00b204e9800998ecf8427e\""
    );
}

/// More keys than one S3 list page (1000) or one DeleteObjects batch (1000).
pub async fn many_keys(store: &dyn Store) {
    const N: usize = 1100;
    let ns = fresh_namespace(store, "many").await;
    let mut keys: Vec<String> = (0..N).map(|i| format!("{ns}k/{i}.png")).collect();
    stream::iter(keys.iter())
        .map(|key| async move {
            store
                .put(key, Bytes::from_static(b"."), PutOptions::default())
                .await
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("writing many keys");
    keys.sort();
    assert_eq!(store.list(&ns).await.unwrap(), keys);
    assert_eq!(store.delete_prefix(&ns).await.unwrap(), N);
    assert_eq!(store.list(&ns).await.unwrap(), Vec::<String>::new());
}

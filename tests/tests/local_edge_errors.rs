//! `edge serve` end to end, every error row of DESIGN.md §3 over HTTP: the JSON body,
//! Cache-Control, edge caching of errors, key traversal attempts, and that no error
//! ever leaves a variant object in the bucket.

mod common;

use std::time::{Duration, Instant};

use common::*;
use image::ImageFormat;
use imgedge_tests::{free_port, local_aws_env};
use reqwest::Method;

fn store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    put(
        dir.path(),
        "landscape.png",
        &gradient(400, 300, ImageFormat::Png),
    );
    dir
}

#[test]
fn bad_keys_and_queries_are_400_with_a_json_body() {
    let dir = store();
    let edge = EdgeServer::start(dir.path(), &[]);
    let keys = [
        "/notes.txt",
        "/landscape.PNG",
        "/landscape",
        "/a//b.png",
        "/dir/",
        "/%FF.png",
        "/%2e%2e/landscape.png",
        "/x/%2E/landscape.png",
        "/a%5Cb.png",
        "/a%00b.png",
        "/a%0Ab.png",
    ];
    for path in keys {
        let reply = edge.raw_get(path);
        let body = assert_error(&reply, 400, "invalid_key", path);
        assert!(body.get("param").is_none(), "{path}: {body}");
    }
    let long = format!("/{}.png", "a".repeat(1100));
    assert_error(&edge.get(&long), 400, "invalid_key", "long key");

    let queries = [
        ("w=0", "w"),
        ("w=8193", "w"),
        ("w=05", "w"),
        ("w=%2B5", "w"),
        ("w=5.0", "w"),
        ("w=", "w"),
        ("w=5&w=6", "w"),
        ("W=5", "W"),
        ("zoom=2", "zoom"),
        ("h=-1", "h"),
        ("w=10&fit=cover", "fit"),
        ("w=10&h=10&fit=crop", "fit"),
        ("dpr=2", "dpr"),
        ("w=10&dpr=4.001", "dpr"),
        ("w=5000&dpr=2", "w|dpr"),
        ("w=10&fmt=gif", "fmt"),
        ("w=10&fmt=WEBP", "fmt"),
        ("w=10&fmt=heic", "fmt"),
        ("w=10&q=101", "q"),
        ("w=10&q=50", "q"),
        ("w=10&fmt=png&q=50", "q"),
        ("w=10&h=10&fit=contain&bg=red", "bg"),
    ];
    for (query, param) in queries {
        let url = format!("/landscape.png?{query}");
        let body = assert_error(&edge.get(&url), 400, "invalid_parameter", &url);
        let named = body["param"].as_str().unwrap_or("");
        assert!(param.split('|').any(|p| p == named), "{url}: {body}");
    }
    let too_long = format!("/landscape.png?w=10&{}", "x".repeat(2100));
    let body = assert_error(&edge.get(&too_long), 400, "invalid_parameter", "long query");
    assert_eq!(body["param"], "query");
    // Key errors come first: a bad key with a bad query is still a key error.
    assert_error(
        &edge.get("/notes.txt?w=0"),
        400,
        "invalid_key",
        "key before query",
    );
    assert!(edge.variant_objects().is_empty());
}

#[test]
fn missing_masters_and_the_variants_prefix_are_404() {
    let dir = store();
    let edge = EdgeServer::start(dir.path(), &[]);
    edge.get("/landscape.png?w=64"); // puts a real variant in the bucket
    let variant = "/_variants/v2/landscape.png/w=64.png";
    assert!(dir.path().join(&variant[1..]).exists());
    // Valid keys the filesystem bucket cannot hold: a segment over 255 bytes (the key limit
    // is 1024), names of the store's own files.
    let long = format!("/outputs/{}.png", "a".repeat(300));
    let long_query = format!("{long}?w=10");
    for path in [
        "/missing.png",
        "/missing.png?w=100&fmt=webp",
        "/deep/er/missing.jpg?w=10",
        variant,
        "/%5Fvariants/v2/landscape.png/w=64.png",
        "/_variants/v2/landscape.png/w=64.png?w=10",
        &long,
        &long_query,
        "/.imgedge-meta/objects/landscape.png",
        "/.imgedge-meta/objects/landscape.png?w=10",
    ] {
        assert_error(&edge.get(path), 404, "not_found", path);
    }
    // Order of checks: a bad query on a missing master is 400, not 404.
    assert_error(
        &edge.get("/missing.png?w=0"),
        400,
        "invalid_parameter",
        "query first",
    );
    assert_eq!(edge.variant_objects().len(), 1);
}

#[test]
fn undecodable_masters_are_415() {
    let dir = store();
    let png = gradient(300, 200, ImageFormat::Png);
    put(dir.path(), "corrupt.png", &{
        let mut bad = png.clone();
        for b in bad.iter_mut().skip(60).step_by(7) {
            *b ^= 0x5a;
        }
        bad
    });
    put(dir.path(), "truncated.png", &png[..png.len() / 2]);
    put(dir.path(), "empty.png", b"");
    put(dir.path(), "text.jpg", b"this is not a jpeg at all");
    put(
        dir.path(),
        "random.webp",
        &(0..4096u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    );
    let edge = EdgeServer::start(dir.path(), &[]);
    for path in [
        "/corrupt.png",
        "/truncated.png",
        "/empty.png",
        "/text.jpg",
        "/random.webp",
    ] {
        let url = format!("{path}?w=100&fmt=webp");
        assert_error(&edge.get(&url), 415, "unsupported_image", &url);
        // Cached like any 4xx.
        assert_eq!(edge.get(&url).x_cache(), "Hit from imgedge", "{url}");
    }
    assert!(edge.variant_objects().is_empty());
}

#[test]
fn a_decompression_bomb_is_422_fast() {
    let dir = store();
    let bomb = png_bomb(100_000, 100_000);
    assert!(bomb.len() < 100);
    put(dir.path(), "bomb.png", &bomb);
    let edge = EdgeServer::start(dir.path(), &[]);
    let started = Instant::now();
    let reply = edge.get("/bomb.png?w=100");
    let elapsed = started.elapsed();
    let body = assert_error(&reply, 422, "image_too_large", "bomb");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert!(
        body["message"].as_str().unwrap().contains("100000"),
        "{body}"
    );
    assert!(edge.variant_objects().is_empty());
}

#[test]
fn limits_are_configuration() {
    let dir = store();
    put(
        dir.path(),
        "small.png",
        &gradient(100, 100, ImageFormat::Png),
    );
    // 400×300 = 120000 pixels > 50000; the 100×100 master fits.
    let edge = EdgeServer::start(dir.path(), &["--max-pixels", "50000"]);
    assert_error(
        &edge.get("/landscape.png?w=10"),
        422,
        "image_too_large",
        "pixels",
    );
    assert_eq!(edge.get("/small.png?w=10").status, 200);
    drop(edge);

    let size = std::fs::metadata(dir.path().join("landscape.png"))
        .unwrap()
        .len();
    let limit = (size - 1).to_string();
    // Not an image and over the byte limit too: readable comes first (415), told from its
    // first bytes.
    put(dir.path(), "notes.png", &vec![b'x'; size as usize]);
    let edge = EdgeServer::start_with(dir.path(), &[], &[("IMGEDGE_MAX_BYTES", limit)], false);
    assert_error(
        &edge.get("/landscape.png?w=11"),
        422,
        "image_too_large",
        "bytes",
    );
    assert_error(
        &edge.get("/notes.png?w=11"),
        415,
        "unsupported_image",
        "recognisable",
    );
    assert_eq!(edge.get("/small.png?w=11").status, 200);
    let variants = edge.variant_objects();
    assert_eq!(variants.len(), 2, "{variants:?}");
    assert!(variants
        .iter()
        .all(|v| v.starts_with(dir.path().join("_variants/v2/small.png"))));
    assert_eq!(
        edge.failure_markers().len(),
        2,
        "landscape.png's and notes.png's"
    );
}

#[test]
fn a_dead_s3_store_is_502_no_store_and_never_cached() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let edge = EdgeServer::start_s3(
        "s3://imgedge-test-bucket/masters",
        &[],
        &local_aws_env(&dead),
    );
    for url in ["/outputs/a.png?w=100", "/outputs/a.png"] {
        let started = Instant::now();
        let reply = edge.get(url);
        let body = assert_error(&reply, 502, "store_error", url);
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "{url}: {:?}",
            started.elapsed()
        );
        let message = body["message"].as_str().unwrap();
        assert!(!message.contains("127.0.0.1"), "no internals: {message}");
        assert_eq!(
            edge.get(url).x_cache(),
            "Miss from imgedge",
            "{url}: 5xx never cached"
        );
    }
    // The gallery reports the failure the same way.
    assert_error(&edge.get("/"), 502, "store_error", "gallery");
    // Key and query errors need no store.
    assert_error(&edge.get("/a.txt"), 400, "invalid_key", "key");
}

#[test]
fn an_unreadable_master_is_502() {
    let dir = store();
    // A symlink loop: the file system refuses to open it (ELOOP), even for root.
    std::os::unix::fs::symlink("loop.png", dir.path().join("loop.png")).unwrap();
    let edge = EdgeServer::start(dir.path(), &[]);
    let reply = edge.get("/loop.png?w=10");
    assert_error(&reply, 502, "store_error", "loop");
    assert!(edge.variant_objects().is_empty());
}

#[test]
fn traversal_and_odd_keys_never_read_outside_the_store() {
    let root = tempfile::tempdir().unwrap();
    let secret = gradient(64, 64, ImageFormat::Png);
    std::fs::write(root.path().join("secret.png"), &secret).unwrap();
    let store = root.path().join("bucket");
    put(&store, "inside/ok.png", &gradient(32, 32, ImageFormat::Png));
    let edge = EdgeServer::start(&store, &[]);
    let attempts = [
        "/../secret.png",
        "/inside/../../secret.png",
        "/%2e%2e/secret.png",
        "/%2E%2E/secret.png",
        "/..%2fsecret.png",
        "/..%2Fsecret.png",
        "/%2e%2e%2fsecret.png",
        "/inside/..%2f..%2fsecret.png",
        "/..%5csecret.png",
        "/%5c..%5csecret.png",
        "/%2F..%2Fsecret.png",
        "//secret.png",
        "/./../secret.png",
        "/%2e/%2e%2e/secret.png",
        "/%252e%252e/secret.png",
        "/..%00/secret.png",
        "/inside/ok.png/../../secret.png",
        &format!("/{}", root.path().join("secret.png").display()),
        &format!(
            "/%2F{}",
            root.path()
                .join("secret.png")
                .display()
                .to_string()
                .trim_start_matches('/')
        ),
    ];
    for attempt in attempts {
        for query in ["", "?w=10"] {
            let target = format!("{attempt}{query}");
            let reply = edge.raw_get(&target);
            assert!(
                reply.status == 400 || reply.status == 404,
                "{target}: {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
            assert_ne!(reply.body, secret, "{target}: leaked the secret");
            let body = reply.json();
            assert!(
                body["error"] == "invalid_key" || body["error"] == "not_found",
                "{target}: {body}"
            );
        }
    }
    // A raw backslash is not even a valid request target: refused before any handler.
    let reply = edge.raw_get("/..\\secret.png");
    assert!(
        reply.status == 400 || reply.status == 404,
        "{}",
        reply.status
    );
    assert_ne!(reply.body, secret);

    assert!(edge.variant_objects().is_empty());
    let mut outside: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    outside.sort();
    assert_eq!(
        outside,
        ["bucket", "secret.png"],
        "nothing written outside the store"
    );
    assert_eq!(edge.get("/inside/ok.png?w=10").status, 200);
}

#[test]
fn errors_are_cached_for_their_max_age_until_invalidated() {
    let dir = store();
    let edge = EdgeServer::start(dir.path(), &[]);
    let url = "/later.png?w=20";
    let first = edge.get(url);
    assert_error(&first, 404, "not_found", "first");
    assert_eq!(first.x_cache(), "Miss from imgedge");
    put(dir.path(), "later.png", &gradient(40, 40, ImageFormat::Png));
    // CloudFront keeps serving the cached 404 for its max-age=60 ...
    let cached = edge.get(url);
    assert_error(&cached, 404, "not_found", "cached");
    assert_eq!(cached.x_cache(), "Hit from imgedge");
    // ... unless invalidated.
    let inv = edge.request(
        Method::POST,
        "/_imgedge/invalidate?path=/later.png*",
        &[(edge::local::INVALIDATE_HEADER, "1")],
    );
    assert_eq!(inv.json()["invalidated"], 1);
    let fresh = edge.get(url);
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.dimensions(), (20, 20));

    // Errors never answer 304, whatever the If-None-Match.
    let reply = edge.get_with("/missing.png", &[("if-none-match", "*")]);
    assert_eq!(reply.status, 404);
}

#[test]
fn methods_other_than_get_and_head_are_405() {
    let dir = store();
    let edge = EdgeServer::start(dir.path(), &[]);
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let reply = edge.request(method.clone(), "/landscape.png?w=10", &[]);
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
        assert_eq!(reply.json()["error"], "method_not_allowed");
        assert_eq!(reply.json()["status"], 405);
    }
    // A HEAD of an error: its status and headers, no body.
    let head = edge.request(Method::HEAD, "/landscape.png?w=0", &[]);
    assert_eq!(head.status, 400);
    assert!(head.body.is_empty());
    assert_eq!(head.header("cache-control"), Some("public, max-age=60"));
    assert!(edge.variant_objects().is_empty());
}

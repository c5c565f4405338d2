//! `edge serve` end to end, happy paths: the real binary over HTTP on a temporary
//! filesystem bucket. Parameters, fit modes, formats, canonical keys, the edge cache,
//! conditional requests, concurrency, replaced masters, the gallery, seeding, and
//! `edge transform`.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};

use common::*;
use image::{GenericImageView, ImageFormat};
use imgedge_tests::bin_path;
use reqwest::Method;

const VARIANT_CACHE: &str = "public, max-age=31536000, immutable";

/// A store with one master per input format plus one with alpha.
fn store_with_masters() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    put(
        dir.path(),
        "landscape.png",
        &gradient(400, 300, ImageFormat::Png),
    );
    put(
        dir.path(),
        "photos/portrait.jpg",
        &gradient(300, 400, ImageFormat::Jpeg),
    );
    put(
        dir.path(),
        "art.webp",
        &gradient(200, 100, ImageFormat::WebP),
    );
    put(dir.path(), "alpha.png", &half_transparent_png(200, 100));
    dir
}

#[test]
fn masters_without_a_query_are_served_unchanged() {
    let dir = store_with_masters();
    let edge = EdgeServer::start(dir.path(), &[]);
    for (path, file, content_type, fmt) in [
        ("/landscape.png", "landscape.png", "image/png", "png"),
        (
            "/photos/portrait.jpg",
            "photos/portrait.jpg",
            "image/jpeg",
            "jpeg",
        ),
        ("/art.webp", "art.webp", "image/webp", "webp"),
    ] {
        let reply = edge.get(path);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(
            reply.body,
            std::fs::read(dir.path().join(file)).unwrap(),
            "{path}"
        );
        assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
        assert_eq!(
            reply.header("content-length"),
            Some(reply.body.len().to_string().as_str())
        );
        assert!(
            reply.header("etag").is_some_and(|e| e.starts_with('"')),
            "{path}"
        );
        assert_eq!(reply.x_cache(), "Miss from imgedge", "{path}");
        // A query that only repeats defaults is the master too: same cache entry.
        let again = edge.get(&format!("{path}?fmt={fmt}"));
        assert_eq!(again.x_cache(), "Hit from imgedge", "{path}");
        assert_eq!(again.body, reply.body);
    }
    assert!(edge.variant_objects().is_empty());
}

#[test]
fn every_format_has_its_magic_bytes_and_content_type() {
    let dir = store_with_masters();
    let edge = EdgeServer::start(dir.path(), &[]);
    type Check = fn(&[u8]) -> bool;
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, Headers, &str, Check); 10] = [
        ("/landscape.png?w=100&fmt=webp", &[], "image/webp", is_webp),
        ("/landscape.png?w=100&fmt=png", &[], "image/png", is_png),
        ("/landscape.png?w=100", &[], "image/png", is_png),
        ("/landscape.png?w=100&fmt=jpeg", &[], "image/jpeg", is_jpeg),
        (
            "/landscape.png?w=100&fmt=jpg&q=50",
            &[],
            "image/jpeg",
            is_jpeg,
        ),
        ("/photos/portrait.jpg?w=100", &[], "image/jpeg", is_jpeg),
        ("/art.webp?w=100", &[], "image/webp", is_webp),
        (
            "/landscape.png?w=120&fmt=auto",
            &[("accept", "image/webp,*/*")],
            "image/webp",
            is_webp,
        ),
        (
            "/photos/portrait.jpg?w=120&fmt=auto",
            &[("accept", "image/avif,image/*,*/*;q=0.8")],
            "image/avif",
            is_avif,
        ),
        (
            "/photos/portrait.jpg?w=120&fmt=auto",
            &[("accept", "image/apng,image/*,*/*;q=0.8")],
            "image/jpeg",
            is_jpeg,
        ),
    ];
    for (url, headers, content_type, magic) in cases {
        let reply = edge.get_with(url, headers);
        assert_eq!(
            reply.status,
            200,
            "{url}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.header("content-type"), Some(content_type), "{url}");
        assert!(magic(&reply.body), "{url}: wrong magic bytes");
        assert_eq!(reply.header("cache-control"), Some(VARIANT_CACHE), "{url}");
        assert_eq!(
            reply.image().width(),
            if url.contains("w=120") { 120 } else { 100 }
        );
    }
}

#[test]
fn fit_modes_and_sizes_follow_sharp_without_upscaling() {
    let dir = store_with_masters();
    let edge = EdgeServer::start(dir.path(), &[]);
    // Master is 400×300.
    let cases = [
        ("w=200", (200, 150)),
        ("h=150", (200, 150)),
        ("w=333", (333, 250)),
        ("w=100&h=100", (100, 100)),
        ("w=100&h=100&fit=cover", (100, 100)),
        ("w=100&h=100&fit=contain", (100, 100)),
        ("w=100&h=60&fit=fill", (100, 60)),
        ("w=100&h=100&fit=inside", (100, 75)),
        ("w=100&h=100&fit=outside", (133, 100)),
        ("w=100&dpr=2", (200, 150)),
        ("w=101&dpr=1.5", (152, 114)),
        ("h=50&dpr=3", (200, 150)),
        // Never upscale.
        ("w=800", (400, 300)),
        ("h=8000", (400, 300)),
        ("w=800&h=800", (300, 300)),
        ("w=800&h=800&fit=contain", (300, 300)),
        ("w=800&h=800&fit=fill", (300, 300)),
        ("w=800&h=800&fit=inside", (400, 300)),
        ("w=800&h=800&fit=outside", (400, 300)),
        ("w=200&dpr=4", (400, 300)),
    ];
    for (query, expected) in cases {
        let reply = edge.get(&format!("/landscape.png?{query}"));
        assert_eq!(
            reply.status,
            200,
            "{query}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.dimensions(), expected, "{query}");
    }
}

#[test]
fn quality_background_and_alpha_reach_the_pixels() {
    let dir = store_with_masters();
    let edge = EdgeServer::start(dir.path(), &[]);

    let low = edge.get("/landscape.png?w=300&fmt=jpeg&q=10");
    let high = edge.get("/landscape.png?w=300&fmt=jpeg&q=95");
    assert!(
        low.body.len() < high.body.len(),
        "q=10 should be smaller than q=95"
    );

    // contain pads with bg: the 400×300 master in a 100×100 box leaves bands top and bottom.
    for (bg, rgb) in [("ff0000", [255, 0, 0]), ("00FF00", [0, 255, 0])] {
        let reply = edge.get(&format!(
            "/landscape.png?w=100&h=100&fit=contain&bg={bg}&fmt=png"
        ));
        let px = reply.image().to_rgb8().get_pixel(50, 2).0;
        assert_eq!(px, rgb, "bg={bg}");
    }

    // Alpha kept where the format has it ...
    for fmt in ["png", "webp"] {
        let reply = edge.get(&format!("/alpha.png?w=100&fmt={fmt}"));
        let img = reply.image().to_rgba8();
        assert_eq!(
            img.get_pixel(10, 25).0[3],
            0,
            "{fmt}: left half stays transparent"
        );
        assert_eq!(
            img.get_pixel(90, 25).0[3],
            255,
            "{fmt}: right half stays opaque"
        );
    }
    // ... and flattened onto bg for JPEG. Decoded with jpeg-decoder: the image crate's
    // decoder (zune-jpeg) reads this file's left half as green where jpeg-decoder and
    // Pillow read the background; reported to the transform owner.
    let reply = edge.get("/alpha.png?w=100&fmt=jpeg&bg=3050c0");
    let mut decoder = jpeg_decoder::Decoder::new(std::io::Cursor::new(&reply.body));
    let pixels = decoder.decode().unwrap();
    let info = decoder.info().unwrap();
    assert_eq!((info.width, info.height), (100, 50));
    let at = (25 * 100 + 10) * 3;
    let px = &pixels[at..at + 3];
    let expected = [0x30, 0x50, 0xc0];
    assert!(
        px.iter().zip(expected).all(|(&a, b)| a.abs_diff(b) <= 6),
        "flattened onto bg 3050c0: {px:?}"
    );
}

#[test]
fn canonical_spellings_share_one_object_and_one_cache_entry() {
    let dir = store_with_masters();
    let edge = EdgeServer::start(dir.path(), &[]);
    let spellings = [
        "w=200&fmt=webp",
        "fmt=webp&w=200",
        "w=200&fmt=webp&q=80",
        "w=100&dpr=2&fmt=webp",
        "fmt=webp&bg=ffffff&w=200",
    ];
    let first = edge.get(&format!("/landscape.png?{}", spellings[0]));
    assert_eq!(first.status, 200);
    assert_eq!(first.x_cache(), "Miss from imgedge");
    for query in &spellings[1..] {
        let reply = edge.get(&format!("/landscape.png?{query}"));
        assert_eq!(reply.status, 200, "{query}");
        assert_eq!(reply.body, first.body, "{query}: same bytes");
        assert_eq!(
            reply.x_cache(),
            "Hit from imgedge",
            "{query}: same cache entry"
        );
    }
    let objects = edge.variant_objects();
    assert_eq!(
        objects,
        vec![dir
            .path()
            .join("_variants/v2/landscape.png/w=200,fmt=webp.webp")]
    );
    assert_eq!(std::fs::read(&objects[0]).unwrap(), first.body);
}

#[test]
fn the_edge_cache_hits_and_a_fresh_edge_reuses_the_stored_variant() {
    let dir = store_with_masters();
    let url = "/landscape.png?w=160&h=90&fmt=webp";
    let (miss_body, etag) = {
        let edge = EdgeServer::start(dir.path(), &[]);
        let miss = edge.get(url);
        assert_eq!(miss.x_cache(), "Miss from imgedge");
        let timing = miss.header("server-timing").unwrap();
        for stage in [
            "fetch;dur=",
            "decode;dur=",
            "resize;dur=",
            "encode;dur=",
            "store;dur=",
        ] {
            assert!(timing.contains(stage), "{timing}");
        }
        assert!(miss.header("age").is_none());

        let hit = edge.get(url);
        assert_eq!(hit.x_cache(), "Hit from imgedge");
        assert_eq!(hit.body, miss.body);
        assert_eq!(hit.header("etag"), miss.header("etag"));
        assert!(hit.header("age").is_some());
        // A hit's timing is the lookup alone: no store call, no origin.
        let hit_timing = hit.header("server-timing").unwrap();
        assert!(
            hit_timing.starts_with("edge-cache;desc=hit;dur="),
            "{hit_timing}"
        );
        assert!(!hit_timing.contains("origin"), "{hit_timing}");
        let etag = miss.header("etag").unwrap().to_string();
        (miss.body, etag)
    };

    // A new edge (empty cache) over the same bucket: a miss, but the variant is reused.
    let edge = EdgeServer::start(dir.path(), &[]);
    let reply = edge.get(url);
    assert_eq!(reply.x_cache(), "Miss from imgedge");
    let timing = reply.header("server-timing").unwrap();
    assert!(timing.contains("origin;dur="), "{timing}");
    assert!(
        !timing.contains("decode;dur="),
        "reused, not rendered: {timing}"
    );
    assert_eq!(reply.body, miss_body);
    assert_eq!(reply.header("etag"), Some(etag.as_str()));

    // Deterministic: another bucket with the same master renders the same bytes.
    let other = store_with_masters();
    let other_edge = EdgeServer::start(other.path(), &[]);
    assert_eq!(other_edge.get(url).body, miss_body);
}

#[test]
fn conditional_get_and_head() {
    let dir = store_with_masters();
    let url = "/landscape.png?w=120&fmt=png";
    let etag = {
        let edge = EdgeServer::start(dir.path(), &[]);
        let full = edge.get(url);
        let etag = full.header("etag").unwrap().to_string();

        // Hit: 304, no body, validators kept.
        let not_modified = edge.get_with(url, &[("if-none-match", &etag)]);
        assert_eq!(not_modified.status, 304);
        assert!(not_modified.body.is_empty());
        assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
        assert_eq!(not_modified.header("cache-control"), Some(VARIANT_CACHE));
        assert_eq!(not_modified.x_cache(), "Hit from imgedge");

        // Another ETag, or a list without it: the full response.
        let other = edge.get_with(url, &[("if-none-match", "\"0123\", \"4567\"")]);
        assert_eq!(other.status, 200);
        assert_eq!(other.body, full.body);
        let weak = edge.get_with(url, &[("if-none-match", &format!("\"x\", W/{etag}"))]);
        assert_eq!(weak.status, 304);

        // HEAD: the GET's headers, no body.
        let head = edge.request(Method::HEAD, url, &[]);
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("content-length"),
            Some(full.body.len().to_string().as_str())
        );
        assert_eq!(head.header("content-type"), Some("image/png"));
        assert_eq!(head.header("etag"), Some(etag.as_str()));
        etag
    };

    // Miss (fresh edge): 304 as well, and HEAD of a master.
    let edge = EdgeServer::start(dir.path(), &[]);
    let reply = edge.get_with(url, &[("if-none-match", &etag)]);
    assert_eq!(reply.status, 304);
    assert_eq!(reply.x_cache(), "Miss from imgedge");
    let head = edge.request(Method::HEAD, "/art.webp", &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let size = std::fs::metadata(dir.path().join("art.webp"))
        .unwrap()
        .len();
    assert_eq!(
        head.header("content-length"),
        Some(size.to_string().as_str())
    );
}

#[test]
fn forty_concurrent_first_requests_render_once() {
    let dir = store_with_masters();
    let edge = Arc::new(EdgeServer::start(dir.path(), &[]));
    let barrier = Arc::new(Barrier::new(40));
    let replies: Vec<Reply> = (0..40)
        .map(|_| {
            let (edge, barrier) = (edge.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                edge.get("/landscape.png?w=300&h=200&fmt=webp&q=70")
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    for reply in &replies {
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, replies[0].body, "identical bytes");
        assert!(is_webp(&reply.body));
    }
    let misses = replies
        .iter()
        .filter(|r| r.x_cache() == "Miss from imgedge")
        .count();
    assert_eq!(misses, 1, "collapsed into one origin request");
    let rendered = replies
        .iter()
        .filter(|r| {
            r.header("server-timing")
                .is_some_and(|t| t.contains("decode"))
        })
        .count();
    assert_eq!(rendered, 1);
    assert_eq!(edge.variant_objects().len(), 1);
}

#[test]
fn a_replaced_master_reaches_viewers_after_an_invalidation() {
    let dir = tempfile::tempdir().unwrap();
    put(
        dir.path(),
        "out/pic.png",
        &solid(200, 100, [255, 0, 0], ImageFormat::Png),
    );
    let edge = EdgeServer::start(dir.path(), &[]);
    let url = "/out/pic.png?w=50&fmt=png";
    let red = edge.get(url);
    assert_eq!(red.image().to_rgb8().get_pixel(25, 12).0, [255, 0, 0]);
    let master = edge.get("/out/pic.png");

    put(
        dir.path(),
        "out/pic.png",
        &solid(200, 100, [0, 0, 255], ImageFormat::Png),
    );
    // Like CloudFront: the edge keeps serving what it cached until TTL or invalidation.
    let cached = edge.get(url);
    assert_eq!(cached.x_cache(), "Hit from imgedge");
    assert_eq!(cached.body, red.body);
    // The origin path itself is already fresh: a spec not cached yet shows the new master.
    let other = edge.get("/out/pic.png?w=40&fmt=png");
    assert_eq!(other.image().to_rgb8().get_pixel(20, 10).0, [0, 0, 255]);

    let reply = edge.request(
        Method::POST,
        "/_imgedge/invalidate?path=/out/pic.png*",
        &[(edge::local::INVALIDATE_HEADER, "1")],
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["invalidated"], 3);

    let fresh = edge.get(url);
    assert_eq!(fresh.x_cache(), "Miss from imgedge");
    assert!(
        fresh.header("server-timing").unwrap().contains("decode"),
        "rebuilt"
    );
    assert_eq!(fresh.image().to_rgb8().get_pixel(25, 12).0, [0, 0, 255]);
    assert_ne!(fresh.header("etag"), red.header("etag"));
    let new_master = edge.get("/out/pic.png");
    assert_ne!(new_master.body, master.body);
    assert_eq!(
        new_master.body,
        std::fs::read(dir.path().join("out/pic.png")).unwrap()
    );
    // The stale variant was overwritten in place, not duplicated.
    assert_eq!(edge.variant_objects().len(), 2);

    // An invalidation needs a path.
    let bad = edge.request(
        Method::POST,
        "/_imgedge/invalidate",
        &[(edge::local::INVALIDATE_HEADER, "1")],
    );
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["param"], "path");
}

/// Every `src`/`href` of the gallery page.
fn links(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(start) = rest.find(attr) {
            rest = &rest[start + attr.len()..];
            let end = rest.find('"').unwrap();
            found.push(rest[..end].replace("&amp;", "&"));
            rest = &rest[end..];
        }
    }
    found
}

#[test]
fn the_gallery_lists_masters_and_every_link_works() {
    let dir = store_with_masters();
    put(dir.path(), "notes/readme.txt", b"not an image");
    let edge = EdgeServer::start(dir.path(), &[]);
    edge.get("/landscape.png?w=64"); // a variant in the bucket must not be listed
    let page = edge.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = String::from_utf8(page.body).unwrap();
    for key in [
        "landscape.png",
        "photos/portrait.jpg",
        "art.webp",
        "alpha.png",
    ] {
        assert!(
            html.contains(&format!("src=\"/{key}?w=256&amp;fmt=webp\"")),
            "{key}"
        );
    }
    assert!(!html.contains("_variants"));
    assert!(!html.contains("readme.txt"));
    let (playground, links): (Vec<String>, Vec<String>) = links(&html)
        .into_iter()
        .partition(|l| l.starts_with("/_imgedge/playground"));
    assert!(links.len() >= 4 * 6, "{links:?}");
    // The page link plus one per master, which preselects it.
    assert_eq!(playground.len(), 1 + 4, "{playground:?}");
    assert!(playground.contains(&"/_imgedge/playground?master=photos/portrait.jpg".to_string()));
    for link in playground {
        let reply = edge.get(&link);
        assert_eq!(reply.status, 200, "{link}");
        assert_eq!(
            reply.header("content-type"),
            Some("text/html; charset=utf-8")
        );
    }
    for link in links {
        let reply = edge.get(&link);
        assert_eq!(
            reply.status,
            200,
            "{link}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert!(
            reply.header("content-type").unwrap().starts_with("image/"),
            "{link}"
        );
        reply.image();
    }
}

#[test]
fn an_empty_bucket_is_seeded_with_sample_masters() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("bucket");
    let edge = EdgeServer::start_with(&store, &[], &[], true);
    let date = samples::today_utc();
    for (i, size) in [(1, 1024), (5, 2048), (6, 2048)] {
        let key = format!("outputs/{date}/image_{i:03}.png");
        let bytes = std::fs::read(store.join(&key)).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(bytes, samples::synth_png(i, size, samples::SAMPLE_SEED));
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!(img.dimensions(), (size, size));
    }
    let html = String::from_utf8(edge.get("/").body).unwrap();
    assert_eq!(html.matches("<img ").count(), 6);
    let thumb = edge.get(&format!("/outputs/{date}/image_006.png?w=256&fmt=webp"));
    assert_eq!(thumb.status, 200);
    assert_eq!(thumb.dimensions(), (256, 256));
    drop(edge);

    // A bucket with something in it is left alone.
    let other = tempfile::tempdir().unwrap();
    put(
        other.path(),
        "one.png",
        &solid(8, 8, [1, 2, 3], ImageFormat::Png),
    );
    let _edge = EdgeServer::start_with(other.path(), &[], &[], true);
    assert!(!other.path().join("outputs").exists());
}

fn transform(args: &[&str]) -> std::process::Output {
    Command::new(bin_path("edge"))
        .arg("transform")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn transform_renders_a_file_like_the_origin() {
    let dir = store_with_masters();
    let input = dir.path().join("landscape.png");
    let out = dir.path().join("out.webp");
    let run = transform(&[
        input.to_str().unwrap(),
        "--query",
        "w=200&fmt=webp",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    assert!(is_webp(&bytes));
    assert_eq!(
        image::load_from_memory(&bytes).unwrap().dimensions(),
        (200, 150)
    );

    // The same bytes the edge serves for the same canonical variant.
    let edge = EdgeServer::start(dir.path(), &[]);
    assert_eq!(edge.get("/landscape.png?fmt=webp&w=200").body, bytes);

    // fmt=auto uses --accept.
    let auto = dir.path().join("auto.out");
    let run = transform(&[
        input.to_str().unwrap(),
        "--query",
        "w=50&fmt=auto",
        "--accept",
        "image/webp",
        "-o",
        auto.to_str().unwrap(),
    ]);
    assert!(run.status.success());
    assert!(is_webp(&std::fs::read(&auto).unwrap()));
}

#[test]
fn transform_errors_print_the_json_message_and_fail() {
    let dir = store_with_masters();
    let input = dir.path().join("landscape.png");
    let bomb = dir.path().join("bomb.png");
    std::fs::write(&bomb, png_bomb(100_000, 100_000)).unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello").unwrap();
    let out = dir.path().join("never.png");
    let cases: [(&Path, &str, &str); 4] = [
        (&input, "w=0", "invalid_parameter"),
        (&input, "w=10&fmt=png&q=50", "invalid_parameter"),
        (&bomb, "w=10", "image_too_large"),
        (&text, "w=10", "invalid_key"),
    ];
    for (file, query, code) in cases {
        let run = transform(&[
            file.to_str().unwrap(),
            "--query",
            query,
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(!run.status.success(), "{query}");
        let stderr = String::from_utf8_lossy(&run.stderr);
        let line = stderr.lines().last().unwrap_or("");
        let body: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{query}: {e}: {stderr}"));
        assert_eq!(body["error"], code, "{query}");
        assert!(!out.exists(), "{query}: no output on error");
    }
}

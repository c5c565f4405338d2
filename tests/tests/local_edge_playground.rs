//! The playground of `edge serve` over HTTP against the real binary: the page and its
//! links from the gallery, and the resolve endpoint — canonical URLs that load, signed
//! ones with `--signing-keys`, the URL API's errors, and its refusal of callers that are
//! not on this machine (a foreign `Host`, a forwarding proxy; a non-loopback peer is
//! covered by the unit tests, as these tests may only talk to loopback).

mod common;

use common::*;
use image::ImageFormat;

const MASTER: &str = "/outputs/2025-02-01/image_001.png";
const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const IMAGE_ACCEPT: &str = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";

/// A bucket with a 400×300 master; `signed` adds `--signing-keys`.
fn start(signed: bool) -> (tempfile::TempDir, EdgeServer) {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    put(&bucket, &MASTER[1..], &gradient(400, 300, ImageFormat::Png));
    let keys = dir.path().join("signing-keys");
    std::fs::write(&keys, format!("{KEY}\n")).unwrap();
    let args: Vec<&str> = if signed {
        vec!["--signing-keys", keys.to_str().unwrap()]
    } else {
        vec![]
    };
    let edge = EdgeServer::start(&bucket, &args);
    (dir, edge)
}

fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn resolve(edge: &EdgeServer, path: &str, query: &str, headers: &[(&str, &str)]) -> Reply {
    edge.get_with(
        &format!(
            "/_imgedge/resolve?path={}&query={}&accept={}",
            form_encode(path),
            form_encode(query),
            form_encode(IMAGE_ACCEPT)
        ),
        headers,
    )
}

fn assert_json_no_store(reply: &Reply, status: u16) -> serde_json::Value {
    assert_eq!(
        reply.status,
        status,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    reply.json()
}

#[test]
fn unsigned_resolution_is_canonical_and_loads() {
    let (_dir, edge) = start(false);
    let body = assert_json_no_store(
        &resolve(&edge, MASTER, "w=150&dpr=2&fmt=webp&q=80", &[]),
        200,
    );
    assert_eq!(body["canonical"], format!("{MASTER}?w=300&fmt=webp"));
    assert_eq!(body["url"], body["canonical"]);
    assert_eq!(body["signed"], false);
    assert_eq!(
        body["variant_key"],
        "_variants/v2/outputs/2025-02-01/image_001.png/w=300,fmt=webp.webp"
    );
    let image = edge.get(body["url"].as_str().unwrap());
    assert_eq!(image.status, 200);
    assert!(is_webp(&image.body));
    assert_eq!(image.dimensions(), (300, 225));
    // The variant is stored under the key the endpoint named.
    assert!(edge
        .store
        .join(body["variant_key"].as_str().unwrap())
        .exists());

    // fmt=auto: the URL keeps auto; the canonical form is this Accept's.
    let body = assert_json_no_store(&resolve(&edge, MASTER, "w=64&fmt=auto", &[]), 200);
    assert_eq!(body["url"], format!("{MASTER}?w=64&fmt=auto"));
    assert_eq!(body["canonical"], format!("{MASTER}?w=64&fmt=avif"));
    assert_eq!(body["varies_on_accept"], true);
    let image = edge.get_with(body["url"].as_str().unwrap(), &[("accept", IMAGE_ACCEPT)]);
    assert!(is_avif(&image.body));
    assert_eq!(image.header("vary"), Some("Accept"));
}

#[test]
fn signed_resolution_carries_a_sig_that_the_edge_accepts() {
    let (_dir, edge) = start(true);
    let body = assert_json_no_store(&resolve(&edge, MASTER, "fmt=jpeg&w=200&q=70", &[]), 200);
    assert_eq!(body["canonical"], format!("{MASTER}?w=200&fmt=jpeg&q=70"));
    assert_eq!(body["signed"], true);
    let url = body["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{MASTER}?w=200&fmt=jpeg&q=70&sig=")),
        "{url}"
    );
    let image = edge.get(url);
    assert_eq!(image.status, 200);
    assert!(is_jpeg(&image.body));
    assert_eq!(image.dimensions(), (200, 150));
    // Without the signature the same URL is refused: signing is really on.
    let unsigned = edge.get(body["canonical"].as_str().unwrap());
    assert_error(&unsigned, 403, "invalid_signature", "unsigned canonical");

    // fmt=auto signed over the query as given.
    let body = assert_json_no_store(&resolve(&edge, MASTER, "w=64&fmt=auto", &[]), 200);
    let url = body["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{MASTER}?w=64&fmt=auto&sig=")),
        "{url}"
    );
    let image = edge.get_with(url, &[("accept", IMAGE_ACCEPT)]);
    assert_eq!(image.status, 200);
    assert!(is_avif(&image.body));

    // The master needs no signature, and gets none.
    let body = assert_json_no_store(&resolve(&edge, MASTER, "", &[]), 200);
    assert_eq!(body["url"], MASTER);
    assert_eq!(body["signed"], false);
    assert_eq!(body["variant_key"], serde_json::Value::Null);
}

#[test]
fn bad_requests_get_the_url_api_errors() {
    let (_dir, edge) = start(true);
    let body = assert_json_no_store(&resolve(&edge, MASTER, "w=0&fmt=webp", &[]), 400);
    assert_eq!(body["status"], 400);
    assert_eq!(body["error"], "invalid_parameter");
    assert_eq!(body["param"], "w");
    assert!(body["message"].as_str().unwrap().contains("8192"), "{body}");

    let body = assert_json_no_store(&resolve(&edge, MASTER, "w=5&fit=cover", &[]), 400);
    assert_eq!(body["param"], "fit");
    let body = assert_json_no_store(&resolve(&edge, "/outputs/../x.png", "w=5", &[]), 400);
    assert_eq!(body["error"], "invalid_key");
    let body = assert_json_no_store(&edge.get("/_imgedge/resolve?query=w%3D5"), 400);
    assert_eq!(body["param"], "path");
    let body = assert_json_no_store(&edge.get("/_imgedge/resolve?path=/a.png&x=1"), 400);
    assert_eq!(body["param"], "x");
}

#[test]
fn callers_not_on_this_machine_are_refused() {
    let (_dir, edge) = start(true);
    for headers in [
        &[("host", "evil.example")][..],
        &[("host", "evil.example:80")][..],
        &[("x-forwarded-for", "192.0.2.7")][..],
        &[("forwarded", "for=192.0.2.7")][..],
    ] {
        let reply = resolve(&edge, MASTER, "w=64", headers);
        let body = assert_json_no_store(&reply, 403);
        assert_eq!(body["status"], 403, "{headers:?}");
        assert_eq!(body["error"], "forbidden", "{headers:?}");
        assert!(
            body["message"].as_str().unwrap().contains("loopback"),
            "{body}"
        );
        assert!(!String::from_utf8_lossy(&reply.body).contains("sig="));
    }
    let ok = resolve(&edge, MASTER, "w=64", &[("host", "localhost")]);
    assert_eq!(ok.status, 200);
}

#[test]
fn the_page_lists_masters_and_the_gallery_links_to_it() {
    let (_dir, edge) = start(false);
    let page = edge.get("/_imgedge/playground");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(page
        .header("content-security-policy")
        .is_some_and(|csp| csp.contains("default-src 'self'")));
    let html = String::from_utf8(page.body).unwrap();
    assert!(html.contains(&format!(
        "<option value=\"{MASTER}\">{}</option>",
        &MASTER[1..]
    )));
    assert!(html.contains("/_imgedge/resolve"));

    let gallery = String::from_utf8(edge.get("/").body).unwrap();
    assert!(gallery.contains("href=\"/_imgedge/playground\""));
    assert!(gallery.contains(&format!(
        "href=\"/_imgedge/playground?master={}\"",
        &MASTER[1..]
    )));
}

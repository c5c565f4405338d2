//! `edge serve --signing-keys FILE --policy FILE` end to end (DESIGN.md §10): signed URLs
//! with rotation, the order of checks, presets and policy lists, `Vary`/`nosniff`, one
//! object per distinct output and remembered failures, all over HTTP against the real
//! binary; the bucket is checked directly after every error.

mod common;

use std::process::Command;

use common::*;
use edge::sign::SigningKeys;
use image::ImageFormat;
use imgedge_tests::bin_path;

const KEY_OLD: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const KEY_NEW: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
const MASTER: &str = "/outputs/2025-02-01/image_001.png";

struct Setup {
    dir: tempfile::TempDir,
    keys_file: std::path::PathBuf,
    policy_file: std::path::PathBuf,
}

/// A bucket with a 400×300 master, a keys file (new key first: it signs; old still
/// accepted) and a policy with lists and presets.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    put(&bucket, &MASTER[1..], &gradient(400, 300, ImageFormat::Png));
    let keys_file = dir.path().join("signing-keys");
    std::fs::write(
        &keys_file,
        format!("# rotated 2026-12-01\n{KEY_NEW}\n\n{KEY_OLD}\n"),
    )
    .unwrap();
    let policy_file = dir.path().join("policy.json");
    std::fs::write(
        &policy_file,
        r#"{"widths": [64, 128, 1024], "dprs": [1, 2], "formats": ["webp", "auto", "png"],
            "presets": {"thumb": "w=64&h=64&fmt=webp", "card": "w=128&fmt=auto"}}"#,
    )
    .unwrap();
    Setup {
        dir,
        keys_file,
        policy_file,
    }
}

impl Setup {
    fn bucket(&self) -> std::path::PathBuf {
        self.dir.path().join("bucket")
    }
    fn start(&self) -> EdgeServer {
        EdgeServer::start(
            &self.bucket(),
            &[
                "--signing-keys",
                self.keys_file.to_str().unwrap(),
                "--policy",
                self.policy_file.to_str().unwrap(),
            ],
        )
    }
}

fn signed(secret_hex: &str, path: &str, query: &str) -> String {
    let keys = SigningKeys::parse(secret_hex).unwrap();
    format!("{path}?{}", keys.signed_query(path, query))
}

#[test]
fn signed_urls_with_rotation_and_the_order_of_checks() {
    let s = setup();
    let edge = s.start();

    // Both keys of the file verify; the plain master needs no signature.
    for key in [KEY_NEW, KEY_OLD] {
        let r = edge.get(&signed(key, MASTER, "w=64&fmt=webp"));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert!(is_webp(&r.body));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    assert_eq!(edge.get(MASTER).status, 200);

    let good = signed(KEY_NEW, MASTER, "w=64&fmt=webp");
    let sig = good.rsplit_once("sig=").unwrap().1.to_string();
    let other = "aa".repeat(32);
    let cases = [
        ("unsigned", format!("{MASTER}?w=64&fmt=webp")),
        (
            "tampered query",
            format!("{MASTER}?w=128&fmt=webp&sig={sig}"),
        ),
        (
            "tampered path",
            format!("/outputs/2025-02-01/image_002.png?w=64&fmt=webp&sig={sig}"),
        ),
        (
            "truncated",
            format!("{MASTER}?w=64&fmt=webp&sig={}", &sig[..sig.len() - 2]),
        ),
        ("padded", format!("{MASTER}?w=64&fmt=webp&sig={sig}=")),
        ("not last", format!("{MASTER}?w=64&sig={sig}&fmt=webp")),
        ("unknown key", signed(&other, MASTER, "w=64&fmt=webp")),
        ("empty", format!("{MASTER}?w=64&fmt=webp&sig=")),
        ("only sig, for a query", format!("{MASTER}?sig={sig}")),
    ];
    for (what, url) in cases {
        let r = edge.get(&url);
        let body = assert_error(&r, 403, "invalid_signature", what);
        assert_eq!(body["param"], "sig", "{what}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{what}"
        );
    }
    // Percent-encoding is signed as sent: another spelling of the same key is another URL.
    let spelled = "/outputs/2025-02-01/image%5F001.png";
    let r = edge.get(&format!(
        "{spelled}?{}",
        SigningKeys::parse(KEY_NEW)
            .unwrap()
            .signed_query(MASTER, "w=64&fmt=webp")
    ));
    assert_error(&r, 403, "invalid_signature", "other spelling");
    let r = edge.get(&signed(KEY_NEW, spelled, "w=64&fmt=webp"));
    assert_eq!(r.status, 200, "signed as sent");

    // The key is checked first: a bad key is a 400 whoever signed it; the query after
    // the signature: a signed bad query is a 400, an unsigned one a 403.
    assert_error(
        &edge.raw_get("/a/../b.png?w=5"),
        400,
        "invalid_key",
        "bad key",
    );
    let r = edge.get(&signed(KEY_NEW, MASTER, "w=0"));
    assert_eq!(
        assert_error(&r, 400, "invalid_parameter", "signed w=0")["param"],
        "w"
    );
    assert_error(
        &edge.get(&format!("{MASTER}?w=0")),
        403,
        "invalid_signature",
        "unsigned w=0",
    );

    // Nothing but the one good variant was written.
    assert_eq!(
        edge.variant_objects().len(),
        1,
        "{:?}",
        edge.variant_objects()
    );
}

#[test]
fn presets_and_policy_lists() {
    let s = setup();
    let edge = s.start();
    let get = |q: &str| edge.get(&signed(KEY_NEW, MASTER, q));

    let r = get("preset=thumb");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.dimensions(), (64, 64));
    assert!(is_webp(&r.body));
    // The preset is its query: one cache entry and one object for both spellings.
    let r = get("w=64&h=64&fmt=webp");
    assert_eq!(r.x_cache(), "Hit from imgedge");
    // dpr multiplies an allowed width.
    assert_eq!(get("w=64&dpr=2&fmt=png").dimensions(), (128, 96));

    for (q, param, mentions) in [
        ("w=100", "w", &["64", "128", "1024"][..]),
        ("w=64&dpr=1.5", "dpr", &["1", "2"][..]),
        ("fmt=jpeg", "fmt", &["webp", "auto", "png"][..]),
        ("preset=nope", "preset", &["card", "thumb"][..]),
        ("preset=thumb&w=64", "preset", &["alone"][..]),
    ] {
        let body = assert_error(&get(q), 400, "invalid_parameter", q);
        assert_eq!(body["param"], param, "{q}: {body}");
        let message = body["message"].as_str().unwrap();
        for m in mentions {
            assert!(message.contains(m), "{q}: '{message}' should mention {m}");
        }
    }
    assert_eq!(
        edge.variant_objects().len(),
        2,
        "{:?}",
        edge.variant_objects()
    );
}

#[test]
fn fmt_auto_varies_on_accept_and_every_response_is_nosniff() {
    let s = setup();
    let edge = s.start();
    let auto = signed(KEY_NEW, MASTER, "w=128&fmt=auto");
    let r = edge.get_with(&auto, &[("Accept", "image/webp,*/*")]);
    assert_eq!(r.status, 200);
    assert!(is_webp(&r.body));
    assert_eq!(r.header("vary"), Some("Accept"));
    let r = edge.get_with(&auto, &[("Accept", "image/png")]);
    assert!(is_png(&r.body));
    assert_eq!(r.header("vary"), Some("Accept"), "a hit varies too");
    // A preset through fmt=auto varies; an explicit format does not.
    let r = edge.get_with(
        &signed(KEY_NEW, MASTER, "preset=card"),
        &[("Accept", "image/webp")],
    );
    assert_eq!(r.header("vary"), Some("Accept"));
    let r = edge.get(&signed(KEY_NEW, MASTER, "w=128&fmt=webp"));
    assert_eq!(r.header("vary"), None);

    for path in ["/", MASTER, "/missing.png", "/favicon.ico"] {
        let r = edge.get(path);
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
}

#[test]
fn the_gallery_links_are_signed() {
    let s = setup();
    let edge = s.start();
    let html = String::from_utf8(edge.get("/").body).unwrap();
    let links: Vec<String> = html
        .split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|l| l.contains('?'))
        // The playground's links name a master to preselect: pages, not variants.
        .filter(|l| !l.starts_with("/_imgedge/playground"))
        .map(|l| l.replace("&amp;", "&"))
        .collect();
    assert!(!links.is_empty());
    for link in links {
        assert!(link.contains("&sig="), "{link}");
        let r = edge.get(&link);
        // Links outside the policy are refused by it, never by the signature check.
        assert_ne!(
            r.status,
            403,
            "{link}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
}

#[test]
fn a_bad_keys_or_policy_file_stops_the_start_naming_the_line() {
    let s = setup();
    let bad_keys = s.dir.path().join("bad-keys");
    std::fs::write(&bad_keys, format!("{KEY_NEW}\n# ok\nnot-hex-at-all\n")).unwrap();
    let bad_policy = s.dir.path().join("bad-policy.json");
    std::fs::write(&bad_policy, r#"{"widths": [64, 0]}"#).unwrap();
    for (flag, file, mentions) in [
        ("--signing-keys", &bad_keys, "line 3"),
        ("--policy", &bad_policy, "widths[1]"),
    ] {
        let out = Command::new(bin_path("edge"))
            .args(["serve", "--listen", "127.0.0.1:0", "--no-seed", "--store"])
            .arg(s.bucket())
            .arg(flag)
            .arg(file)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(mentions), "{flag}: {stderr}");
        assert!(
            !stderr.contains("not-hex"),
            "a secret's line is never shown: {stderr}"
        );
    }
    // The environment variables name the same files.
    let out = Command::new(bin_path("edge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-seed", "--store"])
        .arg(s.bucket())
        .env("IMGEDGE_POLICY_FILE", &bad_policy)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("widths[1]"));
}

#[test]
fn requests_beyond_the_master_make_one_object() {
    let dir = tempfile::tempdir().unwrap();
    // No size metadata here (a file store written by hand): the size comes from the header.
    put(dir.path(), "m.png", &gradient(100, 80, ImageFormat::Png));
    let edge = EdgeServer::start(dir.path(), &[]);
    let first = edge.get("/m.png?w=100&fmt=webp").body;
    for w in (101..=400).step_by(7) {
        let r = edge.get(&format!("/m.png?w={w}&fmt=webp"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, first, "w={w}: the same bytes");
    }
    let objects = edge.variant_objects();
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(
        objects[0].ends_with("m.png/w=100,fmt=webp.webp"),
        "{objects:?}"
    );
}

#[test]
fn a_broken_master_is_remembered_until_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut png = gradient(60, 40, ImageFormat::Png);
    png.truncate(png.len() / 2);
    put(dir.path(), "b.png", &png);
    let edge = EdgeServer::start(dir.path(), &[]);
    for w in 10..20 {
        assert_error(
            &edge.get(&format!("/b.png?w={w}")),
            415,
            "unsupported_image",
            "broken",
        );
    }
    assert!(edge.variant_objects().is_empty());
    assert_eq!(edge.failure_markers().len(), 1);

    put(dir.path(), "b.png", &gradient(60, 40, ImageFormat::Png));
    // A new URL (the edge cache keeps the old 415 for its max-age): the new bytes render.
    let r = edge.get("/b.png?w=30");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.dimensions(), (30, 20));
}

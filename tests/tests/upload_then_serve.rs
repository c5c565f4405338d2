//! The seed's whole flow on one machine: `generator synth` stands in for the model,
//! `generator upload` puts the masters into an S3 bucket (moto), and `edge serve --store
//! s3://…` serves a `?w=512&fmt=webp` variant of an uploaded key.

mod common;

use std::process::Command;

use common::*;
use imgedge_tests::{bin_path, local_aws_env, MotoServer};

const BUCKET: &str = "imgedge-flow";

/// moto's server with one bucket, the AWS environment for it and an HTTP client.
fn moto_with_bucket(
    bucket: &str,
) -> (
    MotoServer,
    Vec<(&'static str, String)>,
    reqwest::blocking::Client,
) {
    let moto = MotoServer::start();
    let env = local_aws_env(&moto.endpoint());
    let client = reqwest::blocking::Client::new();
    let created = client
        .put(format!("{}/{bucket}", moto.endpoint()))
        .send()
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    (moto, env, client)
}

/// `generator synth` of `count` masters of `size` px into `dir/masters`.
fn synth_masters(dir: &std::path::Path, count: u32, size: u32) -> std::path::PathBuf {
    let masters = dir.join("masters");
    let synth = Command::new(bin_path("generator"))
        .args([
            "synth",
            "--count",
            &count.to_string(),
            "--size",
            &size.to_string(),
        ])
        .arg("--out")
        .arg(&masters)
        .output()
        .unwrap();
    assert!(
        synth.status.success(),
        "{}",
        String::from_utf8_lossy(&synth.stderr)
    );
    masters
}

#[test]
fn synth_upload_then_edge_serves_a_variant_from_s3() {
    let (_moto, env, _client) = moto_with_bucket(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let masters = synth_masters(dir.path(), 3, 1024);

    let upload = Command::new(bin_path("generator"))
        .envs(env.clone())
        .arg("upload")
        .arg(&masters)
        .args(["--bucket", BUCKET, "--date", "2025-02-01", "--json"])
        .output()
        .unwrap();
    assert!(
        upload.status.success(),
        "{}",
        String::from_utf8_lossy(&upload.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&upload.stdout).unwrap();
    let keys: Vec<&str> = summary["uploaded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "outputs/2025-02-01/image_001.png",
            "outputs/2025-02-01/image_002.png",
            "outputs/2025-02-01/image_003.png"
        ]
    );

    let edge = EdgeServer::start_s3(&format!("s3://{BUCKET}"), &[], &env);
    let url = "/outputs/2025-02-01/image_002.png?w=512&fmt=webp";
    let reply = edge.get(url);
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(is_webp(&reply.body));
    assert_eq!(reply.dimensions(), (512, 512));
    assert_eq!(reply.header("content-type"), Some("image/webp"));
    assert_eq!(reply.x_cache(), "Miss from imgedge");
    // The master is served as uploaded, byte for byte.
    let master = std::fs::read(masters.join(generator::synth::file_name(2))).unwrap();
    assert_eq!(edge.get("/outputs/2025-02-01/image_002.png").body, master);
}

/// Signing end to end: `generator upload --json --signing-keys` reports signed variant
/// URLs that `edge serve --signing-keys` accepts, `generator sign` signs any URL, and
/// requests beyond an uploaded master's size (known from the generator's metadata) all
/// land on one stored object.
#[test]
fn signed_urls_from_the_generator_are_served_and_oversize_requests_share_one_object() {
    const SIGNED_BUCKET: &str = "imgedge-signed";
    let (moto, env, client) = moto_with_bucket(SIGNED_BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, format!("# current\n{}\n", "5a".repeat(32))).unwrap();
    let masters = synth_masters(dir.path(), 1, 300);

    let edge = EdgeServer::start_s3(
        &format!("s3://{SIGNED_BUCKET}"),
        &["--signing-keys", keys.to_str().unwrap()],
        &env,
    );
    let upload = Command::new(bin_path("generator"))
        .envs(env.clone())
        .arg("upload")
        .arg(&masters)
        .args(["--bucket", SIGNED_BUCKET, "--date", "2025-02-01", "--json"])
        .args(["--cdn-domain", &edge.url("")])
        .env("IMGEDGE_SIGNING_KEYS_FILE", &keys)
        .output()
        .unwrap();
    assert!(
        upload.status.success(),
        "{}",
        String::from_utf8_lossy(&upload.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&upload.stdout).unwrap();
    let variant_url = summary["uploaded"][0]["variant_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        variant_url.contains("?w=512&fmt=webp&sig="),
        "{variant_url}"
    );
    let path_and_query = variant_url.strip_prefix(&edge.url("")).unwrap();
    let reply = edge.get(path_and_query);
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // 512 asked of a 300-px master: the master's size, under the clamped key.
    assert_eq!(reply.dimensions(), (300, 300));
    assert_error(
        &edge.get("/outputs/2025-02-01/image_001.png?w=512&fmt=webp"),
        403,
        "invalid_signature",
        "unsigned",
    );

    let urls: Vec<String> = [300, 999, 4000]
        .iter()
        .map(|w| edge.url(&format!("/outputs/2025-02-01/image_001.png?w={w}&fmt=webp")))
        .collect();
    let sign = Command::new(bin_path("generator"))
        .args(["sign", "--signing-keys", keys.to_str().unwrap()])
        .args(&urls)
        .output()
        .unwrap();
    assert!(
        sign.status.success(),
        "{}",
        String::from_utf8_lossy(&sign.stderr)
    );
    let signed = String::from_utf8(sign.stdout).unwrap();
    assert_eq!(signed.lines().count(), 3);
    for url in signed.lines() {
        let r = client.get(url).send().unwrap();
        assert_eq!(r.status(), 200, "{url}");
    }
    // Checked at the S3 server: one variant object for 300, 512, 999 and 4000.
    let listing = client
        .get(format!(
            "{}/{SIGNED_BUCKET}?list-type=2&prefix=_variants/",
            moto.endpoint()
        ))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let keys: Vec<&str> = listing
        .split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .collect();
    assert_eq!(
        keys,
        ["_variants/v2/outputs/2025-02-01/image_001.png/w=300,fmt=webp.webp"]
    );
}

/// `generator upload --eager`: the listed variants are made at upload, stored exactly as the
/// origin stores them (the origin then reuses them: no render on the first viewer request),
/// and `--json` reports them with a `srcset` of the policy's widths.
#[test]
fn eager_variants_are_made_at_upload_and_reused_by_the_origin() {
    const EAGER_BUCKET: &str = "imgedge-eager";
    let (_moto, env, _client) = moto_with_bucket(EAGER_BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let masters = synth_masters(dir.path(), 2, 400);
    let policy = dir.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"widths": [64, 200, 400], "presets": {"thumb": "w=64&fmt=auto"}}"#,
    )
    .unwrap();
    let edge = EdgeServer::start_s3(&format!("s3://{EAGER_BUCKET}"), &[], &env);

    let upload = Command::new(bin_path("generator"))
        .envs(env.clone())
        .arg("upload")
        .arg(&masters)
        .args(["--bucket", EAGER_BUCKET, "--date", "2025-02-01", "--json"])
        .args(["--cdn-domain", &edge.url("")])
        .args(["--eager", "thumb,w=200&fmt=webp", "--policy"])
        .arg(&policy)
        .output()
        .unwrap();
    assert!(
        upload.status.success(),
        "{}",
        String::from_utf8_lossy(&upload.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&upload.stdout).unwrap();
    let first = &summary["uploaded"][0];
    let eager = first["eager"].as_array().unwrap();
    let queries: Vec<&str> = eager.iter().map(|v| v["query"].as_str().unwrap()).collect();
    // thumb is fmt=auto: the AVIF, WebP and master's-format answers.
    assert_eq!(
        queries,
        ["w=64&fmt=avif", "w=64&fmt=webp", "w=64", "w=200&fmt=webp"]
    );
    assert!(eager.iter().all(|v| v["built"] == true));
    let srcset = first["srcset"].as_str().unwrap();
    assert_eq!(srcset.matches("w, ").count(), 2, "three widths: {srcset}");
    assert!(srcset.contains("?w=200&fmt=auto 200w"), "{srcset}");

    // Stored as the origin stores them: the origin finds them fresh and renders nothing.
    let master_key = first["key"].as_str().unwrap();
    for v in eager {
        let path = format!("/{master_key}?{}", v["query"].as_str().unwrap());
        let r = edge.get(&path);
        assert_eq!(r.status, 200, "{path}");
        let timing = r.header("server-timing").unwrap();
        assert!(
            !timing.contains("decode"),
            "{path} was rendered again: {timing}"
        );
        assert_eq!(r.body.len() as u64, v["bytes"].as_u64().unwrap());
    }
    // Uploading the same files again keeps them (fresh: not made again).
    let again = Command::new(bin_path("generator"))
        .envs(env.clone())
        .arg("upload")
        .arg(&masters)
        .args(["--bucket", EAGER_BUCKET, "--date", "2025-02-01", "--json"])
        .args(["--eager", "thumb,w=200&fmt=webp", "--policy"])
        .arg(&policy)
        .output()
        .unwrap();
    assert!(again.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    let eager = summary["skipped"][0]["eager"].as_array().unwrap();
    assert!(eager.iter().all(|v| v["built"] == false), "{eager:?}");

    // A typo stops the batch before anything is uploaded.
    let typo = Command::new(bin_path("generator"))
        .envs(env)
        .arg("upload")
        .arg(&masters)
        .args(["--bucket", EAGER_BUCKET, "--eager", "thumbnail", "--policy"])
        .arg(&policy)
        .output()
        .unwrap();
    assert!(!typo.status.success());
    assert!(String::from_utf8_lossy(&typo.stderr).contains("thumbnail"));
}

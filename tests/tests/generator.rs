//! The generator against moto's S3 and CloudFront APIs: the CLI binary for batch
//! behaviour, the library for the in-process API.
//!
//! Run: `cargo build -p generator --bins && cargo test -p imgedge-tests --test generator`
//! (`moto_server` on PATH). The throughput measurement is `#[ignore]`d: see
//! `upload_throughput_concurrency_1_vs_8` and docs/generator.md.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use imgedge_tests::{bin_path, free_port, local_aws_env, MotoServer};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DATE: &str = "2025-02-01";
const PREFIX: &str = "outputs/2025-02-01/";

async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await
}

async fn s3(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&sdk(endpoint).await)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

async fn bucket(s3: &aws_sdk_s3::Client, name: &str) {
    s3.create_bucket().bucket(name).send().await.unwrap();
}

/// Every key in the bucket, sorted.
async fn keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let out = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    let mut keys: Vec<String> = out
        .contents()
        .iter()
        .map(|o| o.key().unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

/// `count` synth masters of `size` pixels in a fresh directory.
fn synth_dir(count: u32, size: u32, seed: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for index in 1..=count {
        std::fs::write(
            dir.path().join(generator::synth::file_name(index)),
            generator::synth::synth_png(index, size, seed),
        )
        .unwrap();
    }
    dir
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn generator(endpoint: &str, args: &[&str]) -> Output {
    Command::new(bin_path("generator"))
        .envs(local_aws_env(endpoint))
        .args(args)
        .output()
        .unwrap()
}

/// `generator upload DIR --bucket B --date 2025-02-01 --json …extra`, its JSON summary and exit code.
fn upload(
    endpoint: &str,
    dir: &Path,
    bucket: &str,
    extra: &[&str],
) -> (Value, Option<i32>, String) {
    let mut args = vec![
        "upload",
        dir.to_str().unwrap(),
        "--bucket",
        bucket,
        "--date",
        DATE,
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = generator(endpoint, &args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON summary ({e}); stdout: {}; stderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (json, out.status.code(), stderr)
}

fn field<'a>(entries: &'a Value, name: &str) -> Vec<&'a str> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[name].as_str().unwrap())
        .collect()
}

#[test]
fn synth_cli_writes_the_same_bytes_as_the_library_every_time() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [&a, &b] {
        let out = Command::new(bin_path("generator"))
            .args([
                "synth", "--count", "3", "--size", "48", "--seed", "9", "--out",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for index in 1..=3 {
        let name = format!("image_{index:03}.png");
        let first = std::fs::read(a.path().join(&name)).unwrap();
        assert_eq!(first, std::fs::read(b.path().join(&name)).unwrap());
        assert_eq!(first, generator::synth::synth_png(index, 48, 9));
    }
    assert_eq!(std::fs::read_dir(a.path()).unwrap().count(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_upload_then_rerun_skips_then_a_changed_file_becomes_v2() {
    let moto = MotoServer::start();
    let endpoint = moto.endpoint();
    let s3 = s3(&endpoint).await;
    bucket(&s3, "batch").await;
    // Someone else's master already holds number 2: new files continue after it.
    s3.put_object()
        .bucket("batch")
        .key(format!("{PREFIX}image_002.png"))
        .body(generator::synth::synth_png(99, 16, 0).into())
        .send()
        .await
        .unwrap();
    let dir = synth_dir(4, 64, 1);

    let (json, code, stderr) = upload(
        &endpoint,
        dir.path(),
        "batch",
        &["--cdn-domain", "d111.cloudfront.net"],
    );
    assert_eq!(code, Some(0), "{json}\n{stderr}");
    assert_eq!(json["counts"]["uploaded"], 4, "{json}");
    let uploaded = &json["uploaded"];
    // Numbered in file order, after the highest number present.
    assert_eq!(
        field(uploaded, "key"),
        (3..=6)
            .map(|n| format!("{PREFIX}image_{n:03}.png"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        field(uploaded, "file"),
        [
            "image_001.png",
            "image_002.png",
            "image_003.png",
            "image_004.png"
        ]
    );
    assert_eq!(
        uploaded[0]["url"],
        format!("https://d111.cloudfront.net/{PREFIX}image_003.png")
    );
    assert_eq!(
        uploaded[0]["variant_url"],
        format!("https://d111.cloudfront.net/{PREFIX}image_003.png?w=512&fmt=webp")
    );
    assert_eq!(uploaded[0]["version"], 1);
    assert_eq!(uploaded[0]["action"], "new");

    for (index, entry) in (1..=4).zip(uploaded.as_array().unwrap()) {
        let bytes = std::fs::read(dir.path().join(format!("image_{index:03}.png"))).unwrap();
        let key = entry["key"].as_str().unwrap();
        let head = s3
            .head_object()
            .bucket("batch")
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_type(), Some("image/png"));
        assert_eq!(
            head.cache_control(),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(head.content_length(), Some(bytes.len() as i64));
        assert_eq!(head.e_tag(), entry["etag"].as_str());
        let meta = head.metadata().unwrap();
        assert_eq!(meta["width"], "64");
        assert_eq!(meta["height"], "64");
        assert_eq!(meta["sha256"], sha256_hex(&bytes));
        assert_eq!(meta["source-name"], format!("image_{index:03}.png"));
        assert_eq!(entry["sha256"], sha256_hex(&bytes));
    }
    let before = keys(&s3, "batch").await;
    assert_eq!(before.len(), 5);

    // Second run: nothing changed, nothing written.
    let (json, code, _) = upload(&endpoint, dir.path(), "batch", &[]);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["counts"]["skipped"], 4, "{json}");
    assert_eq!(json["counts"]["uploaded"], 0);
    assert_eq!(field(&json["skipped"], "key"), field(uploaded, "key"));
    assert_eq!(
        json["skipped"][0]["url"],
        format!("s3://batch/{PREFIX}image_003.png")
    );
    assert_eq!(keys(&s3, "batch").await, before);

    // A changed file gets a new versioned key; the old one stays as it was.
    let changed = generator::synth::synth_png(7, 64, 1);
    std::fs::write(dir.path().join("image_002.png"), &changed).unwrap();
    let (json, code, _) = upload(&endpoint, dir.path(), "batch", &[]);
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["counts"]["versioned"], 1, "{json}");
    assert_eq!(json["counts"]["skipped"], 3);
    let v2 = format!("{PREFIX}image_004_v2.png");
    assert_eq!(field(&json["versioned"], "key"), [v2.as_str()]);
    assert_eq!(json["versioned"][0]["version"], 2);
    let head = s3
        .head_object()
        .bucket("batch")
        .key(&v2)
        .send()
        .await
        .unwrap();
    assert_eq!(head.metadata().unwrap()["sha256"], sha256_hex(&changed));
    assert_eq!(
        head.cache_control(),
        Some("public, max-age=31536000, immutable")
    );
    let old = s3
        .head_object()
        .bucket("batch")
        .key(format!("{PREFIX}image_004.png"))
        .send()
        .await
        .unwrap();
    assert_ne!(old.metadata().unwrap()["sha256"], sha256_hex(&changed));
    assert_eq!(keys(&s3, "batch").await.len(), 6);
}

async fn create_distribution(endpoint: &str) -> String {
    use aws_sdk_cloudfront::types::*;
    let cloudfront = aws_sdk_cloudfront::Client::new(&sdk(endpoint).await);
    let origin = Origin::builder()
        .id("bucket")
        .domain_name("overwrite.s3.amazonaws.com")
        .s3_origin_config(S3OriginConfig::builder().origin_access_identity("").build())
        .build()
        .unwrap();
    let config = DistributionConfig::builder()
        .caller_reference(format!("test-{}", free_port()))
        .comment("imgedge generator test")
        .enabled(true)
        .origins(
            Origins::builder()
                .quantity(1)
                .items(origin)
                .build()
                .unwrap(),
        )
        .default_cache_behavior(
            DefaultCacheBehavior::builder()
                .target_origin_id("bucket")
                .viewer_protocol_policy(ViewerProtocolPolicy::RedirectToHttps)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let out = cloudfront
        .create_distribution()
        .distribution_config(config)
        .send()
        .await
        .unwrap();
    out.distribution().unwrap().id().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn overwrite_replaces_in_place_deletes_variants_and_invalidates_once() {
    let moto = MotoServer::start();
    let endpoint = moto.endpoint();
    let s3 = s3(&endpoint).await;
    bucket(&s3, "overwrite").await;
    let distribution = create_distribution(&endpoint).await;
    let dir = synth_dir(3, 48, 2);
    let (json, code, _) = upload(&endpoint, dir.path(), "overwrite", &[]);
    assert_eq!(
        (code, &json["counts"]["uploaded"]),
        (Some(0), &Value::from(3)),
        "{json}"
    );

    // Variants made by the edge for every master, by this transform version and by v1
    // (before the version bump): a replaced master's variants of every version are stale.
    const _: () = assert!(
        edge::key::TRANSFORM_VERSION >= 2,
        "the test needs two versions"
    );
    let version = |v: u32, n: u32, q: &str| format!("_variants/v{v}/{PREFIX}image_{n:03}.png/{q}");
    let variant = |n: u32, q: &str| version(edge::key::TRANSFORM_VERSION, n, q);
    for n in 1..=3 {
        for key in [
            variant(n, "w=512,fmt=webp.webp"),
            variant(n, "w=64.png"),
            variant(n, "w=512,fmt=avif.avif"),
            version(1, n, "w=512,fmt=webp.webp"),
            version(1, n, "error.json"),
        ] {
            s3.put_object()
                .bucket("overwrite")
                .key(key)
                .body(b"variant".to_vec().into())
                .send()
                .await
                .unwrap();
        }
    }
    // Change masters 1 and 3.
    let new1 = generator::synth::synth_png(11, 48, 2);
    let new3 = generator::synth::synth_png(13, 48, 2);
    std::fs::write(dir.path().join("image_001.png"), &new1).unwrap();
    std::fs::write(dir.path().join("image_003.png"), &new3).unwrap();

    let (json, code, stderr) = upload(
        &endpoint,
        dir.path(),
        "overwrite",
        &["--overwrite", "--distribution-id", &distribution],
    );
    assert_eq!(code, Some(0), "{json}\n{stderr}");
    assert_eq!(json["counts"]["overwritten"], 2, "{json}");
    assert_eq!(json["counts"]["skipped"], 1);
    let k1 = format!("{PREFIX}image_001.png");
    let k3 = format!("{PREFIX}image_003.png");
    assert_eq!(
        field(&json["overwritten"], "key"),
        [k1.as_str(), k3.as_str()]
    );

    // Replaced in place, with the cache policy of overwritable keys.
    for (key, bytes) in [(&k1, &new1), (&k3, &new3)] {
        let head = s3
            .head_object()
            .bucket("overwrite")
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.metadata().unwrap()["sha256"], sha256_hex(bytes));
        assert_eq!(head.cache_control(), Some("public, max-age=3600"));
    }
    // Variants of overwritten masters are gone, v1's and the current version's; master 2's
    // are untouched; no _v2 keys.
    let all = keys(&s3, "overwrite").await;
    let mut expected = vec![
        variant(2, "w=512,fmt=webp.webp"),
        variant(2, "w=64.png"),
        variant(2, "w=512,fmt=avif.avif"),
        version(1, 2, "w=512,fmt=webp.webp"),
        version(1, 2, "error.json"),
    ];
    expected.extend((1..=3).map(|n| format!("{PREFIX}image_{n:03}.png")));
    expected.sort();
    assert_eq!(all, expected);

    // Exactly one invalidation, with both paths.
    let id = json["invalidation"]["id"]
        .as_str()
        .expect("an invalidation id");
    let cloudfront = aws_sdk_cloudfront::Client::new(&sdk(&endpoint).await);
    let list = cloudfront
        .list_invalidations()
        .distribution_id(&distribution)
        .send()
        .await
        .unwrap();
    let items = list.invalidation_list().unwrap().items();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].id(), id);
    let got = cloudfront
        .get_invalidation()
        .distribution_id(&distribution)
        .id(id)
        .send()
        .await
        .unwrap();
    let mut paths = got
        .invalidation()
        .unwrap()
        .invalidation_batch()
        .unwrap()
        .paths()
        .unwrap()
        .items()
        .to_vec();
    paths.sort();
    assert_eq!(paths, [format!("/{k1}*"), format!("/{k3}*")]);
    assert_eq!(json["invalidation"]["paths"], serde_json::json!(paths));

    // The manual command makes a second one.
    let out = generator(
        &endpoint,
        &[
            "invalidate",
            "--distribution-id",
            &distribution,
            "/outputs/*",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = cloudfront
        .list_invalidations()
        .distribution_id(&distribution)
        .send()
        .await
        .unwrap();
    assert_eq!(list.invalidation_list().unwrap().items().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_non_png_fails_alone_and_the_exit_status_says_so() {
    let moto = MotoServer::start();
    let endpoint = moto.endpoint();
    let s3 = s3(&endpoint).await;
    bucket(&s3, "mixed").await;
    let dir = synth_dir(2, 32, 3);
    std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
    std::fs::write(dir.path().join("fake.png"), b"\x89PNG but not really").unwrap();

    let (json, code, _) = upload(&endpoint, dir.path(), "mixed", &[]);
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["ok"], false);
    assert_eq!(json["counts"]["uploaded"], 2, "{json}");
    assert_eq!(field(&json["failed"], "file"), ["fake.png", "notes.txt"]);
    for error in field(&json["failed"], "error") {
        assert!(
            error.contains("not a PNG") && error.contains("not uploaded"),
            "{error}"
        );
    }
    // Only the two real PNGs are in the bucket, as image_001 and image_002.
    assert_eq!(
        keys(&s3, "mixed").await,
        [
            format!("{PREFIX}image_001.png"),
            format!("{PREFIX}image_002.png")
        ]
    );
}

/// A scripted answer: status, extra headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);

/// One request as a scripted S3 endpoint saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A loopback HTTP endpoint answering S3 requests from a script and recording them: for
/// what moto cannot show (503s on demand, the exact headers of a PUT).
async fn scripted_s3(answer: fn(&Seen) -> Answer) -> (String, Arc<std::sync::Mutex<Vec<Seen>>>) {
    scripted_s3_slow(answer, Duration::ZERO).await
}

/// [`scripted_s3`] that takes `put_delay` to answer each PUT.
async fn scripted_s3_slow(
    answer: fn(&Seen) -> Answer,
    put_delay: Duration,
) -> (String, Arc<std::sync::Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                let head_end = loop {
                    if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let mut lines = head.split("\r\n");
                let mut request_line = lines.next().unwrap().split(' ');
                let (method, path) = (
                    request_line.next().unwrap().to_string(),
                    request_line.next().unwrap().to_string(),
                );
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                    .collect();
                let mut request = Seen {
                    method,
                    path,
                    headers,
                    body: Vec::new(),
                };
                let length: usize = request
                    .header("content-length")
                    .map_or(0, |v| v.parse().unwrap());
                let mut body = buf[head_end..].to_vec();
                while body.len() < length {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => body.extend_from_slice(&chunk[..n]),
                    }
                }
                request.body = body;
                if request.method == "PUT" {
                    tokio::time::sleep(put_delay).await;
                }
                let (status, extra, body) = answer(&request);
                log.lock().unwrap().push(request);
                let mut response = format!(
                    "HTTP/1.1 {status} Scripted\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n",
                    body.len()
                );
                for (name, value) in extra {
                    response.push_str(&format!("{name}: {value}\r\n"));
                }
                response.push_str("\r\n");
                response.push_str(&body);
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (endpoint, seen)
}

fn service_unavailable(_: &Seen) -> Answer {
    let body = "<Error><Code>ServiceUnavailable</Code><Message>down for the test</Message></Error>";
    (503, vec![], body.to_string())
}

/// An empty bucket that accepts every PUT.
fn empty_bucket(seen: &Seen) -> Answer {
    match seen.method.as_str() {
        "GET" => (
            200,
            vec![],
            "<ListBucketResult><Name>rec</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>"
                .to_string(),
        ),
        "PUT" => (200, vec![("ETag", "\"recorded\"".to_string())], String::new()),
        _ => (400, vec![], "<Error><Code>Unexpected</Code></Error>".to_string()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn puts_carry_the_sha256_checksum_metadata_and_the_condition() {
    // moto neither stores nor verifies x-amz-checksum-sha256, so check the wire instead.
    let (endpoint, seen) = scripted_s3(empty_bucket).await;
    let dir = synth_dir(2, 16, 6);
    let (json, code, _) = upload(&endpoint, dir.path(), "rec", &[]);
    assert_eq!(code, Some(0), "{json}");
    let mut puts: Vec<Seen> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method == "PUT")
        .cloned()
        .collect();
    assert_eq!(puts.len(), 2);
    puts.sort_by(|a, b| a.path.cmp(&b.path));
    for (index, put) in (1..=2).zip(&puts) {
        let bytes = generator::synth::synth_png(index, 16, 6);
        assert_eq!(
            put.path.split('?').next(),
            Some(format!("/rec/{PREFIX}image_{index:03}.png").as_str())
        );
        assert_eq!(put.body, bytes);
        let digest = Sha256::digest(&bytes);
        assert_eq!(
            put.header("x-amz-checksum-sha256"),
            Some(
                base64::engine::general_purpose::STANDARD
                    .encode(digest)
                    .as_str()
            )
        );
        assert_eq!(
            put.header("x-amz-meta-sha256"),
            Some(hex::encode(digest).as_str())
        );
        assert_eq!(put.header("if-none-match"), Some("*"));
        assert_eq!(put.header("content-type"), Some("image/png"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_answering_503_is_retried_then_reported_with_nothing_uploaded() {
    let (endpoint, seen) = scripted_s3(service_unavailable).await;
    let dir = synth_dir(3, 16, 4);
    let started = Instant::now();
    let (json, code, _) = upload(
        &endpoint,
        dir.path(),
        "down",
        &[
            "--concurrency",
            "1",
            "--max-attempts",
            "3",
            "--retry-backoff-ms",
            "20",
        ],
    );
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["counts"]["failed"], 3, "{json}");
    for key in ["uploaded", "versioned", "overwritten", "skipped"] {
        assert_eq!(json[key], serde_json::json!([]), "{key}");
    }
    for error in field(&json["failed"], "error") {
        assert!(
            error.contains("ServiceUnavailable") && error.contains("3 attempts"),
            "{error}"
        );
    }
    // Every file tried to read the prefix 3 times (1 + 2 retries), no more.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 9, "{seen:?}");
    assert!(
        seen.iter()
            .all(|r| r.method == "GET" && r.path.contains("list-type=2")),
        "{seen:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_not_listening_is_a_clear_error() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let dir = synth_dir(2, 16, 4);
    let (json, code, _) = upload(
        &endpoint,
        dir.path(),
        "down",
        &["--max-attempts", "2", "--retry-backoff-ms", "10"],
    );
    assert_eq!(code, Some(1), "{json}");
    assert_eq!(json["counts"]["failed"], 2);
    assert_eq!(json["uploaded"], serde_json::json!([]));
    for error in field(&json["failed"], "error") {
        assert!(
            error.to_lowercase().contains("connection refused"),
            "{error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn library_upload_rejects_non_images_skips_repeats_and_dry_runs_write_nothing() {
    let moto = MotoServer::start();
    let endpoint = moto.endpoint();
    let s3 = s3(&endpoint).await;
    bucket(&s3, "library").await;
    let config = |dry_run| {
        let endpoint = endpoint.clone();
        async move {
            let mut config = generator::Config::from_env("library", PREFIX).await;
            config.aws = sdk(&endpoint).await;
            config.dry_run = dry_run;
            config
        }
    };

    // A dry run plans keys but writes nothing.
    let dry = generator::Uploader::new(config(true).await);
    let planned = dry
        .upload(generator::synth::synth_png(1, 24, 5), "cat-17")
        .await
        .unwrap();
    assert_eq!(planned.key, format!("{PREFIX}image_001.png"));
    assert_eq!(planned.action, generator::Action::New);
    assert!(keys(&s3, "library").await.is_empty());

    let uploader = generator::Uploader::new(config(false).await);
    let err = uploader
        .upload(b"GIF89a not a png".to_vec(), "cat-18")
        .await
        .unwrap_err();
    assert!(
        matches!(err, generator::UploadError::NotAnImage { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("cat-18: not a PNG"), "{err}");
    assert!(keys(&s3, "library").await.is_empty());

    let png = generator::synth::synth_png(2, 40, 5);
    let first = uploader.upload(png.clone(), "cat-17").await.unwrap();
    assert_eq!((first.width, first.height, first.version), (40, 40, 1));
    assert_eq!(first.action, generator::Action::New);
    assert_eq!(first.sha256, sha256_hex(&png));
    let again = uploader.upload(png.clone(), "cat-17").await.unwrap();
    assert_eq!(again.action, generator::Action::Skipped);
    assert_eq!(
        (again.key.as_str(), again.etag.as_str()),
        (first.key.as_str(), first.etag.as_str())
    );
    // A fresh uploader (another process) reads the same state back from the bucket.
    let other = generator::Uploader::new(config(false).await);
    let seen = other.upload(png, "cat-17").await.unwrap();
    assert_eq!(
        (seen.action, seen.key.as_str()),
        (generator::Action::Skipped, first.key.as_str())
    );
    let changed = other
        .upload(generator::synth::synth_png(3, 40, 5), "cat-17")
        .await
        .unwrap();
    assert_eq!(
        (changed.action, changed.version),
        (generator::Action::Versioned, 2)
    );
    assert_eq!(changed.key, format!("{PREFIX}image_001_v2.png"));
    // Unicode name hints survive the metadata round trip (percent-encoded).
    let named = other
        .upload(generator::synth::synth_png(4, 40, 5), "café №1.png")
        .await
        .unwrap();
    let head = s3
        .head_object()
        .bucket("library")
        .key(&named.key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.metadata().unwrap()["source-name"],
        "caf%C3%A9 %E2%84%961.png"
    );
}

/// Upload throughput, 100 × 1024² masters, concurrency 1 vs 8 (numbers in docs/generator.md).
/// `cargo test --release -p imgedge-tests --test generator -- --ignored --nocapture throughput`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement, not a test: takes about a minute"]
async fn upload_throughput_concurrency_1_vs_8() {
    let moto = MotoServer::start();
    let endpoint = moto.endpoint();
    let s3 = s3(&endpoint).await;
    let dir = tempfile::tempdir().unwrap();
    let mut total = 0usize;
    for index in 1..=100 {
        let png = generator::synth::synth_png(index, 1024, 0);
        total += png.len();
        std::fs::write(dir.path().join(generator::synth::file_name(index)), png).unwrap();
    }
    for concurrency in ["1", "8"] {
        let name = format!("throughput-{concurrency}");
        bucket(&s3, &name).await;
        let started = Instant::now();
        let (json, code, _) = upload(
            &endpoint,
            dir.path(),
            &name,
            &["--concurrency", concurrency],
        );
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(
            (code, &json["counts"]["uploaded"]),
            (Some(0), &Value::from(100)),
            "{json}"
        );
        println!(
            "concurrency {concurrency}: 100 masters, {:.1} MB in {seconds:.2} s = {:.1} images/s, {:.1} MB/s",
            total as f64 / 1e6,
            100.0 / seconds,
            total as f64 / 1e6 / seconds
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_stops_cleanly_and_reports_only_what_was_uploaded() {
    let (endpoint, seen) = scripted_s3_slow(empty_bucket, Duration::from_millis(400)).await;
    let dir = synth_dir(8, 16, 8);
    let child = Command::new(bin_path("generator"))
        .envs(local_aws_env(&endpoint))
        .args([
            "upload",
            dir.path().to_str().unwrap(),
            "--bucket",
            "rec",
            "--date",
            DATE,
            "--json",
            "--concurrency",
            "1",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once uploading is under way (the signal handler is set before that).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.lock().unwrap().iter().any(|r| r.method == "PUT") {
        assert!(Instant::now() < deadline, "no PUT arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(130), "{json}");
    assert_eq!(json["interrupted"], true);
    let uploaded = json["counts"]["uploaded"].as_u64().unwrap();
    let not_attempted = json["counts"]["not_attempted"].as_u64().unwrap();
    assert!(uploaded >= 1 && not_attempted >= 1, "{json}");
    assert_eq!(uploaded + not_attempted, 8, "{json}");
    // Every file reported uploaded was PUT and answered; nothing else was PUT.
    let puts: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| {
            r.path
                .split('?')
                .next()
                .unwrap()
                .trim_start_matches("/rec/")
                .to_string()
        })
        .collect();
    let mut reported: Vec<String> = field(&json["uploaded"], "key")
        .iter()
        .map(|k| k.to_string())
        .collect();
    reported.sort();
    let mut put_keys = puts.clone();
    put_keys.sort();
    assert_eq!(reported, put_keys);
}

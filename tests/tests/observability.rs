//! What an operator sees of `edge serve` (DESIGN.md §11): one JSON log line per image
//! request with the contract's fields and never a `sig`, `IMGEDGE_LOG_FORMAT`, `GET /metrics`
//! parsed by Prometheus' own Python parsers, and `Server-Timing` naming each store call.

mod common;

use std::process::Command;

use common::*;
use edge::sign::SigningKeys;
use image::ImageFormat;

const KEY: &str = "0123456789abcdef0123456789abcdef";
const LOG_FIELDS: [&str; 17] = [
    "level",
    "message",
    "request_id",
    "key",
    "query",
    "outcome",
    "status",
    "bytes_in",
    "bytes_out",
    "total_ms",
    "fetch_ms",
    "decode_ms",
    "resize_ms",
    "encode_ms",
    "store_ms",
    "store_round_trips",
    "message",
];

fn lines(log: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

#[test]
fn json_request_lines_metrics_and_server_timing() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    put(&bucket, "a.png", &gradient(300, 200, ImageFormat::Png));
    let keys_file = dir.path().join("keys");
    std::fs::write(&keys_file, KEY).unwrap();
    let log = dir.path().join("stderr.log");
    let edge = EdgeServer::start_logging(
        &bucket,
        &["--signing-keys", keys_file.to_str().unwrap()],
        &[("IMGEDGE_LOG_FORMAT", "json".to_string())],
        &log,
    );
    let keys = SigningKeys::parse(KEY).unwrap();
    let signed = |q: &str| format!("/a.png?{}", keys.signed_query("/a.png", q));

    let built = edge.get(&signed("w=100&fmt=webp"));
    assert_eq!(built.status, 200);
    // Every store call is named; the first step's three calls share one round trip.
    let timing = built.header("server-timing").unwrap().to_string();
    for name in [
        "head-master",
        "get-variant",
        "get-marker",
        "get-master",
        "put-variant",
        "decode",
    ] {
        assert!(
            timing.contains(&format!("{name};dur=")),
            "{name} in {timing}"
        );
    }
    let hit = edge.get(&signed("w=100&fmt=webp"));
    assert_eq!(hit.x_cache(), "Hit from imgedge");
    // Every answer says where its time went: the lookup of a hit, the viewer step of a 400.
    assert!(hit
        .header("server-timing")
        .unwrap()
        .starts_with("edge-cache;desc=hit;dur="));
    assert_eq!(edge.get("/a.png").status, 200);
    let refused = edge.get(&signed("w=0"));
    assert_eq!(refused.status, 400);
    assert!(refused
        .header("server-timing")
        .unwrap()
        .starts_with("viewer;dur="));
    assert_eq!(edge.get("/a.png?w=100").status, 403);
    assert_eq!(edge.get(&signed("w=50&fmt=png")).status, 200);
    // A 404 from the origin, then the same 404 from the edge cache: both count as not_found.
    let missing = format!("/missing.png?{}", keys.signed_query("/missing.png", "w=10"));
    assert_eq!(edge.get(&missing).status, 404);
    let cached_404 = edge.get(&missing);
    assert_eq!(cached_404.status, 404);
    assert_eq!(cached_404.x_cache(), "Hit from imgedge");
    // A `sig` that is not last is refused, and still never logged.
    assert_eq!(edge.get("/a.png?sig=NOTLAST&w=100").status, 403);
    let metrics = edge.get("/metrics");
    assert_eq!(metrics.status, 200);
    let openmetrics = edge.get_with(
        "/metrics",
        &[(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )],
    );
    drop(edge);

    let records = lines(&log);
    let outcomes: Vec<&str> = records
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "built",
            "hit",
            "master",
            "invalid_parameter",
            "invalid_signature",
            "built",
            "not_found",
            "not_found",
            "invalid_signature",
        ]
    );
    for r in &records {
        for field in LOG_FIELDS {
            // bytes_out is absent for errors and masters (the origin does not read those).
            if field == "bytes_out" && (r["status"] != 200 || r["outcome"] == "master") {
                continue;
            }
            assert!(r.get(field).is_some(), "{field} missing in {r}");
        }
        assert_eq!(r["message"], "request");
        assert!(!r.to_string().contains("sig="), "no sig in a log line: {r}");
        assert!(
            !r.to_string().contains("NOTLAST"),
            "no sig in a log line: {r}"
        );
        assert!(!r.to_string().contains(KEY), "no secret in a log line: {r}");
    }
    let first = &records[0];
    assert_eq!(first["key"], "a.png");
    assert_eq!(first["query"], "w=100&fmt=webp");
    assert_eq!(first["status"], 200);
    // HEAD master ∥ GET variant ∥ GET marker, then GET master, then PUT: 3 trips at S3
    // (checked through the packaged bootstrap against moto, emf.test.mjs). A local file
    // store may finish a call before the next one starts, so here the first step counts
    // as 1 to 3 of them.
    let trips = first["store_round_trips"].as_u64().unwrap();
    assert!((3..=5).contains(&trips), "{first}");
    assert!(
        first["bytes_in"].as_u64().unwrap() > 1000,
        "the master was read"
    );
    assert!(first["bytes_out"].as_u64().unwrap() > 0);
    assert!(first["decode_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(records[3]["status"], 400);
    assert_eq!(records[3]["level"], "warn");

    // Prometheus' own parsers read the exposition: classic text by default, OpenMetrics
    // when the scraper asks for it (as Prometheus does).
    let content_type = |r: &Reply| r.header("content-type").unwrap().to_string();
    assert_eq!(
        content_type(&metrics),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(content_type(&openmetrics).starts_with("application/openmetrics-text; version=1.0.0"));
    let classic = parse_metrics("classic", &metrics.body);
    assert_eq!(classic, parse_metrics("openmetrics", &openmetrics.body));
    let samples = classic;
    let sample = |name: &str| {
        samples[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name} in {samples}"))
    };
    assert_eq!(sample(r#"imgedge_builds_total{}"#), 2.0);
    assert_eq!(sample(r#"imgedge_requests_total{"outcome": "hit"}"#), 2.0);
    assert_eq!(sample(r#"imgedge_errors_total{"code": "not_found"}"#), 2.0);
    assert!(
        samples
            .get(r#"imgedge_errors_total{"code": "hit"}"#)
            .is_none(),
        "{samples}"
    );
    assert_eq!(
        sample(r#"imgedge_errors_total{"code": "invalid_signature"}"#),
        2.0
    );
    assert_eq!(
        sample(r#"imgedge_edge_cache_requests_total{"result": "miss"}"#),
        4.0
    );
    assert_eq!(sample(r#"imgedge_render_duration_seconds_count{}"#), 2.0);
    assert_eq!(sample(r#"imgedge_origin_requests_in_flight{}"#), 0.0);
}

/// Samples (`name{labels}` → value) as one of Prometheus' Python parsers reads `body`.
fn parse_metrics(parser: &str, body: &[u8]) -> serde_json::Value {
    let text = String::from_utf8(body.to_vec()).unwrap();
    let parsed = Command::new("python")
        .args([
            "-c",
            r#"
import sys, json
if sys.argv[1] == "classic":
    from prometheus_client.parser import text_string_to_metric_families as parse
else:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse
out = {}
for family in parse(sys.stdin.read()):
    for s in family.samples:
        out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
print(json.dumps(out))
"#,
            parser,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .expect("python with prometheus_client (scripts/tools.sh installs it)");
    assert!(
        parsed.status.success(),
        "{parser}: {}\n{text}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    serde_json::from_slice(&parsed.stdout).unwrap()
}

#[test]
fn text_format_and_a_bad_format_value() {
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), "a.png", &gradient(60, 40, ImageFormat::Png));
    let log = dir.path().join("stderr.log");
    let edge = EdgeServer::start_logging(
        dir.path(),
        &[],
        &[("IMGEDGE_LOG_FORMAT", "text".to_string())],
        &log,
    );
    assert_eq!(edge.get("/a.png?w=30").status, 200);
    drop(edge);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("/a.png?w=30 → 200 built"), "{text}");

    let out = Command::new(imgedge_tests::bin_path("edge"))
        .args(["serve", "--no-seed", "--store"])
        .arg(dir.path())
        .env("IMGEDGE_LOG_FORMAT", "yaml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("json or text"));
}

//! The seed's whole flow on one machine: `generator synth` stands in for the model,
//! `generator upload` puts the masters into an S3 bucket (moto), and `edge serve --store
//! s3://…` serves a `?w=512&fmt=webp` variant of an uploaded key.

mod common;

use std::process::Command;

use common::*;
use imgedge_tests::{bin_path, local_aws_env, MotoServer};

const BUCKET: &str = "imgedge-flow";

#[test]
fn synth_upload_then_edge_serves_a_variant_from_s3() {
    let moto = MotoServer::start();
    let env = local_aws_env(&moto.endpoint());
    let created = reqwest::blocking::Client::new()
        .put(format!("{}/{BUCKET}", moto.endpoint()))
        .send()
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());

    let masters = tempfile::tempdir().unwrap();
    let synth = Command::new(bin_path("generator"))
        .args([
            "synth", "--count", "3", "--size", "1024", "--seed", "7", "--out",
        ])
        .arg(masters.path())
        .output()
        .unwrap();
    assert!(
        synth.status.success(),
        "{}",
        String::from_utf8_lossy(&synth.stderr)
    );

    let upload = Command::new(bin_path("generator"))
        .envs(env.clone())
        .arg("upload")
        .arg(masters.path())
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
    let master = std::fs::read(masters.path().join(generator::synth::file_name(2))).unwrap();
    assert_eq!(edge.get("/outputs/2025-02-01/image_002.png").body, master);
}

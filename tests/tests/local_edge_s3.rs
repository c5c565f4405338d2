//! `edge serve --store s3://bucket/prefix` against moto's S3-protocol server: the same
//! emulator over a real S3 API, the variant stored with its metadata, and a store outage
//! answered 502 and recovered from.

mod common;

use common::*;
use image::ImageFormat;
use imgedge_tests::{local_aws_env, MotoServer};

const BUCKET: &str = "imgedge-e2e";

/// Create the bucket and put one master through the plain S3 REST API (moto does not
/// check signatures).
fn seed(moto: &MotoServer, master: &[u8]) {
    let http = reqwest::blocking::Client::new();
    let bucket = http
        .put(format!("{}/{BUCKET}", moto.endpoint()))
        .send()
        .unwrap();
    assert!(bucket.status().is_success(), "{}", bucket.status());
    let put = http
        .put(format!(
            "{}/{BUCKET}/site/outputs/2025-02-01/image_001.png",
            moto.endpoint()
        ))
        .header("content-type", "image/png")
        .body(master.to_vec())
        .send()
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
}

#[test]
fn serves_variants_from_an_s3_bucket_and_survives_an_outage() {
    let mut moto = MotoServer::start();
    let master = gradient(640, 480, ImageFormat::Png);
    seed(&moto, &master);
    let env = local_aws_env(&moto.endpoint());
    let edge = EdgeServer::start_s3(&format!("s3://{BUCKET}/site"), &[], &env);

    let url = "/outputs/2025-02-01/image_001.png?w=320&fmt=webp";
    let miss = edge.get(url);
    assert_eq!(miss.status, 200, "{}", String::from_utf8_lossy(&miss.body));
    assert!(is_webp(&miss.body));
    assert_eq!(miss.dimensions(), (320, 240));
    assert_eq!(miss.x_cache(), "Miss from imgedge");
    assert_eq!(edge.get(url).x_cache(), "Hit from imgedge");

    // The variant is in the bucket under the prefix, with the master's ETag as metadata.
    let http = reqwest::blocking::Client::new();
    let master_head = http
        .head(format!(
            "{}/{BUCKET}/site/outputs/2025-02-01/image_001.png",
            moto.endpoint()
        ))
        .send()
        .unwrap();
    let stored = http
        .get(format!(
            "{}/{BUCKET}/site/_variants/v1/outputs/2025-02-01/image_001.png/w=320,fmt=webp.webp",
            moto.endpoint()
        ))
        .send()
        .unwrap();
    assert_eq!(stored.status(), 200);
    assert_eq!(
        stored.headers().get("x-amz-meta-source-etag"),
        master_head.headers().get("etag")
    );
    assert_eq!(stored.headers()["content-type"], "image/webp");
    assert_eq!(stored.bytes().unwrap().to_vec(), miss.body);

    // The master itself, unchanged.
    assert_eq!(edge.get("/outputs/2025-02-01/image_001.png").body, master);

    // Outage: a variant not cached yet → 502, not cached.
    moto.stop();
    let other = "/outputs/2025-02-01/image_001.png?w=100&fmt=jpeg";
    assert_error(&edge.get(other), 502, "store_error", "moto stopped");
    // What the edge cached keeps being served.
    assert_eq!(edge.get(url).x_cache(), "Hit from imgedge");

    // Back (moto restarts empty): the same edge and client work again.
    let moto = MotoServer::start_on(moto.port);
    seed(&moto, &master);
    let reply = edge.get(other);
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(is_jpeg(&reply.body));
    assert_eq!(reply.dimensions(), (100, 75));
}

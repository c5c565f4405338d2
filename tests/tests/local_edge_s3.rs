//! `edge serve --store s3://bucket/prefix` against moto's S3-protocol server: the same
//! emulator over a real S3 API, the variant stored with its metadata, and a store outage
//! answered 502 and recovered from.

mod common;

use common::*;
use edge::store::{S3Store, Store};
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

    // The variant is in the bucket under the prefix, with the master's ETag as metadata
    // (read with the SDK: moto refuses anonymous reads of objects the edge wrote).
    for (k, v) in &env {
        std::env::set_var(k, v);
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (master_head, stored) = runtime.block_on(async {
        let store =
            S3Store::connect(BUCKET, "site/", Some("us-east-1"), Some(&moto.endpoint())).await;
        let master = store
            .head("outputs/2025-02-01/image_001.png")
            .await
            .unwrap()
            .unwrap();
        let variant = store
            .get("_variants/v2/outputs/2025-02-01/image_001.png/w=320,fmt=webp.webp")
            .await
            .unwrap()
            .expect("variant stored");
        (master, variant)
    });
    assert_eq!(
        stored.head.meta.metadata.get("source-etag"),
        Some(&master_head.etag)
    );
    assert_eq!(stored.head.meta.content_type.as_deref(), Some("image/webp"));
    assert_eq!(stored.body.to_vec(), miss.body);

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

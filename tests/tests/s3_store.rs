//! `S3Store` over HTTP against moto's S3 server: the same conformance suite as the
//! filesystem and memory stores, prefixes, error mapping and behaviour when the server
//! dies, hangs and comes back.

use std::net::TcpListener;
use std::sync::Once;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use bytes::Bytes;
use edge::store::{conformance, PutOptions, PutOutcome, S3Store, Store, StoreError};
use imgedge_tests::{local_aws_env, MotoServer};

const BUCKET: &str = "imgedge-test";

/// `S3Store::connect` reads credentials from the default chain, as in production.
/// Every test calls this first, before any other thread reads the environment.
fn fake_credentials() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (name, value) in local_aws_env("unused") {
            if name != "AWS_ENDPOINT_URL" {
                std::env::set_var(name, value);
            }
        }
    });
}

/// A plain client for arranging and inspecting the bucket behind the store's back.
fn raw_client(endpoint: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .force_path_style(true)
            .build(),
    )
}

async fn create_bucket(endpoint: &str) {
    raw_client(endpoint)
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("create bucket");
}

async fn store(endpoint: &str, prefix: &str) -> S3Store {
    S3Store::connect(BUCKET, prefix, Some("us-east-1"), Some(endpoint)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_against_moto() {
    fake_credentials();
    let moto = MotoServer::start();
    create_bucket(&moto.endpoint()).await;
    let store = store(&moto.endpoint(), "").await;
    let started = Instant::now();
    conformance::run(&store).await;
    eprintln!("S3 conformance suite: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixed_store_writes_under_its_prefix_and_lists_without_it() {
    fake_credentials();
    let moto = MotoServer::start();
    let endpoint = moto.endpoint();
    create_bucket(&endpoint).await;
    let raw = raw_client(&endpoint);
    raw.put_object()
        .bucket(BUCKET)
        .key("tenant/ax.png")
        .body(Bytes::from_static(b"outside").into())
        .send()
        .await
        .unwrap();
    let store = store(&endpoint, "tenant/a").await;
    assert_eq!(store.describe(), "s3://imgedge-test/tenant/a/");
    store
        .put(
            "x.png",
            Bytes::from_static(b"inside"),
            PutOptions::default(),
        )
        .await
        .unwrap();

    let listed = raw.list_objects_v2().bucket(BUCKET).send().await.unwrap();
    let mut raw_keys: Vec<_> = listed.contents().iter().filter_map(|o| o.key()).collect();
    raw_keys.sort();
    assert_eq!(raw_keys, ["tenant/a/x.png", "tenant/ax.png"]);

    assert_eq!(store.list("").await.unwrap(), ["x.png"]);
    assert_eq!(
        &store.get("x.png").await.unwrap().unwrap().body[..],
        b"inside"
    );
    assert_eq!(store.delete_prefix("").await.unwrap(), 1);
    // The neighbour that shares the string prefix `tenant/a` survives.
    let head = raw
        .head_object()
        .bucket(BUCKET)
        .key("tenant/ax.png")
        .send()
        .await;
    assert!(head.is_ok(), "object outside the store prefix was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_is_an_error_not_a_missing_object() {
    fake_credentials();
    let moto = MotoServer::start();
    let store = store(&moto.endpoint(), "").await;
    // HEAD answers carry no error code, so a missing bucket's 404 cannot be told from
    // a missing key there (documented); get, list and put name `NoSuchBucket`.
    for r in [
        store.get("a.png").await.map(|_| ()),
        store.list("").await.map(|_| ()),
    ] {
        assert!(matches!(r, Err(StoreError::Io(_))), "{r:?}");
    }
    let put = store
        .put("a.png", Bytes::from_static(b"x"), PutOptions::default())
        .await;
    assert!(matches!(put, Err(StoreError::Io(_))), "{put:?}");
}

async fn timed<F: std::future::Future<Output = Result<(), StoreError>>>(
    f: F,
) -> (Duration, Result<(), StoreError>) {
    let started = Instant::now();
    let result = f.await;
    (started.elapsed(), result)
}

/// Every operation must fail with a `StoreError` within `limit`, each timed alone.
async fn assert_all_fail_within(store: &S3Store, limit: Duration, what: &str) {
    let put = PutOptions::default();
    let ops = [
        (
            "get",
            timed(async { store.get("a.png").await.map(|_| ()) }).await,
        ),
        (
            "head",
            timed(async { store.head("a.png").await.map(|_| ()) }).await,
        ),
        (
            "put",
            timed(async {
                let body = Bytes::from_static(b"x");
                store.put("b.png", body, put).await.map(|_| ())
            })
            .await,
        ),
        (
            "list",
            timed(async { store.list("").await.map(|_| ()) }).await,
        ),
        (
            "delete_prefix",
            timed(async { store.delete_prefix("").await.map(|_| ()) }).await,
        ),
    ];
    for (op, (took, result)) in ops {
        eprintln!("{what}: {op} failed after {took:?}: {result:?}");
        assert!(matches!(result, Err(StoreError::Io(_))), "{op}: {result:?}");
        assert!(took < limit, "{op} took {took:?} against {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_fails_fast_and_the_same_store_recovers_on_restart() {
    fake_credentials();
    let mut moto = MotoServer::start();
    let endpoint = moto.endpoint();
    create_bucket(&endpoint).await;
    let store = store(&endpoint, "").await;
    store
        .put(
            "a.png",
            Bytes::from_static(b"before"),
            PutOptions::default(),
        )
        .await
        .unwrap();

    moto.stop();
    let started = Instant::now();
    assert_all_fail_within(&store, Duration::from_secs(15), "stopped server").await;
    eprintln!(
        "all operations against a stopped server: {:?}",
        started.elapsed()
    );

    // moto keeps state in memory: the restarted server is empty.
    let _moto = MotoServer::start_on(moto.port);
    create_bucket(&endpoint).await;
    let outcome = store
        .put(
            "a.png",
            Bytes::from_static(b"after"),
            PutOptions {
                if_none_match: true,
                ..PutOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(matches!(outcome, PutOutcome::Written { .. }));
    assert_eq!(
        &store.get("a.png").await.unwrap().unwrap().body[..],
        b"after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_accepts_but_never_answers_times_out() {
    fake_credentials();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    // Accept and hold every connection, never writing a byte.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let store = store(&endpoint, "").await;
    let started = Instant::now();
    let result = store.head("a.png").await;
    let took = started.elapsed();
    eprintln!("hung server: head failed after {took:?}: {result:?}");
    assert!(matches!(result, Err(StoreError::Io(_))), "{result:?}");
    // The operation timeout (10 s) caps all attempts together.
    assert!(took < Duration::from_secs(12), "took {took:?}");
    assert!(
        took >= Duration::from_secs(4),
        "a timeout, not a refusal: {took:?}"
    );
}

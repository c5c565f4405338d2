//! The regional binary (`edge/src/bin/regional.rs`) run as Lambda runs it: this test serves
//! the Lambda Runtime API on loopback, hands the binary Function URL events (payload format
//! 2.0, the fixtures of `edge/tests/fixtures/function-url/`) and reads its answers, with
//! moto's S3 server as the bucket. The binary is the host build (`target/release/regional`),
//! or `IMGEDGE_REGIONAL_BIN` run through `IMGEDGE_REGIONAL_RUNNER` (scripts/test: the arm64
//! build under qemu-user).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use edge::key::TRANSFORM_VERSION;
use edge::service::{SOURCE_ETAG, VARIANT_CACHE_CONTROL};
use edge::transform::Limits;
use imgedge_tests::{bin_path, local_aws_env, MotoServer};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

const BUCKET: &str = "imgedge-regional";
const MASTER: &str = "outputs/2025-02-01/image_001.png";
const API: &str = "/2018-06-01/runtime";

/// How long one invocation may take: under qemu-user an arm64 build runs several times
/// slower than natively.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(180);

/// An invocation waiting to be handed to the function, and where its answer goes.
struct Pending {
    id: String,
    event: Value,
    answer: Answer,
}

/// Where the function's answer to one event goes: its response, or its error report.
type Answer = oneshot::Sender<Result<Value, String>>;

#[derive(Clone, Default)]
struct Api {
    queue: Arc<tokio::sync::Mutex<Option<mpsc::Receiver<Pending>>>>,
    inflight: Arc<Mutex<HashMap<String, Answer>>>,
    init_error: Arc<Mutex<Option<String>>>,
}

async fn next(State(api): State<Api>) -> (StatusCode, HeaderMap, String) {
    let pending = {
        let mut queue = api.queue.lock().await;
        queue.as_mut().expect("queue").recv().await
    };
    let Some(pending) = pending else {
        return (StatusCode::GONE, HeaderMap::new(), String::new());
    };
    let deadline_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + INVOKE_TIMEOUT;
    let mut headers = HeaderMap::new();
    let header = |v: &str| HeaderValue::from_str(v).unwrap();
    headers.insert("lambda-runtime-aws-request-id", header(&pending.id));
    headers.insert(
        "lambda-runtime-deadline-ms",
        header(&deadline_ms.as_millis().to_string()),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        header("arn:aws:lambda:us-east-1:123456789012:function:imgedge-regional"),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        header("Root=1-00000000-000000000000000000000000"),
    );
    headers.insert("content-type", header("application/json"));
    api.inflight
        .lock()
        .unwrap()
        .insert(pending.id.clone(), pending.answer);
    (StatusCode::OK, headers, pending.event.to_string())
}

async fn respond(
    State(api): State<Api>,
    UrlPath((id, kind)): UrlPath<(String, String)>,
    body: String,
) -> StatusCode {
    let Some(answer) = api.inflight.lock().unwrap().remove(&id) else {
        return StatusCode::NOT_FOUND;
    };
    let result = match kind.as_str() {
        "response" => serde_json::from_str(&body).map_err(|e| format!("not JSON ({e}): {body}")),
        _ => Err(format!("invocation error: {body}")),
    };
    let _ = answer.send(result);
    StatusCode::ACCEPTED
}

async fn init_error(State(api): State<Api>, body: String) -> StatusCode {
    *api.init_error.lock().unwrap() = Some(body);
    StatusCode::ACCEPTED
}

/// The regional binary behind a Runtime API of this test; killed on drop.
struct RegionalFunction {
    child: Child,
    api: Api,
    queue: mpsc::Sender<Pending>,
    stdout: PathBuf,
    stderr: PathBuf,
    _logs: tempfile::TempDir,
    invocations: u32,
}

/// The binary and how to run it: natively, or through a runner such as qemu-user.
fn regional_command() -> Command {
    let bin = std::env::var_os("IMGEDGE_REGIONAL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin_path("regional"));
    match std::env::var("IMGEDGE_REGIONAL_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut words = runner.split_whitespace();
            let mut command = Command::new(words.next().unwrap());
            command.args(words).arg(bin);
            command
        }
        _ => Command::new(bin),
    }
}

impl RegionalFunction {
    async fn start(moto: &MotoServer, env: &[(&str, &str)]) -> RegionalFunction {
        Self::spawn(regional_command(), moto, env).await
    }

    /// `command` (a Lambda binary) behind a Runtime API of this test, the bucket on moto.
    async fn spawn(
        mut command: Command,
        moto: &MotoServer,
        env: &[(&str, &str)],
    ) -> RegionalFunction {
        let (queue, receiver) = mpsc::channel(16);
        let api = Api::default();
        *api.queue.lock().await = Some(receiver);
        let app = Router::new()
            .route(&format!("{API}/invocation/next"), get(next))
            .route(&format!("{API}/invocation/{{id}}/{{kind}}"), post(respond))
            .route(&format!("{API}/init/error"), post(init_error))
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let logs = tempfile::tempdir().unwrap();
        let stdout = logs.path().join("stdout");
        let stderr = logs.path().join("stderr");
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "imgedge-regional")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1536")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/imgedge-regional")
            .env("IMGEDGE_BUCKET", BUCKET)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (name, value) in local_aws_env(&moto.endpoint()) {
            command.env(name, value);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("the regional binary starts");
        RegionalFunction {
            child,
            api,
            queue,
            stdout,
            stderr,
            _logs: logs,
            invocations: 0,
        }
    }

    /// One invocation: the function's answer (its Function URL response).
    async fn invoke(&mut self, event: Value) -> Value {
        self.invocations += 1;
        let (answer, answered) = oneshot::channel();
        let id = format!("request-{}", self.invocations);
        self.queue
            .send(Pending { id, event, answer })
            .await
            .unwrap();
        match tokio::time::timeout(INVOKE_TIMEOUT, answered).await {
            Ok(Ok(Ok(response))) => response,
            outcome => panic!(
                "no answer ({outcome:?}); init error: {:?}; stderr: {}",
                self.api.init_error.lock().unwrap(),
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            ),
        }
    }

    /// The request lines the function wrote on stdout (its EMF documents), in order.
    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == "request")
            .collect()
    }
}

impl Drop for RegionalFunction {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3(moto: &MotoServer) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(moto.endpoint())
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .force_path_style(true)
            .build(),
    )
}

/// A PNG with structure (a gradient with a pattern), `width`×`height`.
fn master_png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 255 / width) as u8,
            (y * 255 / height) as u8,
            ((x ^ y) % 256) as u8,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Noise compresses to nothing: a PNG about as large as its pixels.
fn noise_png(width: u32, height: u32) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let img = image::RgbImage::from_fn(width, height, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let [a, b, c, ..] = state.to_le_bytes();
        image::Rgb([a, b, c])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn bucket_with(moto: &MotoServer, masters: &[(&str, Vec<u8>)]) -> aws_sdk_s3::Client {
    let s3 = s3(moto);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    for (key, body) in masters {
        s3.put_object()
            .bucket(BUCKET)
            .key(*key)
            .content_type("image/png")
            .body(body.clone().into())
            .send()
            .await
            .unwrap();
    }
    s3
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../edge/tests/fixtures/function-url")
        .join(name);
    let text = std::fs::read_to_string(path)
        .unwrap()
        .replace("{TRANSFORM_VERSION}", &TRANSFORM_VERSION.to_string());
    serde_json::from_str(&text).unwrap()
}

/// The miss fixture for another path (and viewer URL header).
fn miss(path: &str, viewer_url: Option<&str>) -> Value {
    let mut event = fixture("variant-miss.json");
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    match viewer_url {
        Some(url) => event["headers"]["x-imgedge-viewer-url"] = json!(url),
        None => {
            event["headers"]
                .as_object_mut()
                .unwrap()
                .remove("x-imgedge-viewer-url");
        }
    }
    event
}

fn variant_key(master: &str, query: &str, ext: &str) -> String {
    format!(
        "_variants/v{TRANSFORM_VERSION}/{master}/{}.{ext}",
        query.replace('&', ",")
    )
}

fn body(response: &Value) -> Vec<u8> {
    let text = response["body"].as_str().expect("a body");
    if response["isBase64Encoded"] == true {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap()
    } else {
        text.as_bytes().to_vec()
    }
}

fn error_body(response: &Value, status: u64) -> Value {
    assert_eq!(response["statusCode"], status, "{response}");
    assert_eq!(response["isBase64Encoded"], false, "{response}");
    assert_eq!(response["headers"]["content-type"], "application/json");
    serde_json::from_slice(&body(response)).unwrap()
}

/// Byte-identical to the core's render on the same machine; another architecture's build
/// (arm64 under qemu) may round differently in SIMD code, so there the pixels must agree
/// closely instead.
fn assert_same_render(got: &[u8], want: &[u8]) {
    let foreign = std::env::var("IMGEDGE_REGIONAL_RUNNER").is_ok_and(|r| !r.trim().is_empty());
    if !foreign || got == want {
        assert!(
            got == want,
            "the function's bytes differ from the core's render"
        );
        return;
    }
    let (a, b) = (
        image::load_from_memory(got).unwrap().to_rgb8(),
        image::load_from_memory(want).unwrap().to_rgb8(),
    );
    assert_eq!(a.dimensions(), b.dimensions());
    let diff: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    let mean = diff as f64 / a.as_raw().len() as f64;
    eprintln!(
        "arm64 render vs the host's: {} vs {} bytes, mean channel difference {mean:.3}",
        got.len(),
        want.len()
    );
    assert!(mean < 1.0, "mean channel difference {mean}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_is_rendered_stored_answered_and_then_reused() {
    let moto = MotoServer::start();
    let master = master_png(640, 480);
    let s3 = bucket_with(&moto, &[(MASTER, master.clone())]).await;
    let mut function = RegionalFunction::start(&moto, &[]).await;

    let event = fixture("variant-miss.json");
    let key = variant_key(MASTER, "w=512&fmt=webp", "webp");
    assert_eq!(
        event["rawPath"],
        format!("/{key}"),
        "the fixture asks for this variant"
    );
    let first = function.invoke(event.clone()).await;
    assert_eq!(first["statusCode"], 200, "{first}");
    assert_eq!(first["isBase64Encoded"], true);
    assert_eq!(first["headers"]["content-type"], "image/webp");
    assert_eq!(first["headers"]["cache-control"], VARIANT_CACHE_CONTROL);
    let bytes = body(&first);
    let want =
        edge::service::transform_file(&master, "png", "w=512&fmt=webp", None, &Limits::default())
            .unwrap();
    assert_same_render(&bytes, &want);

    // Stored as the bucket will serve it to the next viewer, at the key the path names.
    let stored = s3
        .get_object()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await
        .unwrap();
    let master_etag = s3
        .head_object()
        .bucket(BUCKET)
        .key(MASTER)
        .send()
        .await
        .unwrap();
    assert_eq!(
        stored
            .metadata()
            .unwrap()
            .get(SOURCE_ETAG)
            .map(|s| s.trim_matches('"')),
        master_etag.e_tag().map(|s| s.trim_matches('"'))
    );
    assert_eq!(stored.content_type(), Some("image/webp"));
    assert_eq!(stored.cache_control(), Some(VARIANT_CACHE_CONTROL));
    assert_eq!(first["headers"]["etag"], stored.e_tag().unwrap());
    assert_eq!(
        stored.body.collect().await.unwrap().into_bytes().to_vec(),
        bytes
    );

    let again = function.invoke(event).await;
    assert_eq!(body(&again), bytes);

    // One line per request, the EMF document of each (what CloudWatch turns into metrics).
    let records = function.records();
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0]["outcome"], "built");
    assert_eq!(
        records[0]["request_id"],
        "c7ad1b5b-39a5-4d53-94e4-e7b4e8f0a1b2"
    );
    assert_eq!(
        records[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "imgedge"
    );
    assert_eq!(records[1]["outcome"], "reused");
    assert_eq!(
        records[1]["store_round_trips"], 1,
        "a fresh variant: one round trip"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_it_cannot_serve_are_json_errors_and_store_nothing() {
    let moto = MotoServer::start();
    let s3 = bucket_with(&moto, &[(MASTER, master_png(64, 48))]).await;
    let policy = r#"{"widths": [32, 64]}"#;
    let mut function = RegionalFunction::start(&moto, &[("IMGEDGE_POLICY", policy)]).await;

    let missing = function.invoke(miss("/outputs/none.png", None)).await;
    assert_eq!(error_body(&missing, 404)["error"], "not_found");
    let not_canonical = format!("/{}", variant_key(MASTER, "fmt=webp&w=32", "webp"));
    let wrong_name = function.invoke(miss(&not_canonical, None)).await;
    assert_eq!(error_body(&wrong_name, 404)["error"], "not_found");
    // Below every allowed width: 48 would be 32 at dpr 1.5, which the policy allows.
    let outside = format!("/{}", variant_key(MASTER, "w=16", "png"));
    let refused = function.invoke(miss(&outside, None)).await;
    let e = error_body(&refused, 400);
    assert_eq!(
        (e["error"].as_str(), e["param"].as_str()),
        (Some("invalid_parameter"), Some("w"))
    );
    let not_an_event = function.invoke(json!({"Records": []})).await;
    assert_eq!(error_body(&not_an_event, 500)["error"], "internal");

    let listed = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix("_variants/")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(0), "{:?}", listed.contents());
    let allowed = format!("/{}", variant_key(MASTER, "w=32", "png"));
    assert_eq!(
        function.invoke(miss(&allowed, None)).await["statusCode"],
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variant_over_the_response_limit_is_stored_and_the_viewer_sent_back() {
    let moto = MotoServer::start();
    // 1600×1200 noise: a PNG of about 5.8 MB, over the 4.5 MB a buffered Function URL
    // answer can carry in base64.
    let big = "outputs/2025-02-01/noise.png";
    let s3 = bucket_with(&moto, &[(big, noise_png(1600, 1200))]).await;
    let mut function = RegionalFunction::start(&moto, &[]).await;

    let key = variant_key(big, "w=1599", "png");
    let viewer = "/outputs/2025-02-01/noise.png?w=1599&sig=abc";
    let response = function
        .invoke(miss(&format!("/{key}"), Some(viewer)))
        .await;
    assert_eq!(response["statusCode"], 302, "{response}");
    assert_eq!(response["headers"]["location"], viewer);
    assert_eq!(response["headers"]["cache-control"], "no-store");
    let stored = s3
        .head_object()
        .bucket(BUCKET)
        .key(&key)
        .send()
        .await
        .unwrap();
    let size = stored.content_length().unwrap() as u64;
    assert!(size > edge::function_url::INLINE_MAX_BYTES, "{size} bytes");
    let records = function.records();
    assert_eq!(
        (
            records[0]["outcome"].as_str(),
            records[0]["status"].as_u64()
        ),
        (Some("built"), Some(302))
    );
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// A CloudFront origin-request event (the edge `bootstrap`'s input) for `uri?query`.
fn origin_request(uri: &str, query: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../edge/tests/fixtures/cloudfront/image_001-w512-webp.json");
    let mut event: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    event["Records"][0]["cf"]["request"]["uri"] = json!(uri);
    event["Records"][0]["cf"]["request"]["querystring"] = json!(query);
    event
}

/// The events of one binary's measurement: one answered without a store call, one for the
/// stored variant, and one building a new variant of width `w`.
struct Workload {
    name: &'static str,
    binary: &'static str,
    no_store_call: Value,
    stored: Value,
    build: fn(u32) -> Value,
}

/// Not a test but the measurement behind docs/deploy.md#choosing-a-mode (prints a table):
/// `cargo test --release --test regional -- --ignored --nocapture`. Both Rust handlers, the
/// regional binary and the edge `bootstrap` (without the Node shim, which infra/edge-shim's
/// bench measures), behind this test's Runtime API against moto, on one machine in one run.
/// Cold = spawn of the binary → its first answer; handler = the `total_ms` of its request line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: run it with --ignored --nocapture"]
async fn measure_cold_start_and_handler_time() {
    let moto = MotoServer::start();
    bucket_with(&moto, &[(MASTER, master_png(1024, 768))]).await;
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("config.json");
    std::fs::write(
        &config,
        json!({"bucket": BUCKET, "region": "us-east-1", "endpoint_url": moto.endpoint()})
            .to_string(),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_string();
    let workloads = [
        Workload {
            name: "regional",
            binary: "regional",
            no_store_call: miss(
                &format!("/{}", variant_key(MASTER, "fmt=webp&w=512", "webp")),
                None,
            ),
            stored: miss(
                &format!("/{}", variant_key(MASTER, "w=512&fmt=webp", "webp")),
                None,
            ),
            build: |w| {
                miss(
                    &format!(
                        "/{}",
                        variant_key(MASTER, &format!("w={w}&fmt=webp"), "webp")
                    ),
                    None,
                )
            },
        },
        Workload {
            name: "edge bootstrap",
            binary: "bootstrap",
            no_store_call: origin_request(&format!("/{MASTER}"), "w=0"),
            stored: origin_request(&format!("/{MASTER}"), "w=512&fmt=webp"),
            // Widths the regional run did not store.
            build: |w| origin_request(&format!("/{MASTER}"), &format!("w={}&fmt=webp", w + 200)),
        },
    ];
    println!("| binary | measure | n | min | median (ms) |\n|---|---|---|---|---|");
    let env = [("IMGEDGE_CONFIG", config.as_str())];
    for load in workloads {
        let spawn = || RegionalFunction::spawn(Command::new(bin_path(load.binary)), &moto, &env);
        let mut table: Vec<(String, Vec<f64>)> = Vec::new();
        // The stored variant exists before the first cold start asks for it.
        spawn().await.invoke(load.stored.clone()).await;
        for (what, event) in [
            ("cold, no store call", &load.no_store_call),
            ("cold, stored variant", &load.stored),
        ] {
            let mut samples = Vec::new();
            for _ in 0..8 {
                let started = std::time::Instant::now();
                let mut function = spawn().await;
                function.invoke(event.clone()).await;
                samples.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            table.push((what.to_string(), samples));
        }
        let mut warm = spawn().await;
        let mut through = Vec::new();
        for _ in 0..100 {
            let started = std::time::Instant::now();
            warm.invoke(load.no_store_call.clone()).await;
            through.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        table.push((
            "warm event, no store call, through the harness".to_string(),
            through,
        ));
        for _ in 0..50 {
            warm.invoke(load.stored.clone()).await;
        }
        for w in 400..420 {
            warm.invoke((load.build)(w)).await;
        }
        let records = warm.records();
        let total = |outcome: &str| -> Vec<f64> {
            records
                .iter()
                .filter(|r| r["outcome"] == outcome)
                .map(|r| r["total_ms"].as_f64().unwrap())
                .collect()
        };
        table.push((
            "handler total_ms, stored variant".to_string(),
            total("reused"),
        ));
        table.push((
            "handler total_ms, new ~410w WebP of 1024×768".to_string(),
            total("built"),
        ));
        for (what, samples) in table {
            let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
            println!(
                "| {} | {what} | {} | {min:.1} | {:.1} |",
                load.name,
                samples.len(),
                median(samples)
            );
        }
    }
}

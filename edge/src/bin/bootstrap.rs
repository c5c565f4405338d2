//! The origin-request Lambda@Edge handler as a Lambda `bootstrap` (run by the Node.js shim
//! in `infra/edge-shim/`, or directly as a custom runtime). Settings come from
//! `config.json` beside the executable: Lambda@Edge allows no environment variables.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use edge::cloudfront::{self, OriginRequestEvent, OriginRequestOutput};
use edge::config::Config;
use edge::observe::{self, LogFormat, RequestRecord};
use edge::service::Origin;
use edge::store::{S3Store, Store};
use edge::Error;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

/// `$IMGEDGE_CONFIG` (set by the shim, which knows where it unpacked), else
/// `config.json` next to this executable.
fn config_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("IMGEDGE_CONFIG") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("cannot locate the bootstrap executable")?;
    Ok(exe.with_file_name("config.json"))
}

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // Always JSON in the Lambda: CloudWatch Logs Insights reads the fields.
    observe::init_tracing(LogFormat::Json, "info", false);

    let path = config_path()?;
    let config = Config::from_file(&path)?;
    // One client per process: connections and credentials are reused across events.
    let store = S3Store::connect(
        &config.bucket,
        "",
        Some(&config.region),
        config.endpoint_url.as_deref(),
    )
    .await;
    tracing::info!(config = %path.display(), bucket = %config.bucket, region = %config.region, "bootstrap ready");
    let policy = config.policy().context("config.json")?;
    let store: Arc<dyn Store> = Arc::new(store);
    // Open the bucket's connections (TCP + TLS, credentials) during init, beside the first
    // poll for an event, so the first event does not pay the handshakes; the client keeps
    // them alive for the next events. Three: the first step makes three calls at once
    // (HEAD master, GET variant, GET marker), and one warm connection would leave two of
    // them to open their own during the first event.
    let warm = Arc::clone(&store);
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let (a, b, c) = tokio::join!(
            warm.head(WARM_UP_KEY),
            warm.head(WARM_UP_KEY),
            warm.head(WARM_UP_KEY)
        );
        tracing::info!(
            ms = observe::millis(started.elapsed()),
            answered = a.is_ok() && b.is_ok() && c.is_ok(),
            "bucket connections opened"
        );
    });
    let origin = Arc::new(Origin::new(store, config.limits).with_policy(policy));

    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let origin = Arc::clone(&origin);
        async move { Ok::<Value, lambda_runtime::Error>(handle(&origin, event).await) }
    }))
    .await
}

/// Time kept after the work stops for the answer to reach CloudFront (JSON, the shim).
const ANSWER_MARGIN: std::time::Duration = std::time::Duration::from_millis(500);

/// The Lambda's deadline (milliseconds since the epoch) less the answer's margin, as an
/// `Instant` the handler's timeout observes.
fn answer_deadline(deadline_ms: u64) -> std::time::Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let left = std::time::Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    std::time::Instant::now() + left.saturating_sub(ANSWER_MARGIN)
}

/// A key no one writes (a HEAD of it answers 404 cheaply); only its connection matters.
const WARM_UP_KEY: &str = "_variants/warm-up";

/// One event: a malformed event becomes a generated 500 rather than a runtime error, so
/// CloudFront always gets an answer it can serve. Writes the request's line: a JSON log
/// record that is also its CloudWatch EMF document (stdout).
async fn handle(origin: &Origin, event: LambdaEvent<Value>) -> Value {
    let output = match serde_json::from_value::<OriginRequestEvent>(event.payload) {
        Ok(cf_event) => {
            let deadline = answer_deadline(event.context.deadline);
            let (output, handled) =
                cloudfront::handle_origin_request_until(origin, cf_event, Some(deadline)).await;
            let mut record = handled.record;
            if record.request_id.is_empty() {
                record.request_id = event.context.request_id.clone();
            }
            emit(&record);
            output
        }
        Err(e) => {
            tracing::error!(error = %e, request_id = %event.context.request_id, "not a CloudFront origin-request event");
            OriginRequestOutput::Response(cloudfront::error_response(&Error::internal(
                "the origin-request event could not be read",
            )))
        }
    };
    serde_json::to_value(&output).expect("CloudFront output serialises")
}

fn emit(record: &RequestRecord) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let line = record.emf(now_ms).to_string();
    // One write per line, so concurrent output never interleaves within it.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

//! The origin-request Lambda@Edge handler as a Lambda `bootstrap` (run by the Node.js shim
//! in `infra/edge-shim/`, or directly as a custom runtime). Settings come from
//! `config.json` beside the executable: Lambda@Edge allows no environment variables.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use edge::cloudfront::{self, OriginRequestEvent, OriginRequestOutput};
use edge::config::Config;
use edge::service::{BuildStats, Origin};
use edge::store::S3Store;
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
    // CloudWatch adds its own timestamps and shows no colours.
    tracing_subscriber::fmt()
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

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
    let origin = Arc::new(Origin::new(Arc::new(store), config.limits).with_policy(policy));

    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let origin = Arc::clone(&origin);
        async move { Ok::<Value, lambda_runtime::Error>(handle(&origin, event.payload).await) }
    }))
    .await
}

/// One event: a malformed event becomes a generated 500 rather than a runtime error, so
/// CloudFront always gets an answer it can serve.
async fn handle(origin: &Origin, payload: Value) -> Value {
    let output = match serde_json::from_value::<OriginRequestEvent>(payload) {
        Ok(event) => {
            let (uri, query) = event
                .records
                .first()
                .map(|r| (r.cf.request.uri.clone(), r.cf.request.querystring.clone()))
                .unwrap_or_default();
            let (output, stats) = cloudfront::handle_origin_request(origin, event).await;
            log_outcome(&uri, &query, &output, stats.as_ref());
            output
        }
        Err(e) => {
            tracing::error!(error = %e, "not a CloudFront origin-request event");
            OriginRequestOutput::Response(cloudfront::error_response(&Error::internal(
                "the origin-request event could not be read",
            )))
        }
    };
    serde_json::to_value(&output).expect("CloudFront output serialises")
}

fn log_outcome(uri: &str, query: &str, output: &OriginRequestOutput, stats: Option<&BuildStats>) {
    match (output, stats) {
        (OriginRequestOutput::Request(req), Some(s)) => tracing::info!(
            uri, query, rewritten = %req.uri,
            fetch_ms = ms(s.fetch), decode_ms = ms(s.timings.decode),
            resize_ms = ms(s.timings.resize), encode_ms = ms(s.timings.encode),
            store_ms = ms(s.store), "variant built"
        ),
        (OriginRequestOutput::Request(req), None) => {
            tracing::info!(uri, query, rewritten = %req.uri, "served existing object")
        }
        (OriginRequestOutput::Response(resp), _) => {
            tracing::warn!(uri, query, status = %resp.status, body = resp.body.as_deref().unwrap_or(""), "error response")
        }
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

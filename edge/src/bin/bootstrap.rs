//! The origin-request Lambda@Edge handler as a Lambda `bootstrap` (run by the Node.js shim
//! in `infra/edge-shim/`, or directly as a custom runtime). Settings come from
//! `config.json` beside the executable: Lambda@Edge allows no environment variables.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use edge::cloudfront::{self, OriginRequestEvent, OriginRequestOutput};
use edge::config::Config;
use edge::lambda;
use edge::observe::{self, LogFormat};
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
    lambda::warm_up(Arc::clone(&store));
    let origin = Arc::new(Origin::new(store, config.limits).with_policy(policy));

    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let origin = Arc::clone(&origin);
        async move { Ok::<Value, lambda_runtime::Error>(handle(&origin, event).await) }
    }))
    .await
}

/// One event: a malformed event becomes a generated 500 rather than a runtime error, so
/// CloudFront always gets an answer it can serve. Writes the request's line: a JSON log
/// record that is also its CloudWatch EMF document (stdout).
async fn handle(origin: &Origin, event: LambdaEvent<Value>) -> Value {
    let output = match serde_json::from_value::<OriginRequestEvent>(event.payload) {
        Ok(cf_event) => {
            let deadline = lambda::answer_deadline(event.context.deadline);
            let (output, handled) =
                cloudfront::handle_origin_request_until(origin, cf_event, Some(deadline)).await;
            let mut record = handled.record;
            if record.request_id.is_empty() {
                record.request_id = event.context.request_id.clone();
            }
            lambda::emit(&record);
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

//! The regional mode's handler: an ordinary Lambda (`provided.al2023`, arm64 or x86_64)
//! behind a Function URL that CloudFront's origin group calls when the bucket has no such
//! variant yet (docs/deploy.md#modes). Packaged as `bootstrap` at the zip's root
//! (`infra/package.sh --mode regional`); settings come from its environment
//! (`IMGEDGE_BUCKET`, …: [`Config::from_env`]).

use std::sync::Arc;

use anyhow::Context as _;
use aws_lambda_events::event::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use edge::config::Config;
use edge::function_url::{self, handle_function_url_request};
use edge::lambda;
use edge::observe::{self, LogFormat};
use edge::service::Origin;
use edge::store::{S3Store, Store};
use edge::transform::Limits;
use edge::Error;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // Always JSON in the Lambda: CloudWatch Logs Insights reads the fields.
    observe::init_tracing(LogFormat::Json, "info", false);

    let config = Config::from_env(|name| std::env::var(name).ok())?;
    let policy = config.policy().context("the policy")?;
    // One client per process: connections and credentials are reused across events.
    let store = S3Store::connect(&config.bucket, "", Some(&config.region), None).await;
    tracing::info!(bucket = %config.bucket, region = %config.region, policy = policy.is_some(), "regional function ready");
    let store: Arc<dyn Store> = Arc::new(store);
    lambda::warm_up(Arc::clone(&store));
    let limits = Limits {
        inline_max_bytes: function_url::INLINE_MAX_BYTES,
        ..config.limits
    };
    let origin = Arc::new(Origin::new(store, limits).with_policy(policy));

    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let origin = Arc::clone(&origin);
        async move {
            Ok::<LambdaFunctionUrlResponse, lambda_runtime::Error>(handle(&origin, event).await)
        }
    }))
    .await
}

/// One event: the answer, and the request's line (stdout). An event that is not a Function
/// URL request is a JSON 500 rather than a runtime error: every error is JSON.
async fn handle(origin: &Origin, event: LambdaEvent<Value>) -> LambdaFunctionUrlResponse {
    let request = match serde_json::from_value::<LambdaFunctionUrlRequest>(event.payload) {
        Ok(request) => request,
        Err(e) => {
            tracing::error!(error = %e, request_id = %event.context.request_id, "not a Function URL request");
            return function_url::error_response(&Error::internal(
                "the Function URL request could not be read",
            ));
        }
    };
    let deadline = lambda::answer_deadline(event.context.deadline);
    let (response, handled) = handle_function_url_request(origin, request, Some(deadline)).await;
    let mut record = handled.record;
    if record.request_id.is_empty() {
        record.request_id = event.context.request_id;
    }
    lambda::emit(&record);
    response
}

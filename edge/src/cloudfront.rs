//! CloudFront origin-request events (Lambda@Edge) ↔ the service. The types are serde
//! models of AWS's documented event and result shapes (`aws_lambda_events` has none for
//! CloudFront); the mapping functions are pure, and `handle_origin_request` is the one
//! handler that both the Lambda `bootstrap` and `edge serve` run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::service::{BuildStats, Origin};

/// One header as CloudFront writes it: `{"key": "Accept", "value": "image/webp"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub value: String,
}

/// Headers keyed by lowercase name: `{"accept": [{"key": "Accept", "value": "…"}]}`.
pub type Headers = BTreeMap<String, Vec<HeaderEntry>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginRequestEvent {
    #[serde(rename = "Records")]
    pub records: Vec<Record>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub cf: CfData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CfData {
    pub config: CfConfig,
    pub request: CfRequest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CfConfig {
    #[serde(default)]
    pub distribution_domain_name: String,
    #[serde(default)]
    pub distribution_id: String,
    #[serde(default)]
    pub event_type: String,
    #[serde(default)]
    pub request_id: String,
}

/// The request; returning it (possibly rewritten) forwards it to the origin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CfRequest {
    #[serde(default)]
    pub client_ip: String,
    #[serde(default)]
    pub headers: Headers,
    pub method: String,
    /// Kept as raw JSON so it round-trips untouched (S3 or custom origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<serde_json::Value>,
    /// Raw query string, without `?`.
    #[serde(default)]
    pub querystring: String,
    /// Percent-encoded path as the viewer sent it.
    pub uri: String,
}

/// A generated response (an error, here); CloudFront answers it without the origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CfResponse {
    /// CloudFront wants the status as a string: `"400"`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_description: Option<String>,
    #[serde(default)]
    pub headers: Headers,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// What the origin-request handler returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OriginRequestOutput {
    Response(CfResponse),
    Request(CfRequest),
}

/// Build an origin-request event the way CloudFront does for an S3 origin (used by
/// `edge serve` and tests). `headers` are (name, value) pairs as the viewer sent them.
pub fn origin_request_event(
    uri: &str,
    querystring: &str,
    headers: &[(&str, &str)],
) -> OriginRequestEvent {
    let _ = (uri, querystring, headers);
    todo!()
}

/// The generated response for an error: status, JSON body, Content-Type, Cache-Control.
pub fn error_response(error: &Error) -> CfResponse {
    let _ = error;
    todo!()
}

/// The object key a (rewritten) request's uri addresses: percent-decoded, no leading `/`.
pub fn key_from_uri(uri: &str) -> Option<String> {
    let _ = uri;
    todo!()
}

/// The origin-request handler: event in, rewritten request (uri = `/` + the variant or
/// master key, querystring cleared) or generated error response out. Also returns how the
/// variant was built, for `Server-Timing` and logs.
pub async fn handle_origin_request(
    origin: &Origin,
    event: OriginRequestEvent,
) -> (OriginRequestOutput, Option<BuildStats>) {
    let _ = (origin, event);
    todo!()
}

//! One error type for the whole request path. Every error knows its HTTP status, its
//! public JSON body and how long an edge may cache it (DESIGN.md §3), so the layers that
//! answer viewers (CloudFront responses, `edge serve`) never need to know where it came from.

use serde::{Deserialize, Serialize};

/// What went wrong, as the public `error` code of the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    InvalidKey,
    InvalidParameter,
    /// A signed URL's `sig` is missing or does not match (DESIGN.md §10).
    InvalidSignature,
    NotFound,
    UnsupportedImage,
    ImageTooLarge,
    StoreError,
    Internal,
    /// Too many renders at once (`edge serve`'s render budget); try again shortly.
    Busy,
    /// The request's deadline passed before an answer; nothing was written.
    Timeout,
}

impl ErrorKind {
    /// Every kind, in DESIGN.md §1's order of codes.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::InvalidKey,
        ErrorKind::InvalidParameter,
        ErrorKind::InvalidSignature,
        ErrorKind::NotFound,
        ErrorKind::UnsupportedImage,
        ErrorKind::ImageTooLarge,
        ErrorKind::Busy,
        ErrorKind::Timeout,
        ErrorKind::StoreError,
        ErrorKind::Internal,
    ];

    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidKey | ErrorKind::InvalidParameter => 400,
            ErrorKind::InvalidSignature => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::UnsupportedImage => 415,
            ErrorKind::ImageTooLarge => 422,
            ErrorKind::StoreError => 502,
            ErrorKind::Internal => 500,
            ErrorKind::Busy => 503,
            ErrorKind::Timeout => 504,
        }
    }

    /// Client errors are cached briefly so a bad URL cannot hammer the origin;
    /// failures of ours must never be cached.
    pub fn cache_control(self) -> &'static str {
        match self.status() {
            400..=499 => "public, max-age=60",
            _ => "no-store",
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidKey => "invalid_key",
            ErrorKind::InvalidParameter => "invalid_parameter",
            ErrorKind::InvalidSignature => "invalid_signature",
            ErrorKind::NotFound => "not_found",
            ErrorKind::UnsupportedImage => "unsupported_image",
            ErrorKind::ImageTooLarge => "image_too_large",
            ErrorKind::StoreError => "store_error",
            ErrorKind::Internal => "internal",
            ErrorKind::Busy => "busy",
            ErrorKind::Timeout => "timeout",
        }
    }
}

/// A request-path error: a kind, the parameter it is about (if any) and a public message.
/// The message is shown to viewers, so it says what was wrong and what is allowed, and
/// never carries internal detail such as paths or stack traces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub param: Option<String>,
    pub message: String,
}

/// The JSON body of an error response:
/// `{"status":400,"error":"invalid_parameter","param":"w","message":"…"}`.
#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    status: u16,
    error: ErrorKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<&'a str>,
    message: &'a str,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            param: None,
            message: message.into(),
        }
    }

    /// A 400 about one query parameter.
    pub fn invalid_parameter(param: &str, message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::InvalidParameter,
            param: Some(param.to_string()),
            message: message.into(),
        }
    }

    /// A 403 about `sig`: missing, malformed or not matching any configured key.
    pub fn invalid_signature(message: impl Into<String>) -> Self {
        Error {
            kind: ErrorKind::InvalidSignature,
            param: Some("sig".to_string()),
            message: message.into(),
        }
    }

    pub fn invalid_key(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidKey, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, message)
    }

    pub fn unsupported_image(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::UnsupportedImage, message)
    }

    pub fn image_too_large(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::ImageTooLarge, message)
    }

    pub fn store(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::StoreError, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, message)
    }

    pub fn busy(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Busy, message)
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Timeout, message)
    }

    /// An internal failure while doing `what`: the detail `e` goes to the log only, the
    /// viewer sees what was being done.
    pub fn internal_while(what: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!("internal error while {what}: {e}");
        Error::internal(format!("internal error while {what}"))
    }

    /// Run `work`, turning a panic inside it into an internal error while doing `what`
    /// (the panic's text goes to the log, never into a response). The transform is
    /// wrapped in it, so every caller — the origin, `edge transform`, the generator —
    /// answers a bug in a codec with a 500, not an abort.
    pub fn contain_panic<T>(what: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_string());
            Err(Error::internal_while(what, format!("panic: {detail}")))
        })
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    pub fn cache_control(&self) -> &'static str {
        self.kind.cache_control()
    }

    /// The headers of an answer carrying this error, whichever layer sends it (CloudFront's
    /// generated response, the Function URL's): JSON, how long an edge may cache it, and for
    /// `busy` when to try again.
    pub fn response_headers(&self) -> Vec<(&'static str, &'static str)> {
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("Cache-Control", self.cache_control()),
        ];
        if self.kind == ErrorKind::Busy {
            headers.push(("Retry-After", "1"));
        }
        headers
    }

    /// The public JSON body, compact, one line.
    pub fn to_json(&self) -> String {
        let body = ErrorBody {
            status: self.status(),
            error: self.kind,
            param: self.param.as_deref(),
            message: &self.message,
        };
        serde_json::to_string(&body).expect("error body serialises")
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_public_internal_error_without_its_text() {
        let e = Error::contain_panic("rendering the variant", || -> Result<()> {
            panic!("secret detail at /some/path")
        })
        .unwrap_err();
        assert_eq!(e.status(), 500);
        assert_eq!(e.cache_control(), "no-store");
        let body = e.to_json();
        assert!(
            body.contains("internal error while rendering the variant"),
            "{body}"
        );
        assert!(!body.contains("secret"), "{body}");
        let formatted = Error::contain_panic("x", || -> Result<()> { panic!("{}", 42) });
        assert_eq!(formatted.unwrap_err().kind, ErrorKind::Internal);
        assert_eq!(Error::contain_panic("x", || Ok(7)).unwrap(), 7);
    }

    #[test]
    fn statuses_and_cache_follow_the_design_table() {
        let cases = [
            (ErrorKind::InvalidKey, 400, "public, max-age=60"),
            (ErrorKind::InvalidParameter, 400, "public, max-age=60"),
            (ErrorKind::InvalidSignature, 403, "public, max-age=60"),
            (ErrorKind::NotFound, 404, "public, max-age=60"),
            (ErrorKind::UnsupportedImage, 415, "public, max-age=60"),
            (ErrorKind::ImageTooLarge, 422, "public, max-age=60"),
            (ErrorKind::StoreError, 502, "no-store"),
            (ErrorKind::Internal, 500, "no-store"),
            (ErrorKind::Busy, 503, "no-store"),
            (ErrorKind::Timeout, 504, "no-store"),
        ];
        for (kind, status, cache) in cases {
            assert_eq!(kind.status(), status, "{kind:?}");
            assert_eq!(kind.cache_control(), cache, "{kind:?}");
        }
    }

    #[test]
    fn json_body_names_status_code_param_and_message() {
        let e = Error::invalid_parameter("w", "w must be an integer from 1 to 8192, got \"0\"");
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["status"], 400);
        assert_eq!(v["error"], "invalid_parameter");
        assert_eq!(v["param"], "w");
        assert_eq!(
            v["message"],
            "w must be an integer from 1 to 8192, got \"0\""
        );

        let v: serde_json::Value =
            serde_json::from_str(&Error::not_found("no master").to_json()).unwrap();
        assert_eq!(v["error"], "not_found");
        assert!(v.get("param").is_none());
    }
}

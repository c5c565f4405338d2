//! What the two Lambda binaries share (`bootstrap` behind the Lambda@Edge shim, `regional`
//! behind a Function URL), none of it tied to the runtime crate: the invocation's deadline,
//! the bucket's connections opened during init, and the request's line on stdout.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::observe::{self, RequestRecord};
use crate::store::Store;

/// Time kept after the work stops for the answer to reach the caller (JSON, the shim, the
/// Function URL's base64 body).
pub const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// A key no one writes (a HEAD of it answers 404 cheaply); only its connection matters.
const WARM_UP_KEY: &str = "_variants/warm-up";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The invocation's deadline (milliseconds since the epoch, as the Runtime API gives it)
/// less [`ANSWER_MARGIN`], as an `Instant` the handler's timeout observes.
pub fn answer_deadline(deadline_ms: u64) -> Instant {
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms()));
    Instant::now() + left.saturating_sub(ANSWER_MARGIN)
}

/// Open the bucket's connections (TCP + TLS, credentials) during init, beside the first poll
/// for an event, so the first event does not pay the handshakes; the client keeps them alive
/// for the next events. Three: the service's first step makes three calls at once (HEAD
/// master, GET variant, GET marker), and one warm connection would leave two of them to open
/// their own during the first event.
pub fn warm_up(store: Arc<dyn Store>) {
    tokio::spawn(async move {
        let started = Instant::now();
        let (a, b, c) = tokio::join!(
            store.head(WARM_UP_KEY),
            store.head(WARM_UP_KEY),
            store.head(WARM_UP_KEY)
        );
        tracing::info!(
            ms = observe::millis(started.elapsed()),
            answered = a.is_ok() && b.is_ok() && c.is_ok(),
            "bucket connections opened"
        );
    });
}

/// The request's line on stdout: a JSON log record that is also its CloudWatch EMF document.
pub fn emit(record: &RequestRecord) {
    let line = record.emf(now_ms()).to_string();
    // One write per line, so concurrent output never interleaves within it.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_keeps_the_margin_and_never_lies_in_the_past_of_now() {
        let before = Instant::now();
        let deadline = answer_deadline(now_ms() + 10_000);
        let left = deadline - before;
        // The Runtime API's deadline is in whole milliseconds.
        assert!(left <= Duration::from_millis(9_501), "{left:?}");
        assert!(left >= Duration::from_millis(9_000), "{left:?}");
        // A deadline already past is now, not a panic.
        assert!(answer_deadline(0) <= Instant::now());
    }
}

//! A per-request view of a store that records what the request asked of it: each call
//! (operation, which object, how long), the body bytes read, and the *sequential* round
//! trips — a call that starts while another is in flight shares its trip, so the parallel
//! first step of the service's `ensure_variant` counts once. Logs, metrics and
//! `Server-Timing` read it (DESIGN.md §11).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Object, ObjectHead, PutOptions, PutOutcome, SmallObject, Store, StoreError};
use crate::key::{FAILURE_MARKER_NAME, VARIANTS_PREFIX};

/// One store call of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCall {
    /// `head`, `get`, `put`, `list` or `delete`.
    pub op: &'static str,
    /// `master`, `variant` or `marker` (a remembered failure).
    pub object: &'static str,
    pub duration: Duration,
}

impl StoreCall {
    /// `head-master`, `get-marker`, …: a `Server-Timing` metric name.
    pub fn name(&self) -> String {
        format!("{}-{}", self.op, self.object)
    }
}

/// What one request asked of the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreTrace {
    pub calls: Vec<StoreCall>,
    /// Sequential round trips: calls that overlapped count once.
    pub round_trips: u32,
    /// Body bytes of every GET (the master, markers, variants).
    pub bytes_in: u64,
}

#[derive(Default)]
struct State {
    trace: StoreTrace,
    in_flight: u32,
}

/// Wraps a shared store for one request.
pub struct TracedStore {
    inner: Arc<dyn Store>,
    state: Mutex<State>,
}

impl TracedStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        TracedStore {
            inner,
            state: Mutex::new(State::default()),
        }
    }

    /// What was recorded so far.
    pub fn trace(&self) -> StoreTrace {
        self.state.lock().expect("trace lock").trace.clone()
    }

    fn start(&self) -> Instant {
        let mut state = self.state.lock().expect("trace lock");
        if state.in_flight == 0 {
            state.trace.round_trips += 1;
        }
        state.in_flight += 1;
        Instant::now()
    }

    fn finish(&self, op: &'static str, key: &str, started: Instant, bytes_in: u64) {
        let mut state = self.state.lock().expect("trace lock");
        state.in_flight -= 1;
        state.trace.bytes_in += bytes_in;
        state.trace.calls.push(StoreCall {
            op,
            object: object_kind(key),
            duration: started.elapsed(),
        });
    }
}

fn object_kind(key: &str) -> &'static str {
    if !key.starts_with(VARIANTS_PREFIX) {
        "master"
    } else if key.ends_with(FAILURE_MARKER_NAME) {
        "marker"
    } else {
        "variant"
    }
}

#[async_trait]
impl Store for TracedStore {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let started = self.start();
        let got = self.inner.get(key).await;
        let bytes = match &got {
            Ok(Some(o)) => o.body.len() as u64,
            _ => 0,
        };
        self.finish("get", key, started, bytes);
        got
    }

    async fn get_small(&self, key: &str, limit: u64) -> Result<Option<SmallObject>, StoreError> {
        let started = self.start();
        let got = self.inner.get_small(key, limit).await;
        let bytes = match &got {
            Ok(Some(SmallObject { body: Some(b), .. })) => b.len() as u64,
            _ => 0,
        };
        self.finish("get", key, started, bytes);
        got
    }

    async fn get_first_bytes(&self, key: &str, n: u64) -> Result<Option<Bytes>, StoreError> {
        let started = self.start();
        let got = self.inner.get_first_bytes(key, n).await;
        let bytes = match &got {
            Ok(Some(b)) => b.len() as u64,
            _ => 0,
        };
        self.finish("get", key, started, bytes);
        got
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StoreError> {
        let started = self.start();
        let head = self.inner.head(key).await;
        self.finish("head", key, started, 0);
        head
    }

    async fn put(
        &self,
        key: &str,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<PutOutcome, StoreError> {
        let started = self.start();
        let put = self.inner.put(key, body, opts).await;
        self.finish("put", key, started, 0);
        put
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let started = self.start();
        let list = self.inner.list(prefix).await;
        self.finish("list", prefix, started, 0);
        list
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<usize, StoreError> {
        let started = self.start();
        let deleted = self.inner.delete_prefix(prefix).await;
        self.finish("delete", prefix, started, 0);
        deleted
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    #[tokio::test]
    async fn overlapping_calls_share_a_round_trip_and_reads_are_counted() {
        let inner = Arc::new(MemStore::new());
        inner
            .put("a.png", Bytes::from_static(b"12345"), PutOptions::default())
            .await
            .unwrap();
        let traced = TracedStore::new(inner);
        // Sequential: two trips.
        traced.head("a.png").await.unwrap();
        traced.get("a.png").await.unwrap();
        let t = traced.trace();
        assert_eq!(t.round_trips, 2);
        assert_eq!(t.bytes_in, 5);
        let names: Vec<String> = t.calls.iter().map(StoreCall::name).collect();
        assert_eq!(names, ["head-master", "get-master"]);

        // Started while another is in flight: the same trip.
        let first = traced.start();
        let second = traced.start();
        traced.finish("head", "_variants/v2/a.png/w=1.png", second, 0);
        traced.finish("get", "_variants/v2/a.png/error.json", first, 0);
        let t = traced.trace();
        assert_eq!(t.round_trips, 3);
        assert_eq!(t.calls[2].name(), "head-variant");
        assert_eq!(t.calls[3].name(), "get-marker");
    }
}

//! `GET /metrics` of `edge serve` (DESIGN.md §11): Prometheus text (OpenMetrics) from the
//! `prometheus-client` crate. Labels are bounded: outcomes and error codes are fixed sets.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::observe::RequestRecord;

/// Content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabel {
    result: &'static str,
}

/// The emulator's metrics.
pub struct EdgeMetrics {
    registry: Registry,
    requests: Family<OutcomeLabel, Counter>,
    errors: Family<CodeLabel, Counter>,
    edge_cache: Family<CacheLabel, Counter>,
    builds: Counter,
    render_seconds: Histogram,
    origin_seconds: Histogram,
    in_flight: Gauge,
}

impl Default for EdgeMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("imgedge");
        let requests = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "requests",
            "Image requests by outcome (hit, reused, built, master or an error code)",
            requests.clone(),
        );
        let errors = Family::<CodeLabel, Counter>::default();
        registry.register("errors", "Error answers by error code", errors.clone());
        let edge_cache = Family::<CacheLabel, Counter>::default();
        registry.register(
            "edge_cache_requests",
            "Edge cache lookups by result (hit or miss)",
            edge_cache.clone(),
        );
        let builds = Counter::default();
        registry.register("builds", "Variants rendered and stored", builds.clone());
        // 1 ms … ~16 s.
        let render_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register_with_unit(
            "render_duration",
            "Render time of built variants (decode, resize, encode)",
            Unit::Seconds,
            render_seconds.clone(),
        );
        let origin_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register_with_unit(
            "origin_duration",
            "Time of origin requests (edge cache misses), store calls included",
            Unit::Seconds,
            origin_seconds.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "origin_requests_in_flight",
            "Origin requests (renders included) running now",
            in_flight.clone(),
        );
        EdgeMetrics {
            registry,
            requests,
            errors,
            edge_cache,
            builds,
            render_seconds,
            origin_seconds,
            in_flight,
        }
    }
}

impl EdgeMetrics {
    /// Count one image request from its record; `hit` when the edge cache answered.
    pub fn observe(&self, record: &RequestRecord, edge_cache_hit: Option<bool>) {
        let outcome = if edge_cache_hit == Some(true) {
            "hit".to_string()
        } else {
            record.outcome.clone()
        };
        self.requests.get_or_create(&OutcomeLabel { outcome }).inc();
        if record.status >= 400 {
            self.errors
                .get_or_create(&CodeLabel {
                    code: record.outcome.clone(),
                })
                .inc();
        }
        if let Some(hit) = edge_cache_hit {
            let result = if hit { "hit" } else { "miss" };
            self.edge_cache.get_or_create(&CacheLabel { result }).inc();
            if !hit {
                self.origin_seconds.observe(record.total_ms / 1000.0);
            }
        }
        if record.built() {
            self.builds.inc();
            let render_ms = record.decode_ms + record.resize_ms + record.encode_ms;
            self.render_seconds.observe(render_ms / 1000.0);
        }
    }

    /// Held while an origin request runs.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Decrements the in-flight gauge when dropped (also on a cancelled request).
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

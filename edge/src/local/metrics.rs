//! `GET /metrics` of `edge serve` (DESIGN.md §11): Prometheus text format 0.0.4, or
//! OpenMetrics to a scraper that asks for it (`Accept: application/openmetrics-text`, as
//! Prometheus does), from the `prometheus-client` crate. Labels are bounded: outcomes and
//! error codes are fixed sets.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::observe::RequestRecord;

/// Content type of the OpenMetrics exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text exposition.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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
    /// The exposition for a scraper's `Accept` header, and its content type.
    pub fn render(&self, accept: Option<&str>) -> (&'static str, String) {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            (OPENMETRICS_CONTENT_TYPE, text)
        } else {
            (
                PROMETHEUS_CONTENT_TYPE,
                openmetrics_to_prometheus_text(&text),
            )
        }
    }
}

/// OpenMetrics text as Prometheus text 0.0.4: a counter family is named by its samples
/// (`x_total`, where OpenMetrics says `x`), and there are no `# UNIT` or `# EOF` lines.
fn openmetrics_to_prometheus_text(text: &str) -> String {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match descriptor {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{total} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Decrements the in-flight gauge when dropped (also on a cancelled request).
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_samples_in_prometheus_text() {
        let om = "# HELP imgedge_builds Variants rendered.\n# TYPE imgedge_builds counter\n\
                  imgedge_builds_total 2\n# HELP imgedge_render_duration_seconds Render.\n\
                  # TYPE imgedge_render_duration_seconds histogram\n\
                  # UNIT imgedge_render_duration_seconds seconds\n\
                  imgedge_render_duration_seconds_sum 0.5\n# EOF\n";
        assert_eq!(
            openmetrics_to_prometheus_text(om),
            "# HELP imgedge_builds_total Variants rendered.\n\
             # TYPE imgedge_builds_total counter\nimgedge_builds_total 2\n\
             # HELP imgedge_render_duration_seconds Render.\n\
             # TYPE imgedge_render_duration_seconds histogram\n\
             imgedge_render_duration_seconds_sum 0.5\n"
        );
    }

    #[test]
    fn the_format_follows_the_accept_header() {
        let metrics = EdgeMetrics::default();
        let (ct, text) = metrics.render(None);
        assert_eq!(ct, PROMETHEUS_CONTENT_TYPE);
        assert!(!text.contains("# EOF"));
        assert!(
            text.contains("# TYPE imgedge_builds_total counter"),
            "{text}"
        );
        let (ct, text) = metrics.render(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        ));
        assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
        assert!(text.ends_with("# EOF\n"));
    }
}

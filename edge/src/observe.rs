//! What one request did, for operators (DESIGN.md §11): one record per request, written as
//! a JSON log line (or a text line for a terminal) and, in the Lambda, as a CloudWatch
//! Embedded Metric Format document. Pure: the callers write the lines.

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use crate::error::Error;
use crate::key::VARIANTS_PREFIX;
use crate::service::Ensured;
use crate::store::StoreTrace;

/// `IMGEDGE_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl LogFormat {
    /// The variable's value (`json` | `text`); unset → JSON unless stderr is a terminal.
    pub fn choose(value: Option<&str>, stderr_is_terminal: bool) -> Result<LogFormat, String> {
        match value.map(str::trim) {
            None | Some("") if stderr_is_terminal => Ok(LogFormat::Text),
            None | Some("") => Ok(LogFormat::Json),
            Some("json") => Ok(LogFormat::Json),
            Some("text") => Ok(LogFormat::Text),
            Some(other) => Err(format!(
                "IMGEDGE_LOG_FORMAT must be json or text, got '{}'",
                other.chars().take(20).collect::<String>()
            )),
        }
    }
}

/// Route `tracing` (warnings, start-up lines) to stderr in `format`; `RUST_LOG` filters,
/// else `default_filter`. JSON lines carry the event's fields at the top level, like the
/// request records.
pub fn init_tracing(format: LogFormat, default_filter: &str, ansi: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_filter.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
        LogFormat::Text => builder.with_ansi(ansi).init(),
    }
}

/// The namespace of every metric.
pub const METRICS_NAMESPACE: &str = "imgedge";

/// One request. Never holds a secret or a `sig`: `query` is canonical (or, for a
/// request that did not resolve, the query as sent without its `sig`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestRecord {
    pub level: &'static str,
    pub message: &'static str,
    pub request_id: String,
    /// The master key (or the path as sent when it is not a valid key).
    pub key: String,
    pub query: String,
    /// `reused` | `built` | `master` | the error code.
    pub outcome: String,
    pub status: u16,
    /// Body bytes read from the store.
    pub bytes_in: u64,
    /// Bytes of the variant served (absent for a master: the origin does not read it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    pub total_ms: f64,
    pub fetch_ms: f64,
    pub decode_ms: f64,
    pub resize_ms: f64,
    pub encode_ms: f64,
    pub store_ms: f64,
    pub store_round_trips: u32,
}

/// The query for a log line: every parameter named `sig` dropped (a signature is a bearer
/// credential for its URL; one that is not last is refused, but still must not be logged).
fn without_sig(query: &str) -> String {
    query
        .split('&')
        .filter(|part| part.split_once('=').map_or(*part, |(name, _)| name) != "sig")
        .collect::<Vec<_>>()
        .join("&")
}

/// Milliseconds with microsecond precision, as every record field holds them.
pub fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0
}

impl RequestRecord {
    /// The record of an origin request: what `Origin::handle` answered, the store calls
    /// it made and how long the whole took.
    pub fn new(
        request_id: impl Into<String>,
        key: impl Into<String>,
        query: &str,
        result: Result<&Ensured, &Error>,
        trace: &StoreTrace,
        total: Duration,
    ) -> RequestRecord {
        let mut record = RequestRecord::base(request_id, key, query, total);
        record.bytes_in = trace.bytes_in;
        record.store_round_trips = trace.round_trips;
        match result {
            Ok(ensured) => {
                record.bytes_out = ensured.bytes;
                record.outcome = match &ensured.built {
                    Some(stats) => {
                        record.fetch_ms = millis(stats.fetch);
                        record.decode_ms = millis(stats.timings.decode);
                        record.resize_ms = millis(stats.timings.resize);
                        record.encode_ms = millis(stats.timings.encode);
                        record.store_ms = millis(stats.store);
                        "built"
                    }
                    None if ensured.key.starts_with(VARIANTS_PREFIX) => "reused",
                    None => "master",
                }
                .to_string();
            }
            Err(e) => record.set_error(e),
        }
        record
    }

    /// A 200 with nothing measured yet (an edge cache hit starts here). `query` is the raw
    /// query as received: every `sig` parameter is dropped here, wherever it stands.
    pub fn base(
        request_id: impl Into<String>,
        key: impl Into<String>,
        query: &str,
        total: Duration,
    ) -> RequestRecord {
        RequestRecord {
            level: "info",
            message: "request",
            request_id: request_id.into(),
            key: key.into(),
            query: without_sig(query),
            outcome: String::new(),
            status: 200,
            bytes_in: 0,
            bytes_out: None,
            total_ms: millis(total),
            fetch_ms: 0.0,
            decode_ms: 0.0,
            resize_ms: 0.0,
            encode_ms: 0.0,
            store_ms: 0.0,
            store_round_trips: 0,
        }
    }

    /// An error answer (also one given before the origin, by the viewer step).
    pub fn set_error(&mut self, e: &Error) {
        self.outcome = e.kind.code().to_string();
        self.status = e.status();
        self.level = if e.status() >= 500 { "error" } else { "warn" };
    }

    pub fn built(&self) -> bool {
        self.outcome == "built"
    }

    /// One JSON line.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a record serialises")
    }

    /// One line for a person at a terminal.
    pub fn to_text_line(&self) -> String {
        let query = if self.query.is_empty() {
            String::new()
        } else {
            format!("?{}", self.query)
        };
        let mut line = format!(
            "{} /{}{query} → {} {} in {:.1} ms ({} store round trips, {} bytes in",
            self.request_id,
            self.key,
            self.status,
            self.outcome,
            self.total_ms,
            self.store_round_trips,
            self.bytes_in
        );
        if let Some(out) = self.bytes_out {
            line.push_str(&format!(", {out} bytes out"));
        }
        line.push(')');
        if self.built() {
            line.push_str(&format!(
                " fetch {:.1} decode {:.1} resize {:.1} encode {:.1} store {:.1} ms",
                self.fetch_ms, self.decode_ms, self.resize_ms, self.encode_ms, self.store_ms
            ));
        }
        line
    }

    pub fn line(&self, format: LogFormat) -> String {
        match format {
            LogFormat::Json => self.to_json_line(),
            LogFormat::Text => self.to_text_line(),
        }
    }

    /// The record as a CloudWatch Embedded Metric Format document (namespace `imgedge`):
    /// dimension `Outcome` (built | reused | master | error; low cardinality on purpose),
    /// and for errors a second directive counting `Requests` by `ErrorCode`. Stage metrics only where a render happened, so their
    /// averages are those of renders.
    ///
    /// The document is also the request's log line: it holds every field of the record,
    /// so the Lambda writes one line per request, queryable in Logs Insights.
    pub fn emf(&self, timestamp_ms: u64) -> Value {
        let error = !matches!(self.outcome.as_str(), "built" | "reused" | "master");
        let Value::Object(mut doc) = serde_json::to_value(self).expect("a record serialises")
        else {
            unreachable!("a record is a JSON object")
        };
        let mut metrics = Vec::new();
        let mut put = |name: &str, unit: &str, value: Value| {
            metrics.push(json!({"Name": name, "Unit": unit}));
            doc.insert(name.to_string(), value);
        };
        put("Requests", "Count", json!(1));
        put("TotalMs", "Milliseconds", json!(self.total_ms));
        put("BytesIn", "Bytes", json!(self.bytes_in));
        put("StoreRoundTrips", "Count", json!(self.store_round_trips));
        if let Some(out) = self.bytes_out {
            put("BytesOut", "Bytes", json!(out));
        }
        if self.built() {
            put(
                "RenderMs",
                "Milliseconds",
                json!(self.decode_ms + self.resize_ms + self.encode_ms),
            );
            put("FetchMs", "Milliseconds", json!(self.fetch_ms));
            put("DecodeMs", "Milliseconds", json!(self.decode_ms));
            put("ResizeMs", "Milliseconds", json!(self.resize_ms));
            put("EncodeMs", "Milliseconds", json!(self.encode_ms));
            put("StoreMs", "Milliseconds", json!(self.store_ms));
        }
        doc.insert(
            "Outcome".into(),
            json!(if error {
                "error"
            } else {
                self.outcome.as_str()
            }),
        );
        let mut directives = vec![json!({
            "Namespace": METRICS_NAMESPACE,
            "Dimensions": [["Outcome"]],
            "Metrics": metrics,
        })];
        if error {
            // Errors by code: only the count, so each code adds one metric, not eleven.
            doc.insert("ErrorCode".into(), json!(self.outcome));
            directives.push(json!({
                "Namespace": METRICS_NAMESPACE,
                "Dimensions": [["ErrorCode"]],
                "Metrics": [{"Name": "Requests", "Unit": "Count"}],
            }));
        }
        doc.insert(
            "_aws".into(),
            json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": directives}),
        );
        Value::Object(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::BuildStats;
    use crate::store::StoreCall;
    use crate::transform::Timings;

    /// The rules of the Embedded Metric Format specification, checked on one document:
    /// `_aws` with an integer `Timestamp` and a `CloudWatchMetrics` array of directives;
    /// each directive has a `Namespace` (1–1024 chars), `Dimensions` (arrays of ≤ 30 keys,
    /// each a top-level string member ≤ 1024 chars) and `Metrics` (≤ 100, each `Name`
    /// naming a top-level number or array of ≤ 100 numbers, `Unit` a CloudWatch unit).
    pub(crate) fn check_emf(doc: &Value) -> Result<(), String> {
        const UNITS: &[&str] = &[
            "Seconds",
            "Microseconds",
            "Milliseconds",
            "Bytes",
            "Kilobytes",
            "Megabytes",
            "Gigabytes",
            "Terabytes",
            "Bits",
            "Kilobits",
            "Megabits",
            "Gigabits",
            "Terabits",
            "Percent",
            "Count",
            "Bytes/Second",
            "Kilobytes/Second",
            "Megabytes/Second",
            "Gigabytes/Second",
            "Terabytes/Second",
            "Bits/Second",
            "Kilobits/Second",
            "Megabits/Second",
            "Gigabits/Second",
            "Terabits/Second",
            "Count/Second",
            "None",
        ];
        let root = doc.as_object().ok_or("the document is not an object")?;
        let aws = root
            .get("_aws")
            .and_then(Value::as_object)
            .ok_or("no _aws object")?;
        aws.get("Timestamp")
            .and_then(Value::as_u64)
            .ok_or("_aws.Timestamp is not a non-negative integer")?;
        let directives = aws
            .get("CloudWatchMetrics")
            .and_then(Value::as_array)
            .ok_or("_aws.CloudWatchMetrics is not an array")?;
        if directives.is_empty() {
            return Err("no metric directive".into());
        }
        for d in directives {
            let ns = d["Namespace"].as_str().ok_or("Namespace is not a string")?;
            if ns.trim().is_empty() || ns.len() > 1024 {
                return Err(format!("bad Namespace '{ns}'"));
            }
            for set in d["Dimensions"]
                .as_array()
                .ok_or("Dimensions is not an array")?
            {
                let keys = set.as_array().ok_or("a dimension set is not an array")?;
                if keys.len() > 30 {
                    return Err("more than 30 dimensions in a set".into());
                }
                for k in keys {
                    let k = k.as_str().ok_or("a dimension key is not a string")?;
                    let v = root.get(k).and_then(Value::as_str);
                    if !v.is_some_and(|v| !v.is_empty() && v.len() <= 1024) {
                        return Err(format!("dimension {k} is not a top-level string"));
                    }
                }
            }
            let metrics = d["Metrics"].as_array().ok_or("Metrics is not an array")?;
            if metrics.len() > 100 {
                return Err("more than 100 metrics".into());
            }
            for m in metrics {
                let name = m["Name"].as_str().ok_or("a metric has no Name")?;
                if name.is_empty() || name.len() > 1024 {
                    return Err(format!("bad metric name '{name}'"));
                }
                if let Some(unit) = m.get("Unit") {
                    let unit = unit.as_str().ok_or("Unit is not a string")?;
                    if !UNITS.contains(&unit) {
                        return Err(format!("{name}: unknown unit {unit}"));
                    }
                }
                match root.get(name) {
                    Some(Value::Number(_)) => {}
                    Some(Value::Array(a)) if a.len() <= 100 && a.iter().all(Value::is_number) => {}
                    _ => return Err(format!("metric {name} has no numeric top-level value")),
                }
            }
        }
        Ok(())
    }

    fn trace() -> StoreTrace {
        StoreTrace {
            calls: vec![StoreCall {
                op: "head",
                object: "master",
                duration: Duration::from_millis(3),
            }],
            round_trips: 3,
            bytes_in: 1234,
        }
    }

    fn built() -> Ensured {
        Ensured {
            key: "_variants/v2/a.png/w=5.png".into(),
            built: Some(BuildStats {
                fetch: Duration::from_millis(4),
                timings: Timings {
                    decode: Duration::from_millis(5),
                    resize: Duration::from_millis(6),
                    encode: Duration::from_millis(7),
                },
                store: Duration::from_millis(8),
            }),
            bytes: Some(99),
            inline: None,
        }
    }

    #[test]
    fn records_of_every_outcome_are_valid_emf_and_complete_log_lines() {
        let reused = Ensured {
            built: None,
            ..built()
        };
        let master = Ensured {
            key: "a.png".into(),
            built: None,
            bytes: None,
            inline: None,
        };
        let error = Error::not_found("no image at 'a.png'");
        let cases: [(Result<&Ensured, &Error>, &str, &str); 4] = [
            (Ok(&built()), "built", "built"),
            (Ok(&reused), "reused", "reused"),
            (Ok(&master), "master", "master"),
            (Err(&error), "not_found", "error"),
        ];
        for (result, outcome, dimension) in cases {
            let r = RequestRecord::new(
                "cf-1",
                "a.png",
                "w=5",
                result,
                &trace(),
                Duration::from_millis(42),
            );
            assert_eq!(r.outcome, outcome);
            let doc = r.emf(1_700_000_000_000);
            check_emf(&doc).unwrap_or_else(|e| panic!("{outcome}: {e}: {doc}"));
            assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "imgedge");
            assert_eq!(doc["Outcome"], dimension);
            assert_eq!(doc["Requests"], 1);
            // The document is the log line too: every field of the record is in it.
            let line: Value = serde_json::from_str(&r.to_json_line()).unwrap();
            for (field, value) in line.as_object().unwrap() {
                assert_eq!(&doc[field], value, "{outcome}: {field}");
            }
            for field in [
                "request_id",
                "key",
                "query",
                "outcome",
                "status",
                "bytes_in",
                "total_ms",
                "fetch_ms",
                "decode_ms",
                "resize_ms",
                "encode_ms",
                "store_ms",
                "store_round_trips",
            ] {
                assert!(line.get(field).is_some(), "{outcome}: {field} missing");
            }
        }
        let e = RequestRecord::new("x", "a.png", "", Err(&error), &trace(), Duration::ZERO);
        let doc = e.emf(1);
        assert_eq!(doc["ErrorCode"], "not_found");
        let by_code = &doc["_aws"]["CloudWatchMetrics"][1];
        assert_eq!(by_code["Dimensions"], json!([["ErrorCode"]]));
        assert_eq!(
            by_code["Metrics"],
            json!([{"Name": "Requests", "Unit": "Count"}])
        );
        assert_eq!(doc["status"], 404);
        let b = RequestRecord::new("x", "a.png", "w=5", Ok(&built()), &trace(), Duration::ZERO);
        assert_eq!(b.emf(1)["RenderMs"], 18.0);
        assert_eq!(b.store_round_trips, 3);
        assert_eq!(b.bytes_in, 1234);
        assert_eq!(b.bytes_out, Some(99));
    }

    #[test]
    fn the_validator_catches_broken_documents() {
        let good =
            RequestRecord::new("x", "a.png", "w=5", Ok(&built()), &trace(), Duration::ZERO).emf(1);
        check_emf(&good).unwrap();
        let mut no_value = good.clone();
        no_value.as_object_mut().unwrap().remove("TotalMs");
        assert!(check_emf(&no_value).is_err());
        let mut bad_dimension = good.clone();
        bad_dimension["Outcome"] = json!(3);
        assert!(check_emf(&bad_dimension).is_err());
        let mut bad_unit = good.clone();
        bad_unit["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Furlongs");
        assert!(check_emf(&bad_unit).is_err());
        let mut no_timestamp = good;
        no_timestamp["_aws"]
            .as_object_mut()
            .unwrap()
            .remove("Timestamp");
        assert!(check_emf(&no_timestamp).is_err());
    }

    /// First-column names of the markdown table under `header` in docs/operations.md
    /// (cells may list several: "`A`, `B`").
    fn doc_table(header: &str) -> std::collections::BTreeSet<String> {
        let doc = include_str!("../../docs/operations.md");
        let start = doc.find(header).expect("table in docs/operations.md");
        doc[start..]
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .flat_map(|l| {
                l.split('|')
                    .nth(1)
                    .unwrap_or("")
                    .split(',')
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .map(|c| c.trim().trim_matches('`').to_string())
            .collect()
    }

    /// docs/operations.md documents (and its Logs Insights queries use, checked by
    /// infra/tests/test_operations_doc.py) exactly what is written here.
    #[test]
    fn the_operations_doc_lists_exactly_these_fields_and_metrics() {
        let r = RequestRecord::new("x", "a.png", "w=5", Ok(&built()), &trace(), Duration::ZERO);
        let line: Value = serde_json::from_str(&r.to_json_line()).unwrap();
        let fields: std::collections::BTreeSet<String> =
            line.as_object().unwrap().keys().cloned().collect();
        assert_eq!(fields, doc_table("| field | meaning |"));
        let doc = r.emf(1);
        let metrics: std::collections::BTreeSet<String> = doc["_aws"]["CloudWatchMetrics"][0]
            ["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(metrics, doc_table("| metric | unit | dimensions |"));
    }

    #[test]
    fn log_format_comes_from_the_variable_or_the_terminal() {
        assert_eq!(LogFormat::choose(None, false), Ok(LogFormat::Json));
        assert_eq!(LogFormat::choose(None, true), Ok(LogFormat::Text));
        assert_eq!(LogFormat::choose(Some("json"), true), Ok(LogFormat::Json));
        assert_eq!(LogFormat::choose(Some("text"), false), Ok(LogFormat::Text));
        assert!(LogFormat::choose(Some("yaml"), false).is_err());
    }

    #[test]
    fn no_sig_reaches_a_record_wherever_it_stands() {
        for (raw, logged) in [
            ("w=5&sig=SECRET", "w=5"),
            ("sig=SECRET&w=5", "w=5"),
            ("w=5&sig=SECRET&x=1", "w=5&x=1"),
            ("sig=SECRET", ""),
            ("sig", ""),
            ("w=5&signal=1", "w=5&signal=1"),
            ("", ""),
        ] {
            let r = RequestRecord::base("x", "a.png", raw, Duration::ZERO);
            assert_eq!(r.query, logged, "{raw}");
            assert!(!r.to_json_line().contains("SECRET"));
            assert!(!r.to_text_line().contains("SECRET"));
        }
    }
}

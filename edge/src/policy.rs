//! The owner's policy (DESIGN.md §10): which values of the URL API this deployment accepts,
//! and named presets. Pure: no I/O. It bounds what one master can cost: with lists, the
//! number of distinct variants is the product of their lengths, not ~10^17.
//!
//! `policy.json`: `{"widths":[…],"heights":[…],"qualities":[…],"formats":[…],"dprs":[…],
//! "backgrounds":[…],"presets":{"thumb":"w=256&h=256&fmt=auto"}}`, every field optional
//! (an omitted list allows what the URL API allows). A policy is checked whole when loaded,
//! so a wrong one stops the start with a message naming the entry, never a request.
//!
//! The lists restrict the values a URL *gives*: `w` and `h` before dpr is folded in, `fmt`
//! with `jpg` = `jpeg`, `dpr` as a number, `bg` in either case. An absent parameter takes
//! its default, which is always allowed. That is why [`Policy::check`] reads the raw query
//! (after [`VariantSpec::parse`] accepted it) rather than the spec, where dpr is folded away.
//! The same rules run in the CloudFront Function (infra/cloudfront-function), on the same
//! fixture (tests/fixtures/policy-cases.json).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::spec::{Format, VariantSpec, MAX_DIMENSION};

/// A loaded, checked policy. Values are kept in their canonical spelling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    widths: Option<Vec<u32>>,
    heights: Option<Vec<u32>>,
    qualities: Option<Vec<u32>>,
    /// `webp`, `avif`, `png`, `jpeg`, `auto` (a listed `jpg` is kept as `jpeg`).
    formats: Option<Vec<String>>,
    /// In hundredths: 150 is dpr 1.5.
    dprs: Option<Vec<u32>>,
    /// Lowercase `rrggbb`.
    backgrounds: Option<Vec<String>>,
    /// Name → query, sorted by name so messages list them in one order.
    presets: BTreeMap<String, String>,
}

/// A policy that cannot be used; the message names the entry that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy: {0}")]
pub struct PolicyError(pub String);

/// The file's shape; entries stay JSON values so each can be checked with a message that
/// names it (`widths[1]`), which serde's own type errors would not.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    widths: Option<Value>,
    heights: Option<Value>,
    qualities: Option<Value>,
    formats: Option<Value>,
    dprs: Option<Value>,
    backgrounds: Option<Value>,
    presets: Option<Value>,
}

const FORMATS: &str = "webp, avif, png, jpeg (or jpg), auto";
/// Every dpr the URL API accepts, in hundredths.
const ALL_DPRS: [u32; 301] = {
    let mut all = [0; 301];
    let mut i = 0;
    while i < 301 {
        all[i] = 100 + i as u32;
        i += 1;
    }
    all
};
/// What `fmt=auto` can resolve to besides the master's own format (never in a canonical query).
const AUTO_PICKS: [&str; 2] = ["avif", "webp"];
/// Every master format: a preset must be valid whatever master it is applied to.
const MASTERS: [Format; 3] = [Format::Png, Format::Jpeg, Format::Webp];

impl Policy {
    /// Parse and check the text of a `policy.json`.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| PolicyError(format!("not valid JSON: {e}")))?;
        Policy::from_value(value)
    }

    /// Read and check a `policy.json`; errors name the file.
    pub fn read(path: &std::path::Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PolicyError(format!("cannot read {}: {e}", path.display())))?;
        Policy::parse(&text).map_err(|e| PolicyError(format!("{}: {}", path.display(), e.0)))
    }

    /// Check a policy given as JSON (e.g. `config.json`'s `"policy"`).
    pub fn from_value(value: Value) -> Result<Policy, PolicyError> {
        if !value.is_object() {
            return Err(PolicyError(
                "a policy is a JSON object such as {\"widths\": [256, 512]}".into(),
            ));
        }
        let file: PolicyFile =
            serde_json::from_value(value).map_err(|e| PolicyError(e.to_string()))?;
        let mut policy = Policy {
            widths: list(file.widths, "widths", |v| integer(v, 1, MAX_DIMENSION))?,
            heights: list(file.heights, "heights", |v| integer(v, 1, MAX_DIMENSION))?,
            qualities: list(file.qualities, "qualities", |v| integer(v, 1, 100))?,
            formats: list(file.formats, "formats", format_name)?,
            dprs: list(file.dprs, "dprs", dpr_entry)?,
            backgrounds: list(file.backgrounds, "backgrounds", background)?,
            presets: BTreeMap::new(),
        };
        policy.presets = presets(file.presets, &policy)?;
        Ok(policy)
    }

    /// `?preset=NAME` (the whole query once `sig` is removed) → the preset's query. A query
    /// without a `preset` parameter is returned as it is. Unknown names, and a preset mixed
    /// with other parameters, are a 400 about `preset`. The name is compared as sent (no
    /// percent-decoding): names are plain `[a-z0-9_-]`, so each has one spelling.
    pub fn expand_preset<'q>(&'q self, raw_query: &'q str) -> Result<Cow<'q, str>> {
        let named_preset = |pair: &str| pair.split_once('=').map_or(pair, |(n, _)| n) == "preset";
        if !raw_query.split('&').any(named_preset) {
            return Ok(Cow::Borrowed(raw_query));
        }
        if raw_query.contains('&') {
            return Err(Error::invalid_parameter(
                "preset",
                "a preset stands alone: ?preset=NAME (plus sig when URLs are signed); \
                 it cannot be mixed with other parameters",
            ));
        }
        let name = raw_query.split_once('=').map_or("", |(_, v)| v);
        match self.presets.get(name) {
            Some(query) => Ok(Cow::Borrowed(query.as_str())),
            None if self.presets.is_empty() => Err(Error::invalid_parameter(
                "preset",
                format!(
                    "unknown preset '{}'; this policy defines no presets",
                    shown(name)
                ),
            )),
            None => Err(Error::invalid_parameter(
                "preset",
                format!(
                    "unknown preset '{}'; allowed: {}",
                    shown(name),
                    self.presets.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }

    /// The lists, on a raw query that [`VariantSpec::parse`] has accepted: the first value
    /// outside its list, in query order, is a 400 naming the parameter and what is allowed.
    pub fn check(&self, raw_query: &str) -> Result<()> {
        if raw_query.is_empty() {
            return Ok(());
        }
        for pair in raw_query.split('&') {
            let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
            // Accepted by the URL API, so this decodes; a failure would be a caller's bug.
            let value = percent_encoding::percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| Error::invalid_parameter(name, "not valid percent-encoded UTF-8"))?;
            let (allowed, what) = match name {
                "w" => (contains(&self.widths, &value.parse().ok()), "widths"),
                "h" => (contains(&self.heights, &value.parse().ok()), "heights"),
                "q" => (contains(&self.qualities, &value.parse().ok()), "qualities"),
                "fmt" => {
                    let canonical: &str = if value == "jpg" { "jpeg" } else { &value };
                    let allowed = self
                        .formats
                        .as_ref()
                        .is_none_or(|l| l.iter().any(|f| f == canonical));
                    (allowed, "formats")
                }
                "dpr" => (contains(&self.dprs, &hundredths(&value)), "dprs"),
                "bg" => (
                    contains(&self.backgrounds, &Some(value.to_ascii_lowercase())),
                    "backgrounds",
                ),
                _ => (true, ""),
            };
            if !allowed {
                return Err(Error::invalid_parameter(
                    name,
                    format!(
                        "{name}={} is not allowed by this deployment's policy; allowed {what}: {}",
                        shown(&value),
                        self.shown_list(name)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The origin's check, on a canonical spec (what the viewer-request function forwards:
    /// dpr folded into the sizes, `auto` resolved, defaults dropped), where the lists' raw
    /// values no longer show: a size is admitted when some allowed size times some allowed
    /// dpr gives it, a format when it is listed or `auto` could have chosen it. Every query
    /// [`Policy::check`] accepts yields a spec this admits.
    pub fn admits(&self, spec: &VariantSpec) -> Result<()> {
        let canonical = spec.to_query();
        for pair in canonical.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let allowed = match name {
                "w" => self.admits_size(&self.widths, value),
                "h" => self.admits_size(&self.heights, value),
                "q" => contains(&self.qualities, &value.parse().ok()),
                "fmt" => self.formats.as_ref().is_none_or(|l| {
                    l.iter()
                        .any(|f| f == value || (f == "auto" && AUTO_PICKS.contains(&value)))
                }),
                "bg" => contains(&self.backgrounds, &Some(value.to_string())),
                _ => true,
            };
            if !allowed {
                let what = match name {
                    "w" => "widths (times dprs)",
                    "h" => "heights (times dprs)",
                    "q" => "qualities",
                    "fmt" => "formats",
                    _ => "backgrounds",
                };
                return Err(Error::invalid_parameter(
                    name,
                    format!(
                        "{name}={} is not an output this deployment's policy allows; allowed {what}: {}",
                        shown(value),
                        self.shown_list(name)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A canonical side (device pixels) that `round(side × dpr)` of an allowed side and
    /// dpr (1 always; every dpr of the URL API when `dprs` is not listed) gives.
    fn admits_size(&self, sides: &Option<Vec<u32>>, value: &str) -> bool {
        let Some(sides) = sides else { return true };
        let Ok(value) = value.parse::<u64>() else {
            return false;
        };
        let listed_dprs;
        let dprs: &[u32] = match &self.dprs {
            Some(l) => {
                listed_dprs = [&[100][..], l].concat();
                &listed_dprs
            }
            None => &ALL_DPRS,
        };
        sides.iter().any(|&side| {
            dprs.iter()
                .any(|&d| (u64::from(side) * u64::from(d) + 50) / 100 == value)
        })
    }

    /// The allowed values of one parameter, as a viewer would write them.
    fn shown_list(&self, name: &str) -> String {
        let numbers = |l: &Option<Vec<u32>>| l.iter().flatten().map(u32::to_string).collect();
        let words = |l: &Option<Vec<String>>| l.iter().flatten().cloned().collect();
        let items: Vec<String> = match name {
            "w" => numbers(&self.widths),
            "h" => numbers(&self.heights),
            "q" => numbers(&self.qualities),
            "fmt" => words(&self.formats),
            "dpr" => self.dprs.iter().flatten().map(|&d| dpr_text(d)).collect(),
            "bg" => words(&self.backgrounds),
            _ => Vec::new(),
        };
        items.join(", ")
    }

    /// A preset's query.
    pub fn preset(&self, name: &str) -> Option<&str> {
        self.presets.get(name).map(String::as_str)
    }

    /// The allowed widths, when the policy lists them.
    pub fn widths(&self) -> Option<&[u32]> {
        self.widths.as_deref()
    }

    /// The presets' names, sorted.
    pub fn preset_names(&self) -> impl Iterator<Item = &str> {
        self.presets.keys().map(String::as_str)
    }
}

fn contains<T: PartialEq>(list: &Option<Vec<T>>, value: &Option<T>) -> bool {
    match (list, value) {
        (None, _) => true,
        (Some(list), Some(v)) => list.contains(v),
        (Some(_), None) => false,
    }
}

/// One optional list: absent (or null) = no restriction; else a non-empty array whose
/// entries each pass `entry` (its error is prefixed with `field[i]`).
fn list<T>(
    value: Option<Value>,
    field: &str,
    entry: impl Fn(&Value) -> Result<T, String>,
) -> Result<Option<Vec<T>>, PolicyError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Value::Array(items) = value else {
        return Err(PolicyError(format!(
            "{field} must be a list such as [256, 512], got {value}"
        )));
    };
    if items.is_empty() {
        return Err(PolicyError(format!(
            "{field} is empty, which would refuse every value; leave it out to allow all"
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, v)| entry(v).map_err(|e| PolicyError(format!("{field}[{i}]: {e}"))))
        .collect::<Result<Vec<T>, _>>()
        .map(Some)
}

/// A whole number in `min..=max`; `256.0` counts (JSON cannot tell it from 256 in JS).
fn integer(v: &Value, min: u32, max: u32) -> Result<u32, String> {
    match v.as_f64() {
        Some(n) if n.fract() == 0.0 && n >= min as f64 && n <= max as f64 => Ok(n as u32),
        _ => Err(format!("{v} is not an integer from {min} to {max}")),
    }
}

fn format_name(v: &Value) -> Result<String, String> {
    match v.as_str() {
        Some(f @ ("webp" | "avif" | "png" | "jpeg" | "auto")) => Ok(f.to_string()),
        Some("jpg") => Ok("jpeg".to_string()),
        _ => Err(format!(
            "{v} is not a format of the URL API; allowed: {FORMATS}"
        )),
    }
}

/// A JSON number from 1 to 4 with at most 2 decimals → hundredths.
fn dpr_entry(v: &Value) -> Result<u32, String> {
    let bad = || format!("{v} is not a dpr: a number from 1 to 4 with at most 2 decimals");
    let n = v.as_f64().filter(|_| v.is_number()).ok_or_else(bad)?;
    let scaled = n * 100.0;
    // 1.1 * 100 is 110.00000000000001 in binary floating point.
    if (scaled - scaled.round()).abs() > 1e-6 || !(100.0..=400.0).contains(&scaled.round()) {
        return Err(bad());
    }
    Ok(scaled.round() as u32)
}

fn background(v: &Value) -> Result<String, String> {
    match v.as_str() {
        Some(s) if s.len() == 6 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(s.to_ascii_lowercase())
        }
        _ => Err(format!(
            "{v} is not a colour as 6 hex digits RRGGBB without '#' (e.g. \"ffffff\")"
        )),
    }
}

/// `dpr` as the URL API spells it (`1`, `1.5`, `1.25`) → hundredths; `None` if it is not.
fn hundredths(value: &str) -> Option<u32> {
    let (whole, frac) = value.split_once('.').unwrap_or((value, ""));
    if whole.len() != 1 || frac.len() > 2 || !value.bytes().all(|b| b == b'.' || b.is_ascii_digit())
    {
        return None;
    }
    let frac = format!("{frac:0<2}");
    Some(whole.parse::<u32>().ok()? * 100 + frac.parse::<u32>().ok()?)
}

fn dpr_text(hundredths: u32) -> String {
    match hundredths % 100 {
        0 => format!("{}", hundredths / 100),
        f if f % 10 == 0 => format!("{}.{}", hundredths / 100, f / 10),
        f => format!("{}.{f:02}", hundredths / 100),
    }
}

/// Presets: names `[a-z0-9][a-z0-9_-]{0,63}`; each query valid under the URL API for a
/// master of every format and inside the policy's own lists.
fn presets(value: Option<Value>, policy: &Policy) -> Result<BTreeMap<String, String>, PolicyError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(BTreeMap::new());
    };
    let Value::Object(entries) = value else {
        return Err(PolicyError(format!(
            "presets must be an object such as {{\"thumb\": \"w=256&h=256&fmt=auto\"}}, got {value}"
        )));
    };
    let mut out = BTreeMap::new();
    for (name, query) in entries {
        let good_name = !name.is_empty()
            && name.len() <= 64
            && name.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'-' || b == b'_'))
            });
        if !good_name {
            return Err(PolicyError(format!(
                "presets: the name '{name}' is not allowed; names are 1-64 of a-z 0-9 - _, \
                 starting with a letter or digit"
            )));
        }
        let Some(query) = query.as_str().filter(|q| !q.is_empty()) else {
            return Err(PolicyError(format!(
                "presets.{name}: must be a non-empty query string such as \"w=256&fmt=auto\", got {query}"
            )));
        };
        for master in MASTERS {
            for accept in [None, Some("image/webp"), Some("image/avif")] {
                VariantSpec::parse(query, master, accept).map_err(|e| {
                    PolicyError(format!(
                        "presets.{name}: '{query}' is not a valid query for a {} master: {}",
                        master.query_name(),
                        e.message
                    ))
                })?;
            }
        }
        policy
            .check(query)
            .map_err(|e| PolicyError(format!("presets.{name}: '{query}': {}", e.message)))?;
        out.insert(name, query.to_string());
    }
    Ok(out)
}

/// A value as shown in a message: at most 40 characters.
fn shown(value: &str) -> String {
    value.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/policy-cases.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture file"))
            .expect("fixture is JSON")
    }

    #[test]
    fn fixture_policies_load() {
        let f = fixture();
        for (name, p) in f["policies"].as_object().unwrap() {
            Policy::from_value(p.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn bad_policies_are_refused_naming_the_entry() {
        let f = fixture();
        let bad = f["bad_policies"].as_array().unwrap();
        assert!(bad.len() >= 20);
        for case in bad {
            let p = &case["policy"];
            let e = Policy::from_value(p.clone()).expect_err(&p.to_string());
            for m in case["mentions"].as_array().unwrap() {
                let m = m.as_str().unwrap();
                assert!(e.0.contains(m), "{p}: '{e}' should mention '{m}'");
            }
        }
    }

    #[test]
    fn parse_reports_bad_json_and_unknown_fields() {
        assert!(Policy::parse("{").unwrap_err().0.contains("JSON"));
        let e = Policy::parse(r#"{"widths":[256],"size":[1]}"#).unwrap_err();
        assert!(
            e.to_string().starts_with("policy: ") && e.0.contains("size"),
            "{e}"
        );
        let p = Policy::parse(r#"{"widths":[256.0],"dprs":[1.1]}"#).unwrap();
        assert_eq!(p.widths, Some(vec![256]));
        assert_eq!(p.dprs, Some(vec![110]));
    }

    #[test]
    fn preset_names_are_sorted_and_messages_list_them() {
        let p = Policy::parse(r#"{"presets":{"zeta":"w=1","alpha":"w=2"}}"#).unwrap();
        assert_eq!(p.preset_names().collect::<Vec<_>>(), ["alpha", "zeta"]);
        let e = p.expand_preset("preset=beta").unwrap_err();
        assert!(e.message.ends_with("allowed: alpha, zeta"), "{}", e.message);
        assert_eq!(p.expand_preset("w=5").unwrap(), "w=5");
        assert!(matches!(p.expand_preset("w=5").unwrap(), Cow::Borrowed(_)));
        // A parameter whose name only starts with "preset" is the URL API's business.
        assert_eq!(p.expand_preset("presets=1").unwrap(), "presets=1");
    }

    #[test]
    fn dpr_spellings() {
        assert_eq!(hundredths("1"), Some(100));
        assert_eq!(hundredths("1.5"), Some(150));
        assert_eq!(hundredths("1.50"), Some(150));
        assert_eq!(hundredths("2.25"), Some(225));
        assert_eq!(hundredths("12"), None);
        assert_eq!(hundredths("1.555"), None);
        for h in [100, 150, 125, 200, 105] {
            assert_eq!(hundredths(&dpr_text(h)), Some(h), "{h}");
        }
    }
}

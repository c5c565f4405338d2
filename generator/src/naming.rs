//! Pure naming rules: key prefix templates, master key names and versions, and the
//! CloudFront invalidation paths for overwritten keys.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use thiserror::Error;

/// CloudFront allows at most 15 wildcard paths in progress per distribution.
pub const MAX_WILDCARD_PATHS: usize = 15;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NamingError {
    #[error("date {0:?} is not a calendar date YYYY-MM-DD")]
    Date(String),
    #[error("prefix {prefix:?}: {reason}")]
    Prefix {
        prefix: String,
        reason: &'static str,
    },
}

/// Checks `YYYY-MM-DD` is a real calendar date (so `2025-02-30` is refused).
pub fn parse_date(text: &str) -> Result<time::Date, NamingError> {
    let bad = || NamingError::Date(text.to_string());
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let num = |s: &str| {
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    let (y, m, d) = (num(&text[..4]), num(&text[5..7]), num(&text[8..]));
    let (Some(y), Some(m), Some(d)) = (y, m, d) else {
        return Err(bad());
    };
    let month = time::Month::try_from(m as u8).map_err(|_| bad())?;
    time::Date::from_calendar_date(y as i32, month, d as u8).map_err(|_| bad())
}

/// Expands `{date}` in a key prefix template (the only placeholder) and checks the
/// result is a clean S3 folder: no leading `/`, no empty, `.` or `..` segments. A
/// trailing `/` is added when missing, so keys are always `prefix + image_NNN.png`.
pub fn expand_prefix(template: &str, date: time::Date) -> Result<String, NamingError> {
    let err = |reason| NamingError::Prefix {
        prefix: template.to_string(),
        reason,
    };
    let mut prefix = template.replace("{date}", &date.to_string());
    if prefix.contains(['{', '}']) {
        return Err(err("the only placeholder is {date}"));
    }
    if prefix.is_empty() {
        return Ok(prefix);
    }
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    if prefix.starts_with('/') {
        return Err(err(
            "must not start with '/' (S3 keys have no leading slash)",
        ));
    }
    if prefix[..prefix.len() - 1]
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(err("has an empty, '.' or '..' segment"));
    }
    if prefix.starts_with(edge::key::VARIANTS_PREFIX) {
        return Err(err("_variants/ is reserved for the edge's variants"));
    }
    if prefix.chars().any(|c| c.is_control() || c == '\\') {
        return Err(err("has a control character or backslash"));
    }
    Ok(prefix)
}

/// A master's name inside its prefix: `image_NNN.png` (version 1) or `image_NNN_vK.png`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MasterName {
    pub number: u32,
    pub version: u32,
}

impl MasterName {
    /// Parses the canonical spelling only (`image_007.png`, `image_1234_v3.png`), so a
    /// name maps to exactly one (number, version) and back.
    pub fn parse(name: &str) -> Option<MasterName> {
        let stem = name.strip_prefix("image_")?.strip_suffix(".png")?;
        let (number, version) = match stem.split_once("_v") {
            Some((n, v)) => (n, Some(v)),
            None => (stem, None),
        };
        let number = canonical_u32(number)?;
        let version = match version {
            Some(v) => canonical_u32(v).filter(|&v| v >= 2)?,
            None => 1,
        };
        let parsed = MasterName { number, version };
        (number >= 1 && parsed.to_string() == name).then_some(parsed)
    }
}

fn canonical_u32(digits: &str) -> Option<u32> {
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl std::fmt::Display for MasterName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "image_{:03}", self.number)?;
        if self.version > 1 {
            write!(f, "_v{}", self.version)?;
        }
        f.write_str(".png")
    }
}

/// Characters CloudFront wants percent-encoded in an invalidation path; `/` stays.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The viewer path of a key, as in the URL: `/` + percent-encoded key.
pub fn url_path(key: &str) -> String {
    format!("/{}", utf8_percent_encode(key, PATH))
}

/// Invalidation paths for overwritten master keys: `/<key>*` each (the `*` reaches every
/// query-string variant cached for that path). Over [`MAX_WILDCARD_PATHS`] they
/// collapse into one wildcard on the keys' longest common prefix (`/*` at worst).
pub fn invalidation_paths(keys: &[String]) -> Vec<String> {
    let mut keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    keys.sort_unstable();
    keys.dedup();
    if keys.len() <= MAX_WILDCARD_PATHS {
        return keys.iter().map(|k| format!("{}*", url_path(k))).collect();
    }
    let first = keys[0];
    let last = keys[keys.len() - 1];
    // Sorted, so the common prefix of all is the common prefix of the first and last.
    let common = first
        .char_indices()
        .zip(last.chars())
        .find(|((_, a), b)| a != b)
        .map_or(first.len(), |((i, _), _)| i);
    vec![format!("{}*", url_path(&first[..common]))]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> time::Date {
        parse_date(s).unwrap()
    }

    #[test]
    fn dates_must_be_real_calendar_dates() {
        assert_eq!(date("2025-02-01").to_string(), "2025-02-01");
        assert_eq!(date("2024-02-29").to_string(), "2024-02-29");
        for bad in [
            "2025-02-30",
            "2025-13-01",
            "2025-2-01",
            "25-02-01",
            "2025/02/01",
            "",
            "2025-02-01x",
            "+025-02-01",
            "2025-00-10",
        ] {
            assert_eq!(parse_date(bad), Err(NamingError::Date(bad.into())), "{bad}");
        }
    }

    #[test]
    fn prefix_expands_date_and_gets_a_trailing_slash() {
        let d = date("2025-02-01");
        assert_eq!(
            expand_prefix("outputs/{date}/", d).unwrap(),
            "outputs/2025-02-01/"
        );
        assert_eq!(
            expand_prefix("outputs/{date}", d).unwrap(),
            "outputs/2025-02-01/"
        );
        assert_eq!(expand_prefix("batch-7/", d).unwrap(), "batch-7/");
        assert_eq!(expand_prefix("", d).unwrap(), "");
    }

    #[test]
    fn bad_prefixes_are_refused() {
        let d = date("2025-02-01");
        for bad in [
            "/outputs/",
            "outputs//x/",
            "a/../b/",
            "./a/",
            "outputs/{day}/",
            "_variants/v1/",
            "a\\b/",
            "a\u{7}/",
        ] {
            assert!(
                matches!(expand_prefix(bad, d), Err(NamingError::Prefix { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn master_names_round_trip() {
        let cases = [
            ("image_001.png", 1, 1),
            ("image_042_v2.png", 42, 2),
            ("image_1234.png", 1234, 1),
            ("image_999_v17.png", 999, 17),
        ];
        for (name, number, version) in cases {
            let parsed = MasterName::parse(name).unwrap();
            assert_eq!((parsed.number, parsed.version), (number, version));
            assert_eq!(parsed.to_string(), name);
        }
    }

    #[test]
    fn non_canonical_names_are_not_masters() {
        for name in [
            "image_1.png",
            "image_0001.png",
            "image_000.png",
            "image_001_v1.png",
            "image_001_v02.png",
            "image_001_v.png",
            "image_001.jpg",
            "photo_001.png",
            "image_001.png/x",
            "image_+01.png",
            "image_001_v2_v3.png",
            "image_.png",
        ] {
            assert_eq!(MasterName::parse(name), None, "{name}");
        }
    }

    #[test]
    fn invalidation_paths_are_one_wildcard_per_key() {
        let keys = vec![
            "outputs/2025-02-01/image_002.png".to_string(),
            "outputs/2025-02-01/image_001.png".to_string(),
            "outputs/2025-02-01/image_001.png".to_string(),
        ];
        assert_eq!(
            invalidation_paths(&keys),
            [
                "/outputs/2025-02-01/image_001.png*",
                "/outputs/2025-02-01/image_002.png*"
            ]
        );
    }

    #[test]
    fn invalidation_paths_percent_encode_odd_characters() {
        assert_eq!(
            invalidation_paths(&["a b/ü+x.png".into()]),
            ["/a%20b/%C3%BC%2Bx.png*"]
        );
    }

    #[test]
    fn over_the_wildcard_limit_paths_collapse_to_the_common_prefix() {
        let keys: Vec<String> = (1..=16)
            .map(|n| format!("outputs/2025-02-01/image_{n:03}.png"))
            .collect();
        assert_eq!(invalidation_paths(&keys[..15]).len(), 15);
        assert_eq!(invalidation_paths(&keys), ["/outputs/2025-02-01/image_0*"]);
        let mixed: Vec<String> = (1..=16).map(|n| format!("p{n}/image_001.png")).collect();
        assert_eq!(invalidation_paths(&mixed), ["/p*"]);
        let disjoint: Vec<String> = (0..16)
            .map(|n| format!("{}x/image_001.png", char::from(b'a' + n)))
            .collect();
        assert_eq!(invalidation_paths(&disjoint), ["/*"]);
    }
}

//! `VariantSpec`: the strict parser of the URL query (DESIGN.md §1) into one canonical
//! description of a variant. Pure: no I/O. The canonical query *is* the cache key and the
//! variant's S3 key, so every spelling of the same output maps to one spec.
//!
//! Parsing happens in two passes: each `name=value` pair on its own, in query order (the
//! first bad pair is the one reported), then the rules that tie parameters together
//! (`fit` needs both sides, `dpr` needs a side, the folded size limit, `q` on PNG).
//! The parsed spec is normalised (dpr folded, `auto` and aliases resolved, settings that
//! cannot change the output reset to their defaults), so that equal specs mean equal
//! outputs and `to_query` has one spelling for each.

use crate::error::{Error, Result};
pub use crate::format::Format;
use crate::key::MasterKey;

/// Largest output side in pixels, after dpr is folded in.
pub const MAX_DIMENSION: u32 = 8192;
/// Longest accepted raw query string in bytes.
pub const MAX_QUERY_BYTES: usize = 2048;
/// Quality of lossy outputs when `q` is absent.
pub const DEFAULT_QUALITY: u8 = 80;
/// Background when `bg` is absent.
pub const DEFAULT_BACKGROUND: Rgb = Rgb {
    r: 0xff,
    g: 0xff,
    b: 0xff,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fit {
    Cover,
    Contain,
    Fill,
    Inside,
    Outside,
}

impl Fit {
    pub fn as_str(self) -> &'static str {
        match self {
            Fit::Cover => "cover",
            Fit::Contain => "contain",
            Fit::Fill => "fill",
            Fit::Inside => "inside",
            Fit::Outside => "outside",
        }
    }

    fn from_query(value: &str) -> Option<Fit> {
        Some(match value {
            "cover" => Fit::Cover,
            "contain" => Fit::Contain,
            "fill" => Fit::Fill,
            "inside" => Fit::Inside,
            "outside" => Fit::Outside,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rgb {
    pub r: u8,
    pub g: u8,
    pub b: u8,
}

impl Rgb {
    /// Lowercase `rrggbb`, the canonical spelling of `bg`.
    pub fn to_hex(self) -> String {
        format!("{:02x}{:02x}{:02x}", self.r, self.g, self.b)
    }

    /// Exactly six hex digits, either case.
    fn from_hex(s: &str) -> Option<Rgb> {
        if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let channel = |i: usize| u8::from_str_radix(&s[i..i + 2], 16).ok();
        Some(Rgb {
            r: channel(0)?,
            g: channel(2)?,
            b: channel(4)?,
        })
    }
}

/// A parsed, resolved, canonical variant request. dpr is already folded into the sizes,
/// `auto` is resolved, aliases are gone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VariantSpec {
    /// Requested box width in device pixels (dpr folded in), before the no-upscale rule.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// `Some` only when both width and height are given (default `Cover`).
    pub fit: Option<Fit>,
    /// Output format, resolved (never `auto`).
    pub format: Format,
    /// Quality for lossy outputs, 1–100 (default 80); unused for PNG.
    pub quality: u8,
    /// Padding colour for `contain` and alpha flattening for JPEG (default ffffff).
    pub background: Rgb,
    /// The master's format (from its key), needed to drop `fmt` when it is the default.
    pub master_format: Format,
}

impl VariantSpec {
    /// Parse a raw query string (no leading `?`) for a master of format `master_format`,
    /// with the viewer's `Accept` header for `fmt=auto`.
    pub fn parse(query: &str, master_format: Format, accept: Option<&str>) -> Result<VariantSpec> {
        if query.len() > MAX_QUERY_BYTES {
            return Err(Error::invalid_parameter(
                "query",
                format!(
                    "the query is {} bytes long; at most {MAX_QUERY_BYTES} bytes are allowed",
                    query.len()
                ),
            ));
        }
        let given = if query.is_empty() {
            Given::default()
        } else {
            Given::parse(query)?
        };
        given.resolve(master_format, accept)
    }

    /// Canonical query: defaults dropped, fixed order `w,h,fit,fmt,q,bg`, `&`-joined.
    /// Empty when the spec asks for the master unchanged.
    pub fn to_query(&self) -> String {
        let mut parts = Vec::with_capacity(6);
        if let Some(w) = self.width {
            parts.push(format!("w={w}"));
        }
        if let Some(h) = self.height {
            parts.push(format!("h={h}"));
        }
        if self.width.is_some() && self.height.is_some() {
            if let Some(fit) = self.fit.filter(|f| *f != Fit::Cover) {
                parts.push(format!("fit={}", fit.as_str()));
            }
        }
        if self.format != self.master_format {
            parts.push(format!("fmt={}", self.format.query_name()));
        }
        if self.format.is_lossy() && self.quality != DEFAULT_QUALITY {
            parts.push(format!("q={}", self.quality));
        }
        if self.background_matters() && self.background != DEFAULT_BACKGROUND {
            parts.push(format!("bg={}", self.background.to_hex()));
        }
        parts.join("&")
    }

    /// True when the canonical query is empty: the master is served unchanged.
    pub fn is_identity(&self) -> bool {
        self.to_query().is_empty()
    }

    /// `_variants/<version>/<master key>/<canonical query with & → ,>.<ext>`
    /// ([`MasterKey::variant_key`]).
    ///
    /// Meant for non-identity specs; an identity spec is served as the master itself.
    pub fn variant_key(&self, master: &MasterKey) -> String {
        master.variant_key(&self.to_query(), self.format)
    }

    /// `bg` can change pixels only when `contain` pads the box, or when alpha is
    /// flattened into a JPEG; elsewhere it is reset to the default so that it cannot split
    /// one output into several cache entries.
    fn background_matters(&self) -> bool {
        self.fit == Some(Fit::Contain) || self.format == Format::Jpeg
    }
}

/// `fmt` as given: a concrete format or `auto`.
/// True when a valid query asks for `fmt=auto`: its answer then depends on `Accept`, and
/// viewers must be told so (`Vary: Accept`, DESIGN.md §10).
pub fn asks_for_auto(query: &str) -> bool {
    !query.is_empty()
        && Given::parse(query).is_ok_and(|given| given.fmt == Some(FormatChoice::Auto))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FormatChoice {
    Fixed(Format),
    Auto,
}

/// The parameters of one query, each valid on its own.
#[derive(Debug, Default)]
struct Given {
    w: Option<u32>,
    h: Option<u32>,
    fit: Option<Fit>,
    fmt: Option<FormatChoice>,
    q: Option<u8>,
    /// Device pixel ratio in hundredths (100–400), exact.
    dpr: Option<u32>,
    bg: Option<Rgb>,
}

const PARAM_NAMES: &str = "w, h, fit, fmt, q, dpr, bg";

impl Given {
    /// First pass: every `name=value` pair on its own, in query order.
    fn parse(query: &str) -> Result<Given> {
        let mut given = Given::default();
        for pair in query.split('&') {
            if pair.is_empty() {
                return Err(Error::invalid_parameter(
                    "query",
                    "the query has an empty parameter (a stray '&'); \
                     write name=value pairs joined by single '&'",
                ));
            }
            let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
            if name.is_empty() {
                return Err(Error::invalid_parameter(
                    "query",
                    format!(
                        "'{}' has no parameter name; allowed: {PARAM_NAMES}",
                        shown(pair)
                    ),
                ));
            }
            let already = match name {
                "w" => given.w.is_some(),
                "h" => given.h.is_some(),
                "fit" => given.fit.is_some(),
                "fmt" => given.fmt.is_some(),
                "q" => given.q.is_some(),
                "dpr" => given.dpr.is_some(),
                "bg" => given.bg.is_some(),
                _ => {
                    return Err(Error::invalid_parameter(
                        name,
                        format!(
                            "unknown parameter '{}'; allowed (lowercase): {PARAM_NAMES}",
                            shown(name)
                        ),
                    ))
                }
            };
            if already {
                return Err(Error::invalid_parameter(
                    name,
                    format!("{name} is given more than once; give each parameter at most once"),
                ));
            }
            if raw.is_empty() {
                return Err(Error::invalid_parameter(
                    name,
                    format!("{name} has an empty value; {}", allowed(name)),
                ));
            }
            let value = decode_value(name, raw)?;
            match name {
                "w" => given.w = Some(integer(name, &value, 1, MAX_DIMENSION)?),
                "h" => given.h = Some(integer(name, &value, 1, MAX_DIMENSION)?),
                "q" => given.q = Some(integer(name, &value, 1, 100)? as u8),
                "dpr" => given.dpr = Some(dpr_hundredths(&value)?),
                "fit" => {
                    given.fit = Some(Fit::from_query(&value).ok_or_else(|| bad(name, &value))?)
                }
                "fmt" => {
                    given.fmt = Some(match value.as_str() {
                        "webp" => FormatChoice::Fixed(Format::Webp),
                        "png" => FormatChoice::Fixed(Format::Png),
                        "jpeg" | "jpg" => FormatChoice::Fixed(Format::Jpeg),
                        "avif" => FormatChoice::Fixed(Format::Avif),
                        "auto" => FormatChoice::Auto,
                        _ => return Err(bad(name, &value)),
                    })
                }
                "bg" => given.bg = Some(Rgb::from_hex(&value).ok_or_else(|| bad(name, &value))?),
                _ => unreachable!("names were matched above"),
            }
        }
        Ok(given)
    }

    /// Second pass: rules across parameters, then normalisation into the canonical spec.
    fn resolve(self, master_format: Format, accept: Option<&str>) -> Result<VariantSpec> {
        let both_sides = self.w.is_some() && self.h.is_some();
        if self.fit.is_some() && !both_sides {
            return Err(Error::invalid_parameter(
                "fit",
                "fit needs both w and h; with only one side the aspect ratio is kept",
            ));
        }
        if self.dpr.is_some() && self.w.is_none() && self.h.is_none() {
            return Err(Error::invalid_parameter(
                "dpr",
                "dpr needs w or h; it multiplies the requested size",
            ));
        }
        let dpr = self.dpr.unwrap_or(100);
        let width = self.w.map(|w| folded("w", w, dpr)).transpose()?;
        let height = self.h.map(|h| folded("h", h, dpr)).transpose()?;

        let format = match self.fmt {
            Some(FormatChoice::Fixed(f)) => f,
            Some(FormatChoice::Auto) if accepts(accept, "image/avif") => Format::Avif,
            Some(FormatChoice::Auto) if accepts(accept, "image/webp") => Format::Webp,
            Some(FormatChoice::Auto) | None => master_format,
        };
        let quality = match self.q {
            Some(q) if format.is_lossy() => q,
            // With `auto` the URL's author cannot know which format a viewer gets, so `q`
            // is meant for the lossy case and is ignored when `auto` picks PNG.
            Some(_) if self.fmt == Some(FormatChoice::Auto) => DEFAULT_QUALITY,
            Some(_) => return Err(Error::invalid_parameter(
                "q",
                "q sets the quality of lossy formats (webp, avif, jpeg), but this output is png, \
                     which is lossless; remove q, or add fmt=webp, fmt=avif or fmt=jpeg",
            )),
            None => DEFAULT_QUALITY,
        };
        let mut spec = VariantSpec {
            width,
            height,
            fit: both_sides.then(|| self.fit.unwrap_or(Fit::Cover)),
            format,
            quality,
            background: DEFAULT_BACKGROUND,
            master_format,
        };
        if spec.background_matters() {
            spec.background = self.bg.unwrap_or(DEFAULT_BACKGROUND);
        }
        Ok(spec)
    }
}

/// A side with dpr folded in: `side × dpr` rounded half up, in exact integer arithmetic.
/// The size limit applies to this folded size.
fn folded(name: &str, side: u32, dpr_hundredths: u32) -> Result<u32> {
    let size = (side * dpr_hundredths + 50) / 100;
    if size > MAX_DIMENSION {
        return Err(Error::invalid_parameter(
            name,
            format!(
                "{name} × dpr ({side} × {}) is {size} pixels; at most {MAX_DIMENSION} are allowed",
                dpr_text(dpr_hundredths)
            ),
        ));
    }
    Ok(size)
}

fn dpr_text(hundredths: u32) -> String {
    let text = format!("{}.{:02}", hundredths / 100, hundredths % 100);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// What a parameter accepts, for error messages.
fn allowed(name: &str) -> &'static str {
    match name {
        "w" => "w must be an integer from 1 to 8192",
        "h" => "h must be an integer from 1 to 8192",
        "q" => "q must be an integer from 1 to 100",
        "dpr" => "dpr must be a number from 1 to 4 with at most 2 decimals (e.g. 2 or 1.5)",
        "fit" => "fit must be one of cover, contain, fill, inside, outside (lowercase)",
        "fmt" => "fmt must be one of webp, avif, png, jpeg (or jpg), auto (lowercase)",
        "bg" => "bg must be a colour as 6 hex digits RRGGBB, without '#' (e.g. ff8800)",
        _ => "",
    }
}

fn bad(name: &str, value: &str) -> Error {
    Error::invalid_parameter(name, format!("{}, got '{}'", allowed(name), shown(value)))
}

/// A value as echoed in a message: bounded, so a long query cannot bloat the response.
fn shown(value: &str) -> String {
    const MAX_CHARS: usize = 40;
    if value.chars().count() <= MAX_CHARS {
        value.to_string()
    } else {
        let head: String = value.chars().take(MAX_CHARS).collect();
        format!("{head}…")
    }
}

/// Percent-decode a value to UTF-8. `+` stays a literal plus (no valid value has one, so
/// `+5` fails either way); malformed escapes are errors rather than literal text.
fn decode_value(name: &str, raw: &str) -> Result<String> {
    if crate::key::has_malformed_escape(raw) {
        return Err(Error::invalid_parameter(
            name,
            format!(
                "{name} has a malformed percent-escape ('%' must be followed by two hex digits); {}",
                allowed(name)
            ),
        ));
    }
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
    String::from_utf8(bytes).map_err(|_| {
        Error::invalid_parameter(
            name,
            format!("{name} does not decode to valid UTF-8; {}", allowed(name)),
        )
    })
}

/// A strict decimal integer: digits only, no sign, no leading zero, within `min..=max`.
fn integer(name: &str, value: &str, min: u32, max: u32) -> Result<u32> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid_parameter(
            name,
            format!(
                "{} (digits only: no sign, decimals or spaces), got '{}'",
                allowed(name),
                shown(value)
            ),
        ));
    }
    if value.len() > 1 && value.starts_with('0') {
        return Err(Error::invalid_parameter(
            name,
            format!(
                "{} written without leading zeros, got '{}'",
                allowed(name),
                shown(value)
            ),
        ));
    }
    // More digits than any allowed value: out of range without risking overflow.
    let n = if value.len() > 9 {
        None
    } else {
        value.parse::<u32>().ok()
    };
    match n {
        Some(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Error::invalid_parameter(
            name,
            format!("{}, got '{}'", allowed(name), shown(value)),
        )),
    }
}

/// dpr as exact hundredths: one digit 1–4, then optionally `.` and one or two digits;
/// at most 4.
fn dpr_hundredths(value: &str) -> Result<u32> {
    let (int, frac) = match value.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (value, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let well_formed =
        int.len() == 1 && digits(int) && frac.is_none_or(|f| f.len() <= 2 && digits(f));
    if !well_formed {
        return Err(bad("dpr", value));
    }
    let whole: u32 = int.parse().expect("one digit");
    let hundredths = match frac {
        None => 0,
        Some(f) if f.len() == 1 => f.parse::<u32>().expect("one digit") * 10,
        Some(f) => f.parse::<u32>().expect("two digits"),
    };
    let total = whole * 100 + hundredths;
    if !(100..=400).contains(&total) {
        return Err(bad("dpr", value));
    }
    Ok(total)
}

/// Whether an `Accept` header lists `media` (exactly, case-insensitively) with a
/// non-zero weight. Wildcards (`*/*`, `image/*`) do not count: a viewer that only sends
/// them has not said it decodes the format. A malformed `q` makes the range not count.
fn accepts(accept: Option<&str>, media: &str) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media_type = parts.next().unwrap_or("").trim();
        if !media_type.eq_ignore_ascii_case(media) {
            return false;
        }
        let mut weight = Some(1000);
        for param in parts {
            if let Some((k, v)) = param.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    weight = qvalue_thousandths(v.trim());
                }
            }
        }
        weight.is_some_and(|w| w > 0)
    })
}

/// RFC 9110 qvalue: `0[.ddd]` or `1[.000]`, as thousandths.
fn qvalue_thousandths(v: &str) -> Option<u32> {
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value = format!("{frac:0<3}").parse::<u32>().ok()?;
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;

    const PNG: Format = Format::Png;
    const JPEG: Format = Format::Jpeg;
    const WEBP: Format = Format::Webp;
    const AVIF: Format = Format::Avif;

    fn canon(query: &str, master: Format, accept: Option<&str>) -> String {
        VariantSpec::parse(query, master, accept)
            .unwrap_or_else(|e| panic!("{query:?} was rejected: {e}"))
            .to_query()
    }

    fn spec(query: &str, master: Format) -> VariantSpec {
        VariantSpec::parse(query, master, None).unwrap_or_else(|e| panic!("{query:?}: {e}"))
    }

    /// The query is rejected with 400 invalid_parameter about `param`, and the message
    /// contains `needle`.
    fn rejects(query: &str, master: Format, accept: Option<&str>, param: &str, needle: &str) {
        let e = match VariantSpec::parse(query, master, accept) {
            Ok(s) => panic!("{query:?} was accepted as {s:?}"),
            Err(e) => e,
        };
        assert_eq!(e.kind, ErrorKind::InvalidParameter, "{query:?}: {e}");
        assert_eq!(e.status(), 400, "{query:?}");
        assert_eq!(e.param.as_deref(), Some(param), "{query:?}: {e}");
        assert!(
            e.message.contains(needle),
            "{query:?}: message {:?} lacks {needle:?}",
            e.message
        );
    }

    #[test]
    fn formats_name_their_extension_type_and_lossiness() {
        let table = [
            (Format::Png, "png", "image/png", false),
            (Format::Jpeg, "jpg", "image/jpeg", true),
            (Format::Webp, "webp", "image/webp", true),
            (Format::Avif, "avif", "image/avif", true),
        ];
        for (f, ext, ct, lossy) in table {
            assert_eq!(f.extension(), ext);
            assert_eq!(f.content_type(), ct);
            assert_eq!(f.is_lossy(), lossy);
        }
        assert_eq!(Format::from_master_extension("png"), Some(Format::Png));
        assert_eq!(Format::from_master_extension("jpg"), Some(Format::Jpeg));
        assert_eq!(Format::from_master_extension("jpeg"), Some(Format::Jpeg));
        assert_eq!(Format::from_master_extension("webp"), Some(Format::Webp));
        for ext in ["PNG", "Jpg", "avif", "gif", "", "png "] {
            assert_eq!(Format::from_master_extension(ext), None, "{ext:?}");
        }
    }

    #[test]
    fn design_examples_are_one_variant() {
        assert_eq!(canon("fmt=webp&w=512", PNG, None), "w=512&fmt=webp");
        assert_eq!(canon("w=512&fmt=webp&q=80", PNG, None), "w=512&fmt=webp");
        let master = MasterKey::from_uri("/outputs/2025-02-01/image_001.png").unwrap();
        assert_eq!(
            spec("w=512&fmt=webp", PNG).variant_key(&master),
            "_variants/v2/outputs/2025-02-01/image_001.png/w=512,fmt=webp.webp"
        );
    }

    #[test]
    fn parsed_fields_hold_the_resolved_request() {
        let s = spec("h=300&w=400&fit=contain&fmt=jpg&q=55&bg=FF8800", PNG);
        assert_eq!(
            s,
            VariantSpec {
                width: Some(400),
                height: Some(300),
                fit: Some(Fit::Contain),
                format: Format::Jpeg,
                quality: 55,
                background: Rgb {
                    r: 0xff,
                    g: 0x88,
                    b: 0x00
                },
                master_format: Format::Png,
            }
        );
        assert_eq!(
            s.to_query(),
            "w=400&h=300&fit=contain&fmt=jpeg&q=55&bg=ff8800"
        );
        let one_side = spec("w=10", WEBP);
        assert_eq!(
            (one_side.width, one_side.height, one_side.fit),
            (Some(10), None, None)
        );
        assert_eq!(one_side.quality, 80);
        assert_eq!(spec("w=10&h=20", WEBP).fit, Some(Fit::Cover));
    }

    #[test]
    fn canonical_order_is_fixed() {
        assert_eq!(
            canon("bg=000000&q=50&fmt=jpeg&fit=fill&h=2&w=1", PNG, None),
            "w=1&h=2&fit=fill&fmt=jpeg&q=50&bg=000000"
        );
        assert_eq!(
            canon("bg=000000&fit=contain&q=50&h=2&w=1", WEBP, None),
            "w=1&h=2&fit=contain&q=50&bg=000000"
        );
    }

    #[test]
    fn defaults_are_dropped() {
        assert_eq!(canon("w=5&h=6&fit=cover", PNG, None), "w=5&h=6");
        assert_eq!(canon("w=5&fmt=png", PNG, None), "w=5");
        assert_eq!(canon("w=5&fmt=jpeg", JPEG, None), "w=5");
        assert_eq!(canon("w=5&fmt=jpg", JPEG, None), "w=5");
        assert_eq!(canon("w=5&fmt=webp", WEBP, None), "w=5");
        assert_eq!(canon("w=5&q=80", JPEG, None), "w=5");
        assert_eq!(canon("w=5&dpr=1", PNG, None), "w=5");
        assert_eq!(
            canon("w=5&h=5&fit=contain&bg=ffffff", PNG, None),
            "w=5&h=5&fit=contain"
        );
        assert_eq!(canon("w=5&bg=FFFFFF&fmt=jpeg", PNG, None), "w=5&fmt=jpeg");
    }

    #[test]
    fn identity_queries_serve_the_master() {
        for (q, m) in [
            ("", PNG),
            ("fmt=png", PNG),
            ("fmt=jpg", JPEG),
            ("q=80", JPEG),
            ("q=80&fmt=webp", WEBP),
            ("bg=000000", PNG),
            ("bg=123abc", WEBP),
            ("fmt=auto", PNG),
        ] {
            let s = spec(q, m);
            assert_eq!(s.to_query(), "", "{q}");
            assert!(s.is_identity(), "{q}");
        }
        assert!(!spec("q=50", JPEG).is_identity());
        assert!(!spec("fmt=webp", PNG).is_identity());
        assert_eq!(canon("fmt=webp", PNG, None), "fmt=webp");
    }

    #[test]
    fn jpg_is_an_alias_for_jpeg() {
        assert_eq!(canon("w=5&fmt=jpg", PNG, None), "w=5&fmt=jpeg");
        assert_eq!(spec("w=5&fmt=jpg", PNG), spec("w=5&fmt=jpeg", PNG));
        let master = MasterKey::from_uri("/a.png").unwrap();
        assert_eq!(
            spec("w=5&fmt=jpg", PNG).variant_key(&master),
            "_variants/v2/a.png/w=5,fmt=jpeg.jpg"
        );
    }

    #[test]
    fn variant_keys_use_the_output_extension() {
        let png = MasterKey::from_uri("/d/a.png").unwrap();
        let jpg = MasterKey::from_uri("/d/b.jpeg").unwrap();
        assert_eq!(
            spec("w=5", PNG).variant_key(&png),
            "_variants/v2/d/a.png/w=5.png"
        );
        assert_eq!(
            spec("w=5", JPEG).variant_key(&jpg),
            "_variants/v2/d/b.jpeg/w=5.jpg"
        );
        assert_eq!(
            spec("w=5&h=7&fit=inside&fmt=webp&q=90", JPEG).variant_key(&jpg),
            "_variants/v2/d/b.jpeg/w=5,h=7,fit=inside,fmt=webp,q=90.webp"
        );
        assert_eq!(
            spec("q=42", JPEG).variant_key(&jpg),
            "_variants/v2/d/b.jpeg/q=42.jpg"
        );
    }

    #[test]
    fn integers_are_strict() {
        for (q, needle) in [
            ("w=+5", "digits only"),
            ("w=-5", "digits only"),
            ("w=5.0", "digits only"),
            ("w=5%20", "digits only"),
            ("w=%205", "digits only"),
            ("w=5a", "digits only"),
            ("w=0x10", "digits only"),
            ("w=1e3", "digits only"),
            ("w=%2B5", "digits only"),
            ("w=05", "without leading zeros"),
            ("w=00", "without leading zeros"),
            ("w=0", "from 1 to 8192"),
            ("w=8193", "from 1 to 8192"),
            ("w=99999999999999999999", "from 1 to 8192"),
        ] {
            rejects(q, PNG, None, "w", needle);
        }
        rejects(
            "h=0",
            PNG,
            None,
            "h",
            "h must be an integer from 1 to 8192, got '0'",
        );
        rejects("h=8193", PNG, None, "h", "from 1 to 8192");
        rejects(
            "w=5&q=0",
            JPEG,
            None,
            "q",
            "q must be an integer from 1 to 100, got '0'",
        );
        rejects("w=5&q=101", JPEG, None, "q", "from 1 to 100");
        rejects("w=5&q=080", JPEG, None, "q", "leading zeros");
        assert_eq!(canon("w=1&h=8192", PNG, None), "w=1&h=8192");
        assert_eq!(canon("w=8192&q=1", JPEG, None), "w=8192&q=1");
        assert_eq!(canon("w=8&q=100", JPEG, None), "w=8&q=100");
    }

    #[test]
    fn values_are_percent_decoded_first() {
        assert_eq!(canon("w=%35%31%32", PNG, None), "w=512");
        assert_eq!(canon("w=5&fmt=%77ebp", PNG, None), "w=5&fmt=webp");
        assert_eq!(
            canon("w=5&h=5&fit=contain&bg=%41%42cdef", PNG, None),
            "w=5&h=5&fit=contain&bg=abcdef"
        );
        assert_eq!(canon("w=5&dpr=1%2E5", PNG, None), "w=8");
        rejects("w=%FF", PNG, None, "w", "UTF-8");
        rejects("fmt=%C3", PNG, None, "fmt", "UTF-8");
        rejects("w=%zz", PNG, None, "w", "percent-escape");
        rejects("w=5%", PNG, None, "w", "percent-escape");
        rejects("bg=%2", PNG, None, "bg", "percent-escape");
        // An escaped '#' is still not part of a colour.
        rejects("w=5&fmt=jpeg&bg=%23ffffff", PNG, None, "bg", "6 hex digits");
    }

    #[test]
    fn names_are_exact_and_lowercase() {
        rejects("W=5", PNG, None, "W", "unknown parameter 'W'");
        rejects(
            "w=5&Fmt=webp",
            PNG,
            None,
            "Fmt",
            "allowed (lowercase): w, h, fit, fmt, q, dpr, bg",
        );
        rejects("width=5", PNG, None, "width", "unknown parameter");
        rejects("w=5&quality=5", PNG, None, "quality", "unknown parameter");
        rejects("%77=5", PNG, None, "%77", "unknown parameter");
        rejects("w%3D5", PNG, None, "w%3D5", "unknown parameter");
        rejects("w =5", PNG, None, "w ", "unknown parameter");
        rejects("=5", PNG, None, "query", "no parameter name");
        rejects("w=5&&h=5", PNG, None, "query", "stray '&'");
        rejects("w=5&", PNG, None, "query", "stray '&'");
        rejects("&w=5", PNG, None, "query", "stray '&'");
    }

    #[test]
    fn keyword_values_are_lowercase_and_known() {
        rejects(
            "w=5&fmt=WEBP",
            PNG,
            None,
            "fmt",
            "fmt must be one of webp, avif, png, jpeg (or jpg), auto (lowercase), got 'WEBP'",
        );
        rejects("w=5&fmt=gif", PNG, None, "fmt", "got 'gif'");
        rejects("w=5&fmt=Auto", PNG, None, "fmt", "lowercase");
        rejects(
            "w=5&h=5&fit=COVER",
            PNG,
            None,
            "fit",
            "fit must be one of cover, contain, fill, inside, outside",
        );
        rejects("w=5&h=5&fit=crop", PNG, None, "fit", "got 'crop'");
        for fit in ["cover", "contain", "fill", "inside", "outside"] {
            let s = spec(&format!("w=5&h=6&fit={fit}"), PNG);
            assert_eq!(s.fit.map(Fit::as_str), Some(fit));
        }
    }

    #[test]
    fn repeats_and_empty_values_are_rejected() {
        rejects("w=5&w=5", PNG, None, "w", "more than once");
        rejects("w=5&h=5&h=6", PNG, None, "h", "more than once");
        rejects("w=5&fmt=webp&fmt=png", PNG, None, "fmt", "more than once");
        rejects("w=5&q=5&q=5", JPEG, None, "q", "more than once");
        rejects(
            "w=",
            PNG,
            None,
            "w",
            "empty value; w must be an integer from 1 to 8192",
        );
        rejects("w", PNG, None, "w", "empty value");
        rejects("w=5&fmt=", PNG, None, "fmt", "empty value");
        rejects("w=5&bg", PNG, None, "bg", "empty value");
        rejects("w=5&dpr=", PNG, None, "dpr", "empty value");
    }

    #[test]
    fn the_first_bad_parameter_in_query_order_is_reported() {
        rejects("w=0&h=0", PNG, None, "w", "");
        rejects("h=0&w=0", PNG, None, "h", "");
        rejects("x=1&w=0", PNG, None, "x", "unknown");
        // Per-pair problems come before rules that tie parameters together.
        rejects("fit=contain&w=0", PNG, None, "w", "");
        rejects("q=5&bg=nothex", PNG, None, "bg", "");
    }

    #[test]
    fn fit_needs_both_sides() {
        rejects(
            "w=5&fit=contain",
            PNG,
            None,
            "fit",
            "fit needs both w and h",
        );
        rejects("h=5&fit=cover", PNG, None, "fit", "both w and h");
        rejects("fit=fill", PNG, None, "fit", "both w and h");
    }

    #[test]
    fn dpr_needs_a_side_and_is_folded_half_up() {
        rejects("dpr=2", PNG, None, "dpr", "dpr needs w or h");
        rejects("dpr=1", PNG, None, "dpr", "w or h");
        rejects("fmt=webp&dpr=2", PNG, None, "dpr", "w or h");
        assert_eq!(canon("w=100&dpr=2", PNG, None), "w=200");
        assert_eq!(canon("h=100&dpr=1.5", PNG, None), "h=150");
        assert_eq!(canon("w=3&h=5&dpr=1.5", PNG, None), "w=5&h=8"); // 4.5 → 5, 7.5 → 8
        assert_eq!(canon("w=1&dpr=1.49", PNG, None), "w=1"); // 1.49 → 1
        assert_eq!(canon("w=2&dpr=1.25", PNG, None), "w=3"); // 2.5 → 3
        assert_eq!(canon("w=333&dpr=2.25", PNG, None), "w=749"); // 749.25 → 749
        assert_eq!(canon("w=7&dpr=3.5", PNG, None), "w=25"); // 24.5 → 25
        assert_eq!(canon("w=100&dpr=4", PNG, None), "w=400");
        assert_eq!(canon("w=100&dpr=4.00", PNG, None), "w=400");
        assert_eq!(canon("w=100&dpr=2.0", PNG, None), "w=200");
        assert_eq!(canon("w=100&dpr=1.01", PNG, None), "w=101");
        assert_eq!(spec("w=100&dpr=2", PNG), spec("w=200", PNG));
    }

    #[test]
    fn dpr_is_1_to_4_with_at_most_two_decimals() {
        for bad in [
            "0.5", "4.01", "5", "0", "1.555", "1.", ".5", "01", "01.5", "+2", "2e0", "1,5", "1.5.",
            "1..5", "2 ", "-1", "10", "4.1", "inf", "NaN",
        ] {
            rejects(
                &format!("w=10&dpr={bad}"),
                PNG,
                None,
                "dpr",
                "dpr must be a number from 1 to 4 with at most 2 decimals",
            );
        }
    }

    #[test]
    fn folded_size_is_limited_to_8192() {
        assert_eq!(canon("w=4096&dpr=2", PNG, None), "w=8192");
        rejects(
            "w=4097&dpr=2",
            PNG,
            None,
            "w",
            "w × dpr (4097 × 2) is 8194 pixels; at most 8192",
        );
        rejects("w=10&h=2049&dpr=4", PNG, None, "h", "8196 pixels");
        rejects("w=5462&dpr=1.5", PNG, None, "w", "8193 pixels");
        // The limit applies to the folded, rounded size: 6827 × 1.2 = 8192.4 → 8192.
        assert_eq!(canon("w=6827&dpr=1.2", PNG, None), "w=8192");
        rejects("w=6827&dpr=1.21", PNG, None, "w", "1.21");
    }

    #[test]
    fn query_length_is_limited() {
        // 2048 bytes is fine (it fails later for its own reason, not its length).
        let at_limit = format!("w=5&bg={}", "0".repeat(MAX_QUERY_BYTES - 7));
        assert_eq!(at_limit.len(), MAX_QUERY_BYTES);
        rejects(&at_limit, PNG, None, "bg", "6 hex digits");
        let over = format!("w=5&bg={}", "0".repeat(MAX_QUERY_BYTES - 6));
        rejects(&over, PNG, None, "query", "2049 bytes long; at most 2048");
        let e = VariantSpec::parse(&over, PNG, None).unwrap_err();
        assert!(e.message.len() < 200, "the message does not echo the query");
        // Long bad values are echoed truncated.
        let e = VariantSpec::parse(&at_limit, PNG, None).unwrap_err();
        assert!(e.message.len() < 200, "{}", e.message);
    }

    #[test]
    fn avif_is_a_format_with_a_quality() {
        let spec = spec_with("w=5&fmt=avif", PNG, None);
        assert_eq!((spec.format, spec.quality), (AVIF, DEFAULT_QUALITY));
        assert_eq!(spec.to_query(), "w=5&fmt=avif");
        assert_eq!(
            spec_with("fmt=avif&q=50", JPEG, None).to_query(),
            "fmt=avif&q=50"
        );
    }

    /// The `Accept` headers real browsers send for images (`<img>` requests).
    const CHROME: &str = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";
    const FIREFOX: &str = "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5";
    const FIREFOX_92: &str = "image/avif,image/webp,*/*";
    const SAFARI_16: &str = "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5";
    const SAFARI_OLD: &str =
        "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5";

    #[test]
    fn auto_prefers_avif_then_webp_for_real_browsers() {
        let auto = |m: Format, accept: &str| spec_with("w=5&fmt=auto", m, Some(accept)).format;
        // Safari lists webp first: the order of the list is not a preference here.
        for browser in [CHROME, FIREFOX, FIREFOX_92, SAFARI_16] {
            assert_eq!(auto(PNG, browser), AVIF, "{browser}");
            assert_eq!(auto(JPEG, browser), AVIF, "{browser}");
        }
        assert_eq!(auto(PNG, SAFARI_OLD), WEBP);
        assert_eq!(auto(PNG, "image/avif"), AVIF);
        assert_eq!(auto(PNG, "IMAGE/AVIF;q=0.1"), AVIF);
        // avif refused by weight: the next in line.
        assert_eq!(auto(PNG, "image/avif;q=0,image/webp"), WEBP);
        assert_eq!(auto(PNG, "image/avif;q=0,*/*"), PNG);
        assert_eq!(auto(PNG, "image/avifx,image/*,*/*"), PNG);
    }

    #[test]
    fn auto_picks_webp_only_when_accept_lists_it() {
        let auto = |m: Format, accept: Option<&str>| spec_with("w=5&fmt=auto", m, accept).format;
        assert_eq!(auto(PNG, Some("image/webp")), WEBP);
        assert_eq!(
            auto(JPEG, Some("image/webp,image/apng,image/*,*/*;q=0.8")),
            WEBP
        );
        assert_eq!(auto(PNG, Some("text/html, IMAGE/WEBP ; q=0.5")), WEBP);
        assert_eq!(auto(PNG, Some("image/webp;q=1.000")), WEBP);
        assert_eq!(auto(PNG, Some("image/webp;q=0.001")), WEBP);
        assert_eq!(auto(PNG, Some("image/webp;level=1")), WEBP);
        // Not listed, listed with weight 0, or only wildcards: master's format.
        for accept in [
            None,
            Some(""),
            Some("*/*"),
            Some("image/*"),
            Some("image/webp;q=0"),
            Some("image/webp; q=0.000"),
            Some("image/webp;Q=0"),
            Some("image/webpx"),
            Some("image/webp-x"),
            Some("text/image/webp"),
            Some("image/png;image/webp"),
            Some("image/webp;q=2"),
            Some("image/webp;q=abc"),
            Some("image/webp;q=.5"),
            Some("image/webp;q=1.5"),
        ] {
            assert_eq!(auto(PNG, accept), PNG, "{accept:?}");
            assert_eq!(auto(JPEG, accept), JPEG, "{accept:?}");
        }
        assert_eq!(
            canon("w=5&fmt=auto", PNG, Some("image/webp")),
            "w=5&fmt=webp"
        );
        assert_eq!(canon("w=5&fmt=auto", PNG, Some("*/*")), "w=5");
        assert_eq!(canon("w=5&fmt=auto", WEBP, Some("image/webp")), "w=5");
        // Accept matters only for auto.
        assert_eq!(canon("w=5", PNG, Some("image/webp")), "w=5");
        assert_eq!(
            canon("w=5&fmt=jpeg", PNG, Some("image/webp")),
            "w=5&fmt=jpeg"
        );
    }

    fn spec_with(query: &str, master: Format, accept: Option<&str>) -> VariantSpec {
        VariantSpec::parse(query, master, accept).unwrap_or_else(|e| panic!("{query:?}: {e}"))
    }

    #[test]
    fn q_is_only_for_lossy_outputs() {
        let msg = "q sets the quality of lossy formats";
        rejects("w=5&q=50", PNG, None, "q", msg);
        rejects("w=5&fmt=png&q=50", JPEG, None, "q", msg);
        rejects("w=5&fmt=png&q=80", WEBP, None, "q", "this output is png");
        rejects("q=80", PNG, None, "q", msg);
        assert_eq!(canon("w=5&q=50", JPEG, None), "w=5&q=50");
        assert_eq!(canon("w=5&q=50", WEBP, None), "w=5&q=50");
        assert_eq!(canon("w=5&fmt=webp&q=50", PNG, None), "w=5&fmt=webp&q=50");
        assert_eq!(canon("w=5&fmt=jpeg&q=50", PNG, None), "w=5&fmt=jpeg&q=50");
        // With auto, q applies when a lossy format is picked and is ignored for PNG.
        assert_eq!(
            canon("w=5&fmt=auto&q=50", PNG, Some("image/webp")),
            "w=5&fmt=webp&q=50"
        );
        assert_eq!(canon("w=5&fmt=auto&q=50", PNG, None), "w=5");
        assert_eq!(
            spec_with("w=5&fmt=auto&q=50", PNG, None).quality,
            DEFAULT_QUALITY
        );
        assert_eq!(canon("w=5&fmt=auto&q=50", JPEG, None), "w=5&q=50");
    }

    #[test]
    fn bg_is_hex_and_kept_only_where_it_shows() {
        assert_eq!(
            canon("w=5&h=5&fit=contain&bg=ABCDEF", PNG, None),
            "w=5&h=5&fit=contain&bg=abcdef"
        );
        assert_eq!(
            canon("w=5&h=5&fit=contain&bg=aBcDeF", WEBP, None),
            "w=5&h=5&fit=contain&bg=abcdef"
        );
        assert_eq!(
            canon("w=5&fmt=jpeg&bg=000000", PNG, None),
            "w=5&fmt=jpeg&bg=000000"
        );
        assert_eq!(canon("w=5&bg=000000", JPEG, None), "w=5&bg=000000");
        // Cannot change the output: dropped, and the spec holds the default.
        for (q, m) in [
            ("w=5&bg=000000", PNG),
            ("w=5&bg=000000&fmt=webp", JPEG),
            ("w=5&h=5&fit=cover&bg=000000", PNG),
            ("w=5&h=5&fit=inside&bg=000000", WEBP),
        ] {
            let s = spec(q, m);
            assert_eq!(s.background, DEFAULT_BACKGROUND, "{q}");
            assert!(!s.to_query().contains("bg"), "{q}");
        }
        for bad in [
            "fff", "fffffff", "#ffffff", "gggggg", "ff ff f", "ffffff00", "-fffff",
        ] {
            rejects(
                &format!("w=5&fmt=jpeg&bg={bad}"),
                PNG,
                None,
                "bg",
                "6 hex digits RRGGBB",
            );
        }
        // Validated even where it would be dropped.
        rejects("w=5&bg=xyz", PNG, None, "bg", "6 hex digits");
    }

    /// The shared cases of tests/fixtures/spec-cases.json, also read by the node tests of
    /// the viewer-request CloudFront Function: both sides must agree on every case.
    #[test]
    fn shared_fixture_cases_hold() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/spec-cases.json"
        );
        let text = std::fs::read_to_string(path).expect("fixture file");
        let cases: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");

        // Compared on the JSON body a viewer gets; the fixture omits the message.
        let expect_error = |what: &str, e: &Error, want: &serde_json::Value| {
            let body: serde_json::Value = serde_json::from_str(&e.to_json()).expect("JSON body");
            for field in ["status", "error", "param"] {
                assert_eq!(
                    body.get(field),
                    want.get(field),
                    "{what}: {field} of {body}"
                );
            }
            assert!(
                body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{what}"
            );
        };

        let query_cases = cases["query_cases"].as_array().expect("query_cases");
        assert!(query_cases.len() >= 80, "the fixture covers every rule");
        for case in query_cases {
            let uri = case["uri"].as_str().expect("uri");
            let query = case["query"].as_str().expect("query");
            let accept = case["accept"].as_str();
            let what = format!("{uri}?{query} (Accept: {accept:?})");
            let result = crate::service::resolve(uri, query, accept);
            match (&case["canonical"], &case["error"]) {
                (serde_json::Value::String(want), serde_json::Value::Null) => {
                    let resolved = result.unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(&resolved.canonical_query(), want, "{what}");
                }
                (serde_json::Value::Null, want @ serde_json::Value::Object(_)) => {
                    let e = result.expect_err(&what);
                    expect_error(&what, &e, want);
                }
                _ => panic!("{what}: a case has exactly one of canonical and error"),
            }
        }

        let key_cases = cases["key_cases"].as_array().expect("key_cases");
        for case in key_cases {
            let uri = case["uri"].as_str().expect("uri");
            let result = MasterKey::from_uri(uri);
            match (&case["key"], &case["error"]) {
                (serde_json::Value::String(want), serde_json::Value::Null) => {
                    let key = result.unwrap_or_else(|e| panic!("{uri}: {e}"));
                    assert_eq!(key.as_str(), want, "{uri}");
                }
                (serde_json::Value::Null, want @ serde_json::Value::Object(_)) => {
                    let e = result.expect_err(uri);
                    assert!(
                        want.get("param").is_none(),
                        "{uri}: key errors have no param"
                    );
                    expect_error(uri, &e, want);
                }
                _ => panic!("{uri}: a case has exactly one of key and error"),
            }
        }

        // Spellings of one key: what the function forwards (its normal form) and what the
        // viewer sent name the same master here; the emulator's cache key is the key itself.
        let path_cases = cases["path_cases"].as_array().expect("path_cases");
        assert!(!path_cases.is_empty());
        for case in path_cases {
            let want = case["key"].as_str().expect("key");
            for field in ["uri", "forwarded"] {
                let uri = case[field].as_str().expect(field);
                let key = MasterKey::from_uri(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
                assert_eq!(key.as_str(), want, "{field} {uri}");
            }
        }
    }

    // ---- properties ----

    const ACCEPTS: [Option<&str>; 4] = [
        None,
        Some("image/webp"),
        Some("image/avif,image/webp;q=0,*/*"),
        Some("image/*"),
    ];

    fn master_format() -> impl Strategy<Value = Format> {
        prop::sample::select(vec![PNG, JPEG, WEBP])
    }

    /// Queries valid by construction, as (name, value) pairs in a random order.
    fn valid_pairs() -> impl Strategy<Value = (Format, Vec<(String, String)>)> {
        let dpr = prop_oneof![
            (1u32..=4).prop_map(|d| d.to_string()),
            (100u32..=400).prop_map(|d| format!("{}.{:02}", d / 100, d % 100)),
            (10u32..=40).prop_map(|d| format!("{}.{}", d / 10, d % 10)),
        ];
        let hex = "[0-9a-fA-F]{6}";
        (
            master_format(),
            prop::option::of(1u32..=2048),
            prop::option::of(1u32..=2048),
            prop::option::of(prop::sample::select(vec![
                "cover", "contain", "fill", "inside", "outside",
            ])),
            prop::option::of(prop::sample::select(vec![
                "webp", "png", "jpeg", "jpg", "auto",
            ])),
            prop::option::of(1u32..=100),
            prop::option::of(dpr),
            prop::option::of(hex),
        )
            .prop_map(|(m, w, h, fit, fmt, q, dpr, bg)| {
                let mut pairs = vec![];
                let mut push = |n: &str, v: String| pairs.push((n.to_string(), v));
                if let Some(w) = w {
                    push("w", w.to_string());
                }
                if let Some(h) = h {
                    push("h", h.to_string());
                }
                if let (Some(fit), true) = (fit, w.is_some() && h.is_some()) {
                    push("fit", fit.to_string());
                }
                let png_out = fmt == Some("png") || (fmt.is_none() && m == PNG);
                if let Some(fmt) = fmt {
                    push("fmt", fmt.to_string());
                }
                if let (Some(q), false) = (q, png_out) {
                    push("q", q.to_string());
                }
                if let (Some(dpr), true) = (dpr, w.is_some() || h.is_some()) {
                    push("dpr", dpr);
                }
                if let Some(bg) = bg {
                    push("bg", bg);
                }
                (m, pairs)
            })
    }

    fn join(pairs: &[(String, String)]) -> String {
        pairs
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1500))]

        #[test]
        fn valid_queries_are_accepted_and_canonical_form_is_a_fixed_point(
            (m, pairs) in valid_pairs(),
            accept in prop::sample::select(ACCEPTS.to_vec()),
        ) {
            let query = join(&pairs);
            let s = VariantSpec::parse(&query, m, accept)
                .map_err(|e| TestCaseError::fail(format!("{query}: {e}")))?;
            let canonical = s.to_query();
            // Re-parsing the canonical form gives the same spec, whatever the Accept
            // header (the canonical form never says auto).
            for again_accept in ACCEPTS {
                let again = VariantSpec::parse(&canonical, m, again_accept)
                    .map_err(|e| TestCaseError::fail(format!("{canonical}: {e}")))?;
                prop_assert_eq!(&again, &s);
                prop_assert_eq!(again.to_query(), canonical.clone());
            }
            prop_assert!(s.width.is_none_or(|w| (1..=MAX_DIMENSION).contains(&w)));
            prop_assert!(s.height.is_none_or(|h| (1..=MAX_DIMENSION).contains(&h)));
            prop_assert_eq!(s.fit.is_some(), s.width.is_some() && s.height.is_some());
            prop_assert!(canonical.len() <= query.len() + "fmt=webp&".len());
        }

        #[test]
        fn permutations_and_encodings_give_the_same_key(
            (m, pairs) in valid_pairs(),
            accept in prop::sample::select(ACCEPTS.to_vec()),
            seed in any::<u64>(),
        ) {
            let master = match m {
                PNG => MasterKey::from_uri("/o/a.png").unwrap(),
                JPEG => MasterKey::from_uri("/o/a.jpg").unwrap(),
                _ => MasterKey::from_uri("/o/a.webp").unwrap(),
            };
            let reference = VariantSpec::parse(&join(&pairs), m, accept).unwrap();
            let mut shuffled = pairs.clone();
            // A deterministic Fisher–Yates from the seed.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let other = VariantSpec::parse(&join(&shuffled), m, accept).unwrap();
            prop_assert_eq!(other.variant_key(&master), reference.variant_key(&master));
            prop_assert_eq!(&other, &reference);
        }

        #[test]
        fn escaped_values_mean_the_same(
            (m, pairs) in valid_pairs(),
            masks in prop::collection::vec(any::<u8>(), 8),
        ) {
            let reference = VariantSpec::parse(&join(&pairs), m, None).unwrap();
            let encoded: Vec<(String, String)> = pairs
                .iter()
                .zip(masks.iter().cycle())
                .map(|((n, v), mask)| {
                    let v = v.bytes().enumerate().map(|(i, b)| {
                        if mask & (1 << (i % 8)) != 0 { format!("%{b:02x}") } else { (b as char).to_string() }
                    }).collect();
                    (n.clone(), v)
                })
                .collect();
            prop_assert_eq!(VariantSpec::parse(&join(&encoded), m, None).unwrap(), reference);
        }

        #[test]
        fn arbitrary_queries_never_panic(
            query in ".{0,80}",
            m in master_format(),
            accept in prop::option::of(".{0,40}"),
        ) {
            if let Ok(s) = VariantSpec::parse(&query, m, accept.as_deref()) {
                let canonical = s.to_query();
                prop_assert_eq!(VariantSpec::parse(&canonical, m, None).unwrap(), s);
            }
        }

        #[test]
        fn query_shaped_noise_never_panics_and_round_trips(
            query in r"((w|h|q|dpr|fit|fmt|bg|W|x)=?([0-9]{0,5}|[0-9]\.[0-9]{0,3}|%[0-9a-fA-F]{0,2}|cover|contain|fill|inside|outside|webp|png|jpe?g|auto|avif|[a-fA-F0-9]{6}|\+)&?){0,8}",
            m in master_format(),
            accept in prop::sample::select(ACCEPTS.to_vec()),
        ) {
            match VariantSpec::parse(&query, m, accept) {
                Ok(s) => {
                    let canonical = s.to_query();
                    prop_assert_eq!(&VariantSpec::parse(&canonical, m, None).unwrap(), &s);
                }
                Err(e) => {
                    prop_assert_eq!(e.status(), 400);
                    prop_assert!(e.param.is_some());
                    prop_assert!(!e.message.is_empty());
                }
            }
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn long_values_never_panic(value in ".{0,2100}", name in prop::sample::select(vec!["w", "dpr", "bg", "fmt"])) {
            let query = format!("{name}={value}");
            let _ = VariantSpec::parse(&query, PNG, Some(&value));
        }
    }
}

//! Master keys: the viewer's URI path, validated before any store call (DESIGN.md §2).
//!
//! The path is percent-decoded once (a `+` stays a literal plus, as in S3 keys) and the
//! decoded string is what every rule looks at, so an escape cannot smuggle a `..`, a `//`
//! or the reserved `_variants/` prefix past the checks.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::{Error, Result};
use crate::format::Format;

/// Prefix of every stored variant; viewers may not address it.
pub const VARIANTS_PREFIX: &str = "_variants/";

/// Transform version in every variant key (`_variants/v2/…`): bump it when the
/// pipeline's output changes. Everything that names variants (the origin, the
/// generator's cleanup) reads it from here.
///
/// - v1: the first pipeline (ICC profiles copied into every variant).
/// - v2: colour managed to sRGB, outputs carry no profile; AVIF output.
pub const TRANSFORM_VERSION: u32 = 2;

/// `_variants/v<version>/<master key>/`: where the variants of one master made by one
/// transform version live.
pub fn variant_prefix(master_key: &str, version: u32) -> String {
    format!("{VARIANTS_PREFIX}v{version}/{master_key}/")
}

/// The variant prefixes of a master under every transform version so far (v1 through
/// the current one): after a master is replaced, variants of older versions are stale
/// too.
pub fn variant_prefixes_of_every_version(master_key: &str) -> Vec<String> {
    (1..=TRANSFORM_VERSION)
        .map(|v| variant_prefix(master_key, v))
        .collect()
}

/// Bytes kept verbatim in a URI path: RFC 3986 unreserved characters and `/`. Everything
/// else (including `,` and `=` of variant keys) is percent-encoded, which S3 and
/// [`MasterKey::from_uri`] decode back to the key.
const URI_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The URI path (`/…`, percent-encoded) that addresses an object key.
pub fn key_to_uri(key: &str) -> String {
    format!("/{}", utf8_percent_encode(key, URI_KEEP))
}

/// Longest accepted key in bytes, measured decoded and without the leading `/`.
pub const MAX_KEY_BYTES: usize = 1024;

/// A validated master object key: percent-decoded UTF-8, no leading `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MasterKey(String);

impl MasterKey {
    /// Validate a percent-encoded URI path (as CloudFront gives it, with leading `/`).
    ///
    /// Checks, in order: leading `/`, percent-decoding to UTF-8, the safety rules (empty
    /// key, `//`, trailing `/`, `.`/`..` segments, control characters, backslash, length)
    /// → 400 `invalid_key`; then the reserved `_variants/` prefix → 404 `not_found`; then
    /// the master extension → 400 `invalid_key`.
    pub fn from_uri(uri: &str) -> Result<MasterKey> {
        let key = safe_key(uri)?;
        if key.starts_with(VARIANTS_PREFIX) {
            // Variants are reachable only through a query on their master.
            return Err(Error::not_found("not found"));
        }
        if master_format(&key).is_none() {
            return Err(Error::invalid_key(
                "the path must name an image ending in .png, .jpg, .jpeg or .webp (lowercase)",
            ));
        }
        Ok(MasterKey(key))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The master's format from its extension.
    pub fn format(&self) -> Format {
        master_format(&self.0).expect("a MasterKey is only built with a master extension")
    }

    /// The key of this master's variant with a canonical query, made by the current
    /// transform version: `_variants/v1/<key>/<query with & → ,>.<ext>`.
    pub fn variant_key(&self, canonical_query: &str, format: Format) -> String {
        format!(
            "{}{}.{}",
            variant_prefix(&self.0, TRANSFORM_VERSION),
            canonical_query.replace('&', ","),
            format.extension()
        )
    }
}

/// A variant key of the current transform version taken apart again: the master it was
/// made from and the query its name holds (`,` back to `&`). Only the split; whether the
/// query is canonical and the extension its output's is the service's to say
/// (`service::variant_request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantName {
    pub master: MasterKey,
    pub query: String,
    pub extension: String,
}

impl VariantName {
    /// Split the URI path of a variant (`/_variants/v<N>/<master key>/<query>.<ext>`,
    /// percent-encoded as CloudFront sends it). A path that is not a variant of the current
    /// version is a 404 `not_found` (nothing else could be there); a path that is no valid key
    /// at all is a 400 `invalid_key`, as for a master.
    pub fn from_uri(uri: &str) -> Result<VariantName> {
        let key = safe_key(uri)?;
        let not_a_variant = || Error::not_found("no such variant");
        let current = format!("{VARIANTS_PREFIX}v{TRANSFORM_VERSION}/");
        let rest = key.strip_prefix(&current).ok_or_else(not_a_variant)?;
        let (master, file) = rest.rsplit_once('/').ok_or_else(not_a_variant)?;
        let (query, extension) = file.rsplit_once('.').ok_or_else(not_a_variant)?;
        if master.starts_with(VARIANTS_PREFIX) || master_format(master).is_none() {
            return Err(not_a_variant());
        }
        Ok(VariantName {
            master: MasterKey(master.to_string()),
            query: query.replace(',', "&"),
            extension: extension.to_string(),
        })
    }

    /// The object key this name was split from.
    pub fn key(&self) -> String {
        format!(
            "{}{}.{}",
            variant_prefix(self.master.as_str(), TRANSFORM_VERSION),
            self.query.replace('&', ","),
            self.extension
        )
    }
}

impl MasterKey {
    /// `_variants/<version>/<master key>/error.json`: a remembered 415/422 for this
    /// master (no variant key can be this: canonical queries always hold `=`).
    pub fn failure_marker_key(&self) -> String {
        format!(
            "{}{FAILURE_MARKER_NAME}",
            variant_prefix(&self.0, TRANSFORM_VERSION)
        )
    }
}

/// Name of the failure marker beside a master's variants.
pub const FAILURE_MARKER_NAME: &str = "error.json";

impl std::fmt::Display for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn master_format(key: &str) -> Option<Format> {
    let file = key.rsplit('/').next()?;
    let (_, ext) = file.rsplit_once('.')?;
    Format::from_master_extension(ext)
}

/// The object key a URI path names, percent-decoded and checked against the safety rules
/// (leading `/`, UTF-8, no empty/`.`/`..` segments, control characters, backslash, length).
fn safe_key(uri: &str) -> Result<String> {
    let Some(encoded) = uri.strip_prefix('/') else {
        return Err(Error::invalid_key("the path must start with '/'"));
    };
    let key = decode_path(encoded)?;
    check_shape(&key)?;
    Ok(key)
}

/// Percent-decode a path. Malformed escapes (`%zz`, a lone `%`) are rejected rather than
/// kept literally, so one key has one spelling.
fn decode_path(encoded: &str) -> Result<String> {
    if has_malformed_escape(encoded) {
        return Err(Error::invalid_key(
            "the path has a malformed percent-escape; '%' must be followed by two hex digits",
        ));
    }
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(encoded).collect();
    String::from_utf8(bytes)
        .map_err(|_| Error::invalid_key("the path does not decode to valid UTF-8"))
}

/// True when some `%` is not followed by two hex digits.
pub(crate) fn has_malformed_escape(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().any(|(i, &c)| {
        c == b'%'
            && !(i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit())
    })
}

fn check_shape(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_key("the path names no image"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::invalid_key(format!(
            "the key is {} bytes long; at most {MAX_KEY_BYTES} bytes are allowed",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(Error::invalid_key(
            "the path contains a control character; they are not allowed in keys",
        ));
    }
    if key.contains('\\') {
        return Err(Error::invalid_key(
            "the path contains a backslash; use '/' to separate segments",
        ));
    }
    if key.ends_with('/') {
        return Err(Error::invalid_key(
            "the path ends with '/'; it must name an image, not a folder",
        ));
    }
    for segment in key.split('/') {
        match segment {
            "" => {
                return Err(Error::invalid_key(
                    "the path contains an empty segment ('//'); keys have none",
                ))
            }
            "." | ".." => {
                return Err(Error::invalid_key(
                    "the path contains a '.' or '..' segment; relative segments are not allowed",
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn key_uris_encode_everything_but_unreserved_and_slashes() {
        assert_eq!(
            key_to_uri("outputs/a b/ü+,=.png"),
            "/outputs/a%20b/%C3%BC%2B%2C%3D.png"
        );
        assert_eq!(key_to_uri("a-b_c~d.png"), "/a-b_c~d.png");
    }

    #[test]
    fn infra_reads_the_transform_version_from_this_line() {
        // infra/cloudfront-function/build.mjs bakes the version into the regional
        // viewer-request function by reading this very declaration: keep its shape.
        let source = include_str!("key.rs");
        let line = format!("pub const TRANSFORM_VERSION: u32 = {TRANSFORM_VERSION};");
        assert_eq!(source.matches(&line).count(), 1, "{line}");
    }

    #[test]
    fn variant_names_split_back_into_master_and_query() {
        let master = MasterKey::from_uri("/outputs/my%20image%20%C3%BC.png").unwrap();
        let key = master.variant_key("w=512&fmt=webp", Format::Webp);
        let name = VariantName::from_uri(&key_to_uri(&key)).unwrap();
        assert_eq!(name.master, master);
        assert_eq!(name.query, "w=512&fmt=webp");
        assert_eq!(name.extension, "webp");
        assert_eq!(name.key(), key);
        // CloudFront may send `,` and `=` unescaped: the same key.
        let raw = format!("/{key}").replace(' ', "%20").replace('ü', "%C3%BC");
        assert_eq!(VariantName::from_uri(&raw).unwrap(), name);
    }

    #[test]
    fn only_variants_of_the_current_version_are_variant_names() {
        let current = format!("{VARIANTS_PREFIX}v{TRANSFORM_VERSION}/");
        let older = format!("{VARIANTS_PREFIX}v{}/", TRANSFORM_VERSION + 1);
        for (uri, code) in [
            (format!("/{older}o/a.png/w=5.png"), "not_found"),
            (format!("/{current}o/a.png"), "not_found"),
            (format!("/{current}a.png/w=5"), "not_found"),
            (format!("/{current}o/a.gif/w=5.png"), "not_found"),
            (format!("/{current}{current}o/a.png/w=5.png"), "not_found"),
            ("/outputs/a.png".to_string(), "not_found"),
            (format!("/{current}o/../a.png/w=5.png"), "invalid_key"),
            (format!("{current}o/a.png/w=5.png"), "invalid_key"),
        ] {
            let e = VariantName::from_uri(&uri).expect_err(&uri);
            assert_eq!(e.kind.code(), code, "{uri}");
        }
    }

    #[test]
    fn variant_prefixes_cover_every_version_up_to_the_current() {
        assert_eq!(variant_prefix("o/a.png", 1), "_variants/v1/o/a.png/");
        let all = variant_prefixes_of_every_version("o/a.png");
        assert_eq!(all.len() as u32, TRANSFORM_VERSION);
        assert_eq!(all.first().unwrap(), "_variants/v1/o/a.png/");
        assert_eq!(
            all.last().unwrap(),
            &format!("_variants/v{TRANSFORM_VERSION}/o/a.png/")
        );
        let master = MasterKey::from_uri("/o/a.png").unwrap();
        assert!(master
            .variant_key("w=5", Format::Webp)
            .starts_with(&variant_prefix("o/a.png", TRANSFORM_VERSION)));
    }
    use proptest::prelude::*;

    fn key(uri: &str) -> String {
        MasterKey::from_uri(uri)
            .unwrap_or_else(|e| panic!("{uri}: {e}"))
            .as_str()
            .to_string()
    }

    fn err(uri: &str) -> Error {
        match MasterKey::from_uri(uri) {
            Ok(k) => panic!("{uri} was accepted as {k:?}"),
            Err(e) => e,
        }
    }

    fn assert_invalid(uri: &str, needle: &str) {
        let e = err(uri);
        assert_eq!(e.kind, ErrorKind::InvalidKey, "{uri}: {e}");
        assert_eq!(e.status(), 400, "{uri}");
        assert_eq!(e.param, None, "{uri}");
        assert!(
            e.message.contains(needle),
            "{uri}: message {:?} lacks {needle:?}",
            e.message
        );
    }

    #[test]
    fn plain_keys_are_the_path_without_the_slash() {
        assert_eq!(
            key("/outputs/2025-02-01/image_001.png"),
            "outputs/2025-02-01/image_001.png"
        );
        assert_eq!(key("/a.jpg"), "a.jpg");
        assert_eq!(key("/a.b.c.jpeg"), "a.b.c.jpeg");
        assert_eq!(key("/x/y.webp"), "x/y.webp");
    }

    #[test]
    fn percent_escapes_are_decoded_and_plus_is_literal() {
        assert_eq!(key("/my%20photo.png"), "my photo.png");
        assert_eq!(key("/a+b.png"), "a+b.png");
        assert_eq!(key("/a%2Bb.png"), "a+b.png");
        assert_eq!(key("/caf%C3%A9.png"), "café.png");
        assert_eq!(key("/%E6%97%A5%E6%9C%AC.jpg"), "日本.jpg");
        assert_eq!(key("/a%2fb.png"), "a/b.png");
        // Raw UTF-8 (not encoded) is taken as is.
        assert_eq!(key("/café.png"), "café.png");
    }

    #[test]
    fn formats_come_from_the_extension() {
        assert_eq!(MasterKey::from_uri("/a.png").unwrap().format(), Format::Png);
        assert_eq!(
            MasterKey::from_uri("/a.jpg").unwrap().format(),
            Format::Jpeg
        );
        assert_eq!(
            MasterKey::from_uri("/a.jpeg").unwrap().format(),
            Format::Jpeg
        );
        assert_eq!(
            MasterKey::from_uri("/a.webp").unwrap().format(),
            Format::Webp
        );
        assert_eq!(MasterKey::from_uri("/a.jpg").unwrap().to_string(), "a.jpg");
    }

    #[test]
    fn path_must_start_with_a_slash() {
        assert_invalid("a.png", "start with '/'");
        assert_invalid("", "start with '/'");
    }

    #[test]
    fn invalid_utf8_and_malformed_escapes_are_rejected() {
        assert_invalid("/%FF.png", "UTF-8");
        assert_invalid("/%C3.png", "UTF-8");
        assert_invalid("/a%zz.png", "percent-escape");
        assert_invalid("/a%2.png", "percent-escape");
        assert_invalid("/a.png%", "percent-escape");
        assert_invalid("/a.png%4", "percent-escape");
    }

    #[test]
    fn traversal_and_odd_segments_are_rejected() {
        assert_invalid("/outputs/../secret.png", "'..'");
        assert_invalid("/../secret.png", "'..'");
        assert_invalid("/./a.png", "'.'");
        assert_invalid("/a/./b.png", "'.'");
        assert_invalid("/a/%2E%2E/b.png", "'..'");
        assert_invalid("/a/%2e/b.png", "'.'");
        assert_invalid("/a/%2e%2E/b.png", "'..'");
        assert_invalid("/a//b.png", "'//'");
        assert_invalid("//a.png", "'//'");
        assert_invalid("/a/%2Fb.png", "'//'");
        assert_invalid("/", "names no image");
        assert_invalid("/outputs/", "ends with '/'");
        assert_invalid("/a.png/", "ends with '/'");
        // Dots inside a name are fine.
        assert_eq!(key("/a/..b.png"), "a/..b.png");
        assert_eq!(key("/a/.hidden.png"), "a/.hidden.png");
    }

    #[test]
    fn control_characters_and_backslash_are_rejected() {
        assert_invalid("/a%00.png", "control character");
        assert_invalid("/a%0A.png", "control character");
        assert_invalid("/a%1F.png", "control character");
        assert_invalid("/a%7F.png", "control character");
        assert_invalid("/a%C2%85.png", "control character");
        assert_invalid("/a\tb.png", "control character");
        assert_invalid("/a%5Cb.png", "backslash");
        assert_invalid("/a\\..\\b.png", "backslash");
    }

    #[test]
    fn length_is_measured_on_the_decoded_key() {
        let max = format!("/{}.png", "a".repeat(MAX_KEY_BYTES - 4));
        assert_eq!(key(&max).len(), MAX_KEY_BYTES);
        let over = format!("/{}.png", "a".repeat(MAX_KEY_BYTES - 3));
        assert_invalid(&over, "1025 bytes");
        // 3 encoded bytes per decoded byte: the encoded form is long, the key is not.
        let encoded = format!("/{}.png", "%61".repeat(MAX_KEY_BYTES - 4));
        assert_eq!(key(&encoded).len(), MAX_KEY_BYTES);
        // Multi-byte characters count in bytes, not characters: 511 × 2 + 4 = 1026.
        let wide = format!("/{}.png", "é".repeat(511));
        assert_invalid(&wide, "1026 bytes");
    }

    #[test]
    fn extension_must_be_a_lowercase_master_format() {
        for uri in [
            "/a.PNG",
            "/a.Jpg",
            "/a.gif",
            "/a.avif",
            "/a",
            "/a.png.txt",
            "/dir.png/a",
            "/a.",
            "/png",
        ] {
            assert_invalid(uri, ".png, .jpg, .jpeg or .webp");
        }
    }

    #[test]
    fn variants_are_not_addressable() {
        for uri in [
            "/_variants/v1/outputs/2025-02-01/image_001.png/w=512,fmt=webp.webp",
            "/_variants/v1/a.png/w=5.png",
            "/%5Fvariants/v1/a.png/w=5.png",
            "/%5fvariants/a.png",
            "/_variants%2Fa.png",
            "/_variants/a.avif",
        ] {
            let e = err(uri);
            assert_eq!(e.kind, ErrorKind::NotFound, "{uri}");
            assert_eq!(e.status(), 404, "{uri}");
            assert_eq!(e.message, "not found", "{uri}");
        }
        // Only the exact prefix is reserved (S3 keys are case-sensitive).
        assert_eq!(key("/_VARIANTS/a.png"), "_VARIANTS/a.png");
        assert_eq!(key("/x/_variants/a.png"), "x/_variants/a.png");
        assert_eq!(key("/_variantsx/a.png"), "_variantsx/a.png");
        // Unsafe shapes are 400 even under the prefix.
        assert_invalid("/_variants/../a.png", "'..'");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_paths_never_panic(uri in ".*") {
            let _ = MasterKey::from_uri(&uri);
        }

        #[test]
        fn accepted_keys_obey_every_rule(
            uri in r"/([a-z0-9._~+%\\/-]|%2[eEfF]|%5[cCfF]|%00|%C3%A9|%FF){0,40}\.(png|jpg|jpeg|webp|PNG)"
        ) {
            if let Ok(k) = MasterKey::from_uri(&uri) {
                let s = k.as_str();
                prop_assert!(!s.is_empty() && s.len() <= MAX_KEY_BYTES);
                prop_assert!(!s.starts_with(VARIANTS_PREFIX));
                prop_assert!(!s.contains('\\') && !s.chars().any(char::is_control));
                prop_assert!(s.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != ".."));
                let _ = k.format();
            }
        }
    }
}

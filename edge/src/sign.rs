//! Signed URLs (DESIGN.md §10). Pure: no I/O.
//!
//! `sig` is the last query parameter: base64url without padding of
//! HMAC-SHA256(secret, message), where the message is the request path exactly as sent
//! (percent-encoding kept) + `?` + the raw query before `&sig=`. Signing the bytes as sent,
//! rather than a decoded or canonical form, leaves nothing to interpret before the check:
//! every spelling is its own message, and any change to what a viewer sends breaks it.
//!
//! Several secrets may be configured at once (rotation): any one of them may match, and
//! the first is the one that signs. The comparison is constant-time (`hmac`'s
//! `verify_slice`), so response timing tells nothing about how much of a guess was right.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

/// Fewest hex digits in a secret: 128 bits.
pub const MIN_SECRET_HEX_DIGITS: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// The configured secrets, in file order; never empty.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeys {
    secrets: Vec<Vec<u8>>,
}

/// Secrets must not reach logs, not even through `{:?}`.
impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKeys({} secret(s))", self.secrets.len())
    }
}

/// A keys file that cannot be used. The message names the line (1-based) but never shows
/// its text: it may be a secret with a typo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct KeysFileError {
    /// The 1-based line that is wrong; `None` when the file as a whole is (no key in it).
    pub line: Option<usize>,
    pub message: String,
}

impl SigningKeys {
    /// Parse a keys file: one hex secret (≥ 32 hex digits, even count, either case) per line;
    /// blank lines and lines starting with `#` are skipped; surrounding spaces are ignored.
    pub fn parse(text: &str) -> Result<SigningKeys, KeysFileError> {
        let mut secrets = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let usable = line.len() >= MIN_SECRET_HEX_DIGITS
                && line.len() % 2 == 0
                && line.bytes().all(|b| b.is_ascii_hexdigit());
            if !usable {
                return Err(KeysFileError {
                    line: Some(index + 1),
                    message: format!(
                        "signing keys, line {}: not a secret; each line is a hex secret of at \
                         least {MIN_SECRET_HEX_DIGITS} hex digits (an even count, nothing else \
                         on the line), a '#' comment or blank",
                        index + 1
                    ),
                });
            }
            secrets.push(hex::decode(line).expect("checked: even count of hex digits"));
        }
        if secrets.is_empty() {
            return Err(KeysFileError {
                line: None,
                message: "signing keys: the file holds no secret; add one hex secret per line \
                          (e.g. `openssl rand -hex 32`), or configure no keys to turn signing off"
                    .to_string(),
            });
        }
        Ok(SigningKeys { secrets })
    }

    /// Read and parse a keys file; errors name the file (never a secret).
    pub fn read(path: &std::path::Path) -> Result<SigningKeys, KeysFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| KeysFileError {
            line: None,
            message: format!("signing keys: cannot read {}: {e}", path.display()),
        })?;
        SigningKeys::parse(&text).map_err(|e| KeysFileError {
            message: format!("{}: {}", path.display(), e.message),
            ..e
        })
    }

    /// How many secrets are configured.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Always false: a `SigningKeys` holds at least one secret.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The `sig` value for `path` (as it will be sent) and the raw query before `&sig=`,
    /// made with the first secret.
    pub fn sign(&self, path: &str, raw_query: &str) -> String {
        URL_SAFE_NO_PAD.encode(
            mac(&self.secrets[0], path, raw_query)
                .finalize()
                .into_bytes(),
        )
    }

    /// `query` with its `sig` appended (`w=512&sig=…`); an empty query (a master) stays
    /// empty: it needs no signature.
    pub fn signed_query(&self, path: &str, query: &str) -> String {
        if query.is_empty() {
            return String::new();
        }
        format!("{query}&sig={}", self.sign(path, query))
    }

    /// A whole URL (`https://host/path?query`, or `/path?query`) with its `sig` appended
    /// (an old trailing `sig` is replaced; a fragment is dropped). The path and query are
    /// signed exactly as written: a URL is sent as it is printed.
    pub fn sign_url(&self, url: &str) -> String {
        let url = url.split_once('#').map_or(url, |(u, _)| u);
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let path_start = match base.find("://") {
            Some(scheme_end) => base[scheme_end + 3..]
                .find('/')
                .map_or(base.len(), |i| scheme_end + 3 + i),
            None => 0,
        };
        let path = match &base[path_start..] {
            "" => "/",
            path => path,
        };
        let origin = &base[..path_start];
        let query = split_sig(query).0;
        let signed = self.signed_query(path, query);
        if signed.is_empty() {
            format!("{origin}{path}")
        } else {
            format!("{origin}{path}?{signed}")
        }
    }

    /// The path and raw query of a signed URL → the query without `sig`, or a 403.
    ///
    /// Every configured secret is tried, and each comparison is constant-time.
    pub fn verify<'q>(&self, path: &str, raw_query: &'q str) -> Result<&'q str> {
        let (query, sig) = split_sig(raw_query);
        let Some(sig) = sig else {
            return Err(Error::invalid_signature(
                "this URL must be signed: add sig, the base64url HMAC-SHA256 of path?query, \
                 as the last parameter",
            ));
        };
        // Strict base64url: no padding, no other alphabet, canonical trailing bits.
        let given = URL_SAFE_NO_PAD.decode(sig).unwrap_or_default();
        let matches = self
            .secrets
            .iter()
            .any(|secret| mac(secret, path, query).verify_slice(&given).is_ok());
        if matches {
            Ok(query)
        } else {
            Err(Error::invalid_signature(
                "the signature does not match this path and query; sig must be the last \
                 parameter, base64url (no padding) of HMAC-SHA256 over path?query as sent",
            ))
        }
    }
}

/// The raw query split into (the part before `&sig=`, the `sig` value) when its last
/// parameter is named `sig`; else (the whole query, `None`). A `sig` that is not last is
/// left in place, where the URL API reports it as an unknown parameter.
pub fn split_sig(raw_query: &str) -> (&str, Option<&str>) {
    let (before, last) = match raw_query.rfind('&') {
        Some(i) => (&raw_query[..i], &raw_query[i + 1..]),
        None => ("", raw_query),
    };
    let (name, value) = last.split_once('=').unwrap_or((last, ""));
    if name == "sig" {
        (before, Some(value))
    } else {
        (raw_query, None)
    }
}

fn mac(secret: &[u8], path: &str, raw_query: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(path.as_bytes());
    mac.update(b"?");
    mac.update(raw_query.as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    #[test]
    fn sign_url_signs_path_and_query_as_written() {
        let keys = super::SigningKeys::parse(&"ab".repeat(16)).unwrap();
        let sig = keys.sign("/o/a%20b.png", "w=5&fmt=webp");
        for (url, want) in [
            (
                "https://d1.cloudfront.net/o/a%20b.png?w=5&fmt=webp",
                format!("https://d1.cloudfront.net/o/a%20b.png?w=5&fmt=webp&sig={sig}"),
            ),
            (
                "/o/a%20b.png?w=5&fmt=webp&sig=old#frag",
                format!("/o/a%20b.png?w=5&fmt=webp&sig={sig}"),
            ),
            (
                "http://127.0.0.1:8080/o/a%20b.png?w=5&fmt=webp",
                format!("http://127.0.0.1:8080/o/a%20b.png?w=5&fmt=webp&sig={sig}"),
            ),
            (
                "https://d1.cloudfront.net/o/a.png",
                "https://d1.cloudfront.net/o/a.png".to_string(),
            ),
        ] {
            assert_eq!(keys.sign_url(url), want, "{url}");
        }
        // What it prints verifies.
        let signed = keys.sign_url("/x.png?w=1");
        let (path, query) = signed.split_once('?').unwrap();
        assert_eq!(keys.verify(path, query).unwrap(), "w=1");
    }

    use super::*;
    use proptest::prelude::*;

    fn fixture() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/signature-cases.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture file"))
            .expect("fixture is JSON")
    }

    fn keys_of(fixture: &serde_json::Value, names: &[&str]) -> SigningKeys {
        let text: Vec<&str> = names
            .iter()
            .map(|n| fixture["keys"][n].as_str().expect("key name"))
            .collect();
        SigningKeys::parse(&text.join("\n")).expect("fixture keys parse")
    }

    /// Python's hmac made these (tests/fixtures/make_signature_cases.py).
    #[test]
    fn sign_matches_the_independent_vectors() {
        let f = fixture();
        let vectors = f["vectors"].as_array().expect("vectors");
        assert!(vectors.len() >= 4);
        for v in vectors {
            let keys = keys_of(&f, &[v["key"].as_str().unwrap()]);
            let (path, query) = (v["path"].as_str().unwrap(), v["query"].as_str().unwrap());
            let sig = v["sig"].as_str().unwrap();
            assert_eq!(keys.sign(path, query), sig, "{path}?{query}");
            let full = if query.is_empty() {
                format!("sig={sig}")
            } else {
                format!("{query}&sig={sig}")
            };
            assert_eq!(keys.verify(path, &full), Ok(query), "{path}?{full}");
        }
    }

    #[test]
    fn keys_files_of_the_fixture() {
        let f = fixture();
        for case in f["keyfiles"].as_array().expect("keyfiles") {
            let text = case["text"].as_str().unwrap();
            match case.get("keys") {
                Some(want) => {
                    let keys = SigningKeys::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
                    let want: Vec<Vec<u8>> = want
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|k| hex::decode(k.as_str().unwrap()).unwrap())
                        .collect();
                    assert_eq!(keys.secrets, want, "{text:?}");
                }
                None => {
                    let e = SigningKeys::parse(text).expect_err(text);
                    let line = case["error_line"].as_u64().map(|l| l as usize);
                    assert_eq!(e.line, line, "{text:?}: {e}");
                    if let Some(line) = line {
                        assert!(e.message.contains(&format!("line {line}")), "{e}");
                    }
                }
            }
        }
    }

    #[test]
    fn errors_never_show_a_secret() {
        let secret = "ab".repeat(15) + "x"; // a secret with a typo
        let e = SigningKeys::parse(&secret).unwrap_err();
        assert!(!e.message.contains(&secret[..10]), "{e}");
        let keys = SigningKeys::parse(&"cd".repeat(16)).unwrap();
        assert!(!format!("{keys:?}").contains("cdcd"));
    }

    #[test]
    fn split_sig_takes_only_a_last_sig() {
        assert_eq!(split_sig("w=5&sig=abc"), ("w=5", Some("abc")));
        assert_eq!(split_sig("sig=abc"), ("", Some("abc")));
        assert_eq!(split_sig("sig"), ("", Some("")));
        assert_eq!(split_sig("w=5&sig="), ("w=5", Some("")));
        assert_eq!(split_sig("sig=abc&w=5"), ("sig=abc&w=5", None));
        assert_eq!(split_sig("w=5&SIG=abc"), ("w=5&SIG=abc", None));
        assert_eq!(split_sig("w=5&sigma=1"), ("w=5&sigma=1", None));
        assert_eq!(split_sig(""), ("", None));
        assert_eq!(split_sig("w=5&sig=a&sig=b"), ("w=5&sig=a", Some("b")));
    }

    #[test]
    fn verify_reports_403_on_sig() {
        let keys = SigningKeys::parse(&"01".repeat(32)).unwrap();
        for query in ["w=5", "w=5&sig=", "w=5&sig=AAAA", "w=5&sig=%%%"] {
            let e = keys.verify("/a.png", query).unwrap_err();
            assert_eq!(e.status(), 403, "{query}");
            assert_eq!(e.param.as_deref(), Some("sig"));
            assert_eq!(e.cache_control(), "public, max-age=60");
            assert!(e.to_json().contains(r#""error":"invalid_signature""#));
        }
    }

    // Paths and queries in the alphabet of real URLs (percent-encoding included).
    const URL_CHARS: &str = "[a-zA-Z0-9/%._~=&+-]{0,40}";

    proptest! {
        #[test]
        fn sign_then_verify_round_trips(path in "/[a-zA-Z0-9/%._~-]{0,40}", query in URL_CHARS, n in 1usize..4) {
            let text: Vec<String> = (0..n).map(|i| format!("{i:02x}").repeat(16)).collect();
            let keys = SigningKeys::parse(&text.join("\n")).unwrap();
            let sig = keys.sign(&path, &query);
            let full = if query.is_empty() { format!("sig={sig}") } else { format!("{query}&sig={sig}") };
            prop_assert_eq!(keys.verify(&path, &full), Ok(query.as_str()));
            // Signed by the last key of the list: rotation accepts it too.
            let last = SigningKeys::parse(&text[n - 1]).unwrap();
            let full = format!("{query}&sig={}", last.sign(&path, &query));
            prop_assert!(keys.verify(&path, &full).is_ok());
        }

        #[test]
        fn any_single_byte_change_fails(path in "/[a-zA-Z0-9/%._~-]{1,40}", query in URL_CHARS, at in any::<prop::sample::Index>(), to in 0x21u8..0x7f) {
            let keys = SigningKeys::parse(&"5a".repeat(32)).unwrap();
            let full = format!("{query}&sig={}", keys.sign(&path, &query));
            // The whole request as sent (path, '?', query and sig), one byte replaced.
            let mut url = format!("{path}?{full}").into_bytes();
            let i = at.index(url.len());
            prop_assume!(url[i] != to && url[i] != b'?' && to != b'?');
            url[i] = to;
            let url = String::from_utf8(url).unwrap();
            let (p, q) = url.split_once('?').unwrap();
            prop_assert!(keys.verify(p, q).is_err(), "{} still verifies", url);
        }
    }
}

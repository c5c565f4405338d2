//! The playground: a page to try every URL parameter on a master of the bucket, and the
//! small JSON endpoint behind it that turns a query into its canonical and (with signing
//! keys) signed URL. The page is static HTML/JS ([`PLAYGROUND_HTML`]); only the master
//! list is filled in by the server. Pure: the server module does the I/O.
//!
//! The resolve endpoint signs whatever query it is given, so it is a signing oracle: it
//! answers only callers on this machine ([`check_local_caller`]).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use percent_encoding::percent_decode_str;
use serde::Serialize;

use super::pages::{html_escape, link};
use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::key::key_to_uri;

/// The page: controls, the variant, its URLs, bytes, format and `Server-Timing`.
pub const PLAYGROUND_HTML: &str = include_str!("playground.html");
/// Where the server puts the `<option>`s of the masters in [`PLAYGROUND_HTML`].
const MASTERS_MARKER: &str = "<!--masters-->";

/// The playground page with `masters` (keys, as from [`super::pages::masters`]) to pick
/// from; each option's value is the master's URI path.
pub fn playground_html(masters: &[String]) -> String {
    let mut options = String::new();
    for key in masters {
        let _ = write!(
            options,
            "<option value=\"{}\">{}</option>",
            html_escape(&key_to_uri(key)),
            html_escape(key)
        );
    }
    PLAYGROUND_HTML.replacen(MASTERS_MARKER, &options, 1)
}

/// What `GET /_imgedge/resolve` answers for a valid request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// The master's path as sent (percent-encoded).
    pub path: String,
    /// Path plus canonical query (DESIGN.md §1).
    pub canonical: String,
    /// The same with the path decoded: the edge cache key, as invalidations name it.
    pub cache_key: String,
    /// The URL to request: the canonical one, signed when keys are configured.
    pub url: String,
    /// `url` carries a `sig`.
    pub signed: bool,
    /// The object the variant is stored as; `None` when the master is served unchanged.
    pub variant_key: Option<String>,
    /// `fmt=auto`: `canonical` holds the format chosen for the given `Accept`, and `url`
    /// keeps `fmt=auto` so that each viewer gets its own.
    pub varies_on_accept: bool,
}

/// The parameters of the resolve endpoint, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveRequest {
    /// The master's path, as it will be sent (`/outputs/a.png`).
    pub path: String,
    /// The variant query, raw (`w=300&fmt=webp`); empty for the master.
    pub query: String,
    /// The `Accept` header `fmt=auto` is resolved against (the image request's).
    pub accept: Option<String>,
}

impl ResolveRequest {
    /// `path=/key&query=w%3D300&accept=…` (form-encoded, as `URLSearchParams` writes
    /// it). Strict like the URL API: `path` required, no unknown or repeated names.
    pub fn parse(raw_query: &str) -> Result<ResolveRequest> {
        let (mut path, mut query, mut accept) = (None, None, None);
        for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match name {
                "path" => &mut path,
                "query" => &mut query,
                "accept" => &mut accept,
                _ => {
                    return Err(Error::invalid_parameter(
                        name,
                        format!("unknown parameter '{name}'; use path, query and accept"),
                    ))
                }
            };
            if slot.is_some() {
                return Err(Error::invalid_parameter(
                    name,
                    format!("{name} is given twice; give it once"),
                ));
            }
            *slot = Some(form_decode(name, value)?);
        }
        let path = path.filter(|p| p.starts_with('/')).ok_or_else(|| {
            Error::invalid_parameter(
                "path",
                "path is required: the master's path as sent, starting with '/'",
            )
        })?;
        Ok(ResolveRequest {
            path,
            query: query.unwrap_or_default(),
            accept,
        })
    }
}

/// One form-encoded value: `+` is a space, then percent-decoding; it must be UTF-8.
fn form_decode(name: &str, value: &str) -> Result<String> {
    percent_decode_str(&value.replace('+', " "))
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| Error::invalid_parameter(name, format!("{name} must be UTF-8")))
}

/// The canonical and requestable URL of `request`, through the same checks the viewer
/// step runs (key, preset, query, policy), signature aside: the query comes unsigned and
/// the answer is signed with the first key, as [`link`] signs the gallery's links.
pub fn resolve(guard: &Guard, request: &ResolveRequest) -> Result<Resolution> {
    let unsigned = Guard {
        keys: None,
        policy: guard.policy.clone(),
    };
    let path = request.path.as_str();
    let accept = request.accept.as_deref();
    let resolved = unsigned.resolve(path, &request.query, accept)?;
    let canonical_query = resolved.canonical_query();
    // The canonical query is the URL to send when it passes the viewer step by itself. It
    // does not with fmt=auto (the format is the viewer's to choose) nor when a policy
    // lists the spelling it was given (`w=64&dpr=2` allowed, its canonical `w=128` not);
    // then the query as given is sent.
    let canonical_passes = !resolved.varies_on_accept
        && unsigned
            .resolve(path, &canonical_query, accept)
            .is_ok_and(|again| again.canonical_query() == canonical_query);
    let request_query = if canonical_passes {
        canonical_query.as_str()
    } else {
        request.query.as_str()
    };
    let url = link(guard.keys.as_ref(), path, request_query);
    Ok(Resolution {
        path: path.to_string(),
        canonical: link(None, path, &canonical_query),
        cache_key: link(
            None,
            &format!("/{}", resolved.master.as_str()),
            &canonical_query,
        ),
        signed: guard.keys.is_some() && !request_query.is_empty(),
        url,
        variant_key: resolved
            .spec
            .as_ref()
            .map(|spec| spec.variant_key(&resolved.master)),
        varies_on_accept: resolved.varies_on_accept,
    })
}

/// Why a caller may not use the resolve endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The peer is not a loopback address (or unknown: a router served without
    /// connection info).
    RemotePeer,
    /// `Host` names something other than this machine: a page of another site whose name
    /// was rebound to 127.0.0.1 could otherwise read the answers.
    ForeignHost,
    /// A proxy on this machine relays someone else's request.
    Forwarded,
}

impl Refusal {
    /// The 403 answer, in the shape of every error body. Its code is the emulator's own,
    /// like `method_not_allowed`: no request-path error kind fits.
    pub fn to_json(self) -> String {
        let why = match self {
            Refusal::RemotePeer => "this connection does not come from this machine",
            Refusal::ForeignHost => "the Host header does not name this machine",
            Refusal::Forwarded => "the request was forwarded by a proxy",
        };
        let message = format!(
            "the resolve endpoint signs URLs, so it answers loopback requests only \
             (open the playground at http://127.0.0.1:PORT/ or http://localhost:PORT/); {why}"
        );
        serde_json::to_string(&RefusalBody {
            status: 403,
            error: "forbidden",
            message: &message,
        })
        .expect("a refusal serialises")
    }
}

/// The fields of every error body, in their order.
#[derive(Serialize)]
struct RefusalBody<'a> {
    status: u16,
    error: &'a str,
    message: &'a str,
}

/// The resolve endpoint answers only requests made on this machine: a loopback peer, a
/// `Host` of localhost or a loopback address, no forwarding headers.
pub fn check_local_caller(
    peer: Option<SocketAddr>,
    host: Option<&str>,
    forwarded: bool,
) -> std::result::Result<(), Refusal> {
    if !peer.is_some_and(|p| p.ip().is_loopback()) {
        return Err(Refusal::RemotePeer);
    }
    if !host.is_some_and(is_loopback_host) {
        return Err(Refusal::ForeignHost);
    }
    if forwarded {
        return Err(Refusal::Forwarded);
    }
    Ok(())
}

/// `localhost`, `127.x.y.z` or `[::1]`, each with an optional port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || port.starts_with(':') => {
                return v6.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback())
            }
            _ => return false,
        },
        None => host.split_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<Ipv4Addr>()
            .is_ok_and(|ip| IpAddr::V4(ip).is_loopback())
}

/// The endpoint's answer (status, JSON body) for a caller already checked.
pub fn resolve_answer(guard: &Guard, raw_query: &str) -> (u16, String) {
    let result = ResolveRequest::parse(raw_query).and_then(|request| resolve(guard, &request));
    match result {
        Ok(resolution) => (
            200,
            serde_json::to_string(&resolution).expect("a resolution serialises"),
        ),
        Err(e) => (e.status(), e.to_json()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::sign::SigningKeys;
    use serde_json::Value;

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const IMAGE_ACCEPT: &str = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";

    fn request(path: &str, query: &str, accept: Option<&str>) -> ResolveRequest {
        ResolveRequest {
            path: path.to_string(),
            query: query.to_string(),
            accept: accept.map(str::to_string),
        }
    }

    fn signing() -> Guard {
        Guard {
            keys: Some(SigningKeys::parse(KEY).unwrap()),
            policy: None,
        }
    }

    #[test]
    fn unsigned_url_is_the_canonical_one() {
        let r = resolve(
            &Guard::default(),
            &request("/o/a.png", "fmt=webp&w=150&dpr=2&q=80", None),
        )
        .unwrap();
        assert_eq!(r.canonical, "/o/a.png?w=300&fmt=webp");
        assert_eq!(r.url, r.canonical);
        assert_eq!(r.cache_key, r.canonical);
        assert!(!r.signed && !r.varies_on_accept);
        assert_eq!(
            r.variant_key.as_deref(),
            Some("_variants/v2/o/a.png/w=300,fmt=webp.webp")
        );
        // Only defaults: the master itself, no variant.
        let master = resolve(&Guard::default(), &request("/o/a.png", "fmt=png", None)).unwrap();
        assert_eq!(
            (master.canonical.as_str(), master.url.as_str()),
            ("/o/a.png", "/o/a.png")
        );
        assert_eq!(master.variant_key, None);
    }

    #[test]
    fn cache_key_has_the_decoded_path() {
        let r = resolve(&Guard::default(), &request("/o/my%20a.png", "w=5", None)).unwrap();
        assert_eq!(r.canonical, "/o/my%20a.png?w=5");
        assert_eq!(r.cache_key, "/o/my a.png?w=5");
    }

    #[test]
    fn signed_url_passes_the_viewer_step() {
        let guard = signing();
        let r = resolve(&guard, &request("/o/a.png", "w=300&fmt=webp", None)).unwrap();
        assert!(r.signed);
        assert_eq!(r.canonical, "/o/a.png?w=300&fmt=webp");
        let (path, query) = r.url.split_once('?').unwrap();
        assert!(query.starts_with("w=300&fmt=webp&sig="), "{}", r.url);
        let through = guard.resolve(path, query, None).unwrap();
        assert_eq!(through.canonical_query(), "w=300&fmt=webp");
        // A sig in the given query is not trusted, only replaced.
        let again = resolve(
            &guard,
            &request("/o/a.png", "w=300&fmt=webp&sig=AAAA", None),
        )
        .unwrap();
        assert_eq!(again.url, r.url);
        // A master needs no signature.
        let master = resolve(&guard, &request("/o/a.png", "", None)).unwrap();
        assert_eq!(master.url, "/o/a.png");
        assert!(!master.signed);
    }

    #[test]
    fn auto_keeps_auto_in_the_url_and_resolves_the_canonical_for_accept() {
        let guard = signing();
        let r = resolve(
            &guard,
            &request("/o/a.png", "w=300&fmt=auto", Some(IMAGE_ACCEPT)),
        )
        .unwrap();
        assert!(r.varies_on_accept);
        assert_eq!(r.canonical, "/o/a.png?w=300&fmt=avif");
        let (path, query) = r.url.split_once('?').unwrap();
        assert!(query.starts_with("w=300&fmt=auto&sig="), "{}", r.url);
        let through = guard.resolve(path, query, Some(IMAGE_ACCEPT)).unwrap();
        assert_eq!(through.canonical_query(), "w=300&fmt=avif");
        let no_webp = resolve(&guard, &request("/o/a.png", "w=300&fmt=auto", None)).unwrap();
        assert_eq!(no_webp.canonical, "/o/a.png?w=300");
    }

    #[test]
    fn a_policy_that_refuses_the_canonical_spelling_gets_the_given_one() {
        let guard = Guard {
            keys: Some(SigningKeys::parse(KEY).unwrap()),
            policy: Some(
                Policy::from_value(serde_json::json!({"widths": [64], "dprs": [1, 2]})).unwrap(),
            ),
        };
        let r = resolve(&guard, &request("/o/a.png", "w=64&dpr=2", None)).unwrap();
        assert_eq!(r.canonical, "/o/a.png?w=128");
        let (path, query) = r.url.split_once('?').unwrap();
        assert!(query.starts_with("w=64&dpr=2&sig="), "{}", r.url);
        assert!(guard.resolve(path, query, None).is_ok());
        let e = resolve(&guard, &request("/o/a.png", "w=100", None)).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("w"));
    }

    #[test]
    fn answers_carry_the_error_bodies_of_the_url_api() {
        let (status, body) = resolve_answer(&signing(), "path=/o/a.png&query=w%3D0");
        assert_eq!(status, 400);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"], "invalid_parameter");
        assert_eq!(body["param"], "w");
        let (status, body) = resolve_answer(&Guard::default(), "path=/o/a.gif&query=w%3D5");
        assert_eq!(status, 400);
        assert!(body.contains("invalid_key"), "{body}");
        let (status, body) = resolve_answer(&Guard::default(), "path=/o/a.png&query=w%3D5");
        assert_eq!(status, 200);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["canonical"], "/o/a.png?w=5");
        assert_eq!(body["url"], "/o/a.png?w=5");
        assert_eq!(body["signed"], false);
        assert_eq!(body["variant_key"], "_variants/v2/o/a.png/w=5.png");
    }

    #[test]
    fn parameters_are_form_decoded_and_strict() {
        let r = ResolveRequest::parse(
            "path=%2Fo%2Fmy%2520a.png&query=w%3D5%26fmt%3Dauto&accept=image%2Fwebp,+*%2F*",
        )
        .unwrap();
        assert_eq!(r.path, "/o/my%20a.png");
        assert_eq!(r.query, "w=5&fmt=auto");
        assert_eq!(r.accept.as_deref(), Some("image/webp, */*"));
        assert_eq!(ResolveRequest::parse("path=/o/a.png").unwrap().query, "");
        let param = |q: &str| ResolveRequest::parse(q).unwrap_err().param.unwrap();
        assert_eq!(param(""), "path");
        assert_eq!(param("query=w%3D5"), "path");
        assert_eq!(param("path=o/a.png"), "path");
        assert_eq!(param("path=/a.png&path=/b.png"), "path");
        assert_eq!(param("path=/a.png&sig=x"), "sig");
        assert_eq!(param("path=/a.png&query=%FF"), "query");
    }

    #[test]
    fn only_callers_on_this_machine_are_answered() {
        let peer = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        let local = peer("127.0.0.1:50000");
        assert_eq!(
            check_local_caller(local, Some("127.0.0.1:8080"), false),
            Ok(())
        );
        assert_eq!(
            check_local_caller(local, Some("localhost:8080"), false),
            Ok(())
        );
        assert_eq!(check_local_caller(local, Some("LOCALHOST"), false), Ok(()));
        assert_eq!(check_local_caller(local, Some("127.0.0.2"), false), Ok(()));
        assert_eq!(
            check_local_caller(peer("[::1]:5"), Some("[::1]:8080"), false),
            Ok(())
        );
        assert_eq!(
            check_local_caller(peer("[::1]:5"), Some("[::1]"), false),
            Ok(())
        );

        for remote in ["192.0.2.7:4000", "[2001:db8::1]:4000", "0.0.0.0:1"] {
            assert_eq!(
                check_local_caller(peer(remote), Some("127.0.0.1:8080"), false),
                Err(Refusal::RemotePeer),
                "{remote}"
            );
        }
        assert_eq!(
            check_local_caller(None, Some("127.0.0.1"), false),
            Err(Refusal::RemotePeer)
        );
        for host in [
            None,
            Some("evil.example"),
            Some("evil.example:8080"),
            Some("localhost.evil.example"),
            Some("127.0.0.1.evil.example"),
            Some("192.0.2.7:8080"),
            Some("[2001:db8::1]:8080"),
            Some("[::1]x"),
        ] {
            assert_eq!(
                check_local_caller(local, host, false),
                Err(Refusal::ForeignHost),
                "{host:?}"
            );
        }
        assert_eq!(
            check_local_caller(local, Some("127.0.0.1"), true),
            Err(Refusal::Forwarded)
        );
        let body: Value = serde_json::from_str(&Refusal::RemotePeer.to_json()).unwrap();
        assert_eq!(body["status"], 403);
        assert_eq!(body["error"], "forbidden");
        assert!(body["message"].as_str().unwrap().contains("loopback"));
    }

    #[test]
    fn page_lists_masters_escaped_and_loads_nothing_from_elsewhere() {
        let html = playground_html(&["o/a\"<b>.png".to_string(), "o/c.png".to_string()]);
        assert!(
            html.contains("<option value=\"/o/a%22%3Cb%3E.png\">o/a&quot;&lt;b&gt;.png</option>")
        );
        assert!(html.contains("<option value=\"/o/c.png\">o/c.png</option>"));
        assert!(!html.contains(MASTERS_MARKER));
        for outside in ["http://", "https://", "src=\"//", "href=\"//"] {
            assert!(!html.contains(outside), "{outside}");
        }
    }
}

//! What an owner configures in front of the URL API (DESIGN.md §10): signing keys and a
//! policy, applied in the order of the design: key (400) → signature (403) → preset →
//! query (400) → policy lists (400). Pure: no I/O. Callers (`edge serve`, the regional
//! handler) run [`Guard::resolve`] where they now call [`crate::service::resolve`].

use std::borrow::Cow;

use crate::error::Result;
use crate::key::MasterKey;
use crate::policy::Policy;
use crate::service::{self, Resolved};
use crate::sign::{split_sig, SigningKeys};

/// Signing keys and policy; both optional (none = the bare URL API).
#[derive(Debug, Clone, Default)]
pub struct Guard {
    pub keys: Option<SigningKeys>,
    pub policy: Option<Policy>,
}

impl Guard {
    /// `uri` is the path exactly as sent and `raw_query` the query as sent (with `sig`).
    pub fn resolve(&self, uri: &str, raw_query: &str, accept: Option<&str>) -> Result<Resolved> {
        // The key first: a bad path is a 400 (or a 404 for `_variants/`) whoever signed it.
        MasterKey::from_uri(uri)?;
        let query = self.unsigned_query(uri, raw_query)?;
        let query = match &self.policy {
            Some(policy) => policy.expand_preset(query)?,
            None => Cow::Borrowed(query),
        };
        let resolved = service::resolve(uri, &query, accept)?;
        if let Some(policy) = &self.policy {
            policy.check(&query)?;
        }
        Ok(resolved)
    }

    /// The query without `sig`. With keys, any query must carry a valid one (a plain
    /// master request, no query, needs none). Without keys a trailing `sig` is dropped
    /// unread, so signed URLs keep working after signing is turned off.
    pub fn unsigned_query<'q>(&self, uri: &str, raw_query: &'q str) -> Result<&'q str> {
        match &self.keys {
            _ if raw_query.is_empty() => Ok(raw_query),
            Some(keys) => keys.verify(uri, raw_query),
            None => Ok(split_sig(raw_query).0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn read(name: &str) -> Value {
        let path = format!("{}/../tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture file"))
            .expect("fixture is JSON")
    }

    /// One case of either fixture: canonical query, or error status/code/param plus the
    /// strings its message must mention.
    fn check_case(what: &str, guard: &Guard, case: &Value) {
        let uri = case["uri"].as_str().unwrap();
        let query = case["query"].as_str().unwrap();
        let result = guard.resolve(uri, query, case["accept"].as_str());
        match (&case["canonical"], &case["error"]) {
            (Value::String(want), Value::Null) => {
                let resolved = result.unwrap_or_else(|e| panic!("{what}: {}", e.to_json()));
                assert_eq!(&resolved.canonical_query(), want, "{what}");
                // The origin re-checks the canonical form: all the viewer step lets
                // through, it admits.
                if let (Some(policy), Some(spec)) = (&guard.policy, &resolved.spec) {
                    policy
                        .admits(spec)
                        .unwrap_or_else(|e| panic!("{what}: origin refuses: {}", e.to_json()));
                }
            }
            (Value::Null, want @ Value::Object(_)) => {
                let e = result.expect_err(what);
                let body: Value = serde_json::from_str(&e.to_json()).unwrap();
                assert_eq!(body["status"], want["status"], "{what}: {body}");
                assert_eq!(body["error"], want["error"], "{what}: {body}");
                assert_eq!(
                    body.get("param").unwrap_or(&Value::Null),
                    &want["param"],
                    "{what}: {body}"
                );
                assert_eq!(e.cache_control(), "public, max-age=60", "{what}");
                let message = body["message"].as_str().unwrap();
                assert!(!message.is_empty(), "{what}");
                for m in case["mentions"].as_array().into_iter().flatten() {
                    let m = m.as_str().unwrap();
                    assert!(
                        message.contains(m),
                        "{what}: '{message}' should mention '{m}'"
                    );
                }
            }
            _ => panic!("{what}: a case has exactly one of canonical and error"),
        }
    }

    #[test]
    fn signature_fixture_cases_hold() {
        let f = read("signature-cases.json");
        let cases = f["cases"].as_array().unwrap();
        assert!(cases.len() >= 30);
        for case in cases {
            let names: Vec<&str> = case["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| f["keys"][k.as_str().unwrap()].as_str().unwrap())
                .collect();
            let guard = Guard {
                keys: (!names.is_empty()).then(|| SigningKeys::parse(&names.join("\n")).unwrap()),
                policy: case
                    .get("policy")
                    .map(|p| Policy::from_value(p.clone()).unwrap()),
            };
            let what = format!("{} ({}?{})", case["name"], case["uri"], case["query"]);
            check_case(&what, &guard, case);
        }
    }

    #[test]
    fn policy_fixture_cases_hold() {
        let f = read("policy-cases.json");
        let cases = f["cases"].as_array().unwrap();
        assert!(cases.len() >= 40);
        for case in cases {
            let name = case["policy"].as_str().unwrap();
            let policy = Policy::from_value(f["policies"][name].clone()).unwrap();
            let guard = Guard {
                keys: None,
                policy: Some(policy),
            };
            let what = format!(
                "policy {name}: {}?{} (Accept: {})",
                case["uri"], case["query"], case["accept"]
            );
            check_case(&what, &guard, case);
        }
    }

    #[test]
    fn without_keys_or_policy_it_is_the_url_api() {
        let guard = Guard::default();
        let r = guard.resolve("/a.png", "fmt=webp&w=5", None).unwrap();
        assert_eq!(r.canonical_query(), "w=5&fmt=webp");
        let e = guard.resolve("/a.png", "preset=thumb", None).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("preset"));
    }
}

//! Signed URLs: the check answers Ok only for the exact bytes that were signed, a 403
//! otherwise, and never panics; signing then checking round-trips for any path and query;
//! the whole viewer-side order (key → signature → preset → query → policy) gives only its
//! documented errors; a keys file of any text loads or names a line.
//!
//! Input lines: the path as sent, the raw query as sent (with `sig`), the `Accept` header,
//! then the rest: a keys file's text (the keys are the signature fixture's; the text is
//! only parsed).
#![no_main]

use std::sync::OnceLock;

use edge::guard::Guard;
use edge::sign::{split_sig, SigningKeys};
use edge::ErrorKind;
use imgedge_fuzz::{
    expect_kind, fields, fixture_keys, fixture_policies, limit_heap, optional, TEXT_HEAP_LIMIT,
};
use libfuzzer_sys::fuzz_target;

struct Setup {
    keys: SigningKeys,
    guards: Vec<Guard>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let keys = fixture_keys();
        let mut guards = vec![Guard {
            keys: Some(keys.clone()),
            policy: None,
        }];
        for (_, policy) in fixture_policies() {
            guards.push(Guard {
                keys: Some(keys.clone()),
                policy: Some(policy),
            });
        }
        Setup { keys, guards }
    })
}

fuzz_target!(|data: &[u8]| {
    limit_heap(TEXT_HEAP_LIMIT);
    let setup = setup();
    let f = fields(data, 4);
    let (path, query, accept, keys_file) = (&f[0], &f[1], optional(&f[2]), &f[3]);

    match setup.keys.verify(path, query) {
        Ok(unsigned) => {
            // Only a query that ends in `sig=` of these exact bytes passes.
            let (before, sig) = split_sig(query);
            assert_eq!(unsigned, before);
            assert_eq!(
                sig.map(str::len),
                Some(43),
                "HMAC-SHA256 is 43 base64url chars"
            );
        }
        Err(e) => expect_kind(&e, &[ErrorKind::InvalidSignature], "verify"),
    }

    // Round trip: what we sign, we accept, and a changed path is refused.
    if !query.is_empty() {
        let signed = setup.keys.signed_query(path, query);
        assert_eq!(setup.keys.verify(path, &signed), Ok(query.as_str()));
        let other = format!("{path}x");
        assert!(setup.keys.verify(&other, &signed).is_err());
    }
    // A whole URL signed by `sign_url` verifies (paths that start with `/`, no fragment).
    if path.starts_with('/')
        && !path.contains(['?', '#'])
        && !path.contains("://")
        && !query.contains('#')
    {
        let url = format!("{path}?{query}");
        let signed = setup.keys.sign_url(&url);
        let (p, q) = signed.split_once('?').unwrap_or((&signed, ""));
        assert_eq!(p, path.as_str());
        if !q.is_empty() {
            assert!(setup.keys.verify(p, q).is_ok(), "{signed:?}");
        }
    }

    for guard in &setup.guards {
        if let Err(e) = guard.resolve(path, query, accept) {
            let kinds = [
                ErrorKind::InvalidKey,
                ErrorKind::NotFound,
                ErrorKind::InvalidSignature,
                ErrorKind::InvalidParameter,
            ];
            expect_kind(&e, &kinds, "guard");
        }
    }

    match SigningKeys::parse(keys_file) {
        Ok(keys) => assert!(!keys.is_empty()),
        Err(e) => {
            if let Some(line) = e.line {
                assert!(line >= 1 && line <= keys_file.lines().count(), "{e:?}");
            }
        }
    }
});

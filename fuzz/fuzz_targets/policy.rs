//! The owner's policy and presets: a `policy.json` of any text loads or is refused with a
//! message (a loaded one keeps its promises: every preset is a valid query for every
//! master, inside the lists); under a policy, what the viewer step lets through the origin
//! admits (its canonical query resolves to the same spec), and errors are only 400/404.
//!
//! Input lines: a policy (the name of one in tests/fixtures/policy-cases.json; any other
//! line is a `policy.json` text), the URI path, the raw query (no `sig`; `preset=NAME` is
//! expanded), the `Accept` header.
#![no_main]

use std::sync::OnceLock;

use edge::guard::Guard;
use edge::policy::Policy;
use edge::service;
use edge::spec::{Format, VariantSpec};
use edge::ErrorKind;
use imgedge_fuzz::{expect_kind, fields, fixture_policies, limit_heap, optional, TEXT_HEAP_LIMIT};
use libfuzzer_sys::fuzz_target;

fn fixtures() -> &'static [(String, Policy)] {
    static POLICIES: OnceLock<Vec<(String, Policy)>> = OnceLock::new();
    POLICIES.get_or_init(fixture_policies)
}

fuzz_target!(|data: &[u8]| {
    limit_heap(TEXT_HEAP_LIMIT);
    let f = fields(data, 4);
    let (uri, query, accept) = (&f[1], &f[2], optional(&f[3]));
    let loaded;
    let policy = if let Some((_, policy)) = fixtures().iter().find(|(name, _)| *name == f[0]) {
        policy
    } else {
        loaded = match Policy::parse(&f[0]) {
            Ok(policy) => policy,
            Err(e) => {
                assert!(e.0.len() > "policy: ".len(), "{e:?}");
                return;
            }
        };
        for name in loaded.preset_names() {
            let preset = loaded.preset(name).expect("listed preset");
            for master in [Format::Png, Format::Jpeg, Format::Webp] {
                for accept in [None, Some("image/webp")] {
                    assert!(
                        VariantSpec::parse(preset, master, accept).is_ok(),
                        "{preset}"
                    );
                }
            }
            assert!(loaded.check(preset).is_ok(), "{preset}");
        }
        &loaded
    };

    let guard = Guard {
        keys: None,
        policy: Some(policy.clone()),
    };
    let resolved = match guard.resolve(uri, query, accept) {
        Ok(resolved) => resolved,
        Err(e) => {
            let kinds = [
                ErrorKind::InvalidKey,
                ErrorKind::NotFound,
                ErrorKind::InvalidParameter,
            ];
            expect_kind(&e, &kinds, "viewer step");
            return;
        }
    };
    // The origin gets the canonical query (and no Accept: auto is resolved by then).
    let canonical = resolved.canonical_query();
    let expanded = policy
        .expand_preset(&canonical)
        .expect("a canonical query names no preset");
    assert_eq!(expanded, canonical.as_str());
    let at_origin = service::resolve(uri, &canonical, None)
        .unwrap_or_else(|e| panic!("origin refuses {uri}?{canonical}: {}", e.to_json()));
    assert_eq!(at_origin.spec, resolved.spec, "{uri}?{query} → {canonical}");
    if let Some(spec) = &resolved.spec {
        if let Err(e) = policy.admits(spec) {
            panic!(
                "{uri}?{query} → {canonical}: the origin does not admit it: {}",
                e.to_json()
            );
        }
    }
});

//! What the fuzz targets share: a heap ceiling, the fixtures they configure themselves
//! with, and the plain-text layout of their inputs.
//!
//! Text targets read their input as lines (lossy UTF-8, so every input reaches the code):
//! seeds stay readable and a mutation of one field leaves the others intact.

use std::alloc::System;
use std::sync::atomic::{AtomicUsize, Ordering};

use cap::Cap;
use edge::policy::Policy;
use edge::sign::SigningKeys;
use edge::{Error, ErrorKind};
use serde_json::Value;

/// Every Rust allocation of a target counts against one ceiling; an allocation past it
/// fails, which aborts the process: libFuzzer reports it as a crash with the input that
/// did it. (libFuzzer's own `-malloc_limit_mb` needs a sanitizer's allocator, which a
/// stable build has not.)
#[global_allocator]
static HEAP: Cap<System> = Cap::new(System, usize::MAX);

/// Heap ceiling of the text targets: a parser that needs this much for a few KB of input
/// is a bug.
pub const TEXT_HEAP_LIMIT: usize = 256 << 20;

/// Set the heap ceiling (at the start of each input; a no-op after the first).
pub fn limit_heap(bytes: usize) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        // A panic's report (a backtrace reads the binary's debug info) must not itself
        // fail on the ceiling: that aborted without a report, then hung libFuzzer.
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = HEAP.set_limit(usize::MAX);
            report(info);
        }));
    });
    if HEAP.limit() != bytes {
        HEAP.set_limit(bytes)
            .expect("the ceiling is above what is in use");
    }
}

/// With `IMGEDGE_FUZZ_PEAK` set, print the heap's high-water mark each time it grows by a
/// MiB or more (the figure docs/reliability.md reports).
pub fn report_peak() {
    static SHOWN: AtomicUsize = AtomicUsize::new(0);
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*ON.get_or_init(|| std::env::var_os("IMGEDGE_FUZZ_PEAK").is_some()) {
        return;
    }
    let peak = HEAP.max_allocated();
    if peak >= SHOWN.load(Ordering::Relaxed) + (1 << 20) {
        SHOWN.store(peak, Ordering::Relaxed);
        eprintln!("imgedge-fuzz: heap peak {peak} bytes");
    }
}

/// The input as text, split into at most `n` fields at `\n` (the last field keeps the
/// rest, newlines included); missing fields are empty.
pub fn fields(data: &[u8], n: usize) -> Vec<String> {
    let text = String::from_utf8_lossy(data);
    let mut out: Vec<String> = text.splitn(n, '\n').map(str::to_string).collect();
    out.resize(n, String::new());
    out
}

/// An empty field is an absent header.
pub fn optional(field: &str) -> Option<&str> {
    (!field.is_empty()).then_some(field)
}

/// The shared URL API fixtures (tests/fixtures), compiled in so a target reads no file.
pub fn signature_cases() -> Value {
    serde_json::from_str(include_str!("../../tests/fixtures/signature-cases.json"))
        .expect("signature-cases.json is JSON")
}

pub fn policy_cases() -> Value {
    serde_json::from_str(include_str!("../../tests/fixtures/policy-cases.json"))
        .expect("policy-cases.json is JSON")
}

/// The keys of the signature fixture, first to last (k1 signs).
pub fn fixture_keys() -> SigningKeys {
    let cases = signature_cases();
    let secrets: Vec<&str> = ["k1", "k2", "k3"]
        .iter()
        .map(|k| cases["keys"][k].as_str().expect("fixture key"))
        .collect();
    SigningKeys::parse(&secrets.join("\n")).expect("fixture keys parse")
}

/// The policies of the policy fixture, by name.
pub fn fixture_policies() -> Vec<(String, Policy)> {
    let cases = policy_cases();
    cases["policies"]
        .as_object()
        .expect("policies")
        .iter()
        .map(|(name, p)| {
            let policy = Policy::from_value(p.clone()).expect("fixture policy loads");
            (name.clone(), policy)
        })
        .collect()
}

/// An error of the request path must be one of `kinds`; anything else (above all
/// `internal`, which a contained panic becomes) is a finding.
pub fn expect_kind(error: &Error, kinds: &[ErrorKind], what: &str) {
    assert!(
        kinds.contains(&error.kind),
        "{what}: unexpected {:?} error: {}",
        error.kind,
        error.to_json()
    );
    // The public body always serialises and names its status.
    let body: Value = serde_json::from_str(&error.to_json()).expect("error body is JSON");
    assert_eq!(body["status"], error.status(), "{what}");
}

//! `edge serve` bounded (issue 15): the invalidation endpoint refuses cross-site requests,
//! renders beyond the pixel budget are a 503 `busy` with `Retry-After`, and a request past
//! `--request-timeout` is a 504 `timeout`; none leaves an object behind.

mod common;

use std::time::{Duration, Instant};

use common::*;
use edge::local::INVALIDATE_HEADER;
use image::ImageFormat;
use reqwest::Method;

#[test]
fn invalidation_refuses_requests_a_foreign_page_could_send() {
    let dir = tempfile::tempdir().unwrap();
    put(dir.path(), "a.png", &gradient(40, 30, ImageFormat::Png));
    let edge = EdgeServer::start(dir.path(), &[]);
    let url = "/_imgedge/invalidate?path=/a.png*";
    let host = format!("127.0.0.1:{}", edge.port);
    let refused: [(&str, Vec<(&str, &str)>); 3] = [
        ("a form post: no header", vec![]),
        (
            "foreign Origin",
            vec![(INVALIDATE_HEADER, "1"), ("Origin", "https://evil.example")],
        ),
        (
            "cross-site fetch",
            vec![(INVALIDATE_HEADER, "1"), ("Sec-Fetch-Site", "cross-site")],
        ),
    ];
    for (what, headers) in refused {
        let r = edge.request(Method::POST, url, &headers);
        assert_eq!(r.status, 403, "{what}");
        assert_eq!(r.json()["error"], "forbidden", "{what}");
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    let own_origin = format!("http://{host}");
    for headers in [
        vec![(INVALIDATE_HEADER, "1")],
        vec![(INVALIDATE_HEADER, "1"), ("Origin", own_origin.as_str())],
    ] {
        let r = edge.request(Method::POST, url, &headers);
        assert_eq!(
            r.status,
            200,
            "{headers:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
}

#[test]
fn renders_beyond_the_pixel_budget_are_busy_then_served() {
    let dir = tempfile::tempdir().unwrap();
    // 4 MP masters against a 5 MP budget: one render at a time; a queue of 1 ms, so
    // renders that arrive together cannot all wait their turn.
    for i in 0..6 {
        put(
            dir.path(),
            &format!("m{i}.png"),
            &gradient(2400, 1700, ImageFormat::Png),
        );
    }
    let edge = EdgeServer::start(
        dir.path(),
        &[
            "--render-budget-pixels",
            "5000000",
            "--render-queue-ms",
            "1",
        ],
    );
    let replies: Vec<Reply> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .flat_map(|i| {
                let edge = &edge;
                (0..4).map(move |j| {
                    s.spawn(move || edge.get(&format!("/m{i}.png?w={}&fmt=webp", 1200 + j)))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let busy: Vec<&Reply> = replies.iter().filter(|r| r.status == 503).collect();
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(busy.len() + ok, replies.len(), "only 200 or 503");
    assert!(
        !busy.is_empty(),
        "24 renders of 4 MP cannot all wait 2 s for a 5 MP budget"
    );
    assert!(ok >= 1);
    for r in &busy {
        assert_error(r, 503, "busy", "over budget");
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    // Every stored variant is whole; a busy one was never written and renders later.
    assert_eq!(edge.variant_objects().len(), ok);
    for path in edge.variant_objects() {
        image::load_from_memory(&std::fs::read(&path).unwrap()).expect("a whole image");
    }
    let again = edge.get("/m0.png?w=1200&fmt=webp");
    assert_eq!(again.status, 200);
}

#[test]
fn a_request_past_the_timeout_is_504_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    put(
        dir.path(),
        "big.png",
        &gradient(5000, 4000, ImageFormat::Png),
    );
    let edge = EdgeServer::start(dir.path(), &["--request-timeout", "0.05"]);
    let started = Instant::now();
    let r = edge.get("/big.png?w=4000&fmt=png");
    let took = started.elapsed();
    assert_error(&r, 504, "timeout", "timeout");
    assert!(
        took < Duration::from_secs(2),
        "answered at the deadline, not after the render: {took:?}"
    );
    // The render finishes on its thread but is never stored.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        edge.variant_objects().is_empty(),
        "{:?}",
        edge.variant_objects()
    );
    // Not cached: the next request tries again (and times out again, here).
    let again = edge.get("/big.png?w=4000&fmt=png");
    assert_eq!(again.x_cache(), "Miss from imgedge");
}

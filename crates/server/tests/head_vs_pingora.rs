//! `head::scan` against the parser it stands in front of: Pingora 0.9's own
//! HTTP/1 server session, reading the same bytes.
//!
//! On request heads glued from fragments that each hit one rule (methods,
//! targets with unsafe bytes, versions, line endings, `Host`,
//! `Content-Length`, `Transfer-Encoding`, broken header lines):
//!
//! - every head Pingora refuses is refused by `scan` too, so no refusal goes
//!   uncounted;
//! - every head `scan` lets through, Pingora accepts;
//! - `scan` refuses what Pingora accepts only where Switchyard is stricter
//!   on purpose: the same `Content-Length` sent more than once, and an
//!   HTTP/1.1 request without `Host` (RFC 9112 §3.2).
//!
//! Also: `scan` never panics on arbitrary bytes, and no strict prefix of an
//! accepted head is taken for a whole one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;

use pingora_core::protocols::http::v1::server::HttpSession;
use proptest::prelude::*;
use proptest::test_runner::Config;
use switchyard_server::head::{scan, Verdict};

const LIMIT: usize = 1 << 20;

// Each part of a head comes from a set of ordinary values and a set of
// values that break one rule; the broken ones are drawn a fifth of the time,
// so heads with none, one or several faults all come up.
const METHODS: &[&str] = &["GET", "POST", "M-SEARCH", "get"];
const BAD_METHODS: &[&str] = &["G@T", "", "G\x7fT"];
const TARGETS: &[&str] = &[
    "/",
    "/a/b?c=d",
    "/a?x={\"y\"}",
    "/a#frag",
    "*",
    "http://a/x",
    "http://a:80/x",
];
const BAD_TARGETS: &[&str] = &[
    "/a b",
    "/a\"b",
    "/<x>",
    "/a?<q>",
    "/a\x01b",
    "/\u{e9}",
    "/%zz",
    "http://u@a/x",
    "http://b/x",
    "a",
    "",
];
const VERSIONS: &[&str] = &["HTTP/1.1", "HTTP/1.0"];
const BAD_VERSIONS: &[&str] = &["HTTP/2.0", "HTTP/1.x", "HTTP/1", ""];
const LINE_ENDS: &[&str] = &["\r\n", "\n"];
const HEADERS: &[&str] = &[
    "Host: a",
    "Host: a:80",
    "Content-Length: 5",
    "Content-Length:  5 ",
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: gzip, chunked",
    "Transfer-Encoding: CHUNKED",
    "X-A: b",
    "X-Utf8: \u{e9}",
    "Cookie: a=b; c=d",
];
const BAD_HEADERS: &[&str] = &[
    "Host: b",
    "Host: u@a",
    "Content-Length: 5, 5",
    "Content-Length: 6",
    "Content-Length: -1",
    "Content-Length: 0x5",
    "Content-Length: ",
    "Transfer-Encoding: chunked, gzip",
    "Transfer-Encoding: xchunked",
    " folded",
    "Bad Name: x",
    "X : y",
    "X-Ctl: a\x01b",
    "NoColon",
];

fn pick(
    good: &'static [&'static str],
    bad: &'static [&'static str],
) -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => proptest::sample::select(good),
        1 => proptest::sample::select(bad),
    ]
}

prop_compose! {
    fn head()(
        method in pick(METHODS, BAD_METHODS),
        target in pick(TARGETS, BAD_TARGETS),
        version in pick(VERSIONS, BAD_VERSIONS),
        eol in proptest::sample::select(LINE_ENDS),
        headers in proptest::collection::vec(pick(HEADERS, BAD_HEADERS), 0..5),
    ) -> String {
        let mut h = format!("{method} {target} {version}{eol}");
        for line in headers {
            h.push_str(line);
            h.push_str(eol);
        }
        h.push_str(eol);
        h
    }
}

/// Pingora's verdict: does its HTTP/1 server session accept this head?
fn pingora_accepts(head: &str) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut session = HttpSession::new(Box::new(Cursor::new(head.as_bytes().to_vec())));
        matches!(session.read_request().await, Ok(Some(_)))
    })
}

/// The one place Switchyard refuses on purpose what Pingora accepts: one
/// `Content-Length` value sent more than once (`5, 5`, or two lines).
fn repeats_one_length(head: &str) -> bool {
    let values: Vec<&str> = head
        .lines()
        .filter_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then_some(value)
        })
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    values.len() > 1 && values.iter().all(|v| *v == values[0])
}

/// Whether any header line is `Host`.
fn has_host(head: &str) -> bool {
    head.lines().skip(1).any(|l| {
        l.split_once(':')
            .is_some_and(|(name, _)| name.eq_ignore_ascii_case("host"))
    })
}

proptest! {
    #![proptest_config(Config { cases: 4000, ..Config::default() })]

    #[test]
    fn scan_agrees_with_pingora(head in head()) {
        let verdict = scan(head.as_bytes(), LIMIT);
        let accepted = pingora_accepts(&head);
        match &verdict {
            Verdict::Complete(_) => prop_assert!(accepted, "scan passed what Pingora refuses: {head:?}"),
            Verdict::Refuse(r) if accepted => prop_assert!(
                (r.reason == "invalid or conflicting Content-Length" && repeats_one_length(&head))
                    || (r.reason == "missing Host header" && !has_host(&head)),
                "scan refused ({}) what Pingora accepts: {head:?}", r.reason
            ),
            Verdict::Refuse(_) => {}
            Verdict::Partial => prop_assert!(!accepted, "scan waits on a head Pingora accepts: {head:?}"),
        }
        if matches!(verdict, Verdict::Complete(_)) {
            for cut in 0..head.len() {
                prop_assert!(
                    !matches!(scan(&head.as_bytes()[..cut], LIMIT), Verdict::Complete(_)),
                    "prefix {:?} of {:?}", String::from_utf8_lossy(&head.as_bytes()[..cut]), head
                );
            }
        }
    }

    #[test]
    fn scan_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), limit in 0usize..700) {
        let _ = scan(&bytes, limit);
    }
}

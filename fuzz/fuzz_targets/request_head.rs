//! `head::scan` — the verdict on a request head taken before Pingora
//! parses it — on arbitrary bytes: it never panics, and it agrees with
//! Pingora 0.9's own HTTP/1 server session reading the same bytes:
//!
//! - a head `scan` passes (`Complete`), Pingora accepts;
//! - a head Pingora accepts, `scan` passes too, except where Switchyard is
//!   stricter on purpose (one `Content-Length` value sent more than once,
//!   an HTTP/1.1 request without `Host`);
//! - a head Pingora accepts is never left waiting (`Partial`).
//!
//! The limit is Pingora's own (1 MiB), so size refusals cannot differ.

#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use pingora_core::protocols::http::v1::server::HttpSession;
use switchyard_server::head::{scan, Verdict};

const LIMIT: usize = 1_048_575;

fn pingora_accepts(data: &[u8]) -> bool {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return false;
    };
    rt.block_on(async {
        let mut session = HttpSession::new(Box::new(Cursor::new(data.to_vec())));
        matches!(session.read_request().await, Ok(Some(_)))
    })
}

fuzz_target!(|data: &[u8]| {
    let verdict = scan(data, LIMIT);
    let accepted = pingora_accepts(data);
    match verdict {
        Verdict::Complete(_) => assert!(accepted, "scan passed what Pingora refuses"),
        Verdict::Partial => assert!(!accepted, "scan waits on a head Pingora accepts"),
        Verdict::Refuse(r) => assert!(
            !accepted
                || r.reason == "invalid or conflicting Content-Length"
                || r.reason == "missing Host header",
            "scan refused ({}) what Pingora accepts",
            r.reason
        ),
    }
});

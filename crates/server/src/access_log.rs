//! The fast path's access log: lines formatted straight into a buffer per
//! shard and handed to the process's log writer in batches, instead of one
//! `tracing` event per request.
//!
//! Measured with `benches/compare.py --access-log-on`: a `tracing` event per
//! request cost ~3 µs of CPU (0.85× nginx's throughput with both logs on),
//! most of it in the formatting layer. The lines written here are the same
//! bytes `tracing`'s text or JSON formatter writes for the Pingora path's
//! access events (target `switchyard::access`, message `request`), so a
//! reader cannot tell which path served a request. `RUST_LOG` still decides
//! whether they are written.
//!
//! A batch goes out when it reaches [`FLUSH_BYTES`], and at least every
//! [`FLUSH_EVERY`] (the flusher thread started by `serve`), like nginx's
//! `access_log ... buffer= flush=`.

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A batch is handed to the sink once it holds this much.
const FLUSH_BYTES: usize = 16 * 1024;
/// Lines wait at most about this long in a batch.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// What takes a batch of whole lines.
type WriteBatch = dyn Fn(&[u8]) + Send + Sync;

/// Where access-log batches go (whole lines, in order) and how lines are
/// spelled. The binary passes its log writer here, so the lines are
/// interleaved whole with the rest of the log.
#[derive(Clone)]
pub struct AccessLogSink {
    write: Arc<WriteBatch>,
    json: bool,
}

impl AccessLogSink {
    /// Lines as `tracing`'s JSON formatter (flattened) writes them when
    /// `json`, else as its text formatter (without colour); each batch is
    /// passed to `write`.
    pub fn new(json: bool, write: impl Fn(&[u8]) + Send + Sync + 'static) -> Self {
        AccessLogSink {
            write: Arc::new(write),
            json,
        }
    }
}

impl fmt::Debug for AccessLogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLogSink")
            .field("json", &self.json)
            .finish_non_exhaustive()
    }
}

/// One request's line.
pub(crate) struct Record<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub upstream: Option<SocketAddr>,
    pub duration_ms: f64,
    pub bytes: u64,
}

/// The lines of one shard not yet handed to the sink.
pub(crate) struct Batch {
    sink: AccessLogSink,
    lines: Mutex<Vec<u8>>,
}

impl Batch {
    pub(crate) fn new(sink: AccessLogSink) -> Self {
        Batch {
            sink,
            lines: Mutex::new(Vec::with_capacity(FLUSH_BYTES + 1024)),
        }
    }

    /// Appends one line unless `RUST_LOG` turns the access log off.
    pub(crate) fn line(&self, r: &Record<'_>) {
        if tracing::enabled!(target: "switchyard::access", tracing::Level::INFO) {
            self.push(r);
        }
    }

    /// Appends one line, and hands the batch on if it is full.
    fn push(&self, r: &Record<'_>) {
        let Ok(mut lines) = self.lines.lock() else {
            return;
        };
        if self.sink.json {
            json_line(&mut lines, r);
        } else {
            text_line(&mut lines, r);
        }
        if lines.len() >= FLUSH_BYTES {
            (self.sink.write)(&lines);
            lines.clear();
        }
    }

    /// Hands on whatever is waiting.
    pub(crate) fn flush(&self) {
        if let Ok(mut lines) = self.lines.lock() {
            if !lines.is_empty() {
                (self.sink.write)(&lines);
                lines.clear();
            }
        }
    }
}

/// `2026-12-01T16:36:53.152866Z` for now.
fn timestamp(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    thread_local! {
        /// The seconds part of the current second, formatted once.
        static SECOND: std::cell::RefCell<(u64, [u8; 19])> =
            const { std::cell::RefCell::new((u64::MAX, [0; 19])) };
    }
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != since.as_secs() {
            let text = humantime::format_rfc3339_seconds(now).to_string();
            if let Some(prefix) = text.as_bytes().get(..19) {
                cached.1.copy_from_slice(prefix);
                cached.0 = since.as_secs();
            }
        }
        out.extend_from_slice(&cached.1);
    });
    // `.{:06}Z`, without the formatting machinery.
    let micros = since.subsec_micros() + 1_000_000;
    let mut digits = itoa::Buffer::new();
    let seven = digits.format(micros).as_bytes();
    out.push(b'.');
    out.extend_from_slice(seven.get(1..).unwrap_or(seven));
    out.push(b'Z');
}

/// Appends `s` as `{:?}` writes it. Text of printable ASCII without `"`
/// or `\\` (a method, most paths and route names) is written as it is,
/// quoted, which is what `{:?}` gives for it; anything else goes through
/// `{:?}`.
fn debug_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = write!(out, "{s:?}");
    }
}

/// Appends a number as `{}` writes it.
fn number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends an upstream address as `{}` writes it: IPv4 by hand (nearly
/// every upstream), IPv6 through `Display`.
fn address(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                number(out, octet);
            }
            out.push(b':');
            number(out, v4.port());
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{addr}");
        }
    }
}

/// The text formatter's line: `<time>  INFO switchyard::access: request
/// method="GET" path=/x route="/app1" status=200 upstream=… duration_ms=…
/// bytes=…` (strings as `{:?}` where `tracing` records them so).
fn text_line(out: &mut Vec<u8>, r: &Record<'_>) {
    timestamp(out);
    out.extend_from_slice(b"  INFO switchyard::access: request method=");
    debug_str(out, r.method);
    out.extend_from_slice(b" path=");
    out.extend_from_slice(r.path.as_bytes());
    out.extend_from_slice(b" route=");
    debug_str(out, r.route);
    out.extend_from_slice(b" status=");
    number(out, r.status);
    if let Some(up) = &r.upstream {
        out.extend_from_slice(b" upstream=");
        address(out, up);
    }
    let _ = write!(out, " duration_ms={}", r.duration_ms);
    out.extend_from_slice(b" bytes=");
    number(out, r.bytes);
    out.push(b'\n');
}

/// The JSON formatter's line, fields flattened, in its order.
fn json_line(out: &mut Vec<u8>, r: &Record<'_>) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(out);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"method\":");
    json_string(out, r.method);
    out.extend_from_slice(b",\"path\":");
    json_string(out, r.path);
    out.extend_from_slice(b",\"route\":");
    json_string(out, r.route);
    out.extend_from_slice(b",\"status\":");
    number(out, r.status);
    if let Some(up) = &r.upstream {
        out.extend_from_slice(b",\"upstream\":\"");
        address(out, up);
        out.push(b'"');
    }
    out.extend_from_slice(b",\"duration_ms\":");
    let _ = serde_json::to_writer(&mut *out, &r.duration_ms);
    out.extend_from_slice(b",\"bytes\":");
    number(out, r.bytes);
    out.extend_from_slice(b",\"target\":\"switchyard::access\"}\n");
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record<'static> {
        Record {
            method: "GET",
            path: "/app1/x?a=\"b",
            route: "/app1",
            status: 200,
            upstream: "127.0.0.1:3001".parse().ok(),
            duration_ms: 0.25,
            bytes: 20,
        }
    }

    #[test]
    fn text_lines_look_like_tracing_text() {
        let mut out = Vec::new();
        text_line(&mut out, &record());
        let line = String::from_utf8_lossy(&out);
        let (time, rest) = line.split_at(27);
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{line}");
        assert_eq!(
            rest,
            "  INFO switchyard::access: request method=\"GET\" path=/app1/x?a=\"b route=\"/app1\" \
             status=200 upstream=127.0.0.1:3001 duration_ms=0.25 bytes=20\n"
        );
    }

    /// What `text_line` wrote when it was one `write!` (the format the
    /// Pingora path's `tracing` lines have), after the timestamp.
    fn text_by_format(r: &Record<'_>) -> String {
        let upstream = r
            .upstream
            .map(|u| format!(" upstream={u}"))
            .unwrap_or_default();
        format!(
            "  INFO switchyard::access: request method={:?} path={} route={:?} status={}{upstream} duration_ms={} bytes={}\n",
            r.method, r.path, r.route, r.status, r.duration_ms, r.bytes
        )
    }

    #[test]
    fn text_lines_match_the_format_string_they_replace() {
        let mut r = record();
        for (method, path, route, upstream) in [
            ("GET", "/app1/x?a=\"b", "/app1", Some("127.0.0.1:3001")),
            ("PATCH", "/%7e/\\x", "host.example/app\"2", Some("[::1]:9")),
            ("DELETE", "/", "unmatched", None),
        ] {
            r.method = method;
            r.path = path;
            r.route = route;
            r.upstream = upstream.and_then(|u| u.parse().ok());
            r.duration_ms = 12.000_5;
            r.bytes = 1 << 40;
            let mut out = Vec::new();
            text_line(&mut out, &r);
            let line = String::from_utf8_lossy(&out);
            assert_eq!(&line[27..], text_by_format(&r), "{line}");
        }
    }

    #[test]
    fn the_hand_written_pieces_read_as_their_format_strings() {
        for s in [
            "GET",
            "/app1",
            "a b",
            "q\"uote",
            "back\\slash",
            "tab\t",
            "é",
            "\u{7f}",
            "",
        ] {
            let mut out = Vec::new();
            debug_str(&mut out, s);
            assert_eq!(String::from_utf8_lossy(&out), format!("{s:?}"));
        }
        for n in [0u64, 7, 10, 65_535, u64::MAX] {
            let mut out = Vec::new();
            number(&mut out, n);
            assert_eq!(String::from_utf8_lossy(&out), n.to_string());
        }
        for a in [
            "127.0.0.1:3001",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[::1]:8080",
            "[fe80::1%2]:1",
        ] {
            let Ok(addr) = a.parse::<SocketAddr>() else {
                continue;
            };
            let mut out = Vec::new();
            address(&mut out, &addr);
            assert_eq!(String::from_utf8_lossy(&out), addr.to_string());
        }
        let mut out = Vec::new();
        timestamp(&mut out);
        let stamp = String::from_utf8_lossy(&out);
        assert_eq!(stamp.len(), 27, "{stamp}");
        assert!(stamp[20..26].bytes().all(|b| b.is_ascii_digit()), "{stamp}");
    }

    #[test]
    fn json_lines_parse_and_carry_every_field() {
        let mut out = Vec::new();
        let mut r = record();
        json_line(&mut out, &r);
        r.upstream = None;
        json_line(&mut out, &r);
        let lines: Vec<serde_json::Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["path"], "/app1/x?a=\"b");
        assert_eq!(lines[0]["status"], 200);
        assert_eq!(lines[0]["upstream"], "127.0.0.1:3001");
        assert_eq!(lines[0]["target"], "switchyard::access");
        assert_eq!(lines[0]["message"], "request");
        assert!(lines[1].get("upstream").is_none());
    }

    /// Lines are handed on in whole batches, when full or when flushed.
    #[test]
    fn batches_go_out_when_full_or_flushed() {
        let got = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
        let seen = Arc::clone(&got);
        let sink = AccessLogSink::new(false, move |b| {
            if let Ok(mut v) = seen.lock() {
                v.push(b.to_vec());
            }
        });
        let batch = Batch::new(sink);
        let written = || got.lock().map(|v| v.clone()).unwrap_or_default();
        batch.push(&record());
        assert!(written().is_empty(), "one line waits for more");
        batch.flush();
        batch.flush();
        assert_eq!(written().len(), 1, "a flush hands it on once");
        assert!(written()[0].ends_with(b"bytes=20\n"));
        // A full batch goes out by itself, in whole lines.
        let mut pushed = 0;
        while written().len() < 2 {
            batch.push(&record());
            pushed += 1;
            assert!(pushed < 10_000, "the batch never filled");
        }
        let full = &written()[1];
        assert!(full.len() >= FLUSH_BYTES && full.ends_with(b"\n"));
        assert_eq!(full.iter().filter(|&&b| b == b'\n').count(), pushed);
    }
}

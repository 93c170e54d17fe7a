//! The verdict on a request head, taken before Pingora parses it.
//!
//! `front.rs` reads each request head itself, under a deadline and a
//! size limit, and asks [`scan`] what it has: not enough bytes yet, a head
//! Pingora will accept, or one to refuse. Refusing here rather than leaving
//! it to Pingora's parser means every refused request gets a status, a
//! reason, an access-log line and a count in `switchyard_http_requests_total`
//! (Pingora answers those without calling any hook).
//!
//! The checks mirror what Pingora 0.9's HTTP/1 server refuses — the same
//! `httparse` parse, its request-line escaping, its `Content-Length`,
//! `Transfer-Encoding` and `Host` rules — so a head that passes here is one
//! Pingora accepts. Pingora still checks everything again: if the two ever
//! disagree, the request is refused uncounted, never let through.

use std::mem::MaybeUninit;
use std::sync::LazyLock;

use percent_encoding::{AsciiSet, CONTROLS};
use switchyard_h1::name::name_is;

/// As many header fields as Pingora accepts.
const MAX_HEADERS: usize = 256;

/// Pingora's own pattern for a request line whose target it will
/// percent-encode and parse again (`escape_illegal_request_line`).
static REQUEST_LINE: LazyLock<Option<regex::bytes::Regex>> =
    LazyLock::new(|| regex::bytes::Regex::new(r"^\w+ (?P<uri>.+) HTTP/\d(?:\.\d)?").ok());

/// The bytes Pingora percent-encodes in such a target.
const URI_ESCAPE: &AsciiSet = &CONTROLS.add(b' ').add(b'<').add(b'>').add(b'"');

/// What the bytes read so far amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No complete head yet, and nothing wrong so far.
    Partial,
    /// A complete head that may go on to Pingora.
    Complete(Head),
    /// A head to answer with an error and close.
    Refuse(Refusal),
}

/// What a complete, accepted head says about the message that follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the head, up to and including its blank line.
    pub len: usize,
    /// The body is chunked (`Transfer-Encoding` ending in `chunked`): its
    /// framing is checked strictly as it arrives (`front.rs`).
    pub chunked: bool,
    /// The request is inside the fast path's envelope (`fast.rs`): HTTP/1.1,
    /// an origin-form target of plain URI characters, one `Host`, no
    /// `Upgrade`, `Expect` or `CONNECT`, and a body that is absent, one
    /// `Content-Length` or exactly `chunked`. Anything else goes to
    /// Pingora.
    pub fast: bool,
    /// The request asks for a protocol upgrade the fast path tunnels
    /// (`fast.rs`): HTTP/1.1 `GET` of a plain origin-form target, one
    /// `Host`, `Connection: upgrade` with an `Upgrade` field, no `Expect`
    /// and no body. Other upgrades go to Pingora.
    pub tunnel: bool,
}

/// Why a request is refused, and what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status to answer with.
    pub status: u16,
    /// What is wrong, for the answer body and the log.
    pub reason: &'static str,
}

impl Refusal {
    const fn new(status: u16, reason: &'static str) -> Self {
        Refusal { status, reason }
    }
}

/// A request head larger than the limit.
pub const TOO_LARGE: Refusal = Refusal::new(431, "request head too large");
/// A request line longer than the whole limit.
pub const LINE_TOO_LONG: Refusal = Refusal::new(414, "request line too long");
/// More header fields than Pingora takes.
const TOO_MANY: Refusal = Refusal::new(431, "too many header fields");

/// Judges `buf`, the bytes of one request head read so far (the start of
/// its body may follow), against `max_bytes`.
pub fn scan(buf: &[u8], max_bytes: usize) -> Verdict {
    scan_with(buf, max_bytes, &mut |_, _, _| {})
}

/// What [`scan_with`] shows a head it parsed whole: the bytes parsed, the
/// parsed request (slices of those bytes) and the head's verdict so far.
pub(crate) type Visit<'v> = dyn FnMut(&[u8], &httparse::Request<'_, '_>, &Head) + Send + 'v;

/// Like [`scan`]; a complete head that passes the framing checks is also
/// shown to `visit` while its parse is at hand, so that a caller that
/// needs its fields (the fast path) does not parse the bytes again. The
/// verdict still decides: a head `visit` saw may yet be refused as too
/// large, and a head Pingora would rewrite (an escaped target) is never
/// shown.
pub(crate) fn scan_with(buf: &[u8], max_bytes: usize, visit: &mut Visit<'_>) -> Verdict {
    match judge(buf, visit) {
        Parsed::Complete(head) if head.len > max_bytes => {
            Verdict::Refuse(over_limit(buf, max_bytes))
        }
        Parsed::Complete(head) => Verdict::Complete(head),
        Parsed::Partial if buf.len() > max_bytes => Verdict::Refuse(over_limit(buf, max_bytes)),
        Parsed::Partial => Verdict::Partial,
        Parsed::Refuse(r) => Verdict::Refuse(r),
    }
}

/// Which limit a too-long head broke: the request line alone, or the head
/// as a whole.
fn over_limit(buf: &[u8], max_bytes: usize) -> Refusal {
    let (start, end) = request_line_span(buf);
    if end.unwrap_or(buf.len()) - start > max_bytes {
        LINE_TOO_LONG
    } else {
        TOO_LARGE
    }
}

/// Where the request line starts (after any blank lines before it) and,
/// once it has ended, where its `\n` is.
pub(crate) fn request_line_span(buf: &[u8]) -> (usize, Option<usize>) {
    let start = buf
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(buf.len());
    let end = buf[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| start + i);
    (start, end)
}

enum Parsed {
    Partial,
    Complete(Head),
    Refuse(Refusal),
}

fn judge(buf: &[u8], visit: &mut Visit<'_>) -> Parsed {
    match parse(buf, visit) {
        Err(e @ (httparse::Error::Token | httparse::Error::Version)) => {
            if request_line_span(buf).1.is_none() {
                // The target may go on in the next packet; judge the line
                // once it is whole (the size limit still applies).
                return Parsed::Partial;
            }
            // Pingora percent-encodes unsafe bytes in the target (spaces,
            // quotes, controls) once and parses again; only if that fails
            // too is the request refused.
            match escape_target(buf) {
                Some(escaped) => match parse(&escaped, &mut |_, _, _| {}) {
                    // The escaped head is longer than the bytes on the wire;
                    // the size limit is about the latter.
                    Ok(Parsed::Complete(head)) => Parsed::Complete(Head {
                        len: head_end(buf).unwrap_or(buf.len()),
                        // Pingora rewrites such a target; the fast path
                        // forwards only what it can take as sent.
                        fast: false,
                        tunnel: false,
                        ..head
                    }),
                    Ok(p) => p,
                    Err(e) => Parsed::Refuse(parse_error(e)),
                },
                None => Parsed::Refuse(parse_error(e)),
            }
        }
        Err(e) => Parsed::Refuse(parse_error(e)),
        Ok(p) => p,
    }
}

/// One `httparse` pass over `buf`, with the framing checks on a complete
/// head, which `visit` then sees.
fn parse(buf: &[u8], visit: &mut Visit<'_>) -> Result<Parsed, httparse::Error> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(buf, &mut headers)? {
        httparse::Status::Partial => Ok(Parsed::Partial),
        httparse::Status::Complete(len) => Ok(match framing(&req) {
            Ok((chunked, fast, tunnel)) => {
                let head = Head {
                    len,
                    chunked,
                    fast,
                    tunnel,
                };
                visit(buf, &req, &head);
                Parsed::Complete(head)
            }
            Err(r) => Parsed::Refuse(r),
        }),
    }
}

fn parse_error(e: httparse::Error) -> Refusal {
    let reason = match e {
        httparse::Error::TooManyHeaders => return TOO_MANY,
        httparse::Error::HeaderName => "invalid header field name",
        httparse::Error::HeaderValue => "invalid header field value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Version => "invalid HTTP version",
        httparse::Error::Token => "invalid method or request target",
        httparse::Error::Status => "invalid request line",
    };
    Refusal::new(400, reason)
}

/// Where the head ends in `buf` (just past the first blank line), if it
/// does.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// `buf` with its request target percent-encoded as Pingora does, or
/// `None` when there is nothing to encode (Pingora then refuses).
fn escape_target(buf: &[u8]) -> Option<Vec<u8>> {
    let re = REQUEST_LINE.as_ref()?;
    let uri = re.captures(buf)?.name("uri")?;
    let encoded: String = percent_encoding::percent_encode(uri.as_bytes(), URI_ESCAPE).collect();
    if encoded.len() == uri.len() {
        return None;
    }
    let mut out = Vec::with_capacity(buf.len() + encoded.len() - uri.len());
    out.extend_from_slice(&buf[..uri.start()]);
    out.extend_from_slice(encoded.as_bytes());
    out.extend_from_slice(&buf[uri.end()..]);
    Some(out)
}

/// The message-framing and authority rules Pingora applies to a parsed
/// head (RFC 9112 §6.1–6.3, RFC 9110 §8.6, RFC 9112 §3.2), plus one it
/// leaves out: an HTTP/1.1 request must carry `Host`. Returns whether the
/// body is chunked, and whether the request is inside the fast path's
/// envelope ([`Head::fast`]).
fn framing(req: &httparse::Request<'_, '_>) -> Result<(bool, bool, bool), Refusal> {
    let mut host: Option<&[u8]> = None;
    let mut last_te: Option<&[u8]> = None;
    let mut te_fields = 0usize;
    let mut length: Option<u64> = None;
    let mut bad_length = false;
    let (mut upgrade, mut expect, mut connection_upgrade) = (false, false, false);
    for h in req.headers.iter() {
        if name_is(h.name.as_bytes(), b"host") {
            if host.is_some() {
                return Err(Refusal::new(400, "multiple Host header fields"));
            }
            host = Some(h.value);
        } else if name_is(h.name.as_bytes(), b"transfer-encoding") {
            last_te = Some(h.value);
            te_fields += 1;
        } else if name_is(h.name.as_bytes(), b"content-length") {
            bad_length |= !merge_lengths(&mut length, h.value);
        } else if name_is(h.name.as_bytes(), b"upgrade") {
            upgrade = true;
        } else if name_is(h.name.as_bytes(), b"expect") {
            expect = true;
        } else if name_is(h.name.as_bytes(), b"connection") {
            connection_upgrade |= h
                .value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
        }
    }
    let plain = !expect
        && req.version == Some(1)
        && req.method.is_some_and(|m| m != "CONNECT")
        && req.path.is_some_and(plain_origin_form);
    let tunnel = plain
        && upgrade
        && connection_upgrade
        && req.method == Some("GET")
        && last_te.is_none()
        && length.unwrap_or(0) == 0;
    let fast = plain
        && !upgrade
        && match (last_te, length) {
            (None, _) => true,
            (Some(te), None) => te_fields == 1 && te.trim_ascii().eq_ignore_ascii_case(b"chunked"),
            (Some(_), Some(_)) => false,
        };
    if host.is_some_and(|h| h.contains(&b'@')) {
        return Err(Refusal::new(400, "userinfo in Host header"));
    }
    let chunked = match last_te {
        Some(_) if req.version == Some(0) => {
            return Err(Refusal::new(
                400,
                "Transfer-Encoding in an HTTP/1.0 request",
            ))
        }
        Some(te) if !last_coding(te).eq_ignore_ascii_case(b"chunked") => {
            return Err(Refusal::new(
                400,
                "Transfer-Encoding does not end in chunked",
            ))
        }
        // Chunked framing wins over any Content-Length, which Pingora drops.
        Some(_) => true,
        None if bad_length => {
            return Err(Refusal::new(400, "invalid or conflicting Content-Length"))
        }
        None => false,
    };
    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
    // code to any HTTP/1.1 request message that lacks a Host header field",
    // absolute form included. Pingora forwards such a request; routing it
    // by a host it does not name would be a guess.
    if host.is_none() && req.version == Some(1) {
        return Err(Refusal::new(400, "missing Host header"));
    }
    if fast || tunnel {
        // A target of plain URI characters is one the `http` builder in
        // `authority` accepts: skip building it (an allocation) per request.
        return Ok((chunked, fast, tunnel));
    }
    authority(req, host).map(|()| (chunked, false, false))
}

/// An origin-form target (`/path?query`) made only of characters every
/// parser on the way reads the same: RFC 3986's unreserved and
/// sub-delimiters, `:`, `@`, `/`, `?` and `%`. No fragment, no space, no
/// byte above 0x7E, nothing `http`'s URI parser refuses.
fn plain_origin_form(target: &str) -> bool {
    target.starts_with('/')
        && target.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                        | b':'
                        | b'@'
                        | b'/'
                        | b'?'
                        | b'%'
                )
        })
}

/// Folds one `Content-Length` line into `acc`; false when it is not a
/// single number, or when a value was seen before. Pingora would accept
/// repeats of one value (`5, 5`) and forward them as sent, leaving the
/// upstream to make sense of a list; like nginx, Switchyard refuses them.
fn merge_lengths(acc: &mut Option<u64>, value: &[u8]) -> bool {
    let value = value.trim_ascii();
    if acc.is_some() || value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return false;
    }
    match std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(n) => {
            *acc = Some(n);
            true
        }
        None => false,
    }
}

/// The last transfer coding named in a `Transfer-Encoding` value.
fn last_coding(value: &[u8]) -> &[u8] {
    let last = match value.iter().rposition(|&b| b == b',') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    last.trim_ascii()
}

/// The request target must become a URI the way Pingora turns it into one
/// (`RequestHeader::set_raw_path`): an origin-form target (`/…`) is checked
/// by the same `http` builder, cheaply; anything else (absolute form,
/// `*`, `?x`, garbage) is rare, so Pingora's own request header is built
/// and Pingora's own authority check asked (the authority must be
/// unambiguous, agree with `Host` and carry no userinfo).
fn authority(req: &httparse::Request<'_, '_>, host: Option<&[u8]>) -> Result<(), Refusal> {
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return Ok(());
    };
    let invalid = Refusal::new(400, "invalid request target");
    if path.starts_with('/') {
        // Origin form, the common case. A fragment is never part of the
        // target; Pingora drops it first.
        let target = path.split('#').next().unwrap_or_default();
        return http::Uri::builder()
            .path_and_query(target)
            .build()
            .map(drop)
            .map_err(|_| invalid);
    }
    let mut header = pingora_http::RequestHeader::build(method, path.as_bytes(), None)
        .map_err(|_| invalid.clone())?;
    if let Some(h) = host {
        let value = http::HeaderValue::from_bytes(h).map_err(|_| invalid.clone())?;
        header
            .insert_header(http::header::HOST, value)
            .map_err(|_| invalid.clone())?;
    }
    pingora_core::protocols::http::authority::validate_request_authority(&header)
        .map_err(|_| Refusal::new(400, "request target and Host disagree"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 8192;

    fn refused(head: &str) -> Refusal {
        match scan(head.as_bytes(), MAX) {
            Verdict::Refuse(r) => r,
            v => panic!("{head:?}: expected a refusal, got {v:?}"),
        }
    }

    #[test]
    fn ordinary_heads_pass_and_partial_ones_wait() {
        for head in [
            "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            "\r\nGET /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
            "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length:  3 \r\n\r\nabc",
            "POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET http://a:80/x HTTP/1.1\r\nHost: a:80\r\n\r\n",
            "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.0\n\n",
        ] {
            assert!(
                matches!(scan(head.as_bytes(), MAX), Verdict::Complete(_)),
                "{head:?}"
            );
        }
        for head in ["", "GE", "GET / HTTP/1.1\r\nHost: a\r\n", "GET /a b"] {
            assert_eq!(scan(head.as_bytes(), MAX), Verdict::Partial, "{head:?}");
        }
    }

    #[test]
    fn framing_that_could_smuggle_is_refused() {
        for (head, reason) in [
            (
                "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                "invalid or conflicting Content-Length",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n",
                "invalid or conflicting Content-Length",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n",
                "invalid or conflicting Content-Length",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
                "invalid or conflicting Content-Length",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                "invalid or conflicting Content-Length",
            ),
            (
                "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
                "invalid or conflicting Content-Length",
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                "Transfer-Encoding does not end in chunked",
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
                "Transfer-Encoding does not end in chunked",
            ),
            (
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                "Transfer-Encoding in an HTTP/1.0 request",
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                "multiple Host header fields",
            ),
            (
                "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n",
                "userinfo in Host header",
            ),
            (
                "GET http://a/x HTTP/1.1\r\nHost: b\r\n\r\n",
                "request target and Host disagree",
            ),
        ] {
            assert_eq!(refused(head), Refusal::new(400, reason), "{head:?}");
        }
    }

    /// RFC 9112 §3.2: an HTTP/1.1 request without `Host` is a 400, whatever
    /// its target's form; HTTP/1.0 needs none.
    #[test]
    fn http11_needs_a_host() {
        for head in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET /x HTTP/1.1\r\nX-Host: a\r\n\r\n",
            "GET http://a/x HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                refused(head),
                Refusal::new(400, "missing Host header"),
                "{head:?}"
            );
        }
        assert!(matches!(
            scan(b"GET / HTTP/1.0\r\n\r\n", MAX),
            Verdict::Complete(_)
        ));
    }

    /// The verdict says where the head ends and whether a chunked body
    /// follows, so the body can be checked as it arrives.
    #[test]
    fn complete_heads_say_their_length_and_framing() {
        let chunked = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n";
        let plain = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx";
        let escaped = "GET /a b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0";
        for (head, len, is_chunked, fast) in [
            (chunked, chunked.len() - 3, true, true),
            (plain, plain.len() - 1, false, true),
            (escaped, escaped.len() - 1, true, false),
        ] {
            assert_eq!(
                scan(head.as_bytes(), MAX),
                Verdict::Complete(Head {
                    len,
                    chunked: is_chunked,
                    fast,
                    tunnel: false,
                }),
                "{head:?}"
            );
        }
    }

    /// A WebSocket-style upgrade of a plain request is tunnelled by the
    /// fast path; any other upgrade goes to Pingora.
    #[test]
    fn the_tunnel_envelope() {
        let tunnel = |head: &str| match scan(head.as_bytes(), MAX) {
            Verdict::Complete(h) => (h.tunnel, h.fast),
            v => panic!("{head:?}: {v:?}"),
        };
        let ws = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(tunnel(ws), (true, false));
        for head in [
            "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
            "POST /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 3\r\n\r\n",
            "GET /ws HTTP/1.0\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nExpect: 100-continue\r\n\r\n",
        ] {
            assert_eq!(tunnel(head), (false, false), "{head:?}");
        }
    }

    /// The fast path takes plain HTTP/1.1 requests only; everything else
    /// is accepted as before and goes to Pingora.
    #[test]
    fn the_fast_envelope() {
        let fast = |head: &str| match scan(head.as_bytes(), MAX) {
            Verdict::Complete(h) => h.fast,
            v => panic!("{head:?}: {v:?}"),
        };
        assert!(fast("GET /a/b?c=d&e=%20 HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(fast(
            "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
        ));
        assert!(fast(
            "POST /a HTTP/1.1\r\nHost: a\r\ntransfer-encoding: Chunked\r\n\r\n"
        ));
        for head in [
            "GET /a HTTP/1.0\r\n\r\n",
            "GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a\"b HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /a{b} HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            "POST /a HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
            "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        ] {
            assert!(!fast(head), "{head:?}");
        }
    }

    #[test]
    fn malformed_heads_are_refused_with_their_reason() {
        for (head, reason) in [
            ("G@T / HTTP/1.1\r\n\r\n", "invalid method or request target"),
            (
                "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
                "invalid header field name",
            ),
            (
                "GET / HTTP/1.1\r\nX : y\r\n\r\n",
                "invalid header field name",
            ),
            (
                "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
                "invalid header field name",
            ),
            ("GET / HTTP/9.9\r\n\r\n", "invalid HTTP version"),
            // HTTP/0.9: no version at all.
            ("GET /\r\n\r\n", "invalid method or request target"),
        ] {
            assert_eq!(refused(head), Refusal::new(400, reason), "{head:?}");
        }
    }

    #[test]
    fn size_limits_name_what_was_too_long() {
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX));
        assert_eq!(refused(&long_line[..MAX + 10]), LINE_TOO_LONG);
        assert_eq!(
            refused(&format!("{long_line}Host: a\r\n\r\n")),
            LINE_TOO_LONG
        );
        let long_head = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n", "a".repeat(MAX));
        assert_eq!(refused(&long_head), TOO_LARGE);
        let complete = format!("{long_head}\r\n");
        assert_eq!(refused(&complete), TOO_LARGE);
        let many: String = (0..300).map(|i| format!("X-{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert_eq!(scan(many.as_bytes(), 1 << 20), Verdict::Refuse(TOO_MANY));
        // A head exactly at the limit is fine.
        let exact = "GET / HTTP/1.0\r\n\r\n";
        assert!(matches!(
            scan(exact.as_bytes(), exact.len()),
            Verdict::Complete(_)
        ));
        assert_eq!(
            scan(exact.as_bytes(), exact.len() - 1),
            Verdict::Refuse(TOO_LARGE)
        );
    }
}

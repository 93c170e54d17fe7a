//! An upstream response head judged the way the fast path judges it
//! (`parse_response` in crates/server/src/fast/mod.rs): `httparse` into
//! 128 fields, `check_line_endings` on the head, then `framing`, for a
//! request that was and one that was not a `HEAD`. On arbitrary bytes it
//! never panics and agrees with a reference written here from RFC 9112:
//!
//! - `check_line_endings` refuses exactly the bytes with a CR not followed
//!   by LF or an LF not preceded by CR;
//! - a head passes both checks exactly when it is a status line and field
//!   lines (`token ":" OWS value OWS`, no obs-fold, no whitespace before
//!   the colon) ending in CRLF only, within 128 fields; httparse then saw
//!   the same length, version, status and fields as the reference;
//! - `framing` answers exactly what the reference derives from those
//!   fields: `Length(n)` only when every `Content-Length` value is `n`;
//!   `Chunked` only for one `Transfer-Encoding` field that is `chunked`;
//!   `Empty` for HEAD, 1xx, 204 and 304; reusable never for a body that
//!   runs until close, HTTP/1.0, a `close` token in `Connection` or chunked
//!   with a `Content-Length`. A refusal names one of the rules broken.
//!
//! The input is the bytes read from the upstream: the head, perhaps with
//! body bytes after it.

#![no_main]

use httparse::{Response, Status, EMPTY_HEADER};
use libfuzzer_sys::fuzz_target;
use switchyard_h1::response::{check_line_endings, framing, BodyLength, Framing, FramingError};

/// The fast path's field array.
const MAX_FIELDS: usize = 128;

// ---------------------------------------------------------------------------
// The reference.
// ---------------------------------------------------------------------------

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// HTAB, SP, VCHAR, obs-text: field values and the reason phrase.
fn is_text(b: u8) -> bool {
    b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80
}

/// Trims OWS (SP and HTAB) at both ends.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether every CR is followed by LF and every LF preceded by CR.
fn crlf_only(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\r' if s.get(i + 1) == Some(&b'\n') => i += 2,
            b'\r' | b'\n' => return false,
            _ => i += 1,
        }
    }
    true
}

struct Head<'a> {
    len: usize,
    http10: bool,
    status: u16,
    fields: Vec<(&'a [u8], &'a [u8])>,
}

/// The line at `at`: its bytes before the first CR or LF, which must be a
/// CRLF, and the offset after it.
fn line(s: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = &s[at..];
    let end = rest.iter().position(|&b| b == b'\r' || b == b'\n')?;
    (rest[end..].starts_with(b"\r\n")).then(|| (&rest[..end], at + end + 2))
}

/// A complete head at the start of `s`, with CRLF line endings only:
/// `status-line *( field-line CRLF ) CRLF` (RFC 9112 §2.1, §4, §5).
/// Empty lines before the status line are skipped, as httparse does.
fn reference_head(s: &[u8]) -> Option<Head<'_>> {
    let mut at = 0;
    let status_line = loop {
        let (l, next) = line(s, at)?;
        at = next;
        if !l.is_empty() {
            break l;
        }
    };
    // HTTP-version SP 3DIGIT [ SP reason-phrase ]; httparse also takes a
    // status line that ends right after the code.
    let http10 = match status_line.get(..9)? {
        b"HTTP/1.0 " => true,
        b"HTTP/1.1 " => false,
        _ => return None,
    };
    let code = status_line.get(9..12)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match &status_line[12..] {
        [] => {}
        [b' ', reason @ ..] if reason.iter().all(|&b| is_text(b)) => {}
        _ => return None,
    }
    let mut fields = Vec::new();
    loop {
        let (l, next) = line(s, at)?;
        at = next;
        if l.is_empty() {
            return Some(Head {
                len: at,
                http10,
                status,
                fields,
            });
        }
        let colon = l.iter().position(|&b| b == b':')?;
        let (name, value) = (&l[..colon], &l[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return None;
        }
        if !value.iter().all(|&b| is_text(b)) {
            return None;
        }
        fields.push((name, trim_ows(value)));
    }
}

/// `1*DIGIT` as a number; `None` for anything else or an overflow.
fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Every comma-separated `Content-Length` value, OWS trimmed.
fn content_lengths<'h, 'a>(head: &'h Head<'a>) -> impl Iterator<Item = &'a [u8]> + 'h {
    named(&head.fields, "content-length").flat_map(|v| v.split(|&b| b == b',').map(trim_ows))
}

fn named<'h, 'a>(
    fields: &'h [(&'a [u8], &'a [u8])],
    name: &'h str,
) -> impl Iterator<Item = &'a [u8]> + 'h {
    fields
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|&(_, v)| v)
}

/// A `close` token in a `Connection` field (RFC 9110 §7.6.1).
fn says_close(head: &Head<'_>) -> bool {
    named(&head.fields, "connection").any(|v| {
        v.split(|&b| b == b',')
            .any(|t| trim_ows(t).eq_ignore_ascii_case(b"close"))
    })
}

/// RFC 9112 §6.3 read strictly, from the reference's fields. On a refusal,
/// every rule the head breaks.
fn reference_framing(head: &Head<'_>, head_request: bool) -> Result<Framing, Vec<FramingError>> {
    let mut broken = Vec::new();
    // Content-Length = 1#DIGIT, all values equal (RFC 9110 §8.6).
    let lengths: Vec<Option<u64>> = content_lengths(head).map(number).collect();
    if lengths.contains(&None) || lengths.windows(2).any(|w| w[0] != w[1]) {
        broken.push(FramingError::BadContentLength);
    }
    let codings: Vec<&[u8]> = named(&head.fields, "transfer-encoding").collect();
    let chunked = match codings[..] {
        [] => false,
        [one] if one.eq_ignore_ascii_case(b"chunked") => true,
        _ => {
            broken.push(FramingError::BadTransferEncoding);
            true
        }
    };
    if !codings.is_empty() && head.http10 {
        broken.push(FramingError::TransferEncodingInHttp10);
    }
    if !broken.is_empty() {
        return Err(broken);
    }
    let close = head.http10 || says_close(head);
    let bodiless =
        head_request || head.status / 100 == 1 || head.status == 204 || head.status == 304;
    let body = if bodiless {
        BodyLength::Empty
    } else if chunked {
        BodyLength::Chunked
    } else if let Some(&Some(n)) = lengths.first() {
        BodyLength::Length(n)
    } else {
        BodyLength::UntilClose
    };
    let reusable = !close
        && match body {
            BodyLength::UntilClose => false,
            BodyLength::Chunked => lengths.is_empty(),
            BodyLength::Empty | BodyLength::Length(_) => true,
        };
    Ok(Framing { body, reusable })
}

// ---------------------------------------------------------------------------
// The checks.
// ---------------------------------------------------------------------------

fn check_framing(head: &Head<'_>, got: Result<Framing, FramingError>, head_request: bool) {
    // The rules in the module docs, on the answer itself.
    if let Ok(f) = got {
        if let BodyLength::Length(n) = f.body {
            assert!(content_lengths(head).all(|v| number(v) == Some(n)));
        }
        if f.body == BodyLength::Chunked {
            let codings: Vec<_> = named(&head.fields, "transfer-encoding").collect();
            assert!(matches!(codings[..], [c] if c.eq_ignore_ascii_case(b"chunked")));
        }
        if f.reusable {
            assert!(f.body != BodyLength::UntilClose && !head.http10);
            assert!(!says_close(head));
        }
        let bodiless =
            head_request || (100..200).contains(&head.status) || matches!(head.status, 204 | 304);
        assert_eq!(bodiless, f.body == BodyLength::Empty);
    }
    match (got, reference_framing(head, head_request)) {
        (Ok(got), Ok(want)) => assert_eq!(got, want),
        (Err(got), Err(broken)) => assert!(
            broken.contains(&got),
            "refused with {got:?}, but the rules broken are {broken:?}"
        ),
        (got, want) => panic!("framing {got:?}, reference {want:?}"),
    }
}

fuzz_target!(|up: &[u8]| {
    assert_eq!(
        check_line_endings(up).is_ok(),
        crlf_only(up),
        "line endings"
    );

    let mut fields = [EMPTY_HEADER; MAX_FIELDS];
    let mut response = Response::new(&mut fields);
    let parsed = response.parse(up);
    let want = reference_head(up);
    let len = match (parsed, &want) {
        (Ok(Status::Complete(len)), _) => len,
        (Err(httparse::Error::TooManyHeaders), Some(head)) if head.fields.len() > MAX_FIELDS => {
            return
        }
        (_, Some(head)) => panic!(
            "httparse {parsed:?} on a valid head of {} bytes, {} fields",
            head.len,
            head.fields.len()
        ),
        (_, None) => return,
    };
    let status = response.code.unwrap_or(0);
    let http10 = response.version == Some(0);
    let fields = || response.headers.iter().map(|h| (h.name, h.value));
    // Whatever httparse completes, framing never panics on it.
    for head_request in [false, true] {
        let _ = framing(status, http10, fields(), head_request);
    }
    let head_ok = check_line_endings(&up[..len]).is_ok();
    assert_eq!(head_ok, crlf_only(&up[..len]));
    let Some(head) = want else {
        assert!(!head_ok, "the fast path takes a head the reference refuses");
        return;
    };
    assert!(head_ok, "a valid head refused for its line endings");
    assert_eq!(len, head.len, "head length");
    assert_eq!(http10, head.http10, "version");
    assert_eq!(status, head.status, "status");
    let seen: Vec<(&[u8], &[u8])> = response
        .headers
        .iter()
        .map(|h| (h.name.as_bytes(), h.value))
        .collect();
    assert_eq!(seen, head.fields, "fields");

    for head_request in [false, true] {
        let got = framing(status, http10, fields(), head_request);
        check_framing(&head, got, head_request);
    }
});

//! Bytes the fast path writes: header lines, chunk framing, the `Date`
//! field, and which fields are hop-by-hop. No I/O, no allocation beyond
//! the output buffer's own growth.

use std::cell::RefCell;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Fields that describe one connection, not the message (RFC 9110
/// §7.6.1), plus the framing fields the fast path writes itself. Pingora's
/// list (`pingora-proxy/src/proxy_common.rs`) minus nothing.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// Whether a field named `name` stays on its hop: a hop-by-hop field, or
/// one the message's `Connection` field (`connection`, every line's value)
/// names.
pub(crate) fn is_hop_by_hop<'v>(
    name: &str,
    connection: impl Iterator<Item = &'v [u8]> + Clone,
) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || connection
            .clone()
            .any(|v| switchyard_h1::response::has_token(v, name.as_bytes()))
}

/// Appends `name: value\r\n`.
pub(crate) fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends one chunk holding `data` (nothing for empty data, which would
/// read as the last chunk).
pub(crate) fn chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    // Writing to a Vec cannot fail.
    // Upper-case hex, as Pingora writes it.
    let _ = write!(out, "{:X}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk and the empty trailer section.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Appends a decimal number.
pub(crate) fn number(out: &mut Vec<u8>, n: u64) {
    let _ = write!(out, "{n}");
}

thread_local! {
    /// The `Date` value of the current second, formatted once per second
    /// per thread.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Appends `Date: <IMF-fixdate>\r\n` for now.
pub(crate) fn date(out: &mut Vec<u8>) {
    date_named(out, b"Date");
}

/// Appends the `Date` field for now, its name spelled `name`.
pub(crate) fn date_named(out: &mut Vec<u8>, name: &[u8]) {
    let now = SystemTime::now();
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let text = httpdate::fmt_http_date(now);
            if text.len() == 29 {
                cached.1.copy_from_slice(text.as_bytes());
                cached.0 = secs;
            }
        }
        field(out, name, &cached.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_and_those_connection_names() {
        let conn: [&[u8]; 2] = [b"keep-alive, X-Secret", b"other"];
        for name in ["Connection", "TE", "transfer-encoding", "x-secret", "OTHER"] {
            assert!(is_hop_by_hop(name, conn.iter().copied()), "{name}");
        }
        for name in ["Host", "X-Secret-2", "Content-Length"] {
            assert!(!is_hop_by_hop(name, conn.iter().copied()), "{name}");
        }
    }

    #[test]
    fn chunks_are_framed_in_hex_and_empty_data_writes_nothing() {
        let mut out = Vec::new();
        chunk(&mut out, &[b'a'; 26]);
        chunk(&mut out, b"");
        out.extend_from_slice(LAST_CHUNK);
        let mut want = b"1A\r\n".to_vec();
        want.extend_from_slice(&[b'a'; 26]);
        want.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(out, want);
    }

    #[test]
    fn the_date_is_an_imf_fixdate() {
        let mut out = Vec::new();
        date(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("Date: ") && text.ends_with(" GMT\r\n"),
            "{text}"
        );
        assert_eq!(out.len(), "Date: ".len() + 29 + 2);
    }
}

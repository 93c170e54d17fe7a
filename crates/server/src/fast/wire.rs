//! Bytes the fast path writes: header lines, chunk framing, the `Date`
//! field, and which fields are hop-by-hop. No I/O, no allocation beyond
//! the output buffer's own growth.

use std::cell::RefCell;
use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

/// Fields that describe one connection, not the message (RFC 9110
/// §7.6.1), plus the framing fields the fast path writes itself. Pingora's
/// list (`pingora-proxy/src/proxy_common.rs`) minus nothing. [`listed`]
/// matches them; this list is what its test holds it to.
#[cfg(test)]
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

/// Whether `name` is a field that describes one connection, not the
/// message (RFC 9110 §7.6.1), or one of the framing fields the fast path
/// writes itself: Pingora's list. Matched by length first: most names are
/// ruled out without comparing a byte.
fn listed(name: &str) -> bool {
    let candidates: &[&str] = match name.len() {
        2 => &["te"],
        7 => &["trailer", "upgrade"],
        10 => &["connection", "keep-alive"],
        14 => &["http2-settings"],
        16 => &["proxy-connection"],
        17 => &["transfer-encoding"],
        _ => &[],
    };
    candidates
        .iter()
        .any(|h| switchyard_h1::name::name_is(name.as_bytes(), h.as_bytes()))
}

/// Tokens gathered from a head's `Connection` fields, at most this many;
/// a head with more falls back to reading the fields again per name.
const GATHERED: usize = 8;

/// The fields of one head that stay on their hop: those [`listed`] and
/// whatever its `Connection` fields name. The `Connection` values are
/// split once per head rather than once per field.
pub(crate) struct HopByHop<'v, I> {
    connection: I,
    tokens: [&'v [u8]; GATHERED],
    /// Tokens gathered; `None` when there were more than [`GATHERED`].
    count: Option<usize>,
}

impl<'v, I: Iterator<Item = &'v [u8]> + Clone> HopByHop<'v, I> {
    /// `connection` yields the value of every `Connection` field.
    pub(crate) fn new(connection: I) -> Self {
        let mut tokens: [&'v [u8]; GATHERED] = [b""; GATHERED];
        let mut count = Some(0);
        'values: for value in connection.clone() {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                match count {
                    _ if token.is_empty() => {}
                    Some(n) if n < GATHERED => {
                        tokens[n] = token;
                        count = Some(n + 1);
                    }
                    _ => {
                        count = None;
                        break 'values;
                    }
                }
            }
        }
        HopByHop {
            connection,
            tokens,
            count,
        }
    }

    /// Whether a `Connection` field lists `token` (`close`, say).
    pub(crate) fn lists(&self, token: &[u8]) -> bool {
        match self.count {
            Some(n) => self.tokens[..n]
                .iter()
                .any(|t| t.eq_ignore_ascii_case(token)),
            None => self
                .connection
                .clone()
                .any(|v| switchyard_h1::response::has_token(v, token)),
        }
    }

    /// Whether the field named `name` stays on its hop.
    pub(crate) fn contains(&self, name: &str) -> bool {
        listed(name) || self.lists(name.as_bytes())
    }
}

/// Appends `name: value\r\n`.
pub(crate) fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes a head's fields to an output buffer in order, passing each run
/// of fields kept as they arrived on in one copy: most fields go through
/// untouched, and a copy per field cost more than the rest of its handling.
/// A field is copied whole from the head only where it reads exactly as
/// [`field`] would write it (`name: value\r\n`), so the bytes out are the
/// same either way.
pub(crate) struct Fields<'h> {
    head: &'h [u8],
    /// Fields kept and not yet copied: a range of `head`.
    run: std::ops::Range<usize>,
}

impl<'h> Fields<'h> {
    /// For fields parsed from `head`.
    pub(crate) fn new(head: &'h [u8]) -> Self {
        Fields { head, run: 0..0 }
    }

    /// Passes on a field parsed from the head, as it is.
    pub(crate) fn keep(&mut self, out: &mut Vec<u8>, name: &str, value: &[u8]) {
        match self.line(name.as_bytes(), value) {
            Some(line) if !self.run.is_empty() && line.start == self.run.end => {
                self.run.end = line.end;
            }
            Some(line) => {
                self.flush(out);
                self.run = line;
            }
            None => {
                self.flush(out);
                field(out, name.as_bytes(), value);
            }
        }
    }

    /// Writes `name: value\r\n` after the fields kept so far.
    pub(crate) fn write(&mut self, out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
        self.flush(out);
        field(out, name, value);
    }

    /// Copies the fields kept so far; call it before writing to `out`
    /// directly, and at the end.
    pub(crate) fn flush(&mut self, out: &mut Vec<u8>) {
        if !self.run.is_empty() {
            out.extend_from_slice(&self.head[self.run.clone()]);
            self.run = 0..0;
        }
    }

    /// Where the field whose name and value are these slices of the head
    /// lies in it, if it is spelled `name: value\r\n` there. The slices
    /// are the head's own bytes (found by their addresses), so only the
    /// bytes between and after them need a look.
    fn line(&self, name: &[u8], value: &[u8]) -> Option<std::ops::Range<usize>> {
        let base = self.head.as_ptr() as usize;
        let start = (name.as_ptr() as usize).wrapping_sub(base);
        let colon = start.wrapping_add(name.len());
        // The value must start right after `: `: compared by address, the
        // two bytes between are then read from the head.
        if value.as_ptr() as usize != base.wrapping_add(colon).wrapping_add(2) {
            return None;
        }
        let end = colon.checked_add(value.len() + 4)?;
        match self.head.get(colon..end)? {
            [b':', b' ', .., b'\r', b'\n'] if start < colon || name.is_empty() => Some(start..end),
            _ => None,
        }
    }
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
    /// The `Date` field of the current second, `Date: <IMF-fixdate>\r\n`,
    /// formatted once per second per thread.
    static DATE: RefCell<(u64, [u8; DATE_LINE])> =
        const { RefCell::new((u64::MAX, *b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n")) };
}

/// `Date: ` + an IMF-fixdate (29 bytes) + CRLF.
const DATE_LINE: usize = 37;
/// Where the date starts in the line.
const DATE_AT: usize = 6;

/// Appends `Date: <IMF-fixdate>\r\n` for now.
pub(crate) fn date(out: &mut Vec<u8>) {
    date_named(out, b"Date");
}

/// Appends the `Date` field for now, its name spelled `name`. The second
/// comes from the coarse clock (`switchyard_sys::coarse_unix_seconds`): a
/// `Date` a few milliseconds late at a second's turn, for a cheaper read
/// on every response.
pub(crate) fn date_named(out: &mut Vec<u8>, name: &[u8]) {
    let secs = switchyard_sys::coarse_unix_seconds();
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
            if let Some(slot) = cached.1.get_mut(DATE_AT..DATE_AT + 29) {
                if text.len() == 29 {
                    slot.copy_from_slice(text.as_bytes());
                    cached.0 = secs;
                }
            }
        }
        match cached.1.get(DATE_AT..DATE_AT + 29) {
            Some(value) if name != b"Date" => field(out, name, value),
            _ => out.extend_from_slice(&cached.1),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_and_those_connection_names() {
        let conn: [&[u8]; 2] = [b"keep-alive, X-Secret", b"other"];
        let hop = HopByHop::new(conn.iter().copied());
        for name in ["Connection", "TE", "transfer-encoding", "x-secret", "OTHER"] {
            assert!(hop.contains(name), "{name}");
        }
        for name in ["Host", "X-Secret-2", "Content-Length", "Close"] {
            assert!(!hop.contains(name), "{name}");
        }
        assert!(!hop.lists(b"close") && hop.lists(b"Keep-Alive"));
    }

    #[test]
    fn the_length_switch_lists_exactly_the_hop_by_hop_fields() {
        for name in HOP_BY_HOP {
            assert!(listed(name) && listed(&name.to_ascii_uppercase()), "{name}");
        }
        for name in [
            "t",
            "tf",
            "trailers",
            "upgrade2",
            "connectio",
            "x-connection",
        ] {
            assert!(!listed(name), "{name}");
        }
    }

    #[test]
    fn more_connection_tokens_than_gathered_are_still_all_seen() {
        let many: [&[u8]; 2] = [b"a, b, c, d, e, f, g", b" , h, i, close"];
        let hop = HopByHop::new(many.iter().copied());
        assert_eq!(hop.count, None);
        for name in ["a", "h", "I", "close"] {
            assert!(hop.contains(name), "{name}");
        }
        assert!(!hop.contains("j") && hop.lists(b"close"));
        let few: [&[u8]; 1] = [b" ,, a ,b,"];
        let hop = HopByHop::new(few.iter().copied());
        assert_eq!(hop.count, Some(2));
        assert!(hop.contains("A") && hop.contains("b") && !hop.contains(""));
    }

    #[test]
    fn kept_fields_are_copied_as_runs_and_read_as_written() {
        // On the heap: no other slice in this test can lie inside it.
        let head =
            b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC:3\r\nD: 4 \r\nE: 5\r\nF: \r\n\r\n".to_vec();
        let head = &head[..];
        let mut fields = [httparse::EMPTY_HEADER; 8];
        let mut req = httparse::Request::new(&mut fields);
        assert!(req.parse(head).is_ok());
        let mut out = Vec::new();
        let mut w = Fields::new(head);
        for h in req.headers.iter() {
            // A run of two (A, B) is one range; C and D are not spelled as
            // written (no space, a trailing space) and are written anew.
            if h.name == "B" {
                assert_eq!(w.line(h.name.as_bytes(), h.value), Some(22..28));
            }
            w.keep(&mut out, h.name, h.value);
            if h.name == "D" {
                w.write(&mut out, b"X", b"y");
            }
        }
        w.flush(&mut out);
        assert_eq!(
            out,
            b"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nX: y\r\nE: 5\r\nF: \r\n"
        );
        // Slices from elsewhere are never taken for the head's bytes.
        let mut w = Fields::new(head);
        let mut out = Vec::new();
        w.keep(&mut out, "A", b"1");
        w.flush(&mut out);
        assert_eq!(out, b"A: 1\r\n");
        assert_eq!(w.line(b"A", b"1"), None);
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
        let value = &text["Date: ".len()..text.len() - 2];
        let when = httpdate::parse_http_date(value).unwrap_or_else(|e| panic!("{value}: {e}"));
        let behind = std::time::SystemTime::now()
            .duration_since(when)
            .unwrap_or_default();
        assert!(behind < Duration::from_secs(2), "{value} is {behind:?} old");
    }

    /// The upstream's spelling of the name is kept; the value is the same.
    #[test]
    fn the_date_keeps_the_name_given() {
        // Twice at most: a second may turn between the two calls once.
        let agree = (0..2).any(|_| {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            date_named(&mut a, b"date");
            date(&mut b);
            assert!(a.starts_with(b"date: "), "{}", String::from_utf8_lossy(&a));
            a[4..] == b[4..]
        });
        assert!(agree, "the two spellings carry different dates");
    }
}

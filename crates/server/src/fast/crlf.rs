//! The CRLF-only rule for a response head `httparse` has accepted, checked
//! where lines end instead of over every byte.
//!
//! `httparse` refuses a CR that is not followed by LF anywhere in a head,
//! and ends a line only at LF. So in a head it accepted, every CR is half
//! of a CRLF, and a bare LF can only be a line end: the end of a blank
//! line it skipped before the status line, of the status line, of a field
//! line, or of the final blank line. Each line end but the last comes
//! right before a field name or the final blank line. [`lines_end_in_crlf`]
//! looks at exactly those places: a few comparisons per field instead of a
//! scan of the whole head, which cost a measurable share of a request. A
//! head it does not vouch for is scanned byte by byte
//! ([`switchyard_h1::response::check_line_endings`]), which decides.

/// How the fast path parses response heads: `httparse`'s defaults, which
/// refuse obsolete line folding. The reasoning above depends on that (a
/// folded line ends inside a field value, where [`lines_end_in_crlf`] does
/// not look), so the parser and the tests of this module share this one
/// configuration.
pub(crate) fn response_parser() -> httparse::ParserConfig {
    httparse::ParserConfig::default()
}

/// Whether a head that `httparse` parsed whole, to its blank line, ends
/// every line in CRLF: it starts with its status line (no blank lines
/// before it), ends in `\r\n\r\n`, and has `\r\n` just before each field
/// name in `names` (the parsed names, slices of `head`). `false` means
/// "not vouched for", not "bare LF": the byte scan then decides.
pub(crate) fn lines_end_in_crlf<'h>(head: &[u8], names: impl Iterator<Item = &'h str>) -> bool {
    let base = head.as_ptr() as usize;
    if matches!(head.first(), Some(b'\r' | b'\n')) || !head.ends_with(b"\r\n\r\n") {
        return false;
    }
    names.into_iter().all(|name| {
        // Where the name starts in `head`; a name from elsewhere (never)
        // lands out of range and is not vouched for.
        let at = (name.as_ptr() as usize).wrapping_sub(base);
        at >= 2 && head.get(at - 2..at) == Some(&b"\r\n"[..])
    })
}

#[cfg(test)]
mod tests {
    use std::mem::MaybeUninit;

    use super::{lines_end_in_crlf, response_parser};
    use switchyard_h1::response::check_line_endings;

    /// The length of the head the fast path's parser accepts at the start
    /// of `bytes`, and whether [`lines_end_in_crlf`] vouches for it, run
    /// as the fast path runs it (with the parsed names, slices of `bytes`:
    /// the check compares addresses).
    fn vouches(bytes: &[u8]) -> Option<(usize, bool)> {
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 16];
        let mut resp = httparse::Response::new(&mut []);
        match response_parser().parse_response_with_uninit_headers(&mut resp, bytes, &mut fields) {
            Ok(httparse::Status::Complete(len)) => Some((
                len,
                lines_end_in_crlf(&bytes[..len], resp.headers.iter().map(|h| h.name)),
            )),
            _ => None,
        }
    }

    #[test]
    fn crlf_heads_are_vouched_for() {
        for head in [
            &b"HTTP/1.1 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 204\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nDate: x\r\n\r\nhi",
            b"HTTP/1.1 200 OK\r\nA:\r\nB: \r\n\r\n",
        ] {
            assert_eq!(
                vouches(head).map(|(_, v)| v),
                Some(true),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    /// Every place a bare LF can end a line in a head httparse accepts.
    #[test]
    fn a_bare_lf_anywhere_is_not_vouched_for() {
        for head in [
            &b"HTTP/1.1 200 OK\nA: b\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nA: b\nB: c\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: b\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: b\r\n\n",
            b"HTTP/1.1 200 OK\n\n",
            b"HTTP/1.1 200 OK\n\r\n",
            b"\nHTTP/1.1 200 OK\r\n\r\n",
            b"\r\nHTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200\nA: b\r\n\r\n",
        ] {
            assert_eq!(
                vouches(head).map(|(_, v)| v),
                Some(false),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    /// What the vouching relies on: the parser refuses a folded field
    /// line, whose line end sits inside a value.
    #[test]
    fn folded_lines_are_refused_by_the_parser() {
        for head in [
            &b"HTTP/1.1 200 OK\r\nA: b\n c\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nA: b\r\n\tc\r\n\r\n",
        ] {
            assert_eq!(vouches(head), None, "{:?}", String::from_utf8_lossy(head));
        }
    }

    /// A blank line before the status line is not vouched for, yet is
    /// CRLF-only: the byte scan lets it through, as before.
    #[test]
    fn what_is_not_vouched_for_goes_to_the_byte_scan() {
        let head = b"\r\nHTTP/1.1 200 OK\r\n\r\n";
        assert_eq!(vouches(head).map(|(_, v)| v), Some(false));
        assert_eq!(check_line_endings(head), Ok(()));
    }

    /// Line endings httparse might take or refuse, good ones more often.
    fn ending() -> impl proptest::strategy::Strategy<Value = &'static [u8]> {
        proptest::sample::select(vec![
            &b"\r\n"[..],
            b"\r\n",
            b"\r\n",
            b"\r\n",
            b"\n",
            b"\r",
            b"\r\r\n",
            b"\n\r",
            b"",
        ])
    }

    /// Status lines, field lines and stray bytes.
    fn line() -> impl proptest::strategy::Strategy<Value = &'static [u8]> {
        proptest::sample::select(vec![
            &b"Content-Length: 0"[..],
            b"A: b",
            b"A:",
            b"X-Y: \t v \t",
            b" folded",
            b"a",
            b"HTTP/1.1 200 OK",
        ])
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        /// Whatever httparse accepts: a head vouched for is CRLF-only by
        /// the byte scan (which `switchyard-h1`'s tests hold to the
        /// byte-by-byte rule), so vouching or else scanning judges every
        /// head as the scan alone would.
        #[test]
        fn vouching_agrees_with_the_byte_rule(
            lead in proptest::collection::vec(ending(), 0..2),
            status in proptest::sample::select(vec![&b"HTTP/1.1 200 OK"[..], b"HTTP/1.1 204", b"HTTP/1.0 200 A B"]),
            lines in proptest::collection::vec((ending(), line()), 0..6),
            end in (ending(), ending()),
        ) {
            let mut bytes = lead.concat();
            bytes.extend_from_slice(status);
            for (ending, line) in lines {
                bytes.extend_from_slice(ending);
                bytes.extend_from_slice(line);
            }
            bytes.extend_from_slice(end.0);
            bytes.extend_from_slice(end.1);
            if let Some((len, true)) = vouches(&bytes) {
                let head = &bytes[..len];
                proptest::prop_assert!(
                    check_line_endings(head).is_ok(),
                    "vouched for {:?}",
                    String::from_utf8_lossy(head)
                );
            }
        }
    }
}

//! Comparing header field names: the proxy compares each field's name
//! against the few it handles, several times per message.

/// Whether `name`, a field name as a parser that accepts only tokens
/// (RFC 9110 §5.1; `httparse`) returns it, is `lower`, written in
/// lowercase letters, digits and `-`, in any case.
///
/// Setting bit 0x20 lowercases an ASCII letter, and of the bytes a token
/// may hold only the letters' two cases map onto a letter, and only `-`
/// and the digits onto themselves, so one OR per byte compares exactly.
/// Folded without an early exit, it compiles to a few instructions per
/// byte; `eq_ignore_ascii_case` lowercases both sides byte by byte.
#[inline]
pub fn name_is(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len()
        && name
            .iter()
            .zip(lower)
            .fold(0u8, |differ, (&n, &l)| differ | ((n | 0x20) ^ l))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9110 §5.6.2's tchar.
    fn is_tchar(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
    }

    #[test]
    fn agrees_with_eq_ignore_ascii_case_on_every_token_byte() {
        let targets: Vec<u8> = (b'a'..=b'z').chain(b'0'..=b'9').chain([b'-']).collect();
        for b in (0u8..=255).filter(|&b| is_tchar(b)) {
            for &t in &targets {
                assert_eq!(
                    name_is(&[b], &[t]),
                    [b].eq_ignore_ascii_case(&[t]),
                    "{b:#x} vs {t:#x}"
                );
            }
        }
    }

    #[test]
    fn whole_names() {
        assert!(name_is(b"Content-Length", b"content-length"));
        assert!(name_is(b"HTTP2-Settings", b"http2-settings"));
        assert!(!name_is(b"Content-Lengtx", b"content-length"));
        assert!(!name_is(b"content-length ", b"content-length"));
        assert!(!name_is(b"Connection", b"keep-alive"));
        assert!(name_is(b"", b""));
    }
}

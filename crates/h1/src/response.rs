//! How long an upstream's response body is, judged from its parsed head
//! (RFC 9112 §6.3), strictly: a proxy that guesses a length differently
//! from the upstream forwards the next response's bytes as this one's body.
//!
//! The head itself is parsed with `httparse`; [`check_line_endings`] adds
//! the rule it leaves out (CRLF only), and [`framing`] reads the fields that
//! decide where the body ends and whether the connection can carry another
//! request.

use crate::name::name_is;

/// Where a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// No body, whatever the fields say (HEAD, 1xx, 204, 304).
    Empty,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// Chunked framing, decoded and checked as it arrives.
    Chunked,
    /// Everything until the upstream closes the connection.
    UntilClose,
}

/// What a response head says about its body and its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// Where the body ends.
    pub body: BodyLength,
    /// The connection can carry another request once this body has been
    /// read to its end: HTTP/1.1, no `Connection: close`, and a body with
    /// a length of its own.
    pub reusable: bool,
}

/// A response head whose framing cannot be trusted: the connection must be
/// closed and the client answered 502.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A bare CR or LF where CRLF must be.
    #[error("bare CR or LF in the response head")]
    BareLineEnding,
    /// `Content-Length` is not one number, or its values disagree.
    #[error("invalid or conflicting Content-Length in the response")]
    BadContentLength,
    /// `Transfer-Encoding` is something other than one `chunked`.
    #[error("unsupported Transfer-Encoding in the response")]
    BadTransferEncoding,
    /// `Transfer-Encoding` in an HTTP/1.0 response (RFC 9112 §6.1).
    #[error("Transfer-Encoding in an HTTP/1.0 response")]
    TransferEncodingInHttp10,
}

/// Refuses a head with a CR not followed by LF, or an LF not preceded by
/// CR. `httparse` accepts a bare LF as a line ending; the client behind the
/// proxy may not, and the two would then disagree on where the head ends.
pub fn check_line_endings(head: &[u8]) -> Result<(), FramingError> {
    // Only the CRs and LFs matter, and `memchr` finds them without a
    // branch per byte: each one found must be the CR of a CRLF.
    let mut from = 0;
    while let Some(i) = memchr::memchr2(b'\r', b'\n', &head[from..]) {
        let at = from + i;
        if head[at] == b'\n' || head.get(at + 1) != Some(&b'\n') {
            return Err(FramingError::BareLineEnding);
        }
        from = at + 2;
    }
    Ok(())
}

/// The framing of a response with `status` and `headers` (name, value
/// pairs as parsed, names tokens as [`crate::name::name_is`] expects) to a
/// request that was (`head_request`) or was not a `HEAD`; `http10` when the
/// upstream answered HTTP/1.0.
pub fn framing<'h>(
    status: u16,
    http10: bool,
    headers: impl Iterator<Item = (&'h str, &'h [u8])>,
    head_request: bool,
) -> Result<Framing, FramingError> {
    let mut length: Option<u64> = None;
    let mut chunked_fields = 0usize;
    let mut other_coding = false;
    let mut close = http10;
    for (name, value) in headers {
        if name_is(name.as_bytes(), b"content-length") {
            merge_length(&mut length, value)?;
        } else if name_is(name.as_bytes(), b"transfer-encoding") {
            if value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                chunked_fields += 1;
            } else {
                other_coding = true;
            }
        } else if name_is(name.as_bytes(), b"connection") {
            close |= has_token(value, b"close");
            if http10 && has_token(value, b"keep-alive") {
                // An HTTP/1.0 upstream that keeps alive says so; still not
                // worth trusting with a second request.
                close = true;
            }
        }
    }
    let te = chunked_fields > 0 || other_coding;
    if te && http10 {
        return Err(FramingError::TransferEncodingInHttp10);
    }
    if other_coding || chunked_fields > 1 {
        return Err(FramingError::BadTransferEncoding);
    }
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(Framing {
            body: BodyLength::Empty,
            reusable: !close,
        });
    }
    Ok(match (te, length) {
        // §6.3 item 3: chunked wins over a Content-Length, but such a
        // message may be an attempt to smuggle; do not reuse its connection.
        (true, l) => Framing {
            body: BodyLength::Chunked,
            reusable: !close && l.is_none(),
        },
        (false, Some(n)) => Framing {
            body: BodyLength::Length(n),
            reusable: !close,
        },
        (false, None) => Framing {
            body: BodyLength::UntilClose,
            reusable: false,
        },
    })
}

/// Folds one `Content-Length` field into `acc`: a comma-separated list of
/// `1*DIGIT` values, all equal to each other and to what came before.
fn merge_length(acc: &mut Option<u64>, value: &[u8]) -> Result<(), FramingError> {
    for part in value.split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(FramingError::BadContentLength);
        }
        let mut n: u64 = 0;
        for &d in part {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(d - b'0')))
                .ok_or(FramingError::BadContentLength)?;
        }
        match *acc {
            Some(seen) if seen != n => return Err(FramingError::BadContentLength),
            _ => *acc = Some(n),
        }
    }
    Ok(())
}

/// Whether a comma-separated field value lists `token` (any case).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(status: u16, headers: &[(&str, &str)], head: bool) -> Result<Framing, FramingError> {
        framing(
            status,
            false,
            headers.iter().map(|(n, v)| (*n, v.as_bytes())),
            head,
        )
    }

    fn body(status: u16, headers: &[(&str, &str)]) -> BodyLength {
        match f(status, headers, false) {
            Ok(fr) => fr.body,
            Err(e) => panic!("{headers:?}: {e}"),
        }
    }

    #[test]
    fn lengths_and_their_absence() {
        assert_eq!(body(200, &[("Content-Length", "5")]), BodyLength::Length(5));
        assert_eq!(
            body(200, &[("content-length", "5, 5")]),
            BodyLength::Length(5)
        );
        assert_eq!(
            body(200, &[("Content-Length", "5"), ("Content-Length", "5")]),
            BodyLength::Length(5)
        );
        assert_eq!(body(200, &[]), BodyLength::UntilClose);
        assert_eq!(f(200, &[], false).map(|f| f.reusable), Ok(false));
        assert_eq!(
            body(200, &[("Transfer-Encoding", "Chunked")]),
            BodyLength::Chunked
        );
    }

    #[test]
    fn bad_lengths_are_refused() {
        for v in [
            "",
            "-1",
            "+5",
            "0x5",
            "5 5",
            "5,6",
            "1_0",
            "99999999999999999999",
            ",",
        ] {
            assert_eq!(
                f(200, &[("Content-Length", v)], false),
                Err(FramingError::BadContentLength),
                "{v:?}"
            );
        }
        assert_eq!(
            f(
                200,
                &[("Content-Length", "5"), ("Content-Length", "6")],
                false
            ),
            Err(FramingError::BadContentLength)
        );
    }

    #[test]
    fn only_a_single_chunked_coding_is_taken() {
        for v in [
            "gzip, chunked",
            "chunked, gzip",
            "identity",
            "chunked;q=1",
            "",
        ] {
            assert_eq!(
                f(200, &[("Transfer-Encoding", v)], false),
                Err(FramingError::BadTransferEncoding),
                "{v:?}"
            );
        }
        let twice = [
            ("Transfer-Encoding", "chunked"),
            ("Transfer-Encoding", "chunked"),
        ];
        assert_eq!(
            f(200, &twice, false),
            Err(FramingError::BadTransferEncoding)
        );
        let te10 = framing(
            200,
            true,
            [("Transfer-Encoding", &b"chunked"[..])].into_iter(),
            false,
        );
        assert_eq!(te10, Err(FramingError::TransferEncodingInHttp10));
    }

    /// Chunked beats Content-Length, and such a connection is not reused.
    #[test]
    fn chunked_with_a_length_is_not_reused() {
        let both = [("Content-Length", "3"), ("Transfer-Encoding", "chunked")];
        assert_eq!(
            f(200, &both, false),
            Ok(Framing {
                body: BodyLength::Chunked,
                reusable: false
            })
        );
    }

    #[test]
    fn bodiless_statuses_and_head() {
        for status in [100, 103, 204, 304] {
            assert_eq!(body(status, &[("Content-Length", "10")]), BodyLength::Empty);
        }
        assert_eq!(
            f(200, &[("Content-Length", "10")], true).map(|f| f.body),
            Ok(BodyLength::Empty)
        );
    }

    #[test]
    fn close_and_http10_end_reuse() {
        let close = [("Content-Length", "1"), ("Connection", "foo, Close")];
        assert_eq!(f(200, &close, false).map(|f| f.reusable), Ok(false));
        let old = framing(
            200,
            true,
            [("Content-Length", &b"1"[..])].into_iter(),
            false,
        );
        assert_eq!(old.map(|f| f.reusable), Ok(false));
        assert_eq!(
            f(200, &[("Content-Length", "1")], false).map(|f| f.reusable),
            Ok(true)
        );
    }

    #[test]
    fn line_endings_are_crlf_only() {
        assert_eq!(
            check_line_endings(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n"),
            Ok(())
        );
        for bad in [
            &b"HTTP/1.1 200 OK\nA: b\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n",
            b"\r",
        ] {
            assert_eq!(
                check_line_endings(bad),
                Err(FramingError::BareLineEnding),
                "{bad:?}"
            );
        }
    }

    /// The byte-by-byte definition: every LF after a CR, every CR before
    /// an LF.
    fn crlf_only(head: &[u8]) -> bool {
        head.iter().enumerate().all(|(i, &b)| match b {
            b'\n' => i > 0 && head[i - 1] == b'\r',
            b'\r' => head.get(i + 1) == Some(&b'\n'),
            _ => true,
        })
    }

    proptest::proptest! {
        #[test]
        fn line_endings_agree_with_the_bytewise_rule(
            head in proptest::collection::vec(proptest::sample::select(vec![b'a', b'\r', b'\n']), 0..40)
        ) {
            proptest::prop_assert_eq!(check_line_endings(&head).is_ok(), crlf_only(&head));
        }
    }
}

//! Framing rules, one test per rule; each doc comment states the rule it
//! pins down. Payloads named after a public corpus come from it:
//! Http11Probe's smuggling suite (`SMUG-…`), the HTTP Garden's
//! `TROPHIES.md` (server/transducer bug numbers) and llhttp's
//! `test/*/transfer-encoding.md`.
//!
//! Every payload goes through [`run`], which feeds it both in one piece and
//! one byte at a time and requires the two to agree, so each rule is also
//! checked for a read boundary at every position.

use super::{ChunkError, ChunkedDecoder, Fed, Limits};

/// What a decoder made of a whole input.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The body ended after `consumed` bytes.
    Done { consumed: usize, data: Vec<u8> },
    /// Every byte was accepted, but the body has not ended.
    Partial { data: Vec<u8> },
    /// Refused at body offset `at`.
    Refused { error: ChunkError, at: u64 },
}

fn one_shot(limits: Limits, input: &[u8]) -> Outcome {
    let mut decoder = ChunkedDecoder::with_limits(limits);
    let mut data = Vec::new();
    let result = decoder.feed(input, |span| data.extend_from_slice(&input[span]));
    match result {
        Ok(Fed {
            consumed,
            done: true,
        }) => {
            assert!(decoder.is_done());
            assert_eq!(decoder.position(), consumed as u64);
            Outcome::Done { consumed, data }
        }
        Ok(Fed { consumed, .. }) => {
            assert_eq!(consumed, input.len(), "a body that has not ended takes all");
            assert!(!decoder.is_done());
            Outcome::Partial { data }
        }
        Err(error) => Outcome::Refused {
            error,
            at: decoder.position(),
        },
    }
}

fn byte_by_byte(limits: Limits, input: &[u8]) -> Outcome {
    let mut decoder = ChunkedDecoder::with_limits(limits);
    let mut data = Vec::new();
    for (i, byte) in input.iter().enumerate() {
        let piece = std::slice::from_ref(byte);
        match decoder.feed(piece, |span| data.extend_from_slice(&piece[span])) {
            Ok(Fed {
                consumed: 1,
                done: true,
            }) => {
                return Outcome::Done {
                    consumed: i + 1,
                    data,
                }
            }
            Ok(Fed {
                consumed: 1,
                done: false,
            }) => {}
            Ok(other) => panic!("feeding one byte of an open body gave {other:?}"),
            Err(error) => {
                return Outcome::Refused {
                    error,
                    at: decoder.position(),
                }
            }
        }
    }
    Outcome::Partial { data }
}

/// Decodes `input` in one piece and byte by byte, which must agree.
fn run_with(limits: Limits, input: &[u8]) -> Outcome {
    let whole = one_shot(limits, input);
    assert_eq!(
        whole,
        byte_by_byte(limits, input),
        "one-shot and byte-by-byte disagree on {:?}",
        input.escape_ascii().to_string()
    );
    whole
}

fn run(input: &[u8]) -> Outcome {
    run_with(Limits::DEFAULT, input)
}

/// The body must be all of `input`; returns its data.
fn accepts(input: &[u8]) -> Vec<u8> {
    match run(input) {
        Outcome::Done { consumed, data } if consumed == input.len() => data,
        other => panic!(
            "{:?} should be a whole body, got {other:?}",
            input.escape_ascii().to_string()
        ),
    }
}

/// `input` must be refused at offset `at` with `error`.
fn refuses(input: &[u8], error: ChunkError, at: u64) {
    refuses_with(Limits::DEFAULT, input, error, at);
}

fn refuses_with(limits: Limits, input: &[u8], error: ChunkError, at: u64) {
    assert_eq!(
        run_with(limits, input),
        Outcome::Refused { error, at },
        "{:?}",
        input.escape_ascii().to_string()
    );
}

/// `input` must be a valid prefix of a body that has not ended yet.
fn partial(input: &[u8]) -> Vec<u8> {
    match run(input) {
        Outcome::Partial { data } => data,
        other => panic!(
            "{:?} should be an unfinished body, got {other:?}",
            input.escape_ascii().to_string()
        ),
    }
}

/// The minimal body is the last chunk and the empty trailer section:
/// `0\r\n\r\n` (RFC 9112 §7.1).
#[test]
fn minimal_body_is_last_chunk_then_empty_line() {
    assert_eq!(accepts(b"0\r\n\r\n"), b"");
}

/// Chunks carry exactly `chunk-size` bytes of data, sizes in hex of either
/// case; the data spans reassemble the body (RFC 9112 §7.1).
#[test]
fn chunks_decode_to_their_data() {
    assert_eq!(accepts(b"5\r\nhello\r\n0\r\n\r\n"), b"hello");
    assert_eq!(
        accepts(b"a\r\n0123456789\r\nC\r\n hello world\r\n0\r\n\r\n"),
        b"0123456789 hello world"
    );
    // Data is opaque: CRLFs and size-like text inside it are just data.
    assert_eq!(
        accepts(b"7\r\n0\r\n\r\n\r\n\r\n0\r\n\r\n"),
        b"0\r\n\r\n\r\n"
    );
}

/// A size line with no digits is refused, never read as size 0: the
/// lenient reading (Pingora via httparse) ends the body at `\r\n` and
/// smuggles the rest (HTTP Garden server bug 17 `\r\n\r\n`, transducer bug
/// 17's extra CRLF before the last chunk).
#[test]
fn empty_size_line_is_refused() {
    refuses(b"\r\nhello\r\n0\r\n\r\n", ChunkError::EmptySize, 0);
    refuses(b"\r\n\r\n", ChunkError::EmptySize, 0);
    refuses(b"5\r\nhello\r\n\r\n0\r\n\r\n", ChunkError::EmptySize, 10);
    refuses(
        b"17\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n\r\n\r\n0\r\n\r\n",
        ChunkError::EmptySize,
        29,
    );
}

/// `chunk-size = 1*HEXDIG`: a `0x` prefix is not hex (SMUG-CHUNK-HEX-PREFIX,
/// HTTP Garden transducer bug 19 `-0x0`).
#[test]
fn hex_prefix_is_refused() {
    refuses(
        b"0x5\r\nhello\r\n0\r\n\r\n",
        ChunkError::BadSizeDigit(b'x'),
        1,
    );
    refuses(b"-0x0\r\n\r\n", ChunkError::BadSizeDigit(b'-'), 0);
}

/// `chunk-size = 1*HEXDIG`: no sign (SMUG-CHUNK-NEGATIVE `-1`, `+5`, the
/// `strtoll` readings of HTTP Garden server bug 25).
#[test]
fn signed_size_is_refused() {
    refuses(
        b"+5\r\nhello\r\n0\r\n\r\n",
        ChunkError::BadSizeDigit(b'+'),
        0,
    );
    refuses(b"-1\r\nh\r\n0\r\n\r\n", ChunkError::BadSizeDigit(b'-'), 0);
}

/// `chunk-size = 1*HEXDIG`: no whitespace before the size
/// (SMUG-CHUNK-LEADING-SP ` 5`, HTTP Garden transducer bug 24).
#[test]
fn leading_whitespace_is_refused() {
    refuses(
        b" 5\r\nhello\r\n0\r\n\r\n",
        ChunkError::BadSizeDigit(b' '),
        0,
    );
    refuses(
        b"\t5\r\nhello\r\n0\r\n\r\n",
        ChunkError::BadSizeDigit(b'\t'),
        0,
    );
    refuses(b"           0\r\n\r\n", ChunkError::BadSizeDigit(b' '), 0);
    refuses(
        b"5\r\nhello\r\n 0\r\n\r\n",
        ChunkError::BadSizeDigit(b' '),
        10,
    );
}

/// `chunk-size = 1*HEXDIG`: a size is not its longest valid prefix
/// (SMUG-CHUNK-UNDERSCORE `1_0`; HTTP Garden server bugs 1 and 22 `0_2e`,
/// transducer bugs 2 and 7, server bug 47 `INVALID!!!`).
#[test]
fn non_hex_size_is_refused() {
    refuses(
        b"1_0\r\nhello world!!!!!\r\n0\r\n\r\n",
        ChunkError::BadSizeDigit(b'_'),
        1,
    );
    refuses(b"0_2e\r\n\r\n", ChunkError::BadSizeDigit(b'_'), 1);
    refuses(b"Z\r\nZZ\r\nZZZ\r\n\r\n", ChunkError::BadSizeDigit(b'Z'), 0);
    refuses(
        b"1these-bytes-never-get-validated\r\nZ\r\n0\r\n\r\n",
        ChunkError::BadSizeDigit(b't'),
        1,
    );
    refuses(b"INVALID!!!\r\n", ChunkError::BadSizeDigit(b'I'), 0);
    refuses(b"5 5\r\nhello\r\n", ChunkError::BadSizeDigit(b'5'), 2);
}

/// BWS is allowed only before `;` and around `=` (RFC 9112 §7.1.1), so
/// whitespace right before the CRLF is refused: `5 `, llhttp's `25  `
/// ("Invalid character in chunk size"), and after an extension.
#[test]
fn trailing_whitespace_is_refused() {
    refuses(
        b"5 \r\nhello\r\n0\r\n\r\n",
        ChunkError::TrailingWhitespace,
        2,
    );
    refuses(b"25  \r\n", ChunkError::TrailingWhitespace, 4);
    refuses(b"5\t\r\nhello\r\n", ChunkError::TrailingWhitespace, 2);
    refuses(b"5;a \r\nhello\r\n", ChunkError::TrailingWhitespace, 4);
    refuses(b"5;a=b\t\r\nhello\r\n", ChunkError::TrailingWhitespace, 6);
    refuses(
        b"5;a=\"b\" \r\nhello\r\n",
        ChunkError::TrailingWhitespace,
        8,
    );
    refuses(b"0 \r\n\r\n", ChunkError::TrailingWhitespace, 2);
}

/// Chunk extensions follow `*( BWS ";" BWS token [ BWS "=" BWS ( token /
/// quoted-string ) ] )` (RFC 9112 §7.1.1); a recipient ignores them, so
/// they never reach the data.
#[test]
fn valid_extensions_are_accepted_and_ignored() {
    for body in [
        &b"5;a\r\nhello\r\n0\r\n\r\n"[..],
        b"5;a=b\r\nhello\r\n0\r\n\r\n",
        b"5 ;a\r\nhello\r\n0\r\n\r\n",
        b"5\t; a = b ;c\r\nhello\r\n0\r\n\r\n",
        b"5;name=\"quoted \\\"value\\\" with ; and = and \\\\\"\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"\";b=\"\tobs-text \xff\x80\"\r\nhello\r\n0\r\n\r\n",
        b"5;!#$%&'*+-.^_`|~09AZaz=!#$%&'*+-.^_`|~\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"x\" ;b\r\nhello\r\n0;last=chunk\r\n\r\n",
    ] {
        assert_eq!(accepts(body), b"hello");
    }
}

/// `chunk-ext-name = token`, one or more bytes: a `;` with no name after
/// it is refused (SMUG-CHUNK-BARE-SEMICOLON `5;`; `5;=x`; `5;;a`).
#[test]
fn extension_without_name_is_refused() {
    refuses(
        b"5;\r\nhello\r\n0\r\n\r\n",
        ChunkError::EmptyExtensionName,
        2,
    );
    refuses(b"5;=x\r\nhello\r\n", ChunkError::EmptyExtensionName, 2);
    refuses(b"5;;a\r\nhello\r\n", ChunkError::EmptyExtensionName, 2);
    refuses(b"5; \r\nhello\r\n", ChunkError::EmptyExtensionName, 3);
    refuses(b"5;a;\r\nhello\r\n", ChunkError::EmptyExtensionName, 4);
}

/// An `=` must be followed by a token or quoted-string (RFC 9112 §7.1.1).
#[test]
fn extension_without_value_is_refused() {
    refuses(b"5;a=\r\nhello\r\n", ChunkError::EmptyExtensionValue, 4);
    refuses(b"5;a= ;b\r\nhello\r\n", ChunkError::EmptyExtensionValue, 5);
}

/// A quoted-string must close before the line ends; it cannot contain CR
/// or LF (RFC 9110 §5.6.4), so it never hides a line end (`5;a="unterminated`).
#[test]
fn unterminated_quoted_string_is_refused() {
    refuses(
        b"5;a=\"unterminated\r\nhello\r\n0\r\n\r\n",
        ChunkError::UnterminatedQuotedString,
        17,
    );
    refuses(
        b"5;a=\"x\\\r\nhello\r\n",
        ChunkError::UnterminatedQuotedString,
        7,
    );
    refuses(b"5;a=\"x\nhello\r\n", ChunkError::BareLf, 6);
}

/// Extension names and token values are tokens, quoted values hold no
/// control bytes but HTAB, and nothing may follow a quoted value but BWS,
/// `;` or CRLF (SMUG-CHUNK-EXT-CTRL `5;\x00ext`).
#[test]
fn bad_bytes_in_extensions_are_refused() {
    refuses(
        b"5;\x00ext\r\nhello\r\n",
        ChunkError::BadExtensionByte(0x00),
        2,
    );
    refuses(
        b"5;a\x01\r\nhello\r\n",
        ChunkError::BadExtensionByte(0x01),
        3,
    );
    refuses(
        b"5;a=\"x\x7f\"\r\nhello\r\n",
        ChunkError::BadExtensionByte(0x7f),
        6,
    );
    refuses(
        b"5;a=\"x\\\x00\"\r\nhello\r\n",
        ChunkError::BadExtensionByte(0x00),
        7,
    );
    refuses(
        b"5;a=\"b\"c\r\nhello\r\n",
        ChunkError::BadExtensionByte(b'c'),
        7,
    );
    refuses(
        b"5;a=b\"c\"\r\nhello\r\n",
        ChunkError::BadExtensionByte(b'"'),
        5,
    );
    refuses(b"5;a b\r\nhello\r\n", ChunkError::BadExtensionByte(b'b'), 4);
    refuses(
        b"5;a=b c\r\nhello\r\n",
        ChunkError::BadExtensionByte(b'c'),
        6,
    );
    refuses(b"5;a(b\r\nhello\r\n", ChunkError::BadExtensionByte(b'('), 3);
    refuses(
        b"5;\xff\r\nhello\r\n",
        ChunkError::BadExtensionByte(0xff),
        2,
    );
}

/// Lines end in CRLF only; the MAY of RFC 9112 §2.2 is not taken, so a
/// bare LF is refused after the size (`5\n`), in an extension
/// (SMUG-CHUNK-EXT-LF `5;\n`), after data (SMUG-CHUNK-LF-TERM, HTTP Garden
/// transducer bug 13) and after the last chunk.
#[test]
fn bare_lf_is_refused() {
    refuses(b"5\nhello\r\n0\r\n\r\n", ChunkError::BareLf, 1);
    refuses(b"5;\nhello\r\n0\r\n\r\n", ChunkError::BareLf, 2);
    refuses(b"5;a=b\nhello\r\n", ChunkError::BareLf, 5);
    refuses(b"5\r\nhello\n0\r\n\r\n", ChunkError::BareLf, 8);
    refuses(b"a\r\n0123456789\n0\r\n\r\n", ChunkError::BareLf, 13);
    refuses(b"0\n\r\n", ChunkError::BareLf, 1);
    refuses(b"\n", ChunkError::BareLf, 0);
}

/// A CR must be followed by LF: a bare CR is not a line end anywhere
/// (SMUG-CHUNK-BARE-CR-TERM `5\rhello`; HTTP Garden transducer bug 4
/// `1\r0\n`; server bug 31 and transducer bugs 3 and 36, `\r\r` in a chunk
/// line).
#[test]
fn cr_without_lf_is_refused() {
    refuses(b"5\rhello\r\n0\r\n\r\n", ChunkError::BareCr(b'h'), 2);
    refuses(b"1\r0\n", ChunkError::BareCr(b'0'), 2);
    refuses(
        b"5\r\r;ABCD\r\n34\r\nE\r\n0\r\n\r\n",
        ChunkError::BareCr(b'\r'),
        2,
    );
    refuses(
        b"2\r\r;a\r\n02\r\n41\r\n0\r\n\r\n",
        ChunkError::BareCr(b'\r'),
        2,
    );
    refuses(b"41;a=b\r\rXXXX\r\n", ChunkError::BareCr(b'\r'), 7);
    refuses(b"5\r\nhello\r0\r\n\r\n", ChunkError::BareCr(b'0'), 9);
    refuses(b"0\r\n\rX", ChunkError::BareCr(b'X'), 4);
}

/// "Recipients MUST anticipate potentially large hexadecimal numerals and
/// prevent parsing errors due to integer conversion overflows" (RFC 9112
/// §7.1): at most 16 significant hex digits, so a size never wraps.
#[test]
fn oversized_size_is_refused() {
    refuses(b"10000000000000000\r\n", ChunkError::SizeOverflow, 16);
    refuses(b"ffffffffffffffff0\r\n", ChunkError::SizeOverflow, 16);
    refuses(b"000ffffffffffffffff0\r\n", ChunkError::SizeOverflow, 19);
    // The largest size is only a (long) body prefix.
    assert_eq!(partial(b"ffffffffffffffff\r\nabc"), b"abc");
}

/// Leading zeros are part of `1*HEXDIG` and fine up to the line limit;
/// `1*("0")` is the last chunk (RFC 9112 §7.1).
#[test]
fn leading_zeros_are_allowed() {
    assert_eq!(
        accepts(b"0000000000000000000005\r\nhello\r\n000\r\n\r\n"),
        b"hello"
    );
    let limits = Limits {
        max_line_bytes: 4,
        ..Limits::DEFAULT
    };
    assert_eq!(
        run_with(limits, b"0005\r\nhello\r\n0\r\n\r\n"),
        Outcome::Done {
            consumed: 18,
            data: b"hello".to_vec()
        }
    );
    refuses_with(
        limits,
        b"00005\r\nhello\r\n0\r\n\r\n",
        ChunkError::LineTooLong { limit: 4 },
        4,
    );
}

/// The size line, size and extensions together, is bounded by
/// `max_line_bytes`, its CRLF not counted (RFC 9112 §7.1.1: a recipient
/// SHOULD limit chunk extensions).
#[test]
fn size_line_is_bounded() {
    let limits = Limits {
        max_line_bytes: 8,
        ..Limits::DEFAULT
    };
    assert_eq!(
        run_with(limits, b"5;abcdef\r\nhello\r\n0\r\n\r\n"),
        Outcome::Done {
            consumed: 22,
            data: b"hello".to_vec()
        }
    );
    refuses_with(
        limits,
        b"5;abcdefg\r\nhello\r\n0\r\n\r\n",
        ChunkError::LineTooLong { limit: 8 },
        8,
    );
    let mut long = b"5;a=\"".to_vec();
    long.resize(5000, b'x');
    refuses(&long, ChunkError::LineTooLong { limit: 4096 }, 4096);
}

/// Chunk data is exactly `chunk-size` bytes, then CRLF: longer data is
/// refused at its first extra byte (`3\r\nhello`, SMUG-CHUNK-SPILL).
#[test]
fn data_longer_than_size_is_refused() {
    refuses(
        b"3\r\nhello\r\n0\r\n\r\n",
        ChunkError::MissingCrlfAfterData(b'l'),
        6,
    );
    refuses(
        b"5\r\nhello!!\r\n0\r\n\r\n",
        ChunkError::MissingCrlfAfterData(b'!'),
        8,
    );
}

/// Data shorter than its size swallows the framing after it as data, so
/// the body never ends where the sender meant: it is refused, or it is
/// still open when the input runs out.
#[test]
fn data_shorter_than_size_does_not_end_the_body() {
    refuses(b"5\r\nhi\r\n0\r\n\r\n", ChunkError::EmptySize, 10);
    assert_eq!(partial(b"a\r\nhello\r\n0\r\n\r\n"), b"hello\r\n0\r\n");
}

/// The data must be followed by CRLF exactly (RFC 9112 §7.1,
/// SMUG-CHUNK-MISSING-TRAILING-CRLF).
#[test]
fn missing_crlf_after_data_is_refused() {
    refuses(
        b"5\r\nhello0\r\n\r\n",
        ChunkError::MissingCrlfAfterData(b'0'),
        8,
    );
    refuses(
        b"5\r\nhello \r\n",
        ChunkError::MissingCrlfAfterData(b' '),
        8,
    );
}

/// A trailer section is `*( field-line CRLF )` then CRLF, with
/// `field-line = token ":" OWS value OWS` (RFC 9112 §7.1.2, §5); its bytes
/// are validated and dropped, never data.
#[test]
fn valid_trailers_are_accepted_and_not_data() {
    assert_eq!(accepts(b"0\r\nX-A: 1\r\n\r\n"), b"");
    assert_eq!(
        accepts(b"5\r\nhello\r\n0\r\nX-A: 1\r\nx-b:\t two  words \t\r\nE:\r\n\r\n"),
        b"hello"
    );
    assert_eq!(accepts(b"0\r\nX: obs-text \x80\xff\r\n\r\n"), b"");
    assert_eq!(accepts(b"0\r\nX:\"quoted\" (comment); a=b\r\n\r\n"), b"");
}

/// The body ends only at the empty line after the trailers, not at the
/// first `\r\n` after the last chunk (HTTP Garden server bug 39, where
/// `0\r\nX:POST / HTTP/1.1\r\n\r\n` ended on `\r\nXX`).
#[test]
fn trailers_end_only_at_the_empty_line() {
    let body = b"0\r\nX:POST / HTTP/1.1\r\n\r\n";
    assert_eq!(accepts(body), b"");
    assert_eq!(partial(&body[..body.len() - 1]), b"");
}

/// obs-fold is refused in trailers (RFC 9112 §5.2), and so is whitespace
/// before the first trailer name (§2.2).
#[test]
fn trailer_obs_fold_is_refused() {
    refuses(b"0\r\nX-A: 1\r\n 2\r\n\r\n", ChunkError::TrailerObsFold, 11);
    refuses(
        b"0\r\nX-A: 1\r\n\t2\r\n\r\n",
        ChunkError::TrailerObsFold,
        11,
    );
    refuses(b"0\r\n X: 1\r\n\r\n", ChunkError::TrailerObsFold, 3);
}

/// A trailer field line has a colon (HTTP Garden transducer bug 14, server
/// bug 37: lines without one are not names continued).
#[test]
fn trailer_without_colon_is_refused() {
    refuses(b"0\r\nX-A\r\n\r\n", ChunkError::TrailerMissingColon, 6);
    refuses(
        b"0\r\nTransfer-\r\nEncoding: chunked\r\n\r\n",
        ChunkError::TrailerMissingColon,
        12,
    );
}

/// "No whitespace is allowed between the field name and colon" (RFC 9112
/// §5.1; HTTP Garden server bugs 3 and 28).
#[test]
fn trailer_space_before_colon_is_refused() {
    refuses(
        b"0\r\nX-A : 1\r\n\r\n",
        ChunkError::TrailerSpaceBeforeColon,
        6,
    );
    refuses(
        b"0\r\nContent-Length 10\r\n\r\n",
        ChunkError::TrailerSpaceBeforeColon,
        17,
    );
}

/// A field name is a token, so it is not empty (HTTP Garden server bugs
/// 18 and 27).
#[test]
fn trailer_empty_name_is_refused() {
    refuses(b"0\r\n: ignored\r\n\r\n", ChunkError::EmptyTrailerName, 3);
    refuses(b"0\r\n:\r\n\r\n", ChunkError::EmptyTrailerName, 3);
}

/// Trailer names are tokens and values hold no CR, LF, NUL or other
/// control byte but HTAB (RFC 9110 §5.5; HTTP Garden server bugs 2, 8, 13,
/// 35).
#[test]
fn bad_bytes_in_trailers_are_refused() {
    refuses(
        b"0\r\nX: v\x00alue\r\n\r\n",
        ChunkError::BadTrailerByte(0x00),
        7,
    );
    refuses(
        b"0\r\nX: a\x7f\r\n\r\n",
        ChunkError::BadTrailerByte(0x7f),
        7,
    );
    refuses(b"0\r\nX(: 1\r\n\r\n", ChunkError::BadTrailerByte(b'('), 4);
    refuses(
        b"0\r\n\xefoo: bar\r\n\r\n",
        ChunkError::BadTrailerByte(0xef),
        3,
    );
    refuses(
        b"0\r\nVisible: :/\rSmuggled: :)\r\n\r\n",
        ChunkError::BareCr(b'S'),
        15,
    );
}

/// Trailer lines end in CRLF, and so does the section: a bare LF is
/// refused there too (HTTP Garden server bug 19 `Useless:\n\n`).
#[test]
fn trailer_bare_lf_is_refused() {
    refuses(b"0\r\nX-A: 1\n\r\n", ChunkError::BareLf, 9);
    refuses(b"0\r\nX-A: 1\r\n\n", ChunkError::BareLf, 11);
    refuses(b"0\r\n\n", ChunkError::BareLf, 3);
    refuses(b"0\r\nUseless:\n\n", ChunkError::BareLf, 11);
}

/// The trailer section is bounded by `max_trailer_bytes`: its field lines
/// with their CRLFs, not the final empty line, so a limit of 0 still takes
/// `0\r\n\r\n` but no trailer field.
#[test]
fn trailer_section_is_bounded() {
    let limits = |max_trailer_bytes| Limits {
        max_trailer_bytes,
        ..Limits::DEFAULT
    };
    let body = b"0\r\nX-A: 1\r\nX-B: 2\r\n\r\n";
    assert_eq!(
        run_with(limits(16), body),
        Outcome::Done {
            consumed: body.len(),
            data: Vec::new()
        }
    );
    refuses_with(
        limits(15),
        body,
        ChunkError::TrailerTooLong { limit: 15 },
        18,
    );
    assert_eq!(
        run_with(limits(0), b"0\r\n\r\n"),
        Outcome::Done {
            consumed: 5,
            data: Vec::new()
        }
    );
    refuses_with(
        limits(0),
        b"0\r\nX: 1\r\n\r\n",
        ChunkError::TrailerTooLong { limit: 0 },
        3,
    );
    let mut long = b"0\r\nX: ".to_vec();
    long.resize(20_000, b'x');
    refuses(&long, ChunkError::TrailerTooLong { limit: 16384 }, 16387);
}

/// Bytes after the body's final CRLF belong to the next request and are
/// not consumed, then or later (pipelining; HTTP Garden bonus bug 3's
/// trailing `\x00`).
#[test]
fn bytes_after_the_end_are_not_consumed() {
    let input = b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(
        run(input),
        Outcome::Done {
            consumed: 15,
            data: b"hello".to_vec()
        }
    );
    assert_eq!(
        run(b"0\r\n\r\n\x00"),
        Outcome::Done {
            consumed: 5,
            data: Vec::new()
        }
    );
    let mut decoder = ChunkedDecoder::new();
    let fed = decoder.feed(input, |_| {});
    assert_eq!(
        fed,
        Ok(Fed {
            consumed: 15,
            done: true
        })
    );
    let mut spans = 0;
    let again = decoder.feed(&input[15..], |_| spans += 1);
    assert_eq!(
        again,
        Ok(Fed {
            consumed: 0,
            done: true
        })
    );
    assert_eq!(spans, 0);
    assert_eq!(decoder.position(), 15);
}

/// Once refused, a body stays refused: every later feed returns the same
/// error and accepts nothing, so a caller cannot resynchronise on it.
#[test]
fn errors_are_sticky() {
    let mut decoder = ChunkedDecoder::new();
    assert_eq!(
        decoder.feed(b"5\r\nhel", |_| {}),
        Ok(Fed {
            consumed: 6,
            done: false
        })
    );
    assert_eq!(
        decoder.feed(b"lo!", |_| {}),
        Err(ChunkError::MissingCrlfAfterData(b'!'))
    );
    assert_eq!(decoder.position(), 8);
    let mut spans = 0;
    assert_eq!(
        decoder.feed(b"\r\n0\r\n\r\n", |_| spans += 1),
        Err(ChunkError::MissingCrlfAfterData(b'!'))
    );
    assert_eq!(spans, 0);
    assert_eq!(decoder.position(), 8);
    assert!(!decoder.is_done());
}

/// Data spans are ranges of the input just fed, in order and non-empty;
/// a chunk split across feeds comes out as one span per feed.
#[test]
fn data_spans_are_ranges_of_each_input() {
    let mut decoder = ChunkedDecoder::new();
    let mut spans = Vec::new();
    let fed = decoder.feed(b"3\r\nabc\r\n4\r\nde", |span| spans.push(span));
    assert_eq!(
        fed,
        Ok(Fed {
            consumed: 13,
            done: false
        })
    );
    assert_eq!(spans, [3..6, 11..13]);
    spans.clear();
    let fed = decoder.feed(b"fg\r\n0\r\n\r\n", |span| spans.push(span));
    assert_eq!(
        fed,
        Ok(Fed {
            consumed: 9,
            done: true
        })
    );
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0], 0..2);
    // An empty feed changes nothing.
    let mut fresh = ChunkedDecoder::default();
    assert_eq!(
        fresh.feed(b"", |_| {}),
        Ok(Fed {
            consumed: 0,
            done: false
        })
    );
    assert_eq!(fresh.position(), 0);
}

/// Error messages name the offending byte readably, printable bytes as
/// themselves and others in hex, so a log line stays one line.
#[test]
fn error_messages_show_the_byte() {
    let shown = ChunkError::BadSizeDigit(b'x').to_string();
    assert!(shown.contains("'x'"), "{shown}");
    let shown = ChunkError::BareCr(b'\r').to_string();
    assert!(shown.contains("0x0d"), "{shown}");
    let shown = ChunkError::BadTrailerByte(0).to_string();
    assert!(shown.contains("0x00"), "{shown}");
    let shown = ChunkError::LineTooLong { limit: 4096 }.to_string();
    assert!(shown.contains("4096"), "{shown}");
}

//! Property tests for `switchyard_h1::chunked`, checked against a small
//! reference decoder written here, non-incrementally, straight from the
//! RFC 9112 §7.1 grammar and the decoder's documented choices:
//!
//! - `valid_encodings_decode_whatever_the_splits`: a random body cut into
//!   random chunk sizes (random leading zeros and hex case, random valid
//!   extensions, random valid trailers), followed by random bytes of a
//!   pipelined next message and fed split at random points, is accepted,
//!   ends exactly at the encoded length, and its data spans reassemble the
//!   body. The limits are exact: the longest size line and the trailer
//!   section's length pass, one byte less is refused.
//! - `framing_mutations_agree_with_reference`: every single-byte change,
//!   deletion and (framing-byte) insertion at every framing byte of a valid
//!   encoding is either refused or decodes exactly as the reference does,
//!   fed whole and split at the mutation; never a panic.
//! - `arbitrary_bytes_never_panic`: arbitrary bytes (biased towards the
//!   framing alphabet), fed at random splits under random limits, never
//!   panic, never consume more than they are given, hand out spans only
//!   inside what was consumed, agree with one-shot feeding, and end the
//!   body exactly where the reference does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::Config;
use switchyard_h1::chunked::{ChunkError, ChunkedDecoder, Fed, Limits};

// ---------------------------------------------------------------------------
// The reference decoder: whole input in, `Some((end, data))` if a complete
// valid body starts the input, `None` if it is invalid or incomplete.
// ---------------------------------------------------------------------------

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// HTAB, SP, VCHAR, obs-text (RFC 9110 §5.5, §5.6.4).
fn is_text(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

fn skip_ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    &s[n..]
}

fn take_token(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|&&b| is_tchar(b)).count();
    s.split_at(n)
}

/// The line starting at `pos`: its bytes before CRLF and the offset after
/// the LF. `None` if the first CR or LF is not a CRLF, or there is none.
fn line(input: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rest = &input[pos..];
    let end = rest.iter().position(|&b| b == b'\r' || b == b'\n')?;
    if rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n') {
        Some((&rest[..end], pos + end + 2))
    } else {
        None
    }
}

/// `quoted-string` at the start of `s` (which starts with `"`); the rest.
fn quoted(s: &[u8]) -> Option<&[u8]> {
    let mut i = 1;
    loop {
        match *s.get(i)? {
            b'"' => return Some(&s[i + 1..]),
            b'\\' => {
                if !is_text(*s.get(i + 1)?) {
                    return None;
                }
                i += 2;
            }
            b if is_text(b) => i += 1,
            _ => return None,
        }
    }
}

/// `chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] )`, all of `s`.
fn extensions(mut s: &[u8]) -> Option<()> {
    while !s.is_empty() {
        let after_bws = skip_ws(s);
        if after_bws.first() != Some(&b';') {
            return None;
        }
        let (name, rest) = take_token(skip_ws(&after_bws[1..]));
        if name.is_empty() {
            return None;
        }
        let after_name = skip_ws(rest);
        if after_name.first() == Some(&b'=') {
            let value = skip_ws(&after_name[1..]);
            s = if value.first() == Some(&b'"') {
                quoted(value)?
            } else {
                let (token, rest) = take_token(value);
                if token.is_empty() {
                    return None;
                }
                rest
            };
        } else {
            s = rest;
        }
    }
    Some(())
}

/// The size of a size line (size, extensions), within the line limit.
fn size_line(line: &[u8], limits: Limits) -> Option<u64> {
    if line.len() > limits.max_line_bytes {
        return None;
    }
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return None;
    }
    let significant: Vec<u8> = line[..digits]
        .iter()
        .copied()
        .skip_while(|&b| b == b'0')
        .collect();
    if significant.len() > 16 {
        return None;
    }
    let size = if significant.is_empty() {
        0
    } else {
        u64::from_str_radix(std::str::from_utf8(&significant).ok()?, 16).ok()?
    };
    extensions(&line[digits..])?;
    Some(size)
}

fn field_line(line: &[u8]) -> Option<()> {
    let (name, rest) = take_token(line);
    if name.is_empty() || rest.first() != Some(&b':') {
        return None;
    }
    rest[1..].iter().all(|&b| is_text(b)).then_some(())
}

fn reference(input: &[u8], limits: Limits) -> Option<(usize, Vec<u8>)> {
    let mut pos = 0;
    let mut data = Vec::new();
    loop {
        let (size_bytes, next) = line(input, pos)?;
        let size = size_line(size_bytes, limits)?;
        pos = next;
        if size == 0 {
            break;
        }
        let end = pos.checked_add(usize::try_from(size).ok()?)?;
        data.extend_from_slice(input.get(pos..end)?);
        if input.get(end..end + 2)? != b"\r\n" {
            return None;
        }
        pos = end + 2;
    }
    let mut trailer_bytes = 0;
    loop {
        let (field, next) = line(input, pos)?;
        if field.is_empty() {
            return Some((next, data));
        }
        trailer_bytes += next - pos;
        if trailer_bytes > limits.max_trailer_bytes {
            return None;
        }
        field_line(field)?;
        pos = next;
    }
}

// ---------------------------------------------------------------------------
// Driving the decoder, checking the invariants of every feed on the way.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Done { consumed: usize, data: Vec<u8> },
    Partial { data: Vec<u8> },
    Refused { error: ChunkError, at: u64 },
}

impl Outcome {
    fn as_reference(&self) -> Option<(usize, Vec<u8>)> {
        match self {
            Outcome::Done { consumed, data } => Some((*consumed, data.clone())),
            _ => None,
        }
    }
}

/// Feeds `input` cut at `cuts` (offsets, any order, any repeats), checking
/// each feed's invariants; after the end or an error, keeps feeding to
/// check that nothing more is taken.
fn feed_split(limits: Limits, input: &[u8], cuts: &[usize]) -> Outcome {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    cuts.push(0);
    cuts.push(input.len());
    cuts.sort_unstable();
    let mut decoder = ChunkedDecoder::with_limits(limits);
    let mut data = Vec::new();
    let mut outcome = None;
    for pair in cuts.windows(2) {
        let piece = &input[pair[0]..pair[1]];
        let mut last_end = 0;
        let mut spans = Vec::new();
        let result = decoder.feed(piece, |span| spans.push(span));
        for span in &spans {
            assert!(span.start < span.end, "empty span {span:?}");
            assert!(span.start >= last_end, "spans out of order: {spans:?}");
            last_end = span.end;
            data.extend_from_slice(&piece[span.clone()]);
        }
        match (&outcome, result) {
            (None, Ok(Fed { consumed, done })) => {
                assert!(consumed <= piece.len());
                assert!(last_end <= consumed, "span past the consumed bytes");
                assert_eq!(done, decoder.is_done());
                if done {
                    let consumed = pair[0] + consumed;
                    assert_eq!(decoder.position(), consumed as u64);
                    outcome = Some(Outcome::Done {
                        consumed,
                        data: data.clone(),
                    });
                } else {
                    assert_eq!(consumed, piece.len(), "an open body takes all it is fed");
                }
            }
            (None, Err(error)) => {
                let at = decoder.position();
                assert!(at >= pair[0] as u64 && at < pair[1] as u64);
                outcome = Some(Outcome::Refused { error, at });
            }
            (Some(Outcome::Done { .. }), result) => {
                assert_eq!(
                    result,
                    Ok(Fed {
                        consumed: 0,
                        done: true
                    })
                );
                assert!(spans.is_empty());
            }
            (Some(Outcome::Refused { error, at }), result) => {
                assert_eq!(result, Err(*error));
                assert_eq!(decoder.position(), *at);
                assert!(spans.is_empty());
            }
            (Some(Outcome::Partial { .. }), _) => unreachable!(),
        }
    }
    outcome.unwrap_or(Outcome::Partial { data })
}

/// Decodes whole and at `cuts`; the two must agree exactly, and agree with
/// the reference on whether and where the body ends and what it holds.
fn check(limits: Limits, input: &[u8], cuts: &[usize]) -> Outcome {
    let whole = feed_split(limits, input, &[]);
    let split = feed_split(limits, input, cuts);
    assert_eq!(
        whole,
        split,
        "split at {cuts:?} changed the outcome for {:?}",
        input.escape_ascii().to_string()
    );
    assert_eq!(
        whole.as_reference(),
        reference(input, limits),
        "decoder ({whole:?}) and reference disagree on {:?}",
        input.escape_ascii().to_string()
    );
    whole
}

// ---------------------------------------------------------------------------
// Valid encodings.
// ---------------------------------------------------------------------------

const TCHARS: &[u8] =
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BWS: &[&[u8]] = &[b"", b"", b" ", b"\t", b" \t "];

fn text_byte() -> impl Strategy<Value = u8> {
    prop_oneof![Just(b'\t'), Just(b' '), 0x21u8..=0x7e, 0x80u8..=0xff,]
}

fn token() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(select(TCHARS), 1..6)
}

/// A quoted-string: qdtext, with `"` and `\` (and anything else) escaped.
fn quoted_string() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((text_byte(), any::<bool>()), 0..6).prop_map(|parts| {
        let mut out = vec![b'"'];
        for (b, escape) in parts {
            if escape || b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
        out
    })
}

/// One `BWS ";" BWS name [ BWS "=" BWS value ]`.
fn extension() -> impl Strategy<Value = Vec<u8>> {
    (
        select(BWS),
        select(BWS),
        token(),
        prop::option::of((
            select(BWS),
            select(BWS),
            prop_oneof![token(), quoted_string()],
        )),
    )
        .prop_map(|(ws1, ws2, name, value)| {
            let mut out = [ws1, b";", ws2, &name].concat();
            if let Some((ws3, ws4, value)) = value {
                out.extend_from_slice(&[ws3, b"=", ws4, &value].concat());
            }
            out
        })
}

/// How one size line is written.
#[derive(Debug, Clone)]
struct SizeStyle {
    zeros: usize,
    upper: bool,
    extensions: Vec<Vec<u8>>,
}

fn size_style(max_extensions: usize) -> impl Strategy<Value = SizeStyle> {
    (
        0..3usize,
        any::<bool>(),
        prop::collection::vec(extension(), 0..=max_extensions),
    )
        .prop_map(|(zeros, upper, extensions)| SizeStyle {
            zeros,
            upper,
            extensions,
        })
}

fn trailer() -> impl Strategy<Value = Vec<u8>> {
    (token(), prop::collection::vec(text_byte(), 0..8))
        .prop_map(|(name, value)| [&name[..], b":", &value, b"\r\n"].concat())
}

/// A body and how to encode it.
#[derive(Debug, Clone)]
struct Plan {
    body: Vec<u8>,
    /// Chunk lengths; the last chunk takes what they leave.
    cuts: Vec<usize>,
    styles: Vec<SizeStyle>,
    last: SizeStyle,
    trailers: Vec<Vec<u8>>,
}

fn plan(max_body: usize, max_chunks: usize, max_extensions: usize) -> impl Strategy<Value = Plan> {
    (
        prop::collection::vec(any::<u8>(), 0..max_body),
        prop::collection::vec(1..40usize, 0..max_chunks),
        prop::collection::vec(size_style(max_extensions), max_chunks + 1),
        size_style(max_extensions),
        prop::collection::vec(trailer(), 0..3),
    )
        .prop_map(|(body, cuts, styles, last, trailers)| Plan {
            body,
            cuts,
            styles,
            last,
            trailers,
        })
}

/// An encoded body, which of its bytes are framing, and the sizes its
/// limits must allow.
struct Encoded {
    bytes: Vec<u8>,
    framing: Vec<usize>,
    longest_line: usize,
    trailer_bytes: usize,
}

fn size_line_bytes(size: usize, style: &SizeStyle) -> Vec<u8> {
    let digits = if style.upper {
        format!("{size:X}")
    } else {
        format!("{size:x}")
    };
    let mut line = vec![b'0'; style.zeros];
    line.extend_from_slice(digits.as_bytes());
    for ext in &style.extensions {
        line.extend_from_slice(ext);
    }
    line
}

fn encode(plan: &Plan) -> Encoded {
    let mut out = Encoded {
        bytes: Vec::new(),
        framing: Vec::new(),
        longest_line: 0,
        trailer_bytes: 0,
    };
    let framing = |out: &mut Encoded, bytes: &[u8]| {
        for &b in bytes {
            out.framing.push(out.bytes.len());
            out.bytes.push(b);
        }
    };
    let mut rest = &plan.body[..];
    let mut cuts = plan.cuts.iter().copied();
    let mut styles = plan.styles.iter().cycle();
    while !rest.is_empty() {
        let len = cuts.next().unwrap_or(rest.len()).min(rest.len());
        let (chunk, tail) = rest.split_at(len);
        rest = tail;
        let line = size_line_bytes(len, styles.next().unwrap());
        out.longest_line = out.longest_line.max(line.len());
        framing(&mut out, &line);
        framing(&mut out, b"\r\n");
        out.bytes.extend_from_slice(chunk);
        framing(&mut out, b"\r\n");
    }
    let line = size_line_bytes(0, &plan.last);
    out.longest_line = out.longest_line.max(line.len());
    framing(&mut out, &line);
    framing(&mut out, b"\r\n");
    for field in &plan.trailers {
        out.trailer_bytes += field.len();
        framing(&mut out, field);
    }
    framing(&mut out, b"\r\n");
    out
}

fn offsets(indices: &[Index], len: usize) -> Vec<usize> {
    indices.iter().map(|i| i.index(len + 1)).collect()
}

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::DEFAULT),
        (1..40usize, 0..60usize).prop_map(|(max_line_bytes, max_trailer_bytes)| Limits {
            max_line_bytes,
            max_trailer_bytes,
        }),
    ]
}

/// Bytes that matter to the framing, so random input gets past the first
/// byte often enough to reach the interesting states.
const FRAMING_ALPHABET: &[u8] = b"0123456789abcdefABCDEFxX;= \t\"\\\r\n:-+_\x00\x7f\x80";
/// Valid starts for random input, so that its random tail is judged in
/// every part of a body: the size line, data, the trailers.
const STARTS: &[&[u8]] = &[b"", b"5", b"5;a", b"3\r\nab", b"0\r\n", b"0\r\nX: 1\r\n"];

proptest! {
    #![proptest_config(Config::with_cases(256))]

    #[test]
    fn valid_encodings_decode_whatever_the_splits(
        plan in plan(400, 8, 3),
        next in prop::collection::vec(any::<u8>(), 0..20),
        splits in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let encoded = encode(&plan);
        let end = encoded.bytes.len();
        let input = [&encoded.bytes[..], &next].concat();
        let cuts = offsets(&splits, input.len());
        let expected = Outcome::Done { consumed: end, data: plan.body.clone() };
        prop_assert_eq!(check(Limits::DEFAULT, &input, &cuts), expected.clone());

        // A body is not done one byte short of its end.
        let short = feed_split(Limits::DEFAULT, &encoded.bytes[..end - 1], &cuts);
        prop_assert!(matches!(short, Outcome::Partial { .. }), "{:?}", short);

        // The limits are exact.
        let exact = Limits {
            max_line_bytes: encoded.longest_line,
            max_trailer_bytes: encoded.trailer_bytes,
        };
        prop_assert_eq!(check(exact, &input, &cuts), expected);
        let short_line = Limits { max_line_bytes: encoded.longest_line - 1, ..exact };
        let refused = check(short_line, &input, &cuts);
        prop_assert!(
            matches!(refused, Outcome::Refused { error: ChunkError::LineTooLong { .. }, .. }),
            "{:?}", refused
        );
        if encoded.trailer_bytes > 0 {
            let short_trailer = Limits { max_trailer_bytes: encoded.trailer_bytes - 1, ..exact };
            let refused = check(short_trailer, &input, &cuts);
            prop_assert!(
                matches!(refused, Outcome::Refused { error: ChunkError::TrailerTooLong { .. }, .. }),
                "{:?}", refused
            );
        }
    }
}

proptest! {
    #![proptest_config(Config::with_cases(48))]

    #[test]
    fn framing_mutations_agree_with_reference(
        plan in plan(40, 3, 2),
        limits in limits(),
    ) {
        let encoded = encode(&plan);
        let original = &encoded.bytes;
        for &at in &encoded.framing {
            for value in 0..=u8::MAX {
                if value == original[at] {
                    continue;
                }
                let mut changed = original.clone();
                changed[at] = value;
                check(limits, &changed, &[at, at + 1]);
            }
            let mut deleted = original.clone();
            deleted.remove(at);
            check(limits, &deleted, &[at]);
            for &value in FRAMING_ALPHABET {
                let mut inserted = original.clone();
                inserted.insert(at, value);
                check(limits, &inserted, &[at, at + 1]);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        start in select(STARTS),
        tail in prop::collection::vec(
            prop_oneof![select(FRAMING_ALPHABET), any::<u8>()],
            0..200,
        ),
        splits in prop::collection::vec(any::<Index>(), 0..10),
        limits in limits(),
    ) {
        let input = [start, &tail].concat();
        check(limits, &input, &offsets(&splits, input.len()));
    }
}

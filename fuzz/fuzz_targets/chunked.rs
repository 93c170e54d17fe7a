//! `ChunkedDecoder::feed` on arbitrary bytes, split at fuzzer-chosen
//! points: it never panics, every feed keeps the documented contract
//! (consumed, done, position, data spans), the outcome does not depend on
//! how the input was split (one piece, the chosen pieces, one byte at a
//! time), and it agrees with a reference decoder written here.
//!
//! The reference reads the whole input at once by recursive descent over
//! the grammar in `switchyard_h1::chunked`'s module docs (RFC 9112 §7.1,
//! the strict choices listed there) and says where a valid prefix stops
//! being one: the decoder must accept the same bytes, refuse at the same
//! offset (for the same kind of reason: grammar, size overflow, a size
//! line or the trailer section over its limit), hand out the same data and
//! end the body after the same number of bytes. crates/h1/tests/properties.rs
//! has a reference of its own that only answers "a complete body of N
//! bytes, or not"; this one also places every refusal.
//!
//! Input layout (so that seeds stay readable):
//!
//! - byte 0: bits 0–2 = how many split bytes follow (0–7); bit 3 = small
//!   limits, read from the two bytes after it (size line `b % 32`, trailer
//!   section `b % 64`), else `Limits::DEFAULT`. ASCII `0`–`7` mean that
//!   many split bytes and default limits, `8` small limits and no splits.
//! - the split bytes: each the length of the next piece (0 = an empty
//!   feed); what they leave is the last piece.
//! - the rest: the bytes fed to the decoder.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_h1::chunked::{ChunkError, ChunkedDecoder, Fed, Limits};

/// Why the reference stopped accepting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Grammar,
    Overflow,
    LineLimit,
    TrailerLimit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The body ended after `end` bytes.
    Done { end: usize, data: Vec<u8> },
    /// Every byte was accepted; the body goes on.
    Open { data: Vec<u8> },
    /// The byte at offset `at` was refused.
    Refused { at: usize, why: Why, data: Vec<u8> },
}

// ---------------------------------------------------------------------------
// The reference decoder.
// ---------------------------------------------------------------------------

enum Stop {
    /// The input ended inside a body that is valid so far.
    Eof,
    Bad(usize, Why),
}

type R<T> = Result<T, Stop>;

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// HTAB, SP, VCHAR, obs-text.
fn is_text(b: u8) -> bool {
    b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

struct Ref<'a> {
    s: &'a [u8],
    i: usize,
    limits: Limits,
    /// Bytes of the current size line, or of the trailer section so far.
    counted: usize,
    data: Vec<u8>,
}

impl Ref<'_> {
    fn peek(&self) -> R<u8> {
        self.s.get(self.i).copied().ok_or(Stop::Eof)
    }

    fn bad<T>(&self, why: Why) -> R<T> {
        Err(Stop::Bad(self.i, why))
    }

    /// Takes the next byte, which the grammar allows, counting it against
    /// `limit` when there is one: a byte past the limit is refused.
    fn take(&mut self, limit: Option<(usize, Why)>) -> R<()> {
        if let Some((max, why)) = limit {
            if self.counted == max {
                return self.bad(why);
            }
            self.counted += 1;
        }
        self.i += 1;
        Ok(())
    }

    /// Takes the next byte if `ok` says so; whether it did.
    fn take_if(&mut self, ok: fn(u8) -> bool, limit: Option<(usize, Why)>) -> R<bool> {
        if ok(self.peek()?) {
            self.take(limit)?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// Exactly `byte`, else a refusal here.
    fn expect(&mut self, byte: u8, limit: Option<(usize, Why)>) -> R<()> {
        if self.peek()? != byte {
            return self.bad(Why::Grammar);
        }
        self.take(limit)
    }

    /// chunk-size [ chunk-ext ] CRLF; the size.
    fn size_line(&mut self) -> R<u64> {
        let line = Some((self.limits.max_line_bytes, Why::LineLimit));
        self.counted = 0;
        if !self.peek()?.is_ascii_hexdigit() {
            return self.bad(Why::Grammar);
        }
        let mut size: u64 = 0;
        let mut significant = 0;
        while self.peek()?.is_ascii_hexdigit() {
            let digit = u64::from(char::from(self.peek()?).to_digit(16).unwrap_or(0));
            if significant > 0 || digit != 0 {
                if significant == 16 {
                    return self.bad(Why::Overflow);
                }
                significant += 1;
                size = size * 16 + digit;
            }
            self.take(line)?;
        }
        // *( BWS ";" BWS name [ BWS "=" BWS value ] ), then CRLF with no
        // whitespace before it.
        let mut ws = false;
        loop {
            while self.take_if(is_ws, line)? {
                ws = true;
            }
            match self.peek()? {
                b';' => self.take(line)?,
                b'\r' if !ws => break,
                _ => return self.bad(Why::Grammar),
            }
            while self.take_if(is_ws, line)? {}
            if !self.take_if(is_tchar, line)? {
                return self.bad(Why::Grammar);
            }
            while self.take_if(is_tchar, line)? {}
            ws = false;
            while self.take_if(is_ws, line)? {
                ws = true;
            }
            if self.peek()? == b'=' {
                self.take(line)?;
                while self.take_if(is_ws, line)? {}
                ws = false;
                if self.peek()? == b'"' {
                    self.take(line)?;
                    loop {
                        match self.peek()? {
                            b'"' => break,
                            b'\\' => {
                                self.take(line)?;
                                if !self.take_if(is_text, line)? {
                                    return self.bad(Why::Grammar);
                                }
                            }
                            b if is_text(b) => self.take(line)?,
                            _ => return self.bad(Why::Grammar),
                        }
                    }
                    self.take(line)?;
                } else {
                    if !self.take_if(is_tchar, line)? {
                        return self.bad(Why::Grammar);
                    }
                    while self.take_if(is_tchar, line)? {}
                }
            }
        }
        self.expect(b'\r', None)?;
        self.expect(b'\n', None)?;
        Ok(size)
    }

    /// The whole body; the offset after its final CRLF.
    fn body(&mut self) -> R<usize> {
        loop {
            let size = self.size_line()?;
            if size == 0 {
                break;
            }
            let rest = &self.s[self.i..];
            let take = usize::try_from(size).map_or(rest.len(), |n| n.min(rest.len()));
            self.data.extend_from_slice(&rest[..take]);
            self.i += take;
            if (take as u64) < size {
                return Err(Stop::Eof);
            }
            self.expect(b'\r', None)?;
            self.expect(b'\n', None)?;
        }
        // trailer-section CRLF, field-line = name ":" OWS value OWS.
        let section = Some((self.limits.max_trailer_bytes, Why::TrailerLimit));
        self.counted = 0;
        loop {
            if self.peek()? == b'\r' {
                self.take(None)?;
                self.expect(b'\n', None)?;
                return Ok(self.i);
            }
            if !self.take_if(is_tchar, section)? {
                return self.bad(Why::Grammar);
            }
            while self.take_if(is_tchar, section)? {}
            self.expect(b':', section)?;
            while self.take_if(is_text, section)? {}
            self.expect(b'\r', section)?;
            self.expect(b'\n', section)?;
        }
    }
}

fn reference(input: &[u8], limits: Limits) -> Outcome {
    let mut r = Ref {
        s: input,
        i: 0,
        limits,
        counted: 0,
        data: Vec::new(),
    };
    match r.body() {
        Ok(end) => Outcome::Done { end, data: r.data },
        Err(Stop::Eof) => Outcome::Open { data: r.data },
        Err(Stop::Bad(at, why)) => Outcome::Refused {
            at,
            why,
            data: r.data,
        },
    }
}

// ---------------------------------------------------------------------------
// Driving the decoder.
// ---------------------------------------------------------------------------

fn why(error: ChunkError) -> Why {
    match error {
        ChunkError::SizeOverflow => Why::Overflow,
        ChunkError::LineTooLong { .. } => Why::LineLimit,
        ChunkError::TrailerTooLong { .. } => Why::TrailerLimit,
        _ => Why::Grammar,
    }
}

/// Feeds `input` in the pieces that `cuts` (ascending offsets) make,
/// checking every feed's contract, and keeps feeding after the end or an
/// error to check that nothing more is taken.
fn decode(limits: Limits, input: &[u8], cuts: &[usize]) -> (Outcome, Option<ChunkError>) {
    let mut decoder = ChunkedDecoder::with_limits(limits);
    let mut data = Vec::new();
    let mut end: Option<Result<usize, ChunkError>> = None;
    let mut start = 0;
    for &cut in cuts.iter().chain([&input.len()]) {
        let piece = &input[start..cut];
        let mut spans = Vec::new();
        let result = decoder.feed(piece, |span| spans.push(span));
        let mut last = 0;
        for span in &spans {
            assert!(span.start < span.end, "empty span {span:?}");
            assert!(span.start >= last, "spans out of order: {spans:?}");
            last = span.end;
            data.extend_from_slice(&piece[span.clone()]);
        }
        match (end, result) {
            (None, Ok(Fed { consumed, done })) => {
                assert!(last <= consumed, "a span past the consumed bytes");
                assert_eq!(done, decoder.is_done());
                if done {
                    end = Some(Ok(start + consumed));
                } else {
                    assert_eq!(consumed, piece.len(), "an open body takes all it is fed");
                }
                assert_eq!(decoder.position(), (start + consumed) as u64);
            }
            (None, Err(error)) => {
                let at = decoder.position();
                assert!(
                    (start as u64..cut as u64).contains(&at),
                    "refused at {at}, outside the piece {start}..{cut}"
                );
                end = Some(Err(error));
            }
            (Some(Ok(consumed)), result) => {
                let after = Fed {
                    consumed: 0,
                    done: true,
                };
                assert_eq!(result, Ok(after), "a feed after the end");
                assert!(spans.is_empty());
                assert_eq!(decoder.position(), consumed as u64);
            }
            (Some(Err(error)), result) => {
                assert_eq!(result, Err(error), "errors are sticky");
                assert!(spans.is_empty());
                assert!(
                    decoder.position() < start as u64,
                    "position moved after an error"
                );
            }
        }
        start = cut;
    }
    match end {
        None => (Outcome::Open { data }, None),
        Some(Ok(end)) => (Outcome::Done { end, data }, None),
        Some(Err(error)) => {
            let at = usize::try_from(decoder.position()).unwrap_or(usize::MAX);
            let why = why(error);
            (Outcome::Refused { at, why, data }, Some(error))
        }
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&control, rest)) = bytes.split_first() else {
        return;
    };
    let (limits, rest) = if control & 8 != 0 {
        let [line, trailer, rest @ ..] = rest else {
            return;
        };
        let limits = Limits {
            max_line_bytes: usize::from(line % 32),
            max_trailer_bytes: usize::from(trailer % 64),
        };
        (limits, rest)
    } else {
        (Limits::DEFAULT, rest)
    };
    let splits = usize::from(control & 7).min(rest.len());
    let (splits, input) = rest.split_at(splits);
    let mut cuts = Vec::new();
    let mut at = 0;
    for &len in splits {
        at = (at + usize::from(len)).min(input.len());
        cuts.push(at);
    }

    let (whole, error) = decode(limits, input, &[]);
    let pieces = decode(limits, input, &cuts);
    assert_eq!(pieces, (whole.clone(), error), "split at {cuts:?}");
    let every: Vec<usize> = (0..input.len()).collect();
    assert_eq!(
        decode(limits, input, &every),
        (whole.clone(), error),
        "byte by byte"
    );
    let want = reference(input, limits);
    assert_eq!(
        whole,
        want,
        "decoder ({error:?}) and reference disagree on {:?} with {limits:?}",
        input.escape_ascii().to_string()
    );
});

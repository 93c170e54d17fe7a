//! A strict, incremental decoder for the chunked transfer coding of a
//! request body (RFC 9112 §7.1), sans I/O.
//!
//! [`ChunkedDecoder::feed`] judges every byte the moment it is fed: a prefix
//! that is not yet invalid is accepted, the first byte that cannot continue a
//! valid body is refused, and nothing is buffered or looked ahead at. That
//! lets it stand in front of a more lenient parser (only the bytes it
//! accepted are passed on) and drive a forwarder that decodes the body and
//! re-frames it (the data comes out as spans of the caller's own buffer).
//!
//! The grammar enforced, from RFC 9112 §7.1, §7.1.1, §7.1.2 and RFC 9110
//! §5.5, §5.6.2–§5.6.4:
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! chunk-ext-name = token
//! chunk-ext-val  = token / quoted-string
//! trailer-section = *( field-line CRLF )
//! field-line     = field-name ":" OWS field-value OWS
//! ```
//!
//! Where the RFC leaves a choice, the strict one is taken:
//!
//! - Lines end in CRLF only. The MAY of RFC 9112 §2.2 (accept a bare LF) is
//!   not taken: a bare LF, a bare CR and a CR followed by anything but LF
//!   are refused, since a parser that reads them differently is the classic
//!   chunk-boundary desync.
//! - Whitespace after the size or an extension is accepted only when a `;`
//!   follows it: the grammar has BWS before `;` and around `=`, never before
//!   CRLF, so `5 \r\n` and `5;a \r\n` are refused (as llhttp does).
//! - A chunk-size may have any number of leading zeros (within the line
//!   limit), but at most 16 significant hex digits, so every accepted size
//!   fits in a `u64` and no size wraps.
//! - Trailer field names are not interpreted; that is the forwarder's job
//!   (RFC 9110 §6.5.1). The trailer bytes are validated and then dropped:
//!   no data span ever covers them.
//!
//! ```
//! use switchyard_h1::chunked::{ChunkError, ChunkedDecoder};
//!
//! // An empty size line is not a last chunk (HTTP Garden server bug 17).
//! let mut decoder = ChunkedDecoder::new();
//! let refused = decoder.feed(b"\r\nhello\r\n0\r\n\r\n", |_| {});
//! assert_eq!(refused, Err(ChunkError::EmptySize));
//! assert_eq!(decoder.position(), 0);
//! ```

use std::fmt;
use std::ops::Range;

/// Bounds on the parts of a chunked body that are not data.
///
/// The decoder keeps no copy of these parts, so the bounds are not there to
/// cap memory; they stop a peer from holding a connection open with an
/// endless size line or trailer section (RFC 9112 §7.1.1: "a recipient
/// SHOULD limit ... chunk extensions").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes of one chunk size line: the size, its leading zeros
    /// and its extensions, not counting the CRLF. Default 4096.
    pub max_line_bytes: usize,
    /// The most bytes of the trailer section: every trailer field line with
    /// its CRLF, not counting the empty line that ends the body. 0 refuses
    /// any trailer field. Default 16384.
    pub max_trailer_bytes: usize,
}

impl Limits {
    /// The default limits: 4096-byte size lines, 16384 bytes of trailers.
    pub const DEFAULT: Limits = Limits {
        max_line_bytes: 4096,
        max_trailer_bytes: 16384,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What one [`ChunkedDecoder::feed`] call took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// How many bytes from the start of the input belong to the body: all
    /// of them, unless the body ended inside the input. The bytes after
    /// them belong to whatever follows the body (a pipelined request).
    pub consumed: usize,
    /// Whether the body's final CRLF was among the consumed bytes (or had
    /// been fed before).
    pub done: bool,
}

/// Why a chunked body was refused: one variant per framing rule. Every one
/// means the message framing is broken, so the request gets a 400 and the
/// connection is closed (RFC 9112 §11.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A CR or LF where a chunk size must start: `chunk-size = 1*HEXDIG`.
    #[error("empty chunk size line: a chunk size (hex digits) is required")]
    EmptySize,
    /// A byte other than a hex digit, `;`, whitespace before `;` or CRLF in
    /// the chunk size: a sign, a `0x` prefix, leading whitespace, `_`.
    #[error("invalid byte {} in chunk size: only hex digits, then `;` or CRLF, may follow", ShowByte(*.0))]
    BadSizeDigit(u8),
    /// More than 16 significant hex digits: the size does not fit in 64
    /// bits.
    #[error("chunk size does not fit in 64 bits")]
    SizeOverflow,
    /// Whitespace right before the CRLF of a chunk size line; it is only
    /// allowed before `;` or around `=`.
    #[error("whitespace at the end of a chunk size line (allowed only before `;` or around `=`)")]
    TrailingWhitespace,
    /// The chunk size line (size and extensions) is over
    /// [`Limits::max_line_bytes`].
    #[error("chunk size line (size and extensions) longer than {limit} bytes")]
    LineTooLong {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
    /// A `;` not followed by an extension name (`5;`, `5;=x`, `5;;a`).
    #[error("chunk extension with no name after `;`")]
    EmptyExtensionName,
    /// An `=` not followed by a value (`5;a=`).
    #[error("chunk extension with `=` but no value")]
    EmptyExtensionValue,
    /// A byte that cannot appear at this point of a chunk extension: a
    /// control byte, a separator inside a token, text after a quoted value.
    #[error("invalid byte {} in chunk extension", ShowByte(*.0))]
    BadExtensionByte(u8),
    /// The line ended inside a quoted extension value.
    #[error("quoted chunk extension value not closed before the end of the line")]
    UnterminatedQuotedString,
    /// An LF that does not follow a CR.
    #[error("bare LF in chunked body: lines must end in CRLF")]
    BareLf,
    /// A CR followed by something other than LF (the byte is given).
    #[error("CR not followed by LF in chunked body (got {})", ShowByte(*.0))]
    BareCr(u8),
    /// The byte right after `chunk-size` bytes of data is not the CR of a
    /// CRLF: the data is longer than its size line says.
    #[error("chunk data longer than its size, or not followed by CRLF (got {})", ShowByte(*.0))]
    MissingCrlfAfterData(u8),
    /// A trailer line starts with whitespace: obs-fold, or whitespace
    /// before the first field name.
    #[error("trailer line starts with whitespace (obs-fold)")]
    TrailerObsFold,
    /// A trailer line starts with `:`.
    #[error("trailer field with an empty name")]
    EmptyTrailerName,
    /// Whitespace between a trailer field name and its colon.
    #[error("whitespace between a trailer field name and its colon")]
    TrailerSpaceBeforeColon,
    /// A trailer line ended before any colon.
    #[error("trailer field line without a colon")]
    TrailerMissingColon,
    /// A byte that is not allowed in a trailer field name or value (a
    /// control byte, a separator in the name).
    #[error("invalid byte {} in trailer field", ShowByte(*.0))]
    BadTrailerByte(u8),
    /// The trailer section is over [`Limits::max_trailer_bytes`].
    #[error("trailer section longer than {limit} bytes")]
    TrailerTooLong {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
}

/// Shows a byte in an error message: printable ASCII as itself, anything
/// else (whitespace, controls, obs-text) as hex, so that log lines stay one
/// line and a NUL is visible.
struct ShowByte(u8);

impl fmt::Display for ShowByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}'", char::from(self.0))
        } else {
            write!(f, "0x{:02x}", self.0)
        }
    }
}

/// Where the decoder is in the body. Each state names what the next byte
/// may be; the current chunk size lives in [`ChunkedDecoder::size`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first byte of a chunk size line: a hex digit.
    SizeStart,
    /// In the size's hex digits.
    Size,
    /// Whitespace after the size: more of it or `;`.
    SizeBws,
    /// After `;`: whitespace or the first byte of an extension name.
    ExtBeforeName,
    /// In an extension name.
    ExtName,
    /// Whitespace after an extension name: more of it, `=` or `;`.
    ExtAfterName,
    /// After `=`: whitespace, a token or a `"`.
    ExtBeforeValue,
    /// In a token value.
    ExtToken,
    /// Inside a quoted-string value.
    ExtQuoted,
    /// After a `\` inside a quoted-string value.
    ExtQuotedEscape,
    /// Right after the closing `"` of a quoted-string value.
    ExtAfterQuoted,
    /// Whitespace after a value: more of it or `;`.
    ExtAfterValue,
    /// The CR of a size line was seen; the LF must follow.
    SizeLf,
    /// In chunk data; `size` bytes of it are still to come.
    Data,
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// The start of a trailer line, or of the empty line ending the body.
    TrailerStart,
    /// In a trailer field name.
    TrailerName,
    /// After the colon of a trailer field: OWS, value and OWS alike.
    TrailerValue,
    /// The CR of a trailer line was seen; the LF must follow.
    TrailerLf,
    /// The CR of the final empty line was seen; the LF must follow.
    EndLf,
    /// The body ended.
    Done,
    /// The body was refused; the decoder stays failed.
    Failed(ChunkError),
}

impl State {
    /// Whether the state is inside a chunk size line, whose bytes count
    /// against [`Limits::max_line_bytes`].
    fn in_size_line(self) -> bool {
        matches!(
            self,
            State::SizeStart
                | State::Size
                | State::SizeBws
                | State::ExtBeforeName
                | State::ExtName
                | State::ExtAfterName
                | State::ExtBeforeValue
                | State::ExtToken
                | State::ExtQuoted
                | State::ExtQuotedEscape
                | State::ExtAfterQuoted
                | State::ExtAfterValue
        )
    }

    /// Whether the state is inside a trailer field line, whose bytes count
    /// against [`Limits::max_trailer_bytes`].
    fn in_trailer_line(self) -> bool {
        matches!(
            self,
            State::TrailerName | State::TrailerValue | State::TrailerLf
        )
    }
}

/// The strict incremental chunked body decoder: a state machine of a few
/// integers, fed the body's bytes as they arrive.
///
/// After an error it stays failed: every later [`feed`](Self::feed) returns
/// the same error. After the body ends, every later feed consumes nothing.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// While reading a size line, the size so far; in [`State::Data`], the
    /// data bytes still to come.
    size: u64,
    /// Bytes counted against the current limit: of the current size line,
    /// or of the trailer section.
    counted: usize,
    /// Body bytes accepted so far, or after an error, the offset of the
    /// refused byte.
    position: u64,
    limits: Limits,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body, with [`Limits::DEFAULT`].
    #[must_use]
    pub const fn new() -> Self {
        Self::with_limits(Limits::DEFAULT)
    }

    /// A decoder at the start of a body, with the given limits.
    #[must_use]
    pub const fn with_limits(limits: Limits) -> Self {
        Self {
            state: State::SizeStart,
            size: 0,
            counted: 0,
            position: 0,
            limits,
        }
    }

    /// Whether the whole body, up to its final CRLF, has been fed.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// How many bytes of the body have been accepted so far, over all
    /// feeds. After an error, the offset of the refused byte from the start
    /// of the body, for the log line.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Feeds the next bytes of the body.
    ///
    /// Returns how many bytes of `input` belong to the body (all of them
    /// unless the body ended inside `input`) and whether it has ended.
    /// `data` is called, in order, with each non-empty range of `input`
    /// that is chunk data; the ranges lie within the consumed bytes. Every
    /// consumed byte is valid as far as it goes: the caller may pass the
    /// consumed bytes on before the body is complete.
    ///
    /// After the body has ended, returns `consumed: 0, done: true`: the
    /// bytes belong to the next message.
    ///
    /// Never allocates: the state is a few integers, data is handed out as
    /// ranges of `input`, and everything else is checked and skipped byte
    /// by byte, so the cost is one pass over the framing bytes and one call
    /// of `data` per data span.
    ///
    /// # Errors
    ///
    /// On the first byte that cannot continue a valid body, the rule it
    /// breaks; [`position`](Self::position) is then that byte's offset in
    /// the body. `data` has already been called for the data before it, but
    /// the body as a whole is refused. The decoder stays failed: later
    /// feeds return the same error and take nothing.
    pub fn feed<F>(&mut self, input: &[u8], mut data: F) -> Result<Fed, ChunkError>
    where
        F: FnMut(Range<usize>),
    {
        match self.state {
            State::Failed(error) => return Err(error),
            State::Done => {
                return Ok(Fed {
                    consumed: 0,
                    done: true,
                })
            }
            _ => {}
        }
        let mut at = 0;
        while let Some(rest) = input.get(at..).filter(|rest| !rest.is_empty()) {
            if self.state == State::Data {
                // Chunk data is opaque (RFC 9112 §7.1): skip it in one step.
                // `size` is never 0 in this state.
                let take =
                    usize::try_from(self.size).map_or(rest.len(), |size| size.min(rest.len()));
                data(at..at + take);
                at += take;
                // `take <= size`, so this never saturates.
                self.size = self.size.saturating_sub(take as u64);
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let Some(&byte) = rest.first() else { break };
            if let Err(error) = self.step(byte) {
                self.position = self.position.saturating_add(at as u64);
                self.state = State::Failed(error);
                return Err(error);
            }
            at += 1;
            if self.state == State::Done {
                break;
            }
        }
        self.position = self.position.saturating_add(at as u64);
        Ok(Fed {
            consumed: at,
            done: self.state == State::Done,
        })
    }

    /// Judges one byte outside chunk data and moves to the next state.
    fn step(&mut self, byte: u8) -> Result<(), ChunkError> {
        use State as S;
        let before = self.state;
        self.state = match (before, byte) {
            // A line ending where the line's grammar allows it: the CR must
            // be followed by LF and nothing else (RFC 9112 §2.2, §7.1).
            (S::SizeLf, b'\n') => {
                self.counted = 0;
                if self.size == 0 {
                    // last-chunk = 1*("0") [ chunk-ext ] CRLF (§7.1).
                    S::TrailerStart
                } else {
                    S::Data
                }
            }
            (S::DataLf, b'\n') => {
                self.counted = 0;
                S::SizeStart
            }
            (S::TrailerLf, b'\n') => S::TrailerStart,
            (S::EndLf, b'\n') => S::Done,
            (S::SizeLf | S::DataLf | S::TrailerLf | S::EndLf, other) => {
                return Err(ChunkError::BareCr(other))
            }
            // A LF anywhere else has no CR before it.
            (_, b'\n') => return Err(ChunkError::BareLf),

            // chunk-size = 1*HEXDIG (§7.1): an empty size is not 0, which
            // is the lenient reading that smuggles the next chunk.
            (S::SizeStart, b'\r') => return Err(ChunkError::EmptySize),
            (S::SizeStart, b) => match hex_value(b) {
                Some(digit) => {
                    self.size = u64::from(digit);
                    S::Size
                }
                None => return Err(ChunkError::BadSizeDigit(b)),
            },
            (S::Size, b'\r') => S::SizeLf,
            (S::Size, b';') => S::ExtBeforeName,
            (S::Size, b' ' | b'\t') => S::SizeBws,
            (S::Size, b) => match hex_value(b) {
                // "Recipients MUST anticipate potentially large hexadecimal
                // numerals and prevent parsing errors due to integer
                // conversion overflows" (§7.1): a 17th significant digit
                // would shift bits out of the top.
                Some(_) if self.size >> 60 != 0 => return Err(ChunkError::SizeOverflow),
                Some(digit) => {
                    self.size = (self.size << 4) | u64::from(digit);
                    S::Size
                }
                None => return Err(ChunkError::BadSizeDigit(b)),
            },
            // BWS is allowed before ";" only (§7.1.1), so whitespace must
            // lead to an extension, not to the end of the line.
            (S::SizeBws, b' ' | b'\t') => S::SizeBws,
            (S::SizeBws, b';') => S::ExtBeforeName,
            (S::SizeBws, b'\r') => return Err(ChunkError::TrailingWhitespace),
            (S::SizeBws, b) => return Err(ChunkError::BadSizeDigit(b)),

            // chunk-ext-name = token (§7.1.1, RFC 9110 §5.6.2).
            (S::ExtBeforeName, b' ' | b'\t') => S::ExtBeforeName,
            (S::ExtBeforeName, b) if is_tchar(b) => S::ExtName,
            (S::ExtBeforeName, b'\r' | b';' | b'=') => return Err(ChunkError::EmptyExtensionName),
            (S::ExtName, b) if is_tchar(b) => S::ExtName,
            (S::ExtName, b'\r') => S::SizeLf,
            (S::ExtName, b';') => S::ExtBeforeName,
            (S::ExtName, b'=') => S::ExtBeforeValue,
            (S::ExtName, b' ' | b'\t') => S::ExtAfterName,
            (S::ExtAfterName, b' ' | b'\t') => S::ExtAfterName,
            (S::ExtAfterName, b';') => S::ExtBeforeName,
            (S::ExtAfterName, b'=') => S::ExtBeforeValue,
            (S::ExtAfterName, b'\r') => return Err(ChunkError::TrailingWhitespace),

            // chunk-ext-val = token / quoted-string (§7.1.1).
            (S::ExtBeforeValue, b' ' | b'\t') => S::ExtBeforeValue,
            (S::ExtBeforeValue, b'"') => S::ExtQuoted,
            (S::ExtBeforeValue, b) if is_tchar(b) => S::ExtToken,
            (S::ExtBeforeValue, b'\r' | b';') => return Err(ChunkError::EmptyExtensionValue),
            (S::ExtToken, b) if is_tchar(b) => S::ExtToken,
            (S::ExtToken, b'\r') => S::SizeLf,
            (S::ExtToken, b';') => S::ExtBeforeName,
            (S::ExtToken, b' ' | b'\t') => S::ExtAfterValue,
            // quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
            // (RFC 9110 §5.6.4): no CR inside, so a quoted value can never
            // hide a line end from a parser that does not know quotes.
            (S::ExtQuoted, b'"') => S::ExtAfterQuoted,
            (S::ExtQuoted, b'\\') => S::ExtQuotedEscape,
            (S::ExtQuoted | S::ExtQuotedEscape, b'\r') => {
                return Err(ChunkError::UnterminatedQuotedString)
            }
            (S::ExtQuoted | S::ExtQuotedEscape, b) if is_text(b) => S::ExtQuoted,
            (S::ExtAfterQuoted, b'\r') => S::SizeLf,
            (S::ExtAfterQuoted, b';') => S::ExtBeforeName,
            (S::ExtAfterQuoted | S::ExtAfterValue, b' ' | b'\t') => S::ExtAfterValue,
            (S::ExtAfterValue, b';') => S::ExtBeforeName,
            (S::ExtAfterValue, b'\r') => return Err(ChunkError::TrailingWhitespace),
            (
                S::ExtBeforeName
                | S::ExtName
                | S::ExtAfterName
                | S::ExtBeforeValue
                | S::ExtToken
                | S::ExtQuoted
                | S::ExtQuotedEscape
                | S::ExtAfterQuoted
                | S::ExtAfterValue,
                b,
            ) => return Err(ChunkError::BadExtensionByte(b)),

            // chunk-data CRLF (§7.1): exactly the size, then CRLF.
            (S::DataCr, b'\r') => S::DataLf,
            (S::DataCr, b) => return Err(ChunkError::MissingCrlfAfterData(b)),

            // trailer-section = *( field-line CRLF ) (§7.1.2, §5).
            (S::TrailerStart, b'\r') => S::EndLf,
            // obs-fold is refused in a message body's trailers too (§5.2:
            // a server MUST either reject or replace it; nothing here can
            // replace), and so is whitespace before the first name (§2.2).
            (S::TrailerStart, b' ' | b'\t') => return Err(ChunkError::TrailerObsFold),
            (S::TrailerStart, b':') => return Err(ChunkError::EmptyTrailerName),
            (S::TrailerStart | S::TrailerName, b) if is_tchar(b) => S::TrailerName,
            (S::TrailerName, b':') => S::TrailerValue,
            // "No whitespace is allowed between the field name and colon"
            // and a server MUST reject it (§5.1).
            (S::TrailerName, b' ' | b'\t') => return Err(ChunkError::TrailerSpaceBeforeColon),
            (S::TrailerName, b'\r') => return Err(ChunkError::TrailerMissingColon),
            // OWS field-value OWS: visible bytes, obs-text, SP and HTAB; no
            // CR, LF or NUL inside (RFC 9110 §5.5).
            (S::TrailerValue, b'\r') => S::TrailerLf,
            (S::TrailerValue, b) if is_text(b) => S::TrailerValue,
            (S::TrailerStart | S::TrailerName | S::TrailerValue, b) => {
                return Err(ChunkError::BadTrailerByte(b))
            }

            // `feed` never steps in these states: it skips data in bulk and
            // returns before stepping once done or failed. Refuse rather than
            // panic if that ever changes: a byte here is past the data's end.
            (S::Failed(error), _) => return Err(error),
            (S::Data | S::Done, b) => return Err(ChunkError::MissingCrlfAfterData(b)),
        };
        // Count the byte against its line's limit; CRs are left out so a
        // size line's limit is the length of what comes before its CRLF.
        let counts = (before.in_size_line() && byte != b'\r')
            || before.in_trailer_line()
            || (before == State::TrailerStart && self.state == State::TrailerName);
        if counts {
            // Bounded by the limit plus one, so this never saturates.
            self.counted = self.counted.saturating_add(1);
            if before.in_size_line() {
                if self.counted > self.limits.max_line_bytes {
                    return Err(ChunkError::LineTooLong {
                        limit: self.limits.max_line_bytes,
                    });
                }
            } else if self.counted > self.limits.max_trailer_bytes {
                return Err(ChunkError::TrailerTooLong {
                    limit: self.limits.max_trailer_bytes,
                });
            }
        }
        Ok(())
    }
}

/// The value of a hex digit (`HEXDIG`, either case, RFC 5234 appendix B.1).
fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// `tchar` (RFC 9110 §5.6.2): the bytes of a token.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// HTAB, SP, VCHAR and obs-text: the bytes of a field value (RFC 9110
/// §5.5) and of a quoted-string's qdtext and quoted-pair (§5.6.4), whose
/// `"` and `\` are matched before this is asked. Excludes every control
/// byte but HTAB, and DEL.
fn is_text(byte: u8) -> bool {
    matches!(byte, b'\t' | b' '..=b'~' | 0x80..=0xff)
}

#[cfg(test)]
mod tests;

//! HTTP/1.1 message framing rules for Switchyard, as pure functions and
//! state machines: no I/O, no async runtime, no Pingora.
//!
//! The proxy must never forward what it did not parse (RFC 9112 §11.2), and
//! the parsers it sits on are more lenient than it can afford to be at a
//! trust boundary. The rules live here so the socket-level guard in front of
//! Pingora and a hand-written forwarder judge bytes the same way.
//!
//! - [`chunked`]: a strict, incremental decoder for a chunked request body
//!   (RFC 9112 §7.1) that judges every byte as it is fed, with no lookahead
//!   buffering and no allocation.
//! - [`response`]: where an upstream response's body ends (RFC 9112 §6.3)
//!   and whether its connection can be reused, judged strictly.
//! - [`name`]: comparing a parsed field name with a known one, cheaply.
//!
//! ```
//! use switchyard_h1::chunked::ChunkedDecoder;
//!
//! let mut decoder = ChunkedDecoder::new();
//! let input = b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
//! let mut body = Vec::new();
//! let fed = decoder.feed(input, |span| body.extend_from_slice(&input[span])).unwrap();
//! assert!(fed.done);
//! assert_eq!(body, b"hello");
//! // The pipelined next request is not part of this body.
//! assert_eq!(&input[fed.consumed..], b"GET / HTTP/1.1\r\n");
//! ```

pub mod chunked;
pub mod name;
pub mod response;

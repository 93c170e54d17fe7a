//! A strict check of a chunked request body, in the stream under Pingora.
//!
//! Pingora 0.9 decodes chunked bodies with `httparse::parse_chunk_size`,
//! which takes an empty chunk-size line for the last chunk: the body
//! `\r\nhello\r\n0\r\n\r\n` ends at once for Pingora, the upstream gets an
//! empty body and the client's next bytes run as a separate request, a
//! smuggling primitive. No hook of Pingora's sees the body's framing, so
//! [`ChunkGuard`] sits between the socket and Pingora for one request: it
//! lets the request head through, then judges every body byte with
//! [`switchyard_h1::chunked`] as it is read, and hands Pingora only bytes
//! that continue a valid body. On the first byte that cannot, the read fails
//! with a [`BadChunk`] error (and nothing of it reaches Pingora);
//! [`crate::proxy`] recognises that error and answers 400 and closes.
//!
//! Once the body has ended the guard passes bytes through untouched; the
//! connection loop in [`crate::front`] unwraps it before the next request.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::protocols::raw_connect::ProxyDigest;
use pingora_core::protocols::Stream;
use pingora_core::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use switchyard_h1::chunked::{ChunkError, ChunkedDecoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The error a read returns when the body's framing is broken; found again
/// in Pingora's error chain by [`bad_chunk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked body at byte {offset}: {error}")]
pub(crate) struct BadChunk {
    /// The broken rule.
    pub error: ChunkError,
    /// Offset of the refused byte in the body.
    pub offset: u64,
}

/// The stream of one request with a chunked body; see the module docs.
pub(crate) struct ChunkGuard {
    inner: Stream,
    /// Bytes of the request head still to pass before the body starts.
    head_left: usize,
    decoder: ChunkedDecoder,
    /// A refusal found after bytes this read could still hand over; the
    /// next read returns it.
    pending: Option<BadChunk>,
}

impl ChunkGuard {
    /// Guards `inner`, whose next `head_len` bytes are the request head
    /// (already checked) and whose bytes after that are a chunked body.
    pub(crate) fn new(inner: Stream, head_len: usize) -> Self {
        ChunkGuard {
            inner,
            head_left: head_len,
            decoder: ChunkedDecoder::new(),
            pending: None,
        }
    }

    /// The stream underneath, for the connection's next request. Only a
    /// finished body leaves the connection reusable; Pingora does not hand
    /// back a connection whose body failed.
    pub(crate) fn into_inner(self) -> Stream {
        self.inner
    }

    /// Judges the bytes just read (`fresh`, a suffix of what the caller's
    /// buffer holds) and returns how many of them may be handed over; when
    /// that is fewer than all, the refusal is in `pending`.
    fn judge(&mut self, fresh: &[u8]) -> usize {
        let head = self.head_left.min(fresh.len());
        self.head_left -= head;
        let body = &fresh[head..];
        if body.is_empty() || self.decoder.is_done() {
            return fresh.len();
        }
        let before = self.decoder.position();
        match self.decoder.feed(body, |_| {}) {
            // After the body's end come the next request's bytes, which the
            // connection loop judges as a head of its own.
            Ok(_) => fresh.len(),
            Err(error) => {
                let offset = self.decoder.position();
                let valid = usize::try_from(offset.saturating_sub(before)).unwrap_or(0);
                self.pending = Some(BadChunk { error, offset });
                head + valid.min(body.len())
            }
        }
    }
}

fn refusal(bad: BadChunk) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, bad)
}

/// The [`BadChunk`] behind a Pingora error, if a guard refused the body.
/// Pingora nests its errors in `cause` (its `Error` reports no `source`),
/// with the reader's I/O error at the bottom.
pub(crate) fn bad_chunk(e: &pingora_error::Error) -> Option<BadChunk> {
    let mut current = e;
    // Pingora wraps an error a handful of times at most; the bound only
    // guards against a cycle that cannot be built with owned boxes.
    for _ in 0..16 {
        let cause = current.cause.as_deref()?;
        // A nested error is held as `Error` or as its box, depending on
        // how it was passed to `Error::because`.
        if let Some(inner) = cause.downcast_ref::<pingora_error::Error>() {
            current = inner;
            continue;
        }
        if let Some(inner) = cause.downcast_ref::<Box<pingora_error::Error>>() {
            current = inner;
            continue;
        }
        return cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<BadChunk>())
            .copied();
    }
    None
}

impl AsyncRead for ChunkGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(bad) = self.pending {
            return Poll::Ready(Err(refusal(bad)));
        }
        let start = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let fresh_len = buf.filled().len() - start;
        let pass = self.judge(&buf.filled()[start..]);
        match self.pending {
            None => Poll::Ready(Ok(())),
            // Hand over the valid part; the refusal comes with the next read.
            Some(_) if pass > 0 && pass <= fresh_len => {
                buf.set_filled(start + pass);
                Poll::Ready(Ok(()))
            }
            Some(bad) => {
                buf.set_filled(start);
                Poll::Ready(Err(refusal(bad)))
            }
        }
    }
}

impl AsyncWrite for ChunkGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for ChunkGuard {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for ChunkGuard {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for ChunkGuard {}

impl GetTimingDigest for ChunkGuard {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for ChunkGuard {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for ChunkGuard {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for ChunkGuard {
    // Peeking would show bytes the guard has not judged; Pingora only peeks
    // before a request (for TLS/protocol detection), never mid-body.
}

impl fmt::Debug for ChunkGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkGuard")
            .field("inner", &self.inner)
            .field("head_left", &self.head_left)
            .field("done", &self.decoder.is_done())
            .field("pending", &self.pending)
            .finish()
    }
}

/// The plain stream under a guard, or any other stream as it is; `None`
/// only if a guard could not be taken apart (the connection then closes).
pub(crate) fn unwrap_guard(stream: Stream) -> Option<Stream> {
    if !stream.as_any().is::<ChunkGuard>() {
        return Some(stream);
    }
    stream
        .into_any()
        .downcast::<ChunkGuard>()
        .ok()
        .map(|guard| guard.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use tokio::io::AsyncReadExt;

    async fn read_all(guard: &mut ChunkGuard) -> (Vec<u8>, Option<BadChunk>) {
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            match guard.read(&mut buf).await {
                Ok(0) => return (out, None),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => {
                    let bad = e
                        .get_ref()
                        .and_then(|i| i.downcast_ref::<BadChunk>())
                        .copied();
                    return (out, bad);
                }
            }
        }
    }

    fn guard(bytes: &[u8], head: usize) -> ChunkGuard {
        ChunkGuard::new(Box::new(Cursor::new(bytes.to_vec())), head)
    }

    const HEAD: &[u8] = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";

    #[tokio::test]
    async fn a_valid_body_and_what_follows_pass_untouched() {
        let wire = [HEAD, b"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n"].concat();
        let (out, bad) = read_all(&mut guard(&wire, HEAD.len())).await;
        assert_eq!(bad, None);
        assert_eq!(out, wire);
    }

    /// The smuggling case: an empty chunk-size line. The head and nothing
    /// of the body reach the reader, then the read fails.
    #[tokio::test]
    async fn an_empty_size_line_stops_before_the_bad_byte() {
        let wire = [HEAD, b"\r\nhello\r\n0\r\n\r\n"].concat();
        let (out, bad) = read_all(&mut guard(&wire, HEAD.len())).await;
        assert_eq!(out, HEAD);
        assert_eq!(
            bad,
            Some(BadChunk {
                error: ChunkError::EmptySize,
                offset: 0
            })
        );
    }

    #[tokio::test]
    async fn valid_bytes_before_a_bad_one_pass_then_the_read_fails() {
        let wire = [HEAD, b"3\r\nabc\r\n5x\r\n"].concat();
        let (out, bad) = read_all(&mut guard(&wire, HEAD.len())).await;
        assert_eq!(out, [HEAD, b"3\r\nabc\r\n5"].concat());
        let bad = bad.expect("refused");
        assert_eq!(bad.offset, 9);
        assert_eq!(bad.error, ChunkError::BadSizeDigit(b'x'));
        // Every later read fails the same way.
        let mut g = guard(&wire, HEAD.len());
        let _ = read_all(&mut g).await;
        let (more, again) = read_all(&mut g).await;
        assert!(more.is_empty());
        assert_eq!(again, Some(bad));
    }

    #[test]
    fn the_refusal_is_found_in_a_pingora_error_chain() {
        let bad = BadChunk {
            error: ChunkError::BareLf,
            offset: 3,
        };
        let inner = pingora_error::Error::because(
            pingora_error::ErrorType::ReadError,
            "when reading body",
            refusal(bad),
        );
        assert_eq!(bad_chunk(&inner), Some(bad));
        // As pingora-proxy hands it to fail_to_proxy: wrapped once more,
        // as an `Error` or as a `Box<Error>`.
        let unboxed = pingora_error::Error::because(
            pingora_error::ErrorType::ReadError,
            "when reading body",
            refusal(bad),
        );
        let outer = pingora_error::Error::because(
            pingora_error::ErrorType::ReadError,
            "Peer: 127.0.0.1:1",
            *unboxed,
        );
        assert_eq!(bad_chunk(&outer), Some(bad));
        let boxed = pingora_error::Error::because(
            pingora_error::ErrorType::ReadError,
            "Peer: 127.0.0.1:1",
            inner,
        );
        assert_eq!(bad_chunk(&boxed), Some(bad));
        let other = pingora_error::Error::explain(pingora_error::ErrorType::ReadError, "x");
        assert_eq!(bad_chunk(&other), None);
    }
}

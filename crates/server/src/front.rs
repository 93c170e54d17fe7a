//! The main listener's connection loop, in front of Pingora's HTTP proxy.
//!
//! Pingora 0.9 reads a request head with a 60 s timeout *per read*, up to
//! 1 MB, on as many connections as arrive, and answers a malformed head
//! without calling any of our hooks. [`Front`] takes the part of Pingora's
//! own HTTP/1 connection loop that waits for and reads each request head,
//! and adds what an operator needs there:
//!
//! - `--max-connections`: a connection beyond the cap is answered `503` and
//!   closed at once, and counted;
//! - `--header-timeout`: the whole head must arrive within it, counted from
//!   the connection's start (first request) or from the head's first byte
//!   (later requests); else `408` and close;
//! - `--max-header-bytes`: `431` (or `414` for the request line alone);
//! - the heads Pingora would refuse are refused here ([`crate::head`]), so
//!   each gets its reason in the answer, an access-log line and a count;
//! - `--keepalive-timeout`: how long an idle connection waits for its next
//!   request.
//!
//! The loop over a connection's requests is a copy of Pingora's own
//! (`impl<T: HttpServerApp> ServerApp for T`, `pingora-core-0.9.1/src/apps/mod.rs`):
//! the first request's keep-alive setting, the persistent settings carried
//! from one request to the next, the stop at shutdown. Pingora is pinned to
//! that version; re-read that impl when upgrading.
//!
//! A head inside the fast path's envelope ([`Head::fast`]) is served by
//! [`crate::fast`] right here, unless `--fast-path off`; the connection
//! then goes on to its next request in this loop, whichever path that
//! one takes.
//!
//! Any other accepted head is put back in front of the stream's unread bytes
//! (`Stream::rewind`) and the connection goes on to Pingora exactly as it
//! came in — except that a request with a chunked body goes on wrapped in a
//! `ChunkGuard`, which checks the body's framing strictly as Pingora
//! reads it (`chunk_guard.rs`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::BytesMut;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::Stream as TcpStream;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_proxy::HttpProxy;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::chunk_guard::{unwrap_guard, ChunkGuard};
use crate::deadline::Deadline;
use crate::fast::{FastPath, Next};
use crate::head::{self, Head, Refusal, Verdict};
use crate::metrics::RouteMetrics;
use crate::proxy::Router;

/// Limits on what a client may send before its request goes to Pingora.
#[derive(Debug, Clone)]
pub(crate) struct FrontLimits {
    /// Time for a whole request head to arrive.
    pub header_timeout: Duration,
    /// Size limit of a request head, request line included.
    pub max_header_bytes: usize,
    /// Idle time allowed between requests; `None` waits for ever.
    pub keepalive_timeout: Option<Duration>,
}

/// Time to write a refusal and let the client read it before closing.
const LINGER: Duration = Duration::from_secs(1);
/// Bytes read and dropped while lingering, at most.
const LINGER_BYTES: usize = 256 * 1024;
/// Each read while waiting for a head asks for at least this much room.
const READ_CHUNK: usize = 4096;

/// The main listener's `ServerApp`: one per shard, all sharing one
/// [`ConnectionSlots`].
pub(crate) struct Front {
    proxy: Arc<HttpProxy<Router>>,
    /// `None` with `--fast-path off`.
    fast: Option<FastPath>,
    limits: FrontLimits,
    slots: Arc<ConnectionSlots>,
    unmatched: RouteMetrics,
    access_log: bool,
    /// The CPU this shard's thread is held to (`--cpu-affinity`).
    cpu: Option<usize>,
    /// Whether [`Front::start_shard`] has run on this shard's thread.
    started: std::sync::atomic::AtomicBool,
}

impl Front {
    /// `proxy` serves every request whose head passes.
    pub(crate) fn new(
        proxy: HttpProxy<Router>,
        fast: Option<FastPath>,
        limits: FrontLimits,
        slots: Arc<ConnectionSlots>,
        unmatched: RouteMetrics,
        access_log: bool,
        cpu: Option<usize>,
    ) -> Self {
        Front {
            proxy: Arc::new(proxy),
            fast,
            limits,
            slots,
            unmatched,
            access_log,
            cpu,
            started: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// How waiting for a request head ended.
enum HeadRead {
    /// A whole head (and maybe more) is in the buffer; its first bytes
    /// arrived at this instant.
    Ready(Head, Instant),
    /// The client closed, went idle too long, or the server is stopping.
    Closed,
    /// The head is refused; the client gets this answer.
    Refused(Refusal, Instant),
}

#[async_trait]
impl ServerApp for Front {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if !self.started.swap(true, Ordering::Relaxed) {
            self.start_shard();
        }
        let Some(_slot) = self.slots.acquire() else {
            self.slots.refuse(stream).await;
            return None;
        };
        if !stream.as_any().is::<TcpStream>() {
            // Not a plain TCP stream (never on our listeners): Pingora's
            // own loop, without the checks above.
            return ServerApp::process_new(&self.proxy, stream, shutdown).await;
        }
        let mut stream = stream;
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut first = true;
        // One wait for shutdown per connection, polled again by every idle
        // wait between requests: registering a new one per request cost a
        // measurable share of the fast path.
        let mut stopping = shutdown.clone();
        let stop = stopping.wait_for(|s| *s);
        tokio::pin!(stop);
        // The connection's one timer for its waits (`deadline.rs`); armed
        // by the first of them.
        let timer = tokio::time::sleep(Duration::from_secs(86_400));
        tokio::pin!(timer);
        let mut deadline = Deadline::new(timer);
        let client = self
            .fast
            .as_ref()
            .zip(peer(&stream))
            .map(|(fast, addr)| fast.peer(addr.ip()));
        loop {
            if buf.is_empty() && buf.capacity() > 2 * READ_CHUNK {
                // A large head grew it; an idle connection should not keep
                // that much.
                buf = BytesMut::with_capacity(READ_CHUNK);
            }
            // A head for the fast path is planned from the parse that
            // judged it, while that parse is at hand.
            let mut prepared = None;
            let mut visit = |bytes: &[u8], req: &httparse::Request<'_, '_>, head: &Head| {
                if let (Some(fast), true) = (&self.fast, head.fast || head.tunnel) {
                    prepared = Some(fast.prepare(bytes, req, head.tunnel, client.as_ref()));
                }
            };
            let (head, arrived) = match self
                .read_head(
                    &mut stream,
                    &mut buf,
                    first,
                    stop.as_mut(),
                    &mut deadline,
                    &mut visit,
                )
                .await
            {
                HeadRead::Ready(head, arrived) => (head, arrived),
                HeadRead::Closed => return None,
                HeadRead::Refused(refusal, started) => {
                    self.refuse(stream, &buf, &refusal, started).await;
                    return None;
                }
            };
            if let (Some(fast), Some(prepared)) = (&self.fast, prepared.take()) {
                let next = fast
                    .serve(
                        &mut stream,
                        &mut buf,
                        head.len,
                        prepared,
                        arrived,
                        &mut deadline,
                        shutdown,
                    )
                    .await;
                if next == Next::Close || *shutdown.borrow() {
                    return None;
                }
                first = false;
                continue;
            }
            stream = rewind(stream, &buf)?;
            buf.clear();
            if head.chunked {
                stream = Box::new(ChunkGuard::new(stream, head.len));
            }
            let mut session = ServerSession::new_http1(stream);
            match settings.take() {
                Some(s) => s.apply_to_session(&mut session),
                // What Pingora's loop does for a connection's first request.
                None if *shutdown.borrow() => session.set_keepalive(None),
                None if first => session.set_keepalive(Some(60)),
                None => {}
            }
            // Boxed: Pingora's request future is large, and inline it would
            // make every connection's future (fast-path ones included) that
            // large for its whole life.
            let reused = Box::pin(self.proxy.process_new_http(session, shutdown)).await?;
            let (next, persistent) = reused.consume();
            stream = unwrap_guard(next)?;
            settings = persistent;
            first = false;
        }
    }

    async fn cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

impl Front {
    /// What a shard sets up on its own thread, when its first connection
    /// arrives (Pingora runs no code of ours there before): the CPU it is
    /// held to, and its [`timer_heartbeat`].
    fn start_shard(&self) {
        if let Some(cpu) = self.cpu {
            match crate::affinity::pin_current_thread(cpu) {
                Ok(()) => tracing::debug!(cpu, "shard thread held to its CPU"),
                Err(error) => tracing::warn!(
                    cpu,
                    %error,
                    "could not hold a shard thread to its CPU (--cpu-affinity); it runs unpinned"
                ),
            }
        }
        tokio::spawn(timer_heartbeat());
    }

    /// Waits for the next request head on `stream` and reads it into `buf`.
    async fn read_head<S: std::future::Future>(
        &self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        first: bool,
        stop: std::pin::Pin<&mut S>,
        deadline: &mut Deadline<'_>,
        visit: &mut head::Visit<'_>,
    ) -> HeadRead {
        // `started` begins the header timeout; `arrived` is when the head's
        // first bytes came, where the request's own time starts (as
        // nginx's `$request_time` counts it). The two differ only for a
        // connection's first request, whose timeout runs from the accept.
        let (started, mut arrived) = if !first && buf.is_empty() {
            // Between requests: idle up to the keep-alive timeout, and not
            // past the moment the listeners close.
            let idle = read_more(stream, buf, deadline, self.limits.keepalive_timeout);
            let got = tokio::select! {
                biased;
                got = idle => got,
                _ = stop => return HeadRead::Closed,
            };
            match got {
                Ok(n) if n > 0 => {
                    let now = Instant::now();
                    (now, Some(now))
                }
                _ => return HeadRead::Closed,
            }
        } else {
            let now = Instant::now();
            (now, (!buf.is_empty()).then_some(now))
        };
        let head_by = started + self.limits.header_timeout;
        loop {
            if !buf.is_empty() {
                let arrived = *arrived.get_or_insert_with(Instant::now);
                match head::scan_with(buf, self.limits.max_header_bytes, visit) {
                    Verdict::Complete(head) => return HeadRead::Ready(head, arrived),
                    Verdict::Refuse(r) => return HeadRead::Refused(r, started),
                    Verdict::Partial => {}
                }
            }
            let left = head_by.saturating_duration_since(Instant::now());
            match read_more(stream, buf, deadline, Some(left)).await {
                Ok(n) if n > 0 => {}
                // Timed out: a client that started a head and stalled gets
                // 408; one that never sent a byte is just closed.
                Err(ReadStop::TimedOut) if !buf.is_empty() => {
                    return HeadRead::Refused(
                        Refusal {
                            status: 408,
                            reason: "request head not received in time",
                        },
                        started,
                    )
                }
                // Closed by the client, a read error, or silence.
                _ => return HeadRead::Closed,
            }
        }
    }

    /// Answers a refused head, counts and logs it, and closes.
    async fn refuse(&self, mut stream: Stream, head: &[u8], refusal: &Refusal, started: Instant) {
        let phrase = http::StatusCode::from_u16(refusal.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("error");
        // Say which limit was hit, so a client's developer can tell a
        // proxy limit from a bug of their own.
        let limit = match refusal.status {
            408 => format!(" (limit {:?})", self.limits.header_timeout),
            414 | 431 => format!(" (limit {} bytes)", self.limits.max_header_bytes),
            _ => String::new(),
        };
        let body = format!(
            "{} {}: {}{limit}\n",
            refusal.status,
            phrase.to_ascii_lowercase(),
            refusal.reason
        );
        let answer = plain_answer(refusal.status, phrase, &body);
        let written = write_answer(&mut stream, answer.as_bytes()).await;
        let elapsed = started.elapsed();
        self.unmatched.request(refusal.status, elapsed);
        if self.access_log {
            let (method, target) = request_line(head);
            tracing::info!(
                target: "switchyard::access",
                method = %method,
                path = %target,
                route = crate::metrics::UNMATCHED,
                status = refusal.status,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                client = peer(&stream).map(tracing::field::display),
                error = refusal.reason,
                answered = written,
                "request refused"
            );
        }
        if written {
            linger(&mut stream).await;
        }
    }
}

/// Keeps the shard's timer driver planning to wake within a second.
///
/// Tokio's timer wakes its own driver (an eventfd write: a system call)
/// whenever a timer is set to fire before the driver's planned wake-up.
/// When a shard's only timers were idle keep-alive ones (75 s), each
/// upstream read's 60 s timer came before that plan: 0.18 such writes per
/// request were measured under load. With a timer that always fires within
/// a second, the plan is never more than a second away, and timers of a
/// second or more never cause a wake-up. It costs one wake-up a second.
async fn timer_heartbeat() {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Why a read gave no bytes.
enum ReadStop {
    /// The time allowed ran out.
    TimedOut,
    /// The connection failed (reset, or worse).
    Failed,
}

/// Reads once into `buf`, within `limit` if there is one (timed by the
/// connection's `deadline`); `Ok(0)` when the client closed.
async fn read_more(
    stream: &mut Stream,
    buf: &mut BytesMut,
    deadline: &mut Deadline<'_>,
    limit: Option<Duration>,
) -> Result<usize, ReadStop> {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
    let read = stream.read_buf(buf);
    let result = match limit {
        Some(limit) => deadline
            .within(limit, read)
            .await
            .map_err(|_| ReadStop::TimedOut)?,
        None => read.await,
    };
    result.map_err(|_| ReadStop::Failed)
}

/// Puts `head` back in front of the stream's unread bytes, for Pingora to
/// read as if it came straight from the socket.
fn rewind(stream: Stream, head: &[u8]) -> Option<Stream> {
    match stream.into_any().downcast::<TcpStream>() {
        Ok(mut tcp) => {
            tcp.rewind(head);
            Some(tcp)
        }
        // Checked when the connection arrived; cannot change since.
        Err(_) => None,
    }
}

/// A complete `Connection: close` answer with a text body.
fn plain_answer(code: u16, reason: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Writes `answer` and ends our side of the connection; false when the
/// client could not be written to in time.
async fn write_answer(stream: &mut Stream, answer: &[u8]) -> bool {
    tokio::time::timeout(LINGER, async {
        stream.write_all(answer).await?;
        stream.flush().await?;
        stream.shutdown().await
    })
    .await
    .is_ok_and(|r| r.is_ok())
}

/// Reads (and drops) what the client still sends, for a moment, so that
/// closing with unread bytes does not reset the connection before the
/// client has read the answer (nginx's lingering close). Our side must
/// already be shut down for writing.
pub(crate) async fn linger(stream: &mut Stream) {
    let until = Instant::now() + LINGER;
    // On the heap: an array here would be part of every connection's
    // future, lingering or not.
    let mut scratch = vec![0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}

/// Method and target of a (possibly broken) request line, for the log:
/// lossy, escaped and cut short.
fn request_line(head: &[u8]) -> (String, String) {
    const MAX: usize = 256;
    let (start, end) = head::request_line_span(head);
    let line = &head[start..end.unwrap_or(head.len())];
    let line = &line[..line.len().min(MAX)];
    let mut parts = line.trim_ascii_end().splitn(3, |&b| b == b' ');
    let mut field = || {
        parts
            .next()
            .map(|p| p.escape_ascii().to_string())
            .unwrap_or_default()
    };
    let method = field();
    (method, field())
}

fn peer(stream: &Stream) -> Option<std::net::SocketAddr> {
    let digest = stream.get_socket_digest()?;
    digest.peer_addr()?.as_inet().copied()
}

/// The count of open client connections on the main listener, across all
/// shards, against `--max-connections`.
pub(crate) struct ConnectionSlots {
    open: AtomicUsize,
    max: usize,
    gauge: IntGauge,
    refused: IntCounter,
    /// Refusals not yet reported in the log (it says so at most every
    /// [`REFUSAL_LOG_EVERY`], not once per connection).
    unlogged: AtomicU64,
    last_logged: std::sync::Mutex<Option<Instant>>,
}

const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

impl ConnectionSlots {
    /// `max` of `None` means no cap (the gauge still counts).
    pub(crate) fn new(max: Option<usize>, gauge: IntGauge, refused: IntCounter) -> Self {
        ConnectionSlots {
            open: AtomicUsize::new(0),
            max: max.unwrap_or(usize::MAX),
            gauge,
            refused,
            unlogged: AtomicU64::new(0),
            last_logged: std::sync::Mutex::new(None),
        }
    }

    fn acquire(self: &Arc<Self>) -> Option<Slot> {
        let was = self.open.fetch_add(1, Ordering::AcqRel);
        if was >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.gauge.inc();
        Some(Slot(Arc::clone(self)))
    }

    /// Answers a connection beyond the cap and closes it.
    async fn refuse(&self, mut stream: Stream) {
        self.refused.inc();
        self.unlogged.fetch_add(1, Ordering::Relaxed);
        self.maybe_log();
        let body = format!("503 too many connections (limit {})\n", self.max);
        let answer = plain_answer(503, "Service Unavailable", &body);
        if write_answer(&mut stream, answer.as_bytes()).await {
            linger(&mut stream).await;
        }
    }

    fn maybe_log(&self) {
        let Ok(mut last) = self.last_logged.try_lock() else {
            return; // another thread is logging right now
        };
        if last.is_some_and(|t| t.elapsed() < REFUSAL_LOG_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        let refused = self.unlogged.swap(0, Ordering::Relaxed);
        tracing::warn!(
            limit = self.max,
            refused,
            "connection limit reached: refusing new connections with 503 (--max-connections)"
        );
    }
}

/// One open connection; gives its place back when dropped.
struct Slot(Arc<ConnectionSlots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_is_escaped_and_split() {
        assert_eq!(
            request_line(b"\r\nGET /a?b HTTP/1.1\r\nHost: x\r\n"),
            ("GET".to_owned(), "/a?b".to_owned())
        );
        assert_eq!(
            request_line(b"G\x01T /\xff"),
            ("G\\x01T".to_owned(), "/\\xff".to_owned())
        );
        assert_eq!(request_line(b""), (String::new(), String::new()));
    }

    #[test]
    fn slots_refuse_beyond_the_cap_and_free_on_drop() {
        let gauge = IntGauge::new("g", "g").unwrap_or_else(|e| panic!("{e}"));
        let refused = IntCounter::new("r", "r").unwrap_or_else(|e| panic!("{e}"));
        let slots = Arc::new(ConnectionSlots::new(Some(2), gauge.clone(), refused));
        let a = slots.acquire();
        let b = slots.acquire();
        assert!(a.is_some() && b.is_some());
        assert!(slots.acquire().is_none());
        assert_eq!(gauge.get(), 2);
        drop(a);
        assert_eq!(gauge.get(), 1);
        assert!(slots.acquire().is_some());
    }
}

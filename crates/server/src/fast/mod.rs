//! The fast path: plain HTTP/1.1 requests forwarded by hand, inside
//! [`crate::front::Front`], on pingora-core's server, listeners and
//! runtimes but without pingora-proxy's per-request machinery.
//!
//! Which requests come here is decided from the head alone
//! ([`crate::head::Head::fast`]): HTTP/1.1, origin form, one `Host`, no
//! `Upgrade`, `Expect` or `CONNECT`, a body that is absent, one
//! `Content-Length` or exactly `chunked`. Everything else (WebSocket
//! upgrades, `Expect: 100-continue`, HTTP/1.0, absolute form, odd framing)
//! goes to pingora-proxy as before. Both paths take the routing decision
//! from [`crate::decide::decide`] on the snapshot current when the request
//! arrived, and give the same answers (checked by a differential test,
//! `tests/differential.rs`).
//!
//! What it does per request, and the rules it keeps (RFC 9112):
//! - the upstream request is written from the parsed head: the request
//!   line (with the route's path rewrite), the client's fields minus the
//!   hop-by-hop ones and those `Connection` names, then `X-Forwarded-For`,
//!   `X-Real-IP` and `X-Forwarded-Proto`, as the Pingora path sends them;
//! - a chunked body (either way) is decoded strictly and framed anew;
//!   nothing is forwarded that was not parsed;
//! - the response's framing is judged strictly
//!   ([`switchyard_h1::response`]); a response it cannot trust is a 502
//!   and its connection is closed;
//! - an upstream connection goes back to the shard's [`pool::Pool`] only
//!   when its response was read to its exact end with nothing after it;
//! - one snapshot per request, the connection cap, the timeouts, metrics,
//!   the access log and drain work as on the Pingora path.

mod crlf;
mod pool;
mod wire;

use std::borrow::Cow;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use crossbeam_utils::CachePadded;
use http::Method;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use pingora_error::ErrorType;
use prometheus::IntCounter;
use switchyard_h1::chunked::ChunkedDecoder;
use switchyard_h1::name::name_is;
use switchyard_h1::response::{self as framing, BodyLength, Framing};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::chunk_guard::BadChunk;
use crate::deadline::{within, Deadline, TimedOut};
use crate::decide::{decide, Decision, RequestTarget};
use crate::forwarded::{chain, forwarded, Peer};
use crate::lifecycle::Lifecycle;
use crate::metrics::{CutReason, Metrics, RouteMetrics, UpstreamErrorKind, HEALTH, UNMATCHED};
use crate::proxy::RouterOptions;
use crate::state::{RouteEntry, RouteRuntime, SharedSnapshot, Snapshot, Target};

pub(crate) use pool::Pool;

/// As many header fields as the head check accepts.
const MAX_HEADERS: usize = 256;
/// As many header fields as an upstream response may have (more is a
/// 502), as many as a request may.
const MAX_RESPONSE_HEADERS: usize = MAX_HEADERS;
/// The largest upstream response head taken (interim heads before it
/// included); beyond it, 502. nginx's default is 4–8 KiB.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Bytes asked for per read of a response from the upstream.
const READ_SIZE: usize = 16 * 1024;
/// Bytes asked for per read of a request body from the client: a slow
/// upload holds about this much (the size of the buffer a head is read into).
const BODY_READ_SIZE: usize = 4 * 1024;
/// A response body at most this large that is already read goes out in
/// the same write as its head.
const INLINE_BODY: usize = 16 * 1024;
/// Pipelined bytes read from the client while its request is upstream,
/// at most; beyond that the client is not read until the response is out.
const MAX_READ_AHEAD: usize = 64 * 1024;
/// Time allowed for each read of a request body from the client.
const CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Each direction of a tunnel (an upgraded connection) reads this much at
/// a time; a WebSocket holds twice this while open.
const TUNNEL_BUFFER: usize = 4 * 1024;
/// A per-connection buffer larger than this after a request is dropped,
/// so an idle keep-alive connection stays small.
const KEEP_CAPACITY: usize = 16 * 1024;

/// What the connection does after one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Read the next request (its first bytes may already be buffered).
    KeepAlive,
    /// Close the connection.
    Close,
}

/// The buffers one request works in. They come from the shard's
/// [`Spares`] and go back there when the request ends, so a request in
/// steady state allocates nothing and an idle keep-alive connection holds
/// none of them.
/// Empty ones (the default) grow on first use.
#[derive(Default)]
pub(crate) struct Scratch {
    /// What is written next, to the upstream or to the client.
    out: Vec<u8>,
    /// Bytes read from the upstream.
    up: BytesMut,
    /// The access log's copy of the method and target ([`LogText`]).
    log: String,
    /// Whether the upstream has sent any byte for this request: one that
    /// has had the request, and is not asked again after a close.
    heard: bool,
}

impl Scratch {
    /// Drops buffers a large message grew, so spares stay small.
    fn trim(&mut self) {
        if self.out.capacity() > KEEP_CAPACITY {
            self.out = Vec::new();
        }
        if self.up.capacity() > 2 * KEEP_CAPACITY {
            self.up = BytesMut::new();
        }
        if self.log.capacity() > KEEP_CAPACITY {
            self.log = String::new();
        }
    }
}

/// Spare [`Scratch`] buffers of one shard: as many as its requests in
/// flight needed at once, up to [`MAX_SPARES`].
struct Spares(std::sync::Mutex<Vec<Scratch>>);

/// Spare scratch buffers kept per shard, at most.
const MAX_SPARES: usize = 256;

impl Spares {
    fn lease(&self) -> Lease<'_> {
        let spare = self.0.lock().ok().and_then(|mut v| v.pop());
        Lease {
            spares: self,
            scratch: spare.unwrap_or_default(),
        }
    }
}

/// A [`Scratch`] in use; back to its [`Spares`] when dropped.
struct Lease<'a> {
    spares: &'a Spares,
    scratch: Scratch,
}

impl std::ops::Deref for Lease<'_> {
    type Target = Scratch;

    fn deref(&self) -> &Scratch {
        &self.scratch
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Scratch {
        &mut self.scratch
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        // An empty Scratch allocates nothing.
        let mut scratch = std::mem::take(&mut self.scratch);
        if let Ok(mut spares) = self.spares.0.lock() {
            if spares.len() < MAX_SPARES {
                scratch.trim();
                scratch.out.clear();
                scratch.up.clear();
                spares.push(scratch);
            }
        }
    }
}

/// The fast path of one shard.
pub(crate) struct FastPath {
    // The three fields every request writes (locks taken and released)
    // each on a cache line of its own: the other shard's are close by in
    // memory, and a line shared with them would move between the cores.
    spares: CachePadded<Spares>,
    snapshot: SharedSnapshot,
    /// This shard's hold on the snapshot, for its requests to share.
    held: CachePadded<std::sync::Mutex<Option<Arc<Held>>>>,
    lifecycle: Arc<Lifecycle>,
    pool: CachePadded<Pool>,
    unmatched: RouteMetrics,
    health: RouteMetrics,
    send_timeouts: IntCounter,
    idle_tunnels: IntCounter,
    options: RouterOptions,
    /// This shard's access-log batch; `None` logs through `tracing`.
    log: Option<Arc<crate::access_log::Batch>>,
}

/// One shard's hold on a snapshot, shared by the shard's requests that
/// started on it. A request keeps its route alive by holding this, not the
/// route's own `Arc`: that one's count sits beside the route's data, and
/// both shards bumping it on every request moved the line from core to
/// core (+1.3 % throughput on average without it, a weak result, see
/// benches/README.md). This one is only ever touched by its shard's
/// thread, and has a cache line of its own. A shard that serves nothing
/// after a reload keeps its hold on the old snapshot until its next
/// request: one snapshot per shard at most.
#[repr(align(128))]
struct Held {
    snapshot: Arc<Snapshot>,
}

/// The route a request goes to, and what keeps it alive.
enum HeldRoute {
    /// Its index in the snapshot the shard holds: for a request.
    Shard { held: Arc<Held>, index: usize },
    /// The route alone: for a tunnel, which may stay open for hours and
    /// should not keep a whole old snapshot alive meanwhile.
    Own(RouteEntry),
}

impl HeldRoute {
    fn entry(&self) -> Option<&RouteEntry> {
        match self {
            HeldRoute::Shard { held, index } => held.snapshot.table.get(*index),
            HeldRoute::Own(entry) => Some(entry),
        }
    }
}

/// How the request's body arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReqBody {
    None,
    Length(u64),
    Chunked,
}

/// What the head asks for, taken out of the read buffer so the buffer can
/// move on.
struct Plan {
    action: Action,
    body: ReqBody,
    /// The client asked to close after this request.
    close: bool,
    head_request: bool,
    /// An upgrade to tunnel once the upstream answers 101
    /// ([`crate::head::Head::tunnel`]).
    tunnel: bool,
    /// Method and target as received, for the access log (only when it
    /// is on).
    log: Option<LogText>,
}

/// A request's method and target, one after the other in a buffer that
/// goes back to the request's [`Scratch`] when it ends, so that the access
/// log allocates nothing per request either.
struct LogText {
    text: String,
    /// Where the method ends and the target begins.
    method: usize,
}

impl LogText {
    fn method(&self) -> &str {
        self.text.get(..self.method).unwrap_or_default()
    }

    fn target(&self) -> &str {
        self.text.get(self.method..).unwrap_or_default()
    }
}

/// A request head the fast path has planned, waiting to be served: the
/// buffers it works in, and its plan (`None` if the head turned out not to
/// be one the fast path takes).
pub(crate) struct Prepared<'f> {
    lease: Lease<'f>,
    plan: Option<Plan>,
}

/// How forwarding a request ended.
enum Forwarded {
    /// The exchange is over; what the connection does next.
    Done(Next),
    /// The upstream switched protocols: the 101 and every byte either side
    /// sent after its head have been passed on; the two connections are a
    /// tunnel now.
    Upgraded(TcpStream, SocketAddr),
}

enum Action {
    /// Answered by the proxy itself.
    Answer {
        status: u16,
        body: Cow<'static, str>,
        options: bool,
        health: bool,
        /// A bare prefix's redirect: the route it is counted under, and
        /// the `Location`.
        redirect: Option<(RouteEntry, String)>,
    },
    /// Sent to this route; the upstream head is in `Scratch::out`.
    Forward(HeldRoute),
}

/// Why no response came from an upstream.
#[derive(Debug, Clone)]
enum UpstreamFailure {
    /// The error type its answer is named after, as on the Pingora path.
    Error(ErrorType),
    /// The client went away first.
    ClientGone,
    /// The client's chunked body broke its framing.
    BadBody(BadChunk),
}

impl FastPath {
    /// The fast path over the shared snapshot; `pool_size` idle
    /// connections per upstream address at most.
    pub(crate) fn new(
        snapshot: SharedSnapshot,
        lifecycle: Arc<Lifecycle>,
        metrics: &Metrics,
        options: RouterOptions,
        pool_size: usize,
        log: Option<Arc<crate::access_log::Batch>>,
    ) -> Self {
        FastPath {
            spares: CachePadded::new(Spares(std::sync::Mutex::new(Vec::new()))),
            snapshot,
            held: CachePadded::new(std::sync::Mutex::new(None)),
            lifecycle,
            pool: CachePadded::new(Pool::new(pool_size)),
            unmatched: metrics.route_handles(UNMATCHED),
            health: metrics.route_handles(HEALTH),
            send_timeouts: metrics.cut_counter(CutReason::SendTimeout),
            idle_tunnels: metrics.cut_counter(CutReason::TunnelIdle),
            log,
            options,
        }
    }

    /// The client `ip` as the forwarding fields need it.
    pub(crate) fn peer(&self, ip: IpAddr) -> Peer {
        Peer::new(ip, &self.options.trusted)
    }

    /// Takes the routing decision for a request head inside the envelope,
    /// from the parse [`crate::head::scan_with`] made of it (one parse per
    /// request), and for a forward renders the upstream head.
    pub(crate) fn prepare(
        &self,
        head: &[u8],
        req: &httparse::Request<'_, '_>,
        tunnel: bool,
        peer: Option<&Peer>,
    ) -> Prepared<'_> {
        let mut lease = self.spares.lease();
        lease.out.clear();
        // The decision holds what it needs of this snapshot (the route, by
        // the snapshot held); a reload after this point changes nothing
        // for it.
        let held = self.hold();
        let scratch = &mut *lease;
        let plan = self.plan(
            &held,
            head,
            req,
            (tunnel, peer),
            &mut scratch.out,
            &mut scratch.log,
        );
        Prepared { lease, plan }
    }

    /// The shard's hold on the current snapshot: the one it has while
    /// the snapshot is unchanged, a new one after a reload.
    fn hold(&self) -> Arc<Held> {
        let current = self.snapshot.load();
        let mut held = self.held.lock();
        if let Ok(Some(h)) = held.as_deref() {
            if Arc::ptr_eq(&h.snapshot, &current) {
                return Arc::clone(h);
            }
        }
        let h = Arc::new(Held {
            snapshot: arc_swap::Guard::into_inner(current),
        });
        if let Ok(held) = held.as_mut() {
            **held = Some(Arc::clone(&h));
        }
        h
    }

    /// Serves the request whose head is the first `head_len` bytes of
    /// `buf`, as [`FastPath::prepare`] planned it; its first bytes arrived
    /// at `started`. On return `buf` holds what the client sent after this
    /// request.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn serve(
        &self,
        client: &mut Stream,
        buf: &mut BytesMut,
        head_len: usize,
        prepared: Prepared<'_>,
        started: Instant,
        deadline: &mut Deadline<'_>,
        shutdown: &ShutdownWatch,
    ) -> Next {
        let Prepared { mut lease, plan } = prepared;
        let scratch = &mut *lease;
        let _in_flight = Lifecycle::track(&*self.lifecycle);
        let Some(mut plan) = plan else {
            // head.rs accepted what this refuses; a disagreement is
            // refused, never let through.
            return Next::Close;
        };
        buf.advance(head_len);
        let next = match plan.action {
            Action::Answer {
                status,
                ref body,
                options,
                health,
                ref redirect,
            } => {
                let metrics = match redirect {
                    Some((entry, _)) => &entry.payload.metrics,
                    None if health => &self.health,
                    None => &self.unmatched,
                };
                let keep = self.skip_body(buf, plan.body) && !plan.close && !*shutdown.borrow();
                scratch.out.clear();
                local_answer(
                    &mut scratch.out,
                    status,
                    body,
                    options,
                    redirect.as_ref().map(|(_, location)| location.as_str()),
                    plan.head_request,
                    keep,
                );
                let sent = self.write_client(client, &scratch.out).await;
                let code = if sent { status } else { 499 };
                self.finish(metrics, code, started.elapsed(), &plan, None, 0);
                if sent && keep {
                    Next::KeepAlive
                } else {
                    Next::Close
                }
            }
            Action::Forward(ref route) => {
                // Always there: the index came from the table held.
                let Some(entry) = route.entry() else {
                    return Next::Close;
                };
                match self
                    .forward(
                        client, buf, entry, &plan, scratch, started, deadline, shutdown,
                    )
                    .await
                {
                    Forwarded::Done(next) => next,
                    Forwarded::Upgraded(mut conn, addr) => {
                        // A tunnel may stay open for hours: it keeps no
                        // request buffers, only its own two small ones,
                        // and its route, not the snapshot.
                        let entry = Arc::clone(entry);
                        plan.action = Action::Forward(HeldRoute::Own(Arc::clone(&entry)));
                        drop(lease);
                        *buf = BytesMut::new();
                        self.tunnel(client, &mut conn, &entry).await;
                        self.finish(
                            &entry.payload.metrics,
                            101,
                            started.elapsed(),
                            &plan,
                            Some(addr),
                            0,
                        );
                        return Next::Close;
                    }
                }
            }
        };
        if let Some(log) = plan.log {
            // Its buffer serves the next request of this scratch.
            scratch.log = log.text;
        }
        next
    }

    /// Takes the routing decision for the parsed head (`req`, parsed from
    /// `head`) and, for a forward, writes the upstream request head into
    /// `out`.
    fn plan(
        &self,
        held: &Arc<Held>,
        head: &[u8],
        req: &httparse::Request<'_, '_>,
        (tunnel, peer): (bool, Option<&Peer>),
        out: &mut Vec<u8>,
        log_text: &mut String,
    ) -> Option<Plan> {
        let (method_text, target) = (req.method?, req.path?);
        let method = Method::from_bytes(method_text.as_bytes()).ok()?;
        let headers = &*req.headers;
        let mut host = None;
        let mut body = ReqBody::None;
        for h in headers {
            if name_is(h.name.as_bytes(), b"host") {
                host = std::str::from_utf8(h.value).ok();
            } else if name_is(h.name.as_bytes(), b"content-length") {
                let n = std::str::from_utf8(h.value).ok()?.trim().parse().ok()?;
                body = ReqBody::Length(n);
            } else if name_is(h.name.as_bytes(), b"transfer-encoding") {
                body = ReqBody::Chunked;
            }
        }
        let hop = wire::HopByHop::new(connection_values(headers));
        let close = hop.lists(b"close");
        // A byte search; '?' is ASCII, so the cut is on a char boundary.
        let (path, query) = match target.bytes().position(|b| b == b'?') {
            Some(i) => (&target[..i], Some(&target[i + 1..])),
            None => (target, None),
        };
        let request_target = RequestTarget {
            path,
            query,
            authority: None,
        };
        let log = self.options.access_log.then(|| {
            let mut text = std::mem::take(log_text);
            text.clear();
            text.push_str(method_text);
            text.push_str(target);
            LogText {
                text,
                method: method_text.len(),
            }
        });
        let answer = |status, body: Cow<'static, str>| Action::Answer {
            status,
            body,
            options: false,
            health: false,
            redirect: None,
        };
        let action = match decide(&held.snapshot.table, &method, host, request_target) {
            Decision::Forward(f) => {
                let line = RequestLine {
                    method: method_text,
                    target: f.target.as_deref().unwrap_or(target),
                    upgrade: tunnel.then(|| upgrade_value(headers)).flatten(),
                };
                upstream_head(out, head, &line, headers, &hop, peer, &self.options.trusted);
                Action::Forward(HeldRoute::Shard {
                    held: Arc::clone(held),
                    index: f.index,
                })
            }
            Decision::Health => {
                let (status, body) = crate::respond::health(self.lifecycle.is_draining());
                Action::Answer {
                    status,
                    body: Cow::Borrowed(body),
                    options: false,
                    health: true,
                    redirect: None,
                }
            }
            Decision::ServerOptions => Action::Answer {
                status: 200,
                body: Cow::Borrowed(""),
                options: true,
                health: false,
                redirect: None,
            },
            Decision::BadPath(why) => {
                answer(400, Cow::Owned(crate::respond::bad_path_body(why, path)))
            }
            Decision::NoRoute(path) => {
                answer(404, Cow::Owned(crate::respond::no_route_body(&path)))
            }
            Decision::Redirect { route, location } => Action::Answer {
                status: 308,
                body: Cow::Owned(crate::respond::redirect_body(&location)),
                options: false,
                health: false,
                redirect: Some((Arc::clone(route), location)),
            },
        };
        Some(Plan {
            action,
            body,
            close,
            head_request: method == Method::HEAD,
            tunnel,
            log,
        })
    }

    /// Consumes a request body nobody will read, when it is already here
    /// in full; false when it is not (the connection then closes).
    fn skip_body(&self, buf: &mut BytesMut, body: ReqBody) -> bool {
        match body {
            ReqBody::None => true,
            ReqBody::Length(n) => match usize::try_from(n) {
                Ok(n) if n <= buf.len() => {
                    buf.advance(n);
                    true
                }
                _ => false,
            },
            ReqBody::Chunked => {
                let mut decoder = ChunkedDecoder::new();
                match decoder.feed(buf, |_| {}) {
                    Ok(fed) if fed.done => {
                        buf.advance(fed.consumed);
                        true
                    }
                    _ => false,
                }
            }
        }
    }

    /// Forwards the planned request to the route's upstreams (round robin,
    /// the next one when a connect fails) and relays the response.
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        client: &mut Stream,
        buf: &mut BytesMut,
        entry: &RouteEntry,
        plan: &Plan,
        scratch: &mut Scratch,
        started: Instant,
        deadline: &mut Deadline<'_>,
        shutdown: &ShutdownWatch,
    ) -> Forwarded {
        let route = &entry.route;
        let rt: &RouteRuntime = &entry.payload;
        // A body already here in full goes out with the head, and can be
        // sent again on a fresh connection if a pooled one turns out dead.
        let mut pending = plan.body;
        if let ReqBody::Length(n) = plan.body {
            if let Ok(n) = usize::try_from(n) {
                if n <= buf.len() {
                    scratch.out.extend_from_slice(&buf[..n]);
                    buf.advance(n);
                    pending = ReqBody::None;
                }
            }
        }
        let replayable = pending == ReqBody::None;
        if pending == ReqBody::Chunked {
            // A chunked body already broken in what has arrived is refused
            // before anything goes upstream.
            let mut check = ChunkedDecoder::new();
            if let Err(error) = check.feed(buf, |_| {}) {
                let bad = BadChunk {
                    error,
                    offset: check.position(),
                };
                return Forwarded::Done(
                    self.fail(
                        client,
                        entry,
                        UpstreamFailure::BadBody(bad),
                        plan,
                        started,
                        None,
                        &mut scratch.out,
                    )
                    .await,
                );
            }
        }
        let n = rt.targets.len();
        let first = rt.next_start();
        let mut failure = UpstreamFailure::Error(ErrorType::ConnectError);
        let mut attempts = 0;
        let mut upstream = None;
        while attempts < n {
            let target = &rt.targets[(first + attempts) % n];
            attempts += 1;
            let Some(addr) = resolve(target).await else {
                rt.metrics.upstream_error(UpstreamErrorKind::Connect);
                continue;
            };
            match self.connect(addr, route.connect_timeout, started).await {
                Ok((conn, reused)) => {
                    upstream = Some((conn, reused, addr));
                    break;
                }
                Err(etype) => {
                    rt.metrics.upstream_error(match etype {
                        ErrorType::ConnectTimedout => UpstreamErrorKind::Timeout,
                        _ => UpstreamErrorKind::Connect,
                    });
                    failure = UpstreamFailure::Error(etype);
                }
            }
        }
        let keep = !plan.close && !*shutdown.borrow();
        let Some((mut conn, mut reused, addr)) = upstream else {
            return Forwarded::Done(
                self.fail(
                    client,
                    entry,
                    failure,
                    plan,
                    started,
                    None,
                    &mut scratch.out,
                )
                .await,
            );
        };
        let head = loop {
            let outcome = self
                .exchange(
                    client,
                    buf,
                    &mut conn,
                    pending,
                    entry,
                    (plan.head_request, keep, plan.tunnel),
                    scratch,
                    deadline,
                )
                .await;
            let failure = match outcome {
                Ok(head) => break head,
                // A pooled connection the upstream had closed: the request
                // never reached it (not a byte came back), so it goes once
                // more on a new one. One that closed after part of an
                // answer (a 103, half a head) had the request, and is not
                // asked again.
                Err(UpstreamFailure::Error(ErrorType::ConnectionClosed))
                    if reused && replayable && !scratch.heard =>
                {
                    match self.connect_new(addr, route.connect_timeout).await {
                        Ok(fresh) => {
                            conn = fresh;
                            reused = false;
                            continue;
                        }
                        Err(etype) => {
                            rt.metrics.upstream_error(UpstreamErrorKind::Connect);
                            UpstreamFailure::Error(etype)
                        }
                    }
                }
                Err(failure) => failure,
            };
            let out = &mut scratch.out;
            let next = self
                .fail(client, entry, failure, plan, started, Some(addr), out)
                .await;
            return Forwarded::Done(next);
        };
        // The client's head is in `scratch.out` now, rendered as the
        // upstream's was parsed.
        let ResponseHead {
            status,
            frame,
            len: head_len,
            body_cut,
        } = head;
        let keep = keep && !body_cut;
        scratch.up.advance(head_len);
        if status == 101 {
            // Switched (only ever for a tunnel request, which has no body):
            // the 101 and whatever the upstream sent after it go to the
            // client, what the client sent after its head to the upstream.
            scratch.out.extend_from_slice(&scratch.up);
            scratch.up.clear();
            if self.send(client, &scratch.out, 0).await.is_err()
                || write_timed(&mut conn, buf, route.read_timeout)
                    .await
                    .is_err()
            {
                self.finish(&rt.metrics, 101, started.elapsed(), plan, Some(addr), 0);
                return Forwarded::Done(Next::Close);
            }
            buf.clear();
            return Forwarded::Upgraded(conn, addr);
        }
        let relayed = self
            .relay_body(client, &mut conn, frame, route.read_timeout, scratch)
            .await;
        // One clock reading for the pool and the request's duration.
        let ended = Instant::now();
        // The answer's status stands whatever becomes of its body; a body
        // cut short closes the client connection.
        let (sent, next) = match relayed {
            Ok(sent) => {
                // After a body cut short the upstream expects the rest of
                // it: the connection is not reused.
                if frame.reusable && scratch.up.is_empty() && !body_cut {
                    self.pool.checkin(addr, conn, ended);
                }
                (sent, if keep { Next::KeepAlive } else { Next::Close })
            }
            Err(Cut::Client(sent)) => (sent, Next::Close),
            Err(Cut::Upstream(kind, sent)) => {
                rt.metrics.upstream_error(kind);
                tracing::warn!(
                    route = %route.key(),
                    upstream = %addr,
                    status,
                    "upstream failed while sending its response body; connection cut"
                );
                (sent, Next::Close)
            }
        };
        self.finish(
            &rt.metrics,
            status,
            ended.saturating_duration_since(started),
            plan,
            Some(addr),
            sent,
        );
        if body_cut && next == Next::Close {
            // The client may still be sending the body nobody reads:
            // closing now would reset the connection, and could take the
            // answer with it before the client has read it.
            if client.shutdown().await.is_ok() {
                crate::front::linger(client).await;
            }
        }
        Forwarded::Done(next)
    }

    /// Relays a tunnel's bytes both ways until either side closes, or
    /// neither sends anything for the route's `read_timeout` (counted as an
    /// idle tunnel, as on the Pingora path). Writes to the client are held
    /// to `--send-timeout`.
    async fn tunnel(&self, client: &mut Stream, conn: &mut TcpStream, entry: &RouteEntry) {
        let idle = entry.route.read_timeout;
        // On the heap, once per tunnel: in the connection's future they
        // would make every connection that large.
        let mut buffers = vec![0u8; 2 * TUNNEL_BUFFER];
        let (from_client, from_upstream) = buffers.split_at_mut(TUNNEL_BUFFER);
        let quiet = tokio::time::sleep(idle);
        tokio::pin!(quiet);
        loop {
            tokio::select! {
                r = client.read(from_client) => match r {
                    Ok(n) if n > 0 => {
                        if write_timed(conn, &from_client[..n], idle).await.is_err() {
                            return;
                        }
                    }
                    _ => return,
                },
                r = conn.read(from_upstream) => match r {
                    Ok(n) if n > 0 => {
                        if self.send(client, &from_upstream[..n], 0).await.is_err() {
                            return;
                        }
                    }
                    _ => return,
                },
                () = &mut quiet => {
                    self.idle_tunnels.inc();
                    tracing::info!(
                        route = %entry.route.key(),
                        reason = CutReason::TunnelIdle.label(),
                        "upgraded connection idle for the route's read_timeout; closed"
                    );
                    return;
                }
            }
            quiet.as_mut().reset(tokio::time::Instant::now() + idle);
        }
    }

    /// A pooled connection to `addr`, or a new one; whether it was pooled.
    /// `now` is a recent clock reading, for the pool's idle limit.
    async fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
        now: Instant,
    ) -> Result<(TcpStream, bool), ErrorType> {
        if let Some(conn) = self.pool.checkout(addr, now) {
            return Ok((conn, true));
        }
        self.connect_new(addr, timeout).await.map(|c| (c, false))
    }

    async fn connect_new(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<TcpStream, ErrorType> {
        let connected = tokio::time::timeout(timeout, TcpStream::connect(addr)).await;
        // For the status page: a new connection says how the upstream is
        // now; a pooled one does not.
        self.options
            .upstream_health
            .record_connect(addr, matches!(connected, Ok(Ok(_))));
        let conn = match connected {
            Err(_) => return Err(ErrorType::ConnectTimedout),
            Ok(Err(e)) => {
                return Err(match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => ErrorType::ConnectRefused,
                    _ => ErrorType::ConnectError,
                })
            }
            Ok(Ok(c)) => c,
        };
        // The head and a small body go out in one write; nothing waits
        // for more.
        let _ = conn.set_nodelay(true);
        Ok(conn)
    }

    /// Sends the request (head in `scratch.out`, the rest of the body from
    /// the client) and reads the response head into `scratch.up`: its
    /// status, framing and length, and whether the request's body was cut
    /// short by the upstream ([`ResponseHead::body_cut`]). 1xx responses
    /// are read past.
    #[allow(clippy::too_many_arguments)]
    async fn exchange(
        &self,
        client: &mut Stream,
        buf: &mut BytesMut,
        conn: &mut TcpStream,
        body: ReqBody,
        entry: &RouteEntry,
        (head_request, keep, tunnel): (bool, bool, bool),
        scratch: &mut Scratch,
        deadline: &mut Deadline<'_>,
    ) -> Result<ResponseHead, UpstreamFailure> {
        let route = &entry.route;
        let write_timeout = route.read_timeout;
        scratch.up.clear();
        scratch.heard = false;
        write_timed(conn, &scratch.out, write_timeout)
            .await
            .map_err(|e| UpstreamFailure::Error(write_error(e)))?;
        let sent = match body {
            ReqBody::None => Ok(()),
            ReqBody::Length(n) => send_length_body(client, buf, conn, n, write_timeout).await,
            ReqBody::Chunked => {
                send_chunked_body(client, buf, conn, &mut scratch.out, write_timeout).await
            }
        };
        // An upstream may answer before it has read the whole body (a 413
        // for an upload too large, a 401) and close: the body's next write
        // then fails, but the answer came before the close and is there
        // to read. It is the client's answer, as on the Pingora path, not
        // a 502. Nothing read means the write's failure stands.
        let cut = match sent {
            Ok(()) => None,
            Err(UpstreamFailure::Error(
                etype @ (ErrorType::ConnectionClosed | ErrorType::WriteError),
            )) => Some(etype),
            Err(failure) => return Err(failure),
        };
        // A body cut short leaves the client connection with unread bytes:
        // it closes after the answer.
        let keep = keep && cut.is_none();
        let body_cut = cut.is_some();
        let failed = |etype| UpstreamFailure::Error(cut.unwrap_or(etype));
        loop {
            if scratch.up.capacity() - scratch.up.len() < READ_SIZE / 4 {
                scratch.up.reserve(READ_SIZE);
            }
            // Watch the client meanwhile: one that hangs up is a 499, and
            // its upstream request is abandoned (nginx does the same).
            let watch_client = buf.len() < MAX_READ_AHEAD;
            let read = deadline.within(route.read_timeout, conn.read_buf(&mut scratch.up));
            let got = tokio::select! {
                biased;
                r = read => r,
                c = client.read_buf(buf), if watch_client => match c {
                    Ok(n) if n > 0 => continue,
                    _ => return Err(UpstreamFailure::ClientGone),
                },
            };
            match got {
                Err(_) => return Err(failed(ErrorType::ReadTimedout)),
                Ok(Err(_)) => return Err(failed(ErrorType::ReadError)),
                // Closed before its head was whole (or before a byte of
                // it): named as on the Pingora path. `heard` tells
                // `forward` whether the request reached the upstream.
                Ok(Ok(0)) => return Err(failed(ErrorType::ConnectionClosed)),
                Ok(Ok(_)) => scratch.heard = true,
            }
            // Interim responses come first; the final one may follow in
            // the same read.
            loop {
                match parse_response(&scratch.up, head_request, keep, tunnel, &mut scratch.out) {
                    Ok(None) => {
                        quick_ack(conn);
                        break;
                    }
                    Ok(Some((status, _, len))) if (100..200).contains(&status) && status != 101 => {
                        // Passed on as they come (103 Early Hints), except
                        // a 100 Continue nobody asked for.
                        if status != 100 && self.send(client, &scratch.out, 0).await.is_err() {
                            return Err(UpstreamFailure::ClientGone);
                        }
                        scratch.up.advance(len);
                    }
                    Ok(Some((101, _, _))) if !tunnel => {
                        return Err(UpstreamFailure::Error(ErrorType::InvalidHTTPHeader))
                    }
                    Err(_) => return Err(UpstreamFailure::Error(ErrorType::InvalidHTTPHeader)),
                    Ok(Some((status, frame, len))) => {
                        return Ok(ResponseHead {
                            status,
                            frame,
                            len,
                            body_cut,
                        })
                    }
                }
            }
        }
    }

    /// Relays the response body after the head in `scratch.out`; the bytes
    /// of body sent, or where it broke.
    async fn relay_body(
        &self,
        client: &mut Stream,
        conn: &mut TcpStream,
        frame: Framing,
        read_timeout: Duration,
        scratch: &mut Scratch,
    ) -> Result<u64, Cut> {
        let out = &mut scratch.out;
        let up = &mut scratch.up;
        let mut sent: u64 = 0;
        match frame.body {
            BodyLength::Empty => self.send(client, out, 0).await?,
            BodyLength::Length(total) => {
                let mut left = total;
                let take = up.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                if take <= INLINE_BODY {
                    out.extend_from_slice(&up[..take]);
                    up.advance(take);
                    left -= take as u64;
                    sent += take as u64;
                }
                self.send(client, out, sent).await?;
                loop {
                    let take = up.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    if take > 0 {
                        self.send(client, &up[..take], sent).await?;
                        up.advance(take);
                        left -= take as u64;
                        sent += take as u64;
                    }
                    if left == 0 {
                        break;
                    }
                    up.clear();
                    quick_ack(conn);
                    read_framed(conn, up, read_timeout, sent).await?;
                }
            }
            BodyLength::Chunked => {
                let mut decoder = ChunkedDecoder::new();
                loop {
                    let fed = decoder
                        .feed(up, |span| {
                            sent += span.len() as u64;
                            wire::chunk(out, &up[span]);
                        })
                        .map_err(|_| Cut::Upstream(UpstreamErrorKind::Other, sent))?;
                    up.advance(fed.consumed);
                    if fed.done {
                        out.extend_from_slice(wire::LAST_CHUNK);
                        self.send(client, out, sent).await?;
                        break;
                    }
                    if !out.is_empty() {
                        self.send(client, out, sent).await?;
                        out.clear();
                    }
                    up.clear();
                    quick_ack(conn);
                    read_framed(conn, up, read_timeout, sent).await?;
                }
            }
            BodyLength::UntilClose => {
                loop {
                    if !up.is_empty() {
                        wire::chunk(out, up);
                        sent += up.len() as u64;
                        up.clear();
                    }
                    if !out.is_empty() {
                        self.send(client, out, sent).await?;
                        out.clear();
                    }
                    // The upstream's close is this body's end.
                    quick_ack(conn);
                    if !read_upstream(conn, up, read_timeout, sent).await? {
                        break;
                    }
                }
                out.extend_from_slice(wire::LAST_CHUNK);
                self.send(client, out, sent).await?;
            }
        }
        out.clear();
        Ok(sent)
    }

    /// Writes to the client within `--send-timeout`; a client that stopped
    /// reading is cut and counted.
    async fn send(&self, client: &mut Stream, bytes: &[u8], sent: u64) -> Result<(), Cut> {
        match self.options.send_timeout {
            Some(limit) => match within(limit, write_flush(client, bytes)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(Cut::Client(sent)),
                Err(_) => {
                    self.send_timeouts.inc();
                    tracing::info!(
                        reason = CutReason::SendTimeout.label(),
                        "client stopped reading the response; connection cut after --send-timeout"
                    );
                    Err(Cut::Client(sent))
                }
            },
            None => write_flush(client, bytes)
                .await
                .map_err(|_| Cut::Client(sent)),
        }
    }

    async fn write_client(&self, client: &mut Stream, bytes: &[u8]) -> bool {
        self.send(client, bytes, 0).await.is_ok()
    }

    /// Answers a request no upstream answered, as the Pingora path does:
    /// 502 or 504 naming the route, then closes.
    #[allow(clippy::too_many_arguments)]
    async fn fail(
        &self,
        client: &mut Stream,
        entry: &RouteEntry,
        failure: UpstreamFailure,
        plan: &Plan,
        started: Instant,
        addr: Option<SocketAddr>,
        out: &mut Vec<u8>,
    ) -> Next {
        let route = entry.route.key();
        let metrics = &entry.payload.metrics;
        let (code, body) = match failure {
            UpstreamFailure::ClientGone => {
                self.finish(metrics, 499, started.elapsed(), plan, addr, 0);
                return Next::Close;
            }
            UpstreamFailure::BadBody(bad) => {
                tracing::info!(
                    target: "switchyard::access",
                    route = %route,
                    status = 400,
                    error = %bad,
                    "request body refused"
                );
                (400, crate::respond::bad_body(&bad))
            }
            UpstreamFailure::Error(etype) => {
                let timeout = matches!(
                    etype,
                    ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
                );
                if !is_connect_error(&etype) {
                    // Connect failures were counted per attempt.
                    metrics.upstream_error(if timeout {
                        UpstreamErrorKind::Timeout
                    } else {
                        UpstreamErrorKind::Other
                    });
                }
                let code = if timeout { 504 } else { 502 };
                tracing::warn!(
                    route = %route,
                    upstream = ?addr,
                    status = code,
                    error = etype.as_str(),
                    "upstream failed"
                );
                (
                    code,
                    crate::respond::upstream_failure_body(code, &route, etype.as_str()),
                )
            }
        };
        out.clear();
        local_answer(out, code, &body, false, None, plan.head_request, false);
        let sent = self.write_client(client, out).await;
        self.finish(
            metrics,
            if sent { code } else { 499 },
            started.elapsed(),
            plan,
            addr,
            0,
        );
        Next::Close
    }

    /// Counts the request and writes its access-log line.
    fn finish(
        &self,
        metrics: &RouteMetrics,
        code: u16,
        elapsed: Duration,
        plan: &Plan,
        upstream: Option<SocketAddr>,
        bytes: u64,
    ) {
        metrics.request(code, elapsed);
        let Some(log) = &plan.log else {
            return;
        };
        let (method, path) = (log.method(), log.target());
        if let Some(batch) = &self.log {
            batch.line(&crate::access_log::Record {
                method,
                path,
                route: metrics.route(),
                status: code,
                upstream,
                duration_ms: elapsed.as_secs_f64() * 1000.0,
                bytes,
            });
        } else {
            tracing::info!(
                target: "switchyard::access",
                method,
                path = %path,
                route = metrics.route(),
                status = code,
                upstream = upstream.map(tracing::field::display),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                bytes,
                "request"
            );
        }
    }
}

/// A response head read from the upstream, its client's version rendered
/// in the scratch's `out`.
struct ResponseHead {
    status: u16,
    frame: Framing,
    /// Its length in `scratch.up`.
    len: usize,
    /// The upstream answered before it had the request's whole body and
    /// closed (a write of the body failed): the rest was never sent.
    body_cut: bool,
}

/// Where relaying a response body stopped early.
enum Cut {
    /// The client went away or stopped reading; body bytes sent so far.
    Client(u64),
    /// The upstream failed or broke its framing; body bytes sent so far.
    Upstream(UpstreamErrorKind, u64),
}

/// A response head the fast path will not pass on: malformed, framed
/// ambiguously ([`switchyard_h1::response::FramingError`]), or larger than
/// [`MAX_RESPONSE_HEAD`]. Its answer is a 502.
#[derive(Debug)]
struct Unusable;

/// Parses a response head at the start of `up`: `None` while incomplete;
/// once complete, its status, framing and length, with the head to send
/// the client rendered into `out` (one parse per response).
fn parse_response(
    up: &[u8],
    head_request: bool,
    keep: bool,
    tunnel: bool,
    out: &mut Vec<u8>,
) -> Result<Option<(u16, Framing, usize)>, Unusable> {
    let mut fields =
        [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let parsed =
        crlf::response_parser().parse_response_with_uninit_headers(&mut resp, up, &mut fields);
    let len = match parsed {
        // An upstream does not get to grow the buffer without bound.
        Ok(httparse::Status::Complete(len)) if len > MAX_RESPONSE_HEAD => return Err(Unusable),
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if up.len() > MAX_RESPONSE_HEAD => return Err(Unusable),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Unusable),
    };
    if !crlf::lines_end_in_crlf(&up[..len], resp.headers.iter().map(|h| h.name)) {
        framing::check_line_endings(&up[..len]).map_err(|_| Unusable)?;
    }
    let status = resp.code.unwrap_or(0);
    let frame = framing::framing(
        status,
        resp.version == Some(0),
        resp.headers.iter().map(|h| (h.name, h.value)),
        head_request,
    )
    .map_err(|_| Unusable)?;
    out.clear();
    if (100..200).contains(&status) {
        render_interim(up, &resp, out, status == 101 && tunnel);
    } else {
        render_response(up, &resp, out, frame, keep);
    }
    Ok(Some((status, frame, len)))
}

/// Writes the client's response head: the upstream's status and fields
/// in their order, minus hop-by-hop ones, with the framing and the
/// `Date`/`Connection` the proxy sets. Where Pingora replaces a field it
/// does so in place and appends the ones it adds; so does this, so both
/// paths send the same bytes.
fn render_response(
    head: &[u8],
    resp: &httparse::Response<'_, '_>,
    out: &mut Vec<u8>,
    frame: Framing,
    keep: bool,
) {
    status_line(out, resp.code.unwrap_or(0), resp.reason.unwrap_or(""));
    let connection_value: &[u8] = if keep { b"keep-alive" } else { b"close" };
    let hop = wire::HopByHop::new(connection_values(resp.headers));
    let mut fields = wire::Fields::new(head);
    let (mut wrote_length, mut wrote_coding, mut wrote_date, mut wrote_connection) =
        (false, false, false, false);
    for h in resp.headers.iter() {
        let name = h.name;
        if name_is(name.as_bytes(), b"connection") {
            if !wrote_connection {
                fields.write(out, name.as_bytes(), connection_value);
                wrote_connection = true;
            }
        } else if name_is(name.as_bytes(), b"date") {
            if !wrote_date {
                fields.flush(out);
                wire::date_named(out, name.as_bytes());
                wrote_date = true;
            }
        } else if name_is(name.as_bytes(), b"content-length") {
            let keep_length = matches!(frame.body, BodyLength::Length(_) | BodyLength::Empty);
            if keep_length && !wrote_length {
                // A list (`5, 5`) cut to its first value no longer reads as
                // the head's line, and `keep` writes it out anew.
                fields.keep(out, name, length_value(h.value));
                wrote_length = true;
            }
        } else if name_is(name.as_bytes(), b"transfer-encoding") {
            if frame.body == BodyLength::Chunked && !wrote_coding {
                fields.keep(out, name, h.value);
                wrote_coding = true;
            }
        } else if !hop.contains(name) {
            fields.keep(out, name, h.value);
        }
    }
    fields.flush(out);
    if matches!(frame.body, BodyLength::Chunked | BodyLength::UntilClose) && !wrote_coding {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if !wrote_date {
        wire::date(out);
    }
    if !wrote_connection {
        wire::field(out, b"Connection", connection_value);
    }
    out.extend_from_slice(b"\r\n");
}

/// The first value of a `Content-Length` field already judged valid
/// (`5, 5` is sent as `5`).
fn length_value(value: &[u8]) -> &[u8] {
    value
        .split(|&b| b == b',')
        .next()
        .unwrap_or(value)
        .trim_ascii()
}

/// Writes an interim (1xx) response head on to the client: its status
/// and end-to-end fields, nothing added. For a 101 that switches a tunnel
/// (`switch`), `Connection` and `Upgrade` stay too, as Pingora sends them.
fn render_interim(head: &[u8], resp: &httparse::Response<'_, '_>, out: &mut Vec<u8>, switch: bool) {
    status_line(out, resp.code.unwrap_or(0), resp.reason.unwrap_or(""));
    let hop = wire::HopByHop::new(connection_values(resp.headers));
    let mut fields = wire::Fields::new(head);
    for h in resp.headers.iter() {
        let switching = switch
            && (name_is(h.name.as_bytes(), b"connection")
                || name_is(h.name.as_bytes(), b"upgrade"));
        if switching || !hop.contains(h.name) {
            fields.keep(out, h.name, h.value);
        }
    }
    fields.flush(out);
    out.extend_from_slice(b"\r\n");
}

/// Every `Connection` value of a head, in order.
fn connection_values<'h>(
    headers: &'h [httparse::Header<'_>],
) -> impl Iterator<Item = &'h [u8]> + Clone {
    headers
        .iter()
        .filter(|h| name_is(h.name.as_bytes(), b"connection"))
        .map(|h| h.value)
}

/// `HTTP/1.1 <status> <reason>\r\n`: the proxy speaks its own version,
/// whatever the upstream's (RFC 9110 §6.2).
fn status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    match status {
        // Three digits, as every status parsed or answered here has: no
        // formatting machinery per response.
        100..=999 => out.extend_from_slice(&[
            b'0' + (status / 100) as u8,
            b'0' + (status / 10 % 10) as u8,
            b'0' + (status % 10) as u8,
        ]),
        _ => wire::number(out, u64::from(status)),
    }
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The upstream request head: request line, the client's end-to-end
/// fields, and the forwarding fields. Pingora's path removes
/// `X-Forwarded-For` and sets it anew, and sets `X-Real-IP` and
/// `X-Forwarded-Proto` (in place when the client sent them); the bytes
/// here come out in the same order.
fn upstream_head<'v>(
    out: &mut Vec<u8>,
    head: &[u8],
    line: &RequestLine<'_>,
    headers: &[httparse::Header<'_>],
    hop: &wire::HopByHop<'v, impl Iterator<Item = &'v [u8]> + Clone>,
    peer: Option<&Peer>,
    trusted: &[ipnet::IpNet],
) {
    let upgrade = line.upgrade;
    out.extend_from_slice(line.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(line.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut xff: [&str; 8] = [""; 8];
    let mut xff_lines = 0;
    let mut proto = None;
    for h in headers {
        if name_is(h.name.as_bytes(), b"x-forwarded-for") {
            if let (Some(slot), Ok(v)) = (xff.get_mut(xff_lines), std::str::from_utf8(h.value)) {
                *slot = v;
                xff_lines += 1;
            }
        } else if name_is(h.name.as_bytes(), b"x-forwarded-proto") && proto.is_none() {
            proto = std::str::from_utf8(h.value).ok();
        }
    }
    // A peer whose forwarding fields are not believed (the common case)
    // needs no work beyond appending its address: written straight from
    // the connection's cached text, with no allocation. A trusted one has
    // its list walked by `forwarded`.
    let trusted_view = peer
        .filter(|p| p.trusted)
        .map(|p| forwarded(p.ip, &xff[..xff_lines], proto, trusted));
    let real_ip: Option<Cow<'_, str>> = match (&trusted_view, peer) {
        (Some(f), _) => Some(Cow::Owned(f.real_ip.to_string())),
        (None, Some(p)) => Some(Cow::Borrowed(p.text.as_str())),
        (None, None) => None,
    };
    let mut fields = wire::Fields::new(head);
    let write_real_ip = |fields: &mut wire::Fields<'_>, out: &mut Vec<u8>| {
        if let Some(ip) = &real_ip {
            fields.write(out, b"x-real-ip", ip.as_bytes());
        }
    };
    let proto_value = trusted_view.as_ref().map_or("http", |f| f.proto);
    let (mut wrote_real_ip, mut wrote_proto, mut chunked) = (false, false, false);
    for h in headers {
        let name = h.name;
        if name_is(name.as_bytes(), b"x-forwarded-for") {
            continue;
        }
        if name_is(name.as_bytes(), b"x-real-ip") {
            if !wrote_real_ip {
                write_real_ip(&mut fields, out);
                wrote_real_ip = true;
            }
            continue;
        }
        if name_is(name.as_bytes(), b"x-forwarded-proto") {
            if !wrote_proto {
                fields.write(out, b"x-forwarded-proto", proto_value.as_bytes());
                wrote_proto = true;
            }
            continue;
        }
        if name_is(name.as_bytes(), b"transfer-encoding") {
            // The body is framed anew; the field goes last.
            chunked = true;
            continue;
        }
        if hop.contains(name) {
            continue;
        }
        fields.keep(out, name, h.value);
    }
    fields.flush(out);
    if let Some(protocol) = upgrade {
        // Hop-by-hop, but the point of this request: sent on as Pingora
        // sends them.
        out.extend_from_slice(b"Connection: Upgrade\r\n");
        wire::field(out, b"upgrade", protocol);
    }
    match (&trusted_view, peer) {
        (Some(f), _) => wire::field(out, b"x-forwarded-for", f.x_forwarded_for.as_bytes()),
        (None, Some(p)) => {
            out.extend_from_slice(b"x-forwarded-for: ");
            chain(&xff[..xff_lines], &p.text)
                .for_each(|piece| out.extend_from_slice(piece.as_bytes()));
            out.extend_from_slice(b"\r\n");
        }
        (None, None) => {}
    }
    if !wrote_real_ip {
        write_real_ip(&mut fields, out);
    }
    if !wrote_proto {
        wire::field(out, b"x-forwarded-proto", proto_value.as_bytes());
    }
    if chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// What the upstream request line says, and the protocol a tunnel asks
/// for.
struct RequestLine<'a> {
    method: &'a str,
    /// The target after the route's rewrite.
    target: &'a str,
    /// The `Upgrade` value of a request to tunnel.
    upgrade: Option<&'a [u8]>,
}

/// The first `Upgrade` value of a request.
fn upgrade_value<'h>(headers: &[httparse::Header<'h>]) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|h| name_is(h.name.as_bytes(), b"upgrade"))
        .map(|h| h.value)
}

/// A complete answer of the proxy's own: `text/plain` with a length and
/// a `Location` when given (or the `OPTIONS *` answer), as `respond.rs`
/// writes them on the Pingora path.
fn local_answer(
    out: &mut Vec<u8>,
    status: u16,
    body: &str,
    options: bool,
    location: Option<&str>,
    head_request: bool,
    keep: bool,
) {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    status_line(out, status, reason);
    if options {
        out.extend_from_slice(
            b"allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\ncontent-length: 0\r\n",
        );
    } else {
        out.extend_from_slice(b"content-type: text/plain; charset=utf-8\r\ncontent-length: ");
        wire::number(out, body.len() as u64);
        out.extend_from_slice(b"\r\ncache-control: no-store\r\n");
        if let Some(location) = location {
            wire::field(out, b"location", location.as_bytes());
        }
    }
    wire::date(out);
    out.extend_from_slice(if keep {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
    if !options && !head_request {
        out.extend_from_slice(body.as_bytes());
    }
}

/// Sends the rest of a `Content-Length` body from the client.
async fn send_length_body(
    client: &mut Stream,
    buf: &mut BytesMut,
    conn: &mut TcpStream,
    total: u64,
    write_timeout: Duration,
) -> Result<(), UpstreamFailure> {
    let mut left = total;
    loop {
        let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if take > 0 {
            write_timed(conn, &buf[..take], write_timeout)
                .await
                .map_err(|e| UpstreamFailure::Error(write_error(e)))?;
            buf.advance(take);
            left -= take as u64;
        }
        if left == 0 {
            return Ok(());
        }
        read_client(client, buf).await?;
    }
}

/// Decodes the client's chunked body strictly and sends it framed anew.
async fn send_chunked_body(
    client: &mut Stream,
    buf: &mut BytesMut,
    conn: &mut TcpStream,
    out: &mut Vec<u8>,
    write_timeout: Duration,
) -> Result<(), UpstreamFailure> {
    let mut decoder = ChunkedDecoder::new();
    loop {
        out.clear();
        let fed = decoder
            .feed(buf, |span| wire::chunk(out, &buf[span]))
            .map_err(|error| {
                UpstreamFailure::BadBody(BadChunk {
                    error,
                    offset: decoder.position(),
                })
            })?;
        buf.advance(fed.consumed);
        if fed.done {
            out.extend_from_slice(wire::LAST_CHUNK);
        }
        if !out.is_empty() {
            write_timed(conn, out, write_timeout)
                .await
                .map_err(|e| UpstreamFailure::Error(write_error(e)))?;
        }
        if fed.done {
            return Ok(());
        }
        read_client(client, buf).await?;
    }
}

/// Reads more of the request body from the client.
async fn read_client(client: &mut Stream, buf: &mut BytesMut) -> Result<(), UpstreamFailure> {
    if buf.capacity() - buf.len() < BODY_READ_SIZE / 4 {
        buf.reserve(BODY_READ_SIZE);
    }
    match tokio::time::timeout(CLIENT_BODY_TIMEOUT, client.read_buf(buf)).await {
        Ok(Ok(n)) if n > 0 => Ok(()),
        _ => Err(UpstreamFailure::ClientGone),
    }
}

/// Reads more of the response body; false when the upstream closed.
async fn read_upstream(
    conn: &mut TcpStream,
    up: &mut BytesMut,
    read_timeout: Duration,
    sent: u64,
) -> Result<bool, Cut> {
    if up.capacity() - up.len() < READ_SIZE / 4 {
        up.reserve(READ_SIZE);
    }
    match tokio::time::timeout(read_timeout, conn.read_buf(up)).await {
        Ok(Ok(n)) => Ok(n > 0),
        Ok(Err(_)) => Err(Cut::Upstream(UpstreamErrorKind::Other, sent)),
        Err(_) => Err(Cut::Upstream(UpstreamErrorKind::Timeout, sent)),
    }
}

/// Like [`read_upstream`], for a body with a framed end: closing before it
/// is an upstream failure.
async fn read_framed(
    conn: &mut TcpStream,
    up: &mut BytesMut,
    read_timeout: Duration,
    sent: u64,
) -> Result<(), Cut> {
    if read_upstream(conn, up, read_timeout, sent).await? {
        Ok(())
    } else {
        Err(Cut::Upstream(UpstreamErrorKind::Other, sent))
    }
}

/// Acknowledges at once what the upstream sent so far. An upstream that
/// writes its head and its body in two writes without `TCP_NODELAY` waits
/// for the ACK of the first before sending the second (Nagle), and a
/// delayed ACK makes that ~40 ms per response on a reused connection.
/// Called before each wait for more of a response than has arrived, so
/// the common response that arrives in one read pays nothing.
fn quick_ack(conn: &TcpStream) {
    let _ = socket2::SockRef::from(conn).set_tcp_quickack(true);
}

async fn write_timed<W: AsyncWrite + Unpin>(
    w: &mut W,
    bytes: &[u8],
    limit: Duration,
) -> Result<(), Option<std::io::Error>> {
    match within(limit, w.write_all(bytes)).await {
        Ok(r) => r.map_err(Some),
        Err(TimedOut) => Err(None),
    }
}

fn write_error(e: Option<std::io::Error>) -> ErrorType {
    match e {
        None => ErrorType::WriteTimedout,
        // A pooled connection the upstream closed while idle.
        Some(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            ) =>
        {
            ErrorType::ConnectionClosed
        }
        Some(_) => ErrorType::WriteError,
    }
}

async fn write_flush<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    bytes: &[u8],
) -> std::io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

/// The address of one upstream: as built with the table, or a DNS name
/// resolved now (without blocking the runtime), as on the Pingora path.
async fn resolve(target: &Target) -> Option<SocketAddr> {
    match target {
        Target::Ready(peer) => peer._address.as_inet().copied(),
        Target::Name { host, port } => tokio::net::lookup_host((host.as_str(), *port))
            .await
            .ok()?
            .next(),
    }
}

fn is_connect_error(t: &ErrorType) -> bool {
    matches!(
        t,
        ErrorType::ConnectTimedout | ErrorType::ConnectRefused | ErrorType::ConnectError
    )
}

//! The main listener: match a request against the snapshot it arrived
//! under, forward it, and answer for ourselves when there is nothing to
//! forward to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::RequestHeader;
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use switchyard_routes::Route;

use crate::decide::{decide, Decision, RequestTarget};
use crate::forwarded::forwarded;
use crate::lifecycle::{InFlight, Lifecycle};
use crate::metrics::{CutReason, Metrics, RouteMetrics, UpstreamErrorKind, HEALTH, UNMATCHED};
use crate::respond;
use crate::state::{peer_for, RouteEntry, SharedSnapshot, Target};

/// The `ProxyHttp` implementation behind `--listen`.
pub(crate) struct Router {
    snapshot: SharedSnapshot,
    lifecycle: Arc<Lifecycle>,
    unmatched: RouteMetrics,
    health: RouteMetrics,
    send_timeouts: prometheus::IntCounter,
    idle_tunnels: prometheus::IntCounter,
    options: RouterOptions,
}

/// How the router treats clients; fixed for the life of the process.
#[derive(Debug, Clone)]
pub(crate) struct RouterOptions {
    /// Log one line per request.
    pub access_log: bool,
    /// Peers whose `X-Forwarded-*` headers are believed.
    pub trusted: Arc<[ipnet::IpNet]>,
    /// How long one write to the client may wait (nginx's `send_timeout`):
    /// a client that stops reading does not hold its connection and the
    /// upstream's for ever. `None` waits.
    pub send_timeout: Option<std::time::Duration>,
    /// Where each new upstream connection's outcome is recorded, for the
    /// status page.
    pub upstream_health: Arc<crate::upstream_health::UpstreamHealth>,
}

impl Router {
    /// A router serving whatever table `snapshot` holds at each request.
    pub(crate) fn new(
        snapshot: SharedSnapshot,
        lifecycle: Arc<Lifecycle>,
        metrics: &Metrics,
        options: RouterOptions,
    ) -> Self {
        Router {
            snapshot,
            lifecycle,
            unmatched: metrics.route_handles(UNMATCHED),
            health: metrics.route_handles(HEALTH),
            send_timeouts: metrics.cut_counter(CutReason::SendTimeout),
            idle_tunnels: metrics.cut_counter(CutReason::TunnelIdle),
            options,
        }
    }

    /// The metric handles a finished request is counted under.
    fn metrics_for<'a>(&'a self, ctx: &'a RequestCtx) -> &'a RouteMetrics {
        if ctx.health {
            return &self.health;
        }
        ctx.route
            .as_ref()
            .map_or(&self.unmatched, |r| &r.payload.metrics)
    }
}

/// Per-request state. The route is matched once, when the request arrives,
/// against the snapshot applied then, and kept (with its runtime data) for
/// the request's whole life, retries and upgraded streams included, so a
/// reload never changes a request half-way.
pub(crate) struct RequestCtx {
    route: Option<RouteEntry>,
    /// Upstream index the first attempt used.
    first: usize,
    /// Upstreams tried so far.
    attempts: usize,
    /// Address of the upstream chosen by the latest attempt.
    upstream_addr: Option<SocketAddr>,
    /// When the request arrived.
    started: Instant,
    /// Answered by the main listener's own `/health`.
    health: bool,
    /// The status fail_to_proxy answered (or would have) with.
    error_code: u16,
    /// The request target as the client sent it, kept only when it was
    /// rewritten and the access log wants it.
    client_uri: Option<http::Uri>,
    _in_flight: InFlight,
}

const X_REAL_IP: &str = "x-real-ip";
const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";

#[async_trait]
impl ProxyHttp for Router {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            route: None,
            first: 0,
            attempts: 0,
            upstream_addr: None,
            started: Instant::now(),
            health: false,
            error_code: 0,
            client_uri: None,
            _in_flight: Lifecycle::track(Arc::clone(&self.lifecycle)),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        // Per write, like nginx's send_timeout: a slow reader that keeps
        // reading is fine, one that stopped is cut.
        session.set_write_timeout(self.options.send_timeout);
        let snapshot = self.snapshot.load_full();
        let req = session.req_header();
        let target = RequestTarget {
            path: req.uri.path(),
            query: req.uri.query(),
            authority: absolute_form_authority(req.raw_path()),
        };
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok());
        let forward = match decide(&snapshot.table, &req.method, host, target) {
            Decision::Forward(f) => f,
            Decision::Health => {
                ctx.health = true;
                let (status, body) = respond::health(self.lifecycle.is_draining());
                respond::text(session, status, body.to_owned()).await?;
                return Ok(true);
            }
            Decision::ServerOptions => {
                respond::server_options(session).await?;
                return Ok(true);
            }
            Decision::BadPath(why) => {
                let body = respond::bad_path_body(why, target.path);
                respond::text(session, 400, body).await?;
                return Ok(true);
            }
            Decision::NoRoute(path) => {
                respond::text(session, 404, respond::no_route_body(&path)).await?;
                return Ok(true);
            }
            Decision::Redirect { route, location } => {
                // Counted and logged under the route it matched.
                ctx.route = Some(Arc::clone(route));
                respond::redirect(session, &location).await?;
                return Ok(true);
            }
        };
        if let Some(new_target) = forward.target {
            let new_uri = http::Uri::builder()
                .path_and_query(new_target)
                .build()
                .map_err(|e| {
                    Error::because(ErrorType::InternalError, "rewriting the request path", e)
                })?;
            if self.options.access_log {
                ctx.client_uri = Some(session.req_header().uri.clone());
            }
            let req = session.req_header_mut();
            req.set_uri(new_uri);
            if let Some(host) = forward.host {
                req.insert_header(http::header::HOST, host)?;
            }
        }
        ctx.route = Some(Arc::clone(forward.route));
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        // Pingora asks for a peer only after request_filter let the request
        // through, which it does only with a route.
        let Some(entry) = ctx.route.clone() else {
            return Error::e_explain(ErrorType::InternalError, "upstream_peer without a route");
        };
        let (route, runtime): (&Route, _) = (&entry.route, &entry.payload);
        let n = runtime.targets.len();
        if ctx.attempts == 0 {
            ctx.first = runtime.next_start();
        }
        let mut last_err = None;
        // Try each remaining upstream in turn; a DNS name that does not
        // resolve counts as a failed connection and moves on to the next.
        while ctx.attempts < n {
            let index = (ctx.first + ctx.attempts) % n;
            ctx.attempts += 1;
            let peer = match &runtime.targets[index] {
                Target::Ready(peer) => peer.clone(),
                Target::Name { host, port } => match resolve(host, *port).await {
                    Ok(addr) => Box::new(peer_for(route, addr)),
                    Err(e) => {
                        runtime.metrics.upstream_error(UpstreamErrorKind::Connect);
                        last_err = Some(e);
                        continue;
                    }
                },
            };
            ctx.upstream_addr = peer._address.as_inet().copied();
            return Ok(peer);
        }
        Err(last_err.unwrap_or_else(|| {
            let mut e = Error::explain(ErrorType::ConnectError, "no upstream left to try");
            e.esource = ErrorSource::Upstream;
            e
        }))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(addr) = peer._address.as_inet() {
            self.options.upstream_health.record_connect(*addr, false);
        }
        if let Some(entry) = &ctx.route {
            let kind = match e.etype() {
                ErrorType::ConnectTimedout => UpstreamErrorKind::Timeout,
                _ => UpstreamErrorKind::Connect,
            };
            entry.payload.metrics.upstream_error(kind);
        }
        // A server that refuses (or cannot be reached) is skipped for the
        // next one; the request fails only when every upstream has failed.
        let remaining = ctx
            .route
            .as_ref()
            .is_some_and(|r| ctx.attempts < r.payload.targets.len());
        if remaining {
            e.set_retry(true);
        }
        e
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora_core::protocols::Digest>,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Only a new connection says the upstream accepts connections now;
        // a pooled one was opened earlier.
        if let (false, Some(addr)) = (reused, peer._address.as_inet()) {
            self.options.upstream_health.record_connect(*addr, true);
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(peer) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
        else {
            // Not an IP connection (cannot happen on a TCP listener): send
            // nothing we cannot vouch for.
            upstream.remove_header(X_REAL_IP);
            upstream.insert_header(X_FORWARDED_PROTO, "http")?;
            return Ok(());
        };
        let incoming: Vec<&str> = upstream
            .headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let proto = upstream
            .headers
            .get(X_FORWARDED_PROTO)
            .and_then(|v| v.to_str().ok());
        let f = forwarded(peer, &incoming, proto, &self.options.trusted);
        // Several X-Forwarded-For lines mean one list; send it as one line.
        upstream.remove_header(X_FORWARDED_FOR);
        upstream.insert_header(X_FORWARDED_FOR, f.x_forwarded_for)?;
        upstream.insert_header(X_REAL_IP, f.real_ip.to_string())?;
        upstream.insert_header(X_FORWARDED_PROTO, f.proto)?;
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut pingora_http::ResponseHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        strip_hop_by_hop(upstream_response);
        // The proxy speaks its own version to the client (RFC 9110 §6.2),
        // whatever the upstream's; Pingora would echo an HTTP/1.0 status
        // line to an HTTP/1.1 client. The fast path does the same.
        if session.req_header().version == http::Version::HTTP_11 {
            upstream_response.set_version(http::Version::HTTP_11);
        }
        // RFC 9112 §6.1: a server must not send Transfer-Encoding to an
        // HTTP/1.0 client, which cannot decode it. Pingora has already
        // de-chunked the upstream's body; without the header the body goes
        // out as read, delimited by closing the connection.
        if session.req_header().version == http::Version::HTTP_10
            && upstream_response
                .headers
                .contains_key(http::header::TRANSFER_ENCODING)
        {
            upstream_response.remove_header(&http::header::TRANSFER_ENCODING);
            session.set_keepalive(None);
        }
        Ok(())
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        let code = match session.response_written() {
            Some(resp) => resp.status.as_u16(),
            // No response went out: the error code we chose, or 499
            // (nginx's "client closed the request") when the client left.
            None if ctx.error_code > 0 => ctx.error_code,
            None => 499,
        };
        let elapsed = ctx.started.elapsed();
        self.metrics_for(ctx).request(code, elapsed);
        if self.options.access_log {
            let req = session.req_header();
            let uri = ctx.client_uri.as_ref().unwrap_or(&req.uri);
            // The route's identity, as its metric series are labelled.
            let route = self.metrics_for(ctx).route();
            tracing::info!(
                target: "switchyard::access",
                method = req.method.as_str(),
                path = %uri,
                route,
                status = code,
                upstream = ctx.upstream_addr.map(tracing::field::display),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                bytes = session.body_bytes_sent(),
                "request"
            );
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        // Upstream failures are reported by fail_to_proxy with the route. A
        // client that hangs up mid-request is routine, not an error: it is
        // counted (status 499) and in the access log, like in nginx.
        match error.esource() {
            ErrorSource::Upstream => true,
            ErrorSource::Downstream => matches!(
                error.etype(),
                ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
            ),
            _ => false,
        }
    }

    fn init_downstream_modules(&self, _modules: &mut pingora_core::modules::http::HttpModules) {
        // Pingora adds a (disabled) response-compression module to every
        // request by default; a dev proxy passes bodies through as they are,
        // and the module costs time on every request even when disabled.
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let bad_body = crate::chunk_guard::bad_chunk(e);
        let code = match e.etype() {
            // The chunked body broke its framing: the guard under Pingora
            // refused the byte (nothing of it was forwarded).
            _ if bad_body.is_some() => 400,
            ErrorType::HTTPStatus(code) => *code,
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout
                if *e.esource() == ErrorSource::Upstream =>
            {
                504
            }
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        ctx.error_code = code;
        let route = ctx.route.as_ref().map(|r| r.key()).unwrap_or_default();
        let upstream_side = *e.esource() == ErrorSource::Upstream;
        // Two ends that are not failures of the upstream: an upgraded
        // connection (a WebSocket) that carried nothing for the route's
        // read_timeout is closed as idle, and a client that stopped reading
        // its response is cut after --send-timeout.
        let cut = match e.etype() {
            ErrorType::ReadTimedout if upstream_side && session.was_upgraded() => {
                Some(CutReason::TunnelIdle)
            }
            ErrorType::WriteTimedout if !upstream_side => Some(CutReason::SendTimeout),
            _ => None,
        };
        if let Some(reason) = cut {
            let (counter, what) = match reason {
                CutReason::TunnelIdle => (
                    &self.idle_tunnels,
                    "upgraded connection idle for the route's read_timeout; closed",
                ),
                CutReason::SendTimeout => (
                    &self.send_timeouts,
                    "client stopped reading the response; connection cut after --send-timeout",
                ),
            };
            counter.inc();
            tracing::info!(
                route = %route,
                upstream = ?ctx.upstream_addr,
                reason = reason.label(),
                "{what}"
            );
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        if let Some(bad) = &bad_body {
            tracing::info!(
                target: "switchyard::access",
                route = %route,
                status = code,
                error = %bad,
                "request body refused"
            );
        }
        if *e.esource() == ErrorSource::Upstream {
            // Connect failures were counted per attempt in fail_to_connect
            // (or upstream_peer, for names that do not resolve).
            let kind = match e.etype() {
                t if is_connect_error(t) => None,
                ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                    Some(UpstreamErrorKind::Timeout)
                }
                _ => Some(UpstreamErrorKind::Other),
            };
            if let (Some(kind), Some(entry)) = (kind, &ctx.route) {
                entry.payload.metrics.upstream_error(kind);
            }
            tracing::warn!(
                route = %route,
                upstream = ?ctx.upstream_addr,
                status = code,
                error = %e,
                "upstream failed"
            );
        }
        if code == 0 || session.response_written().is_some() {
            // Nothing can be said to a client that is gone or already has
            // (part of) a response; the connection closes.
            return FailToProxy {
                error_code: code,
                can_reuse_downstream: false,
            };
        }
        let body = match code {
            502 | 504 => respond::upstream_failure_body(code, &route, e.etype().as_str()),
            400 => match &bad_body {
                Some(bad) => respond::bad_body(bad),
                None => "400 bad request\n".to_owned(),
            },
            c => format!("{c} error: route {route}\n"),
        };
        // Once an upstream has been tried, pingora-proxy closes the client
        // connection after this answer whatever we return (it honours
        // `can_reuse_downstream` only for errors before peer selection), so
        // say so in the response rather than let the client find out.
        // A broken body leaves the connection's framing unknown: close.
        let closing = ctx.attempts > 0 || bad_body.is_some();
        if closing {
            session.set_keepalive(None);
        }
        let written = respond::text(session, code, body).await.is_ok();
        FailToProxy {
            error_code: code,
            can_reuse_downstream: written && !closing,
        }
    }
}

/// Removes the response fields that describe the upstream connection,
/// not the message (RFC 9110 §7.6.1): those `Connection` names, then
/// `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer` and `Upgrade` (on a
/// response that is not a 101). Pingora forwards them; the fast path does
/// not, and both must send the same. `Connection` and the framing fields
/// Pingora sets itself.
fn strip_hop_by_hop(resp: &mut pingora_http::ResponseHeader) {
    let named: Vec<String> = resp
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && t != "close" && t != "keep-alive" && t != "upgrade")
        .collect();
    for name in &named {
        resp.remove_header(name.as_str());
    }
    for name in ["keep-alive", "proxy-connection", "te", "trailer"] {
        resp.remove_header(name);
    }
    if resp.status != http::StatusCode::SWITCHING_PROTOCOLS {
        resp.remove_header("upgrade");
    }
}

/// Errors from establishing a connection, counted per attempt.
fn is_connect_error(t: &ErrorType) -> bool {
    matches!(
        t,
        ErrorType::ConnectTimedout
            | ErrorType::ConnectRefused
            | ErrorType::ConnectNoRoute
            | ErrorType::ConnectError
            | ErrorType::BindError
            | ErrorType::SocketError
            | ErrorType::ConnectProxyFailure
    )
}

/// `host[:port]` of an absolute-form request target (`http://h:p/x`),
/// without any `user@`; `None` for an origin-form target (`/x`). Pingora
/// keeps the target as sent and would forward it unchanged.
fn absolute_form_authority(raw: &[u8]) -> Option<&str> {
    let raw = std::str::from_utf8(raw).ok()?;
    let scheme_end = raw.find("://")?;
    if raw.starts_with('/') || !raw[..scheme_end].bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let rest = &raw[scheme_end + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    Some(authority.rsplit('@').next().unwrap_or(authority))
}

/// Resolves a DNS name without blocking the runtime.
async fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    let upstream_err = |why: String| {
        let mut e = Error::explain(ErrorType::ConnectError, why);
        e.esource = ErrorSource::Upstream;
        e
    };
    match tokio::net::lookup_host((host, port)).await {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| upstream_err(format!("{host} resolved to no address"))),
        Err(e) => Err(upstream_err(format!("cannot resolve {host}: {e}"))),
    }
}

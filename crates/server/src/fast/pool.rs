//! Idle upstream connections of one shard, for the fast path.
//!
//! A connection goes back into the pool only after its response was read
//! to its exact framed end with no byte beyond it (the caller's rule), and
//! comes out only after a non-blocking read found it quiet: a connection
//! the upstream closed (or wrote to) while idle is dropped, not reused.
//! One shard's tasks all run on one thread, so the lock is never contended;
//! it is there because the server shares its `ServerApp` as `Arc`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// How long a connection may sit idle in the pool. Upstreams close idle
/// connections too (Node.js after 5 s); the check on checkout catches those.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Every this many check-ins the whole pool is swept for expired
/// connections, so addresses no longer routed to do not keep sockets.
const SWEEP_EVERY: u32 = 1024;

struct Idle {
    conn: TcpStream,
    since: Instant,
}

/// Idle connections by upstream address.
pub(crate) struct Pool {
    idle: Mutex<Inner>,
    max_per_address: usize,
}

#[derive(Default)]
struct Inner {
    /// Keyed by addresses from the routes file: a fast hash is safe here.
    by_address: HashMap<SocketAddr, Vec<Idle>, foldhash::fast::RandomState>,
    checkins: u32,
}

impl Pool {
    /// A pool keeping at most `max_per_address` idle connections to each
    /// upstream address.
    pub(crate) fn new(max_per_address: usize) -> Self {
        Pool {
            idle: Mutex::new(Inner::default()),
            max_per_address,
        }
    }

    /// The most recently used idle connection to `addr` that is still
    /// open and quiet, if any. `now` is a recent reading of the clock
    /// (the request's start): the idle limit is a minute, and a clock read
    /// per checkout and per check-in was a measurable share of a request.
    pub(crate) fn checkout(&self, addr: SocketAddr, now: Instant) -> Option<TcpStream> {
        let mut inner = self.idle.lock().ok()?;
        let list = inner.by_address.get_mut(&addr)?;
        while let Some(idle) = list.pop() {
            if now.saturating_duration_since(idle.since) < IDLE_TIMEOUT && is_quiet(&idle.conn) {
                return Some(idle.conn);
            }
        }
        None
    }

    /// Keeps `conn` for the next request to `addr`; it became idle at
    /// `now`.
    pub(crate) fn checkin(&self, addr: SocketAddr, conn: TcpStream, now: Instant) {
        let Ok(mut inner) = self.idle.lock() else {
            return;
        };
        inner.checkins = inner.checkins.wrapping_add(1);
        if inner.checkins % SWEEP_EVERY == 0 {
            inner.by_address.retain(|_, list| {
                list.retain(|i| now.saturating_duration_since(i.since) < IDLE_TIMEOUT);
                !list.is_empty()
            });
        }
        let list = inner.by_address.entry(addr).or_default();
        if list.len() < self.max_per_address {
            list.push(Idle { conn, since: now });
        }
    }
}

/// Whether an idle connection has nothing to read: no close from the
/// upstream and no stray bytes. Tokio reports a read as would-block
/// without a system call unless the socket was seen readable, which is
/// exactly when a look is needed.
fn is_quiet(conn: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(conn.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A listener standing in for an upstream, and its address.
    async fn upstream() -> (tokio::net::TcpListener, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        (listener, addr)
    }

    async fn pair(listener: &tokio::net::TcpListener) -> (TcpStream, TcpStream) {
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let (c, s) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let c = c.unwrap_or_else(|e| panic!("{e}"));
        (c, s.unwrap_or_else(|e| panic!("{e}")).0)
    }

    /// A connection the upstream closed, or wrote to, while idle is not
    /// handed out; a quiet one is, most recent first.
    #[tokio::test]
    async fn only_quiet_connections_come_back() {
        let (listener, addr) = upstream().await;
        let pool = Pool::new(8);
        let (quiet, _quiet_server) = pair(&listener).await;
        let quiet_port = quiet.local_addr().map(|a| a.port()).ok();
        let (closed, closed_server) = pair(&listener).await;
        let (chatty, mut chatty_server) = pair(&listener).await;
        pool.checkin(addr, quiet, Instant::now());
        pool.checkin(addr, closed, Instant::now());
        pool.checkin(addr, chatty, Instant::now());
        drop(closed_server);
        chatty_server
            .write_all(b"x")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // Wait (bounded) until the runtime has seen both sockets readable.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            tokio::task::yield_now().await;
            let got = pool.checkout(addr, Instant::now());
            if let Some(conn) = got {
                if conn.local_addr().map(|a| a.port()).ok() == quiet_port {
                    break;
                }
                // Not yet seen readable: put it back and look again.
                pool.checkin(addr, conn, Instant::now());
            }
            assert!(
                Instant::now() < deadline,
                "the quiet connection never came back"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            pool.checkout(addr, Instant::now()).is_none(),
            "the others were dropped"
        );
    }

    /// A connection idle past the limit, by the clock readings given, is
    /// dropped rather than handed out.
    #[tokio::test]
    async fn a_connection_idle_past_the_limit_is_not_reused() {
        let (listener, addr) = upstream().await;
        let pool = Pool::new(8);
        let (a, _sa) = pair(&listener).await;
        let (b, _sb) = pair(&listener).await;
        let idle_since = Instant::now();
        pool.checkin(addr, a, idle_since);
        assert!(pool
            .checkout(addr, idle_since + IDLE_TIMEOUT + Duration::from_secs(1))
            .is_none());
        pool.checkin(addr, b, idle_since);
        assert!(pool
            .checkout(addr, idle_since + IDLE_TIMEOUT - Duration::from_secs(1))
            .is_some());
    }

    #[tokio::test]
    async fn the_pool_keeps_at_most_its_size() {
        let (listener, addr) = upstream().await;
        let pool = Pool::new(1);
        let (a, _sa) = pair(&listener).await;
        let (b, _sb) = pair(&listener).await;
        pool.checkin(addr, a, Instant::now());
        pool.checkin(addr, b, Instant::now());
        assert!(pool.checkout(addr, Instant::now()).is_some());
        assert!(pool.checkout(addr, Instant::now()).is_none());
    }
}

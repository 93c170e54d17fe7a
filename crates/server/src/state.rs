//! The snapshot every request and the admin listener share: the routing
//! table with the runtime data each route needs, swapped whole on reload.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use crossbeam_utils::CachePadded;
use pingora_core::upstreams::peer::HttpPeer;
use sha2::{Digest, Sha256};
use switchyard_routes::{Entry, Route, Table, Upstream, UpstreamHost};

use crate::metrics::{Metrics, RouteMetrics};
use crate::report::Rejection;

/// How to reach one upstream server, prepared when the table is built.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A literal address: the peer is built once and cloned per request.
    Ready(Box<HttpPeer>),
    /// A DNS name, resolved when a request needs it.
    Name {
        /// Host name to resolve.
        host: String,
        /// Port to connect to.
        port: u16,
    },
}

/// The per-route runtime data that goes with a compiled [`Route`]: the
/// payload of the snapshot's table.
#[derive(Debug)]
pub(crate) struct RouteRuntime {
    /// One target per upstream, in the route's order.
    pub targets: Vec<Target>,
    /// This route's metric handles, built once per table.
    pub metrics: RouteMetrics,
    /// Round-robin position; starts over with each new table. On a cache
    /// line of its own: both shards write it, and the fields beside it
    /// are read by every request.
    next: CachePadded<AtomicUsize>,
}

impl RouteRuntime {
    /// The index of the upstream a new request tries first.
    pub(crate) fn next_start(&self) -> usize {
        match self.targets.len() {
            // Most routes have one upstream: no shared counter to bump
            // (every request wrote its cache line, from both shards).
            0 | 1 => 0,
            n => self.next.fetch_add(1, Ordering::Relaxed) % n,
        }
    }
}

/// Everything a request needs, immutable once built (the round-robin
/// counters aside). A reload builds a new one and swaps it in whole; a
/// request keeps the `Arc` it started with until it ends.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// The compiled routes, each with its runtime data. Shared with the
    /// snapshot that records a later rejected reload, which changes
    /// nothing a request sees.
    pub table: Arc<Table<RouteRuntime>>,
    /// 1 for the table loaded at startup, +1 per applied reload.
    pub generation: u64,
    /// Lowercase hex SHA-256 of the file bytes this table came from.
    pub sha256: String,
    /// When this table was applied.
    pub loaded_at: SystemTime,
    /// Why the latest reload attempt was rejected, if it was: swapped in
    /// with the table it left serving, so `/routes` never pairs one
    /// table's generation with another attempt's error.
    pub last_error: Option<Arc<Rejection>>,
}

impl Snapshot {
    /// Prepares a compiled table for serving.
    pub(crate) fn new(table: Table, bytes: &[u8], generation: u64, metrics: &Metrics) -> Self {
        let table = table.with_payload(|r| RouteRuntime {
            targets: r.upstreams.iter().map(|u| target(r, u)).collect(),
            // Labelled by the route's identity (host and path), so two
            // routes of one path on different hosts stay apart.
            metrics: metrics.route_handles(&r.key()),
            next: CachePadded::new(AtomicUsize::new(0)),
        });
        Snapshot {
            table: Arc::new(table),
            generation,
            sha256: sha256_hex(bytes),
            loaded_at: SystemTime::now(),
            last_error: None,
        }
    }

    /// The same table, with `last_error` replaced.
    pub(crate) fn with_error(&self, last_error: Option<Arc<Rejection>>) -> Self {
        Snapshot {
            table: Arc::clone(&self.table),
            generation: self.generation,
            sha256: self.sha256.clone(),
            loaded_at: self.loaded_at,
            last_error,
        }
    }
}

impl Snapshot {
    /// What the metrics say of this table.
    pub(crate) fn applied(&self) -> crate::metrics::AppliedTable<'_> {
        crate::metrics::AppliedTable {
            generation: self.generation,
            routes: self.table.len(),
            sha256: &self.sha256,
            loaded_at: self.loaded_at,
        }
    }
}

/// Lowercase hex SHA-256, the form `/routes` and the metrics label use.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Builds the peer for one upstream with the route's timeouts.
pub(crate) fn peer_for(route: &Route, addr: SocketAddr) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, false, String::new());
    peer.options.connection_timeout = Some(route.connect_timeout);
    peer.options.read_timeout = Some(route.read_timeout);
    peer.options.write_timeout = Some(route.read_timeout);
    peer
}

fn target(route: &Route, upstream: &Upstream) -> Target {
    match &upstream.host {
        UpstreamHost::Ip(ip) => Target::Ready(Box::new(peer_for(
            route,
            SocketAddr::new(*ip, upstream.port),
        ))),
        UpstreamHost::Name(host) => Target::Name {
            host: host.clone(),
            port: upstream.port,
        },
    }
}

/// A route of the applied table with its runtime data; a request holds
/// it for as long as it runs.
pub(crate) type RouteEntry = Arc<Entry<RouteRuntime>>;

/// The one handle to the applied table. Readers `load` it; only the reload
/// path stores into it.
pub(crate) type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

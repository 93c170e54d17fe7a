//! Prometheus metrics, in an explicit registry created at startup and
//! passed down (never the global default registry), so one process could
//! run two proxies and a test can read exactly what one exposes.
//!
//! A leaf: it knows nothing of reloads, snapshots or connections, only the
//! values each of them reports.
//!
//! Names, types and labels are part of the interface (the contract's
//! *Metrics* table). Request metrics are labelled by the *configured*
//! route path, never the raw request path, so cardinality is bounded by
//! the routes ever configured.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

mod requests;

use requests::{RequestSeries, RouteCells};

/// Label value for requests that matched no route.
pub(crate) const UNMATCHED: &str = "unmatched";
/// Label value for the main listener's own `/health`.
pub(crate) const HEALTH: &str = "/health";

/// Reload timing: a small file reloads in well under a millisecond, so the
/// buckets start at 50 µs.
const RELOAD_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// Why an upstream attempt failed, as the `kind` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamErrorKind {
    /// Refused, unreachable, or a name that does not resolve.
    Connect,
    /// Connect, read or write timed out.
    Timeout,
    /// Anything else: a bad response, a connection dropped mid-body.
    Other,
}

impl UpstreamErrorKind {
    fn index(self) -> usize {
        self as usize
    }

    fn label(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Other => "other",
        }
    }
}

/// Every Switchyard metric, registered in one registry.
pub(crate) struct Metrics {
    registry: Registry,
    reloads: IntCounterVec,
    last_reload_successful: IntGauge,
    last_success_timestamp: prometheus::Gauge,
    generation: IntGauge,
    info: IntGaugeVec,
    reload_duration: Histogram,
    routes: IntGauge,
    requests: Arc<RequestSeries>,
    upstream_errors: IntCounterVec,
    connections_open: IntGauge,
    connections_refused: IntCounter,
    connections_cut: IntCounterVec,
}

/// Why the proxy ended a client connection that was past its request
/// head, as the `reason` label of `switchyard_connections_cut_total` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CutReason {
    /// The client left a response unread for `--send-timeout`.
    SendTimeout,
    /// An upgraded connection (a WebSocket) carried nothing from the
    /// upstream for the route's `read_timeout`, and was closed.
    TunnelIdle,
}

impl CutReason {
    /// The label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            CutReason::SendTimeout => "send_timeout",
            CutReason::TunnelIdle => "tunnel_idle",
        }
    }
}

impl Metrics {
    /// Creates the registry and registers everything, process metrics
    /// included. Fails only on a programming error (a duplicate name).
    pub(crate) fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let reloads = IntCounterVec::new(
            Opts::new(
                "switchyard_config_reloads_total",
                "Reload attempts by result (success, failure, unchanged).",
            ),
            &["result"],
        )?;
        let last_reload_successful = IntGauge::new(
            "switchyard_config_last_reload_successful",
            "1 if the last reload attempt applied the file or found it unchanged, 0 if it was rejected.",
        )?;
        let last_success_timestamp = prometheus::Gauge::new(
            "switchyard_config_last_reload_success_timestamp_seconds",
            "Unix time of the last applied table (startup counts).",
        )?;
        let generation = IntGauge::new(
            "switchyard_config_generation",
            "Generation of the applied routing table: 1 at startup, +1 per applied reload.",
        )?;
        let info = IntGaugeVec::new(
            Opts::new(
                "switchyard_config_info",
                "Always 1, labelled with the SHA-256 of the applied file.",
            ),
            &["sha256"],
        )?;
        let reload_duration = Histogram::with_opts(
            HistogramOpts::new(
                "switchyard_config_reload_duration_seconds",
                "Time to read, parse, build and swap a routes file.",
            )
            .buckets(RELOAD_BUCKETS.to_vec()),
        )?;
        let routes = IntGauge::new("switchyard_routes", "Routes in the applied table.")?;
        let requests = Arc::new(RequestSeries::new()?);
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "switchyard_upstream_errors_total",
                "Failed upstream attempts by route and kind (connect, timeout, other).",
            ),
            &["route", "kind"],
        )?;

        let connections_open = IntGauge::new(
            "switchyard_connections_open",
            "Client connections open on the main listener.",
        )?;
        let connections_refused = IntCounter::new(
            "switchyard_connections_refused_total",
            "Client connections answered 503 and closed because --max-connections were open.",
        )?;

        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(last_reload_successful.clone()))?;
        registry.register(Box::new(last_success_timestamp.clone()))?;
        registry.register(Box::new(generation.clone()))?;
        registry.register(Box::new(info.clone()))?;
        registry.register(Box::new(reload_duration.clone()))?;
        registry.register(Box::new(routes.clone()))?;
        registry.register(Box::new(requests::Registered(Arc::clone(&requests))))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(connections_open.clone()))?;
        let connections_cut = IntCounterVec::new(
            Opts::new(
                "switchyard_connections_cut_total",
                "Client connections the proxy ended mid-request, by reason: send_timeout (the client left a response unread for --send-timeout), tunnel_idle (an upgraded connection idle for the route's read_timeout).",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(connections_refused.clone()))?;
        registry.register(Box::new(connections_cut.clone()))?;
        for reason in [CutReason::SendTimeout, CutReason::TunnelIdle] {
            connections_cut.with_label_values(&[reason.label()]);
        }
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        Ok(Metrics {
            registry,
            reloads,
            last_reload_successful,
            last_success_timestamp,
            generation,
            info,
            reload_duration,
            routes,
            requests,
            upstream_errors,
            connections_open,
            connections_refused,
            connections_cut,
        })
    }

    /// The counter of connections cut for `reason`, to be kept by whoever
    /// cuts them.
    pub(crate) fn cut_counter(&self, reason: CutReason) -> IntCounter {
        self.connections_cut.with_label_values(&[reason.label()])
    }

    /// The open-connections gauge and the refused-connections counter, for
    /// [`crate::front::ConnectionSlots`].
    pub(crate) fn connection_handles(&self) -> (IntGauge, IntCounter) {
        (
            self.connections_open.clone(),
            self.connections_refused.clone(),
        )
    }

    /// Makes each reload result's series exist from the start, at 0, so
    /// `increase()` and alerts work before the first failure ever happens.
    pub(crate) fn declare_reload_results(&self, results: &[&str]) {
        for r in results {
            self.reloads.with_label_values(&[r]);
        }
    }

    /// Records the table loaded at startup (not a reload attempt).
    pub(crate) fn applied_at_startup(&self, table: &AppliedTable<'_>) {
        self.last_reload_successful.set(1);
        self.record_applied(table);
    }

    fn record_applied(&self, table: &AppliedTable<'_>) {
        self.generation
            .set(i64::try_from(table.generation).unwrap_or(i64::MAX));
        self.routes
            .set(i64::try_from(table.routes).unwrap_or(i64::MAX));
        // One series only: the hash of the file serving now.
        self.info.reset();
        self.info.with_label_values(&[table.sha256]).set(1);
        self.last_success_timestamp
            .set(unix_seconds(table.loaded_at));
    }

    /// The request and upstream-error counters as they stand, for the
    /// status page: read when the page is asked for, so serving requests
    /// does no work for it.
    pub(crate) fn route_counters(&self) -> Vec<prometheus::proto::MetricFamily> {
        use prometheus::core::Collector;
        let mut families = vec![self.requests.requests()];
        families.extend(self.upstream_errors.collect());
        families
    }

    /// The text exposition of everything registered.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        out
    }

    /// Metric handles for one route, to be cached with the route so the
    /// request path never builds label sets.
    pub(crate) fn route_handles(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            route: route.to_owned(),
            series: Arc::clone(&self.requests),
            cells: OnceLock::new(),
            upstream_errors: self.upstream_errors.clone(),
            errors: Default::default(),
        }
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Metrics {
    /// Records one reload attempt: its `result` label, whether it counts as
    /// successful (applied or unchanged), its duration, and the table it
    /// applied, if it applied one.
    pub(crate) fn reload_attempt(
        &self,
        result: &str,
        successful: bool,
        duration: Duration,
        applied: Option<&AppliedTable<'_>>,
    ) {
        self.reloads.with_label_values(&[result]).inc();
        self.reload_duration.observe(duration.as_secs_f64());
        self.last_reload_successful.set(i64::from(successful));
        if let Some(table) = applied {
            self.record_applied(table);
        }
    }
}

/// What the metrics say of an applied routing table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppliedTable<'a> {
    /// Its generation.
    pub generation: u64,
    /// How many routes it has.
    pub routes: usize,
    /// SHA-256 of the file it came from, lowercase hex.
    pub sha256: &'a str,
    /// When it was applied.
    pub loaded_at: SystemTime,
}

/// One route's metric handles (or the `unmatched` / `/health` ones).
pub(crate) struct RouteMetrics {
    route: String,
    series: Arc<RequestSeries>,
    /// Found or made on first request, so a large table of idle routes
    /// adds no series (and no memory for them).
    cells: OnceLock<Arc<RouteCells>>,
    upstream_errors: IntCounterVec,
    /// Created on first use, so routes without errors add no series.
    errors: [OnceLock<IntCounter>; 3],
}

impl RouteMetrics {
    /// The `route` label: the route's identity (`host/path`, or `/path`
    /// for a route without a host), `unmatched` or `/health`.
    pub(crate) fn route(&self) -> &str {
        &self.route
    }

    /// Counts one finished request.
    pub(crate) fn request(&self, code: u16, elapsed: Duration) {
        self.cells
            .get_or_init(|| self.series.cells(&self.route))
            .count(code, elapsed);
    }

    /// Counts one failed upstream attempt.
    pub(crate) fn upstream_error(&self, kind: UpstreamErrorKind) {
        self.errors[kind.index()]
            .get_or_init(|| {
                self.upstream_errors
                    .with_label_values(&[self.route.as_str(), kind.label()])
            })
            .inc();
    }
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("route", &self.route)
            .finish()
    }
}

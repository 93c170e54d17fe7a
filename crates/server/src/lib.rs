//! The Switchyard server: the proxy on `--listen` and the admin endpoints
//! on `--admin-listen`, both on Pingora, sharing one swappable routing
//! snapshot (`state::SharedSnapshot`) and one `lifecycle::Lifecycle`.
//!
//! A connection on `--listen` goes through `front::Front` (limits, and
//! the request-head check of [`head`]; a chunked body is checked as it is
//! read by `chunk_guard`) and then to pingora-proxy with `proxy::Router`
//! as its `ProxyHttp`. The routes file is read by [`source`] and applied by
//! the one reload task in `reload`.
//!
//! [`serve`] is the whole life of a `switchyard serve` process: load the
//! file, bind, run until a signal, drain, return.
//!
//! # Pingora 0.9.1 workarounds
//!
//! Pingora is pinned exactly (`=0.9.1`). Where its behaviour does not fit,
//! the workaround is here, with when it can go:
//!
//! | behaviour | workaround | can go when |
//! |---|---|---|
//! | the request head is read with a 60 s timeout *per read*, up to 1 MB, with no hook before it is complete (cloudflare/pingora#447, #539) | `front.rs` reads each head itself (total `--header-timeout`, `--max-header-bytes`), then rewinds it for Pingora; the keep-alive loop it copies is `impl<T: HttpServerApp> ServerApp for T` in `pingora-core/src/apps/mod.rs` | Pingora offers a total head timeout and size limit |
//! | a malformed head is answered without calling any hook | `head.rs` applies Pingora's own rules first, so refusals are counted and logged; `tests/head_vs_pingora.rs` and the `request_head` fuzz target compare the two | a hook sees parse errors |
//! | a chunked body's empty size line is taken for the last chunk (`httparse::parse_chunk_size`) | `chunk_guard.rs` checks every chunked body strictly under Pingora | Pingora's decoder is strict |
//! | one socket per address *string*: shards on one port need different spellings (cloudflare/pingora#618) | `shard_address` spells the port with leading zeros | listeners can be keyed by shard |
//! | a port in use is retried ~30 s, then a panic in a service thread while the process lives on (cloudflare/pingora#667) | `check_bind` probes both listeners first | bind failure reaches the caller |
//! | SIGTERM closes listeners at once, then waits a fixed grace period; readiness cannot turn first (cloudflare/pingora#505) | `shutdown.rs`: own signal watch, drain delay, a drain watcher that ends the run early | Pingora drains on its own terms |
//! | every client connection gets a 64 KiB L4 read buffer | `CLIENT_READ_BUFFER` = 0 on the listener | — (a setting, not a bug) |
//! | upstream errors are all 502, timeouts included | `Router::fail_to_proxy` maps them (504, 400, idle tunnels, send timeouts) | — (by design) |

// The crate's API is what the binary, the fuzz targets and the benches
// use; everything else is crate-private, and this lint keeps it so.
#![warn(unreachable_pub)]

mod access_log;
mod admin;
mod affinity;
mod chunk_guard;
mod deadline;
mod decide;
mod fast;
mod fdlimit;
mod forwarded;
mod front;
pub mod head;
mod lifecycle;
mod metrics;
mod proxy;
mod reload;
pub mod report;
mod respond;
mod shutdown;
pub mod source;
mod state;
mod status_page;
mod stripes;
mod upstream_health;
mod watch;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use pingora_core::apps::http_app::HttpServer;
use pingora_core::listeners::{ListenerConfig, TcpSocketOptions};
use pingora_core::protocols::l4::stream::{L4BufferSettings, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::ShutdownWatch;
use pingora_core::server::{RunArgs, Server};
use pingora_core::services::background::{background_service, BackgroundService};
use pingora_core::services::listening::Service;
use switchyard_routes::ConfigErrors;

pub use crate::access_log::AccessLogSink;
pub use crate::affinity::CpuAffinity;
use crate::lifecycle::Lifecycle;
pub use crate::shutdown::Stopped;
use crate::state::Snapshot;

/// Everything `switchyard serve` needs, already parsed by the CLI.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The routes file.
    pub config_path: PathBuf,
    /// Main listener.
    pub listen: SocketAddr,
    /// Admin listener.
    pub admin_listen: SocketAddr,
    /// Worker threads for the proxy.
    pub threads: usize,
    /// After SIGTERM, how long to keep serving with readiness at 503.
    pub drain_delay: Duration,
    /// After the listeners close, how long in-flight requests may take.
    pub drain_timeout: Duration,
    /// How often the file's hash is checked, backing up the watcher.
    pub poll_interval: Duration,
    /// Whether each request is logged.
    pub access_log: bool,
    /// Peers whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Idle time after which a keep-alive client connection is closed;
    /// `None` never closes it.
    pub keepalive_timeout: Option<Duration>,
    /// Time for a whole request head to arrive.
    pub header_timeout: Duration,
    /// Size limit of a request head.
    pub max_header_bytes: usize,
    /// Open client connections allowed at once; `None` is no cap.
    pub max_connections: Option<usize>,
    /// Largest routes file read; a larger one is refused unread.
    pub max_config_bytes: u64,
    /// How long a client may leave a response unread before its
    /// connection is cut; `None` waits for ever.
    pub send_timeout: Option<Duration>,
    /// Serve plain HTTP/1.1 requests on the fast path (`fast`), the rest
    /// through pingora-proxy; `false` sends everything through the latter.
    pub fast_path: bool,
    /// Where the fast path writes its access-log lines, in batches; `None`
    /// logs them one `tracing` event each, as the Pingora path does.
    pub access_log_sink: Option<AccessLogSink>,
    /// When each shard's thread is held to a CPU of its own.
    pub cpu_affinity: CpuAffinity,
}

/// Idle upstream connections kept per shard (Pingora's pool) and per
/// shard and upstream address (the fast path's); at least the expected
/// client concurrency, or connections churn under load.
const UPSTREAM_POOL_SIZE: usize = 1024;

/// Why `serve` could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The routes file could not be read.
    #[error("{path}: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        source: source::ReadError,
    },
    /// The routes file is invalid.
    #[error("{0}")]
    Invalid(ConfigErrors),
    /// A listener address cannot be bound.
    #[error("cannot listen on {addr} ({which}): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// `--listen` or `--admin-listen`.
        which: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The metrics registry could not be built.
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The server's thread could not be started.
    #[error("cannot start the server thread: {0}")]
    Thread(std::io::Error),
    /// Both listeners on one address.
    #[error("--listen and --admin-listen are both {0}; they must differ")]
    SameAddress(SocketAddr),
}

/// Reads (at most `max_bytes`) and compiles the routes file, as `check`
/// and every reload do.
pub fn load_file(
    path: &std::path::Path,
    max_bytes: u64,
) -> Result<(switchyard_routes::Table, Vec<u8>), ServeError> {
    let shown = path.display().to_string();
    let bytes = source::read_config(path, max_bytes).map_err(|source| ServeError::Unreadable {
        path: shown.clone(),
        source,
    })?;
    let table = switchyard_routes::load_bytes(&shown, &bytes).map_err(ServeError::Invalid)?;
    Ok((table, bytes))
}

/// Pingora retries a busy port for ~30 s and then panics inside a service
/// thread while the process lives on; binding here first turns that into
/// an immediate, clear error. The probe socket is closed before Pingora
/// binds (a listening socket leaves no TIME_WAIT behind).
fn check_bind(addr: SocketAddr, which: &'static str) -> Result<(), ServeError> {
    TcpListener::bind(addr)
        .map(drop)
        .map_err(|source| ServeError::Bind {
            addr,
            which,
            source,
        })
}

/// The L4 read buffer of each client connection on `--listen`: none.
/// Pingora's default is 64 KiB per connection for the connection's whole
/// life (zero-filled, so resident once the allocator hands out reused
/// memory), and nothing here gains from it: [`front::Front`] reads request
/// heads into its own 4 KiB buffer and Pingora reads bodies into its own
/// 64 KiB one, which tokio's `BufReader` bypasses anyway. With 1000
/// connections (`benches/conn_memory.py`), RSS per idle keep-alive
/// connection went 31 → 13 KiB, per WebSocket 65 → 54 KiB, per slow request
/// body 54 → 43 KiB; throughput and system calls per request unchanged
/// (4 KiB: 16, 58 and 47 KiB). The write buffer stays at Pingora's 1460.
const CLIENT_READ_BUFFER: usize = 0;

/// Runs the proxy until shutdown, and says how it stopped; returning ends
/// serving (the caller's process should then exit). Must not be called
/// inside a tokio runtime: Pingora builds its own.
pub fn serve(cfg: ServeConfig) -> Result<Stopped, ServeError> {
    let (table, bytes) = load_file(&cfg.config_path, cfg.max_config_bytes)?;
    // Parsing left the file's freed YAML tree in the allocator's arenas.
    switchyard_sys::release_free_memory();
    if cfg.listen == cfg.admin_listen {
        return Err(ServeError::SameAddress(cfg.listen));
    }
    check_bind(cfg.listen, "--listen")?;
    check_bind(cfg.admin_listen, "--admin-listen")?;

    let open_files = fdlimit::raise_open_files_limit();
    if let (Some(limit), Some(max)) = (open_files, cfg.max_connections) {
        let needed = fdlimit::needed_for(max);
        if limit < needed {
            tracing::warn!(
                open_files_limit = limit,
                max_connections = max,
                needed,
                "the open-file limit is below what --max-connections needs (two per connection); \
                 new connections will fail with 'too many open files' before the cap is reached: \
                 raise the limit (ulimit -n, the container runtime's nofile) or lower --max-connections"
            );
        }
    }

    let route_count = table.len();
    let metrics = Arc::new(metrics::Metrics::new()?);
    let first = Snapshot::new(table, &bytes, 1, &metrics);
    metrics.applied_at_startup(&first.applied());
    let snapshot = Arc::new(ArcSwap::from_pointee(first));
    let lifecycle = Arc::new(Lifecycle::default());
    let upstream_health = Arc::new(upstream_health::UpstreamHealth::default());

    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        // Idle upstream connections kept per shard; at least the expected
        // client concurrency, or connections churn under load.
        upstream_keepalive_pool_size: UPSTREAM_POOL_SIZE,
        // Pingora's stock SIGTERM path sleeps this long unconditionally (300 s
        // by default). The drain watcher in `shutdown` ends the process as
        // soon as requests finish, or at the drain timeout; this is only a
        // backstop a little beyond it.
        grace_period_seconds: Some(cfg.drain_timeout.as_secs() + 2),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    // One single-threaded proxy service per thread ("shard"), each with its
    // own SO_REUSEPORT socket on the same port: the kernel spreads
    // connections across them and a connection never leaves the thread that
    // accepted it. Measured on 2 cores this beats one multi-threaded
    // runtime by far (benches/README.md). Pingora keys its listening sockets
    // by the address *string* and would hand every shard the same socket, so
    // each shard spells the port with its own number of leading zeros
    // (`:8080`, `:08080`, …), which parses to the same address.
    let shards = cfg.threads.max(1);
    let trusted: Arc<[ipnet::IpNet]> = cfg.trusted_proxies.clone().into();
    let (open_gauge, refused_counter) = metrics.connection_handles();
    let slots = Arc::new(front::ConnectionSlots::new(
        cfg.max_connections,
        open_gauge,
        refused_counter,
    ));
    let limits = front::FrontLimits {
        header_timeout: cfg.header_timeout,
        max_header_bytes: cfg.max_header_bytes,
        keepalive_timeout: cfg.keepalive_timeout,
    };
    let router_options = proxy::RouterOptions {
        access_log: cfg.access_log,
        trusted: Arc::clone(&trusted),
        send_timeout: cfg.send_timeout,
        upstream_health: Arc::clone(&upstream_health),
    };
    let usable_cpus = affinity::usable_cpus();
    let shard_cpus = affinity::plan(cfg.cpu_affinity, shards, &usable_cpus);
    let mut proxy_services = Vec::with_capacity(shards);
    let mut batches = Vec::new();
    for shard in 0..shards {
        let batch = match (&cfg.access_log_sink, cfg.access_log) {
            (Some(sink), true) => Some(Arc::new(access_log::Batch::new(sink.clone()))),
            _ => None,
        };
        batches.extend(batch.clone());
        let router = proxy::Router::new(
            Arc::clone(&snapshot),
            Arc::clone(&lifecycle),
            &metrics,
            router_options.clone(),
        );
        let proxy = pingora_proxy::http_proxy(&server.configuration, router);
        let fast = cfg.fast_path.then(|| {
            fast::FastPath::new(
                Arc::clone(&snapshot),
                Arc::clone(&lifecycle),
                &metrics,
                router_options.clone(),
                UPSTREAM_POOL_SIZE,
                batch,
            )
        });
        let front = front::Front::new(
            proxy,
            fast,
            limits.clone(),
            Arc::clone(&slots),
            metrics.route_handles(metrics::UNMATCHED),
            cfg.access_log,
            shard_cpus
                .as_ref()
                .and_then(|cpus| cpus.get(shard).copied()),
        );
        let mut service = Service::new(format!("proxy-{shard}"), front);
        let mut options = TcpSocketOptions::default();
        options.so_reuseport = Some(shards > 1);
        service.add_listener(
            ListenerConfig::tcp(shard_address(cfg.listen, shard))
                .tcp_socket_options(options)
                .l4_buffer(L4BufferSettings::new(
                    CLIENT_READ_BUFFER,
                    DEFAULT_L4_WRITE_BUFFER_SIZE,
                )),
        );
        service.threads = Some(1);
        proxy_services.push(service);
    }

    let reloader = reload::Reloader::new(
        cfg.config_path.clone(),
        cfg.max_config_bytes,
        Arc::clone(&snapshot),
        Arc::clone(&metrics),
    );
    let (task, reload_handle) = reload::reload_task(reloader, cfg.poll_interval);
    let reload_service =
        background_service("reload", ReloadService(std::sync::Mutex::new(Some(task))));

    let mut admin_service = Service::new(
        "admin".to_owned(),
        HttpServer::new_app(admin::Admin::new(
            Arc::clone(&lifecycle),
            Arc::clone(&snapshot),
            reload_handle,
            Arc::clone(&metrics),
            Arc::clone(&upstream_health),
        )),
    );
    admin_service.add_tcp(&cfg.admin_listen.to_string());
    admin_service.threads = Some(1);

    for service in proxy_services {
        server.add_service(service);
    }
    server.add_service(admin_service);
    server.add_service(reload_service);

    tracing::info!(
        config = %cfg.config_path.display(),
        routes = route_count,
        listen = %cfg.listen,
        admin = %cfg.admin_listen,
        threads = cfg.threads,
        shard_cpus = ?shard_cpus,
        usable_cpus = usable_cpus.len(),
        open_files_limit = open_files,
        "switchyard started"
    );

    watch_listening(cfg.listen, Arc::clone(&lifecycle));
    let phases = server.watch_execution_phase();
    let (done, stopped) = std::sync::mpsc::channel();
    shutdown::watch_drain(
        phases,
        Arc::clone(&lifecycle),
        cfg.drain_timeout,
        done.clone(),
    );
    // Pingora's run loop goes on its own thread so that this one can return
    // as soon as the drain is over: Pingora would still wait out its grace
    // period, and returning (then leaving `main`) ends the process.
    let signals = shutdown::Signals::new(lifecycle, cfg.drain_delay);
    std::thread::Builder::new()
        .name("pingora".into())
        .spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(signals),
            });
            let _ = done.send(Stopped::Stopped);
        })
        .map_err(ServeError::Thread)?;
    let flusher = access_log_flusher(batches)?;
    // Both senders gone without a word cannot happen; count it as stopped.
    let stopped = stopped.recv().unwrap_or(Stopped::Stopped);
    flusher.stop();
    Ok(stopped)
}

/// The thread that hands on the access log's batches every
/// [`access_log::FLUSH_EVERY`], and once more when stopped.
struct Flusher {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    fn stop(mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn access_log_flusher(batches: Vec<Arc<access_log::Batch>>) -> Result<Flusher, ServeError> {
    if batches.is_empty() {
        return Ok(Flusher {
            stop: None,
            thread: None,
        });
    }
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || {
            // Ends when the sender is dropped (a timeout only flushes).
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(access_log::FLUSH_EVERY)
            {
                batches.iter().for_each(|b| b.flush());
            }
            batches.iter().for_each(|b| b.flush());
        })
        .map_err(ServeError::Thread)?;
    Ok(Flusher {
        stop: Some(stop),
        thread: Some(thread),
    })
}

/// How long Pingora may take to bind the main listener: it retries a busy
/// port for about 30 s.
const LISTEN_PATIENCE: Duration = Duration::from_secs(35);

/// Marks the lifecycle listening once the main listener accepts a
/// connection. Pingora binds each service's sockets inside that service's
/// own runtime and reports nothing when it has, so without this `/ready`
/// would say 200 before any shard listens (a probe, or a client, would be
/// refused). The kernel hands connections only to bound shards, so one
/// accepted connection means the port serves. The probe connection is
/// closed at once, before sending a byte (Front closes it silently).
fn watch_listening(listen: SocketAddr, lifecycle: Arc<Lifecycle>) {
    let target = match listen.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        ip if ip.is_unspecified() => {
            SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), listen.port())
        }
        _ => listen,
    };
    let watcher = Arc::clone(&lifecycle);
    let spawned = std::thread::Builder::new()
        .name("listen-watch".into())
        .spawn(move || {
            let lifecycle = watcher;
            let deadline = std::time::Instant::now() + LISTEN_PATIENCE;
            while std::time::Instant::now() < deadline {
                if std::net::TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
                    lifecycle.set_listening();
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            tracing::error!(listen = %listen, "the main listener never accepted a connection; readiness stays 503");
        });
    if let Err(e) = spawned {
        // Readiness cannot be learned; rather serve than stay unready.
        tracing::warn!(error = %e, "cannot start the listen watcher; readiness does not wait for the listener");
        lifecycle.set_listening();
    }
}

/// `addr` with the port written with `shard` leading zeros, so that each
/// shard's listener has its own key in Pingora's listener table.
fn shard_address(addr: SocketAddr, shard: usize) -> String {
    let zeros = "0".repeat(shard);
    match addr {
        SocketAddr::V4(a) => format!("{}:{zeros}{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{zeros}{}", a.ip(), a.port()),
    }
}

/// Runs the reload task on a Pingora background service (its own runtime,
/// stopped with the server).
struct ReloadService(std::sync::Mutex<Option<reload::ReloadTask>>);

#[async_trait::async_trait]
impl BackgroundService for ReloadService {
    async fn start(&self, shutdown: ShutdownWatch) {
        let task = self.0.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            task.run(shutdown).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::ToSocketAddrs;

    #[test]
    fn shard_addresses_differ_in_text_but_not_in_meaning() {
        for addr in ["127.0.0.1:8080", "[::1]:9000", "0.0.0.0:65535"] {
            let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
            let spelled: Vec<String> = (0..4).map(|s| shard_address(addr, s)).collect();
            for (i, s) in spelled.iter().enumerate() {
                let back = s.to_socket_addrs().ok().and_then(|mut a| a.next());
                assert_eq!(back, Some(addr), "{s}");
                assert!(!spelled[..i].contains(s), "{s} repeated");
            }
        }
    }
}

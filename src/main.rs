//! `switchyard`: the command line. Parses arguments, sets up logging, and
//! hands off to the server, routes or nginx-import crate; `run` returns the
//! exit code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod reload_client;

use clap::{Parser, Subcommand, ValueEnum};
use switchyard_server::report::ReloadResult;
use switchyard_server::{AccessLogSink, CpuAffinity, ServeConfig, ServeError, Stopped};

/// A hot-reloading path-prefix reverse proxy, built on Pingora.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy.
    Serve(ServeArgs),
    /// Validate a routes file exactly as a reload would (exit 0 valid, 1 invalid, 2 unreadable).
    Check {
        /// The routes file.
        path: PathBuf,
        /// Largest routes file read, in bytes; a larger one is refused unread (as serve does).
        #[arg(long, env = "SWITCHYARD_MAX_CONFIG_BYTES", default_value_t = switchyard_server::source::DEFAULT_MAX_CONFIG_BYTES,
              value_parser = clap::value_parser!(u64).range(1..))]
        max_config_bytes: u64,
    },
    /// Ask a running proxy to re-read its file now (exit 0 applied or unchanged, 1 rejected, 2 no answer).
    Reload {
        /// The proxy's admin listener [default: $SWITCHYARD_ADMIN_LISTEN, else 127.0.0.1:9901].
        #[arg(long, env = "SWITCHYARD_ADMIN")]
        admin: Option<String>,
    },
    /// Print a routes.yaml equivalent to an nginx.conf's upstreams and prefix locations, refusing with line numbers what cannot be translated (exit 0 translated, 1 untranslatable parts, 2 unreadable).
    ImportNginx {
        /// The nginx.conf to translate.
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Affinity {
    Auto,
    On,
    Off,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The routes file (mount the ConfigMap's directory, not a subPath).
    #[arg(long, env = "SWITCHYARD_CONFIG")]
    config: PathBuf,
    /// Address of the proxy listener.
    #[arg(long, env = "SWITCHYARD_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Address of the admin listener (/health, /ready, /metrics, /routes, /reload).
    #[arg(
        long,
        env = "SWITCHYARD_ADMIN_LISTEN",
        default_value = "127.0.0.1:9901"
    )]
    admin_listen: SocketAddr,
    /// Proxy worker threads [default: available cores].
    #[arg(long, env = "SWITCHYARD_THREADS")]
    threads: Option<usize>,
    /// Log line format.
    #[arg(
        long,
        env = "SWITCHYARD_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// One log line per proxied request.
    #[arg(long, env = "SWITCHYARD_ACCESS_LOG", value_enum, default_value = "on")]
    access_log: OnOff,
    /// Serve plain HTTP/1.1 requests on the hand-written fast path; `off`
    /// sends every request through pingora-proxy (docs/fast-path.md).
    #[arg(long, env = "SWITCHYARD_FAST_PATH", value_enum, default_value = "on")]
    fast_path: OnOff,
    /// Hold each proxy thread to a CPU of its own: `auto` when there is one
    /// thread per usable CPU (the default --threads, or a CPU-exclusive
    /// container), `on` always, `off` never (docs/configuration.md).
    #[arg(
        long,
        env = "SWITCHYARD_CPU_AFFINITY",
        value_enum,
        default_value = "auto"
    )]
    cpu_affinity: Affinity,
    /// Seconds between checks of the file's hash, backing up the watcher.
    #[arg(long, env = "SWITCHYARD_POLL_INTERVAL", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    poll_interval: u64,
    /// Proxies whose X-Forwarded-For/-Proto are believed (CIDR or address, comma-separated).
    #[arg(long, env = "SWITCHYARD_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    trusted_proxies: Vec<ipnet::IpNet>,
    /// Seconds an idle keep-alive client connection is kept open (0: until the client closes it).
    #[arg(long, env = "SWITCHYARD_KEEPALIVE_TIMEOUT", default_value_t = 75)]
    keepalive_timeout: u64,
    /// Seconds a client has to send a whole request head; then 408 and close.
    #[arg(long, env = "SWITCHYARD_HEADER_TIMEOUT", default_value_t = 20.0, value_parser = positive_secs)]
    header_timeout: f64,
    /// Largest request head (request line and header fields) in bytes; beyond it 431 (414 for the line alone).
    #[arg(long, env = "SWITCHYARD_MAX_HEADER_BYTES", default_value_t = 32768,
          value_parser = clap::value_parser!(u64).range(1024..=1_048_575))]
    max_header_bytes: u64,
    /// Client connections open at once; beyond it new ones get 503 and are closed (0: no cap).
    #[arg(long, env = "SWITCHYARD_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: u64,
    /// Seconds a client may leave a response unread (no write progress) before the connection is cut (0: no limit).
    #[arg(long, env = "SWITCHYARD_SEND_TIMEOUT", default_value_t = 60)]
    send_timeout: u64,
    /// Largest routes file read, in bytes; a larger one is refused unread.
    #[arg(long, env = "SWITCHYARD_MAX_CONFIG_BYTES", default_value_t = switchyard_server::source::DEFAULT_MAX_CONFIG_BYTES,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_config_bytes: u64,
    /// Seconds to keep serving after SIGTERM while readiness reports 503.
    #[arg(long, env = "SWITCHYARD_DRAIN_DELAY", default_value_t = 5.0, value_parser = non_negative_secs, allow_negative_numbers = true)]
    drain_delay: f64,
    /// Seconds in-flight requests get to finish once the listeners close.
    #[arg(long, env = "SWITCHYARD_DRAIN_TIMEOUT", default_value_t = 20.0, value_parser = non_negative_secs, allow_negative_numbers = true)]
    drain_timeout: f64,
}

/// A number of seconds above zero.
fn positive_secs(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds above 0")),
    }
}

/// A number of seconds, 0 or more (a negative one is an error, not 0).
fn non_negative_secs(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v >= 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds, 0 or more")),
    }
}

/// `10.0.0.0/8`, or a bare address meaning just that address.
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s:?} is not a CIDR (10.0.0.0/8) or an IP address"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(run(cli))
}

fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Check {
            path,
            max_config_bytes,
        } => check(&path, max_config_bytes),
        Command::Serve(args) => serve(args),
        Command::Reload { admin } => reload(admin),
        Command::ImportNginx { file } => import_nginx(&file),
    }
}

fn reload(admin: Option<String>) -> u8 {
    let admin = admin
        .or_else(|| std::env::var("SWITCHYARD_ADMIN_LISTEN").ok())
        .unwrap_or_else(|| "127.0.0.1:9901".to_owned());
    match reload_client::post_reload(&admin) {
        Ok(report) => {
            println!("{}", reload_client::summary(&report));
            match report.result {
                ReloadResult::Success | ReloadResult::Unchanged => 0,
                ReloadResult::Failure => 1,
            }
        }
        Err(e) => {
            eprintln!("switchyard reload: no answer from {admin}: {e}");
            2
        }
    }
}

/// `switchyard import-nginx FILE`: prints the routes.yaml on stdout and the
/// problems on stderr. Exit status 0 translated, 1 untranslatable parts (or
/// not nginx syntax), 2 unreadable.
fn import_nginx(file: &std::path::Path) -> u8 {
    use std::io::Write as _;
    use switchyard_nginx_import::ImportError;

    let shown = file.display().to_string();
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{shown}: cannot read: {e}");
            return 2;
        }
    };
    // nginx itself does not care about encodings; neither do the parts of a
    // config that translate (ASCII paths and addresses).
    let text = String::from_utf8_lossy(&bytes);
    let t = match switchyard_nginx_import::import(&shown, &text) {
        Ok(t) => t,
        Err(ImportError::Syntax(e)) => {
            eprintln!("{shown}:{}: {}", e.line, e.message);
            eprintln!("{shown}: not translated: this is not valid nginx configuration syntax");
            return 1;
        }
        Err(ImportError::Unloadable(errors)) => {
            eprintln!("switchyard import-nginx: bug: the generated routes.yaml does not pass `switchyard check`:");
            eprintln!("{errors}");
            return 1;
        }
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(t.yaml.as_bytes())
        .and_then(|()| stdout.flush())
    {
        eprintln!("switchyard import-nginx: cannot write the routes.yaml: {e}");
        return 1;
    }
    for p in &t.problems {
        eprintln!("{shown}:{}: {}", p.line, p.message);
    }
    let routes = format!("{} route{}", t.routes, if t.routes == 1 { "" } else { "s" });
    if t.problems.is_empty() {
        eprintln!("{shown}: translated, {routes}");
        0
    } else {
        let n = t.problems.len();
        eprintln!(
            "{shown}: {n} part{} not translated; the routes.yaml printed holds only the {routes} that did",
            if n == 1 { "" } else { "s" }
        );
        1
    }
}

fn check(path: &std::path::Path, max_config_bytes: u64) -> u8 {
    match switchyard_server::load_file(path, max_config_bytes) {
        Ok((table, _)) => {
            println!("{}: ok, {} routes", path.display(), table.len());
            0
        }
        Err(ServeError::Invalid(errors)) => {
            eprintln!("{errors}");
            let n = errors.total();
            eprintln!(
                "{}: {n} error{}",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
            1
        }
        Err(e) => {
            eprintln!("{e}");
            2
        }
    }
}

fn serve(args: ServeArgs) -> u8 {
    // Dropped when `serve` returns, after the last line is logged.
    let (_log, writer) = init_logging(args.log_format);
    // The fast path's access-log batches go through the same writer, so
    // they land whole between the other lines.
    let access_log_sink = AccessLogSink::new(args.log_format == LogFormat::Json, move |batch| {
        use std::io::Write as _;
        // One write, so one message to the log thread: the batch stays whole.
        let _ = writer.clone().write_all(batch);
    });
    let seconds = |s: f64| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO);
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let cfg = ServeConfig {
        config_path: args.config,
        listen: args.listen,
        admin_listen: args.admin_listen,
        threads,
        drain_delay: seconds(args.drain_delay),
        drain_timeout: seconds(args.drain_timeout),
        poll_interval: Duration::from_secs(args.poll_interval),
        access_log: args.access_log == OnOff::On,
        fast_path: args.fast_path == OnOff::On,
        access_log_sink: Some(access_log_sink),
        cpu_affinity: match args.cpu_affinity {
            Affinity::Auto => CpuAffinity::Auto,
            Affinity::On => CpuAffinity::On,
            Affinity::Off => CpuAffinity::Off,
        },
        trusted_proxies: args.trusted_proxies,
        keepalive_timeout: (args.keepalive_timeout > 0)
            .then(|| Duration::from_secs(args.keepalive_timeout)),
        header_timeout: seconds(args.header_timeout),
        max_header_bytes: usize::try_from(args.max_header_bytes).unwrap_or(usize::MAX),
        max_connections: (args.max_connections > 0)
            .then(|| usize::try_from(args.max_connections).unwrap_or(usize::MAX)),
        send_timeout: (args.send_timeout > 0).then(|| Duration::from_secs(args.send_timeout)),
        max_config_bytes: args.max_config_bytes,
    };
    match switchyard_server::serve(cfg) {
        Ok(Stopped::Drained | Stopped::Stopped) => 0,
        // The interface promises 0 after a SIGTERM drain, cut or not; the
        // cut requests are said in the log, for a rollout to see.
        Ok(Stopped::DrainTimedOut { cut }) => {
            tracing::warn!(cut, "stopped with requests cut at the drain timeout");
            0
        }
        Err(ServeError::Invalid(errors)) => {
            for line in errors.to_string().lines() {
                tracing::error!("{line}");
            }
            eprintln!("{errors}");
            1
        }
        Err(e @ ServeError::Unreadable { .. }) => {
            tracing::error!("{e}");
            2
        }
        Err(e) => {
            tracing::error!("{e}");
            3
        }
    }
}

/// Logs go to stderr through tracing; Pingora's `log` records are bridged
/// by tracing-subscriber's `tracing-log` feature. `RUST_LOG` filters.
///
/// Lines are formatted where they happen but written by a thread of their
/// own, in batches (a 64 KiB buffer flushed whenever the queue runs dry),
/// so a request never waits for a write to stderr: one synchronous write
/// per access-log line cost more than the whole fast path. Nothing is
/// dropped: a queue full of unwritten lines makes the logger wait. The
/// returned guard writes what is left when dropped; keep it until exit.
fn init_logging(
    format: LogFormat,
) -> (
    tracing_appender::non_blocking::WorkerGuard,
    tracing_appender::non_blocking::NonBlocking,
) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("switchyard-log")
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stderr(),
        ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(e) = result {
        eprintln!("switchyard: logging not initialised: {e}");
    }
    (guard, writer)
}

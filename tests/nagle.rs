//! Keep-alive upstreams that Nagle: Python's `http.server` with
//! `protocol_version = "HTTP/1.1"` writes a response's head and body in two
//! writes with Nagle on, so on a reused connection the body waits for the
//! ACK of the head, and a peer that delays its ACKs (~40 ms on Linux) adds
//! that to every response. The fast path acknowledges at once before each
//! wait for more of a response than has arrived (`quick_ack` in
//! `crates/server/src/fast/mod.rs`), so pooled requests to such an upstream
//! are as fast as fresh ones; pingora-proxy (`--fast-path off`) does not,
//! and shows the stall. The upstream is the real thing,
//! `tests/fixtures/nagle_upstream.py` under `python3`; `benches/nagle.py`
//! measures the same cases with nginx alongside (benches/README.md).

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::support::{patience, routes_yaml, Proxy};

/// Sequential requests on one client connection, per case.
const REQUESTS: usize = 20;
/// The fast path's median must stay below this: well under the ~40 ms a
/// delayed ACK costs, well above a debug build's per-request time.
const FAST_MEDIAN: Duration = Duration::from_millis(15);
/// The stall, as seen without the fast path: a delayed ACK is 40 ms at
/// least.
const STALL_MEDIAN: Duration = Duration::from_millis(30);

/// `tests/fixtures/nagle_upstream.py`, killed when dropped (and exiting by
/// itself when this process goes away, since its stdin closes then).
struct NaglingUpstream {
    addr: SocketAddr,
    _child: Child,
}

impl NaglingUpstream {
    async fn start() -> NaglingUpstream {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/nagle_upstream.py"
        );
        let mut child = Command::new("python3")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn python3 (the Nagling upstream)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        tokio::time::timeout(patience(), BufReader::new(stdout).read_line(&mut line))
            .await
            .expect("the upstream did not report its port in time")
            .expect("read the upstream's stdout");
        let port: u16 = line
            .strip_prefix("listening ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the upstream: {line:?}"));
        NaglingUpstream {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _child: child,
        }
    }
}

/// One keep-alive client connection that reads `Content-Length` and
/// chunked bodies, every read under [`patience`].
struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = tokio::time::timeout(patience(), TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Client {
            stream: BufReader::new(stream),
        }
    }

    /// `GET path`: the status and the body, and how long it took from the
    /// request's write to the body's last byte.
    async fn get(&mut self, path: &str) -> (u16, String, Duration) {
        let started = Instant::now();
        let exchange = async {
            let req = format!("GET {path} HTTP/1.1\r\nHost: nagle.test\r\n\r\n");
            self.stream.get_mut().write_all(req.as_bytes()).await?;
            let status_line = self.line().await?;
            let status = status_line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let (mut length, mut chunked) = (0usize, false);
            loop {
                let line = self.line().await?;
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap_or((&line, ""));
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.trim().eq_ignore_ascii_case("chunked");
                }
            }
            let mut body = Vec::new();
            if chunked {
                loop {
                    let size = usize::from_str_radix(self.line().await?.trim(), 16)
                        .map_err(|e| std::io::Error::other(format!("chunk size: {e}")))?;
                    let mut chunk = vec![0; size + 2];
                    self.stream.read_exact(&mut chunk).await?;
                    if size == 0 {
                        break;
                    }
                    body.extend_from_slice(&chunk[..size]);
                }
            } else {
                body.resize(length, 0);
                self.stream.read_exact(&mut body).await?;
            }
            Ok::<_, std::io::Error>((status, String::from_utf8_lossy(&body).into_owned()))
        };
        let (status, body) = tokio::time::timeout(patience(), exchange)
            .await
            .unwrap_or_else(|_| panic!("GET {path}: no whole response in time"))
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        (status, body, started.elapsed())
    }

    async fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end().to_owned())
    }
}

/// What [`REQUESTS`] sequential requests on one client connection saw.
struct Run {
    median: Duration,
    latencies: Vec<Duration>,
    /// The upstream connections that served them, as the bodies say
    /// (`conn=K req=M`), in order of first use.
    upstream_conns: Vec<String>,
}

async fn run(addr: SocketAddr, path: &str) -> Run {
    let mut client = Client::connect(addr).await;
    let mut latencies = Vec::with_capacity(REQUESTS);
    let mut upstream_conns: Vec<String> = Vec::new();
    for _ in 0..REQUESTS {
        let (status, body, took) = client.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        let conn = body
            .split_whitespace()
            .find_map(|w| w.strip_prefix("conn="))
            .unwrap_or_else(|| panic!("GET {path}: body names no connection: {body:?}"))
            .to_owned();
        if !upstream_conns.contains(&conn) {
            upstream_conns.push(conn);
        }
        latencies.push(took);
    }
    let mut sorted = latencies.clone();
    sorted.sort();
    Run {
        median: sorted[REQUESTS / 2],
        latencies,
        upstream_conns,
    }
}

fn show(latencies: &[Duration]) -> String {
    let ms: Vec<String> = latencies
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
        .collect();
    format!("[{}] ms", ms.join(", "))
}

/// Through the fast path, 20 requests on one client connection reuse one
/// pooled upstream connection, and none of them waits for a delayed ACK:
/// neither a body written after its head (`Content-Length`) nor chunks
/// written one by one.
#[tokio::test(flavor = "multi_thread")]
async fn pooled_requests_to_a_nagling_upstream_do_not_wait_for_delayed_acks() {
    let upstream = NaglingUpstream::start().await;
    let yaml = routes_yaml(&[("/", &upstream.addr.to_string())]);
    let proxy = Proxy::start_with(&yaml, &["--fast-path", "on", "--access-log", "off"]).await;
    for path in ["/length", "/chunked"] {
        let run = run(proxy.addr, path).await;
        assert!(
            run.median < FAST_MEDIAN,
            "GET {path} through the fast path: median {:?} per request on a pooled \
             connection, want < {FAST_MEDIAN:?}: {}",
            run.median,
            show(&run.latencies)
        );
        assert_eq!(
            run.upstream_conns.len(),
            1,
            "GET {path}: the pooled upstream connection was not reused: served on {:?}",
            run.upstream_conns
        );
    }
}

/// Without the fast path (pingora-proxy) the same requests each wait for
/// the proxy's delayed ACK: the stall the fast path removes, and proof
/// that the upstream really Nagles on this machine.
#[tokio::test(flavor = "multi_thread")]
async fn without_the_fast_path_a_nagling_upstream_stalls_pooled_requests() {
    let upstream = NaglingUpstream::start().await;
    let yaml = routes_yaml(&[("/", &upstream.addr.to_string())]);
    let proxy = Proxy::start_with(&yaml, &["--fast-path", "off", "--access-log", "off"]).await;
    let run = run(proxy.addr, "/length").await;
    assert!(
        run.median >= STALL_MEDIAN,
        "GET /length through pingora-proxy: median {:?} per request, expected the \
         delayed-ACK stall (>= {STALL_MEDIAN:?}): {}",
        run.median,
        show(&run.latencies)
    );
    assert_eq!(
        run.upstream_conns.len(),
        1,
        "the stall is on a reused connection: served on {:?}",
        run.upstream_conns
    );
}

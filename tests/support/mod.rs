//! Shared test support: the real `switchyard` binary on ephemeral ports,
//! real upstream HTTP servers owned by each test, and bounded polling.
#![allow(dead_code, unused_imports, missing_docs)]

pub mod browser;
pub mod kubelet;
pub mod upstream;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub use upstream::Upstream;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// How long to wait for anything asynchronous. Raise it on a slow machine
/// with `SWITCHYARD_TEST_PATIENCE_MS`.
pub fn patience() -> Duration {
    std::env::var("SWITCHYARD_TEST_PATIENCE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(15), Duration::from_millis)
}

/// Polls `check` until it returns `Some`, or panics with `what` after
/// [`patience`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + patience();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An address nothing listens on: bound to learn a free port, then closed,
/// so connecting to it is refused.
pub fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr")
}

/// An HTTP client that never goes through a proxy from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(patience())
        .build()
        .expect("client")
}

/// A running `switchyard serve`, killed when dropped.
pub struct Proxy {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    dir: Option<tempfile::TempDir>,
    pub config: PathBuf,
    logs: Arc<Mutex<String>>,
}

impl Proxy {
    /// Starts the proxy on `yaml`, written to `<tempdir>/config/routes.yaml`.
    pub async fn start(yaml: &str) -> Proxy {
        Self::start_with(yaml, &[]).await
    }

    /// Like [`Proxy::start`], with extra `serve` arguments.
    pub async fn start_with(yaml: &str, extra: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        // The file gets a directory of its own, as in a ConfigMap mount.
        let config_dir = dir.path().join("config");
        std::fs::create_dir(&config_dir).expect("config dir");
        let config = config_dir.join("routes.yaml");
        std::fs::write(&config, yaml).expect("write config");
        Self::spawn_in(dir, config, extra).await
    }

    /// Like [`Proxy::start_with`], started by `sh -c` after the shell
    /// commands `shell` (e.g. `ulimit -Sn 256`), which then `exec`s it.
    pub async fn start_in_shell(yaml: &str, shell: &str, extra: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_dir = dir.path().join("config");
        std::fs::create_dir(&config_dir).expect("config dir");
        let config = config_dir.join("routes.yaml");
        std::fs::write(&config, yaml).expect("write config");
        Self::spawn(dir, config, extra, Some(shell)).await
    }

    /// Starts the proxy on an existing config file inside `dir`.
    pub async fn spawn_in(dir: tempfile::TempDir, config: PathBuf, extra: &[&str]) -> Proxy {
        Self::spawn(dir, config, extra, None).await
    }

    async fn spawn(
        dir: tempfile::TempDir,
        config: PathBuf,
        extra: &[&str],
        shell: Option<&str>,
    ) -> Proxy {
        let mut dir = Some(dir);
        // Ports are picked by binding :0 and closing; another process can
        // take one in between, so a failed bind is retried with new ports.
        for _ in 0..5 {
            let (addr, admin) = (refused_addr(), refused_addr());
            let mut cmd = match shell {
                Some(shell) => {
                    let mut sh = Command::new("sh");
                    sh.arg("-c")
                        .arg(format!("{shell} && exec \"$0\" \"$@\""))
                        .arg(BIN);
                    sh
                }
                None => Command::new(BIN),
            };
            cmd.arg("serve")
                .arg("--config")
                .arg(&config)
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--admin-listen")
                .arg(admin.to_string())
                .arg("--threads")
                .arg("2")
                .args(extra)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            let mut child = cmd.spawn().expect("spawn switchyard");
            let logs = Arc::new(Mutex::new(String::new()));
            collect_lines(child.stderr.take().expect("stderr"), Arc::clone(&logs));
            let mut proxy = Proxy {
                child,
                addr,
                admin,
                dir: dir.take(),
                config: config.clone(),
                logs,
            };
            match proxy.wait_ready().await {
                Ok(()) => return proxy,
                Err(status) if proxy.logs().contains("cannot listen") => {
                    eprintln!("switchyard exited ({status}) on a port race; retrying");
                    dir = proxy.dir.take();
                    continue;
                }
                Err(status) => panic!("switchyard exited early ({status}):\n{}", proxy.logs()),
            }
        }
        panic!("could not start switchyard on free ports after 5 tries");
    }

    /// The temporary directory the test owns (the config lives below it).
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + patience();
        let url = format!("http://{}/ready", self.admin);
        let c = client();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the log reader catch up with the last lines.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(status.to_string());
            }
            if let Ok(r) = c.get(&url).send().await {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            assert!(
                Instant::now() < deadline,
                "switchyard not ready:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://<listen><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://<admin-listen><path>`
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Everything the process has logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = self.child.id().expect("pid");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits"));
        nix::sys::signal::kill(pid, sig).expect("kill");
    }

    /// Waits for the process to exit, up to [`patience`].
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(patience(), self.child.wait())
            .await
            .expect("switchyard did not exit in time")
            .expect("wait")
    }

    /// The routes file path.
    pub fn config_path(&self) -> &Path {
        &self.config
    }
}

fn collect_lines(stderr: tokio::process::ChildStderr, logs: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if std::env::var_os("SWITCHYARD_TEST_ECHO_LOGS").is_some() {
                eprintln!("[switchyard] {line}");
            }
            if let Ok(mut l) = logs.lock() {
                l.push_str(&line);
                l.push('\n');
            }
        }
    });
}

/// Runs the binary to completion with `args`, returning (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .output()
        .expect("run switchyard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One client connection speaking raw HTTP/1.1, for keep-alive checks and
/// requests a library client would not send.
pub struct RawConn {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
}

/// A response read off a [`RawConn`].
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        RawConn {
            stream: tokio::io::BufReader::new(s),
        }
    }

    /// Sends `GET path` with `Host: host` and reads the response.
    pub async fn get(&mut self, host: &str, path: &str) -> RawResponse {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        self.send(req.as_bytes()).await;
        self.read_response().await.expect("response")
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.get_mut().write_all(bytes).await.expect("write");
    }

    /// Reads one response with a `Content-Length` body; `None` if the
    /// connection closed first.
    pub async fn read_response(&mut self) -> Option<RawResponse> {
        use tokio::io::AsyncReadExt;
        let fut = async {
            let mut status_line = String::new();
            if self.stream.read_line(&mut status_line).await.ok()? == 0 {
                return None;
            }
            let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                self.stream.read_line(&mut line).await.ok()?;
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (k, v) = line.split_once(':')?;
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            self.stream.read_exact(&mut body).await.ok()?;
            Some(RawResponse {
                status,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        };
        tokio::time::timeout(patience(), fut).await.ok().flatten()
    }

    /// True once the peer has closed the connection.
    pub async fn is_closed(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(patience(), self.stream.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

impl Proxy {
    /// Admin `GET /routes`.
    pub async fn routes(&self) -> serde_json::Value {
        client()
            .get(self.admin_url("/routes"))
            .send()
            .await
            .expect("GET /routes")
            .json()
            .await
            .expect("routes JSON")
    }

    /// Admin `POST /reload`: the status and the JSON answer.
    pub async fn post_reload(&self) -> (u16, serde_json::Value) {
        let r = client()
            .post(self.admin_url("/reload"))
            .send()
            .await
            .expect("POST /reload");
        let status = r.status().as_u16();
        (status, r.json().await.expect("reload JSON"))
    }

    /// Waits until the applied generation is `generation`.
    pub async fn wait_generation(&self, generation: u64) -> serde_json::Value {
        eventually(&format!("generation {generation}"), || async {
            let routes = self.routes().await;
            (routes["generation"] == generation).then_some(routes)
        })
        .await
    }

    /// Waits until `GET path` on the main listener answers `status`.
    pub async fn wait_status(&self, path: &str, status: u16) {
        let c = client();
        eventually(&format!("GET {path} -> {status}"), || {
            let c = c.clone();
            async move {
                let r = c.get(self.url(path)).send().await.ok()?;
                (r.status().as_u16() == status).then_some(())
            }
        })
        .await
    }

    /// Waits until the log holds `needle`, and returns the log.
    pub async fn wait_log(&self, needle: &str) -> String {
        eventually(&format!("log line containing {needle:?}"), || {
            let logs = self.logs();
            async move { logs.contains(needle).then_some(logs) }
        })
        .await
    }
}

/// `routes:` with one `{path, upstream}` entry per pair, plus extra lines.
pub fn routes_yaml(routes: &[(&str, &str)]) -> String {
    let mut s = String::from("routes:\n");
    for (path, upstream) in routes {
        s.push_str(&format!("  - path: {path}\n    upstream: {upstream}\n"));
    }
    s
}

/// One sample of a Prometheus text exposition.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the samples of a text exposition (comments skipped).
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut map = std::collections::BTreeMap::new();
        // Label values here never contain `",` so a simple split is enough.
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once("=\"").expect("label");
            map.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
        }
        out.push(Sample {
            name: name.to_owned(),
            labels: map,
            value: value.parse().expect("value"),
        });
    }
    out
}

/// The value of the one sample named `name` with (at least) `labels`.
pub fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(
        found.len() <= 1,
        "{name} {labels:?} matches {} samples",
        found.len()
    );
    found.first().map(|s| s.value)
}

impl Proxy {
    /// Admin `GET /metrics`, raw.
    pub async fn scrape_text(&self) -> String {
        client()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Admin `GET /metrics`, parsed.
    pub async fn scrape(&self) -> Vec<Sample> {
        parse_exposition(&self.scrape_text().await)
    }
}

impl Proxy {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }
}

/// The name of the upstream that answers `GET path` through `proxy`, if one
/// does with 200.
pub async fn upstream_name(proxy: &Proxy, path: &str) -> Option<String> {
    let r = client().get(proxy.url(path)).send().await.ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json::<upstream::Echo>().await.ok().map(|e| e.upstream)
}

/// Waits until `GET path` through `proxy` is answered by upstream `name`.
pub async fn wait_upstream(proxy: &Proxy, path: &str, name: &str) {
    eventually(&format!("{path} served by {name}"), || async {
        (upstream_name(proxy, path).await.as_deref() == Some(name)).then_some(())
    })
    .await;
}

/// Two upstreams, `any` and `dev`, behind `/app1`: one route for any host
/// and one for `dev.example.com`. The upstreams stop when dropped.
pub async fn two_hosts_on_one_path() -> (Upstream, Upstream, Proxy) {
    let (any, dev) = tokio::join!(Upstream::start("any"), Upstream::start("dev"));
    let proxy = Proxy::start(&format!(
        "routes:\n  - {{path: /app1, upstream: '{}'}}\n  - {{path: /app1, host: dev.example.com, upstream: '{}'}}\n",
        any.host_port(),
        dev.host_port()
    ))
    .await;
    (any, dev, proxy)
}

/// A WebSocket to `path` through the proxy, its handshake answered 101.
pub async fn websocket(
    proxy: &Proxy,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let (ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}{path}", proxy.addr))
        .await
        .expect("websocket handshake through the proxy");
    assert_eq!(resp.status(), 101);
    ws
}

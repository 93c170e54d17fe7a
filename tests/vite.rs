//! The Vite recipe of docs/dev-servers.md, end to end: a real Vite dev
//! server (from npm, pinned by tests/fixtures/vite/package-lock.json) with
//! `base: '/app1/'` behind the real binary on a route that keeps the
//! prefix, and a real headless Chromium loading the page through the proxy
//! under a real-looking host name. An edit to a module must arrive by HMR
//! without a page reload, and keep arriving on the same socket after a
//! routes reload.
//!
//! Vite's client quietly falls back to connecting to the dev server
//! directly when the proxied socket fails, and on loopback that would
//! work, hiding a broken proxy. So the test checks, from the browser's own
//! network log, that every request and WebSocket the page opened went to
//! the proxy, and, from the proxy's access log, that the socket was
//! upgraded there. (With `--port 0` Vite's fallback address carries port 0
//! and fails too; the checks do not rely on that. Started on a fixed port
//! with the socket's path routed to a dead upstream, HMR kept working over
//! the fallback and only the network-log check failed the test.)

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::browser::{output_dir, Browser};
use crate::support::{eventually, Proxy, Upstream};

/// The host name the page is loaded under, mapped to loopback in the
/// browser only; the fixture's `server.allowedHosts` names it.
const HOST: &str = "dev.example.test";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vite")
}

/// `node_modules` for the fixture's lock file, installed once with
/// `npm ci` under `target/tmp` and reused while the lock is unchanged.
async fn vite_modules() -> PathBuf {
    let lock = std::fs::read(fixture().join("package-lock.json")).expect("package-lock.json");
    let key = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        lock.hash(&mut h);
        h.finish()
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("vite-fixture-{key:016x}"));
    let modules = dir.join("node_modules");
    if modules.join("vite/bin/vite.js").is_file() {
        return modules;
    }
    // Installed beside and renamed into place, so that an interrupted
    // install is never taken for a finished one.
    let staging = dir.with_extension(format!("staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).expect("staging dir");
    for f in ["package.json", "package-lock.json"] {
        std::fs::copy(fixture().join(f), staging.join(f)).expect("copy fixture manifest");
    }
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&staging)
            .output(),
    )
    .await
    .expect("npm ci took over 5 minutes")
    .expect("run npm (is node installed?)");
    assert!(
        out.status.success(),
        "npm ci failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if std::fs::rename(&staging, &dir).is_err() {
        // Another run finished first; theirs is as good.
        let _ = std::fs::remove_dir_all(&staging);
    }
    modules
}

/// A running Vite dev server, killed (with anything it started) on drop.
struct Vite {
    child: Child,
    port: u16,
    output: Arc<Mutex<String>>,
}

impl Vite {
    /// Serves a copy of the fixture app from `app` on an ephemeral
    /// loopback port.
    async fn start(app: &Path, modules: &Path) -> Vite {
        for f in ["index.html", "main.js", "render.js", "vite.config.js"] {
            std::fs::copy(fixture().join(f), app.join(f)).expect("copy fixture");
        }
        std::os::unix::fs::symlink(modules, app.join("node_modules")).expect("link node_modules");
        let mut child = Command::new("node")
            .arg(modules.join("vite/bin/vite.js"))
            // Port 0: the kernel picks a free one and Vite prints it.
            .args(["--host", "127.0.0.1", "--port", "0", "--strictPort"])
            // Import the config as it is, rather than bundle it into a
            // temp file inside the shared node_modules.
            .args(["--configLoader", "native"])
            .arg(app)
            .current_dir(app)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn vite (is node installed?)");
        let output = Arc::new(Mutex::new(String::new()));
        if let Some(out) = child.stdout.take() {
            collect_lines(out, Arc::clone(&output));
        }
        if let Some(err) = child.stderr.take() {
            collect_lines(err, Arc::clone(&output));
        }
        let mut vite = Vite {
            child,
            port: 0,
            output,
        };
        vite.port = eventually("vite to print its address", || {
            let text = vite.output();
            async move {
                let rest = text.split("http://127.0.0.1:").nth(1)?;
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            }
        })
        .await;
        vite
    }

    fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

/// Appends each line `pipe` yields to `output`, until it closes.
fn collect_lines(
    pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    output: Arc<Mutex<String>>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut o) = output.lock() {
                o.push_str(&line);
                o.push('\n');
            }
        }
    });
}

impl Drop for Vite {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Rewrites the module the page renders with, as an editor would.
fn edit_render(app: &Path, text: &str) {
    std::fs::write(
        app.join("render.js"),
        format!("export function render(el) {{\n  el.textContent = '{text}';\n}}\n"),
    )
    .expect("edit render.js");
}

/// Waits until the page shows `text`, through HMR: the marker set on
/// `window` must survive (no reload), and no navigation may have happened
/// since `mark`.
async fn wait_hot_update(browser: &Browser, mark: usize, text: &str, vite: &Vite) {
    let shown = eventually(&format!("the page to show {text:?}"), || async {
        let v = browser
            .eval_string("document.querySelector('#out').textContent")
            .await
            .ok()?;
        (v == text).then_some(v)
    })
    .await;
    assert_eq!(shown, text);
    assert_eq!(
        browser
            .eval("window.__switchyardMarker ?? null")
            .await
            .unwrap(),
        Value::from("kept"),
        "the page was reloaded, not hot-updated; vite said:\n{}",
        vite.output()
    );
    let navigations: Vec<String> = browser
        .events_since(mark)
        .into_iter()
        .filter(|e| e.method == "Page.frameNavigated" || e.method == "Page.loadEventFired")
        .map(|e| e.method)
        .collect();
    assert!(navigations.is_empty(), "page navigated: {navigations:?}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium, node and the npm registry; scripts/test.sh runs it"]
async fn vite_behind_a_prefix_hot_updates_through_the_proxy_across_a_reload() {
    let modules = vite_modules().await;
    let app = tempfile::tempdir().expect("app dir");
    let vite = Vite::start(app.path(), &modules).await;

    // The recipe: the route keeps the prefix; Vite serves under base.
    let other = Upstream::start("other").await;
    let v1 = format!(
        "routes:\n  - path: /app1\n    upstream: 127.0.0.1:{}\n",
        vite.port
    );
    let proxy = Proxy::start(&v1).await;
    let origin = format!("http://{HOST}:{}", proxy.addr.port());

    let out = output_dir("vite-hmr");
    let browser = Browser::launch(
        &out,
        &[&format!("--host-resolver-rules=MAP {HOST} 127.0.0.1")],
    )
    .await;
    let start = browser.mark();
    browser
        .navigate(&format!("{origin}/app1/"))
        .await
        .unwrap_or_else(|e| panic!("{e}\nvite said:\n{}", vite.output()));
    assert_eq!(
        browser.eval("document.title").await.unwrap(),
        Value::from("app1 behind Switchyard"),
        "vite said:\n{}",
        vite.output()
    );
    // The module ran, and the HMR client says it is connected.
    eventually("the module to render", || async {
        let v = browser
            .eval_string("document.querySelector('#out').textContent")
            .await
            .ok()?;
        (v == "version 1").then_some(())
    })
    .await;
    browser
        .wait_event("[vite] connected.", start, |e| {
            e.method == "Runtime.consoleAPICalled"
                && e.params["args"][0]["value"]
                    .as_str()
                    .is_some_and(|s| s.contains("[vite] connected."))
        })
        .await;

    browser
        .eval("window.__switchyardMarker = 'kept'")
        .await
        .unwrap();
    let before_edit = browser.mark();
    edit_render(app.path(), "version 2");
    wait_hot_update(&browser, before_edit, "version 2", &vite).await;

    // A routes reload must not disturb the upgraded socket.
    std::fs::write(
        proxy.config_path(),
        format!(
            "{v1}  - path: /app2\n    upstream: '{}'\n",
            other.host_port()
        ),
    )
    .unwrap();
    proxy.wait_generation(2).await;
    let before_second = browser.mark();
    edit_render(app.path(), "version 3");
    wait_hot_update(&browser, before_second, "version 3", &vite).await;
    browser.screenshot(&out.join("vite-hmr.png")).await;

    // Every request and socket the page opened went to the proxy.
    let events = browser.events_since(start);
    let requests: Vec<String> = events
        .iter()
        .filter(|e| e.method == "Network.requestWillBeSent")
        .filter_map(|e| e.params["request"]["url"].as_str().map(str::to_owned))
        .collect();
    assert!(
        requests.len() >= 3,
        "page, client and modules: {requests:?}"
    );
    for url in &requests {
        // The browser's own favicon request goes to the site root: through
        // the proxy too, just not under the prefix.
        assert!(
            url.starts_with(&format!("{origin}/app1/")) || *url == format!("{origin}/favicon.ico"),
            "a request bypassed the proxy: {url}"
        );
    }
    let sockets: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.method == "Network.webSocketCreated")
        .filter_map(|e| Some((e.params["requestId"].as_str()?, e.params["url"].as_str()?)))
        .collect();
    assert_eq!(
        sockets.len(),
        1,
        "one HMR socket, never a fallback: {sockets:?}"
    );
    let (socket_id, socket_url) = sockets[0];
    assert!(
        socket_url.starts_with(&format!("ws://{HOST}:{}/app1/", proxy.addr.port())),
        "{socket_url}"
    );
    // Both updates came over that one socket: the second after the reload.
    let updates_on = |since: usize| {
        browser
            .events_since(since)
            .iter()
            .filter(|e| {
                e.method == "Network.webSocketFrameReceived"
                    && e.params["requestId"] == socket_id
                    && e.params["response"]["payloadData"]
                        .as_str()
                        .is_some_and(|p| p.contains("\"update\"") && p.contains("render.js"))
            })
            .count()
    };
    assert!(updates_on(before_edit) >= 2, "updates before the reload");
    assert!(updates_on(before_second) >= 1, "update after the reload");
    let console: Vec<String> = events
        .iter()
        .filter(|e| e.method == "Runtime.consoleAPICalled")
        .filter_map(|e| e.params["args"][0]["value"].as_str().map(str::to_owned))
        .collect();
    assert!(
        !console
            .iter()
            .any(|m| m.contains("fallback") || m.contains("failed to connect")),
        "{console:?}"
    );

    // And the proxy saw the upgrade: its access-log line is written when
    // the socket closes, so close the browser first.
    drop(browser);
    let logs = proxy.wait_log("status=101").await;
    let upgrade = logs
        .lines()
        .find(|l| l.contains("switchyard::access") && l.contains("status=101"))
        .expect("access log line of the upgrade");
    assert!(upgrade.contains("path=/app1/?token="), "{upgrade}");
    assert!(upgrade.contains("route=\"/app1\""), "{upgrade}");
    // The route added by the reload took none of the page's traffic.
    assert_eq!(other.hits(), 0);
}

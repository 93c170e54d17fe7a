//! A headless Chromium driven over the DevTools protocol, for tests that
//! must see what a browser sees: pages rendered, scripts run, WebSockets
//! opened by the page itself.
//!
//! The browser is Debian's `chromium`, started with
//! `--remote-debugging-pipe`: it reads protocol messages on fd 3 and writes
//! them on fd 4, each a JSON object ended by a NUL byte. No port is opened
//! (nothing to race for or leak), and no driver library or browser
//! download is needed. Only the few commands the tests use are wrapped;
//! [`Browser::call`] sends any other.
//!
//! Chromium runs in a process group of its own, with a throwaway profile,
//! and the whole group is killed when the [`Browser`] is dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{oneshot, Notify};

use super::patience;

/// One protocol event, as the browser sent it.
#[derive(Debug, Clone)]
pub struct Event {
    /// `Domain.event`, e.g. `Page.loadEventFired`.
    pub method: String,
    /// Its parameters.
    pub params: Value,
    /// The session (page) it belongs to; `None` for the browser's own.
    pub session: Option<String>,
}

/// Where replies and events go once the reader task has them.
#[derive(Default)]
struct Shared {
    pending: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    events: Mutex<Vec<Event>>,
    /// Woken on every event, and when the browser closes its pipe.
    arrived: Notify,
    closed: std::sync::atomic::AtomicBool,
}

/// A running headless Chromium with one page attached.
pub struct Browser {
    child: Child,
    to_browser: tokio::sync::Mutex<ChildStdin>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    session: String,
    stderr_log: PathBuf,
    _profile: tempfile::TempDir,
}

/// The browser binary: `$SWITCHYARD_TEST_CHROMIUM`, else `chromium` on
/// the `PATH` (Debian's package; `scripts/bootstrap.sh` installs it).
pub fn chromium_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SWITCHYARD_TEST_CHROMIUM") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium not found on PATH: install it (scripts/bootstrap.sh does, \
                 or `apt-get install -y chromium`) or set SWITCHYARD_TEST_CHROMIUM"
            )
        })
}

/// A directory for what a test leaves behind for people to look at
/// (screenshots, browser logs): `target/tmp/test-output/<name>`, kept
/// after the run, emptied at the start of the next.
pub fn output_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("test-output")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test output dir");
    dir
}

impl Browser {
    /// Starts headless Chromium with the flags that work on this kind of
    /// machine plus `extra` (e.g. `--host-resolver-rules=…`), opens a blank
    /// page and attaches to it. Chromium's own log goes to
    /// `<out>/chromium.log`.
    pub async fn launch(out: &Path, extra: &[&str]) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let stderr_log = out.join("chromium.log");
        let log = std::fs::File::create(&stderr_log).expect("chromium log file");
        // The protocol pipe is fds 3 and 4 of the browser. A shell moves
        // our stdin/stdout pipes there and then execs the browser, so no
        // file descriptor is set up by hand between fork and exec.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg("exec \"$0\" \"$@\" 3<&0 4>&1 </dev/null >&2")
            .arg(chromium_binary())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--metrics-recording-only",
                "--password-store=basic",
                "--window-size=1280,1000",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            // Its own group, so that Drop can end the renderer and
            // utility processes with the browser.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn chromium");
        let to_browser = child.stdin.take().expect("pipe to chromium");
        let from_browser = child.stdout.take().expect("pipe from chromium");
        let shared = Arc::new(Shared::default());
        tokio::spawn(read_messages(from_browser, Arc::clone(&shared)));

        let mut browser = Browser {
            child,
            to_browser: tokio::sync::Mutex::new(to_browser),
            shared,
            next_id: AtomicU64::new(1),
            session: String::new(),
            stderr_log,
            _profile: profile,
        };
        let target = browser
            .send(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await
            .unwrap_or_else(|e| browser.fail(&format!("Target.createTarget: {e}")));
        let target_id = target["targetId"].as_str().unwrap_or_default().to_owned();
        let attached = browser
            .send(
                None,
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await
            .unwrap_or_else(|e| browser.fail(&format!("Target.attachToTarget: {e}")));
        browser.session = attached["sessionId"]
            .as_str()
            .unwrap_or_else(|| browser.fail("attachToTarget gave no sessionId"))
            .to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Network.enable"] {
            browser
                .call(domain, json!({}))
                .await
                .unwrap_or_else(|e| browser.fail(&format!("{domain}: {e}")));
        }
        browser
    }

    /// Panics with `why` and the browser's own log.
    fn fail(&self, why: &str) -> ! {
        let log = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        panic!(
            "chromium: {why}\n--- {} ---\n{log}",
            self.stderr_log.display()
        );
    }

    /// Sends `method` to the page and returns its result, or the
    /// protocol's error message.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        self.send(Some(&self.session), method, params).await
    }

    async fn send(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let (tx, rx) = oneshot::channel();
        self.shared.pending.lock().expect("pending").insert(id, tx);
        let mut bytes = serde_json::to_vec(&msg).expect("serialize");
        bytes.push(0);
        {
            let mut w = self.to_browser.lock().await;
            w.write_all(&bytes)
                .await
                .map_err(|e| format!("write to chromium: {e}"))?;
            w.flush()
                .await
                .map_err(|e| format!("write to chromium: {e}"))?;
        }
        let reply = tokio::time::timeout(patience(), rx)
            .await
            .map_err(|_| format!("{method}: no reply within {:?}", patience()))?
            .map_err(|_| format!("{method}: chromium closed the pipe"))?;
        if let Some(err) = reply.get("error") {
            return Err(format!("{method}: {err}"));
        }
        Ok(reply["result"].clone())
    }

    /// A position in the event log; [`Browser::events_since`] and
    /// [`Browser::wait_event`] look only at what came after it.
    pub fn mark(&self) -> usize {
        self.shared.events.lock().expect("events").len()
    }

    /// This page's events after `mark`.
    pub fn events_since(&self, mark: usize) -> Vec<Event> {
        let events = self.shared.events.lock().expect("events");
        events
            .iter()
            .skip(mark)
            .filter(|e| e.session.as_deref() == Some(self.session.as_str()))
            .cloned()
            .collect()
    }

    /// Waits, up to [`patience`], for a page event after `mark` that
    /// `pred` accepts.
    pub async fn wait_event(
        &self,
        what: &str,
        mark: usize,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Event {
        let deadline = Instant::now() + patience();
        loop {
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            // Registered before looking, so an event that lands between
            // the look and the wait still wakes it.
            arrived.as_mut().enable();
            if let Some(e) = self.events_since(mark).into_iter().find(|e| pred(e)) {
                return e;
            }
            if self.shared.closed.load(Ordering::Acquire) {
                self.fail(&format!("closed while waiting for {what}"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, arrived).await.is_err() {
                self.fail(&format!("timed out waiting for {what}"));
            }
        }
    }

    /// Loads `url` and waits for its `load` event; `Err` with the
    /// browser's reason when the page cannot be fetched at all.
    pub async fn navigate(&self, url: &str) -> Result<(), String> {
        let mark = self.mark();
        let r = self.call("Page.navigate", json!({"url": url})).await?;
        if let Some(e) = r.get("errorText").and_then(Value::as_str) {
            return Err(format!("{url}: {e}"));
        }
        self.wait_event(&format!("load of {url}"), mark, |e| {
            e.method == "Page.loadEventFired"
        })
        .await;
        Ok(())
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns
    /// its value as JSON; `Err` with the exception's text if it threw.
    pub async fn eval(&self, expression: &str) -> Result<Value, String> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        if let Some(ex) = r.get("exceptionDetails") {
            let text = ex["exception"]["description"]
                .as_str()
                .or_else(|| ex["text"].as_str())
                .unwrap_or("exception");
            return Err(format!("{expression}: {text}"));
        }
        Ok(r["result"]["value"].clone())
    }

    /// [`Browser::eval`] of an expression that yields a string.
    pub async fn eval_string(&self, expression: &str) -> Result<String, String> {
        match self.eval(expression).await? {
            Value::String(s) => Ok(s),
            other => Err(format!("{expression}: not a string: {other}")),
        }
    }

    /// Saves a PNG of the page to `path` and prints where.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await
            .unwrap_or_else(|e| self.fail(&e));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or_default())
            .expect("screenshot is base64");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        std::fs::write(path, &png).expect("write screenshot");
        println!("screenshot: {}", path.display());
        eprintln!("screenshot: {}", path.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: the browser and every process it started.
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.start_kill();
    }
}

/// Reads NUL-terminated messages until the browser closes its end: a reply
/// goes to whoever waits on its id, anything else is an event.
async fn read_messages(from: tokio::process::ChildStdout, shared: Arc<Shared>) {
    let mut reader = BufReader::new(from);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(0, &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if buf.last() == Some(&0) {
            buf.pop();
        }
        let Ok(msg) = serde_json::from_slice::<Value>(&buf) else {
            continue;
        };
        if let Some(id) = msg.get("id").and_then(Value::as_u64) {
            let tx = shared.pending.lock().ok().and_then(|mut p| p.remove(&id));
            if let Some(tx) = tx {
                let _ = tx.send(msg);
            }
        } else if let Some(method) = msg.get("method").and_then(Value::as_str) {
            let event = Event {
                method: method.to_owned(),
                params: msg.get("params").cloned().unwrap_or(Value::Null),
                session: msg
                    .get("sessionId")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            };
            if let Ok(mut events) = shared.events.lock() {
                events.push(event);
            }
            shared.arrived.notify_waiters();
        }
    }
    shared.closed.store(true, Ordering::Release);
    // Dropping the senders fails every call still waiting.
    if let Ok(mut p) = shared.pending.lock() {
        p.clear();
    }
    shared.arrived.notify_waiters();
}

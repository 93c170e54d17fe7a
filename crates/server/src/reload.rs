//! Reloading: the one writer of the shared snapshot.
//!
//! Every trigger — the directory watcher, the poll, SIGHUP, admin
//! `POST /reload` — ends up as a call to [`Reloader::reload`] on a single
//! task, so two reloads never race. A reload reads the whole file, compares
//! its hash with the applied one, compiles a new table off to the side and
//! stores it with one atomic swap; on any error the old table stays.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_routes::Route;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
pub(crate) use crate::report::{Rejection, ReloadReport, ReloadResult};
use crate::state::{sha256_hex, SharedSnapshot, Snapshot};

/// How long the poll waits before reading new bytes a second time: only
/// bytes that stayed the same are reloaded.
const SETTLE: Duration = Duration::from_millis(200);

/// What the poll found.
#[derive(Debug, PartialEq, Eq)]
enum PollStep {
    /// Nothing to do.
    Nothing,
    /// Reload now.
    Reload,
    /// New bytes with this hash: read again after [`SETTLE`].
    Settle(String),
}

/// How often to look for a removed config directory's return.
const REWATCH_EVERY: Duration = Duration::from_millis(250);

/// Stands in for the hash of a file that could not be read.
const UNREADABLE: &str = "unreadable";

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// The directory watcher saw the file change.
    Watch,
    /// The periodic hash check found different bytes.
    Poll,
    /// SIGHUP.
    Signal,
    /// Admin `POST /reload` (and so `switchyard reload`).
    Admin,
}

impl Trigger {
    /// Lowercase name for logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Trigger::Watch => "watch",
            Trigger::Poll => "poll",
            Trigger::Signal => "sighup",
            Trigger::Admin => "admin",
        }
    }
}

/// Reads, checks and applies the routes file. Owned by the reload task.
pub(crate) struct Reloader {
    path: PathBuf,
    max_bytes: u64,
    snapshot: SharedSnapshot,
    /// Hash of the last bytes rejected, so the poll does not retry them.
    last_rejected: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
}

impl Reloader {
    /// A reloader for `path` (read up to `max_bytes`) that stores into
    /// `snapshot`.
    pub(crate) fn new(
        path: PathBuf,
        max_bytes: u64,
        snapshot: SharedSnapshot,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.declare_reload_results(&[
            ReloadResult::Success.as_str(),
            ReloadResult::Failure.as_str(),
            ReloadResult::Unchanged.as_str(),
        ]);
        Reloader {
            path,
            max_bytes,
            snapshot,
            last_rejected: Mutex::new(None),
            metrics,
        }
    }

    /// One reload attempt: read (on a blocking thread, so a file that will
    /// not answer never holds up the reload task), then applies it.
    pub(crate) async fn reload(&self, trigger: Trigger) -> ReloadReport {
        let started = Instant::now();
        let read = crate::source::read_off_thread(self.path.clone(), self.max_bytes).await;
        self.apply(read, trigger, started)
    }

    /// Compares, compiles and swaps what was read. Never panics and never
    /// leaves a partial table: the only store is the final one.
    fn apply(
        &self,
        read: Result<Vec<u8>, crate::source::ReadError>,
        trigger: Trigger,
        started: Instant,
    ) -> ReloadReport {
        let current = self.snapshot.load_full();
        let shown = self.path.display().to_string();

        let outcome = read
            .map_err(|e| {
                self.set_rejected(Some(UNREADABLE.to_owned()));
                Rejection::unreadable(&shown, &e)
            })
            .and_then(|bytes| {
                let hash = sha256_hex(&bytes);
                if hash == current.sha256 {
                    return Ok(None);
                }
                match switchyard_routes::load_bytes(&shown, &bytes) {
                    Ok(table) => Ok(Some(Snapshot::new(
                        table,
                        &bytes,
                        current.generation + 1,
                        &self.metrics,
                    ))),
                    Err(errors) => {
                        self.set_rejected(Some(hash));
                        Err(Rejection::invalid(&errors))
                    }
                }
            });

        let mut report = ReloadReport {
            result: ReloadResult::Unchanged,
            generation: current.generation,
            routes: current.table.len(),
            added: Vec::new(),
            removed: Vec::new(),
            changed: Vec::new(),
            error: None,
            errors: Vec::new(),
            omitted_errors: 0,
            duration: Duration::ZERO,
        };
        match outcome {
            Ok(Some(next)) => {
                let next = Arc::new(next);
                diff(current.table.routes(), next.table.routes(), &mut report);
                report.result = ReloadResult::Success;
                report.generation = next.generation;
                report.routes = next.table.len();
                // The one store: every request from here on sees `next`
                // (with no error: it is fresh); requests holding `current`
                // finish on it.
                self.snapshot.store(next);
                self.set_rejected(None);
            }
            Ok(None) => {
                // The applied bytes, read again: whatever failed before
                // (a file briefly unreadable, a bad edit since undone) is
                // over, and the report and gauge say so.
                if current.last_error.is_some() {
                    self.snapshot.store(Arc::new(current.with_error(None)));
                }
                self.set_rejected(None);
            }
            Err(rejection) => {
                report.result = ReloadResult::Failure;
                report.error = Some(rejection.text.clone());
                report.errors = rejection.errors.clone();
                report.omitted_errors = rejection.omitted;
                // The same table, now with the error beside it. This
                // task is the only writer, so nothing came in between.
                self.snapshot
                    .store(Arc::new(current.with_error(Some(Arc::new(rejection)))));
            }
        }
        report.duration = started.elapsed();
        if report.result != ReloadResult::Unchanged {
            // The file's YAML tree is freed by now; without this glibc
            // keeps its pages (~40 MiB for a 1 MiB file) resident.
            switchyard_sys::release_free_memory();
        }
        log_report(&report, trigger);
        let serving = self.snapshot.load();
        self.metrics.reload_attempt(
            report.result.as_str(),
            report.result != ReloadResult::Failure,
            report.duration,
            (report.result == ReloadResult::Success)
                .then(|| serving.applied())
                .as_ref(),
        );
        report
    }

    /// What the poll should do about the file as it is now: attempt a
    /// reload at once (the applied bytes again after a failed attempt, so
    /// the error clears; or a file newly unreadable), look again after
    /// [`SETTLE`] (bytes neither applied nor already rejected: a file being
    /// written in place must not be taken half-written), or nothing.
    async fn poll_check(&self) -> PollStep {
        let Some(hash) = self.current_hash().await else {
            // An unreadable file is news once; the attempt records it.
            return if self.last_rejected_is(Some(UNREADABLE)) {
                PollStep::Nothing
            } else {
                PollStep::Reload
            };
        };
        if hash == self.snapshot.load().sha256 {
            return if self.last_attempt_failed() {
                PollStep::Reload
            } else {
                PollStep::Nothing
            };
        }
        if self.last_rejected_is(Some(&hash)) {
            return PollStep::Nothing;
        }
        PollStep::Settle(hash)
    }

    /// SHA-256 of the file's bytes now, if it can be read.
    async fn current_hash(&self) -> Option<String> {
        crate::source::read_off_thread(self.path.clone(), self.max_bytes)
            .await
            .ok()
            .map(|b| sha256_hex(&b))
    }

    fn last_attempt_failed(&self) -> bool {
        self.snapshot.load().last_error.is_some()
    }

    fn last_rejected_is(&self, hash: Option<&str>) -> bool {
        self.last_rejected
            .lock()
            .map(|l| l.as_deref() == hash)
            .unwrap_or(false)
    }

    fn set_rejected(&self, hash: Option<String>) {
        if let Ok(mut l) = self.last_rejected.lock() {
            *l = hash;
        }
    }
}

fn log_report(r: &ReloadReport, trigger: Trigger) {
    let ms = r.duration.as_secs_f64() * 1000.0;
    match r.result {
        ReloadResult::Failure => tracing::warn!(
            result = r.result.as_str(),
            trigger = trigger.as_str(),
            generation = r.generation,
            routes = r.routes,
            duration_ms = ms,
            error = r.error.as_deref().unwrap_or(""),
            "config rejected; generation {} keeps serving",
            r.generation
        ),
        _ => tracing::info!(
            result = r.result.as_str(),
            trigger = trigger.as_str(),
            generation = r.generation,
            routes = r.routes,
            added = ?r.added,
            removed = ?r.removed,
            changed = ?r.changed,
            duration_ms = ms,
            "config reload"
        ),
    }
}

/// Fills the added/removed/changed lists, keyed by `(host, path)`.
fn diff<'a>(
    old: impl Iterator<Item = &'a Route>,
    new: impl Iterator<Item = &'a Route> + Clone,
    report: &mut ReloadReport,
) {
    let key = |r: &Route| (r.host.clone(), r.path.clone());
    let old: Vec<&Route> = old.collect();
    let old_by_key: HashMap<_, _> = old.iter().map(|r| (key(r), *r)).collect();
    let new_by_key: HashMap<_, _> = new.clone().map(|r| (key(r), r)).collect();
    for r in new {
        match old_by_key.get(&key(r)) {
            None => report.added.push(r.key()),
            Some(o) if !same_settings(o, r) => report.changed.push(r.key()),
            Some(_) => {}
        }
    }
    for r in old {
        if !new_by_key.contains_key(&key(r)) {
            report.removed.push(r.key());
        }
    }
}

fn same_settings(a: &Route, b: &Route) -> bool {
    a.upstreams == b.upstreams
        && a.strip_prefix == b.strip_prefix
        && a.redirect_bare_prefix == b.redirect_bare_prefix
        && a.connect_timeout == b.connect_timeout
        && a.read_timeout == b.read_timeout
}

/// A request for a reload from outside the reload task, with the channel
/// the outcome goes back on.
struct Manual {
    trigger: Trigger,
    reply: oneshot::Sender<ReloadReport>,
}

/// Cloneable handle for asking the reload task to reload now.
#[derive(Clone)]
pub(crate) struct ReloadHandle {
    tx: mpsc::Sender<Manual>,
}

impl ReloadHandle {
    /// Reloads now and returns the outcome; `None` if the task is gone.
    pub(crate) async fn reload(&self, trigger: Trigger) -> Option<ReloadReport> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Manual { trigger, reply }).await.ok()?;
        rx.await.ok()
    }
}

/// The reload task's inputs, created together with its [`ReloadHandle`].
pub(crate) struct ReloadTask {
    reloader: Reloader,
    manual: mpsc::Receiver<Manual>,
    poll_interval: Duration,
}

/// Creates the reload task and a handle to it.
pub(crate) fn reload_task(
    reloader: Reloader,
    poll_interval: Duration,
) -> (ReloadTask, ReloadHandle) {
    let (tx, manual) = mpsc::channel(16);
    let handle = ReloadHandle { tx };
    (
        ReloadTask {
            reloader,
            manual,
            poll_interval,
        },
        handle,
    )
}

impl ReloadTask {
    /// Runs until `shutdown` flips: watches the file's directory, polls,
    /// listens for SIGHUP and manual requests, and reloads for each.
    pub(crate) async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let (fs_tx, mut fs_rx) = mpsc::unbounded_channel();
        let mut watch = crate::watch::DirWatch::start(&self.reloader.path, fs_tx);
        // While the watch is down (its directory removed), look for the
        // directory's return this often.
        let mut rewatch = tokio::time::interval(REWATCH_EVERY);
        rewatch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        warn_if_mount_point(&self.reloader.path);

        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP");
                None
            }
        };
        let mut poll = tokio::time::interval(self.poll_interval.max(Duration::from_millis(100)));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        let mut debounce = crate::watch::Debounce::default();
        // New bytes the poll saw, and when to look at them again. Waiting
        // here instead of inside the poll's turn keeps manual reloads and
        // shutdown answered meanwhile.
        let mut settling: Option<(Instant, String)> = None;

        loop {
            let deadline = debounce.deadline();
            let settle_at = settling.as_ref().map(|(at, _)| *at);
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(m) = self.manual.recv() => {
                    let report = self.reloader.reload(m.trigger).await;
                    let _ = m.reply.send(report);
                }
                Some(change) = fs_rx.recv() => {
                    if change == crate::watch::FsChange::DirGone {
                        watch.lost();
                    }
                    debounce.note(change, Instant::now());
                }
                _ = rewatch.tick(), if !watch.is_live() => {
                    if watch.refresh() {
                        self.reloader.reload(Trigger::Watch).await;
                    }
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    debounce.clear();
                    self.reloader.reload(Trigger::Watch).await;
                }
                _ = poll.tick() => {
                    // The directory may have been replaced without an
                    // event reaching the old watch.
                    if watch.refresh() {
                        self.reloader.reload(Trigger::Watch).await;
                    } else {
                        match self.reloader.poll_check().await {
                            PollStep::Nothing => {}
                            PollStep::Reload => {
                                self.reloader.reload(Trigger::Poll).await;
                            }
                            PollStep::Settle(hash) => {
                                settling = Some((Instant::now() + SETTLE, hash));
                            }
                        }
                    }
                }
                _ = sleep_until(settle_at), if settle_at.is_some() => {
                    let seen = settling.take().map(|(_, hash)| hash);
                    if seen.is_some() && self.reloader.current_hash().await == seen {
                        self.reloader.reload(Trigger::Poll).await;
                    }
                }
                _ = recv_hup(&mut hup) => {
                    self.reloader.reload(Trigger::Signal).await;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

async fn recv_hup(hup: &mut Option<tokio::signal::unix::Signal>) {
    match hup {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// A `subPath` (or any single-file) mount is a copy made once: it never
/// receives ConfigMap updates (kubernetes/kubernetes#50345). Say so loudly.
fn warn_if_mount_point(path: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut candidates = vec![std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())];
    // Resolved once for this check only; watching never caches it.
    if let Ok(real) = std::fs::canonicalize(path) {
        candidates.push(real);
    }
    if info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .any(|mp| candidates.iter().any(|c| Path::new(&mp) == c))
    {
        tracing::warn!(
            config = %path.display(),
            "the config file is itself a mount point (a subPath or single-file mount): it will never see \
             ConfigMap updates. Mount the ConfigMap as a directory (volumeMounts without subPath) and point \
             --config at the file inside it"
        );
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let v = u32::from(d[0] - b'0') * 64
                    + u32::from(d[1] - b'0') * 8
                    + u32::from(d[2] - b'0');
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"routes:\n  - path: /a\n    upstream: 127.0.0.1:1\n";

    /// A reloader on a temp file holding `GOOD`, applied as generation 1.
    fn reloader(dir: &tempfile::TempDir) -> Reloader {
        let path = dir.path().join("routes.yaml");
        std::fs::write(&path, GOOD).unwrap_or_else(|e| panic!("{e}"));
        let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| panic!("{e}")));
        let table =
            switchyard_routes::load_bytes("routes.yaml", GOOD).unwrap_or_else(|e| panic!("{e}"));
        let first = Snapshot::new(table, GOOD, 1, &metrics);
        let snapshot = Arc::new(arc_swap::ArcSwap::from_pointee(first));
        Reloader::new(path, 1 << 20, snapshot, metrics)
    }

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A read error fails the attempt and sets the error; reading the
    /// applied bytes again afterwards is `unchanged` and clears it.
    #[test]
    fn unchanged_good_bytes_after_a_failure_clear_the_error() {
        let d = tmp();
        let r = reloader(&d);
        let gone = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let failed = r.apply(
            Err(crate::source::ReadError::Io(gone)),
            Trigger::Poll,
            Instant::now(),
        );
        assert_eq!(failed.result, ReloadResult::Failure);
        assert!(r.last_attempt_failed());
        let again = r.apply(Ok(GOOD.to_vec()), Trigger::Poll, Instant::now());
        assert_eq!(again.result, ReloadResult::Unchanged);
        assert_eq!(again.generation, 1);
        assert!(!r.last_attempt_failed());
    }

    /// The poll attempts a reload of the applied bytes only while the last
    /// attempt had failed, so the error clears without an edit.
    #[tokio::test]
    async fn the_poll_retries_applied_bytes_only_after_a_failure() {
        let d = tmp();
        let r = reloader(&d);
        assert_eq!(r.poll_check().await, PollStep::Nothing, "nothing to do");
        let gone = std::io::Error::from(std::io::ErrorKind::NotFound);
        r.apply(
            Err(crate::source::ReadError::Io(gone)),
            Trigger::Poll,
            Instant::now(),
        );
        assert_eq!(
            r.poll_check().await,
            PollStep::Reload,
            "the error should clear"
        );
        r.reload(Trigger::Poll).await;
        assert_eq!(r.poll_check().await, PollStep::Nothing);
        // New bytes are looked at again before a reload.
        let next = b"routes: []\n";
        std::fs::write(d.path().join("routes.yaml"), next).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.poll_check().await, PollStep::Settle(sha256_hex(next)));
    }

    /// A new valid file is applied as the next generation with its diff; a
    /// bad one is refused with every error and the old table kept.
    #[test]
    fn success_and_failure_report_what_happened() {
        let d = tmp();
        let r = reloader(&d);
        let next = b"routes:\n  - path: /b\n    upstream: 127.0.0.1:2\n";
        let ok = r.apply(Ok(next.to_vec()), Trigger::Admin, Instant::now());
        assert_eq!(ok.result, ReloadResult::Success);
        assert_eq!((ok.generation, ok.routes), (2, 1));
        assert_eq!(
            (ok.added.as_slice(), ok.removed.as_slice()),
            (&["/b".to_owned()][..], &["/a".to_owned()][..])
        );
        let bad = r.apply(
            Ok(b"routes: [x]\n".to_vec()),
            Trigger::Admin,
            Instant::now(),
        );
        assert_eq!(bad.result, ReloadResult::Failure);
        assert_eq!(bad.generation, 2);
        assert!(
            bad.error.as_deref().is_some_and(|e| e.contains("1:10")),
            "{:?}",
            bad.error
        );
        // Invalid UTF-8 is refused, not patched over.
        let latin1 = b"routes:\n  - path: /caf\xe9\n    upstream: 127.0.0.1:2\n";
        let bad = r.apply(Ok(latin1.to_vec()), Trigger::Admin, Instant::now());
        assert_eq!(bad.result, ReloadResult::Failure);
        assert!(
            bad.error.as_deref().is_some_and(|e| e.contains("2:15")),
            "{:?}",
            bad.error
        );
    }

    /// The error of a rejected reload is swapped in with the table it left
    /// serving, in one value: a reader never sees one table's generation
    /// with another attempt's error, and the table itself is not rebuilt.
    #[test]
    fn the_error_travels_with_the_table_it_left_serving() {
        let d = tmp();
        let r = reloader(&d);
        let before = r.snapshot.load_full();
        r.apply(
            Ok(b"routes: [x]\n".to_vec()),
            Trigger::Admin,
            Instant::now(),
        );
        let rejected = r.snapshot.load_full();
        assert_eq!(rejected.generation, 1);
        assert!(Arc::ptr_eq(&before.table, &rejected.table));
        let error = rejected.last_error.as_ref().map(|e| e.text.clone());
        assert!(error.is_some_and(|e| e.contains("1:10")));
        let next = b"routes:\n  - path: /b\n    upstream: 127.0.0.1:2\n";
        r.apply(Ok(next.to_vec()), Trigger::Admin, Instant::now());
        let applied = r.snapshot.load_full();
        assert_eq!(
            (applied.generation, applied.last_error.is_none()),
            (2, true)
        );
    }

    /// Turning a route's `redirect_bare_prefix` on, or off again, changes
    /// how it answers: the route is reported as changed, not unchanged.
    #[test]
    fn a_new_redirect_setting_is_a_changed_route() {
        let d = tmp();
        let r = reloader(&d);
        let empty: &[String] = &[];
        for value in ["true", "false"] {
            let next = format!(
                "routes:\n  - path: /a\n    upstream: 127.0.0.1:1\n    redirect_bare_prefix: {value}\n"
            );
            let report = r.apply(Ok(next.into_bytes()), Trigger::Admin, Instant::now());
            assert_eq!(report.result, ReloadResult::Success, "{value}");
            assert_eq!(
                (
                    report.added.as_slice(),
                    report.removed.as_slice(),
                    report.changed.as_slice()
                ),
                (empty, empty, &["/a".to_owned()][..]),
                "{value}"
            );
        }
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/etc/my\\040dir/x"), "/etc/my dir/x");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}

//! Watching the config file's directory, and deciding when a change has
//! settled enough to read.
//!
//! The directory is watched, never the file: a ConfigMap update replaces the
//! `..data` symlink and deletes the directory the old file lived in, so a
//! watch on the file dies after the first update. Events are reduced to a
//! few kinds that matter ([`FsChange`]); [`Debounce`] turns them into the
//! moment to reload:
//!
//! - a rename onto the file or onto `..data` is atomic: reload at once;
//! - a write in place (truncate, then write) may be half done: wait until
//!   the writer closes the file, or until writes stop for a while, so a
//!   half file that happens to parse never wins;
//! - a delete may be followed by a re-create (vim, `rm` + `cp`): wait too.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

/// The kubelet's atomic-switch symlink in a ConfigMap volume.
const CONFIGMAP_DATA: &str = "..data";

/// How long after a rename onto the file to read it: just enough to take
/// the rest of the same burst (From/To/Both) with it.
const AFTER_RENAME: Duration = Duration::from_millis(5);
/// How long after the writer closed the file.
const AFTER_CLOSE: Duration = Duration::from_millis(25);
/// How long writes must stop when no close is seen (the writer keeps the
/// file open, or it was deleted and may come back).
const QUIET: Duration = Duration::from_secs(1);

/// A change to the config file that matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FsChange {
    /// Something was renamed onto the file or onto `..data`.
    Replaced,
    /// The file was created, written or had its metadata changed.
    Written,
    /// A writer closed the file.
    Closed,
    /// The file was deleted or renamed away.
    Gone,
    /// The watched directory itself was deleted or moved: the watch is
    /// dead, and [`DirWatch::refresh`] must start a new one.
    DirGone,
}

/// A non-recursive watch on the directory holding the config file, that
/// knows which directory it watches: if that directory is deleted (or
/// replaced) the inotify watch dies with it, and [`DirWatch::refresh`]
/// starts a new one on whatever directory is at the path now.
pub(crate) struct DirWatch {
    dir: PathBuf,
    name: Option<OsString>,
    tx: UnboundedSender<FsChange>,
    watcher: Option<RecommendedWatcher>,
    /// Device and inode of the directory the live watch is on.
    identity: Option<(u64, u64)>,
    /// Whether the loss of the watch has been logged.
    lost_logged: bool,
}

impl DirWatch {
    /// Watches the directory holding `config`, sending each relevant
    /// change on `tx`. If the watch cannot start, says so; the poll still
    /// catches changes, and [`DirWatch::refresh`] tries again.
    pub(crate) fn start(config: &Path, tx: UnboundedSender<FsChange>) -> Self {
        let dir = match config.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => Path::new(".").to_path_buf(),
        };
        let name = config.file_name().map(|n| n.to_os_string());
        if name.is_none() {
            tracing::warn!(config = %config.display(), "config path has no file name; relying on the poll");
        }
        let mut watch = DirWatch {
            dir,
            name,
            tx,
            watcher: None,
            identity: None,
            lost_logged: false,
        };
        watch.watch();
        watch
    }

    /// Whether a watch is running on the directory that was there when it
    /// started (it may since have been replaced; see [`Self::refresh`]).
    pub(crate) fn is_live(&self) -> bool {
        self.watcher.is_some()
    }

    /// Forgets the watch after its directory went away.
    pub(crate) fn lost(&mut self) {
        self.watcher = None;
        self.identity = None;
        if !self.lost_logged {
            self.lost_logged = true;
            tracing::warn!(
                dir = %self.dir.display(),
                "the config directory was removed; watching for it to come back (the poll keeps checking)"
            );
        }
    }

    /// Makes sure the watch is on the directory at the path now: starts a
    /// new one if there was none, or if the directory was replaced since.
    /// True when a new watch started after one was lost, so the caller
    /// should read the file (it may have changed while nobody watched).
    pub(crate) fn refresh(&mut self) -> bool {
        let now = dir_identity(&self.dir);
        if self.watcher.is_some() && now.is_some() && now == self.identity {
            return false;
        }
        if now.is_none() {
            if self.watcher.is_some() {
                self.lost();
            }
            return false;
        }
        let was_lost = self.lost_logged || self.watcher.is_some();
        self.watcher = None;
        if self.watch() && was_lost {
            tracing::info!(dir = %self.dir.display(), "the config directory is back; watching it again");
            return true;
        }
        false
    }

    fn watch(&mut self) -> bool {
        let Some(name) = self.name.clone() else {
            return false;
        };
        let tx = self.tx.clone();
        let dir = self.dir.clone();
        let handler = move |res: notify::Result<notify::Event>| match res {
            Ok(event) => {
                let change = if is_dir_gone(&event, &dir) {
                    Some(FsChange::DirGone)
                } else {
                    classify(&event, &name)
                };
                if let Some(change) = change {
                    let _ = tx.send(change);
                }
            }
            Err(e) => tracing::warn!(error = %e, "file watcher error; the poll keeps checking"),
        };
        let identity = dir_identity(&self.dir);
        let started = notify::recommended_watcher(handler)
            .and_then(|mut w| w.watch(&self.dir, RecursiveMode::NonRecursive).map(|()| w));
        match started {
            Ok(w) => {
                tracing::debug!(dir = %self.dir.display(), "watching the config directory");
                self.watcher = Some(w);
                self.identity = identity;
                self.lost_logged = false;
                true
            }
            Err(e) => {
                if !self.lost_logged {
                    self.lost_logged = true;
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot watch the config directory; relying on the poll");
                }
                false
            }
        }
    }
}

/// Device and inode of `dir`, following symlinks; `None` if it is gone.
fn dir_identity(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()))
}

/// Whether `event` says the watched directory itself went away (inotify's
/// IN_DELETE_SELF / IN_MOVE_SELF, which end the watch).
fn is_dir_gone(event: &notify::Event, dir: &Path) -> bool {
    let about_dir = event.paths.iter().any(|p| p == dir);
    about_dir
        && matches!(
            event.kind,
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
        )
}

/// Reduces one notify event to the change it means for the config file.
pub(crate) fn classify(event: &notify::Event, config_name: &std::ffi::OsStr) -> Option<FsChange> {
    let is = |p: &std::path::PathBuf, name: &std::ffi::OsStr| p.file_name() == Some(name);
    let is_config = |p: &std::path::PathBuf| is(p, config_name);
    let is_target = |p: &std::path::PathBuf| is_config(p) || is(p, CONFIGMAP_DATA.as_ref());
    match &event.kind {
        // Opens and reads, ours or the kubelet's periodic sync, change nothing.
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => event
            .paths
            .iter()
            .any(is_config)
            .then_some(FsChange::Closed),
        EventKind::Access(_) => None,
        EventKind::Modify(ModifyKind::Name(mode)) => match (mode, event.paths.as_slice()) {
            (RenameMode::Both, [from, to]) => {
                if is_target(to) {
                    Some(FsChange::Replaced)
                } else if is_config(from) {
                    Some(FsChange::Gone)
                } else {
                    None
                }
            }
            (RenameMode::From, paths) => paths.iter().any(is_config).then_some(FsChange::Gone),
            (_, paths) => paths.iter().any(is_target).then_some(FsChange::Replaced),
        },
        EventKind::Create(_) | EventKind::Modify(_) => event
            .paths
            .iter()
            .any(is_config)
            .then_some(FsChange::Written),
        EventKind::Remove(_) => event.paths.iter().any(is_config).then_some(FsChange::Gone),
        EventKind::Any | EventKind::Other => event
            .paths
            .iter()
            .any(is_target)
            .then_some(FsChange::Written),
    }
}

/// When to read the file after a burst of changes.
#[derive(Debug, Default)]
pub(crate) struct Debounce {
    deadline: Option<Instant>,
}

impl Debounce {
    /// Takes one change into account.
    pub(crate) fn note(&mut self, change: FsChange, now: Instant) {
        let wait = match change {
            FsChange::Replaced => AFTER_RENAME,
            FsChange::Closed => AFTER_CLOSE,
            FsChange::Written | FsChange::Gone | FsChange::DirGone => QUIET,
        };
        let at = now + wait;
        self.deadline = Some(match (change, self.deadline) {
            // A rename or close settles the file: read soon, even if an
            // earlier write asked to wait longer.
            (FsChange::Replaced | FsChange::Closed, Some(d)) => d.min(at),
            // A write after anything pushes the read back.
            _ => at,
        });
    }

    /// When to reload, if anything is pending.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Forgets the pending reload (it is happening).
    pub(crate) fn clear(&mut self) {
        self.deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, RemoveKind};
    use notify::Event;
    use std::path::PathBuf;

    fn ev(kind: EventKind, paths: &[&str]) -> Event {
        let mut e = Event::new(kind);
        e.paths = paths.iter().map(PathBuf::from).collect();
        e
    }

    fn c(kind: EventKind, paths: &[&str]) -> Option<FsChange> {
        classify(&ev(kind, paths), "routes.yaml".as_ref())
    }

    #[test]
    fn configmap_switch_is_a_replace() {
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert_eq!(
            c(both, &["/d/..data_tmp", "/d/..data"]),
            Some(FsChange::Replaced)
        );
        let to = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        assert_eq!(c(to, &["/d/..data"]), Some(FsChange::Replaced));
        // The temp link's own creation and the timestamped dirs are noise.
        assert_eq!(
            c(EventKind::Create(CreateKind::Any), &["/d/..data_tmp"]),
            None
        );
        assert_eq!(
            c(
                EventKind::Create(CreateKind::Folder),
                &["/d/..2026_11_26_04_22_25.1"]
            ),
            None
        );
        assert_eq!(
            c(
                EventKind::Remove(RemoveKind::Folder),
                &["/d/..2026_11_26_04_22_25.1"]
            ),
            None
        );
    }

    #[test]
    fn access_is_ignored_but_close_write_counts() {
        assert_eq!(
            c(
                EventKind::Access(AccessKind::Open(AccessMode::Any)),
                &["/d/routes.yaml"]
            ),
            None
        );
        assert_eq!(
            c(
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                &["/d/routes.yaml"]
            ),
            None
        );
        assert_eq!(
            c(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                &["/d/routes.yaml"]
            ),
            Some(FsChange::Closed)
        );
    }

    #[test]
    fn editors() {
        let data = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert_eq!(c(data, &["/d/routes.yaml"]), Some(FsChange::Written));
        assert_eq!(c(data, &["/d/other.log"]), None);
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        assert_eq!(
            c(both, &["/d/.routes.yaml.swp", "/d/routes.yaml"]),
            Some(FsChange::Replaced)
        );
        assert_eq!(
            c(both, &["/d/routes.yaml", "/d/routes.yaml~"]),
            Some(FsChange::Gone)
        );
        assert_eq!(
            c(EventKind::Remove(RemoveKind::File), &["/d/routes.yaml"]),
            Some(FsChange::Gone)
        );
    }

    #[test]
    fn debounce_waits_for_writes_but_not_for_renames() {
        let t0 = Instant::now();
        let mut d = Debounce::default();
        d.note(FsChange::Written, t0);
        assert_eq!(d.deadline(), Some(t0 + QUIET));
        d.note(FsChange::Written, t0 + Duration::from_millis(500));
        assert_eq!(d.deadline(), Some(t0 + Duration::from_millis(500) + QUIET));
        d.note(FsChange::Closed, t0 + Duration::from_millis(600));
        assert_eq!(
            d.deadline(),
            Some(t0 + Duration::from_millis(600) + AFTER_CLOSE)
        );
        d.clear();
        d.note(FsChange::Replaced, t0);
        assert_eq!(d.deadline(), Some(t0 + AFTER_RENAME));
    }
}

//! Reproduces, with real filesystem calls on a temp directory, every way a
//! watched config file changes on disk:
//!
//! * [`ConfigMapDir`]: a Kubernetes ConfigMap volume as the kubelet's
//!   AtomicWriter lays it out and updates it (kubernetes/kubernetes
//!   `pkg/volume/util/atomic_writer.go`, `AtomicWriter.Write`): real files in
//!   a `..<timestamp>.<random>` dir, the `..data` symlink swapped by one
//!   `rename(2)`, and one `<key> -> ..data/<key>` symlink per key. Both the
//!   1.23+ order and the older order (key symlinks created before the switch)
//!   are available, whole ([`ConfigMapDir::update`]) or one step at a time
//!   ([`ConfigMapDir::begin_update`]) so a test can stop between steps.
//! * Editors and shell tools on a plain file: temp file + rename
//!   ([`write_via_rename`]), vim's backup dance ([`write_like_vim`]),
//!   truncate-and-write ([`write_in_place`], [`write_in_place_chunked`]) and
//!   delete-then-create ([`delete_and_recreate`]).
//!
//! The ConfigMap sequence follows the kubelet's AtomicWriter; the vim one is
//! what `strace` shows vim 9 doing for `:wq` outside /tmp.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{symlink, DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The symlink that names the live timestamped dir.
pub const DATA_DIR: &str = "..data";
/// The symlink built next to [`DATA_DIR`] and renamed over it.
pub const DATA_DIR_TMP: &str = "..data_tmp";

/// Which kubelet generation's step order [`ConfigMapDir`] follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeletOrder {
    /// Kubernetes 1.23 and later: switch `..data` first, then create the
    /// symlinks of new keys.
    Current,
    /// Before 1.23: the symlinks of new keys were created before `..data`
    /// was switched, so for a moment they dangle (`..data/<new key>` does
    /// not exist yet in the old dir).
    Pre123,
}

/// One step of an AtomicWriter update, in the order of the notes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Create the new `..<timestamp>.<random>` dir (0700, then chmod 0755)
    /// and write every file into it (0644). Nothing user-visible changes.
    WriteNewDir,
    /// Create the symlink `..data_tmp -> ..<new dir>`.
    LinkDataTmp,
    /// `rename(..data_tmp, ..data)`: the one atomic switch. From here on
    /// every key reads the new content.
    SwitchData,
    /// Create `<key> -> ..data/<key>` for each key that has no symlink yet.
    LinkNewKeys,
    /// Unlink the symlink of each key the new payload no longer has.
    UnlinkRemovedKeys,
    /// Delete the old timestamped dir, recursively.
    RemoveOldDir,
}

impl KubeletOrder {
    /// The full step sequence of one update in this order.
    pub fn steps(self) -> &'static [Step] {
        match self {
            KubeletOrder::Current => &[
                Step::WriteNewDir,
                Step::LinkDataTmp,
                Step::SwitchData,
                Step::LinkNewKeys,
                Step::UnlinkRemovedKeys,
                Step::RemoveOldDir,
            ],
            // atomic_writer.go before 1.23 called createUserVisibleFiles
            // right after writing the payload, before the ..data_tmp symlink.
            KubeletOrder::Pre123 => &[
                Step::WriteNewDir,
                Step::LinkNewKeys,
                Step::LinkDataTmp,
                Step::SwitchData,
                Step::UnlinkRemovedKeys,
                Step::RemoveOldDir,
            ],
        }
    }
}

/// A ConfigMap volume (no `subPath`) in a directory the test owns.
///
/// It keeps no state besides the path: like the kubelet, every update reads
/// the current payload back through `..data`, so what a test sees on disk is
/// the only truth.
#[derive(Debug)]
pub struct ConfigMapDir {
    dir: PathBuf,
}

impl ConfigMapDir {
    /// Creates `dir` if needed (mode 0777, as an emptyDir-backed volume) and
    /// projects `files` into it exactly as the kubelet's first write does.
    /// Fails with `AlreadyExists` if `dir` already holds a `..data`.
    pub fn create(dir: &Path, files: &[(&str, &[u8])]) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        // chmod, not the create mode: the umask must not mask it.
        fs::set_permissions(dir, Permissions::from_mode(0o777))?;
        if fs::symlink_metadata(dir.join(DATA_DIR)).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} already holds a ConfigMap volume", dir.display()),
            ));
        }
        let mut cm = ConfigMapDir {
            dir: dir.to_path_buf(),
        };
        // Without a `..data` there is nothing to compare with, so the first
        // write always happens (even for an empty payload).
        if let Some(update) = cm.begin_update(files, KubeletOrder::Current)? {
            update.finish()?;
        }
        Ok(cm)
    }

    /// The volume directory (what a pod mounts, e.g. `/etc/switchyard`).
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The user-visible path of `key` (the `<key> -> ..data/<key>` symlink):
    /// what the proxy is configured with.
    pub fn file(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// The timestamped dir `..data` currently points at.
    pub fn data_dir(&self) -> io::Result<PathBuf> {
        Ok(self.dir.join(fs::read_link(self.dir.join(DATA_DIR))?))
    }

    /// Names of all `..`-prefixed entries that are not `..data` or
    /// `..data_tmp`, sorted: the timestamped dirs, live or leftover.
    pub fn timestamp_dirs(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name.starts_with("..") && name != DATA_DIR && name != DATA_DIR_TMP {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// One whole update in `order`. Returns `false`, touching nothing, when
    /// `files` equals what `..data` holds now (the kubelet's resync case).
    pub fn update(&mut self, files: &[(&str, &[u8])], order: KubeletOrder) -> io::Result<bool> {
        match self.begin_update(files, order)? {
            Some(update) => {
                update.finish()?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Step 1 of an update: compares `files` with the live payload and, if
    /// they differ, returns the remaining steps for the test to run one at a
    /// time ([`PendingUpdate::step`], [`PendingUpdate::run_through`]).
    /// `None` means equal: nothing was and nothing will be touched.
    ///
    /// Like the kubelet's writer this is not safe to interleave: finish (or
    /// abandon) one update before beginning the next. An abandoned update
    /// leaves the volume exactly as far as it got, as a killed kubelet would.
    pub fn begin_update(
        &mut self,
        files: &[(&str, &[u8])],
        order: KubeletOrder,
    ) -> io::Result<Option<PendingUpdate>> {
        let payload = validate_payload(files)?;
        let old_ts = match fs::read_link(self.dir.join(DATA_DIR)) {
            Ok(target) => Some(target.to_string_lossy().into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let old_payload = match &old_ts {
            Some(ts) => read_payload(&self.dir.join(ts))?,
            None => BTreeMap::new(),
        };
        if old_ts.is_some() && old_payload == payload {
            return Ok(None);
        }
        // pathsToRemove: keys of the old dir the new payload lacks.
        let removed = old_payload
            .keys()
            .filter(|k| !payload.contains_key(*k))
            .cloned()
            .collect();
        Ok(Some(PendingUpdate {
            dir: self.dir.clone(),
            payload,
            old_ts,
            new_ts: None,
            removed,
            steps: order.steps(),
            done: 0,
        }))
    }
}

/// An update in progress; see [`ConfigMapDir::begin_update`].
#[derive(Debug)]
#[must_use = "an update does nothing until its steps are run"]
pub struct PendingUpdate {
    dir: PathBuf,
    payload: BTreeMap<String, Vec<u8>>,
    old_ts: Option<String>,
    new_ts: Option<String>,
    removed: Vec<String>,
    steps: &'static [Step],
    done: usize,
}

impl PendingUpdate {
    /// The steps not run yet, in order.
    pub fn remaining(&self) -> &'static [Step] {
        &self.steps[self.done..]
    }

    /// The step [`PendingUpdate::step`] would run next.
    pub fn next_step(&self) -> Option<Step> {
        self.remaining().first().copied()
    }

    /// Runs the next step; returns which one ran, `None` once all have.
    pub fn step(&mut self) -> io::Result<Option<Step>> {
        let Some(step) = self.next_step() else {
            return Ok(None);
        };
        self.run(step)?;
        self.done += 1;
        Ok(Some(step))
    }

    /// Runs steps up to and including `last`, then returns so the test can
    /// look at the volume in that state. Errors if `last` already ran.
    pub fn run_through(&mut self, last: Step) -> io::Result<()> {
        if !self.remaining().contains(&last) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{last:?} is not among the remaining steps {:?}",
                    self.remaining()
                ),
            ));
        }
        while self.step()? != Some(last) {}
        Ok(())
    }

    /// Runs every remaining step.
    pub fn finish(mut self) -> io::Result<()> {
        while self.step()?.is_some() {}
        Ok(())
    }

    /// The timestamped dir being replaced (`None` on the first write).
    pub fn old_dir(&self) -> Option<PathBuf> {
        self.old_ts.as_ref().map(|ts| self.dir.join(ts))
    }

    /// The new timestamped dir, once [`Step::WriteNewDir`] has run.
    pub fn new_dir(&self) -> Option<PathBuf> {
        self.new_ts.as_ref().map(|ts| self.dir.join(ts))
    }

    fn run(&mut self, step: Step) -> io::Result<()> {
        match step {
            Step::WriteNewDir => {
                let (ts, path) = new_timestamp_dir(&self.dir)?;
                // writePayloadToDir: os.WriteFile then os.Chmod, so the mode
                // is exact whatever the umask. No fsync, as in the kubelet.
                for (key, bytes) in &self.payload {
                    let file = path.join(key);
                    let mut f = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o644)
                        .open(&file)?;
                    f.write_all(bytes)?;
                    drop(f);
                    fs::set_permissions(&file, Permissions::from_mode(0o644))?;
                }
                self.new_ts = Some(ts);
            }
            Step::LinkDataTmp => {
                // Relative target: the volume is seen at another path inside
                // the container than on the node.
                symlink(self.new_ts()?, self.dir.join(DATA_DIR_TMP))?;
            }
            Step::SwitchData => {
                fs::rename(self.dir.join(DATA_DIR_TMP), self.dir.join(DATA_DIR))?;
            }
            Step::LinkNewKeys => {
                // createUserVisibleFiles: only keys whose symlink is missing;
                // existing ones already resolve through `..data`.
                for key in self.payload.keys() {
                    let visible = self.dir.join(key);
                    match fs::symlink_metadata(&visible) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            symlink(Path::new(DATA_DIR).join(key), &visible)?;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            Step::UnlinkRemovedKeys => {
                for key in &self.removed {
                    fs::remove_file(self.dir.join(key))?;
                }
            }
            Step::RemoveOldDir => {
                if let Some(old) = self.old_dir() {
                    fs::remove_dir_all(old)?;
                }
            }
        }
        Ok(())
    }

    fn new_ts(&self) -> io::Result<&str> {
        self.new_ts.as_deref().ok_or_else(|| {
            io::Error::other("the new timestamped dir does not exist yet (WriteNewDir has not run)")
        })
    }
}

/// Checks keys the way the API server and AtomicWriter would refuse them,
/// for the flat keys a ConfigMap has (no `items[].path` subdirectories).
fn validate_payload(files: &[(&str, &[u8])]) -> io::Result<BTreeMap<String, Vec<u8>>> {
    let mut payload = BTreeMap::new();
    for (key, bytes) in files {
        let bad = key.is_empty()
            || *key == "."
            || key.starts_with("..")
            || key.contains('/')
            || payload.insert((*key).to_owned(), bytes.to_vec()).is_some();
        if bad {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid or duplicate ConfigMap key {key:?}"),
            ));
        }
    }
    Ok(payload)
}

/// Every file of a timestamped dir, as the kubelet's comparison reads it.
fn read_payload(ts_dir: &Path) -> io::Result<BTreeMap<String, Vec<u8>>> {
    let mut payload = BTreeMap::new();
    for entry in fs::read_dir(ts_dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            payload.insert(
                entry.file_name().to_string_lossy().into_owned(),
                fs::read(entry.path())?,
            );
        }
    }
    Ok(payload)
}

/// newTimestampDir: `os.MkdirTemp(dir, "..2006_01_02_15_04_05.")` (0700,
/// random digits, retried on a clash) then `os.Chmod(0755)`.
fn new_timestamp_dir(dir: &Path) -> io::Result<(String, PathBuf)> {
    let stamp = utc_stamp(SystemTime::now());
    for _ in 0..1000 {
        let name = format!("..{stamp}.{}", random_u32());
        let path = dir.join(&name);
        match DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {
                fs::set_permissions(&path, Permissions::from_mode(0o755))?;
                return Ok((name, path));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(
        "no free timestamped dir name after 1000 tries",
    ))
}

/// A pseudo-random u32 (1–10 decimal digits, like Go's MkdirTemp). The
/// process-wide counter makes successive calls differ even within one clock
/// tick; time and pid make runs differ. Not cryptographic, not needed.
fn random_u32() -> u32 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // splitmix64 finaliser: spreads the small differences over all bits.
    let mut x =
        nanos ^ (u64::from(std::process::id()) << 40) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 32) as u32
}

/// `2006_01_02_15_04_05` in UTC, as the kubelet formats it.
fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}_{m:02}_{d:02}_{:02}_{:02}_{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`); avoids a date crate for one format.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `path` with `suffix` appended to its file name, in the same dir.
fn sibling(path: &Path, suffix: &str) -> io::Result<PathBuf> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    let mut name = OsString::from(name);
    name.push(suffix);
    Ok(path.with_file_name(name))
}

/// The permission bits of `path` if it exists (editors keep them), else
/// 0644.
fn mode_or_default(path: &Path) -> io::Result<u32> {
    match fs::metadata(path) {
        Ok(m) => Ok(m.mode() & 0o7777),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0o644),
        Err(e) => Err(e),
    }
}

/// Temp file + rename, like `sed -i`, `mv` or most "atomic save" editors:
/// writes `<name>.tmp-XXXX` in the same dir (same filesystem, so the
/// rename is atomic), copies the old mode, fsyncs, and renames it over
/// `path`. The watched inode is replaced; a reader never sees a partial
/// file. If `path` is a symlink the link itself is replaced, as `sed -i`
/// without `--follow-symlinks` does.
pub fn write_via_rename(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mode = mode_or_default(path)?;
    for _ in 0..1000 {
        let tmp = sibling(path, &format!(".tmp-{:04x}", random_u32() & 0xffff))?;
        let f = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        let written = fill_and_sync(f, bytes, mode).and_then(|()| fs::rename(&tmp, path));
        if written.is_err() {
            // Leave no stray temp file behind on failure.
            let _ = fs::remove_file(&tmp);
        }
        return written;
    }
    Err(io::Error::other("no free temp file name after 1000 tries"))
}

/// Writes, sets the exact mode, fsyncs and closes a temp file.
fn fill_and_sync(mut f: File, bytes: &[u8], mode: u32) -> io::Result<()> {
    f.write_all(bytes)?;
    f.set_permissions(Permissions::from_mode(mode))?;
    f.sync_all()
}

/// What vim (`backupcopy=auto`, `writebackup`, `nobackup`, the defaults)
/// does on `:w` outside /tmp, in the order `strace` shows for vim 9:
///
/// 1. probe: create `4913` (`O_CREAT|O_EXCL|O_NOFOLLOW`, the file's mode),
///    fchown, close, unlink — vim checks it may create files here; the name
///    moves on by 123 while taken;
/// 2. unlink a stale `<name>~`, then `rename(<name>, <name>~)`: from now
///    until step 3 the file is absent;
/// 3. create `<name>` (`O_WRONLY|O_CREAT`), ftruncate, write, fsync, fchmod
///    to the old mode, close;
/// 4. unlink `<name>~`.
///
/// Refuses a symlink: on one vim copies and writes through it in place
/// instead (use [`write_in_place`] for that).
pub fn write_like_vim(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a symlink; vim writes through it in place",
                    path.display()
                ),
            ))
        }
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mode = meta.as_ref().map_or(0o644, |m| m.mode() & 0o7777);

    // 1. The probe file.
    let mut n = 4913;
    loop {
        let probe = path.with_file_name(n.to_string());
        if fs::symlink_metadata(&probe).is_ok() {
            n += 123;
            continue;
        }
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .mode(mode)
            .open(&probe)?;
        if let Some(m) = &meta {
            // vim ignores a failed chown; so do we.
            let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
        }
        drop(f);
        fs::remove_file(&probe)?;
        break;
    }

    // 2. The backup, by rename.
    let backup = sibling(path, "~")?;
    if meta.is_some() {
        match fs::remove_file(&backup) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fs::rename(path, &backup)?;
    }

    // 3. The new file.
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .open(path)?;
    f.set_len(0)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    f.set_permissions(Permissions::from_mode(mode))?;
    drop(f);

    // 4. The backup goes once the write succeeded.
    if meta.is_some() {
        fs::remove_file(&backup)?;
    }
    Ok(())
}

/// Truncate then write into the same inode, like `echo > f`, `cp`, or
/// `kubectl cp`: opens with `O_TRUNC` (following a symlink to its target),
/// writes, no fsync. Between the two a reader can see an empty file.
pub fn write_in_place(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(bytes)
}

/// A slow in-place writer, so a reader can catch an empty or half-written
/// file. Async (it sleeps with `tokio::time::sleep`; the short file calls
/// themselves are blocking std calls): opens `path` with `O_TRUNC`, then
/// waits `pause` before each `chunk`-byte piece and fsyncs after each, so
/// the file is observably empty for `pause` and then grows by prefixes.
/// `chunk == 0` is taken as 1.
pub async fn write_in_place_chunked(
    path: &Path,
    bytes: &[u8],
    chunk: usize,
    pause: Duration,
) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    for piece in bytes.chunks(chunk.max(1)) {
        tokio::time::sleep(pause).await;
        f.write_all(piece)?;
        // Push each piece out now, so the reader's view is the prefix
        // written so far and not whatever the page cache batches.
        f.sync_data()?;
    }
    Ok(())
}

/// `rm f; sleep; echo > f`: unlinks `path` (the link itself if it is a
/// symlink), waits `gap` (async, `tokio::time::sleep`) during which the
/// file does not exist, then creates a new file (0644 before umask) with
/// `bytes`.
pub async fn delete_and_recreate(path: &Path, bytes: &[u8], gap: Duration) -> io::Result<()> {
    fs::remove_file(path)?;
    tokio::time::sleep(gap).await;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)?;
    f.write_all(bytes)
}

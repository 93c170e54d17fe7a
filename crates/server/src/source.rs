//! Reading the routes file, the same way at startup, on every reload and
//! in `switchyard check`: a regular file only, opened without blocking,
//! and never more than a size cap.
//!
//! A ConfigMap holds at most 1 MiB, but the path can point anywhere: at a
//! named pipe (opening it for reading blocks until a writer comes, and
//! would hold the reload task for good), at `/dev/zero` (a read that never
//! ends), or at a file far larger than any routes file. Each of those is
//! refused with what it is, before more than the cap is read.

use std::fs::{File, FileType, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default cap on the routes file's size: a ConfigMap's 1 MiB, plus a
/// margin for a file that is not from one.
pub const DEFAULT_MAX_CONFIG_BYTES: u64 = 1024 * 1024 + 64 * 1024;

/// How long a reload waits for a read (a hung network filesystem, say)
/// before giving up on it; the reload task goes on either way.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The operating system refused (missing, no permission, …).
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// Not a regular file: a directory, pipe, socket or device.
    #[error("cannot read: not a regular file but a {0}; point --config at a routes file")]
    NotRegular(&'static str),
    /// Larger than the cap.
    #[error("cannot read: the file has {size} bytes, more than the limit of {limit} (--max-config-bytes); a ConfigMap holds at most 1 MiB")]
    TooLarge {
        /// Its size, or the bytes read before the cap was passed.
        size: u64,
        /// The cap.
        limit: u64,
    },
    /// The read did not finish in [`READ_TIMEOUT`].
    #[error("cannot read: no answer from the filesystem within {0:?}")]
    TimedOut(Duration),
}

/// Reads the whole file at `path` if it is a regular file of at most
/// `limit` bytes. Blocking; see [`read_off_thread`] for async callers.
pub fn read_config(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
    // writer. It changes nothing for a regular file. O_NOCTTY: a terminal
    // device must not become the process's controlling terminal.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular(kind(meta.file_type())));
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    read_capped(file, meta.len(), limit)
}

/// Reads at most `limit` bytes; a file that grew past it since its size
/// was taken is refused too.
fn read_capped(file: File, size_hint: u64, limit: u64) -> Result<Vec<u8>, ReadError> {
    let capacity = usize::try_from(size_hint.min(limit)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > limit {
        return Err(ReadError::TooLarge { size: read, limit });
    }
    Ok(bytes)
}

/// [`read_config`] on a blocking thread, within [`READ_TIMEOUT`], so the
/// calling task never waits on the filesystem.
pub async fn read_off_thread(path: PathBuf, limit: u64) -> Result<Vec<u8>, ReadError> {
    let read = tokio::task::spawn_blocking(move || read_config(&path, limit));
    match tokio::time::timeout(READ_TIMEOUT, read).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(ReadError::Io(std::io::Error::other(join))),
        // The thread stays blocked until the filesystem answers; the next
        // trigger tries again on a thread of its own.
        Err(_) => Err(ReadError::TimedOut(READ_TIMEOUT)),
    }
}

fn kind(t: FileType) -> &'static str {
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "named pipe"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
    }

    #[test]
    fn a_regular_file_within_the_cap_is_read_whole() {
        let d = dir();
        let p = d.path().join("routes.yaml");
        std::fs::write(&p, b"routes: []\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_config(&p, 11).ok(), Some(b"routes: []\n".to_vec()));
        // Through a symlink, as in a ConfigMap volume.
        let link = d.path().join("link.yaml");
        std::os::unix::fs::symlink(&p, &link).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_config(&link, 11).ok(), Some(b"routes: []\n".to_vec()));
    }

    #[test]
    fn a_file_over_the_cap_is_refused_with_its_size() {
        let d = dir();
        let p = d.path().join("routes.yaml");
        std::fs::write(&p, vec![b'#'; 100]).unwrap_or_else(|e| panic!("{e}"));
        match read_config(&p, 99) {
            Err(ReadError::TooLarge {
                size: 100,
                limit: 99,
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    /// A device that never ends is refused before a byte is read.
    #[test]
    fn devices_directories_and_pipes_are_refused_without_blocking() {
        let d = dir();
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU)
            .unwrap_or_else(|e| panic!("mkfifo: {e}"));
        let zero = d.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap_or_else(|e| panic!("{e}"));
        for (path, what) in [
            (fifo.as_path(), "named pipe"),
            (zero.as_path(), "character device"),
            (d.path(), "directory"),
        ] {
            match read_config(path, DEFAULT_MAX_CONFIG_BYTES) {
                Err(ReadError::NotRegular(kind)) => assert_eq!(kind, what),
                other => panic!("{}: {other:?}", path.display()),
            }
        }
    }

    #[test]
    fn a_missing_file_is_an_io_error() {
        let d = dir();
        assert!(matches!(
            read_config(&d.path().join("nope"), 10),
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound
        ));
    }
}

//! The open-file limit, checked against `--max-connections` at startup.
//!
//! Every client connection is a file descriptor, and a proxied one holds a
//! second for its upstream while busy. Container runtimes often start a
//! process with a soft limit far below the hard one (1 024 of 524 288 is
//! common), which would stop Switchyard accepting long before
//! `--max-connections`. Like Go's runtime and nginx's
//! `worker_rlimit_nofile`, the soft limit is raised to the hard one; if
//! that is still short of what the cap needs, the log says so at startup
//! instead of the proxy failing to accept under load.

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

/// Descriptors kept for listeners, the watcher, the admin listener, logs.
const RESERVED: u64 = 128;

/// The soft limit in force after raising it as far as allowed, or `None`
/// when it cannot be read.
pub(crate) fn raise_open_files_limit() -> Option<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    // An unlimited hard limit cannot be the soft one for descriptors: the
    // kernel caps it at fs.nr_open.
    let target = if hard == RLIM_INFINITY {
        nr_open().unwrap_or(soft)
    } else {
        hard
    };
    if soft >= target {
        return Some(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
        Ok(()) => Some(target),
        Err(e) => {
            tracing::debug!(error = %e, soft, target, "cannot raise the open-file limit");
            Some(soft)
        }
    }
}

/// The kernel's ceiling for any process's descriptor limit.
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Descriptors `--max-connections` may need: two per connection (client
/// and upstream) plus a reserve.
pub(crate) fn needed_for(max_connections: usize) -> u64 {
    u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_mul(2)
        .saturating_add(RESERVED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_descriptors_per_connection_and_a_reserve() {
        assert_eq!(needed_for(0), 128);
        assert_eq!(needed_for(10_000), 20_128);
        assert_eq!(needed_for(usize::MAX), u64::MAX);
    }
}

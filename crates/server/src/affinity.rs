//! Which CPU each proxy shard's thread runs on.
//!
//! Each shard is one thread with its own listening socket, and its
//! connections never leave it. Left to the scheduler, those threads (with
//! the load generator and upstream beside them on a small machine) were
//! moved between CPUs and one CPU sat idle while work queued on the other;
//! with each shard held to a CPU of its own, far less time went idle and
//! more requests were served (measured in benches/README.md).
//!
//! Holding a thread to one CPU is right when the proxy has a thread for
//! every CPU it may use: each CPU then has exactly one shard, as nginx's
//! `worker_cpu_affinity auto` arranges its workers. That is the default
//! `--threads` without a CPU limit, and a container given whole CPUs of its
//! own (`cpuset`). With fewer shards than usable CPUs (`--threads 2` on a
//! large node, or a CPU limit), pinned shards could not move away from CPUs
//! other work keeps busy while others sit free, so `auto` pins only when
//! the usable CPUs number exactly the shards; `on` pins anyway, shard *i*
//! to the *i*-th usable CPU; `off` never pins.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// When shard threads are held to CPUs (`--cpu-affinity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuAffinity {
    /// Pin when the usable CPUs number exactly the shards.
    #[default]
    Auto,
    /// Pin each shard to a usable CPU, round robin.
    On,
    /// Leave placement to the scheduler.
    Off,
}

/// The CPU for each of `shards` shards under `mode`, given the CPUs the
/// process may use (ascending); `None` when shards are not pinned.
pub(crate) fn plan(mode: CpuAffinity, shards: usize, usable: &[usize]) -> Option<Vec<usize>> {
    let pin = match mode {
        CpuAffinity::Off => false,
        CpuAffinity::On => !usable.is_empty(),
        CpuAffinity::Auto => shards > 1 && usable.len() == shards,
    };
    pin.then(|| (0..shards).map(|i| usable[i % usable.len()]).collect())
}

/// The CPUs this process may run on, ascending; empty when they cannot
/// be read.
pub(crate) fn usable_cpus() -> Vec<usize> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Holds the calling thread to `cpu`.
pub(crate) fn pin_current_thread(cpu: usize) -> nix::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    // Pid 0: the calling thread.
    sched_setaffinity(Pid::from_raw(0), &set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_pins_only_when_the_cpus_are_exactly_the_shards() {
        assert_eq!(plan(CpuAffinity::Auto, 2, &[4, 5]), Some(vec![4, 5]));
        assert_eq!(plan(CpuAffinity::Auto, 2, &[0, 1, 2, 3]), None);
        assert_eq!(plan(CpuAffinity::Auto, 4, &[0, 1]), None);
        // One shard on one CPU gains nothing from a pin.
        assert_eq!(plan(CpuAffinity::Auto, 1, &[3]), None);
        assert_eq!(plan(CpuAffinity::Auto, 2, &[]), None);
    }

    #[test]
    fn on_pins_round_robin_and_off_never() {
        assert_eq!(plan(CpuAffinity::On, 3, &[2, 7]), Some(vec![2, 7, 2]));
        assert_eq!(plan(CpuAffinity::On, 2, &[]), None);
        assert_eq!(plan(CpuAffinity::Off, 2, &[0, 1]), None);
    }

    #[test]
    fn this_process_can_run_somewhere() {
        assert!(!usable_cpus().is_empty());
    }
}

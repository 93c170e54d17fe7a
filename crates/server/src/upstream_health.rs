//! The last connect outcome of each upstream address, for the status page.
//!
//! Metrics say how often a route's upstream failed; an operator looking at
//! a broken route wants to know which server is failing *now*. This map
//! keeps, per address, whether the latest new connection to it succeeded,
//! when, and since when it has been in that state. It is fed from the proxy
//! on every new upstream connection (and from wherever else a connect is
//! attempted), so recording must stay cheap: a read lock and one
//! uncontended per-address lock, with no allocation unless the address is
//! new to the map.
//!
//! One map per server, created in `serve` and handed to whoever records
//! or reads it (never a global), so tests and two servers in one process
//! keep their own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::SystemTime;

/// Addresses remembered at most. Upstreams named by DNS can move to new
/// addresses for ever (pods restart with new IPs); past this many, the
/// address heard from least recently is forgotten.
const MAX_ADDRESSES: usize = 1024;

/// What is known of one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnectRecord {
    /// Whether the latest connect succeeded.
    pub ok: bool,
    /// When the latest connect was recorded.
    pub at: SystemTime,
    /// When the outcome last changed (the first of the current run of
    /// successes or failures).
    pub since: SystemTime,
    /// Connects in a row with this outcome, the latest included.
    pub streak: u64,
}

/// Upstream address → last connect outcome; shared behind an `Arc`.
#[derive(Debug, Default)]
pub(crate) struct UpstreamHealth {
    // The outer lock is taken for writing only when an address is new;
    // each record has its own lock so two shards recording different
    // addresses never wait on each other, and a record is never read half
    // updated.
    map: RwLock<HashMap<SocketAddr, Mutex<ConnectRecord>>>,
}

impl UpstreamHealth {
    /// Records one connect attempt to `addr`, at the current time.
    pub(crate) fn record_connect(&self, addr: SocketAddr, ok: bool) {
        self.record_connect_at(addr, ok, SystemTime::now());
    }

    /// [`Self::record_connect`] at a given time (for tests).
    pub(crate) fn record_connect_at(&self, addr: SocketAddr, ok: bool, at: SystemTime) {
        {
            let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(record) = map.get(&addr) {
                update(
                    &mut record.lock().unwrap_or_else(PoisonError::into_inner),
                    ok,
                    at,
                );
                return;
            }
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have added it between the two locks.
        if let Some(record) = map.get_mut(&addr) {
            update(
                record.get_mut().unwrap_or_else(PoisonError::into_inner),
                ok,
                at,
            );
            return;
        }
        if map.len() >= MAX_ADDRESSES {
            let oldest = map
                .iter()
                .min_by_key(|(_, r)| r.lock().unwrap_or_else(PoisonError::into_inner).at)
                .map(|(a, _)| *a);
            if let Some(oldest) = oldest {
                map.remove(&oldest);
            }
        }
        map.insert(
            addr,
            Mutex::new(ConnectRecord {
                ok,
                at,
                since: at,
                streak: 1,
            }),
        );
    }

    /// Every address with its record, failing ones first, then by address
    /// (a stable order for the page).
    pub(crate) fn entries(&self) -> Vec<(SocketAddr, ConnectRecord)> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<(SocketAddr, ConnectRecord)> = map
            .iter()
            .map(|(a, r)| (*a, *r.lock().unwrap_or_else(PoisonError::into_inner)))
            .collect();
        out.sort_by_key(|(a, r)| (r.ok, *a));
        out
    }
}

fn update(record: &mut ConnectRecord, ok: bool, at: SystemTime) {
    if record.ok == ok {
        record.streak = record.streak.saturating_add(1);
    } else {
        record.ok = ok;
        record.since = at;
        record.streak = 1;
    }
    record.at = at;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn keeps_the_latest_outcome_and_when_it_began() {
        let h = UpstreamHealth::default();
        h.record_connect_at(addr(1), true, t(10));
        h.record_connect_at(addr(1), true, t(11));
        assert_eq!(
            h.entries(),
            vec![(
                addr(1),
                ConnectRecord {
                    ok: true,
                    at: t(11),
                    since: t(10),
                    streak: 2
                }
            )]
        );
        h.record_connect_at(addr(1), false, t(12));
        h.record_connect_at(addr(1), false, t(13));
        h.record_connect_at(addr(1), false, t(14));
        let (_, r) = h.entries()[0];
        assert_eq!((r.ok, r.at, r.since, r.streak), (false, t(14), t(12), 3));
        h.record_connect_at(addr(1), true, t(15));
        let (_, r) = h.entries()[0];
        assert_eq!((r.ok, r.at, r.since, r.streak), (true, t(15), t(15), 1));
    }

    #[test]
    fn lists_failing_addresses_first() {
        let h = UpstreamHealth::default();
        h.record_connect_at(addr(1), true, t(1));
        h.record_connect_at(addr(3), false, t(1));
        h.record_connect_at(addr(2), false, t(1));
        let order: Vec<(u16, bool)> = h.entries().iter().map(|(a, r)| (a.port(), r.ok)).collect();
        assert_eq!(order, vec![(2, false), (3, false), (1, true)]);
    }

    #[test]
    fn forgets_the_stalest_address_when_full() {
        let h = UpstreamHealth::default();
        for port in 0..MAX_ADDRESSES {
            let port = u16::try_from(port).unwrap() + 1;
            h.record_connect_at(addr(port), true, t(u64::from(port) + 100));
        }
        // Port 1 is the stalest, unless it is heard from again.
        h.record_connect_at(addr(1), true, t(5000));
        h.record_connect_at(addr(60000), false, t(5001));
        let entries = h.entries();
        assert_eq!(entries.len(), MAX_ADDRESSES);
        let ports: Vec<u16> = entries.iter().map(|(a, _)| a.port()).collect();
        assert!(ports.contains(&1));
        assert!(ports.contains(&60000));
        assert!(!ports.contains(&2), "port 2 was the stalest");
    }

    #[test]
    fn concurrent_recorders_lose_nothing() {
        let h = std::sync::Arc::new(UpstreamHealth::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = std::sync::Arc::clone(&h);
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        h.record_connect(addr(i % 8), true);
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        let total: u64 = h.entries().iter().map(|(_, r)| r.streak).sum();
        assert_eq!(total, 4000);
    }
}

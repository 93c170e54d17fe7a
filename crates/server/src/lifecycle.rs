//! The process's lifecycle, shared by the listeners and the drain: whether
//! the main listener is accepting yet, whether it is draining, and how many
//! requests are in flight.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use crate::stripes;

/// Whether the process is listening and draining, and how many requests
/// are in flight.
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    listening: AtomicBool,
    draining: AtomicBool,
    /// Requests in flight, striped by thread ([`stripes`]): every request
    /// writes it twice.
    in_flight: [CachePadded<AtomicUsize>; stripes::STRIPES],
}

impl Lifecycle {
    /// Marks the main listener as accepting connections.
    pub(crate) fn set_listening(&self) {
        self.listening.store(true, Ordering::SeqCst);
    }

    /// Whether the main listener accepts connections yet.
    pub(crate) fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Marks the process as draining: readiness and `/health` turn 503.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether draining has started.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Requests currently being handled.
    pub(crate) fn in_flight(&self) -> usize {
        // Each stripe only counts guards that are still alive (a guard
        // gives back to the stripe it took from), so none is ever below 0.
        self.in_flight
            .iter()
            .map(|n| n.load(Ordering::SeqCst))
            .fold(0, usize::wrapping_add)
    }

    /// Counts a request until the returned guard drops; `lifecycle` is
    /// whatever holds it for the request: an `Arc` to keep, or a borrow
    /// where the request's future has one (no reference count to touch).
    pub(crate) fn track<L: Deref<Target = Lifecycle>>(lifecycle: L) -> InFlight<L> {
        let stripe = stripes::current();
        lifecycle.in_flight[stripe].fetch_add(1, Ordering::SeqCst);
        InFlight { lifecycle, stripe }
    }
}

/// Held for the life of one request; see [`Lifecycle::track`].
#[derive(Debug)]
pub(crate) struct InFlight<L: Deref<Target = Lifecycle> = Arc<Lifecycle>> {
    lifecycle: L,
    stripe: usize,
}

impl<L: Deref<Target = Lifecycle>> Drop for InFlight<L> {
    fn drop(&mut self) {
        self.lifecycle.in_flight[self.stripe].fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A guard counts until it drops, wherever it drops.
    #[test]
    fn guards_count_until_they_drop_on_any_thread() {
        let lifecycle = Arc::new(Lifecycle::default());
        let here = Lifecycle::track(&*lifecycle);
        let kept = Lifecycle::track(Arc::clone(&lifecycle));
        assert_eq!(lifecycle.in_flight(), 2);
        let there = std::thread::spawn(move || {
            let theirs = Lifecycle::track(Arc::clone(&kept.lifecycle));
            (kept, theirs)
        })
        .join()
        .unwrap_or_else(|_| panic!("thread"));
        assert_eq!(lifecycle.in_flight(), 3);
        drop(here);
        assert_eq!(lifecycle.in_flight(), 2);
        drop(there);
        assert_eq!(lifecycle.in_flight(), 0);
    }
}

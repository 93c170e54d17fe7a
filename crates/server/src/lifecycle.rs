//! The process's lifecycle, shared by the listeners and the drain: whether
//! the main listener is accepting yet, whether it is draining, and how many
//! requests are in flight.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Whether the process is listening and draining, and how many requests
/// are in flight.
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    listening: AtomicBool,
    draining: AtomicBool,
    in_flight: AtomicUsize,
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
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Counts a request until the returned guard drops.
    pub(crate) fn track(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(self))
    }
}

/// Held for the life of one request; see [`Lifecycle::track`].
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Lifecycle>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

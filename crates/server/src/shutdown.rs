//! Shutdown that fits Kubernetes: on SIGTERM, readiness turns 503 while
//! traffic is still served for the drain delay; then the listeners close
//! and in-flight requests get up to the drain timeout; then the process
//! stops, saying whether requests were cut ([`Stopped`]).
//!
//! Pingora's stock handling closes listeners at once and then sleeps a
//! fixed grace period (300 s by default) whatever is in flight, and cannot
//! flip readiness first (cloudflare/pingora#505). So the signal watch here
//! delays Pingora's shutdown, and a watcher thread reports as soon as
//! nothing is in flight, so the process can end without Pingora's wait.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::server::{ExecutionPhase, ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::broadcast;

use crate::lifecycle::Lifecycle;

/// The signal handling handed to Pingora's `run`.
pub(crate) struct Signals {
    lifecycle: Arc<Lifecycle>,
    drain_delay: Duration,
}

impl Signals {
    /// Drains on SIGTERM for `drain_delay` before Pingora closes listeners.
    pub(crate) fn new(lifecycle: Arc<Lifecycle>, drain_delay: Duration) -> Self {
        Signals {
            lifecycle,
            drain_delay,
        }
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping now");
                return ShutdownSignal::FastShutdown;
            }
            _ = term.recv() => {}
        }
        self.lifecycle.start_draining();
        tracing::info!(
            drain_delay_s = self.drain_delay.as_secs_f64(),
            "SIGTERM: draining; readiness is 503, still serving"
        );
        tokio::select! {
            _ = int.recv() => {
                tracing::info!("SIGINT while draining: stopping now");
                ShutdownSignal::FastShutdown
            }
            _ = tokio::time::sleep(self.drain_delay) => {
                tracing::info!(in_flight = self.lifecycle.in_flight(), "drain delay over: closing listeners");
                ShutdownSignal::GracefulTerminate
            }
        }
    }
}

/// How the server stopped, for `main` to turn into an exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM: every in-flight request finished within the drain timeout.
    Drained,
    /// SIGTERM: the drain timeout ran out with requests still in flight,
    /// which were cut.
    DrainTimedOut {
        /// Requests in flight when the process stopped.
        cut: usize,
    },
    /// SIGINT (stop at once), or Pingora's own loop ended.
    Stopped,
}

/// Watches Pingora's phases from a thread of its own: once the listeners
/// are closed, waits for in-flight requests (at most `timeout`) and says
/// how that went on `done`. Pingora itself would wait its whole grace
/// period whatever is in flight; the caller stops as soon as this reports.
pub(crate) fn watch_drain(
    mut phases: broadcast::Receiver<ExecutionPhase>,
    lifecycle: Arc<Lifecycle>,
    timeout: Duration,
    done: std::sync::mpsc::Sender<Stopped>,
) {
    let spawned = std::thread::Builder::new()
        .name("drain-watch".into())
        .spawn(move || loop {
            match phases.blocking_recv() {
                Ok(ExecutionPhase::ShutdownGracePeriod) => {
                    let deadline = Instant::now() + timeout;
                    while lifecycle.in_flight() > 0 && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let left = lifecycle.in_flight();
                    let stopped = if left > 0 {
                        tracing::warn!(
                            in_flight = left,
                            "drain timeout reached; exiting with requests still open"
                        );
                        Stopped::DrainTimedOut { cut: left }
                    } else {
                        tracing::info!("drained; exiting");
                        Stopped::Drained
                    };
                    let _ = done.send(stopped);
                    return;
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the drain watcher; shutdown waits the full drain timeout");
    }
}

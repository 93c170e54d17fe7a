//! One timer per connection for the waits that nearly always end long
//! before their limit.
//!
//! A keep-alive connection waits twice per request with a limit of a
//! minute or more: for the client's next request and for the upstream's
//! answer. Each `tokio::time::timeout` registers a timer in the runtime's
//! wheel and removes it again microseconds later, which was a measurable
//! share of a request. [`Deadline`] keeps one timer armed per connection
//! and lets a wait whose limit falls *after* the armed time leave it alone:
//! when the timer fires early for the wait in progress, it is armed again
//! at that wait's own limit. So a busy connection touches the wheel about
//! once per limit's length, not twice per request, and every wait still
//! ends at its own limit. [`within`] times a wait without one, setting a
//! timer only if the wait does not end at once.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The wait's limit passed first.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TimedOut;

/// A connection's timer; see the module documentation.
pub(crate) struct Deadline<'s> {
    sleep: Pin<&'s mut Sleep>,
    /// When `sleep` fires, if it is armed and has not fired yet.
    armed: Option<Instant>,
}

impl<'s> Deadline<'s> {
    /// Uses `sleep` (not yet polled, or idle) as the connection's timer.
    pub(crate) fn new(sleep: Pin<&'s mut Sleep>) -> Self {
        Deadline { sleep, armed: None }
    }

    /// Runs `fut` to its end, or until `limit` from now has passed.
    pub(crate) async fn within<F: Future>(
        &mut self,
        limit: Duration,
        fut: F,
    ) -> Result<F::Output, TimedOut> {
        let deadline = Instant::now() + limit;
        let mut fut = std::pin::pin!(fut);
        loop {
            // Only a limit before the armed time moves the timer.
            if self.armed.is_none_or(|armed| armed > deadline) {
                self.sleep.as_mut().reset(deadline);
                self.armed = Some(deadline);
            }
            tokio::select! {
                biased;
                out = &mut fut => return Ok(out),
                () = self.sleep.as_mut() => {
                    // Fired: at this wait's limit, or at an earlier one's
                    // (perhaps between waits).
                    self.armed = None;
                    if Instant::now() >= deadline {
                        return Err(TimedOut);
                    }
                }
            }
        }
    }
}

/// `fut`, held to `limit`, for a wait that has no [`Deadline`] at hand (a
/// write). A timer is set only if `fut` has to wait: most writes finish
/// on their first poll, and a timer set and cancelled for
/// nothing (a clock read, a runtime lookup) was a measurable share of a
/// request.
pub(crate) async fn within<F: Future>(limit: Duration, fut: F) -> Result<F::Output, TimedOut> {
    let mut fut = std::pin::pin!(fut);
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    if let Poll::Ready(out) = first {
        return Ok(out);
    }
    tokio::time::timeout(limit, fut).await.map_err(|_| TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(86_400)
    }

    #[tokio::test]
    async fn a_wait_ends_at_its_own_limit() {
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        let mut deadline = Deadline::new(sleep);
        assert_eq!(
            deadline.within(Duration::from_secs(5), async { 7 }).await,
            Ok(7)
        );
        let started = std::time::Instant::now();
        let out = deadline
            .within(Duration::from_millis(50), std::future::pending::<()>())
            .await;
        assert_eq!(out, Err(TimedOut));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(50), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[tokio::test]
    async fn a_later_limit_outlives_the_armed_time() {
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        let mut deadline = Deadline::new(sleep);
        // Arms the timer at 30 ms from now, then ends at once.
        assert_eq!(
            deadline.within(Duration::from_millis(30), async {}).await,
            Ok(())
        );
        // Fires at 30 ms, is armed again at 120 ms, and lets this wait end
        // by itself at 80 ms.
        let started = std::time::Instant::now();
        let out = deadline
            .within(
                Duration::from_millis(120),
                tokio::time::sleep(Duration::from_millis(80)),
            )
            .await;
        assert_eq!(out, Ok(()));
        // A wait begun after the timer fired unseen still gets its limit.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let out = deadline
            .within(
                Duration::from_millis(100),
                tokio::time::sleep(Duration::from_millis(40)),
            )
            .await;
        assert_eq!(out, Ok(()));
        let out = deadline
            .within(Duration::from_millis(60), std::future::pending::<()>())
            .await;
        assert_eq!(out, Err(TimedOut));
        assert!(started.elapsed() >= Duration::from_millis(80 + 150 + 40 + 60));
    }

    #[tokio::test]
    async fn within_passes_a_ready_result_on_and_times_out_a_wait() {
        assert_eq!(within(Duration::from_millis(1), async { 3 }).await, Ok(3));
        let started = std::time::Instant::now();
        let out = within(Duration::from_millis(40), std::future::pending::<()>()).await;
        assert_eq!(out, Err(TimedOut));
        assert!(started.elapsed() >= Duration::from_millis(40));
    }

    #[tokio::test]
    async fn an_earlier_limit_moves_the_timer() {
        let sleep = tokio::time::sleep_until(far());
        tokio::pin!(sleep);
        let mut deadline = Deadline::new(sleep);
        assert_eq!(
            deadline.within(Duration::from_secs(60), async {}).await,
            Ok(())
        );
        let started = std::time::Instant::now();
        let out = deadline
            .within(Duration::from_millis(40), std::future::pending::<()>())
            .await;
        assert_eq!(out, Err(TimedOut));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

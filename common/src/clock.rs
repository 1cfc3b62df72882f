//! Time as the producers use it: the wall clock that block timestamps follow, sleeps that
//! end early on shutdown, and the capped backoff between retries.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

/// Time since the Unix epoch by the local clock.
pub fn unix_time() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Sleeps for `duration`; false if `cancel` fired first. A zero duration returns at once:
/// tokio rounds every sleep up to its 1 ms timer tick, which a back-to-back producer would
/// otherwise pay on every block (the benchmarks measured 1.08 ms).
pub async fn sleep_or_cancel(duration: Duration, cancel: &CancellationToken) -> bool {
    if duration.is_zero() {
        return !cancel.is_cancelled();
    }
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        () = cancel.cancelled() => false,
    }
}

/// A delay that doubles after each failure, from `first` up to `cap`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    next: Duration,
}

impl Backoff {
    /// 100 ms doubling up to 5 s: quick to notice a restarted Geth, gentle on a dead one.
    pub const DEFAULT: Self = Self::new(Duration::from_millis(100), Duration::from_secs(5));

    /// A backoff from `first` to `cap`.
    pub const fn new(first: Duration, cap: Duration) -> Self {
        Self { first, cap, next: first }
    }

    /// The delay to wait now; the next one is twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.cap);
        delay
    }

    /// Back to the first delay, after a success.
    pub const fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls `future` once, as an executor would on its first turn.
    fn ready_at_once<F: Future>(future: F) -> bool {
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        std::pin::pin!(future).poll(&mut context).is_ready()
    }

    #[tokio::test]
    async fn a_zero_sleep_does_not_wait_for_the_timer() {
        let cancel = CancellationToken::new();
        assert!(ready_at_once(sleep_or_cancel(Duration::ZERO, &cancel)), "done on its first poll");
        // What we avoid: tokio's own zero sleep goes through the timer, which fires on its
        // next 1 ms tick.
        assert!(!ready_at_once(tokio::time::sleep(Duration::ZERO)));
        cancel.cancel();
        assert!(!sleep_or_cancel(Duration::ZERO, &cancel).await);
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<u128> = (0..4).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }
}

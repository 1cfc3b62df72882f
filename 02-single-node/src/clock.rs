//! Time as the producers use it: the wall clock that block timestamps follow, sleeps that
//! end early on shutdown, and the capped backoff between retries.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use common::unix_time;

/// Sleeps for `duration`; false if `cancel` fired first. Unlike the service's own sleep
/// ([`common::service::shutdown::sleep_or_cancel`]), a zero duration returns at once:
/// tokio rounds every sleep up to its 1 ms timer tick, which a back-to-back producer would
/// otherwise pay on every block (the benchmarks measured 1.08 ms).
pub async fn sleep_or_cancel(duration: Duration, cancel: &CancellationToken) -> bool {
    if duration.is_zero() {
        return !cancel.is_cancelled();
    }
    common::service::shutdown::sleep_or_cancel(duration, cancel).await
}

/// How often a sleep towards a wall-clock time looks at the clock again.
pub const REPLAN_EVERY: Duration = Duration::from_secs(1);

// ANCHOR: sleep_until
/// Sleeps until the wall clock reaches the time `due(now)` gives, and looks at the clock
/// again at least every [`REPLAN_EVERY`], asking `due` again each time. A sleep planned
/// from a clock that NTP then steps is planned again within a second: a clock stepped
/// back does not hold the producer for the size of the step once it is corrected. False
/// if `cancel` fired first.
pub async fn sleep_until(due: impl FnMut(Duration) -> Duration, cancel: &CancellationToken) -> bool {
    sleep_until_on(unix_time, due, cancel).await
}

/// [`sleep_until`] on the wall clock `clock` (the tests drive their own).
pub async fn sleep_until_on(
    clock: impl Fn() -> Duration,
    mut due: impl FnMut(Duration) -> Duration,
    cancel: &CancellationToken,
) -> bool {
    loop {
        let now = clock();
        let wait = due(now).saturating_sub(now);
        if wait.is_zero() {
            return !cancel.is_cancelled();
        }
        if !sleep_or_cancel(wait.min(REPLAN_EVERY), cancel).await {
            return false;
        }
    }
}
// ANCHOR_END: sleep_until

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

    /// A wall clock that runs with tokio's (paused) time, off by a step the test sets.
    #[derive(Clone)]
    struct SteppedClock {
        start: tokio::time::Instant,
        base: Duration,
        step_back_secs: std::sync::Arc<std::sync::atomic::AtomicU64>,
    }

    impl SteppedClock {
        fn now(&self) -> Duration {
            let back = Duration::from_secs(self.step_back_secs.load(std::sync::atomic::Ordering::SeqCst));
            (self.base + self.start.elapsed()).saturating_sub(back)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_stepped_back_holds_the_sleep_only_until_it_is_corrected() {
        let clock = SteppedClock {
            start: tokio::time::Instant::now(),
            base: Duration::from_secs(1_000),
            step_back_secs: std::sync::Arc::default(),
        };
        // The clock was stepped back 300 s just before the plan: the block due at 1001 s
        // looks 301 s away. NTP corrects the clock 3 s later.
        clock.step_back_secs.store(300, std::sync::atomic::Ordering::SeqCst);
        let correct = clock.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            correct.step_back_secs.store(0, std::sync::atomic::Ordering::SeqCst);
        });
        let started = tokio::time::Instant::now();
        let reached = sleep_until_on(|| clock.now(), |_| Duration::from_secs(1_001), &CancellationToken::new()).await;
        assert!(reached);
        let slept = started.elapsed();
        assert!(slept >= Duration::from_secs(3), "held while the clock was behind: {slept:?}");
        assert!(slept <= Duration::from_secs(3) + REPLAN_EVERY, "woke within a second of the correction: {slept:?}");
        // A forward step needs no special case: the due time has passed, so it returns.
        assert!(
            sleep_until_on(|| Duration::from_secs(5_000), |_| Duration::from_secs(1_001), &CancellationToken::new())
                .await
        );
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

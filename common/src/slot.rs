//! When the next block is due, and whether to keep it: pure functions over the parent
//! block and the clock, so the policy is tested without Geth or sleeping.

use std::time::Duration;

/// The timing policy, from the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Seconds between block timestamps.
    pub block_time: u64,
    /// How long Geth builds before we take the block.
    pub build_time: Duration,
    /// Produce without waiting for the wall clock.
    pub back_to_back: bool,
}

/// The next block: its timestamp, and when to ask Geth to start building it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The block's timestamp, seconds since the Unix epoch.
    pub timestamp: u64,
    /// When to send forkchoiceUpdated with attributes, as time since the Unix epoch.
    pub build_at: Duration,
}

/// Plans the child of a block with timestamp `parent`, no earlier than `earliest` (raised
/// after a skipped empty block), given the wall clock `now` (time since the Unix epoch).
///
/// Wall-clock policy (default): the timestamp is the parent's plus the block time, or the
/// current second if we are late; building starts `build_time` before that second, so
/// getPayload is called when the second arrives and the block never becomes head before
/// its own timestamp. Back-to-back: the next free second, built at once.
pub fn next_slot(parent: u64, earliest: u64, now: Duration, schedule: &Schedule) -> Slot {
    if schedule.back_to_back {
        return Slot { timestamp: (parent + 1).max(earliest), build_at: now };
    }
    let timestamp = (parent + schedule.block_time).max(earliest).max(now.as_secs());
    let build_at = Duration::from_secs(timestamp).saturating_sub(schedule.build_time).max(now);
    Slot { timestamp, build_at }
}

/// Whether a built block is worth importing. Without `--skip-empty` every block is kept;
/// with it, an empty block only once `max_idle` has passed since this process last
/// produced a block (wall-clock time: the chain's own last timestamp may be ancient, as
/// genesis is).
pub fn keep_block(transactions: usize, idle: Duration, skip_empty: bool, max_idle: Duration) -> bool {
    !skip_empty || transactions > 0 || idle >= max_idle
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: Schedule = Schedule { block_time: 1, build_time: Duration::from_millis(500), back_to_back: false };

    fn at(secs: u64, millis: u64) -> Duration {
        Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn on_time_builds_before_the_second_and_finishes_at_it() {
        let slot = next_slot(100, 0, at(100, 200), &SCHEDULE);
        assert_eq!(slot, Slot { timestamp: 101, build_at: at(100, 500) });
    }

    #[test]
    fn late_takes_the_current_second_and_builds_at_once() {
        let slot = next_slot(100, 0, at(250, 700), &SCHEDULE);
        assert_eq!(slot, Slot { timestamp: 250, build_at: at(250, 700) });
    }

    #[test]
    fn timestamps_always_rise_and_follow_the_block_time() {
        let two = Schedule { block_time: 2, ..SCHEDULE };
        assert_eq!(next_slot(100, 0, at(100, 0), &two).timestamp, 102);
        assert_eq!(next_slot(100, 0, at(90, 0), &SCHEDULE).timestamp, 101, "clock behind the chain");
        assert_eq!(next_slot(100, 105, at(100, 0), &SCHEDULE).timestamp, 105, "after skipped slots");
    }

    #[test]
    fn never_ahead_of_the_clock_when_taken() {
        for millis in (0..3000).step_by(37) {
            let now = at(1_000, 0) + Duration::from_millis(millis);
            let slot = next_slot(1_000, 0, now, &SCHEDULE);
            let taken = slot.build_at + SCHEDULE.build_time;
            assert!(Duration::from_secs(slot.timestamp) <= taken, "now {now:?}: {slot:?}");
        }
    }

    #[test]
    fn back_to_back_ignores_the_clock() {
        let fast = Schedule { back_to_back: true, ..SCHEDULE };
        assert_eq!(next_slot(500, 0, at(100, 0), &fast), Slot { timestamp: 501, build_at: at(100, 0) });
    }

    #[test]
    fn empty_blocks_are_skipped_only_when_asked_and_not_for_too_long() {
        let (second, minute) = (Duration::from_secs(1), Duration::from_secs(60));
        assert!(keep_block(0, second, false, minute));
        assert!(!keep_block(0, second, true, minute));
        assert!(keep_block(3, second, true, minute));
        assert!(keep_block(0, minute, true, minute));
    }
}

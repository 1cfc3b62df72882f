//! When the next block is due, and whether to keep it: pure functions over the parent
//! block and the clock, so the policy is tested without Geth or sleeping; and the flags
//! that set the policy (Parts 3 and 4 take them from here).

use std::time::Duration;

use alloy_primitives::Address;
use anyhow::ensure;

/// How many missed slots a producer fills in when it falls behind the clock (a failover,
/// a Geth restart): up to this many, every second of the chain still gets its block; more,
/// and the chain skips to the current second instead of making a burst of old blocks.
pub const CATCH_UP_SLOTS: u64 = 10;

/// How long Geth builds a block whose slot has already passed: short, so a producer that
/// is behind fills in each missed second at the cost of this build and an import, and long
/// enough for Geth to put pending transactions in (what it misses goes in the next block).
pub const CATCH_UP_BUILD_TIME: Duration = Duration::from_millis(100);

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

/// How a long-running producer makes blocks: when, how long Geth may build, who is paid.
#[derive(Debug, Clone, clap::Args)]
pub struct BlockArgs {
    /// Seconds between blocks (whole seconds: block timestamps are seconds).
    #[arg(long, env = "BLOCK_TIME", default_value_t = 1)]
    pub block_time: u64,

    /// How long Geth may fill a block with pending transactions before we take it (ms);
    /// must leave room in the slot for newPayload and forkchoiceUpdated.
    #[arg(long, env = "BUILD_TIME_MS", default_value_t = 500)]
    pub build_time_ms: u64,

    /// Produce blocks back to back, without waiting for the wall clock (benchmarks only):
    /// timestamps still rise by one second per block, so chain time runs ahead of the clock.
    #[arg(long, env = "BACK_TO_BACK")]
    pub back_to_back: bool,

    /// Address that receives the priority fees.
    #[arg(long, env = "FEE_RECIPIENT", default_value_t = Address::ZERO)]
    pub fee_recipient: Address,
}

impl BlockArgs {
    /// Rejects values that parse but make no sense together.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.block_time >= 1, "--block-time must be at least 1 second (timestamps are whole seconds)");
        ensure!(
            self.build_time() < self.slot(),
            "--build-time-ms ({} ms) must be shorter than --block-time ({} s): the block has to be imported in the same slot",
            self.build_time_ms,
            self.block_time
        );
        Ok(())
    }

    /// The slot length.
    pub const fn slot(&self) -> Duration {
        Duration::from_secs(self.block_time)
    }

    /// The build deadline within a slot.
    pub const fn build_time(&self) -> Duration {
        Duration::from_millis(self.build_time_ms)
    }

    /// The timing policy for [`next_slot`].
    pub const fn schedule(&self) -> Schedule {
        Schedule { block_time: self.block_time, build_time: self.build_time(), back_to_back: self.back_to_back }
    }

    /// Says in the log, once, that `--back-to-back` lets chain time run ahead of the clock.
    pub fn warn_if_back_to_back(&self) {
        if self.back_to_back {
            tracing::warn!(
                "--back-to-back: blocks are produced without waiting for the clock; chain time will run ahead of the wall clock"
            );
        }
    }
}

/// The next block: its timestamp, and when and for how long Geth builds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The block's timestamp, seconds since the Unix epoch.
    pub timestamp: u64,
    /// When to send forkchoiceUpdated with attributes, as time since the Unix epoch.
    pub build_at: Duration,
    /// How long Geth may fill the block before we take it.
    pub build_time: Duration,
}

// ANCHOR: next_slot
/// Plans the child of a block with timestamp `parent`, no earlier than `earliest` (raised
/// after a skipped empty block), given the wall clock `now` (time since the Unix epoch).
///
/// Wall-clock policy (default): the timestamp is the parent's plus the block time.
/// Building starts `build_time` before that second, so getPayload is called when the
/// second arrives and the block never becomes head before its own timestamp. A producer
/// that is behind (its slot has passed) builds at once, for [`CATCH_UP_BUILD_TIME`], and
/// so fills in up to [`CATCH_UP_SLOTS`] missed slots; further behind, it takes the current
/// second. Timestamps always rise, and are never ahead of the clock when the block is
/// taken. Back-to-back: the next free second, built at once.
pub fn next_slot(parent: u64, earliest: u64, now: Duration, schedule: &Schedule) -> Slot {
    let due = (parent + schedule.block_time).max(earliest);
    if schedule.back_to_back {
        return Slot { timestamp: due, build_at: now, build_time: schedule.build_time };
    }
    let now_secs = now.as_secs();
    let timestamp = if now_secs > due + CATCH_UP_SLOTS * schedule.block_time { now_secs } else { due };
    let on_time = Duration::from_secs(timestamp).saturating_sub(schedule.build_time);
    if on_time >= now {
        Slot { timestamp, build_at: on_time, build_time: schedule.build_time }
    } else {
        // Late: the block is due already, or due before a full build could finish.
        let left = Duration::from_secs(timestamp).saturating_sub(now);
        let build_time = left.max(CATCH_UP_BUILD_TIME.min(schedule.build_time));
        Slot { timestamp, build_at: now, build_time }
    }
}
// ANCHOR_END: next_slot

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

    const BUILD: Duration = Duration::from_millis(500);
    const SCHEDULE: Schedule = Schedule { block_time: 1, build_time: BUILD, back_to_back: false };

    fn at(secs: u64, millis: u64) -> Duration {
        Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    #[test]
    fn on_time_builds_before_the_second_and_finishes_at_it() {
        let slot = next_slot(100, 0, at(100, 200), &SCHEDULE);
        assert_eq!(slot, Slot { timestamp: 101, build_at: at(100, 500), build_time: BUILD });
    }

    #[test]
    fn a_little_late_fills_the_missed_slots_with_short_builds() {
        // Two seconds after the parent's slot: its child is due already.
        let slot = next_slot(100, 0, at(102, 300), &SCHEDULE);
        assert_eq!(slot, Slot { timestamp: 101, build_at: at(102, 300), build_time: CATCH_UP_BUILD_TIME });
        // Later in the catch-up, the current second's block gets what is left of its build.
        let slot = next_slot(102, 0, at(102, 700), &SCHEDULE);
        assert_eq!(slot, Slot { timestamp: 103, build_at: at(102, 700), build_time: Duration::from_millis(300) });
    }

    #[test]
    fn far_behind_takes_the_current_second_and_builds_at_once() {
        let slot = next_slot(100, 0, at(250, 700), &SCHEDULE);
        assert_eq!(slot, Slot { timestamp: 250, build_at: at(250, 700), build_time: CATCH_UP_BUILD_TIME });
        let edge = next_slot(100, 0, at(101 + CATCH_UP_SLOTS, 900), &SCHEDULE);
        assert_eq!(edge.timestamp, 101, "exactly CATCH_UP_SLOTS behind is still filled in");
    }

    #[test]
    fn timestamps_always_rise_and_follow_the_block_time() {
        let two = Schedule { block_time: 2, ..SCHEDULE };
        assert_eq!(next_slot(100, 0, at(100, 0), &two).timestamp, 102);
        assert_eq!(next_slot(100, 0, at(90, 0), &SCHEDULE).timestamp, 101, "clock behind the chain");
        assert_eq!(next_slot(100, 105, at(100, 0), &SCHEDULE).timestamp, 105, "after skipped slots");
    }

    #[test]
    fn never_ahead_of_the_clock_when_taken_and_every_missed_slot_filled() {
        for millis in (0..3000).step_by(37) {
            let now = at(1_000, 0) + Duration::from_millis(millis);
            let slot = next_slot(1_000, 0, now, &SCHEDULE);
            assert!(Duration::from_secs(slot.timestamp) <= slot.build_at + slot.build_time, "now {now:?}: {slot:?}");
            assert_eq!(slot.timestamp, 1_001, "the next second, late or not: {slot:?}");
            assert!(slot.build_at >= now);
        }
    }

    #[test]
    fn back_to_back_ignores_the_clock() {
        let fast = Schedule { back_to_back: true, ..SCHEDULE };
        assert_eq!(
            next_slot(500, 0, at(100, 0), &fast),
            Slot { timestamp: 501, build_at: at(100, 0), build_time: BUILD }
        );
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

//! One module per scenario. Each starts the real components it needs, measures for the
//! requested time after a warm-up, repeats, and returns a serialisable result.

pub(crate) mod bft;
pub(crate) mod bft_growth;
pub(crate) mod block_rate;
pub(crate) mod engine_round;
pub(crate) mod failover;
pub(crate) mod growth;
pub(crate) mod ha_failover;
pub(crate) mod member_replay;
pub(crate) mod replicas;
pub(crate) mod retention;
pub(crate) mod throughput;
pub(crate) mod watch;

use std::time::Duration;

/// How long and how often each scenario measures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Measurement time per repeat.
    pub(crate) duration: Duration,
    /// Time before measuring starts, per repeat.
    pub(crate) warmup: Duration,
    /// How many times each measurement is repeated.
    pub(crate) repeats: usize,
    /// Seconds of Go CPU profile to keep of the Geths under measurement, where a scenario
    /// takes them (0: none).
    pub(crate) profile_secs: u64,
}

//! Where a production step's time went, for the `block produced` log line
//! (`engine_us`, `overhead_us`, `store_us`) that the engine-round benchmark reads.
//!
//! It only measures: the loop makes the same blocks without it. The Engine API time comes
//! from the client's own per-call histogram, so nothing in the loop is wrapped.

use std::time::{Duration, Instant};

use common::service::exporter::EngineMetrics;

/// Started when a step begins to build.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    started: Instant,
    engine_before: Duration,
    build_wait: Duration,
}

/// One step's time, split.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Waiting on Engine API calls.
    pub engine: Duration,
    /// Our own work: the step's time minus the Engine API calls and the wait for the
    /// build deadline (encoding, scheduling, and storing where it outlasts newPayload).
    pub overhead: Duration,
    /// Committing the block to the store. It runs beside newPayload, so it counts in
    /// `overhead` only for the part that outlasts newPayload.
    pub store: Duration,
}

impl Stopwatch {
    /// Starts timing a step.
    pub fn start(engine: &EngineMetrics) -> Self {
        Self { started: Instant::now(), engine_before: engine.time_in_calls(), build_wait: Duration::ZERO }
    }

    /// The step is about to wait until `deadline` for Geth to fill the block
    /// ([`round::take`](crate::round::take) waits): that time is not ours. Only recorded.
    pub fn not_ours_until(&mut self, deadline: Instant) {
        self.build_wait = deadline.saturating_duration_since(Instant::now());
    }

    /// The step is done; the store's commit took `store`.
    pub fn stop(self, engine: &EngineMetrics, store: Duration) -> Timing {
        let in_calls = engine.time_in_calls().saturating_sub(self.engine_before);
        let overhead = self.started.elapsed().saturating_sub(in_calls).saturating_sub(self.build_wait);
        Timing { engine: in_calls, overhead, store }
    }
}

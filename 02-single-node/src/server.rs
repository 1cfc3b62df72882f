//! What `/ready` and `/metrics` report for the sequencer (the server is
//! `common::server`).
//!
//! `/ready` is 200 once a block was produced and while Geth answers; 503 with the reason
//! otherwise.

use std::sync::atomic::{AtomicBool, Ordering};

use common::server::Endpoints;

use crate::metrics::Metrics;

/// What the endpoints report, shared with the sequencer.
#[derive(Debug, Default)]
pub struct Status {
    /// The metrics.
    pub metrics: Metrics,
    produced: AtomicBool,
    el_reachable: AtomicBool,
}

impl Status {
    /// Called after each block: we are producing.
    pub fn block_produced(&self) {
        self.produced.store(true, Ordering::Relaxed);
        self.el_reachable.store(true, Ordering::Relaxed);
    }

    /// Called when Geth stops or starts answering.
    pub fn set_el_reachable(&self, reachable: bool) {
        self.el_reachable.store(reachable, Ordering::Relaxed);
    }
}

impl Endpoints for Status {
    fn not_ready_reason(&self) -> Option<String> {
        if !self.el_reachable.load(Ordering::Relaxed) {
            Some("execution client unreachable".into())
        } else if !self.produced.load(Ordering::Relaxed) {
            Some("no block produced yet".into())
        } else {
            None
        }
    }

    fn metrics(&self) -> String {
        self.metrics.encode()
    }
}

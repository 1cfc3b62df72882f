//! What `/ready` and `/metrics` report for the sequencer (`common::service::http` serves
//! them).
//!
//! `/ready` is 200 while blocks are being produced (the last one within
//! [`Status::stale_after`]) and Geth answers; 503 with the reason otherwise.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::service::http::Endpoints;

use crate::metrics::Metrics;

/// What the endpoints report, shared with the sequencer.
#[derive(Debug)]
pub struct Status {
    /// The metrics.
    pub metrics: Metrics,
    /// No block for this long makes `/ready` 503: three slots, or with `--skip-empty` the
    /// longest idle time plus two slots.
    stale_after: Duration,
    last_block: Mutex<Option<Instant>>,
    el_reachable: AtomicBool,
}

impl Status {
    /// A sequencer that has produced nothing yet; `/ready` says not ready once no block
    /// came for `stale_after`.
    pub fn new(stale_after: Duration) -> Self {
        Self {
            metrics: Metrics::default(),
            stale_after,
            last_block: Mutex::new(None),
            el_reachable: AtomicBool::new(false),
        }
    }

    /// Our head is `head` (at start, and after each block).
    pub fn set_head(&self, head: common::Head) {
        self.metrics.head_number.set(i64::try_from(head.number).unwrap_or(i64::MAX));
        self.metrics.head_timestamp_seconds.set(i64::try_from(head.timestamp).unwrap_or(i64::MAX));
    }

    /// Called after each block: we are producing.
    pub fn block_produced(&self) {
        *self.last_block.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        self.el_reachable.store(true, Ordering::Relaxed);
    }

    /// Called when Geth stops or starts answering.
    pub fn set_el_reachable(&self, reachable: bool) {
        self.el_reachable.store(reachable, Ordering::Relaxed);
    }
}

impl Endpoints for Status {
    fn not_ready_reason(&self) -> Option<String> {
        let last_block = *self.last_block.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !self.el_reachable.load(Ordering::Relaxed) {
            Some("execution client unreachable".into())
        } else {
            match last_block {
                None => Some("no block produced yet".into()),
                Some(at) if at.elapsed() > self.stale_after => {
                    Some(format!("no block for {} s", at.elapsed().as_secs()))
                }
                Some(_) => None,
            }
        }
    }

    fn metrics(&self) -> String {
        self.metrics.encode()
    }
}

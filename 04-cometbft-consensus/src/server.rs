//! What `/ready`, `/metrics` and `/status` report for a validator's app (the server is
//! `common::service::http`).
//!
//! `/ready` is 200 while blocks are being committed (one within `--ready-max-age`) and Geth
//! answers; 503 with the reason otherwise. A stalled network makes every node unready.

use std::{
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use common::Head;
use common::service::http::Endpoints;
use serde_json::json;

use crate::metrics::Metrics;

/// Locks `mutex`, also after a thread panicked while holding it. Every value the app keeps
/// behind a mutex is replaced in one assignment, never left half-written, so what a
/// panicking thread left is still whole; refusing it would stop the app for nothing.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Default)]
struct State {
    height: i64,
    head: Option<Head>,
    last_commit: Option<Instant>,
    el_unreachable: bool,
}

/// What the endpoints report, shared with the app.
#[derive(Debug)]
pub struct Status {
    /// The metrics.
    pub metrics: Metrics,
    ready_max_age: Duration,
    state: Mutex<State>,
}

impl Status {
    /// A node that has committed nothing yet.
    pub fn new(ready_max_age: Duration) -> Self {
        Self { metrics: Metrics::default(), ready_max_age, state: Mutex::default() }
    }

    /// A block was committed.
    pub fn committed(&self, height: i64, head: Head, transactions: usize) {
        self.metrics.height.set(height);
        self.metrics.head_timestamp_seconds.set(i64::try_from(head.timestamp).unwrap_or(i64::MAX));
        self.metrics.block_transactions.observe(transactions as f64);
        let mut state = lock(&self.state);
        if let Some(last) = state.last_commit {
            self.metrics.block_interval_seconds.observe(last.elapsed().as_secs_f64());
        }
        *state = State { height, head: Some(head), last_commit: Some(Instant::now()), el_unreachable: false };
    }

    /// The stored head moved outside Commit: a block Geth calls INVALID taken out again, or
    /// a snapshot restored. (CometBFT heights and EL block numbers are the same here.)
    pub fn stored_head(&self, head: Option<Head>) {
        let height = head.map_or(0, |head| i64::try_from(head.number).unwrap_or(i64::MAX));
        self.metrics.height.set(height);
        let timestamp = head.map_or(0, |head| i64::try_from(head.timestamp).unwrap_or(i64::MAX));
        self.metrics.head_timestamp_seconds.set(timestamp);
        let mut state = lock(&self.state);
        state.height = height;
        state.head = head;
    }

    /// How long ago the last Commit ended, if one did since the app started.
    pub fn since_last_commit(&self) -> Option<Duration> {
        lock(&self.state).last_commit.map(|last| last.elapsed())
    }

    /// Geth stopped or started answering.
    pub fn set_el_reachable(&self, reachable: bool) {
        lock(&self.state).el_unreachable = !reachable;
    }
}

impl Endpoints for Status {
    fn not_ready_reason(&self) -> Option<String> {
        let state = lock(&self.state);
        match state.last_commit {
            _ if state.el_unreachable => Some("execution client unreachable".into()),
            None => Some("no block committed yet".into()),
            Some(at) if at.elapsed() > self.ready_max_age => {
                Some(format!("no block committed for {} s", at.elapsed().as_secs()))
            }
            Some(_) => None,
        }
    }

    fn metrics(&self) -> String {
        self.metrics.encode()
    }

    fn status(&self) -> Option<serde_json::Value> {
        let state = lock(&self.state);
        Some(json!({
            "height": state.height,
            "head": state.head.map(|h| json!({"number": h.number, "hash": h.hash, "timestamp": h.timestamp})),
            "last_commit_seconds_ago": state.last_commit.map(|t| t.elapsed().as_secs_f64()),
            "el_reachable": !state.el_unreachable,
        }))
    }
}

//! What `/ready`, `/metrics` and `/status` report for a node (the server is
//! `common::service::http`).
//!
//! `/ready` is 200 while the node's Geth follows the store within `--ready-max-lag` blocks
//! (a leader is always at the store's head); 503 with the reason otherwise: Geth or
//! PostgreSQL unreachable, a stored block that cannot be applied, or too far behind.

use std::sync::Mutex;

use common::Head;
use common::service::http::Endpoints;
use serde_json::json;
use tokio::{sync::watch, time::Instant};

use crate::{config::Mode, election::LeaseView, metrics::Metrics};

/// What the node is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Following the store (members always; candidates without the lease).
    Following,
    /// Holding the lease and producing.
    Leading,
}

/// The node's state as the endpoints see it.
#[derive(Debug, Default)]
struct State {
    leading: bool,
    /// While leading: the lease as the renewal sees it. `/status` says "leading" only
    /// while it is valid, so a leader stuck in a call to a hung Geth never reports leading
    /// beside its successor.
    lease: Option<watch::Receiver<LeaseView>>,
    term: u64,
    head: Option<Head>,
    store_head: Option<u64>,
    lag_blocks: u64,
    lag_seconds: f64,
    el_unreachable: bool,
    store_unreachable: bool,
    halted: Option<String>,
    /// Why this node last stopped leading.
    stepped_down: Option<String>,
}

/// What the endpoints report, shared with the node's loops.
#[derive(Debug)]
pub struct Status {
    /// The metrics.
    pub metrics: Metrics,
    instance_id: String,
    mode: Mode,
    ready_max_lag: u64,
    state: Mutex<State>,
}

impl Status {
    /// A node that has not attached to the store yet.
    pub fn new(instance_id: &str, mode: Mode, ready_max_lag: u64) -> Self {
        Self {
            metrics: Metrics::default(),
            instance_id: instance_id.to_owned(),
            mode,
            ready_max_lag,
            state: Mutex::default(),
        }
    }

    fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut state);
    }

    /// This node's Geth head moved.
    pub fn set_head(&self, head: Head) {
        self.metrics.head_number.set(gauge(head.number));
        self.metrics.head_timestamp_seconds.set(gauge(head.timestamp));
        self.update(|s| {
            s.head = Some(head);
            s.el_unreachable = false;
        });
    }

    /// The store's head and how far behind it we are.
    pub fn set_lag(&self, store_head: u64, lag_blocks: u64, lag_seconds: f64) {
        self.metrics.store_head_number.set(gauge(store_head));
        self.metrics.lag_blocks.set(gauge(lag_blocks));
        self.metrics.lag_seconds.set(lag_seconds);
        self.update(|s| {
            (s.store_head, s.lag_blocks, s.lag_seconds) = (Some(store_head), lag_blocks, lag_seconds);
            s.store_unreachable = false;
        });
    }

    /// Leading with `term`, or following. (`is_leader` is set at each scrape, from this
    /// and the lease.)
    pub fn set_role(&self, role: Role, term: u64) {
        self.metrics.term.set(gauge(term));
        self.update(|s| {
            (s.leading, s.term) = (role == Role::Leading, term);
            s.lease = None;
        });
    }

    /// The lease this node leads under, as its renewal publishes it.
    pub fn watch_lease(&self, lease: watch::Receiver<LeaseView>) {
        self.update(|s| s.lease = Some(lease));
    }

    /// This node stopped leading, for `reason`.
    pub fn set_stepped_down(&self, reason: &impl std::fmt::Display) {
        let reason = reason.to_string();
        self.update(|s| s.stepped_down = Some(reason));
    }

    /// Geth stopped or started answering.
    pub fn set_el_reachable(&self, reachable: bool) {
        self.update(|s| s.el_unreachable = !reachable);
    }

    /// PostgreSQL stopped or started answering.
    pub fn set_store_reachable(&self, reachable: bool) {
        self.update(|s| s.store_unreachable = !reachable);
    }

    /// A stored block cannot be applied (`Some(why)`), or the node moved past it (`None`).
    /// Returns true if the reason is new, so it is logged once.
    pub fn set_halted(&self, reason: Option<String>) -> bool {
        let mut changed = false;
        self.update(|s| {
            changed = s.halted != reason;
            s.halted = reason;
        });
        changed
    }
}

impl State {
    /// "leading" while this node leads under a valid lease; "stepping down" once the lease
    /// lapsed or was given up and the production loop has not noticed yet (it is waiting
    /// on Geth, say); "following" otherwise.
    fn role(&self) -> &'static str {
        match &self.lease {
            _ if !self.leading => "following",
            Some(lease) if !lease.borrow().is_valid(Instant::now()) => "stepping down",
            _ => "leading",
        }
    }
}

impl Endpoints for Status {
    fn not_ready_reason(&self) -> Option<String> {
        let s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(reason) = &s.halted {
            Some(format!("halted: {reason}"))
        } else if s.el_unreachable {
            Some("execution client unreachable".into())
        } else if s.store_unreachable {
            Some("block store unreachable".into())
        } else if s.head.is_none() || s.store_head.is_none() {
            Some("not following the store yet".into())
        } else if s.lag_blocks > self.ready_max_lag {
            Some(format!("{} blocks behind the store", s.lag_blocks))
        } else {
            None
        }
    }

    fn metrics(&self) -> String {
        let role = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).role();
        self.metrics.is_leader.set(i64::from(role == "leading"));
        self.metrics.encode()
    }

    fn status(&self) -> Option<serde_json::Value> {
        let s = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(json!({
            "instance_id": self.instance_id,
            "mode": match self.mode { Mode::Leader => "leader", Mode::Member => "member" },
            "role": s.role(),
            "term": s.term,
            "head": s.head.map(|h| json!({"number": h.number, "hash": h.hash})),
            "store_head": s.store_head,
            "lag_blocks": s.lag_blocks,
            "lag_seconds": s.lag_seconds,
            "halted": s.halted,
            "el_reachable": !s.el_unreachable,
            "store_reachable": !s.store_unreachable,
            "last_step_down": s.stepped_down,
        }))
    }
}

/// A height as a gauge value.
pub fn gauge(number: u64) -> i64 {
    i64::try_from(number).unwrap_or(i64::MAX)
}

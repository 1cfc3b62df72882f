//! What the soak saw, as its clients and its injector saw it: every transaction sent, where
//! to and when, and the receipt a client was shown; every node's head, sampled; every fault,
//! injected and healed. The checker ([`crate::check`]) reads nothing else, besides the final
//! chain.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch, by the soak's own (real) clock.
pub(crate) fn now() -> f64 {
    common::unix_time().as_secs_f64()
}

/// One transaction as its client saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Tx {
    /// Its hash.
    pub(crate) hash: B256,
    /// The sending account (index into the funded accounts) and its nonce.
    pub(crate) account: usize,
    pub(crate) nonce: u64,
    /// Every time it was sent: when, and to which node.
    pub(crate) sends: Vec<(f64, usize)>,
    /// The receipt a client was shown, if any.
    pub(crate) confirmed: Option<Seen>,
}

/// A receipt a client was shown.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Seen {
    /// When.
    pub(crate) at: f64,
    /// By which node.
    pub(crate) node: usize,
    /// The block it named.
    pub(crate) number: u64,
    pub(crate) block: B256,
}

/// One node's head, as a client asking for the latest block saw it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct Head {
    /// When it was asked.
    pub(crate) at: f64,
    pub(crate) node: usize,
    pub(crate) number: u64,
    pub(crate) hash: B256,
    /// The block's own timestamp.
    pub(crate) timestamp: u64,
}

/// One fault: what, on what, injected when, healed when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FaultEvent {
    /// Its kind, as the menu names it (`geth-kill`, `link-cut:postgres`, …).
    pub(crate) kind: String,
    /// What it hit (`node2`, `redis`, …).
    pub(crate) target: String,
    pub(crate) injected: f64,
    pub(crate) healed: Option<f64>,
}

/// Everything recorded in one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct History {
    /// `part3` or `part4`.
    pub(crate) part: String,
    pub(crate) seed: u64,
    /// Node names, by index.
    pub(crate) nodes: Vec<String>,
    /// When the load and the faults started, and when every fault was healed for good.
    pub(crate) started: f64,
    pub(crate) healed: f64,
    pub(crate) txs: Vec<Tx>,
    pub(crate) heads: Vec<Head>,
    pub(crate) faults: Vec<FaultEvent>,
    /// Processes that ended by themselves (or by a hand other than the soak's) and were
    /// started again: when, and which.
    pub(crate) exits: Vec<(f64, String)>,
}

/// The chain as it stands at the end, after every fault is healed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Final {
    /// Each node's Geth's block hashes, by height, from genesis to its head.
    pub(crate) chains: Vec<Vec<B256>>,
    /// Part 3's block log: `(number, hash)` per row, in order.
    pub(crate) log: Option<Vec<(u64, B256)>>,
    /// For each transaction a client saw confirmed: the block (number, hash) that holds it
    /// in the final chain of the first node, if any.
    pub(crate) included: HashMap<B256, (u64, B256)>,
}

/// The history, shared between the clients, the samplers and the injector.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorder(Arc<Mutex<History>>);

impl Recorder {
    pub(crate) fn new(history: History) -> Self {
        Self(Arc::new(Mutex::new(history)))
    }

    /// Runs `f` on the history.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut History) -> T) -> T {
        let mut history = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut history)
    }

    /// A copy of the history as it is now.
    pub(crate) fn snapshot(&self) -> History {
        self.with(|h| h.clone())
    }
}

//! Prometheus metrics, served at `/metrics`: OpenMetrics to a scraper that asks for it
//! (Prometheus does), Prometheus's older text format otherwise (`common::service::http`).

use std::sync::atomic::AtomicU64;

use common::service::exporter::{EngineMetrics, counter, gauge, latency, register, transactions};
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Every metric a node exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// 1 while this node holds the lease and produces, else 0.
    pub is_leader: Gauge,
    /// The term of this node's lease while it leads; the last one it held otherwise.
    pub term: Gauge,
    /// Height of this node's Geth head, as the node last set it.
    pub head_number: Gauge,
    /// Timestamp of that block, seconds since the Unix epoch.
    pub head_timestamp_seconds: Gauge,
    /// Height of the newest stored block, as last read.
    pub store_head_number: Gauge,
    /// Stored blocks this node's Geth does not have yet.
    pub lag_blocks: Gauge,
    /// How long the oldest stored block this node has not applied has been stored.
    pub lag_seconds: Gauge<f64, AtomicU64>,
    /// Blocks this node produced and stored as leader.
    pub blocks_produced: Counter,
    /// Stored blocks this node applied to its Geth as a follower.
    pub blocks_applied: Counter,
    /// Transactions per produced block.
    pub block_transactions: Histogram,
    /// From a block's commit in the store to its finalization on this node's Geth.
    pub apply_delay_seconds: Histogram,
    /// How long a leader's fenced write to the store takes.
    pub store_append_seconds: Histogram,
    /// Times this node became leader.
    pub promotions: Counter,
    /// Times this node stopped leading.
    pub step_downs: Counter,
    /// Engine API latency per method, and errors by kind.
    pub engine: EngineMetrics,
}

impl Default for Metrics {
    /// A fresh registry with every metric registered.
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cluster");
        let engine = EngineMetrics::register(&mut registry);
        let r = &mut registry;
        let is_leader = gauge(r, "is_leader", "1 while this node leads");
        let term = gauge(r, "term", "Term of this node's current or last lease");
        let head_number = gauge(r, "head_number", "Height of this node's Geth head");
        let head_timestamp_seconds =
            gauge(r, "head_timestamp_seconds", "Timestamp of this node's Geth head, Unix seconds");
        let store_head_number = gauge(r, "store_head_number", "Height of the newest stored block");
        let lag_blocks = gauge(r, "lag_blocks", "Stored blocks this node has not applied");
        let lag_seconds =
            register(r, "lag_seconds", "Age of the oldest stored block not applied here", Gauge::default());
        let blocks_produced = counter(r, "blocks_produced", "Blocks produced and stored as leader");
        let blocks_applied = counter(r, "blocks_applied", "Stored blocks applied to this node's Geth");
        let promotions = counter(r, "promotions", "Times this node became leader");
        let step_downs = counter(r, "step_downs", "Times this node stopped leading");
        let block_transactions = transactions(r, "block_transactions", "Transactions per produced block");
        let apply_delay_seconds =
            latency(r, "apply_delay_seconds", "From a block's commit in the store to its finalization here");
        let store_append_seconds = latency(r, "store_append_seconds", "Fenced store write latency");
        Self {
            registry,
            is_leader,
            term,
            head_number,
            head_timestamp_seconds,
            store_head_number,
            lag_blocks,
            lag_seconds,
            blocks_produced,
            blocks_applied,
            block_transactions,
            apply_delay_seconds,
            store_append_seconds,
            promotions,
            step_downs,
            engine,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        common::service::exporter::encode(&self.registry)
    }
}

//! Prometheus metrics, served at `/metrics`: OpenMetrics to a scraper that asks for it
//! (Prometheus does), Prometheus's older text format otherwise (`common::service::http`).

use common::service::exporter::{EngineMetrics, counter, gauge, transactions};
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Every metric the sequencer exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Height of the last block we finalized.
    pub head_number: Gauge,
    /// Timestamp of that block, seconds since the Unix epoch: how long since the last
    /// block, against the clock.
    pub head_timestamp_seconds: Gauge,
    /// Blocks produced by this process.
    pub blocks_produced: Counter,
    /// Transactions per produced block.
    pub block_transactions: Histogram,
    /// Stored blocks given to Geth again after it lost them.
    pub replayed_blocks: Counter,
    /// Engine API latency per method, and errors by kind (`invalid_payload` and
    /// `geth_ahead` are the sequencer's own findings).
    pub engine: EngineMetrics,
}

impl Default for Metrics {
    /// A fresh registry with every metric registered.
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sequencer");
        let engine = EngineMetrics::register(&mut registry);
        let r = &mut registry;
        let head_number = gauge(r, "head_number", "Height of the last finalized block");
        let head_timestamp_seconds =
            gauge(r, "head_timestamp_seconds", "Timestamp of the last finalized block, Unix seconds");
        let blocks_produced = counter(r, "blocks_produced", "Blocks produced by this process");
        let block_transactions = transactions(r, "block_transactions", "Transactions per produced block");
        let replayed_blocks = counter(r, "replayed_blocks", "Stored blocks replayed into Geth after it lost them");
        Self {
            registry,
            head_number,
            head_timestamp_seconds,
            blocks_produced,
            block_transactions,
            replayed_blocks,
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

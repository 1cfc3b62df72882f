//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.

use common::metrics::EngineMetrics;
use prometheus_client::{
    metrics::{
        counter::Counter,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
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
    /// Engine API latency per method, and errors by kind (`invalid_payload` and
    /// `geth_ahead` are the sequencer's own findings).
    pub engine: EngineMetrics,
    /// Stored blocks given to Geth again after it lost them.
    pub replayed_blocks: Counter,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sequencer");
        let head_number = Gauge::default();
        let head_timestamp_seconds = Gauge::default();
        let blocks_produced = Counter::default();
        let block_transactions = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        let replayed_blocks = Counter::default();
        registry.register("head_number", "Height of the last finalized block", head_number.clone());
        registry.register(
            "head_timestamp_seconds",
            "Timestamp of the last finalized block, Unix seconds",
            head_timestamp_seconds.clone(),
        );
        registry.register("blocks_produced", "Blocks produced by this process", blocks_produced.clone());
        registry.register("block_transactions", "Transactions per produced block", block_transactions.clone());
        let engine = EngineMetrics::register(&mut registry);
        registry.register(
            "replayed_blocks",
            "Stored blocks replayed into Geth after it lost them",
            replayed_blocks.clone(),
        );
        Self {
            registry,
            head_number,
            head_timestamp_seconds,
            blocks_produced,
            block_transactions,
            engine,
            replayed_blocks,
        }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        common::metrics::encode(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.

use std::time::Duration;

use common::EngineError;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// An Engine API method name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    /// For example `engine_newPayloadV4`.
    pub method: String,
}

/// What went wrong.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `transport`, `timeout`, `rpc`, … for Engine API calls; `invalid_payload` and
    /// `geth_ahead` for the sequencer's own findings.
    pub kind: String,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Every metric the sequencer exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Height of the last block we finalized.
    pub head_number: Gauge,
    /// Blocks produced by this process.
    pub blocks_produced: Counter,
    /// Transactions per produced block.
    pub block_transactions: Histogram,
    /// Engine API call latency per method.
    pub engine_latency: Family<MethodLabel, Histogram, fn() -> Histogram>,
    /// Errors by kind.
    pub errors: Family<KindLabel, Counter>,
    /// Stored blocks given to Geth again after it lost them.
    pub replayed_blocks: Counter,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sequencer");
        let head_number = Gauge::default();
        let blocks_produced = Counter::default();
        let block_transactions = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        let engine_latency =
            Family::<MethodLabel, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let errors = Family::<KindLabel, Counter>::default();
        let replayed_blocks = Counter::default();
        registry.register("head_number", "Height of the last finalized block", head_number.clone());
        registry.register("blocks_produced", "Blocks produced by this process", blocks_produced.clone());
        registry.register("block_transactions", "Transactions per produced block", block_transactions.clone());
        registry.register("engine_api_latency_seconds", "Engine API call latency", engine_latency.clone());
        registry.register("errors", "Errors by kind", errors.clone());
        registry.register(
            "replayed_blocks",
            "Stored blocks replayed into Geth after it lost them",
            replayed_blocks.clone(),
        );
        Self { registry, head_number, blocks_produced, block_transactions, engine_latency, errors, replayed_blocks }
    }

    /// Records one finished Engine API call.
    pub fn observe_call(&self, method: &'static str, elapsed: Duration, error: Option<&EngineError>) {
        self.engine_latency.get_or_create(&MethodLabel { method: method.to_owned() }).observe(elapsed.as_secs_f64());
        if let Some(error) = error {
            self.count(error.label());
        }
    }

    /// Counts one event of `kind`.
    pub fn count(&self, kind: &str) {
        self.errors.get_or_create(&KindLabel { kind: kind.to_owned() }).inc();
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

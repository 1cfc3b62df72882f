//! Prometheus metrics, served at `/metrics`: OpenMetrics to a scraper that asks for it
//! (Prometheus does), Prometheus's older text format otherwise (`common::service::http`).

use common::service::exporter::{EngineMetrics, counter, gauge, latency, transactions};
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Every metric the app exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The last committed height (CometBFT's, which is also the EL block number).
    pub height: Gauge,
    /// The EL timestamp of that block, seconds since the Unix epoch.
    pub head_timestamp_seconds: Gauge,
    /// Transactions per committed block.
    pub block_transactions: Histogram,
    /// Time between two commits, by this node's clock.
    pub block_interval_seconds: Histogram,
    /// Proposals this validator built.
    pub proposals_built: Counter,
    /// Proposals this validator accepted in ProcessProposal.
    pub proposals_accepted: Counter,
    /// Proposals this validator rejected in ProcessProposal.
    pub proposals_rejected: Counter,
    /// Rounds beyond the first, summed over committed blocks (a round change means a
    /// proposal failed or timed out).
    pub round_changes: Counter,
    /// Stored blocks given to Geth again after it lost them.
    pub replayed_blocks: Counter,
    /// Proposals made from a block built ahead (`--build-ahead`).
    pub ahead_used: Counter,
    /// Blocks built ahead and dropped: the rule gave another timestamp or parent.
    pub ahead_dropped: Counter,
    /// Engine API latency per method, and errors by kind.
    pub engine: EngineMetrics,
}

impl Default for Metrics {
    /// A fresh registry with every metric registered.
    fn default() -> Self {
        let mut registry = Registry::with_prefix("bft");
        let engine = EngineMetrics::register(&mut registry);
        let r = &mut registry;
        let height = gauge(r, "height", "Last committed height (= EL block number)");
        let head_timestamp_seconds =
            gauge(r, "head_timestamp_seconds", "EL timestamp of the last committed block, Unix seconds");
        let block_transactions = transactions(r, "block_transactions", "Transactions per committed block");
        let block_interval_seconds = latency(r, "block_interval_seconds", "Time between two commits");
        let proposals_built = counter(r, "proposals_built", "Proposals this validator built");
        let proposals_accepted = counter(r, "proposals_accepted", "Proposals accepted in ProcessProposal");
        let proposals_rejected = counter(r, "proposals_rejected", "Proposals rejected in ProcessProposal");
        let round_changes = counter(r, "round_changes", "Rounds beyond the first, over committed blocks");
        let replayed_blocks = counter(r, "replayed_blocks", "Stored blocks replayed into Geth after it lost them");
        let ahead_used = counter(r, "ahead_builds_used", "Proposals made from a block built ahead");
        let ahead_dropped = counter(r, "ahead_builds_dropped", "Blocks built ahead and dropped");
        Self {
            registry,
            height,
            head_timestamp_seconds,
            block_transactions,
            block_interval_seconds,
            proposals_built,
            proposals_accepted,
            proposals_rejected,
            round_changes,
            replayed_blocks,
            ahead_used,
            ahead_dropped,
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

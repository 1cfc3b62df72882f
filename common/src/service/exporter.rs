//! The metrics every service exports about its execution client, and the OpenMetrics text.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Metric, Registry},
};

use crate::error::EngineError;

/// An Engine API method name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    /// For example `engine_newPayloadV4`.
    pub method: String,
}

/// What went wrong: the service's own findings (`invalid_payload`, `geth_ahead`, …).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The finding.
    pub kind: String,
}

/// A failed Engine API call: the method and what went wrong.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallErrorLabel {
    /// For example `engine_newPayloadV4`.
    pub method: String,
    /// `transport`, `timeout`, `rpc`, … ([`EngineError::label`]).
    pub kind: String,
}

/// Latency buckets from 0.25 ms to about 8 s: an Engine API call on loopback takes
/// milliseconds, a newPayload of a full block can take seconds.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Engine API latency and failures per method, and the service's own findings by kind.
#[derive(Debug, Clone)]
pub struct EngineMetrics {
    /// Engine API call latency per method.
    pub latency: Family<MethodLabel, Histogram, fn() -> Histogram>,
    /// Failed Engine API calls per method and kind of failure.
    pub call_errors: Family<CallErrorLabel, Counter>,
    /// The service's own findings by kind.
    pub errors: Family<KindLabel, Counter>,
    /// Time spent waiting on Engine API calls since start, in nanoseconds: a producer
    /// subtracts it from a block's cycle to get its own overhead.
    call_nanos: Arc<AtomicU64>,
}

impl EngineMetrics {
    /// Registers `engine_api_latency_seconds`, `engine_api_errors` and `errors` in
    /// `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let latency = Family::<MethodLabel, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let call_errors = Family::<CallErrorLabel, Counter>::default();
        let errors = Family::<KindLabel, Counter>::default();
        registry.register("engine_api_latency_seconds", "Engine API call latency", latency.clone());
        registry.register("engine_api_errors", "Failed Engine API calls by method and kind", call_errors.clone());
        registry.register("errors", "The service's own findings by kind", errors.clone());
        Self { latency, call_errors, errors, call_nanos: Arc::default() }
    }

    /// Time spent waiting on Engine API calls since start.
    pub fn time_in_calls(&self) -> Duration {
        Duration::from_nanos(self.call_nanos.load(Ordering::Relaxed))
    }

    /// Records one finished Engine API call.
    pub fn observe_call(&self, method: &'static str, elapsed: Duration, error: Option<&EngineError>) {
        self.latency.get_or_create(&MethodLabel { method: method.to_owned() }).observe(elapsed.as_secs_f64());
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.call_nanos.fetch_add(nanos, Ordering::Relaxed);
        if let Some(error) = error {
            self.call_errors
                .get_or_create(&CallErrorLabel { method: method.to_owned(), kind: error.label().to_owned() })
                .inc();
        }
    }

    /// Counts one finding of `kind`.
    pub fn count(&self, kind: &str) {
        self.errors.get_or_create(&KindLabel { kind: kind.to_owned() }).inc();
    }
}

/// Registers `metric` in `registry` as `name` and returns it (counters get `_total`
/// appended).
pub fn register<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// A new counter, registered in `registry` as `name`.
pub fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    register(registry, name, help, Counter::default())
}

/// A new integer gauge, registered in `registry` as `name`.
pub fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    register(registry, name, help, Gauge::default())
}

/// A new latency histogram ([`latency_histogram`]), registered in `registry` as `name`.
pub fn latency(registry: &mut Registry, name: &str, help: &str) -> Histogram {
    register(registry, name, help, latency_histogram())
}

/// A new histogram of transactions per block (1 to 8,192 in powers of two), registered
/// in `registry` as `name`.
pub fn transactions(registry: &mut Registry, name: &str, help: &str) -> Histogram {
    register(registry, name, help, Histogram::new(exponential_buckets(1.0, 2.0, 14)))
}

/// The OpenMetrics text of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

// ANCHOR: text_format
/// The same metrics in Prometheus's older text format (0.0.4), for a client that does not
/// ask for OpenMetrics (`curl`, `promtool check metrics`). The two differ, for what we
/// export, in two places: OpenMetrics names a counter family without its `_total` suffix
/// in `# HELP` and `# TYPE`, and ends with `# EOF`.
pub fn to_text_format(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some(name) = line.strip_prefix("# TYPE ").and_then(|rest| rest.strip_suffix(" counter")) {
            counters.insert(name.to_owned());
        }
    }
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{prefix}{name}_total {tail}"))
        });
        text.push_str(renamed.as_deref().unwrap_or(line));
        text.push('\n');
    }
    text
}
// ANCHOR_END: text_format

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_get_their_total_suffix_and_eof_goes() {
        let mut registry = Registry::with_prefix("part");
        let blocks = counter(&mut registry, "blocks", "Blocks made");
        let head = gauge(&mut registry, "head_number", "Head");
        blocks.inc();
        head.set(7);
        let openmetrics = encode(&registry);
        assert!(openmetrics.contains("# TYPE part_blocks counter") && openmetrics.ends_with("# EOF\n"));
        let text = to_text_format(&openmetrics);
        assert!(
            text.contains(
                "# HELP part_blocks_total Blocks made.\n# TYPE part_blocks_total counter\npart_blocks_total 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("# TYPE part_head_number gauge\npart_head_number 7\n"), "{text}");
        assert!(!text.contains("# EOF"));
    }
}

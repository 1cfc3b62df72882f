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
    registry::Registry,
};

use crate::error::EngineError;

/// An Engine API method name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    /// For example `engine_newPayloadV4`.
    pub method: String,
}

/// What went wrong.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `transport`, `timeout`, `rpc`, … for Engine API calls ([`EngineError::label`]); the
    /// service's own findings (`invalid_payload`, …) beside them.
    pub kind: String,
}

/// Latency buckets from 0.25 ms to about 8 s: an Engine API call on loopback takes
/// milliseconds, a newPayload of a full block can take seconds.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Engine API latency per method and errors by kind.
#[derive(Debug, Clone)]
pub struct EngineMetrics {
    /// Engine API call latency per method.
    pub latency: Family<MethodLabel, Histogram, fn() -> Histogram>,
    /// Errors by kind.
    pub errors: Family<KindLabel, Counter>,
    /// Time spent waiting on Engine API calls since start, in nanoseconds: a producer
    /// subtracts it from a block's cycle to get its own overhead.
    call_nanos: Arc<AtomicU64>,
}

impl EngineMetrics {
    /// Registers `engine_api_latency_seconds` and `errors` in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let latency = Family::<MethodLabel, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let errors = Family::<KindLabel, Counter>::default();
        registry.register("engine_api_latency_seconds", "Engine API call latency", latency.clone());
        registry.register("errors", "Errors by kind", errors.clone());
        Self { latency, errors, call_nanos: Arc::default() }
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
            self.count(error.label());
        }
    }

    /// Counts one event of `kind`.
    pub fn count(&self, kind: &str) {
        self.errors.get_or_create(&KindLabel { kind: kind.to_owned() }).inc();
    }
}

/// A new counter, registered in `registry` as `name` (`_total` is appended).
pub fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    let counter = Counter::default();
    registry.register(name, help, counter.clone());
    counter
}

/// A new integer gauge, registered in `registry` as `name`.
pub fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let gauge = Gauge::default();
    registry.register(name, help, gauge.clone());
    gauge
}

/// The OpenMetrics text of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, registry);
    text
}

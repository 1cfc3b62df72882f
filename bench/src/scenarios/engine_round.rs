//! The Engine API round: how long each method takes on Geth, and what a consensus layer
//! adds on top. A bare driver in this process times each call; Part 2's sequencer, run
//! back to back with no build deadline, logs per block the time it waited on Geth and
//! the rest (its own overhead: storing the block, encoding, scheduling).

use std::time::Instant;

use anyhow::ensure;
use common::{
    harness::Geth,
    payload::{self, ExecutableBlock, finalized_at},
};
use serde::{Deserialize, Serialize};

use super::Plan;
use crate::{
    procs::{self, Memory, field, lines_with},
    stats::{Summary, percentile},
};

/// The methods of one round, in order.
pub(crate) const METHODS: [&str; 4] =
    ["forkchoiceUpdatedV3 + attributes", "getPayloadV5", "newPayloadV4", "forkchoiceUpdatedV3"];

/// Latency of one method.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MethodLatency {
    /// The method.
    pub(crate) method: String,
    /// Median latency, ms.
    pub(crate) p50_ms: Summary,
    /// 99th percentile, ms.
    pub(crate) p99_ms: Summary,
}

/// What the scenario found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EngineRound {
    /// Per method, from the bare driver.
    pub(crate) methods: Vec<MethodLatency>,
    /// Part 2's own time per block (not waiting on Geth), median, ms.
    pub(crate) overhead_p50_ms: Summary,
    /// Its 99th percentile, ms.
    pub(crate) overhead_p99_ms: Summary,
    /// Of the overhead, the store's commit, median and 99th percentile, ms.
    #[serde(default)]
    pub(crate) store_ms: Option<(Summary, Summary)>,
    /// A whole block's cycle in Part 2, median, ms.
    pub(crate) cycle_p50_ms: Summary,
    /// Median overhead as a share of the median cycle, %.
    pub(crate) overhead_share_pct: Summary,
    /// The last repeat's latencies per method, ms, for the plot.
    pub(crate) samples: Vec<(String, Vec<f64>)>,
    /// Peak memory of the sequencer.
    pub(crate) memory: Vec<Memory>,
}

/// Runs the scenario.
pub(crate) async fn run(plan: &Plan) -> anyhow::Result<EngineRound> {
    let mut latencies: Vec<Vec<Vec<f64>>> = Vec::new();
    let (mut overhead_p50, mut overhead_p99, mut cycle_p50, mut share) = (vec![], vec![], vec![], vec![]);
    let (mut store_p50, mut store_p99) = (vec![], vec![]);
    let mut memory = Vec::new();
    for repeat in 0..plan.repeats {
        tracing::info!(repeat, "engine round: bare driver");
        latencies.push(bare_driver(plan).await?);
        tracing::info!(repeat, "engine round: single-node back to back");
        let (overheads, stores, cycles, mem) = sequencer(plan).await?;
        store_p50.push(percentile(&stores, 50.0));
        store_p99.push(percentile(&stores, 99.0));
        let (o50, c50) = (percentile(&overheads, 50.0), percentile(&cycles, 50.0));
        overhead_p50.push(o50);
        overhead_p99.push(percentile(&overheads, 99.0));
        cycle_p50.push(c50);
        share.push(if c50 > 0.0 { 100.0 * o50 / c50 } else { 0.0 });
        memory.extend(mem);
    }
    let methods = METHODS
        .iter()
        .enumerate()
        .map(|(i, method)| MethodLatency {
            method: (*method).to_owned(),
            p50_ms: Summary::of(&latencies.iter().map(|r| percentile(&r[i], 50.0)).collect::<Vec<_>>()),
            p99_ms: Summary::of(&latencies.iter().map(|r| percentile(&r[i], 99.0)).collect::<Vec<_>>()),
        })
        .collect();
    let last = latencies.pop().unwrap_or_default();
    Ok(EngineRound {
        methods,
        overhead_p50_ms: Summary::of(&overhead_p50),
        overhead_p99_ms: Summary::of(&overhead_p99),
        store_ms: Some((Summary::of(&store_p50), Summary::of(&store_p99))),
        cycle_p50_ms: Summary::of(&cycle_p50),
        overhead_share_pct: Summary::of(&share),
        samples: METHODS.iter().map(|m| (*m).to_owned()).zip(last).collect(),
        memory,
    })
}

/// The four calls in a loop on a fresh Geth, each timed; returns ms per method.
async fn bare_driver(plan: &Plan) -> anyhow::Result<Vec<Vec<f64>>> {
    let geth = Geth::start().await?;
    let engine = geth.engine();
    let mut head = engine.head().await?;
    let mut times = vec![Vec::new(); METHODS.len()];
    let started = Instant::now();
    while started.elapsed() < plan.warmup + plan.duration {
        let measuring = started.elapsed() >= plan.warmup;
        let timestamp = head.timestamp + 1;
        let attributes = payload::attributes(head.hash, timestamp, Default::default());
        let t = Instant::now();
        let id = engine.forkchoice_updated_v3(finalized_at(head.hash), Some(attributes)).await?.payload_id;
        let fcu_attrs = t.elapsed();
        let t = Instant::now();
        let block = ExecutableBlock::from(engine.get_payload(id.expect("Geth builds"), timestamp).await?);
        let get = t.elapsed();
        let t = Instant::now();
        let status = engine.import(&block).await?;
        let new = t.elapsed();
        ensure!(status.is_valid(), "Geth refused its own block: {status}");
        let t = Instant::now();
        engine.forkchoice_updated_v3(finalized_at(block.hash()), None).await?;
        let fcu = t.elapsed();
        if measuring {
            for (i, d) in [fcu_attrs, get, new, fcu].into_iter().enumerate() {
                times[i].push(d.as_secs_f64() * 1e3);
            }
        }
        head = block.header();
    }
    Ok(times)
}

/// single-node back to back with no build deadline; its per-block overheads and cycles,
/// ms, from its log.
async fn sequencer(plan: &Plan) -> anyhow::Result<(Vec<f64>, Vec<f64>, Vec<f64>, Option<Memory>)> {
    let geth = Geth::start().await?;
    let dir = tempfile::tempdir()?;
    let mut node = procs::single_node(&geth, &["--back-to-back", "--build-time-ms", "0"], dir.path())?;
    tokio::time::sleep(plan.warmup).await;
    let skip = lines_with(&node.output(), "block produced").count();
    tokio::time::sleep(plan.duration).await;
    let memory = procs::memory_of(&node, "single-node, back to back");
    node.signal(libc::SIGTERM);
    node.wait_exit(std::time::Duration::from_secs(30)).await;
    let output = node.output();
    let (mut overheads, mut stores, mut cycles) = (Vec::new(), Vec::new(), Vec::new());
    for line in lines_with(&output, "block produced").skip(skip) {
        let (Some(engine), Some(overhead), Some(store)) =
            (field(line, "engine_us"), field(line, "overhead_us"), field(line, "store_us"))
        else {
            continue;
        };
        let (engine, overhead, store): (f64, f64, f64) = (engine.parse()?, overhead.parse()?, store.parse()?);
        overheads.push(overhead / 1e3);
        stores.push(store / 1e3);
        cycles.push((engine + overhead) / 1e3);
    }
    ensure!(!cycles.is_empty(), "single-node produced no block while measured:\n{}", node.log_tail(2000));
    Ok((overheads, stores, cycles, memory))
}

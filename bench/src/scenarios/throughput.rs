//! Transfer throughput at one-second blocks, saturated: Part 2's sequencer against Geth's
//! own simulated beacon (`--dev --dev.period 1`), on the same Geth build and genesis,
//! with the same load: transfers from 1,000 accounts, the pool kept full.

use common::harness::{Geth, GethOptions};
use serde::{Deserialize, Serialize};

use super::Plan;
use crate::{
    load::{self, Accounts, BenchGenesis, Load, Tracker},
    procs::{self, Memory},
    stats::Summary,
};

/// What the scenario found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Throughput {
    /// Part 2, transfers included a second.
    pub(crate) single_node_tps: Summary,
    /// Geth `--dev --dev.period 1`, transfers included a second.
    pub(crate) geth_dev_tps: Summary,
    /// single-node ÷ Geth, per repeat.
    pub(crate) ratio: Summary,
    /// The last repeat's blocks: (seconds, transactions) per block, per driver.
    pub(crate) series: Vec<(String, Vec<(f64, u64)>)>,
    /// Peak memory of the sequencer under this load.
    pub(crate) memory: Vec<Memory>,
}

/// Runs the scenario.
pub(crate) async fn run(plan: &Plan) -> anyhow::Result<Throughput> {
    let accounts = Accounts::new(load::ACCOUNTS)?;
    let genesis = load::bench_genesis(&accounts)?;
    let (mut ours, mut theirs, mut ratios, mut series, mut memory) = (vec![], vec![], vec![], vec![], vec![]);
    for repeat in 0..plan.repeats {
        tracing::info!(repeat, "throughput: single-node");
        let (tps, blocks, mem) = saturate(plan, &accounts, &genesis, false).await?;
        tracing::info!(repeat, tps, "throughput: geth --dev");
        let (dev_tps, dev_blocks, _) = saturate(plan, &accounts, &genesis, true).await?;
        tracing::info!(repeat, dev_tps, "throughput done");
        ours.push(tps);
        theirs.push(dev_tps);
        ratios.push(if dev_tps > 0.0 { tps / dev_tps } else { 0.0 });
        memory.extend(mem);
        series = vec![("single-node".to_owned(), blocks), ("geth --dev".to_owned(), dev_blocks)];
    }
    Ok(Throughput {
        single_node_tps: Summary::of(&ours),
        geth_dev_tps: Summary::of(&theirs),
        ratio: Summary::of(&ratios),
        series,
        memory,
    })
}

/// One saturated run: included transfers a second over the measured window, the blocks
/// seen, and the sequencer's peak memory (for the single-node run).
pub(crate) async fn saturate(
    plan: &Plan,
    accounts: &Accounts,
    genesis: &BenchGenesis,
    dev: bool,
) -> anyhow::Result<(f64, Vec<(f64, u64)>, Option<Memory>)> {
    let options =
        GethOptions { genesis: Some(genesis.path.clone()), dev_period: dev.then_some(1), ..Default::default() };
    let geth = Geth::start_with(options).await?;
    let dir = tempfile::tempdir()?;
    let node = if dev { None } else { Some(procs::single_node(&geth, &[], dir.path())?) };
    let seconds = (plan.warmup + plan.duration).as_secs_f64() + 10.0;
    let transfers = load::presign(accounts, 0, (seconds * 3_000.0 / accounts.len() as f64).ceil() as u64);
    let tracker = Tracker::start(&geth.http_url()).await?;
    let load = Load::start(vec![geth.http_url()], transfers, tracker.included.clone(), None);
    tokio::time::sleep(plan.warmup).await;
    let from = tracker.now();
    tokio::time::sleep(plan.duration).await;
    let to = tracker.now();
    let memory = node.as_ref().and_then(|n| procs::memory_of(n, "single-node, saturated 1 s blocks"));
    load.stop().await;
    let blocks = tracker.stop().await;
    let tps = load::throughput(&blocks, from, to);
    Ok((tps, blocks.iter().map(|b| (b.seen, b.txs)).collect(), memory))
}

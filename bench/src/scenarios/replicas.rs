//! Part 4 against this machine's own limit. Saturated blocks are made once, by a Geth
//! whose pool is kept full; then four fresh Geths execute them at once, block after block
//! (newPayload to all four, then forkchoiceUpdated to all four, as four validators that
//! agree on every block must). That is the most four replicas of the chain can execute on
//! this machine, with no consensus, no gossip and no pool checks; Part 4's four validators
//! are measured against it. One Geth alone on the same blocks shows what sharing the cores
//! four ways costs. And beside them, in the same repeat, Part 4's four validators at the
//! project's defaults, saturated, as the BFT scenario runs them.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::ensure;
use common::{
    harness::{Geth, GethOptions},
    payload::{self, ExecutableBlock, finalized_at},
};
use serde::{Deserialize, Serialize};

use super::{Plan, bft};
use crate::{
    load::{self, Accounts, Load, Tracker},
    procs,
    stats::Summary,
};

/// Replicas executing at once, as Part 4's network has validators.
pub(crate) const REPLICAS: usize = 4;

/// Saturated blocks made for each repeat.
const BLOCKS: usize = 40;

/// What the scenario found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Replicas {
    /// Geths executing the blocks at once.
    pub(crate) replicas: usize,
    /// Blocks executed per repeat.
    pub(crate) blocks: usize,
    /// Transfers per block, on average.
    pub(crate) txs_per_block: f64,
    /// Gas used per block ÷ its gas limit, on average.
    pub(crate) gas_share: f64,
    /// Transfers executed a second by `replicas` Geths at once (each executes every one).
    pub(crate) tps: Summary,
    /// Transfers executed a second by one Geth alone.
    pub(crate) one_tps: Summary,
    /// Transfers included a second by four validators at the project's defaults,
    /// saturated, measured in the same repeats.
    pub(crate) validators_tps: Summary,
    /// `validators_tps` ÷ `tps`, per repeat.
    pub(crate) ratio: Summary,
    /// CPU the four Geths spent per transfer, all four together, ms: executing the
    /// blocks alone, and in the validators' network (pool, gossip, building, executing).
    pub(crate) exec_cpu_ms: Summary,
    /// See `exec_cpu_ms`.
    pub(crate) network_cpu_ms: Summary,
    /// The validators' transfers a second in each 10 s of each repeat's window, in order.
    #[serde(default)]
    pub(crate) segments: Vec<Vec<f64>>,
}

/// Runs the scenario: per repeat, fresh blocks, then the four Geths and the one.
pub(crate) async fn run(plan: &Plan) -> anyhow::Result<Replicas> {
    let accounts = Accounts::new(load::ACCOUNTS)?;
    let genesis = load::bench_genesis(&accounts)?;
    let options = GethOptions { genesis: Some(genesis.path.clone()), ..Default::default() };
    let (mut tps, mut one_tps, mut validators, mut ratio) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut exec_cpu, mut network_cpu, mut segments) = (Vec::new(), Vec::new(), Vec::new());
    let setting = &bft::SETTINGS[bft::DEFAULTS];
    let (mut txs_per_block, mut gas_share) = (0.0, 0.0);
    for repeat in 0..plan.repeats {
        tracing::info!(repeat, "replicas: making saturated blocks");
        let chain = saturated_blocks(&accounts, &options).await?;
        let txs = chain.iter().map(ExecutableBlock::transaction_count).sum::<usize>() as f64;
        txs_per_block = txs / chain.len() as f64;
        gas_share = chain
            .iter()
            .map(|b| {
                let header = &b.execution_payload.payload_inner.payload_inner;
                header.gas_used as f64 / header.gas_limit as f64
            })
            .sum::<f64>()
            / chain.len() as f64;
        let chain = Arc::new(chain);
        let (four, cpu) = execute(&chain, REPLICAS, &options).await?;
        let (one, _) = execute(&chain, 1, &options).await?;
        tracing::info!(repeat, "replicas: four validators, saturated");
        let measured =
            bft::one_repeat(plan, &accounts, &genesis.path, setting, &setting.timeouts(), None, bft::Down::None)
                .await?;
        let network = measured.tps;
        segments.push(measured.segments);
        // The Geths' share of all cores over the window, as CPU seconds a second.
        let cores = std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64);
        let geths = measured.cpu.iter().find(|(group, _)| group == "Geth").map_or(0.0, |(_, share)| *share);
        network_cpu.push(geths * cores / network * 1e3);
        exec_cpu.push(cpu / txs * 1e3);
        tracing::info!(repeat, txs_per_block, four = txs / four, one = txs / one, network, "replicas done");
        tps.push(txs / four);
        one_tps.push(txs / one);
        validators.push(network);
        ratio.push(network * four / txs);
    }
    Ok(Replicas {
        replicas: REPLICAS,
        blocks: BLOCKS,
        txs_per_block,
        gas_share,
        tps: Summary::of(&tps),
        one_tps: Summary::of(&one_tps),
        validators_tps: Summary::of(&validators),
        ratio: Summary::of(&ratio),
        exec_cpu_ms: Summary::of(&exec_cpu),
        network_cpu_ms: Summary::of(&network_cpu),
        segments,
    })
}

/// [`BLOCKS`] blocks as full as Geth makes them: a Geth whose pool the load keeps full
/// builds each for 500 ms, a second apart (the load refills the pool in between), driven
/// by the bare Engine API loop.
async fn saturated_blocks(accounts: &Accounts, options: &GethOptions) -> anyhow::Result<Vec<ExecutableBlock>> {
    let geth = Geth::start_with(options.clone()).await?;
    let tracker = Tracker::start(&geth.http_url()).await?;
    let per_account = (BLOCKS as u64 * 3_000).div_ceil(accounts.len() as u64) + 1;
    let load =
        Load::start(vec![geth.http_url()], load::presign(accounts, 0, per_account), tracker.included.clone(), None);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let engine = geth.engine();
    let mut head = engine.head().await?;
    let mut chain = Vec::new();
    while chain.len() < BLOCKS {
        let timestamp = head.timestamp + 1;
        let attributes = payload::attributes(head.hash, timestamp, Default::default());
        let id = engine.forkchoice_updated_v3(finalized_at(head.hash), Some(attributes)).await?.payload_id;
        let Some(id) = id else { anyhow::bail!("Geth started no build") };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let block = ExecutableBlock::from(engine.get_payload(id, timestamp).await?);
        let status = engine.import(&block).await?;
        ensure!(status.is_valid(), "Geth refused its own block: {status}");
        engine.forkchoice_updated_v3(finalized_at(block.hash()), None).await?;
        head = block.header();
        chain.push(block);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    load.stop().await;
    tracker.stop().await;
    Ok(chain)
}

/// Seconds that `replicas` fresh Geths take to execute `chain` at once, and the CPU
/// seconds they spent together: each gets every block (newPayload, then
/// forkchoiceUpdated) in its own task, and none goes on to the next block before all are
/// done with this one, as validators in lockstep do.
async fn execute(
    chain: &Arc<Vec<ExecutableBlock>>,
    replicas: usize,
    options: &GethOptions,
) -> anyhow::Result<(f64, f64)> {
    let mut geths = Vec::new();
    for _ in 0..replicas {
        geths.push(procs::fresh_geth(options.clone()).await?);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(replicas));
    let spent = || geths.iter().filter_map(Geth::pid).filter_map(procs::cpu_seconds).sum::<f64>();
    let (started, cpu) = (Instant::now(), spent());
    let mut tasks = tokio::task::JoinSet::new();
    for geth in &geths {
        let (engine, chain, barrier) = (geth.engine(), chain.clone(), barrier.clone());
        tasks.spawn(async move {
            for block in chain.iter() {
                let status = engine.import(block).await?;
                ensure!(status.is_valid(), "a replica refused block {}: {status}", block.number());
                engine.forkchoice_updated_v3(finalized_at(block.hash()), None).await?;
                barrier.wait().await;
            }
            anyhow::Ok(())
        });
    }
    // A replica that fails leaves the others waiting at the barrier: the deadline ends it.
    tokio::time::timeout(Duration::from_secs(600), async {
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        anyhow::Ok(())
    })
    .await
    .map_err(|_| anyhow::anyhow!("the replicas did not execute {} blocks within 10 minutes", chain.len()))??;
    Ok((started.elapsed().as_secs_f64(), spent() - cpu))
}

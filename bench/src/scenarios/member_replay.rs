//! Part 3's members: how fast one catches up on a stored chain, against a bare
//! newPayload + forkchoiceUpdated loop feeding the same blocks to a fresh Geth (the limit:
//! Geth's own execution speed), and how far behind one follows in steady state.

use std::time::{Duration, Instant};

use anyhow::Context;
use common::{
    harness::{Geth, GethOptions, Postgres, Redis, Service},
    payload::{ExecutableBlock, finalized_at},
};
use member_nodes::block_log::Store;
use serde::{Deserialize, Serialize};

use super::Plan;
use crate::{
    load::{self, Accounts, BenchGenesis, Load, Tracker},
    procs::{self, Memory, field, lines_with},
    stats::{Summary, percentile},
};

/// What the scenario found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MemberReplay {
    /// Blocks replayed per repeat.
    pub(crate) blocks: u64,
    /// Transactions per replayed block, on average.
    pub(crate) txs_per_block: f64,
    /// A member catching up, blocks a second.
    pub(crate) member_bps: Summary,
    /// The bare loop, blocks a second.
    pub(crate) bare_bps: Summary,
    /// member ÷ bare, per repeat.
    pub(crate) ratio: Summary,
    /// Steady state: store commit to the member's head, median, ms.
    pub(crate) lag_p50_ms: Summary,
    /// Its 99th percentile, ms.
    pub(crate) lag_p99_ms: Summary,
    /// Peak memory of the leader and the member.
    pub(crate) memory: Vec<Memory>,
}

/// Runs the scenario, `blocks` blocks per replay.
pub(crate) async fn run(plan: &Plan, blocks: u64) -> anyhow::Result<MemberReplay> {
    let accounts = Accounts::new(load::ACCOUNTS)?;
    let genesis = load::bench_genesis(&accounts)?;
    let (mut member, mut bare, mut ratio, mut p50, mut p99, mut memory) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut txs_per_block = 0.0;
    for repeat in 0..plan.repeats {
        tracing::info!(repeat, "member replay");
        let run = one_repeat(plan, &accounts, &genesis, blocks).await?;
        tracing::info!(repeat, member = run.member_bps, bare = run.bare_bps, "member replay done");
        member.push(run.member_bps);
        bare.push(run.bare_bps);
        ratio.push(if run.bare_bps > 0.0 { run.member_bps / run.bare_bps } else { 0.0 });
        p50.push(percentile(&run.lags_ms, 50.0));
        p99.push(percentile(&run.lags_ms, 99.0));
        txs_per_block = run.txs_per_block;
        memory.extend(run.memory);
    }
    Ok(MemberReplay {
        blocks,
        txs_per_block,
        member_bps: Summary::of(&member),
        bare_bps: Summary::of(&bare),
        ratio: Summary::of(&ratio),
        lag_p50_ms: Summary::of(&p50),
        lag_p99_ms: Summary::of(&p99),
        memory,
    })
}

struct Repeat {
    member_bps: f64,
    bare_bps: f64,
    txs_per_block: f64,
    lags_ms: Vec<f64>,
    memory: Vec<Memory>,
}

pub(crate) fn node_env(
    geth: &Geth,
    genesis: &BenchGenesis,
    redis: &Redis,
    postgres: &Postgres,
    id: &str,
    mode: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("INSTANCE_ID", id.to_owned()),
        ("MODE", mode.to_owned()),
        ("ETH_CLIENT_URL", geth.auth_url()),
        ("JWT_SECRET", geth.jwt_path().display().to_string()),
        ("GENESIS", genesis.path.display().to_string()),
        ("REDIS_ADDR", redis.addr()),
        ("POSTGRES_URL", postgres.url()),
        ("HEALTH_ADDR", format!("127.0.0.1:{}", common::harness::free_port().unwrap_or(0))),
    ]
}

async fn one_repeat(plan: &Plan, accounts: &Accounts, genesis: &BenchGenesis, blocks: u64) -> anyhow::Result<Repeat> {
    let (redis, postgres) = (Redis::start().await?, Postgres::start().await?);
    let dir = tempfile::tempdir()?;
    let options = GethOptions { genesis: Some(genesis.path.clone()), ..Default::default() };
    let mut memory = Vec::new();

    // A leader fills the store, back to back, with a flood of transfers (signed first:
    // signing takes longer than the leader needs for hundreds of empty blocks).
    let transfers = load::presign(accounts, 0, (blocks * 300 / accounts.len() as u64).max(1));
    let leader_geth = Geth::start_with(options.clone()).await?;
    let tracker = Tracker::start(&leader_geth.http_url()).await?;
    let env = node_env(&leader_geth, genesis, &redis, &postgres, "leader", "leader");
    let fast = ["--back-to-back", "--build-time-ms", "50"];
    let mut leader = procs::spawn("member-nodes", "leader", &fast, &env, dir.path())?;
    let load = Load::start(vec![leader_geth.http_url()], transfers, tracker.included.clone(), None);
    let store = Store::connect(&postgres.url(), Duration::from_secs(2)).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while store.head().await?.is_none_or(|h| h.number < blocks) {
        anyhow::ensure!(Instant::now() < deadline, "the leader did not store {blocks} blocks in 10 minutes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    load.stop().await;
    tracker.stop().await;
    memory.extend(procs::memory_of(&leader, "member-nodes leader, back to back, flooded"));
    stop(&mut leader).await;
    let height = store.head().await?.context("a head")?.number;
    let chain = stored_blocks(&store, height).await?;
    let txs_per_block = chain.iter().map(|b| b.transaction_count()).sum::<usize>() as f64 / chain.len() as f64;

    // A fresh member catches up on all of it, timed from its start (so its own start-up
    // counts against it) to its Geth reaching the stored head.
    let member_geth = procs::fresh_geth(options.clone()).await?;
    let env = node_env(&member_geth, genesis, &redis, &postgres, "member", "member");
    let started = Instant::now();
    let mut member = procs::spawn("member-nodes", "member", &[], &env, dir.path())?;
    wait_for_head(&member_geth, height, Duration::from_secs(600)).await?;
    let member_bps = height as f64 / started.elapsed().as_secs_f64();

    // The bare loop: the same blocks, to another fresh Geth.
    let bare_bps = bare_loop(options, &chain).await?.bps();

    // Steady state: the leader back at one-second blocks, the member following.
    let env = node_env(&leader_geth, genesis, &redis, &postgres, "leader", "leader");
    let mut leader = procs::spawn("member-nodes", "leader2", &[], &env, dir.path())?;
    tokio::time::sleep(plan.warmup).await;
    let skip = lines_with(&member.output(), "applied stored block").count();
    tokio::time::sleep(plan.duration).await;
    let lags_ms: Vec<f64> = lines_with(&member.output(), "applied stored block")
        .skip(skip)
        .filter_map(|line| field(line, "delay_us")?.parse::<f64>().ok())
        .map(|us| us / 1e3)
        .collect();
    anyhow::ensure!(!lags_ms.is_empty(), "the member applied nothing in steady state:\n{}", member.log_tail(2000));
    memory.extend(procs::memory_of(&member, "member-nodes member, catching up then following"));
    stop(&mut leader).await;
    stop(&mut member).await;
    Ok(Repeat { member_bps, bare_bps, txs_per_block, lags_ms, memory })
}

/// A catch-up timed in two parts: until the catching-up Geth's head first moved (the end
/// of the first batch, with whatever the catching-up process does at its start), and from
/// there to the last block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CatchUp {
    /// Blocks caught up on.
    pub(crate) blocks: u64,
    /// The head when it first moved, and seconds until then.
    pub(crate) first_head: u64,
    pub(crate) first_s: f64,
    /// Seconds for the whole catch-up.
    pub(crate) total_s: f64,
}

impl CatchUp {
    /// Blocks a second over the whole catch-up.
    pub(crate) fn bps(&self) -> f64 {
        self.blocks as f64 / self.total_s
    }

    /// Blocks a second after the head first moved: the catch-up's own pace. `None` if the
    /// first move was already to the last block (a chain of one batch).
    pub(crate) fn after_first_bps(&self) -> Option<f64> {
        let (blocks, secs) = (self.blocks.saturating_sub(self.first_head), self.total_s - self.first_s);
        (blocks > 0 && secs > 0.0).then(|| blocks as f64 / secs)
    }
}

/// The bare loop: `chain` to a fresh Geth, straight from memory, with the fewest calls a
/// catching-up node can make: a newPayload per block, and a forkchoiceUpdated per batch,
/// as the member moves its head.
pub(crate) async fn bare_loop(options: GethOptions, chain: &[ExecutableBlock]) -> anyhow::Result<CatchUp> {
    let bare_geth = procs::fresh_geth(options).await?;
    let engine = bare_geth.engine();
    let started = Instant::now();
    let mut first = None;
    for batch in chain.chunks(member_nodes::follower::BATCH as usize) {
        for block in batch {
            let status = engine.import(block).await?;
            anyhow::ensure!(status.is_valid(), "Geth refused stored block {}: {status}", block.number());
        }
        if let Some(last) = batch.last() {
            engine.forkchoice_updated_v3(finalized_at(last.hash()), None).await?;
            first.get_or_insert((last.number(), started.elapsed().as_secs_f64()));
        }
    }
    let (first_head, first_s) = first.unwrap_or_default();
    Ok(CatchUp { blocks: chain.len() as u64, first_head, first_s, total_s: started.elapsed().as_secs_f64() })
}

/// Every stored block up to `height`, decoded and checked.
async fn stored_blocks(store: &Store, height: u64) -> anyhow::Result<Vec<ExecutableBlock>> {
    let mut chain = Vec::new();
    let mut after = 0;
    while after < height {
        let rows = store.blocks_after(after, 256, member_nodes::follower::BATCH_BYTES).await?;
        anyhow::ensure!(!rows.is_empty(), "the store ends at {after}, before {height}");
        for row in rows.iter().take_while(|r| r.number <= height) {
            chain.push(row.block()?);
            after = row.number;
        }
    }
    Ok(chain)
}

/// Waits until a Geth's head reaches `height`, for at most `within`.
/// Returns the head it reached (the end of a batch, for a node that moves its head a batch
/// at a time).
pub(crate) async fn wait_for_head(geth: &Geth, height: u64, within: Duration) -> anyhow::Result<u64> {
    let engine = geth.engine();
    let deadline = Instant::now() + within;
    loop {
        let head = engine.head().await?.number;
        if head >= height {
            return Ok(head);
        }
        anyhow::ensure!(Instant::now() < deadline, "Geth did not reach block {height} within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Stops a process the way an operator does (SIGTERM), waiting up to 30 s for it to exit.
pub(crate) async fn stop(service: &mut Service) {
    service.signal(libc::SIGTERM);
    service.wait_exit(Duration::from_secs(30)).await;
}

//! Part 3's members: how fast one catches up on a stored chain, against a bare
//! newPayload + forkchoiceUpdated loop feeding the same blocks to a fresh Geth (the limit:
//! Geth's own execution speed), and how far behind one follows in steady state. Every
//! block carries the same number of transfers, so runs can be compared.

use std::time::{Duration, Instant};

use anyhow::Context;
use common::{
    BlockTag, Head,
    harness::{Geth, GethOptions, Postgres, Redis, Service},
    payload::{self, ExecutableBlock, finalized_at},
};
use member_nodes::block_log::Store;
use serde::{Deserialize, Serialize};

use super::Plan;
use crate::{
    load::{self, Accounts, BenchGenesis, Load, Tracker, Transfer},
    procs::{self, Memory, field, lines_with},
    stats::{Summary, percentile},
};

/// Transfers in every block of the replayed chain by default (`--replay-txs`), and a second
/// in the steady state (at one-second blocks, as many a block): a busy but not full chain.
pub(crate) const TXS_PER_BLOCK: usize = 100;

/// Transfers a block can hold: the genesis gas limit, 60 M, over a transfer's 21,000 gas.
const MAX_TXS_PER_BLOCK: usize = 2_857;

/// What the scenario found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MemberReplay {
    /// Blocks replayed per repeat.
    pub(crate) blocks: u64,
    /// Transfers in each replayed block (an average, in runs before blocks were made with
    /// a fixed number).
    pub(crate) txs_per_block: f64,
    /// A member catching up, blocks a second.
    pub(crate) member_bps: Summary,
    /// The bare loop, blocks a second.
    pub(crate) bare_bps: Summary,
    /// member ÷ bare, per repeat.
    pub(crate) ratio: Summary,
    /// Steady state: the block's write to the store to the member's head, median, ms.
    pub(crate) lag_p50_ms: Summary,
    /// Its 99th percentile, ms.
    pub(crate) lag_p99_ms: Summary,
    /// The lag's first part, median, ms: from the block's write to the store until
    /// PostgreSQL read it for the member (the notification and the query, by the database's
    /// clock). The rest is decoding and checking the block, and its Geth's newPayload and
    /// forkchoiceUpdated. Absent from runs before it was logged.
    #[serde(default)]
    pub(crate) read_p50_ms: Option<Summary>,
    /// The member's newPayload and forkchoiceUpdated in steady state, mean ms per call
    /// (its own `/metrics`). Absent from runs before they were read.
    #[serde(default)]
    pub(crate) new_payload_ms: Option<Summary>,
    /// See `new_payload_ms`.
    #[serde(default)]
    pub(crate) forkchoice_ms: Option<Summary>,
    /// The leader's newPayload in the same window, mean ms per call: its own Geth executing
    /// the same blocks, just before it stores each (the member's Geth executes it after).
    /// Absent from runs before it was read.
    #[serde(default)]
    pub(crate) leader_new_payload_ms: Option<Summary>,
    /// Peak memory of the leader and the member.
    pub(crate) memory: Vec<Memory>,
}

/// Runs the scenario, `blocks` blocks of `txs` transfers per replay.
pub(crate) async fn run(plan: &Plan, blocks: u64, txs: usize) -> anyhow::Result<MemberReplay> {
    anyhow::ensure!(
        (1..=MAX_TXS_PER_BLOCK).contains(&txs),
        "--replay-txs must be from 1 to {MAX_TXS_PER_BLOCK}, what a block's gas holds"
    );
    let accounts = Accounts::new(load::ACCOUNTS)?;
    let genesis = load::bench_genesis(&accounts)?;
    let (mut member, mut bare, mut ratio, mut p50, mut p99, mut read, mut memory) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut new_payload, mut forkchoice, mut leader_new_payload) = (vec![], vec![], vec![]);
    for repeat in 0..plan.repeats {
        tracing::info!(repeat, "member replay");
        let run = one_repeat(plan, &accounts, &genesis, blocks, txs).await?;
        tracing::info!(repeat, member = run.member_bps, bare = run.bare_bps, "member replay done");
        member.push(run.member_bps);
        bare.push(run.bare_bps);
        ratio.push(if run.bare_bps > 0.0 { run.member_bps / run.bare_bps } else { 0.0 });
        p50.push(percentile(&run.lags_ms, 50.0));
        p99.push(percentile(&run.lags_ms, 99.0));
        read.push(percentile(&run.reads_ms, 50.0));
        new_payload.push(run.calls_ms[0]);
        forkchoice.push(run.calls_ms[1]);
        leader_new_payload.push(run.leader_new_payload_ms);
        memory.extend(run.memory);
    }
    Ok(MemberReplay {
        blocks,
        txs_per_block: txs as f64,
        member_bps: Summary::of(&member),
        bare_bps: Summary::of(&bare),
        ratio: Summary::of(&ratio),
        lag_p50_ms: Summary::of(&p50),
        lag_p99_ms: Summary::of(&p99),
        read_p50_ms: Some(Summary::of(&read)),
        new_payload_ms: Some(Summary::of(&new_payload)),
        forkchoice_ms: Some(Summary::of(&forkchoice)),
        leader_new_payload_ms: Some(Summary::of(&leader_new_payload)),
        memory,
    })
}

struct Repeat {
    member_bps: f64,
    bare_bps: f64,
    lags_ms: Vec<f64>,
    reads_ms: Vec<f64>,
    /// The member's mean ms per call in steady state, in [`CALLS`]' order.
    calls_ms: [f64; 2],
    /// The leader's mean ms per newPayload, in the same window.
    leader_new_payload_ms: f64,
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

async fn one_repeat(
    plan: &Plan,
    accounts: &Accounts,
    genesis: &BenchGenesis,
    blocks: u64,
    txs: usize,
) -> anyhow::Result<Repeat> {
    let (redis, postgres) = (Redis::start().await?, Postgres::start().await?);
    let dir = tempfile::tempdir()?;
    let options = GethOptions { genesis: Some(genesis.path.clone()), ..Default::default() };
    let mut memory = Vec::new();

    // The chain: `blocks` blocks of `txs` transfers each, then the steady state's
    // load at the same number a second (signed first: signing takes longer than the blocks).
    let steady_secs = (plan.warmup + plan.duration).as_secs() + 60;
    let per_account = ((blocks + steady_secs) * txs as u64).div_ceil(accounts.len() as u64);
    let transfers = load::presign(accounts, 0, per_account);
    let (in_blocks, steady) = transfers.split_at(usize::try_from(blocks)? * txs);
    let leader_geth = Geth::start_with(options.clone()).await?;
    let store = Store::connect(&postgres.url(), Duration::from_secs(2)).await?;
    let chain = fixed_blocks(&leader_geth, &store, in_blocks, txs).await?;
    let height = chain.len() as u64;

    // A fresh member catches up on all of it, timed from its start (so its own start-up
    // counts against it) to its Geth reaching the stored head.
    let member_geth = procs::fresh_geth(options.clone()).await?;
    let env = node_env(&member_geth, genesis, &redis, &postgres, "member", "member");
    let member_addr = health_addr(&env)?;
    let started = Instant::now();
    let mut member = procs::spawn("member-nodes", "member", &[], &env, dir.path())?;
    wait_for_head(&member_geth, height, Duration::from_secs(600)).await?;
    let member_bps = height as f64 / started.elapsed().as_secs_f64();

    // The bare loop: the same blocks, to another fresh Geth.
    let bare_bps = bare_loop(options, &chain).await?.bps();

    // Steady state: a leader at one-second blocks under the same load a second, the member
    // following.
    let tracker = Tracker::start(&leader_geth.http_url()).await?;
    let rate = Some(txs as f64);
    let load = Load::start(vec![leader_geth.http_url()], steady.to_vec(), tracker.included.clone(), rate);
    let env = node_env(&leader_geth, genesis, &redis, &postgres, "leader", "leader");
    let leader_addr = health_addr(&env)?;
    let mut leader = procs::spawn("member-nodes", "leader", &[], &env, dir.path())?;
    tokio::time::sleep(plan.warmup).await;
    let skip = lines_with(&member.output(), "applied stored block").count();
    let (member_before, leader_before) = (engine_calls(&member_addr).await?, engine_calls(&leader_addr).await?);
    tokio::time::sleep(plan.duration).await;
    let (member_after, leader_after) = (engine_calls(&member_addr).await?, engine_calls(&leader_addr).await?);
    let calls_ms = mean_ms("member", member_before, member_after)?;
    let leader_new_payload_ms = mean_ms("leader", leader_before, leader_after)?[0];
    let output = member.output();
    let steady = || lines_with(&output, "applied stored block").skip(skip);
    let ms = |line: &str, name: &str| field(line, name)?.parse::<f64>().ok().map(|us| us / 1e3);
    let lags_ms: Vec<f64> = steady().filter_map(|line| ms(line, "delay_us")).collect();
    let reads_ms: Vec<f64> = steady().filter_map(|line| ms(line, "read_us")).collect();
    anyhow::ensure!(
        !lags_ms.is_empty() && reads_ms.len() == lags_ms.len(),
        "the member applied nothing in steady state, or logged it without its timings:\n{}",
        member.log_tail(2000)
    );
    load.stop().await;
    tracker.stop().await;
    let label = format!("member-nodes leader, 1 s blocks, {txs} transfers a second");
    memory.extend(procs::memory_of(&leader, &label));
    memory.extend(procs::memory_of(&member, "member-nodes member, catching up then following"));
    stop(&mut leader).await;
    stop(&mut member).await;
    Ok(Repeat { member_bps, bare_bps, lags_ms, reads_ms, calls_ms, leader_new_payload_ms, memory })
}

/// Makes the chain a member replays, every block with exactly `txs` of `transfers`, and
/// stores it as a leader does (`append`, under a fence of the bench's own), so every
/// repeat and every run replays the same load. Blocks are made on `geth` by the bare
/// Engine API loop: before each, its transfers are sent and the loop waits
/// until Geth's pool holds them all; then Geth builds for 100 ms, and 100 ms more for each
/// thousand transfers.
async fn fixed_blocks(
    geth: &Geth,
    store: &Store,
    transfers: &[Transfer],
    txs: usize,
) -> anyhow::Result<Vec<ExecutableBlock>> {
    let engine = geth.engine();
    let block0 = engine.block(BlockTag::Number(0)).await?.context("Geth has no block 0")?;
    store.init(engine.el_chain().await?, Head::from(&block0)).await?;
    anyhow::ensure!(store.claim(1, "bench").await?, "a fresh store refused the bench's fence");
    let mut head = Head::from(&engine.head().await?);
    let mut chain = Vec::new();
    let build_time = Duration::from_millis(100 + txs as u64 / 10);
    for content in transfers.chunks_exact(txs) {
        // The pool drops the last block's transfers a moment after the block became head:
        // wait for that, or they would be counted as this block's.
        wait_for_pending(geth, |pending| pending == 0).await?;
        load::send_all(&geth.http_url(), content).await;
        wait_for_pending(geth, |pending| pending >= txs as u64).await?;
        let timestamp = head.timestamp + 1;
        let attributes = payload::attributes(head.hash, timestamp, Default::default());
        let id = engine.forkchoice_updated_v3(finalized_at(head.hash), Some(attributes)).await?.payload_id;
        let Some(id) = id else { anyhow::bail!("Geth started no build") };
        tokio::time::sleep(build_time).await;
        let block = ExecutableBlock::from(engine.get_payload(id, timestamp).await?);
        anyhow::ensure!(
            block.transaction_count() == txs,
            "block {} holds {} transfers where {txs} were pending",
            block.number(),
            block.transaction_count()
        );
        let status = engine.import(&block).await?;
        anyhow::ensure!(status.is_valid(), "Geth refused its own block: {status}");
        engine.forkchoice_updated_v3(finalized_at(block.hash()), None).await?;
        store
            .append(&block, 1, "bench")
            .await
            .map_err(|e| anyhow::anyhow!("cannot store block {}: {e}", block.number()))?;
        head = block.head();
        chain.push(block);
    }
    Ok(chain)
}

/// The Engine API calls whose steady-state time the scenario reads from the member and
/// the leader.
const CALLS: [&str; 2] = ["engine_newPayloadV4", "engine_forkchoiceUpdatedV3"];

/// The address a node started with `env` ([`node_env`]) serves `/metrics` on.
fn health_addr(env: &[(&'static str, String)]) -> anyhow::Result<String> {
    let addr = env.iter().find(|(name, _)| *name == "HEALTH_ADDR").map(|(_, addr)| addr.clone());
    addr.context("the node's environment has no HEALTH_ADDR")
}

/// A node's total seconds in each of [`CALLS`] and how many it made, from one read of its
/// `/metrics` at `addr`.
async fn engine_calls(addr: &str) -> anyhow::Result<[(f64, f64); 2]> {
    let page = procs::metrics(addr).await.with_context(|| format!("cannot read the node's /metrics at {addr}"))?;
    let mut totals = [(0.0, 0.0); 2];
    for (total, method) in totals.iter_mut().zip(CALLS) {
        let read = |part: &str| {
            let name = format!("cluster_engine_api_latency_seconds_{part}{{method=\"{method}\"}}");
            procs::sample(&page, &name).with_context(|| format!("no {name} at {addr}"))
        };
        *total = (read("sum")?, read("count")?);
    }
    Ok(totals)
}

/// The mean ms per call of each of [`CALLS`] between two reads of `who`'s totals.
fn mean_ms(who: &str, before: [(f64, f64); 2], after: [(f64, f64); 2]) -> anyhow::Result<[f64; 2]> {
    let mut ms = [0.0; 2];
    for (i, ms) in ms.iter_mut().enumerate() {
        let ((sum0, count0), (sum1, count1)) = (before[i], after[i]);
        anyhow::ensure!(count1 > count0, "the {who} made no {} call in steady state", CALLS[i]);
        *ms = (sum1 - sum0) / (count1 - count0) * 1e3;
    }
    Ok(ms)
}

/// Waits, for at most 30 s, until the number of transactions in Geth's pool ready to go
/// into a block passes `until`.
async fn wait_for_pending(geth: &Geth, until: impl Fn(u64) -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status: serde_json::Value =
            geth.http().call("txpool_status", serde_json::json!([]), Duration::from_secs(5)).await?;
        let hex = status["pending"].as_str().context("txpool_status without pending")?;
        let pending = u64::from_str_radix(hex.trim_start_matches("0x"), 16)?;
        if until(pending) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "Geth's pool still held {pending} ready transfers after 30 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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

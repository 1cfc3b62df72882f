//! A chain that grows: what each block costs on disk in every store, and whether a
//! restart or a new member gets slower as the chain gets longer.
//!
//! One chain is made back to back by Part 2's sequencer under a steady stream of
//! transfers. At each length asked for, the sequencer is stopped and everything is measured
//! on that chain: its store's size and Geth's; the same blocks written to Part 3's
//! PostgreSQL log (with the leader's own `append`) and its size; a new Part 3 member from an
//! empty Geth to in step, beside the bare newPayload loop on the same blocks; and the
//! sequencer started again, timed to its first new block, and its log read for where that
//! time went. Then the chain goes on. Every process's log is kept in
//! `target/bench-logs/growth/`.

use std::{
    path::Path,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, anyhow, ensure};
use common::{
    BlockTag, Head,
    harness::{Geth, GethOptions, Postgres, Redis},
    payload::ExecutableBlock,
};
use member_nodes::block_log::Store as Log;
use serde::{Deserialize, Serialize};
use single_node::store::Store;

use super::member_replay::{CatchUp, bare_loop, node_env, stop, wait_for_head};
use crate::{
    load::{self, Accounts, Load, Tracker},
    procs,
    stats::Summary,
};

/// Transfers a second sent while the chain is made: a handful in every block at the
/// sequencer's back-to-back pace, far from full blocks (which would make a long chain take
/// hours to build).
pub(crate) const RATE: f64 = 300.0;

/// Transfers sent but not yet in a block, at most. Geth hands over the block it has when
/// the 20 ms build time is up, and its first block with transactions comes only once it has
/// gone through its whole pool: a pool of thousands (the load's usual bound) takes longer
/// than that, every block comes out empty, and the pool never drains. A few hundred are
/// built in time.
pub(crate) const MAX_PENDING: u64 = 200;

/// Transfers signed per block of the longest chain: more than [`RATE`] needs at the pace
/// blocks are made here (about 22 a second at 50,000 blocks), so the stream does not run
/// dry before the end; the run stops if it does.
pub(crate) const SIGNED_PER_BLOCK: u64 = 20;

/// How the sequencer makes the chain: back to back, Geth building for 20 ms, its store
/// keeping every block (the scenario measures what each block costs and reads the whole
/// chain back; the default window of 10,000 would bound the store).
const SEQUENCER_ARGS: [&str; 5] = ["--back-to-back", "--build-time-ms", "20", "--retain-blocks", "0"];

/// Restarts of the sequencer timed at each length.
pub(crate) const RESTARTS: usize = 5;

/// What the scenario found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Growth {
    /// Transfers per block, on average, over the whole chain.
    pub(crate) txs_per_block: f64,
    /// One point per length measured, shortest first.
    pub(crate) points: Vec<Point>,
}

/// Everything measured at one chain length.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Point {
    /// Chain length, blocks.
    pub(crate) blocks: u64,
    /// Part 2's store file, bytes.
    pub(crate) store_bytes: u64,
    /// Part 3's log: the `blocks` table with its indexes and out-of-line (TOAST) data, bytes.
    pub(crate) log_bytes: u64,
    /// Geth's datadir (an archive node, as every devnet here runs one), bytes.
    pub(crate) geth_bytes: u64,
    /// Part 2 stopped with SIGTERM and started again: seconds from its start to its first
    /// new block, over [`RESTARTS`] restarts.
    pub(crate) restart_s: Summary,
    /// Where a restart's time went, from the restarted sequencer's log (absent from runs
    /// before it was recorded).
    #[serde(default)]
    pub(crate) restart_phases: Option<RestartPhases>,
    /// Peak RSS of the sequencer that made the blocks since the last length, MiB.
    pub(crate) sequencer_mib: f64,
    /// A new Part 3 member, from an empty Geth to in step: blocks a second, timed from its
    /// process start.
    pub(crate) member_bps: f64,
    /// That member's peak RSS, MiB.
    pub(crate) member_mib: f64,
    /// The bare newPayload loop on the same blocks, to another empty Geth: blocks a second.
    pub(crate) bare_bps: f64,
    /// Each catch-up in two parts (absent from runs before it was recorded, and from a chain
    /// of one batch, where there is no "after"): seconds until
    /// the catching-up Geth's head first moved (the member's start and its first batch), and
    /// blocks a second from there on.
    #[serde(default)]
    pub(crate) after_first: Option<AfterFirst>,
}

/// The member's and the bare loop's catch-ups split at the Geth's head's first move (the end
/// of the first batch of 64 blocks).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct AfterFirst {
    pub(crate) member_first_s: f64,
    pub(crate) member_bps: f64,
    pub(crate) bare_first_s: f64,
    pub(crate) bare_bps: f64,
}

/// A restart in three parts, each over [`RESTARTS`] restarts, seconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RestartPhases {
    /// From the start to the log line "starting from our stored head": the process
    /// starting, Geth answering, the store opened and its head read.
    pub(crate) to_head_s: Summary,
    /// From there to the first block's log line, less that block's Engine API calls:
    /// bringing Geth to the stored head again (its head read, a forkchoiceUpdated), the
    /// 20 ms Geth is given to build, and the sequencer's own work in the block's step.
    pub(crate) between_s: Summary,
    /// The first block's Engine API calls (`engine_us` in its log line): Geth's time
    /// answering forkchoiceUpdated with attributes, getPayload and newPayload (back to
    /// back, the next build's forkchoiceUpdated makes the block head; in runs before
    /// 2026-12-07 a forkchoiceUpdated of its own did, and was counted here).
    pub(crate) engine_s: Summary,
}

/// One restart's parts, from the log of a sequencer spawned at `spawned` (Unix seconds):
/// to its stored head, the rest before its first block's log line, and that block's
/// Engine API calls.
fn restart_phases(log: &str, spawned: f64) -> anyhow::Result<[f64; 3]> {
    let at = |message: &'static str| {
        let line = procs::lines_with(log, message).next().with_context(|| format!("no '{message}' in the log"))?;
        let time = procs::line_time(line).with_context(|| format!("no timestamp on '{line}'"))?;
        Ok::<_, anyhow::Error>((line, time))
    };
    let (_, head_at) = at("starting from our stored head")?;
    let (block, block_at) = at("block produced")?;
    let engine_us: f64 = procs::field(block, "engine_us").context("no engine_us in the first block's line")?.parse()?;
    let engine = engine_us / 1e6;
    Ok([head_at - spawned, block_at - head_at - engine, engine])
}

/// Seconds since the Unix epoch, now.
fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Runs the scenario, measuring at each of `lengths` (blocks).
pub(crate) async fn run(lengths: &[u64]) -> anyhow::Result<Growth> {
    let mut lengths = lengths.to_vec();
    lengths.sort_unstable();
    lengths.dedup();
    let longest = *lengths.last().context("--lengths names no chain length")?;
    ensure!(lengths[0] > 0, "a chain length must be at least one block");

    let accounts = Accounts::new(load::ACCOUNTS)?;
    let genesis = load::bench_genesis(&accounts)?;
    let options = GethOptions { genesis: Some(genesis.path.clone()), ..Default::default() };
    let per_account = (longest * SIGNED_PER_BLOCK).div_ceil(accounts.len() as u64);
    tracing::info!(transfers = per_account * accounts.len() as u64, "signing");
    let transfers = load::presign(&accounts, 0, per_account);

    let (redis, postgres) = (Redis::start().await?, Postgres::start().await?);
    let dir = tempfile::tempdir()?;
    let store_path = dir.path().join("state/sequencer.redb");
    let geth = Geth::start_with(options.clone()).await?;
    let engine = geth.engine();

    // Part 3's log, on the same chain: the leader's own calls, under a fence of its own.
    let log = Log::connect(&postgres.url(), Duration::from_secs(2)).await?;
    let block0 = engine.block(BlockTag::Number(0)).await?.context("Geth has no block 0")?;
    log.init(engine.el_chain().await?, Head::from(&block0)).await?;
    ensure!(log.claim(1, "bench").await?, "a fresh log refused the bench's fence");
    let mut logged = 0_u64;

    let tracker = Tracker::start(&geth.http_url()).await?;
    let mut node = procs::single_node_as("sequencer-0", &geth, &SEQUENCER_ARGS, dir.path())?;
    let mut sent = 0_usize;
    let mut points = Vec::new();
    for &length in &lengths {
        let rest = transfers[sent..].to_vec();
        let load = Load::start_within(vec![geth.http_url()], rest, tracker.included.clone(), Some(RATE), MAX_PENDING);
        tracing::info!(length, "making the chain");
        let made = engine.head().await?.number;
        let deadline = Instant::now() + Duration::from_secs(length.saturating_sub(made) + 600);
        while engine.head().await?.number < length {
            ensure!(node.exited().is_none(), "the sequencer exited:\n{}", node.log_tail(2000));
            ensure!(Instant::now() < deadline, "the sequencer did not reach block {length} in time");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sent += usize::try_from(load.stop().await)?;
        ensure!(sent < transfers.len(), "the signed transfers ran out before block {length}: sign more a block");
        let sequencer_mib = procs::memory_of(&node, "").map_or(0.0, |m| m.peak_mib);
        stop(&mut node).await;

        let store = Store::open(&store_path)?;
        let head = store.head()?.context("the sequencer's store has no head")?;
        let store_bytes = std::fs::metadata(&store_path)?.len();
        let geth_bytes = dir_bytes(&geth.datadir());
        let chain = (1..=head.number)
            .map(|n| store.block(n)?.with_context(|| format!("the sequencer's store lacks block {n}")))
            .collect::<anyhow::Result<Vec<ExecutableBlock>>>()?;
        drop(store);
        for block in chain.iter().skip(usize::try_from(logged)?) {
            log.append(block, 1, "bench").await.map_err(|e| anyhow!("cannot log block {}: {e}", block.number()))?;
        }
        logged = head.number;
        let log_bytes: u64 = postgres.psql("SELECT pg_total_relation_size('blocks')")?.trim().parse()?;

        tracing::info!(blocks = head.number, "a new member catches up");
        let member_geth = procs::fresh_geth(options.clone()).await?;
        let label = format!("member-{}", head.number);
        let env = node_env(&member_geth, &genesis, &redis, &postgres, &label, "member");
        let started = Instant::now();
        let mut member = procs::spawn("member-nodes", &label, &[], &env, dir.path())?;
        let first_head = wait_for_head(&member_geth, 1, Duration::from_secs(600)).await?;
        let first_s = started.elapsed().as_secs_f64();
        wait_for_head(&member_geth, head.number, Duration::from_secs(head.number / 10 + 600)).await?;
        let caught_up = CatchUp { blocks: head.number, first_head, first_s, total_s: started.elapsed().as_secs_f64() };
        let member_mib = procs::memory_of(&member, "").map_or(0.0, |m| m.peak_mib);
        stop(&mut member).await;
        drop(member_geth);
        let bare = bare_loop(options.clone(), &chain).await?;
        drop(chain);
        let after_first = caught_up.after_first_bps().zip(bare.after_first_bps()).map(|(member_bps, bare_bps)| {
            AfterFirst { member_first_s: caught_up.first_s, member_bps, bare_first_s: bare.first_s, bare_bps }
        });

        tracing::info!(blocks = head.number, "the sequencer is restarted");
        let mut restarts_s = Vec::new();
        let mut phases: [Vec<f64>; 3] = Default::default();
        for restart in 0..RESTARTS {
            if restart > 0 {
                stop(&mut node).await;
            }
            let from = engine.head().await?.number;
            let (started, spawned) = (Instant::now(), unix_now());
            let label = format!("sequencer-{}-{restart}", head.number);
            node = procs::single_node_as(&label, &geth, &SEQUENCER_ARGS, dir.path())?;
            while engine.head().await?.number <= from {
                ensure!(node.exited().is_none(), "the restarted sequencer exited:\n{}", node.log_tail(2000));
                ensure!(started.elapsed() < Duration::from_secs(120), "no new block 120 s after a restart");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            restarts_s.push(started.elapsed().as_secs_f64());
            // Back to back, the first block's line is written just before the next build's
            // forkchoiceUpdated moves Geth's head to it.
            let log = wait_for_line(node.log_path(), "block produced").await?;
            let parts = restart_phases(&log, spawned).with_context(|| format!("the log of {label}"))?;
            for (phase, value) in phases.iter_mut().zip(parts) {
                phase.push(value);
            }
        }
        let restart_s = Summary::of(&restarts_s);
        let [to_head, between, engine_calls] = phases.map(|p| Summary::of(&p));
        let restart_phases = Some(RestartPhases { to_head_s: to_head, between_s: between, engine_s: engine_calls });
        let point = Point {
            blocks: head.number,
            store_bytes,
            log_bytes,
            geth_bytes,
            restart_s,
            restart_phases,
            sequencer_mib,
            member_bps: caught_up.bps(),
            member_mib,
            bare_bps: bare.bps(),
            after_first,
        };
        tracing::info!(?point, "measured");
        points.push(point);
        procs::keep_logs(dir.path(), "growth")?;
    }
    stop(&mut node).await;
    procs::keep_logs(dir.path(), "growth")?;
    let seen = tracker.stop().await;
    let txs_per_block = seen.iter().map(|b| b.txs).sum::<u64>() as f64 / seen.len().max(1) as f64;
    Ok(Growth { txs_per_block, points })
}

/// The text of the log at `path` once it holds `message`, within 10 s.
async fn wait_for_line(path: &Path, message: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if log.contains(message) {
            return Ok(log);
        }
        ensure!(Instant::now() < deadline, "no '{message}' in {} within 10 s", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Bytes in the files under `dir` (a file that goes while it is walked, as a running
/// Geth's compaction does, counts as gone).
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_bytes(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_is_split_by_the_sequencers_log_lines() {
        let log = "2026-12-04T10:00:00.010000Z  INFO single_node: serving /health, /ready and /metrics addr=127.0.0.1:1\n\
                   2026-12-04T10:00:00.030000Z  INFO single_node: starting from our stored head number=9 hash=0x1\n\
                   2026-12-04T10:00:00.070000Z  INFO single_node::sequencer: block produced number=10 hash=0x2 txs=0 engine_us=25000 overhead_us=90 store_us=300\n\
                   2026-12-04T10:00:00.900000Z  INFO single_node::sequencer: block produced number=11 hash=0x3 txs=0 engine_us=99000 overhead_us=90 store_us=300\n";
        let start = procs::line_time("2026-12-04T10:00:00.000000Z").unwrap();
        let [to_head, between, engine] = restart_phases(log, start).unwrap();
        assert!((to_head - 0.030).abs() < 1e-6, "{to_head}");
        assert!((between - 0.015).abs() < 1e-6, "{between}");
        assert!((engine - 0.025).abs() < 1e-9, "{engine}");
        assert!(restart_phases("2026-12-04T10:00:00.030000Z  INFO x: starting from our stored head\n", start).is_err());
    }
}

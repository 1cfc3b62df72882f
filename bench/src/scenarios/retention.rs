//! Storage that stays bounded: Part 2's store and Part 3's log, each kept to a window with
//! `--retain-blocks`, sampled while a chain grows to many times that window.
//!
//! Part 2's sequencer, then a Part 3 leader (alone: followers do not write the log), each
//! on a Geth of its own, make blocks back to back under the growth scenario's stream of
//! transfers. Every [`SAMPLE_EVERY`] blocks the store's file and the log's table (with its
//! indexes and out-of-line data) are measured where they are, while they are written.

use std::time::{Duration, Instant};

use anyhow::ensure;
use common::harness::{Geth, GethOptions, Postgres, Redis, Service};
use serde::{Deserialize, Serialize};

use super::{
    growth::{MAX_PENDING, RATE, SIGNED_PER_BLOCK},
    member_replay::{node_env, stop},
};
use crate::{
    load::{self, Accounts, BenchGenesis, Load, Tracker, Transfer},
    procs,
};

/// The window both stores keep, blocks.
pub(crate) const WINDOW: u64 = 1_000;

/// Blocks between two samples.
pub(crate) const SAMPLE_EVERY: u64 = 500;

/// How both make their blocks: back to back, Geth building for 20 ms, the window kept.
const ARGS: [&str; 5] = ["--back-to-back", "--build-time-ms", "20", "--retain-blocks", "1000"];

/// What the scenario found: `(height, bytes)` at each sample.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Retention {
    /// Part 2's store file.
    pub(crate) store: Vec<(u64, u64)>,
    /// Part 3's log: the `blocks` table with its indexes and out-of-line (TOAST) data.
    pub(crate) log: Vec<(u64, u64)>,
}

/// Runs the scenario: each store through a chain of `blocks` blocks.
pub(crate) async fn run(blocks: u64) -> anyhow::Result<Retention> {
    ensure!(blocks >= 4 * WINDOW, "--chain-blocks must be at least four times the window ({WINDOW} blocks)");
    let accounts = Accounts::new(load::ACCOUNTS)?;
    let genesis = load::bench_genesis(&accounts)?;
    let options = GethOptions { genesis: Some(genesis.path.clone()), ..Default::default() };
    let per_account = (blocks * SIGNED_PER_BLOCK).div_ceil(accounts.len() as u64);
    let transfers = load::presign(&accounts, 0, per_account);
    let dir = tempfile::tempdir()?;

    let store = {
        let geth = Geth::start_with(options.clone()).await?;
        let node = procs::single_node_as("retaining-sequencer", &geth, &ARGS, dir.path())?;
        let path = dir.path().join("state/sequencer.redb");
        sample(&geth, node, &transfers, blocks, || Ok(std::fs::metadata(&path)?.len())).await?
    };
    let log = {
        let (redis, postgres, geth) =
            (Redis::start().await?, Postgres::start().await?, Geth::start_with(options).await?);
        let node = leader(&geth, &genesis, &redis, &postgres, dir.path())?;
        sample(&geth, node, &transfers, blocks, || {
            Ok(postgres.psql("SELECT pg_total_relation_size('blocks')")?.trim().parse()?)
        })
        .await?
    };
    Ok(Retention { store, log })
}

/// A Part 3 leader, alone, keeping the window.
fn leader(
    geth: &Geth,
    genesis: &BenchGenesis,
    redis: &Redis,
    postgres: &Postgres,
    dir: &std::path::Path,
) -> anyhow::Result<Service> {
    let env = node_env(geth, genesis, redis, postgres, "retaining-leader", "leader");
    procs::spawn("member-nodes", "retaining-leader", &ARGS, &env, dir)
}

/// Sends the transfers to `geth` while `node` makes `blocks` blocks on it, and measures
/// `bytes` every [`SAMPLE_EVERY`] blocks; stops `node` at the end.
async fn sample(
    geth: &Geth,
    mut node: Service,
    transfers: &[Transfer],
    blocks: u64,
    bytes: impl Fn() -> anyhow::Result<u64>,
) -> anyhow::Result<Vec<(u64, u64)>> {
    let engine = geth.engine();
    let tracker = Tracker::start(&geth.http_url()).await?;
    let load = Load::start_within(
        vec![geth.http_url()],
        transfers.to_vec(),
        tracker.included.clone(),
        Some(RATE),
        MAX_PENDING,
    );
    let deadline = Instant::now() + Duration::from_secs(blocks + 600);
    let mut samples = Vec::new();
    let mut next = SAMPLE_EVERY;
    while next <= blocks {
        ensure!(node.exited().is_none(), "the node exited:\n{}", node.log_tail(2000));
        ensure!(Instant::now() < deadline, "no block {next} in time");
        let head = engine.head().await?.number;
        if head >= next {
            samples.push((head, bytes()?));
            tracing::info!(head, bytes = samples.last().map(|s| s.1), "sampled");
            next += SAMPLE_EVERY;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    load.stop().await;
    tracker.stop().await;
    stop(&mut node).await;
    Ok(samples)
}

//! How many blocks a second each driver makes: empty ones back to back, and one-transfer
//! ones when fed a transfer at a time (each sent once the previous one is in a block).
//! Geth's own `--dev --dev.period 0` makes a block per transaction: the reference.

use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use anyhow::Context;
use common::harness::{Geth, GethOptions, dev_signer, signed_transfer};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Plan;
use crate::{load::Tracker, procs, stats::Summary};

/// What the scenario found, in blocks per second.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BlockRate {
    /// Part 2, back to back, no build deadline, empty blocks.
    pub(crate) single_node_empty: Summary,
    /// Part 2, back to back, skipping empty blocks, fed one transfer at a time.
    pub(crate) single_node_one_tx: Summary,
    /// Geth `--dev --dev.period 0`, fed one transfer at a time.
    pub(crate) geth_dev_one_tx: Summary,
    /// Part 1, which never runs ahead of the wall clock.
    pub(crate) engine_api: Summary,
}

/// Runs the scenario.
pub(crate) async fn run(plan: &Plan) -> anyhow::Result<BlockRate> {
    let (mut empty, mut one, mut dev, mut part1) = (vec![], vec![], vec![], vec![]);
    for repeat in 0..plan.repeats {
        tracing::info!(repeat, "block rate");
        empty.push(single_node(plan, &["--back-to-back", "--build-time-ms", "0"], false).await?);
        // A short build deadline: asked at once, Geth hands over its empty first draft.
        let skip = ["--back-to-back", "--skip-empty", "--max-idle", "3600", "--build-time-ms", "2"];
        one.push(single_node(plan, &skip, true).await?);
        let geth = Geth::start_with(GethOptions { dev_period: Some(0), ..Default::default() }).await?;
        dev.push(feed(&geth, plan).await?);
        part1.push(engine_api().await?);
    }
    Ok(BlockRate {
        single_node_empty: Summary::of(&empty),
        single_node_one_tx: Summary::of(&one),
        geth_dev_one_tx: Summary::of(&dev),
        engine_api: Summary::of(&part1),
    })
}

/// single-node with `args` on a fresh Geth: blocks a second, empty or fed.
async fn single_node(plan: &Plan, args: &[&str], fed: bool) -> anyhow::Result<f64> {
    let geth = Geth::start().await?;
    let dir = tempfile::tempdir()?;
    let _node = procs::single_node(&geth, args, dir.path())?;
    if fed {
        return feed(&geth, plan).await;
    }
    let tracker = Tracker::start(&geth.http_url()).await?;
    tokio::time::sleep(plan.warmup).await;
    let from = tracker.now();
    tokio::time::sleep(plan.duration).await;
    let to = tracker.now();
    let blocks = tracker.stop().await;
    Ok(blocks.iter().filter(|b| b.seen >= from && b.seen < to).count() as f64 / (to - from))
}

/// Sends one transfer, waits for its receipt, sends the next; blocks a second over the
/// measured window (every transfer gets a block of its own).
async fn feed(geth: &Geth, plan: &Plan) -> anyhow::Result<f64> {
    let (signer, http) = (dev_signer(), geth.http());
    let started = Instant::now();
    let (mut nonce, mut counted) = (0, 0);
    let mut window = None;
    while started.elapsed() < plan.warmup + plan.duration {
        let raw = signed_transfer(&signer, 1337, nonce, Address::repeat_byte(0x5e), U256::from(1));
        let hash = geth.send_raw_transaction(&raw).await?;
        loop {
            // Just after start Geth answers "transaction indexing is in progress": not yet.
            let receipt: Option<serde_json::Value> =
                http.call("eth_getTransactionReceipt", json!([hash]), Duration::from_secs(5)).await.ok().flatten();
            if receipt.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        nonce += 1;
        if started.elapsed() >= plan.warmup {
            window.get_or_insert_with(Instant::now);
            counted += 1;
        }
    }
    Ok(counted as f64 / window.map_or(f64::INFINITY, |w| w.elapsed().as_secs_f64()))
}

/// Part 1 making six blocks: it waits for each block's second, so this is the clock. The
/// rate is over the intervals between the blocks it prints from the second on, so neither
/// its start-up nor its first block (which takes the second it starts in) counts.
async fn engine_api() -> anyhow::Result<f64> {
    use tokio::io::AsyncBufReadExt;

    const BLOCKS: usize = 6;
    let geth = Geth::start().await?;
    let mut child = tokio::process::Command::new(common::harness::release_binary("engine-api")?)
        .args(["--blocks", &BLOCKS.to_string(), "--build-time-ms", "0"])
        .env("ETH_CLIENT_URL", geth.auth_url())
        .env("JWT_SECRET", geth.jwt_path())
        .env("GENESIS", geth.genesis())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("engine-api's output")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut printed = Vec::new();
    while let Some(line) = lines.next_line().await? {
        if line.starts_with("block ") {
            printed.push(Instant::now());
        }
    }
    anyhow::ensure!(child.wait().await?.success(), "engine-api failed");
    anyhow::ensure!(printed.len() == BLOCKS, "engine-api printed {} blocks, not {BLOCKS}", printed.len());
    // The first block takes the current second, already partly gone: count from the second.
    let span = printed[BLOCKS - 1] - printed[1];
    Ok((BLOCKS - 2) as f64 / span.as_secs_f64())
}

//! Part 1: make blocks with the Engine API, nothing else.
//!
//! A consensus layer tells the execution client (Geth) which block is the head and when
//! to build the next one. Four calls make a block:
//!
//! 1. `engine_forkchoiceUpdatedV3(head, attributes)`: "build on `head` with these
//!    attributes"; Geth starts a builder and answers with a payload id.
//! 2. `engine_getPayloadV5(id)`: "give me what you built": the block and its side data.
//! 3. `engine_newPayloadV4(block, …)`: "execute and validate this block"; it is stored but
//!    is not the head yet.
//! 4. `engine_forkchoiceUpdatedV3(new head)`: "this block is the head now, and final".
//!
//! This program runs that loop `--blocks` times against a running Geth and exits. There is
//! no retry, no persistence and no server here: Part 2 adds those.
//!
//! Layout: this one file; the client it uses lives in `common` (`common::engine`).
//!
//! Run it against the local devnet:
//!
//! ```text
//! scripts/devnet.sh start
//! cargo run -p engine-api -- --blocks 10
//! ```

// ANCHOR: program
use std::time::Duration;

use alloy_primitives::Address;
use anyhow::{Context, bail};
use clap::Parser;
use common::{EngineClient, Head, config::ElArgs, payload};
use tracing::info;

/// Produce a few blocks on Geth through the Engine API, then exit.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    el: ElArgs,

    /// How many blocks to produce.
    #[arg(long, env = "BLOCKS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    blocks: u64,

    /// Address that receives the blocks' priority fees.
    #[arg(long, env = "FEE_RECIPIENT", default_value_t = Address::ZERO)]
    fee_recipient: Address,

    /// How long Geth may fill a block with pending transactions before we take it (ms).
    /// Asked for at once, Geth hands over the empty block it starts with.
    #[arg(long, env = "BUILD_TIME_MS", default_value_t = 200)]
    build_time_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::logging::init();
    let args = Args::parse();

    // Read the JWT secret and genesis, then check Geth serves the methods we call and is
    // on our chain. Every failure here names its cause and fix.
    let engine = args.el.connect().await?;
    let mut head = Head::from(&engine.head().await.context("cannot read Geth's head block")?);
    info!(number = head.number, hash = %head.hash, "starting from Geth's head");

    for _ in 0..args.blocks {
        head = produce_block(&engine, &head, &args).await?;
    }
    Ok(())
}

/// Runs the four calls once: builds, validates and finalizes one child of `parent`, and
/// returns the new head (its number, hash and timestamp: all the next block needs).
async fn produce_block(engine: &EngineClient, parent: &Head, args: &Args) -> anyhow::Result<Head> {
    // Block time. Timestamps are whole seconds and must be strictly greater than the
    // parent's, so a chain can make at most one block per second of chain time. We also
    // never let the chain run ahead of the wall clock: if the parent is from this very
    // second, wait for the next one.
    let timestamp = payload::min_child_timestamp(parent.timestamp).max(common::unix_time().as_secs());
    wait_until(timestamp).await;

    // 1. forkchoiceUpdated with attributes: keep `parent` as head and start building a
    //    child with this timestamp, fee recipient, randomness and beacon root.
    let attributes = payload::attributes(parent.hash, timestamp, args.fee_recipient);
    let forkchoice = payload::finalized_at(parent.hash);
    let updated = engine.forkchoice_updated_v3(forkchoice, Some(attributes)).await?;
    let Some(payload_id) = updated.payload_id else {
        bail!("Geth did not start building on {} ({})", parent.hash, updated.payload_status);
    };

    // Give the builder time. Geth's first version of the block is empty; a moment later it
    // has packed pending transactions.
    tokio::time::sleep(Duration::from_millis(args.build_time_ms)).await;

    // 2. getPayload: the version is chosen by the fork at `timestamp` (V5 on Osaka).
    let built = engine.get_payload(payload_id, timestamp).await?;
    let block = &built.execution_payload.payload_inner.payload_inner;

    // 3. newPayload: Geth executes the block. It needs the versioned hashes of every blob
    //    the block's transactions carry (in order), the same beacon root we asked for,
    //    and the execution requests getPayload handed us.
    let versioned_hashes = payload::built_versioned_hashes(&built)?;
    let beacon_root = payload::parent_beacon_block_root(&built.execution_payload);
    let status = engine
        .new_payload_v4(&built.execution_payload, &versioned_hashes, beacon_root, &built.execution_requests)
        .await?;
    if !status.is_valid() {
        bail!("Geth did not accept its own block {} ({}): {status}", block.block_number, block.block_hash);
    }

    // 4. forkchoiceUpdated without attributes: the new block becomes head. With a single
    //    producer nothing can replace it, so it is safe and finalized at once.
    let updated = engine.forkchoice_updated_v3(payload::finalized_at(block.block_hash), None).await?;
    if !updated.payload_status.is_valid() {
        bail!("Geth refused block {} as head: {}", block.block_hash, updated.payload_status);
    }

    println!(
        "block {} hash {} txs {} gas_used {}",
        block.block_number,
        block.block_hash,
        block.transactions.len(),
        block.gas_used
    );
    Ok(Head { number: block.block_number, hash: block.block_hash, timestamp: block.timestamp })
}

/// Sleeps until the wall clock reaches `timestamp` (seconds since the Unix epoch).
async fn wait_until(timestamp: u64) {
    let now = common::unix_time();
    let target = Duration::from_secs(timestamp);
    if target > now {
        tokio::time::sleep(target - now).await;
    }
}
// ANCHOR_END: program

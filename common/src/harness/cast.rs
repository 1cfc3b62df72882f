//! Foundry's `cast`, the client a user sends transactions with: the tests use it the way
//! the docs do, with its default fees, so what a wallet meets on a fresh chain is tested.

use std::{path::PathBuf, time::Duration};

use alloy_primitives::{Address, B256};
use anyhow::{Context, bail};
use serde::Deserialize;

use super::{process::tool_binary, tx::DEV_PRIVATE_KEY};

/// How long one `cast` command may take: `cast send` waits for its receipt, and blocks
/// come every second or so.
const CAST_TIMEOUT: Duration = Duration::from_secs(120);

/// The `cast` binary: `$CAST_BIN`, else the one `scripts/setup.sh` installs in `.tools/bin`.
pub fn cast_binary() -> anyhow::Result<PathBuf> {
    tool_binary("CAST_BIN", "cast", "cast")
}

/// The fields of `cast`'s JSON receipt the tests look at (quantities are hex strings).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CastReceipt {
    /// The transaction.
    pub transaction_hash: B256,
    /// `0x1` for success.
    pub status: String,
    /// The block that included it.
    pub block_number: String,
    /// Its hash.
    pub block_hash: B256,
    /// What the sender paid per gas, tip included.
    pub effective_gas_price: String,
}

impl CastReceipt {
    /// The block number as a number.
    pub fn block(&self) -> u64 {
        u64::from_str_radix(self.block_number.trim_start_matches("0x"), 16).unwrap_or(u64::MAX)
    }

    /// True if the transaction succeeded.
    pub fn succeeded(&self) -> bool {
        self.status == "0x1"
    }
}

/// `cast` against one node's JSON-RPC URL.
#[derive(Debug, Clone)]
pub struct Cast {
    rpc_url: String,
}

impl Cast {
    /// A client for `rpc_url` (a Geth's public JSON-RPC port).
    pub fn new(rpc_url: &str) -> Self {
        Self { rpc_url: rpc_url.to_owned() }
    }

    /// Runs `cast ARGS --rpc-url URL` and returns its standard output; fails with its
    /// standard error if it exits non-zero.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = tokio::time::timeout(
            CAST_TIMEOUT,
            tokio::process::Command::new(cast_binary()?)
                .args(args)
                .args(["--rpc-url", &self.rpc_url])
                .kill_on_drop(true)
                .output(),
        )
        .await
        .with_context(|| format!("cast {} took longer than {CAST_TIMEOUT:?}", args.join(" ")))?
        .context("cannot run cast")?;
        if !output.status.success() {
            bail!("cast {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// `cast send` of `value` (such as `1ether`) from the funded development account to
    /// `to`, with cast's default fees; waits for the receipt, as a user does.
    pub async fn send(&self, to: Address, value: &str) -> anyhow::Result<CastReceipt> {
        let to = to.to_string();
        let json = self.run(&["send", "--private-key", DEV_PRIVATE_KEY, &to, "--value", value, "--json"]).await?;
        serde_json::from_str(&json).with_context(|| format!("cast send printed no receipt: {json}"))
    }

    /// `cast send --async` of `value` from the funded development account to `to`, with
    /// cast's default fees: the transaction's hash, without waiting for a block.
    pub async fn send_async(&self, to: Address, value: &str) -> anyhow::Result<B256> {
        let to = to.to_string();
        let hash = self.run(&["send", "--async", "--private-key", DEV_PRIVATE_KEY, &to, "--value", value]).await?;
        hash.parse().with_context(|| format!("cast send --async printed no hash: {hash}"))
    }

    /// `cast receipt HASH`, once the transaction is in a block.
    pub async fn receipt(&self, hash: B256) -> anyhow::Result<CastReceipt> {
        let json = self.run(&["receipt", &hash.to_string(), "--json"]).await?;
        serde_json::from_str(&json).with_context(|| format!("cast receipt printed no receipt: {json}"))
    }

    /// `cast block NUMBER`: the block as JSON.
    pub async fn block(&self, number: u64) -> anyhow::Result<serde_json::Value> {
        let json = self.run(&["block", &number.to_string(), "--json"]).await?;
        serde_json::from_str(&json).with_context(|| format!("cast block printed no block: {json}"))
    }

    /// `cast block-number`.
    pub async fn block_number(&self) -> anyhow::Result<u64> {
        self.run(&["block-number"]).await?.parse().context("cast block-number printed no number")
    }
}

/// How many blocks a default-fee transfer may take to land, counted from the head when
/// Geth accepted it. Where the Geth it is sent to builds the next block (Part 2), two: the
/// block being built when it arrived may miss it, the next one has it. Where it must first
/// travel to the builder's Geth (a member's or a validator's Geth passes it on; a peer may
/// only announce it and be asked for it half a second later) and the builder may have
/// started its block before it arrived (Part 4 builds ahead), a few blocks more. What the
/// bound tells apart is a transaction that lands from one that sits in the pool while blocks
/// go by without it (a tip below the builder's minimum: it never lands), not how fast gossip
/// is.
const LAND_WITHIN_BLOCKS: u64 = 5;

/// Sends 1 ether to `0x…dEaD` with cast's default fees, as a user's first transaction, and
/// checks what the docs promise: it succeeds, lands in a block after block `from` (the head
/// before it was sent) and within `LAND_WITHIN_BLOCKS` (5) of the head when Geth accepted it,
/// and the block `cast block` shows holds it.
pub async fn default_fee_transfer(cast: &Cast, from: u64) -> anyhow::Result<CastReceipt> {
    let dead: Address = "0x000000000000000000000000000000000000dEaD".parse()?;
    // `--async` returns once Geth has accepted the transaction; the head read right after is
    // the head it was sent at, however long cast's own calls took.
    let hash = cast.send_async(dead, "1ether").await?;
    let sent_at = cast.block_number().await?;
    // `cast receipt` waits for the transaction's block, as `cast send` does.
    let receipt = cast.receipt(hash).await?;
    anyhow::ensure!(receipt.succeeded(), "the transfer reverted: {receipt:?}");
    anyhow::ensure!(
        receipt.block() > from,
        "the transfer landed in block {}, which Geth had before it was sent (block {from})",
        receipt.block()
    );
    anyhow::ensure!(
        receipt.block() <= sent_at + LAND_WITHIN_BLOCKS,
        "the transfer landed in block {}, more than {LAND_WITHIN_BLOCKS} blocks after block {sent_at}, the head when Geth accepted it",
        receipt.block()
    );
    let block = cast.block(receipt.block()).await?;
    let hashes: Vec<B256> = serde_json::from_value(block["transactions"].clone()).context("block transactions")?;
    anyhow::ensure!(hashes.contains(&receipt.transaction_hash), "block {} does not list the transfer", receipt.block());
    anyhow::ensure!(receipt.transaction_hash == hash, "cast receipt names another transaction");
    Ok(receipt)
}
